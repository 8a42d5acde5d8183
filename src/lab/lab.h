/* lab: `twill lab up|down|status|probe|exec|podserver` — a multi-node cluster built from
 * network namespaces on one machine. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/ip.h"
#include "lib/util.h"

int lab_main(int argc, char **argv);

/* ---- shared by the lab_*.c files (not a public API) ---- */

#define LAB_ROOT "/run/twill/lab"
#define LAB_DEFAULT_NAME "twill"
#define LAB_CLUSTER_CIDR "172.20.0.0/16"
#define LAB_NNODES 3

/* The seed 003 machines: two nodes on 192.168.10.0/24, one on 192.168.20.0/24. */
struct lab_node {
	const char *name;   /* Kubernetes node name and namespace suffix */
	const char *ip;	    /* underlay address on eth1 */
	const char *bridge; /* subnet bridge in the router namespace */
	const char *gw;	    /* the router's address on that subnet */
};
extern const struct lab_node lab_nodes[LAB_NNODES];
const struct lab_node *lab_node_find(const char *name);

/* A Pod as the lab sees it (merged from the manifests and the status overlays). */
struct lab_pod {
	char *ns, *name;
	char *node;	  /* NULL until scheduled */
	struct ipaddr ip; /* family 0 until the runtime published it */
	bool ready;
	uint16_t port; /* first declared TCP port, 80 if none */
	bool host_network;
};
struct lab_pods {
	size_t n;
	struct lab_pod *v;
};
void lab_pods_free(struct lab_pods *p);

/* A live view of a manifest directory (store + inotify source). */
struct lab_view;
struct lab_view *lab_view_open(const char *manifest_dir); /* NULL + errno */
void lab_view_close(struct lab_view *v);
int lab_view_fd(const struct lab_view *v);
int lab_view_process(struct lab_view *v); /* after lab_view_fd is readable */
/* Snapshot of the pods, sorted by namespace/name. */
void lab_view_pods(const struct lab_view *v, struct lab_pods *out);

char *lab_dir(const char *lab);		 /* /run/twill/lab/<lab> */
char *lab_manifest_dir(const char *lab); /* .../manifests */
char *lab_node_state_dir(const char *lab, const char *node);
char *lab_netns_name(const char *lab, const char *suffix);
char *lab_pod_netns(const char *lab, const char *node, const char *ns, const char *pod);
bool lab_name_valid(const char *name);
#include <sys/types.h>
pid_t lab_agent_pid(const char *lab, const char *node); /* from the pids file; 0 if none */
bool lab_proc_alive(pid_t pid);				/* exists and is not a zombie */
/* fork, enter the namespace nsfd, new session, output to logfd, exec; pid or -1 */
pid_t lab_spawn(int nsfd, int logfd, const char *exe, const char *const *argv);

/* ---- HTTP reachability probes (non-blocking, many at once) ---- */
enum lab_probe_state { PROBE_IDLE, PROBE_CONNECTING, PROBE_SENT, PROBE_OK, PROBE_FAIL };
struct lab_probe {
	enum lab_probe_state state;
	int fd;
	int err; /* errno of a failure, ETIMEDOUT on timeout, EPROTO on a non-HTTP answer */
	monotime_t start, deadline, done;
	size_t got;
	char resp[256]; /* start of the answer */
};
void lab_probe_init(struct lab_probe *p);
/* Start a GET from the namespace behind nsfd (-1: the current one). The socket is created
 * in that namespace, so many probes from many namespaces can run from one thread. */
int lab_probe_start(struct lab_probe *p, int nsfd, const struct ipaddr *dst, uint16_t port,
		    int timeout_ms);
/* Advance in-flight probes, waiting at most wait_ms for progress. Returns how many are
 * still in flight. */
size_t lab_probe_poll(struct lab_probe **v, size_t n, int wait_ms);
void lab_probe_close(struct lab_probe *p);
/* The Hostname-like first line of the body ("Hostname: x"), or "" */
const char *lab_probe_hostname(const struct lab_probe *p, char *buf, size_t size);

int lab_cmd_probe(int argc, char **argv);
int lab_cmd_probe_matrix(int argc, char **argv);
int lab_cmd_status(int argc, char **argv);

/* ---- the router's BGP speaker (--routing bgp; lab_router.c) ---- */
bool lab_router_valid(const char *router); /* twill | bird | frr */
char *lab_router_dir(const char *lab);	   /* /run/twill/lab/<lab>/router */
/* manifests/lab-bgp.yaml: BGPConfiguration, a BGPPeer per subnet, a BGPAdvertisement */
int lab_router_manifest(const char *lab);
/* Configure and start the speaker in the router namespace (pids in router/pids). 0 / -1. */
int lab_router_start(const char *lab, const char *router, const char *log_level);
/* Stop exactly the processes lab_router_start started. */
void lab_router_stop(const char *lab);
