/* spec: the parts of the CNI protocol that need no kernel (CNI spec 1.1.0, and the 0.4.0
 * and 1.0.0 result formats): environment, network configuration, the agent's node.json,
 * result, VERSION and error JSON.  Everything read here is hostile input from a runtime
 * or a file and is validated before use. */
#pragma once
#include <linux/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/ip.h"

struct json_object;

/* Error codes of the CNI spec (§Error); 100 and up are twill's own. */
enum cni_errcode {
	CNI_ERR_INCOMPATIBLE = 1,   /* incompatible CNI version */
	CNI_ERR_UNSUPPORTED = 2,    /* unsupported field in network configuration */
	CNI_ERR_NO_CONTAINER = 3,   /* container unknown or does not exist */
	CNI_ERR_ENV = 4,	    /* invalid necessary environment variables */
	CNI_ERR_IO = 5,		    /* I/O failure */
	CNI_ERR_DECODE = 6,	    /* failed to decode content */
	CNI_ERR_CONFIG = 7,	    /* invalid network config */
	CNI_ERR_TRY_AGAIN = 11,	    /* try again later */
	CNI_ERR_NOT_AVAILABLE = 50, /* STATUS: plugin not available */
	CNI_ERR_LIMITED = 51,	    /* STATUS: not available, existing pods may be affected */
	CNI_ERR_NO_ADDRESS = 100,   /* twill: the node's podCIDR has no free address */
	CNI_ERR_CHECK = 101,	    /* twill: CHECK found the attachment not as ADD left it */
	CNI_ERR_INTERNAL = 999,	    /* kernel or other failure (as the reference plugins use) */
};

enum cni_cmd {
	CNI_CMD_NONE,
	CNI_CMD_ADD,
	CNI_CMD_DEL,
	CNI_CMD_CHECK,
	CNI_CMD_VERSION,
	CNI_CMD_STATUS,
	CNI_CMD_GC
};
enum cni_version { CNI_V_NONE, CNI_V040, CNI_V100, CNI_V110 };
enum cni_wiring { CNI_WIRING_UNSET, CNI_WIRING_ROUTED, CNI_WIRING_BRIDGE };

#define CNI_VERSION_LATEST "1.1.0"
#define CNI_MAX_CIDRS 2 /* one IPv4 and one IPv6 podCIDR (dual-stack) */

struct cni_error {
	int code;
	char msg[256];
	char details[512];
};
/* Fill e (code, printf-style msg, no details); returns -EINVAL for `return cni_fail(...)`. */
int cni_fail(struct cni_error *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

struct cni_env {
	enum cni_cmd cmd;
	const char *command, *container_id, *netns, *ifname, *args, *path;
};
/* Read CNI_* from the environment and check what `cmd` requires (spec §Parameters and
 * CONVENTIONS' character sets).  0, or -EINVAL with e filled (code 4, or 3 for an empty
 * container id the way libcni reports it). */
int cni_env_read(struct cni_env *env, struct cni_error *e);
enum cni_cmd cni_cmd_parse(const char *s);
bool cni_ifname_valid(const char *s);
bool cni_container_id_valid(const char *s);
bool cni_network_name_valid(const char *s);

enum cni_version cni_version_parse(const char *s); /* CNI_V_NONE when unsupported */
const char *cni_version_str(enum cni_version v);

struct cni_attachment {
	char *container_id;
	char *ifname;
};

struct cni_iface {
	char name[IFNAMSIZ];
	uint8_t mac[6];
	bool has_mac;
	unsigned mtu;	   /* 0 = not reported */
	char sandbox[256]; /* netns path; "" for interfaces of the node */
};
struct cni_ip {
	struct ipprefix address; /* address with the prefix length configured */
	struct ipaddr gateway;	 /* family 0 = none */
	int iface;		 /* index into interfaces, -1 = none */
};
struct cni_route {
	struct ipprefix dst;
	struct ipaddr gw; /* family 0 = none */
};
#define CNI_MAX_IFACES 4
#define CNI_MAX_IPS 4
#define CNI_MAX_ROUTES 8
struct cni_result {
	struct cni_iface ifaces[CNI_MAX_IFACES];
	int nifaces;
	struct cni_ip ips[CNI_MAX_IPS];
	int nips;
	struct cni_route routes[CNI_MAX_ROUTES];
	int nroutes;
};

/* The network configuration a runtime passes on stdin (spec §Network configuration and
 * §Section 3: runtime-inserted keys prevResult and cni.dev/valid-attachments). */
struct cni_conf {
	enum cni_version version;
	char version_str[32];
	char *name;
	char *type;
	char *state_dir;
	enum cni_wiring wiring; /* UNSET = from node.json */
	unsigned mtu;		/* 0 = from node.json */
	char bridge[IFNAMSIZ];	/* "" = from node.json */
	bool has_prev;
	struct cni_result prev;
	bool has_valid;
	struct cni_attachment *valid;
	size_t nvalid;
};
/* Parse and validate.  0, or -EINVAL with e filled: 6 undecodable, 1 version, 7 invalid,
 * 2 unsupported value.  The config's version is known in conf->version_str even on error
 * (for the error's cniVersion). */
int cni_conf_parse(const char *data, size_t len, enum cni_cmd cmd, struct cni_conf *conf,
		   struct cni_error *e);
void cni_conf_free(struct cni_conf *conf);
bool cni_conf_attachment_valid(const struct cni_conf *conf, const char *container_id,
			       const char *ifname);

/* <stateDir>/node.json, written by the agent: what this node's pods get. */
struct cni_node {
	char node[64];
	struct ipprefix cidrs[CNI_MAX_CIDRS]; /* normalized; at most one per family */
	int ncidrs;
	unsigned mtu;
	enum cni_wiring wiring;
	char bridge[IFNAMSIZ];
};
int cni_node_parse(const char *json, struct cni_node *n);     /* 0 or -EINVAL */
int cni_node_load(const char *state_dir, struct cni_node *n); /* 0, -ENOENT, -EINVAL */
/* Apply the configuration's overrides and defaults (routed, cni0, 1500). */
void cni_node_apply_conf(struct cni_node *n, const struct cni_conf *conf);
enum cni_wiring cni_wiring_parse(const char *s);

/* JSON writers; the strings are malloc'd.  Results follow the version's schema: 0.4.0 has
 * ips[].version, 1.1.0 adds interfaces[].mtu. */
char *cni_result_json(const struct cni_result *r, enum cni_version v);
char *cni_error_json(const struct cni_error *e, const char *version);
char *cni_version_json(void);
/* Parse a result object (prevResult); 0 or -EINVAL. */
int cni_result_parse(struct json_object *o, struct cni_result *r);

int cni_mac_parse(const char *s, uint8_t mac[6]); /* 0 or -EINVAL */
void cni_mac_fmt(const uint8_t mac[6], char buf[18]);
