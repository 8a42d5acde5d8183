/* Unit tests for proxy/conntrack: the matcher, parsing of ctnetlink entry messages (no
 * kernel needed), and, as root, a dump + delete round trip against entries created through
 * ctnetlink inside a forked child's own network namespace (unshare(CLONE_NEWNET)), so the
 * host's conntrack table is never read or touched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* needs the four above first */

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proxy/conntrack.h"

#define CK(cond)                                                                                   \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			_exit(1);                                                                  \
		}                                                                                  \
	} while (0)

static uint32_t a4(const char *s)
{
	struct in_addr a;
	inet_pton(AF_INET, s, &a);
	return a.s_addr;
}

static void put_tuple(struct nlmsghdr *nlh, uint16_t type, const char *src, const char *dst,
		      uint16_t sport, uint16_t dport)
{
	struct nlattr *t = mnl_attr_nest_start(nlh, type);
	struct nlattr *ip = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
	mnl_attr_put_u32(nlh, CTA_IP_V4_SRC, a4(src));
	mnl_attr_put_u32(nlh, CTA_IP_V4_DST, a4(dst));
	mnl_attr_nest_end(nlh, ip);
	struct nlattr *pr = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
	mnl_attr_put_u8(nlh, CTA_PROTO_NUM, IPPROTO_UDP);
	mnl_attr_put_u16(nlh, CTA_PROTO_SRC_PORT, htons(sport));
	mnl_attr_put_u16(nlh, CTA_PROTO_DST_PORT, htons(dport));
	mnl_attr_nest_end(nlh, pr);
	mnl_attr_nest_end(nlh, t);
}

/* A client 10.1.0.2:41000 -> VIP 10.96.0.10:53, translated to backend:5353. */
static struct nlmsghdr *build_entry(char *buf, uint16_t type, uint16_t flags, uint8_t family,
				    const char *backend, bool reply)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	nlh->nlmsg_seq = 1;
	struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->nfgen_family = family;
	g->version = NFNETLINK_V0;
	put_tuple(nlh, CTA_TUPLE_ORIG, "10.1.0.2", "10.96.0.10", 41000, 53);
	if (reply)
		put_tuple(nlh, CTA_TUPLE_REPLY, backend, "10.1.0.2", 5353, 41000);
	return nlh;
}

static void test_matches(void **state)
{
	(void)state;
	struct ct_entry e = {.l4 = IPPROTO_UDP,
			     .odst = a4("10.96.0.10"),
			     .odport = 53,
			     .rsrc = a4("10.2.0.5"),
			     .rsport = 5353};
	struct ct_match m = {IPPROTO_UDP, a4("10.96.0.10"), 53, a4("10.2.0.5"), 5353};
	assert_true(ct_entry_matches(&e, &m));
	m.rsport = 5354; /* another backend port */
	assert_false(ct_entry_matches(&e, &m));
	m.rsport = 5353;
	m.l4 = IPPROTO_TCP;
	assert_false(ct_entry_matches(&e, &m));
	m.l4 = IPPROTO_UDP;
	m.dst = a4("10.96.0.11"); /* another Service */
	assert_false(ct_entry_matches(&e, &m));
}

static void test_parse(void **state)
{
	(void)state;
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = build_entry(buf, IPCTNL_MSG_CT_NEW, 0, AF_INET, "10.2.0.5", true);
	mnl_attr_put_u16(nlh, CTA_ZONE, htons(7));
	struct ct_entry e;
	assert_int_equal(ct_entry_parse(nlh, &e), 0);
	assert_int_equal(e.l4, IPPROTO_UDP);
	assert_int_equal(e.zone, 7);
	assert_int_equal(e.osrc, a4("10.1.0.2"));
	assert_int_equal(e.odst, a4("10.96.0.10"));
	assert_int_equal(e.osport, 41000);
	assert_int_equal(e.odport, 53);
	assert_int_equal(e.rsrc, a4("10.2.0.5"));
	assert_int_equal(e.rdst, a4("10.1.0.2"));
	assert_int_equal(e.rsport, 5353);
	assert_int_equal(e.rdport, 41000);
	/* no reply tuple, not IPv4, truncated: rejected */
	nlh = build_entry(buf, IPCTNL_MSG_CT_NEW, 0, AF_INET, "10.2.0.5", false);
	assert_int_equal(ct_entry_parse(nlh, &e), -EINVAL);
	nlh = build_entry(buf, IPCTNL_MSG_CT_NEW, 0, AF_INET6, "10.2.0.5", true);
	assert_int_equal(ct_entry_parse(nlh, &e), -EINVAL);
	nlh = build_entry(buf, IPCTNL_MSG_CT_NEW, 0, AF_INET, "10.2.0.5", true);
	nlh->nlmsg_len = sizeof(struct nlmsghdr) + 2;
	assert_int_equal(ct_entry_parse(nlh, &e), -EINVAL);
}

/* ---- kernel: in a fresh network namespace ---- */

static int create_entry(struct mnl_socket *nl, const char *backend)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh =
	    build_entry(buf, IPCTNL_MSG_CT_NEW, NLM_F_CREATE | NLM_F_ACK, AF_INET, backend, true);
	mnl_attr_put_u32(nlh, CTA_TIMEOUT, htonl(120));
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
	if (n < 0)
		return -errno;
	return mnl_cb_run(buf, (size_t)n, 1, mnl_socket_get_portid(nl), NULL, NULL) < 0 ? -errno
											: 0;
}

static int count_cb(const struct ct_entry *e, void *arg)
{
	int *n = arg;
	if (e->odst == a4("10.96.0.10"))
		n[e->rsrc == a4("10.2.0.5") ? 0 : 1]++;
	return 0;
}

static void kernel_round_trip(void)
{
	struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
	CK(nl && mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) == 0);
	int r = create_entry(nl, "10.2.0.5");
	if (r == -ENOENT || r == -EOPNOTSUPP || r == -EPROTONOSUPPORT) {
		fprintf(stderr, "conntrack netlink unavailable (%s): skipped\n", strerror(-r));
		mnl_socket_close(nl);
		return;
	}
	CK(r == 0);
	/* a second flow (another client port) to the same Service, on another backend */
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK;
	nlh->nlmsg_seq = 2;
	struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->nfgen_family = AF_INET;
	g->version = NFNETLINK_V0;
	put_tuple(nlh, CTA_TUPLE_ORIG, "10.1.0.2", "10.96.0.10", 41001, 53);
	put_tuple(nlh, CTA_TUPLE_REPLY, "10.2.0.6", "10.1.0.2", 5353, 41001);
	mnl_attr_put_u32(nlh, CTA_TIMEOUT, htonl(120));
	CK(mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) > 0);
	ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
	CK(n > 0 && mnl_cb_run(buf, (size_t)n, 2, mnl_socket_get_portid(nl), NULL, NULL) >= 0);
	mnl_socket_close(nl);

	int cnt[2] = {0, 0};
	CK(ct_dump(count_cb, cnt) == 0);
	CK(cnt[0] == 1 && cnt[1] == 1);
	struct ct_match m = {IPPROTO_UDP, a4("10.96.0.10"), 53, a4("10.2.0.5"), 5353};
	CK(ct_delete_matching(&m, 1) == 1);
	cnt[0] = cnt[1] = 0;
	CK(ct_dump(count_cb, cnt) == 0);
	CK(cnt[0] == 0 && cnt[1] == 1); /* the other backend's entry stays */
	CK(ct_delete_matching(&m, 1) == 0);
	CK(ct_delete_matching(NULL, 0) == 0);
}

static void test_kernel(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		alarm(30);
		if (unshare(CLONE_NEWNET) < 0) {
			perror("unshare(CLONE_NEWNET)");
			_exit(2);
		}
		kernel_round_trip();
		exit(0);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_matches),
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_kernel),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
