/* Unit tests for control/: podCIDR allocation (stable across restarts, no duplicates,
 * release), scheduling spread, EndpointSlices (ready/not ready, named ports, placeholder,
 * removal), Service allocations (ClusterIPs, nodePorts, healthCheckNodePorts, load-balancer
 * addresses from IPAddressPools: order, stability, release, conflicts, exhaustion) and the
 * leader lock. */
#include <errno.h>
#include <glob.h>
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
#include <json-c/json.h>

#include "control/control.h"
#include "lib/util.h"
#include "store/store.h"

struct env {
	char dir[256];
	struct store *s;
	struct source_dir *src;
	struct controller *c;
};

static void put(const struct env *e, const char *rel, const char *content)
{
	char *p = xasprintf("%s/%s", e->dir, rel);
	assert_int_equal(file_write_atomic(p, content, strlen(content)), 0);
	free(p);
}

static bool exists(const struct env *e, const char *rel)
{
	char *p = xasprintf("%s/%s", e->dir, rel);
	bool r = !access(p, F_OK);
	free(p);
	return r;
}

static ino_t inode(const struct env *e, const char *rel)
{
	char *p = xasprintf("%s/%s", e->dir, rel);
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	free(p);
	return st.st_ino;
}

static const struct controller_cfg *open_cfg; /* env_open's config (NULL: defaults) */

static void env_open(struct env *e)
{
	e->s = store_new();
	e->src = source_dir_open(e->s, e->dir, NULL, NULL);
	assert_non_null(e->src);
	assert_int_equal(source_dir_scan(e->src), 0);
	struct controller_cfg cfg = open_cfg ? *open_cfg : (struct controller_cfg){0};
	cfg.manifest_dir = e->dir;
	e->c = controller_new(e->s, &cfg);
	assert_non_null(e->c);
}

static void env_close(struct env *e)
{
	controller_free(e->c);
	source_dir_close(e->src);
	store_free(e->s);
	e->c = NULL;
	e->src = NULL;
	e->s = NULL;
}

static void env_init(struct env *e)
{
	snprintf(e->dir, sizeof(e->dir), "/tmp/twill-test-control-%d-XXXXXX", (int)getpid());
	assert_non_null(mkdtemp(e->dir));
	env_open(e);
}

static void env_fini(struct env *e)
{
	env_close(e);
	rm_rf(e->dir);
}

/* Run controller and source to a fixed point (bounded). */
static void settle(struct env *e)
{
	for (int i = 0; i < 20; i++) {
		assert_int_equal(source_dir_scan(e->src), 0);
		if (!controller_dirty(e->c))
			return;
		assert_int_equal(controller_sync(e->c), 0);
	}
	fail_msg("controller did not settle");
}

static const char *cidr_of(const struct env *e, const char *node, char buf[IP_STRLEN])
{
	const struct object *n = store_get(e->s, KIND_NODE, NULL, node);
	if (!n || !n->node.npod_cidrs)
		return "none";
	return prefix_fmt(&n->node.pod_cidrs[0], buf);
}

#define NODE(n) "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: " n "\n"
#define NODE_CIDR(n, c)                                                                            \
	"---\napiVersion: v1\nkind: Node\nmetadata:\n  name: " n "\nspec:\n  podCIDR: " c "\n"

static void test_alloc(void **state)
{
	(void)state;
	struct env e;
	env_init(&e);
	char b[IP_STRLEN];
	put(&e, "nodes.yaml", NODE("c") NODE("a") NODE_CIDR("d", "10.244.1.0/24") NODE("b"));
	assert_int_equal(source_dir_scan(e.src), 0);
	/* not leading: nothing happens */
	assert_false(controller_dirty(e.c));
	assert_int_equal(controller_sync(e.c), 0);
	assert_false(exists(&e, ".twill/node.a.json"));

	assert_true(controller_try_lead(e.c));
	assert_true(controller_is_leader(e.c));
	settle(&e);
	/* declaration order (c, a, b), not name order; .1 is d's own */
	assert_string_equal(cidr_of(&e, "c", b), "10.244.0.0/24");
	assert_string_equal(cidr_of(&e, "a", b), "10.244.2.0/24");
	assert_string_equal(cidr_of(&e, "b", b), "10.244.3.0/24");
	assert_string_equal(cidr_of(&e, "d", b), "10.244.1.0/24");
	assert_true(exists(&e, ".twill/node.a.json"));
	assert_false(exists(&e, ".twill/node.d.json"));
	ino_t ia = inode(&e, ".twill/node.a.json");

	/* restart: a new controller reads the existing allocations and changes nothing */
	env_close(&e);
	env_open(&e);
	assert_true(controller_try_lead(e.c));
	settle(&e);
	assert_string_equal(cidr_of(&e, "c", b), "10.244.0.0/24");
	assert_string_equal(cidr_of(&e, "a", b), "10.244.2.0/24");
	assert_string_equal(cidr_of(&e, "b", b), "10.244.3.0/24");
	assert_true(ia == inode(&e, ".twill/node.a.json")); /* not rewritten */

	/* a new node gets the next free subnet */
	put(&e, "more.yaml", NODE("e"));
	settle(&e);
	assert_string_equal(cidr_of(&e, "e", b), "10.244.4.0/24");

	/* a node leaves: its file goes, its subnet is free again and reused lowest-first */
	put(&e, "nodes.yaml", NODE("c") NODE_CIDR("d", "10.244.1.0/24") NODE("b"));
	settle(&e);
	assert_false(exists(&e, ".twill/node.a.json"));
	put(&e, "more.yaml", NODE("e") NODE("f"));
	settle(&e);
	assert_string_equal(cidr_of(&e, "f", b), "10.244.2.0/24"); /* a's, freed */

	/* more nodes: fresh subnets, never one twice */
	put(&e, "more.yaml", NODE("e") NODE("f") NODE("g") NODE("h"));
	settle(&e);
	const char *names[] = {"b", "c", "d", "e", "f", "g", "h"};
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		for (size_t j = i + 1; j < ARRAY_SIZE(names); j++) {
			char x[IP_STRLEN], y[IP_STRLEN];
			assert_string_not_equal(cidr_of(&e, names[i], x), cidr_of(&e, names[j], y));
		}
	assert_string_equal(cidr_of(&e, "g", b), "10.244.5.0/24");
	env_fini(&e);
}

static void test_alloc_exhausted(void **state)
{
	(void)state;
	struct env e;
	snprintf(e.dir, sizeof(e.dir), "/tmp/twill-test-control-%d-XXXXXX", (int)getpid());
	assert_non_null(mkdtemp(e.dir));
	e.s = store_new();
	e.src = source_dir_open(e.s, e.dir, NULL, NULL);
	struct controller_cfg cfg = {.manifest_dir = e.dir, .ncluster_cidrs = 1};
	assert_int_equal(prefix_parse("10.9.0.0/23", &cfg.cluster_cidrs[0]), 0);
	cfg.node_cidr_len[0] = 24;
	e.c = controller_new(e.s, &cfg);
	assert_non_null(e.c);
	assert_true(controller_try_lead(e.c));
	put(&e, "n.yaml", NODE("a") NODE("b") NODE("c"));
	settle(&e);
	char b[IP_STRLEN];
	assert_string_equal(cidr_of(&e, "a", b), "10.9.0.0/24");
	assert_string_equal(cidr_of(&e, "b", b), "10.9.1.0/24");
	assert_string_equal(cidr_of(&e, "c", b), "none");
	/* a frees its subnet: c gets it */
	put(&e, "n.yaml", NODE("b") NODE("c"));
	settle(&e);
	assert_string_equal(cidr_of(&e, "c", b), "10.9.0.0/24");
	env_fini(&e);
}

static int count_on(const struct object *o, void *arg)
{
	size_t *counts = arg; /* n1, n2, n3, unscheduled */
	const char *n = o->pod.node_name;
	if (!n)
		counts[3]++;
	else if (!strcmp(n, "n1"))
		counts[0]++;
	else if (!strcmp(n, "n2"))
		counts[1]++;
	else if (!strcmp(n, "n3"))
		counts[2]++;
	return 0;
}

#define DEPLOY(name, n)                                                                            \
	"---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: " name "\nspec:\n"         \
	"  replicas: " n "\n  selector:\n    matchLabels:\n      app: " name "\n  template:\n"     \
	"    metadata:\n      labels:\n        app: " name "\n    spec:\n      containers:\n"      \
	"      - name: c\n        image: x\n        ports:\n        - name: http\n"                \
	"          containerPort: 8080\n"

static void test_schedule(void **state)
{
	(void)state;
	struct env e;
	env_init(&e);
	assert_true(controller_try_lead(e.c));
	put(&e, "nodes.yaml", NODE("n3") NODE("n1") NODE("n2"));
	put(&e, "web.yaml", DEPLOY("web", "3"));
	settle(&e);
	size_t counts[4] = {0};
	store_foreach(e.s, KIND_POD, count_on, counts);
	assert_int_equal(counts[0], 1);
	assert_int_equal(counts[1], 1);
	assert_int_equal(counts[2], 1);
	assert_int_equal(counts[3], 0);
	assert_true(exists(&e, ".twill/pod.default.web-0.sched.json"));

	/* a second owner spreads on its own; a pinned pod counts where it is */
	put(&e, "pinned.yaml",
	    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pinned\nspec:\n"
	    "  nodeName: n1\n  hostNetwork: true\n  containers:\n  - name: c\n"
	    "    image: x\n");
	put(&e, "api.yaml", DEPLOY("api", "3"));
	settle(&e);
	memset(counts, 0, sizeof(counts));
	store_foreach(e.s, KIND_POD, count_on, counts);
	assert_int_equal(counts[0], 3); /* web, api, pinned */
	assert_int_equal(counts[1], 2);
	assert_int_equal(counts[2], 2);
	const char *api_nodes[3];
	for (int i = 0; i < 3; i++) {
		char name[16];
		snprintf(name, sizeof(name), "api-%d", i);
		api_nodes[i] = store_get(e.s, KIND_POD, "default", name)->pod.node_name;
	}
	assert_string_not_equal(api_nodes[0], api_nodes[1]);
	assert_string_not_equal(api_nodes[0], api_nodes[2]);
	assert_string_not_equal(api_nodes[1], api_nodes[2]);

	/* stable across a restart */
	const char *w0 = store_get(e.s, KIND_POD, "default", "web-0")->pod.node_name;
	char keep[16];
	snprintf(keep, sizeof(keep), "%s", w0);
	env_close(&e);
	env_open(&e);
	assert_true(controller_try_lead(e.c));
	settle(&e);
	assert_string_equal(store_get(e.s, KIND_POD, "default", "web-0")->pod.node_name, keep);

	/* scale down: the pod's scheduling file goes */
	put(&e, "web.yaml", DEPLOY("web", "2"));
	settle(&e);
	assert_false(exists(&e, ".twill/pod.default.web-2.sched.json"));
	assert_true(exists(&e, ".twill/pod.default.web-1.sched.json"));

	/* a node goes: the pods we placed there move */
	put(&e, "nodes.yaml", NODE("n1") NODE("n2"));
	settle(&e);
	memset(counts, 0, sizeof(counts));
	store_foreach(e.s, KIND_POD, count_on, counts);
	assert_int_equal(counts[2], 0);
	assert_int_equal(counts[0] + counts[1], 6);
	env_fini(&e);
}

/* ---- EndpointSlices ---- */

#define POD(name, app, port)                                                                       \
	"---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: " name "\n  labels:\n    app: " app    \
	"\nspec:\n  nodeName: n1\n  containers:\n  - name: c\n    image: x\n    ports:\n"          \
	"    - name: http\n      containerPort: " port "\n"

#define STATUS(name, ip, ready)                                                                    \
	"{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"" name "\"},"            \
	"\"status\":{\"phase\":\"Running\",\"podIP\":\"" ip "\",\"podIPs\":[{\"ip\":\"" ip "\"}]," \
	"\"conditions\":[{\"type\":\"Ready\",\"status\":\"" ready "\"}]}}"

struct slices {
	const char *svc;
	size_t n;
	const struct object *v[8];
};

static int collect_slices(const struct object *o, void *arg)
{
	struct slices *s = arg;
	if (o->eps.service && !strcmp(o->eps.service, s->svc) && s->n < 8)
		s->v[s->n++] = o;
	return 0;
}

static struct slices slices_of(const struct env *e, const char *svc)
{
	struct slices s = {.svc = svc};
	store_foreach(e->s, KIND_ENDPOINTSLICE, collect_slices, &s);
	return s;
}

static const struct endpoint *find_ep(const struct slices *s, const char *pod, uint16_t *port)
{
	for (size_t i = 0; i < s->n; i++)
		for (size_t j = 0; j < s->v[i]->eps.nendpoints; j++) {
			const struct endpoint *ep = &s->v[i]->eps.endpoints[j];
			if (ep->target_pod && !strcmp(ep->target_pod, pod)) {
				if (port)
					*port =
					    s->v[i]->eps.nports ? s->v[i]->eps.ports[0].port : 0;
				return ep;
			}
		}
	return NULL;
}

static void test_endpointslices(void **state)
{
	(void)state;
	struct env e;
	env_init(&e);
	assert_true(controller_try_lead(e.c));
	put(&e, "nodes.yaml", NODE("n1"));
	put(&e, "pods.yaml",
	    POD("web-a", "web", "8080") POD("web-b", "web", "9090") POD("web-c", "web", "8080")
		POD("web-d", "web", "8080") POD("other", "other", "8080"));
	put(&e, "svc.yaml",
	    "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  clusterIP: "
	    "10.96.0.10\n"
	    "  selector:\n    app: web\n  ports:\n  - name: http\n    port: 80\n"
	    "    targetPort: http\n---\n"
	    "apiVersion: v1\nkind: Service\nmetadata:\n  name: num\nspec:\n  selector:\n"
	    "    app: web\n  ports:\n  - port: 80\n    targetPort: 8080\n---\n"
	    "apiVersion: v1\nkind: Service\nmetadata:\n  name: nobody\nspec:\n  selector:\n"
	    "    app: nothing\n  ports:\n  - port: 80\n---\n"
	    "apiVersion: v1\nkind: Service\nmetadata:\n  name: manual\nspec:\n  ports:\n"
	    "  - port: 80\n");
	put(&e, ".twill/pod.default.web-a.json", STATUS("web-a", "10.244.0.10", "True"));
	put(&e, ".twill/pod.default.web-b.json", STATUS("web-b", "10.244.0.11", "True"));
	put(&e, ".twill/pod.default.web-c.json", STATUS("web-c", "10.244.0.12", "False"));
	put(&e, ".twill/pod.default.other.json", STATUS("other", "10.244.0.13", "True"));
	/* web-d has no IP yet */
	settle(&e);

	assert_true(exists(&e, ".twill/endpointslice.default.web.json"));
	struct slices s = slices_of(&e, "web");
	assert_int_equal(s.n, 2); /* 8080 and 9090 resolve differently */
	for (size_t i = 0; i < s.n; i++) {
		assert_string_equal(s.v[i]->eps.managed_by, CONTROL_MANAGED_BY);
		assert_int_equal(s.v[i]->eps.address_type, AF_INET);
		assert_string_equal(s.v[i]->eps.ports[0].name, "http");
	}
	uint16_t port = 0;
	const struct endpoint *ep = find_ep(&s, "web-a", &port);
	assert_non_null(ep);
	assert_int_equal(port, 8080);
	assert_true(ep->ready);
	assert_true(ep->serving);
	assert_false(ep->terminating);
	assert_string_equal(ep->node_name, "n1");
	char b[IP_STRLEN];
	assert_string_equal(ip_fmt(&ep->addrs[0], b), "10.244.0.10");
	ep = find_ep(&s, "web-b", &port);
	assert_non_null(ep);
	assert_int_equal(port, 9090);
	ep = find_ep(&s, "web-c", &port);
	assert_non_null(ep);
	assert_false(ep->ready);
	assert_int_equal(port, 8080);
	assert_null(find_ep(&s, "web-d", NULL));
	assert_null(find_ep(&s, "other", NULL));

	/* numeric targetPort: one slice */
	s = slices_of(&e, "num");
	assert_int_equal(s.n, 1);
	assert_int_equal(s.v[0]->eps.nendpoints, 3);
	assert_int_equal(s.v[0]->eps.ports[0].port, 8080);

	/* selector without pods: one empty slice; no selector: none */
	s = slices_of(&e, "nobody");
	assert_int_equal(s.n, 1);
	assert_int_equal(s.v[0]->eps.nendpoints, 0);
	assert_false(exists(&e, ".twill/endpointslice.default.manual.json"));

	/* nothing changed: the file is not rewritten */
	ino_t before = inode(&e, ".twill/endpointslice.default.web.json");
	env_close(&e);
	env_open(&e);
	assert_true(controller_try_lead(e.c));
	settle(&e);
	assert_true(before == inode(&e, ".twill/endpointslice.default.web.json"));

	/* readiness flips and a pod gets its IP */
	put(&e, ".twill/pod.default.web-c.json", STATUS("web-c", "10.244.0.12", "True"));
	put(&e, ".twill/pod.default.web-d.json", STATUS("web-d", "10.244.0.14", "True"));
	settle(&e);
	s = slices_of(&e, "web");
	assert_true(find_ep(&s, "web-c", NULL)->ready);
	assert_non_null(find_ep(&s, "web-d", NULL));

	/* a pod goes away; a pod is relabelled out of the selector */
	put(&e, "pods.yaml",
	    POD("web-a", "web", "8080") POD("web-c", "web", "8080") POD("web-d", "other", "8080")
		POD("other", "other", "8080"));
	settle(&e);
	s = slices_of(&e, "web");
	assert_int_equal(s.n, 1);
	assert_null(find_ep(&s, "web-b", NULL));
	assert_null(find_ep(&s, "web-d", NULL));
	assert_non_null(find_ep(&s, "web-a", NULL));

	/* terminating */
	put(&e, "pods.yaml",
	    POD("web-a", "web", "8080") POD("web-c", "web", "8080") POD("other", "other", "8080"));
	put(&e, "term.yaml",
	    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-t\n  labels:\n    app: web\n"
	    "  deletionTimestamp: \"2026-01-01T00:00:00Z\"\nspec:\n  nodeName: n1\n"
	    "  containers:\n  - name: c\n    image: x\n    ports:\n    - name: http\n"
	    "      containerPort: 8080\nstatus:\n  podIP: 10.244.0.20\n  conditions:\n"
	    "  - type: Ready\n    status: \"True\"\n");
	settle(&e);
	s = slices_of(&e, "web");
	ep = find_ep(&s, "web-t", NULL);
	assert_non_null(ep);
	assert_true(ep->terminating);
	assert_false(ep->ready);
	assert_true(ep->serving);

	/* the Service goes: so does its file */
	put(&e, "svc.yaml",
	    "apiVersion: v1\nkind: Service\nmetadata:\n  name: num\nspec:\n  selector:\n"
	    "    app: web\n  ports:\n  - port: 80\n    targetPort: 8080\n");
	settle(&e);
	assert_false(exists(&e, ".twill/endpointslice.default.web.json"));
	assert_int_equal(slices_of(&e, "web").n, 0);
	assert_true(exists(&e, ".twill/endpointslice.default.num.json"));
	env_fini(&e);
}

/* ---- Service allocations ---- */

#define SVC(name, extra) "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: " name "\n" extra
#define PORT80 "  ports:\n  - port: 80\n"
#define SPEC80 "spec:\n" PORT80

static const struct service_obj *svc_of(const struct env *e, const char *name)
{
	const struct object *o = store_get(e->s, KIND_SERVICE, "default", name);
	assert_non_null(o);
	return &o->svc;
}

static const char *cip_of(const struct env *e, const char *name, char buf[IP_STRLEN])
{
	const struct service_obj *v = svc_of(e, name);
	return v->ncluster_ips ? ip_fmt(&v->cluster_ips[0], buf) : "none";
}

static const char *lb_of(const struct env *e, const char *name, char buf[IP_STRLEN])
{
	const struct service_obj *v = svc_of(e, name);
	return v->nlb_ips ? ip_fmt(&v->lb_ips[0], buf) : "none";
}

/* The controller's error for Service default/<name>, or NULL. */
static const char *error_of(const struct env *e, const char *name)
{
	char prefix[128];
	snprintf(prefix, sizeof(prefix), "Service default/%s: ", name);
	for (const char *const *m = controller_errors(e->c); *m; m++)
		if (!strncmp(*m, prefix, strlen(prefix)))
			return *m;
	return NULL;
}

static void test_svc_cluster_ip_node_port(void **state)
{
	(void)state;
	struct env e;
	env_init(&e);
	char b[IP_STRLEN];
	assert_true(controller_try_lead(e.c));
	put(&e, "svc.yaml",
	    SVC("zz", SPEC80) SVC("b", "spec:\n  clusterIP: 10.96.0.3\n" PORT80)
		SVC("c", "spec:\n  type: NodePort\n  ports:\n  - name: http\n    port: 80\n"
			 "  - name: dns\n    port: 53\n  - name: dns-udp\n    protocol: UDP\n"
			 "    port: 53\n  - name: fixed\n    port: 81\n    nodePort: 30002\n")
		    SVC("d", "spec:\n  clusterIP: None\n" PORT80)
			SVC("x", "spec:\n  type: ExternalName\n  externalName: example.com\n"));
	settle(&e);
	/* declaration order; .1 stays the `kubernetes` Service's; b's own .3 is skipped */
	assert_string_equal(cip_of(&e, "zz", b), "10.96.0.2");
	assert_string_equal(cip_of(&e, "b", b), "10.96.0.3");
	assert_string_equal(cip_of(&e, "c", b), "10.96.0.4");
	assert_string_equal(cip_of(&e, "d", b), "none");
	assert_true(svc_of(&e, "d")->headless);
	assert_string_equal(cip_of(&e, "x", b), "none");
	assert_true(exists(&e, ".twill/service.default.zz.json"));
	assert_false(exists(&e, ".twill/service.default.b.json"));
	assert_false(exists(&e, ".twill/service.default.d.json"));
	assert_false(exists(&e, ".twill/service.default.x.json"));
	const struct service_obj *c = svc_of(&e, "c");
	assert_int_equal(c->ports[0].node_port, 30000);
	assert_int_equal(c->ports[1].node_port, 30001);
	assert_int_equal(c->ports[2].node_port, 30001); /* same port number, other protocol */
	assert_int_equal(c->ports[3].node_port, 30002); /* the manifest's own */
	assert_int_equal(c->health_check_node_port, 0);
	assert_null(controller_errors(e.c)[0]);
	ino_t ic = inode(&e, ".twill/service.default.c.json");

	/* restart: everything read back, nothing rewritten or moved */
	env_close(&e);
	env_open(&e);
	assert_true(controller_try_lead(e.c));
	settle(&e);
	assert_string_equal(cip_of(&e, "zz", b), "10.96.0.2");
	assert_string_equal(cip_of(&e, "c", b), "10.96.0.4");
	assert_int_equal(svc_of(&e, "c")->ports[0].node_port, 30000);
	assert_true(ic == inode(&e, ".twill/service.default.c.json"));

	/* a Service goes: its file goes and its address is the next one given out */
	put(&e, "svc.yaml",
	    SVC("b", "spec:\n  clusterIP: 10.96.0.3\n" PORT80)
		SVC("c", "spec:\n  type: NodePort\n  ports:\n  - name: http\n    port: 80\n"
			 "  - name: dns\n    port: 53\n  - name: dns-udp\n    protocol: UDP\n"
			 "    port: 53\n  - name: fixed\n    port: 81\n    nodePort: 30002\n"));
	settle(&e);
	assert_false(exists(&e, ".twill/service.default.zz.json"));
	put(&e, "more.yaml", SVC("f", "spec:\n  type: NodePort\n" PORT80));
	settle(&e);
	assert_string_equal(cip_of(&e, "f", b), "10.96.0.2");
	assert_int_equal(svc_of(&e, "f")->ports[0].node_port, 30003);

	/* a manifest claims a nodePort we gave out: that Service errs, c keeps its port */
	put(&e, "more.yaml",
	    SVC("f", "spec:\n  type: NodePort\n" PORT80)
		SVC("g", "spec:\n  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 30000\n"));
	settle(&e);
	assert_int_equal(svc_of(&e, "c")->ports[0].node_port, 30000);
	assert_null(error_of(&e, "c"));
	assert_non_null(error_of(&e, "g"));
	assert_non_null(strstr(error_of(&e, "g"), "nodePort 30000 is already used by Service "
						  "default/c"));
	/* two manifests claim one nodePort: the one declared first keeps it */
	put(&e, "two.yaml",
	    SVC("h2", "spec:\n  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 31000\n") SVC(
		"h1", "spec:\n  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 31000\n"));
	settle(&e);
	assert_null(error_of(&e, "h2"));
	assert_non_null(error_of(&e, "h1"));
	assert_non_null(strstr(error_of(&e, "h1"), "default/h2"));
	/* the winner goes: the conflict is over */
	put(&e, "two.yaml",
	    SVC("h1", "spec:\n  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 31000\n"));
	put(&e, "more.yaml", SVC("f", "spec:\n  type: NodePort\n" PORT80));
	settle(&e);
	assert_null(error_of(&e, "h1"));
	assert_null(error_of(&e, "g"));
	assert_null(controller_errors(e.c)[0]);

	/* NodePort -> ClusterIP: the nodePort is released, the clusterIP stays */
	put(&e, "more.yaml", SVC("f", SPEC80));
	settle(&e);
	assert_string_equal(cip_of(&e, "f", b), "10.96.0.2");
	assert_int_equal(svc_of(&e, "f")->ports[0].node_port, 0);
	put(&e, "more.yaml", SVC("f", SPEC80) SVC("i", "spec:\n  type: NodePort\n" PORT80));
	settle(&e);
	assert_int_equal(svc_of(&e, "i")->ports[0].node_port, 30003); /* f's old one */

	/* every address and port is held once */
	const char *names[] = {"b", "c", "f", "h1", "i"};
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		for (size_t j = i + 1; j < ARRAY_SIZE(names); j++) {
			char x[IP_STRLEN], y[IP_STRLEN];
			assert_string_not_equal(cip_of(&e, names[i], x), cip_of(&e, names[j], y));
		}
	env_fini(&e);
}

static void test_svc_ranges(void **state)
{
	(void)state;
	struct env e;
	snprintf(e.dir, sizeof(e.dir), "/tmp/twill-test-control-%d-XXXXXX", (int)getpid());
	assert_non_null(mkdtemp(e.dir));
	e.s = store_new();
	e.src = source_dir_open(e.s, e.dir, NULL, NULL);
	struct controller_cfg cfg = {.manifest_dir = e.dir,
				     .nservice_cidrs = 1,
				     .node_port_min = 30100,
				     .node_port_max = 30101};
	assert_int_equal(prefix_parse("10.0.0.0/29", &cfg.service_cidrs[0]), 0);
	e.c = controller_new(e.s, &cfg);
	assert_non_null(e.c);
	assert_true(controller_try_lead(e.c));
	char b[IP_STRLEN];
	/* .2-.6: five addresses (not .0, .1 or the broadcast .7); two node ports.  A NodePort
	 * Service with externalTrafficPolicy Local gets no healthCheckNodePort (only type
	 * LoadBalancer does, as in Kubernetes) */
	put(&e, "s.yaml",
	    SVC("s1", "spec:\n  type: NodePort\n  externalTrafficPolicy: Local\n" PORT80)
		SVC("s2", "spec:\n  type: NodePort\n" PORT80) SVC("s3", SPEC80) SVC("s4", SPEC80)
		    SVC("s5", SPEC80) SVC("s6", "spec:\n  type: NodePort\n" PORT80));
	settle(&e);
	assert_string_equal(cip_of(&e, "s1", b), "10.0.0.2");
	assert_string_equal(cip_of(&e, "s5", b), "10.0.0.6");
	assert_string_equal(cip_of(&e, "s6", b), "none");
	assert_int_equal(svc_of(&e, "s1")->ports[0].node_port, 30100);
	assert_int_equal(svc_of(&e, "s1")->health_check_node_port, 0);
	assert_int_equal(svc_of(&e, "s2")->ports[0].node_port, 30101);
	assert_null(error_of(&e, "s1"));
	assert_non_null(error_of(&e, "s6"));
	assert_non_null(strstr(error_of(&e, "s6"), "no free ClusterIP"));
	assert_non_null(strstr(error_of(&e, "s6"), "no free nodePort"));
	/* s2 and s3 go: s6 gets an address and s2's port */
	put(&e, "s.yaml",
	    SVC("s1", "spec:\n  type: NodePort\n" PORT80) SVC("s4", SPEC80) SVC("s5", SPEC80)
		SVC("s6", "spec:\n  type: NodePort\n" PORT80));
	settle(&e);
	assert_string_not_equal(cip_of(&e, "s6", b), "none");
	assert_int_equal(svc_of(&e, "s1")->health_check_node_port, 0);
	assert_int_equal(svc_of(&e, "s6")->ports[0].node_port, 30101);
	assert_null(controller_errors(e.c)[0]);
	env_fini(&e);

	/* a bad range is refused */
	struct store *s = store_new();
	struct controller_cfg bad = {
	    .manifest_dir = "/nonexistent", .node_port_min = 32000, .node_port_max = 31000};
	assert_null(controller_new(s, &bad));
	struct controller_cfg bad2 = {.manifest_dir = "/nonexistent", .nservice_cidrs = 1};
	assert_int_equal(prefix_parse("10.0.0.0/31", &bad2.service_cidrs[0]), 0);
	assert_null(controller_new(s, &bad2));
	store_free(s);
}

/* All ClusterIPs of a Service, "a,b" ("none" if none). */
static const char *cips_of(const struct env *e, const char *name)
{
	static char out[2 * IP_STRLEN + 2];
	const struct service_obj *v = svc_of(e, name);
	char b[IP_STRLEN];
	out[0] = 0;
	for (size_t i = 0; i < v->ncluster_ips; i++)
		snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%s", i ? "," : "",
			 ip_fmt(&v->cluster_ips[i], b));
	return out[0] ? out : "none";
}

/* spec.<key> of an overlay file as compact JSON, "" if absent. */
static const char *spec_json(const struct env *e, const char *rel, const char *key)
{
	static char out[256];
	char *p = xasprintf("%s/%s", e->dir, rel);
	struct json_object *o = json_object_from_file(p), *spec, *v;
	free(p);
	out[0] = 0;
	if (o && json_object_object_get_ex(o, "spec", &spec) &&
	    json_object_object_get_ex(spec, key, &v))
		snprintf(out, sizeof(out), "%s",
			 json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return out;
}

static void test_svc_dual_stack(void **state)
{
	(void)state;
	struct controller_cfg cfg = {.nservice_cidrs = 2};
	assert_int_equal(prefix_parse("10.96.0.0/24", &cfg.service_cidrs[0]), 0);
	assert_int_equal(prefix_parse("fd00:96::/108", &cfg.service_cidrs[1]), 0);
	open_cfg = &cfg;
	struct env e;
	env_init(&e);
	assert_true(controller_try_lead(e.c));
	put(&e, "svc.yaml",
	    SVC("s1", SPEC80) SVC("s2", "spec:\n  ipFamilyPolicy: PreferDualStack\n" PORT80) SVC(
		"s3", "spec:\n  ipFamilyPolicy: RequireDualStack\n  ipFamilies: [IPv6]\n" PORT80)
		SVC("s4", "spec:\n  ipFamilies: [IPv6]\n" PORT80));
	settle(&e);
	/* one address per family from that family's CIDR, the primary family first */
	assert_string_equal(cips_of(&e, "s1"), "10.96.0.2");
	assert_string_equal(cips_of(&e, "s2"), "10.96.0.3,fd00:96::2");
	assert_string_equal(cips_of(&e, "s3"), "fd00:96::3,10.96.0.4");
	assert_string_equal(cips_of(&e, "s4"), "fd00:96::4");
	assert_null(controller_errors(e.c)[0]);
	/* the overlay holds clusterIP, clusterIPs, ipFamilies (their families, in order) and
	 * the policy, as the API server fills them in */
	const char *f3 = ".twill/service.default.s3.json";
	assert_string_equal(spec_json(&e, f3, "clusterIP"), "\"fd00:96::3\"");
	assert_string_equal(spec_json(&e, f3, "clusterIPs"), "[\"fd00:96::3\",\"10.96.0.4\"]");
	assert_string_equal(spec_json(&e, f3, "ipFamilies"), "[\"IPv6\",\"IPv4\"]");
	assert_string_equal(spec_json(&e, f3, "ipFamilyPolicy"), "\"RequireDualStack\"");
	assert_string_equal(spec_json(&e, ".twill/service.default.s1.json", "ipFamilyPolicy"),
			    "\"SingleStack\"");
	ino_t i2 = inode(&e, ".twill/service.default.s2.json");

	/* restart: read back, nothing rewritten */
	env_close(&e);
	env_open(&e);
	assert_true(controller_try_lead(e.c));
	settle(&e);
	assert_string_equal(cips_of(&e, "s2"), "10.96.0.3,fd00:96::2");
	assert_string_equal(cips_of(&e, "s3"), "fd00:96::3,10.96.0.4");
	assert_true(i2 == inode(&e, ".twill/service.default.s2.json"));

	/* s2 back to SingleStack releases its IPv6 address; s1 to PreferDualStack keeps its
	 * IPv4 address and gains an IPv6 one (declared first, it takes a fresh one before s2
	 * lets go of its own) */
	put(&e, "svc.yaml",
	    SVC("s1", "spec:\n  ipFamilyPolicy: PreferDualStack\n" PORT80) SVC("s2", SPEC80) SVC(
		"s3", "spec:\n  ipFamilyPolicy: RequireDualStack\n  ipFamilies: [IPv6]\n" PORT80)
		SVC("s4", "spec:\n  ipFamilies: [IPv6]\n" PORT80));
	settle(&e);
	assert_string_equal(cips_of(&e, "s2"), "10.96.0.3");
	assert_string_equal(cips_of(&e, "s1"), "10.96.0.2,fd00:96::5");
	put(&e, "more.yaml", SVC("s5", "spec:\n  ipFamilyPolicy: PreferDualStack\n" PORT80));
	settle(&e);
	assert_string_equal(cips_of(&e, "s5"), "10.96.0.5,fd00:96::2"); /* s2's old one */
	assert_string_equal(spec_json(&e, ".twill/service.default.s2.json", "ipFamilies"),
			    "[\"IPv4\"]");
	assert_null(controller_errors(e.c)[0]);
	env_fini(&e);

	/* a single-stack (IPv4) cluster: RequireDualStack and IPv6 are errors for that
	 * Service only; PreferDualStack quietly stays single-stack */
	open_cfg = NULL;
	env_init(&e);
	assert_true(controller_try_lead(e.c));
	put(&e, "svc.yaml",
	    SVC("r1", "spec:\n  ipFamilyPolicy: RequireDualStack\n" PORT80)
		SVC("r2", "spec:\n  ipFamilyPolicy: PreferDualStack\n" PORT80)
		    SVC("r3", "spec:\n  ipFamilies: [IPv6]\n" PORT80)
			SVC("r4", "spec:\n  ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv4, "
				  "IPv6]\n" PORT80)
			    SVC("r5", "spec:\n  clusterIP: 'fd00::5'\n" PORT80) SVC("r6", SPEC80));
	settle(&e);
	assert_string_equal(cips_of(&e, "r1"), "none");
	assert_non_null(error_of(&e, "r1"));
	assert_non_null(strstr(error_of(&e, "r1"), "ipFamilyPolicy RequireDualStack: this "
						   "cluster is not configured for dual-stack"));
	assert_string_equal(cips_of(&e, "r2"), "10.96.0.2");
	assert_null(error_of(&e, "r2"));
	assert_string_equal(cips_of(&e, "r3"), "none");
	assert_non_null(strstr(error_of(&e, "r3"), "ipFamilies[0] IPv6 is not configured"));
	assert_string_equal(cips_of(&e, "r4"), "10.96.0.3");
	assert_null(error_of(&e, "r4"));
	assert_non_null(strstr(error_of(&e, "r5"), "clusterIP fd00::5: IPv6 is not configured"));
	assert_string_equal(cips_of(&e, "r6"), "10.96.0.4");
	/* fixed (and the others gone): the errors go, r1 gets the lowest free address */
	put(&e, "svc.yaml", SVC("r1", SPEC80));
	settle(&e);
	assert_string_equal(cips_of(&e, "r1"), "10.96.0.2");
	assert_null(controller_errors(e.c)[0]);
	env_fini(&e);

	/* no service CIDR given, a dual-stack pod network: one default per family */
	struct controller_cfg pods = {.ncluster_cidrs = 2};
	assert_int_equal(prefix_parse("10.244.0.0/16", &pods.cluster_cidrs[0]), 0);
	assert_int_equal(prefix_parse("fd00:244::/56", &pods.cluster_cidrs[1]), 0);
	open_cfg = &pods;
	env_init(&e);
	assert_true(controller_try_lead(e.c));
	put(&e, "svc.yaml", SVC("d1", "spec:\n  ipFamilyPolicy: PreferDualStack\n" PORT80));
	settle(&e);
	assert_string_equal(cips_of(&e, "d1"), "10.96.0.2,fd00:96::2");
	env_fini(&e);
	open_cfg = NULL;
}

#define POOL(name, extra)                                                                          \
	"---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: " name       \
	"\n  namespace: metallb-system\nspec:\n" extra
#define LB(name, extra)                                                                            \
	"---\napiVersion: v1\nkind: Service\nmetadata:\n  name: " name "\n" extra                  \
	"spec:\n  type: LoadBalancer\n  ports:\n  - port: 80\n"

static void test_svc_load_balancer(void **state)
{
	(void)state;
	struct env e;
	env_init(&e);
	char b[IP_STRLEN];
	assert_true(controller_try_lead(e.c));
	put(&e, "pools.yaml",
	    POOL("main", "  addresses:\n  - 192.168.30.200-192.168.30.201\n")
		POOL("special", "  autoAssign: false\n  addresses: [192.168.40.0/30]\n"));
	put(&e, "lb.yaml",
	    LB("l1", "") LB("l2", "") LB("l3", "")
		LB("l4", "  annotations:\n    metallb.universe.tf/address-pool: special\n"));
	settle(&e);
	assert_string_equal(lb_of(&e, "l1", b), "192.168.30.200");
	assert_string_equal(lb_of(&e, "l2", b), "192.168.30.201");
	assert_string_equal(lb_of(&e, "l3", b), "none");
	assert_string_equal(lb_of(&e, "l4", b), "192.168.40.0");
	assert_non_null(error_of(&e, "l3"));
	assert_non_null(strstr(error_of(&e, "l3"), "no free address"));
	/* a LoadBalancer gets its clusterIP and nodePort too */
	assert_string_equal(cip_of(&e, "l1", b), "10.96.0.2");
	assert_int_equal(svc_of(&e, "l1")->ports[0].node_port, 30000);

	/* stable across a restart */
	ino_t i1 = inode(&e, ".twill/service.default.l1.json");
	env_close(&e);
	env_open(&e);
	assert_true(controller_try_lead(e.c));
	settle(&e);
	assert_string_equal(lb_of(&e, "l1", b), "192.168.30.200");
	assert_string_equal(lb_of(&e, "l2", b), "192.168.30.201");
	assert_string_equal(lb_of(&e, "l4", b), "192.168.40.0");
	assert_true(i1 == inode(&e, ".twill/service.default.l1.json"));
	assert_non_null(error_of(&e, "l3"));

	/* l1 goes: the waiting l3 gets its address */
	put(&e, "lb.yaml",
	    LB("l2", "") LB("l3", "")
		LB("l4", "  annotations:\n    metallb.universe.tf/address-pool: special\n"));
	settle(&e);
	assert_false(exists(&e, ".twill/service.default.l1.json"));
	assert_string_equal(lb_of(&e, "l3", b), "192.168.30.200");
	assert_null(error_of(&e, "l3"));

	/* a requested address: taken, outside every pool, then free */
	put(&e, "req.yaml",
	    "apiVersion: v1\nkind: Service\nmetadata:\n  name: r\nspec:\n  type: LoadBalancer\n"
	    "  loadBalancerIP: 192.168.30.201\n  ports:\n  - port: 80\n");
	settle(&e);
	assert_string_equal(lb_of(&e, "r", b), "none");
	assert_non_null(strstr(error_of(&e, "r"), "192.168.30.201 is already used by Service "
						  "default/l2"));
	put(&e, "req.yaml",
	    "apiVersion: v1\nkind: Service\nmetadata:\n  name: r\nspec:\n  type: LoadBalancer\n"
	    "  loadBalancerIP: 192.168.40.2\n  ports:\n  - port: 80\n");
	settle(&e);
	assert_string_equal(lb_of(&e, "r", b), "192.168.40.2"); /* a non-autoAssign pool: asked */
	assert_null(error_of(&e, "r"));
	/* asking for a taken one later: r keeps what it had */
	put(&e, "req.yaml",
	    "apiVersion: v1\nkind: Service\nmetadata:\n  name: r\nspec:\n  type: LoadBalancer\n"
	    "  loadBalancerIP: 192.168.40.0\n  ports:\n  - port: 80\n");
	settle(&e);
	assert_string_equal(lb_of(&e, "r", b), "192.168.40.2");
	assert_non_null(strstr(error_of(&e, "r"), "already used by Service default/l4"));
	put(&e, "req.yaml",
	    "apiVersion: v1\nkind: Service\nmetadata:\n  name: r\nspec:\n  type: LoadBalancer\n"
	    "  loadBalancerIP: 10.1.1.1\n  ports:\n  - port: 80\n");
	settle(&e);
	assert_non_null(strstr(error_of(&e, "r"), "10.1.1.1 is in no IPAddressPool"));
	put(&e, "req.yaml", "");
	settle(&e);
	assert_null(error_of(&e, "r"));

	/* the manifest's own status stands; no nodePorts when turned off; Local policy */
	put(&e, "own.yaml",
	    "apiVersion: v1\nkind: Service\nmetadata:\n  name: own\nspec:\n  type: LoadBalancer\n"
	    "  allocateLoadBalancerNodePorts: false\n  externalTrafficPolicy: Local\n"
	    "  ports:\n  - port: 80\nstatus:\n  loadBalancer:\n    ingress:\n    - ip: 10.9.9.9\n");
	settle(&e);
	assert_string_equal(lb_of(&e, "own", b), "10.9.9.9");
	assert_int_equal(svc_of(&e, "own")->ports[0].node_port, 0);
	assert_int_not_equal(svc_of(&e, "own")->health_check_node_port, 0);

	/* the pool shrinks: an address outside it is taken back and replaced */
	put(&e, "pools.yaml",
	    POOL("main", "  addresses:\n  - 192.168.30.200/32\n  - 192.168.30.210/32\n")
		POOL("special", "  autoAssign: false\n  addresses: [192.168.40.0/30]\n"));
	settle(&e);
	assert_string_equal(lb_of(&e, "l3", b), "192.168.30.200");
	assert_string_equal(lb_of(&e, "l2", b), "192.168.30.210");

	/* LoadBalancer -> ClusterIP: the address and nodePort go, the clusterIP stays */
	const char *cip = cip_of(&e, "l2", b);
	char keep[IP_STRLEN];
	snprintf(keep, sizeof(keep), "%s", cip);
	put(&e, "lb.yaml",
	    SVC("l2", SPEC80) LB("l3", "")
		LB("l4", "  annotations:\n    metallb.universe.tf/address-pool: special\n"));
	settle(&e);
	assert_string_equal(lb_of(&e, "l2", b), "none");
	assert_int_equal(svc_of(&e, "l2")->ports[0].node_port, 0);
	assert_string_equal(cip_of(&e, "l2", b), keep);
	assert_null(controller_errors(e.c)[0]);

	/* the pools go: the addresses are withdrawn and the Services say why */
	put(&e, "pools.yaml", "");
	settle(&e);
	assert_string_equal(lb_of(&e, "l3", b), "none");
	assert_non_null(strstr(error_of(&e, "l3"), "no IPAddressPool"));
	assert_non_null(strstr(error_of(&e, "l4"), "no IPAddressPool named special"));
	env_fini(&e);
}

static void test_leader_lock(void **state)
{
	(void)state;
	struct env e;
	env_init(&e);
	struct store *s2 = store_new();
	struct controller_cfg cfg = {.manifest_dir = e.dir};
	struct controller *c2 = controller_new(s2, &cfg);
	assert_non_null(c2);
	assert_true(controller_try_lead(e.c));
	assert_false(controller_try_lead(c2));
	assert_false(controller_is_leader(c2));
	assert_false(controller_dirty(c2));
	assert_true(controller_try_lead(e.c)); /* idempotent */
	/* the leader goes away: the other takes over */
	controller_free(e.c);
	e.c = controller_new(e.s, &cfg);
	assert_true(controller_try_lead(c2));
	assert_false(controller_try_lead(e.c));
	controller_free(c2);
	store_free(s2);
	env_fini(&e);
}

static void test_bad_config(void **state)
{
	(void)state;
	struct store *s = store_new();
	struct controller_cfg cfg = {.manifest_dir = "/nonexistent", .ncluster_cidrs = 1};
	assert_int_equal(prefix_parse("10.0.0.0/24", &cfg.cluster_cidrs[0]), 0);
	cfg.node_cidr_len[0] = 16;
	assert_null(controller_new(s, &cfg));
	store_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_alloc),
	    cmocka_unit_test(test_alloc_exhausted),
	    cmocka_unit_test(test_schedule),
	    cmocka_unit_test(test_endpointslices),
	    cmocka_unit_test(test_svc_cluster_ip_node_port),
	    cmocka_unit_test(test_svc_ranges),
	    cmocka_unit_test(test_svc_dual_stack),
	    cmocka_unit_test(test_svc_load_balancer),
	    cmocka_unit_test(test_leader_lock),
	    cmocka_unit_test(test_bad_config),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	/* A failed test leaves its directory behind: remove this run's. */
	char pat[128];
	snprintf(pat, sizeof(pat), "/tmp/twill-test-control-%d-*", (int)getpid());
	glob_t g;
	if (!glob(pat, 0, NULL, &g)) {
		for (size_t i = 0; i < g.gl_pathc; i++)
			rm_rf(g.gl_pathv[i]);
		globfree(&g);
	}
	return r;
}
