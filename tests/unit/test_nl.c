/* Unit tests for nl/: exact bytes of built messages, parse round trips and rejection
 * of malformed messages (no kernel needed), then kernel tests, each in a forked child
 * that unshare(CLONE_NEWNET)s first so nothing can reach the host's namespace, and a
 * named-namespace test using the prefix "tnl<pid>-" (cleaned up before and after). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four above first */

#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/consts.h"
#include "lib/ip.h"
#include "nl/nl.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#define GOLDEN_SKIP() skip() /* the expected bytes below are little-endian */
#else
#define GOLDEN_SKIP() ((void)0)
#endif

/* ---- helpers usable both in cmocka tests and in forked children ---- */

#define CK(cond)                                                                                   \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			_exit(1);                                                                  \
		}                                                                                  \
	} while (0)
#define CKR(expr, want)                                                                            \
	do {                                                                                       \
		int _r = (expr);                                                                   \
		if (_r != (want)) {                                                                \
			fprintf(stderr, "%s:%d: %s = %d (%s), want %d [%s]\n", __FILE__, __LINE__, \
				#expr, _r, strerror(_r < 0 ? -_r : 0), (want),                     \
				nl_errmsg(cur_sock));                                              \
			_exit(1);                                                                  \
		}                                                                                  \
	} while (0)
#define CK0(expr) CKR(expr, 0)

static struct nl_sock *cur_sock; /* for the kernel's extended-ACK text in failures */

static struct ipaddr A(const char *s) {
	struct ipaddr a;
	if (ip_parse(s, &a) < 0) {
		fprintf(stderr, "bad address %s\n", s);
		abort();
	}
	return a;
}

static struct ipprefix
P(const char *s) {
	struct ipprefix p;
	if (prefix_parse(s, &p) < 0) {
		fprintf(stderr, "bad prefix %s\n", s);
		abort();
	}
	return p;
}

static void
assert_bytes(const struct nlmsghdr *nlh, const uint8_t *want, size_t len)
{
	if (nlh->nlmsg_len != len || memcmp(nlh, want, len) != 0) {
		const uint8_t *b = (const uint8_t *)nlh;
		fprintf(stderr, "got %u bytes:", nlh->nlmsg_len);
		for (unsigned i = 0; i < nlh->nlmsg_len; i++)
			fprintf(stderr, "%s%02x", i % 16 ? " " : "\n  ", b[i]);
		fprintf(stderr, "\n");
	}
	assert_int_equal(nlh->nlmsg_len, len);
	assert_memory_equal(nlh, want, len);
}

static const uint8_t MAC1[6] = {0x02, 0, 0, 0, 0, 0x01};

/* ---- golden bytes ---- */

static void test_build_route_v4_gw(void **st)
{
	(void)st;
	GOLDEN_SKIP();
	uint8_t buf[NL_MSG_MAX];
	struct nl_route r = {.dst = P("10.1.2.7/24"), /* host bits are cleared */
			     .gw = A("192.168.1.1"),
			     .oif = 3,
			     .protocol = TWILL_RTPROT_NODE,
			     .priority = 100};
	static const uint8_t want[] = {
	    0x44, 0,  0,  0, 0x18, 0,	0x01, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, /* nlmsghdr */
	    0x02, 24, 0,  0, 254,  116, 0,    1,    0, 0, 0, 0,		    /* rtmsg */
	    8,	  0,  15, 0, 254,  0,	0,    0,			    /* RTA_TABLE */
	    8,	  0,  1,  0, 10,   1,	2,    0,			    /* RTA_DST */
	    8,	  0,  5,  0, 192,  168, 1,    1,			    /* RTA_GATEWAY */
	    8,	  0,  4,  0, 3,	   0,	0,    0,			    /* RTA_OIF */
	    8,	  0,  6,  0, 100,  0,	0,    0,			    /* RTA_PRIORITY */
	};
	assert_bytes(nl_build_route(buf, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &r), want,
		     sizeof(want));
}

static void test_build_route_v6_mtu(void **st)
{
	(void)st;
	GOLDEN_SKIP();
	uint8_t buf[NL_MSG_MAX];
	struct nl_route r = {.dst = P("fd00:1::/64"),
			     .gw = A("2001:db8::2"),
			     .oif = 2,
			     .protocol = TWILL_RTPROT_NODE,
			     .mtu = 1400};
	static const uint8_t want[] = {
	    0x60, 0,  0,  0,	0x18, 0,    0x01, 0x05, 0,    0,    0, 0, 0, 0, 0, 0, /* nlmsghdr */
	    0x0a, 64, 0,  0,	254,  116,  0,	  1,	0,    0,    0, 0,	      /* rtmsg */
	    8,	  0,  15, 0,	254,  0,    0,	  0, /* RTA_TABLE */
	    20,	  0,  1,  0,	0xfd, 0,    0,	  1,	0,    0,    0, 0, 0, 0, 0, 0,
	    0,	  0,  0,  0, /* RTA_DST */
	    20,	  0,  5,  0,	0x20, 0x01, 0x0d, 0xb8, 0,    0,    0, 0, 0, 0, 0, 0,
	    0,	  0,  0,  2,						  /* GW */
	    8,	  0,  4,  0,	2,    0,    0,	  0,			  /* RTA_OIF */
	    12,	  0,  8,  0x80, 8,    0,    2,	  0,	0x78, 0x05, 0, 0, /* RTA_METRICS { RTAX_MTU
									     1400 } */
	};
	assert_bytes(nl_build_route(buf, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, &r), want,
		     sizeof(want));
}

static void test_build_route_onlink_and_del(void **st)
{
	(void)st;
	GOLDEN_SKIP();
	uint8_t buf[NL_MSG_MAX];
	struct nl_route r = {.dst = P("172.20.1.0/24"),
			     .gw = A("172.20.1.0"),
			     .oif = 5,
			     .protocol = TWILL_RTPROT_NODE,
			     .flags = RTNH_F_ONLINK,
			     .table = 1000};
	static const uint8_t want[] = {
	    0x3c, 0,  0,  0, 0x18, 0,	 0x01, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, /* nlmsghdr */
	    0x02, 24, 0,  0, 0,	   116,	 0,    1,    4, 0, 0, 0, /* rtmsg: table in RTA_TABLE,
								    ONLINK */
	    8,	  0,  15, 0, 0xe8, 0x03, 0,    0,		 /* RTA_TABLE 1000 */
	    8,	  0,  1,  0, 172,  20,	 1,    0,		 /* RTA_DST */
	    8,	  0,  5,  0, 172,  20,	 1,    0,		 /* RTA_GATEWAY */
	    8,	  0,  4,  0, 5,	   0,	 0,    0,		 /* RTA_OIF */
	};
	assert_bytes(nl_build_route(buf, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &r), want,
		     sizeof(want));

	/* delete: unset scope/type match anything (RT_SCOPE_NOWHERE, RTN_UNSPEC) */
	struct nl_route d = {.dst = P("0.0.0.0/0"), .protocol = TWILL_RTPROT_NODE};
	static const uint8_t want_del[] = {
	    0x24, 0, 0,	  0,   0x19, 0, 0x01, 0x00, 0, 0, 0, 0, 0,  0, 0,   0, 0x02, 0,
	    0,	  0, 254, 116, 255,  0, 0,    0,    0, 0, 8, 0, 15, 0, 254, 0, 0,    0,
	};
	assert_bytes(nl_build_route(buf, RTM_DELROUTE, 0, &d), want_del, sizeof(want_del));
}

static void test_build_neigh_fdb(void **st)
{
	(void)st;
	GOLDEN_SKIP();
	uint8_t buf[NL_MSG_MAX];
	struct nl_neigh n = {
	    .family = AF_INET, .index = 7, .dst = A("172.20.1.0"), .has_lladdr = true};
	memcpy(n.lladdr, MAC1, 6);
	static const uint8_t want_arp[] = {
	    0x30, 0, 0, 0, 0x1c, 0,  0x01, 0x05, 0,    0, 0, 0, 0, 0, 0, 0, /* nlmsghdr */
	    0x02, 0, 0, 0, 7,	 0,  0,	   0,	 0x80, 0, 0, 0, /* ndmsg: NUD_PERMANENT by default
								 */
	    8,	  0, 1, 0, 172,	 20, 1,	   0,			/* NDA_DST */
	    10,	  0, 2, 0, 2,	 0,  0,	   0,	 0,    1, 0, 0, /* NDA_LLADDR + padding */
	};
	assert_bytes(nl_build_neigh(buf, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, &n), want_arp,
		     sizeof(want_arp));

	struct nl_neigh f = {.family = AF_BRIDGE,
			     .index = 7,
			     .dst = A("192.168.10.101"),
			     .has_lladdr = true,
			     .state = NUD_PERMANENT,
			     .flags = NTF_SELF};
	memcpy(f.lladdr, MAC1, 6);
	static const uint8_t want_fdb[] = {
	    0x30, 0,	0, 0, 0x1c, 0,	 0x01, 0x05, 0, 0,    0, 0,    0, 0, 0,
	    0,	  0x07, 0, 0, 0,    7,	 0,    0,    0, 0x80, 0, 0x02, 0, /* AF_BRIDGE, NTF_SELF */
	    8,	  0,	1, 0, 192,  168, 10,   101,			  /* NDA_DST = VTEP */
	    10,	  0,	2, 0, 2,    0,	 0,    0,    0, 1,    0, 0,
	};
	assert_bytes(nl_build_neigh(buf, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, &f), want_fdb,
		     sizeof(want_fdb));

	/* delete keeps state 0 */
	static const uint8_t want_del[] = {
	    0x30, 0,  0, 0, 0x1d, 0, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
	    0x02, 0,  0, 0, 7,	  0, 0,	   0,	 0, 0, 0, 0, 8, 0, 1, 0,
	    172,  20, 1, 0, 10,	  0, 2,	   0,	 2, 0, 0, 0, 0, 1, 0, 0,
	};
	assert_bytes(nl_build_neigh(buf, RTM_DELNEIGH, 0, &n), want_del, sizeof(want_del));
}

static void test_build_addr(void **st)
{
	(void)st;
	GOLDEN_SKIP();
	uint8_t buf[NL_MSG_MAX];
	struct nl_addr a = {.index = 3, .prefix = P("10.0.0.1/24")};
	static const uint8_t want4[] = {
	    0x28, 0,  0, 0, 0x14, 0, 0x01, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, /* nlmsghdr */
	    0x02, 24, 0, 0, 3,	  0, 0,	   0,				 /* ifaddrmsg */
	    8,	  0,  2, 0, 10,	  0, 0,	   1,				 /* IFA_LOCAL */
	    8,	  0,  1, 0, 10,	  0, 0,	   1,				 /* IFA_ADDRESS */
	};
	assert_bytes(nl_build_addr(buf, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &a), want4,
		     sizeof(want4));

	struct nl_addr a6 = {.index = 4,
			     .prefix = P("2001:db8::1/64"),
			     .scope = RT_SCOPE_UNIVERSE,
			     .flags = IFA_F_NODAD | IFA_F_NOPREFIXROUTE};
	static const uint8_t
	    want6
		[] =
		    {
			0x48, 0,    0,	  0, 0x15, 0,	 0x01, 0x00, 0, 0, 0, 0,    0,
			0,    0,    0,				  /* RTM_DELADDR
								   */
			0x0a, 64,   0x02, 0, 4,	   0,	 0,    0, /* ifa_flags keeps the low 8 bits
								   */
			20,   0,    2,	  0, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,    0,
			0,    0,    0,	  0, 0,	   0,	 1,    20,   0, 1, 0, 0x20, 0x01,
			0x0d, 0xb8, 0,	  0, 0,	   0,	 0,    0,    0, 0, 0, 0,    0,
			1,    8,    0,	  8, 0,	   0x02, 0x02, 0,    0, /* IFA_FLAGS:
									   all 32 bits
									 */
		    };
	assert_bytes(nl_build_addr(buf, RTM_DELADDR, 0, &a6), want6, sizeof(want6));
}

/* ---- parse round trips and malformed input ---- */

static void test_parse_route_roundtrip(void **st)
{
	(void)st;
	uint8_t buf[NL_MSG_MAX];
	struct nl_route in = {.dst = P("fd00:1::/64"),
			      .gw = A("2001:db8::2"),
			      .prefsrc = A("2001:db8::1"),
			      .oif = 2,
			      .protocol = TWILL_RTPROT_NODE,
			      .scope = RT_SCOPE_UNIVERSE,
			      .table = 1000,
			      .flags = RTNH_F_ONLINK,
			      .priority = 7,
			      .mtu = 1400};
	struct nlmsghdr *nlh = nl_build_route(buf, RTM_NEWROUTE, NLM_F_CREATE, &in);
	struct nl_route out;
	assert_int_equal(nl_parse_route(nlh, &out), 0);
	assert_true(prefix_eq(&out.dst, &in.dst));
	assert_true(ip_eq(&out.gw, &in.gw));
	assert_true(ip_eq(&out.prefsrc, &in.prefsrc));
	assert_int_equal(out.oif, 2);
	assert_int_equal(out.protocol, TWILL_RTPROT_NODE);
	assert_int_equal(out.type, RTN_UNICAST);
	assert_int_equal(out.table, 1000);
	assert_int_equal(out.flags, RTNH_F_ONLINK);
	assert_int_equal(out.priority, 7);
	assert_int_equal(out.mtu, 1400);

	/* IPv4 via an IPv6 next hop goes out as RTA_VIA and comes back the same */
	struct nl_route via = {.dst = P("10.9.0.0/16"), .gw = A("fe80::1"), .oif = 4};
	nlh = nl_build_route(buf, RTM_NEWROUTE, NLM_F_CREATE, &via);
	assert_int_equal(nl_parse_route(nlh, &out), 0);
	assert_int_equal(out.dst.addr.family, AF_INET);
	assert_true(ip_eq(&out.gw, &via.gw));
	assert_int_equal(out.table, RT_TABLE_MAIN);

	/* a default route has no RTA_DST and parses to the zero prefix */
	struct nl_route def = {.dst = P("0.0.0.0/0"), .gw = A("10.0.0.254")};
	nlh = nl_build_route(buf, RTM_NEWROUTE, NLM_F_CREATE, &def);
	assert_int_equal(nl_parse_route(nlh, &out), 0);
	assert_true(prefix_eq(&out.dst, &def.dst));

	/* cloned (cache) entries are skipped */
	nlh = nl_build_route(buf, RTM_NEWROUTE, 0, &in);
	((struct rtmsg *)mnl_nlmsg_get_payload(nlh))->rtm_flags |= RTM_F_CLONED;
	assert_int_equal(nl_parse_route(nlh, &out), -ENOENT);
}

static void test_parse_malformed(void **st)
{
	(void)st;
	uint8_t buf[NL_MSG_MAX];
	struct nl_route out;
	struct nl_route in = {.dst = P("10.1.0.0/16"), .gw = A("10.0.0.1"), .oif = 3};

	/* an attribute claiming more than the message holds */
	struct nlmsghdr *nlh = nl_build_route(buf, RTM_NEWROUTE, 0, &in);
	struct nlattr *last = (struct nlattr *)((uint8_t *)nlh + nlh->nlmsg_len - 8);
	last->nla_len = 200;
	assert_int_equal(nl_parse_route(nlh, &out), -EINVAL);

	/* trailing bytes too short to be an attribute */
	nlh = nl_build_route(buf, RTM_NEWROUTE, 0, &in);
	nlh->nlmsg_len += 4;
	assert_int_equal(nl_parse_route(nlh, &out), -EINVAL);

	/* RTA_OIF of the wrong size fails validation */
	nlh = nl_build_route(buf, RTM_NEWROUTE, 0, &in);
	mnl_attr_put_u16(nlh, RTA_OIF, 3);
	assert_int_equal(nl_parse_route(nlh, &out), -EINVAL);

	/* an IPv6 gateway in an IPv4 route's RTA_GATEWAY */
	nlh = nl_build_route(buf, RTM_NEWROUTE, 0, &in);
	struct ipaddr g6 = A("fe80::1");
	mnl_attr_put(nlh, RTA_GATEWAY, 16, g6.b);
	assert_int_equal(nl_parse_route(nlh, &out), -EINVAL);

	/* header shorter than struct rtmsg */
	nlh = nl_build_route(buf, RTM_NEWROUTE, 0, &in);
	nlh->nlmsg_len = NLMSG_HDRLEN + 4;
	assert_int_equal(nl_parse_route(nlh, &out), -EINVAL);

	/* wrong message type */
	nlh = nl_build_route(buf, RTM_NEWROUTE, 0, &in);
	nlh->nlmsg_type = RTM_NEWLINK;
	assert_int_equal(nl_parse_route(nlh, &out), -EINVAL);

	/* a broken nested RTA_METRICS */
	in.mtu = 1400;
	nlh = nl_build_route(buf, RTM_NEWROUTE, 0, &in);
	struct nlattr *mx = (struct nlattr *)((uint8_t *)nlh + nlh->nlmsg_len - 12);
	assert_int_equal(mnl_attr_get_type(mx), RTA_METRICS);
	((struct nlattr *)mnl_attr_get_payload(mx))->nla_len = 6; /* RTAX_MTU: u32 in 2 bytes */
	assert_int_equal(nl_parse_route(nlh, &out), -EINVAL);
}

static void test_parse_neigh_addr_roundtrip(void **st)
{
	(void)st;
	uint8_t buf[NL_MSG_MAX];
	struct nl_neigh f = {.family = AF_BRIDGE,
			     .index = 9,
			     .dst = A("2001:db8::5"),
			     .has_lladdr = true,
			     .state = NUD_PERMANENT,
			     .flags = NTF_SELF};
	memcpy(f.lladdr, MAC1, 6);
	struct nl_neigh n;
	assert_int_equal(nl_parse_neigh(nl_build_neigh(buf, RTM_NEWNEIGH, 0, &f), &n), 0);
	assert_int_equal(n.family, AF_BRIDGE);
	assert_int_equal(n.index, 9);
	assert_true(ip_eq(&n.dst, &f.dst));
	assert_true(n.has_lladdr);
	assert_memory_equal(n.lladdr, MAC1, 6);
	assert_int_equal(n.state, NUD_PERMANENT);
	assert_int_equal(n.flags, NTF_SELF);

	struct nl_addr a = {.index = 4, .prefix = P("10.0.0.9/8"), .flags = IFA_F_NOPREFIXROUTE};
	struct nl_addr b;
	assert_int_equal(nl_parse_addr(nl_build_addr(buf, RTM_NEWADDR, 0, &a), &b), 0);
	assert_true(prefix_eq(&a.prefix, &b.prefix));
	assert_int_equal(b.index, 4);
	assert_int_equal(b.flags, IFA_F_NOPREFIXROUTE);

	/* an IPv4 neighbour with a 16-byte NDA_DST */
	struct nl_neigh bad = {.family = AF_INET, .index = 1};
	struct nlmsghdr *nlh = nl_build_neigh(buf, RTM_NEWNEIGH, 0, &bad);
	mnl_attr_put(nlh, NDA_DST, 16, f.dst.b);
	assert_int_equal(nl_parse_neigh(nlh, &n), -EINVAL);
}

static void test_parse_link(void **st)
{
	(void)st;
	uint8_t buf[NL_MSG_MAX] = {0};
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_NEWLINK;
	struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_index = 5;
	ifi->ifi_flags = IFF_UP | IFF_BROADCAST;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, "twill.1");
	mnl_attr_put_u32(nlh, IFLA_MTU, 1450);
	mnl_attr_put(nlh, IFLA_ADDRESS, 6, MAC1);
	mnl_attr_put_u32(nlh, IFLA_LINK_NETNSID, 2);
	struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "vxlan");
	struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	mnl_attr_put_u32(nlh, IFLA_VXLAN_ID, 42);
	mnl_attr_put_u32(nlh, IFLA_VXLAN_LINK, 3);
	struct ipaddr local = A("192.168.10.100");
	mnl_attr_put(nlh, IFLA_VXLAN_LOCAL, 4, local.b);
	mnl_attr_put_u8(nlh, IFLA_VXLAN_LEARNING, 0);
	mnl_attr_put_u16(nlh, IFLA_VXLAN_PORT, htons(4789));
	mnl_attr_nest_end(nlh, data);
	mnl_attr_nest_end(nlh, info);

	struct nl_link l;
	assert_int_equal(nl_parse_link(nlh, &l), 0);
	assert_int_equal(l.index, 5);
	assert_string_equal(l.name, "twill.1");
	assert_string_equal(l.kind, "vxlan");
	assert_int_equal(l.mtu, 1450);
	assert_true(l.up);
	assert_memory_equal(l.mac, MAC1, 6);
	assert_int_equal(l.link_netnsid, 2);
	assert_int_equal(l.vxlan_id, 42);
	assert_int_equal(l.vxlan_dev, 3);
	assert_int_equal(l.vxlan_port, 4789);
	assert_true(ip_eq(&l.vxlan_local, &local));
	assert_false(l.vxlan_learning);

	/* a name without its NUL is rejected */
	uint8_t buf2[NL_MSG_MAX] = {0};
	nlh = mnl_nlmsg_put_header(buf2);
	nlh->nlmsg_type = RTM_NEWLINK;
	mnl_nlmsg_put_extra_header(nlh, sizeof(struct ifinfomsg));
	mnl_attr_put(nlh, IFLA_IFNAME, 4, "eth0");
	assert_int_equal(nl_parse_link(nlh, &l), -EINVAL);
}

static void test_sysctl_path(void **st)
{
	(void)st;
	char p[256];
	assert_int_equal(sysctl_path("net.ipv4.ip_forward", p, sizeof(p)), 0);
	assert_string_equal(p, "/proc/sys/net/ipv4/ip_forward");
	assert_int_equal(sysctl_path("net.ipv4.conf.twill.1.proxy_arp", p, sizeof(p)), 0);
	assert_string_equal(p, "/proc/sys/net/ipv4/conf/twill.1/proxy_arp");
	assert_int_equal(sysctl_path("net.ipv6.conf.eth1.forwarding", p, sizeof(p)), 0);
	assert_string_equal(p, "/proc/sys/net/ipv6/conf/eth1/forwarding");
	assert_int_equal(sysctl_path("net.ipv4.neigh.a.b.c.gc_stale_time", p, sizeof(p)), 0);
	assert_string_equal(p, "/proc/sys/net/ipv4/neigh/a.b.c/gc_stale_time");
	assert_int_equal(sysctl_path("net/ipv4/conf/twill.1/rp_filter", p, sizeof(p)), 0);
	assert_string_equal(p, "/proc/sys/net/ipv4/conf/twill.1/rp_filter");
	assert_int_equal(sysctl_path("/proc/sys/net/core/somaxconn", p, sizeof(p)), 0);
	assert_string_equal(p, "/proc/sys/net/core/somaxconn");
	assert_int_equal(sysctl_path("net/../../etc/passwd", p, sizeof(p)), -EINVAL);
	assert_int_equal(sysctl_path("net.ipv4..x", p, sizeof(p)), -EINVAL);
	assert_int_equal(sysctl_path("", p, sizeof(p)), -EINVAL);
	assert_int_equal(sysctl_path("net.ipv4.ip_forward", p, 10), -ENAMETOOLONG);
}

/* ---- kernel tests, each in a fresh network namespace ---- */

static void run_in_new_netns(void (*fn)(void))
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		alarm(60); /* bound the child whatever happens */
		if (unshare(CLONE_NEWNET) < 0) {
			perror("unshare(CLONE_NEWNET)");
			_exit(2);
		}
		fn();
		exit(0); /* exit (not _exit) so LeakSanitizer checks the child too */
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status))
		fprintf(stderr, "child killed by signal %d\n", WTERMSIG(status));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static int link_up(struct nl_sock *s, const char *name)
{
	int idx = nl_link_index(s, name);
	CK(idx > 0);
	CK0(nl_link_set_up(s, idx, true));
	return idx;
}

struct names {
	int n;
	char name[16][IFNAMSIZ];
};

static int collect_names(const struct nl_link *l, void *arg)
{
	struct names *ns = arg;
	if (ns->n < 16)
		snprintf(ns->name[ns->n++], IFNAMSIZ, "%s", l->name);
	return 0;
}

static bool has_name(const struct names *ns, const char *name)
{
	for (int i = 0; i < ns->n; i++)
		if (!strcmp(ns->name[i], name))
			return true;
	return false;
}

static int stop_at_first(const struct nl_link *l, void *arg)
{
	(void)l;
	(void)arg;
	return 42;
}

static void kernel_links(void)
{
	struct nl_sock *s = cur_sock = nl_open();
	CK(s);
	struct nl_link l;
	CK0(nl_link_get(s, "lo", &l));
	CK(l.index == 1);
	CK0(nl_link_set_up(s, 1, true));
	CK0(nl_link_get_index(s, 1, &l));
	CK(l.up && !strcmp(l.name, "lo"));
	CKR(nl_link_get(s, "nosuchlink", &l), -ENODEV);
	CKR(nl_link_get(s, "a-name-much-too-long", &l), -EINVAL);

	const uint8_t mac_a[6] = {0x02, 0xaa, 0, 0, 0, 1}, mac_b[6] = {0x02, 0xbb, 0, 0, 0, 2};
	CK0(nl_link_add_veth(s, "va", mac_a, "vb", mac_b, -1, 1400));
	CKR(nl_link_add_veth(s, "va", NULL, "vx", NULL, -1, 0), -EEXIST);
	CK0(nl_link_get(s, "va", &l));
	int va = l.index;
	int vb = nl_link_index(s, "vb");
	CK(vb > 0);
	CK(!strcmp(l.kind, "veth") && l.mtu == 1400 && !memcmp(l.mac, mac_a, 6) && l.link == vb);
	CK(!l.up && l.master == 0);

	CK0(nl_link_add_bridge(s, "br0", 1400));
	int br = nl_link_index(s, "br0");
	CK(br > 0);
	CK0(nl_link_get_index(s, br, &l));
	CK(!strcmp(l.kind, "bridge"));
	CK0(nl_link_set_master(s, va, br));
	CK0(nl_link_get_index(s, va, &l));
	CK(l.master == br);

	const uint8_t mac_c[6] = {0x02, 0xcc, 0, 0, 0, 3};
	CK0(nl_link_set_mtu(s, vb, 1300));
	CK0(nl_link_set_mac(s, vb, mac_c));
	CK0(nl_link_set_name(s, vb, "vc"));
	CK0(nl_link_set_up(s, vb, true));
	CK0(nl_link_set_up(s, va, true));
	CK0(nl_link_set_up(s, br, true));
	CK0(nl_link_get(s, "vc", &l));
	CK(l.index == vb && l.mtu == 1300 && !memcmp(l.mac, mac_c, 6) && l.up);
	CKR(nl_link_index(s, "vb"), -ENODEV);

	struct names ns = {0};
	CK0(nl_link_dump(s, collect_names, &ns));
	CK(ns.n == 4 && has_name(&ns, "lo") && has_name(&ns, "va") && has_name(&ns, "vc") &&
	   has_name(&ns, "br0"));
	/* a callback that stops the dump: its value comes back and the socket stays usable */
	CKR(nl_link_dump(s, stop_at_first, NULL), 42);
	CK0(nl_link_get(s, "va", &l));
	CK(l.index == va);

	CK0(nl_link_set_master(s, va, 0));
	CK0(nl_link_get_index(s, va, &l));
	CK(l.master == 0);
	CK0(nl_link_del(s, br));
	CK0(nl_link_del(s, va)); /* takes its peer along */
	CKR(nl_link_index(s, "vc"), -ENODEV);
	CKR(nl_link_del(s, va), -ENODEV);
	nl_close(s);
}

static void test_kernel_links(void **st)
{
	(void)st;
	run_in_new_netns(kernel_links);
}

struct routes {
	int n;
	struct nl_route r[16];
};

static int collect_routes(const struct nl_route *r, void *arg)
{
	struct routes *rs = arg;
	if (rs->n < 16)
		rs->r[rs->n++] = *r;
	return 0;
}

static const struct nl_route *find_route(const struct routes *rs, const char *dst)
{
	struct ipprefix p = P(dst);
	for (int i = 0; i < rs->n; i++)
		if (prefix_eq(&rs->r[i].dst, &p))
			return &rs->r[i];
	return NULL;
}

struct addrs {
	int n;
	struct nl_addr a[16];
};

static int collect_addrs(const struct nl_addr *a, void *arg)
{
	struct addrs *as = arg;
	if (as->n < 16)
		as->a[as->n++] = *a;
	return 0;
}

static bool has_addr(const struct addrs *as, const char *pfx, int index)
{
	struct ipprefix p = P(pfx);
	for (int i = 0; i < as->n; i++)
		if (prefix_eq(&as->a[i].prefix, &p) && (!index || as->a[i].index == index))
			return true;
	return false;
}

static int make_veth_pair(struct nl_sock *s, int *peer)
{
	CK0(nl_link_add_veth(s, "va", NULL, "vb", NULL, -1, 0));
	link_up(s, "lo");
	int va = link_up(s, "va");
	int vb = link_up(s, "vb");
	if (peer)
		*peer = vb;
	return va;
}

static void kernel_addrs_routes(void)
{
	struct nl_sock *s = cur_sock = nl_open();
	CK(s);
	int va = make_veth_pair(s, NULL);

	struct nl_addr a4 = {.index = va, .prefix = P("10.0.0.1/24")};
	CK0(nl_addr_add(s, &a4));
	CK0(nl_addr_add(s, &a4)); /* identical: fine */
	struct nl_addr a6 = {.index = va, .prefix = P("2001:db8::1/64"), .flags = IFA_F_NODAD};
	CK0(nl_addr_add(s, &a6));
	CK0(nl_addr_add(s, &a6));
	struct nl_addr a6b = {.index = va, .prefix = P("2001:db8::1/48"), .flags = IFA_F_NODAD};
	CKR(nl_addr_add(s, &a6b), -EEXIST); /* same address, other length: not identical */

	struct addrs as = {0};
	CK0(nl_addr_dump(s, AF_INET, va, collect_addrs, &as));
	CK(as.n == 1 && has_addr(&as, "10.0.0.1/24", va));
	memset(&as, 0, sizeof(as));
	CK0(nl_addr_dump(s, AF_UNSPEC, 0, collect_addrs, &as));
	CK(has_addr(&as, "127.0.0.1/8", 1) && has_addr(&as, "10.0.0.1/24", va) &&
	   has_addr(&as, "2001:db8::1/64", va));
	CK0(nl_addr_del(s, &a4));
	memset(&as, 0, sizeof(as));
	CK0(nl_addr_dump(s, AF_INET, va, collect_addrs, &as));
	CK(as.n == 0);
	CKR(nl_addr_del(s, &a4), -EADDRNOTAVAIL);
	CK0(nl_addr_add(s, &a4));

	/* routes: two of ours (116), one of the CNI's (117), one IPv6, one in table 100 */
	struct nl_route r1 = {.dst = P("172.20.1.0/24"),
			      .gw = A("10.0.0.2"),
			      .oif = va,
			      .protocol = TWILL_RTPROT_NODE,
			      .priority = 100,
			      .mtu = 1400};
	CK0(nl_route_add(s, &r1, NLM_F_CREATE | NLM_F_EXCL));
	CKR(nl_route_add(s, &r1, NLM_F_CREATE | NLM_F_EXCL), -EEXIST);
	CK0(nl_route_add(s, &r1, NLM_F_CREATE | NLM_F_REPLACE));
	struct nl_route r2 = {.dst = P("172.20.2.0/24"),
			      .gw = A("172.20.2.0"),
			      .oif = va,
			      .protocol = TWILL_RTPROT_NODE,
			      .flags = RTNH_F_ONLINK};
	CK0(nl_route_add(s, &r2, NLM_F_CREATE | NLM_F_EXCL));
	struct nl_route r3 = {.dst = P("172.20.3.5/32"),
			      .oif = va,
			      .prefsrc = A("10.0.0.1"),
			      .scope = RT_SCOPE_LINK,
			      .protocol = TWILL_RTPROT_POD};
	CK0(nl_route_add(s, &r3, NLM_F_CREATE | NLM_F_EXCL));
	struct nl_route r4 = {.dst = P("172.20.4.0/24"),
			      .gw = A("10.0.0.2"),
			      .table = 100,
			      .protocol = TWILL_RTPROT_NODE};
	CK0(nl_route_add(s, &r4, NLM_F_CREATE | NLM_F_EXCL));
	struct nl_route r6 = {.dst = P("fd00:1::/64"),
			      .gw = A("2001:db8::2"),
			      .oif = va,
			      .protocol = TWILL_RTPROT_NODE};
	CK0(nl_route_add(s, &r6, NLM_F_CREATE | NLM_F_EXCL));

	struct routes rs = {0};
	CK0(nl_route_dump(s, AF_INET, 0, TWILL_RTPROT_NODE, collect_routes, &rs));
	CK(rs.n == 2);
	const struct nl_route *g = find_route(&rs, "172.20.1.0/24");
	CK(g && ip_eq(&g->gw, &r1.gw) && g->oif == va && g->priority == 100 && g->mtu == 1400 &&
	   g->table == RT_TABLE_MAIN && g->type == RTN_UNICAST);
	g = find_route(&rs, "172.20.2.0/24");
	CK(g && (g->flags & RTNH_F_ONLINK) && ip_eq(&g->gw, &r2.gw));

	memset(&rs, 0, sizeof(rs));
	CK0(nl_route_dump(s, AF_INET, 0, 0, collect_routes, &rs));
	CK(rs.n == 4); /* + 117's and the kernel's 10.0.0.0/24 */
	g = find_route(&rs, "172.20.3.5/32");
	CK(g && g->protocol == TWILL_RTPROT_POD && g->scope == RT_SCOPE_LINK &&
	   ip_eq(&g->prefsrc, &r3.prefsrc) && !ip_is_set(&g->gw));
	g = find_route(&rs, "10.0.0.0/24");
	CK(g && g->protocol == RTPROT_KERNEL);

	memset(&rs, 0, sizeof(rs));
	CK0(nl_route_dump(s, AF_INET, 100, TWILL_RTPROT_NODE, collect_routes, &rs));
	CK(rs.n == 1 && find_route(&rs, "172.20.4.0/24") && rs.r[0].table == 100);
	memset(&rs, 0, sizeof(rs));
	CK0(nl_route_dump(s, AF_INET, 4242, 0, collect_routes, &rs)); /* no such table */
	CK(rs.n == 0);

	memset(&rs, 0, sizeof(rs));
	CK0(nl_route_dump(s, AF_INET6, 0, TWILL_RTPROT_NODE, collect_routes, &rs));
	CK(rs.n == 1);
	g = find_route(&rs, "fd00:1::/64");
	CK(g && ip_eq(&g->gw, &r6.gw) && g->oif == va && g->priority == 1024);

	CK0(nl_route_del(s, &r1));
	CK0(nl_route_del(s, &r2));
	CK0(nl_route_del(s, &r4));
	CK0(nl_route_del(s, &r6));
	CKR(nl_route_del(s, &r1), -ESRCH);
	/* deleting with our protocol number never touches the CNI's route */
	struct nl_route r3_as_ours = r3;
	r3_as_ours.protocol = TWILL_RTPROT_NODE;
	CKR(nl_route_del(s, &r3_as_ours), -ESRCH);
	memset(&rs, 0, sizeof(rs));
	CK0(nl_route_dump(s, AF_INET, 0, TWILL_RTPROT_NODE, collect_routes, &rs));
	CK(rs.n == 0);
	memset(&rs, 0, sizeof(rs));
	CK0(nl_route_dump(s, AF_INET, 0, TWILL_RTPROT_POD, collect_routes, &rs));
	CK(rs.n == 1);
	CK0(nl_route_del(s, &r3));

	/* errors come back with the kernel's errno */
	struct nl_route bad = {.dst = P("172.20.9.0/24"), .gw = A("192.0.2.1"), .oif = va};
	CKR(nl_route_add(s, &bad, NLM_F_CREATE | NLM_F_EXCL), -ENETUNREACH);
	nl_close(s);
}

static void test_kernel_addrs_routes(void **st)
{
	(void)st;
	run_in_new_netns(kernel_addrs_routes);
}

struct neighs {
	int n;
	struct nl_neigh e[32];
};

static int collect_neighs(const struct nl_neigh *n, void *arg)
{
	struct neighs *ns = arg;
	if (ns->n < 32)
		ns->e[ns->n++] = *n;
	return 0;
}

static const struct nl_neigh *find_neigh(const struct neighs *ns, const char *dst,
					 const uint8_t *mac)
{
	struct ipaddr d = A(dst);
	for (int i = 0; i < ns->n; i++)
		if (ip_eq(&ns->e[i].dst, &d) && ns->e[i].has_lladdr &&
		    !memcmp(ns->e[i].lladdr, mac, 6))
			return &ns->e[i];
	return NULL;
}

static void kernel_vxlan_neigh(void)
{
	struct nl_sock *s = cur_sock = nl_open();
	CK(s);
	int va = make_veth_pair(s, NULL);
	struct nl_addr a4 = {.index = va, .prefix = P("10.0.0.1/24")};
	CK0(nl_addr_add(s, &a4));

	const uint8_t vtep_mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
	const uint8_t peer_mac[6] = {0x02, 0x66, 0x77, 0x88, 0x99, 0xaa};
	struct nl_vxlan vx = {.vni = 1,
			      .port = 4789,
			      .local = A("10.0.0.1"),
			      .dev = va,
			      .mtu = 1450,
			      .learning = false,
			      .mac = vtep_mac};
	CK0(nl_link_add_vxlan(s, "twill.1", &vx));
	CKR(nl_link_add_vxlan(s, "twill.1", &vx), -EEXIST);
	struct nl_link l;
	CK0(nl_link_get(s, "twill.1", &l));
	CK(!strcmp(l.kind, "vxlan") && l.vxlan_id == 1 && l.vxlan_port == 4789 &&
	   ip_eq(&l.vxlan_local, &vx.local) && l.vxlan_dev == va && !l.vxlan_learning &&
	   l.mtu == 1450 && !memcmp(l.mac, vtep_mac, 6));
	int vi = link_up(s, "twill.1");

	/* a learning vxlan with kernel defaults parses as such */
	struct nl_vxlan vx2 = {.vni = 2, .learning = true};
	CK0(nl_link_add_vxlan(s, "twill.2", &vx2));
	CK0(nl_link_get(s, "twill.2", &l));
	CK(l.vxlan_id == 2 && l.vxlan_learning && !ip_is_set(&l.vxlan_local) && l.vxlan_dev == 0);
	CK0(nl_link_del(s, l.index));

	/* Flannel-style: route via the peer's VTEP address, ARP for it, FDB to its node */
	struct nl_route r = {.dst = P("172.20.1.0/24"),
			     .gw = A("172.20.1.0"),
			     .oif = vi,
			     .flags = RTNH_F_ONLINK,
			     .protocol = TWILL_RTPROT_NODE};
	CK0(nl_route_add(s, &r, NLM_F_CREATE | NLM_F_REPLACE));
	struct nl_neigh arp = {.family = AF_INET,
			       .index = vi,
			       .dst = A("172.20.1.0"),
			       .has_lladdr = true,
			       .state = NUD_PERMANENT};
	memcpy(arp.lladdr, peer_mac, 6);
	CK0(nl_neigh_replace(s, &arp));
	CK0(nl_neigh_replace(s, &arp));
	struct nl_neigh fdb = {.family = AF_BRIDGE,
			       .index = vi,
			       .dst = A("10.0.0.2"),
			       .has_lladdr = true,
			       .state = NUD_PERMANENT,
			       .flags = NTF_SELF};
	memcpy(fdb.lladdr, peer_mac, 6);
	CK0(nl_neigh_replace(s, &fdb));
	CK0(nl_neigh_replace(s, &fdb));

	struct neighs ns = {0};
	CK0(nl_neigh_dump(s, AF_INET, vi, collect_neighs, &ns));
	CK(ns.n == 1);
	const struct nl_neigh *e = find_neigh(&ns, "172.20.1.0", peer_mac);
	CK(e && e->index == vi && e->state == NUD_PERMANENT);
	memset(&ns, 0, sizeof(ns));
	CK0(nl_neigh_dump(s, AF_BRIDGE, vi, collect_neighs, &ns));
	e = find_neigh(&ns, "10.0.0.2", peer_mac);
	CK(e && e->index == vi && (e->flags & NTF_SELF) && e->state == NUD_PERMANENT);
	memset(&ns, 0, sizeof(ns));
	CK0(nl_neigh_dump(s, AF_BRIDGE, 0, collect_neighs, &ns));
	CK(find_neigh(&ns, "10.0.0.2", peer_mac));

	CK0(nl_neigh_del(s, &arp));
	CK0(nl_neigh_del(s, &fdb));
	CKR(nl_neigh_del(s, &fdb), -ENOENT);
	memset(&ns, 0, sizeof(ns));
	CK0(nl_neigh_dump(s, AF_BRIDGE, vi, collect_neighs, &ns));
	CK(!find_neigh(&ns, "10.0.0.2", peer_mac));
	memset(&ns, 0, sizeof(ns));
	CK0(nl_neigh_dump(s, AF_INET, vi, collect_neighs, &ns));
	CK(!find_neigh(&ns, "172.20.1.0", peer_mac));

	/* sysctl of an interface whose name has a dot, both spellings */
	char v[32];
	CK0(sysctl_write("net.ipv4.conf.twill.1.proxy_arp", "1"));
	CK0(sysctl_read("net/ipv4/conf/twill.1/proxy_arp", v, sizeof(v)));
	CK(!strcmp(v, "1"));
	CK0(sysctl_write("net/ipv4/conf/twill.1/proxy_arp", "0\n"));
	CK0(sysctl_read("net.ipv4.conf.twill.1.proxy_arp", v, sizeof(v)));
	CK(!strcmp(v, "0"));
	CKR(sysctl_read("net.ipv4.conf.twill.1.proxy_arp", v, 1), -EOVERFLOW);
	CK0(sysctl_read("net.ipv4.conf.twill.1.proxy_arp", v,
			2)); /* "0" + NUL; the \n is dropped */
	CKR(sysctl_read("net.ipv4.conf.nosuch.proxy_arp", v, sizeof(v)), -ENOENT);
	nl_close(s);
}

static void test_kernel_vxlan_neigh(void **st)
{
	(void)st;
	run_in_new_netns(kernel_vxlan_neigh);
}

static ino_t ns_inode(int fd)
{
	struct stat sb;
	CK(fstat(fd, &sb) == 0);
	return sb.st_ino;
}

static ino_t own_ns_inode(void)
{
	struct stat sb;
	CK(stat("/proc/thread-self/ns/net", &sb) == 0);
	return sb.st_ino;
}

static void kernel_peer_netns(void)
{
	/* a second namespace kept alive by its fd: unshare again and step back */
	int ns1 = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	CK(ns1 >= 0);
	CK(unshare(CLONE_NEWNET) == 0);
	int ns2 = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	CK(ns2 >= 0);
	CK(setns(ns1, CLONE_NEWNET) == 0);
	CK(own_ns_inode() == ns_inode(ns1) && ns_inode(ns1) != ns_inode(ns2));

	struct nl_sock *s1 = cur_sock = nl_open();
	CK(s1);
	CK0(nl_link_add_veth(s1, "h0", NULL, "eth0", MAC1, ns2, 1450));
	struct nl_link l;
	CK0(nl_link_get(s1, "h0", &l));
	CK(l.mtu == 1450 && l.link_netnsid >= 0 && l.link > 0);
	CKR(nl_link_get(s1, "eth0", &l), -ENODEV);

	struct nl_sock *s2 = nl_open_netns(ns2);
	CK(s2);
	CK(own_ns_inode() == ns_inode(ns1)); /* back where we were */
	CK0(nl_link_get(s2, "eth0", &l));
	CK(l.mtu == 1450 && !memcmp(l.mac, MAC1, 6));
	int eth0 = l.index;

	/* enter/leave, and sysctls are per namespace.  A new namespace may inherit the
	 * host's value (net.core.devconf_inherit_init_net), so flip whatever ns1 has and
	 * check that ns2 keeps its own. */
	char v[16], before[16];
	CK0(sysctl_read("net.ipv4.ip_forward", before, sizeof(before)));
	const char *flip = strcmp(before, "1") ? "1" : "0";
	CK0(sysctl_write("net.ipv4.ip_forward", flip));
	CK0(sysctl_read("net.ipv4.ip_forward", v, sizeof(v)));
	CK(!strcmp(v, flip));
	int saved = -1;
	CK0(netns_enter(ns2, &saved));
	CK(own_ns_inode() == ns_inode(ns2));
	CK0(sysctl_read("net.ipv4.ip_forward", v, sizeof(v)));
	CK(!strcmp(v, before));
	struct nl_sock *s3 = nl_open();
	CK(s3);
	CK0(nl_link_get(s3, "eth0", &l));
	nl_close(s3);
	CK0(netns_leave(saved));
	CK(own_ns_inode() == ns_inode(ns1));

	/* move it back into the first namespace */
	CK0(nl_link_set_netns(s2, eth0, ns1));
	CKR(nl_link_get(s2, "eth0", &l), -ENODEV);
	CK0(nl_link_get(s1, "eth0", &l));
	CK(l.link_netnsid == -1);
	nl_close(s2);
	nl_close(s1);
	close(ns1);
	close(ns2);
}

static void test_kernel_peer_netns(void **st)
{
	(void)st;
	run_in_new_netns(kernel_peer_netns);
}

/* ---- named namespaces (real /run/netns entries, unique prefix, cleaned up) ---- */

static char ns_prefix[32];

static int del_cb(const char *name, void *arg)
{
	(void)arg;
	netns_delete(name);
	return 0;
}

static int count_cb(const char *name, void *arg)
{
	(void)name;
	++*(int *)arg;
	return 0;
}

static void cleanup_named(void)
{
	netns_list(ns_prefix, del_cb, NULL);
}

static int count_links(const struct nl_link *l, void *arg)
{
	(void)l;
	++*(int *)arg;
	return 0;
}

static void test_named_netns(void **st)
{
	(void)st;
	snprintf(ns_prefix, sizeof(ns_prefix), "tnl%ld-", (long)getpid());
	cleanup_named();
	char a[64], b[64];
	snprintf(a, sizeof(a), "%sa", ns_prefix);
	snprintf(b, sizeof(b), "%sb", ns_prefix);

	assert_false(netns_exists(a));
	assert_int_equal(netns_create(a), 0);
	assert_int_equal(netns_create(a), -EEXIST);
	assert_true(netns_exists(a));
	assert_int_equal(netns_create(b), 0);
	int n = 0;
	assert_int_equal(netns_list(ns_prefix, count_cb, &n), 0);
	assert_int_equal(n, 2);

	int fd = netns_open(a);
	assert_true(fd >= 0);
	struct nl_sock *s = nl_open_netns(fd);
	assert_non_null(s);
	int links = 0;
	assert_int_equal(nl_link_dump(s, count_links, &links), 0);
	assert_int_equal(links, 1); /* only lo: a fresh namespace */
	nl_close(s);
	close(fd);
	char path[128];
	snprintf(path, sizeof(path), "/run/netns/%s", b);
	fd = netns_open(path);
	assert_true(fd >= 0);
	close(fd);

	assert_int_equal(netns_open("../etc"), -EINVAL);
	assert_int_equal(netns_create("bad/name"), -EINVAL);
	assert_int_equal(netns_delete(a), 0);
	assert_false(netns_exists(a));
	assert_int_equal(netns_delete(a), 0); /* absent is fine */
	assert_int_equal(netns_open(a), -ENOENT);

	/* a bare file left by an interrupted create does not block the name */
	int f = open(path, O_RDONLY);
	assert_true(f >= 0);
	close(f);
	assert_int_equal(netns_delete(b), 0);
	f = open(path, O_RDONLY | O_CREAT | O_EXCL, 0);
	assert_true(f >= 0);
	close(f);
	assert_false(netns_exists(b));
	assert_int_equal(netns_create(b), 0);
	assert_true(netns_exists(b));

	cleanup_named();
	n = 0;
	assert_int_equal(netns_list(ns_prefix, count_cb, &n), 0);
	assert_int_equal(n, 0);
}

static int teardown_named(void **st)
{
	(void)st;
	if (ns_prefix[0])
		cleanup_named();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_build_route_v4_gw),
	    cmocka_unit_test(test_build_route_v6_mtu),
	    cmocka_unit_test(test_build_route_onlink_and_del),
	    cmocka_unit_test(test_build_neigh_fdb),
	    cmocka_unit_test(test_build_addr),
	    cmocka_unit_test(test_parse_route_roundtrip),
	    cmocka_unit_test(test_parse_malformed),
	    cmocka_unit_test(test_parse_neigh_addr_roundtrip),
	    cmocka_unit_test(test_parse_link),
	    cmocka_unit_test(test_sysctl_path),
	    cmocka_unit_test(test_kernel_links),
	    cmocka_unit_test(test_kernel_addrs_routes),
	    cmocka_unit_test(test_kernel_vxlan_neigh),
	    cmocka_unit_test(test_kernel_peer_netns),
	    cmocka_unit_test_teardown(test_named_netns, teardown_named),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
