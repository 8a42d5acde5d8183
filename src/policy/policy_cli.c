/* policy_cli: `twill policy list|trace|sync`.
 *
 *   list   the pods this node isolates, by which policies, the peer sets (policy.json,
 *          written by the agent beside status.json)
 *   trace  SRC DST PORT/PROTO: which policy and rule allow or deny a flow, evaluated from
 *          the manifests the agent reads (the path is in policy.json)
 *   sync   (tests) plan one node from a manifest directory and program the table once */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/consts.h"
#include "lib/log.h"
#include "lib/util.h"
#include "policy/policy.h"
#include "store/store.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: twill policy list  [--state-dir DIR] [-o json]\n"
		   "       twill policy trace [--state-dir DIR | --manifests DIR] SRC DST PORT[/PROTO]\n"
		   "           SRC, DST: namespace/pod or an address; PROTO tcp (default), udp, sctp\n"
		   "       twill policy sync  --manifests DIR --node NAME [--table NAME] [--delete]\n");
}

static void diag_print(const struct diag *d, void *arg)
{
	(void)arg;
	char buf[1024];
	fprintf(stderr, "%s\n", diag_fmt(d, buf, sizeof(buf)));
}

static json_object *read_state(const char *state_dir)
{
	char *path = xasprintf("%s/%s", state_dir, POLICY_FILE);
	json_object *j = json_object_from_file(path);
	if (!j)
		fprintf(stderr,
			"twill policy: cannot read %s (is the agent running with this "
			"--state-dir?)\n",
			path);
	free(path);
	return j;
}

static const char *jget(json_object *j, const char *k)
{
	json_object *v;
	return json_object_object_get_ex(j, k, &v) ? json_object_get_string(v) : "";
}

static void print_counter(bool egress, const char *policy, uint64_t packets, uint64_t bytes,
			  void *arg)
{
	int *n = arg;
	if (!(*n)++)
		printf("dropped (counted per policy and direction, in this namespace's table):\n");
	printf("  %-30s %-8s %llu packets, %llu bytes\n", policy, egress ? "egress" : "ingress",
	       (unsigned long long)packets, (unsigned long long)bytes);
}

static int cmd_list(const char *state_dir, bool json)
{
	json_object *j = read_state(state_dir);
	if (!j)
		return 1;
	if (json) {
		puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY));
		json_object_put(j);
		return 0;
	}
	json_object *chains = NULL, *sets = NULL, *v;
	json_object_object_get_ex(j, "chains", &chains);
	json_object_object_get_ex(j, "sets", &sets);
	printf("node %s, table %s, %s NetworkPolicies%s\n", jget(j, "node"), jget(j, "table"),
	       json_object_object_get_ex(j, "policies", &v) ? json_object_get_string(v) : "0",
	       json_object_object_get_ex(j, "enforcing", &v) && json_object_get_boolean(v)
		   ? " (pods not programmed yet get no traffic)"
		   : "");
	size_t n = chains ? json_object_array_length(chains) : 0;
	if (!n)
		printf("no pod of this node is isolated\n");
	for (size_t i = 0; i < n; i++) {
		json_object *c = json_object_array_get_idx(chains, i), *pols = NULL;
		json_object_object_get_ex(c, "policies", &pols);
		printf("  %-30s %-8s isolated by", jget(c, "pod"), jget(c, "direction"));
		for (size_t k = 0; pols && k < json_object_array_length(pols); k++)
			printf("%s%s", k ? ", " : " ",
			       json_object_get_string(json_object_array_get_idx(pols, k)));
		printf("; %s allow rules (chain %s)\n", jget(c, "rules"), jget(c, "chain"));
	}
	int counted = 0;
	pol_counters_read(NULL, print_counter, &counted); /* this network namespace's table */
	n = sets ? json_object_array_length(sets) : 0;
	if (n)
		printf("peer sets:\n");
	for (size_t i = 0; i < n; i++) {
		json_object *s = json_object_array_get_idx(sets, i);
		printf("  %-22s %4s addresses  %s\n", jget(s, "set"), jget(s, "size"),
		       jget(s, "what"));
	}
	json_object_put(j);
	return 0;
}

static int cmd_trace(const char *state_dir, const char *manifests, char **args)
{
	json_object *j = NULL;
	if (!manifests) {
		j = read_state(state_dir);
		if (!j)
			return 1;
		manifests = jget(j, "manifests");
	}
	char *ps = xstrdup(args[2]), *slash = strchr(ps, '/');
	int proto = PROTO_TCP;
	if (slash) {
		*slash = '\0';
		char *up = xstrdup(slash + 1);
		for (char *c = up; *c; c++)
			*c = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
		proto = proto_parse(up);
		free(up);
	}
	char *end;
	long port = strtol(ps, &end, 10);
	bool bad = proto < 0 || *end || end == ps || port < 1 || port > 65535;
	free(ps);
	if (bad) {
		fprintf(stderr, "twill policy trace: bad PORT/PROTO '%s' (e.g. 80/tcp)\n", args[2]);
		json_object_put(j);
		return 2;
	}
	struct store *st = store_new();
	int r = source_dir_load(st, manifests, diag_print, NULL);
	if (r < 0) {
		fprintf(stderr, "twill policy trace: %s: %s\n", manifests, strerror(-r));
		store_free(st);
		json_object_put(j);
		return 1;
	}
	struct pol_verdict v;
	r = policy_explain(st, args[0], args[1], (uint16_t)port, (enum proto)proto, &v);
	if (r < 0)
		fprintf(stderr, "twill policy trace: %s\n", v.text);
	else
		fputs(v.text, stdout);
	free(v.text);
	store_free(st);
	json_object_put(j);
	return r < 0 ? 1 : v.allowed ? 0 : 3;
}

static int cmd_sync(const char *manifests, const char *node, const char *table, bool del)
{
	if (del) {
		int r = pol_table_delete(table);
		if (r < 0)
			fprintf(stderr, "twill policy sync: delete: %s\n", strerror(-r));
		return r < 0;
	}
	if (!manifests || !node) {
		usage(stderr);
		return 2;
	}
	struct store *st = store_new();
	int r = source_dir_load(st, manifests, diag_print, NULL);
	if (r < 0) {
		fprintf(stderr, "twill policy sync: %s: %s\n", manifests, strerror(-r));
		store_free(st);
		return 1;
	}
	monotime_t t0 = monotime_now();
	struct pol_plan *p = pol_plan_build(st, node);
	monotime_t t1 = monotime_now();
	struct pol_writer *w = pol_writer_new(table);
	r = pol_writer_sync(w, p);
	monotime_t t2 = monotime_now();
	const struct pol_sync_stats *s = pol_writer_stats(w);
	printf("{\"ok\":%s,\"error\":\"%s\",\"messages\":%u,\"chainsWritten\":%u,"
	       "\"chainsDeleted\":%u,\"setsAdded\":%u,\"setsDeleted\":%u,\"elemsAdded\":%u,"
	       "\"elemsDeleted\":%u,\"chains\":%zu,\"sets\":%zu,\"planMs\":%.1f,\"syncMs\":%.1f}\n",
	       r ? "false" : "true", pol_writer_error(w), s->messages, s->chains_written,
	       s->chains_deleted, s->sets_added, s->sets_deleted, s->elems_added,
	       s->elems_deleted, p->chains.n, p->sets.n, (double)(t1 - t0) / 1e6,
	       (double)(t2 - t1) / 1e6);
	pol_writer_free(w);
	pol_plan_free(p);
	store_free(st);
	return r < 0;
}

int policy_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"state-dir", required_argument, NULL, 's'},
	    {"manifests", required_argument, NULL, 'm'},
	    {"node", required_argument, NULL, 'n'},
	    {"table", required_argument, NULL, 't'},
	    {"delete", no_argument, NULL, 'd'},
	    {"output", required_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1], *state = TWILL_DEFAULT_STATE_DIR, *manifests = NULL,
		   *node = NULL, *table = NULL;
	bool del = false, json = false;
	int c;
	optind = 2;
	while ((c = getopt_long(argc, argv, "s:m:n:t:do:h", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			state = optarg;
			break;
		case 'm':
			manifests = optarg;
			break;
		case 'n':
			node = optarg;
			break;
		case 't':
			table = optarg;
			break;
		case 'd':
			del = true;
			break;
		case 'o':
			json = !strcmp(optarg, "json");
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	int nargs = argc - optind;
	if (!strcmp(cmd, "list") && nargs == 0)
		return cmd_list(state, json);
	if (!strcmp(cmd, "trace") && nargs == 3)
		return cmd_trace(state, manifests, argv + optind);
	if (!strcmp(cmd, "sync") && nargs == 0)
		return cmd_sync(manifests, node, table, del);
	usage(stderr);
	return 2;
}
