/* Unit tests for bgp/bfd.c: the control packet codec (byte vectors, every RFC 5880 §6.8.6
 * rejection), and the state machine against itself: two instances on 127.0.2.1 and
 * 127.0.2.2 (a test port instead of 3784, no privileges) coming Up, agreeing on the fast
 * interval through a Poll Sequence, detecting a silent neighbour within the detection
 * time, AdminDown, GTSM (TTL 255 only); and two BGP speakers whose session BFD takes down
 * long before the hold timer.  Every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bgp/bfd.h"
#include "bgp/bgp.h"
#include "lib/log.h"
#include "lib/util.h"

static uint16_t bport; /* BFD port of this run */
static int tport;      /* BGP port of this run */

/* ------------------------------------------------------------- codec ---- */

static void test_codec_vectors(void **state)
{
	(void)state;
	struct bfd_pkt p = {.diag = BFD_DIAG_DETECT_EXPIRED,
			    .state = BFD_UP,
			    .poll = true,
			    .mult = 3,
			    .my_disc = 0x01020304,
			    .your_disc = 0xa0b0c0d0,
			    .min_tx = 300000,
			    .min_rx = 1000000};
	uint8_t buf[32];
	assert_int_equal(bfd_pkt_build(buf, 23, &p), 0);
	assert_int_equal(bfd_pkt_build(buf, sizeof(buf), &p), 24);
	static const uint8_t want[24] = {0x21, 0xe0, 3,	   24,	 1,    2,    3,	   4,
					 0xa0, 0xb0, 0xc0, 0xd0, 0x00, 0x04, 0x93, 0xe0,
					 0x00, 0x0f, 0x42, 0x40, 0,    0,    0,	   0};
	assert_memory_equal(buf, want, 24);

	/* a Down packet as FRR sends before it knows us: your discriminator 0, 1 s / 300 ms */
	static const uint8_t frr[24] = {0x20, 0x40, 3,	  24,	0,    0,    0,	  7,
					0,    0,    0,	  0,	0x00, 0x0f, 0x42, 0x40,
					0x00, 0x04, 0x93, 0xe0, 0,    0,    0xc3, 0x50};
	struct bfd_pkt q;
	const char *why = NULL;
	assert_int_equal(bfd_pkt_parse(frr, sizeof(frr), &q, &why), 0);
	assert_int_equal(q.version, 1);
	assert_int_equal(q.state, BFD_DOWN);
	assert_int_equal(q.diag, 0);
	assert_false(q.poll || q.final || q.auth || q.demand || q.multipoint);
	assert_int_equal(q.mult, 3);
	assert_int_equal(q.my_disc, 7);
	assert_int_equal(q.your_disc, 0);
	assert_int_equal(q.min_tx, 1000000);
	assert_int_equal(q.min_rx, 300000);
	assert_int_equal(q.min_echo_rx, 50000);

	/* round trip, and Final */
	p.poll = false;
	p.final = true;
	p.state = BFD_INIT;
	bfd_pkt_build(buf, sizeof(buf), &p);
	assert_int_equal(buf[1], 0x90);
	assert_int_equal(bfd_pkt_parse(buf, 24, &q, NULL), 0);
	assert_true(q.final && !q.poll);
	assert_int_equal(q.state, BFD_INIT);
	assert_int_equal(q.my_disc, p.my_disc);
	assert_int_equal(q.your_disc, p.your_disc);
	assert_int_equal(q.min_rx, p.min_rx);
	/* trailing bytes after the length the packet declares are ignored */
	assert_int_equal(bfd_pkt_parse(buf, 30, &q, NULL), 0);
	assert_string_equal(bfd_state_name(BFD_ADMIN_DOWN), "AdminDown");
	assert_string_equal(bfd_diag_name(BFD_DIAG_DETECT_EXPIRED),
			    "Control Detection Time Expired");
	assert_string_equal(bfd_diag_name(31), "Reserved");
}

static void expect_bad(const uint8_t *pkt, size_t len, const char *what)
{
	struct bfd_pkt q;
	const char *why = NULL;
	assert_int_equal(bfd_pkt_parse(pkt, len, &q, &why), -EINVAL);
	assert_non_null(why);
	if (!strstr(why, what))
		fail_msg("expected '%s', got '%s'", what, why);
}

static void test_codec_bad(void **state)
{
	(void)state;
	uint8_t ok[24] = {0x20, 0xc0, 3,    24,	  0, 0,	   0,	 9,    0, 0, 0, 1,
			  0,	0x04, 0x93, 0xe0, 0, 0x04, 0x93, 0xe0, 0, 0, 0, 0};
	struct bfd_pkt q;
	assert_int_equal(bfd_pkt_parse(ok, 24, &q, NULL), 0);
	uint8_t b[24];
	for (size_t n = 0; n < 24; n++)
		expect_bad(ok, n, "shorter");
#define MUT(i, v, what)                                                                            \
	do {                                                                                       \
		memcpy(b, ok, 24);                                                                 \
		b[i] = (v);                                                                        \
		expect_bad(b, 24, what);                                                           \
	} while (0)
	MUT(0, 0x00, "version"); /* version 0 */
	MUT(0, 0x40, "version"); /* version 2 */
	MUT(0, 0xe0, "version"); /* version 7 */
	MUT(3, 23, "too small"); /* length below 24 */
	MUT(3, 0, "too small");
	MUT(3, 25, "larger than");     /* longer than what arrived */
	MUT(1, 0xc4, "too small");     /* A bit: 26 bytes at least */
	MUT(2, 0, "multiplier");       /* detect mult 0 */
	MUT(1, 0xc1, "multipoint");    /* M bit */
	MUT(7, 0, "my discriminator"); /* my discriminator 0 */
	MUT(1, 0xf0, "poll and final");
#undef MUT
}

/* ------------------------------------------------- two instances, loopback ---- */

struct ev {
	int n;
	enum bfd_state old, now;
	uint8_t diag;
	bool remote_admin;
	monotime_t at;
};

struct inst {
	struct bfd *b;
	struct bfd_sess *s;
	struct ev last;
	int events;
	bool paused; /* not dispatched: a neighbour that went silent */
};

static void on_event(void *arg, struct bfd_sess *s, void *sess_arg, enum bfd_state old,
		     enum bfd_state now, uint8_t diag, bool remote_admin)
{
	struct inst *in = arg;
	assert_ptr_equal(sess_arg, in);
	assert_ptr_equal(s, in->s);
	in->events++;
	in->last = (struct ev){in->events, old, now, diag, remote_admin, monotime_now()};
}

static void inst_new(struct inst *in, const char *self, const char *peer, uint32_t tx_ms,
		     uint8_t mult)
{
	memset(in, 0, sizeof(*in));
	struct bfd_cfg c = {.port = bport};
	ip_parse(self, &c.listen4);
	in->b = bfd_new(&c, on_event, in);
	assert_non_null(in->b);
	struct bfd_sess_cfg sc = {.min_tx_ms = tx_ms, .min_rx_ms = tx_ms, .mult = mult};
	ip_parse(peer, &sc.peer);
	ip_parse(self, &sc.local);
	in->s = bfd_sess_add(in->b, &sc, in);
	assert_non_null(in->s);
	/* one session per neighbour */
	assert_null(bfd_sess_add(in->b, &sc, in));
	assert_int_equal(errno, EEXIST);
}

static bool both_up(struct inst *x)
{
	return bfd_sess_state(x[0].s) == BFD_UP && bfd_sess_state(x[1].s) == BFD_UP;
}

/* Drive the instances that are not paused until pred or ms pass. */
static bool run_until(struct inst *x, size_t n, bool (*pred)(struct inst *), int ms)
{
	monotime_t end = monotime_now() + MONO_MS(ms);
	while (monotime_now() < end) {
		struct pollfd pf[4];
		int t = 20;
		for (size_t i = 0; i < n; i++) {
			pf[i] = (struct pollfd){.fd = x[i].paused ? -1 : bfd_fd(x[i].b),
						.events = POLLIN};
			int bt = x[i].paused ? -1 : bfd_timeout_ms(x[i].b);
			if (bt >= 0 && bt < t)
				t = bt;
		}
		poll(pf, n, t);
		for (size_t i = 0; i < n; i++)
			if (!x[i].paused)
				bfd_dispatch(x[i].b);
		if (pred && pred(x))
			return true;
	}
	return pred ? pred(x) : true;
}

static int64_t jint_of(const struct bfd_sess *s, const char *k)
{
	json_object *j = bfd_sess_json(s), *v = NULL;
	json_object_object_get_ex(j, k, &v);
	int64_t r = json_object_get_int64(v);
	json_object_put(j);
	return r;
}

static bool a_down(struct inst *x)
{
	return bfd_sess_state(x[0].s) == BFD_DOWN;
}

/* Both Up, at 50 ms, and both Poll Sequences over (ended only by a Final from the other) */
static bool fast_timers(struct inst *x)
{
	return both_up(x) && jint_of(x[0].s, "txIntervalMs") == 50 &&
	       jint_of(x[1].s, "txIntervalMs") == 50 && jint_of(x[0].s, "detectTimeMs") == 150 &&
	       !jint_of(x[0].s, "polling") && !jint_of(x[1].s, "polling");
}

static void test_up_and_detect(void **state)
{
	(void)state;
	struct inst x[2];
	inst_new(&x[0], "127.0.2.1", "127.0.2.2", 50, 3);
	inst_new(&x[1], "127.0.2.2", "127.0.2.1", 50, 3);
	/* Down -> Init -> Up: the first packets go at once, so well within 1 s */
	assert_true(run_until(x, 2, both_up, 3000));
	assert_int_equal(x[0].last.now, BFD_UP);
	assert_int_equal(x[1].last.now, BFD_UP);
	/* the first to go Up changed its TX from 1 s to 50 ms: a Poll Sequence runs */
	assert_true(jint_of(x[0].s, "polling") || jint_of(x[1].s, "polling"));
	/* 1 s while not Up; once Up, the Poll Sequence brings both to 50 ms (detection 3 x 50) */
	assert_true(run_until(x, 2, fast_timers, 2000));
	int src = (int)jint_of(x[0].s, "sourcePort");
	assert_true(src >= 49152 && src <= 65535);

	/* 1 s at 50 ms with 75-100 % jitter: 20 to 27 packets (a few more for Finals) */
	int64_t tx0 = jint_of(x[0].s, "tx");
	run_until(x, 2, NULL, 1000);
	int64_t sent = jint_of(x[0].s, "tx") - tx0;
	if (sent < 19 || sent > 30)
		fail_msg("%lld packets in 1 s at 50 ms", (long long)sent);
	assert_true(both_up(x));

	/* B goes silent: A says Down (detection time expired) within 150 ms + slack */
	x[1].paused = true;
	monotime_t t0 = monotime_now();
	assert_true(run_until(x, 2, a_down, 1000));
	monotime_t took = (monotime_now() - t0) / 1000000;
	if (took > 300)
		fail_msg("detection took %lld ms (3 x 50 ms expected)", (long long)took);
	assert_int_equal(x[0].last.old, BFD_UP);
	assert_int_equal(x[0].last.diag, BFD_DIAG_DETECT_EXPIRED);
	assert_false(x[0].last.remote_admin);
	/* B back: it also saw A's silence, then both come up again */
	x[1].paused = false;
	assert_true(run_until(x, 2, both_up, 4000));
	assert_int_equal(jint_of(x[0].s, "flaps"), 1);

	/* B removes its session: AdminDown reaches A, which goes Down without a failure */
	int before = x[0].events;
	bfd_sess_del(x[1].s);
	x[1].s = NULL;
	assert_true(run_until(x, 1, a_down, 1000));
	assert_int_equal(x[0].events, before + 1);
	assert_int_equal(x[0].last.diag, BFD_DIAG_NEIGHBOR_DOWN);
	assert_true(x[0].last.remote_admin);
	bfd_free(x[0].b);
	bfd_free(x[1].b);
}

/* Send a BFD packet to 127.0.2.1 from from:sport with this TTL. */
static void inject(const struct bfd_pkt *p, int ttl, uint16_t sport, const char *from)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	assert_true(fd >= 0);
	setsockopt(fd, IPPROTO_IP, IP_TTL, &ttl, sizeof(ttl));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(sport)};
	inet_pton(AF_INET, from, &a.sin_addr);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	uint8_t buf[24];
	bfd_pkt_build(buf, sizeof(buf), p);
	a.sin_port = htons(bport);
	inet_pton(AF_INET, "127.0.2.1", &a.sin_addr);
	assert_int_equal(sendto(fd, buf, 24, 0, (struct sockaddr *)&a, sizeof(a)), 24);
	close(fd);
}

static uint32_t hex_of(const struct bfd_sess *s, const char *k)
{
	json_object *j = bfd_sess_json(s), *v = NULL;
	json_object_object_get_ex(j, k, &v);
	uint32_t r = (uint32_t)strtoul(json_object_get_string(v), NULL, 16);
	json_object_put(j);
	return r;
}

static void test_gtsm_and_demux(void **state)
{
	(void)state;
	struct inst x[2];
	inst_new(&x[0], "127.0.2.1", "127.0.2.2", 50, 3);
	inst_new(&x[1], "127.0.2.2", "127.0.2.1", 50, 3);
	assert_true(run_until(x, 2, both_up, 3000));
	/* B keeps running; we forge packets in its name */
	struct bfd_pkt p = {.state = BFD_DOWN,
			    .mult = 3,
			    .my_disc = hex_of(x[0].s, "remoteDiscr"),
			    .your_disc = hex_of(x[0].s, "localDiscr"),
			    .min_tx = 50000,
			    .min_rx = 50000};
	/* Down with TTL 64: dropped (RFC 5881 §5), A stays Up */
	inject(&p, 64, 50000, "127.0.2.2");
	run_until(x, 2, NULL, 100);
	assert_int_equal(bfd_sess_state(x[0].s), BFD_UP);
	/* a wrong discriminator; the right one from another address: dropped too */
	uint64_t dropped = bfd_dropped(x[0].b);
	p.your_disc ^= 1;
	inject(&p, 255, 50001, "127.0.2.2");
	p.your_disc ^= 1;
	inject(&p, 255, 50001, "127.0.2.3");
	run_until(x, 2, NULL, 100);
	assert_int_equal(bfd_sess_state(x[0].s), BFD_UP);
	assert_int_equal(bfd_dropped(x[0].b), dropped + 2);
	/* the same Down with TTL 255: A goes Down, neighbour signalled */
	inject(&p, 255, 50000, "127.0.2.2");
	assert_true(run_until(x, 2, a_down, 500));
	assert_int_equal(x[0].last.diag, BFD_DIAG_NEIGHBOR_DOWN);
	assert_false(x[0].last.remote_admin);
	bfd_free(x[0].b);
	bfd_free(x[1].b);
}

/* ---------------------------------------------------- BGP with BFD ---- */

static struct bgp *speaker(const char *self, const char *peer, uint32_t as, uint32_t peer_as)
{
	struct bgp_cfg c = {.as = as, .listen_port = tport, .connect_retry = 1, .bfd_port = bport};
	ip_parse(self, &c.listen4);
	c.router_id = ntohl(c.listen4.v4.s_addr);
	struct bgp *b = bgp_new(&c);
	assert_non_null(b);
	struct bgp_peer_cfg p;
	memset(&p, 0, sizeof(p));
	snprintf(p.name, sizeof(p.name), "peer");
	ip_parse(peer, &p.addr);
	ip_parse(self, &p.local);
	p.as = peer_as;
	p.port = (uint16_t)tport;
	p.multihop = 2;
	p.hold_time = 30;
	p.bfd = true;
	p.bfd_tx_ms = p.bfd_rx_ms = 50;
	assert_int_equal(bgp_set_peers(b, &p, 1), 0);
	return b;
}

static const char *peer_str(struct bgp *b, const char *k, const char *sub)
{
	static char buf[160];
	json_object *st = bgp_state(b, 0), *peers = NULL, *v = NULL;
	json_object_object_get_ex(st, "peers", &peers);
	json_object *p = json_object_array_get_idx(peers, 0);
	if (sub)
		json_object_object_get_ex(p, sub, &p);
	json_object_object_get_ex(p, k, &v);
	snprintf(buf, sizeof(buf), "%s", v ? json_object_get_string(v) : "");
	json_object_put(st);
	return buf;
}

static bool bgp_run_until(struct bgp **b, size_t n, bool *paused, bool (*pred)(struct bgp **),
			  int ms)
{
	monotime_t end = monotime_now() + MONO_MS(ms);
	while (monotime_now() < end) {
		struct pollfd pf[2];
		for (size_t i = 0; i < n; i++)
			pf[i] =
			    (struct pollfd){.fd = paused[i] ? -1 : bgp_fd(b[i]), .events = POLLIN};
		int t = bgp_timeout_ms(b[0]);
		poll(pf, n, t < 0 || t > 10 ? 10 : t);
		for (size_t i = 0; i < n; i++)
			if (!paused[i])
				bgp_dispatch(b[i]);
		if (pred(b))
			return true;
	}
	return pred(b);
}

static bool est_bfd_up(struct bgp **b)
{
	for (int i = 0; i < 2; i++)
		if (strcmp(peer_str(b[i], "state", NULL), "Established") ||
		    strcmp(peer_str(b[i], "state", "bfd"), "Up"))
			return false;
	return true;
}

static bool first_not_est(struct bgp **b)
{
	return strcmp(peer_str(b[0], "state", NULL), "Established") != 0;
}

static void test_bgp_session_follows_bfd(void **state)
{
	(void)state;
	struct bgp *b[2] = {speaker("127.0.2.1", "127.0.2.2", 65001, 65002),
			    speaker("127.0.2.2", "127.0.2.1", 65002, 65001)};
	bool paused[2] = {false, false};
	struct ipprefix pf;
	prefix_parse("10.9.0.0/24", &pf);
	bgp_originate(b[1], &pf, NULL);
	assert_true(bgp_run_until(b, 2, paused, est_bfd_up, 8000));
	/* B freezes (no BFD, no keepalives): A's session goes with BFD, not after 30 s */
	paused[1] = true;
	monotime_t t0 = monotime_now();
	assert_true(bgp_run_until(b, 2, paused, first_not_est, 2000));
	monotime_t took = (monotime_now() - t0) / 1000000;
	if (took > 500)
		fail_msg("BGP went down %lld ms after the peer froze", (long long)took);
	assert_non_null(strstr(peer_str(b[0], "lastError", NULL), "BFD down"));
	assert_string_equal(peer_str(b[0], "state", "bfd"), "Down");
	assert_int_equal(bgp_route_count(b[0]), 0); /* the peer's route went with it */
	bgp_free(b[0]);
	bgp_free(b[1]);
}

int main(void)
{
	log_set_level(getenv("BFD_DEBUG") ? LOG_DEBUG : LOG_ERROR);
	bport = (uint16_t)(40000 + getpid() % 9000);
	tport = 20000 + (getpid() + 7) % 20000;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_codec_vectors),	    cmocka_unit_test(test_codec_bad),
	    cmocka_unit_test(test_up_and_detect),	    cmocka_unit_test(test_gtsm_and_demux),
	    cmocka_unit_test(test_bgp_session_follows_bfd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
