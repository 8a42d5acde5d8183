/* nft: the nftables dataplane writer for Services (libnftnl + libmnl, no `nft` binary).
 *
 * It programs what the Service planner (svc_plan.h) wants into one table that twill owns,
 * `ip twill` (IPv4), laid out like kube-proxy's nftables mode:
 *
 *   map services              ipv4_addr . inet_proto . inet_service : verdict
 *                             entry with backends -> goto svc-<group>  (or ext-<group> when
 *                             the entry masquerades: external traffic with Cluster policy)
 *   map no-endpoint-services  same key -> goto reject-chain (no endpoints) | drop (Local policy,
 *                             none on this node)
 *   chain services            ip daddr . meta l4proto . th dport vmap @services
 *   chain nat-prerouting / nat-output (nat, dstnat)   jump services
 *   chain filter-input / -forward / -output (filter, dstnat-10)
 *                             ip daddr . meta l4proto . th dport vmap @no-endpoint-services
 *   chain nat-postrouting (nat, srcnat)   mark & MASQ != 0 -> masquerade
 *   chain svc-<group>         numgen random mod N vmap { 0 : goto ep-<group>/<ip>:<port>, ... }
 *   chain ext-<group>         jump mark-for-masquerade; goto svc-<group>
 *   chain ep-<group>/<ip>:<port>   ip saddr <ip> jump mark-for-masquerade (hairpin);
 *                             meta l4proto <p> dnat to <ip>:<port>
 *   with sessionAffinity ClientIP (timeout T), per endpoint chain a set
 *   set aff-<group>/<ip>:<port>  ipv4_addr, flags dynamic,timeout
 *                             ep-...: update @aff-... { ip saddr timeout T } before the dnat;
 *                             svc-<group>: ip saddr @aff-... goto ep-... for each endpoint,
 *                             before the numgen rule (kube-proxy's nftables affinity)
 * (<group> is the planner's "ns/name/proto/port[/local]".)
 *
 * When a UDP endpoint chain is deleted, after the transaction commits, the conntrack entries
 * sent to that group's addresses and translated to the removed backend are deleted
 * (conntrack.h), so UDP clients move to the remaining backends at their next datagram.
 *
 * Every sync is ONE netlink transaction (NFNL_MSG_BATCH_BEGIN .. END) holding only what
 * changed: map elements of changed entries, chains whose content changed (flushed and refilled
 * inside the transaction, so no packet sees them empty), chains no longer wanted.  Each
 * service chain carries a content hash in its comment (chain userdata), so a restarted writer
 * dumps the table's chains and map elements once, diffs, and changes only what differs: the
 * table is never flushed, conntrack is untouched, established connections survive.
 * Nothing outside the table is touched. */
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
	unsigned chains_written; /* chains created or refilled */
	unsigned chains_deleted;
	unsigned services;	    /* Services whose entries changed */
	unsigned conntrack_deleted; /* stale UDP conntrack entries deleted after the commit */
};

struct nft_writer;
/* The writer reads sp (it calls svc_planner_update itself); it does not own it. */
struct nft_writer *nft_writer_new(struct svc_planner *sp, const struct nft_cfg *cfg);
void nft_writer_free(struct nft_writer *w);
/* Pending work: the planner has stale Services, or a (re)sync is due. */
bool nft_writer_dirty(const struct nft_writer *w);
/* Bring the kernel to the planner's desired state. 0 or -errno (then nothing was changed:
 * the transaction is atomic; the next sync dumps the kernel again). */
int nft_writer_sync(struct nft_writer *w);
/* Dump the kernel again on the next sync (drift repair). */
void nft_writer_request_resync(struct nft_writer *w);
const struct nft_sync_stats *nft_writer_stats(const struct nft_writer *w);
/* The kernel's error for the last failed sync, or "". */
const char *nft_writer_error(const struct nft_writer *w);
/* Delete twill's table (uninstall, tests). 0 (also when absent) or -errno. */
int nft_table_delete(const char *table);
