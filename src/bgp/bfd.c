/* bfd: RFC 5880 / 5881 single-hop asynchronous BFD.  See bfd.h. */
#include "bgp/bfd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

#define SUB "bfd"
#define SLOW_TX_US 1000000u /* RFC 5880 §6.8.3: at least 1 s while not Up */
#define SPORT_MIN 49152	    /* RFC 5881 §4: source ports 49152-65535 */
#define RX_BUDGET 256	    /* packets per socket per dispatch */

static const char *state_names[] = {"AdminDown", "Down", "Init", "Up"};
static const char *diag_names[] = {"None",
				   "Control Detection Time Expired",
				   "Echo Function Failed",
				   "Neighbor Signaled Session Down",
				   "Forwarding Plane Reset",
				   "Path Down",
				   "Concatenated Path Down",
				   "Administratively Down",
				   "Reverse Concatenated Path Down"};

const char *bfd_state_name(enum bfd_state s)
{
	return (unsigned)s < 4 ? state_names[s] : "?";
}

const char *bfd_diag_name(uint8_t diag)
{
	return diag < ARRAY_SIZE(diag_names) ? diag_names[diag] : "Reserved";
}

/* ------------------------------------------------------------- codec ---- */

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

size_t bfd_pkt_build(uint8_t *out, size_t size, const struct bfd_pkt *p)
{
	if (size < BFD_PKT_LEN)
		return 0;
	out[0] = (uint8_t)(1 << 5 | (p->diag & 0x1f));
	out[1] = (uint8_t)((p->state & 3) << 6 | p->poll << 5 | p->final << 4 | p->cpi << 3 |
			   p->demand << 1);
	out[2] = p->mult;
	out[3] = BFD_PKT_LEN;
	put32(out + 4, p->my_disc);
	put32(out + 8, p->your_disc);
	put32(out + 12, p->min_tx);
	put32(out + 16, p->min_rx);
	put32(out + 20, p->min_echo_rx);
	return BFD_PKT_LEN;
}

static int bad(const char **why, const char *w)
{
	if (why)
		*why = w;
	return -EINVAL;
}

int bfd_pkt_parse(const uint8_t *buf, size_t len, struct bfd_pkt *p, const char **why)
{
	memset(p, 0, sizeof(*p));
	if (len < BFD_PKT_LEN)
		return bad(why, "shorter than 24 bytes");
	p->version = buf[0] >> 5;
	p->diag = buf[0] & 0x1f;
	p->state = (enum bfd_state)(buf[1] >> 6);
	p->poll = buf[1] & 0x20;
	p->final = buf[1] & 0x10;
	p->cpi = buf[1] & 0x08;
	p->auth = buf[1] & 0x04;
	p->demand = buf[1] & 0x02;
	p->multipoint = buf[1] & 0x01;
	p->mult = buf[2];
	p->len = buf[3];
	p->my_disc = get32(buf + 4);
	p->your_disc = get32(buf + 8);
	p->min_tx = get32(buf + 12);
	p->min_rx = get32(buf + 16);
	p->min_echo_rx = get32(buf + 20);
	/* RFC 5880 §6.8.6, in its order */
	if (p->version != 1)
		return bad(why, "version is not 1");
	if (p->len < (p->auth ? 26 : BFD_PKT_LEN))
		return bad(why, "length field too small");
	if (p->len > len)
		return bad(why, "length field larger than the payload");
	if (!p->mult)
		return bad(why, "detect multiplier is zero");
	if (p->multipoint)
		return bad(why, "multipoint bit set");
	if (!p->my_disc)
		return bad(why, "my discriminator is zero");
	/* §4.1: a packet MUST NOT have both */
	if (p->poll && p->final)
		return bad(why, "poll and final both set");
	return 0;
}

/* ------------------------------------------------------------ sessions ---- */

struct rxsock {
	struct bfd *bfd;
	int fd;
	int af;
};

struct bfd_sess {
	struct bfd *bfd;
	struct bfd_sess *next;
	struct bfd_sess_cfg cfg;
	void *arg;
	int fd;
	uint16_t sport;
	enum bfd_state state, rstate;
	uint8_t diag, rdiag;
	uint32_t ldisc, rdisc;
	uint32_t cfg_tx, cfg_rx; /* configured, microseconds */
	uint32_t des_tx, req_rx; /* what we advertise (bfd.DesiredMinTxInterval, ...) */
	uint32_t act_tx;	 /* the DesiredMinTx our sending uses (old one during a poll) */
	uint32_t det_rx;	 /* the RequiredMinRx our detection time uses */
	uint32_t r_min_rx, r_des_tx;
	uint8_t r_mult;
	bool poll;	 /* a Poll Sequence is running */
	bool want_final; /* answer a Poll at once */
	monotime_t tx_at, detect_at, since;
	uint64_t flaps, rx, tx;
};

struct bfd {
	struct bfd_cfg cfg;
	bfd_cb cb;
	void *arg;
	int epfd;
	struct rxsock rx[2];
	struct bfd_sess *sessions;
	uint64_t dropped;
	uint16_t next_port;
};

static uint32_t rnd32(void)
{
	uint32_t v;
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
		v = (uint32_t)random();
	return v;
}

static void sess_send(struct bfd_sess *s, bool final, enum bfd_state st, uint8_t diag)
{
	struct bfd_pkt p = {
	    .diag = diag,
	    .state = st,
	    .poll = s->poll && !final,
	    .final = final,
	    .mult = s->cfg.mult,
	    .my_disc = s->ldisc,
	    .your_disc = s->rdisc,
	    .min_tx = s->des_tx,
	    .min_rx = s->req_rx,
	};
	uint8_t buf[BFD_PKT_LEN];
	size_t n = bfd_pkt_build(buf, sizeof(buf), &p);
	struct sockaddr_storage ss;
	socklen_t sl = ip_sockaddr(&s->cfg.peer, s->bfd->cfg.port, &ss);
	if (sendto(s->fd, buf, n, MSG_DONTWAIT, (struct sockaddr *)&ss, sl) == (ssize_t)n)
		s->tx++;
}

/* The periodic interval (§6.8.7), 0 when the neighbour wants none (RemoteMinRx 0). */
static uint32_t tx_interval(const struct bfd_sess *s)
{
	if (!s->r_min_rx)
		return 0;
	return s->act_tx > s->r_min_rx ? s->act_tx : s->r_min_rx;
}

/* The next transmission after now: 75-100 % of the interval (75-90 % with multiplier 1). */
static void tx_schedule(struct bfd_sess *s, monotime_t now)
{
	uint32_t iv = tx_interval(s);
	if (!iv) {
		s->tx_at = 0;
		return;
	}
	uint32_t span = s->cfg.mult == 1 ? 16 : 26; /* 75..90 or 75..100 percent */
	uint64_t us = (uint64_t)iv * (75 + rnd32() % span) / 100;
	s->tx_at = now + (monotime_t)us * 1000;
}

static uint64_t detect_us(const struct bfd_sess *s)
{
	uint32_t agreed = s->det_rx > s->r_des_tx ? s->det_rx : s->r_des_tx;
	return (uint64_t)s->r_mult * agreed;
}

/* bfd.DesiredMinTxInterval and bfd.RequiredMinRxInterval for the current state; in Up, a
 * change starts a Poll Sequence and an increase of TX (decrease of RX) waits for it. */
static void sess_params(struct bfd_sess *s)
{
	bool up = s->state == BFD_UP;
	uint32_t tx = up ? s->cfg_tx : (s->cfg_tx > SLOW_TX_US ? s->cfg_tx : SLOW_TX_US);
	uint32_t rx = s->cfg_rx;
	if (tx == s->des_tx && rx == s->req_rx)
		return;
	if (!up || tx < s->act_tx)
		s->act_tx = tx;
	if (!up || rx > s->det_rx)
		s->det_rx = rx;
	s->des_tx = tx;
	s->req_rx = rx;
	s->poll = up;
}

static void sess_set_state(struct bfd_sess *s, enum bfd_state st, uint8_t diag, bool remote_admin)
{
	enum bfd_state old = s->state;
	if (old == st)
		return;
	s->state = st;
	s->diag = diag;
	s->since = monotime_now();
	if (old == BFD_UP)
		s->flaps++;
	if (st != BFD_UP)
		s->poll = false;
	sess_params(s);
	char ab[IP_STRLEN];
	log_info(SUB, "session %s: %s -> %s (%s)", ip_fmt(&s->cfg.peer, ab), bfd_state_name(old),
		 bfd_state_name(st), bfd_diag_name(diag));
	/* tell the neighbour at once, then carry on with the periodic timer */
	sess_send(s, false, s->state, s->diag);
	monotime_t now = monotime_now();
	if (!s->tx_at || s->tx_at > now + (monotime_t)tx_interval(s) * 1000)
		tx_schedule(s, now);
	if (s->bfd->cb)
		s->bfd->cb(s->bfd->arg, s, s->arg, old, st, diag, remote_admin);
}

static struct bfd_sess *sess_by_disc(struct bfd *b, uint32_t d)
{
	for (struct bfd_sess *s = b->sessions; s; s = s->next)
		if (s->ldisc == d)
			return s;
	return NULL;
}

static struct bfd_sess *sess_by_peer(struct bfd *b, const struct ipaddr *a)
{
	for (struct bfd_sess *s = b->sessions; s; s = s->next)
		if (ip_eq(&s->cfg.peer, a))
			return s;
	return NULL;
}

/* RFC 5880 §6.8.6 for a packet that passed bfd_pkt_parse, from `from`. */
static void sess_input(struct bfd *b, const struct bfd_pkt *p, const struct ipaddr *from)
{
	struct bfd_sess *s;
	if (p->your_disc) {
		s = sess_by_disc(b, p->your_disc);
		if (s && !ip_eq(&s->cfg.peer, from))
			s = NULL; /* single hop: the discriminator must come from its neighbour */
	} else {
		s = p->state == BFD_DOWN || p->state == BFD_ADMIN_DOWN ? sess_by_peer(b, from)
								       : NULL;
	}
	if (!s || p->auth) { /* no session, or authentication we do not use */
		b->dropped++;
		return;
	}
	monotime_t now = monotime_now();
	s->rx++;
	s->rdisc = p->my_disc;
	s->rstate = p->state;
	s->rdiag = p->diag;
	uint32_t old_min_rx = s->r_min_rx;
	s->r_min_rx = p->min_rx;
	s->r_des_tx = p->min_tx;
	s->r_mult = p->mult;
	if (s->poll && p->final) { /* the Poll Sequence is over: new timers apply */
		s->poll = false;
		s->act_tx = s->des_tx;
		s->det_rx = s->req_rx;
	}
	s->detect_at = now + (monotime_t)detect_us(s) * 1000;
	if (s->r_min_rx != old_min_rx) {
		uint32_t iv = tx_interval(s);
		if (!iv)
			s->tx_at = 0;
		else if (!s->tx_at || s->tx_at > now + (monotime_t)iv * 1000)
			tx_schedule(s, now);
	}
	if (s->state == BFD_ADMIN_DOWN)
		return;
	if (p->state == BFD_ADMIN_DOWN) {
		if (s->state != BFD_DOWN)
			sess_set_state(s, BFD_DOWN, BFD_DIAG_NEIGHBOR_DOWN, true);
	} else if (s->state == BFD_DOWN) {
		if (p->state == BFD_DOWN)
			sess_set_state(s, BFD_INIT, BFD_DIAG_NONE, false);
		else if (p->state == BFD_INIT)
			sess_set_state(s, BFD_UP, BFD_DIAG_NONE, false);
	} else if (s->state == BFD_INIT) {
		if (p->state == BFD_INIT || p->state == BFD_UP)
			sess_set_state(s, BFD_UP, BFD_DIAG_NONE, false);
	} else if (p->state == BFD_DOWN) { /* Up */
		sess_set_state(s, BFD_DOWN, BFD_DIAG_NEIGHBOR_DOWN, false);
	}
	if (p->poll)
		s->want_final = true;
}

static void rx_readable(struct rxsock *r)
{
	for (int n = 0; n < RX_BUDGET; n++) {
		uint8_t buf[128];
		struct sockaddr_storage ss;
		char cbuf[CMSG_SPACE(sizeof(int)) * 2];
		struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
		struct msghdr mh = {.msg_name = &ss,
				    .msg_namelen = sizeof(ss),
				    .msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = cbuf,
				    .msg_controllen = sizeof(cbuf)};
		ssize_t len = recvmsg(r->fd, &mh, MSG_DONTWAIT);
		if (len < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		/* GTSM (RFC 5881 §5): only TTL / hop limit 255; the kernel checks too */
		int ttl = -1;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TTL) ||
			    (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_HOPLIMIT))
				memcpy(&ttl, CMSG_DATA(c), sizeof(ttl));
		}
		struct ipaddr from = {0};
		if (ss.ss_family == AF_INET) {
			from.family = AF_INET;
			memcpy(from.b, &((struct sockaddr_in *)&ss)->sin_addr, 4);
		} else if (ss.ss_family == AF_INET6) {
			from.family = AF_INET6;
			memcpy(from.b, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
		}
		struct bfd_pkt p;
		const char *why = NULL;
		/* no check of the source port: RFC 5881 §4 binds senders to 49152-65535, but
		 * BIRD 2.0 sends from any ephemeral port */
		if (ttl != 255) {
			why = "TTL is not 255";
		} else if (bfd_pkt_parse(buf, (size_t)len, &p, &why) == 0) {
			sess_input(r->bfd, &p, &from);
			continue;
		}
		char ab[IP_STRLEN];
		log_debug(SUB, "packet from %s dropped: %s", ip_fmt(&from, ab), why);
		r->bfd->dropped++;
	}
}

static int tx_socket(struct bfd *b, const struct bfd_sess_cfg *c, uint16_t *port)
{
	int af = c->peer.family;
	int fd = socket(af, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int ttl = 255, tos = 0xc0; /* network control (CS6), as routers send BFD */
	int e = 0;
	if (af == AF_INET) {
		if (setsockopt(fd, IPPROTO_IP, IP_TTL, &ttl, sizeof(ttl)) < 0)
			e = -errno;
		setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof(tos));
	} else {
		if (setsockopt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &ttl, sizeof(ttl)) < 0)
			e = -errno;
		setsockopt(fd, IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof(tos));
	}
	/* a source port of our own in 49152-65535 (RFC 5881 §4), tried from a moving start */
	struct ipaddr any = {.family = af};
	const struct ipaddr *la = c->local.family == af ? &c->local : &any;
	int span = 65536 - SPORT_MIN;
	for (int i = 0; !e && i < 256; i++) {
		uint16_t pt = (uint16_t)(SPORT_MIN + (b->next_port++ % span));
		struct sockaddr_storage ss;
		socklen_t sl = ip_sockaddr(la, pt, &ss);
		if (bind(fd, (struct sockaddr *)&ss, sl) == 0) {
			*port = pt;
			return fd;
		}
		if (errno != EADDRINUSE)
			e = -errno;
	}
	close(fd);
	return e ? e : -EADDRINUSE;
}

struct bfd_sess *bfd_sess_add(struct bfd *b, const struct bfd_sess_cfg *cfg, void *sess_arg)
{
	int af = cfg->peer.family;
	if ((af != AF_INET && af != AF_INET6) || b->rx[af == AF_INET6].fd < 0) {
		errno = af == AF_INET6 ? EAFNOSUPPORT : EINVAL;
		return NULL;
	}
	if (sess_by_peer(b, &cfg->peer)) {
		errno = EEXIST;
		return NULL;
	}
	uint16_t port = 0;
	int fd = tx_socket(b, cfg, &port);
	if (fd < 0) {
		errno = -fd;
		return NULL;
	}
	struct bfd_sess *s = xcalloc(1, sizeof(*s));
	s->bfd = b;
	s->cfg = *cfg;
	if (!s->cfg.mult)
		s->cfg.mult = 3;
	s->arg = sess_arg;
	s->fd = fd;
	s->sport = port;
	s->cfg_tx = (cfg->min_tx_ms ? cfg->min_tx_ms : 300) * 1000u;
	s->cfg_rx = (cfg->min_rx_ms ? cfg->min_rx_ms : 300) * 1000u;
	do
		s->ldisc = rnd32();
	while (!s->ldisc || sess_by_disc(b, s->ldisc));
	s->state = s->rstate = BFD_DOWN;
	s->r_min_rx = 1; /* §6.8.1: 1 until the neighbour says */
	sess_params(s);
	s->since = monotime_now();
	s->tx_at = s->since; /* the first packet at once */
	s->next = b->sessions;
	b->sessions = s;
	char ab[IP_STRLEN];
	log_info(SUB, "session %s: started (port %u, discriminator %08x, %u ms x %u)",
		 ip_fmt(&cfg->peer, ab), port, s->ldisc, s->cfg_tx / 1000, s->cfg.mult);
	return s;
}

void bfd_sess_del(struct bfd_sess *s)
{
	if (!s)
		return;
	struct bfd *b = s->bfd;
	/* §6.8.16: AdminDown, so the neighbour does not take it for a path failure */
	sess_send(s, false, BFD_ADMIN_DOWN, BFD_DIAG_ADMIN_DOWN);
	for (struct bfd_sess **p = &b->sessions; *p; p = &(*p)->next) {
		if (*p == s) {
			*p = s->next;
			break;
		}
	}
	close(s->fd);
	free(s);
}

enum bfd_state bfd_sess_state(const struct bfd_sess *s)
{
	return s->state;
}

json_object *bfd_sess_json(const struct bfd_sess *s)
{
	json_object *o = json_object_new_object();
	monotime_t now = monotime_now();
	char d[16];
	json_object_object_add(o, "state", json_object_new_string(bfd_state_name(s->state)));
	json_object_object_add(o, "remoteState", json_object_new_string(bfd_state_name(s->rstate)));
	json_object_object_add(o, "localDiag", json_object_new_string(bfd_diag_name(s->diag)));
	json_object_object_add(o, "remoteDiag", json_object_new_string(bfd_diag_name(s->rdiag)));
	snprintf(d, sizeof(d), "%08x", s->ldisc);
	json_object_object_add(o, "localDiscr", json_object_new_string(d));
	snprintf(d, sizeof(d), "%08x", s->rdisc);
	json_object_object_add(o, "remoteDiscr", json_object_new_string(d));
	json_object_object_add(o, "txIntervalMs", json_object_new_int64(tx_interval(s) / 1000));
	json_object_object_add(o, "detectTimeMs",
			       json_object_new_int64((int64_t)(detect_us(s) / 1000)));
	json_object_object_add(o, "multiplier", json_object_new_int(s->cfg.mult));
	json_object_object_add(o, "remoteMultiplier", json_object_new_int(s->r_mult));
	json_object_object_add(o, "sourcePort", json_object_new_int(s->sport));
	json_object_object_add(o, "polling", json_object_new_boolean(s->poll));
	json_object_object_add(o, "since", json_object_new_int64((now - s->since) / 1000000000));
	json_object_object_add(o, "flaps", json_object_new_int64((int64_t)s->flaps));
	json_object_object_add(o, "rx", json_object_new_int64((int64_t)s->rx));
	json_object_object_add(o, "tx", json_object_new_int64((int64_t)s->tx));
	return o;
}

/* ------------------------------------------------------------- loop ---- */

int bfd_fd(const struct bfd *b)
{
	return b->epfd;
}

uint64_t bfd_dropped(const struct bfd *b)
{
	return b->dropped;
}

int bfd_timeout_ms(struct bfd *b)
{
	monotime_t now = monotime_now(), next = 0;
	for (struct bfd_sess *s = b->sessions; s; s = s->next) {
		if (s->want_final)
			return 0;
		if (s->tx_at && (!next || s->tx_at < next))
			next = s->tx_at;
		if (s->detect_at && (!next || s->detect_at < next))
			next = s->detect_at;
	}
	if (!next)
		return -1;
	if (next <= now)
		return 0;
	monotime_t ms = (next - now + 999999) / 1000000;
	return ms > 60000 ? 60000 : (int)ms;
}

void bfd_dispatch(struct bfd *b)
{
	struct epoll_event evs[4];
	int n = epoll_wait(b->epfd, evs, 4, 0);
	for (int i = 0; i < n; i++)
		rx_readable(evs[i].data.ptr);
	monotime_t now = monotime_now();
	for (struct bfd_sess *s = b->sessions; s; s = s->next) {
		if (s->detect_at && now >= s->detect_at) {
			/* §6.8.4: the neighbour is gone */
			s->detect_at = 0;
			s->rdisc = 0;
			s->rstate = BFD_DOWN;
			s->r_min_rx = 1;
			if (s->state == BFD_INIT || s->state == BFD_UP)
				sess_set_state(s, BFD_DOWN, BFD_DIAG_DETECT_EXPIRED, false);
			else if (!s->tx_at)
				tx_schedule(s, now);
		}
		if (s->want_final) { /* §6.8.6: Final at once, outside the timer */
			s->want_final = false;
			sess_send(s, true, s->state, s->diag);
		}
		if (s->tx_at && now >= s->tx_at) {
			sess_send(s, false, s->state, s->diag);
			tx_schedule(s, now);
		}
	}
}

static int rx_open(struct bfd *b, int i)
{
	int af = i ? AF_INET6 : AF_INET;
	struct rxsock *r = &b->rx[i];
	r->bfd = b;
	r->af = af;
	int fd = socket(af, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1, ttl = 255, e = 0;
	if (af == AF_INET6) {
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		if (setsockopt(fd, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &one, sizeof(one)) < 0 ||
		    setsockopt(fd, IPPROTO_IPV6, IPV6_MINHOPCOUNT, &ttl, sizeof(ttl)) < 0)
			e = -errno;
	} else if (setsockopt(fd, IPPROTO_IP, IP_RECVTTL, &one, sizeof(one)) < 0 ||
		   setsockopt(fd, IPPROTO_IP, IP_MINTTL, &ttl, sizeof(ttl)) < 0) {
		e = -errno;
	}
	struct ipaddr any = {.family = af};
	const struct ipaddr *la = i ? &b->cfg.listen6 : &b->cfg.listen4;
	struct sockaddr_storage ss;
	socklen_t sl = ip_sockaddr(la->family == af ? la : &any, b->cfg.port, &ss);
	if (!e && bind(fd, (struct sockaddr *)&ss, sl) < 0)
		e = -errno;
	if (e) {
		close(fd);
		return e;
	}
	r->fd = fd;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = r};
	epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev);
	return 0;
}

struct bfd *bfd_new(const struct bfd_cfg *cfg, bfd_cb cb, void *arg)
{
	struct bfd *b = xcalloc(1, sizeof(*b));
	b->cfg = *cfg;
	if (!b->cfg.port)
		b->cfg.port = BFD_PORT;
	b->cb = cb;
	b->arg = arg;
	b->rx[0].fd = b->rx[1].fd = -1;
	b->next_port = (uint16_t)rnd32();
	int e = 0;
	b->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (b->epfd < 0) {
		e = -errno;
		goto fail;
	}
	bool v4 = !b->cfg.listen6.family || b->cfg.listen4.family;
	bool v6 = !b->cfg.listen4.family || b->cfg.listen6.family;
	if (v4 && (e = rx_open(b, 0)) < 0)
		goto fail;
	if (v6) {
		int e6 = rx_open(b, 1);
		if (e6 < 0 && !v4) {
			e = e6;
			goto fail;
		}
		if (e6 < 0)
			log_warn(SUB, "no IPv6 socket: %s", strerror(-e6));
	}
	return b;
fail:
	bfd_free(b);
	errno = -e;
	return NULL;
}

void bfd_free(struct bfd *b)
{
	if (!b)
		return;
	while (b->sessions)
		bfd_sess_del(b->sessions);
	for (int i = 0; i < 2; i++)
		if (b->rx[i].fd >= 0)
			close(b->rx[i].fd);
	if (b->epfd >= 0)
		close(b->epfd);
	free(b);
}
