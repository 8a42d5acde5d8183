/* Unit tests for model/manifest.c: every kind from YAML and JSON, multi-document files,
 * Lists, Deployment expansion, defaulting, every validation error (right line, field and
 * object, and only the bad document dropped), limits, and the content hash. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/util.h"
#include "model/manifest.h"
#include "model/model.h"

/* ---- helpers ---- */

struct seen {
	int n;
	int line[32];
	char object[32][128];
	char field[32][128];
	char msg[32][256];
	char text[32][512];
};

static void collect(const struct diag *d, void *arg)
{
	struct seen *s = arg;
	if (s->n >= 32)
		return;
	s->line[s->n] = d->line;
	snprintf(s->object[s->n], sizeof(s->object[0]), "%s", d->object ? d->object : "");
	snprintf(s->field[s->n], sizeof(s->field[0]), "%s", d->field ? d->field : "");
	snprintf(s->msg[s->n], sizeof(s->msg[0]), "%s", d->msg);
	diag_fmt(d, s->text[s->n], sizeof(s->text[0]));
	s->n++;
}

/* The objects l->v[n0..] and diagnostics s of one pass over text must be exactly what
 * decoding it in parts on three threads gives (manifest_set_parallel). */
static void same_in_parts(const char *text, int r, const struct objlist *l, size_t n0,
			  const struct seen *s)
{
	struct objlist p = {0};
	struct seen ps;
	memset(&ps, 0, sizeof(ps));
	manifest_set_parallel(0, 3);
	int pr = manifest_decode("m.yaml", text, strlen(text), &p, collect, &ps);
	manifest_set_parallel(1u << 20, 0);
	assert_int_equal(pr, r);
	assert_int_equal(p.n, l->n - n0);
	for (size_t i = 0; i < p.n; i++) {
		char a[256], b[256];
		assert_string_equal(object_id(p.v[i], a, sizeof(a)),
				    object_id(l->v[n0 + i], b, sizeof(b)));
		assert_true(p.v[i]->hash == l->v[n0 + i]->hash);
		assert_int_equal(p.v[i]->meta.line, l->v[n0 + i]->meta.line);
	}
	assert_int_equal(ps.n, s->n);
	for (int i = 0; i < ps.n; i++)
		assert_string_equal(ps.text[i], s->text[i]);
	objlist_free(&p);
}

static int decode(const char *text, struct objlist *l, struct seen *s)
{
	memset(s, 0, sizeof(*s));
	size_t n0 = l->n;
	int r = manifest_decode("m.yaml", text, strlen(text), l, collect, s);
	same_in_parts(text, r, l, n0, s);
	return r;
}

/* Decode text that must hold exactly n good objects and no error. */
static struct objlist good(const char *text, size_t n)
{
	struct objlist l = {0};
	struct seen s;
	int r = decode(text, &l, &s);
	if (s.n)
		fail_msg("unexpected diag: %s", s.text[0]);
	assert_int_equal(r, 0);
	assert_int_equal(l.n, n);
	return l;
}

static struct object *one(const char *text)
{
	struct objlist l = good(text, 1);
	struct object *o = l.v[0];
	free(l.v);
	return o;
}

static const char *id(const struct object *o)
{
	static char buf[256];
	return object_id(o, buf, sizeof(buf));
}

static const char *ipstr(const struct ipaddr *a)
{
	static char buf[4][IP_STRLEN];
	static int i;
	return ip_fmt(a, buf[i++ & 3]);
}

static const char *pfxstr(const struct ipprefix *p)
{
	static char buf[4][IP_STRLEN];
	static int i;
	return prefix_fmt(p, buf[i++ & 3]);
}

/* ---- every kind, YAML ---- */

static const char *const all_yaml =
    "apiVersion: v1\n"
    "kind: Namespace\n"
    "metadata:\n"
    "  name: shop\n"
    "  labels: {team: a}\n"
    "---\n"
    "apiVersion: v1\n"
    "kind: Node\n"
    "metadata:\n"
    "  name: w1\n"
    "  annotations: {twill.io/vtep-mac: 'aa:bb:cc:dd:ee:ff'}\n"
    "spec:\n"
    "  podCIDR: 10.244.1.0/24\n"
    "  podCIDRs: [10.244.1.0/24, 'fd00:1::/64']\n"
    "  unschedulable: true\n"
    "status:\n"
    "  addresses:\n"
    "  - type: InternalIP\n"
    "    address: 192.168.10.101\n"
    "  - type: Hostname\n"
    "    address: w1\n"
    "---\n"
    "apiVersion: v1\n"
    "kind: Pod\n"
    "metadata:\n"
    "  name: web-0\n"
    "  namespace: shop\n"
    "  uid: 1234-5678\n"
    "  labels:\n"
    "    app: web\n"
    "    tier: front\n"
    "  deletionTimestamp: '2024-01-01T00:00:00Z'\n"
    "spec:\n"
    "  nodeName: w1\n"
    "  containers:\n"
    "  - name: a\n"
    "    ports:\n"
    "    - {name: http, containerPort: 8080}\n"
    "    - {containerPort: 53, protocol: UDP}\n"
    "  - name: b\n"
    "    ports: [{containerPort: 9090, protocol: SCTP, name: metrics}]\n"
    "status:\n"
    "  phase: Running\n"
    "  podIP: 10.244.1.5\n"
    "  podIPs: [{ip: 10.244.1.5}, {ip: 'fd00:1::5'}]\n"
    "  conditions:\n"
    "  - {type: PodScheduled, status: 'True'}\n"
    "  - {type: Ready, status: 'False'}\n"
    "---\n"
    "apiVersion: v1\n"
    "kind: Service\n"
    "metadata: {name: web, namespace: shop}\n"
    "spec:\n"
    "  type: LoadBalancer\n"
    "  clusterIP: 10.96.0.10\n"
    "  clusterIPs: [10.96.0.10, 'fd00:96::10']\n"
    "  selector: {app: web}\n"
    "  ports:\n"
    "  - {name: http, port: 80, targetPort: 8080, nodePort: 30080, appProtocol: http}\n"
    "  - {name: dns, port: 53, protocol: UDP, targetPort: dns}\n"
    "  - {name: plain, port: 81}\n"
    "  externalIPs: [198.51.100.1, 198.51.100.2]\n"
    "  loadBalancerIP: 198.51.100.10\n"
    "  externalTrafficPolicy: Local\n"
    "  internalTrafficPolicy: Local\n"
    "  sessionAffinity: ClientIP\n"
    "  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}\n"
    "  healthCheckNodePort: 31000\n"
    "  publishNotReadyAddresses: true\n"
    "  allocateLoadBalancerNodePorts: false\n"
    "status:\n"
    "  loadBalancer:\n"
    "    ingress: [{ip: 198.51.100.10}, {hostname: lb.example}]\n"
    "---\n"
    "apiVersion: discovery.k8s.io/v1\n"
    "kind: EndpointSlice\n"
    "metadata:\n"
    "  name: web-abc\n"
    "  namespace: shop\n"
    "  labels:\n"
    "    kubernetes.io/service-name: web\n"
    "    endpointslice.kubernetes.io/managed-by: controller.twill.io\n"
    "addressType: IPv4\n"
    "endpoints:\n"
    "- addresses: [10.244.1.5]\n"
    "  nodeName: w1\n"
    "  hostname: web-0\n"
    "  zone: z1\n"
    "  targetRef: {kind: Pod, name: web-0, namespace: shop}\n"
    "- addresses: [10.244.2.5]\n"
    "  conditions: {ready: false, serving: true, terminating: true}\n"
    "ports:\n"
    "- {name: http, port: 8080, protocol: TCP}\n"
    "- {name: dns, port: 53, protocol: UDP}\n"
    "---\n"
    "apiVersion: networking.k8s.io/v1\n"
    "kind: NetworkPolicy\n"
    "metadata: {name: allow, namespace: shop}\n"
    "spec:\n"
    "  podSelector: {matchLabels: {app: web}}\n"
    "  ingress:\n"
    "  - from:\n"
    "    - podSelector: {matchLabels: {role: client}}\n"
    "      namespaceSelector: {matchExpressions: [{key: team, operator: Exists}]}\n"
    "    - ipBlock: {cidr: 172.17.0.0/16, except: [172.17.1.0/24]}\n"
    "    ports:\n"
    "    - {port: 80}\n"
    "    - {protocol: UDP, port: 1000, endPort: 2000}\n"
    "    - {port: http}\n"
    "  - {}\n"
    "  egress:\n"
    "  - to: [{namespaceSelector: {}}]\n"
    "---\n"
    "apiVersion: metallb.io/v1beta1\n"
    "kind: IPAddressPool\n"
    "metadata: {name: pool, namespace: metallb-system}\n"
    "spec:\n"
    "  addresses: [192.168.30.0/28, 192.168.31.1-192.168.31.9, 'fd00:30::/120']\n"
    "  autoAssign: false\n";

static void check_all(struct objlist *l, bool from_json)
{
	assert_int_equal(l->n, 7);
	struct object *o = l->v[0];
	assert_int_equal(o->kind, KIND_NAMESPACE);
	assert_string_equal(id(o), "Namespace/shop");
	assert_null(o->meta.ns);
	assert_string_equal(labels_get(&o->meta.labels, "team"), "a");
	if (!from_json)
		assert_int_equal(o->meta.line, 1);

	o = l->v[1];
	assert_string_equal(id(o), "Node/w1");
	assert_int_equal(o->node.npod_cidrs, 2);
	assert_string_equal(pfxstr(&o->node.pod_cidrs[0]), "10.244.1.0/24");
	assert_string_equal(pfxstr(&o->node.pod_cidrs[1]), "fd00:1::/64");
	assert_true(o->node.unschedulable);
	assert_int_equal(o->node.naddrs, 2);
	assert_string_equal(ipstr(node_ip(&o->node, AF_UNSPEC)), "192.168.10.101");
	assert_string_equal(labels_get(&o->meta.annotations, "twill.io/vtep-mac"),
			    "aa:bb:cc:dd:ee:ff");
	if (!from_json)
		assert_int_equal(o->meta.line, 7);

	o = l->v[2];
	assert_string_equal(id(o), "Pod/shop/web-0");
	assert_string_equal(o->meta.uid, "1234-5678");
	assert_true(o->meta.deleting);
	assert_int_equal(o->meta.labels.n, 2);
	assert_string_equal(o->meta.labels.kv[0].key, "app");
	assert_string_equal(o->meta.labels.kv[1].key, "tier");
	assert_string_equal(o->pod.node_name, "w1");
	assert_false(o->pod.host_network);
	assert_int_equal(o->pod.nports, 3);
	assert_string_equal(o->pod.ports[0].name, "http");
	assert_int_equal(o->pod.ports[0].port, 8080);
	assert_int_equal(o->pod.ports[0].proto, PROTO_TCP);
	assert_null(o->pod.ports[1].name);
	assert_int_equal(o->pod.ports[1].proto, PROTO_UDP);
	assert_int_equal(o->pod.ports[2].port, 9090);
	assert_int_equal(o->pod.ports[2].proto, PROTO_SCTP);
	assert_int_equal(o->pod.nips, 2);
	assert_string_equal(ipstr(&o->pod.ips[1]), "fd00:1::5");
	assert_string_equal(o->pod.phase, "Running");
	assert_true(o->pod.has_ready);
	assert_false(o->pod.ready);

	o = l->v[3];
	struct service_obj *s = &o->svc;
	assert_string_equal(id(o), "Service/shop/web");
	assert_int_equal(s->type, SVC_LOAD_BALANCER);
	assert_false(s->headless);
	assert_int_equal(s->ncluster_ips, 2);
	assert_string_equal(ipstr(&s->cluster_ips[1]), "fd00:96::10");
	assert_true(s->selector.present);
	assert_string_equal(labels_get(&s->selector.match_labels, "app"), "web");
	assert_int_equal(s->nports, 3);
	assert_string_equal(s->ports[0].name, "http");
	assert_int_equal(s->ports[0].port, 80);
	assert_int_equal(s->ports[0].node_port, 30080);
	assert_int_equal(s->ports[0].target_port, 8080);
	assert_null(s->ports[0].target_port_name);
	assert_string_equal(s->ports[0].app_protocol, "http");
	assert_int_equal(s->ports[1].proto, PROTO_UDP);
	assert_int_equal(s->ports[1].target_port, 0);
	assert_string_equal(s->ports[1].target_port_name, "dns");
	assert_int_equal(s->ports[2].target_port, 81); /* defaults to port */
	assert_int_equal(s->nexternal_ips, 2);
	assert_string_equal(ipstr(&s->external_ips[1]), "198.51.100.2");
	assert_int_equal(s->nlb_ips, 1);
	assert_string_equal(ipstr(&s->lb_ips[0]), "198.51.100.10");
	assert_string_equal(ipstr(&s->lb_ip_requested), "198.51.100.10");
	assert_true(s->etp_local);
	assert_true(s->itp_local);
	assert_true(s->affinity_client_ip);
	assert_int_equal(s->affinity_timeout, 600);
	assert_int_equal(s->health_check_node_port, 31000);
	assert_true(s->publish_not_ready);
	assert_false(s->allocate_lb_node_ports);

	o = l->v[4];
	struct endpointslice_obj *e = &o->eps;
	assert_string_equal(id(o), "EndpointSlice/shop/web-abc");
	assert_string_equal(e->service, "web");
	assert_string_equal(e->managed_by, "controller.twill.io");
	assert_int_equal(e->address_type, AF_INET);
	assert_int_equal(e->nendpoints, 2);
	assert_int_equal(e->endpoints[0].naddrs, 1);
	assert_string_equal(ipstr(&e->endpoints[0].addrs[0]), "10.244.1.5");
	assert_true(e->endpoints[0].ready); /* nil ready/serving: true */
	assert_true(e->endpoints[0].serving);
	assert_false(e->endpoints[0].terminating);
	assert_string_equal(e->endpoints[0].node_name, "w1");
	assert_string_equal(e->endpoints[0].target_pod, "web-0");
	assert_string_equal(e->endpoints[0].hostname, "web-0");
	assert_string_equal(e->endpoints[0].zone, "z1");
	assert_false(e->endpoints[1].ready);
	assert_true(e->endpoints[1].serving);
	assert_true(e->endpoints[1].terminating);
	assert_null(e->endpoints[1].target_pod);
	assert_int_equal(e->nports, 2);
	assert_string_equal(e->ports[1].name, "dns");
	assert_int_equal(e->ports[1].proto, PROTO_UDP);
	assert_int_equal(e->ports[1].port, 53);

	o = l->v[5];
	struct netpol_obj *np = &o->np;
	assert_string_equal(id(o), "NetworkPolicy/shop/allow");
	assert_true(np->pod_selector.present);
	assert_true(np->ingress_type);
	assert_true(np->egress_type); /* egress rules present */
	assert_int_equal(np->ningress, 2);
	struct np_rule *r = &np->ingress[0];
	assert_int_equal(r->npeers, 2);
	assert_true(r->peers[0].pod_selector.present);
	assert_true(r->peers[0].namespace_selector.present);
	assert_int_equal(r->peers[0].namespace_selector.nexprs, 1);
	assert_int_equal(r->peers[0].namespace_selector.exprs[0].op, SEL_EXISTS);
	assert_false(r->peers[0].has_ipblock);
	assert_true(r->peers[1].has_ipblock);
	assert_string_equal(pfxstr(&r->peers[1].cidr), "172.17.0.0/16");
	assert_int_equal(r->peers[1].nexcept, 1);
	assert_string_equal(pfxstr(&r->peers[1].except[0]), "172.17.1.0/24");
	assert_int_equal(r->nports, 3);
	assert_false(r->ports[0].has_proto);
	assert_int_equal(r->ports[0].proto, PROTO_TCP);
	assert_int_equal(r->ports[0].port, 80);
	assert_true(r->ports[1].has_proto);
	assert_int_equal(r->ports[1].proto, PROTO_UDP);
	assert_int_equal(r->ports[1].end_port, 2000);
	assert_string_equal(r->ports[2].port_name, "http");
	assert_int_equal(np->ingress[1].nports, 0); /* {}: everything */
	assert_int_equal(np->ingress[1].npeers, 0);
	assert_int_equal(np->negress, 1);
	assert_true(np->egress[0].peers[0].namespace_selector.present);
	assert_false(np->egress[0].peers[0].pod_selector.present);

	o = l->v[6];
	assert_string_equal(id(o), "IPAddressPool/metallb-system/pool");
	assert_false(o->pool.auto_assign);
	const char *want[] = {"192.168.30.0/28", "192.168.31.1/32", "192.168.31.2/31",
			      "192.168.31.4/30", "192.168.31.8/31", "fd00:30::/120"};
	assert_int_equal(o->pool.nranges, ARRAY_SIZE(want));
	for (size_t i = 0; i < ARRAY_SIZE(want); i++)
		assert_string_equal(pfxstr(&o->pool.cidrs[i]), want[i]);
}

static void test_all_kinds_yaml(void **state)
{
	(void)state;
	struct objlist l = good(all_yaml, 7);
	check_all(&l, false);
	assert_string_equal(l.v[0]->meta.file, "m.yaml");
	objlist_free(&l);
}

/* ---- every kind, JSON (also: equal content gives an equal hash across syntaxes) ---- */

static const char *const all_json =
    "[\n"
    "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"shop\","
    "\"labels\":{\"team\":\"a\"}}},\n"
    "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"w1\",\"annotations\":"
    "{\"twill.io/vtep-mac\":\"aa:bb:cc:dd:ee:ff\"}},\"spec\":{\"podCIDR\":\"10.244.1.0/24\","
    "\"podCIDRs\":[\"10.244.1.0/24\",\"fd00:1::/64\"],\"unschedulable\":true},\"status\":"
    "{\"addresses\":[{\"type\":\"InternalIP\",\"address\":\"192.168.10.101\"},{\"type\":"
    "\"Hostname\",\"address\":\"w1\"}]}},\n"
    "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"web-0\",\"namespace\":"
    "\"shop\",\"uid\":\"1234-5678\",\"labels\":{\"tier\":\"front\",\"app\":\"web\"},"
    "\"deletionTimestamp\":\"2024-01-01T00:00:00Z\"},\"spec\":{\"nodeName\":\"w1\","
    "\"containers\":[{\"name\":\"a\",\"ports\":[{\"name\":\"http\",\"containerPort\":8080},"
    "{\"containerPort\":53,\"protocol\":\"UDP\"}]},{\"name\":\"b\",\"ports\":[{"
    "\"containerPort\":9090,\"protocol\":\"SCTP\",\"name\":\"metrics\"}]}]},\"status\":{"
    "\"phase\":\"Running\",\"podIP\":\"10.244.1.5\",\"podIPs\":[{\"ip\":\"10.244.1.5\"},{"
    "\"ip\":\"fd00:1::5\"}],\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\"}]}},\n"
    "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"web\",\"namespace\":"
    "\"shop\"},\"spec\":{\"type\":\"LoadBalancer\",\"clusterIP\":\"10.96.0.10\",\"clusterIPs\":"
    "[\"10.96.0.10\",\"fd00:96::10\"],\"selector\":{\"app\":\"web\"},\"ports\":[{\"name\":"
    "\"http\",\"port\":80,\"targetPort\":8080,\"nodePort\":30080,\"appProtocol\":\"http\"},"
    "{\"name\":\"dns\",\"port\":53,\"protocol\":\"UDP\",\"targetPort\":\"dns\"},{\"name\":"
    "\"plain\",\"port\":81}],\"externalIPs\":[\"198.51.100.1\",\"198.51.100.2\"],"
    "\"loadBalancerIP\":\"198.51.100.10\",\"externalTrafficPolicy\":\"Local\","
    "\"internalTrafficPolicy\":\"Local\",\"sessionAffinity\":\"ClientIP\","
    "\"sessionAffinityConfig\":{\"clientIP\":{\"timeoutSeconds\":600}},"
    "\"healthCheckNodePort\":31000,\"publishNotReadyAddresses\":true,"
    "\"allocateLoadBalancerNodePorts\":false},\"status\":{\"loadBalancer\":{\"ingress\":[{"
    "\"ip\":\"198.51.100.10\"},{\"hostname\":\"lb.example\"}]}}},\n"
    "{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":{\"name\":"
    "\"web-abc\",\"namespace\":\"shop\",\"labels\":{\"kubernetes.io/service-name\":\"web\","
    "\"endpointslice.kubernetes.io/managed-by\":\"controller.twill.io\"}},\"addressType\":"
    "\"IPv4\",\"endpoints\":[{\"addresses\":[\"10.244.1.5\"],\"nodeName\":\"w1\",\"hostname\":"
    "\"web-0\",\"zone\":\"z1\",\"targetRef\":{\"kind\":\"Pod\",\"name\":\"web-0\"}},{"
    "\"addresses\":[\"10.244.2.5\"],\"conditions\":{\"ready\":false,\"serving\":true,"
    "\"terminating\":true}}],\"ports\":[{\"name\":\"http\",\"port\":8080,\"protocol\":\"TCP\"},"
    "{\"name\":\"dns\",\"port\":53,\"protocol\":\"UDP\"}]},\n"
    "{\"apiVersion\":\"networking.k8s.io/v1\",\"kind\":\"NetworkPolicy\",\"metadata\":{"
    "\"name\":\"allow\",\"namespace\":\"shop\"},\"spec\":{\"podSelector\":{\"matchLabels\":{"
    "\"app\":\"web\"}},\"ingress\":[{\"from\":[{\"podSelector\":{\"matchLabels\":{\"role\":"
    "\"client\"}},\"namespaceSelector\":{\"matchExpressions\":[{\"key\":\"team\","
    "\"operator\":\"Exists\"}]}},{\"ipBlock\":{\"cidr\":\"172.17.0.0/16\",\"except\":["
    "\"172.17.1.0/24\"]}}],\"ports\":[{\"port\":80},{\"protocol\":\"UDP\",\"port\":1000,"
    "\"endPort\":2000},{\"port\":\"http\"}]},{}],\"egress\":[{\"to\":[{\"namespaceSelector\":"
    "{}}]}]}},\n"
    "{\"apiVersion\":\"metallb.io/v1beta1\",\"kind\":\"IPAddressPool\",\"metadata\":{\"name\":"
    "\"pool\",\"namespace\":\"metallb-system\"},\"spec\":{\"addresses\":[\"192.168.30.0/28\","
    "\"192.168.31.1-192.168.31.9\",\"fd00:30::/120\"],\"autoAssign\":false}}\n"
    "]\n";

static void test_all_kinds_json(void **state)
{
	(void)state;
	struct objlist l = good(all_json, 7);
	check_all(&l, true);
	assert_int_equal(l.v[1]->meta.line, 3); /* each array element on its own line */

	struct objlist y = good(all_yaml, 7);
	/* the YAML Pod has one more (non-Ready) condition, which is not modelled: same content */
	for (size_t i = 0; i < 7; i++)
		if (l.v[i]->hash != y.v[i]->hash)
			fail_msg("hash of %s differs between YAML and JSON", id(l.v[i]));
	objlist_free(&y);
	objlist_free(&l);
}

/* ---- documents, Lists ---- */

static void test_multidoc_and_lists(void **state)
{
	(void)state;
	struct objlist l = good("# comment\n"
				"---\n"
				"---\n"
				"apiVersion: v1\n"
				"kind: List\n"
				"items:\n"
				"- {apiVersion: v1, kind: Pod, metadata: {name: a}}\n"
				"- {apiVersion: v1, kind: ConfigMap, metadata: {name: cm}}\n"
				"- {apiVersion: v1, kind: Service, metadata: {name: s}}\n"
				"...\n"
				"---\n"
				"apiVersion: v1\n"
				"kind: PodList\n"
				"items:\n"
				"- metadata: {name: b, namespace: x}\n"
				"---\n"
				"apiVersion: v1\n"
				"kind: ConfigMap\n"
				"metadata: {name: ignored}\n"
				"data: {a: b}\n"
				"---\n"
				"apiVersion: projectcalico.org/v3\n"
				"kind: NetworkPolicy\n"
				"metadata: {name: calico-is-not-k8s}\n"
				"spec: {selector: all(), order: 10}\n"
				"---\n"
				"apiVersion: v1\n"
				"kind: Pod\n"
				"metadata: {name: c}\n",
				4);
	assert_string_equal(id(l.v[0]), "Pod/default/a");
	assert_int_equal(l.v[0]->meta.line, 7);
	assert_string_equal(id(l.v[1]), "Service/default/s");
	assert_string_equal(id(l.v[2]), "Pod/x/b");
	assert_string_equal(id(l.v[3]), "Pod/default/c");
	assert_int_equal(l.v[3]->meta.line, 27);
	objlist_free(&l);

	/* JSON List; the twill status overlay shapes */
	l = good("{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[\n"
		 " {\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\n"
		 "  \"metadata\":{\"name\":\"web-twill\",\"namespace\":\"default\",\"labels\":{\n"
		 "   \"kubernetes.io/service-name\":\"web\"}},\"addressType\":\"IPv4\",\n"
		 "  \"endpoints\":[],\"ports\":[]}]}\n",
		 1);
	assert_string_equal(l.v[0]->eps.service, "web");
	assert_int_equal(l.v[0]->meta.line, 2);
	objlist_free(&l);
	l = good("{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\","
		 "\"namespace\":\"default\"},\"status\":{\"phase\":\"Running\",\"podIP\":"
		 "\"172.20.0.5\",\"podIPs\":[{\"ip\":\"172.20.0.5\"}],\"conditions\":[{\"type\":"
		 "\"Ready\",\"status\":\"True\"}]}}",
		 1);
	assert_null(l.v[0]->pod.node_name);
	assert_true(l.v[0]->pod.ready);
	assert_int_equal(l.v[0]->pod.nips, 1);
	objlist_free(&l);
	l = good("{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"ctr\"},"
		 "\"spec\":{\"podCIDR\":\"172.20.0.0/24\",\"podCIDRs\":[\"172.20.0.0/24\"]}}",
		 1);
	assert_int_equal(l.v[0]->node.npod_cidrs, 1);
	objlist_free(&l);

	/* empty input and comment-only input are fine */
	good("", 0);
	good("# nothing\n", 0);
	good("   \n", 0);
	good("[]", 0);
	good("---\n...\n", 0);
	good("--- []\n", 0); /* YAML: an empty collection first */
}

static void test_deployment(void **state)
{
	(void)state;
	struct objlist l = good("apiVersion: apps/v1\n"
				"kind: Deployment\n"
				"metadata: {name: web, namespace: shop, labels: {owner: me}}\n"
				"spec:\n"
				"  replicas: 3\n"
				"  selector: {matchLabels: {app: web}}\n"
				"  template:\n"
				"    metadata:\n"
				"      labels: {app: web, tier: front}\n"
				"    spec:\n"
				"      nodeName: w0\n"
				"      hostNetwork: true\n"
				"      containers:\n"
				"      - name: c\n"
				"        ports: [{containerPort: 8080, name: http}]\n"
				"      - name: d\n"
				"        ports: [{containerPort: 53, protocol: UDP}]\n",
				3);
	for (size_t i = 0; i < 3; i++) {
		struct object *o = l.v[i];
		char want[64];
		snprintf(want, sizeof(want), "Pod/shop/web-%zu", i);
		assert_string_equal(id(o), want);
		assert_int_equal(o->kind, KIND_POD);
		assert_int_equal(o->meta.line, 1);
		assert_int_equal(o->meta.labels.n, 2);
		assert_string_equal(labels_get(&o->meta.labels, "app"), "web");
		assert_null(labels_get(&o->meta.labels, "owner"));
		assert_string_equal(o->pod.node_name, "w0");
		assert_true(o->pod.host_network);
		assert_int_equal(o->pod.nports, 2);
		assert_int_equal(o->pod.ports[1].proto, PROTO_UDP);
		assert_int_equal(o->hash, object_hash(o));
	}
	assert_int_not_equal(l.v[0]->hash, l.v[1]->hash);
	objlist_free(&l);

	l = good("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: one}\n"
		 "spec: {template: {spec: {containers: [{name: c}]}}}\n",
		 1);
	assert_string_equal(id(l.v[0]), "Pod/default/one-0");
	objlist_free(&l);
	good("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: none}\n"
	     "spec: {replicas: 0, template: {spec: {containers: [{name: c}]}}}\n",
	     0);

	/* a bad template drops the whole Deployment */
	struct seen s;
	l = (struct objlist){0};
	assert_int_equal(decode("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"
				"spec:\n  replicas: 2\n  template:\n    spec:\n      containers:\n"
				"      - name: c\n        ports: [{containerPort: 0}]\n",
				&l, &s),
			 1);
	assert_int_equal(l.n, 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.line[0], 10);
	assert_string_equal(s.object[0], "Deployment/default/d");
	assert_string_equal(s.field[0], "spec.template.spec.containers[0].ports[0].containerPort");
	assert_int_equal(decode("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"
				"spec: {replicas: 100000}\n",
				&l, &s),
			 1);
	assert_string_equal(s.field[0], "spec.replicas");
	assert_int_equal(l.n, 0);
}

/* ---- defaulting ---- */

static void test_defaults(void **state)
{
	(void)state;
	struct object *o = one("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
			       "spec: {ports: [{port: 80}]}\n");
	assert_string_equal(o->meta.ns, "default");
	assert_int_equal(o->svc.type, SVC_CLUSTER_IP);
	assert_int_equal(o->svc.ports[0].proto, PROTO_TCP);
	assert_int_equal(o->svc.ports[0].target_port, 80);
	assert_int_equal(o->svc.affinity_timeout, 10800);
	assert_false(o->svc.affinity_client_ip);
	assert_true(o->svc.allocate_lb_node_ports);
	assert_false(o->svc.selector.present); /* no selector */
	assert_int_equal(o->svc.ncluster_ips, 0);
	assert_false(o->svc.etp_local);
	object_free(o);

	o = one("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
		"spec: {clusterIP: None, selector: {}, sessionAffinity: ClientIP}\n");
	assert_true(o->svc.headless);
	assert_int_equal(o->svc.ncluster_ips, 0);
	assert_false(o->svc.selector.present); /* empty selector: the API server keeps nil */
	assert_true(o->svc.affinity_client_ip);
	assert_int_equal(o->svc.affinity_timeout, 10800);
	object_free(o);

	o = one("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
		"spec: {type: ExternalName, externalName: db.example.com, clusterIP: ''}\n");
	assert_int_equal(o->svc.type, SVC_EXTERNAL_NAME);
	assert_string_equal(o->svc.external_name, "db.example.com");
	object_free(o);

	/* policyTypes: Ingress only without egress rules */
	o = one("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a}\n"
		"spec: {podSelector: {}}\n");
	assert_true(o->np.ingress_type);
	assert_false(o->np.egress_type);
	assert_true(o->np.pod_selector.present);
	assert_int_equal(o->np.ningress, 0); /* deny all ingress */
	object_free(o);
	o = one("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a}\n"
		"spec: {egress: []}\n");
	assert_true(o->np.ingress_type);
	assert_false(o->np.egress_type);
	assert_true(o->np.pod_selector.present); /* omitted podSelector: every pod */
	object_free(o);
	o = one("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a}\n"
		"spec: {podSelector: {}, policyTypes: [Egress], ingress: [{}]}\n");
	assert_false(o->np.ingress_type);
	assert_true(o->np.egress_type);
	object_free(o);
	o = one("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a}\n"
		"spec: {podSelector: {}, policyTypes: [Ingress, Egress]}\n");
	assert_true(o->np.ingress_type);
	assert_true(o->np.egress_type);
	assert_int_equal(o->np.negress, 0);
	object_free(o);

	o = one(
	    "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\n"
	    "spec: {addresses: ['10.0.0.0 - 10.0.0.255', '::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:"
	    "ffff']}\n");
	assert_string_equal(o->meta.ns, "default");
	assert_true(o->pool.auto_assign);
	assert_int_equal(o->pool.nranges, 2);
	assert_string_equal(pfxstr(&o->pool.cidrs[0]), "10.0.0.0/24");
	assert_string_equal(pfxstr(&o->pool.cidrs[1]), "::/0");
	object_free(o);

	/* YAML 1.1 scalars as Kubernetes reads them */
	o = one("apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {a: ~, b: '', c: 'yes'}}\n"
		"spec: {hostNetwork: yes, nodeName: null}\n");
	assert_true(o->pod.host_network);
	assert_null(o->pod.node_name);
	assert_string_equal(labels_get(&o->meta.labels, "a"), "");
	assert_string_equal(labels_get(&o->meta.labels, "c"), "yes");
	object_free(o);
}

static void test_anchors_merge(void **state)
{
	(void)state;
	struct objlist l = good("apiVersion: v1\n"
				"kind: Service\n"
				"metadata: {name: s}\n"
				"spec:\n"
				"  ports:\n"
				"  - &p {name: a, port: 80, protocol: UDP}\n"
				"  - <<: *p\n"
				"    name: b\n"
				"  - <<: [{name: c, port: 82}, *p]\n",
				1);
	struct service_obj *s = &l.v[0]->svc;
	assert_int_equal(s->nports, 3);
	assert_string_equal(s->ports[1].name, "b");
	assert_int_equal(s->ports[1].port, 80);
	assert_int_equal(s->ports[1].proto, PROTO_UDP);
	assert_string_equal(s->ports[2].name, "c");
	assert_int_equal(s->ports[2].port, 82); /* first merged map wins */
	assert_int_equal(s->ports[2].proto, PROTO_UDP);
	objlist_free(&l);

	/* billion laughs: bounded, reported, and the next document still decodes */
	struct seen sn;
	l = (struct objlist){0};
	int r = decode("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
		       "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
		       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
		       "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
		       "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
		       "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
		       "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
		       "---\n"
		       "apiVersion: v1\nkind: Pod\nmetadata: {name: ok}\n",
		       &l, &sn);
	assert_int_equal(r, 1);
	assert_int_equal(l.n, 1);
	assert_int_equal(sn.n, 1);
	assert_int_equal(sn.line[0], 6);
	assert_non_null(strstr(sn.msg[0], "aliases"));
	objlist_free(&l);

	r = decode("a: *nope\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: ok}\n", &l, &sn);
	assert_int_equal(r, 1);
	assert_int_equal(l.n, 1);
	assert_non_null(strstr(sn.msg[0], "unknown anchor"));
	objlist_free(&l);
}

/* ---- bad input: right line, field and object; only the bad document is dropped ---- */

struct bad_case {
	const char *doc; /* the middle document */
	int line;	 /* expected line within the whole file */
	const char *object;
	const char *field;
	const char *msg; /* substring */
};

static const char *const before = "apiVersion: v1\nkind: Pod\nmetadata: {name: first}\n---\n";
static const char *const after = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: last}\n";

static const struct bad_case bad_cases[] = {
    {"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus:\n  podIP: 10.0.0.300\n", 9,
     "Pod/default/p", "status.podIP", "invalid IP address \"10.0.0.300\""},
    {"apiVersion: v1\nkind: Node\nmetadata: {name: n}\nspec:\n  podCIDRs:\n  - 10.0.0.0/24\n"
     "  - 10.1.0.0/33\n",
     11, "Node/n", "spec.podCIDRs[1]", "invalid CIDR"},
    {"apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: 80\n"
     "    name: a\n  - port: 65536\n    name: b\n",
     12, "Service/default/s", "spec.ports[1].port", "65536 is out of range 1-65535"},
    {"apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: 0\n", 10,
     "Service/default/s", "spec.ports[0].port", "out of range"},
    {"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n"
     "    ports:\n    - containerPort: 80\n      protocol: ICMP\n",
     13, "Pod/default/p", "spec.containers[0].ports[0].protocol", "unknown protocol \"ICMP\""},
    {"apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: ns}\nspec:\n"
     "  type: Ingress\n",
     9, "Service/ns/s", "spec.type", "unknown Service type \"Ingress\""},
    {"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np}\nspec:\n"
     "  podSelector:\n    matchExpressions:\n    - key: a\n      operator: Equals\n"
     "      values: [x]\n",
     12, "NetworkPolicy/default/np", "spec.podSelector.matchExpressions[0].operator",
     "unknown operator \"Equals\""},
    {"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np}\nspec:\n"
     "  podSelector:\n    matchExpressions:\n    - key: a\n      operator: In\n",
     11, "NetworkPolicy/default/np", "spec.podSelector.matchExpressions[0].values",
     "must be non-empty for operator In"},
    {"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np}\nspec:\n"
     "  ingress:\n  - from:\n    - namespaceSelector:\n        matchExpressions:\n"
     "        - {key: a, operator: Exists, values: [x]}\n",
     13, "NetworkPolicy/default/np",
     "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values",
     "must be empty for operator Exists"},
    {"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np}\nspec:\n"
     "  egress:\n  - ports:\n    - port: 2000\n      endPort: 1000\n",
     12, "NetworkPolicy/default/np", "spec.egress[0].ports[0].endPort",
     "1000 is less than port 2000"},
    {"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np}\nspec:\n"
     "  ingress:\n  - ports:\n    - port: http\n      endPort: 1000\n",
     12, "NetworkPolicy/default/np", "spec.ingress[0].ports[0].endPort", "requires a numeric port"},
    {"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np}\nspec:\n"
     "  ingress:\n  - from:\n    - ipBlock:\n        cidr: 10.0.0.0/16\n        except:\n"
     "        - 10.0.1.0/24\n        - 10.1.0.0/24\n",
     15, "NetworkPolicy/default/np", "spec.ingress[0].from[0].ipBlock.except[1]",
     "10.1.0.0/24 is not inside cidr 10.0.0.0/16"},
    {"apiVersion: v1\nkind: Pod\nmetadata:\n  namespace: x\n  labels: {a: b}\n", 8, "Pod",
     "metadata.name", "required"},
    {"apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\n", 7, "Pod/default/Bad_Name",
     "metadata.name", "invalid name"},
    {"apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {app: 'a b'}}\n", 7, "Pod/default/p",
     "metadata.labels.app", "invalid label value"},
    {"kind: Pod\nmetadata: {name: p}\n", 5, "", "apiVersion", "required"},
    {"apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: '80'\n", 10,
     "Service/default/s", "spec.ports[0].port", "must be an integer"},
    {"apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  externalIPs: [1.2.3.4, x]\n", 9,
     "Service/default/s", "spec.externalIPs[1]", "invalid IP address \"x\""},
    {"apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n"
     "  - {port: 80, targetPort: '8080'}\n",
     10, "Service/default/s", "spec.ports[0].targetPort", "invalid port name"},
    {"apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n"
     "  sessionAffinityConfig:\n    clientIP:\n      timeoutSeconds: 100000\n",
     11, "Service/default/s", "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
     "out of range 1-86400"},
    {"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e}\n"
     "addressType: IPv4\nendpoints:\n- addresses: ['fd00::1']\n",
     10, "EndpointSlice/default/e", "endpoints[0].addresses[0]", "is not an IPv4 address"},
    {"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e}\n"
     "addressType: FQDN\n",
     8, "EndpointSlice/default/e", "addressType", "not supported"},
    {"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec:\n"
     "  addresses:\n  - 10.0.0.9-10.0.0.1\n",
     10, "IPAddressPool/default/p", "spec.addresses[0]", "ends before it starts"},
    {"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: [1]\n", 8, "Pod/default/p", "spec",
     "must be a mapping"},
    {"apiVersion: crd.projectcalico.org/v1\nkind: BGPPeer\nmetadata: {name: r}\nspec:\n"
     "  peerIP: 10.0.0.1:99999\n  asNumber: 65002\n",
     9, "BGPPeer/r", "spec.peerIP", "invalid peer address"},
    {"apiVersion: crd.projectcalico.org/v1\nkind: BGPPeer\nmetadata: {name: r}\nspec:\n"
     "  peerIP: 10.0.0.1\n",
     9, "BGPPeer/r", "spec.asNumber", "required"},
    {"apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: r}\nspec:\n"
     "  peerIP: 10.0.0.1\n  asNumber: 70000.1\n",
     10, "BGPPeer/r", "spec.asNumber", "invalid AS number"},
    {"apiVersion: crd.projectcalico.org/v1\nkind: BGPPeer\nmetadata: {name: r}\nspec:\n"
     "  peerIP: 10.0.0.1\n  asNumber: 1\n  password:\n    secretKeyRef: {name: s}\n",
     12, "BGPPeer/r", "spec.password.secretKeyRef.key", "required"},
    {"apiVersion: crd.projectcalico.org/v1\nkind: BGPConfiguration\nmetadata: {name: default}\n"
     "spec:\n  nodeMeshMaxRestartTime: 2 minutes\n",
     9, "BGPConfiguration/default", "spec.nodeMeshMaxRestartTime", "invalid duration"},
    {"apiVersion: crd.projectcalico.org/v1\nkind: BGPConfiguration\nmetadata: {name: default}\n"
     "spec:\n  serviceLoadBalancerIPs:\n  - cidr: 10.0.0.0/33\n",
     10, "BGPConfiguration/default", "spec.serviceLoadBalancerIPs[0].cidr", "invalid CIDR"},
    {"apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: a}\nspec:\n"
     "  communities: [65001:1, no-export]\n",
     9, "BGPAdvertisement/default/a", "spec.communities[1]", "invalid community \"no-export\""},
    {"apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: a}\nspec:\n"
     "  aggregationLength: 33\n",
     9, "BGPAdvertisement/default/a", "spec.aggregationLength", "out of range 0-32"},
    {"just a string\n", 5, "", "", "not a Kubernetes object"},
#define SVC_HEAD "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n"
    {SVC_HEAD "  ipFamilies: [IPv4, IPv5]\n", 9, "Service/default/s", "spec.ipFamilies[1]",
     "unknown IP family \"IPv5\" (want IPv4 or IPv6)"},
    {SVC_HEAD "  ipFamilies: [IPv6, IPv6]\n", 9, "Service/default/s", "spec.ipFamilies[1]",
     "duplicate IP family IPv6"},
    {SVC_HEAD "  ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv4, IPv6, IPv4]\n", 10,
     "Service/default/s", "spec.ipFamilies", "at most 2 entries (IPv4 and IPv6), not 3"},
    {SVC_HEAD "  ipFamilyPolicy: DualStack\n", 9, "Service/default/s", "spec.ipFamilyPolicy",
     "unknown policy \"DualStack\""},
    {SVC_HEAD "  ipFamilyPolicy: SingleStack\n  ipFamilies: [IPv4, IPv6]\n", 9, "Service/default/s",
     "spec.ipFamilyPolicy", "SingleStack, but ipFamilies has two entries"},
    {SVC_HEAD "  clusterIPs: [10.96.0.5]\n  ipFamilies: [IPv6]\n", 10, "Service/default/s",
     "spec.ipFamilies", "entry 0 is IPv6 but clusterIPs[0] 10.96.0.5 is IPv4"},
    {SVC_HEAD "  ipFamilyPolicy: PreferDualStack\n  clusterIPs: [10.96.0.5, 10.96.0.6]\n", 10,
     "Service/default/s", "spec.clusterIPs", "must be of different families (IPv4)"},
    {SVC_HEAD "  type: ExternalName\n  externalName: x.example\n  ipFamilies: [IPv4]\n", 11,
     "Service/default/s", "spec.ipFamilies", "not allowed for type ExternalName"},
#undef SVC_HEAD
};

static void test_ip_families(void **state)
{
	(void)state;
	struct objlist l =
	    good("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n"
		 "---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec:\n"
		 "  ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv6, IPv4]\n"
		 "---\napiVersion: v1\nkind: Service\nmetadata: {name: c}\nspec:\n"
		 "  clusterIPs: [10.96.0.5, 'fd00:96::5']\n"
		 "---\napiVersion: v1\nkind: Service\nmetadata: {name: d}\nspec:\n"
		 "  ipFamilyPolicy: RequireDualStack\n  clusterIPs: ['fd00:96::5']\n"
		 "  ipFamilies: [IPv6]\n"
		 "---\napiVersion: v1\nkind: Service\nmetadata: {name: e}\nspec:\n"
		 "  ipFamilyPolicy: SingleStack\n  ipFamilies: [IPv4]\n  ports: [{port: 80}]\n",
		 5);
	const struct service_obj *a = &l.v[0]->svc, *b = &l.v[1]->svc, *c = &l.v[2]->svc,
				 *d = &l.v[3]->svc, *e = &l.v[4]->svc;
	/* defaults: SingleStack, no families (the controller picks the cluster's primary) */
	assert_false(a->has_ip_family_policy);
	assert_int_equal(a->ip_family_policy, IPFP_SINGLE_STACK);
	assert_int_equal(a->nip_families, 0);
	assert_true(b->has_ip_family_policy);
	assert_int_equal(b->ip_family_policy, IPFP_PREFER_DUAL_STACK);
	assert_int_equal(b->nip_families, 2);
	assert_int_equal(b->ip_families[0], AF_INET6);
	assert_int_equal(b->ip_families[1], AF_INET);
	/* two clusterIPs without a policy: RequireDualStack, as the API server infers it */
	assert_false(c->has_ip_family_policy);
	assert_int_equal(c->ip_family_policy, IPFP_REQUIRE_DUAL_STACK);
	assert_int_equal(c->ncluster_ips, 2);
	assert_int_equal(d->ip_family_policy, IPFP_REQUIRE_DUAL_STACK);
	assert_int_equal(d->ip_families[0], AF_INET6);
	assert_string_equal(ip_family_policy_name(d->ip_family_policy), "RequireDualStack");
	assert_string_equal(ip_family_name(d->ip_families[0]), "IPv6");
	/* an explicit SingleStack is content: it changes the hash */
	assert_true(e->has_ip_family_policy);
	assert_int_equal(e->nip_families, 1);
	objlist_free(&l);
	struct object *x = one("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {}\n");
	struct object *y = one("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n"
			       "  ipFamilyPolicy: SingleStack\n");
	struct object *z = one("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n"
			       "  ipFamilyPolicy: PreferDualStack\n");
	assert_true(x->hash != y->hash && y->hash != z->hash && x->hash != z->hash);
	object_free(x);
	object_free(y);
	object_free(z);
}

static void test_bad_inputs(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad_cases); i++) {
		const struct bad_case *c = &bad_cases[i];
		char *text = xasprintf("%s%s%s", before, c->doc, after);
		struct objlist l = {0};
		struct seen s;
		int r = decode(text, &l, &s);
		if (s.n != 1 || s.line[0] != c->line || strcmp(s.object[0], c->object) ||
		    strcmp(s.field[0], c->field) || !strstr(s.msg[0], c->msg))
			fail_msg("case %zu: got %d diags, first: %s", i, s.n,
				 s.n ? s.text[0] : "-");
		assert_int_equal(r, 1);
		assert_int_equal(l.n, 2);
		assert_string_equal(l.v[0]->meta.name, "first");
		assert_string_equal(l.v[1]->meta.name, "last");
		objlist_free(&l);
		free(text);
	}
}

static void test_bgp_kinds(void **state)
{
	(void)state;
	struct objlist l = good(
	    "apiVersion: crd.projectcalico.org/v1\nkind: BGPConfiguration\n"
	    "metadata: {name: default}\nspec:\n  asNumber: 64512\n"
	    "  nodeToNodeMeshEnabled: false\n  nodeMeshMaxRestartTime: 2m30s\n"
	    "  listenPort: 1790\n  serviceLoadBalancerIPs:\n  - cidr: 192.168.50.0/24\n"
	    "  serviceClusterIPs:\n  - cidr: 10.96.0.0/16\n  - cidr: fd00:96::/108\n"
	    "---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: tor}\n"
	    "spec:\n  peerIP: '[fd00::1]:1790'\n  asNumber: 1.10\n  nodeSelector: rack == 'a'\n"
	    "  password:\n    secretKeyRef: {name: bgp-secrets, key: tor}\n"
	    "  keepOriginalNextHop: true\n  ttlSecurity: 1\n  maxRestartTime: 90s\n"
	    "---\napiVersion: crd.projectcalico.org/v1\nkind: BGPPeer\nmetadata: {name: rr}\n"
	    "spec:\n  peerSelector: has(route-reflector)\n  node: w1\n  password: plain\n"
	    "---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\n"
	    "metadata: {name: adv, namespace: metallb-system}\nspec:\n"
	    "  ipAddressPools: [pool]\n  communities: ['65001:100', 'large:1:2:3']\n"
	    "  aggregationLength: 24\n  localPref: 50\n  peers: [tor]\n"
	    "  nodeSelectors:\n  - matchLabels: {zone: a}\n",
	    4);
	struct object *c = l.v[0], *p = l.v[1], *r = l.v[2], *a = l.v[3];
	assert_string_equal(id(c), "BGPConfiguration/default");
	assert_int_equal(c->bgpconf.as_number, 64512);
	assert_false(c->bgpconf.node_mesh);
	assert_int_equal(c->bgpconf.mesh_restart_time, 150);
	assert_int_equal(c->bgpconf.listen_port, 1790);
	assert_int_equal(c->bgpconf.nsvc_lb, 1);
	assert_string_equal(pfxstr(&c->bgpconf.svc_lb[0]), "192.168.50.0/24");
	assert_int_equal(c->bgpconf.nsvc_cluster, 2);
	assert_string_equal(pfxstr(&c->bgpconf.svc_cluster[1]), "fd00:96::/108");

	assert_string_equal(id(p), "BGPPeer/tor");
	assert_string_equal(ipstr(&p->bgppeer.peer_ip), "fd00::1");
	assert_int_equal(p->bgppeer.port, 1790);
	assert_int_equal(p->bgppeer.as_number, 1u << 16 | 10);
	assert_string_equal(p->bgppeer.node_selector, "rack == 'a'");
	assert_string_equal(p->bgppeer.password_secret, "bgp-secrets");
	assert_string_equal(p->bgppeer.password_key, "tor");
	assert_null(p->bgppeer.password);
	assert_true(p->bgppeer.keep_original_next_hop);
	assert_int_equal(p->bgppeer.ttl_security, 1);
	assert_int_equal(p->bgppeer.max_restart_time, 90);

	assert_int_equal(r->bgppeer.peer_ip.family, 0);
	assert_string_equal(r->bgppeer.peer_selector, "has(route-reflector)");
	assert_string_equal(r->bgppeer.node, "w1");
	assert_string_equal(r->bgppeer.password, "plain");

	assert_string_equal(id(a), "BGPAdvertisement/metallb-system/adv");
	assert_int_equal(a->bgpadv.npools, 1);
	assert_string_equal(a->bgpadv.pools[0], "pool");
	assert_int_equal(a->bgpadv.ncomm, 1);
	assert_int_equal(a->bgpadv.comm[0], 65001u << 16 | 100);
	assert_int_equal(a->bgpadv.nlcomm, 1);
	assert_int_equal(a->bgpadv.lcomm[2], 3);
	assert_int_equal(a->bgpadv.aggregation_length, 24);
	assert_int_equal(a->bgpadv.aggregation_length_v6, 128);
	assert_true(a->bgpadv.has_local_pref);
	assert_int_equal(a->bgpadv.local_pref, 50);
	assert_string_equal(a->bgpadv.peers[0], "tor");
	assert_int_equal(a->bgpadv.nnode_selectors, 1);
	struct labels zone = {0};
	struct kv kv = {"zone", "a"};
	zone.n = 1;
	zone.kv = &kv;
	assert_true(selector_matches(&a->bgpadv.node_selectors[0], &zone));

	/* clone and hash cover the new kinds */
	for (size_t i = 0; i < l.n; i++) {
		struct object *x = object_clone(l.v[i]);
		assert_int_equal(object_hash(x), l.v[i]->hash);
		object_free(x);
	}
	objlist_free(&l);
	/* defaults */
	struct object *o = one("apiVersion: crd.projectcalico.org/v1\nkind: BGPConfiguration\n"
			       "metadata: {name: default}\n");
	assert_true(o->bgpconf.node_mesh);
	assert_int_equal(o->bgpconf.as_number, 0);
	object_free(o);
}

static void test_several_errors_one_doc(void **state)
{
	(void)state;
	struct objlist l = {0};
	struct seen s;
	int r = decode("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n"
		       "  type: Weird\n  ports:\n  - {port: 99999, protocol: FOO}\n",
		       &l, &s);
	assert_int_equal(r, 1);
	assert_int_equal(l.n, 0);
	assert_int_equal(s.n, 3);
	assert_string_equal(
	    s.text[0], "m.yaml:5: Service/default/s: spec.type: unknown Service type \"Weird\" "
		       "(want ClusterIP, NodePort, LoadBalancer or ExternalName)");
	assert_string_equal(s.field[1], "spec.ports[0].port");
	assert_string_equal(s.field[2], "spec.ports[0].protocol");
}

static void test_syntax_errors(void **state)
{
	(void)state;
	struct objlist l = {0};
	struct seen s;
	/* the only document is broken: nothing could be parsed */
	assert_int_equal(decode("apiVersion: v1\nkind: Pod\nmetadata:\n  name: [p\n", &l, &s),
			 -EINVAL);
	assert_int_equal(s.n, 1);
	assert_int_equal(l.n, 0);
	assert_non_null(strstr(s.msg[0], "YAML syntax error"));
	assert_true(s.line[0] >= 4);

	/* a later document is broken: the earlier ones stay */
	assert_int_equal(decode("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n"
				"apiVersion: v1\nkind: Pod\n  metadata: x\n",
				&l, &s),
			 1);
	assert_int_equal(l.n, 1);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.line[0], 7);
	assert_string_equal(s.object[0], "");
	assert_null(strstr(s.text[0], "(null)"));
	objlist_free(&l);

	/* parsing resumes at the next document: only the broken one is lost */
	assert_int_equal(decode("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n"
				"apiVersion: v1\nkind: Pod\nmetadata: {name: 'b\n"
				"---\napiVersion: v1\nkind: Pod\nmetadata: {name: c}\n",
				&l, &s),
			 1);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.v[1]->meta.name, "c");
	assert_int_equal(l.v[1]->meta.line, 9);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.line[0], 8);
	objlist_free(&l);
	assert_int_equal(decode("a: [\n---\nb: ]\n---\napiVersion: v1\nkind: Pod\n"
				"metadata: {name: c}\n",
				&l, &s),
			 2);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.v[0]->meta.line, 5);
	objlist_free(&l);
	/* not UTF-8 */
	assert_int_equal(
	    decode("apiVersion: v1\nkind: Pod\nmetadata: {name: \"\xff\xfe\"}\n", &l, &s), -EINVAL);
	assert_int_equal(s.line[0], 3);
	assert_int_equal(l.n, 0);

	/* tabs are not indentation */
	assert_int_equal(decode("apiVersion: v1\nkind: Pod\nmetadata:\n\tname: p\n", &l, &s),
			 -EINVAL);
	assert_int_equal(s.line[0], 4);

	/* JSON */
	assert_int_equal(decode("{\"apiVersion\": \"v1\",\n \"kind\": \"Pod\",\n \"metadata\": "
				"{\"name\": \"p\"},,\n}",
				&l, &s),
			 -EINVAL);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.line[0], 3);
	assert_non_null(strstr(s.msg[0], "JSON syntax error"));
	assert_int_equal(decode("\n\n{\"kind\": ", &l, &s), -EINVAL);
	assert_int_equal(s.line[0], 3);
	assert_int_equal(decode("{\"a\": 1} {\"b\": 2}", &l, &s), -EINVAL);
	assert_int_equal(l.n, 0);

	/* JSON field errors carry lines too */
	assert_int_equal(decode("\n{\n \"apiVersion\": \"v1\",\n \"kind\": \"Service\",\n"
				" \"metadata\": {\"name\": \"s\"},\n"
				" \"spec\": {\"ports\": [\n   {\"port\": 0}\n ]}\n}\n",
				&l, &s),
			 1);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.line[0], 7);
	assert_string_equal(s.field[0], "spec.ports[0].port");
	/* JSON array: only the bad element is dropped */
	assert_int_equal(
	    decode("[{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"a\"}},\n"
		   " {\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{}},\n"
		   " {\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"b\"}}]",
		   &l, &s),
	    1);
	assert_int_equal(l.n, 2);
	assert_int_equal(s.line[0], 2);
	assert_string_equal(s.field[0], "metadata.name");
	objlist_free(&l);
}

/* A Pod with an extra field nested `depth` more levels below its root mapping. */
static char *nested(int depth, bool json)
{
	size_t n = 0;
	char *b = xmalloc((size_t)depth * 2 + 256);
	n += (size_t)sprintf(b, json ? "{\"apiVersion\": \"v1\", \"kind\": \"Pod\", "
				       "\"metadata\": {\"name\": \"deep\"}, \"x\": "
				     : "apiVersion: v1\nkind: Pod\nmetadata: {name: deep}\nx: ");
	for (int i = 0; i < depth; i++)
		b[n++] = '[';
	for (int i = 0; i < depth; i++)
		b[n++] = ']';
	sprintf(b + n, json ? "}" : "\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: ok}\n");
	return b;
}

static void test_limits(void **state)
{
	(void)state;
	struct objlist l = {0};
	struct seen s;
	/* nesting: 64 levels are fine, 65 are not (the root mapping is the first) */
	char *t = nested(63, false);
	assert_int_equal(decode(t, &l, &s), 0);
	assert_int_equal(l.n, 2);
	objlist_free(&l);
	free(t);
	t = nested(64, false);
	assert_int_equal(decode(t, &l, &s), 1);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.v[0]->meta.name, "ok");
	assert_int_equal(s.line[0], 4);
	assert_non_null(strstr(s.msg[0], "nesting deeper than 64"));
	objlist_free(&l);
	free(t);
	t = nested(63, true);
	assert_int_equal(decode(t, &l, &s), 0);
	assert_int_equal(l.n, 1);
	objlist_free(&l);
	free(t);
	t = nested(64, true);
	assert_int_equal(decode(t, &l, &s), -EINVAL);
	assert_non_null(strstr(s.msg[0], "nesting too deep"));
	free(t);
	t = nested(100000, false); /* deep input must not blow the stack either */
	assert_int_equal(decode(t, &l, &s), 1);
	assert_int_equal(l.n, 1);
	objlist_free(&l);
	free(t);
	/* deep block nesting too */
	t = xmalloc(200000 + 64);
	for (int i = 0; i < 100000; i++)
		memcpy(t + 2 * i, "- ", 2);
	strcpy(t + 200000, "y\n");
	assert_int_equal(decode(t, &l, &s), 1);
	assert_int_equal(l.n, 0);
	free(t);
	t = nested(100000, true);
	assert_int_equal(decode(t, &l, &s), -EINVAL);
	free(t);

	/* a document over 16 MiB is rejected; the small one after it is kept */
	size_t big = (16u << 20) + 100;
	char *b = xmalloc(big + 128);
	memcpy(b, "a: \"", 4);
	memset(b + 4, 'x', big);
	strcpy(b + 4 + big, "\"\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: ok}\n");
	assert_int_equal(decode(b, &l, &s), 1);
	assert_int_equal(l.n, 1);
	assert_non_null(strstr(s.msg[0], "larger than 16 MiB"));
	objlist_free(&l);
	b[0] = '[';
	b[1] = '"';
	memcpy(b + 4 + big, "\"]\0", 3);
	assert_int_equal(decode(b, &l, &s), -EFBIG);
	free(b);
}

/* ---- hash: reordered-but-equal input is equal, a change is not ---- */

static void test_hash_equality(void **state)
{
	(void)state;
	const char *a = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n"
			"  labels: {b: '2', a: '1'}\n"
			"spec:\n  selector: {app: web, tier: x}\n  ports:\n  - port: 80\n"
			"    protocol: TCP\n    name: http\n";
	const char *b = "# same thing, other order\n"
			"spec:\n  ports:\n  - {name: http, port: 80}\n"
			"  selector:\n    tier: x\n    app: web\n"
			"metadata:\n  labels:\n    a: \"1\"\n    b: \"2\"\n  name: web\n"
			"  namespace: default\n"
			"kind: Service\napiVersion: v1\n";
	const char *c =
	    "{\"kind\":\"Service\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"web\","
	    "\"labels\":{\"b\":\"2\",\"a\":\"1\"}},\"spec\":{\"selector\":{\"tier\":\"x\","
	    "\"app\":\"web\"},\"ports\":[{\"port\":80,\"name\":\"http\","
	    "\"targetPort\":80}]}}";
	struct object *oa = one(a), *ob = one(b), *oc = one(c);
	assert_int_equal(oa->hash, ob->hash);
	assert_int_equal(oa->hash, oc->hash);
	assert_int_not_equal(oa->meta.line, ob->meta.line);

	const char *changed[] = {
	    "apiVersion: v1\nkind: Service\nmetadata: {name: web, labels: {a: '1', b: '3'}}\n"
	    "spec: {selector: {app: web, tier: x}, ports: [{port: 80, name: http}]}\n",
	    "apiVersion: v1\nkind: Service\nmetadata: {name: web, labels: {a: '1', b: '2'}}\n"
	    "spec: {selector: {app: web, tier: x}, ports: [{port: 81, name: http}]}\n",
	    "apiVersion: v1\nkind: Service\nmetadata: {name: web, labels: {a: '1', b: '2'}}\n"
	    "spec: {selector: {app: web, tier: x}, ports: [{port: 80, name: http, protocol: "
	    "UDP}]}\n",
	    "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: x, labels: {a: '1', "
	    "b: '2'}}\nspec: {selector: {app: web, tier: x}, ports: [{port: 80, name: http}]}\n",
	    "apiVersion: v1\nkind: Service\nmetadata: {name: web, labels: {a: '1', b: '2'}}\n"
	    "spec: {selector: {app: web}, ports: [{port: 80, name: http}]}\n",
	    "apiVersion: v1\nkind: Service\nmetadata: {name: web, labels: {a: '1', b: '2'}}\n"
	    "spec: {selector: {app: web, tier: x}, ports: [{port: 80, name: http, targetPort: "
	    "8080}]}\n",
	};
	for (size_t i = 0; i < ARRAY_SIZE(changed); i++) {
		struct object *o = one(changed[i]);
		if (o->hash == oa->hash)
			fail_msg("change %zu did not change the hash", i);
		object_free(o);
	}
	object_free(oa);
	object_free(ob);
	object_free(oc);
}

/* ---- large files in parts ---- */

/* n documents (Services and EndpointSlices) with line ending eol; *lines gets the line of
 * each document's object. */
static char *many_docs(int n, const char *eol, int *lines)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	int line = 1;
	fprintf(f, "# generated%s", eol);
	line++;
	for (int i = 0; i < n; i++) {
		if (i) {
			fprintf(f, i % 7 ? "---%s" : "...%s--- # next%s", eol, eol);
			line += i % 7 ? 1 : 2;
		}
		lines[i] = line;
		if (i % 2) {
			fprintf(f,
				"apiVersion: discovery.k8s.io/v1%skind: EndpointSlice%s"
				"metadata: {name: s%d, labels: {kubernetes.io/service-name: s%d}}%s"
				"addressType: IPv4%sendpoints:%s- addresses: [10.1.%d.%d]%s"
				"  nodeName: n%d%s",
				eol, eol, i, i, eol, eol, eol, i / 256, i % 256, eol, i % 3, eol);
			line += 7;
		} else {
			fprintf(f,
				"apiVersion: v1%skind: Service%smetadata:%s  name: s%d%sspec:%s"
				"  description: |%s    text%s%s    more%s"
				"  ports: [{port: %d}]%s",
				eol, eol, eol, i, eol, eol, eol, eol, eol, eol, 1 + i % 1000, eol);
			line += 10;
		}
	}
	fclose(f);
	return text;
}

static void test_parts(void **state)
{
	(void)state;
	enum { N = 600 };
	static int lines[N];
	const char *eols[] = {"\n", "\r\n"};
	for (size_t e = 0; e < ARRAY_SIZE(eols); e++) {
		char *text = many_docs(N, eols[e], lines);
		struct objlist l = {0};
		struct seen s;
		manifest_set_parallel(1u << 20, 0);
		memset(&s, 0, sizeof(s));
		assert_int_equal(manifest_decode("m.yaml", text, strlen(text), &l, collect, &s), 0);
		assert_int_equal(manifest_set_parallel(0, 4), 0); /* small: one pass */
		same_in_parts(text, 0, &l, 0, &s);
		for (int threads = 2; threads <= 4; threads++) {
			struct objlist p = {0};
			manifest_set_parallel(0, threads);
			assert_int_equal(manifest_decode("m.yaml", text, strlen(text), &p, NULL, NULL),
					 0);
			assert_int_equal(manifest_set_parallel(1u << 20, 0), 1); /* in parts */
			assert_int_equal(p.n, N);
			for (int i = 0; i < N; i++) {
				assert_int_equal(p.v[i]->meta.line, lines[i]);
				assert_int_equal(l.v[i]->meta.line, lines[i]);
				assert_true(p.v[i]->hash == l.v[i]->hash);
			}
			objlist_free(&p);
		}
		objlist_free(&l);

		/* an error in a late document: the file is decoded again in one pass, so the
		 * error is reported once, at its line, and only that document is left out */
		char *bad = strstr(text + strlen(text) * 3 / 4, "port: ");
		assert_non_null(bad);
		memcpy(bad, "pert:", 5);
		manifest_set_parallel(0, 2);
		memset(&s, 0, sizeof(s));
		assert_int_equal(manifest_decode("m.yaml", text, strlen(text), &l, collect, &s), 1);
		assert_int_equal(manifest_set_parallel(1u << 20, 0), 0);
		assert_int_equal(s.n, 1);
		assert_string_equal(s.msg[0], "required");
		int want = 1;
		for (const char *c = text; c < bad; c++)
			want += *c == '\n';
		assert_int_equal(s.line[0], want);
		assert_int_equal(l.n, N - 1);
		objlist_free(&l);
		memcpy(bad, "port:", 5);

		/* a syntax error ("---" inside a quoted string) in a late document */
		char *q = strstr(bad, "  description: |");
		assert_non_null(q);
		memcpy(q, "  descrip: \"", 12);
		memset(&s, 0, sizeof(s));
		int r1 = manifest_decode("m.yaml", text, strlen(text), &l, collect, &s);
		assert_true(r1 > 0);
		same_in_parts(text, r1, &l, 0, &s);
		objlist_free(&l);
		free(text);
	}

	/* a lone CR, NEL and LS are line breaks to libyaml: the lines of later parts are
	 * counted as it counts them */
	char *text = many_docs(N, "\n", lines);
	char *cr = strstr(text + strlen(text) / 4, "\nkind");
	*cr = '\r';
	char *big = xasprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: x, annotations: "
			      "{a: \"one\xe2\x80\xa8two\xc2\x85three\"}}\n---\n%s",
			      text);
	struct objlist l = {0};
	struct seen s;
	memset(&s, 0, sizeof(s));
	assert_int_equal(manifest_decode("m.yaml", big, strlen(big), &l, collect, &s), 0);
	assert_int_equal(l.n, N + 1);
	assert_int_equal(l.v[N]->meta.line, lines[N - 1] + 4 + 2);
	manifest_set_parallel(1u << 20, 0);
	same_in_parts(big, 0, &l, 0, &s);
	manifest_set_parallel(0, 2);
	assert_int_equal(manifest_decode("m.yaml", big, strlen(big), &l, collect, &s), 0);
	assert_int_equal(manifest_set_parallel(1u << 20, 0), 1);
	assert_int_equal(l.v[2 * N + 1]->meta.line, lines[N - 1] + 4 + 2);
	objlist_free(&l);
	free(big);
	free(text);
}

static void test_diag_fmt_and_file(void **state)
{
	(void)state;
	char buf[256];
	struct diag d = {.file = "f.yaml",
			 .line = 3,
			 .object = "Pod/default/p",
			 .field = "spec.nodeName",
			 .msg = "bad"};
	assert_string_equal(diag_fmt(&d, buf, sizeof(buf)),
			    "f.yaml:3: Pod/default/p: spec.nodeName: bad");
	d.line = 0;
	d.object = NULL;
	d.field = NULL;
	assert_string_equal(diag_fmt(&d, buf, sizeof(buf)), "f.yaml: bad");

	char path[] = "/tmp/twill-test-manifest-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	struct objlist l = {0};
	struct seen s = {0};
	assert_int_equal(manifest_load_file(path, &l, collect, &s), 0);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.v[0]->meta.file, path);
	objlist_free(&l);
	unlink(path);
	assert_int_equal(manifest_load_file(path, &l, collect, &s), -ENOENT);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.field[0], "");
	/* a NULL diag callback is allowed */
	assert_int_equal(manifest_decode("x", "kind: Pod\n", 10, &l, NULL, NULL), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_all_kinds_yaml),
	    cmocka_unit_test(test_all_kinds_json),
	    cmocka_unit_test(test_multidoc_and_lists),
	    cmocka_unit_test(test_deployment),
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_anchors_merge),
	    cmocka_unit_test(test_bad_inputs),
	    cmocka_unit_test(test_ip_families),
	    cmocka_unit_test(test_bgp_kinds),
	    cmocka_unit_test(test_several_errors_one_doc),
	    cmocka_unit_test(test_syntax_errors),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_hash_equality),
	    cmocka_unit_test(test_parts),
	    cmocka_unit_test(test_diag_fmt_and_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
