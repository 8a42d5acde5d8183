/* model: twill's typed view of the Kubernetes objects that matter to node networking.
 *
 * Only networking fields are kept; unknown fields are ignored.  Objects are decoded
 * from ordinary manifests (YAML via libyaml, JSON via json-c; multi-document files and
 * `kind: List` as `kubectl apply -f` takes them) by manifest.c, and are immutable once
 * in the store: a change replaces the whole object.
 *
 * Every object remembers where it came from (file, line) so errors and status can
 * point back at the manifest. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/ip.h"

enum kind {
	KIND_NAMESPACE,
	KIND_NODE,
	KIND_POD,
	KIND_SERVICE,
	KIND_ENDPOINTSLICE,
	KIND_NETWORKPOLICY,
	KIND_IPADDRESSPOOL, /* metallb.io/v1beta1 IPAddressPool (used by later issues) */
	KIND_BGPCONFIGURATION, /* crd.projectcalico.org/v1, projectcalico.org/v3 (cluster-scoped) */
	KIND_BGPPEER,	       /* the same groups (cluster-scoped) */
	KIND_BGPADVERTISEMENT, /* metallb.io/v1beta1 (namespaced) */
	KIND_SECRET,	       /* v1 Secret: only its data (BGPPeer password.secretKeyRef) */
	KIND__COUNT
};
#define KIND_BIT(k) (1u << (k))
const char *kind_name(enum kind k); /* "Node", ... */
int kind_parse(const char *s);	    /* enum kind or -1 */
bool kind_namespaced(enum kind k);

enum proto { PROTO_TCP = 0, PROTO_UDP, PROTO_SCTP };
const char *proto_name(enum proto p);
int proto_parse(const char *s); /* enum proto or -1 */

struct kv {
	char *key, *value;
};
struct labels {
	size_t n;
	struct kv *kv; /* sorted by key */
};
const char *labels_get(const struct labels *l, const char *key);

struct meta {
	char *name;
	/* NULL for cluster-scoped kinds; "default" when omitted for namespaced ones.  Interned
	 * (str_intern, as file): a cluster has few namespaces and many objects */
	const char *ns;
	char *uid;
	struct labels labels;
	struct labels annotations;
	const char *file; /* origin file, for messages; interned (str_intern) */
	int line;	  /* line of the object in that file (1-based, 0 unknown) */
	bool deleting;	  /* metadata.deletionTimestamp set */
};

/* ---- label selectors (matchLabels + matchExpressions) ---- */
enum sel_op { SEL_IN, SEL_NOT_IN, SEL_EXISTS, SEL_NOT_EXISTS };
struct sel_expr {
	char *key;
	enum sel_op op;
	size_t nvalues;
	char **values;
};
struct selector {
	bool present; /* field given (an empty present selector matches everything) */
	struct labels match_labels;
	size_t nexprs;
	struct sel_expr *exprs;
};
bool selector_matches(const struct selector *s, const struct labels *l);

/* ---- Namespace ---- */
struct namespace_obj {
	int unused;
};

/* ---- Node ---- */
enum node_addr_type { NODE_ADDR_INTERNAL, NODE_ADDR_EXTERNAL, NODE_ADDR_HOSTNAME, NODE_ADDR_OTHER };
struct node_addr {
	enum node_addr_type type;
	struct ipaddr ip; /* family 0 for Hostname */
	char *text;
};
struct node_obj {
	size_t npod_cidrs;
	struct ipprefix pod_cidrs[2]; /* spec.podCIDRs (or spec.podCIDR) */
	size_t naddrs;
	struct node_addr *addrs; /* status.addresses */
	bool unschedulable;
};
/* First InternalIP of the given family (AF_UNSPEC: IPv4 first), else ExternalIP; NULL if none. */
const struct ipaddr *node_ip(const struct node_obj *n, int family);

/* ---- Pod ---- */
struct container_port {
	char *name;	/* may be NULL */
	uint16_t port;	/* containerPort */
	enum proto proto;
};
struct pod_obj {
	char *node_name;	/* spec.nodeName, NULL if unscheduled */
	bool host_network;
	size_t nports;
	struct container_port *ports; /* every container's ports, in order */
	size_t nips;
	struct ipaddr ips[2];	/* status.podIPs (or podIP) */
	char *phase;		/* status.phase or NULL */
	bool ready;		/* status.conditions Ready=True */
	bool has_ready;		/* a Ready condition was present */
};

/* ---- Service ---- */
enum svc_type { SVC_CLUSTER_IP, SVC_NODE_PORT, SVC_LOAD_BALANCER, SVC_EXTERNAL_NAME };
struct svc_port {
	char *name;
	enum proto proto;
	uint16_t port;
	uint16_t node_port;	  /* 0 = none/unallocated */
	uint16_t target_port;	  /* numeric targetPort (0 if named) */
	char *target_port_name;	  /* named targetPort or NULL */
	char *app_protocol;
};
/* spec.ipFamilyPolicy; SingleStack when not given (as the API server defaults it). */
enum ip_family_policy { IPFP_SINGLE_STACK = 0, IPFP_PREFER_DUAL_STACK, IPFP_REQUIRE_DUAL_STACK };
const char *ip_family_policy_name(enum ip_family_policy p); /* "SingleStack", ... */
const char *ip_family_name(int family);			    /* "IPv4", "IPv6" */
struct service_obj {
	enum svc_type type;
	bool headless;		/* clusterIP: None */
	size_t ncluster_ips;
	struct ipaddr cluster_ips[2]; /* of different families, primary first */
	bool has_ip_family_policy;    /* spec.ipFamilyPolicy given */
	enum ip_family_policy ip_family_policy;
	size_t nip_families;
	int ip_families[2];	  /* spec.ipFamilies: AF_INET / AF_INET6, distinct, primary first;
				   * ip_families[i] is the family of cluster_ips[i] where both exist */
	struct selector selector; /* spec.selector (matchLabels only); !present = no selector */
	size_t nports;
	struct svc_port *ports;
	size_t nexternal_ips;
	struct ipaddr *external_ips;
	size_t nlb_ips;
	struct ipaddr *lb_ips; /* status.loadBalancer.ingress[].ip */
	struct ipaddr lb_ip_requested; /* spec.loadBalancerIP */
	bool etp_local;		/* externalTrafficPolicy: Local */
	bool itp_local;		/* internalTrafficPolicy: Local */
	bool affinity_client_ip;
	uint32_t affinity_timeout; /* seconds, default 10800 */
	uint16_t health_check_node_port;
	char *external_name;
	bool publish_not_ready;
	bool allocate_lb_node_ports; /* default true */
};

/* ---- EndpointSlice (discovery.k8s.io/v1) ---- */
struct endpoint { /* 48 bytes: there are as many as endpoints in the cluster */
	uint32_t naddrs;
	bool ready, serving, terminating; /* conditions; nil ready/serving read as true */
	struct ipaddr *addrs;
	const char *node_name; /* interned (str_intern): never free it */
	char *target_pod; /* targetRef.name when kind Pod */
	char *hostname;
	char *zone;
};
struct ep_port {
	char *name;
	enum proto proto;
	uint16_t port;
};
struct endpointslice_obj {
	char *service;	 /* label kubernetes.io/service-name */
	int address_type; /* AF_INET, AF_INET6 (FQDN unsupported -> error) */
	size_t nendpoints;
	struct endpoint *endpoints;
	/* when set, every endpoint's addrs point into this one array of naddr_pool (the
	 * decoder's layout: one allocation per slice, not one per endpoint) */
	struct ipaddr *addr_pool;
	size_t naddr_pool;
	size_t nports;
	struct ep_port *ports;
	char *managed_by; /* label endpointslice.kubernetes.io/managed-by */
};

/* ---- NetworkPolicy (networking.k8s.io/v1) ---- */
struct np_port {
	bool has_proto;
	enum proto proto;	/* default TCP */
	uint16_t port;		/* 0 = all ports */
	char *port_name;	/* named port or NULL */
	uint16_t end_port;	/* 0 = none */
};
struct np_peer {
	struct selector pod_selector;	   /* !present: not given */
	struct selector namespace_selector; /* !present: not given */
	bool has_ipblock;
	struct ipprefix cidr;
	size_t nexcept;
	struct ipprefix *except;
};
struct np_rule {
	size_t nports;
	struct np_port *ports;	/* empty: all ports */
	size_t npeers;
	struct np_peer *peers;	/* empty: all peers */
};
struct netpol_obj {
	struct selector pod_selector;
	bool ingress_type, egress_type; /* effective policyTypes after defaulting */
	size_t ningress;
	struct np_rule *ingress;
	size_t negress;
	struct np_rule *egress;
};

/* ---- IPAddressPool (metallb.io/v1beta1) ---- */
struct ippool_obj {
	size_t nranges;
	struct ipprefix *cidrs; /* ranges given as CIDR; "a-b" ranges are split into CIDRs */
	bool auto_assign;	/* default true */
};

/* ---- BGPConfiguration (Calico) ---- */
struct bgpconfig_obj {
	uint32_t as_number;	  /* spec.asNumber; 0 = not given (Calico's default is 64512) */
	bool node_mesh;		  /* spec.nodeToNodeMeshEnabled, default true */
	uint32_t mesh_restart_time; /* spec.nodeMeshMaxRestartTime in seconds, 0 = not given */
	uint16_t listen_port;	  /* spec.listenPort, 0 = 179 */
	size_t nsvc_cluster, nsvc_external, nsvc_lb;
	struct ipprefix *svc_cluster;  /* spec.serviceClusterIPs[].cidr */
	struct ipprefix *svc_external; /* spec.serviceExternalIPs[].cidr */
	struct ipprefix *svc_lb;       /* spec.serviceLoadBalancerIPs[].cidr */
};

/* ---- BGPPeer (Calico) ---- */
struct bgppeer_obj {
	struct ipaddr peer_ip; /* spec.peerIP ("a.b.c.d", "a.b.c.d:port", "[v6]:port"); family 0
				* when the peers are nodes chosen by peer_selector */
	uint16_t port;	       /* from peerIP, 0 = 179 */
	uint32_t as_number;    /* spec.asNumber (required with peerIP) */
	char *node;	       /* spec.node: only this node peers, or NULL */
	char *node_selector;   /* spec.nodeSelector: Calico selector text (`all()`, `k == 'v'`), raw */
	char *peer_selector;   /* spec.peerSelector: nodes to peer with, raw */
	char *password;	       /* spec.password as a plain string (standalone), or NULL */
	char *password_secret, *password_key; /* spec.password.secretKeyRef name and key */
	bool keep_original_next_hop; /* spec.keepOriginalNextHop */
	uint8_t ttl_security;  /* spec.ttlSecurity (hops), 0 = off */
	uint32_t max_restart_time; /* spec.maxRestartTime seconds, 0 = not given */
	char *source_address;  /* spec.sourceAddress: "UseNodeIP" (default) or "None" */
};

/* ---- BGPAdvertisement (metallb.io/v1beta1) ---- */
struct bgpadv_obj {
	size_t npools;
	char **pools;	       /* spec.ipAddressPools; empty = every pool */
	size_t ncomm, nlcomm;
	uint32_t *comm;	       /* spec.communities "A:B" (A << 16 | B) */
	uint32_t *lcomm;       /* and "large:A:B:C", 3 words each */
	uint8_t aggregation_length;    /* spec.aggregationLength, default 32 */
	uint8_t aggregation_length_v6; /* spec.aggregationLengthV6, default 128 */
	bool has_local_pref;
	uint32_t local_pref;   /* spec.localPref */
	size_t npeers;
	char **peers;	       /* spec.peers (BGPPeer names); empty = all */
	size_t nnode_selectors;
	struct selector *node_selectors; /* spec.nodeSelectors; empty = all nodes */
};

/* ---- Secret (v1): data (base64-decoded) and stringData, stringData winning ---- */
struct secret_obj {
	struct labels data; /* key -> value (NUL-free text) */
};

struct object {
	enum kind kind;
	struct meta meta;
	uint64_t hash; /* hash of the decoded content (not origin): equal hash => no change */
	union {
		struct namespace_obj ns;
		struct node_obj node;
		struct pod_obj pod;
		struct service_obj svc;
		struct endpointslice_obj eps;
		struct netpol_obj np;
		struct ippool_obj pool;
		struct bgpconfig_obj bgpconf;
		struct bgppeer_obj bgppeer;
		struct bgpadv_obj bgpadv;
		struct secret_obj secret;
	};
};

/* Bytes an object of kind k needs: the numerous kinds (EndpointSlice, Pod) are allocated
 * without the rest of the union (~160 bytes less each); others get sizeof(struct object).
 * Never copy a struct object by value: copy object_size(kind) bytes. */
size_t object_size(enum kind k);
struct object *object_alloc(enum kind k); /* zeroed, kind set */
void object_free(struct object *o);
struct object *object_clone(const struct object *o);
/* "Kind/ns/name" or "Kind/name" into buf. */
const char *object_id(const struct object *o, char *buf, size_t size);
/* Hash of the content (everything but meta.file and meta.line), the value the decoder puts
 * in o->hash; whoever changes a decoded object (e.g. an overlay merge) recomputes it. */
uint64_t object_hash(const struct object *o);
