/* kubelet: the lab's pod runtime inside a node's agent (see kubelet.h).
 *
 * It plays the networking half of kubelet + CRI runtime for the Pods bound to this node:
 * a pod sandbox is a named network namespace, networked by calling the CNI plugin the
 * way the CNI spec (1.1.0, section "Execution protocol") tells a runtime to: CNI_* in
 * the environment, the network configuration on stdin, the result (or error) as JSON on
 * stdout; DEL gets the ADD result as prevResult, and the runtime keeps that result.  The
 * "container" is `twill lab podserver`, started with setns() into the sandbox.
 *
 * Each pod is a small state machine advanced by kubelet_sync() without blocking for
 * long: CNI calls and server starts are child processes watched through pipes, a burst
 * of pods runs its CNI calls in parallel, and sync waits at most WAIT_BUDGET_MS for
 * them before handing control back to the agent (unfinished work is picked up on the
 * next sync).  What exists is recorded per pod in <state-dir>/pods/<ns>_<name>.json
 * (netns, containerId, pid, ips, CNI result; the bare pid also in <ns>_<name>.pid and the
 * server's and plugin's stderr in <ns>_<name>.log), so a restarted agent adopts running
 * pods instead of recreating them, restarts dead servers and tears down orphans. */
#include "lab/kubelet.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lab/podserver.h"
#include "lib/consts.h"
#include "lib/log.h"
#include "lib/util.h"
#include "nl/nl.h"
#include "store/store.h"

#define SUB "kubelet"
#define WAIT_BUDGET_MS 1000   /* longest a sync waits for CNI calls and servers */
#define CNI_TIMEOUT_MS 30000  /* a CNI call running longer is killed */
#define READY_TIMEOUT_MS 5000 /* a server not listening by then is restarted */
#define STOP_GRACE_MS 2000    /* SIGTERM -> SIGKILL */
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 10000
#define LIVENESS_MS 2000 /* how often running servers are checked */
#define NETNS_MAX 99	 /* netns names stay below 100 characters */
#define IFNAME "eth0"
#define JSON_OUT (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

extern char **environ;

enum kp_state {
	KP_NONE,      /* nothing exists */
	KP_ADDING,    /* sandbox exists, CNI ADD running */
	KP_NETWORKED, /* CNI ADD done, IPs known, no server */
	KP_STARTING,  /* server forked, waiting for its ready signal */
	KP_RUNNING,   /* server listening */
	KP_STOPPING,  /* server signalled, waiting for it to exit */
	KP_DELETING,  /* CNI DEL (then the sandbox goes) */
};

static const char *const state_names[] = {"none",    "adding",	 "networked", "starting",
					  "running", "stopping", "deleting"};

struct cni_op {
	pid_t pid; /* 0: none */
	int out;   /* read end of the plugin's stdout, -1 when closed */
	char *buf;
	size_t len, cap;
	monotime_t started;
	bool exited;
	int status;
};

struct kpod {
	char *ns, *name;
	/* desired, from the store */
	bool desired;
	char *uid;   /* may be NULL */
	char *ports; /* "80/tcp,53/udp" */
	/* actual */
	enum kp_state st;
	char *cur_uid; /* uid the existing sandbox was made for */
	char *netns, *cid;
	char *cur_ports; /* ports of the running server */
	char *result;	 /* CNI ADD result (prevResult for DEL) */
	size_t nips;
	struct ipaddr ips[2];
	pid_t pid;  /* server */
	bool child; /* forked by this process (reaped with waitpid) */
	int ready_fd;
	monotime_t deadline;
	bool killed;
	bool teardown; /* stopping the server on the way to DEL, not for a restart */
	struct cni_op op;
	unsigned failures;
	int last_err; /* of the last failed step, 0 once running */
	monotime_t next_try;
	char *overlay; /* content of the status overlay as last written (or found) */
};

struct kubelet {
	struct store *store;
	char *node, *lab, *manifests, *state_dir, *self_exe, *cni_path;
	char *pods_dir, *overlay_dir, *cni_conf_path, *cni_conf;
	size_t npods, cap;
	struct kpod **pods;
	monotime_t due; /* kubelet_dirty() once monotime passes this */
	bool waiting_logged;
	int devnull;
};

/* ---- small helpers ---- */

static bool str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

static void set_str(char **dst, const char *src)
{
	if (str_eq(*dst, src))
		return;
	free(*dst);
	*dst = xstrdup(src);
}

static monotime_t backoff(struct kpod *p)
{
	unsigned shift = p->failures < 6 ? p->failures : 6;
	monotime_t ms = (monotime_t)BACKOFF_MIN_MS << shift;
	if (ms > BACKOFF_MAX_MS)
		ms = BACKOFF_MAX_MS;
	return MONO_MS(ms);
}

static void fail(struct kpod *p, monotime_t now, int err)
{
	p->last_err = err ? err : -EIO;
	p->failures++;
	p->next_try = now + backoff(p);
}

static const char *proto_lc(enum proto pr)
{
	return pr == PROTO_UDP ? "udp" : pr == PROTO_SCTP ? "sctp" : "tcp";
}

/* "80/tcp,53/udp" from the Pod's container ports; the server's default when none. */
static char *ports_of(const struct pod_obj *po)
{
	size_t cap = 16 + po->nports * 12, n = 0;
	char *s = xmalloc(cap);
	s[0] = 0;
	for (size_t i = 0; i < po->nports; i++) {
		const struct container_port *cp = &po->ports[i];
		bool seen = false;
		for (size_t j = 0; j < i; j++)
			if (po->ports[j].port == cp->port && po->ports[j].proto == cp->proto)
				seen = true;
		if (seen || !cp->port)
			continue;
		n += (size_t)snprintf(s + n, cap - n, "%s%u/%s", n ? "," : "", cp->port,
				      proto_lc(cp->proto));
	}
	if (!n)
		snprintf(s, cap, "80/tcp");
	return s;
}

static char *pod_file(const struct kubelet *k, const struct kpod *p, const char *ext)
{
	return xasprintf("%s/%s_%s.%s", k->pods_dir, p->ns, p->name, ext);
}

static char *overlay_path(const struct kubelet *k, const struct kpod *p)
{
	return xasprintf("%s/pod.%s.%s.json", k->overlay_dir, p->ns, p->name);
}

/* A container ID as runtimes make them (64 hex), stable for one pod incarnation. */
static char *make_cid(const struct kubelet *k, const struct kpod *p)
{
	char *key = xasprintf("%s/%s/%s/%s", k->lab, p->ns, p->name, p->uid ? p->uid : "");
	char *cid = xmalloc(65);
	uint64_t h = FNV_SEED;
	for (int i = 0; i < 4; i++) {
		h = fnv1a64(key, strlen(key), h + (uint64_t)i);
		snprintf(cid + i * 16, 17, "%016llx", (unsigned long long)h);
	}
	free(key);
	return cid;
}

/* "<lab>-p-<node>-<ns>-<pod>"; long names (and the rare clash between "a-b"/"c" and
 * "a"/"b-c") are cut and completed with a hash of the full name. */
static char *make_netns(const struct kubelet *k, const struct kpod *p)
{
	char *full = xasprintf("%s-p-%s-%s-%s", k->lab, k->node, p->ns, p->name);
	bool clash = false;
	for (size_t i = 0; i < k->npods; i++) {
		const struct kpod *o = k->pods[i];
		if (o != p && o->netns && !strcmp(o->netns, full))
			clash = true;
	}
	if (strlen(full) <= NETNS_MAX && !clash)
		return full;
	char *key = xasprintf("%s\n%s\n%s\n%s", k->lab, k->node, p->ns, p->name);
	uint64_t h = fnv1a64(key, strlen(key), FNV_SEED);
	free(key);
	size_t keep = strlen(full);
	if (keep > NETNS_MAX - 13)
		keep = NETNS_MAX - 13;
	char *out = xasprintf("%.*s-%012llx", (int)keep, full, (unsigned long long)(h >> 16));
	free(full);
	return out;
}

/* Is pid a pod server for this pod (and not a zombie)?  Guards every kill against pid
 * reuse after a reboot or a long downtime. */
static bool server_is_ours(pid_t pid, const struct kpod *p)
{
	if (pid <= 0)
		return false;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	char *stat = NULL;
	if (file_read(path, &stat, NULL))
		return false;
	const char *rp = strrchr(stat, ')');
	bool zombie = rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
	free(stat);
	if (zombie)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	char *cmd = NULL;
	size_t len = 0;
	if (file_read(path, &cmd, &len))
		return false;
	char *want = xasprintf("%s/%s", p->ns, p->name);
	bool podserver = false, pod = false;
	for (size_t off = 0; off < len; off += strlen(cmd + off) + 1) {
		const char *a = cmd + off;
		if (!strcmp(a, "podserver"))
			podserver = true;
		if (!strcmp(a, "--pod") && off + strlen(a) + 1 < len)
			pod = !strcmp(cmd + off + strlen(a) + 1, want);
	}
	free(want);
	free(cmd);
	return podserver && pod;
}

/* Reap our own exited children; true while the server runs. */
static bool server_alive(struct kpod *p)
{
	if (p->pid <= 0)
		return false;
	if (p->child) {
		int status;
		pid_t r = waitpid(p->pid, &status, WNOHANG);
		if (r == p->pid) {
			/* expected while stopping; otherwise the pod's container "crashed" */
			enum log_level lvl = p->st == KP_STOPPING ? LOG_DEBUG : LOG_WARN;
			if (WIFEXITED(status))
				log_msg(lvl, SUB,
					"pod %s/%s: server (pid %d) exited with status %d", p->ns,
					p->name, (int)p->pid, WEXITSTATUS(status));
			else if (WIFSIGNALED(status))
				log_msg(lvl, SUB, "pod %s/%s: server (pid %d) ended by signal %d",
					p->ns, p->name, (int)p->pid, WTERMSIG(status));
			p->pid = 0;
			p->child = false;
			return false;
		}
		if (r < 0 && errno == ECHILD)
			p->child = false; /* reaped elsewhere (SIGCHLD ignored): use /proc */
	}
	if (!server_is_ours(p->pid, p)) {
		p->pid = 0;
		return false;
	}
	return true;
}

/* Child side of a fork: a clean signal state for the program we exec. */
static void child_reset_signals(void)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
}

/* ---- state file ---- */

static void add_ips(json_object *o, const char *key, const struct kpod *p)
{
	json_object *a = json_object_new_array();
	for (size_t i = 0; i < p->nips; i++) {
		char buf[IP_STRLEN];
		json_object_array_add(a, json_object_new_string(ip_fmt(&p->ips[i], buf)));
	}
	json_object_object_add(o, key, a);
}

static int save_state(const struct kubelet *k, const struct kpod *p)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "namespace", json_object_new_string(p->ns));
	json_object_object_add(o, "name", json_object_new_string(p->name));
	if (p->cur_uid)
		json_object_object_add(o, "uid", json_object_new_string(p->cur_uid));
	json_object_object_add(o, "netns", json_object_new_string(p->netns));
	json_object_object_add(o, "containerId", json_object_new_string(p->cid));
	json_object_object_add(o, "pid", json_object_new_int(p->pid));
	add_ips(o, "ips", p);
	if (p->cur_ports)
		json_object_object_add(o, "ports", json_object_new_string(p->cur_ports));
	json_object_object_add(o, "ready", json_object_new_boolean(p->st == KP_RUNNING));
	if (p->result) {
		json_object *r = json_tokener_parse(p->result);
		if (r)
			json_object_object_add(o, "result", r);
	}
	const char *s = json_object_to_json_string_ext(o, JSON_OUT);
	char *path = pod_file(k, p, "json");
	int err = file_write_atomic(path, s, strlen(s));
	if (err)
		log_error(SUB, "pod %s/%s: cannot write %s: %s", p->ns, p->name, path,
			  strerror(-err));
	free(path);
	json_object_put(o);
	/* the classic pid file, for tools (`twill lab down`) that only want the pid */
	path = pod_file(k, p, "pid");
	if (p->pid > 0) {
		char num[32];
		int n = snprintf(num, sizeof(num), "%d\n", (int)p->pid);
		file_write_atomic(path, num, (size_t)n);
	} else {
		unlink(path);
	}
	free(path);
	return err;
}

static void remove_state(const struct kubelet *k, const struct kpod *p)
{
	static const char *const exts[] = {"json", "pid", "log"};
	for (size_t i = 0; i < ARRAY_SIZE(exts); i++) {
		char *path = pod_file(k, p, exts[i]);
		unlink(path);
		free(path);
	}
}

/* ---- status overlay ---- */

static char *overlay_content(const struct kubelet *k, const struct kpod *p)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "apiVersion", json_object_new_string("v1"));
	json_object_object_add(o, "kind", json_object_new_string("Pod"));
	json_object *md = json_object_new_object();
	json_object_object_add(md, "name", json_object_new_string(p->name));
	json_object_object_add(md, "namespace", json_object_new_string(p->ns));
	json_object_object_add(o, "metadata", md);
	json_object *st = json_object_new_object();
	json_object_object_add(st, "phase", json_object_new_string("Running"));
	const struct object *node = store_get(k->store, KIND_NODE, NULL, k->node);
	const struct ipaddr *hip = node ? node_ip(&node->node, AF_UNSPEC) : NULL;
	char buf[IP_STRLEN];
	if (hip && ip_is_set(hip))
		json_object_object_add(st, "hostIP", json_object_new_string(ip_fmt(hip, buf)));
	json_object_object_add(st, "podIP", json_object_new_string(ip_fmt(&p->ips[0], buf)));
	json_object *ips = json_object_new_array();
	for (size_t i = 0; i < p->nips; i++) {
		json_object *e = json_object_new_object();
		json_object_object_add(e, "ip", json_object_new_string(ip_fmt(&p->ips[i], buf)));
		json_object_array_add(ips, e);
	}
	json_object_object_add(st, "podIPs", ips);
	json_object *conds = json_object_new_array();
	json_object *ready = json_object_new_object();
	json_object_object_add(ready, "type", json_object_new_string("Ready"));
	json_object_object_add(ready, "status",
			       json_object_new_string(p->st == KP_RUNNING ? "True" : "False"));
	json_object_array_add(conds, ready);
	json_object_object_add(st, "conditions", conds);
	json_object_object_add(o, "status", st);
	char *s = xasprintf("%s\n", json_object_to_json_string_ext(o, JSON_OUT));
	json_object_put(o);
	return s;
}

static void publish(struct kubelet *k, struct kpod *p)
{
	bool show = p->desired && p->nips &&
		    (p->st == KP_NETWORKED || p->st == KP_STARTING || p->st == KP_RUNNING ||
		     p->st == KP_STOPPING);
	if (!show)
		return;
	char *s = overlay_content(k, p);
	if (p->overlay && !strcmp(p->overlay, s)) {
		free(s);
		return;
	}
	char *path = overlay_path(k, p);
	int err = file_write_atomic(path, s, strlen(s));
	if (err) {
		log_error(SUB, "pod %s/%s: cannot write %s: %s", p->ns, p->name, path,
			  strerror(-err));
		free(s);
	} else {
		free(p->overlay);
		p->overlay = s;
	}
	free(path);
}

/* Remove the overlay only if it is still ours: after a move to another node, that
 * node's runtime may already have written its own. */
static void unpublish(struct kubelet *k, struct kpod *p)
{
	if (!p->overlay)
		return;
	char *path = overlay_path(k, p);
	char *cur = NULL;
	if (file_read(path, &cur, NULL) == 0 && !strcmp(cur, p->overlay))
		unlink(path);
	free(cur);
	free(path);
	free(p->overlay);
	p->overlay = NULL;
}

/* ---- CNI calls ---- */

static void op_clear(struct cni_op *op)
{
	if (op->out >= 0)
		close(op->out);
	free(op->buf);
	memset(op, 0, sizeof(*op));
	op->out = -1;
}

/* Start the plugin for `cmd` (ADD or DEL) without waiting for it. */
static int cni_start(struct kubelet *k, struct kpod *p, const char *cmd)
{
	struct cni_op *op = &p->op;
	char *conf;
	if (!strcmp(cmd, "DEL") && p->result) {
		json_object *c = json_tokener_parse(k->cni_conf);
		json_object *r = json_tokener_parse(p->result);
		if (c && r)
			json_object_object_add(c, "prevResult", r);
		else
			json_object_put(r);
		conf = xstrdup(c ? json_object_to_json_string_ext(c, JSON_OUT) : k->cni_conf);
		json_object_put(c);
	} else {
		conf = xstrdup(k->cni_conf);
	}

	/* environment: ours without stale CNI_*, plus the call's */
	size_t n = 0;
	for (char **e = environ; e && *e; e++)
		n++;
	char **env = xcalloc(n + 8, sizeof(char *));
	size_t ne = 0;
	for (char **e = environ; e && *e; e++)
		if (!str_has_prefix(*e, "CNI_"))
			env[ne++] = xstrdup(*e);
	env[ne++] = xasprintf("CNI_COMMAND=%s", cmd);
	env[ne++] = xasprintf("CNI_CONTAINERID=%s", p->cid);
	env[ne++] = xasprintf("CNI_NETNS=/run/netns/%s", p->netns);
	env[ne++] = xasprintf("CNI_IFNAME=%s", IFNAME);
	env[ne++] = xasprintf("CNI_PATH=%s", k->cni_path);
	env[ne++] = xasprintf("CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;"
			      "K8S_POD_INFRA_CONTAINER_ID=%s%s%s",
			      p->ns, p->name, p->cid, p->cur_uid ? ";K8S_POD_UID=" : "",
			      p->cur_uid ? p->cur_uid : "");
	env[ne] = NULL;
	char *argv[] = {k->self_exe, NULL};
	char *logpath = pod_file(k, p, "log");

	int in[2] = {-1, -1}, out[2] = {-1, -1}, err = 0;
	int logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC)) {
		err = -errno;
		goto out;
	}
	pid_t pid = fork();
	if (pid < 0) {
		err = -errno;
		goto out;
	}
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(logfd >= 0 ? logfd : k->devnull, 2);
		close_range(3, ~0U, 0);
		child_reset_signals();
		execve(argv[0], argv, env);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	in[0] = out[1] = -1;
	/* the configuration fits the pipe buffer: write it all and close */
	size_t len = strlen(conf), off = 0;
	while (off < len) {
		ssize_t w = write(in[1], conf + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	op->pid = pid;
	op->out = out[0];
	out[0] = -1;
	op->started = monotime_now();
	log_debug(SUB, "pod %s/%s: CNI %s started (pid %d, container %.12s)", p->ns, p->name, cmd,
		  (int)pid, p->cid);
out:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
	}
	if (logfd >= 0)
		close(logfd);
	free(logpath);
	for (size_t i = 0; i < ne; i++)
		free(env[i]);
	free(env);
	free(conf);
	return err;
}

/* Drain output and reap.  true once the call is over (op->status valid). */
static bool cni_poll(struct cni_op *op, monotime_t now)
{
	while (op->out >= 0) {
		if (op->len + 4096 > op->cap) {
			op->cap = op->cap ? op->cap * 2 : 8192;
			op->buf = xrealloc(op->buf, op->cap);
		}
		ssize_t r = read(op->out, op->buf + op->len, op->cap - op->len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			break;
		if (r <= 0) {
			close(op->out);
			op->out = -1;
			break;
		}
		op->len += (size_t)r;
		if (op->len > (1u << 20)) { /* a runaway plugin: stop listening */
			close(op->out);
			op->out = -1;
		}
	}
	if (op->buf)
		op->buf[op->len] = 0;
	if (!op->exited) {
		int status;
		pid_t r = waitpid(op->pid, &status, WNOHANG);
		if (r == op->pid || (r < 0 && errno == ECHILD)) {
			op->exited = true;
			op->status = r == op->pid ? status : 0;
		} else if (now - op->started > MONO_MS(CNI_TIMEOUT_MS)) {
			kill(op->pid, SIGKILL);
			waitpid(op->pid, &status, 0);
			op->exited = true;
			op->status = status;
		}
	}
	if (op->exited && op->out >= 0) {
		close(op->out); /* a grandchild may hold the pipe: stop reading */
		op->out = -1;
	}
	return op->exited;
}

/* Check a finished call's output: 0 with the JSON object in *res, or -errno after
 * logging the plugin's error. */
static int cni_outcome(struct kpod *p, const char *cmd, json_object **res)
{
	struct cni_op *op = &p->op;
	json_object *o = op->len ? json_tokener_parse(op->buf) : NULL;
	json_object *code = NULL, *msg = NULL, *det = NULL;
	if (o && json_object_object_get_ex(o, "code", &code)) {
		json_object_object_get_ex(o, "msg", &msg);
		if (json_object_object_get_ex(o, "details", &det) && !*json_object_get_string(det))
			det = NULL;
		log_error(SUB, "pod %s/%s: CNI %s failed: code %d: %s%s%s", p->ns, p->name, cmd,
			  json_object_get_int(code), msg ? json_object_get_string(msg) : "",
			  det ? ": " : "", det ? json_object_get_string(det) : "");
		json_object_put(o);
		return -EIO;
	}
	int st = op->status;
	bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
	if (!ok) {
		if (WIFSIGNALED(st))
			log_error(SUB, "pod %s/%s: CNI %s: plugin killed by signal %d", p->ns,
				  p->name, cmd, WTERMSIG(st));
		else
			log_error(SUB, "pod %s/%s: CNI %s: plugin exited with status %d%s", p->ns,
				  p->name, cmd, WEXITSTATUS(st),
				  WEXITSTATUS(st) == 127 ? " (could not run it)" : "");
		json_object_put(o);
		return -EIO;
	}
	if (res)
		*res = o;
	else
		json_object_put(o);
	return 0;
}

static int take_ips(struct kpod *p, json_object *res)
{
	json_object *ips;
	p->nips = 0;
	if (!res || !json_object_object_get_ex(res, "ips", &ips) ||
	    !json_object_is_type(ips, json_type_array))
		return -EINVAL;
	for (size_t i = 0; i < json_object_array_length(ips) && p->nips < 2; i++) {
		json_object *e = json_object_array_get_idx(ips, i), *a;
		struct ipprefix pf;
		if (!json_object_object_get_ex(e, "address", &a) ||
		    prefix_parse(json_object_get_string(a), &pf))
			continue;
		bool dup = false;
		for (size_t j = 0; j < p->nips; j++)
			if (p->ips[j].family == pf.addr.family)
				dup = true;
		if (!dup)
			p->ips[p->nips++] = pf.addr;
	}
	return p->nips ? 0 : -EINVAL;
}

/* ---- sandbox ---- */

static int sandbox_create(struct kpod *p)
{
	if (netns_exists(p->netns)) {
		/* left behind without a state file (crash between create and save) */
		log_warn(SUB, "pod %s/%s: removing stale network namespace %s", p->ns, p->name,
			 p->netns);
		netns_delete(p->netns);
	}
	int err = netns_create(p->netns);
	if (err)
		return err;
	int fd = netns_open(p->netns);
	if (fd < 0)
		return fd;
	struct nl_sock *s = nl_open_netns(fd);
	close(fd);
	if (!s)
		return -errno;
	int idx = nl_link_index(s, "lo");
	err = idx < 0 ? idx : nl_link_set_up(s, idx, true);
	nl_close(s);
	return err;
}

/* ---- pod server ---- */

static int server_start(struct kubelet *k, struct kpod *p)
{
	int err = 0, nsfd = -1, logfd = -1, rp[2] = {-1, -1};
	char *logpath = pod_file(k, p, "log");
	char *podarg = xasprintf("%s/%s", p->ns, p->name);
	nsfd = netns_open(p->netns);
	if (nsfd < 0) {
		err = nsfd;
		goto out;
	}
	logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (logfd < 0) {
		err = -errno;
		goto out;
	}
	if (pipe2(rp, O_CLOEXEC)) {
		err = -errno;
		goto out;
	}
	char *argv[] = {k->self_exe, "lab",	 "podserver", "--pod",	    podarg, "--node",
			k->node,     "--listen", p->ports,    "--ready-fd", "3",    NULL};
	pid_t pid = fork();
	if (pid < 0) {
		err = -errno;
		goto out;
	}
	if (pid == 0) {
		setsid();
		if (setns(nsfd, CLONE_NEWNET))
			_exit(126);
		dup2(k->devnull, 0);
		dup2(logfd, 1);
		dup2(logfd, 2);
		if (rp[1] == 3)
			fcntl(3, F_SETFD, 0);
		else
			dup2(rp[1], 3);
		close_range(4, ~0U, 0);
		child_reset_signals();
		execve(argv[0], argv, environ);
		_exit(127);
	}
	close(rp[1]);
	rp[1] = -1;
	fcntl(rp[0], F_SETFL, O_NONBLOCK);
	p->pid = pid;
	p->child = true;
	p->ready_fd = rp[0];
	rp[0] = -1;
	set_str(&p->cur_ports, p->ports);
	log_debug(SUB, "pod %s/%s: server started (pid %d, ports %s)", p->ns, p->name, (int)pid,
		  p->ports);
out:
	if (nsfd >= 0)
		close(nsfd);
	if (logfd >= 0)
		close(logfd);
	for (int i = 0; i < 2; i++)
		if (rp[i] >= 0)
			close(rp[i]);
	free(logpath);
	free(podarg);
	return err;
}

/* 1 ready, 0 not yet, -1 never (pipe closed without the word). */
static int server_ready(struct kpod *p)
{
	char buf[16];
	ssize_t r = read(p->ready_fd, buf, sizeof(buf));
	if (r > 0)
		return 1;
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	return -1;
}

static void close_ready(struct kpod *p)
{
	if (p->ready_fd >= 0)
		close(p->ready_fd);
	p->ready_fd = -1;
}

static void server_stop(struct kpod *p, monotime_t now)
{
	close_ready(p);
	if (p->pid > 0 && server_is_ours(p->pid, p))
		kill(p->pid, SIGTERM);
	p->killed = false;
	p->deadline = now + MONO_MS(STOP_GRACE_MS);
	p->st = KP_STOPPING;
}

/* ---- the state machine ---- */

static void begin_teardown(struct kpod *p, monotime_t now)
{
	p->teardown = true;
	if (p->pid > 0 && server_alive(p))
		server_stop(p, now);
	else
		p->st = KP_DELETING;
}

static bool same_incarnation(const struct kpod *p)
{
	return p->desired && str_eq(p->uid, p->cur_uid);
}

/* Advance one pod as far as it goes without waiting.  Returns true when it changed. */
static bool step(struct kubelet *k, struct kpod *p, monotime_t now)
{
	enum kp_state before = p->st;
	int err;
	switch (p->st) {
	case KP_NONE:
		if (!p->desired || now < p->next_try)
			break;
		set_str(&p->cur_uid, p->uid);
		free(p->netns);
		p->netns = make_netns(k, p);
		free(p->cid);
		p->cid = make_cid(k, p);
		free(p->result);
		p->result = NULL;
		p->nips = 0;
		p->pid = 0;
		err = sandbox_create(p);
		if (err) {
			log_error(SUB, "pod %s/%s: cannot create network namespace %s: %s", p->ns,
				  p->name, p->netns, strerror(-err));
			netns_delete(p->netns);
			fail(p, now, err);
			break;
		}
		save_state(k, p); /* before ADD: a crash now still leads to DEL */
		err = cni_start(k, p, "ADD");
		if (err) {
			log_error(SUB, "pod %s/%s: cannot run the CNI plugin %s: %s", p->ns,
				  p->name, k->self_exe, strerror(-err));
			fail(p, now, err);
			p->teardown = true;
			p->st = KP_DELETING;
			break;
		}
		p->st = KP_ADDING;
		break;

	case KP_ADDING: {
		if (!cni_poll(&p->op, now))
			break;
		json_object *res = NULL;
		double ms = (double)(now - p->op.started) / 1e6;
		err = cni_outcome(p, "ADD", &res);
		if (!err && take_ips(p, res)) {
			log_error(SUB, "pod %s/%s: CNI ADD result has no IP address: %s", p->ns,
				  p->name, p->op.buf);
			err = -EINVAL;
		}
		if (err) {
			json_object_put(res);
			op_clear(&p->op);
			fail(p, now, err);
			p->teardown = true;
			p->st = KP_DELETING; /* undo what the plugin may have done, then retry */
			break;
		}
		free(p->result);
		p->result = xstrdup(json_object_to_json_string_ext(res, JSON_OUT));
		json_object_put(res);
		op_clear(&p->op);
		char b0[IP_STRLEN], b1[IP_STRLEN];
		log_info(SUB, "pod %s/%s: networked in %s: %s%s%s (%.1f ms)", p->ns, p->name,
			 p->netns, ip_fmt(&p->ips[0], b0), p->nips > 1 ? ", " : "",
			 p->nips > 1 ? ip_fmt(&p->ips[1], b1) : "", ms);
		p->st = KP_NETWORKED;
		save_state(k, p);
		break;
	}

	case KP_NETWORKED:
		if (!same_incarnation(p)) {
			begin_teardown(p, now);
			break;
		}
		if (now < p->next_try)
			break;
		err = server_start(k, p);
		if (err) {
			log_error(SUB, "pod %s/%s: cannot start the pod server: %s", p->ns, p->name,
				  strerror(-err));
			fail(p, now, err);
			break;
		}
		p->deadline = now + MONO_MS(READY_TIMEOUT_MS);
		p->st = KP_STARTING;
		break;

	case KP_STARTING:
		if (!same_incarnation(p)) {
			begin_teardown(p, now);
			break;
		}
		if (!str_eq(p->ports, p->cur_ports)) {
			server_stop(p, now);
			break;
		}
		err = server_ready(p);
		if (err > 0) {
			close_ready(p);
			p->failures = 0;
			p->last_err = 0;
			p->st = KP_RUNNING;
			save_state(k, p);
			log_info(SUB, "pod %s/%s: server ready (pid %d, ports %s)", p->ns, p->name,
				 (int)p->pid, p->cur_ports);
			break;
		}
		if (err < 0 || now > p->deadline) {
			char *lp = pod_file(k, p, "log");
			log_error(SUB, "pod %s/%s: server %s; see %s", p->ns, p->name,
				  err < 0 ? "exited before listening" : "not listening in time",
				  lp);
			free(lp);
			fail(p, now, err < 0 ? -ECHILD : -ETIMEDOUT);
			server_stop(p, now);
		}
		break;

	case KP_RUNNING:
		if (!same_incarnation(p)) {
			begin_teardown(p, now);
			break;
		}
		if (!str_eq(p->ports, p->cur_ports)) {
			log_info(SUB, "pod %s/%s: ports changed to %s; restarting the server",
				 p->ns, p->name, p->ports);
			server_stop(p, now);
			break;
		}
		if (!server_alive(p)) {
			log_warn(SUB, "pod %s/%s: server is gone; restarting it", p->ns, p->name);
			fail(p, now, -ESRCH);
			p->st = KP_NETWORKED;
			save_state(k, p);
		}
		break;

	case KP_STOPPING:
		if (server_alive(p)) {
			if (now < p->deadline)
				break;
			if (!p->killed) {
				log_warn(SUB,
					 "pod %s/%s: server (pid %d) ignores SIGTERM; killing it",
					 p->ns, p->name, (int)p->pid);
				kill(p->pid, SIGKILL);
				p->killed = true;
				p->deadline = now + MONO_MS(STOP_GRACE_MS);
				break;
			}
			log_error(SUB,
				  "pod %s/%s: server (pid %d) survives SIGKILL; giving up on it",
				  p->ns, p->name, (int)p->pid);
		}
		p->pid = 0;
		p->child = false;
		p->st = same_incarnation(p) && !p->teardown ? KP_NETWORKED : KP_DELETING;
		if (p->st == KP_NETWORKED)
			save_state(k, p);
		break;

	case KP_DELETING:
		if (!p->op.pid) {
			if (p->pid > 0 && server_alive(p)) {
				p->teardown = true;
				server_stop(p, now);
				break;
			}
			err = cni_start(k, p, "DEL");
			if (err) {
				log_error(SUB, "pod %s/%s: cannot run CNI DEL: %s", p->ns, p->name,
					  strerror(-err));
			} else {
				break;
			}
		} else {
			if (!cni_poll(&p->op, now))
				break;
			/* DEL is best effort for the runtime too: the sandbox goes anyway */
			cni_outcome(p, "DEL", NULL);
			op_clear(&p->op);
		}
		err = netns_delete(p->netns);
		if (err)
			log_warn(SUB, "pod %s/%s: cannot delete network namespace %s: %s", p->ns,
				 p->name, p->netns, strerror(-err));
		else /* quiet when this only cleans up a failed attempt before the retry */
			log_msg(p->desired ? LOG_DEBUG : LOG_INFO, SUB,
				"pod %s/%s: removed (network namespace %s)", p->ns, p->name,
				p->netns);
		remove_state(k, p);
		free(p->result);
		p->result = NULL;
		p->nips = 0;
		free(p->cur_uid);
		p->cur_uid = NULL;
		p->st = KP_NONE;
		p->teardown = false;
		unpublish(k, p); /* a new incarnation publishes its own */
		break;
	}
	if (p->st != before)
		log_debug(SUB, "pod %s/%s: %s -> %s", p->ns, p->name, state_names[before],
			  state_names[p->st]);
	return p->st != before;
}

/* ---- pods by name ---- */

static struct kpod *find_pod(const struct kubelet *k, const char *ns, const char *name)
{
	for (size_t i = 0; i < k->npods; i++)
		if (!strcmp(k->pods[i]->ns, ns) && !strcmp(k->pods[i]->name, name))
			return k->pods[i];
	return NULL;
}

static struct kpod *add_pod(struct kubelet *k, const char *ns, const char *name)
{
	struct kpod *p = xcalloc(1, sizeof(*p));
	p->ns = xstrdup(ns);
	p->name = xstrdup(name);
	p->ready_fd = -1;
	p->op.out = -1;
	if (k->npods == k->cap) {
		k->cap = k->cap ? k->cap * 2 : 16;
		k->pods = xrealloc(k->pods, k->cap * sizeof(*k->pods));
	}
	k->pods[k->npods++] = p;
	return p;
}

static void free_pod(struct kpod *p)
{
	close_ready(p);
	op_clear(&p->op);
	free(p->ns);
	free(p->name);
	free(p->uid);
	free(p->ports);
	free(p->cur_uid);
	free(p->netns);
	free(p->cid);
	free(p->cur_ports);
	free(p->result);
	free(p->overlay);
	free(p);
}

static void on_pod(struct kubelet *k, const struct object *o, bool present)
{
	const char *ns = o->meta.ns ? o->meta.ns : "default";
	bool want = present && o->pod.node_name && !strcmp(o->pod.node_name, k->node) &&
		    !o->pod.host_network && !o->meta.deleting;
	struct kpod *p = find_pod(k, ns, o->meta.name);
	if (!p && !want)
		return;
	if (!p)
		p = add_pod(k, ns, o->meta.name);
	char *ports = want ? ports_of(&o->pod) : NULL;
	bool changed = p->desired != want ||
		       (want && (!str_eq(p->uid, o->meta.uid) || !str_eq(p->ports, ports)));
	p->desired = want;
	if (want) {
		set_str(&p->uid, o->meta.uid);
		set_str(&p->ports, ports);
	}
	free(ports);
	if (changed) {
		p->next_try = 0;
		p->failures = 0;
		k->due = 0;
	}
}

static void on_event(void *arg, enum store_event ev, const struct object *old,
		     const struct object *new_obj)
{
	struct kubelet *k = arg;
	const struct object *o = new_obj ? new_obj : old;
	if (o->kind == KIND_NODE) {
		if (o->meta.name && !strcmp(o->meta.name, k->node))
			k->due = 0;
		return;
	}
	if (o->kind == KIND_POD)
		on_pod(k, o, ev != STORE_REMOVED);
}

static int seed_pod(const struct object *o, void *arg)
{
	on_pod(arg, o, true);
	return 0;
}

/* ---- adoption after a restart ---- */

static char *jstr(json_object *o, const char *key)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return xstrdup(json_object_get_string(v));
}

static void adopt_one(struct kubelet *k, const char *path)
{
	char *data = NULL;
	if (file_read(path, &data, NULL))
		return;
	json_object *o = json_tokener_parse(data);
	free(data);
	char *ns = o ? jstr(o, "namespace") : NULL, *name = o ? jstr(o, "name") : NULL;
	char *netns = o ? jstr(o, "netns") : NULL, *cid = o ? jstr(o, "containerId") : NULL;
	if (!ns || !name || !netns || !cid) {
		log_warn(SUB, "ignoring unreadable pod state %s", path);
		goto out;
	}
	struct kpod *p = find_pod(k, ns, name);
	if (!p)
		p = add_pod(k, ns, name);
	if (p->st != KP_NONE)
		goto out;
	p->netns = netns;
	p->cid = cid;
	netns = cid = NULL;
	p->cur_uid = jstr(o, "uid");
	p->cur_ports = jstr(o, "ports");
	json_object *v, *res;
	if (json_object_object_get_ex(o, "pid", &v))
		p->pid = json_object_get_int(v);
	if (json_object_object_get_ex(o, "result", &res)) {
		p->result = xstrdup(json_object_to_json_string_ext(res, JSON_OUT));
		take_ips(p, res);
	}
	bool ready = json_object_object_get_ex(o, "ready", &v) && json_object_get_boolean(v);
	char *op = overlay_path(k, p);
	char *cur = NULL;
	if (file_read(op, &cur, NULL) == 0)
		p->overlay = cur;
	free(op);

	bool ns_ok = netns_exists(p->netns);
	bool alive = p->pid > 0 && server_is_ours(p->pid, p);
	if (ns_ok && p->nips && alive && ready) {
		p->st = KP_RUNNING;
	} else if (ns_ok && p->nips) {
		if (alive) /* started but never confirmed ready: start over cleanly */
			kill(p->pid, SIGKILL);
		p->pid = 0;
		p->st = KP_NETWORKED;
	} else {
		p->pid = alive ? p->pid : 0;
		p->teardown = true;
		p->st = KP_DELETING; /* half made: undo, then make again if still desired */
	}
	char b0[IP_STRLEN] = "-";
	if (p->nips)
		ip_fmt(&p->ips[0], b0);
	log_info(SUB, "pod %s/%s: found %s (netns %s%s, ip %s, server pid %d%s)", ns, name,
		 state_names[p->st], p->netns, ns_ok ? "" : " missing", b0, (int)p->pid,
		 alive ? "" : " not running");
out:
	free(ns);
	free(name);
	free(netns);
	free(cid);
	json_object_put(o);
}

static void adopt(struct kubelet *k)
{
	DIR *d = opendir(k->pods_dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || !str_has_suffix(de->d_name, ".json"))
			continue;
		char *path = xasprintf("%s/%s", k->pods_dir, de->d_name);
		adopt_one(k, path);
		free(path);
	}
	closedir(d);
}

/* ---- public ---- */

struct kubelet *kubelet_new(struct store *s, const struct kubelet_cfg *cfg)
{
	struct kubelet *k = xcalloc(1, sizeof(*k));
	k->store = s;
	k->node = xstrdup(cfg->node_name);
	k->lab = xstrdup(cfg->lab && *cfg->lab ? cfg->lab : "twill");
	k->manifests = xstrdup(cfg->manifest_dir);
	k->state_dir = xstrdup(cfg->state_dir);
	char real[PATH_MAX];
	const char *exe = cfg->self_exe ? cfg->self_exe : "/proc/self/exe";
	if (realpath(exe, real))
		exe = real;
	k->self_exe = xstrdup(exe);
	char *slash = strrchr(k->self_exe, '/');
	k->cni_path =
	    slash ? xasprintf("%.*s", (int)(slash - k->self_exe), k->self_exe) : xstrdup(".");
	k->pods_dir = xasprintf("%s/pods", k->state_dir);
	k->overlay_dir = xasprintf("%s/%s", k->manifests, SOURCE_OVERLAY_DIR);
	k->cni_conf_path = xasprintf("%s/cni.conf", k->state_dir);
	json_object *c = json_object_new_object();
	json_object_object_add(c, "cniVersion", json_object_new_string("1.1.0"));
	json_object_object_add(c, "name", json_object_new_string("twill"));
	json_object_object_add(c, "type", json_object_new_string("twill"));
	json_object_object_add(c, "stateDir", json_object_new_string(k->state_dir));
	k->cni_conf = xstrdup(json_object_to_json_string_ext(c, JSON_OUT));
	json_object_put(c);
	k->devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	mkdir_p(k->pods_dir, 0755);
	mkdir_p(k->overlay_dir, 0755);

	adopt(k);
	store_subscribe(s, KIND_BIT(KIND_POD) | KIND_BIT(KIND_NODE), on_event, k);
	store_foreach(s, KIND_POD, seed_pod, k);
	k->due = 0;
	return k;
}

void kubelet_free(struct kubelet *k)
{
	if (!k)
		return;
	/* pods keep running: a restarted agent adopts them */
	for (size_t i = 0; i < k->npods; i++)
		free_pod(k->pods[i]);
	free(k->pods);
	if (k->devnull >= 0)
		close(k->devnull);
	free(k->node);
	free(k->lab);
	free(k->manifests);
	free(k->state_dir);
	free(k->self_exe);
	free(k->cni_path);
	free(k->pods_dir);
	free(k->overlay_dir);
	free(k->cni_conf_path);
	free(k->cni_conf);
	free(k);
}

void kubelet_kick(struct kubelet *k)
{
	k->due = 0;
}

bool kubelet_dirty(const struct kubelet *k)
{
	return k->due == 0 || monotime_now() >= k->due;
}

static bool busy(const struct kpod *p)
{
	return p->st == KP_ADDING || p->st == KP_STARTING || p->st == KP_STOPPING ||
	       (p->st == KP_DELETING && p->op.pid);
}

/* When is the next sync useful for this pod? */
static monotime_t pod_due(const struct kpod *p, monotime_t now)
{
	if (busy(p))
		return now;
	switch (p->st) {
	case KP_NONE:
		return p->desired ? p->next_try : INT64_MAX;
	case KP_NETWORKED:
		return p->next_try > now ? p->next_try : now;
	case KP_RUNNING:
		return now + MONO_MS(LIVENESS_MS);
	default:
		return now;
	}
}

int kubelet_sync(struct kubelet *k)
{
	monotime_t start = monotime_now();
	char *nodejson = xasprintf("%s/%s", k->state_dir, TWILL_NODE_STATE_FILE);
	bool have_node = access(nodejson, F_OK) == 0;
	free(nodejson);
	/* Without its Node object (and node.json, written once the node has a podCIDR) this
	 * node cannot network pods, and must not judge adopted ones as orphans either. */
	if (!have_node || !store_get(k->store, KIND_NODE, NULL, k->node)) {
		if (!k->waiting_logged)
			log_info(SUB, "waiting for %s",
				 have_node ? "the Node object" : "node.json (the node's podCIDR)");
		k->waiting_logged = true;
		k->due = start + MONO_MS(200);
		return 0; /* not an error: the agent gets there */
	}
	k->waiting_logged = false;
	char *cur = NULL;
	if (file_read(k->cni_conf_path, &cur, NULL) || strcmp(cur, k->cni_conf)) {
		int err = file_write_atomic(k->cni_conf_path, k->cni_conf, strlen(k->cni_conf));
		if (err)
			log_warn(SUB, "cannot write %s: %s", k->cni_conf_path, strerror(-err));
	}
	free(cur);

	monotime_t now = start;
	for (;;) {
		bool any_busy = false, moved = false;
		for (size_t i = 0; i < k->npods; i++) {
			struct kpod *p = k->pods[i];
			/* keep stepping while it makes progress (NONE -> ADDING ...) */
			for (int n = 0; n < 8 && step(k, p, now); n++)
				moved = true;
			any_busy |= busy(p);
		}
		now = monotime_now();
		if (!any_busy || now - start >= MONO_MS(WAIT_BUDGET_MS))
			break;
		if (moved)
			continue;
		/* wait for any plugin output or server readiness (or a short tick for exits) */
		struct pollfd *pfd = xcalloc(k->npods + 1, sizeof(*pfd));
		nfds_t nfd = 0;
		for (size_t i = 0; i < k->npods; i++) {
			struct kpod *p = k->pods[i];
			int fd =
			    p->op.out >= 0 ? p->op.out : (p->st == KP_STARTING ? p->ready_fd : -1);
			if (fd >= 0)
				pfd[nfd++] = (struct pollfd){.fd = fd, .events = POLLIN};
		}
		poll(pfd, nfd, 5);
		free(pfd);
		now = monotime_now();
	}

	/* publish status, forget finished pods, find when to come back */
	monotime_t due = INT64_MAX;
	int err = 0;
	size_t keep = 0;
	for (size_t i = 0; i < k->npods; i++) {
		struct kpod *p = k->pods[i];
		publish(k, p);
		if (p->st == KP_NONE && !p->desired) {
			unpublish(k, p);
			free_pod(p);
			continue;
		}
		k->pods[keep++] = p;
		if (!err && p->desired && p->st != KP_RUNNING)
			err = p->last_err;
		monotime_t d = pod_due(p, now);
		if (d < due)
			due = d;
	}
	k->npods = keep;
	k->due = due == INT64_MAX ? INT64_MAX : (due <= now ? now : due);
	return err;
}

int kubelet_timeout_ms(const struct kubelet *k)
{
	if (k->due == INT64_MAX)
		return -1;
	monotime_t left = k->due - monotime_now();
	if (left <= 0)
		return 0;
	return (int)((left + 999999) / 1000000);
}
