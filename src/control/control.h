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
 *     readiness (seed 001).
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

struct controller_cfg {
	const char *manifest_dir;
	size_t ncluster_cidrs;
	struct ipprefix cluster_cidrs[2]; /* one per family; default 10.244.0.0/16 */
	unsigned node_cidr_len[2];	  /* per family; default 24 (IPv4), 64 (IPv6) */
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
