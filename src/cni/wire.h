/* wire: the kernel side of a pod attachment (veth pair, addresses, routes, bridge), through
 * the nl layer only.  Two wirings:
 *   routed (Calico style): pod address /32 (/128), pod routes via 169.254.1.1 answered by
 *     proxy ARP on the host veth, host route <podIP>/32 dev <veth> proto TWILL_RTPROT_POD;
 *   bridge (kubenet/Flannel style): host veth enslaved to a bridge holding the podCIDR's
 *     first address as gateway; pod address with the podCIDR's prefix length.
 * Every function returns 0 or -errno; on error `why` says which step failed. */
#pragma once
#include <linux/if.h>
#include <stddef.h>

#include "cni/spec.h"
#include "lib/ip.h"

struct nl_sock;

struct wire_spec {
	enum cni_wiring wiring;
	unsigned mtu;
	char bridge[IFNAMSIZ];
	char host[IFNAMSIZ]; /* host end of the veth: wire_veth_name() */
	const char *ifname;  /* pod end, CNI_IFNAME */
	const char *sandbox; /* CNI_NETNS, reported in the result */
	int n;		     /* addresses, one per podCIDR */
	struct ipprefix cidr[CNI_MAX_CIDRS];
	struct ipaddr ip[CNI_MAX_CIDRS];
};

/* "tw" + 12 hex digits of a hash of (containerID, ifname): stable, so DEL and GC find the
 * host end without state, and unique per attachment. */
void wire_veth_name(const char *container_id, const char *ifname, char out[IFNAMSIZ]);
/* The pod's gateway for family in this wiring (169.254.1.1 / fe80::ecee:eeff:feee:eeee
 * routed; the podCIDR's first address bridged). */
void wire_gateway(const struct wire_spec *w, int i, struct ipaddr *gw);

/* Create the attachment; node = socket in the node's namespace (the caller's), pod = socket
 * in the pod's namespace, podfd = that namespace.  On failure nothing is left behind. */
int wire_add(struct nl_sock *node, struct nl_sock *pod, int podfd, const struct wire_spec *w,
	     struct cni_result *res, char *why, size_t whylen);
/* Remove the attachment's host veth (its pod end goes with it) and, if the veth was already
 * gone, any pod route left for ips.  Missing things are success. */
int wire_del(struct nl_sock *node, const char *host, const struct ipaddr *ips, int n, char *why,
	     size_t whylen);
/* Verify the attachment is as wire_add left it, and everything prev (may be NULL) lists for
 * the pod interface: -ENOENT/-EINVAL with why on a mismatch. */
int wire_check(struct nl_sock *node, struct nl_sock *pod, const struct wire_spec *w,
	       const struct cni_result *prev, char *why, size_t whylen);
