/* Unit tests for cni/spec (and the kernel-free helpers of cni/wire): environment checks,
 * network configuration and version parsing with their CNI error codes, node.json, and the
 * result / error / VERSION JSON of each supported spec version. */
/* cmocka.h needs these first */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cni/spec.h"
#include "cni/wire.h"
#include "lib/util.h"

static int conf_code(const char *json, enum cni_cmd cmd)
{
	struct cni_conf c;
	struct cni_error e = {0};
	int err = cni_conf_parse(json, strlen(json), cmd, &c, &e);
	cni_conf_free(&c);
	return err ? e.code : 0;
}

static void test_versions(void **state)
{
	(void)state;
	assert_int_equal(cni_version_parse("0.4.0"), CNI_V040);
	assert_int_equal(cni_version_parse("1.0.0"), CNI_V100);
	assert_int_equal(cni_version_parse("1.1.0"), CNI_V110);
	const char *bad[] = {"0.1.0", "0.2.0", "0.3.0", "0.3.1", "1.2.0", "", "1.0", "abc"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(cni_version_parse(bad[i]), CNI_V_NONE);
	assert_int_equal(cni_version_parse(NULL), CNI_V_NONE);
	assert_string_equal(cni_version_str(CNI_V040), "0.4.0");

	char *v = cni_version_json();
	assert_string_equal(v, "{\"cniVersion\":\"1.1.0\",\"supportedVersions\":"
			       "[\"0.4.0\",\"1.0.0\",\"1.1.0\"]}");
	free(v);
}

static void test_conf_errors(void **state)
{
	(void)state;
	assert_int_equal(conf_code("{", CNI_CMD_ADD), CNI_ERR_DECODE);
	assert_int_equal(conf_code("", CNI_CMD_ADD), CNI_ERR_DECODE);
	assert_int_equal(conf_code("[1]", CNI_CMD_ADD), CNI_ERR_DECODE);
	assert_int_equal(conf_code("{\"cniVersion\":\"1.0.0\",\"name\":\"n\"} x", CNI_CMD_ADD),
			 CNI_ERR_DECODE);
	assert_int_equal(conf_code("{\"cniVersion\":\"1.0.0\"}", CNI_CMD_ADD), CNI_ERR_CONFIG);
	assert_int_equal(conf_code("{\"cniVersion\":\"1.0.0\",\"name\":\"a/b\"}", CNI_CMD_ADD),
			 CNI_ERR_CONFIG);
	assert_int_equal(conf_code("{\"cniVersion\":\"0.3.1\",\"name\":\"n\"}", CNI_CMD_ADD),
			 CNI_ERR_INCOMPATIBLE);
	assert_int_equal(conf_code("{\"name\":\"n\"}", CNI_CMD_ADD), CNI_ERR_INCOMPATIBLE);
	assert_int_equal(conf_code("{\"cniVersion\":\"9.9.9\",\"name\":\"n\"}", CNI_CMD_DEL),
			 CNI_ERR_INCOMPATIBLE);
	assert_int_equal(
	    conf_code("{\"cniVersion\":\"1.1.0\",\"name\":\"n\",\"wiring\":\"ipvlan\"}",
		      CNI_CMD_ADD),
	    CNI_ERR_UNSUPPORTED);
	assert_int_equal(
	    conf_code("{\"cniVersion\":\"1.1.0\",\"name\":\"n\",\"mtu\":\"1500\"}", CNI_CMD_ADD),
	    CNI_ERR_CONFIG);
	assert_int_equal(
	    conf_code("{\"cniVersion\":\"1.1.0\",\"name\":\"n\",\"mtu\":10}", CNI_CMD_ADD),
	    CNI_ERR_CONFIG);
	assert_int_equal(conf_code("{\"cniVersion\":\"1.1.0\",\"name\":\"n\",\"stateDir\":\"rel\"}",
				   CNI_CMD_ADD),
			 CNI_ERR_CONFIG);
	assert_int_equal(conf_code("{\"cniVersion\":\"1.1.0\",\"name\":\"n\",\"bridge\":"
				   "\"waytoolongbridgename\"}",
				   CNI_CMD_ADD),
			 CNI_ERR_CONFIG);
	/* GC and STATUS are 1.1.0 operations; GC without the list would delete everything */
	assert_int_equal(conf_code("{\"cniVersion\":\"1.0.0\",\"name\":\"n\"}", CNI_CMD_GC),
			 CNI_ERR_INCOMPATIBLE);
	assert_int_equal(conf_code("{\"cniVersion\":\"1.1.0\",\"name\":\"n\"}", CNI_CMD_GC),
			 CNI_ERR_CONFIG);
	assert_int_equal(conf_code("{\"cniVersion\":\"1.1.0\",\"name\":\"n\","
				   "\"cni.dev/valid-attachments\":[{\"containerID\":1}]}",
				   CNI_CMD_GC),
			 CNI_ERR_CONFIG);
	assert_int_equal(conf_code("{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"prevResult\":"
				   "{\"ips\":[{\"address\":\"bad\"}]}}",
				   CNI_CMD_CHECK),
			 CNI_ERR_DECODE);
}

static void test_conf_ok(void **state)
{
	(void)state;
	const char *j =
	    "{\"cniVersion\":\"1.1.0\",\"name\":\"twill\",\"type\":\"twill\",\"stateDir\":\"/run/"
	    "x\","
	    "\"wiring\":\"bridge\",\"mtu\":1400,\"bridge\":\"br.0\",\"unknownKey\":{\"a\":1},"
	    "\"cni.dev/valid-attachments\":[{\"containerID\":\"c1\",\"ifname\":\"eth0\"}],"
	    "\"prevResult\":{\"cniVersion\":\"1.1.0\",\"interfaces\":[{\"name\":\"tw1\"},"
	    "{\"name\":\"eth0\",\"mac\":\"0a:0b:0c:0d:0e:0f\",\"sandbox\":\"/run/netns/p\"}],"
	    "\"ips\":[{\"address\":\"10.0.0.2/24\",\"gateway\":\"10.0.0.1\",\"interface\":1}],"
	    "\"routes\":[{\"dst\":\"0.0.0.0/0\",\"gw\":\"10.0.0.1\"}]}}\n";
	struct cni_conf c;
	struct cni_error e = {0};
	assert_int_equal(cni_conf_parse(j, strlen(j), CNI_CMD_GC, &c, &e), 0);
	assert_int_equal(c.version, CNI_V110);
	assert_string_equal(c.name, "twill");
	assert_string_equal(c.state_dir, "/run/x");
	assert_int_equal(c.wiring, CNI_WIRING_BRIDGE);
	assert_int_equal(c.mtu, 1400);
	assert_string_equal(c.bridge, "br.0");
	assert_true(c.has_valid);
	assert_true(cni_conf_attachment_valid(&c, "c1", "eth0"));
	assert_false(cni_conf_attachment_valid(&c, "c1", "eth1"));
	assert_false(cni_conf_attachment_valid(&c, "c2", "eth0"));
	assert_true(c.has_prev);
	assert_int_equal(c.prev.nifaces, 2);
	assert_int_equal(c.prev.ifaces[1].mac[5], 0x0f);
	assert_string_equal(c.prev.ifaces[1].sandbox, "/run/netns/p");
	assert_int_equal(c.prev.nips, 1);
	assert_int_equal(c.prev.ips[0].iface, 1);
	assert_int_equal(c.prev.ips[0].address.len, 24);
	assert_int_equal(c.prev.nroutes, 1);
	cni_conf_free(&c);

	/* defaults */
	j = "{\"cniVersion\":\"0.4.0\",\"name\":\"n\"}";
	assert_int_equal(cni_conf_parse(j, strlen(j), CNI_CMD_ADD, &c, &e), 0);
	assert_string_equal(c.state_dir, "/run/twill");
	assert_int_equal(c.wiring, CNI_WIRING_UNSET);
	cni_conf_free(&c);
}

static void test_env(void **state)
{
	(void)state;
	struct cni_env env;
	struct cni_error e;
	unsetenv("CNI_COMMAND");
	unsetenv("CNI_CONTAINERID");
	unsetenv("CNI_NETNS");
	unsetenv("CNI_IFNAME");
	assert_int_equal(cni_env_read(&env, &e), -EINVAL);
	assert_int_equal(e.code, CNI_ERR_ENV);

	setenv("CNI_COMMAND", "ADD", 1);
	assert_int_equal(cni_env_read(&env, &e), -EINVAL);
	assert_int_equal(e.code, CNI_ERR_ENV);
	assert_string_equal(
	    e.msg, "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME] missing");
	setenv("CNI_CONTAINERID", "abc_1.2-3", 1);
	setenv("CNI_IFNAME", "eth0", 1);
	assert_int_equal(cni_env_read(&env, &e), -EINVAL);
	assert_string_equal(e.msg, "required env variables [CNI_NETNS] missing");
	setenv("CNI_NETNS", "/run/netns/x", 1);
	assert_int_equal(cni_env_read(&env, &e), 0);
	assert_int_equal(env.cmd, CNI_CMD_ADD);

	/* DEL does not need the netns; GC, STATUS and VERSION need no attachment at all */
	unsetenv("CNI_NETNS");
	setenv("CNI_COMMAND", "DEL", 1);
	assert_int_equal(cni_env_read(&env, &e), 0);
	unsetenv("CNI_CONTAINERID");
	setenv("CNI_COMMAND", "GC", 1);
	assert_int_equal(cni_env_read(&env, &e), 0);
	setenv("CNI_COMMAND", "VERSION", 1);
	assert_int_equal(cni_env_read(&env, &e), 0);

	setenv("CNI_COMMAND", "DEL", 1);
	setenv("CNI_CONTAINERID", "-bad", 1);
	assert_int_equal(cni_env_read(&env, &e), -EINVAL);
	assert_int_equal(e.code, CNI_ERR_ENV);
	setenv("CNI_CONTAINERID", "good", 1);
	setenv("CNI_IFNAME", "a/b", 1);
	assert_int_equal(cni_env_read(&env, &e), -EINVAL);
	assert_int_equal(e.code, CNI_ERR_ENV);
	setenv("CNI_IFNAME", "0123456789abcdef", 1);
	assert_int_equal(cni_env_read(&env, &e), -EINVAL);
	setenv("CNI_COMMAND", "FROB", 1);
	assert_int_equal(cni_env_read(&env, &e), -EINVAL);
	assert_int_equal(e.code, CNI_ERR_ENV);
	unsetenv("CNI_COMMAND");
	unsetenv("CNI_CONTAINERID");
	unsetenv("CNI_IFNAME");
}

static struct cni_result sample_result(void)
{
	struct cni_result r = {0};
	str_copy(r.ifaces[0].name, IFNAMSIZ, "tw0123456789ab");
	memset(r.ifaces[0].mac, 0xee, 6);
	r.ifaces[0].has_mac = true;
	r.ifaces[0].mtu = 1450;
	str_copy(r.ifaces[1].name, IFNAMSIZ, "eth0");
	cni_mac_parse("02:00:00:00:00:01", r.ifaces[1].mac);
	r.ifaces[1].has_mac = true;
	r.ifaces[1].mtu = 1450;
	str_copy(r.ifaces[1].sandbox, sizeof(r.ifaces[1].sandbox), "/run/netns/pod1");
	r.nifaces = 2;
	prefix_parse("10.250.0.2/32", &r.ips[0].address);
	ip_parse("169.254.1.1", &r.ips[0].gateway);
	r.ips[0].iface = 1;
	prefix_parse("fd00::2/128", &r.ips[1].address);
	ip_parse("fe80::ecee:eeff:feee:eeee", &r.ips[1].gateway);
	r.ips[1].iface = 1;
	r.nips = 2;
	prefix_parse("0.0.0.0/0", &r.routes[0].dst);
	ip_parse("169.254.1.1", &r.routes[0].gw);
	r.nroutes = 1;
	return r;
}

static void test_result_json(void **state)
{
	(void)state;
	struct cni_result r = sample_result();
	char *s = cni_result_json(&r, CNI_V100);
	assert_string_equal(
	    s, "{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"tw0123456789ab\",\"mac\":"
	       "\"ee:ee:ee:ee:ee:ee\"},{\"name\":\"eth0\",\"mac\":\"02:00:00:00:00:01\","
	       "\"sandbox\":\"/run/netns/pod1\"}],\"ips\":[{\"interface\":1,\"address\":"
	       "\"10.250.0.2/32\",\"gateway\":\"169.254.1.1\"},{\"interface\":1,\"address\":"
	       "\"fd00::2/128\",\"gateway\":\"fe80::ecee:eeff:feee:eeee\"}],\"routes\":[{\"dst\":"
	       "\"0.0.0.0/0\",\"gw\":\"169.254.1.1\"}],\"dns\":{}}");
	free(s);

	/* 0.4.0: ips carry "version"; no interface mtu */
	s = cni_result_json(&r, CNI_V040);
	struct json_object *o = json_tokener_parse(s), *ips, *ip, *v, *ifs;
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "ips", &ips));
	ip = json_object_array_get_idx(ips, 0);
	assert_true(json_object_object_get_ex(ip, "version", &v));
	assert_string_equal(json_object_get_string(v), "4");
	assert_true(json_object_object_get_ex(json_object_array_get_idx(ips, 1), "version", &v));
	assert_string_equal(json_object_get_string(v), "6");
	assert_true(json_object_object_get_ex(o, "interfaces", &ifs));
	assert_false(json_object_object_get_ex(json_object_array_get_idx(ifs, 0), "mtu", &v));
	json_object_put(o);
	free(s);

	/* 1.1.0: interfaces carry mtu; no "version" */
	s = cni_result_json(&r, CNI_V110);
	o = json_tokener_parse(s);
	assert_true(json_object_object_get_ex(o, "cniVersion", &v));
	assert_string_equal(json_object_get_string(v), "1.1.0");
	assert_true(json_object_object_get_ex(o, "interfaces", &ifs));
	assert_true(json_object_object_get_ex(json_object_array_get_idx(ifs, 1), "mtu", &v));
	assert_int_equal(json_object_get_int(v), 1450);
	assert_true(json_object_object_get_ex(o, "ips", &ips));
	assert_false(json_object_object_get_ex(json_object_array_get_idx(ips, 0), "version", &v));

	/* what we write, we read back (CHECK's prevResult) */
	struct cni_result back;
	assert_int_equal(cni_result_parse(o, &back), 0);
	assert_int_equal(back.nifaces, 2);
	assert_int_equal(back.nips, 2);
	assert_true(prefix_eq(&back.ips[1].address, &r.ips[1].address));
	assert_true(ip_eq(&back.routes[0].gw, &r.routes[0].gw));
	assert_memory_equal(back.ifaces[1].mac, r.ifaces[1].mac, 6);
	json_object_put(o);
	free(s);
}

static void test_error_json(void **state)
{
	(void)state;
	struct cni_error e;
	assert_int_equal(cni_fail(&e, CNI_ERR_ENV, "missing %s", "CNI_NETNS"), -EINVAL);
	char *s = cni_error_json(&e, "1.0.0");
	assert_string_equal(s, "{\"cniVersion\":\"1.0.0\",\"code\":4,\"msg\":\"missing CNI_NETNS\","
			       "\"details\":\"\"}");
	free(s);
	s = cni_error_json(&e, NULL);
	assert_non_null(strstr(s, "\"cniVersion\":\"1.1.0\""));
	free(s);
}

static void test_node_json(void **state)
{
	(void)state;
	struct cni_node n;
	assert_int_equal(
	    cni_node_parse("{\"node\":\"ctr\",\"podCIDRs\":[\"172.20.0.5/24\","
			   "\"fd00:20::/64\",\"10.9.0.0/24\"],\"mtu\":1450,"
			   "\"wiring\":\"bridge\",\"bridge\":\"cni0\",\"routing\":\"vxlan\"}",
			   &n),
	    0);
	char buf[IP_STRLEN];
	assert_string_equal(n.node, "ctr");
	assert_int_equal(n.ncidrs, 2); /* one per family */
	assert_string_equal(prefix_fmt(&n.cidrs[0], buf), "172.20.0.0/24");
	assert_string_equal(prefix_fmt(&n.cidrs[1], buf), "fd00:20::/64");
	assert_int_equal(n.mtu, 1450);
	assert_int_equal(n.wiring, CNI_WIRING_BRIDGE);

	struct cni_conf c = {.wiring = CNI_WIRING_ROUTED, .mtu = 1400};
	cni_node_apply_conf(&n, &c);
	assert_int_equal(n.wiring, CNI_WIRING_ROUTED);
	assert_int_equal(n.mtu, 1400);
	assert_string_equal(n.bridge, "cni0");

	assert_int_equal(cni_node_parse("{}", &n), 0);
	assert_int_equal(n.ncidrs, 0);
	struct cni_conf none = {0};
	cni_node_apply_conf(&n, &none);
	assert_int_equal(n.wiring, CNI_WIRING_ROUTED);
	assert_int_equal(n.mtu, 1500);
	assert_int_equal(cni_node_parse("{\"podCIDRs\":[\"nope\"]}", &n), -EINVAL);
	assert_int_equal(cni_node_parse("{\"wiring\":\"x\"}", &n), -EINVAL);
	assert_int_equal(cni_node_parse("not json", &n), -EINVAL);
}

static void test_veth_name(void **state)
{
	(void)state;
	char a[IFNAMSIZ], b[IFNAMSIZ], c[IFNAMSIZ];
	wire_veth_name("0123456789abcdef", "eth0", a);
	wire_veth_name("0123456789abcdef", "eth0", b);
	wire_veth_name("0123456789abcdef", "eth1", c);
	assert_string_equal(a, b);
	assert_string_not_equal(a, c);
	assert_int_equal(strlen(a), 14);
	assert_memory_equal(a, "tw", 2);
	for (int i = 2; i < 14; i++)
		assert_non_null(strchr("0123456789abcdef", a[i]));

	struct wire_spec w = {.wiring = CNI_WIRING_BRIDGE, .n = 1};
	prefix_parse("10.250.0.0/24", &w.cidr[0]);
	struct ipaddr gw;
	wire_gateway(&w, 0, &gw);
	assert_string_equal(ip_fmt(&gw, a), "10.250.0.1");
	w.wiring = CNI_WIRING_ROUTED;
	wire_gateway(&w, 0, &gw);
	assert_string_equal(ip_fmt(&gw, a), "169.254.1.1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_versions),	cmocka_unit_test(test_conf_errors),
	    cmocka_unit_test(test_conf_ok),	cmocka_unit_test(test_env),
	    cmocka_unit_test(test_result_json), cmocka_unit_test(test_error_json),
	    cmocka_unit_test(test_node_json),	cmocka_unit_test(test_veth_name),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
