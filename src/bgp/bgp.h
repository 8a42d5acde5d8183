/* bgp: twill's BGP-4 speaker, driven by the caller's event loop.
 *
 * One struct bgp holds the peers (RFC 4271 finite state machine with ConnectRetry, Hold
 * and Keepalive timers, active and passive opening, connection collision detection),
 * per peer an Adj-RIB-In (the paths in the RIB that came from it) and an Adj-RIB-Out
 * (what was last sent), the Loc-RIB with the RFC 4271 §9.1 decision process (iBGP/eBGP
 * rules, AS-path loop detection, RFC 4456 route reflection) and the kernel FIB: best
 * learned routes are installed through src/nl under TWILL_RTPROT_BGP, ECMP across
 * equally good paths, removed on withdraw and session loss.
 *
 * Graceful restart (RFC 4724): as helper, a peer that advertised the capability and
 * drops the TCP session keeps its routes (stale) until it re-sends them and End-of-RIB,
 * or until its restart time; as restarting speaker (cfg.graceful_restart), the kernel
 * routes of our protocol found at start are kept until every peer has sent End-of-RIB
 * (or restart_time passes), then the ones no longer learned are removed.
 *
 * The loop: add bgp_fd() (an epoll fd, readable when a socket is) to the caller's epoll
 * set; whenever it is readable or bgp_timeout_ms() has passed, call bgp_dispatch().
 * Nothing blocks; no threads.  Sockets: TCP MD5 (RFC 2385) per peer, GTSM (RFC 5082),
 * multihop TTL. */
#pragma once
#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bgp/msg.h"
#include "lib/ip.h"

struct bgp;

struct bgp_peer_cfg {
	char name[64];	     /* for logs and `twill bgp peers`; "" = the address */
	struct ipaddr addr;  /* the peer's address */
	uint32_t as;	     /* the peer's AS: == local AS is iBGP */
	struct ipaddr local; /* source address (family 0: the kernel chooses) */
	uint16_t port;	     /* the peer's TCP port, 0 = 179 */
	char password[81];   /* TCP MD5 key (RFC 2385), "" = none */
	bool passive;	     /* never connect, only accept */
	uint8_t multihop;    /* TTL of our packets; 0 = 1 for eBGP, 64 for iBGP */
	uint8_t ttl_security; /* GTSM: accept only TTL >= 256 - this (hops); 0 = off */
	bool rr_client;	     /* we reflect to this iBGP peer (RFC 4456) */
	bool next_hop_self;  /* also on iBGP for routes learned over eBGP */
	bool local_only;     /* announce only our own routes, none learned (a node to its router) */
	bool fam[BGP_NFAM];  /* families to negotiate; none set = the address's family */
	uint16_t hold_time;  /* 0 = the global value */
	uint16_t connect_retry; /* seconds; 0 = the global value */
	uint16_t restart_time;	/* graceful restart time advertised to it; 0 = the global */
	bool next_hop_keep;	/* eBGP: learned routes keep their next hop (not ours) */
	/* BFD (bfd.h, single hop): when its session goes from Up to Down, the BGP session is
	 * closed at once (Cease, subcode 10 "BFD Down", RFC 9384) and the peer's routes are
	 * removed, graceful restart or not (a dead path is no restart). */
	bool bfd;
	uint16_t bfd_tx_ms, bfd_rx_ms; /* 0 = 300 */
	uint8_t bfd_mult;	       /* 0 = 3 */
};

struct bgp_cfg {
	uint32_t as;
	uint32_t router_id;  /* host order; 0 = the lowest IPv4 peer-facing local address */
	uint32_t cluster_id; /* 0 = router_id (used when there are rr_client peers) */
	int listen_port;     /* 0 = 179, -1 = do not listen */
	struct ipaddr listen4, listen6; /* bind addresses (family 0 = any) */
	uint16_t hold_time;  /* 0 = 90 */
	uint16_t connect_retry; /* 0 = 5 seconds */
	bool install;	     /* install learned best routes into the kernel FIB */
	uint32_t table;	     /* 0 = main */
	uint8_t rt_proto;    /* 0 = TWILL_RTPROT_BGP */
	bool graceful_restart; /* restarting speaker: keep the FIB across our restart */
	uint16_t restart_time; /* seconds, 0 = 120 */
	struct ipaddr nh4, nh6; /* next hop we announce for a family the session is not of */
	uint16_t bfd_port;	/* BFD's UDP port, 0 = 3784 (tests use others) */
};

/* Extra attributes of an originated route. */
struct bgp_route_attrs {
	uint32_t local_pref; /* 0 = 100 */
	uint32_t med;
	bool has_med;
	size_t ncomm;
	const uint32_t *comm; /* RFC 1997 communities (asn << 16 | value) */
	size_t nlcomm;
	const uint32_t *lcomm; /* RFC 8092: 3 words each */
	size_t nonly_to;
	const struct ipaddr *only_to; /* announce only to the peers at these addresses */
};

/* NULL + errno (listen socket, netlink). */
struct bgp *bgp_new(const struct bgp_cfg *cfg);
/* Cease to every peer; kernel routes stay when graceful_restart is set, else go. */
void bgp_free(struct bgp *b);
/* Replace the peer set: peers are matched by address; new ones start, removed ones get a
 * Cease (peer de-configured), changed ones restart.  A bad peer entry is skipped with its
 * error (see bgp_state) and the others keep running; returns the number of bad entries. */
int bgp_set_peers(struct bgp *b, const struct bgp_peer_cfg *peers, size_t n);
/* Announce / stop announcing a local route (attrs may be NULL). 0 or -EINVAL. */
int bgp_originate(struct bgp *b, const struct ipprefix *p, const struct bgp_route_attrs *ra);
int bgp_withdraw(struct bgp *b, const struct ipprefix *p);
/* Ask every established peer to re-send its routes (ROUTE-REFRESH, RFC 2918). */
void bgp_refresh_all(struct bgp *b);

int bgp_fd(const struct bgp *b);
/* Milliseconds until bgp_dispatch() must run again (-1: no timer). */
int bgp_timeout_ms(struct bgp *b);
/* Handle ready sockets and due timers; never blocks. */
void bgp_dispatch(struct bgp *b);
/* true when something shown by bgp_state changed since the last call */
bool bgp_state_dirty(struct bgp *b);
/* prefixes in the Loc-RIB (both families) */
size_t bgp_route_count(const struct bgp *b);

/* {"as","routerId","peers":[{name,address,as,type,state,since,received,sent,lastError,
 *  ...}],"routesTotal":N,"routes":[{prefix,installed,paths:[{best,nextHop,asPath,from,...}]}]}
 * with at most max_routes routes (SIZE_MAX: all), sorted; when the RIB has more, which
 * max_routes of them is not specified (the first found) — owned by the caller. */
json_object *bgp_state(struct bgp *b, size_t max_routes);
/* The same document as JSON text (plain), built one route at a time, so that a big RIB
 * never exists as one json-c tree (10,000 routes of it are about 40 MB).  free() it. */
char *bgp_state_json(struct bgp *b, size_t max_routes);

/* twill bgp ...: run / peers / routes */
int bgp_main(int argc, char **argv);
