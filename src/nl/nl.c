/* nl: twill's one rtnetlink layer, on libmnl (rtnetlink(7), netlink(7)).
 *
 * Every request carries NLM_F_ACK and a fresh sequence number; replies are accepted
 * only when both their sequence number and port id match, so a stale reply left over
 * from an earlier (aborted) request can never be taken for the answer to this one.
 * Requests end at the ACK (NLMSG_ERROR) and dumps at NLMSG_DONE; a dump whose
 * callback fails is still read to its end so the socket stays usable.
 *
 * Received messages are parsed with mnl_attr_parse and a per-attribute policy
 * (mnl_attr_validate), after checking that the attributes tile their payload, so a
 * malformed message is rejected instead of being read out of bounds.
 *
 * The socket asks for NETLINK_GET_STRICT_CHK, so the kernel filters dumps by
 * table/protocol/ifindex itself; every filter is applied again here, because older
 * kernels (or families without strict support) silently ignore it. */
#include "nl/nl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/if_arp.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "lib/util.h"

#ifndef MNL_SOCKET_DUMP_SIZE
#define MNL_SOCKET_DUMP_SIZE 32768
#endif
/* Big enough for any one dump skb the kernel builds (it caps them at 32 KiB when the
 * reader's buffer allows), so MSG_TRUNC cannot happen. */
#define NL_RECV_SIZE 65536
/* The kernel always answers, but a bound keeps every loop finite even if it did not. */
#define NL_RECV_TIMEOUT_S 30

struct nl_sock {
	struct mnl_socket *mnl;
	uint32_t portid;
	uint32_t seq;
	char *rbuf; /* one reusable receive buffer for every reply and dump */
	char errmsg[256];
	char sbuf[NL_MSG_MAX] __attribute__((aligned(8)));
};

/* ---------------------------------------------------------------- socket ---- */

struct nl_sock *nl_open(void)
{
	struct mnl_socket *mnl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
	if (!mnl)
		return NULL;
	if (mnl_socket_bind(mnl, 0, MNL_SOCKET_AUTOPID) < 0) {
		int e = errno;
		mnl_socket_close(mnl);
		errno = e;
		return NULL;
	}
	int one = 1;
	/* Best effort: each only improves errors or filtering. */
	mnl_socket_setsockopt(mnl, NETLINK_CAP_ACK, &one, sizeof(one));
	mnl_socket_setsockopt(mnl, NETLINK_EXT_ACK, &one, sizeof(one));
	mnl_socket_setsockopt(mnl, NETLINK_GET_STRICT_CHK, &one, sizeof(one));
	struct timeval tv = {.tv_sec = NL_RECV_TIMEOUT_S};
	setsockopt(mnl_socket_get_fd(mnl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

	struct nl_sock *s = xcalloc(1, sizeof(*s));
	s->mnl = mnl;
	s->portid = mnl_socket_get_portid(mnl);
	s->seq = (uint32_t)time(NULL);
	s->rbuf =
	    xmalloc(NL_RECV_SIZE > MNL_SOCKET_DUMP_SIZE ? NL_RECV_SIZE : MNL_SOCKET_DUMP_SIZE);
	return s;
}

struct nl_sock *nl_open_netns(int nsfd)
{
	int saved;
	int r = netns_enter(nsfd, &saved);
	if (r < 0) {
		errno = -r;
		return NULL;
	}
	struct nl_sock *s = nl_open();
	int e = errno;
	r = netns_leave(saved);
	if (r < 0) {
		/* The thread is stranded in the other namespace; do not hide that. */
		nl_close(s);
		errno = -r;
		return NULL;
	}
	errno = e;
	return s;
}

void nl_close(struct nl_sock *s)
{
	if (!s)
		return;
	mnl_socket_close(s->mnl);
	free(s->rbuf);
	free(s);
}

const char *nl_errmsg(const struct nl_sock *s)
{
	return s ? s->errmsg : "";
}

/* Keep the kernel's extended-ACK text (NLMSGERR_ATTR_MSG) for nl_errmsg(). */
static void save_extack(struct nl_sock *s, const struct nlmsghdr *nlh, size_t hdr_len)
{
	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
		return;
	size_t plen = mnl_nlmsg_get_payload_len(nlh);
	if (hdr_len > plen)
		return;
	const struct nlattr *a = (const void *)((const char *)mnl_nlmsg_get_payload(nlh) + hdr_len);
	for (int rem = (int)(plen - hdr_len); mnl_attr_ok(a, rem);
	     rem -= MNL_ALIGN(a->nla_len), a = mnl_attr_next(a)) {
		if (mnl_attr_get_type(a) == NLMSGERR_ATTR_MSG &&
		    mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0) {
			str_copy(s->errmsg, sizeof(s->errmsg), mnl_attr_get_str(a));
			return;
		}
	}
}

typedef int (*msg_cb)(const struct nlmsghdr *nlh, void *arg);

static int send_all(struct nl_sock *s, const struct nlmsghdr *nlh)
{
	for (int tries = 0; tries < 100; tries++) {
		ssize_t n = mnl_socket_sendto(s->mnl, nlh, nlh->nlmsg_len);
		if (n == (ssize_t)nlh->nlmsg_len)
			return 0;
		if (n >= 0)
			return -EMSGSIZE;
		if (errno != EINTR)
			return -errno;
	}
	return -EINTR;
}

/* Send one request and read until its ACK or NLMSG_DONE. cb gets every reply
 * message (not ACK/DONE); once it returns non-zero it is not called again, the rest
 * of the reply is drained, and its value is returned. */
static int nl_talk(struct nl_sock *s, struct nlmsghdr *nlh, msg_cb cb, void *arg)
{
	nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_pid = 0;
	if (++s->seq == 0)
		s->seq = 1;
	nlh->nlmsg_seq = s->seq;
	uint32_t seq = s->seq;
	s->errmsg[0] = 0;

	int r = send_all(s, nlh);
	if (r < 0)
		return r;

	int cb_ret = 0;
	int eintr = 0;
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(s->mnl, s->rbuf, NL_RECV_SIZE);
		if (n < 0) {
			if (errno == EINTR && ++eintr < 1000)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return -ETIMEDOUT;
			return -errno;
		}
		int len = (int)n;
		const struct nlmsghdr *m = (const struct nlmsghdr *)s->rbuf;
		for (; mnl_nlmsg_ok(m, len); m = mnl_nlmsg_next(m, &len)) {
			if (m->nlmsg_seq != seq || m->nlmsg_pid != s->portid)
				continue; /* stale reply to an earlier request */
			if (m->nlmsg_type == NLMSG_ERROR) {
				if (mnl_nlmsg_get_payload_len(m) < sizeof(int))
					return -EBADMSG;
				const struct nlmsgerr *e = mnl_nlmsg_get_payload(m);
				size_t hdr = sizeof(*e);
				if (mnl_nlmsg_get_payload_len(m) < sizeof(*e))
					hdr = mnl_nlmsg_get_payload_len(m); /* no TLVs */
				else if (!(m->nlmsg_flags & NLM_F_CAPPED))
					hdr = sizeof(int) + NLMSG_ALIGN(e->msg.nlmsg_len);
				if (e->error)
					save_extack(s, m, hdr);
				if (cb_ret)
					return cb_ret;
				return e->error <= 0 ? e->error : -e->error;
			}
			if (m->nlmsg_type == NLMSG_DONE) {
				int err = 0;
				if (mnl_nlmsg_get_payload_len(m) >= sizeof(int))
					memcpy(&err, mnl_nlmsg_get_payload(m), sizeof(err));
				if (err < 0)
					save_extack(s, m, sizeof(int));
				if (cb_ret)
					return cb_ret;
				return err < 0 ? err : 0;
			}
			if (m->nlmsg_type < NLMSG_MIN_TYPE)
				continue; /* NOOP, OVERRUN */
			/* NLM_F_DUMP_INTR (the table changed during the dump) is not an error:
			 * callers reconcile against the kernel repeatedly anyway. */
			if (cb && !cb_ret)
				cb_ret = cb(m, arg);
		}
	}
}

static struct nlmsghdr *msg_start(void *buf, uint16_t type, uint16_t flags)
{
	memset(buf, 0, NL_MSG_MAX);
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	return nlh;
}

/* ----------------------------------------------------------- attributes ---- */

struct attr_tab {
	const struct nlattr **tb;
	const uint8_t *policy; /* enum mnl_attr_data_type per attribute type */
	uint16_t max;
};

static int attr_cb(const struct nlattr *a, void *data)
{
	struct attr_tab *t = data;
	uint16_t type = mnl_attr_get_type(a);
	if (type > t->max)
		return MNL_CB_OK; /* newer than what we know; we do not read it */
	if (t->policy[type] != MNL_TYPE_UNSPEC && mnl_attr_validate(a, t->policy[type]) < 0)
		return MNL_CB_ERROR;
	t->tb[type] = a;
	return MNL_CB_OK;
}

/* mnl_attr_parse stops silently at a broken attribute; make that an error. */
static bool attrs_tile(const void *payload, size_t len)
{
	const struct nlattr *a = payload;
	int rem = (int)len;
	while (mnl_attr_ok(a, rem)) {
		rem -= MNL_ALIGN(a->nla_len);
		a = (const struct nlattr *)((const char *)a + MNL_ALIGN(a->nla_len));
	}
	return rem <= 0;
}

static int parse_payload(const void *p, size_t len, const struct nlattr **tb, uint16_t max,
			 const uint8_t *policy)
{
	memset(tb, 0, (max + 1) * sizeof(*tb));
	if (!attrs_tile(p, len))
		return -EINVAL;
	struct attr_tab t = {tb, policy, max};
	if (mnl_attr_parse_payload(p, len, attr_cb, &t) < 0)
		return -EINVAL;
	return 0;
}

static int parse_msg(const struct nlmsghdr *nlh, size_t hdrlen, const struct nlattr **tb,
		     uint16_t max, const uint8_t *policy)
{
	size_t plen = mnl_nlmsg_get_payload_len(nlh);
	if (nlh->nlmsg_len < NLMSG_HDRLEN || plen < hdrlen)
		return -EINVAL;
	size_t off = MNL_ALIGN(hdrlen);
	if (off > plen)
		off = plen;
	return parse_payload((const char *)mnl_nlmsg_get_payload(nlh) + off, plen - off, tb, max,
			     policy);
}

static int parse_nested(const struct nlattr *nest, const struct nlattr **tb, uint16_t max,
			const uint8_t *policy)
{
	memset(tb, 0, (max + 1) * sizeof(*tb));
	if (!attrs_tile(mnl_attr_get_payload(nest), mnl_attr_get_payload_len(nest)))
		return -EINVAL;
	struct attr_tab t = {tb, policy, max};
	if (mnl_attr_parse_nested(nest, attr_cb, &t) < 0)
		return -EINVAL;
	return 0;
}

/* An address attribute of exactly the family's size. */
static int get_ip(const struct nlattr *a, int family, struct ipaddr *out)
{
	int n = ip_bytes(family);
	if (!n || mnl_attr_get_payload_len(a) != (uint16_t)n)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->family = family;
	memcpy(out->b, mnl_attr_get_payload(a), n);
	return 0;
}

static void put_ip(struct nlmsghdr *nlh, uint16_t type, const struct ipaddr *a)
{
	mnl_attr_put(nlh, type, ip_bytes(a->family), a->b);
}

/* ---------------------------------------------------------------- links ---- */

static const uint8_t link_policy[IFLA_MAX + 1] = {
    [IFLA_IFNAME] = MNL_TYPE_NUL_STRING, [IFLA_MTU] = MNL_TYPE_U32,
    [IFLA_MASTER] = MNL_TYPE_U32,	 [IFLA_LINK] = MNL_TYPE_U32,
    [IFLA_LINK_NETNSID] = MNL_TYPE_U32,	 [IFLA_LINKINFO] = MNL_TYPE_NESTED,
};
static const uint8_t linkinfo_policy[IFLA_INFO_MAX + 1] = {
    [IFLA_INFO_KIND] = MNL_TYPE_NUL_STRING,
    [IFLA_INFO_DATA] = MNL_TYPE_NESTED,
};
static const uint8_t vxlan_policy[IFLA_VXLAN_MAX + 1] = {
    [IFLA_VXLAN_ID] = MNL_TYPE_U32,	  [IFLA_VXLAN_LINK] = MNL_TYPE_U32,
    [IFLA_VXLAN_PORT] = MNL_TYPE_U16,	  [IFLA_VXLAN_LEARNING] = MNL_TYPE_U8,
    [IFLA_VXLAN_LOCAL] = MNL_TYPE_BINARY, [IFLA_VXLAN_LOCAL6] = MNL_TYPE_BINARY,
};

static int parse_vxlan(const struct nlattr *data, struct nl_link *out)
{
	const struct nlattr *tb[IFLA_VXLAN_MAX + 1];
	if (parse_nested(data, tb, IFLA_VXLAN_MAX, vxlan_policy) < 0)
		return -EINVAL;
	if (tb[IFLA_VXLAN_ID])
		out->vxlan_id = mnl_attr_get_u32(tb[IFLA_VXLAN_ID]);
	if (tb[IFLA_VXLAN_PORT])
		out->vxlan_port = ntohs(mnl_attr_get_u16(tb[IFLA_VXLAN_PORT]));
	if (tb[IFLA_VXLAN_LINK])
		out->vxlan_dev = (int)mnl_attr_get_u32(tb[IFLA_VXLAN_LINK]);
	if (tb[IFLA_VXLAN_LEARNING])
		out->vxlan_learning = mnl_attr_get_u8(tb[IFLA_VXLAN_LEARNING]) != 0;
	if (tb[IFLA_VXLAN_LOCAL] && get_ip(tb[IFLA_VXLAN_LOCAL], AF_INET, &out->vxlan_local) < 0)
		return -EINVAL;
	if (tb[IFLA_VXLAN_LOCAL6] && get_ip(tb[IFLA_VXLAN_LOCAL6], AF_INET6, &out->vxlan_local) < 0)
		return -EINVAL;
	return 0;
}

int nl_parse_link(const struct nlmsghdr *nlh, struct nl_link *out)
{
	memset(out, 0, sizeof(*out));
	out->link_netnsid = -1;
	if (nlh->nlmsg_type != RTM_NEWLINK && nlh->nlmsg_type != RTM_DELLINK)
		return -EINVAL;
	const struct nlattr *tb[IFLA_MAX + 1];
	if (parse_msg(nlh, sizeof(struct ifinfomsg), tb, IFLA_MAX, link_policy) < 0)
		return -EINVAL;
	const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
	out->index = ifi->ifi_index;
	out->up = (ifi->ifi_flags & IFF_UP) != 0;
	if (tb[IFLA_IFNAME])
		str_copy(out->name, sizeof(out->name), mnl_attr_get_str(tb[IFLA_IFNAME]));
	if (tb[IFLA_MTU])
		out->mtu = mnl_attr_get_u32(tb[IFLA_MTU]);
	if (tb[IFLA_ADDRESS] && mnl_attr_get_payload_len(tb[IFLA_ADDRESS]) == 6)
		memcpy(out->mac, mnl_attr_get_payload(tb[IFLA_ADDRESS]), 6);
	if (tb[IFLA_MASTER])
		out->master = (int)mnl_attr_get_u32(tb[IFLA_MASTER]);
	if (tb[IFLA_LINK])
		out->link = (int)mnl_attr_get_u32(tb[IFLA_LINK]);
	if (tb[IFLA_LINK_NETNSID])
		out->link_netnsid = (int32_t)mnl_attr_get_u32(tb[IFLA_LINK_NETNSID]);
	if (tb[IFLA_LINKINFO]) {
		const struct nlattr *info[IFLA_INFO_MAX + 1];
		if (parse_nested(tb[IFLA_LINKINFO], info, IFLA_INFO_MAX, linkinfo_policy) < 0)
			return -EINVAL;
		if (info[IFLA_INFO_KIND])
			str_copy(out->kind, sizeof(out->kind),
				 mnl_attr_get_str(info[IFLA_INFO_KIND]));
		if (!strcmp(out->kind, "vxlan") && info[IFLA_INFO_DATA] &&
		    parse_vxlan(info[IFLA_INFO_DATA], out) < 0)
			return -EINVAL;
	}
	return 0;
}

static bool ifname_ok(const char *name)
{
	return name && name[0] && strlen(name) < IFNAMSIZ;
}

static struct nlmsghdr *link_msg(struct nl_sock *s, uint16_t type, uint16_t flags, int index)
{
	struct nlmsghdr *nlh = msg_start(s->sbuf, type, flags);
	struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = index;
	return nlh;
}

struct link_get_ctx {
	struct nl_link *out;
	bool found;
};

static int link_get_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct link_get_ctx *c = arg;
	if (nlh->nlmsg_type != RTM_NEWLINK)
		return 0;
	int r = nl_parse_link(nlh, c->out);
	if (r < 0)
		return r;
	c->found = true;
	return 0;
}

static int link_get(struct nl_sock *s, const char *name, int index, struct nl_link *out)
{
	struct nlmsghdr *nlh = link_msg(s, RTM_GETLINK, 0, index);
	if (name)
		mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
	struct nl_link tmp;
	struct link_get_ctx c = {out ? out : &tmp, false};
	int r = nl_talk(s, nlh, link_get_cb, &c);
	if (r < 0)
		return r;
	return c.found ? 0 : -ENODEV;
}

int nl_link_get(struct nl_sock *s, const char *name, struct nl_link *out)
{
	if (!ifname_ok(name))
		return -EINVAL;
	return link_get(s, name, 0, out);
}

int nl_link_get_index(struct nl_sock *s, int index, struct nl_link *out)
{
	if (index <= 0)
		return -EINVAL;
	return link_get(s, NULL, index, out);
}

int nl_link_index(struct nl_sock *s, const char *name)
{
	struct nl_link l;
	int r = nl_link_get(s, name, &l);
	return r < 0 ? r : l.index;
}

struct link_dump_ctx {
	int (*cb)(const struct nl_link *l, void *arg);
	void *arg;
};

static int link_dump_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct link_dump_ctx *c = arg;
	if (nlh->nlmsg_type != RTM_NEWLINK)
		return 0;
	struct nl_link l;
	int r = nl_parse_link(nlh, &l);
	if (r < 0)
		return r;
	return c->cb(&l, c->arg);
}

int nl_link_dump(struct nl_sock *s, int (*cb)(const struct nl_link *l, void *arg), void *arg)
{
	struct nlmsghdr *nlh = link_msg(s, RTM_GETLINK, NLM_F_DUMP, 0);
	mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
	struct link_dump_ctx c = {cb, arg};
	return nl_talk(s, nlh, link_dump_cb, &c);
}

int nl_link_add_veth(struct nl_sock *s, const char *name, const uint8_t *mac, const char *peer,
		     const uint8_t *peer_mac, int peer_nsfd, unsigned mtu)
{
	if (!ifname_ok(name) || !ifname_ok(peer))
		return -EINVAL;
	struct nlmsghdr *nlh = link_msg(s, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0);
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	if (mac)
		mnl_attr_put(nlh, IFLA_ADDRESS, 6, mac);
	if (mtu)
		mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
	struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
	struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	struct nlattr *p = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
	/* The peer's attributes follow its own struct ifinfomsg inside VETH_INFO_PEER. */
	struct ifinfomsg *pifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*pifi));
	pifi->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, peer);
	if (peer_mac)
		mnl_attr_put(nlh, IFLA_ADDRESS, 6, peer_mac);
	if (mtu)
		mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
	if (peer_nsfd >= 0)
		mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)peer_nsfd);
	mnl_attr_nest_end(nlh, p);
	mnl_attr_nest_end(nlh, data);
	mnl_attr_nest_end(nlh, info);
	return nl_talk(s, nlh, NULL, NULL);
}

int nl_link_add_bridge(struct nl_sock *s, const char *name, unsigned mtu)
{
	if (!ifname_ok(name))
		return -EINVAL;
	struct nlmsghdr *nlh = link_msg(s, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0);
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	if (mtu)
		mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
	struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "bridge");
	mnl_attr_nest_end(nlh, info);
	return nl_talk(s, nlh, NULL, NULL);
}

int nl_link_add_vxlan(struct nl_sock *s, const char *name, const struct nl_vxlan *vx)
{
	if (!ifname_ok(name) || !vx || vx->vni >= (1u << 24))
		return -EINVAL;
	if (vx->local.family && !ip_is_set(&vx->local))
		return -EINVAL;
	struct nlmsghdr *nlh = link_msg(s, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0);
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	if (vx->mac)
		mnl_attr_put(nlh, IFLA_ADDRESS, 6, vx->mac);
	if (vx->mtu)
		mnl_attr_put_u32(nlh, IFLA_MTU, vx->mtu);
	struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "vxlan");
	struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	mnl_attr_put_u32(nlh, IFLA_VXLAN_ID, vx->vni);
	if (vx->local.family == AF_INET)
		put_ip(nlh, IFLA_VXLAN_LOCAL, &vx->local);
	else if (vx->local.family == AF_INET6)
		put_ip(nlh, IFLA_VXLAN_LOCAL6, &vx->local);
	if (vx->dev > 0)
		mnl_attr_put_u32(nlh, IFLA_VXLAN_LINK, (uint32_t)vx->dev);
	/* port 0 leaves the kernel's default destination port */
	if (vx->port)
		mnl_attr_put_u16(nlh, IFLA_VXLAN_PORT, htons(vx->port));
	mnl_attr_put_u8(nlh, IFLA_VXLAN_LEARNING, vx->learning ? 1 : 0);
	mnl_attr_nest_end(nlh, data);
	mnl_attr_nest_end(nlh, info);
	return nl_talk(s, nlh, NULL, NULL);
}

int nl_link_del(struct nl_sock *s, int index)
{
	if (index <= 0)
		return -EINVAL;
	return nl_talk(s, link_msg(s, RTM_DELLINK, 0, index), NULL, NULL);
}

int nl_link_set_up(struct nl_sock *s, int index, bool up)
{
	if (index <= 0)
		return -EINVAL;
	struct nlmsghdr *nlh = link_msg(s, RTM_NEWLINK, 0, index);
	struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
	ifi->ifi_change = IFF_UP;
	ifi->ifi_flags = up ? IFF_UP : 0;
	return nl_talk(s, nlh, NULL, NULL);
}

static int link_set_u32(struct nl_sock *s, int index, uint16_t attr, uint32_t v)
{
	if (index <= 0)
		return -EINVAL;
	struct nlmsghdr *nlh = link_msg(s, RTM_NEWLINK, 0, index);
	mnl_attr_put_u32(nlh, attr, v);
	return nl_talk(s, nlh, NULL, NULL);
}

int nl_link_set_mtu(struct nl_sock *s, int index, unsigned mtu)
{
	return link_set_u32(s, index, IFLA_MTU, mtu);
}

int nl_link_set_master(struct nl_sock *s, int index, int master)
{
	if (master < 0)
		return -EINVAL;
	return link_set_u32(s, index, IFLA_MASTER, (uint32_t)master);
}

int nl_link_set_netns(struct nl_sock *s, int index, int nsfd)
{
	if (nsfd < 0)
		return -EBADF;
	return link_set_u32(s, index, IFLA_NET_NS_FD, (uint32_t)nsfd);
}

int nl_link_set_mac(struct nl_sock *s, int index, const uint8_t mac[6])
{
	if (index <= 0 || !mac)
		return -EINVAL;
	struct nlmsghdr *nlh = link_msg(s, RTM_NEWLINK, 0, index);
	mnl_attr_put(nlh, IFLA_ADDRESS, 6, mac);
	return nl_talk(s, nlh, NULL, NULL);
}

int nl_link_set_name(struct nl_sock *s, int index, const char *name)
{
	if (index <= 0 || !ifname_ok(name))
		return -EINVAL;
	struct nlmsghdr *nlh = link_msg(s, RTM_NEWLINK, 0, index);
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	return nl_talk(s, nlh, NULL, NULL);
}

/* ------------------------------------------------------------ addresses ---- */

struct nlmsghdr *nl_build_addr(void *buf, uint16_t type, uint16_t flags, const struct nl_addr *a)
{
	struct nlmsghdr *nlh = msg_start(buf, type, flags);
	struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = (uint8_t)a->prefix.addr.family;
	ifa->ifa_prefixlen = a->prefix.len;
	ifa->ifa_flags = (uint8_t)(a->flags & 0xff);
	ifa->ifa_scope = a->scope;
	ifa->ifa_index = (uint32_t)a->index;
	if (ip_is_set(&a->prefix.addr)) {
		/* IFA_LOCAL == IFA_ADDRESS: a plain address without a peer, as `ip addr add` */
		put_ip(nlh, IFA_LOCAL, &a->prefix.addr);
		put_ip(nlh, IFA_ADDRESS, &a->prefix.addr);
	}
	if (a->flags & ~0xffu)
		mnl_attr_put_u32(nlh, IFA_FLAGS, a->flags);
	return nlh;
}

static const uint8_t addr_policy[IFA_MAX + 1] = {
    [IFA_ADDRESS] = MNL_TYPE_BINARY,
    [IFA_LOCAL] = MNL_TYPE_BINARY,
    [IFA_FLAGS] = MNL_TYPE_U32,
};

int nl_parse_addr(const struct nlmsghdr *nlh, struct nl_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (nlh->nlmsg_type != RTM_NEWADDR && nlh->nlmsg_type != RTM_DELADDR)
		return -EINVAL;
	const struct nlattr *tb[IFA_MAX + 1];
	if (parse_msg(nlh, sizeof(struct ifaddrmsg), tb, IFA_MAX, addr_policy) < 0)
		return -EINVAL;
	const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
	if (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6)
		return -ENOENT;
	if (ifa->ifa_prefixlen > ip_maxlen(ifa->ifa_family))
		return -EINVAL;
	/* IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on p2p links */
	const struct nlattr *a = tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
	if (!a)
		return -EINVAL;
	if (get_ip(a, ifa->ifa_family, &out->prefix.addr) < 0)
		return -EINVAL;
	out->prefix.len = ifa->ifa_prefixlen;
	out->index = (int)ifa->ifa_index;
	out->scope = ifa->ifa_scope;
	out->flags = tb[IFA_FLAGS] ? mnl_attr_get_u32(tb[IFA_FLAGS]) : ifa->ifa_flags;
	return 0;
}

struct addr_dump_ctx {
	int family, index;
	int (*cb)(const struct nl_addr *a, void *arg);
	void *arg;
};

static int addr_dump_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct addr_dump_ctx *c = arg;
	if (nlh->nlmsg_type != RTM_NEWADDR)
		return 0;
	struct nl_addr a;
	int r = nl_parse_addr(nlh, &a);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	if (c->family != AF_UNSPEC && a.prefix.addr.family != c->family)
		return 0;
	if (c->index && a.index != c->index)
		return 0;
	return c->cb(&a, c->arg);
}

int nl_addr_dump(struct nl_sock *s, int family, int index,
		 int (*cb)(const struct nl_addr *a, void *arg), void *arg)
{
	struct nlmsghdr *nlh = msg_start(s->sbuf, RTM_GETADDR, NLM_F_DUMP);
	struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = (uint8_t)family;
	ifa->ifa_index = (uint32_t)(index > 0 ? index : 0);
	struct addr_dump_ctx c = {family, index, cb, arg};
	return nl_talk(s, nlh, addr_dump_cb, &c);
}

static int addr_same_cb(const struct nl_addr *a, void *arg)
{
	const struct nl_addr *want = arg;
	return ip_eq(&a->prefix.addr, &want->prefix.addr) && a->prefix.len == want->prefix.len;
}

int nl_addr_add(struct nl_sock *s, const struct nl_addr *a)
{
	if (!ip_is_set(&a->prefix.addr) || a->index <= 0)
		return -EINVAL;
	int r = nl_talk(s, nl_build_addr(s->sbuf, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, a), NULL,
			NULL);
	if (r != -EEXIST)
		return r;
	/* Idempotent only when the very same address/length is already there. */
	int found = nl_addr_dump(s, a->prefix.addr.family, a->index, addr_same_cb, (void *)a);
	if (found < 0)
		return found;
	return found ? 0 : -EEXIST;
}

int nl_addr_del(struct nl_sock *s, const struct nl_addr *a)
{
	if (!ip_is_set(&a->prefix.addr) || a->index <= 0)
		return -EINVAL;
	return nl_talk(s, nl_build_addr(s->sbuf, RTM_DELADDR, 0, a), NULL, NULL);
}

/* --------------------------------------------------------------- routes ---- */

struct nlmsghdr *nl_build_route(void *buf, uint16_t type, uint16_t flags, const struct nl_route *r)
{
	struct nlmsghdr *nlh = msg_start(buf, type, flags);
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	int family = r->dst.addr.family;
	uint32_t table = r->table ? r->table : RT_TABLE_MAIN;
	struct ipprefix dst = r->dst;
	prefix_normalize(&dst);

	rtm->rtm_family = (uint8_t)family;
	rtm->rtm_dst_len = dst.len;
	rtm->rtm_table = table < 256 ? (uint8_t)table : RT_TABLE_UNSPEC;
	rtm->rtm_protocol = r->protocol;
	if (type == RTM_DELROUTE) {
		/* unset fields match anything, as with `ip route del` */
		rtm->rtm_scope = r->scope ? r->scope : RT_SCOPE_NOWHERE;
		rtm->rtm_type = r->type;
	} else {
		rtm->rtm_scope = r->scope;
		rtm->rtm_type = r->type ? r->type : RTN_UNICAST;
	}
	rtm->rtm_flags = r->flags;

	mnl_attr_put_u32(nlh, RTA_TABLE, table);
	if (dst.len > 0 && ip_bytes(family))
		put_ip(nlh, RTA_DST, &dst.addr);
	if (ip_is_set(&r->prefsrc))
		put_ip(nlh, RTA_PREFSRC, &r->prefsrc);
	if (ip_is_set(&r->gw)) {
		if (r->gw.family == family) {
			put_ip(nlh, RTA_GATEWAY, &r->gw);
		} else {
			/* e.g. an IPv4 route via an IPv6 next hop (RFC 5549) */
			uint8_t via[sizeof(struct rtvia) + 16];
			struct rtvia *v = (struct rtvia *)via;
			v->rtvia_family = (__kernel_sa_family_t)r->gw.family;
			memcpy(v->rtvia_addr, r->gw.b, ip_bytes(r->gw.family));
			mnl_attr_put(nlh, RTA_VIA, sizeof(struct rtvia) + ip_bytes(r->gw.family),
				     via);
		}
	}
	if (r->oif > 0)
		mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)r->oif);
	if (r->priority)
		mnl_attr_put_u32(nlh, RTA_PRIORITY, r->priority);
	if (r->mtu) {
		struct nlattr *m = mnl_attr_nest_start(nlh, RTA_METRICS);
		mnl_attr_put_u32(nlh, RTAX_MTU, r->mtu);
		mnl_attr_nest_end(nlh, m);
	}
	return nlh;
}

static const uint8_t route_policy[RTA_MAX + 1] = {
    [RTA_DST] = MNL_TYPE_BINARY, [RTA_GATEWAY] = MNL_TYPE_BINARY, [RTA_PREFSRC] = MNL_TYPE_BINARY,
    [RTA_VIA] = MNL_TYPE_BINARY, [RTA_OIF] = MNL_TYPE_U32,	  [RTA_PRIORITY] = MNL_TYPE_U32,
    [RTA_TABLE] = MNL_TYPE_U32,	 [RTA_METRICS] = MNL_TYPE_NESTED,
};
static const uint8_t metrics_policy[RTAX_MAX + 1] = {
    [RTAX_MTU] = MNL_TYPE_U32,
};

int nl_parse_route(const struct nlmsghdr *nlh, struct nl_route *out)
{
	memset(out, 0, sizeof(*out));
	if (nlh->nlmsg_type != RTM_NEWROUTE && nlh->nlmsg_type != RTM_DELROUTE)
		return -EINVAL;
	const struct nlattr *tb[RTA_MAX + 1];
	if (parse_msg(nlh, sizeof(struct rtmsg), tb, RTA_MAX, route_policy) < 0)
		return -EINVAL;
	const struct rtmsg *rtm = mnl_nlmsg_get_payload(nlh);
	int family = rtm->rtm_family;
	if (family != AF_INET && family != AF_INET6)
		return -ENOENT;
	if (rtm->rtm_flags & RTM_F_CLONED)
		return -ENOENT; /* cache entries, not configuration */
	if (rtm->rtm_dst_len > ip_maxlen(family))
		return -EINVAL;

	out->dst.addr.family = family;
	out->dst.len = rtm->rtm_dst_len;
	if (tb[RTA_DST] && get_ip(tb[RTA_DST], family, &out->dst.addr) < 0)
		return -EINVAL;
	if (tb[RTA_GATEWAY] && get_ip(tb[RTA_GATEWAY], family, &out->gw) < 0)
		return -EINVAL;
	if (tb[RTA_VIA]) {
		size_t len = mnl_attr_get_payload_len(tb[RTA_VIA]);
		if (len < sizeof(struct rtvia))
			return -EINVAL;
		const struct rtvia *v = mnl_attr_get_payload(tb[RTA_VIA]);
		int n = ip_bytes(v->rtvia_family);
		if (!n || len != sizeof(struct rtvia) + (size_t)n)
			return -EINVAL;
		out->gw.family = v->rtvia_family;
		memcpy(out->gw.b, v->rtvia_addr, n);
	}
	if (tb[RTA_PREFSRC] && get_ip(tb[RTA_PREFSRC], family, &out->prefsrc) < 0)
		return -EINVAL;
	if (tb[RTA_OIF])
		out->oif = (int)mnl_attr_get_u32(tb[RTA_OIF]);
	if (tb[RTA_PRIORITY])
		out->priority = mnl_attr_get_u32(tb[RTA_PRIORITY]);
	out->table = tb[RTA_TABLE] ? mnl_attr_get_u32(tb[RTA_TABLE]) : rtm->rtm_table;
	if (tb[RTA_METRICS]) {
		const struct nlattr *mx[RTAX_MAX + 1];
		if (parse_nested(tb[RTA_METRICS], mx, RTAX_MAX, metrics_policy) < 0)
			return -EINVAL;
		if (mx[RTAX_MTU])
			out->mtu = mnl_attr_get_u32(mx[RTAX_MTU]);
	}
	out->protocol = rtm->rtm_protocol;
	out->scope = rtm->rtm_scope;
	out->type = rtm->rtm_type;
	out->flags = rtm->rtm_flags;
	return 0;
}

static bool route_args_ok(const struct nl_route *r)
{
	return ip_bytes(r->dst.addr.family) && r->dst.len <= ip_maxlen(r->dst.addr.family) &&
	       (!r->gw.family || ip_is_set(&r->gw)) &&
	       (!r->prefsrc.family || r->prefsrc.family == r->dst.addr.family);
}

int nl_route_add(struct nl_sock *s, const struct nl_route *r, uint16_t nlm_flags)
{
	if (!route_args_ok(r))
		return -EINVAL;
	return nl_talk(s, nl_build_route(s->sbuf, RTM_NEWROUTE, nlm_flags, r), NULL, NULL);
}

int nl_route_del(struct nl_sock *s, const struct nl_route *r)
{
	if (!route_args_ok(r))
		return -EINVAL;
	return nl_talk(s, nl_build_route(s->sbuf, RTM_DELROUTE, 0, r), NULL, NULL);
}

struct nlmsghdr *nl_build_route_multipath(void *buf, uint16_t type, uint16_t flags,
					  const struct nl_route *r, const struct ipaddr *gws,
					  const int *oifs, size_t n)
{
	struct nl_route one = *r;
	one.gw = (struct ipaddr){0};
	one.oif = 0;
	if (n == 1) {
		one.gw = gws[0];
		one.oif = oifs ? oifs[0] : 0;
		return nl_build_route(buf, type, flags, &one);
	}
	struct nlmsghdr *nlh = nl_build_route(buf, type, flags, &one);
	struct nlattr *mp = mnl_attr_nest_start(nlh, RTA_MULTIPATH);
	for (size_t i = 0; i < n; i++) {
		struct rtnexthop *nh = mnl_nlmsg_get_payload_tail(nlh);
		size_t at = nlh->nlmsg_len;
		nlh->nlmsg_len += MNL_ALIGN(sizeof(*nh));
		memset(nh, 0, sizeof(*nh));
		nh->rtnh_ifindex = oifs ? oifs[i] : 0;
		if (gws[i].family == r->dst.addr.family) {
			put_ip(nlh, RTA_GATEWAY, &gws[i]);
		} else {
			uint8_t via[sizeof(struct rtvia) + 16];
			struct rtvia *v = (struct rtvia *)via;
			v->rtvia_family = (__kernel_sa_family_t)gws[i].family;
			memcpy(v->rtvia_addr, gws[i].b, ip_bytes(gws[i].family));
			mnl_attr_put(nlh, RTA_VIA, sizeof(struct rtvia) + ip_bytes(gws[i].family),
				     via);
		}
		nh = (struct rtnexthop *)((char *)nlh + at);
		nh->rtnh_len = (unsigned short)(nlh->nlmsg_len - at);
	}
	mnl_attr_nest_end(nlh, mp);
	return nlh;
}

static bool multipath_args_ok(const struct nl_route *r, const struct ipaddr *gws, size_t n)
{
	if (!n || n > 64 || !route_args_ok(r))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!ip_is_set(&gws[i]))
			return false;
	return true;
}

int nl_route_add_multipath(struct nl_sock *s, const struct nl_route *r, const struct ipaddr *gws,
			   const int *oifs, size_t n, uint16_t nlm_flags)
{
	if (!multipath_args_ok(r, gws, n))
		return -EINVAL;
	return nl_talk(s, nl_build_route_multipath(s->sbuf, RTM_NEWROUTE, nlm_flags, r, gws, oifs, n),
		       NULL, NULL);
}

/* -------------------------------------------------------------- batches ---- */

#define NL_BATCH_SIZE (64 * 1024) /* sent when this much is queued */
#define NL_BATCH_RCVBUF (4 << 20) /* room for the error ACKs of a whole batch */

struct nl_batch {
	struct nl_sock *s;
	nl_batch_err_fn err_cb;
	void *arg;
	char *buf; /* NL_BATCH_SIZE + one more message */
	size_t len, n, cap;
	uint32_t *off; /* offset of each queued message; its seq is seq0 + index */
	uint32_t seq0;
};

struct nl_batch *nl_batch_new(struct nl_sock *s, nl_batch_err_fn err_cb, void *arg)
{
	struct nl_batch *b = xcalloc(1, sizeof(*b));
	b->s = s;
	b->err_cb = err_cb;
	b->arg = arg;
	b->buf = xmalloc(NL_BATCH_SIZE + NL_MSG_MAX);
	int fd = mnl_socket_get_fd(s->mnl), sz = NL_BATCH_RCVBUF;
	/* best effort: an overrun is handled by the replay below */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	return b;
}

void nl_batch_free(struct nl_batch *b)
{
	if (!b)
		return;
	free(b->buf);
	free(b->off);
	free(b);
}

size_t nl_batch_queued(const struct nl_batch *b)
{
	return b->n;
}

static struct nlmsghdr *batch_msg(const struct nl_batch *b, size_t i)
{
	return (struct nlmsghdr *)(b->buf + b->off[i]);
}

static void batch_report(struct nl_batch *b, const struct nlmsghdr *req, int err)
{
	struct nl_route r;
	if (nl_parse_route(req, &r) < 0)
		memset(&r, 0, sizeof(r));
	if (b->err_cb)
		b->err_cb(&r, req->nlmsg_type, err, b->s->errmsg, b->arg);
}

/* After lost ACKs: every request again, one at a time, each with its own answer. */
static int batch_replay(struct nl_batch *b)
{
	char drain[4096];
	while (recv(mnl_socket_get_fd(b->s->mnl), drain, sizeof(drain), MSG_DONTWAIT) > 0)
		; /* whatever is left of the batch's answers */
	int fails = 0;
	for (size_t i = 0; i < b->n; i++) {
		struct nlmsghdr *m = batch_msg(b, i);
		memcpy(b->s->sbuf, m, m->nlmsg_len);
		int e = nl_talk(b->s, (struct nlmsghdr *)b->s->sbuf, NULL, NULL);
		if (e < 0) {
			fails++;
			batch_report(b, m, e);
		}
	}
	return fails;
}

int nl_batch_flush(struct nl_batch *b)
{
	if (!b->n)
		return 0;
	struct nl_sock *s = b->s;
	uint32_t last = b->seq0 + (uint32_t)(b->n - 1);
	batch_msg(b, b->n - 1)->nlmsg_flags |= NLM_F_ACK;
	int fails = 0, r = 0;
	ssize_t w;
	do
		w = mnl_socket_sendto(s->mnl, b->buf, b->len);
	while (w < 0 && errno == EINTR);
	if (w != (ssize_t)b->len) {
		r = w < 0 ? -errno : -EMSGSIZE;
		goto out;
	}
	for (int eintr = 0;;) {
		ssize_t n = mnl_socket_recvfrom(s->mnl, s->rbuf, NL_RECV_SIZE);
		if (n < 0) {
			if (errno == EINTR && ++eintr < 1000)
				continue;
			if (errno == ENOBUFS) { /* answers were dropped: ask again, one by one */
				r = batch_replay(b);
				goto out;
			}
			r = errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
			goto out;
		}
		int len = (int)n;
		const struct nlmsghdr *m = (const struct nlmsghdr *)s->rbuf;
		for (; mnl_nlmsg_ok(m, len); m = mnl_nlmsg_next(m, &len)) {
			uint32_t i = m->nlmsg_seq - b->seq0;
			if (m->nlmsg_pid != s->portid || i >= b->n || m->nlmsg_type != NLMSG_ERROR)
				continue; /* not ours, or stale */
			if (mnl_nlmsg_get_payload_len(m) < sizeof(struct nlmsgerr))
				continue;
			const struct nlmsgerr *e = mnl_nlmsg_get_payload(m);
			if (e->error) {
				s->errmsg[0] = 0;
				size_t hdr = m->nlmsg_flags & NLM_F_CAPPED
						 ? sizeof(*e)
						 : sizeof(int) + NLMSG_ALIGN(e->msg.nlmsg_len);
				save_extack(s, m, hdr);
				fails++;
				batch_report(b, batch_msg(b, i),
					     e->error < 0 ? e->error : -e->error);
			}
			if (m->nlmsg_seq == last) {
				r = fails;
				goto out;
			}
		}
	}
out:
	b->n = b->len = 0;
	return r;
}

static struct nlmsghdr *batch_slot(struct nl_batch *b)
{
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 1024;
		b->off = xrealloc(b->off, b->cap * sizeof(*b->off));
	}
	return (struct nlmsghdr *)(b->buf + b->len);
}

static int batch_queued(struct nl_batch *b, struct nlmsghdr *nlh)
{
	nlh->nlmsg_flags |= NLM_F_REQUEST;
	nlh->nlmsg_flags &= (uint16_t)~NLM_F_ACK; /* errors only; the last one asks (flush) */
	nlh->nlmsg_pid = 0;
	if (++b->s->seq == 0)
		b->s->seq = 1;
	if (!b->n)
		b->seq0 = b->s->seq;
	else if (b->s->seq != b->seq0 + (uint32_t)b->n) { /* wrapped past 0: start anew */
		int e = nl_batch_flush(b);
		if (e < 0)
			return e;
		return -EAGAIN;
	}
	nlh->nlmsg_seq = b->s->seq;
	b->off[b->n++] = (uint32_t)b->len;
	b->len += NLMSG_ALIGN(nlh->nlmsg_len);
	if (b->len >= NL_BATCH_SIZE) {
		int e = nl_batch_flush(b);
		return e < 0 ? e : 0;
	}
	return 0;
}

int nl_batch_route_add(struct nl_batch *b, const struct nl_route *r, const struct ipaddr *gws,
		       const int *oifs, size_t n, uint16_t nlm_flags)
{
	if (!multipath_args_ok(r, gws, n))
		return -EINVAL;
	for (int tries = 0; tries < 2; tries++) {
		int e = batch_queued(b, nl_build_route_multipath(batch_slot(b), RTM_NEWROUTE,
								 nlm_flags, r, gws, oifs, n));
		if (e != -EAGAIN)
			return e;
	}
	return -EAGAIN;
}

int nl_batch_route_del(struct nl_batch *b, const struct nl_route *r)
{
	if (!route_args_ok(r))
		return -EINVAL;
	for (int tries = 0; tries < 2; tries++) {
		int e = batch_queued(b, nl_build_route(batch_slot(b), RTM_DELROUTE, 0, r));
		if (e != -EAGAIN)
			return e;
	}
	return -EAGAIN;
}

struct route_get_ctx {
	struct nl_route *out;
	bool found;
};

static int route_get_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct route_get_ctx *c = arg;
	if (nlh->nlmsg_type != RTM_NEWROUTE || c->found)
		return 0;
	int r = nl_parse_route(nlh, c->out);
	if (r < 0)
		return r == -ENOENT ? 0 : r;
	c->found = true;
	return 0;
}

int nl_route_get(struct nl_sock *s, const struct ipaddr *dst, struct nl_route *out)
{
	if (!ip_bytes(dst->family))
		return -EINVAL;
	struct nlmsghdr *nlh = msg_start(s->sbuf, RTM_GETROUTE, 0);
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = (uint8_t)dst->family;
	rtm->rtm_dst_len = (uint8_t)ip_maxlen(dst->family);
	rtm->rtm_flags = RTM_F_FIB_MATCH;
	put_ip(nlh, RTA_DST, dst);
	struct route_get_ctx c = {out, false};
	int r = nl_talk(s, nlh, route_get_cb, &c);
	if (r < 0)
		return r;
	return c.found ? 0 : -ENOENT;
}

struct route_dump_ctx {
	int family;
	uint32_t table;
	uint8_t protocol;
	int (*cb)(const struct nl_route *r, void *arg);
	void *arg;
	int cb_ret;
};

static int route_dump_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct route_dump_ctx *c = arg;
	if (nlh->nlmsg_type != RTM_NEWROUTE)
		return 0;
	struct nl_route r;
	int e = nl_parse_route(nlh, &r);
	if (e == -ENOENT)
		return 0;
	if (e < 0)
		return e;
	if (r.dst.addr.family != c->family || r.table != c->table)
		return 0;
	if (c->protocol && r.protocol != c->protocol)
		return 0;
	return c->cb_ret = c->cb(&r, c->arg);
}

int nl_route_dump(struct nl_sock *s, int family, uint32_t table, uint8_t protocol,
		  int (*cb)(const struct nl_route *r, void *arg), void *arg)
{
	if (family != AF_INET && family != AF_INET6)
		return -EAFNOSUPPORT;
	if (!table)
		table = RT_TABLE_MAIN;
	struct nlmsghdr *nlh = msg_start(s->sbuf, RTM_GETROUTE, NLM_F_DUMP);
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = (uint8_t)family;
	rtm->rtm_table = table < 256 ? (uint8_t)table : RT_TABLE_UNSPEC;
	rtm->rtm_protocol = protocol;
	mnl_attr_put_u32(nlh, RTA_TABLE, table);
	struct route_dump_ctx c = {family, table, protocol, cb, arg, 0};
	int r = nl_talk(s, nlh, route_dump_cb, &c);
	/* With strict checking the kernel reports a table that does not exist (yet) */
	return r == -ENOENT && !c.cb_ret ? 0 : r;
}

/* ----------------------------------------------------------- neighbours ---- */

struct nlmsghdr *nl_build_neigh(void *buf, uint16_t type, uint16_t flags, const struct nl_neigh *n)
{
	struct nlmsghdr *nlh = msg_start(buf, type, flags);
	struct ndmsg *ndm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ndm));
	ndm->ndm_family = (uint8_t)n->family;
	ndm->ndm_ifindex = n->index;
	ndm->ndm_state = n->state;
	if (!ndm->ndm_state && type == RTM_NEWNEIGH)
		ndm->ndm_state = NUD_PERMANENT; /* iproute2's default */
	ndm->ndm_flags = n->flags;
	if (ip_is_set(&n->dst))
		put_ip(nlh, NDA_DST, &n->dst);
	if (n->has_lladdr)
		mnl_attr_put(nlh, NDA_LLADDR, 6, n->lladdr);
	return nlh;
}

static const uint8_t neigh_policy[NDA_MAX + 1] = {
    [NDA_DST] = MNL_TYPE_BINARY,
    [NDA_LLADDR] = MNL_TYPE_BINARY,
};

int nl_parse_neigh(const struct nlmsghdr *nlh, struct nl_neigh *out)
{
	memset(out, 0, sizeof(*out));
	if (nlh->nlmsg_type != RTM_NEWNEIGH && nlh->nlmsg_type != RTM_DELNEIGH)
		return -EINVAL;
	const struct nlattr *tb[NDA_MAX + 1];
	if (parse_msg(nlh, sizeof(struct ndmsg), tb, NDA_MAX, neigh_policy) < 0)
		return -EINVAL;
	const struct ndmsg *ndm = mnl_nlmsg_get_payload(nlh);
	if (ndm->ndm_family != AF_INET && ndm->ndm_family != AF_INET6 &&
	    ndm->ndm_family != AF_BRIDGE)
		return -ENOENT;
	out->family = ndm->ndm_family;
	out->index = ndm->ndm_ifindex;
	out->state = ndm->ndm_state;
	out->flags = ndm->ndm_flags;
	if (tb[NDA_DST]) {
		/* an FDB entry's remote may be either family: its length tells */
		int fam = ndm->ndm_family;
		if (fam == AF_BRIDGE)
			fam = mnl_attr_get_payload_len(tb[NDA_DST]) == 4 ? AF_INET : AF_INET6;
		if (get_ip(tb[NDA_DST], fam, &out->dst) < 0)
			return -EINVAL;
	}
	if (tb[NDA_LLADDR] && mnl_attr_get_payload_len(tb[NDA_LLADDR]) == 6) {
		memcpy(out->lladdr, mnl_attr_get_payload(tb[NDA_LLADDR]), 6);
		out->has_lladdr = true;
	}
	return 0;
}

static bool neigh_args_ok(const struct nl_neigh *n)
{
	if (n->index <= 0)
		return false;
	if (n->family == AF_BRIDGE)
		return n->has_lladdr && (!n->dst.family || ip_is_set(&n->dst));
	return (n->family == AF_INET || n->family == AF_INET6) && n->dst.family == n->family;
}

int nl_neigh_replace(struct nl_sock *s, const struct nl_neigh *n)
{
	if (!neigh_args_ok(n))
		return -EINVAL;
	return nl_talk(s, nl_build_neigh(s->sbuf, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, n),
		       NULL, NULL);
}

int nl_neigh_del(struct nl_sock *s, const struct nl_neigh *n)
{
	if (!neigh_args_ok(n))
		return -EINVAL;
	return nl_talk(s, nl_build_neigh(s->sbuf, RTM_DELNEIGH, 0, n), NULL, NULL);
}

struct neigh_dump_ctx {
	int family, index;
	int (*cb)(const struct nl_neigh *n, void *arg);
	void *arg;
};

static int neigh_dump_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct neigh_dump_ctx *c = arg;
	if (nlh->nlmsg_type != RTM_NEWNEIGH)
		return 0;
	struct nl_neigh n;
	int r = nl_parse_neigh(nlh, &n);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	if (n.family != c->family || (c->index && n.index != c->index))
		return 0;
	return c->cb(&n, c->arg);
}

int nl_neigh_dump(struct nl_sock *s, int family, int index,
		  int (*cb)(const struct nl_neigh *n, void *arg), void *arg)
{
	if (family != AF_INET && family != AF_INET6 && family != AF_BRIDGE)
		return -EAFNOSUPPORT;
	struct nlmsghdr *nlh = msg_start(s->sbuf, RTM_GETNEIGH, NLM_F_DUMP);
	struct ndmsg *ndm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ndm));
	ndm->ndm_family = (uint8_t)family;
	/* strict checking wants the header's ifindex 0 for ARP/ND dumps: filter by attribute */
	if (index > 0)
		mnl_attr_put_u32(nlh, NDA_IFINDEX, (uint32_t)index);
	struct neigh_dump_ctx c = {family, index, cb, arg};
	return nl_talk(s, nlh, neigh_dump_cb, &c);
}
