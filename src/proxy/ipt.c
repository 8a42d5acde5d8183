/* ipt: the iptables Service dataplane in kube-proxy's layout (see ipt.h).  The rule text
 * follows kubernetes pkg/proxy/iptables/proxier.go (syncProxyRules, writeServiceToEndpointRules,
 * iptablesJumpChains, CleanupLeftovers) argument for argument, so `iptables-save` shows what
 * a kube-proxy node shows.  Chain hashes: FIPS 180-4 SHA-256 and RFC 4648 base32 (StdEncoding),
 * as Go's crypto/sha256 and encoding/base32. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "proxy/ipt.h"

#define SUB "ipt"

/* ---- SHA-256 ---- */

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const uint8_t *p)
{
	uint32_t w[64];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = k + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) +
			      K256[i] + w[i];
		uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
		k = g;
		g = f;
		f = e;
		e = d + t1;
		d = c;
		c = b;
		b = a;
		a = t1 + t2;
	}
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
	h[4] += e;
	h[5] += f;
	h[6] += g;
	h[7] += k;
}

void ipt_sha256(const void *data, size_t len, uint8_t out[32])
{
	uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
			 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
	const uint8_t *p = data;
	size_t n = len;
	for (; n >= 64; n -= 64, p += 64)
		sha256_block(h, p);
	uint8_t tail[128] = {0};
	memcpy(tail, p, n);
	tail[n] = 0x80;
	size_t tl = n < 56 ? 64 : 128;
	uint64_t bits = (uint64_t)len * 8;
	for (int i = 0; i < 8; i++)
		tail[tl - 1 - i] = (uint8_t)(bits >> (8 * i));
	sha256_block(h, tail);
	if (tl == 128)
		sha256_block(h, tail + 64);
	for (int i = 0; i < 8; i++) {
		out[4 * i] = (uint8_t)(h[i] >> 24);
		out[4 * i + 1] = (uint8_t)(h[i] >> 16);
		out[4 * i + 2] = (uint8_t)(h[i] >> 8);
		out[4 * i + 3] = (uint8_t)h[i];
	}
}

void ipt_hash16(const char *s, char out[17])
{
	static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
	uint8_t d[32];
	ipt_sha256(s, strlen(s), d);
	/* 16 base32 characters = 80 bits = the first 10 bytes, no padding involved */
	for (int g = 0; g < 2; g++) {
		uint64_t v = 0;
		for (int i = 0; i < 5; i++)
			v = v << 8 | d[5 * g + i];
		for (int i = 0; i < 8; i++)
			out[8 * g + i] = b32[(v >> (35 - 5 * i)) & 31];
	}
	out[16] = '\0';
}

static const char *proto_lc(enum proto p)
{
	return p == PROTO_TCP ? "tcp" : p == PROTO_UDP ? "udp" : "sctp";
}

const char *ipt_chain_name(char buf[32], const char *prefix, const char *port_name,
			   enum proto proto, const char *endpoint)
{
	char *s = xasprintf("%s%s%s", port_name, proto_lc(proto), endpoint ? endpoint : "");
	char h[17];
	ipt_hash16(s, h);
	free(s);
	snprintf(buf, 32, "%s%s", prefix, h);
	return buf;
}

/* ---- the kube-proxy model ---- */

static void port_free(struct ipt_svc_port *p)
{
	free(p->name);
	free(p->external_ips);
	free(p->lb_ips);
	free(p->cluster_eps);
	free(p->local_eps);
}

void ipt_ports_free(struct ipt_ports *p)
{
	for (size_t i = 0; i < p->n; i++)
		port_free(&p->v[i]);
	free(p->v);
	memset(p, 0, sizeof(*p));
}

static void copy_eps(struct svc_backend **dst, size_t *n, const struct svc_entry *e)
{
	*n = e->nbackends;
	*dst = xcalloc(e->nbackends ? e->nbackends : 1, sizeof(**dst));
	for (size_t i = 0; i < e->nbackends; i++) {
		(*dst)[i] = e->backends[i];
		(*dst)[i].node = NULL; /* not needed here; keeps the copy shallow-safe */
	}
}

static void push_ip(struct ipaddr **v, size_t *n, const struct ipaddr *a)
{
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = *a;
}

static bool group_is(const char *group, const char *base, bool *local)
{
	size_t n = strlen(base);
	if (!group || strncmp(group, base, n))
		return false;
	if (!group[n]) {
		*local = false;
		return true;
	}
	if (!strcmp(group + n, "/local")) {
		*local = true;
		return true;
	}
	return false;
}

/* The Cluster-policy endpoints of one Service port when the planner gave only Local ones:
 * plan a copy of the Service with both policies Cluster. */
static void cluster_fallback(struct ipt_svc_port *p, const struct object *svc, const char *base,
			     const struct object *const *slices, size_t nslices,
			     const struct svc_plan_in *in, int family)
{
	struct object *c = object_clone(svc);
	c->svc.itp_local = false;
	c->svc.etp_local = false;
	struct svc_entries tmp = {0};
	if (svc_plan_service(c, slices, nslices, in, &tmp) == 0) {
		for (size_t i = 0; i < tmp.n; i++) {
			bool local;
			const struct svc_entry *e = &tmp.v[i];
			if (e->vip.family != family || !group_is(e->group, base, &local) || local)
				continue;
			p->has_endpoints = e->verdict == SVC_FORWARD;
			if (e->verdict == SVC_FORWARD)
				copy_eps(&p->cluster_eps, &p->ncluster, e);
			break;
		}
	}
	svc_entries_free(&tmp);
	object_free(c);
}

int ipt_ports_add(struct ipt_ports *out, const struct object *svc, const struct svc_entries *e,
		  const struct object *const *slices, size_t nslices, const struct svc_plan_in *in,
		  int family)
{
	if (!svc || svc->kind != KIND_SERVICE)
		return -EINVAL;
	if (!e || !e->n)
		return 0;
	const struct service_obj *s = &svc->svc;
	/* iptables can do random (weighted too) and round robin (statistic nth, without
	 * weights); not source or destination hashing */
	struct svc_lb lb;
	svc_lb_config(svc, &lb, NULL, 0);
	if (lb.sched == SVC_SCHED_SH || lb.sched == SVC_SCHED_DH ||
	    (lb.sched == SVC_SCHED_RR && lb.nweights)) {
		log_warn(SUB,
			 "Service %s/%s: scheduler %s%s is not supported by the iptables "
			 "dataplane; using random%s",
			 svc->meta.ns ? svc->meta.ns : "", svc->meta.name, svc_sched_name(lb.sched),
			 lb.nweights ? " with weights" : "", lb.nweights ? " with the weights" : "");
		lb.sched = SVC_SCHED_RANDOM;
	}
	free(lb.weights);
	const char *ns = svc->meta.ns ? svc->meta.ns : "";
	for (size_t pi = 0; pi < s->nports; pi++) {
		const struct svc_port *sp = &s->ports[pi];
		char *base =
		    xasprintf("%s/%s/%s/%u", ns, svc->meta.name, proto_lc(sp->proto), sp->port);
		struct ipt_svc_port p = {0};
		bool any = false, cluster_known = false, verdict_seen_ok = false;
		for (size_t i = 0; i < e->n; i++) {
			const struct svc_entry *en = &e->v[i];
			bool local;
			if (en->vip.family != family || en->proto != sp->proto ||
			    !group_is(en->group, base, &local))
				continue;
			any = true;
			switch (en->scope) {
			case SVC_SCOPE_CLUSTER_IP:
				p.cluster_ip = en->vip;
				p.itp_local = local;
				break;
			case SVC_SCOPE_NODE_PORT:
				p.node_port = en->port;
				p.etp_local = local;
				break;
			case SVC_SCOPE_EXTERNAL_IP:
				push_ip(&p.external_ips, &p.nexternal_ips, &en->vip);
				p.etp_local = local;
				break;
			case SVC_SCOPE_LB:
				push_ip(&p.lb_ips, &p.nlb_ips, &en->vip);
				p.etp_local = local;
				break;
			}
			if (en->verdict != SVC_REJECT)
				verdict_seen_ok = true;
			if (!local) {
				cluster_known = true;
				p.has_endpoints = en->verdict == SVC_FORWARD;
				if (en->verdict == SVC_FORWARD && !p.cluster_eps)
					copy_eps(&p.cluster_eps, &p.ncluster, en);
			} else if (en->verdict == SVC_FORWARD && !p.local_eps) {
				copy_eps(&p.local_eps, &p.nlocal, en);
			}
		}
		if (!any) {
			free(base);
			continue;
		}
		if (!cluster_known) {
			p.has_endpoints = verdict_seen_ok;
			if (slices)
				cluster_fallback(&p, svc, base, slices, nslices, in, family);
		}
		bool external = p.node_port || p.nexternal_ips || p.nlb_ips;
		/* kube-proxy's UsesClusterEndpoints / UsesLocalEndpoints */
		if (!(!p.itp_local || external)) {
			free(p.cluster_eps);
			p.cluster_eps = NULL;
			p.ncluster = 0;
		}
		if (!(p.itp_local || (p.etp_local && external))) {
			free(p.local_eps);
			p.local_eps = NULL;
			p.nlocal = 0;
		}
		p.name = sp->name && *sp->name ? xasprintf("%s/%s:%s", ns, svc->meta.name, sp->name)
					       : xasprintf("%s/%s", ns, svc->meta.name);
		p.proto = sp->proto;
		p.port = sp->port;
		p.affinity_timeout =
		    s->affinity_client_ip ? (s->affinity_timeout ? s->affinity_timeout : 10800) : 0;
		if (p.etp_local && external)
			p.health_check_node_port = s->health_check_node_port;
		p.sched = lb.sched;
		if (out->n == out->cap) {
			out->cap = out->cap ? 2 * out->cap : 16;
			out->v = xrealloc(out->v, out->cap * sizeof(*out->v));
		}
		out->v[out->n++] = p;
		free(base);
	}
	return 0;
}

/* ---- text buffers ---- */

struct sb {
	char *p;
	size_t n, cap;
	unsigned lines;
};

static void sb_grow(struct sb *b, size_t need)
{
	if (b->n + need + 1 <= b->cap)
		return;
	size_t c = b->cap ? b->cap : 4096;
	while (c < b->n + need + 1)
		c *= 2;
	b->p = xrealloc(b->p, c);
	b->cap = c;
}

static void sb_put(struct sb *b, const char *s, size_t n)
{
	sb_grow(b, n);
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

static void sb_puts(struct sb *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void sb_printf(struct sb *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n <= 0)
		return;
	sb_grow(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->n += (size_t)n;
}

/* End a rule line (counted). */
static void sb_eol(struct sb *b)
{
	sb_put(b, "\n", 1);
	b->lines++;
}

static void sb_free(struct sb *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static void chain_line(struct sb *b, const char *chain)
{
	sb_printf(b, ":%s - [0:0]", chain);
	sb_eol(b);
}

/* ---- what iptables-save says exists ---- */

/* Chain names declared in `table` of saved, in order; and the rule lines of that table. */
struct saved_table {
	size_t nchains;
	char **chains;
	size_t nrules;
	char **rules;
};

static void saved_free(struct saved_table *t)
{
	for (size_t i = 0; i < t->nchains; i++)
		free(t->chains[i]);
	for (size_t i = 0; i < t->nrules; i++)
		free(t->rules[i]);
	free(t->chains);
	free(t->rules);
	memset(t, 0, sizeof(*t));
}

static void saved_parse(const char *saved, const char *table, struct saved_table *t)
{
	memset(t, 0, sizeof(*t));
	if (!saved)
		return;
	bool in = false;
	for (const char *l = saved; *l;) {
		const char *end = strchr(l, '\n');
		size_t n = end ? (size_t)(end - l) : strlen(l);
		if (n && l[0] == '*')
			in = n - 1 == strlen(table) && !strncmp(l + 1, table, n - 1);
		else if (in && n > 1 && l[0] == ':') {
			size_t k = 1;
			while (k < n && l[k] != ' ')
				k++;
			t->chains = xrealloc(t->chains, (t->nchains + 1) * sizeof(char *));
			t->chains[t->nchains++] = strndup(l + 1, k - 1);
		} else if (in && n > 3 && !strncmp(l, "-A ", 3)) {
			t->rules = xrealloc(t->rules, (t->nrules + 1) * sizeof(char *));
			t->rules[t->nrules++] = strndup(l, n);
		}
		l += n;
		if (*l == '\n')
			l++;
	}
}

/* kube-proxy's iptablesJumpChains (+ the kubelet KUBE-FIREWALL jumps when asked). */
struct jump {
	bool nat;
	const char *dst, *src, *comment, *extra;
};
static const struct jump JUMPS[] = {
    {false, "KUBE-EXTERNAL-SERVICES", "INPUT", "kubernetes externally-visible service portals",
     "-m conntrack --ctstate NEW"},
    {false, "KUBE-EXTERNAL-SERVICES", "FORWARD", "kubernetes externally-visible service portals",
     "-m conntrack --ctstate NEW"},
    {false, "KUBE-NODEPORTS", "INPUT", "kubernetes health check service ports", NULL},
    {false, "KUBE-SERVICES", "FORWARD", "kubernetes service portals", "-m conntrack --ctstate NEW"},
    {false, "KUBE-SERVICES", "OUTPUT", "kubernetes service portals", "-m conntrack --ctstate NEW"},
    {false, "KUBE-FORWARD", "FORWARD", "kubernetes forwarding rules", NULL},
    {false, "KUBE-PROXY-FIREWALL", "INPUT", "kubernetes load balancer firewall",
     "-m conntrack --ctstate NEW"},
    {false, "KUBE-PROXY-FIREWALL", "OUTPUT", "kubernetes load balancer firewall",
     "-m conntrack --ctstate NEW"},
    {false, "KUBE-PROXY-FIREWALL", "FORWARD", "kubernetes load balancer firewall",
     "-m conntrack --ctstate NEW"},
    {true, "KUBE-SERVICES", "OUTPUT", "kubernetes service portals", NULL},
    {true, "KUBE-SERVICES", "PREROUTING", "kubernetes service portals", NULL},
    {true, "KUBE-POSTROUTING", "POSTROUTING", "kubernetes postrouting rules", NULL},
};
static const struct jump KUBELET_JUMPS[] = {
    {false, "KUBE-FIREWALL", "INPUT", NULL, NULL},
    {false, "KUBE-FIREWALL", "OUTPUT", NULL, NULL},
};

/* The rule as iptables-save prints it (args in the order given). */
static void jump_args(struct sb *b, const struct jump *j)
{
	if (j->extra)
		sb_printf(b, " %s", j->extra);
	if (j->comment)
		sb_printf(b, " -m comment --comment \"%s\"", j->comment);
	sb_printf(b, " -j %s", j->dst);
}

static bool jump_present(const struct saved_table *t, const struct jump *j)
{
	struct sb want = {0};
	sb_printf(&want, "-A %s", j->src);
	jump_args(&want, j);
	bool found = false;
	for (size_t i = 0; i < t->nrules && !found; i++)
		found = !strcmp(t->rules[i], want.p);
	sb_free(&want);
	return found;
}

static bool is_service_chain(const char *c)
{
	static const char *const pfx[] = {"KUBE-SVC-", "KUBE-SVL-", "KUBE-SEP-", "KUBE-FW-",
					  "KUBE-EXT-"};
	for (size_t i = 0; i < ARRAY_SIZE(pfx); i++)
		if (str_has_prefix(c, pfx[i]))
			return true;
	return false;
}

/* ---- rendering ---- */

struct ep_view {
	unsigned weight;
	char str[IP_STRLEN + 8]; /* "ip:port" / "[ip]:port" (Go's net.JoinHostPort) */
	char ip[IP_STRLEN];
	char chain[32];
};

static int ep_view_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ep_view *)a)->str, ((const struct ep_view *)b)->str);
}

/* kube-proxy keeps endpoints sorted by their String() (endpointslicecache byEndpoint). */
static struct ep_view *ep_views(const struct ipt_svc_port *p, const struct svc_backend *eps,
				size_t n)
{
	struct ep_view *v = xcalloc(n ? n : 1, sizeof(*v));
	for (size_t i = 0; i < n; i++) {
		ip_fmt(&eps[i].ip, v[i].ip);
		if (eps[i].ip.family == AF_INET6)
			snprintf(v[i].str, sizeof(v[i].str), "[%s]:%u", v[i].ip, eps[i].port);
		else
			snprintf(v[i].str, sizeof(v[i].str), "%s:%u", v[i].ip, eps[i].port);
		ipt_chain_name(v[i].chain, "KUBE-SEP-", p->name, p->proto, v[i].str);
		v[i].weight = eps[i].weight ? eps[i].weight : 1;
	}
	qsort(v, n, sizeof(*v), ep_view_cmp);
	return v;
}

struct render {
	const struct ipt_cfg *cfg;
	char mark[16];
	bool large;
	struct sb fchains, frules, nchains, nrules;
	struct smap active; /* nat service chains written */
	struct ipt_render_stats *st;
};

static void svc_comment(struct render *r, struct sb *b, const char *text)
{
	if (!r->large)
		sb_printf(b, " -m comment --comment %s", text);
}

static void write_svc_to_endpoints(struct render *r, const struct ipt_svc_port *p,
				   const char *chain, const struct ep_view *eps, size_t n)
{
	struct sb *b = &r->nrules;
	if (p->affinity_timeout)
		for (size_t i = 0; i < n; i++) {
			sb_printf(b, "-A %s", chain);
			if (!r->large)
				sb_printf(b, " -m comment --comment \"%s -> %s\"", p->name,
					  eps[i].str);
			sb_printf(b, " -m recent --name %s --rcheck --seconds %u --reap -j %s",
				  eps[i].chain, p->affinity_timeout, eps[i].chain);
			sb_eol(b);
		}
	/* random: rule i takes w_i / (w_i + ... + w_n-1) of what reaches it (kube-proxy's
	 * 1/(n-i) when all weights are 1); rr: every (n-i)th packet reaching rule i, so the
	 * endpoints take turns exactly */
	unsigned left = 0;
	for (size_t i = 0; i < n; i++)
		left += eps[i].weight;
	for (size_t i = 0; i < n; i++) {
		sb_printf(b, "-A %s", chain);
		if (!r->large)
			sb_printf(b, " -m comment --comment \"%s -> %s\"", p->name, eps[i].str);
		if (i + 1 < n && p->sched == SVC_SCHED_RR)
			sb_printf(b, " -m statistic --mode nth --every %zu --packet 0", n - i);
		else if (i + 1 < n)
			sb_printf(b, " -m statistic --mode random --probability %0.10f",
				  (double)eps[i].weight / (double)left);
		left -= eps[i].weight;
		sb_printf(b, " -j %s", eps[i].chain);
		sb_eol(b);
	}
}

static void render_port(struct render *r, const struct ipt_svc_port *p)
{
	const char *proto = proto_lc(p->proto);
	char svc[32], svl[32], ext[32], cip[IP_STRLEN], ip[IP_STRLEN];
	ipt_chain_name(svc, "KUBE-SVC-", p->name, p->proto, NULL);
	ipt_chain_name(svl, "KUBE-SVL-", p->name, p->proto, NULL);
	ipt_chain_name(ext, "KUBE-EXT-", p->name, p->proto, NULL);
	bool external = p->node_port || p->nexternal_ips || p->nlb_ips;
	bool has_ep = p->has_endpoints;
	bool uses_cluster = p->ncluster > 0 && (!p->itp_local || external);
	bool uses_local = p->nlocal > 0 && (p->itp_local || (p->etp_local && external));
	const char *internal_chain = p->itp_local ? svl : svc;
	bool has_internal = has_ep && !(p->itp_local && !p->nlocal);
	const char *external_policy = p->etp_local ? svl : svc;
	bool has_external = has_ep && !(p->etp_local && !p->nlocal);
	bool uses_ext = has_ep && external;

	char *icomment = NULL, *ecomment = NULL;
	const char *itarget = NULL, *etarget = NULL;
	if (!has_ep) {
		itarget = etarget = "REJECT";
		icomment = xasprintf("\"%s has no endpoints\"", p->name);
		ecomment = xstrdup(icomment);
	} else {
		if (!has_internal) {
			itarget = "DROP";
			icomment = xasprintf("\"%s has no local endpoints\"", p->name);
		}
		if (!has_external) {
			etarget = "DROP";
			ecomment = xasprintf("\"%s has no local endpoints\"", p->name);
		}
	}
	struct sb *fr = &r->frules, *nr = &r->nrules;
	bool has_cip = p->cluster_ip.family != 0;
	if (has_cip)
		ip_fmt(&p->cluster_ip, cip);

	/* Capture the clusterIP. */
	if (has_cip && has_internal) {
		sb_printf(nr,
			  "-A KUBE-SERVICES -m comment --comment \"%s cluster IP\" -m %s -p %s -d "
			  "%s --dport %u -j %s",
			  p->name, proto, proto, cip, p->port, internal_chain);
		sb_eol(nr);
	} else if (has_cip) {
		sb_printf(fr,
			  "-A KUBE-SERVICES -m comment --comment %s -m %s -p %s -d %s --dport %u "
			  "-j %s",
			  icomment, proto, proto, cip, p->port, itarget);
		sb_eol(fr);
	}
	/* Capture externalIPs. */
	for (size_t i = 0; i < p->nexternal_ips; i++) {
		ip_fmt(&p->external_ips[i], ip);
		if (has_ep) {
			sb_printf(
			    nr,
			    "-A KUBE-SERVICES -m comment --comment \"%s external IP\" -m %s -p "
			    "%s -d %s --dport %u -j %s",
			    p->name, proto, proto, ip, p->port, ext);
			sb_eol(nr);
		}
		if (!has_external) {
			sb_printf(
			    fr,
			    "-A KUBE-EXTERNAL-SERVICES -m comment --comment %s -m %s -p %s -d "
			    "%s --dport %u -j %s",
			    ecomment, proto, proto, ip, p->port, etarget);
			sb_eol(fr);
		}
	}
	/* Capture load-balancer ingress. */
	for (size_t i = 0; i < p->nlb_ips; i++) {
		ip_fmt(&p->lb_ips[i], ip);
		if (has_ep) {
			sb_printf(
			    nr,
			    "-A KUBE-SERVICES -m comment --comment \"%s loadbalancer IP\" -m %s "
			    "-p %s -d %s --dport %u -j %s",
			    p->name, proto, proto, ip, p->port, ext);
			sb_eol(nr);
		}
	}
	if (!has_external)
		for (size_t i = 0; i < p->nlb_ips; i++) {
			ip_fmt(&p->lb_ips[i], ip);
			sb_printf(
			    fr,
			    "-A KUBE-EXTERNAL-SERVICES -m comment --comment %s -m %s -p %s -d "
			    "%s --dport %u -j %s",
			    ecomment, proto, proto, ip, p->port, etarget);
			sb_eol(fr);
		}
	/* Capture nodeports. */
	if (p->node_port) {
		if (has_ep) {
			sb_printf(
			    nr,
			    "-A KUBE-NODEPORTS -m comment --comment %s -m %s -p %s --dport %u "
			    "-j %s",
			    p->name, proto, proto, p->node_port, ext);
			sb_eol(nr);
		}
		if (!has_external) {
			sb_printf(fr,
				  "-A KUBE-EXTERNAL-SERVICES -m comment --comment %s -m addrtype "
				  "--dst-type LOCAL -m %s -p %s --dport %u -j %s",
				  ecomment, proto, proto, p->node_port, etarget);
			sb_eol(fr);
		}
	}
	/* Capture healthCheckNodePorts. */
	if (p->health_check_node_port) {
		sb_printf(fr,
			  "-A KUBE-NODEPORTS -m comment --comment \"%s health check node port\" -m "
			  "tcp -p tcp --dport %u -j ACCEPT",
			  p->name, p->health_check_node_port);
		sb_eol(fr);
	}
	free(icomment);
	free(ecomment);

	/* Internal traffic: masquerade off-cluster sources (or everything). */
	if (has_cip && has_internal) {
		if (r->cfg->masquerade_all) {
			sb_printf(nr,
				  "-A %s -m comment --comment \"%s cluster IP\" -m %s -p %s -d %s "
				  "--dport %u -j KUBE-MARK-MASQ",
				  internal_chain, p->name, proto, proto, cip, p->port);
			sb_eol(nr);
		} else if (r->cfg->cluster_cidr) {
			char cidr[IP_STRLEN];
			prefix_fmt(r->cfg->cluster_cidr, cidr);
			sb_printf(nr,
				  "-A %s -m comment --comment \"%s cluster IP\" -m %s -p %s -d %s "
				  "--dport %u ! -s %s -j KUBE-MARK-MASQ",
				  internal_chain, p->name, proto, proto, cip, p->port, cidr);
			sb_eol(nr);
		}
	}
	/* External traffic. */
	if (uses_ext) {
		chain_line(&r->nchains, ext);
		smap_add(&r->active, ext);
		if (!p->etp_local) {
			sb_printf(nr,
				  "-A %s -m comment --comment \"masquerade traffic for %s external "
				  "destinations\" -j KUBE-MARK-MASQ",
				  ext, p->name);
			sb_eol(nr);
		} else {
			if (r->cfg->cluster_cidr) {
				char cidr[IP_STRLEN];
				prefix_fmt(r->cfg->cluster_cidr, cidr);
				sb_printf(
				    nr,
				    "-A %s -m comment --comment \"pod traffic for %s external "
				    "destinations\" -s %s -j %s",
				    ext, p->name, cidr, svc);
				sb_eol(nr);
			}
			sb_printf(nr,
				  "-A %s -m comment --comment \"masquerade LOCAL traffic for %s "
				  "external destinations\" -m addrtype --src-type LOCAL -j "
				  "KUBE-MARK-MASQ",
				  ext, p->name);
			sb_eol(nr);
			sb_printf(
			    nr,
			    "-A %s -m comment --comment \"route LOCAL traffic for %s external "
			    "destinations\" -m addrtype --src-type LOCAL -j %s",
			    ext, p->name, svc);
			sb_eol(nr);
		}
		if (has_external) {
			sb_printf(nr, "-A %s -j %s", ext, external_policy);
			sb_eol(nr);
		}
	}

	struct ep_view *cl = ep_views(p, p->cluster_eps, uses_cluster ? p->ncluster : 0);
	struct ep_view *lo = ep_views(p, p->local_eps, uses_local ? p->nlocal : 0);
	size_t ncl = uses_cluster ? p->ncluster : 0, nlo = uses_local ? p->nlocal : 0;
	if (uses_cluster) {
		chain_line(&r->nchains, svc);
		smap_add(&r->active, svc);
		write_svc_to_endpoints(r, p, svc, cl, ncl);
	}
	if (uses_local) {
		chain_line(&r->nchains, svl);
		smap_add(&r->active, svl);
		write_svc_to_endpoints(r, p, svl, lo, nlo);
	}
	/* allLocallyReachableEndpoints: the union, once each (sorted: Go's map order is random) */
	struct ep_view *all = xcalloc(ncl + nlo + 1, sizeof(*all));
	size_t nall = 0;
	for (size_t i = 0; i < ncl; i++)
		all[nall++] = cl[i];
	for (size_t i = 0; i < nlo; i++) {
		bool dup = false;
		for (size_t k = 0; k < ncl && !dup; k++)
			dup = !strcmp(cl[k].str, lo[i].str);
		if (!dup)
			all[nall++] = lo[i];
	}
	if (ncl && nlo)
		qsort(all, nall, sizeof(*all), ep_view_cmp);
	for (size_t i = 0; i < nall; i++) {
		const struct ep_view *ep = &all[i];
		chain_line(&r->nchains, ep->chain);
		smap_add(&r->active, ep->chain);
		sb_printf(nr, "-A %s", ep->chain);
		svc_comment(r, nr, p->name);
		sb_printf(nr, " -s %s -j KUBE-MARK-MASQ", ep->ip);
		sb_eol(nr);
		sb_printf(nr, "-A %s", ep->chain);
		svc_comment(r, nr, p->name);
		if (p->affinity_timeout)
			sb_printf(nr, " -m recent --name %s --set", ep->chain);
		sb_printf(nr, " -m %s -p %s -j DNAT --to-destination %s", proto, proto, ep->str);
		sb_eol(nr);
		r->st->endpoints++;
	}
	free(all);
	free(cl);
	free(lo);
}

static int port_cmp(const void *a, const void *b)
{
	const struct ipt_svc_port *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : (int)x->proto - (int)y->proto;
}

char *ipt_render(struct ipt_ports *ports, const struct ipt_cfg *cfg, const char *saved,
		 struct ipt_render_stats *st)
{
	struct ipt_render_stats st0;
	if (!st)
		st = &st0;
	memset(st, 0, sizeof(*st));
	struct render r = {.cfg = cfg, .st = st};
	bool v6 = cfg->family == AF_INET6;
	snprintf(r.mark, sizeof(r.mark), "0x%x", cfg->masq_mark ? cfg->masq_mark : IPT_MASQ_MARK);
	if (ports->n > 1)
		qsort(ports->v, ports->n, sizeof(*ports->v), port_cmp);
	size_t total = 0;
	for (size_t i = 0; i < ports->n; i++)
		total += ports->v[i].ncluster > ports->v[i].nlocal ? ports->v[i].ncluster
								   : ports->v[i].nlocal;
	r.large = total > IPT_LARGE_CLUSTER_ENDPOINTS;
	st->large_cluster = r.large;

	struct saved_table snat, sfilter;
	saved_parse(saved, "nat", &snat);
	saved_parse(saved, "filter", &sfilter);

	static const char *const fch[] = {"KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD",
					  "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL"};
	static const char *const nch[] = {"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING",
					  "KUBE-MARK-MASQ"};
	for (size_t i = 0; i < ARRAY_SIZE(fch); i++)
		chain_line(&r.fchains, fch[i]);
	for (size_t i = 0; i < ARRAY_SIZE(nch); i++)
		chain_line(&r.nchains, nch[i]);
	bool localhost = cfg->localhost_nodeports && !v6;
	if (localhost)
		chain_line(&r.fchains, "KUBE-FIREWALL");

	/* The jumps into our chains (kube-proxy ensures them with `iptables -I` before the
	 * restore; here they ride in the same transaction, and only when missing). */
	for (size_t i = 0; i < ARRAY_SIZE(JUMPS) + (localhost ? ARRAY_SIZE(KUBELET_JUMPS) : 0);
	     i++) {
		const struct jump *j =
		    i < ARRAY_SIZE(JUMPS) ? &JUMPS[i] : &KUBELET_JUMPS[i - ARRAY_SIZE(JUMPS)];
		if (jump_present(j->nat ? &snat : &sfilter, j))
			continue;
		struct sb *b = j->nat ? &r.nrules : &r.frules;
		sb_printf(b, "-I %s", j->src);
		jump_args(b, j);
		sb_eol(b);
		st->jumps_added++;
	}

	sb_printf(&r.nrules, "-A KUBE-POSTROUTING -m mark ! --mark %s/%s -j RETURN", r.mark,
		  r.mark);
	sb_eol(&r.nrules);
	sb_printf(&r.nrules, "-A KUBE-POSTROUTING -j MARK --xor-mark %s", r.mark);
	sb_eol(&r.nrules);
	sb_printf(&r.nrules,
		  "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic "
		  "requiring SNAT\" -j MASQUERADE%s",
		  cfg->no_random_fully ? "" : " --random-fully");
	sb_eol(&r.nrules);
	sb_printf(&r.nrules, "-A KUBE-MARK-MASQ -j MARK --or-mark %s", r.mark);
	sb_eol(&r.nrules);
	if (localhost) {
		sb_puts(&r.frules,
			"-A KUBE-FIREWALL -m comment --comment \"block incoming localnet "
			"connections\" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! "
			"--ctstate RELATED,ESTABLISHED,DNAT -j DROP");
		sb_eol(&r.frules);
	}

	for (size_t i = 0; i < ports->n; i++)
		render_port(&r, &ports->v[i]);

	/* Delete service chains no longer in use (ours only: by prefix). */
	for (size_t i = 0; i < snat.nchains; i++) {
		const char *c = snat.chains[i];
		if (!is_service_chain(c) || smap_has(&r.active, c))
			continue;
		chain_line(&r.nchains, c);
		sb_printf(&r.nrules, "-X %s", c);
		sb_eol(&r.nrules);
		st->deleted_chains++;
	}

	/* Finally, tail-call to the nodePorts chain: after every other service rule. */
	sb_printf(
	    &r.nrules,
	    "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this "
	    "must be the last rule in this chain\" -m addrtype --dst-type LOCAL%s -j "
	    "KUBE-NODEPORTS",
	    v6		? " ! -d ::1/128"
	    : localhost ? ""
			: " ! -d 127.0.0.0/8");
	sb_eol(&r.nrules);

	if (!cfg->conntrack_liberal) {
		sb_puts(&r.frules, "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP");
		sb_eol(&r.frules);
	}
	sb_printf(&r.frules,
		  "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark "
		  "--mark %s/%s -j ACCEPT",
		  r.mark, r.mark);
	sb_eol(&r.frules);
	sb_puts(&r.frules, "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack "
			   "rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT");
	sb_eol(&r.frules);

	st->filter_rules = r.frules.lines;
	st->nat_rules = r.nrules.lines;
	st->nat_chains = r.nchains.lines;

	struct sb out = {0};
	sb_puts(&out, "*filter\n");
	if (r.fchains.n)
		sb_puts(&out, r.fchains.p);
	if (r.frules.n)
		sb_puts(&out, r.frules.p);
	sb_puts(&out, "COMMIT\n*nat\n");
	if (r.nchains.n)
		sb_puts(&out, r.nchains.p);
	if (r.nrules.n)
		sb_puts(&out, r.nrules.p);
	sb_puts(&out, "COMMIT\n");

	sb_free(&r.fchains);
	sb_free(&r.frules);
	sb_free(&r.nchains);
	sb_free(&r.nrules);
	smap_clear(&r.active, NULL);
	saved_free(&snat);
	saved_free(&sfilter);
	return out.p;
}

char *ipt_render_cleanup(const char *saved, int family)
{
	(void)family;
	struct saved_table snat, sfilter;
	saved_parse(saved, "nat", &snat);
	saved_parse(saved, "filter", &sfilter);
	struct sb out = {0};
	for (int t = 0; t < 2; t++) {
		bool nat = t == 1;
		const struct saved_table *st = nat ? &snat : &sfilter;
		struct sb chains = {0}, rules = {0}, dels = {0};
		for (size_t i = 0; i < ARRAY_SIZE(JUMPS) + ARRAY_SIZE(KUBELET_JUMPS); i++) {
			const struct jump *j = i < ARRAY_SIZE(JUMPS)
						   ? &JUMPS[i]
						   : &KUBELET_JUMPS[i - ARRAY_SIZE(JUMPS)];
			if (j->nat != nat || !jump_present(st, j))
				continue;
			sb_printf(&rules, "-D %s", j->src);
			jump_args(&rules, j);
			sb_eol(&rules);
		}
		static const char *const fixed_nat[] = {"KUBE-SERVICES", "KUBE-NODEPORTS",
							"KUBE-POSTROUTING", "KUBE-MARK-MASQ"};
		static const char *const fixed_filter[] = {
		    "KUBE-SERVICES",  "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD",
		    "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL",	"KUBE-FIREWALL"};
		const char *const *fixed = nat ? fixed_nat : fixed_filter;
		size_t nfixed = nat ? ARRAY_SIZE(fixed_nat) : ARRAY_SIZE(fixed_filter);
		for (size_t i = 0; i < st->nchains; i++) {
			const char *c = st->chains[i];
			bool ours = nat && is_service_chain(c);
			for (size_t k = 0; k < nfixed && !ours; k++)
				ours = !strcmp(c, fixed[k]);
			if (!ours)
				continue;
			chain_line(&chains, c);
			sb_printf(&dels, "-X %s", c);
			sb_eol(&dels);
		}
		if (chains.n || rules.n) {
			sb_printf(&out, "*%s\n", nat ? "nat" : "filter");
			if (chains.n)
				sb_puts(&out, chains.p);
			if (rules.n)
				sb_puts(&out, rules.p);
			if (dels.n)
				sb_puts(&out, dels.p);
			sb_puts(&out, "COMMIT\n");
		}
		sb_free(&chains);
		sb_free(&rules);
		sb_free(&dels);
	}
	saved_free(&snat);
	saved_free(&sfilter);
	return out.p ? out.p : xstrdup("");
}

/* ---- running the tools ---- */

/* Run argv with `in` on stdin; stdout into *out, stderr into *err (both malloc'd, may be
 * NULL).  Files in memory rather than pipes: no deadlock whatever the sizes. */
static int run_tool(char *const argv[], const char *in, char **out, char **err)
{
	int fin = -1, fout = -1, ferr = -1, r = 0;
	if (out)
		*out = NULL;
	if (err)
		*err = NULL;
	fin = memfd_create("ipt-in", MFD_CLOEXEC);
	fout = memfd_create("ipt-out", MFD_CLOEXEC);
	ferr = memfd_create("ipt-err", MFD_CLOEXEC);
	if (fin < 0 || fout < 0 || ferr < 0) {
		r = -errno;
		goto done;
	}
	if (in && (r = fd_write_all(fin, in, strlen(in))) < 0)
		goto done;
	lseek(fin, 0, SEEK_SET);
	pid_t pid = fork();
	if (pid < 0) {
		r = -errno;
		goto done;
	}
	if (pid == 0) {
		dup2(fin, 0);
		dup2(fout, 1);
		dup2(ferr, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	int status = 0;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			r = -errno;
			goto done;
		}
	for (int k = 0; k < 2; k++) {
		int fd = k ? ferr : fout;
		char **dst = k ? err : out;
		if (!dst)
			continue;
		off_t len = lseek(fd, 0, SEEK_END);
		lseek(fd, 0, SEEK_SET);
		char *buf = xmalloc((size_t)(len > 0 ? len : 0) + 1);
		ssize_t got = len > 0 ? read(fd, buf, (size_t)len) : 0;
		buf[got > 0 ? got : 0] = '\0';
		*dst = buf;
	}
	if (!WIFEXITED(status))
		r = -EINTR;
	else if (WEXITSTATUS(status) == 127)
		r = -ENOENT;
	else if (WEXITSTATUS(status) != 0)
		r = -EIO;
done:
	if (fin >= 0)
		close(fin);
	if (fout >= 0)
		close(fout);
	if (ferr >= 0)
		close(ferr);
	return r;
}

int ipt_save(int family, char **out, char **err)
{
	char *argv[] = {family == AF_INET6 ? "ip6tables-save" : "iptables-save", NULL};
	return run_tool(argv, NULL, out, err);
}

int ipt_restore(int family, const char *rules, char **err)
{
	/* kube-proxy: iptables-restore -w 5 -W 100000 --noflush --counters */
	char *argv[] = {family == AF_INET6 ? "ip6tables-restore" : "iptables-restore",
			"-w",
			"5",
			"--noflush",
			"--counters",
			NULL};
	char *out = NULL;
	int r = run_tool(argv, rules, &out, err);
	free(out);
	return r;
}

/* ---- the writer ---- */

struct ipt_writer {
	struct svc_planner *sp;
	const struct store *s;
	struct ipt_cfg cfg;
	struct ipprefix cidr;
	char *node;
	struct ipaddr *addrs;
	size_t naddrs;
	struct ipt_render_stats st;
	char *error;
};

struct ipt_writer *ipt_writer_new(struct svc_planner *sp, const struct store *s,
				  const struct svc_plan_in *in, const struct ipt_cfg *cfg)
{
	struct ipt_writer *w = xcalloc(1, sizeof(*w));
	w->sp = sp;
	w->s = s;
	if (cfg)
		w->cfg = *cfg;
	if (!w->cfg.family)
		w->cfg.family = AF_INET;
	if (cfg && cfg->cluster_cidr) {
		w->cidr = *cfg->cluster_cidr;
		w->cfg.cluster_cidr = &w->cidr;
	}
	if (in) {
		w->node = xstrdup(in->node_name);
		if (in->nnode_addrs) {
			w->addrs = xcalloc(in->nnode_addrs, sizeof(*w->addrs));
			memcpy(w->addrs, in->node_addrs, in->nnode_addrs * sizeof(*w->addrs));
			w->naddrs = in->nnode_addrs;
		}
	}
	w->error = xstrdup("");
	return w;
}

void ipt_writer_free(struct ipt_writer *w)
{
	if (!w)
		return;
	free(w->node);
	free(w->addrs);
	free(w->error);
	free(w);
}

struct collect_ctx {
	struct ipt_writer *w;
	struct ipt_ports *ports;
};

struct slice_ctx {
	const char *ns, *name;
	size_t n;
	const struct object **v;
};

static int slice_cb(const struct object *o, void *arg)
{
	struct slice_ctx *c = arg;
	if (o->eps.service && !strcmp(o->eps.service, c->name) &&
	    !strcmp(o->meta.ns ? o->meta.ns : "", c->ns)) {
		c->v = xrealloc(c->v, (c->n + 1) * sizeof(*c->v));
		c->v[c->n++] = o;
	}
	return 0;
}

static int collect_cb(const char *key, const struct svc_entries *e, void *arg)
{
	struct collect_ctx *c = arg;
	const char *slash = strchr(key, '/');
	if (!slash)
		return 0;
	char *ns = strndup(key, (size_t)(slash - key));
	const struct object *svc = store_get(c->w->s, KIND_SERVICE, *ns ? ns : NULL, slash + 1);
	if (!svc && !*ns)
		svc = store_get(c->w->s, KIND_SERVICE, "", slash + 1);
	if (svc) {
		/* the slices are needed only when every entry of a port is Local-policy */
		struct slice_ctx sc = {.ns = ns, .name = slash + 1};
		if (svc->svc.itp_local && svc->svc.etp_local)
			store_foreach(c->w->s, KIND_ENDPOINTSLICE, slice_cb, &sc);
		struct svc_plan_in in = {c->w->node, c->w->addrs, c->w->naddrs};
		ipt_ports_add(c->ports, svc, e, sc.v, sc.n, &in, c->w->cfg.family);
		free(sc.v);
	}
	free(ns);
	return 0;
}

char *ipt_writer_render(struct ipt_writer *w, const char *saved)
{
	svc_planner_update(w->sp, NULL);
	char *own = NULL;
	if (!saved) {
		char *err = NULL;
		int r = ipt_save(w->cfg.family, &own, &err);
		if (r < 0) {
			free(w->error);
			w->error = xasprintf("iptables-save: %s: %s", strerror(-r), err ? err : "");
			free(err);
			free(own);
			return NULL;
		}
		free(err);
		saved = own;
	}
	struct ipt_ports ports = {0};
	struct collect_ctx c = {w, &ports};
	svc_planner_foreach(w->sp, collect_cb, &c);
	char *text = ipt_render(&ports, &w->cfg, saved, &w->st);
	ipt_ports_free(&ports);
	free(own);
	return text;
}

int ipt_writer_sync(struct ipt_writer *w)
{
	monotime_t t0 = monotime_now();
	char *text = ipt_writer_render(w, NULL);
	if (!text)
		return -EIO;
	char *err = NULL;
	int r = ipt_restore(w->cfg.family, text, &err);
	free(w->error);
	if (r < 0) {
		w->error = xasprintf("iptables-restore: %s: %s", strerror(-r), err ? err : "");
		log_warn(SUB, "%s", w->error);
	} else {
		w->error = xstrdup("");
		log_debug(SUB, "synced: %u nat rules, %u filter rules, %u chains deleted, %.1f ms",
			  w->st.nat_rules, w->st.filter_rules, w->st.deleted_chains,
			  (double)(monotime_now() - t0) / 1e6);
	}
	free(err);
	free(text);
	return r;
}

const struct ipt_render_stats *ipt_writer_stats(const struct ipt_writer *w)
{
	return &w->st;
}

const char *ipt_writer_error(const struct ipt_writer *w)
{
	return w->error;
}

/* ---- debug entry point ---- */

static void diag_print(const struct diag *d, void *arg)
{
	(void)arg;
	char buf[512];
	fprintf(stderr, "%s\n", diag_fmt(d, buf, sizeof(buf)));
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: twill proxy ipt-render [--manifests] DIR --node NAME [--node-ip IP]...\n"
		"           [--cluster-cidr CIDR] [--masquerade-all] [--ipv6]\n"
		"           [--saved FILE] [--apply | --cleanup]\n"
		"  prints the iptables-restore input kube-proxy would write for DIR's Services;\n"
		"  --apply restores it (iptables-restore --noflush) and prints a JSON summary;\n"
		"  --cleanup removes every chain and jump it owns.\n");
}

int proxy_ipt_debug_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"manifests", required_argument, NULL, 'm'},
	    {"node", required_argument, NULL, 'n'},
	    {"node-ip", required_argument, NULL, 'i'},
	    {"cluster-cidr", required_argument, NULL, 'c'},
	    {"masquerade-all", no_argument, NULL, 'M'},
	    {"ipv6", no_argument, NULL, '6'},
	    {"saved", required_argument, NULL, 's'},
	    {"apply", no_argument, NULL, 'a'},
	    {"cleanup", no_argument, NULL, 'C'},
	    {"log-level", required_argument, NULL, 'l'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *dir = NULL, *node = NULL, *saved_file = NULL;
	bool apply = false, cleanup = false;
	struct ipt_cfg cfg = {.family = AF_INET};
	struct ipprefix cidr;
	struct ipaddr addrs[16];
	size_t naddrs = 0;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "m:n:i:c:M6s:aCl:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			dir = optarg;
			break;
		case 'n':
			node = optarg;
			break;
		case 'i':
			if (naddrs >= ARRAY_SIZE(addrs) || ip_parse(optarg, &addrs[naddrs]) < 0) {
				fprintf(stderr, "ipt-render: bad --node-ip '%s'\n", optarg);
				return 2;
			}
			naddrs++;
			break;
		case 'c':
			if (prefix_parse(optarg, &cidr) < 0) {
				fprintf(stderr, "ipt-render: bad --cluster-cidr '%s'\n", optarg);
				return 2;
			}
			prefix_normalize(&cidr);
			cfg.cluster_cidr = &cidr;
			break;
		case 'M':
			cfg.masquerade_all = true;
			break;
		case '6':
			cfg.family = AF_INET6;
			break;
		case 's':
			saved_file = optarg;
			break;
		case 'a':
			apply = true;
			break;
		case 'C':
			cleanup = true;
			break;
		case 'l':
			log_set_level(log_level_parse(optarg, LOG_INFO));
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!dir && optind < argc)
		dir = argv[optind++];
	if (cleanup) {
		char *saved = NULL, *err = NULL;
		int r = ipt_save(cfg.family, &saved, &err);
		if (r == 0) {
			char *text = ipt_render_cleanup(saved, cfg.family);
			free(err);
			err = NULL;
			r = *text ? ipt_restore(cfg.family, text, &err) : 0;
			free(text);
		}
		if (r < 0)
			fprintf(stderr, "ipt-render: cleanup: %s: %s\n", strerror(-r),
				err ? err : "");
		free(saved);
		free(err);
		return r < 0 ? 1 : 0;
	}
	if (!dir || !node) {
		usage(stderr);
		return 2;
	}
	char *saved = NULL;
	if (saved_file) {
		size_t len;
		int r = file_read(saved_file, &saved, &len);
		if (r < 0) {
			fprintf(stderr, "ipt-render: %s: %s\n", saved_file, strerror(-r));
			return 1;
		}
	}
	struct store *s = store_new();
	int lr = source_dir_load(s, dir, diag_print, NULL);
	if (lr < 0) {
		fprintf(stderr, "ipt-render: %s: %s\n", dir, strerror(-lr));
		store_free(s);
		free(saved);
		return 1;
	}
	if (!naddrs)
		naddrs = svc_node_addrs(store_get(s, KIND_NODE, NULL, node), addrs,
					ARRAY_SIZE(addrs));
	struct svc_plan_in in = {node, addrs, naddrs};
	struct svc_planner *sp = svc_planner_new(s, &in);
	struct ipt_writer *w = ipt_writer_new(sp, s, &in, &cfg);
	int rc = 0;
	if (apply) {
		int r = ipt_writer_sync(w);
		const struct ipt_render_stats *st = ipt_writer_stats(w);
		printf(
		    "{\"ok\":%s,\"error\":\"%s\",\"natRules\":%u,\"filterRules\":%u,"
		    "\"natChains\":%u,\"deletedChains\":%u,\"jumpsAdded\":%u,\"endpoints\":%u}\n",
		    r == 0 ? "true" : "false", r == 0 ? "" : "see stderr", st->nat_rules,
		    st->filter_rules, st->nat_chains, st->deleted_chains, st->jumps_added,
		    st->endpoints);
		if (r < 0) {
			fprintf(stderr, "ipt-render: %s\n", ipt_writer_error(w));
			rc = 1;
		}
	} else {
		char *text = ipt_writer_render(w, saved ? saved : "");
		if (text)
			fputs(text, stdout);
		else
			rc = 1;
		free(text);
	}
	ipt_writer_free(w);
	svc_planner_free(sp);
	store_free(s);
	free(saved);
	return rc;
}
