/* ipvs: the IPVS dataplane for Services (kube-proxy's `--proxy-mode ipvs`), through the
 * kernel's IPVS generic netlink family ("IPVS", include/uapi/linux/ip_vs.h) with libmnl --
 * no ipvsadm, no libipvs.
 *
 * Two layers:
 *   1. the IPVS table (this file's first half): virtual services and their real servers as
 *      plain structs, the messages that add, change, delete and dump them (built and parsed
 *      without I/O, so unit tests check the bytes), the diff of a desired service against
 *      the kernel's, and a connection that sends many requests per sendmsg and reads every
 *      acknowledgement;
 *   2. the writer (ipvs_writer.c): the Service planner's entries (svc_plan.h) for this node
 *      become, in the caller's network namespace,
 *        - one virtual service per entry (ClusterIP, NodePort on every node address,
 *          externalIP, LoadBalancer address) with masquerading (NAT) real servers, the
 *          planner's backends and weights; the scheduler from the Service's annotation
 *          SVC_ANN_SCHEDULER when it names an IPVS scheduler (rr, wrr, lc, wlc, lblc, lblcr,
 *          dh, sh, sed, nq, mh, fo, ovf, twos), else the writer's default (kube-proxy's
 *          --ipvs-scheduler, rr); sessionAffinity ClientIP = persistence with its timeout;
 *          IPv4 and IPv6 alike (AF_INET6 virtual services with IPv6 real servers: each
 *          entry gets the backends of its own family);
 *        - every ClusterIP, externalIP and LoadBalancer address on the dummy device
 *          `kube-ipvs0` (created down and NOARP, as kube-proxy does; IPv4 /32, IPv6 /128
 *          without DAD), so packets to them are local and reach IPVS in LOCAL_IN;
 *        - the rules kube-proxy keeps beside IPVS, in the nftables tables `ip twill-ipvs`
 *          and `ip6 twill-ipvs` (the same sets and rules per family, both always there),
 *          with sets, so the rule count is fixed:
 *            set services / cluster-ips / masq-services   ipv4_addr . inet_proto . inet_service
 *                                                         (ip6: ipv6_addr . ...)
 *            map no-endpoints                             same key : verdict (reject | drop)
 *            set vips (ipv4_addr / ipv6_addr)             the addresses on kube-ipvs0
 *            set hairpin (addr . addr)                    backend . itself
 *            nat-prerouting / nat-output: to @cluster-ips from outside the family's
 *                cluster CIDR (no such rule without one), or
 *                to @masq-services (external traffic, Cluster policy): mark for masquerade
 *            nat-postrouting: marked -> masquerade; ip saddr . ip daddr @hairpin -> masquerade
 *            filter-input / filter-output: @no-endpoints -> reject (TCP reset, ICMP port
 *                unreachable, ICMPv6 port unreachable) or drop (Local policy, no local
 *                endpoint); new traffic to a vip on a port no Service serves -> reject
 *                (the node's own listeners are not exposed on Service addresses);
 *        - net.ipv4.vs.conntrack=1 (IPVS keeps conntrack entries, so nftables' masquerade
 *          applies to what IPVS forwards), expire_nodest_conn=1 (a connection to a deleted
 *          real server ends at its next packet: a UDP client moves on) and
 *          expire_quiescent_template=1, as kube-proxy sets them; after a UDP real server is
 *          deleted, the conntrack entries translated to it are deleted too (conntrack.h),
 *          as kube-proxy does.
 *      Incremental: the kernel's IPVS table and kube-ipvs0's addresses are dumped once (at
 *      start, on resync and after an error) and then tracked; a sync sends only the
 *      difference for the Services the planner reports changed (one new endpoint = one
 *      NEW_DEST).  A restart reconciles against the dump without flushing anything; the
 *      nftables sets are refilled in one atomic transaction after a dump.
 *      Memory: the wanted state is the only copy kept (after a sync the tracked kernel
 *      state points at it; a dump's services live until the sync that used them), real
 *      servers without counters (32 bytes each), the sets' elements in one open-addressing
 *      table (32 bytes a slot), the IPVS requests diffed and sent 4,096 at a time.
 *      Ownership: in the namespace where it runs, the writer owns every IPVS virtual
 *      service that has an address and port (fwmark services are left alone), the device
 *      kube-ipvs0 and the tables `ip twill-ipvs` and `ip6 twill-ipvs`.
 */
#pragma once
#include <linux/netlink.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/ip.h"
#include "proxy/svc_plan.h"

#define IPVS_DEVICE "kube-ipvs0"
#define IPVS_NFT_TABLE "twill-ipvs"
#define IPVS_DEFAULT_SCHEDULER "rr"
#define IPVS_SCHED_LEN 16 /* IP_VS_SCHEDNAME_MAXLEN */
#define IPVS_MSG_MAX 1024 /* one request, built by ipvs_build_* */

struct ipvs_stats {
	uint64_t conns, inpkts, outpkts, inbytes, outbytes;
};

/* A real server's settings: 32 bytes, the wanted state holds 10 per Service. */
struct ipvs_dest {
	struct ipaddr addr;
	uint16_t port;
	uint32_t fwd; /* IP_VS_CONN_F_MASQ (0), ... */
	uint32_t weight;
};

/* What a dump reports about a real server beyond its settings (ipvs_dump with counters). */
struct ipvs_dest_counters {
	uint32_t active, inactive, persist;
	struct ipvs_stats stats;
};

struct ipvs_service {
	struct ipaddr addr; /* key: addr, proto, port (or fwmark) */
	uint8_t proto;	    /* IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP */
	uint16_t port;
	uint32_t fwmark; /* 0: an address:port service */
	char sched[IPVS_SCHED_LEN];
	uint32_t flags;	  /* IP_VS_SVC_F_* (IP_VS_SVC_F_HASHED is ignored) */
	uint32_t timeout; /* persistence, seconds */
	uint32_t netmask; /* persistence granularity: IPv4 mask (network order) / IPv6 plen */
	struct ipvs_stats stats;
	size_t ndests, cap;
	struct ipvs_dest *dests; /* sorted by (addr, port) once ipvs_service_sort_dests ran */
	struct ipvs_dest_counters *ctrs; /* NULL, or ctrs[i] for dests[i] (a dump with counters;
					    the array has cap entries) */
};

/* The names the kernel has schedulers for; true if s is one. */
bool ipvs_sched_known(const char *s);
/* Key order: family, address, protocol, port, fwmark. */
int ipvs_service_cmp(const struct ipvs_service *a, const struct ipvs_service *b);
int ipvs_dest_cmp(const struct ipvs_dest *a, const struct ipvs_dest *b);
void ipvs_service_sort_dests(struct ipvs_service *s);
struct ipvs_dest *ipvs_service_add_dest(struct ipvs_service *s, const struct ipvs_dest *d);
void ipvs_service_copy(struct ipvs_service *dst, const struct ipvs_service *src);
void ipvs_service_clear(struct ipvs_service *s); /* frees dests and ctrs */
/* "TCP 10.96.0.10:80" (what ipvsadm prints as the service). */
const char *ipvs_service_key(const struct ipvs_service *s, char *buf, size_t size);
/* The service's settings as the kernel reports them equal (scheduler, flags, timeout,
 * netmask; not the real servers). */
bool ipvs_service_same(const struct ipvs_service *a, const struct ipvs_service *b);

/* ---- messages (no I/O). buf holds IPVS_MSG_MAX bytes; family is the genl family id. */
/* cmd IPVS_CMD_NEW_SERVICE / SET_SERVICE: every setting; DEL_SERVICE, GET_SERVICE: the key
 * only.  flags: NLM_F_ACK, NLM_F_DUMP ... (NLM_F_REQUEST is added). */
struct nlmsghdr *ipvs_build_service(void *buf, uint16_t family, uint8_t cmd, uint16_t flags,
				    const struct ipvs_service *s);
/* cmd IPVS_CMD_NEW_DEST / SET_DEST / DEL_DEST with d; GET_DEST (a dump) with d NULL. */
struct nlmsghdr *ipvs_build_dest(void *buf, uint16_t family, uint8_t cmd, uint16_t flags,
				 const struct ipvs_service *s, const struct ipvs_dest *d);
/* A GET_SERVICE / GET_DEST reply. 0, or -EINVAL (malformed, or not that kind of reply). */
int ipvs_parse_service(const struct nlmsghdr *nlh, struct ipvs_service *out);
int ipvs_parse_dest(const struct nlmsghdr *nlh, struct ipvs_dest *out,
		    struct ipvs_dest_counters *ctr /* NULL: not read */);

/* ---- the diff of one virtual service ---- */
enum ipvs_op_kind {
	IPVS_OP_ADD_SVC,
	IPVS_OP_SET_SVC,
	IPVS_OP_DEL_SVC,
	IPVS_OP_ADD_DEST,
	IPVS_OP_SET_DEST,
	IPVS_OP_DEL_DEST,
};
struct ipvs_op {
	enum ipvs_op_kind kind;
	const struct ipvs_service *svc; /* borrowed */
	const struct ipvs_dest *dest;	/* borrowed; NULL for service ops */
};
struct ipvs_ops {
	size_t n, cap;
	struct ipvs_op *v;
};
void ipvs_ops_free(struct ipvs_ops *o);
/* Append what turns `have` (the kernel's, NULL = absent) into `want` (NULL = not wanted):
 * a service that is no longer wanted is deleted with its real servers; a new one is added
 * and then its real servers; otherwise the settings are changed in place (SET_SERVICE: no
 * connection is dropped) and real servers are added, changed (weight) or deleted one by
 * one.  Both services' dests must be sorted.  Returns how many ops were appended. */
size_t ipvs_diff_service(const struct ipvs_service *want, const struct ipvs_service *have,
			 struct ipvs_ops *ops);
const char *ipvs_op_name(enum ipvs_op_kind k); /* "add service", ... */

/* ---- talking to the kernel (the caller's network namespace) ---- */
struct mnl_socket;
struct ipvs_conn {
	struct mnl_socket *nl;
	uint16_t family; /* genl family id of "IPVS" */
	uint32_t portid, seq;
	char err[256];
};
/* Opens a generic netlink socket and resolves the family: -ENOENT when the kernel has no
 * IPVS (module ip_vs not loaded), with why in c->err. */
int ipvs_open(struct ipvs_conn *c);
void ipvs_close(struct ipvs_conn *c);
/* Every address:port virtual service with its real servers (dests sorted, arrays of
 * exactly ndests without counters; with counters each service's ctrs are filled too);
 * fwmark services are skipped.  out is cleared first; free with ipvs_table_free. */
struct ipvs_table {
	size_t n, cap;
	struct ipvs_service *v; /* sorted by ipvs_service_cmp */
};
int ipvs_dump(struct ipvs_conn *c, struct ipvs_table *out, bool counters);
void ipvs_table_free(struct ipvs_table *t);
/* The service of t with s's key, or NULL. */
struct ipvs_service *ipvs_table_find(const struct ipvs_table *t, const struct ipvs_service *s);
/* Send the ops, many per sendmsg, each acknowledged.  Every op is tried; returns 0 or the
 * first failure's -errno (c->err names the op). */
int ipvs_apply(struct ipvs_conn *c, const struct ipvs_op *ops, size_t n);

/* ---- the writer ---- */
struct store;
struct ipvs_cfg {
	const char *scheduler;		      /* NULL: IPVS_DEFAULT_SCHEDULER */
	const struct ipprefix *cluster_cidr;  /* pod traffic to ClusterIPs is not masqueraded;
						 NULL: nothing to ClusterIPs is */
	const struct ipprefix *cluster_cidr6; /* the same for IPv6 (either may be of either
						 family: each is used for its own) */
	const char *device;		      /* NULL: IPVS_DEVICE */
	const char *table;		      /* NULL: IPVS_NFT_TABLE */
	uint32_t masq_mark;		      /* 0: 0x4000 */
};
struct ipvs_sync_stats {
	bool full;	   /* the kernel was dumped first */
	unsigned services; /* Services whose entries changed */
	unsigned svc_added, svc_changed, svc_deleted;
	unsigned dests_added, dests_changed, dests_deleted;
	unsigned addrs_added, addrs_deleted;
	unsigned nft_messages;
};
struct ipvs_writer;
/* Reads sp (calls svc_planner_update itself) and, for the scheduler annotation, the
 * Services in st; owns neither. */
struct ipvs_writer *ipvs_writer_new(struct svc_planner *sp, struct store *st,
				    const struct ipvs_cfg *cfg);
void ipvs_writer_free(struct ipvs_writer *w);
bool ipvs_writer_dirty(const struct ipvs_writer *w);
/* 0 or -errno (then the next sync dumps the kernel again). */
int ipvs_writer_sync(struct ipvs_writer *w);
void ipvs_writer_request_resync(struct ipvs_writer *w);
const struct ipvs_sync_stats *ipvs_writer_stats(const struct ipvs_writer *w);
const char *ipvs_writer_error(const struct ipvs_writer *w);
/* For tests, no kernel needed: take the planner's changes into the wanted state (what the
 * next sync would program; returns how many Services changed), the wanted virtual services
 * (sorted; free with ipvs_table_free), and how many of them ask for one element of an
 * nftables set: "vips" and "hairpin" are keyed by key->addr, "services", "cluster-ips",
 * "masq-services" and "no-endpoints" by address, protocol and port. */
size_t ipvs_writer_plan(struct ipvs_writer *w);
void ipvs_writer_wanted(const struct ipvs_writer *w, struct ipvs_table *out);
unsigned ipvs_writer_elem_refs(const struct ipvs_writer *w, const char *set,
			       const struct ipvs_service *key);
/* The IPVS scheduler for a Service: its SVC_ANN_SCHEDULER annotation when that names an
 * IPVS scheduler ("random" and anything else: dflt). */
const char *ipvs_sched_for(const struct object *svc, const char *dflt);

/* ---- `twill svc list` in ipvs mode (ipvs_list.c) ----
 * Adds to a services.json listing (svc_list.h) what the kernel's IPVS table of the current
 * namespace says: per entry "ipvs": {"scheduler","flags","timeout","conns","inpkts",
 * "outpkts","inbytes","outbytes"} (or null when the kernel has no such virtual service),
 * "scheduler" set to the kernel's, and per backend "activeConn"/"inactiveConn"/"weight"
 * from IPVS.  0 or -errno (IPVS not readable: the listing is unchanged). */
struct json_object;
int ipvs_annotate_listing(struct json_object *list);
