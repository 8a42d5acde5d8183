/* model: kinds, protocols, labels and label selectors, and the life cycle of typed objects
 * (free, deep copy, identity, content hash).
 *
 * Selector semantics follow Kubernetes' metav1.LabelSelector (apimachinery
 * pkg/apis/meta/v1/helpers.go LabelSelectorAsSelector): a selector that was not given
 * selects nothing, a given but empty one selects everything, and all matchLabels and
 * matchExpressions must hold (NotIn and DoesNotExist hold when the key is absent). */
#include "model/model.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lib/util.h"

static const char *const kind_names[KIND__COUNT] = {
    [KIND_NAMESPACE] = "Namespace",
    [KIND_NODE] = "Node",
    [KIND_POD] = "Pod",
    [KIND_SERVICE] = "Service",
    [KIND_ENDPOINTSLICE] = "EndpointSlice",
    [KIND_NETWORKPOLICY] = "NetworkPolicy",
    [KIND_IPADDRESSPOOL] = "IPAddressPool",
    [KIND_BGPCONFIGURATION] = "BGPConfiguration",
    [KIND_BGPPEER] = "BGPPeer",
    [KIND_BGPADVERTISEMENT] = "BGPAdvertisement",
    [KIND_SECRET] = "Secret",
};

const char *kind_name(enum kind k)
{
	return (unsigned)k < KIND__COUNT ? kind_names[k] : "?";
}

int kind_parse(const char *s)
{
	if (!s)
		return -1;
	for (int k = 0; k < KIND__COUNT; k++)
		if (!strcmp(s, kind_names[k]))
			return k;
	return -1;
}

bool kind_namespaced(enum kind k)
{
	return k != KIND_NAMESPACE && k != KIND_NODE && k != KIND_BGPCONFIGURATION &&
	       k != KIND_BGPPEER && (unsigned)k < KIND__COUNT;
}

static const char *const proto_names[] = {"TCP", "UDP", "SCTP"};

const char *proto_name(enum proto p)
{
	return (unsigned)p < ARRAY_SIZE(proto_names) ? proto_names[p] : "?";
}

const char *ip_family_policy_name(enum ip_family_policy p)
{
	static const char *const names[] = {"SingleStack", "PreferDualStack", "RequireDualStack"};
	return (unsigned)p < ARRAY_SIZE(names) ? names[p] : "?";
}

const char *ip_family_name(int family)
{
	return family == AF_INET ? "IPv4" : family == AF_INET6 ? "IPv6" : "?";
}

int proto_parse(const char *s)
{
	if (!s)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(proto_names); i++)
		if (!strcmp(s, proto_names[i]))
			return (int)i;
	return -1;
}

const char *labels_get(const struct labels *l, const char *key)
{
	if (!l || !key)
		return NULL;
	size_t lo = 0, hi = l->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(key, l->kv[mid].key);
		if (!c)
			return l->kv[mid].value;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static bool expr_has_value(const struct sel_expr *e, const char *v)
{
	for (size_t i = 0; i < e->nvalues; i++)
		if (!strcmp(e->values[i], v))
			return true;
	return false;
}

bool selector_matches(const struct selector *s, const struct labels *l)
{
	if (!s || !s->present)
		return false;
	for (size_t i = 0; i < s->match_labels.n; i++) {
		const char *v = labels_get(l, s->match_labels.kv[i].key);
		if (!v || strcmp(v, s->match_labels.kv[i].value))
			return false;
	}
	for (size_t i = 0; i < s->nexprs; i++) {
		const struct sel_expr *e = &s->exprs[i];
		const char *v = labels_get(l, e->key);
		bool ok;
		switch (e->op) {
		case SEL_IN:
			ok = v && expr_has_value(e, v);
			break;
		case SEL_NOT_IN:
			ok = !v || !expr_has_value(e, v);
			break;
		case SEL_EXISTS:
			ok = v != NULL;
			break;
		case SEL_NOT_EXISTS:
			ok = v == NULL;
			break;
		default:
			ok = false;
		}
		if (!ok)
			return false;
	}
	return true;
}

const struct ipaddr *node_ip(const struct node_obj *n, int family)
{
	static const enum node_addr_type types[] = {NODE_ADDR_INTERNAL, NODE_ADDR_EXTERNAL};
	int fams[2] = {family, 0};
	if (family == AF_UNSPEC) {
		fams[0] = AF_INET;
		fams[1] = AF_INET6;
	}
	for (size_t t = 0; t < ARRAY_SIZE(types); t++)
		for (size_t f = 0; f < 2 && fams[f]; f++)
			for (size_t i = 0; i < n->naddrs; i++)
				if (n->addrs[i].type == types[t] &&
				    n->addrs[i].ip.family == fams[f])
					return &n->addrs[i].ip;
	return NULL;
}

/* ---- free ---- */

static void labels_free(struct labels *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->kv[i].key);
		free(l->kv[i].value);
	}
	free(l->kv);
	l->kv = NULL;
	l->n = 0;
}

static void selector_free(struct selector *s)
{
	labels_free(&s->match_labels);
	for (size_t i = 0; i < s->nexprs; i++) {
		free(s->exprs[i].key);
		for (size_t j = 0; j < s->exprs[i].nvalues; j++)
			free(s->exprs[i].values[j]);
		free(s->exprs[i].values);
	}
	free(s->exprs);
}

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void rules_free(struct np_rule *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < r[i].nports; j++)
			free(r[i].ports[j].port_name);
		free(r[i].ports);
		for (size_t j = 0; j < r[i].npeers; j++) {
			selector_free(&r[i].peers[j].pod_selector);
			selector_free(&r[i].peers[j].namespace_selector);
			free(r[i].peers[j].except);
		}
		free(r[i].peers);
	}
	free(r);
}

void object_free(struct object *o)
{
	if (!o)
		return;
	free(o->meta.name);
	free(o->meta.uid); /* ns and file are interned */
	labels_free(&o->meta.labels);
	labels_free(&o->meta.annotations);
	switch (o->kind) {
	case KIND_NODE:
		for (size_t i = 0; i < o->node.naddrs; i++)
			free(o->node.addrs[i].text);
		free(o->node.addrs);
		break;
	case KIND_POD:
		free(o->pod.node_name);
		for (size_t i = 0; i < o->pod.nports; i++)
			free(o->pod.ports[i].name);
		free(o->pod.ports);
		free(o->pod.phase);
		break;
	case KIND_SERVICE:
		selector_free(&o->svc.selector);
		for (size_t i = 0; i < o->svc.nports; i++) {
			free(o->svc.ports[i].name);
			free(o->svc.ports[i].target_port_name);
			free(o->svc.ports[i].app_protocol);
		}
		free(o->svc.ports);
		free(o->svc.external_ips);
		free(o->svc.lb_ips);
		free(o->svc.external_name);
		break;
	case KIND_ENDPOINTSLICE:
		free(o->eps.service);
		free(o->eps.managed_by);
		free(o->eps.addr_pool);
		for (size_t i = 0; i < o->eps.nendpoints; i++) {
			struct endpoint *e = &o->eps.endpoints[i];
			if (!o->eps.addr_pool)
				free(e->addrs);
			/* node_name is interned */
			free(e->target_pod);
			free(e->hostname);
			free(e->zone);
		}
		free(o->eps.endpoints);
		for (size_t i = 0; i < o->eps.nports; i++)
			free(o->eps.ports[i].name);
		free(o->eps.ports);
		break;
	case KIND_NETWORKPOLICY:
		selector_free(&o->np.pod_selector);
		rules_free(o->np.ingress, o->np.ningress);
		rules_free(o->np.egress, o->np.negress);
		break;
	case KIND_IPADDRESSPOOL:
		free(o->pool.cidrs);
		break;
	case KIND_BGPCONFIGURATION:
		free(o->bgpconf.svc_cluster);
		free(o->bgpconf.svc_external);
		free(o->bgpconf.svc_lb);
		break;
	case KIND_BGPPEER:
		free(o->bgppeer.node);
		free(o->bgppeer.node_selector);
		free(o->bgppeer.peer_selector);
		free(o->bgppeer.password);
		free(o->bgppeer.password_secret);
		free(o->bgppeer.password_key);
		free(o->bgppeer.source_address);
		break;
	case KIND_BGPADVERTISEMENT:
		strv_free(o->bgpadv.pools, o->bgpadv.npools);
		strv_free(o->bgpadv.peers, o->bgpadv.npeers);
		free(o->bgpadv.comm);
		free(o->bgpadv.lcomm);
		for (size_t i = 0; i < o->bgpadv.nnode_selectors; i++)
			selector_free(&o->bgpadv.node_selectors[i]);
		free(o->bgpadv.node_selectors);
		break;
	case KIND_SECRET:
		labels_free(&o->secret.data);
		break;
	default:
		break;
	}
	free(o);
}

/* ---- clone ---- */

static void *memdup(const void *p, size_t n)
{
	if (!p || !n)
		return NULL;
	void *d = xmalloc(n);
	memcpy(d, p, n);
	return d;
}

static void labels_copy(struct labels *dst, const struct labels *src)
{
	dst->n = src->n;
	dst->kv = src->n ? xcalloc(src->n, sizeof(*dst->kv)) : NULL;
	for (size_t i = 0; i < src->n; i++) {
		dst->kv[i].key = xstrdup(src->kv[i].key);
		dst->kv[i].value = xstrdup(src->kv[i].value);
	}
}

static char **strv_copy(char *const *v, size_t n)
{
	if (!n)
		return NULL;
	char **c = xcalloc(n, sizeof(*c));
	for (size_t i = 0; i < n; i++)
		c[i] = xstrdup(v[i]);
	return c;
}

static void selector_copy(struct selector *dst, const struct selector *src)
{
	dst->present = src->present;
	labels_copy(&dst->match_labels, &src->match_labels);
	dst->nexprs = src->nexprs;
	dst->exprs = src->nexprs ? xcalloc(src->nexprs, sizeof(*dst->exprs)) : NULL;
	for (size_t i = 0; i < src->nexprs; i++) {
		const struct sel_expr *s = &src->exprs[i];
		struct sel_expr *d = &dst->exprs[i];
		d->key = xstrdup(s->key);
		d->op = s->op;
		d->nvalues = s->nvalues;
		d->values = s->nvalues ? xcalloc(s->nvalues, sizeof(char *)) : NULL;
		for (size_t j = 0; j < s->nvalues; j++)
			d->values[j] = xstrdup(s->values[j]);
	}
}

static struct np_rule *rules_copy(const struct np_rule *src, size_t n)
{
	if (!n)
		return NULL;
	struct np_rule *r = xcalloc(n, sizeof(*r));
	for (size_t i = 0; i < n; i++) {
		r[i].nports = src[i].nports;
		r[i].ports = memdup(src[i].ports, src[i].nports * sizeof(*r[i].ports));
		for (size_t j = 0; j < r[i].nports; j++)
			r[i].ports[j].port_name = xstrdup(src[i].ports[j].port_name);
		r[i].npeers = src[i].npeers;
		r[i].peers = memdup(src[i].peers, src[i].npeers * sizeof(*r[i].peers));
		for (size_t j = 0; j < r[i].npeers; j++) {
			const struct np_peer *sp = &src[i].peers[j];
			struct np_peer *dp = &r[i].peers[j];
			selector_copy(&dp->pod_selector, &sp->pod_selector);
			selector_copy(&dp->namespace_selector, &sp->namespace_selector);
			dp->except = memdup(sp->except, sp->nexcept * sizeof(*sp->except));
		}
	}
	return r;
}

size_t object_size(enum kind k)
{
	switch (k) {
	case KIND_ENDPOINTSLICE:
		return offsetof(struct object, eps) + sizeof(struct endpointslice_obj);
	case KIND_POD:
		return offsetof(struct object, pod) + sizeof(struct pod_obj);
	default:
		return sizeof(struct object);
	}
}

struct object *object_alloc(enum kind k)
{
	struct object *o = xcalloc(1, object_size(k));
	o->kind = k;
	return o;
}

struct object *object_clone(const struct object *o)
{
	if (!o)
		return NULL;
	struct object *c = xmalloc(object_size(o->kind));
	memcpy(c, o, object_size(o->kind)); /* scalars; every pointer is replaced below */
	c->meta.name = xstrdup(o->meta.name);
	c->meta.ns = o->meta.ns;
	c->meta.uid = xstrdup(o->meta.uid);
	c->meta.file = o->meta.file;
	labels_copy(&c->meta.labels, &o->meta.labels);
	labels_copy(&c->meta.annotations, &o->meta.annotations);
	switch (o->kind) {
	case KIND_NODE:
		c->node.addrs = memdup(o->node.addrs, o->node.naddrs * sizeof(*o->node.addrs));
		for (size_t i = 0; i < o->node.naddrs; i++)
			c->node.addrs[i].text = xstrdup(o->node.addrs[i].text);
		break;
	case KIND_POD:
		c->pod.node_name = xstrdup(o->pod.node_name);
		c->pod.phase = xstrdup(o->pod.phase);
		c->pod.ports = memdup(o->pod.ports, o->pod.nports * sizeof(*o->pod.ports));
		for (size_t i = 0; i < o->pod.nports; i++)
			c->pod.ports[i].name = xstrdup(o->pod.ports[i].name);
		break;
	case KIND_SERVICE:
		selector_copy(&c->svc.selector, &o->svc.selector);
		c->svc.ports = memdup(o->svc.ports, o->svc.nports * sizeof(*o->svc.ports));
		for (size_t i = 0; i < o->svc.nports; i++) {
			c->svc.ports[i].name = xstrdup(o->svc.ports[i].name);
			c->svc.ports[i].target_port_name =
			    xstrdup(o->svc.ports[i].target_port_name);
			c->svc.ports[i].app_protocol = xstrdup(o->svc.ports[i].app_protocol);
		}
		c->svc.external_ips =
		    memdup(o->svc.external_ips, o->svc.nexternal_ips * sizeof(struct ipaddr));
		c->svc.lb_ips = memdup(o->svc.lb_ips, o->svc.nlb_ips * sizeof(struct ipaddr));
		c->svc.external_name = xstrdup(o->svc.external_name);
		break;
	case KIND_ENDPOINTSLICE:
		c->eps.service = xstrdup(o->eps.service);
		c->eps.managed_by = xstrdup(o->eps.managed_by);
		c->eps.endpoints =
		    memdup(o->eps.endpoints, o->eps.nendpoints * sizeof(*o->eps.endpoints));
		c->eps.addr_pool =
		    memdup(o->eps.addr_pool, o->eps.naddr_pool * sizeof(*o->eps.addr_pool));
		for (size_t i = 0; i < o->eps.nendpoints; i++) {
			const struct endpoint *s = &o->eps.endpoints[i];
			struct endpoint *d = &c->eps.endpoints[i];
			d->addrs = o->eps.addr_pool && s->addrs
				       ? c->eps.addr_pool + (s->addrs - o->eps.addr_pool)
				       : memdup(s->addrs, s->naddrs * sizeof(*s->addrs));
			d->node_name = s->node_name; /* interned */
			d->target_pod = xstrdup(s->target_pod);
			d->hostname = xstrdup(s->hostname);
			d->zone = xstrdup(s->zone);
		}
		c->eps.ports = memdup(o->eps.ports, o->eps.nports * sizeof(*o->eps.ports));
		for (size_t i = 0; i < o->eps.nports; i++)
			c->eps.ports[i].name = xstrdup(o->eps.ports[i].name);
		break;
	case KIND_NETWORKPOLICY:
		selector_copy(&c->np.pod_selector, &o->np.pod_selector);
		c->np.ingress = rules_copy(o->np.ingress, o->np.ningress);
		c->np.egress = rules_copy(o->np.egress, o->np.negress);
		break;
	case KIND_IPADDRESSPOOL:
		c->pool.cidrs = memdup(o->pool.cidrs, o->pool.nranges * sizeof(*o->pool.cidrs));
		break;
	case KIND_BGPCONFIGURATION: {
		const struct bgpconfig_obj *b = &o->bgpconf;
		c->bgpconf.svc_cluster = memdup(b->svc_cluster, b->nsvc_cluster * sizeof(struct ipprefix));
		c->bgpconf.svc_external =
		    memdup(b->svc_external, b->nsvc_external * sizeof(struct ipprefix));
		c->bgpconf.svc_lb = memdup(b->svc_lb, b->nsvc_lb * sizeof(struct ipprefix));
		break;
	}
	case KIND_BGPPEER: {
		const struct bgppeer_obj *b = &o->bgppeer;
		c->bgppeer.node = xstrdup(b->node);
		c->bgppeer.node_selector = xstrdup(b->node_selector);
		c->bgppeer.peer_selector = xstrdup(b->peer_selector);
		c->bgppeer.password = xstrdup(b->password);
		c->bgppeer.password_secret = xstrdup(b->password_secret);
		c->bgppeer.password_key = xstrdup(b->password_key);
		c->bgppeer.source_address = xstrdup(b->source_address);
		break;
	}
	case KIND_BGPADVERTISEMENT: {
		const struct bgpadv_obj *b = &o->bgpadv;
		c->bgpadv.pools = strv_copy(b->pools, b->npools);
		c->bgpadv.peers = strv_copy(b->peers, b->npeers);
		c->bgpadv.comm = memdup(b->comm, b->ncomm * 4);
		c->bgpadv.lcomm = memdup(b->lcomm, b->nlcomm * 12);
		c->bgpadv.node_selectors =
		    b->nnode_selectors ? xcalloc(b->nnode_selectors, sizeof(struct selector)) : NULL;
		for (size_t i = 0; i < b->nnode_selectors; i++)
			selector_copy(&c->bgpadv.node_selectors[i], &b->node_selectors[i]);
		break;
	}
	case KIND_SECRET:
		labels_copy(&c->secret.data, &o->secret.data);
		break;
	default:
		break;
	}
	return c;
}

const char *object_id(const struct object *o, char *buf, size_t size)
{
	if (!size)
		return buf;
	const char *name = o->meta.name ? o->meta.name : "?";
	if (o->meta.ns)
		snprintf(buf, size, "%s/%s/%s", kind_name(o->kind), o->meta.ns, name);
	else
		snprintf(buf, size, "%s/%s", kind_name(o->kind), name);
	return buf;
}

/* ---- content hash ----
 * A canonical serialization fed straight into FNV-1a: every field in a fixed order, each
 * string with its length (NULL distinct from ""), addresses by family and significant bytes
 * only, so neither struct padding nor the manifest's key order can change the result. */

static void h_u64(uint64_t *h, uint64_t v)
{
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	*h = fnv1a64(b, sizeof(b), *h);
}

static void h_str(uint64_t *h, const char *s)
{
	if (!s) {
		h_u64(h, UINT64_MAX);
		return;
	}
	size_t n = strlen(s);
	h_u64(h, n);
	*h = fnv1a64(s, n, *h);
}

static void h_ip(uint64_t *h, const struct ipaddr *a)
{
	h_u64(h, (uint64_t)a->family);
	*h = fnv1a64(a->b, (size_t)ip_bytes(a->family), *h);
}

static void h_prefix(uint64_t *h, const struct ipprefix *p)
{
	h_ip(h, &p->addr);
	h_u64(h, p->len);
}

static void h_labels(uint64_t *h, const struct labels *l)
{
	h_u64(h, l->n);
	for (size_t i = 0; i < l->n; i++) {
		h_str(h, l->kv[i].key);
		h_str(h, l->kv[i].value);
	}
}

static void h_selector(uint64_t *h, const struct selector *s)
{
	h_u64(h, s->present);
	h_labels(h, &s->match_labels);
	h_u64(h, s->nexprs);
	for (size_t i = 0; i < s->nexprs; i++) {
		h_str(h, s->exprs[i].key);
		h_u64(h, s->exprs[i].op);
		h_u64(h, s->exprs[i].nvalues);
		for (size_t j = 0; j < s->exprs[i].nvalues; j++)
			h_str(h, s->exprs[i].values[j]);
	}
}

static void h_rules(uint64_t *h, const struct np_rule *r, size_t n)
{
	h_u64(h, n);
	for (size_t i = 0; i < n; i++) {
		h_u64(h, r[i].nports);
		for (size_t j = 0; j < r[i].nports; j++) {
			const struct np_port *p = &r[i].ports[j];
			h_u64(h, p->has_proto);
			h_u64(h, p->proto);
			h_u64(h, p->port);
			h_str(h, p->port_name);
			h_u64(h, p->end_port);
		}
		h_u64(h, r[i].npeers);
		for (size_t j = 0; j < r[i].npeers; j++) {
			const struct np_peer *p = &r[i].peers[j];
			h_selector(h, &p->pod_selector);
			h_selector(h, &p->namespace_selector);
			h_u64(h, p->has_ipblock);
			h_prefix(h, &p->cidr);
			h_u64(h, p->nexcept);
			for (size_t k = 0; k < p->nexcept; k++)
				h_prefix(h, &p->except[k]);
		}
	}
}

uint64_t object_hash(const struct object *o)
{
	uint64_t h = FNV_SEED;
	h_u64(&h, o->kind);
	h_str(&h, o->meta.name);
	h_str(&h, o->meta.ns);
	h_str(&h, o->meta.uid);
	h_labels(&h, &o->meta.labels);
	h_labels(&h, &o->meta.annotations);
	h_u64(&h, o->meta.deleting);
	switch (o->kind) {
	case KIND_NODE:
		h_u64(&h, o->node.npod_cidrs);
		for (size_t i = 0; i < o->node.npod_cidrs && i < 2; i++)
			h_prefix(&h, &o->node.pod_cidrs[i]);
		h_u64(&h, o->node.naddrs);
		for (size_t i = 0; i < o->node.naddrs; i++) {
			h_u64(&h, o->node.addrs[i].type);
			h_ip(&h, &o->node.addrs[i].ip);
			h_str(&h, o->node.addrs[i].text);
		}
		h_u64(&h, o->node.unschedulable);
		break;
	case KIND_POD: {
		const struct pod_obj *p = &o->pod;
		h_str(&h, p->node_name);
		h_u64(&h, p->host_network);
		h_u64(&h, p->nports);
		for (size_t i = 0; i < p->nports; i++) {
			h_str(&h, p->ports[i].name);
			h_u64(&h, p->ports[i].port);
			h_u64(&h, p->ports[i].proto);
		}
		h_u64(&h, p->nips);
		for (size_t i = 0; i < p->nips && i < 2; i++)
			h_ip(&h, &p->ips[i]);
		h_str(&h, p->phase);
		h_u64(&h, p->ready);
		h_u64(&h, p->has_ready);
		break;
	}
	case KIND_SERVICE: {
		const struct service_obj *s = &o->svc;
		h_u64(&h, s->type);
		h_u64(&h, s->headless);
		h_u64(&h, s->ncluster_ips);
		for (size_t i = 0; i < s->ncluster_ips && i < 2; i++)
			h_ip(&h, &s->cluster_ips[i]);
		h_u64(&h, s->has_ip_family_policy);
		h_u64(&h, s->ip_family_policy);
		h_u64(&h, s->nip_families);
		for (size_t i = 0; i < s->nip_families && i < 2; i++)
			h_u64(&h, (uint64_t)s->ip_families[i]);
		h_selector(&h, &s->selector);
		h_u64(&h, s->nports);
		for (size_t i = 0; i < s->nports; i++) {
			const struct svc_port *p = &s->ports[i];
			h_str(&h, p->name);
			h_u64(&h, p->proto);
			h_u64(&h, p->port);
			h_u64(&h, p->node_port);
			h_u64(&h, p->target_port);
			h_str(&h, p->target_port_name);
			h_str(&h, p->app_protocol);
		}
		h_u64(&h, s->nexternal_ips);
		for (size_t i = 0; i < s->nexternal_ips; i++)
			h_ip(&h, &s->external_ips[i]);
		h_u64(&h, s->nlb_ips);
		for (size_t i = 0; i < s->nlb_ips; i++)
			h_ip(&h, &s->lb_ips[i]);
		h_ip(&h, &s->lb_ip_requested);
		h_u64(&h, s->etp_local);
		h_u64(&h, s->itp_local);
		h_u64(&h, s->affinity_client_ip);
		h_u64(&h, s->affinity_timeout);
		h_u64(&h, s->health_check_node_port);
		h_str(&h, s->external_name);
		h_u64(&h, s->publish_not_ready);
		h_u64(&h, s->allocate_lb_node_ports);
		break;
	}
	case KIND_ENDPOINTSLICE: {
		const struct endpointslice_obj *e = &o->eps;
		h_str(&h, e->service);
		h_u64(&h, (uint64_t)e->address_type);
		h_u64(&h, e->nendpoints);
		for (size_t i = 0; i < e->nendpoints; i++) {
			const struct endpoint *ep = &e->endpoints[i];
			h_u64(&h, ep->naddrs);
			for (size_t j = 0; j < ep->naddrs; j++)
				h_ip(&h, &ep->addrs[j]);
			h_u64(&h, ep->ready);
			h_u64(&h, ep->serving);
			h_u64(&h, ep->terminating);
			h_str(&h, ep->node_name);
			h_str(&h, ep->target_pod);
			h_str(&h, ep->hostname);
			h_str(&h, ep->zone);
		}
		h_u64(&h, e->nports);
		for (size_t i = 0; i < e->nports; i++) {
			h_str(&h, e->ports[i].name);
			h_u64(&h, e->ports[i].proto);
			h_u64(&h, e->ports[i].port);
		}
		h_str(&h, e->managed_by);
		break;
	}
	case KIND_NETWORKPOLICY:
		h_selector(&h, &o->np.pod_selector);
		h_u64(&h, o->np.ingress_type);
		h_u64(&h, o->np.egress_type);
		h_rules(&h, o->np.ingress, o->np.ningress);
		h_rules(&h, o->np.egress, o->np.negress);
		break;
	case KIND_IPADDRESSPOOL:
		h_u64(&h, o->pool.nranges);
		for (size_t i = 0; i < o->pool.nranges; i++)
			h_prefix(&h, &o->pool.cidrs[i]);
		h_u64(&h, o->pool.auto_assign);
		break;
	case KIND_BGPCONFIGURATION: {
		const struct bgpconfig_obj *b = &o->bgpconf;
		h_u64(&h, b->as_number);
		h_u64(&h, b->node_mesh);
		h_u64(&h, b->mesh_restart_time);
		h_u64(&h, b->listen_port);
		h_u64(&h, b->nsvc_cluster);
		for (size_t i = 0; i < b->nsvc_cluster; i++)
			h_prefix(&h, &b->svc_cluster[i]);
		h_u64(&h, b->nsvc_external);
		for (size_t i = 0; i < b->nsvc_external; i++)
			h_prefix(&h, &b->svc_external[i]);
		h_u64(&h, b->nsvc_lb);
		for (size_t i = 0; i < b->nsvc_lb; i++)
			h_prefix(&h, &b->svc_lb[i]);
		break;
	}
	case KIND_BGPPEER: {
		const struct bgppeer_obj *b = &o->bgppeer;
		h_ip(&h, &b->peer_ip);
		h_u64(&h, b->port);
		h_u64(&h, b->as_number);
		h_str(&h, b->node);
		h_str(&h, b->node_selector);
		h_str(&h, b->peer_selector);
		h_str(&h, b->password);
		h_str(&h, b->password_secret);
		h_str(&h, b->password_key);
		h_u64(&h, b->keep_original_next_hop);
		h_u64(&h, b->ttl_security);
		h_u64(&h, b->max_restart_time);
		h_str(&h, b->source_address);
		break;
	}
	case KIND_BGPADVERTISEMENT: {
		const struct bgpadv_obj *b = &o->bgpadv;
		h_u64(&h, b->npools);
		for (size_t i = 0; i < b->npools; i++)
			h_str(&h, b->pools[i]);
		h_u64(&h, b->npeers);
		for (size_t i = 0; i < b->npeers; i++)
			h_str(&h, b->peers[i]);
		h_u64(&h, b->ncomm);
		for (size_t i = 0; i < b->ncomm; i++)
			h_u64(&h, b->comm[i]);
		h_u64(&h, b->nlcomm);
		for (size_t i = 0; i < b->nlcomm * 3; i++)
			h_u64(&h, b->lcomm[i]);
		h_u64(&h, b->aggregation_length);
		h_u64(&h, b->aggregation_length_v6);
		h_u64(&h, b->has_local_pref);
		h_u64(&h, b->local_pref);
		h_u64(&h, b->nnode_selectors);
		for (size_t i = 0; i < b->nnode_selectors; i++)
			h_selector(&h, &b->node_selectors[i]);
		break;
	}
	case KIND_SECRET:
		h_labels(&h, &o->secret.data);
		break;
	default:
		break;
	}
	return h;
}
