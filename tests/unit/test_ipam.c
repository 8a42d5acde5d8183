/* Unit tests for cni/ipam: allocation order, reserved addresses, exhaustion, release, round
 * robin, all-or-nothing dual-stack leases, lookup without the index, GC, and concurrent
 * allocation by forked processes on one lease directory. */
/* cmocka.h needs these first */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cni/ipam.h"
#include "lib/util.h"

struct fx {
	char tmp[64];
	char *dir;
	struct ipam im;
};

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));
	snprintf(f->tmp, sizeof(f->tmp), "/tmp/test_ipam.XXXXXX");
	if (!mkdtemp(f->tmp))
		return -1;
	f->dir = ipam_dir(f->tmp, "net1");
	if (ipam_open(&f->im, f->dir))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	ipam_close(&f->im);
	rm_rf(f->tmp);
	free(f->dir);
	free(f);
	return 0;
}

static struct ipam_range R(const char *cidr, bool gw) {
	struct ipam_range r = {.reserve_gw = gw};
	assert_int_equal(prefix_parse(cidr, &r.cidr), 0);
	prefix_normalize(&r.cidr);
	return r;
}

static const char *
alloc1(struct fx *f, const struct ipam_range *r, const char *cid, char *buf)
{
	struct ipaddr a;
	int err = ipam_alloc(&f->im, r, 1, cid, "eth0", &a);
	if (err)
		return err == -ENOSPC ? "ENOSPC" : err == -EEXIST ? "EEXIST" : "ERR";
	return ip_fmt(&a, buf);
}

static void test_dir_layout(void **state)
{
	struct fx *f = *state;
	char *want = xasprintf("%s/ipam/net1", f->tmp);
	assert_string_equal(f->dir, want);
	free(want);
	struct ipam_range r = R("10.1.0.0/24", false);
	char buf[IP_STRLEN];
	assert_string_equal(alloc1(f, &r, "c1", buf), "10.1.0.1");
	char *lease = xasprintf("%s/10.1.0.1", f->dir), *data;
	assert_int_equal(file_read(lease, &data, NULL), 0);
	assert_string_equal(data, "c1\neth0\n");
	free(data);
	free(lease);
	char *last = xasprintf("%s/last_reserved_ip.0", f->dir);
	assert_int_equal(file_read(last, &data, NULL), 0);
	/* the address on the first line; the file keeps a fixed size (newline padding) */
	assert_int_equal(strspn(data + strlen("10.1.0.1"), "\n"), strlen(data) - strlen("10.1.0.1"));
	data[strcspn(data, "\n")] = 0;
	assert_string_equal(data, "10.1.0.1");
	free(data);
	free(last);
}

static void test_reserved_and_exhaustion(void **state)
{
	struct fx *f = *state;
	char buf[IP_STRLEN], cid[16];
	/* bridge wiring: .0 network, .1 gateway, .7 broadcast are never handed out */
	struct ipam_range r = R("10.2.0.0/29", true);
	const char *want[] = {"10.2.0.2", "10.2.0.3", "10.2.0.4", "10.2.0.5", "10.2.0.6"};
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		snprintf(cid, sizeof(cid), "c%zu", i);
		assert_string_equal(alloc1(f, &r, cid, buf), want[i]);
	}
	assert_string_equal(alloc1(f, &r, "full", buf), "ENOSPC");
	assert_int_equal(ipam_count(&f->im), 5);

	struct ipaddr a;
	assert_int_equal(ip_parse("10.2.0.0", &a), 0);
	assert_false(ipam_usable(&r, &a));
	assert_int_equal(ip_parse("10.2.0.1", &a), 0);
	assert_false(ipam_usable(&r, &a));
	r.reserve_gw = false;
	assert_true(ipam_usable(&r, &a));
	assert_int_equal(ip_parse("10.2.0.7", &a), 0);
	assert_false(ipam_usable(&r, &a));
	assert_int_equal(ip_parse("10.3.0.1", &a), 0);
	assert_false(ipam_usable(&r, &a));
}

static void test_release_round_robin(void **state)
{
	struct fx *f = *state;
	char buf[IP_STRLEN];
	struct ipam_range r = R("10.4.0.0/29", false); /* usable .1 .. .6 */
	assert_string_equal(alloc1(f, &r, "a", buf), "10.4.0.1");
	assert_string_equal(alloc1(f, &r, "b", buf), "10.4.0.2");
	assert_string_equal(alloc1(f, &r, "c", buf), "10.4.0.3");

	/* a second ADD for the same attachment takes nothing and keeps the first lease */
	assert_string_equal(alloc1(f, &r, "b", buf), "EEXIST");
	struct ipaddr out[2];
	assert_int_equal(ipam_lookup(&f->im, "b", "eth0", out, 2), 1);
	assert_int_equal(ipam_release(&f->im, "b", "eth0", out, 2), 1);
	assert_string_equal(ip_fmt(&out[0], buf), "10.4.0.2");
	assert_int_equal(ipam_lookup(&f->im, "b", "eth0", out, 2), 0);
	/* releasing again, or something unknown, is fine and releases nothing */
	assert_int_equal(ipam_release(&f->im, "b", "eth0", out, 2), 0);
	assert_int_equal(ipam_release(&f->im, "zz", "eth0", out, 2), 0);

	/* the freed .2 is not reused at once: allocation continues after the last one */
	assert_string_equal(alloc1(f, &r, "d", buf), "10.4.0.4");
	assert_string_equal(alloc1(f, &r, "e", buf), "10.4.0.5");
	assert_string_equal(alloc1(f, &r, "f", buf), "10.4.0.6");
	/* ... and wraps around to it when the end is reached */
	assert_string_equal(alloc1(f, &r, "g", buf), "10.4.0.2");
	assert_string_equal(alloc1(f, &r, "h", buf), "ENOSPC");

	/* release matches container id AND ifname */
	assert_int_equal(ipam_release(&f->im, "a", "eth1", out, 2), 0);
	assert_int_equal(ipam_lookup(&f->im, "a", "eth0", out, 2), 1);
	assert_string_equal(ip_fmt(&out[0], buf), "10.4.0.1");
}

static void test_dual_stack_all_or_nothing(void **state)
{
	struct fx *f = *state;
	char buf[IP_STRLEN];
	struct ipam_range rs[2] = {R("10.5.0.0/30", false), R("fd00:5::/120", false)};
	struct ipaddr out[2];
	assert_int_equal(ipam_alloc(&f->im, rs, 2, "p1", "eth0", out), 0);
	assert_string_equal(ip_fmt(&out[0], buf), "10.5.0.1");
	assert_string_equal(ip_fmt(&out[1], buf), "fd00:5::1");
	assert_int_equal(ipam_alloc(&f->im, rs, 2, "p2", "eth0", out), 0);
	assert_string_equal(ip_fmt(&out[0], buf), "10.5.0.2");
	assert_int_equal(ipam_count(&f->im), 4);
	/* the /30 is full: no lease may be left in the IPv6 range either */
	assert_int_equal(ipam_alloc(&f->im, rs, 2, "p3", "eth0", out), -ENOSPC);
	assert_int_equal(ipam_count(&f->im), 4);
	assert_int_equal(ipam_lookup(&f->im, "p3", "eth0", out, 2), 0);

	assert_int_equal(ipam_lookup(&f->im, "p1", "eth0", out, 2), 2);
	assert_int_equal(ipam_release(&f->im, "p1", "eth0", out, 2), 2);
	assert_int_equal(ipam_count(&f->im), 2);
}

static void test_lookup_without_index(void **state)
{
	struct fx *f = *state;
	char buf[IP_STRLEN];
	struct ipam_range r = R("10.6.0.0/24", false);
	assert_string_equal(alloc1(f, &r, "x1", buf), "10.6.0.1");
	assert_string_equal(alloc1(f, &r, "x2", buf), "10.6.0.2");
	/* As if the process had been killed between the lease and its index. */
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -f %s/att-*", f->dir);
	assert_int_equal(system(cmd), 0);
	struct ipaddr out[2];
	assert_int_equal(ipam_lookup(&f->im, "x2", "eth0", out, 2), 1);
	assert_string_equal(ip_fmt(&out[0], buf), "10.6.0.2");
	assert_int_equal(ipam_release(&f->im, "x2", "eth0", out, 2), 1);
	assert_int_equal(ipam_count(&f->im), 1);
}

static bool gc_keep_even(const struct ipaddr *ip, const char *cid, const char *ifname, void *arg)
{
	(void)ip;
	(void)ifname;
	int *calls = arg;
	(*calls)++;
	return atoi(cid + 1) % 2 == 1; /* release the odd ones */
}

static void test_gc(void **state)
{
	struct fx *f = *state;
	char buf[IP_STRLEN], cid[16];
	struct ipam_range r = R("10.7.0.0/24", false);
	for (int i = 0; i < 10; i++) {
		snprintf(cid, sizeof(cid), "g%d", i);
		assert_string_not_equal(alloc1(f, &r, cid, buf), "ERR");
	}
	int calls = 0;
	assert_int_equal(ipam_gc(&f->im, gc_keep_even, &calls), 5);
	assert_int_equal(calls, 10);
	assert_int_equal(ipam_count(&f->im), 5);
	struct ipaddr out[2];
	assert_int_equal(ipam_lookup(&f->im, "g3", "eth0", out, 2), 0);
	assert_int_equal(ipam_lookup(&f->im, "g4", "eth0", out, 2), 1);
	/* the index files of released attachments are gone too */
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "test $(ls %s | grep -c '^att-') -eq 5", f->dir);
	assert_int_equal(system(cmd), 0);
}

#define NCHILD 20
#define PER_CHILD 10

static void test_concurrent_fork(void **state)
{
	struct fx *f = *state;
	struct ipam_range r = R("10.8.0.0/24", false);
	pid_t pids[NCHILD];
	for (int c = 0; c < NCHILD; c++) {
		pids[c] = fork();
		assert_true(pids[c] >= 0);
		if (pids[c] == 0) {
			struct ipam im;
			if (ipam_open(&im, f->dir))
				_exit(2);
			for (int i = 0; i < PER_CHILD; i++) {
				char cid[32];
				struct ipaddr a;
				snprintf(cid, sizeof(cid), "k%d-%d", c, i);
				if (ipam_alloc(&im, &r, 1, cid, "eth0", &a))
					_exit(1);
			}
			ipam_close(&im);
			_exit(0);
		}
	}
	for (int c = 0; c < NCHILD; c++) {
		int st;
		assert_int_equal(waitpid(pids[c], &st, 0), pids[c]);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 0);
	}
	assert_int_equal(ipam_count(&f->im), NCHILD * PER_CHILD);
	/* every attachment got exactly one address, and no two share one */
	uint8_t seen[256] = {0};
	for (int c = 0; c < NCHILD; c++)
		for (int i = 0; i < PER_CHILD; i++) {
			char cid[32];
			struct ipaddr a[2];
			snprintf(cid, sizeof(cid), "k%d-%d", c, i);
			assert_int_equal(ipam_lookup(&f->im, cid, "eth0", a, 2), 1);
			assert_int_equal(seen[a[0].b[3]]++, 0);
		}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_dir_layout, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reserved_and_exhaustion, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_release_round_robin, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dual_stack_all_or_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lookup_without_index, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_gc, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_fork, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
