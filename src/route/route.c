/* route: the cross-node route planner (store side) and its dataplane writer (kernel side).
 *
 * Planner: subscribes to Node objects.  An event for a remote Node recomputes only that
 * node's entries (route_plan_peer, pure); an event for this node, or a change of this
 * node's addresses or of the VXLAN device, recomputes every peer.
 * Writer: on the first sync (and after an error, and every resync period) it dumps what
 * twill owns in the kernel -- IPv4 routes with protocol TWILL_RTPROT_NODE in the main
 * table, permanent neighbours and FDB entries of twill.<VNI> -- and afterwards tracks what
 * it applied.  Each sync diffs desired against that (rt_diff) and sends only deletions,
 * replacements and additions, so a restarted agent changes nothing that is already right.
 * Nothing without twill's marker is listed, changed or deleted. */
#include <errno.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lib/consts.h"
#include "lib/log.h"
#include "lib/util.h"
#include "nl/nl.h"
#include "nl/nl_tunnel.h"
#include "route/route.h"
#include "wg/wg.h"

#define SUB "route"
#define MAX_ERRORS 32
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 30000

struct peer {
	char *name;
	struct route_peer_in in;
	bool stale; /* entries must be recomputed */
	enum route_via via;
	char status[320];
	struct rt_set entries;
};

struct route_planner {
	struct store *store;
	struct route_cfg cfg;
	char *node_name;
	char *wg_key_file, *wg_publish_file; /* the copies cfg points to */
	char vxname[IFNAMSIZ];
	struct nl_sock *nl;

	/* this node, from its Node object */
	bool self_known;
	struct ipaddr self_ip;
	size_t nself_cidrs;
	struct ipprefix self_cidrs[2];
	bool self_has_mac;
	uint8_t self_mac[6];

	/* this node, from the kernel */
	struct route_conn *conn;
	size_t nconn;
	int underlay_index;
	unsigned underlay_mtu;
	int vx_index;
	int ipip_index;	   /* tunl0 while the mode uses it */
	struct wg_dev *wg; /* --encrypt wireguard */
	int wg_index;	   /* twill.wg while it is ready */
	bool wg_removed;   /* encryption off: the device and the published key are gone */

	struct peer **peers; /* sorted by name */
	size_t npeers;

	bool dirty, need_dump, replan_all, synced_once;
	struct rt_set applied;
	monotime_t retry_at;
	unsigned backoff_ms;

	char *errors[MAX_ERRORS + 1];
	size_t nerrors;
	char *last_self_problem; /* logged once */
};

static void add_error(struct route_planner *rp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add_error(struct route_planner *rp, const char *fmt, ...)
{
	if (rp->nerrors >= MAX_ERRORS)
		return;
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	if (s)
		rp->errors[rp->nerrors++] = s;
	rp->errors[rp->nerrors] = NULL;
}

static void clear_errors(struct route_planner *rp)
{
	for (size_t i = 0; i < rp->nerrors; i++)
		free(rp->errors[i]);
	rp->nerrors = 0;
	rp->errors[0] = NULL;
}

/* ---- peers ---- */

static size_t peer_find(const struct route_planner *rp, const char *name, bool *found)
{
	size_t lo = 0, hi = rp->npeers;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(rp->peers[mid]->name, name);
		if (!c) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static void peer_free(struct peer *p)
{
	if (!p)
		return;
	free(p->name);
	rt_set_free(&p->entries);
	free(p);
}

static void node_to_peer_in(const struct object *o, struct route_peer_in *in)
{
	memset(in, 0, sizeof(*in));
	const struct ipaddr *ip = node_ip(&o->node, AF_INET);
	if (ip)
		in->ip = *ip;
	in->npod_cidrs = o->node.npod_cidrs > 2 ? 2 : o->node.npod_cidrs;
	for (size_t i = 0; i < in->npod_cidrs; i++)
		in->pod_cidrs[i] = o->node.pod_cidrs[i];
	const char *mac = labels_get(&o->meta.annotations, TWILL_ANN_VTEP_MAC);
	if (mac) {
		if (route_mac_parse(mac, in->mac) == 0)
			in->has_mac = true;
		else
			log_warn(SUB, "Node %s: ignoring invalid %s annotation '%s'", o->meta.name,
				 TWILL_ANN_VTEP_MAC, mac);
	}
	const char *key = labels_get(&o->meta.annotations, WG_ANN_PUBLIC_KEY);
	if (key) {
		if (wg_key_from_base64(key, in->wg_key) == 0)
			in->has_wg_key = true;
		else
			log_warn(SUB, "Node %s: ignoring invalid %s annotation '%s'", o->meta.name,
				 WG_ANN_PUBLIC_KEY, key);
	}
}

static void self_update(struct route_planner *rp, const struct object *o)
{
	if (!o) {
		rp->self_known = false;
		memset(&rp->self_ip, 0, sizeof(rp->self_ip));
		rp->nself_cidrs = 0;
		rp->self_has_mac = false;
	} else {
		struct route_peer_in in;
		node_to_peer_in(o, &in);
		rp->self_known = true;
		rp->self_ip = in.ip;
		rp->nself_cidrs = in.npod_cidrs;
		memcpy(rp->self_cidrs, in.pod_cidrs, sizeof(rp->self_cidrs));
		rp->self_has_mac = in.has_mac;
		memcpy(rp->self_mac, in.mac, 6);
	}
	rp->replan_all = true;
	rp->dirty = true;
	rp->retry_at = 0; /* news may fix what failed: no need to sit out the backoff */
}

static void on_node(void *arg, enum store_event ev, const struct object *old,
		    const struct object *new_obj)
{
	struct route_planner *rp = arg;
	const struct object *o = new_obj ? new_obj : old;
	if (!o || !o->meta.name)
		return;
	if (!strcmp(o->meta.name, rp->node_name)) {
		self_update(rp, ev == STORE_REMOVED ? NULL : new_obj);
		return;
	}
	bool found;
	size_t i = peer_find(rp, o->meta.name, &found);
	if (ev == STORE_REMOVED) {
		if (found) {
			log_info(SUB, "node %s removed", o->meta.name);
			peer_free(rp->peers[i]);
			memmove(&rp->peers[i], &rp->peers[i + 1],
				(rp->npeers - i - 1) * sizeof(rp->peers[0]));
			rp->npeers--;
			rp->dirty = true;
		}
		return;
	}
	struct peer *p;
	if (found) {
		p = rp->peers[i];
	} else {
		p = xcalloc(1, sizeof(*p));
		p->name = xstrdup(o->meta.name);
		rp->peers = xrealloc(rp->peers, (rp->npeers + 1) * sizeof(rp->peers[0]));
		memmove(&rp->peers[i + 1], &rp->peers[i], (rp->npeers - i) * sizeof(rp->peers[0]));
		rp->peers[i] = p;
		rp->npeers++;
	}
	node_to_peer_in(new_obj, &p->in);
	p->in.name = p->name;
	p->stale = true;
	rp->dirty = true;
	rp->retry_at = 0;
}

/* ---- public ---- */

struct route_planner *route_planner_new(struct store *s, const struct route_cfg *cfg)
{
	struct route_planner *rp = xcalloc(1, sizeof(*rp));
	rp->store = s;
	rp->cfg = *cfg;
	rp->node_name = xstrdup(cfg->node_name);
	rp->cfg.node_name = rp->node_name;
	rp->cfg.wg_key_file = rp->wg_key_file = xstrdup(cfg->wg_key_file);
	rp->cfg.wg_publish_file = rp->wg_publish_file = xstrdup(cfg->wg_publish_file);
	if (!rp->cfg.vni)
		rp->cfg.vni = TWILL_VXLAN_DEFAULT_VNI;
	if (!rp->cfg.port)
		rp->cfg.port = TWILL_VXLAN_DEFAULT_PORT;
	rp->cfg.vni &= 0xffffff; /* VNIs are 24 bits (which also keeps the name in IFNAMSIZ) */
	snprintf(rp->vxname, sizeof(rp->vxname), TWILL_VXLAN_DEV_FMT, rp->cfg.vni);
	rp->need_dump = true;
	rp->dirty = true;
	rp->errors[0] = NULL;
	if (cfg->encrypt == ROUTE_ENCRYPT_WIREGUARD) {
		struct wg_cfg wc = {.key_file = cfg->wg_key_file,
				    .publish_file = cfg->wg_publish_file,
				    .node_name = rp->node_name};
		rp->wg = wg_dev_new(&wc);
	}
	store_subscribe(s, KIND_BIT(KIND_NODE), on_node, rp);
	return rp;
}

void route_planner_free(struct route_planner *rp)
{
	if (!rp)
		return;
	for (size_t i = 0; i < rp->npeers; i++)
		peer_free(rp->peers[i]);
	free(rp->peers);
	free(rp->conn);
	wg_dev_free(rp->wg);
	rt_set_free(&rp->applied);
	clear_errors(rp);
	free(rp->last_self_problem);
	free(rp->node_name);
	free(rp->wg_key_file);
	free(rp->wg_publish_file);
	if (rp->nl)
		nl_close(rp->nl);
	free(rp);
}

bool route_planner_dirty(const struct route_planner *rp)
{
	return rp->dirty && monotime_now() >= rp->retry_at;
}

void route_planner_request_resync(struct route_planner *rp)
{
	rp->need_dump = true;
	rp->dirty = true;
	if (rp->wg)
		wg_dev_request_resync(rp->wg);
}

static unsigned wg_overhead(const struct route_planner *rp)
{
	return rp->self_ip.family == AF_INET6 ? WG_OVERHEAD_V6 : WG_OVERHEAD_V4;
}

unsigned route_planner_overhead(const struct route_planner *rp)
{
	unsigned o = route_mode_overhead(rp->cfg.mode);
	if (rp->cfg.encrypt == ROUTE_ENCRYPT_WIREGUARD && wg_overhead(rp) > o)
		o = wg_overhead(rp);
	return o;
}

const char *route_planner_wg_public_key(const struct route_planner *rp)
{
	return rp->wg ? wg_dev_public_key(rp->wg) : "";
}

unsigned route_planner_underlay_mtu(const struct route_planner *rp)
{
	return rp->underlay_mtu;
}

const char *const *route_planner_errors(const struct route_planner *rp)
{
	return (const char *const *)rp->errors;
}

int route_planner_foreach_peer(const struct route_planner *rp,
			       int (*fn)(const struct route_peer_info *p, void *arg), void *arg)
{
	for (size_t i = 0; i < rp->npeers; i++) {
		const struct peer *p = rp->peers[i];
		struct route_peer_info info = {
		    .node = p->name,
		    .ip = p->in.ip,
		    .npod_cidrs = p->in.npod_cidrs,
		    .pod_cidrs = p->in.pod_cidrs,
		    .via = p->via,
		    .status = p->status[0] ? p->status : "unroutable: not planned yet",
		};
		int r = fn(&info, arg);
		if (r)
			return r;
	}
	return 0;
}

/* ---- kernel facts ---- */

struct link_info {
	int index;
	char name[IFNAMSIZ];
	unsigned mtu;
};
struct scan {
	struct link_info *links;
	size_t nlinks;
	struct route_conn *conn;
	size_t nconn;
	struct route_planner *rp;
};

static int scan_link(const struct nl_link *l, void *arg)
{
	struct scan *sc = arg;
	sc->links = xrealloc(sc->links, (sc->nlinks + 1) * sizeof(*sc->links));
	struct link_info *li = &sc->links[sc->nlinks++];
	li->index = l->index;
	memcpy(li->name, l->name, IFNAMSIZ);
	li->name[IFNAMSIZ - 1] = '\0';
	li->mtu = l->mtu;
	return 0;
}

static const struct link_info *scan_link_by_index(const struct scan *sc, int index)
{
	for (size_t i = 0; i < sc->nlinks; i++)
		if (sc->links[i].index == index)
			return &sc->links[i];
	return NULL;
}

/* Interfaces twill itself creates carry pod or overlay subnets, never the underlay. */
static bool twill_owned_link(const char *name)
{
	return str_has_prefix(name, "twill.") || !strcmp(name, TWILL_BRIDGE_DEFAULT) ||
	       !strcmp(name, ROUTE_IPIP_DEV) ||
	       (str_has_prefix(name, TWILL_VETH_PREFIX) && strlen(name) == 14);
}

static int scan_addr(const struct nl_addr *a, void *arg)
{
	struct scan *sc = arg;
	struct route_planner *rp = sc->rp;
	if (a->prefix.addr.family != AF_INET)
		return 0;
	if (ip_is_set(&rp->self_ip) && ip_eq(&a->prefix.addr, &rp->self_ip))
		rp->underlay_index = a->index;
	if (a->scope >= RT_SCOPE_HOST || a->prefix.len >= 32)
		return 0;
	const struct link_info *li = scan_link_by_index(sc, a->index);
	if (!li || twill_owned_link(li->name))
		return 0;
	sc->conn = xrealloc(sc->conn, (sc->nconn + 1) * sizeof(*sc->conn));
	struct route_conn *c = &sc->conn[sc->nconn++];
	c->prefix = a->prefix;
	prefix_normalize(&c->prefix);
	c->ifindex = a->index;
	return 0;
}

static int conn_cmp(const void *a, const void *b)
{
	const struct route_conn *x = a, *y = b;
	int c = prefix_cmp(&x->prefix, &y->prefix);
	return c ? c : (x->ifindex > y->ifindex) - (x->ifindex < y->ifindex);
}

/* Re-read links and addresses; replans everything when the connected subnets changed. */
static int scan_kernel(struct route_planner *rp)
{
	struct scan sc = {.rp = rp};
	int r = nl_link_dump(rp->nl, scan_link, &sc);
	if (r < 0)
		goto out;
	int old_underlay = rp->underlay_index;
	rp->underlay_index = 0;
	r = nl_addr_dump(rp->nl, AF_INET, 0, scan_addr, &sc);
	if (r < 0) {
		rp->underlay_index = old_underlay;
		goto out;
	}
	const struct link_info *ul = scan_link_by_index(&sc, rp->underlay_index);
	rp->underlay_mtu = ul ? ul->mtu : 0;
	if (sc.nconn)
		qsort(sc.conn, sc.nconn, sizeof(*sc.conn), conn_cmp);
	if (sc.nconn != rp->nconn ||
	    (sc.nconn && memcmp(sc.conn, rp->conn, sc.nconn * sizeof(*sc.conn))) ||
	    old_underlay != rp->underlay_index) {
		free(rp->conn);
		rp->conn = sc.conn;
		rp->nconn = sc.nconn;
		sc.conn = NULL;
		rp->replan_all = true;
	}
out:
	free(sc.conn);
	free(sc.links);
	return r;
}

/* ---- the VXLAN device ---- */

static bool want_vxlan(const struct route_planner *rp)
{
	return rp->cfg.mode == ROUTE_VXLAN || rp->cfg.mode == ROUTE_MIXED;
}

struct vxaddr_scan {
	struct nl_addr have[8];
	size_t n;
};

static int collect_vxaddr(const struct nl_addr *a, void *arg)
{
	struct vxaddr_scan *v = arg;
	if (v->n < ARRAY_SIZE(v->have))
		v->have[v->n++] = *a;
	return 0;
}

static void set_vx_index(struct route_planner *rp, int index)
{
	if (rp->vx_index != index) {
		rp->vx_index = index;
		rp->replan_all = true;
		rp->need_dump = true; /* the device's neighbours and FDB came or went with it */
	}
}

/* The address of an overlay device (twill.<VNI>, tunl0): the network address of this
 * node's first IPv4 podCIDR as /32 (Flannel's VTEP address, Calico's tunnel address), so
 * the node's own packets into the overlay have a source the other nodes route back. */
static int ensure_overlay_addr(struct route_planner *rp, int index, const char *name)
{
	struct nl_addr want = {.index = index, .scope = RT_SCOPE_UNIVERSE};
	bool have_want = false;
	for (size_t i = 0; i < rp->nself_cidrs; i++) {
		if (rp->self_cidrs[i].addr.family != AF_INET)
			continue;
		struct ipprefix p = rp->self_cidrs[i];
		prefix_normalize(&p);
		want.prefix.addr = p.addr;
		want.prefix.len = 32;
		have_want = true;
		break;
	}
	struct vxaddr_scan vs = {.n = 0};
	int r = nl_addr_dump(rp->nl, AF_INET, index, collect_vxaddr, &vs);
	if (r < 0)
		return r;
	bool present = false;
	for (size_t i = 0; i < vs.n; i++) {
		if (vs.have[i].index != index)
			continue;
		if (have_want && prefix_eq(&vs.have[i].prefix, &want.prefix)) {
			present = true;
			continue;
		}
		r = nl_addr_del(rp->nl, &vs.have[i]);
		if (r < 0 && r != -EADDRNOTAVAIL && r != -ENOENT)
			return r;
	}
	if (have_want && !present) {
		r = nl_addr_add(rp->nl, &want);
		if (r < 0)
			return r;
		char a[IP_STRLEN];
		log_info(SUB, "%s: address %s", name, prefix_fmt(&want.prefix, a));
	}
	return 0;
}

static int ensure_vxlan(struct route_planner *rp)
{
	struct nl_link l;
	int r = nl_link_get(rp->nl, rp->vxname, &l);
	if (r < 0 && r != -ENODEV)
		return r;
	bool exists = r == 0;

	if (!want_vxlan(rp)) {
		if (exists) {
			log_info(SUB, "routing is %s: removing %s", route_mode_name(rp->cfg.mode),
				 rp->vxname);
			r = nl_link_del(rp->nl, l.index);
			if (r < 0 && r != -ENODEV)
				return r;
		}
		set_vx_index(rp, 0);
		return 0;
	}
	if (!ip_is_set(&rp->self_ip) || !rp->underlay_index || !rp->underlay_mtu) {
		/* Not enough known to build it; keep an existing device as it is. */
		set_vx_index(rp, exists ? l.index : 0);
		return 0;
	}

	uint8_t mac[6];
	if (rp->self_has_mac)
		memcpy(mac, rp->self_mac, 6);
	else
		route_vtep_mac(&rp->self_ip, mac);
	unsigned mtu = rp->underlay_mtu > TWILL_VXLAN_OVERHEAD + 68
			   ? rp->underlay_mtu - TWILL_VXLAN_OVERHEAD
			   : 68;

	if (exists) {
		bool ok = !strcmp(l.kind, "vxlan") && l.vxlan_id == rp->cfg.vni &&
			  l.vxlan_port == rp->cfg.port && ip_eq(&l.vxlan_local, &rp->self_ip) &&
			  l.vxlan_dev == rp->underlay_index && !l.vxlan_learning;
		if (!ok) {
			log_info(SUB, "%s has other parameters than wanted: recreating it",
				 rp->vxname);
			r = nl_link_del(rp->nl, l.index);
			if (r < 0 && r != -ENODEV)
				return r;
			exists = false;
		}
	}
	if (!exists) {
		struct nl_vxlan vx = {
		    .vni = rp->cfg.vni,
		    .port = rp->cfg.port,
		    .local = rp->self_ip,
		    .dev = rp->underlay_index,
		    .mtu = mtu,
		    .learning = false,
		    .mac = mac,
		};
		r = nl_link_add_vxlan(rp->nl, rp->vxname, &vx);
		if (r < 0)
			return r;
		r = nl_link_get(rp->nl, rp->vxname, &l);
		if (r < 0)
			return r;
		char a[IP_STRLEN];
		log_info(SUB, "created %s (vni %u, port %u, local %s, mtu %u)", rp->vxname,
			 rp->cfg.vni, rp->cfg.port, ip_fmt(&rp->self_ip, a), mtu);
	}
	set_vx_index(rp, l.index);
	if (l.mtu != mtu) {
		r = nl_link_set_mtu(rp->nl, l.index, mtu);
		if (r < 0)
			return r;
		log_info(SUB, "%s: mtu %u -> %u", rp->vxname, l.mtu, mtu);
	}
	if (memcmp(l.mac, mac, 6)) {
		r = nl_link_set_mac(rp->nl, l.index, mac);
		if (r < 0)
			return r;
		log_info(SUB, "%s: set VTEP MAC", rp->vxname);
	}

	r = ensure_overlay_addr(rp, l.index, rp->vxname);
	if (r < 0)
		return r;
	if (!l.up) {
		r = nl_link_set_up(rp->nl, l.index, true);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- the IPIP device ---- */

static bool want_ipip(const struct route_planner *rp)
{
	return rp->cfg.mode == ROUTE_IPIP || rp->cfg.mode == ROUTE_IPIP_CROSSSUBNET;
}

static void set_ipip_index(struct route_planner *rp, int index)
{
	if (rp->ipip_index != index) {
		rp->ipip_index = index;
		rp->replan_all = true;
	}
}

/* tunl0 is the ipip module's fallback device: the kernel makes it in every namespace when
 * the module loads (creating any ipip link loads it) and it cannot be deleted, so in other
 * modes twill only stops routing through it (its routes go with the diff). */
static int ensure_ipip(struct route_planner *rp)
{
	if (!want_ipip(rp)) {
		set_ipip_index(rp, 0);
		return 0;
	}
	struct nl_link l;
	int r = nl_link_get(rp->nl, ROUTE_IPIP_DEV, &l);
	if (r < 0 && r != -ENODEV)
		return r;
	if (!ip_is_set(&rp->self_ip) || !rp->underlay_index || !rp->underlay_mtu) {
		/* Not this node's namespace yet (its InternalIP is on no interface): make
		 * nothing; keep routing through a tunl0 that is there. */
		set_ipip_index(rp, r == 0 && !strcmp(l.kind, "ipip") ? l.index : 0);
		return 0;
	}
	if (r == -ENODEV) {
		r = nl_link_add_kind(ROUTE_IPIP_DEV, "ipip", 0);
		if (r < 0 && r != -EEXIST)
			return r;
		r = nl_link_get(rp->nl, ROUTE_IPIP_DEV, &l);
		if (r == 0)
			log_info(SUB, "created %s", ROUTE_IPIP_DEV);
	}
	if (r < 0)
		return r;
	if (strcmp(l.kind, "ipip")) {
		add_error(rp, "%s is a %s device, not ipip", ROUTE_IPIP_DEV,
			  l.kind[0] ? l.kind : "plain");
		return -EEXIST;
	}
	if (rp->underlay_mtu) {
		unsigned mtu = rp->underlay_mtu > ROUTE_IPIP_OVERHEAD + 68
				   ? rp->underlay_mtu - ROUTE_IPIP_OVERHEAD
				   : 68;
		if (l.mtu != mtu) {
			r = nl_link_set_mtu(rp->nl, l.index, mtu);
			if (r < 0)
				return r;
			log_info(SUB, "%s: mtu %u -> %u", ROUTE_IPIP_DEV, l.mtu, mtu);
		}
	}
	r = ensure_overlay_addr(rp, l.index, ROUTE_IPIP_DEV);
	if (r < 0)
		return r;
	if (!l.up) {
		r = nl_link_set_up(rp->nl, l.index, true);
		if (r < 0)
			return r;
	}
	set_ipip_index(rp, l.index);
	return 0;
}

/* ---- the WireGuard device ---- */

static void set_wg_index(struct route_planner *rp, int index)
{
	if (rp->wg_index != index) {
		rp->wg_index = index;
		rp->replan_all = true;
		rp->need_dump = true; /* the routes through a device that went are gone */
	}
}

/* Encryption on: twill.wg (wg.h) with this node's overlay address; off: no device and no
 * published key.  Without the device the peers are routed by the mode. */
static int ensure_wg(struct route_planner *rp)
{
	int r;
	if (!rp->wg) {
		if (!rp->wg_removed) {
			r = wg_dev_remove(rp->nl, rp->cfg.wg_publish_file);
			if (r < 0) {
				add_error(rp, "removing %s: %s", WG_DEV, strerror(-r));
				return r;
			}
			rp->wg_removed = true;
		}
		set_wg_index(rp, 0);
		return 0;
	}
	if (!ip_is_set(&rp->self_ip) || !rp->underlay_index || !rp->underlay_mtu) {
		set_wg_index(rp, 0); /* not this node's namespace yet */
		return 0;
	}
	unsigned mtu =
	    rp->underlay_mtu > wg_overhead(rp) + 68 ? rp->underlay_mtu - wg_overhead(rp) : 68;
	char err[320];
	int index = wg_dev_ensure(rp->wg, rp->nl, mtu, err, sizeof(err));
	if (index < 0) {
		add_error(rp, "WireGuard: %s", err);
		log_error(SUB, "WireGuard: %s", err);
		set_wg_index(rp, 0);
		return index;
	}
	r = ensure_overlay_addr(rp, index, WG_DEV);
	if (r < 0) {
		add_error(rp, "%s: address: %s", WG_DEV, strerror(-r));
		set_wg_index(rp, 0);
		return r;
	}
	set_wg_index(rp, index);
	if (err[0]) {
		add_error(rp, "WireGuard: %s", err);
		log_error(SUB, "WireGuard: %s", err);
		return -EIO;
	}
	return 0;
}

/* The device's peers: every node routed through it. */
static int sync_wg_peers(struct route_planner *rp)
{
	if (!rp->wg || rp->wg_index <= 0)
		return 0;
	struct nl_wg_peer *v = xcalloc(rp->npeers ? rp->npeers : 1, sizeof(*v));
	size_t n = 0;
	for (size_t i = 0; i < rp->npeers; i++) {
		const struct peer *p = rp->peers[i];
		if (p->via != ROUTE_VIA_WIREGUARD)
			continue;
		struct nl_wg_peer *w = &v[n++];
		memcpy(w->key, p->in.wg_key, sizeof(w->key));
		w->endpoint = p->in.ip;
		w->port = WG_PORT;
		for (size_t j = 0; j < p->in.npod_cidrs && w->nallowed < NL_WG_MAX_ALLOWED; j++) {
			if (p->in.pod_cidrs[j].addr.family != AF_INET)
				continue;
			w->allowed[w->nallowed] = p->in.pod_cidrs[j];
			prefix_normalize(&w->allowed[w->nallowed++]);
		}
	}
	char err[320];
	int r = wg_dev_sync_peers(rp->wg, v, n, err, sizeof(err));
	free(v);
	if (r < 0) {
		add_error(rp, "WireGuard: %s", err);
		log_error(SUB, "WireGuard: %s", err);
	}
	return r;
}

/* ---- dump what twill owns ---- */

static int dump_route(const struct nl_route *r, void *arg)
{
	struct rt_set *s = arg;
	if (r->protocol != TWILL_RTPROT_NODE || r->dst.addr.family != AF_INET)
		return 0;
	if (r->table && r->table != RT_TABLE_MAIN)
		return 0;
	struct rt_entry e = {.kind = RT_ROUTE, .dst = r->dst, .gw = r->gw, .oif = r->oif};
	prefix_normalize(&e.dst);
	e.onlink = (r->flags & RTNH_F_ONLINK) != 0;
	e.priority = r->priority;
	rt_set_add(s, &e);
	return 0;
}

struct neigh_dump {
	struct rt_set *s;
	int index;
};

static int dump_neigh(const struct nl_neigh *n, void *arg)
{
	struct neigh_dump *d = arg;
	if (n->index != d->index || !(n->state & NUD_PERMANENT) || !n->has_lladdr)
		return 0;
	if (n->family == AF_INET) {
		if (n->dst.family != AF_INET)
			return 0;
		struct rt_entry e = {.kind = RT_NEIGH, .oif = n->index};
		e.dst.addr = n->dst;
		e.dst.len = 32;
		memcpy(e.mac, n->lladdr, 6);
		rt_set_add(d->s, &e);
	} else if (n->family == AF_BRIDGE) {
		static const uint8_t zero[6];
		/* multicast and the all-zero default destination are not per-node entries */
		if ((n->lladdr[0] & 1) || !memcmp(n->lladdr, zero, 6) || !ip_is_set(&n->dst))
			return 0;
		struct rt_entry e = {.kind = RT_FDB, .oif = n->index, .gw = n->dst};
		memcpy(e.mac, n->lladdr, 6);
		rt_set_add(d->s, &e);
	}
	return 0;
}

static int dump_kernel(struct route_planner *rp, struct rt_set *out)
{
	rt_set_clear(out);
	int r = nl_route_dump(rp->nl, AF_INET, RT_TABLE_MAIN, TWILL_RTPROT_NODE, dump_route, out);
	if (r < 0)
		return r;
	if (rp->vx_index > 0) {
		struct neigh_dump d = {.s = out, .index = rp->vx_index};
		r = nl_neigh_dump(rp->nl, AF_INET, rp->vx_index, dump_neigh, &d);
		if (r < 0)
			return r;
		r = nl_neigh_dump(rp->nl, AF_BRIDGE, rp->vx_index, dump_neigh, &d);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- apply ---- */

static struct nl_route to_nl_route(const struct rt_entry *e)
{
	struct nl_route r = {
	    .dst = e->dst,
	    .gw = e->gw,
	    .oif = e->oif,
	    .protocol = TWILL_RTPROT_NODE,
	    /* a route into a device (WireGuard) has no gateway: the link is its scope */
	    .scope = ip_is_set(&e->gw) ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK,
	    .type = RTN_UNICAST,
	    .table = RT_TABLE_MAIN,
	    .flags = e->onlink ? RTNH_F_ONLINK : 0,
	    .priority = e->priority,
	};
	return r;
}

static struct nl_neigh to_nl_neigh(const struct rt_entry *e)
{
	struct nl_neigh n = {.index = e->oif, .has_lladdr = true, .state = NUD_PERMANENT};
	memcpy(n.lladdr, e->mac, 6);
	if (e->kind == RT_NEIGH) {
		n.family = AF_INET;
		n.dst = e->dst.addr;
	} else {
		n.family = AF_BRIDGE;
		n.dst = e->gw;
		n.flags = NTF_SELF;
	}
	return n;
}

enum op { OP_DEL, OP_REPLACE, OP_ADD };

static int apply_one(struct route_planner *rp, enum op op, const struct rt_entry *e)
{
	int r;
	if (e->kind == RT_ROUTE) {
		struct nl_route nr = to_nl_route(e);
		if (op == OP_DEL)
			r = nl_route_del(rp->nl, &nr);
		else
			r = nl_route_add(rp->nl, &nr,
					 op == OP_ADD ? NLM_F_CREATE | NLM_F_EXCL
						      : NLM_F_CREATE | NLM_F_REPLACE);
		if (op == OP_DEL && r == -ESRCH)
			r = 0; /* already gone */
	} else {
		struct nl_neigh nn = to_nl_neigh(e);
		if (op == OP_DEL) {
			r = nl_neigh_del(rp->nl, &nn);
			if (r == -ENOENT)
				r = 0;
		} else {
			r = nl_neigh_replace(rp->nl, &nn);
		}
	}
	char buf[160];
	static const char *verb[] = {"deleted", "replaced", "added"};
	if (r < 0) {
		const char *hint = (r == -EEXIST && e->kind == RT_ROUTE)
				       ? " (a route for it exists that twill does not own)"
				       : "";
		log_error(SUB, "%s %s: %s%s", op == OP_DEL ? "delete" : "install",
			  rt_entry_fmt(e, buf, sizeof(buf)), strerror(-r), hint);
		add_error(rp, "%s %s: %s%s", op == OP_DEL ? "delete" : "install",
			  rt_entry_fmt(e, buf, sizeof(buf)), strerror(-r), hint);
	} else {
		log_info(SUB, "%s %s", verb[op], rt_entry_fmt(e, buf, sizeof(buf)));
	}
	return r;
}

static void replan(struct route_planner *rp)
{
	struct route_self self = {
	    .mode = rp->cfg.mode,
	    .ip = rp->self_ip,
	    .conn = rp->conn,
	    .nconn = rp->nconn,
	    .vxlan_index = rp->vx_index,
	    .ipip_index = rp->ipip_index,
	    .wg_index = rp->wg_index,
	};
	for (size_t i = 0; i < rp->npeers; i++) {
		struct peer *p = rp->peers[i];
		if (!p->stale && !rp->replan_all)
			continue;
		p->stale = false;
		rt_set_clear(&p->entries);
		char why[256];
		p->via = route_plan_peer(&self, &p->in, &p->entries, why, sizeof(why));
		char status[sizeof(p->status)];
		if (p->via == ROUTE_VIA_NONE)
			snprintf(status, sizeof(status), "unroutable: %s", why);
		else
			snprintf(status, sizeof(status), "ok");
		if (strcmp(status, p->status)) {
			/* A podCIDR still to be allocated is a normal transient state. */
			if (p->via == ROUTE_VIA_NONE && str_has_prefix(why, "no podCIDR"))
				log_info(SUB, "node %s: %s", p->name, status);
			else if (p->via == ROUTE_VIA_NONE)
				log_warn(SUB, "node %s: %s", p->name, status);
			else
				log_info(SUB, "node %s: via %s", p->name, route_via_name(p->via));
			snprintf(p->status, sizeof(p->status), "%s", status);
		}
	}
	rp->replan_all = false;
}

static void self_problem(struct route_planner *rp, const char *msg)
{
	if (!msg) {
		free(rp->last_self_problem);
		rp->last_self_problem = NULL;
		return;
	}
	if (!rp->last_self_problem || strcmp(rp->last_self_problem, msg))
		log_warn(SUB, "%s", msg);
	free(rp->last_self_problem);
	rp->last_self_problem = xstrdup(msg);
	add_error(rp, "%s", msg);
}

static void failed(struct route_planner *rp)
{
	rp->need_dump = true; /* the kernel is the truth after a failure */
	rp->backoff_ms = rp->backoff_ms ? rp->backoff_ms * 2 : BACKOFF_MIN_MS;
	if (rp->backoff_ms > BACKOFF_MAX_MS)
		rp->backoff_ms = BACKOFF_MAX_MS;
	rp->retry_at = monotime_now() + MONO_MS(rp->backoff_ms);
}

int route_planner_sync(struct route_planner *rp)
{
	clear_errors(rp);
	if (!rp->nl) {
		rp->nl = nl_open();
		if (!rp->nl) {
			int r = -errno;
			add_error(rp, "netlink: %s", strerror(-r));
			failed(rp);
			return r;
		}
	}
	rp->dirty = false;
	int r = scan_kernel(rp);
	if (r < 0) {
		add_error(rp, "reading links and addresses: %s", strerror(-r));
		failed(rp);
		rp->dirty = true;
		return r;
	}

	char msg[256], a[IP_STRLEN];
	if (!rp->self_known) {
		snprintf(msg, sizeof(msg), "Node %s is not in the manifests yet (waiting for it)",
			 rp->node_name);
		self_problem(rp, msg);
	} else if (!ip_is_set(&rp->self_ip)) {
		snprintf(msg, sizeof(msg), "Node %s has no IPv4 InternalIP in status.addresses",
			 rp->node_name);
		self_problem(rp, msg);
	} else if (!rp->underlay_index) {
		snprintf(msg, sizeof(msg), "this node's InternalIP %s is on no local interface",
			 ip_fmt(&rp->self_ip, a));
		self_problem(rp, msg);
	} else {
		self_problem(rp, NULL);
	}

	int err = 0;
	r = ensure_vxlan(rp);
	if (r < 0) {
		add_error(rp, "VXLAN device %s: %s", rp->vxname, strerror(-r));
		log_error(SUB, "VXLAN device %s: %s", rp->vxname, strerror(-r));
		err = r;
		/* the routes through it cannot be planned; keep the host-gw ones going */
		struct nl_link l;
		set_vx_index(rp, nl_link_get(rp->nl, rp->vxname, &l) == 0 ? l.index : 0);
	}
	r = ensure_ipip(rp);
	if (r < 0) {
		add_error(rp, "IPIP device %s: %s", ROUTE_IPIP_DEV, strerror(-r));
		log_error(SUB, "IPIP device %s: %s", ROUTE_IPIP_DEV, strerror(-r));
		err = r;
		struct nl_link l;
		bool ok = nl_link_get(rp->nl, ROUTE_IPIP_DEV, &l) == 0 && !strcmp(l.kind, "ipip");
		set_ipip_index(rp, ok && want_ipip(rp) ? l.index : 0);
	}
	r = ensure_wg(rp);
	if (r < 0)
		err = r;

	if (rp->need_dump) {
		r = dump_kernel(rp, &rp->applied);
		if (r < 0) {
			add_error(rp, "reading twill's routes: %s", strerror(-r));
			failed(rp);
			rp->dirty = true;
			return r;
		}
		rp->need_dump = false;
	}

	replan(rp);
	/* peers before the routes that lead to them */
	r = sync_wg_peers(rp);
	if (r < 0)
		err = r;

	struct rt_set desired = {0}, add = {0}, rep = {0}, del = {0};
	for (size_t i = 0; i < rp->npeers; i++)
		for (size_t j = 0; j < rp->peers[i]->entries.n; j++)
			rt_set_add(&desired, &rp->peers[i]->entries.v[j]);
	rt_diff(&desired, &rp->applied, &add, &rep, &del);

	/* Deletions first (a MAC's stale FDB destination must go before its new one), then
	 * neighbours and FDB entries before the routes that use them. */
	for (size_t i = 0; i < del.n; i++)
		if ((r = apply_one(rp, OP_DEL, &del.v[i])) < 0)
			err = r;
	for (size_t i = 0; i < add.n; i++)
		if (add.v[i].kind != RT_ROUTE && (r = apply_one(rp, OP_ADD, &add.v[i])) < 0)
			err = r;
	for (size_t i = 0; i < rep.n; i++)
		if ((r = apply_one(rp, OP_REPLACE, &rep.v[i])) < 0)
			err = r;
	for (size_t i = 0; i < add.n; i++)
		if (add.v[i].kind == RT_ROUTE && (r = apply_one(rp, OP_ADD, &add.v[i])) < 0)
			err = r;

	if (!rp->synced_once || add.n || rep.n || del.n)
		log_info(SUB, "synced: %zu entries wanted, %zu added, %zu replaced, %zu deleted%s",
			 desired.n, add.n, rep.n, del.n, err ? " (with errors)" : "");
	rp->synced_once = true;

	if (err) {
		failed(rp);
		rp->dirty = true;
	} else {
		/* What the kernel now holds: the desired set, one entry per key. */
		rt_set_clear(&rp->applied);
		rt_set_sort(&desired);
		for (size_t i = 0; i < desired.n; i++)
			if (!i || rt_entry_key_cmp(&desired.v[i - 1], &desired.v[i]))
				rt_set_add(&rp->applied, &desired.v[i]);
		rp->backoff_ms = 0;
		rp->retry_at = 0;
	}
	rt_set_free(&desired);
	rt_set_free(&add);
	rt_set_free(&rep);
	rt_set_free(&del);
	return err;
}
