/* spec: CNI protocol handling without the kernel.
 *
 * Implements, from the CNI specification 1.1.0 (containernetworking/cni SPEC.md):
 *  - §Parameters: CNI_* environment variables, which operation needs which, and the
 *    character sets of container ids, interface names and network names (CONVENTIONS and
 *    libcni's validators), so errors match what a Go plugin built on skel reports;
 *  - §Network configuration: the keys twill reads, the runtime-inserted prevResult and
 *    cni.dev/valid-attachments; unknown keys are ignored (passed through);
 *  - §Result types: ADD success results in the 0.4.0, 1.0.0 and 1.1.0 schemas, VERSION
 *    and error results.
 * The order of checks follows the reference skel: environment, stdin decoding, network
 * name, then version, so a runtime sees the same error code from twill as from bridge. */
#include "cni/spec.h"

#include <ctype.h>
#include <errno.h>
#include <json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/consts.h"
#include "lib/util.h"

static const char *const supported_versions[] = {"0.4.0", "1.0.0", "1.1.0"};

int cni_fail(struct cni_error *e, int code, const char *fmt, ...)
{
	va_list ap;
	e->code = code;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	e->details[0] = 0;
	return -EINVAL;
}

enum cni_cmd cni_cmd_parse(const char *s)
{
	static const struct {
		const char *name;
		enum cni_cmd cmd;
	} cmds[] = {
	    {"ADD", CNI_CMD_ADD},	  {"DEL", CNI_CMD_DEL},	      {"CHECK", CNI_CMD_CHECK},
	    {"VERSION", CNI_CMD_VERSION}, {"STATUS", CNI_CMD_STATUS}, {"GC", CNI_CMD_GC},
	};
	for (size_t i = 0; s && i < ARRAY_SIZE(cmds); i++)
		if (!strcmp(s, cmds[i].name))
			return cmds[i].cmd;
	return CNI_CMD_NONE;
}

static bool id_chars_valid(const char *s)
{
	if (!s || !isalnum((unsigned char)s[0]))
		return false;
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '-')
			return false;
	return true;
}

bool cni_container_id_valid(const char *s)
{
	return id_chars_valid(s);
}

bool cni_network_name_valid(const char *s)
{
	return id_chars_valid(s);
}

bool cni_ifname_valid(const char *s)
{
	if (!s || !*s || strlen(s) >= IFNAMSIZ || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (const char *p = s; *p; p++)
		if (*p == '/' || *p == ':' || isspace((unsigned char)*p))
			return false;
	return true;
}

static const char *env_nonempty(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

int cni_env_read(struct cni_env *env, struct cni_error *e)
{
	memset(env, 0, sizeof(*env));
	env->command = env_nonempty("CNI_COMMAND");
	env->container_id = env_nonempty("CNI_CONTAINERID");
	env->netns = env_nonempty("CNI_NETNS");
	env->ifname = env_nonempty("CNI_IFNAME");
	env->args = env_nonempty("CNI_ARGS");
	env->path = env_nonempty("CNI_PATH");
	if (!env->command)
		return cni_fail(e, CNI_ERR_ENV, "required env variables [CNI_COMMAND] missing");
	env->cmd = cni_cmd_parse(env->command);
	if (env->cmd == CNI_CMD_NONE)
		return cni_fail(e, CNI_ERR_ENV, "unknown CNI_COMMAND: %s", env->command);

	bool attach =
	    env->cmd == CNI_CMD_ADD || env->cmd == CNI_CMD_DEL || env->cmd == CNI_CMD_CHECK;
	bool need_netns = env->cmd == CNI_CMD_ADD || env->cmd == CNI_CMD_CHECK;
	char missing[128] = "";
	if (attach && !env->container_id)
		strcat(missing, ",CNI_CONTAINERID");
	if (need_netns && !env->netns)
		strcat(missing, ",CNI_NETNS");
	if (attach && !env->ifname)
		strcat(missing, ",CNI_IFNAME");
	if (missing[0])
		return cni_fail(e, CNI_ERR_ENV, "required env variables [%s] missing", missing + 1);
	if (attach && !cni_container_id_valid(env->container_id)) {
		cni_fail(e, CNI_ERR_ENV, "invalid characters in containerID");
		snprintf(e->details, sizeof(e->details), "%s", env->container_id);
		return -EINVAL;
	}
	if (attach && !cni_ifname_valid(env->ifname))
		return cni_fail(e, CNI_ERR_ENV, "invalid CNI_IFNAME \"%.64s\"", env->ifname);
	return 0;
}

enum cni_version cni_version_parse(const char *s)
{
	for (size_t i = 0; s && i < ARRAY_SIZE(supported_versions); i++)
		if (!strcmp(s, supported_versions[i]))
			return (enum cni_version)(CNI_V040 + i);
	return CNI_V_NONE;
}

const char *cni_version_str(enum cni_version v)
{
	if (v < CNI_V040 || v > CNI_V110)
		return CNI_VERSION_LATEST;
	return supported_versions[v - CNI_V040];
}

enum cni_wiring cni_wiring_parse(const char *s)
{
	if (s && !strcmp(s, "routed"))
		return CNI_WIRING_ROUTED;
	if (s && !strcmp(s, "bridge"))
		return CNI_WIRING_BRIDGE;
	return CNI_WIRING_UNSET;
}

int cni_mac_parse(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;
	if (!s || sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
			 &tail) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	return 0;
}

void cni_mac_fmt(const uint8_t mac[6], char buf[18])
{
	snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
		 mac[5]);
}

/* ---- results ---- */

static struct json_object *jstr(const char *s)
{
	return json_object_new_string(s);
}

static const char *jget_str(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static char *json_dump(struct json_object *o)
{
	char *s = xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
								JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return s;
}

char *cni_result_json(const struct cni_result *r, enum cni_version v)
{
	char buf[IP_STRLEN];
	struct json_object *root = json_object_new_object();
	json_object_object_add(root, "cniVersion", jstr(cni_version_str(v)));

	struct json_object *ifs = json_object_new_array();
	for (int i = 0; i < r->nifaces; i++) {
		const struct cni_iface *f = &r->ifaces[i];
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "name", jstr(f->name));
		if (f->has_mac) {
			char mac[18];
			cni_mac_fmt(f->mac, mac);
			json_object_object_add(o, "mac", jstr(mac));
		}
		if (v >= CNI_V110 && f->mtu)
			json_object_object_add(o, "mtu", json_object_new_int((int)f->mtu));
		if (f->sandbox[0])
			json_object_object_add(o, "sandbox", jstr(f->sandbox));
		json_object_array_add(ifs, o);
	}
	json_object_object_add(root, "interfaces", ifs);

	struct json_object *ips = json_object_new_array();
	for (int i = 0; i < r->nips; i++) {
		const struct cni_ip *ip = &r->ips[i];
		struct json_object *o = json_object_new_object();
		if (v == CNI_V040)
			json_object_object_add(
			    o, "version", jstr(ip->address.addr.family == AF_INET6 ? "6" : "4"));
		if (ip->iface >= 0)
			json_object_object_add(o, "interface", json_object_new_int(ip->iface));
		json_object_object_add(o, "address", jstr(prefix_fmt(&ip->address, buf)));
		if (ip_is_set(&ip->gateway))
			json_object_object_add(o, "gateway", jstr(ip_fmt(&ip->gateway, buf)));
		json_object_array_add(ips, o);
	}
	json_object_object_add(root, "ips", ips);

	struct json_object *routes = json_object_new_array();
	for (int i = 0; i < r->nroutes; i++) {
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "dst", jstr(prefix_fmt(&r->routes[i].dst, buf)));
		if (ip_is_set(&r->routes[i].gw))
			json_object_object_add(o, "gw", jstr(ip_fmt(&r->routes[i].gw, buf)));
		json_object_array_add(routes, o);
	}
	json_object_object_add(root, "routes", routes);
	json_object_object_add(root, "dns", json_object_new_object());
	return json_dump(root);
}

int cni_result_parse(struct json_object *o, struct cni_result *r)
{
	memset(r, 0, sizeof(*r));
	if (!json_object_is_type(o, json_type_object))
		return -EINVAL;
	struct json_object *a;
	if (json_object_object_get_ex(o, "interfaces", &a)) {
		if (!json_object_is_type(a, json_type_array))
			return -EINVAL;
		size_t n = json_object_array_length(a);
		for (size_t i = 0; i < n && r->nifaces < CNI_MAX_IFACES; i++) {
			struct json_object *f = json_object_array_get_idx(a, i);
			struct cni_iface *x = &r->ifaces[r->nifaces++];
			const char *name = jget_str(f, "name"), *mac = jget_str(f, "mac"),
				   *sb = jget_str(f, "sandbox");
			if (!name || str_copy(x->name, sizeof(x->name), name))
				return -EINVAL;
			if (mac && *mac) {
				if (cni_mac_parse(mac, x->mac))
					return -EINVAL;
				x->has_mac = true;
			}
			if (sb && str_copy(x->sandbox, sizeof(x->sandbox), sb))
				return -EINVAL;
		}
	}
	if (json_object_object_get_ex(o, "ips", &a)) {
		if (!json_object_is_type(a, json_type_array))
			return -EINVAL;
		size_t n = json_object_array_length(a);
		for (size_t i = 0; i < n && r->nips < CNI_MAX_IPS; i++) {
			struct json_object *p = json_object_array_get_idx(a, i), *idx;
			struct cni_ip *x = &r->ips[r->nips++];
			const char *gw = jget_str(p, "gateway");
			if (prefix_parse(jget_str(p, "address"), &x->address))
				return -EINVAL;
			if (gw && ip_parse(gw, &x->gateway))
				return -EINVAL;
			x->iface = -1;
			if (json_object_object_get_ex(p, "interface", &idx)) {
				if (!json_object_is_type(idx, json_type_int))
					return -EINVAL;
				x->iface = json_object_get_int(idx);
				if (x->iface < 0 || x->iface >= r->nifaces)
					return -EINVAL;
			}
		}
	}
	if (json_object_object_get_ex(o, "routes", &a)) {
		if (!json_object_is_type(a, json_type_array))
			return -EINVAL;
		size_t n = json_object_array_length(a);
		for (size_t i = 0; i < n && r->nroutes < CNI_MAX_ROUTES; i++) {
			struct json_object *p = json_object_array_get_idx(a, i);
			struct cni_route *x = &r->routes[r->nroutes++];
			const char *gw = jget_str(p, "gw");
			if (prefix_parse(jget_str(p, "dst"), &x->dst))
				return -EINVAL;
			if (gw && ip_parse(gw, &x->gw))
				return -EINVAL;
		}
	}
	return 0;
}

char *cni_error_json(const struct cni_error *e, const char *version)
{
	struct json_object *root = json_object_new_object();
	json_object_object_add(root, "cniVersion", jstr(version ? version : CNI_VERSION_LATEST));
	json_object_object_add(root, "code", json_object_new_int(e->code));
	json_object_object_add(root, "msg", jstr(e->msg));
	json_object_object_add(root, "details", jstr(e->details));
	return json_dump(root);
}

char *cni_version_json(void)
{
	struct json_object *root = json_object_new_object(), *a = json_object_new_array();
	json_object_object_add(root, "cniVersion", jstr(CNI_VERSION_LATEST));
	for (size_t i = 0; i < ARRAY_SIZE(supported_versions); i++)
		json_object_array_add(a, jstr(supported_versions[i]));
	json_object_object_add(root, "supportedVersions", a);
	return json_dump(root);
}

/* ---- network configuration ---- */

static int parse_attachments(struct json_object *a, struct cni_conf *conf, struct cni_error *e)
{
	if (!json_object_is_type(a, json_type_array))
		return cni_fail(e, CNI_ERR_CONFIG, "cni.dev/valid-attachments must be an array");
	size_t n = json_object_array_length(a);
	conf->valid = xcalloc(n ? n : 1, sizeof(*conf->valid));
	for (size_t i = 0; i < n; i++) {
		struct json_object *o = json_object_array_get_idx(a, i);
		const char *cid = jget_str(o, "containerID"), *ifn = jget_str(o, "ifname");
		if (!cid || !ifn)
			return cni_fail(
			    e, CNI_ERR_CONFIG,
			    "cni.dev/valid-attachments[%zu] needs containerID and ifname", i);
		conf->valid[conf->nvalid].container_id = xstrdup(cid);
		conf->valid[conf->nvalid].ifname = xstrdup(ifn);
		conf->nvalid++;
	}
	conf->has_valid = true;
	return 0;
}

static int parse_conf_obj(struct json_object *root, enum cni_cmd cmd, struct cni_conf *conf,
			  struct cni_error *e)
{
	struct json_object *v;
	const char *ver = jget_str(root, "cniVersion");
	/* Before any other check, so even a config error reports the config's version. */
	if (ver)
		str_copy(conf->version_str, sizeof(conf->version_str), ver);

	const char *name = jget_str(root, "name");
	if (!name || !*name)
		return cni_fail(e, CNI_ERR_CONFIG, "missing network name");
	if (!cni_network_name_valid(name))
		return cni_fail(e, CNI_ERR_CONFIG, "invalid characters found in network name");
	conf->name = xstrdup(name);

	conf->version = cni_version_parse(ver);
	if (conf->version == CNI_V_NONE) {
		cni_fail(e, CNI_ERR_INCOMPATIBLE, "incompatible CNI versions");
		snprintf(e->details, sizeof(e->details),
			 "config is \"%.32s\", plugin supports [\"0.4.0\" \"1.0.0\" \"1.1.0\"]",
			 ver ? ver : "");
		return -EINVAL;
	}
	if ((cmd == CNI_CMD_GC || cmd == CNI_CMD_STATUS) && conf->version < CNI_V110)
		return cni_fail(e, CNI_ERR_INCOMPATIBLE,
				"%s requires cniVersion 1.1.0 or later, config has %s",
				cmd == CNI_CMD_GC ? "GC" : "STATUS", conf->version_str);

	conf->type = xstrdup(jget_str(root, "type"));
	const char *sd = NULL;
	if (json_object_object_get_ex(root, "stateDir", &v)) {
		sd = jget_str(root, "stateDir");
		if (!sd || !*sd || sd[0] != '/')
			return cni_fail(e, CNI_ERR_CONFIG, "stateDir must be an absolute path");
	}
	conf->state_dir = xstrdup(sd ? sd : TWILL_DEFAULT_STATE_DIR);

	if (json_object_object_get_ex(root, "wiring", &v)) {
		const char *w = jget_str(root, "wiring");
		conf->wiring = cni_wiring_parse(w);
		if (conf->wiring == CNI_WIRING_UNSET)
			return cni_fail(e, CNI_ERR_UNSUPPORTED,
					"unsupported field: wiring=\"%.64s\" (routed or bridge)",
					w ? w : json_object_to_json_string(v));
	}
	if (json_object_object_get_ex(root, "mtu", &v)) {
		int64_t m = json_object_get_int64(v);
		if (!json_object_is_type(v, json_type_int) || m < 68 || m > 65535)
			return cni_fail(e, CNI_ERR_CONFIG, "invalid mtu %s (68..65535)",
					json_object_to_json_string(v));
		conf->mtu = (unsigned)m;
	}
	if (json_object_object_get_ex(root, "bridge", &v)) {
		const char *b = jget_str(root, "bridge");
		if (!cni_ifname_valid(b))
			return cni_fail(e, CNI_ERR_CONFIG, "invalid bridge name");
		str_copy(conf->bridge, sizeof(conf->bridge), b);
	}
	if (json_object_object_get_ex(root, "prevResult", &v) &&
	    !json_object_is_type(v, json_type_null)) {
		if (cni_result_parse(v, &conf->prev))
			return cni_fail(e, CNI_ERR_DECODE, "failed to decode prevResult");
		conf->has_prev = true;
	}
	if (json_object_object_get_ex(root, "cni.dev/valid-attachments", &v)) {
		int err = parse_attachments(v, conf, e);
		if (err)
			return err;
	}
	/* An absent list would mean "nothing is valid": refuse rather than wipe the node. */
	if (cmd == CNI_CMD_GC && !conf->has_valid)
		return cni_fail(e, CNI_ERR_CONFIG, "GC needs cni.dev/valid-attachments");
	return 0;
}

int cni_conf_parse(const char *data, size_t len, enum cni_cmd cmd, struct cni_conf *conf,
		   struct cni_error *e)
{
	memset(conf, 0, sizeof(*conf));
	struct json_tokener *tok = json_tokener_new();
	struct json_object *root = json_tokener_parse_ex(tok, data, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	/* Anything but whitespace after the object is as undecodable as a broken object. */
	size_t off = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	while (root && off < len && isspace((unsigned char)data[off]))
		off++;
	if (!root || jerr != json_tokener_success || off != len ||
	    !json_object_is_type(root, json_type_object)) {
		json_object_put(root);
		return cni_fail(e, CNI_ERR_DECODE, "error unmarshalling network config: %s",
				root ? "not a JSON object" : json_tokener_error_desc(jerr));
	}
	int err = parse_conf_obj(root, cmd, conf, e);
	json_object_put(root);
	return err;
}

void cni_conf_free(struct cni_conf *conf)
{
	free(conf->name);
	free(conf->type);
	free(conf->state_dir);
	for (size_t i = 0; i < conf->nvalid; i++) {
		free(conf->valid[i].container_id);
		free(conf->valid[i].ifname);
	}
	free(conf->valid);
	memset(conf, 0, sizeof(*conf));
}

bool cni_conf_attachment_valid(const struct cni_conf *conf, const char *container_id,
			       const char *ifname)
{
	for (size_t i = 0; i < conf->nvalid; i++)
		if (!strcmp(conf->valid[i].container_id, container_id) &&
		    !strcmp(conf->valid[i].ifname, ifname))
			return true;
	return false;
}

/* ---- node.json ---- */

static int node_add_cidr(struct cni_node *n, const char *s)
{
	struct ipprefix p;
	if (prefix_parse(s, &p))
		return -EINVAL;
	prefix_normalize(&p);
	for (int i = 0; i < n->ncidrs; i++)
		if (n->cidrs[i].addr.family == p.addr.family)
			return 0; /* one range per family; the first wins */
	if (n->ncidrs >= CNI_MAX_CIDRS)
		return 0;
	n->cidrs[n->ncidrs++] = p;
	return 0;
}

int cni_node_parse(const char *json, struct cni_node *n)
{
	memset(n, 0, sizeof(*n));
	struct json_object *root = json_tokener_parse(json), *v;
	int err = -EINVAL;
	if (!root || !json_object_is_type(root, json_type_object))
		goto out;
	const char *s = jget_str(root, "node");
	if (s)
		str_copy(n->node, sizeof(n->node), s);
	if (json_object_object_get_ex(root, "podCIDRs", &v)) {
		if (!json_object_is_type(v, json_type_array))
			goto out;
		for (size_t i = 0; i < json_object_array_length(v); i++) {
			struct json_object *c = json_object_array_get_idx(v, i);
			if (!json_object_is_type(c, json_type_string) ||
			    node_add_cidr(n, json_object_get_string(c)))
				goto out;
		}
	}
	if ((s = jget_str(root, "podCIDR")) && node_add_cidr(n, s))
		goto out;
	if (json_object_object_get_ex(root, "mtu", &v)) {
		int64_t m = json_object_get_int64(v);
		if (!json_object_is_type(v, json_type_int) || m < 68 || m > 65535)
			goto out;
		n->mtu = (unsigned)m;
	}
	if ((s = jget_str(root, "wiring")) && !(n->wiring = cni_wiring_parse(s)))
		goto out;
	if ((s = jget_str(root, "bridge"))) {
		if (!cni_ifname_valid(s))
			goto out;
		str_copy(n->bridge, sizeof(n->bridge), s);
	}
	err = 0;
out:
	json_object_put(root);
	return err;
}

int cni_node_load(const char *state_dir, struct cni_node *n)
{
	char *path = xasprintf("%s/%s", state_dir, TWILL_NODE_STATE_FILE), *data;
	int err = file_read(path, &data, NULL);
	free(path);
	if (err) {
		memset(n, 0, sizeof(*n));
		return err;
	}
	err = cni_node_parse(data, n);
	free(data);
	return err;
}

void cni_node_apply_conf(struct cni_node *n, const struct cni_conf *conf)
{
	if (conf->wiring)
		n->wiring = conf->wiring;
	if (conf->mtu)
		n->mtu = conf->mtu;
	if (conf->bridge[0])
		str_copy(n->bridge, sizeof(n->bridge), conf->bridge);
	if (!n->wiring)
		n->wiring = CNI_WIRING_ROUTED;
	if (!n->mtu)
		n->mtu = 1500;
	if (!n->bridge[0])
		str_copy(n->bridge, sizeof(n->bridge), TWILL_BRIDGE_DEFAULT);
}
