/* agent_bgp: the node agent's BGP component (`twill agent --routing bgp`).
 *
 * Native routing with no overlay and no static cross-node route: the BGP speaker
 * (bgp/bgp.h) of this node announces its podCIDRs and LoadBalancer addresses and installs
 * what it learns (the other nodes' podCIDRs) under TWILL_RTPROT_BGP.  Configured from the
 * datastore, shaped like Calico and MetalLB:
 *   - BGPConfiguration `default`: asNumber (64512 when absent), nodeToNodeMeshEnabled
 *     (default true), listenPort, nodeMeshMaxRestartTime (graceful restart time, 120 s),
 *     serviceClusterIPs / serviceExternalIPs / serviceLoadBalancerIPs (CIDRs announced);
 *   - the node-to-node iBGP mesh among every Node (InternalIP), or with route reflectors:
 *     Nodes carrying the annotation or label twill.io/route-reflector-cluster-id (or
 *     Calico's projectcalico.org/RouteReflectorClusterID) reflect to the others, which
 *     peer only with them;
 *   - a Node's own AS from the annotation twill.io/bgp-as (or projectcalico.org/ASNumber);
 *   - BGPPeer: peerIP + asNumber, or peerSelector (Nodes); which nodes peer: node,
 *     nodeSelector (Calico selectors: all(), has(k), !has(k), k == 'v', k != 'v', joined
 *     by &&), all nodes when neither; password (plain, or password.secretKeyRef: a Secret
 *     of that name in any one namespace), ttlSecurity, sourceAddress, maxRestartTime (the
 *     graceful restart time advertised to that peer, at most 4095 s), keepOriginalNextHop
 *     (an eBGP peer then hears the routes learned from others too, with their own next
 *     hop, instead of only this node's), and the annotation twill.io/bfd: "true" (BFD with
 *     its sessions).  A bad value is an error on that BGPPeer only;
 *   - LoadBalancer ingress addresses as /32 and /128 when a BGPAdvertisement covers their
 *     IPAddressPool (its communities, large communities, localPref, nodeSelectors,
 *     aggregationLength(V6): the aggregate instead, peers: only to the sessions of those
 *     BGPPeers; a name no BGPPeer has is an error on the advertisement) or the
 *     BGPConfiguration's serviceLoadBalancerIPs contain them; with externalTrafficPolicy
 *     Local only while this node has a ready local endpoint (EndpointSlices).
 * A store change recomputes the wanted announcements and peers and hands the speaker only
 * the difference (a new LB address is one UPDATE).  Graceful restart is on: stopping the
 * agent (SIGTERM or SIGKILL) leaves the kernel routes, the peers keep ours for the restart
 * time, and the restarted agent takes the routes over without a gap.
 * State: <state-dir>/bgp.json in `twill bgp run`'s format (read by `twill bgp peers|routes
 * --state-dir DIR`) and a summary in status.json. */
#pragma once
#include <json-c/json.h>
#include <stdbool.h>

#include "store/store.h"

struct agent_bgp;
/* epfd: the agent's epoll set (the speaker's fd is added when it starts). */
struct agent_bgp *agent_bgp_new(struct store *s, const char *node, const char *state_dir, int epfd);
/* Stops the speaker gracefully (kernel routes stay). NULL is fine. */
void agent_bgp_free(struct agent_bgp *ab);
/* epoll_wait timeout (ms) the speaker needs; -1 for none or ab NULL. */
int agent_bgp_timeout_ms(struct agent_bgp *ab);
/* true when fd is the speaker's (it runs in agent_bgp_sync). */
bool agent_bgp_handle(const struct agent_bgp *ab, int fd);
/* Apply store changes, run the speaker, write bgp.json.  true when the status summary
 * changed (status.json must be rewritten). */
bool agent_bgp_sync(struct agent_bgp *ab);
/* The status.json section (new reference). */
json_object *agent_bgp_status(const struct agent_bgp *ab);

/* Calico selector subset (see above) against labels: 1 match, 0 no, -1 unsupported (why
 * in err). */
int agent_bgp_selector_match(const char *sel, const struct labels *l, char *err, size_t errlen);
