/* lbdev: the LoadBalancer addresses this node serves, held on the dummy device `kube-lb0`
 * as PureLB does ("virtual network" addresses), so that routing daemons and the BGP
 * speaker see them as local and `ip addr show kube-lb0` shows what the node serves.
 *
 *   - Which addresses: every status.loadBalancer.ingress address for which the Service
 *     planner (svc_plan.h) has an entry on this node whose verdict is not drop -- with
 *     externalTrafficPolicy: Local a node without a local endpoint does not hold it.
 *   - How: each as /32 (IPv4) or /128 (IPv6, IFA_F_NODAD), scope global, on a device made
 *     when the node first serves an address (none served: no device).  The device is a
 *     dummy (NOARP from its creation) and is kept up, as PureLB keeps it: an IPv6 address
 *     on a down device stays tentative, without its local route (IPv4 ones get theirs;
 *     kube-proxy's IPVS mode keeps kube-ipvs0 down and holds IPv4 only).
 *   - ARP: NOARP keeps kube-lb0 itself silent, but Linux answers ARP on any interface for
 *     any local address (arp_ignore=0), so a node would answer the router for a pool that
 *     lies on the node's own subnet.  lbdev therefore raises net.ipv4.conf.all.arp_ignore
 *     to 1 and arp_announce to 2 (never lowers them), as kube-proxy's strictARP does:
 *     ARP is answered only for addresses of the receiving interface.  IPv6 needs nothing:
 *     neighbour solicitations are answered only for the receiving interface's addresses.
 *   - Incremental: the device's addresses are read once (at start and after an error) and
 *     then tracked; a sync adds and deletes only the difference.  A restart reconciles
 *     against what is on the device without flushing.  Ownership is by name: every
 *     address on kube-lb0 is lbdev's; no other device is touched.
 *   - No dummy support in the kernel (EOPNOTSUPP): logged once, reported by
 *     lbdev_status(), and never retried (Services still work: the dataplane's rules do
 *     not need the addresses to be local).
 * Conventions: 0 or -errno; runs in the caller's current network namespace. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "lib/ip.h"
#include "proxy/svc_plan.h"

#define LBDEV_DEVICE "kube-lb0"

/* Pure: the changes that bring `have` to `want` (both sorted by ip_cmp, no duplicates).
 * add and del must hold nwant and nhave entries; their counts are returned through
 * *nadd and *ndel. */
void lbdev_diff(const struct ipaddr *have, size_t nhave, const struct ipaddr *want, size_t nwant,
		struct ipaddr *add, size_t *nadd, struct ipaddr *del, size_t *ndel);

/* Pure: the LoadBalancer addresses in entries that the node serves (scope
 * SVC_SCOPE_LB, verdict not drop), appended to *v (realloc'd; *n counts), then sorted and
 * made unique. */
void lbdev_collect(const struct svc_entries *e, struct ipaddr **v, size_t *n, size_t *cap);

struct lbdev;
/* dev NULL = LBDEV_DEVICE.  Nothing is done before the first sync. */
struct lbdev *lbdev_new(const struct svc_planner *sp, const char *dev);
void lbdev_free(struct lbdev *d);
/* Bring the device to the planner's current LoadBalancer addresses.  Cheap when nothing
 * changed.  0, or -errno with lbdev_status() saying why (the next call retries, except
 * when the kernel has no dummy devices: then 0 and nothing is ever done); -EAGAIN while
 * backing off after a failure (lbdev_status() still says why). */
int lbdev_sync(struct lbdev *d);
/* "" while fine, else one line for status.json / logs. */
const char *lbdev_status(const struct lbdev *d);
/* Addresses currently held (after a successful sync). */
size_t lbdev_count(const struct lbdev *d);
