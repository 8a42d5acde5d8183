/* cni: twill as a CNI plugin (CNI spec 1.1.0, containernetworking/cni SPEC.md; results in
 * the 0.4.0, 1.0.0 and 1.1.0 schemas).
 *
 * One process per operation, as the spec's exec protocol wants: read CNI_* and the network
 * configuration, read the agent's <stateDir>/node.json (this node's podCIDRs, MTU, wiring),
 * act, print the result or an error object on stdout, exit.  ADD = lease (ipam.c) + wiring
 * (wire.c); DEL = unwire + release, idempotent; CHECK = compare the kernel with the lease
 * and prevResult; STATUS = is node.json usable; GC = release every lease, veth and route
 * whose attachment the runtime no longer lists.  A failed ADD leaves nothing behind. */
#include "cni/cni.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cni/ipam.h"
#include "cni/spec.h"
#include "cni/wire.h"
#include "lib/log.h"
#include "lib/util.h"
#include "nl/nl.h"

#define STDIN_MAX (1 << 20)

struct cni_ctx {
	struct cni_env env;
	struct cni_conf conf;
	struct cni_error err;
	char *out; /* success output, may be NULL */
};

static int read_stdin(char **out, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = xmalloc(cap);
	*out = buf;
	*len = 0;
	if (isatty(STDIN_FILENO)) {
		buf[0] = 0;
		return 0;
	}
	for (;;) {
		if (n + 1 >= cap) {
			if (cap >= STDIN_MAX)
				return -EFBIG;
			buf = *out = xrealloc(buf, cap *= 2);
		}
		ssize_t r = read(STDIN_FILENO, buf + n, cap - n - 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = 0;
	*len = n;
	return 0;
}

static int node_for(struct cni_ctx *c, struct cni_node *node, int code)
{
	int err = cni_node_load(c->conf.state_dir, node);
	if (err == -ENOENT)
		return cni_fail(&c->err, code,
				"%s/node.json not found: is the twill agent running?",
				c->conf.state_dir);
	if (err)
		return cni_fail(&c->err, code, "%s/node.json unreadable: %s", c->conf.state_dir,
				strerror(-err));
	if (!node->ncidrs)
		return cni_fail(&c->err, code, "node has no podCIDR yet (%s/node.json)",
				c->conf.state_dir);
	cni_node_apply_conf(node, &c->conf);
	return 0;
}

static int open_ipam(struct cni_ctx *c, struct ipam *im)
{
	char *dir = ipam_dir(c->conf.state_dir, c->conf.name);
	int err = ipam_open(im, dir);
	if (err)
		cni_fail(&c->err, CNI_ERR_IO, "opening lease directory %s: %s", dir,
			 strerror(-err));
	free(dir);
	return err ? -EINVAL : 0;
}

static void spec_init(struct wire_spec *w, const struct cni_node *node, const struct cni_env *env)
{
	memset(w, 0, sizeof(*w));
	w->wiring = node->wiring;
	w->mtu = node->mtu;
	str_copy(w->bridge, sizeof(w->bridge), node->bridge);
	wire_veth_name(env->container_id, env->ifname, w->host);
	w->ifname = env->ifname;
	w->sandbox = env->netns;
}

static int cmd_add(struct cni_ctx *c)
{
	struct cni_node node;
	struct ipam im;
	struct nl_sock *ns = NULL, *ps = NULL;
	struct wire_spec w;
	struct cni_result res;
	char why[320] = "";
	int err = node_for(c, &node, CNI_ERR_TRY_AGAIN), podfd = -1;
	if (err)
		return err;
	podfd = netns_open(c->env.netns);
	if (podfd < 0)
		return cni_fail(&c->err, CNI_ERR_NO_CONTAINER, "failed to open netns %s: %s",
				c->env.netns, strerror(-podfd));
	if (open_ipam(c, &im))
		goto out_ns;
	if (!(ns = nl_open()) || !(ps = nl_open_netns(podfd))) {
		cni_fail(&c->err, CNI_ERR_INTERNAL, "opening netlink: %s", strerror(errno));
		goto out;
	}

	spec_init(&w, &node, &c->env);
	struct ipam_range ranges[IPAM_MAX_RANGES];
	w.n = node.ncidrs;
	for (int i = 0; i < w.n; i++) {
		w.cidr[i] = node.cidrs[i];
		ranges[i].cidr = node.cidrs[i];
		ranges[i].reserve_gw = node.wiring == CNI_WIRING_BRIDGE;
	}
	err = ipam_alloc(&im, ranges, w.n, c->env.container_id, c->env.ifname, w.ip);
	if (err == -ENOSPC) {
		char buf[IP_STRLEN];
		cni_fail(&c->err, CNI_ERR_NO_ADDRESS, "no IP addresses available in range set %s",
			 prefix_fmt(&node.cidrs[0], buf));
		goto out;
	}
	if (err == -EEXIST) {
		cni_fail(&c->err, CNI_ERR_INTERNAL,
			 "%s/%s already holds an address: ADD again without DEL",
			 c->env.container_id, c->env.ifname);
		goto out;
	}
	if (err) {
		cni_fail(&c->err, CNI_ERR_IO, "allocating an address: %s", strerror(-err));
		goto out;
	}
	err = wire_add(ns, ps, podfd, &w, &res, why, sizeof(why));
	if (err) {
		ipam_release(&im, c->env.container_id, c->env.ifname, w.ip, w.n);
		cni_fail(&c->err, CNI_ERR_INTERNAL, "%s", why);
		goto out;
	}
	c->out = cni_result_json(&res, c->conf.version);
out:
	if (ps)
		nl_close(ps);
	if (ns)
		nl_close(ns);
	ipam_close(&im);
out_ns:
	close(podfd);
	return c->out ? 0 : -EINVAL;
}

static int cmd_del(struct cni_ctx *c)
{
	struct ipam im;
	struct ipaddr ips[CNI_MAX_CIDRS];
	char host[IFNAMSIZ], why[320];
	if (open_ipam(c, &im))
		return -EINVAL;
	int n = ipam_lookup(&im, c->env.container_id, c->env.ifname, ips, CNI_MAX_CIDRS);
	struct nl_sock *ns = nl_open();
	int err = -EINVAL;
	if (!ns) {
		cni_fail(&c->err, CNI_ERR_INTERNAL, "opening netlink: %s", strerror(errno));
		goto out;
	}
	wire_veth_name(c->env.container_id, c->env.ifname, host);
	/* The kernel first: a lease released while its address is still on a pod could be
	 * handed to another pod.  A missing netns or veth is not an error (spec: DEL). */
	if (wire_del(ns, host, ips, n > 0 ? n : 0, why, sizeof(why))) {
		cni_fail(&c->err, CNI_ERR_INTERNAL, "%s", why);
		goto out;
	}
	n = ipam_release(&im, c->env.container_id, c->env.ifname, ips, CNI_MAX_CIDRS);
	if (n < 0) {
		cni_fail(&c->err, CNI_ERR_IO, "releasing lease: %s", strerror(-n));
		goto out;
	}
	err = 0;
out:
	if (ns)
		nl_close(ns);
	ipam_close(&im);
	return err;
}

static int cmd_check(struct cni_ctx *c)
{
	struct cni_node node;
	struct ipam im;
	struct wire_spec w;
	char why[320];
	int err = node_for(c, &node, CNI_ERR_TRY_AGAIN);
	if (err)
		return err;
	int podfd = netns_open(c->env.netns);
	if (podfd < 0)
		return cni_fail(&c->err, CNI_ERR_NO_CONTAINER, "failed to open netns %s: %s",
				c->env.netns, strerror(-podfd));
	struct nl_sock *ns = NULL, *ps = NULL;
	err = -EINVAL;
	if (open_ipam(c, &im))
		goto out_ns;
	spec_init(&w, &node, &c->env);
	int n = ipam_lookup(&im, c->env.container_id, c->env.ifname, w.ip, CNI_MAX_CIDRS);
	ipam_close(&im);
	if (n <= 0) {
		cni_fail(&c->err, CNI_ERR_CHECK, "no address leased to %s/%s", c->env.container_id,
			 c->env.ifname);
		goto out_ns;
	}
	w.n = n;
	for (int i = 0; i < n; i++) {
		int k = 0;
		while (k < node.ncidrs && !prefix_contains(&node.cidrs[k], &w.ip[i]))
			k++;
		if (k == node.ncidrs) {
			char buf[IP_STRLEN];
			cni_fail(&c->err, CNI_ERR_CHECK,
				 "leased address %s is outside the podCIDRs",
				 ip_fmt(&w.ip[i], buf));
			goto out_ns;
		}
		w.cidr[i] = node.cidrs[k];
	}
	if (!(ns = nl_open()) || !(ps = nl_open_netns(podfd))) {
		cni_fail(&c->err, CNI_ERR_INTERNAL, "opening netlink: %s", strerror(errno));
		goto out;
	}
	if (wire_check(ns, ps, &w, c->conf.has_prev ? &c->conf.prev : NULL, why, sizeof(why))) {
		cni_fail(&c->err, CNI_ERR_CHECK, "%s", why);
		goto out;
	}
	err = 0;
out:
	if (ps)
		nl_close(ps);
	if (ns)
		nl_close(ns);
out_ns:
	close(podfd);
	return err;
}

static int cmd_status(struct cni_ctx *c)
{
	struct cni_node node;
	return node_for(c, &node, CNI_ERR_NOT_AVAILABLE);
}

struct gc_state {
	struct cni_ctx *c;
	struct nl_sock *ns;
	int failed;
	char first[320];
};

static bool gc_release(const struct ipaddr *ip, const char *cid, const char *ifname, void *arg)
{
	struct gc_state *g = arg;
	char host[IFNAMSIZ], why[320];
	if (cni_conf_attachment_valid(&g->c->conf, cid, ifname))
		return false;
	wire_veth_name(cid, ifname, host);
	if (wire_del(g->ns, host, ip, 1, why, sizeof(why))) {
		/* Keep the lease: its address may still be on a live interface. */
		if (!g->failed++)
			snprintf(g->first, sizeof(g->first), "%s", why);
		return false;
	}
	return true;
}

static int cmd_gc(struct cni_ctx *c)
{
	struct ipam im;
	struct gc_state g = {.c = c};
	if (open_ipam(c, &im))
		return -EINVAL;
	int err = -EINVAL;
	if (!(g.ns = nl_open())) {
		cni_fail(&c->err, CNI_ERR_INTERNAL, "opening netlink: %s", strerror(errno));
		goto out;
	}
	int n = ipam_gc(&im, gc_release, &g);
	if (n < 0) {
		cni_fail(&c->err, CNI_ERR_IO, "walking leases: %s", strerror(-n));
		goto out;
	}
	if (g.failed) {
		cni_fail(&c->err, CNI_ERR_INTERNAL, "%d attachment(s) could not be removed",
			 g.failed);
		snprintf(c->err.details, sizeof(c->err.details), "%s", g.first);
		goto out;
	}
	if (n)
		log_info("cni", "gc: released %d lease(s) of network %s", n, c->conf.name);
	err = 0;
out:
	if (g.ns)
		nl_close(g.ns);
	ipam_close(&im);
	return err;
}

static const char *error_version(const struct cni_ctx *c)
{
	return cni_version_parse(c->conf.version_str) != CNI_V_NONE ? c->conf.version_str
								    : CNI_VERSION_LATEST;
}

int cni_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	struct cni_ctx c;
	memset(&c, 0, sizeof(c));
	log_set_level(log_level_parse(getenv("TWILL_LOG_LEVEL"), LOG_WARN));

	if (!getenv("CNI_COMMAND")) {
		/* What skel-based plugins do when run by hand. */
		fprintf(stderr, "twill CNI plugin\nCNI protocol versions supported: 0.4.0, 1.0.0, "
				"1.1.0\n");
		return 0;
	}
	char *in = NULL;
	size_t len = 0;
	int rd = read_stdin(&in, &len);
	int err = cni_env_read(&c.env, &c.err);
	if (!err && c.env.cmd == CNI_CMD_VERSION) {
		c.out = cni_version_json();
		goto done;
	}
	if (err) {
		/* Only to learn the config's version for the error object. */
		struct cni_error ignored;
		cni_conf_parse(in, len, CNI_CMD_NONE, &c.conf, &ignored);
		goto done;
	}
	if (rd) {
		err = cni_fail(&c.err, CNI_ERR_IO, "reading stdin: %s", strerror(-rd));
		goto done;
	}
	err = cni_conf_parse(in, len, c.env.cmd, &c.conf, &c.err);
	if (err)
		goto done;
	switch (c.env.cmd) {
	case CNI_CMD_ADD:
		err = cmd_add(&c);
		break;
	case CNI_CMD_DEL:
		err = cmd_del(&c);
		break;
	case CNI_CMD_CHECK:
		err = cmd_check(&c);
		break;
	case CNI_CMD_STATUS:
		err = cmd_status(&c);
		break;
	case CNI_CMD_GC:
		err = cmd_gc(&c);
		break;
	default:
		err = cni_fail(&c.err, CNI_ERR_ENV, "unknown CNI_COMMAND: %s", c.env.command);
	}
done:
	if (err) {
		char *j = cni_error_json(&c.err, error_version(&c));
		printf("%s\n", j);
		free(j);
		log_debug("cni", "%s failed: %d %s", c.env.command ? c.env.command : "?",
			  c.err.code, c.err.msg);
	} else if (c.out) {
		printf("%s\n", c.out);
	}
	fflush(stdout);
	free(c.out);
	free(in);
	cni_conf_free(&c.conf);
	return err ? 1 : 0;
}
