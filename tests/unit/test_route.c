/* Unit tests for the route planner's pure parts: modes, VTEP MAC derivation, the
 * connected-subnet check, per-peer desired state per mode, and the minimal diff. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* cmocka needs the headers above first */
#include <cmocka.h>

#include "lib/util.h"
#include "route/route.h"

static struct ipprefix P(const char *s) {
	struct ipprefix p;
	assert_int_equal(prefix_parse(s, &p), 0);
	return p;
}

static struct ipaddr
A(const char *s) {
	struct ipaddr a;
	assert_int_equal(ip_parse(s, &a), 0);
	return a;
}

static bool
prefix_is(const struct ipprefix *p, const char *s)
{
	struct ipprefix q = P(s);
	return prefix_eq(p, &q);
}

static bool ip_is(const struct ipaddr *a, const char *s)
{
	struct ipaddr b = A(s);
	return ip_eq(a, &b);
}

static void test_modes(void **state)
{
	(void)state;
	assert_int_equal(route_mode_parse("host-gw"), ROUTE_HOST_GW);
	assert_int_equal(route_mode_parse("vxlan"), ROUTE_VXLAN);
	assert_int_equal(route_mode_parse("mixed"), ROUTE_MIXED);
	assert_int_equal(route_mode_parse("ipip"), ROUTE_IPIP);
	assert_int_equal(route_mode_parse("ipip-crosssubnet"), ROUTE_IPIP_CROSSSUBNET);
	assert_int_equal(route_mode_parse("IPIP"), -1);
	assert_int_equal(route_mode_parse("ipip-"), -1);
	assert_string_equal(route_mode_name(ROUTE_IPIP), "ipip");
	assert_string_equal(route_mode_name(ROUTE_IPIP_CROSSSUBNET), "ipip-crosssubnet");
	assert_string_equal(route_via_name(ROUTE_VIA_IPIP), "ipip");
	/* what each mode's encapsulation takes from the underlay MTU */
	assert_int_equal(route_mode_overhead(ROUTE_HOST_GW), 0);
	assert_int_equal(route_mode_overhead(ROUTE_VXLAN), 50);
	assert_int_equal(route_mode_overhead(ROUTE_MIXED), 50);
	assert_int_equal(route_mode_overhead(ROUTE_IPIP), 20);
	assert_int_equal(route_mode_overhead(ROUTE_IPIP_CROSSSUBNET), 20);
	/* every mode's name parses back to it */
	for (int m = ROUTE_HOST_GW; m <= ROUTE_IPIP_CROSSSUBNET; m++)
		assert_int_equal(route_mode_parse(route_mode_name((enum route_mode)m)), m);
	assert_int_equal(route_mode_parse(NULL), -1);
	assert_string_equal(route_mode_name(ROUTE_HOST_GW), "host-gw");
	assert_string_equal(route_mode_name(ROUTE_MIXED), "mixed");
	assert_string_equal(route_via_name(ROUTE_VIA_NONE), "none");
	assert_string_equal(route_via_name(ROUTE_VIA_VXLAN), "vxlan");
}

static void test_mac(void **state)
{
	(void)state;
	uint8_t m[6];
	struct ipaddr a = A("192.168.10.101");
	route_vtep_mac(&a, m);
	const uint8_t want[6] = {0x0e, 0x74, 192, 168, 10, 101};
	assert_memory_equal(m, want, 6);
	assert_int_equal(m[0] & 1, 0); /* unicast */
	assert_int_equal(m[0] & 2, 2); /* locally administered */

	assert_int_equal(route_mac_parse("0E:74:c0:a8:0a:65", m), 0);
	assert_memory_equal(m, want, 6);
	assert_int_equal(route_mac_parse("0e:74:c0:a8:0a", m), -EINVAL);
	assert_int_equal(route_mac_parse("0e-74-c0-a8-0a-65", m), -EINVAL);
	assert_int_equal(route_mac_parse("01:00:5e:00:00:01", m), -EINVAL); /* multicast */
	assert_int_equal(route_mac_parse("00:00:00:00:00:00", m), -EINVAL);
	assert_int_equal(route_mac_parse("zz:74:c0:a8:0a:65", m), -EINVAL);
}

static const struct route_conn *conns(size_t *n)
{
	static struct route_conn c[3];
	c[0].prefix = P("10.99.1.0/24");
	c[0].ifindex = 2;
	c[1].prefix = P("10.0.0.0/8");
	c[1].ifindex = 3;
	c[2].prefix = P("fd00::/64");
	c[2].ifindex = 2;
	*n = 3;
	return c;
}

static void test_connected(void **state)
{
	(void)state;
	size_t n;
	const struct route_conn *c = conns(&n);
	struct ipaddr a = A("10.99.1.7");
	assert_int_equal(route_connected_ifindex(c, n, &a), 2); /* longest match */
	a = A("10.5.5.5");
	assert_int_equal(route_connected_ifindex(c, n, &a), 3);
	a = A("192.168.1.1");
	assert_int_equal(route_connected_ifindex(c, n, &a), 0);
	a = A("fd00::5");
	assert_int_equal(route_connected_ifindex(c, n, &a), 2);
	assert_int_equal(route_connected_ifindex(c, 0, &a), 0);
}

static struct route_peer_in peer(const char *name, const char *ip, const char *cidr)
{
	struct route_peer_in p = {.name = name};
	if (ip)
		p.ip = A(ip);
	if (cidr) {
		p.pod_cidrs[0] = P(cidr);
		p.npod_cidrs = 1;
	}
	return p;
}

static struct route_self self_of(enum route_mode m)
{
	size_t n;
	static struct route_conn c[1];
	(void)conns(&n);
	c[0].prefix = P("10.99.1.0/24");
	c[0].ifindex = 2;
	struct route_self s = {
	    .mode = m, .ip = A("10.99.1.1"), .conn = c, .nconn = 1, .vxlan_index = 9};
	return s;
}

static const struct rt_entry *find(const struct rt_set *s, enum rt_kind k)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].kind == k)
			return &s->v[i];
	return NULL;
}

static void test_plan_host_gw(void **state)
{
	(void)state;
	struct route_self self = self_of(ROUTE_HOST_GW);
	struct rt_set out = {0};
	char why[256];

	struct route_peer_in b = peer("b", "10.99.1.2", "10.98.1.0/24");
	assert_int_equal(route_plan_peer(&self, &b, &out, why, sizeof(why)), ROUTE_VIA_HOST_GW);
	assert_int_equal(out.n, 1);
	const struct rt_entry *e = &out.v[0];
	assert_int_equal(e->kind, RT_ROUTE);
	assert_true(prefix_is(&e->dst, "10.98.1.0/24"));
	assert_true(ip_eq(&e->gw, &b.ip));
	assert_int_equal(e->oif, 2);
	assert_false(e->onlink);

	/* host bits in the podCIDR are cleared */
	rt_set_clear(&out);
	b = peer("b", "10.99.1.2", "10.98.1.9/24");
	route_plan_peer(&self, &b, &out, why, sizeof(why));
	assert_true(prefix_is(&out.v[0].dst, "10.98.1.0/24"));

	/* not adjacent: unroutable, nothing installed */
	rt_set_clear(&out);
	struct route_peer_in c = peer("c", "10.99.2.1", "10.98.2.0/24");
	assert_int_equal(route_plan_peer(&self, &c, &out, why, sizeof(why)), ROUTE_VIA_NONE);
	assert_int_equal(out.n, 0);
	assert_string_equal(why, "10.99.2.1 is not on a directly connected subnet (host-gw needs "
				 "L2 adjacency; use vxlan or mixed)");

	/* no podCIDR yet, no IP, own IP */
	struct route_peer_in d = peer("d", "10.99.1.3", NULL);
	assert_int_equal(route_plan_peer(&self, &d, &out, why, sizeof(why)), ROUTE_VIA_NONE);
	assert_non_null(strstr(why, "podCIDR"));
	d = peer("d", NULL, "10.98.3.0/24");
	assert_int_equal(route_plan_peer(&self, &d, &out, why, sizeof(why)), ROUTE_VIA_NONE);
	d = peer("d", "10.99.1.1", "10.98.3.0/24");
	assert_int_equal(route_plan_peer(&self, &d, &out, why, sizeof(why)), ROUTE_VIA_NONE);
	assert_int_equal(out.n, 0);

	/* this node's own IP unknown */
	self.ip.family = 0;
	assert_int_equal(route_plan_peer(&self, &b, &out, why, sizeof(why)), ROUTE_VIA_NONE);
	rt_set_free(&out);
}

static void test_plan_vxlan(void **state)
{
	(void)state;
	struct route_self self = self_of(ROUTE_VXLAN);
	struct rt_set out = {0};
	char why[256];
	/* even an adjacent node goes through the overlay in vxlan mode */
	struct route_peer_in b = peer("b", "10.99.2.5", "10.98.2.0/24");
	assert_int_equal(route_plan_peer(&self, &b, &out, why, sizeof(why)), ROUTE_VIA_VXLAN);
	assert_int_equal(out.n, 3);
	const struct rt_entry *r = find(&out, RT_ROUTE), *n = find(&out, RT_NEIGH),
			      *f = find(&out, RT_FDB);
	assert_non_null(r);
	assert_non_null(n);
	assert_non_null(f);
	assert_true(prefix_is(&r->dst, "10.98.2.0/24"));
	assert_true(ip_is(&r->gw, "10.98.2.0")); /* VTEP: podCIDR network address */
	assert_int_equal(r->oif, 9);
	assert_true(r->onlink);
	const uint8_t mac[6] = {0x0e, 0x74, 10, 99, 2, 5};
	assert_true(prefix_is(&n->dst, "10.98.2.0/32"));
	assert_memory_equal(n->mac, mac, 6);
	assert_int_equal(n->oif, 9);
	assert_memory_equal(f->mac, mac, 6);
	assert_true(ip_eq(&f->gw, &b.ip));
	assert_int_equal(f->oif, 9);

	/* annotation MAC wins */
	rt_set_clear(&out);
	b.has_mac = true;
	const uint8_t amac[6] = {0x02, 0, 0, 0, 0, 0x42};
	memcpy(b.mac, amac, 6);
	route_plan_peer(&self, &b, &out, why, sizeof(why));
	assert_memory_equal(find(&out, RT_NEIGH)->mac, amac, 6);
	assert_memory_equal(find(&out, RT_FDB)->mac, amac, 6);

	/* two podCIDRs: two routes and neighbours, one FDB entry; IPv6 skipped */
	rt_set_clear(&out);
	b.has_mac = false;
	b.pod_cidrs[1] = P("10.97.2.0/24");
	b.npod_cidrs = 2;
	route_plan_peer(&self, &b, &out, why, sizeof(why));
	assert_int_equal(out.n, 5);
	rt_set_clear(&out);
	b.pod_cidrs[1] = P("fd10::/64");
	route_plan_peer(&self, &b, &out, why, sizeof(why));
	assert_int_equal(out.n, 3);

	/* device missing */
	rt_set_clear(&out);
	self.vxlan_index = 0;
	assert_int_equal(route_plan_peer(&self, &b, &out, why, sizeof(why)), ROUTE_VIA_NONE);
	assert_int_equal(out.n, 0);
	rt_set_free(&out);
}

/* The split modes: b (10.99.1.2) is on the connected subnet, c (10.99.2.1) is not; b is
 * planned first (one direct route), then c, which must be reached via `far`. */
static struct route_peer_in plan_near_far(const struct route_self *self, struct rt_set *out,
					  enum route_via far)
{
	char why[256];
	struct route_peer_in b = peer("b", "10.99.1.2", "10.98.1.0/24");
	struct route_peer_in c = peer("c", "10.99.2.1", "10.98.2.0/24");
	assert_int_equal(route_plan_peer(self, &b, out, why, sizeof(why)), ROUTE_VIA_HOST_GW);
	assert_int_equal(out->n, 1);
	assert_int_equal(route_plan_peer(self, &c, out, why, sizeof(why)), far);
	return b;
}

static void test_plan_mixed(void **state)
{
	(void)state;
	struct route_self self = self_of(ROUTE_MIXED);
	struct rt_set out = {0};
	plan_near_far(&self, &out, ROUTE_VIA_VXLAN);
	assert_int_equal(out.n, 4);
	rt_set_free(&out);
}

/* Calico's IPIP: every remote podCIDR via the node's own address, onlink, through tunl0;
 * no neighbour or FDB entries (the outer destination is the gateway itself). */
static void test_plan_ipip(void **state)
{
	(void)state;
	struct route_self self = self_of(ROUTE_IPIP);
	self.ipip_index = 7;
	struct rt_set out = {0};
	char why[256];
	/* same subnet: still through the tunnel in "ipip" (Calico's ipipMode Always) */
	struct route_peer_in b = peer("b", "10.99.1.2", "10.98.1.0/24");
	b.pod_cidrs[1] = P("10.97.1.7/24"); /* a second one, host bits set: normalised */
	b.npod_cidrs = 2;
	assert_int_equal(route_plan_peer(&self, &b, &out, why, sizeof(why)), ROUTE_VIA_IPIP);
	assert_int_equal(out.n, 2);
	for (size_t i = 0; i < out.n; i++) {
		assert_int_equal(out.v[i].kind, RT_ROUTE);
		assert_true(ip_is(&out.v[i].gw, "10.99.1.2"));
		assert_int_equal(out.v[i].oif, 7);
		assert_true(out.v[i].onlink);
		assert_int_equal(out.v[i].priority, 0);
	}
	assert_true(prefix_is(&out.v[0].dst, "10.98.1.0/24"));
	assert_true(prefix_is(&out.v[1].dst, "10.97.1.0/24"));
	assert_null(find(&out, RT_NEIGH));
	assert_null(find(&out, RT_FDB));

	/* another subnet: the same, the tunnel needs no L2 adjacency */
	rt_set_clear(&out);
	struct route_peer_in c = peer("c", "172.16.5.9", "10.98.2.0/24");
	assert_int_equal(route_plan_peer(&self, &c, &out, why, sizeof(why)), ROUTE_VIA_IPIP);
	assert_int_equal(out.n, 1);
	assert_true(ip_is(&out.v[0].gw, "172.16.5.9"));
	assert_true(prefix_is(&out.v[0].dst, "10.98.2.0/24"));

	/* tunl0 not there (yet): unroutable, nothing planned, and it says why */
	rt_set_clear(&out);
	self.ipip_index = 0;
	assert_int_equal(route_plan_peer(&self, &c, &out, why, sizeof(why)), ROUTE_VIA_NONE);
	assert_int_equal(out.n, 0);
	assert_non_null(strstr(why, "tunl0"));
	/* the VXLAN device does not stand in for it */
	self.vxlan_index = 9;
	assert_int_equal(route_plan_peer(&self, &c, &out, why, sizeof(why)), ROUTE_VIA_NONE);

	/* the usual checks still come first */
	self.ipip_index = 7;
	struct route_peer_in nocidr = peer("d", "10.99.1.3", NULL);
	assert_int_equal(route_plan_peer(&self, &nocidr, &out, why, sizeof(why)), ROUTE_VIA_NONE);
	assert_non_null(strstr(why, "podCIDR"));
	struct route_peer_in me = peer("e", "10.99.1.1", "10.98.3.0/24");
	assert_int_equal(route_plan_peer(&self, &me, &out, why, sizeof(why)), ROUTE_VIA_NONE);
	assert_int_equal(out.n, 0);
	rt_set_free(&out);
}

/* CrossSubnet: direct where the node is on a connected subnet, the tunnel elsewhere. */
static void test_plan_ipip_crosssubnet(void **state)
{
	(void)state;
	struct route_self self = self_of(ROUTE_IPIP_CROSSSUBNET);
	self.ipip_index = 7;
	self.vxlan_index = 0;
	struct rt_set out = {0};
	struct route_peer_in b = plan_near_far(&self, &out, ROUTE_VIA_IPIP);
	assert_true(ip_is(&out.v[0].gw, "10.99.1.2"));
	assert_int_equal(out.v[0].oif, 2);
	assert_false(out.v[0].onlink);
	assert_int_equal(out.n, 2);
	assert_true(prefix_is(&out.v[1].dst, "10.98.2.0/24"));
	assert_true(ip_is(&out.v[1].gw, "10.99.2.1"));
	assert_int_equal(out.v[1].oif, 7);
	assert_true(out.v[1].onlink);
	/* without tunl0 only the direct peer is routable */
	char why[256];
	struct route_peer_in c = peer("c", "10.99.2.1", "10.98.2.0/24");
	rt_set_clear(&out);
	self.ipip_index = 0;
	assert_int_equal(route_plan_peer(&self, &b, &out, why, sizeof(why)), ROUTE_VIA_HOST_GW);
	assert_int_equal(route_plan_peer(&self, &c, &out, why, sizeof(why)), ROUTE_VIA_NONE);
	assert_int_equal(out.n, 1);

	/* a peer moving from the tunnel to direct is one replacement of its route */
	struct rt_set have = {0}, add = {0}, rep = {0}, del = {0};
	struct rt_entry tunneled = {.kind = RT_ROUTE,
				    .dst = P("10.98.1.0/24"),
				    .gw = A("10.99.1.2"),
				    .oif = 7,
				    .onlink = true};
	rt_set_add(&have, &tunneled);
	rt_diff(&out, &have, &add, &rep, &del);
	assert_int_equal(add.n, 0);
	assert_int_equal(del.n, 0);
	assert_int_equal(rep.n, 1);
	assert_int_equal(rep.v[0].oif, 2);
	assert_false(rep.v[0].onlink);
	rt_set_free(&have);
	rt_set_free(&add);
	rt_set_free(&rep);
	rt_set_free(&del);
	rt_set_free(&out);
}

static struct rt_entry R(const char *dst, const char *gw, int oif, bool onlink) {
	struct rt_entry e = {
	    .kind = RT_ROUTE, .dst = P(dst), .gw = A(gw), .oif = oif, .onlink = onlink};
	return e;
}

static struct rt_entry
N(const char *ip, uint8_t last, int oif) {
	struct rt_entry e = {.kind = RT_NEIGH, .oif = oif};
	e.dst.addr = A(ip);
	e.dst.len = 32;
	const uint8_t m[6] = {0x0e, 0x74, 0, 0, 0, last};
	memcpy(e.mac, m, 6);
	return e;
}

static struct rt_entry
F(uint8_t last, const char *dst, int oif) {
	struct rt_entry e = {.kind = RT_FDB, .oif = oif, .gw = A(dst)};
	const uint8_t m[6] = {0x0e, 0x74, 0, 0, 0, last};
	memcpy(e.mac, m, 6);
	return e;
}

static void
test_diff(void **state)
{
	(void)state;
	struct rt_set want = {0}, have = {0}, add = {0}, rep = {0}, del = {0};

	/* identical sets (in another order): nothing to do */
	struct rt_entry w[] = {R("10.98.1.0/24", "10.99.1.2", 2, false),
			       R("10.98.2.0/24", "10.98.2.0", 9, true), N("10.98.2.0", 5, 9),
			       F(5, "10.99.2.1", 9)};
	for (size_t i = 0; i < 4; i++) {
		rt_set_add(&want, &w[i]);
		rt_set_add(&have, &w[3 - i]);
	}
	rt_diff(&want, &have, &add, &rep, &del);
	assert_int_equal(add.n + rep.n + del.n, 0);

	/* empty kernel: everything is added */
	rt_set_clear(&have);
	rt_diff(&want, &have, &add, &rep, &del);
	assert_int_equal(add.n, 4);
	assert_int_equal(rep.n + del.n, 0);

	/* a changed gateway is replaced, a changed lladdr too, stale entries deleted,
	 * a changed FDB destination is delete + add (its key includes the destination) */
	rt_set_clear(&add);
	struct rt_entry h[] = {R("10.98.1.0/24", "10.99.1.3", 2, false), /* gw differs */
			       R("10.98.2.0/24", "10.98.2.0", 9, true),	 /* same */
			       N("10.98.2.0", 6, 9),			 /* mac differs */
			       F(5, "10.99.2.9", 9),			 /* dst differs */
			       R("10.98.7.0/24", "10.99.1.7", 2, false), /* stale */
			       N("10.98.7.0", 7, 9)};			 /* stale */
	for (size_t i = 0; i < ARRAY_SIZE(h); i++)
		rt_set_add(&have, &h[i]);
	rt_diff(&want, &have, &add, &rep, &del);
	assert_int_equal(rep.n, 2);
	assert_int_equal(add.n, 1);
	assert_int_equal(add.v[0].kind, RT_FDB);
	assert_true(ip_is(&add.v[0].gw, "10.99.2.1"));
	assert_int_equal(del.n, 3);
	bool saw_fdb = false;
	for (size_t i = 0; i < del.n; i++)
		if (del.v[i].kind == RT_FDB) {
			saw_fdb = true;
			assert_true(ip_is(&del.v[i].gw, "10.99.2.9"));
		}
	assert_true(saw_fdb);
	for (size_t i = 0; i < rep.n; i++) {
		if (rep.v[i].kind == RT_ROUTE)
			assert_true(ip_is(&rep.v[i].gw, "10.99.1.2")); /* the desired one */
		else
			assert_int_equal(rep.v[i].mac[5], 5);
	}

	/* host-gw -> vxlan for the same podCIDR: one replace (no delete + add) */
	rt_set_clear(&want);
	rt_set_clear(&have);
	rt_set_clear(&add);
	rt_set_clear(&rep);
	rt_set_clear(&del);
	struct rt_entry hg = R("10.98.1.0/24", "10.99.1.2", 2, false);
	struct rt_entry vx = R("10.98.1.0/24", "10.98.1.0", 9, true);
	rt_set_add(&have, &hg);
	rt_set_add(&want, &vx);
	rt_diff(&want, &have, &add, &rep, &del);
	assert_int_equal(rep.n, 1);
	assert_true(rep.v[0].onlink);
	assert_int_equal(add.n + del.n, 0);

	/* duplicates: two desired with one key -> the first wins; two current with one key
	 * -> the extra one is deleted */
	rt_set_clear(&want);
	rt_set_clear(&have);
	rt_set_clear(&rep);
	rt_set_add(&want, &hg);
	rt_set_add(&want, &vx);
	rt_set_add(&have, &hg);
	rt_set_add(&have, &vx);
	rt_diff(&want, &have, &add, &rep, &del);
	assert_int_equal(add.n + rep.n, 0);
	assert_int_equal(del.n, 1);
	assert_true(del.v[0].onlink);

	/* a different metric is another key */
	rt_set_clear(&want);
	rt_set_clear(&have);
	rt_set_clear(&del);
	struct rt_entry m = hg;
	m.priority = 100;
	rt_set_add(&want, &hg);
	rt_set_add(&have, &m);
	rt_diff(&want, &have, &add, &rep, &del);
	assert_int_equal(add.n, 1);
	assert_int_equal(del.n, 1);
	assert_int_equal(rep.n, 0);

	char buf[160];
	assert_non_null(strstr(rt_entry_fmt(&vx, buf, sizeof(buf)), "onlink"));
	struct rt_entry nn = N("10.98.2.0", 5, 9);
	assert_non_null(strstr(rt_entry_fmt(&nn, buf, sizeof(buf)), "0e:74:00:00:00:05"));

	rt_set_free(&want);
	rt_set_free(&have);
	rt_set_free(&add);
	rt_set_free(&rep);
	rt_set_free(&del);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_modes),      cmocka_unit_test(test_mac),
	    cmocka_unit_test(test_connected),  cmocka_unit_test(test_plan_host_gw),
	    cmocka_unit_test(test_plan_vxlan), cmocka_unit_test(test_plan_mixed),
	    cmocka_unit_test(test_plan_ipip),  cmocka_unit_test(test_plan_ipip_crosssubnet),
	    cmocka_unit_test(test_diff),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
