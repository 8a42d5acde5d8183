/* consts: names and numbers that more than one subsystem must agree on. */
#pragma once

/* Route protocol numbers (rtm_protocol) that mark what twill owns in the kernel.
 * The agent's route writer only ever lists, changes or deletes routes carrying its own
 * number; pod routes installed by the CNI plugin carry the other, so neither side
 * touches what the other owns. (Unused in /etc/iproute2/rt_protos.) */
#define TWILL_RTPROT_NODE 116 /* cross-node routes (host-gw, vxlan) */
#define TWILL_RTPROT_POD 117  /* per-pod /32 and /128 routes of the routed wiring */
#define TWILL_RTPROT_BGP 118  /* routes learned through BGP (src/bgp) */

#define TWILL_VXLAN_DEFAULT_VNI 1
#define TWILL_VXLAN_DEFAULT_PORT 4789
#define TWILL_VXLAN_OVERHEAD 50 /* outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14 */
#define TWILL_VXLAN_DEV_FMT "twill.%u" /* per VNI, like Flannel's flannel.<VNI> */

#define TWILL_BRIDGE_DEFAULT "cni0"
#define TWILL_VETH_PREFIX "tw"		/* host side: "tw" + 12 hex of hash(containerID/ifname) */
#define TWILL_ROUTED_GW "169.254.1.1"	/* the routed wiring's pod gateway, answered by proxy ARP */
#define TWILL_ROUTED_HOST_MAC "ee:ee:ee:ee:ee:ee"

#define TWILL_DEFAULT_CLUSTER_CIDR "10.244.0.0/16"
#define TWILL_DEFAULT_NODE_CIDR_LEN 24
#define TWILL_DEFAULT_STATE_DIR "/run/twill"
#define TWILL_NODE_STATE_FILE "node.json" /* in the state dir: what the agent tells the CNI plugin */
#define TWILL_STATUS_FILE "status.json"   /* in the state dir: the agent's status */

/* Annotations */
#define TWILL_ANN_VTEP_MAC "twill.io/vtep-mac"
