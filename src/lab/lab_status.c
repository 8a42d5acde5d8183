/* lab_status: `twill lab status` — the lab's nodes (namespace, underlay address, podCIDR
 * from the agent's node.json, agent alive), pods (from the shared manifest directory and
 * its status overlays), each node's IPv4 routes as the kernel holds them (read with
 * netlink inside the node's namespace; twill's own are marked twill-node / twill-pod) and
 * the peer status the agent reports in status.json (e.g. "w0: unroutable: ..."). */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lab/lab.h"
#include "lib/consts.h"
#include "nl/nl.h"

static json_object *read_json(const char *path)
{
	char *data = NULL;
	size_t len;
	if (file_read(path, &data, &len) < 0)
		return NULL;
	json_object *o = json_tokener_parse(data);
	free(data);
	return o;
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;
	if (!o || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static const char *proto_str(uint8_t p, char *buf, size_t size)
{
	switch (p) {
	case RTPROT_KERNEL:
		return "kernel";
	case RTPROT_BOOT:
		return "boot";
	case RTPROT_STATIC:
		return "static";
	case RTPROT_DHCP:
		return "dhcp";
	case RTPROT_BIRD:
		return "bird";
	case TWILL_RTPROT_NODE:
		return "twill-node";
	case TWILL_RTPROT_POD:
		return "twill-pod";
	default:
		snprintf(buf, size, "%u", p);
		return buf;
	}
}

struct links {
	size_t n;
	int idx[512];
	char name[512][IFNAMSIZ];
};

static int link_cb(const struct nl_link *l, void *arg)
{
	struct links *ls = arg;
	if (ls->n < ARRAY_SIZE(ls->idx)) {
		ls->idx[ls->n] = l->index;
		str_copy(ls->name[ls->n++], IFNAMSIZ, l->name);
	}
	return 0;
}

static const char *link_name(const struct links *ls, int idx, char *buf)
{
	for (size_t i = 0; i < ls->n; i++)
		if (ls->idx[i] == idx)
			return ls->name[i];
	snprintf(buf, IFNAMSIZ, "if%d", idx);
	return buf;
}

struct route_ctx {
	const struct links *links;
	json_object *arr;
};

static int route_cb(const struct nl_route *r, void *arg)
{
	struct route_ctx *c = arg;
	if (r->type != RTN_UNICAST && r->type != RTN_BLACKHOLE && r->type != 0)
		return 0;
	char dst[IP_STRLEN], gw[IP_STRLEN], pb[8], dev[IFNAMSIZ], line[256];
	if (r->dst.len == 0)
		snprintf(dst, sizeof(dst), "default");
	else if (r->dst.len == ip_maxlen(r->dst.addr.family))
		ip_fmt(&r->dst.addr, dst);
	else
		prefix_fmt(&r->dst, dst);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "dst", json_object_new_string(dst));
	size_t off = snprintf(line, sizeof(line), "%s", dst);
	if (r->type == RTN_BLACKHOLE)
		off = snprintf(line, sizeof(line), "blackhole %s", dst);
	if (r->gw.family) {
		ip_fmt(&r->gw, gw);
		json_object_object_add(o, "gateway", json_object_new_string(gw));
		off += snprintf(line + off, sizeof(line) - off, " via %s", gw);
	}
	if (r->oif) {
		const char *d = link_name(c->links, r->oif, dev);
		json_object_object_add(o, "dev", json_object_new_string(d));
		off += snprintf(line + off, sizeof(line) - off, " dev %s", d);
	}
	const char *p = proto_str(r->protocol, pb, sizeof(pb));
	json_object_object_add(o, "protocol", json_object_new_string(p));
	off += snprintf(line + off, sizeof(line) - off, " proto %s", p);
	if (r->scope == RT_SCOPE_LINK)
		off += snprintf(line + off, sizeof(line) - off, " scope link");
	if (r->prefsrc.family) {
		char src[IP_STRLEN];
		off +=
		    snprintf(line + off, sizeof(line) - off, " src %s", ip_fmt(&r->prefsrc, src));
	}
	if (r->flags & RTNH_F_ONLINK) {
		json_object_object_add(o, "onlink", json_object_new_boolean(true));
		off += snprintf(line + off, sizeof(line) - off, " onlink");
	}
	json_object_object_add(o, "text", json_object_new_string(line));
	json_object_array_add(c->arr, o);
	return 0;
}

static json_object *node_routes(const char *nsname)
{
	int fd = netns_open(nsname);
	if (fd < 0)
		return NULL;
	struct nl_sock *s = nl_open_netns(fd);
	close(fd);
	if (!s)
		return NULL;
	struct links *ls = xcalloc(1, sizeof(*ls));
	nl_link_dump(s, link_cb, ls);
	struct route_ctx c = {.links = ls, .arr = json_object_new_array()};
	nl_route_dump(s, AF_INET, 0, 0, route_cb, &c);
	nl_close(s);
	free(ls);
	return c.arr;
}

int lab_cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"name", required_argument, NULL, 'n'},
	    {"output", required_argument, NULL, 'o'},
	    {NULL, 0, NULL, 0},
	};
	const char *name = LAB_DEFAULT_NAME;
	bool json = false;
	int o;
	optind = 0;
	while ((o = getopt_long(argc, argv, "n:o:", opts, NULL)) != -1) {
		switch (o) {
		case 'n':
			name = optarg;
			break;
		case 'o':
			json = !strcmp(optarg, "json");
			break;
		default:
			return 2;
		}
	}
	if (!lab_name_valid(name)) {
		fprintf(stderr, "twill lab status: bad lab name '%s'\n", name);
		return 2;
	}
	char *dir = lab_dir(name), *cfgpath = xasprintf("%s/lab.json", dir);
	json_object *cfg = read_json(cfgpath);
	free(cfgpath);
	if (!cfg) {
		fprintf(stderr, "twill lab status: lab %s is not up (no %s/lab.json)\n", name, dir);
		free(dir);
		return 1;
	}
	free(dir);
	json_object *root = json_object_new_object(), *jnodes = json_object_new_array(),
		    *jpods = json_object_new_array();
	json_object_object_add(root, "lab", json_object_new_string(name));
	json_object_object_add(root, "routing", json_object_new_string(jstr(cfg, "routing") ?: ""));
	json_object_object_add(root, "wiring", json_object_new_string(jstr(cfg, "wiring") ?: ""));
	int rc = 0;

	for (size_t i = 0; i < LAB_NNODES; i++) {
		const struct lab_node *n = &lab_nodes[i];
		json_object *jn = json_object_new_object();
		char *nsname = lab_netns_name(name, n->name);
		char *sdir = lab_node_state_dir(name, n->name);
		char *p1 = xasprintf("%s/%s", sdir, TWILL_NODE_STATE_FILE);
		char *p2 = xasprintf("%s/%s", sdir, TWILL_STATUS_FILE);
		json_object *nodejs = read_json(p1), *st = read_json(p2), *v;
		pid_t pid = lab_agent_pid(name, n->name);
		bool alive = lab_proc_alive(pid);
		if (!alive)
			rc = 1;
		json_object_object_add(jn, "name", json_object_new_string(n->name));
		json_object_object_add(jn, "namespace", json_object_new_string(nsname));
		json_object_object_add(jn, "namespaceExists",
				       json_object_new_boolean(netns_exists(nsname)));
		json_object_object_add(jn, "underlayIP", json_object_new_string(n->ip));
		json_object_object_add(jn, "agentPid", json_object_new_int(pid));
		json_object_object_add(jn, "agentRunning", json_object_new_boolean(alive));
		json_object_object_add(jn, "podCIDRs",
				       nodejs && json_object_object_get_ex(nodejs, "podCIDRs", &v)
					   ? json_object_get(v)
					   : json_object_new_array());
		json_object_object_add(
		    jn, "leader",
		    json_object_new_boolean(st && json_object_object_get_ex(st, "leader", &v) &&
					    json_object_get_boolean(v)));
		json_object_object_add(jn, "peers",
				       st && json_object_object_get_ex(st, "peers", &v)
					   ? json_object_get(v)
					   : json_object_new_array());
		json_object_object_add(jn, "errors",
				       st && json_object_object_get_ex(st, "errors", &v)
					   ? json_object_get(v)
					   : json_object_new_array());
		json_object *routes = node_routes(nsname);
		json_object_object_add(jn, "routes", routes ? routes : json_object_new_array());
		json_object_array_add(jnodes, jn);
		json_object_put(nodejs);
		json_object_put(st);
		free(nsname);
		free(sdir);
		free(p1);
		free(p2);
	}
	json_object_object_add(root, "nodes", jnodes);

	char *mdir = lab_manifest_dir(name);
	struct lab_view *view = lab_view_open(mdir);
	free(mdir);
	if (view) {
		struct lab_pods pods;
		lab_view_pods(view, &pods);
		for (size_t i = 0; i < pods.n; i++) {
			struct lab_pod *p = &pods.v[i];
			json_object *jp = json_object_new_object();
			char ip[IP_STRLEN] = "";
			if (p->ip.family)
				ip_fmt(&p->ip, ip);
			json_object_object_add(jp, "namespace", json_object_new_string(p->ns));
			json_object_object_add(jp, "name", json_object_new_string(p->name));
			json_object_object_add(jp, "node",
					       p->node ? json_object_new_string(p->node) : NULL);
			json_object_object_add(jp, "ip", json_object_new_string(ip));
			json_object_object_add(jp, "port", json_object_new_int(p->port));
			json_object_object_add(jp, "ready", json_object_new_boolean(p->ready));
			if (p->node) {
				char *pn = lab_pod_netns(name, p->node, p->ns, p->name);
				json_object_object_add(jp, "netns", json_object_new_string(pn));
				free(pn);
			}
			json_object_array_add(jpods, jp);
		}
		lab_pods_free(&pods);
		lab_view_close(view);
	}
	json_object_object_add(root, "pods", jpods);

	if (json) {
		puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
		goto out;
	}
	printf("lab %s: routing %s, wiring %s, cluster CIDR %s\n\n", name, jstr(cfg, "routing"),
	       jstr(cfg, "wiring"), LAB_CLUSTER_CIDR);
	printf("%-5s %-20s %-16s %-16s %s\n", "NODE", "NAMESPACE", "UNDERLAY (eth1)", "PODCIDR",
	       "AGENT");
	for (size_t i = 0; i < json_object_array_length(jnodes); i++) {
		json_object *jn = json_object_array_get_idx(jnodes, i), *v, *c;
		json_object_object_get_ex(jn, "podCIDRs", &v);
		c = json_object_array_length(v) ? json_object_array_get_idx(v, 0) : NULL;
		json_object_object_get_ex(jn, "agentPid", &v);
		int pid = json_object_get_int(v);
		json_object_object_get_ex(jn, "agentRunning", &v);
		bool alive = json_object_get_boolean(v);
		json_object_object_get_ex(jn, "leader", &v);
		bool leader = json_object_get_boolean(v);
		printf("%-5s %-20s %-16s %-16s pid %d %s%s\n", jstr(jn, "name"),
		       jstr(jn, "namespace"), jstr(jn, "underlayIP"),
		       c ? json_object_get_string(c) : "-", pid, alive ? "running" : "NOT RUNNING",
		       leader ? ", leader" : "");
	}
	printf("\n%-24s %-5s %-16s %s\n", "POD", "NODE", "IP", "READY");
	for (size_t i = 0; i < json_object_array_length(jpods); i++) {
		json_object *jp = json_object_array_get_idx(jpods, i), *v;
		char id[300];
		const char *pns = jstr(jp, "namespace");
		snprintf(id, sizeof(id), "%s%s%s", strcmp(pns, "default") ? pns : "",
			 strcmp(pns, "default") ? "/" : "", jstr(jp, "name"));
		json_object_object_get_ex(jp, "ready", &v);
		printf("%-24s %-5s %-16s %s\n", id, jstr(jp, "node") ?: "-",
		       *jstr(jp, "ip") ? jstr(jp, "ip") : "-",
		       json_object_get_boolean(v) ? "yes" : "no");
	}
	for (size_t i = 0; i < json_object_array_length(jnodes); i++) {
		json_object *jn = json_object_array_get_idx(jnodes, i), *v;
		printf("\n%s routes (ip route in %s):\n", jstr(jn, "name"), jstr(jn, "namespace"));
		json_object_object_get_ex(jn, "routes", &v);
		for (size_t k = 0; k < json_object_array_length(v); k++)
			printf("  %s\n", jstr(json_object_array_get_idx(v, k), "text"));
		json_object_object_get_ex(jn, "peers", &v);
		if (json_object_array_length(v))
			printf("%s peers:\n", jstr(jn, "name"));
		for (size_t k = 0; k < json_object_array_length(v); k++) {
			json_object *pe = json_object_array_get_idx(v, k), *cidrs;
			char cs[128] = "";
			if (json_object_object_get_ex(pe, "podCIDRs", &cidrs))
				for (size_t m = 0; m < json_object_array_length(cidrs); m++)
					snprintf(cs + strlen(cs), sizeof(cs) - strlen(cs), "%s%s",
						 m ? "," : "",
						 json_object_get_string(
						     json_object_array_get_idx(cidrs, m)));
			printf("  %s: %s (%s %s via %s)\n", jstr(pe, "node") ?: "?",
			       jstr(pe, "status") ?: "?", jstr(pe, "ip") ?: "-", *cs ? cs : "-",
			       jstr(pe, "via") ?: "-");
		}
		json_object_object_get_ex(jn, "errors", &v);
		for (size_t k = 0; k < json_object_array_length(v); k++)
			printf("  error: %s\n",
			       json_object_get_string(json_object_array_get_idx(v, k)));
	}
out:
	json_object_put(root);
	json_object_put(cfg);
	return rc;
}
