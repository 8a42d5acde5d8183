/* wg: WireGuard encryption of pod traffic between nodes (`twill agent --encrypt wireguard`),
 * as Calico and Cilium do it: one WireGuard interface per node (twill.wg, UDP 51820), a key
 * pair generated once by each agent (the private key in its state dir, mode 0600, reused
 * across restarts; X25519 with OpenSSL's libcrypto) and the public key published on its Node
 * object (annotation twill.io/wireguard-public-key, through the agent's own overlay file
 * <manifests>/.twill/wireguard.<node>.json).  Peers are the other nodes with a published
 * key: endpoint = the node's InternalIP:51820, allowed IPs = its podCIDRs; the route
 * planner (route.c) decides which nodes are peers and sends their podCIDRs through the
 * device.
 *
 * This module is the one owner of the device: created once, never recreated nor re-keyed
 * on restart; peers reconciled against WG_CMD_GET_DEVICE (read at start, after an error
 * and on resync, tracked otherwise) so a sync sends only the peers that changed. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/ip.h"
#include "nl/nl.h"
#include "nl/nl_wg.h"

#define WG_DEV "twill.wg"
#define WG_PORT 51820
#define WG_ANN_PUBLIC_KEY "twill.io/wireguard-public-key"
#define WG_KEY_FILE "wireguard.key"	   /* in the agent's state dir */
#define WG_PUBLISH_FMT "wireguard.%s.json" /* in <manifests>/.twill/, per node */
/* Bytes WireGuard takes from the underlay MTU: outer IP header (20 IPv4, 40 IPv6) + UDP 8
 * + WireGuard 32 (type, index, counter, tag). */
#define WG_OVERHEAD_V4 60
#define WG_OVERHEAD_V6 80
#define WG_KEY_B64_LEN 44 /* base64 of 32 bytes, as `wg genkey` prints it */

/* ---- keys (wg_key.c) ---- */
/* 32 random bytes, clamped as X25519 private keys are. 0 or -EIO. */
int wg_key_generate(uint8_t priv[NL_WG_KEY_LEN]);
/* The X25519 public key of priv. 0 or -EINVAL. */
int wg_key_public(const uint8_t priv[NL_WG_KEY_LEN], uint8_t pub[NL_WG_KEY_LEN]);
void wg_key_to_base64(const uint8_t key[NL_WG_KEY_LEN], char out[WG_KEY_B64_LEN + 1]);
/* Exactly 44 characters of canonical base64 (trailing whitespace allowed). 0 or -EINVAL. */
int wg_key_from_base64(const char *s, uint8_t key[NL_WG_KEY_LEN]);
/* The private key in path (base64, one line, mode 0600).  -ENOENT when absent, -EINVAL
 * when it holds no key (never overwritten: a node's key is its identity). */
int wg_key_load(const char *path, uint8_t priv[NL_WG_KEY_LEN]);
/* Write priv to path atomically with mode 0600. 0 or -errno. */
int wg_key_save(const char *path, const uint8_t priv[NL_WG_KEY_LEN]);

/* ---- peers (pure; wg.c) ---- */
/* The SET_DEVICE peers that turn `have` into `want` (both keyed by public key): peers of
 * `have` not wanted get WGPEER_F_REMOVE_ME; wanted peers absent or different (endpoint,
 * port, keepalive, allowed IPs as a set) are sent whole with WGPEER_F_REPLACE_ALLOWEDIPS.
 * out->peers is malloc'ed (nl_wg_dev_free); removals come first. */
void wg_peers_diff(const struct nl_wg_peer *want, size_t nwant, const struct nl_wg_peer *have,
		   size_t nhave, struct nl_wg_dev *out);

/* ---- the device (wg.c) ---- */
struct wg_cfg {
	const char *key_file;	  /* <state-dir>/wireguard.key */
	const char *publish_file; /* <manifests>/.twill/wireguard.<node>.json */
	const char *node_name;
};
struct wg_dev;
struct wg_dev *wg_dev_new(const struct wg_cfg *cfg);
void wg_dev_free(struct wg_dev *w);
/* Key (loaded, adopted from an existing device, or generated), device (created if absent,
 * key and port set only when they differ), MTU and up; publishes the public key.  Returns
 * the device's ifindex or -errno (err says what failed; when only publishing failed, err
 * says so and the index is returned). nl: the route writer's socket. */
int wg_dev_ensure(struct wg_dev *w, struct nl_sock *nl, unsigned mtu, char *err, size_t errlen);
/* Make the device's peers exactly `want` (sends only the difference). 0 or -errno. */
int wg_dev_sync_peers(struct wg_dev *w, const struct nl_wg_peer *want, size_t n, char *err,
		      size_t errlen);
/* Read the device's peers again on the next sync (drift repair). */
void wg_dev_request_resync(struct wg_dev *w);
/* Encryption off: delete the device (if it is there) and withdraw the published key; the
 * key file stays.  0 or -errno. */
int wg_dev_remove(struct nl_sock *nl, const char *publish_file);
/* This node's public key in base64, "" until known. */
const char *wg_dev_public_key(const struct wg_dev *w);
