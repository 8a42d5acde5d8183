/* bgp/msg: BGP-4 messages, see msg.h for the RFCs and the error model. */
#include "bgp/msg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lib/util.h"

int bgp_fam_of(int af)
{
	return af == AF_INET ? BGP_FAM_V4 : af == AF_INET6 ? BGP_FAM_V6 : -1;
}

int bgp_fam_af(int fam)
{
	return fam == BGP_FAM_V4 ? AF_INET : AF_INET6;
}

static int fam_from_afi(uint16_t afi, uint8_t safi)
{
	if (safi != BGP_SAFI_UNICAST)
		return -1;
	return afi == BGP_AFI_IPV4 ? BGP_FAM_V4 : afi == BGP_AFI_IPV6 ? BGP_FAM_V6 : -1;
}

static uint16_t fam_afi(int fam)
{
	return fam == BGP_FAM_V4 ? BGP_AFI_IPV4 : BGP_AFI_IPV6;
}

/* ------------------------------------------------------------ cursor ---- */

struct cur {
	const uint8_t *p;
	size_t n;
};

static bool get8(struct cur *c, uint8_t *v)
{
	if (c->n < 1)
		return false;
	*v = c->p[0];
	c->p++, c->n--;
	return true;
}

static bool get16(struct cur *c, uint16_t *v)
{
	if (c->n < 2)
		return false;
	*v = (uint16_t)(c->p[0] << 8 | c->p[1]);
	c->p += 2, c->n -= 2;
	return true;
}

static bool get32(struct cur *c, uint32_t *v)
{
	if (c->n < 4)
		return false;
	*v = (uint32_t)c->p[0] << 24 | (uint32_t)c->p[1] << 16 | (uint32_t)c->p[2] << 8 | c->p[3];
	c->p += 4, c->n -= 4;
	return true;
}

static bool getn(struct cur *c, size_t len, struct cur *sub)
{
	if (c->n < len)
		return false;
	sub->p = c->p;
	sub->n = len;
	c->p += len, c->n -= len;
	return true;
}

/* ------------------------------------------------------------ writer ---- */

struct wbuf {
	uint8_t *p;
	size_t size, len;
	bool overflow;
};

static void put8(struct wbuf *w, uint8_t v)
{
	if (w->len + 1 > w->size) {
		w->overflow = true;
		return;
	}
	w->p[w->len++] = v;
}

static void put16(struct wbuf *w, uint16_t v)
{
	put8(w, (uint8_t)(v >> 8));
	put8(w, (uint8_t)v);
}

static void put32(struct wbuf *w, uint32_t v)
{
	put16(w, (uint16_t)(v >> 16));
	put16(w, (uint16_t)v);
}

static void putn(struct wbuf *w, const void *d, size_t n)
{
	if (!n)
		return;
	if (w->len + n > w->size) {
		w->overflow = true;
		return;
	}
	memcpy(w->p + w->len, d, n);
	w->len += n;
}

static void set16(struct wbuf *w, size_t at, uint16_t v)
{
	if (at + 2 <= w->size) {
		w->p[at] = (uint8_t)(v >> 8);
		w->p[at + 1] = (uint8_t)v;
	}
}

static void hdr_start(struct wbuf *w, uint8_t type)
{
	for (int i = 0; i < 16; i++)
		put8(w, 0xff);
	put16(w, 0);
	put8(w, type);
}

static size_t hdr_finish(struct wbuf *w)
{
	if (w->overflow || w->len > BGP_MAX_LEN)
		return 0;
	set16(w, 16, (uint16_t)w->len);
	return w->len;
}

static void err_set(struct bgp_err *e, uint8_t code, uint8_t sub, const void *data, size_t len)
{
	e->code = code;
	e->subcode = sub;
	if (len > sizeof(e->data))
		len = sizeof(e->data);
	e->len = (uint16_t)len;
	if (len)
		memcpy(e->data, data, len);
}

const char *bgp_err_str(uint8_t code, uint8_t subcode)
{
	static const char *hdr[] = {"", "connection not synchronized", "bad message length",
				    "bad message type"};
	static const char *open[] = {"", "unsupported version number", "bad peer AS",
				     "bad BGP identifier", "unsupported optional parameter", "",
				     "unacceptable hold time", "unsupported capability"};
	static const char *upd[] = {"", "malformed attribute list", "unrecognized well-known attribute",
				    "missing well-known attribute", "attribute flags error",
				    "attribute length error", "invalid ORIGIN", "",
				    "invalid NEXT_HOP", "optional attribute error",
				    "invalid network field", "malformed AS_PATH"};
	static const char *cease[] = {"", "maximum prefixes reached", "administrative shutdown",
				      "peer de-configured", "administrative reset",
				      "connection rejected", "other configuration change",
				      "connection collision resolution", "out of resources",
				      "hard reset"};
	switch (code) {
	case BGP_ERR_HEADER:
		return subcode < ARRAY_SIZE(hdr) && subcode ? hdr[subcode] : "message header error";
	case BGP_ERR_OPEN:
		return subcode < ARRAY_SIZE(open) && *open[subcode] ? open[subcode]
								    : "OPEN message error";
	case BGP_ERR_UPDATE:
		return subcode < ARRAY_SIZE(upd) && *upd[subcode] ? upd[subcode]
								  : "UPDATE message error";
	case BGP_ERR_HOLD:
		return "hold timer expired";
	case BGP_ERR_FSM:
		return "finite state machine error";
	case BGP_ERR_CEASE:
		return subcode < ARRAY_SIZE(cease) && *cease[subcode] ? cease[subcode] : "cease";
	case BGP_ERR_REFRESH:
		return "ROUTE-REFRESH message error";
	default:
		return "unknown error";
	}
}

/* ------------------------------------------------------------ header ---- */

int bgp_hdr_parse(const uint8_t *buf, size_t avail, uint8_t *type, uint16_t *len, struct bgp_err *e)
{
	if (avail < BGP_HDR_LEN) {
		err_set(e, BGP_ERR_HEADER, BGP_HDR_LENGTH, NULL, 0);
		return -1;
	}
	for (int i = 0; i < 16; i++) {
		if (buf[i] != 0xff) {
			err_set(e, BGP_ERR_HEADER, BGP_HDR_SYNC, NULL, 0);
			return -1;
		}
	}
	uint16_t l = (uint16_t)(buf[16] << 8 | buf[17]);
	uint8_t t = buf[18];
	bool ok;
	switch (t) {
	case BGP_OPEN:
		ok = l >= BGP_HDR_LEN + 10;
		break;
	case BGP_UPDATE:
		ok = l >= BGP_HDR_LEN + 4;
		break;
	case BGP_NOTIFICATION:
		ok = l >= BGP_HDR_LEN + 2;
		break;
	case BGP_KEEPALIVE:
		ok = l == BGP_HDR_LEN;
		break;
	case BGP_REFRESH:
		ok = l == BGP_HDR_LEN + 4;
		break;
	default:
		err_set(e, BGP_ERR_HEADER, BGP_HDR_TYPE, &t, 1);
		return -1;
	}
	if (!ok || l > BGP_MAX_LEN) {
		uint8_t d[2] = {buf[16], buf[17]};
		err_set(e, BGP_ERR_HEADER, BGP_HDR_LENGTH, d, 2);
		return -1;
	}
	*type = t;
	*len = l;
	return 0;
}

/* -------------------------------------------------------------- OPEN ---- */

enum {
	CAP_MP = 1,
	CAP_REFRESH = 2,
	CAP_GR = 64,
	CAP_AS4 = 65,
	CAP_REFRESH_OLD = 128,
};

static int parse_caps(struct cur *c, struct bgp_open *o, uint32_t *as4, struct bgp_err *e)
{
	while (c->n) {
		uint8_t code, len;
		struct cur v;
		if (!get8(c, &code) || !get8(c, &len) || !getn(c, len, &v))
			goto bad;
		switch (code) {
		case CAP_MP: {
			uint16_t afi;
			uint8_t res, safi;
			if (len != 4 || !get16(&v, &afi) || !get8(&v, &res) || !get8(&v, &safi))
				goto bad;
			o->mp_any = true;
			int fam = fam_from_afi(afi, safi);
			if (fam >= 0)
				o->mp[fam] = true;
			break;
		}
		case CAP_REFRESH:
		case CAP_REFRESH_OLD:
			if (len != 0)
				goto bad;
			o->refresh = true;
			break;
		case CAP_AS4:
			if (len != 4 || !get32(&v, as4))
				goto bad;
			o->as4 = true;
			break;
		case CAP_GR: {
			uint16_t ft;
			if (len < 2 || (len - 2) % 4 || !get16(&v, &ft))
				goto bad;
			o->gr = true;
			o->gr_restarting = ft & 0x8000;
			o->gr_time = ft & 0x0fff;
			while (v.n) {
				uint16_t afi = 0;
				uint8_t safi = 0, fl = 0;
				get16(&v, &afi), get8(&v, &safi), get8(&v, &fl);
				int fam = fam_from_afi(afi, safi);
				if (fam >= 0) {
					o->gr_fam[fam] = true;
					o->gr_fwd[fam] = fl & 0x80;
				}
			}
			break;
		}
		default: /* RFC 5492: ignore capabilities we do not know */
			break;
		}
	}
	return 0;
bad:
	err_set(e, BGP_ERR_OPEN, 0, NULL, 0);
	return -1;
}

int bgp_open_parse(const uint8_t *body, size_t len, struct bgp_open *o, struct bgp_err *e)
{
	struct cur c = {body, len};
	uint16_t my_as;
	uint8_t optlen;
	uint32_t as4 = 0;
	memset(o, 0, sizeof(*o));
	if (!get8(&c, &o->version) || !get16(&c, &my_as) || !get16(&c, &o->hold) ||
	    !get32(&c, &o->id) || !get8(&c, &optlen)) {
		err_set(e, BGP_ERR_HEADER, BGP_HDR_LENGTH, NULL, 0);
		return -1;
	}
	if (o->version != 4) {
		uint8_t d[2] = {0, 4};
		err_set(e, BGP_ERR_OPEN, BGP_OPEN_VERSION, d, 2);
		return -1;
	}
	if (o->hold == 1 || o->hold == 2) {
		err_set(e, BGP_ERR_OPEN, BGP_OPEN_HOLD, NULL, 0);
		return -1;
	}
	if (o->id == 0) {
		err_set(e, BGP_ERR_OPEN, BGP_OPEN_BGP_ID, NULL, 0);
		return -1;
	}
	if (optlen != c.n) {
		err_set(e, BGP_ERR_OPEN, 0, NULL, 0);
		return -1;
	}
	while (c.n) {
		uint8_t type, plen;
		struct cur v;
		if (!get8(&c, &type) || !get8(&c, &plen) || !getn(&c, plen, &v)) {
			err_set(e, BGP_ERR_OPEN, 0, NULL, 0);
			return -1;
		}
		if (type != 2) {
			err_set(e, BGP_ERR_OPEN, BGP_OPEN_OPT_PARAM, NULL, 0);
			return -1;
		}
		if (parse_caps(&v, o, &as4, e) < 0)
			return -1;
	}
	o->as = o->as4 ? as4 : my_as;
	if (!o->mp_any)
		o->mp[BGP_FAM_V4] = true; /* RFC 4760: no MP capability means IPv4 unicast */
	return 0;
}

size_t bgp_open_build(uint8_t *buf, size_t size, const struct bgp_open *o)
{
	struct wbuf w = {buf, size, 0, false};
	hdr_start(&w, BGP_OPEN);
	put8(&w, 4);
	put16(&w, o->as > 0xffff ? BGP_AS_TRANS : (uint16_t)o->as);
	put16(&w, o->hold);
	put32(&w, o->id);
	size_t optlen_at = w.len;
	put8(&w, 0);
	put8(&w, 2); /* capabilities */
	size_t plen_at = w.len;
	put8(&w, 0);
	for (int f = 0; f < BGP_NFAM; f++) {
		if (!o->mp[f])
			continue;
		put8(&w, CAP_MP), put8(&w, 4), put16(&w, fam_afi(f)), put8(&w, 0);
		put8(&w, BGP_SAFI_UNICAST);
	}
	if (o->refresh)
		put8(&w, CAP_REFRESH), put8(&w, 0);
	if (o->as4)
		put8(&w, CAP_AS4), put8(&w, 4), put32(&w, o->as);
	if (o->gr) {
		size_t n = 0;
		for (int f = 0; f < BGP_NFAM; f++)
			n += o->gr_fam[f];
		put8(&w, CAP_GR), put8(&w, (uint8_t)(2 + 4 * n));
		put16(&w, (uint16_t)((o->gr_restarting ? 0x8000 : 0) | (o->gr_time & 0x0fff)));
		for (int f = 0; f < BGP_NFAM; f++) {
			if (!o->gr_fam[f])
				continue;
			put16(&w, fam_afi(f)), put8(&w, BGP_SAFI_UNICAST);
			put8(&w, o->gr_fwd[f] ? 0x80 : 0);
		}
	}
	if (w.overflow || w.len - plen_at - 1 > 255)
		return 0;
	w.p[plen_at] = (uint8_t)(w.len - plen_at - 1);
	w.p[optlen_at] = (uint8_t)(w.len - optlen_at - 1);
	return hdr_finish(&w);
}

/* -------------------------------------------------------- attributes ---- */

void bgp_attrs_clear(struct bgp_attrs *a)
{
	free(a->path);
	free(a->comm);
	free(a->lcomm);
	free(a->cluster);
	free(a->unknown);
	free(a->only_to);
	memset(a, 0, sizeof(*a));
}

static void *dup_arr(const void *p, size_t n)
{
	if (!n || !p)
		return NULL;
	void *d = xmalloc(n);
	memcpy(d, p, n);
	return d;
}

void bgp_attrs_copy(struct bgp_attrs *dst, const struct bgp_attrs *src)
{
	*dst = *src;
	dst->path = dup_arr(src->path, src->npath * 4u);
	dst->comm = dup_arr(src->comm, src->ncomm * 4u);
	dst->lcomm = dup_arr(src->lcomm, src->nlcomm * 12u);
	dst->cluster = dup_arr(src->cluster, src->ncluster * 4u);
	dst->unknown = dup_arr(src->unknown, src->unknown_len);
	dst->only_to = dup_arr(src->only_to, src->nonly_to * sizeof(*src->only_to));
}

uint64_t bgp_attrs_hash(const struct bgp_attrs *a)
{
	uint32_t fixed[8] = {a->has, a->origin, a->med, a->local_pref, a->originator_id,
			     a->aggregator_as, a->aggregator_id, 0};
	uint64_t h = fnv1a64(fixed, sizeof(fixed), FNV_SEED);
	h = fnv1a64(&a->nh, sizeof(a->nh), h);
	h = fnv1a64(&a->mp_nh, sizeof(a->mp_nh), h);
	h = fnv1a64(&a->mp_nh_ll, sizeof(a->mp_nh_ll), h);
	if (a->npath)
		h = fnv1a64(a->path, a->npath * 4u, h ^ 1);
	if (a->ncomm)
		h = fnv1a64(a->comm, a->ncomm * 4u, h ^ 2);
	if (a->nlcomm)
		h = fnv1a64(a->lcomm, a->nlcomm * 12u, h ^ 3);
	if (a->ncluster)
		h = fnv1a64(a->cluster, a->ncluster * 4u, h ^ 4);
	if (a->unknown_len)
		h = fnv1a64(a->unknown, a->unknown_len, h ^ 5);
	if (a->nonly_to)
		h = fnv1a64(a->only_to, a->nonly_to * sizeof(*a->only_to), h ^ 6);
	return h;
}

static bool arr_eq(const void *a, const void *b, size_t n)
{
	return !n || !memcmp(a, b, n);
}

bool bgp_attrs_equal(const struct bgp_attrs *a, const struct bgp_attrs *b)
{
	return a->has == b->has && a->origin == b->origin && a->med == b->med &&
	       a->local_pref == b->local_pref && a->originator_id == b->originator_id &&
	       a->aggregator_as == b->aggregator_as && a->aggregator_id == b->aggregator_id &&
	       ip_eq(&a->nh, &b->nh) && ip_eq(&a->mp_nh, &b->mp_nh) &&
	       ip_eq(&a->mp_nh_ll, &b->mp_nh_ll) && a->npath == b->npath &&
	       arr_eq(a->path, b->path, a->npath * 4u) && a->ncomm == b->ncomm &&
	       arr_eq(a->comm, b->comm, a->ncomm * 4u) && a->nlcomm == b->nlcomm &&
	       arr_eq(a->lcomm, b->lcomm, a->nlcomm * 12u) && a->ncluster == b->ncluster &&
	       arr_eq(a->cluster, b->cluster, a->ncluster * 4u) &&
	       a->unknown_len == b->unknown_len && arr_eq(a->unknown, b->unknown, a->unknown_len) &&
	       a->nonly_to == b->nonly_to &&
	       arr_eq(a->only_to, b->only_to, a->nonly_to * sizeof(*a->only_to));
}

bool bgp_attrs_export_ok(const struct bgp_attrs *a, const struct ipaddr *addr)
{
	for (size_t i = 0; i < a->nonly_to; i++)
		if (ip_eq(&a->only_to[i], addr))
			return true;
	return !a->nonly_to;
}

unsigned bgp_aspath_len(const struct bgp_attrs *a)
{
	unsigned n = 0;
	for (size_t i = 0; i < a->npath;) {
		uint32_t type = a->path[i] >> 16, cnt = a->path[i] & 0xffff;
		if (type == BGP_AS_SEQUENCE)
			n += cnt;
		else if (type == BGP_AS_SET)
			n += 1;
		i += 1 + cnt;
	}
	return n;
}

bool bgp_aspath_contains(const struct bgp_attrs *a, uint32_t as)
{
	for (size_t i = 0; i < a->npath;) {
		uint32_t cnt = a->path[i] & 0xffff;
		for (uint32_t k = 1; k <= cnt && i + k < a->npath; k++)
			if (a->path[i + k] == as)
				return true;
		i += 1 + cnt;
	}
	return false;
}

uint32_t bgp_aspath_first(const struct bgp_attrs *a)
{
	if (a->npath >= 2 && a->path[0] >> 16 == BGP_AS_SEQUENCE && (a->path[0] & 0xffff))
		return a->path[1];
	return 0;
}

void bgp_aspath_prepend(struct bgp_attrs *a, uint32_t as)
{
	if (a->npath && a->path[0] >> 16 == BGP_AS_SEQUENCE && (a->path[0] & 0xffff) < 255) {
		a->path = xrealloc(a->path, (a->npath + 1u) * 4u);
		memmove(a->path + 2, a->path + 1, (a->npath - 1u) * 4u);
		a->path[0]++;
		a->path[1] = as;
		a->npath++;
		return;
	}
	a->path = xrealloc(a->path, (a->npath + 2u) * 4u);
	memmove(a->path + 2, a->path, a->npath * 4u);
	a->path[0] = (uint32_t)BGP_AS_SEQUENCE << 16 | 1;
	a->path[1] = as;
	a->npath += 2;
}

const char *bgp_aspath_fmt(const struct bgp_attrs *a, char *buf, size_t size)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < a->npath;) {
		uint32_t type = a->path[i] >> 16, cnt = a->path[i] & 0xffff;
		bool set = type == BGP_AS_SET || type == BGP_AS_CONFED_SET;
		for (uint32_t k = 1; k <= cnt && i + k < a->npath; k++) {
			int w = snprintf(buf + used, size - used, "%s%s%u%s", used ? " " : "",
					 set && k == 1 ? "{" : "", a->path[i + k],
					 set && k == cnt ? "}" : "");
			if (w < 0 || (size_t)w >= size - used)
				return buf;
			used += (size_t)w;
		}
		i += 1 + cnt;
	}
	return buf;
}

/* ------------------------------------------------------------ UPDATE ---- */

static int parse_prefix(struct cur *c, int af, struct ipprefix *out)
{
	uint8_t len;
	if (!get8(c, &len) || len > ip_maxlen(af))
		return -1;
	size_t nb = (len + 7u) / 8u;
	struct cur v;
	if (!getn(c, nb, &v))
		return -1;
	memset(out, 0, sizeof(*out));
	out->addr.family = af;
	out->len = len;
	memcpy(out->addr.b, v.p, nb);
	prefix_normalize(out);
	return 0;
}

static int parse_prefixes(struct cur *c, int af, struct ipprefix **arr, size_t *n)
{
	while (c->n) {
		struct ipprefix p;
		if (parse_prefix(c, af, &p) < 0)
			return -1;
		if ((*n & (*n - 1)) == 0 || !*arr)
			*arr = xrealloc(*arr, (*n ? *n * 2 : 8) * sizeof(**arr));
		(*arr)[(*n)++] = p;
	}
	return 0;
}

static void taw(struct bgp_update *u, const char *why, uint8_t type)
{
	if (!u->treat_as_withdraw)
		snprintf(u->reason, sizeof(u->reason), "attribute %u: %s", type, why);
	u->treat_as_withdraw = true;
}

static void discard(struct bgp_update *u, const char *why, uint8_t type)
{
	if (!u->treat_as_withdraw && !u->attr_discarded)
		snprintf(u->reason, sizeof(u->reason), "attribute %u discarded: %s", type, why);
	u->attr_discarded = true;
}

static uint32_t *words(struct cur *v, size_t n)
{
	uint32_t *w = xmalloc(n * 4);
	for (size_t i = 0; i < n; i++)
		get32(v, &w[i]);
	return w;
}

static int parse_aspath(struct cur v, bool as4, struct bgp_attrs *a)
{
	size_t asz = as4 ? 4 : 2, words_n = 0;
	struct cur scan = v;
	while (scan.n) { /* validate and count first */
		uint8_t type, cnt;
		struct cur seg;
		if (!get8(&scan, &type) || !get8(&scan, &cnt) || type < 1 || type > 4 || !cnt ||
		    !getn(&scan, cnt * asz, &seg))
			return -1;
		words_n += 1u + cnt;
	}
	if (words_n > 0xffff)
		return -1;
	a->path = words_n ? xmalloc(words_n * 4) : NULL;
	a->npath = (uint16_t)words_n;
	size_t i = 0;
	while (v.n) {
		uint8_t type = 0, cnt = 0;
		get8(&v, &type), get8(&v, &cnt);
		a->path[i++] = (uint32_t)type << 16 | cnt;
		for (unsigned k = 0; k < cnt; k++) {
			uint32_t as = 0;
			uint16_t as2;
			if (as4)
				get32(&v, &as);
			else if (get16(&v, &as2))
				as = as2;
			a->path[i++] = as;
		}
	}
	return 0;
}

static int parse_mp_reach(struct cur v, struct bgp_update *u, struct bgp_err *e)
{
	uint16_t afi;
	uint8_t safi, nhlen, res;
	struct cur nh;
	if (!get16(&v, &afi) || !get8(&v, &safi) || !get8(&v, &nhlen) || !getn(&v, nhlen, &nh) ||
	    !get8(&v, &res))
		goto reset;
	int fam = fam_from_afi(afi, safi);
	if (fam < 0)
		return 0; /* a family we did not negotiate: ignore */
	int af = bgp_fam_af(fam);
	if (fam == BGP_FAM_V4 && nhlen == 4) {
		u->attrs.mp_nh.family = AF_INET;
		memcpy(u->attrs.mp_nh.b, nh.p, 4);
	} else if (fam == BGP_FAM_V6 && (nhlen == 16 || nhlen == 32)) {
		/* RFC 2545: global (+ link-local).  A peer with only a link-local address
		 * sends it alone, or as the second half behind ::; either way it ends up in
		 * mp_nh_ll and mp_nh stays unset. */
		struct ipaddr g = {.family = AF_INET6};
		memcpy(g.b, nh.p, 16);
		if (nhlen == 32) {
			u->attrs.mp_nh_ll.family = AF_INET6;
			memcpy(u->attrs.mp_nh_ll.b, nh.p + 16, 16);
		}
		if (IN6_IS_ADDR_LINKLOCAL(&g.v6)) {
			if (nhlen == 16 || !IN6_IS_ADDR_LINKLOCAL(&u->attrs.mp_nh_ll.v6))
				u->attrs.mp_nh_ll = g;
		} else if (!IN6_IS_ADDR_UNSPECIFIED(&g.v6)) {
			u->attrs.mp_nh = g;
		}
	} else {
		taw(u, "bad MP_REACH next hop length", BGP_ATTR_MP_REACH);
	}
	if (parse_prefixes(&v, af, &u->nlri, &u->nnlri) < 0)
		goto reset;
	return 0;
reset:
	err_set(e, BGP_ERR_UPDATE, BGP_UPD_OPT_ATTR, NULL, 0);
	return -1;
}

static int parse_mp_unreach(struct cur v, struct bgp_update *u, struct bgp_err *e, bool *eor)
{
	uint16_t afi;
	uint8_t safi;
	if (!get16(&v, &afi) || !get8(&v, &safi)) {
		err_set(e, BGP_ERR_UPDATE, BGP_UPD_OPT_ATTR, NULL, 0);
		return -1;
	}
	int fam = fam_from_afi(afi, safi);
	if (fam < 0)
		return 0;
	if (!v.n) {
		*eor = true;
		u->eor_fam = fam;
	}
	if (parse_prefixes(&v, bgp_fam_af(fam), &u->withdrawn, &u->nwithdrawn) < 0) {
		err_set(e, BGP_ERR_UPDATE, BGP_UPD_OPT_ATTR, NULL, 0);
		return -1;
	}
	return 0;
}

/* Expected optional/transitive bits of the attributes twill knows. */
static int expected_flags(uint8_t type)
{
	switch (type) {
	case BGP_ATTR_ORIGIN:
	case BGP_ATTR_AS_PATH:
	case BGP_ATTR_NEXT_HOP:
	case BGP_ATTR_LOCAL_PREF:
	case BGP_ATTR_ATOMIC_AGGREGATE:
		return BGP_AF_TRANSITIVE;
	case BGP_ATTR_MED:
	case BGP_ATTR_ORIGINATOR_ID:
	case BGP_ATTR_CLUSTER_LIST:
	case BGP_ATTR_MP_REACH:
	case BGP_ATTR_MP_UNREACH:
		return BGP_AF_OPTIONAL;
	case BGP_ATTR_AGGREGATOR:
	case BGP_ATTR_COMMUNITIES:
	case BGP_ATTR_LARGE_COMMUNITIES:
	case BGP_ATTR_AS4_PATH:
	case BGP_ATTR_AS4_AGGREGATOR:
		return BGP_AF_OPTIONAL | BGP_AF_TRANSITIVE;
	default:
		return -1;
	}
}

static void keep_unknown(struct bgp_attrs *a, uint8_t flags, uint8_t type, struct cur v)
{
	size_t hl = v.n > 255 ? 4 : 3, add = hl + v.n;
	if (a->unknown_len + add > 0xffff)
		return;
	a->unknown = xrealloc(a->unknown, a->unknown_len + add);
	uint8_t *p = a->unknown + a->unknown_len;
	p[0] = (uint8_t)((flags | BGP_AF_PARTIAL) & ~BGP_AF_EXTLEN) | (hl == 4 ? BGP_AF_EXTLEN : 0);
	p[1] = type;
	if (hl == 4)
		p[2] = (uint8_t)(v.n >> 8), p[3] = (uint8_t)v.n;
	else
		p[2] = (uint8_t)v.n;
	memcpy(p + hl, v.p, v.n);
	a->unknown_len = (uint16_t)(a->unknown_len + add);
}

/* AS4_PATH and AS4_AGGREGATOR from a 2-octet (OLD) speaker, merged after the whole
 * attribute list is read (RFC 6793 §4.2.3). */
struct as4_info {
	bool has_path, has_agg;
	struct bgp_attrs path; /* only path/npath used */
	uint32_t agg_as, agg_id;
};

/* RFC 6793 §3: AS4_PATH carries no confederation segments; a receiver drops them and keeps
 * the rest. */
static void drop_confed(struct bgp_attrs *p)
{
	size_t o = 0;
	for (size_t i = 0; i < p->npath;) {
		uint32_t type = p->path[i] >> 16, cnt = p->path[i] & 0xffff;
		if (type == BGP_AS_SEQUENCE || type == BGP_AS_SET) {
			memmove(p->path + o, p->path + i, (1 + cnt) * 4u);
			o += 1 + cnt;
		}
		i += 1 + cnt;
	}
	p->npath = (uint16_t)o;
}

/* AS4_PATH / AS4_AGGREGATOR: ignored from a NEW (4-octet) speaker (§4.1), kept for the merge
 * from an OLD one; malformed ones are discarded (RFC 6793 §6, RFC 7606 §7.1). */
static void parse_as4_attr(uint8_t type, bool flags_ok, struct cur v, bool as4,
			   struct bgp_update *u, struct as4_info *x)
{
	if (as4)
		return;
	if (type == BGP_ATTR_AS4_AGGREGATOR) {
		if (!flags_ok || v.n != 8) {
			discard(u, "bad AS4_AGGREGATOR", type);
			return;
		}
		get32(&v, &x->agg_as), get32(&v, &x->agg_id);
		x->has_agg = true;
		return;
	}
	if (!flags_ok || parse_aspath(v, true, &x->path) < 0) {
		bgp_attrs_clear(&x->path);
		discard(u, "malformed AS4_PATH", type);
		return;
	}
	drop_confed(&x->path);
	x->has_path = true;
}

/* RFC 6793 §4.2.3: the path of an OLD speaker's UPDATE from its AS_PATH (with AS_TRANS for
 * 4-octet ASes) and AS4_PATH: the leading ASes of AS_PATH that AS4_PATH does not cover
 * (confederation segments count 0, an AS_SET 1), then AS4_PATH. */
static void as4_merge(struct bgp_attrs *a, struct as4_info *x)
{
	if (x->has_agg && (a->has & BGP_A_AGGREGATOR)) {
		if (a->aggregator_as != BGP_AS_TRANS)
			return; /* AGGREGATOR's AS is real: AS4_AGGREGATOR and AS4_PATH ignored */
		a->aggregator_as = x->agg_as;
		a->aggregator_id = x->agg_id;
	}
	if (!x->has_path)
		return;
	unsigned n2 = bgp_aspath_len(a), n4 = bgp_aspath_len(&x->path);
	if (n2 < n4)
		return; /* AS4_PATH longer than AS_PATH: ignored */
	unsigned need = n2 - n4;
	if ((size_t)a->npath + x->path.npath > 0xffff)
		return; /* cannot be: a message is at most 4096 bytes */
	uint32_t *m = xmalloc(((size_t)a->npath + x->path.npath + 1) * 4u);
	size_t o = 0;
	bool lead = true; /* confederation segments at the front are kept */
	for (size_t i = 0; i < a->npath;) {
		uint32_t type = a->path[i] >> 16, cnt = a->path[i] & 0xffff, take;
		bool confed = type == BGP_AS_CONFED_SEQUENCE || type == BGP_AS_CONFED_SET;
		if (confed)
			take = lead || need ? cnt : 0;
		else if (type == BGP_AS_SET)
			take = need ? cnt : 0;
		else
			take = cnt < need ? cnt : need;
		if (!confed) {
			lead = false;
			need -= type == BGP_AS_SET ? (take ? 1 : 0) : take;
		}
		if (take) {
			m[o++] = type << 16 | take;
			memcpy(m + o, a->path + i + 1, take * 4u);
			o += take;
		}
		i += 1 + cnt;
	}
	memcpy(m + o, x->path.path, x->path.npath * 4u);
	o += x->path.npath;
	free(a->path);
	a->path = o ? m : NULL;
	a->npath = (uint16_t)o;
	if (!o)
		free(m);
}

/* One attribute.  0 (perhaps marking treat-as-withdraw or discard) or -1 (reset). */
static int parse_attr(uint8_t flags, uint8_t type, struct cur v, bool as4, struct bgp_update *u,
		      struct bgp_err *e, bool *eor_attr, struct as4_info *x)
{
	struct bgp_attrs *a = &u->attrs;
	int want = expected_flags(type);
	if (want < 0) {
		if (!(flags & BGP_AF_OPTIONAL)) {
			uint8_t d[2] = {flags, type};
			err_set(e, BGP_ERR_UPDATE, BGP_UPD_UNRECOGNIZED_WK, d, 2);
			return -1;
		}
		if (flags & BGP_AF_TRANSITIVE)
			keep_unknown(a, flags, type, v);
		return 0;
	}
	bool flags_ok = (flags & (BGP_AF_OPTIONAL | BGP_AF_TRANSITIVE)) == want;
	switch (type) {
	case BGP_ATTR_ORIGIN:
		a->has |= BGP_A_ORIGIN;
		if (!flags_ok || v.n != 1 || v.p[0] > 2)
			taw(u, "bad ORIGIN", type);
		else
			a->origin = v.p[0];
		return 0;
	case BGP_ATTR_AS_PATH:
		a->has |= BGP_A_AS_PATH;
		if (!flags_ok || parse_aspath(v, as4, a) < 0)
			taw(u, "malformed AS_PATH", type);
		return 0;
	case BGP_ATTR_NEXT_HOP:
		a->has |= BGP_A_NEXT_HOP;
		if (!flags_ok || v.n != 4) {
			taw(u, "bad NEXT_HOP", type);
			return 0;
		}
		a->nh.family = AF_INET;
		memcpy(a->nh.b, v.p, 4);
		return 0;
	case BGP_ATTR_MED:
		if (!flags_ok || v.n != 4)
			taw(u, "bad MULTI_EXIT_DISC", type);
		else if (get32(&v, &a->med))
			a->has |= BGP_A_MED;
		return 0;
	case BGP_ATTR_LOCAL_PREF:
		if (!flags_ok || v.n != 4)
			taw(u, "bad LOCAL_PREF", type);
		else if (get32(&v, &a->local_pref))
			a->has |= BGP_A_LOCAL_PREF;
		return 0;
	case BGP_ATTR_ATOMIC_AGGREGATE:
		if (!flags_ok || v.n != 0)
			discard(u, "bad ATOMIC_AGGREGATE", type);
		else
			a->has |= BGP_A_ATOMIC_AGG;
		return 0;
	case BGP_ATTR_AGGREGATOR: {
		uint16_t as2;
		if (!flags_ok || v.n != (as4 ? 8u : 6u)) {
			discard(u, "bad AGGREGATOR", type);
			return 0;
		}
		if (as4)
			get32(&v, &a->aggregator_as);
		else if (get16(&v, &as2))
			a->aggregator_as = as2;
		get32(&v, &a->aggregator_id);
		a->has |= BGP_A_AGGREGATOR;
		return 0;
	}
	case BGP_ATTR_COMMUNITIES:
		if (!flags_ok || !v.n || v.n % 4 || v.n / 4 > 0xffff) {
			taw(u, "bad COMMUNITIES", type);
			return 0;
		}
		a->ncomm = (uint16_t)(v.n / 4);
		a->comm = words(&v, a->ncomm);
		return 0;
	case BGP_ATTR_LARGE_COMMUNITIES:
		if (!flags_ok || !v.n || v.n % 12) {
			taw(u, "bad LARGE_COMMUNITIES", type);
			return 0;
		}
		a->nlcomm = (uint16_t)(v.n / 12);
		a->lcomm = words(&v, a->nlcomm * 3u);
		return 0;
	case BGP_ATTR_ORIGINATOR_ID:
		if (!flags_ok || v.n != 4)
			taw(u, "bad ORIGINATOR_ID", type);
		else if (get32(&v, &a->originator_id))
			a->has |= BGP_A_ORIGINATOR;
		return 0;
	case BGP_ATTR_CLUSTER_LIST:
		if (!flags_ok || !v.n || v.n % 4) {
			taw(u, "bad CLUSTER_LIST", type);
			return 0;
		}
		a->ncluster = (uint16_t)(v.n / 4);
		a->cluster = words(&v, a->ncluster);
		return 0;
	case BGP_ATTR_MP_REACH:
		return parse_mp_reach(v, u, e);
	case BGP_ATTR_MP_UNREACH:
		return parse_mp_unreach(v, u, e, eor_attr);
	case BGP_ATTR_AS4_PATH:
	case BGP_ATTR_AS4_AGGREGATOR:
		parse_as4_attr(type, flags_ok, v, as4, u, x);
		return 0;
	}
	return 0;
}

int bgp_update_parse(const uint8_t *body, size_t len, bool as4, struct bgp_update *u,
		     struct bgp_err *e)
{
	struct cur c = {body, len}, wd, attrs;
	uint16_t wlen, alen;
	memset(u, 0, sizeof(*u));
	u->eor_fam = -1;
	if (!get16(&c, &wlen) || !getn(&c, wlen, &wd) || !get16(&c, &alen) ||
	    !getn(&c, alen, &attrs)) {
		err_set(e, BGP_ERR_UPDATE, BGP_UPD_MALFORMED_ATTRS, NULL, 0);
		return -1;
	}
	if (parse_prefixes(&wd, AF_INET, &u->withdrawn, &u->nwithdrawn) < 0) {
		err_set(e, BGP_ERR_UPDATE, BGP_UPD_NETWORK, NULL, 0);
		goto fail;
	}
	if (wlen == 0 && alen == 0 && c.n == 0) {
		u->eor_fam = BGP_FAM_V4;
		return 0;
	}
	uint8_t seen[32] = {0};
	size_t nattrs = 0;
	bool eor_attr = false;
	struct as4_info x;
	memset(&x, 0, sizeof(x));
	while (attrs.n) {
		uint8_t flags, type, l8;
		uint16_t l16;
		size_t alen1;
		if (!get8(&attrs, &flags) || !get8(&attrs, &type)) {
			taw(u, "truncated attribute header", 0);
			break;
		}
		if (flags & BGP_AF_EXTLEN) {
			if (!get16(&attrs, &l16)) {
				taw(u, "truncated attribute length", type);
				break;
			}
			alen1 = l16;
		} else {
			if (!get8(&attrs, &l8)) {
				taw(u, "truncated attribute length", type);
				break;
			}
			alen1 = l8;
		}
		struct cur v;
		if (!getn(&attrs, alen1, &v)) {
			/* RFC 7606 §4: an overrun of the attribute block is treat-as-withdraw */
			taw(u, "attribute length overruns the path attributes", type);
			break;
		}
		nattrs++;
		if (seen[type / 8] & (1u << (type % 8))) {
			if (type == BGP_ATTR_MP_REACH || type == BGP_ATTR_MP_UNREACH) {
				err_set(e, BGP_ERR_UPDATE, BGP_UPD_MALFORMED_ATTRS, NULL, 0);
				goto fail;
			}
			discard(u, "repeated", type); /* RFC 7606 §3 g: keep the first */
			continue;
		}
		seen[type / 8] |= (uint8_t)(1u << (type % 8));
		if (parse_attr(flags, type, v, as4, u, e, &eor_attr, &x) < 0) {
			bgp_attrs_clear(&x.path);
			goto fail;
		}
	}
	if (u->attrs.has & BGP_A_AS_PATH)
		as4_merge(&u->attrs, &x);
	bgp_attrs_clear(&x.path);
	size_t classic_from = u->nnlri;
	if (parse_prefixes(&c, AF_INET, &u->nlri, &u->nnlri) < 0) {
		err_set(e, BGP_ERR_UPDATE, BGP_UPD_NETWORK, NULL, 0);
		goto fail;
	}
	if (!(eor_attr && nattrs == 1 && !u->nnlri && !u->nwithdrawn))
		u->eor_fam = -1;
	if (u->nnlri) {
		/* RFC 7606 §3 d: missing well-known mandatory attributes */
		const uint32_t need = BGP_A_ORIGIN | BGP_A_AS_PATH;
		if ((u->attrs.has & need) != need)
			taw(u, "missing ORIGIN or AS_PATH", 0);
		if (u->nnlri > classic_from && !(u->attrs.has & BGP_A_NEXT_HOP))
			taw(u, "missing NEXT_HOP", 0);
	}
	if (u->treat_as_withdraw) {
		u->withdrawn = xrealloc(u->withdrawn, (u->nwithdrawn + u->nnlri + 1) * sizeof(*u->withdrawn));
		memcpy(u->withdrawn + u->nwithdrawn, u->nlri, u->nnlri * sizeof(*u->nlri));
		u->nwithdrawn += u->nnlri;
		free(u->nlri);
		u->nlri = NULL;
		u->nnlri = 0;
	}
	return 0;
fail:
	bgp_update_free(u);
	u->eor_fam = -1;
	return -1;
}

void bgp_update_free(struct bgp_update *u)
{
	free(u->withdrawn);
	free(u->nlri);
	bgp_attrs_clear(&u->attrs);
	u->withdrawn = u->nlri = NULL;
	u->nwithdrawn = u->nnlri = 0;
}

static void put_attr_hdr(struct wbuf *w, uint8_t flags, uint8_t type, size_t len)
{
	if (len > 255) {
		put8(w, flags | BGP_AF_EXTLEN), put8(w, type), put16(w, (uint16_t)len);
	} else {
		put8(w, flags), put8(w, type), put8(w, (uint8_t)len);
	}
}

static void put_prefix(struct wbuf *w, const struct ipprefix *p)
{
	put8(w, p->len);
	putn(w, p->addr.b, (p->len + 7u) / 8u);
}

static size_t prefix_wire_len(const struct ipprefix *p)
{
	return 1 + (p->len + 7u) / 8u;
}

static bool is_confed(uint32_t seg)
{
	return seg >> 16 == BGP_AS_CONFED_SEQUENCE || seg >> 16 == BGP_AS_CONFED_SET;
}

/* AS_PATH (as4: 4-octet ASes; else 2-octet with AS_TRANS), or with as4_path the AS4_PATH
 * an OLD peer gets beside it: 4-octet, no confederation segments (RFC 6793 §4.2.2). */
static void put_aspath_attr(struct wbuf *w, const struct bgp_attrs *a, bool as4, bool as4_path)
{
	size_t len = 0;
	for (size_t i = 0; i < a->npath;) {
		uint32_t cnt = a->path[i] & 0xffff;
		if (!as4_path || !is_confed(a->path[i]))
			len += 2 + cnt * (as4 ? 4u : 2u);
		i += 1 + cnt;
	}
	if (as4_path)
		put_attr_hdr(w, BGP_AF_OPTIONAL | BGP_AF_TRANSITIVE, BGP_ATTR_AS4_PATH, len);
	else
		put_attr_hdr(w, BGP_AF_TRANSITIVE, BGP_ATTR_AS_PATH, len);
	for (size_t i = 0; i < a->npath;) {
		uint32_t cnt = a->path[i] & 0xffff;
		if (as4_path && is_confed(a->path[i])) {
			i += 1 + cnt;
			continue;
		}
		put8(w, (uint8_t)(a->path[i] >> 16)), put8(w, (uint8_t)cnt);
		for (uint32_t k = 1; k <= cnt && i + k < a->npath; k++) {
			uint32_t as = a->path[i + k];
			if (as4)
				put32(w, as);
			else
				put16(w, as > 0xffff ? BGP_AS_TRANS : (uint16_t)as);
		}
		i += 1 + cnt;
	}
}

static void put_words_attr(struct wbuf *w, uint8_t flags, uint8_t type, const uint32_t *v, size_t n)
{
	if (!n)
		return;
	put_attr_hdr(w, flags, type, n * 4);
	for (size_t i = 0; i < n; i++)
		put32(w, v[i]);
}

/* An AS number that does not fit in 2 octets outside confederation segments: an OLD peer
 * then needs AS4_PATH. */
static bool path_needs_as4(const struct bgp_attrs *a)
{
	for (size_t i = 0; i < a->npath;) {
		uint32_t cnt = a->path[i] & 0xffff;
		for (uint32_t k = 1; k <= cnt && i + k < a->npath && !is_confed(a->path[i]); k++)
			if (a->path[i + k] > 0xffff)
				return true;
		i += 1 + cnt;
	}
	return false;
}

/* Attributes common to every family (everything but NEXT_HOP and MP_REACH). */
static void put_common_attrs(struct wbuf *w, const struct bgp_attrs *a, bool as4)
{
	put_attr_hdr(w, BGP_AF_TRANSITIVE, BGP_ATTR_ORIGIN, 1);
	put8(w, a->origin);
	put_aspath_attr(w, a, as4, false);
	if (a->has & BGP_A_MED) {
		put_attr_hdr(w, BGP_AF_OPTIONAL, BGP_ATTR_MED, 4);
		put32(w, a->med);
	}
	if (a->has & BGP_A_LOCAL_PREF) {
		put_attr_hdr(w, BGP_AF_TRANSITIVE, BGP_ATTR_LOCAL_PREF, 4);
		put32(w, a->local_pref);
	}
	if (a->has & BGP_A_ATOMIC_AGG)
		put_attr_hdr(w, BGP_AF_TRANSITIVE, BGP_ATTR_ATOMIC_AGGREGATE, 0);
	if (a->has & BGP_A_AGGREGATOR) {
		put_attr_hdr(w, BGP_AF_OPTIONAL | BGP_AF_TRANSITIVE, BGP_ATTR_AGGREGATOR,
			     as4 ? 8 : 6);
		if (as4)
			put32(w, a->aggregator_as);
		else
			put16(w, a->aggregator_as > 0xffff ? BGP_AS_TRANS
							   : (uint16_t)a->aggregator_as);
		put32(w, a->aggregator_id);
	}
	put_words_attr(w, BGP_AF_OPTIONAL | BGP_AF_TRANSITIVE, BGP_ATTR_COMMUNITIES, a->comm,
		       a->ncomm);
	if (a->has & BGP_A_ORIGINATOR) {
		put_attr_hdr(w, BGP_AF_OPTIONAL, BGP_ATTR_ORIGINATOR_ID, 4);
		put32(w, a->originator_id);
	}
	put_words_attr(w, BGP_AF_OPTIONAL, BGP_ATTR_CLUSTER_LIST, a->cluster, a->ncluster);
	if (!as4 && path_needs_as4(a))
		put_aspath_attr(w, a, true, true);
	if (!as4 && (a->has & BGP_A_AGGREGATOR) && a->aggregator_as > 0xffff) {
		put_attr_hdr(w, BGP_AF_OPTIONAL | BGP_AF_TRANSITIVE, BGP_ATTR_AS4_AGGREGATOR, 8);
		put32(w, a->aggregator_as);
		put32(w, a->aggregator_id);
	}
	put_words_attr(w, BGP_AF_OPTIONAL | BGP_AF_TRANSITIVE, BGP_ATTR_LARGE_COMMUNITIES, a->lcomm,
		       a->nlcomm * 3u);
	putn(w, a->unknown, a->unknown_len);
}

size_t bgp_update_build(uint8_t *buf, size_t size, const struct bgp_attrs *a, bool as4, int fam,
			const struct ipprefix *p, size_t n, size_t *used)
{
	struct wbuf w = {buf, size < BGP_MAX_LEN ? size : BGP_MAX_LEN, 0, false};
	*used = 0;
	hdr_start(&w, BGP_UPDATE);
	put16(&w, 0); /* no withdrawn routes */
	size_t alen_at = w.len;
	put16(&w, 0);
	put_common_attrs(&w, a, as4);
	if (fam == BGP_FAM_V4) {
		put_attr_hdr(&w, BGP_AF_TRANSITIVE, BGP_ATTR_NEXT_HOP, 4);
		putn(&w, a->nh.b, 4);
		if (w.overflow)
			return 0;
		set16(&w, alen_at, (uint16_t)(w.len - alen_at - 2));
		while (*used < n && w.len + prefix_wire_len(&p[*used]) <= w.size) {
			put_prefix(&w, &p[*used]);
			(*used)++;
		}
	} else {
		bool ll = ip_is_set(&a->mp_nh_ll), global = ip_is_set(&a->mp_nh);
		size_t hdr_at = w.len;
		put_attr_hdr(&w, BGP_AF_OPTIONAL, BGP_ATTR_MP_REACH, 256); /* ext length, fixed up */
		size_t val_at = w.len;
		put16(&w, BGP_AFI_IPV6), put8(&w, BGP_SAFI_UNICAST);
		put8(&w, ll && global ? 32 : 16);
		putn(&w, global || !ll ? a->mp_nh.b : a->mp_nh_ll.b, 16);
		if (ll && global)
			putn(&w, a->mp_nh_ll.b, 16);
		put8(&w, 0);
		while (*used < n && w.len + prefix_wire_len(&p[*used]) <= w.size) {
			put_prefix(&w, &p[*used]);
			(*used)++;
		}
		if (w.overflow)
			return 0;
		set16(&w, hdr_at + 2, (uint16_t)(w.len - val_at));
		set16(&w, alen_at, (uint16_t)(w.len - alen_at - 2));
	}
	if (!*used && n)
		return 0;
	return hdr_finish(&w);
}

size_t bgp_withdraw_build(uint8_t *buf, size_t size, int fam, const struct ipprefix *p, size_t n,
			  size_t *used)
{
	struct wbuf w = {buf, size < BGP_MAX_LEN ? size : BGP_MAX_LEN, 0, false};
	*used = 0;
	hdr_start(&w, BGP_UPDATE);
	if (fam == BGP_FAM_V4) {
		size_t wl_at = w.len;
		put16(&w, 0);
		while (*used < n && w.len + prefix_wire_len(&p[*used]) + 2 <= w.size) {
			put_prefix(&w, &p[*used]);
			(*used)++;
		}
		set16(&w, wl_at, (uint16_t)(w.len - wl_at - 2));
		put16(&w, 0);
	} else {
		put16(&w, 0);
		size_t alen_at = w.len;
		put16(&w, 0);
		size_t hdr_at = w.len;
		put_attr_hdr(&w, BGP_AF_OPTIONAL, BGP_ATTR_MP_UNREACH, n ? 256 : 3);
		size_t val_at = w.len;
		put16(&w, BGP_AFI_IPV6), put8(&w, BGP_SAFI_UNICAST);
		while (*used < n && w.len + prefix_wire_len(&p[*used]) <= w.size) {
			put_prefix(&w, &p[*used]);
			(*used)++;
		}
		if (w.overflow)
			return 0;
		if (n)
			set16(&w, hdr_at + 2, (uint16_t)(w.len - val_at));
		set16(&w, alen_at, (uint16_t)(w.len - alen_at - 2));
	}
	return hdr_finish(&w);
}

/* -------------------------------------------------------- the others ---- */

size_t bgp_keepalive_build(uint8_t *buf, size_t size)
{
	struct wbuf w = {buf, size, 0, false};
	hdr_start(&w, BGP_KEEPALIVE);
	return hdr_finish(&w);
}

size_t bgp_notification_build(uint8_t *buf, size_t size, const struct bgp_err *e)
{
	struct wbuf w = {buf, size, 0, false};
	hdr_start(&w, BGP_NOTIFICATION);
	put8(&w, e->code), put8(&w, e->subcode);
	putn(&w, e->data, e->len);
	return hdr_finish(&w);
}

int bgp_notification_parse(const uint8_t *body, size_t len, struct bgp_err *e)
{
	if (len < 2)
		return -1;
	err_set(e, body[0], body[1], body + 2, len - 2);
	return 0;
}

size_t bgp_refresh_build(uint8_t *buf, size_t size, int fam)
{
	struct wbuf w = {buf, size, 0, false};
	hdr_start(&w, BGP_REFRESH);
	put16(&w, fam_afi(fam)), put8(&w, 0), put8(&w, BGP_SAFI_UNICAST);
	return hdr_finish(&w);
}

int bgp_refresh_parse(const uint8_t *body, size_t len, int *fam, struct bgp_err *e)
{
	struct cur c = {body, len};
	uint16_t afi;
	uint8_t res, safi;
	if (len != 4 || !get16(&c, &afi) || !get8(&c, &res) || !get8(&c, &safi)) {
		err_set(e, BGP_ERR_HEADER, BGP_HDR_LENGTH, NULL, 0);
		return -1;
	}
	*fam = fam_from_afi(afi, safi);
	return 0;
}
