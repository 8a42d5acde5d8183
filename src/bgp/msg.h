/* bgp/msg: the BGP-4 wire format, parsed and built without any I/O.
 *
 * RFC 4271 (header, OPEN, UPDATE, NOTIFICATION, KEEPALIVE), RFC 5492 capabilities,
 * RFC 4760 multiprotocol IPv4/IPv6 unicast (MP_REACH/MP_UNREACH, IPv6 global and
 * link-local next hops: a link-local-only one lands in mp_nh_ll with mp_nh unset), RFC 6793
 * 4-octet AS numbers (with a 2-octet peer: AS_PATH/AGGREGATOR carry AS_TRANS and twill adds
 * AS4_PATH/AS4_AGGREGATOR; what such a peer sends is merged back per §4.2.3, a malformed
 * AS4_PATH or AS4_AGGREGATOR is discarded), RFC 2918 ROUTE-REFRESH, RFC 4724
 * graceful restart capability and End-of-RIB, RFC 1997 communities, RFC 8092 large
 * communities, RFC 4456 ORIGINATOR_ID/CLUSTER_LIST.
 *
 * Errors follow RFC 7606: a parse either succeeds, succeeds with `treat_as_withdraw`
 * set (the UPDATE's routes are withdrawn instead of installed), drops a bad attribute
 * (`attr_discarded`), or fails with the NOTIFICATION (code, subcode, data) the session
 * must send before it resets.  Every read goes through a bounds-checked cursor. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/ip.h"

#define BGP_HDR_LEN 19
#define BGP_MAX_LEN 4096
#define BGP_PORT 179
#define BGP_AS_TRANS 23456

enum bgp_type {
	BGP_OPEN = 1,
	BGP_UPDATE = 2,
	BGP_NOTIFICATION = 3,
	BGP_KEEPALIVE = 4,
	BGP_REFRESH = 5,
};

#define BGP_AFI_IPV4 1
#define BGP_AFI_IPV6 2
#define BGP_SAFI_UNICAST 1
/* index into per-family arrays: 0 = IPv4 unicast, 1 = IPv6 unicast */
#define BGP_FAM_V4 0
#define BGP_FAM_V6 1
#define BGP_NFAM 2
int bgp_fam_of(int af);	   /* AF_INET -> BGP_FAM_V4, AF_INET6 -> BGP_FAM_V6 */
int bgp_fam_af(int fam);   /* BGP_FAM_V4 -> AF_INET ... */

/* NOTIFICATION error codes (RFC 4271 §4.5) and the subcodes twill sends */
enum {
	BGP_ERR_HEADER = 1,
	BGP_ERR_OPEN = 2,
	BGP_ERR_UPDATE = 3,
	BGP_ERR_HOLD = 4,
	BGP_ERR_FSM = 5,
	BGP_ERR_CEASE = 6,
	BGP_ERR_REFRESH = 7, /* RFC 7313: invalid message length */
};
enum {
	BGP_HDR_SYNC = 1,
	BGP_HDR_LENGTH = 2,
	BGP_HDR_TYPE = 3,
	BGP_OPEN_VERSION = 1,
	BGP_OPEN_PEER_AS = 2,
	BGP_OPEN_BGP_ID = 3,
	BGP_OPEN_OPT_PARAM = 4,
	BGP_OPEN_HOLD = 6,
	BGP_OPEN_CAPABILITY = 7, /* RFC 5492 */
	BGP_UPD_MALFORMED_ATTRS = 1,
	BGP_UPD_UNRECOGNIZED_WK = 2,
	BGP_UPD_MISSING_WK = 3,
	BGP_UPD_ATTR_FLAGS = 4,
	BGP_UPD_ATTR_LENGTH = 5,
	BGP_UPD_ORIGIN = 6,
	BGP_UPD_NEXT_HOP = 8,
	BGP_UPD_OPT_ATTR = 9,
	BGP_UPD_NETWORK = 10,
	BGP_UPD_AS_PATH = 11,
	BGP_CEASE_MAX_PREFIX = 1,
	BGP_CEASE_SHUTDOWN = 2,
	BGP_CEASE_PEER_DECONFIG = 3,
	BGP_CEASE_RESET = 4,
	BGP_CEASE_REJECTED = 5,
	BGP_CEASE_CONFIG_CHANGE = 6,
	BGP_CEASE_COLLISION = 7,
};

/* What the receiver of a bad message must send (and then reset the session). */
struct bgp_err {
	uint8_t code, subcode;
	uint16_t len;
	uint8_t data[64];
};
const char *bgp_err_str(uint8_t code, uint8_t subcode); /* "UPDATE: malformed AS_PATH" */

/* ---- header ---- */
/* Check a header; *type and *len (whole message, header included) on success.
 * 0, or -1 with e set (marker, length out of 19..4096 or wrong for the type, type). */
int bgp_hdr_parse(const uint8_t *buf, size_t avail, uint8_t *type, uint16_t *len, struct bgp_err *e);

/* ---- OPEN ---- */
struct bgp_open {
	uint8_t version;
	uint32_t as;   /* the 4-octet AS capability's value when present, else My AS */
	uint16_t hold; /* seconds, 0 or >= 3 */
	uint32_t id;   /* BGP Identifier, host order */
	bool as4;      /* 4-octet AS capability */
	bool refresh;  /* route refresh capability (2 or the old 128) */
	bool mp[BGP_NFAM];   /* multiprotocol unicast per family */
	bool mp_any;	     /* any multiprotocol capability was present */
	bool gr;	     /* graceful restart capability */
	bool gr_restarting;  /* R bit */
	uint16_t gr_time;    /* restart time, seconds (12 bits) */
	bool gr_fam[BGP_NFAM], gr_fwd[BGP_NFAM]; /* families and their F bit */
};
/* body = the message after the header. */
int bgp_open_parse(const uint8_t *body, size_t len, struct bgp_open *o, struct bgp_err *e);
/* Whole message (header included) into buf; returns its length or 0 if size is too small. */
size_t bgp_open_build(uint8_t *buf, size_t size, const struct bgp_open *o);

/* ---- path attributes ---- */
enum {
	BGP_ATTR_ORIGIN = 1,
	BGP_ATTR_AS_PATH = 2,
	BGP_ATTR_NEXT_HOP = 3,
	BGP_ATTR_MED = 4,
	BGP_ATTR_LOCAL_PREF = 5,
	BGP_ATTR_ATOMIC_AGGREGATE = 6,
	BGP_ATTR_AGGREGATOR = 7,
	BGP_ATTR_COMMUNITIES = 8,
	BGP_ATTR_ORIGINATOR_ID = 9,
	BGP_ATTR_CLUSTER_LIST = 10,
	BGP_ATTR_MP_REACH = 14,
	BGP_ATTR_MP_UNREACH = 15,
	BGP_ATTR_AS4_PATH = 17,
	BGP_ATTR_AS4_AGGREGATOR = 18,
	BGP_ATTR_LARGE_COMMUNITIES = 32,
};
#define BGP_AF_OPTIONAL 0x80
#define BGP_AF_TRANSITIVE 0x40
#define BGP_AF_PARTIAL 0x20
#define BGP_AF_EXTLEN 0x10

enum { BGP_ORIGIN_IGP = 0, BGP_ORIGIN_EGP = 1, BGP_ORIGIN_INCOMPLETE = 2 };
enum { BGP_AS_SET = 1, BGP_AS_SEQUENCE = 2, BGP_AS_CONFED_SEQUENCE = 3, BGP_AS_CONFED_SET = 4 };

#define BGP_A_MED (1u << 0)
#define BGP_A_LOCAL_PREF (1u << 1)
#define BGP_A_ORIGINATOR (1u << 2)
#define BGP_A_ATOMIC_AGG (1u << 3)
#define BGP_A_AGGREGATOR (1u << 4)
#define BGP_A_ORIGIN (1u << 5)	 /* ORIGIN seen (parse) */
#define BGP_A_AS_PATH (1u << 6)	 /* AS_PATH seen (parse) */
#define BGP_A_NEXT_HOP (1u << 7) /* NEXT_HOP seen (parse) */

/* A decoded attribute set.  The AS path is stored as words: each segment is a header
 * word (type << 16 | count) followed by count AS numbers, always 4-octet.
 * Arrays are owned by the struct (bgp_attrs_clear frees them). */
struct bgp_attrs {
	uint32_t has; /* BGP_A_* */
	uint8_t origin;
	uint32_t med, local_pref, originator_id;
	uint32_t aggregator_as, aggregator_id;
	struct ipaddr nh;    /* NEXT_HOP (IPv4 routes) */
	struct ipaddr mp_nh, mp_nh_ll; /* MP_REACH next hop: global (+ IPv6 link-local) */
	uint16_t npath;	     /* words in path */
	uint32_t *path;
	uint16_t ncomm;
	uint32_t *comm;
	uint16_t nlcomm;     /* large communities: 3 words each */
	uint32_t *lcomm;
	uint16_t ncluster;
	uint32_t *cluster;
	uint16_t unknown_len; /* unrecognized optional transitive attributes, as on the wire */
	uint8_t *unknown;
	uint16_t nonly_to;    /* not on the wire: a local route goes only to the peers at */
	struct ipaddr *only_to; /* these addresses (none: to every peer) */
};
void bgp_attrs_clear(struct bgp_attrs *a);
void bgp_attrs_copy(struct bgp_attrs *dst, const struct bgp_attrs *src);
uint64_t bgp_attrs_hash(const struct bgp_attrs *a);
bool bgp_attrs_equal(const struct bgp_attrs *a, const struct bgp_attrs *b);
/* May a route with these attributes go to the peer at addr (only_to)? */
bool bgp_attrs_export_ok(const struct bgp_attrs *a, const struct ipaddr *addr);
/* AS path length for the decision process (a SET counts 1, confederation segments 0). */
unsigned bgp_aspath_len(const struct bgp_attrs *a);
bool bgp_aspath_contains(const struct bgp_attrs *a, uint32_t as);
uint32_t bgp_aspath_first(const struct bgp_attrs *a); /* neighbour AS, 0 if empty */
void bgp_aspath_prepend(struct bgp_attrs *a, uint32_t as);
/* "65002 65001" / "{1 2}" into buf */
const char *bgp_aspath_fmt(const struct bgp_attrs *a, char *buf, size_t size);

/* ---- UPDATE ---- */
struct bgp_update {
	size_t nwithdrawn;
	struct ipprefix *withdrawn; /* IPv4 withdrawn routes and MP_UNREACH prefixes */
	size_t nnlri;
	struct ipprefix *nlri;	    /* IPv4 NLRI (next hop: attrs.nh) and MP_REACH prefixes (attrs.mp_nh) */
	struct bgp_attrs attrs;
	bool treat_as_withdraw;	    /* RFC 7606: withdraw nlri instead of installing them */
	bool attr_discarded;	    /* RFC 7606: an attribute was dropped */
	int eor_fam;		    /* End-of-RIB marker: BGP_FAM_V4/V6, or -1 */
	char reason[96];	    /* why treat-as-withdraw / discard, for the log */
};
/* as4: the session negotiated 4-octet AS numbers.  0 (possibly with treat_as_withdraw),
 * or -1 with e set: the session must send e and reset. */
int bgp_update_parse(const uint8_t *body, size_t len, bool as4, struct bgp_update *u,
		     struct bgp_err *e);
void bgp_update_free(struct bgp_update *u);

/* Build an UPDATE announcing prefixes of one family (all of family fam) with attributes a:
 * IPv4 with NEXT_HOP = a->nh, IPv6 in MP_REACH with a->mp_nh (+ a->mp_nh_ll when set).
 * As many prefixes as fit; *used gets how many.  Returns the message length (0: none fit). */
size_t bgp_update_build(uint8_t *buf, size_t size, const struct bgp_attrs *a, bool as4, int fam,
			const struct ipprefix *p, size_t n, size_t *used);
/* An UPDATE withdrawing prefixes of one family (n == 0: the End-of-RIB marker). */
size_t bgp_withdraw_build(uint8_t *buf, size_t size, int fam, const struct ipprefix *p, size_t n,
			  size_t *used);

/* ---- the others ---- */
size_t bgp_keepalive_build(uint8_t *buf, size_t size);
size_t bgp_notification_build(uint8_t *buf, size_t size, const struct bgp_err *e);
/* A NOTIFICATION body into e (data truncated to e->data). 0 or -1 (too short). */
int bgp_notification_parse(const uint8_t *body, size_t len, struct bgp_err *e);
size_t bgp_refresh_build(uint8_t *buf, size_t size, int fam);
/* ROUTE-REFRESH body: *fam (-1 for an AFI/SAFI we do not speak). 0, or -1 with e set. */
int bgp_refresh_parse(const uint8_t *body, size_t len, int *fam, struct bgp_err *e);
