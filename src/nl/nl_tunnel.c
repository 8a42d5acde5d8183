/* nl_tunnel: RTM_NEWLINK for kinds created without settings (ipip's tunl0, dummy,
 * wireguard); see nl_tunnel.h. */
#include "nl/nl_tunnel.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "nl/nl.h"

struct nlmsghdr *nl_build_link_kind(void *buf, const char *name, const char *kind, unsigned mtu)
{
	if (!name || !*name || strlen(name) >= IFNAMSIZ || strchr(name, '/') || !kind || !*kind)
		return NULL;
	memset(buf, 0, NL_MSG_MAX);
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_NEWLINK;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
	struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	if (mtu)
		mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
	struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, kind);
	mnl_attr_nest_end(nlh, info);
	return nlh;
}

/* One request, answered by its ACK: the error it carries (matched by sequence number and
 * port id; bounded by a receive timeout). */
static int request(struct nlmsghdr *nlh)
{
	struct mnl_socket *nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
	if (!nl)
		return -errno;
	int r;
	struct timeval tv = {.tv_sec = 30};
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0 ||
	    setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
		r = -errno;
		goto out;
	}
	uint32_t portid = mnl_socket_get_portid(nl);
	nlh->nlmsg_seq = (uint32_t)time(NULL) | 1;
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) != (ssize_t)nlh->nlmsg_len) {
		r = errno ? -errno : -EMSGSIZE;
		goto out;
	}
	char buf[8192] __attribute__((aligned(8)));
	for (int i = 0; i < 100; i++) {
		ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (n < 0) {
			r = errno == EAGAIN ? -ETIMEDOUT : -errno;
			if (errno == EINTR)
				continue;
			goto out;
		}
		int len = (int)n;
		for (const struct nlmsghdr *m = (const void *)buf; mnl_nlmsg_ok(m, len);
		     m = mnl_nlmsg_next(m, &len)) {
			if (m->nlmsg_seq != nlh->nlmsg_seq || m->nlmsg_pid != portid ||
			    m->nlmsg_type != NLMSG_ERROR)
				continue;
			if (mnl_nlmsg_get_payload_len(m) < sizeof(int)) {
				r = -EBADMSG;
				goto out;
			}
			const struct nlmsgerr *e = mnl_nlmsg_get_payload(m);
			r = e->error <= 0 ? e->error : -e->error;
			goto out;
		}
	}
	r = -ETIMEDOUT;
out:
	mnl_socket_close(nl);
	return r;
}

int nl_link_add_kind(const char *name, const char *kind, unsigned mtu)
{
	char buf[NL_MSG_MAX] __attribute__((aligned(8)));
	struct nlmsghdr *nlh = nl_build_link_kind(buf, name, kind, mtu);
	if (!nlh)
		return -EINVAL;
	return request(nlh);
}
