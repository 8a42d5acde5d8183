/* svc_list: `twill svc list`, the Service table in `ipvsadm -Ln`'s shape (see svc_list.h).
 *
 * ipvsadm lists virtual services (protocol, address:port, scheduler, flags such as
 * "persistent T") and under each its real servers with forwarding method, weight and the
 * active/inactive connection counts IPVS keeps.  twill's dataplanes are nftables/iptables
 * DNAT, so the counts come from conntrack instead: an entry whose original destination is
 * the Service address:port and whose reply source is the backend is one connection to that
 * backend; TCP in ESTABLISHED is active, everything else (other TCP states, UDP, SCTP) is
 * inactive, as IPVS counts them.  Conntrack is read from /proc/net/nf_conntrack when the
 * kernel has it, else dumped over ctnetlink (NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_GET). */
#include <netinet/in.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_conntrack_tcp.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "lib/consts.h"
#include "lib/ip.h"
#include "lib/log.h"
#include "lib/util.h"
#include "proxy/ipvs.h"
#include "proxy/svc_list.h"
#include "store/store.h"

/* ---- services.json ---- */

/* Written as a stream, one Service entry per line: at 10,000 Services x 10 endpoints the
 * file is ~17 MB, and a json-c tree of it took ~290 MB. */
struct entry_ref {
	const char *key;
	const struct svc_entry *e;
};

struct json_ctx {
	size_t n, cap;
	struct entry_ref *v;
};

static int entry_collect(const char *key, const struct svc_entries *es, void *arg)
{
	struct json_ctx *c = arg;
	for (size_t i = 0; i < es->n; i++) {
		if (c->n == c->cap) {
			c->cap = c->cap ? 2 * c->cap : 256;
			c->v = xrealloc(c->v, c->cap * sizeof(*c->v));
		}
		c->v[c->n++] = (struct entry_ref){key, &es->v[i]};
	}
	return 0;
}

/* by address, protocol name, port */
static int entry_ref_cmp(const void *a, const void *b)
{
	const struct svc_entry *x = ((const struct entry_ref *)a)->e;
	const struct svc_entry *y = ((const struct entry_ref *)b)->e;
	int c = ip_cmp(&x->vip, &y->vip);
	if (c)
		return c;
	c = strcmp(proto_name(x->proto), proto_name(y->proto));
	return c ? c : (int)x->port - (int)y->port;
}

static void entry_put(FILE *f, const char *key, const struct svc_entry *e)
{
	char b[IP_STRLEN];
	fputs("{\"service\": ", f);
	json_put_str(f, key);
	fprintf(f,
		", \"address\": \"%s\", \"port\": %u, \"protocol\": \"%s\", \"scope\": "
		"\"%s\", \"verdict\": \"%s\", \"masquerade\": %s, \"affinityTimeout\": %" PRIu32
		", \"scheduler\": \"%s\", \"backends\": [",
		ip_fmt(&e->vip, b), e->port, proto_name(e->proto), svc_scope_name(e->scope),
		svc_verdict_name(e->verdict), e->masquerade ? "true" : "false", e->affinity_timeout,
		svc_sched_name(e->sched));
	for (size_t k = 0; k < e->nbackends; k++) {
		const struct svc_backend *be = &e->backends[k];
		fprintf(f,
			"%s{\"ip\": \"%s\", \"port\": %u, \"weight\": %u, \"ready\": %s, "
			"\"terminating\": %s, \"local\": %s, \"node\": ",
			k ? ", " : "", ip_fmt(&be->ip, b), be->port, be->weight ? be->weight : 1u,
			be->ready ? "true" : "false", be->terminating ? "true" : "false",
			be->local ? "true" : "false");
		if (be->node)
			json_put_str(f, be->node);
		else
			fputs("null", f);
		putc('}', f);
	}
	fputs("]}", f);
}

struct error_ctx {
	const struct svc_planner *sp;
	FILE *f;
	bool any;
};

static int error_put(const char *key, const struct svc_entries *es, void *arg)
{
	(void)es;
	struct error_ctx *c = arg;
	const char *err = svc_planner_error(c->sp, key);
	if (err) {
		fputs(c->any ? ",\n  " : "\n  ", c->f);
		json_put_str(c->f, key);
		fputs(": ", c->f);
		json_put_str(c->f, err);
		c->any = true;
	}
	return 0;
}

void svc_services_json_write(FILE *f, const struct svc_planner *sp, const char *node,
			     const char *dataplane)
{
	struct json_ctx c = {0};
	svc_planner_foreach(sp, entry_collect, &c);
	qsort(c.v, c.n, sizeof(*c.v), entry_ref_cmp);
	fputs("{\"node\": ", f);
	if (node)
		json_put_str(f, node);
	else
		fputs("null", f);
	fputs(", \"dataplane\": ", f);
	json_put_str(f, dataplane);
	fputs(",\n\"services\": [", f);
	for (size_t i = 0; i < c.n; i++) {
		fputs(i ? ",\n  " : "\n  ", f);
		entry_put(f, c.v[i].key, c.v[i].e);
	}
	fputs("],\n\"errors\": {", f);
	struct error_ctx e = {sp, f, false};
	svc_planner_foreach(sp, error_put, &e);
	fputs("}}\n", f);
	free(c.v);
}

char *svc_services_json(const struct svc_planner *sp, const char *node, const char *dataplane)
{
	char *s = NULL;
	size_t len;
	FILE *f = open_memstream(&s, &len);
	if (!f)
		abort();
	svc_services_json_write(f, sp, node, dataplane);
	fclose(f);
	return s;
}

/* ---- conntrack ---- */

/* "<l4> <orig dst> <orig dport> <reply src> <reply sport>" -> struct ct_count */
static void ct_key(char *buf, size_t size, unsigned l4, const struct ipaddr *vip, unsigned vport,
		   const struct ipaddr *bip, unsigned bport)
{
	char a[IP_STRLEN], b[IP_STRLEN];
	snprintf(buf, size, "%u %s %u %s %u", l4, ip_fmt(vip, a), vport, ip_fmt(bip, b), bport);
}

static void ct_add(struct smap *m, unsigned l4, const struct ipaddr *odst, unsigned odport,
		   const struct ipaddr *rsrc, unsigned rsport, bool active)
{
	char key[2 * IP_STRLEN + 32];
	ct_key(key, sizeof(key), l4, odst, odport, rsrc, rsport);
	bool created;
	void **slot = smap_slot(m, key, &created);
	if (!*slot)
		*slot = xcalloc(1, sizeof(struct ct_count));
	struct ct_count *c = *slot;
	if (active)
		c->active++;
	else
		c->inactive++;
}

/* /proc/net/nf_conntrack: "ipv4 2 tcp 6 431999 ESTABLISHED src=.. dst=.. sport=.. dport=..
 * src=.. dst=.. sport=.. dport=.. [ASSURED] mark=0 zone=0 use=2".  The first
 * src/dst/sport/dport are the original direction, the second the reply. -ENOENT if absent. */
static int ct_read_proc(struct smap *m)
{
	FILE *f = fopen("/proc/net/nf_conntrack", "re");
	if (!f)
		return -errno;
	char line[1024];
	while (fgets(line, sizeof(line), f)) {
		char *save = NULL, *tok;
		unsigned idx = 0, l4 = 0, nsrc = 0, ndst = 0, nsport = 0, ndport = 0;
		unsigned odport = 0, rsport = 0;
		struct ipaddr odst = {0}, rsrc = {0};
		bool est = false;
		for (tok = strtok_r(line, " \t\n", &save); tok;
		     tok = strtok_r(NULL, " \t\n", &save), idx++) {
			if (idx == 3)
				l4 = (unsigned)strtoul(tok, NULL, 10);
			else if (!strcmp(tok, "ESTABLISHED"))
				est = true;
			else if (str_has_prefix(tok, "src=")) {
				if (nsrc++ == 1)
					ip_parse(tok + 4, &rsrc);
			} else if (str_has_prefix(tok, "dst=")) {
				if (ndst++ == 0)
					ip_parse(tok + 4, &odst);
			} else if (str_has_prefix(tok, "sport=")) {
				if (nsport++ == 1)
					rsport = (unsigned)strtoul(tok + 6, NULL, 10);
			} else if (str_has_prefix(tok, "dport=")) {
				if (ndport++ == 0)
					odport = (unsigned)strtoul(tok + 6, NULL, 10);
			}
		}
		if (ip_is_set(&odst) && ip_is_set(&rsrc))
			ct_add(m, l4, &odst, odport, &rsrc, rsport, l4 == IPPROTO_TCP && est);
	}
	fclose(f);
	return 0;
}

struct tuple {
	struct ipaddr src, dst;
	unsigned l4, sport, dport;
};

static int attr_cb(const struct nlattr *a, void *data)
{
	const struct nlattr **tb = data;
	int type = mnl_attr_get_type(a);
	if (type <= CTA_MAX) /* every nested table here is smaller than CTA_MAX */
		tb[type] = a;
	return MNL_CB_OK;
}

static void ip_from(struct ipaddr *ip, int family, const void *p)
{
	memset(ip, 0, sizeof(*ip));
	ip->family = family;
	memcpy(ip->b, p, family == AF_INET ? 4 : 16);
}

static void parse_tuple(const struct nlattr *nest, struct tuple *t)
{
	const struct nlattr *tb[CTA_MAX + 1] = {0}, *ipb[CTA_MAX + 1] = {0}, *pb[CTA_MAX + 1] = {0};
	memset(t, 0, sizeof(*t));
	mnl_attr_parse_nested(nest, attr_cb, tb);
	if (tb[CTA_TUPLE_IP]) {
		mnl_attr_parse_nested(tb[CTA_TUPLE_IP], attr_cb, ipb);
		if (ipb[CTA_IP_V4_SRC])
			ip_from(&t->src, AF_INET, mnl_attr_get_payload(ipb[CTA_IP_V4_SRC]));
		if (ipb[CTA_IP_V4_DST])
			ip_from(&t->dst, AF_INET, mnl_attr_get_payload(ipb[CTA_IP_V4_DST]));
		if (ipb[CTA_IP_V6_SRC])
			ip_from(&t->src, AF_INET6, mnl_attr_get_payload(ipb[CTA_IP_V6_SRC]));
		if (ipb[CTA_IP_V6_DST])
			ip_from(&t->dst, AF_INET6, mnl_attr_get_payload(ipb[CTA_IP_V6_DST]));
	}
	if (tb[CTA_TUPLE_PROTO]) {
		mnl_attr_parse_nested(tb[CTA_TUPLE_PROTO], attr_cb, pb);
		if (pb[CTA_PROTO_NUM])
			t->l4 = mnl_attr_get_u8(pb[CTA_PROTO_NUM]);
		if (pb[CTA_PROTO_SRC_PORT])
			t->sport = ntohs(mnl_attr_get_u16(pb[CTA_PROTO_SRC_PORT]));
		if (pb[CTA_PROTO_DST_PORT])
			t->dport = ntohs(mnl_attr_get_u16(pb[CTA_PROTO_DST_PORT]));
	}
}

static int ct_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct smap *m = arg;
	const struct nlattr *tb[CTA_MAX + 1] = {0};
	mnl_attr_parse(nlh, sizeof(struct nfgenmsg), attr_cb, tb);
	if (!tb[CTA_TUPLE_ORIG] || !tb[CTA_TUPLE_REPLY])
		return MNL_CB_OK;
	struct tuple o, r;
	parse_tuple(tb[CTA_TUPLE_ORIG], &o);
	parse_tuple(tb[CTA_TUPLE_REPLY], &r);
	bool est = false;
	if (o.l4 == IPPROTO_TCP && tb[CTA_PROTOINFO]) {
		const struct nlattr *pi[CTA_MAX + 1] = {0}, *tcp[CTA_MAX + 1] = {0};
		mnl_attr_parse_nested(tb[CTA_PROTOINFO], attr_cb, pi);
		if (pi[CTA_PROTOINFO_TCP]) {
			mnl_attr_parse_nested(pi[CTA_PROTOINFO_TCP], attr_cb, tcp);
			if (tcp[CTA_PROTOINFO_TCP_STATE])
				est = mnl_attr_get_u8(tcp[CTA_PROTOINFO_TCP_STATE]) ==
				      TCP_CONNTRACK_ESTABLISHED;
		}
	}
	if (ip_is_set(&o.dst) && ip_is_set(&r.src))
		ct_add(m, o.l4, &o.dst, o.dport, &r.src, r.sport, est);
	return MNL_CB_OK;
}

static int ct_read_netlink(struct smap *m)
{
	struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
	if (!nl)
		return -errno;
	int r = 0;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		r = -errno;
		goto out;
	}
	char *buf = xmalloc(MNL_SOCKET_BUFFER_SIZE);
	uint32_t seq = (uint32_t)time(NULL), portid = mnl_socket_get_portid(nl);
	static const uint8_t fams[] = {AF_INET, AF_INET6};
	for (size_t f = 0; f < ARRAY_SIZE(fams) && !r; f++) {
		struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
		nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
		nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
		nlh->nlmsg_seq = ++seq;
		struct nfgenmsg *nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
		nfg->nfgen_family = fams[f];
		nfg->version = NFNETLINK_V0;
		nfg->res_id = 0;
		if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
			r = -errno;
			break;
		}
		for (;;) {
			ssize_t n = mnl_socket_recvfrom(nl, buf, MNL_SOCKET_BUFFER_SIZE);
			if (n < 0) {
				r = -errno;
				break;
			}
			int cr = mnl_cb_run(buf, (size_t)n, seq, portid, ct_cb, m);
			if (cr < 0) {
				r = -errno;
				break;
			}
			if (cr == MNL_CB_STOP)
				break;
		}
	}
	free(buf);
out:
	mnl_socket_close(nl);
	return r;
}

/* ---- the command ---- */

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: twill svc list [--state-dir DIR | --manifests DIR --node NAME] [-o json]\n"
	    "\n"
	    "  The Service table of one node, as `ipvsadm -Ln` shows it: each Service\n"
	    "  address:port with its scheduler and flags, each backend with forwarding,\n"
	    "  weight and active/inactive connections (from conntrack in the current network\n"
	    "  namespace, so run it in the node's namespace).\n"
	    "\n"
	    "  --state-dir DIR      read DIR/%s, written by the node's agent (default %s)\n"
	    "  --manifests DIR      plan the manifests in DIR instead (no agent needed)\n"
	    "  --node NAME          ... for this Node (NodePorts on its InternalIPs)\n"
	    "  --conntrack SOURCE   auto | proc | netlink (default auto: /proc/net/nf_conntrack\n"
	    "                       when present, else a ctnetlink dump)\n"
	    "  -o json              machine-readable output\n"
	    "\n"
	    "  In the lab: twill lab exec ctr -- twill svc list --state-dir "
	    "/run/twill/lab/<lab>/nodes/ctr\n",
	    TWILL_SERVICES_FILE, TWILL_DEFAULT_STATE_DIR);
}

static void diag_print(const struct diag *d, void *arg)
{
	(void)arg;
	char buf[512];
	fprintf(stderr, "twill svc: %s\n", diag_fmt(d, buf, sizeof(buf)));
}

/* services.json content planned from a manifest directory (what the node's agent would
 * write), or NULL after printing why. */
static char *plan_manifests(const char *dir, const char *node)
{
	struct store *s = store_new();
	int lr = source_dir_load(s, dir, diag_print, NULL);
	if (lr < 0) {
		fprintf(stderr, "twill svc: %s: %s\n", dir, strerror(-lr));
		store_free(s);
		return NULL;
	}
	struct ipaddr addrs[8];
	size_t n = svc_node_addrs(store_get(s, KIND_NODE, NULL, node), addrs, ARRAY_SIZE(addrs));
	struct svc_plan_in in = {node, addrs, n};
	struct svc_planner *sp = svc_planner_new(s, &in);
	svc_planner_update(sp, NULL);
	char *out = svc_services_json(sp, node, "planned from manifests");
	svc_planner_free(sp);
	store_free(s);
	return out;
}

static const char *jstr(json_object *o, const char *key, const char *dflt)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return dflt;
	return json_object_get_string(v);
}

static int64_t jint(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

static bool jbool(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

/* Add "activeConn"/"inactiveConn" to every backend of every entry. */
static void add_counts(json_object *list, const struct smap *ct)
{
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		json_object *e = json_object_array_get_idx(list, i), *bs;
		struct ipaddr vip;
		if (ip_parse(jstr(e, "address", ""), &vip) < 0)
			continue;
		int p = proto_parse(jstr(e, "protocol", ""));
		unsigned l4 = p == PROTO_UDP ? IPPROTO_UDP : p == PROTO_SCTP ? 132 : IPPROTO_TCP;
		if (!json_object_object_get_ex(e, "backends", &bs) ||
		    !json_object_is_type(bs, json_type_array))
			continue;
		for (size_t k = 0; k < json_object_array_length(bs); k++) {
			json_object *b = json_object_array_get_idx(bs, k);
			struct ipaddr bip;
			struct ct_count cnt = {0};
			if (ip_parse(jstr(b, "ip", ""), &bip) == 0) {
				char key[2 * IP_STRLEN + 32];
				ct_key(key, sizeof(key), l4, &vip, (unsigned)jint(e, "port"), &bip,
				       (unsigned)jint(b, "port"));
				const struct ct_count *c = smap_get(ct, key);
				if (c)
					cnt = *c;
			}
			json_object_object_add(b, "activeConn", json_object_new_int64(cnt.active));
			json_object_object_add(b, "inactiveConn",
					       json_object_new_int64(cnt.inactive));
		}
	}
}

static void print_table(json_object *root)
{
	json_object *list = NULL, *errs = NULL;
	json_object_object_get_ex(root, "services", &list);
	printf("twill Service table (%s), node %s\n", jstr(root, "dataplane", "?"),
	       jstr(root, "node", "?"));
	printf("Prot LocalAddress:Port Scheduler Flags\n"
	       "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
	for (size_t i = 0; list && i < json_object_array_length(list); i++) {
		json_object *e = json_object_array_get_idx(list, i), *bs = NULL;
		struct ipaddr vip = {0};
		ip_parse(jstr(e, "address", ""), &vip);
		char addr[IP_STRLEN + 16], flags[128] = "";
		if (vip.family == AF_INET6)
			snprintf(addr, sizeof(addr), "[%s]:%" PRId64, jstr(e, "address", "?"),
				 jint(e, "port"));
		else
			snprintf(addr, sizeof(addr), "%s:%" PRId64, jstr(e, "address", "?"),
				 jint(e, "port"));
		size_t off = 0;
		if (jint(e, "affinityTimeout"))
			off += (size_t)snprintf(flags + off, sizeof(flags) - off,
						" persistent %" PRId64, jint(e, "affinityTimeout"));
		const char *verdict = jstr(e, "verdict", "forward");
		if (strcmp(verdict, "forward"))
			off += (size_t)snprintf(flags + off, sizeof(flags) - off, " %s", verdict);
		if (jbool(e, "masquerade") && off < sizeof(flags))
			snprintf(flags + off, sizeof(flags) - off, " masq");
		printf("%-4s %s %s%s  # %s %s\n", jstr(e, "protocol", "?"), addr,
		       jstr(e, "scheduler", "random"), flags, jstr(e, "service", "?"),
		       jstr(e, "scope", "?"));
		json_object_object_get_ex(e, "backends", &bs);
		for (size_t k = 0; bs && k < json_object_array_length(bs); k++) {
			json_object *b = json_object_array_get_idx(bs, k);
			char rs[IP_STRLEN + 16];
			if (vip.family == AF_INET6)
				snprintf(rs, sizeof(rs), "[%s]:%" PRId64, jstr(b, "ip", "?"),
					 jint(b, "port"));
			else
				snprintf(rs, sizeof(rs), "%s:%" PRId64, jstr(b, "ip", "?"),
					 jint(b, "port"));
			int64_t wt = jint(b, "weight");
			printf("  -> %-28s %-7s %-6" PRId64 " %-10" PRId64 " %" PRId64 "\n", rs, "Masq",
			       wt ? wt : 1, jint(b, "activeConn"), jint(b, "inactiveConn"));
		}
	}
	if (json_object_object_get_ex(root, "errors", &errs) &&
	    json_object_is_type(errs, json_type_object) && json_object_object_length(errs)) {
		printf("\nerrors:\n");
		json_object_object_foreach(errs, k, v)
		    printf("  %s: %s\n", k, json_object_get_string(v));
	}
}

/* ---- IPVS (--proxy ipvs; ipvs_list.c): the kernel's IPVS table replaces the conntrack
 * counts and adds IPVS's own counters, as `ipvsadm -Ln --stats` shows them ---- */
static void ipvs_counts(json_object *root, json_object *list)
{
	if (!strcmp(jstr(root, "dataplane", ""), "ipvs"))
		ipvs_annotate_listing(list);
}
/* ---- end IPVS ---- */

static int list_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"state-dir", required_argument, NULL, 's'},
	    {"manifests", required_argument, NULL, 'm'},
	    {"node", required_argument, NULL, 'n'},
	    {"conntrack", required_argument, NULL, 'c'},
	    {"output", required_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *sdir = NULL, *mdir = NULL, *node = NULL, *fmt = "table", *ctsrc = "auto";
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "s:m:n:c:o:h", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			sdir = optarg;
			break;
		case 'm':
			mdir = optarg;
			break;
		case 'n':
			node = optarg;
			break;
		case 'c':
			ctsrc = optarg;
			break;
		case 'o':
			fmt = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc || (strcmp(fmt, "json") && strcmp(fmt, "table")) ||
	    (strcmp(ctsrc, "auto") && strcmp(ctsrc, "proc") && strcmp(ctsrc, "netlink")) ||
	    (mdir && sdir) || (mdir && !node) || (node && !mdir)) {
		usage(stderr);
		return 2;
	}
	char *data = NULL;
	if (mdir) {
		data = plan_manifests(mdir, node);
		if (!data)
			return 1;
	} else {
		if (!sdir)
			sdir = TWILL_DEFAULT_STATE_DIR;
		char *path = xasprintf("%s/%s", sdir, TWILL_SERVICES_FILE);
		size_t len;
		int r = file_read(path, &data, &len);
		if (r < 0) {
			fprintf(stderr,
				"twill svc: cannot read %s: %s (is the agent running with "
				"--state-dir %s and --proxy on?)\n",
				path, strerror(-r), sdir);
			free(path);
			return 1;
		}
		free(path);
	}
	json_object *root = json_tokener_parse(data);
	free(data);
	json_object *list;
	if (!root || !json_object_object_get_ex(root, "services", &list) ||
	    !json_object_is_type(list, json_type_array)) {
		fprintf(stderr, "twill svc: services file is not what the agent writes\n");
		json_object_put(root);
		return 1;
	}
	struct smap ct = SMAP_INIT;
	int r = -ENOENT;
	if (strcmp(ctsrc, "netlink"))
		r = ct_read_proc(&ct);
	if (r < 0 && strcmp(ctsrc, "proc"))
		r = ct_read_netlink(&ct);
	if (r < 0)
		fprintf(stderr, "twill svc: conntrack not readable (%s): counts are 0\n",
			strerror(-r));
	add_counts(list, &ct);
	smap_clear(&ct, free);
	ipvs_counts(root, list);
	if (!strcmp(fmt, "json"))
		printf("%s\n", json_object_to_json_string_ext(
				   root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	else
		print_table(root);
	json_object_put(root);
	return 0;
}

int svc_main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "list"))
		return list_main(argc - 1, argv + 1);
	fprintf(stderr, "twill svc: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
