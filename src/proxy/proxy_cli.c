/* proxy_cli: `twill proxy-debug`, a hidden test driver for the Service dataplane: read a
 * manifest directory once, plan the Services for one node and program them with the
 * nftables writer (one transaction), then print what it did as JSON.  Run it again after
 * changing the manifests: it reconciles against the table it finds, as a restarted agent
 * would.  `--delete` removes twill's table.  Not part of the agent; used by
 * tests/integration/test_proxy_nft.py until the agent wires the proxy in. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lib/log.h"
#include "lib/util.h"
#include "proxy/nft.h"
#include "proxy/proxy_cli.h"
#include "proxy/svc_plan.h"
#include "store/store.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: twill proxy-debug --manifests DIR --node NAME [--node-ip IP]...\n"
		   "                         [--table NAME] [--print] [--log-level LEVEL]\n"
		   "                         [--wait-change SECONDS]\n"
		   "       twill proxy-debug --delete [--table NAME]\n");
}

static void diag_print(const struct diag *d, void *arg)
{
	(void)arg;
	char buf[512];
	fprintf(stderr, "%s\n", diag_fmt(d, buf, sizeof(buf)));
}

static int print_svc(const char *key, const struct svc_entries *e, void *arg)
{
	const struct svc_planner *sp = arg;
	char buf[4096];
	for (size_t i = 0; i < e->n; i++)
		fprintf(stderr, "%s: %s\n", key, svc_entry_fmt(&e->v[i], buf, sizeof(buf)));
	const char *err = svc_planner_error(sp, key);
	if (err)
		fprintf(stderr, "%s: error: %s\n", key, err);
	return 0;
}

/* VmHWM of this process (peak resident set), in kB; 0 if unknown. */
static long peak_rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = 0;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

static long rss_after_load;

static void print_stats(const struct nft_writer *w, int r, monotime_t load, monotime_t sync)
{
	const struct nft_sync_stats *st = nft_writer_stats(w);
	printf("{\"ok\":%s,\"error\":\"%s\",\"full\":%s,\"messages\":%u,\"elemsAdded\":%u,"
	       "\"elemsDeleted\":%u,\"backendsAdded\":%u,\"backendsDeleted\":%u,"
	       "\"chainsWritten\":%u,\"chainsDeleted\":%u,\"services\":%u,\"loadMs\":%.2f,"
	       "\"syncMs\":%.2f,\"peakRssKbAfterLoad\":%ld,\"peakRssKb\":%ld}\n",
	       r == 0 ? "true" : "false", nft_writer_error(w), st->full ? "true" : "false",
	       st->messages, st->elems_added, st->elems_deleted, st->backends_added,
	       st->backends_deleted, st->chains_written, st->chains_deleted, st->services,
	       (double)load / 1e6, (double)sync / 1e6, rss_after_load, peak_rss_kb());
	fflush(stdout);
}

int proxy_debug_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"manifests", required_argument, NULL, 'm'},
	    {"node", required_argument, NULL, 'n'},
	    {"node-ip", required_argument, NULL, 'i'},
	    {"table", required_argument, NULL, 't'},
	    {"delete", no_argument, NULL, 'd'},
	    {"print", no_argument, NULL, 'p'},
	    {"wait-change", required_argument, NULL, 'w'},
	    {"log-level", required_argument, NULL, 'l'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *dir = NULL, *node = NULL, *table = NULL;
	bool del = false, print = false;
	int wait_s = 0; /* --wait-change SECONDS: then apply one manifest change incrementally */
	struct ipaddr addrs[16];
	size_t naddrs = 0;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "m:n:i:t:dpl:hw:", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			dir = optarg;
			break;
		case 'n':
			node = optarg;
			break;
		case 'i':
			if (naddrs >= ARRAY_SIZE(addrs) || ip_parse(optarg, &addrs[naddrs]) < 0) {
				fprintf(stderr, "proxy-debug: bad --node-ip '%s'\n", optarg);
				return 2;
			}
			naddrs++;
			break;
		case 't':
			table = optarg;
			break;
		case 'd':
			del = true;
			break;
		case 'p':
			print = true;
			break;
		case 'w':
			wait_s = atoi(optarg);
			break;
		case 'l':
			log_set_level(log_level_parse(optarg, LOG_INFO));
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (del) {
		int r = nft_table_delete(table);
		if (r < 0)
			fprintf(stderr, "proxy-debug: delete table: %s\n", strerror(-r));
		return r < 0 ? 1 : 0;
	}
	if (!dir || !node) {
		usage(stderr);
		return 2;
	}
	monotime_t t0 = monotime_now();
	struct store *s = store_new();
	struct source_dir *src = wait_s > 0 ? source_dir_open(s, dir, diag_print, NULL) : NULL;
	if (wait_s > 0 && !src) {
		fprintf(stderr, "proxy-debug: %s: %s\n", dir, strerror(errno));
		store_free(s);
		return 1;
	}
	int lr = src ? source_dir_scan(src) : source_dir_load(s, dir, diag_print, NULL);
	if (lr < 0) {
		fprintf(stderr, "proxy-debug: %s: %s\n", dir, strerror(-lr));
		store_free(s);
		return 1;
	}
	if (!naddrs)
		naddrs = svc_node_addrs(store_get(s, KIND_NODE, NULL, node), addrs,
					ARRAY_SIZE(addrs));
	struct svc_plan_in in = {node, addrs, naddrs};
	struct svc_planner *sp = svc_planner_new(s, &in);
	struct nft_writer *w = nft_writer_new(sp, &(struct nft_cfg){.table = table});
	monotime_t t1 = monotime_now();
	rss_after_load = peak_rss_kb();
	int r = nft_writer_sync(w); /* plan, diff, one transaction */
	print_stats(w, r, t1 - t0, monotime_now() - t1);
	if (print)
		svc_planner_foreach(sp, print_svc, sp);
	/* --wait-change: like the agent, wait for the manifest directory to change (inotify),
	 * re-read the changed file(s) only, then sync again; loadMs is that re-read */
	struct pollfd pfd = {src ? source_dir_fd(src) : -1, POLLIN, 0};
	monotime_t end = monotime_now() + MONO_MS(wait_s * 1000);
	while (r == 0 && src && monotime_now() < end) {
		if (poll(&pfd, 1, (int)((end - monotime_now()) / 1000000) + 1) != 1)
			continue;
		t0 = monotime_now();
		source_dir_process(src);
		if (!svc_planner_dirty(sp))
			continue; /* not a Service or EndpointSlice change (yet) */
		t1 = monotime_now();
		r = nft_writer_sync(w);
		print_stats(w, r, t1 - t0, monotime_now() - t1);
		break;
	}
	source_dir_close(src);
	nft_writer_free(w);
	svc_planner_free(sp);
	store_free(s);
	return r == 0 ? 0 : 1;
}
