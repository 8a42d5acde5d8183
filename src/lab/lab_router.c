/* lab_router: the lab router's BGP speaker for `twill lab up --routing bgp`.
 *
 * Seed 003's BGP setup: the nodes are AS 65001 (a BGPConfiguration and two BGPPeer
 * objects written into the lab's manifests make every node peer with the router address
 * of its subnet, eBGP, besides the node-to-node iBGP mesh), the router is AS 65002 and
 * starts with no pod route and no LoadBalancer route: it learns both.  The speaker runs
 * inside the router namespace, one of:
 *   twill  `twill bgp run` (the default), config router/bgp.json;
 *   bird   BIRD 2, router/bird.conf, control socket router/bird.ctl;
 *   frr    FRR's zebra (installs the routes) and bgpd, router/{zebra,bgpd}.conf, vty
 *          sockets in router/ (vtysh --vty_socket DIR).
 * Every process's pid goes into router/pids ("name pid" lines); `lab down` stops exactly
 * those, after checking each still runs in the router's namespace under that name. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lab/lab.h"
#include "nl/nl.h"

#define NODE_AS 65001
#define ROUTER_AS 65002
#define ROUTER_ID "192.168.30.254"
#define BIRD_BIN "/usr/sbin/bird"
#define ZEBRA_BIN "/usr/lib/frr/zebra"
#define BGPD_BIN "/usr/lib/frr/bgpd"

bool lab_router_valid(const char *router)
{
	return router &&
	       (!strcmp(router, "twill") || !strcmp(router, "bird") || !strcmp(router, "frr"));
}

char *lab_router_dir(const char *lab)
{
	return xasprintf("%s/%s/router", LAB_ROOT, lab);
}

/* What the nodes get: AS 65001, the mesh, a short graceful restart time (a killed agent's
 * routes leave the router within seconds) and a peer per subnet, chosen by the label
 * lab.twill.io/subnet the lab gives its Nodes; every IPAddressPool is announced. */
static const char bgp_yaml[] =
    "# BGP for `twill lab up --routing bgp` (seed 003: nodes AS 65001, router AS 65002),\n"
    "# written by twill lab up.\n"
    "apiVersion: crd.projectcalico.org/v1\n"
    "kind: BGPConfiguration\n"
    "metadata: {name: default}\n"
    "spec:\n"
    "  asNumber: 65001\n"
    "  nodeToNodeMeshEnabled: true\n"
    "  nodeMeshMaxRestartTime: 10s\n"
    "---\n"
    "apiVersion: crd.projectcalico.org/v1\n"
    "kind: BGPPeer\n"
    "metadata: {name: router-br10}\n"
    "spec:\n"
    "  peerIP: 192.168.10.254\n"
    "  asNumber: 65002\n"
    "  nodeSelector: lab.twill.io/subnet == 'br10'\n"
    "---\n"
    "apiVersion: crd.projectcalico.org/v1\n"
    "kind: BGPPeer\n"
    "metadata: {name: router-br20}\n"
    "spec:\n"
    "  peerIP: 192.168.20.254\n"
    "  asNumber: 65002\n"
    "  nodeSelector: lab.twill.io/subnet == 'br20'\n"
    "---\n"
    "apiVersion: metallb.io/v1beta1\n"
    "kind: BGPAdvertisement\n"
    "metadata: {name: lab, namespace: metallb-system}\n"
    "spec: {}\n";

int lab_router_manifest(const char *lab)
{
	char *mdir = lab_manifest_dir(lab);
	char *path = xasprintf("%s/lab-bgp.yaml", mdir);
	int r = mkdir_p(mdir, 0755);
	if (r == 0)
		r = file_write_atomic(path, bgp_yaml, strlen(bgp_yaml));
	if (r < 0)
		fprintf(stderr, "twill lab: %s: %s\n", path, strerror(-r));
	free(path);
	free(mdir);
	return r;
}

static int write_conf(const char *dir, const char *file, const char *text)
{
	char *path = xasprintf("%s/%s", dir, file);
	int r = file_write_atomic(path, text, strlen(text));
	if (r == 0)
		chmod(path, 0644);
	else
		fprintf(stderr, "twill lab: %s: %s\n", path, strerror(-r));
	free(path);
	return r;
}

static char *conf_twill(void)
{
	char peers[1024] = "";
	size_t off = 0;
	for (size_t i = 0; i < LAB_NNODES; i++)
		off += (size_t)snprintf(peers + off, sizeof(peers) - off,
					"%s{\"name\": \"%s\", \"address\": \"%s\", \"as\": %d}",
					i ? ", " : "", lab_nodes[i].name, lab_nodes[i].ip, NODE_AS);
	return xasprintf(
	    "{\"as\": %d, \"routerId\": \"%s\", \"connectRetry\": 1, \"install\": true,\n"
	    " \"peers\": [%s]}\n",
	    ROUTER_AS, ROUTER_ID, peers);
}

static char *conf_bird(void)
{
	char peers[2048] = "";
	size_t off = 0;
	for (size_t i = 0; i < LAB_NNODES; i++)
		off += (size_t)snprintf(peers + off, sizeof(peers) - off,
					"protocol bgp %s from nodes { neighbor %s as %d; }\n",
					lab_nodes[i].name, lab_nodes[i].ip, NODE_AS);
	return xasprintf(
	    "# the lab router (BIRD 2), written by twill lab up\n"
	    "router id %s;\n"
	    "protocol device { }\n"
	    "protocol kernel {\n"
	    "  ipv4 { import none; export filter { if source = RTS_BGP then accept; "
	    "reject; }; };\n"
	    "  merge paths on;\n"
	    "}\n"
	    "template bgp nodes {\n"
	    "  local as %d; connect retry time 1; connect delay time 1; error wait time 1, 5;\n"
	    "  ipv4 { import all; export all; };\n"
	    "}\n%s",
	    ROUTER_ID, ROUTER_AS, peers);
}

static char *conf_bgpd(void)
{
	char nb[2048] = "", act[1024] = "";
	size_t off = 0, aoff = 0;
	for (size_t i = 0; i < LAB_NNODES; i++) {
		off +=
		    (size_t)snprintf(nb + off, sizeof(nb) - off,
				     " neighbor %s remote-as %d\n neighbor %s timers connect 1\n",
				     lab_nodes[i].ip, NODE_AS, lab_nodes[i].ip);
		aoff += (size_t)snprintf(act + aoff, sizeof(act) - aoff, "  neighbor %s activate\n",
					 lab_nodes[i].ip);
	}
	return xasprintf("! the lab router (FRR), written by twill lab up\n"
			 "frr defaults traditional\n"
			 "hostname lab-router\n"
			 "log stdout informational\n"
			 "router bgp %d\n"
			 " bgp router-id %s\n"
			 " no bgp ebgp-requires-policy\n"
			 " no bgp network import-check\n"
			 "%s"
			 " address-family ipv4 unicast\n"
			 "  maximum-paths 8\n"
			 "%s"
			 " exit-address-family\n",
			 ROUTER_AS, ROUTER_ID, nb, act);
}

/* Fork a daemon into the router's namespace, output to log/router.log; its pid or -1. */
static pid_t spawn(const char *lab, const char *const *argv)
{
	char *ns = lab_netns_name(lab, "router");
	char *logf = xasprintf("%s/%s/log/router.log", LAB_ROOT, lab);
	char *logdir = xasprintf("%s/%s/log", LAB_ROOT, lab);
	mkdir_p(logdir, 0755);
	int nsfd = netns_open(ns);
	int logfd = open(logf, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	pid_t pid = -1;
	/* twill itself by its real path, so its comm is "twill" (lab_router_stop checks) */
	char exe[4096];
	ssize_t en = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[en > 0 ? en : 0] = 0;
	const char *bin = argv[0][0] == '/' ? argv[0] : exe;
	if (nsfd < 0 || logfd < 0) {
		fprintf(stderr, "twill lab: router: %s: %s\n", nsfd < 0 ? ns : logf,
			strerror(nsfd < 0 ? -nsfd : errno));
		goto out;
	}
	pid = lab_spawn(nsfd, logfd, bin, argv);
out:
	if (nsfd >= 0)
		close(nsfd);
	if (logfd >= 0)
		close(logfd);
	free(ns);
	free(logf);
	free(logdir);
	return pid;
}

static int pids_add(const char *dir, const char *name, pid_t pid)
{
	char *path = xasprintf("%s/pids", dir), *old = NULL;
	size_t len = 0;
	if (file_read(path, &old, &len) < 0)
		old = NULL;
	char *all = xasprintf("%s%s %d\n", old ? old : "", name, (int)pid);
	int r = file_write_atomic(path, all, strlen(all));
	free(all);
	free(old);
	free(path);
	return r;
}

static bool wait_path(const char *path, pid_t pid, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		if (access(path, F_OK) == 0)
			return true;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return false;
		usleep(10000);
	}
	return false;
}

static bool need_bin(const char *path, const char *what)
{
	if (access(path, X_OK) == 0)
		return true;
	fprintf(stderr,
		"twill lab: --router: %s is not installed (%s; scripts/deps.sh installs it)\n",
		what, path);
	return false;
}

int lab_router_start(const char *lab, const char *router, const char *log_level)
{
	char *dir = lab_router_dir(lab);
	int r = mkdir_p(dir, 0755);
	chmod(dir, 0777); /* FRR's daemons drop to the frr user */
	char *conf = NULL;
	pid_t pid = -1;
	if (r < 0) {
		fprintf(stderr, "twill lab: %s: %s\n", dir, strerror(-r));
		goto out;
	}
	r = -1;
	if (!strcmp(router, "twill")) {
		conf = conf_twill();
		char *cpath = xasprintf("%s/bgp.json", dir),
		     *spath = xasprintf("%s/bgp.state.json", dir);
		if (write_conf(dir, "bgp.json", conf) == 0) {
			const char *argv[] = {"twill",	 "bgp", "run",	       "--config", cpath,
					      "--state", spath, "--log-level", log_level,  NULL};
			pid = spawn(lab, argv);
			if (pid > 0)
				r = pids_add(dir, "twill", pid);
		}
		free(cpath);
		free(spath);
	} else if (!strcmp(router, "bird")) {
		if (!need_bin(BIRD_BIN, "BIRD 2 (bird2)"))
			goto out;
		conf = conf_bird();
		char *cpath = xasprintf("%s/bird.conf", dir), *sock = xasprintf("%s/bird.ctl", dir);
		if (write_conf(dir, "bird.conf", conf) == 0) {
			const char *argv[] = {BIRD_BIN, "-f", "-c", cpath, "-s", sock, NULL};
			pid = spawn(lab, argv);
			if (pid > 0)
				r = pids_add(dir, "bird", pid);
		}
		free(cpath);
		free(sock);
	} else {
		if (!need_bin(ZEBRA_BIN, "FRR (frr)") || !need_bin(BGPD_BIN, "FRR (frr)"))
			goto out;
		conf = conf_bgpd();
		char *zc = xasprintf("%s/zebra.conf", dir), *bc = xasprintf("%s/bgpd.conf", dir);
		char *zs = xasprintf("%s/zserv.api", dir), *zp = xasprintf("%s/zebra.pid", dir);
		char *bp = xasprintf("%s/bgpd.pid", dir);
		if (write_conf(dir, "zebra.conf", "hostname lab-router\n") == 0 &&
		    write_conf(dir, "bgpd.conf", conf) == 0) {
			const char *za[] = {ZEBRA_BIN, "-f",	       zc,    "-i", zp,	 "-z",
					    zs,	       "--vty_socket", dir,   "-P", "0", "-u",
					    "frr",     "-g",	       "frr", NULL};
			pid = spawn(lab, za);
			if (pid > 0 && pids_add(dir, "zebra", pid) == 0 &&
			    wait_path(zs, pid, 5000)) {
				const char *ba[] = {
				    BGPD_BIN, "-f", bc,	 "-i", bp,    "-z", zs,	   "--vty_socket",
				    dir,      "-P", "0", "-u", "frr", "-g", "frr", NULL};
				pid = spawn(lab, ba);
				if (pid > 0)
					r = pids_add(dir, "bgpd", pid);
			} else {
				fprintf(stderr, "twill lab: router: zebra did not start (see "
						"log/router.log)\n");
			}
		}
		free(zc);
		free(bc);
		free(zs);
		free(zp);
		free(bp);
	}
out:
	free(conf);
	free(dir);
	return r < 0 ? -1 : 0;
}

/* The comm of a process that must be `name` (twill, bird, zebra, bgpd), running in the
 * router's namespace: only then is it the lab's. */
static bool router_proc_ours(pid_t pid, const char *name, ino_t ns_ino)
{
	char path[64], *comm = NULL;
	size_t len;
	struct stat st;
	if (pid <= 1 || !lab_proc_alive(pid))
		return false;
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	if (stat(path, &st) < 0 || st.st_ino != ns_ino)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	if (file_read(path, &comm, &len) < 0)
		return false;
	bool ok = !strncmp(comm, name, strlen(name));
	free(comm);
	return ok;
}

void lab_router_stop(const char *lab)
{
	char *dir = lab_router_dir(lab), *path = xasprintf("%s/pids", dir), *data = NULL;
	char *ns = lab_netns_name(lab, "router"), *nspath = xasprintf("/run/netns/%s", ns);
	size_t len;
	struct stat st;
	pid_t pids[8];
	size_t n = 0;
	if (stat(nspath, &st) == 0 && file_read(path, &data, &len) == 0) {
		char *save = NULL;
		for (char *line = strtok_r(data, "\n", &save); line && n < ARRAY_SIZE(pids);
		     line = strtok_r(NULL, "\n", &save)) {
			char name[16];
			int pid;
			if (sscanf(line, "%15s %d", name, &pid) == 2 &&
			    router_proc_ours(pid, name, st.st_ino))
				pids[n++] = pid;
		}
	}
	for (size_t i = n; i-- > 0;) /* bgpd before zebra */
		kill(pids[i], SIGTERM);
	for (int round = 0; round < 2; round++) {
		for (int t = 0; t < 200; t++) {
			bool any = false;
			for (size_t i = 0; i < n; i++) {
				waitpid(pids[i], NULL, WNOHANG);
				any |= lab_proc_alive(pids[i]);
			}
			if (!any)
				goto done;
			usleep(10000);
		}
		for (size_t i = 0; i < n; i++)
			if (lab_proc_alive(pids[i]))
				kill(pids[i], SIGKILL);
	}
done:
	unlink(path);
	free(data);
	free(path);
	free(dir);
	free(ns);
	free(nspath);
}
