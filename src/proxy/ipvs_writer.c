/* ipvs_writer: the Service planner's entries -> IPVS virtual services, addresses on
 * kube-ipvs0 and the nftables rules beside them (layout and guarantees: see ipvs.h). */
#include <arpa/inet.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>

#include <errno.h>
#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/if_addr.h>
#include <linux/ip_vs.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/rtnetlink.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/util.h"
#include "model/model.h"
#include "nft/nftb.h"
#include "nl/nl.h"
#include "nl/nl_tunnel.h"
#include "proxy/conntrack.h"
#include "proxy/ipvs.h"
#include "store/store.h"

#define SUB "ipvs"
#define DEFAULT_MASQ_MARK 0x4000u
#define ELEMS_PER_MSG 256
#define OPS_CHUNK 4096 /* IPVS requests diffed, then sent, at a time */

/* nftables data types of the set keys (nftables' datatype ids, 6 bits each in a concat) */
#define T_IPADDR 7
#define T_IP6ADDR 8
#define T_PROTO 12
#define T_SERVICE 13
#define CAT(a, b) (((a) << 6) | (b))
#define KEY_MAX 32  /* the longest key: an IPv6 hairpin pair */
#define EKEY_MAX 19 /* the longest key as an element stores it: IPv6 address, proto, port */

enum nset { S_SERVICES, S_CLUSTER, S_MASQ, S_NOEP, S_VIPS, S_HAIRPIN, S_N };
static const struct {
	const char *name;
	bool map;
} sets[S_N] = {
    [S_SERVICES] = {"services", false},	 [S_CLUSTER] = {"cluster-ips", false},
    [S_MASQ] = {"masq-services", false}, [S_NOEP] = {"no-endpoints", true},
    [S_VIPS] = {"vips", false},		 [S_HAIRPIN] = {"hairpin", false},
};

/* The two tables: `ip twill-ipvs` (F4) and `ip6 twill-ipvs` (F6), the same sets and rules. */
enum fam { F4, F6, NFAM };
static const uint16_t nfproto[NFAM] = {NFPROTO_IPV4, NFPROTO_IPV6};

static enum fam fam_of(const struct ipaddr *a)
{
	return a->family == AF_INET6 ? F6 : F4;
}

static uint32_t addr_len(enum fam f)
{
	return f == F6 ? 16 : 4;
}

/* vips: address; hairpin: address . address; the others address . protocol (padded to 4)
 * . port (padded to 4) */
static uint32_t key_type(enum nset set, enum fam f)
{
	uint32_t a = f == F6 ? T_IP6ADDR : T_IPADDR;
	return set == S_VIPS ? a : set == S_HAIRPIN ? CAT(a, a) : CAT(CAT(a, T_PROTO), T_SERVICE);
}

static uint32_t key_len(enum nset set, enum fam f)
{
	uint32_t a = addr_len(f);
	return set == S_VIPS ? a : set == S_HAIRPIN ? 2 * a : a + 8;
}

/* The key as an element stores it (elem_nft_key makes the set's key of it): the address
 * (vips; hairpin, whose key is that address twice), or the address, protocol and port in
 * network order (the other sets). */
static uint32_t ekey_len(enum nset set, enum fam f)
{
	return set == S_VIPS || set == S_HAIRPIN ? addr_len(f) : addr_len(f) + 3;
}

/* One set element, wanted (refs > 0: how many virtual services ask for it) and/or in the
 * kernel (E_HAVE), in an open-addressing table: one 32-byte slot per element, no key
 * strings and no separate wanted / applied / dirty maps. */
enum { E_USED = 1, E_DEAD = 2, E_HAVE = 4, E_DIRTY = 8, E_SEEN = 16 };
struct elem {
	uint8_t key[EKEY_MAX];
	uint32_t refs;
	uint8_t set, fam, len, flags;
	int8_t verdict, have_verdict; /* S_NOEP: NF_DROP or NFT_GOTO (reject-chain) */
};
_Static_assert(sizeof(struct elem) == 32, "struct elem: one 32-byte slot");
struct etab {
	struct elem *v;
	size_t cap, used, live, ndirty; /* used: live + tombstones */
	uint32_t *dl;			/* the slots that became dirty (some may be again clean) */
	size_t ndl, dlcap;
};

static uint64_t elem_hash(const struct elem *e)
{
	uint8_t h[3 + EKEY_MAX] = {e->set, e->fam, e->len};
	memcpy(h + 3, e->key, e->len);
	return fnv1a64(h, 3u + e->len, FNV_SEED);
}

static bool elem_same_key(const struct elem *a, const struct elem *b)
{
	return a->set == b->set && a->fam == b->fam && a->len == b->len &&
	       !memcmp(a->key, b->key, a->len);
}

/* The slot of e's key, or (insert) the free slot where it goes; NULL if absent and !insert. */
static struct elem *etab_slot(const struct etab *t, const struct elem *e, bool insert)
{
	if (!t->cap)
		return NULL;
	struct elem *free_slot = NULL;
	for (size_t i = elem_hash(e) & (t->cap - 1), k = 0; k < t->cap;
	     i = (i + 1) & (t->cap - 1), k++) {
		struct elem *x = &t->v[i];
		if (!(x->flags & E_USED)) {
			if (x->flags & E_DEAD) {
				if (!free_slot)
					free_slot = x;
				continue;
			}
			return insert ? (free_slot ? free_slot : x) : NULL;
		}
		if (elem_same_key(x, e))
			return x;
	}
	return insert ? free_slot : NULL;
}

static void etab_dl_push(struct etab *t, size_t i)
{
	if (t->ndl == t->dlcap) {
		t->dlcap = t->dlcap ? 2 * t->dlcap : 64;
		t->dl = xrealloc(t->dl, t->dlcap * sizeof(*t->dl));
	}
	t->dl[t->ndl++] = (uint32_t)i;
}

static void etab_rehash(struct etab *t, size_t cap)
{
	struct etab n = {
	    .v = xcalloc(cap, sizeof(struct elem)), .cap = cap, .dl = t->dl, .dlcap = t->dlcap};
	for (size_t i = 0; i < t->cap; i++)
		if (t->v[i].flags & E_USED) {
			struct elem *x = etab_slot(&n, &t->v[i], true);
			*x = t->v[i];
			n.used++;
			if (x->flags & E_DIRTY)
				etab_dl_push(&n, (size_t)(x - n.v));
		}
	free(t->v);
	n.live = n.used;
	n.ndirty = t->ndirty;
	*t = n;
}

/* The element with e's key, added (refs 0, dirty) if missing. */
static struct elem *etab_get(struct etab *t, const struct elem *e)
{
	struct elem *x = etab_slot(t, e, false);
	if (x)
		return x;
	if ((t->used + 1) * 4 > t->cap * 3) {
		size_t cap = 16;
		while (cap < (t->live + 1) * 2)
			cap *= 2;
		etab_rehash(t, cap);
	}
	x = etab_slot(t, e, true);
	if (!(x->flags & E_DEAD))
		t->used++;
	t->live++;
	*x = *e;
	x->refs = 0;
	x->flags = E_USED;
	return x;
}

static void etab_dirty(struct etab *t, struct elem *x)
{
	if (!(x->flags & E_DIRTY)) {
		t->ndirty++;
		etab_dl_push(t, (size_t)(x - t->v));
	}
	x->flags |= E_DIRTY;
}

/* Not wanted and not in the kernel: the slot becomes a tombstone. */
static void etab_drop(struct etab *t, struct elem *x)
{
	if (x->flags & E_DIRTY)
		t->ndirty--;
	x->flags = E_DEAD;
	t->live--;
}

/* The i-th element to look at: every slot (all), or the dirty list's; NULL past the end. */
static struct elem *etab_at(const struct etab *t, bool all, size_t i)
{
	return all ? (i < t->cap ? &t->v[i] : NULL) : i < t->ndl ? &t->v[t->dl[i]] : NULL;
}

/* After a committed sync: the kernel has what was wanted; the dirty marks go. */
static void etab_applied(struct etab *t, bool all)
{
	struct elem *x;
	for (size_t i = 0; (x = etab_at(t, all, i)); i++) {
		if (!(x->flags & E_USED) || !(all || (x->flags & E_DIRTY)))
			continue;
		if (!x->refs) {
			etab_drop(t, x);
			continue;
		}
		x->flags = E_USED | E_HAVE;
		x->have_verdict = x->verdict;
	}
	t->ndirty = 0;
	t->ndl = 0;
	if (t->dlcap > 4096) { /* a full sync's list: not kept */
		free(t->dl);
		t->dl = NULL;
		t->dlcap = 0;
	}
	if (t->used > 2 * t->live + 64) { /* many tombstones: compact */
		size_t cap = 16;
		while (cap < (t->live + 1) * 2)
			cap *= 2;
		etab_rehash(t, cap);
	}
}

/* One wanted virtual service and what the nftables sets need to know about it. */
struct vrec {
	struct ipvs_service s;
	enum svc_scope scope;
	bool masq;
	enum svc_verdict verdict;
};

struct ipvs_writer {
	struct svc_planner *sp;
	struct store *st;
	char sched[IPVS_SCHED_LEN];
	bool has_cidr[NFAM];
	struct ipprefix cidr[NFAM];
	char *dev, *table;
	uint32_t mark;

	struct ipvs_conn ipvs;
	struct nftb_conn nft;
	struct nl_sock *nl;
	int ifindex;

	struct smap want;		  /* vkey -> struct vrec */
	struct smap owned;		  /* Service key -> struct smap of its vkeys */
	struct smap have;		  /* vkey -> struct ipvs_service (the kernel's, tracked) */
	struct smap dirty;		  /* vkeys to reconcile */
	struct etab elems;		  /* the nftables sets' elements */
	struct smap awant, ahave, adirty; /* address "a.b.c.d" -> refs / 1 */
	bool need_dump;
	/* UDP real servers removed: their conntrack entries go after the sync (conntrack.h) */
	struct ct_match *ct_pending;
	size_t nct_pending;
	struct ipvs_sync_stats stats;
	char err[512];
};

const char *ipvs_sched_for(const struct object *svc, const char *dflt)
{
	const char *a = svc ? labels_get(&svc->meta.annotations, SVC_ANN_SCHEDULER) : NULL;
	return a && ipvs_sched_known(a) ? a : dflt;
}

static uint8_t l4_of(enum proto p)
{
	return p == PROTO_TCP ? IPPROTO_TCP : p == PROTO_UDP ? IPPROTO_UDP : IPPROTO_SCTP;
}

/* ---------------------------------------------------------------- desired state */

/* Add (delta 1) or drop (delta -1) one reference to an element of the wanted sets; key is
 * the element's stored key (ekey_len). */
static void elem_ref(struct ipvs_writer *w, enum nset set, enum fam f, const void *key, int verdict,
		     int delta)
{
	struct elem e = {.set = (uint8_t)set, .fam = (uint8_t)f, .len = (uint8_t)ekey_len(set, f)};
	memcpy(e.key, key, e.len);
	struct elem *x = delta > 0 ? etab_get(&w->elems, &e) : etab_slot(&w->elems, &e, false);
	if (!x)
		return;
	etab_dirty(&w->elems, x);
	if (delta > 0) {
		x->verdict = (int8_t)verdict;
		x->refs++;
	} else if (x->refs && --x->refs == 0 && !(x->flags & E_HAVE)) {
		etab_drop(&w->elems, x);
	}
}

static void svc_key_bytes(uint8_t key[EKEY_MAX], const struct ipvs_service *s)
{
	uint32_t a = addr_len(fam_of(&s->addr));
	memset(key, 0, EKEY_MAX);
	memcpy(key, s->addr.b, a);
	key[a] = s->proto;
	uint16_t p = htons(s->port);
	memcpy(key + a + 1, &p, 2);
}

/* The set's key of e: address . protocol (padded to 4) . port (padded to 4), the address
 * twice (hairpin) or once; returns its length (key_len). */
static uint32_t elem_nft_key(const struct elem *e, uint8_t key[KEY_MAX])
{
	uint32_t a = addr_len(e->fam);
	memset(key, 0, KEY_MAX);
	memcpy(key, e->key, a);
	if (e->set == S_HAIRPIN) {
		memcpy(key + a, e->key, a);
	} else if (e->set != S_VIPS) {
		key[a] = e->key[a];
		memcpy(key + a + 4, e->key + a + 1, 2);
	}
	return key_len(e->set, e->fam);
}

static void addr_ref(struct ipvs_writer *w, const struct ipaddr *a, int delta)
{
	char k[IP_STRLEN];
	ip_fmt(a, k);
	smap_add(&w->adirty, k);
	bool created;
	void **slot = smap_slot(&w->awant, k, &created);
	uintptr_t n = (uintptr_t)*slot + (uintptr_t)(intptr_t)delta;
	if (n == 0 || (!*slot && delta < 0))
		smap_del(&w->awant, k);
	else
		*slot = (void *)n;
	elem_ref(w, S_VIPS, fam_of(a), a->b, 0, delta);
}

/* Every set element and address a wanted virtual service needs, counted up or down. */
static void vrec_refs(struct ipvs_writer *w, const struct vrec *v, int delta)
{
	uint8_t key[EKEY_MAX];
	enum fam f = fam_of(&v->s.addr);
	svc_key_bytes(key, &v->s);
	elem_ref(w, S_SERVICES, f, key, 0, delta);
	if (v->scope == SVC_SCOPE_CLUSTER_IP)
		elem_ref(w, S_CLUSTER, f, key, 0, delta);
	if (v->masq)
		elem_ref(w, S_MASQ, f, key, 0, delta);
	if (v->verdict != SVC_FORWARD)
		elem_ref(w, S_NOEP, f, key, v->verdict == SVC_DROP ? NF_DROP : NFT_GOTO, delta);
	if (v->scope != SVC_SCOPE_NODE_PORT)
		addr_ref(w, &v->s.addr, delta);
	for (size_t i = 0; i < v->s.ndests; i++)
		elem_ref(w, S_HAIRPIN, f, v->s.dests[i].addr.b, 0, delta);
}

static void vrec_free(void *p)
{
	struct vrec *v = p;
	ipvs_service_clear(&v->s);
	free(v);
}

static void set_free(void *p)
{
	struct smap *m = p;
	smap_clear(m, NULL);
	free(m->b);
	free(m);
}

/* `have` holds the kernel's virtual services.  After a sync they are the wanted ones, so
 * `have` then points at the wanted vrec's service (its first member: the same allocation)
 * instead of a copy; a vrec is freed once it is neither wanted nor had. */
static void have_free(struct ipvs_writer *w, const char *vk, struct ipvs_service *s)
{
	const struct vrec *v = smap_get(&w->want, vk);
	if (s && (!v || &v->s != s)) {
		ipvs_service_clear(s);
		free(s); /* a dumped service, or a vrec (s is its first member) */
	}
}

static void drop_vkey(struct ipvs_writer *w, const char *vk)
{
	struct vrec *v = smap_del(&w->want, vk);
	if (!v)
		return;
	vrec_refs(w, v, -1);
	if (smap_get(&w->have, vk) != &v->s)
		vrec_free(v);
	smap_add(&w->dirty, vk);
}

/* The entries of one Service (planner key "ns/name") replace its previous ones. */
static void service_apply(struct ipvs_writer *w, const char *key)
{
	struct smap *old = smap_del(&w->owned, key);
	if (old) {
		smap_foreach(old, it) drop_vkey(w, it->key);
		set_free(old);
	}
	const struct svc_entries *es = svc_planner_get(w->sp, key);
	if (!es || !es->n)
		return;
	const char *slash = strchr(key, '/');
	const struct object *svc = NULL;
	if (slash) {
		char *ns = xasprintf("%.*s", (int)(slash - key), key);
		svc = store_get(w->st, KIND_SERVICE, ns, slash + 1);
		free(ns);
	}
	const char *sched = ipvs_sched_for(svc, w->sched);
	struct smap *mine = xcalloc(1, sizeof(*mine));
	for (size_t i = 0; i < es->n; i++) {
		const struct svc_entry *e = &es->v[i];
		if (e->vip.family != AF_INET && e->vip.family != AF_INET6)
			continue;
		struct vrec *v = xcalloc(1, sizeof(*v));
		v->scope = e->scope;
		v->masq = e->masquerade;
		v->verdict = e->verdict;
		v->s.addr = e->vip;
		v->s.proto = l4_of(e->proto);
		v->s.port = e->port;
		snprintf(v->s.sched, sizeof(v->s.sched), "%s", sched);
		v->s.netmask = e->vip.family == AF_INET6 ? 128 : 0xffffffffu;
		if (e->affinity_timeout) {
			v->s.flags = IP_VS_SVC_F_PERSISTENT;
			v->s.timeout = e->affinity_timeout;
		}
		v->s.dests = e->nbackends ? xmalloc(e->nbackends * sizeof(*v->s.dests)) : NULL;
		v->s.cap = e->nbackends; /* exact: no room to grow */
		for (size_t k = 0; k < e->nbackends; k++) {
			const struct svc_backend *b = &e->backends[k];
			if (b->ip.family != e->vip.family)
				continue;
			struct ipvs_dest d = {.addr = b->ip,
					      .port = b->port,
					      .fwd = IP_VS_CONN_F_MASQ,
					      .weight = b->weight ? b->weight : 1};
			ipvs_service_add_dest(&v->s, &d);
		}
		ipvs_service_sort_dests(&v->s);
		char vk[64];
		ipvs_service_key(&v->s, vk, sizeof(vk));
		drop_vkey(w, vk); /* the planner gives each key to one Service; be safe */
		*smap_slot(&w->want, vk, &(bool){0}) = v;
		vrec_refs(w, v, 1);
		smap_add(&w->dirty, vk);
		smap_add(mine, vk);
	}
	*smap_slot(&w->owned, key, &(bool){0}) = mine;
}

/* ---------------------------------------------------------------- the node */

static int node_setup(struct ipvs_writer *w)
{
	/* kube-proxy's settings (pkg/proxy/ipvs/proxier.go): conntrack so that masquerade
	 * applies to what IPVS forwards; expire_nodest_conn so that a connection to a deleted
	 * real server is dropped at its next packet (without it IPVS keeps sending a UDP
	 * client's datagrams to the dead backend, whatever conntrack says) */
	static const char *const need[] = {"net.ipv4.vs.conntrack",
					   "net.ipv4.vs.expire_nodest_conn"};
	static const char *const want[] = {"net.ipv4.vs.expire_quiescent_template"};
	for (size_t i = 0; i < ARRAY_SIZE(need); i++) {
		int r = sysctl_write(need[i], "1");
		if (r < 0) {
			snprintf(w->err, sizeof(w->err), "%s=1: %s", need[i], strerror(-r));
			return r;
		}
	}
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		int r = sysctl_write(want[i], "1");
		if (r < 0)
			log_warn(SUB, "%s=1: %s", want[i], strerror(-r));
	}
	if (!w->nl) {
		w->nl = nl_open();
		if (!w->nl) {
			int r = -errno;
			snprintf(w->err, sizeof(w->err), "rtnetlink socket: %s", strerror(-r));
			return r;
		}
	}
	int idx = nl_link_index(w->nl, w->dev);
	if (idx == -ENODEV) {
		/* a dummy device is NOARP from its creation and stays down: its addresses are
		 * local (the kernel adds their local routes anyway) but never announced */
		int r = nl_link_add_kind(w->dev, "dummy", 0);
		if (r < 0 && r != -EEXIST) {
			snprintf(w->err, sizeof(w->err), "creating dummy device %s: %s%s", w->dev,
				 strerror(-r),
				 r == -EOPNOTSUPP ? " (no dummy module in this kernel)" : "");
			return r;
		}
		log_info(SUB, "created dummy device %s", w->dev);
		idx = nl_link_index(w->nl, w->dev);
	}
	if (idx < 0) {
		snprintf(w->err, sizeof(w->err), "device %s: %s", w->dev, strerror(-idx));
		return idx;
	}
	w->ifindex = idx;
	return 0;
}

static int addr_dump_cb(const struct nl_addr *a, void *arg)
{
	struct ipvs_writer *w = arg;
	if (a->index != w->ifindex || a->scope == RT_SCOPE_LINK ||
	    (a->prefix.addr.family != AF_INET && a->prefix.addr.family != AF_INET6))
		return 0;
	char k[IP_STRLEN];
	ip_fmt(&a->prefix.addr, k);
	smap_add(&w->ahave, k);
	smap_add(&w->adirty, k);
	return 0;
}

static int addr_op(struct ipvs_writer *w, const char *k, bool add)
{
	struct nl_addr a = {.index = w->ifindex, .scope = RT_SCOPE_UNIVERSE};
	if (ip_parse(k, &a.prefix.addr) < 0)
		return -EINVAL;
	a.prefix.len = (uint8_t)ip_maxlen(a.prefix.addr.family);
	if (a.prefix.addr.family == AF_INET6)
		a.flags = IFA_F_NODAD; /* usable at once (the device is NOARP anyway) */
	int r = add ? nl_addr_add(w->nl, &a) : nl_addr_del(w->nl, &a);
	if (!add && r == -EADDRNOTAVAIL)
		r = 0;
	if (r < 0)
		snprintf(w->err, sizeof(w->err), "%s %s/%u %s %s: %s", add ? "adding" : "deleting",
			 k, a.prefix.len, add ? "to" : "from", w->dev, strerror(-r));
	else if (add)
		w->stats.addrs_added++;
	else
		w->stats.addrs_deleted++;
	return r;
}

/* Bring kube-ipvs0's addresses to the wanted ones (add: the additions; else deletions). */
static int addrs_sync(struct ipvs_writer *w, bool add)
{
	size_t n;
	const char **keys = smap_keys(&w->adirty, &n);
	int r = 0;
	for (size_t i = 0; i < n && !r; i++) {
		bool want = smap_has(&w->awant, keys[i]), have = smap_has(&w->ahave, keys[i]);
		if (add && want && !have) {
			r = addr_op(w, keys[i], true);
			if (!r)
				smap_add(&w->ahave, keys[i]);
		} else if (!add && !want && have) {
			r = addr_op(w, keys[i], false);
			if (!r)
				smap_del(&w->ahave, keys[i]);
		}
	}
	free(keys);
	return r;
}

/* ---------------------------------------------------------------- nftables */

static void x_reg(struct nftnl_rule *r, const char *kind, uint32_t k1, uint32_t v1, uint32_t k2,
		  uint32_t v2)
{
	struct nftnl_expr *e = nftnl_expr_alloc(kind);
	nftnl_expr_set_u32(e, k1, v1);
	nftnl_expr_set_u32(e, k2, v2);
	nftnl_rule_add_expr(r, e);
}

/* Offsets of the source and destination address in the network header. */
static uint32_t saddr_off(enum fam f)
{
	return f == F6 ? 8 : 12;
}

static uint32_t daddr_off(enum fam f)
{
	return f == F6 ? 24 : 16;
}

/* ip(6) daddr . meta l4proto . th dport, looked up in set (a verdict map when vmap) */
static void x_svc_lookup(struct nftnl_rule *r, enum fam f, enum nset set, bool vmap, bool invert)
{
	/* NFT_REG_1 is where NFT_REG32_00 starts: the key is the address's 32-bit registers
	 * (1 or 4), then the protocol's, then the port's */
	uint32_t words = addr_len(f) / 4;
	nftb_payload(r, NFT_PAYLOAD_NETWORK_HEADER, daddr_off(f), addr_len(f));
	x_reg(r, "meta", NFTNL_EXPR_META_DREG, NFT_REG32_00 + words, NFTNL_EXPR_META_KEY,
	      NFT_META_L4PROTO);
	nftb_payload_reg(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, NFT_REG32_00 + words + 1);
	nftb_lookup(r, sets[set].name, vmap, invert);
}

/* ip(6) saddr not in the prefix p */
static void x_saddr_outside(struct nftnl_rule *r, const struct ipprefix *p)
{
	enum fam f = fam_of(&p->addr);
	uint32_t n = addr_len(f);
	uint8_t mask[16] = {0}, net[16] = {0}, zero[16] = {0};
	for (unsigned i = 0; i < p->len && i < n * 8; i++)
		mask[i / 8] |= (uint8_t)(0x80u >> (i % 8));
	for (uint32_t i = 0; i < n; i++)
		net[i] = p->addr.b[i] & mask[i];
	nftb_payload(r, NFT_PAYLOAD_NETWORK_HEADER, saddr_off(f), n);
	struct nftnl_expr *e = nftnl_expr_alloc("bitwise");
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, n);
	nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, n);
	nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, zero, n);
	nftnl_rule_add_expr(r, e);
	nftb_cmp(r, NFT_CMP_NEQ, net, n);
}

static void x_mark_masq(struct ipvs_writer *w, struct nftnl_rule *r)
{
	nftb_meta(r, NFT_META_MARK);
	nftb_bitwise(r, ~w->mark, w->mark);
	x_reg(r, "meta", NFTNL_EXPR_META_SREG, NFT_REG_1, NFTNL_EXPR_META_KEY, NFT_META_MARK);
}

static void x_masq(struct nftnl_rule *r)
{
	struct nftnl_expr *e = nftnl_expr_alloc("masq");
	nftnl_expr_set_u32(e, NFTNL_EXPR_MASQ_FLAGS, NF_NAT_RANGE_PROTO_RANDOM_FULLY);
	nftnl_rule_add_expr(r, e);
}

static struct nftnl_rule *rule_new(struct ipvs_writer *w, enum fam f, const char *chain)
{
	struct nftnl_rule *r = nftnl_rule_alloc();
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, w->table);
	nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
	nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, nfproto[f]);
	return r;
}

static void msg_chain(struct nftb_batch *b, const char *table, const char *name, const char *type,
		      int hook, int prio)
{
	struct nftnl_chain *c = nftnl_chain_alloc();
	nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table);
	nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
	if (type) {
		nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, type);
		nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, (uint32_t)hook);
		nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, prio);
		nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
	}
	struct nlmsghdr *nlh = nftb_msg(b, NFT_MSG_NEWCHAIN, NLM_F_CREATE, 512);
	nftnl_chain_nlmsg_build_payload(nlh, c);
	nftb_put(b, nlh);
	nftnl_chain_free(c);
}

static struct nftnl_set *set_obj(const char *table, enum nset s)
{
	struct nftnl_set *o = nftnl_set_alloc();
	nftnl_set_set_str(o, NFTNL_SET_TABLE, table);
	nftnl_set_set_str(o, NFTNL_SET_NAME, sets[s].name);
	return o;
}

/* The table of family f, its sets and chains, the fixed rules (chains flushed and refilled
 * in this transaction, so no packet sees them empty), the sets emptied for a refill. */
static void base_objects(struct ipvs_writer *w, struct nftb_batch *b, enum fam f)
{
	b->family = nfproto[f];
	struct nftnl_table *t = nftnl_table_alloc();
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, w->table);
	struct nlmsghdr *nlh = nftb_msg(b, NFT_MSG_NEWTABLE, NLM_F_CREATE, 256);
	nftnl_table_nlmsg_build_payload(nlh, t);
	nftb_put(b, nlh);
	nftnl_table_free(t);
	for (int i = 0; i < S_N; i++) {
		struct nftnl_set *s = set_obj(w->table, i);
		nftnl_set_set_u32(s, NFTNL_SET_FAMILY, nfproto[f]);
		nftnl_set_set_u32(s, NFTNL_SET_FLAGS, sets[i].map ? NFT_SET_MAP : 0);
		nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, key_type(i, f));
		nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, key_len(i, f));
		if (sets[i].map)
			nftnl_set_set_u32(s, NFTNL_SET_DATA_TYPE, NFT_DATA_VERDICT);
		nftnl_set_set_u32(s, NFTNL_SET_ID, (uint32_t)(f * S_N + i) + 1);
		nlh = nftb_msg(b, NFT_MSG_NEWSET, NLM_F_CREATE, 512);
		nftnl_set_nlmsg_build_payload(nlh, s);
		nftb_put(b, nlh);
		nftnl_set_free(s);
		/* emptied: the refill below is the whole wanted content */
		s = set_obj(w->table, i);
		nlh = nftb_msg(b, NFT_MSG_DELSETELEM, 0, 256);
		nftnl_set_elems_nlmsg_build_payload(nlh, s);
		nftb_put(b, nlh);
		nftnl_set_free(s);
	}
	static const struct {
		const char *name, *type;
		int hook, prio;
	} chains[] = {
	    {"nat-prerouting", "nat", NF_INET_PRE_ROUTING, -100},
	    {"nat-output", "nat", NF_INET_LOCAL_OUT, -100},
	    {"nat-postrouting", "nat", NF_INET_POST_ROUTING, 100},
	    {"filter-input", "filter", NF_INET_LOCAL_IN, -110},
	    {"filter-output", "filter", NF_INET_LOCAL_OUT, -110},
	    {"reject-chain", NULL, 0, 0},
	};
	for (size_t i = 0; i < ARRAY_SIZE(chains); i++) {
		msg_chain(b, w->table, chains[i].name, chains[i].type, chains[i].hook,
			  chains[i].prio);
		nftb_chain_flush(b, w->table, chains[i].name);
	}
	struct nftnl_rule *r;
	for (int i = 0; i < 2; i++) {
		const char *chain = i ? "nat-output" : "nat-prerouting";
		if (w->has_cidr[f]) { /* to a ClusterIP, not from a pod: masquerade */
			r = rule_new(w, f, chain);
			x_svc_lookup(r, f, S_CLUSTER, false, false);
			x_saddr_outside(r, &w->cidr[f]);
			x_mark_masq(w, r);
			nftb_rule_add(b, r);
		}
		r = rule_new(w, f, chain); /* external traffic, Cluster policy */
		x_svc_lookup(r, f, S_MASQ, false, false);
		x_mark_masq(w, r);
		nftb_rule_add(b, r);
	}
	uint32_t zero = 0;
	r = rule_new(w, f, "nat-postrouting");
	nftb_meta(r, NFT_META_MARK);
	nftb_bitwise(r, w->mark, 0);
	nftb_cmp(r, NFT_CMP_NEQ, &zero, 4);
	x_masq(r);
	nftb_rule_add(b, r);
	/* hairpin: a backend that reached itself through its Service */
	r = rule_new(w, f, "nat-postrouting");
	nftb_payload(r, NFT_PAYLOAD_NETWORK_HEADER, saddr_off(f),
		     2 * addr_len(f)); /* saddr . daddr */
	nftb_lookup(r, sets[S_HAIRPIN].name, false, false);
	x_masq(r);
	nftb_rule_add(b, r);
	for (int i = 0; i < 2; i++) {
		r = rule_new(w, f, i ? "filter-output" : "filter-input");
		x_svc_lookup(r, f, S_NOEP, true, false);
		nftb_rule_add(b, r);
	}
	/* new traffic to a Service address on a port no Service has: reject (the node's own
	 * listeners are not reachable on Service addresses) */
	uint8_t icmp = f == F6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP;
	r = rule_new(w, f, "filter-input");
	nftb_ct_state(r, 1u << 3 /* NF_CT_STATE_BIT(IP_CT_NEW) */);
	nftb_meta(r, NFT_META_L4PROTO);
	nftb_cmp(r, NFT_CMP_NEQ, &icmp, 1);
	nftb_payload(r, NFT_PAYLOAD_NETWORK_HEADER, daddr_off(f), addr_len(f));
	nftb_lookup(r, sets[S_VIPS].name, false, false);
	x_svc_lookup(r, f, S_SERVICES, false, true);
	nftb_verdict(r, NFT_GOTO, "reject-chain");
	nftb_rule_add(b, r);
	uint8_t tcp = IPPROTO_TCP; /* TCP: reset; others: ICMP port unreachable */
	r = rule_new(w, f, "reject-chain");
	nftb_meta(r, NFT_META_L4PROTO);
	nftb_cmp(r, NFT_CMP_EQ, &tcp, 1);
	nftb_reject(r, NFT_REJECT_TCP_RST, 0);
	nftb_rule_add(b, r);
	r = rule_new(w, f, "reject-chain");
	nftb_reject(r, NFT_REJECT_ICMP_UNREACH,
		    f == F6 ? ICMP6_DST_UNREACH_NOPORT : ICMP_PORT_UNREACH);
	nftb_rule_add(b, r);
}

/* Element messages, ELEMS_PER_MSG elements each, one set and one operation at a time. */
struct elem_msgs {
	struct ipvs_writer *w;
	struct nftb_batch *b;
	uint16_t type;
	int set, fam;
	struct nftnl_set *s;
	size_t n;
};

static void em_flush(struct elem_msgs *m)
{
	if (!m->s)
		return;
	struct nlmsghdr *nlh = nftb_msg(
	    m->b, m->type, m->type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0, 128 + m->n * 96);
	nftnl_set_elems_nlmsg_build_payload(nlh, m->s);
	nftb_put(m->b, nlh);
	nftnl_set_free(m->s);
	m->s = NULL;
	m->n = 0;
}

static void em_add(struct elem_msgs *m, const struct elem *e)
{
	if (m->s && (m->set != e->set || m->fam != e->fam || m->n == ELEMS_PER_MSG))
		em_flush(m);
	if (!m->s) {
		m->s = set_obj(m->w->table, e->set);
		m->set = e->set;
		m->fam = e->fam;
		m->b->family = nfproto[e->fam];
	}
	struct nftnl_set_elem *el = nftnl_set_elem_alloc();
	uint8_t key[KEY_MAX];
	nftnl_set_elem_set(el, NFTNL_SET_ELEM_KEY, key, elem_nft_key(e, key));
	if (e->set == S_NOEP && m->type == NFT_MSG_NEWSETELEM) {
		nftnl_set_elem_set_u32(el, NFTNL_SET_ELEM_VERDICT, (uint32_t)e->verdict);
		if (e->verdict == NFT_GOTO)
			nftnl_set_elem_set_str(el, NFTNL_SET_ELEM_CHAIN, "reject-chain");
	}
	nftnl_set_elem_add(m->s, el);
	m->n++;
}

static int elem_cmp_q(const void *a, const void *b)
{
	const struct elem *x = *(const struct elem *const *)a, *y = *(const struct elem *const *)b;
	return x->fam != y->fam ? x->fam - y->fam : x->set - y->set;
}

/* Queue the elements in v (sorted by family and set, so messages group) as one operation. */
static void em_all(struct ipvs_writer *w, struct nftb_batch *b, uint16_t type, struct elem **v,
		   size_t n)
{
	qsort(v, n, sizeof(*v), elem_cmp_q);
	struct elem_msgs m = {.w = w, .b = b, .type = type};
	for (size_t i = 0; i < n; i++)
		em_add(&m, v[i]);
	em_flush(&m);
}

static int nft_sync(struct ipvs_writer *w, bool full)
{
	struct etab *t = &w->elems;
	if (!full && !t->ndirty)
		return 0;
	int r = nftb_open(&w->nft);
	if (r < 0) {
		snprintf(w->err, sizeof(w->err), "nftables socket: %s", strerror(-r));
		return r;
	}
	struct nftb_batch b;
	nftb_begin(&b, &w->nft, NFPROTO_IPV4);
	size_t n = full ? t->live : t->ndirty;
	struct elem **add = xcalloc(n + 1, sizeof(*add)), **del = xcalloc(n + 1, sizeof(*del));
	size_t nadd = 0, ndel = 0;
	if (full)
		for (int f = 0; f < NFAM; f++)
			base_objects(w, &b, f);
	struct elem *x;
	for (size_t i = 0; (x = etab_at(t, full, i)); i++) {
		if (!(x->flags & E_USED) || (x->flags & E_SEEN) || !(full || (x->flags & E_DIRTY)))
			continue;
		x->flags |= E_SEEN; /* a slot reused after a drop is in the list twice */
		bool want = x->refs > 0, have = !full && (x->flags & E_HAVE);
		bool same = want && have && x->verdict == x->have_verdict;
		if (have && !same)
			del[ndel++] = x;
		if (want && !same)
			add[nadd++] = x;
	}
	for (size_t i = 0; (x = etab_at(t, full, i)); i++)
		x->flags &= (uint8_t)~E_SEEN;
	em_all(w, &b, NFT_MSG_DELSETELEM, del, ndel);
	free(del);
	em_all(w, &b, NFT_MSG_NEWSETELEM, add, nadd);
	free(add);
	w->stats.nft_messages = b.msgs;
	r = nftb_commit(&b);
	if (r < 0) {
		snprintf(w->err, sizeof(w->err), "nftables table %s: %s", w->table, w->nft.err);
		return r;
	}
	etab_applied(t, full);
	return 0;
}

/* ---------------------------------------------------------------- the writer */

struct ipvs_writer *ipvs_writer_new(struct svc_planner *sp, struct store *st,
				    const struct ipvs_cfg *cfg)
{
	struct ipvs_writer *w = xcalloc(1, sizeof(*w));
	w->sp = sp;
	w->st = st;
	snprintf(w->sched, sizeof(w->sched), "%s",
		 cfg && cfg->scheduler ? cfg->scheduler : IPVS_DEFAULT_SCHEDULER);
	const struct ipprefix *cidrs[] = {cfg ? cfg->cluster_cidr : NULL,
					  cfg ? cfg->cluster_cidr6 : NULL};
	for (size_t i = 0; i < ARRAY_SIZE(cidrs); i++)
		if (cidrs[i] &&
		    (cidrs[i]->addr.family == AF_INET || cidrs[i]->addr.family == AF_INET6)) {
			enum fam f = fam_of(&cidrs[i]->addr);
			w->has_cidr[f] = true;
			w->cidr[f] = *cidrs[i];
		}
	w->dev = xstrdup(cfg && cfg->device ? cfg->device : IPVS_DEVICE);
	w->table = xstrdup(cfg && cfg->table ? cfg->table : IPVS_NFT_TABLE);
	w->mark = cfg && cfg->masq_mark ? cfg->masq_mark : DEFAULT_MASQ_MARK;
	w->need_dump = true;
	return w;
}

void ipvs_writer_free(struct ipvs_writer *w)
{
	if (!w)
		return;
	ipvs_close(&w->ipvs);
	nftb_close(&w->nft);
	if (w->nl)
		nl_close(w->nl);
	smap_clear(&w->owned, set_free);
	smap_foreach(&w->have, it) have_free(w, it->key, it->val);
	smap_clear(&w->have, NULL);
	smap_clear(&w->want, vrec_free);
	smap_clear(&w->dirty, NULL);
	free(w->elems.v);
	free(w->elems.dl);
	smap_clear(&w->awant, NULL);
	smap_clear(&w->ahave, NULL);
	smap_clear(&w->adirty, NULL);
	struct smap *all[] = {&w->want,	 &w->owned, &w->have,  &w->dirty,
			      &w->awant, &w->ahave, &w->adirty};
	for (size_t i = 0; i < ARRAY_SIZE(all); i++)
		free(all[i]->b);
	free(w->ct_pending);
	free(w->dev);
	free(w->table);
	free(w);
}

bool ipvs_writer_dirty(const struct ipvs_writer *w)
{
	return w->need_dump || w->dirty.n || w->elems.ndirty || w->adirty.n || w->nct_pending ||
	       svc_planner_dirty(w->sp);
}

void ipvs_writer_request_resync(struct ipvs_writer *w)
{
	w->need_dump = true;
}

const struct ipvs_sync_stats *ipvs_writer_stats(const struct ipvs_writer *w)
{
	return &w->stats;
}

const char *ipvs_writer_error(const struct ipvs_writer *w)
{
	return w->err;
}

/* The kernel's IPVS table and kube-ipvs0's addresses become `have`; everything is
 * reconciled in this sync. */
static int dump_kernel(struct ipvs_writer *w)
{
	int r = node_setup(w);
	if (r < 0)
		return r;
	struct ipvs_table t = {0};
	r = ipvs_dump(&w->ipvs, &t, false);
	if (r < 0) {
		snprintf(w->err, sizeof(w->err), "%s", w->ipvs.err);
		return r;
	}
	smap_foreach(&w->have, it) have_free(w, it->key, it->val);
	smap_clear(&w->have, NULL);
	for (size_t i = 0; i < t.n; i++) {
		char vk[64];
		ipvs_service_key(&t.v[i], vk, sizeof(vk));
		struct ipvs_service *s = xmalloc(sizeof(*s));
		*s = t.v[i]; /* takes the dests */
		t.v[i].dests = NULL;
		*smap_slot(&w->have, vk, &(bool){0}) = s;
		smap_add(&w->dirty, vk);
	}
	ipvs_table_free(&t);
	smap_foreach(&w->want, it) smap_add(&w->dirty, it->key);
	smap_clear(&w->ahave, NULL);
	r = nl_addr_dump(w->nl, AF_UNSPEC, w->ifindex, addr_dump_cb, w);
	if (r < 0) {
		snprintf(w->err, sizeof(w->err), "addresses of %s: %s", w->dev, strerror(-r));
		return r;
	}
	smap_foreach(&w->awant, it) smap_add(&w->adirty, it->key);
	return 0;
}

/* A UDP client keeps its 5-tuple, so conntrack would keep sending it to a real server that
 * is gone: remember the entries to delete once the sync succeeded. */
static void stale_udp(struct ipvs_writer *w, const struct ipvs_ops *ops)
{
	for (size_t i = 0; i < ops->n; i++) {
		const struct ipvs_op *op = &ops->v[i];
		const struct ipvs_service *s = op->svc;
		size_t nd = op->kind == IPVS_OP_DEL_DEST  ? 1
			    : op->kind == IPVS_OP_DEL_SVC ? s->ndests
							  : 0;
		if (s->proto != IPPROTO_UDP || !nd)
			continue;
		w->ct_pending =
		    xrealloc(w->ct_pending, (w->nct_pending + nd) * sizeof(*w->ct_pending));
		for (size_t k = 0; k < nd; k++) {
			const struct ipvs_dest *d = op->dest ? op->dest : &s->dests[k];
			struct ct_match *m = &w->ct_pending[w->nct_pending++];
			memset(m, 0, sizeof(*m));
			m->family = (uint8_t)s->addr.family;
			m->l4 = IPPROTO_UDP;
			m->dport = s->port;
			memcpy(m->dst, s->addr.b, addr_len(fam_of(&s->addr)));
			memcpy(m->rsrc, d->addr.b, addr_len(fam_of(&s->addr)));
			m->rsport = d->port;
		}
	}
}

static void count_ops(struct ipvs_writer *w, const struct ipvs_ops *ops)
{
	unsigned *c[] = {&w->stats.svc_added,	&w->stats.svc_changed,	 &w->stats.svc_deleted,
			 &w->stats.dests_added, &w->stats.dests_changed, &w->stats.dests_deleted};
	for (size_t i = 0; i < ops->n; i++)
		(*c[ops->v[i].kind])++;
}

size_t ipvs_writer_plan(struct ipvs_writer *w)
{
	char **keys = NULL;
	size_t n = svc_planner_update(w->sp, &keys);
	for (size_t i = 0; i < n; i++)
		service_apply(w, keys[i]);
	svc_planner_keys_free(keys, n);
	return n;
}

static int vrec_cmp_q(const void *a, const void *b)
{
	return ipvs_service_cmp(a, b);
}

void ipvs_writer_wanted(const struct ipvs_writer *w, struct ipvs_table *out)
{
	ipvs_table_free(out);
	out->v = xcalloc(w->want.n + 1, sizeof(*out->v));
	smap_foreach(&w->want, it)
	{
		const struct vrec *v = it->val;
		ipvs_service_copy(&out->v[out->n++], &v->s);
	}
	out->cap = out->n;
	if (out->n > 1)
		qsort(out->v, out->n, sizeof(*out->v), vrec_cmp_q);
}

unsigned ipvs_writer_elem_refs(const struct ipvs_writer *w, const char *set,
			       const struct ipvs_service *key)
{
	for (int i = 0; i < S_N; i++) {
		if (strcmp(set, sets[i].name))
			continue;
		enum fam f = fam_of(&key->addr);
		struct elem e = {
		    .set = (uint8_t)i, .fam = (uint8_t)f, .len = (uint8_t)ekey_len(i, f)};
		if (i == S_VIPS || i == S_HAIRPIN)
			memcpy(e.key, key->addr.b, addr_len(f));
		else
			svc_key_bytes(e.key, key);
		const struct elem *x = etab_slot(&w->elems, &e, false);
		return x ? x->refs : 0;
	}
	return 0;
}

int ipvs_writer_sync(struct ipvs_writer *w)
{
	memset(&w->stats, 0, sizeof(w->stats));
	int r = ipvs_open(&w->ipvs);
	if (r < 0) {
		snprintf(w->err, sizeof(w->err), "%s", w->ipvs.err);
		return r;
	}
	w->stats.services = (unsigned)ipvs_writer_plan(w);

	bool full = w->need_dump;
	w->stats.full = full;
	if (full && (r = dump_kernel(w)) < 0)
		return r;

	size_t nd;
	const char **dk = smap_keys(&w->dirty, &nd);
	size_t nct_before = w->nct_pending;
	/* addresses first (a new virtual service's packets arrive as soon as it exists),
	 * then IPVS, then the rules beside it, then the addresses no longer wanted */
	int ra = r = addrs_sync(w, true);
	/* the IPVS requests go out OPS_CHUNK at a time as the diff makes them, not as one
	 * list of the whole table (a full sync at 10,000 Services has 132,000); every op is
	 * tried, the first failure is reported */
	struct ipvs_ops ops = {0};
	for (size_t i = 0; !ra && i <= nd; i++) {
		if (i < nd) {
			const struct vrec *v = smap_get(&w->want, dk[i]);
			ipvs_diff_service(v ? &v->s : NULL, smap_get(&w->have, dk[i]), &ops);
		}
		if (!ops.n || (i < nd && ops.n < OPS_CHUNK))
			continue;
		count_ops(w, &ops);
		stale_udp(w, &ops);
		int a = ipvs_apply(&w->ipvs, ops.v, ops.n);
		if (a < 0 && !r) {
			r = a;
			snprintf(w->err, sizeof(w->err), "%s", w->ipvs.err);
		}
		ops.n = 0;
	}
	ipvs_ops_free(&ops);
	if (!r)
		r = nft_sync(w, full);
	if (!r)
		r = addrs_sync(w, false);
	if (r < 0) {
		log_warn(SUB, "sync failed (%s); will dump the kernel and retry", w->err);
		w->need_dump = true;
		w->nct_pending = nct_before; /* the next sync's diff names them again */
		free(dk);
		return r;
	}
	for (size_t i = 0; i < nd; i++) {
		struct vrec *v = smap_get(&w->want, dk[i]);
		have_free(w, dk[i], smap_del(&w->have, dk[i]));
		if (v)
			*smap_slot(&w->have, dk[i], &(bool){0}) = &v->s;
	}
	free(dk);
	smap_clear(&w->dirty, NULL);
	smap_clear(&w->adirty, NULL);
	if (full)
		malloc_trim(0); /* the dump's and the big batches' memory back to the system */
	w->need_dump = false;
	w->err[0] = '\0';
	if (w->nct_pending) {
		int d = ct_delete_matching(w->ct_pending, w->nct_pending);
		if (d < 0) {
			log_warn(SUB, "deleting stale UDP conntrack entries: %s (will retry)",
				 strerror(-d));
		} else {
			if (d)
				log_info(SUB, "deleted %d stale UDP conntrack entries", d);
			free(w->ct_pending);
			w->ct_pending = NULL;
			w->nct_pending = 0;
		}
	}
	return 0;
}
