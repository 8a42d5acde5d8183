/* nl: the only layer of twill that speaks to the kernel's rtnetlink (with libmnl),
 * plus the network-namespace and sysctl helpers that go with it.
 *
 * Conventions: functions that act return 0 or -errno (the kernel's error from the
 * ACK when there is one); nothing here prints, exits or logs.  Every request is
 * acknowledged (NLM_F_ACK) and its sequence number and port id are checked.
 *
 * Message building and parsing are split from I/O (nl_build_* / nl_parse_*) so unit
 * tests can check the exact bytes without a kernel.
 *
 * Dumps: the callback returns 0 to go on; any other value stops delivery (the rest of
 * the dump is still read) and is what the dump function returns.  A message the
 * kernel sends that does not parse makes the dump fail with -EINVAL.
 * A struct nl_sock is not thread-safe; use one per thread. */
#pragma once
#include <linux/if.h>
#include <linux/netlink.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/ip.h"

struct nl_sock;

/* A rtnetlink socket in the caller's current network namespace. NULL + errno on failure. */
struct nl_sock *nl_open(void);
/* A rtnetlink socket bound inside the namespace behind nsfd (the calling thread's own
 * namespace is restored before returning). NULL + errno on failure. */
struct nl_sock *nl_open_netns(int nsfd);
void nl_close(struct nl_sock *s);
/* The kernel's extended-ACK message for the last failed request on s, or "". For logs. */
const char *nl_errmsg(const struct nl_sock *s);

/* ---- links ---- */
struct nl_link {
	int index;
	char name[IFNAMSIZ];
	char kind[16]; /* IFLA_INFO_KIND: "veth", "bridge", "vxlan", "" ... */
	unsigned mtu;
	uint8_t mac[6];
	bool up;	  /* IFF_UP */
	int master;	  /* IFLA_MASTER or 0 */
	int link;	  /* IFLA_LINK (e.g. veth peer index, vxlan dev) or 0 */
	int link_netnsid; /* IFLA_LINK_NETNSID or -1 */
	/* vxlan only */
	uint32_t vxlan_id;
	uint16_t vxlan_port;
	struct ipaddr vxlan_local;
	int vxlan_dev;
	bool vxlan_learning;
};

struct nl_vxlan {
	uint32_t vni;
	uint16_t port;	     /* UDP destination port, host order; 0 = kernel default */
	struct ipaddr local; /* source address of encapsulated packets */
	int dev;	     /* underlay ifindex, 0 = none */
	unsigned mtu;	     /* 0 = kernel default */
	bool learning;
	const uint8_t *mac; /* NULL = kernel chooses */
};

int nl_link_get(struct nl_sock *s, const char *name, struct nl_link *out); /* -ENODEV if absent */
int nl_link_get_index(struct nl_sock *s, int index, struct nl_link *out);
int nl_link_index(struct nl_sock *s, const char *name); /* ifindex > 0, or -errno */
int nl_link_dump(struct nl_sock *s, int (*cb)(const struct nl_link *l, void *arg), void *arg);
/* veth pair: `name` in the socket's namespace, `peer` created directly in the namespace of
 * peer_nsfd (-1 = same namespace). mtu 0 = default; mac/peer_mac NULL = random. */
int nl_link_add_veth(struct nl_sock *s, const char *name, const uint8_t *mac, const char *peer,
		     const uint8_t *peer_mac, int peer_nsfd, unsigned mtu);
int nl_link_add_bridge(struct nl_sock *s, const char *name, unsigned mtu);
int nl_link_add_vxlan(struct nl_sock *s, const char *name, const struct nl_vxlan *vx);
int nl_link_del(struct nl_sock *s, int index);
int nl_link_set_up(struct nl_sock *s, int index, bool up);
int nl_link_set_mtu(struct nl_sock *s, int index, unsigned mtu);
int nl_link_set_master(struct nl_sock *s, int index, int master); /* 0 = nomaster */
int nl_link_set_mac(struct nl_sock *s, int index, const uint8_t mac[6]);
int nl_link_set_name(struct nl_sock *s, int index, const char *name);
int nl_link_set_netns(struct nl_sock *s, int index, int nsfd);

/* ---- addresses ---- */
struct nl_addr {
	int index;
	struct ipprefix prefix; /* address with its prefix length, host bits set */
	uint8_t scope;		/* RT_SCOPE_* */
	uint32_t flags;		/* IFA_F_* (IFA_F_NODAD, ...) */
};
int nl_addr_add(struct nl_sock *s, const struct nl_addr *a); /* EEXIST -> 0 when identical */
int nl_addr_del(struct nl_sock *s, const struct nl_addr *a);
/* family AF_UNSPEC for both; index 0 for every link */
int nl_addr_dump(struct nl_sock *s, int family, int index,
		 int (*cb)(const struct nl_addr *a, void *arg), void *arg);

/* ---- routes ---- */
struct nl_route {
	struct ipprefix dst;   /* dst.addr.family decides the route family */
	struct ipaddr gw;      /* family 0 = no gateway */
	struct ipaddr prefsrc; /* family 0 = none */
	int oif;	       /* 0 = none */
	uint8_t protocol;      /* RTPROT_* or twill's own */
	uint8_t scope;	       /* RT_SCOPE_UNIVERSE, RT_SCOPE_LINK ... */
	uint8_t type;	       /* RTN_UNICAST (default when 0), RTN_BLACKHOLE ... */
	uint32_t table;	       /* 0 = RT_TABLE_MAIN */
	uint32_t flags;	       /* RTNH_F_ONLINK ... */
	uint32_t priority;     /* metric */
	unsigned mtu;	       /* RTAX_MTU, 0 = none */
};
/* nlm_flags: NLM_F_CREATE|NLM_F_EXCL (add), NLM_F_CREATE|NLM_F_REPLACE (replace). */
int nl_route_add(struct nl_sock *s, const struct nl_route *r, uint16_t nlm_flags);
/* One route with several next hops (ECMP, RTA_MULTIPATH): r gives dst, protocol, table,
 * scope, type and priority (r->gw and r->oif are ignored); gws[i] with oifs[i] (0 = none,
 * oifs may be NULL) are the next hops.  n == 1 sends an ordinary single-path route. */
int nl_route_add_multipath(struct nl_sock *s, const struct nl_route *r, const struct ipaddr *gws,
			   const int *oifs, size_t n, uint16_t nlm_flags);
struct nlmsghdr *nl_build_route_multipath(void *buf, uint16_t type, uint16_t flags,
					  const struct nl_route *r, const struct ipaddr *gws,
					  const int *oifs, size_t n);
/* The FIB route the kernel would use to reach dst (RTM_GETROUTE with RTM_F_FIB_MATCH, as
 * `ip route get fibmatch`): its gateway tells a directly connected next hop (none) from a
 * recursive one.  table 0 = main rules.  0, -ENETUNREACH/-EHOSTUNREACH, or -errno. */
int nl_route_get(struct nl_sock *s, const struct ipaddr *dst, struct nl_route *out);
/* Fields left 0 (scope, type, protocol, gw, oif, priority) match any route; a set
 * protocol restricts the delete to routes carrying it (-ESRCH otherwise). */
int nl_route_del(struct nl_sock *s, const struct nl_route *r);
/* Dump routes of one family (AF_INET/AF_INET6) in `table` (0 = main); only routes whose
 * protocol equals `protocol` when protocol != 0.  Cached/cloned entries are skipped. */
int nl_route_dump(struct nl_sock *s, int family, uint32_t table, uint8_t protocol,
		  int (*cb)(const struct nl_route *r, void *arg), void *arg);

/* ---- batches of route changes ----
 * Requests queued in a buffer and sent many per sendmsg (at most about 64 KiB each); the
 * kernel acknowledges only the failed ones and the last of each sendmsg, so thousands of
 * routes cost a few system calls instead of two each.  err_cb gets every failed request
 * with the route it was about (parsed back from the request: dst, table, protocol, gw),
 * its type (RTM_NEWROUTE / RTM_DELROUTE), the -errno and the kernel's extended-ACK text.
 * Should errors overflow the socket's receive buffer, the batch is replayed one request
 * at a time (nl_route_add semantics), so no failure goes unreported.  Do not use the
 * socket for anything else between queueing and nl_batch_flush returning. */
struct nl_batch;
typedef void (*nl_batch_err_fn)(const struct nl_route *r, uint16_t type, int err, const char *msg,
				void *arg);
struct nl_batch *nl_batch_new(struct nl_sock *s, nl_batch_err_fn err_cb, void *arg);
void nl_batch_free(struct nl_batch *b); /* what is still queued is dropped */
/* Queue a RTM_NEWROUTE as nl_route_add_multipath, or a RTM_DELROUTE as nl_route_del.
 * 0, -EINVAL (bad arguments: nothing queued), or a flush's negative result. */
int nl_batch_route_add(struct nl_batch *b, const struct nl_route *r, const struct ipaddr *gws,
		       const int *oifs, size_t n, uint16_t nlm_flags);
int nl_batch_route_del(struct nl_batch *b, const struct nl_route *r);
size_t nl_batch_queued(const struct nl_batch *b);
/* Send what is queued and read the answers: the number of failed requests among them
 * (those of buffers sent earlier, when full, went to err_cb then), or -errno
 * when the socket itself failed (the queued requests are then dropped). */
int nl_batch_flush(struct nl_batch *b);

/* ---- neighbours and FDB ---- */
struct nl_neigh {
	int family; /* AF_INET/AF_INET6 for ARP/ND, AF_BRIDGE for FDB */
	int index;
	struct ipaddr dst; /* NDA_DST: neighbour IP, or for FDB the remote VTEP IP */
	uint8_t lladdr[6]; /* NDA_LLADDR */
	bool has_lladdr;
	uint16_t state; /* NUD_* */
	uint8_t flags;	/* NTF_SELF, NTF_EXT_LEARNED ... */
};
/* create or replace; state 0 means NUD_PERMANENT. FDB entries (AF_BRIDGE) need has_lladdr
 * and, for a VXLAN device, flags NTF_SELF. */
int nl_neigh_replace(struct nl_sock *s, const struct nl_neigh *n); /* create or replace */
int nl_neigh_del(struct nl_sock *s, const struct nl_neigh *n);
/* family AF_INET/AF_INET6/AF_BRIDGE; index 0 = all links */
int nl_neigh_dump(struct nl_sock *s, int family, int index,
		  int (*cb)(const struct nl_neigh *n, void *arg), void *arg);

/* ---- message building and parsing (no I/O; for tests and for the I/O functions) ----
 * buf must hold at least NL_MSG_MAX bytes. Each returns the built message. */
#define NL_MSG_MAX 8192
struct nlmsghdr *nl_build_route(void *buf, uint16_t type, uint16_t flags, const struct nl_route *r);
struct nlmsghdr *nl_build_neigh(void *buf, uint16_t type, uint16_t flags, const struct nl_neigh *n);
struct nlmsghdr *nl_build_addr(void *buf, uint16_t type, uint16_t flags, const struct nl_addr *a);
/* 0, or -EINVAL (malformed) / -ENOENT (skip: cloned entries, other families).  Parsed
 * flags are rtm_flags as the kernel reports them (RTNH_F_ONLINK, but also e.g.
 * RTNH_F_LINKDOWN); table comes from RTA_TABLE when present. */
int nl_parse_route(const struct nlmsghdr *nlh, struct nl_route *out);
int nl_parse_neigh(const struct nlmsghdr *nlh, struct nl_neigh *out);
int nl_parse_addr(const struct nlmsghdr *nlh, struct nl_addr *out);
int nl_parse_link(const struct nlmsghdr *nlh, struct nl_link *out);

/* ---- network namespaces (named ones live in /run/netns, as iproute2 keeps them) ---- */
/* Create /run/netns/<name> holding a new network namespace; -EEXIST if present. */
int netns_create(const char *name);
/* Unmount and remove /run/netns/<name>; 0 if absent. */
int netns_delete(const char *name);
bool netns_exists(const char *name);
/* Open a namespace by name (/run/netns/<name>) or by absolute path. fd or -errno. */
int netns_open(const char *name_or_path);
/* Switch the calling thread into nsfd; *saved gets an fd of the previous one. */
int netns_enter(int nsfd, int *saved);
/* Return to the namespace saved by netns_enter and close it. */
int netns_leave(int saved);
/* List names under /run/netns starting with prefix; calls cb for each. */
int netns_list(const char *prefix, int (*cb)(const char *name, void *arg), void *arg);

/* ---- sysctl (of the caller's current network namespace) ---- */
/* key in dotted or slashed form: "net.ipv4.conf.eth0.proxy_arp" or "net/ipv4/...".
 * Interface names may contain dots: in the dotted form, under net.ipv4.conf, net.ipv6.conf,
 * net.ipv4.neigh, net.ipv6.neigh and net.mpls.conf, everything between the tree and the
 * last component is the interface name ("net.ipv4.conf.twill.1.proxy_arp" works).  A key
 * with a '/' ("net/ipv4/conf/twill.1/proxy_arp", or "/proc/sys/...") is used verbatim.
 * sysctl_read strips the trailing newline; -EOVERFLOW if the value does not fit. */
int sysctl_write(const char *key, const char *value);
int sysctl_read(const char *key, char *buf, size_t size);
/* The /proc/sys path for key (the mapping above). 0, -EINVAL or -ENAMETOOLONG. */
int sysctl_path(const char *key, char *buf, size_t size);
