/* nl_wg: WireGuard's generic netlink family with libmnl; see nl_wg.h. */
#include "nl/nl_wg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/if.h>
#include <linux/wireguard.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "lib/util.h"
#include "nl/nl.h"

struct nl_wg {
	struct mnl_socket *nl;
	uint32_t portid, seq;
	uint16_t family;
};

void nl_wg_dev_free(struct nl_wg_dev *d)
{
	free(d->peers);
	memset(d, 0, sizeof(*d));
}

/* ---- building ---- */

static struct nlmsghdr *genl_put(void *buf, uint16_t type, uint16_t flags, uint8_t cmd,
				 uint8_t version)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	struct genlmsghdr *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->cmd = cmd;
	g->version = version;
	return nlh;
}

/* Nested attributes carry NLA_F_NESTED, which strict validation requires. */
static struct nlattr *nest_start(struct nlmsghdr *nlh, size_t size, uint16_t type)
{
	struct nlattr *a = mnl_attr_nest_start_check(nlh, size, type);
	if (a)
		a->nla_type |= NLA_F_NESTED;
	return a;
}

static bool ifname_ok(const char *ifname)
{
	return ifname && *ifname && strlen(ifname) < IFNAMSIZ && !strchr(ifname, '/');
}

struct nlmsghdr *nl_wg_build_family(void *buf)
{
	memset(buf, 0, NL_MSG_MAX);
	struct nlmsghdr *nlh = genl_put(buf, GENL_ID_CTRL, NLM_F_ACK, CTRL_CMD_GETFAMILY, 1);
	mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, WG_GENL_NAME);
	return nlh;
}

struct nlmsghdr *nl_wg_build_get(void *buf, uint16_t family, const char *ifname)
{
	if (!ifname_ok(ifname))
		return NULL;
	memset(buf, 0, NL_MSG_MAX);
	struct nlmsghdr *nlh =
	    genl_put(buf, family, NLM_F_ACK | NLM_F_DUMP, WG_CMD_GET_DEVICE, WG_GENL_VERSION);
	mnl_attr_put_strz(nlh, WGDEVICE_A_IFNAME, ifname);
	return nlh;
}

/* One peer as an element of WGDEVICE_A_PEERS; false (and nothing added) when it does not
 * fit in size. */
static bool put_peer(struct nlmsghdr *nlh, size_t size, uint16_t idx, const struct nl_wg_peer *p)
{
	struct nlattr *pn = nest_start(nlh, size, idx);
	if (!pn)
		return false;
	bool ok = mnl_attr_put_check(nlh, size, WGPEER_A_PUBLIC_KEY, NL_WG_KEY_LEN, p->key);
	if (ok && p->flags)
		ok = mnl_attr_put_u32_check(nlh, size, WGPEER_A_FLAGS, p->flags);
	if (ok && p->endpoint.family == AF_INET) {
		struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(p->port)};
		sin.sin_addr = p->endpoint.v4;
		ok = mnl_attr_put_check(nlh, size, WGPEER_A_ENDPOINT, sizeof(sin), &sin);
	} else if (ok && p->endpoint.family == AF_INET6) {
		struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(p->port)};
		sin6.sin6_addr = p->endpoint.v6;
		ok = mnl_attr_put_check(nlh, size, WGPEER_A_ENDPOINT, sizeof(sin6), &sin6);
	}
	if (ok && !(p->flags & WGPEER_F_REMOVE_ME))
		ok = mnl_attr_put_u16_check(nlh, size, WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL,
					    p->keepalive);
	if (ok && (p->nallowed || (p->flags & WGPEER_F_REPLACE_ALLOWEDIPS))) {
		struct nlattr *an = nest_start(nlh, size, WGPEER_A_ALLOWEDIPS);
		ok = an != NULL;
		for (size_t i = 0; ok && i < p->nallowed && i < NL_WG_MAX_ALLOWED; i++) {
			const struct ipprefix *a = &p->allowed[i];
			struct nlattr *in = nest_start(nlh, size, (uint16_t)i);
			ok = in &&
			     mnl_attr_put_u16_check(nlh, size, WGALLOWEDIP_A_FAMILY,
						    (uint16_t)a->addr.family) &&
			     mnl_attr_put_check(nlh, size, WGALLOWEDIP_A_IPADDR,
						(size_t)ip_bytes(a->addr.family), a->addr.b) &&
			     mnl_attr_put_u8_check(nlh, size, WGALLOWEDIP_A_CIDR_MASK, a->len);
			if (ok)
				mnl_attr_nest_end(nlh, in);
		}
		if (ok)
			mnl_attr_nest_end(nlh, an);
	}
	if (!ok) {
		mnl_attr_nest_cancel(nlh, pn);
		return false;
	}
	mnl_attr_nest_end(nlh, pn);
	return true;
}

struct nlmsghdr *nl_wg_build_set(void *buf, size_t size, uint16_t family, const char *ifname,
				 const struct nl_wg_dev *d, size_t *next)
{
	if (!ifname_ok(ifname) || size < MNL_NLMSG_HDRLEN + 256)
		return NULL;
	memset(buf, 0, size);
	struct nlmsghdr *nlh = genl_put(buf, family, NLM_F_ACK, WG_CMD_SET_DEVICE, WG_GENL_VERSION);
	mnl_attr_put_strz(nlh, WGDEVICE_A_IFNAME, ifname);
	if (*next == 0) {
		if (d->has_private_key)
			mnl_attr_put(nlh, WGDEVICE_A_PRIVATE_KEY, NL_WG_KEY_LEN, d->private_key);
		if (d->has_port)
			mnl_attr_put_u16(nlh, WGDEVICE_A_LISTEN_PORT, d->port);
		if (d->flags)
			mnl_attr_put_u32(nlh, WGDEVICE_A_FLAGS, d->flags);
	}
	if (*next >= d->npeers)
		return nlh;
	struct nlattr *peers = nest_start(nlh, size, WGDEVICE_A_PEERS);
	if (!peers)
		return NULL;
	size_t i = *next, first = *next;
	while (i < d->npeers && put_peer(nlh, size, (uint16_t)(i - first), &d->peers[i]))
		i++;
	if (i == first)
		return NULL;
	mnl_attr_nest_end(nlh, peers);
	*next = i;
	return nlh;
}

/* ---- parsing ---- */

int nl_wg_parse_family(const struct nlmsghdr *nlh)
{
	const struct nlattr *a;
	mnl_attr_for_each(a, nlh, sizeof(struct genlmsghdr))
	{
		if (mnl_attr_get_type(a) == CTRL_ATTR_FAMILY_ID &&
		    mnl_attr_get_payload_len(a) >= sizeof(uint16_t))
			return mnl_attr_get_u16(a);
	}
	return -ENOENT;
}

static int parse_allowed(const struct nlattr *nest, struct ipprefix *out)
{
	const struct nlattr *a;
	int family = 0;
	const void *addr = NULL;
	size_t addrlen = 0;
	int mask = -1;
	mnl_attr_for_each_nested(a, nest)
	{
		switch (mnl_attr_get_type(a)) {
		case WGALLOWEDIP_A_FAMILY:
			if (mnl_attr_validate(a, MNL_TYPE_U16) < 0)
				return -EINVAL;
			family = mnl_attr_get_u16(a);
			break;
		case WGALLOWEDIP_A_IPADDR:
			addr = mnl_attr_get_payload(a);
			addrlen = mnl_attr_get_payload_len(a);
			break;
		case WGALLOWEDIP_A_CIDR_MASK:
			if (mnl_attr_validate(a, MNL_TYPE_U8) < 0)
				return -EINVAL;
			mask = mnl_attr_get_u8(a);
			break;
		}
	}
	if ((family != AF_INET && family != AF_INET6) || !addr ||
	    addrlen != (size_t)ip_bytes(family) || mask < 0 || mask > ip_maxlen(family))
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->addr.family = family;
	memcpy(out->addr.b, addr, addrlen);
	out->len = (uint8_t)mask;
	return 0;
}

static int parse_endpoint(const struct nlattr *a, struct nl_wg_peer *p)
{
	size_t len = mnl_attr_get_payload_len(a);
	const void *v = mnl_attr_get_payload(a);
	if (len >= sizeof(struct sockaddr_in) &&
	    ((const struct sockaddr *)v)->sa_family == AF_INET) {
		struct sockaddr_in sin;
		memcpy(&sin, v, sizeof(sin));
		p->endpoint.family = AF_INET;
		p->endpoint.v4 = sin.sin_addr;
		p->port = ntohs(sin.sin_port);
	} else if (len >= sizeof(struct sockaddr_in6) &&
		   ((const struct sockaddr *)v)->sa_family == AF_INET6) {
		struct sockaddr_in6 sin6;
		memcpy(&sin6, v, sizeof(sin6));
		p->endpoint.family = AF_INET6;
		p->endpoint.v6 = sin6.sin6_addr;
		p->port = ntohs(sin6.sin6_port);
	} else {
		return -EINVAL;
	}
	return 0;
}

/* One element of WGDEVICE_A_PEERS into p (zeroed by the caller). */
static int parse_peer(const struct nlattr *nest, struct nl_wg_peer *p, bool *has_key)
{
	const struct nlattr *a;
	*has_key = false;
	mnl_attr_for_each_nested(a, nest)
	{
		size_t len = mnl_attr_get_payload_len(a);
		switch (mnl_attr_get_type(a)) {
		case WGPEER_A_PUBLIC_KEY:
			if (len != NL_WG_KEY_LEN)
				return -EINVAL;
			memcpy(p->key, mnl_attr_get_payload(a), NL_WG_KEY_LEN);
			*has_key = true;
			break;
		case WGPEER_A_ENDPOINT:
			if (parse_endpoint(a, p) < 0)
				return -EINVAL;
			break;
		case WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL:
			if (mnl_attr_validate(a, MNL_TYPE_U16) < 0)
				return -EINVAL;
			p->keepalive = mnl_attr_get_u16(a);
			break;
		case WGPEER_A_RX_BYTES:
			if (mnl_attr_validate(a, MNL_TYPE_U64) < 0)
				return -EINVAL;
			p->rx_bytes = mnl_attr_get_u64(a);
			break;
		case WGPEER_A_TX_BYTES:
			if (mnl_attr_validate(a, MNL_TYPE_U64) < 0)
				return -EINVAL;
			p->tx_bytes = mnl_attr_get_u64(a);
			break;
		case WGPEER_A_LAST_HANDSHAKE_TIME:
			if (len >= sizeof(int64_t)) {
				int64_t sec;
				memcpy(&sec, mnl_attr_get_payload(a), sizeof(sec));
				p->last_handshake = sec;
			}
			break;
		case WGPEER_A_ALLOWEDIPS: {
			const struct nlattr *in;
			mnl_attr_for_each_nested(in, a)
			{
				struct ipprefix pr;
				if (parse_allowed(in, &pr) < 0)
					return -EINVAL;
				if (p->nallowed < NL_WG_MAX_ALLOWED)
					p->allowed[p->nallowed++] = pr;
			}
			break;
		}
		}
	}
	return 0;
}

static void merge_allowed(struct nl_wg_peer *dst, const struct nl_wg_peer *src)
{
	for (size_t i = 0; i < src->nallowed && dst->nallowed < NL_WG_MAX_ALLOWED; i++)
		dst->allowed[dst->nallowed++] = src->allowed[i];
}

int nl_wg_parse_dev(const struct nlmsghdr *nlh, struct nl_wg_dev *acc)
{
	if (nlh->nlmsg_len < MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(struct genlmsghdr)))
		return -EINVAL;
	const struct nlattr *a;
	bool first_peer = true;
	mnl_attr_for_each(a, nlh, sizeof(struct genlmsghdr))
	{
		size_t len = mnl_attr_get_payload_len(a);
		switch (mnl_attr_get_type(a)) {
		case WGDEVICE_A_IFINDEX:
			if (mnl_attr_validate(a, MNL_TYPE_U32) < 0)
				return -EINVAL;
			acc->ifindex = (int)mnl_attr_get_u32(a);
			break;
		case WGDEVICE_A_PRIVATE_KEY:
			if (len != NL_WG_KEY_LEN)
				return -EINVAL;
			memcpy(acc->private_key, mnl_attr_get_payload(a), NL_WG_KEY_LEN);
			acc->has_private_key = true;
			break;
		case WGDEVICE_A_PUBLIC_KEY:
			if (len != NL_WG_KEY_LEN)
				return -EINVAL;
			memcpy(acc->public_key, mnl_attr_get_payload(a), NL_WG_KEY_LEN);
			acc->has_public_key = true;
			break;
		case WGDEVICE_A_LISTEN_PORT:
			if (mnl_attr_validate(a, MNL_TYPE_U16) < 0)
				return -EINVAL;
			acc->port = mnl_attr_get_u16(a);
			acc->has_port = true;
			break;
		case WGDEVICE_A_PEERS: {
			const struct nlattr *pn;
			mnl_attr_for_each_nested(pn, a)
			{
				struct nl_wg_peer p = {0};
				bool has_key;
				if (parse_peer(pn, &p, &has_key) < 0 || !has_key)
					return -EINVAL;
				/* a peer whose allowed IPs went on in this message */
				if (first_peer && acc->npeers &&
				    !memcmp(acc->peers[acc->npeers - 1].key, p.key,
					    NL_WG_KEY_LEN)) {
					merge_allowed(&acc->peers[acc->npeers - 1], &p);
				} else {
					acc->peers = xrealloc(acc->peers, (acc->npeers + 1) *
									      sizeof(*acc->peers));
					acc->peers[acc->npeers++] = p;
				}
				first_peer = false;
			}
			break;
		}
		}
	}
	return 0;
}

/* ---- I/O ---- */

static int family_cb(const struct nlmsghdr *nlh, void *arg)
{
	int id = nl_wg_parse_family(nlh);
	if (id > 0)
		*(int *)arg = id;
	return MNL_CB_OK;
}

static int dev_cb(const struct nlmsghdr *nlh, void *arg)
{
	return nl_wg_parse_dev(nlh, arg) < 0 ? MNL_CB_ERROR : MNL_CB_OK;
}

/* Send one request and read its answers up to the ACK or the dump's end. */
static int exchange(struct nl_wg *w, struct nlmsghdr *nlh, mnl_cb_t cb, void *arg)
{
	nlh->nlmsg_seq = ++w->seq;
	if (mnl_socket_sendto(w->nl, nlh, nlh->nlmsg_len) != (ssize_t)nlh->nlmsg_len)
		return errno ? -errno : -EMSGSIZE;
	char buf[MNL_SOCKET_BUFFER_SIZE] __attribute__((aligned(8)));
	for (int i = 0; i < 100000; i++) {
		ssize_t n = mnl_socket_recvfrom(w->nl, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		}
		errno = 0;
		int r = mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, w->portid, cb, arg);
		if (r == MNL_CB_STOP)
			return 0;
		if (r < 0)
			return errno ? -errno : -EINVAL;
	}
	return -ETIMEDOUT;
}

struct nl_wg *nl_wg_open(void)
{
	struct nl_wg *w = xcalloc(1, sizeof(*w));
	int e;
	w->nl = mnl_socket_open2(NETLINK_GENERIC, SOCK_CLOEXEC);
	if (!w->nl) {
		e = errno;
		free(w);
		errno = e;
		return NULL;
	}
	struct timeval tv = {.tv_sec = 10};
	int on = 1;
	if (mnl_socket_bind(w->nl, 0, MNL_SOCKET_AUTOPID) < 0 ||
	    setsockopt(mnl_socket_get_fd(w->nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
		e = errno;
		goto fail;
	}
	mnl_socket_setsockopt(w->nl, NETLINK_CAP_ACK, &on, sizeof(on));
	w->portid = mnl_socket_get_portid(w->nl);
	w->seq = (uint32_t)time(NULL) << 8;
	char buf[NL_MSG_MAX] __attribute__((aligned(8)));
	int id = 0;
	int r = exchange(w, nl_wg_build_family(buf), family_cb, &id);
	if (r == 0 && id <= 0)
		r = -ENOENT;
	if (r < 0) {
		e = -r;
		goto fail;
	}
	w->family = (uint16_t)id;
	return w;
fail:
	mnl_socket_close(w->nl);
	free(w);
	errno = e;
	return NULL;
}

void nl_wg_close(struct nl_wg *w)
{
	if (!w)
		return;
	mnl_socket_close(w->nl);
	free(w);
}

int nl_wg_get(struct nl_wg *w, const char *ifname, struct nl_wg_dev *out)
{
	nl_wg_dev_free(out);
	char buf[NL_MSG_MAX] __attribute__((aligned(8)));
	struct nlmsghdr *nlh = nl_wg_build_get(buf, w->family, ifname);
	if (!nlh)
		return -EINVAL;
	int r = exchange(w, nlh, dev_cb, out);
	if (r < 0)
		nl_wg_dev_free(out);
	return r;
}

int nl_wg_set(struct nl_wg *w, const char *ifname, const struct nl_wg_dev *d)
{
	char buf[NL_MSG_MAX] __attribute__((aligned(8)));
	size_t next = 0;
	do {
		struct nlmsghdr *nlh =
		    nl_wg_build_set(buf, sizeof(buf), w->family, ifname, d, &next);
		if (!nlh)
			return -EINVAL;
		int r = exchange(w, nlh, NULL, NULL);
		if (r < 0)
			return r;
	} while (next < d->npeers);
	return 0;
}
