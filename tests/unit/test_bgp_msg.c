/* Unit tests for bgp/msg.c: exact bytes of BGP messages, round trips, and the RFC 7606
 * outcome (NOTIFICATION, treat-as-withdraw, attribute discard) for malformed input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "bgp/msg.h"

static struct ipprefix P(const char *s)
{
	struct ipprefix p;
	assert_int_equal(prefix_parse(s, &p), 0);
	return p;
}

static struct ipaddr A(const char *s)
{
	struct ipaddr a;
	assert_int_equal(ip_parse(s, &a), 0);
	return a;
}

static void assert_prefix(const struct ipprefix *p, const char *s)
{
	char buf[IP_STRLEN];
	assert_string_equal(prefix_fmt(p, buf), s);
}

/* ------------------------------------------------------------ header ---- */

static void hdr(uint8_t *m, uint16_t len, uint8_t type)
{
	memset(m, 0xff, 16);
	m[16] = (uint8_t)(len >> 8);
	m[17] = (uint8_t)len;
	m[18] = type;
}

static void test_header(void **state)
{
	(void)state;
	uint8_t m[BGP_HDR_LEN + 8];
	uint8_t type;
	uint16_t len;
	struct bgp_err e;
	hdr(m, 19, BGP_KEEPALIVE);
	assert_int_equal(bgp_hdr_parse(m, 19, &type, &len, &e), 0);
	assert_int_equal(type, BGP_KEEPALIVE);
	assert_int_equal(len, 19);
	m[3] = 0;
	assert_int_equal(bgp_hdr_parse(m, 19, &type, &len, &e), -1);
	assert_int_equal(e.code, BGP_ERR_HEADER);
	assert_int_equal(e.subcode, BGP_HDR_SYNC);
	hdr(m, 20, BGP_KEEPALIVE); /* KEEPALIVE must be exactly 19 */
	assert_int_equal(bgp_hdr_parse(m, 20, &type, &len, &e), -1);
	assert_int_equal(e.subcode, BGP_HDR_LENGTH);
	assert_int_equal(e.len, 2);
	assert_int_equal(e.data[1], 20);
	hdr(m, 18, BGP_UPDATE);
	assert_int_equal(bgp_hdr_parse(m, 19, &type, &len, &e), -1);
	hdr(m, 4097, BGP_UPDATE);
	assert_int_equal(bgp_hdr_parse(m, 19, &type, &len, &e), -1);
	assert_int_equal(e.subcode, BGP_HDR_LENGTH);
	hdr(m, 22, BGP_UPDATE); /* UPDATE needs at least 23 */
	assert_int_equal(bgp_hdr_parse(m, 22, &type, &len, &e), -1);
	hdr(m, 24, BGP_REFRESH);
	assert_int_equal(bgp_hdr_parse(m, 24, &type, &len, &e), -1);
	hdr(m, 19, 9);
	assert_int_equal(bgp_hdr_parse(m, 19, &type, &len, &e), -1);
	assert_int_equal(e.subcode, BGP_HDR_TYPE);
	assert_int_equal(e.data[0], 9);
	assert_int_equal(bgp_hdr_parse(m, 10, &type, &len, &e), -1);
}

/* -------------------------------------------------------------- OPEN ---- */

static void test_open_bytes(void **state)
{
	(void)state;
	struct bgp_open o = {.version = 4, .as = 4200000001u, .hold = 90, .id = 0x0a000001,
			     .as4 = true, .refresh = true, .mp = {true, true}, .gr = true,
			     .gr_restarting = true, .gr_time = 120, .gr_fam = {true, false},
			     .gr_fwd = {true, false}};
	uint8_t m[BGP_MAX_LEN];
	size_t n = bgp_open_build(m, sizeof(m), &o);
	static const uint8_t want[] = {
	    0x04, 0x5b, 0xa0,			 /* version, AS_TRANS 23456 */
	    0x00, 0x5a, 0x0a, 0x00, 0x00, 0x01, /* hold 90, id */
	    30,					 /* optional parameters length */
	    0x02, 28,				 /* capabilities */
	    0x01, 0x04, 0x00, 0x01, 0x00, 0x01, /* MP IPv4 unicast */
	    0x01, 0x04, 0x00, 0x02, 0x00, 0x01, /* MP IPv6 unicast */
	    0x02, 0x00,				 /* route refresh */
	    0x41, 0x04, 0xfa, 0x56, 0xea, 0x01, /* 4-octet AS 4200000001 */
	    0x40, 0x06, 0x80, 0x78, 0x00, 0x01, 0x01, 0x80, /* GR: R, 120 s, IPv4 with F */
	};
	assert_int_equal(n, BGP_HDR_LEN + sizeof(want));
	assert_memory_equal(m + BGP_HDR_LEN, want, sizeof(want));
	assert_int_equal(m[18], BGP_OPEN);

	struct bgp_open r;
	struct bgp_err e;
	assert_int_equal(bgp_open_parse(m + BGP_HDR_LEN, n - BGP_HDR_LEN, &r, &e), 0);
	assert_int_equal(r.as, 4200000001u);
	assert_int_equal(r.hold, 90);
	assert_int_equal(r.id, 0x0a000001);
	assert_true(r.as4 && r.refresh && r.mp[0] && r.mp[1]);
	assert_true(r.gr && r.gr_restarting && r.gr_fam[0] && r.gr_fwd[0] && !r.gr_fam[1]);
	assert_int_equal(r.gr_time, 120);
}

static int open_err(const uint8_t *body, size_t len, struct bgp_err *e)
{
	struct bgp_open o;
	return bgp_open_parse(body, len, &o, e);
}

static void test_open_errors(void **state)
{
	(void)state;
	struct bgp_err e;
	struct bgp_open o;
	/* no capabilities at all: a plain RFC 4271 speaker, IPv4 unicast implied */
	uint8_t plain[] = {4, 0xfd, 0xea, 0, 0, 1, 2, 3, 4, 0};
	assert_int_equal(bgp_open_parse(plain, sizeof(plain), &o, &e), 0);
	assert_int_equal(o.as, 65002);
	assert_true(o.mp[0] && !o.mp[1] && !o.as4);
	assert_int_equal(o.hold, 0);

	uint8_t v3[] = {3, 0xfd, 0xea, 0, 90, 1, 2, 3, 4, 0};
	assert_int_equal(open_err(v3, sizeof(v3), &e), -1);
	assert_int_equal(e.code, BGP_ERR_OPEN);
	assert_int_equal(e.subcode, BGP_OPEN_VERSION);
	assert_int_equal(e.len, 2);
	assert_int_equal(e.data[1], 4);

	uint8_t hold2[] = {4, 0xfd, 0xea, 0, 2, 1, 2, 3, 4, 0};
	assert_int_equal(open_err(hold2, sizeof(hold2), &e), -1);
	assert_int_equal(e.subcode, BGP_OPEN_HOLD);

	uint8_t id0[] = {4, 0xfd, 0xea, 0, 90, 0, 0, 0, 0, 0};
	assert_int_equal(open_err(id0, sizeof(id0), &e), -1);
	assert_int_equal(e.subcode, BGP_OPEN_BGP_ID);

	uint8_t param1[] = {4, 0xfd, 0xea, 0, 90, 1, 2, 3, 4, 2, 1, 0}; /* auth parameter */
	assert_int_equal(open_err(param1, sizeof(param1), &e), -1);
	assert_int_equal(e.subcode, BGP_OPEN_OPT_PARAM);

	uint8_t badlen[] = {4, 0xfd, 0xea, 0, 90, 1, 2, 3, 4, 5, 2, 3, 0x41, 0x04, 0}; /* cap overruns */
	assert_int_equal(open_err(badlen, sizeof(badlen), &e), -1);
	assert_int_equal(e.code, BGP_ERR_OPEN);

	uint8_t as4short[] = {4, 0xfd, 0xea, 0, 90, 1, 2, 3, 4, 5, 2, 3, 0x41, 0x01, 0};
	assert_int_equal(open_err(as4short, sizeof(as4short), &e), -1);

	uint8_t optlen[] = {4, 0xfd, 0xea, 0, 90, 1, 2, 3, 4, 9, 2, 0}; /* optlen > rest */
	assert_int_equal(open_err(optlen, sizeof(optlen), &e), -1);

	assert_int_equal(open_err(plain, 9, &e), -1); /* truncated fixed part */

	/* unknown capabilities (here 73 FQDN and 70 enhanced refresh) are ignored */
	uint8_t unk[] = {4, 0xfd, 0xea, 0, 90, 1, 2, 3, 4, 8, 2, 6, 73, 2, 'a', 'b', 70, 0};
	assert_int_equal(bgp_open_parse(unk, sizeof(unk), &o, &e), 0);
	assert_false(o.refresh);
}

/* ------------------------------------------------------------ UPDATE ---- */

static const uint8_t update_v4[] = {
    0x00, 0x03, 0x10, 0x0a, 0x09,		    /* withdrawn: 10.9.0.0/16 */
    0x00, 0x35,					    /* attributes: 53 bytes */
    0x40, 0x01, 0x01, 0x00,			    /* ORIGIN IGP */
    0x40, 0x02, 0x0a, 0x02, 0x02, 0x00, 0x00, 0xfd, 0xea, 0xfa, 0x56, 0xea, 0x00, /* AS_PATH */
    0x40, 0x03, 0x04, 0x0a, 0x00, 0x00, 0x02, /* NEXT_HOP */
    0x80, 0x04, 0x04, 0x00, 0x00, 0x00, 0x05, /* MED 5 */
    0xc0, 0x08, 0x04, 0xfd, 0xea, 0x00, 0x01, /* COMMUNITIES 65002:1 */
    0xc0, 0x20, 0x0c, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, /* LARGE 1:2:3 */
    0x18, 0x0a, 0x02, 0x00,			    /* 10.2.0.0/24 */
    0x19, 0x0a, 0x02, 0x01, 0x80,		    /* 10.2.1.128/25 */
};

static void test_update_parse_bytes(void **state)
{
	(void)state;
	struct bgp_update u;
	struct bgp_err e;
	assert_int_equal(bgp_update_parse(update_v4, sizeof(update_v4), true, &u, &e), 0);
	assert_false(u.treat_as_withdraw);
	assert_int_equal(u.nwithdrawn, 1);
	assert_prefix(&u.withdrawn[0], "10.9.0.0/16");
	assert_int_equal(u.nnlri, 2);
	assert_prefix(&u.nlri[0], "10.2.0.0/24");
	assert_prefix(&u.nlri[1], "10.2.1.128/25");
	assert_int_equal(u.attrs.origin, BGP_ORIGIN_IGP);
	char buf[64];
	assert_string_equal(bgp_aspath_fmt(&u.attrs, buf, sizeof(buf)), "65002 4200000000");
	assert_int_equal(bgp_aspath_len(&u.attrs), 2);
	assert_int_equal(bgp_aspath_first(&u.attrs), 65002);
	struct ipaddr nh = A("10.0.0.2");
	assert_true(ip_eq(&u.attrs.nh, &nh));
	assert_true(u.attrs.has & BGP_A_MED);
	assert_int_equal(u.attrs.med, 5);
	assert_int_equal(u.attrs.ncomm, 1);
	assert_int_equal(u.attrs.comm[0], 0xfdea0001);
	assert_int_equal(u.attrs.nlcomm, 1);
	assert_int_equal(u.attrs.lcomm[2], 3);
	assert_int_equal(u.eor_fam, -1);
	bgp_update_free(&u);

	/* the same with 2-octet AS numbers: AS_PATH of 4 bytes per two ASes */
	assert_int_equal(bgp_update_parse(update_v4, sizeof(update_v4), false, &u, &e), 0);
	assert_true(u.treat_as_withdraw); /* the segment length no longer matches */
	assert_int_equal(u.nnlri, 0);
	assert_int_equal(u.nwithdrawn, 3);
	bgp_update_free(&u);
}

/* An UPDATE with `attrs` (len bytes) and NLRI 10.2.0.0/24. */
static size_t mk_update(uint8_t *out, const uint8_t *attrs, size_t len, bool nlri)
{
	size_t n = 0;
	out[n++] = 0, out[n++] = 0;
	out[n++] = (uint8_t)(len >> 8), out[n++] = (uint8_t)len;
	memcpy(out + n, attrs, len);
	n += len;
	if (nlri)
		out[n++] = 24, out[n++] = 10, out[n++] = 2, out[n++] = 0;
	return n;
}

#define BASE_ATTRS 0x40, 0x01, 0x01, 0x00, 0x40, 0x02, 0x00, 0x40, 0x03, 0x04, 10, 0, 0, 2

static void expect_taw(const uint8_t *attrs, size_t len)
{
	uint8_t m[512];
	size_t n = mk_update(m, attrs, len, true);
	struct bgp_update u;
	struct bgp_err e;
	assert_int_equal(bgp_update_parse(m, n, true, &u, &e), 0);
	assert_true(u.treat_as_withdraw);
	assert_int_equal(u.nnlri, 0);
	assert_int_equal(u.nwithdrawn, 1);
	assert_prefix(&u.withdrawn[0], "10.2.0.0/24");
	bgp_update_free(&u);
}

static void expect_reset(const uint8_t *attrs, size_t len, uint8_t sub)
{
	uint8_t m[512];
	size_t n = mk_update(m, attrs, len, true);
	struct bgp_update u;
	struct bgp_err e;
	assert_int_equal(bgp_update_parse(m, n, true, &u, &e), -1);
	assert_int_equal(e.code, BGP_ERR_UPDATE);
	assert_int_equal(e.subcode, sub);
}

static void test_update_treat_as_withdraw(void **state)
{
	(void)state;
	uint8_t ok[] = {BASE_ATTRS};
	uint8_t m[512];
	struct bgp_update u;
	struct bgp_err e;
	size_t n = mk_update(m, ok, sizeof(ok), true);
	assert_int_equal(bgp_update_parse(m, n, true, &u, &e), 0);
	assert_false(u.treat_as_withdraw);
	assert_int_equal(u.nnlri, 1);
	assert_int_equal(bgp_aspath_len(&u.attrs), 0); /* empty AS_PATH (iBGP) */
	bgp_update_free(&u);

	uint8_t origin3[] = {0x40, 0x01, 0x01, 0x03, 0x40, 0x02, 0x00, 0x40, 0x03, 0x04, 10, 0, 0, 2};
	expect_taw(origin3, sizeof(origin3));
	uint8_t origin_len[] = {0x40, 0x01, 0x02, 0x00, 0x00, 0x40, 0x02, 0x00, 0x40, 0x03, 0x04,
				10, 0, 0, 2};
	expect_taw(origin_len, sizeof(origin_len));
	uint8_t aspath_overrun[] = {BASE_ATTRS, 0x40, 0x02, 0x06, 0x02, 0x02, 0, 0, 0, 1};
	/* (a second AS_PATH is a repeat: discarded, not a reset) */
	n = mk_update(m, aspath_overrun, sizeof(aspath_overrun), true);
	assert_int_equal(bgp_update_parse(m, n, true, &u, &e), 0);
	assert_true(u.attr_discarded);
	assert_int_equal(u.nnlri, 1);
	bgp_update_free(&u);
	uint8_t aspath_bad[] = {0x40, 0x01, 0x01, 0x00, 0x40, 0x02, 0x06, 0x02, 0x02, 0, 0, 0, 1,
				0x40, 0x03, 0x04, 10, 0, 0, 2};
	expect_taw(aspath_bad, sizeof(aspath_bad));
	uint8_t aspath_type[] = {0x40, 0x01, 0x01, 0x00, 0x40, 0x02, 0x06, 0x07, 0x01, 0, 0, 0, 1,
				 0x40, 0x03, 0x04, 10, 0, 0, 2};
	expect_taw(aspath_type, sizeof(aspath_type));
	uint8_t nh5[] = {0x40, 0x01, 0x01, 0x00, 0x40, 0x02, 0x00, 0x40, 0x03, 0x05, 10, 0, 0, 2, 0};
	expect_taw(nh5, sizeof(nh5));
	uint8_t no_nh[] = {0x40, 0x01, 0x01, 0x00, 0x40, 0x02, 0x00};
	expect_taw(no_nh, sizeof(no_nh));
	uint8_t no_aspath[] = {0x40, 0x01, 0x01, 0x00, 0x40, 0x03, 0x04, 10, 0, 0, 2};
	expect_taw(no_aspath, sizeof(no_aspath));
	uint8_t comm3[] = {BASE_ATTRS, 0xc0, 0x08, 0x03, 1, 2, 3};
	expect_taw(comm3, sizeof(comm3));
	uint8_t lcomm8[] = {BASE_ATTRS, 0xc0, 0x20, 0x08, 0, 0, 0, 1, 0, 0, 0, 2};
	expect_taw(lcomm8, sizeof(lcomm8));
	uint8_t lp_flags[] = {BASE_ATTRS, 0x80, 0x05, 0x04, 0, 0, 0, 100}; /* LOCAL_PREF optional */
	expect_taw(lp_flags, sizeof(lp_flags));
	uint8_t med_len[] = {BASE_ATTRS, 0x80, 0x04, 0x02, 0, 1};
	expect_taw(med_len, sizeof(med_len));
	uint8_t orig_len[] = {BASE_ATTRS, 0x80, 0x09, 0x03, 1, 2, 3};
	expect_taw(orig_len, sizeof(orig_len));
	uint8_t cl_len[] = {BASE_ATTRS, 0x80, 0x0a, 0x05, 1, 2, 3, 4, 5};
	expect_taw(cl_len, sizeof(cl_len));
	uint8_t overrun[] = {BASE_ATTRS, 0x80, 0x04, 0x09, 0, 0}; /* MED length runs past the end */
	expect_taw(overrun, sizeof(overrun));
	uint8_t trunc_hdr[] = {BASE_ATTRS, 0x80};
	expect_taw(trunc_hdr, sizeof(trunc_hdr));
}

static void test_update_discard(void **state)
{
	(void)state;
	uint8_t m[512];
	struct bgp_update u;
	struct bgp_err e;
	uint8_t atomic1[] = {BASE_ATTRS, 0x40, 0x06, 0x01, 0x00};
	size_t n = mk_update(m, atomic1, sizeof(atomic1), true);
	assert_int_equal(bgp_update_parse(m, n, true, &u, &e), 0);
	assert_true(u.attr_discarded);
	assert_false(u.treat_as_withdraw);
	assert_int_equal(u.nnlri, 1);
	assert_false(u.attrs.has & BGP_A_ATOMIC_AGG);
	bgp_update_free(&u);

	uint8_t aggr[] = {BASE_ATTRS, 0xc0, 0x07, 0x05, 0, 0, 0, 1, 2};
	n = mk_update(m, aggr, sizeof(aggr), true);
	assert_int_equal(bgp_update_parse(m, n, true, &u, &e), 0);
	assert_true(u.attr_discarded);
	assert_int_equal(u.nnlri, 1);
	bgp_update_free(&u);

	/* unknown optional transitive: kept with the Partial bit; optional non-transitive: dropped */
	uint8_t unk[] = {BASE_ATTRS, 0xc0, 0x63, 0x02, 0xaa, 0xbb, 0x80, 0x64, 0x01, 0xcc};
	n = mk_update(m, unk, sizeof(unk), true);
	assert_int_equal(bgp_update_parse(m, n, true, &u, &e), 0);
	assert_false(u.attr_discarded || u.treat_as_withdraw);
	assert_int_equal(u.attrs.unknown_len, 5);
	static const uint8_t kept[] = {0xe0, 0x63, 0x02, 0xaa, 0xbb};
	assert_memory_equal(u.attrs.unknown, kept, 5);
	uint8_t out[BGP_MAX_LEN];
	size_t used;
	struct ipprefix p = P("10.2.0.0/24");
	size_t len = bgp_update_build(out, sizeof(out), &u.attrs, true, BGP_FAM_V4, &p, 1, &used);
	assert_true(len > 0);
	assert_non_null(memmem(out, len, kept, sizeof(kept)));
	bgp_update_free(&u);
}

static void test_update_reset(void **state)
{
	(void)state;
	uint8_t unk_wk[] = {BASE_ATTRS, 0x40, 0x63, 0x00}; /* unrecognized well-known */
	expect_reset(unk_wk, sizeof(unk_wk), BGP_UPD_UNRECOGNIZED_WK);
	uint8_t mp_twice[] = {BASE_ATTRS, 0x80, 0x0f, 0x03, 0x00, 0x02, 0x01,
			      0x80, 0x0f, 0x03, 0x00, 0x02, 0x01};
	expect_reset(mp_twice, sizeof(mp_twice), BGP_UPD_MALFORMED_ATTRS);
	uint8_t mp_badnlri[] = {BASE_ATTRS, 0x80, 0x0e, 0x16, 0x00, 0x02, 0x01, 0x10, 0xfd, 0, 0, 0,
				0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x00, 0x81};
	expect_reset(mp_badnlri, sizeof(mp_badnlri), BGP_UPD_OPT_ATTR);
	uint8_t mp_short[] = {BASE_ATTRS, 0x80, 0x0e, 0x02, 0x00, 0x02};
	expect_reset(mp_short, sizeof(mp_short), BGP_UPD_OPT_ATTR);

	struct bgp_update u;
	struct bgp_err e;
	uint8_t wlen[] = {0x00, 0x09, 0x10, 0x0a, 0x00, 0x00}; /* withdrawn length overruns */
	assert_int_equal(bgp_update_parse(wlen, sizeof(wlen), true, &u, &e), -1);
	assert_int_equal(e.subcode, BGP_UPD_MALFORMED_ATTRS);
	uint8_t alen[] = {0x00, 0x00, 0x00, 0x10, 0x40, 0x01};
	assert_int_equal(bgp_update_parse(alen, sizeof(alen), true, &u, &e), -1);
	assert_int_equal(e.subcode, BGP_UPD_MALFORMED_ATTRS);
	uint8_t pfx33[] = {0x00, 0x00, 0x00, 0x00, 33, 10, 0, 0, 0, 0};
	assert_int_equal(bgp_update_parse(pfx33, sizeof(pfx33), true, &u, &e), -1);
	assert_int_equal(e.subcode, BGP_UPD_NETWORK);
	uint8_t wd_trunc[] = {0x00, 0x02, 24, 10, 0x00, 0x00};
	assert_int_equal(bgp_update_parse(wd_trunc, sizeof(wd_trunc), true, &u, &e), -1);
	assert_int_equal(e.subcode, BGP_UPD_NETWORK);
	assert_int_equal(bgp_update_parse(wd_trunc, 1, true, &u, &e), -1);
}

static void test_update_roundtrip_v6(void **state)
{
	(void)state;
	struct bgp_attrs a;
	memset(&a, 0, sizeof(a));
	a.origin = BGP_ORIGIN_INCOMPLETE;
	bgp_aspath_prepend(&a, 65002);
	bgp_aspath_prepend(&a, 65001);
	a.mp_nh = A("fd00::2");
	a.mp_nh_ll = A("fe80::1");
	a.has = BGP_A_LOCAL_PREF | BGP_A_ORIGINATOR;
	a.local_pref = 200;
	a.originator_id = 0x01020304;
	a.ncluster = 2;
	a.cluster = calloc(2, 4);
	a.cluster[0] = 7, a.cluster[1] = 8;
	struct ipprefix ps[3] = {P("fd01::/64"), P("fd01:1::/48"), P("::/0")};
	uint8_t m[BGP_MAX_LEN];
	size_t used;
	size_t n = bgp_update_build(m, sizeof(m), &a, true, BGP_FAM_V6, ps, 3, &used);
	assert_int_equal(used, 3);
	uint8_t type;
	uint16_t len;
	struct bgp_err e;
	assert_int_equal(bgp_hdr_parse(m, n, &type, &len, &e), 0);
	assert_int_equal(len, n);
	struct bgp_update u;
	assert_int_equal(bgp_update_parse(m + BGP_HDR_LEN, n - BGP_HDR_LEN, true, &u, &e), 0);
	assert_false(u.treat_as_withdraw);
	assert_int_equal(u.nnlri, 3);
	assert_prefix(&u.nlri[2], "::/0");
	assert_true(ip_eq(&u.attrs.mp_nh, &a.mp_nh));
	assert_true(ip_eq(&u.attrs.mp_nh_ll, &a.mp_nh_ll));
	assert_int_equal(u.attrs.local_pref, 200);
	assert_int_equal(u.attrs.originator_id, 0x01020304);
	assert_int_equal(u.attrs.ncluster, 2);
	assert_int_equal(u.attrs.origin, BGP_ORIGIN_INCOMPLETE);
	char buf[64];
	assert_string_equal(bgp_aspath_fmt(&u.attrs, buf, sizeof(buf)), "65001 65002");
	bgp_update_free(&u);

	/* withdraw + End-of-RIB for IPv6 */
	n = bgp_withdraw_build(m, sizeof(m), BGP_FAM_V6, ps, 2, &used);
	assert_int_equal(used, 2);
	assert_int_equal(bgp_update_parse(m + BGP_HDR_LEN, n - BGP_HDR_LEN, true, &u, &e), 0);
	assert_int_equal(u.nwithdrawn, 2);
	assert_int_equal(u.eor_fam, -1);
	bgp_update_free(&u);
	n = bgp_withdraw_build(m, sizeof(m), BGP_FAM_V6, NULL, 0, &used);
	assert_int_equal(bgp_update_parse(m + BGP_HDR_LEN, n - BGP_HDR_LEN, true, &u, &e), 0);
	assert_int_equal(u.eor_fam, BGP_FAM_V6);
	bgp_update_free(&u);
	n = bgp_withdraw_build(m, sizeof(m), BGP_FAM_V4, NULL, 0, &used);
	assert_int_equal(n, 23);
	assert_int_equal(bgp_update_parse(m + BGP_HDR_LEN, n - BGP_HDR_LEN, true, &u, &e), 0);
	assert_int_equal(u.eor_fam, BGP_FAM_V4);
	bgp_update_free(&u);
	bgp_attrs_clear(&a);
}

static void test_update_packing(void **state)
{
	(void)state;
	enum { N = 3000 };
	struct ipprefix *ps = calloc(N, sizeof(*ps));
	for (int i = 0; i < N; i++) {
		char s[32];
		snprintf(s, sizeof(s), "10.%d.%d.0/24", i / 256, i % 256);
		ps[i] = P(s);
	}
	struct bgp_attrs a;
	memset(&a, 0, sizeof(a));
	bgp_aspath_prepend(&a, 65001);
	a.nh = A("10.0.0.1");
	uint8_t m[BGP_MAX_LEN];
	size_t done = 0, msgs = 0, got = 0;
	while (done < N) {
		size_t used;
		size_t n = bgp_update_build(m, sizeof(m), &a, true, BGP_FAM_V4, ps + done, N - done,
					    &used);
		assert_true(n > 0 && n <= BGP_MAX_LEN && used > 0);
		struct bgp_update u;
		struct bgp_err e;
		assert_int_equal(bgp_update_parse(m + BGP_HDR_LEN, n - BGP_HDR_LEN, true, &u, &e), 0);
		assert_int_equal(u.nnlri, used);
		assert_true(prefix_eq(&u.nlri[0], &ps[done]));
		got += u.nnlri;
		bgp_update_free(&u);
		done += used;
		msgs++;
	}
	assert_int_equal(got, N);
	assert_true(msgs >= 3 && msgs <= 4); /* 4 bytes a prefix: about 1000 per message */
	done = 0;
	while (done < N) { /* the same for withdrawals */
		size_t used;
		size_t n = bgp_withdraw_build(m, sizeof(m), BGP_FAM_V4, ps + done, N - done, &used);
		assert_true(n > 0 && n <= BGP_MAX_LEN && used > 0);
		done += used;
	}
	bgp_attrs_clear(&a);
	free(ps);
}

static void test_aspath(void **state)
{
	(void)state;
	struct bgp_attrs a;
	memset(&a, 0, sizeof(a));
	assert_int_equal(bgp_aspath_first(&a), 0);
	bgp_aspath_prepend(&a, 3);
	bgp_aspath_prepend(&a, 2);
	bgp_aspath_prepend(&a, 1);
	assert_int_equal(a.npath, 4);
	assert_int_equal(bgp_aspath_len(&a), 3);
	assert_true(bgp_aspath_contains(&a, 2));
	assert_false(bgp_aspath_contains(&a, 4));
	/* append an AS_SET {7 8}: counts one */
	a.path = realloc(a.path, (a.npath + 3) * 4);
	a.path[a.npath++] = (uint32_t)BGP_AS_SET << 16 | 2;
	a.path[a.npath++] = 7;
	a.path[a.npath++] = 8;
	assert_int_equal(bgp_aspath_len(&a), 4);
	char buf[64];
	assert_string_equal(bgp_aspath_fmt(&a, buf, sizeof(buf)), "1 2 3 {7 8}");
	bgp_attrs_clear(&a);
}

/* ------------------------------------------------- RFC 6793 AS4_PATH ---- */

/* An UPDATE of attrs (+ NLRI 10.2.0.0/24 when nlri) that must parse to one route. */
static void parse_one(const uint8_t *attrs, size_t len, bool nlri, bool as4, struct bgp_update *u)
{
	uint8_t m[512];
	struct bgp_err e;
	size_t n = mk_update(m, attrs, len, nlri);
	assert_int_equal(bgp_update_parse(m, n, as4, u, &e), 0);
	assert_false(u->treat_as_withdraw);
	assert_int_equal(u->nnlri, 1);
}

/* Parse attrs from a 2-octet (as4 false) or 4-octet session and format the resulting path
 * into buf. */
static const char *as4_path_of(const uint8_t *attrs, size_t len, bool as4, struct bgp_update *u,
			       char *buf, size_t size)
{
	parse_one(attrs, len, true, as4, u);
	return bgp_aspath_fmt(&u->attrs, buf, size);
}

#define ORIGIN_NH 0x40, 0x01, 0x01, 0x00, 0x40, 0x03, 0x04, 10, 0, 0, 2
/* 2-octet AS_PATH: SEQUENCE 65002 23456 23456 100 */
#define ASP2 0x40, 0x02, 0x0a, 0x02, 0x04, 0xfd, 0xea, 0x5b, 0xa0, 0x5b, 0xa0, 0x00, 0x64
/* 4200000001 = 0xfa56ea01, 4200000002 = 0xfa56ea02 */
#define AS4A 0xfa, 0x56, 0xea, 0x01
#define AS4B 0xfa, 0x56, 0xea, 0x02

static void test_as4_path_merge(void **state)
{
	(void)state;
	struct bgp_update u;
	char buf[128];
	/* AS4_PATH 4200000001 4200000002 100: the leading 65002 stays, the rest is replaced */
	uint8_t ok[] = {ORIGIN_NH, ASP2, 0xc0, 0x11, 0x0e, 0x02, 0x03, AS4A, AS4B, 0, 0, 0, 100};
	assert_string_equal(as4_path_of(ok, sizeof(ok), false, &u, buf, sizeof(buf)),
			    "65002 4200000001 4200000002 100");
	assert_false(u.attr_discarded);
	assert_int_equal(bgp_aspath_first(&u.attrs), 65002);
	assert_int_equal(bgp_aspath_len(&u.attrs), 4);
	assert_true(bgp_aspath_contains(&u.attrs, 4200000002u));
	bgp_update_free(&u);
	/* the same attribute from a 4-octet speaker is ignored (RFC 6793 §4.1); here AS_PATH is
	 * in 4-octet form */
	uint8_t asp4[] = {ORIGIN_NH, 0x40, 0x02, 0x0a, 0x02, 0x02, 0, 0, 0xfd, 0xea, 0, 0,
			  0x5b,	     0xa0, 0xc0, 0x11, 0x06, 0x02, 0x01, AS4A};
	assert_string_equal(as4_path_of(asp4, sizeof(asp4), true, &u, buf, sizeof(buf)),
			    "65002 23456");
	bgp_update_free(&u);
	/* AS4_PATH first in the attribute list works the same */
	uint8_t first[] = {0xc0, 0x11, 0x0e, 0x02, 0x03, AS4A, AS4B, 0, 0, 0, 100, ORIGIN_NH, ASP2};
	assert_string_equal(as4_path_of(first, sizeof(first), false, &u, buf, sizeof(buf)),
			    "65002 4200000001 4200000002 100");
	bgp_update_free(&u);
	/* longer than AS_PATH: ignored, AS_TRANS kept */
	uint8_t longer[] = {ORIGIN_NH, ASP2, 0xc0, 0x11, 0x16, 0x02, 0x05, AS4A, AS4B,
			    AS4A, AS4B, 0, 0, 0, 100};
	assert_string_equal(as4_path_of(longer, sizeof(longer), false, &u, buf, sizeof(buf)),
			    "65002 23456 23456 100");
	assert_false(u.attr_discarded);
	bgp_update_free(&u);
	/* confederation segments in AS4_PATH are dropped, the rest merged */
	uint8_t confed[] = {ORIGIN_NH, ASP2, 0xc0, 0x11, 0x14, 0x03, 0x01, 0, 0, 0xff, 0x00,
			    0x02, 0x03, AS4A, AS4B, 0, 0, 0, 100};
	assert_string_equal(as4_path_of(confed, sizeof(confed), false, &u, buf, sizeof(buf)),
			    "65002 4200000001 4200000002 100");
	bgp_update_free(&u);
	/* malformed AS4_PATH (segment runs past the attribute, zero count, bad type): the
	 * attribute is discarded, the route stays with its AS_TRANS path */
	uint8_t overrun[] = {ORIGIN_NH, ASP2, 0xc0, 0x11, 0x06, 0x02, 0x02, AS4A};
	uint8_t zero[] = {ORIGIN_NH, ASP2, 0xc0, 0x11, 0x02, 0x02, 0x00};
	uint8_t badtype[] = {ORIGIN_NH, ASP2, 0xc0, 0x11, 0x06, 0x09, 0x01, AS4A};
	uint8_t odd[] = {ORIGIN_NH, ASP2, 0xc0, 0x11, 0x05, 0x02, 0x01, 0xfa, 0x56, 0xea};
	uint8_t flags[] = {ORIGIN_NH, ASP2, 0x80, 0x11, 0x06, 0x02, 0x01, AS4A}; /* not transitive */
	const uint8_t *bad[] = {overrun, zero, badtype, odd, flags};
	size_t badlen[] = {sizeof(overrun), sizeof(zero), sizeof(badtype), sizeof(odd), sizeof(flags)};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_string_equal(as4_path_of(bad[i], badlen[i], false, &u, buf, sizeof(buf)),
				    "65002 23456 23456 100");
		assert_true(u.attr_discarded);
		assert_non_null(strstr(u.reason, "AS4_PATH"));
		bgp_update_free(&u);
	}
	/* AS_SET counts one: AS_PATH 65002 23456 {1 2}, AS4_PATH 4200000001 {1 2} */
	uint8_t set[] = {ORIGIN_NH, 0x40, 0x02, 0x0c, 0x02, 0x02, 0xfd, 0xea, 0x5b, 0xa0,
			 0x01, 0x02, 0x00, 0x01, 0x00, 0x02,
			 0xc0, 0x11, 0x10, 0x02, 0x01, AS4A, 0x01, 0x02, 0, 0, 0, 1, 0, 0, 0, 2};
	assert_string_equal(as4_path_of(set, sizeof(set), false, &u, buf, sizeof(buf)),
			    "65002 4200000001 {1 2}");
	assert_int_equal(bgp_aspath_len(&u.attrs), 3);
	bgp_update_free(&u);
	/* a leading confederation segment of AS_PATH stays (it counts 0) */
	uint8_t lead[] = {ORIGIN_NH, 0x40, 0x02, 0x0a, 0x03, 0x01, 0xff, 0x00, 0x02, 0x02, 0xfd,
			  0xea, 0x5b, 0xa0, 0xc0, 0x11, 0x06, 0x02, 0x01, AS4A};
	assert_string_equal(as4_path_of(lead, sizeof(lead), false, &u, buf, sizeof(buf)),
			    "65280 65002 4200000001");
	assert_int_equal(bgp_aspath_len(&u.attrs), 2);
	bgp_update_free(&u);
}

static void test_as4_aggregator(void **state)
{
	(void)state;
	struct bgp_update u;
	char buf[128];
	/* AGGREGATOR AS_TRANS 1.2.3.4 + AS4_AGGREGATOR 4200000001 1.2.3.4 */
	uint8_t trans[] = {ORIGIN_NH, ASP2, 0xc0, 0x07, 0x06, 0x5b, 0xa0, 1, 2, 3, 4,
			   0xc0, 0x12, 0x08, AS4A, 1, 2, 3, 4,
			   0xc0, 0x11, 0x06, 0x02, 0x01, 0, 0, 0, 100};
	assert_string_equal(as4_path_of(trans, sizeof(trans), false, &u, buf, sizeof(buf)),
			    "65002 23456 23456 100");
	assert_true(u.attrs.has & BGP_A_AGGREGATOR);
	assert_int_equal(u.attrs.aggregator_as, 4200000001u);
	assert_int_equal(u.attrs.aggregator_id, 0x01020304);
	bgp_update_free(&u);
	/* AGGREGATOR with a real AS: AS4_AGGREGATOR and AS4_PATH are both ignored */
	uint8_t real[] = {ORIGIN_NH, ASP2, 0xc0, 0x07, 0x06, 0xfd, 0xea, 1, 2, 3, 4,
			  0xc0, 0x12, 0x08, AS4A, 1, 2, 3, 4,
			  0xc0, 0x11, 0x0e, 0x02, 0x03, AS4A, AS4B, 0, 0, 0, 100};
	assert_string_equal(as4_path_of(real, sizeof(real), false, &u, buf, sizeof(buf)),
			    "65002 23456 23456 100");
	assert_int_equal(u.attrs.aggregator_as, 65002);
	bgp_update_free(&u);
	/* a malformed AS4_AGGREGATOR is discarded */
	uint8_t bad[] = {ORIGIN_NH, ASP2, 0xc0, 0x07, 0x06, 0x5b, 0xa0, 1, 2, 3, 4,
			 0xc0, 0x12, 0x06, 0xfa, 0x56, 1, 2, 3, 4};
	as4_path_of(bad, sizeof(bad), false, &u, buf, sizeof(buf));
	assert_true(u.attr_discarded);
	assert_int_equal(u.attrs.aggregator_as, BGP_AS_TRANS);
	bgp_update_free(&u);
}

/* The value of attribute `type` in the UPDATE message m (header included), or NULL. */
static const uint8_t *find_attr(const uint8_t *m, size_t n, uint8_t type, size_t *len)
{
	size_t off = BGP_HDR_LEN + 2 + (m[BGP_HDR_LEN] << 8 | m[BGP_HDR_LEN + 1]);
	size_t end = off + 2 + (m[off] << 8 | m[off + 1]);
	assert_true(end <= n);
	for (off += 2; off < end;) {
		uint8_t fl = m[off], t = m[off + 1];
		size_t l = fl & BGP_AF_EXTLEN ? (size_t)(m[off + 2] << 8 | m[off + 3]) : m[off + 2];
		size_t h = fl & BGP_AF_EXTLEN ? 4 : 3;
		if (t == type) {
			*len = l;
			return m + off + h;
		}
		off += h + l;
	}
	return NULL;
}

/* twill to an OLD peer: AS_PATH with AS_TRANS plus AS4_PATH (and AS4_AGGREGATOR), which
 * the peer's parse merges back; to a NEW peer neither. */
static void test_as4_encode(void **state)
{
	(void)state;
	struct bgp_attrs a;
	memset(&a, 0, sizeof(a));
	bgp_aspath_prepend(&a, 100);
	bgp_aspath_prepend(&a, 4200000002u);
	bgp_aspath_prepend(&a, 4200000001u);
	/* a confederation segment in front: in AS_PATH, not in AS4_PATH */
	a.path = realloc(a.path, (a.npath + 2) * 4);
	memmove(a.path + 2, a.path, a.npath * 4);
	a.path[0] = (uint32_t)BGP_AS_CONFED_SEQUENCE << 16 | 1;
	a.path[1] = 65100;
	a.npath += 2;
	a.nh = A("10.0.0.1");
	a.has = BGP_A_AGGREGATOR;
	a.aggregator_as = 4200000001u;
	a.aggregator_id = 0x0a000001;
	struct ipprefix p = P("10.1.0.0/24");
	uint8_t m[BGP_MAX_LEN];
	size_t used, len;
	size_t n = bgp_update_build(m, sizeof(m), &a, false, BGP_FAM_V4, &p, 1, &used);
	assert_true(n > 0);
	const uint8_t *v = find_attr(m, n, BGP_ATTR_AS_PATH, &len);
	static const uint8_t asp[] = {3, 1, 0xfe, 0x4c, 2, 3, 0x5b, 0xa0, 0x5b, 0xa0, 0, 100};
	assert_non_null(v);
	assert_int_equal(len, sizeof(asp));
	assert_memory_equal(v, asp, sizeof(asp));
	v = find_attr(m, n, BGP_ATTR_AS4_PATH, &len);
	static const uint8_t as4p[] = {2, 3, AS4A, AS4B, 0, 0, 0, 100};
	assert_non_null(v);
	assert_int_equal(len, sizeof(as4p));
	assert_memory_equal(v, as4p, sizeof(as4p));
	assert_int_equal(v[-3], BGP_AF_OPTIONAL | BGP_AF_TRANSITIVE);
	v = find_attr(m, n, BGP_ATTR_AGGREGATOR, &len);
	assert_non_null(v);
	assert_int_equal(len, 6);
	assert_int_equal(v[0] << 8 | v[1], BGP_AS_TRANS);
	v = find_attr(m, n, BGP_ATTR_AS4_AGGREGATOR, &len);
	assert_non_null(v);
	assert_int_equal(len, 8);
	/* the OLD peer's view merged back by a NEW speaker */
	struct bgp_update u;
	struct bgp_err e;
	char buf[128];
	assert_int_equal(bgp_update_parse(m + BGP_HDR_LEN, n - BGP_HDR_LEN, false, &u, &e), 0);
	assert_false(u.attr_discarded || u.treat_as_withdraw);
	assert_string_equal(bgp_aspath_fmt(&u.attrs, buf, sizeof(buf)),
			    "65100 4200000001 4200000002 100");
	assert_int_equal(u.attrs.aggregator_as, 4200000001u);
	bgp_update_free(&u);
	/* to a NEW peer: no AS4_PATH, no AS4_AGGREGATOR */
	n = bgp_update_build(m, sizeof(m), &a, true, BGP_FAM_V4, &p, 1, &used);
	assert_null(find_attr(m, n, BGP_ATTR_AS4_PATH, &len));
	assert_null(find_attr(m, n, BGP_ATTR_AS4_AGGREGATOR, &len));
	/* to an OLD peer with only 2-octet ASes: no AS4_PATH either */
	bgp_attrs_clear(&a);
	bgp_aspath_prepend(&a, 65001);
	a.nh = A("10.0.0.1");
	n = bgp_update_build(m, sizeof(m), &a, false, BGP_FAM_V4, &p, 1, &used);
	assert_null(find_attr(m, n, BGP_ATTR_AS4_PATH, &len));
	assert_non_null(find_attr(m, n, BGP_ATTR_AS_PATH, &len));
	bgp_attrs_clear(&a);
}

/* RFC 2545 next hops: a link-local-only next hop (alone, or behind ::) lands in mp_nh_ll
 * with mp_nh unset; global + link-local keeps both; a link-local-only one is sent alone. */
static void test_mp_reach_link_local(void **state)
{
	(void)state;
	static const uint8_t fe80_2[16] = {0xfe, 0x80, [15] = 2};
	static const uint8_t fd00_2[16] = {0xfd, 0x00, [15] = 2};
	static const uint8_t zero[16] = {0};
	const struct {
		const uint8_t *a, *b; /* b NULL: a 16-byte next hop */
		const char *global, *ll;
	} cases[] = {
	    {fe80_2, NULL, NULL, "fe80::2"},
	    {zero, fe80_2, NULL, "fe80::2"},
	    {fe80_2, fe80_2, NULL, "fe80::2"},
	    {fd00_2, fe80_2, "fd00::2", "fe80::2"},
	    {fd00_2, NULL, "fd00::2", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t attrs[128];
		size_t n = 0, nhl = cases[i].b ? 32 : 16;
		static const uint8_t base[] = {0x40, 0x01, 0x01, 0x00, 0x40, 0x02, 0x00};
		memcpy(attrs, base, sizeof(base));
		n = sizeof(base);
		attrs[n++] = 0x80, attrs[n++] = 0x0e, attrs[n++] = (uint8_t)(5 + nhl + 9);
		attrs[n++] = 0, attrs[n++] = 2, attrs[n++] = 1, attrs[n++] = (uint8_t)nhl;
		memcpy(attrs + n, cases[i].a, 16), n += 16;
		if (cases[i].b)
			memcpy(attrs + n, cases[i].b, 16), n += 16;
		attrs[n++] = 0;
		static const uint8_t pfx[] = {64, 0xfd, 0x09, 0, 0, 0, 0, 0, 0}; /* fd09::/64 */
		memcpy(attrs + n, pfx, sizeof(pfx)), n += sizeof(pfx);
		struct bgp_update u;
		parse_one(attrs, n, false, true, &u);
		char buf[IP_STRLEN];
		if (cases[i].global)
			assert_string_equal(ip_fmt(&u.attrs.mp_nh, buf), cases[i].global);
		else
			assert_false(ip_is_set(&u.attrs.mp_nh));
		if (cases[i].ll)
			assert_string_equal(ip_fmt(&u.attrs.mp_nh_ll, buf), cases[i].ll);
		else
			assert_false(ip_is_set(&u.attrs.mp_nh_ll));
		/* and back: what was parsed builds the same next hop */
		uint8_t out[BGP_MAX_LEN];
		size_t used, nl;
		struct ipprefix p = P("fd09::/64");
		size_t ol = bgp_update_build(out, sizeof(out), &u.attrs, true, BGP_FAM_V6, &p, 1,
					     &used);
		const uint8_t *v = find_attr(out, ol, BGP_ATTR_MP_REACH, &nl);
		assert_non_null(v);
		assert_int_equal(v[3], cases[i].global && cases[i].ll ? 32 : 16);
		assert_memory_equal(v + 4, cases[i].global ? cases[i].a : fe80_2, 16);
		bgp_update_free(&u);
	}
}

static void test_notification_refresh(void **state)
{
	(void)state;
	uint8_t m[BGP_MAX_LEN];
	struct bgp_err e = {.code = BGP_ERR_CEASE, .subcode = BGP_CEASE_SHUTDOWN, .len = 1,
			    .data = {9}};
	size_t n = bgp_notification_build(m, sizeof(m), &e);
	assert_int_equal(n, 22);
	struct bgp_err r;
	assert_int_equal(bgp_notification_parse(m + BGP_HDR_LEN, n - BGP_HDR_LEN, &r), 0);
	assert_int_equal(r.code, BGP_ERR_CEASE);
	assert_int_equal(r.subcode, BGP_CEASE_SHUTDOWN);
	assert_int_equal(r.len, 1);
	assert_int_equal(bgp_notification_parse(m + BGP_HDR_LEN, 1, &r), -1);
	assert_string_equal(bgp_err_str(BGP_ERR_CEASE, BGP_CEASE_COLLISION),
			    "connection collision resolution");
	assert_string_equal(bgp_err_str(BGP_ERR_UPDATE, 99), "UPDATE message error");

	n = bgp_refresh_build(m, sizeof(m), BGP_FAM_V6);
	static const uint8_t want[] = {0x00, 0x02, 0x00, 0x01};
	assert_int_equal(n, 23);
	assert_memory_equal(m + BGP_HDR_LEN, want, 4);
	int fam;
	assert_int_equal(bgp_refresh_parse(m + BGP_HDR_LEN, 4, &fam, &r), 0);
	assert_int_equal(fam, BGP_FAM_V6);
	uint8_t other[] = {0x00, 0x01, 0x00, 0x80}; /* VPN: not ours */
	assert_int_equal(bgp_refresh_parse(other, 4, &fam, &r), 0);
	assert_int_equal(fam, -1);
	assert_int_equal(bgp_refresh_parse(other, 3, &fam, &r), -1);
	assert_int_equal(bgp_keepalive_build(m, sizeof(m)), 19);
	assert_int_equal(bgp_keepalive_build(m, 10), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_header),
	    cmocka_unit_test(test_open_bytes),
	    cmocka_unit_test(test_open_errors),
	    cmocka_unit_test(test_update_parse_bytes),
	    cmocka_unit_test(test_update_treat_as_withdraw),
	    cmocka_unit_test(test_update_discard),
	    cmocka_unit_test(test_update_reset),
	    cmocka_unit_test(test_update_roundtrip_v6),
	    cmocka_unit_test(test_update_packing),
	    cmocka_unit_test(test_aspath),
	    cmocka_unit_test(test_as4_path_merge),
	    cmocka_unit_test(test_as4_aggregator),
	    cmocka_unit_test(test_as4_encode),
	    cmocka_unit_test(test_mp_reach_link_local),
	    cmocka_unit_test(test_notification_refresh),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
