/* wire: pod wiring for the CNI plugin (ADD/DEL/CHECK on the kernel), over the nl layer.
 *
 * routed follows Calico's dataplane (projectcalico/calico cni-plugin dataplane_linux.go):
 * the veth is created with its pod end directly inside the pod namespace (no move, no
 * rename), the host end gets the fixed MAC ee:ee:ee:ee:ee:ee and no address, proxy_arp=1
 * and neigh proxy_delay=0 so the node answers the pod's ARP for 169.254.1.1 at once; the
 * pod gets its address as /32 (/128), "169.254.1.1 dev eth0 scope link" and "default via
 * 169.254.1.1" with a permanent neighbour entry for it; the node gets "<podIP>/32 dev tw... scope
 * link proto 117".  IPv6 uses the host end's EUI-64 link-local address (fixed, derived from the
 * fixed MAC) as gateway, with DAD off so the pod can use it at once. bridge follows the reference
 * bridge plugin with isGateway (containernetworking/plugins plugins/main/bridge): bridge "cni0"
 * created on first use holding the gateway (the podCIDR's first address), host end enslaved, pod
 * address with the podCIDR's length.
 *
 * Cost: one netlink round trip per object, no forks, no namespace switches (the pod's
 * socket was opened in its namespace once by the caller). */
#include "cni/wire.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lib/consts.h"
#include "lib/util.h"
#include "nl/nl.h"

static const uint8_t routed_host_mac[6] = {0xee, 0xee, 0xee, 0xee, 0xee, 0xee};
#define ROUTED_GW6 "fe80::ecee:eeff:feee:eeee" /* EUI-64 of routed_host_mac */

static int fail(int err, char *why, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(int err, char *why, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(why, len, fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < len && err < 0)
		snprintf(why + n, len - (size_t)n, ": %s", strerror(-err));
	return err < 0 ? err : -EINVAL;
}

void wire_veth_name(const char *container_id, const char *ifname, char out[IFNAMSIZ])
{
	uint64_t h = fnv1a64(container_id, strlen(container_id), FNV_SEED);
	h = fnv1a64("/", 1, h);
	h = fnv1a64(ifname, strlen(ifname), h);
	snprintf(out, IFNAMSIZ, TWILL_VETH_PREFIX "%012" PRIx64, (uint64_t)(h & 0xffffffffffffULL));
}

void wire_gateway(const struct wire_spec *w, int i, struct ipaddr *gw)
{
	bool v6 = w->cidr[i].addr.family == AF_INET6;
	if (w->wiring == CNI_WIRING_BRIDGE)
		prefix_host(&w->cidr[i], 1, gw);
	else
		ip_parse(v6 ? ROUTED_GW6 : TWILL_ROUTED_GW, gw);
}

static bool has_v6(const struct wire_spec *w)
{
	for (int i = 0; i < w->n; i++)
		if (w->cidr[i].addr.family == AF_INET6)
			return true;
	return false;
}

/* The node's sysctls for forwarding pods' traffic; writes that change nothing are cheap
 * (the kernel walks devices only on a change). */
static int node_sysctls(const struct wire_spec *w, char *why, size_t len)
{
	int err = sysctl_write("net/ipv4/ip_forward", "1");
	if (err)
		return fail(err, why, len, "setting net.ipv4.ip_forward");
	if (has_v6(w) && (err = sysctl_write("net/ipv6/conf/all/forwarding", "1")))
		return fail(err, why, len, "setting net.ipv6.conf.all.forwarding");
	return 0;
}

static int host_veth_sysctls(const struct wire_spec *w, char *why, size_t len)
{
	/* Slashed keys: interface names may contain dots. */
	char key[128];
	int err;
	if (has_v6(w)) {
		snprintf(key, sizeof(key), "net/ipv6/conf/%s/accept_dad", w->host);
		if ((err = sysctl_write(key, "0")))
			return fail(err, why, len, "setting %s", key);
	}
	if (w->wiring != CNI_WIRING_ROUTED)
		return 0;
	snprintf(key, sizeof(key), "net/ipv4/conf/%s/proxy_arp", w->host);
	if ((err = sysctl_write(key, "1")))
		return fail(err, why, len, "setting %s", key);
	snprintf(key, sizeof(key), "net/ipv4/neigh/%s/proxy_delay", w->host);
	if ((err = sysctl_write(key, "0")))
		return fail(err, why, len, "setting %s", key);
	return 0;
}

struct addr_want {
	int index;
	const struct ipprefix *want;
	bool found;
};

static int addr_cb(const struct nl_addr *a, void *arg)
{
	struct addr_want *w = arg;
	if (a->index == w->index && prefix_eq(&a->prefix, w->want))
		w->found = true;
	return 0;
}

static bool has_addr(struct nl_sock *s, int index, const struct ipprefix *p)
{
	struct addr_want w = {.index = index, .want = p};
	return !nl_addr_dump(s, p->addr.family, index, addr_cb, &w) && w.found;
}

/* The bridge and its gateway addresses; created on first use, tolerant of a concurrent ADD
 * doing the same. */
static int ensure_bridge(struct nl_sock *node, const struct wire_spec *w, struct nl_link *br,
			 char *why, size_t len)
{
	int err = nl_link_get(node, w->bridge, br);
	if (err == -ENODEV) {
		err = nl_link_add_bridge(node, w->bridge, w->mtu);
		if (err && err != -EEXIST)
			return fail(err, why, len, "creating bridge %s", w->bridge);
		err = nl_link_get(node, w->bridge, br);
	}
	if (err)
		return fail(err, why, len, "reading bridge %s", w->bridge);
	if (strcmp(br->kind, "bridge"))
		return fail(-EEXIST, why, len, "%s exists and is not a bridge", w->bridge);
	/* Checked every time (one dump round trip): a bridge somebody stripped of its gateway
	 * would otherwise break every pod silently. */
	for (int i = 0; i < w->n; i++) {
		struct nl_addr a = {.index = br->index, .scope = RT_SCOPE_UNIVERSE};
		wire_gateway(w, i, &a.prefix.addr);
		a.prefix.len = w->cidr[i].len;
		if (a.prefix.addr.family == AF_INET6)
			a.flags = IFA_F_NODAD;
		if (has_addr(node, br->index, &a.prefix))
			continue;
		err = nl_addr_add(node, &a);
		if (err && err != -EEXIST) {
			char buf[IP_STRLEN];
			return fail(err, why, len, "adding %s to %s", prefix_fmt(&a.prefix, buf),
				    w->bridge);
		}
	}
	if (!br->up && (err = nl_link_set_up(node, br->index, true)))
		return fail(err, why, len, "setting %s up", w->bridge);
	return 0;
}

static int pod_configure(struct nl_sock *pod, const struct wire_spec *w, int pidx, char *why,
			 size_t len)
{
	char buf[IP_STRLEN];
	int err = nl_link_set_up(pod, pidx, true);
	if (err)
		return fail(err, why, len, "setting %s up in the pod", w->ifname);
	for (int i = 0; i < w->n; i++) {
		bool v6 = w->ip[i].family == AF_INET6;
		struct nl_addr a = {.index = pidx, .scope = RT_SCOPE_UNIVERSE};
		a.prefix.addr = w->ip[i];
		a.prefix.len = w->wiring == CNI_WIRING_BRIDGE ? w->cidr[i].len
							      : (uint8_t)ip_maxlen(w->ip[i].family);
		a.flags = v6 ? IFA_F_NODAD : 0;
		if ((err = nl_addr_add(pod, &a)))
			return fail(err, why, len, "adding %s in the pod",
				    prefix_fmt(&a.prefix, buf));
		struct nl_route r = {.oif = pidx,
				     .protocol = RTPROT_BOOT,
				     .scope = RT_SCOPE_UNIVERSE,
				     .type = RTN_UNICAST};
		wire_gateway(w, i, &r.gw);
		if (w->wiring == CNI_WIRING_ROUTED && !v6) {
			/* 169.254.1.1 is on no subnet of the pod: make it reachable on the link. */
			struct nl_route gwr = {.oif = pidx,
					       .protocol = RTPROT_BOOT,
					       .scope = RT_SCOPE_LINK,
					       .type = RTN_UNICAST};
			gwr.dst.addr = r.gw;
			gwr.dst.len = 32;
			err = nl_route_add(pod, &gwr, NLM_F_CREATE | NLM_F_EXCL);
			if (err)
				return fail(err, why, len, "adding route %s in the pod",
					    ip_fmt(&r.gw, buf));
		}
		if (w->wiring == CNI_WIRING_ROUTED) {
			/* The gateway's MAC is known (fixed on every host end): a permanent entry
			 * spares the pod its first ARP/ND exchange and works even where proxy
			 * ARP cannot (a node without a route towards 169.254.1.1). */
			struct nl_neigh nb = {.family = w->ip[i].family,
					      .index = pidx,
					      .dst = r.gw,
					      .has_lladdr = true,
					      .state = NUD_PERMANENT};
			memcpy(nb.lladdr, routed_host_mac, 6);
			if ((err = nl_neigh_replace(pod, &nb)))
				return fail(err, why, len, "adding neighbour %s in the pod",
					    ip_fmt(&r.gw, buf));
		}
		r.dst.addr.family = w->ip[i].family;
		r.dst.len = 0;
		if ((err = nl_route_add(pod, &r, NLM_F_CREATE | NLM_F_EXCL)))
			return fail(err, why, len, "adding default route via %s in the pod",
				    ip_fmt(&r.gw, buf));
	}
	return 0;
}

int wire_add(struct nl_sock *node, struct nl_sock *pod, int podfd, const struct wire_spec *w,
	     struct cni_result *res, char *why, size_t len)
{
	struct nl_link hl = {0}, pl = {0}, br = {0};
	bool routed = w->wiring == CNI_WIRING_ROUTED;
	int err = node_sysctls(w, why, len);
	if (err)
		return err;
	if (!routed && (err = ensure_bridge(node, w, &br, why, len)))
		return err;

	err = nl_link_add_veth(node, w->host, routed ? routed_host_mac : NULL, w->ifname, NULL,
			       podfd, w->mtu);
	if (err)
		return fail(err, why, len, "creating veth %s/%s", w->host, w->ifname);
	if ((err = nl_link_get(node, w->host, &hl))) {
		fail(err, why, len, "reading %s", w->host);
		/* The pod end (in another namespace) is unknown to us: delete by name. */
		int idx = nl_link_index(node, w->host);
		if (idx > 0)
			nl_link_del(node, idx);
		return err;
	}
	if ((err = nl_link_get(pod, w->ifname, &pl))) {
		fail(err, why, len, "reading %s in the pod", w->ifname);
		goto undo;
	}
	if ((err = host_veth_sysctls(w, why, len)))
		goto undo;
	if (!routed && (err = nl_link_set_master(node, hl.index, br.index))) {
		fail(err, why, len, "enslaving %s to %s", w->host, w->bridge);
		goto undo;
	}
	if ((err = nl_link_set_up(node, hl.index, true))) {
		fail(err, why, len, "setting %s up", w->host);
		goto undo;
	}
	if ((err = pod_configure(pod, w, pl.index, why, len)))
		goto undo;
	for (int i = 0; routed && i < w->n; i++) {
		struct nl_route r = {.oif = hl.index,
				     .protocol = TWILL_RTPROT_POD,
				     .scope = RT_SCOPE_LINK,
				     .type = RTN_UNICAST};
		r.dst.addr = w->ip[i];
		r.dst.len = (uint8_t)ip_maxlen(w->ip[i].family);
		/* REPLACE: a route left for this address by a vanished pod is stale, and the
		 * lease just taken proves the address is ours now. */
		if ((err = nl_route_add(node, &r, NLM_F_CREATE | NLM_F_REPLACE))) {
			char buf[IP_STRLEN];
			fail(err, why, len, "adding route %s dev %s", prefix_fmt(&r.dst, buf),
			     w->host);
			goto undo;
		}
	}

	memset(res, 0, sizeof(*res));
	if (!routed) {
		struct cni_iface *b = &res->ifaces[res->nifaces++];
		str_copy(b->name, sizeof(b->name), w->bridge);
		memcpy(b->mac, br.mac, 6);
		b->has_mac = true;
		b->mtu = br.mtu;
	}
	struct cni_iface *h = &res->ifaces[res->nifaces++];
	str_copy(h->name, sizeof(h->name), w->host);
	memcpy(h->mac, hl.mac, 6);
	h->has_mac = true;
	h->mtu = hl.mtu;
	int podif = res->nifaces;
	struct cni_iface *p = &res->ifaces[res->nifaces++];
	str_copy(p->name, sizeof(p->name), w->ifname);
	memcpy(p->mac, pl.mac, 6);
	p->has_mac = true;
	p->mtu = pl.mtu;
	str_copy(p->sandbox, sizeof(p->sandbox), w->sandbox);
	for (int i = 0; i < w->n; i++) {
		struct cni_ip *ip = &res->ips[res->nips++];
		ip->address.addr = w->ip[i];
		ip->address.len = routed ? (uint8_t)ip_maxlen(w->ip[i].family) : w->cidr[i].len;
		wire_gateway(w, i, &ip->gateway);
		ip->iface = podif;
		struct cni_route *r = &res->routes[res->nroutes++];
		r->dst.addr.family = w->ip[i].family;
		r->gw = ip->gateway;
	}
	return 0;
undo:
	nl_link_del(node, hl.index);
	return err;
}

int wire_del(struct nl_sock *node, const char *host, const struct ipaddr *ips, int n, char *why,
	     size_t len)
{
	int idx = nl_link_index(node, host);
	if (idx > 0) {
		int err = nl_link_del(node, idx);
		if (err && err != -ENODEV)
			return fail(err, why, len, "deleting %s", host);
		return 0; /* its routes went with it */
	}
	if (idx != -ENODEV)
		return fail(idx, why, len, "looking up %s", host);
	for (int i = 0; i < n; i++) {
		/* protocol set: the kernel deletes only a route of ours */
		struct nl_route r = {.protocol = TWILL_RTPROT_POD, .scope = RT_SCOPE_LINK};
		r.dst.addr = ips[i];
		r.dst.len = (uint8_t)ip_maxlen(ips[i].family);
		int err = nl_route_del(node, &r);
		if (err && err != -ESRCH && err != -ENOENT) {
			char buf[IP_STRLEN];
			return fail(err, why, len, "deleting route %s", prefix_fmt(&r.dst, buf));
		}
	}
	return 0;
}

/* ---- CHECK ---- */

struct route_want {
	const struct ipprefix *dst;
	const struct ipaddr *gw; /* NULL = any */
	int oif;		 /* 0 = any */
	bool found;
};

static int route_cb(const struct nl_route *r, void *arg)
{
	struct route_want *w = arg;
	struct ipprefix a = r->dst, b = *w->dst;
	prefix_normalize(&a);
	prefix_normalize(&b);
	if (prefix_eq(&a, &b) && (!w->oif || r->oif == w->oif) &&
	    (!w->gw || !ip_is_set(w->gw) || (ip_is_set(&r->gw) && ip_eq(&r->gw, w->gw))))
		w->found = true;
	return 0;
}

static bool has_route(struct nl_sock *s, uint8_t protocol, const struct ipprefix *dst,
		      const struct ipaddr *gw, int oif)
{
	struct route_want w = {.dst = dst, .gw = gw, .oif = oif};
	return !nl_route_dump(s, dst->addr.family, 0, protocol, route_cb, &w) && w.found;
}

int wire_check(struct nl_sock *node, struct nl_sock *pod, const struct wire_spec *w,
	       const struct cni_result *prev, char *why, size_t len)
{
	char buf[IP_STRLEN];
	struct nl_link pl, hl;
	bool routed = w->wiring == CNI_WIRING_ROUTED;
	int err = nl_link_get(pod, w->ifname, &pl);
	if (err)
		return fail(err, why, len, "interface %s in the pod", w->ifname);
	if ((err = nl_link_get(node, w->host, &hl)))
		return fail(err, why, len, "host interface %s", w->host);
	if (!pl.up)
		return fail(-ENETDOWN, why, len, "interface %s in the pod", w->ifname);
	if (!hl.up)
		return fail(-ENETDOWN, why, len, "host interface %s", w->host);
	if (!routed) {
		struct nl_link br;
		if ((err = nl_link_get(node, w->bridge, &br)))
			return fail(err, why, len, "bridge %s", w->bridge);
		if (hl.master != br.index)
			return fail(-EINVAL, why, len, "%s is not enslaved to %s", w->host,
				    w->bridge);
	}
	for (int i = 0; i < w->n; i++) {
		struct ipprefix a = {.addr = w->ip[i]};
		a.len = routed ? (uint8_t)ip_maxlen(w->ip[i].family) : w->cidr[i].len;
		if (!has_addr(pod, pl.index, &a))
			return fail(-ENOENT, why, len, "address %s missing on %s in the pod",
				    prefix_fmt(&a, buf), w->ifname);
		struct ipprefix def = {.addr = {.family = w->ip[i].family}};
		struct ipaddr gw;
		wire_gateway(w, i, &gw);
		if (!has_route(pod, 0, &def, &gw, pl.index))
			return fail(-ENOENT, why, len, "default route via %s missing in the pod",
				    ip_fmt(&gw, buf));
		struct ipprefix host = {.addr = w->ip[i],
					.len = (uint8_t)ip_maxlen(w->ip[i].family)};
		if (routed && !has_route(node, TWILL_RTPROT_POD, &host, NULL, hl.index))
			return fail(-ENOENT, why, len, "route %s dev %s missing",
				    prefix_fmt(&host, buf), w->host);
	}
	if (!prev)
		return 0;
	/* What the runtime recorded for our pod interface must still hold. */
	for (int i = 0; i < prev->nifaces; i++) {
		const struct cni_iface *f = &prev->ifaces[i];
		if (!f->sandbox[0] || strcmp(f->name, w->ifname))
			continue;
		if (f->has_mac && memcmp(f->mac, pl.mac, 6)) {
			char mac[18];
			cni_mac_fmt(f->mac, mac);
			return fail(-EINVAL, why, len, "%s has not the MAC %s of prevResult",
				    w->ifname, mac);
		}
	}
	for (int i = 0; i < prev->nips; i++) {
		const struct cni_ip *ip = &prev->ips[i];
		if (ip->iface < 0 || !prev->ifaces[ip->iface].sandbox[0] ||
		    strcmp(prev->ifaces[ip->iface].name, w->ifname))
			continue;
		if (!has_addr(pod, pl.index, &ip->address))
			return fail(-ENOENT, why, len, "prevResult address %s missing on %s",
				    prefix_fmt(&ip->address, buf), w->ifname);
	}
	for (int i = 0; i < prev->nroutes; i++) {
		const struct cni_route *r = &prev->routes[i];
		if (!has_route(pod, 0, &r->dst, &r->gw, 0))
			return fail(-ENOENT, why, len, "prevResult route %s missing in the pod",
				    prefix_fmt(&r->dst, buf));
	}
	return 0;
}
