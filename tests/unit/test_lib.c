/* Unit tests for lib/: IP parsing/formatting/subnetting and the file/string helpers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/ip.h"
#include "lib/util.h"

static struct ipprefix P(const char *s)
{
	struct ipprefix p;
	assert_int_equal(prefix_parse(s, &p), 0);
	return p;
}

static struct ipaddr A(const char *s)
{
	struct ipaddr a;
	assert_int_equal(ip_parse(s, &a), 0);
	return a;
}

static void test_parse_fmt(void **state)
{
	(void)state;
	char buf[IP_STRLEN];
	struct ipaddr a = A("192.168.10.100");
	assert_int_equal(a.family, AF_INET);
	assert_string_equal(ip_fmt(&a, buf), "192.168.10.100");
	a = A("fd00::1");
	assert_int_equal(a.family, AF_INET6);
	assert_string_equal(ip_fmt(&a, buf), "fd00::1");
	struct ipprefix p = P("172.20.1.7/24");
	assert_string_equal(prefix_fmt(&p, buf), "172.20.1.7/24");
	p = P("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");
	assert_string_equal(prefix_fmt(&p, buf), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");
	struct ipaddr none = {0};
	assert_string_equal(ip_fmt(&none, buf), "-");

	struct ipprefix bad;
	assert_int_not_equal(prefix_parse("10.0.0.0/33", &bad), 0);
	assert_int_not_equal(prefix_parse("10.0.0/8", &bad), 0);
	assert_int_not_equal(prefix_parse("fd00::/129", &bad), 0);
	assert_int_not_equal(prefix_parse("", &bad), 0);
	assert_int_not_equal(ip_parse("300.1.1.1", &a), 0);
	assert_int_not_equal(ip_parse("1.2.3.4 ", &a), 0);
}

static void test_contains_covers(void **state)
{
	(void)state;
	struct ipprefix p = P("172.20.0.0/16");
	struct ipaddr in = A("172.20.255.1"), out = A("172.21.0.1"), v6 = A("::1");
	assert_true(prefix_contains(&p, &in));
	assert_false(prefix_contains(&p, &out));
	assert_false(prefix_contains(&p, &v6));
	struct ipprefix q = P("172.20.3.0/24");
	assert_true(prefix_covers(&p, &q));
	assert_false(prefix_covers(&q, &p));
	assert_true(prefix_overlaps(&q, &p));
	struct ipprefix r = P("172.21.0.0/24");
	assert_false(prefix_overlaps(&p, &r));
}

static void test_subnets(void **state)
{
	(void)state;
	char buf[IP_STRLEN];
	struct ipprefix p = P("10.244.0.0/16"), s;
	assert_int_equal(prefix_subnet_count(&p, 24), 256);
	assert_int_equal(prefix_subnet(&p, 24, 0, &s), 0);
	assert_string_equal(prefix_fmt(&s, buf), "10.244.0.0/24");
	assert_int_equal(prefix_subnet(&p, 24, 255, &s), 0);
	assert_string_equal(prefix_fmt(&s, buf), "10.244.255.0/24");
	assert_int_equal(prefix_subnet(&p, 24, 256, &s), -ERANGE);
	assert_int_equal(prefix_subnet_count(&p, 8), 0);

	struct ipprefix v6 = P("fd00:10:244::/56");
	assert_int_equal(prefix_subnet(&v6, 64, 3, &s), 0);
	assert_string_equal(prefix_fmt(&s, buf), "fd00:10:244:3::/64");

	struct ipaddr h;
	struct ipprefix n = P("172.20.1.0/24");
	assert_int_equal(prefix_host(&n, 2, &h), 0);
	assert_string_equal(ip_fmt(&h, buf), "172.20.1.2");
	assert_int_equal(prefix_offset(&n, &h), 2);
	assert_int_equal(prefix_host(&n, 256, &h), -ERANGE);
	assert_int_equal(prefix_size(&n), 256);
	struct ipaddr o = A("172.20.2.1");
	assert_int_equal(prefix_offset(&n, &o), -1);
}

static void test_cmp(void **state)
{
	(void)state;
	struct ipaddr a = A("10.0.0.1"), b = A("10.0.0.2"), c = A("::1");
	assert_true(ip_cmp(&a, &b) < 0);
	assert_true(ip_cmp(&b, &a) > 0);
	assert_true(ip_eq(&a, &a));
	assert_int_not_equal(ip_cmp(&a, &c), 0);
	struct ipprefix p = P("10.1.2.3/8");
	prefix_normalize(&p);
	struct ipprefix q = P("10.0.0.0/8");
	assert_true(prefix_eq(&p, &q));
}

static void test_files(void **state)
{
	(void)state;
	char dir[] = "/tmp/twill-test-lib-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *sub = xasprintf("%s/a/b/c", dir);
	assert_int_equal(mkdir_p(sub, 0755), 0);
	char *f = xasprintf("%s/x.json", sub);
	assert_int_equal(file_write_atomic(f, "hello", 5), 0);
	char *data;
	size_t len;
	assert_int_equal(file_read(f, &data, &len), 0);
	assert_int_equal(len, 5);
	assert_string_equal(data, "hello");
	free(data);
	assert_int_equal(file_read("/nonexistent/twill", &data, &len), -ENOENT);
	assert_int_equal(rm_rf(dir), 0);
	assert_int_equal(access(dir, F_OK), -1);
	assert_int_equal(rm_rf(dir), 0);
	free(f);
	free(sub);
}

static void test_strings(void **state)
{
	(void)state;
	char b[4];
	assert_int_equal(str_copy(b, sizeof(b), "abc"), 0);
	assert_int_equal(str_copy(b, sizeof(b), "abcd"), -ENAMETOOLONG);
	assert_string_equal(b, "abc");
	assert_true(str_has_prefix("twill.1", "twill."));
	assert_false(str_has_prefix("tw", "twill"));
	assert_true(str_has_suffix("a.yaml", ".yaml"));
	assert_false(str_has_suffix("a.yaml.tmp.1", ".yaml"));
	assert_int_not_equal(fnv1a64("a", 1, FNV_SEED), fnv1a64("b", 1, FNV_SEED));
	monotime_t t0 = monotime_now(), t1 = monotime_now();
	assert_true(t1 >= t0);
}

/* a streamed file replaces the old one only when its content changed */
static void test_file_stream(void **state)
{
	(void)state;
	char dir[] = "/tmp/twill-test-lib-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *f = xasprintf("%s/s.json", dir);
	uint64_t last = 0;
	struct file_stream fs;
	FILE *out = file_stream_open(&fs, f);
	assert_non_null(out);
	json_put_str(out, "a\"b\\c\n");
	for (int i = 0; i < 20000; i++) /* more than one buffer */
		fputs("0123456789", out);
	assert_int_equal(file_stream_commit(&fs, f, &last), 1);
	assert_int_not_equal(last, 0);
	assert_int_equal(file_hash(f), last);
	char *data;
	size_t len;
	assert_int_equal(file_read(f, &data, &len), 0);
	assert_int_equal(len, 15 + 200000);
	assert_memory_equal(data, "\"a\\\"b\\\\c\\u000a\"", 15);
	free(data);
	struct stat st0, st1;
	assert_int_equal(stat(f, &st0), 0);
	/* the same content again: not replaced (same inode), no temporary file left */
	uint64_t before = last;
	last = 0; /* unknown (a restart): the file on disk is hashed */
	out = file_stream_open(&fs, f);
	json_put_str(out, "a\"b\\c\n");
	for (int i = 0; i < 20000; i++)
		fputs("0123456789", out);
	assert_int_equal(file_stream_commit(&fs, f, &last), 0);
	assert_int_equal(last, before);
	assert_int_equal(stat(f, &st1), 0);
	assert_int_equal(st0.st_ino, st1.st_ino);
	/* different content: replaced */
	out = file_stream_open(&fs, f);
	fputs("{}", out);
	assert_int_equal(file_stream_commit(&fs, f, &last), 1);
	assert_int_equal(file_read(f, &data, &len), 0);
	assert_string_equal(data, "{}");
	free(data);
	assert_int_equal(file_hash("/nonexistent/twill"), 0);
	/* a directory that does not exist: an error, nothing written */
	char *bad = xasprintf("%s/no/such/s.json", dir);
	assert_null(file_stream_open(&fs, bad));
	assert_int_equal(fs.err, -ENOENT);
	free(bad);
	assert_int_equal(rm_rf(dir), 0);
	free(f);
}

static void test_intern(void **state)
{
	(void)state;
	char a[] = "node-a", b[] = "node-a";
	const char *x = str_intern(a), *y = str_intern(b);
	assert_ptr_equal(x, y);
	assert_ptr_not_equal(x, a);
	assert_string_equal(x, "node-a");
	assert_null(str_intern(NULL));
	const char *first[300];
	for (int i = 0; i < 300; i++) { /* through several table growths */
		char n[16];
		snprintf(n, sizeof(n), "n%d", i);
		first[i] = str_intern(n);
	}
	for (int i = 0; i < 300; i++) {
		char n[16];
		snprintf(n, sizeof(n), "n%d", i);
		assert_ptr_equal(str_intern(n), first[i]);
	}
	assert_ptr_equal(str_intern("node-a"), x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_fmt),	cmocka_unit_test(test_contains_covers),
	    cmocka_unit_test(test_subnets),	cmocka_unit_test(test_cmp),
	    cmocka_unit_test(test_files),	cmocka_unit_test(test_strings),
	    cmocka_unit_test(test_file_stream), cmocka_unit_test(test_intern),
	};
	return cmocka_run_group_tests_name("lib", tests, NULL, NULL);
}
