/* Unit tests for proxy/ipvs: the IPVS generic netlink messages (built, then read back
 * attribute by attribute), the parsing of dump replies, and the diff of one virtual service
 * against the kernel's, and what the writer wants from the Service planner's entries
 * (schedulers, persistence, weights, and the references it counts for kube-ipvs0's
 * addresses and the nftables sets) -- all without a kernel.  The host kernel may lack ip_vs: the
 * one kernel test checks that opening the family then fails with a clear error, in a forked child's
 * own network namespace. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four above first */

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/ip_vs.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model/manifest.h"
#include "proxy/ipvs.h"
#include "store/store.h"

#define FAMILY 0x1234

static struct ipaddr ip4(const char *s)
{
	struct ipaddr a;
	assert_int_equal(ip_parse(s, &a), 0);
	return a;
}

static struct ipvs_service svc(const char *ip, uint16_t port, const char *sched)
{
	struct ipvs_service s = {
	    .addr = ip4(ip), .proto = IPPROTO_TCP, .port = port, .netmask = 0xffffffffu};
	snprintf(s.sched, sizeof(s.sched), "%s", sched);
	return s;
}

static void add_dest(struct ipvs_service *s, const char *ip, uint16_t port, uint32_t weight)
{
	struct ipvs_dest d = {.addr = ip4(ip), .port = port, .weight = weight};
	ipvs_service_add_dest(s, &d);
	ipvs_service_sort_dests(s);
}

static int cb(const struct nlattr *a, void *data)
{
	const struct nlattr **tb = data;
	if (mnl_attr_get_type(a) < 32)
		tb[mnl_attr_get_type(a)] = a;
	return MNL_CB_OK;
}

/* The nest `which` of a built message, its attributes in tb. */
static void nest_of(const struct nlmsghdr *nlh, uint16_t which, const struct nlattr **tb)
{
	const struct nlattr *top[32] = {0};
	assert_true(mnl_attr_parse(nlh, sizeof(struct genlmsghdr), cb, top) >= 0);
	assert_non_null(top[which]);
	memset(tb, 0, 32 * sizeof(*tb));
	assert_true(mnl_attr_parse_nested(top[which], cb, tb) >= 0);
}

static void test_build_service(void **state)
{
	(void)state;
	char buf[IPVS_MSG_MAX] __attribute__((aligned(8)));
	struct ipvs_service s = svc("10.96.0.10", 80, "rr");
	s.flags = IP_VS_SVC_F_PERSISTENT | IP_VS_SVC_F_HASHED;
	s.timeout = 60;
	struct nlmsghdr *nlh = ipvs_build_service(buf, FAMILY, IPVS_CMD_NEW_SERVICE, NLM_F_ACK, &s);
	assert_int_equal(nlh->nlmsg_type, FAMILY);
	assert_int_equal(nlh->nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK);
	const struct genlmsghdr *g = mnl_nlmsg_get_payload(nlh);
	assert_int_equal(g->cmd, IPVS_CMD_NEW_SERVICE);
	assert_int_equal(g->version, IPVS_GENL_VERSION);
	const struct nlattr *tb[32];
	nest_of(nlh, IPVS_CMD_ATTR_SERVICE, tb);
	assert_int_equal(mnl_attr_get_u16(tb[IPVS_SVC_ATTR_AF]), AF_INET);
	assert_int_equal(mnl_attr_get_u16(tb[IPVS_SVC_ATTR_PROTOCOL]), IPPROTO_TCP);
	assert_int_equal(mnl_attr_get_payload_len(tb[IPVS_SVC_ATTR_ADDR]), 16);
	const uint8_t want_addr[16] = {10, 96, 0, 10};
	assert_memory_equal(mnl_attr_get_payload(tb[IPVS_SVC_ATTR_ADDR]), want_addr, 16);
	assert_int_equal(mnl_attr_get_u16(tb[IPVS_SVC_ATTR_PORT]), htons(80));
	assert_string_equal(mnl_attr_get_str(tb[IPVS_SVC_ATTR_SCHED_NAME]), "rr");
	const struct ip_vs_flags *f = mnl_attr_get_payload(tb[IPVS_SVC_ATTR_FLAGS]);
	assert_int_equal(f->flags, IP_VS_SVC_F_PERSISTENT); /* HASHED is the kernel's own */
	assert_int_equal(f->mask, 0xffffffffu);
	assert_int_equal(mnl_attr_get_u32(tb[IPVS_SVC_ATTR_TIMEOUT]), 60);
	assert_int_equal(mnl_attr_get_u32(tb[IPVS_SVC_ATTR_NETMASK]), 0xffffffffu);
	assert_null(tb[IPVS_SVC_ATTR_FWMARK]);

	/* a delete names the service only */
	nlh = ipvs_build_service(buf, FAMILY, IPVS_CMD_DEL_SERVICE, NLM_F_ACK, &s);
	nest_of(nlh, IPVS_CMD_ATTR_SERVICE, tb);
	assert_non_null(tb[IPVS_SVC_ATTR_ADDR]);
	assert_null(tb[IPVS_SVC_ATTR_SCHED_NAME]);
	assert_null(tb[IPVS_SVC_ATTR_FLAGS]);
	/* a dump carries nothing */
	nlh = ipvs_build_service(buf, FAMILY, IPVS_CMD_GET_SERVICE, NLM_F_DUMP, NULL);
	assert_int_equal(nlh->nlmsg_len, mnl_nlmsg_size(sizeof(struct genlmsghdr)));
	assert_true(nlh->nlmsg_flags & NLM_F_DUMP);
}

static void test_build_dest(void **state)
{
	(void)state;
	char buf[IPVS_MSG_MAX] __attribute__((aligned(8)));
	struct ipvs_service s = svc("192.168.10.100", 30080, "lc");
	s.proto = IPPROTO_UDP;
	struct ipvs_dest d = {.addr = ip4("10.244.1.5"), .port = 8080, .weight = 3};
	struct nlmsghdr *nlh = ipvs_build_dest(buf, FAMILY, IPVS_CMD_NEW_DEST, NLM_F_ACK, &s, &d);
	const struct genlmsghdr *g = mnl_nlmsg_get_payload(nlh);
	assert_int_equal(g->cmd, IPVS_CMD_NEW_DEST);
	const struct nlattr *tb[32];
	nest_of(nlh, IPVS_CMD_ATTR_SERVICE, tb);
	assert_int_equal(mnl_attr_get_u16(tb[IPVS_SVC_ATTR_PROTOCOL]), IPPROTO_UDP);
	assert_int_equal(mnl_attr_get_u16(tb[IPVS_SVC_ATTR_PORT]), htons(30080));
	assert_null(tb[IPVS_SVC_ATTR_SCHED_NAME]); /* the service is only named */
	nest_of(nlh, IPVS_CMD_ATTR_DEST, tb);
	const uint8_t want_addr[16] = {10, 244, 1, 5};
	assert_memory_equal(mnl_attr_get_payload(tb[IPVS_DEST_ATTR_ADDR]), want_addr, 16);
	assert_int_equal(mnl_attr_get_u16(tb[IPVS_DEST_ATTR_PORT]), htons(8080));
	assert_int_equal(mnl_attr_get_u32(tb[IPVS_DEST_ATTR_FWD_METHOD]), IP_VS_CONN_F_MASQ);
	assert_int_equal(mnl_attr_get_u32(tb[IPVS_DEST_ATTR_WEIGHT]), 3);
	assert_int_equal(mnl_attr_get_u32(tb[IPVS_DEST_ATTR_U_THRESH]), 0);
	assert_int_equal(mnl_attr_get_u32(tb[IPVS_DEST_ATTR_L_THRESH]), 0);
	assert_int_equal(mnl_attr_get_u16(tb[IPVS_DEST_ATTR_ADDR_FAMILY]), AF_INET);

	nlh = ipvs_build_dest(buf, FAMILY, IPVS_CMD_DEL_DEST, NLM_F_ACK, &s, &d);
	nest_of(nlh, IPVS_CMD_ATTR_DEST, tb);
	assert_non_null(tb[IPVS_DEST_ATTR_ADDR]);
	assert_null(tb[IPVS_DEST_ATTR_WEIGHT]);
	/* the dest dump of one service: the service, no dest */
	nlh = ipvs_build_dest(buf, FAMILY, IPVS_CMD_GET_DEST, NLM_F_DUMP, &s, NULL);
	const struct nlattr *top[32] = {0};
	assert_true(mnl_attr_parse(nlh, sizeof(struct genlmsghdr), cb, top) >= 0);
	assert_non_null(top[IPVS_CMD_ATTR_SERVICE]);
	assert_null(top[IPVS_CMD_ATTR_DEST]);
}

/* Replies have the requests' layout plus counters: parse what was built, with stats added. */
static void test_parse(void **state)
{
	(void)state;
	char buf[IPVS_MSG_MAX] __attribute__((aligned(8)));
	struct ipvs_service s = svc("10.96.0.12", 443, "sh");
	s.flags = IP_VS_SVC_F_PERSISTENT;
	s.timeout = 10800;
	struct nlmsghdr *nlh = ipvs_build_service(buf, FAMILY, IPVS_CMD_NEW_SERVICE, 0, &s);
	/* append a STATS64 nest inside the service nest, as the kernel does */
	struct nlattr *svcnest = (struct nlattr *)((char *)mnl_nlmsg_get_payload(nlh) +
						   MNL_ALIGN(sizeof(struct genlmsghdr)));
	struct nlattr *st = mnl_attr_nest_start(nlh, IPVS_SVC_ATTR_STATS64);
	mnl_attr_put_u64(nlh, IPVS_STATS_ATTR_CONNS, 7);
	mnl_attr_put_u64(nlh, IPVS_STATS_ATTR_INBYTES, 1ull << 40);
	mnl_attr_nest_end(nlh, st);
	svcnest->nla_len = (uint16_t)((char *)mnl_nlmsg_get_payload_tail(nlh) - (char *)svcnest);
	struct ipvs_service p;
	assert_int_equal(ipvs_parse_service(nlh, &p), 0);
	assert_int_equal(ipvs_service_cmp(&p, &s), 0);
	assert_true(ipvs_service_same(&p, &s));
	assert_string_equal(p.sched, "sh");
	assert_int_equal(p.timeout, 10800);
	assert_int_equal(p.stats.conns, 7);
	assert_int_equal(p.stats.inbytes, 1ull << 40);
	char k[64];
	assert_string_equal(ipvs_service_key(&p, k, sizeof(k)), "TCP 10.96.0.12:443");

	struct ipvs_dest d = {.addr = ip4("10.244.2.9"), .port = 80, .weight = 1};
	nlh = ipvs_build_dest(buf, FAMILY, IPVS_CMD_NEW_DEST, 0, &s, &d);
	struct ipvs_dest pd;
	assert_int_equal(ipvs_parse_dest(nlh, &pd, NULL), 0);
	assert_int_equal(ipvs_dest_cmp(&pd, &d), 0);
	assert_int_equal(pd.weight, 1);
	assert_int_equal(pd.fwd, IP_VS_CONN_F_MASQ);
	/* the counters go to their own struct (the wanted state has none): append
	 * ACTIVE_CONNS inside the dest nest, as a dump reply has it */
	struct nlattr *dnest = (struct nlattr *)((char *)mnl_nlmsg_get_payload(nlh) +
						 MNL_ALIGN(sizeof(struct genlmsghdr)));
	dnest = (struct nlattr *)((char *)dnest + MNL_ALIGN(dnest->nla_len)); /* after SERVICE */
	mnl_attr_put_u32(nlh, IPVS_DEST_ATTR_ACTIVE_CONNS, 4);
	dnest->nla_len = (uint16_t)((char *)mnl_nlmsg_get_payload_tail(nlh) - (char *)dnest);
	struct ipvs_dest_counters pc;
	assert_int_equal(ipvs_parse_dest(nlh, &pd, &pc), 0);
	assert_int_equal(pc.active, 4);
	assert_int_equal(pd.weight, 1);

	/* malformed: no service nest, a truncated message */
	nlh = ipvs_build_service(buf, FAMILY, IPVS_CMD_GET_SERVICE, NLM_F_DUMP, NULL);
	assert_int_equal(ipvs_parse_service(nlh, &p), -EINVAL);
	assert_int_equal(ipvs_parse_dest(nlh, &pd, NULL), -EINVAL);
	nlh->nlmsg_len = 8;
	assert_int_equal(ipvs_parse_service(nlh, &p), -EINVAL);
}

static size_t count(const struct ipvs_ops *o, enum ipvs_op_kind k)
{
	size_t n = 0;
	for (size_t i = 0; i < o->n; i++)
		n += o->v[i].kind == k;
	return n;
}

static void test_diff(void **state)
{
	(void)state;
	struct ipvs_service want = svc("10.96.0.10", 80, "rr");
	add_dest(&want, "10.244.0.5", 80, 1);
	add_dest(&want, "10.244.1.5", 80, 1);
	add_dest(&want, "10.244.2.5", 80, 1);
	struct ipvs_ops ops = {0};

	/* new: the service, then its real servers */
	assert_int_equal(ipvs_diff_service(&want, NULL, &ops), 4);
	assert_int_equal(ops.v[0].kind, IPVS_OP_ADD_SVC);
	assert_int_equal(count(&ops, IPVS_OP_ADD_DEST), 3);
	ipvs_ops_free(&ops);

	/* the kernel's copy: flagged HASHED, with counters: nothing to do */
	struct ipvs_service have;
	ipvs_service_copy(&have, &want);
	have.flags |= IP_VS_SVC_F_HASHED;
	have.stats.conns = 99;
	have.ctrs = calloc(have.cap, sizeof(*have.ctrs));
	have.ctrs[1].active = 5;
	assert_int_equal(ipvs_diff_service(&want, &have, &ops), 0);

	/* one endpoint more: one real server added, nothing else */
	add_dest(&want, "10.244.1.6", 80, 1);
	assert_int_equal(ipvs_diff_service(&want, &have, &ops), 1);
	assert_int_equal(ops.v[0].kind, IPVS_OP_ADD_DEST);
	assert_int_equal(ops.v[0].dest->addr.v4.s_addr, ip4("10.244.1.6").v4.s_addr);
	ipvs_ops_free(&ops);

	/* weight and scheduler changed in place; a replaced endpoint: delete, then add */
	ipvs_service_clear(&want);
	want = svc("10.96.0.10", 80, "wlc");
	add_dest(&want, "10.244.0.5", 80, 5);
	add_dest(&want, "10.244.1.5", 80, 1);
	add_dest(&want, "10.244.2.7", 80, 1);
	assert_int_equal(ipvs_diff_service(&want, &have, &ops), 4);
	assert_int_equal(ops.v[0].kind, IPVS_OP_SET_SVC);
	assert_int_equal(ops.v[1].kind, IPVS_OP_DEL_DEST);
	assert_int_equal(ops.v[1].dest->addr.v4.s_addr, ip4("10.244.2.5").v4.s_addr);
	assert_int_equal(count(&ops, IPVS_OP_SET_DEST), 1);
	assert_int_equal(count(&ops, IPVS_OP_ADD_DEST), 1);
	assert_int_equal(ops.v[3].kind, IPVS_OP_ADD_DEST); /* additions after deletions */
	ipvs_ops_free(&ops);

	/* persistence on: a change of the service only */
	ipvs_service_clear(&want);
	ipvs_service_copy(&want, &have);
	want.flags = IP_VS_SVC_F_PERSISTENT;
	want.timeout = 10800;
	assert_int_equal(ipvs_diff_service(&want, &have, &ops), 1);
	assert_int_equal(ops.v[0].kind, IPVS_OP_SET_SVC);
	ipvs_ops_free(&ops);

	/* gone: one delete takes its real servers with it */
	assert_int_equal(ipvs_diff_service(NULL, &have, &ops), 1);
	assert_int_equal(ops.v[0].kind, IPVS_OP_DEL_SVC);
	assert_string_equal(ipvs_op_name(ops.v[0].kind), "delete service");
	ipvs_ops_free(&ops);
	assert_int_equal(ipvs_diff_service(NULL, NULL, &ops), 0);
	ipvs_service_clear(&want);
	ipvs_service_clear(&have);
}

static void test_table_and_sched(void **state)
{
	(void)state;
	assert_true(ipvs_sched_known("rr"));
	assert_true(ipvs_sched_known("lc"));
	assert_true(ipvs_sched_known("nq"));
	assert_false(ipvs_sched_known("random"));
	assert_false(ipvs_sched_known(""));
	assert_false(ipvs_sched_known(NULL));
	assert_string_equal(ipvs_sched_for(NULL, "sed"), "sed");

	struct ipvs_table t = {.n = 3, .cap = 3};
	t.v = calloc(3, sizeof(*t.v));
	t.v[0] = svc("10.96.0.1", 443, "rr");
	t.v[1] = svc("10.96.0.10", 53, "rr");
	t.v[1].proto = IPPROTO_UDP;
	t.v[2] = svc("10.96.0.10", 80, "rr");
	struct ipvs_service k = svc("10.96.0.10", 53, "");
	assert_null(ipvs_table_find(&t, &k)); /* TCP */
	k.proto = IPPROTO_UDP;
	assert_ptr_equal(ipvs_table_find(&t, &k), &t.v[1]);
	ipvs_table_free(&t);
	assert_int_equal(t.n, 0);
}

/* ---- the writer's wanted state, from Services in a store ---- */

static void diag_fail(const struct diag *d, void *arg)
{
	(void)arg;
	char buf[512];
	fail_msg("decode: %s", diag_fmt(d, buf, sizeof(buf)));
}

static void put(struct store *st, const char *origin, const char *yaml)
{
	struct objlist l = {0};
	if (yaml)
		assert_int_equal(manifest_decode("t.yaml", yaml, strlen(yaml), &l, diag_fail, NULL),
				 0);
	assert_int_equal(store_replace_origin(st, origin, false, &l, diag_fail, NULL), 0);
	objlist_free(&l);
}

static const char *WEB =
    "apiVersion: v1\nkind: Service\n"
    "metadata: {name: web, namespace: default, annotations: {twill.io/lb-scheduler: wrr,"
    " twill.io/lb-weights: '10.244.1.2=3'}}\n"
    "spec:\n  type: NodePort\n  clusterIP: 10.96.0.10\n  selector: {app: web}\n"
    "  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]\n"
    "---\napiVersion: v1\nkind: Service\nmetadata: {name: empty, namespace: default}\n"
    "spec:\n  clusterIP: 10.96.0.12\n  selector: {app: none}\n  ports: [{port: 80}]\n"
    "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
    "metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}\n"
    "addressType: IPv4\nports: [{port: 8080, protocol: TCP}]\n"
    "endpoints:\n- addresses: [10.244.1.2]\n  nodeName: n1\n- addresses: [10.244.2.2]\n"
    "  nodeName: n2\n";

static const char *AFF =
    "apiVersion: v1\nkind: Service\n"
    "metadata: {name: aff, namespace: default, annotations: {twill.io/lb-scheduler: lc}}\n"
    "spec:\n  clusterIP: 10.96.0.11\n  selector: {app: web}\n  sessionAffinity: ClientIP\n"
    "  sessionAffinityConfig: {clientIP: {timeoutSeconds: 100}}\n"
    "  ports: [{protocol: UDP, port: 53, targetPort: 8080}]\n"
    "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
    "metadata: {name: aff-1, namespace: default, labels: {kubernetes.io/service-name: aff}}\n"
    "addressType: IPv4\nports: [{port: 8080, protocol: UDP}]\n"
    "endpoints:\n- addresses: [10.244.1.2]\n  nodeName: n1\n";

static unsigned refs(const struct ipvs_writer *w, const char *set, const char *ip, uint8_t l4,
		     uint16_t port)
{
	struct ipvs_service k = {.addr = ip4(ip), .proto = l4, .port = port};
	return ipvs_writer_elem_refs(w, set, &k);
}

static const struct ipvs_service *wanted(const struct ipvs_table *t, const char *ip, uint8_t l4,
					 uint16_t port)
{
	struct ipvs_service k = {.addr = ip4(ip), .proto = l4, .port = port};
	return ipvs_table_find(t, &k);
}

static void test_writer_wants(void **state)
{
	(void)state;
	struct store *st = store_new();
	struct ipaddr node = ip4("192.168.1.10");
	struct svc_planner *sp = svc_planner_new(st, &(struct svc_plan_in){"n1", &node, 1});
	struct ipprefix cidr;
	assert_int_equal(prefix_parse("10.244.0.0/16", &cidr), 0);
	struct ipvs_writer *w =
	    ipvs_writer_new(sp, st, &(struct ipvs_cfg){.scheduler = "sed", .cluster_cidr = &cidr});
	put(st, "web.yaml", WEB);
	put(st, "aff.yaml", AFF);
	assert_int_equal(ipvs_writer_plan(w), 3);

	struct ipvs_table t = {0};
	ipvs_writer_wanted(w, &t);
	assert_int_equal(t.n, 4);
	const struct ipvs_service *s = wanted(&t, "10.96.0.10", IPPROTO_TCP, 80);
	assert_non_null(s);
	assert_string_equal(s->sched, "wrr"); /* the annotation names an IPVS scheduler */
	assert_int_equal(s->flags, 0);
	assert_int_equal(s->ndests, 2);
	assert_int_equal(s->dests[0].addr.v4.s_addr, ip4("10.244.1.2").v4.s_addr);
	assert_int_equal(s->dests[0].port, 8080);
	assert_int_equal(s->dests[0].weight, 3); /* weights from the planner */
	assert_int_equal(s->dests[1].weight, 1);
	assert_int_equal(s->dests[0].fwd, IP_VS_CONN_F_MASQ);
	s = wanted(&t, "192.168.1.10", IPPROTO_TCP, 30080); /* NodePort on the node address */
	assert_non_null(s);
	assert_string_equal(s->sched, "wrr");
	assert_int_equal(s->ndests, 2);
	s = wanted(&t, "10.96.0.11", IPPROTO_UDP, 53);
	assert_non_null(s);
	assert_string_equal(s->sched, "lc"); /* an IPVS-only scheduler */
	assert_int_equal(s->flags, IP_VS_SVC_F_PERSISTENT);
	assert_int_equal(s->timeout, 100);
	assert_int_equal(s->netmask, 0xffffffffu);
	s = wanted(&t, "10.96.0.12", IPPROTO_TCP, 80);
	assert_non_null(s);
	assert_string_equal(s->sched, "sed"); /* no annotation: the writer's default */
	assert_int_equal(s->ndests, 0);

	/* kube-ipvs0 holds the Service addresses, not the node's */
	assert_int_equal(refs(w, "vips", "10.96.0.10", 0, 0), 1);
	assert_int_equal(refs(w, "vips", "10.96.0.11", 0, 0), 1);
	assert_int_equal(refs(w, "vips", "192.168.1.10", 0, 0), 0);
	/* sets: every service; ClusterIPs; masquerade for the NodePort (Cluster policy);
	 * reject without endpoints; a backend's hairpin element per service using it */
	assert_int_equal(refs(w, "services", "192.168.1.10", IPPROTO_TCP, 30080), 1);
	assert_int_equal(refs(w, "cluster-ips", "10.96.0.10", IPPROTO_TCP, 80), 1);
	assert_int_equal(refs(w, "cluster-ips", "192.168.1.10", IPPROTO_TCP, 30080), 0);
	assert_int_equal(refs(w, "masq-services", "192.168.1.10", IPPROTO_TCP, 30080), 1);
	assert_int_equal(refs(w, "masq-services", "10.96.0.10", IPPROTO_TCP, 80), 0);
	assert_int_equal(refs(w, "no-endpoints", "10.96.0.12", IPPROTO_TCP, 80), 1);
	assert_int_equal(refs(w, "no-endpoints", "10.96.0.10", IPPROTO_TCP, 80), 0);
	assert_int_equal(refs(w, "hairpin", "10.244.1.2", 0, 0), 3);
	assert_int_equal(refs(w, "hairpin", "10.244.2.2", 0, 0), 2);

	/* one Service goes: only its references go */
	put(st, "aff.yaml", NULL);
	assert_int_equal(ipvs_writer_plan(w), 1);
	ipvs_writer_wanted(w, &t);
	assert_int_equal(t.n, 3);
	assert_null(wanted(&t, "10.96.0.11", IPPROTO_UDP, 53));
	assert_int_equal(refs(w, "vips", "10.96.0.11", 0, 0), 0);
	assert_int_equal(refs(w, "hairpin", "10.244.1.2", 0, 0), 2);
	assert_int_equal(refs(w, "services", "10.96.0.11", IPPROTO_UDP, 53), 0);
	/* nothing changed: nothing to plan */
	assert_int_equal(ipvs_writer_plan(w), 0);

	ipvs_table_free(&t);
	ipvs_writer_free(w);
	svc_planner_free(sp);
	store_free(st);
}

/* In a namespace of its own: the family resolves where the kernel has IPVS, and fails
 * with the hint to load ip_vs where it has not. */
static void test_kernel(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		skip();
		return;
	}
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (unshare(CLONE_NEWNET) < 0)
			_exit(3);
		struct ipvs_conn c = {0};
		int r = ipvs_open(&c);
		bool has = access("/proc/net/ip_vs", F_OK) == 0;
		if (has) {
			struct ipvs_table t = {0};
			r = r ? r : ipvs_dump(&c, &t, false);
			ipvs_close(&c);
			_exit(r == 0 && t.n == 0 ? 0 : 1); /* a new namespace has no services */
		}
		_exit(r == -ENOENT && strstr(c.err, "modprobe ip_vs") && !c.nl ? 0 : 2);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_build_service),   cmocka_unit_test(test_build_dest),
	    cmocka_unit_test(test_parse),	    cmocka_unit_test(test_diff),
	    cmocka_unit_test(test_table_and_sched), cmocka_unit_test(test_writer_wants),
	    cmocka_unit_test(test_kernel),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
