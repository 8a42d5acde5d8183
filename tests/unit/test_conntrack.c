/* Unit tests for proxy/conntrack: the matcher, parsing of ctnetlink entry messages (no
 * kernel needed), and, as root, a dump + delete round trip against entries created through
 * ctnetlink inside a forked child's own network namespace (unshare(CLONE_NEWNET)), so the
 * host's conntrack table is never read or touched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four above first */

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "in_netns.h"
#include "proxy/conntrack.h"

/* An address as ct_entry holds it (16 bytes, IPv4 in the first 4); its length. */
static size_t addr(const char *s, uint8_t out[16])
{
	memset(out, 0, 16);
	bool v6 = strchr(s, ':') != NULL;
	CK(inet_pton(v6 ? AF_INET6 : AF_INET, s, out) == 1);
	return v6 ? 16 : 4;
}

static bool addr_is(const uint8_t *a, const char *s)
{
	uint8_t b[16];
	addr(s, b);
	return !memcmp(a, b, 16);
}

static void put_tuple(struct nlmsghdr *nlh, uint16_t type, const char *src, const char *dst,
		      uint16_t sport, uint16_t dport)
{
	struct nlattr *t = mnl_attr_nest_start(nlh, type);
	struct nlattr *ip = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
	uint8_t a[16];
	size_t len = addr(src, a);
	mnl_attr_put(nlh, len == 16 ? CTA_IP_V6_SRC : CTA_IP_V4_SRC, len, a);
	len = addr(dst, a);
	mnl_attr_put(nlh, len == 16 ? CTA_IP_V6_DST : CTA_IP_V4_DST, len, a);
	mnl_attr_nest_end(nlh, ip);
	struct nlattr *pr = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
	mnl_attr_put_u8(nlh, CTA_PROTO_NUM, IPPROTO_UDP);
	mnl_attr_put_u16(nlh, CTA_PROTO_SRC_PORT, htons(sport));
	mnl_attr_put_u16(nlh, CTA_PROTO_DST_PORT, htons(dport));
	mnl_attr_nest_end(nlh, pr);
	mnl_attr_nest_end(nlh, t);
}

/* A client:sport -> VIP:53, translated to backend:5353. */
static struct nlmsghdr *build_flow(char *buf, uint16_t type, uint16_t flags, uint8_t family,
				   const char *client, const char *vip, uint16_t sport,
				   const char *backend, bool reply)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	nlh->nlmsg_seq = 1;
	struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->nfgen_family = family;
	g->version = NFNETLINK_V0;
	put_tuple(nlh, CTA_TUPLE_ORIG, client, vip, sport, 53);
	if (reply)
		put_tuple(nlh, CTA_TUPLE_REPLY, backend, client, 5353, sport);
	return nlh;
}

/* A client 10.1.0.2:41000 -> VIP 10.96.0.10:53, translated to backend:5353. */
static struct nlmsghdr *build_entry(char *buf, uint16_t type, uint16_t flags, uint8_t family,
				    const char *backend, bool reply)
{
	return build_flow(buf, type, flags, family, "10.1.0.2", "10.96.0.10", 41000, backend,
			  reply);
}

static struct ct_match match(const char *vip, const char *backend)
{
	struct ct_match m;
	memset(&m, 0, sizeof(m));
	m.family = addr(vip, m.dst) == 16 ? AF_INET6 : AF_INET;
	m.l4 = IPPROTO_UDP;
	m.dport = 53;
	addr(backend, m.rsrc);
	m.rsport = 5353;
	return m;
}

static void test_matches(void **state)
{
	(void)state;
	struct ct_entry e = {.family = AF_INET, .l4 = IPPROTO_UDP, .odport = 53, .rsport = 5353};
	addr("10.96.0.10", e.odst);
	addr("10.2.0.5", e.rsrc);
	struct ct_match m = match("10.96.0.10", "10.2.0.5");
	assert_true(ct_entry_matches(&e, &m));
	m.family = AF_INET6; /* the same bytes in another family */
	assert_false(ct_entry_matches(&e, &m));
	m.family = AF_INET;
	m.rsport = 5354; /* another backend port */
	assert_false(ct_entry_matches(&e, &m));
	m.rsport = 5353;
	m.l4 = IPPROTO_TCP;
	assert_false(ct_entry_matches(&e, &m));
	m.l4 = IPPROTO_UDP;
	addr("10.96.0.11", m.dst); /* another Service */
	assert_false(ct_entry_matches(&e, &m));
	/* IPv6: all 16 bytes count */
	e = (struct ct_entry){.family = AF_INET6, .l4 = IPPROTO_UDP, .odport = 53, .rsport = 5353};
	addr("fd00:96::a", e.odst);
	addr("fd00:2::5", e.rsrc);
	m = match("fd00:96::a", "fd00:2::5");
	assert_true(ct_entry_matches(&e, &m));
	addr("fd00:2::6", m.rsrc);
	assert_false(ct_entry_matches(&e, &m));
}

static void test_parse(void **state)
{
	(void)state;
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = build_entry(buf, IPCTNL_MSG_CT_NEW, 0, AF_INET, "10.2.0.5", true);
	mnl_attr_put_u16(nlh, CTA_ZONE, htons(7));
	struct ct_entry e;
	assert_int_equal(ct_entry_parse(nlh, &e), 0);
	assert_int_equal(e.l4, IPPROTO_UDP);
	assert_int_equal(e.zone, 7);
	assert_int_equal(e.family, AF_INET);
	assert_true(addr_is(e.osrc, "10.1.0.2"));
	assert_true(addr_is(e.odst, "10.96.0.10"));
	assert_int_equal(e.osport, 41000);
	assert_int_equal(e.odport, 53);
	assert_true(addr_is(e.rsrc, "10.2.0.5"));
	assert_true(addr_is(e.rdst, "10.1.0.2"));
	assert_int_equal(e.rsport, 5353);
	assert_int_equal(e.rdport, 41000);
	/* IPv6 */
	nlh = build_flow(buf, IPCTNL_MSG_CT_NEW, 0, AF_INET6, "fd00:1::2", "fd00:96::a", 41000,
			 "fd00:2::5", true);
	assert_int_equal(ct_entry_parse(nlh, &e), 0);
	assert_int_equal(e.family, AF_INET6);
	assert_true(addr_is(e.osrc, "fd00:1::2"));
	assert_true(addr_is(e.odst, "fd00:96::a"));
	assert_true(addr_is(e.rsrc, "fd00:2::5"));
	assert_int_equal(e.rsport, 5353);
	/* no reply tuple, IPv6 family with IPv4 addresses, truncated: rejected */
	nlh = build_entry(buf, IPCTNL_MSG_CT_NEW, 0, AF_INET, "10.2.0.5", false);
	assert_int_equal(ct_entry_parse(nlh, &e), -EINVAL);
	nlh = build_entry(buf, IPCTNL_MSG_CT_NEW, 0, AF_INET6, "10.2.0.5", true);
	assert_int_equal(ct_entry_parse(nlh, &e), -EINVAL);
	nlh = build_entry(buf, IPCTNL_MSG_CT_NEW, 0, AF_INET, "10.2.0.5", true);
	nlh->nlmsg_len = sizeof(struct nlmsghdr) + 2;
	assert_int_equal(ct_entry_parse(nlh, &e), -EINVAL);
}

/* ---- kernel: in a fresh network namespace ---- */

static int create_flow(struct mnl_socket *nl, uint8_t family, const char *client, const char *vip,
		       uint16_t sport, const char *backend)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = build_flow(buf, IPCTNL_MSG_CT_NEW, NLM_F_CREATE | NLM_F_ACK, family,
					  client, vip, sport, backend, true);
	mnl_attr_put_u32(nlh, CTA_TIMEOUT, htonl(120));
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
	if (n < 0)
		return -errno;
	return mnl_cb_run(buf, (size_t)n, 1, mnl_socket_get_portid(nl), NULL, NULL) < 0 ? -errno
											: 0;
}

struct count {
	const char *vip, *b1;
	int n[2]; /* entries to vip translated to b1, to another backend */
};

static int count_cb(const struct ct_entry *e, void *arg)
{
	struct count *c = arg;
	if (addr_is(e->odst, c->vip))
		c->n[addr_is(e->rsrc, c->b1) ? 0 : 1]++;
	return 0;
}

/* Two flows to vip (two client ports), one on b1, one on b2: deleting b1's leaves b2's. */
static void round_trip(uint8_t family, const char *client, const char *vip, const char *b1,
		       const char *b2)
{
	struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
	CK(nl && mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) == 0);
	int r = create_flow(nl, family, client, vip, 41000, b1);
	if (r == -ENOENT || r == -EOPNOTSUPP || r == -EPROTONOSUPPORT) {
		fprintf(stderr, "conntrack netlink unavailable (%s): skipped\n", strerror(-r));
		mnl_socket_close(nl);
		return;
	}
	CK(r == 0);
	CK(create_flow(nl, family, client, vip, 41001, b2) == 0);
	mnl_socket_close(nl);

	struct count c = {vip, b1, {0, 0}};
	CK(ct_dump(count_cb, &c) == 0);
	CK(c.n[0] == 1 && c.n[1] == 1);
	struct ct_match m = match(vip, b1);
	CK(ct_delete_matching(&m, 1) == 1);
	c.n[0] = c.n[1] = 0;
	CK(ct_dump(count_cb, &c) == 0);
	CK(c.n[0] == 0 && c.n[1] == 1); /* the other backend's entry stays */
	CK(ct_delete_matching(&m, 1) == 0);
	CK(ct_delete_matching(NULL, 0) == 0);
}

static void kernel_round_trip(void)
{
	round_trip(AF_INET, "10.1.0.2", "10.96.0.10", "10.2.0.5", "10.2.0.6");
	round_trip(AF_INET6, "fd00:1::2", "fd00:96::a", "fd00:2::5", "fd00:2::6");
}

static void test_kernel(void **state)
{
	(void)state;
	in_netns(kernel_round_trip);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_matches),
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_kernel),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
