/* control: the standalone control plane's networking jobs (what kube-controller-manager's
 * nodeipam and endpointslice controllers and kube-scheduler do), for clusters without an
 * API server.
 *
 * One agent at a time is the leader (flock on <manifests>/.twill/.leader.lock).  The
 * leader subscribes to the store and writes its decisions as overlay files into
 * <manifests>/.twill/ (see docs/architecture.md), which every agent's store then reads:
 *   - podCIDR for each Node without spec.podCIDR(s), from the cluster CIDR;
 *   - spec.nodeName for each Pod without one (spread: fewest pods of the same owner,
 *     then fewest pods, then node name);
 *   - one EndpointSlice per Service with a selector, from the matching Pods' IPs and
 *     readiness (seed 001);
 *   - what the API server allocates for a Service (a ClusterIP from the service CIDR,
 *     nodePorts and the healthCheckNodePort from the node-port range) and what MetalLB's
 *     controller assigns (status.loadBalancer.ingress from an IPAddressPool), written as
 *     the overlay .twill/service.<ns>.<name>.json.  Allocation problems (a full range or
 *     pool, a requested address taken, two Services claiming one nodePort or ClusterIP)
 *     are reported per Service through controller_errors(); the Service keeps what it had.
 * Earlier decisions found in .twill/ are kept: a restart allocates nothing twice.
 * The first controller_sync() after taking the lead also reconciles the files already in
 * .twill/ (removing those whose object is gone), so load the store before that sync. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "lib/ip.h"
#include "store/store.h"

/* Value of the endpointslice.kubernetes.io/managed-by label on the EndpointSlices the
 * controller writes (a label value: no '/', hence not "twill.io/controller"; shaped like
 * Kubernetes' own "endpointslice-controller.k8s.io"). */
#define CONTROL_MANAGED_BY "controller.twill.io"

/* Defaults of kube-apiserver's --service-cluster-ip-range and --service-node-port-range. */
#define CONTROL_DEFAULT_SERVICE_CIDR "10.96.0.0/16"
#define CONTROL_DEFAULT_NODE_PORT_MIN 30000
#define CONTROL_DEFAULT_NODE_PORT_MAX 32767
/* MetalLB's annotation naming the IPAddressPool a Service takes its address from. */
#define CONTROL_ANN_ADDRESS_POOL "metallb.universe.tf/address-pool"

/* Zero fields take their defaults. */
struct controller_cfg {
	const char *manifest_dir;
	size_t ncluster_cidrs;
	struct ipprefix cluster_cidrs[2]; /* one per family; default 10.244.0.0/16 */
	unsigned node_cidr_len[2];	  /* per family; default 24 (IPv4), 64 (IPv6) */
	/* One service CIDR per family. A Service gets one ClusterIP per family it asks for
	 * (spec.ipFamilies / ipFamilyPolicy), primary family first, each from its family's
	 * CIDR; the network address and the first host address (the `kubernetes` Service's)
	 * are never given out, nor the IPv4 broadcast address.  Default 10.96.0.0/16, plus
	 * fd00:96::/108 when the cluster CIDRs include IPv6. */
	size_t nservice_cidrs;
	struct ipprefix service_cidrs[2];
	uint16_t node_port_min, node_port_max; /* default 30000-32767 */
};

struct controller;
/* Subscribes to the store; does not lead until controller_try_lead() succeeds. */
struct controller *controller_new(struct store *s, const struct controller_cfg *cfg);
void controller_free(struct controller *c);
/* Take the leader lock if free (non-blocking). true while this process leads. */
bool controller_try_lead(struct controller *c);
bool controller_is_leader(const struct controller *c);
/* Something changed that the leader must act on. */
bool controller_dirty(const struct controller *c);
/* Write the overlay files for everything that changed since the last call.  Only writes
 * files whose content changes.  0 or -errno (then it stays dirty and is retried). */
int controller_sync(struct controller *c);
/* Current per-Service allocation errors ("Service ns/name: ..."), sorted, NULL-terminated;
 * valid until the next controller_sync().  Each is also logged once when it appears. */
const char *const *controller_errors(const struct controller *c);
