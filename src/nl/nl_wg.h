/* nl_wg: the kernel's WireGuard generic netlink family ("wireguard", linux/wireguard.h),
 * with libmnl -- no `wg` tool.  WG_CMD_GET_DEVICE reads a device (private and public key,
 * listen port, peers with endpoint and allowed IPs); WG_CMD_SET_DEVICE changes it.
 *
 * Conventions as in nl/nl.h: 0 or -errno (the kernel's error from the ACK), nothing
 * printed.  Building and parsing are split from I/O so unit tests check the exact bytes.
 * The family exists once the wireguard module is loaded (creating a "wireguard" link loads
 * it), so open the socket after the device exists. */
#pragma once
#include <linux/netlink.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/ip.h"

#define NL_WG_KEY_LEN 32
#define NL_WG_MAX_ALLOWED 8

struct nl_wg_peer {
	uint8_t key[NL_WG_KEY_LEN]; /* public key: the peer's identity */
	uint32_t flags;		    /* SET: WGPEER_F_REMOVE_ME, WGPEER_F_REPLACE_ALLOWEDIPS ... */
	struct ipaddr endpoint;	    /* family 0 = none */
	uint16_t port;		    /* endpoint UDP port */
	uint16_t keepalive;	    /* persistent keepalive, seconds; 0 = off */
	size_t nallowed;
	struct ipprefix allowed[NL_WG_MAX_ALLOWED];
	/* GET only */
	uint64_t rx_bytes, tx_bytes;
	int64_t last_handshake; /* seconds since the epoch, 0 = never */
};

struct nl_wg_dev {
	int ifindex; /* GET */
	bool has_private_key;
	uint8_t private_key[NL_WG_KEY_LEN];
	bool has_public_key; /* GET */
	uint8_t public_key[NL_WG_KEY_LEN];
	bool has_port; /* SET: send the listen port */
	uint16_t port;
	uint32_t flags; /* SET: WGDEVICE_F_REPLACE_PEERS */
	size_t npeers;
	struct nl_wg_peer *peers; /* GET: malloc'ed (nl_wg_dev_free) */
};
void nl_wg_dev_free(struct nl_wg_dev *d);

/* ---- building and parsing (no I/O) ---- */
/* CTRL_CMD_GETFAMILY for "wireguard". buf: NL_MSG_MAX bytes. */
struct nlmsghdr *nl_wg_build_family(void *buf);
/* The family id from CTRL_CMD_GETFAMILY's answer; -ENOENT when absent. */
int nl_wg_parse_family(const struct nlmsghdr *nlh);
/* WG_CMD_GET_DEVICE (a dump) for ifname; NULL when the name is invalid. */
struct nlmsghdr *nl_wg_build_get(void *buf, uint16_t family, const char *ifname);
/* WG_CMD_SET_DEVICE for ifname into buf of `size` bytes: the device's attributes (when
 * *next == 0) and peers d->peers[*next ...] as many as fit; *next is advanced past them.
 * A device with many peers takes several messages (the kernel applies each in turn; only
 * the first carries the device flags, so REPLACE_PEERS is not repeated).  NULL when the
 * name is invalid or not even one peer fits. */
struct nlmsghdr *nl_wg_build_set(void *buf, size_t size, uint16_t family, const char *ifname,
				 const struct nl_wg_dev *d, size_t *next);
/* One message of a GET_DEVICE dump merged into acc (zeroed before the first one): the
 * dump repeats the device and continues the peer list, even a peer's allowed IPs, in the
 * next message.  0 or -EINVAL. */
int nl_wg_parse_dev(const struct nlmsghdr *nlh, struct nl_wg_dev *acc);

/* ---- I/O, in the caller's current network namespace ---- */
struct nl_wg;
/* NULL + errno (ENOENT: the kernel has no wireguard family, the module is not loaded). */
struct nl_wg *nl_wg_open(void);
void nl_wg_close(struct nl_wg *w);
/* out is replaced (free it with nl_wg_dev_free). -ENODEV when there is no such device. */
int nl_wg_get(struct nl_wg *w, const char *ifname, struct nl_wg_dev *out);
int nl_wg_set(struct nl_wg *w, const char *ifname, const struct nl_wg_dev *d);
