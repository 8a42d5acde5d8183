/* nft: the nftables Service dataplane writer (layout and guarantees: see nft.h; layout after
 * kube-proxy's pkg/proxy/nftables/proxier.go, transaction format after the kernel's
 * nfnetlink batch protocol: NFNL_MSG_BATCH_BEGIN, nf_tables messages, NFNL_MSG_BATCH_END).
 *
 * State: the desired table content, kept per Service (which map elements and chains each
 * Service contributes), and what the kernel holds (dumped on start/resync, then tracked from
 * the transactions that succeeded).  Keys touched since the last successful sync are "dirty";
 * a sync compares desired with applied for the dirty keys only, so its cost is proportional
 * to what changed, not to the number of Services. */
/* glibc's netinet/ headers first, in their own block: the linux/ headers below would
 * otherwise define struct in_addr a second time */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>

#include <errno.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
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
#include "proxy/nft.h"

#define SUB "nft"

/* nftables' user-space type ids (nftables src/datatype.h), for `nft list` to print keys */
#define NFT_TYPE_INTEGER 4
#define NFT_TYPE_IPADDR 7
#define NFT_TYPE_INET_PROTOCOL 12
#define NFT_TYPE_INET_SERVICE 13
#define NFT_TYPE_BITS 6
#define SVC_KEY_TYPE                                                                               \
	((((NFT_TYPE_IPADDR << NFT_TYPE_BITS) | NFT_TYPE_INET_PROTOCOL) << NFT_TYPE_BITS) |        \
	 NFT_TYPE_INET_SERVICE)
#define SVC_KEY_LEN 12	/* ipv4 addr . proto (padded to 4) . port (padded to 4) */
#define UDATA_COMMENT 0 /* NFTNL_UDATA_CHAIN_COMMENT */
#define SIG_PREFIX "twill:"
#define ELEMS_PER_MSG 256

enum { MAP_SERVICES, MAP_NOEP };
static const char *const map_names[] = {"services", "no-endpoint-services"};

enum ck { CK_SVC, CK_EXT, CK_EP };

struct dchain {
	enum ck kind;
	uint64_t sig;
	unsigned refs;
	size_t ntargets;
	char **targets; /* SVC: endpoint chains; EXT: the svc chain */
	uint32_t ip;	/* EP: network order */
	uint16_t port;	/* EP: host order */
	uint8_t l4;
	uint32_t aff; /* SVC, EP: sessionAffinity ClientIP timeout (s); 0 = none */
};

struct delem {
	int map;
	uint8_t key[SVC_KEY_LEN];
	uint32_t verdict; /* NFT_GOTO or NF_DROP */
	char *chain;
};

struct contrib {
	size_t ne, nc;
	char **ekeys;
	char **chains;
};

struct applied_chain {
	uint64_t sig;
	bool seen; /* a rule was read (dump) */
};

struct nbuf {
	char *p;
	size_t len, cap;
};

struct nft_writer {
	struct svc_planner *sp;
	char *table;
	uint32_t mark;
	struct mnl_socket *nl;
	uint32_t portid, seq;

	struct smap dchains;  /* name -> struct dchain */
	struct smap delems;   /* ekey -> struct delem */
	struct smap contribs; /* Service key -> struct contrib */
	struct smap achains;  /* name -> struct applied_chain (dynamic chains only) */
	struct smap aelems;   /* ekey -> struct delem */
	struct smap asets;    /* affinity sets in the kernel (names) */
	struct smap dirty_c, dirty_e;
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

static void key_build(uint8_t key[SVC_KEY_LEN], uint32_t ip_be, uint8_t l4, uint16_t port)
{
	memset(key, 0, SVC_KEY_LEN);
	memcpy(key, &ip_be, 4);
	key[4] = l4;
	uint16_t p = htons(port);
	memcpy(key + 8, &p, 2);
}

static void key_str(const uint8_t key[SVC_KEY_LEN], char *buf, size_t size)
{
	uint16_t p;
	memcpy(&p, key + 8, 2);
	snprintf(buf, size, "%u.%u.%u.%u/%u/%u", key[0], key[1], key[2], key[3], key[4], ntohs(p));
}

static void dchain_free(void *v)
{
	struct dchain *c = v;
	for (size_t i = 0; i < c->ntargets; i++)
		free(c->targets[i]);
	free(c->targets);
	free(c);
}

static void delem_free(void *v)
{
	struct delem *e = v;
	if (e)
		free(e->chain);
	free(e);
}

static void contrib_free(void *v)
{
	struct contrib *c = v;
	for (size_t i = 0; i < c->ne; i++)
		free(c->ekeys[i]);
	for (size_t i = 0; i < c->nc; i++)
		free(c->chains[i]);
	free(c->ekeys);
	free(c->chains);
	free(c);
}

static uint64_t dchain_sig(const struct dchain *c, uint32_t mark)
{
	uint64_t h = fnv1a64(&c->kind, sizeof(c->kind), FNV_SEED);
	h = fnv1a64(&mark, sizeof(mark), h);
	for (size_t i = 0; i < c->ntargets; i++)
		h = fnv1a64(c->targets[i], strlen(c->targets[i]) + 1, h);
	h = fnv1a64(&c->ip, sizeof(c->ip), h);
	h = fnv1a64(&c->port, sizeof(c->port), h);
	if (c->aff) /* so chains without affinity keep the signatures they had before */
		h = fnv1a64(&c->aff, sizeof(c->aff), h);
	return fnv1a64(&c->l4, sizeof(c->l4), h);
}

static void contrib_add_chain(struct contrib *ct, struct smap *seen, const char *name)
{
	if (smap_has(seen, name))
		return;
	smap_add(seen, name);
	ct->chains = xrealloc(ct->chains, (ct->nc + 1) * sizeof(char *));
	ct->chains[ct->nc++] = xstrdup(name);
}

/* Put a chain into the desired set for one more contributor (a chain of the same name from
 * another contributor would have the same content: names include the Service). */
static void want_chain(struct nft_writer *w, struct dchain *c, const char *name)
{
	c->sig = dchain_sig(c, w->mark);
	bool created;
	void **slot = smap_slot(&w->dchains, name, &created);
	if (*slot) {
		struct dchain *old = *slot;
		c->refs = old->refs;
		dchain_free(old);
	}
	c->refs++;
	*slot = c;
	smap_add(&w->dirty_c, name);
}

static void unwant_chain(struct nft_writer *w, const char *name)
{
	struct dchain *c = smap_get(&w->dchains, name);
	if (c && --c->refs == 0)
		dchain_free(smap_del(&w->dchains, name));
	smap_add(&w->dirty_c, name);
}

static void service_apply(struct nft_writer *w, const char *key)
{
	struct contrib *old = smap_del(&w->contribs, key);
	if (old) {
		for (size_t i = 0; i < old->ne; i++) {
			delem_free(smap_del(&w->delems, old->ekeys[i]));
			smap_add(&w->dirty_e, old->ekeys[i]);
		}
		for (size_t i = 0; i < old->nc; i++)
			unwant_chain(w, old->chains[i]);
		contrib_free(old);
	}
	const struct svc_entries *es = svc_planner_get(w->sp, key);
	if (!es)
		return;
	struct contrib *ct = xcalloc(1, sizeof(*ct));
	struct smap seen = SMAP_INIT;
	for (size_t i = 0; i < es->n; i++) {
		const struct svc_entry *e = &es->v[i];
		if (e->vip.family != AF_INET)
			continue; /* the ip table is IPv4 only (see report: ip6 table missing) */
		struct delem *el = xcalloc(1, sizeof(*el));
		uint8_t l4 = l4_of(e->proto);
		key_build(el->key, e->vip.v4.s_addr, l4, e->port);
		if (e->verdict == SVC_FORWARD) {
			char *svc = xasprintf("svc-%s", e->group);
			if (!smap_has(&seen, svc)) {
				struct dchain *c = xcalloc(1, sizeof(*c));
				c->kind = CK_SVC;
				size_t nb = 0;
				c->targets = xcalloc(e->nbackends + 1, sizeof(char *));
				for (size_t b = 0; b < e->nbackends; b++) {
					const struct svc_backend *be = &e->backends[b];
					if (be->ip.family != AF_INET)
						continue;
					char ip[IP_STRLEN];
					char *ep = xasprintf("ep-%s/%s:%u", e->group,
							     ip_fmt(&be->ip, ip), be->port);
					c->targets[nb++] = xstrdup(ep);
					if (!smap_has(&seen, ep)) {
						struct dchain *pc = xcalloc(1, sizeof(*pc));
						pc->kind = CK_EP;
						pc->ip = be->ip.v4.s_addr;
						pc->port = be->port;
						pc->l4 = l4;
						pc->aff = e->affinity_timeout;
						want_chain(w, pc, ep);
						contrib_add_chain(ct, &seen, ep);
					}
					free(ep);
				}
				c->ntargets = nb;
				c->aff = e->affinity_timeout;
				want_chain(w, c, svc);
				contrib_add_chain(ct, &seen, svc);
			}
			if (e->masquerade) {
				char *ext = xasprintf("ext-%s", e->group);
				if (!smap_has(&seen, ext)) {
					struct dchain *c = xcalloc(1, sizeof(*c));
					c->kind = CK_EXT;
					c->targets = xcalloc(1, sizeof(char *));
					c->targets[0] = xstrdup(svc);
					c->ntargets = 1;
					want_chain(w, c, ext);
					contrib_add_chain(ct, &seen, ext);
				}
				el->chain = ext;
				free(svc);
			} else {
				el->chain = svc;
			}
			el->map = MAP_SERVICES;
			el->verdict = (uint32_t)NFT_GOTO;
		} else {
			el->map = MAP_NOEP;
			if (e->verdict == SVC_REJECT) {
				el->verdict = (uint32_t)NFT_GOTO;
				el->chain = xstrdup("reject-chain");
			} else {
				el->verdict = NF_DROP;
			}
		}
		char ks[64];
		key_str(el->key, ks, sizeof(ks));
		bool created;
		void **slot = smap_slot(&w->delems, ks, &created);
		if (!created) { /* the planner keeps keys unique; be safe anyway */
			delem_free(el);
			continue;
		}
		*slot = el;
		smap_add(&w->dirty_e, ks);
		ct->ekeys = xrealloc(ct->ekeys, (ct->ne + 1) * sizeof(char *));
		ct->ekeys[ct->ne++] = xstrdup(ks);
	}
	smap_clear(&seen, NULL);
	free(seen.b);
	bool created;
	*smap_slot(&w->contribs, key, &created) = ct;
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

static int chain_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct nft_writer *w = arg;
	struct nftnl_chain *c = nftnl_chain_alloc();
	if (!c || nftnl_chain_nlmsg_parse(nlh, c) < 0) {
		nftnl_chain_free(c);
		return MNL_CB_OK;
	}
	const char *table = nftnl_chain_get_str(c, NFTNL_CHAIN_TABLE);
	const char *name = nftnl_chain_get_str(c, NFTNL_CHAIN_NAME);
	if (table && name && !strcmp(table, w->table) &&
	    (str_has_prefix(name, "svc-") || str_has_prefix(name, "ext-") ||
	     str_has_prefix(name, "ep-"))) {
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
	struct nft_writer *w = arg;
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
	struct nft_writer *w = arg;
	struct nftnl_set *s = nftnl_set_alloc();
	if (s && nftnl_set_nlmsg_parse(nlh, s) >= 0) {
		const char *table = nftnl_set_get_str(s, NFTNL_SET_TABLE);
		const char *name = nftnl_set_get_str(s, NFTNL_SET_NAME);
		if (table && name && !strcmp(table, w->table) && str_has_prefix(name, "aff-"))
			smap_add(&w->asets, name);
	}
	nftnl_set_free(s);
	return MNL_CB_OK;
}

struct elem_ctx {
	struct nft_writer *w;
	int map;
};

static int elem_iter(struct nftnl_set_elem *e, void *arg)
{
	struct elem_ctx *ec = arg;
	uint32_t len = 0;
	const void *key = nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &len);
	if (!key || len != SVC_KEY_LEN)
		return 0;
	struct delem *el = xcalloc(1, sizeof(*el));
	el->map = ec->map;
	memcpy(el->key, key, SVC_KEY_LEN);
	el->verdict = nftnl_set_elem_get_u32(e, NFTNL_SET_ELEM_VERDICT);
	const char *chain = nftnl_set_elem_get_str(e, NFTNL_SET_ELEM_CHAIN);
	el->chain = chain ? xstrdup(chain) : NULL;
	char ks[64];
	key_str(el->key, ks, sizeof(ks));
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

static void mark_all_dirty(struct nft_writer *w)
{
	const struct smap *maps[] = {&w->achains, &w->dchains};
	for (size_t i = 0; i < 2; i++)
		smap_foreach(maps[i], it) smap_add(&w->dirty_c, it->key);
	const struct smap *emaps[] = {&w->aelems, &w->delems};
	for (size_t i = 0; i < 2; i++)
		smap_foreach(emaps[i], it) smap_add(&w->dirty_e, it->key);
	/* an affinity set belongs to the endpoint chain of the same suffix */
	smap_foreach(&w->asets, it)
	{
		char *ep = xasprintf("ep-%s", it->key + 4);
		smap_add(&w->dirty_c, ep);
		free(ep);
	}
}

static int dump_kernel(struct nft_writer *w)
{
	smap_clear(&w->achains, free);
	smap_clear(&w->aelems, delem_free);
	smap_clear(&w->asets, NULL);
	char buf[8192];
	struct nlmsghdr *nlh =
	    nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETCHAIN, NFPROTO_IPV4, NLM_F_DUMP, ++w->seq);
	int r = dump(w, nlh, chain_cb, w);
	if (r == 0) {
		struct nftnl_rule *rl = nftnl_rule_alloc();
		nftnl_rule_set_str(rl, NFTNL_RULE_TABLE, w->table);
		nlh =
		    nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETRULE, NFPROTO_IPV4, NLM_F_DUMP, ++w->seq);
		nftnl_rule_nlmsg_build_payload(nlh, rl);
		nftnl_rule_free(rl);
		r = dump(w, nlh, rule_cb, w);
	}
	if (r == 0) {
		struct nftnl_set *s = nftnl_set_alloc();
		nftnl_set_set_str(s, NFTNL_SET_TABLE, w->table);
		nlh =
		    nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETSET, NFPROTO_IPV4, NLM_F_DUMP, ++w->seq);
		nftnl_set_nlmsg_build_payload(nlh, s);
		nftnl_set_free(s);
		r = dump(w, nlh, set_cb, w);
	}
	for (int m = 0; m < 2 && r == 0; m++) {
		struct nftnl_set *s = nftnl_set_alloc();
		nftnl_set_set_str(s, NFTNL_SET_TABLE, w->table);
		nftnl_set_set_str(s, NFTNL_SET_NAME, map_names[m]);
		nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETSETELEM, NFPROTO_IPV4, NLM_F_DUMP,
					    ++w->seq);
		nftnl_set_elems_nlmsg_build_payload(nlh, s);
		nftnl_set_free(s);
		struct elem_ctx ec = {w, m};
		r = dump(w, nlh, elem_cb, &ec);
	}
	return r;
}

/* ---- transaction building ---- */

struct batch {
	struct nbuf b;
	struct nft_writer *w;
	unsigned msgs;
	uint32_t set_id;
	const char *comment; /* put on every rule added (the chain's content signature) */
};

static struct nlmsghdr *msg_hdr(struct batch *bt, uint16_t type, uint16_t flags, size_t room)
{
	char *p = nb_reserve(&bt->b, room + 1024);
	bt->msgs++;
	return nftnl_nlmsg_build_hdr(p, type, NFPROTO_IPV4, flags, ++bt->w->seq);
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

static void add_map(struct batch *bt, const char *name, uint32_t key_type, uint32_t key_len)
{
	struct nftnl_set *s = nftnl_set_alloc();
	nftnl_set_set_str(s, NFTNL_SET_TABLE, bt->w->table);
	nftnl_set_set_str(s, NFTNL_SET_NAME, name);
	nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_IPV4);
	nftnl_set_set_u32(s, NFTNL_SET_FLAGS, NFT_SET_MAP);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, key_type);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, key_len);
	nftnl_set_set_u32(s, NFTNL_SET_DATA_TYPE, NFT_DATA_VERDICT);
	nftnl_set_set_u32(s, NFTNL_SET_ID, ++bt->set_id);
	struct nlmsghdr *nlh = msg_hdr(bt, NFT_MSG_NEWSET, NLM_F_CREATE, 512);
	nftnl_set_nlmsg_build_payload(nlh, s);
	nb_commit(&bt->b, nlh);
	nftnl_set_free(s);
}

/* sessionAffinity ClientIP, as kube-proxy's nftables mode does it: each endpoint chain
 * records the client in its own set (update @aff-X { ip saddr timeout T }) and the service
 * chain sends a client found in one of them back to that endpoint before picking at random.
 * The timeout is on the update, not the set, so a changed timeoutSeconds rewrites chains only
 * and the clients already recorded keep their endpoint. */
static bool is_ep(const char *chain)
{
	return str_has_prefix(chain, "ep-");
}

static char *aff_set_name(const char *ep)
{
	return xasprintf("aff-%s", ep + 3);
}

static void aff_set_op(struct batch *bt, uint16_t type, const char *name)
{
	struct nftnl_set *s = nftnl_set_alloc();
	nftnl_set_set_str(s, NFTNL_SET_TABLE, bt->w->table);
	nftnl_set_set_str(s, NFTNL_SET_NAME, name);
	if (type == NFT_MSG_NEWSET) {
		nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_IPV4);
		nftnl_set_set_u32(s, NFTNL_SET_FLAGS, NFT_SET_TIMEOUT | NFT_SET_EVAL);
		nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, NFT_TYPE_IPADDR);
		nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, 4);
		nftnl_set_set_u32(s, NFTNL_SET_ID, ++bt->set_id);
	}
	struct nlmsghdr *nlh = msg_hdr(bt, type, type == NFT_MSG_NEWSET ? NLM_F_CREATE : 0, 512);
	nftnl_set_nlmsg_build_payload(nlh, s);
	nb_commit(&bt->b, nlh);
	nftnl_set_free(s);
}

static struct nftnl_rule *rule_new(struct batch *bt, const char *chain)
{
	struct nftnl_rule *r = nftnl_rule_alloc();
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, bt->w->table);
	nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
	nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, NFPROTO_IPV4);
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

static void x_payload(struct nftnl_rule *r, uint32_t base, uint32_t off, uint32_t len,
		      uint32_t dreg)
{
	struct nftnl_expr *e = nftnl_expr_alloc("payload");
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, off);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, dreg);
	nftnl_rule_add_expr(r, e);
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

static void x_cmp(struct nftnl_rule *r, uint32_t op, const void *data, uint32_t len)
{
	struct nftnl_expr *e = nftnl_expr_alloc("cmp");
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
	nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
	nftnl_rule_add_expr(r, e);
}

static void x_bitwise(struct nftnl_rule *r, uint32_t mask, uint32_t xor)
{
	struct nftnl_expr *e = nftnl_expr_alloc("bitwise");
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, 4);
	nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, &mask, 4);
	nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, &xor, 4);
	nftnl_rule_add_expr(r, e);
}

static void x_verdict(struct nftnl_rule *r, int verdict, const char *chain)
{
	struct nftnl_expr *e = nftnl_expr_alloc("immediate");
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, (uint32_t)verdict);
	if (chain)
		nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, chain);
	nftnl_rule_add_expr(r, e);
}

static void x_imm(struct nftnl_rule *r, uint32_t dreg, const void *data, uint32_t len)
{
	struct nftnl_expr *e = nftnl_expr_alloc("immediate");
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, dreg);
	nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, data, len);
	nftnl_rule_add_expr(r, e);
}

static void x_lookup(struct nftnl_rule *r, const char *set, uint32_t set_id, uint32_t sreg,
		     bool verdict)
{
	struct nftnl_expr *e = nftnl_expr_alloc("lookup");
	nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, sreg);
	if (verdict)
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, NFT_REG_VERDICT);
	nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
	if (set_id)
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, set_id);
	nftnl_rule_add_expr(r, e);
}

/* ip daddr . meta l4proto . th dport vmap @map */
static void rule_service_lookup(struct batch *bt, const char *chain, const char *map)
{
	struct nftnl_rule *r = rule_new(bt, chain);
	x_payload(r, NFT_PAYLOAD_NETWORK_HEADER, 16, 4, NFT_REG32_00);
	x_meta(r, NFT_META_L4PROTO, NFT_REG32_01);
	x_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, NFT_REG32_02);
	x_lookup(r, map, 0, NFT_REG32_00, true);
	rule_commit(bt, r);
}

static void base_objects(struct batch *bt)
{
	struct nft_writer *w = bt->w;
	add_table(bt);
	add_map(bt, map_names[MAP_SERVICES], SVC_KEY_TYPE, SVC_KEY_LEN);
	add_map(bt, map_names[MAP_NOEP], SVC_KEY_TYPE, SVC_KEY_LEN);
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
	struct nftnl_rule *r;
	for (int i = 0; i < 2; i++) {
		r = rule_new(bt, i ? "nat-output" : "nat-prerouting");
		x_verdict(r, NFT_JUMP, "services");
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
	x_bitwise(r, w->mark, 0);
	x_cmp(r, NFT_CMP_NEQ, &zero, 4);
	nftnl_rule_add_expr(r, nftnl_expr_alloc("masq"));
	rule_commit(bt, r);
	/* meta mark set meta mark | M */
	r = rule_new(bt, "mark-for-masquerade");
	x_meta(r, NFT_META_MARK, NFT_REG_1);
	x_bitwise(r, ~w->mark, w->mark);
	x_meta_set(r, NFT_META_MARK, NFT_REG_1);
	rule_commit(bt, r);
	/* TCP: reset; others: ICMP port unreachable */
	uint8_t tcp = IPPROTO_TCP;
	r = rule_new(bt, "reject-chain");
	x_meta(r, NFT_META_L4PROTO, NFT_REG_1);
	x_cmp(r, NFT_CMP_EQ, &tcp, 1);
	struct nftnl_expr *e = nftnl_expr_alloc("reject");
	nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, NFT_REJECT_TCP_RST);
	nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE, 0);
	nftnl_rule_add_expr(r, e);
	rule_commit(bt, r);
	r = rule_new(bt, "reject-chain");
	e = nftnl_expr_alloc("reject");
	nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, NFT_REJECT_ICMP_UNREACH);
	nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE, ICMP_PORT_UNREACH);
	nftnl_rule_add_expr(r, e);
	rule_commit(bt, r);
}

/* numgen random mod N vmap { i : goto targets[i] } through an anonymous constant map. */
static void rule_pick_backend(struct batch *bt, const char *chain, const struct dchain *c)
{
	uint32_t id = ++bt->set_id;
	struct nftnl_set *s = nftnl_set_alloc();
	nftnl_set_set_str(s, NFTNL_SET_TABLE, bt->w->table);
	nftnl_set_set_str(s, NFTNL_SET_NAME, "__map%d");
	nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_IPV4);
	nftnl_set_set_u32(s, NFTNL_SET_FLAGS, NFT_SET_ANONYMOUS | NFT_SET_CONSTANT | NFT_SET_MAP);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, NFT_TYPE_INTEGER);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, 4);
	nftnl_set_set_u32(s, NFTNL_SET_DATA_TYPE, NFT_DATA_VERDICT);
	nftnl_set_set_u32(s, NFTNL_SET_ID, id);
	/* numgen yields a host-order integer; tell `nft list` so it prints 0, 1, ... */
	struct nftnl_udata_buf *ud = nftnl_udata_buf_alloc(64);
	nftnl_udata_put_u32(ud, NFTNL_UDATA_SET_KEYBYTEORDER, 1 /* BYTEORDER_HOST_ENDIAN */);
	nftnl_set_set_data(s, NFTNL_SET_USERDATA, nftnl_udata_buf_data(ud),
			   nftnl_udata_buf_len(ud));
	struct nlmsghdr *nlh = msg_hdr(bt, NFT_MSG_NEWSET, NLM_F_CREATE, 512);
	nftnl_set_nlmsg_build_payload(nlh, s);
	nb_commit(&bt->b, nlh);
	nftnl_set_free(s);
	nftnl_udata_buf_free(ud);

	for (size_t off = 0; off < c->ntargets; off += ELEMS_PER_MSG) {
		s = nftnl_set_alloc();
		nftnl_set_set_str(s, NFTNL_SET_TABLE, bt->w->table);
		nftnl_set_set_str(s, NFTNL_SET_NAME, "__map%d");
		nftnl_set_set_u32(s, NFTNL_SET_ID, id);
		size_t n = c->ntargets - off < ELEMS_PER_MSG ? c->ntargets - off : ELEMS_PER_MSG;
		for (size_t i = off; i < off + n; i++) {
			struct nftnl_set_elem *el = nftnl_set_elem_alloc();
			uint32_t k = (uint32_t)i;
			nftnl_set_elem_set(el, NFTNL_SET_ELEM_KEY, &k, 4);
			nftnl_set_elem_set_u32(el, NFTNL_SET_ELEM_VERDICT, (uint32_t)NFT_GOTO);
			nftnl_set_elem_set_str(el, NFTNL_SET_ELEM_CHAIN, c->targets[i]);
			nftnl_set_elem_add(s, el);
		}
		nlh = msg_hdr(bt, NFT_MSG_NEWSETELEM, NLM_F_CREATE, n * 320);
		nftnl_set_elems_nlmsg_build_payload(nlh, s);
		nb_commit(&bt->b, nlh);
		nftnl_set_free(s);
	}
	struct nftnl_rule *r = rule_new(bt, chain);
	struct nftnl_expr *e = nftnl_expr_alloc("numgen");
	nftnl_expr_set_u32(e, NFTNL_EXPR_NG_DREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_NG_MODULUS, (uint32_t)c->ntargets);
	nftnl_expr_set_u32(e, NFTNL_EXPR_NG_TYPE, NFT_NG_RANDOM);
	nftnl_expr_set_u32(e, NFTNL_EXPR_NG_OFFSET, 0);
	nftnl_rule_add_expr(r, e);
	x_lookup(r, "__map%d", id, NFT_REG_1, true);
	rule_commit(bt, r);
}

static void chain_rules(struct batch *bt, const char *name, const struct dchain *c)
{
	struct nftnl_rule *r;
	switch (c->kind) {
	case CK_SVC:
		/* ip saddr @aff-<ep> goto <ep>, for each endpoint, before the random pick */
		for (size_t i = 0; c->aff && i < c->ntargets; i++) {
			char *set = aff_set_name(c->targets[i]);
			r = rule_new(bt, name);
			x_payload(r, NFT_PAYLOAD_NETWORK_HEADER, 12, 4, NFT_REG_1);
			x_lookup(r, set, 0, NFT_REG_1, false);
			x_verdict(r, NFT_GOTO, c->targets[i]);
			rule_commit(bt, r);
			free(set);
		}
		if (c->ntargets)
			rule_pick_backend(bt, name, c);
		break;
	case CK_EXT:
		r = rule_new(bt, name);
		x_verdict(r, NFT_JUMP, "mark-for-masquerade");
		rule_commit(bt, r);
		r = rule_new(bt, name);
		x_verdict(r, NFT_GOTO, c->targets[0]);
		rule_commit(bt, r);
		break;
	case CK_EP: {
		/* hairpin: a backend reaching itself through the Service must be masqueraded,
		 * or its reply would bypass the DNAT */
		r = rule_new(bt, name);
		x_payload(r, NFT_PAYLOAD_NETWORK_HEADER, 12, 4, NFT_REG_1);
		x_cmp(r, NFT_CMP_EQ, &c->ip, 4);
		x_verdict(r, NFT_JUMP, "mark-for-masquerade");
		rule_commit(bt, r);
		if (c->aff) { /* update @aff-<ep> { ip saddr timeout T } */
			char *set = aff_set_name(name);
			r = rule_new(bt, name);
			x_payload(r, NFT_PAYLOAD_NETWORK_HEADER, 12, 4, NFT_REG_1);
			struct nftnl_expr *d = nftnl_expr_alloc("dynset");
			nftnl_expr_set_u32(d, NFTNL_EXPR_DYNSET_SREG_KEY, NFT_REG_1);
			nftnl_expr_set_u32(d, NFTNL_EXPR_DYNSET_OP, NFT_DYNSET_OP_UPDATE);
			nftnl_expr_set_u64(d, NFTNL_EXPR_DYNSET_TIMEOUT, (uint64_t)c->aff * 1000);
			nftnl_expr_set_str(d, NFTNL_EXPR_DYNSET_SET_NAME, set);
			nftnl_rule_add_expr(r, d);
			rule_commit(bt, r);
			free(set);
		}
		r = rule_new(bt, name);
		x_meta(r, NFT_META_L4PROTO, NFT_REG_1);
		x_cmp(r, NFT_CMP_EQ, &c->l4, 1);
		uint16_t port = htons(c->port);
		x_imm(r, NFT_REG_1, &c->ip, 4);
		x_imm(r, NFT_REG_2, &port, 2);
		struct nftnl_expr *e = nftnl_expr_alloc("nat");
		nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, NFT_NAT_DNAT);
		nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY, NFPROTO_IPV4);
		nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, NFT_REG_1);
		nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_PROTO_MIN, NFT_REG_2);
		nftnl_rule_add_expr(r, e);
		rule_commit(bt, r);
		break;
	}
	}
}

static void elem_op(struct batch *bt, uint16_t type, const struct delem *d)
{
	struct nftnl_set *s = nftnl_set_alloc();
	nftnl_set_set_str(s, NFTNL_SET_TABLE, bt->w->table);
	nftnl_set_set_str(s, NFTNL_SET_NAME, map_names[d->map]);
	struct nftnl_set_elem *el = nftnl_set_elem_alloc();
	nftnl_set_elem_set(el, NFTNL_SET_ELEM_KEY, d->key, SVC_KEY_LEN);
	if (type == NFT_MSG_NEWSETELEM) {
		nftnl_set_elem_set_u32(el, NFTNL_SET_ELEM_VERDICT, d->verdict);
		if (d->chain)
			nftnl_set_elem_set_str(el, NFTNL_SET_ELEM_CHAIN, d->chain);
	}
	nftnl_set_elem_add(s, el);
	struct nlmsghdr *nlh =
	    msg_hdr(bt, type, type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0, 1024);
	nftnl_set_elems_nlmsg_build_payload(nlh, s);
	nb_commit(&bt->b, nlh);
	nftnl_set_free(s);
}

static bool delem_same(const struct delem *a, const struct delem *b)
{
	return a->map == b->map && a->verdict == b->verdict &&
	       !memcmp(a->key, b->key, SVC_KEY_LEN) &&
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

static void update_applied(struct nft_writer *w)
{
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
		if (is_ep(it->key)) {
			char *set = aff_set_name(it->key);
			if (d && d->aff)
				smap_add(&w->asets, set);
			else
				smap_del(&w->asets, set);
			free(set);
		}
	}
	smap_foreach(&w->dirty_e, it)
	{
		const struct delem *d = smap_get(&w->delems, it->key);
		delem_free(smap_del(&w->aelems, it->key));
		if (d) {
			struct delem *c = xcalloc(1, sizeof(*c));
			*c = *d;
			c->chain = xstrdup(d->chain);
			bool created;
			*smap_slot(&w->aelems, it->key, &created) = c;
		}
	}
	smap_clear(&w->dirty_c, NULL);
	smap_clear(&w->dirty_e, NULL);
}

/* ---- UDP conntrack cleanup ---- */

struct gone {
	size_t n;
	struct ct_match *v; /* rsrc/rsport filled */
};

static void gone_free(void *p)
{
	struct gone *g = p;
	free(g->v);
	free(g);
}

/* The UDP backends whose endpoint chain this sync deletes, crossed with the map elements
 * (VIP, node address or external address and port) that led to their group: the conntrack
 * entries to delete.  Works from the applied state, so a restarted writer that finds a
 * backend gone from the kernel's table cleans up too. */
static struct ct_match *stale_udp(struct nft_writer *w, const char **cn, size_t nc, size_t *n)
{
	struct smap groups = SMAP_INIT; /* "ns/name/udp/53[/local]" -> struct gone */
	for (size_t i = 0; i < nc; i++) {
		const char *name = cn[i];
		if (!is_ep(name) || smap_get(&w->dchains, name) || !smap_get(&w->achains, name))
			continue;
		const char *slash = strrchr(name, '/');
		const char *colon = slash ? strrchr(slash, ':') : NULL;
		if (!colon)
			continue;
		char *group = xasprintf("%.*s", (int)(slash - (name + 3)), name + 3);
		char *ip = xasprintf("%.*s", (int)(colon - slash - 1), slash + 1);
		/* the group's third field is the protocol */
		const char *p = strchr(group, '/');
		p = p ? strchr(p + 1, '/') : NULL;
		struct in_addr a;
		if (p && str_has_prefix(p + 1, "udp/") && inet_pton(AF_INET, ip, &a) == 1) {
			bool created;
			void **slot = smap_slot(&groups, group, &created);
			if (!*slot)
				*slot = xcalloc(1, sizeof(struct gone));
			struct gone *g = *slot;
			g->v = xrealloc(g->v, (g->n + 1) * sizeof(*g->v));
			g->v[g->n++] =
			    (struct ct_match){.l4 = IPPROTO_UDP,
					      .rsrc = a.s_addr,
					      .rsport = (uint16_t)strtoul(colon + 1, NULL, 10)};
		}
		free(ip);
		free(group);
	}
	struct ct_match *out = NULL;
	*n = 0;
	if (groups.n)
		smap_foreach(&w->aelems, it)
		{
			const struct delem *el = it->val;
			if (!el->chain || el->key[4] != IPPROTO_UDP ||
			    !(str_has_prefix(el->chain, "svc-") ||
			      str_has_prefix(el->chain, "ext-")))
				continue;
			const struct gone *g = smap_get(&groups, el->chain + 4);
			for (size_t b = 0; g && b < g->n; b++) {
				out = xrealloc(out, (*n + 1) * sizeof(*out));
				struct ct_match m = g->v[b];
				uint16_t port;
				memcpy(&m.dst, el->key, 4);
				memcpy(&port, el->key + 8, 2);
				m.dport = ntohs(port);
				out[(*n)++] = m;
			}
		}
	smap_clear(&groups, gone_free);
	free(groups.b);
	return out;
}

/* ---- public ---- */

struct nft_writer *nft_writer_new(struct svc_planner *sp, const struct nft_cfg *cfg)
{
	struct nft_writer *w = xcalloc(1, sizeof(*w));
	w->sp = sp;
	w->table = xstrdup(cfg && cfg->table ? cfg->table : NFT_TWILL_TABLE);
	w->mark = cfg && cfg->masq_mark ? cfg->masq_mark : NFT_TWILL_MASQ_MARK;
	w->need_dump = true;
	return w;
}

void nft_writer_free(struct nft_writer *w)
{
	if (!w)
		return;
	smap_clear(&w->dchains, dchain_free);
	smap_clear(&w->delems, delem_free);
	smap_clear(&w->contribs, contrib_free);
	smap_clear(&w->achains, free);
	smap_clear(&w->aelems, delem_free);
	smap_clear(&w->asets, NULL);
	smap_clear(&w->dirty_c, NULL);
	smap_clear(&w->dirty_e, NULL);
	free(w->ct_pending);
	struct smap *all[] = {&w->dchains, &w->delems, &w->contribs, &w->achains,
			      &w->aelems,  &w->asets,  &w->dirty_c,  &w->dirty_e};
	for (size_t i = 0; i < ARRAY_SIZE(all); i++)
		free(all[i]->b);
	if (w->nl)
		mnl_socket_close(w->nl);
	free(w->table);
	free(w);
}

bool nft_writer_dirty(const struct nft_writer *w)
{
	return w->need_dump || w->dirty_c.n || w->dirty_e.n || w->nct_pending ||
	       svc_planner_dirty(w->sp);
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

int nft_writer_sync(struct nft_writer *w)
{
	memset(&w->stats, 0, sizeof(w->stats));
	int r = open_sock(w);
	if (r < 0) {
		snprintf(w->err, sizeof(w->err), "netlink socket: %s", strerror(-r));
		return r;
	}
	char **keys = NULL;
	size_t n = svc_planner_update(w->sp, &keys);
	for (size_t i = 0; i < n; i++)
		service_apply(w, keys[i]);
	svc_planner_keys_free(keys, n);
	w->stats.services = (unsigned)n;

	bool full = w->need_dump;
	if (full) {
		r = dump_kernel(w);
		if (r < 0) {
			snprintf(w->err, sizeof(w->err), "dump table %s: %s", w->table,
				 strerror(-r));
			return r;
		}
		mark_all_dirty(w);
	}
	w->stats.full = full;

	struct batch bt = {.w = w};
	nftnl_batch_begin(nb_reserve(&bt.b, 256), ++w->seq);
	bt.b.len += MNL_ALIGN(((struct nlmsghdr *)bt.b.p)->nlmsg_len);
	if (full)
		base_objects(&bt);

	size_t nc;
	const char **cn = smap_keys(&w->dirty_c, &nc);
	/* 1. chains to create or refill: all NEWCHAINs first, so rules can name any of them */
	for (size_t i = 0; i < nc; i++) {
		const struct dchain *d = smap_get(&w->dchains, cn[i]);
		const struct applied_chain *a = smap_get(&w->achains, cn[i]);
		if (d && !a)
			add_chain(&bt, cn[i], NULL, 0, 0);
		if (d && d->aff && is_ep(cn[i])) {
			char *set = aff_set_name(cn[i]);
			if (!smap_has(&w->asets, set))
				aff_set_op(&bt, NFT_MSG_NEWSET, set);
			free(set);
		}
	}
	for (size_t i = 0; i < nc; i++) {
		const struct dchain *d = smap_get(&w->dchains, cn[i]);
		const struct applied_chain *a = smap_get(&w->achains, cn[i]);
		if (!d || (a && a->sig == d->sig))
			continue;
		char sig[64];
		snprintf(sig, sizeof(sig), SIG_PREFIX "%016llx", (unsigned long long)d->sig);
		if (a)
			flush_chain(&bt, cn[i]);
		bt.comment = sig;
		chain_rules(&bt, cn[i], d);
		bt.comment = NULL;
		w->stats.chains_written++;
	}
	/* 2. map elements: deletions, then additions */
	size_t ne;
	const char **en = smap_keys(&w->dirty_e, &ne);
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < ne; i++) {
			const struct delem *d = smap_get(&w->delems, en[i]);
			const struct delem *a = smap_get(&w->aelems, en[i]);
			if (a && d && delem_same(a, d))
				continue;
			if (pass == 0 && a) {
				elem_op(&bt, NFT_MSG_DELSETELEM, a);
				w->stats.elems_deleted++;
			} else if (pass == 1 && d) {
				elem_op(&bt, NFT_MSG_NEWSETELEM, d);
				w->stats.elems_added++;
			}
		}
	free(en);
	/* 3. chains no longer wanted: empty them all, then delete them (a service chain's
	 * rule references endpoint chains) */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < nc; i++)
			if (!smap_get(&w->dchains, cn[i]) && smap_get(&w->achains, cn[i])) {
				if (pass == 0) {
					flush_chain(&bt, cn[i]);
				} else {
					chain_op(&bt, NFT_MSG_DELCHAIN, cn[i]);
					w->stats.chains_deleted++;
				}
			}
	/* 4. affinity sets no longer referenced (their chains were refilled or deleted above) */
	for (size_t i = 0; i < nc; i++) {
		const struct dchain *d = smap_get(&w->dchains, cn[i]);
		if (!is_ep(cn[i]) || (d && d->aff))
			continue;
		char *set = aff_set_name(cn[i]);
		if (smap_has(&w->asets, set))
			aff_set_op(&bt, NFT_MSG_DELSET, set);
		free(set);
	}
	size_t nstale = 0;
	struct ct_match *stale = stale_udp(w, cn, nc, &nstale);
	free(cn);

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
		free(stale);
		return r;
	}
	w->err[0] = '\0';
	w->need_dump = false;
	update_applied(w);
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
	if (w->stats.messages)
		log_debug(SUB,
			  "synced%s: %u messages, +%u/-%u elements, %u chains written, %u deleted",
			  full ? " (full)" : "", w->stats.messages, w->stats.elems_added,
			  w->stats.elems_deleted, w->stats.chains_written, w->stats.chains_deleted);
	return 0;
}

int nft_table_delete(const char *table)
{
	struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
	if (!nl)
		return -errno;
	int r = 0;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		r = -errno;
		goto out;
	}
	char buf[8192];
	uint32_t seq = (uint32_t)time(NULL);
	size_t len = 0;
	struct nlmsghdr *nlh = nftnl_batch_begin(buf, seq++);
	len += MNL_ALIGN(nlh->nlmsg_len);
	struct nftnl_table *t = nftnl_table_alloc();
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, table ? table : NFT_TWILL_TABLE);
	nlh = nftnl_nlmsg_build_hdr(buf + len, NFT_MSG_DELTABLE, NFPROTO_IPV4, NLM_F_ACK, seq++);
	nftnl_table_nlmsg_build_payload(nlh, t);
	nftnl_table_free(t);
	uint32_t del_seq = nlh->nlmsg_seq;
	len += MNL_ALIGN(nlh->nlmsg_len);
	nlh = nftnl_batch_end(buf + len, seq++);
	len += MNL_ALIGN(nlh->nlmsg_len);
	if (mnl_socket_sendto(nl, buf, len) < 0) {
		r = -errno;
		goto out;
	}
	ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
	if (n < 0) {
		r = -errno;
		goto out;
	}
	if (mnl_cb_run(buf, (size_t)n, del_seq, mnl_socket_get_portid(nl), NULL, NULL) < 0)
		r = errno == ENOENT ? 0 : -errno;
out:
	mnl_socket_close(nl);
	return r;
}
