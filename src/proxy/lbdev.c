/* lbdev: LoadBalancer addresses on the dummy device kube-lb0 (see lbdev.h). */
#include "proxy/lbdev.h"

#include <errno.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lib/log.h"
#include "lib/util.h"
#include "nl/nl.h"
#include "nl/nl_tunnel.h"

#define SUB "lbdev"
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 30000

struct lbdev {
	const struct svc_planner *sp;
	char dev[16];
	struct nl_sock *nl;
	int ifindex;	  /* 0: not known (dump again) */
	bool unsupported; /* no dummy devices in this kernel: never retried */
	bool synced;	  /* `have` matches the planner as of `recomputations` */
	uint64_t recomputations;
	monotime_t next_try; /* after a failure: back-off */
	unsigned backoff_ms;
	size_t nhave, caphave;
	struct ipaddr *have; /* on the device, sorted */
	char status[256];
};

static int cmp_ip_q(const void *a, const void *b)
{
	return ip_cmp(a, b);
}

static void sort_unique(struct ipaddr *v, size_t *n)
{
	if (*n < 2)
		return;
	qsort(v, *n, sizeof(*v), cmp_ip_q);
	size_t w = 1;
	for (size_t r = 1; r < *n; r++)
		if (!ip_eq(&v[r], &v[w - 1]))
			v[w++] = v[r];
	*n = w;
}

void lbdev_diff(const struct ipaddr *have, size_t nhave, const struct ipaddr *want, size_t nwant,
		struct ipaddr *add, size_t *nadd, struct ipaddr *del, size_t *ndel)
{
	size_t i = 0, k = 0;
	*nadd = *ndel = 0;
	while (i < nhave || k < nwant) {
		int c = i == nhave ? 1 : k == nwant ? -1 : ip_cmp(&have[i], &want[k]);
		if (c < 0)
			del[(*ndel)++] = have[i++];
		else if (c > 0)
			add[(*nadd)++] = want[k++];
		else
			i++, k++;
	}
}

static void push_ip(struct ipaddr **v, size_t *n, size_t *cap, const struct ipaddr *ip)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		*v = xrealloc(*v, *cap * sizeof(**v));
	}
	(*v)[(*n)++] = *ip;
}

static void push_served(const struct svc_entries *e, struct ipaddr **v, size_t *n, size_t *cap)
{
	for (size_t i = 0; e && i < e->n; i++)
		if (e->v[i].scope == SVC_SCOPE_LB && e->v[i].verdict != SVC_DROP)
			push_ip(v, n, cap, &e->v[i].vip);
}

void lbdev_collect(const struct svc_entries *e, struct ipaddr **v, size_t *n, size_t *cap)
{
	push_served(e, v, n, cap);
	sort_unique(*v, n);
}

struct lbdev *lbdev_new(const struct svc_planner *sp, const char *dev)
{
	struct lbdev *d = xcalloc(1, sizeof(*d));
	d->sp = sp;
	snprintf(d->dev, sizeof(d->dev), "%s", dev ? dev : LBDEV_DEVICE);
	return d;
}

void lbdev_free(struct lbdev *d)
{
	if (!d)
		return;
	if (d->nl)
		nl_close(d->nl);
	free(d->have);
	free(d);
}

const char *lbdev_status(const struct lbdev *d)
{
	return d->status;
}

size_t lbdev_count(const struct lbdev *d)
{
	return d->nhave;
}

/* A new problem is logged once; the same one again stays quiet. */
static int fail(struct lbdev *d, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct lbdev *d, int r, const char *fmt, ...)
{
	char msg[sizeof(d->status)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (strcmp(msg, d->status))
		log_error(SUB, "%s", msg);
	memcpy(d->status, msg, sizeof(msg));
	d->ifindex = 0; /* read the device again next time, after a back-off */
	d->synced = false;
	d->backoff_ms = d->backoff_ms ? (d->backoff_ms >= BACKOFF_MAX_MS / 2 ? BACKOFF_MAX_MS
									     : d->backoff_ms * 2)
				      : BACKOFF_MIN_MS;
	d->next_try = monotime_now() + MONO_MS(d->backoff_ms);
	return r;
}

/* Raise a sysctl to at least `min` (a stricter setting stays). */
static void sysctl_at_least(const char *key, int min)
{
	char buf[32];
	if (sysctl_read(key, buf, sizeof(buf)) >= 0 && atoi(buf) >= min)
		return;
	char v[8];
	snprintf(v, sizeof(v), "%d", min);
	int r = sysctl_write(key, v);
	if (r < 0)
		log_warn(SUB, "%s=%s: %s", key, v, strerror(-r));
	else
		log_info(SUB, "%s=%s (LoadBalancer addresses are local, not announced by ARP)", key,
			 v);
}

static int dump_cb(const struct nl_addr *a, void *arg)
{
	struct lbdev *d = arg;
	if (a->index == d->ifindex)
		push_ip(&d->have, &d->nhave, &d->caphave, &a->prefix.addr);
	return 0;
}

/* The device, up, and what it holds now.  Without `create` an absent device is fine
 * (ifindex stays 0): a node that serves no LoadBalancer address gets no device. */
static int open_device(struct lbdev *d, bool create)
{
	if (!d->nl && !(d->nl = nl_open()))
		return fail(d, -errno, "%s: rtnetlink socket: %s", d->dev, strerror(errno));
	int idx = nl_link_index(d->nl, d->dev);
	d->nhave = 0;
	if (idx == -ENODEV && !create)
		return 0;
	if (idx == -ENODEV) {
		int r = nl_link_add_kind(d->dev, "dummy", 0);
		if (r == -EOPNOTSUPP) { /* a limit of this host, not a fault: said once */
			d->unsupported = true;
			snprintf(d->status, sizeof(d->status),
				 "%s: this kernel has no dummy devices: LoadBalancer addresses are "
				 "not held on the node (Services still work)",
				 d->dev);
			log_warn(SUB, "%s", d->status);
			return 0;
		}
		if (r < 0 && r != -EEXIST)
			return fail(d, r, "%s: creating the dummy device: %s", d->dev,
				    strerror(-r));
		log_info(SUB, "created dummy device %s", d->dev);
		idx = nl_link_index(d->nl, d->dev);
	}
	if (idx < 0)
		return fail(d, idx, "%s: %s", d->dev, strerror(-idx));
	struct nl_link l;
	int r = nl_link_get_index(d->nl, idx, &l);
	if (r < 0)
		return fail(d, r, "%s: %s", d->dev, strerror(-r));
	if (strcmp(l.kind, "dummy"))
		return fail(d, -EEXIST, "%s exists and is a %s device, not dummy: left alone",
			    d->dev, l.kind[0] ? l.kind : "plain");
	if (!l.up && (r = nl_link_set_up(d->nl, idx, true)) < 0)
		return fail(d, r, "%s: setting up: %s", d->dev, strerror(-r));
	sysctl_at_least("net.ipv4.conf.all.arp_ignore", 1);
	sysctl_at_least("net.ipv4.conf.all.arp_announce", 2);
	d->ifindex = idx;
	r = nl_addr_dump(d->nl, AF_UNSPEC, idx, dump_cb, d);
	if (r < 0)
		return fail(d, r, "%s: reading addresses: %s", d->dev, strerror(-r));
	sort_unique(d->have, &d->nhave);
	return 0;
}

static int addr_change(struct lbdev *d, const struct ipaddr *ip, bool add)
{
	bool v6 = ip->family == AF_INET6;
	struct nl_addr a = {.index = d->ifindex,
			    .prefix = {.addr = *ip, .len = (uint8_t)ip_maxlen(ip->family)},
			    .scope = RT_SCOPE_UNIVERSE,
			    .flags = v6 ? IFA_F_NODAD : 0};
	int r = add ? nl_addr_add(d->nl, &a) : nl_addr_del(d->nl, &a);
	if (!add && r == -EADDRNOTAVAIL)
		r = 0; /* gone already */
	if (r < 0) {
		char buf[IP_STRLEN];
		return fail(d, r, "%s: %s %s/%d: %s", d->dev, add ? "adding" : "deleting",
			    ip_fmt(ip, buf), a.prefix.len, strerror(-r));
	}
	return 0;
}

struct collect_ctx {
	struct ipaddr *v;
	size_t n, cap;
};

static int collect_fn(const char *key, const struct svc_entries *e, void *arg)
{
	(void)key;
	struct collect_ctx *x = arg;
	push_served(e, &x->v, &x->n, &x->cap);
	return 0;
}

int lbdev_sync(struct lbdev *d)
{
	if (d->unsupported)
		return 0;
	uint64_t rc = svc_planner_recomputations(d->sp);
	if (d->synced && rc == d->recomputations)
		return 0;
	if (d->status[0] && monotime_now() < d->next_try)
		return -EAGAIN;
	struct collect_ctx x = {0};
	svc_planner_foreach(d->sp, collect_fn, &x);
	sort_unique(x.v, &x.n);
	int r = 0;
	if (!d->ifindex && ((r = open_device(d, x.n > 0)) < 0 || d->unsupported)) {
		free(x.v);
		return r;
	}
	struct ipaddr *add = xcalloc(x.n + 1, sizeof(*add));
	struct ipaddr *del = xcalloc(d->nhave + 1, sizeof(*del));
	size_t nadd, ndel;
	lbdev_diff(d->have, d->nhave, x.v, x.n, add, &nadd, del, &ndel);
	r = 0;
	for (size_t i = 0; i < ndel && !r; i++)
		r = addr_change(d, &del[i], false);
	for (size_t i = 0; i < nadd && !r; i++)
		r = addr_change(d, &add[i], true);
	if (!r) {
		free(d->have);
		d->have = x.v;
		d->nhave = x.n;
		d->caphave = x.cap;
		x.v = NULL;
		d->synced = true;
		d->recomputations = rc;
		if (d->status[0])
			log_info(SUB, "%s: working again", d->dev);
		d->status[0] = 0;
		d->backoff_ms = 0;
		if (nadd || ndel)
			log_info(SUB, "%s: %zu LoadBalancer addresses (+%zu -%zu)", d->dev,
				 d->nhave, nadd, ndel);
	}
	free(x.v);
	free(add);
	free(del);
	return r;
}
