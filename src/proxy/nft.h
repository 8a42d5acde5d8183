/* nft: the nftables dataplane writer for Services (libnftnl + libmnl, no `nft` binary).
 *
 * It programs what the Service planner (svc_plan.h) wants into two tables that twill owns,
 * `ip twill` for the IPv4 entries and `ip6 twill` for the IPv6 ones (a dual-stack Service has
 * entries in both, each with its family's endpoints).  Both have the layout below, with
 * ipv6_addr / ip6 saddr / ip6 daddr in `ip6 twill`; concatenations of different address
 * lengths cannot share a map, and keeping `ip twill` as it was lets a new agent take over a
 * node from an older one without touching an IPv4 connection.  `ip6 twill` is created with
 * the first IPv6 entry (a node without IPv6 Services gets none) and kept from then on.  Per
 * Service entry (VIP, protocol, port) the writer adds map elements, not chains: the number
 * of chains does not grow with Services or endpoints.
 *
 *   map services              ipv4_addr . inet_proto . inet_service : verdict
 *                             entry with backends -> goto pick-<sched>-<N> (ext-pick-<sched>-<N>
 *                             when the entry masquerades: external traffic, Cluster policy)
 *   map no-endpoint-services  same key -> goto reject-chain (no endpoints) | drop (Local policy,
 *                             none on this node)
 *   map backends              slot . ipv4_addr . inet_proto . inet_service
 *                             : ipv4_addr . inet_service       (entry's slot i -> backend)
 *   set hairpin               ipv4_addr . ipv4_addr            (backend . itself)
 *   chain services            ip daddr . meta l4proto . th dport vmap @services
 *   chain nat-prerouting / nat-output (nat, dstnat)   jump services
 *   chain filter-input / -forward / -output (filter, dstnat-10)
 *                             ip daddr . meta l4proto . th dport vmap @no-endpoint-services
 *   chain nat-postrouting (nat, srcnat)   mark & MASQ != 0 -> masquerade;
 *                             ct status dnat ip saddr . ip daddr @hairpin -> masquerade
 *                             (a backend that reached itself through its Service)
 *   chain pick-<sched>-<N>    dnat to <slot> . ip daddr . meta l4proto . th dport
 *                             map @backends, <slot> = numgen random|inc mod N (random, rr)
 *                             or jhash(ip saddr|daddr) mod N (sh, dh); one per scheduler and
 *                             N in use, shared by every entry with N slots (N = the sum of
 *                             the backends' weights, 1 each unless weighted)
 *   chain ext-pick-<sched>-<N>  jump mark-for-masquerade; goto pick-<sched>-<N>
 *   with sessionAffinity ClientIP (timeout T), per group (the planner's
 *   "ns/name/proto/port[/local]"):
 *   map aff-<group>           ipv4_addr : slot, flags dynamic,timeout
 *   chain svc-<group>         per slot i: ip saddr map @aff-<group> == i: refresh the entry
 *                             (update ... timeout T), dnat to backend i; then the pick, which
 *                             records the client (update @aff-<group> { ip saddr : slot });
 *   chain ext-<group>         jump mark-for-masquerade; goto svc-<group>
 *   (a rule per slot because nft 1.0.6 cannot list a concatenation holding a map lookup's
 *   result; a group whose slots move, e.g. a backend removed, has its map emptied in the
 *   same transaction: its clients pick again, never a removed backend)
 *
 * Why this shape (measured with perf on kernel 6.18, see docs/performance.md section 4): the
 * kernel binds an anonymous set to its rule by walking the whole transaction, checks every
 * new rule bound to a map against all its elements and every new map element against all
 * rules bound to the map.  A chain per endpoint with an anonymous numgen vmap per Service
 * (kube-proxy's nftables layout) is therefore quadratic in one full sync (10,000 Services
 * did not finish in 120 s); a few shared pick chains bound to one backends map are linear.
 * Slots are assigned stably: an endpoint replaced by another rewrites one element per entry;
 * one removed moves at most one other (the last slot into the hole).
 *
 * No endpoints: reject-chain answers TCP with a reset, anything else with ICMP (ICMPv6)
 * port unreachable.
 *
 * When a UDP backend leaves an entry, after the transaction commits, the conntrack entries
 * (IPv4 or IPv6) sent to that entry's address and port and translated to the backend are
 * deleted (conntrack.h), so UDP clients move to the remaining backends at their next datagram.
 *
 * Everything a packet can see changes in ONE netlink transaction (NFNL_MSG_BATCH_BEGIN .. END)
 * for both tables, holding only what changed: map and set elements of changed entries, chains
 * whose content changed (flushed and refilled inside the transaction, so no packet sees them
 * empty), chains no longer wanted.  In a large sync, what no packet can reach yet is sent
 * ahead of it in transactions of at most 1 MB: the backends elements of entries not yet in
 * the service maps and new hairpin addresses (so the writer never holds an 8 MB transaction).
 * Each dynamic chain's rules carry a content hash in their comment (userdata), so a
 * restarted writer dumps the table's chains, rules, sets and elements once, diffs, and
 * changes only what differs: the tables are never flushed, conntrack is untouched,
 * established connections survive.  Nothing outside the two tables is touched.
 *
 * The four element sets are created with a size (NFTA_SET_DESC_SIZE: twice the elements
 * they need, a power of two, at least 512), which makes kernel 6.18 use its fixed-size hash
 * (no resizing while 100,000 elements are added); the size is a hard limit, so a sync that
 * needs more recreates the set in its transaction (rules bound to it flushed, set deleted
 * and added with the new size and all its elements, rules added again).  A restart adopts
 * the sizes it finds; sets without a size (older twill) have no limit and are kept. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "proxy/svc_plan.h"

#define NFT_TWILL_TABLE "twill"
#define NFT_TWILL_MASQ_MARK 0x4000u /* kube-proxy's default masquerade bit (14) */

struct nft_cfg {
	const char *table;  /* NULL: NFT_TWILL_TABLE */
	uint32_t masq_mark; /* 0: NFT_TWILL_MASQ_MARK */
};

/* What the last sync did (for logs, status and tests). */
struct nft_sync_stats {
	bool full;	      /* the kernel was dumped first (start, resync, after an error) */
	unsigned messages;    /* netlink messages in the transaction (without begin/end) */
	unsigned elems_added; /* map elements */
	unsigned elems_deleted;
	unsigned backends_added; /* elements of the backends map */
	unsigned backends_deleted;
	unsigned chains_written; /* chains created or refilled */
	unsigned chains_deleted;
	unsigned services;	    /* Services whose entries changed */
	unsigned conntrack_deleted; /* stale UDP conntrack entries deleted after the commit */
	unsigned sets_recreated;    /* element sets outgrown: recreated with a larger size */
	unsigned sent_ahead; /* transactions of unreachable elements sent before the main one */
};

struct nft_writer;
/* The writer reads sp (it calls svc_planner_update itself); it does not own it. */
struct nft_writer *nft_writer_new(struct svc_planner *sp, const struct nft_cfg *cfg);
void nft_writer_free(struct nft_writer *w);
/* Pending work: the planner has stale Services, or a (re)sync is due. */
bool nft_writer_dirty(const struct nft_writer *w);
/* Bring the kernel to the planner's desired state. 0 or -errno (then nothing a packet can
 * reach was changed: the transaction is atomic, elements sent ahead of it are unreachable;
 * the next sync dumps the kernel again). */
int nft_writer_sync(struct nft_writer *w);
/* Dump the kernel again on the next sync (drift repair). */
void nft_writer_request_resync(struct nft_writer *w);
const struct nft_sync_stats *nft_writer_stats(const struct nft_writer *w);
/* The kernel's error for the last failed sync, or "". */
const char *nft_writer_error(const struct nft_writer *w);
/* Delete twill's tables, ip and ip6 (uninstall, tests). 0 (also when absent) or -errno. */
int nft_table_delete(const char *table);
