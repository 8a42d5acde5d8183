/* ipvs: IPVS virtual services over generic netlink (see ipvs.h).  Message format after the
 * kernel's net/netfilter/ipvs/ip_vs_ctl.c: a request is a genlmsghdr (cmd, version 1) with
 * IPVS_CMD_ATTR_SERVICE (nested: AF, PROTOCOL, ADDR as 16 bytes, PORT in network order,
 * and for a full service SCHED_NAME, FLAGS {flags, mask}, TIMEOUT, NETMASK) and for real
 * servers IPVS_CMD_ATTR_DEST (ADDR, PORT, FWD_METHOD, WEIGHT, U_THRESH, L_THRESH,
 * ADDR_FAMILY). */
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/ip_vs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "lib/util.h"
#include "proxy/ipvs.h"

static const char *const sched_names[] = {"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh",
					  "sh", "sed", "nq", "mh",  "fo",   "ovf",   "twos"};

bool ipvs_sched_known(const char *s)
{
	for (size_t i = 0; s && i < ARRAY_SIZE(sched_names); i++)
		if (!strcmp(s, sched_names[i]))
			return true;
	return false;
}

int ipvs_service_cmp(const struct ipvs_service *a, const struct ipvs_service *b)
{
	int c = ip_cmp(&a->addr, &b->addr);
	if (c)
		return c;
	if (a->proto != b->proto)
		return a->proto < b->proto ? -1 : 1;
	if (a->port != b->port)
		return a->port < b->port ? -1 : 1;
	if (a->fwmark != b->fwmark)
		return a->fwmark < b->fwmark ? -1 : 1;
	return 0;
}

int ipvs_dest_cmp(const struct ipvs_dest *a, const struct ipvs_dest *b)
{
	int c = ip_cmp(&a->addr, &b->addr);
	if (c)
		return c;
	return a->port < b->port ? -1 : a->port > b->port;
}

static int dest_cmp_q(const void *a, const void *b)
{
	return ipvs_dest_cmp(a, b);
}

struct dest_pair {
	struct ipvs_dest d;
	struct ipvs_dest_counters c;
};

static int pair_cmp_q(const void *a, const void *b)
{
	return ipvs_dest_cmp(&((const struct dest_pair *)a)->d, &((const struct dest_pair *)b)->d);
}

void ipvs_service_sort_dests(struct ipvs_service *s)
{
	if (s->ndests < 2)
		return;
	if (!s->ctrs) {
		qsort(s->dests, s->ndests, sizeof(*s->dests), dest_cmp_q);
		return;
	}
	struct dest_pair *p = xmalloc(s->ndests * sizeof(*p));
	for (size_t i = 0; i < s->ndests; i++)
		p[i] = (struct dest_pair){s->dests[i], s->ctrs[i]};
	qsort(p, s->ndests, sizeof(*p), pair_cmp_q);
	for (size_t i = 0; i < s->ndests; i++) {
		s->dests[i] = p[i].d;
		s->ctrs[i] = p[i].c;
	}
	free(p);
}

struct ipvs_dest *ipvs_service_add_dest(struct ipvs_service *s, const struct ipvs_dest *d)
{
	if (s->ndests == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 4;
		s->dests = xrealloc(s->dests, s->cap * sizeof(*s->dests));
		if (s->ctrs) {
			s->ctrs = xrealloc(s->ctrs, s->cap * sizeof(*s->ctrs));
			memset(&s->ctrs[s->ndests], 0, (s->cap - s->ndests) * sizeof(*s->ctrs));
		}
	}
	s->dests[s->ndests] = *d;
	return &s->dests[s->ndests++];
}

void ipvs_service_copy(struct ipvs_service *dst, const struct ipvs_service *src)
{
	*dst = *src;
	dst->cap = src->ndests;
	dst->dests = NULL;
	dst->ctrs = NULL;
	if (src->ndests) {
		dst->dests = xcalloc(src->ndests, sizeof(*dst->dests));
		memcpy(dst->dests, src->dests, src->ndests * sizeof(*dst->dests));
		if (src->ctrs) {
			dst->ctrs = xcalloc(src->ndests, sizeof(*dst->ctrs));
			memcpy(dst->ctrs, src->ctrs, src->ndests * sizeof(*dst->ctrs));
		}
	}
}

void ipvs_service_clear(struct ipvs_service *s)
{
	free(s->dests);
	free(s->ctrs);
	s->dests = NULL;
	s->ctrs = NULL;
	s->ndests = s->cap = 0;
}

static const char *proto_str(uint8_t p)
{
	return p == IPPROTO_TCP	   ? "TCP"
	       : p == IPPROTO_UDP  ? "UDP"
	       : p == IPPROTO_SCTP ? "SCTP"
				   : "?";
}

const char *ipvs_service_key(const struct ipvs_service *s, char *buf, size_t size)
{
	char a[IP_STRLEN];
	if (s->fwmark)
		snprintf(buf, size, "FWM %u", s->fwmark);
	else if (s->addr.family == AF_INET6)
		snprintf(buf, size, "%s [%s]:%u", proto_str(s->proto), ip_fmt(&s->addr, a),
			 s->port);
	else
		snprintf(buf, size, "%s %s:%u", proto_str(s->proto), ip_fmt(&s->addr, a), s->port);
	return buf;
}

bool ipvs_service_same(const struct ipvs_service *a, const struct ipvs_service *b)
{
	return !strcmp(a->sched, b->sched) &&
	       (a->flags & ~IP_VS_SVC_F_HASHED) == (b->flags & ~IP_VS_SVC_F_HASHED) &&
	       a->timeout == b->timeout && a->netmask == b->netmask;
}

/* ---------------------------------------------------------------- messages */

static struct nlmsghdr *genl_hdr(void *buf, size_t size, uint16_t family, uint8_t cmd,
				 uint16_t flags)
{
	memset(buf, 0, size);
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = family;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	struct genlmsghdr *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->cmd = cmd;
	g->version = IPVS_GENL_VERSION;
	return nlh;
}

static void put_addr(struct nlmsghdr *nlh, uint16_t type, const struct ipaddr *a)
{
	uint8_t b[16] = {0};
	memcpy(b, a->b, (size_t)ip_bytes(a->family));
	mnl_attr_put(nlh, type, sizeof(b), b);
}

static void put_service(struct nlmsghdr *nlh, const struct ipvs_service *s, bool full)
{
	struct nlattr *n = mnl_attr_nest_start(nlh, IPVS_CMD_ATTR_SERVICE);
	mnl_attr_put_u16(nlh, IPVS_SVC_ATTR_AF, (uint16_t)s->addr.family);
	if (s->fwmark) {
		mnl_attr_put_u32(nlh, IPVS_SVC_ATTR_FWMARK, s->fwmark);
	} else {
		mnl_attr_put_u16(nlh, IPVS_SVC_ATTR_PROTOCOL, s->proto);
		put_addr(nlh, IPVS_SVC_ATTR_ADDR, &s->addr);
		mnl_attr_put_u16(nlh, IPVS_SVC_ATTR_PORT, htons(s->port));
	}
	if (full) {
		mnl_attr_put_strz(nlh, IPVS_SVC_ATTR_SCHED_NAME, s->sched);
		struct ip_vs_flags f = {.flags = s->flags & ~IP_VS_SVC_F_HASHED, .mask = ~0u};
		mnl_attr_put(nlh, IPVS_SVC_ATTR_FLAGS, sizeof(f), &f);
		mnl_attr_put_u32(nlh, IPVS_SVC_ATTR_TIMEOUT, s->timeout);
		mnl_attr_put_u32(nlh, IPVS_SVC_ATTR_NETMASK, s->netmask);
	}
	mnl_attr_nest_end(nlh, n);
}

struct nlmsghdr *ipvs_build_service(void *buf, uint16_t family, uint8_t cmd, uint16_t flags,
				    const struct ipvs_service *s)
{
	struct nlmsghdr *nlh = genl_hdr(buf, IPVS_MSG_MAX, family, cmd, flags);
	if (s && !(flags & NLM_F_DUMP))
		put_service(nlh, s, cmd == IPVS_CMD_NEW_SERVICE || cmd == IPVS_CMD_SET_SERVICE);
	return nlh;
}

struct nlmsghdr *ipvs_build_dest(void *buf, uint16_t family, uint8_t cmd, uint16_t flags,
				 const struct ipvs_service *s, const struct ipvs_dest *d)
{
	struct nlmsghdr *nlh = genl_hdr(buf, IPVS_MSG_MAX, family, cmd, flags);
	put_service(nlh, s, false);
	if (!d)
		return nlh;
	struct nlattr *n = mnl_attr_nest_start(nlh, IPVS_CMD_ATTR_DEST);
	put_addr(nlh, IPVS_DEST_ATTR_ADDR, &d->addr);
	mnl_attr_put_u16(nlh, IPVS_DEST_ATTR_PORT, htons(d->port));
	if (cmd != IPVS_CMD_DEL_DEST) {
		mnl_attr_put_u32(nlh, IPVS_DEST_ATTR_FWD_METHOD, d->fwd);
		mnl_attr_put_u32(nlh, IPVS_DEST_ATTR_WEIGHT, d->weight);
		mnl_attr_put_u32(nlh, IPVS_DEST_ATTR_U_THRESH, 0);
		mnl_attr_put_u32(nlh, IPVS_DEST_ATTR_L_THRESH, 0);
	}
	mnl_attr_put_u16(nlh, IPVS_DEST_ATTR_ADDR_FAMILY, (uint16_t)d->addr.family);
	mnl_attr_nest_end(nlh, n);
	return nlh;
}

#define ATTR_TB 32 /* larger than every IPVS attribute space read here */

static int attr_cb(const struct nlattr *a, void *data)
{
	const struct nlattr **tb = data;
	uint16_t t = mnl_attr_get_type(a);
	if (t < ATTR_TB)
		tb[t] = a;
	return MNL_CB_OK;
}

static int get_addr(const struct nlattr *a, int family, struct ipaddr *out)
{
	memset(out, 0, sizeof(*out));
	int n = ip_bytes(family);
	if (!a || !n || mnl_attr_get_payload_len(a) < (uint16_t)n)
		return -EINVAL;
	out->family = family;
	memcpy(out->b, mnl_attr_get_payload(a), (size_t)n);
	return 0;
}

static void get_stats(const struct nlattr *s32, const struct nlattr *s64, struct ipvs_stats *st)
{
	const struct nlattr *tb[ATTR_TB] = {0};
	bool wide = s64 != NULL;
	if (mnl_attr_parse_nested(wide ? s64 : s32, attr_cb, tb) < 0)
		return;
	const int keys[] = {IPVS_STATS_ATTR_CONNS, IPVS_STATS_ATTR_INPKTS, IPVS_STATS_ATTR_OUTPKTS,
			    IPVS_STATS_ATTR_INBYTES, IPVS_STATS_ATTR_OUTBYTES};
	uint64_t *v[] = {&st->conns, &st->inpkts, &st->outpkts, &st->inbytes, &st->outbytes};
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		const struct nlattr *a = tb[keys[i]];
		if (!a)
			continue;
		*v[i] =
		    mnl_attr_get_payload_len(a) == 8 ? mnl_attr_get_u64(a) : mnl_attr_get_u32(a);
	}
}

/* The nested attribute `which` of a genl reply. */
static const struct nlattr *reply_nest(const struct nlmsghdr *nlh, uint16_t which)
{
	if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(struct genlmsghdr)))
		return NULL;
	const struct nlattr *tb[ATTR_TB] = {0};
	if (mnl_attr_parse(nlh, sizeof(struct genlmsghdr), attr_cb, tb) < 0)
		return NULL;
	return tb[which];
}

int ipvs_parse_service(const struct nlmsghdr *nlh, struct ipvs_service *out)
{
	memset(out, 0, sizeof(*out));
	const struct nlattr *nest = reply_nest(nlh, IPVS_CMD_ATTR_SERVICE);
	const struct nlattr *tb[ATTR_TB] = {0};
	if (!nest || mnl_attr_parse_nested(nest, attr_cb, tb) < 0 || !tb[IPVS_SVC_ATTR_AF])
		return -EINVAL;
	int af = mnl_attr_get_u16(tb[IPVS_SVC_ATTR_AF]);
	if (tb[IPVS_SVC_ATTR_FWMARK] && mnl_attr_get_u32(tb[IPVS_SVC_ATTR_FWMARK])) {
		out->fwmark = mnl_attr_get_u32(tb[IPVS_SVC_ATTR_FWMARK]);
		out->addr.family = af;
	} else {
		if (!tb[IPVS_SVC_ATTR_PROTOCOL] || !tb[IPVS_SVC_ATTR_PORT] ||
		    get_addr(tb[IPVS_SVC_ATTR_ADDR], af, &out->addr) < 0)
			return -EINVAL;
		out->proto = (uint8_t)mnl_attr_get_u16(tb[IPVS_SVC_ATTR_PROTOCOL]);
		out->port = ntohs(mnl_attr_get_u16(tb[IPVS_SVC_ATTR_PORT]));
	}
	if (tb[IPVS_SVC_ATTR_SCHED_NAME])
		snprintf(out->sched, sizeof(out->sched), "%s",
			 mnl_attr_get_str(tb[IPVS_SVC_ATTR_SCHED_NAME]));
	if (tb[IPVS_SVC_ATTR_FLAGS] &&
	    mnl_attr_get_payload_len(tb[IPVS_SVC_ATTR_FLAGS]) >= sizeof(struct ip_vs_flags)) {
		const struct ip_vs_flags *f = mnl_attr_get_payload(tb[IPVS_SVC_ATTR_FLAGS]);
		out->flags = f->flags;
	}
	if (tb[IPVS_SVC_ATTR_TIMEOUT])
		out->timeout = mnl_attr_get_u32(tb[IPVS_SVC_ATTR_TIMEOUT]);
	if (tb[IPVS_SVC_ATTR_NETMASK])
		out->netmask = mnl_attr_get_u32(tb[IPVS_SVC_ATTR_NETMASK]);
	if (tb[IPVS_SVC_ATTR_STATS] || tb[IPVS_SVC_ATTR_STATS64])
		get_stats(tb[IPVS_SVC_ATTR_STATS], tb[IPVS_SVC_ATTR_STATS64], &out->stats);
	return 0;
}

int ipvs_parse_dest(const struct nlmsghdr *nlh, struct ipvs_dest *out,
		    struct ipvs_dest_counters *ctr)
{
	memset(out, 0, sizeof(*out));
	struct ipvs_dest_counters ignored;
	if (!ctr)
		ctr = &ignored;
	memset(ctr, 0, sizeof(*ctr));
	const struct nlattr *nest = reply_nest(nlh, IPVS_CMD_ATTR_DEST);
	const struct nlattr *tb[ATTR_TB] = {0};
	if (!nest || mnl_attr_parse_nested(nest, attr_cb, tb) < 0 || !tb[IPVS_DEST_ATTR_PORT])
		return -EINVAL;
	int af = tb[IPVS_DEST_ATTR_ADDR_FAMILY] ? mnl_attr_get_u16(tb[IPVS_DEST_ATTR_ADDR_FAMILY])
						: AF_INET;
	if (get_addr(tb[IPVS_DEST_ATTR_ADDR], af, &out->addr) < 0)
		return -EINVAL;
	out->port = ntohs(mnl_attr_get_u16(tb[IPVS_DEST_ATTR_PORT]));
	const int keys[] = {IPVS_DEST_ATTR_FWD_METHOD, IPVS_DEST_ATTR_WEIGHT,
			    IPVS_DEST_ATTR_ACTIVE_CONNS, IPVS_DEST_ATTR_INACT_CONNS,
			    IPVS_DEST_ATTR_PERSIST_CONNS};
	uint32_t *v[] = {&out->fwd, &out->weight, &ctr->active, &ctr->inactive, &ctr->persist};
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		if (tb[keys[i]])
			*v[i] = mnl_attr_get_u32(tb[keys[i]]);
	out->fwd &= IP_VS_CONN_F_FWD_MASK;
	if (ctr != &ignored && (tb[IPVS_DEST_ATTR_STATS] || tb[IPVS_DEST_ATTR_STATS64]))
		get_stats(tb[IPVS_DEST_ATTR_STATS], tb[IPVS_DEST_ATTR_STATS64], &ctr->stats);
	return 0;
}

/* ---------------------------------------------------------------- diff */

void ipvs_ops_free(struct ipvs_ops *o)
{
	free(o->v);
	memset(o, 0, sizeof(*o));
}

static void op_add(struct ipvs_ops *o, enum ipvs_op_kind k, const struct ipvs_service *s,
		   const struct ipvs_dest *d)
{
	if (o->n == o->cap) {
		o->cap = o->cap ? 2 * o->cap : 16;
		o->v = xrealloc(o->v, o->cap * sizeof(*o->v));
	}
	o->v[o->n++] = (struct ipvs_op){k, s, d};
}

size_t ipvs_diff_service(const struct ipvs_service *want, const struct ipvs_service *have,
			 struct ipvs_ops *ops)
{
	size_t n0 = ops->n;
	if (!want) {
		if (have)
			op_add(ops, IPVS_OP_DEL_SVC, have, NULL);
		return ops->n - n0;
	}
	if (!have) {
		op_add(ops, IPVS_OP_ADD_SVC, want, NULL);
		for (size_t i = 0; i < want->ndests; i++)
			op_add(ops, IPVS_OP_ADD_DEST, want, &want->dests[i]);
		return ops->n - n0;
	}
	if (!ipvs_service_same(want, have))
		op_add(ops, IPVS_OP_SET_SVC, want, NULL);
	/* merge the two sorted lists: deletions first, so a replaced endpoint never leaves
	 * the service with more real servers than wanted */
	for (int pass = 0; pass < 2; pass++) {
		size_t i = 0, k = 0;
		while (i < want->ndests || k < have->ndests) {
			int c = i == want->ndests ? 1
				: k == have->ndests
				    ? -1
				    : ipvs_dest_cmp(&want->dests[i], &have->dests[k]);
			if (c > 0) {
				if (pass == 0)
					op_add(ops, IPVS_OP_DEL_DEST, have, &have->dests[k]);
				k++;
			} else if (c < 0) {
				if (pass == 1)
					op_add(ops, IPVS_OP_ADD_DEST, want, &want->dests[i]);
				i++;
			} else {
				const struct ipvs_dest *w = &want->dests[i], *h = &have->dests[k];
				if (pass == 1 && (w->weight != h->weight || w->fwd != h->fwd))
					op_add(ops, IPVS_OP_SET_DEST, want, w);
				i++;
				k++;
			}
		}
	}
	return ops->n - n0;
}

const char *ipvs_op_name(enum ipvs_op_kind k)
{
	static const char *const names[] = {"add service",	  "change service",
					    "delete service",	  "add real server",
					    "change real server", "delete real server"};
	return (unsigned)k < ARRAY_SIZE(names) ? names[k] : "?";
}

/* ---------------------------------------------------------------- the connection */

void ipvs_close(struct ipvs_conn *c)
{
	if (c->nl)
		mnl_socket_close(c->nl);
	c->nl = NULL;
}

struct family_ctx {
	uint16_t id;
};

static int family_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct family_ctx *f = arg;
	const struct nlattr *tb[ATTR_TB] = {0};
	if (mnl_attr_parse(nlh, sizeof(struct genlmsghdr), attr_cb, tb) < 0)
		return MNL_CB_ERROR;
	if (tb[CTRL_ATTR_FAMILY_ID])
		f->id = mnl_attr_get_u16(tb[CTRL_ATTR_FAMILY_ID]);
	return MNL_CB_OK;
}

/* Send one request and run cb on every reply until its ACK or the dump's end. */
static int request(struct ipvs_conn *c, struct nlmsghdr *nlh, mnl_cb_t cb, void *arg)
{
	nlh->nlmsg_seq = ++c->seq;
	if (mnl_socket_sendto(c->nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	size_t size = MNL_SOCKET_BUFFER_SIZE * 4;
	char *buf = xmalloc(size);
	int ret = 0;
	for (int guard = 0; guard < 1000000; guard++) {
		ssize_t n = mnl_socket_recvfrom(c->nl, buf, size);
		if (n < 0) {
			ret = errno == EAGAIN ? -ETIMEDOUT : -errno;
			break;
		}
		int r = mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, c->portid, cb, arg);
		if (r == MNL_CB_STOP)
			break;
		if (r < 0) {
			ret = -errno;
			break;
		}
	}
	free(buf);
	return ret;
}

int ipvs_open(struct ipvs_conn *c)
{
	if (c->nl)
		return 0;
	c->err[0] = '\0';
	c->nl = mnl_socket_open2(NETLINK_GENERIC, SOCK_CLOEXEC);
	if (!c->nl) {
		int e = -errno;
		snprintf(c->err, sizeof(c->err), "generic netlink socket: %s", strerror(-e));
		return e;
	}
	int on = 1;
	struct timeval tv = {.tv_sec = 10};
	if (mnl_socket_bind(c->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		int e = -errno;
		ipvs_close(c);
		return e;
	}
	mnl_socket_setsockopt(c->nl, NETLINK_CAP_ACK, &on, sizeof(on));
	setsockopt(mnl_socket_get_fd(c->nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	c->portid = mnl_socket_get_portid(c->nl);
	c->seq = (uint32_t)time(NULL) << 8;
	char buf[IPVS_MSG_MAX] __attribute__((aligned(8)));
	struct nlmsghdr *nlh =
	    genl_hdr(buf, sizeof(buf), GENL_ID_CTRL, CTRL_CMD_GETFAMILY, NLM_F_ACK);
	((struct genlmsghdr *)mnl_nlmsg_get_payload(nlh))->version = 1;
	mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, IPVS_GENL_NAME);
	struct family_ctx f = {0};
	int r = request(c, nlh, family_cb, &f);
	if (r == 0 && !f.id)
		r = -ENOENT;
	if (r < 0) {
		if (r == -ENOENT)
			snprintf(
			    c->err, sizeof(c->err),
			    "the kernel has no IPVS (generic netlink family \"%s\" not found): "
			    "is the ip_vs module loaded (modprobe ip_vs)?",
			    IPVS_GENL_NAME);
		else
			snprintf(c->err, sizeof(c->err), "resolving the IPVS netlink family: %s",
				 strerror(-r));
		ipvs_close(c);
		return r;
	}
	c->family = f.id;
	return 0;
}

void ipvs_table_free(struct ipvs_table *t)
{
	for (size_t i = 0; i < t->n; i++)
		ipvs_service_clear(&t->v[i]);
	free(t->v);
	memset(t, 0, sizeof(*t));
}

static int svc_cmp_q(const void *a, const void *b)
{
	return ipvs_service_cmp(a, b);
}

struct ipvs_service *ipvs_table_find(const struct ipvs_table *t, const struct ipvs_service *s)
{
	if (!t->n)
		return NULL;
	return bsearch(s, t->v, t->n, sizeof(*t->v), svc_cmp_q);
}

static int service_dump_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct ipvs_table *t = arg;
	struct ipvs_service s;
	if (ipvs_parse_service(nlh, &s) < 0 || s.fwmark)
		return MNL_CB_OK;
	if (t->n == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 64;
		t->v = xrealloc(t->v, t->cap * sizeof(*t->v));
	}
	t->v[t->n++] = s;
	return MNL_CB_OK;
}

static int dest_dump_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct ipvs_service *s = arg;
	struct ipvs_dest d;
	struct ipvs_dest_counters ctr;
	if (ipvs_parse_dest(nlh, &d, s->ctrs ? &ctr : NULL) == 0) {
		ipvs_service_add_dest(s, &d);
		if (s->ctrs)
			s->ctrs[s->ndests - 1] = ctr;
	}
	return MNL_CB_OK;
}

int ipvs_dump(struct ipvs_conn *c, struct ipvs_table *out, bool counters)
{
	ipvs_table_free(out);
	char buf[IPVS_MSG_MAX] __attribute__((aligned(8)));
	int r =
	    request(c, ipvs_build_service(buf, c->family, IPVS_CMD_GET_SERVICE, NLM_F_DUMP, NULL),
		    service_dump_cb, out);
	for (size_t i = 0; r == 0 && i < out->n; i++) {
		struct ipvs_service *s = &out->v[i];
		if (counters) /* grown with dests from here on (ipvs_service_add_dest) */
			s->ctrs = xcalloc(1, sizeof(*s->ctrs));
		r = request(c,
			    ipvs_build_dest(buf, c->family, IPVS_CMD_GET_DEST, NLM_F_DUMP, s, NULL),
			    dest_dump_cb, s);
		if (r == -ENOENT || r == -ESRCH) /* deleted meanwhile */
			r = 0;
		if (!counters && s->cap > s->ndests && s->ndests) { /* the writer keeps it */
			s->dests = xrealloc(s->dests, s->ndests * sizeof(*s->dests));
			s->cap = s->ndests;
		}
		ipvs_service_sort_dests(s);
	}
	if (r < 0) {
		snprintf(c->err, sizeof(c->err), "dumping the IPVS table: %s", strerror(-r));
		ipvs_table_free(out);
		return r;
	}
	if (out->n > 1)
		qsort(out->v, out->n, sizeof(*out->v), svc_cmp_q);
	return 0;
}

static struct nlmsghdr *op_msg(void *buf, uint16_t family, const struct ipvs_op *op)
{
	static const uint8_t cmd[] = {IPVS_CMD_NEW_SERVICE, IPVS_CMD_SET_SERVICE,
				      IPVS_CMD_DEL_SERVICE, IPVS_CMD_NEW_DEST,
				      IPVS_CMD_SET_DEST,    IPVS_CMD_DEL_DEST};
	if (op->kind <= IPVS_OP_DEL_SVC)
		return ipvs_build_service(buf, family, cmd[op->kind], NLM_F_ACK, op->svc);
	return ipvs_build_dest(buf, family, cmd[op->kind], NLM_F_ACK, op->svc, op->dest);
}

/* Read acknowledgements until every sequence number in [first, last] was answered. */
static int read_acks(struct ipvs_conn *c, uint32_t first, uint32_t last, const struct ipvs_op *ops,
		     int *ret)
{
	size_t pending = last - first + 1;
	char *buf = xmalloc(MNL_SOCKET_BUFFER_SIZE * 4);
	int r = 0;
	while (pending) {
		ssize_t n = mnl_socket_recvfrom(c->nl, buf, MNL_SOCKET_BUFFER_SIZE * 4);
		if (n < 0) {
			r = errno == EAGAIN ? -ETIMEDOUT : -errno;
			break;
		}
		int len = (int)n;
		for (const struct nlmsghdr *h = (const void *)buf; mnl_nlmsg_ok(h, len);
		     h = mnl_nlmsg_next(h, &len)) {
			if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_pid != c->portid ||
			    h->nlmsg_seq < first || h->nlmsg_seq > last)
				continue;
			pending--;
			const struct nlmsgerr *e = mnl_nlmsg_get_payload(h);
			if (e->error && !*ret) {
				const struct ipvs_op *op = &ops[h->nlmsg_seq - first];
				char k[64], d[IP_STRLEN + 16] = "", a[IP_STRLEN];
				if (op->dest)
					snprintf(d, sizeof(d), " -> %s:%u",
						 ip_fmt(&op->dest->addr, a), op->dest->port);
				*ret = e->error;
				snprintf(c->err, sizeof(c->err), "%s %s%s: %s",
					 ipvs_op_name(op->kind),
					 ipvs_service_key(op->svc, k, sizeof(k)), d,
					 strerror(-e->error));
			}
		}
	}
	free(buf);
	return r;
}

int ipvs_apply(struct ipvs_conn *c, const struct ipvs_op *ops, size_t n)
{
	const size_t chunk_bytes = 32 * 1024;
	char *buf = xmalloc(chunk_bytes + IPVS_MSG_MAX);
	int ret = 0;
	size_t i = 0;
	while (i < n) {
		size_t len = 0, start = i;
		uint32_t first = c->seq + 1;
		while (i < n && len < chunk_bytes) {
			struct nlmsghdr *nlh = op_msg(buf + len, c->family, &ops[i]);
			nlh->nlmsg_seq = ++c->seq;
			len += NLMSG_ALIGN(nlh->nlmsg_len);
			i++;
		}
		if (mnl_socket_sendto(c->nl, buf, len) < 0) {
			int e = -errno;
			snprintf(c->err, sizeof(c->err), "sending IPVS requests: %s", strerror(-e));
			ret = ret ? ret : e;
			break;
		}
		int r = read_acks(c, first, c->seq, ops + start, &ret);
		if (r < 0) {
			snprintf(c->err, sizeof(c->err), "reading IPVS acknowledgements: %s",
				 strerror(-r));
			ret = ret ? ret : r;
			break;
		}
	}
	free(buf);
	return ret;
}
