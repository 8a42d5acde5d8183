/* route_plan: the pure half of the cross-node route planner (no kernel access).
 *
 * Computes the entries one remote node needs on this node, per routing mode, and diffs a
 * desired entry set against the kernel's so the writer sends only the difference.
 * The VXLAN scheme is Flannel's vxlan backend: each node's VTEP address is the network
 * address of its podCIDR; a route "podCIDR via VTEP dev twill.<VNI> onlink", a permanent
 * ARP entry VTEP -> VTEP MAC and an FDB entry VTEP MAC -> node IP replace learning. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lib/consts.h"
#include "lib/util.h"
#include "route/route.h"

const char *route_mode_name(enum route_mode m)
{
	switch (m) {
	case ROUTE_HOST_GW:
		return "host-gw";
	case ROUTE_VXLAN:
		return "vxlan";
	case ROUTE_MIXED:
		return "mixed";
	case ROUTE_IPIP:
		return "ipip";
	case ROUTE_IPIP_CROSSSUBNET:
		return "ipip-crosssubnet";
	case ROUTE_BGP:
		return "bgp";
	}
	return "?";
}

int route_mode_parse(const char *s)
{
	if (!s)
		return -1;
	if (!strcmp(s, "host-gw"))
		return ROUTE_HOST_GW;
	if (!strcmp(s, "vxlan"))
		return ROUTE_VXLAN;
	if (!strcmp(s, "mixed"))
		return ROUTE_MIXED;
	if (!strcmp(s, "ipip"))
		return ROUTE_IPIP;
	if (!strcmp(s, "ipip-crosssubnet"))
		return ROUTE_IPIP_CROSSSUBNET;
	if (!strcmp(s, "bgp"))
		return ROUTE_BGP;
	return -1;
}

unsigned route_mode_overhead(enum route_mode m)
{
	switch (m) {
	case ROUTE_VXLAN:
	case ROUTE_MIXED:
		return TWILL_VXLAN_OVERHEAD;
	case ROUTE_IPIP:
	case ROUTE_IPIP_CROSSSUBNET:
		return ROUTE_IPIP_OVERHEAD;
	case ROUTE_HOST_GW:
	case ROUTE_BGP:
		break;
	}
	return 0;
}

const char *route_encrypt_name(enum route_encrypt e)
{
	return e == ROUTE_ENCRYPT_WIREGUARD ? "wireguard" : "none";
}

int route_encrypt_parse(const char *s)
{
	if (s && !strcmp(s, "none"))
		return ROUTE_ENCRYPT_NONE;
	if (s && !strcmp(s, "wireguard"))
		return ROUTE_ENCRYPT_WIREGUARD;
	return -1;
}

const char *route_via_name(enum route_via v)
{
	switch (v) {
	case ROUTE_VIA_HOST_GW:
		return "host-gw";
	case ROUTE_VIA_VXLAN:
		return "vxlan";
	case ROUTE_VIA_IPIP:
		return "ipip";
	case ROUTE_VIA_WIREGUARD:
		return "wireguard";
	case ROUTE_VIA_BGP:
		return "bgp";
	case ROUTE_VIA_NONE:
		break;
	}
	return "none";
}

void route_vtep_mac(const struct ipaddr *ip, uint8_t mac[6])
{
	mac[0] = 0x0e;
	mac[1] = 0x74;
	if (ip && ip->family == AF_INET)
		memcpy(mac + 2, &ip->v4, 4);
	else if (ip && ip->family == AF_INET6)
		memcpy(mac + 2, ip->v6.s6_addr + 12, 4);
	else
		memset(mac + 2, 0, 4);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int route_mac_parse(const char *s, uint8_t mac[6])
{
	if (!s || strlen(s) != 17)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		int hi = hexval(s[i * 3]), lo = hexval(s[i * 3 + 1]);
		if (hi < 0 || lo < 0 || (i < 5 && s[i * 3 + 2] != ':'))
			return -EINVAL;
		mac[i] = (uint8_t)(hi << 4 | lo);
	}
	/* A multicast or all-zero VTEP MAC would break the FDB. */
	if (mac[0] & 1)
		return -EINVAL;
	static const uint8_t zero[6];
	if (!memcmp(mac, zero, 6))
		return -EINVAL;
	return 0;
}

int route_connected_ifindex(const struct route_conn *conn, size_t nconn, const struct ipaddr *ip)
{
	int best = 0, bestlen = -1;
	for (size_t i = 0; i < nconn; i++) {
		if (conn[i].prefix.addr.family != ip->family)
			continue;
		if (!prefix_contains(&conn[i].prefix, ip))
			continue;
		if ((int)conn[i].prefix.len > bestlen) {
			bestlen = conn[i].prefix.len;
			best = conn[i].ifindex;
		}
	}
	return best;
}

/* ---- entry sets ---- */

void rt_set_add(struct rt_set *s, const struct rt_entry *e)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 16;
		s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
	}
	s->v[s->n++] = *e;
}

void rt_set_clear(struct rt_set *s)
{
	s->n = 0;
}

void rt_set_free(struct rt_set *s)
{
	free(s->v);
	s->v = NULL;
	s->n = s->cap = 0;
}

static int cmp_int(long long a, long long b)
{
	return a < b ? -1 : a > b;
}

int rt_entry_key_cmp(const struct rt_entry *a, const struct rt_entry *b)
{
	int c = cmp_int(a->kind, b->kind);
	if (c)
		return c;
	switch (a->kind) {
	case RT_ROUTE:
		c = prefix_cmp(&a->dst, &b->dst);
		return c ? c : cmp_int(a->priority, b->priority);
	case RT_NEIGH:
		c = cmp_int(a->oif, b->oif);
		return c ? c : prefix_cmp(&a->dst, &b->dst);
	case RT_FDB:
		c = cmp_int(a->oif, b->oif);
		if (!c)
			c = memcmp(a->mac, b->mac, 6);
		return c ? c : ip_cmp(&a->gw, &b->gw);
	}
	return 0;
}

bool rt_entry_same(const struct rt_entry *a, const struct rt_entry *b)
{
	if (rt_entry_key_cmp(a, b))
		return false;
	switch (a->kind) {
	case RT_ROUTE:
		return ip_eq(&a->gw, &b->gw) && a->oif == b->oif && a->onlink == b->onlink;
	case RT_NEIGH:
		return !memcmp(a->mac, b->mac, 6);
	case RT_FDB:
		return true;
	}
	return true;
}

struct rt_tagged {
	struct rt_entry e;
	size_t pos;
};

static int tagged_cmp(const void *a, const void *b)
{
	const struct rt_tagged *x = a, *y = b;
	int c = rt_entry_key_cmp(&x->e, &y->e);
	return c ? c : cmp_int((long long)x->pos, (long long)y->pos);
}

void rt_set_sort(struct rt_set *s)
{
	/* qsort is not stable; the diff's "first duplicate wins" relies on the caller's
	 * order, so the original position breaks ties. */
	if (s->n < 2)
		return;
	struct rt_tagged *t = xmalloc(s->n * sizeof(*t));
	for (size_t i = 0; i < s->n; i++) {
		t[i].e = s->v[i];
		t[i].pos = i;
	}
	qsort(t, s->n, sizeof(*t), tagged_cmp);
	for (size_t i = 0; i < s->n; i++)
		s->v[i] = t[i].e;
	free(t);
}

static void fmt_mac(const uint8_t m[6], char buf[18])
{
	snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

const char *rt_entry_fmt(const struct rt_entry *e, char *buf, size_t size)
{
	char a[IP_STRLEN], b[IP_STRLEN], m[18];
	switch (e->kind) {
	case RT_ROUTE:
		snprintf(buf, size, "route %s via %s dev #%d%s%s", prefix_fmt(&e->dst, a),
			 ip_fmt(&e->gw, b), e->oif, e->onlink ? " onlink" : "",
			 e->priority ? " (metric set)" : "");
		break;
	case RT_NEIGH:
		fmt_mac(e->mac, m);
		snprintf(buf, size, "neigh %s lladdr %s dev #%d", ip_fmt(&e->dst.addr, a), m,
			 e->oif);
		break;
	case RT_FDB:
		fmt_mac(e->mac, m);
		snprintf(buf, size, "fdb %s dst %s dev #%d", m, ip_fmt(&e->gw, a), e->oif);
		break;
	}
	return buf;
}

static void sorted_copy(const struct rt_set *in, struct rt_set *out)
{
	out->n = out->cap = in->n;
	out->v = in->n ? xmalloc(in->n * sizeof(*out->v)) : NULL;
	if (in->n)
		memcpy(out->v, in->v, in->n * sizeof(*out->v));
	rt_set_sort(out);
}

void rt_diff(const struct rt_set *desired, const struct rt_set *current, struct rt_set *add,
	     struct rt_set *replace, struct rt_set *del)
{
	struct rt_set d, c;
	sorted_copy(desired, &d);
	sorted_copy(current, &c);
	size_t i = 0, j = 0;
	while (i < d.n || j < c.n) {
		int k;
		if (i >= d.n)
			k = 1;
		else if (j >= c.n)
			k = -1;
		else
			k = rt_entry_key_cmp(&d.v[i], &c.v[j]);
		if (k < 0) {
			rt_set_add(add, &d.v[i]);
		} else if (k > 0) {
			rt_set_add(del, &c.v[j]);
			j++;
			continue;
		} else {
			if (!rt_entry_same(&d.v[i], &c.v[j]))
				rt_set_add(replace, &d.v[i]);
			/* The kernel may hold several entries with one key (it should not for
			 * ours); the extra ones are stale. */
			j++;
			while (j < c.n && !rt_entry_key_cmp(&d.v[i], &c.v[j]))
				rt_set_add(del, &c.v[j++]);
		}
		/* skip duplicate desired keys: the first one wins */
		size_t i0 = i++;
		while (i < d.n && !rt_entry_key_cmp(&d.v[i0], &d.v[i]))
			i++;
	}
	rt_set_free(&d);
	rt_set_free(&c);
}

/* ---- per-peer plan ---- */

enum route_via route_plan_peer(const struct route_self *self, const struct route_peer_in *p,
			       struct rt_set *out, char *why, size_t whylen)
{
	char a[IP_STRLEN];
	why[0] = '\0';
	if (!ip_is_set(&self->ip)) {
		snprintf(why, whylen, "this node has no InternalIP yet");
		return ROUTE_VIA_NONE;
	}
	if (p->ip.family != AF_INET) {
		snprintf(why, whylen, "node has no IPv4 InternalIP");
		return ROUTE_VIA_NONE;
	}
	if (ip_eq(&p->ip, &self->ip)) {
		snprintf(why, whylen, "%s is this node's own address", ip_fmt(&p->ip, a));
		return ROUTE_VIA_NONE;
	}
	size_t nv4 = 0;
	for (size_t i = 0; i < p->npod_cidrs; i++)
		nv4 += p->pod_cidrs[i].addr.family == AF_INET;
	if (!nv4) {
		snprintf(why, whylen, "no podCIDR allocated yet");
		return ROUTE_VIA_NONE;
	}

	if (self->wg_index > 0 && p->has_wg_key) {
		/* encrypted: the podCIDRs into the WireGuard device, which picks the peer by
		 * its allowed IPs (so no gateway), whatever the routing mode */
		for (size_t i = 0; i < p->npod_cidrs; i++) {
			struct ipprefix cidr = p->pod_cidrs[i];
			if (cidr.addr.family != AF_INET)
				continue;
			prefix_normalize(&cidr);
			struct rt_entry e = {.kind = RT_ROUTE, .dst = cidr, .oif = self->wg_index};
			rt_set_add(out, &e);
		}
		return ROUTE_VIA_WIREGUARD;
	}

	if (self->mode == ROUTE_BGP)
		return ROUTE_VIA_BGP; /* learned and installed by the BGP speaker */
	int ifindex = route_connected_ifindex(self->conn, self->nconn, &p->ip);
	enum route_via via;
	switch (self->mode) {
	case ROUTE_HOST_GW:
		if (!ifindex) {
			snprintf(why, whylen,
				 "%s is not on a directly connected subnet (host-gw needs L2 "
				 "adjacency; use vxlan or mixed)",
				 ip_fmt(&p->ip, a));
			return ROUTE_VIA_NONE;
		}
		via = ROUTE_VIA_HOST_GW;
		break;
	case ROUTE_MIXED:
		via = ifindex ? ROUTE_VIA_HOST_GW : ROUTE_VIA_VXLAN;
		break;
	case ROUTE_IPIP:
		via = ROUTE_VIA_IPIP;
		break;
	case ROUTE_IPIP_CROSSSUBNET:
		via = ifindex ? ROUTE_VIA_HOST_GW : ROUTE_VIA_IPIP;
		break;
	case ROUTE_VXLAN:
	default:
		via = ROUTE_VIA_VXLAN;
		break;
	}
	if (via == ROUTE_VIA_VXLAN && self->vxlan_index <= 0) {
		snprintf(why, whylen, "the VXLAN device is not ready");
		return ROUTE_VIA_NONE;
	}
	if (via == ROUTE_VIA_IPIP && self->ipip_index <= 0) {
		snprintf(why, whylen, "the IPIP device %s is not ready", ROUTE_IPIP_DEV);
		return ROUTE_VIA_NONE;
	}

	uint8_t mac[6];
	if (p->has_mac)
		memcpy(mac, p->mac, 6);
	else
		route_vtep_mac(&p->ip, mac);

	bool fdb_done = false;
	for (size_t i = 0; i < p->npod_cidrs; i++) {
		struct ipprefix cidr = p->pod_cidrs[i];
		if (cidr.addr.family != AF_INET)
			continue;
		prefix_normalize(&cidr);
		struct rt_entry e = {.kind = RT_ROUTE, .dst = cidr};
		if (via == ROUTE_VIA_HOST_GW) {
			e.gw = p->ip;
			e.oif = ifindex;
			rt_set_add(out, &e);
			continue;
		}
		if (via == ROUTE_VIA_IPIP) {
			/* Calico: the outer destination is the gateway, the node itself */
			e.gw = p->ip;
			e.oif = self->ipip_index;
			e.onlink = true;
			rt_set_add(out, &e);
			continue;
		}
		/* VTEP address: the podCIDR's network address (Flannel's scheme) */
		e.gw = cidr.addr;
		e.oif = self->vxlan_index;
		e.onlink = true;
		rt_set_add(out, &e);
		struct rt_entry n = {.kind = RT_NEIGH, .oif = self->vxlan_index};
		n.dst.addr = cidr.addr;
		n.dst.len = 32;
		memcpy(n.mac, mac, 6);
		rt_set_add(out, &n);
		if (!fdb_done) {
			struct rt_entry f = {.kind = RT_FDB, .oif = self->vxlan_index, .gw = p->ip};
			memcpy(f.mac, mac, 6);
			rt_set_add(out, &f);
			fdb_done = true;
		}
	}
	return via;
}
