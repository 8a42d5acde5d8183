/* Unit tests for the iptables Service dataplane renderer (src/proxy/ipt.c): SHA-256 and
 * kube-proxy's chain-name hashes (vectors from kube-proxy's own tests), and golden
 * iptables-restore text for ClusterIP (1 and 3 endpoints), NodePort, ClientIP affinity, no
 * endpoints (REJECT), externalTrafficPolicy/internalTrafficPolicy Local, stale-chain
 * deletion that leaves foreign chains alone, the jumps inserted only when missing, and the
 * cleanup text.  Services go through the real planner (svc_plan_service) first. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* cmocka needs the headers above first */
#include <cmocka.h>

#include "lib/util.h"
#include "model/manifest.h"
#include "proxy/ipt.h"
#include "proxy/svc_plan.h"

static void diag_fail(const struct diag *d, void *arg)
{
	(void)arg;
	char buf[512];
	fail_msg("decode: %s", diag_fmt(d, buf, sizeof(buf)));
}

/* Every line of text that contains needle, joined (each with its newline). */
static char *grep(const char *text, const char *needle)
{
	size_t cap = strlen(text) + 1, n = 0;
	char *out = xcalloc(cap, 1);
	for (const char *l = text; *l;) {
		const char *e = strchr(l, '\n');
		size_t len = e ? (size_t)(e - l) + 1 : strlen(l);
		char *line = strndup(l, len);
		if (strstr(line, needle)) {
			memcpy(out + n, line, len);
			n += len;
		}
		free(line);
		l += len;
	}
	out[n] = '\0';
	return out;
}

/* The *table section of text, from "*table" to its COMMIT (inclusive). */
static char *section(const char *text, const char *table)
{
	char hdr[32];
	snprintf(hdr, sizeof(hdr), "*%s\n", table);
	const char *s = strstr(text, hdr);
	assert_non_null(s);
	const char *e = strstr(s, "COMMIT\n");
	assert_non_null(e);
	return strndup(s, (size_t)(e + 7 - s));
}

static void expect(const char *what, const char *got, const char *want)
{
	if (strcmp(got, want)) {
		fprintf(stderr, "---- %s: got\n%s---- want\n%s----\n", what, got, want);
		fail_msg("%s differs", what);
	}
}

/* Plan every Service of the manifests for node "n1" (node address 192.168.0.2) and render. */
static char *render(const char *yaml, const struct ipt_cfg *cfg, const char *saved,
		    struct ipt_render_stats *st)
{
	struct objlist objs = {0};
	assert_int_equal(manifest_decode("t.yaml", yaml, strlen(yaml), &objs, diag_fail, NULL), 0);
	const struct object *sl[16];
	size_t nsl = 0;
	for (size_t i = 0; i < objs.n; i++)
		if (objs.v[i]->kind == KIND_ENDPOINTSLICE && nsl < 16)
			sl[nsl++] = objs.v[i];
	struct ipaddr node_ip;
	assert_int_equal(ip_parse("192.168.0.2", &node_ip), 0);
	struct svc_plan_in in = {"n1", &node_ip, 1};
	struct ipt_ports ports = {0};
	for (size_t i = 0; i < objs.n; i++) {
		if (objs.v[i]->kind != KIND_SERVICE)
			continue;
		struct svc_entries e = {0};
		assert_int_equal(svc_plan_service(objs.v[i], sl, nsl, &in, &e), 0);
		assert_int_equal(ipt_ports_add(&ports, objs.v[i], &e, sl, nsl, &in, AF_INET), 0);
		svc_entries_free(&e);
	}
	char *text = ipt_render(&ports, cfg, saved, st);
	ipt_ports_free(&ports);
	objlist_free(&objs);
	assert_non_null(text);
	if (getenv("IPT_DUMP"))
		fputs(text, stderr);
	return text;
}

static struct ipprefix CIDR;
static struct ipt_cfg cfg_default(void)
{
	assert_int_equal(prefix_parse("10.0.0.0/8", &CIDR), 0);
	return (struct ipt_cfg){.family = AF_INET, .cluster_cidr = &CIDR};
}

/* ---- hashes ---- */

static void hex(const uint8_t *d, char *out)
{
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

static void test_sha256(void **state)
{
	(void)state;
	uint8_t d[32];
	char h[65];
	ipt_sha256("", 0, d);
	hex(d, h);
	assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	ipt_sha256("abc", 3, d);
	hex(d, h);
	assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	/* 56 bytes: the padding spills into a second block */
	const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	ipt_sha256(m, strlen(m), d);
	hex(d, h);
	assert_string_equal(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	/* a million 'a's: many blocks */
	char *a = xmalloc(1000000);
	memset(a, 'a', 1000000);
	ipt_sha256(a, 1000000, d);
	free(a);
	hex(d, h);
	assert_string_equal(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_chain_names(void **state)
{
	(void)state;
	char h[17], b[32];
	/* kube-proxy pkg/proxy/iptables/proxier_test.go */
	ipt_hash16("ns1/svc1:p80tcp", h);
	assert_string_equal(h, "XPGD46QRK7WJZT7O");
	ipt_hash16("ns4/svc4:p80tcp", h);
	assert_string_equal(h, "4SW47YFZTEDKD3PK");
	assert_string_equal(ipt_chain_name(b, "KUBE-SVC-", "ns1/svc1:p80", PROTO_TCP, NULL),
			    "KUBE-SVC-XPGD46QRK7WJZT7O");
	assert_string_equal(ipt_chain_name(b, "KUBE-EXT-", "ns1/svc1:p80", PROTO_TCP, NULL),
			    "KUBE-EXT-XPGD46QRK7WJZT7O");
	assert_string_equal(
	    ipt_chain_name(b, "KUBE-SEP-", "ns1/svc1:p80", PROTO_TCP, "10.180.0.1:80"),
	    "KUBE-SEP-SXIVWICOYRO3J4NJ");
	assert_true(strlen(b) <= 28); /* iptables' limit on chain names */
}

/* ---- golden rule sets ---- */

static const char *KP_SVC1 = "apiVersion: v1\n"
			     "kind: Service\n"
			     "metadata: {name: svc1, namespace: ns1}\n"
			     "spec:\n"
			     "  clusterIP: 172.30.0.41\n"
			     "  ports: [{name: p80, port: 80, targetPort: 80}]\n"
			     "---\n"
			     "apiVersion: discovery.k8s.io/v1\n"
			     "kind: EndpointSlice\n"
			     "metadata: {name: svc1-a, namespace: ns1, labels: "
			     "{kubernetes.io/service-name: svc1}}\n"
			     "addressType: IPv4\n"
			     "ports: [{name: p80, port: 80}]\n"
			     "endpoints:\n"
			     "- {addresses: [10.180.0.1], nodeName: n2}\n";

/* The whole text for kube-proxy's own first test Service, nothing in the kernel yet. */
static void test_kube_proxy_svc1_full(void **state)
{
	(void)state;
	struct ipt_cfg cfg = cfg_default();
	struct ipt_render_stats st;
	char *t = render(KP_SVC1, &cfg, NULL, &st);
	expect("svc1", t,
	       "*filter\n"
	       ":KUBE-SERVICES - [0:0]\n"
	       ":KUBE-EXTERNAL-SERVICES - [0:0]\n"
	       ":KUBE-FORWARD - [0:0]\n"
	       ":KUBE-NODEPORTS - [0:0]\n"
	       ":KUBE-PROXY-FIREWALL - [0:0]\n"
	       "-I INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes "
	       "externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n"
	       "-I FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes "
	       "externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n"
	       "-I INPUT -m comment --comment \"kubernetes health check service ports\" -j "
	       "KUBE-NODEPORTS\n"
	       "-I FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service "
	       "portals\" -j KUBE-SERVICES\n"
	       "-I OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service "
	       "portals\" -j KUBE-SERVICES\n"
	       "-I FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n"
	       "-I INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load "
	       "balancer firewall\" -j KUBE-PROXY-FIREWALL\n"
	       "-I OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load "
	       "balancer firewall\" -j KUBE-PROXY-FIREWALL\n"
	       "-I FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes load "
	       "balancer firewall\" -j KUBE-PROXY-FIREWALL\n"
	       "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n"
	       "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark "
	       "--mark 0x4000/0x4000 -j ACCEPT\n"
	       "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m "
	       "conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
	       "COMMIT\n"
	       "*nat\n"
	       ":KUBE-SERVICES - [0:0]\n"
	       ":KUBE-NODEPORTS - [0:0]\n"
	       ":KUBE-POSTROUTING - [0:0]\n"
	       ":KUBE-MARK-MASQ - [0:0]\n"
	       ":KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]\n"
	       ":KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]\n"
	       "-I OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
	       "-I PREROUTING -m comment --comment \"kubernetes service portals\" -j "
	       "KUBE-SERVICES\n"
	       "-I POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j "
	       "KUBE-POSTROUTING\n"
	       "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n"
	       "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n"
	       "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring "
	       "SNAT\" -j MASQUERADE --random-fully\n"
	       "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n"
	       "-A KUBE-SERVICES -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp -p tcp "
	       "-d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O\n"
	       "-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment \"ns1/svc1:p80 cluster IP\" -m "
	       "tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ\n"
	       "-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment \"ns1/svc1:p80 -> "
	       "10.180.0.1:80\" -j KUBE-SEP-SXIVWICOYRO3J4NJ\n"
	       "-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j "
	       "KUBE-MARK-MASQ\n"
	       "-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j "
	       "DNAT --to-destination 10.180.0.1:80\n"
	       "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this "
	       "must be the last rule in this chain\" -m addrtype --dst-type LOCAL ! -d "
	       "127.0.0.0/8 -j KUBE-NODEPORTS\n"
	       "COMMIT\n");
	assert_int_equal(st.jumps_added, 12);
	assert_int_equal(st.endpoints, 1);
	assert_int_equal(st.deleted_chains, 0);
	free(t);

	/* localhost NodePorts (kube-proxy's default): no "! -d 127.0.0.0/8" on the last rule,
	 * kubelet's KUBE-FIREWALL martian rule and its jumps */
	cfg.localhost_nodeports = true;
	t = render(KP_SVC1, &cfg, NULL, &st);
	assert_non_null(strstr(t, "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n"));
	assert_non_null(strstr(t, "-A KUBE-FIREWALL -m comment --comment \"block incoming localnet "
				  "connections\" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! "
				  "--ctstate RELATED,ESTABLISHED,DNAT -j DROP\n"));
	assert_non_null(strstr(t, "-I INPUT -j KUBE-FIREWALL\n"));
	assert_int_equal(st.jumps_added, 14);
	free(t);
}

/* iptables-save output of a node where the jumps exist, plus chains: one stale service
 * chain, one current, and foreign ones that must be left alone. */
static const char *SAVED =
    "# Generated by iptables-save v1.8.9 (nf_tables)\n"
    "*filter\n"
    ":INPUT ACCEPT [0:0]\n"
    ":FORWARD ACCEPT [0:0]\n"
    ":OUTPUT ACCEPT [0:0]\n"
    ":KUBE-SERVICES - [0:0]\n"
    ":FOREIGN - [0:0]\n"
    "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible "
    "service portals\" -j KUBE-EXTERNAL-SERVICES\n"
    "-A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS\n"
    "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer "
    "firewall\" -j KUBE-PROXY-FIREWALL\n"
    "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer "
    "firewall\" -j KUBE-PROXY-FIREWALL\n"
    "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n"
    "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" "
    "-j KUBE-SERVICES\n"
    "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes "
    "externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n"
    "-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer "
    "firewall\" -j KUBE-PROXY-FIREWALL\n"
    "-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" "
    "-j KUBE-SERVICES\n"
    "COMMIT\n"
    "*nat\n"
    ":PREROUTING ACCEPT [0:0]\n"
    ":INPUT ACCEPT [0:0]\n"
    ":OUTPUT ACCEPT [0:0]\n"
    ":POSTROUTING ACCEPT [0:0]\n"
    ":KUBE-SERVICES - [0:0]\n"
    ":KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]\n"
    ":KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]\n"
    ":KUBE-SEP-BBBBBBBBBBBBBBBB - [0:0]\n"
    ":KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]\n"
    ":DOCKER - [0:0]\n"
    ":CNI-HOSTPORT-DNAT - [0:0]\n"
    "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
    "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
    "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n"
    "-A POSTROUTING -j DOCKER\n"
    "COMMIT\n";

static void test_stale_chains_and_jumps(void **state)
{
	(void)state;
	struct ipt_cfg cfg = cfg_default();
	struct ipt_render_stats st;
	char *t = render(KP_SVC1, &cfg, SAVED, &st);
	/* every jump is there already: none inserted */
	assert_int_equal(st.jumps_added, 0);
	assert_null(strstr(t, "-I "));
	/* the two stale service chains are flushed (declared) and deleted, before the
	 * final KUBE-NODEPORTS rule; the current ones and the foreign ones are not */
	assert_int_equal(st.deleted_chains, 2);
	char *x = grep(t, "-X ");
	expect("deletions", x, "-X KUBE-SVC-AAAAAAAAAAAAAAAA\n-X KUBE-SEP-BBBBBBBBBBBBBBBB\n");
	free(x);
	char *nat = section(t, "nat");
	char *decl = grep(nat, " - [0:0]");
	expect("nat chains", decl,
	       ":KUBE-SERVICES - [0:0]\n"
	       ":KUBE-NODEPORTS - [0:0]\n"
	       ":KUBE-POSTROUTING - [0:0]\n"
	       ":KUBE-MARK-MASQ - [0:0]\n"
	       ":KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]\n"
	       ":KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]\n"
	       ":KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]\n"
	       ":KUBE-SEP-BBBBBBBBBBBBBBBB - [0:0]\n");
	assert_null(strstr(t, "DOCKER"));
	assert_null(strstr(t, "CNI-HOSTPORT"));
	assert_null(strstr(t, "FOREIGN"));
	const char *last = strstr(nat, "-X KUBE-SEP-BBBBBBBBBBBBBBBB\n");
	assert_non_null(last);
	last += strlen("-X KUBE-SEP-BBBBBBBBBBBBBBBB\n");
	assert_true(str_has_prefix(last, "-A KUBE-SERVICES -m comment --comment \"kubernetes "
					 "service nodeports"));
	free(decl);
	free(nat);
	free(t);
}

static const char *SVC3 = "apiVersion: v1\n"
			  "kind: Service\n"
			  "metadata: {name: my-svc, namespace: default}\n"
			  "spec:\n"
			  "  clusterIP: 10.96.0.100\n"
			  "  ports: [{name: http, port: 80, targetPort: 8080}]\n"
			  "---\n"
			  "apiVersion: discovery.k8s.io/v1\n"
			  "kind: EndpointSlice\n"
			  "metadata: {name: my-svc-1, namespace: default, labels: "
			  "{kubernetes.io/service-name: my-svc}}\n"
			  "addressType: IPv4\n"
			  "ports: [{name: http, port: 8080}]\n"
			  "endpoints:\n"
			  "- {addresses: [10.244.3.30], nodeName: n3}\n"
			  "- {addresses: [10.244.1.10], nodeName: n1}\n"
			  "- {addresses: [10.244.2.20], nodeName: n2}\n";

/* Seed 000's example: one ClusterIP, three endpoints, 1/3, 1/2, then the plain jump. */
static void test_cluster_ip_three_endpoints(void **state)
{
	(void)state;
	struct ipt_cfg cfg = cfg_default();
	char *t = render(SVC3, &cfg, SAVED, NULL);
	char *nat = section(t, "nat");
	char *svc = grep(nat, "my-svc");
	expect("3 endpoints", svc,
	       "-A KUBE-SERVICES -m comment --comment \"default/my-svc:http cluster IP\" -m tcp -p "
	       "tcp -d 10.96.0.100 --dport 80 -j KUBE-SVC-2MTBOPTLZLODG6N2\n"
	       "-A KUBE-SVC-2MTBOPTLZLODG6N2 -m comment --comment \"default/my-svc:http cluster "
	       "IP\" -m tcp -p tcp -d 10.96.0.100 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ\n"
	       "-A KUBE-SVC-2MTBOPTLZLODG6N2 -m comment --comment \"default/my-svc:http -> "
	       "10.244.1.10:8080\" -m statistic --mode random --probability 0.3333333333 -j "
	       "KUBE-SEP-7EUSTZD4KJSMDZUV\n"
	       "-A KUBE-SVC-2MTBOPTLZLODG6N2 -m comment --comment \"default/my-svc:http -> "
	       "10.244.2.20:8080\" -m statistic --mode random --probability 0.5000000000 -j "
	       "KUBE-SEP-X3E4CD3J6YVFNZWW\n"
	       "-A KUBE-SVC-2MTBOPTLZLODG6N2 -m comment --comment \"default/my-svc:http -> "
	       "10.244.3.30:8080\" -j KUBE-SEP-CUIMVYY2U2DWUJ4V\n"
	       "-A KUBE-SEP-7EUSTZD4KJSMDZUV -m comment --comment default/my-svc:http -s "
	       "10.244.1.10 -j KUBE-MARK-MASQ\n"
	       "-A KUBE-SEP-7EUSTZD4KJSMDZUV -m comment --comment default/my-svc:http -m tcp -p "
	       "tcp -j DNAT --to-destination 10.244.1.10:8080\n"
	       "-A KUBE-SEP-X3E4CD3J6YVFNZWW -m comment --comment default/my-svc:http -s "
	       "10.244.2.20 -j KUBE-MARK-MASQ\n"
	       "-A KUBE-SEP-X3E4CD3J6YVFNZWW -m comment --comment default/my-svc:http -m tcp -p "
	       "tcp -j DNAT --to-destination 10.244.2.20:8080\n"
	       "-A KUBE-SEP-CUIMVYY2U2DWUJ4V -m comment --comment default/my-svc:http -s "
	       "10.244.3.30 -j KUBE-MARK-MASQ\n"
	       "-A KUBE-SEP-CUIMVYY2U2DWUJ4V -m comment --comment default/my-svc:http -m tcp -p "
	       "tcp -j DNAT --to-destination 10.244.3.30:8080\n");
	/* the stale chains of SAVED go, svc1's too now that it is not in the input */
	char *x = grep(nat, "-X ");
	expect("deletions", x,
	       "-X KUBE-SVC-XPGD46QRK7WJZT7O\n-X KUBE-SVC-AAAAAAAAAAAAAAAA\n"
	       "-X KUBE-SEP-BBBBBBBBBBBBBBBB\n-X KUBE-SEP-SXIVWICOYRO3J4NJ\n");
	/* nothing in filter for a Service with endpoints */
	char *filt = section(t, "filter");
	assert_null(strstr(filt, "my-svc"));
	free(filt);
	free(x);
	free(svc);
	free(nat);
	free(t);

	/* --masquerade-all: the masquerade rule has no source condition */
	cfg.masquerade_all = true;
	t = render(SVC3, &cfg, SAVED, NULL);
	svc = grep(t, "KUBE-MARK-MASQ\n");
	char *m = grep(svc, "cluster IP");
	expect("masquerade-all", m,
	       "-A KUBE-SVC-2MTBOPTLZLODG6N2 -m comment --comment \"default/my-svc:http cluster "
	       "IP\" -m tcp -p tcp -d 10.96.0.100 --dport 80 -j KUBE-MARK-MASQ\n");
	free(m);
	free(svc);
	free(t);
}

static const char *SVC_NP = "apiVersion: v1\n"
			    "kind: Service\n"
			    "metadata: {name: web, namespace: default}\n"
			    "spec:\n"
			    "  type: NodePort\n"
			    "  clusterIP: 10.96.0.10\n"
			    "  externalIPs: [203.0.113.7]\n"
			    "  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]\n"
			    "---\n"
			    "apiVersion: discovery.k8s.io/v1\n"
			    "kind: EndpointSlice\n"
			    "metadata: {name: web-1, namespace: default, labels: "
			    "{kubernetes.io/service-name: web}}\n"
			    "addressType: IPv4\n"
			    "ports: [{port: 8080}]\n"
			    "endpoints:\n"
			    "- {addresses: [10.244.1.5], nodeName: n1}\n"
			    "- {addresses: [10.244.2.5], nodeName: n2}\n";

/* NodePort + externalIP, Cluster policy, unnamed port ("ns/name" without ":port"). */
static void test_node_port(void **state)
{
	(void)state;
	struct ipt_cfg cfg = cfg_default();
	char *t = render(SVC_NP, &cfg, SAVED, NULL);
	char *nat = section(t, "nat");
	char *ext = grep(nat, "KUBE-EXT-");
	expect("nodeport", ext,
	       ":KUBE-EXT-LOLE4ISW44XBNF3G - [0:0]\n"
	       "-A KUBE-SERVICES -m comment --comment \"default/web external IP\" -m tcp -p tcp -d "
	       "203.0.113.7 --dport 80 -j KUBE-EXT-LOLE4ISW44XBNF3G\n"
	       "-A KUBE-NODEPORTS -m comment --comment default/web -m tcp -p tcp --dport 30080 -j "
	       "KUBE-EXT-LOLE4ISW44XBNF3G\n"
	       "-A KUBE-EXT-LOLE4ISW44XBNF3G -m comment --comment \"masquerade traffic for "
	       "default/web external destinations\" -j KUBE-MARK-MASQ\n"
	       "-A KUBE-EXT-LOLE4ISW44XBNF3G -j KUBE-SVC-LOLE4ISW44XBNF3G\n");
	char *svc = grep(nat, "-A KUBE-SVC-LOLE4ISW44XBNF3G");
	expect("nodeport svc", svc,
	       "-A KUBE-SVC-LOLE4ISW44XBNF3G -m comment --comment \"default/web cluster IP\" -m "
	       "tcp -p tcp -d 10.96.0.10 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ\n"
	       "-A KUBE-SVC-LOLE4ISW44XBNF3G -m comment --comment \"default/web -> "
	       "10.244.1.5:8080\" -m statistic --mode random --probability 0.5000000000 -j "
	       "KUBE-SEP-XQWD6PXGZUTOOIVQ\n"
	       "-A KUBE-SVC-LOLE4ISW44XBNF3G -m comment --comment \"default/web -> "
	       "10.244.2.5:8080\" -j KUBE-SEP-CBTFKNOSRCMRXDOA\n");
	free(svc);
	free(ext);
	free(nat);
	free(t);
}

static const char *SVC_AFF = "apiVersion: v1\n"
			     "kind: Service\n"
			     "metadata: {name: sticky, namespace: default}\n"
			     "spec:\n"
			     "  clusterIP: 10.96.0.20\n"
			     "  sessionAffinity: ClientIP\n"
			     "  sessionAffinityConfig: {clientIP: {timeoutSeconds: 300}}\n"
			     "  ports: [{name: dns, port: 53, protocol: UDP, targetPort: 5353}]\n"
			     "---\n"
			     "apiVersion: discovery.k8s.io/v1\n"
			     "kind: EndpointSlice\n"
			     "metadata: {name: sticky-1, namespace: default, labels: "
			     "{kubernetes.io/service-name: sticky}}\n"
			     "addressType: IPv4\n"
			     "ports: [{name: dns, port: 5353, protocol: UDP}]\n"
			     "endpoints:\n"
			     "- {addresses: [10.244.1.7], nodeName: n1}\n"
			     "- {addresses: [10.244.2.7], nodeName: n2}\n";

static void test_affinity(void **state)
{
	(void)state;
	struct ipt_cfg cfg = cfg_default();
	char *t = render(SVC_AFF, &cfg, SAVED, NULL);
	char *nat = section(t, "nat");
	char *svc = grep(nat, "-A KUBE-S");
	char *ours = grep(svc, "sticky");
	expect("affinity", ours,
	       "-A KUBE-SERVICES -m comment --comment \"default/sticky:dns cluster IP\" -m udp -p "
	       "udp -d 10.96.0.20 --dport 53 -j KUBE-SVC-76DGK2EVNAE6X6A3\n"
	       "-A KUBE-SVC-76DGK2EVNAE6X6A3 -m comment --comment \"default/sticky:dns cluster "
	       "IP\" -m udp -p udp -d 10.96.0.20 --dport 53 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ\n"
	       "-A KUBE-SVC-76DGK2EVNAE6X6A3 -m comment --comment \"default/sticky:dns -> "
	       "10.244.1.7:5353\" -m recent --name KUBE-SEP-DVF2S2XORZ6W3YTK --rcheck --seconds "
	       "300 --reap -j KUBE-SEP-DVF2S2XORZ6W3YTK\n"
	       "-A KUBE-SVC-76DGK2EVNAE6X6A3 -m comment --comment \"default/sticky:dns -> "
	       "10.244.2.7:5353\" -m recent --name KUBE-SEP-5WY3RU2CWYXEZ2EQ --rcheck --seconds "
	       "300 --reap -j KUBE-SEP-5WY3RU2CWYXEZ2EQ\n"
	       "-A KUBE-SVC-76DGK2EVNAE6X6A3 -m comment --comment \"default/sticky:dns -> "
	       "10.244.1.7:5353\" -m statistic --mode random --probability 0.5000000000 -j "
	       "KUBE-SEP-DVF2S2XORZ6W3YTK\n"
	       "-A KUBE-SVC-76DGK2EVNAE6X6A3 -m comment --comment \"default/sticky:dns -> "
	       "10.244.2.7:5353\" -j KUBE-SEP-5WY3RU2CWYXEZ2EQ\n"
	       "-A KUBE-SEP-DVF2S2XORZ6W3YTK -m comment --comment default/sticky:dns -s "
	       "10.244.1.7 -j KUBE-MARK-MASQ\n"
	       "-A KUBE-SEP-DVF2S2XORZ6W3YTK -m comment --comment default/sticky:dns -m recent "
	       "--name KUBE-SEP-DVF2S2XORZ6W3YTK --set -m udp -p udp -j DNAT --to-destination "
	       "10.244.1.7:5353\n"
	       "-A KUBE-SEP-5WY3RU2CWYXEZ2EQ -m comment --comment default/sticky:dns -s "
	       "10.244.2.7 -j KUBE-MARK-MASQ\n"
	       "-A KUBE-SEP-5WY3RU2CWYXEZ2EQ -m comment --comment default/sticky:dns -m recent "
	       "--name KUBE-SEP-5WY3RU2CWYXEZ2EQ --set -m udp -p udp -j DNAT --to-destination "
	       "10.244.2.7:5353\n");
	free(ours);
	free(svc);
	free(nat);
	free(t);
}

static const char *SVC_NONE =
    "apiVersion: v1\n"
    "kind: Service\n"
    "metadata: {name: gone, namespace: default}\n"
    "spec:\n"
    "  type: NodePort\n"
    "  clusterIP: 10.96.0.30\n"
    "  externalIPs: [203.0.113.8]\n"
    "  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30030}]\n"
    "---\n"
    "apiVersion: discovery.k8s.io/v1\n"
    "kind: EndpointSlice\n"
    "metadata: {name: gone-1, namespace: default, labels: "
    "{kubernetes.io/service-name: gone}}\n"
    "addressType: IPv4\n"
    "ports: [{name: http, port: 8080}]\n"
    "endpoints:\n"
    "- {addresses: [10.244.1.9], nodeName: n1, conditions: {ready: false}}\n";

/* No usable endpoint: REJECT in the filter table, no nat chain at all. */
static void test_no_endpoints(void **state)
{
	(void)state;
	struct ipt_cfg cfg = cfg_default();
	char *t = render(SVC_NONE, &cfg, SAVED, NULL);
	char *filt = section(t, "filter");
	char *rej = grep(filt, "gone");
	expect(
	    "reject", rej,
	    "-A KUBE-SERVICES -m comment --comment \"default/gone:http has no endpoints\" -m tcp "
	    "-p tcp -d 10.96.0.30 --dport 80 -j REJECT\n"
	    "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"default/gone:http has no "
	    "endpoints\" -m tcp -p tcp -d 203.0.113.8 --dport 80 -j REJECT\n"
	    "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"default/gone:http has no "
	    "endpoints\" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30030 -j REJECT\n");
	char *nat = section(t, "nat");
	assert_null(strstr(nat, "gone"));
	char c[32];
	assert_null(
	    strstr(nat, ipt_chain_name(c, "KUBE-SVC-", "default/gone:http", PROTO_TCP, NULL)));
	assert_null(strstr(nat, ":KUBE-EXT-"));
	free(nat);
	free(rej);
	free(filt);
	free(t);
}

static const char *SVC_LOCAL =
    "apiVersion: v1\n"
    "kind: Service\n"
    "metadata: {name: lb, namespace: default}\n"
    "spec:\n"
    "  type: LoadBalancer\n"
    "  clusterIP: 10.96.0.40\n"
    "  externalTrafficPolicy: Local\n"
    "  healthCheckNodePort: 32000\n"
    "  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30040}]\n"
    "status: {loadBalancer: {ingress: [{ip: 198.51.100.40}]}}\n"
    "---\n"
    "apiVersion: discovery.k8s.io/v1\n"
    "kind: EndpointSlice\n"
    "metadata: {name: lb-1, namespace: default, labels: "
    "{kubernetes.io/service-name: lb}}\n"
    "addressType: IPv4\n"
    "ports: [{name: http, port: 8080}]\n"
    "endpoints:\n"
    "- {addresses: [10.244.1.4], nodeName: n1}\n"
    "- {addresses: [10.244.2.4], nodeName: n2}\n";

/* externalTrafficPolicy: Local on a node with one local endpoint (n1). */
static void test_etp_local(void **state)
{
	(void)state;
	struct ipt_cfg cfg = cfg_default();
	char *t = render(SVC_LOCAL, &cfg, SAVED, NULL);
	char *nat = section(t, "nat");
	char *ours = grep(nat, "default/lb");
	expect(
	    "etp local", ours,
	    "-A KUBE-SERVICES -m comment --comment \"default/lb:http cluster IP\" -m tcp -p tcp "
	    "-d 10.96.0.40 --dport 80 -j KUBE-SVC-JSLCNGWSGB5JPS5Q\n"
	    "-A KUBE-SERVICES -m comment --comment \"default/lb:http loadbalancer IP\" -m tcp -p "
	    "tcp -d 198.51.100.40 --dport 80 -j KUBE-EXT-JSLCNGWSGB5JPS5Q\n"
	    "-A KUBE-NODEPORTS -m comment --comment default/lb:http -m tcp -p tcp --dport 30040 "
	    "-j KUBE-EXT-JSLCNGWSGB5JPS5Q\n"
	    "-A KUBE-SVC-JSLCNGWSGB5JPS5Q -m comment --comment \"default/lb:http cluster IP\" -m "
	    "tcp -p tcp -d 10.96.0.40 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ\n"
	    "-A KUBE-EXT-JSLCNGWSGB5JPS5Q -m comment --comment \"pod traffic for default/lb:http "
	    "external destinations\" -s 10.0.0.0/8 -j KUBE-SVC-JSLCNGWSGB5JPS5Q\n"
	    "-A KUBE-EXT-JSLCNGWSGB5JPS5Q -m comment --comment \"masquerade LOCAL traffic for "
	    "default/lb:http external destinations\" -m addrtype --src-type LOCAL -j "
	    "KUBE-MARK-MASQ\n"
	    "-A KUBE-EXT-JSLCNGWSGB5JPS5Q -m comment --comment \"route LOCAL traffic for "
	    "default/lb:http external destinations\" -m addrtype --src-type LOCAL -j "
	    "KUBE-SVC-JSLCNGWSGB5JPS5Q\n"
	    "-A KUBE-SVC-JSLCNGWSGB5JPS5Q -m comment --comment \"default/lb:http -> "
	    "10.244.1.4:8080\" -m statistic --mode random --probability 0.5000000000 -j "
	    "KUBE-SEP-BNCDOZKJH7G7ZR7F\n"
	    "-A KUBE-SVC-JSLCNGWSGB5JPS5Q -m comment --comment \"default/lb:http -> "
	    "10.244.2.4:8080\" -j KUBE-SEP-2D4MNLW7BWRWVFIC\n"
	    "-A KUBE-SVL-JSLCNGWSGB5JPS5Q -m comment --comment \"default/lb:http -> "
	    "10.244.1.4:8080\" -j KUBE-SEP-BNCDOZKJH7G7ZR7F\n"
	    "-A KUBE-SEP-BNCDOZKJH7G7ZR7F -m comment --comment default/lb:http -s 10.244.1.4 -j "
	    "KUBE-MARK-MASQ\n"
	    "-A KUBE-SEP-BNCDOZKJH7G7ZR7F -m comment --comment default/lb:http -m tcp -p tcp -j "
	    "DNAT --to-destination 10.244.1.4:8080\n"
	    "-A KUBE-SEP-2D4MNLW7BWRWVFIC -m comment --comment default/lb:http -s 10.244.2.4 -j "
	    "KUBE-MARK-MASQ\n"
	    "-A KUBE-SEP-2D4MNLW7BWRWVFIC -m comment --comment default/lb:http -m tcp -p tcp -j "
	    "DNAT --to-destination 10.244.2.4:8080\n");
	/* the EXT chain falls through to the Local chain */
	assert_non_null(strstr(nat, "-A KUBE-EXT-JSLCNGWSGB5JPS5Q -j KUBE-SVL-JSLCNGWSGB5JPS5Q\n"));
	assert_non_null(strstr(nat, ":KUBE-SVL-JSLCNGWSGB5JPS5Q - [0:0]\n"));
	char *filt = section(t, "filter");
	char *hc = grep(filt, "default/lb");
	expect("health check", hc,
	       "-A KUBE-NODEPORTS -m comment --comment \"default/lb:http health check node port\" "
	       "-m tcp -p tcp --dport 32000 -j ACCEPT\n");
	free(hc);
	free(filt);
	free(ours);
	free(nat);
	free(t);
}

/* The same Service seen from n3, which has no local endpoint: external traffic from
 * outside drops (filter), pod and node traffic still short-circuits to KUBE-SVC. */
static void test_etp_local_no_local_endpoints(void **state)
{
	(void)state;
	char *yaml = xstrdup(SVC_LOCAL);
	char *p = strstr(yaml, "nodeName: n1");
	assert_non_null(p);
	p[strlen("nodeName: n")] = '3';
	struct ipt_cfg cfg = cfg_default();
	char *t = render(yaml, &cfg, SAVED, NULL);
	char *filt = section(t, "filter");
	char *drop = grep(filt, "DROP");
	expect("drop", drop,
	       "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"default/lb:http has no local "
	       "endpoints\" -m tcp -p tcp -d 198.51.100.40 --dport 80 -j DROP\n"
	       "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"default/lb:http has no local "
	       "endpoints\" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30040 -j DROP\n"
	       "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n");
	char *nat = section(t, "nat");
	assert_null(strstr(nat, "KUBE-SVL-"));
	assert_null(strstr(nat, "-A KUBE-EXT-JSLCNGWSGB5JPS5Q -j "));
	assert_non_null(strstr(nat, "--src-type LOCAL -j KUBE-SVC-JSLCNGWSGB5JPS5Q\n"));
	free(nat);
	free(drop);
	free(filt);
	free(t);
	free(yaml);
}

/* internalTrafficPolicy: Local: the ClusterIP goes to KUBE-SVL (local endpoints only); on a
 * node without one, ClusterIP traffic drops. */
static void test_itp_local(void **state)
{
	(void)state;
	char *yaml = xasprintf("%s", SVC3);
	char *p = strstr(yaml, "  clusterIP:");
	assert_non_null(p);
	char *y2 = xasprintf("%.*s  internalTrafficPolicy: Local\n%s", (int)(p - yaml), yaml, p);
	struct ipt_cfg cfg = cfg_default();
	char *t = render(y2, &cfg, SAVED, NULL);
	char *nat = section(t, "nat");
	char *ours = grep(nat, "my-svc");
	expect("itp local", ours,
	       "-A KUBE-SERVICES -m comment --comment \"default/my-svc:http cluster IP\" -m tcp -p "
	       "tcp -d 10.96.0.100 --dport 80 -j KUBE-SVL-2MTBOPTLZLODG6N2\n"
	       "-A KUBE-SVL-2MTBOPTLZLODG6N2 -m comment --comment \"default/my-svc:http cluster "
	       "IP\" -m tcp -p tcp -d 10.96.0.100 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ\n"
	       "-A KUBE-SVL-2MTBOPTLZLODG6N2 -m comment --comment \"default/my-svc:http -> "
	       "10.244.1.10:8080\" -j KUBE-SEP-7EUSTZD4KJSMDZUV\n"
	       "-A KUBE-SEP-7EUSTZD4KJSMDZUV -m comment --comment default/my-svc:http -s "
	       "10.244.1.10 -j KUBE-MARK-MASQ\n"
	       "-A KUBE-SEP-7EUSTZD4KJSMDZUV -m comment --comment default/my-svc:http -m tcp -p "
	       "tcp -j DNAT --to-destination 10.244.1.10:8080\n");
	assert_null(strstr(nat, ":KUBE-SVC-2MTBOPTLZLODG6N2"));
	free(ours);
	free(nat);
	free(t);

	/* no endpoint on this node: DROP (endpoints exist elsewhere), not REJECT */
	char *q = strstr(y2, "nodeName: n1");
	assert_non_null(q);
	q[strlen("nodeName: n")] = '4';
	t = render(y2, &cfg, SAVED, NULL);
	char *filt = section(t, "filter");
	ours = grep(filt, "my-svc");
	expect("itp local drop", ours,
	       "-A KUBE-SERVICES -m comment --comment \"default/my-svc:http has no local "
	       "endpoints\" -m tcp -p tcp -d 10.96.0.100 --dport 80 -j DROP\n");
	free(ours);
	free(filt);
	free(t);
	free(y2);
	free(yaml);
}

/* Schedulers: rr is statistic nth (every 3rd, 2nd, the rest), weights scale the random
 * probabilities (1:2:1 -> 1/4, 2/3 of the rest, the rest), sh falls back to random. */
static void test_schedulers(void **state)
{
	(void)state;
	struct ipt_cfg cfg = cfg_default();
	static const struct {
		const char *ann, *want;
	} cases[] = {
	    {"{twill.io/lb-scheduler: rr}",
	     "--mode nth --every 3 --packet 0 -j KUBE-SEP-7EUSTZD4KJSMDZUV\n"
	     "--mode nth --every 2 --packet 0 -j KUBE-SEP-X3E4CD3J6YVFNZWW\n"},
	    {"{twill.io/lb-weights: '10.244.2.20=2'}",
	     "--mode random --probability 0.2500000000 -j KUBE-SEP-7EUSTZD4KJSMDZUV\n"
	     "--mode random --probability 0.6666666667 -j KUBE-SEP-X3E4CD3J6YVFNZWW\n"},
	    {"{twill.io/lb-scheduler: sh}",
	     "--mode random --probability 0.3333333333 -j KUBE-SEP-7EUSTZD4KJSMDZUV\n"
	     "--mode random --probability 0.5000000000 -j KUBE-SEP-X3E4CD3J6YVFNZWW\n"},
	};
	const char *at = strstr(SVC3, "namespace: default}");
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		char *yaml = xasprintf("%.*snamespace: default, annotations: %s}%s",
				       (int)(at - SVC3), SVC3, cases[c].ann,
				       at + strlen("namespace: default}"));
		char *t = render(yaml, &cfg, "", NULL);
		char *st = grep(t, "statistic");
		char *got = xcalloc(strlen(st) + 1, 1);
		/* keep each line from "--mode" on */
		for (const char *l = st; l && *l;) {
			const char *nl = strchr(l, '\n');
			const char *m = strstr(l, "--mode");
			if (m && (!nl || m < nl))
				strncat(got, m, (size_t)((nl ? nl + 1 : l + strlen(l)) - m));
			l = nl ? nl + 1 : NULL;
		}
		expect(cases[c].ann, got, cases[c].want);
		free(got);
		free(st);
		free(t);
		free(yaml);
	}
}

static void test_cleanup_text(void **state)
{
	(void)state;
	char *t = ipt_render_cleanup(SAVED, AF_INET);
	/* the jumps are deleted before the chains; foreign chains and rules stay */
	assert_null(strstr(t, "DOCKER"));
	assert_null(strstr(t, "FOREIGN"));
	char *nat = section(t, "nat");
	expect("cleanup nat", nat,
	       "*nat\n"
	       ":KUBE-SERVICES - [0:0]\n"
	       ":KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]\n"
	       ":KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]\n"
	       ":KUBE-SEP-BBBBBBBBBBBBBBBB - [0:0]\n"
	       ":KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]\n"
	       "-D OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
	       "-D PREROUTING -m comment --comment \"kubernetes service portals\" -j "
	       "KUBE-SERVICES\n"
	       "-D POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j "
	       "KUBE-POSTROUTING\n"
	       "-X KUBE-SERVICES\n"
	       "-X KUBE-SVC-XPGD46QRK7WJZT7O\n"
	       "-X KUBE-SVC-AAAAAAAAAAAAAAAA\n"
	       "-X KUBE-SEP-BBBBBBBBBBBBBBBB\n"
	       "-X KUBE-SEP-SXIVWICOYRO3J4NJ\n"
	       "COMMIT\n");
	char *filt = section(t, "filter");
	char *d = grep(filt, "-D ");
	assert_int_equal(strlen(d) > 0, 1);
	assert_non_null(strstr(filt, "-X KUBE-SERVICES\n"));
	free(d);
	free(filt);
	free(nat);
	free(t);
	t = ipt_render_cleanup("", AF_INET);
	assert_string_equal(t, "");
	free(t);
}

/* Large cluster mode (> 1000 endpoints) drops the per-endpoint comments, as kube-proxy. */
static void test_large_cluster_mode(void **state)
{
	(void)state;
	struct ipt_ports ports = {0};
	ports.n = ports.cap = 1;
	ports.v = xcalloc(1, sizeof(*ports.v));
	struct ipt_svc_port *p = &ports.v[0];
	p->name = xstrdup("default/big:http");
	p->proto = PROTO_TCP;
	assert_int_equal(ip_parse("10.96.1.1", &p->cluster_ip), 0);
	p->port = 80;
	p->has_endpoints = true;
	p->ncluster = 1001;
	p->cluster_eps = xcalloc(p->ncluster, sizeof(*p->cluster_eps));
	for (size_t i = 0; i < p->ncluster; i++) {
		char ip[32];
		snprintf(ip, sizeof(ip), "10.245.%zu.%zu", i / 250, i % 250 + 1);
		assert_int_equal(ip_parse(ip, &p->cluster_eps[i].ip), 0);
		p->cluster_eps[i].port = 8080;
	}
	struct ipt_cfg cfg = cfg_default();
	struct ipt_render_stats st;
	char *t = ipt_render(&ports, &cfg, SAVED, &st);
	assert_true(st.large_cluster);
	assert_int_equal(st.endpoints, 1001);
	assert_null(strstr(t, "-> 10.245"));
	char *sep = grep(t, "-A KUBE-SEP-");
	assert_null(strstr(sep, "--comment"));
	/* the last of the list is the plain jump; the first has probability 1/1001 */
	assert_non_null(strstr(t, "--probability 0.0009990010 "));
	free(sep);
	free(t);
	ipt_ports_free(&ports);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sha256),
	    cmocka_unit_test(test_chain_names),
	    cmocka_unit_test(test_kube_proxy_svc1_full),
	    cmocka_unit_test(test_stale_chains_and_jumps),
	    cmocka_unit_test(test_cluster_ip_three_endpoints),
	    cmocka_unit_test(test_node_port),
	    cmocka_unit_test(test_affinity),
	    cmocka_unit_test(test_no_endpoints),
	    cmocka_unit_test(test_etp_local),
	    cmocka_unit_test(test_etp_local_no_local_endpoints),
	    cmocka_unit_test(test_itp_local),
	    cmocka_unit_test(test_cleanup_text),
	    cmocka_unit_test(test_schedulers),
	    cmocka_unit_test(test_large_cluster_mode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
