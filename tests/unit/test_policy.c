/* Unit tests for the NetworkPolicy planner (src/policy/policy_plan.c): isolation and
 * policyTypes defaulting, peers (podSelector, namespaceSelector, both, ipBlock with
 * except), ports (numeric, endPort, named per destination pod), hostNetwork pods, the
 * incremental property (a label change changes set elements, not chains) and the
 * explanation of one flow. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sched.h>
#include <unistd.h>

/* cmocka needs the headers above first */
#include <cmocka.h>

#include "in_netns.h"

#include <netinet/in.h>

#include "lib/util.h"
#include "model/manifest.h"
#include "policy/policy.h"
#include "store/store.h"

static void diag_fail(const struct diag *d, void *arg)
{
	(void)arg;
	char buf[512];
	fail_msg("decode: %s", diag_fmt(d, buf, sizeof(buf)));
}

static void load(struct store *st, const char *origin, const char *yaml)
{
	struct objlist l = {0};
	assert_int_equal(manifest_decode(origin, yaml, strlen(yaml), &l, diag_fail, NULL), 0);
	store_replace_origin(st, origin, false, &l, diag_fail, NULL);
	objlist_free(&l);
}

#define POD(ns, name, node, labels, ip, extra)                                                     \
	"apiVersion: v1\nkind: Pod\nmetadata: {name: " name ", namespace: " ns ", labels: " labels \
	"}\nspec:\n  nodeName: " node "\n" extra "  containers:\n  - name: c\n    ports:\n"       \
	"    - {name: http, containerPort: 80}\n    - {name: dns, containerPort: 53, protocol: "   \
	"UDP}\nstatus: {podIP: " ip "}\n---\n"

/* x/a (n1), x/b (n2), y/a (n1, http on 8080), hostNetwork h (n1), namespace y team=blue */
static const char *BASE =
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: y, labels: {team: blue}}\n---\n" POD(
	"x", "a", "n1", "{pod: a}", "10.0.1.2", "") POD("x", "b", "n2", "{pod: b}", "10.0.2.2", "")
	"apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: y, labels: {pod: a}}\nspec:\n"
	"  nodeName: n1\n  containers:\n  - name: c\n    ports:\n    - {name: http, containerPort: "
	"8080}\nstatus: {podIP: 10.0.1.3}\n---\n" POD("x", "h", "n1", "{pod: a}", "192.168.1.1",
						      "  hostNetwork: true\n");

static struct store *setup(const char *policies)
{
	struct store *st = store_new();
	load(st, "base.yaml", BASE);
	if (policies)
		load(st, "np.yaml", policies);
	return st;
}

static const struct pol_chain *chain(const struct pol_plan *p, const char *name)
{
	return smap_get(&p->chains, name);
}

static const struct pol_set *set_of(const struct pol_plan *p, const char *name)
{
	return smap_get(&p->sets, name);
}

static bool set_has(const struct pol_set *s, const char *ip)
{
	struct ipaddr a;
	ip_parse(ip, &a);
	for (size_t i = 0; s && i < s->n; i++)
		if (ip_eq(&s->v[i].lo, &a))
			return true;
	return false;
}

static void test_no_policy_no_isolation(void **state)
{
	(void)state;
	struct store *st = setup(NULL);
	struct pol_plan *p = pol_plan_build(st, "n1");
	assert_int_equal(p->chains.n, 0);
	assert_false(p->enforcing);
	/* x/a and y/a are this node's policed pods; hostNetwork x/h is not */
	assert_int_equal(p->nknown, 2);
	pol_plan_free(p);
	store_free(st);
}

static void test_types_default(void **state)
{
	(void)state;
	struct store *st =
	    setup("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, "
		  "namespace: x}\nspec:\n  podSelector: {}\n  egress:\n  - {}\n");
	struct pol_plan *p = pol_plan_build(st, "n1");
	/* egress rules without policyTypes: Ingress and Egress; only x's pods; not hostNetwork */
	assert_non_null(chain(p, "in-x/a"));
	assert_non_null(chain(p, "eg-x/a"));
	assert_null(chain(p, "in-x/h"));
	assert_null(chain(p, "in-y/a"));
	assert_int_equal(chain(p, "in-x/a")->nrules, 0);   /* no ingress rules: deny all */
	assert_int_equal(chain(p, "eg-x/a")->nrules, 1);   /* `- {}`: allow all */
	assert_null(chain(p, "eg-x/a")->rules[0].set);
	assert_int_equal(chain(p, "eg-x/a")->rules[0].l4, 0);
	assert_true(p->enforcing);
	assert_int_equal(p->nelems, 2);
	pol_plan_free(p);
	store_free(st);
}

static const char *PEERS =
    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n"
    "spec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n"
    "  - from:\n    - {podSelector: {matchLabels: {pod: a}}, namespaceSelector: {matchLabels: "
    "{team: blue}}}\n"
    "  - from:\n    - podSelector: {matchLabels: {pod: a}}\n    - namespaceSelector: "
    "{matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [y]}]}\n"
    "  - from:\n    - ipBlock: {cidr: 10.0.0.0/16, except: [10.0.1.0/24, 10.0.3.0/24]}\n"
    "    ports:\n    - {port: http}\n    - {port: 1000, endPort: 2000, protocol: UDP}\n";

static void test_peers(void **state)
{
	(void)state;
	struct store *st = setup(PEERS);
	struct pol_plan *p = pol_plan_build(st, "n1");
	const struct pol_chain *c = chain(p, "in-x/a");
	assert_non_null(c);
	/* rule 0: combined peer -> one set {y/a}; rule 1: two peers -> two sets */
	assert_int_equal(c->nrules, 1 + 2 + 2);
	const struct pol_set *comb = set_of(p, c->rules[0].set);
	assert_int_equal(comb->n, 1);
	assert_true(set_has(comb, "10.0.1.3"));
	const struct pol_set *same = set_of(p, c->rules[1].set), *ny = set_of(p, c->rules[2].set);
	assert_int_equal(same->n, 1);
	assert_true(set_has(same, "10.0.1.2")); /* pod=a in x, not hostNetwork x/h */
	assert_int_equal(ny->n, 1);
	assert_true(set_has(ny, "10.0.1.3"));
	/* rule 2: ipBlock minus except as ranges; named port resolved on x/a; endPort */
	const struct pol_set *b = set_of(p, c->rules[3].set);
	assert_true(b->interval);
	assert_int_equal(b->n, 3);
	char x[IP_STRLEN], y[IP_STRLEN];
	assert_string_equal(ip_fmt(&b->v[0].lo, x), "10.0.0.0");
	assert_string_equal(ip_fmt(&b->v[0].hi, y), "10.0.0.255");
	assert_string_equal(ip_fmt(&b->v[1].lo, x), "10.0.2.0");
	assert_string_equal(ip_fmt(&b->v[1].hi, y), "10.0.2.255");
	assert_string_equal(ip_fmt(&b->v[2].lo, x), "10.0.4.0");
	assert_string_equal(ip_fmt(&b->v[2].hi, y), "10.0.255.255");
	assert_int_equal(c->rules[3].l4, IPPROTO_TCP);
	assert_int_equal(c->rules[3].lo, 80);
	assert_int_equal(c->rules[4].l4, IPPROTO_UDP);
	assert_int_equal(c->rules[4].lo, 1000);
	assert_int_equal(c->rules[4].hi, 2000);
	pol_plan_free(p);
	store_free(st);
}

static void test_named_port_per_pod(void **state)
{
	(void)state;
	/* ingress to every pod on "http": 80 on x pods, 8080 on y/a; egress from x/a to
	 * "http" anywhere: a rule per destination pod with its own number */
	struct store *st = setup(
	    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: "
	    "y}\nspec:\n  podSelector: {}\n  ingress:\n  - ports: [{port: http}]\n---\n"
	    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: e, namespace: "
	    "x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress:\n"
	    "  - to: [{namespaceSelector: {}}]\n    ports: [{port: http}, {port: dns, protocol: "
	    "UDP}]\n");
	struct pol_plan *p = pol_plan_build(st, "n1");
	const struct pol_chain *in = chain(p, "in-y/a"), *eg = chain(p, "eg-x/a");
	assert_int_equal(in->nrules, 1);
	assert_int_equal(in->rules[0].lo, 8080);
	/* http: x/a 80, x/b 80, y/a 8080; dns/UDP: x/a, x/b (y/a has none) */
	assert_int_equal(eg->nrules, 5);
	unsigned n8080 = 0, ndns = 0;
	for (size_t i = 0; i < eg->nrules; i++) {
		assert_null(eg->rules[i].set);
		assert_int_equal(eg->rules[i].addr.family, AF_INET);
		n8080 += eg->rules[i].lo == 8080;
		ndns += eg->rules[i].l4 == IPPROTO_UDP && eg->rules[i].lo == 53;
	}
	assert_int_equal(n8080, 1);
	assert_int_equal(ndns, 2);
	pol_plan_free(p);
	store_free(st);
}

/* A label change moves set elements; the chains keep their signatures. */
static void test_label_change_is_set_only(void **state)
{
	(void)state;
	struct store *st = setup(PEERS);
	struct pol_plan *p1 = pol_plan_build(st, "n1");
	load(st, "more.yaml", POD("y", "c", "n2", "{pod: a}", "10.0.2.9", ""));
	struct pol_plan *p2 = pol_plan_build(st, "n1");
	const struct pol_chain *c1 = chain(p1, "in-x/a"), *c2 = chain(p2, "in-x/a");
	assert_int_equal(c1->sig, c2->sig);
	assert_false(set_has(set_of(p1, c1->rules[0].set), "10.0.2.9"));
	assert_true(set_has(set_of(p2, c2->rules[0].set), "10.0.2.9"));
	pol_plan_free(p1);
	pol_plan_free(p2);
	store_free(st);
}

static void test_explain(void **state)
{
	(void)state;
	struct store *st = setup(PEERS);
	struct pol_verdict v;
	assert_int_equal(policy_explain(st, "y/a", "x/a", 80, PROTO_TCP, &v), 0);
	assert_true(v.allowed);
	assert_non_null(strstr(v.text, "allowed by x/p ingress rule 1"));
	free(v.text);
	/* x/b is in the ipBlock, but that rule allows http (80) and 1000-2000/UDP only */
	assert_int_equal(policy_explain(st, "x/b", "x/a", 81, PROTO_TCP, &v), 0);
	assert_false(v.allowed);
	assert_non_null(strstr(v.text, "isolated by x/p"));
	free(v.text);
	/* ipBlock rule: 10.0.2.2 (x/b) is inside 10.0.0.0/16 and outside the excepts, but
	 * only on http and 1000-2000/UDP */
	assert_int_equal(policy_explain(st, "10.0.2.2", "x/a", 1500, PROTO_UDP, &v), 0);
	assert_true(v.allowed);
	free(v.text);
	assert_int_equal(policy_explain(st, "10.0.1.99", "x/a", 1500, PROTO_UDP, &v), 0);
	assert_false(v.allowed);
	free(v.text);
	assert_int_equal(policy_explain(st, "x/nope", "x/a", 80, PROTO_TCP, &v), -ENOENT);
	free(v.text);
	store_free(st);
}

/* ---- the writer against a real kernel, in a child's private network namespace ---- */

static void writer_child(void)
{
	struct store *st = setup(PEERS);
	struct pol_writer *w = pol_writer_new("twill-policy-test");
	struct pol_plan *p = pol_plan_build(st, "n1");
	CK(pol_writer_sync(w, p) == 0);
	const struct pol_sync_stats *s = pol_writer_stats(w);
	CK(s->full && s->chains_written == 2 && s->sets_added == 4);
	/* nothing changed: nothing sent */
	CK(pol_writer_sync(w, p) == 0);
	CK(s->messages == 0);
	pol_plan_free(p);
	/* a pod joining a peer: set elements only */
	load(st, "more.yaml", POD("y", "c", "n2", "{pod: a}", "10.0.2.9", ""));
	p = pol_plan_build(st, "n1");
	CK(pol_writer_sync(w, p) == 0);
	CK(s->chains_written == 0 && s->elems_added == 2 && s->elems_deleted == 0);
	/* a restarted writer dumps the kernel and rewrites nothing */
	pol_writer_free(w);
	w = pol_writer_new("twill-policy-test");
	CK(pol_writer_sync(w, p) == 0);
	s = pol_writer_stats(w);
	CK(s->full && s->chains_written == 0 && s->sets_added == 0 && s->elems_added == 0 &&
	   s->elems_deleted == 0 && s->chains_deleted == 0);
	pol_plan_free(p);
	/* the policy deleted: chains and sets go, the base stays */
	store_remove_origin(st, "np.yaml");
	p = pol_plan_build(st, "n1");
	CK(pol_writer_sync(w, p) == 0);
	CK(s->chains_deleted == 1 && s->sets_deleted == 4);
	pol_plan_free(p);
	/* dual-stack: a pod with an IPv6 address gets ip6 rules, p6 sets, in6/known6 */
	load(st, "np.yaml", PEERS);
	load(st, "v6.yaml",
	     "apiVersion: v1\nkind: Pod\nmetadata: {name: d, namespace: x, labels: {pod: a}}\n"
	     "spec: {nodeName: n1}\nstatus: {podIPs: [{ip: 10.0.1.7}, {ip: 'fd00::7'}]}\n");
	p = pol_plan_build(st, "n1");
	const struct pol_chain *c = chain(p, "in-x/d");
	CK(c != NULL);
	bool v6 = false;
	for (size_t i = 0; i < c->nrules; i++)
		if (c->rules[i].family == AF_INET6 && c->rules[i].set &&
		    set_has(set_of(p, c->rules[i].set), "fd00::7"))
			v6 = true;
	CK(v6);
	CK(pol_writer_sync(w, p) == 0);
	CK(s->chains_written >= 2);
	pol_plan_free(p);
	pol_writer_free(w);
	CK(pol_table_delete("twill-policy-test") == 0);
	store_free(st);
}

static void test_writer_kernel(void **state)
{
	(void)state;
	in_netns(writer_child);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_no_policy_no_isolation),
	    cmocka_unit_test(test_types_default),
	    cmocka_unit_test(test_peers),
	    cmocka_unit_test(test_named_port_per_pod),
	    cmocka_unit_test(test_label_change_is_set_only),
	    cmocka_unit_test(test_explain),
	    cmocka_unit_test(test_writer_kernel),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
