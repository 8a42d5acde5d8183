/* policy_nft: the NetworkPolicy dataplane writer, table `inet twill-policy` (one table for
 * IPv4 and IPv6, owned by this writer alone; the Service table `ip twill` is the proxy's):
 *
 *   chain forward  (filter, hook forward, priority 0, policy accept)
 *       ct state established,related accept           replies of allowed connections
 *       [while any NetworkPolicy exists, fail closed for pods not programmed yet:]
 *       iifname "tw*" iifname != "twill.*" ip saddr != @known4 counter drop  (and ip6)
 *       oifname "tw*" oifname != "twill.*" ip daddr != @known4 counter drop
 *       (pod veths are "tw" + 12 hex; twill.<VNI> is the VXLAN device)
 *       ip saddr vmap @eg4  /  ip6 saddr vmap @eg6    jump eg-<ns>/<pod>
 *       ip daddr vmap @in4  /  ip6 daddr vmap @in6    jump in-<ns>/<pod>
 *   chain in-<ns>/<pod>, eg-<ns>/<pod>   one rule per allowed (peer, port): ... return;
 *       last: counter drop (its comment names the policies isolating the pod)
 *   set p4-<hash> / p6-<hash>   addresses of the pods a peer selector selects
 *   set b4-<hash> / b6-<hash>   flags interval: an ipBlock (cidr minus except)
 *   set known4 / known6          the node's pods this writer has programmed
 *   map in4 in6 eg4 eg6          pod address : verdict
 *
 * The forward hook runs after the Service DNAT (prerouting), so policy sees the backend
 * pod, as Kubernetes requires; the node's own traffic to its pods leaves through output
 * and is never filtered here.  Every sync is one transaction holding only the
 * difference between the plan and what the kernel holds (dumped at start and on resync,
 * then tracked); each chain's rules carry the chain's content signature in their comment,
 * so a restarted agent rewrites nothing that is already right, and the table is never
 * flushed: while the agent is down, isolated pods stay isolated. */
#include <arpa/inet.h>
#include <errno.h>
#include <libnftnl/chain.h>
#include <libnftnl/object.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/consts.h"
#include "lib/log.h"
#include "lib/util.h"
#include "nft/nftb.h"
#include "policy/policy.h"

#define SUB "policy"
#define TYPE_IPV4 7 /* nftables' ipv4_addr / ipv6_addr type ids, for `nft list` */
#define TYPE_IPV6 8
#define ELEMS_PER_MSG 512
#define CT_EST_REL 6u /* NF_CT_STATE_BIT(ESTABLISHED) | NF_CT_STATE_BIT(RELATED) */
#define FORWARD "forward"

/* a set or map as the kernel holds it (or should) */
struct xset {
	int family;
	bool interval, map;
	struct smap el; /* address text -> chain name (maps) or "" */
	const struct pol_set *src; /* desired interval sets: their ranges */
};

struct pol_writer {
	char *table;
	struct nftb_conn c;
	bool need_dump;
	struct smap achains; /* name -> uint64_t signature (0: unknown) */
	struct smap asets;   /* name -> struct xset */
	struct smap actrs;   /* named counters (drop-<in|eg>-<ns>/<policy>) */
	struct pol_sync_stats stats;
};

static const char *const base_sets[] = {"in4", "in6", "eg4", "eg6", "known4", "known6"};

static bool is_base_set(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(base_sets); i++)
		if (!strcmp(name, base_sets[i]))
			return true;
	return false;
}

static void xset_free(void *v)
{
	struct xset *s = v;
	smap_clear(&s->el, free);
	free(s->el.b);
	free(s);
}

static struct xset *xset_new(int family, bool interval, bool map)
{
	struct xset *s = xcalloc(1, sizeof(*s));
	s->family = family;
	s->interval = interval;
	s->map = map;
	return s;
}

static void xset_put(struct xset *s, const struct ipaddr *a, const char *chain)
{
	char b[IP_STRLEN];
	bool created;
	void **slot = smap_slot(&s->el, ip_fmt(a, b), &created);
	free(*slot);
	*slot = xstrdup(chain ? chain : "");
}

static void sig_box(struct smap *m, const char *name, uint64_t sig)
{
	bool created;
	void **slot = smap_slot(m, name, &created);
	if (!*slot)
		*slot = xcalloc(1, sizeof(uint64_t));
	*(uint64_t *)*slot = sig;
}

/* ---- what the kernel holds ---- */

struct dump_ctx {
	struct pol_writer *w;
	struct xset *set;
	struct smap seen; /* chains with a rule read */
};

static int chain_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct dump_ctx *d = arg;
	struct nftnl_chain *c = nftnl_chain_alloc();
	if (nftnl_chain_nlmsg_parse(nlh, c) >= 0) {
		const char *t = nftnl_chain_get_str(c, NFTNL_CHAIN_TABLE);
		const char *n = nftnl_chain_get_str(c, NFTNL_CHAIN_NAME);
		if (t && n && !strcmp(t, d->w->table))
			sig_box(&d->w->achains, n, 0);
	}
	nftnl_chain_free(c);
	return MNL_CB_OK;
}

static int rule_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct dump_ctx *d = arg;
	struct nftnl_rule *r = nftnl_rule_alloc();
	if (nftnl_rule_nlmsg_parse(nlh, r) >= 0) {
		const char *t = nftnl_rule_get_str(r, NFTNL_RULE_TABLE);
		const char *n = nftnl_rule_get_str(r, NFTNL_RULE_CHAIN);
		uint64_t *sig = t && n && !strcmp(t, d->w->table) ? smap_get(&d->w->achains, n)
								   : NULL;
		if (sig) {
			uint64_t s = nftb_rule_sig(r);
			/* every rule of a chain carries the chain's signature, or it is unknown */
			if (!smap_has(&d->seen, n)) {
				smap_add(&d->seen, n);
				*sig = s;
			} else if (*sig != s) {
				*sig = 0;
			}
		}
	}
	nftnl_rule_free(r);
	return MNL_CB_OK;
}

static int set_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct dump_ctx *d = arg;
	struct nftnl_set *s = nftnl_set_alloc();
	if (nftnl_set_nlmsg_parse(nlh, s) >= 0) {
		const char *t = nftnl_set_get_str(s, NFTNL_SET_TABLE);
		const char *n = nftnl_set_get_str(s, NFTNL_SET_NAME);
		uint32_t flags = nftnl_set_get_u32(s, NFTNL_SET_FLAGS);
		uint32_t klen = nftnl_set_get_u32(s, NFTNL_SET_KEY_LEN);
		if (t && n && !strcmp(t, d->w->table)) {
			bool created;
			void **slot = smap_slot(&d->w->asets, n, &created);
			if (*slot)
				xset_free(*slot);
			*slot = xset_new(klen == 16 ? AF_INET6 : AF_INET, flags & NFT_SET_INTERVAL,
					 flags & NFT_SET_MAP);
		}
	}
	nftnl_set_free(s);
	return MNL_CB_OK;
}

static int elem_iter(struct nftnl_set_elem *e, void *arg)
{
	struct dump_ctx *d = arg;
	uint32_t len = 0;
	const void *key = nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &len);
	if (!key || len != (uint32_t)ip_bytes(d->set->family))
		return 0;
	struct ipaddr a = {.family = d->set->family};
	memcpy(a.b, key, len);
	const char *chain = d->set->map ? nftnl_set_elem_get_str(e, NFTNL_SET_ELEM_CHAIN) : NULL;
	xset_put(d->set, &a, chain ? chain : "");
	return 0;
}

static int elem_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct nftnl_set *s = nftnl_set_alloc();
	if (nftnl_set_elems_nlmsg_parse(nlh, s) >= 0)
		nftnl_set_elem_foreach(s, elem_iter, arg);
	nftnl_set_free(s);
	return MNL_CB_OK;
}

/* Counter objects of one table: fn(name, packets, bytes, arg) for each. */
struct ctr_ctx {
	const char *table;
	void (*fn)(const char *name, uint64_t packets, uint64_t bytes, void *arg);
	void *arg;
};

static int counter_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct ctr_ctx *c = arg;
	struct nftnl_obj *o = nftnl_obj_alloc();
	if (nftnl_obj_nlmsg_parse(nlh, o) >= 0) {
		const char *t = nftnl_obj_get_str(o, NFTNL_OBJ_TABLE);
		const char *n = nftnl_obj_get_str(o, NFTNL_OBJ_NAME);
		if (t && n && !strcmp(t, c->table) &&
		    nftnl_obj_get_u32(o, NFTNL_OBJ_TYPE) == NFT_OBJECT_COUNTER)
			c->fn(n, nftnl_obj_get_u64(o, NFTNL_OBJ_CTR_PKTS),
			      nftnl_obj_get_u64(o, NFTNL_OBJ_CTR_BYTES), c->arg);
	}
	nftnl_obj_free(o);
	return MNL_CB_OK;
}

static void counter_known(const char *name, uint64_t packets, uint64_t bytes, void *arg)
{
	(void)packets;
	(void)bytes;
	smap_add(arg, name);
}

static struct nlmsghdr *obj_dump_req(struct nftb_conn *c, char *buf, const char *table)
{
	struct nlmsghdr *nlh = nftb_dump_hdr(c, buf, NFT_MSG_GETOBJ, NFPROTO_INET);
	struct nftnl_obj *o = nftnl_obj_alloc();
	nftnl_obj_set_str(o, NFTNL_OBJ_TABLE, table);
	nftnl_obj_set_u32(o, NFTNL_OBJ_TYPE, NFT_OBJECT_COUNTER);
	nftnl_obj_nlmsg_build_payload(nlh, o);
	nftnl_obj_free(o);
	return nlh;
}

static int dump_kernel(struct pol_writer *w)
{
	smap_clear(&w->achains, free);
	smap_clear(&w->asets, xset_free);
	smap_clear(&w->actrs, NULL);
	struct dump_ctx d = {.w = w};
	char buf[4096];
	struct nlmsghdr *nlh = nftb_dump_hdr(&w->c, buf, NFT_MSG_GETCHAIN, NFPROTO_INET);
	int r = nftb_dump(&w->c, nlh, chain_cb, &d);
	if (r == 0) {
		nlh = nftb_dump_hdr(&w->c, buf, NFT_MSG_GETRULE, NFPROTO_INET);
		struct nftnl_rule *rl = nftnl_rule_alloc();
		nftnl_rule_set_str(rl, NFTNL_RULE_TABLE, w->table);
		nftnl_rule_nlmsg_build_payload(nlh, rl);
		nftnl_rule_free(rl);
		r = nftb_dump(&w->c, nlh, rule_cb, &d);
	}
	struct ctr_ctx cc = {w->table, counter_known, &w->actrs};
	if (r == 0)
		r = nftb_dump(&w->c, obj_dump_req(&w->c, buf, w->table), counter_cb, &cc);
	if (r == 0) {
		nlh = nftb_dump_hdr(&w->c, buf, NFT_MSG_GETSET, NFPROTO_INET);
		struct nftnl_set *s = nftnl_set_alloc();
		nftnl_set_set_str(s, NFTNL_SET_TABLE, w->table);
		nftnl_set_nlmsg_build_payload(nlh, s);
		nftnl_set_free(s);
		r = nftb_dump(&w->c, nlh, set_cb, &d);
	}
	size_t n = 0;
	const char **names = r == 0 ? smap_keys(&w->asets, &n) : NULL;
	for (size_t i = 0; i < n && r == 0; i++) {
		d.set = smap_get(&w->asets, names[i]);
		if (d.set->interval)
			continue; /* content fixed by the name */
		nlh = nftb_dump_hdr(&w->c, buf, NFT_MSG_GETSETELEM, NFPROTO_INET);
		struct nftnl_set *s = nftnl_set_alloc();
		nftnl_set_set_str(s, NFTNL_SET_TABLE, w->table);
		nftnl_set_set_str(s, NFTNL_SET_NAME, names[i]);
		nftnl_set_elems_nlmsg_build_payload(nlh, s);
		nftnl_set_free(s);
		r = nftb_dump(&w->c, nlh, elem_cb, &d);
	}
	free(names);
	smap_clear(&d.seen, NULL);
	free(d.seen.b);
	return r;
}

/* ---- messages ---- */

static void msg_counter(struct nftb_batch *b, const char *table, uint16_t type, const char *name)
{
	struct nftnl_obj *o = nftnl_obj_alloc();
	nftnl_obj_set_str(o, NFTNL_OBJ_TABLE, table);
	nftnl_obj_set_str(o, NFTNL_OBJ_NAME, name);
	nftnl_obj_set_u32(o, NFTNL_OBJ_TYPE, NFT_OBJECT_COUNTER);
	struct nlmsghdr *nlh = nftb_msg(b, type, type == NFT_MSG_NEWOBJ ? NLM_F_CREATE : 0, 512);
	nftnl_obj_nlmsg_build_payload(nlh, o);
	nftb_put(b, nlh);
	nftnl_obj_free(o);
}

static char *counter_name(bool egress, const char *policy)
{
	return xasprintf("drop-%s-%s", egress ? "eg" : "in", policy);
}

static void msg_table(struct nftb_batch *b, const char *table)
{
	struct nftnl_table *t = nftnl_table_alloc();
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, table);
	struct nlmsghdr *nlh = nftb_msg(b, NFT_MSG_NEWTABLE, NLM_F_CREATE, 256);
	nftnl_table_nlmsg_build_payload(nlh, t);
	nftb_put(b, nlh);
	nftnl_table_free(t);
}

static void msg_chain(struct nftb_batch *b, const char *table, uint16_t type, const char *name,
		      bool base)
{
	struct nftnl_chain *c = nftnl_chain_alloc();
	nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table);
	nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
	if (base) {
		nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, "filter");
		nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, NF_INET_FORWARD);
		nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, 0);
		nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
	}
	struct nlmsghdr *nlh =
	    nftb_msg(b, type, type == NFT_MSG_NEWCHAIN ? NLM_F_CREATE : 0, 512);
	nftnl_chain_nlmsg_build_payload(nlh, c);
	nftb_put(b, nlh);
	nftnl_chain_free(c);
}

static void msg_set(struct nftb_batch *b, const char *table, uint16_t type, const char *name,
		    const struct xset *s)
{
	struct nftnl_set *ns = nftnl_set_alloc();
	nftnl_set_set_str(ns, NFTNL_SET_TABLE, table);
	nftnl_set_set_str(ns, NFTNL_SET_NAME, name);
	if (type == NFT_MSG_NEWSET) {
		static uint32_t id;
		nftnl_set_set_u32(ns, NFTNL_SET_FAMILY, NFPROTO_INET);
		nftnl_set_set_u32(ns, NFTNL_SET_KEY_TYPE,
				  s->family == AF_INET6 ? TYPE_IPV6 : TYPE_IPV4);
		nftnl_set_set_u32(ns, NFTNL_SET_KEY_LEN, (uint32_t)ip_bytes(s->family));
		nftnl_set_set_u32(ns, NFTNL_SET_FLAGS,
				  (s->interval ? NFT_SET_INTERVAL : 0) | (s->map ? NFT_SET_MAP : 0));
		if (s->map)
			nftnl_set_set_u32(ns, NFTNL_SET_DATA_TYPE, NFT_DATA_VERDICT);
		nftnl_set_set_u32(ns, NFTNL_SET_ID, ++id);
	}
	struct nlmsghdr *nlh = nftb_msg(b, type, type == NFT_MSG_NEWSET ? NLM_F_CREATE : 0, 512);
	nftnl_set_nlmsg_build_payload(nlh, ns);
	nftb_put(b, nlh);
	nftnl_set_free(ns);
}

/* Elements of one set in messages of ELEMS_PER_MSG: keys[i] are address texts; chains[i]
 * (maps) the jump targets; for interval sets the flag marks a range's end. */
struct elems {
	size_t n;
	struct ipaddr *a;
	const char **chain;
	bool *end;
};

static void elems_add(struct elems *e, const struct ipaddr *a, const char *chain, bool end)
{
	e->a = xrealloc(e->a, (e->n + 1) * sizeof(*e->a));
	e->chain = xrealloc(e->chain, (e->n + 1) * sizeof(*e->chain));
	e->end = xrealloc(e->end, (e->n + 1) * sizeof(*e->end));
	e->a[e->n] = *a;
	e->chain[e->n] = chain;
	e->end[e->n++] = end;
}

static void elems_free(struct elems *e)
{
	free(e->a);
	free(e->chain);
	free(e->end);
	memset(e, 0, sizeof(*e));
}

static void msg_elems(struct nftb_batch *b, const char *table, uint16_t type, const char *set,
		      const struct elems *e)
{
	for (size_t off = 0; off < e->n; off += ELEMS_PER_MSG) {
		struct nftnl_set *s = nftnl_set_alloc();
		nftnl_set_set_str(s, NFTNL_SET_TABLE, table);
		nftnl_set_set_str(s, NFTNL_SET_NAME, set);
		size_t end = off + ELEMS_PER_MSG < e->n ? off + ELEMS_PER_MSG : e->n;
		for (size_t i = off; i < end; i++) {
			struct nftnl_set_elem *el = nftnl_set_elem_alloc();
			nftnl_set_elem_set(el, NFTNL_SET_ELEM_KEY, e->a[i].b,
					   (uint32_t)ip_bytes(e->a[i].family));
			if (e->end[i])
				nftnl_set_elem_set_u32(el, NFTNL_SET_ELEM_FLAGS,
						       NFT_SET_ELEM_INTERVAL_END);
			if (e->chain[i] && e->chain[i][0] && type == NFT_MSG_NEWSETELEM) {
				nftnl_set_elem_set_u32(el, NFTNL_SET_ELEM_VERDICT, NFT_JUMP);
				nftnl_set_elem_set_str(el, NFTNL_SET_ELEM_CHAIN, e->chain[i]);
			}
			nftnl_set_elem_add(s, el);
		}
		struct nlmsghdr *nlh = nftb_msg(
		    b, type, type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0, (end - off) * 96 + 512);
		nftnl_set_elems_nlmsg_build_payload(nlh, s);
		nftb_put(b, nlh);
		nftnl_set_free(s);
	}
}

/* Elements to delete and add so that a (NULL: absent) holds what d holds; a changed map
 * element is deleted and added again. The chain pointers point into d. */
static void elems_diff(const struct xset *d, const struct xset *a, struct elems *add,
		       struct elems *del)
{
	struct ipaddr ip;
	smap_foreach(&d->el, e)
	{
		const char *ac = a ? smap_get(&a->el, e->key) : NULL;
		if (ac && !strcmp(ac, e->val))
			continue;
		ip_parse(e->key, &ip);
		if (ac)
			elems_add(del, &ip, NULL, false);
		elems_add(add, &ip, e->val, false);
	}
	if (a)
		smap_foreach(&a->el, e) if (!smap_get(&d->el, e->key))
		{
			ip_parse(e->key, &ip);
			elems_add(del, &ip, NULL, false);
		}
}

/* ---- rules ---- */

static struct nftnl_rule *rule_new(const char *table, const char *chain)
{
	struct nftnl_rule *r = nftnl_rule_alloc();
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table);
	nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
	nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, NFPROTO_INET);
	return r;
}

static void match_family(struct nftnl_rule *r, int family)
{
	uint8_t p = family == AF_INET6 ? NFPROTO_IPV6 : NFPROTO_IPV4;
	nftb_meta(r, NFT_META_NFPROTO);
	nftb_cmp(r, NFT_CMP_EQ, &p, 1);
}

/* ip/ip6 saddr or daddr into register 1 */
static void load_addr(struct nftnl_rule *r, int family, bool src)
{
	if (family == AF_INET6)
		nftb_payload(r, NFT_PAYLOAD_NETWORK_HEADER, src ? 8 : 24, 16);
	else
		nftb_payload(r, NFT_PAYLOAD_NETWORK_HEADER, src ? 12 : 16, 4);
}

static void pod_chain_rules(struct nftb_batch *b, const char *table, const char *name,
			    const struct pol_chain *ch)
{
	char comment[200];
	for (size_t i = 0; i < ch->nrules; i++) {
		const struct pol_rule *pr = &ch->rules[i];
		snprintf(comment, sizeof(comment), NFTB_SIG_PREFIX "%016llx %s",
			 (unsigned long long)ch->sig, pr->why);
		b->comment = comment;
		struct nftnl_rule *r = rule_new(table, name);
		match_family(r, pr->family);
		/* ingress: the peer is the source; egress: the destination */
		if (pr->set) {
			load_addr(r, pr->family, !ch->egress);
			nftb_lookup(r, pr->set, false, false);
		} else if (pr->addr.family) {
			load_addr(r, pr->family, !ch->egress);
			nftb_cmp(r, NFT_CMP_EQ, pr->addr.b, (uint32_t)ip_bytes(pr->family));
		}
		if (pr->l4) {
			nftb_meta(r, NFT_META_L4PROTO);
			nftb_cmp(r, NFT_CMP_EQ, &pr->l4, 1);
			if (pr->lo) {
				uint16_t lo = htons(pr->lo), hi = htons(pr->hi);
				nftb_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
				if (pr->lo == pr->hi) {
					nftb_cmp(r, NFT_CMP_EQ, &lo, 2);
				} else {
					nftb_cmp(r, NFT_CMP_GTE, &lo, 2);
					nftb_cmp(r, NFT_CMP_LTE, &hi, 2);
				}
			}
		}
		nftb_verdict(r, NFT_RETURN, NULL);
		nftb_rule_add(b, r);
	}
	/* the drop, counted per chain; its comment names the isolating policies */
	int o = snprintf(comment, sizeof(comment), NFTB_SIG_PREFIX "%016llx drop: isolated by",
			 (unsigned long long)ch->sig);
	for (size_t i = 0; i < ch->npolicies && o < (int)sizeof(comment); i++)
		o += snprintf(comment + o, sizeof(comment) - (size_t)o, "%s%s", i ? "," : " ",
			      ch->policies[i]);
	b->comment = comment;
	struct nftnl_rule *r = rule_new(table, name);
	nftb_counter(r);
	for (size_t i = 0; i < ch->npolicies; i++) { /* and per policy: counter name "drop-..." */
		char *cn = counter_name(ch->egress, ch->policies[i]);
		struct nftnl_expr *e = nftnl_expr_alloc("objref");
		nftnl_expr_set_u32(e, NFTNL_EXPR_OBJREF_IMM_TYPE, NFT_OBJECT_COUNTER);
		nftnl_expr_set_str(e, NFTNL_EXPR_OBJREF_IMM_NAME, cn);
		nftnl_rule_add_expr(r, e);
		free(cn);
	}
	nftb_verdict(r, NF_DROP, NULL);
	nftb_rule_add(b, r);
	b->comment = NULL;
}

static uint64_t forward_sig(bool enforcing)
{
	const char *v = enforcing ? "forward/3/enforcing" : "forward/3/open";
	return fnv1a64(v, strlen(v), FNV_SEED);
}

static void forward_rules(struct nftb_batch *b, const char *table, bool enforcing)
{
	char comment[64];
	snprintf(comment, sizeof(comment), NFTB_SIG_PREFIX "%016llx",
		 (unsigned long long)forward_sig(enforcing));
	b->comment = comment;
	struct nftnl_rule *r = rule_new(table, FORWARD);
	nftb_ct_state(r, CT_EST_REL);
	nftb_verdict(r, NF_ACCEPT, NULL);
	nftb_rule_add(b, r);
	static const int fams[] = {AF_INET, AF_INET6};
	char veth[IFNAMSIZ] = TWILL_VETH_PREFIX;
	for (int dir = 0; enforcing && dir < 2; dir++)
		for (size_t f = 0; f < 2; f++) {
			r = rule_new(table, FORWARD);
			nftb_meta(r, dir ? NFT_META_OIFNAME : NFT_META_IIFNAME);
			nftb_cmp(r, NFT_CMP_EQ, veth, (uint32_t)strlen(veth));
			/* "tw" + 12 hex, not the VXLAN device twill.<VNI> */
			nftb_cmp(r, NFT_CMP_NEQ, "twill.", 6);
			match_family(r, fams[f]);
			load_addr(r, fams[f], dir == 0);
			nftb_lookup(r, fams[f] == AF_INET ? "known4" : "known6", false, true);
			nftb_counter(r);
			nftb_verdict(r, NF_DROP, NULL);
			nftb_rule_add(b, r);
		}
	static const char *const maps[] = {"eg4", "eg6", "in4", "in6"};
	for (size_t i = 0; i < 4; i++) {
		r = rule_new(table, FORWARD);
		int fam = i % 2 ? AF_INET6 : AF_INET;
		match_family(r, fam);
		load_addr(r, fam, i < 2);
		nftb_lookup(r, maps[i], true, false);
		nftb_rule_add(b, r);
	}
	b->comment = NULL;
}

/* ---- desired state ---- */

static void desired_sets(const struct pol_plan *p, struct smap *out)
{
	bool created;
	for (size_t i = 0; i < ARRAY_SIZE(base_sets); i++)
		*smap_slot(out, base_sets[i], &created) =
		    xset_new(base_sets[i][strlen(base_sets[i]) - 1] == '6' ? AF_INET6 : AF_INET,
			     false, i < 4);
	smap_foreach(&p->sets, it)
	{
		const struct pol_set *ps = it->val;
		struct xset *x = xset_new(ps->family, ps->interval, false);
		x->src = ps;
		for (size_t k = 0; !ps->interval && k < ps->n; k++)
			xset_put(x, &ps->v[k].lo, NULL);
		*smap_slot(out, it->key, &created) = x;
	}
	for (size_t i = 0; i < p->nknown; i++)
		xset_put(smap_get(out, p->known[i].family == AF_INET ? "known4" : "known6"),
			 &p->known[i], NULL);
	for (size_t i = 0; i < p->nelems; i++) {
		const struct pol_elem *e = &p->elems[i];
		char m[8];
		snprintf(m, sizeof(m), "%s%d", e->egress ? "eg" : "in",
			 e->addr.family == AF_INET ? 4 : 6);
		xset_put(smap_get(out, m), &e->addr, e->chain);
	}
}

static void interval_elems(const struct pol_set *ps, struct elems *e)
{
	for (size_t k = 0; k < ps->n; k++) {
		elems_add(e, &ps->v[k].lo, NULL, false);
		struct ipaddr next = ps->v[k].hi;
		int i = ip_bytes(next.family) - 1;
		for (; i >= 0 && ++next.b[i] == 0; i--)
			;
		if (i >= 0) /* not the family's last address */
			elems_add(e, &next, NULL, true);
	}
}

/* ---- public ---- */

struct pol_writer *pol_writer_new(const char *table)
{
	struct pol_writer *w = xcalloc(1, sizeof(*w));
	w->table = xstrdup(table ? table : POLICY_TABLE);
	w->need_dump = true;
	return w;
}

void pol_writer_free(struct pol_writer *w)
{
	if (!w)
		return;
	smap_clear(&w->achains, free);
	smap_clear(&w->asets, xset_free);
	smap_clear(&w->actrs, NULL);
	free(w->achains.b);
	free(w->asets.b);
	free(w->actrs.b);
	nftb_close(&w->c);
	free(w->table);
	free(w);
}

void pol_writer_request_resync(struct pol_writer *w)
{
	w->need_dump = true;
}

bool pol_writer_needs_dump(const struct pol_writer *w)
{
	return w->need_dump;
}

const struct pol_sync_stats *pol_writer_stats(const struct pol_writer *w)
{
	return &w->stats;
}

const char *pol_writer_error(const struct pol_writer *w)
{
	return w->c.err;
}

int pol_writer_sync(struct pol_writer *w, const struct pol_plan *p)
{
	memset(&w->stats, 0, sizeof(w->stats));
	int r = nftb_open(&w->c);
	if (r < 0) {
		snprintf(w->c.err, sizeof(w->c.err), "netlink socket: %s", strerror(-r));
		return r;
	}
	bool full = w->need_dump;
	if (full && (r = dump_kernel(w)) < 0) {
		snprintf(w->c.err, sizeof(w->c.err), "dump table %s: %s", w->table, strerror(-r));
		return r;
	}
	w->stats.full = full;
	struct smap dsets = SMAP_INIT, dchains = SMAP_INIT;
	desired_sets(p, &dsets);
	smap_foreach(&p->chains, it) sig_box(&dchains, it->key, ((struct pol_chain *)it->val)->sig);
	sig_box(&dchains, FORWARD, forward_sig(p->enforcing));
	struct smap dctrs = SMAP_INIT;
	smap_foreach(&p->chains, it)
	{
		const struct pol_chain *ch = it->val;
		for (size_t i = 0; i < ch->npolicies; i++) {
			char *cn = counter_name(ch->egress, ch->policies[i]);
			smap_add(&dctrs, cn);
			free(cn);
		}
	}

	struct nftb_batch b;
	nftb_begin(&b, &w->c, NFPROTO_INET);
	if (full || !smap_get(&w->achains, FORWARD)) {
		msg_table(&b, w->table);
		for (size_t i = 0; i < ARRAY_SIZE(base_sets); i++)
			msg_set(&b, w->table, NFT_MSG_NEWSET, base_sets[i],
				smap_get(&dsets, base_sets[i]));
		msg_chain(&b, w->table, NFT_MSG_NEWCHAIN, FORWARD, true);
	}
	smap_foreach(&dctrs, it) if (!smap_has(&w->actrs, it->key))
		msg_counter(&b, w->table, NFT_MSG_NEWOBJ, it->key);
	size_t nsets, nch;
	const char **sn = smap_keys(&dsets, &nsets);
	/* 1. sets: new ones whole, existing plain ones by element difference */
	for (size_t i = 0; i < nsets; i++) {
		struct xset *d = smap_get(&dsets, sn[i]);
		struct xset *a = smap_get(&w->asets, sn[i]);
		struct elems add = {0}, del = {0};
		if (a && (a->interval != d->interval || a->map != d->map ||
			  a->family != d->family)) {
			/* a set of the same name but another shape: cannot happen short of
			 * someone else editing the table; the transaction fails and is logged */
			log_warn(SUB, "set %s in the kernel differs in type", sn[i]);
		}
		if (!a && !is_base_set(sn[i])) {
			msg_set(&b, w->table, NFT_MSG_NEWSET, sn[i], d);
			w->stats.sets_added++;
		}
		if (d->interval) {
			if (!a)
				interval_elems(d->src, &add);
		} else {
			elems_diff(d, a, &add, &del);
		}
		/* 2. chains must exist before a map element names them: map elements last */
		if (d->map) {
			elems_free(&add);
			elems_free(&del);
			continue;
		}
		msg_elems(&b, w->table, NFT_MSG_DELSETELEM, sn[i], &del);
		msg_elems(&b, w->table, NFT_MSG_NEWSETELEM, sn[i], &add);
		w->stats.elems_added += (unsigned)add.n;
		w->stats.elems_deleted += (unsigned)del.n;
		elems_free(&add);
		elems_free(&del);
	}
	/* 3. chains: create, then (re)fill the ones whose signature differs */
	const char **cn = smap_keys(&dchains, &nch);
	for (size_t i = 0; i < nch; i++)
		if (!smap_get(&w->achains, cn[i]) && strcmp(cn[i], FORWARD))
			msg_chain(&b, w->table, NFT_MSG_NEWCHAIN, cn[i], false);
	for (size_t i = 0; i < nch; i++) {
		uint64_t *as = smap_get(&w->achains, cn[i]), *ds = smap_get(&dchains, cn[i]);
		if (as && *as == *ds)
			continue;
		if (as)
			nftb_chain_flush(&b, w->table, cn[i]);
		if (!strcmp(cn[i], FORWARD))
			forward_rules(&b, w->table, p->enforcing);
		else
			pod_chain_rules(&b, w->table, cn[i], smap_get(&p->chains, cn[i]));
		w->stats.chains_written++;
	}
	/* 4. map elements */
	for (size_t i = 0; i < nsets; i++) {
		struct xset *d = smap_get(&dsets, sn[i]);
		struct xset *a = smap_get(&w->asets, sn[i]);
		if (!d->map)
			continue;
		struct elems add = {0}, del = {0};
		elems_diff(d, a, &add, &del);
		msg_elems(&b, w->table, NFT_MSG_DELSETELEM, sn[i], &del);
		msg_elems(&b, w->table, NFT_MSG_NEWSETELEM, sn[i], &add);
		w->stats.elems_added += (unsigned)add.n;
		w->stats.elems_deleted += (unsigned)del.n;
		elems_free(&add);
		elems_free(&del);
	}
	/* 5. chains no longer wanted: empty them all, then delete them */
	size_t nac;
	const char **acn = smap_keys(&w->achains, &nac);
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < nac; i++)
			if (!smap_get(&dchains, acn[i])) {
				if (pass == 0)
					nftb_chain_flush(&b, w->table, acn[i]);
				else
					msg_chain(&b, w->table, NFT_MSG_DELCHAIN, acn[i], false);
				w->stats.chains_deleted += pass;
			}
	free(acn);
	/* 6. sets no longer referenced */
	size_t nas;
	const char **asn = smap_keys(&w->asets, &nas);
	for (size_t i = 0; i < nas; i++)
		if (!smap_get(&dsets, asn[i])) {
			msg_set(&b, w->table, NFT_MSG_DELSET, asn[i], NULL);
			w->stats.sets_deleted++;
		}
	free(asn);
	smap_foreach(&w->actrs, it) if (!smap_has(&dctrs, it->key))
		msg_counter(&b, w->table, NFT_MSG_DELOBJ, it->key);
	free(sn);
	free(cn);
	w->stats.messages = b.msgs;
	r = nftb_commit(&b);
	if (r < 0) {
		log_warn(SUB, "transaction failed (%s); will dump table %s and retry", w->c.err,
			 w->table);
		w->need_dump = true;
		smap_clear(&dsets, xset_free);
		smap_clear(&dchains, free);
		smap_clear(&dctrs, NULL);
	} else {
		w->c.err[0] = '\0';
		w->need_dump = false;
		/* the kernel now holds the plan */
		smap_clear(&w->asets, xset_free);
		smap_clear(&w->achains, free);
		smap_foreach(&dsets, it)
		{
			struct xset *x = it->val;
			x->src = NULL; /* the plan's, freed by the caller */
		}
		free(w->asets.b);
		free(w->achains.b);
		smap_clear(&w->actrs, NULL);
		free(w->actrs.b);
		w->asets = dsets;
		w->achains = dchains;
		w->actrs = dctrs;
		dctrs = (struct smap)SMAP_INIT;
		dsets = (struct smap)SMAP_INIT;
		dchains = (struct smap)SMAP_INIT;
	}
	free(dsets.b);
	free(dchains.b);
	free(dctrs.b);
	return r;
}

int pol_table_delete(const char *table)
{
	struct nftb_conn c = {0};
	int r = nftb_open(&c);
	if (r < 0)
		return r;
	struct nftb_batch b;
	nftb_begin(&b, &c, NFPROTO_INET);
	struct nftnl_table *t = nftnl_table_alloc();
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, table ? table : POLICY_TABLE);
	struct nlmsghdr *nlh = nftb_msg(&b, NFT_MSG_DELTABLE, 0, 256);
	nftnl_table_nlmsg_build_payload(nlh, t);
	nftb_put(&b, nlh);
	nftnl_table_free(t);
	r = nftb_commit(&b);
	nftb_close(&c);
	return r == -ENOENT ? 0 : r;
}

struct drop_ctx {
	pol_counter_fn fn;
	void *arg;
};

static void counter_drop(const char *name, uint64_t packets, uint64_t bytes, void *arg)
{
	struct drop_ctx *d = arg;
	/* drop-in-<ns>/<policy>, drop-eg-<ns>/<policy> */
	if (str_has_prefix(name, "drop-in-") || str_has_prefix(name, "drop-eg-"))
		d->fn(name[5] == 'e', name + 8, packets, bytes, d->arg);
}

int pol_counters_read(const char *table, pol_counter_fn fn, void *arg)
{
	struct nftb_conn c = {0};
	int r = nftb_open(&c);
	if (r < 0)
		return r;
	char buf[4096];
	struct drop_ctx dc = {fn, arg};
	struct ctr_ctx cc = {table ? table : POLICY_TABLE, counter_drop, &dc};
	r = nftb_dump(&c, obj_dump_req(&c, buf, cc.table), counter_cb, &cc);
	nftb_close(&c);
	return r;
}
