/* svc_plan: the Service planner (kube-proxy's model of Services, without a dataplane).
 *
 * From Services and EndpointSlices in the store it computes, for this node, the desired
 * service entries: (VIP, protocol, port) -> backends, for every ClusterIP, NodePort (on each
 * node address the caller gives), LoadBalancer ingress IP and externalIP.  Headless and
 * ExternalName Services get none.  Semantics follow kube-proxy (pkg/proxy/topology.go,
 * pkg/proxy/nftables/proxier.go):
 *   - backends come from the Service's EndpointSlices (label kubernetes.io/service-name), the
 *     port matched by name and protocol, so named targetPorts resolve per endpoint;
 *   - ready endpoints are used; when none is ready, serving-and-terminating ones are;
 *   - internalTrafficPolicy: Local filters ClusterIP traffic to this node's endpoints,
 *     externalTrafficPolicy: Local filters NodePort/LB/externalIP traffic likewise (and keeps
 *     the client address: no masquerade); the ready/terminating fallback is applied to the
 *     local set independently;
 *   - no endpoints at all: reject; endpoints but none local under a Local policy: drop;
 *   - sessionAffinity ClientIP carries its timeout.
 * Two Services asking for one (VIP, protocol, port) (e.g. the same NodePort): the first one
 * planned keeps it, the other gets an error for that entry; its other entries still apply.
 *
 * Incremental: an event for one Service or EndpointSlice marks only that Service stale;
 * svc_planner_update() recomputes stale Services and reports which ones changed. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* Where the entry's VIP comes from. */
enum svc_scope { SVC_SCOPE_CLUSTER_IP, SVC_SCOPE_NODE_PORT, SVC_SCOPE_EXTERNAL_IP, SVC_SCOPE_LB };
const char *
svc_scope_name(enum svc_scope s); /* "ClusterIP", "NodePort", "ExternalIP", "LoadBalancer" */

enum svc_verdict { SVC_FORWARD, SVC_REJECT, SVC_DROP };
const char *svc_verdict_name(enum svc_verdict v); /* "forward", "reject", "drop" */

/* Backend selection, per Service by annotation SVC_ANN_SCHEDULER (default random, as
 * kube-proxy); weights (SVC_ANN_WEIGHTS, "IP=W,...", default 1) apply to every scheduler. */
enum svc_sched { SVC_SCHED_RANDOM, SVC_SCHED_RR, SVC_SCHED_SH, SVC_SCHED_DH };
#define SVC_ANN_SCHEDULER "twill.io/lb-scheduler"
#define SVC_ANN_WEIGHTS "twill.io/lb-weights"
#define SVC_WEIGHT_MAX 100		      /* fits svc_backend.weight (uint8_t) */
const char *svc_sched_name(enum svc_sched s); /* "random", "rr", "sh", "dh" */

struct svc_backend {
	struct ipaddr ip;
	uint16_t port;	/* the endpoint's port (targetPort resolved) */
	uint8_t weight; /* 1..SVC_WEIGHT_MAX (SVC_ANN_WEIGHTS) */
	/* bits and a byte-sized weight: 32 bytes a backend, not 40 (one per endpoint) */
	bool ready : 1, serving : 1, terminating : 1;
	bool local : 1;	  /* on this node */
	const char *node; /* nodeName or NULL; interned (str_intern): never free it */
};

struct svc_entry {
	struct ipaddr vip;
	enum proto proto;
	uint16_t port;
	enum svc_scope scope;
	/* "ns/name/tcp/80" (the Service port), plus "/local" when the backends are this node's
	 * only.  Entries of one Service with the same group have the same backends, so a
	 * dataplane can share one backend-selection chain per group. */
	char *group;
	bool masquerade; /* external traffic with Cluster policy: SNAT so replies come back */
	enum svc_verdict verdict;  /* SVC_FORWARD iff nbackends > 0 */
	uint32_t affinity_timeout; /* sessionAffinity ClientIP: seconds; 0 = none */
	enum svc_sched sched;
	size_t nbackends;
	struct svc_backend *backends; /* sorted by (ip, port), no duplicates */
};

struct svc_entries {
	size_t n, cap;
	struct svc_entry *v; /* sorted by key (vip, proto, port) */
};
void svc_entries_free(struct svc_entries *e);
bool svc_entries_equal(const struct svc_entries *a, const struct svc_entries *b);
int svc_entry_key_cmp(const struct svc_entry *a, const struct svc_entry *b);
/* "10.96.0.10:53/UDP" */
const char *svc_entry_key_fmt(const struct svc_entry *e, char *buf, size_t size);
/* One line: key, scope, verdict, group, affinity, backends. */
const char *svc_entry_fmt(const struct svc_entry *e, char *buf, size_t size);

/* What the planner knows about this node. */
struct svc_plan_in {
	const char *node_name;
	const struct ipaddr *node_addrs; /* where NodePorts listen */
	size_t nnode_addrs;
};

/* What a Service asks for by annotation: the scheduler (SVC_ANN_SCHEDULER: random, rr,
 * wrr (= rr; weights apply to every scheduler), sh (source hash), dh (destination hash)) and
 * the backend weights (SVC_ANN_WEIGHTS: "IP=W,IP=W", others 1).  0, or -EINVAL with why in
 * err: then lb holds the defaults (random, equal weights), as the annotations are ignored as
 * a whole.  Free lb->weights. */
struct svc_weight {
	struct ipaddr ip;
	uint16_t weight;
};
struct svc_lb {
	enum svc_sched sched;
	size_t nweights;
	struct svc_weight *weights;
};
int svc_lb_config(const struct object *svc, struct svc_lb *lb, char *err, size_t errsize);

/* Pure: the entries of one Service given its EndpointSlices (slices of other Services are
 * ignored).  out is cleared first.  Returns 0, or -EINVAL when svc is not a Service. */
int svc_plan_service(const struct object *svc, const struct object *const *slices, size_t nslices,
		     const struct svc_plan_in *in, struct svc_entries *out);

/* The addresses a Node's NodePorts listen on: its InternalIPs (every family), or, when it
 * has none, its first ExternalIP.  Returns how many were stored in out (at most max). */
size_t svc_node_addrs(const struct object *node, struct ipaddr *out, size_t max);

/* ---- the incremental planner over the store ---- */
struct svc_planner;
/* Copies in (strings and addresses). Subscribes to Services and EndpointSlices; objects
 * already in the store are planned on the first update. */
struct svc_planner *svc_planner_new(struct store *s, const struct svc_plan_in *in);
void svc_planner_free(struct svc_planner *sp);
/* New node addresses: replans every Service that has a NodePort. */
void svc_planner_set_node_addrs(struct svc_planner *sp, const struct ipaddr *addrs, size_t n);
bool svc_planner_dirty(const struct svc_planner *sp);
/* Recompute the stale Services.  Returns how many Services' entries changed and, when
 * changed is not NULL, their keys ("ns/name", sorted; free with svc_planner_keys_free). */
size_t svc_planner_update(struct svc_planner *sp, char ***changed);
void svc_planner_keys_free(char **keys, size_t n);
/* A Service's current entries (NULL if it has none / is unknown). Valid until the next update. */
const struct svc_entries *svc_planner_get(const struct svc_planner *sp, const char *key);
/* Why some of a Service's entries were left out (NULL if nothing was). */
const char *svc_planner_error(const struct svc_planner *sp, const char *key);
/* Visit every Service with entries, in key order; stops when fn returns non-zero. */
int svc_planner_foreach(const struct svc_planner *sp,
			int (*fn)(const char *key, const struct svc_entries *e, void *arg),
			void *arg);
/* Number of Service recomputations so far (lets tests check that work is incremental). */
uint64_t svc_planner_recomputations(const struct svc_planner *sp);
