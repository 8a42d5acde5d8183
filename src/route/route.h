/* route: the cross-node route planner and its dataplane writer.
 *
 * The planner turns Node objects (podCIDRs, InternalIPs) into the desired kernel state
 * for this node, per routing mode:
 *   host-gw  remote podCIDR via the remote node's InternalIP (only when that address is on
 *            a directly connected subnet; otherwise the node is reported unroutable);
 *   vxlan    a VXLAN device twill.<VNI>; per remote node a route onlink via the remote VTEP
 *            address (its podCIDR's network address), a permanent neighbour entry and an
 *            FDB entry (Flannel's scheme);
 *   mixed    host-gw where the node is directly connected, vxlan elsewhere;
 *   ipip     Calico's IPIP overlay: the ipip module's fallback device tunl0 (MTU 20 less
 *            than the underlay, address: its podCIDR's network address /32); per remote
 *            node a route "podCIDR via <node InternalIP> dev tunl0 onlink";
 *   ipip-crosssubnet  host-gw where the node is directly connected, ipip elsewhere
 *            (Calico's ipipMode CrossSubnet).
 * With encryption (--encrypt wireguard, wg/wg.h) a remote node that published its
 * WireGuard key is reached through the device twill.wg instead, whatever the mode:
 * "podCIDR dev twill.wg" and the node as a WireGuard peer (endpoint its InternalIP, allowed
 * IPs its podCIDRs).  A node without a key yet is routed by the mode, unencrypted, as
 * Calico does; its status says so.
 * The writer diffs desired against the kernel (routes with protocol TWILL_RTPROT_NODE,
 * neighbours and FDB entries of twill's VXLAN device) and applies only the difference. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

/* ROUTE_BGP: native routing by the agent's BGP speaker (agent/agent_bgp.h); the planner
 * installs no cross-node route and reports every node as reached "via bgp". */
enum route_mode {
	ROUTE_HOST_GW,
	ROUTE_VXLAN,
	ROUTE_MIXED,
	ROUTE_IPIP,
	ROUTE_IPIP_CROSSSUBNET,
	ROUTE_BGP
};
const char *route_mode_name(enum route_mode m);
int route_mode_parse(const char *s); /* enum route_mode or -1 */
/* "host-gw, vxlan, mixed, ipip or ipip-crosssubnet", for usage and error messages. */
#define ROUTE_MODES_TEXT "host-gw, vxlan, mixed, ipip, ipip-crosssubnet or bgp"
/* Bytes the mode's encapsulation takes from the underlay MTU: the pods' MTU is the
 * underlay's minus this (0 host-gw, TWILL_VXLAN_OVERHEAD vxlan/mixed, ROUTE_IPIP_OVERHEAD). */
unsigned route_mode_overhead(enum route_mode m);
#define ROUTE_IPIP_OVERHEAD 20 /* the outer IPv4 header */
#define ROUTE_IPIP_DEV "tunl0" /* the ipip module's fallback device, one per namespace */

enum route_encrypt { ROUTE_ENCRYPT_NONE, ROUTE_ENCRYPT_WIREGUARD };
const char *route_encrypt_name(enum route_encrypt e); /* "none", "wireguard" */
int route_encrypt_parse(const char *s);		      /* enum route_encrypt or -1 */

struct route_cfg {
	const char *node_name;
	enum route_mode mode;
	uint32_t vni;  /* default TWILL_VXLAN_DEFAULT_VNI */
	uint16_t port; /* default TWILL_VXLAN_DEFAULT_PORT */
	enum route_encrypt encrypt;
	/* WireGuard (wg.h): <state-dir>/wireguard.key and the overlay file publishing the
	 * public key, <manifests>/.twill/wireguard.<node>.json (removed when encryption is
	 * off); both required */
	const char *wg_key_file;
	const char *wg_publish_file;
};

struct route_planner;
struct route_planner *route_planner_new(struct store *s, const struct route_cfg *cfg);
void route_planner_free(struct route_planner *rp);
bool route_planner_dirty(const struct route_planner *rp);
/* Reconcile the kernel with the desired state (first call dumps the kernel). 0 or -errno. */
int route_planner_sync(struct route_planner *rp);

/* ---- status, for the agent (status.json, node.json) ---- */
enum route_via {
	ROUTE_VIA_NONE,
	ROUTE_VIA_HOST_GW,
	ROUTE_VIA_VXLAN,
	ROUTE_VIA_IPIP,
	ROUTE_VIA_WIREGUARD,
	ROUTE_VIA_BGP
};
/* "none", "host-gw", "vxlan", "ipip", "wireguard", "bgp" */
const char *route_via_name(enum route_via v);

struct route_peer_info {
	const char *node;
	struct ipaddr ip; /* family 0 when the Node has no address */
	size_t npod_cidrs;
	const struct ipprefix *pod_cidrs;
	enum route_via via;
	const char *status; /* "ok" or "unroutable: <why>" */
};
/* Visit the remote nodes in name order; stops when fn returns non-zero (and returns that). */
int route_planner_foreach_peer(const struct route_planner *rp,
			       int (*fn)(const struct route_peer_info *p, void *arg), void *arg);
/* Problems of this node's own plan or of the last sync (NULL-terminated array of messages,
 * valid until the next sync). */
const char *const *route_planner_errors(const struct route_planner *rp);
/* MTU of the underlay interface (the one holding this node's InternalIP); 0 until known. */
unsigned route_planner_underlay_mtu(const struct route_planner *rp);
/* Bytes the pods' MTU must leave below the underlay's: the mode's overhead, or
 * WireGuard's (60, 80 over IPv6) when encryption is on and that is larger. */
unsigned route_planner_overhead(const struct route_planner *rp);
/* This node's WireGuard public key (base64), "" when encryption is off or not ready. */
const char *route_planner_wg_public_key(const struct route_planner *rp);
/* Re-read the kernel on the next sync (periodic drift repair, SIGHUP). */
void route_planner_request_resync(struct route_planner *rp);

/* ---- the planner's pure parts (no kernel; unit-tested) ---- */

/* 0e:74:<the 4 bytes of the IPv4 address> (locally administered, unicast). */
void route_vtep_mac(const struct ipaddr *ip, uint8_t mac[6]);
/* "aa:bb:cc:dd:ee:ff" (case-insensitive). 0 or -EINVAL. */
int route_mac_parse(const char *s, uint8_t mac[6]);

/* A subnet directly connected to this node (an address's prefix) and its interface. */
struct route_conn {
	struct ipprefix prefix;
	int ifindex;
};
/* Interface of the longest connected subnet containing ip, or 0 when none does. */
int route_connected_ifindex(const struct route_conn *conn, size_t nconn, const struct ipaddr *ip);

/* One kernel entry the writer manages. Keys: route (dst, priority); neighbour (ifindex, dst);
 * FDB (ifindex, mac, dst). */
enum rt_kind { RT_ROUTE, RT_NEIGH, RT_FDB };
struct rt_entry {
	enum rt_kind kind;
	struct ipprefix dst; /* route: destination; neighbour: the neighbour's address /32 */
	struct ipaddr gw;    /* route: gateway; FDB: the remote VTEP's underlay address */
	uint8_t mac[6];	     /* neighbour: lladdr; FDB: the remote VTEP's MAC */
	int oif;	     /* route: output interface; neighbour, FDB: the device */
	bool onlink;	     /* route */
	uint32_t priority;   /* route */
};
struct rt_set {
	size_t n, cap;
	struct rt_entry *v;
};
void rt_set_add(struct rt_set *s, const struct rt_entry *e);
void rt_set_clear(struct rt_set *s);
void rt_set_free(struct rt_set *s);
int rt_entry_key_cmp(const struct rt_entry *a, const struct rt_entry *b);
bool rt_entry_same(const struct rt_entry *a, const struct rt_entry *b); /* key and value */
void rt_set_sort(struct rt_set *s);					/* by key */
const char *rt_entry_fmt(const struct rt_entry *e, char *buf, size_t size);

/* desired vs current -> the minimal changes: entries to add (key absent), to replace (key
 * present, value differs; the desired entry), to delete (key not desired; the current
 * entry).  Inputs need not be sorted; duplicate desired keys keep the first. */
void rt_diff(const struct rt_set *desired, const struct rt_set *current, struct rt_set *add,
	     struct rt_set *replace, struct rt_set *del);

/* What this node knows about itself, for planning. */
struct route_self {
	enum route_mode mode;
	struct ipaddr ip;	       /* this node's InternalIP; family 0 = unknown */
	const struct route_conn *conn; /* directly connected subnets */
	size_t nconn;
	int vxlan_index; /* ifindex of twill.<VNI>, 0 = not there (yet) */
	int ipip_index;	 /* ifindex of tunl0, 0 = not there (yet) */
	int wg_index;	 /* ifindex of twill.wg when encrypting, 0 = off or not ready */
};
struct route_peer_in {
	const char *name;
	struct ipaddr ip; /* family 0 = none */
	size_t npod_cidrs;
	struct ipprefix pod_cidrs[2];
	bool has_mac;
	uint8_t mac[6]; /* twill.io/vtep-mac when has_mac */
	bool has_wg_key;
	uint8_t wg_key[32]; /* twill.io/wireguard-public-key when has_wg_key */
};
/* The entries for one remote node, appended to out.  Returns how it is reached; for
 * ROUTE_VIA_NONE `why` says why (without the "unroutable: " prefix). */
enum route_via route_plan_peer(const struct route_self *self, const struct route_peer_in *p,
			       struct rt_set *out, char *why, size_t whylen);
