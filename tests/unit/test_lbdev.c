/* Unit tests for proxy/lbdev: the add/delete difference, which planner entries count as
 * served, and, in a network namespace of its own, the device itself: with dummy support
 * (the VM kernel) addresses come and go one by one and a restart keeps them; without it
 * (this host) one clear status and no retries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after setjmp.h, stdarg.h, stddef.h, stdint.h */

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "in_netns.h"
#include "model/manifest.h"
#include "nl/nl.h"
#include "nl/nl_tunnel.h"
#include "proxy/lbdev.h"
#include "store/store.h"

static struct ipaddr A(const char *s) {
	struct ipaddr a;
	assert_int_equal(ip_parse(s, &a), 0);
	return a;
}

static void
test_diff(void **state)
{
	(void)state;
	struct ipaddr have[] = {A("10.0.0.1"), A("10.0.0.3"), A("10.0.0.5"), A("fd00::1")};
	struct ipaddr want[] = {A("10.0.0.3"), A("10.0.0.4"), A("fd00::1"), A("fd00::2")};
	struct ipaddr add[4], del[4];
	size_t nadd, ndel;
	lbdev_diff(have, 4, want, 4, add, &nadd, del, &ndel);
	assert_int_equal(nadd, 2);
	assert_true(ip_eq(&add[0], &want[1]) && ip_eq(&add[1], &want[3]));
	assert_int_equal(ndel, 2);
	assert_true(ip_eq(&del[0], &have[0]) && ip_eq(&del[1], &have[2]));
	/* nothing to do */
	lbdev_diff(want, 4, want, 4, add, &nadd, del, &ndel);
	assert_int_equal(nadd + ndel, 0);
	/* from nothing, to nothing */
	lbdev_diff(NULL, 0, want, 4, add, &nadd, del, &ndel);
	assert_int_equal(nadd, 4);
	assert_int_equal(ndel, 0);
	lbdev_diff(have, 4, NULL, 0, add, &nadd, del, &ndel);
	assert_int_equal(ndel, 4);
	assert_int_equal(nadd, 0);
}

static void test_collect(void **state)
{
	(void)state;
	struct svc_entry v[5] = {
	    {.vip = A("10.96.0.10"), .scope = SVC_SCOPE_CLUSTER_IP},
	    {.vip = A("192.0.2.7"), .scope = SVC_SCOPE_LB, .verdict = SVC_FORWARD},
	    {.vip = A("192.0.2.5"), .scope = SVC_SCOPE_LB, .verdict = SVC_REJECT},
	    {.vip = A("192.0.2.7"), .port = 443, .scope = SVC_SCOPE_LB},
	    /* Local policy without a local endpoint: this node does not serve it */
	    {.vip = A("192.0.2.9"), .scope = SVC_SCOPE_LB, .verdict = SVC_DROP},
	};
	struct svc_entries e = {.n = 5, .cap = 5, .v = v};
	struct ipaddr *out = NULL;
	size_t n = 0, cap = 0;
	lbdev_collect(&e, &out, &n, &cap);
	assert_int_equal(n, 2);
	assert_true(ip_eq(&out[0], &v[2].vip));
	assert_true(ip_eq(&out[1], &v[1].vip));
	free(out);
}

/* ---- kernel ---- */

static void diag_quiet(const struct diag *d, void *arg)
{
	(void)d;
	(void)arg;
	CK(0);
}

static void put(struct store *s, const char *origin, const char *yaml)
{
	struct objlist l = {0};
	if (yaml)
		CK(manifest_decode(origin, yaml, strlen(yaml), &l, diag_quiet, NULL) == 0);
	CK(store_replace_origin(s, origin, false, &l, diag_quiet, NULL) == 0);
	objlist_free(&l);
}

static const char *lb_yaml(const char *name, const char *ip)
{
	static char buf[512];
	snprintf(buf, sizeof(buf),
		 "apiVersion: v1\nkind: Service\nmetadata: {name: %s}\n"
		 "spec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.%d\n"
		 "  ports: [{port: 80, nodePort: 3%04d}]\n"
		 "status: {loadBalancer: {ingress: [{ip: \"%s\"}]}}\n",
		 name, 10 + name[0] % 100, name[0], ip);
	return buf;
}

struct have {
	int index;
	size_t n;
	char a[8][IP_STRLEN];
	int len[8];
};

static int have_cb(const struct nl_addr *a, void *arg)
{
	struct have *h = arg;
	if (a->index == h->index && h->n < 8) {
		ip_fmt(&a->prefix.addr, h->a[h->n]);
		h->len[h->n++] = a->prefix.len;
	}
	return 0;
}

static bool holds(struct nl_sock *nl, const char *ip, int len)
{
	struct have h = {.index = nl_link_index(nl, LBDEV_DEVICE)};
	CK(h.index > 0);
	CK(nl_addr_dump(nl, AF_UNSPEC, h.index, have_cb, &h) == 0);
	for (size_t i = 0; i < h.n; i++)
		if (!strcmp(h.a[i], ip))
			return h.len[i] == len;
	return false;
}

static void update(struct svc_planner *sp)
{
	char **chg = NULL;
	size_t n = svc_planner_update(sp, &chg);
	svc_planner_keys_free(chg, n);
}

static void kernel_case(void)
{
	struct nl_sock *nl = nl_open();
	CK(nl);
	int probe = nl_link_add_kind("lbprobe0", "dummy", 0);
	struct store *s = store_new();
	struct ipaddr addrs[] = {A("192.168.1.10")};
	struct svc_planner *sp = svc_planner_new(s, &(struct svc_plan_in){"n1", addrs, 1});
	put(s, "a.yaml", lb_yaml("a", "192.0.2.1"));
	put(s, "b.yaml", lb_yaml("b", "2001:db8::b"));
	update(sp);
	struct lbdev *d = lbdev_new(sp, NULL);
	if (probe == -EOPNOTSUPP) {
		/* no dummy module: one clear status, success, and no second attempt */
		CK(lbdev_sync(d) == 0);
		CK(strstr(lbdev_status(d), "no dummy devices"));
		CK(lbdev_sync(d) == 0);
		CK(nl_link_index(nl, LBDEV_DEVICE) == -ENODEV);
		goto out;
	}
	CK(probe == 0);
	CK(lbdev_sync(d) == 0);
	CK(!lbdev_status(d)[0]);
	CK(lbdev_count(d) == 2);
	struct nl_link l;
	CK(nl_link_get(nl, LBDEV_DEVICE, &l) == 0);
	CK(l.up && !strcmp(l.kind, "dummy"));
	CK(holds(nl, "192.0.2.1", 32) && holds(nl, "2001:db8::b", 128));

	/* a Service goes: its address only */
	put(s, "a.yaml", NULL);
	update(sp);
	CK(lbdev_sync(d) == 0);
	CK(!holds(nl, "192.0.2.1", 32) && holds(nl, "2001:db8::b", 128));

	/* a restart reconciles without a flush: a stranger on the device goes, ours stays */
	lbdev_free(d);
	struct nl_addr x = {.index = l.index, .prefix = {A("198.51.100.1"), 32}};
	CK(nl_addr_add(nl, &x) == 0);
	put(s, "c.yaml", lb_yaml("c", "192.0.2.3"));
	update(sp);
	d = lbdev_new(sp, NULL);
	CK(lbdev_sync(d) == 0);
	CK(!holds(nl, "198.51.100.1", 32) && holds(nl, "2001:db8::b", 128) &&
	   holds(nl, "192.0.2.3", 32));
	CK(nl_link_index(nl, LBDEV_DEVICE) == l.index); /* the same device */
out:
	lbdev_free(d);
	svc_planner_free(sp);
	store_free(s);
	nl_close(nl);
}

static void test_kernel(void **state)
{
	(void)state;
	in_netns(kernel_case);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_diff),
	    cmocka_unit_test(test_collect),
	    cmocka_unit_test(test_kernel),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
