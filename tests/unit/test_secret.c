/* Unit tests for the Secret kind (model/manifest.c decode_secret, model.c life cycle): data
 * is base64-decoded, stringData wins over data, bad base64 and NUL bytes are errors on the
 * field, and clone/hash/free cover the data. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/manifest.h"
#include "model/model.h"

struct diags {
	int n;
	char text[8][512];
};

static void collect(const struct diag *d, void *arg)
{
	struct diags *s = arg;
	if (s->n < 8)
		diag_fmt(d, s->text[s->n++], sizeof(s->text[0]));
}

static int decode(const char *text, struct objlist *l, struct diags *s)
{
	memset(s, 0, sizeof(*s));
	return manifest_decode("s.yaml", text, strlen(text), l, collect, s);
}

static void test_secret_data(void **state)
{
	(void)state;
	/* "s3cret" and "a:b" in base64; stringData's b wins over data's b */
	static const char y[] = "apiVersion: v1\n"
				"kind: Secret\n"
				"metadata: {name: pw, namespace: kube-system}\n"
				"data: {a: czNjcmV0, b: YTpi, empty: \"\"}\n"
				"stringData: {b: plain, c: x}\n";
	struct objlist l = {0};
	struct diags s;
	assert_int_equal(decode(y, &l, &s), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(l.n, 1);
	const struct object *o = l.v[0];
	assert_int_equal(o->kind, KIND_SECRET);
	assert_string_equal(o->meta.ns, "kube-system");
	assert_int_equal(o->secret.data.n, 4);
	assert_string_equal(labels_get(&o->secret.data, "a"), "s3cret");
	assert_string_equal(labels_get(&o->secret.data, "b"), "plain");
	assert_string_equal(labels_get(&o->secret.data, "c"), "x");
	assert_string_equal(labels_get(&o->secret.data, "empty"), "");
	struct object *c = object_clone(o);
	assert_string_equal(labels_get(&c->secret.data, "a"), "s3cret");
	assert_true(object_hash(c) == o->hash);
	object_free(c);

	/* another value, another hash */
	static const char y2[] = "apiVersion: v1\nkind: Secret\nmetadata: {name: pw}\n"
				 "data: {a: czNjcmV1}\n";
	struct objlist l2 = {0};
	assert_int_equal(decode(y2, &l2, &s), 0);
	assert_string_equal(labels_get(&l2.v[0]->secret.data, "a"), "s3creu");
	assert_true(l2.v[0]->hash != o->hash);
	objlist_free(&l2);
	objlist_free(&l);
}

static void test_secret_errors(void **state)
{
	(void)state;
	const struct {
		const char *data, *want;
	} bad[] = {
	    {"data: {a: \"not base64!\"}", "data.a: not base64"},
	    {"data: {a: czNjcmV}", "data.a: not base64"},	  /* not a multiple of 4 */
	    {"data: {a: AGI=}", "data.a: not base64"},		  /* "\0b": a NUL byte */
	    {"data: [a]", "data: must be a mapping"},
	    {"stringData: {a: [1]}", "stringData.a: must be a string"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char y[256];
		snprintf(y, sizeof(y), "apiVersion: v1\nkind: Secret\nmetadata: {name: pw}\n%s\n",
			 bad[i].data);
		struct objlist l = {0};
		struct diags s;
		assert_int_equal(decode(y, &l, &s), 1);
		assert_int_equal(l.n, 0);
		assert_true(s.n >= 1);
		if (!strstr(s.text[0], bad[i].want) || !strstr(s.text[0], "Secret/default/pw"))
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, s.text[0], bad[i].want);
		objlist_free(&l);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_secret_data),
	    cmocka_unit_test(test_secret_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
