/* lab: `twill lab` — seed 003's cluster (Cilium native-routing lab) built from network
 * namespaces on one machine, with nothing created in the host's namespace.
 *
 *            <lab>-ctr 192.168.10.100 ─┐
 *            <lab>-w1  192.168.10.101 ─┴─ br10 .254 ┐
 *                                                   ├ <lab>-router (ip_forward, no pod routes)
 *            <lab>-w0  192.168.20.100 ─── br20 .254 ┤
 *            <lab>-ext 192.168.30.100 ───── ext .254 ┘
 *
 * The router has a static route for the LoadBalancer pool 192.168.50.0/24 via ctr
 * (192.168.10.100), whose Service proxy answers for every LB address (BGP comes later).
 * `--proxy nftables|iptables|ipvs|none` is passed to every agent (default nftables; ipvs
 * needs a kernel with IPVS and dummy, e.g. the VM of `make vmcheck`).
 *
 * Every veth is created from inside a lab namespace with its peer created directly in the
 * router's namespace (nl_open_netns), so no link ever appears in the host's namespace.
 * Each node runs `twill agent --kubelet` in its namespace; they share one manifest
 * directory (/run/twill/lab/<lab>/manifests), which plays the API server.
 *
 * Subcommands: up, down, status, probe, exec, restart-agent, kill-agent, start-agent,
 * podserver (the pod workload, see podserver.h). */
#include "lab/lab.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <libgen.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lab/podserver.h"
#include "lib/consts.h"
#include "nl/nl.h"
#include "route/route.h"

const struct lab_node lab_nodes[LAB_NNODES] = {
    {"ctr", "192.168.10.100", "br10", "192.168.10.254"},
    {"w1", "192.168.10.101", "br10", "192.168.10.254"},
    {"w0", "192.168.20.100", "br20", "192.168.20.254"},
};

static const struct {
	const char *name, *addr; /* router bridge and its address */
} lab_bridges[] = {{"br10", "192.168.10.254/24"}, {"br20", "192.168.20.254/24"}};

/* LoadBalancer addresses (a MetalLB-shaped IPAddressPool in the lab's manifests) are
 * reached through a static route on the router to ctr's underlay address; ctr's proxy
 * answers for every LB address and forwards (Cluster policy) or serves its local endpoints
 * (Local policy).  BGP announcements from every node replace this later. */
#define LB_POOL "192.168.50.0/24"
#define LB_POOL_VIA "192.168.10.100"
#define EXT_IP "192.168.30.100"
#define EXT_ROUTER_ADDR "192.168.30.254/24"
#define EXT_GW "192.168.30.254"
#define UNDERLAY_IF "eth1"

const struct lab_node *lab_node_find(const char *name)
{
	for (size_t i = 0; i < LAB_NNODES; i++)
		if (!strcmp(lab_nodes[i].name, name))
			return &lab_nodes[i];
	return NULL;
}

char *lab_dir(const char *lab)
{
	return xasprintf("%s/%s", LAB_ROOT, lab);
}
char *lab_manifest_dir(const char *lab)
{
	return xasprintf("%s/%s/manifests", LAB_ROOT, lab);
}
char *lab_node_state_dir(const char *lab, const char *node)
{
	return xasprintf("%s/%s/nodes/%s", LAB_ROOT, lab, node);
}
char *lab_netns_name(const char *lab, const char *suffix)
{
	return xasprintf("%s-%s", lab, suffix);
}
/* The kubelet records the namespace it made in nodes/<node>/pods/<ns>_<pod>.json (long
 * names are shortened with a hash there); the plain name is the fallback. */
char *lab_pod_netns(const char *lab, const char *node, const char *ns, const char *pod)
{
	char *path = xasprintf("%s/%s/nodes/%s/pods/%s_%s.json", LAB_ROOT, lab, node, ns, pod);
	char *data = NULL, *out = NULL;
	size_t len;
	if (file_read(path, &data, &len) == 0) {
		json_object *o = json_tokener_parse(data), *v;
		if (o && json_object_object_get_ex(o, "netns", &v) &&
		    json_object_is_type(v, json_type_string) && *json_object_get_string(v))
			out = xstrdup(json_object_get_string(v));
		json_object_put(o);
	}
	free(data);
	free(path);
	return out ? out : xasprintf("%s-p-%s-%s-%s", lab, node, ns, pod);
}

/* No '-' so that "<lab>-" never prefixes another lab's namespaces; short so that pod
 * namespace names stay readable. */
bool lab_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > 16)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_'))
			return false;
	}
	return true;
}

static double now_s(void)
{
	return (double)monotime_now() / 1e9;
}

static void die_usage(const char *msg)
{
	fprintf(stderr, "twill lab: %s (see `twill lab help`)\n", msg);
}

static void usage(FILE *f)
{
	fputs("usage: twill lab <command> [--name NAME] ...\n\n"
	      "  up [--routing host-gw|vxlan|mixed|ipip|ipip-crosssubnet|bgp] [--router twill|bird|frr]\n"
	      "     [--wiring routed|bridge]\n"
	      "     [-f MANIFEST]...\n"
	      "     [--proxy nftables|iptables|ipvs|none] [--no-wait] [--timeout SECONDS]\n"
	      "     [--encrypt none|wireguard] [--log-level LEVEL]\n"
	      "        build seed 003's lab (nodes ctr, w1 on 192.168.10.0/24, w0 on\n"
	      "        192.168.20.0/24, a router without pod routes, a client ext) and start one\n"
	      "        agent per node; waits until every pod answers HTTP from its node.  The\n"
	      "        router routes the LoadBalancer pool 192.168.50.0/24 via ctr (static;\n"
	      "        declare it with a metallb.io/v1beta1 IPAddressPool); --proxy picks the\n"
	      "        agents' Service dataplane (default nftables); --routing bgp: no static\n"
	      "        route at all, the nodes (AS 65001) peer with the router (AS 65002, --router\n"
	      "        twill|bird|frr, default twill: `twill bgp run`), which learns podCIDRs\n"
	      "        and LoadBalancer addresses; --encrypt wireguard\n"
	      "        sends pod traffic between nodes through WireGuard\n"
	      "  down   stop the lab's agents and pods, delete its namespaces and state\n"
	      "  status [-o json]   nodes, pods, routes and peer status\n"
	      "  probe [--port N] [--timeout-ms MS] [--from-nodes] [--to POD] [-o json]\n"
	      "        pod x pod HTTP reachability matrix; exit 0 only if all reachable\n"
	      "  probe-matrix [--ports 80/tcp,81/udp,...] [--services] [--timeout-ms MS]\n"
	      "        every pod to every pod (and ClusterIP) per port, concurrently; JSON\n"
	      "  exec TARGET [--] CMD...   run CMD in the namespace of a node (ctr, w1, w0),\n"
	      "        router, ext or a pod (NS/NAME or NAME)\n"
	      "  restart-agent NODE [--signal TERM|KILL]   kill a node's agent and start it again\n"
	      "  kill-agent NODE [--signal TERM|KILL] / start-agent NODE\n"
	      "  podserver ...   the pod workload (run by the lab's kubelet)\n\n"
	      "Default name \"twill\", routing mixed, wiring routed. State: /run/twill/lab/NAME.\n",
	      f);
}

/* ------------------------------------------------------------------------------------ */
/* processes */

static char *self_exe(void)
{
	char buf[4096];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	if (n < 0)
		return xstrdup("/proc/self/exe");
	buf[n] = 0;
	return xstrdup(buf);
}

/* Running (not a zombie: the lab's processes outlive `lab up`, and whatever adopted them
 * may be slow to reap). */
bool lab_proc_alive(pid_t pid)
{
	if (pid <= 0 || kill(pid, 0) < 0)
		return false;
	char path[64], *data = NULL;
	size_t len;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (file_read(path, &data, &len) < 0)
		return false;
	const char *p = strrchr(data, ')');
	bool alive = !(p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'));
	free(data);
	return alive;
}

static ino_t proc_netns_ino(pid_t pid)
{
	char path[64];
	struct stat st;
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	return stat(path, &st) == 0 ? st.st_ino : 0;
}

/* The lab's namespaces (inodes), to recognise its processes. */
struct ns_set {
	size_t n;
	ino_t *ino;
	char **names;
};

static int ns_set_add(const char *name, void *arg)
{
	struct ns_set *s = arg;
	char *path = xasprintf("/run/netns/%s", name);
	struct stat st;
	if (stat(path, &st) == 0) {
		s->ino = xrealloc(s->ino, (s->n + 1) * sizeof(*s->ino));
		s->names = xrealloc(s->names, (s->n + 1) * sizeof(*s->names));
		s->ino[s->n] = st.st_ino;
		s->names[s->n++] = xstrdup(name);
	}
	free(path);
	return 0;
}

static void ns_set_load(struct ns_set *s, const char *lab)
{
	memset(s, 0, sizeof(*s));
	char *prefix = xasprintf("%s-", lab);
	netns_list(prefix, ns_set_add, s);
	free(prefix);
}

static void ns_set_free(struct ns_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->names[i]);
	free(s->names);
	free(s->ino);
	s->names = NULL;
	s->ino = NULL;
	s->n = 0;
}

static bool ns_set_has(const struct ns_set *s, ino_t ino)
{
	for (size_t i = 0; ino && i < s->n; i++)
		if (s->ino[i] == ino)
			return true;
	return false;
}

/* Is pid running twill in one of the roles the lab starts (`agent`, `lab podserver`)?
 * Judged from its command line, not its executable: the binary may have been rebuilt
 * (/proc/PID/exe then reads "... (deleted)") or be another build (twill-san) since. */
static bool proc_is_twill_role(pid_t pid)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	const char *argv0 = buf, *base = strrchr(argv0, '/');
	base = base ? base + 1 : argv0;
	if (strncmp(base, "twill", 5))
		return false;
	const char *arg1 = argv0 + strlen(argv0) + 1;
	if (arg1 >= buf + n)
		return false;
	if (!strcmp(arg1, "agent"))
		return true;
	const char *arg2 = arg1 + strlen(arg1) + 1;
	return !strcmp(arg1, "lab") && arg2 < buf + n && !strcmp(arg2, "podserver");
}

/* A process the lab started: twill as agent or pod server, running in one of the lab's
 * namespaces. */
static bool proc_is_labs(pid_t pid, const char *exe, const struct ns_set *nss)
{
	(void)exe;
	if (pid <= 1 || pid == getpid() || !lab_proc_alive(pid) || !proc_is_twill_role(pid))
		return false;
	return ns_set_has(nss, proc_netns_ino(pid));
}

struct pidlist {
	size_t n;
	pid_t v[1024];
};

static void pidlist_add(struct pidlist *l, pid_t pid)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i] == pid)
			return;
	if (l->n < ARRAY_SIZE(l->v))
		l->v[l->n++] = pid;
}

/* Signal, wait up to wait_ms for all to exit, then SIGKILL and wait again. */
static void kill_wait(const struct pidlist *l, int sig, int wait_ms)
{
	for (size_t i = 0; i < l->n; i++)
		kill(l->v[i], sig);
	for (int round = 0; round < 2; round++) {
		monotime_t end = monotime_now() + MONO_MS(wait_ms);
		for (;;) {
			bool any = false;
			for (size_t i = 0; i < l->n; i++) {
				/* reap our own children (restart-agent from the same process) */
				waitpid(l->v[i], NULL, WNOHANG);
				if (lab_proc_alive(l->v[i]))
					any = true;
			}
			if (!any)
				return;
			if (monotime_now() > end)
				break;
			usleep(10000);
		}
		for (size_t i = 0; i < l->n; i++)
			if (lab_proc_alive(l->v[i]))
				kill(l->v[i], SIGKILL);
	}
}

/* ------------------------------------------------------------------------------------ */
/* lab state files */

struct lab_cfg {
	char name[32];
	char routing[24];
	char wiring[16];
	char proxy[16];
	char encrypt[16];
	char log_level[16];
	char router[16]; /* --routing bgp: twill | bird | frr (lab_router.c) */
};

static int cfg_write(const struct lab_cfg *c)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(c->name));
	json_object_object_add(o, "routing", json_object_new_string(c->routing));
	json_object_object_add(o, "wiring", json_object_new_string(c->wiring));
	json_object_object_add(o, "proxy", json_object_new_string(c->proxy));
	json_object_object_add(o, "encrypt", json_object_new_string(c->encrypt));
	json_object_object_add(o, "logLevel", json_object_new_string(c->log_level));
	json_object_object_add(o, "router", json_object_new_string(c->router));
	json_object_object_add(o, "clusterCIDR", json_object_new_string(LAB_CLUSTER_CIDR));
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
	char *path = xasprintf("%s/%s/lab.json", LAB_ROOT, c->name);
	int r = file_write_atomic(path, s, strlen(s));
	free(path);
	json_object_put(o);
	return r;
}

static int cfg_read(const char *lab, struct lab_cfg *c)
{
	memset(c, 0, sizeof(*c));
	str_copy(c->name, sizeof(c->name), lab);
	str_copy(c->routing, sizeof(c->routing), "mixed");
	str_copy(c->wiring, sizeof(c->wiring), "routed");
	str_copy(c->proxy, sizeof(c->proxy), "nftables");
	str_copy(c->encrypt, sizeof(c->encrypt), "none");
	str_copy(c->log_level, sizeof(c->log_level), "info");
	str_copy(c->router, sizeof(c->router), "twill");
	char *path = xasprintf("%s/%s/lab.json", LAB_ROOT, lab), *data = NULL;
	size_t len;
	int r = file_read(path, &data, &len);
	free(path);
	if (r < 0)
		return r;
	json_object *o = json_tokener_parse(data), *v;
	free(data);
	if (!o)
		return -EINVAL;
	if (json_object_object_get_ex(o, "routing", &v))
		str_copy(c->routing, sizeof(c->routing), json_object_get_string(v));
	if (json_object_object_get_ex(o, "wiring", &v))
		str_copy(c->wiring, sizeof(c->wiring), json_object_get_string(v));
	if (json_object_object_get_ex(o, "proxy", &v))
		str_copy(c->proxy, sizeof(c->proxy), json_object_get_string(v));
	if (json_object_object_get_ex(o, "encrypt", &v))
		str_copy(c->encrypt, sizeof(c->encrypt), json_object_get_string(v));
	if (json_object_object_get_ex(o, "logLevel", &v))
		str_copy(c->log_level, sizeof(c->log_level), json_object_get_string(v));
	if (json_object_object_get_ex(o, "router", &v))
		str_copy(c->router, sizeof(c->router), json_object_get_string(v));
	json_object_put(o);
	return 0;
}

/* pids: one "<node> <pid>" line per agent */
pid_t lab_agent_pid(const char *lab, const char *node)
{
	char *path = xasprintf("%s/%s/pids", LAB_ROOT, lab), *data = NULL;
	size_t len;
	pid_t found = 0;
	if (file_read(path, &data, &len) == 0) {
		char *save = NULL;
		for (char *line = strtok_r(data, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save)) {
			char n[64];
			int pid;
			if (sscanf(line, "%63s %d", n, &pid) == 2 && !strcmp(n, node))
				found = pid;
		}
	}
	free(data);
	free(path);
	return found;
}

static int pids_set(const char *lab, const char *node, pid_t pid)
{
	char *path = xasprintf("%s/%s/pids", LAB_ROOT, lab);
	char out[1024] = "";
	size_t off = 0;
	for (size_t i = 0; i < LAB_NNODES; i++) {
		pid_t p =
		    !strcmp(lab_nodes[i].name, node) ? pid : lab_agent_pid(lab, lab_nodes[i].name);
		if (p > 0)
			off += snprintf(out + off, sizeof(out) - off, "%s %d\n", lab_nodes[i].name,
					(int)p);
	}
	int r = file_write_atomic(path, out, off);
	free(path);
	return r;
}

/* Pod server pid files the kubelet writes under nodes/<node>/pods/ (any file holding a
 * number; one directory level deep is searched too). */
static void collect_pod_pids(const char *dir, int depth, struct pidlist *l)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' &&
		    (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
			continue;
		char *p = xasprintf("%s/%s", dir, e->d_name);
		struct stat st;
		if (stat(p, &st) == 0) {
			if (S_ISDIR(st.st_mode) && depth < 1) {
				collect_pod_pids(p, depth + 1, l);
			} else if (S_ISREG(st.st_mode) && st.st_size < 64) {
				char *data = NULL;
				size_t len;
				int pid;
				if (file_read(p, &data, &len) == 0 &&
				    sscanf(data, "%d", &pid) == 1 && pid > 1)
					pidlist_add(l, pid);
				free(data);
			}
		}
		free(p);
	}
	closedir(d);
}

/* ------------------------------------------------------------------------------------ */
/* topology */

static int parse_prefix(const char *s, struct ipprefix *p)
{
	return prefix_parse(s, p);
}

static int addr_add(struct nl_sock *s, int index, const char *cidr)
{
	struct nl_addr a = {.index = index};
	int r = parse_prefix(cidr, &a.prefix);
	return r < 0 ? r : nl_addr_add(s, &a);
}

static int default_route(struct nl_sock *s, const char *gw)
{
	struct nl_route r = {
	    .protocol = RTPROT_BOOT, .scope = RT_SCOPE_UNIVERSE, .type = RTN_UNICAST};
	r.dst.addr.family = AF_INET;
	r.dst.len = 0;
	int e = ip_parse(gw, &r.gw);
	if (e < 0)
		return e;
	e = nl_route_add(s, &r, NLM_F_CREATE | NLM_F_EXCL);
	return e == -EEXIST ? 0 : e;
}

static int static_route(struct nl_sock *s, const char *dst, const char *gw)
{
	struct nl_route r = {
	    .protocol = RTPROT_STATIC, .scope = RT_SCOPE_UNIVERSE, .type = RTN_UNICAST};
	int e = prefix_parse(dst, &r.dst);
	if (e < 0)
		return e;
	e = ip_parse(gw, &r.gw);
	if (e < 0)
		return e;
	e = nl_route_add(s, &r, NLM_F_CREATE | NLM_F_EXCL);
	return e == -EEXIST ? 0 : e;
}

static int link_up(struct nl_sock *s, const char *name)
{
	int idx = nl_link_index(s, name);
	return idx < 0 ? idx : nl_link_set_up(s, idx, true);
}

static int sysctl_in(int nsfd, const char *key, const char *value)
{
	int saved, r = netns_enter(nsfd, &saved);
	if (r < 0)
		return r;
	r = sysctl_write(key, value);
	netns_leave(saved);
	return r;
}

struct lab_ns {
	char *name;
	int fd;
	struct nl_sock *nl;
};

static void lab_ns_close(struct lab_ns *n)
{
	if (n->nl)
		nl_close(n->nl);
	if (n->fd >= 0)
		close(n->fd);
	free(n->name);
	n->nl = NULL;
	n->fd = -1;
	n->name = NULL;
}

static int lab_ns_make(struct lab_ns *n, const char *lab, const char *suffix)
{
	n->fd = -1;
	n->nl = NULL;
	n->name = lab_netns_name(lab, suffix);
	int r = netns_create(n->name);
	if (r < 0) {
		fprintf(stderr, "twill lab: create namespace %s: %s\n", n->name, strerror(-r));
		return r;
	}
	n->fd = netns_open(n->name);
	if (n->fd < 0) {
		r = n->fd;
		fprintf(stderr, "twill lab: open namespace %s: %s\n", n->name, strerror(-r));
		return r;
	}
	n->nl = nl_open_netns(n->fd);
	if (!n->nl) {
		r = -errno;
		fprintf(stderr, "twill lab: netlink in %s: %s\n", n->name, strerror(errno));
		return r;
	}
	r = link_up(n->nl, "lo");
	if (r < 0)
		fprintf(stderr, "twill lab: %s: lo up: %s\n", n->name, strerror(-r));
	return r;
}

#define TRY(what, expr)                                                                            \
	do {                                                                                       \
		int r_ = (expr);                                                                   \
		if (r_ < 0) {                                                                      \
			fprintf(stderr, "twill lab: %s: %s\n", what, strerror(-r_));               \
			return r_;                                                                 \
		}                                                                                  \
	} while (0)

/* A veth from inside `inner` (named UNDERLAY_IF) with its peer `peer` created directly in
 * the router's namespace; the peer is enslaved to `bridge` (or addressed when bridge is
 * NULL); the inner end gets addr and a default route via gw. */
static int wire(struct lab_ns *router, struct lab_ns *inner, const char *peer, const char *bridge,
		const char *peer_addr, const char *addr, const char *gw)
{
	char what[128];
	snprintf(what, sizeof(what), "%s: veth %s <-> router %s", inner->name, UNDERLAY_IF, peer);
	TRY(what, nl_link_add_veth(inner->nl, UNDERLAY_IF, NULL, peer, NULL, router->fd, 0));
	int pidx = nl_link_index(router->nl, peer);
	TRY(what, pidx);
	if (bridge) {
		int bidx = nl_link_index(router->nl, bridge);
		TRY(what, bidx);
		TRY(what, nl_link_set_master(router->nl, pidx, bidx));
	} else {
		TRY(what, addr_add(router->nl, pidx, peer_addr));
	}
	TRY(what, nl_link_set_up(router->nl, pidx, true));
	int idx = nl_link_index(inner->nl, UNDERLAY_IF);
	TRY(what, idx);
	TRY(what, nl_link_set_up(inner->nl, idx, true));
	TRY(what, addr_add(inner->nl, idx, addr));
	snprintf(what, sizeof(what), "%s: default via %s", inner->name, gw);
	TRY(what, default_route(inner->nl, gw));
	return 0;
}

/* lb_static: the router routes the LoadBalancer pool via ctr (not with --routing bgp) */
static int build_topology(const char *lab, bool lb_static)
{
	struct lab_ns router, ext, nodes[LAB_NNODES];
	int r;
	memset(nodes, 0, sizeof(nodes));
	for (size_t i = 0; i < LAB_NNODES; i++)
		nodes[i].fd = -1;
	ext.fd = -1, ext.nl = NULL, ext.name = NULL;

	r = lab_ns_make(&router, lab, "router");
	if (r < 0)
		goto out;
	for (size_t i = 0; i < ARRAY_SIZE(lab_bridges); i++) {
		r = nl_link_add_bridge(router.nl, lab_bridges[i].name, 0);
		if (r < 0) {
			fprintf(stderr, "twill lab: router: bridge %s: %s\n", lab_bridges[i].name,
				strerror(-r));
			goto out;
		}
		int idx = nl_link_index(router.nl, lab_bridges[i].name);
		r = idx < 0 ? idx : nl_link_set_up(router.nl, idx, true);
		if (r >= 0)
			r = addr_add(router.nl, idx, lab_bridges[i].addr);
		if (r < 0) {
			fprintf(stderr, "twill lab: router: %s: %s\n", lab_bridges[i].name,
				strerror(-r));
			goto out;
		}
	}
	r = sysctl_in(router.fd, "net.ipv4.ip_forward", "1");
	if (r < 0) {
		fprintf(stderr, "twill lab: router: ip_forward: %s\n", strerror(-r));
		goto out;
	}

	for (size_t i = 0; i < LAB_NNODES; i++) {
		const struct lab_node *n = &lab_nodes[i];
		r = lab_ns_make(&nodes[i], lab, n->name);
		if (r < 0)
			goto out;
		char addr[32];
		snprintf(addr, sizeof(addr), "%s/24", n->ip);
		r = wire(&router, &nodes[i], n->name, n->bridge, NULL, addr, n->gw);
		if (r < 0)
			goto out;
		/* A Kubernetes node forwards (kubeadm's preflight requires it). */
		r = sysctl_in(nodes[i].fd, "net.ipv4.ip_forward", "1");
		if (r < 0) {
			fprintf(stderr, "twill lab: %s: ip_forward: %s\n", nodes[i].name,
				strerror(-r));
			goto out;
		}
		/* Services without endpoints answer ICMP port unreachable (iptables REJECT); the
		 * kernel's default rate limit (1/s per destination) would turn tests' quick
		 * retries into timeouts. */
		r = sysctl_in(nodes[i].fd, "net.ipv4.icmp_ratelimit", "0");
		if (r < 0)
			fprintf(stderr, "twill lab: %s: icmp_ratelimit: %s (ignored)\n",
				nodes[i].name, strerror(-r));
	}
	r = lb_static ? static_route(router.nl, LB_POOL, LB_POOL_VIA) : 0;
	if (r < 0) {
		fprintf(stderr, "twill lab: router: route %s via %s: %s\n", LB_POOL, LB_POOL_VIA,
			strerror(-r));
		goto out;
	}

	r = lab_ns_make(&ext, lab, "ext");
	if (r < 0)
		goto out;
	r = wire(&router, &ext, "ext", NULL, EXT_ROUTER_ADDR, EXT_IP "/24", EXT_GW);
out:
	lab_ns_close(&router);
	lab_ns_close(&ext);
	for (size_t i = 0; i < LAB_NNODES; i++)
		lab_ns_close(&nodes[i]);
	return r;
}

/* ------------------------------------------------------------------------------------ */
/* manifests */

static const char *nodes_yaml_fmt = "---\n"
				    "apiVersion: v1\n"
				    "kind: Node\n"
				    "metadata:\n"
				    "  name: %s\n"
				    "  labels:\n"
				    "    kubernetes.io/hostname: %s\n"
				    "    kubernetes.io/os: linux\n"
				    "%s"
				    "status:\n"
				    "  addresses:\n"
				    "  - type: InternalIP\n"
				    "    address: %s\n"
				    "  - type: Hostname\n"
				    "    address: %s\n";

static int write_manifests(const char *lab, char **files, size_t nfiles)
{
	char *mdir = lab_manifest_dir(lab);
	int r = mkdir_p(mdir, 0755);
	if (r < 0) {
		fprintf(stderr, "twill lab: %s: %s\n", mdir, strerror(-r));
		free(mdir);
		return r;
	}
	char buf[4096];
	size_t off = snprintf(buf, sizeof(buf),
			      "# The lab's machines (seed 003), written by twill lab up.\n");
	for (size_t i = 0; i < LAB_NNODES; i++) {
		const struct lab_node *n = &lab_nodes[i];
		char labels[160]; /* the subnet label selects the node's BGPPeer (lab_router.c) */
		snprintf(labels, sizeof(labels), "%s    lab.twill.io/subnet: %s\n",
			 i == 0 ? "    node-role.kubernetes.io/control-plane: \"\"\n" : "",
			 n->bridge);
		off += snprintf(buf + off, sizeof(buf) - off, nodes_yaml_fmt, n->name, n->name,
				labels, n->ip, n->name);
	}
	char *path = xasprintf("%s/nodes.yaml", mdir);
	r = file_write_atomic(path, buf, off);
	free(path);
	for (size_t i = 0; r >= 0 && i < nfiles; i++) {
		char *data = NULL;
		size_t len;
		r = file_read(files[i], &data, &len);
		if (r < 0) {
			fprintf(stderr, "twill lab: %s: %s\n", files[i], strerror(-r));
			break;
		}
		char *copy = xstrdup(files[i]);
		const char *base = basename(copy);
		char *dst = xasprintf("%s/%s", mdir, base);
		if (!strcmp(base, "nodes.yaml") || access(dst, F_OK) == 0) {
			free(dst);
			dst = xasprintf("%s/%zu-%s", mdir, i, base);
		}
		r = file_write_atomic(dst, data, len);
		if (r < 0)
			fprintf(stderr, "twill lab: %s: %s\n", dst, strerror(-r));
		free(dst);
		free(copy);
		free(data);
	}
	free(mdir);
	return r;
}

/* ------------------------------------------------------------------------------------ */
/* agents */

/* The daemons the lab starts outlive `lab up`: their own session in the namespace nsfd, no
 * terminal, output to logfd. */
pid_t lab_spawn(int nsfd, int logfd, const char *exe, const char *const *argv)
{
	pid_t pid = fork();
	if (pid == 0) {
		if (setns(nsfd, CLONE_NEWNET) < 0)
			_exit(126);
		setsid();
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0)
			dup2(nul, 0);
		dup2(logfd, 1);
		dup2(logfd, 2);
		closefrom(3);
		signal(SIGPIPE, SIG_DFL);
		execv(exe, (char *const *)argv);
		_exit(127);
	}
	if (pid < 0)
		fprintf(stderr, "twill lab: fork: %s\n", strerror(errno));
	return pid;
}

static pid_t start_agent(const struct lab_cfg *c, const char *node)
{
	char *exe = self_exe();
	char *nsname = lab_netns_name(c->name, node);
	char *mdir = lab_manifest_dir(c->name);
	char *sdir = lab_node_state_dir(c->name, node);
	char *logdir = xasprintf("%s/%s/log", LAB_ROOT, c->name);
	char *logf = xasprintf("%s/%s.log", logdir, node);
	pid_t pid = -1;
	int nsfd = -1;

	mkdir_p(sdir, 0755);
	mkdir_p(logdir, 0755);
	nsfd = netns_open(nsname);
	if (nsfd < 0) {
		fprintf(stderr, "twill lab: %s: %s\n", nsname, strerror(-nsfd));
		goto out;
	}
	int logfd = open(logf, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (logfd < 0) {
		fprintf(stderr, "twill lab: %s: %s\n", logf, strerror(errno));
		goto out;
	}
	const char *argv[] = {exe,
			      "agent",
			      "--node",
			      node,
			      "--manifests",
			      mdir,
			      "--state-dir",
			      sdir,
			      "--routing",
			      c->routing,
			      "--wiring",
			      c->wiring,
			      "--cluster-cidr",
			      LAB_CLUSTER_CIDR,
			      "--proxy",
			      c->proxy,
			      "--encrypt",
			      c->encrypt,
			      "--kubelet",
			      "--lab",
			      c->name,
			      "--log-file",
			      logf,
			      "--log-level",
			      c->log_level,
			      NULL};
	pid = lab_spawn(nsfd, logfd, exe, argv);
	close(logfd);
out:
	if (nsfd >= 0)
		close(nsfd);
	free(exe);
	free(nsname);
	free(mdir);
	free(sdir);
	free(logdir);
	free(logf);
	return pid;
}

static void log_tail(const char *lab, const char *node, int lines)
{
	char *path = xasprintf("%s/%s/log/%s.log", LAB_ROOT, lab, node), *data = NULL;
	size_t len;
	if (file_read(path, &data, &len) == 0 && len) {
		const char *p = data + len;
		int n = 0;
		while (p > data && n <= lines)
			if (*--p == '\n')
				n++;
		if (*p == '\n')
			p++;
		fprintf(stderr, "---- %s (last lines)\n%s", path, p);
	}
	free(data);
	free(path);
}

/* ------------------------------------------------------------------------------------ */
/* down */

static int do_down(const char *lab, bool verbose)
{
	char *exe = self_exe();
	struct ns_set nss;
	struct pidlist pl = {0};
	ns_set_load(&nss, lab);

	/* Agents first (so no kubelet restarts a pod behind our back), then pod servers. */
	for (size_t i = 0; i < LAB_NNODES; i++) {
		pid_t pid = lab_agent_pid(lab, lab_nodes[i].name);
		if (pid > 0 && proc_is_labs(pid, exe, &nss))
			pidlist_add(&pl, pid);
	}
	kill_wait(&pl, SIGTERM, 1000);
	size_t nagents = pl.n;
	lab_router_stop(lab);
	pl.n = 0;
	for (size_t i = 0; i < LAB_NNODES; i++) {
		char *pods = xasprintf("%s/%s/nodes/%s/pods", LAB_ROOT, lab, lab_nodes[i].name);
		collect_pod_pids(pods, 0, &pl);
		free(pods);
	}
	struct pidlist ours = {0};
	for (size_t i = 0; i < pl.n; i++)
		if (proc_is_labs(pl.v[i], exe, &nss))
			pidlist_add(&ours, pl.v[i]);
	/* Whatever else runs the twill binary inside the lab's namespaces was started by the
	 * lab too (a pod server whose pid file was lost, an agent from an older pids file). */
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end || pid <= 1)
			continue;
		if (proc_is_labs((pid_t)pid, exe, &nss))
			pidlist_add(&ours, (pid_t)pid);
	}
	if (d)
		closedir(d);
	kill_wait(&ours, SIGTERM, 1000);

	int deleted = 0, failed = 0;
	for (size_t i = 0; i < nss.n; i++) {
		int r = netns_delete(nss.names[i]);
		if (r < 0) {
			fprintf(stderr, "twill lab: delete namespace %s: %s\n", nss.names[i],
				strerror(-r));
			failed++;
		} else {
			deleted++;
		}
	}
	char *dir = lab_dir(lab);
	int r = rm_rf(dir);
	if (r < 0) {
		fprintf(stderr, "twill lab: remove %s: %s\n", dir, strerror(-r));
		failed++;
	}
	if (verbose)
		printf("lab %s down: stopped %zu agents and %zu other processes, deleted %d "
		       "namespaces\n",
		       lab, nagents, ours.n, deleted);
	free(dir);
	ns_set_free(&nss);
	free(exe);
	return failed ? 1 : 0;
}

/* ------------------------------------------------------------------------------------ */
/* waiting for the pods */

struct waitpod {
	char *id; /* ns/name */
	struct lab_probe probe;
	bool ok;
	double at;
};

/* Keep the progress of pods that are still there when the pod list changes. */
static struct waitpod *waitpods_sync(struct waitpod *w, size_t *nw, const struct lab_pods *pods)
{
	bool same = *nw == pods->n;
	for (size_t i = 0; same && i < pods->n; i++) {
		char *id = xasprintf("%s/%s", pods->v[i].ns, pods->v[i].name);
		same = !strcmp(id, w[i].id);
		free(id);
	}
	if (same)
		return w;
	struct waitpod *nwp = xcalloc(pods->n ? pods->n : 1, sizeof(*nwp));
	for (size_t i = 0; i < pods->n; i++) {
		nwp[i].id = xasprintf("%s/%s", pods->v[i].ns, pods->v[i].name);
		lab_probe_init(&nwp[i].probe);
		for (size_t j = 0; j < *nw; j++)
			if (w[j].id && !strcmp(w[j].id, nwp[i].id)) {
				nwp[i].ok = w[j].ok;
				nwp[i].at = w[j].at;
			}
	}
	for (size_t j = 0; j < *nw; j++) {
		lab_probe_close(&w[j].probe);
		free(w[j].id);
	}
	free(w);
	*nw = pods->n;
	return nwp;
}

static int node_index(const char *name)
{
	for (int i = 0; name && i < LAB_NNODES; i++)
		if (!strcmp(lab_nodes[i].name, name))
			return i;
	return -1;
}

static int wait_pods(const char *lab, double t0, double timeout_s, bool quiet)
{
	char *mdir = lab_manifest_dir(lab);
	struct lab_view *v = lab_view_open(mdir);
	int rc = 1;
	int nsfds[LAB_NNODES];
	for (size_t i = 0; i < LAB_NNODES; i++) {
		char *n = lab_netns_name(lab, lab_nodes[i].name);
		nsfds[i] = netns_open(n);
		free(n);
	}
	if (!v) {
		fprintf(stderr, "twill lab: watch %s: %s\n", mdir, strerror(errno));
		goto out;
	}
	struct lab_pods pods = {0};
	struct waitpod *w = NULL;
	size_t nw = 0;
	monotime_t deadline = monotime_now() + (monotime_t)(timeout_s * 1e9);
	for (;;) {
		lab_pods_free(&pods);
		lab_view_pods(v, &pods);
		w = waitpods_sync(w, &nw, &pods);
		size_t done = 0;
		struct lab_probe *inflight[1024];
		size_t ninf = 0;
		for (size_t i = 0; i < pods.n; i++) {
			struct lab_pod *p = &pods.v[i];
			if (w[i].ok || p->host_network) {
				done++;
				continue;
			}
			int ni = node_index(p->node);
			if (ni < 0 || !p->ip.family || nsfds[ni] < 0)
				continue;
			struct lab_probe *pr = &w[i].probe;
			if (pr->state == PROBE_OK) {
				w[i].ok = true;
				w[i].at = now_s() - t0;
				done++;
				continue;
			}
			/* a refused connect fails at once: retry every 20 ms, not in a spin */
			if (pr->state == PROBE_IDLE ||
			    (pr->state == PROBE_FAIL && monotime_now() - pr->done > MONO_MS(20))) {
				lab_probe_close(pr);
				lab_probe_start(pr, nsfds[ni], &p->ip, p->port, 300);
			}
			if ((pr->state == PROBE_CONNECTING || pr->state == PROBE_SENT) &&
			    ninf < ARRAY_SIZE(inflight))
				inflight[ninf++] = pr;
		}
		if (done == pods.n) {
			rc = 0;
			break;
		}
		/* Agents that died will not bring anything up: say so now, not at the timeout. */
		for (size_t i = 0; i < LAB_NNODES; i++) {
			pid_t pid = lab_agent_pid(lab, lab_nodes[i].name);
			waitpid(pid, NULL, WNOHANG);
			if (pid > 0 && !lab_proc_alive(pid)) {
				fprintf(stderr, "twill lab: the agent of %s (pid %d) exited\n",
					lab_nodes[i].name, (int)pid);
				log_tail(lab, lab_nodes[i].name, 15);
				goto report;
			}
		}
		if (monotime_now() > deadline) {
			fprintf(stderr, "twill lab: timed out after %.0f s waiting for pods\n",
				timeout_s);
			goto report;
		}
		/* Sleep until a probe progresses or a status file changes, at most 20 ms. */
		struct pollfd pfd = {.fd = lab_view_fd(v), .events = POLLIN};
		if (ninf) {
			lab_probe_poll(inflight, ninf, 10);
			if (poll(&pfd, 1, 0) > 0)
				lab_view_process(v);
		} else if (poll(&pfd, 1, 20) > 0) {
			lab_view_process(v);
		}
	}
	if (!quiet && pods.n) {
		printf("%-24s %-5s %-16s %s\n", "POD", "NODE", "IP", "READY AFTER");
		for (size_t i = 0; i < pods.n; i++) {
			struct lab_pod *p = &pods.v[i];
			char ip[IP_STRLEN] = "-", id[256];
			if (p->ip.family)
				ip_fmt(&p->ip, ip);
			snprintf(id, sizeof(id), "%s%s%s", strcmp(p->ns, "default") ? p->ns : "",
				 strcmp(p->ns, "default") ? "/" : "", p->name);
			printf("%-24s %-5s %-16s %.2f s\n", id, p->node ? p->node : "-", ip,
			       w[i].at);
		}
	}
	goto release;
report:
	for (size_t i = 0; i < pods.n; i++) {
		struct lab_pod *p = &pods.v[i];
		if (w[i].ok || p->host_network)
			continue;
		char ip[IP_STRLEN] = "";
		if (p->ip.family)
			ip_fmt(&p->ip, ip);
		const char *why = !p->node		    ? "not scheduled"
				  : node_index(p->node) < 0 ? "scheduled to a node the lab lacks"
				  : !p->ip.family	    ? "no IP yet"
							    : "no HTTP answer";
		fprintf(stderr, "  pod %s/%s on %s %s: %s (port %u)\n", p->ns, p->name,
			p->node ? p->node : "-", ip, why, p->port);
	}
	fprintf(stderr, "  agent logs: %s/%s/log/\n", LAB_ROOT, lab);
release:
	for (size_t i = 0; i < nw; i++) {
		lab_probe_close(&w[i].probe);
		free(w[i].id);
	}
	free(w);
	lab_pods_free(&pods);
out:
	for (size_t i = 0; i < LAB_NNODES; i++)
		if (nsfds[i] >= 0)
			close(nsfds[i]);
	if (v)
		lab_view_close(v);
	free(mdir);
	return rc;
}

/* ------------------------------------------------------------------------------------ */
/* subcommands */

enum { OPT_NO_WAIT = 256, OPT_TIMEOUT, OPT_LOG_LEVEL, OPT_SIGNAL, OPT_PROXY, OPT_ENCRYPT, OPT_ROUTER };

static int cmd_up(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"name", required_argument, NULL, 'n'},
	    {"routing", required_argument, NULL, 'r'},
	    {"wiring", required_argument, NULL, 'w'},
	    {"proxy", required_argument, NULL, OPT_PROXY},
	    {"router", required_argument, NULL, OPT_ROUTER},
	    {"encrypt", required_argument, NULL, OPT_ENCRYPT},
	    {"file", required_argument, NULL, 'f'},
	    {"no-wait", no_argument, NULL, OPT_NO_WAIT},
	    {"timeout", required_argument, NULL, OPT_TIMEOUT},
	    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
	    {"quiet", no_argument, NULL, 'q'},
	    {NULL, 0, NULL, 0},
	};
	struct lab_cfg c;
	memset(&c, 0, sizeof(c));
	const char *router = NULL;
	const char *name = LAB_DEFAULT_NAME, *routing = "mixed", *wiring = "routed",
		   *level = "info", *proxy = "nftables", *encrypt = "none";
	char *files[64];
	size_t nfiles = 0;
	bool wait = true, quiet = false;
	double timeout = 30;
	int o;
	optind = 0;
	while ((o = getopt_long(argc, argv, "n:r:w:f:q", opts, NULL)) != -1) {
		switch (o) {
		case 'n':
			name = optarg;
			break;
		case 'r':
			routing = optarg;
			break;
		case 'w':
			wiring = optarg;
			break;
		case OPT_PROXY:
			proxy = optarg;
			break;
		case OPT_ROUTER:
			router = optarg;
			break;
		case OPT_ENCRYPT:
			encrypt = optarg;
			break;
		case 'f':
			if (nfiles == ARRAY_SIZE(files)) {
				die_usage("too many -f");
				return 2;
			}
			files[nfiles++] = optarg;
			break;
		case OPT_NO_WAIT:
			wait = false;
			break;
		case OPT_TIMEOUT:
			timeout = atof(optarg);
			break;
		case OPT_LOG_LEVEL:
			level = optarg;
			break;
		case 'q':
			quiet = true;
			break;
		default:
			return 2;
		}
	}
	if (optind < argc) {
		die_usage("unexpected argument");
		return 2;
	}
	if (!lab_name_valid(name)) {
		fprintf(stderr, "twill lab: bad lab name '%s' (1-16 of [A-Za-z0-9_])\n", name);
		return 2;
	}
	if (route_mode_parse(routing) < 0) {
		die_usage("--routing must be " ROUTE_MODES_TEXT);
		return 2;
	}
	bool bgp = !strcmp(routing, "bgp");
	if (router && (!bgp || !lab_router_valid(router))) {
		die_usage(bgp ? "--router must be twill, bird or frr" : "--router needs --routing bgp");
		return 2;
	}
	if (strcmp(wiring, "routed") && strcmp(wiring, "bridge")) {
		die_usage("--wiring must be routed or bridge");
		return 2;
	}
	if (strcmp(proxy, "nftables") && strcmp(proxy, "iptables") && strcmp(proxy, "ipvs") &&
	    strcmp(proxy, "none")) {
		die_usage("--proxy must be nftables, iptables, ipvs or none");
		return 2;
	}
	if (route_encrypt_parse(encrypt) < 0) {
		die_usage("--encrypt must be none or wireguard");
		return 2;
	}
	for (size_t i = 0; i < nfiles; i++)
		if (access(files[i], R_OK) < 0) {
			fprintf(stderr, "twill lab: %s: %s\n", files[i], strerror(errno));
			return 1;
		}
	if (timeout <= 0)
		timeout = 30;
	str_copy(c.name, sizeof(c.name), name);
	str_copy(c.routing, sizeof(c.routing), routing);
	str_copy(c.wiring, sizeof(c.wiring), wiring);
	str_copy(c.proxy, sizeof(c.proxy), proxy);
	str_copy(c.encrypt, sizeof(c.encrypt), encrypt);
	str_copy(c.log_level, sizeof(c.log_level), level);
	str_copy(c.router, sizeof(c.router), bgp ? (router ? router : "twill") : "");

	double t0 = now_s();
	do_down(name, false);
	char *dir = lab_dir(name);
	int r = mkdir_p(dir, 0755);
	free(dir);
	if (r < 0) {
		fprintf(stderr, "twill lab: %s/%s: %s\n", LAB_ROOT, name, strerror(-r));
		return 1;
	}
	/* the lab's BGP objects first: a user's file of the same name is then renamed */
	if (build_topology(name, !bgp) < 0 || (bgp && lab_router_manifest(name) < 0) ||
	    write_manifests(name, files, nfiles) < 0 ||
	    (bgp && lab_router_start(name, c.router, level) < 0) || cfg_write(&c) < 0) {
		fprintf(stderr, "twill lab: up failed; cleaning up\n");
		do_down(name, false);
		return 1;
	}
	double t_topo = now_s() - t0;
	for (size_t i = 0; i < LAB_NNODES; i++) {
		pid_t pid = start_agent(&c, lab_nodes[i].name);
		if (pid < 0 || pids_set(name, lab_nodes[i].name, pid) < 0) {
			fprintf(stderr, "twill lab: cannot start the agent of %s; cleaning up\n",
				lab_nodes[i].name);
			do_down(name, false);
			return 1;
		}
	}
	if (!quiet)
		printf("lab %s: namespaces %s-{ctr,w1,w0,router,ext} ready in %.0f ms; agents "
		       "started (routing %s, wiring %s, proxy %s)\n",
		       name, name, t_topo * 1000, routing, wiring, proxy);
	if (!wait)
		return 0;
	r = wait_pods(name, t0, timeout, quiet);
	if (r) {
		fprintf(stderr,
			"twill lab: the lab is left up for inspection; tear it down with "
			"`twill lab down --name %s`\n",
			name);
		return 1;
	}
	if (!quiet) {
		char *nopt = strcmp(name, LAB_DEFAULT_NAME) ? xasprintf(" --name %s", name)
							      : xstrdup("");
		printf("lab %s up in %.2f s\n", name, now_s() - t0);
		printf("next: twill lab probe%s | twill lab status%s | twill lab exec%s ctr -- ip "
		       "route | twill lab down%s\n",
		       nopt, nopt, nopt, nopt);
		free(nopt);
	}
	return 0;
}

static int cmd_down(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"name", required_argument, NULL, 'n'},
	    {"quiet", no_argument, NULL, 'q'},
	    {NULL, 0, NULL, 0},
	};
	const char *name = LAB_DEFAULT_NAME;
	bool quiet = false;
	int o;
	optind = 0;
	while ((o = getopt_long(argc, argv, "n:q", opts, NULL)) != -1) {
		switch (o) {
		case 'n':
			name = optarg;
			break;
		case 'q':
			quiet = true;
			break;
		default:
			return 2;
		}
	}
	if (!lab_name_valid(name)) {
		fprintf(stderr, "twill lab: bad lab name '%s'\n", name);
		return 2;
	}
	return do_down(name, !quiet);
}

/* Like `ip netns exec`: a private mount namespace with /sys remounted, so tools that read
 * /sys/class/net see the target namespace's interfaces.  Best effort. */
static void remount_sys(void)
{
	if (unshare(CLONE_NEWNS) < 0)
		return;
	if (mount("", "/", NULL, MS_SLAVE | MS_REC, NULL) < 0)
		return;
	if (umount2("/sys", MNT_DETACH) < 0)
		return;
	mount("sysfs", "/sys", "sysfs", 0, NULL);
}

static char *find_pod_netns(const char *lab, const char *target)
{
	char ns[256], pod[256];
	const char *slash = strchr(target, '/');
	if (slash) {
		snprintf(ns, sizeof(ns), "%.*s", (int)(slash - target), target);
		snprintf(pod, sizeof(pod), "%s", slash + 1);
	} else {
		snprintf(ns, sizeof(ns), "default");
		snprintf(pod, sizeof(pod), "%s", target);
	}
	for (size_t i = 0; i < LAB_NNODES; i++) {
		char *n = lab_pod_netns(lab, lab_nodes[i].name, ns, pod);
		if (netns_exists(n))
			return n;
		free(n);
	}
	if (slash)
		return NULL;
	/* NAME alone: the pod of that name in any namespace (if only one). */
	char *mdir = lab_manifest_dir(lab);
	struct lab_view *v = lab_view_open(mdir);
	free(mdir);
	char *found = NULL;
	if (v) {
		struct lab_pods pods = {0};
		lab_view_pods(v, &pods);
		for (size_t i = 0; i < pods.n && !found; i++)
			if (!strcmp(pods.v[i].name, target) && pods.v[i].node)
				found = lab_pod_netns(lab, pods.v[i].node, pods.v[i].ns,
						      pods.v[i].name);
		lab_pods_free(&pods);
		lab_view_close(v);
	}
	return found;
}

static int cmd_exec(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"name", required_argument, NULL, 'n'},
	    {NULL, 0, NULL, 0},
	};
	const char *name = LAB_DEFAULT_NAME;
	int o;
	optind = 0;
	while ((o = getopt_long(argc, argv, "+n:", opts, NULL)) != -1) {
		switch (o) {
		case 'n':
			name = optarg;
			break;
		default:
			return 2;
		}
	}
	if (optind >= argc) {
		die_usage("exec needs a TARGET (ctr, w1, w0, router, ext or a pod)");
		return 2;
	}
	const char *target = argv[optind++];
	if (optind < argc && !strcmp(argv[optind], "--"))
		optind++;
	char *nsname = NULL;
	if (lab_node_find(target) || !strcmp(target, "router") || !strcmp(target, "ext"))
		nsname = lab_netns_name(name, target);
	else
		nsname = find_pod_netns(name, target);
	if (!nsname || !netns_exists(nsname)) {
		fprintf(stderr, "twill lab: no namespace for '%s' in lab %s\n", target, name);
		return 1;
	}
	int fd = netns_open(nsname);
	if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
		fprintf(stderr, "twill lab: enter %s: %s\n", nsname,
			strerror(fd < 0 ? -fd : errno));
		return 1;
	}
	close(fd);
	remount_sys();
	char *shell[] = {getenv("SHELL") ? getenv("SHELL") : "/bin/sh", NULL};
	char **cmd = optind < argc ? argv + optind : shell;
	execvp(cmd[0], cmd);
	fprintf(stderr, "twill lab: %s: %s\n", cmd[0], strerror(errno));
	return 127;
}

/* kill-agent / start-agent / restart-agent NODE */
static int cmd_agent(int argc, char **argv, bool do_kill, bool do_start)
{
	static const struct option opts[] = {
	    {"name", required_argument, NULL, 'n'},
	    {"signal", required_argument, NULL, OPT_SIGNAL},
	    {NULL, 0, NULL, 0},
	};
	const char *name = LAB_DEFAULT_NAME;
	int sig = SIGTERM, o;
	optind = 0;
	while ((o = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
		switch (o) {
		case 'n':
			name = optarg;
			break;
		case OPT_SIGNAL:
			if (!strcasecmp(optarg, "KILL") || !strcmp(optarg, "9"))
				sig = SIGKILL;
			else if (!strcasecmp(optarg, "TERM") || !strcmp(optarg, "15"))
				sig = SIGTERM;
			else if (!strcasecmp(optarg, "INT") || !strcmp(optarg, "2"))
				sig = SIGINT;
			else {
				die_usage("--signal must be TERM, KILL or INT");
				return 2;
			}
			break;
		default:
			return 2;
		}
	}
	if (optind + 1 != argc || !lab_node_find(argv[optind])) {
		die_usage("expected one NODE (ctr, w1 or w0)");
		return 2;
	}
	const char *node = argv[optind];
	if (!lab_name_valid(name))
		return 2;
	struct lab_cfg c;
	if (cfg_read(name, &c) < 0) {
		fprintf(stderr, "twill lab: lab %s is not up\n", name);
		return 1;
	}
	if (do_kill) {
		char *exe = self_exe();
		struct ns_set nss;
		ns_set_load(&nss, name);
		pid_t pid = lab_agent_pid(name, node);
		if (pid > 0 && proc_is_labs(pid, exe, &nss)) {
			struct pidlist pl = {.n = 1, .v = {pid}};
			kill_wait(&pl, sig, 2000);
			printf("agent of %s (pid %d) stopped\n", node, (int)pid);
		} else {
			printf("agent of %s not running\n", node);
		}
		ns_set_free(&nss);
		free(exe);
	}
	if (do_start) {
		pid_t old = lab_agent_pid(name, node);
		if (old > 0 && lab_proc_alive(old)) {
			fprintf(stderr, "twill lab: the agent of %s is running (pid %d)\n", node,
				(int)old);
			return 1;
		}
		pid_t pid = start_agent(&c, node);
		if (pid < 0 || pids_set(name, node, pid) < 0)
			return 1;
		printf("agent of %s started (pid %d)\n", node, (int)pid);
	}
	return 0;
}

int lab_main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	/* Our children (agents) must not die with a closed pipe in a caller's pipeline. */
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(cmd, "podserver")) {
		signal(SIGPIPE, SIG_DFL);
		return lab_podserver_main(argc - 1, argv + 1);
	}
	if (!strcmp(cmd, "up"))
		return cmd_up(argc - 1, argv + 1);
	if (!strcmp(cmd, "down"))
		return cmd_down(argc - 1, argv + 1);
	if (!strcmp(cmd, "status"))
		return lab_cmd_status(argc - 1, argv + 1);
	if (!strcmp(cmd, "probe"))
		return lab_cmd_probe(argc - 1, argv + 1);
	if (!strcmp(cmd, "probe-matrix"))
		return lab_cmd_probe_matrix(argc - 1, argv + 1);
	if (!strcmp(cmd, "exec"))
		return cmd_exec(argc - 1, argv + 1);
	if (!strcmp(cmd, "restart-agent"))
		return cmd_agent(argc - 1, argv + 1, true, true);
	if (!strcmp(cmd, "kill-agent"))
		return cmd_agent(argc - 1, argv + 1, true, false);
	if (!strcmp(cmd, "start-agent"))
		return cmd_agent(argc - 1, argv + 1, false, true);
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "twill lab: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
