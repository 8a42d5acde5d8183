/* lab_probe: what the lab knows about its pods (a store fed by the shared manifest
 * directory, overlays included) and HTTP reachability probes between namespaces.
 *
 * A socket belongs to the network namespace it was created in, so a probe "from pod A" is
 * a socket created while the thread is in A's namespace and then driven from wherever we
 * are: every cell of the pod x pod matrix runs concurrently from one thread with
 * non-blocking connects and one poll(). */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lab/lab.h"
#include "nl/nl.h"
#include "store/store.h"

/* ------------------------------------------------------------------------------------ */
/* view */

struct lab_view {
	struct store *st;
	struct source_dir *src;
};

static void diag_ignore(const struct diag *d, void *arg)
{
	(void)d;
	(void)arg;
}

struct lab_view *lab_view_open(const char *manifest_dir)
{
	struct lab_view *v = xcalloc(1, sizeof(*v));
	v->st = store_new();
	v->src = source_dir_open(v->st, manifest_dir, diag_ignore, NULL);
	if (!v->src) {
		int e = errno;
		store_free(v->st);
		free(v);
		errno = e;
		return NULL;
	}
	source_dir_scan(v->src);
	return v;
}

void lab_view_close(struct lab_view *v)
{
	if (!v)
		return;
	source_dir_close(v->src);
	store_free(v->st);
	free(v);
}

int lab_view_fd(const struct lab_view *v)
{
	return source_dir_fd(v->src);
}

int lab_view_process(struct lab_view *v)
{
	return source_dir_process(v->src);
}

static int pod_cb(const struct object *o, void *arg)
{
	struct lab_pods *out = arg;
	out->v = xrealloc(out->v, (out->n + 1) * sizeof(*out->v));
	struct lab_pod *p = &out->v[out->n++];
	memset(p, 0, sizeof(*p));
	p->ns = xstrdup(o->meta.ns ? o->meta.ns : "default");
	p->name = xstrdup(o->meta.name);
	p->node = xstrdup(o->pod.node_name);
	for (size_t i = 0; i < o->pod.nips; i++)
		if (!p->ip.family || (o->pod.ips[i].family == AF_INET && p->ip.family != AF_INET))
			p->ip = o->pod.ips[i];
	p->ready = o->pod.ready;
	p->host_network = o->pod.host_network;
	p->port = 80;
	for (size_t i = 0; i < o->pod.nports; i++)
		if (o->pod.ports[i].proto == PROTO_TCP && o->pod.ports[i].port) {
			p->port = o->pod.ports[i].port;
			break;
		}
	return 0;
}

void lab_view_pods(const struct lab_view *v, struct lab_pods *out)
{
	out->n = 0;
	out->v = NULL;
	store_foreach(v->st, KIND_POD, pod_cb, out);
}

void lab_pods_free(struct lab_pods *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->v[i].ns);
		free(p->v[i].name);
		free(p->v[i].node);
	}
	free(p->v);
	p->v = NULL;
	p->n = 0;
}

/* ------------------------------------------------------------------------------------ */
/* probes */

static const char http_req[] =
    "GET / HTTP/1.0\r\nHost: twill-probe\r\nUser-Agent: twill-lab-probe\r\n"
    "Connection: close\r\n\r\n";

void lab_probe_init(struct lab_probe *p)
{
	memset(p, 0, sizeof(*p));
	p->fd = -1;
	p->state = PROBE_IDLE;
}

void lab_probe_close(struct lab_probe *p)
{
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
}

static void probe_finish(struct lab_probe *p, int err)
{
	lab_probe_close(p);
	p->err = err;
	p->state = err ? PROBE_FAIL : PROBE_OK;
	p->done = monotime_now();
}

static void probe_send(struct lab_probe *p)
{
	ssize_t n = send(p->fd, http_req, sizeof(http_req) - 1, MSG_NOSIGNAL);
	if (n != (ssize_t)sizeof(http_req) - 1)
		probe_finish(p, n < 0 ? errno : EIO);
	else
		p->state = PROBE_SENT;
}

int lab_probe_start(struct lab_probe *p, int nsfd, const struct ipaddr *dst, uint16_t port,
		    int timeout_ms)
{
	lab_probe_close(p);
	memset(p->resp, 0, sizeof(p->resp));
	p->got = 0;
	p->err = 0;
	p->start = monotime_now();
	p->deadline = p->start + MONO_MS(timeout_ms);
	int saved = -1, r;
	if (nsfd >= 0 && (r = netns_enter(nsfd, &saved)) < 0) {
		probe_finish(p, -r);
		return r;
	}
	p->fd = socket(dst->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int e = errno;
	if (saved >= 0)
		netns_leave(saved);
	if (p->fd < 0) {
		probe_finish(p, e);
		return -e;
	}
	struct sockaddr_storage ss;
	socklen_t sl;
	memset(&ss, 0, sizeof(ss));
	if (dst->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		sin->sin_addr = dst->v4;
		sl = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		sin6->sin6_addr = dst->v6;
		sl = sizeof(*sin6);
	}
	if (connect(p->fd, (struct sockaddr *)&ss, sl) == 0) {
		probe_send(p);
	} else if (errno == EINPROGRESS) {
		p->state = PROBE_CONNECTING;
	} else {
		e = errno;
		probe_finish(p, e);
		return -e;
	}
	return 0;
}

static bool in_flight(const struct lab_probe *p)
{
	return p->state == PROBE_CONNECTING || p->state == PROBE_SENT;
}

static void probe_read(struct lab_probe *p)
{
	for (;;) {
		size_t room = sizeof(p->resp) - 1 - p->got;
		if (!room)
			break;
		ssize_t n = recv(p->fd, p->resp + p->got, room, 0);
		if (n > 0) {
			p->got += n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			/* whatever has arrived decides once it holds the status line */
			if (p->got >= 5)
				break;
			return;
		}
		if (n < 0) {
			probe_finish(p, errno);
			return;
		}
		break; /* EOF */
	}
	probe_finish(p, p->got >= 5 && !memcmp(p->resp, "HTTP/", 5) ? 0 : EPROTO);
}

size_t lab_probe_poll(struct lab_probe **v, size_t n, int wait_ms)
{
	struct pollfd *pfd = xcalloc(n ? n : 1, sizeof(*pfd));
	size_t *idx = xcalloc(n ? n : 1, sizeof(*idx));
	size_t np = 0;
	monotime_t now = monotime_now(), first = now + MONO_MS(wait_ms);
	for (size_t i = 0; i < n; i++) {
		if (!in_flight(v[i]))
			continue;
		pfd[np].fd = v[i]->fd;
		pfd[np].events = v[i]->state == PROBE_CONNECTING ? POLLOUT : POLLIN;
		idx[np++] = i;
		if (v[i]->deadline < first)
			first = v[i]->deadline;
	}
	int timeout = first > now ? (int)((first - now + 999999) / 1000000) : 0;
	if (timeout > wait_ms)
		timeout = wait_ms;
	int r = np ? poll(pfd, np, timeout) : 0;
	for (size_t k = 0; r > 0 && k < np; k++) {
		struct lab_probe *p = v[idx[k]];
		if (!pfd[k].revents)
			continue;
		if (p->state == PROBE_CONNECTING) {
			int err = 0;
			socklen_t len = sizeof(err);
			getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len);
			if (err)
				probe_finish(p, err);
			else
				probe_send(p);
		} else if (p->state == PROBE_SENT) {
			probe_read(p);
		}
	}
	now = monotime_now();
	size_t left = 0;
	for (size_t i = 0; i < n; i++) {
		if (in_flight(v[i]) && now >= v[i]->deadline)
			probe_finish(v[i], ETIMEDOUT);
		if (in_flight(v[i]))
			left++;
	}
	free(pfd);
	free(idx);
	return left;
}

const char *lab_probe_hostname(const struct lab_probe *p, char *buf, size_t size)
{
	buf[0] = 0;
	const char *h = strstr(p->resp, "\nHostname: ");
	if (!h)
		return buf;
	h += strlen("\nHostname: ");
	size_t n = strcspn(h, "\r\n");
	if (h[n] == 0) /* cut short */
		return buf;
	snprintf(buf, size, "%.*s", (int)n, h);
	return buf;
}

/* ------------------------------------------------------------------------------------ */
/* twill lab probe */

struct src {
	char *label; /* pod name or "node/<n>" */
	const char *node;
	bool is_node;
	int nsfd;
	const char *why; /* cannot probe from here */
};

static char *pod_label(const struct lab_pod *p)
{
	return strcmp(p->ns, "default") ? xasprintf("%s/%s", p->ns, p->name) : xstrdup(p->name);
}

static const char *errname(int err)
{
	switch (err) {
	case 0:
		return "ok";
	case ETIMEDOUT:
		return "timeout";
	case ECONNREFUSED:
		return "refused";
	case EHOSTUNREACH:
		return "host unreachable";
	case ENETUNREACH:
		return "network unreachable";
	case EPROTO:
		return "not HTTP";
	default:
		return strerror(err);
	}
}

int lab_cmd_probe(int argc, char **argv)
{
	enum { OPT_TIMEOUT_MS = 300, OPT_FROM_NODES, OPT_TO, OPT_PORT };
	static const struct option opts[] = {
	    {"name", required_argument, NULL, 'n'},
	    {"port", required_argument, NULL, OPT_PORT},
	    {"timeout-ms", required_argument, NULL, OPT_TIMEOUT_MS},
	    {"from-nodes", no_argument, NULL, OPT_FROM_NODES},
	    {"to", required_argument, NULL, OPT_TO},
	    {"output", required_argument, NULL, 'o'},
	    {NULL, 0, NULL, 0},
	};
	const char *name = LAB_DEFAULT_NAME, *to = NULL;
	int port = 0, timeout_ms = 500, o;
	bool from_nodes = false, json = false;
	optind = 0;
	while ((o = getopt_long(argc, argv, "n:o:", opts, NULL)) != -1) {
		switch (o) {
		case 'n':
			name = optarg;
			break;
		case OPT_PORT:
			port = atoi(optarg);
			break;
		case OPT_TIMEOUT_MS:
			timeout_ms = atoi(optarg);
			break;
		case OPT_FROM_NODES:
			from_nodes = true;
			break;
		case OPT_TO:
			to = optarg;
			break;
		case 'o':
			if (strcmp(optarg, "json") && strcmp(optarg, "text")) {
				fprintf(stderr, "twill lab probe: -o json|text\n");
				return 2;
			}
			json = !strcmp(optarg, "json");
			break;
		default:
			return 2;
		}
	}
	if (!lab_name_valid(name) || port < 0 || port > 65535 || timeout_ms <= 0) {
		fprintf(stderr, "twill lab probe: bad arguments\n");
		return 2;
	}
	char *mdir = lab_manifest_dir(name);
	struct lab_view *v = lab_view_open(mdir);
	if (!v) {
		fprintf(stderr, "twill lab probe: lab %s is not up (%s: %s)\n", name, mdir,
			strerror(errno));
		free(mdir);
		return 1;
	}
	free(mdir);
	struct lab_pods pods;
	lab_view_pods(v, &pods);
	lab_view_close(v);

	/* sources: pods with a namespace, then (optionally) the nodes */
	size_t ns = 0, nd = 0;
	struct src *srcs = xcalloc(pods.n + LAB_NNODES + 1, sizeof(*srcs));
	struct lab_pod **dsts = xcalloc(pods.n + 1, sizeof(*dsts));
	for (size_t i = 0; i < pods.n; i++) {
		struct lab_pod *p = &pods.v[i];
		if (p->host_network)
			continue;
		char *lbl = pod_label(p);
		if (!to || !strcmp(to, lbl) || !strcmp(to, p->name))
			dsts[nd++] = p;
		struct src *s = &srcs[ns++];
		s->label = lbl;
		s->node = p->node;
		s->nsfd = -1;
		if (!p->node) {
			s->why = "not scheduled";
		} else {
			char *nsn = lab_pod_netns(name, p->node, p->ns, p->name);
			s->nsfd = netns_open(nsn);
			if (s->nsfd < 0)
				s->why = "no pod namespace";
			free(nsn);
		}
	}
	for (size_t i = 0; from_nodes && i < LAB_NNODES; i++) {
		struct src *s = &srcs[ns++];
		s->label = xasprintf("node/%s", lab_nodes[i].name);
		s->node = lab_nodes[i].name;
		s->is_node = true;
		char *nsn = lab_netns_name(name, lab_nodes[i].name);
		s->nsfd = netns_open(nsn);
		if (s->nsfd < 0)
			s->why = "no node namespace";
		free(nsn);
	}
	if (to && !nd) {
		fprintf(stderr, "twill lab probe: no pod '%s'\n", to);
		return 1;
	}

	/* every cell at once, in batches that stay clear of the fd limit */
	size_t ncell = ns * nd;
	struct lab_probe *cells = xcalloc(ncell ? ncell : 1, sizeof(*cells));
	struct lab_probe **ptrs = xcalloc(ncell ? ncell : 1, sizeof(*ptrs));
	const size_t batch = 256;
	for (size_t b = 0; b < ncell; b += batch) {
		size_t e = b + batch < ncell ? b + batch : ncell, np = 0;
		for (size_t c = b; c < e; c++) {
			struct src *s = &srcs[c / nd];
			struct lab_pod *d = dsts[c % nd];
			lab_probe_init(&cells[c]);
			if (s->nsfd < 0 || !d->ip.family) {
				cells[c].state = PROBE_FAIL;
				cells[c].err = s->nsfd < 0 ? ENOENT : EDESTADDRREQ;
				continue;
			}
			lab_probe_start(&cells[c], s->nsfd, &d->ip, port ? port : d->port,
					timeout_ms);
			ptrs[np++] = &cells[c];
		}
		for (int guard = 0; guard < 100000 && lab_probe_poll(ptrs, np, timeout_ms) > 0;
		     guard++)
			;
	}
	size_t ok = 0;
	for (size_t c = 0; c < ncell; c++)
		if (cells[c].state == PROBE_OK)
			ok++;

	if (json) {
		json_object *root = json_object_new_object(), *jd = json_object_new_array(),
			    *js = json_object_new_array(), *jr = json_object_new_array();
		json_object_object_add(root, "lab", json_object_new_string(name));
		json_object_object_add(root, "timeoutMs", json_object_new_int(timeout_ms));
		for (size_t i = 0; i < ns; i++) {
			json_object *o2 = json_object_new_object();
			json_object_object_add(o2, "name", json_object_new_string(srcs[i].label));
			json_object_object_add(
			    o2, "kind", json_object_new_string(srcs[i].is_node ? "node" : "pod"));
			json_object_object_add(
			    o2, "node", srcs[i].node ? json_object_new_string(srcs[i].node) : NULL);
			if (srcs[i].why)
				json_object_object_add(o2, "error",
						       json_object_new_string(srcs[i].why));
			json_object_array_add(js, o2);
		}
		for (size_t i = 0; i < nd; i++) {
			json_object *o2 = json_object_new_object();
			char ip[IP_STRLEN] = "";
			char *lbl = pod_label(dsts[i]);
			if (dsts[i]->ip.family)
				ip_fmt(&dsts[i]->ip, ip);
			json_object_object_add(o2, "name", json_object_new_string(lbl));
			json_object_object_add(o2, "node",
					       dsts[i]->node ? json_object_new_string(dsts[i]->node)
							     : NULL);
			json_object_object_add(o2, "ip", json_object_new_string(ip));
			json_object_object_add(o2, "port",
					       json_object_new_int(port ? port : dsts[i]->port));
			json_object_array_add(jd, o2);
			free(lbl);
		}
		for (size_t c = 0; c < ncell; c++) {
			json_object *o2 = json_object_new_object();
			char *lbl = pod_label(dsts[c % nd]), host[128];
			json_object_object_add(o2, "from",
					       json_object_new_string(srcs[c / nd].label));
			json_object_object_add(o2, "to", json_object_new_string(lbl));
			json_object_object_add(o2, "ok",
					       json_object_new_boolean(cells[c].state == PROBE_OK));
			json_object_object_add(o2, "result",
					       json_object_new_string(errname(cells[c].err)));
			if (cells[c].done && cells[c].start)
				json_object_object_add(
				    o2, "ms",
				    json_object_new_double(
					(double)(cells[c].done - cells[c].start) / 1e6));
			if (*lab_probe_hostname(&cells[c], host, sizeof(host)))
				json_object_object_add(o2, "hostname",
						       json_object_new_string(host));
			json_object_array_add(jr, o2);
			free(lbl);
		}
		json_object_object_add(root, "sources", js);
		json_object_object_add(root, "destinations", jd);
		json_object_object_add(root, "results", jr);
		json_object_object_add(root, "reachable", json_object_new_int((int)ok));
		json_object_object_add(root, "total", json_object_new_int((int)ncell));
		puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
		json_object_put(root);
	} else {
		int w0 = 9; /* "FROM \ TO" */
		for (size_t i = 0; i < ns; i++) {
			int l =
			    (int)strlen(srcs[i].label) +
			    (srcs[i].node && !srcs[i].is_node ? (int)strlen(srcs[i].node) + 3 : 0);
			if (l > w0)
				w0 = l;
		}
		printf("HTTP GET from each pod%s to each pod's IP (timeout %d ms):\n",
		       from_nodes ? " and node" : "", timeout_ms);
		for (size_t i = 0; i < nd; i++) {
			char ip[IP_STRLEN] = "-";
			char *lbl = pod_label(dsts[i]);
			if (dsts[i]->ip.family)
				ip_fmt(&dsts[i]->ip, ip);
			printf("  [%zu] %-24s %s:%u on %s\n", i + 1, lbl, ip,
			       port ? port : dsts[i]->port, dsts[i]->node ? dsts[i]->node : "-");
			free(lbl);
		}
		printf("\n%-*s", w0 + 2, "FROM \\ TO");
		for (size_t i = 0; i < nd; i++)
			printf(" [%zu]%*s", i + 1, i + 1 < 10 ? 1 : 0, "");
		printf("\n");
		for (size_t i = 0; i < ns; i++) {
			char lbl[300];
			if (srcs[i].node && !srcs[i].is_node)
				snprintf(lbl, sizeof(lbl), "%s (%s)", srcs[i].label, srcs[i].node);
			else
				snprintf(lbl, sizeof(lbl), "%s", srcs[i].label);
			printf("%-*s", w0 + 2, lbl);
			for (size_t j = 0; j < nd; j++)
				printf(" %-4s", cells[i * nd + j].state == PROBE_OK ? "ok" : "--");
			if (srcs[i].why)
				printf("  (%s)", srcs[i].why);
			printf("\n");
		}
		/* why the failures failed, once per kind */
		bool shown[8] = {0};
		for (size_t c = 0; c < ncell; c++) {
			if (cells[c].state == PROBE_OK)
				continue;
			int e = cells[c].err;
			int slot = e == ETIMEDOUT      ? 0
				   : e == ECONNREFUSED ? 1
				   : e == EHOSTUNREACH ? 2
				   : e == ENETUNREACH  ? 3
				   : e == EPROTO       ? 4
				   : e == EDESTADDRREQ ? 5
				   : e == ENOENT       ? 6
						       : 7;
			if (shown[slot])
				continue;
			shown[slot] = true;
			char *lbl = pod_label(dsts[c % nd]);
			printf("  e.g. %s -> %s: %s\n", srcs[c / nd].label, lbl,
			       e == EDESTADDRREQ ? "no pod IP"
			       : e == ENOENT	 ? "no namespace"
						 : errname(e));
			free(lbl);
		}
		printf("%zu/%zu reachable\n", ok, ncell);
	}

	for (size_t i = 0; i < ns; i++) {
		if (srcs[i].nsfd >= 0)
			close(srcs[i].nsfd);
		free(srcs[i].label);
	}
	for (size_t c = 0; c < ncell; c++)
		lab_probe_close(&cells[c]);
	free(cells);
	free(ptrs);
	free(srcs);
	free(dsts);
	lab_pods_free(&pods);
	return ok == ncell && ncell > 0 ? 0 : 1;
}

/* ------------------------------------------------------------------------------------ */
/* twill lab probe-matrix: every pod to every pod's address and every Service's ClusterIP,
 * per port/protocol, all at once (the e2e netpol suite's matrix, in about one timeout).
 * TCP succeeds when the connection is established (as agnhost connect does), UDP when
 * the pod server answers a datagram. */

struct mcell {
	int src;	/* index into the sources */
	const char *to; /* ns/pod or ns/service */
	bool svc;
	struct ipaddr ip;
	uint16_t port;
	bool udp;
	int fd;
	int err; /* -1 in flight, 0 ok, else errno */
};

struct portspec {
	uint16_t port;
	bool udp;
};

static int parse_ports(const char *s, struct portspec *v, int max)
{
	int n = 0;
	char *dup = xstrdup(s), *save = NULL;
	for (char *t = strtok_r(dup, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save)) {
		char *slash = strchr(t, '/');
		v[n].udp = slash && !strcasecmp(slash + 1, "udp");
		if (slash && !v[n].udp && strcasecmp(slash + 1, "tcp")) {
			n = -1;
			break;
		}
		int p = atoi(t);
		if (p < 1 || p > 65535) {
			n = -1;
			break;
		}
		v[n++].port = (uint16_t)p;
	}
	free(dup);
	return n;
}

static void mcell_start(struct mcell *c, int nsfd)
{
	int saved = -1;
	c->err = -1;
	if (netns_enter(nsfd, &saved) < 0) {
		c->err = ENOENT;
		return;
	}
	c->fd = socket(c->ip.family, (c->udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK |
					 SOCK_CLOEXEC,
		       0);
	int e = errno;
	netns_leave(saved);
	if (c->fd < 0) {
		c->err = e;
		return;
	}
	struct sockaddr_storage ss = {0};
	socklen_t sl;
	if (c->ip.family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(c->port);
		sin->sin_addr = c->ip.v4;
		sl = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(c->port);
		sin6->sin6_addr = c->ip.v6;
		sl = sizeof(*sin6);
	}
	if (connect(c->fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS) {
		c->err = errno;
	} else if (c->udp && send(c->fd, "probe\n", 6, 0) < 0) {
		c->err = errno;
	}
	if (c->err >= 0) {
		close(c->fd);
		c->fd = -1;
	}
}

static void mcell_event(struct mcell *c, short revents)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (c->udp) {
		char buf[512];
		ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		err = n < 0 ? errno : 0;
	} else {
		if (!(revents & (POLLOUT | POLLERR | POLLHUP)))
			return;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
	}
	c->err = err;
	close(c->fd);
	c->fd = -1;
}

struct msvc {
	char *name;
	struct ipaddr ip;
};

static int svc_cb(const struct object *o, void *arg)
{
	struct {
		size_t n;
		struct msvc *v;
	} *out = arg;
	if (!o->svc.ncluster_ips || o->svc.headless)
		return 0;
	out->v = xrealloc(out->v, (out->n + 1) * sizeof(*out->v));
	out->v[out->n].name = xasprintf("%s/%s", o->meta.ns, o->meta.name);
	out->v[out->n++].ip = o->svc.cluster_ips[0];
	return 0;
}

int lab_cmd_probe_matrix(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"name", required_argument, NULL, 'n'},
	    {"ports", required_argument, NULL, 'p'},
	    {"timeout-ms", required_argument, NULL, 't'},
	    {"services", no_argument, NULL, 's'},
	    {NULL, 0, NULL, 0},
	};
	const char *name = LAB_DEFAULT_NAME, *ports = "80/tcp";
	int timeout_ms = 400, o;
	bool services = false;
	optind = 0;
	while ((o = getopt_long(argc, argv, "n:p:t:s", opts, NULL)) != -1) {
		switch (o) {
		case 'n':
			name = optarg;
			break;
		case 'p':
			ports = optarg;
			break;
		case 't':
			timeout_ms = atoi(optarg);
			break;
		case 's':
			services = true;
			break;
		default:
			fprintf(stderr, "usage: twill lab probe-matrix [--name LAB] [--ports "
					"80/tcp,81/udp,...] [--services] [--timeout-ms MS]\n");
			return 2;
		}
	}
	struct portspec ps[16];
	int nps = parse_ports(ports, ps, (int)ARRAY_SIZE(ps));
	if (!lab_name_valid(name) || nps <= 0 || timeout_ms <= 0) {
		fprintf(stderr, "twill lab probe-matrix: bad arguments\n");
		return 2;
	}
	char *mdir = lab_manifest_dir(name);
	struct lab_view *v = lab_view_open(mdir);
	free(mdir);
	if (!v) {
		fprintf(stderr, "twill lab probe-matrix: lab %s is not up\n", name);
		return 1;
	}
	struct lab_pods pods;
	lab_view_pods(v, &pods);
	struct {
		size_t n;
		struct msvc *v;
	} svcs = {0};
	if (services)
		store_foreach(v->st, KIND_SERVICE, svc_cb, &svcs);
	lab_view_close(v);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	/* sources: pods with a namespace; targets: pod addresses, then ClusterIPs */
	int *nsfd = xcalloc(pods.n + 1, sizeof(int));
	char **label = xcalloc(pods.n + 1, sizeof(char *));
	size_t ncell = 0;
	struct mcell *cells = xcalloc((pods.n + svcs.n) * pods.n * (size_t)nps + 1, sizeof(*cells));
	for (size_t i = 0; i < pods.n; i++) {
		const struct lab_pod *p = &pods.v[i];
		label[i] = xasprintf("%s/%s", p->ns, p->name);
		nsfd[i] = -1;
		if (p->host_network || !p->node)
			continue;
		char *nsn = lab_pod_netns(name, p->node, p->ns, p->name);
		nsfd[i] = netns_open(nsn);
		free(nsn);
	}
	for (size_t i = 0; i < pods.n; i++) {
		if (nsfd[i] < 0)
			continue;
		for (size_t j = 0; j < pods.n + svcs.n; j++) {
			bool svc = j >= pods.n;
			const struct ipaddr *ip = svc ? &svcs.v[j - pods.n].ip : &pods.v[j].ip;
			if (!ip->family || (!svc && pods.v[j].host_network))
				continue;
			for (int k = 0; k < nps; k++) {
				struct mcell *c = &cells[ncell++];
				c->src = (int)i;
				c->to = svc ? svcs.v[j - pods.n].name : label[j];
				c->svc = svc;
				c->ip = *ip;
				c->port = ps[k].port;
				c->udp = ps[k].udp;
				c->fd = -1;
			}
		}
	}
	/* in batches that stay clear of the descriptor limit */
	size_t batch = rl.rlim_max > 4096 ? 2048 : 400;
	struct pollfd *pfd = xcalloc(batch, sizeof(*pfd));
	size_t *idx = xcalloc(batch, sizeof(*idx));
	for (size_t b = 0; b < ncell; b += batch) {
		size_t e = b + batch < ncell ? b + batch : ncell;
		for (size_t c = b; c < e; c++)
			mcell_start(&cells[c], nsfd[cells[c].src]);
		monotime_t deadline = monotime_now() + MONO_MS(timeout_ms);
		for (int guard = 0; guard < 100000; guard++) {
			size_t np = 0;
			for (size_t c = b; c < e; c++)
				if (cells[c].err < 0) {
					pfd[np].fd = cells[c].fd;
					pfd[np].events = cells[c].udp ? POLLIN : POLLOUT;
					idx[np++] = c;
				}
			monotime_t now = monotime_now();
			if (!np || now >= deadline)
				break;
			int r = poll(pfd, np, (int)((deadline - now) / 1000000) + 1);
			for (size_t k = 0; r > 0 && k < np; k++)
				if (pfd[k].revents)
					mcell_event(&cells[idx[k]], pfd[k].revents);
		}
		for (size_t c = b; c < e; c++)
			if (cells[c].err < 0) {
				close(cells[c].fd);
				cells[c].fd = -1;
				cells[c].err = ETIMEDOUT;
			}
	}
	json_object *root = json_object_new_object(), *res = json_object_new_array();
	size_t ok = 0;
	for (size_t c = 0; c < ncell; c++) {
		json_object *j = json_object_new_object();
		json_object_object_add(j, "from", json_object_new_string(label[cells[c].src]));
		json_object_object_add(j, "to", json_object_new_string(cells[c].to));
		json_object_object_add(j, "via", json_object_new_string(cells[c].svc ? "svc" : "pod"));
		json_object_object_add(j, "port", json_object_new_int(cells[c].port));
		json_object_object_add(j, "proto",
				       json_object_new_string(cells[c].udp ? "udp" : "tcp"));
		json_object_object_add(j, "ok", json_object_new_boolean(!cells[c].err));
		if (cells[c].err)
			json_object_object_add(j, "result",
					       json_object_new_string(errname(cells[c].err)));
		ok += !cells[c].err;
		json_object_array_add(res, j);
	}
	json_object_object_add(root, "results", res);
	json_object_object_add(root, "reachable", json_object_new_int((int)ok));
	json_object_object_add(root, "total", json_object_new_int((int)ncell));
	puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
	json_object_put(root);
	for (size_t i = 0; i < pods.n; i++) {
		if (nsfd[i] >= 0)
			close(nsfd[i]);
		free(label[i]);
	}
	for (size_t i = 0; i < svcs.n; i++)
		free(svcs.v[i].name);
	free(svcs.v);
	free(nsfd);
	free(label);
	free(cells);
	free(pfd);
	free(idx);
	lab_pods_free(&pods);
	return 0;
}
