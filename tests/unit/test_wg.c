/* Unit tests for WireGuard encryption: X25519 keys (RFC 7748's test vectors), base64 as
 * `wg` prints keys, the key file (mode 0600); the exact WG_CMD_SET_DEVICE /
 * WG_CMD_GET_DEVICE bytes (nested attributes, split over several messages) and parsing a
 * dump whose peer continues in the next message; the peer diff; and the route planner's
 * per-peer plan with encryption (route into twill.wg, whatever the mode). */
#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/wireguard.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* cmocka needs the headers above first */
#include <cmocka.h>

#include "lib/util.h"
#include "nl/nl_wg.h"
#include "route/route.h"
#include "wg/wg.h"

static void hex(const char *s, uint8_t *out, size_t n)
{
	assert_int_equal(strlen(s), 2 * n);
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		assert_int_equal(sscanf(s + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
}

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

/* ---- keys ---- */

static void
test_key_public_rfc7748(void **state)
{
	(void)state;
	/* RFC 7748, 6.1: Alice's and Bob's key pairs */
	static const char *vec[][2] = {
	    {"77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
	     "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"},
	    {"5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
	     "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"},
	};
	for (size_t i = 0; i < 2; i++) {
		uint8_t priv[32], want[32], pub[32];
		hex(vec[i][0], priv, 32);
		hex(vec[i][1], want, 32);
		assert_int_equal(wg_key_public(priv, pub), 0);
		assert_memory_equal(pub, want, 32);
	}
}

static void test_key_generate(void **state)
{
	(void)state;
	uint8_t a[32], b[32], pa[32], pb[32];
	assert_int_equal(wg_key_generate(a), 0);
	assert_int_equal(wg_key_generate(b), 0);
	assert_memory_not_equal(a, b, 32);
	/* clamped */
	assert_int_equal(a[0] & 7, 0);
	assert_int_equal(a[31] & 0xc0, 0x40);
	assert_int_equal(wg_key_public(a, pa), 0);
	assert_int_equal(wg_key_public(b, pb), 0);
	assert_memory_not_equal(pa, pb, 32);
}

static void test_base64(void **state)
{
	(void)state;
	uint8_t k[32], back[32];
	for (int i = 0; i < 32; i++)
		k[i] = (uint8_t)(i * 7 + 1);
	char s[WG_KEY_B64_LEN + 1];
	wg_key_to_base64(k, s);
	assert_int_equal(strlen(s), 44);
	assert_int_equal(s[43], '=');
	assert_int_equal(wg_key_from_base64(s, back), 0);
	assert_memory_equal(k, back, 32);
	/* what `wg genkey` writes: a trailing newline */
	char line[64];
	snprintf(line, sizeof(line), "%s\n", s);
	assert_int_equal(wg_key_from_base64(line, back), 0);
	/* a known key: 32 zero bytes */
	memset(k, 0, 32);
	wg_key_to_base64(k, s);
	assert_string_equal(s, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");

	static const char *bad[] = {
	    "",
	    "AAAA",
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",   /* no padding */
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", /* 45 */
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=",  /* stray low bits */
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA*=",  /* not base64 */
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",  /* 31 bytes */
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(wg_key_from_base64(bad[i], back), -EINVAL);
	assert_int_equal(wg_key_from_base64(NULL, back), -EINVAL);
}

static void test_key_file(void **state)
{
	(void)state;
	char dir[] = "/tmp/twill-test-wg-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *path = xasprintf("%s/wireguard.key", dir);
	uint8_t k[32], back[32];
	assert_int_equal(wg_key_load(path, back), -ENOENT);
	assert_int_equal(wg_key_generate(k), 0);
	assert_int_equal(wg_key_save(path, k), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(wg_key_load(path, back), 0);
	assert_memory_equal(k, back, 32);
	/* too open: loaded and tightened */
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(wg_key_load(path, back), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* not a key: an error, and the file stays as it is */
	assert_int_equal(file_write_atomic(path, "garbage\n", 8), 0);
	assert_int_equal(wg_key_load(path, back), -EINVAL);
	char *data;
	size_t len;
	assert_int_equal(file_read(path, &data, &len), 0);
	assert_string_equal(data, "garbage\n");
	free(data);
	unlink(path);
	rmdir(dir);
	free(path);
}

/* ---- netlink messages ---- */

static struct nl_wg_peer peer(uint8_t id, const char *ep, const char *c1, const char *c2)
{
	struct nl_wg_peer p = {0};
	memset(p.key, id, 32);
	if (ep) {
		p.endpoint = A(ep);
		p.port = WG_PORT;
	}
	if (c1)
		p.allowed[p.nallowed++] = P(c1);
	if (c2)
		p.allowed[p.nallowed++] = P(c2);
	return p;
}

static void check_allowed(const struct nlattr *a, const char *want)
{
	struct ipprefix w = P(want);
	const struct nlattr *x;
	int seen = 0;
	mnl_attr_for_each_nested(x, a)
	{
		switch (mnl_attr_get_type(x)) {
		case WGALLOWEDIP_A_FAMILY:
			assert_int_equal(mnl_attr_get_u16(x), w.addr.family);
			seen |= 1;
			break;
		case WGALLOWEDIP_A_IPADDR:
			assert_int_equal(mnl_attr_get_payload_len(x), ip_bytes(w.addr.family));
			assert_memory_equal(mnl_attr_get_payload(x), w.addr.b, 4);
			seen |= 2;
			break;
		case WGALLOWEDIP_A_CIDR_MASK:
			assert_int_equal(mnl_attr_get_u8(x), w.len);
			seen |= 4;
			break;
		default:
			fail_msg("unexpected allowed-IP attribute %d", mnl_attr_get_type(x));
		}
	}
	assert_int_equal(seen, 7);
}

static void test_build_set(void **state)
{
	(void)state;
	char buf[NL_MSG_MAX] __attribute__((aligned(8)));
	struct nl_wg_peer peers[2] = {
	    peer(0x11, "192.168.20.10", "10.244.2.0/24", NULL),
	    {.flags = WGPEER_F_REMOVE_ME},
	};
	peers[0].flags = WGPEER_F_REPLACE_ALLOWEDIPS;
	memset(peers[1].key, 0x22, 32);
	struct nl_wg_dev d = {.has_private_key = true,
			      .has_port = true,
			      .port = 51820,
			      .flags = WGDEVICE_F_REPLACE_PEERS,
			      .npeers = 2,
			      .peers = peers};
	memset(d.private_key, 0x33, 32);
	size_t next = 0;
	struct nlmsghdr *nlh = nl_wg_build_set(buf, sizeof(buf), 0x1234, "twill.wg", &d, &next);
	assert_non_null(nlh);
	assert_int_equal(next, 2);
	assert_int_equal(nlh->nlmsg_type, 0x1234);
	assert_int_equal(nlh->nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK);
	const struct genlmsghdr *g = mnl_nlmsg_get_payload(nlh);
	assert_int_equal(g->cmd, WG_CMD_SET_DEVICE);
	assert_int_equal(g->version, WG_GENL_VERSION);
	const struct nlattr *a;
	int seen = 0, npeers = 0;
	mnl_attr_for_each(a, nlh, sizeof(*g))
	{
		switch (mnl_attr_get_type(a)) {
		case WGDEVICE_A_IFNAME:
			assert_string_equal(mnl_attr_get_str(a), "twill.wg");
			seen |= 1;
			break;
		case WGDEVICE_A_PRIVATE_KEY:
			assert_int_equal(mnl_attr_get_payload_len(a), 32);
			assert_memory_equal(mnl_attr_get_payload(a), d.private_key, 32);
			seen |= 2;
			break;
		case WGDEVICE_A_LISTEN_PORT:
			assert_int_equal(mnl_attr_get_u16(a), 51820);
			seen |= 4;
			break;
		case WGDEVICE_A_FLAGS:
			assert_int_equal(mnl_attr_get_u32(a), WGDEVICE_F_REPLACE_PEERS);
			seen |= 8;
			break;
		case WGDEVICE_A_PEERS: {
			seen |= 16;
			assert_true(a->nla_type & NLA_F_NESTED);
			const struct nlattr *pn;
			mnl_attr_for_each_nested(pn, a)
			{
				assert_true(pn->nla_type & NLA_F_NESTED);
				assert_int_equal(mnl_attr_get_type(pn), npeers);
				const struct nlattr *x;
				int pseen = 0;
				mnl_attr_for_each_nested(x, pn)
				{
					switch (mnl_attr_get_type(x)) {
					case WGPEER_A_PUBLIC_KEY:
						assert_memory_equal(mnl_attr_get_payload(x),
								    peers[npeers].key, 32);
						pseen |= 1;
						break;
					case WGPEER_A_FLAGS:
						assert_int_equal(mnl_attr_get_u32(x),
								 peers[npeers].flags);
						pseen |= 2;
						break;
					case WGPEER_A_ENDPOINT: {
						struct sockaddr_in sin;
						assert_int_equal(mnl_attr_get_payload_len(x),
								 sizeof(sin));
						memcpy(&sin, mnl_attr_get_payload(x), sizeof(sin));
						assert_int_equal(sin.sin_family, AF_INET);
						assert_int_equal(ntohs(sin.sin_port), 51820);
						assert_int_equal(sin.sin_addr.s_addr,
								 inet_addr("192.168.20.10"));
						pseen |= 4;
						break;
					}
					case WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL:
						assert_int_equal(mnl_attr_get_u16(x), 0);
						pseen |= 8;
						break;
					case WGPEER_A_ALLOWEDIPS: {
						const struct nlattr *in;
						int n = 0;
						mnl_attr_for_each_nested(in, x)
						{
							check_allowed(in, "10.244.2.0/24");
							n++;
						}
						assert_int_equal(n, 1);
						pseen |= 16;
						break;
					}
					default:
						fail_msg("unexpected peer attribute %d",
							 mnl_attr_get_type(x));
					}
				}
				/* the removed peer carries its key and the flag only */
				assert_int_equal(pseen, npeers == 0 ? 31 : 3);
				npeers++;
			}
			break;
		}
		default:
			fail_msg("unexpected device attribute %d", mnl_attr_get_type(a));
		}
	}
	assert_int_equal(seen, 31);
	assert_int_equal(npeers, 2);

	/* bad names */
	next = 0;
	assert_null(nl_wg_build_set(buf, sizeof(buf), 1, "", &d, &next));
	assert_null(nl_wg_build_set(buf, sizeof(buf), 1, "0123456789abcdef", &d, &next));
	assert_null(nl_wg_build_get(buf, 1, "a/b"));
}

static void test_build_get(void **state)
{
	(void)state;
	char buf[NL_MSG_MAX] __attribute__((aligned(8)));
	struct nlmsghdr *nlh = nl_wg_build_get(buf, 0x21, "twill.wg");
	assert_non_null(nlh);
	assert_int_equal(nlh->nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP);
	const struct genlmsghdr *g = mnl_nlmsg_get_payload(nlh);
	assert_int_equal(g->cmd, WG_CMD_GET_DEVICE);
	const struct nlattr *a;
	int n = 0;
	mnl_attr_for_each(a, nlh, sizeof(*g))
	{
		assert_int_equal(mnl_attr_get_type(a), WGDEVICE_A_IFNAME);
		assert_string_equal(mnl_attr_get_str(a), "twill.wg");
		n++;
	}
	assert_int_equal(n, 1);
	nlh = nl_wg_build_family(buf);
	assert_int_equal(nlh->nlmsg_type, GENL_ID_CTRL);
	g = mnl_nlmsg_get_payload(nlh);
	assert_int_equal(g->cmd, CTRL_CMD_GETFAMILY);
	a = mnl_nlmsg_get_payload_offset(nlh, sizeof(*g));
	assert_int_equal(mnl_attr_get_type(a), CTRL_ATTR_FAMILY_NAME);
	assert_string_equal(mnl_attr_get_str(a), "wireguard");
	/* an answer carrying the id */
	mnl_attr_put_u16(nlh, CTRL_ATTR_FAMILY_ID, 27);
	assert_int_equal(nl_wg_parse_family(nlh), 27);
}

/* Many peers: several messages, device attributes only in the first, every peer once; the
 * messages parse back (a GET dump has the same layout) into the same device. */
static void test_split_and_parse(void **state)
{
	(void)state;
	enum { N = 200 };
	struct nl_wg_peer *peers = xcalloc(N, sizeof(*peers));
	for (int i = 0; i < N; i++) {
		char ep[32], c[32];
		snprintf(ep, sizeof(ep), "10.1.%d.%d", i / 250, i % 250 + 1);
		snprintf(c, sizeof(c), "10.%d.%d.0/24", 100 + i / 250, i % 250);
		peers[i] = peer(0, ep, c, "fd00::/64");
		memcpy(peers[i].key, &i, sizeof(i));
		peers[i].key[31] = 0x5a;
	}
	struct nl_wg_dev d = {
	    .has_private_key = true, .has_port = true, .port = 51820, .npeers = N, .peers = peers};
	memset(d.private_key, 0x44, 32);
	char buf[NL_MSG_MAX] __attribute__((aligned(8)));
	size_t next = 0;
	int msgs = 0;
	struct nl_wg_dev back = {0};
	do {
		size_t before = next;
		struct nlmsghdr *nlh = nl_wg_build_set(buf, sizeof(buf), 5, "twill.wg", &d, &next);
		assert_non_null(nlh);
		assert_true(next > before);
		assert_true(nlh->nlmsg_len <= sizeof(buf));
		assert_int_equal(nl_wg_parse_dev(nlh, &back), 0);
		/* only the first carries the device's attributes */
		struct nl_wg_dev one = {0};
		assert_int_equal(nl_wg_parse_dev(nlh, &one), 0);
		assert_int_equal(one.has_private_key, msgs == 0);
		assert_int_equal(one.has_port, msgs == 0);
		assert_int_equal(one.npeers, next - before);
		nl_wg_dev_free(&one);
		msgs++;
	} while (next < N);
	assert_true(msgs > 1);
	assert_int_equal(back.npeers, N);
	assert_memory_equal(back.private_key, d.private_key, 32);
	assert_int_equal(back.port, 51820);
	for (int i = 0; i < N; i++) {
		assert_memory_equal(back.peers[i].key, peers[i].key, 32);
		assert_true(ip_eq(&back.peers[i].endpoint, &peers[i].endpoint));
		assert_int_equal(back.peers[i].port, WG_PORT);
		assert_int_equal(back.peers[i].nallowed, 2);
		assert_true(prefix_eq(&back.peers[i].allowed[0], &peers[i].allowed[0]));
		assert_true(prefix_eq(&back.peers[i].allowed[1], &peers[i].allowed[1]));
	}
	nl_wg_dev_free(&back);

	/* a dump that continues the last peer's allowed IPs in the next message */
	struct nl_wg_peer a = peer(1, "192.168.10.10", "10.244.0.0/24", NULL);
	struct nl_wg_peer a2 = peer(1, NULL, "10.244.9.0/24", NULL);
	struct nl_wg_peer b = peer(2, "192.168.10.11", "10.244.1.0/24", NULL);
	struct nl_wg_peer m1[] = {a}, m2[] = {a2, b};
	struct nl_wg_dev d1 = {.npeers = 1, .peers = m1}, d2 = {.npeers = 2, .peers = m2};
	next = 0;
	assert_int_equal(
	    nl_wg_parse_dev(nl_wg_build_set(buf, sizeof(buf), 5, "x", &d1, &next), &back), 0);
	next = 0;
	assert_int_equal(
	    nl_wg_parse_dev(nl_wg_build_set(buf, sizeof(buf), 5, "x", &d2, &next), &back), 0);
	assert_int_equal(back.npeers, 2);
	assert_int_equal(back.peers[0].nallowed, 2);
	assert_true(prefix_eq(&back.peers[0].allowed[1], &a2.allowed[0]));
	assert_int_equal(back.peers[1].key[0], 2);
	nl_wg_dev_free(&back);
	free(peers);
}

/* ---- the peer diff ---- */

static void test_peers_diff(void **state)
{
	(void)state;
	struct nl_wg_peer have[] = {
	    peer(1, "192.168.10.10", "10.244.0.0/24", "10.245.0.0/24"),
	    peer(2, "192.168.10.11", "10.244.1.0/24", NULL),
	    peer(3, "192.168.20.10", "10.244.2.0/24", NULL),
	};
	struct nl_wg_peer want[] = {
	    /* same, allowed IPs in another order: unchanged */
	    peer(1, "192.168.10.10", "10.245.0.0/24", "10.244.0.0/24"),
	    /* moved */
	    peer(2, "192.168.10.99", "10.244.1.0/24", NULL),
	    /* new */
	    peer(4, "192.168.20.11", "10.244.3.0/24", NULL),
	    /* 3: gone */
	};
	struct nl_wg_dev out;
	wg_peers_diff(want, 3, have, 3, &out);
	assert_int_equal(out.npeers, 3);
	assert_int_equal(out.peers[0].key[0], 3);
	assert_int_equal(out.peers[0].flags, WGPEER_F_REMOVE_ME);
	assert_int_equal(out.peers[1].key[0], 2);
	assert_int_equal(out.peers[1].flags, WGPEER_F_REPLACE_ALLOWEDIPS);
	assert_true(ip_eq(&out.peers[1].endpoint, &want[1].endpoint));
	assert_int_equal(out.peers[2].key[0], 4);
	assert_int_equal(out.peers[2].flags, WGPEER_F_REPLACE_ALLOWEDIPS);
	nl_wg_dev_free(&out);
	/* nothing to do */
	wg_peers_diff(have, 3, have, 3, &out);
	assert_int_equal(out.npeers, 0);
	nl_wg_dev_free(&out);
	/* changed allowed IPs */
	struct nl_wg_peer w2 = peer(2, "192.168.10.11", "10.244.7.0/24", NULL);
	wg_peers_diff(&w2, 1, &have[1], 1, &out);
	assert_int_equal(out.npeers, 1);
	assert_true(prefix_eq(&out.peers[0].allowed[0], &w2.allowed[0]));
	nl_wg_dev_free(&out);
	/* everything goes */
	wg_peers_diff(NULL, 0, have, 3, &out);
	assert_int_equal(out.npeers, 3);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(out.peers[i].flags, WGPEER_F_REMOVE_ME);
	nl_wg_dev_free(&out);
}

/* ---- the route planner with encryption ---- */

static void test_plan_encrypted(void **state)
{
	(void)state;
	struct route_conn conn[] = {{.prefix = P("192.168.10.0/24"), .ifindex = 2}};
	struct route_self self = {.mode = ROUTE_HOST_GW,
				  .ip = A("192.168.10.10"),
				  .conn = conn,
				  .nconn = 1,
				  .wg_index = 9};
	struct route_peer_in far = {.name = "w0", .ip = A("192.168.20.10"), .npod_cidrs = 1};
	far.pod_cidrs[0] = P("10.244.2.0/24");
	struct rt_set out = {0};
	char why[256];
	/* no key: host-gw cannot reach another subnet */
	assert_int_equal(route_plan_peer(&self, &far, &out, why, sizeof(why)), ROUTE_VIA_NONE);
	assert_int_equal(out.n, 0);
	/* a key: into twill.wg, no gateway */
	far.has_wg_key = true;
	memset(far.wg_key, 7, 32);
	assert_int_equal(route_plan_peer(&self, &far, &out, why, sizeof(why)), ROUTE_VIA_WIREGUARD);
	assert_int_equal(out.n, 1);
	assert_int_equal(out.v[0].kind, RT_ROUTE);
	struct ipprefix want = P("10.244.2.0/24");
	assert_true(prefix_eq(&out.v[0].dst, &want));
	assert_int_equal(out.v[0].oif, 9);
	assert_false(ip_is_set(&out.v[0].gw));
	assert_false(out.v[0].onlink);
	/* the device not ready: the mode decides (here: a connected peer, host-gw) */
	rt_set_clear(&out);
	struct route_peer_in near = {.name = "w1", .ip = A("192.168.10.11"), .npod_cidrs = 1};
	near.pod_cidrs[0] = P("10.244.1.0/24");
	near.has_wg_key = true;
	self.wg_index = 0;
	assert_int_equal(route_plan_peer(&self, &near, &out, why, sizeof(why)), ROUTE_VIA_HOST_GW);
	assert_int_equal(out.n, 1);
	assert_int_equal(out.v[0].oif, 2);
	/* every mode goes through the device when the peer has a key */
	enum route_mode modes[] = {ROUTE_HOST_GW, ROUTE_VXLAN, ROUTE_MIXED, ROUTE_IPIP,
				   ROUTE_IPIP_CROSSSUBNET};
	self.wg_index = 9;
	self.vxlan_index = 5;
	self.ipip_index = 6;
	for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
		self.mode = modes[i];
		rt_set_clear(&out);
		assert_int_equal(route_plan_peer(&self, &near, &out, why, sizeof(why)),
				 ROUTE_VIA_WIREGUARD);
		assert_int_equal(out.n, 1);
		assert_int_equal(out.v[0].oif, 9);
	}
	rt_set_free(&out);
	assert_string_equal(route_via_name(ROUTE_VIA_WIREGUARD), "wireguard");
	assert_int_equal(route_encrypt_parse("wireguard"), ROUTE_ENCRYPT_WIREGUARD);
	assert_int_equal(route_encrypt_parse("none"), ROUTE_ENCRYPT_NONE);
	assert_int_equal(route_encrypt_parse("ipsec"), -1);
	assert_string_equal(route_encrypt_name(ROUTE_ENCRYPT_WIREGUARD), "wireguard");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_key_public_rfc7748),
	    cmocka_unit_test(test_key_generate),
	    cmocka_unit_test(test_base64),
	    cmocka_unit_test(test_key_file),
	    cmocka_unit_test(test_build_set),
	    cmocka_unit_test(test_build_get),
	    cmocka_unit_test(test_split_and_parse),
	    cmocka_unit_test(test_peers_diff),
	    cmocka_unit_test(test_plan_encrypted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
