/* Unit tests for agent/agent_bgp.c: the Calico selector subset BGPPeer nodeSelector and
 * peerSelector use (all(), has(), !has(), ==, !=, &&) and its errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h> /* after setjmp.h, stdarg.h, stddef.h, stdint.h */

#include "agent/agent_bgp.h"
#include "lib/util.h"

static int m(const char *sel, const struct labels *l)
{
	char err[256] = "";
	int r = agent_bgp_selector_match(sel, l, err, sizeof(err));
	if (r < 0)
		assert_non_null(strstr(err, "unsupported selector"));
	return r;
}

static void test_selector(void **state)
{
	(void)state;
	struct kv kv[] = {{"lab.twill.io/subnet", "br10"}, {"rack", "r1"}}; /* sorted by key */
	struct labels l = {.n = ARRAY_SIZE(kv), .kv = kv}, none = {0};
	assert_int_equal(m("all()", &l), 1);
	assert_int_equal(m("all()", &none), 1);
	assert_int_equal(m("", &l), 1);
	assert_int_equal(m(NULL, &l), 1);
	assert_int_equal(m("lab.twill.io/subnet == 'br10'", &l), 1);
	assert_int_equal(m("lab.twill.io/subnet == \"br20\"", &l), 0);
	assert_int_equal(m("lab.twill.io/subnet=='br10'", &l), 1);
	assert_int_equal(m("rack != 'r2'", &l), 1);
	assert_int_equal(m("rack != 'r1'", &l), 0);
	assert_int_equal(m("rack != 'r1'", &none), 1); /* Calico: a missing label is != */
	assert_int_equal(m("has(rack)", &l), 1);
	assert_int_equal(m("!has(rack)", &l), 0);
	assert_int_equal(m("! has( zone )", &l), 1);
	assert_int_equal(m("has(rack) && rack == 'r1' && lab.twill.io/subnet == 'br10'", &l), 1);
	assert_int_equal(m("has(rack) && rack == 'r2'", &l), 0);
	assert_int_equal(m("all() && has(zone)", &l), 0);
	/* outside the subset: an error, never a guess */
	assert_int_equal(m("rack in {'r1'}", &l), -1);
	assert_int_equal(m("rack == 'r1' || rack == 'r2'", &l), -1);
	assert_int_equal(m("rack == r1", &l), -1);
	assert_int_equal(m("rack == 'r1", &l), -1);
	assert_int_equal(m("has(rack", &l), -1);
	assert_int_equal(m("!rack == 'r1'", &l), -1);
	assert_int_equal(m("rack == 'r1' &&", &l), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_selector),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
