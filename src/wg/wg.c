/* wg: the WireGuard device twill.wg, its key and its peers; see wg.h. */
#include "wg/wg.h"

#include <errno.h>
#include <json-c/json.h>
#include <linux/wireguard.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "nl/nl_tunnel.h"

#define SUB "wireguard"

struct wg_dev {
	char *key_file, *publish_file, *node;
	bool have_key;
	uint8_t priv[NL_WG_KEY_LEN];
	char pub_b64[WG_KEY_B64_LEN + 1];
	struct nl_wg *gn;
	int ifindex;
	bool need_dump;
	struct nl_wg_peer *applied; /* the device's peers as last read or set */
	size_t napplied;
	char *published; /* content of publish_file as last written or read */
};

/* ---- peers ---- */

static int prefix_qcmp(const void *a, const void *b)
{
	return prefix_cmp(a, b);
}

static bool peer_same(const struct nl_wg_peer *a, const struct nl_wg_peer *b)
{
	if (!ip_eq(&a->endpoint, &b->endpoint) || a->port != b->port ||
	    a->keepalive != b->keepalive || a->nallowed != b->nallowed)
		return false;
	struct ipprefix x[NL_WG_MAX_ALLOWED], y[NL_WG_MAX_ALLOWED];
	memcpy(x, a->allowed, a->nallowed * sizeof(x[0]));
	memcpy(y, b->allowed, b->nallowed * sizeof(y[0]));
	qsort(x, a->nallowed, sizeof(x[0]), prefix_qcmp);
	qsort(y, b->nallowed, sizeof(y[0]), prefix_qcmp);
	for (size_t i = 0; i < a->nallowed; i++)
		if (!prefix_eq(&x[i], &y[i]))
			return false;
	return true;
}

static const struct nl_wg_peer *peer_by_key(const struct nl_wg_peer *v, size_t n,
					    const uint8_t key[NL_WG_KEY_LEN])
{
	for (size_t i = 0; i < n; i++)
		if (!memcmp(v[i].key, key, NL_WG_KEY_LEN))
			return &v[i];
	return NULL;
}

static void push_peer(struct nl_wg_dev *d, const struct nl_wg_peer *p)
{
	d->peers = xrealloc(d->peers, (d->npeers + 1) * sizeof(*d->peers));
	d->peers[d->npeers++] = *p;
}

void wg_peers_diff(const struct nl_wg_peer *want, size_t nwant, const struct nl_wg_peer *have,
		   size_t nhave, struct nl_wg_dev *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < nhave; i++) {
		if (peer_by_key(want, nwant, have[i].key))
			continue;
		struct nl_wg_peer p = {.flags = WGPEER_F_REMOVE_ME};
		memcpy(p.key, have[i].key, NL_WG_KEY_LEN);
		push_peer(out, &p);
	}
	for (size_t i = 0; i < nwant; i++) {
		if (peer_by_key(want, i, want[i].key))
			continue; /* a duplicate key: the first one wins */
		const struct nl_wg_peer *h = peer_by_key(have, nhave, want[i].key);
		if (h && peer_same(h, &want[i]))
			continue;
		struct nl_wg_peer p = want[i];
		p.flags = WGPEER_F_REPLACE_ALLOWEDIPS;
		push_peer(out, &p);
	}
}

/* ---- the device ---- */

struct wg_dev *wg_dev_new(const struct wg_cfg *cfg)
{
	struct wg_dev *w = xcalloc(1, sizeof(*w));
	w->key_file = xstrdup(cfg->key_file);
	w->publish_file = xstrdup(cfg->publish_file);
	w->node = xstrdup(cfg->node_name);
	w->need_dump = true;
	return w;
}

void wg_dev_free(struct wg_dev *w)
{
	if (!w)
		return;
	explicit_bzero(w->priv, sizeof(w->priv));
	nl_wg_close(w->gn);
	free(w->applied);
	free(w->published);
	free(w->key_file);
	free(w->publish_file);
	free(w->node);
	free(w);
}

void wg_dev_request_resync(struct wg_dev *w)
{
	w->need_dump = true;
}

const char *wg_dev_public_key(const struct wg_dev *w)
{
	return w->have_key ? w->pub_b64 : "";
}

static int open_genl(struct wg_dev *w, char *err, size_t errlen)
{
	if (w->gn)
		return 0;
	w->gn = nl_wg_open();
	if (w->gn)
		return 0;
	int r = -errno;
	snprintf(err, errlen, "generic netlink family %s: %s%s", WG_GENL_NAME, strerror(-r),
		 r == -ENOENT ? " (is the wireguard module available?)" : "");
	return r;
}

/* The key: the file's; else the one an existing device holds (the file was lost: keep
 * the node's identity); else a new one.  The file is written in the latter two cases. */
static int load_key(struct wg_dev *w, bool dev_exists, char *err, size_t errlen)
{
	if (w->have_key)
		return 0;
	int r = wg_key_load(w->key_file, w->priv);
	const char *how = "loaded";
	if (r == -ENOENT) {
		struct nl_wg_dev d = {0};
		if (dev_exists && open_genl(w, err, errlen) == 0 &&
		    nl_wg_get(w->gn, WG_DEV, &d) == 0 && d.has_private_key) {
			memcpy(w->priv, d.private_key, NL_WG_KEY_LEN);
			how = "adopted from " WG_DEV;
			r = 0;
		} else {
			r = wg_key_generate(w->priv);
			how = "generated";
		}
		explicit_bzero(d.private_key, sizeof(d.private_key));
		nl_wg_dev_free(&d);
		if (r == 0)
			r = wg_key_save(w->key_file, w->priv);
	}
	uint8_t pub[NL_WG_KEY_LEN];
	if (r == 0)
		r = wg_key_public(w->priv, pub);
	if (r < 0) {
		snprintf(err, errlen, "key file %s: %s", w->key_file,
			 r == -EINVAL ? "does not hold a WireGuard key (base64 of 32 bytes)"
				      : strerror(-r));
		return r;
	}
	wg_key_to_base64(pub, w->pub_b64);
	w->have_key = true;
	log_info(SUB, "key %s (%s); public key %s", how, w->key_file, w->pub_b64);
	return 0;
}

static char *publish_content(const struct wg_dev *w)
{
	json_object *ann = json_object_new_object();
	json_object_object_add(ann, WG_ANN_PUBLIC_KEY, json_object_new_string(w->pub_b64));
	json_object *meta = json_object_new_object();
	json_object_object_add(meta, "name", json_object_new_string(w->node));
	json_object_object_add(meta, "annotations", ann);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "apiVersion", json_object_new_string("v1"));
	json_object_object_add(o, "kind", json_object_new_string("Node"));
	json_object_object_add(o, "metadata", meta);
	char *s =
	    xasprintf("%s\n", json_object_to_json_string_ext(
				  o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return s;
}

/* The public key on this node's Node object, through the agent's own overlay file (the
 * controller's podCIDR overlay is another file; the store merges both). */
static int publish(struct wg_dev *w, char *err, size_t errlen)
{
	char *s = publish_content(w);
	if (!w->published) {
		size_t len;
		if (file_read(w->publish_file, &w->published, &len) < 0)
			w->published = NULL;
	}
	int r = 0;
	if (!w->published || strcmp(w->published, s)) {
		r = file_write_atomic(w->publish_file, s, strlen(s));
		if (r < 0) {
			snprintf(err, errlen, "publishing the public key in %s: %s",
				 w->publish_file, strerror(-r));
		} else {
			log_info(SUB, "published the public key in %s", w->publish_file);
			free(w->published);
			w->published = s;
			s = NULL;
		}
	}
	free(s);
	return r;
}

static void set_applied(struct wg_dev *w, const struct nl_wg_peer *v, size_t n)
{
	free(w->applied);
	w->applied = n ? xmalloc(n * sizeof(*v)) : NULL;
	if (n)
		memcpy(w->applied, v, n * sizeof(*v));
	w->napplied = n;
}

/* Read the device: its peers become what is applied; key and port are set when they are
 * not ours (a fresh device has neither). */
static int dump_device(struct wg_dev *w, char *err, size_t errlen)
{
	struct nl_wg_dev d = {0};
	int r = nl_wg_get(w->gn, WG_DEV, &d);
	if (r < 0) {
		snprintf(err, errlen, "reading %s: %s", WG_DEV, strerror(-r));
		return r;
	}
	bool key_ok = d.has_private_key && !memcmp(d.private_key, w->priv, NL_WG_KEY_LEN);
	bool port_ok = d.has_port && d.port == WG_PORT;
	explicit_bzero(d.private_key, sizeof(d.private_key));
	set_applied(w, d.peers, d.npeers);
	nl_wg_dev_free(&d);
	if (key_ok && port_ok)
		return 0;
	struct nl_wg_dev set = {.has_private_key = !key_ok, .has_port = true, .port = WG_PORT};
	memcpy(set.private_key, w->priv, NL_WG_KEY_LEN);
	r = nl_wg_set(w->gn, WG_DEV, &set);
	explicit_bzero(set.private_key, sizeof(set.private_key));
	if (r < 0) {
		snprintf(err, errlen, "setting the key and port of %s: %s", WG_DEV, strerror(-r));
		return r;
	}
	log_info(SUB, "%s: %s listen port %u", WG_DEV, key_ok ? "kept the key," : "set the key,",
		 WG_PORT);
	return 0;
}

int wg_dev_ensure(struct wg_dev *w, struct nl_sock *nl, unsigned mtu, char *err, size_t errlen)
{
	err[0] = '\0';
	struct nl_link l;
	int r = nl_link_get(nl, WG_DEV, &l);
	if (r < 0 && r != -ENODEV) {
		snprintf(err, errlen, "%s: %s", WG_DEV, strerror(-r));
		return r;
	}
	bool exists = r == 0;
	if (exists && strcmp(l.kind, "wireguard")) {
		snprintf(err, errlen, "%s is a %s device, not wireguard", WG_DEV,
			 l.kind[0] ? l.kind : "plain");
		return -EEXIST;
	}
	r = load_key(w, exists, err, errlen);
	if (r < 0)
		return r;
	if (!exists) {
		r = nl_link_add_kind(WG_DEV, "wireguard", mtu);
		if (r < 0 && r != -EEXIST) {
			snprintf(err, errlen, "creating %s: %s%s", WG_DEV, strerror(-r),
				 r == -EOPNOTSUPP ? " (no wireguard in this kernel)" : "");
			return r;
		}
		r = nl_link_get(nl, WG_DEV, &l);
		if (r < 0) {
			snprintf(err, errlen, "%s: %s", WG_DEV, strerror(-r));
			return r;
		}
		log_info(SUB, "created %s (mtu %u)", WG_DEV, mtu);
	}
	if (l.index != w->ifindex) {
		w->ifindex = l.index;
		w->need_dump = true;
	}
	r = open_genl(w, err, errlen);
	if (r < 0)
		return r;
	if (w->need_dump) {
		r = dump_device(w, err, errlen);
		if (r < 0)
			return r;
		w->need_dump = false;
	}
	if (mtu && l.mtu != mtu) {
		r = nl_link_set_mtu(nl, l.index, mtu);
		if (r < 0) {
			snprintf(err, errlen, "%s: mtu %u: %s", WG_DEV, mtu, strerror(-r));
			return r;
		}
		log_info(SUB, "%s: mtu %u -> %u", WG_DEV, l.mtu, mtu);
	}
	if (!l.up) {
		r = nl_link_set_up(nl, l.index, true);
		if (r < 0) {
			snprintf(err, errlen, "%s: up: %s", WG_DEV, strerror(-r));
			return r;
		}
	}
	publish(w, err, errlen); /* the device works without: only reported */
	return l.index;
}

int wg_dev_sync_peers(struct wg_dev *w, const struct nl_wg_peer *want, size_t n, char *err,
		      size_t errlen)
{
	err[0] = '\0';
	if (!w->gn || w->need_dump) {
		snprintf(err, errlen, "%s is not ready", WG_DEV);
		return -ENODEV;
	}
	struct nl_wg_dev d;
	wg_peers_diff(want, n, w->applied, w->napplied, &d);
	int r = 0;
	if (d.npeers) {
		r = nl_wg_set(w->gn, WG_DEV, &d);
		size_t nrm = 0;
		for (size_t i = 0; i < d.npeers; i++)
			nrm += (d.peers[i].flags & WGPEER_F_REMOVE_ME) != 0;
		if (r < 0) {
			snprintf(err, errlen, "setting %zu peers of %s: %s", d.npeers, WG_DEV,
				 strerror(-r));
			w->need_dump = true;
		} else {
			log_info(SUB, "%s: %zu peers set, %zu removed (%zu peers)", WG_DEV,
				 d.npeers - nrm, nrm, n);
			set_applied(w, want, n);
		}
	}
	nl_wg_dev_free(&d);
	return r;
}

int wg_dev_remove(struct nl_sock *nl, const char *publish_file)
{
	if (publish_file && unlink(publish_file) == 0)
		log_info(SUB, "encryption is off: withdrew the public key (%s)", publish_file);
	struct nl_link l;
	int r = nl_link_get(nl, WG_DEV, &l);
	if (r == -ENODEV)
		return 0;
	if (r < 0)
		return r;
	if (strcmp(l.kind, "wireguard"))
		return 0; /* not ours */
	r = nl_link_del(nl, l.index);
	if (r < 0 && r != -ENODEV)
		return r;
	log_info(SUB, "encryption is off: deleted %s", WG_DEV);
	return 0;
}
