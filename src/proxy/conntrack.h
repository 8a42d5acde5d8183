/* conntrack: delete stale connection-tracking entries through ctnetlink (libmnl, no
 * libnetfilter_conntrack, no `conntrack` binary).
 *
 * Why: UDP has no connection end, so after a Service backend goes away the kernel keeps
 * translating a client's datagrams (same 5-tuple) to the dead backend for as long as the
 * client keeps sending (the classic kube-proxy DNS bug).  kube-proxy deletes the entries
 * whose original destination is the Service address and whose reply source is the removed
 * endpoint (pkg/proxy/conntrack: ClearEntriesForNAT / ClearEntriesForPortNAT); so does this.
 * IPv4 and IPv6, every conntrack zone, the network namespace of the caller. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One conntrack entry's tuples (addresses in network order: 4 bytes for AF_INET, the rest
 * zero; 16 for AF_INET6; ports in host order). */
struct ct_entry {
	uint8_t family; /* AF_INET, AF_INET6 */
	uint8_t l4;	/* IPPROTO_* */
	uint16_t zone;
	uint8_t osrc[16], odst[16]; /* original direction */
	uint16_t osport, odport;
	uint8_t rsrc[16], rdst[16]; /* reply direction */
	uint16_t rsport, rdport;
};

/* What to delete: entries of family and protocol l4 sent to dst:dport (a Service VIP or node
 * address and port) that were translated to the backend rsrc:rsport. */
struct ct_match {
	uint8_t family;
	uint8_t l4;
	uint16_t dport;
	uint8_t dst[16]; /* as in ct_entry */
	uint8_t rsrc[16];
	uint16_t rsport;
};

bool ct_entry_matches(const struct ct_entry *e, const struct ct_match *m);
/* Parse one ctnetlink IPCTNL_MSG_CT_NEW message (a dump reply). 0, or -EINVAL when it is not
 * an IPv4 or IPv6 entry with both tuples. */
struct nlmsghdr;
int ct_entry_parse(const struct nlmsghdr *nlh, struct ct_entry *e);
/* Call fn for each IPv4 and IPv6 entry in the table (stops when fn returns non-zero).
 * 0 or -errno. */
int ct_dump(int (*fn)(const struct ct_entry *e, void *arg), void *arg);
/* Delete every entry matching any of m (one dump, then one delete per entry).  Returns the
 * number deleted (entries that vanished meanwhile are not counted), or -errno. */
int ct_delete_matching(const struct ct_match *m, size_t n);
