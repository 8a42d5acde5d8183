/* podserver: the lab's pod workload, a whoami-style server (see podserver.h).
 *
 * One thread, one epoll set: listeners (TCP/SCTP), UDP sockets, client connections and a
 * signalfd for SIGTERM/SIGINT.  HTTP/1.x with keep-alive and pipelining (RFC 9112: a
 * request ends at the empty line, a body is framed by Content-Length; HTTP/1.0 closes
 * unless it asks for keep-alive).  Every buffer is bounded: a request head larger than
 * HEAD_MAX is answered with 431 and the connection closed, a connection stops reading
 * while OUT_MAX bytes of responses are unsent, and connections idle for the idle timeout
 * (60 s) are closed, oldest first, from a list kept in activity order. */
#include "lab/podserver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "model/model.h"

#define HEAD_MAX 8192	     /* request line + headers */
#define OUT_MAX (256 * 1024) /* unsent response bytes before reading pauses */
#define MAX_CONNS 8192
#define MAX_LISTEN 64
#define IPS_REFRESH_MS 2000

enum ev_type { EV_LISTEN, EV_UDP, EV_CONN, EV_SIGNAL };

struct ev {
	enum ev_type type;
};

struct listener {
	struct ev ev;
	int fd;
	enum proto proto;
	uint16_t port;
};

struct conn {
	struct ev ev;
	int fd;
	char peer[IP_STRLEN + 8];
	char head[HEAD_MAX];
	size_t hlen;
	size_t skip; /* request body bytes still to discard */
	char *out;
	size_t olen, ooff, ocap;
	bool close_after; /* close once out is flushed */
	bool want_out;	  /* EPOLLOUT registered */
	bool paused;	  /* EPOLLIN off while out is full */
	monotime_t last;
	struct conn *prev, *next; /* activity order, oldest first */
};

struct server {
	const char *pod_ns, *pod_name, *node;
	int ep;
	struct ev sig_ev;
	int sigfd;
	size_t nlisten;
	struct listener listen[MAX_LISTEN];
	struct conn *head, *tail; /* activity list */
	size_t nconns;
	monotime_t idle_ns;
	char ips[512]; /* "IP: a\nIP: b\n" */
	monotime_t ips_at;
	bool stop;
};

static const char *pname(enum proto p)
{
	return p == PROTO_UDP ? "UDP" : p == PROTO_SCTP ? "SCTP" : "TCP";
}

/* ---- addresses ---- */

static void fmt_peer(const struct sockaddr_storage *ss, char *buf, size_t size)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		port = ntohs(in->sin_port);
		snprintf(buf, size, "%s:%u", ip, port);
		return;
	}
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
	port = ntohs(in6->sin6_port);
	if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
		/* a dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d */
		inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], ip, sizeof(ip));
		snprintf(buf, size, "%s:%u", ip, port);
		return;
	}
	inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
	snprintf(buf, size, "[%s]:%u", ip, port);
}

/* The pod's own addresses (loopback and link-local left out), re-read now and then
 * because the server may start before the last address settles. */
static const char *pod_ips(struct server *s)
{
	monotime_t now = monotime_now();
	if (s->ips_at && now - s->ips_at < MONO_MS(IPS_REFRESH_MS))
		return s->ips;
	s->ips_at = now;
	s->ips[0] = 0;
	struct ifaddrs *ifa = NULL;
	if (getifaddrs(&ifa))
		return s->ips;
	size_t n = 0;
	for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
		if (!i->ifa_addr)
			continue;
		char ip[INET6_ADDRSTRLEN];
		if (i->ifa_addr->sa_family == AF_INET) {
			const struct sockaddr_in *in = (const struct sockaddr_in *)i->ifa_addr;
			if ((ntohl(in->sin_addr.s_addr) >> 24) == 127)
				continue;
			inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		} else if (i->ifa_addr->sa_family == AF_INET6) {
			const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)i->ifa_addr;
			if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
			    IN6_IS_ADDR_LINKLOCAL(&in6->sin6_addr))
				continue;
			inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		} else {
			continue;
		}
		int w = snprintf(s->ips + n, sizeof(s->ips) - n, "IP: %s\n", ip);
		if (w < 0 || (size_t)w >= sizeof(s->ips) - n)
			break;
		n += (size_t)w;
	}
	freeifaddrs(ifa);
	return s->ips;
}

/* ---- listeners ---- */

/* Bind [::]:port dual-stack, or 0.0.0.0:port when the namespace has no IPv6. */
static int open_socket(enum proto p, uint16_t port)
{
	int type = p == PROTO_UDP ? SOCK_DGRAM : SOCK_STREAM;
	int ipproto = p == PROTO_UDP ? IPPROTO_UDP : p == PROTO_SCTP ? IPPROTO_SCTP : IPPROTO_TCP;
	int one = 1, zero = 0;
	int fd = socket(AF_INET6, type | SOCK_NONBLOCK | SOCK_CLOEXEC, ipproto);
	if (fd >= 0) {
		struct sockaddr_in6 a6 = {.sin6_family = AF_INET6,
					  .sin6_port = htons(port),
					  .sin6_addr = IN6ADDR_ANY_INIT};
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) == 0 &&
		    bind(fd, (struct sockaddr *)&a6, sizeof(a6)) == 0)
			goto bound;
		int e = errno;
		close(fd);
		if (e == EADDRINUSE || e == EACCES)
			return -e;
	}
	if (fd < 0 && errno == EPROTONOSUPPORT)
		return -EPROTONOSUPPORT;
	fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, ipproto);
	if (fd < 0)
		return -errno;
	struct sockaddr_in a4 = {
	    .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a4, sizeof(a4))) {
		int e = -errno;
		close(fd);
		return e;
	}
bound:
	if (type == SOCK_STREAM && listen(fd, 1024)) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

static int ep_add(struct server *s, int fd, uint32_t events, void *ptr)
{
	struct epoll_event e = {.events = events, .data.ptr = ptr};
	return epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &e) ? -errno : 0;
}

static int ep_mod(struct server *s, int fd, uint32_t events, void *ptr)
{
	struct epoll_event e = {.events = events, .data.ptr = ptr};
	return epoll_ctl(s->ep, EPOLL_CTL_MOD, fd, &e) ? -errno : 0;
}

/* "80/tcp,53/udp,9000" (protocol defaults to TCP). */
static int parse_listen(struct server *s, const char *spec)
{
	char *dup = xstrdup(spec), *save = NULL;
	int err = 0;
	for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		if (!*tok)
			continue;
		char *slash = strchr(tok, '/');
		enum proto p = PROTO_TCP;
		if (slash) {
			*slash = 0;
			if (!strcasecmp(slash + 1, "tcp")) {
				p = PROTO_TCP;
			} else if (!strcasecmp(slash + 1, "udp")) {
				p = PROTO_UDP;
			} else if (!strcasecmp(slash + 1, "sctp")) {
				p = PROTO_SCTP;
			} else {
				log_error("podserver", "bad protocol '%s' in --listen", slash + 1);
				err = -EINVAL;
				break;
			}
		}
		char *end;
		long port = strtol(tok, &end, 10);
		if (*end || port < 1 || port > 65535) {
			log_error("podserver", "bad port '%s' in --listen", tok);
			err = -EINVAL;
			break;
		}
		bool dup_entry = false;
		for (size_t i = 0; i < s->nlisten; i++)
			if (s->listen[i].port == port && s->listen[i].proto == p)
				dup_entry = true;
		if (dup_entry)
			continue;
		if (s->nlisten == MAX_LISTEN) {
			log_error("podserver", "too many ports (max %d)", MAX_LISTEN);
			err = -E2BIG;
			break;
		}
		struct listener *l = &s->listen[s->nlisten++];
		l->proto = p;
		l->port = (uint16_t)port;
		l->fd = -1;
		l->ev.type = p == PROTO_UDP ? EV_UDP : EV_LISTEN;
	}
	free(dup);
	return err;
}

/* ---- connections ---- */

static void list_unlink(struct server *s, struct conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		s->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		s->tail = c->prev;
	c->prev = c->next = NULL;
}

static void list_append(struct server *s, struct conn *c)
{
	c->prev = s->tail;
	c->next = NULL;
	if (s->tail)
		s->tail->next = c;
	else
		s->head = c;
	s->tail = c;
}

static void touch(struct server *s, struct conn *c)
{
	c->last = monotime_now();
	if (s->tail != c) {
		list_unlink(s, c);
		list_append(s, c);
	}
}

static void conn_close(struct server *s, struct conn *c)
{
	list_unlink(s, c);
	close(c->fd); /* also drops it from the epoll set */
	free(c->out);
	free(c);
	s->nconns--;
}

static void out_append(struct conn *c, const char *data, size_t len)
{
	if (c->olen + len > c->ocap) {
		size_t cap = c->ocap ? c->ocap : 4096;
		while (cap < c->olen + len)
			cap *= 2;
		c->out = xrealloc(c->out, cap);
		c->ocap = cap;
	}
	memcpy(c->out + c->olen, data, len);
	c->olen += len;
}

static void respond(struct conn *c, int code, const char *reason, const char *body, size_t blen,
		    bool head_only, bool keep)
{
	char hdr[256];
	int n = snprintf(hdr, sizeof(hdr),
			 "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
			 "Content-Length: %zu\r\nConnection: %s\r\n\r\n",
			 code, reason, blen, keep ? "keep-alive" : "close");
	out_append(c, hdr, (size_t)n);
	if (!head_only)
		out_append(c, body, blen);
	if (!keep)
		c->close_after = true;
}

static bool header_is(const char *line, size_t len, const char *name, const char **val,
		      size_t *vlen)
{
	size_t nl = strlen(name);
	if (len <= nl || strncasecmp(line, name, nl) || line[nl] != ':')
		return false;
	const char *v = line + nl + 1;
	const char *end = line + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		end--;
	*val = v;
	*vlen = (size_t)(end - v);
	return true;
}

static bool token_in(const char *v, size_t vlen, const char *tok)
{
	size_t tl = strlen(tok);
	for (size_t i = 0; i + tl <= vlen; i++)
		if (!strncasecmp(v + i, tok, tl) &&
		    (i == 0 || v[i - 1] == ',' || v[i - 1] == ' ') &&
		    (i + tl == vlen || v[i + tl] == ',' || v[i + tl] == ' '))
			return true;
	return false;
}

/* Answer one complete request head of `hl` bytes (ending with the empty line).
 * Returns false when the connection must not read further requests. */
static bool handle_request(struct server *s, struct conn *c, size_t hl)
{
	char *req = c->head;
	/* request line */
	char *eol = memchr(req, '\n', hl);
	size_t rl = (size_t)(eol - req);
	if (rl && req[rl - 1] == '\r')
		rl--;
	bool http10 = rl >= 8 && !memcmp(req + rl - 8, "HTTP/1.0", 8);
	bool head_only = rl >= 5 && !memcmp(req, "HEAD ", 5);
	bool keep = !http10, chunked = false, bad = false;
	unsigned long long clen = 0;
	if (rl < 5 || !memchr(req, ' ', rl))
		bad = true;

	char *line = eol + 1;
	char *end = req + hl;
	while (line < end) {
		char *nl = memchr(line, '\n', (size_t)(end - line));
		size_t len = nl ? (size_t)(nl - line) : (size_t)(end - line);
		const char *v;
		size_t vlen;
		if (header_is(line, len, "Connection", &v, &vlen)) {
			if (token_in(v, vlen, "close"))
				keep = false;
			else if (token_in(v, vlen, "keep-alive"))
				keep = true;
		} else if (header_is(line, len, "Content-Length", &v, &vlen)) {
			char num[24];
			if (vlen == 0 || vlen >= sizeof(num)) {
				bad = true;
			} else {
				memcpy(num, v, vlen);
				num[vlen] = 0;
				char *e;
				clen = strtoull(num, &e, 10);
				if (*e)
					bad = true;
			}
		} else if (header_is(line, len, "Transfer-Encoding", &v, &vlen)) {
			chunked = true;
		}
		if (!nl)
			break;
		line = nl + 1;
	}

	if (bad) {
		static const char msg[] = "bad request\n";
		respond(c, 400, "Bad Request", msg, sizeof(msg) - 1, false, false);
		return false;
	}

	char *body = xasprintf("Hostname: %s\n%sRemoteAddr: %s\nNode: %s\nNamespace: %s\n",
			       s->pod_name, pod_ips(s), c->peer, s->node ? s->node : "", s->pod_ns);
	/* echo the request head, as whoami does, without the CRs */
	size_t blen = strlen(body);
	body = xrealloc(body, blen + hl + 1);
	for (size_t i = 0; i < hl; i++)
		if (req[i] != '\r')
			body[blen++] = req[i];
	/* the head ends with an empty line; keep a single trailing newline */
	while (blen >= 2 && body[blen - 1] == '\n' && body[blen - 2] == '\n')
		blen--;
	body[blen] = 0;
	/* a chunked request body cannot be skipped without parsing it: answer and close */
	if (chunked)
		keep = false;
	respond(c, 200, "OK", body, blen, head_only, keep);
	free(body);
	c->skip = clen;
	return keep;
}

static int conn_flush(struct server *s, struct conn *c)
{
	while (c->ooff < c->olen) {
		ssize_t w = send(c->fd, c->out + c->ooff, c->olen - c->ooff, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			return -errno;
		}
		c->ooff += (size_t)w;
	}
	if (c->ooff == c->olen) {
		c->ooff = c->olen = 0;
		if (c->close_after)
			return -ECONNRESET; /* done: close */
	}
	bool want_out = c->olen > 0;
	bool paused = c->olen >= OUT_MAX || c->close_after;
	if (want_out != c->want_out || paused != c->paused) {
		uint32_t evs = (paused ? 0 : EPOLLIN | EPOLLRDHUP) | (want_out ? EPOLLOUT : 0);
		ep_mod(s, c->fd, evs, c);
		c->want_out = want_out;
		c->paused = paused;
	}
	return 0;
}

/* Take complete requests out of c->head. */
static void conn_parse(struct server *s, struct conn *c)
{
	while (c->hlen && !c->close_after && c->olen < OUT_MAX) {
		if (c->skip) {
			size_t n = c->skip < c->hlen ? (size_t)c->skip : c->hlen;
			memmove(c->head, c->head + n, c->hlen - n);
			c->hlen -= n;
			c->skip -= n;
			continue;
		}
		/* tolerate stray CRLFs between requests (RFC 9112 2.2) */
		size_t lead = 0;
		while (lead < c->hlen && (c->head[lead] == '\r' || c->head[lead] == '\n'))
			lead++;
		if (lead) {
			memmove(c->head, c->head + lead, c->hlen - lead);
			c->hlen -= lead;
			continue;
		}
		size_t hl = 0;
		for (size_t i = 0; i + 1 < c->hlen; i++) {
			if (c->head[i] == '\n' && c->head[i + 1] == '\n') {
				hl = i + 2;
				break;
			}
			if (i + 3 < c->hlen && !memcmp(c->head + i, "\r\n\r\n", 4)) {
				hl = i + 4;
				break;
			}
		}
		if (!hl) {
			if (c->hlen == sizeof(c->head)) {
				static const char msg[] = "request header fields too large\n";
				respond(c, 431, "Request Header Fields Too Large", msg,
					sizeof(msg) - 1, false, false);
			}
			return;
		}
		handle_request(s, c, hl);
		memmove(c->head, c->head + hl, c->hlen - hl);
		c->hlen -= hl;
	}
}

static void conn_event(struct server *s, struct conn *c, uint32_t events)
{
	(void)events;
	touch(s, c);
	/* flush first: a drained output buffer lets buffered pipelined requests go on */
	if (conn_flush(s, c) < 0) {
		conn_close(s, c);
		return;
	}
	for (int rounds = 0; rounds < 16; rounds++) {
		conn_parse(s, c);
		if (c->close_after || c->olen >= OUT_MAX || c->hlen == sizeof(c->head))
			break;
		ssize_t r = recv(c->fd, c->head + c->hlen, sizeof(c->head) - c->hlen, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			break;
		if (r <= 0) {
			/* peer closed (or error): send what is answered, then close */
			c->close_after = true;
			break;
		}
		c->hlen += (size_t)r;
	}
	if (conn_flush(s, c) < 0)
		conn_close(s, c);
}

static void accept_all(struct server *s, struct listener *l)
{
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN)
				log_warn("podserver", "accept on %u: %s", l->port, strerror(errno));
			return;
		}
		if (s->nconns >= MAX_CONNS) {
			close(fd);
			continue;
		}
		struct conn *c = xcalloc(1, sizeof(*c));
		c->ev.type = EV_CONN;
		c->fd = fd;
		fmt_peer(&ss, c->peer, sizeof(c->peer));
		c->last = monotime_now();
		list_append(s, c);
		s->nconns++;
		if (ep_add(s, fd, EPOLLIN | EPOLLRDHUP, c)) {
			conn_close(s, c);
			continue;
		}
	}
}

static void udp_event(struct server *s, struct listener *l)
{
	char buf[2048];
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		ssize_t r = recvfrom(l->fd, buf, sizeof(buf), 0, (struct sockaddr *)&ss, &sl);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		char peer[IP_STRLEN + 8];
		fmt_peer(&ss, peer, sizeof(peer));
		char reply[512];
		int n = snprintf(reply, sizeof(reply), "Hostname: %s\nRemoteAddr: %s\n",
				 s->pod_name, peer);
		sendto(l->fd, reply, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&ss, sl);
	}
}

static void expire_idle(struct server *s)
{
	monotime_t now = monotime_now();
	while (s->head && now - s->head->last > s->idle_ns)
		conn_close(s, s->head);
}

/* ---- main ---- */

static void usage(FILE *f)
{
	fprintf(f, "usage: twill lab podserver --pod NS/NAME [--node NODE] "
		   "[--listen PORT/PROTO,...] [--ready-fd N] [--idle-timeout SECONDS]\n"
		   "  answers HTTP over TCP (and SCTP) and UDP datagrams with who it is and who\n"
		   "  asked; default --listen 80/tcp\n");
}

int lab_podserver_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"pod", required_argument, NULL, 'p'},
	    {"node", required_argument, NULL, 'n'},
	    {"listen", required_argument, NULL, 'l'},
	    {"ready-fd", required_argument, NULL, 'r'},
	    {"idle-timeout", required_argument, NULL, 'i'},
	    {"log-level", required_argument, NULL, 'L'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct server *s = xcalloc(1, sizeof(*s));
	char *pod = NULL, *pod_copy = NULL;
	int ready_fd = -1, rc = 1;
	long idle = 60;
	s->ep = s->sigfd = -1;
	optind = 1;
	int o;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'p':
			pod = optarg;
			break;
		case 'n':
			s->node = optarg;
			break;
		case 'l':
			if (parse_listen(s, optarg))
				goto out;
			break;
		case 'r':
			ready_fd = atoi(optarg);
			break;
		case 'i':
			idle = atol(optarg);
			break;
		case 'L':
			log_set_level(log_level_parse(optarg, LOG_INFO));
			break;
		case 'h':
			usage(stdout);
			rc = 0;
			goto out;
		default:
			usage(stderr);
			rc = 2;
			goto out;
		}
	}
	if (!pod || optind < argc) {
		usage(stderr);
		rc = 2;
		goto out;
	}
	/* a copy: argv stays intact in /proc/<pid>/cmdline, where the kubelet checks it */
	pod = pod_copy = xstrdup(pod);
	char *slash = strchr(pod, '/');
	if (slash) {
		*slash = 0;
		s->pod_ns = pod;
		s->pod_name = slash + 1;
	} else {
		s->pod_ns = "default";
		s->pod_name = pod;
	}
	if (idle < 1)
		idle = 1;
	s->idle_ns = (monotime_t)idle * 1000000000LL;
	if (!s->nlisten)
		parse_listen(s, "80/tcp");

	signal(SIGPIPE, SIG_IGN);
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	s->sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	s->ep = epoll_create1(EPOLL_CLOEXEC);
	if (s->sigfd < 0 || s->ep < 0) {
		log_error("podserver", "epoll/signalfd: %s", strerror(errno));
		goto out;
	}
	s->sig_ev.type = EV_SIGNAL;
	ep_add(s, s->sigfd, EPOLLIN, &s->sig_ev);

	char listening[512] = "";
	size_t ln = 0;
	for (size_t i = 0; i < s->nlisten; i++) {
		struct listener *l = &s->listen[i];
		int fd = open_socket(l->proto, l->port);
		if (fd == -EPROTONOSUPPORT && l->proto == PROTO_SCTP) {
			log_warn("podserver", "%u/SCTP skipped: the kernel has no SCTP", l->port);
			continue;
		}
		if (fd < 0) {
			log_error("podserver", "cannot listen on %u/%s: %s", l->port,
				  pname(l->proto), strerror(-fd));
			goto out;
		}
		l->fd = fd;
		ep_add(s, fd, EPOLLIN, l);
		int w = snprintf(listening + ln, sizeof(listening) - ln, "%s%u/%s", ln ? "," : "",
				 l->port, pname(l->proto));
		if (w > 0 && (size_t)w < sizeof(listening) - ln)
			ln += (size_t)w;
	}
	log_info("podserver", "pod %s/%s on node %s listening on %s", s->pod_ns, s->pod_name,
		 s->node ? s->node : "?", listening);
	if (ready_fd >= 0) {
		static const char ready[] = "ready\n";
		if (write(ready_fd, ready, sizeof(ready) - 1) < 0)
			log_warn("podserver", "ready-fd %d: %s", ready_fd, strerror(errno));
		close(ready_fd);
		ready_fd = -1;
	}

	while (!s->stop) {
		struct epoll_event evs[64];
		int n = epoll_wait(s->ep, evs, ARRAY_SIZE(evs), 1000);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error("podserver", "epoll_wait: %s", strerror(errno));
			goto out;
		}
		for (int i = 0; i < n; i++) {
			struct ev *e = evs[i].data.ptr;
			switch (e->type) {
			case EV_SIGNAL: {
				struct signalfd_siginfo si;
				if (read(s->sigfd, &si, sizeof(si)) == sizeof(si))
					log_info("podserver", "signal %u: exiting", si.ssi_signo);
				s->stop = true;
				break;
			}
			case EV_LISTEN:
				accept_all(s, (struct listener *)e);
				break;
			case EV_UDP:
				udp_event(s, (struct listener *)e);
				break;
			case EV_CONN:
				conn_event(s, (struct conn *)e, evs[i].events);
				break;
			}
		}
		expire_idle(s);
	}
	rc = 0;
out:
	while (s->head)
		conn_close(s, s->head);
	for (size_t i = 0; i < s->nlisten; i++)
		if (s->listen[i].fd >= 0)
			close(s->listen[i].fd);
	if (s->ep >= 0)
		close(s->ep);
	if (s->sigfd >= 0)
		close(s->sigfd);
	if (ready_fd >= 0)
		close(ready_fd);
	free(s);
	free(pod_copy);
	return rc;
}
