/* healthcheck: kube-proxy's health-check node ports for externalTrafficPolicy: Local
 * Services (pkg/proxy/healthcheck/service_health.go): one non-blocking HTTP listener per
 * spec.healthCheckNodePort, answering 200 when this node has local endpoints for the
 * Service and 503 when it has none, so a cloud load balancer skips nodes that would drop.
 * The body is kube-proxy's: {"service":{"namespace":..,"name":..},"localEndpoints":N,
 * "serviceProxyHealthy":true}.  Requests are not parsed beyond the end of the headers: every
 * path gets the same answer, as in kube-proxy. */
#include "proxy/healthcheck.h"

#include <errno.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

#define SUB "healthcheck"
#define HC_MAX_CLIENTS 256
#define HC_CLIENT_TIMEOUT_MS 5000
#define HC_REQ_MAX 4096

/* ---- what to serve ---- */

struct collect_ctx {
	const struct svc_planner *sp;
	size_t n;
	struct hc_service *v;
};

static unsigned local_count(const struct svc_planner *sp, const char *key)
{
	const struct svc_entries *e = sp ? svc_planner_get(sp, key) : NULL;
	unsigned best = 0;
	for (size_t i = 0; e && i < e->n; i++) {
		const struct svc_entry *en = &e->v[i];
		if (en->scope == SVC_SCOPE_CLUSTER_IP || en->verdict != SVC_FORWARD ||
		    !str_has_suffix(en->group, "/local"))
			continue;
		/* kube-proxy counts endpoints, not ports: the largest per-port set */
		if (en->nbackends > best)
			best = (unsigned)en->nbackends;
	}
	return best;
}

static int collect_cb(const struct object *o, void *arg)
{
	struct collect_ctx *c = arg;
	const struct service_obj *s = &o->svc;
	if (!s->etp_local || !s->health_check_node_port)
		return 0;
	const char *ns = o->meta.ns ? o->meta.ns : "";
	char *key = xasprintf("%s/%s", ns, o->meta.name);
	c->v = xrealloc(c->v, (c->n + 1) * sizeof(*c->v));
	struct hc_service *h = &c->v[c->n++];
	h->ns = xstrdup(*ns ? ns : "default");
	h->name = xstrdup(o->meta.name);
	h->port = s->health_check_node_port;
	h->local_endpoints = local_count(c->sp, key);
	free(key);
	return 0;
}

size_t hc_services_collect(const struct store *s, const struct svc_planner *sp,
			   struct hc_service **out)
{
	struct collect_ctx c = {.sp = sp};
	store_foreach(s, KIND_SERVICE, collect_cb, &c);
	*out = c.v;
	return c.n;
}

void hc_services_free(struct hc_service *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].ns);
		free(v[i].name);
	}
	free(v);
}

char *hc_response(const struct hc_service *svc)
{
	json_object *j = json_object_new_object(), *sv = json_object_new_object();
	json_object_object_add(sv, "namespace", json_object_new_string(svc->ns));
	json_object_object_add(sv, "name", json_object_new_string(svc->name));
	json_object_object_add(j, "service", sv);
	json_object_object_add(j, "localEndpoints", json_object_new_int64(svc->local_endpoints));
	json_object_object_add(j, "serviceProxyHealthy", json_object_new_boolean(1));
	const char *body = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN |
								 JSON_C_TO_STRING_NOSLASHESCAPE);
	bool ok = svc->local_endpoints > 0;
	char *r = xasprintf("HTTP/1.1 %s\r\n"
			    "Content-Type: application/json\r\n"
			    "X-Content-Type-Options: nosniff\r\n"
			    "X-Load-Balancing-Endpoint-Weight: %u\r\n"
			    "Content-Length: %zu\r\n"
			    "Connection: close\r\n"
			    "\r\n"
			    "%s",
			    ok ? "200 OK" : "503 Service Unavailable", svc->local_endpoints,
			    strlen(body), body);
	json_object_put(j);
	return r;
}

/* ---- the server ---- */

struct hc_listener {
	int fd;
	struct hc_service svc;
};

struct hc_client {
	int fd;
	uint16_t port;
	monotime_t since;
	size_t len;
	char buf[HC_REQ_MAX];
};

struct healthcheck {
	int epfd;
	size_t nl;
	struct hc_listener *l;
	size_t nc;
	struct hc_client *c[HC_MAX_CLIENTS];
};

struct healthcheck *healthcheck_new(int epfd)
{
	struct healthcheck *h = xcalloc(1, sizeof(*h));
	h->epfd = epfd;
	return h;
}

static void ep_del_close(struct healthcheck *h, int fd)
{
	epoll_ctl(h->epfd, EPOLL_CTL_DEL, fd, NULL);
	close(fd);
}

static void client_close(struct healthcheck *h, size_t i)
{
	ep_del_close(h, h->c[i]->fd);
	free(h->c[i]);
	h->c[i] = h->c[--h->nc];
}

void healthcheck_free(struct healthcheck *h)
{
	if (!h)
		return;
	while (h->nc)
		client_close(h, 0);
	for (size_t i = 0; i < h->nl; i++) {
		ep_del_close(h, h->l[i].fd);
		free(h->l[i].svc.ns);
		free(h->l[i].svc.name);
	}
	free(h->l);
	free(h);
}

/* One socket for both families ([::], IPV6_V6ONLY off), so IPv6 nodes are asked too; an
 * IPv4 socket where the kernel has no IPv6. */
static int listen_on(int epfd, uint16_t port)
{
	bool v6 = true;
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 && errno == EAFNOSUPPORT) {
		v6 = false;
		fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	}
	if (fd < 0)
		return -errno;
	int one = 1, zero = 0;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	struct sockaddr_in6 sa6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
	if (v6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
	if ((v6 ? bind(fd, (struct sockaddr *)&sa6, sizeof(sa6))
		: bind(fd, (struct sockaddr *)&sa, sizeof(sa))) < 0 ||
	    listen(fd, 64) < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

int healthcheck_set(struct healthcheck *h, const struct hc_service *v, size_t n, char **err)
{
	int ret = 0;
	if (err)
		*err = NULL;
	/* close listeners whose port is no longer wanted */
	for (size_t i = 0; i < h->nl;) {
		bool keep = false;
		for (size_t k = 0; k < n && !keep; k++)
			keep = v[k].port == h->l[i].svc.port;
		if (keep) {
			i++;
			continue;
		}
		log_info(SUB, "closing health-check port %u (%s/%s)", h->l[i].svc.port,
			 h->l[i].svc.ns, h->l[i].svc.name);
		ep_del_close(h, h->l[i].fd);
		free(h->l[i].svc.ns);
		free(h->l[i].svc.name);
		h->l[i] = h->l[--h->nl];
	}
	for (size_t k = 0; k < n; k++) {
		struct hc_listener *l = NULL;
		for (size_t i = 0; i < h->nl && !l; i++)
			if (h->l[i].svc.port == v[k].port)
				l = &h->l[i];
		if (!l) {
			int fd = listen_on(h->epfd, v[k].port);
			if (fd < 0) {
				if (!ret) {
					ret = fd;
					if (err)
						*err = xasprintf(
						    "health-check port %u of %s/%s: %s", v[k].port,
						    v[k].ns, v[k].name, strerror(-fd));
				}
				continue;
			}
			log_info(SUB, "health-check port %u for %s/%s", v[k].port, v[k].ns,
				 v[k].name);
			h->l = xrealloc(h->l, (h->nl + 1) * sizeof(*h->l));
			l = &h->l[h->nl++];
			l->fd = fd;
			l->svc.ns = l->svc.name = NULL;
		}
		free(l->svc.ns);
		free(l->svc.name);
		l->svc = v[k];
		l->svc.ns = xstrdup(v[k].ns);
		l->svc.name = xstrdup(v[k].name);
	}
	return ret;
}

static void client_answer(struct healthcheck *h, size_t i)
{
	struct hc_client *c = h->c[i];
	const struct hc_listener *l = NULL;
	for (size_t k = 0; k < h->nl && !l; k++)
		if (h->l[k].svc.port == c->port)
			l = &h->l[k];
	if (l) {
		char *resp = hc_response(&l->svc);
		/* a few hundred bytes into a fresh socket's buffer: one send suffices */
		if (send(c->fd, resp, strlen(resp), MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			log_debug(SUB, "answering on port %u: %s", c->port, strerror(errno));
		free(resp);
	}
	client_close(h, i);
}

bool healthcheck_handle(struct healthcheck *h, int fd)
{
	if (!h)
		return false;
	for (size_t i = 0; i < h->nl; i++) {
		if (h->l[i].fd != fd)
			continue;
		for (int k = 0; k < 16; k++) {
			int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (cfd < 0)
				break;
			if (h->nc == HC_MAX_CLIENTS)
				client_close(h, 0); /* the oldest-ish: bounded memory */
			struct epoll_event ev = {.events = EPOLLIN, .data.fd = cfd};
			if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, cfd, &ev) < 0) {
				close(cfd);
				continue;
			}
			struct hc_client *c = xcalloc(1, sizeof(*c));
			c->fd = cfd;
			c->port = h->l[i].svc.port;
			c->since = monotime_now();
			h->c[h->nc++] = c;
		}
		return true;
	}
	for (size_t i = 0; i < h->nc; i++) {
		struct hc_client *c = h->c[i];
		if (c->fd != fd)
			continue;
		ssize_t r = recv(fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return true;
		if (r <= 0) {
			client_close(h, i);
			return true;
		}
		c->len += (size_t)r;
		c->buf[c->len] = '\0';
		if (strstr(c->buf, "\r\n\r\n") || strstr(c->buf, "\n\n") ||
		    c->len == sizeof(c->buf) - 1)
			client_answer(h, i);
		return true;
	}
	return false;
}

void healthcheck_tick(struct healthcheck *h)
{
	if (!h)
		return;
	monotime_t now = monotime_now();
	for (size_t i = 0; i < h->nc;) {
		if (now - h->c[i]->since > MONO_MS(HC_CLIENT_TIMEOUT_MS))
			client_close(h, i);
		else
			i++;
	}
}

size_t healthcheck_nports(const struct healthcheck *h)
{
	return h ? h->nl : 0;
}
