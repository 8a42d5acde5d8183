/* bgp: sessions, finite state machine, RIBs and the kernel FIB.  See bgp.h. */
#include "bgp/bgp.h"
#include "bgp/bfd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/rtnetlink.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/consts.h"
#include "lib/log.h"
#include "lib/util.h"
#include "nl/nl.h"

#define SUB "bgp"
#define OPEN_HOLD_S 240 /* RFC 4271: hold time while waiting for OPEN */
#define MAX_ECMP 16
#define RBUF (BGP_MAX_LEN * 4)
#define READ_BUDGET (64 * 1024) /* bytes per socket per dispatch: keepalives are never starved,
				 * and what was read goes out to the other peers soon */
#define RESTART_GUARD_MS 5000	 /* a reconnect sooner after Established is a collision */

enum { SLOT_OUT, SLOT_IN, SLOT_NEW, NCONN };
enum fsm { ST_IDLE, ST_CONNECT, ST_ACTIVE, ST_OPENSENT, ST_OPENCONFIRM, ST_ESTABLISHED };
static const char *fsm_name[] = {"Idle", "Connect", "Active", "OpenSent", "OpenConfirm",
				 "Established"};

enum ev_kind { EV_LISTEN, EV_CONN };
struct ev {
	enum ev_kind kind;
};

/* ------------------------------------------------------- prefix map ---- */

struct pnode {
	struct pnode *next;
	struct ipprefix key;
	void *val;
};
struct pmap {
	struct pnode **b;
	size_t nb, n;
};

/* Prefix hash: a multiply-xorshift over the address words (FNV byte by byte was a tenth
 * of a full feed's CPU). */
static uint64_t addr_hash(int af, uint8_t len, const uint8_t *addr)
{
	uint64_t h = ((uint64_t)af << 8 | len) + 0x9E3779B97F4A7C15ULL;
	for (int i = 0; i < ip_bytes(af); i += 4) {
		uint32_t w;
		memcpy(&w, addr + i, 4);
		h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
		h ^= h >> 31;
	}
	h *= 0x94D049BB133111EBULL;
	return h ^ (h >> 29);
}

static uint64_t pfx_hash(const struct ipprefix *p)
{
	return addr_hash(p->addr.family, p->len, p->addr.b);
}

static struct pnode **pmap_slot(struct pmap *m, const struct ipprefix *p)
{
	if (!m->nb)
		return NULL;
	struct pnode **s = &m->b[pfx_hash(p) & (m->nb - 1)];
	while (*s && !prefix_eq(&(*s)->key, p))
		s = &(*s)->next;
	return s;
}

static void *pmap_get(struct pmap *m, const struct ipprefix *p)
{
	struct pnode **s = pmap_slot(m, p);
	return s && *s ? (*s)->val : NULL;
}

static void pmap_grow(struct pmap *m)
{
	size_t nb = m->nb ? m->nb * 2 : 64;
	struct pnode **b = xcalloc(nb, sizeof(*b));
	for (size_t i = 0; i < m->nb; i++) {
		for (struct pnode *n = m->b[i], *next; n; n = next) {
			next = n->next;
			struct pnode **s = &b[pfx_hash(&n->key) & (nb - 1)];
			n->next = *s;
			*s = n;
		}
	}
	free(m->b);
	m->b = b;
	m->nb = nb;
}

/* Set (val non-NULL) or remove (val NULL); returns the previous value. */
static void *pmap_put(struct pmap *m, const struct ipprefix *p, void *val)
{
	if (val && m->n + 1 > m->nb)
		pmap_grow(m);
	struct pnode **s = pmap_slot(m, p);
	if (!s)
		return NULL;
	void *old = *s ? (*s)->val : NULL;
	if (*s && val) {
		(*s)->val = val;
	} else if (*s) {
		struct pnode *n = *s;
		*s = n->next;
		free(n);
		m->n--;
	} else if (val) {
		struct pnode *n = xcalloc(1, sizeof(*n));
		n->key = *p;
		n->val = val;
		*s = n;
		m->n++;
	}
	return old;
}

#define PMAP_EACH(m, node)                                                                        \
	for (size_t _i = 0; _i < (m)->nb; _i++)                                                   \
		for (struct pnode *node = (m)->b[_i], *_nx = node ? node->next : NULL; node;      \
		     node = _nx, _nx = node ? node->next : NULL)

static void pmap_clear(struct pmap *m)
{
	for (size_t i = 0; i < m->nb; i++)
		for (struct pnode *n = m->b[i], *next; n; n = next) {
			next = n->next;
			free(n);
		}
	free(m->b);
	memset(m, 0, sizeof(*m));
}

/* A list of prefixes (duplicates allowed). */
struct pvec {
	struct ipprefix *v;
	size_t n, cap;
};

static void pvec_add(struct pvec *v, const struct ipprefix *p)
{
	if (v->n == v->cap)
		v->v = xrealloc(v->v, (v->cap = v->cap ? v->cap * 2 : 64) * sizeof(*v->v));
	v->v[v->n++] = *p;
}

static void pvec_clear(struct pvec *v)
{
	free(v->v);
	memset(v, 0, sizeof(*v));
}

/* ------------------------------------------------- interned attributes ---- */

struct battrs {
	struct battrs *next;
	unsigned ref;
	uint64_t hash;
	struct bgp_attrs a;
};

struct atable {
	struct battrs **b;
	size_t nb, n;
};

/* Takes ownership of a's arrays. */
static struct battrs *attrs_intern(struct atable *t, struct bgp_attrs *a)
{
	uint64_t h = bgp_attrs_hash(a);
	if (t->nb) {
		for (struct battrs *x = t->b[h & (t->nb - 1)]; x; x = x->next) {
			if (x->hash == h && bgp_attrs_equal(&x->a, a)) {
				bgp_attrs_clear(a);
				x->ref++;
				return x;
			}
		}
	}
	if (t->n + 1 > t->nb) {
		size_t nb = t->nb ? t->nb * 2 : 64;
		struct battrs **b = xcalloc(nb, sizeof(*b));
		for (size_t i = 0; i < t->nb; i++)
			for (struct battrs *x = t->b[i], *next; x; x = next) {
				next = x->next;
				x->next = b[x->hash & (nb - 1)];
				b[x->hash & (nb - 1)] = x;
			}
		free(t->b);
		t->b = b;
		t->nb = nb;
	}
	struct battrs *x = xcalloc(1, sizeof(*x));
	x->a = *a;
	memset(a, 0, sizeof(*a));
	x->hash = h;
	x->ref = 1;
	x->next = t->b[h & (t->nb - 1)];
	t->b[h & (t->nb - 1)] = x;
	t->n++;
	return x;
}

static struct battrs *attrs_ref(struct battrs *x)
{
	if (x)
		x->ref++;
	return x;
}

static void attrs_unref(struct atable *t, struct battrs *x)
{
	if (!x || --x->ref)
		return;
	for (struct battrs **s = &t->b[x->hash & (t->nb - 1)]; *s; s = &(*s)->next) {
		if (*s == x) {
			*s = x->next;
			break;
		}
	}
	t->n--;
	bgp_attrs_clear(&x->a);
	free(x);
}

/* ---------------------------------------------------------- structures ---- */

struct peer;

struct conn {
	struct ev ev;
	struct peer *peer;
	int fd;
	enum fsm state;
	bool outgoing;
	int slot; /* index in peer->conn */
	bool open_rcvd;
	struct bgp_open remote;
	uint8_t *rbuf;
	size_t rlen;
	uint8_t *wbuf;
	size_t wlen, woff, wcap;
	bool want_out;
	monotime_t hold_at, ka_at; /* 0 = off */
	uint16_t hold;		   /* negotiated, seconds */
};

struct path {
	struct path *next;
	struct peer *peer; /* NULL: originated here */
	struct battrs *attrs;
	bool stale;
};

/* A set of next hops installed in the kernel, shared by every route that has it. */
struct nhset {
	struct nhset *next;
	unsigned ref;
	uint8_t n;
	struct ipaddr nh[];
};

/* One prefix of the Loc-RIB.  Kept small, since a full table has a million of them: the
 * first path is inside (most prefixes have one), the prefix is stored as its length and
 * 4 or 16 address bytes, the best path is an index and the installed next hops a shared
 * set, so an IPv4 route with one path is one 56-byte allocation (BIRD: about 100). */
struct rt {
	struct rt *hnext;   /* hash chain of struct rib */
	struct nhset *inst; /* next hops installed in the kernel, NULL none */
	struct path p0;	    /* the first path when RT_P0; the others hang off p0.next */
	uint8_t len;	    /* prefix length */
	uint8_t flags;	    /* RT_* */
	uint16_t best;	    /* index of the best path in the list, RT_NOBEST none */
	uint8_t addr[];	    /* 4 (IPv4) or 16 (IPv6) bytes */
};
#define RT_P0 1		  /* p0 holds a path */
#define RT_V6 2		  /* the prefix is IPv6 */
#define RT_KERNEL_STALE 4 /* found in the kernel at start (restarting speaker) */
#define RT_FIB_QUEUED 8	  /* in bgp.fibq: fib_flush syncs it (and may free it) */
#define RT_NOBEST 0xffff

/* The Loc-RIB of one family: a hash of struct rt chained through hnext. */
struct rib {
	struct rt **b;
	size_t nb, n;
};

struct peer {
	struct bgp *bgp;
	struct bgp_peer_cfg cfg;
	char label[IP_STRLEN + 8];
	bool ibgp;
	bool fam[BGP_NFAM];
	bool bad; /* bad configuration: not started */
	char error[160]; /* last error, for the state */
	/* [0] outgoing, [1] incoming, [2] incoming while a session is established (decided
	 * on its OPEN: a restarted peer or a late collision) */
	struct conn *conn[NCONN];
	struct conn *est;     /* the established connection */
	monotime_t retry_at;  /* next outgoing attempt (0 = none planned) */
	monotime_t up_since;  /* established since, or down since */
	/* negotiated on the established session */
	bool as4, refresh, mpfam[BGP_NFAM];
	struct bgp_open ropen;
	struct ipaddr local; /* our address on the session */
	int ll_oif; /* the kernel's interface towards the peer, for link-local next hops
		       * (looked up on the first such route of the session; 0 = not yet) */
	/* graceful restart helper */
	bool stale[BGP_NFAM];
	monotime_t stale_until;
	bool eor_rcvd[BGP_NFAM];
	/* Adj-RIB-Out and the prefixes to re-evaluate for it */
	struct pmap out[BGP_NFAM];
	struct pvec dirty[BGP_NFAM];
	uint64_t rcvd; /* prefixes in the Adj-RIB-In */
	uint64_t updates_in, updates_out, refresh_in, notif_in, notif_out, flaps;
	struct bfd_sess *bfd; /* cfg.bfd: its BFD session */
};

struct bgp {
	struct bgp_cfg cfg;
	int epfd;
	int lfd[2];
	struct ev lev[2];
	struct peer **peers;
	size_t npeers;
	struct rib rib[BGP_NFAM];
	struct atable at;
	struct nhset *nhsets; /* interned installed next-hop sets */
	struct nl_sock *nl;
	struct nl_batch *nlb; /* the kernel route changes of one round, sent together */
	struct rt **fibq;     /* routes whose kernel state must be synced (fib_flush) */
	size_t fibq_n, fibq_cap;
	bool gr_pending; /* restarting speaker: kernel routes kept until EoR from all */
	monotime_t gr_until;
	bool dirty_state;
	struct {
		struct ipaddr nh, via;
	} nhc[16]; /* next-hop resolution cache, emptied by every bgp_dispatch */
	size_t nhc_n, nhc_next;
	uint64_t fib_errors;
	char fib_error[160];
	struct bfd *bfd; /* created with the first peer that wants BFD */
	struct ev bfd_ev; /* bfd_fd() in epfd */
};

static monotime_t now_ms_to(monotime_t at, monotime_t now)
{
	return at > now ? (at - now) / 1000000 : 0;
}

static void peer_err(struct peer *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void peer_err(struct peer *p, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->error, sizeof(p->error), fmt, ap);
	va_end(ap);
	log_warn(SUB, "peer %s: %s", p->label, p->error);
	p->bgp->dirty_state = true;
}

/* ------------------------------------------------------------- output ---- */

static void conn_arm(struct conn *c)
{
	bool want = c->wlen > c->woff || c->state == ST_CONNECT;
	if (want == c->want_out)
		return;
	struct epoll_event e = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = &c->ev};
	epoll_ctl(c->peer->bgp->epfd, EPOLL_CTL_MOD, c->fd, &e);
	c->want_out = want;
}

static void conn_flush(struct conn *c)
{
	while (c->woff < c->wlen) {
		ssize_t w = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			break; /* EAGAIN: wait for EPOLLOUT; other errors show up on read */
		}
		c->woff += (size_t)w;
	}
	if (c->woff == c->wlen)
		c->woff = c->wlen = 0;
	conn_arm(c);
}

static void conn_queue(struct conn *c, const uint8_t *msg, size_t len)
{
	if (!len)
		return;
	if (c->woff && c->woff == c->wlen)
		c->woff = c->wlen = 0;
	if (c->wlen + len > c->wcap) {
		if (c->woff) {
			memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
			c->wlen -= c->woff;
			c->woff = 0;
		}
		if (c->wlen + len > c->wcap) {
			c->wcap = (c->wlen + len) * 2;
			c->wbuf = xrealloc(c->wbuf, c->wcap);
		}
	}
	memcpy(c->wbuf + c->wlen, msg, len);
	c->wlen += len;
	/* keepalive restarts with every message sent */
	if (c->hold)
		c->ka_at = monotime_now() + MONO_MS(c->hold * 1000 / 3);
}

/* --------------------------------------------------------- FIB (kernel) ---- */

static void fib_sync(struct bgp *b, struct rt *r);

static bool nh_of_path(const struct path *pa, int af, struct ipaddr *nh)
{
	const struct bgp_attrs *a = &pa->attrs->a;
	if (af == AF_INET && a->nh.family == AF_INET)
		*nh = a->nh;
	else if (ip_is_set(&a->mp_nh))
		*nh = a->mp_nh;
	else
		return false;
	return true;
}

/* ----------------------------------------------------- decision process ---- */

static uint32_t path_lp(const struct path *p)
{
	return p->attrs->a.has & BGP_A_LOCAL_PREF ? p->attrs->a.local_pref : 100;
}

static uint32_t path_rid(const struct path *p)
{
	if (p->attrs->a.has & BGP_A_ORIGINATOR)
		return p->attrs->a.originator_id;
	return p->peer ? p->peer->ropen.id : 0;
}

/* <0: a better, >0: b better.  Stops after `ecmp_level` steps when > 0 (for multipath). */
static int path_cmp(const struct path *x, const struct path *y, bool for_ecmp)
{
	if (!x->peer != !y->peer)
		return !x->peer ? -1 : 1; /* our own routes first */
	uint32_t lx = path_lp(x), ly = path_lp(y);
	if (lx != ly)
		return lx > ly ? -1 : 1;
	unsigned ax = bgp_aspath_len(&x->attrs->a), ay = bgp_aspath_len(&y->attrs->a);
	if (ax != ay)
		return ax < ay ? -1 : 1;
	if (x->attrs->a.origin != y->attrs->a.origin)
		return x->attrs->a.origin < y->attrs->a.origin ? -1 : 1;
	if (bgp_aspath_first(&x->attrs->a) == bgp_aspath_first(&y->attrs->a)) {
		uint32_t mx = x->attrs->a.has & BGP_A_MED ? x->attrs->a.med : 0;
		uint32_t my = y->attrs->a.has & BGP_A_MED ? y->attrs->a.med : 0;
		if (mx != my)
			return mx < my ? -1 : 1;
	}
	bool ex = x->peer && !x->peer->ibgp, ey = y->peer && !y->peer->ibgp;
	if (ex != ey)
		return ex ? -1 : 1;
	if (for_ecmp)
		return 0;
	if (x->attrs->a.ncluster != y->attrs->a.ncluster)
		return x->attrs->a.ncluster < y->attrs->a.ncluster ? -1 : 1;
	if (x->stale != y->stale)
		return x->stale ? 1 : -1;
	uint32_t rx = path_rid(x), ry = path_rid(y);
	if (rx != ry)
		return rx < ry ? -1 : 1;
	if (x->peer && y->peer)
		return ip_cmp(&x->peer->cfg.addr, &y->peer->cfg.addr);
	return 0;
}

/* p's best path changed (has_best: it has one now, learned from `from`): its peers'
 * Adj-RIB-Out must be looked at again.  Not the peer it came from when nothing was sent
 * to that peer for p: nothing would be (a full feed would otherwise fill that peer's
 * dirty set with every prefix it sends). */
static void peers_mark_dirty(struct bgp *b, int fam, const struct ipprefix *p,
			     const struct peer *from, bool has_best)
{
	for (size_t i = 0; i < b->npeers; i++) {
		struct peer *pe = b->peers[i];
		if (!pe->est || !pe->mpfam[fam])
			continue;
		if ((!has_best || from == pe) && !pmap_get(&pe->out[fam], p))
			continue;
		pvec_add(&pe->dirty[fam], p);
	}
}

/* ------------------------------------------------------------ Loc-RIB ---- */

static int rt_af(const struct rt *r)
{
	return r->flags & RT_V6 ? AF_INET6 : AF_INET;
}

static int rt_fam(const struct rt *r)
{
	return r->flags & RT_V6 ? BGP_FAM_V6 : BGP_FAM_V4;
}

static struct ipprefix rt_prefix(const struct rt *r)
{
	struct ipprefix p = {.addr.family = rt_af(r), .len = r->len};
	memcpy(p.addr.b, r->addr, (size_t)ip_bytes(p.addr.family));
	return p;
}

static struct path *rt_paths(struct rt *r)
{
	return r->flags & RT_P0 ? &r->p0 : NULL;
}

static struct path *rt_best(struct rt *r)
{
	struct path *pa = rt_paths(r);
	for (unsigned i = 0; pa && r->best != RT_NOBEST; i++, pa = pa->next)
		if (i == r->best)
			return pa;
	return NULL;
}

static uint8_t rt_ninst(const struct rt *r)
{
	return r->inst ? r->inst->n : 0;
}

#define rib_hash addr_hash

static struct rt **rib_slot(struct rib *t, const struct ipprefix *p)
{
	if (!t->nb)
		return NULL;
	size_t nb = (size_t)ip_bytes(p->addr.family);
	struct rt **s = &t->b[rib_hash(p->addr.family, p->len, p->addr.b) & (t->nb - 1)];
	while (*s && ((*s)->len != p->len || memcmp((*s)->addr, p->addr.b, nb)))
		s = &(*s)->hnext;
	return s;
}

#define RIB_EACH(t, r)                                                                            \
	for (size_t _i = 0; _i < (t)->nb; _i++)                                                   \
		for (struct rt *r = (t)->b[_i], *_nx = r ? r->hnext : NULL; r;                    \
		     r = _nx, _nx = r ? r->hnext : NULL)

static void rib_grow(struct rib *t)
{
	size_t nb = t->nb ? t->nb * 2 : 64;
	struct rt **nbk = xcalloc(nb, sizeof(*nbk));
	for (size_t i = 0; i < t->nb; i++)
		for (struct rt *r = t->b[i], *next; r; r = next) {
			next = r->hnext;
			struct rt **s = &nbk[rib_hash(rt_af(r), r->len, r->addr) & (nb - 1)];
			r->hnext = *s;
			*s = r;
		}
	free(t->b);
	t->b = nbk;
	t->nb = nb;
}

static struct rt *rt_get(struct bgp *b, const struct ipprefix *p, bool create)
{
	struct rib *t = &b->rib[bgp_fam_of(p->addr.family)];
	struct rt **s = rib_slot(t, p);
	if (s && *s)
		return *s;
	if (!create)
		return NULL;
	if (t->n + 1 > t->nb) {
		rib_grow(t);
		s = rib_slot(t, p);
	}
	size_t nb = (size_t)ip_bytes(p->addr.family);
	struct rt *r = xcalloc(1, offsetof(struct rt, addr) + nb);
	r->len = p->len;
	r->flags = p->addr.family == AF_INET6 ? RT_V6 : 0;
	r->best = RT_NOBEST;
	memcpy(r->addr, p->addr.b, nb);
	*s = r;
	t->n++;
	return r;
}

static void nhset_unref(struct bgp *b, struct nhset *x)
{
	if (!x || --x->ref)
		return;
	for (struct nhset **s = &b->nhsets; *s; s = &(*s)->next)
		if (*s == x) {
			*s = x->next;
			break;
		}
	free(x);
}

/* The shared set of these n next hops (n > 0), with a reference taken. */
static struct nhset *nhset_get(struct bgp *b, const struct ipaddr *nh, size_t n)
{
	for (struct nhset **s = &b->nhsets; *s; s = &(*s)->next) {
		struct nhset *x = *s;
		bool same = x->n == n;
		for (size_t i = 0; same && i < n; i++)
			same = ip_eq(&x->nh[i], &nh[i]);
		if (same) {
			*s = x->next; /* to the front: a table has few sets, used in runs */
			x->next = b->nhsets;
			b->nhsets = x;
			x->ref++;
			return x;
		}
	}
	struct nhset *x = xmalloc(sizeof(*x) + n * sizeof(x->nh[0]));
	x->ref = 1;
	x->n = (uint8_t)n;
	memcpy(x->nh, nh, n * sizeof(nh[0]));
	x->next = b->nhsets;
	b->nhsets = x;
	return x;
}

static void rt_set_inst(struct bgp *b, struct rt *r, struct nhset *x)
{
	nhset_unref(b, r->inst);
	r->inst = x;
}

/* Free r when nothing refers to it any more: no path, nothing of ours in the kernel. */
static void rt_free_unused(struct bgp *b, struct rt *r)
{
	if (r->flags & (RT_P0 | RT_KERNEL_STALE | RT_FIB_QUEUED) || r->inst)
		return;
	struct ipprefix p = rt_prefix(r);
	struct rib *t = &b->rib[rt_fam(r)];
	struct rt **s = rib_slot(t, &p);
	if (s && *s == r) {
		*s = r->hnext;
		t->n--;
	}
	free(r);
}

/* Re-run the decision for one prefix; free the entry if it has no paths left.  The kernel
 * follows in fib_flush, once per round, so a prefix that changes several times in one
 * round is written once and all of the round's changes go in one batch. */
static void rt_decide(struct bgp *b, struct rt *r)
{
	struct path *best = NULL;
	unsigned bi = RT_NOBEST, i = 0;
	for (struct path *pa = rt_paths(r); pa; pa = pa->next, i++)
		if (!best || path_cmp(pa, best, false) < 0) {
			best = pa;
			bi = i;
		}
	bool had = r->best != RT_NOBEST;
	r->best = (uint16_t)(bi < RT_NOBEST ? bi : RT_NOBEST);
	/* even with the same best path its attributes may have changed: the peers'
	 * Adj-RIB-Out comparison drops what is unchanged */
	if (best || had) {
		struct ipprefix p = rt_prefix(r);
		peers_mark_dirty(b, rt_fam(r), &p, best ? best->peer : NULL, best != NULL);
	}
	if (b->cfg.install && !(r->flags & RT_FIB_QUEUED)) {
		if (b->fibq_n == b->fibq_cap)
			b->fibq = xrealloc(b->fibq, (b->fibq_cap = b->fibq_cap ? b->fibq_cap * 2 : 256) *
							sizeof(*b->fibq));
		b->fibq[b->fibq_n++] = r;
		r->flags |= RT_FIB_QUEUED;
	}
	rt_free_unused(b, r);
	b->dirty_state = true;
}

/* Add or replace the path of `peer` (NULL = local) for p; attrs reference is taken over. */
static void rib_update(struct bgp *b, struct peer *peer, const struct ipprefix *p,
		       struct battrs *attrs)
{
	struct rt *r = rt_get(b, p, true);
	struct path *pa;
	for (pa = rt_paths(r); pa; pa = pa->next)
		if (pa->peer == peer)
			break;
	if (pa) {
		if (pa->attrs == attrs && !pa->stale) {
			attrs_unref(&b->at, attrs);
			return;
		}
		attrs_unref(&b->at, pa->attrs);
	} else {
		if (!(r->flags & RT_P0)) {
			pa = &r->p0;
			pa->next = NULL;
			r->flags |= RT_P0;
		} else {
			pa = xcalloc(1, sizeof(*pa));
			pa->next = r->p0.next;
			r->p0.next = pa;
		}
		pa->peer = peer;
		if (peer)
			peer->rcvd++;
	}
	pa->attrs = attrs;
	pa->stale = false;
	rt_decide(b, r);
}

/* Unlink path pa (in r's list, prev before it or NULL) and drop its reference. */
static void rt_path_del(struct bgp *b, struct rt *r, struct path *prev, struct path *pa)
{
	attrs_unref(&b->at, pa->attrs);
	if (pa != &r->p0) {
		prev->next = pa->next;
		free(pa);
	} else if (pa->next) { /* the second path moves into p0 */
		struct path *nx = pa->next;
		r->p0.next = nx->next;
		r->p0.peer = nx->peer;
		r->p0.attrs = nx->attrs;
		r->p0.stale = nx->stale;
		free(nx);
	} else {
		r->flags &= (uint8_t)~RT_P0;
		r->p0 = (struct path){0};
	}
}

static void rib_remove(struct bgp *b, struct peer *peer, const struct ipprefix *p)
{
	struct rt *r = rt_get(b, p, false);
	if (!r)
		return;
	for (struct path *pa = rt_paths(r), *prev = NULL; pa; prev = pa, pa = pa->next) {
		if (pa->peer == peer) {
			rt_path_del(b, r, prev, pa);
			if (peer)
				peer->rcvd--;
			rt_decide(b, r);
			return;
		}
	}
}

/* Remove the peer's paths of family fam: all of them, or only the stale ones. */
static void rib_flush_peer(struct bgp *b, struct peer *peer, int fam, bool only_stale)
{
	/* in place: rt_decide frees at most the entry at hand, whose successor is known */
	RIB_EACH(&b->rib[fam], r)
	{
		for (struct path *pa = rt_paths(r), *prev = NULL; pa; prev = pa, pa = pa->next) {
			if (pa->peer == peer && (!only_stale || pa->stale)) {
				rt_path_del(b, r, prev, pa);
				peer->rcvd--;
				rt_decide(b, r);
				break;
			}
		}
	}
}

static void rib_mark_stale(struct bgp *b, struct peer *peer, int fam)
{
	RIB_EACH(&b->rib[fam], r)
	{
		for (struct path *pa = rt_paths(r); pa; pa = pa->next)
			if (pa->peer == peer)
				pa->stale = true;
	}
}

/* ------------------------------------------------------------------ FIB ---- */

/* The gateway to install for BGP next hop nh: nh itself when it is on a connected network,
 * else the gateway of the kernel's route to it.  Cached for one dispatch round, since
 * thousands of routes share a few next hops. */
static struct ipaddr nh_resolve(struct bgp *b, const struct ipaddr *nh)
{
	for (size_t i = 0; i < b->nhc_n; i++)
		if (ip_eq(&b->nhc[i].nh, nh))
			return b->nhc[i].via;
	struct ipaddr via = *nh;
	struct nl_route kr;
	if (nl_route_get(b->nl, nh, &kr) == 0 && ip_is_set(&kr.gw) && kr.protocol != b->cfg.rt_proto)
		via = kr.gw;
	size_t slot = b->nhc_n < ARRAY_SIZE(b->nhc) ? b->nhc_n++ : b->nhc_next++ % ARRAY_SIZE(b->nhc);
	b->nhc[slot].nh = *nh;
	b->nhc[slot].via = via;
	return via;
}

/* An IPv6 link-local next hop (the peer sent no global one, RFC 2545), usable only with the
 * interface of the session it came over: the kernel's interface towards the peer. */
static bool nh_link_local(const struct path *pa, int af, struct ipaddr *nh)
{
	if (af != AF_INET6 || pa->attrs->a.mp_nh_ll.family != AF_INET6)
		return false;
	*nh = pa->attrs->a.mp_nh_ll;
	return true;
}

static int nh_oif(struct bgp *b, struct rt *r, const struct ipaddr *nh)
{
	if (nh->family != AF_INET6 || !IN6_IS_ADDR_LINKLOCAL(&nh->v6))
		return 0;
	for (struct path *pa = rt_paths(r); pa; pa = pa->next) {
		struct ipaddr a;
		struct nl_route kr;
		if (!pa->peer || !nh_link_local(pa, AF_INET6, &a) || !ip_eq(&a, nh))
			continue;
		if (!pa->peer->ll_oif && nl_route_get(b->nl, &pa->peer->cfg.addr, &kr) == 0)
			pa->peer->ll_oif = kr.oif;
		if (pa->peer->ll_oif)
			return pa->peer->ll_oif;
	}
	return 0;
}

static void fib_sync(struct bgp *b, struct rt *r)
{
	int af = rt_af(r);
	struct ipaddr nh[MAX_ECMP];
	size_t n = 0;
	struct path *best = rt_best(r);
	if (best && best->peer) {
		for (struct path *pa = rt_paths(r); pa && n < MAX_ECMP; pa = pa->next) {
			if (!pa->peer || path_cmp(pa, best, true) != 0)
				continue;
			struct ipaddr a;
			if (!nh_of_path(pa, af, &a) && !nh_link_local(pa, af, &a))
				continue;
			bool dup = false;
			for (size_t i = 0; i < n; i++)
				dup |= ip_eq(&nh[i], &a);
			if (!dup)
				nh[n++] = a;
		}
		/* a stable order, so equal sets compare equal */
		for (size_t i = 1; i < n; i++)
			for (size_t k = i; k > 0 && ip_cmp(&nh[k], &nh[k - 1]) < 0; k--) {
				struct ipaddr t = nh[k];
				nh[k] = nh[k - 1];
				nh[k - 1] = t;
			}
	}
	bool kstale = r->flags & RT_KERNEL_STALE;
	if (!n && b->gr_pending && (r->inst || kstale))
		return; /* restarting: keep what the previous run installed */
	bool same = n == rt_ninst(r) && !kstale;
	for (size_t i = 0; same && i < n; i++)
		same = ip_eq(&nh[i], &r->inst->nh[i]);
	if (same)
		return;
	struct nl_route rt = {
	    .dst = rt_prefix(r),
	    .protocol = b->cfg.rt_proto,
	    .table = b->cfg.table,
	};
	/* queued; a failure comes back through fib_error_cb (before the round ends) */
	if (n) {
		/* a next hop that is not on a connected network (iBGP, reflected, multihop)
		 * goes through the kernel's route to it, as BIRD's and zebra's recursive
		 * resolution does.  Resolved at install time only (see the report). */
		struct ipaddr via[MAX_ECMP];
		int oif[MAX_ECMP];
		for (size_t i = 0; i < n; i++) {
			via[i] = nh_resolve(b, &nh[i]);
			oif[i] = nh_oif(b, r, &nh[i]);
		}
		nl_batch_route_add(b->nlb, &rt, via, oif, n, NLM_F_CREATE | NLM_F_REPLACE);
	} else {
		nl_batch_route_del(b->nlb, &rt);
	}
	rt_set_inst(b, r, n ? nhset_get(b, nh, n) : NULL);
	r->flags &= (uint8_t)~RT_KERNEL_STALE;
}

/* A queued kernel change failed (nl_batch): count and log it; after a failed install
 * nothing of ours is there, so the next decision for the prefix tries again. */
static void fib_error_cb(const struct nl_route *kr, uint16_t type, int err, const char *msg,
			 void *arg)
{
	struct bgp *b = arg;
	bool add = type == RTM_NEWROUTE;
	if (!add && (err == -ESRCH || err == -ENOENT))
		return; /* already gone */
	char pb[IP_STRLEN];
	b->fib_errors++;
	snprintf(b->fib_error, sizeof(b->fib_error), "%s %s: %s %s", add ? "install" : "remove",
		 prefix_fmt(&kr->dst, pb), strerror(-err), msg);
	log_warn(SUB, "kernel: %s", b->fib_error);
	b->dirty_state = true;
	struct ipprefix p = kr->dst;
	prefix_normalize(&p);
	struct rt *r = add && bgp_fam_of(p.addr.family) >= 0 ? rt_get(b, &p, false) : NULL;
	if (r) {
		rt_set_inst(b, r, NULL);
		r->flags &= (uint8_t)~RT_KERNEL_STALE;
		rt_free_unused(b, r);
	}
}

/* Bring the kernel in line with every route decided since the last call, in batches. */
static void fib_flush(struct bgp *b)
{
	/* rt_decide may queue more while we go (not today, but cheap to allow) */
	for (size_t i = 0; i < b->fibq_n; i++) {
		struct rt *r = b->fibq[i];
		r->flags &= (uint8_t)~RT_FIB_QUEUED;
		if (b->cfg.install)
			fib_sync(b, r);
		rt_free_unused(b, r);
	}
	b->fibq_n = 0;
	if (b->nlb) {
		int e = nl_batch_flush(b->nlb);
		if (e < 0)
			log_warn(SUB, "kernel: route batch failed: %s", strerror(-e));
	}
}

static int kernel_adopt_cb(const struct nl_route *kr, void *arg)
{
	struct bgp *b = arg;
	struct ipprefix p = kr->dst;
	prefix_normalize(&p);
	if (bgp_fam_of(p.addr.family) < 0)
		return 0;
	struct rt *r = rt_get(b, &p, true);
	r->flags |= RT_KERNEL_STALE;
	return 0;
}

/* After a restart: done when every started peer sent End-of-RIB, or at the deadline. */
static void gr_check_done(struct bgp *b, monotime_t now)
{
	if (!b->gr_pending)
		return;
	bool all = now >= b->gr_until;
	if (!all && b->npeers) {
		all = true;
		for (size_t i = 0; i < b->npeers && all; i++) {
			struct peer *p = b->peers[i];
			if (p->bad)
				continue;
			for (int f = 0; f < BGP_NFAM; f++)
				if (p->fam[f] && !(p->est && (!p->mpfam[f] || p->eor_rcvd[f])))
					all = false;
		}
	}
	if (!all)
		return;
	b->gr_pending = false;
	log_info(SUB, "graceful restart done: removing kernel routes no longer learned");
	for (int f = 0; f < BGP_NFAM; f++)
		RIB_EACH(&b->rib[f], r)
	rt_decide(b, r);
}

/* ------------------------------------------------------------- export ---- */

/* The attributes to announce p's best path to peer `to`, or NULL (withdraw). */
static struct battrs *export_attrs(struct bgp *b, struct peer *to, struct rt *r)
{
	struct path *best = rt_best(r);
	if (!best || best->peer == to || (best->peer && to->cfg.local_only) ||
	    !bgp_attrs_export_ok(&best->attrs->a, &to->cfg.addr))
		return NULL;
	const struct bgp_attrs *src = &best->attrs->a;
	struct peer *from = best->peer;
	for (size_t i = 0; i < src->ncomm; i++) {
		if (src->comm[i] == 0xFFFFFF02) /* NO_ADVERTISE */
			return NULL;
		if (src->comm[i] == 0xFFFFFF01 && !to->ibgp) /* NO_EXPORT */
			return NULL;
	}
	bool reflect = false;
	if (from && from->ibgp && to->ibgp) {
		if (!from->cfg.rr_client && !to->cfg.rr_client)
			return NULL; /* iBGP split horizon */
		reflect = true;
	}
	if (!to->ibgp && bgp_aspath_contains(src, to->cfg.as))
		return NULL; /* the peer would drop it as a loop */
	int fam = rt_fam(r), af = rt_af(r);
	struct ipaddr self = {0};
	if (to->local.family == af)
		self = to->local;
	else
		self = fam == BGP_FAM_V4 ? b->cfg.nh4 : b->cfg.nh6;

	struct bgp_attrs a;
	bgp_attrs_copy(&a, src);
	bool nh_self = !from || (!to->ibgp && !to->cfg.next_hop_keep) || to->cfg.next_hop_self;
	if (reflect)
		nh_self = false;
	if (!to->ibgp) {
		bgp_aspath_prepend(&a, b->cfg.as);
		a.has &= ~(BGP_A_LOCAL_PREF | BGP_A_ORIGINATOR);
		if (from)
			a.has &= ~BGP_A_MED; /* MED does not leave the AS it was received in */
		free(a.cluster);
		a.cluster = NULL;
		a.ncluster = 0;
	} else {
		if (!(a.has & BGP_A_LOCAL_PREF)) {
			a.has |= BGP_A_LOCAL_PREF;
			a.local_pref = 100;
		}
	}
	if (reflect) {
		if (!(a.has & BGP_A_ORIGINATOR)) {
			a.has |= BGP_A_ORIGINATOR;
			a.originator_id = from->ropen.id;
		}
		uint32_t cid = b->cfg.cluster_id ? b->cfg.cluster_id : b->cfg.router_id;
		a.cluster = xrealloc(a.cluster, (a.ncluster + 1u) * 4u);
		memmove(a.cluster + 1, a.cluster, a.ncluster * 4u);
		a.cluster[0] = cid;
		a.ncluster++;
	}
	struct ipaddr nh;
	if (nh_self) {
		nh = self;
	} else if (!nh_of_path(best, af, &nh)) {
		nh = self;
	}
	if (!ip_is_set(&nh) || nh.family != af) {
		bgp_attrs_clear(&a);
		return NULL; /* no next hop of this family to give */
	}
	a.nh = (struct ipaddr){0};
	a.mp_nh = (struct ipaddr){0};
	a.mp_nh_ll = (struct ipaddr){0};
	if (fam == BGP_FAM_V4)
		a.nh = nh;
	else
		a.mp_nh = nh;
	a.has &= ~(BGP_A_ORIGIN | BGP_A_AS_PATH | BGP_A_NEXT_HOP);
	return attrs_intern(&b->at, &a);
}

struct outq {
	struct ipprefix p;
	struct battrs *a; /* NULL: withdraw */
};

static int outq_cmp(const void *x, const void *y)
{
	const struct outq *a = x, *b = y;
	if (a->a != b->a)
		return (uintptr_t)a->a < (uintptr_t)b->a ? -1 : 1;
	return prefix_cmp(&a->p, &b->p);
}

/* Order q so that equal attributes are together: a stable counting sort when there are
 * few distinct sets (the usual case), else a sort by attributes and prefix. */
static void outq_group(struct outq *q, size_t n)
{
	struct battrs *keys[32];
	size_t cnt[32] = {0}, nk = 0, last = 0;
	for (size_t i = 0; i < n; i++) {
		if (nk && keys[last] == q[i].a) {
			cnt[last]++;
			continue;
		}
		size_t k = 0;
		while (k < nk && keys[k] != q[i].a)
			k++;
		if (k == nk) {
			if (nk == ARRAY_SIZE(keys)) {
				qsort(q, n, sizeof(*q), outq_cmp);
				return;
			}
			keys[nk++] = q[i].a;
		}
		cnt[k]++;
		last = k;
	}
	if (nk < 2)
		return;
	size_t at[32], pos = 0;
	for (size_t k = 0; k < nk; k++) {
		at[k] = pos;
		pos += cnt[k];
	}
	struct outq *t = xmalloc(n * sizeof(*t));
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;
		while (keys[k] != q[i].a)
			k++;
		t[at[k]++] = q[i];
	}
	memcpy(q, t, n * sizeof(*t));
	free(t);
}

/* Send what changed in the peer's Adj-RIB-Out for one family. */
static void peer_flush_fam(struct bgp *b, struct peer *pe, int fam)
{
	struct pvec *d = &pe->dirty[fam];
	if (!d->n || !pe->est)
		return;
	struct outq *q = xmalloc(d->n * sizeof(*q));
	size_t n = 0;
	/* routes of one feed share their attributes: what they export to is computed once */
	struct battrs *memo_src = NULL, *memo_res = NULL;
	struct peer *memo_from = NULL;
	for (size_t i = 0; i < d->n; i++) {
		const struct ipprefix *key = &d->v[i]; /* a duplicate finds out == na below */
		struct rt *r = rt_get(b, key, false);
		struct path *best = r ? rt_best(r) : NULL;
		struct battrs *na;
		if (best && best->attrs == memo_src && best->peer == memo_from) {
			na = attrs_ref(memo_res);
		} else {
			na = r ? export_attrs(b, pe, r) : NULL;
			if (best) {
				attrs_unref(&b->at, memo_res);
				memo_src = best->attrs;
				memo_from = best->peer;
				memo_res = attrs_ref(na);
			}
		}
		struct battrs *old = pmap_get(&pe->out[fam], key);
		if (na == old) {
			attrs_unref(&b->at, na);
			continue;
		}
		pmap_put(&pe->out[fam], key, na);
		attrs_unref(&b->at, old);
		q[n].p = *key;
		q[n].a = na;
		n++;
	}
	attrs_unref(&b->at, memo_res);
	pvec_clear(d);
	outq_group(q, n);
	uint8_t msg[BGP_MAX_LEN];
	struct ipprefix *ps = xmalloc((n ? n : 1) * sizeof(*ps));
	for (size_t i = 0; i < n;) {
		size_t k = i;
		while (k < n && q[k].a == q[i].a) {
			ps[k - i] = q[k].p;
			k++;
		}
		size_t cnt = k - i, done = 0;
		while (done < cnt) {
			size_t used = 0, len;
			if (q[i].a)
				len = bgp_update_build(msg, sizeof(msg), &q[i].a->a, pe->as4, fam,
						       ps + done, cnt - done, &used);
			else
				len = bgp_withdraw_build(msg, sizeof(msg), fam, ps + done, cnt - done,
							 &used);
			if (!len || !used)
				break; /* cannot happen with sane attributes; never loop */
			conn_queue(pe->est, msg, len);
			pe->updates_out++;
			done += used;
		}
		i = k;
	}
	free(ps);
	free(q);
	conn_flush(pe->est);
	b->dirty_state = true;
}

static void peer_send_all(struct bgp *b, struct peer *pe, int fam)
{
	RIB_EACH(&b->rib[fam], r)
	{
		struct ipprefix p = rt_prefix(r);
		pvec_add(&pe->dirty[fam], &p);
	}
}

/* ------------------------------------------------------------ sockets ---- */

static socklen_t sockaddr_of(const struct ipaddr *a, uint16_t port, struct sockaddr_storage *ss)
{
	return ip_sockaddr(a, port, ss);
}

static void ipaddr_of(const struct sockaddr_storage *ss, struct ipaddr *a)
{
	memset(a, 0, sizeof(*a));
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			a->family = AF_INET;
			memcpy(a->b, s6->sin6_addr.s6_addr + 12, 4);
		} else {
			a->family = AF_INET6;
			memcpy(a->b, &s6->sin6_addr, 16);
		}
	} else if (ss->ss_family == AF_INET) {
		a->family = AF_INET;
		memcpy(a->b, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	}
}

static int set_md5(int fd, const struct ipaddr *peer, const char *key)
{
	struct tcp_md5sig m;
	memset(&m, 0, sizeof(m));
	sockaddr_of(peer, 0, (struct sockaddr_storage *)&m.tcpm_addr);
	size_t kl = strlen(key);
	if (kl > TCP_MD5SIG_MAXKEYLEN)
		return -EINVAL;
	m.tcpm_keylen = (uint16_t)kl;
	memcpy(m.tcpm_key, key, kl);
	return setsockopt(fd, IPPROTO_TCP, TCP_MD5SIG, &m, sizeof(m)) < 0 ? -errno : 0;
}

/* TTL (or hop limit) of what we send and GTSM's minimum of what we accept. */
static int set_ttl(int fd, int af, const struct peer *p)
{
	int ttl = p->cfg.ttl_security ? 255 : p->cfg.multihop ? p->cfg.multihop : p->ibgp ? 64 : 1;
	int min = 256 - p->cfg.ttl_security;
	int level = af == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
	if (setsockopt(fd, level, af == AF_INET ? IP_TTL : IPV6_UNICAST_HOPS, &ttl, sizeof(ttl)) < 0)
		return -errno;
	if (p->cfg.ttl_security &&
	    setsockopt(fd, level, af == AF_INET ? IP_MINTTL : IPV6_MINHOPCOUNT, &min, sizeof(min)) < 0)
		return -errno;
	return 0;
}

static struct conn *conn_new(struct peer *p, int fd, int slot, enum fsm st)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	c->ev.kind = EV_CONN;
	c->peer = p;
	c->fd = fd;
	c->outgoing = slot == SLOT_OUT;
	c->slot = slot;
	c->state = st;
	c->rbuf = xmalloc(RBUF);
	struct epoll_event e = {.events = EPOLLIN | (st == ST_CONNECT ? EPOLLOUT : 0),
				.data.ptr = &c->ev};
	c->want_out = st == ST_CONNECT;
	epoll_ctl(p->bgp->epfd, EPOLL_CTL_ADD, fd, &e);
	p->conn[slot] = c;
	return c;
}

static void peer_update_state(struct peer *p);

static bool conn_alive(const struct peer *p, const struct conn *c)
{
	for (int i = 0; i < NCONN; i++)
		if (p->conn[i] == c)
			return true;
	return false;
}

static void conn_free(struct conn *c)
{
	struct peer *p = c->peer;
	epoll_ctl(p->bgp->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	p->conn[c->slot] = NULL;
	free(c->rbuf);
	free(c->wbuf);
	free(c);
}

static void conn_send_open(struct conn *c)
{
	struct peer *p = c->peer;
	struct bgp *b = p->bgp;
	struct bgp_open o = {
	    .version = 4,
	    .as = b->cfg.as,
	    .hold = p->cfg.hold_time ? p->cfg.hold_time : b->cfg.hold_time,
	    .id = b->cfg.router_id,
	    .as4 = true,
	    .refresh = true,
	    .gr = true,
	    .gr_restarting = b->gr_pending,
	    .gr_time = p->cfg.restart_time ? p->cfg.restart_time : b->cfg.restart_time,
	};
	for (int f = 0; f < BGP_NFAM; f++) {
		o.mp[f] = p->fam[f];
		o.gr_fam[f] = p->fam[f] && b->cfg.graceful_restart;
		o.gr_fwd[f] = b->gr_pending;
	}
	uint8_t msg[BGP_MAX_LEN];
	conn_queue(c, msg, bgp_open_build(msg, sizeof(msg), &o));
	c->state = ST_OPENSENT;
	c->hold_at = monotime_now() + MONO_MS(OPEN_HOLD_S * 1000);
	conn_flush(c);
}

/* ------------------------------------------------------- session up/down ---- */

static void peer_down(struct peer *p, bool keep_gr)
{
	struct bgp *b = p->bgp;
	if (!p->est)
		return;
	p->est = NULL;
	p->flaps++;
	p->up_since = monotime_now();
	for (int f = 0; f < BGP_NFAM; f++) {
		pvec_clear(&p->dirty[f]);
		PMAP_EACH(&p->out[f], node)
		attrs_unref(&b->at, node->val);
		pmap_clear(&p->out[f]);
		bool gr = keep_gr && p->ropen.gr && p->ropen.gr_fam[f] && p->mpfam[f];
		if (gr) {
			rib_mark_stale(b, p, f);
			p->stale[f] = true;
			p->stale_until = monotime_now() + MONO_MS(p->ropen.gr_time * 1000LL);
			log_info(SUB, "peer %s: graceful restart, keeping %s routes for %u s", p->label,
				 f ? "IPv6" : "IPv4", p->ropen.gr_time);
		} else {
			p->stale[f] = false;
			rib_flush_peer(b, p, f, false);
		}
		p->eor_rcvd[f] = false;
	}
	b->dirty_state = true;
}

static void peer_schedule_retry(struct peer *p)
{
	if (p->cfg.passive || p->bad)
		return;
	uint16_t cr = p->cfg.connect_retry ? p->cfg.connect_retry : p->bgp->cfg.connect_retry;
	p->retry_at = monotime_now() + MONO_MS(cr * 1000LL);
}

/* Close one connection, after sending e (may be NULL); tcp_fail: no NOTIFICATION involved. */
static void conn_close(struct conn *c, const struct bgp_err *e, bool tcp_fail)
{
	struct peer *p = c->peer;
	if (e && c->state >= ST_OPENSENT) {
		uint8_t msg[BGP_MAX_LEN];
		conn_queue(c, msg, bgp_notification_build(msg, sizeof(msg), e));
		conn_flush(c);
		p->notif_out++;
	}
	bool was_est = p->est == c;
	conn_free(c);
	if (was_est) {
		peer_down(p, tcp_fail);
		peer_schedule_retry(p);
	} else if (!p->conn[SLOT_OUT] && !p->conn[SLOT_IN] && !p->conn[SLOT_NEW] && !p->retry_at) {
		peer_schedule_retry(p);
	}
	peer_update_state(p);
}

static void peer_update_state(struct peer *p)
{
	p->bgp->dirty_state = true;
}

static enum fsm peer_fsm(const struct peer *p)
{
	if (p->est)
		return ST_ESTABLISHED;
	enum fsm s = p->cfg.passive ? ST_ACTIVE : ST_IDLE;
	for (int i = 0; i < NCONN; i++)
		if (p->conn[i] && p->conn[i]->state > s)
			s = p->conn[i]->state;
	if (s == ST_IDLE && p->retry_at)
		s = ST_ACTIVE;
	return s;
}

static void peer_established(struct peer *p, struct conn *c)
{
	struct bgp *b = p->bgp;
	c->state = ST_ESTABLISHED;
	p->est = c;
	p->retry_at = 0;
	p->ll_oif = 0;
	p->up_since = monotime_now();
	p->error[0] = '\0';
	p->ropen = c->remote;
	p->as4 = c->remote.as4;
	p->refresh = c->remote.refresh;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(c->fd, (struct sockaddr *)&ss, &sl) == 0)
		ipaddr_of(&ss, &p->local);
	for (int f = 0; f < BGP_NFAM; f++) {
		p->mpfam[f] = p->fam[f] && c->remote.mp[f];
		p->eor_rcvd[f] = false;
		/* the peer restarted without keeping its forwarding state, or dropped GR */
		if (p->stale[f] && !(c->remote.gr && c->remote.gr_fam[f] && c->remote.gr_fwd[f])) {
			rib_flush_peer(b, p, f, true);
			p->stale[f] = false;
		}
	}
	log_info(SUB, "peer %s: established (AS %u, id %08x)", p->label, c->remote.as, c->remote.id);
	uint8_t msg[BGP_MAX_LEN];
	for (int f = 0; f < BGP_NFAM; f++) {
		if (!p->mpfam[f])
			continue;
		peer_send_all(b, p, f);
		peer_flush_fam(b, p, f);
		size_t used;
		conn_queue(c, msg, bgp_withdraw_build(msg, sizeof(msg), f, NULL, 0, &used)); /* EoR */
	}
	conn_flush(c);
	b->dirty_state = true;
}

/* -------------------------------------------------------- input ---- */

static void handle_update(struct peer *p, const uint8_t *body, size_t len, struct conn *c)
{
	struct bgp *b = p->bgp;
	struct bgp_update u;
	struct bgp_err e;
	p->updates_in++;
	if (bgp_update_parse(body, len, p->as4, &u, &e) < 0) {
		peer_err(p, "bad UPDATE: %s; session reset", bgp_err_str(e.code, e.subcode));
		conn_close(c, &e, false);
		return;
	}
	if (u.treat_as_withdraw || u.attr_discarded)
		log_warn(SUB, "peer %s: UPDATE %s: %s", p->label,
			 u.treat_as_withdraw ? "treated as withdraw" : "attribute discarded",
			 u.reason);
	if (u.eor_fam >= 0) {
		p->eor_rcvd[u.eor_fam] = true;
		if (p->stale[u.eor_fam]) {
			rib_flush_peer(b, p, u.eor_fam, true);
			p->stale[u.eor_fam] = false;
		}
		gr_check_done(b, monotime_now());
		b->dirty_state = true;
		bgp_update_free(&u);
		return;
	}
	for (size_t i = 0; i < u.nwithdrawn; i++)
		rib_remove(b, p, &u.withdrawn[i]);
	if (u.nnlri) {
		struct bgp_attrs *a = &u.attrs;
		bool reject = false;
		const char *why = "";
		if (!p->ibgp && bgp_aspath_contains(a, b->cfg.as))
			reject = true, why = "AS path loop";
		if ((a->has & BGP_A_ORIGINATOR) && a->originator_id == b->cfg.router_id)
			reject = true, why = "ORIGINATOR_ID is ours";
		uint32_t cid = b->cfg.cluster_id ? b->cfg.cluster_id : b->cfg.router_id;
		for (size_t i = 0; i < a->ncluster; i++)
			if (a->cluster[i] == cid)
				reject = true, why = "CLUSTER_LIST loop";
		if (!p->ibgp) {
			a->has &= ~(BGP_A_LOCAL_PREF | BGP_A_ORIGINATOR);
			free(a->cluster);
			a->cluster = NULL;
			a->ncluster = 0;
		}
		a->has &= ~(BGP_A_ORIGIN | BGP_A_AS_PATH | BGP_A_NEXT_HOP);
		if (reject) {
			log_debug(SUB, "peer %s: %zu prefixes rejected: %s", p->label, u.nnlri, why);
			for (size_t i = 0; i < u.nnlri; i++)
				rib_remove(b, p, &u.nlri[i]);
		} else {
			/* one interned attribute set per family: IPv4 uses NEXT_HOP (or an
			 * IPv4 MP_REACH next hop), IPv6 the MP_REACH next hop */
			struct battrs *fa[BGP_NFAM] = {NULL, NULL};
			for (size_t i = 0; i < u.nnlri; i++) {
				int f = bgp_fam_of(u.nlri[i].addr.family);
				if (!p->mpfam[f])
					continue;
				if (!fa[f]) {
					struct bgp_attrs x;
					bgp_attrs_copy(&x, a);
					if (f == BGP_FAM_V4 && x.nh.family != AF_INET) {
						x.nh = x.mp_nh;
					}
					if (f == BGP_FAM_V4)
						x.mp_nh = x.mp_nh_ll = (struct ipaddr){0};
					else
						x.nh = (struct ipaddr){0};
					fa[f] = attrs_intern(&b->at, &x);
				}
				rib_update(b, p, &u.nlri[i], attrs_ref(fa[f]));
			}
			for (int f = 0; f < BGP_NFAM; f++)
				attrs_unref(&b->at, fa[f]);
		}
	}
	bgp_update_free(&u);
}

static void handle_open(struct conn *c, const uint8_t *body, size_t len)
{
	struct peer *p = c->peer;
	struct bgp *b = p->bgp;
	struct bgp_err e;
	struct bgp_open o;
	if (c->state != ST_OPENSENT) {
		e = (struct bgp_err){.code = BGP_ERR_FSM};
		conn_close(c, &e, false);
		return;
	}
	if (bgp_open_parse(body, len, &o, &e) < 0) {
		peer_err(p, "bad OPEN: %s", bgp_err_str(e.code, e.subcode));
		conn_close(c, &e, false);
		return;
	}
	if (o.as != p->cfg.as) {
		peer_err(p, "OPEN: peer AS %u, configured %u", o.as, p->cfg.as);
		e = (struct bgp_err){.code = BGP_ERR_OPEN, .subcode = BGP_OPEN_PEER_AS};
		conn_close(c, &e, false);
		return;
	}
	if (o.id == b->cfg.router_id && p->ibgp) {
		peer_err(p, "OPEN: the peer has our BGP identifier");
		e = (struct bgp_err){.code = BGP_ERR_OPEN, .subcode = BGP_OPEN_BGP_ID};
		conn_close(c, &e, false);
		return;
	}
	c->remote = o;
	c->open_rcvd = true;
	if (c->slot == SLOT_NEW && p->est) {
		/* The peer connects again while our session is up.  Soon after the session
		 * came up it is a late collision (RFC 4271 §6.8: Established wins); later it
		 * is a peer that restarted without us seeing its old connection die: with
		 * graceful restart the old session ends as a TCP failure, keeping its routes
		 * stale (RFC 4724 §4.2); without, the hold timer has to end it first. */
		bool restarted = o.gr && p->ropen.gr &&
				 monotime_now() - p->up_since > MONO_MS(RESTART_GUARD_MS);
		if (!restarted) {
			e = (struct bgp_err){.code = BGP_ERR_CEASE, .subcode = BGP_CEASE_COLLISION};
			conn_close(c, &e, false);
			return;
		}
		log_info(SUB, "peer %s: reconnected with graceful restart: old session ends",
			 p->label);
		conn_close(p->est, NULL, true);
		for (int i = SLOT_OUT; i <= SLOT_IN; i++)
			if (p->conn[i])
				conn_close(p->conn[i], NULL, false);
		p->conn[SLOT_NEW] = NULL;
		c->slot = SLOT_IN;
		p->conn[SLOT_IN] = c;
		p->retry_at = 0;
	}
	/* collision detection (RFC 4271 §6.8) */
	struct conn *other = p->conn[c->outgoing ? SLOT_IN : SLOT_OUT];
	/* The peer's identifier is known from this OPEN, so a connection still in OpenSent
	 * is resolved now too: both sides then drop the same one before either is up. */
	if (other && other->state >= ST_OPENSENT) {
		struct conn *loser;
		if (other->state == ST_ESTABLISHED)
			loser = c;
		else /* the higher BGP identifier keeps the connection it initiated */
			loser = (b->cfg.router_id < o.id) == c->outgoing ? c : other;
		e = (struct bgp_err){.code = BGP_ERR_CEASE, .subcode = BGP_CEASE_COLLISION};
		log_info(SUB, "peer %s: connection collision, closing the %s one", p->label,
			 loser->outgoing ? "outgoing" : "incoming");
		conn_close(loser, &e, false);
		if (loser == c)
			return;
	}
	uint16_t mine = p->cfg.hold_time ? p->cfg.hold_time : b->cfg.hold_time;
	c->hold = o.hold < mine ? o.hold : mine;
	uint8_t msg[BGP_HDR_LEN];
	conn_queue(c, msg, bgp_keepalive_build(msg, sizeof(msg)));
	c->state = ST_OPENCONFIRM;
	monotime_t now = monotime_now();
	c->hold_at = c->hold ? now + MONO_MS(c->hold * 1000LL) : 0;
	c->ka_at = c->hold ? now + MONO_MS(c->hold * 1000LL / 3) : 0;
	conn_flush(c);
}

/* One message; false when the connection was closed. */
static bool handle_msg(struct conn *c, uint8_t type, const uint8_t *body, size_t len)
{
	struct peer *p = c->peer;
	struct bgp_err e;
	if (c->hold && c->state >= ST_OPENCONFIRM)
		c->hold_at = monotime_now() + MONO_MS(c->hold * 1000LL);
	switch (type) {
	case BGP_OPEN:
		handle_open(c, body, len);
		return conn_alive(p, c); /* c may be freed: compare, do not read */
	case BGP_KEEPALIVE:
		if (c->state == ST_OPENCONFIRM) {
			peer_established(p, c);
		} else if (c->state != ST_ESTABLISHED) {
			e = (struct bgp_err){.code = BGP_ERR_FSM};
			conn_close(c, &e, false);
			return false;
		}
		return true;
	case BGP_NOTIFICATION:
		if (bgp_notification_parse(body, len, &e) == 0)
			peer_err(p, "NOTIFICATION received in %s: %u/%u %s", fsm_name[c->state],
				 e.code, e.subcode, bgp_err_str(e.code, e.subcode));
		p->notif_in++;
		conn_close(c, NULL, false);
		return false;
	case BGP_UPDATE:
	case BGP_REFRESH:
		if (c->state != ST_ESTABLISHED) {
			e = (struct bgp_err){.code = BGP_ERR_FSM};
			conn_close(c, &e, false);
			return false;
		}
		if (type == BGP_UPDATE) {
			handle_update(p, body, len, c);
			return p->est == c;
		}
		int fam;
		if (bgp_refresh_parse(body, len, &fam, &e) < 0) {
			conn_close(c, &e, false);
			return false;
		}
		p->refresh_in++;
		if (fam >= 0 && p->mpfam[fam]) {
			log_info(SUB, "peer %s: route refresh for %s", p->label, fam ? "IPv6" : "IPv4");
			/* re-send everything: forget what was sent */
			PMAP_EACH(&p->out[fam], node)
			attrs_unref(&p->bgp->at, node->val);
			pmap_clear(&p->out[fam]);
			peer_send_all(p->bgp, p, fam);
			peer_flush_fam(p->bgp, p, fam);
			uint8_t msg[BGP_MAX_LEN];
			size_t used;
			conn_queue(c, msg, bgp_withdraw_build(msg, sizeof(msg), fam, NULL, 0, &used));
			conn_flush(c);
		}
		return true;
	}
	return true;
}

static void conn_readable(struct conn *c)
{
	struct peer *p = c->peer;
	size_t budget = READ_BUDGET;
	while (budget) {
		ssize_t r = recv(c->fd, c->rbuf + c->rlen, RBUF - c->rlen, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (r <= 0) {
			if (c->state >= ST_OPENSENT || r < 0)
				peer_err(p, "connection %s", r == 0 ? "closed by the peer"
								    : strerror(errno));
			conn_close(c, NULL, true);
			return;
		}
		budget = (size_t)r > budget ? 0 : budget - (size_t)r;
		c->rlen += (size_t)r;
		size_t off = 0;
		while (c->rlen - off >= BGP_HDR_LEN) {
			uint8_t type;
			uint16_t len;
			struct bgp_err e;
			if (bgp_hdr_parse(c->rbuf + off, c->rlen - off, &type, &len, &e) < 0) {
				peer_err(p, "bad message header: %s", bgp_err_str(e.code, e.subcode));
				conn_close(c, &e, false);
				return;
			}
			if (c->rlen - off < len)
				break;
			if (!handle_msg(c, type, c->rbuf + off + BGP_HDR_LEN, len - BGP_HDR_LEN))
				return;
			off += len;
		}
		memmove(c->rbuf, c->rbuf + off, c->rlen - off);
		c->rlen -= off;
	}
}

static void conn_writable(struct conn *c)
{
	struct peer *p = c->peer;
	if (c->state == ST_CONNECT) {
		int err = 0;
		socklen_t l = sizeof(err);
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err) {
			snprintf(p->error, sizeof(p->error), "connect: %s", strerror(err));
			p->bgp->dirty_state = true;
			log_debug(SUB, "peer %s: %s", p->label, p->error);
			conn_close(c, NULL, true);
			return;
		}
		conn_send_open(c);
		return;
	}
	conn_flush(c);
}

static void peer_connect(struct peer *p)
{
	p->retry_at = 0;
	if (p->conn[0] || p->est)
		return;
	int af = p->cfg.addr.family;
	int fd = socket(af, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		peer_err(p, "socket: %s", strerror(errno));
		peer_schedule_retry(p);
		return;
	}
	int e = 0;
	if (p->cfg.password[0])
		e = set_md5(fd, &p->cfg.addr, p->cfg.password);
	if (!e)
		e = set_ttl(fd, af, p);
	struct sockaddr_storage ss;
	socklen_t sl;
	if (!e && p->cfg.local.family == af) {
		sl = sockaddr_of(&p->cfg.local, 0, &ss);
		if (bind(fd, (struct sockaddr *)&ss, sl) < 0)
			e = -errno;
	}
	if (!e) {
		sl = sockaddr_of(&p->cfg.addr, p->cfg.port ? p->cfg.port : BGP_PORT, &ss);
		if (connect(fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS)
			e = -errno;
	}
	if (e) {
		peer_err(p, "connect: %s", strerror(-e));
		close(fd);
		peer_schedule_retry(p);
		return;
	}
	struct conn *c = conn_new(p, fd, SLOT_OUT, ST_CONNECT);
	uint16_t cr = p->cfg.connect_retry ? p->cfg.connect_retry : p->bgp->cfg.connect_retry;
	c->hold_at = monotime_now() + MONO_MS(cr * 1000LL); /* connect timeout */
	peer_update_state(p);
}

static struct peer *peer_by_addr(struct bgp *b, const struct ipaddr *a)
{
	for (size_t i = 0; i < b->npeers; i++)
		if (ip_eq(&b->peers[i]->cfg.addr, a) && !b->peers[i]->bad)
			return b->peers[i];
	return NULL;
}

static void listen_readable(struct bgp *b, int lfd)
{
	for (int n = 0; n < 64; n++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		struct ipaddr a;
		ipaddr_of(&ss, &a);
		struct peer *p = peer_by_addr(b, &a);
		char ab[IP_STRLEN];
		if (!p) {
			log_info(SUB, "connection from %s refused: not a configured peer",
				 ip_fmt(&a, ab));
			close(fd);
			continue;
		}
		/* while a session is up, the new connection waits in its own slot until its
		 * OPEN says what it is (handle_open) */
		int slot = p->est ? SLOT_NEW : SLOT_IN;
		if (p->conn[slot]) /* a newer incoming connection replaces an older one */
			conn_close(p->conn[slot], NULL, false);
		set_ttl(fd, a.family, p);
		struct conn *c = conn_new(p, fd, slot, ST_ACTIVE);
		conn_send_open(c);
		peer_update_state(p);
	}
}

/* ------------------------------------------------------------- timers ---- */

static void peer_timers(struct peer *p, monotime_t now)
{
	struct bgp *b = p->bgp;
	for (int i = 0; i < NCONN; i++) {
		struct conn *c = p->conn[i];
		if (!c)
			continue;
		if (c->hold_at && now >= c->hold_at) {
			if (c->state == ST_CONNECT) {
				snprintf(p->error, sizeof(p->error), "connect: timed out");
				conn_close(c, NULL, true);
			} else {
				peer_err(p, "hold timer expired");
				struct bgp_err e = {.code = BGP_ERR_HOLD};
				conn_close(c, &e, true);
			}
			continue;
		}
		if (c->ka_at && now >= c->ka_at &&
		    (c->state == ST_OPENCONFIRM || c->state == ST_ESTABLISHED)) {
			uint8_t msg[BGP_HDR_LEN];
			conn_queue(c, msg, bgp_keepalive_build(msg, sizeof(msg)));
			conn_flush(c);
		}
	}
	if (p->retry_at && now >= p->retry_at && !p->est)
		peer_connect(p);
	if (p->stale_until && now >= p->stale_until) {
		p->stale_until = 0;
		for (int f = 0; f < BGP_NFAM; f++) {
			if (p->stale[f]) {
				log_info(SUB, "peer %s: restart time over, removing stale routes",
					 p->label);
				rib_flush_peer(b, p, f, true);
				p->stale[f] = false;
			}
		}
	}
}

int bgp_timeout_ms(struct bgp *b)
{
	monotime_t now = monotime_now(), next = 0;
#define CONSIDER(t)                                                                               \
	do {                                                                                      \
		if ((t) && (!next || (t) < next))                                                 \
			next = (t);                                                               \
	} while (0)
	for (size_t i = 0; i < b->npeers; i++) {
		struct peer *p = b->peers[i];
		CONSIDER(p->retry_at);
		CONSIDER(p->stale_until);
		for (int k = 0; k < NCONN; k++) {
			if (!p->conn[k])
				continue;
			CONSIDER(p->conn[k]->hold_at);
			CONSIDER(p->conn[k]->ka_at);
		}
	}
	if (b->gr_pending)
		CONSIDER(b->gr_until);
#undef CONSIDER
	int bt = b->bfd ? bfd_timeout_ms(b->bfd) : -1;
	if (!next)
		return bt;
	monotime_t ms = now_ms_to(next, now);
	int t = ms > 60000 ? 60000 : (int)ms + 1;
	return bt >= 0 && bt < t ? bt : t;
}

void bgp_dispatch(struct bgp *b)
{
	b->nhc_n = 0;
	struct epoll_event evs[64];
	int n = epoll_wait(b->epfd, evs, 64, 0);
	for (int i = 0; i < n; i++) {
		void *ev = evs[i].data.ptr;
		if (ev == &b->lev[0] || ev == &b->lev[1]) {
			listen_readable(b, b->lfd[ev == &b->lev[1]]);
			continue;
		}
		if (ev == &b->bfd_ev) /* bfd_dispatch below */
			continue;
		struct conn *c = ev;
		/* the connection may have been closed by an earlier event of this batch:
		 * look it up before touching it */
		bool alive = false;
		for (size_t k = 0; k < b->npeers && !alive; k++)
			alive = conn_alive(b->peers[k], c);
		if (!alive)
			continue;
		struct peer *p = c->peer;
		if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
			conn_writable(c);
			if (!conn_alive(p, c))
				continue;
		}
		if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
			conn_readable(c);
	}
	if (b->bfd)
		bfd_dispatch(b->bfd);
	monotime_t now = monotime_now();
	for (size_t i = 0; i < b->npeers; i++)
		peer_timers(b->peers[i], now);
	gr_check_done(b, now);
	for (size_t i = 0; i < b->npeers; i++)
		for (int f = 0; f < BGP_NFAM; f++)
			peer_flush_fam(b, b->peers[i], f);
	fib_flush(b);
}

size_t bgp_route_count(const struct bgp *b)
{
	return b->rib[0].n + b->rib[1].n;
}

bool bgp_state_dirty(struct bgp *b)
{
	bool d = b->dirty_state;
	b->dirty_state = false;
	return d;
}

/* -------------------------------------------------------------- BFD ---- */

/* Up -> Down takes the session down at once, as an expired hold timer would (RFC 5882
 * §4.3), unless the neighbour said AdminDown (§3.2: not a path failure).  No graceful
 * restart: the path is dead, so the routes go now (what BIRD and FRR do by default). */
static void bfd_event(void *arg, struct bfd_sess *s, void *sess_arg, enum bfd_state old,
		      enum bfd_state now, uint8_t diag, bool remote_admin)
{
	struct bgp *b = arg;
	struct peer *p = sess_arg;
	(void)s;
	b->dirty_state = true;
	if (old != BFD_UP || now != BFD_DOWN || remote_admin || !p->est)
		return;
	peer_err(p, "BFD down: %s", bfd_diag_name(diag));
	struct bgp_err e = {.code = BGP_ERR_CEASE, .subcode = 10}; /* BFD Down, RFC 9384 */
	conn_close(p->est, &e, false);
}

static void peer_bfd_start(struct bgp *b, struct peer *p)
{
	if (!b->bfd) {
		struct bfd_cfg bc = {.port = b->cfg.bfd_port, .listen4 = b->cfg.listen4,
				     .listen6 = b->cfg.listen6};
		b->bfd = bfd_new(&bc, bfd_event, b);
		if (!b->bfd) {
			peer_err(p, "BFD: %s", strerror(errno));
			return;
		}
		struct epoll_event e = {.events = EPOLLIN, .data.ptr = &b->bfd_ev};
		epoll_ctl(b->epfd, EPOLL_CTL_ADD, bfd_fd(b->bfd), &e);
	}
	struct bfd_sess_cfg sc = {.peer = p->cfg.addr, .local = p->cfg.local,
				  .min_tx_ms = p->cfg.bfd_tx_ms, .min_rx_ms = p->cfg.bfd_rx_ms,
				  .mult = p->cfg.bfd_mult};
	p->bfd = bfd_sess_add(b->bfd, &sc, p);
	if (!p->bfd)
		peer_err(p, "BFD: %s", strerror(errno));
}

/* ------------------------------------------------------------ peers ---- */

static int listen_md5(struct bgp *b, const struct peer *p, const char *key);

static void peer_free(struct peer *p, const struct bgp_err *e)
{
	if (p->cfg.password[0] && !p->bad)
		listen_md5(p->bgp, p, ""); /* the key goes with the peer */
	bfd_sess_del(p->bfd);
	for (int i = 0; i < NCONN; i++)
		if (p->conn[i])
			conn_close(p->conn[i], e, false);
	peer_down(p, false);
	for (int f = 0; f < BGP_NFAM; f++) {
		rib_flush_peer(p->bgp, p, f, false);
		pvec_clear(&p->dirty[f]);
		pmap_clear(&p->out[f]);
	}
	free(p);
}

static bool peer_cfg_eq(const struct bgp_peer_cfg *a, const struct bgp_peer_cfg *b)
{
	return !memcmp(a, b, sizeof(*a));
}

static int listen_md5(struct bgp *b, const struct peer *p, const char *key)
{
	int i = p->cfg.addr.family == AF_INET6;
	if (b->lfd[i] < 0 || !p->cfg.password[0])
		return 0;
	return set_md5(b->lfd[i], &p->cfg.addr, key);
}

static struct peer *peer_new(struct bgp *b, const struct bgp_peer_cfg *cfg)
{
	struct peer *p = xcalloc(1, sizeof(*p));
	char ab[IP_STRLEN];
	p->bgp = b;
	p->cfg = *cfg;
	ip_fmt(&cfg->addr, ab);
	snprintf(p->label, sizeof(p->label), "%s", cfg->name[0] ? cfg->name : ab);
	if (!cfg->name[0])
		snprintf(p->cfg.name, sizeof(p->cfg.name), "%s", ab);
	p->ibgp = cfg->as == b->cfg.as;
	bool any = false;
	for (int f = 0; f < BGP_NFAM; f++)
		any |= cfg->fam[f];
	for (int f = 0; f < BGP_NFAM; f++)
		p->fam[f] = any ? cfg->fam[f] : bgp_fam_of(cfg->addr.family) == f;
	p->up_since = monotime_now();
	if (!ip_is_set(&cfg->addr) || !cfg->as) {
		p->bad = true;
		snprintf(p->error, sizeof(p->error), "needs an address and an AS number");
	} else if (strlen(cfg->password) > TCP_MD5SIG_MAXKEYLEN) {
		p->bad = true;
		snprintf(p->error, sizeof(p->error), "password longer than %d characters",
			 TCP_MD5SIG_MAXKEYLEN);
	} else {
		int e = listen_md5(b, p, cfg->password);
		if (e < 0) {
			p->bad = true;
			snprintf(p->error, sizeof(p->error), "TCP MD5: %s", strerror(-e));
		}
	}
	if (p->bad)
		log_warn(SUB, "peer %s: %s", p->label, p->error);
	else if (!cfg->passive)
		p->retry_at = monotime_now() + MONO_MS(100); /* small delay, like BIRD's */
	return p;
}

int bgp_set_peers(struct bgp *b, const struct bgp_peer_cfg *cfgs, size_t n)
{
	struct peer **np = xcalloc(n ? n : 1, sizeof(*np));
	int bad = 0;
	bool *kept = xcalloc(b->npeers ? b->npeers : 1, sizeof(*kept));
	for (size_t i = 0; i < n; i++) {
		struct peer *old = NULL;
		for (size_t k = 0; k < b->npeers; k++) {
			if (!kept[k] && ip_eq(&b->peers[k]->cfg.addr, &cfgs[i].addr)) {
				struct bgp_peer_cfg c = cfgs[i];
				if (!c.name[0])
					snprintf(c.name, sizeof(c.name), "%s", b->peers[k]->cfg.name);
				if (peer_cfg_eq(&b->peers[k]->cfg, &c)) {
					old = b->peers[k];
					kept[k] = true;
				}
				break;
			}
		}
		for (size_t k = 0; k < i && !old; k++)
			if (np[k] && ip_eq(&np[k]->cfg.addr, &cfgs[i].addr)) {
				bad++;
				log_warn(SUB, "peer %zu: duplicate address, ignored", i);
				goto next;
			}
		np[i] = old ? old : peer_new(b, &cfgs[i]);
		bad += np[i]->bad;
	next:;
	}
	/* the new set goes in first: freeing a peer re-runs decisions over b->peers */
	struct peer **old = b->peers;
	size_t nold = b->npeers;
	b->peers = np;
	b->npeers = 0;
	for (size_t i = 0; i < n; i++)
		if (np[i])
			b->peers[b->npeers++] = np[i];
	struct bgp_err e = {.code = BGP_ERR_CEASE, .subcode = BGP_CEASE_PEER_DECONFIG};
	for (size_t k = 0; k < nold; k++)
		if (!kept[k])
			peer_free(old[k], &e);
	/* BFD sessions after the old peers (one per address) are gone */
	for (size_t i = 0; i < b->npeers; i++)
		if (b->peers[i]->cfg.bfd && !b->peers[i]->bad && !b->peers[i]->bfd)
			peer_bfd_start(b, b->peers[i]);
	free(kept);
	free(old);
	fib_flush(b);
	b->dirty_state = true;
	return bad;
}

void bgp_refresh_all(struct bgp *b)
{
	uint8_t msg[64];
	for (size_t i = 0; i < b->npeers; i++) {
		struct peer *p = b->peers[i];
		if (!p->est || !p->refresh)
			continue;
		for (int f = 0; f < BGP_NFAM; f++)
			if (p->mpfam[f])
				conn_queue(p->est, msg, bgp_refresh_build(msg, sizeof(msg), f));
		conn_flush(p->est);
	}
}

/* ------------------------------------------------------------ origin ---- */

int bgp_originate(struct bgp *b, const struct ipprefix *p, const struct bgp_route_attrs *ra)
{
	if (bgp_fam_of(p->addr.family) < 0 || p->len > ip_maxlen(p->addr.family))
		return -EINVAL;
	struct ipprefix np = *p;
	prefix_normalize(&np);
	struct bgp_attrs a;
	memset(&a, 0, sizeof(a));
	a.origin = BGP_ORIGIN_IGP;
	if (ra) {
		if (ra->local_pref) {
			a.has |= BGP_A_LOCAL_PREF;
			a.local_pref = ra->local_pref;
		}
		if (ra->has_med) {
			a.has |= BGP_A_MED;
			a.med = ra->med;
		}
		if (ra->ncomm) {
			a.ncomm = (uint16_t)ra->ncomm;
			a.comm = xmalloc(ra->ncomm * 4);
			memcpy(a.comm, ra->comm, ra->ncomm * 4);
		}
		if (ra->nlcomm) {
			a.nlcomm = (uint16_t)ra->nlcomm;
			a.lcomm = xmalloc(ra->nlcomm * 12);
			memcpy(a.lcomm, ra->lcomm, ra->nlcomm * 12);
		}
		if (ra->nonly_to) {
			a.nonly_to = (uint16_t)ra->nonly_to;
			a.only_to = xmalloc(ra->nonly_to * sizeof(*a.only_to));
			memcpy(a.only_to, ra->only_to, ra->nonly_to * sizeof(*a.only_to));
		}
	}
	rib_update(b, NULL, &np, attrs_intern(&b->at, &a));
	fib_flush(b);
	return 0;
}

int bgp_withdraw(struct bgp *b, const struct ipprefix *p)
{
	if (bgp_fam_of(p->addr.family) < 0)
		return -EINVAL;
	struct ipprefix np = *p;
	prefix_normalize(&np);
	rib_remove(b, NULL, &np);
	fib_flush(b);
	return 0;
}

/* ----------------------------------------------------------- lifecycle ---- */

static int listen_on(struct bgp *b, int i)
{
	int af = i ? AF_INET6 : AF_INET;
	int fd = socket(af, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (af == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	struct ipaddr any = {.family = af};
	const struct ipaddr *la = i ? &b->cfg.listen6 : &b->cfg.listen4;
	struct sockaddr_storage ss;
	socklen_t sl = sockaddr_of(la->family == af ? la : &any,
				   (uint16_t)(b->cfg.listen_port ? b->cfg.listen_port : BGP_PORT), &ss);
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 64) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	b->lfd[i] = fd;
	b->lev[i].kind = EV_LISTEN;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &b->lev[i]};
	epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev);
	return 0;
}

struct bgp *bgp_new(const struct bgp_cfg *cfg)
{
	struct bgp *b = xcalloc(1, sizeof(*b));
	b->cfg = *cfg;
	b->lfd[0] = b->lfd[1] = -1;
	if (!b->cfg.hold_time)
		b->cfg.hold_time = 90;
	if (!b->cfg.connect_retry)
		b->cfg.connect_retry = 5;
	if (!b->cfg.rt_proto)
		b->cfg.rt_proto = TWILL_RTPROT_BGP;
	if (!b->cfg.restart_time)
		b->cfg.restart_time = 120;
	int e = 0;
	if (!b->cfg.as || !b->cfg.router_id) {
		e = -EINVAL;
		goto fail;
	}
	b->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (b->epfd < 0) {
		e = -errno;
		goto fail;
	}
	if (b->cfg.listen_port >= 0) {
		if ((e = listen_on(b, 0)) < 0)
			goto fail;
		int e6 = listen_on(b, 1);
		if (e6 < 0 && e6 != -EAFNOSUPPORT && e6 != -EADDRNOTAVAIL)
			log_warn(SUB, "no IPv6 listener: %s", strerror(-e6));
	}
	if (b->cfg.install) {
		b->nl = nl_open();
		if (!b->nl) {
			e = -errno;
			goto fail;
		}
		b->nlb = nl_batch_new(b->nl, fib_error_cb, b);
		if (b->cfg.graceful_restart) {
			for (int f = 0; f < BGP_NFAM; f++)
				nl_route_dump(b->nl, bgp_fam_af(f), b->cfg.table, b->cfg.rt_proto,
					      kernel_adopt_cb, b);
			size_t kept = b->rib[0].n + b->rib[1].n;
			if (kept) {
				b->gr_pending = true;
				b->gr_until = monotime_now() + MONO_MS(b->cfg.restart_time * 1000LL);
				log_info(SUB, "restarting: keeping %zu kernel routes until End-of-RIB",
					 kept);
			}
		} else {
			/* not restarting gracefully: routes of a previous run are stale now */
			for (int f = 0; f < BGP_NFAM; f++)
				nl_route_dump(b->nl, bgp_fam_af(f), b->cfg.table, b->cfg.rt_proto,
					      kernel_adopt_cb, b);
			for (int f = 0; f < BGP_NFAM; f++) {
				RIB_EACH(&b->rib[f], r)
				{
					r->flags |= RT_KERNEL_STALE; /* forces the delete */
					rt_decide(b, r);
				}
			}
			fib_flush(b);
		}
	}
	return b;
fail:
	bgp_free(b);
	errno = -e;
	return NULL;
}

void bgp_free(struct bgp *b)
{
	if (!b)
		return;
	struct bgp_err e = {.code = BGP_ERR_CEASE, .subcode = BGP_CEASE_SHUTDOWN};
	/* keep the kernel routes when restarting gracefully: make fib_sync leave them */
	if (b->cfg.graceful_restart)
		b->cfg.install = false;
	/* Restarting gracefully: no NOTIFICATION, which would end the peers' helper mode
	 * (RFC 4724 §4); a plain TCP close makes them keep our routes. */
	while (b->npeers) /* out of the list before it goes */
		peer_free(b->peers[--b->npeers], b->cfg.graceful_restart ? NULL : &e);
	fib_flush(b);
	free(b->fibq);
	free(b->peers);
	bfd_free(b->bfd);
	for (int f = 0; f < BGP_NFAM; f++) {
		RIB_EACH(&b->rib[f], r)
		{
			for (struct path *pa = rt_paths(r), *next; pa; pa = next) {
				next = pa->next;
				attrs_unref(&b->at, pa->attrs);
				if (pa != &r->p0)
					free(pa);
			}
			nhset_unref(b, r->inst);
			free(r);
		}
		free(b->rib[f].b);
	}
	free(b->at.b);
	for (int i = 0; i < 2; i++)
		if (b->lfd[i] >= 0)
			close(b->lfd[i]);
	if (b->epfd > 0)
		close(b->epfd);
	nl_batch_free(b->nlb);
	if (b->nl)
		nl_close(b->nl);
	free(b);
}

int bgp_fd(const struct bgp *b)
{
	return b->epfd;
}

/* -------------------------------------------------------------- state ---- */

static json_object *jip(const struct ipaddr *a)
{
	char buf[IP_STRLEN];
	return json_object_new_string(ip_is_set(a) ? ip_fmt(a, buf) : "");
}

static json_object *path_json(const struct path *pa, int af, bool best)
{
	json_object *o = json_object_new_object();
	const struct bgp_attrs *a = &pa->attrs->a;
	char buf[1024];
	struct ipaddr nh = {0};
	if (!nh_of_path(pa, af, &nh))
		nh_link_local(pa, af, &nh);
	json_object_object_add(o, "from", json_object_new_string(pa->peer ? pa->peer->label : "local"));
	json_object_object_add(o, "best", json_object_new_boolean(best));
	json_object_object_add(o, "stale", json_object_new_boolean(pa->stale));
	json_object_object_add(o, "nextHop", jip(&nh));
	json_object_object_add(o, "asPath", json_object_new_string(bgp_aspath_fmt(a, buf, sizeof(buf))));
	static const char *orig[] = {"IGP", "EGP", "incomplete"};
	json_object_object_add(o, "origin", json_object_new_string(orig[a->origin % 3]));
	json_object_object_add(o, "localPref", json_object_new_int64(path_lp(pa)));
	if (a->has & BGP_A_MED)
		json_object_object_add(o, "med", json_object_new_int64(a->med));
	json_object *cl = json_object_new_array();
	for (size_t i = 0; i < a->ncomm; i++) {
		snprintf(buf, sizeof(buf), "%u:%u", a->comm[i] >> 16, a->comm[i] & 0xffff);
		json_object_array_add(cl, json_object_new_string(buf));
	}
	json_object_object_add(o, "communities", cl);
	json_object *ll = json_object_new_array();
	for (size_t i = 0; i < a->nlcomm; i++) {
		snprintf(buf, sizeof(buf), "%u:%u:%u", a->lcomm[3 * i], a->lcomm[3 * i + 1],
			 a->lcomm[3 * i + 2]);
		json_object_array_add(ll, json_object_new_string(buf));
	}
	json_object_object_add(o, "largeCommunities", ll);
	if (a->has & BGP_A_ORIGINATOR) {
		struct in_addr ia = {htonl(a->originator_id)};
		json_object_object_add(o, "originatorId", json_object_new_string(inet_ntoa(ia)));
	}
	if (a->ncluster) {
		json_object *c = json_object_new_array();
		for (size_t i = 0; i < a->ncluster; i++) {
			struct in_addr ia = {htonl(a->cluster[i])};
			json_object_array_add(c, json_object_new_string(inet_ntoa(ia)));
		}
		json_object_object_add(o, "clusterList", c);
	}
	return o;
}

static int rt_cmp(const void *x, const void *y)
{
	/* prefix_cmp's order (family, address, length) without building prefixes: this runs
	 * for every route of a big RIB whenever the state is written */
	const struct rt *a = *(const struct rt *const *)x, *b = *(const struct rt *const *)y;
	if ((a->flags ^ b->flags) & RT_V6)
		return a->flags & RT_V6 ? 1 : -1;
	int c = memcmp(a->addr, b->addr, a->flags & RT_V6 ? 16 : 4);
	if (c)
		return c;
	return a->len < b->len ? -1 : a->len > b->len;
}

/* At most k prefixes of family f that have paths, sorted, in *out (to free): all of them
 * when there are no more than k, else the first k found in the hash.  A RIB of a million
 * routes is then never walked whole (a cache miss per route, 0.1-0.2 s) for a state file
 * that shows 10,000 of them: which ones then is not specified. */
static size_t rt_select(struct bgp *b, int f, size_t k, struct rt ***out)
{
	size_t cap = k < b->rib[f].n ? k : b->rib[f].n, n = 0;
	struct rt **h = xmalloc((cap ? cap : 1) * sizeof(*h));
	for (size_t i = 0; i < b->rib[f].nb && n < cap; i++)
		for (struct rt *r = b->rib[f].b[i]; r && n < cap; r = r->hnext)
			if (rt_paths(r))
				h[n++] = r;
	qsort(h, n, sizeof(*h), rt_cmp);
	*out = h;
	return n;
}

static json_object *rt_json(struct rt *r)
{
	char pb[IP_STRLEN];
	struct ipprefix rp = rt_prefix(r);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "prefix", json_object_new_string(prefix_fmt(&rp, pb)));
	json_object_object_add(o, "installed", json_object_new_int(rt_ninst(r)));
	json_object *paths = json_object_new_array();
	struct path *best = rt_best(r);
	if (best)
		json_object_array_add(paths, path_json(best, rp.addr.family, true));
	for (struct path *pa = rt_paths(r); pa; pa = pa->next)
		if (pa != best)
			json_object_array_add(paths, path_json(pa, rp.addr.family, false));
	json_object_object_add(o, "paths", paths);
	return o;
}

char *bgp_state_json(struct bgp *b, size_t max_routes)
{
	json_object *j = bgp_state(b, 0);
	const char *head = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN);
	/* the last "routes": (the last key; a peer's name or error could hold the text) */
	const char *rs = NULL;
	for (const char *x = head; (x = strstr(x, "\"routes\":")); x++)
		rs = x;
	const char *br = rs ? strchr(rs, '[') : NULL;
	if (!br) { /* cannot happen: bgp_state always ends with "routes" */
		char *t = xstrdup(head);
		json_object_put(j);
		return t;
	}
	size_t len = (size_t)(br + 1 - head), cap = len + 4096;
	char *out = xmalloc(cap);
	memcpy(out, head, len);
	json_object_put(j);
	size_t shown = 0;
	for (int f = 0; f < BGP_NFAM && shown < max_routes; f++) {
		struct rt **list;
		size_t n = rt_select(b, f, max_routes - shown, &list);
		for (size_t i = 0; i < n; i++) {
			json_object *o = rt_json(list[i]);
			const char *t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
			size_t tl = strlen(t);
			if (len + tl + 4 > cap)
				out = xrealloc(out, cap = (len + tl + 4) * 2);
			if (shown++)
				out[len++] = ',';
			memcpy(out + len, t, tl);
			len += tl;
			json_object_put(o);
		}
		free(list);
	}
	memcpy(out + len, "]}", 3);
	return out;
}

json_object *bgp_state(struct bgp *b, size_t max_routes)
{
	json_object *j = json_object_new_object();
	struct in_addr ia = {htonl(b->cfg.router_id)};
	monotime_t now = monotime_now();
	json_object_object_add(j, "as", json_object_new_int64(b->cfg.as));
	json_object_object_add(j, "routerId", json_object_new_string(inet_ntoa(ia)));
	json_object_object_add(j, "restarting", json_object_new_boolean(b->gr_pending));
	json_object_object_add(j, "fibErrors", json_object_new_int64((int64_t)b->fib_errors));
	if (b->fib_error[0])
		json_object_object_add(j, "fibLastError", json_object_new_string(b->fib_error));
	json_object *peers = json_object_new_array();
	for (size_t i = 0; i < b->npeers; i++) {
		struct peer *p = b->peers[i];
		json_object *o = json_object_new_object();
		json_object_object_add(o, "name", json_object_new_string(p->label));
		json_object_object_add(o, "address", jip(&p->cfg.addr));
		json_object_object_add(o, "as", json_object_new_int64(p->cfg.as));
		json_object_object_add(o, "type", json_object_new_string(p->ibgp ? "iBGP" : "eBGP"));
		json_object_object_add(o, "state",
				       json_object_new_string(p->bad ? "Error" : fsm_name[peer_fsm(p)]));
		json_object_object_add(o, "since", json_object_new_int64((now - p->up_since) / 1000000000));
		json_object_object_add(o, "received", json_object_new_int64((int64_t)p->rcvd));
		json_object_object_add(o, "sent", json_object_new_int64((int64_t)(p->out[0].n + p->out[1].n)));
		json_object_object_add(o, "updatesIn", json_object_new_int64((int64_t)p->updates_in));
		json_object_object_add(o, "updatesOut", json_object_new_int64((int64_t)p->updates_out));
		json_object_object_add(o, "refreshIn", json_object_new_int64((int64_t)p->refresh_in));
		json_object_object_add(o, "flaps", json_object_new_int64((int64_t)p->flaps));
		if (p->est) {
			struct in_addr rid = {htonl(p->ropen.id)};
			json_object_object_add(o, "routerId", json_object_new_string(inet_ntoa(rid)));
			json_object_object_add(o, "holdTime", json_object_new_int(p->est->hold));
			json_object_object_add(o, "localAddress", jip(&p->local));
			json_object *caps = json_object_new_array();
			if (p->mpfam[0])
				json_object_array_add(caps, json_object_new_string("ipv4-unicast"));
			if (p->mpfam[1])
				json_object_array_add(caps, json_object_new_string("ipv6-unicast"));
			if (p->as4)
				json_object_array_add(caps, json_object_new_string("as4"));
			if (p->refresh)
				json_object_array_add(caps, json_object_new_string("route-refresh"));
			if (p->ropen.gr)
				json_object_array_add(caps, json_object_new_string("graceful-restart"));
			json_object_object_add(o, "capabilities", caps);
		}
		bool st = p->stale[0] || p->stale[1];
		json_object_object_add(o, "gracefulRestartStale", json_object_new_boolean(st));
		json_object_object_add(o, "lastError", json_object_new_string(p->error));
		if (p->bfd)
			json_object_object_add(o, "bfd", bfd_sess_json(p->bfd));
		json_object_array_add(peers, o);
	}
	json_object_object_add(j, "peers", peers);
	json_object *routes = json_object_new_array();
	json_object_object_add(j, "routesTotal", json_object_new_int64((int64_t)bgp_route_count(b)));
	size_t shown = 0;
	for (int f = 0; f < BGP_NFAM && shown < max_routes; f++) {
		struct rt **list;
		size_t n = rt_select(b, f, max_routes - shown, &list);
		for (size_t i = 0; i < n; i++)
			json_object_array_add(routes, rt_json(list[i]));
		shown += n;
		free(list);
	}
	json_object_object_add(j, "routes", routes);
	return j;
}
