/* store: typed cluster state, per-origin diffing and change events (see store.h).
 *
 * Objects live in one hash map per kind, keyed by "namespace\x1fname"; each entry holds
 * every contribution to that identity: the base definitions in arrival order (the first
 * is in force, the rest are conflicts kept aside so that removing the winner promotes
 * the next one instead of leaving a hole) and the overlays, sorted by origin name so the
 * merged result does not depend on load order.  The effective object is the base itself
 * when no overlay applies, otherwise a clone with the overlay fields merged in and a hash
 * that covers them, so "equal hash" keeps meaning "no effective change".
 *
 * A replacement first updates every touched entry, then emits the events (removals
 * first), and only then frees the objects that went away: subscribers see a consistent
 * store and may keep using `old` for the length of the call.  store_foreach walks a
 * per-kind sorted index that is rebuilt lazily after membership changes. */
#include "store/store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/util.h"

/* ---------------------------------------------------------------- smap */

static uint64_t smap_hash(const char *key)
{
	return fnv1a64(key, strlen(key), FNV_SEED);
}

void *smap_get(const struct smap *m, const char *key)
{
	if (!m->nbuckets)
		return NULL;
	uint64_t h = smap_hash(key);
	for (struct smap_node *n = m->b[h & (m->nbuckets - 1)]; n; n = n->next)
		if (n->hash == h && !strcmp(n->key, key))
			return n->val;
	return NULL;
}

static void smap_grow(struct smap *m)
{
	size_t nb = m->nbuckets ? m->nbuckets * 2 : 4; /* many maps stay small */
	struct smap_node **b = xcalloc(nb, sizeof(*b));
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct smap_node *n = m->b[i], *next;
		for (; n; n = next) {
			next = n->next;
			n->next = b[n->hash & (nb - 1)];
			b[n->hash & (nb - 1)] = n;
		}
	}
	free(m->b);
	m->b = b;
	m->nbuckets = nb;
}

void **smap_slot(struct smap *m, const char *key, bool *created)
{
	uint64_t h = smap_hash(key);
	if (m->nbuckets) {
		for (struct smap_node *n = m->b[h & (m->nbuckets - 1)]; n; n = n->next)
			if (n->hash == h && !strcmp(n->key, key)) {
				if (created)
					*created = false;
				return &n->val;
			}
	}
	if (m->n + 1 > m->nbuckets)
		smap_grow(m);
	size_t klen = strlen(key) + 1;
	struct smap_node *n = xmalloc(sizeof(*n) + klen);
	n->val = NULL;
	n->hash = h;
	memcpy(n->key, key, klen);
	n->next = m->b[h & (m->nbuckets - 1)];
	m->b[h & (m->nbuckets - 1)] = n;
	m->n++;
	if (created)
		*created = true;
	return &n->val;
}

void smap_add(struct smap *m, const char *key)
{
	void **slot = smap_slot(m, key, NULL);
	if (!*slot)
		*slot = (void *)1;
}

bool smap_has(const struct smap *m, const char *key)
{
	if (!m->nbuckets)
		return false;
	uint64_t h = smap_hash(key);
	for (struct smap_node *n = m->b[h & (m->nbuckets - 1)]; n; n = n->next)
		if (n->hash == h && !strcmp(n->key, key))
			return true;
	return false;
}

void *smap_del(struct smap *m, const char *key)
{
	if (!m->nbuckets)
		return NULL;
	uint64_t h = smap_hash(key);
	for (struct smap_node **pp = &m->b[h & (m->nbuckets - 1)]; *pp; pp = &(*pp)->next) {
		struct smap_node *n = *pp;
		if (n->hash == h && !strcmp(n->key, key)) {
			void *val = n->val;
			*pp = n->next;
			free(n);
			m->n--;
			return val;
		}
	}
	return NULL;
}

void smap_clear(struct smap *m, void (*free_val)(void *))
{
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct smap_node *n = m->b[i], *next;
		for (; n; n = next) {
			next = n->next;
			if (free_val)
				free_val(n->val);
			free(n);
		}
	}
	free(m->b);
	m->b = NULL;
	m->n = m->nbuckets = 0;
}

static int cmp_strp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char **smap_keys(const struct smap *m, size_t *n)
{
	const char **v = xcalloc(m->n + 1, sizeof(*v));
	size_t k = 0;
	smap_foreach(m, it) v[k++] = it->key;
	qsort(v, k, sizeof(*v), cmp_strp);
	*n = k;
	return v;
}

/* ---------------------------------------------------------------- store */

struct origin;

struct contrib {
	struct origin *origin;
	struct object *obj;
	unsigned gen; /* replacement that last set it */
};

struct entry {
	enum kind kind;
	char *key; /* "ns\x1fname" */
	size_t nbases, capbases;
	struct contrib *bases; /* [0] is in force */
	size_t novls, capovls;
	struct contrib *ovls; /* sorted by origin name */
	struct object *eff;   /* NULL while no base defines it */
	bool eff_owned;	      /* eff is a merged clone */
	unsigned touch_gen;
};

struct origin {
	char *name;
	bool overlay;
	size_t n, cap;
	struct entry **ents; /* one per contributed object, in the origin's order */
};

struct sub {
	unsigned kinds;
	store_cb cb;
	void *arg;
};

struct touched {
	struct entry *e;
	struct object *old;
	bool old_owned;
};

struct kindidx {
	struct smap map; /* key -> struct entry */
	size_t count;	 /* entries with an effective object */
	bool dirty;
	size_t n;
	struct entry **sorted;
};

struct store {
	struct kindidx k[KIND__COUNT];
	struct smap origins;
	size_t nsubs;
	struct sub *subs;
	unsigned gen;
	bool busy;
	/* scratch of one replacement */
	size_t ntouched, captouched;
	struct touched *touched;
	struct objlist garbage;
};

const char *store_event_name(enum store_event ev)
{
	switch (ev) {
	case STORE_ADDED:
		return "ADDED";
	case STORE_UPDATED:
		return "UPDATED";
	case STORE_REMOVED:
		return "REMOVED";
	}
	return "?";
}

struct store *store_new(void)
{
	return xcalloc(1, sizeof(struct store));
}

static void entry_free(void *p)
{
	struct entry *e = p;
	if (!e)
		return;
	/* Objects belong to their origins' contributions: free each exactly once here. */
	for (size_t i = 0; i < e->nbases; i++)
		object_free(e->bases[i].obj);
	for (size_t i = 0; i < e->novls; i++)
		object_free(e->ovls[i].obj);
	if (e->eff_owned)
		object_free(e->eff);
	free(e->bases);
	free(e->ovls);
	free(e->key);
	free(e);
}

static void origin_free(void *p)
{
	struct origin *o = p;
	if (!o)
		return;
	free(o->ents);
	free(o->name);
	free(o);
}

void store_free(struct store *s)
{
	if (!s)
		return;
	for (int k = 0; k < KIND__COUNT; k++) {
		smap_clear(&s->k[k].map, entry_free);
		free(s->k[k].sorted);
	}
	smap_clear(&s->origins, origin_free);
	free(s->subs);
	free(s->touched);
	objlist_free(&s->garbage);
	free(s);
}

void store_subscribe(struct store *s, unsigned kinds, store_cb cb, void *arg)
{
	s->subs = xrealloc(s->subs, (s->nsubs + 1) * sizeof(*s->subs));
	s->subs[s->nsubs++] = (struct sub){.kinds = kinds, .cb = cb, .arg = arg};
}

void store_unsubscribe(struct store *s, store_cb cb, void *arg)
{
	size_t w = 0;
	for (size_t i = 0; i < s->nsubs; i++)
		if (s->subs[i].cb != cb || s->subs[i].arg != arg)
			s->subs[w++] = s->subs[i];
	s->nsubs = w;
}

static char *entry_key(const char *ns, const char *name)
{
	return xasprintf("%s\x1f%s", ns ? ns : "", name ? name : "");
}

static struct entry *entry_lookup(const struct store *s, enum kind k, const char *ns,
				  const char *name)
{
	if ((unsigned)k >= KIND__COUNT)
		return NULL;
	char buf[512];
	int len = snprintf(buf, sizeof(buf), "%s\x1f%s", ns ? ns : "", name ? name : "");
	if (len >= 0 && (size_t)len < sizeof(buf))
		return smap_get(&s->k[k].map, buf);
	char *key = entry_key(ns, name);
	struct entry *e = smap_get(&s->k[k].map, key);
	free(key);
	return e;
}

static struct entry *entry_get_or_create(struct store *s, const struct object *o)
{
	char *key = entry_key(o->meta.ns, o->meta.name);
	bool created;
	void **slot = smap_slot(&s->k[o->kind].map, key, &created);
	if (created) {
		struct entry *e = xcalloc(1, sizeof(*e));
		e->kind = o->kind;
		e->key = key;
		*slot = e;
	} else {
		free(key);
	}
	return *slot;
}

static void touch(struct store *s, struct entry *e)
{
	if (e->touch_gen == s->gen)
		return;
	e->touch_gen = s->gen;
	if (s->ntouched == s->captouched) {
		s->captouched = s->captouched ? s->captouched * 2 : 16;
		s->touched = xrealloc(s->touched, s->captouched * sizeof(*s->touched));
	}
	s->touched[s->ntouched++] =
	    (struct touched){.e = e, .old = e->eff, .old_owned = e->eff_owned};
	/* From here on the old effective object belongs to the touched record. */
	e->eff_owned = false;
}

static struct contrib *find_contrib(struct contrib *v, size_t n, const struct origin *o)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].origin == o)
			return &v[i];
	return NULL;
}

static void add_base(struct entry *e, struct contrib c)
{
	if (e->nbases == e->capbases) {
		e->capbases = e->capbases ? e->capbases * 2 : 2;
		e->bases = xrealloc(e->bases, e->capbases * sizeof(*e->bases));
	}
	e->bases[e->nbases++] = c;
}

static void add_overlay(struct entry *e, struct contrib c)
{
	if (e->novls == e->capovls) {
		e->capovls = e->capovls ? e->capovls * 2 : 2;
		e->ovls = xrealloc(e->ovls, e->capovls * sizeof(*e->ovls));
	}
	size_t i = e->novls;
	while (i > 0 && strcmp(e->ovls[i - 1].origin->name, c.origin->name) > 0) {
		e->ovls[i] = e->ovls[i - 1];
		i--;
	}
	e->ovls[i] = c;
	e->novls++;
}

/* Drop contributions of `o` not renewed by replacement `gen`. */
static void drop_stale(struct store *s, struct contrib *v, size_t *n, const struct origin *o,
		       unsigned gen)
{
	size_t w = 0;
	for (size_t i = 0; i < *n; i++) {
		if (v[i].origin == o && v[i].gen != gen)
			objlist_push(&s->garbage, v[i].obj);
		else
			v[w++] = v[i];
	}
	*n = w;
}

static bool is_overlay_kind(enum kind k)
{
	return k == KIND_NODE || k == KIND_POD || k == KIND_SERVICE;
}

static void report(diag_fn diag, void *arg, const struct object *o, const char *origin,
		   const char *msg)
{
	char id[512];
	object_id(o, id, sizeof(id));
	struct diag d = {
	    .file = o->meta.file ? o->meta.file : origin,
	    .line = o->meta.line,
	    .object = id,
	    .field = NULL,
	    .msg = msg,
	};
	if (diag) {
		diag(&d, arg);
	} else {
		char buf[1024];
		log_warn("store", "%s", diag_fmt(&d, buf, sizeof(buf)));
	}
}

/* ---- overlay merge ---- */

static void labels_add(struct labels *l, const char *key, const char *value)
{
	size_t i = 0;
	while (i < l->n && strcmp(l->kv[i].key, key) < 0)
		i++;
	l->kv = xrealloc(l->kv, (l->n + 1) * sizeof(*l->kv));
	memmove(&l->kv[i + 1], &l->kv[i], (l->n - i) * sizeof(*l->kv));
	l->kv[i].key = xstrdup(key);
	l->kv[i].value = xstrdup(value);
	l->n++;
}

static bool merge_node(struct object *dst, const struct object *ov)
{
	bool applied = false;
	if (!dst->node.npod_cidrs && ov->node.npod_cidrs) {
		size_t n = ov->node.npod_cidrs;
		if (n > ARRAY_SIZE(dst->node.pod_cidrs))
			n = ARRAY_SIZE(dst->node.pod_cidrs);
		memcpy(dst->node.pod_cidrs, ov->node.pod_cidrs, n * sizeof(dst->node.pod_cidrs[0]));
		dst->node.npod_cidrs = n;
		applied = true;
	}
	for (size_t i = 0; i < ov->meta.annotations.n; i++) {
		const struct kv *kv = &ov->meta.annotations.kv[i];
		if (labels_get(&dst->meta.annotations, kv->key))
			continue; /* the user's own value stands */
		labels_add(&dst->meta.annotations, kv->key, kv->value ? kv->value : "");
		applied = true;
	}
	return applied;
}

static bool merge_pod(struct object *dst, const struct object *ov)
{
	bool applied = false;
	struct pod_obj *d = &dst->pod;
	const struct pod_obj *p = &ov->pod;
	if (!d->node_name && p->node_name) {
		d->node_name = xstrdup(p->node_name);
		applied = true;
	}
	/* Status comes from the node's runtime: it overrides whatever a manifest says. */
	if (p->nips) {
		size_t n = p->nips > ARRAY_SIZE(d->ips) ? ARRAY_SIZE(d->ips) : p->nips;
		memcpy(d->ips, p->ips, n * sizeof(d->ips[0]));
		d->nips = n;
		applied = true;
	}
	if (p->phase) {
		free(d->phase);
		d->phase = xstrdup(p->phase);
		applied = true;
	}
	if (p->has_ready) {
		d->has_ready = true;
		d->ready = p->ready;
		applied = true;
	}
	return applied;
}

static bool str_eq_null(const char *a, const char *b)
{
	return !strcmp(a ? a : "", b ? b : "");
}

/* What the API server's allocators add to a Service (clusterIPs, nodePorts,
 * healthCheckNodePort) and the load-balancer controller's status.loadBalancer.ingress:
 * each only where the manifest leaves it unset, so a user's own value always stands. */
static bool merge_service(struct object *dst, const struct object *ov)
{
	bool applied = false;
	struct service_obj *d = &dst->svc;
	const struct service_obj *v = &ov->svc;
	if (d->type == SVC_EXTERNAL_NAME)
		return false;
	if (!d->ncluster_ips && !d->headless && v->ncluster_ips) {
		size_t n = v->ncluster_ips > ARRAY_SIZE(d->cluster_ips) ? ARRAY_SIZE(d->cluster_ips)
									: v->ncluster_ips;
		memcpy(d->cluster_ips, v->cluster_ips, n * sizeof(d->cluster_ips[0]));
		d->ncluster_ips = n;
		applied = true;
	}
	if (d->type == SVC_NODE_PORT || d->type == SVC_LOAD_BALANCER) {
		for (size_t i = 0; i < d->nports; i++) {
			struct svc_port *dp = &d->ports[i];
			if (dp->node_port)
				continue;
			for (size_t k = 0; k < v->nports; k++) {
				const struct svc_port *vp = &v->ports[k];
				if (vp->node_port && vp->proto == dp->proto &&
				    vp->port == dp->port && str_eq_null(vp->name, dp->name)) {
					dp->node_port = vp->node_port;
					applied = true;
					break;
				}
			}
		}
		if (d->etp_local && !d->health_check_node_port && v->health_check_node_port) {
			d->health_check_node_port = v->health_check_node_port;
			applied = true;
		}
	}
	if (d->type == SVC_LOAD_BALANCER && !d->nlb_ips && v->nlb_ips) {
		free(d->lb_ips);
		d->lb_ips = xcalloc(v->nlb_ips, sizeof(*d->lb_ips));
		memcpy(d->lb_ips, v->lb_ips, v->nlb_ips * sizeof(*d->lb_ips));
		d->nlb_ips = v->nlb_ips;
		applied = true;
	}
	return applied;
}

/* The effective object of an entry; sets *owned when it is a merged clone. */
static struct object *compute_eff(struct entry *e, bool *owned)
{
	*owned = false;
	if (!e->nbases)
		return NULL;
	struct object *base = e->bases[0].obj;
	if (!e->novls)
		return base;
	struct object *c = object_clone(base);
	bool applied = false;
	for (size_t i = 0; i < e->novls; i++) {
		const struct object *ov = e->ovls[i].obj;
		if (e->kind == KIND_NODE)
			applied |= merge_node(c, ov);
		else if (e->kind == KIND_POD)
			applied |= merge_pod(c, ov);
		else if (e->kind == KIND_SERVICE)
			applied |= merge_service(c, ov);
	}
	if (!applied) {
		object_free(c);
		return base;
	}
	/* The hash covers the merged content, so overlay changes are changes. */
	c->hash = object_hash(c);
	*owned = true;
	return c;
}

static void emit(struct store *s, enum store_event ev, enum kind k, const struct object *old,
		 const struct object *new_obj)
{
	for (size_t i = 0; i < s->nsubs; i++)
		if (s->subs[i].kinds & KIND_BIT(k))
			s->subs[i].cb(s->subs[i].arg, ev, old, new_obj);
}

static void origin_push(struct origin *o, struct entry *e)
{
	if (o->n == o->cap) {
		o->cap = o->cap ? o->cap * 2 : 8;
		o->ents = xrealloc(o->ents, o->cap * sizeof(*o->ents));
	}
	o->ents[o->n++] = e;
}

int store_replace_origin(struct store *s, const char *origin, bool overlay, struct objlist *objs,
			 diag_fn diag, void *arg)
{
	int rejected = 0;
	if (s->busy) {
		log_error("store", "%s: replaced from inside a store callback; ignored", origin);
		objlist_free(objs);
		return 0;
	}
	struct origin *o = smap_get(&s->origins, origin);
	if (!o) {
		if (!objs->n) {
			objlist_free(objs);
			return 0;
		}
		o = xcalloc(1, sizeof(*o));
		o->name = xstrdup(origin);
		*smap_slot(&s->origins, origin, NULL) = o;
	}
	unsigned gen = ++s->gen;
	if (!gen)
		gen = ++s->gen; /* 0 is "never touched" */
	s->ntouched = 0;
	size_t nold = o->n;
	struct entry **old = o->ents;
	o->ents = NULL;
	o->n = o->cap = 0;
	o->overlay = overlay;

	for (size_t i = 0; i < objs->n; i++) {
		struct object *obj = objs->v[i];
		objs->v[i] = NULL;
		if (!obj)
			continue;
		if ((unsigned)obj->kind >= KIND__COUNT || !obj->meta.name) {
			objlist_push(&s->garbage, obj);
			continue;
		}
		struct entry *e = entry_get_or_create(s, obj);
		touch(s, e);
		bool ovl = overlay && is_overlay_kind(obj->kind);
		struct contrib *c =
		    ovl ? find_contrib(e->ovls, e->novls, o) : find_contrib(e->bases, e->nbases, o);
		if (c && c->gen == gen) {
			report(diag, arg, obj, origin,
			       "defined more than once in this file; this definition is ignored");
			objlist_push(&s->garbage, obj);
			rejected++;
			continue;
		}
		if (c) {
			objlist_push(&s->garbage, c->obj);
			c->obj = obj;
			c->gen = gen;
		} else if (ovl) {
			add_overlay(e, (struct contrib){.origin = o, .obj = obj, .gen = gen});
		} else {
			add_base(e, (struct contrib){.origin = o, .obj = obj, .gen = gen});
		}
		origin_push(o, e);
		if (!ovl && e->bases[0].origin != o) {
			const struct object *w = e->bases[0].obj;
			char *msg = xasprintf(
			    "also defined in %s (line %d), which wins; this "
			    "definition is ignored",
			    w->meta.file ? w->meta.file : e->bases[0].origin->name, w->meta.line);
			report(diag, arg, obj, origin, msg);
			free(msg);
			rejected++;
		}
	}
	objs->n = 0;

	for (size_t i = 0; i < nold; i++) {
		struct entry *e = old[i];
		touch(s, e);
		drop_stale(s, e->bases, &e->nbases, o, gen);
		drop_stale(s, e->ovls, &e->novls, o, gen);
	}
	free(old);
	if (!o->n) {
		smap_del(&s->origins, origin);
		origin_free(o);
	}

	/* Settle every touched entry before anyone hears about it. */
	for (size_t i = 0; i < s->ntouched; i++) {
		struct touched *t = &s->touched[i];
		struct entry *e = t->e;
		e->eff = compute_eff(e, &e->eff_owned);
		struct kindidx *ki = &s->k[e->kind];
		if (!t->old != !e->eff) {
			ki->dirty = true;
			if (e->eff)
				ki->count++;
			else
				ki->count--;
		}
	}

	s->busy = true;
	for (size_t i = 0; i < s->ntouched; i++) {
		struct touched *t = &s->touched[i];
		if (t->old && !t->e->eff)
			emit(s, STORE_REMOVED, t->e->kind, t->old, NULL);
	}
	for (size_t i = 0; i < s->ntouched; i++) {
		struct touched *t = &s->touched[i];
		struct object *n = t->e->eff;
		if (!t->old && n)
			emit(s, STORE_ADDED, t->e->kind, NULL, n);
		else if (t->old && n && t->old->hash != n->hash)
			emit(s, STORE_UPDATED, t->e->kind, t->old, n);
	}
	s->busy = false;

	for (size_t i = 0; i < s->ntouched; i++) {
		struct touched *t = &s->touched[i];
		struct entry *e = t->e;
		if (t->old_owned)
			object_free(t->old);
		if (!e->nbases && !e->novls) {
			smap_del(&s->k[e->kind].map, e->key);
			entry_free(e);
		}
	}
	s->ntouched = 0;
	objlist_free(&s->garbage);
	return rejected;
}

void store_remove_origin(struct store *s, const char *origin)
{
	struct objlist empty = {0};
	store_replace_origin(s, origin, false, &empty, NULL, NULL);
}

int store_origin_foreach(const struct store *s, const char *origin,
			 int (*fn)(const struct object *o, void *arg), void *arg)
{
	const struct origin *o = smap_get(&s->origins, origin);
	if (!o)
		return 0;
	for (size_t i = 0; i < o->n; i++) {
		struct entry *e = o->ents[i];
		struct contrib *c = find_contrib(e->bases, e->nbases, o);
		if (!c)
			c = find_contrib(e->ovls, e->novls, o);
		if (!c)
			continue;
		int r = fn(c->obj, arg);
		if (r)
			return r;
	}
	return 0;
}

const struct object *store_get(const struct store *s, enum kind k, const char *ns, const char *name)
{
	const struct entry *e = entry_lookup(s, k, ns, name);
	return e ? e->eff : NULL;
}

size_t store_count(const struct store *s, enum kind k)
{
	return (unsigned)k < KIND__COUNT ? s->k[k].count : 0;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct entry *x = *(struct entry *const *)a, *y = *(struct entry *const *)b;
	/* Keys are "ns\x1fname"; the separator sorts below every character a name may hold,
	 * so byte order is (namespace, name) order. */
	return strcmp(x->key, y->key);
}

int store_foreach(const struct store *cs, enum kind k, int (*fn)(const struct object *o, void *arg),
		  void *arg)
{
	if ((unsigned)k >= KIND__COUNT)
		return 0;
	/* The sorted index is a cache: rebuilding it does not change the store's content. */
	struct kindidx *ki = (struct kindidx *)&cs->k[k];
	if (ki->dirty || ki->n != ki->count) {
		free(ki->sorted);
		ki->sorted = xcalloc(ki->count + 1, sizeof(*ki->sorted));
		size_t n = 0;
		smap_foreach(&ki->map, it)
		{
			struct entry *e = it->val;
			if (e->eff && n < ki->count)
				ki->sorted[n++] = e;
		}
		qsort(ki->sorted, n, sizeof(*ki->sorted), cmp_entry);
		ki->n = n;
		ki->dirty = false;
	}
	for (size_t i = 0; i < ki->n; i++) {
		int r = fn(ki->sorted[i]->eff, arg);
		if (r)
			return r;
	}
	return 0;
}
