/* policy: NetworkPolicy (networking.k8s.io/v1), Calico Felix's job compiled to nftables.
 *
 * The planner (policy_plan.c, pure) reads Pods, Namespaces and NetworkPolicies from the
 * store and computes, for the pods of one node, the desired content of the table
 * `inet twill-policy` (layout: policy_nft.c):
 *   - per local pod isolated for ingress (egress) a verdict chain in-<ns>/<pod>
 *     (eg-<ns>/<pod>) whose rules are the union of the allow rules of every policy that
 *     selects the pod for that direction, ending in a drop counted per chain and per
 *     isolating policy (named counters drop-in-<ns>/<policy>, drop-eg-<ns>/<policy>);
 *   - named address sets per peer selector (p4-<hash>, p6-<hash>: the addresses of every
 *     pod, on any node, the peer selects), so a pod that comes, goes or changes labels
 *     changes set elements, not rules; interval sets per ipBlock (b4-/b6-<hash>: cidr
 *     minus except, content fixed by the name);
 *   - map elements pod address -> jump <chain> (in4/in6 by destination, eg4/eg6 by source)
 *     and the set of the node's known pod addresses (known4/known6, for failing closed).
 * Semantics: a pod is isolated in a direction as soon as one policy of its namespace
 * selects it with that policyType; allowed = union of the rules; a rule allows when a peer
 * AND a port match; peers: podSelector (policy's namespace), namespaceSelector (pods in
 * matching namespaces; namespaces carry kubernetes.io/metadata.name=<name>), both in one
 * peer (AND), ipBlock (cidr minus except); ports: numeric, endPort ranges, named ports
 * (resolved against the destination pod's container ports: the local pod for ingress,
 * each peer pod for egress, which gives per-address rules); hostNetwork pods are neither
 * policed nor selected as peers (their traffic is node traffic).
 *
 * policy_explain() evaluates the same semantics for one flow, without nftables, for
 * `twill policy trace`. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/ip.h"
#include "model/model.h"
#include "store/store.h"

#define POLICY_TABLE "twill-policy"
#define POLICY_FILE "policy.json" /* in the agent's state dir */

/* One rule of a pod chain: [peer] [protocol [ports]] -> return (allowed). */
struct pol_rule {
	int family;	       /* AF_INET, AF_INET6 */
	char *set;	       /* peer address set (p*, b*), NULL: any peer or `addr` */
	struct ipaddr addr;    /* a literal peer (egress named ports), family 0: none */
	uint8_t l4;	       /* 0: any protocol, else IPPROTO_TCP/UDP/SCTP */
	uint16_t lo, hi;       /* destination ports, 0/0: all */
	char *why;	       /* "ns/policy ingress[0]" */
};

struct pol_chain {
	bool egress;
	char *pod;	/* ns/name */
	size_t nrules;
	struct pol_rule *rules;
	size_t npolicies;
	char **policies; /* ns/name of the policies isolating the pod in this direction */
	uint64_t sig;	 /* content hash */
};

struct pol_range {
	struct ipaddr lo, hi; /* inclusive; lo == hi for plain sets */
};

struct pol_set {
	int family;
	bool interval; /* ipBlock sets: content fixed by the name */
	size_t n;
	struct pol_range *v; /* plain sets: sorted unique addresses */
	char *what;	     /* description, for list/trace */
};

/* map element: pod address -> chain */
struct pol_elem {
	bool egress;
	struct ipaddr addr;
	char *chain;
};

struct pol_plan {
	struct smap chains; /* name -> struct pol_chain */
	struct smap sets;   /* name -> struct pol_set */
	size_t nelems;
	struct pol_elem *elems;
	size_t nknown;
	struct ipaddr *known; /* every local policed pod's addresses (sorted) */
	bool enforcing;	      /* at least one NetworkPolicy exists: unknown pods fail closed */
	size_t npolicies;
};

/* Plan the pods of `node` (NULL: every pod, for tests and trace). */
struct pol_plan *pol_plan_build(const struct store *st, const char *node);
void pol_plan_free(struct pol_plan *p);
/* JSON (policy.json): the plan's pods, isolation and rules in words. Caller frees. */
char *pol_plan_json(const struct pol_plan *p, const char *node, const char *manifests);

/* ---- one flow, in words ---- */
struct pol_verdict {
	bool allowed;
	char *text; /* several lines: egress of the source, ingress of the destination */
};
/* src, dst: "ns/pod" or an address. port/proto the destination port. -EINVAL/-ENOENT with
 * text set to the reason when an endpoint cannot be resolved. */
int policy_explain(const struct store *st, const char *src, const char *dst, uint16_t port,
		   enum proto proto, struct pol_verdict *out);

/* ---- the nftables writer (policy_nft.c) ---- */
struct pol_sync_stats {
	bool full;
	unsigned messages;
	unsigned chains_written, chains_deleted;
	unsigned sets_added, sets_deleted;
	unsigned elems_added, elems_deleted; /* set and map elements */
};
struct pol_writer;
struct pol_writer *pol_writer_new(const char *table); /* NULL: POLICY_TABLE */
void pol_writer_free(struct pol_writer *w);
/* Make the kernel hold `plan` (one transaction). 0 or -errno (nothing changed). */
int pol_writer_sync(struct pol_writer *w, const struct pol_plan *plan);
void pol_writer_request_resync(struct pol_writer *w);
bool pol_writer_needs_dump(const struct pol_writer *w);
const struct pol_sync_stats *pol_writer_stats(const struct pol_writer *w);
const char *pol_writer_error(const struct pol_writer *w);
int pol_table_delete(const char *table);
/* The per-policy drop counters (counter objects drop-<in|eg>-<ns>/<policy>, referenced by
 * the drop rule of every chain the policy isolates) in this network namespace's table. */
typedef void (*pol_counter_fn)(bool egress, const char *policy, uint64_t packets,
			       uint64_t bytes, void *arg);
int pol_counters_read(const char *table, pol_counter_fn fn, void *arg);

/* `twill policy list|trace` */
int policy_main(int argc, char **argv);
