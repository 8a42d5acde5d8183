/* Unit tests for nl_tunnel: the exact RTM_NEWLINK it builds, bad arguments, and the same
 * request against the real kernel in a private network namespace (a forked child that
 * unshare(CLONE_NEWNET)s first, so nothing reaches the host's namespace). */
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* cmocka needs the headers above first */
#include <cmocka.h>

#include "in_netns.h"

#include "nl/nl.h"
#include "nl/nl_tunnel.h"

static void test_build(void **state)
{
	(void)state;
	char buf[NL_MSG_MAX] __attribute__((aligned(8)));
	struct nlmsghdr *nlh = nl_build_link_kind(buf, "tunl0", "ipip", 1480);
	assert_non_null(nlh);
	assert_int_equal(nlh->nlmsg_type, RTM_NEWLINK);
	assert_int_equal(nlh->nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
	const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
	assert_int_equal(ifi->ifi_family, AF_UNSPEC);
	assert_int_equal(ifi->ifi_index, 0);
	/* exactly: IFLA_IFNAME "tunl0", IFLA_MTU 1480, IFLA_LINKINFO { IFLA_INFO_KIND "ipip" } */
	const struct nlattr *a;
	int seen = 0;
	mnl_attr_for_each(a, nlh, sizeof(*ifi))
	{
		switch (mnl_attr_get_type(a)) {
		case IFLA_IFNAME:
			assert_string_equal(mnl_attr_get_str(a), "tunl0");
			seen |= 1;
			break;
		case IFLA_MTU:
			assert_int_equal(mnl_attr_get_u32(a), 1480);
			seen |= 2;
			break;
		case IFLA_LINKINFO: {
			const struct nlattr *in;
			int n = 0;
			mnl_attr_for_each_nested(in, a)
			{
				assert_int_equal(mnl_attr_get_type(in), IFLA_INFO_KIND);
				assert_string_equal(mnl_attr_get_str(in), "ipip");
				n++;
			}
			assert_int_equal(n, 1);
			seen |= 4;
			break;
		}
		default:
			fail_msg("unexpected attribute %u", mnl_attr_get_type(a));
		}
	}
	assert_int_equal(seen, 7);

	/* mtu 0: no IFLA_MTU */
	nlh = nl_build_link_kind(buf, "d0", "dummy", 0);
	assert_non_null(nlh);
	mnl_attr_for_each(a, nlh, sizeof(*ifi))
	    assert_int_not_equal(mnl_attr_get_type(a), IFLA_MTU);

	/* bad names and kinds */
	assert_null(nl_build_link_kind(buf, "", "ipip", 0));
	assert_null(nl_build_link_kind(buf, NULL, "ipip", 0));
	assert_null(nl_build_link_kind(buf, "0123456789abcdef", "ipip", 0)); /* IFNAMSIZ */
	assert_null(nl_build_link_kind(buf, "a/b", "ipip", 0));
	assert_null(nl_build_link_kind(buf, "x", "", 0));
	assert_null(nl_build_link_kind(buf, "x", NULL, 0));
	assert_int_equal(nl_link_add_kind("x", "", 0), -EINVAL);
}

static void kernel_child(void)
{
	struct nl_sock *s = nl_open();
	CK(s);
	/* a bridge: a kind every kernel twill runs on has */
	CK(nl_link_add_kind("tb0", "bridge", 1400) == 0);
	struct nl_link l;
	CK(nl_link_get(s, "tb0", &l) == 0);
	CK(!strcmp(l.kind, "bridge") && l.mtu == 1400);
	CK(nl_link_add_kind("tb0", "bridge", 0) == -EEXIST);
	CK(nl_link_add_kind("tb1", "no-such-kind", 0) == -EOPNOTSUPP);
	CK(nl_link_get(s, "tb1", &l) == -ENODEV);
	/* ipip where the kernel has it: the fallback device either way ends up as tunl0 */
	int r = nl_link_add_kind("tunl0", "ipip", 0);
	if (r == 0 || r == -EEXIST) {
		CK(nl_link_get(s, "tunl0", &l) == 0);
		CK(!strcmp(l.kind, "ipip"));
	} else {
		CK(r == -EOPNOTSUPP);
		fprintf(stderr, "(no ipip in this kernel)\n");
	}
	nl_close(s);
}

static void test_kernel(void **state)
{
	(void)state;
	in_netns(kernel_child);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_build),
	    cmocka_unit_test(test_kernel),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
