/* agent_bgp: the agent's BGP component, see agent_bgp.h. */
#include "agent/agent_bgp.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "bgp/bgp.h"
#include "lib/log.h"
#include "lib/util.h"

#define SUB "bgp"
#define DEFAULT_AS 64512 /* Calico's default */
#define DEFAULT_RESTART_S 120
#define STATE_FILE "bgp.json"
#define STATE_MAX_ROUTES 10000
#define STATE_MIN_MS 50
#define ANN_AS "twill.io/bgp-as"
#define ANN_AS_CALICO "projectcalico.org/ASNumber"
#define ANN_RR "twill.io/route-reflector-cluster-id"
#define ANN_RR_CALICO "projectcalico.org/RouteReflectorClusterID"
#define ANN_BFD "twill.io/bfd" /* on a BGPPeer: "true" runs BFD with its peers */
#define MAX_ONLY_TO 16	       /* peers a BGPAdvertisement's `peers` can name on one node */

/* one announcement */
struct orig {
	struct ipprefix p;
	uint32_t local_pref; /* 0 = 100 */
	size_t ncomm, nlcomm;
	uint32_t comm[32];
	uint32_t lcomm[3 * 16];
	size_t nonly_to; /* BGPAdvertisement peers: only to these peers (0: every peer) */
	struct ipaddr only_to[MAX_ONLY_TO];
};

struct origset {
	size_t n, cap;
	struct orig *v;
};

struct peerset {
	size_t n, cap;
	struct bgp_peer_cfg *v;
};

struct objvec {
	size_t n, cap;
	const struct object **v;
};

struct agent_bgp {
	struct store *st;
	char *node, *state_path;
	int epfd;
	struct bgp *b;
	struct bgp_cfg cfg;   /* of the running speaker */
	bool dirty;	      /* the store changed */
	struct origset orig;  /* what the speaker announces */
	struct peerset peers; /* what it was given */
	char **errors;	      /* configuration problems, per peer or object */
	size_t nerrors;
	char *waiting; /* why there is no speaker yet, or NULL */
	char *summary_last;
	bool state_pending;
	monotime_t last_write;
};

/* ------------------------------------------------------------------ helpers ---- */

static void errors_clear(struct agent_bgp *ab)
{
	for (size_t i = 0; i < ab->nerrors; i++)
		free(ab->errors[i]);
	free(ab->errors);
	ab->errors = NULL;
	ab->nerrors = 0;
}

static void add_error(struct agent_bgp *ab, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add_error(struct agent_bgp *ab, const char *fmt, ...)
{
	va_list ap;
	char buf[512];
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	for (size_t i = 0; i < ab->nerrors; i++)
		if (!strcmp(ab->errors[i], buf))
			return; /* the same problem met again (one per LoadBalancer address) */
	ab->errors = xrealloc(ab->errors, (ab->nerrors + 1) * sizeof(*ab->errors));
	ab->errors[ab->nerrors++] = xstrdup(buf);
}

static int collect(const struct object *o, void *arg)
{
	struct objvec *v = arg;
	if (v->n == v->cap) {
		v->cap = v->cap ? 2 * v->cap : 16;
		v->v = xrealloc(v->v, v->cap * sizeof(*v->v));
	}
	v->v[v->n++] = o;
	return 0;
}

static void objvec_load(struct objvec *v, const struct store *s, enum kind k)
{
	v->n = 0;
	store_foreach(s, k, collect, v);
}

/* an annotation, else a label of that key */
static const char *meta_get(const struct object *o, const char *key)
{
	const char *v = labels_get(&o->meta.annotations, key);
	return v ? v : labels_get(&o->meta.labels, key);
}

static bool parse_u32(const char *s, uint32_t *out)
{
	char *end;
	if (!s || !isdigit((unsigned char)*s))
		return false;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v > 0xffffffffULL)
		return false;
	*out = (uint32_t)v;
	return true;
}

static uint32_t node_as(struct agent_bgp *ab, const struct object *n, uint32_t dflt)
{
	const char *s = meta_get(n, ANN_AS);
	if (!s)
		s = meta_get(n, ANN_AS_CALICO);
	uint32_t as;
	if (!s)
		return dflt;
	if (parse_u32(s, &as) && as)
		return as;
	add_error(ab, "Node %s: annotation %s: '%s' is not an AS number (using %u)", n->meta.name,
		  ANN_AS, s, dflt);
	return dflt;
}

/* route reflector cluster ID (an IPv4 address or a number); false when not a reflector */
static bool node_rr(const struct object *n, uint32_t *id)
{
	const char *s = meta_get(n, ANN_RR);
	if (!s)
		s = meta_get(n, ANN_RR_CALICO);
	if (!s || !*s)
		return false;
	struct in_addr ia;
	if (inet_pton(AF_INET, s, &ia) == 1)
		*id = ntohl(ia.s_addr);
	else if (!parse_u32(s, id))
		*id = (uint32_t)fnv1a64(s, strlen(s), 0);
	return true;
}

static bool node_v4(const struct object *n, struct ipaddr *out)
{
	const struct ipaddr *a = node_ip(&n->node, AF_INET);
	if (!a || a->family != AF_INET)
		return false;
	*out = *a;
	return true;
}

/* ------------------------------------------------- Calico selector subset ---- */

static const char *skip_ws(const char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	return s;
}

/* a label key: [A-Za-z0-9./_-]+ */
static const char *scan_key(const char *s, char *key, size_t size)
{
	size_t n = 0;
	while (isalnum((unsigned char)s[n]) || (s[n] && strchr("./_-", s[n])))
		n++;
	if (!n || n >= size)
		return NULL;
	memcpy(key, s, n);
	key[n] = 0;
	return s + n;
}

static const char *scan_quoted(const char *s, char *val, size_t size)
{
	char q = *s;
	if (q != '\'' && q != '"')
		return NULL;
	const char *e = strchr(s + 1, q);
	if (!e || (size_t)(e - s - 1) >= size)
		return NULL;
	memcpy(val, s + 1, (size_t)(e - s - 1));
	val[e - s - 1] = 0;
	return e + 1;
}

int agent_bgp_selector_match(const char *sel, const struct labels *l, char *err, size_t errlen)
{
	const char *s = skip_ws(sel ? sel : "");
	if (!*s)
		return 1; /* empty: everything, like all() */
	bool all = true;
	for (;;) {
		char key[256], val[256];
		bool neg = false, term;
		s = skip_ws(s);
		if (!strncmp(s, "all()", 5)) {
			term = true;
			s += 5;
		} else {
			if (*s == '!') {
				neg = true;
				s = skip_ws(s + 1);
			}
			if (!strncmp(s, "has(", 4)) {
				const char *e = scan_key(skip_ws(s + 4), key, sizeof(key));
				e = e ? skip_ws(e) : NULL;
				if (!e || *e != ')')
					goto bad;
				s = e + 1;
				term = labels_get(l, key) != NULL;
			} else {
				if (neg)
					goto bad;
				const char *e = scan_key(s, key, sizeof(key));
				if (!e)
					goto bad;
				e = skip_ws(e);
				bool eq;
				if (!strncmp(e, "==", 2))
					eq = true;
				else if (!strncmp(e, "!=", 2))
					eq = false;
				else
					goto bad;
				e = scan_quoted(skip_ws(e + 2), val, sizeof(val));
				if (!e)
					goto bad;
				s = e;
				const char *have = labels_get(l, key);
				term = have && !strcmp(have, val);
				if (!eq)
					term = !term;
			}
			if (neg)
				term = !term;
		}
		all = all && term;
		s = skip_ws(s);
		if (!*s)
			return all;
		if (strncmp(s, "&&", 2))
			goto bad;
		s += 2;
	}
bad:
	snprintf(err, errlen,
		 "unsupported selector \"%s\" at \"%.20s\" (supported: all(), has(k), !has(k), "
		 "k == 'v', k != 'v', joined by &&)",
		 sel, s);
	return -1;
}

/* ------------------------------------------------------------------- peers ---- */

static void peer_push(struct peerset *ps, const struct bgp_peer_cfg *p)
{
	for (size_t i = 0; i < ps->n; i++)
		if (ip_eq(&ps->v[i].addr, &p->addr))
			return; /* the first configuration of an address wins */
	if (ps->n == ps->cap) {
		ps->cap = ps->cap ? 2 * ps->cap : 8;
		ps->v = xrealloc(ps->v, ps->cap * sizeof(*ps->v));
	}
	ps->v[ps->n++] = *p;
}

struct plan_ctx {
	const struct object *self;
	struct ipaddr self_ip;
	uint32_t as;
	bool self_rr;
	struct objvec nodes;
};

static void peer_of_node(struct agent_bgp *ab, const struct plan_ctx *c, const struct object *n,
			 const char *name, uint32_t as, struct peerset *out)
{
	struct ipaddr ip;
	uint32_t rid;
	if (n == c->self || !node_v4(n, &ip) || ip_eq(&ip, &c->self_ip))
		return;
	struct bgp_peer_cfg p;
	memset(&p, 0, sizeof(p));
	snprintf(p.name, sizeof(p.name), "%s", name);
	p.addr = ip;
	p.as = as ? as : node_as(ab, n, c->as);
	p.local = c->self_ip;
	p.rr_client = c->self_rr && !node_rr(n, &rid) && p.as == c->as;
	peer_push(out, &p);
}

/* The Secret a BGPPeer's password.secretKeyRef names: by name in any namespace (Calico
 * reads it from its own), which must be unique.  NULL with the reason in err. */
static const char *secret_value(struct agent_bgp *ab, const char *name, const char *key,
				char *err, size_t errlen)
{
	struct objvec v = {0};
	objvec_load(&v, ab->st, KIND_SECRET);
	const struct object *found = NULL;
	size_t n = 0;
	for (size_t i = 0; i < v.n; i++)
		if (!strcmp(v.v[i]->meta.name, name) && n++ == 0)
			found = v.v[i];
	free(v.v);
	if (!found) {
		snprintf(err, errlen, "Secret %s not found", name);
		return NULL;
	}
	if (n > 1) {
		snprintf(err, errlen, "a Secret named %s exists in %zu namespaces", name, n);
		return NULL;
	}
	const char *val = labels_get(&found->secret.data, key);
	if (!val)
		snprintf(err, errlen, "Secret %s/%s (%s:%d) has no key %s",
			 found->meta.ns ? found->meta.ns : "", name,
			 found->meta.file ? found->meta.file : "?", found->meta.line, key);
	return val;
}

/* What a BGPPeer sets on each of its sessions, whatever the peers are: password (plain or
 * from a Secret), ttlSecurity, maxRestartTime, keepOriginalNextHop, BFD (annotation
 * twill.io/bfd).  -1 after add_error: the BGPPeer is skipped, the others go on. */
static int peer_template(struct agent_bgp *ab, const struct object *o, struct bgp_peer_cfg *p)
{
	const struct bgppeer_obj *bp = &o->bgppeer;
	const char *where = o->meta.file ? o->meta.file : "?";
	memset(p, 0, sizeof(*p));
	const char *pw = bp->password;
	char err[256];
	if (bp->password_secret) {
		pw = secret_value(ab, bp->password_secret, bp->password_key, err, sizeof(err));
		if (!pw) {
			add_error(ab, "BGPPeer %s (%s:%d): password.secretKeyRef: %s", o->meta.name,
				  where, o->meta.line, err);
			return -1;
		}
	}
	if (pw && strlen(pw) >= sizeof(p->password)) {
		add_error(ab, "BGPPeer %s (%s:%d): password: at most %zu characters (TCP MD5)",
			  o->meta.name, where, o->meta.line, sizeof(p->password) - 1);
		return -1;
	}
	snprintf(p->password, sizeof(p->password), "%s", pw ? pw : "");
	if (bp->max_restart_time > 4095) {
		add_error(ab,
			  "BGPPeer %s (%s:%d): maxRestartTime: %u s is more than the 4095 s the "
			  "graceful restart capability can carry",
			  o->meta.name, where, o->meta.line, bp->max_restart_time);
		return -1;
	}
	p->restart_time = (uint16_t)bp->max_restart_time;
	p->ttl_security = bp->ttl_security;
	p->next_hop_keep = bp->keep_original_next_hop;
	const char *bfd = meta_get(o, ANN_BFD);
	if (bfd && strcmp(bfd, "true") && strcmp(bfd, "false")) {
		add_error(ab,
			  "BGPPeer %s (%s:%d): annotation %s: '%s' is not \"true\" or \"false\"",
			  o->meta.name, where, o->meta.line, ANN_BFD, bfd);
		return -1;
	}
	p->bfd = bfd && !strcmp(bfd, "true");
	return 0;
}

/* The BGPPeer's settings onto a session planned for one of the nodes it selects. */
static void peer_apply_template(struct bgp_peer_cfg *p, const struct bgp_peer_cfg *t)
{
	memcpy(p->password, t->password, sizeof(p->password));
	p->ttl_security = t->ttl_security;
	p->restart_time = t->restart_time;
	p->next_hop_keep = t->next_hop_keep;
	p->bfd = t->bfd;
}

static void plan_bgppeers(struct agent_bgp *ab, const struct plan_ctx *c, struct peerset *out)
{
	struct objvec v = {0};
	objvec_load(&v, ab->st, KIND_BGPPEER);
	for (size_t i = 0; i < v.n; i++) {
		const struct object *o = v.v[i];
		const struct bgppeer_obj *bp = &o->bgppeer;
		char err[384];
		if (bp->node) {
			if (strcmp(bp->node, ab->node))
				continue;
		} else if (bp->node_selector) {
			int m = agent_bgp_selector_match(bp->node_selector, &c->self->meta.labels,
							 err, sizeof(err));
			if (m < 0)
				add_error(ab, "BGPPeer %s: nodeSelector: %s", o->meta.name, err);
			if (m <= 0)
				continue;
		}
		struct bgp_peer_cfg tmpl;
		if (peer_template(ab, o, &tmpl) < 0)
			continue;
		if (bp->peer_ip.family) {
			if (!bp->as_number) {
				add_error(ab, "BGPPeer %s: asNumber is required with peerIP",
					  o->meta.name);
				continue;
			}
			struct bgp_peer_cfg p = tmpl;
			snprintf(p.name, sizeof(p.name), "%s", o->meta.name);
			p.addr = bp->peer_ip;
			p.port = bp->port;
			p.as = bp->as_number;
			/* an external router (eBGP) hears only this node's own routes: passing
			 * on what the mesh taught us would make it spread traffic over nodes that
			 * just send it back (Cilium and MetalLB announce only their own too).
			 * keepOriginalNextHop: it hears them all, each with its own node as
			 * next hop, so nothing bounces. */
			p.local_only = p.as != c->as && !bp->keep_original_next_hop;
			if (!(bp->source_address && !strcmp(bp->source_address, "None")) &&
			    bp->peer_ip.family == c->self_ip.family)
				p.local = c->self_ip;
			peer_push(out, &p);
		} else if (bp->peer_selector) {
			for (size_t k = 0; k < c->nodes.n; k++) {
				const struct object *n = c->nodes.v[k];
				int m = agent_bgp_selector_match(bp->peer_selector, &n->meta.labels,
								 err, sizeof(err));
				if (m < 0) {
					add_error(ab, "BGPPeer %s: peerSelector: %s", o->meta.name,
						  err);
					break;
				}
				if (!m)
					continue;
				char name[64];
				snprintf(name, sizeof(name), "%s/%s", o->meta.name, n->meta.name);
				size_t before = out->n;
				peer_of_node(ab, c, n, name, bp->as_number, out);
				for (size_t q = before; q < out->n; q++)
					peer_apply_template(&out->v[q], &tmpl);
			}
		} else {
			add_error(ab, "BGPPeer %s: needs peerIP or peerSelector", o->meta.name);
		}
	}
	free(v.v);
}

/* The node-to-node mesh, or with route reflectors: a reflector peers with every node (the
 * non-reflectors are its clients), the others only with the reflectors. */
static void plan_mesh(struct agent_bgp *ab, const struct plan_ctx *c, struct peerset *out)
{
	bool any_rr = false;
	uint32_t id;
	for (size_t i = 0; i < c->nodes.n; i++)
		any_rr |= node_rr(c->nodes.v[i], &id);
	for (size_t i = 0; i < c->nodes.n; i++) {
		const struct object *n = c->nodes.v[i];
		if (any_rr && !c->self_rr && !node_rr(n, &id))
			continue;
		peer_of_node(ab, c, n, n->meta.name, 0, out);
	}
}

/* ----------------------------------------------------------- announcements ---- */

static void orig_push(struct origset *os, const struct orig *o)
{
	for (size_t i = 0; i < os->n; i++)
		if (prefix_eq(&os->v[i].p, &o->p))
			return;
	if (os->n == os->cap) {
		os->cap = os->cap ? 2 * os->cap : 8;
		os->v = xrealloc(os->v, os->cap * sizeof(*os->v));
	}
	os->v[os->n++] = *o;
}

static void orig_prefix(struct origset *os, const struct ipprefix *p)
{
	struct orig o;
	memset(&o, 0, sizeof(o));
	o.p = *p;
	prefix_normalize(&o.p);
	orig_push(os, &o);
}

static bool has_local_endpoint(struct agent_bgp *ab, const struct objvec *slices,
			       const struct object *svc)
{
	for (size_t i = 0; i < slices->n; i++) {
		const struct object *o = slices->v[i];
		const struct endpointslice_obj *e = &o->eps;
		if (!e->service || strcmp(e->service, svc->meta.name) ||
		    strcmp(o->meta.ns ? o->meta.ns : "", svc->meta.ns ? svc->meta.ns : ""))
			continue;
		for (size_t k = 0; k < e->nendpoints; k++)
			if (e->endpoints[k].ready && e->endpoints[k].node_name &&
			    !strcmp(e->endpoints[k].node_name, ab->node))
				return true;
	}
	return false;
}

/* A BGPAdvertisement's `peers` (BGPPeer names) as the addresses of this node's sessions
 * they made: added to out (false: it names a BGPPeer that does not exist).  A session
 * from a peerSelector BGPPeer is named "<BGPPeer>/<Node>". */
static bool adv_peers(const struct bgpadv_obj *a, const struct peerset *ps, struct objvec *bgppeers,
		      struct orig *out, const char **unknown)
{
	for (size_t k = 0; k < a->npeers; k++) {
		bool exists = false;
		for (size_t i = 0; i < bgppeers->n && !exists; i++)
			exists = !strcmp(bgppeers->v[i]->meta.name, a->peers[k]);
		if (!exists) {
			*unknown = a->peers[k];
			return false;
		}
	}
	for (size_t k = 0; k < a->npeers; k++) {
		size_t l = strlen(a->peers[k]);
		for (size_t i = 0; i < ps->n && out->nonly_to < MAX_ONLY_TO; i++) {
			const char *nm = ps->v[i].name;
			if (strncmp(nm, a->peers[k], l) || (nm[l] && nm[l] != '/'))
				continue;
			bool dup = false;
			for (size_t q = 0; q < out->nonly_to; q++)
				dup |= ip_eq(&out->only_to[q], &ps->v[i].addr);
			if (!dup)
				out->only_to[out->nonly_to++] = ps->v[i].addr;
		}
	}
	return true;
}

/* The announcement of LoadBalancer address ip, or false when nothing advertises it here.
 * BGPAdvertisement aggregationLength(V6) widens the prefix (the first advertisement that
 * covers the address decides it); `peers` limits the sessions it goes to (several
 * advertisements: the union, and one without `peers` means every session). */
static bool lb_orig(struct agent_bgp *ab, const struct plan_ctx *c, const struct object *conf,
		    const struct objvec *pools, const struct objvec *advs, const struct peerset *ps,
		    struct objvec *bgppeers, const struct ipaddr *ip, struct orig *out)
{
	memset(out, 0, sizeof(*out));
	out->p.addr = *ip;
	out->p.len = (uint8_t)ip_maxlen(ip->family);
	bool covered = false, aggregated = false;
	for (size_t i = 0; conf && i < conf->bgpconf.nsvc_lb; i++)
		covered |= prefix_contains(&conf->bgpconf.svc_lb[i], ip);
	bool to_all = covered; /* serviceLoadBalancerIPs: to every peer */
	const char *pool = NULL;
	const struct ipprefix *pool_cidr = NULL;
	for (size_t i = 0; i < pools->n && !pool; i++)
		for (size_t k = 0; k < pools->v[i]->pool.nranges && !pool; k++)
			if (prefix_contains(&pools->v[i]->pool.cidrs[k], ip)) {
				pool = pools->v[i]->meta.name;
				pool_cidr = &pools->v[i]->pool.cidrs[k];
			}
	for (size_t i = 0; i < advs->n; i++) {
		const struct object *ao = advs->v[i];
		const struct bgpadv_obj *a = &ao->bgpadv;
		bool match = !a->npools;
		for (size_t k = 0; k < a->npools && pool; k++)
			match |= !strcmp(a->pools[k], pool);
		if (!match || (a->npools && !pool))
			continue;
		bool node_ok = !a->nnode_selectors;
		for (size_t k = 0; k < a->nnode_selectors; k++)
			node_ok |= selector_matches(&a->node_selectors[k], &c->self->meta.labels);
		if (!node_ok)
			continue;
		uint8_t agg =
		    ip->family == AF_INET ? a->aggregation_length : a->aggregation_length_v6;
		if (pool_cidr && agg < pool_cidr->len) {
			char pb[IP_STRLEN];
			add_error(ab,
				  "BGPAdvertisement %s/%s (%s:%d): aggregationLength%s %u is shorter "
				  "than pool %s's %s (not announced)",
				  ao->meta.ns ? ao->meta.ns : "", ao->meta.name,
				  ao->meta.file ? ao->meta.file : "?", ao->meta.line,
				  ip->family == AF_INET ? "" : "V6", agg, pool,
				  prefix_fmt(pool_cidr, pb));
			continue;
		}
		const char *unknown = NULL;
		if (!adv_peers(a, ps, bgppeers, out, &unknown)) {
			add_error(ab,
				  "BGPAdvertisement %s/%s (%s:%d): peers: no BGPPeer named %s (not "
				  "announced)",
				  ao->meta.ns ? ao->meta.ns : "", ao->meta.name,
				  ao->meta.file ? ao->meta.file : "?", ao->meta.line, unknown);
			continue;
		}
		if (!aggregated) {
			out->p.len = agg;
			prefix_normalize(&out->p);
			aggregated = true;
		}
		covered = true;
		to_all |= !a->npeers;
		if (a->has_local_pref && !out->local_pref)
			out->local_pref = a->local_pref;
		for (size_t k = 0; k < a->ncomm && out->ncomm < ARRAY_SIZE(out->comm); k++) {
			bool dup = false;
			for (size_t q = 0; q < out->ncomm; q++)
				dup |= out->comm[q] == a->comm[k];
			if (!dup)
				out->comm[out->ncomm++] = a->comm[k];
		}
		for (size_t k = 0; k < a->nlcomm && out->nlcomm < ARRAY_SIZE(out->lcomm) / 3; k++)
			memcpy(&out->lcomm[3 * out->nlcomm++], &a->lcomm[3 * k], 12);
	}
	if (to_all)
		out->nonly_to = 0;
	else if (covered && !out->nonly_to)
		return false; /* only to peers this node does not have */
	return covered;
}

static void plan_orig(struct agent_bgp *ab, const struct plan_ctx *c, const struct object *conf,
		      const struct peerset *ps, struct origset *out)
{
	for (size_t i = 0; i < c->self->node.npod_cidrs; i++)
		orig_prefix(out, &c->self->node.pod_cidrs[i]);
	for (size_t i = 0; conf && i < conf->bgpconf.nsvc_cluster; i++)
		orig_prefix(out, &conf->bgpconf.svc_cluster[i]);
	for (size_t i = 0; conf && i < conf->bgpconf.nsvc_external; i++)
		orig_prefix(out, &conf->bgpconf.svc_external[i]);
	struct objvec svcs = {0}, slices = {0}, pools = {0}, advs = {0}, bgppeers = {0};
	objvec_load(&bgppeers, ab->st, KIND_BGPPEER);
	objvec_load(&svcs, ab->st, KIND_SERVICE);
	objvec_load(&pools, ab->st, KIND_IPADDRESSPOOL);
	objvec_load(&advs, ab->st, KIND_BGPADVERTISEMENT);
	bool slices_loaded = false;
	for (size_t i = 0; i < svcs.n; i++) {
		const struct object *s = svcs.v[i];
		if (s->svc.type != SVC_LOAD_BALANCER || !s->svc.nlb_ips)
			continue;
		if (s->svc.etp_local) {
			if (!slices_loaded)
				objvec_load(&slices, ab->st, KIND_ENDPOINTSLICE);
			slices_loaded = true;
			if (!has_local_endpoint(ab, &slices, s))
				continue;
		}
		for (size_t k = 0; k < s->svc.nlb_ips; k++) {
			struct orig o;
			if (lb_orig(ab, c, conf, &pools, &advs, ps, &bgppeers, &s->svc.lb_ips[k],
				    &o))
				orig_push(out, &o);
		}
	}
	free(svcs.v);
	free(slices.v);
	free(pools.v);
	free(advs.v);
	free(bgppeers.v);
}

static bool orig_same(const struct orig *a, const struct orig *b)
{
	return prefix_eq(&a->p, &b->p) && a->local_pref == b->local_pref && a->ncomm == b->ncomm &&
	       a->nlcomm == b->nlcomm && !memcmp(a->comm, b->comm, a->ncomm * 4) &&
	       !memcmp(a->lcomm, b->lcomm, a->nlcomm * 12) && a->nonly_to == b->nonly_to &&
	       !memcmp(a->only_to, b->only_to, a->nonly_to * sizeof(a->only_to[0]));
}

/* Hand the speaker only the difference. */
static void orig_apply(struct agent_bgp *ab, struct origset *want)
{
	char pb[IP_STRLEN];
	for (size_t i = 0; i < ab->orig.n; i++) {
		bool keep = false;
		for (size_t k = 0; k < want->n && !keep; k++)
			keep = prefix_eq(&ab->orig.v[i].p, &want->v[k].p);
		if (!keep) {
			bgp_withdraw(ab->b, &ab->orig.v[i].p);
			log_info(SUB, "withdraw %s", prefix_fmt(&ab->orig.v[i].p, pb));
		}
	}
	for (size_t k = 0; k < want->n; k++) {
		const struct orig *o = &want->v[k];
		bool same = false;
		for (size_t i = 0; i < ab->orig.n && !same; i++)
			same = orig_same(&ab->orig.v[i], o);
		if (same)
			continue;
		struct bgp_route_attrs ra = {.local_pref = o->local_pref,
					     .ncomm = o->ncomm,
					     .comm = o->comm,
					     .nlcomm = o->nlcomm,
					     .lcomm = o->lcomm,
					     .nonly_to = o->nonly_to,
					     .only_to = o->only_to};
		bgp_originate(ab->b, &o->p, &ra);
		log_info(SUB, "announce %s%s", prefix_fmt(&o->p, pb),
			 o->ncomm || o->nlcomm ? " (with communities)" : "");
	}
	free(ab->orig.v);
	ab->orig = *want;
	memset(want, 0, sizeof(*want));
}

/* ------------------------------------------------------------------ speaker ---- */

static void speaker_stop(struct agent_bgp *ab)
{
	if (!ab->b)
		return;
	epoll_ctl(ab->epfd, EPOLL_CTL_DEL, bgp_fd(ab->b), NULL);
	bgp_free(ab->b); /* graceful: the kernel routes stay, the peers keep ours */
	ab->b = NULL;
	free(ab->orig.v);
	memset(&ab->orig, 0, sizeof(ab->orig));
	free(ab->peers.v);
	memset(&ab->peers, 0, sizeof(ab->peers));
}

static bool cfg_same(const struct bgp_cfg *a, const struct bgp_cfg *b)
{
	return a->as == b->as && a->router_id == b->router_id && a->cluster_id == b->cluster_id &&
	       a->listen_port == b->listen_port && a->restart_time == b->restart_time &&
	       ip_eq(&a->nh6, &b->nh6);
}

static void set_waiting(struct agent_bgp *ab, const char *why)
{
	if (why && (!ab->waiting || strcmp(ab->waiting, why)))
		log_info(SUB, "not started: %s", why);
	free(ab->waiting);
	ab->waiting = xstrdup(why);
}

static void replan(struct agent_bgp *ab)
{
	errors_clear(ab);
	struct plan_ctx c;
	memset(&c, 0, sizeof(c));
	c.self = store_get(ab->st, KIND_NODE, NULL, ab->node);
	if (!c.self || !node_v4(c.self, &c.self_ip)) {
		set_waiting(ab, c.self ? "this Node has no IPv4 InternalIP" : "no Node object yet");
		speaker_stop(ab);
		return;
	}
	const struct object *conf = store_get(ab->st, KIND_BGPCONFIGURATION, NULL, "default");
	c.as = node_as(ab, c.self,
		       conf && conf->bgpconf.as_number ? conf->bgpconf.as_number : DEFAULT_AS);
	struct bgp_cfg cfg = {
	    .as = c.as,
	    .router_id = ntohl(c.self_ip.v4.s_addr),
	    .listen_port = conf && conf->bgpconf.listen_port ? conf->bgpconf.listen_port : 0,
	    .install = true,
	    .graceful_restart = true,
	    .restart_time = DEFAULT_RESTART_S,
	};
	if (conf && conf->bgpconf.mesh_restart_time)
		cfg.restart_time = (uint16_t)(conf->bgpconf.mesh_restart_time > 4095
						  ? 4095
						  : conf->bgpconf.mesh_restart_time);
	c.self_rr = node_rr(c.self, &cfg.cluster_id);
	/* dual stack: IPv6 podCIDRs go over the IPv4 sessions (MP-BGP), next hop the Node's
	 * IPv6 InternalIP */
	bool v6 = false;
	for (size_t i = 0; i < c.self->node.npod_cidrs; i++)
		v6 |= c.self->node.pod_cidrs[i].addr.family == AF_INET6;
	const struct ipaddr *ip6 = node_ip(&c.self->node, AF_INET6);
	if (v6 && ip6 && ip6->family == AF_INET6)
		cfg.nh6 = *ip6;
	else
		v6 = false;
	if (ab->b && !cfg_same(&cfg, &ab->cfg)) {
		log_info(SUB,
			 "configuration changed (AS %u, router ID, cluster ID, port or restart "
			 "time): restarting the speaker gracefully",
			 cfg.as);
		speaker_stop(ab);
	}
	if (!ab->b) {
		ab->b = bgp_new(&cfg);
		if (!ab->b) {
			char *why = xasprintf("cannot start the BGP speaker: %s", strerror(errno));
			set_waiting(ab, why);
			free(why);
			return;
		}
		ab->cfg = cfg;
		struct epoll_event ev = {.events = EPOLLIN, .data.fd = bgp_fd(ab->b)};
		epoll_ctl(ab->epfd, EPOLL_CTL_ADD, bgp_fd(ab->b), &ev);
		char b[IP_STRLEN];
		log_info(SUB, "speaker started: AS %u, router ID %s%s, graceful restart %u s",
			 cfg.as, ip_fmt(&c.self_ip, b), c.self_rr ? ", route reflector" : "",
			 cfg.restart_time);
	}
	set_waiting(ab, NULL);

	objvec_load(&c.nodes, ab->st, KIND_NODE);
	struct peerset ps = {0};
	plan_bgppeers(ab, &c, &ps);
	if (!conf || conf->bgpconf.node_mesh)
		plan_mesh(ab, &c, &ps);
	for (size_t i = 0; v6 && i < ps.n; i++)
		ps.v[i].fam[BGP_FAM_V4] = ps.v[i].fam[BGP_FAM_V6] = true;
	bool same =
	    ps.n == ab->peers.n && (!ps.n || !memcmp(ps.v, ab->peers.v, ps.n * sizeof(*ps.v)));
	if (!same) {
		int bad = bgp_set_peers(ab->b, ps.v, ps.n);
		log_info(SUB, "%zu peers configured%s", ps.n,
			 bad ? " (some rejected, see bgp peers)" : "");
		free(ab->peers.v);
		ab->peers = ps;
	} else {
		free(ps.v);
	}

	struct origset want = {0};
	plan_orig(ab, &c, conf, &ab->peers, &want);
	orig_apply(ab, &want);
	free(c.nodes.v);
	for (size_t i = 0; i < ab->nerrors; i++)
		log_debug(SUB, "%s", ab->errors[i]);
	ab->state_pending = true;
}

/* ---------------------------------------------------------------- lifecycle ---- */

static void on_store(void *arg, enum store_event ev, const struct object *old,
		     const struct object *new_obj)
{
	struct agent_bgp *ab = arg;
	(void)ev;
	(void)old;
	(void)new_obj;
	ab->dirty = true;
}

struct agent_bgp *agent_bgp_new(struct store *s, const char *node, const char *state_dir, int epfd)
{
	struct agent_bgp *ab = xcalloc(1, sizeof(*ab));
	ab->st = s;
	ab->node = xstrdup(node);
	ab->state_path = xasprintf("%s/%s", state_dir, STATE_FILE);
	ab->epfd = epfd;
	ab->dirty = true;
	store_subscribe(s,
			KIND_BIT(KIND_NODE) | KIND_BIT(KIND_SERVICE) |
			    KIND_BIT(KIND_ENDPOINTSLICE) | KIND_BIT(KIND_IPADDRESSPOOL) |
			    KIND_BIT(KIND_BGPCONFIGURATION) | KIND_BIT(KIND_BGPPEER) |
			    KIND_BIT(KIND_BGPADVERTISEMENT) | KIND_BIT(KIND_SECRET),
			on_store, ab);
	return ab;
}

void agent_bgp_free(struct agent_bgp *ab)
{
	if (!ab)
		return;
	store_unsubscribe(ab->st, on_store, ab);
	if (ab->b)
		log_info(SUB, "stopping: graceful restart, kernel routes stay for %u s",
			 ab->cfg.restart_time);
	speaker_stop(ab);
	errors_clear(ab);
	free(ab->waiting);
	free(ab->summary_last);
	free(ab->node);
	free(ab->state_path);
	free(ab);
}

int agent_bgp_timeout_ms(struct agent_bgp *ab)
{
	if (!ab || !ab->b)
		return -1;
	int t = bgp_timeout_ms(ab->b);
	if (ab->state_pending && (t < 0 || t > STATE_MIN_MS))
		t = STATE_MIN_MS;
	return t;
}

bool agent_bgp_handle(const struct agent_bgp *ab, int fd)
{
	return ab && ab->b && fd == bgp_fd(ab->b);
}

/* The speaker's document (bgp_state_json: built one route at a time, never one big json-c
 * tree) with the agent's own fields spliced in before its closing brace. */
static void state_write(struct agent_bgp *ab)
{
	json_object *j = json_object_new_object();
	json_object *errs = json_object_new_array();
	for (size_t i = 0; i < ab->nerrors; i++)
		json_object_array_add(errs, json_object_new_string(ab->errors[i]));
	json_object_object_add(j, "errors", errs);
	if (ab->waiting)
		json_object_object_add(j, "waiting", json_object_new_string(ab->waiting));
	json_object_object_add(j, "node", json_object_new_string(ab->node));
	const char *extra = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN);
	char *doc = ab->b ? bgp_state_json(ab->b, STATE_MAX_ROUTES) : NULL;
	size_t dlen = doc ? strlen(doc) : 0;
	char *s;
	if (dlen >= 2 && doc[0] == '{' && doc[dlen - 1] == '}')
		s = xasprintf("%.*s%s%s", (int)(dlen - 1), doc, dlen > 2 ? "," : "", extra + 1);
	else
		s = xstrdup(extra);
	int e = file_write_atomic(ab->state_path, s, strlen(s));
	if (e < 0)
		log_warn(SUB, "cannot write %s: %s", ab->state_path, strerror(-e));
	free(s);
	free(doc);
	json_object_put(j);
}

bool agent_bgp_sync(struct agent_bgp *ab)
{
	if (!ab)
		return false;
	if (ab->dirty) {
		ab->dirty = false;
		replan(ab);
	}
	if (ab->b) {
		bgp_dispatch(ab->b);
		ab->state_pending |= bgp_state_dirty(ab->b);
	}
	monotime_t now = monotime_now();
	if (ab->state_pending && now - ab->last_write >= MONO_MS(STATE_MIN_MS)) {
		ab->state_pending = false;
		ab->last_write = now;
		state_write(ab);
	}
	json_object *sum = agent_bgp_status(ab);
	const char *s = json_object_to_json_string_ext(sum, JSON_C_TO_STRING_PLAIN);
	bool changed = !ab->summary_last || strcmp(s, ab->summary_last);
	if (changed) {
		free(ab->summary_last);
		ab->summary_last = xstrdup(s);
	}
	json_object_put(sum);
	return changed;
}

json_object *agent_bgp_status(const struct agent_bgp *ab)
{
	json_object *j = json_object_new_object();
	if (ab->waiting)
		json_object_object_add(j, "waiting", json_object_new_string(ab->waiting));
	if (ab->b) {
		json_object_object_add(j, "as", json_object_new_int64(ab->cfg.as));
		struct in_addr ia = {htonl(ab->cfg.router_id)};
		json_object_object_add(j, "routerId", json_object_new_string(inet_ntoa(ia)));
		json_object_object_add(j, "gracefulRestartTime",
				       json_object_new_int(ab->cfg.restart_time));
	}
	json_object *adv = json_object_new_array();
	for (size_t i = 0; i < ab->orig.n; i++) {
		char pb[IP_STRLEN];
		json_object_array_add(adv,
				      json_object_new_string(prefix_fmt(&ab->orig.v[i].p, pb)));
	}
	json_object_object_add(j, "advertised", adv);
	json_object *peers = json_object_new_array();
	json_object *st = ab->b ? bgp_state(ab->b, 0) : NULL;
	json_object *sp = NULL;
	if (st)
		json_object_object_get_ex(st, "peers", &sp);
	for (size_t i = 0; sp && i < json_object_array_length(sp); i++) {
		json_object *p = json_object_array_get_idx(sp, i), *o = json_object_new_object(),
			    *v;
		static const char *const keys[] = {"name", "address", "as",
						   "type", "state",   "lastError"};
		for (size_t k = 0; k < ARRAY_SIZE(keys); k++)
			if (json_object_object_get_ex(p, keys[k], &v))
				json_object_object_add(o, keys[k], json_object_get(v));
		json_object_array_add(peers, o);
	}
	json_object_put(st);
	json_object_object_add(j, "peers", peers);
	json_object *errs = json_object_new_array();
	for (size_t i = 0; i < ab->nerrors; i++)
		json_object_array_add(errs, json_object_new_string(ab->errors[i]));
	json_object_object_add(j, "errors", errs);
	return j;
}
