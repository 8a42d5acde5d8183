/* ipam: host-local style address management for the CNI plugin.
 *
 * On disk, in one directory per network (<stateDir>/ipam/<network>/):
 *   <ip>                 a lease: "containerID\nifname\n", created with O_CREAT|O_EXCL
 *   att-<16 hex>         the attachment's index: "containerID\nifname\n<ip>\n..." so DEL
 *                        finds its addresses without reading every lease
 *   last_reserved_ip.<n> the last address handed out from range n (round robin)
 *   lock                 flock()ed around every change
 * Every function takes the lock itself; nothing is cached between calls, so concurrent
 * plugin processes on one directory are safe. */
#pragma once
#include <stdbool.h>

#include "lib/ip.h"

#define IPAM_MAX_RANGES 2

struct ipam {
	char *dir;
	int dirfd;
	int lockfd;
};

struct ipam_range {
	struct ipprefix cidr; /* normalized */
	bool reserve_gw;      /* also keep the first address (the bridge's gateway) */
};

/* <state_dir>/ipam/<network> (malloc'd). */
char *ipam_dir(const char *state_dir, const char *network);
/* Open (creating) the lease directory. 0 or -errno. */
int ipam_open(struct ipam *im, const char *dir);
void ipam_close(struct ipam *im);

/* True if a is a usable host address of r (not network, broadcast, reserved gateway). */
bool ipam_usable(const struct ipam_range *r, const struct ipaddr *a);
/* One address from each range for (container_id, ifname), round robin after the last one
 * handed out.  All or nothing. 0, -ENOSPC when a range is full, -EEXIST when the
 * attachment already holds addresses (found through its index), or -errno. */
int ipam_alloc(struct ipam *im, const struct ipam_range *ranges, int nranges,
	       const char *container_id, const char *ifname, struct ipaddr *out);
/* Addresses leased to (container_id, ifname); count (0..max) or -errno. */
int ipam_lookup(struct ipam *im, const char *container_id, const char *ifname, struct ipaddr *out,
		int max);
/* Release every lease of (container_id, ifname); the released addresses go to out.
 * Count or -errno; releasing nothing is success (0). */
int ipam_release(struct ipam *im, const char *container_id, const char *ifname, struct ipaddr *out,
		 int max);
/* Walk every lease: cb(ip, container_id, ifname, arg) returning true releases it. Also
 * drops attachment index files whose leases are all gone.  Count released or -errno. */
int ipam_gc(struct ipam *im,
	    bool (*release)(const struct ipaddr *ip, const char *container_id, const char *ifname,
			    void *arg),
	    void *arg);
/* Number of leases held (for tests and status). */
int ipam_count(struct ipam *im);
