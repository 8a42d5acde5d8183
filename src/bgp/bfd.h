/* bfd: Bidirectional Forwarding Detection (RFC 5880), single hop over UDP (RFC 5881),
 * asynchronous mode, driven by the caller's event loop like bgp.c.
 *
 * One struct bfd holds the receive sockets (UDP port 3784, IPv4 and IPv6, TTL 255
 * required: GTSM, RFC 5881 §5) and the sessions.  Each session sends from its own UDP
 * socket (source port 49152-65535, TTL 255), with the RFC 5880 §6.8 state machine
 * (AdminDown/Down/Init/Up), transmit jitter (§6.8.7), Poll/Final sequences when the
 * timers change (§6.8.3: 1 s while not Up, the configured interval once Up), and the
 * detection time (§6.8.4: the remote Detect Mult × the agreed interval).  No echo
 * function, no demand mode, no authentication (packets with the A bit are dropped).
 *
 * The loop: add bfd_fd() (an epoll fd) to the caller's epoll set; whenever it is readable
 * or bfd_timeout_ms() has passed, call bfd_dispatch().  State changes are reported through
 * the callback given to bfd_new, from inside bfd_dispatch. */
#pragma once
#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/ip.h"

#define BFD_PORT 3784
#define BFD_PKT_LEN 24

enum bfd_state { BFD_ADMIN_DOWN = 0, BFD_DOWN = 1, BFD_INIT = 2, BFD_UP = 3 };

/* Diagnostic codes (RFC 5880 §4.1) */
enum {
	BFD_DIAG_NONE = 0,
	BFD_DIAG_DETECT_EXPIRED = 1,
	BFD_DIAG_ECHO_FAILED = 2,
	BFD_DIAG_NEIGHBOR_DOWN = 3,
	BFD_DIAG_FWD_RESET = 4,
	BFD_DIAG_PATH_DOWN = 5,
	BFD_DIAG_CONCAT_DOWN = 6,
	BFD_DIAG_ADMIN_DOWN = 7,
	BFD_DIAG_REV_CONCAT_DOWN = 8,
};

/* A control packet (RFC 5880 §4.1), intervals in microseconds. */
struct bfd_pkt {
	uint8_t version, diag;
	enum bfd_state state;
	bool poll, final, cpi, auth, demand, multipoint;
	uint8_t mult, len;
	uint32_t my_disc, your_disc;
	uint32_t min_tx, min_rx, min_echo_rx;
};

/* Encode 24 bytes (version 1, no authentication); returns BFD_PKT_LEN or 0 if size is short. */
size_t bfd_pkt_build(uint8_t *out, size_t size, const struct bfd_pkt *p);
/* Decode and check what RFC 5880 §6.8.6 checks without a session (version, length,
 * detect mult, M bit, My Discriminator, P and F together).  0, or -EINVAL with *why set. */
int bfd_pkt_parse(const uint8_t *buf, size_t len, struct bfd_pkt *p, const char **why);

const char *bfd_state_name(enum bfd_state s);
const char *bfd_diag_name(uint8_t diag);

struct bfd;
struct bfd_sess;

struct bfd_cfg {
	uint16_t port;			/* receive port, 0 = 3784 (tests use others) */
	struct ipaddr listen4, listen6; /* bind addresses of the receive sockets (0 = any) */
};

struct bfd_sess_cfg {
	struct ipaddr peer;  /* the neighbour's address (directly connected) */
	struct ipaddr local; /* source address (family 0: the kernel chooses) */
	uint32_t min_tx_ms;  /* desired min TX interval once Up, 0 = 300 */
	uint32_t min_rx_ms;  /* required min RX interval, 0 = 300 */
	uint8_t mult;	     /* detect multiplier, 0 = 3 */
};

/* Called from bfd_dispatch when a session changes state.  remote_admin: the neighbour
 * said AdminDown (RFC 5882 §3.2: not a path failure, the client should not react). */
typedef void (*bfd_cb)(void *arg, struct bfd_sess *s, void *sess_arg, enum bfd_state old,
		       enum bfd_state now, uint8_t diag, bool remote_admin);

/* NULL + errno (sockets). */
struct bfd *bfd_new(const struct bfd_cfg *cfg, bfd_cb cb, void *arg);
/* Every session says AdminDown once, then goes. */
void bfd_free(struct bfd *b);
/* Start a session to cfg->peer (one per peer address); NULL + errno (EEXIST, EINVAL,
 * socket errors).  sess_arg is given back to the callback. */
struct bfd_sess *bfd_sess_add(struct bfd *b, const struct bfd_sess_cfg *cfg, void *sess_arg);
/* Send AdminDown (diag 7) once and drop the session. */
void bfd_sess_del(struct bfd_sess *s);
enum bfd_state bfd_sess_state(const struct bfd_sess *s);
/* {state, remoteState, localDiag, remoteDiag, localDiscr, remoteDiscr, txIntervalMs,
 *  detectTimeMs, multiplier, remoteMultiplier, sourcePort, polling (a Poll Sequence runs),
 *  since, flaps, rx, tx} */
json_object *bfd_sess_json(const struct bfd_sess *s);

int bfd_fd(const struct bfd *b);
/* Milliseconds until bfd_dispatch() must run again (-1: no timer). */
int bfd_timeout_ms(struct bfd *b);
/* Read packets, run timers, send what is due; never blocks. */
void bfd_dispatch(struct bfd *b);
/* Packets dropped by validation (bad packets, wrong TTL, unknown discriminator). */
uint64_t bfd_dropped(const struct bfd *b);
