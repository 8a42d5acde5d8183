/* ipvs_list: IPVS's own counters in `twill svc list` (see ipvs.h). */
#include <netinet/in.h>

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "model/model.h"
#include "proxy/ipvs.h"

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : "";
}

static int64_t jint(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

static json_object *stats_json(const struct ipvs_service *s)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "scheduler", json_object_new_string(s->sched));
	json_object_object_add(o, "flags", json_object_new_int64(s->flags));
	json_object_object_add(o, "persistent", json_object_new_boolean(s->flags & 1));
	json_object_object_add(o, "timeout", json_object_new_int64(s->timeout));
	const char *k[] = {"conns", "inpkts", "outpkts", "inbytes", "outbytes"};
	const uint64_t v[] = {s->stats.conns, s->stats.inpkts, s->stats.outpkts, s->stats.inbytes,
			      s->stats.outbytes};
	for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++)
		json_object_object_add(o, k[i], json_object_new_int64((int64_t)v[i]));
	return o;
}

static void annotate_backends(json_object *bs, const struct ipvs_service *s)
{
	for (size_t k = 0; bs && k < json_object_array_length(bs); k++) {
		json_object *b = json_object_array_get_idx(bs, k);
		struct ipvs_dest key = {.port = (uint16_t)jint(b, "port")};
		if (ip_parse(jstr(b, "ip"), &key.addr) < 0)
			continue;
		const struct ipvs_dest *d = NULL;
		const struct ipvs_dest_counters *c = NULL;
		for (size_t i = 0; i < s->ndests && !d; i++)
			if (!ipvs_dest_cmp(&s->dests[i], &key)) {
				d = &s->dests[i];
				c = s->ctrs ? &s->ctrs[i] : NULL;
			}
		json_object_object_add(b, "activeConn", json_object_new_int64(c ? c->active : 0));
		json_object_object_add(b, "inactiveConn",
				       json_object_new_int64(c ? c->inactive : 0));
		json_object_object_add(b, "inIpvs", json_object_new_boolean(d != NULL));
		if (d) {
			json_object_object_add(b, "weight", json_object_new_int64(d->weight));
			json_object_object_add(
			    b, "conns", json_object_new_int64(c ? (int64_t)c->stats.conns : 0));
		}
	}
}

int ipvs_annotate_listing(json_object *list)
{
	struct ipvs_conn c = {0};
	int r = ipvs_open(&c);
	struct ipvs_table t = {0};
	if (r == 0)
		r = ipvs_dump(&c, &t, true);
	ipvs_close(&c);
	if (r < 0) {
		fprintf(stderr, "twill svc: IPVS table not readable: %s\n", c.err);
		return r;
	}
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		json_object *e = json_object_array_get_idx(list, i), *bs = NULL;
		struct ipvs_service key = {.port = (uint16_t)jint(e, "port")};
		int p = proto_parse(jstr(e, "protocol"));
		key.proto = p == PROTO_UDP    ? IPPROTO_UDP
			    : p == PROTO_SCTP ? IPPROTO_SCTP
					      : IPPROTO_TCP;
		if (ip_parse(jstr(e, "address"), &key.addr) < 0)
			continue;
		const struct ipvs_service *s = ipvs_table_find(&t, &key);
		json_object_object_add(e, "ipvs", s ? stats_json(s) : NULL);
		if (!s)
			continue;
		json_object_object_add(e, "scheduler", json_object_new_string(s->sched));
		if (json_object_object_get_ex(e, "backends", &bs) &&
		    json_object_is_type(bs, json_type_array))
			annotate_backends(bs, s);
	}
	ipvs_table_free(&t);
	return 0;
}
