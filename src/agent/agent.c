/* agent: the node agent, `twill agent --node NAME --manifests DIR --state-dir DIR ...`.
 *
 * One thread, one epoll loop over three descriptors:
 *   - the manifest directory's inotify fd (source_dir): files -> store -> events;
 *   - a 250 ms timerfd: leader-lock retries, retries of failed syncs, the periodic
 *     resync of the route writer with the kernel (drift repair);
 *   - a signalfd: SIGTERM/SIGINT exit cleanly and leave routes and pods in place (a
 *     restart must not disturb traffic), SIGHUP rescans the manifests and the kernel.
 * Store subscribers, in order: the standalone controller (control.h), the route planner
 * (route.h), the Service planner (svc_plan.h, kube-proxy's job; --proxy nftables, the
 * default, programs it with the nftables writer, nft.h; --proxy iptables with kube-proxy's
 * iptables layout, ipt.h, one full iptables-restore per change), the health-check node
 * ports of externalTrafficPolicy: Local Services (healthcheck.h, their listening and client
 * sockets are in the same epoll set), the lab kubelet (--kubelet) and the agent's own
 * node-state writer.  After each wake-up every dirty component runs its sync
 * once, so work per wake-up is bounded; a failed nftables/iptables sync is retried with
 * exponential back-off (250 ms .. 30 s) and shown in status.json.
 *
 * Files in the state dir: node.json (what the CNI plugin reads, like Flannel's subnet.env),
 * status.json (what `twill status` shows) and services.json (the programmed Service table,
 * what `twill svc list` shows); all are written atomically and only when their content
 * changes.  On exit nothing is removed: routes, pods and the nftables table stay, and a
 * restarted agent reconciles against them without flushing, so connections survive. */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/agent_bgp.h"
#include "control/control.h"
#include "lab/kubelet.h"
#include "lib/consts.h"
#include "lib/ip.h"
#include "lib/log.h"
#include "lib/util.h"
#include "nl/nl.h"
#include "policy/policy.h"
#include "proxy/healthcheck.h"
#include "proxy/ipt.h"
#include "proxy/ipvs.h"
#include "proxy/lbdev.h"
#include "proxy/nft.h"
#include "proxy/svc_list.h"
#include "proxy/svc_plan.h"
#include "route/route.h"
#include "store/store.h"
#include "wg/wg.h"

#define SUB "agent"
#define TICK_MS 250
#define RESYNC_MS 30000
#define MAX_DIAGS 32
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 30000
#define SERVICES_JSON_MIN_MS 500 /* services.json is O(Services): at most twice a second */
#define MAX_NODE_ADDRS 8

enum proxy_mode { PROXY_NONE, PROXY_NFTABLES, PROXY_IPTABLES, PROXY_IPVS };

static const char *proxy_mode_name(enum proxy_mode m)
{
	return m == PROXY_NFTABLES   ? "nftables"
	       : m == PROXY_IPTABLES ? "iptables"
	       : m == PROXY_IPVS     ? "ipvs"
				     : "none";
}

struct agent_opts {
	const char *node;
	const char *manifests;
	const char *state_dir;
	enum route_mode routing;
	const char *wiring;
	size_t ncidrs;
	struct ipprefix cidrs[2];
	size_t nsvc_cidrs;
	struct ipprefix svc_cidrs[2]; /* --service-cidr, primary family first */
	unsigned node_cidr_len;
	uint32_t vni;
	uint16_t port;
	bool kubelet;
	enum proxy_mode proxy;
	enum route_encrypt encrypt;
	/* --ipvs-scheduler (--proxy ipvs), NULL: rr */
	const char *ipvs_scheduler;
	unsigned resync_s; /* --sync-period: seconds between resyncs, 0: none */
	bool policy; /* NetworkPolicy enforcement (--policy on|off) */
	const char *lab;
	enum log_level level;
	const char *log_file;
};

/* A manifest error, kept while its file is unchanged (a fixed file drops it). */
struct diag_rec {
	char *file;
	char *msg;
	struct timespec mtime;
	bool has_mtime;
};

struct agent {
	struct agent_opts o;
	struct store *store;
	struct source_dir *src;
	struct controller *ctl;
	struct route_planner *rp;
	struct kubelet *kl;
	/* the Service proxy (kube-proxy's job): planner -> nftables writer */
	struct svc_planner *sp;
	struct nft_writer *nw;
	struct ipt_writer *iw;	/* --proxy iptables instead of nw */
	struct ipvs_writer *vw; /* --proxy ipvs instead of nw */
	struct lbdev *lb;	/* LoadBalancer addresses on kube-lb0 (proxy/lbdev.h) */
	bool ipt_dirty;		/* a full iptables sync is due (start, resync, node addresses) */
	struct healthcheck *hc; /* health-check node ports (externalTrafficPolicy Local) */
	struct agent_bgp *bgp;	/* --routing bgp: the BGP speaker (agent_bgp.h) */
	bool hc_dirty;
	char *hc_error;
	struct ipaddr node_addrs[MAX_NODE_ADDRS];
	size_t nnode_addrs;
	monotime_t proxy_next_try;
	unsigned proxy_backoff_ms;
	bool services_dirty;
	bool proxy_synced; /* a sync succeeded since start */
	monotime_t services_next_write;
	uint64_t services_json_hash; /* of what was last written (0: unknown) */
	char *services_json_path;
	/* NetworkPolicy: planner (rebuilt from the store) -> nftables writer */
	struct pol_writer *pw;
	bool policy_dirty;
	monotime_t policy_next_try;
	unsigned policy_backoff_ms;
	bool policy_synced;
	char *policy_json_last, *policy_json_path;
	bool node_dirty; /* this node's Node changed: rewrite node.json */
	bool status_dirty;
	char *node_json_last;
	char *status_json_last;
	char *node_json_path, *status_json_path;
	struct diag_rec diags[MAX_DIAGS];
	size_t ndiags;
	char *sync_errors[5]; /* controller, kubelet, proxy, health checks, policy */
	bool waiting_logged;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: twill agent --node NAME --manifests DIR --state-dir DIR [options]\n"
		"\n"
		"  --node NAME             this node's Node object name\n"
		"  --manifests DIR         the manifest directory (watched with inotify)\n"
		"  --state-dir DIR         where node.json and status.json are written\n"
		"  --routing MODE          host-gw | vxlan | mixed | ipip | ipip-crosssubnet |\n"
		"                          bgp (default vxlan; bgp: native routing, pod\n"
		"                          routes learned by the BGP speaker, see BGPPeer)\n"
		"  --wiring MODE           routed | bridge (default routed)\n"
		"  --cluster-cidr CIDR     pod network, may be given per family (default %s)\n"
		"  --service-cidr CIDR     ClusterIP range, may be given per family, primary first\n"
		"                          (default 10.96.0.0/16, and fd00:96::/108 when\n"
		"                          --cluster-cidr has IPv6)\n"
		"  --node-cidr-len N       podCIDR length per node (default %d)\n"
		"  --vni N                 VXLAN network identifier (default %d)\n"
		"  --vxlan-port N          VXLAN UDP port (default %d)\n"
		"  --proxy DATAPLANE       Service load balancing: nftables | iptables | ipvs |\n"
		"                          none (default nftables; iptables writes kube-proxy's\n"
		"                          layout; ipvs programs IPVS, needs the ip_vs module;\n"
		"                          none leaves Services to another proxy)\n"
		"  --ipvs-scheduler NAME   --proxy ipvs: rr | wrr | lc | wlc | dh | sh | sed | nq\n"
		"                          ... (default rr, as kube-proxy)\n"
		"  --sync-period SECONDS   full resync of routes, Services and policy with the\n"
		"                          kernel (default 30; 0: only at start and on SIGHUP)\n"
		"  --encrypt none|wireguard  pod traffic between nodes through WireGuard\n"
		"                          (twill.wg, UDP 51820; default none)\n"
		"  --policy on|off         enforce NetworkPolicy with nftables (default on;\n"
		"                          table inet %s)\n"
		"  --kubelet --lab NAME    also run the lab's pod runtime for this node\n"
		"  --log-level LEVEL       debug | info | warn | error (default info)\n"
		"  --log-file FILE         append the log here instead of stderr\n",
		TWILL_DEFAULT_CLUSTER_CIDR, TWILL_DEFAULT_NODE_CIDR_LEN, TWILL_VXLAN_DEFAULT_VNI,
		TWILL_VXLAN_DEFAULT_PORT, POLICY_TABLE);
}

static int parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || !*s || *end || v < min || v > max || s[0] == '-')
		return -EINVAL;
	*out = v;
	return 0;
}

/* --cluster-cidr, --service-cidr: one CIDR per address family.  0, or 2 (printed). */
static int add_cidr_opt(const char *flag, const char *arg, struct ipprefix v[2], size_t *n)
{
	struct ipprefix p;
	if (prefix_parse(arg, &p) < 0) {
		fprintf(stderr, "twill agent: --%s: bad CIDR '%s'\n", flag, arg);
		return 2;
	}
	prefix_normalize(&p);
	for (size_t i = 0; i < *n; i++)
		if (v[i].addr.family == p.addr.family) {
			fprintf(stderr, "twill agent: --%s: one per address family\n", flag);
			return 2;
		}
	if (*n >= 2) {
		fprintf(stderr, "twill agent: --%s: at most two\n", flag);
		return 2;
	}
	v[(*n)++] = p;
	return 0;
}

/* 0, 2 (bad usage, message printed) or 1 for --help (printed, exit 0). */
static int parse_args(int argc, char **argv, struct agent_opts *o)
{
	enum {
		O_NODE = 256,
		O_MANIFESTS,
		O_STATE,
		O_ROUTING,
		O_WIRING,
		O_CIDR,
		O_SVC_CIDR,
		O_CIDRLEN,
		O_VNI,
		O_PORT,
		O_KUBELET,
		O_PROXY,
		O_ENCRYPT,
		O_IPVS_SCHED,
		O_SYNC_PERIOD,
		O_POLICY,
		O_LAB,
		O_LEVEL,
		O_LOGFILE,
	};
	static const struct option longopts[] = {
	    {"node", required_argument, NULL, O_NODE},
	    {"manifests", required_argument, NULL, O_MANIFESTS},
	    {"state-dir", required_argument, NULL, O_STATE},
	    {"routing", required_argument, NULL, O_ROUTING},
	    {"wiring", required_argument, NULL, O_WIRING},
	    {"cluster-cidr", required_argument, NULL, O_CIDR},
	    {"service-cidr", required_argument, NULL, O_SVC_CIDR},
	    {"node-cidr-len", required_argument, NULL, O_CIDRLEN},
	    {"vni", required_argument, NULL, O_VNI},
	    {"vxlan-port", required_argument, NULL, O_PORT},
	    {"kubelet", no_argument, NULL, O_KUBELET},
	    {"proxy", required_argument, NULL, O_PROXY},
	    {"encrypt", required_argument, NULL, O_ENCRYPT},
	    {"ipvs-scheduler", required_argument, NULL, O_IPVS_SCHED},
	    {"sync-period", required_argument, NULL, O_SYNC_PERIOD},
	    {"policy", required_argument, NULL, O_POLICY},
	    {"lab", required_argument, NULL, O_LAB},
	    {"log-level", required_argument, NULL, O_LEVEL},
	    {"log-file", required_argument, NULL, O_LOGFILE},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	memset(o, 0, sizeof(*o));
	o->routing = ROUTE_VXLAN;
	o->wiring = "routed";
	o->node_cidr_len = TWILL_DEFAULT_NODE_CIDR_LEN;
	o->vni = TWILL_VXLAN_DEFAULT_VNI;
	o->port = TWILL_VXLAN_DEFAULT_PORT;
	o->level = LOG_INFO;
	o->proxy = PROXY_NFTABLES;
	o->policy = true;
	o->resync_s = RESYNC_MS / 1000;
	bool level_given = false;
	unsigned long v;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case O_NODE:
			o->node = optarg;
			break;
		case O_MANIFESTS:
			o->manifests = optarg;
			break;
		case O_STATE:
			o->state_dir = optarg;
			break;
		case O_ROUTING: {
			int m = route_mode_parse(optarg);
			if (m < 0) {
				fprintf(stderr,
					"twill agent: --routing must be " ROUTE_MODES_TEXT
					", not '%s'\n",
					optarg);
				return 2;
			}
			o->routing = (enum route_mode)m;
			break;
		}
		case O_WIRING:
			if (strcmp(optarg, "routed") && strcmp(optarg, "bridge")) {
				fprintf(
				    stderr,
				    "twill agent: --wiring must be routed or bridge, not '%s'\n",
				    optarg);
				return 2;
			}
			o->wiring = optarg;
			break;
		case O_CIDR:
			if (add_cidr_opt("cluster-cidr", optarg, o->cidrs, &o->ncidrs))
				return 2;
			break;
		case O_SVC_CIDR:
			if (add_cidr_opt("service-cidr", optarg, o->svc_cidrs, &o->nsvc_cidrs))
				return 2;
			break;
		case O_CIDRLEN:
			if (parse_uint(optarg, 1, 128, &v) < 0) {
				fprintf(stderr, "twill agent: --node-cidr-len: bad length '%s'\n",
					optarg);
				return 2;
			}
			o->node_cidr_len = (unsigned)v;
			break;
		case O_VNI:
			if (parse_uint(optarg, 1, 16777215, &v) < 0) {
				fprintf(stderr,
					"twill agent: --vni must be 1..16777215, not '%s'\n",
					optarg);
				return 2;
			}
			o->vni = (uint32_t)v;
			break;
		case O_PORT:
			if (parse_uint(optarg, 1, 65535, &v) < 0) {
				fprintf(stderr,
					"twill agent: --vxlan-port must be 1..65535, not '%s'\n",
					optarg);
				return 2;
			}
			o->port = (uint16_t)v;
			break;
		case O_KUBELET:
			o->kubelet = true;
			break;
		case O_ENCRYPT: {
			int e = route_encrypt_parse(optarg);
			if (e < 0) {
				fprintf(
				    stderr,
				    "twill agent: --encrypt must be none or wireguard, not '%s'\n",
				    optarg);
				return 2;
			}
			o->encrypt = (enum route_encrypt)e;
			break;
		}
		case O_PROXY:
			if (!strcmp(optarg, "nftables")) {
				o->proxy = PROXY_NFTABLES;
			} else if (!strcmp(optarg, "iptables")) {
				o->proxy = PROXY_IPTABLES;
			} else if (!strcmp(optarg, "ipvs")) {
				o->proxy = PROXY_IPVS;
			} else if (!strcmp(optarg, "none")) {
				o->proxy = PROXY_NONE;
			} else {
				fprintf(stderr,
					"twill agent: --proxy must be nftables, iptables, ipvs or "
					"none, not '%s'\n",
					optarg);
				return 2;
			}
			break;
		case O_IPVS_SCHED:
			if (!ipvs_sched_known(optarg)) {
				fprintf(
				    stderr,
				    "twill agent: --ipvs-scheduler: unknown IPVS scheduler '%s' "
				    "(rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, mh, fo, ovf, "
				    "twos)\n",
				    optarg);
				return 2;
			}
			o->ipvs_scheduler = optarg;
			break;
		case O_SYNC_PERIOD:
			if (parse_uint(optarg, 0, 86400, &v) < 0) {
				fprintf(stderr,
					"twill agent: --sync-period must be 0..86400 seconds, not "
					"'%s'\n",
					optarg);
				return 2;
			}
			o->resync_s = (unsigned)v;
			break;
		case O_POLICY:
			if (strcmp(optarg, "on") && strcmp(optarg, "off")) {
				fprintf(stderr, "twill agent: --policy must be on or off, not '%s'\n",
					optarg);
				return 2;
			}
			o->policy = !strcmp(optarg, "on");
			break;
		case O_LAB:
			o->lab = optarg;
			break;
		case O_LEVEL: {
			enum log_level l = log_level_parse(optarg, (enum log_level) - 1);
			if ((int)l < 0) {
				fprintf(stderr,
					"twill agent: --log-level must be debug, info, warn or "
					"error, not '%s'\n",
					optarg);
				return 2;
			}
			o->level = l;
			level_given = true;
			break;
		}
		case O_LOGFILE:
			o->log_file = optarg;
			break;
		case 'h':
			usage(stdout);
			return 1;
		case ':':
			fprintf(stderr, "twill agent: %s needs a value\n", argv[optind - 1]);
			usage(stderr);
			return 2;
		default:
			fprintf(stderr, "twill agent: unknown option '%s'\n", argv[optind - 1]);
			usage(stderr);
			return 2;
		}
	}
	(void)level_given;
	if (optind < argc) {
		fprintf(stderr, "twill agent: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	const char *missing = !o->node	      ? "--node"
			      : !o->manifests ? "--manifests"
			      : !o->state_dir ? "--state-dir"
					      : NULL;
	if (missing) {
		fprintf(stderr, "twill agent: %s is required\n", missing);
		usage(stderr);
		return 2;
	}
	if (!o->node[0] || strchr(o->node, '/')) {
		fprintf(stderr, "twill agent: bad node name '%s'\n", o->node);
		return 2;
	}
	if (o->kubelet && !o->lab) {
		fprintf(stderr, "twill agent: --kubelet needs --lab NAME\n");
		return 2;
	}
	if (!o->ncidrs) {
		prefix_parse(TWILL_DEFAULT_CLUSTER_CIDR, &o->cidrs[0]);
		o->ncidrs = 1;
	}
	for (size_t i = 0; i < o->ncidrs; i++) {
		unsigned max = (unsigned)ip_maxlen(o->cidrs[i].addr.family);
		unsigned len = o->cidrs[i].addr.family == AF_INET ? o->node_cidr_len : 64;
		if (o->cidrs[i].addr.family == AF_INET && (len < o->cidrs[i].len || len > max)) {
			char b[IP_STRLEN];
			fprintf(stderr,
				"twill agent: --node-cidr-len %u does not fit in cluster CIDR %s\n",
				len, prefix_fmt(&o->cidrs[i], b));
			return 2;
		}
	}
	return 0;
}

/* ---- manifest errors ---- */

static void diag_stat(const struct agent *ag, const char *file, struct timespec *ts, bool *ok)
{
	struct stat st;
	*ok = false;
	if (stat(file, &st) == 0) {
		*ts = st.st_mtim;
		*ok = true;
		return;
	}
	char *p = xasprintf("%s/%s", ag->o.manifests, file);
	if (stat(p, &st) == 0) {
		*ts = st.st_mtim;
		*ok = true;
	}
	free(p);
}

static void on_diag(const struct diag *d, void *arg)
{
	struct agent *ag = arg;
	char buf[1024];
	diag_fmt(d, buf, sizeof(buf));
	log_warn("manifests", "%s", buf);
	if (ag->ndiags == MAX_DIAGS) {
		free(ag->diags[0].file);
		free(ag->diags[0].msg);
		memmove(&ag->diags[0], &ag->diags[1], (MAX_DIAGS - 1) * sizeof(ag->diags[0]));
		ag->ndiags--;
	}
	struct diag_rec *r = &ag->diags[ag->ndiags++];
	r->file = xstrdup(d->file ? d->file : "");
	r->msg = xstrdup(buf);
	diag_stat(ag, r->file, &r->mtime, &r->has_mtime);
	ag->status_dirty = true;
}

/* Drop errors of files changed or removed since they were reported. */
static void diags_expire(struct agent *ag)
{
	size_t j = 0;
	for (size_t i = 0; i < ag->ndiags; i++) {
		struct diag_rec *r = &ag->diags[i];
		struct timespec ts;
		bool ok;
		diag_stat(ag, r->file, &ts, &ok);
		bool keep =
		    r->file[0] == '\0' || (ok && r->has_mtime && ts.tv_sec == r->mtime.tv_sec &&
					   ts.tv_nsec == r->mtime.tv_nsec);
		if (keep) {
			ag->diags[j++] = *r;
		} else {
			free(r->file);
			free(r->msg);
			ag->status_dirty = true;
		}
	}
	ag->ndiags = j;
}

/* ---- node.json and status.json ---- */

static void on_node(void *arg, enum store_event ev, const struct object *old,
		    const struct object *new_obj)
{
	struct agent *ag = arg;
	(void)ev;
	const struct object *o = new_obj ? new_obj : old;
	if (o && o->meta.name && !strcmp(o->meta.name, ag->o.node))
		ag->node_dirty = true;
	ag->status_dirty = true;
}

static const struct object *self_node(const struct agent *ag)
{
	return store_get(ag->store, KIND_NODE, NULL, ag->o.node);
}

static int write_if_changed(const char *path, char **last, const char *content)
{
	if (!*last) {
		/* After a restart the file on disk is what was last written. */
		char *old = NULL;
		size_t len;
		if (file_read(path, &old, &len) == 0)
			*last = old;
	}
	if (*last && !strcmp(*last, content))
		return 0;
	int r = file_write_atomic(path, content, strlen(content));
	if (r < 0)
		return r;
	free(*last);
	*last = xstrdup(content);
	return 1;
}

static json_object *cidrs_json(size_t n, const struct ipprefix *p)
{
	json_object *a = json_object_new_array();
	for (size_t i = 0; i < n; i++) {
		char b[IP_STRLEN];
		struct ipprefix q = p[i];
		prefix_normalize(&q);
		json_object_array_add(a, json_object_new_string(prefix_fmt(&q, b)));
	}
	return a;
}

static unsigned pod_mtu(const struct agent *ag)
{
	unsigned mtu = route_planner_underlay_mtu(ag->rp);
	if (!mtu)
		mtu = 1500; /* underlay not found yet: the common Ethernet MTU */
	unsigned overhead = route_planner_overhead(ag->rp);
	mtu = mtu > overhead + 68 ? mtu - overhead : 68;
	return mtu;
}

static void write_node_json(struct agent *ag)
{
	const struct object *o = self_node(ag);
	if (!o || !o->node.npod_cidrs)
		return; /* the CNI plugin waits (fails) until podCIDRs exist */
	json_object *j = json_object_new_object();
	json_object_object_add(j, "node", json_object_new_string(ag->o.node));
	json_object_object_add(j, "podCIDRs", cidrs_json(o->node.npod_cidrs, o->node.pod_cidrs));
	json_object_object_add(j, "mtu", json_object_new_int((int)pod_mtu(ag)));
	json_object_object_add(j, "wiring", json_object_new_string(ag->o.wiring));
	json_object_object_add(j, "bridge", json_object_new_string(TWILL_BRIDGE_DEFAULT));
	json_object_object_add(j, "routing",
			       json_object_new_string(route_mode_name(ag->o.routing)));
	char *s =
	    xasprintf("%s\n", json_object_to_json_string_ext(
				  j, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(j);
	int r = write_if_changed(ag->node_json_path, &ag->node_json_last, s);
	if (r < 0)
		log_error(SUB, "writing %s: %s", ag->node_json_path, strerror(-r));
	else if (r > 0)
		log_info(SUB, "wrote %s", ag->node_json_path);
	free(s);
}

static int peer_json(const struct route_peer_info *p, void *arg)
{
	json_object *peers = arg;
	json_object *j = json_object_new_object();
	char b[IP_STRLEN];
	json_object_object_add(j, "node", json_object_new_string(p->node));
	json_object_object_add(
	    j, "ip", ip_is_set(&p->ip) ? json_object_new_string(ip_fmt(&p->ip, b)) : NULL);
	json_object_object_add(j, "podCIDRs", cidrs_json(p->npod_cidrs, p->pod_cidrs));
	json_object_object_add(j, "via", json_object_new_string(route_via_name(p->via)));
	json_object_object_add(j, "status", json_object_new_string(p->status));
	json_object_array_add(peers, j);
	return 0;
}

struct svc_count {
	const struct svc_planner *sp;
	size_t n;
	json_object *errors;
};

static int svc_count_fn(const char *key, const struct svc_entries *e, void *arg)
{
	struct svc_count *c = arg;
	(void)e;
	c->n++;
	const char *err = svc_planner_error(c->sp, key);
	if (err) {
		char *m = xasprintf("service %s: %s", key, err);
		json_object_array_add(c->errors, json_object_new_string(m));
		free(m);
	}
	return 0;
}

static void write_status_json(struct agent *ag)
{
	diags_expire(ag);
	const struct object *o = self_node(ag);
	json_object *j = json_object_new_object();
	json_object_object_add(j, "node", json_object_new_string(ag->o.node));
	json_object_object_add(j, "routing",
			       json_object_new_string(route_mode_name(ag->o.routing)));
	json_object_object_add(j, "wiring", json_object_new_string(ag->o.wiring));
	json_object_object_add(j, "podCIDRs",
			       o ? cidrs_json(o->node.npod_cidrs, o->node.pod_cidrs)
				 : json_object_new_array());
	json_object_object_add(j, "leader", json_object_new_boolean(controller_is_leader(ag->ctl)));
	json_object_object_add(j, "proxy", json_object_new_string(proxy_mode_name(ag->o.proxy)));
	json_object_object_add(j, "encrypt",
			       json_object_new_string(route_encrypt_name(ag->o.encrypt)));
	if (*route_planner_wg_public_key(ag->rp))
		json_object_object_add(j, "wireguardPublicKey",
				       json_object_new_string(route_planner_wg_public_key(ag->rp)));
	json_object_object_add(j, "policy", json_object_new_string(ag->pw ? "nftables" : "off"));
	struct svc_count sc = {ag->sp, 0, json_object_new_array()};
	if (ag->sp)
		svc_planner_foreach(ag->sp, svc_count_fn, &sc);
	json_object_object_add(j, "services", json_object_new_int64((int64_t)sc.n));
	if (ag->lb)
		json_object_object_add(j, "lbDevice",
				       json_object_new_string(*lbdev_status(ag->lb) ? lbdev_status(ag->lb)
										    : "ok"));
	json_object *peers = json_object_new_array();
	route_planner_foreach_peer(ag->rp, peer_json, peers);
	json_object_object_add(j, "peers", peers);
	if (ag->bgp)
		json_object_object_add(j, "bgp", agent_bgp_status(ag->bgp));
	json_object *errs = json_object_new_array();
	for (const char *const *e = route_planner_errors(ag->rp); e && *e; e++)
		json_object_array_add(errs, json_object_new_string(*e));
	for (size_t i = 0; i < ARRAY_SIZE(ag->sync_errors); i++)
		if (ag->sync_errors[i])
			json_object_array_add(errs, json_object_new_string(ag->sync_errors[i]));
	for (size_t i = 0; i < json_object_array_length(sc.errors); i++)
		json_object_array_add(errs,
				      json_object_get(json_object_array_get_idx(sc.errors, i)));
	json_object_put(sc.errors);
	for (size_t i = 0; i < ag->ndiags; i++)
		json_object_array_add(errs, json_object_new_string(ag->diags[i].msg));
	json_object_object_add(j, "errors", errs);
	char *s =
	    xasprintf("%s\n", json_object_to_json_string_ext(
				  j, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(j);
	int r = write_if_changed(ag->status_json_path, &ag->status_json_last, s);
	if (r < 0)
		log_error(SUB, "writing %s: %s", ag->status_json_path, strerror(-r));
	free(s);
}

static void set_sync_error(struct agent *ag, size_t slot, const char *what, int r)
{
	char *msg = r < 0 ? xasprintf("%s: %s", what, strerror(-r)) : NULL;
	bool same = (!msg && !ag->sync_errors[slot]) ||
		    (msg && ag->sync_errors[slot] && !strcmp(msg, ag->sync_errors[slot]));
	if (!same) {
		if (msg)
			log_error(SUB, "%s", msg);
		free(ag->sync_errors[slot]);
		ag->sync_errors[slot] = msg;
		ag->status_dirty = true;
	} else {
		free(msg);
	}
}

/* The iptables writer copies the node addresses: made again when they change (cheap). */
static void ipt_writer_make(struct agent *ag)
{
	if (ag->iw)
		ipt_writer_free(ag->iw);
	struct svc_plan_in in = {ag->o.node, ag->node_addrs, ag->nnode_addrs};
	struct ipt_cfg cfg = {.family = AF_INET};
	for (size_t i = 0; i < ag->o.ncidrs; i++)
		if (ag->o.cidrs[i].addr.family == AF_INET)
			cfg.cluster_cidr = &ag->o.cidrs[i]; /* pod traffic: no masquerade */
	ag->iw = ipt_writer_new(ag->sp, ag->store, &in, &cfg);
	ag->ipt_dirty = true;
}

/* NodePorts listen on this Node's InternalIPs; replan them only when those change. */
static void update_node_addrs(struct agent *ag)
{
	if (!ag->sp)
		return;
	struct ipaddr a[MAX_NODE_ADDRS];
	size_t n = svc_node_addrs(self_node(ag), a, ARRAY_SIZE(a));
	bool same = n == ag->nnode_addrs;
	for (size_t i = 0; same && i < n; i++)
		same = ip_eq(&a[i], &ag->node_addrs[i]);
	if (same)
		return;
	memcpy(ag->node_addrs, a, n * sizeof(a[0]));
	ag->nnode_addrs = n;
	svc_planner_set_node_addrs(ag->sp, a, n);
	if (ag->iw)
		ipt_writer_make(ag);
	char list[MAX_NODE_ADDRS * IP_STRLEN] = "";
	for (size_t i = 0; i < n; i++) {
		char b[IP_STRLEN];
		if (i)
			strcat(list, ",");
		strcat(list, ip_fmt(&a[i], b));
	}
	log_info(SUB, "NodePorts listen on %s", n ? list : "(no node address yet)");
}

static void write_services_json(struct agent *ag)
{
	/* streamed: O(endpoints) bytes, never held in memory whole */
	struct file_stream fs;
	int r;
	FILE *f = file_stream_open(&fs, ag->services_json_path);
	if (f) {
		svc_services_json_write(f, ag->sp, ag->o.node, proxy_mode_name(ag->o.proxy));
		r = file_stream_commit(&fs, ag->services_json_path, &ag->services_json_hash);
	} else {
		r = fs.err;
	}
	if (r < 0)
		log_error(SUB, "writing %s: %s", ag->services_json_path, strerror(-r));
}

static void proxy_backoff(struct agent *ag, monotime_t now)
{
	ag->proxy_backoff_ms = ag->proxy_backoff_ms ? (ag->proxy_backoff_ms * 2 > BACKOFF_MAX_MS
							   ? BACKOFF_MAX_MS
							   : ag->proxy_backoff_ms * 2)
						    : BACKOFF_MIN_MS;
	ag->proxy_next_try = now + MONO_MS(ag->proxy_backoff_ms);
}

/* kube-proxy's iptables mode: every sync is a full iptables-save + render +
 * iptables-restore --noflush (atomic), run when a Service changed or a resync is due. */
static void proxy_sync_ipt(struct agent *ag, monotime_t now)
{
	if (!(ag->ipt_dirty || svc_planner_dirty(ag->sp)) || now < ag->proxy_next_try)
		return;
	monotime_t t0 = monotime_now();
	int r = ipt_writer_sync(ag->iw);
	if (r < 0) {
		ag->ipt_dirty = true;
		proxy_backoff(ag, now);
		const char *e = ipt_writer_error(ag->iw);
		char *what = xasprintf("proxy (iptables)%s%s", e[0] ? ": " : "", e);
		set_sync_error(ag, 2, what, r);
		free(what);
		return;
	}
	ag->ipt_dirty = false;
	ag->proxy_backoff_ms = 0;
	ag->proxy_next_try = 0;
	set_sync_error(ag, 2, "proxy", 0);
	ag->services_dirty = ag->status_dirty = ag->hc_dirty = true;
	const struct ipt_render_stats *st = ipt_writer_stats(ag->iw);
	log_msg(ag->proxy_synced ? LOG_DEBUG : LOG_INFO, SUB,
		"iptables: full sync, %u nat rules, %u filter rules, %u chains deleted, %.1f ms",
		st->nat_rules, st->filter_rules, st->deleted_chains,
		(double)(monotime_now() - t0) / 1e6);
	ag->proxy_synced = true;
}

/* ---- --proxy ipvs (proxy/ipvs.h) ---- */
static void ipvs_writer_make(struct agent *ag)
{
	struct ipvs_cfg cfg = {.scheduler = ag->o.ipvs_scheduler};
	for (size_t i = 0; i < ag->o.ncidrs; i++)
		if (ag->o.cidrs[i].addr.family == AF_INET)
			cfg.cluster_cidr = &ag->o.cidrs[i]; /* pod traffic: no masquerade */
		else
			cfg.cluster_cidr6 = &ag->o.cidrs[i];
	ag->vw = ipvs_writer_new(ag->sp, ag->store, &cfg);
}

static void proxy_sync_ipvs(struct agent *ag, monotime_t now)
{
	if (!ipvs_writer_dirty(ag->vw) || now < ag->proxy_next_try)
		return;
	int r = ipvs_writer_sync(ag->vw);
	const struct ipvs_sync_stats *st = ipvs_writer_stats(ag->vw);
	if (st->services || st->full)
		ag->services_dirty = ag->status_dirty = ag->hc_dirty = true;
	if (r < 0) {
		proxy_backoff(ag, now);
		const char *e = ipvs_writer_error(ag->vw);
		char *what = xasprintf("proxy (ipvs)%s%s", e[0] ? ": " : "", e);
		set_sync_error(ag, 2, what, r);
		free(what);
		return;
	}
	ag->proxy_backoff_ms = 0;
	ag->proxy_next_try = 0;
	set_sync_error(ag, 2, "proxy", 0);
	unsigned changed = st->svc_added + st->svc_changed + st->svc_deleted + st->dests_added +
			   st->dests_changed + st->dests_deleted + st->addrs_added +
			   st->addrs_deleted;
	bool info = st->full && (!ag->proxy_synced || changed);
	ag->proxy_synced = true;
	if (st->full || st->services)
		log_msg(info ? LOG_INFO : LOG_DEBUG, SUB,
			"ipvs: %s sync, %u Services changed, services +%u ~%u -%u, real servers "
			"+%u ~%u -%u, addresses +%u -%u, %u nftables messages",
			st->full ? "full" : "incremental", st->services, st->svc_added,
			st->svc_changed, st->svc_deleted, st->dests_added, st->dests_changed,
			st->dests_deleted, st->addrs_added, st->addrs_deleted, st->nft_messages);
}
/* ---- end --proxy ipvs ---- */

/* The Service dataplane: one nftables transaction per round when anything changed; a
 * failure is retried with exponential back-off (the writer dumps the kernel first). */
static void proxy_sync(struct agent *ag)
{
	monotime_t now = monotime_now();
	if (ag->iw)
		proxy_sync_ipt(ag, now);
	if (ag->vw)
		proxy_sync_ipvs(ag, now);
	if (ag->nw && nft_writer_dirty(ag->nw) && now >= ag->proxy_next_try) {
		int r = nft_writer_sync(ag->nw);
		const struct nft_sync_stats *st = nft_writer_stats(ag->nw);
		if (st->services || st->full)
			ag->services_dirty = ag->status_dirty = ag->hc_dirty = true;
		if (r < 0) {
			proxy_backoff(ag, now);
			const char *e = nft_writer_error(ag->nw);
			char *what = xasprintf("proxy (nftables)%s%s", e[0] ? ": " : "", e);
			set_sync_error(ag, 2, what, r);
			free(what);
		} else {
			ag->proxy_backoff_ms = 0;
			ag->proxy_next_try = 0;
			set_sync_error(ag, 2, "proxy", 0);
			/* info: the first sync (what a restart found) and drift repaired by a
			 * resync */
			bool changed = st->chains_written || st->chains_deleted ||
				       st->elems_added || st->elems_deleted;
			bool info = st->full && (!ag->proxy_synced || changed);
			ag->proxy_synced = true;
			if (st->full || st->services || st->messages)
				log_msg(info ? LOG_INFO : LOG_DEBUG, SUB,
					"nftables: %s sync, %u messages, %u Services changed, "
					"elements +%u -%u, chains %u written %u deleted",
					st->full ? "full" : "incremental", st->messages,
					st->services, st->elems_added, st->elems_deleted,
					st->chains_written, st->chains_deleted);
		}
	}
	if (ag->lb)
		lbdev_sync(ag->lb); /* cheap when nothing changed; problems: lbdev_status() */
	if (ag->services_dirty && !ag->sync_errors[2] && now >= ag->services_next_write) {
		ag->services_dirty = false;
		ag->services_next_write = now + MONO_MS(SERVICES_JSON_MIN_MS);
		write_services_json(ag);
	}
}

/* Health-check node ports follow what the dataplane programmed; a port that cannot be
 * opened (in use) is retried on the next change or resync. */
static void healthcheck_sync(struct agent *ag)
{
	ag->hc_dirty = false;
	struct hc_service *v;
	size_t n = hc_services_collect(ag->store, ag->sp, &v);
	char *err = NULL;
	int r = healthcheck_set(ag->hc, v, n, &err);
	hc_services_free(v, n);
	set_sync_error(ag, 3, err ? err : "health checks", r);
	free(err);
}

static void on_policy_obj(void *arg, enum store_event ev, const struct object *old,
			  const struct object *new_obj)
{
	struct agent *ag = arg;
	(void)ev;
	(void)old;
	(void)new_obj;
	ag->policy_dirty = true;
}

/* NetworkPolicy: plan the node's pods from the store, program the difference in one
 * transaction, write policy.json (what `twill policy list|trace` read). */
static void policy_sync(struct agent *ag)
{
	monotime_t now = monotime_now();
	if (!ag->policy_dirty || now < ag->policy_next_try)
		return;
	monotime_t t0 = now;
	struct pol_plan *p = pol_plan_build(ag->store, ag->o.node);
	int r = pol_writer_sync(ag->pw, p);
	const struct pol_sync_stats *st = pol_writer_stats(ag->pw);
	if (r < 0) {
		unsigned b = ag->policy_backoff_ms;
		ag->policy_backoff_ms = b ? (b * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b * 2)
					  : BACKOFF_MIN_MS;
		ag->policy_next_try = now + MONO_MS(ag->policy_backoff_ms);
		char *what = xasprintf("policy (nftables): %s", pol_writer_error(ag->pw));
		set_sync_error(ag, 4, what, r);
		free(what);
	} else {
		ag->policy_dirty = false;
		ag->policy_backoff_ms = 0;
		ag->policy_next_try = 0;
		set_sync_error(ag, 4, "policy", 0);
		bool changed = st->chains_written || st->chains_deleted || st->sets_added ||
			       st->sets_deleted || st->elems_added || st->elems_deleted;
		/* info: the first sync (what a restart found) and rule changes */
		log_msg(!ag->policy_synced || (changed && st->chains_written) ? LOG_INFO : LOG_DEBUG,
			SUB,
				"policy: %s sync, %u messages, chains %u written %u deleted, sets "
				"+%u -%u, elements +%u -%u, %zu isolating chains, %.1f ms",
				st->full ? "full" : "incremental", st->messages, st->chains_written,
				st->chains_deleted, st->sets_added, st->sets_deleted,
				st->elems_added, st->elems_deleted, p->chains.n,
				(double)(monotime_now() - t0) / 1e6);
		ag->policy_synced = true;
		char *js = pol_plan_json(p, ag->o.node, ag->o.manifests);
		int w = write_if_changed(ag->policy_json_path, &ag->policy_json_last, js);
		if (w < 0)
			log_error(SUB, "writing %s: %s", ag->policy_json_path, strerror(-w));
		free(js);
	}
	pol_plan_free(p);
}

/* One round of work after a wake-up: each dirty component syncs once. */
static void run_syncs(struct agent *ag)
{
	if (controller_dirty(ag->ctl)) {
		int r = controller_sync(ag->ctl);
		set_sync_error(ag, 0, "controller", r);
	}
	if (route_planner_dirty(ag->rp)) {
		route_planner_sync(ag->rp);
		ag->status_dirty = true;
		ag->node_dirty = true; /* the underlay MTU may just have become known */
	}
	if (ag->node_dirty) {
		ag->node_dirty = false;
		write_node_json(ag);
		update_node_addrs(ag);
		if (ag->kl)
			kubelet_kick(ag->kl); /* node.json may have just appeared */
		if (!self_node(ag)) {
			if (!ag->waiting_logged)
				log_info(SUB, "waiting for Node %s to appear in %s", ag->o.node,
					 ag->o.manifests);
			ag->waiting_logged = true;
		} else {
			ag->waiting_logged = false;
		}
	}
	if (ag->pw)
		policy_sync(ag);
	if (ag->nw || ag->iw || ag->vw)
		proxy_sync(ag);
	if (ag->hc && ag->hc_dirty)
		healthcheck_sync(ag);
	if (agent_bgp_sync(ag->bgp))
		ag->status_dirty = true;
	if (ag->kl && kubelet_dirty(ag->kl)) {
		int r = kubelet_sync(ag->kl);
		set_sync_error(ag, 1, "kubelet", r);
	}
	if (ag->status_dirty) {
		ag->status_dirty = false;
		write_status_json(ag);
	}
}

static void agent_free(struct agent *ag)
{
	if (ag->src)
		source_dir_close(ag->src);
	if (ag->kl)
		kubelet_free(ag->kl);
	if (ag->nw)
		nft_writer_free(ag->nw);
	pol_writer_free(ag->pw);
	free(ag->policy_json_last);
	free(ag->policy_json_path);
	if (ag->iw)
		ipt_writer_free(ag->iw);
	ipvs_writer_free(ag->vw);
	healthcheck_free(ag->hc);
	lbdev_free(ag->lb);
	if (ag->sp)
		svc_planner_free(ag->sp);
	agent_bgp_free(ag->bgp); /* graceful restart: routes stay */
	route_planner_free(ag->rp);
	if (ag->ctl)
		controller_free(ag->ctl);
	if (ag->store)
		store_free(ag->store);
	for (size_t i = 0; i < ag->ndiags; i++) {
		free(ag->diags[i].file);
		free(ag->diags[i].msg);
	}
	for (size_t i = 0; i < ARRAY_SIZE(ag->sync_errors); i++)
		free(ag->sync_errors[i]);
	free(ag->node_json_last);
	free(ag->status_json_last);
	free(ag->node_json_path);
	free(ag->status_json_path);
	free(ag->services_json_path);
}

static int epoll_add(int ep, int fd)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
	return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static int fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(LOG_ERROR, SUB, fmt, ap);
	va_end(ap);
	return 1;
}

int agent_main(int argc, char **argv)
{
	struct agent ag_s = {0}, *ag = &ag_s;
	int r = parse_args(argc, argv, &ag->o);
	if (r)
		return r == 1 ? 0 : r;

	FILE *logf = NULL;
	if (ag->o.log_file) {
		logf = fopen(ag->o.log_file, "ae");
		if (!logf) {
			fprintf(stderr, "twill agent: cannot open log file %s: %s\n",
				ag->o.log_file, strerror(errno));
			return 1;
		}
		setvbuf(logf, NULL, _IOLBF, 0);
		log_set_file(logf);
	}
	log_set_level(ag->o.level);
	log_set_prefix(ag->o.node);

	int ret = 1, ep = -1, tfd = -1, sfd = -1;
	struct stat st;
	if (stat(ag->o.manifests, &st) < 0 || !S_ISDIR(st.st_mode)) {
		ret = fatal("manifest directory %s: %s", ag->o.manifests,
			    errno ? strerror(errno) : "not a directory");
		goto out;
	}
	r = mkdir_p(ag->o.state_dir, 0755);
	if (r < 0) {
		ret = fatal("state directory %s: %s", ag->o.state_dir, strerror(-r));
		goto out;
	}
	ag->node_json_path = xasprintf("%s/%s", ag->o.state_dir, TWILL_NODE_STATE_FILE);
	ag->status_json_path = xasprintf("%s/%s", ag->o.state_dir, TWILL_STATUS_FILE);
	ag->services_json_path = xasprintf("%s/%s", ag->o.state_dir, TWILL_SERVICES_FILE);
	ag->policy_json_path = xasprintf("%s/%s", ag->o.state_dir, POLICY_FILE);

	/* Pods and remote podCIDRs are reached through this node: it forwards. */
	r = sysctl_write("net.ipv4.ip_forward", "1");
	if (r < 0)
		log_warn(SUB, "net.ipv4.ip_forward=1: %s", strerror(-r));
	/* Bridge wiring: a pod reaching a Service backend on its own bridge gets the reply
	 * straight over the bridge unless bridged IPv4 passes the ip hooks, where conntrack
	 * reverses the DNAT (kube-proxy needs br_netfilter for the same reason). */
	if (ag->o.proxy != PROXY_NONE && !strcmp(ag->o.wiring, "bridge")) {
		r = sysctl_write("net.bridge.bridge-nf-call-iptables", "1");
		if (r < 0)
			log_warn(SUB,
				 "net.bridge.bridge-nf-call-iptables=1: %s (is br_netfilter "
				 "loaded?); pods reaching a Service backend on their own bridge "
				 "will fail",
				 strerror(-r));
	}

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGPIPE);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
		ret = fatal("sigprocmask: %s", strerror(errno));
		goto out;
	}
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (sfd < 0 || tfd < 0 || ep < 0) {
		ret = fatal("event loop setup: %s", strerror(errno));
		goto out;
	}
	struct itimerspec its = {
	    .it_interval = {.tv_sec = 0, .tv_nsec = TICK_MS * 1000000L},
	    .it_value = {.tv_sec = 0, .tv_nsec = TICK_MS * 1000000L},
	};
	timerfd_settime(tfd, 0, &its, NULL);

	ag->store = store_new();
	struct controller_cfg ccfg = {.manifest_dir = ag->o.manifests,
				      .ncluster_cidrs = ag->o.ncidrs,
				      .nservice_cidrs = ag->o.nsvc_cidrs};
	memcpy(ccfg.service_cidrs, ag->o.svc_cidrs, sizeof(ccfg.service_cidrs));
	for (size_t i = 0; i < ag->o.ncidrs; i++) {
		ccfg.cluster_cidrs[i] = ag->o.cidrs[i];
		ccfg.node_cidr_len[i] =
		    ag->o.cidrs[i].addr.family == AF_INET ? ag->o.node_cidr_len : 64;
	}
	ag->ctl = controller_new(ag->store, &ccfg);
	char *wg_key_file = xasprintf("%s/%s", ag->o.state_dir, WG_KEY_FILE);
	char *wg_publish_file =
	    xasprintf("%s/%s/" WG_PUBLISH_FMT, ag->o.manifests, SOURCE_OVERLAY_DIR, ag->o.node);
	struct route_cfg rcfg = {
	    .node_name = ag->o.node,
	    .mode = ag->o.routing,
	    .vni = ag->o.vni,
	    .port = ag->o.port,
	    .encrypt = ag->o.encrypt,
	    .wg_key_file = wg_key_file,
	    .wg_publish_file = wg_publish_file,
	};
	ag->rp = route_planner_new(ag->store, &rcfg);
	if (ag->o.routing == ROUTE_BGP)
		ag->bgp = agent_bgp_new(ag->store, ag->o.node, ag->o.state_dir, ep);
	free(wg_key_file);
	free(wg_publish_file);
	if (ag->o.proxy != PROXY_NONE) {
		/* NodePort addresses come with this Node (update_node_addrs) */
		struct svc_plan_in in = {.node_name = ag->o.node};
		ag->sp = svc_planner_new(ag->store, &in);
		if (ag->o.proxy == PROXY_NFTABLES)
			ag->nw = nft_writer_new(ag->sp, NULL);
		else if (ag->o.proxy == PROXY_IPVS)
			ipvs_writer_make(ag);
		else
			ipt_writer_make(ag);
		ag->hc = healthcheck_new(ep);
		ag->lb = lbdev_new(ag->sp, NULL);
	}
	char self_exe[PATH_MAX];
	if (ag->o.kubelet) {
		ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
		if (n <= 0) {
			ret = fatal("cannot find the twill binary (/proc/self/exe): %s",
				    strerror(errno));
			goto out;
		}
		self_exe[n] = '\0';
		struct kubelet_cfg kcfg = {
		    .node_name = ag->o.node,
		    .lab = ag->o.lab,
		    .manifest_dir = ag->o.manifests,
		    .state_dir = ag->o.state_dir,
		    .self_exe = self_exe,
		};
		ag->kl = kubelet_new(ag->store, &kcfg);
	}
	store_subscribe(ag->store, KIND_BIT(KIND_NODE), on_node, ag);
	if (ag->o.policy) {
		ag->pw = pol_writer_new(NULL);
		ag->policy_dirty = true;
		store_subscribe(ag->store,
				KIND_BIT(KIND_POD) | KIND_BIT(KIND_NAMESPACE) |
				    KIND_BIT(KIND_NETWORKPOLICY),
				on_policy_obj, ag);
	}

	ag->src = source_dir_open(ag->store, ag->o.manifests, on_diag, ag);
	if (!ag->src) {
		ret = fatal("cannot watch manifest directory %s: %s", ag->o.manifests,
			    strerror(errno));
		goto out;
	}
	char cidrs[2 * IP_STRLEN + 2] = "";
	for (size_t i = 0; i < ag->o.ncidrs; i++) {
		char b[IP_STRLEN];
		if (i)
			strcat(cidrs, ",");
		strcat(cidrs, prefix_fmt(&ag->o.cidrs[i], b));
	}
	log_info(
	    SUB,
	    "starting: manifests %s, state %s, routing %s, wiring %s, cluster %s (/%u per node), "
	    "proxy %s, policy %s%s",
	    ag->o.manifests, ag->o.state_dir, route_mode_name(ag->o.routing), ag->o.wiring, cidrs,
	    ag->o.node_cidr_len, proxy_mode_name(ag->o.proxy), ag->o.policy ? "on" : "off",
	    ag->kl ? ", kubelet" : "");
	controller_try_lead(ag->ctl);
	r = source_dir_scan(ag->src);
	if (r < 0)
		log_error(SUB, "scanning %s: %s", ag->o.manifests, strerror(-r));
	if (epoll_add(ep, source_dir_fd(ag->src)) < 0 || epoll_add(ep, tfd) < 0 ||
	    epoll_add(ep, sfd) < 0) {
		ret = fatal("epoll: %s", strerror(errno));
		goto out;
	}
	ag->node_dirty = ag->status_dirty = true;
	bool was_leader = controller_is_leader(ag->ctl);
	if (was_leader)
		log_info(SUB, "this agent leads the controller");
	monotime_t next_resync = monotime_now() + MONO_MS(ag->o.resync_s * 1000ULL);
	run_syncs(ag);

	for (;;) {
		struct epoll_event evs[8];
		int n = epoll_wait(ep, evs, ARRAY_SIZE(evs), agent_bgp_timeout_ms(ag->bgp));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = fatal("epoll_wait: %s", strerror(errno));
			goto out;
		}
		bool stop = false;
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == sfd) {
				struct signalfd_siginfo si;
				while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
					if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
						log_info(SUB,
							 "signal %u: stopping (routes and pods "
							 "stay in place)",
							 si.ssi_signo);
						stop = true;
					} else if (si.ssi_signo == SIGHUP) {
						log_info(SUB,
							 "SIGHUP: rescanning manifests and kernel");
						r = source_dir_scan(ag->src);
						if (r < 0)
							log_error(SUB, "scanning %s: %s",
								  ag->o.manifests, strerror(-r));
						route_planner_request_resync(ag->rp);
						if (ag->nw)
							nft_writer_request_resync(ag->nw);
						if (ag->vw)
							ipvs_writer_request_resync(ag->vw);
						if (ag->pw) {
							pol_writer_request_resync(ag->pw);
							ag->policy_dirty = true;
						}
						ag->ipt_dirty = ag->iw != NULL;
						ag->hc_dirty = ag->hc != NULL;
						ag->status_dirty = ag->node_dirty = true;
					}
				}
			} else if (fd == tfd) {
				uint64_t ticks;
				if (read(tfd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
					log_debug(SUB, "timerfd: %s", strerror(errno));
				if (!controller_is_leader(ag->ctl))
					controller_try_lead(ag->ctl);
				bool lead = controller_is_leader(ag->ctl);
				if (lead != was_leader) {
					log_info(SUB, "%s",
						 lead ? "this agent now leads the controller"
						      : "no longer the leader");
					was_leader = lead;
					ag->status_dirty = true;
				}
				monotime_t now = monotime_now();
				if (ag->o.resync_s && now >= next_resync) {
					next_resync = now + MONO_MS(ag->o.resync_s * 1000ULL);
					route_planner_request_resync(ag->rp);
					if (ag->nw)
						nft_writer_request_resync(ag->nw);
					if (ag->vw)
						ipvs_writer_request_resync(ag->vw);
					if (ag->pw) {
						pol_writer_request_resync(ag->pw);
						ag->policy_dirty = true;
					}
					ag->ipt_dirty = ag->iw != NULL;
					ag->hc_dirty = ag->hc != NULL;
					ag->status_dirty = true; /* expire fixed manifest errors */
				}
				healthcheck_tick(ag->hc);
			} else if (agent_bgp_handle(ag->bgp, fd)) {
				continue; /* runs in run_syncs */
			} else if (healthcheck_handle(ag->hc, fd)) {
				continue;
			} else {
				r = source_dir_process(ag->src);
				if (r < 0)
					log_error(SUB, "reading manifest changes: %s",
						  strerror(-r));
			}
		}
		if (stop)
			break;
		run_syncs(ag);
	}
	ret = 0;
out:
	agent_free(ag);
	if (ep >= 0)
		close(ep);
	if (tfd >= 0)
		close(tfd);
	if (sfd >= 0)
		close(sfd);
	if (logf) {
		log_set_file(NULL);
		fclose(logf);
	}
	return ret;
}
