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
			free(*slot);
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
	case KIND_SERVICE:
		track_service(c, o, ev != STORE_REMOVED);
		if (!c->leader)
			return;
		{
			char *key = pod_key(o);
			mark(&c->dirty_svcs, key);
			free(key);
		}
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
	store_subscribe(s, KIND_BIT(KIND_NODE) | KIND_BIT(KIND_POD) | KIND_BIT(KIND_SERVICE),
			on_event, c);
	return c;
}

static void free_smap(void *p)
{
	struct smap *m = p;
	smap_clear(m, NULL);
	free(m);
}

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

static int full_svc(const struct object *o, void *arg)
{
	struct controller *c = arg;
	track_service(c, o, true);
	char *key = pod_key(o);
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
		} else if ((key = file_key(n, "endpointslice.", ".json"))) {
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
	for (size_t i = 0; i < nk; i++) {
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
	smap_clear(&idx, free_podvec);
	for (size_t i = 0; i < ndone; i++) {
		smap_del(&c->dirty_svcs, done[i]);
		free(done[i]);
	}
	free(done);
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
