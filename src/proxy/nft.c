/* nft: the nftables Service dataplane writer (layout and guarantees: see nft.h; transaction
 * format after the kernel's nfnetlink batch protocol: NFNL_MSG_BATCH_BEGIN, nf_tables
 * messages, NFNL_MSG_BATCH_END).
 *
 * State: the desired table content, kept per Service (which map elements and chains each
 * Service contributes), and what the kernel holds (dumped on start/resync, then tracked from
 * the transactions that succeeded).  Keys touched since the last successful sync are "dirty";
 * a sync compares desired with applied for the dirty keys only, so its cost is proportional
 * to what changed, not to the number of Services.
 *
 * Why no chain per endpoint and no anonymous sets: the kernel binds an anonymous set to its
 * rule by walking the whole transaction (__nft_set_trans_bind), so N Services with one
 * anonymous numgen map each cost O(N^2) in one commit (perf: 72% of a 2,000-Service sync).
 * Backends are elements of one named map instead, keyed by slot . the entry's address,
 * protocol and port, and read by a few shared pick chains (few rules bound to the map: the
 * kernel checks each new rule bound to a map against all its elements and each new element
 * against all bound rules). */
/* glibc's netinet/ headers first, in their own block: the linux/ headers below would
 * otherwise define struct in_addr a second time */
#include <arpa/inet.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>

#include <errno.h>
#include <libmnl/libmnl.h>
#include <malloc.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "proxy/conntrack.h"
#include "nft/nftb.h"
#include "proxy/nft.h"

#define SUB "nft"

/* nftables' user-space type ids (nftables src/datatype.h), for `nft list` to print keys */
#define NFT_TYPE_INTEGER 4
#define NFT_TYPE_IPADDR 7
#define NFT_TYPE_IP6ADDR 8
#define NFT_TYPE_INET_PROTOCOL 12
#define NFT_TYPE_INET_SERVICE 13
#define NFT_TYPE_BITS 6
#define CONCAT2(a, b) (((a) << NFT_TYPE_BITS) | (b))
/* Keys and data per family, with A the address length (4 or 16):
 *   service key   addr . proto (padded to 4) . port (padded to 4)   A + 8 bytes
 *   backends key  slot . service key                                4 + A + 8
 *   backends data addr . port (padded to 4)                         A + 4
 *   hairpin key   addr . addr                                       2 A */
#define SVC_KEY_TYPE(at) CONCAT2(CONCAT2(at, NFT_TYPE_INET_PROTOCOL), NFT_TYPE_INET_SERVICE)
#define SVC_KEY_MAX 24
#define NFT_TYPE_MARK 19 /* a 32-bit host-order integer with a size, so nft can print it */
#define BE_KEY_TYPE(at) ((NFT_TYPE_MARK << (3 * NFT_TYPE_BITS)) | SVC_KEY_TYPE(at))
#define BE_KEY_MAX (4 + SVC_KEY_MAX)
#define BE_DATA_TYPE(at) CONCAT2(at, NFT_TYPE_INET_SERVICE)
#define HP_KEY_TYPE(at) CONCAT2(at, at)
/* register n of 32 bits */
#define R32(n) ((uint32_t)NFT_REG32_00 + (uint32_t)(n))
#define UDATA_COMMENT 0 /* NFTNL_UDATA_CHAIN_COMMENT */
#define SIG_PREFIX "twill:"
#define ELEMS_PER_MSG 256
#define MAP_BACKENDS "backends"
#define SET_HAIRPIN "hairpin"

/* The table's four element sets, in this order everywhere (dump, sizes, recreation). */
enum { MAP_SERVICES, MAP_NOEP, MAP_BE, SET_HP, NSETS };
static const char *const map_names[] = {"services", "no-endpoint-services", MAP_BACKENDS,
					SET_HAIRPIN};

/* Set sizes.  Given a size (NFTA_SET_DESC_SIZE), kernel 6.18 picks the fixed-size nft_hash
 * backend: its buckets are allocated once, so adding 100,000 elements in one transaction
 * does not make it resize its table over and over (rhashtable_insert_slow was a quarter of
 * the 10,000-Service sync); but the size is a hard limit (ENFILE), and raising it adds no
 * buckets.  So a set is created with room for twice what it needs (a power of two, at least
 * SET_SIZE_MIN) and, when a sync would put more elements in it than its size, recreated in
 * the same transaction: the rules bound to it are flushed, the set deleted, added with the
 * new size and all its elements, the rules added again.  Packets see the old table or the
 * new one; established connections keep their conntrack NAT.  A set without a size (made by
 * an older twill) has no limit and is kept. */
#define SET_SIZE_MIN 512u

static uint32_t set_size_for(size_t n)
{
	uint32_t sz = SET_SIZE_MIN;
	while (sz < 2 * n && sz < (1u << 30))
		sz *= 2;
	return sz;
}

/* pick-<sched>-<N>: pick one of N slots, dnat to that slot's backend of the entry the packet
 * was sent to (shared by every entry with that scheduler and N); ext-pick-<sched>-<N>: mark
 * for masquerade first; with sessionAffinity, per group: svc-<group> (the pick, preceded by
 * the affinity lookup) and ext-<group>. */
enum ck { CK_PICK, CK_EXT, CK_SVC };
static const char *const sched_names[] = {"random", "rr", "sh", "dh"};

struct be {
	uint32_t ip; /* IPv4: the address (network order); IPv6: its handle (struct pool) */
	uint16_t port;
	uint16_t weight; /* >= 1; 0: an empty slot */
};

struct dchain {
	enum ck kind;
	uint64_t sig;
	unsigned refs;
	char *target;	/* EXT: the chain it continues in */
	uint8_t sched;	/* PICK, SVC: enum svc_sched */
	uint32_t aff;	/* SVC: sessionAffinity ClientIP timeout (s) */
	size_t nslots;	/* PICK, SVC: the modulus */
};

/* A service map entry (desired or applied) and, when it forwards, its backends. */
struct delem {
	int map;
	uint8_t key[SVC_KEY_MAX];
	uint32_t verdict;  /* NFT_GOTO or NF_DROP */
	const char *chain; /* chain_ref() */
	bool chain_own;
	char *aff; /* the affinity map of its group, or NULL */
	/* desired: the number of backends (0: no forwarding), their weights' sum (nslots) and
	 * which one is at which slot, each backend at as many slots as its weight (there is no
	 * separate list of backends: it was a second copy, 1 MB at 120,000); applied: the
	 * backends map's elements by slot (weight 0: none at that slot) */
	size_t nbe;
	size_t nslots;
	struct be *slots;
	bool staged; /* desired, not in the kernel: its backends elements were sent ahead */
};

/* What one Service puts into a family's table: its entries' keys, then the chains it wants,
 * NUL-terminated strings one after the other in one block (it was six allocations a
 * Service). */
struct contrib {
	unsigned ne, nc;
	char s[];
};

/* Strings being collected for a contrib. */
struct names {
	char *p;
	size_t len, cap;
	unsigned n;
};

static void names_add(struct names *b, const char *s)
{
	size_t l = strlen(s) + 1;
	if (b->len + l > b->cap) {
		b->cap = 2 * (b->len + l) + 64;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, s, l);
	b->len += l;
	b->n++;
}

#define contrib_foreach(c, it)                                                                     \
	for (const char *it = (c)->s, *it##_end = (c)->s + contrib_len(c); it < it##_end;          \
	     it += strlen(it) + 1)

struct applied_chain {
	uint64_t sig;
	bool seen; /* a rule was read (dump) */
};

struct nbuf {
	char *p;
	size_t len, cap;
};

/* A set of, or counts by, addresses of one family (kw 32-bit words a key: 1 for IPv4, 4
 * for IPv6): open addressing with linear probing, 4 (kw + 1) bytes a slot (one backend
 * address per hairpin element; 250,000 of them as smap strings would cost tens of MB).  A
 * value of 0 is an empty slot. */
struct amap {
	size_t n, cap; /* cap: 0 or a power of two */
	unsigned kw;
	uint32_t *k, *v;
};

static size_t a_home(const struct amap *m, const uint32_t *k)
{
	uint32_t h = 0;
	for (unsigned i = 0; i < m->kw; i++)
		h = (h ^ k[i]) * 0x9E3779B1u;
	return (size_t)(h ^ (h >> 16)) & (m->cap - 1);
}

static uint32_t *amap_key(const struct amap *m, size_t i)
{
	return m->k + i * m->kw;
}

/* addr: kw words (any alignment) */
static uint32_t *amap_get(const struct amap *m, const void *addr)
{
	uint32_t k[4] = {0};
	memcpy(k, addr, m->kw * 4);
	for (size_t i = m->cap ? a_home(m, k) : 0; m->cap && m->v[i]; i = (i + 1) & (m->cap - 1))
		if (!memcmp(amap_key(m, i), k, m->kw * 4))
			return &m->v[i];
	return NULL;
}

/* Empty slot i (in use). */
static void amap_del_at(struct amap *m, size_t i)
{
	m->v[i] = 0;
	m->n--;
	/* backward shift: move later members of the run into the hole when allowed */
	for (size_t j = (i + 1) & (m->cap - 1); m->v[j]; j = (j + 1) & (m->cap - 1)) {
		size_t h = a_home(m, amap_key(m, j));
		if ((j > i && (h <= i || h > j)) || (j < i && h <= i && h > j)) {
			memcpy(amap_key(m, i), amap_key(m, j), m->kw * 4);
			m->v[i] = m->v[j];
			m->v[j] = 0;
			i = j;
		}
	}
}

static void amap_insert(struct amap *m, const void *addr, uint32_t val);

/* Add delta to addr's value (a new key starts at 0); the key goes when its value is 0. */
static void amap_add(struct amap *m, const void *addr, int delta)
{
	uint32_t *v = amap_get(m, addr);
	if (v) {
		*v = (uint32_t)((int64_t)*v + delta);
		if (!*v) /* by its slot: a lookup stops at a value of 0 */
			amap_del_at(m, (size_t)(v - m->v));
		return;
	}
	if (delta > 0)
		amap_insert(m, addr, (uint32_t)delta);
}

/* A key not in the map, with a value (not 0). */
static void amap_insert(struct amap *m, const void *addr, uint32_t val)
{
	if (5 * (m->n + 1) > 4 * m->cap) { /* load <= 0.8: a 100,000-address map is 1 MB */
		struct amap g = {0, m->cap ? 2 * m->cap : 64, m->kw, NULL, NULL};
		g.k = xcalloc(g.cap * g.kw, sizeof(*g.k));
		g.v = xcalloc(g.cap, sizeof(*g.v));
		for (size_t i = 0; i < m->cap; i++)
			if (m->v[i])
				amap_insert(&g, amap_key(m, i), m->v[i]);
		free(m->k);
		free(m->v);
		*m = g;
	}
	uint32_t k[4] = {0};
	memcpy(k, addr, m->kw * 4);
	size_t i = a_home(m, k);
	while (m->v[i])
		i = (i + 1) & (m->cap - 1);
	memcpy(amap_key(m, i), k, m->kw * 4);
	m->v[i] = val;
	m->n++;
}

static void amap_clear(struct amap *m)
{
	free(m->k);
	free(m->v);
	m->k = m->v = NULL;
	m->n = m->cap = 0;
}

#define amap_foreach(m, i)                                                                         \
	for (size_t i = 0; i < (m)->cap; i++)                                                      \
		if ((m)->v[i])

/* IPv6 backend addresses, interned: a backend is 8 bytes in either family (there are
 * hundreds of thousands of them, in three copies: desired, slots, applied).  A handle is an
 * index into a; idx maps an address to its handle + 1.  Unused addresses are dropped by
 * pool_gc, which renumbers every handle in use. */
struct pool {
	size_t n, cap;
	uint8_t (*a)[16];
	struct amap idx;
	size_t live; /* n after the last collection */
};

/* One family's table (ip twill or ip6 twill): its desired and applied content. */
struct fam {
	int af;		       /* AF_INET, AF_INET6 */
	uint8_t nfproto;       /* NFPROTO_IPV4, NFPROTO_IPV6 */
	uint32_t alen;	       /* address length: 4, 16 */
	uint32_t aw;	       /* address length in registers: 1, 4 */
	uint32_t klen;	       /* service key length: alen + 8 */
	uint32_t atype;	       /* NFT_TYPE_IPADDR, NFT_TYPE_IP6ADDR */
	uint32_t saddr, daddr; /* network header offsets */
	const char *table;
	uint32_t mark;
	bool present; /* the table is in the kernel (dump, or a transaction that made it) */
	/* the element sets (index MAP_SERVICES ..): in the kernel (dump, transactions), and
	 * their size there (0: none, no limit) */
	bool kset[NSETS];
	uint32_t ksize[NSETS];
	/* this transaction: sets created (kset false) or recreated (fresh: no element of the
	 * applied state is in them) and the size given */
	bool fresh[NSETS], made[NSETS];
	uint32_t nsize[NSETS];
	size_t nwant[NSETS];  /* desired elements per set (hairpin: dhair.n) */
	size_t kcount[NSETS]; /* backends and hairpin: elements in the kernel (dump, syncs) */

	struct smap dchains;  /* name -> struct dchain */
	struct smap delems;   /* ekey -> struct delem */
	struct smap contribs; /* Service key -> struct contrib */
	struct smap achains;  /* name -> struct applied_chain (dynamic chains only) */
	struct smap aelems;   /* ekey -> struct delem */
	struct smap asets;    /* affinity maps in the kernel (names) */
	/* hairpin: backend address -> number of entries using it (| HAIR_SEEN: found by the
	 * dump).  After a successful sync the kernel's set holds exactly these addresses, so
	 * there is no applied copy: dirty_h remembers, for the addresses changed since, whether
	 * they were in it (HAIR_WAS_IN) or not (HAIR_WAS_OUT); after a dump (full_sync), the
	 * HAIR_SEEN bits say which are in the kernel and xhair holds the kernel's addresses that
	 * no entry uses (at 100,000 backends every copy of the addresses is 2 MB) */
	struct amap dhair;
	struct amap xhair;
	struct amap dirty_h;
	/* this sync dumps the kernel: every hairpin address counts as changed (no dirty_h),
	 * and the entries' slots are assigned again against what the dump found */
	bool full_sync;
	struct smap dirty_c, dirty_e;
	size_t norphans; /* backends elements of no service entry (dump): deleted on sync */
	uint8_t (*orphans)[BE_KEY_MAX];
	struct pool pool; /* IPv6 only */
};

#define NFAM 2 /* fam[0]: ip twill (IPv4), fam[1]: ip6 twill (IPv6) */

struct nft_writer {
	struct svc_planner *sp;
	char *table;
	uint32_t mark;
	struct mnl_socket *nl;
	uint32_t portid, seq;
	struct fam fam[NFAM];
	struct ct_match *ct_pending; /* stale conntrack entries still to delete */
	size_t nct_pending;
	bool need_dump;
	struct nft_sync_stats stats;
	char err[256];
};

/* ---- desired state ---- */

static uint8_t l4_of(enum proto p)
{
	return p == PROTO_TCP ? IPPROTO_TCP : p == PROTO_UDP ? IPPROTO_UDP : 132 /* SCTP */;
}

static void key_build(const struct fam *f, uint8_t key[SVC_KEY_MAX], const void *ip, uint8_t l4,
		      uint16_t port)
{
	memset(key, 0, SVC_KEY_MAX);
	memcpy(key, ip, f->alen);
	key[f->alen] = l4;
	uint16_t p = htons(port);
	memcpy(key + f->alen + 4, &p, 2);
}

static uint16_t key_port(const struct fam *f, const uint8_t *key)
{
	uint16_t p;
	memcpy(&p, key + f->alen + 4, 2);
	return ntohs(p);
}

static void key_str(const struct fam *f, const uint8_t *key, char *buf, size_t size)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	inet_ntop(f->af, key, ip, sizeof(ip));
	snprintf(buf, size, "%s/%u/%u", ip, key[f->alen], key_port(f, key));
}

static bool be_used(const struct be *b)
{
	return b->weight != 0;
}

/* Same address and port (an IPv6 address has one handle). */
static bool be_same(const struct be *a, const struct be *b)
{
	return a->ip == b->ip && a->port == b->port;
}

static uint32_t pool_intern(struct pool *p, const void *addr)
{
	uint32_t *h = amap_get(&p->idx, addr);
	if (h)
		return *h - 1;
	if (p->n == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 64;
		p->a = xrealloc(p->a, p->cap * sizeof(*p->a));
	}
	memcpy(p->a[p->n], addr, 16);
	amap_add(&p->idx, addr, (int)(p->n + 1));
	return (uint32_t)p->n++;
}

static void pool_free(struct pool *p)
{
	free(p->a);
	amap_clear(&p->idx);
	p->a = NULL;
	p->n = p->cap = p->live = 0;
}

/* A backend's value for an address of the family. */
static uint32_t be_handle(struct fam *f, const void *addr)
{
	uint32_t v4;
	if (f->af == AF_INET6)
		return pool_intern(&f->pool, addr);
	memcpy(&v4, addr, 4);
	return v4;
}

/* A backend's address (f->alen bytes). */
static const void *be_addr(const struct fam *f, const struct be *b)
{
	return f->af == AF_INET6 ? (const void *)f->pool.a[b->ip] : (const void *)&b->ip;
}

static void pool_renumber(struct pool *np, const struct pool *old, struct be *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (be_used(&v[i]))
			v[i].ip = pool_intern(np, old->a[v[i].ip]);
}

/* Drop the IPv6 addresses no backend uses any more, once they are as many as the rest
 * (amortized: a collection walks every backend). */
static void pool_gc(struct fam *f)
{
	struct pool *p = &f->pool;
	if (f->af != AF_INET6 || p->n < 2 * p->live + 1024)
		return;
	struct pool np = {0};
	np.idx.kw = 4;
	const struct smap *maps[] = {&f->delems, &f->aelems};
	for (size_t m = 0; m < 2; m++)
		smap_foreach(maps[m], it)
		{
			struct delem *d = it->val;
			pool_renumber(&np, p, d->slots, d->slots ? d->nslots : 0);
		}
	pool_free(p);
	*p = np;
	p->live = p->n;
}

/* A desired entry in or out: hairpin references and the sets' element counts. */
#define HAIR_SEEN 0x80000000u
enum { HAIR_WAS_OUT = 1, HAIR_WAS_IN = 2 };

static void hair_ref(struct fam *f, const struct delem *e, int delta)
{
	f->nwant[e->map] = (size_t)((ptrdiff_t)f->nwant[e->map] + delta);
	if (e->nbe)
		f->nwant[MAP_BE] =
		    (size_t)((ptrdiff_t)f->nwant[MAP_BE] + delta * (ptrdiff_t)e->nslots);
	for (size_t i = 0; i < (e->nbe ? e->nslots : 0); i++) { /* weight times a backend */
		const void *ip = be_addr(f, &e->slots[i]);
		if (!f->full_sync && !amap_get(&f->dirty_h, ip))
			amap_add(&f->dirty_h, ip,
				 amap_get(&f->dhair, ip) ? HAIR_WAS_IN : HAIR_WAS_OUT);
		amap_add(&f->dhair, ip, delta);
	}
}

/* An entry's verdict chain: the shared chains' names (a few per scheduler) are kept once
 * per process (str_intern), those of affinity groups (which come and go with their
 * Services) are the entry's own: 12,000 entries, desired and applied, went to a few names. */
static void chain_ref(struct delem *e, const char *name)
{
	bool shared = name && (str_has_prefix(name, "pick-") || str_has_prefix(name, "ext-pick-") ||
			       !strcmp(name, "reject-chain"));
	e->chain_own = name && !shared;
	e->chain = shared ? str_intern(name) : name ? xstrdup(name) : NULL;
}

static void dchain_free(void *v)
{
	struct dchain *c = v;
	free(c->target);
	free(c);
}

static void delem_free(void *v)
{
	struct delem *e = v;
	if (e) {
		if (e->chain_own)
			free((char *)e->chain);
		free(e->aff);
		free(e->slots);
	}
	free(e);
}

/* The length of the entry keys (first), or with the chains (all) */
static size_t contrib_part(const struct contrib *c, bool all)
{
	const char *p = c->s;
	for (unsigned i = 0; i < c->ne + (all ? c->nc : 0); i++)
		p += strlen(p) + 1;
	return (size_t)(p - c->s);
}

static size_t contrib_len(const struct contrib *c)
{
	return contrib_part(c, false);
}

/* What a chain's rules are made from (not the backends: they are map elements). */
static uint64_t dchain_sig(const struct dchain *c, uint32_t mark)
{
	uint64_t h = fnv1a64(&c->kind, sizeof(c->kind), FNV_SEED ^ 3 /* layout version */);
	h = fnv1a64(&mark, sizeof(mark), h);
	if (c->target)
		h = fnv1a64(c->target, strlen(c->target) + 1, h);
	uint64_t v[] = {c->sched, c->aff, c->nslots};
	return fnv1a64(v, sizeof(v), h);
}

/* Put a chain into the desired set for one more contributing Service (the same name always
 * has the same content: names carry what the rules are made from). */
static void want_chain(struct fam *w, struct names *ct, struct smap *seen, struct dchain *c,
		       const char *name)
{
	if (smap_has(seen, name)) {
		dchain_free(c);
		return;
	}
	smap_add(seen, name);
	names_add(ct, name);
	bool created;
	void **slot = smap_slot(&w->dchains, name, &created);
	if (*slot) {
		struct dchain *old = *slot;
		c->refs = old->refs;
		dchain_free(old);
	}
	c->sig = dchain_sig(c, w->mark);
	c->refs++;
	*slot = c;
	smap_add(&w->dirty_c, name);
}

static void unwant_chain(struct fam *w, const char *name)
{
	struct dchain *c = smap_get(&w->dchains, name);
	if (c && --c->refs == 0)
		dchain_free(smap_del(&w->dchains, name));
	smap_add(&w->dirty_c, name);
}

/* The chain an entry with backends goes to (wanted, with what it continues in). */
static char *entry_chain(struct fam *w, struct names *ct, struct smap *seen,
			 const struct svc_entry *e, size_t nslots)
{
	struct dchain *c = xcalloc(1, sizeof(*c));
	c->sched = (uint8_t)e->sched;
	c->nslots = nslots;
	char *name;
	if (e->affinity_timeout) {
		c->kind = CK_SVC;
		c->aff = e->affinity_timeout;
		name = xasprintf("svc-%s", e->group);
	} else {
		c->kind = CK_PICK;
		name = xasprintf("pick-%s-%zu", sched_names[e->sched % 4], nslots);
	}
	want_chain(w, ct, seen, c, name);
	if (!e->masquerade)
		return name;
	c = xcalloc(1, sizeof(*c));
	c->kind = CK_EXT;
	c->target = name;
	name = e->affinity_timeout ? xasprintf("ext-%s", e->group) : xasprintf("ext-%s", c->target);
	want_chain(w, ct, seen, c, name);
	return name;
}

static void assign_slots(struct delem *d, const struct be *be, size_t nbe, const struct delem *a);

static void service_apply(struct fam *w, struct svc_planner *sp, const char *key)
{
	struct contrib *old = smap_del(&w->contribs, key);
	if (old) {
		contrib_foreach(old, ek)
		{
			struct delem *d = smap_del(&w->delems, ek);
			if (d)
				hair_ref(w, d, -1);
			delem_free(d);
			if (!w->full_sync) /* else every key is dirty (dirty_keys) */
				smap_add(&w->dirty_e, ek);
		}
		const char *end = old->s + contrib_part(old, true);
		for (const char *c = old->s + contrib_len(old); c < end; c += strlen(c) + 1)
			unwant_chain(w, c);
		free(old);
	}
	const struct svc_entries *es = svc_planner_get(sp, key);
	if (!es)
		return;
	struct names ct = {0}, ekeys = {0};
	struct smap seen = SMAP_INIT;
	for (size_t i = 0; i < es->n; i++) {
		const struct svc_entry *e = &es->v[i];
		if (e->vip.family != w->af)
			continue; /* the other family's table */
		struct delem *el = xcalloc(1, sizeof(*el));
		key_build(w, el->key, e->vip.b, l4_of(e->proto), e->port);
		struct be *bes = xcalloc(e->nbackends + 1, sizeof(*bes));
		for (size_t b = 0; e->verdict == SVC_FORWARD && b < e->nbackends; b++) {
			const struct svc_backend *be = &e->backends[b];
			if (be->ip.family != w->af)
				continue;
			struct be *nb = &bes[el->nbe++];
			nb->ip = be_handle(w, be->ip.b);
			nb->port = be->port;
			nb->weight = be->weight ? be->weight : 1;
			el->nslots += nb->weight;
		}
		if (el->nbe) {
			el->map = MAP_SERVICES;
			el->verdict = (uint32_t)NFT_GOTO;
			char *name = entry_chain(w, &ct, &seen, e, el->nslots);
			chain_ref(el, name);
			free(name);
			if (e->affinity_timeout)
				el->aff = xasprintf("aff-%s", e->group);
		} else {
			el->map = MAP_NOEP;
			if (e->verdict != SVC_DROP) {
				el->verdict = (uint32_t)NFT_GOTO;
				chain_ref(el, "reject-chain");
			} else {
				el->verdict = NF_DROP;
			}
		}
		char ks[80];
		key_str(w, el->key, ks, sizeof(ks));
		/* slots against the applied entry (after a dump, again at sync) */
		assign_slots(el, bes, el->nbe, smap_get(&w->aelems, ks));
		free(bes);
		bool created;
		void **slot = smap_slot(&w->delems, ks, &created);
		if (!created) { /* the planner keeps keys unique; be safe anyway */
			delem_free(el);
			continue;
		}
		*slot = el;
		hair_ref(w, el, +1);
		if (!w->full_sync)
			smap_add(&w->dirty_e, ks);
		names_add(&ekeys, ks);
	}
	smap_clear(&seen, NULL);
	free(seen.b);
	if (ekeys.n || ct.n) { /* else nothing in this family's table (IPv4-only Services) */
		struct contrib *c = xmalloc(sizeof(*c) + ekeys.len + ct.len);
		c->ne = ekeys.n;
		c->nc = ct.n;
		if (ekeys.len)
			memcpy(c->s, ekeys.p, ekeys.len);
		if (ct.len)
			memcpy(c->s + ekeys.len, ct.p, ct.len);
		bool created;
		*smap_slot(&w->contribs, key, &created) = c;
	}
	free(ekeys.p);
	free(ct.p);
}

/* Which backend goes to which slot: a backend keeps the slots it has in the kernel as far
 * as they are still below the new slot count and its weight allows; the others fill the free
 * slots in order.  So replacing one endpoint rewrites one element and removing one moves at
 * most one other. */
static void assign_slots(struct delem *d, const struct be *be, size_t nbe, const struct delem *a)
{
	free(d->slots);
	d->slots = xcalloc(d->nslots + 1, sizeof(*d->slots));
	uint16_t *left = xcalloc(nbe + 1, sizeof(*left));
	for (size_t i = 0; i < nbe; i++)
		left[i] = be[i].weight;
	for (size_t s = 0; a && s < a->nslots && s < d->nslots; s++)
		for (size_t i = 0; i < nbe; i++)
			if (left[i] && be_used(&a->slots[s]) && be_same(&be[i], &a->slots[s])) {
				d->slots[s] = be[i];
				left[i]--;
				break;
			}
	size_t i = 0;
	for (size_t s = 0; s < d->nslots; s++) {
		if (be_used(&d->slots[s]))
			continue;
		while (i < nbe && !left[i])
			i++;
		if (i == nbe)
			break;
		d->slots[s] = be[i];
		left[i]--;
	}
	free(left);
}

static int be_cmp(const void *x, const void *y)
{
	const struct be *a = x, *b = y;
	if (a->ip != b->ip)
		return a->ip < b->ip ? -1 : 1;
	return (a->port > b->port) - (a->port < b->port);
}

/* Assign d's slots again against a (the kernel's, after a dump): its backends are those at
 * its slots, each as many times as its weight. */
static void reassign_slots(struct delem *d, const struct delem *a)
{
	if (!d->nbe || !a)
		return;
	struct be *be = xcalloc(d->nslots + 1, sizeof(*be));
	memcpy(be, d->slots, d->nslots * sizeof(*be));
	qsort(be, d->nslots, sizeof(*be), be_cmp);
	size_t n = 0;
	for (size_t s = 0; s < d->nslots; s++) {
		if (n && be_same(&be[n - 1], &be[s]))
			continue;
		be[n] = be[s];
		be[n++].weight = 1;
		for (size_t t = s + 1; t < d->nslots && be_same(&be[t], &be[s]); t++)
			be[n - 1].weight++;
	}
	assign_slots(d, be, n, a);
	free(be);
}

/* ---- netlink ---- */

static char *nb_reserve(struct nbuf *b, size_t need)
{
	if (b->len + need > b->cap) {
		size_t cap = b->cap ? b->cap : 65536;
		while (cap < b->len + need)
			cap *= 2;
		b->p = xrealloc(b->p, cap);
		b->cap = cap;
	}
	return b->p + b->len;
}

static void nb_commit(struct nbuf *b, struct nlmsghdr *nlh)
{
	b->len += MNL_ALIGN(nlh->nlmsg_len);
}

static int open_sock(struct nft_writer *w)
{
	if (w->nl)
		return 0;
	w->nl = mnl_socket_open(NETLINK_NETFILTER);
	if (!w->nl)
		return -errno;
	if (mnl_socket_bind(w->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		int r = -errno;
		mnl_socket_close(w->nl);
		w->nl = NULL;
		return r;
	}
	int one = 1;
	mnl_socket_setsockopt(w->nl, NETLINK_CAP_ACK, &one, sizeof(one));
	mnl_socket_setsockopt(w->nl, NETLINK_EXT_ACK, &one, sizeof(one));
	w->portid = mnl_socket_get_portid(w->nl);
	w->seq = (uint32_t)time(NULL);
	return 0;
}

/* Run a dump request; cb gets each message. -ENOENT (no such table/set) reads as empty. */
static int dump(struct nft_writer *w, struct nlmsghdr *req, mnl_cb_t cb, void *arg)
{
	if (mnl_socket_sendto(w->nl, req, req->nlmsg_len) < 0)
		return -errno;
	char *buf = xmalloc(MNL_SOCKET_BUFFER_SIZE * 4);
	int r;
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(w->nl, buf, MNL_SOCKET_BUFFER_SIZE * 4);
		if (n < 0) {
			r = -errno;
			break;
		}
		r = mnl_cb_run(buf, (size_t)n, req->nlmsg_seq, w->portid, cb, arg);
		if (r < 0) {
			r = errno == ENOENT ? 0 : -errno;
			break;
		}
		if (r == MNL_CB_STOP) {
			r = 0;
			break;
		}
	}
	free(buf);
	return r;
}

/* Dynamic chains: pick-, svc-, ext- and (left by older versions, always unwanted) ep-. */
static bool is_dynamic(const char *name)
{
	return str_has_prefix(name, "svc-") || str_has_prefix(name, "ext-") ||
	       str_has_prefix(name, "pick-") || str_has_prefix(name, "ep-");
}

static int chain_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct fam *w = arg;
	struct nftnl_chain *c = nftnl_chain_alloc();
	if (!c || nftnl_chain_nlmsg_parse(nlh, c) < 0) {
		nftnl_chain_free(c);
		return MNL_CB_OK;
	}
	const char *table = nftnl_chain_get_str(c, NFTNL_CHAIN_TABLE);
	const char *name = nftnl_chain_get_str(c, NFTNL_CHAIN_NAME);
	if (table && !strcmp(table, w->table))
		w->present = true;
	if (table && name && !strcmp(table, w->table) && is_dynamic(name)) {
		bool created;
		void **slot = smap_slot(&w->achains, name, &created);
		free(*slot);
		*slot = xcalloc(1, sizeof(struct applied_chain)); /* sig 0: unknown content */
	}
	nftnl_chain_free(c);
	return MNL_CB_OK;
}

/* A dynamic chain's rules carry the signature of the content they were made from. */
static int rule_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct fam *w = arg;
	struct nftnl_rule *r = nftnl_rule_alloc();
	if (!r || nftnl_rule_nlmsg_parse(nlh, r) < 0) {
		nftnl_rule_free(r);
		return MNL_CB_OK;
	}
	const char *table = nftnl_rule_get_str(r, NFTNL_RULE_TABLE);
	const char *chain = nftnl_rule_get_str(r, NFTNL_RULE_CHAIN);
	struct applied_chain *ac =
	    table && chain && !strcmp(table, w->table) ? smap_get(&w->achains, chain) : NULL;
	uint32_t len = 0;
	const uint8_t *ud = ac ? nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &len) : NULL;
	/* TLV: type, len, value (a NUL-terminated comment) */
	if (ud && len > 2 && ud[0] == UDATA_COMMENT && ud[1] + 2u <= len) {
		char tmp[64] = "";
		size_t l = ud[1] < sizeof(tmp) ? ud[1] : sizeof(tmp) - 1;
		memcpy(tmp, ud + 2, l);
		tmp[l] = '\0';
		uint64_t sig = str_has_prefix(tmp, SIG_PREFIX)
				   ? strtoull(tmp + strlen(SIG_PREFIX), NULL, 16)
				   : 0;
		/* all rules must agree, or the content is unknown */
		if (!ac->seen)
			ac->sig = sig;
		else if (ac->sig != sig)
			ac->sig = 0;
	} else if (ac) {
		ac->sig = 0;
	}
	if (ac)
		ac->seen = true;
	nftnl_rule_free(r);
	return MNL_CB_OK;
}

static int set_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct fam *w = arg;
	struct nftnl_set *s = nftnl_set_alloc();
	if (s && nftnl_set_nlmsg_parse(nlh, s) >= 0) {
		const char *table = nftnl_set_get_str(s, NFTNL_SET_TABLE);
		const char *name = nftnl_set_get_str(s, NFTNL_SET_NAME);
		if (table && name && !strcmp(table, w->table) && str_has_prefix(name, "aff-"))
			smap_add(&w->asets, name);
		for (int m = 0; table && name && !strcmp(table, w->table) && m < NSETS; m++)
			if (!strcmp(name, map_names[m])) {
				w->kset[m] = true;
				w->ksize[m] = nftnl_set_is_set(s, NFTNL_SET_DESC_SIZE)
						  ? nftnl_set_get_u32(s, NFTNL_SET_DESC_SIZE)
						  : 0;
			}
	}
	nftnl_set_free(s);
	return MNL_CB_OK;
}

enum { ELEMS_SERVICES, ELEMS_NOEP, ELEMS_BACKENDS, ELEMS_HAIRPIN };

struct elem_ctx {
	struct fam *w;
	int what;
};

/* slot . entry key -> backend: the applied entry's slot (after the service maps' dump) */
static void backend_elem(struct elem_ctx *ec, const uint8_t *key, const uint8_t *data)
{
	struct fam *w = ec->w;
	uint32_t slot;
	memcpy(&slot, key, 4);
	w->kcount[MAP_BE]++;
	char ks[80];
	key_str(w, key + 4, ks, sizeof(ks));
	struct delem *a = smap_get(&w->aelems, ks);
	if (!a || slot >= (1u << 24)) { /* no entry has it: delete it on the next sync */
		w->orphans = xrealloc(w->orphans, (w->norphans + 1) * sizeof(*w->orphans));
		memcpy(w->orphans[w->norphans++], key, 4 + w->klen);
		return;
	}
	if (slot >= a->nslots) {
		a->slots = xrealloc(a->slots, (slot + 1) * sizeof(*a->slots));
		memset(a->slots + a->nslots, 0, (slot + 1 - a->nslots) * sizeof(*a->slots));
		a->nslots = slot + 1;
	}
	uint16_t port;
	memset(&a->slots[slot], 0, sizeof(a->slots[slot]));
	a->slots[slot].ip = be_handle(w, data);
	memcpy(&port, data + w->alen, 2);
	a->slots[slot].port = ntohs(port);
	a->slots[slot].weight = 1;
}

static int elem_iter(struct nftnl_set_elem *e, void *arg)
{
	struct elem_ctx *ec = arg;
	const struct fam *f = ec->w;
	uint32_t len = 0, dlen = 0;
	const uint8_t *key = nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &len);
	if (ec->what == ELEMS_BACKENDS) {
		const uint8_t *data = nftnl_set_elem_get(e, NFTNL_SET_ELEM_DATA, &dlen);
		if (key && len == 4 + f->klen && data && dlen == f->alen + 4)
			backend_elem(ec, key, data);
		return 0;
	}
	if (ec->what == ELEMS_HAIRPIN) {
		ec->w->kcount[SET_HP]++;
		uint32_t *v = key && len == 2 * f->alen ? amap_get(&ec->w->dhair, key) : NULL;
		if (v)
			*v |= HAIR_SEEN;
		else if (key && len == 2 * f->alen && !amap_get(&ec->w->xhair, key))
			amap_add(&ec->w->xhair, key, 1);
		return 0;
	}
	if (!key || len != f->klen)
		return 0;
	struct delem *el = xcalloc(1, sizeof(*el));
	el->map = ec->what;
	memcpy(el->key, key, f->klen);
	el->verdict = nftnl_set_elem_get_u32(e, NFTNL_SET_ELEM_VERDICT);
	const char *chain = nftnl_set_elem_get_str(e, NFTNL_SET_ELEM_CHAIN);
	chain_ref(el, chain);
	char ks[80];
	key_str(f, el->key, ks, sizeof(ks));
	bool created;
	void **slot = smap_slot(&ec->w->aelems, ks, &created);
	delem_free(*slot); /* a key in both maps: keep the later; the diff fixes it */
	*slot = el;
	return 0;
}

static int elem_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct nftnl_set *s = nftnl_set_alloc();
	if (s && nftnl_set_elems_nlmsg_parse(nlh, s) >= 0)
		nftnl_set_elem_foreach(s, elem_iter, arg);
	nftnl_set_free(s);
	return MNL_CB_OK;
}

static char *aff_chain_name(const char *aff_map);

/* The entry keys to compare: those changed, or in a full sync every key desired or in the
 * kernel (no set of 12,000 dirty keys at the peak of the first sync).  Free the array. */
static const char **dirty_keys(const struct fam *w, size_t *n)
{
	if (!w->full_sync)
		return smap_keys(&w->dirty_e, n);
	/* in no particular order (sorting 12,000 keys twice a sync is not needed) */
	const char **k = xcalloc(w->delems.n + w->aelems.n + 1, sizeof(*k));
	*n = 0;
	smap_foreach(&w->delems, it) k[(*n)++] = it->key;
	smap_foreach(&w->aelems, it) if (!smap_get(&w->delems, it->key)) k[(*n)++] = it->key;
	return k;
}

static void mark_all_dirty(struct fam *w)
{
	const struct smap *maps[] = {&w->achains, &w->dchains};
	for (size_t i = 0; i < 2; i++)
		smap_foreach(maps[i], it) smap_add(&w->dirty_c, it->key);
	const struct smap *emaps[] = {&w->aelems, &w->delems};
	for (size_t i = 0; i < 2 && !w->full_sync; i++) /* full: dirty_keys() has them all */
		smap_foreach(emaps[i], it) smap_add(&w->dirty_e, it->key);
	/* an affinity map belongs to the service chain of the same group */
	smap_foreach(&w->asets, it)
	{
		char *svc = aff_chain_name(it->key);
		smap_add(&w->dirty_c, svc);
		free(svc);
	}
}

static int dump_elems(struct nft_writer *w, const char *set, struct elem_ctx *ec)
{
	char buf[8192];
	struct nftnl_set *s = nftnl_set_alloc();
	nftnl_set_set_str(s, NFTNL_SET_TABLE, w->table);
	nftnl_set_set_str(s, NFTNL_SET_NAME, set);
	struct nlmsghdr *nlh =
	    nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETSETELEM, ec->w->nfproto, NLM_F_DUMP, ++w->seq);
	nftnl_set_elems_nlmsg_build_payload(nlh, s);
	nftnl_set_free(s);
	return dump(w, nlh, elem_cb, ec);
}

/* What one family's table holds. */
static int dump_kernel(struct nft_writer *w, struct fam *f)
{
	f->present = false;
	memset(f->kset, 0, sizeof(f->kset));
	memset(f->ksize, 0, sizeof(f->ksize));
	memset(f->kcount, 0, sizeof(f->kcount));
	smap_clear(&f->achains, free);
	smap_clear(&f->aelems, delem_free);
	smap_clear(&f->asets, NULL);
	amap_clear(&f->xhair);
	free(f->orphans);
	f->orphans = NULL;
	f->norphans = 0;
	char buf[8192];
	struct nlmsghdr *nlh =
	    nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETCHAIN, f->nfproto, NLM_F_DUMP, ++w->seq);
	int r = dump(w, nlh, chain_cb, f);
	if (r == 0) {
		struct nftnl_rule *rl = nftnl_rule_alloc();
		nftnl_rule_set_str(rl, NFTNL_RULE_TABLE, w->table);
		nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETRULE, f->nfproto, NLM_F_DUMP, ++w->seq);
		nftnl_rule_nlmsg_build_payload(nlh, rl);
		nftnl_rule_free(rl);
		r = dump(w, nlh, rule_cb, f);
	}
	if (r == 0) {
		struct nftnl_set *s = nftnl_set_alloc();
		nftnl_set_set_str(s, NFTNL_SET_TABLE, w->table);
		nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETSET, f->nfproto, NLM_F_DUMP, ++w->seq);
		nftnl_set_nlmsg_build_payload(nlh, s);
		nftnl_set_free(s);
		r = dump(w, nlh, set_cb, f);
	}
	for (int m = 0; m < NSETS && r == 0; m++) {
		struct elem_ctx ec = {f, m};
		r = dump_elems(w, map_names[m], &ec);
	}
	return r;
}

/* ---- transaction building ---- */

struct batch {
	struct nbuf b;
	struct nft_writer *w;
	struct fam *f; /* the table the next messages are for */
	unsigned msgs;
	uint32_t set_id;
	const char *comment; /* put on every rule added (the chain's content signature) */
};

static struct nlmsghdr *msg_hdr(struct batch *bt, uint16_t type, uint16_t flags, size_t room)
{
	char *p = nb_reserve(&bt->b, room + 1024);
	bt->msgs++;
	return nftnl_nlmsg_build_hdr(p, type, bt->f->nfproto, flags, ++bt->w->seq);
}

static void add_table(struct batch *bt)
{
	struct nftnl_table *t = nftnl_table_alloc();
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, bt->w->table);
	struct nlmsghdr *nlh = msg_hdr(bt, NFT_MSG_NEWTABLE, NLM_F_CREATE, 256);
	nftnl_table_nlmsg_build_payload(nlh, t);
	nb_commit(&bt->b, nlh);
	nftnl_table_free(t);
}

static void add_chain(struct batch *bt, const char *name, const char *type, int hook, int prio)
{
	struct nftnl_chain *c = nftnl_chain_alloc();
	nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, bt->w->table);
	nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
	if (type) {
		nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, type);
		nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, (uint32_t)hook);
		nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, prio);
	}
	struct nlmsghdr *nlh = msg_hdr(bt, NFT_MSG_NEWCHAIN, NLM_F_CREATE, 512);
	nftnl_chain_nlmsg_build_payload(nlh, c);
	nb_commit(&bt->b, nlh);
	nftnl_chain_free(c);
}

static void chain_op(struct batch *bt, uint16_t type, const char *name)
{
	struct nftnl_chain *c = nftnl_chain_alloc();
	nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, bt->w->table);
	nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
	struct nlmsghdr *nlh = msg_hdr(bt, type, 0, 512);
	nftnl_chain_nlmsg_build_payload(nlh, c);
	nb_commit(&bt->b, nlh);
	nftnl_chain_free(c);
}

/* Delete every rule of a chain (a DELRULE naming only the chain). */
static void flush_chain(struct batch *bt, const char *name)
{
	struct nftnl_rule *r = nftnl_rule_alloc();
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, bt->w->table);
	nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, name);
	struct nlmsghdr *nlh = msg_hdr(bt, NFT_MSG_DELRULE, 0, 512);
	nftnl_rule_nlmsg_build_payload(nlh, r);
	nb_commit(&bt->b, nlh);
	nftnl_rule_free(r);
}

/* A named set (data_type 0) or map in the table. */
static void add_set(struct batch *bt, const char *name, uint32_t flags, uint32_t key_type,
		    uint32_t key_len, uint32_t data_type, uint32_t data_len, uint32_t size)
{
	struct nftnl_set *s = nftnl_set_alloc();
	nftnl_set_set_str(s, NFTNL_SET_TABLE, bt->w->table);
	nftnl_set_set_str(s, NFTNL_SET_NAME, name);
	nftnl_set_set_u32(s, NFTNL_SET_FAMILY, bt->f->nfproto);
	nftnl_set_set_u32(s, NFTNL_SET_FLAGS, flags | (data_type ? NFT_SET_MAP : 0));
	nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, key_type);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, key_len);
	if (data_type) {
		nftnl_set_set_u32(s, NFTNL_SET_DATA_TYPE, data_type);
		if (data_len)
			nftnl_set_set_u32(s, NFTNL_SET_DATA_LEN, data_len);
	}
	if (size)
		nftnl_set_set_u32(s, NFTNL_SET_DESC_SIZE, size);
	nftnl_set_set_u32(s, NFTNL_SET_ID, ++bt->set_id);
	struct nlmsghdr *nlh = msg_hdr(bt, NFT_MSG_NEWSET, NLM_F_CREATE, 512);
	nftnl_set_nlmsg_build_payload(nlh, s);
	nb_commit(&bt->b, nlh);
	nftnl_set_free(s);
}

/* DELSET, or with flush a DELSETELEM without elements: empty the set. */
static void set_op(struct batch *bt, const char *name, bool flush)
{
	struct nftnl_set *s = nftnl_set_alloc();
	nftnl_set_set_str(s, NFTNL_SET_TABLE, bt->w->table);
	nftnl_set_set_str(s, NFTNL_SET_NAME, name);
	struct nlmsghdr *nlh = msg_hdr(bt, flush ? NFT_MSG_DELSETELEM : NFT_MSG_DELSET, 0, 512);
	if (flush)
		nftnl_set_elems_nlmsg_build_payload(nlh, s);
	else
		nftnl_set_nlmsg_build_payload(nlh, s);
	nb_commit(&bt->b, nlh);
	nftnl_set_free(s);
}

static struct nftnl_rule *rule_new(struct batch *bt, const char *chain)
{
	struct nftnl_rule *r = nftnl_rule_alloc();
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, bt->w->table);
	nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
	nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, bt->f->nfproto);
	return r;
}

static void rule_commit(struct batch *bt, struct nftnl_rule *r)
{
	struct nftnl_udata_buf *ud = NULL;
	if (bt->comment) {
		ud = nftnl_udata_buf_alloc(256);
		nftnl_udata_put_strz(ud, UDATA_COMMENT, bt->comment);
		nftnl_rule_set_data(r, NFTNL_RULE_USERDATA, nftnl_udata_buf_data(ud),
				    nftnl_udata_buf_len(ud));
	}
	struct nlmsghdr *nlh = msg_hdr(bt, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, 2048);
	nftnl_rule_nlmsg_build_payload(nlh, r);
	nb_commit(&bt->b, nlh);
	nftnl_rule_free(r);
	if (ud)
		nftnl_udata_buf_free(ud);
}

static void x_meta(struct nftnl_rule *r, uint32_t key, uint32_t dreg)
{
	struct nftnl_expr *e = nftnl_expr_alloc("meta");
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, dreg);
	nftnl_rule_add_expr(r, e);
}

static void x_meta_set(struct nftnl_rule *r, uint32_t key, uint32_t sreg)
{
	struct nftnl_expr *e = nftnl_expr_alloc("meta");
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_SREG, sreg);
	nftnl_rule_add_expr(r, e);
}

static void x_imm(struct nftnl_rule *r, uint32_t dreg, const void *data, uint32_t len)
{
	struct nftnl_expr *e = nftnl_expr_alloc("immediate");
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, dreg);
	nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, data, len);
	nftnl_rule_add_expr(r, e);
}

static void x_cmp_reg(struct nftnl_rule *r, uint32_t sreg, const void *data, uint32_t len)
{
	struct nftnl_expr *e = nftnl_expr_alloc("cmp");
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, sreg);
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, NFT_CMP_EQ);
	nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
	nftnl_rule_add_expr(r, e);
}

#define NO_DREG (-1)
/* lookup @set: key from sreg; dreg: NFT_REG_VERDICT (vmap), a data register (map) or
 * NO_DREG (set) */
static void x_lookup(struct nftnl_rule *r, const char *set, uint32_t sreg, int dreg)
{
	struct nftnl_expr *e = nftnl_expr_alloc("lookup");
	nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, sreg);
	if (dreg != NO_DREG)
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, (uint32_t)dreg);
	nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
	nftnl_rule_add_expr(r, e);
}

/* ip[6] daddr . meta l4proto . th dport into registers 32-bit first.. */
static void x_service_key(struct nftnl_rule *r, const struct fam *f, uint32_t first)
{
	nftb_payload_reg(r, NFT_PAYLOAD_NETWORK_HEADER, f->daddr, f->alen, R32(first));
	x_meta(r, NFT_META_L4PROTO, R32(first + f->aw));
	nftb_payload_reg(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, R32(first + f->aw + 1));
}

/* ip[6] daddr . meta l4proto . th dport vmap @map */
static void rule_service_lookup(struct batch *bt, const char *chain, const char *map)
{
	struct nftnl_rule *r = rule_new(bt, chain);
	x_service_key(r, bt->f, 0);
	x_lookup(r, map, NFT_REG32_00, NFT_REG_VERDICT);
	rule_commit(bt, r);
}

static void x_masq(struct nftnl_rule *r)
{
	nftnl_rule_add_expr(r, nftnl_expr_alloc("masq"));
}

/* The element sets to make: those not in the kernel, and those to recreate (after the rules
 * bound to them were flushed: the fixed chains by the caller, the pick and affinity chains,
 * which read the backends map, here; they are refilled by fam_batch). */
static void sets_create(struct batch *bt)
{
	const struct fam *f = bt->f;
	if (f->fresh[MAP_BE])
		smap_foreach(&f->achains, it) if (str_has_prefix(it->key, "pick-") ||
						  str_has_prefix(it->key, "svc-"))
		    flush_chain(bt, it->key);
	for (int m = 0; m < NSETS; m++)
		if (f->fresh[m] && f->kset[m])
			set_op(bt, map_names[m], false);
	const uint32_t st = SVC_KEY_TYPE(f->atype);
	const struct {
		uint32_t kt, kl, dt, dl;
	} shape[NSETS] = {
	    {st, f->klen, NFT_DATA_VERDICT, 0},
	    {st, f->klen, NFT_DATA_VERDICT, 0},
	    {BE_KEY_TYPE(f->atype), 4 + f->klen, BE_DATA_TYPE(f->atype), f->alen + 4},
	    {HP_KEY_TYPE(f->atype), 2 * f->alen, 0, 0},
	};
	for (int m = 0; m < NSETS; m++)
		if (f->made[m])
			add_set(bt, map_names[m], 0, shape[m].kt, shape[m].kl, shape[m].dt,
				shape[m].dl, f->nsize[m]);
}

static void base_objects(struct batch *bt)
{
	struct nft_writer *w = bt->w;
	const struct fam *f = bt->f;
	add_table(bt);
	static const struct {
		const char *name, *type;
		int hook, prio;
	} base[] = {
	    {"nat-prerouting", "nat", NF_INET_PRE_ROUTING, -100},
	    {"nat-output", "nat", NF_INET_LOCAL_OUT, -100},
	    {"nat-postrouting", "nat", NF_INET_POST_ROUTING, 100},
	    {"filter-input", "filter", NF_INET_LOCAL_IN, -110},
	    {"filter-forward", "filter", NF_INET_FORWARD, -110},
	    {"filter-output", "filter", NF_INET_LOCAL_OUT, -110},
	    {"services", NULL, 0, 0},
	    {"mark-for-masquerade", NULL, 0, 0},
	    {"reject-chain", NULL, 0, 0},
	};
	for (size_t i = 0; i < ARRAY_SIZE(base); i++)
		add_chain(bt, base[i].name, base[i].type, base[i].hook, base[i].prio);
	/* refill the fixed chains: flush and add in this one transaction, so no packet ever
	 * sees them empty and a restart is hitless */
	for (size_t i = 0; i < ARRAY_SIZE(base); i++)
		flush_chain(bt, base[i].name);
	sets_create(bt);
	struct nftnl_rule *r;
	for (int i = 0; i < 2; i++) {
		r = rule_new(bt, i ? "nat-output" : "nat-prerouting");
		nftb_verdict(r, NFT_JUMP, "services");
		rule_commit(bt, r);
	}
	rule_service_lookup(bt, "services", map_names[MAP_SERVICES]);
	const char *filt[] = {"filter-input", "filter-forward", "filter-output"};
	for (size_t i = 0; i < ARRAY_SIZE(filt); i++)
		rule_service_lookup(bt, filt[i], map_names[MAP_NOEP]);
	/* masquerade what was marked: meta mark & M != 0 masquerade */
	uint32_t zero = 0;
	r = rule_new(bt, "nat-postrouting");
	x_meta(r, NFT_META_MARK, NFT_REG_1);
	nftb_bitwise(r, w->mark, 0);
	nftb_cmp(r, NFT_CMP_NEQ, &zero, 4);
	x_masq(r);
	rule_commit(bt, r);
	/* hairpin: a backend that reached itself through a Service must be masqueraded, or its
	 * reply would bypass the DNAT: ct status dnat ip saddr . ip daddr @hairpin masquerade */
	r = rule_new(bt, "nat-postrouting");
	struct nftnl_expr *e = nftnl_expr_alloc("ct");
	nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_STATUS);
	nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
	nftnl_rule_add_expr(r, e);
	nftb_bitwise(r, IPS_DST_NAT, 0);
	nftb_cmp(r, NFT_CMP_NEQ, &zero, 4);
	nftb_payload_reg(r, NFT_PAYLOAD_NETWORK_HEADER, f->saddr, f->alen, NFT_REG32_00);
	nftb_payload_reg(r, NFT_PAYLOAD_NETWORK_HEADER, f->daddr, f->alen, R32(f->aw));
	x_lookup(r, SET_HAIRPIN, NFT_REG32_00, NO_DREG);
	x_masq(r);
	rule_commit(bt, r);
	/* meta mark set meta mark | M */
	r = rule_new(bt, "mark-for-masquerade");
	x_meta(r, NFT_META_MARK, NFT_REG_1);
	nftb_bitwise(r, ~w->mark, w->mark);
	x_meta_set(r, NFT_META_MARK, NFT_REG_1);
	rule_commit(bt, r);
	/* TCP: reset; others: ICMP (ICMPv6) port unreachable */
	uint8_t tcp = IPPROTO_TCP;
	r = rule_new(bt, "reject-chain");
	x_meta(r, NFT_META_L4PROTO, NFT_REG_1);
	nftb_cmp(r, NFT_CMP_EQ, &tcp, 1);
	e = nftnl_expr_alloc("reject");
	nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, NFT_REJECT_TCP_RST);
	nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE, 0);
	nftnl_rule_add_expr(r, e);
	rule_commit(bt, r);
	r = rule_new(bt, "reject-chain");
	e = nftnl_expr_alloc("reject");
	nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, NFT_REJECT_ICMP_UNREACH);
	nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE,
			  f->af == AF_INET6 ? ICMP6_DST_UNREACH_NOPORT : ICMP_PORT_UNREACH);
	nftnl_rule_add_expr(r, e);
	rule_commit(bt, r);
}

static char *aff_map_name(const char *svc_chain)
{
	return xasprintf("aff-%s", svc_chain + 4);
}

static char *aff_chain_name(const char *aff_map)
{
	return xasprintf("svc-%s", aff_map + 4);
}

/* sessionAffinity ClientIP: one map per group, client address -> slot, entries expiring T
 * seconds after the client's last new connection (the dynset update refreshes them).  A
 * group whose slots change (a backend removed or moved) has its map emptied in the same
 * transaction, so no client is sent to a removed backend.  (The slot, not the backend, is
 * the data: nft 1.0.6 cannot print a dynset whose data is a concatenation.) */
static void aff_map_add(struct batch *bt, const char *name)
{
	add_set(bt, name, NFT_SET_TIMEOUT | NFT_SET_EVAL, bt->f->atype, bt->f->alen, NFT_TYPE_MARK,
		4, 0);
}

/* Registers of the pick (A = address words: 1 for IPv4, 4 for IPv6): the backends key
 * slot . daddr . l4proto . dport in 0 .. A + 2, its data address . port in A + 3 .. 2A + 3,
 * the client address for the affinity update in 2A + 4 .. (at most 15). */
#define REG_BE_DATA(f) R32(3 + (f)->aw)
#define REG_BE_PORT(f) R32(3 + 2 * (f)->aw)
#define REG_SADDR(f) R32(4 + 2 * (f)->aw)

/* update @aff-<group> { ip saddr timeout T : <slot in sreg> } */
static void x_aff_update(struct nftnl_rule *r, const struct fam *f, const char *map, uint32_t sreg,
			 uint32_t aff)
{
	nftb_payload_reg(r, NFT_PAYLOAD_NETWORK_HEADER, f->saddr, f->alen, REG_SADDR(f));
	struct nftnl_expr *d = nftnl_expr_alloc("dynset");
	nftnl_expr_set_u32(d, NFTNL_EXPR_DYNSET_SREG_KEY, REG_SADDR(f));
	nftnl_expr_set_u32(d, NFTNL_EXPR_DYNSET_SREG_DATA, sreg);
	nftnl_expr_set_u32(d, NFTNL_EXPR_DYNSET_OP, NFT_DYNSET_OP_UPDATE);
	nftnl_expr_set_u64(d, NFTNL_EXPR_DYNSET_TIMEOUT, (uint64_t)aff * 1000);
	nftnl_expr_set_str(d, NFTNL_EXPR_DYNSET_SET_NAME, map);
	nftnl_rule_add_expr(r, d);
}

/* dnat to the backends map's data: address : port */
static void x_dnat_regs(struct nftnl_rule *r, const struct fam *f)
{
	struct nftnl_expr *e = nftnl_expr_alloc("nat");
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, NFT_NAT_DNAT);
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY, f->nfproto);
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, REG_BE_DATA(f));
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_PROTO_MIN, REG_BE_PORT(f));
	nftnl_rule_add_expr(r, e);
}

/* The slot: numgen random|inc mod N, or jhash(ip saddr|daddr) mod N, into REG32_00. */
static void x_pick_slot(struct nftnl_rule *r, const struct fam *f, uint8_t sched, size_t nslots)
{
	struct nftnl_expr *e;
	bool hash = sched == SVC_SCHED_SH || sched == SVC_SCHED_DH;
	if (hash) {
		nftb_payload_reg(r, NFT_PAYLOAD_NETWORK_HEADER,
			  sched == SVC_SCHED_SH ? f->saddr : f->daddr, f->alen, NFT_REG32_00);
		e = nftnl_expr_alloc("hash");
		nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_TYPE, NFT_HASH_JENKINS);
		nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_SREG, NFT_REG32_00);
		nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_LEN, f->alen);
		nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_SEED, 0x74776c6c /* "twll" */);
		nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_OFFSET, 0);
	} else {
		e = nftnl_expr_alloc("numgen");
		nftnl_expr_set_u32(e, NFTNL_EXPR_NG_TYPE,
				   sched == SVC_SCHED_RR ? NFT_NG_INCREMENTAL : NFT_NG_RANDOM);
		nftnl_expr_set_u32(e, NFTNL_EXPR_NG_OFFSET, 0);
	}
	nftnl_expr_set_u32(e, hash ? NFTNL_EXPR_HASH_DREG : NFTNL_EXPR_NG_DREG, NFT_REG32_00);
	nftnl_expr_set_u32(e, hash ? NFTNL_EXPR_HASH_MODULUS : NFTNL_EXPR_NG_MODULUS,
			   (uint32_t)nslots);
	nftnl_rule_add_expr(r, e);
}

/* <slot> . ip daddr . meta l4proto . th dport (REG32_00..) -> @backends -> REG_BE_DATA */
static void x_backend_of_slot(struct nftnl_rule *r, const struct fam *f)
{
	x_service_key(r, f, 1);
	x_lookup(r, MAP_BACKENDS, NFT_REG32_00, (int)REG_BE_DATA(f));
}

static void x_pick_backend(struct nftnl_rule *r, const struct fam *f, uint8_t sched, size_t nslots)
{
	x_pick_slot(r, f, sched, nslots);
	x_backend_of_slot(r, f);
}

static void chain_rules(struct batch *bt, const char *name, const struct dchain *c)
{
	const struct fam *f = bt->f;
	struct nftnl_rule *r;
	if (c->kind == CK_EXT) {
		r = rule_new(bt, name);
		nftb_verdict(r, NFT_JUMP, "mark-for-masquerade");
		rule_commit(bt, r);
		r = rule_new(bt, name);
		nftb_verdict(r, NFT_GOTO, c->target);
		rule_commit(bt, r);
		return;
	}
	char *aff = c->kind == CK_SVC ? aff_map_name(name) : NULL;
	/* a known client: one rule per slot, so that the slot in the backends key is a constant
	 * (nft 1.0.6 cannot print a concatenation holding a map lookup's result):
	 * ip saddr map @aff == i, refresh the entry, dnat to @backends[i . <entry>] */
	for (uint32_t i = 0; aff && i < c->nslots; i++) {
		r = rule_new(bt, name);
		nftb_payload_reg(r, NFT_PAYLOAD_NETWORK_HEADER, f->saddr, f->alen, NFT_REG32_00);
		x_lookup(r, aff, NFT_REG32_00, (int)R32(f->aw));
		x_cmp_reg(r, R32(f->aw), &i, 4);
		x_imm(r, NFT_REG32_00, &i, 4);
		x_aff_update(r, f, aff, NFT_REG32_00, c->aff);
		x_backend_of_slot(r, f);
		x_dnat_regs(r, f);
		rule_commit(bt, r);
	}
	r = rule_new(bt, name);
	x_pick_backend(r, f, c->sched, c->nslots);
	if (aff)
		x_aff_update(r, f, aff, NFT_REG32_00, c->aff);
	x_dnat_regs(r, f);
	rule_commit(bt, r);
	free(aff);
}

static struct nftnl_set *elems_msg_start(struct batch *bt, const char *set)
{
	struct nftnl_set *s = nftnl_set_alloc();
	nftnl_set_set_str(s, NFTNL_SET_TABLE, bt->w->table);
	nftnl_set_set_str(s, NFTNL_SET_NAME, set);
	return s;
}

static void elems_msg_end(struct batch *bt, uint16_t type, struct nftnl_set *s, size_t n)
{
	struct nlmsghdr *nlh =
	    msg_hdr(bt, type, type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0, 128 + n * 128);
	nftnl_set_elems_nlmsg_build_payload(nlh, s);
	nb_commit(&bt->b, nlh);
	nftnl_set_free(s);
}

/* Batches element additions or deletions of one set into messages of ELEMS_PER_MSG. */
struct elem_batch {
	struct batch *bt;
	const char *set;
	uint16_t type;
	struct nftnl_set *s;
	size_t n;
};

static void eb_add(struct elem_batch *eb, struct nftnl_set_elem *el)
{
	if (!eb->s)
		eb->s = elems_msg_start(eb->bt, eb->set);
	nftnl_set_elem_add(eb->s, el);
	if (++eb->n == ELEMS_PER_MSG) {
		elems_msg_end(eb->bt, eb->type, eb->s, eb->n);
		eb->s = NULL;
		eb->n = 0;
	}
}

static void eb_flush(struct elem_batch *eb)
{
	if (eb->s)
		elems_msg_end(eb->bt, eb->type, eb->s, eb->n);
	eb->s = NULL;
	eb->n = 0;
}

static void eb_backend(struct elem_batch *eb, uint32_t slot, const uint8_t *ekey,
		       const struct be *b)
{
	const struct fam *f = eb->bt->f;
	uint8_t key[BE_KEY_MAX], data[20] = {0};
	memcpy(key, &slot, 4);
	memcpy(key + 4, ekey, f->klen);
	struct nftnl_set_elem *el = nftnl_set_elem_alloc();
	nftnl_set_elem_set(el, NFTNL_SET_ELEM_KEY, key, 4 + f->klen);
	if (eb->type == NFT_MSG_NEWSETELEM) {
		uint16_t port = htons(b->port);
		memcpy(data, be_addr(f, b), f->alen);
		memcpy(data + f->alen, &port, 2);
		nftnl_set_elem_set(el, NFTNL_SET_ELEM_DATA, data, f->alen + 4);
	}
	eb_add(eb, el);
}

static void eb_svc(struct elem_batch *eb, const struct delem *d)
{
	struct nftnl_set_elem *el = nftnl_set_elem_alloc();
	nftnl_set_elem_set(el, NFTNL_SET_ELEM_KEY, d->key, eb->bt->f->klen);
	if (eb->type == NFT_MSG_NEWSETELEM) {
		nftnl_set_elem_set_u32(el, NFTNL_SET_ELEM_VERDICT, d->verdict);
		if (d->chain)
			nftnl_set_elem_set_str(el, NFTNL_SET_ELEM_CHAIN, d->chain);
	}
	eb_add(eb, el);
}

static void eb_hairpin(struct elem_batch *eb, const void *ip)
{
	uint32_t alen = eb->bt->f->alen;
	uint8_t key[32];
	memcpy(key, ip, alen);
	memcpy(key + alen, ip, alen);
	struct nftnl_set_elem *el = nftnl_set_elem_alloc();
	nftnl_set_elem_set(el, NFTNL_SET_ELEM_KEY, key, 2 * alen);
	eb_add(eb, el);
}

static bool delem_same(const struct delem *a, const struct delem *b)
{
	return a->map == b->map && a->verdict == b->verdict &&
	       !memcmp(a->key, b->key, SVC_KEY_MAX) &&
	       ((!a->chain || !b->chain) ? a->chain == b->chain : !strcmp(a->chain, b->chain));
}


/* Send the transaction; the kernel processes it inside sendmsg, so every error is queued
 * by the time sendmsg returns (errors are reported without NLM_F_ACK). */
static int send_batch(struct nft_writer *w, struct batch *bt)
{
	int sz = (int)(bt->b.len + 65536);
	if (setsockopt(mnl_socket_get_fd(w->nl), SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) < 0)
		setsockopt(mnl_socket_get_fd(w->nl), SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	if (mnl_socket_sendto(w->nl, bt->b.p, bt->b.len) < 0)
		return -errno;
	char *buf = xmalloc(MNL_SOCKET_BUFFER_SIZE);
	int r = 0;
	for (;;) {
		ssize_t n =
		    recv(mnl_socket_get_fd(w->nl), buf, MNL_SOCKET_BUFFER_SIZE, MSG_DONTWAIT);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && !r)
				r = -errno;
			break;
		}
		const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf;
		int len = (int)n;
		for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
			if (nlh->nlmsg_type != NLMSG_ERROR)
				continue;
			const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
			if (e->error && !r) {
				r = e->error;
				snprintf(w->err, sizeof(w->err), "message seq %u: %s",
					 e->msg.nlmsg_seq, strerror(-e->error));
			}
		}
	}
	free(buf);
	return r;
}

static void hair_unseen(struct fam *w)
{
	if (w->full_sync)
		amap_foreach(&w->dhair, i) w->dhair.v[i] &= ~HAIR_SEEN;
	w->full_sync = false;
}

static void update_applied(struct fam *w)
{
	w->kcount[MAP_BE] = w->nwant[MAP_BE];
	w->kcount[SET_HP] = w->dhair.n;
	for (int m = 0; m < NSETS; m++) {
		if (w->made[m]) {
			w->kset[m] = true;
			w->ksize[m] = w->nsize[m];
		}
		w->made[m] = w->fresh[m] = false;
	}
	smap_foreach(&w->dirty_c, it)
	{
		const struct dchain *d = smap_get(&w->dchains, it->key);
		if (d) {
			bool created;
			void **slot = smap_slot(&w->achains, it->key, &created);
			if (!*slot)
				*slot = xcalloc(1, sizeof(struct applied_chain));
			((struct applied_chain *)*slot)->sig = d->sig;
		} else {
			free(smap_del(&w->achains, it->key));
		}
		if (str_has_prefix(it->key, "svc-")) {
			char *set = aff_map_name(it->key);
			if (d && d->aff)
				smap_add(&w->asets, set);
			else
				smap_del(&w->asets, set);
			free(set);
		}
	}
	size_t ne;
	const char **en = dirty_keys(w, &ne);
	for (size_t i = 0; i < ne; i++) {
		const char *ek = en[i];
		struct delem *d = smap_get(&w->delems, ek);
		delem_free(smap_del(&w->aelems, ek));
		if (d) {
			d->staged = false;
			struct delem *c = xcalloc(1, sizeof(*c));
			c->map = d->map;
			memcpy(c->key, d->key, SVC_KEY_MAX);
			c->verdict = d->verdict;
			chain_ref(c, d->chain);
			c->nslots = d->nbe ? d->nslots : 0;
			if (c->nslots) {
				c->slots = xcalloc(c->nslots, sizeof(*c->slots));
				memcpy(c->slots, d->slots, c->nslots * sizeof(*c->slots));
			}
			bool created;
			*smap_slot(&w->aelems, ek, &created) = c;
		}
	}
	free(en);
	hair_unseen(w); /* the kernel's set is dhair's addresses now */
	amap_clear(&w->xhair);
	free(w->orphans);
	w->orphans = NULL;
	w->norphans = 0;
	smap_clear(&w->dirty_c, NULL);
	smap_clear(&w->dirty_e, NULL);
	amap_clear(&w->dirty_h);
}

/* ---- UDP conntrack cleanup ---- */

static bool has_backend(const struct delem *d, const struct be *b)
{
	for (size_t i = 0; d && d->nbe && i < d->nslots; i++)
		if (be_same(&d->slots[i], b))
			return true;
	return false;
}

/* The UDP backends this sync removes from an entry (read from its applied slots): the
 * conntrack entries sent to the entry's address and port and translated to one of them are
 * to be deleted.  Works from the applied state, so a restarted writer that finds a backend
 * gone from the kernel's table cleans up too. */
static void stale_udp(struct fam *w, const char **en, size_t ne, struct ct_match **out, size_t *n)
{
	size_t first = *n; /* this family's */
	for (size_t i = 0; i < ne; i++) {
		const struct delem *a = smap_get(&w->aelems, en[i]);
		const struct delem *d = smap_get(&w->delems, en[i]);
		if (!a || a->key[w->alen] != IPPROTO_UDP)
			continue;
		for (size_t s = 0; s < a->nslots; s++) {
			const struct be *b = &a->slots[s];
			if (!be_used(b) || has_backend(d, b))
				continue;
			struct ct_match m;
			memset(&m, 0, sizeof(m)); /* padding too: compared with memcmp */
			m.family = (uint8_t)w->af;
			m.l4 = IPPROTO_UDP;
			m.dport = key_port(w, a->key);
			m.rsport = b->port;
			memcpy(m.dst, a->key, w->alen);
			memcpy(m.rsrc, be_addr(w, b), w->alen);
			bool dup = false;
			for (size_t k = first; k < *n && !dup; k++)
				dup = !memcmp(&(*out)[k], &m, sizeof(m));
			if (dup)
				continue;
			*out = xrealloc(*out, (*n + 1) * sizeof(**out));
			(*out)[(*n)++] = m;
		}
	}
}

/* ---- public ---- */

struct nft_writer *nft_writer_new(struct svc_planner *sp, const struct nft_cfg *cfg)
{
	struct nft_writer *w = xcalloc(1, sizeof(*w));
	w->sp = sp;
	w->table = xstrdup(cfg && cfg->table ? cfg->table : NFT_TWILL_TABLE);
	w->mark = cfg && cfg->masq_mark ? cfg->masq_mark : NFT_TWILL_MASQ_MARK;
	w->need_dump = true;
	for (int i = 0; i < NFAM; i++) {
		struct fam *f = &w->fam[i];
		bool v6 = i == 1;
		f->af = v6 ? AF_INET6 : AF_INET;
		f->nfproto = v6 ? NFPROTO_IPV6 : NFPROTO_IPV4;
		f->alen = v6 ? 16 : 4;
		f->aw = f->alen / 4;
		f->klen = f->alen + 8;
		f->atype = v6 ? NFT_TYPE_IP6ADDR : NFT_TYPE_IPADDR;
		f->saddr = v6 ? 8 : 12;
		f->daddr = v6 ? 24 : 16;
		f->table = w->table;
		f->mark = w->mark;
		f->dhair.kw = f->xhair.kw = f->dirty_h.kw = f->aw;
		f->pool.idx.kw = 4;
	}
	return w;
}

static void fam_free(struct fam *w)
{
	smap_clear(&w->dchains, dchain_free);
	smap_clear(&w->delems, delem_free);
	smap_clear(&w->contribs, free);
	smap_clear(&w->achains, free);
	smap_clear(&w->aelems, delem_free);
	struct smap *all[] = {&w->dchains, &w->delems, &w->contribs, &w->achains,
			      &w->aelems,  &w->asets,  &w->dirty_c,  &w->dirty_e};
	amap_clear(&w->dhair);
	amap_clear(&w->xhair);
	amap_clear(&w->dirty_h);
	for (size_t i = 0; i < ARRAY_SIZE(all); i++) {
		smap_clear(all[i], NULL);
		free(all[i]->b);
	}
	free(w->orphans);
	pool_free(&w->pool);
}

void nft_writer_free(struct nft_writer *w)
{
	if (!w)
		return;
	for (int i = 0; i < NFAM; i++)
		fam_free(&w->fam[i]);
	free(w->ct_pending);
	if (w->nl)
		mnl_socket_close(w->nl);
	free(w->table);
	free(w);
}

bool nft_writer_dirty(const struct nft_writer *w)
{
	for (int i = 0; i < NFAM; i++)
		if (w->fam[i].dirty_c.n || w->fam[i].dirty_e.n || w->fam[i].dirty_h.n)
			return true;
	return w->need_dump || w->nct_pending || svc_planner_dirty(w->sp);
}

void nft_writer_request_resync(struct nft_writer *w)
{
	w->need_dump = true;
}

const struct nft_sync_stats *nft_writer_stats(const struct nft_writer *w)
{
	return &w->stats;
}

const char *nft_writer_error(const struct nft_writer *w)
{
	return w->err;
}

/* Does a slot of the entry in the kernel change its backend (or go)? (After assign_slots.) */
static bool slots_move(const struct delem *d, const struct delem *a)
{
	for (size_t s = 0; a && s < a->nslots; s++)
		if (be_used(&a->slots[s]) &&
		    (s >= d->nslots || !be_same(&d->slots[s], &a->slots[s])))
			return true;
	return false;
}

/* Element changes of the backends map, the hairpin set and the service maps, deletions or
 * additions (a key whose value changes is deleted and added again in the transaction). */
static void sync_elements(struct batch *bt, const char **en, size_t ne, bool del)
{
	struct fam *w = bt->f;
	uint16_t type = del ? NFT_MSG_DELSETELEM : NFT_MSG_NEWSETELEM;
	struct elem_batch eb = {bt, MAP_BACKENDS, type, NULL, 0};
	for (size_t i = 0; i < ne; i++) {
		struct delem *d = smap_get(&w->delems, en[i]);
		const struct delem *a = smap_get(&w->aelems, en[i]);
		if (d && del && w->full_sync)
			reassign_slots(d, a); /* a is what the dump found */
		size_t dn = d && d->nbe ? d->nslots : 0;
		size_t an = a && !w->fresh[MAP_BE] ? a->nslots : 0;
		if (del) {
			for (size_t s = 0; s < an; s++)
				if (be_used(&a->slots[s]) &&
				    (s >= dn || !be_same(&d->slots[s], &a->slots[s]))) {
					eb_backend(&eb, (uint32_t)s, a->key, &a->slots[s]);
					bt->w->stats.backends_deleted++;
				}
		} else {
			if (!a && d && d->staged)
				continue; /* sent ahead (prestage) */
			for (size_t s = 0; s < dn; s++)
				if (be_used(&d->slots[s]) &&
				    (s >= an || !be_used(&a->slots[s]) ||
				     !be_same(&d->slots[s], &a->slots[s]))) {
					eb_backend(&eb, (uint32_t)s, d->key, &d->slots[s]);
					bt->w->stats.backends_added++;
				}
		}
	}
	for (size_t i = 0; del && !w->fresh[MAP_BE] && i < w->norphans; i++) {
		struct nftnl_set_elem *el = nftnl_set_elem_alloc();
		nftnl_set_elem_set(el, NFTNL_SET_ELEM_KEY, w->orphans[i], 4 + w->klen);
		eb_add(&eb, el);
	}
	eb_flush(&eb);

	eb = (struct elem_batch){bt, SET_HAIRPIN, type, NULL, 0};
	bool fresh = w->fresh[SET_HP];
	if (del && w->full_sync && !fresh) {
		amap_foreach(&w->xhair, i) eb_hairpin(&eb, amap_key(&w->xhair, i));
	} else if (!del && (w->full_sync || fresh)) {
		amap_foreach(&w->dhair, i) if (fresh || !(w->dhair.v[i] & HAIR_SEEN))
		    eb_hairpin(&eb, amap_key(&w->dhair, i));
	} else if (!fresh) {
		amap_foreach(&w->dirty_h, i)
		{
			const uint32_t *ip = amap_key(&w->dirty_h, i);
			bool want = amap_get(&w->dhair, ip), have = w->dirty_h.v[i] == HAIR_WAS_IN;
			if (want != have && want != del)
				eb_hairpin(&eb, ip);
		}
	}
	eb_flush(&eb);

	for (int m = 0; m < 2; m++) {
		eb = (struct elem_batch){bt, map_names[m], type, NULL, 0};
		for (size_t i = 0; i < ne; i++) {
			const struct delem *d = smap_get(&w->delems, en[i]);
			const struct delem *a = smap_get(&w->aelems, en[i]);
			if (a && w->fresh[a->map])
				a = NULL; /* its set is new: nothing to delete, all to add */
			if (a && d && delem_same(a, d))
				continue;
			if (del && a && a->map == m) {
				eb_svc(&eb, a);
				bt->w->stats.elems_deleted++;
			} else if (!del && d && d->map == m) {
				eb_svc(&eb, d);
				bt->w->stats.elems_added++;
			}
		}
		eb_flush(&eb);
	}
}

/* Affinity maps of groups whose slots move are emptied, so no client is sent to a removed
 * backend (kube-proxy forgets only that backend's clients; here the group's clients pick
 * again).  Adding a backend moves no slot. */
static void flush_affinity(struct batch *bt, const char **en, size_t ne)
{
	struct fam *w = bt->f;
	struct smap done = SMAP_INIT;
	for (size_t i = 0; i < ne; i++) {
		const struct delem *d = smap_get(&w->delems, en[i]);
		const struct delem *a = smap_get(&w->aelems, en[i]);
		if (!d || !d->aff || !smap_has(&w->asets, d->aff) || smap_has(&done, d->aff) ||
		    !slots_move(d, a))
			continue;
		smap_add(&done, d->aff);
		set_op(bt, d->aff, true);
	}
	smap_clear(&done, NULL);
	free(done.b);
}

/* One family's part of the transaction (with full: after a dump, the fixed objects too);
 * the UDP backends it removes are appended to stale. */
static void fam_batch(struct batch *bt, bool full, struct ct_match **stale, size_t *nstale)
{
	struct fam *w = bt->f;
	/* the IPv4 table always exists; the IPv6 one once there is something for it, so a node
	 * without IPv6 (or without IPv6 Services) gets no ip6 table */
	bool base =
	    full ? (w->af == AF_INET || w->present || w->delems.n) : (!w->present && w->delems.n);
	w->nwant[SET_HP] = w->dhair.n;
	bool recreate = false;
	for (int m = 0; m < NSETS; m++) {
		bool have = w->kset[m];
		/* a set made now, or one whose size the desired elements exceed */
		w->fresh[m] = have && w->ksize[m] && w->nwant[m] > w->ksize[m];
		w->made[m] = base && (!have || w->fresh[m]);
		recreate |= w->fresh[m];
		w->nsize[m] = set_size_for(w->nwant[m]);
	}
	if (recreate) {
		if (!full)
			mark_all_dirty(w); /* every element of a recreated set is added again */
		for (int m = 0; m < NSETS; m++) {
			w->made[m] = !w->kset[m] || w->fresh[m];
			if (!w->fresh[m])
				continue;
			bt->w->stats.sets_recreated++;
			log_info(SUB,
				 "%s %s: set %s: %zu elements exceed its size %u; "
				 "recreating it with size %u",
				 w->af == AF_INET6 ? "ip6" : "ip", w->table, map_names[m],
				 w->nwant[m], w->ksize[m], w->nsize[m]);
		}
		base = true; /* the fixed chains are refilled */
	}
	if (base) {
		base_objects(bt);
		w->present = true;
	}
	size_t nc, ne;
	const char **cn = smap_keys(&w->dirty_c, &nc);
	const char **en = dirty_keys(w, &ne);
	/* 1. chains and affinity maps to create: first, so rules and elements can name them */
	for (size_t i = 0; i < nc; i++) {
		const struct dchain *d = smap_get(&w->dchains, cn[i]);
		if (d && !smap_get(&w->achains, cn[i]))
			add_chain(bt, cn[i], NULL, 0, 0);
		if (!d || !d->aff)
			continue;
		char *set = aff_map_name(cn[i]);
		if (!smap_has(&w->asets, set))
			aff_map_add(bt, set);
		free(set);
	}
	/* 2. elements: deletions, then additions.  Before the rules: the kernel checks each new
	 * map element against every rule bound to the map, and each new rule bound to a map
	 * against all its elements; the few shared pick chains keep both small */
	sync_elements(bt, en, ne, true);
	flush_affinity(bt, en, ne);
	sync_elements(bt, en, ne, false);
	/* 3. chains whose rules changed: flushed and refilled */
	for (size_t i = 0; i < nc; i++) {
		const struct dchain *d = smap_get(&w->dchains, cn[i]);
		const struct applied_chain *a = smap_get(&w->achains, cn[i]);
		/* flushed by sets_create: it reads the recreated backends map */
		bool flushed = a && w->fresh[MAP_BE] && d && d->kind != CK_EXT;
		if (!d || (a && a->sig == d->sig && !flushed))
			continue;
		char sig[64];
		snprintf(sig, sizeof(sig), SIG_PREFIX "%016llx", (unsigned long long)d->sig);
		if (a && !flushed)
			flush_chain(bt, cn[i]);
		bt->comment = sig;
		chain_rules(bt, cn[i], d);
		bt->comment = NULL;
		bt->w->stats.chains_written++;
	}
	/* 4. chains no longer wanted: empty them all, then delete them (ext- and old ep-
	 * chains reference others) */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < nc; i++)
			if (!smap_get(&w->dchains, cn[i]) && smap_get(&w->achains, cn[i])) {
				if (pass == 0) {
					flush_chain(bt, cn[i]);
				} else {
					chain_op(bt, NFT_MSG_DELCHAIN, cn[i]);
					bt->w->stats.chains_deleted++;
				}
			}
	/* 5. affinity maps no longer referenced (their chains were refilled or deleted above) */
	for (size_t i = 0; i < nc; i++) {
		const struct dchain *d = smap_get(&w->dchains, cn[i]);
		if (!str_has_prefix(cn[i], "svc-") || (d && d->aff))
			continue;
		char *set = aff_map_name(cn[i]);
		if (smap_has(&w->asets, set))
			set_op(bt, set, false);
		free(set);
	}
	stale_udp(w, en, ne, stale, nstale);
	free(cn);
	free(en);
}

static void batch_start(struct batch *bt)
{
	bt->b.len = 0;
	bt->msgs = 0;
	nftnl_batch_begin(nb_reserve(&bt->b, 256), ++bt->w->seq);
	bt->b.len += MNL_ALIGN(((struct nlmsghdr *)bt->b.p)->nlmsg_len);
}

/* End and send the transaction (if it holds any message): 0 or the kernel's error. */
static int batch_send(struct batch *bt)
{
	if (!bt->msgs)
		return 0;
	nftnl_batch_end(nb_reserve(&bt->b, 256), ++bt->w->seq);
	bt->b.len += MNL_ALIGN(((struct nlmsghdr *)(bt->b.p + bt->b.len))->nlmsg_len);
	return send_batch(bt->w, bt);
}

/* Sending ahead.  A full sync of 10,000 Services x 10 is a transaction of 8 MB, most of it
 * elements of the backends map and the hairpin set, and it was the largest block of the
 * writer's memory.  But the backends elements of an entry that is not in the kernel's
 * service maps cannot be reached by any packet (the pick chains look up only entries the
 * services map sent there), and a hairpin element only masquerades a connection that was
 * DNATed back to its own source.  So those are sent first, in transactions of at most
 * PRESTAGE_BYTES; the one transaction that follows holds everything a packet can see (the
 * entries, changed backends, chains).  Not with a set to recreate (its elements go with it)
 * or with backends elements of no entry in the kernel (a failed sync; the main transaction
 * deletes them).  If a later transaction fails, what was sent ahead is unreachable and the
 * next sync's dump sorts it out. */
#define PRESTAGE_BYTES (1u << 20)
#define PRESTAGE_MIN_KEYS 256

struct staged_hp {
	size_t n, cap;
	uint32_t (*a)[4];
};

static void prestage_done(struct fam *f, struct smap *keys, struct staged_hp *hp)
{
	smap_foreach(keys, it)
	{
		struct delem *d = smap_get(&f->delems, it->key);
		if (d) {
			d->staged = true;
			f->kcount[MAP_BE] += d->nslots;
		}
	}
	f->kcount[SET_HP] += hp->n;
	smap_clear(keys, NULL);
	for (size_t i = 0; i < hp->n; i++) {
		uint32_t *v =
		    f->full_sync ? amap_get(&f->dhair, hp->a[i]) : amap_get(&f->dirty_h, hp->a[i]);
		if (v)
			*v = f->full_sync ? (*v | HAIR_SEEN) : HAIR_WAS_IN;
	}
	hp->n = 0;
}

static int prestage_flush(struct batch *bt, struct elem_batch *eb, struct smap *keys,
			  struct staged_hp *hp, bool force)
{
	if (bt->b.len < PRESTAGE_BYTES && !force)
		return 0;
	eb_flush(eb);
	if (bt->msgs)
		bt->w->stats.sent_ahead++;
	int r = batch_send(bt);
	if (r == 0)
		prestage_done(bt->f, keys, hp);
	batch_start(bt);
	return r;
}

static int prestage_fam(struct batch *bt)
{
	struct fam *f = bt->f;
	f->nwant[SET_HP] = f->dhair.n;
	bool fresh[NSETS], any = false;
	for (int m = 0; m < NSETS; m++) {
		fresh[m] = f->kset[m] && f->ksize[m] && f->nwant[m] > f->ksize[m];
		any |= fresh[m];
	}
	/* small changes go in one transaction (a second one would only cost a round trip) */
	if (!f->delems.n || fresh[MAP_BE] || fresh[SET_HP] ||
	    (!f->full_sync && f->dirty_e.n < PRESTAGE_MIN_KEYS))
		return 0;
	struct smap keys = SMAP_INIT;
	struct staged_hp hp = {0};
	memset(f->made, 0, sizeof(f->made));
	memset(f->fresh, 0, sizeof(f->fresh));
	batch_start(bt);
	if (!any) /* the table and sets (an empty kernel): sets_create() leaves them then */
		for (int m = 0; m < NSETS; m++)
			if (!f->kset[m]) {
				if (!bt->msgs)
					add_table(bt);
				f->made[m] = true;
				f->fresh[m] = false;
				f->nsize[m] = set_size_for(f->nwant[m]);
			}
	if (bt->msgs) {
		sets_create(bt);
		for (int m = 0; m < NSETS; m++)
			f->made[m] = false;
	}
	bool sets_ok = true;
	for (int m = 0; m < NSETS; m++)
		sets_ok &= f->kset[m] || bt->msgs;
	/* a set's size bounds what it holds at any time: what is sent ahead comes before the
	 * main transaction's deletions, so only as much as fits next to what is in it now */
	size_t room[NSETS];
	for (int m = 0; m < NSETS; m++) {
		size_t size = f->kset[m] ? f->ksize[m] : f->nsize[m];
		if (!f->kset[m] || !size)
			room[m] = f->kset[m] ? SIZE_MAX : size;
		else
			room[m] = size > f->kcount[m] ? size - f->kcount[m] : 0;
	}
	int r = 0;
	size_t ne = 0;
	const char **en = sets_ok ? dirty_keys(f, &ne) : NULL;
	struct elem_batch eb = {bt, MAP_BACKENDS, NFT_MSG_NEWSETELEM, NULL, 0};
	for (size_t i = 0; i < ne && !f->norphans && r == 0; i++) {
		struct delem *d = smap_get(&f->delems, en[i]);
		if (!d || !d->nbe || d->staged || smap_get(&f->aelems, en[i]) ||
		    d->nslots > room[MAP_BE])
			continue;
		room[MAP_BE] -= d->nslots;
		for (size_t sl = 0; sl < d->nslots; sl++)
			eb_backend(&eb, (uint32_t)sl, d->key, &d->slots[sl]);
		smap_add(&keys, en[i]);
		bt->w->stats.backends_added += (unsigned)d->nslots;
		r = prestage_flush(bt, &eb, &keys, &hp, false);
	}
	eb_flush(&eb);
	eb = (struct elem_batch){bt, SET_HAIRPIN, NFT_MSG_NEWSETELEM, NULL, 0};
	const struct amap *hm = f->full_sync ? &f->dhair : &f->dirty_h;
	amap_foreach(hm, i)
	{
		if (!sets_ok || r)
			break;
		const uint32_t *ip = amap_key(hm, i);
		bool add = f->full_sync ? !(hm->v[i] & HAIR_SEEN)
					: hm->v[i] == HAIR_WAS_OUT && amap_get(&f->dhair, ip);
		if (!add || !room[SET_HP])
			continue;
		room[SET_HP]--;
		eb_hairpin(&eb, ip);
		if (hp.n == hp.cap) {
			hp.cap = hp.cap ? 2 * hp.cap : 1024;
			hp.a = xrealloc(hp.a, hp.cap * sizeof(*hp.a));
		}
		memset(hp.a[hp.n], 0, sizeof(hp.a[0]));
		memcpy(hp.a[hp.n++], ip, f->alen);
		r = prestage_flush(bt, &eb, &keys, &hp, false);
	}
	if (r == 0)
		r = prestage_flush(bt, &eb, &keys, &hp, true);
	if (r == 0)
		for (int m = 0; m < NSETS; m++)
			if (!f->kset[m] && bt->set_id) {
				f->kset[m] = true;
				f->ksize[m] = f->nsize[m];
			}
	eb_flush(&eb);
	free(en);
	free(hp.a);
	smap_clear(&keys, NULL);
	free(keys.b);
	return r;
}

int nft_writer_sync(struct nft_writer *w)
{
	memset(&w->stats, 0, sizeof(w->stats));
	int r = open_sock(w);
	if (r < 0) {
		snprintf(w->err, sizeof(w->err), "netlink socket: %s", strerror(-r));
		return r;
	}
	for (int f = 0; w->need_dump && f < NFAM; f++) { /* everything will be dirty */
		smap_foreach(&w->fam[f].delems, it)((struct delem *)it->val)->staged = false;
		hair_unseen(&w->fam[f]); /* a failed sync's dump */
		w->fam[f].full_sync = true;
		amap_clear(&w->fam[f].dirty_h);
	}
	char **keys = NULL;
	size_t n = svc_planner_update(w->sp, &keys);
	for (size_t i = 0; i < n; i++)
		for (int f = 0; f < NFAM; f++)
			service_apply(&w->fam[f], w->sp, keys[i]);
	svc_planner_keys_free(keys, n);
	w->stats.services = (unsigned)n;
	for (int f = 0; f < NFAM; f++)
		pool_gc(&w->fam[f]);

	bool full = w->need_dump;
	for (int f = 0; full && f < NFAM; f++) {
		r = dump_kernel(w, &w->fam[f]);
		if (r < 0) {
			snprintf(w->err, sizeof(w->err), "dump table %s %s: %s", f ? "ip6" : "ip",
				 w->table, strerror(-r));
			return r;
		}
		mark_all_dirty(&w->fam[f]);
	}
	w->stats.full = full;

	/* what no packet can reach yet, ahead, in small transactions */
	struct batch pb = {.w = w};
	for (int f = 0; f < NFAM && r == 0; f++) {
		pb.f = &w->fam[f];
		r = prestage_fam(&pb);
	}
	free(pb.b.p);
	if (r < 0) {
		log_warn(SUB, "transaction failed (%s); will dump table %s and retry", w->err,
			 w->table);
		w->need_dump = true;
		return r;
	}
	/* both tables' changes in one transaction: atomic across the families */
	struct batch bt = {.w = w};
	nftnl_batch_begin(nb_reserve(&bt.b, 256), ++w->seq);
	bt.b.len += MNL_ALIGN(((struct nlmsghdr *)bt.b.p)->nlmsg_len);
	size_t nstale = 0;
	struct ct_match *stale = NULL;
	bool present[NFAM];
	for (int f = 0; f < NFAM; f++) {
		present[f] = w->fam[f].present;
		bt.f = &w->fam[f];
		fam_batch(&bt, full, &stale, &nstale);
	}

	r = 0;
	if (bt.msgs) {
		nftnl_batch_end(nb_reserve(&bt.b, 256), ++w->seq);
		bt.b.len += MNL_ALIGN(((struct nlmsghdr *)(bt.b.p + bt.b.len))->nlmsg_len);
		w->stats.messages = bt.msgs;
		r = send_batch(w, &bt);
	}
	free(bt.b.p);
	if (r < 0) {
		log_warn(SUB, "transaction failed (%s); will dump table %s and retry", w->err,
			 w->table);
		w->need_dump = true;
		for (int f = 0; f < NFAM; f++)
			w->fam[f].present = present[f];
		free(stale);
		return r;
	}
	w->err[0] = '\0';
	w->need_dump = false;
	for (int f = 0; f < NFAM; f++)
		update_applied(&w->fam[f]);
	/* only now: before the commit, the old rules could still send a client to the dead
	 * backend and recreate the entry */
	if (nstale) {
		w->ct_pending =
		    xrealloc(w->ct_pending, (w->nct_pending + nstale) * sizeof(*w->ct_pending));
		memcpy(w->ct_pending + w->nct_pending, stale, nstale * sizeof(*stale));
		w->nct_pending += nstale;
	}
	free(stale);
	if (w->nct_pending) {
		int d = ct_delete_matching(w->ct_pending, w->nct_pending);
		if (d < 0) {
			log_warn(SUB, "deleting stale UDP conntrack entries: %s (will retry)",
				 strerror(-d));
		} else {
			w->stats.conntrack_deleted = (unsigned)d;
			if (d)
				log_info(SUB, "deleted %d stale UDP conntrack entries", d);
			free(w->ct_pending);
			w->ct_pending = NULL;
			w->nct_pending = 0;
		}
	}
	/* a full sync frees millions of small blocks; glibc consolidates them at the next large
	 * allocation, which would make the first small change after it cost tens of ms at
	 * 250,000 endpoints.  Do it now, and give the memory back. */
	if (full && (w->stats.backends_added + w->stats.elems_added > 10000 ||
		     w->fam[0].aelems.n + w->fam[1].aelems.n > 1000))
		malloc_trim(0); /* also after a resync's dump, which rebuilt the applied state */
	if (w->stats.messages)
		log_debug(SUB,
			  "synced%s: %u messages, +%u/-%u elements, +%u/-%u backends, %u chains "
			  "written, %u deleted",
			  full ? " (full)" : "", w->stats.messages, w->stats.elems_added,
			  w->stats.elems_deleted, w->stats.backends_added, w->stats.backends_deleted,
			  w->stats.chains_written, w->stats.chains_deleted);
	return 0;
}

static int table_delete(struct mnl_socket *nl, uint8_t nfproto, const char *table)
{
	char buf[8192];
	uint32_t seq = (uint32_t)time(NULL);
	size_t len = 0;
	struct nlmsghdr *nlh = nftnl_batch_begin(buf, seq++);
	len += MNL_ALIGN(nlh->nlmsg_len);
	struct nftnl_table *t = nftnl_table_alloc();
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, table);
	nlh = nftnl_nlmsg_build_hdr(buf + len, NFT_MSG_DELTABLE, nfproto, NLM_F_ACK, seq++);
	nftnl_table_nlmsg_build_payload(nlh, t);
	nftnl_table_free(t);
	uint32_t del_seq = nlh->nlmsg_seq;
	len += MNL_ALIGN(nlh->nlmsg_len);
	nlh = nftnl_batch_end(buf + len, seq++);
	len += MNL_ALIGN(nlh->nlmsg_len);
	if (mnl_socket_sendto(nl, buf, len) < 0)
		return -errno;
	ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
	if (n < 0)
		return -errno;
	if (mnl_cb_run(buf, (size_t)n, del_seq, mnl_socket_get_portid(nl), NULL, NULL) < 0)
		return errno == ENOENT ? 0 : -errno;
	return 0;
}

int nft_table_delete(const char *table)
{
	struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
	if (!nl)
		return -errno;
	int r = 0;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0)
		r = -errno;
	static const uint8_t fams[] = {NFPROTO_IPV4, NFPROTO_IPV6};
	for (size_t i = 0; i < ARRAY_SIZE(fams) && !r; i++)
		r = table_delete(nl, fams[i], table ? table : NFT_TWILL_TABLE);
	mnl_socket_close(nl);
	return r;
}
