/* policy_plan: NetworkPolicy semantics -> the desired content of the policy table (see
 * policy.h).  Pure: reads the store, allocates the plan, talks to nobody.
 *
 * The plan is rebuilt from the store when Pods, Namespaces or NetworkPolicies change; the
 * writer diffs it against the kernel, so a pod changing labels becomes a few set elements
 * (the sets are named after their selectors, the rules after the sets), not new rules. */
#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "policy/policy.h"

#define NS_NAME_LABEL "kubernetes.io/metadata.name"

/* ---- inputs ---- */

struct ctx {
	const struct store *st;
	size_t npods;
	const struct object **pods; /* every policed pod, cluster-wide */
	size_t npols;
	const struct object **pols;
	struct smap nslabels; /* namespace -> struct labels (with metadata.name) */
};

static int collect(const struct object *o, void *arg)
{
	struct ctx *c = arg;
	if (o->kind == KIND_NETWORKPOLICY) {
		c->pols = xrealloc(c->pols, (c->npols + 1) * sizeof(*c->pols));
		c->pols[c->npols++] = o;
		return 0;
	}
	const struct pod_obj *p = &o->pod;
	if (p->host_network || !p->nips || o->meta.deleting ||
	    (p->phase && (!strcmp(p->phase, "Succeeded") || !strcmp(p->phase, "Failed"))))
		return 0;
	c->pods = xrealloc(c->pods, (c->npods + 1) * sizeof(*c->pods));
	c->pods[c->npods++] = o;
	return 0;
}

static void labels_free_all(void *v)
{
	struct labels *l = v;
	for (size_t i = 0; i < l->n; i++) {
		free(l->kv[i].key);
		free(l->kv[i].value);
	}
	free(l->kv);
	free(l);
}

/* A namespace's labels as selectors see them: the object's plus the API server's
 * immutable kubernetes.io/metadata.name (also for a namespace with no object). */
static const struct labels *ns_labels(struct ctx *c, const char *ns)
{
	bool created;
	void **slot = smap_slot(&c->nslabels, ns, &created);
	if (*slot)
		return *slot;
	struct labels *l = xcalloc(1, sizeof(*l));
	const struct object *o = store_get(c->st, KIND_NAMESPACE, NULL, ns);
	size_t n = o ? o->meta.labels.n : 0;
	l->kv = xcalloc(n + 1, sizeof(*l->kv));
	bool put = false;
	for (size_t i = 0; i <= n; i++) {
		const struct kv *src = i < n ? &o->meta.labels.kv[i] : NULL;
		int cmp = src ? strcmp(src->key, NS_NAME_LABEL) : 1;
		if (!put && cmp >= 0) {
			l->kv[l->n].key = xstrdup(NS_NAME_LABEL);
			l->kv[l->n++].value = xstrdup(ns);
			put = true;
		}
		if (src && cmp != 0) {
			l->kv[l->n].key = xstrdup(src->key);
			l->kv[l->n++].value = xstrdup(src->value);
		}
	}
	*slot = l;
	return l;
}

static void ctx_init(struct ctx *c, const struct store *st)
{
	memset(c, 0, sizeof(*c));
	c->st = st;
	store_foreach(st, KIND_POD, collect, c);
	store_foreach(st, KIND_NETWORKPOLICY, collect, c);
}

static void ctx_free(struct ctx *c)
{
	free(c->pods);
	free(c->pols);
	smap_clear(&c->nslabels, labels_free_all);
	free(c->nslabels.b);
}

/* ---- semantics ---- */

static bool pol_selects(const struct object *pol, const struct object *pod, bool egress)
{
	if (strcmp(pol->meta.ns, pod->meta.ns))
		return false;
	if (egress ? !pol->np.egress_type : !pol->np.ingress_type)
		return false;
	return selector_matches(&pol->np.pod_selector, &pod->meta.labels);
}

/* Does a selector peer of policy `pol` select `pod`? (ipBlock peers select no pod.) */
static bool peer_selects(struct ctx *c, const struct object *pol, const struct np_peer *pe,
			 const struct object *pod)
{
	if (pe->has_ipblock)
		return false;
	if (pe->pod_selector.present && !selector_matches(&pe->pod_selector, &pod->meta.labels))
		return false;
	if (pe->namespace_selector.present)
		return selector_matches(&pe->namespace_selector, ns_labels(c, pod->meta.ns));
	return !strcmp(pod->meta.ns, pol->meta.ns);
}

static bool ipblock_has(const struct np_peer *pe, const struct ipaddr *a)
{
	if (!prefix_contains(&pe->cidr, a))
		return false;
	for (size_t i = 0; i < pe->nexcept; i++)
		if (prefix_contains(&pe->except[i], a))
			return false;
	return true;
}

static uint8_t l4_num(enum proto p)
{
	return p == PROTO_UDP ? IPPROTO_UDP : p == PROTO_SCTP ? IPPROTO_SCTP : IPPROTO_TCP;
}

/* The named port `name`/proto among a pod's container ports; 0 if it has none. */
static uint16_t pod_named_port(const struct object *pod, const char *name, enum proto proto)
{
	for (size_t i = 0; i < pod->pod.nports; i++) {
		const struct container_port *cp = &pod->pod.ports[i];
		if (cp->name && !strcmp(cp->name, name) && cp->proto == proto)
			return cp->port;
	}
	return 0;
}

/* ---- selectors in words and as set names ---- */

static void sel_text(const struct selector *s, char *buf, size_t size)
{
	size_t o = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < s->match_labels.n && o < size; i++)
		o += (size_t)snprintf(buf + o, size - o, "%s%s=%s", o ? "," : "",
				      s->match_labels.kv[i].key, s->match_labels.kv[i].value);
	static const char *const ops[] = {"in", "notin", "exists", "!exists"};
	for (size_t i = 0; i < s->nexprs && o < size; i++) {
		const struct sel_expr *e = &s->exprs[i];
		o += (size_t)snprintf(buf + o, size - o, "%s%s %s", o ? "," : "", e->key,
				      ops[e->op]);
		for (size_t j = 0; j < e->nvalues && o < size; j++)
			o += (size_t)snprintf(buf + o, size - o, "%s%s", j ? "|" : " (",
					      e->values[j]);
		if (e->nvalues && o < size)
			o += (size_t)snprintf(buf + o, size - o, ")");
	}
	if (!buf[0])
		snprintf(buf, size, "(all)");
}

/* "pods pod=a in namespace x", "every pod in namespaces team=b", ... */
static char *peer_text(const struct object *pol, const struct np_peer *pe)
{
	char a[IP_STRLEN], ps[512], ns[512];
	if (pe->has_ipblock) {
		char *s = xasprintf("addresses in %s", prefix_fmt(&pe->cidr, a));
		for (size_t i = 0; i < pe->nexcept; i++) {
			char *t = xasprintf("%s%s%s", s, i ? ", " : " except ",
					    prefix_fmt(&pe->except[i], a));
			free(s);
			s = t;
		}
		return s;
	}
	sel_text(&pe->pod_selector, ps, sizeof(ps));
	const char *pods = pe->pod_selector.present ? ps : "(all)";
	if (!pe->namespace_selector.present)
		return xasprintf("pods %s in namespace %s", pods, pol->meta.ns);
	sel_text(&pe->namespace_selector, ns, sizeof(ns));
	return xasprintf("pods %s in namespaces %s", pods, ns);
}

static char *set_name(const char *prefix, int family, const char *canon)
{
	return xasprintf("%s%d-%016llx", prefix, family == AF_INET ? 4 : 6,
			 (unsigned long long)fnv1a64(canon, strlen(canon), FNV_SEED));
}

/* ---- plan building ---- */

static void set_free(void *v)
{
	struct pol_set *s = v;
	free(s->v);
	free(s->what);
	free(s);
}

static void chain_free(void *v)
{
	struct pol_chain *c = v;
	for (size_t i = 0; i < c->nrules; i++) {
		free(c->rules[i].set);
		free(c->rules[i].why);
	}
	free(c->rules);
	for (size_t i = 0; i < c->npolicies; i++)
		free(c->policies[i]);
	free(c->policies);
	free(c->pod);
	free(c);
}

static int range_cmp(const void *a, const void *b)
{
	return ip_cmp(&((const struct pol_range *)a)->lo, &((const struct pol_range *)b)->lo);
}

typedef unsigned __int128 u128;

static u128 a2u(const struct ipaddr *a)
{
	u128 v = 0;
	for (int i = 0; i < ip_bytes(a->family); i++)
		v = (v << 8) | a->b[i];
	return v;
}

static struct ipaddr u2a(u128 v, int family)
{
	struct ipaddr a = {.family = family};
	for (int i = ip_bytes(family) - 1; i >= 0; i--, v >>= 8)
		a.b[i] = (uint8_t)v;
	return a;
}

static void prefix_bounds(const struct ipprefix *p, u128 *lo, u128 *hi)
{
	int bits = ip_maxlen(p->addr.family);
	u128 host = p->len >= bits ? 0 : (((u128)1 << (bits - p->len)) - 1);
	*lo = a2u(&p->addr) & ~host;
	*hi = *lo | host;
}

/* cidr minus except as sorted disjoint ranges */
static void ipblock_ranges(const struct np_peer *pe, struct pol_set *s)
{
	u128 lo, hi;
	prefix_bounds(&pe->cidr, &lo, &hi);
	struct {
		u128 lo, hi;
	} *ex = xcalloc(pe->nexcept + 1, sizeof(*ex));
	size_t nex = 0;
	for (size_t i = 0; i < pe->nexcept; i++)
		if (pe->except[i].addr.family == pe->cidr.addr.family)
			prefix_bounds(&pe->except[i], &ex[nex].lo, &ex[nex].hi), nex++;
	/* sort excepts by start (few: insertion sort) */
	for (size_t i = 1; i < nex; i++)
		for (size_t j = i; j > 0 && ex[j].lo < ex[j - 1].lo; j--) {
			u128 tl = ex[j].lo, th = ex[j].hi;
			ex[j] = ex[j - 1];
			ex[j - 1].lo = tl, ex[j - 1].hi = th;
		}
	int fam = pe->cidr.addr.family;
	u128 cur = lo;
	for (size_t i = 0; i <= nex; i++) {
		if (i < nex && ex[i].hi < cur)
			continue; /* inside an earlier except */
		u128 top = i < nex ? ex[i].lo : hi;
		if (i == nex || ex[i].lo > cur) {
			s->v = xrealloc(s->v, (s->n + 1) * sizeof(*s->v));
			s->v[s->n].lo = u2a(cur, fam);
			s->v[s->n++].hi = u2a(i < nex ? top - 1 : top, fam);
		}
		if (i == nex || ex[i].hi >= hi)
			break; /* the rest is excepted */
		cur = ex[i].hi + 1;
	}
	free(ex);
}

struct build {
	struct ctx c;
	struct pol_plan *p;
};

static char *ipblock_set(struct build *b, const struct np_peer *pe)
{
	char a[IP_STRLEN];
	char *canon = xstrdup(prefix_fmt(&pe->cidr, a));
	for (size_t i = 0; i < pe->nexcept; i++) {
		char *t = xasprintf("%s!%s", canon, prefix_fmt(&pe->except[i], a));
		free(canon);
		canon = t;
	}
	char *name = set_name("b", pe->cidr.addr.family, canon);
	free(canon);
	bool created;
	void **slot = smap_slot(&b->p->sets, name, &created);
	if (!*slot) {
		struct pol_set *s = xcalloc(1, sizeof(*s));
		s->family = pe->cidr.addr.family;
		s->interval = true;
		s->what = peer_text(NULL, pe);
		ipblock_ranges(pe, s);
		*slot = s;
	}
	return name;
}

static char *peer_set(struct build *b, const struct object *pol, const struct np_peer *pe,
		      int family)
{
	char ps[512] = "*", ns[512] = "";
	if (pe->pod_selector.present)
		sel_text(&pe->pod_selector, ps, sizeof(ps));
	if (pe->namespace_selector.present)
		sel_text(&pe->namespace_selector, ns, sizeof(ns));
	char *canon = pe->namespace_selector.present ? xasprintf("N:%s|P:%s", ns, ps)
						      : xasprintf("n:%s|P:%s", pol->meta.ns, ps);
	char *name = set_name("p", family, canon);
	free(canon);
	bool created;
	void **slot = smap_slot(&b->p->sets, name, &created);
	if (!*slot) {
		struct pol_set *s = xcalloc(1, sizeof(*s));
		s->family = family;
		s->what = peer_text(pol, pe);
		for (size_t i = 0; i < b->c.npods; i++) {
			const struct object *q = b->c.pods[i];
			if (!peer_selects(&b->c, pol, pe, q))
				continue;
			for (size_t k = 0; k < q->pod.nips; k++)
				if (q->pod.ips[k].family == family) {
					s->v = xrealloc(s->v, (s->n + 1) * sizeof(*s->v));
					s->v[s->n].lo = s->v[s->n].hi = q->pod.ips[k];
					s->n++;
				}
		}
		if (s->n > 1)
			qsort(s->v, s->n, sizeof(*s->v), range_cmp);
		size_t j = 0;
		for (size_t i = 0; i < s->n; i++)
			if (!j || !ip_eq(&s->v[j - 1].lo, &s->v[i].lo))
				s->v[j++] = s->v[i];
		s->n = j;
		*slot = s;
	}
	return name;
}

static void add_rule(struct pol_chain *ch, int family, const char *set, const struct ipaddr *addr,
		     uint8_t l4, uint16_t lo, uint16_t hi, const char *why)
{
	ch->rules = xrealloc(ch->rules, (ch->nrules + 1) * sizeof(*ch->rules));
	struct pol_rule *r = &ch->rules[ch->nrules++];
	memset(r, 0, sizeof(*r));
	r->family = family;
	r->set = xstrdup(set);
	if (addr)
		r->addr = *addr;
	r->l4 = l4;
	r->lo = lo;
	r->hi = hi;
	r->why = xstrdup(why);
}

/* One port entry of a rule, resolved for destination pod `dst` (NULL: not a pod). false:
 * matches nothing there (a named port the pod does not have). */
static bool port_resolve(const struct np_port *pt, const struct object *dst, uint8_t *l4,
			 uint16_t *lo, uint16_t *hi)
{
	*l4 = l4_num(pt->proto);
	if (pt->port_name) {
		uint16_t v = dst ? pod_named_port(dst, pt->port_name, pt->proto) : 0;
		*lo = *hi = v;
		return v != 0;
	}
	*lo = pt->port;
	*hi = pt->end_port ? pt->end_port : pt->port;
	return true;
}

/* Egress to a named port: per peer pod, its own number (a literal-address rule). */
static void egress_named(struct build *b, struct pol_chain *ch, int family, const struct object *pol,
			 const struct np_peer *pe, const struct np_port *pt, const char *why)
{
	for (size_t i = 0; i < b->c.npods; i++) {
		const struct object *q = b->c.pods[i];
		if (pe && !peer_selects(&b->c, pol, pe, q))
			continue;
		uint8_t l4;
		uint16_t lo, hi;
		if (!port_resolve(pt, q, &l4, &lo, &hi))
			continue;
		for (size_t k = 0; k < q->pod.nips; k++)
			if (q->pod.ips[k].family == family)
				add_rule(ch, family, NULL, &q->pod.ips[k], l4, lo, hi, why);
	}
}

static void compile_rule(struct build *b, struct pol_chain *ch, const struct object *pod,
			 const struct object *pol, const struct np_rule *r, size_t ri, bool egress,
			 int family)
{
	char *why = xasprintf("%s/%s %s[%zu]", pol->meta.ns, pol->meta.name,
			      egress ? "egress" : "ingress", ri);
	size_t npe = r->npeers ? r->npeers : 1, npt = r->nports ? r->nports : 1;
	for (size_t i = 0; i < npe; i++) {
		const struct np_peer *pe = r->npeers ? &r->peers[i] : NULL;
		char *set = NULL;
		if (pe && pe->has_ipblock) {
			if (pe->cidr.addr.family != family)
				continue;
			set = ipblock_set(b, pe);
		}
		for (size_t j = 0; j < npt; j++) {
			const struct np_port *pt = r->nports ? &r->ports[j] : NULL;
			/* a selector's set only where a rule uses it (not egress named ports) */
			if (pe && !pe->has_ipblock && !set && !(pt && pt->port_name && egress))
				set = peer_set(b, pol, pe, family);
			if (!pt) {
				add_rule(ch, family, set, NULL, 0, 0, 0, why);
				continue;
			}
			if (pt->port_name && egress) {
				if (!pe || !pe->has_ipblock)
					egress_named(b, ch, family, pol, pe, pt, why);
				continue;
			}
			uint8_t l4;
			uint16_t lo, hi;
			if (port_resolve(pt, egress ? NULL : pod, &l4, &lo, &hi))
				add_rule(ch, family, set, NULL, l4, lo, hi, why);
		}
		free(set);
	}
	free(why);
}

static uint64_t chain_sig(const struct pol_chain *ch)
{
	static const char layout[] = "chain layout 2"; /* bump when the rules' shape changes */
	uint64_t h = fnv1a64(layout, sizeof(layout), FNV_SEED);
	h = fnv1a64(&ch->egress, sizeof(ch->egress), h);
	for (size_t i = 0; i < ch->nrules; i++) {
		const struct pol_rule *r = &ch->rules[i];
		h = fnv1a64(&r->family, sizeof(r->family), h);
		if (r->set)
			h = fnv1a64(r->set, strlen(r->set), h);
		h = fnv1a64(r->addr.b, 16, h);
		h = fnv1a64(&r->addr.family, sizeof(r->addr.family), h);
		uint8_t t[5] = {r->l4, (uint8_t)(r->lo >> 8), (uint8_t)r->lo, (uint8_t)(r->hi >> 8),
				(uint8_t)r->hi};
		h = fnv1a64(t, sizeof(t), h);
	}
	for (size_t i = 0; i < ch->npolicies; i++)
		h = fnv1a64(ch->policies[i], strlen(ch->policies[i]) + 1, h);
	return h ? h : 1;
}

static int addr_cmp(const void *a, const void *b)
{
	return ip_cmp(a, b);
}

static void plan_pod(struct build *b, const struct object *pod)
{
	struct pol_plan *p = b->p;
	for (int dir = 0; dir < 2; dir++) {
		bool egress = dir == 1;
		struct pol_chain *ch = NULL;
		for (size_t i = 0; i < b->c.npols; i++) {
			const struct object *pol = b->c.pols[i];
			if (!pol_selects(pol, pod, egress))
				continue;
			if (!ch) {
				ch = xcalloc(1, sizeof(*ch));
				ch->egress = egress;
				ch->pod = xasprintf("%s/%s", pod->meta.ns, pod->meta.name);
			}
			ch->policies = xrealloc(ch->policies, (ch->npolicies + 1) * sizeof(char *));
			ch->policies[ch->npolicies++] =
			    xasprintf("%s/%s", pol->meta.ns, pol->meta.name);
			size_t nr = egress ? pol->np.negress : pol->np.ningress;
			const struct np_rule *rules = egress ? pol->np.egress : pol->np.ingress;
			for (int fam = 0; fam < 2; fam++) {
				int family = fam ? AF_INET6 : AF_INET;
				bool has = false;
				for (size_t k = 0; k < pod->pod.nips; k++)
					has |= pod->pod.ips[k].family == family;
				for (size_t r = 0; has && r < nr; r++)
					compile_rule(b, ch, pod, pol, &rules[r], r, egress, family);
			}
		}
		if (!ch)
			continue;
		ch->sig = chain_sig(ch);
		char *name = xasprintf("%s-%s", egress ? "eg" : "in", ch->pod);
		bool created;
		*smap_slot(&p->chains, name, &created) = ch;
		for (size_t k = 0; k < pod->pod.nips; k++) {
			p->elems = xrealloc(p->elems, (p->nelems + 1) * sizeof(*p->elems));
			p->elems[p->nelems++] = (struct pol_elem){egress, pod->pod.ips[k],
								  xstrdup(name)};
		}
		free(name);
	}
	for (size_t k = 0; k < pod->pod.nips; k++) {
		p->known = xrealloc(p->known, (p->nknown + 1) * sizeof(*p->known));
		p->known[p->nknown++] = pod->pod.ips[k];
	}
}

struct pol_plan *pol_plan_build(const struct store *st, const char *node)
{
	struct build b;
	ctx_init(&b.c, st);
	b.p = xcalloc(1, sizeof(*b.p));
	b.p->npolicies = b.c.npols;
	b.p->enforcing = b.c.npols > 0;
	for (size_t i = 0; i < b.c.npods; i++) {
		const struct object *pod = b.c.pods[i];
		if (node && (!pod->pod.node_name || strcmp(pod->pod.node_name, node)))
			continue;
		plan_pod(&b, pod);
	}
	if (b.p->nknown > 1)
		qsort(b.p->known, b.p->nknown, sizeof(*b.p->known), addr_cmp);
	ctx_free(&b.c);
	return b.p;
}

void pol_plan_free(struct pol_plan *p)
{
	if (!p)
		return;
	smap_clear(&p->chains, chain_free);
	smap_clear(&p->sets, set_free);
	free(p->chains.b);
	free(p->sets.b);
	for (size_t i = 0; i < p->nelems; i++)
		free(p->elems[i].chain);
	free(p->elems);
	free(p->known);
	free(p);
}

/* ---- one flow, in words ---- */

static char *ports_text(const struct np_rule *r)
{
	if (!r->nports)
		return xstrdup("any port");
	char *s = xstrdup("");
	for (size_t i = 0; i < r->nports; i++) {
		const struct np_port *pt = &r->ports[i];
		char num[32];
		if (pt->port_name)
			snprintf(num, sizeof(num), "%s", pt->port_name);
		else if (!pt->port)
			snprintf(num, sizeof(num), "any port");
		else if (pt->end_port)
			snprintf(num, sizeof(num), "%u-%u", pt->port, pt->end_port);
		else
			snprintf(num, sizeof(num), "%u", pt->port);
		char *t = xasprintf("%s%s%s/%s", s, i ? ", " : "", num, proto_name(pt->proto));
		free(s);
		s = t;
	}
	return s;
}

static char *rule_text(const struct object *pol, const struct np_rule *r, bool egress)
{
	char *peers = xstrdup("");
	if (!r->npeers) {
		free(peers);
		peers = xstrdup(egress ? "anywhere" : "anyone");
	}
	for (size_t i = 0; i < r->npeers; i++) {
		char *pt = peer_text(pol, &r->peers[i]);
		char *t = xasprintf("%s%s%s", peers, i ? " or " : "", pt);
		free(pt);
		free(peers);
		peers = t;
	}
	char *ports = ports_text(r);
	char *s = xasprintf("%s %s on %s", egress ? "to" : "from", peers, ports);
	free(peers);
	free(ports);
	return s;
}

static bool port_matches(const struct np_rule *r, const struct object *dst, uint16_t port,
			 enum proto proto)
{
	if (!r->nports)
		return true;
	for (size_t i = 0; i < r->nports; i++) {
		const struct np_port *pt = &r->ports[i];
		if (pt->proto != proto)
			continue;
		if (pt->port_name) {
			if (dst && pod_named_port(dst, pt->port_name, proto) == port)
				return true;
		} else if (!pt->port || (port >= pt->port &&
					 port <= (pt->end_port ? pt->end_port : pt->port))) {
			return true;
		}
	}
	return false;
}

static bool peer_matches(struct ctx *c, const struct object *pol, const struct np_rule *r,
			 const struct object *peer, const struct ipaddr *ip)
{
	if (!r->npeers)
		return true;
	for (size_t i = 0; i < r->npeers; i++) {
		const struct np_peer *pe = &r->peers[i];
		if (pe->has_ipblock ? ipblock_has(pe, ip) : (peer && peer_selects(c, pol, pe, peer)))
			return true;
	}
	return false;
}

struct flow_end {
	const struct object *pod; /* a policed pod, or NULL */
	struct ipaddr ip;
	char *label;
};

/* One direction: is `self` isolated, and does a rule allow the peer? Appends a line. */
static bool dir_explain(struct ctx *c, const struct flow_end *self, const struct flow_end *peer,
			bool egress, uint16_t port, enum proto proto, char **text)
{
	const char *d = egress ? "egress" : "ingress";
	char *line;
	bool ok = true;
	if (!self->pod) {
		line = xasprintf("%s of %s: not a pod twill polices (no policy applies) -> allowed",
				 d, self->label);
		goto out;
	}
	char *by = xstrdup("");
	const char *allowed_by = NULL;
	char *allowed_rule = NULL;
	size_t nsel = 0;
	for (size_t i = 0; i < c->npols; i++) {
		const struct object *pol = c->pols[i];
		if (!pol_selects(pol, self->pod, egress))
			continue;
		char *t = xasprintf("%s%s%s/%s", by, nsel++ ? ", " : "", pol->meta.ns, pol->meta.name);
		free(by);
		by = t;
		size_t nr = egress ? pol->np.negress : pol->np.ningress;
		const struct np_rule *rules = egress ? pol->np.egress : pol->np.ingress;
		for (size_t r = 0; r < nr && !allowed_rule; r++) {
			const struct object *dst = egress ? peer->pod : self->pod;
			if (peer_matches(c, pol, &rules[r], peer->pod, &peer->ip) &&
			    port_matches(&rules[r], dst, port, proto)) {
				char *rt = rule_text(pol, &rules[r], egress);
				allowed_rule = xasprintf("%s/%s %s rule %zu (%s)", pol->meta.ns,
							 pol->meta.name, d, r + 1, rt);
				free(rt);
				allowed_by = pol->meta.name;
			}
		}
	}
	if (!nsel)
		line = xasprintf("%s of %s: not isolated (no NetworkPolicy in namespace %s "
				 "selects it for %s) -> allowed",
				 d, self->label, self->pod->meta.ns, egress ? "Egress" : "Ingress");
	else if (allowed_by)
		line = xasprintf("%s of %s: isolated by %s; allowed by %s", d, self->label, by,
				 allowed_rule);
	else {
		line = xasprintf("%s of %s: isolated by %s, and no %s rule of %s allows %s %s port "
				 "%u/%s -> denied (dropped, counted in chain %s-%s/%s)",
				 d, self->label, by, d, nsel > 1 ? "these policies" : "that policy",
				 egress ? "to" : "from", peer->label, port, proto_name(proto),
				 egress ? "eg" : "in", self->pod->meta.ns, self->pod->meta.name);
		ok = false;
	}
	free(by);
	free(allowed_rule);
out:;
	char *t = xasprintf("%s  %s\n", *text, line);
	free(*text);
	free(line);
	*text = t;
	return ok;
}

static int resolve_end(struct ctx *c, const char *s, int family, struct flow_end *e, char **err)
{
	memset(e, 0, sizeof(*e));
	char a[IP_STRLEN];
	if (ip_parse(s, &e->ip) == 0) {
		for (size_t i = 0; i < c->npods && !e->pod; i++)
			for (size_t k = 0; k < c->pods[i]->pod.nips; k++)
				if (ip_eq(&c->pods[i]->pod.ips[k], &e->ip))
					e->pod = c->pods[i];
		e->label = e->pod ? xasprintf("%s/%s (%s)", e->pod->meta.ns, e->pod->meta.name, s)
				  : xstrdup(s);
		return 0;
	}
	const char *slash = strchr(s, '/');
	char *ns = slash ? xasprintf("%.*s", (int)(slash - s), s) : xstrdup("default");
	const char *name = slash ? slash + 1 : s;
	const struct object *o = store_get(c->st, KIND_POD, ns, name);
	free(ns);
	if (!o) {
		*err = xasprintf("no pod %s (give namespace/name or an address)", s);
		return -ENOENT;
	}
	for (size_t i = 0; i < c->npods; i++)
		if (c->pods[i] == o)
			e->pod = o;
	if (!o->pod.nips) {
		*err = xasprintf("pod %s has no address yet", s);
		return -ENOENT;
	}
	e->ip = o->pod.ips[0];
	for (size_t k = 0; k < o->pod.nips; k++)
		if (o->pod.ips[k].family == family)
			e->ip = o->pod.ips[k];
	e->label = xasprintf("%s/%s (%s%s)", o->meta.ns, o->meta.name, ip_fmt(&e->ip, a),
			     o->pod.host_network ? ", hostNetwork" : "");
	return 0;
}

int policy_explain(const struct store *st, const char *src, const char *dst, uint16_t port,
		   enum proto proto, struct pol_verdict *out)
{
	memset(out, 0, sizeof(*out));
	struct ctx c;
	ctx_init(&c, st);
	struct flow_end s = {0}, d = {0};
	char *err = NULL;
	int r = resolve_end(&c, dst, 0, &d, &err);
	if (r == 0)
		r = resolve_end(&c, src, d.ip.family, &s, &err);
	if (r == 0 && s.ip.family != d.ip.family) {
		err = xasprintf("%s and %s have no address of the same family", src, dst);
		r = -EINVAL;
	}
	if (r < 0) {
		out->text = err;
		goto done;
	}
	char *text = xstrdup("");
	bool same = s.pod && d.pod && s.pod == d.pod;
	bool eg = dir_explain(&c, &s, &d, true, port, proto, &text);
	bool in = dir_explain(&c, &d, &s, false, port, proto, &text);
	out->allowed = same || (eg && in);
	out->text = xasprintf("%s -> %s port %u/%s: %s\n%s%s", s.label, d.label, port,
			      proto_name(proto), out->allowed ? "ALLOWED" : "DENIED", text,
			      same ? "  (a pod reaching itself is never filtered)\n"
				   : "  (replies of an allowed connection always pass; the pod's own "
				     "node may always reach it)\n");
	free(text);
done:
	free(s.label);
	free(d.label);
	ctx_free(&c);
	return r;
}

/* ---- policy.json ---- */

static json_object *jstr(const char *s)
{
	return json_object_new_string(s ? s : "");
}

char *pol_plan_json(const struct pol_plan *p, const char *node, const char *manifests)
{
	json_object *j = json_object_new_object();
	json_object_object_add(j, "node", jstr(node));
	json_object_object_add(j, "manifests", jstr(manifests));
	json_object_object_add(j, "table", jstr("inet " POLICY_TABLE));
	json_object_object_add(j, "policies", json_object_new_int64((int64_t)p->npolicies));
	json_object_object_add(j, "enforcing", json_object_new_boolean(p->enforcing));
	json_object *chains = json_object_new_array();
	size_t n;
	const char **keys = smap_keys(&p->chains, &n);
	for (size_t i = 0; i < n; i++) {
		const struct pol_chain *ch = smap_get(&p->chains, keys[i]);
		json_object *c = json_object_new_object();
		json_object_object_add(c, "chain", jstr(keys[i]));
		json_object_object_add(c, "pod", jstr(ch->pod));
		json_object_object_add(c, "direction", jstr(ch->egress ? "egress" : "ingress"));
		json_object *pols = json_object_new_array();
		for (size_t k = 0; k < ch->npolicies; k++)
			json_object_array_add(pols, jstr(ch->policies[k]));
		json_object_object_add(c, "policies", pols);
		json_object_object_add(c, "rules", json_object_new_int64((int64_t)ch->nrules));
		json_object_array_add(chains, c);
	}
	free(keys);
	json_object_object_add(j, "chains", chains);
	json_object *sets = json_object_new_array();
	keys = smap_keys(&p->sets, &n);
	for (size_t i = 0; i < n; i++) {
		const struct pol_set *s = smap_get(&p->sets, keys[i]);
		json_object *o = json_object_new_object();
		json_object_object_add(o, "set", jstr(keys[i]));
		json_object_object_add(o, "what", jstr(s->what));
		json_object_object_add(o, "size", json_object_new_int64((int64_t)s->n));
		json_object_array_add(sets, o);
	}
	free(keys);
	json_object_object_add(j, "sets", sets);
	char *out = xasprintf("%s\n", json_object_to_json_string_ext(
					  j, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(j);
	return out;
}
