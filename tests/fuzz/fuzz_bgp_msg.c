/* libFuzzer harness for the BGP message parsers (bgp/msg.c).
 *
 *   make B=build fuzz-bgp        (FUZZ_SECONDS, corpus tests/fuzz/corpus_bgp)
 *
 * The first byte picks the session flavour (4-octet AS or not); the rest is a stream of
 * BGP messages as a peer would send them.  Whatever parses is checked for consistency:
 * an UPDATE that parsed cleanly is rebuilt from its decoded attributes and must parse
 * again to the same attributes and prefixes; OPENs round-trip the same way. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bgp/msg.h"

static void check_update(const uint8_t *body, size_t len, bool as4)
{
	struct bgp_update u;
	struct bgp_err e;
	if (bgp_update_parse(body, len, as4, &u, &e) < 0) {
		if (!e.code)
			abort(); /* a reset always says why */
		return;
	}
	if (u.treat_as_withdraw && u.nnlri)
		abort();
	if (!u.treat_as_withdraw && !u.attr_discarded && u.nnlri) {
		/* rebuild per family and compare */
		for (int fam = 0; fam < BGP_NFAM; fam++) {
			struct ipprefix ps[u.nnlri];
			size_t n = 0;
			for (size_t i = 0; i < u.nnlri; i++)
				if (bgp_fam_of(u.nlri[i].addr.family) == fam)
					ps[n++] = u.nlri[i];
			if (!n)
				continue;
			struct bgp_attrs a;
			bgp_attrs_copy(&a, &u.attrs);
			if (fam == BGP_FAM_V4 && a.nh.family != AF_INET)
				a.nh = a.mp_nh;
			if (fam == BGP_FAM_V6 && a.mp_nh.family != AF_INET6) {
				bgp_attrs_clear(&a);
				continue;
			}
			uint8_t m[BGP_MAX_LEN];
			size_t done = 0;
			while (done < n) {
				size_t used;
				size_t l = bgp_update_build(m, sizeof(m), &a, true, fam, ps + done,
							    n - done, &used);
				if (!l)
					break; /* attributes too large for one message */
				struct bgp_update v;
				if (bgp_update_parse(m + BGP_HDR_LEN, l - BGP_HDR_LEN, true, &v, &e) < 0 ||
				    v.treat_as_withdraw || v.nnlri != used)
					abort();
				for (size_t i = 0; i < used; i++)
					if (!prefix_eq(&v.nlri[i], &ps[done + i]))
						abort();
				if (bgp_aspath_len(&v.attrs) != bgp_aspath_len(&a) ||
				    v.attrs.ncomm != a.ncomm || v.attrs.nlcomm != a.nlcomm)
					abort();
				bgp_update_free(&v);
				done += used;
			}
			bgp_attrs_clear(&a);
		}
	}
	bgp_update_free(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	bool as4 = data[0] & 1;
	data++, size--;
	for (int k = 0; k < 64 && size >= BGP_HDR_LEN; k++) {
		uint8_t type;
		uint16_t len;
		struct bgp_err e;
		if (bgp_hdr_parse(data, size, &type, &len, &e) < 0) {
			/* not a header: try the body parsers on the raw bytes instead */
			size_t n = size > BGP_MAX_LEN ? BGP_MAX_LEN : size;
			check_update(data, n, as4);
			return 0;
		}
		if (len > size)
			return 0;
		const uint8_t *body = data + BGP_HDR_LEN;
		size_t blen = len - BGP_HDR_LEN;
		switch (type) {
		case BGP_OPEN: {
			struct bgp_open o, o2;
			if (bgp_open_parse(body, blen, &o, &e) == 0) {
				uint8_t m[BGP_MAX_LEN];
				size_t l = bgp_open_build(m, sizeof(m), &o);
				if (!l || bgp_open_parse(m + BGP_HDR_LEN, l - BGP_HDR_LEN, &o2, &e) < 0 ||
				    o2.as != o.as || o2.id != o.id || o2.hold != o.hold)
					abort();
			}
			break;
		}
		case BGP_UPDATE:
			check_update(body, blen, as4);
			break;
		case BGP_NOTIFICATION:
			bgp_notification_parse(body, blen, &e);
			break;
		case BGP_REFRESH: {
			int fam;
			bgp_refresh_parse(body, blen, &fam, &e);
			break;
		}
		default:
			break;
		}
		data += len, size -= len;
	}
	return 0;
}
