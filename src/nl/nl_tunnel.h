/* nl_tunnel: links that carry no kind-specific settings at creation -- the ipip module's
 * fallback device tunl0, dummy devices, WireGuard interfaces -- made with one RTM_NEWLINK.
 *
 * Conventions as in nl/nl.h: 0 or -errno, nothing printed.  The request goes through a
 * netlink socket of its own in the caller's current network namespace (nl.c keeps its
 * request/ACK exchange private). */
#pragma once
#include <linux/netlink.h>

/* RTM_NEWLINK (NLM_F_CREATE|NLM_F_EXCL) for `name` of IFLA_INFO_KIND `kind`, mtu 0 = the
 * kernel's default.  buf must hold NL_MSG_MAX bytes.  NULL when name or kind is invalid. */
struct nlmsghdr *nl_build_link_kind(void *buf, const char *name, const char *kind, unsigned mtu);

/* Create the link (the kernel loads the kind's module on demand).  -EEXIST when a link of
 * that name exists -- for "ipip" named "tunl0" also when loading the module just made the
 * fallback device in this namespace. */
int nl_link_add_kind(const char *name, const char *kind, unsigned mtu);
