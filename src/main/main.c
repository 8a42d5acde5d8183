/* twill: Kubernetes node networking in one binary.
 *
 * Multi-call dispatch: with CNI_COMMAND in the environment (how a container runtime
 * calls a plugin, whatever the binary is named, e.g. /opt/cni/bin/twill) or when invoked
 * as "twill-cni", twill is the CNI plugin; otherwise the first argument picks the role. */
#include <getopt.h>
#include <json-c/json.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "bgp/bgp.h"
#include "cni/cni.h"
#include "lab/lab.h"
#include "proxy/ipt.h"
#include "proxy/proxy_cli.h"
#include "proxy/svc_list.h"
#include "lib/consts.h"
#include "lib/util.h"
#include "policy/policy.h"

#ifndef TWILL_VERSION
#define TWILL_VERSION "0.1.0"
#endif

static void usage(FILE *f)
{
	fprintf(f,
		"twill %s: Kubernetes node networking (CNI, routing, Services, lab)\n\n"
		"usage: twill <command> [options]\n\n"
		"  agent   run the node agent (routes between nodes, Services; --help)\n"
		"  bgp     bgp run|peers|routes: the BGP speaker and its sessions and routes\n"
		"  cni     act as the CNI plugin (also when CNI_COMMAND is set)\n"
		"  lab     build and drive a multi-node lab in network namespaces\n"
		"  status  show a node agent's status (--state-dir DIR, -o json)\n"
		"  svc     svc list: the node's Services and backends, as ipvsadm -Ln shows\n"
		"          them (run in the node's network namespace; --help for options)\n"
		"  policy  list | trace SRC DST PORT/PROTO: NetworkPolicy on this node, and\n"
		"          which policy and rule allow or deny a flow (--help)\n"
		"  proxy-debug  apply Services from a manifest dir once with the nftables\n"
		"          dataplane (test driver; the agent runs the proxy itself)\n"
		"  proxy ipt-render DIR --node N [--apply]  render (and apply) kube-proxy's\n"
		"          iptables layout for the Services in DIR (test driver)\n"
		"  version print the version\n",
		TWILL_VERSION);
}

static const char *jstr(json_object *o, const char *key, const char *dflt)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return dflt;
	return json_object_get_string(v);
}

/* "a,b" from a JSON array of strings, into buf. */
static const char *jlist(json_object *o, const char *key, char *buf, size_t size)
{
	json_object *v;
	buf[0] = '\0';
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_array))
		return "-";
	size_t n = json_object_array_length(v), used = 0;
	for (size_t i = 0; i < n && used < size; i++) {
		const char *s = json_object_get_string(json_object_array_get_idx(v, i));
		int w = snprintf(buf + used, size - used, "%s%s", i ? "," : "", s ? s : "");
		if (w < 0)
			break;
		used += (size_t)w;
	}
	return buf[0] ? buf : "-";
}

/* twill status [--state-dir DIR] [-o json|table]: the agent's status.json, readable. */
static int status_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"state-dir", required_argument, NULL, 's'},
	    {"output", required_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *dir = TWILL_DEFAULT_STATE_DIR, *fmt = "table";
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "o:s:h", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			dir = optarg;
			break;
		case 'o':
			fmt = optarg;
			break;
		case 'h':
			printf("usage: twill status [--state-dir DIR] [-o json|table]\n"
			       "  shows <state-dir>/%s, written by `twill agent` (default %s)\n",
			       TWILL_STATUS_FILE, TWILL_DEFAULT_STATE_DIR);
			return 0;
		default:
			fprintf(stderr, "usage: twill status [--state-dir DIR] [-o json|table]\n");
			return 2;
		}
	}
	if (optind < argc || (strcmp(fmt, "json") && strcmp(fmt, "table"))) {
		fprintf(stderr, "usage: twill status [--state-dir DIR] [-o json|table]\n");
		return 2;
	}
	char *path = xasprintf("%s/%s", dir, TWILL_STATUS_FILE), *data = NULL;
	size_t len;
	int r = file_read(path, &data, &len);
	if (r < 0) {
		fprintf(stderr,
			"twill status: cannot read %s: %s (is the agent running with "
			"--state-dir %s?)\n",
			path, strerror(-r), dir);
		free(path);
		return 1;
	}
	if (!strcmp(fmt, "json")) {
		fputs(data, stdout);
		if (len && data[len - 1] != '\n')
			putchar('\n');
		free(data);
		free(path);
		return 0;
	}
	json_object *j = json_tokener_parse(data);
	if (!j || !json_object_is_type(j, json_type_object)) {
		fprintf(stderr, "twill status: %s is not a JSON object\n", path);
		json_object_put(j);
		free(data);
		free(path);
		return 1;
	}
	char buf[512];
	json_object *v;
	bool leader = json_object_object_get_ex(j, "leader", &v) && json_object_get_boolean(v);
	printf("node:      %s\n", jstr(j, "node", "?"));
	printf("podCIDRs:  %s\n", jlist(j, "podCIDRs", buf, sizeof(buf)));
	printf("routing:   %s\n", jstr(j, "routing", "?"));
	printf("wiring:    %s\n", jstr(j, "wiring", "?"));
	printf("leader:    %s\n", leader ? "yes" : "no");
	if (json_object_object_get_ex(j, "services", &v))
		printf("proxy:     %s, %d Services (twill svc list)\n", jstr(j, "proxy", "?"),
		       json_object_get_int(v));
	json_object *peers;
	if (json_object_object_get_ex(j, "peers", &peers) &&
	    json_object_is_type(peers, json_type_array) && json_object_array_length(peers)) {
		printf("\n%-16s %-16s %-20s %-8s %s\n", "PEER", "IP", "POD CIDRS", "VIA", "STATUS");
		for (size_t i = 0; i < json_object_array_length(peers); i++) {
			json_object *p = json_object_array_get_idx(peers, i);
			printf("%-16s %-16s %-20s %-8s %s\n", jstr(p, "node", "?"),
			       jstr(p, "ip", "-"), jlist(p, "podCIDRs", buf, sizeof(buf)),
			       jstr(p, "via", "none"), jstr(p, "status", "?"));
		}
	} else {
		printf("\npeers:     none\n");
	}
	json_object *errs;
	if (json_object_object_get_ex(j, "errors", &errs) &&
	    json_object_is_type(errs, json_type_array) && json_object_array_length(errs)) {
		printf("\nerrors:\n");
		for (size_t i = 0; i < json_object_array_length(errs); i++)
			printf("  %s\n",
			       json_object_get_string(json_object_array_get_idx(errs, i)));
	}
	json_object_put(j);
	free(data);
	free(path);
	return 0;
}

int main(int argc, char **argv)
{
	char *self = argc > 0 ? basename(argv[0]) : "twill";
	if (getenv("CNI_COMMAND") || !strcmp(self, "twill-cni"))
		return cni_main(argc, argv);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "agent"))
		return agent_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "bgp"))
		return bgp_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "cni"))
		return cni_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "lab"))
		return lab_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "proxy-debug"))
		return proxy_debug_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "proxy") && argc > 2 && !strcmp(argv[2], "ipt-render"))
		return proxy_ipt_debug_main(argc - 2, argv + 2);
	if (!strcmp(cmd, "status"))
		return status_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "svc"))
		return svc_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "policy"))
		return policy_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
		printf("twill %s\n", TWILL_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "twill: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
