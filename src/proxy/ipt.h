/* ipt: the iptables dataplane for Services, in kube-proxy's exact layout
 * (kubernetes pkg/proxy/iptables/proxier.go, syncProxyRules / writeServiceToEndpointRules),
 * so the troubleshooting commands of the seeds (`iptables -t nat -L KUBE-SERVICES -n`,
 * `iptables -t nat -L KUBE-SVC-... -n`) work unchanged.
 *
 * Three layers:
 *   1. ipt_ports_add(): the planner's entries of one Service (svc_plan.h) -> kube-proxy's
 *      per-service-port model (cluster IP, node port, external/LB IPs, policies, Cluster and
 *      Local endpoint lists).  The planner decides which endpoints are usable and which
 *      Service owns a (VIP, proto, port); this layer only regroups.
 *   2. ipt_render(): pure; that model -> one iptables-restore input (*filter and *nat),
 *      chain names hashed as kube-proxy hashes them (base32(sha256(name+proto[+ep]))[:16]).
 *      Given the current iptables-save text, it also declares and deletes (-X) stale
 *      KUBE-SVC/SVL/EXT/FW/SEP chains and inserts the PREROUTING/OUTPUT/POSTROUTING/INPUT/
 *      FORWARD jumps that are missing, so one restore does everything atomically.
 *   3. ipt_writer: iptables-save, render, `iptables-restore --noflush --counters` (the
 *      restore tool IS the kernel interface of this dataplane, as for kube-proxy).
 *
 * Owned chains: nat KUBE-SERVICES, KUBE-NODEPORTS, KUBE-POSTROUTING, KUBE-MARK-MASQ; filter
 * KUBE-SERVICES, KUBE-EXTERNAL-SERVICES, KUBE-FORWARD, KUBE-NODEPORTS, KUBE-PROXY-FIREWALL
 * (and KUBE-FIREWALL with localhost NodePorts); every chain with a KUBE-SVC-, KUBE-SVL-,
 * KUBE-EXT-, KUBE-FW-, KUBE-SEP- prefix.  Nothing else is touched (--noflush). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/svc_plan.h"
#include "store/store.h"

#define IPT_MASQ_MARK 0x4000u		 /* kube-proxy's --iptables-masquerade-bit 14 */
#define IPT_LARGE_CLUSTER_ENDPOINTS 1000 /* kube-proxy's largeClusterEndpointsThreshold */

struct ipt_cfg {
	int family; /* AF_INET (iptables) or AF_INET6 (ip6tables); 0 = AF_INET */
	const struct ipprefix *cluster_cidr; /* local-traffic detector (`! -s CIDR`); NULL: none */
	bool masquerade_all;		     /* --masquerade-all */
	uint32_t masq_mark;		     /* 0: IPT_MASQ_MARK */
	bool no_random_fully;		     /* MASQUERADE without --random-fully */
	bool localhost_nodeports; /* NodePorts on 127.0.0.1 (needs route_localnet=1, caller's
				   * job) plus KUBE-FIREWALL; false: `! -d 127.0.0.0/8` */
	bool conntrack_liberal;	  /* nf_conntrack_tcp_be_liberal=1: no ctstate INVALID DROP */
};

/* One Service port as kube-proxy's iptables proxier sees it (servicePortInfo + endpoints). */
struct ipt_svc_port {
	char *name; /* ServicePortName: "ns/name:port", or "ns/name" when unnamed */
	enum proto proto;
	struct ipaddr cluster_ip; /* family 0: none */
	uint16_t port;
	uint16_t node_port; /* 0: none */
	uint16_t health_check_node_port;
	size_t nexternal_ips, nlb_ips;
	struct ipaddr *external_ips, *lb_ips;
	bool itp_local, etp_local;
	uint32_t affinity_timeout; /* ClientIP affinity seconds, 0 = none */
	enum svc_sched sched;	   /* random or rr (others fall back to random) */
	bool has_endpoints;	   /* usable endpoints anywhere (else REJECT) */
	size_t ncluster, nlocal;
	struct svc_backend *cluster_eps; /* Cluster policy (own copies; node not set) */
	struct svc_backend *local_eps;	 /* Local policy */
};

struct ipt_ports {
	size_t n, cap;
	struct ipt_svc_port *v;
};
void ipt_ports_free(struct ipt_ports *p);

/* Append the service ports of Service svc in `family` from its planner entries e (may be
 * NULL: nothing).  slices (the Service's EndpointSlices, may be NULL) and in are used only
 * when every entry of a port is under a Local policy, to learn the Cluster endpoints that
 * kube-proxy still needs (short-circuit of pod traffic, REJECT vs DROP).  0 or -EINVAL. */
int ipt_ports_add(struct ipt_ports *out, const struct object *svc, const struct svc_entries *e,
		  const struct object *const *slices, size_t nslices, const struct svc_plan_in *in,
		  int family);

/* kube-proxy's chain names. prefix "KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-" hash
 * name+proto; "KUBE-SEP-" hashes name+proto+endpoint ("ip:port", "[ip6]:port"). */
const char *ipt_chain_name(char buf[32], const char *prefix, const char *port_name,
			   enum proto proto, const char *endpoint);
/* base32(sha256(s))[:16] (portProtoHash). */
void ipt_hash16(const char *s, char out[17]);
/* SHA-256 (FIPS 180-4). */
void ipt_sha256(const void *data, size_t len, uint8_t out[32]);

struct ipt_render_stats {
	unsigned filter_rules, nat_rules, nat_chains, deleted_chains, jumps_added;
	unsigned endpoints;
	bool large_cluster;
};

/* Pure: the iptables-restore input for `ports` (sorted into name order first; kube-proxy
 * walks a Go map).  saved: the current `iptables-save` output of this family (NULL or "":
 * nothing exists yet: every jump is inserted, no chain deleted).  Returns malloc'd text. */
char *ipt_render(struct ipt_ports *ports, const struct ipt_cfg *cfg, const char *saved,
		 struct ipt_render_stats *st);
/* Pure: a restore input that removes everything ipt_render installs (jumps, owned chains),
 * as kube-proxy's CleanupLeftovers; "" when nothing is there. */
char *ipt_render_cleanup(const char *saved, int family);

/* Run `iptables-save` / `iptables-restore --noflush --counters` (ip6tables-* for AF_INET6)
 * in the current network namespace.  0 or -errno; on failure *err (if not NULL) gets the
 * tool's message (malloc'd). */
int ipt_save(int family, char **out, char **err);
int ipt_restore(int family, const char *rules, char **err);

/* ---- the writer: planner -> kernel, a full sync per call (kube-proxy's iptables mode) ---- */
struct ipt_writer;
/* s is the store the planner reads (for the Service objects); neither is owned. cfg is
 * copied (cluster_cidr included). */
struct ipt_writer *ipt_writer_new(struct svc_planner *sp, const struct store *s,
				  const struct svc_plan_in *in, const struct ipt_cfg *cfg);
void ipt_writer_free(struct ipt_writer *w);
/* Updates the planner, renders every Service, saves + restores. 0 or -errno (the restore
 * is atomic: on failure nothing changed). */
int ipt_writer_sync(struct ipt_writer *w);
/* Only render (no kernel access when saved is given; NULL: read iptables-save). */
char *ipt_writer_render(struct ipt_writer *w, const char *saved);
const struct ipt_render_stats *ipt_writer_stats(const struct ipt_writer *w);
const char *ipt_writer_error(const struct ipt_writer *w); /* "" if none */

/* Test/debug entry point (to be wired as `twill proxy ipt-render`):
 *   [--manifests] DIR --node NAME [--node-ip IP]... [--cluster-cidr CIDR] [--masquerade-all]
 *   [--ipv6] [--apply | --cleanup] [--saved FILE]
 * Prints the restore input (default), or applies it and prints a JSON summary. */
int proxy_ipt_debug_main(int argc, char **argv);
