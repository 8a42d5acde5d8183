/* Unit tests for store/: per-origin diffing, event order, overlays (merge, latent),
 * conflicts, ordering, and the manifest-directory source (files, renames, deletes, bad
 * files, inotify-driven reloads). */
#include <errno.h>
#include <glob.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h> /* after setjmp.h, stdarg.h, stddef.h, stdint.h */

#include "lib/util.h"
#include "store/store.h"

/* ---- helpers ---- */

struct rec {
	size_t n;
	char ev[64][160];
	int tag;
	int *order; /* shared across subscribers */
	size_t *norder;
};

static void rec_cb(void *arg, enum store_event ev, const struct object *old,
		   const struct object *new_obj)
{
	struct rec *r = arg;
	const struct object *o = new_obj ? new_obj : old;
	char id[128];
	object_id(o, id, sizeof(id));
	/* old and new must both be readable during the call */
	if (old)
		assert_non_null(old->meta.name);
	if (new_obj)
		assert_non_null(new_obj->meta.name);
	if (r->n < 64)
		snprintf(r->ev[r->n++], sizeof(r->ev[0]), "%s %s", store_event_name(ev), id);
	if (r->order)
		r->order[(*r->norder)++] = r->tag;
}

static void rec_reset(struct rec *r)
{
	r->n = 0;
}

struct diags {
	size_t n;
	char msg[16][512];
	int line[16];
};

static void diag_cb(const struct diag *d, void *arg)
{
	struct diags *ds = arg;
	if (ds->n < 16) {
		diag_fmt(d, ds->msg[ds->n], sizeof(ds->msg[0]));
		ds->line[ds->n] = d->line;
		ds->n++;
	}
}

static struct objlist decode(const char *text)
{
	struct objlist l = {0};
	int r = manifest_decode("test.yaml", text, strlen(text), &l, NULL, NULL);
	assert_int_equal(r, 0);
	return l;
}

static int replace(struct store *s, const char *origin, bool overlay, const char *text,
		   struct diags *ds)
{
	struct objlist l = decode(text);
	int r = store_replace_origin(s, origin, overlay, &l, ds ? diag_cb : NULL, ds);
	objlist_free(&l);
	return r;
}

#define NODE_A "apiVersion: v1\nkind: Node\nmetadata:\n  name: a\n"
#define NODE_B_CIDR                                                                                \
	"apiVersion: v1\nkind: Node\nmetadata:\n  name: b\nspec:\n  podCIDR: 10.1.2.0/24\n"
#define SVC_WEB(port)                                                                              \
	"apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: "     \
	"web\n  ports:\n  - port: " port "\n"

/* ---- store ---- */

static void test_smap(void **state)
{
	(void)state;
	struct smap m = SMAP_INIT;
	for (int i = 0; i < 1000; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k%04d", i);
		*smap_slot(&m, k, NULL) = (void *)(intptr_t)(i + 1);
	}
	assert_int_equal(m.n, 1000);
	assert_int_equal((intptr_t)smap_get(&m, "k0500"), 501);
	assert_int_equal((intptr_t)smap_del(&m, "k0500"), 501);
	assert_null(smap_get(&m, "k0500"));
	size_t n;
	const char **keys = smap_keys(&m, &n);
	assert_int_equal(n, 999);
	assert_string_equal(keys[0], "k0000");
	assert_string_equal(keys[998], "k0999");
	free(keys);
	smap_clear(&m, NULL);
	assert_int_equal(m.n, 0);
}

static void test_diff(void **state)
{
	(void)state;
	struct store *s = store_new();
	struct rec r = {0};
	store_subscribe(s, ~0u, rec_cb, &r);

	assert_int_equal(replace(s, "a.yaml", false, NODE_A "---\n" SVC_WEB("80"), NULL), 0);
	assert_int_equal(r.n, 2);
	assert_string_equal(r.ev[0], "ADDED Node/a");
	assert_string_equal(r.ev[1], "ADDED Service/default/web");
	assert_int_equal(store_count(s, KIND_NODE), 1);
	assert_non_null(store_get(s, KIND_SERVICE, "default", "web"));
	assert_null(store_get(s, KIND_SERVICE, "other", "web"));

	/* same content: nothing */
	rec_reset(&r);
	replace(s, "a.yaml", false, NODE_A "---\n" SVC_WEB("80"), NULL);
	assert_int_equal(r.n, 0);

	/* a changed port */
	replace(s, "a.yaml", false, NODE_A "---\n" SVC_WEB("81"), NULL);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.ev[0], "UPDATED Service/default/web");
	assert_int_equal(store_get(s, KIND_SERVICE, "default", "web")->svc.ports[0].port, 81);

	/* the service leaves the file */
	rec_reset(&r);
	replace(s, "a.yaml", false, NODE_A, NULL);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.ev[0], "REMOVED Service/default/web");
	assert_int_equal(store_count(s, KIND_SERVICE), 0);

	/* another origin does not disturb this one */
	rec_reset(&r);
	replace(s, "b.yaml", false, NODE_B_CIDR, NULL);
	assert_int_equal(r.n, 1);
	assert_int_equal(store_count(s, KIND_NODE), 2);

	rec_reset(&r);
	store_remove_origin(s, "a.yaml");
	assert_int_equal(r.n, 1);
	assert_string_equal(r.ev[0], "REMOVED Node/a");
	assert_int_equal(store_count(s, KIND_NODE), 1);
	store_free(s);
}

static void test_event_order(void **state)
{
	(void)state;
	struct store *s = store_new();
	int order[64];
	size_t norder = 0;
	struct rec r1 = {.tag = 1, .order = order, .norder = &norder};
	struct rec r2 = {.tag = 2, .order = order, .norder = &norder};
	struct rec rn = {.tag = 3, .order = order, .norder = &norder};
	store_subscribe(s, ~0u, rec_cb, &r1);
	store_subscribe(s, KIND_BIT(KIND_NODE), rec_cb, &rn); /* nodes only */
	store_subscribe(s, ~0u, rec_cb, &r2);
	replace(s, "f.yaml", false, SVC_WEB("80") "---\n" NODE_A, NULL);
	/* per event: subscribers in registration order; events in file order */
	assert_int_equal(norder, 5);
	int want[] = {1, 2, 1, 3, 2};
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(order[i], want[i]);
	assert_int_equal(rn.n, 1);
	assert_string_equal(rn.ev[0], "ADDED Node/a");
	/* removals come first within one replacement */
	rec_reset(&r1);
	replace(s, "f.yaml", false,
		"apiVersion: v1\nkind: Node\nmetadata:\n  name: z\n---\n" SVC_WEB("80"), NULL);
	assert_int_equal(r1.n, 2);
	assert_string_equal(r1.ev[0], "REMOVED Node/a");
	assert_string_equal(r1.ev[1], "ADDED Node/z");
	store_free(s);
}

#define NODE_OVL(name, cidr)                                                                       \
	"apiVersion: v1\nkind: Node\nmetadata:\n  name: " name "\nspec:\n  podCIDRs: [" cidr "]\n"

#define POD_P(extra)                                                                               \
	"apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    app: web\nspec:\n"        \
	"  containers:\n  - name: c\n    image: x\n" extra

#define POD_STATUS(ip, ready)                                                                      \
	"apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nstatus:\n  phase: Running\n  podIPs:\n"  \
	"  - ip: " ip "\n  conditions:\n  - type: Ready\n    status: \"" ready "\"\n"

static void test_overlay_merge(void **state)
{
	(void)state;
	struct store *s = store_new();
	struct rec r = {0};
	store_subscribe(s, ~0u, rec_cb, &r);
	replace(s, "nodes.yaml", false, NODE_A "---\n" NODE_B_CIDR, NULL);
	rec_reset(&r);

	/* a: no podCIDRs in the manifest, the overlay supplies them */
	replace(s, ".twill/node.a.json", true, NODE_OVL("a", "10.244.3.0/24"), NULL);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.ev[0], "UPDATED Node/a");
	const struct object *a = store_get(s, KIND_NODE, NULL, "a");
	assert_int_equal(a->node.npod_cidrs, 1);
	char buf[IP_STRLEN];
	assert_string_equal(prefix_fmt(&a->node.pod_cidrs[0], buf), "10.244.3.0/24");

	/* b: the manifest's own podCIDR stands; the overlay changes nothing */
	rec_reset(&r);
	replace(s, ".twill/node.b.json", true, NODE_OVL("b", "10.244.4.0/24"), NULL);
	assert_int_equal(r.n, 0);
	const struct object *b = store_get(s, KIND_NODE, NULL, "b");
	assert_string_equal(prefix_fmt(&b->node.pod_cidrs[0], buf), "10.1.2.0/24");

	/* same overlay again: no event */
	replace(s, ".twill/node.a.json", true, NODE_OVL("a", "10.244.3.0/24"), NULL);
	assert_int_equal(r.n, 0);

	/* annotations are added */
	replace(s, ".twill/node.a.ann.json", true,
		"apiVersion: v1\nkind: Node\nmetadata:\n  name: a\n  annotations:\n"
		"    twill.io/vtep-mac: 02:00:00:00:00:01\n",
		NULL);
	assert_int_equal(r.n, 1);
	a = store_get(s, KIND_NODE, NULL, "a");
	assert_string_equal(labels_get(&a->meta.annotations, "twill.io/vtep-mac"),
			    "02:00:00:00:00:01");
	assert_int_equal(a->node.npod_cidrs, 1);

	/* Pod: nodeName and status from overlays */
	rec_reset(&r);
	replace(s, "pod.yaml", false, POD_P(""), NULL);
	replace(s, ".twill/pod.default.p.sched.json", true,
		"apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  nodeName: a\n", NULL);
	replace(s, ".twill/pod.default.p.json", true, POD_STATUS("10.244.3.5", "True"), NULL);
	assert_int_equal(r.n, 3);
	assert_string_equal(r.ev[0], "ADDED Pod/default/p");
	assert_string_equal(r.ev[1], "UPDATED Pod/default/p");
	assert_string_equal(r.ev[2], "UPDATED Pod/default/p");
	const struct object *p = store_get(s, KIND_POD, "default", "p");
	assert_string_equal(p->pod.node_name, "a");
	assert_int_equal(p->pod.nips, 1);
	assert_true(p->pod.ready);
	assert_string_equal(p->pod.phase, "Running");
	assert_string_equal(labels_get(&p->meta.labels, "app"), "web");

	/* a base nodeName wins over the scheduler's */
	rec_reset(&r);
	replace(s, "pod.yaml", false, POD_P("  nodeName: b\n"), NULL);
	assert_int_equal(r.n, 1);
	p = store_get(s, KIND_POD, "default", "p");
	assert_string_equal(p->pod.node_name, "b");
	assert_int_equal(p->pod.nips, 1);

	/* status change through the overlay */
	rec_reset(&r);
	replace(s, ".twill/pod.default.p.json", true, POD_STATUS("10.244.3.5", "False"), NULL);
	assert_int_equal(r.n, 1);
	assert_false(store_get(s, KIND_POD, "default", "p")->pod.ready);

	/* removing the overlay returns to the base */
	store_remove_origin(s, ".twill/pod.default.p.json");
	assert_int_equal(store_get(s, KIND_POD, "default", "p")->pod.nips, 0);

	/* a kind without overlay fields in an overlay origin is an ordinary object */
	replace(s, ".twill/pool.yaml", true,
		"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: p\n"
		"  namespace: metallb-system\nspec:\n  addresses: [192.168.30.0/28]\n",
		NULL);
	assert_non_null(store_get(s, KIND_IPADDRESSPOOL, "metallb-system", "p"));
	store_free(s);
}

#define SVC_LB(extra)                                                                              \
	"apiVersion: v1\nkind: Service\nmetadata:\n  name: lb\nspec:\n  type: LoadBalancer\n"      \
	"  externalTrafficPolicy: Local\n  selector:\n    app: web\n  ports:\n"                    \
	"  - name: http\n    port: 80\n  - name: dns\n    protocol: UDP\n    port: 53\n"           \
	"  - name: fixed\n    port: 81\n    nodePort: 31000\n" extra

/* What the controller writes (control.c) */
#define SVC_LB_OVL                                                                                 \
	"{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"lb\","               \
	"\"namespace\":\"default\"},\"spec\":{\"clusterIP\":\"10.96.0.7\",\"clusterIPs\":"         \
	"[\"10.96.0.7\"],\"ports\":[{\"name\":\"http\",\"protocol\":\"TCP\",\"port\":80,"          \
	"\"nodePort\":30001},{\"name\":\"dns\",\"protocol\":\"UDP\",\"port\":53,\"nodePort\":"     \
	"30002},{\"name\":\"fixed\",\"protocol\":\"TCP\",\"port\":81,\"nodePort\":30003},"         \
	"{\"name\":\"gone\",\"protocol\":\"TCP\",\"port\":82,\"nodePort\":30004}],"                \
	"\"healthCheckNodePort\":30005},\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":"       \
	"\"192.168.30.200\"}]}}}"

static void test_service_overlay(void **state)
{
	(void)state;
	struct store *s = store_new();
	struct rec r = {0};
	store_subscribe(s, ~0u, rec_cb, &r);
	char b[IP_STRLEN];

	/* the overlay alone creates nothing */
	replace(s, ".twill/service.default.lb.json", true, SVC_LB_OVL, NULL);
	assert_null(store_get(s, KIND_SERVICE, "default", "lb"));
	assert_int_equal(r.n, 0);

	/* the base arrives: the allocations fill what it leaves unset */
	replace(s, "lb.yaml", false, SVC_LB(""), NULL);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.ev[0], "ADDED Service/default/lb");
	const struct object *o = store_get(s, KIND_SERVICE, "default", "lb");
	const struct service_obj *v = &o->svc;
	assert_int_equal(v->ncluster_ips, 1);
	assert_string_equal(ip_fmt(&v->cluster_ips[0], b), "10.96.0.7");
	assert_int_equal(v->nports, 3);
	assert_int_equal(v->ports[0].node_port, 30001);
	assert_int_equal(v->ports[1].node_port, 30002);
	assert_int_equal(v->ports[2].node_port, 31000); /* the manifest's own stands */
	assert_int_equal(v->health_check_node_port, 30005);
	assert_int_equal(v->nlb_ips, 1);
	assert_string_equal(ip_fmt(&v->lb_ips[0], b), "192.168.30.200");
	assert_int_equal(o->hash, object_hash(o));

	/* the manifest sets its own clusterIP, health check port and status */
	rec_reset(&r);
	replace(s, "lb.yaml", false,
		SVC_LB("  clusterIP: 10.96.9.9\n  healthCheckNodePort: 32000\nstatus:\n"
		       "  loadBalancer:\n    ingress:\n    - ip: 10.0.0.1\n"),
		NULL);
	assert_int_equal(r.n, 1);
	v = &store_get(s, KIND_SERVICE, "default", "lb")->svc;
	assert_string_equal(ip_fmt(&v->cluster_ips[0], b), "10.96.9.9");
	assert_int_equal(v->health_check_node_port, 32000);
	assert_string_equal(ip_fmt(&v->lb_ips[0], b), "10.0.0.1");
	assert_int_equal(v->ports[0].node_port, 30001);

	/* ports match by name, protocol and port: a renamed port takes nothing */
	replace(s, "lb.yaml", false,
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: lb\nspec:\n"
		"  type: NodePort\n  ports:\n  - name: web\n    port: 80\n"
		"  - name: dns\n    port: 53\n",
		NULL);
	v = &store_get(s, KIND_SERVICE, "default", "lb")->svc;
	assert_int_equal(v->ports[0].node_port, 0);
	assert_int_equal(v->ports[1].node_port, 0);	/* TCP, the overlay's is UDP */
	assert_int_equal(v->health_check_node_port, 0); /* not externalTrafficPolicy Local */
	assert_int_equal(v->nlb_ips, 0);		/* not a LoadBalancer */
	assert_int_equal(v->ncluster_ips, 1);

	/* ClusterIP type: no nodePorts; headless: no clusterIP; ExternalName: nothing */
	replace(s, "lb.yaml", false,
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: lb\nspec:\n"
		"  ports:\n  - name: http\n    port: 80\n",
		NULL);
	v = &store_get(s, KIND_SERVICE, "default", "lb")->svc;
	assert_int_equal(v->ports[0].node_port, 0);
	assert_int_equal(v->ncluster_ips, 1);
	replace(s, "lb.yaml", false,
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: lb\nspec:\n"
		"  clusterIP: None\n  ports:\n  - name: http\n    port: 80\n",
		NULL);
	v = &store_get(s, KIND_SERVICE, "default", "lb")->svc;
	assert_true(v->headless);
	assert_int_equal(v->ncluster_ips, 0);
	replace(s, "lb.yaml", false,
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: lb\nspec:\n"
		"  type: ExternalName\n  externalName: example.com\n",
		NULL);
	v = &store_get(s, KIND_SERVICE, "default", "lb")->svc;
	assert_int_equal(v->ncluster_ips, 0);

	/* the overlay goes: back to the manifest */
	replace(s, "lb.yaml", false, SVC_LB(""), NULL);
	assert_int_equal(store_get(s, KIND_SERVICE, "default", "lb")->svc.ports[0].node_port,
			 30001);
	rec_reset(&r);
	store_remove_origin(s, ".twill/service.default.lb.json");
	assert_int_equal(r.n, 1);
	assert_string_equal(r.ev[0], "UPDATED Service/default/lb");
	v = &store_get(s, KIND_SERVICE, "default", "lb")->svc;
	assert_int_equal(v->ncluster_ips, 0);
	assert_int_equal(v->ports[0].node_port, 0);
	assert_int_equal(v->nlb_ips, 0);
	assert_int_equal(v->health_check_node_port, 0);
	store_free(s);
}

static void test_latent_overlay(void **state)
{
	(void)state;
	struct store *s = store_new();
	struct rec r = {0};
	store_subscribe(s, ~0u, rec_cb, &r);
	/* the overlay alone creates nothing */
	replace(s, ".twill/node.a.json", true, NODE_OVL("a", "10.244.7.0/24"), NULL);
	assert_int_equal(r.n, 0);
	assert_null(store_get(s, KIND_NODE, NULL, "a"));
	assert_int_equal(store_count(s, KIND_NODE), 0);

	/* the base arrives: one ADDED, already merged */
	replace(s, "a.yaml", false, NODE_A, NULL);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.ev[0], "ADDED Node/a");
	assert_int_equal(store_get(s, KIND_NODE, NULL, "a")->node.npod_cidrs, 1);

	/* the base goes: the object goes, even though the overlay stays */
	rec_reset(&r);
	store_remove_origin(s, "a.yaml");
	assert_int_equal(r.n, 1);
	assert_string_equal(r.ev[0], "REMOVED Node/a");
	assert_null(store_get(s, KIND_NODE, NULL, "a"));

	/* and comes back merged again */
	rec_reset(&r);
	replace(s, "a.yaml", false, NODE_A, NULL);
	assert_int_equal(store_get(s, KIND_NODE, NULL, "a")->node.npod_cidrs, 1);
	store_remove_origin(s, ".twill/node.a.json");
	assert_int_equal(r.n, 2);
	assert_string_equal(r.ev[1], "UPDATED Node/a");
	assert_int_equal(store_get(s, KIND_NODE, NULL, "a")->node.npod_cidrs, 0);
	store_free(s);
}

static void test_conflict(void **state)
{
	(void)state;
	struct store *s = store_new();
	struct rec r = {0};
	struct diags ds = {0};
	store_subscribe(s, ~0u, rec_cb, &r);
	assert_int_equal(replace(s, "one.yaml", false, SVC_WEB("80"), &ds), 0);
	assert_int_equal(replace(s, "two.yaml", false, SVC_WEB("90"), &ds), 1);
	assert_int_equal(ds.n, 1);
	assert_non_null(strstr(ds.msg[0], "Service/default/web"));
	assert_non_null(strstr(ds.msg[0], "also defined in"));
	assert_int_equal(r.n, 1);
	assert_int_equal(store_get(s, KIND_SERVICE, "default", "web")->svc.ports[0].port, 80);

	/* editing the winner keeps it the winner */
	replace(s, "one.yaml", false, SVC_WEB("81"), &ds);
	assert_int_equal(store_get(s, KIND_SERVICE, "default", "web")->svc.ports[0].port, 81);

	/* the winner goes: the other definition takes over */
	rec_reset(&r);
	store_remove_origin(s, "one.yaml");
	assert_int_equal(r.n, 1);
	assert_string_equal(r.ev[0], "UPDATED Service/default/web");
	assert_int_equal(store_get(s, KIND_SERVICE, "default", "web")->svc.ports[0].port, 90);

	/* twice in one file: the first stays */
	ds.n = 0;
	assert_int_equal(replace(s, "dup.yaml", false, NODE_A "---\n" NODE_A, &ds), 1);
	assert_int_equal(ds.n, 1);
	assert_non_null(strstr(ds.msg[0], "more than once"));
	assert_int_equal(store_count(s, KIND_NODE), 1);
	store_free(s);
}

static int collect_ids(const struct object *o, void *arg)
{
	char *buf = arg;
	char id[128];
	strcat(buf, object_id(o, id, sizeof(id)));
	strcat(buf, " ");
	return 0;
}

static void test_foreach_order(void **state)
{
	(void)state;
	struct store *s = store_new();
	replace(s, "x.yaml", false,
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: b\n  namespace: zz\n---\n"
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: b\n  namespace: a\n---\n"
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  namespace: zz\n---\n"
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: c\n  namespace: a-b\n---\n"
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  namespace: a\n",
		NULL);
	char buf[512] = "";
	store_foreach(s, KIND_SERVICE, collect_ids, buf);
	assert_string_equal(buf,
			    "Service/a/a Service/a/b Service/a-b/c Service/zz/a Service/zz/b ");
	/* incremental change keeps the order right */
	store_remove_origin(s, "x.yaml");
	buf[0] = 0;
	store_foreach(s, KIND_SERVICE, collect_ids, buf);
	assert_string_equal(buf, "");
	store_free(s);
}

struct order_ctx {
	int n, stop;
	char last[64];
};

static int check_order(const struct object *o, void *arg)
{
	struct order_ctx *c = arg;
	assert_true(strcmp(c->last, o->meta.name) < 0);
	snprintf(c->last, sizeof(c->last), "%s", o->meta.name);
	c->n++;
	return c->stop && c->n >= c->stop;
}

static void test_many(void **state)
{
	(void)state;
	struct store *s = store_new();
	struct objlist l = {0};
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	for (int i = 0; i < 5000; i++)
		fprintf(f, "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p%05d\n", 4999 - i);
	fclose(f);
	assert_int_equal(manifest_decode("big.yaml", text, len, &l, NULL, NULL), 0);
	free(text);
	store_replace_origin(s, "big.yaml", false, &l, NULL, NULL);
	objlist_free(&l);
	assert_int_equal(store_count(s, KIND_POD), 5000);
	assert_non_null(store_get(s, KIND_POD, "default", "p01234"));
	struct order_ctx oc = {0};
	store_foreach(s, KIND_POD, check_order, &oc);
	assert_int_equal(oc.n, 5000);
	/* stop early */
	oc.n = 0;
	oc.stop = 10;
	oc.last[0] = 0;
	assert_int_equal(store_foreach(s, KIND_POD, check_order, &oc), 1);
	assert_int_equal(oc.n, 10);
	store_free(s);
}

/* ---- source_dir ---- */

struct tdir {
	char path[256];
};

static void tdir_make(struct tdir *t)
{
	snprintf(t->path, sizeof(t->path), "/tmp/twill-test-store-%d-XXXXXX", (int)getpid());
	assert_non_null(mkdtemp(t->path));
}

static void put(const struct tdir *t, const char *rel, const char *content)
{
	char *p = xasprintf("%s/%s", t->path, rel);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
	free(p);
}

static void put_atomic(const struct tdir *t, const char *rel, const char *content)
{
	char *p = xasprintf("%s/%s", t->path, rel);
	assert_int_equal(file_write_atomic(p, content, strlen(content)), 0);
	free(p);
}

static void del(const struct tdir *t, const char *rel)
{
	char *p = xasprintf("%s/%s", t->path, rel);
	assert_int_equal(unlink(p), 0);
	free(p);
}

/* Process inotify until cond holds (bounded: 5 s). */
static bool pump_until(struct source_dir *src, bool (*cond)(void *), void *arg)
{
	monotime_t end = monotime_now() + MONO_MS(5000);
	while (monotime_now() < end) {
		struct pollfd pfd = {.fd = source_dir_fd(src), .events = POLLIN};
		poll(&pfd, 1, 50);
		assert_true(source_dir_process(src) >= 0);
		if (cond(arg))
			return true;
	}
	return false;
}

struct probe {
	struct store *s;
	enum kind k;
	const char *ns, *name;
	int port; /* for services: expected port; -1: expect absent */
};

static bool svc_port_is(void *arg)
{
	struct probe *p = arg;
	const struct object *o = store_get(p->s, p->k, p->ns, p->name);
	if (p->port < 0)
		return o == NULL;
	return o && o->svc.nports && o->svc.ports[0].port == p->port;
}

static bool node_cidrs_is(void *arg)
{
	struct probe *p = arg;
	const struct object *o = store_get(p->s, KIND_NODE, NULL, p->name);
	return o && (int)o->node.npod_cidrs == p->port;
}

static void test_source_dir(void **state)
{
	(void)state;
	struct tdir t;
	tdir_make(&t);
	struct store *s = store_new();
	struct diags ds = {0};
	put(&t, "web.yaml", SVC_WEB("80"));
	put(&t, "nodes.yml", NODE_A);
	put(&t, ".hidden.yaml", NODE_B_CIDR);
	put(&t, "notes.txt", NODE_B_CIDR);
	put(&t, "web.yaml~", SVC_WEB("99"));
	struct source_dir *src = source_dir_open(s, t.path, diag_cb, &ds);
	assert_non_null(src);
	char *ov = xasprintf("%s/.twill", t.path);
	struct stat st;
	assert_int_equal(stat(ov, &st), 0); /* created */
	free(ov);
	assert_int_equal(source_dir_scan(src), 0);
	assert_int_equal(store_count(s, KIND_NODE), 1);
	assert_non_null(store_get(s, KIND_SERVICE, "default", "web"));
	assert_int_equal(ds.n, 0);

	/* write-temp-then-rename */
	struct probe pr = {s, KIND_SERVICE, "default", "web", 8080};
	put_atomic(&t, "web.yaml", SVC_WEB("8080"));
	assert_true(pump_until(src, svc_port_is, &pr));

	/* plain write (IN_CLOSE_WRITE) */
	pr.port = 8081;
	put(&t, "web.yaml", SVC_WEB("8081"));
	assert_true(pump_until(src, svc_port_is, &pr));

	/* a syntax error keeps the previous content and is reported with file and line */
	ds.n = 0;
	put(&t, "web.yaml",
	    "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n"
	    "spec:\n  ports: [\n  - port: 1\n");
	pr.port = 8081;
	monotime_t end = monotime_now() + MONO_MS(5000);
	while (!ds.n && monotime_now() < end) {
		struct pollfd pfd = {.fd = source_dir_fd(src), .events = POLLIN};
		poll(&pfd, 1, 50);
		source_dir_process(src);
	}
	assert_true(ds.n >= 1);
	assert_non_null(strstr(ds.msg[0], "web.yaml:"));
	assert_true(ds.line[0] > 0);
	assert_true(svc_port_is(&pr));

	/* a document that fails to decode keeps that object's previous version, the file's
	 * other documents are applied */
	ds.n = 0;
	put(&t, "web.yaml", SVC_WEB("\"not-a-port\"") "---\n" NODE_B_CIDR);
	struct probe pb = {s, KIND_NODE, NULL, "b", 1};
	assert_true(pump_until(src, node_cidrs_is, &pb));
	assert_true(ds.n >= 1);
	assert_true(svc_port_is(&pr));

	/* fixed */
	pr.port = 82;
	put(&t, "web.yaml", SVC_WEB("82"));
	assert_true(pump_until(src, svc_port_is, &pr));
	assert_null(store_get(s, KIND_NODE, NULL, "b"));

	/* overlay files in .twill/ merge into the base; endpointslice files are objects */
	struct probe pa = {s, KIND_NODE, NULL, "a", 1};
	put_atomic(&t, ".twill/node.a.json",
		   "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"a\"},"
		   "\"spec\":{\"podCIDR\":\"10.244.0.0/24\",\"podCIDRs\":[\"10.244.0.0/24\"]}}");
	put_atomic(&t, ".twill/node.ghost.json",
		   "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"ghost\"},"
		   "\"spec\":{\"podCIDRs\":[\"10.244.9.0/24\"]}}");
	assert_true(pump_until(src, node_cidrs_is, &pa));
	assert_null(store_get(s, KIND_NODE, NULL, "ghost"));
	put_atomic(&t, ".twill/endpointslice.default.web.json",
		   "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[{\"apiVersion\":"
		   "\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":{\"name\":"
		   "\"web-1\",\"labels\":{\"kubernetes.io/service-name\":\"web\"}},"
		   "\"addressType\":\"IPv4\",\"endpoints\":[{\"addresses\":[\"10.244.0.5\"]}],"
		   "\"ports\":[{\"name\":\"\",\"protocol\":\"TCP\",\"port\":80}]}]}");
	monotime_t end2 = monotime_now() + MONO_MS(5000);
	while (!store_get(s, KIND_ENDPOINTSLICE, "default", "web-1") && monotime_now() < end2) {
		struct pollfd pfd = {.fd = source_dir_fd(src), .events = POLLIN};
		poll(&pfd, 1, 50);
		source_dir_process(src);
	}
	assert_non_null(store_get(s, KIND_ENDPOINTSLICE, "default", "web-1"));

	/* rename away and delete */
	char *from = xasprintf("%s/web.yaml", t.path), *to = xasprintf("%s/web.yaml.bak", t.path);
	assert_int_equal(rename(from, to), 0);
	pr.port = -1;
	assert_true(pump_until(src, svc_port_is, &pr));
	assert_int_equal(rename(to, from), 0);
	pr.port = 82;
	assert_true(pump_until(src, svc_port_is, &pr));
	free(from);
	free(to);
	del(&t, ".twill/node.a.json");
	pa.port = 0;
	assert_true(pump_until(src, node_cidrs_is, &pa));
	del(&t, "web.yaml");
	pr.port = -1;
	assert_true(pump_until(src, svc_port_is, &pr));

	/* a rescan after changes made behind our back */
	source_dir_close(src);
	put(&t, "web.yaml", SVC_WEB("83"));
	del(&t, "nodes.yml");
	src = source_dir_open(s, t.path, diag_cb, &ds);
	assert_non_null(src);
	assert_int_equal(source_dir_scan(src), 0);
	/* nodes.yml was never seen by this source instance, so its objects stay: a new
	 * source only answers for what it loaded */
	pr.port = 83;
	assert_true(svc_port_is(&pr));
	source_dir_close(src);
	store_free(s);
	rm_rf(t.path);
}

static void test_source_dir_coalesce(void **state)
{
	(void)state;
	struct tdir t;
	tdir_make(&t);
	struct store *s = store_new();
	struct rec r = {0};
	store_subscribe(s, ~0u, rec_cb, &r);
	struct source_dir *src = source_dir_open(s, t.path, NULL, NULL);
	assert_non_null(src);
	assert_int_equal(source_dir_scan(src), 0);
	/* many writes to one file before we look: one reload, the last content */
	for (int i = 0; i < 20; i++) {
		char port[16];
		snprintf(port, sizeof(port), "%d", 1000 + i);
		char *text = xasprintf(SVC_WEB("%s"), port);
		put_atomic(&t, "web.yaml", text);
		free(text);
	}
	struct probe pr = {s, KIND_SERVICE, "default", "web", 1019};
	assert_true(pump_until(src, svc_port_is, &pr));
	assert_int_equal(r.n, 1);
	assert_string_equal(r.ev[0], "ADDED Service/default/web");
	source_dir_close(src);
	store_free(s);
	rm_rf(t.path);
}

/* A rescan (SIGHUP) does not decode files whose bytes are those of their last clean load:
 * their objects stay the very same; a changed file, or one whose last load reported errors,
 * is decoded again (so its errors are reported again). */
static void test_source_dir_rescan_unchanged(void **state)
{
	(void)state;
	struct tdir t;
	tdir_make(&t);
	put(&t, "web.yaml", SVC_WEB("80"));
	put(&t, "bad.yaml",
	    "apiVersion: v1\nkind: Service\nmetadata:\n  name: other\nspec:\n  ports:\n"
	    "  - port: \"not-a-port\"\n");
	put(&t, "nodes.yml", NODE_A);
	struct store *s = store_new();
	struct diags ds = {0};
	struct source_dir *src = source_dir_open(s, t.path, diag_cb, &ds);
	assert_non_null(src);
	assert_int_equal(source_dir_scan(src), 0);
	const struct object *web = store_get(s, KIND_SERVICE, "default", "web");
	const struct object *node = store_get(s, KIND_NODE, NULL, "a");
	assert_non_null(web);
	assert_non_null(node);
	int bad = ds.n;
	assert_true(bad >= 1);
	struct rec r = {0};
	store_subscribe(s, ~0u, rec_cb, &r);

	assert_int_equal(source_dir_scan(src), 0);
	assert_ptr_equal(store_get(s, KIND_SERVICE, "default", "web"), web);
	assert_ptr_equal(store_get(s, KIND_NODE, NULL, "a"), node);
	assert_int_equal(ds.n, 2 * bad); /* the bad file again */
	assert_int_equal(r.n, 0);

	/* the same length, other bytes: decoded */
	put(&t, "web.yaml", SVC_WEB("81"));
	assert_int_equal(source_dir_scan(src), 0);
	const struct object *web2 = store_get(s, KIND_SERVICE, "default", "web");
	assert_non_null(web2);
	assert_int_equal(web2->svc.ports[0].port, 81);
	assert_int_equal(r.n, 1);
	/* removed while unchanged since: its objects go */
	del(&t, "nodes.yml");
	assert_int_equal(source_dir_scan(src), 0);
	assert_null(store_get(s, KIND_NODE, NULL, "a"));
	/* back with the same bytes as before: loaded again (it was forgotten) */
	put(&t, "nodes.yml", NODE_A);
	assert_int_equal(source_dir_scan(src), 0);
	assert_non_null(store_get(s, KIND_NODE, NULL, "a"));
	source_dir_close(src);
	store_free(s);
	rm_rf(t.path);
}

static void test_source_dir_load(void **state)
{
	(void)state;
	struct tdir t;
	tdir_make(&t);
	char *web = xasprintf(SVC_WEB("%s"), "8080");
	put(&t, "web.yaml", web);
	free(web);
	struct store *s = store_new();
	assert_int_equal(source_dir_load(s, t.path, NULL, NULL), 0);
	const struct object *o = store_get(s, KIND_SERVICE, "default", "web");
	assert_non_null(o);
	assert_int_equal(o->svc.ports[0].port, 8080);
	/* a one-shot read changes nothing in the user's directory */
	char *ov = xasprintf("%s/%s", t.path, SOURCE_OVERLAY_DIR);
	assert_int_equal(access(ov, F_OK), -1);
	free(ov);
	store_free(s);
	struct store *s2 = store_new();
	assert_int_equal(source_dir_load(s2, "/nonexistent/twill-test", NULL, NULL), -ENOENT);
	store_free(s2);
	rm_rf(t.path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_smap),
	    cmocka_unit_test(test_diff),
	    cmocka_unit_test(test_event_order),
	    cmocka_unit_test(test_overlay_merge),
	    cmocka_unit_test(test_latent_overlay),
	    cmocka_unit_test(test_service_overlay),
	    cmocka_unit_test(test_conflict),
	    cmocka_unit_test(test_foreach_order),
	    cmocka_unit_test(test_many),
	    cmocka_unit_test(test_source_dir),
	    cmocka_unit_test(test_source_dir_coalesce),
	    cmocka_unit_test(test_source_dir_rescan_unchanged),
	    cmocka_unit_test(test_source_dir_load),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	/* A failed test leaves its directory behind: remove this run's. */
	char pat[128];
	snprintf(pat, sizeof(pat), "/tmp/twill-test-store-%d-*", (int)getpid());
	glob_t g;
	if (!glob(pat, 0, NULL, &g)) {
		for (size_t i = 0; i < g.gl_pathc; i++)
			rm_rf(g.gl_pathv[i]);
		globfree(&g);
	}
	return r;
}
