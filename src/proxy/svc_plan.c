/* svc_plan: the Service planner (see svc_plan.h for the semantics, which follow kube-proxy's
 * pkg/proxy/topology.go for endpoint selection and the Service API for the entry types).
 *
 * State: per Service its last entries and error; an index Service -> its EndpointSlices'
 * names (so a slice event finds its Service and a Service finds its slices without scanning
 * the store); the owner of every (VIP, protocol, port) key, so two Services cannot both claim
 * one, and who waits for a key that is taken, so it is replanned when the key is freed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lib/log.h"
#include "lib/util.h"
#include "proxy/svc_plan.h"

#define SUB "svc"
#define MAX_ROUNDS 64 /* bound on replanning chains caused by freed keys */

static const char *const scope_names[] = {"ClusterIP", "NodePort", "ExternalIP", "LoadBalancer"};
static const char *const verdict_names[] = {"forward", "reject", "drop"};

const char *svc_scope_name(enum svc_scope s)
{
	return (unsigned)s < ARRAY_SIZE(scope_names) ? scope_names[s] : "?";
}

const char *svc_verdict_name(enum svc_verdict v)
{
	return (unsigned)v < ARRAY_SIZE(verdict_names) ? verdict_names[v] : "?";
}

/* ---- entries ---- */

static void entry_free(struct svc_entry *e)
{
	free(e->backends); /* their node names are interned (str_intern) */
	free(e->group);
}

void svc_entries_free(struct svc_entries *e)
{
	for (size_t i = 0; i < e->n; i++)
		entry_free(&e->v[i]);
	free(e->v);
	memset(e, 0, sizeof(*e));
}

int svc_entry_key_cmp(const struct svc_entry *a, const struct svc_entry *b)
{
	int c = ip_cmp(&a->vip, &b->vip);
	if (c)
		return c;
	if (a->proto != b->proto)
		return a->proto < b->proto ? -1 : 1;
	return (a->port > b->port) - (a->port < b->port);
}

static bool str_eq0(const char *a, const char *b)
{
	return (!a || !b) ? a == b : !strcmp(a, b);
}

static bool backend_equal(const struct svc_backend *a, const struct svc_backend *b)
{
	return ip_eq(&a->ip, &b->ip) && a->port == b->port && a->ready == b->ready &&
	       a->serving == b->serving && a->terminating == b->terminating &&
	       a->local == b->local && a->weight == b->weight && str_eq0(a->node, b->node);
}

static bool entry_equal(const struct svc_entry *a, const struct svc_entry *b)
{
	if (svc_entry_key_cmp(a, b) || a->scope != b->scope || !str_eq0(a->group, b->group) ||
	    a->masquerade != b->masquerade || a->verdict != b->verdict ||
	    a->affinity_timeout != b->affinity_timeout || a->sched != b->sched ||
	    a->nbackends != b->nbackends)
		return false;
	for (size_t i = 0; i < a->nbackends; i++)
		if (!backend_equal(&a->backends[i], &b->backends[i]))
			return false;
	return true;
}

bool svc_entries_equal(const struct svc_entries *a, const struct svc_entries *b)
{
	size_t na = a ? a->n : 0, nb = b ? b->n : 0;
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (!entry_equal(&a->v[i], &b->v[i]))
			return false;
	return true;
}

static const char *proto_lc(enum proto p)
{
	return p == PROTO_TCP ? "tcp" : p == PROTO_UDP ? "udp" : "sctp";
}

const char *svc_entry_key_fmt(const struct svc_entry *e, char *buf, size_t size)
{
	char ip[IP_STRLEN];
	if (e->vip.family == AF_INET6)
		snprintf(buf, size, "[%s]:%u/%s", ip_fmt(&e->vip, ip), e->port,
			 proto_name(e->proto));
	else
		snprintf(buf, size, "%s:%u/%s", ip_fmt(&e->vip, ip), e->port, proto_name(e->proto));
	return buf;
}

const char *svc_entry_fmt(const struct svc_entry *e, char *buf, size_t size)
{
	char key[IP_STRLEN + 16], ip[IP_STRLEN];
	size_t off = 0;
	int n = snprintf(buf, size, "%s %s %s %s%s", svc_entry_key_fmt(e, key, sizeof(key)),
			 svc_scope_name(e->scope), svc_verdict_name(e->verdict), e->group,
			 e->masquerade ? " masq" : "");
	if (n < 0 || (size_t)n >= size)
		return buf;
	off = (size_t)n;
	if (e->sched != SVC_SCHED_RANDOM) {
		n = snprintf(buf + off, size - off, " sched=%s", svc_sched_name(e->sched));
		if (n < 0 || (size_t)n >= size - off)
			return buf;
		off += (size_t)n;
	}
	if (e->affinity_timeout) {
		n = snprintf(buf + off, size - off, " affinity=%u", e->affinity_timeout);
		if (n < 0 || (size_t)n >= size - off)
			return buf;
		off += (size_t)n;
	}
	for (size_t i = 0; i < e->nbackends; i++) {
		const struct svc_backend *b = &e->backends[i];
		n = snprintf(buf + off, size - off, " %s:%u%s%s", ip_fmt(&b->ip, ip), b->port,
			     b->ready	      ? ""
			     : b->terminating ? "(terminating)"
					      : "(notready)",
			     b->local ? "(local)" : "");
		if (n < 0 || (size_t)n >= size - off)
			return buf;
		off += (size_t)n;
	}
	return buf;
}

/* ---- planning one Service (pure) ---- */

struct cand {
	size_t n, cap;
	struct svc_backend *v;
};

static int backend_cmp(const void *x, const void *y)
{
	const struct svc_backend *a = x, *b = y;
	int c = ip_cmp(&a->ip, &b->ip);
	return c ? c : (a->port > b->port) - (a->port < b->port);
}

static bool port_name_eq(const char *a, const char *b)
{
	return !strcmp(a ? a : "", b ? b : "");
}

/* Every endpoint address of `family` in the slices that carries Service port sp. */
static void collect(const struct object *svc, const struct svc_port *sp, int family,
		    const struct object *const *slices, size_t nslices, const char *node,
		    struct cand *out)
{
	for (size_t s = 0; s < nslices; s++) {
		const struct object *o = slices[s];
		if (!o || o->kind != KIND_ENDPOINTSLICE || !o->eps.service ||
		    strcmp(o->eps.service, svc->meta.name) || !str_eq0(o->meta.ns, svc->meta.ns) ||
		    o->eps.address_type != family)
			continue;
		const struct ep_port *port = NULL;
		for (size_t p = 0; p < o->eps.nports; p++)
			if (port_name_eq(o->eps.ports[p].name, sp->name) &&
			    o->eps.ports[p].proto == sp->proto && o->eps.ports[p].port) {
				port = &o->eps.ports[p];
				break;
			}
		if (!port)
			continue;
		for (size_t e = 0; e < o->eps.nendpoints; e++) {
			const struct endpoint *ep = &o->eps.endpoints[e];
			for (size_t a = 0; a < ep->naddrs; a++) {
				if (ep->addrs[a].family != family)
					continue;
				if (out->n == out->cap) {
					out->cap = out->cap ? 2 * out->cap : 8;
					out->v = xrealloc(out->v, out->cap * sizeof(*out->v));
				}
				struct svc_backend *b = &out->v[out->n++];
				memset(b, 0, sizeof(*b));
				b->ip = ep->addrs[a];
				b->port = port->port;
				b->ready = ep->ready;
				b->serving = ep->serving;
				b->terminating = ep->terminating;
				b->node = ep->node_name; /* borrowed until copied into an entry */
				b->local = node && ep->node_name && !strcmp(node, ep->node_name);
			}
		}
	}
	if (out->n > 1) {
		qsort(out->v, out->n, sizeof(*out->v), backend_cmp);
		/* one address in two slices: keep the first (slices are in name order) */
		size_t w = 1;
		for (size_t r = 1; r < out->n; r++)
			if (backend_cmp(&out->v[r], &out->v[w - 1]))
				out->v[w++] = out->v[r];
		out->n = w;
	}
}

/* kube-proxy's selection: ready endpoints; if none, serving-and-terminating ones. */
static void select_backends(const struct cand *c, bool local_only, struct cand *out)
{
	out->n = 0;
	for (int pass = 0; pass < 2 && !out->n; pass++)
		for (size_t i = 0; i < c->n; i++) {
			const struct svc_backend *b = &c->v[i];
			if (local_only && !b->local)
				continue;
			if (pass == 0 ? !b->ready : !(b->serving && b->terminating))
				continue;
			if (out->n == out->cap) {
				out->cap = out->cap ? 2 * out->cap : 8;
				out->v = xrealloc(out->v, out->cap * sizeof(*out->v));
			}
			out->v[out->n++] = *b;
		}
}

static void add_entry(struct svc_entries *out, const struct ipaddr *vip, enum proto proto,
		      uint16_t port, enum svc_scope scope, const char *group, bool local, bool masq,
		      const struct cand *any, const struct cand *sel, uint32_t aff,
		      const struct svc_lb *lb)
{
	if (out->n == out->cap) {
		out->cap = out->cap ? 2 * out->cap : 2;
		out->v = xrealloc(out->v, out->cap * sizeof(*out->v));
	}
	struct svc_entry *e = &out->v[out->n++];
	memset(e, 0, sizeof(*e));
	e->vip = *vip;
	e->proto = proto;
	e->port = port;
	e->scope = scope;
	e->group = local ? xasprintf("%s/local", group) : xstrdup(group);
	e->masquerade = masq;
	e->affinity_timeout = aff;
	e->sched = lb->sched;
	if (sel->n) {
		e->verdict = SVC_FORWARD;
		e->nbackends = sel->n;
		e->backends = xcalloc(sel->n, sizeof(*e->backends));
		for (size_t i = 0; i < sel->n; i++) {
			e->backends[i] = sel->v[i];
			e->backends[i].node = str_intern(sel->v[i].node); /* kept once */
			e->backends[i].weight = 1;
			for (size_t k = 0; k < lb->nweights; k++)
				if (ip_eq(&lb->weights[k].ip, &sel->v[i].ip))
					e->backends[i].weight = lb->weights[k].weight;
		}
	} else {
		/* kube-proxy: no usable endpoint anywhere rejects; usable endpoints elsewhere
		 * under a Local policy drops (the client should try another node).  Endpoints
		 * that are neither ready nor serving-and-terminating count as none. */
		e->verdict = (local && any->n) ? SVC_DROP : SVC_REJECT;
	}
}

const char *svc_sched_name(enum svc_sched s)
{
	static const char *const names[] = {"random", "rr", "sh", "dh"};
	return (unsigned)s < ARRAY_SIZE(names) ? names[s] : "?";
}

/* "10.0.0.5=3, 10.0.0.6=1" */
static int parse_weights(const char *v, struct svc_lb *lb, char *err, size_t errsize)
{
	char *copy = xstrdup(v), *save = NULL;
	int r = 0;
	for (char *tok = strtok_r(copy, ",", &save); tok && !r; tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		char *eq = strchr(tok, '=');
		char *end = NULL;
		struct ipaddr ip;
		long wt = eq ? strtol(eq + 1, &end, 10) : 0;
		if (eq)
			*eq = '\0';
		if (!eq || ip_parse(tok, &ip) < 0 || end == eq + 1 || (*end && *end != ' ') ||
		    wt < 1 || wt > SVC_WEIGHT_MAX) {
			if (err)
				snprintf(err, errsize,
					 "annotation %s: '%s%s%s' is not ADDRESS=WEIGHT with a weight "
					 "of 1 to %d",
					 SVC_ANN_WEIGHTS, tok, eq ? "=" : "", eq ? eq + 1 : "",
					 SVC_WEIGHT_MAX);
			r = -EINVAL;
			break;
		}
		lb->weights = xrealloc(lb->weights, (lb->nweights + 1) * sizeof(*lb->weights));
		lb->weights[lb->nweights++] = (struct svc_weight){ip, (uint16_t)wt};
	}
	free(copy);
	return r;
}

int svc_lb_config(const struct object *svc, struct svc_lb *lb, char *err, size_t errsize)
{
	memset(lb, 0, sizeof(*lb));
	const char *sched = labels_get(&svc->meta.annotations, SVC_ANN_SCHEDULER);
	const char *weights = labels_get(&svc->meta.annotations, SVC_ANN_WEIGHTS);
	int r = 0;
	if (sched) {
		static const struct {
			const char *name;
			enum svc_sched s;
		} known[] = {{"random", SVC_SCHED_RANDOM}, {"rr", SVC_SCHED_RR},
			     {"wrr", SVC_SCHED_RR},	   {"sh", SVC_SCHED_SH},
			     {"dh", SVC_SCHED_DH}};
		r = -EINVAL;
		for (size_t i = 0; i < ARRAY_SIZE(known) && r; i++)
			if (!strcmp(sched, known[i].name)) {
				lb->sched = known[i].s;
				r = 0;
			}
		if (r && err)
			snprintf(err, errsize,
				 "annotation %s: unknown scheduler '%s' (random, rr, wrr, sh, dh)",
				 SVC_ANN_SCHEDULER, sched);
	}
	if (!r && weights)
		r = parse_weights(weights, lb, err, errsize);
	if (r) { /* all or nothing */
		free(lb->weights);
		memset(lb, 0, sizeof(*lb));
	}
	return r;
}

static int entry_cmp_q(const void *a, const void *b)
{
	return svc_entry_key_cmp(a, b);
}

int svc_plan_service(const struct object *svc, const struct object *const *slices, size_t nslices,
		     const struct svc_plan_in *in, struct svc_entries *out)
{
	svc_entries_free(out);
	if (!svc || svc->kind != KIND_SERVICE)
		return -EINVAL;
	const struct service_obj *s = &svc->svc;
	if (s->type == SVC_EXTERNAL_NAME || s->headless)
		return 0;
	uint32_t aff =
	    s->affinity_client_ip ? (s->affinity_timeout ? s->affinity_timeout : 10800) : 0;
	struct svc_lb lb;
	svc_lb_config(svc, &lb, NULL, 0); /* invalid annotations: the defaults (see replan) */
	struct cand all = {0}, cl = {0}, lo = {0};
	for (size_t p = 0; p < s->nports; p++) {
		const struct svc_port *sp = &s->ports[p];
		char *group = xasprintf("%s/%s/%s/%u", svc->meta.ns ? svc->meta.ns : "",
					svc->meta.name, proto_lc(sp->proto), sp->port);
		static const int fams[] = {AF_INET, AF_INET6};
		for (size_t f = 0; f < ARRAY_SIZE(fams); f++) {
			int fam = fams[f];
			all.n = 0;
			collect(svc, sp, fam, slices, nslices, in ? in->node_name : NULL, &all);
			select_backends(&all, false, &cl);
			select_backends(&all, true, &lo);
			const struct cand *ext = s->etp_local ? &lo : &cl;
			for (size_t i = 0; i < s->ncluster_ips; i++)
				if (s->cluster_ips[i].family == fam)
					add_entry(out, &s->cluster_ips[i], sp->proto, sp->port,
						  SVC_SCOPE_CLUSTER_IP, group, s->itp_local, false,
						  &cl, s->itp_local ? &lo : &cl, aff, &lb);
			if ((s->type == SVC_NODE_PORT || s->type == SVC_LOAD_BALANCER) &&
			    sp->node_port && in)
				for (size_t i = 0; i < in->nnode_addrs; i++)
					if (in->node_addrs[i].family == fam)
						add_entry(out, &in->node_addrs[i], sp->proto,
							  sp->node_port, SVC_SCOPE_NODE_PORT, group,
							  s->etp_local, !s->etp_local, &cl, ext,
							  aff, &lb);
			for (size_t i = 0; i < s->nexternal_ips; i++)
				if (s->external_ips[i].family == fam)
					add_entry(out, &s->external_ips[i], sp->proto, sp->port,
						  SVC_SCOPE_EXTERNAL_IP, group, s->etp_local,
						  !s->etp_local, &cl, ext, aff, &lb);
			if (s->type == SVC_LOAD_BALANCER)
				for (size_t i = 0; i < s->nlb_ips; i++)
					if (s->lb_ips[i].family == fam)
						add_entry(out, &s->lb_ips[i], sp->proto, sp->port,
							  SVC_SCOPE_LB, group, s->etp_local,
							  !s->etp_local, &cl, ext, aff, &lb);
		}
		free(group);
	}
	free(all.v);
	free(cl.v);
	free(lo.v);
	free(lb.weights);
	if (out->n > 1) {
		qsort(out->v, out->n, sizeof(*out->v), entry_cmp_q);
		/* the same key twice within one Service (an externalIP equal to a LB IP, ...):
		 * keep the first in key order, as a map can hold only one */
		size_t w = 1;
		for (size_t r = 1; r < out->n; r++) {
			if (svc_entry_key_cmp(&out->v[r], &out->v[w - 1]))
				out->v[w++] = out->v[r];
			else
				entry_free(&out->v[r]);
		}
		out->n = w;
	}
	if (out->n && out->cap > out->n) { /* kept for the Service's life: no slack */
		out->v = xrealloc(out->v, out->n * sizeof(*out->v));
		out->cap = out->n;
	}
	return 0;
}

/* ---- the incremental planner ---- */

struct svc_rec {
	char *key; /* "ns/name" */
	struct svc_entries entries;
	char *error;
};

struct svc_planner {
	struct store *store;
	char *node_name;
	struct ipaddr *node_addrs;
	size_t nnode_addrs;
	struct smap svcs; /* "ns/name" -> struct svc_rec (only Services with entries or errors) */
	struct smap slices_of; /* "ns/svc" -> its slices' names (a struct names) */
	struct smap slice_svc; /* "ns/slice" -> char * "ns/svc" it belongs to */
	struct smap owners;    /* entry key -> char * Service key */
	struct smap waiting;   /* entry key -> char * Service key refused it */
	struct smap stale;     /* set of Service keys */
	bool all_stale;	       /* plan every Service in the store (first update, new addrs) */
	uint64_t recomputations;
};

static char *svc_key(const char *ns, const char *name)
{
	return xasprintf("%s/%s", ns ? ns : "", name);
}

static void mark_stale(struct svc_planner *sp, const char *key)
{
	smap_add(&sp->stale, key);
}

/* A Service's slice names: one block, "a\0b\0\0" (almost every Service has one or two
 * slices; a set in a map of its own was four allocations a Service, 1.5 MB at 10,000). */
struct names {
	size_t len; /* of s, without the final NUL */
	char s[];
};

static bool names_has(const struct names *n, const char *name)
{
	for (const char *p = n ? n->s : ""; *p; p += strlen(p) + 1)
		if (!strcmp(p, name))
			return true;
	return false;
}

static struct names *names_add(struct names *n, const char *name)
{
	if (names_has(n, name))
		return n;
	size_t len = n ? n->len : 0, l = strlen(name) + 1;
	n = xrealloc(n, sizeof(*n) + len + l + 1);
	memcpy(n->s + len, name, l);
	n->len = len + l;
	n->s[n->len] = '\0';
	return n;
}

/* NULL when none is left */
static struct names *names_del(struct names *n, const char *name)
{
	for (char *p = n->s; *p; p += strlen(p) + 1)
		if (!strcmp(p, name)) {
			size_t l = strlen(p) + 1;
			memmove(p, p + l, n->len + 1 - (size_t)(p - n->s) - l);
			n->len -= l;
			break;
		}
	if (!n->len) {
		free(n);
		return NULL;
	}
	return n;
}

static void rec_free(void *v)
{
	struct svc_rec *r = v;
	svc_entries_free(&r->entries);
	free(r->error);
	free(r->key);
	free(r);
}

static void slice_unlink(struct svc_planner *sp, const char *slice_key, const char *slice_name)
{
	char *owner = smap_del(&sp->slice_svc, slice_key);
	if (!owner)
		return;
	bool created;
	void **set =
	    smap_get(&sp->slices_of, owner) ? smap_slot(&sp->slices_of, owner, &created) : NULL;
	if (set && !(*set = names_del(*set, slice_name)))
		smap_del(&sp->slices_of, owner);
	mark_stale(sp, owner);
	free(owner);
}

static void on_event(void *arg, enum store_event ev, const struct object *old,
		     const struct object *new_obj)
{
	struct svc_planner *sp = arg;
	const struct object *o = new_obj ? new_obj : old;
	if (!o || !o->meta.name)
		return;
	if (o->kind == KIND_SERVICE) {
		char *k = svc_key(o->meta.ns, o->meta.name);
		mark_stale(sp, k);
		free(k);
		return;
	}
	if (o->kind != KIND_ENDPOINTSLICE)
		return;
	char *sk = svc_key(o->meta.ns, o->meta.name);
	slice_unlink(sp, sk, o->meta.name);
	if (ev != STORE_REMOVED && new_obj->eps.service) {
		char *owner = svc_key(new_obj->meta.ns, new_obj->eps.service);
		bool created;
		void **slot = smap_slot(&sp->slices_of, owner, &created);
		*slot = names_add(*slot, new_obj->meta.name);
		*smap_slot(&sp->slice_svc, sk, &created) = owner; /* takes owner */
		mark_stale(sp, owner);
	}
	free(sk);
}

static int index_slice(const struct object *o, void *arg)
{
	on_event(arg, STORE_ADDED, NULL, o);
	return 0;
}

struct svc_planner *svc_planner_new(struct store *s, const struct svc_plan_in *in)
{
	struct svc_planner *sp = xcalloc(1, sizeof(*sp));
	sp->store = s;
	sp->node_name = xstrdup(in && in->node_name ? in->node_name : "");
	sp->all_stale = true;
	svc_planner_set_node_addrs(sp, in ? in->node_addrs : NULL, in ? in->nnode_addrs : 0);
	/* slices already in the store: index them as if they had just been added */
	store_foreach(s, KIND_ENDPOINTSLICE, index_slice, sp);
	store_subscribe(s, KIND_BIT(KIND_SERVICE) | KIND_BIT(KIND_ENDPOINTSLICE), on_event, sp);
	return sp;
}

static int stale_service(const struct object *o, void *arg)
{
	char *k = svc_key(o->meta.ns, o->meta.name);
	mark_stale(arg, k);
	free(k);
	return 0;
}

void svc_planner_free(struct svc_planner *sp)
{
	if (!sp)
		return;
	store_unsubscribe(sp->store, on_event, sp);
	smap_clear(&sp->svcs, rec_free);
	smap_clear(&sp->slices_of, free);
	smap_clear(&sp->slice_svc, free);
	smap_clear(&sp->owners, free);
	smap_clear(&sp->waiting, free);
	smap_clear(&sp->stale, NULL);
	free(sp->svcs.b);
	free(sp->slices_of.b);
	free(sp->slice_svc.b);
	free(sp->owners.b);
	free(sp->waiting.b);
	free(sp->stale.b);
	free(sp->node_addrs);
	free(sp->node_name);
	free(sp);
}

void svc_planner_set_node_addrs(struct svc_planner *sp, const struct ipaddr *addrs, size_t n)
{
	bool same = n == sp->nnode_addrs;
	for (size_t i = 0; same && i < n; i++)
		same = ip_eq(&addrs[i], &sp->node_addrs[i]);
	if (same && sp->node_addrs)
		return;
	free(sp->node_addrs);
	sp->node_addrs = xcalloc(n + 1, sizeof(*addrs));
	if (n)
		memcpy(sp->node_addrs, addrs, n * sizeof(*addrs));
	sp->nnode_addrs = n;
	/* only NodePort Services depend on the addresses */
	smap_foreach(&sp->svcs, it)
	{
		const struct svc_rec *r = it->val;
		for (size_t i = 0; i < r->entries.n; i++)
			if (r->entries.v[i].scope == SVC_SCOPE_NODE_PORT) {
				mark_stale(sp, r->key);
				break;
			}
	}
	/* Services whose NodePort had no address to go on are not in svcs: replan all of
	 * them (only on an address change, which is rare) */
	sp->all_stale = true;
}

bool svc_planner_dirty(const struct svc_planner *sp)
{
	return sp->all_stale || sp->stale.n > 0;
}

static void entry_key_str(const struct svc_entry *e, char *buf, size_t size)
{
	svc_entry_key_fmt(e, buf, size);
}

static int str_cmp_q(const void *a, const void *b);

/* Recompute one Service; true if its entries changed. */
static bool replan(struct svc_planner *sp, const char *key, struct smap *freed)
{
	sp->recomputations++;
	const char *slash = strchr(key, '/');
	char *ns = xasprintf("%.*s", (int)(slash - key), key);
	const struct object *svc = store_get(sp->store, KIND_SERVICE, ns, slash + 1);

	struct svc_entries ne = {0};
	if (svc) {
		const struct names *set = smap_get(&sp->slices_of, key);
		size_t nk = 0;
		for (const char *p = set ? set->s : ""; *p; p += strlen(p) + 1)
			nk++;
		const char **names = xcalloc(nk + 1, sizeof(*names));
		nk = 0;
		for (const char *p = set ? set->s : ""; *p; p += strlen(p) + 1)
			names[nk++] = p;
		if (nk > 1) /* in name order, as collect() expects */
			qsort(names, nk, sizeof(*names), str_cmp_q);
		const struct object **sl = xcalloc(nk + 1, sizeof(*sl));
		for (size_t i = 0; i < nk; i++)
			sl[i] = store_get(sp->store, KIND_ENDPOINTSLICE, ns, names[i]);
		struct svc_plan_in in = {sp->node_name, sp->node_addrs, sp->nnode_addrs};
		svc_plan_service(svc, sl, nk, &in, &ne);
		free(sl);
		free(names);
	}
	free(ns);

	/* claim keys; refuse those another Service holds */
	char *err = NULL;
	char lberr[256];
	struct svc_lb lb;
	if (svc && svc_lb_config(svc, &lb, lberr, sizeof(lberr)) < 0)
		err = xasprintf("%s; scheduling at random with equal weights", lberr);
	else if (svc)
		free(lb.weights);
	size_t w = 0;
	for (size_t i = 0; i < ne.n; i++) {
		char ek[IP_STRLEN + 16];
		entry_key_str(&ne.v[i], ek, sizeof(ek));
		const char *owner = smap_get(&sp->owners, ek);
		if (owner && strcmp(owner, key)) {
			char *m = xasprintf("%s%s%s is already used by Service %s", err ? err : "",
					    err ? "; " : "", ek, owner);
			free(err);
			err = m;
			bool created;
			void **slot = smap_slot(&sp->waiting, ek, &created);
			free(*slot);
			*slot = xstrdup(key);
			entry_free(&ne.v[i]);
			continue;
		}
		ne.v[w++] = ne.v[i];
	}
	ne.n = w;
	if (err)
		log_warn(SUB, "Service %s: %s", key, err);

	struct svc_rec *r = smap_get(&sp->svcs, key);
	bool changed = !svc_entries_equal(r ? &r->entries : NULL, &ne);
	/* release the keys no longer wanted */
	if (r)
		for (size_t i = 0; i < r->entries.n; i++) {
			char ek[IP_STRLEN + 16];
			entry_key_str(&r->entries.v[i], ek, sizeof(ek));
			bool kept = false;
			for (size_t j = 0; j < ne.n && !kept; j++)
				kept = !svc_entry_key_cmp(&ne.v[j], &r->entries.v[i]);
			if (!kept) {
				free(smap_del(&sp->owners, ek));
				smap_add(freed, ek);
			}
		}
	for (size_t i = 0; i < ne.n; i++) {
		char ek[IP_STRLEN + 16];
		entry_key_str(&ne.v[i], ek, sizeof(ek));
		bool created;
		void **slot = smap_slot(&sp->owners, ek, &created);
		if (created)
			*slot = xstrdup(key);
		char *wt = smap_get(&sp->waiting, ek);
		if (wt && !strcmp(wt, key))
			free(smap_del(&sp->waiting, ek));
	}
	if (!ne.n && !err) {
		if (r)
			rec_free(smap_del(&sp->svcs, key));
		return changed;
	}
	if (!r) {
		r = xcalloc(1, sizeof(*r));
		r->key = xstrdup(key);
		bool created;
		*smap_slot(&sp->svcs, key, &created) = r;
	}
	svc_entries_free(&r->entries);
	r->entries = ne;
	free(r->error);
	r->error = err;
	return changed;
}

static int str_cmp_q(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t svc_planner_update(struct svc_planner *sp, char ***changed)
{
	if (sp->all_stale) {
		sp->all_stale = false;
		store_foreach(sp->store, KIND_SERVICE, stale_service, sp);
	}
	struct smap chg = SMAP_INIT;
	for (int round = 0; round < MAX_ROUNDS && sp->stale.n; round++) {
		size_t nk;
		const char **keys = smap_keys(&sp->stale, &nk);
		char **mine = xcalloc(nk + 1, sizeof(*mine));
		for (size_t i = 0; i < nk; i++)
			mine[i] = xstrdup(keys[i]);
		free(keys);
		smap_clear(&sp->stale, NULL);
		struct smap freed = SMAP_INIT;
		for (size_t i = 0; i < nk; i++) {
			if (replan(sp, mine[i], &freed))
				smap_add(&chg, mine[i]);
			free(mine[i]);
		}
		free(mine);
		/* a freed key someone was refused: that Service may have it now */
		smap_foreach(&freed, it)
		{
			const char *wt = smap_get(&sp->waiting, it->key);
			if (wt)
				mark_stale(sp, wt);
		}
		smap_clear(&freed, NULL);
		free(freed.b);
	}
	size_t n;
	const char **keys = smap_keys(&chg, &n);
	if (changed) {
		*changed = xcalloc(n + 1, sizeof(char *));
		for (size_t i = 0; i < n; i++)
			(*changed)[i] = xstrdup(keys[i]);
		qsort(*changed, n, sizeof(char *), str_cmp_q);
	}
	free(keys);
	smap_clear(&chg, NULL);
	free(chg.b);
	return n;
}

void svc_planner_keys_free(char **keys, size_t n)
{
	if (!keys)
		return;
	for (size_t i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
}

const struct svc_entries *svc_planner_get(const struct svc_planner *sp, const char *key)
{
	const struct svc_rec *r = smap_get(&sp->svcs, key);
	return r && r->entries.n ? &r->entries : NULL;
}

const char *svc_planner_error(const struct svc_planner *sp, const char *key)
{
	const struct svc_rec *r = smap_get(&sp->svcs, key);
	return r ? r->error : NULL;
}

int svc_planner_foreach(const struct svc_planner *sp,
			int (*fn)(const char *key, const struct svc_entries *e, void *arg),
			void *arg)
{
	size_t n;
	const char **keys = smap_keys(&sp->svcs, &n);
	int r = 0;
	for (size_t i = 0; i < n && !r; i++) {
		const struct svc_rec *rec = smap_get(&sp->svcs, keys[i]);
		if (rec->entries.n)
			r = fn(keys[i], &rec->entries, arg);
	}
	free(keys);
	return r;
}

uint64_t svc_planner_recomputations(const struct svc_planner *sp)
{
	return sp->recomputations;
}

/* ---- node addresses ---- */

size_t svc_node_addrs(const struct object *node, struct ipaddr *out, size_t max)
{
	size_t n = 0;
	if (!node || node->kind != KIND_NODE)
		return 0;
	const struct node_obj *no = &node->node;
	for (size_t i = 0; i < no->naddrs && n < max; i++) {
		const struct node_addr *a = &no->addrs[i];
		if (a->type != NODE_ADDR_INTERNAL || !ip_is_set(&a->ip))
			continue;
		bool dup = false;
		for (size_t j = 0; j < n; j++)
			dup = dup || ip_eq(&out[j], &a->ip);
		if (!dup)
			out[n++] = a->ip;
	}
	if (!n && max) {
		const struct ipaddr *ip = node_ip(no, AF_UNSPEC);
		if (ip)
			out[n++] = *ip;
	}
	return n;
}
