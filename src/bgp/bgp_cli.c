/* bgp_cli: `twill bgp run|peers|routes`.
 *
 * `run` is the standalone speaker (tests, the lab's router role): a JSON config file,
 * an epoll loop around bgp_dispatch, SIGHUP re-reads the config (peers and originated
 * prefixes are diffed), SIGUSR1 asks every peer for a ROUTE-REFRESH, SIGTERM stops
 * (kernel routes stay when gracefulRestart is on).  The state goes to a JSON file that
 * `peers` and `routes` print, as `birdc show protocols` / `show route` would. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "bgp/bgp.h"
#include "lib/log.h"
#include "lib/util.h"

struct orig {
	struct ipprefix p;
	struct bgp_route_attrs ra;
	uint32_t comm[32];
	uint32_t lcomm[3 * 16];
};

struct runcfg {
	struct bgp_cfg cfg;
	struct bgp_peer_cfg *peers;
	size_t npeers;
	struct orig *orig;
	size_t norig;
};

static void runcfg_free(struct runcfg *r)
{
	free(r->peers);
	free(r->orig);
	memset(r, 0, sizeof(*r));
}

static int cfg_err(char *err, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int cfg_err(char *err, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, size, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static json_object *jget(json_object *o, const char *k)
{
	json_object *v;
	return json_object_object_get_ex(o, k, &v) ? v : NULL;
}

static int jint(json_object *o, const char *k, int64_t lo, int64_t hi, int64_t *out, const char *ctx,
		char *err, size_t es)
{
	json_object *v = jget(o, k);
	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_int))
		return cfg_err(err, es, "%s.%s: not an integer", ctx, k);
	int64_t x = json_object_get_int64(v);
	if (x < lo || x > hi)
		return cfg_err(err, es, "%s.%s: %lld out of range %lld..%lld", ctx, k, (long long)x,
			       (long long)lo, (long long)hi);
	*out = x;
	return 1;
}

static int jipv(json_object *o, const char *k, struct ipaddr *out, const char *ctx, char *err,
		size_t es)
{
	json_object *v = jget(o, k);
	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_string) || ip_parse(json_object_get_string(v), out) < 0)
		return cfg_err(err, es, "%s.%s: not an IP address", ctx, k);
	return 1;
}

static int jid(json_object *o, const char *k, uint32_t *out, const char *ctx, char *err, size_t es)
{
	struct ipaddr a;
	int r = jipv(o, k, &a, ctx, err, es);
	if (r <= 0)
		return r;
	if (a.family != AF_INET)
		return cfg_err(err, es, "%s.%s: must be an IPv4 address", ctx, k);
	*out = ntohl(a.v4.s_addr);
	return 1;
}

static bool jbool(json_object *o, const char *k, bool dflt)
{
	json_object *v = jget(o, k);
	return v ? json_object_get_boolean(v) : dflt;
}

/* "65001:100" (community, words 1) or "1:2:3" (large community, words 3) */
static int parse_comm(const char *s, uint32_t *w, int words)
{
	unsigned long v[3] = {0, 0, 0};
	int used = -1;
	if (!s || strchr(s, '-'))
		return -1;
	if (words == 1)
		sscanf(s, "%lu:%lu%n", &v[0], &v[1], &used);
	else
		sscanf(s, "%lu:%lu:%lu%n", &v[0], &v[1], &v[2], &used);
	if (used < 0 || s[used])
		return -1;
	if (words == 1) {
		if (v[0] > 0xffff || v[1] > 0xffff)
			return -1;
		w[0] = (uint32_t)(v[0] << 16 | v[1]);
		return 0;
	}
	for (int i = 0; i < 3; i++) {
		if (v[i] > 0xffffffffUL)
			return -1;
		w[i] = (uint32_t)v[i];
	}
	return 0;
}

/* "bfd": true | false | {"minTx": ms, "minRx": ms, "multiplier": n} */
static int parse_bfd(json_object *o, const char *pctx, struct bgp_peer_cfg *p, char *err, size_t es)
{
	if (!o)
		return 0;
	if (json_object_is_type(o, json_type_boolean)) {
		p->bfd = json_object_get_boolean(o);
		return 0;
	}
	if (!json_object_is_type(o, json_type_object))
		return cfg_err(err, es, "%s.bfd: true, false or {minTx, minRx, multiplier}", pctx);
	char ctx[48];
	snprintf(ctx, sizeof(ctx), "%s.bfd", pctx);
	int64_t tx = 0, rx = 0, mult = 0;
	if (jint(o, "minTx", 10, 60000, &tx, ctx, err, es) < 0 ||
	    jint(o, "minRx", 10, 60000, &rx, ctx, err, es) < 0 ||
	    jint(o, "multiplier", 1, 255, &mult, ctx, err, es) < 0)
		return -EINVAL;
	p->bfd = true;
	p->bfd_tx_ms = (uint16_t)tx;
	p->bfd_rx_ms = (uint16_t)rx;
	p->bfd_mult = (uint8_t)mult;
	return 0;
}

static int parse_peer(json_object *o, size_t idx, struct bgp_peer_cfg *p, char *err, size_t es)
{
	char ctx[32];
	snprintf(ctx, sizeof(ctx), "peers[%zu]", idx);
	memset(p, 0, sizeof(*p));
	int64_t v = 0;
	json_object *s;
	if ((s = jget(o, "name")) && json_object_is_type(s, json_type_string))
		snprintf(p->name, sizeof(p->name), "%s", json_object_get_string(s));
	if (jipv(o, "address", &p->addr, ctx, err, es) <= 0)
		return err[0] ? -EINVAL : cfg_err(err, es, "%s.address: missing", ctx);
	int r = jint(o, "as", 1, 0xffffffffLL, &v, ctx, err, es);
	if (r <= 0)
		return r < 0 ? r : cfg_err(err, es, "%s.as: missing", ctx);
	p->as = (uint32_t)v;
	if (jipv(o, "localAddress", &p->local, ctx, err, es) < 0)
		return -EINVAL;
	if (jint(o, "port", 1, 65535, &v, ctx, err, es) < 0)
		return -EINVAL;
	p->port = (uint16_t)(jget(o, "port") ? v : 0);
	if ((s = jget(o, "password"))) {
		const char *pw = json_object_get_string(s);
		if (!pw || strlen(pw) > 80)
			return cfg_err(err, es, "%s.password: at most 80 characters", ctx);
		snprintf(p->password, sizeof(p->password), "%s", pw);
	}
	p->passive = jbool(o, "passive", false);
	p->rr_client = jbool(o, "routeReflectorClient", false);
	p->next_hop_self = jbool(o, "nextHopSelf", false);
	if ((r = jint(o, "multihop", 1, 255, &v, ctx, err, es)) < 0)
		return r;
	p->multihop = r ? (uint8_t)v : 0;
	if ((r = jint(o, "ttlSecurity", 1, 254, &v, ctx, err, es)) < 0)
		return r;
	p->ttl_security = r ? (uint8_t)v : 0;
	if ((r = jint(o, "holdTime", 0, 65535, &v, ctx, err, es)) < 0)
		return r;
	if (r && v > 0 && v < 3)
		return cfg_err(err, es, "%s.holdTime: 0 or at least 3", ctx);
	p->hold_time = r ? (uint16_t)v : 0;
	if ((r = jint(o, "connectRetry", 1, 65535, &v, ctx, err, es)) < 0)
		return r;
	p->connect_retry = r ? (uint16_t)v : 0;
	if ((r = parse_bfd(jget(o, "bfd"), ctx, p, err, es)) < 0)
		return r;
	json_object *fams = jget(o, "families");
	for (size_t i = 0; fams && i < json_object_array_length(fams); i++) {
		const char *f = json_object_get_string(json_object_array_get_idx(fams, i));
		if (f && !strcmp(f, "ipv4"))
			p->fam[BGP_FAM_V4] = true;
		else if (f && !strcmp(f, "ipv6"))
			p->fam[BGP_FAM_V6] = true;
		else
			return cfg_err(err, es, "%s.families[%zu]: ipv4 or ipv6", ctx, i);
	}
	return 0;
}

static int parse_orig(json_object *o, size_t idx, struct orig *out, char *err, size_t es)
{
	char ctx[32];
	snprintf(ctx, sizeof(ctx), "originate[%zu]", idx);
	memset(out, 0, sizeof(*out));
	json_object *s = json_object_is_type(o, json_type_string) ? o : jget(o, "prefix");
	if (!s || prefix_parse(json_object_get_string(s), &out->p) < 0)
		return cfg_err(err, es, "%s.prefix: not a CIDR prefix", ctx);
	prefix_normalize(&out->p);
	if (s == o)
		return 0;
	int64_t v;
	int r;
	if ((r = jint(o, "localPref", 0, 0xffffffffLL, &v, ctx, err, es)) < 0)
		return r;
	out->ra.local_pref = r ? (uint32_t)v : 0;
	if ((r = jint(o, "med", 0, 0xffffffffLL, &v, ctx, err, es)) < 0)
		return r;
	out->ra.has_med = r;
	out->ra.med = r ? (uint32_t)v : 0;
	json_object *c = jget(o, "communities");
	for (size_t i = 0; c && i < json_object_array_length(c); i++) {
		if (i >= ARRAY_SIZE(out->comm) ||
		    parse_comm(json_object_get_string(json_object_array_get_idx(c, i)),
			       &out->comm[i], 1) < 0)
			return cfg_err(err, es, "%s.communities[%zu]: not ASN:VALUE (16 bits each)",
				       ctx, i);
		out->ra.ncomm = i + 1;
	}
	c = jget(o, "largeCommunities");
	for (size_t i = 0; c && i < json_object_array_length(c); i++) {
		if (i >= ARRAY_SIZE(out->lcomm) / 3 ||
		    parse_comm(json_object_get_string(json_object_array_get_idx(c, i)),
			       &out->lcomm[3 * i], 3) < 0)
			return cfg_err(err, es, "%s.largeCommunities[%zu]: not A:B:C", ctx, i);
		out->ra.nlcomm = i + 1;
	}
	return 0;
}

static int config_load(const char *path, struct runcfg *rc, char *err, size_t es)
{
	char *data = NULL;
	size_t len;
	memset(rc, 0, sizeof(*rc));
	int r = file_read(path, &data, &len);
	if (r < 0)
		return cfg_err(err, es, "%s: %s", path, strerror(-r));
	json_object *j = json_tokener_parse(data);
	free(data);
	if (!j || !json_object_is_type(j, json_type_object)) {
		json_object_put(j);
		return cfg_err(err, es, "%s: not a JSON object", path);
	}
	struct bgp_cfg *c = &rc->cfg;
	int64_t v;
	r = -EINVAL;
	if (jint(j, "as", 1, 0xffffffffLL, &v, "config", err, es) <= 0) {
		if (!err[0])
			cfg_err(err, es, "config.as: missing");
		goto out;
	}
	c->as = (uint32_t)v;
	if (jid(j, "routerId", &c->router_id, "config", err, es) <= 0) {
		if (!err[0])
			cfg_err(err, es, "config.routerId: missing");
		goto out;
	}
	if (jid(j, "clusterId", &c->cluster_id, "config", err, es) < 0)
		goto out;
	c->listen_port = 0;
	if (jint(j, "listenPort", -1, 65535, &v, "config", err, es) < 0)
		goto out;
	if (jget(j, "listenPort"))
		c->listen_port = (int)v;
	if (jint(j, "holdTime", 0, 65535, &v, "config", err, es) < 0)
		goto out;
	c->hold_time = jget(j, "holdTime") ? (uint16_t)v : 0;
	if (jint(j, "connectRetry", 1, 65535, &v, "config", err, es) < 0)
		goto out;
	c->connect_retry = jget(j, "connectRetry") ? (uint16_t)v : 0;
	if (jint(j, "restartTime", 1, 4095, &v, "config", err, es) < 0)
		goto out;
	c->restart_time = jget(j, "restartTime") ? (uint16_t)v : 0;
	if (jint(j, "table", 0, 0xffffffffLL, &v, "config", err, es) < 0)
		goto out;
	c->table = jget(j, "table") ? (uint32_t)v : 0;
	c->install = jbool(j, "install", true);
	c->graceful_restart = jbool(j, "gracefulRestart", false);
	if (jipv(j, "nextHop4", &c->nh4, "config", err, es) < 0 ||
	    jipv(j, "nextHop6", &c->nh6, "config", err, es) < 0 ||
	    jipv(j, "listen4", &c->listen4, "config", err, es) < 0 ||
	    jipv(j, "listen6", &c->listen6, "config", err, es) < 0)
		goto out;
	json_object *a = jget(j, "peers");
	size_t n = a && json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
	rc->peers = xcalloc(n ? n : 1, sizeof(*rc->peers));
	for (size_t i = 0; i < n; i++, rc->npeers++)
		if (parse_peer(json_object_array_get_idx(a, i), i, &rc->peers[i], err, es) < 0)
			goto out;
	a = jget(j, "originate");
	n = a && json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
	rc->orig = xcalloc(n ? n : 1, sizeof(*rc->orig));
	for (size_t i = 0; i < n; i++, rc->norig++)
		if (parse_orig(json_object_array_get_idx(a, i), i, &rc->orig[i], err, es) < 0)
			goto out;
	r = 0;
out:
	json_object_put(j);
	if (r < 0)
		runcfg_free(rc);
	return r;
}

static void apply_orig(struct bgp *b, const struct runcfg *old, const struct runcfg *rc)
{
	for (size_t i = 0; old && i < old->norig; i++) {
		bool still = false;
		for (size_t k = 0; k < rc->norig && !still; k++)
			still = prefix_eq(&old->orig[i].p, &rc->orig[k].p);
		if (!still)
			bgp_withdraw(b, &old->orig[i].p);
	}
	for (size_t i = 0; i < rc->norig; i++) {
		struct orig *o = &rc->orig[i];
		o->ra.comm = o->comm;
		o->ra.lcomm = o->lcomm;
		bgp_originate(b, &o->p, &o->ra);
	}
}

/* The state file shows this many routes at most: writing a whole big RIB as JSON would
 * stall the loop (100,000 routes are about 37 MB). */
#define STATE_MAX_ROUTES 10000

static void state_write(struct bgp *b, const char *path)
{
	char *s = bgp_state_json(b, STATE_MAX_ROUTES);
	int e = file_write_atomic(path, s, strlen(s));
	if (e < 0)
		log_warn("bgp", "cannot write %s: %s", path, strerror(-e));
	free(s);
}

static int run_main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"state", required_argument, NULL, 's'},
	    {"log-level", required_argument, NULL, 'l'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *cfgpath = NULL, *statepath = NULL;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:s:l:h", lo, NULL)) != -1) {
		switch (c) {
		case 'c':
			cfgpath = optarg;
			break;
		case 's':
			statepath = optarg;
			break;
		case 'l':
			log_set_level(log_level_parse(optarg, LOG_INFO));
			break;
		case 'h':
			printf("usage: twill bgp run --config FILE [--state FILE] [--log-level L]\n");
			return 0;
		default:
			return 2;
		}
	}
	if (!cfgpath) {
		fprintf(stderr, "usage: twill bgp run --config FILE [--state FILE]\n");
		return 2;
	}
	char err[256] = "";
	struct runcfg rc;
	if (config_load(cfgpath, &rc, err, sizeof(err)) < 0) {
		fprintf(stderr, "twill bgp: %s\n", err);
		return 1;
	}
	char *sp = statepath ? xstrdup(statepath) : xasprintf("%s.state.json", cfgpath);
	struct bgp *b = bgp_new(&rc.cfg);
	if (!b) {
		fprintf(stderr, "twill bgp: cannot start: %s\n", strerror(errno));
		runcfg_free(&rc);
		free(sp);
		return 1;
	}
	bgp_set_peers(b, rc.peers, rc.npeers);
	apply_orig(b, NULL, &rc);

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event e1 = {.events = EPOLLIN, .data.fd = bgp_fd(b)};
	struct epoll_event e2 = {.events = EPOLLIN, .data.fd = sfd};
	epoll_ctl(ep, EPOLL_CTL_ADD, bgp_fd(b), &e1);
	epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &e2);
	log_info("bgp", "running: AS %u, %zu peers, %zu prefixes originated", rc.cfg.as,
		 rc.npeers, rc.norig);
	state_write(b, sp);
	monotime_t last_write = monotime_now();
	bool stop = false, pending = false;
	while (!stop) {
		int t = bgp_timeout_ms(b);
		if (t < 0 || t > 1000)
			t = 1000;
		if (pending && t > 50)
			t = 50;
		struct epoll_event ev[4];
		int n = epoll_wait(ep, ev, 4, t);
		for (int i = 0; i < n; i++) {
			if (ev[i].data.fd != sfd)
				continue;
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) != sizeof(si))
				continue;
			if (si.ssi_signo == SIGHUP) {
				struct runcfg nrc;
				err[0] = '\0';
				if (config_load(cfgpath, &nrc, err, sizeof(err)) < 0) {
					log_error("bgp", "reload: %s (keeping the old config)", err);
					continue;
				}
				bgp_set_peers(b, nrc.peers, nrc.npeers);
				apply_orig(b, &rc, &nrc);
				runcfg_free(&rc);
				rc = nrc;
				log_info("bgp", "config reloaded");
			} else if (si.ssi_signo == SIGUSR1) {
				bgp_refresh_all(b);
			} else {
				stop = true;
			}
		}
		bgp_dispatch(b);
		monotime_t now = monotime_now();
		pending |= bgp_state_dirty(b);
		/* a big file at most once a second: rewritten every 50 ms during a feed of
		 * 10,000 routes, it took two thirds of the CPU (bench/bgp_bench.py) */
		monotime_t gap = bgp_route_count(b) > 1000 ? MONO_MS(1000) : MONO_MS(50);
		if ((pending && now - last_write >= gap) || now - last_write > MONO_MS(1000) + gap) {
			state_write(b, sp);
			last_write = now;
			pending = false;
		}
	}
	log_info("bgp", "stopping");
	bgp_free(b);
	runcfg_free(&rc);
	close(ep);
	close(sfd);
	unlink(sp);
	free(sp);
	return 0;
}

static json_object *state_read(const char *path)
{
	char *data = NULL;
	size_t len;
	int r = file_read(path, &data, &len);
	if (r < 0) {
		fprintf(stderr, "twill bgp: cannot read %s: %s (is `twill bgp run` running?)\n", path,
			strerror(-r));
		return NULL;
	}
	json_object *j = json_tokener_parse(data);
	free(data);
	if (!j)
		fprintf(stderr, "twill bgp: %s is not JSON\n", path);
	return j;
}

static const char *js(json_object *o, const char *k)
{
	json_object *v = jget(o, k);
	return v ? json_object_get_string(v) : "";
}

static void fmt_since(int64_t s, char *buf, size_t size)
{
	if (s >= 86400)
		snprintf(buf, size, "%lldd%02lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
	else
		snprintf(buf, size, "%02lld:%02lld:%02lld", (long long)(s / 3600),
			 (long long)(s % 3600 / 60), (long long)(s % 60));
}

static int show_main(int argc, char **argv, bool routes)
{
	static const struct option lo[] = {
	    {"state", required_argument, NULL, 's'},
	    {"state-dir", required_argument, NULL, 'd'}, /* an agent's: DIR/bgp.json */
	    {"output", required_argument, NULL, 'o'},
	    {NULL, 0, NULL, 0},
	};
	const char *sp = "/run/twill/bgp.json", *fmt = "table";
	char spd[4096];
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "s:o:d:", lo, NULL)) != -1) {
		if (c == 's')
			sp = optarg;
		else if (c == 'd')
			sp = (snprintf(spd, sizeof(spd), "%s/bgp.json", optarg), spd);
		else if (c == 'o')
			fmt = optarg;
		else
			return 2;
	}
	if (strcmp(fmt, "json") && strcmp(fmt, "table")) {
		fprintf(stderr, "twill bgp: -o json|table\n");
		return 2;
	}
	json_object *j = state_read(sp);
	if (!j)
		return 1;
	json_object *list = jget(j, routes ? "routes" : "peers");
	int64_t total = json_object_get_int64(jget(j, "routesTotal"));
	if (routes && list && total > (int64_t)json_object_array_length(list))
		fprintf(stderr, "twill bgp: showing the first %zu of %lld routes\n",
			json_object_array_length(list), (long long)total);
	if (!strcmp(fmt, "json")) {
		puts(json_object_to_json_string_ext(list, JSON_C_TO_STRING_PRETTY));
		json_object_put(j);
		return 0;
	}
	size_t n = list ? json_object_array_length(list) : 0;
	if (!routes) {
		printf("%-16s %-24s %-10s %-5s %-12s %-9s %-9s %8s %8s  %s\n", "NAME", "ADDRESS",
		       "AS", "TYPE", "STATE", "BFD", "SINCE", "RECEIVED", "SENT", "INFO");
		for (size_t i = 0; i < n; i++) {
			json_object *p = json_object_array_get_idx(list, i);
			char since[32];
			fmt_since(json_object_get_int64(jget(p, "since")), since, sizeof(since));
			json_object *bfd = jget(p, "bfd");
			printf("%-16s %-24s %-10s %-5s %-12s %-9s %-9s %8s %8s  %s\n", js(p, "name"),
			       js(p, "address"), js(p, "as"), js(p, "type"), js(p, "state"),
			       bfd ? js(bfd, "state") : "-", since, js(p, "received"), js(p, "sent"),
			       js(p, "lastError"));
		}
	} else {
		printf("%-24s %-26s %-16s %-6s %-4s %s\n", "PREFIX", "NEXT HOP", "FROM", "PREF",
		       "BEST", "AS PATH");
		for (size_t i = 0; i < n; i++) {
			json_object *r = json_object_array_get_idx(list, i);
			json_object *paths = jget(r, "paths");
			for (size_t k = 0; paths && k < json_object_array_length(paths); k++) {
				json_object *p = json_object_array_get_idx(paths, k);
				const char *ap = js(p, "asPath");
				printf("%-24s %-26s %-16s %-6s %-4s %s%s%s\n",
				       k ? "" : js(r, "prefix"),
				       *js(p, "nextHop") ? js(p, "nextHop") : "-", js(p, "from"),
				       js(p, "localPref"),
				       json_object_get_boolean(jget(p, "best")) ? "*" : "",
				       *ap ? ap : "(empty)", " ", js(p, "origin"));
			}
		}
	}
	json_object_put(j);
	return 0;
}

int bgp_main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fprintf(argc < 2 ? stderr : stdout,
			"usage: twill bgp run --config FILE [--state FILE]   run a BGP speaker\n"
			"       twill bgp peers [--state FILE] [-o json]     sessions\n"
			"       twill bgp routes [--state FILE] [-o json]    the RIB\n"
			"       (--state-dir DIR: an agent's, DIR/bgp.json)\n");
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "run"))
		return run_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "peers"))
		return show_main(argc - 1, argv + 1, false);
	if (!strcmp(argv[1], "routes"))
		return show_main(argc - 1, argv + 1, true);
	fprintf(stderr, "twill bgp: unknown command '%s'\n", argv[1]);
	return 2;
}
