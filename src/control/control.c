/* control: the standalone control plane's networking jobs (see control.h).
 *
 * What it stands in for, and the behaviour it follows:
 *   - kube-controller-manager's nodeipam (range allocator): one podCIDR per family for
 *     each Node that has none, lowest free subnet of the cluster CIDR first, never one
 *     that overlaps a subnet another Node holds; released when the Node goes.
 *   - kube-scheduler, reduced to its spreading score: fewest pods of the same owner
 *     (here: same namespace and label set), then fewest pods, then node name.
 *   - the EndpointSlice controller (discovery.k8s.io/v1): per Service with a selector,
 *     the matching Pods that have an IP, conditions ready/serving/terminating, ports
 *     resolved from targetPort (named ports looked up per Pod, so Pods resolving
 *     differently land in different slices), at most 100 endpoints per slice, and an
 *     empty placeholder slice when nothing matches.
 *
 * Results are written as files into <manifests>/.twill/ (only when their content
 * changes); every agent's store reads them back.  Store events only mark Nodes, Pods
 * and Services dirty; controller_sync() reconciles just those, each from the store's
 * current state, so a missed or repeated event cannot leave a wrong file behind. */
#include "control/control.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/consts.h"
#include "lib/log.h"
#include "lib/util.h"

#define MAX_ENDPOINTS_PER_SLICE 100
#define LABEL_SERVICE_NAME "kubernetes.io/service-name"
#define LABEL_MANAGED_BY "endpointslice.kubernetes.io/managed-by"
#define LEADER_LOCK ".leader.lock"
/* The IPv6 service CIDR when none is given and the pod network has IPv6 (a /108, as
 * kube-apiserver's IPv6 ranges are limited to 20 bits of host). */
#define DEFAULT_SERVICE_CIDR6 "fd00:96::/108"

struct alloc {
	size_t n;
	struct ipprefix p[2];
};

struct controller {
	struct store *s;
	char *mdir, *ovdir;
	size_t ncidrs;
	struct ipprefix cidrs[2];
	unsigned lens[2];
	int lock_fd;
	bool leader, full;
	bool unsched_dirty; /* every unscheduled pod needs another look (a node appeared) */
	struct smap dirty_nodes, dirty_pods, dirty_svcs; /* keys: node name, "ns/name" */
	struct smap allocs;	 /* node -> struct alloc written but not yet seen in the store */
	struct smap starved;	 /* nodes left without a subnet (cluster CIDR full) */
	struct smap decisions;	 /* pod key -> node name written but not yet seen */
	struct smap resched;	 /* pod keys whose node went away */
	struct smap unscheduled; /* pod keys without spec.nodeName */
	struct smap svcs_by_ns;	 /* ns -> struct smap of service names */
	/* Service allocations */
	size_t nsvc_cidrs;
	struct ipprefix svc_cidrs[2];
	unsigned np_min, np_max;
	struct smap holders;	  /* resource -> struct smap (svc key -> count) */
	struct smap svc_allocs;	  /* svc key -> struct svc_alloc: our overlay's content */
	struct smap svc_errors;	  /* svc key -> message */
	struct smap lb_svcs;	  /* keys of LoadBalancer Services (pools changed: recheck) */
	struct smap redirty_svcs; /* marked while sync_services runs */
	bool in_svc_sync;
	uint64_t cip_hint[2]; /* per service CIDR: every usable offset below it is held */
	unsigned np_hint;  /* every node port below it is held */
	char **errv;	   /* controller_errors() */
};

/* ---------------------------------------------------------------- helpers */

static void mark(struct smap *m, const char *key)
{
	smap_add(m, key);
}

static char *pod_key(const struct object *o)
{
	return xasprintf("%s/%s", o->meta.ns ? o->meta.ns : "default", o->meta.name);
}

/* Split "ns/name" in place; returns name. */
static char *split_key(char *key)
{
	char *slash = strchr(key, '/');
	if (!slash)
		return key;
	*slash = 0;
	return slash + 1;
}

static int write_if_changed(const char *path, const char *content)
{
	char *old = NULL;
	size_t len = 0;
	if (!file_read(path, &old, &len)) {
		bool same = len == strlen(content) && !memcmp(old, content, len);
		free(old);
		if (same)
			return 0;
	}
	int err = file_write_atomic(path, content, strlen(content));
	if (err)
		log_error("control", "%s: cannot write: %s", path, strerror(-err));
	else
		log_debug("control", "wrote %s", path);
	return err;
}

static int unlink_quiet(const char *path)
{
	if (!unlink(path)) {
		log_debug("control", "removed %s", path);
		return 0;
	}
	if (errno == ENOENT)
		return 0;
	int err = -errno;
	log_error("control", "%s: cannot remove: %s", path, strerror(-err));
	return err;
}

static int write_json(const char *path, struct json_object *j)
{
	const char *str = json_object_to_json_string_ext(
	    j, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
	char *content = xasprintf("%s\n", str);
	int err = write_if_changed(path, content);
	free(content);
	return err;
}

static char *node_file(const struct controller *c, const char *node)
{
	return xasprintf("%s/node.%s.json", c->ovdir, node);
}

static char *sched_file(const struct controller *c, const char *ns, const char *name)
{
	return xasprintf("%s/pod.%s.%s.sched.json", c->ovdir, ns, name);
}

static char *slice_file(const struct controller *c, const char *ns, const char *svc)
{
	return xasprintf("%s/endpointslice.%s.%s.json", c->ovdir, ns, svc);
}

static struct json_object *jmeta(const char *name, const char *ns)
{
	struct json_object *m = json_object_new_object();
	json_object_object_add(m, "name", json_object_new_string(name));
	if (ns)
		json_object_object_add(m, "namespace", json_object_new_string(ns));
	return m;
}

static struct json_object *jobject(const char *api, const char *kind, struct json_object *meta)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "apiVersion", json_object_new_string(api));
	json_object_object_add(o, "kind", json_object_new_string(kind));
	json_object_object_add(o, "metadata", meta);
	return o;
}

/* ---------------------------------------------------------------- events */

static void track_service_resources(struct controller *c, const char *key, const struct object *old,
				    const struct object *new_obj);
static void mark_svc(struct controller *c, const char *key);

static bool svc_selects(const struct object *svc)
{
	return svc && svc->svc.selector.present && svc->svc.selector.match_labels.n &&
	       svc->svc.type != SVC_EXTERNAL_NAME;
}

/* Services of the pod's namespace whose selector matched before or matches now. */
static void mark_services_of(struct controller *c, const struct object *old,
			     const struct object *new_obj)
{
	const struct object *p = new_obj ? new_obj : old;
	const char *ns = p->meta.ns ? p->meta.ns : "default";
	struct smap *names = smap_get(&c->svcs_by_ns, ns);
	if (!names)
		return;
	smap_foreach(names, it)
	{
		const struct object *svc = store_get(c->s, KIND_SERVICE, ns, it->key);
		if (!svc_selects(svc))
			continue;
		const struct selector *sel = &svc->svc.selector;
		if ((old && selector_matches(sel, &old->meta.labels)) ||
		    (new_obj && selector_matches(sel, &new_obj->meta.labels))) {
			char *key = xasprintf("%s/%s", ns, it->key);
			mark(&c->dirty_svcs, key);
			free(key);
		}
	}
}

static void free_smap(void *p);

static void track_service(struct controller *c, const struct object *svc, bool present)
{
	const char *ns = svc->meta.ns ? svc->meta.ns : "default";
	bool created;
	void **slot = smap_slot(&c->svcs_by_ns, ns, &created);
	if (created)
		*slot = xcalloc(1, sizeof(struct smap));
	if (present) {
		mark(*slot, svc->meta.name);
	} else {
		smap_del(*slot, svc->meta.name);
		if (!((struct smap *)*slot)->n) {
			free_smap(*slot);
			smap_del(&c->svcs_by_ns, ns);
		}
	}
}

static void track_pod(struct controller *c, const struct object *pod, bool present)
{
	char *key = pod_key(pod);
	if (present && !pod->pod.node_name && !pod->meta.deleting)
		mark(&c->unscheduled, key);
	else
		smap_del(&c->unscheduled, key);
	free(key);
}

static void mark_unscheduled(struct controller *c)
{
	/* Expanded at sync time: a burst of node events costs one pass, not one each. */
	c->unsched_dirty = true;
}

static void on_event(void *arg, enum store_event ev, const struct object *old,
		     const struct object *new_obj)
{
	struct controller *c = arg;
	const struct object *o = new_obj ? new_obj : old;
	switch (o->kind) {
	case KIND_NODE:
		if (!c->leader)
			return;
		mark(&c->dirty_nodes, o->meta.name);
		if (ev == STORE_REMOVED) {
			/* A freed subnet may be what a starved node waits for. */
			smap_foreach(&c->starved, it) mark(&c->dirty_nodes, it->key);
		} else if (!new_obj->node.unschedulable && (!old || old->node.unschedulable)) {
			mark_unscheduled(c);
		}
		break;
	case KIND_POD:
		track_pod(c, o, ev != STORE_REMOVED);
		if (!c->leader)
			return;
		{
			char *key = pod_key(o);
			mark(&c->dirty_pods, key);
			free(key);
		}
		mark_services_of(c, old, new_obj);
		break;
	case KIND_SERVICE: {
		track_service(c, o, ev != STORE_REMOVED);
		if (!c->leader)
			return; /* what Services hold is rebuilt when taking the lead */
		char *key = pod_key(o);
		track_service_resources(c, key, old, new_obj);
		mark_svc(c, key);
		free(key);
		break;
	}
	case KIND_IPADDRESSPOOL:
		if (!c->leader)
			return;
		smap_foreach(&c->lb_svcs, it) mark_svc(c, it->key);
		break;
	default:
		break;
	}
}

/* ---------------------------------------------------------------- lifecycle */

struct controller *controller_new(struct store *s, const struct controller_cfg *cfg)
{
	struct controller *c = xcalloc(1, sizeof(*c));
	c->s = s;
	c->lock_fd = -1;
	c->mdir = xstrdup(cfg->manifest_dir);
	c->ovdir = xasprintf("%s/%s", cfg->manifest_dir, SOURCE_OVERLAY_DIR);
	c->ncidrs = cfg->ncluster_cidrs > 2 ? 2 : cfg->ncluster_cidrs;
	for (size_t i = 0; i < c->ncidrs; i++) {
		c->cidrs[i] = cfg->cluster_cidrs[i];
		prefix_normalize(&c->cidrs[i]);
		int fam = c->cidrs[i].addr.family;
		c->lens[i] = cfg->node_cidr_len[i] ? cfg->node_cidr_len[i]
			     : fam == AF_INET6	   ? 64
						   : TWILL_DEFAULT_NODE_CIDR_LEN;
	}
	c->nsvc_cidrs = cfg->nservice_cidrs > 2 ? 2 : cfg->nservice_cidrs;
	for (size_t i = 0; i < c->nsvc_cidrs; i++) {
		c->svc_cidrs[i] = cfg->service_cidrs[i];
		prefix_normalize(&c->svc_cidrs[i]);
	}
	/* No service CIDR given: one per family of the pod network, in its order (a
	 * dual-stack cluster gets dual-stack Services on request), else IPv4 only. */
	for (size_t i = 0; !cfg->nservice_cidrs && i < c->ncidrs; i++)
		prefix_parse(c->cidrs[i].addr.family == AF_INET6 ? DEFAULT_SERVICE_CIDR6
								 : CONTROL_DEFAULT_SERVICE_CIDR,
			     &c->svc_cidrs[c->nsvc_cidrs++]);
	if (!c->nsvc_cidrs) {
		prefix_parse(CONTROL_DEFAULT_SERVICE_CIDR, &c->svc_cidrs[0]);
		c->nsvc_cidrs = 1;
	}
	c->np_min = cfg->node_port_min ? cfg->node_port_min : CONTROL_DEFAULT_NODE_PORT_MIN;
	c->np_max = cfg->node_port_max ? cfg->node_port_max : CONTROL_DEFAULT_NODE_PORT_MAX;
	bool bad_svc = c->np_min > c->np_max;
	for (size_t i = 0; i < c->nsvc_cidrs; i++)
		bad_svc |= !ip_is_set(&c->svc_cidrs[i].addr) ||
			   c->svc_cidrs[i].len > ip_maxlen(c->svc_cidrs[i].addr.family) - 2 ||
			   (i == 1 && c->svc_cidrs[1].addr.family == c->svc_cidrs[0].addr.family);
	if (bad_svc) {
		char b0[IP_STRLEN];
		log_error("control", "invalid service CIDR %s or node port range %u-%u",
			  prefix_fmt(&c->svc_cidrs[0], b0), c->np_min, c->np_max);
		free(c->mdir);
		free(c->ovdir);
		free(c);
		errno = EINVAL;
		return NULL;
	}
	if (!c->ncidrs) {
		prefix_parse(TWILL_DEFAULT_CLUSTER_CIDR, &c->cidrs[0]);
		c->lens[0] =
		    cfg->node_cidr_len[0] ? cfg->node_cidr_len[0] : TWILL_DEFAULT_NODE_CIDR_LEN;
		c->ncidrs = 1;
	}
	for (size_t i = 0; i < c->ncidrs; i++) {
		if (!ip_is_set(&c->cidrs[i].addr) || c->lens[i] < c->cidrs[i].len ||
		    c->lens[i] > (unsigned)ip_maxlen(c->cidrs[i].addr.family) ||
		    (i == 1 && c->cidrs[1].addr.family == c->cidrs[0].addr.family)) {
			char buf[IP_STRLEN];
			log_error("control", "invalid cluster CIDR %s with node CIDR length /%u",
				  prefix_fmt(&c->cidrs[i], buf), c->lens[i]);
			free(c->mdir);
			free(c->ovdir);
			free(c);
			errno = EINVAL;
			return NULL;
		}
	}
	store_subscribe(s,
			KIND_BIT(KIND_NODE) | KIND_BIT(KIND_POD) | KIND_BIT(KIND_SERVICE) |
			    KIND_BIT(KIND_IPADDRESSPOOL),
			on_event, c);
	return c;
}

static void free_smap(void *p)
{
	struct smap *m = p;
	smap_clear(m, NULL);
	free(m);
}

static void svc_alloc_free(void *p);

void controller_free(struct controller *c)
{
	if (!c)
		return;
	store_unsubscribe(c->s, on_event, c);
	if (c->lock_fd >= 0)
		close(c->lock_fd);
	smap_clear(&c->dirty_nodes, NULL);
	smap_clear(&c->dirty_pods, NULL);
	smap_clear(&c->dirty_svcs, NULL);
	smap_clear(&c->allocs, free);
	smap_clear(&c->starved, NULL);
	smap_clear(&c->decisions, free);
	smap_clear(&c->resched, NULL);
	smap_clear(&c->unscheduled, NULL);
	smap_clear(&c->svcs_by_ns, free_smap);
	smap_clear(&c->holders, free_smap);
	smap_clear(&c->svc_allocs, svc_alloc_free);
	smap_clear(&c->svc_errors, free);
	smap_clear(&c->lb_svcs, NULL);
	smap_clear(&c->redirty_svcs, NULL);
	free(c->errv);
	free(c->mdir);
	free(c->ovdir);
	free(c);
}

bool controller_try_lead(struct controller *c)
{
	if (c->leader)
		return true;
	int err = mkdir_p(c->ovdir, 0755);
	if (err) {
		log_error("control", "%s: %s", c->ovdir, strerror(-err));
		return false;
	}
	char *path = xasprintf("%s/%s", c->ovdir, LEADER_LOCK);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		log_error("control", "%s: %s", path, strerror(errno));
		free(path);
		return false;
	}
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		if (errno != EWOULDBLOCK)
			log_error("control", "%s: flock: %s", path, strerror(errno));
		close(fd);
		free(path);
		return false;
	}
	free(path);
	c->lock_fd = fd;
	c->leader = true;
	c->full = true;
	log_info("control", "leading: the controller runs here");
	return true;
}

bool controller_is_leader(const struct controller *c)
{
	return c->leader;
}

bool controller_dirty(const struct controller *c)
{
	return c->leader && (c->full || c->unsched_dirty || c->dirty_nodes.n || c->dirty_pods.n ||
			     c->dirty_svcs.n);
}

/* ---------------------------------------------------------------- full pass */

static int full_node(const struct object *o, void *arg)
{
	mark(&((struct controller *)arg)->dirty_nodes, o->meta.name);
	return 0;
}

static int full_pod(const struct object *o, void *arg)
{
	struct controller *c = arg;
	track_pod(c, o, true);
	char *key = pod_key(o);
	mark(&c->dirty_pods, key);
	free(key);
	return 0;
}

static void seed_alloc(struct controller *c, const struct object *svc, const char *key);

static int full_svc(const struct object *o, void *arg)
{
	struct controller *c = arg;
	track_service(c, o, true);
	char *key = pod_key(o);
	track_service_resources(c, key, NULL, o);
	seed_alloc(c, o, key);
	mark(&c->dirty_svcs, key);
	free(key);
	return 0;
}

/* "prefix<ns>.<name>suffix" -> "ns/name" (namespaces hold no dots). */
static char *file_key(const char *fname, const char *prefix, const char *suffix)
{
	size_t lp = strlen(prefix), ls = strlen(suffix), lf = strlen(fname);
	if (lf <= lp + ls || !str_has_prefix(fname, prefix) || !str_has_suffix(fname, suffix))
		return NULL;
	char *mid = strndup(fname + lp, lf - lp - ls);
	if (!mid)
		return NULL;
	char *dot = strchr(mid, '.');
	if (!dot || dot == mid || !dot[1]) {
		free(mid);
		return NULL;
	}
	*dot = '/';
	return mid;
}

/* Files of ours whose object is gone (removed while nobody led) are reconciled too. */
static void sweep_files(struct controller *c)
{
	DIR *d = opendir(c->ovdir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *n = de->d_name;
		char *key;
		if (n[0] == '.')
			continue;
		if ((key = file_key(n, "pod.", ".sched.json"))) {
			mark(&c->dirty_pods, key);
			free(key);
		} else if ((key = file_key(n, "endpointslice.", ".json")) ||
			   (key = file_key(n, "service.", ".json"))) {
			mark(&c->dirty_svcs, key);
			free(key);
		} else if (str_has_prefix(n, "node.") && str_has_suffix(n, ".json") &&
			   strlen(n) > strlen("node..json")) {
			char *name = strndup(n + 5, strlen(n) - 5 - 5);
			if (name)
				mark(&c->dirty_nodes, name);
			free(name);
		}
	}
	closedir(d);
}

static void full_pass(struct controller *c)
{
	smap_clear(&c->unscheduled, NULL);
	smap_clear(&c->svcs_by_ns, free_smap);
	/* Who holds what is rebuilt from the store and our files: events seen before the
	 * lead (or before this controller existed) need not have been complete. */
	smap_clear(&c->holders, free_smap);
	smap_clear(&c->svc_allocs, svc_alloc_free);
	smap_clear(&c->lb_svcs, NULL);
	memset(c->cip_hint, 0, sizeof(c->cip_hint));
	c->np_hint = 0;
	store_foreach(c->s, KIND_NODE, full_node, c);
	store_foreach(c->s, KIND_POD, full_pod, c);
	store_foreach(c->s, KIND_SERVICE, full_svc, c);
	sweep_files(c);
}

/* ---------------------------------------------------------------- podCIDRs */

struct interval {
	uint64_t a, b;
};

struct freelist {
	const struct ipprefix *cidr;
	unsigned len;
	uint64_t count;
	size_t n, cap, i;
	struct interval *iv;
	uint64_t next;
};

/* Bits [from, to) of an address as a number. */
static unsigned __int128 addr_bits(const struct ipaddr *a, unsigned from, unsigned to)
{
	unsigned __int128 v = 0;
	for (unsigned b = from; b < to; b++)
		v = v << 1 | ((a->b[b / 8] >> (7 - b % 8)) & 1);
	return v;
}

/* Record the node subnets of the free list's CIDR that `p` overlaps. */
static void freelist_use(struct freelist *f, const struct ipprefix *p)
{
	const struct ipprefix *c = f->cidr;
	if (p->addr.family != c->addr.family || !prefix_overlaps(p, c))
		return;
	struct interval iv;
	if (p->len <= c->len) {
		iv.a = 0;
		iv.b = f->count - 1;
	} else {
		struct ipprefix q = *p;
		prefix_normalize(&q);
		unsigned __int128 a = addr_bits(&q.addr, c->len, f->len);
		if (a >= f->count)
			return;
		unsigned __int128 span =
		    p->len >= f->len ? 1 : (unsigned __int128)1 << (f->len - p->len);
		unsigned __int128 b = a + span - 1;
		iv.a = (uint64_t)a;
		iv.b = b >= f->count ? f->count - 1 : (uint64_t)b;
	}
	if (f->n == f->cap) {
		f->cap = f->cap ? f->cap * 2 : 64;
		f->iv = xrealloc(f->iv, f->cap * sizeof(*f->iv));
	}
	f->iv[f->n++] = iv;
}

static int cmp_interval(const void *x, const void *y)
{
	const struct interval *a = x, *b = y;
	return a->a < b->a ? -1 : a->a > b->a ? 1 : 0;
}

/* Lowest free subnet index not below the previous answer; false when full.  The
 * intervals are walked once per sync however many nodes are allocated. */
static bool freelist_next(struct freelist *f, uint64_t *out)
{
	while (f->i < f->n && f->iv[f->i].a <= f->next) {
		if (f->iv[f->i].b + 1 > f->next)
			f->next = f->iv[f->i].b + 1;
		f->i++;
	}
	if (f->next >= f->count)
		return false;
	*out = f->next++;
	return true;
}

struct used_ctx {
	struct freelist *f;
	size_t nf;
};

static int used_node(const struct object *o, void *arg)
{
	struct used_ctx *u = arg;
	for (size_t k = 0; k < u->nf; k++)
		for (size_t i = 0; i < o->node.npod_cidrs && i < 2; i++)
			freelist_use(&u->f[k], &o->node.pod_cidrs[i]);
	return 0;
}

static int write_node_file(struct controller *c, const char *node, const struct alloc *a)
{
	struct json_object *spec = json_object_new_object();
	struct json_object *arr = json_object_new_array();
	char buf[IP_STRLEN];
	for (size_t i = 0; i < a->n; i++)
		json_object_array_add(arr, json_object_new_string(prefix_fmt(&a->p[i], buf)));
	json_object_object_add(spec, "podCIDR", json_object_new_string(prefix_fmt(&a->p[0], buf)));
	json_object_object_add(spec, "podCIDRs", arr);
	struct json_object *o = jobject("v1", "Node", jmeta(node, NULL));
	json_object_object_add(o, "spec", spec);
	char *path = node_file(c, node);
	int err = write_json(path, o);
	free(path);
	json_object_put(o);
	return err;
}

static bool alloc_eq(const struct alloc *a, const struct node_obj *n)
{
	if (a->n != n->npod_cidrs)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (!prefix_eq(&a->p[i], &n->pod_cidrs[i]))
			return false;
	return true;
}

struct pods_on_ctx {
	struct controller *c;
	const char *node;
};

static int resched_if_on(const struct object *o, void *arg)
{
	struct pods_on_ctx *x = arg;
	if (!o->pod.node_name || strcmp(o->pod.node_name, x->node))
		return 0;
	/* Only pods we placed: a user's own nodeName is not ours to change. */
	char *path = sched_file(x->c, o->meta.ns, o->meta.name);
	bool ours = !access(path, F_OK);
	free(path);
	if (ours) {
		char *key = pod_key(o);
		mark(&x->c->resched, key);
		mark(&x->c->dirty_pods, key);
		free(key);
	}
	return 0;
}

struct decl_order {
	char *name;
	const char *file;
	int line;
};

static int cmp_decl_order(const void *a, const void *b)
{
	const struct decl_order *x = a, *y = b;
	int r = strcmp(x->file ? x->file : "", y->file ? y->file : "");
	if (r)
		return r;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int sync_nodes(struct controller *c)
{
	int ret = 0;
	size_t nk;
	const char **keys = smap_keys(&c->dirty_nodes, &nk);
	char **need = xcalloc(nk + 1, sizeof(*need));
	size_t nneed = 0;
	char **done = xcalloc(nk + 1, sizeof(*done));
	size_t ndone = 0;

	for (size_t i = 0; i < nk; i++) {
		const char *name = keys[i];
		const struct object *n = store_get(c->s, KIND_NODE, NULL, name);
		struct alloc *a = smap_get(&c->allocs, name);
		if (!n) {
			char *path = node_file(c, name);
			int err = unlink_quiet(path);
			free(path);
			if (err) {
				ret = err;
				continue;
			}
			free(smap_del(&c->allocs, name));
			smap_del(&c->starved, name);
			struct pods_on_ctx x = {c, name};
			store_foreach(c->s, KIND_POD, resched_if_on, &x);
			done[ndone++] = xstrdup(name);
			continue;
		}
		if (n->node.npod_cidrs) {
			smap_del(&c->starved, name);
			if (a && !alloc_eq(a, &n->node)) {
				/* The manifest brought its own podCIDRs: ours is moot. */
				char *path = node_file(c, name);
				int err = unlink_quiet(path);
				free(path);
				if (err) {
					ret = err;
					continue;
				}
			}
			free(smap_del(&c->allocs, name));
			done[ndone++] = xstrdup(name);
			continue;
		}
		if (a) {
			/* Written earlier, not read back yet: make sure the file says so. */
			int err = write_node_file(c, name, a);
			if (err) {
				ret = err;
				continue;
			}
			done[ndone++] = xstrdup(name);
			continue;
		}
		need[nneed++] = xstrdup(name);
	}
	free(keys);

	if (nneed > 1) {
		/* Allocate in the order the Nodes were declared (file, then line), the way a
		 * cluster allocates in registration order: the lab's ctr, w1, w0 get .0, .1, .2
		 * as in seed 003, not an order the names happen to sort in. */
		struct decl_order *d = xcalloc(nneed, sizeof(*d));
		for (size_t i = 0; i < nneed; i++) {
			const struct object *n = store_get(c->s, KIND_NODE, NULL, need[i]);
			d[i] = (struct decl_order){need[i], n->meta.file, n->meta.line};
		}
		qsort(d, nneed, sizeof(*d), cmp_decl_order);
		for (size_t i = 0; i < nneed; i++)
			need[i] = d[i].name;
		free(d);
	}
	if (nneed) {
		struct freelist f[2];
		memset(f, 0, sizeof(f));
		for (size_t k = 0; k < c->ncidrs; k++) {
			f[k].cidr = &c->cidrs[k];
			f[k].len = c->lens[k];
			f[k].count = prefix_subnet_count(&c->cidrs[k], c->lens[k]);
		}
		struct used_ctx u = {f, c->ncidrs};
		store_foreach(c->s, KIND_NODE, used_node, &u);
		smap_foreach(&c->allocs, it)
		{
			const struct alloc *a = it->val;
			for (size_t k = 0; k < c->ncidrs; k++)
				for (size_t i = 0; i < a->n; i++)
					freelist_use(&f[k], &a->p[i]);
		}
		for (size_t k = 0; k < c->ncidrs; k++)
			if (f[k].n)
				qsort(f[k].iv, f[k].n, sizeof(*f[k].iv), cmp_interval);

		for (size_t i = 0; i < nneed; i++) {
			struct alloc a = {0};
			bool ok = true;
			for (size_t k = 0; k < c->ncidrs && ok; k++) {
				uint64_t idx;
				ok = freelist_next(&f[k], &idx) &&
				     !prefix_subnet(&c->cidrs[k], c->lens[k], idx, &a.p[a.n]);
				if (ok)
					a.n++;
			}
			if (!ok) {
				char buf[IP_STRLEN];
				if (!smap_has(&c->starved, need[i]))
					log_error("control",
						  "node %s: no free /%u left in cluster CIDR %s",
						  need[i], c->lens[a.n],
						  prefix_fmt(&c->cidrs[a.n], buf));
				mark(&c->starved, need[i]);
				done[ndone++] = xstrdup(need[i]);
				continue;
			}
			int err = write_node_file(c, need[i], &a);
			if (err) {
				ret = err;
				continue;
			}
			char buf[IP_STRLEN];
			log_info("control", "node %s: podCIDR %s", need[i],
				 prefix_fmt(&a.p[0], buf));
			struct alloc *na = xmalloc(sizeof(*na));
			*na = a;
			*smap_slot(&c->allocs, need[i], NULL) = na;
			smap_del(&c->starved, need[i]);
			done[ndone++] = xstrdup(need[i]);
		}
		for (size_t k = 0; k < c->ncidrs; k++)
			free(f[k].iv);
	}
	for (size_t i = 0; i < ndone; i++) {
		smap_del(&c->dirty_nodes, done[i]);
		free(done[i]);
	}
	for (size_t i = 0; i < nneed; i++)
		free(need[i]);
	free(need);
	free(done);
	return ret;
}

/* ---------------------------------------------------------------- scheduling */

static uint64_t owner_hash(const struct object *p)
{
	uint64_t h = fnv1a64(p->meta.ns ? p->meta.ns : "", p->meta.ns ? strlen(p->meta.ns) + 1 : 1,
			     FNV_SEED);
	for (size_t i = 0; i < p->meta.labels.n; i++) {
		const struct kv *kv = &p->meta.labels.kv[i];
		h = fnv1a64(kv->key, strlen(kv->key) + 1, h);
		h = fnv1a64(kv->value ? kv->value : "", kv->value ? strlen(kv->value) + 1 : 1, h);
	}
	return h;
}

struct sched_node {
	const char *name;
	size_t total;
};

struct sched_ctx {
	struct controller *c;
	size_t nnodes;
	struct sched_node *nodes; /* schedulable, by name */
	struct smap idx;	  /* node name -> index + 1 */
	struct smap group;	  /* "<owner hash>/<node>" -> count */
};

static int collect_node(const struct object *o, void *arg)
{
	struct sched_ctx *x = arg;
	if (o->node.unschedulable)
		return 0;
	x->nodes = xrealloc(x->nodes, (x->nnodes + 1) * sizeof(*x->nodes));
	x->nodes[x->nnodes] = (struct sched_node){.name = o->meta.name};
	*smap_slot(&x->idx, o->meta.name, NULL) = (void *)(uintptr_t)(x->nnodes + 1);
	x->nnodes++;
	return 0;
}

static void count_pod(struct sched_ctx *x, const struct object *p, const char *node)
{
	uintptr_t i = (uintptr_t)smap_get(&x->idx, node);
	if (!i)
		return;
	x->nodes[i - 1].total++;
	char *g = xasprintf("%016llx/%s", (unsigned long long)owner_hash(p), node);
	void **slot = smap_slot(&x->group, g, NULL);
	*slot = (void *)((uintptr_t)*slot + 1);
	free(g);
}

static int count_pods(const struct object *o, void *arg)
{
	struct sched_ctx *x = arg;
	const char *node = o->pod.node_name;
	char *key = pod_key(o);
	if (smap_has(&x->c->resched, key))
		node = NULL;
	if (!node)
		node = smap_get(&x->c->decisions, key);
	free(key);
	if (node)
		count_pod(x, o, node);
	return 0;
}

static int write_sched_file(struct controller *c, const struct object *p, const char *node)
{
	struct json_object *o = jobject("v1", "Pod", jmeta(p->meta.name, p->meta.ns));
	struct json_object *spec = json_object_new_object();
	json_object_object_add(spec, "nodeName", json_object_new_string(node));
	json_object_object_add(o, "spec", spec);
	char *path = sched_file(c, p->meta.ns, p->meta.name);
	int err = write_json(path, o);
	free(path);
	json_object_put(o);
	return err;
}

static int sync_pods(struct controller *c)
{
	int ret = 0;
	if (c->unsched_dirty) {
		smap_foreach(&c->unscheduled, it) mark(&c->dirty_pods, it->key);
		c->unsched_dirty = false;
	}
	size_t nk;
	const char **keys = smap_keys(&c->dirty_pods, &nk);
	char **need = xcalloc(nk + 1, sizeof(*need));
	size_t nneed = 0;
	char **done = xcalloc(nk + 1, sizeof(*done));
	size_t ndone = 0;

	for (size_t i = 0; i < nk; i++) {
		char *key = xstrdup(keys[i]);
		char *name = split_key(key);
		const char *ns = key;
		const struct object *p = store_get(c->s, KIND_POD, ns, name);
		bool resched = smap_has(&c->resched, keys[i]);
		if (!p) {
			char *path = sched_file(c, ns, name);
			int err = unlink_quiet(path);
			free(path);
			free(key);
			if (err) {
				ret = err;
				continue;
			}
			free(smap_del(&c->decisions, keys[i]));
			smap_del(&c->resched, keys[i]);
			done[ndone++] = xstrdup(keys[i]);
			continue;
		}
		free(key);
		const char *dec = smap_get(&c->decisions, keys[i]);
		if (p->pod.node_name && resched &&
		    !store_get(c->s, KIND_NODE, NULL, p->pod.node_name) &&
		    !(dec && strcmp(dec, p->pod.node_name))) {
			need[nneed++] = xstrdup(keys[i]);
			continue;
		}
		if (p->pod.node_name) {
			/* Placed (by us, read back, or by the user). */
			if (!resched || !dec || !strcmp(dec, p->pod.node_name)) {
				free(smap_del(&c->decisions, keys[i]));
				smap_del(&c->resched, keys[i]);
			}
			done[ndone++] = xstrdup(keys[i]);
			continue;
		}
		if (p->meta.deleting) {
			done[ndone++] = xstrdup(keys[i]);
			continue;
		}
		if (dec && store_get(c->s, KIND_NODE, NULL, dec)) {
			int err = write_sched_file(c, p, dec);
			if (err) {
				ret = err;
				continue;
			}
			done[ndone++] = xstrdup(keys[i]);
			continue;
		}
		need[nneed++] = xstrdup(keys[i]);
	}
	free(keys);

	if (nneed) {
		struct sched_ctx x = {.c = c};
		store_foreach(c->s, KIND_NODE, collect_node, &x);
		if (!x.nnodes) {
			log_warn("control", "%zu pods wait for a schedulable node", nneed);
			for (size_t i = 0; i < nneed; i++)
				done[ndone++] = xstrdup(need[i]);
		} else {
			store_foreach(c->s, KIND_POD, count_pods, &x);
		}
		for (size_t i = 0; i < nneed && x.nnodes; i++) {
			char *key = xstrdup(need[i]);
			char *name = split_key(key);
			const struct object *p = store_get(c->s, KIND_POD, key, name);
			free(key);
			char g[32];
			snprintf(g, sizeof(g), "%016llx/", (unsigned long long)owner_hash(p));
			size_t best = 0, best_g = SIZE_MAX, best_t = SIZE_MAX;
			for (size_t k = 0; k < x.nnodes; k++) {
				char *gk = xasprintf("%s%s", g, x.nodes[k].name);
				size_t gc = (uintptr_t)smap_get(&x.group, gk);
				free(gk);
				if (gc < best_g || (gc == best_g && x.nodes[k].total < best_t)) {
					best = k;
					best_g = gc;
					best_t = x.nodes[k].total;
				}
			}
			const char *node = x.nodes[best].name;
			int err = write_sched_file(c, p, node);
			if (err) {
				ret = err;
				continue;
			}
			log_info("control", "pod %s: scheduled to %s", need[i], node);
			void **slot = smap_slot(&c->decisions, need[i], NULL);
			free(*slot);
			*slot = xstrdup(node);
			count_pod(&x, p, node);
			done[ndone++] = xstrdup(need[i]);
		}
		free(x.nodes);
		smap_clear(&x.idx, NULL);
		smap_clear(&x.group, NULL);
	}
	for (size_t i = 0; i < ndone; i++) {
		smap_del(&c->dirty_pods, done[i]);
		free(done[i]);
	}
	for (size_t i = 0; i < nneed; i++)
		free(need[i]);
	free(need);
	free(done);
	return ret;
}

/* ---------------------------------------------------------------- Service allocations */

/* What the API server's allocators and MetalLB's controller would add to a Service.  The
 * overlay file holds exactly this; `svc_allocs` mirrors the file (as written, or as read
 * back when taking the lead), so what the effective Service shows can be told apart from
 * what its manifest says: a value equal to ours is ours, any other is the user's. */
struct np_alloc {
	char *name;
	enum proto proto;
	uint16_t port, node_port;
};

struct svc_alloc {
	size_t ncips;
	struct ipaddr cips[2];	      /* primary family first: they make spec.ipFamilies */
	enum ip_family_policy policy; /* written with the ClusterIPs */
	size_t nports;
	struct np_alloc *ports;
	uint16_t hc;
	size_t nlb;
	struct ipaddr lb[2];
};

static void svc_alloc_free(void *p)
{
	struct svc_alloc *a = p;
	if (!a)
		return;
	for (size_t i = 0; i < a->nports; i++)
		free(a->ports[i].name);
	free(a->ports);
	free(a);
}

static bool svc_alloc_empty(const struct svc_alloc *a)
{
	return !a->ncips && !a->nports && !a->hc && !a->nlb;
}

static bool svc_alloc_eq(const struct svc_alloc *a, const struct svc_alloc *b)
{
	if (a->ncips != b->ncips || a->nports != b->nports || a->hc != b->hc || a->nlb != b->nlb ||
	    (a->ncips && a->policy != b->policy))
		return false;
	for (size_t i = 0; i < a->ncips; i++)
		if (!ip_eq(&a->cips[i], &b->cips[i]))
			return false;
	for (size_t i = 0; i < a->nlb; i++)
		if (!ip_eq(&a->lb[i], &b->lb[i]))
			return false;
	for (size_t i = 0; i < a->nports; i++) {
		const struct np_alloc *x = &a->ports[i], *y = &b->ports[i];
		if (x->proto != y->proto || x->port != y->port || x->node_port != y->node_port ||
		    strcmp(x->name ? x->name : "", y->name ? y->name : ""))
			return false;
	}
	return true;
}

static void np_push(struct svc_alloc *a, const struct svc_port *sp, uint16_t node_port)
{
	a->ports = xrealloc(a->ports, (a->nports + 1) * sizeof(*a->ports));
	a->ports[a->nports++] = (struct np_alloc){.name = xstrdup(sp->name),
						  .proto = sp->proto,
						  .port = sp->port,
						  .node_port = node_port};
}

static const struct np_alloc *np_find(const struct svc_alloc *a, const struct svc_port *sp)
{
	for (size_t i = 0; a && i < a->nports; i++) {
		const struct np_alloc *p = &a->ports[i];
		if (p->proto == sp->proto && p->port == sp->port &&
		    !strcmp(p->name ? p->name : "", sp->name ? sp->name : ""))
			return p;
	}
	return NULL;
}

static bool ip_in(const struct ipaddr *v, size_t n, const struct ipaddr *a)
{
	for (size_t i = 0; i < n; i++)
		if (ip_eq(&v[i], a))
			return true;
	return false;
}

/* ---- resources and who holds them ----
 * A resource is "c/<ip>" (ClusterIP), "n/<port>" (nodePort or healthCheckNodePort: one
 * number space, whatever the protocol, as in Kubernetes) or "l/<ip>" (load-balancer
 * address).  `holders` maps each to the Services holding it (key -> count), from two
 * sources: every Service's effective object (kept current from store events) and our own
 * allocations (which may not have been read back yet). */

struct reslist {
	size_t n, cap;
	char **v;
};

static void res_push(struct reslist *l, char *r)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 8;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = r;
}

static void res_push_ip(struct reslist *l, char type, const struct ipaddr *ip)
{
	char buf[IP_STRLEN];
	res_push(l, xasprintf("%c/%s", type, ip_fmt(ip, buf)));
}

static void res_push_port(struct reslist *l, uint16_t port)
{
	res_push(l, xasprintf("n/%u", port));
}

static void res_free(struct reslist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort and drop duplicates: each Service holds a resource once per source. */
static void res_settle(struct reslist *l)
{
	if (l->n < 2)
		return;
	qsort(l->v, l->n, sizeof(*l->v), cmp_str);
	size_t w = 1;
	for (size_t i = 1; i < l->n; i++) {
		if (!strcmp(l->v[i], l->v[w - 1]))
			free(l->v[i]);
		else
			l->v[w++] = l->v[i];
	}
	l->n = w;
}

static bool has_node_ports(const struct service_obj *s)
{
	return s->type == SVC_NODE_PORT || s->type == SVC_LOAD_BALANCER;
}

static void obj_resources(const struct object *o, struct reslist *l)
{
	const struct service_obj *s = &o->svc;
	if (s->type == SVC_EXTERNAL_NAME)
		return;
	for (size_t i = 0; i < s->ncluster_ips && i < 2 && !s->headless; i++)
		res_push_ip(l, 'c', &s->cluster_ips[i]);
	if (has_node_ports(s)) {
		for (size_t i = 0; i < s->nports; i++)
			if (s->ports[i].node_port)
				res_push_port(l, s->ports[i].node_port);
		if (s->health_check_node_port)
			res_push_port(l, s->health_check_node_port);
	}
	if (s->type == SVC_LOAD_BALANCER)
		for (size_t i = 0; i < s->nlb_ips; i++)
			res_push_ip(l, 'l', &s->lb_ips[i]);
	res_settle(l);
}

static void alloc_resources(const struct svc_alloc *a, struct reslist *l)
{
	for (size_t i = 0; i < a->ncips; i++)
		res_push_ip(l, 'c', &a->cips[i]);
	for (size_t i = 0; i < a->nports; i++)
		res_push_port(l, a->ports[i].node_port);
	if (a->hc)
		res_push_port(l, a->hc);
	for (size_t i = 0; i < a->nlb; i++)
		res_push_ip(l, 'l', &a->lb[i]);
	res_settle(l);
}

static bool alloc_holds(const struct svc_alloc *a, const char *res)
{
	if (!a)
		return false;
	struct reslist l = {0};
	alloc_resources(a, &l);
	bool r = bsearch(&res, l.v, l.n, sizeof(*l.v), cmp_str) != NULL;
	res_free(&l);
	return r;
}

/* Marks made while sync_services walks its snapshot of dirty keys go to `redirty`, so
 * the walk's clean-up cannot drop them. */
static void mark_svc(struct controller *c, const char *key)
{
	mark(c->in_svc_sync ? &c->redirty_svcs : &c->dirty_svcs, key);
}

static void mark_other_holders(struct controller *c, struct smap *h, const char *key)
{
	if (!c->leader || !h)
		return;
	smap_foreach(h, it) if (strcmp(it->key, key)) mark_svc(c, it->key);
}

static void hold(struct controller *c, const char *res, const char *key)
{
	bool created;
	void **slot = smap_slot(&c->holders, res, &created);
	if (created)
		*slot = xcalloc(1, sizeof(struct smap));
	struct smap *h = *slot;
	void **cnt = smap_slot(h, key, &created);
	*cnt = (void *)((uintptr_t)*cnt + 1);
	if (created && h->n > 1)
		mark_other_holders(c, h, key); /* a conflict begins: the winner may change */
}

/* Index of the service CIDR of `family`, or -1 when the cluster has none. */
static int svc_cidr_of(const struct controller *c, int family)
{
	for (size_t i = 0; i < c->nsvc_cidrs; i++)
		if (c->svc_cidrs[i].addr.family == family)
			return (int)i;
	return -1;
}

static void release(struct controller *c, const char *res, const char *key)
{
	struct smap *h = smap_get(&c->holders, res);
	if (!h || !smap_has(h, key))
		return;
	void **cnt = smap_slot(h, key, NULL);
	uintptr_t n = (uintptr_t)*cnt;
	if (n > 1) {
		*cnt = (void *)(n - 1);
		return;
	}
	smap_del(h, key);
	if (h->n) {
		mark_other_holders(c, h, key); /* a conflict may have ended */
		return;
	}
	free_smap(smap_del(&c->holders, res));
	/* Free again: lower the search hints, and give waiting Services another try. */
	struct ipaddr ip;
	int k;
	if (res[0] == 'c' && !ip_parse(res + 2, &ip) && (k = svc_cidr_of(c, ip.family)) >= 0) {
		int64_t off = prefix_offset(&c->svc_cidrs[k], &ip);
		if (off >= 0 && (uint64_t)off < c->cip_hint[k])
			c->cip_hint[k] = (uint64_t)off;
	} else if (res[0] == 'n') {
		unsigned long p = strtoul(res + 2, NULL, 10);
		if (p < c->np_hint)
			c->np_hint = (unsigned)p;
	}
	if (c->leader)
		smap_foreach(&c->svc_errors, it) mark_svc(c, it->key);
}

static void hold_list(struct controller *c, const struct reslist *l, const char *key)
{
	for (size_t i = 0; i < l->n; i++)
		hold(c, l->v[i], key);
}

static void release_list(struct controller *c, const struct reslist *l, const char *key)
{
	for (size_t i = 0; i < l->n; i++)
		release(c, l->v[i], key);
}

static bool res_free_for_all(const struct controller *c, const char *res)
{
	return !smap_get(&c->holders, res);
}

/* A Service's effective object changed: update what it holds (the difference only, so an
 * unrelated change marks nobody). */
static void track_service_resources(struct controller *c, const char *key, const struct object *old,
				    const struct object *new_obj)
{
	struct reslist ro = {0}, rn = {0};
	if (old)
		obj_resources(old, &ro);
	if (new_obj)
		obj_resources(new_obj, &rn);
	size_t i = 0, k = 0;
	while (i < ro.n || k < rn.n) {
		int d = i == ro.n ? 1 : k == rn.n ? -1 : strcmp(ro.v[i], rn.v[k]);
		if (d < 0)
			release(c, ro.v[i++], key);
		else if (d > 0)
			hold(c, rn.v[k++], key);
		else
			i++, k++;
	}
	res_free(&ro);
	res_free(&rn);
	if (new_obj && new_obj->svc.type == SVC_LOAD_BALANCER)
		mark(&c->lb_svcs, key);
	else
		smap_del(&c->lb_svcs, key);
}

/* ---- errors ---- */

static int cmp_cstr(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void rebuild_errv(struct controller *c)
{
	free(c->errv);
	c->errv = xcalloc(c->svc_errors.n + 1, sizeof(*c->errv));
	size_t n = 0;
	smap_foreach(&c->svc_errors, it) c->errv[n++] = it->val;
	qsort(c->errv, n, sizeof(*c->errv), cmp_cstr);
}

/* msg: owned, NULL when the Service has no problem (any more). */
static void set_svc_error(struct controller *c, const char *key, char *msg)
{
	char *cur = smap_get(&c->svc_errors, key);
	if ((!cur && !msg) || (cur && msg && !strcmp(cur, msg))) {
		free(msg);
		return;
	}
	if (msg) {
		log_error("control", "%s", msg);
		free(cur);
		*smap_slot(&c->svc_errors, key, NULL) = msg;
	} else {
		log_info("control", "Service %s: allocation problem resolved", key);
		free(smap_del(&c->svc_errors, key));
	}
	rebuild_errv(c);
}

const char *const *controller_errors(const struct controller *c)
{
	static const char *const none[] = {NULL};
	return c->errv ? (const char *const *)c->errv : none;
}

struct errbuf {
	char *s;
};

static void errf(struct errbuf *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void errf(struct errbuf *e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *m = NULL;
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	if (!m)
		return;
	char *s = e->s ? xasprintf("%s; %s", e->s, m) : m;
	if (e->s) {
		free(e->s);
		free(m);
	}
	e->s = s;
}

/* ---- conflicts between manifests ---- */

static bool declared_before(const struct object *a, const char *akey, const struct object *b,
			    const char *bkey)
{
	int r = strcmp(a->meta.file ? a->meta.file : "", b->meta.file ? b->meta.file : "");
	if (r)
		return r < 0;
	if (a->meta.line != b->meta.line)
		return a->meta.line < b->meta.line;
	return strcmp(akey, bkey) < 0;
}

/* Another Service that holds `res` with a better claim than Service `key` (whose manifest
 * sets it), or NULL.  Our earlier allocations come first (the API server would have
 * refused the later claim), then the Service declared first. */
static const char *conflict_winner(const struct controller *c, const char *key,
				   const struct object *svc, const char *res)
{
	struct smap *h = smap_get(&c->holders, res);
	if (!h || (h->n == 1 && smap_has(h, key)))
		return NULL;
	if (alloc_holds(smap_get(&c->svc_allocs, key), res))
		return NULL;
	const char *best = NULL;
	smap_foreach(h, it)
	{
		if (!strcmp(it->key, key))
			continue;
		bool wins = alloc_holds(smap_get(&c->svc_allocs, it->key), res);
		if (!wins) {
			char *k = xstrdup(it->key);
			char *name = split_key(k);
			const struct object *o = store_get(c->s, KIND_SERVICE, k, name);
			wins = o && declared_before(o, it->key, svc, key);
			free(k);
		}
		if (wins && (!best || strcmp(it->key, best) < 0))
			best = it->key;
	}
	return best;
}

/* ---- allocators ---- */

/* Lowest free address of service CIDR `k`. */
static bool alloc_cluster_ip(struct controller *c, int k, struct ipaddr *out, struct reslist *tmp,
			     const char *key)
{
	const struct ipprefix *p = &c->svc_cidrs[k];
	uint64_t size = prefix_size(p);
	uint64_t end = p->addr.family == AF_INET && size > 4 ? size - 1 : size; /* broadcast */
	/* Offset 0 is the network address, 1 the `kubernetes` Service's address. */
	for (uint64_t off = c->cip_hint[k] > 2 ? c->cip_hint[k] : 2; off < end; off++) {
		struct ipaddr ip;
		if (prefix_host(p, off, &ip))
			break;
		char buf[IP_STRLEN];
		char *res = xasprintf("c/%s", ip_fmt(&ip, buf));
		if (res_free_for_all(c, res)) {
			hold(c, res, key);
			res_push(tmp, res);
			c->cip_hint[k] = off + 1;
			*out = ip;
			return true;
		}
		free(res);
	}
	c->cip_hint[k] = end;
	return false;
}

static uint16_t alloc_node_port(struct controller *c, struct reslist *tmp, const char *key)
{
	unsigned from = c->np_hint > c->np_min ? c->np_hint : c->np_min;
	for (unsigned p = from; p <= c->np_max; p++) {
		char *res = xasprintf("n/%u", p);
		if (res_free_for_all(c, res)) {
			hold(c, res, key);
			res_push(tmp, res);
			c->np_hint = p + 1;
			return (uint16_t)p;
		}
		free(res);
	}
	c->np_hint = c->np_max + 1u;
	return 0;
}

struct pools {
	size_t n;
	const struct object **v;
	const char *want; /* pool named by the annotation, or NULL */
};

static int collect_pool(const struct object *o, void *arg)
{
	struct pools *p = arg;
	if (p->want ? strcmp(o->meta.name, p->want) != 0 : !o->pool.auto_assign)
		return 0;
	p->v = xrealloc(p->v, (p->n + 1) * sizeof(*p->v));
	p->v[p->n++] = o;
	return 0;
}

struct any_pool {
	const struct ipaddr *ip;
	const char *want;
	bool found;
};

static int find_pool_of(const struct object *o, void *arg)
{
	struct any_pool *x = arg;
	if (x->want && strcmp(o->meta.name, x->want))
		return 0;
	for (size_t i = 0; i < o->pool.nranges; i++)
		if (prefix_contains(&o->pool.cidrs[i], x->ip)) {
			x->found = true;
			return 1;
		}
	return 0;
}

/* Is ip in a pool this Service may use?  any: every pool (an explicitly requested
 * address), else only auto-assigning ones unless the annotation names the pool. */
static bool ip_in_pools(const struct controller *c, const struct ipaddr *ip, const char *want,
			bool any)
{
	if (!want && !any) {
		struct pools p = {0};
		store_foreach(c->s, KIND_IPADDRESSPOOL, collect_pool, &p);
		bool found = false;
		for (size_t i = 0; i < p.n && !found; i++)
			for (size_t k = 0; k < p.v[i]->pool.nranges && !found; k++)
				found = prefix_contains(&p.v[i]->pool.cidrs[k], ip);
		free(p.v);
		return found;
	}
	struct any_pool x = {.ip = ip, .want = want};
	store_foreach(c->s, KIND_IPADDRESSPOOL, find_pool_of, &x);
	return x.found;
}

#define POOL_SCAN_MAX (1u << 20) /* addresses looked at per pool range */

/* First free address of `family` (0: any) in the Service's pools, as MetalLB assigns. */
static bool alloc_lb_ip(struct controller *c, const struct pools *p, int family, struct ipaddr *out,
			struct reslist *tmp, const char *key)
{
	for (size_t i = 0; i < p->n; i++) {
		const struct ippool_obj *pool = &p->v[i]->pool;
		for (size_t r = 0; r < pool->nranges; r++) {
			const struct ipprefix *cidr = &pool->cidrs[r];
			if (family && cidr->addr.family != family)
				continue;
			uint64_t size = prefix_size(cidr);
			for (uint64_t off = 0; off < size && off < POOL_SCAN_MAX; off++) {
				struct ipaddr ip;
				if (prefix_host(cidr, off, &ip))
					break;
				char buf[IP_STRLEN];
				char *res = xasprintf("l/%s", ip_fmt(&ip, buf));
				if (res_free_for_all(c, res)) {
					hold(c, res, key);
					res_push(tmp, res);
					*out = ip;
					return true;
				}
				free(res);
			}
		}
	}
	return false;
}

/* ---- one Service ---- */

static char *svc_file(const struct controller *c, const char *ns, const char *name)
{
	return xasprintf("%s/service.%s.%s.json", c->ovdir, ns, name);
}

static int write_svc_file(struct controller *c, const char *ns, const char *name,
			  const struct svc_alloc *a)
{
	char buf[IP_STRLEN];
	struct json_object *o = jobject("v1", "Service", jmeta(name, ns));
	struct json_object *spec = json_object_new_object();
	if (a->ncips) {
		json_object_object_add(spec, "clusterIP",
				       json_object_new_string(ip_fmt(&a->cips[0], buf)));
		struct json_object *arr = json_object_new_array();
		for (size_t i = 0; i < a->ncips; i++)
			json_object_array_add(arr,
					      json_object_new_string(ip_fmt(&a->cips[i], buf)));
		json_object_object_add(spec, "clusterIPs", arr);
		/* as the API server fills them in: the families of clusterIPs, in order */
		struct json_object *fams = json_object_new_array();
		for (size_t i = 0; i < a->ncips; i++)
			json_object_array_add(
			    fams, json_object_new_string(ip_family_name(a->cips[i].family)));
		json_object_object_add(spec, "ipFamilies", fams);
		json_object_object_add(spec, "ipFamilyPolicy",
				       json_object_new_string(ip_family_policy_name(a->policy)));
	}
	if (a->nports) {
		struct json_object *arr = json_object_new_array();
		for (size_t i = 0; i < a->nports; i++) {
			const struct np_alloc *p = &a->ports[i];
			struct json_object *pj = json_object_new_object();
			if (p->name && *p->name)
				json_object_object_add(pj, "name", json_object_new_string(p->name));
			json_object_object_add(pj, "protocol",
					       json_object_new_string(proto_name(p->proto)));
			json_object_object_add(pj, "port", json_object_new_int(p->port));
			json_object_object_add(pj, "nodePort", json_object_new_int(p->node_port));
			json_object_array_add(arr, pj);
		}
		json_object_object_add(spec, "ports", arr);
	}
	if (a->hc)
		json_object_object_add(spec, "healthCheckNodePort", json_object_new_int(a->hc));
	json_object_object_add(o, "spec", spec);
	if (a->nlb) {
		struct json_object *ing = json_object_new_array();
		for (size_t i = 0; i < a->nlb; i++) {
			struct json_object *e = json_object_new_object();
			json_object_object_add(e, "ip",
					       json_object_new_string(ip_fmt(&a->lb[i], buf)));
			json_object_array_add(ing, e);
		}
		struct json_object *lb = json_object_new_object();
		json_object_object_add(lb, "ingress", ing);
		struct json_object *st = json_object_new_object();
		json_object_object_add(st, "loadBalancer", lb);
		json_object_object_add(o, "status", st);
	}
	char *path = svc_file(c, ns, name);
	int err = write_json(path, o);
	free(path);
	json_object_put(o);
	return err;
}

static void lb_part(struct controller *c, const char *key, const struct object *svc,
		    const struct svc_alloc *a, struct svc_alloc *n, struct reslist *tmp,
		    struct errbuf *eb)
{
	const struct service_obj *s = &svc->svc;
	if (s->nlb_ips && !(a && a->nlb == s->nlb_ips && ip_in(a->lb, a->nlb, &s->lb_ips[0])))
		return; /* the manifest's own status */
	const char *want = labels_get(&svc->meta.annotations, CONTROL_ANN_ADDRESS_POOL);
	if (want && !*want)
		want = NULL;
	char buf[IP_STRLEN];
	bool had = a && a->nlb;
	/* Still in a pool this Service may use: ours stays (MetalLB revokes otherwise). */
	bool had_ok = had;
	for (size_t i = 0; had_ok && i < a->nlb; i++)
		had_ok = ip_in_pools(c, &a->lb[i], want, ip_is_set(&s->lb_ip_requested));
	if (ip_is_set(&s->lb_ip_requested)) {
		const struct ipaddr *rq = &s->lb_ip_requested;
		if (had_ok && a->nlb == 1 && ip_eq(&a->lb[0], rq)) {
			n->lb[n->nlb++] = a->lb[0];
			return;
		}
		char *res = xasprintf("l/%s", ip_fmt(rq, buf));
		const char *why = NULL;
		const char *other = NULL;
		if (!ip_in_pools(c, rq, want, true)) {
			why = "is in no IPAddressPool";
		} else if (!res_free_for_all(c, res)) {
			struct smap *h = smap_get(&c->holders, res);
			smap_foreach(h, it) if (strcmp(it->key, key)) other = it->key;
			why = other ? "is already used by Service" : NULL;
		}
		if (!why) {
			hold(c, res, key);
			res_push(tmp, res);
			n->lb[n->nlb++] = *rq;
			return;
		}
		if (want)
			errf(eb, "loadBalancerIP %s %s%s%s (pool %s)", ip_fmt(rq, buf), why,
			     other ? " " : "", other ? other : "", want);
		else
			errf(eb, "loadBalancerIP %s %s%s%s", ip_fmt(rq, buf), why, other ? " " : "",
			     other ? other : "");
		free(res);
		if (had_ok) /* the Service keeps what it had */
			for (size_t i = 0; i < a->nlb; i++)
				n->lb[n->nlb++] = a->lb[i];
		return;
	}
	if (had_ok) {
		for (size_t i = 0; i < a->nlb; i++)
			n->lb[n->nlb++] = a->lb[i];
		return;
	}
	struct pools p = {.want = want};
	store_foreach(c->s, KIND_IPADDRESSPOOL, collect_pool, &p);
	int fams[2] = {0, 0};
	size_t nf = 0;
	const struct ipaddr *cips = n->ncips ? n->cips : s->cluster_ips;
	size_t ncips = n->ncips ? n->ncips : s->ncluster_ips;
	for (size_t i = 0; i < ncips && i < 2; i++)
		fams[nf++] = cips[i].family;
	if (!nf)
		nf = 1; /* family 0: any */
	for (size_t i = 0; i < nf; i++) {
		struct ipaddr ip;
		if (alloc_lb_ip(c, &p, fams[i], &ip, tmp, key))
			n->lb[n->nlb++] = ip;
	}
	if (!n->nlb) {
		if (want && !p.n)
			errf(eb, "no IPAddressPool named %s", want);
		else if (!p.n)
			errf(eb, "no IPAddressPool with autoAssign to take a LoadBalancer address "
				 "from");
		else if (want)
			errf(eb, "no free address left in IPAddressPool %s", want);
		else
			errf(eb, "no free address left in the IPAddressPools with autoAssign");
	}
	free(p.v);
}

/* The families a Service without its own clusterIPs gets, primary first, as the API
 * server picks them: spec.ipFamilies, else the cluster's primary family; a dual-stack
 * policy adds the other family when the cluster has it.  0 families: an error in eb. */
static size_t want_families(const struct controller *c, const struct service_obj *s, int fams[2],
			    struct errbuf *eb)
{
	size_t n = 0;
	for (size_t i = 0; i < s->nip_families && i < 2; i++) {
		int f = s->ip_families[i];
		if (svc_cidr_of(c, f) >= 0) {
			fams[n++] = f;
		} else if (i == 0 || s->ip_family_policy != IPFP_PREFER_DUAL_STACK) {
			/* PreferDualStack alone may drop a secondary family the cluster lacks */
			errf(eb,
			     "ipFamilies[%zu] %s is not configured on this cluster (service CIDR "
			     "%s only)",
			     i, ip_family_name(f), ip_family_name(c->svc_cidrs[0].addr.family));
			return 0;
		}
	}
	if (!n)
		fams[n++] = c->svc_cidrs[0].addr.family;
	if (s->ip_family_policy == IPFP_REQUIRE_DUAL_STACK && c->nsvc_cidrs < 2) {
		errf(eb,
		     "ipFamilyPolicy RequireDualStack: this cluster is not configured for "
		     "dual-stack Services (service CIDR %s only)",
		     ip_family_name(c->svc_cidrs[0].addr.family));
		return 0;
	}
	if (s->ip_family_policy != IPFP_SINGLE_STACK && n == 1 && c->nsvc_cidrs == 2)
		fams[n++] = c->svc_cidrs[c->svc_cidrs[0].addr.family == fams[0]].addr.family;
	return n;
}

/* ClusterIPs of a Service whose manifest has none: one per wanted family from that
 * family's service CIDR, primary first; what we gave before is kept per family (a
 * policy turned SingleStack releases the secondary, as the API server does). */
static void cluster_ips_part(struct controller *c, const char *key, const struct service_obj *s,
			     const struct svc_alloc *a, struct svc_alloc *n, struct reslist *tmp,
			     struct errbuf *eb)
{
	int fams[2];
	size_t nf = want_families(c, s, fams, eb);
	if (!nf && a) { /* refused: the Service keeps what it had */
		memcpy(n->cips, a->cips, sizeof(n->cips));
		n->ncips = a->ncips;
		n->policy = a->policy;
		return;
	}
	n->policy = s->ip_family_policy;
	for (size_t i = 0; i < nf; i++) {
		const struct ipaddr *had = NULL;
		for (size_t k = 0; a && k < a->ncips && !had; k++)
			if (a->cips[k].family == fams[i])
				had = &a->cips[k];
		int k = svc_cidr_of(c, fams[i]);
		if (had) {
			n->cips[n->ncips++] = *had;
		} else if (alloc_cluster_ip(c, k, &n->cips[n->ncips], tmp, key)) {
			n->ncips++;
		} else {
			char buf[IP_STRLEN];
			errf(eb, "no free ClusterIP left in service CIDR %s",
			     prefix_fmt(&c->svc_cidrs[k], buf));
		}
	}
}

static void log_alloc(const char *key, const struct svc_alloc *a)
{
	char line[512], buf[IP_STRLEN];
	size_t len = 0;
#define ADD(...)                                                                                   \
	do {                                                                                       \
		int r_ = snprintf(line + len, sizeof(line) - len, __VA_ARGS__);                    \
		if (r_ > 0)                                                                        \
			len =                                                                      \
			    len + (size_t)r_ < sizeof(line) ? len + (size_t)r_ : sizeof(line) - 1; \
	} while (0)
	line[0] = 0;
	for (size_t i = 0; i < a->ncips; i++)
		ADD(" clusterIP %s", ip_fmt(&a->cips[i], buf));
	for (size_t i = 0; i < a->nports; i++)
		ADD(" nodePort %s/%u=%u", proto_name(a->ports[i].proto), a->ports[i].port,
		    a->ports[i].node_port);
	if (a->hc)
		ADD(" healthCheckNodePort %u", a->hc);
	for (size_t i = 0; i < a->nlb; i++)
		ADD(" loadBalancer %s", ip_fmt(&a->lb[i], buf));
#undef ADD
	log_info("control", "Service %s:%s", key, line);
}

/* Decide what our overlay for Service `key` holds, write it if that changed, and record
 * it.  0 or -errno (the Service then stays dirty). */
static int sync_alloc(struct controller *c, const char *key, const char *ns, const char *name,
		      const struct object *svc)
{
	struct svc_alloc *a = smap_get(&c->svc_allocs, key);
	struct svc_alloc *n = xcalloc(1, sizeof(*n));
	struct reslist tmp = {0};
	struct errbuf eb = {0};
	char buf[IP_STRLEN];
	const struct service_obj *s = svc ? &svc->svc : NULL;

	if (s && s->type != SVC_EXTERNAL_NAME && !s->headless) {
		/* ClusterIP: the manifest's own, or ours (the effective Service shows ours once
		 * read back: only an address we did not give is the user's) */
		bool own_cips = false;
		for (size_t i = 0; i < s->ncluster_ips && i < 2; i++)
			own_cips |= !(a && ip_in(a->cips, a->ncips, &s->cluster_ips[i]));
		if (own_cips) {
			n->policy = s->ip_family_policy;
			for (size_t i = 0; i < s->ncluster_ips && i < 2; i++) {
				const struct ipaddr *ip = &s->cluster_ips[i];
				if (a && ip_in(a->cips, a->ncips, ip)) {
					n->cips[n->ncips++] = *ip;
					continue;
				}
				char *res = xasprintf("c/%s", ip_fmt(ip, buf));
				const char *w = conflict_winner(c, key, svc, res);
				if (w)
					errf(&eb, "clusterIP %s is already used by Service %s", buf,
					     w);
				else if (svc_cidr_of(c, ip->family) < 0)
					errf(&eb,
					     "clusterIP %s: %s is not configured on this cluster",
					     buf, ip_family_name(ip->family));
				free(res);
			}
		} else {
			cluster_ips_part(c, key, s, a, n, &tmp, &eb);
		}

		/* nodePorts: for NodePort, and for LoadBalancer unless turned off */
		bool want_np = s->type == SVC_NODE_PORT ||
			       (s->type == SVC_LOAD_BALANCER && s->allocate_lb_node_ports);
		for (size_t i = 0; has_node_ports(s) && i < s->nports; i++) {
			const struct svc_port *sp = &s->ports[i];
			const struct np_alloc *pa = np_find(a, sp);
			if (sp->node_port) {
				if (pa && pa->node_port == sp->node_port) {
					np_push(n, sp, sp->node_port);
					continue;
				}
				char *res = xasprintf("n/%u", sp->node_port);
				const char *w = conflict_winner(c, key, svc, res);
				if (w)
					errf(&eb, "nodePort %u is already used by Service %s",
					     sp->node_port, w);
				free(res);
				continue;
			}
			if (!want_np)
				continue;
			if (pa && pa->node_port) {
				np_push(n, sp, pa->node_port);
				continue;
			}
			/* One port number over several protocols shares its nodePort, as the
			 * API server does it. */
			uint16_t np = 0;
			for (size_t k = 0; k < s->nports && !np; k++)
				if (k != i && s->ports[k].port == sp->port &&
				    s->ports[k].proto != sp->proto)
					np = s->ports[k].node_port;
			for (size_t k = 0; k < n->nports && !np; k++)
				if (n->ports[k].port == sp->port && n->ports[k].proto != sp->proto)
					np = n->ports[k].node_port;
			if (!np)
				np = alloc_node_port(c, &tmp, key);
			if (np)
				np_push(n, sp, np);
			else
				errf(&eb, "port %s/%u: no free nodePort left in %u-%u",
				     proto_name(sp->proto), sp->port, c->np_min, c->np_max);
		}

		/* healthCheckNodePort: type LoadBalancer with externalTrafficPolicy Local only,
		 * as the API server allocates it (not NodePort) */
		if (s->type == SVC_LOAD_BALANCER && s->etp_local) {
			if (s->health_check_node_port) {
				if (a && a->hc == s->health_check_node_port) {
					n->hc = a->hc;
				} else {
					char *res = xasprintf("n/%u", s->health_check_node_port);
					const char *w = conflict_winner(c, key, svc, res);
					if (w)
						errf(&eb,
						     "healthCheckNodePort %u is already used by "
						     "Service %s",
						     s->health_check_node_port, w);
					free(res);
				}
			} else if (a && a->hc) {
				n->hc = a->hc;
			} else if (!(n->hc = alloc_node_port(c, &tmp, key))) {
				errf(&eb, "no free healthCheckNodePort left in %u-%u", c->np_min,
				     c->np_max);
			}
		}

		if (s->type == SVC_LOAD_BALANCER)
			lb_part(c, key, svc, a, n, &tmp, &eb);
	}

	int err = 0;
	bool changed = !svc || (a ? !svc_alloc_eq(a, n) : !svc_alloc_empty(n));
	if (changed && svc_alloc_empty(n)) {
		char *path = svc_file(c, ns, name);
		err = unlink_quiet(path);
		free(path);
	} else if (changed) {
		err = write_svc_file(c, ns, name, n);
		if (!err)
			log_alloc(key, n);
	}
	if (err) {
		release_list(c, &tmp, key);
		res_free(&tmp);
		svc_alloc_free(n);
		free(eb.s);
		return err;
	}
	/* Hold what the new allocation holds before letting go of the old one, so what
	 * both have is never free in between. */
	struct reslist rn = {0}, ro = {0};
	alloc_resources(n, &rn);
	hold_list(c, &rn, key);
	release_list(c, &tmp, key);
	if (a) {
		alloc_resources(a, &ro);
		release_list(c, &ro, key);
	}
	res_free(&rn);
	res_free(&ro);
	res_free(&tmp);
	svc_alloc_free(smap_del(&c->svc_allocs, key));
	if (svc)
		*smap_slot(&c->svc_allocs, key, NULL) = n;
	else
		svc_alloc_free(n);
	set_svc_error(c, key, eb.s ? xasprintf("Service %s: %s", key, eb.s) : NULL);
	free(eb.s);
	return 0;
}

/* Taking the lead: what our overlay file holds (as the store read it) is ours. */
static int seed_cb(const struct object *o, void *arg)
{
	struct svc_alloc *a = arg;
	if (o->kind != KIND_SERVICE)
		return 0;
	const struct service_obj *s = &o->svc;
	for (size_t i = 0; i < s->ncluster_ips && i < 2; i++)
		a->cips[a->ncips++] = s->cluster_ips[i];
	a->policy = s->ip_family_policy;
	for (size_t i = 0; i < s->nports; i++)
		if (s->ports[i].node_port)
			np_push(a, &s->ports[i], s->ports[i].node_port);
	a->hc = s->health_check_node_port;
	for (size_t i = 0; i < s->nlb_ips && a->nlb < 2; i++)
		a->lb[a->nlb++] = s->lb_ips[i];
	return 1;
}

static void seed_alloc(struct controller *c, const struct object *svc, const char *key)
{
	const char *ns = svc->meta.ns ? svc->meta.ns : "default";
	char *origin = xasprintf("%s/service.%s.%s.json", SOURCE_OVERLAY_DIR, ns, svc->meta.name);
	struct svc_alloc *a = xcalloc(1, sizeof(*a));
	if (!store_origin_foreach(c->s, origin, seed_cb, a)) {
		svc_alloc_free(a);
	} else {
		struct reslist l = {0};
		alloc_resources(a, &l);
		hold_list(c, &l, key);
		res_free(&l);
		svc_alloc_free(smap_del(&c->svc_allocs, key));
		*smap_slot(&c->svc_allocs, key, NULL) = a;
	}
	free(origin);
}

/* Allocate for the dirty Services, in declaration order (the order a cluster would have
 * created them in), so the lab's addresses do not depend on names. */
static int sync_allocs(struct controller *c, const char **keys, size_t nk, bool *failed)
{
	int ret = 0;
	struct decl_order *d = xcalloc(nk + 1, sizeof(*d));
	for (size_t i = 0; i < nk; i++) {
		char *k = xstrdup(keys[i]);
		char *name = split_key(k);
		const struct object *svc = store_get(c->s, KIND_SERVICE, k, name);
		free(k);
		d[i] = (struct decl_order){(char *)keys[i], svc ? svc->meta.file : NULL,
					   svc ? svc->meta.line : 0};
	}
	qsort(d, nk, sizeof(*d), cmp_decl_order);
	for (size_t i = 0; i < nk; i++) {
		char *k = xstrdup(d[i].name);
		char *name = split_key(k);
		const struct object *svc = store_get(c->s, KIND_SERVICE, k, name);
		int err = sync_alloc(c, d[i].name, k, name, svc);
		free(k);
		if (err) {
			ret = err;
			/* find it in keys[] to report the failure */
			for (size_t j = 0; j < nk; j++)
				if (keys[j] == d[i].name)
					failed[j] = true;
		}
	}
	free(d);
	return ret;
}

/* ---------------------------------------------------------------- EndpointSlices */

struct podvec {
	size_t n, cap;
	const struct object **v;
};

/* Pods with an IP, indexed by "ns\x1fkey\x1fvalue" for each of their labels. */
static int index_pod(const struct object *o, void *arg)
{
	struct smap *idx = arg;
	if (!o->pod.nips)
		return 0;
	if (o->pod.phase && (!strcmp(o->pod.phase, "Succeeded") || !strcmp(o->pod.phase, "Failed")))
		return 0;
	for (size_t i = 0; i < o->meta.labels.n; i++) {
		const struct kv *kv = &o->meta.labels.kv[i];
		char *k = xasprintf("%s\x1f%s\x1f%s", o->meta.ns ? o->meta.ns : "", kv->key,
				    kv->value ? kv->value : "");
		bool created;
		void **slot = smap_slot(idx, k, &created);
		free(k);
		if (created)
			*slot = xcalloc(1, sizeof(struct podvec));
		struct podvec *v = *slot;
		if (v->n == v->cap) {
			v->cap = v->cap ? v->cap * 2 : 8;
			v->v = xrealloc(v->v, v->cap * sizeof(*v->v));
		}
		v->v[v->n++] = o;
	}
	return 0;
}

static void free_podvec(void *p)
{
	struct podvec *v = p;
	free(v->v);
	free(v);
}

struct rport {
	const char *name;
	enum proto proto;
	uint16_t port;
	const char *app_protocol;
};

struct ep {
	const struct object *pod;
	const struct ipaddr *ip;
};

struct group {
	int family;
	size_t nports;
	struct rport ports[16];
	char *key;
	size_t n, cap;
	struct ep *eps;
};

static uint16_t resolve_port(const struct object *pod, const struct svc_port *sp)
{
	if (!sp->target_port_name)
		return sp->target_port ? sp->target_port : sp->port;
	for (size_t i = 0; i < pod->pod.nports; i++) {
		const struct container_port *cp = &pod->pod.ports[i];
		if (cp->name && !strcmp(cp->name, sp->target_port_name) && cp->proto == sp->proto)
			return cp->port;
	}
	return 0; /* the pod has no such port: it serves this Service without it */
}

static char *group_key(int family, const struct rport *p, size_t n)
{
	size_t cap = 64, len = 0;
	char *k = xmalloc(cap);
	len = (size_t)snprintf(k, cap, "%s", family == AF_INET6 ? "IPv6" : "IPv4");
	for (size_t i = 0; i < n; i++) {
		char *part =
		    xasprintf("|%s/%s/%u/%s", p[i].name ? p[i].name : "", proto_name(p[i].proto),
			      p[i].port, p[i].app_protocol ? p[i].app_protocol : "");
		size_t pl = strlen(part);
		if (len + pl + 1 > cap) {
			cap = (len + pl + 1) * 2;
			k = xrealloc(k, cap);
		}
		memcpy(k + len, part, pl + 1);
		len += pl;
		free(part);
	}
	return k;
}

static struct json_object *slice_json(const struct object *svc, const char *name, int family,
				      const struct rport *ports, size_t nports,
				      const struct ep *eps, size_t neps)
{
	const char *ns = svc->meta.ns ? svc->meta.ns : "default";
	struct json_object *meta = jmeta(name, ns);
	struct json_object *labels = json_object_new_object();
	json_object_object_add(labels, LABEL_SERVICE_NAME, json_object_new_string(svc->meta.name));
	json_object_object_add(labels, LABEL_MANAGED_BY,
			       json_object_new_string(CONTROL_MANAGED_BY));
	json_object_object_add(meta, "labels", labels);
	struct json_object *o = jobject("discovery.k8s.io/v1", "EndpointSlice", meta);
	json_object_object_add(o, "addressType",
			       json_object_new_string(family == AF_INET6 ? "IPv6" : "IPv4"));
	struct json_object *jeps = json_object_new_array();
	for (size_t i = 0; i < neps; i++) {
		const struct object *p = eps[i].pod;
		char buf[IP_STRLEN];
		struct json_object *e = json_object_new_object();
		struct json_object *addrs = json_object_new_array();
		json_object_array_add(addrs, json_object_new_string(ip_fmt(eps[i].ip, buf)));
		json_object_object_add(e, "addresses", addrs);
		bool serving = p->pod.ready;
		bool terminating = p->meta.deleting;
		bool ready = svc->svc.publish_not_ready || (serving && !terminating);
		struct json_object *cond = json_object_new_object();
		json_object_object_add(cond, "ready", json_object_new_boolean(ready));
		json_object_object_add(cond, "serving", json_object_new_boolean(serving));
		json_object_object_add(cond, "terminating", json_object_new_boolean(terminating));
		json_object_object_add(e, "conditions", cond);
		if (p->pod.node_name)
			json_object_object_add(e, "nodeName",
					       json_object_new_string(p->pod.node_name));
		struct json_object *ref = json_object_new_object();
		json_object_object_add(ref, "kind", json_object_new_string("Pod"));
		json_object_object_add(ref, "namespace", json_object_new_string(ns));
		json_object_object_add(ref, "name", json_object_new_string(p->meta.name));
		if (p->meta.uid)
			json_object_object_add(ref, "uid", json_object_new_string(p->meta.uid));
		json_object_object_add(e, "targetRef", ref);
		json_object_array_add(jeps, e);
	}
	json_object_object_add(o, "endpoints", jeps);
	struct json_object *jports = json_object_new_array();
	for (size_t i = 0; i < nports; i++) {
		struct json_object *pj = json_object_new_object();
		json_object_object_add(pj, "name",
				       json_object_new_string(ports[i].name ? ports[i].name : ""));
		json_object_object_add(pj, "protocol",
				       json_object_new_string(proto_name(ports[i].proto)));
		json_object_object_add(pj, "port", json_object_new_int(ports[i].port));
		if (ports[i].app_protocol)
			json_object_object_add(pj, "appProtocol",
					       json_object_new_string(ports[i].app_protocol));
		json_object_array_add(jports, pj);
	}
	json_object_object_add(o, "ports", jports);
	return o;
}

static int cmp_group(const void *x, const void *y)
{
	return strcmp(((const struct group *)x)->key, ((const struct group *)y)->key);
}

static int sync_service(struct controller *c, const struct object *svc, struct smap *idx)
{
	const char *ns = svc->meta.ns ? svc->meta.ns : "default";
	const struct selector *sel = &svc->svc.selector;
	/* The narrowest label's pods are the candidates. */
	const struct podvec *cand = NULL;
	for (size_t i = 0; i < sel->match_labels.n; i++) {
		const struct kv *kv = &sel->match_labels.kv[i];
		char *k = xasprintf("%s\x1f%s\x1f%s", ns, kv->key, kv->value ? kv->value : "");
		const struct podvec *v = smap_get(idx, k);
		free(k);
		if (!v) {
			cand = NULL;
			break;
		}
		if (!cand || v->n < cand->n)
			cand = v;
	}

	int fams[2] = {0, 0};
	size_t nfams = 0;
	for (size_t i = 0; i < svc->svc.ncluster_ips && nfams < 2; i++)
		if (!nfams || fams[0] != svc->svc.cluster_ips[i].family)
			fams[nfams++] = svc->svc.cluster_ips[i].family;
	if (!nfams) { /* headless, or no clusterIP given: whatever the pods have */
		fams[0] = AF_INET;
		fams[1] = AF_INET6;
		nfams = 2;
	}

	size_t ngroups = 0;
	struct group *groups = NULL;
	size_t nsp = svc->svc.nports > 16 ? 16 : svc->svc.nports;
	for (size_t i = 0; cand && i < cand->n; i++) {
		const struct object *p = cand->v[i];
		if (!selector_matches(sel, &p->meta.labels))
			continue;
		for (size_t f = 0; f < nfams; f++) {
			const struct ipaddr *ip = NULL;
			for (size_t k = 0; k < p->pod.nips && k < 2; k++)
				if (p->pod.ips[k].family == fams[f]) {
					ip = &p->pod.ips[k];
					break;
				}
			if (!ip)
				continue;
			struct rport rp[16];
			size_t nrp = 0;
			for (size_t k = 0; k < nsp; k++) {
				const struct svc_port *sp = &svc->svc.ports[k];
				uint16_t port = resolve_port(p, sp);
				if (!port)
					continue;
				rp[nrp++] = (struct rport){.name = sp->name,
							   .proto = sp->proto,
							   .port = port,
							   .app_protocol = sp->app_protocol};
			}
			char *key = group_key(fams[f], rp, nrp);
			struct group *g = NULL;
			for (size_t k = 0; k < ngroups; k++)
				if (!strcmp(groups[k].key, key)) {
					g = &groups[k];
					break;
				}
			if (g) {
				free(key);
			} else {
				groups = xrealloc(groups, (ngroups + 1) * sizeof(*groups));
				g = &groups[ngroups++];
				memset(g, 0, sizeof(*g));
				g->family = fams[f];
				g->key = key;
				g->nports = nrp;
				memcpy(g->ports, rp, nrp * sizeof(rp[0]));
			}
			if (g->n == g->cap) {
				g->cap = g->cap ? g->cap * 2 : 8;
				g->eps = xrealloc(g->eps, g->cap * sizeof(*g->eps));
			}
			g->eps[g->n++] = (struct ep){.pod = p, .ip = ip};
		}
	}
	if (ngroups > 1)
		qsort(groups, ngroups, sizeof(*groups), cmp_group);

	struct json_object *list = json_object_new_object();
	json_object_object_add(list, "apiVersion", json_object_new_string("v1"));
	json_object_object_add(list, "kind", json_object_new_string("List"));
	struct json_object *items = json_object_new_array();
	for (size_t gi = 0; gi < ngroups; gi++) {
		struct group *g = &groups[gi];
		uint64_t h = fnv1a64(g->key, strlen(g->key), FNV_SEED);
		for (size_t off = 0, chunk = 0; off < g->n;
		     off += MAX_ENDPOINTS_PER_SLICE, chunk++) {
			size_t cnt = g->n - off < MAX_ENDPOINTS_PER_SLICE ? g->n - off
									  : MAX_ENDPOINTS_PER_SLICE;
			char *name = chunk ? xasprintf("%s-%05llx-%zu", svc->meta.name,
						       (unsigned long long)(h & 0xfffff), chunk)
					   : xasprintf("%s-%05llx", svc->meta.name,
						       (unsigned long long)(h & 0xfffff));
			json_object_array_add(items, slice_json(svc, name, g->family, g->ports,
								g->nports, g->eps + off, cnt));
			free(name);
		}
	}
	if (!ngroups) {
		/* Like the EndpointSlice controller's placeholder: "selected, none ready". */
		int fam = svc->svc.ncluster_ips ? fams[0] : AF_INET;
		char *key = group_key(fam, NULL, 0);
		uint64_t h = fnv1a64(key, strlen(key), FNV_SEED);
		free(key);
		char *name =
		    xasprintf("%s-%05llx", svc->meta.name, (unsigned long long)(h & 0xfffff));
		json_object_array_add(items, slice_json(svc, name, fam, NULL, 0, NULL, 0));
		free(name);
	}
	json_object_object_add(list, "items", items);
	char *path = slice_file(c, ns, svc->meta.name);
	int err = write_json(path, list);
	free(path);
	json_object_put(list);
	for (size_t gi = 0; gi < ngroups; gi++) {
		free(groups[gi].key);
		free(groups[gi].eps);
	}
	free(groups);
	return err;
}

static int sync_services(struct controller *c)
{
	int ret = 0;
	size_t nk;
	const char **keys = smap_keys(&c->dirty_svcs, &nk);
	if (!nk) {
		free(keys);
		return 0;
	}
	struct smap idx = SMAP_INIT;
	bool indexed = false;
	char **done = xcalloc(nk + 1, sizeof(*done));
	size_t ndone = 0;
	bool *failed = xcalloc(nk + 1, sizeof(*failed));
	c->in_svc_sync = true;
	ret = sync_allocs(c, keys, nk, failed);
	for (size_t i = 0; i < nk; i++) {
		if (failed[i])
			continue;
		char *key = xstrdup(keys[i]);
		char *name = split_key(key);
		const struct object *svc = store_get(c->s, KIND_SERVICE, key, name);
		int err;
		if (!svc_selects(svc)) {
			char *path = slice_file(c, key, name);
			err = unlink_quiet(path);
			free(path);
		} else {
			if (!indexed) {
				store_foreach(c->s, KIND_POD, index_pod, &idx);
				indexed = true;
			}
			err = sync_service(c, svc, &idx);
		}
		free(key);
		if (err)
			ret = err;
		else
			done[ndone++] = xstrdup(keys[i]);
	}
	free(keys);
	free(failed);
	smap_clear(&idx, free_podvec);
	for (size_t i = 0; i < ndone; i++) {
		smap_del(&c->dirty_svcs, done[i]);
		free(done[i]);
	}
	free(done);
	c->in_svc_sync = false;
	smap_foreach(&c->redirty_svcs, it) mark(&c->dirty_svcs, it->key);
	smap_clear(&c->redirty_svcs, NULL);
	return ret;
}

/* ---------------------------------------------------------------- sync */

int controller_sync(struct controller *c)
{
	if (!c->leader)
		return 0;
	if (c->full) {
		full_pass(c);
		c->full = false;
	}
	int r1 = sync_nodes(c);
	int r2 = sync_pods(c);
	int r3 = sync_services(c);
	return r1 ? r1 : r2 ? r2 : r3;
}
