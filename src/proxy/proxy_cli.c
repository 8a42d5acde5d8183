/* proxy_cli: `twill proxy-debug`, a hidden test driver for the Service dataplane: read a
 * manifest directory once, plan the Services for one node and program them with the
 * nftables writer (one transaction), then print what it did as JSON.  Run it again after
 * changing the manifests: it reconciles against the table it finds, as a restarted agent
 * would.  `--delete` removes twill's table.  Not part of the agent; used by
 * tests/integration/test_proxy_nft.py until the agent wires the proxy in. */
#include <errno.h>
#include <getopt.h>
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

int proxy_debug_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"manifests", required_argument, NULL, 'm'},
	    {"node", required_argument, NULL, 'n'},
	    {"node-ip", required_argument, NULL, 'i'},
	    {"table", required_argument, NULL, 't'},
	    {"delete", no_argument, NULL, 'd'},
	    {"print", no_argument, NULL, 'p'},
	    {"log-level", required_argument, NULL, 'l'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *dir = NULL, *node = NULL, *table = NULL;
	bool del = false, print = false;
	struct ipaddr addrs[16];
	size_t naddrs = 0;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "m:n:i:t:dpl:h", longopts, NULL)) != -1) {
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
	struct store *s = store_new();
	int lr = source_dir_load(s, dir, diag_print, NULL);
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
	int r = nft_writer_sync(w);
	if (print)
		svc_planner_foreach(sp, print_svc, sp);
	const struct nft_sync_stats *st = nft_writer_stats(w);
	printf("{\"ok\":%s,\"error\":\"%s\",\"full\":%s,\"messages\":%u,\"elemsAdded\":%u,"
	       "\"elemsDeleted\":%u,\"chainsWritten\":%u,\"chainsDeleted\":%u,\"services\":%u}\n",
	       r == 0 ? "true" : "false", nft_writer_error(w), st->full ? "true" : "false",
	       st->messages, st->elems_added, st->elems_deleted, st->chains_written,
	       st->chains_deleted, st->services);
	nft_writer_free(w);
	svc_planner_free(sp);
	store_free(s);
	return r == 0 ? 0 : 1;
}
