/* Unit tests for the Service planner (src/proxy/svc_plan.c): entry types, endpoint
 * selection (ready, serving-terminating fallback), traffic policies, affinity, named
 * targetPorts, dual stack, and the incremental planner over the store (only the touched
 * Service is recomputed; NodePort conflicts); and, as root, the nftables writer
 * (src/proxy/nft.c) in a forked child's own network namespace: both families' tables in one
 * sync, and a restarted writer that changes nothing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* cmocka needs the headers above first */
#include <cmocka.h>
#include <json-c/json.h>

#include "in_netns.h"
#include "lib/util.h"
#include "model/manifest.h"
#include "proxy/nft.h"
#include "proxy/svc_list.h"
#include "proxy/svc_plan.h"
#include "store/store.h"

static void diag_fail(const struct diag *d, void *arg)
{
	(void)arg;
	char buf[512];
	fail_msg("decode: %s", diag_fmt(d, buf, sizeof(buf)));
}

static void decode(const char *yaml, struct objlist *out)
{
	assert_int_equal(manifest_decode("test.yaml", yaml, strlen(yaml), out, diag_fail, NULL), 0);
}

static struct ipaddr A(const char *s) {
	struct ipaddr a;
	assert_int_equal(ip_parse(s, &a), 0);
	return a;
}

static const char *SVC_WEB = "apiVersion: v1\n"
			     "kind: Service\n"
			     "metadata: {name: web, namespace: default}\n"
			     "spec:\n"
			     "  type: NodePort\n"
			     "  clusterIP: 10.96.0.10\n"
			     "  selector: {app: web}\n"
			     "  ports:\n"
			     "  - {name: http, port: 80, targetPort: http, nodePort: 30080}\n"
			     "  - {name: dns, port: 53, protocol: UDP, targetPort: 5353}\n";

static const char *EPS_WEB = "apiVersion: discovery.k8s.io/v1\n"
			     "kind: EndpointSlice\n"
			     "metadata:\n"
			     "  name: web-abc\n"
			     "  namespace: default\n"
			     "  labels: {kubernetes.io/service-name: web}\n"
			     "addressType: IPv4\n"
			     "ports:\n"
			     "- {name: http, port: 8080, protocol: TCP}\n"
			     "- {name: dns, port: 5353, protocol: UDP}\n"
			     "endpoints:\n"
			     "- addresses: [10.244.1.2]\n"
			     "  nodeName: n1\n"
			     "  conditions: {ready: true}\n"
			     "- addresses: [10.244.2.2]\n"
			     "  nodeName: n2\n"
			     "- addresses: [10.244.1.3]\n"
			     "  nodeName: n1\n"
			     "  conditions: {ready: false, serving: false}\n";

/* Plan the first Service in objs with the slices in objs. */
static void plan(struct objlist *objs, const struct svc_plan_in *in, struct svc_entries *out)
{
	const struct object *svc = NULL;
	const struct object *sl[8];
	size_t n = 0;
	for (size_t i = 0; i < objs->n; i++) {
		if (objs->v[i]->kind == KIND_SERVICE && !svc)
			svc = objs->v[i];
		else if (objs->v[i]->kind == KIND_ENDPOINTSLICE && n < 8)
			sl[n++] = objs->v[i];
	}
	assert_non_null(svc);
	assert_int_equal(svc_plan_service(svc, sl, n, in, out), 0);
}

static const struct svc_entry *find(const struct svc_entries *e, const char *key)
{
	char buf[128];
	for (size_t i = 0; i < e->n; i++)
		if (!strcmp(svc_entry_key_fmt(&e->v[i], buf, sizeof(buf)), key))
			return &e->v[i];
	return NULL;
}

static bool has_backend(const struct svc_entry *e, const char *ip, uint16_t port)
{
	struct ipaddr a = A(ip);
	for (size_t i = 0; i < e->nbackends; i++)
		if (ip_eq(&e->backends[i].ip, &a) && e->backends[i].port == port)
			return true;
	return false;
}

static void test_cluster_ip_and_node_port(void **state)
{
	(void)state;
	struct objlist objs = {0};
	decode(SVC_WEB, &objs);
	decode(EPS_WEB, &objs);
	struct ipaddr addrs[] = {A("192.168.10.100"), A("fd00::1")};
	struct svc_plan_in in = {"n1", addrs, 2};
	struct svc_entries e = {0};
	plan(&objs, &in, &e);
	/* 2 ClusterIP entries + 1 NodePort (the IPv6 node address has no IPv6 endpoints
	 * and no IPv6 ClusterIP; the NodePort there rejects) */
	char buf[512];
	for (size_t i = 0; i < e.n; i++)
		printf("  %s\n", svc_entry_fmt(&e.v[i], buf, sizeof(buf)));
	const struct svc_entry *http = find(&e, "10.96.0.10:80/TCP");
	assert_non_null(http);
	assert_int_equal(http->scope, SVC_SCOPE_CLUSTER_IP);
	assert_int_equal(http->verdict, SVC_FORWARD);
	assert_string_equal(http->group, "default/web/tcp/80");
	assert_false(http->masquerade);
	assert_int_equal(http->nbackends, 2); /* the not-ready one is left out */
	assert_true(has_backend(http, "10.244.1.2", 8080));
	assert_true(has_backend(http, "10.244.2.2", 8080));
	assert_true(http->backends[0].local);
	assert_false(http->backends[1].local);
	assert_int_equal(http->affinity_timeout, 0);

	const struct svc_entry *dns = find(&e, "10.96.0.10:53/UDP");
	assert_non_null(dns);
	assert_int_equal(dns->nbackends, 2);
	assert_true(has_backend(dns, "10.244.2.2", 5353));

	const struct svc_entry *np = find(&e, "192.168.10.100:30080/TCP");
	assert_non_null(np);
	assert_int_equal(np->scope, SVC_SCOPE_NODE_PORT);
	assert_true(np->masquerade);
	assert_int_equal(np->nbackends, 2);
	assert_string_equal(np->group, "default/web/tcp/80");
	const struct svc_entry *np6 = find(&e, "[fd00::1]:30080/TCP");
	assert_non_null(np6);
	assert_int_equal(np6->verdict, SVC_REJECT);
	assert_int_equal(e.n, 4);
	svc_entries_free(&e);
	objlist_free(&objs);
}

static void test_terminating_fallback(void **state)
{
	(void)state;
	struct objlist objs = {0};
	decode(SVC_WEB, &objs);
	decode("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
	       "metadata: {name: web-x, labels: {kubernetes.io/service-name: web}}\n"
	       "addressType: IPv4\n"
	       "ports: [{name: http, port: 8080}]\n"
	       "endpoints:\n"
	       "- {addresses: [10.244.1.5], conditions: {ready: false, serving: true, "
	       "terminating: true}}\n"
	       "- {addresses: [10.244.1.6], conditions: {ready: false, serving: false, "
	       "terminating: true}}\n"
	       "- {addresses: [10.244.1.7], conditions: {ready: false}}\n",
	       &objs);
	struct svc_entries e = {0};
	plan(&objs, &(struct svc_plan_in){"n1", NULL, 0}, &e);
	const struct svc_entry *http = find(&e, "10.96.0.10:80/TCP");
	assert_non_null(http);
	assert_int_equal(http->nbackends, 1);
	assert_true(has_backend(http, "10.244.1.5", 8080));
	assert_true(http->backends[0].terminating);
	/* the UDP port is not in the slice: no endpoints for it */
	const struct svc_entry *dns = find(&e, "10.96.0.10:53/UDP");
	assert_non_null(dns);
	assert_int_equal(dns->verdict, SVC_REJECT);
	assert_int_equal(dns->nbackends, 0);
	svc_entries_free(&e);

	/* a ready endpoint wins over the terminating one */
	decode("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
	       "metadata: {name: web-y, labels: {kubernetes.io/service-name: web}}\n"
	       "addressType: IPv4\n"
	       "ports: [{name: http, port: 9090}]\n"
	       "endpoints:\n"
	       "- {addresses: [10.244.3.1]}\n",
	       &objs);
	plan(&objs, &(struct svc_plan_in){"n1", NULL, 0}, &e);
	http = find(&e, "10.96.0.10:80/TCP");
	assert_int_equal(http->nbackends, 1);
	assert_true(has_backend(http, "10.244.3.1", 9090));
	svc_entries_free(&e);
	objlist_free(&objs);
}

static void test_traffic_policies(void **state)
{
	(void)state;
	struct objlist objs = {0};
	decode("apiVersion: v1\nkind: Service\n"
	       "metadata: {name: web}\n"
	       "spec:\n"
	       "  type: LoadBalancer\n"
	       "  clusterIP: 10.96.0.10\n"
	       "  externalIPs: [203.0.113.7]\n"
	       "  externalTrafficPolicy: Local\n"
	       "  internalTrafficPolicy: Local\n"
	       "  sessionAffinity: ClientIP\n"
	       "  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}\n"
	       "  ports: [{name: http, port: 80, nodePort: 30080}]\n"
	       "status: {loadBalancer: {ingress: [{ip: 192.168.50.1}]}}\n",
	       &objs);
	decode(EPS_WEB, &objs);
	struct ipaddr addrs[] = {A("192.168.10.100")};
	struct svc_entries e = {0};
	plan(&objs, &(struct svc_plan_in){"n1", addrs, 1}, &e);
	assert_int_equal(e.n, 4);
	const char *keys[] = {"10.96.0.10:80/TCP", "192.168.10.100:30080/TCP", "203.0.113.7:80/TCP",
			      "192.168.50.1:80/TCP"};
	const enum svc_scope scopes[] = {SVC_SCOPE_CLUSTER_IP, SVC_SCOPE_NODE_PORT,
					 SVC_SCOPE_EXTERNAL_IP, SVC_SCOPE_LB};
	for (size_t i = 0; i < 4; i++) {
		const struct svc_entry *x = find(&e, keys[i]);
		assert_non_null(x);
		assert_int_equal(x->scope, scopes[i]);
		assert_int_equal(x->nbackends, 1); /* only n1's ready endpoint */
		assert_true(has_backend(x, "10.244.1.2", 8080));
		assert_false(x->masquerade); /* Local: client address kept */
		assert_string_equal(x->group, "default/web/tcp/80/local");
		assert_int_equal(x->affinity_timeout, 60);
	}
	svc_entries_free(&e);

	/* on a node without endpoints of its own: drop (others have some) */
	plan(&objs, &(struct svc_plan_in){"n3", addrs, 1}, &e);
	for (size_t i = 0; i < e.n; i++) {
		assert_int_equal(e.v[i].verdict, SVC_DROP);
		assert_int_equal(e.v[i].nbackends, 0);
	}
	svc_entries_free(&e);
	objlist_free(&objs);

	/* only not-ready endpoints anywhere: nothing usable, so reject, not drop */
	decode("apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
	       "spec:\n  type: NodePort\n  clusterIP: 10.96.0.10\n"
	       "  externalTrafficPolicy: Local\n  internalTrafficPolicy: Local\n"
	       "  ports: [{name: http, port: 80, nodePort: 30080}]\n",
	       &objs);
	decode("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
	       "metadata: {name: web-x, labels: {kubernetes.io/service-name: web}}\n"
	       "addressType: IPv4\nports: [{name: http, port: 8080, protocol: TCP}]\n"
	       "endpoints:\n- addresses: [10.244.2.9]\n  nodeName: n2\n"
	       "  conditions: {ready: false, serving: false}\n",
	       &objs);
	plan(&objs, &(struct svc_plan_in){"n1", addrs, 1}, &e);
	assert_int_equal(e.n, 2);
	for (size_t i = 0; i < e.n; i++)
		assert_int_equal(e.v[i].verdict, SVC_REJECT);
	svc_entries_free(&e);
	objlist_free(&objs);
}

static void test_no_entries(void **state)
{
	(void)state;
	struct objlist objs = {0};
	decode("apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
	       "spec: {clusterIP: None, ports: [{port: 80}]}\n",
	       &objs);
	decode(EPS_WEB, &objs);
	struct svc_entries e = {0};
	plan(&objs, &(struct svc_plan_in){"n1", NULL, 0}, &e);
	assert_int_equal(e.n, 0);
	objlist_free(&objs);
	decode("apiVersion: v1\nkind: Service\nmetadata: {name: ext}\n"
	       "spec: {type: ExternalName, externalName: example.com}\n",
	       &objs);
	plan(&objs, &(struct svc_plan_in){"n1", NULL, 0}, &e);
	assert_int_equal(e.n, 0);
	objlist_free(&objs);
	/* default affinity timeout and an unnamed port */
	decode("apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
	       "spec: {clusterIP: 10.96.0.11, sessionAffinity: ClientIP, ports: [{port: 80}]}\n",
	       &objs);
	decode("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
	       "metadata: {name: web-1, labels: {kubernetes.io/service-name: web}}\n"
	       "addressType: IPv4\nports: [{port: 80}]\n"
	       "endpoints: [{addresses: [10.244.1.9]}]\n",
	       &objs);
	plan(&objs, &(struct svc_plan_in){"n1", NULL, 0}, &e);
	assert_int_equal(e.n, 1);
	assert_int_equal(e.v[0].affinity_timeout, 10800);
	assert_true(has_backend(&e.v[0], "10.244.1.9", 80));
	svc_entries_free(&e);
	objlist_free(&objs);
}

/* ---- the incremental planner ---- */

static void put(struct store *s, const char *origin, const char *yaml)
{
	struct objlist l = {0};
	if (yaml)
		decode(yaml, &l);
	assert_int_equal(store_replace_origin(s, origin, false, &l, diag_fail, NULL), 0);
	objlist_free(&l);
}

static const char *svc_yaml(const char *name, const char *ip, int node_port)
{
	static char buf[512];
	snprintf(buf, sizeof(buf),
		 "apiVersion: v1\nkind: Service\nmetadata: {name: %s}\n"
		 "spec: {type: NodePort, clusterIP: %s, ports: [{port: 80, nodePort: %d}]}\n",
		 name, ip, node_port);
	return buf;
}

static const char *eps_yaml(const char *svc, const char *ip)
{
	static char buf[512];
	snprintf(buf, sizeof(buf),
		 "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
		 "metadata: {name: %s-1, labels: {kubernetes.io/service-name: %s}}\n"
		 "addressType: IPv4\nports: [{port: 8080}]\n"
		 "endpoints: [{addresses: [%s]}]\n",
		 svc, svc, ip);
	return buf;
}

/* services.json (streamed, not built as a json-c tree): every entry in address order, its
 * backends, and the planner's errors by Service. */
static void test_services_json(void **state)
{
	(void)state;
	struct store *s = store_new();
	put(s, "b.yaml", svc_yaml("b", "10.96.0.2", 30002));
	put(s, "b-eps.yaml",
	    "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
	    "metadata: {name: b-1, labels: {kubernetes.io/service-name: b}}\n"
	    "addressType: IPv4\nports: [{port: 8080}]\n"
	    "endpoints: [{addresses: [10.244.2.1], nodeName: \"n\\\"2\"},\n"
	    "            {addresses: [10.244.1.1], nodeName: n1}]\n");
	put(s, "a.yaml",
	    "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  annotations:\n"
	    "    twill.io/lb-scheduler: nope\n"
	    "spec: {clusterIP: 10.96.0.1, ports: [{port: 53, protocol: UDP}]}\n");
	struct ipaddr addrs[] = {A("192.168.10.100")};
	struct svc_planner *sp = svc_planner_new(s, &(struct svc_plan_in){"n1", addrs, 1});
	svc_planner_update(sp, NULL);
	char *text = svc_services_json(sp, "n1", "nftables");
	json_object *j = json_tokener_parse(text);
	assert_non_null(j);
	json_object *v, *list, *errs;
	assert_true(json_object_object_get_ex(j, "node", &v));
	assert_string_equal(json_object_get_string(v), "n1");
	assert_true(json_object_object_get_ex(j, "dataplane", &v));
	assert_string_equal(json_object_get_string(v), "nftables");
	assert_true(json_object_object_get_ex(j, "services", &list));
	assert_int_equal(json_object_array_length(list), 3);
	static const char *const order[][3] = {{"10.96.0.1", "UDP", "default/a"},
					       {"10.96.0.2", "TCP", "default/b"},
					       {"192.168.10.100", "TCP", "default/b"}};
	for (size_t i = 0; i < 3; i++) {
		json_object *e = json_object_array_get_idx(list, i);
		assert_true(json_object_object_get_ex(e, "address", &v));
		assert_string_equal(json_object_get_string(v), order[i][0]);
		assert_true(json_object_object_get_ex(e, "protocol", &v));
		assert_string_equal(json_object_get_string(v), order[i][1]);
		assert_true(json_object_object_get_ex(e, "service", &v));
		assert_string_equal(json_object_get_string(v), order[i][2]);
	}
	json_object *b = json_object_array_get_idx(list, 1), *bes, *be;
	assert_true(json_object_object_get_ex(b, "scope", &v));
	assert_string_equal(json_object_get_string(v), "ClusterIP");
	assert_true(json_object_object_get_ex(b, "masquerade", &v));
	assert_false(json_object_get_boolean(v));
	assert_true(json_object_object_get_ex(b, "backends", &bes));
	assert_int_equal(json_object_array_length(bes), 2);
	be = json_object_array_get_idx(bes, 1);
	assert_true(json_object_object_get_ex(be, "ip", &v));
	assert_string_equal(json_object_get_string(v), "10.244.2.1");
	assert_true(json_object_object_get_ex(be, "node", &v));
	assert_string_equal(json_object_get_string(v), "n\"2"); /* escaped, and back */
	assert_true(json_object_object_get_ex(be, "weight", &v));
	assert_int_equal(json_object_get_int(v), 1);
	assert_true(json_object_object_get_ex(be, "ready", &v));
	assert_true(json_object_get_boolean(v));
	be = json_object_array_get_idx(bes, 0);
	assert_true(json_object_object_get_ex(be, "local", &v));
	assert_true(json_object_get_boolean(v));
	json_object *np = json_object_array_get_idx(list, 2);
	assert_true(json_object_object_get_ex(np, "masquerade", &v));
	assert_true(json_object_get_boolean(v));
	assert_true(json_object_object_get_ex(j, "errors", &errs));
	assert_int_equal(json_object_object_length(errs), 1);
	assert_true(json_object_object_get_ex(errs, "default/a", &v));
	assert_non_null(strstr(json_object_get_string(v), "nope"));
	json_object_put(j);
	free(text);
	svc_planner_free(sp);
	store_free(s);
}

/* Schedulers and weights by annotation; a bad annotation is ignored as a whole, with a
 * clear error, and the Service still gets its entries (random, equal weights). */
static void test_lb_annotations(void **state)
{
	(void)state;
	static const char *svc_tmpl = "apiVersion: v1\n"
				      "kind: Service\n"
				      "metadata:\n"
				      "  name: web\n"
				      "  namespace: default\n"
				      "  annotations: {twill.io/lb-scheduler: %s%s}\n"
				      "spec:\n"
				      "  clusterIP: 10.96.0.10\n"
				      "  ports: [{name: http, port: 80, targetPort: http}]\n"
				      "---\n";
	struct ipaddr node = A("192.168.0.2");
	struct svc_plan_in in = {"n1", &node, 1};
	static const struct {
		const char *sched, *weights;
		enum svc_sched want;
		int rc;
		const char *err;
		uint16_t w1;
	} cases[] = {
	    {"rr", "", SVC_SCHED_RR, 0, NULL, 1},
	    {"wrr", ", twill.io/lb-weights: '10.244.1.2=3, 10.244.9.9=2'", SVC_SCHED_RR, 0, NULL,
	     3},
	    {"sh", "", SVC_SCHED_SH, 0, NULL, 1},
	    {"dh", "", SVC_SCHED_DH, 0, NULL, 1},
	    {"random", ", twill.io/lb-weights: '10.244.1.2=7'", SVC_SCHED_RANDOM, 0, NULL, 7},
	    {"lc", "", SVC_SCHED_RANDOM, -EINVAL,
	     "annotation twill.io/lb-scheduler: unknown scheduler 'lc'", 1},
	    {"rr", ", twill.io/lb-weights: '10.244.1.2=0'", SVC_SCHED_RANDOM, -EINVAL,
	     "annotation twill.io/lb-weights: '10.244.1.2=0' is not ADDRESS=WEIGHT", 1},
	    {"rr", ", twill.io/lb-weights: 'x=2'", SVC_SCHED_RANDOM, -EINVAL,
	     "annotation twill.io/lb-weights: 'x=2'", 1},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		char *yaml = xasprintf(svc_tmpl, cases[c].sched, cases[c].weights);
		char *all = xasprintf("%s%s", yaml, EPS_WEB);
		struct objlist objs = {0};
		decode(all, &objs);
		struct svc_lb lb;
		char err[256] = "";
		assert_int_equal(svc_lb_config(objs.v[0], &lb, err, sizeof(err)), cases[c].rc);
		if (cases[c].err && !strstr(err, cases[c].err))
			fail_msg("case %zu: error '%s' lacks '%s'", c, err, cases[c].err);
		free(lb.weights);
		struct svc_entries e = {0};
		plan(&objs, &in, &e);
		const struct svc_entry *ci = find(&e, "10.96.0.10:80/TCP");
		assert_non_null(ci);
		assert_int_equal(ci->sched, cases[c].want);
		assert_int_equal(ci->nbackends, 2);
		/* backends sorted: 10.244.1.2, 10.244.2.2; the weight of an address not listed is 1 */
		assert_int_equal(ci->backends[0].weight, cases[c].w1);
		assert_int_equal(ci->backends[1].weight, 1);
		svc_entries_free(&e);
		objlist_free(&objs);
		free(all);
		free(yaml);
	}
}

static void test_planner_incremental(void **state)
{
	(void)state;
	struct store *s = store_new();
	put(s, "a.yaml", svc_yaml("a", "10.96.0.1", 30001));
	put(s, "a-eps.yaml", eps_yaml("a", "10.244.1.1"));
	struct ipaddr addrs[] = {A("192.168.10.100")};
	struct svc_planner *sp = svc_planner_new(s, &(struct svc_plan_in){"n1", addrs, 1});
	put(s, "b.yaml", svc_yaml("b", "10.96.0.2", 30002));
	assert_true(svc_planner_dirty(sp));
	char **chg = NULL;
	size_t n = svc_planner_update(sp, &chg);
	assert_int_equal(n, 2);
	assert_string_equal(chg[0], "default/a");
	assert_string_equal(chg[1], "default/b");
	svc_planner_keys_free(chg, n);
	assert_false(svc_planner_dirty(sp));
	const struct svc_entries *ea = svc_planner_get(sp, "default/a");
	assert_non_null(ea);
	assert_int_equal(ea->n, 2);
	assert_int_equal(ea->v[0].nbackends, 1);
	const struct svc_entries *eb = svc_planner_get(sp, "default/b");
	assert_int_equal(eb->v[0].verdict, SVC_REJECT);

	/* a slice of b arrives: only b is recomputed */
	uint64_t before = svc_planner_recomputations(sp);
	put(s, "b-eps.yaml", eps_yaml("b", "10.244.2.1"));
	n = svc_planner_update(sp, &chg);
	assert_int_equal(n, 1);
	assert_string_equal(chg[0], "default/b");
	svc_planner_keys_free(chg, n);
	assert_int_equal(svc_planner_recomputations(sp) - before, 1);
	eb = svc_planner_get(sp, "default/b");
	assert_int_equal(eb->v[0].verdict, SVC_FORWARD);

	/* an unrelated change of a file's content that changes nothing: no change */
	before = svc_planner_recomputations(sp);
	put(s, "b-eps.yaml", eps_yaml("b", "10.244.2.1"));
	assert_int_equal(svc_planner_update(sp, NULL), 0);
	assert_int_equal(svc_planner_recomputations(sp) - before, 0);

	/* a third Service wants a's NodePort: refused with an error, its ClusterIP works */
	put(s, "c.yaml", svc_yaml("c", "10.96.0.3", 30001));
	n = svc_planner_update(sp, NULL);
	assert_int_equal(n, 1);
	const struct svc_entries *ec = svc_planner_get(sp, "default/c");
	assert_non_null(ec);
	assert_int_equal(ec->n, 1);
	assert_non_null(svc_planner_error(sp, "default/c"));
	assert_non_null(strstr(svc_planner_error(sp, "default/c"), "default/a"));
	assert_null(svc_planner_error(sp, "default/a"));

	/* a goes away: its entries go, and c gets the NodePort */
	put(s, "a.yaml", NULL);
	n = svc_planner_update(sp, &chg);
	assert_int_equal(n, 2);
	assert_string_equal(chg[0], "default/a");
	assert_string_equal(chg[1], "default/c");
	svc_planner_keys_free(chg, n);
	assert_null(svc_planner_get(sp, "default/a"));
	ec = svc_planner_get(sp, "default/c");
	assert_int_equal(ec->n, 2);
	assert_null(svc_planner_error(sp, "default/c"));

	/* slice moved to another Service (label change): both replanned */
	put(s, "b-eps.yaml",
	    "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
	    "metadata: {name: b-1, labels: {kubernetes.io/service-name: c}}\n"
	    "addressType: IPv4\nports: [{port: 8080}]\n"
	    "endpoints: [{addresses: [10.244.3.3]}]\n");
	n = svc_planner_update(sp, NULL);
	assert_int_equal(n, 2);
	assert_int_equal(svc_planner_get(sp, "default/b")->v[0].verdict, SVC_REJECT);
	assert_int_equal(svc_planner_get(sp, "default/c")->v[0].nbackends, 1);

	/* new node addresses: NodePorts move */
	struct ipaddr addrs2[] = {A("192.168.10.200")};
	svc_planner_set_node_addrs(sp, addrs2, 1);
	n = svc_planner_update(sp, NULL);
	assert_int_equal(n, 2);
	ec = svc_planner_get(sp, "default/c");
	char buf[128];
	assert_string_equal(svc_entry_key_fmt(&ec->v[1], buf, sizeof(buf)),
			    "192.168.10.200:30001/TCP");

	svc_planner_free(sp);
	store_free(s);
}

/* A dual-stack NodePort Service: one ClusterIP per family, one slice per family (the IPv6
 * one has another endpoint set and one IPv4 address, which must be ignored). */
static const char *SVC_DS = "apiVersion: v1\n"
			    "kind: Service\n"
			    "metadata: {name: ds, namespace: default}\n"
			    "spec:\n"
			    "  type: NodePort\n"
			    "  clusterIPs: [10.96.0.20, \"fd00:96::20\"]\n"
			    "  externalIPs: [\"2001:db8::7\"]\n"
			    "  ports:\n"
			    "  - {name: http, port: 80, targetPort: 8080, nodePort: 30020}\n";

static const char *EPS_DS4 = "apiVersion: discovery.k8s.io/v1\n"
			     "kind: EndpointSlice\n"
			     "metadata: {name: ds-v4, namespace: default,\n"
			     "  labels: {kubernetes.io/service-name: ds}}\n"
			     "addressType: IPv4\n"
			     "ports: [{name: http, port: 8080}]\n"
			     "endpoints:\n"
			     "- {addresses: [10.244.1.2], nodeName: n1}\n"
			     "- {addresses: [10.244.2.2], nodeName: n2}\n";

static const char *EPS_DS6 = "apiVersion: discovery.k8s.io/v1\n"
			     "kind: EndpointSlice\n"
			     "metadata: {name: ds-v6, namespace: default,\n"
			     "  labels: {kubernetes.io/service-name: ds}}\n"
			     "addressType: IPv6\n"
			     "ports: [{name: http, port: 8080}]\n"
			     "endpoints:\n"
			     "- {addresses: [\"fd00:244:1::2\"], nodeName: n1}\n"
			     "- {addresses: [\"fd00:244:2::2\"], nodeName: n2}\n"
			     "- {addresses: [\"fd00:244:3::2\"], nodeName: n2}\n";

static void test_dual_stack(void **state)
{
	(void)state;
	struct objlist objs = {0};
	decode(SVC_DS, &objs);
	decode(EPS_DS4, &objs);
	decode(EPS_DS6, &objs);
	struct ipaddr addrs[] = {A("192.168.10.100"), A("fd00:10::100")};
	struct svc_plan_in in = {"n1", addrs, 2};
	struct svc_entries e = {0};
	plan(&objs, &in, &e);
	/* per family: ClusterIP + NodePort; IPv6 also the externalIP */
	assert_int_equal(e.n, 5);
	const struct svc_entry *c4 = find(&e, "10.96.0.20:80/TCP");
	const struct svc_entry *c6 = find(&e, "[fd00:96::20]:80/TCP");
	const struct svc_entry *n6 = find(&e, "[fd00:10::100]:30020/TCP");
	const struct svc_entry *x6 = find(&e, "[2001:db8::7]:80/TCP");
	assert_non_null(c4);
	assert_non_null(c6);
	assert_non_null(n6);
	assert_non_null(x6);
	assert_non_null(find(&e, "192.168.10.100:30020/TCP"));
	/* each family's entries get that family's endpoints only */
	assert_int_equal(c4->nbackends, 2);
	assert_true(has_backend(c4, "10.244.2.2", 8080));
	assert_int_equal(c6->nbackends, 3);
	assert_true(has_backend(c6, "fd00:244:3::2", 8080));
	assert_true(c6->backends[0].local);
	assert_int_equal(c6->verdict, SVC_FORWARD);
	assert_false(c6->masquerade);
	assert_true(n6->masquerade && x6->masquerade);
	assert_int_equal(n6->nbackends, 3);
	/* the two families share the group: the same Service port */
	assert_string_equal(c4->group, c6->group);
	svc_entries_free(&e);

	/* IPv6 endpoints only: the IPv4 entries reject, the IPv6 ones forward */
	const struct object *sl[] = {objs.v[2]};
	assert_int_equal(svc_plan_service(objs.v[0], sl, 1, &in, &e), 0);
	assert_int_equal(find(&e, "10.96.0.20:80/TCP")->verdict, SVC_REJECT);
	assert_int_equal(find(&e, "[fd00:96::20]:80/TCP")->verdict, SVC_FORWARD);
	svc_entries_free(&e);
	objlist_free(&objs);
}

/* An IPv6-only Service with BIG_N endpoints, other addresses in every round. */
#define BIG_N 600
static const char *big_yaml(int round)
{
	static char buf[BIG_N * 48 + 1024];
	int off = snprintf(buf, sizeof(buf),
			   "apiVersion: v1\nkind: Service\nmetadata: {name: big}\n"
			   "spec:\n  clusterIP: \"fd00:96::99\"\n  ports: [{port: 80}]\n---\n"
			   "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
			   "metadata: {name: big-v6, labels: {kubernetes.io/service-name: big}}\n"
			   "addressType: IPv6\nports: [{port: 8080}]\nendpoints:\n");
	for (int i = 0; i < BIG_N; i++)
		off += snprintf(buf + off, sizeof(buf) - (size_t)off,
				"- {addresses: [\"fd00:245:%x::%x\"]}\n", round + 1, i + 1);
	return buf;
}

/* MANY_N IPv4 Services with one endpoint each: enough changed entries for the writer to
 * send the backends and hairpin elements of the new entries ahead of the main transaction
 * (and fewer than the sets' first size, 512). */
#define MANY_N 300
static char *many_yaml(int gen)
{
	size_t size = MANY_N * 420 + 64, off = 0;
	char *buf = xmalloc(size);
	for (int i = 0; i < MANY_N; i++)
		off += (size_t)snprintf(
		    buf + off, size - off,
		    "apiVersion: v1\nkind: Service\nmetadata: {name: m%d-%d}\n"
		    "spec:\n  clusterIP: 10.97.%d.%d\n  ports: [{port: 80}]\n---\n"
		    "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
		    "metadata: {name: m%d-%d-1, labels: {kubernetes.io/service-name: m%d-%d}}\n"
		    "addressType: IPv4\nports: [{port: 8080}]\nendpoints:\n"
		    "- {addresses: [10.246.%d.%d]}\n---\n",
		    gen, i, 10 * gen + i / 250, i % 250 + 1, gen, i, gen, i, 10 * gen + i / 250,
		    i % 250 + 1);
	return buf;
}

/* In a fresh network namespace: one sync writes both tables; a second writer (a restart)
 * changes nothing; an IPv6 endpoint change touches only IPv6 backends elements. */
static void writer_round_trip(void)
{
	struct store *s = store_new();
	put(s, "ds-v4.yaml", EPS_DS4);
	put(s, "ds-v6.yaml", EPS_DS6);
	struct ipaddr addrs[] = {A("192.168.10.100"), A("fd00:10::100")};
	struct svc_planner *sp = svc_planner_new(s, &(struct svc_plan_in){"n1", addrs, 2});
	struct nft_writer *w = nft_writer_new(sp, NULL);
	int r = nft_writer_sync(w); /* no Service: table ip twill only */
	if (r == -EPROTONOSUPPORT || r == -EAFNOSUPPORT) {
		fprintf(stderr, "nftables unavailable (%s): skipped\n", strerror(-r));
		_exit(0);
	}
	CK(r == 0 && nft_writer_stats(w)->full);
	/* the first IPv6 entries create table ip6 twill in an incremental sync */
	put(s, "ds.yaml", SVC_DS);
	CK(nft_writer_sync(w) == 0);
	const struct nft_sync_stats *st = nft_writer_stats(w);
	CK(!st->full && st->elems_added == 5 && st->backends_added == 2 * 2 + 3 * 3);
	CK(st->chains_written == 4); /* per family: pick-random-N and ext-pick-random-N */
	nft_writer_free(w);
	svc_planner_free(sp);

	/* a restart (a new planner and writer): dumps, finds everything in place */
	sp = svc_planner_new(s, &(struct svc_plan_in){"n1", addrs, 2});
	w = nft_writer_new(sp, NULL);
	CK(nft_writer_sync(w) == 0);
	st = nft_writer_stats(w);
	CK(st->full && st->elems_added == 0 && st->elems_deleted == 0 && st->backends_added == 0 &&
	   st->backends_deleted == 0 && st->chains_written == 0 && st->chains_deleted == 0);

	/* one IPv6 endpoint replaced: one backends element per IPv6 entry, nothing else */
	put(s, "ds-v6.yaml",
	    "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
	    "metadata: {name: ds-v6, namespace: default, labels: {kubernetes.io/service-name: "
	    "ds}}\naddressType: IPv6\nports: [{name: http, port: 8080}]\n"
	    "endpoints: [{addresses: [\"fd00:244:1::2\"]}, {addresses: [\"fd00:244:2::2\"]},\n"
	    "  {addresses: [\"fd00:244:9::2\"]}]\n");
	CK(nft_writer_dirty(w));
	CK(nft_writer_sync(w) == 0);
	st = nft_writer_stats(w);
	CK(!st->full && st->backends_added == 3 && st->backends_deleted == 3 &&
	   st->elems_added == 0 && st->chains_written == 0);

	/* IPv6 backends churn (handles of addresses no longer used are collected and every
	 * handle renumbered): afterwards, a dump of the kernel matches what the writer holds */
	for (int round = 0; round < 3; round++) {
		put(s, "big.yaml", big_yaml(round));
		CK(nft_writer_sync(w) == 0);
		st = nft_writer_stats(w);
		if (round == 0) { /* 609 backends, 603 hairpin addresses: more than the sets'
				   * first size (512); both recreated, all their elements added */
			CK(st->sets_recreated == 2 && st->backends_added == BIG_N + 9 &&
			   st->backends_deleted == 0);
			continue;
		}
		CK(st->sets_recreated == 0 && st->backends_added == BIG_N &&
		   st->backends_deleted == BIG_N);
	}
	nft_writer_request_resync(w);
	CK(nft_writer_sync(w) == 0);
	st = nft_writer_stats(w);
	CK(st->full && st->backends_added == 0 && st->backends_deleted == 0 && st->elems_added == 0);

	/* many new Services in one incremental sync: their backends and hairpin addresses go
	 * ahead of the main transaction; a resync then finds everything in place */
	char *many = many_yaml(0);
	put(s, "many.yaml", many);
	free(many);
	CK(nft_writer_sync(w) == 0);
	st = nft_writer_stats(w);
	CK(!st->full && st->sent_ahead == 1 && st->sets_recreated == 0 &&
	   st->backends_added == MANY_N && st->elems_added == MANY_N && st->elems_deleted == 0);
	nft_writer_request_resync(w);
	CK(nft_writer_sync(w) == 0);
	st = nft_writer_stats(w);
	CK(st->full && st->sets_recreated == 0 && st->backends_added == 0 &&
	   st->backends_deleted == 0 && st->elems_added == 0 && st->elems_deleted == 0);
	/* replaced by as many other Services: what goes ahead must fit into the backends map
	 * (size 512) next to the old ones, which the main transaction deletes; the rest goes
	 * with the main transaction */
	many = many_yaml(1);
	put(s, "many.yaml", many);
	free(many);
	CK(nft_writer_sync(w) == 0);
	st = nft_writer_stats(w);
	CK(st->sent_ahead == 1 && st->sets_recreated == 0 && st->backends_added == MANY_N &&
	   st->backends_deleted == MANY_N && st->elems_added == MANY_N);
	nft_writer_request_resync(w);
	CK(nft_writer_sync(w) == 0);
	st = nft_writer_stats(w);
	CK(st->full && st->backends_added == 0 && st->backends_deleted == 0 && st->elems_added == 0);
	put(s, "many.yaml", NULL);
	CK(nft_writer_sync(w) == 0);
	st = nft_writer_stats(w);
	CK(st->sent_ahead == 0 && st->backends_deleted == MANY_N && st->elems_deleted == MANY_N);
	put(s, "big.yaml", NULL);
	CK(nft_writer_sync(w) == 0);
	CK(nft_writer_stats(w)->backends_deleted == BIG_N);

	/* the Service goes: every element of both tables goes */
	put(s, "ds.yaml", NULL);
	CK(nft_writer_sync(w) == 0);
	st = nft_writer_stats(w);
	CK(st->elems_deleted == 5 && st->backends_deleted == 13 && st->chains_deleted == 4);
	CK(nft_table_delete(NULL) == 0);
	CK(nft_table_delete(NULL) == 0); /* absent is fine */
	nft_writer_free(w);
	svc_planner_free(sp);
	store_free(s);
}

static void test_writer_dual_stack(void **state)
{
	(void)state;
	in_netns(writer_round_trip);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cluster_ip_and_node_port),
	    cmocka_unit_test(test_terminating_fallback),
	    cmocka_unit_test(test_traffic_policies),
	    cmocka_unit_test(test_no_entries),
	    cmocka_unit_test(test_planner_incremental),
	    cmocka_unit_test(test_services_json),
	    cmocka_unit_test(test_lb_annotations),
	    cmocka_unit_test(test_dual_stack),
	    cmocka_unit_test(test_writer_dual_stack),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
