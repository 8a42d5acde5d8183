/* Unit tests for model/model.c: kinds, protocols, labels, selectors (every operator),
 * node addresses, clone/free/id and the content hash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lib/util.h"
#include "model/manifest.h"
#include "model/model.h"

static void no_diag(const struct diag *d, void *arg)
{
	(void)arg;
	char buf[1024];
	fail_msg("unexpected diag: %s", diag_fmt(d, buf, sizeof(buf)));
}

/* Decode text that must hold exactly one good object. */
static struct object *one(const char *text)
{
	struct objlist l = {0};
	assert_int_equal(manifest_decode("t.yaml", text, strlen(text), &l, no_diag, NULL), 0);
	assert_int_equal(l.n, 1);
	struct object *o = l.v[0];
	free(l.v);
	return o;
}

static struct labels mklabels(struct kv *kv, size_t n)
{
	return (struct labels){.n = n, .kv = kv};
}

static void test_kinds(void **state)
{
	(void)state;
	for (int k = 0; k < KIND__COUNT; k++)
		assert_int_equal(kind_parse(kind_name((enum kind)k)), k);
	assert_string_equal(kind_name(KIND_ENDPOINTSLICE), "EndpointSlice");
	assert_int_equal(kind_parse("Deployment"), -1);
	assert_int_equal(kind_parse("pod"), -1);
	assert_int_equal(kind_parse(NULL), -1);
	assert_false(kind_namespaced(KIND_NODE));
	assert_false(kind_namespaced(KIND_NAMESPACE));
	assert_true(kind_namespaced(KIND_POD));
	assert_true(kind_namespaced(KIND_SERVICE));
	assert_true(kind_namespaced(KIND_ENDPOINTSLICE));
	assert_true(kind_namespaced(KIND_NETWORKPOLICY));
	assert_true(kind_namespaced(KIND_IPADDRESSPOOL));

	assert_int_equal(proto_parse("TCP"), PROTO_TCP);
	assert_int_equal(proto_parse("UDP"), PROTO_UDP);
	assert_int_equal(proto_parse("SCTP"), PROTO_SCTP);
	assert_int_equal(proto_parse("tcp"), -1);
	assert_int_equal(proto_parse(NULL), -1);
	assert_string_equal(proto_name(PROTO_UDP), "UDP");
}

static void test_labels_get(void **state)
{
	(void)state;
	struct kv kv[] = {
	    {"a", "1"}, {"app", "web"}, {"k8s.io/x", ""}, {"tier", "front"}, {"z", "26"}};
	struct labels l = mklabels(kv, ARRAY_SIZE(kv));
	for (size_t i = 0; i < ARRAY_SIZE(kv); i++)
		assert_string_equal(labels_get(&l, kv[i].key), kv[i].value);
	assert_null(labels_get(&l, "b"));
	assert_null(labels_get(&l, ""));
	assert_null(labels_get(&l, "zz"));
	struct labels empty = {0};
	assert_null(labels_get(&empty, "a"));
	assert_null(labels_get(NULL, "a"));
}

static void test_selector_ops(void **state)
{
	(void)state;
	struct kv kv[] = {{"app", "web"}, {"env", "prod"}, {"tier", "front"}};
	struct labels l = mklabels(kv, ARRAY_SIZE(kv));
	struct labels none = {0};

	struct selector s = {0};
	assert_false(selector_matches(&s, &l)); /* not given: nothing */
	s.present = true;
	assert_true(selector_matches(&s, &l)); /* given, empty: everything */
	assert_true(selector_matches(&s, &none));

	struct kv ml[] = {{"app", "web"}, {"env", "prod"}};
	s.match_labels = mklabels(ml, 2);
	assert_true(selector_matches(&s, &l));
	assert_false(selector_matches(&s, &none));
	struct kv ml2[] = {{"app", "db"}};
	s.match_labels = mklabels(ml2, 1);
	assert_false(selector_matches(&s, &l));
	s.match_labels = (struct labels){0};

	char *vals[] = {"prod", "staging"};
	struct sel_expr e = {.key = "env", .op = SEL_IN, .nvalues = 2, .values = vals};
	s.nexprs = 1;
	s.exprs = &e;
	assert_true(selector_matches(&s, &l));
	assert_false(selector_matches(&s, &none)); /* In needs the key */
	e.op = SEL_NOT_IN;
	assert_false(selector_matches(&s, &l));
	assert_true(selector_matches(&s, &none)); /* NotIn holds without the key */
	e.key = "tier";
	assert_true(selector_matches(&s, &l));
	e.op = SEL_EXISTS;
	e.nvalues = 0;
	assert_true(selector_matches(&s, &l));
	assert_false(selector_matches(&s, &none));
	e.op = SEL_NOT_EXISTS;
	assert_false(selector_matches(&s, &l));
	assert_true(selector_matches(&s, &none));

	/* all requirements must hold */
	struct sel_expr two[] = {{.key = "app", .op = SEL_EXISTS},
				 {.key = "env", .op = SEL_IN, .nvalues = 1, .values = vals + 1}};
	s.exprs = two;
	s.nexprs = 2;
	assert_false(selector_matches(&s, &l));
	two[1].values = vals;
	assert_true(selector_matches(&s, &l));
	assert_false(selector_matches(NULL, &l));
}

static void test_selector_from_manifest(void **state)
{
	(void)state;
	struct object *o = one("apiVersion: networking.k8s.io/v1\n"
			       "kind: NetworkPolicy\n"
			       "metadata: {name: np}\n"
			       "spec:\n"
			       "  podSelector:\n"
			       "    matchLabels: {app: web}\n"
			       "    matchExpressions:\n"
			       "    - {key: env, operator: In, values: [prod, staging]}\n"
			       "    - {key: tier, operator: NotIn, values: [db]}\n"
			       "    - {key: owner, operator: Exists}\n"
			       "    - {key: legacy, operator: DoesNotExist}\n");
	struct kv good[] = {{"app", "web"}, {"env", "prod"}, {"owner", "me"}, {"tier", "front"}};
	struct labels l = mklabels(good, ARRAY_SIZE(good));
	assert_true(selector_matches(&o->np.pod_selector, &l));
	struct kv legacy[] = {{"app", "web"}, {"env", "prod"}, {"legacy", "1"}, {"owner", "me"}};
	l = mklabels(legacy, ARRAY_SIZE(legacy));
	assert_false(selector_matches(&o->np.pod_selector, &l));
	struct kv db[] = {{"app", "web"}, {"env", "prod"}, {"owner", "me"}, {"tier", "db"}};
	l = mklabels(db, ARRAY_SIZE(db));
	assert_false(selector_matches(&o->np.pod_selector, &l));
	struct kv dev[] = {{"app", "web"}, {"env", "dev"}, {"owner", "me"}};
	l = mklabels(dev, ARRAY_SIZE(dev));
	assert_false(selector_matches(&o->np.pod_selector, &l));
	object_free(o);
}

static void test_node_ip(void **state)
{
	(void)state;
	struct object *o = one("apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n"
			       "status:\n  addresses:\n"
			       "  - {type: Hostname, address: n1}\n"
			       "  - {type: ExternalIP, address: 203.0.113.7}\n"
			       "  - {type: InternalIP, address: 'fd00::7'}\n"
			       "  - {type: InternalIP, address: 192.168.10.7}\n");
	char buf[IP_STRLEN];
	assert_string_equal(ip_fmt(node_ip(&o->node, AF_UNSPEC), buf), "192.168.10.7");
	assert_string_equal(ip_fmt(node_ip(&o->node, AF_INET), buf), "192.168.10.7");
	assert_string_equal(ip_fmt(node_ip(&o->node, AF_INET6), buf), "fd00::7");
	assert_int_equal(o->node.addrs[0].type, NODE_ADDR_HOSTNAME);
	assert_int_equal(o->node.addrs[0].ip.family, 0);
	assert_string_equal(o->node.addrs[0].text, "n1");
	object_free(o);

	o = one("apiVersion: v1\nkind: Node\nmetadata: {name: n2}\n"
		"status: {addresses: [{type: ExternalIP, address: 203.0.113.8}]}\n");
	assert_string_equal(ip_fmt(node_ip(&o->node, AF_UNSPEC), buf), "203.0.113.8");
	assert_null(node_ip(&o->node, AF_INET6));
	object_free(o);
	o = one("apiVersion: v1\nkind: Node\nmetadata: {name: n3}\n");
	assert_null(node_ip(&o->node, AF_UNSPEC));
	object_free(o);
}

/* One object of every kind with every pointer field set, for clone/free under ASan. */
static const char *const everything[] = {
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns1, labels: {a: b}, uid: u1}\n",
    "apiVersion: v1\nkind: Node\nmetadata: {name: n1, annotations: {x: y}}\n"
    "spec: {podCIDRs: [10.244.1.0/24, 'fd00:1::/64'], unschedulable: true}\n"
    "status: {addresses: [{type: InternalIP, address: 10.0.0.1}, {type: Hostname, address: "
    "n1}]}\n",
    "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: ns1, labels: {app: web}}\n"
    "spec: {nodeName: n1, containers: [{name: c, ports: [{name: http, containerPort: 80}]}]}\n"
    "status: {phase: Running, podIPs: [{ip: 10.244.1.5}, {ip: 'fd00:1::5'}],"
    " conditions: [{type: Ready, status: 'True'}]}\n",
    "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
    "spec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.10\n  selector: {app: web}\n"
    "  ports: [{name: http, port: 80, targetPort: http, nodePort: 30080, appProtocol: h2c}]\n"
    "  externalIPs: [198.51.100.1]\n  externalName: x.example\n"
    "status: {loadBalancer: {ingress: [{ip: 198.51.100.2}]}}\n",
    "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
    "metadata: {name: web-1, labels: {kubernetes.io/service-name: web, "
    "endpointslice.kubernetes.io/managed-by: twill}}\n"
    "addressType: IPv4\nendpoints: [{addresses: [10.244.1.5], nodeName: n1, hostname: h, "
    "zone: z, targetRef: {kind: Pod, name: p}}]\nports: [{name: http, port: 80}]\n",
    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np}\n"
    "spec:\n  podSelector: {matchExpressions: [{key: a, operator: In, values: [x, y]}]}\n"
    "  ingress: [{from: [{podSelector: {matchLabels: {a: b}}, namespaceSelector: {}},"
    " {ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}], ports: [{port: http}]}]\n"
    "  egress: [{to: [{namespaceSelector: {matchLabels: {c: d}}}]}]\n",
    "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: pool, namespace: "
    "metallb-system}\nspec: {addresses: [192.168.30.0/28, 192.168.31.1-192.168.31.9]}\n",
};

static void test_clone_free_id(void **state)
{
	(void)state;
	char a[256], b[256];
	for (size_t i = 0; i < ARRAY_SIZE(everything); i++) {
		struct object *o = one(everything[i]);
		struct object *c = object_clone(o);
		assert_non_null(c);
		assert_int_equal(c->kind, o->kind);
		assert_string_equal(object_id(c, a, sizeof(a)), object_id(o, b, sizeof(b)));
		assert_int_equal(object_hash(c), o->hash);
		assert_int_equal(c->hash, o->hash);
		assert_ptr_not_equal(c->meta.name, o->meta.name);
		assert_string_equal(c->meta.file, "t.yaml");
		object_free(o); /* the clone must not share anything with it */
		struct object *cc = object_clone(c);
		object_free(c);
		assert_int_equal(object_hash(cc), cc->hash);
		object_free(cc);
	}
	object_free(NULL);
	assert_null(object_clone(NULL));

	struct object *o = one(everything[2]);
	assert_string_equal(object_id(o, a, sizeof(a)), "Pod/ns1/p");
	char tiny[5];
	assert_string_equal(object_id(o, tiny, sizeof(tiny)), "Pod/");
	object_free(o);
	o = one(everything[1]);
	assert_string_equal(object_id(o, a, sizeof(a)), "Node/n1");
	object_free(o);
}

static void test_hash(void **state)
{
	(void)state;
	struct object *o = one(everything[3]);
	uint64_t h = o->hash;
	/* origin does not count */
	o->meta.file = str_intern("elsewhere.yaml");
	o->meta.line = 99;
	assert_int_equal(object_hash(o), h);
	/* content does */
	o->svc.ports[0].port = 81;
	assert_int_not_equal(object_hash(o), h);
	o->svc.ports[0].port = 80;
	assert_int_equal(object_hash(o), h);
	o->svc.selector.match_labels.kv[0].value[0] = 'x';
	assert_int_not_equal(object_hash(o), h);
	object_free(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kinds),	 cmocka_unit_test(test_labels_get),
	    cmocka_unit_test(test_selector_ops), cmocka_unit_test(test_selector_from_manifest),
	    cmocka_unit_test(test_node_ip),	 cmocka_unit_test(test_clone_free_id),
	    cmocka_unit_test(test_hash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
