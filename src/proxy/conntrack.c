/* conntrack: stale conntrack entry deletion over ctnetlink (see conntrack.h).  Message format
 * after the kernel's include/uapi/linux/netfilter/nfnetlink_conntrack.h: a dump is
 * IPCTNL_MSG_CT_GET with NLM_F_DUMP; a delete is IPCTNL_MSG_CT_DELETE naming the entry by its
 * original tuple (CTA_TUPLE_ORIG) and zone. */
#include <netinet/in.h>

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "lib/log.h"
#include "lib/util.h"
#include "proxy/conntrack.h"

#define SUB "conntrack"

bool ct_entry_matches(const struct ct_entry *e, const struct ct_match *m)
{
	size_t alen = e->family == AF_INET6 ? 16 : 4;
	return e->family == m->family && e->l4 == m->l4 && !memcmp(e->odst, m->dst, alen) &&
	       e->odport == m->dport && !memcmp(e->rsrc, m->rsrc, alen) && e->rsport == m->rsport;
}

static int nested_cb(const struct nlattr *a, void *data)
{
	const struct nlattr **tb = data;
	uint16_t t = mnl_attr_get_type(a);
	if (t <= CTA_MAX) /* CTA_MAX is the largest of the attribute spaces read here */
		tb[t] = a;
	return MNL_CB_OK;
}

static int parse_tuple(const struct nlattr *nest, int family, uint8_t *l4, uint8_t *src,
		       uint8_t *dst, uint16_t *sport, uint16_t *dport)
{
	bool v6 = family == AF_INET6;
	uint16_t tsrc = v6 ? CTA_IP_V6_SRC : CTA_IP_V4_SRC;
	uint16_t tdst = v6 ? CTA_IP_V6_DST : CTA_IP_V4_DST;
	size_t alen = v6 ? 16 : 4;
	const struct nlattr *tb[CTA_MAX + 1] = {0};
	if (mnl_attr_parse_nested(nest, nested_cb, tb) < 0 || !tb[CTA_TUPLE_IP] ||
	    !tb[CTA_TUPLE_PROTO])
		return -EINVAL;
	const struct nlattr *ip[CTA_MAX + 1] = {0};
	const struct nlattr *pr[CTA_MAX + 1] = {0};
	if (mnl_attr_parse_nested(tb[CTA_TUPLE_IP], nested_cb, ip) < 0 ||
	    mnl_attr_parse_nested(tb[CTA_TUPLE_PROTO], nested_cb, pr) < 0)
		return -EINVAL;
	if (!ip[tsrc] || !ip[tdst] || !pr[CTA_PROTO_NUM] ||
	    mnl_attr_get_payload_len(ip[tsrc]) != alen ||
	    mnl_attr_get_payload_len(ip[tdst]) != alen)
		return -EINVAL;
	memcpy(src, mnl_attr_get_payload(ip[tsrc]), alen);
	memcpy(dst, mnl_attr_get_payload(ip[tdst]), alen);
	*l4 = mnl_attr_get_u8(pr[CTA_PROTO_NUM]);
	*sport = pr[CTA_PROTO_SRC_PORT] ? ntohs(mnl_attr_get_u16(pr[CTA_PROTO_SRC_PORT])) : 0;
	*dport = pr[CTA_PROTO_DST_PORT] ? ntohs(mnl_attr_get_u16(pr[CTA_PROTO_DST_PORT])) : 0;
	return 0;
}

int ct_entry_parse(const struct nlmsghdr *nlh, struct ct_entry *e)
{
	memset(e, 0, sizeof(*e));
	if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(struct nfgenmsg)))
		return -EINVAL;
	const struct nfgenmsg *g = mnl_nlmsg_get_payload(nlh);
	if (g->nfgen_family != AF_INET && g->nfgen_family != AF_INET6)
		return -EINVAL;
	e->family = g->nfgen_family;
	const struct nlattr *tb[CTA_MAX + 1] = {0};
	if (mnl_attr_parse(nlh, sizeof(struct nfgenmsg), nested_cb, tb) < 0 ||
	    !tb[CTA_TUPLE_ORIG] || !tb[CTA_TUPLE_REPLY])
		return -EINVAL;
	uint8_t l4r;
	if (parse_tuple(tb[CTA_TUPLE_ORIG], e->family, &e->l4, e->osrc, e->odst, &e->osport,
			&e->odport) < 0 ||
	    parse_tuple(tb[CTA_TUPLE_REPLY], e->family, &l4r, e->rsrc, e->rdst, &e->rsport,
			&e->rdport) < 0)
		return -EINVAL;
	if (tb[CTA_ZONE])
		e->zone = ntohs(mnl_attr_get_u16(tb[CTA_ZONE]));
	return 0;
}

static struct mnl_socket *ct_open(void)
{
	struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
	if (!nl)
		return NULL;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		int r = errno;
		mnl_socket_close(nl);
		errno = r;
		return NULL;
	}
	/* never block the caller's sync loop on a lost reply: fail, and let it retry */
	struct timeval tv = {.tv_sec = 5};
	setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return nl;
}

/* family AF_UNSPEC: a dump of every family */
static struct nlmsghdr *ct_hdr(char *buf, uint16_t type, uint16_t flags, uint32_t seq,
			       uint8_t family)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	nlh->nlmsg_seq = seq;
	struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->nfgen_family = family;
	g->version = NFNETLINK_V0;
	g->res_id = 0;
	return nlh;
}

struct dump_ctx {
	int (*fn)(const struct ct_entry *e, void *arg);
	void *arg;
	int stop;
};

static int dump_cb(const struct nlmsghdr *nlh, void *data)
{
	struct dump_ctx *c = data;
	struct ct_entry e;
	if (c->stop || ct_entry_parse(nlh, &e) < 0)
		return MNL_CB_OK;
	c->stop = c->fn(&e, c->arg);
	return MNL_CB_OK; /* read the dump to its end even when stopping */
}

static int dump_on(struct mnl_socket *nl, int (*fn)(const struct ct_entry *e, void *arg), void *arg)
{
	char *buf = xmalloc(MNL_SOCKET_BUFFER_SIZE * 4);
	uint32_t seq = (uint32_t)time(NULL);
	struct nlmsghdr *nlh = ct_hdr(buf, IPCTNL_MSG_CT_GET, NLM_F_DUMP, seq, AF_UNSPEC);
	int r = 0;
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
		r = -errno;
		goto out;
	}
	struct dump_ctx c = {fn, arg, 0};
	uint32_t portid = mnl_socket_get_portid(nl);
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl, buf, MNL_SOCKET_BUFFER_SIZE * 4);
		if (n < 0) {
			r = -errno;
			break;
		}
		int cr = mnl_cb_run(buf, (size_t)n, seq, portid, dump_cb, &c);
		if (cr < 0) {
			r = -errno;
			break;
		}
		if (cr == MNL_CB_STOP)
			break;
	}
out:
	free(buf);
	return r;
}

int ct_dump(int (*fn)(const struct ct_entry *e, void *arg), void *arg)
{
	struct mnl_socket *nl = ct_open();
	if (!nl)
		return -errno;
	int r = dump_on(nl, fn, arg);
	mnl_socket_close(nl);
	return r;
}

struct collect {
	const struct ct_match *m;
	size_t n;
	struct ct_entry *v;
	size_t nv, cap;
};

static int collect_cb(const struct ct_entry *e, void *arg)
{
	struct collect *c = arg;
	for (size_t i = 0; i < c->n; i++)
		if (ct_entry_matches(e, &c->m[i])) {
			if (c->nv == c->cap) {
				c->cap = c->cap ? 2 * c->cap : 16;
				c->v = xrealloc(c->v, c->cap * sizeof(*c->v));
			}
			c->v[c->nv++] = *e;
			break;
		}
	return 0;
}

static int delete_one(struct mnl_socket *nl, const struct ct_entry *e, uint32_t seq)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = ct_hdr(buf, IPCTNL_MSG_CT_DELETE, NLM_F_ACK, seq, e->family);
	struct nlattr *t = mnl_attr_nest_start(nlh, CTA_TUPLE_ORIG);
	struct nlattr *ip = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
	bool v6 = e->family == AF_INET6;
	mnl_attr_put(nlh, v6 ? CTA_IP_V6_SRC : CTA_IP_V4_SRC, v6 ? 16 : 4, e->osrc);
	mnl_attr_put(nlh, v6 ? CTA_IP_V6_DST : CTA_IP_V4_DST, v6 ? 16 : 4, e->odst);
	mnl_attr_nest_end(nlh, ip);
	struct nlattr *pr = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
	mnl_attr_put_u8(nlh, CTA_PROTO_NUM, e->l4);
	mnl_attr_put_u16(nlh, CTA_PROTO_SRC_PORT, htons(e->osport));
	mnl_attr_put_u16(nlh, CTA_PROTO_DST_PORT, htons(e->odport));
	mnl_attr_nest_end(nlh, pr);
	mnl_attr_nest_end(nlh, t);
	if (e->zone)
		mnl_attr_put_u16(nlh, CTA_ZONE, htons(e->zone));
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
	if (n < 0)
		return -errno;
	if (mnl_cb_run(buf, (size_t)n, seq, mnl_socket_get_portid(nl), NULL, NULL) < 0)
		return -errno;
	return 0;
}

int ct_delete_matching(const struct ct_match *m, size_t n)
{
	if (!n)
		return 0;
	struct mnl_socket *nl = ct_open();
	if (!nl)
		return -errno;
	struct collect c = {.m = m, .n = n};
	int r = dump_on(nl, collect_cb, &c);
	int deleted = 0;
	uint32_t seq = (uint32_t)time(NULL) + 1;
	for (size_t i = 0; r == 0 && i < c.nv; i++) {
		int d = delete_one(nl, &c.v[i], seq++);
		if (d == 0)
			deleted++;
		else if (d != -ENOENT) /* gone meanwhile is fine */
			r = d;
	}
	free(c.v);
	mnl_socket_close(nl);
	return r < 0 ? r : deleted;
}
