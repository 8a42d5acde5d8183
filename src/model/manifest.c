/* manifest: Kubernetes manifests (YAML via libyaml's event API, JSON via json-c) to typed
 * objects.
 *
 * Both syntaxes are first turned into one small generic tree (mapping / sequence / scalar,
 * each node with its line), allocated from a per-document arena; one typed decoder then
 * walks that tree.  Field meanings and defaults follow the Kubernetes API reference (core/v1,
 * discovery.k8s.io/v1, networking.k8s.io/v1) and MetalLB's metallb.io/v1beta1, including the
 * API server's defaulting (namespace "default", Service targetPort = port, ClientIP affinity
 * timeout 10800 s, NetworkPolicy policyTypes) and the validation a user would otherwise only
 * see from `kubectl apply`.
 *
 * YAML is read the way Kubernetes reads it (go-yaml, YAML 1.1 scalars): anchors, aliases and
 * `<<` merge keys work; a plain `null`, `~` or empty value is null; yes/no/on/off are booleans.
 * Limits keep hostile input cheap: nesting depth 64, 16 MiB per document, and alias expansion
 * bounded by a node budget (no "billion laughs"). */
#include "model/manifest.h"

#include <errno.h>
#include <json.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "lib/util.h"

#define MAX_DEPTH 64
#define MAX_DOC_BYTES (16u << 20)
#define MAX_FILE_BYTES (256u << 20)
#define MAX_ALIAS_WORK (1u << 20) /* nodes reachable through aliases and merges, per document */
#define MAX_ANCHORS 16384
#define MAX_ERRORS_PER_DOC 10
#define MAX_REPLICAS 1000

/* ------------------------------------------------------------------------------------------
 * arena: every tree node and string of one document; freed in one go */

struct chunk {
	struct chunk *next;
	size_t used, cap;
	char data[];
};
struct arena {
	struct chunk *head;
};

#define ARENA_CHUNK 65536

static void *arena_alloc(struct arena *a, size_t n)
{
	n = (n + 7) & ~(size_t)7;
	if (!a->head || a->head->cap - a->head->used < n) {
		size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
		struct chunk *c = xmalloc(sizeof(*c) + cap);
		c->used = 0;
		c->cap = cap;
		c->next = a->head;
		a->head = c;
	}
	void *p = a->head->data + a->head->used;
	a->head->used += n;
	return p;
}

static char *arena_strndup(struct arena *a, const char *s, size_t n)
{
	char *d = arena_alloc(a, n + 1);
	memcpy(d, s, n);
	d[n] = 0;
	return d;
}

static void arena_free(struct arena *a)
{
	while (a->head) {
		struct chunk *c = a->head;
		a->head = c->next;
		free(c);
	}
}

/* Empty, keeping one ordinary chunk for the next document: freeing a 64 KB block for every
 * document makes glibc consolidate its fast bins every time. */
static void arena_reset(struct arena *a)
{
	struct chunk *keep = NULL;
	while (a->head) {
		struct chunk *c = a->head;
		a->head = c->next;
		if (!keep && c->cap == ARENA_CHUNK)
			keep = c;
		else
			free(c);
	}
	if (keep) {
		keep->used = 0;
		keep->next = NULL;
		a->head = keep;
	}
}

/* ------------------------------------------------------------------------------------------
 * generic tree */

enum { T_NULL, T_STR, T_MAP, T_SEQ };

struct tn {
	uint8_t type;
	bool plain;    /* scalar written without quotes (YAML plain; JSON number, bool) */
	int line;      /* 1-based, 0 unknown */
	uint32_t size; /* nodes in this subtree, saturating */
	size_t n;      /* T_SEQ: items, T_MAP: pairs */
	union {
		const char *s; /* T_STR */
		struct tn **v; /* T_SEQ: items; T_MAP: v[2i] key, v[2i+1] value */
	};
};

static bool key_is(const struct tn *k, const char *key)
{
	return k->type == T_STR && k->s[0] == key[0] && !strcmp(k->s, key);
}

/* The value of `key` in map m; NULL when absent, null, or m is not a map.  The last
 * occurrence wins, as in JSON decoders (merged `<<` pairs are placed first, see below). */
static const struct tn *lookup(const struct tn *m, const char *key)
{
	if (!m || m->type != T_MAP)
		return NULL;
	for (size_t i = m->n; i-- > 0;)
		if (key_is(m->v[2 * i], key))
			return m->v[2 * i + 1]->type == T_NULL ? NULL : m->v[2 * i + 1];
	return NULL;
}

static uint32_t sat_add(uint32_t a, uint32_t b)
{
	return a > UINT32_MAX - b ? UINT32_MAX : a + b;
}

/* ------------------------------------------------------------------------------------------
 * decoder state and error reporting */

struct dec {
	const char *file;
	diag_fn fn;
	void *arg;
	struct objlist *out;
	int failed;  /* documents (objects) left out */
	int decoded; /* documents seen complete (good or bad) */
	/* per object */
	int nerr;
	int line;	/* of the object, for errors without a better place */
	char obj[320];	/* "Kind/ns/name" once known */
	char path[512]; /* field path of the node being decoded */
	size_t plen;
	const char *recent[4]; /* interned strings seen last (namespaces, node names, file) */
	unsigned nrecent;
	int end_line; /* YAML: the line breaks libyaml counted to the end of the stream */
};

/* str_intern() through a small cache: a file's objects repeat a few namespaces and node
 * names, and the cache spares the process-wide table (and its lock) most lookups. */
static const char *intern(struct dec *d, const char *s)
{
	if (!s)
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(d->recent); i++)
		if (d->recent[i] && !strcmp(d->recent[i], s))
			return d->recent[i];
	const char *r = str_intern(s);
	d->recent[d->nrecent++ % ARRAY_SIZE(d->recent)] = r;
	return r;
}

static void report(struct dec *d, int line, const char *field, const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (!d->fn)
		return;
	struct diag dg = {
	    .file = d->file,
	    .line = line,
	    .object = d->obj[0] ? d->obj : NULL,
	    .field = field && field[0] ? field : NULL,
	    .msg = msg,
	};
	d->fn(&dg, d->arg);
}

/* An error in the current object: reported at the line of `at` (else the object's), with
 * the current path plus `key` as the field. */
__attribute__((format(printf, 4, 5))) static void ferr(struct dec *d, const struct tn *at,
						       const char *key, const char *fmt, ...)
{
	if (d->nerr++ >= MAX_ERRORS_PER_DOC)
		return;
	char field[600];
	if (key)
		snprintf(field, sizeof(field), "%s%s%s", d->path, d->plen ? "." : "", key);
	else
		snprintf(field, sizeof(field), "%s", d->path);
	va_list ap;
	va_start(ap, fmt);
	report(d, at && at->line ? at->line : d->line, field, fmt, ap);
	va_end(ap);
}

/* An error that is not about one object (syntax, limits). */
__attribute__((format(printf, 3, 4))) static void gerr(struct dec *d, int line, const char *fmt,
						       ...)
{
	d->obj[0] = 0;
	va_list ap;
	va_start(ap, fmt);
	report(d, line, NULL, fmt, ap);
	va_end(ap);
}

/* Append s[0..n) to the path, cut at the end of the buffer.  (Called for every field of
 * every object: no printf here.) */
static void path_add(struct dec *d, const char *s, size_t n)
{
	size_t room = sizeof(d->path) - 1 - d->plen;
	if (n > room)
		n = room;
	memcpy(d->path + d->plen, s, n);
	d->plen += n;
	d->path[d->plen] = 0;
}

static size_t path_push(struct dec *d, const char *key)
{
	size_t m = d->plen;
	if (d->plen)
		path_add(d, ".", 1);
	path_add(d, key, strlen(key));
	return m;
}

static size_t path_idx(struct dec *d, size_t i)
{
	size_t m = d->plen;
	char buf[24];
	size_t n = sizeof(buf);
	buf[--n] = ']';
	do
		buf[--n] = (char)('0' + i % 10);
	while ((i /= 10));
	buf[--n] = '[';
	path_add(d, buf + n, sizeof(buf) - n);
	return m;
}

static void path_pop(struct dec *d, size_t m)
{
	d->plen = m;
	d->path[m] = 0;
}

/* ------------------------------------------------------------------------------------------
 * typed access to the tree; errors are reported and decoding goes on, so one pass finds
 * every problem of a document */

static const char *node_str(struct dec *d, const struct tn *n, const char *key)
{
	if (n->type == T_STR)
		return n->s;
	ferr(d, n, key, "must be a string");
	return NULL;
}

static const char *get_str(struct dec *d, const struct tn *m, const char *key)
{
	const struct tn *n = lookup(m, key);
	return n ? node_str(d, n, key) : NULL;
}

static char *dup_str(struct dec *d, const struct tn *m, const char *key)
{
	return xstrdup(get_str(d, m, key));
}

static const struct tn *get_map(struct dec *d, const struct tn *m, const char *key)
{
	const struct tn *n = lookup(m, key);
	if (n && n->type != T_MAP) {
		ferr(d, n, key, "must be a mapping");
		return NULL;
	}
	return n;
}

static const struct tn *get_seq(struct dec *d, const struct tn *m, const char *key)
{
	const struct tn *n = lookup(m, key);
	if (n && n->type != T_SEQ) {
		ferr(d, n, key, "must be a list");
		return NULL;
	}
	return n;
}

static bool get_bool(struct dec *d, const struct tn *m, const char *key, bool dflt)
{
	static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes",
					  "YES",  "on",	  "On",	  "ON"};
	static const char *const no[] = {"false", "False", "FALSE", "no", "No",
					 "NO",	  "off",   "Off",   "OFF"};
	const struct tn *n = lookup(m, key);
	if (!n)
		return dflt;
	if (n->type == T_STR && n->plain) {
		for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
			if (!strcmp(n->s, yes[i]))
				return true;
			if (!strcmp(n->s, no[i]))
				return false;
		}
	}
	ferr(d, n, key, "must be true or false");
	return dflt;
}

static bool parse_long(const char *s, long *out)
{
	if (!*s)
		return false;
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

/* An integer scalar in [lo, hi]. */
static bool node_int(struct dec *d, const struct tn *n, const char *key, long lo, long hi,
		     long *out)
{
	long v;
	if (n->type != T_STR || !n->plain || !parse_long(n->s, &v)) {
		ferr(d, n, key, "must be an integer");
		return false;
	}
	if (v < lo || v > hi) {
		ferr(d, n, key, "%ld is out of range %ld-%ld", v, lo, hi);
		return false;
	}
	*out = v;
	return true;
}

/* true when present and valid */
static bool get_int(struct dec *d, const struct tn *m, const char *key, long lo, long hi, long *out)
{
	const struct tn *n = lookup(m, key);
	return n && node_int(d, n, key, lo, hi, out);
}

static void missing(struct dec *d, const struct tn *m, const char *key)
{
	ferr(d, m, key, "required");
}

static int get_proto(struct dec *d, const struct tn *m, const char *key, bool *given)
{
	const char *s = get_str(d, m, key);
	if (given)
		*given = s != NULL;
	if (!s)
		return PROTO_TCP;
	int p = proto_parse(s);
	if (p < 0) {
		ferr(d, lookup(m, key), key, "unknown protocol \"%s\" (want TCP, UDP or SCTP)", s);
		return PROTO_TCP;
	}
	return p;
}

static bool node_ip_parse(struct dec *d, const struct tn *n, const char *key, struct ipaddr *out)
{
	const char *s = node_str(d, n, key);
	if (!s)
		return false;
	if (ip_parse(s, out)) {
		ferr(d, n, key, "invalid IP address \"%s\"", s);
		return false;
	}
	return true;
}

static bool node_cidr_parse(struct dec *d, const struct tn *n, const char *key,
			    struct ipprefix *out)
{
	const char *s = node_str(d, n, key);
	if (!s)
		return false;
	if (prefix_parse(s, out)) {
		ferr(d, n, key, "invalid CIDR \"%s\"", s);
		return false;
	}
	prefix_normalize(out);
	return true;
}

/* ------------------------------------------------------------------------------------------
 * name syntax (k8s.io/apimachinery/pkg/util/validation) */

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_dns_label(const char *s, size_t n)
{
	if (n == 0 || n > 63 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

static bool is_dns_subdomain(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 253)
		return false;
	for (const char *p = s;;) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		if (!is_dns_label(p, l))
			return false;
		if (!dot)
			return true;
		p = dot + 1;
	}
}

/* IANA_SVC_NAME: what a named port may be called */
static bool is_port_name(const char *s)
{
	size_t n = strlen(s);
	bool letter = false;
	if (n == 0 || n > 15 || s[0] == '-' || s[n - 1] == '-' || strstr(s, "--"))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return false;
		letter |= s[i] >= 'a' && s[i] <= 'z';
	}
	return letter;
}

/* label names and values: [A-Za-z0-9._-], alphanumeric at both ends, at most 63 */
static bool is_qualified_part(const char *s, size_t n)
{
	if (n == 0 || n > 63 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

static bool is_label_key(const char *s)
{
	const char *slash = strchr(s, '/');
	if (!slash)
		return is_qualified_part(s, strlen(s));
	size_t pl = (size_t)(slash - s);
	char prefix[254];
	if (pl == 0 || pl >= sizeof(prefix))
		return false;
	memcpy(prefix, s, pl);
	prefix[pl] = 0;
	return is_dns_subdomain(prefix) && is_qualified_part(slash + 1, strlen(slash + 1));
}

static bool is_label_value(const char *s)
{
	return !*s || is_qualified_part(s, strlen(s));
}

/* ------------------------------------------------------------------------------------------
 * labels, annotations, selectors */

static int kv_cmp(const void *a, const void *b)
{
	return strcmp(((const struct kv *)a)->key, ((const struct kv *)b)->key);
}

/* A string map into sorted labels.  as_labels: validate keys and values as label syntax. */
static void node_labels(struct dec *d, const struct tn *n, const char *key, struct labels *out,
			bool as_labels)
{
	if (n->type != T_MAP) {
		ferr(d, n, key, "must be a mapping");
		return;
	}
	size_t m = path_push(d, key);
	out->kv = n->n ? xcalloc(n->n, sizeof(*out->kv)) : NULL;
	out->n = 0;
	for (size_t i = 0; i < n->n; i++) {
		const struct tn *k = n->v[2 * i], *v = n->v[2 * i + 1];
		if (k->type != T_STR) {
			ferr(d, k, NULL, "keys must be strings");
			continue;
		}
		const char *val = v->type == T_NULL ? "" : v->type == T_STR ? v->s : NULL;
		if (!val) {
			ferr(d, v, k->s, "must be a string");
			continue;
		}
		if (as_labels && !is_label_key(k->s)) {
			ferr(d, k, k->s, "invalid label key");
			continue;
		}
		if (as_labels && !is_label_value(val)) {
			ferr(d, v, k->s,
			     "invalid label value \"%s\" (at most 63 characters of A-Z a-z 0-9 "
			     "- _ ., alphanumeric at both ends)",
			     val);
			continue;
		}
		out->kv[out->n].key = xstrdup(k->s);
		out->kv[out->n].value = xstrdup(val);
		out->n++;
	}
	if (out->n > 1)
		qsort(out->kv, out->n, sizeof(*out->kv), kv_cmp);
	for (size_t i = 1; i < out->n; i++)
		if (!strcmp(out->kv[i - 1].key, out->kv[i].key)) {
			/* only reachable from YAML; JSON objects already keep one value per key */
			ferr(d, n, out->kv[i].key, "duplicate key");
			break;
		}
	path_pop(d, m);
}

static void get_labels(struct dec *d, const struct tn *m, const char *key, struct labels *out,
		       bool as_labels)
{
	const struct tn *n = lookup(m, key);
	if (n)
		node_labels(d, n, key, out, as_labels);
}

/* metav1.LabelSelector at m.key.  A selector that is not given stays !present. */
static void node_label_selector(struct dec *d, const struct tn *n, const char *key,
				struct selector *s);

static void get_label_selector(struct dec *d, const struct tn *m, const char *key,
			       struct selector *s)
{
	const struct tn *n = get_map(d, m, key);
	if (n)
		node_label_selector(d, n, key, s);
}

/* The selector in map n, found at key (NULL: n is a list item, already in the path). */
static void node_label_selector(struct dec *d, const struct tn *n, const char *key,
				struct selector *s)
{
	s->present = true;
	size_t mk = key ? path_push(d, key) : d->plen;
	get_labels(d, n, "matchLabels", &s->match_labels, true);
	const struct tn *ex = get_seq(d, n, "matchExpressions");
	if (ex && ex->n) {
		size_t me = path_push(d, "matchExpressions");
		s->exprs = xcalloc(ex->n, sizeof(*s->exprs));
		for (size_t i = 0; i < ex->n; i++) {
			const struct tn *e = ex->v[i];
			size_t mi = path_idx(d, i);
			struct sel_expr *x = &s->exprs[s->nexprs++];
			if (e->type != T_MAP) {
				ferr(d, e, NULL, "must be a mapping");
				path_pop(d, mi);
				continue;
			}
			x->key = dup_str(d, e, "key");
			if (!x->key)
				missing(d, e, "key");
			else if (!is_label_key(x->key))
				ferr(d, lookup(e, "key"), "key", "invalid label key \"%s\"",
				     x->key);
			const char *op = get_str(d, e, "operator");
			if (!op)
				missing(d, e, "operator");
			else if (!strcmp(op, "In"))
				x->op = SEL_IN;
			else if (!strcmp(op, "NotIn"))
				x->op = SEL_NOT_IN;
			else if (!strcmp(op, "Exists"))
				x->op = SEL_EXISTS;
			else if (!strcmp(op, "DoesNotExist"))
				x->op = SEL_NOT_EXISTS;
			else
				ferr(d, lookup(e, "operator"), "operator",
				     "unknown operator \"%s\" (want In, NotIn, Exists or "
				     "DoesNotExist)",
				     op);
			const struct tn *vals = get_seq(d, e, "values");
			if (vals && vals->n) {
				size_t mv = path_push(d, "values");
				x->values = xcalloc(vals->n, sizeof(char *));
				for (size_t j = 0; j < vals->n; j++) {
					size_t mj = path_idx(d, j);
					const char *v = node_str(d, vals->v[j], NULL);
					if (v && !is_label_value(v))
						ferr(d, vals->v[j], NULL,
						     "invalid label value \"%s\"", v);
					if (v)
						x->values[x->nvalues++] = xstrdup(v);
					path_pop(d, mj);
				}
				path_pop(d, mv);
			}
			if (op && (x->op == SEL_IN || x->op == SEL_NOT_IN) && (!vals || !vals->n))
				ferr(d, vals ? vals : e, "values",
				     "must be non-empty for operator %s", op);
			if (op && (x->op == SEL_EXISTS || x->op == SEL_NOT_EXISTS) && vals &&
			    vals->n)
				ferr(d, vals, "values", "must be empty for operator %s", op);
			path_pop(d, mi);
		}
		path_pop(d, me);
	}
	path_pop(d, mk);
}

/* ------------------------------------------------------------------------------------------
 * metadata */

static void set_obj_id(struct dec *d, enum kind k, const char *ns, const char *name)
{
	if (ns)
		snprintf(d->obj, sizeof(d->obj), "%s/%s/%s", kind_name(k), ns, name ? name : "?");
	else
		snprintf(d->obj, sizeof(d->obj), "%s/%s", kind_name(k), name ? name : "?");
}

static void decode_meta(struct dec *d, const struct tn *root, enum kind k, struct meta *m)
{
	const struct tn *md = get_map(d, root, "metadata");
	snprintf(d->obj, sizeof(d->obj), "%s", kind_name(k));
	if (!md) {
		if (!lookup(root, "metadata"))
			missing(d, root, "metadata");
		return;
	}
	size_t mk = path_push(d, "metadata");
	m->name = dup_str(d, md, "name");
	if (kind_namespaced(k)) {
		m->ns = intern(d, get_str(d, md, "namespace"));
		if (!m->ns)
			m->ns = intern(d, "default");
		else if (!is_dns_label(m->ns, strlen(m->ns)))
			ferr(d, lookup(md, "namespace"), "namespace",
			     "invalid namespace \"%s\" (lowercase letters, digits and '-', at "
			     "most 63)",
			     m->ns);
	}
	if (!m->name) {
		if (!lookup(md, "name"))
			ferr(d, md, "name", "required%s",
			     lookup(md, "generateName") ? " (generateName is not supported)" : "");
	} else {
		set_obj_id(d, k, m->ns, m->name);
		bool ok = k == KIND_NAMESPACE ? is_dns_label(m->name, strlen(m->name))
			  : k == KIND_SERVICE ? is_dns_label(m->name, strlen(m->name)) &&
						    m->name[0] >= 'a' && m->name[0] <= 'z'
					      : is_dns_subdomain(m->name);
		if (!ok)
			ferr(d, lookup(md, "name"), "name",
			     "invalid name \"%s\" (lowercase letters, digits, '-'%s)", m->name,
			     k == KIND_NAMESPACE || k == KIND_SERVICE ? ", at most 63"
								      : " and '.'");
	}
	m->uid = dup_str(d, md, "uid");
	get_labels(d, md, "labels", &m->labels, true);
	get_labels(d, md, "annotations", &m->annotations, false);
	m->deleting = lookup(md, "deletionTimestamp") != NULL;
	path_pop(d, mk);
}

/* ------------------------------------------------------------------------------------------
 * Namespace, Node */

static void decode_node(struct dec *d, const struct tn *root, struct node_obj *n)
{
	const struct tn *spec = get_map(d, root, "spec");
	size_t m = path_push(d, "spec");
	const struct tn *cidrs = get_seq(d, spec, "podCIDRs");
	if (cidrs && cidrs->n) {
		size_t mc = path_push(d, "podCIDRs");
		if (cidrs->n > 2)
			ferr(d, cidrs, NULL, "at most 2 entries (one per family)");
		for (size_t i = 0; i < cidrs->n && i < 2; i++) {
			size_t mi = path_idx(d, i);
			if (node_cidr_parse(d, cidrs->v[i], NULL, &n->pod_cidrs[n->npod_cidrs]))
				n->npod_cidrs++;
			path_pop(d, mi);
		}
		path_pop(d, mc);
	} else if (lookup(spec, "podCIDR")) {
		if (node_cidr_parse(d, lookup(spec, "podCIDR"), "podCIDR", &n->pod_cidrs[0]))
			n->npod_cidrs = 1;
	}
	n->unschedulable = get_bool(d, spec, "unschedulable", false);
	path_pop(d, m);

	const struct tn *status = get_map(d, root, "status");
	m = path_push(d, "status");
	const struct tn *addrs = get_seq(d, status, "addresses");
	if (addrs && addrs->n) {
		size_t ma = path_push(d, "addresses");
		n->addrs = xcalloc(addrs->n, sizeof(*n->addrs));
		for (size_t i = 0; i < addrs->n; i++) {
			const struct tn *a = addrs->v[i];
			size_t mi = path_idx(d, i);
			if (a->type != T_MAP) {
				ferr(d, a, NULL, "must be a mapping");
				path_pop(d, mi);
				continue;
			}
			struct node_addr *na = &n->addrs[n->naddrs];
			const char *type = get_str(d, a, "type");
			const struct tn *av = lookup(a, "address");
			const char *text = av ? node_str(d, av, "address") : NULL;
			if (!type)
				missing(d, a, "type");
			if (!text)
				missing(d, a, "address");
			if (!type || !text) {
				path_pop(d, mi);
				continue;
			}
			na->type = !strcmp(type, "InternalIP")	 ? NODE_ADDR_INTERNAL
				   : !strcmp(type, "ExternalIP") ? NODE_ADDR_EXTERNAL
				   : !strcmp(type, "Hostname")	 ? NODE_ADDR_HOSTNAME
								 : NODE_ADDR_OTHER;
			if (na->type == NODE_ADDR_INTERNAL || na->type == NODE_ADDR_EXTERNAL)
				node_ip_parse(d, av, "address", &na->ip);
			na->text = xstrdup(text);
			n->naddrs++;
			path_pop(d, mi);
		}
		path_pop(d, ma);
	}
	path_pop(d, m);
}

/* ------------------------------------------------------------------------------------------
 * Pod (and a Deployment's pod template) */

static void decode_pod_spec(struct dec *d, const struct tn *spec, struct pod_obj *p)
{
	p->node_name = dup_str(d, spec, "nodeName");
	if (p->node_name && !is_dns_subdomain(p->node_name))
		ferr(d, lookup(spec, "nodeName"), "nodeName", "invalid node name \"%s\"",
		     p->node_name);
	p->host_network = get_bool(d, spec, "hostNetwork", false);
	const struct tn *ctrs = get_seq(d, spec, "containers");
	if (!ctrs)
		return;
	size_t total = 0;
	for (size_t i = 0; i < ctrs->n; i++) {
		const struct tn *ports = lookup(ctrs->v[i], "ports");
		if (ports && ports->type == T_SEQ)
			total += ports->n;
	}
	p->ports = total ? xcalloc(total, sizeof(*p->ports)) : NULL;
	size_t mc = path_push(d, "containers");
	for (size_t i = 0; i < ctrs->n; i++) {
		size_t mi = path_idx(d, i);
		const struct tn *c = ctrs->v[i];
		if (c->type != T_MAP) {
			ferr(d, c, NULL, "must be a mapping");
			path_pop(d, mi);
			continue;
		}
		const struct tn *ports = get_seq(d, c, "ports");
		size_t mp = path_push(d, "ports");
		for (size_t j = 0; ports && j < ports->n; j++) {
			size_t mj = path_idx(d, j);
			const struct tn *pt = ports->v[j];
			if (pt->type != T_MAP) {
				ferr(d, pt, NULL, "must be a mapping");
				path_pop(d, mj);
				continue;
			}
			struct container_port *cp = &p->ports[p->nports++];
			long v;
			if (get_int(d, pt, "containerPort", 1, 65535, &v))
				cp->port = (uint16_t)v;
			else if (!lookup(pt, "containerPort"))
				missing(d, pt, "containerPort");
			cp->proto = (enum proto)get_proto(d, pt, "protocol", NULL);
			cp->name = dup_str(d, pt, "name");
			if (cp->name && !is_port_name(cp->name))
				ferr(d, lookup(pt, "name"), "name",
				     "invalid port name \"%s\" (at most 15 of a-z 0-9 -, with a "
				     "letter)",
				     cp->name);
			path_pop(d, mj);
		}
		path_pop(d, mp);
		path_pop(d, mi);
	}
	path_pop(d, mc);
}

static void decode_pod(struct dec *d, const struct tn *root, struct pod_obj *p)
{
	const struct tn *spec = get_map(d, root, "spec");
	size_t m = path_push(d, "spec");
	decode_pod_spec(d, spec, p);
	path_pop(d, m);

	const struct tn *st = get_map(d, root, "status");
	m = path_push(d, "status");
	const struct tn *ips = get_seq(d, st, "podIPs");
	if (ips && ips->n) {
		size_t mi = path_push(d, "podIPs");
		if (ips->n > 2)
			ferr(d, ips, NULL, "at most 2 entries (one per family)");
		for (size_t i = 0; i < ips->n && i < 2; i++) {
			size_t mj = path_idx(d, i);
			const struct tn *e = ips->v[i];
			const struct tn *ip = lookup(e, "ip");
			if (e->type != T_MAP)
				ferr(d, e, NULL, "must be a mapping");
			else if (!ip)
				missing(d, e, "ip");
			else if (node_ip_parse(d, ip, "ip", &p->ips[p->nips]))
				p->nips++;
			path_pop(d, mj);
		}
		path_pop(d, mi);
	} else if (lookup(st, "podIP")) {
		if (node_ip_parse(d, lookup(st, "podIP"), "podIP", &p->ips[0]))
			p->nips = 1;
	}
	p->phase = dup_str(d, st, "phase");
	const struct tn *conds = get_seq(d, st, "conditions");
	for (size_t i = 0; conds && i < conds->n; i++) {
		const struct tn *c = conds->v[i];
		const struct tn *type = lookup(c, "type");
		if (!type || type->type != T_STR || strcmp(type->s, "Ready"))
			continue;
		const struct tn *s = lookup(c, "status");
		p->has_ready = true;
		p->ready = s && s->type == T_STR && !strcmp(s->s, "True");
	}
	path_pop(d, m);
}

/* ------------------------------------------------------------------------------------------
 * Service */

static size_t get_ip_list(struct dec *d, const struct tn *m, const char *key, struct ipaddr **out)
{
	const struct tn *l = get_seq(d, m, key);
	*out = NULL;
	if (!l || !l->n)
		return 0;
	size_t n = 0, mk = path_push(d, key);
	*out = xcalloc(l->n, sizeof(**out));
	for (size_t i = 0; i < l->n; i++) {
		size_t mi = path_idx(d, i);
		if (node_ip_parse(d, l->v[i], NULL, &(*out)[n]))
			n++;
		path_pop(d, mi);
	}
	path_pop(d, mk);
	return n;
}

static void decode_svc_ports(struct dec *d, const struct tn *ports, struct service_obj *s)
{
	s->ports = xcalloc(ports->n, sizeof(*s->ports));
	size_t mk = path_push(d, "ports");
	for (size_t i = 0; i < ports->n; i++) {
		size_t mi = path_idx(d, i);
		const struct tn *pt = ports->v[i];
		if (pt->type != T_MAP) {
			ferr(d, pt, NULL, "must be a mapping");
			path_pop(d, mi);
			continue;
		}
		struct svc_port *sp = &s->ports[s->nports++];
		long v;
		sp->name = dup_str(d, pt, "name");
		if (sp->name && !is_dns_label(sp->name, strlen(sp->name)))
			ferr(d, lookup(pt, "name"), "name",
			     "invalid port name \"%s\" (lowercase letters, digits and '-')",
			     sp->name);
		if (ports->n > 1 && (!sp->name || !*sp->name))
			ferr(d, pt, "name", "required when the Service has more than one port");
		for (size_t j = 0; sp->name && j + 1 < s->nports; j++)
			if (s->ports[j].name && !strcmp(s->ports[j].name, sp->name))
				ferr(d, lookup(pt, "name"), "name", "duplicate port name \"%s\"",
				     sp->name);
		if (get_int(d, pt, "port", 1, 65535, &v))
			sp->port = (uint16_t)v;
		else if (!lookup(pt, "port"))
			missing(d, pt, "port");
		sp->proto = (enum proto)get_proto(d, pt, "protocol", NULL);
		if (get_int(d, pt, "nodePort", 0, 65535, &v))
			sp->node_port = (uint16_t)v;
		/* targetPort is an IntOrString: a plain number is a port, anything else a
		 * container port name; unset or 0 defaults to port */
		const struct tn *tp = lookup(pt, "targetPort");
		if (tp && tp->type == T_STR && tp->plain && parse_long(tp->s, &v)) {
			if (node_int(d, tp, "targetPort", 0, 65535, &v))
				sp->target_port = (uint16_t)v;
		} else if (tp) {
			const char *name = node_str(d, tp, "targetPort");
			if (name && !is_port_name(name))
				ferr(d, tp, "targetPort",
				     "invalid port name \"%s\" (a number 1-65535, or at most 15 of "
				     "a-z 0-9 - with a letter)",
				     name);
			else if (name)
				sp->target_port_name = xstrdup(name);
		}
		if (!sp->target_port && !sp->target_port_name)
			sp->target_port = sp->port;
		sp->app_protocol = dup_str(d, pt, "appProtocol");
		path_pop(d, mi);
	}
	path_pop(d, mk);
}

/* spec.ipFamilyPolicy and spec.ipFamilies, checked against each other and against
 * clusterIPs the way the API server validates them.  Whether the cluster has the families
 * is the controller's question (it knows the service CIDRs). */
static void decode_ip_families(struct dec *d, const struct tn *spec, struct service_obj *s)
{
	const char *pol = get_str(d, spec, "ipFamilyPolicy");
	if (pol) {
		s->has_ip_family_policy = true;
		int p = IPFP_REQUIRE_DUAL_STACK;
		while (p >= 0 && strcmp(pol, ip_family_policy_name((enum ip_family_policy)p)))
			p--;
		if (p >= 0)
			s->ip_family_policy = (enum ip_family_policy)p;
		else
			ferr(d, lookup(spec, "ipFamilyPolicy"), "ipFamilyPolicy",
			     "unknown policy \"%s\" (want SingleStack, PreferDualStack or "
			     "RequireDualStack)",
			     pol);
	}
	const struct tn *fl = get_seq(d, spec, "ipFamilies");
	if (fl && fl->n) {
		size_t mk = path_push(d, "ipFamilies");
		if (fl->n > 2)
			ferr(d, fl, NULL, "at most 2 entries (IPv4 and IPv6), not %zu", fl->n);
		for (size_t i = 0; i < fl->n && i < 2; i++) {
			size_t mi = path_idx(d, i);
			const char *v = node_str(d, fl->v[i], NULL);
			int fam = !v		       ? 0
				  : !strcmp(v, "IPv4") ? AF_INET
				  : !strcmp(v, "IPv6") ? AF_INET6
						       : -1;
			if (fam < 0)
				ferr(d, fl->v[i], NULL,
				     "unknown IP family \"%s\" (want IPv4 or IPv6)", v);
			else if (fam && s->nip_families && s->ip_families[0] == fam)
				ferr(d, fl->v[i], NULL, "duplicate IP family %s", v);
			else if (fam)
				s->ip_families[s->nip_families++] = fam;
			path_pop(d, mi);
		}
		path_pop(d, mk);
	}
	for (size_t i = 0; i < s->nip_families && i < s->ncluster_ips; i++)
		if (s->ip_families[i] != s->cluster_ips[i].family) {
			char buf[IP_STRLEN];
			ferr(d, lookup(spec, "ipFamilies"), "ipFamilies",
			     "entry %zu is %s but clusterIPs[%zu] %s is %s", i,
			     ip_family_name(s->ip_families[i]), i, ip_fmt(&s->cluster_ips[i], buf),
			     ip_family_name(s->cluster_ips[i].family));
		}
	/* two families without a policy: RequireDualStack, as the API server infers it */
	if (s->nip_families == 2 || s->ncluster_ips == 2) {
		if (!pol)
			s->ip_family_policy = IPFP_REQUIRE_DUAL_STACK;
		else if (s->ip_family_policy == IPFP_SINGLE_STACK)
			ferr(d, lookup(spec, "ipFamilyPolicy"), "ipFamilyPolicy",
			     "SingleStack, but %s has two entries (want PreferDualStack or "
			     "RequireDualStack)",
			     s->nip_families == 2 ? "ipFamilies" : "clusterIPs");
	}
	if (s->type == SVC_EXTERNAL_NAME && (pol || s->nip_families))
		ferr(d, lookup(spec, pol ? "ipFamilyPolicy" : "ipFamilies"),
		     pol ? "ipFamilyPolicy" : "ipFamilies", "not allowed for type ExternalName");
}

static void decode_service(struct dec *d, const struct tn *root, struct service_obj *s)
{
	const struct tn *spec = get_map(d, root, "spec");
	size_t m = path_push(d, "spec");
	const char *type = get_str(d, spec, "type");
	s->type = SVC_CLUSTER_IP;
	if (!type || !strcmp(type, "ClusterIP"))
		s->type = SVC_CLUSTER_IP;
	else if (!strcmp(type, "NodePort"))
		s->type = SVC_NODE_PORT;
	else if (!strcmp(type, "LoadBalancer"))
		s->type = SVC_LOAD_BALANCER;
	else if (!strcmp(type, "ExternalName"))
		s->type = SVC_EXTERNAL_NAME;
	else
		ferr(d, lookup(spec, "type"), "type",
		     "unknown Service type \"%s\" (want ClusterIP, NodePort, LoadBalancer or "
		     "ExternalName)",
		     type);

	/* clusterIPs wins over clusterIP; "None" makes the Service headless, "" unallocated */
	const struct tn *cips = get_seq(d, spec, "clusterIPs");
	const struct tn *cip = lookup(spec, "clusterIP");
	size_t mk = path_push(d, cips && cips->n ? "clusterIPs" : "clusterIP");
	const struct tn *one[1] = {cip};
	const struct tn *const *list = cips && cips->n ? (const struct tn *const *)cips->v : one;
	size_t nlist = cips && cips->n ? cips->n : cip ? 1 : 0;
	if (nlist > 2)
		ferr(d, cips, NULL, "at most 2 entries (one per family)");
	for (size_t i = 0; i < nlist && i < 2; i++) {
		size_t mi = cips && cips->n ? path_idx(d, i) : d->plen;
		const char *v = node_str(d, list[i], NULL);
		if (v && !strcmp(v, "None"))
			s->headless = true;
		else if (v && *v &&
			 node_ip_parse(d, list[i], NULL, &s->cluster_ips[s->ncluster_ips]))
			s->ncluster_ips++;
		path_pop(d, mi);
	}
	path_pop(d, mk);
	if (s->ncluster_ips == 2 && s->cluster_ips[0].family == s->cluster_ips[1].family)
		ferr(d, cips, "clusterIPs", "the two addresses must be of different families (%s)",
		     ip_family_name(s->cluster_ips[0].family));
	decode_ip_families(d, spec, s);

	/* a Service selector is a plain map; an empty one means "no selector" (the API server
	 * stores it as nil), so no EndpointSlices are managed for it */
	const struct tn *sel = lookup(spec, "selector");
	if (sel) {
		node_labels(d, sel, "selector", &s->selector.match_labels, true);
		s->selector.present = s->selector.match_labels.n > 0;
	}
	const struct tn *ports = get_seq(d, spec, "ports");
	if (ports && ports->n)
		decode_svc_ports(d, ports, s);
	s->nexternal_ips = get_ip_list(d, spec, "externalIPs", &s->external_ips);
	const struct tn *lbip = lookup(spec, "loadBalancerIP");
	if (lbip && !(lbip->type == T_STR && !*lbip->s))
		node_ip_parse(d, lbip, "loadBalancerIP", &s->lb_ip_requested);

	const char *etp = get_str(d, spec, "externalTrafficPolicy");
	if (etp && strcmp(etp, "Cluster") && strcmp(etp, "Local"))
		ferr(d, lookup(spec, "externalTrafficPolicy"), "externalTrafficPolicy",
		     "must be Cluster or Local, not \"%s\"", etp);
	s->etp_local = etp && !strcmp(etp, "Local");
	const char *itp = get_str(d, spec, "internalTrafficPolicy");
	if (itp && strcmp(itp, "Cluster") && strcmp(itp, "Local"))
		ferr(d, lookup(spec, "internalTrafficPolicy"), "internalTrafficPolicy",
		     "must be Cluster or Local, not \"%s\"", itp);
	s->itp_local = itp && !strcmp(itp, "Local");

	const char *aff = get_str(d, spec, "sessionAffinity");
	if (aff && strcmp(aff, "None") && strcmp(aff, "ClientIP"))
		ferr(d, lookup(spec, "sessionAffinity"), "sessionAffinity",
		     "must be None or ClientIP, not \"%s\"", aff);
	s->affinity_client_ip = aff && !strcmp(aff, "ClientIP");
	s->affinity_timeout = 10800;
	const struct tn *sac = get_map(d, spec, "sessionAffinityConfig");
	const struct tn *cip_cfg = sac ? get_map(d, sac, "clientIP") : NULL;
	if (cip_cfg) {
		long v;
		size_t ms = path_push(d, "sessionAffinityConfig.clientIP");
		if (get_int(d, cip_cfg, "timeoutSeconds", 1, 86400, &v))
			s->affinity_timeout = (uint32_t)v;
		path_pop(d, ms);
	}
	long v;
	if (get_int(d, spec, "healthCheckNodePort", 0, 65535, &v))
		s->health_check_node_port = (uint16_t)v;
	s->external_name = dup_str(d, spec, "externalName");
	if (s->type == SVC_EXTERNAL_NAME && (!s->external_name || !*s->external_name))
		ferr(d, spec, "externalName", "required for type ExternalName");
	s->publish_not_ready = get_bool(d, spec, "publishNotReadyAddresses", false);
	s->allocate_lb_node_ports = get_bool(d, spec, "allocateLoadBalancerNodePorts", true);
	path_pop(d, m);

	const struct tn *ing = lookup(lookup(lookup(root, "status"), "loadBalancer"), "ingress");
	if (ing && ing->type == T_SEQ && ing->n) {
		m = path_push(d, "status.loadBalancer.ingress");
		s->lb_ips = xcalloc(ing->n, sizeof(*s->lb_ips));
		for (size_t i = 0; i < ing->n; i++) {
			const struct tn *ip = lookup(ing->v[i], "ip"); /* hostname-only: skipped */
			size_t mi = path_idx(d, i);
			if (ip && node_ip_parse(d, ip, "ip", &s->lb_ips[s->nlb_ips]))
				s->nlb_ips++;
			path_pop(d, mi);
		}
		path_pop(d, m);
	}
}

/* ------------------------------------------------------------------------------------------
 * EndpointSlice */

static void decode_eps(struct dec *d, const struct tn *root, const struct meta *meta,
		       struct endpointslice_obj *e)
{
	e->service = xstrdup(labels_get(&meta->labels, "kubernetes.io/service-name"));
	e->managed_by =
	    xstrdup(labels_get(&meta->labels, "endpointslice.kubernetes.io/managed-by"));
	const char *at = get_str(d, root, "addressType");
	if (!at)
		missing(d, root, "addressType");
	else if (!strcmp(at, "IPv4"))
		e->address_type = AF_INET;
	else if (!strcmp(at, "IPv6"))
		e->address_type = AF_INET6;
	else if (!strcmp(at, "FQDN"))
		ferr(d, lookup(root, "addressType"), "addressType",
		     "FQDN EndpointSlices are not supported");
	else
		ferr(d, lookup(root, "addressType"), "addressType",
		     "must be IPv4 or IPv6, not \"%s\"", at);

	const struct tn *eps = get_seq(d, root, "endpoints");
	if (eps && eps->n) {
		size_t m = path_push(d, "endpoints");
		e->endpoints = xcalloc(eps->n, sizeof(*e->endpoints));
		for (size_t i = 0; i < eps->n; i++) { /* every address in one allocation */
			const struct tn *a =
			    eps->v[i]->type == T_MAP ? lookup(eps->v[i], "addresses") : NULL;
			if (a && a->type == T_SEQ)
				e->naddr_pool += a->n;
		}
		e->addr_pool = e->naddr_pool ? xcalloc(e->naddr_pool, sizeof(*e->addr_pool)) : NULL;
		size_t pooled = 0;
		for (size_t i = 0; i < eps->n; i++) {
			size_t mi = path_idx(d, i);
			const struct tn *ep = eps->v[i];
			if (ep->type != T_MAP) {
				ferr(d, ep, NULL, "must be a mapping");
				path_pop(d, mi);
				continue;
			}
			struct endpoint *x = &e->endpoints[e->nendpoints++];
			const struct tn *addrs = get_seq(d, ep, "addresses");
			if (!addrs || !addrs->n) {
				if (!lookup(ep, "addresses") || (addrs && !addrs->n))
					ferr(d, addrs ? addrs : ep, "addresses",
					     "required (at least one address)");
			} else {
				size_t ma = path_push(d, "addresses");
				x->addrs = e->addr_pool + pooled;
				pooled += addrs->n;
				for (size_t j = 0; j < addrs->n; j++) {
					size_t mj = path_idx(d, j);
					struct ipaddr *a = &x->addrs[x->naddrs];
					if (node_ip_parse(d, addrs->v[j], NULL, a)) {
						if (e->address_type && a->family != e->address_type)
							ferr(d, addrs->v[j], NULL,
							     "is not an %s address (addressType)",
							     e->address_type == AF_INET ? "IPv4"
											: "IPv6");
						x->naddrs++;
					}
					path_pop(d, mj);
				}
				path_pop(d, ma);
			}
			const struct tn *cond = get_map(d, ep, "conditions");
			size_t mc = path_push(d, "conditions");
			x->ready = get_bool(d, cond, "ready", true);
			x->serving = get_bool(d, cond, "serving", true);
			x->terminating = get_bool(d, cond, "terminating", false);
			path_pop(d, mc);
			x->node_name = intern(d, get_str(d, ep, "nodeName"));
			x->hostname = dup_str(d, ep, "hostname");
			x->zone = dup_str(d, ep, "zone");
			const struct tn *tr = get_map(d, ep, "targetRef");
			const struct tn *trk = lookup(tr, "kind");
			if (tr && (!trk || (trk->type == T_STR && !strcmp(trk->s, "Pod")))) {
				size_t mt = path_push(d, "targetRef");
				x->target_pod = dup_str(d, tr, "name");
				path_pop(d, mt);
			}
			path_pop(d, mi);
		}
		path_pop(d, m);
	}

	const struct tn *ports = get_seq(d, root, "ports");
	if (ports && ports->n) {
		size_t m = path_push(d, "ports");
		e->ports = xcalloc(ports->n, sizeof(*e->ports));
		for (size_t i = 0; i < ports->n; i++) {
			size_t mi = path_idx(d, i);
			const struct tn *pt = ports->v[i];
			if (pt->type != T_MAP) {
				ferr(d, pt, NULL, "must be a mapping");
				path_pop(d, mi);
				continue;
			}
			struct ep_port *x = &e->ports[e->nports++];
			long v;
			x->name = dup_str(d, pt, "name");
			x->proto = (enum proto)get_proto(d, pt, "protocol", NULL);
			if (get_int(d, pt, "port", 1, 65535, &v))
				x->port = (uint16_t)v;
			path_pop(d, mi);
		}
		path_pop(d, m);
	}
}

/* ------------------------------------------------------------------------------------------
 * NetworkPolicy */

static void decode_np_rules(struct dec *d, const struct tn *spec, const char *key,
			    const char *peers_key, struct np_rule **out, size_t *nout)
{
	const struct tn *rules = get_seq(d, spec, key);
	if (!rules || !rules->n)
		return;
	size_t m = path_push(d, key);
	*out = xcalloc(rules->n, sizeof(**out));
	for (size_t i = 0; i < rules->n; i++) {
		size_t mi = path_idx(d, i);
		const struct tn *r = rules->v[i];
		struct np_rule *x = &(*out)[(*nout)++];
		if (r->type == T_NULL) { /* `- {}` written as `-`: allow everything */
			path_pop(d, mi);
			continue;
		}
		if (r->type != T_MAP) {
			ferr(d, r, NULL, "must be a mapping");
			path_pop(d, mi);
			continue;
		}
		const struct tn *ports = get_seq(d, r, "ports");
		if (ports && ports->n) {
			size_t mp = path_push(d, "ports");
			x->ports = xcalloc(ports->n, sizeof(*x->ports));
			for (size_t j = 0; j < ports->n; j++) {
				size_t mj = path_idx(d, j);
				const struct tn *pt = ports->v[j];
				struct np_port *p = &x->ports[x->nports++];
				p->proto = PROTO_TCP;
				if (pt->type != T_MAP) {
					if (pt->type != T_NULL)
						ferr(d, pt, NULL, "must be a mapping");
					path_pop(d, mj);
					continue;
				}
				p->proto = (enum proto)get_proto(d, pt, "protocol", &p->has_proto);
				const struct tn *pn = lookup(pt, "port");
				long v;
				if (pn && pn->type == T_STR && pn->plain && parse_long(pn->s, &v)) {
					if (node_int(d, pn, "port", 1, 65535, &v))
						p->port = (uint16_t)v;
				} else if (pn) {
					const char *name = node_str(d, pn, "port");
					if (name && !is_port_name(name))
						ferr(d, pn, "port",
						     "invalid port name \"%s\" (a number 1-65535, "
						     "or at most 15 of a-z 0-9 - with a letter)",
						     name);
					else if (name)
						p->port_name = xstrdup(name);
				}
				const struct tn *ep = lookup(pt, "endPort");
				if (ep && node_int(d, ep, "endPort", 1, 65535, &v)) {
					if (p->port_name || !pn)
						ferr(d, ep, "endPort",
						     "requires a numeric port (not a named or "
						     "missing one)");
					else if (p->port && v < p->port)
						ferr(d, ep, "endPort", "%ld is less than port %u",
						     v, p->port);
					else
						p->end_port = (uint16_t)v;
				}
				path_pop(d, mj);
			}
			path_pop(d, mp);
		}
		const struct tn *peers = get_seq(d, r, peers_key);
		if (peers && peers->n) {
			size_t mp = path_push(d, peers_key);
			x->peers = xcalloc(peers->n, sizeof(*x->peers));
			for (size_t j = 0; j < peers->n; j++) {
				size_t mj = path_idx(d, j);
				const struct tn *pe = peers->v[j];
				struct np_peer *p = &x->peers[x->npeers++];
				if (pe->type != T_MAP) {
					ferr(d, pe, NULL, "must be a mapping");
					path_pop(d, mj);
					continue;
				}
				get_label_selector(d, pe, "podSelector", &p->pod_selector);
				get_label_selector(d, pe, "namespaceSelector",
						   &p->namespace_selector);
				const struct tn *ipb = get_map(d, pe, "ipBlock");
				if (ipb) {
					p->has_ipblock = true;
					if (p->pod_selector.present ||
					    p->namespace_selector.present)
						ferr(d, ipb, "ipBlock",
						     "may not be combined with podSelector or "
						     "namespaceSelector");
					size_t mb = path_push(d, "ipBlock");
					const struct tn *c = lookup(ipb, "cidr");
					bool cok = false;
					if (!c)
						missing(d, ipb, "cidr");
					else
						cok = node_cidr_parse(d, c, "cidr", &p->cidr);
					const struct tn *ex = get_seq(d, ipb, "except");
					if (ex && ex->n) {
						size_t me = path_push(d, "except");
						p->except = xcalloc(ex->n, sizeof(*p->except));
						for (size_t k = 0; k < ex->n; k++) {
							size_t mk = path_idx(d, k);
							struct ipprefix *e = &p->except[p->nexcept];
							if (node_cidr_parse(d, ex->v[k], NULL, e)) {
								char a[IP_STRLEN], b[IP_STRLEN];
								if (cok &&
								    (!prefix_covers(&p->cidr, e) ||
								     e->len <= p->cidr.len))
									ferr(d, ex->v[k], NULL,
									     "%s is not inside "
									     "cidr %s",
									     prefix_fmt(e, a),
									     prefix_fmt(&p->cidr,
											b));
								p->nexcept++;
							}
							path_pop(d, mk);
						}
						path_pop(d, me);
					}
					path_pop(d, mb);
				} else if (!p->pod_selector.present &&
					   !p->namespace_selector.present) {
					ferr(d, pe, NULL,
					     "must set podSelector, namespaceSelector or ipBlock");
				}
				path_pop(d, mj);
			}
			path_pop(d, mp);
		}
		path_pop(d, mi);
	}
	path_pop(d, m);
}

static void decode_netpol(struct dec *d, const struct tn *root, struct netpol_obj *np)
{
	const struct tn *spec = get_map(d, root, "spec");
	size_t m = path_push(d, "spec");
	/* podSelector is a value, not a pointer, in the API: omitted selects every pod */
	get_label_selector(d, spec, "podSelector", &np->pod_selector);
	np->pod_selector.present = true;
	decode_np_rules(d, spec, "ingress", "from", &np->ingress, &np->ningress);
	decode_np_rules(d, spec, "egress", "to", &np->egress, &np->negress);
	const struct tn *types = get_seq(d, spec, "policyTypes");
	if (types && types->n) {
		size_t mt = path_push(d, "policyTypes");
		for (size_t i = 0; i < types->n; i++) {
			size_t mi = path_idx(d, i);
			const char *t = node_str(d, types->v[i], NULL);
			if (t && !strcmp(t, "Ingress"))
				np->ingress_type = true;
			else if (t && !strcmp(t, "Egress"))
				np->egress_type = true;
			else if (t)
				ferr(d, types->v[i], NULL, "must be Ingress or Egress, not \"%s\"",
				     t);
			path_pop(d, mi);
		}
		path_pop(d, mt);
	} else {
		/* the API server's default: Ingress always, Egress when there are egress rules */
		np->ingress_type = true;
		np->egress_type = np->negress > 0;
	}
	path_pop(d, m);
}

/* ------------------------------------------------------------------------------------------
 * IPAddressPool (metallb.io/v1beta1) */

typedef unsigned __int128 u128;

static u128 ip_to_u128(const struct ipaddr *a)
{
	u128 v = 0;
	for (int i = 0; i < ip_bytes(a->family); i++)
		v = (v << 8) | a->b[i];
	return v;
}

static void u128_to_ip(u128 v, int family, struct ipaddr *a)
{
	memset(a, 0, sizeof(*a));
	a->family = family;
	for (int i = ip_bytes(family) - 1; i >= 0; i--) {
		a->b[i] = (uint8_t)v;
		v >>= 8;
	}
}

/* The fewest CIDRs covering [lo, hi] exactly (at most 2 per bit, so bounded). */
static size_t range_to_cidrs(const struct ipaddr *lo, const struct ipaddr *hi,
			     struct ipprefix **out, size_t *cap, size_t n)
{
	int fam = lo->family, bits = ip_maxlen(fam);
	u128 s = ip_to_u128(lo), e = ip_to_u128(hi);
	for (;;) {
		int k = 0; /* host bits of the block */
		while (k < bits && !((s >> k) & 1))
			k++;
		u128 mask;
		for (;; k--) {
			mask = k >= 128 ? ~(u128)0 : (((u128)1 << k) - 1);
			if (mask <= e - s)
				break;
		}
		if (n == *cap)
			*out = xrealloc(*out, (*cap = *cap ? *cap * 2 : 8) * sizeof(**out));
		u128_to_ip(s, fam, &(*out)[n].addr);
		(*out)[n++].len = (uint8_t)(bits - k);
		if (mask == e - s)
			return n;
		s += mask + 1;
	}
}

static void decode_pool(struct dec *d, const struct tn *root, struct ippool_obj *p)
{
	const struct tn *spec = get_map(d, root, "spec");
	size_t m = path_push(d, "spec");
	const struct tn *addrs = get_seq(d, spec, "addresses");
	if (!addrs || !addrs->n) {
		if (!lookup(spec, "addresses") || addrs)
			ferr(d, addrs ? addrs : spec, "addresses", "required (at least one range)");
	} else {
		size_t ma = path_push(d, "addresses"), cap = 0;
		for (size_t i = 0; i < addrs->n; i++) {
			size_t mi = path_idx(d, i);
			const struct tn *a = addrs->v[i];
			const char *s = node_str(d, a, NULL);
			const char *dash = s ? strchr(s, '-') : NULL;
			if (s && !dash) {
				struct ipprefix c;
				if (node_cidr_parse(d, a, NULL, &c)) {
					if (p->nranges == cap)
						p->cidrs =
						    xrealloc(p->cidrs, (cap = cap ? cap * 2 : 8) *
									   sizeof(*p->cidrs));
					p->cidrs[p->nranges++] = c;
				}
			} else if (s) {
				char lo_s[IP_STRLEN], hi_s[IP_STRLEN];
				struct ipaddr lo, hi;
				const char *l0 = s, *l1 = dash, *h0 = dash + 1, *h1 = s + strlen(s);
				while (l0 < l1 && *l0 == ' ')
					l0++;
				while (l1 > l0 && l1[-1] == ' ')
					l1--;
				while (h0 < h1 && *h0 == ' ')
					h0++;
				while (h1 > h0 && h1[-1] == ' ')
					h1--;
				bool ok = (size_t)(l1 - l0) < sizeof(lo_s) &&
					  (size_t)(h1 - h0) < sizeof(hi_s);
				if (ok) {
					memcpy(lo_s, l0, (size_t)(l1 - l0));
					lo_s[l1 - l0] = 0;
					memcpy(hi_s, h0, (size_t)(h1 - h0));
					hi_s[h1 - h0] = 0;
					ok = !ip_parse(lo_s, &lo) && !ip_parse(hi_s, &hi);
				}
				if (!ok)
					ferr(d, a, NULL,
					     "invalid address range \"%s\" (want a CIDR "
					     "or \"first-last\")",
					     s);
				else if (lo.family != hi.family)
					ferr(d, a, NULL, "range \"%s\" mixes IPv4 and IPv6", s);
				else if (ip_cmp(&lo, &hi) > 0)
					ferr(d, a, NULL, "range \"%s\" ends before it starts", s);
				else
					p->nranges =
					    range_to_cidrs(&lo, &hi, &p->cidrs, &cap, p->nranges);
			}
			path_pop(d, mi);
		}
		path_pop(d, ma);
	}
	p->auto_assign = get_bool(d, spec, "autoAssign", true);
	path_pop(d, m);
}

/* ------------------------------------------------------------------------------------------
 * BGPConfiguration, BGPPeer (Calico: crd.projectcalico.org/v1, projectcalico.org/v3) and
 * BGPAdvertisement (metallb.io/v1beta1) */

/* An AS number: an integer 1..4294967295 or asdot "X.Y" (Calico accepts both). */
static bool node_asn(struct dec *d, const struct tn *n, const char *key, uint32_t *out)
{
	long v, hi, lo;
	const char *dot;
	if (n->type == T_STR && n->plain && parse_long(n->s, &v) && v >= 1 && v <= 4294967295L) {
		*out = (uint32_t)v;
		return true;
	}
	if (n->type == T_STR && (dot = strchr(n->s, '.'))) {
		char a[16];
		size_t l = (size_t)(dot - n->s);
		if (l < sizeof(a)) {
			memcpy(a, n->s, l);
			a[l] = 0;
			if (parse_long(a, &hi) && parse_long(dot + 1, &lo) && hi >= 0 && hi <= 65535 &&
			    lo >= 0 && lo <= 65535 && (hi || lo)) {
				*out = (uint32_t)(hi << 16 | lo);
				return true;
			}
		}
	}
	ferr(d, n, key, "invalid AS number (1-4294967295, or asdot X.Y)");
	return false;
}

/* A Go duration ("120s", "2m", "1m30s", "1h"), whole seconds. */
static bool node_duration(struct dec *d, const struct tn *n, const char *key, uint32_t *out)
{
	const char *s = n->type == T_STR ? n->s : "";
	uint64_t total = 0;
	bool any = false;
	while (*s) {
		char *end;
		errno = 0;
		unsigned long v = strtoul(s, &end, 10);
		if (end == s || errno)
			goto bad;
		uint64_t mul;
		if (*end == 'h')
			mul = 3600, end++;
		else if (*end == 'm' && end[1] == 's')
			mul = 0, end += 2; /* milliseconds: below a second, ignored */
		else if (*end == 'm')
			mul = 60, end++;
		else if (*end == 's')
			mul = 1, end++;
		else
			goto bad;
		total += (uint64_t)v * mul;
		if (total > UINT32_MAX)
			goto bad;
		any = true;
		s = end;
	}
	if (!any)
		goto bad;
	*out = (uint32_t)total;
	return true;
bad:
	ferr(d, n, key, "invalid duration (e.g. \"120s\", \"2m\")");
	return false;
}

/* spec.<key>: [{cidr: ...}] */
static size_t get_cidr_list(struct dec *d, const struct tn *spec, const char *key,
			    struct ipprefix **out)
{
	const struct tn *l = get_seq(d, spec, key);
	size_t n = 0;
	if (!l || !l->n)
		return 0;
	size_t m = path_push(d, key);
	*out = xcalloc(l->n, sizeof(**out));
	for (size_t i = 0; i < l->n; i++) {
		size_t mi = path_idx(d, i);
		const struct tn *e = l->v[i];
		const struct tn *c = e->type == T_MAP ? lookup(e, "cidr") : NULL;
		if (e->type != T_MAP)
			ferr(d, e, NULL, "must be a mapping with a cidr");
		else if (!c)
			missing(d, e, "cidr");
		else if (node_cidr_parse(d, c, "cidr", &(*out)[n]))
			n++;
		path_pop(d, mi);
	}
	path_pop(d, m);
	return n;
}

static void decode_bgpconf(struct dec *d, const struct tn *root, struct bgpconfig_obj *b)
{
	const struct tn *spec = get_map(d, root, "spec"), *n;
	size_t m = path_push(d, "spec");
	b->node_mesh = get_bool(d, spec, "nodeToNodeMeshEnabled", true);
	if ((n = lookup(spec, "asNumber")))
		node_asn(d, n, "asNumber", &b->as_number);
	if ((n = lookup(spec, "nodeMeshMaxRestartTime")))
		node_duration(d, n, "nodeMeshMaxRestartTime", &b->mesh_restart_time);
	long v;
	if (get_int(d, spec, "listenPort", 1, 65535, &v))
		b->listen_port = (uint16_t)v;
	b->nsvc_cluster = get_cidr_list(d, spec, "serviceClusterIPs", &b->svc_cluster);
	b->nsvc_external = get_cidr_list(d, spec, "serviceExternalIPs", &b->svc_external);
	b->nsvc_lb = get_cidr_list(d, spec, "serviceLoadBalancerIPs", &b->svc_lb);
	path_pop(d, m);
}

/* "10.0.0.1", "10.0.0.1:1790", "fd00::1", "[fd00::1]:1790" */
static void node_peer_ip(struct dec *d, const struct tn *n, struct bgppeer_obj *b)
{
	const char *s = node_str(d, n, "peerIP");
	if (!s)
		return;
	char host[IP_STRLEN];
	const char *port = NULL;
	size_t hl;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		hl = close ? (size_t)(close - s - 1) : sizeof(host);
		if (close && close[1] == ':')
			port = close + 2;
		else if (close && close[1])
			hl = sizeof(host);
		s++;
	} else {
		const char *colon = strchr(s, ':');
		bool v4port = colon && !strchr(colon + 1, ':');
		hl = v4port ? (size_t)(colon - s) : strlen(s);
		port = v4port ? colon + 1 : NULL;
	}
	long p = 0;
	if (hl >= sizeof(host) || (port && (!parse_long(port, &p) || p < 1 || p > 65535))) {
		ferr(d, n, "peerIP", "invalid peer address \"%s\" (IP, IP:port or [IPv6]:port)",
		     n->s);
		return;
	}
	memcpy(host, s, hl);
	host[hl] = 0;
	if (ip_parse(host, &b->peer_ip))
		ferr(d, n, "peerIP", "invalid IP address \"%s\"", host);
	b->port = (uint16_t)p;
}

static void decode_bgppeer(struct dec *d, const struct tn *root, struct bgppeer_obj *b)
{
	const struct tn *spec = get_map(d, root, "spec"), *n;
	size_t m = path_push(d, "spec");
	if ((n = lookup(spec, "peerIP")))
		node_peer_ip(d, n, b);
	if ((n = lookup(spec, "asNumber")))
		node_asn(d, n, "asNumber", &b->as_number);
	else if (lookup(spec, "peerIP"))
		missing(d, spec, "asNumber");
	b->node = dup_str(d, spec, "node");
	b->node_selector = dup_str(d, spec, "nodeSelector");
	b->peer_selector = dup_str(d, spec, "peerSelector");
	if (spec && !lookup(spec, "peerIP") && !b->peer_selector)
		ferr(d, spec, "peerIP", "required (or peerSelector)");
	if (b->peer_selector && lookup(spec, "peerIP"))
		ferr(d, lookup(spec, "peerSelector"), "peerSelector",
		     "cannot be combined with peerIP");
	if (b->node && b->node_selector)
		ferr(d, lookup(spec, "nodeSelector"), "nodeSelector", "cannot be combined with node");
	if ((n = lookup(spec, "password"))) {
		size_t mp = path_push(d, "password");
		if (n->type == T_STR) {
			b->password = xstrdup(n->s);
			if (strlen(b->password) > 80)
				ferr(d, n, NULL, "at most 80 characters (TCP MD5)");
		} else if (n->type == T_MAP) {
			const struct tn *ref = get_map(d, n, "secretKeyRef");
			size_t mr = path_push(d, "secretKeyRef");
			b->password_secret = dup_str(d, ref, "name");
			b->password_key = dup_str(d, ref, "key");
			if (!ref)
				missing(d, n, NULL);
			else if (!b->password_secret)
				missing(d, ref, "name");
			else if (!b->password_key)
				missing(d, ref, "key");
			path_pop(d, mr);
		} else {
			ferr(d, n, NULL, "must be a string or {secretKeyRef: {name, key}}");
		}
		path_pop(d, mp);
	}
	b->keep_original_next_hop = get_bool(d, spec, "keepOriginalNextHop", false);
	long v;
	if (get_int(d, spec, "ttlSecurity", 0, 254, &v))
		b->ttl_security = (uint8_t)v;
	if ((n = lookup(spec, "maxRestartTime")))
		node_duration(d, n, "maxRestartTime", &b->max_restart_time);
	b->source_address = dup_str(d, spec, "sourceAddress");
	if (b->source_address && strcmp(b->source_address, "UseNodeIP") &&
	    strcmp(b->source_address, "None"))
		ferr(d, lookup(spec, "sourceAddress"), "sourceAddress",
		     "\"%s\": want UseNodeIP or None", b->source_address);
	path_pop(d, m);
}

static size_t get_str_list(struct dec *d, const struct tn *m, const char *key, char ***out)
{
	const struct tn *l = get_seq(d, m, key);
	size_t n = 0;
	if (!l || !l->n)
		return 0;
	size_t mk = path_push(d, key);
	*out = xcalloc(l->n, sizeof(char *));
	for (size_t i = 0; i < l->n; i++) {
		size_t mi = path_idx(d, i);
		const char *s = node_str(d, l->v[i], NULL);
		if (s)
			(*out)[n++] = xstrdup(s);
		path_pop(d, mi);
	}
	path_pop(d, mk);
	return n;
}

/* "A:B" (16 bits each) into *std, or "large:A:B:C" into lg[3].  1, 3, or 0 (bad). */
static int parse_community(const char *s, uint32_t *std, uint32_t *lg)
{
	unsigned long v[3];
	int used = -1;
	if (strchr(s, '-') || strchr(s, ' '))
		return 0;
	if (!strncmp(s, "large:", 6)) {
		if (sscanf(s + 6, "%lu:%lu:%lu%n", &v[0], &v[1], &v[2], &used) != 3 || s[6 + used])
			return 0;
		for (int i = 0; i < 3; i++) {
			if (v[i] > UINT32_MAX)
				return 0;
			lg[i] = (uint32_t)v[i];
		}
		return 3;
	}
	if (sscanf(s, "%lu:%lu%n", &v[0], &v[1], &used) != 2 || s[used] || v[0] > 65535 ||
	    v[1] > 65535)
		return 0;
	*std = (uint32_t)(v[0] << 16 | v[1]);
	return 1;
}

static void decode_bgpadv(struct dec *d, const struct tn *root, struct bgpadv_obj *b)
{
	const struct tn *spec = get_map(d, root, "spec");
	size_t m = path_push(d, "spec");
	b->npools = get_str_list(d, spec, "ipAddressPools", &b->pools);
	b->npeers = get_str_list(d, spec, "peers", &b->peers);
	char **comms = NULL;
	size_t nc = get_str_list(d, spec, "communities", &comms);
	if (nc) {
		b->comm = xcalloc(nc, 4);
		b->lcomm = xcalloc(nc, 12);
	}
	size_t mc = path_push(d, "communities");
	for (size_t i = 0; i < nc; i++) {
		int r = parse_community(comms[i], &b->comm[b->ncomm], &b->lcomm[3 * b->nlcomm]);
		if (r == 1)
			b->ncomm++;
		else if (r == 3)
			b->nlcomm++;
		else {
			size_t mi = path_idx(d, i);
			ferr(d, get_seq(d, spec, "communities")->v[i], NULL,
			     "invalid community \"%s\" (want A:B or large:A:B:C; Community "
			     "aliases are not supported)",
			     comms[i]);
			path_pop(d, mi);
		}
		free(comms[i]);
	}
	path_pop(d, mc);
	free(comms);
	long v;
	b->aggregation_length = 32;
	b->aggregation_length_v6 = 128;
	if (get_int(d, spec, "aggregationLength", 0, 32, &v))
		b->aggregation_length = (uint8_t)v;
	if (get_int(d, spec, "aggregationLengthV6", 0, 128, &v))
		b->aggregation_length_v6 = (uint8_t)v;
	if (get_int(d, spec, "localPref", 0, 4294967295L, &v)) {
		b->has_local_pref = true;
		b->local_pref = (uint32_t)v;
	}
	const struct tn *ns = get_seq(d, spec, "nodeSelectors");
	if (ns && ns->n) {
		size_t mn = path_push(d, "nodeSelectors");
		b->node_selectors = xcalloc(ns->n, sizeof(*b->node_selectors));
		for (size_t i = 0; i < ns->n; i++) {
			size_t mi = path_idx(d, i);
			if (ns->v[i]->type != T_MAP)
				ferr(d, ns->v[i], NULL, "must be a label selector");
			else
				node_label_selector(d, ns->v[i], NULL,
						    &b->node_selectors[b->nnode_selectors++]);
			path_pop(d, mi);
		}
		path_pop(d, mn);
	}
	path_pop(d, m);
}

/* ------------------------------------------------------------------------------------------
 * Secret (v1): only data and stringData, for BGPPeer password.secretKeyRef */

/* Standard base64 (with padding, as Kubernetes writes it) into a new NUL-terminated string;
 * NULL when it is not base64 or the value holds a NUL byte. */
static char *b64_text(const char *s)
{
	size_t n = strlen(s);
	if (n % 4)
		return NULL;
	unsigned char *out = xmalloc(n / 4 * 3 + 1);
	int len = n ? EVP_DecodeBlock(out, (const unsigned char *)s, (int)n) : 0;
	if (len < 0) {
		free(out);
		return NULL;
	}
	for (size_t i = n; i > 0 && s[i - 1] == '='; i--)
		len--; /* EVP_DecodeBlock counts the padding as zero bytes */
	out[len] = 0;
	if (memchr(out, 0, (size_t)len)) {
		free(out);
		return NULL;
	}
	return (char *)out;
}

static void decode_secret(struct dec *d, const struct tn *root, struct secret_obj *s)
{
	struct labels data = {0}, sd = {0};
	const struct tn *n;
	if ((n = lookup(root, "stringData")))
		node_labels(d, n, "stringData", &sd, false);
	if ((n = lookup(root, "data"))) {
		node_labels(d, n, "data", &data, false);
		size_t m = path_push(d, "data");
		for (size_t i = 0; i < data.n; i++) {
			char *v = b64_text(data.kv[i].value);
			if (!v)
				ferr(d, n, data.kv[i].key,
				     "not base64 text (padded standard base64, no NUL bytes)");
			free(data.kv[i].value);
			data.kv[i].value = v ? v : xstrdup("");
		}
		path_pop(d, m);
	}
	/* stringData wins, as the API server merges it into data */
	s->data.kv = data.n + sd.n ? xcalloc(data.n + sd.n, sizeof(*s->data.kv)) : NULL;
	for (size_t i = 0; i < sd.n; i++)
		s->data.kv[s->data.n++] = sd.kv[i];
	for (size_t i = 0; i < data.n; i++) {
		if (labels_get(&sd, data.kv[i].key)) {
			free(data.kv[i].key);
			free(data.kv[i].value);
		} else {
			s->data.kv[s->data.n++] = data.kv[i];
		}
	}
	free(sd.kv);
	free(data.kv);
	if (s->data.n > 1)
		qsort(s->data.kv, s->data.n, sizeof(*s->data.kv), kv_cmp);
}

/* ------------------------------------------------------------------------------------------
 * documents */

enum { K_DEPLOYMENT = KIND__COUNT };

static const struct {
	const char *group, *kind;
	int k;
} known[] = {
    {"", "Namespace", KIND_NAMESPACE},
    {"", "Node", KIND_NODE},
    {"", "Pod", KIND_POD},
    {"", "Service", KIND_SERVICE},
    {"discovery.k8s.io", "EndpointSlice", KIND_ENDPOINTSLICE},
    {"networking.k8s.io", "NetworkPolicy", KIND_NETWORKPOLICY},
    {"metallb.io", "IPAddressPool", KIND_IPADDRESSPOOL},
    {"metallb.io", "BGPAdvertisement", KIND_BGPADVERTISEMENT},
    {"crd.projectcalico.org", "BGPConfiguration", KIND_BGPCONFIGURATION},
    {"projectcalico.org", "BGPConfiguration", KIND_BGPCONFIGURATION},
    {"crd.projectcalico.org", "BGPPeer", KIND_BGPPEER},
    {"projectcalico.org", "BGPPeer", KIND_BGPPEER},
    {"", "Secret", KIND_SECRET},
    {"apps", "Deployment", K_DEPLOYMENT},
};

static void finish(struct dec *d, struct object *o)
{
	o->meta.line = d->line;
	o->meta.file = intern(d, d->file);
	o->hash = object_hash(o);
	objlist_push(d->out, o);
}

static void decode_deployment(struct dec *d, const struct tn *root, struct object *tmpl)
{
	long replicas = 1;
	const struct tn *spec = get_map(d, root, "spec");
	size_t m = path_push(d, "spec");
	if (lookup(spec, "replicas"))
		get_int(d, spec, "replicas", 0, MAX_REPLICAS, &replicas);
	const struct tn *t = get_map(d, spec, "template");
	size_t mt = path_push(d, "template");
	const struct tn *tm = get_map(d, t, "metadata");
	size_t mm = path_push(d, "metadata");
	get_labels(d, tm, "labels", &tmpl->meta.labels, true);
	get_labels(d, tm, "annotations", &tmpl->meta.annotations, false);
	path_pop(d, mm);
	const struct tn *ts = get_map(d, t, "spec");
	size_t ms = path_push(d, "spec");
	decode_pod_spec(d, ts, &tmpl->pod);
	path_pop(d, ms);
	path_pop(d, mt);
	path_pop(d, m);
	if (d->nerr)
		return;
	for (long i = 0; i < replicas; i++) {
		struct object *p = object_clone(tmpl);
		free(p->meta.name);
		p->meta.name = xasprintf("%s-%ld", tmpl->meta.name, i);
		finish(d, p);
	}
}

/* One object (a document, or an item of a List).  dkind/dapi: defaults for the items of a
 * typed list (PodList ...), whose items carry no kind of their own. */
static void decode_object(struct dec *d, const struct tn *root, const char *dkind, const char *dapi)
{
	d->nerr = 0;
	d->obj[0] = 0;
	d->plen = 0;
	d->path[0] = 0;
	d->line = root->line;
	d->decoded++;
	if (root->type != T_MAP) {
		ferr(d, root, NULL, "not a Kubernetes object (expected a mapping)");
		d->failed++;
		return;
	}
	const char *kind = get_str(d, root, "kind");
	const char *api = get_str(d, root, "apiVersion");
	if (!kind && !lookup(root, "kind"))
		kind = dkind;
	if (!api && !lookup(root, "apiVersion"))
		api = dapi;
	if (!kind && !d->nerr)
		ferr(d, root, "kind", "required");
	if (!api && !d->nerr)
		ferr(d, root, "apiVersion", "required");
	if (d->nerr) {
		d->failed++;
		return;
	}
	const char *slash = strchr(api, '/');
	size_t glen = slash ? (size_t)(slash - api) : 0;
	int k = -1;
	for (size_t i = 0; i < ARRAY_SIZE(known); i++)
		if (!strcmp(kind, known[i].kind) && strlen(known[i].group) == glen &&
		    !strncmp(api, known[i].group, glen))
			k = known[i].k;
	if (k < 0)
		return; /* not modelled: skipped silently */

	struct object *o = object_alloc(k == K_DEPLOYMENT ? KIND_POD : (enum kind)k);
	decode_meta(d, root, k == K_DEPLOYMENT ? KIND_POD : (enum kind)k, &o->meta);
	if (k == K_DEPLOYMENT)
		snprintf(d->obj, sizeof(d->obj), "Deployment/%s/%s", o->meta.ns ? o->meta.ns : "?",
			 o->meta.name ? o->meta.name : "?");
	switch (k) {
	case KIND_NODE:
		decode_node(d, root, &o->node);
		break;
	case KIND_POD:
		decode_pod(d, root, &o->pod);
		break;
	case KIND_SERVICE:
		decode_service(d, root, &o->svc);
		break;
	case KIND_ENDPOINTSLICE:
		decode_eps(d, root, &o->meta, &o->eps);
		break;
	case KIND_NETWORKPOLICY:
		decode_netpol(d, root, &o->np);
		break;
	case KIND_IPADDRESSPOOL:
		decode_pool(d, root, &o->pool);
		break;
	case KIND_BGPCONFIGURATION:
		decode_bgpconf(d, root, &o->bgpconf);
		break;
	case KIND_BGPPEER:
		decode_bgppeer(d, root, &o->bgppeer);
		break;
	case KIND_BGPADVERTISEMENT:
		decode_bgpadv(d, root, &o->bgpadv);
		break;
	case KIND_SECRET:
		decode_secret(d, root, &o->secret);
		break;
	case K_DEPLOYMENT:
		/* the Deployment's own labels are not the pods' */
		free(o->meta.uid);
		o->meta.uid = NULL;
		for (size_t i = 0; i < o->meta.labels.n; i++) {
			free(o->meta.labels.kv[i].key);
			free(o->meta.labels.kv[i].value);
		}
		free(o->meta.labels.kv);
		o->meta.labels.kv = NULL;
		o->meta.labels.n = 0;
		for (size_t i = 0; i < o->meta.annotations.n; i++) {
			free(o->meta.annotations.kv[i].key);
			free(o->meta.annotations.kv[i].value);
		}
		free(o->meta.annotations.kv);
		o->meta.annotations.kv = NULL;
		o->meta.annotations.n = 0;
		o->meta.line = d->line;
		if (!d->nerr)
			decode_deployment(d, root, o);
		object_free(o);
		if (d->nerr)
			d->failed++;
		return;
	default:
		break;
	}
	if (d->nerr) {
		d->failed++;
		object_free(o);
		return;
	}
	finish(d, o);
}

/* A document: an object, a List of objects, or (JSON) an array of either. */
static void decode_doc(struct dec *d, const struct tn *root, int depth)
{
	if (!root || root->type == T_NULL)
		return;
	if (root->type == T_SEQ && depth == 0) {
		for (size_t i = 0; i < root->n; i++)
			decode_doc(d, root->v[i], 1);
		return;
	}
	const struct tn *kind = lookup(root, "kind");
	const struct tn *items = lookup(root, "items");
	if (kind && kind->type == T_STR && str_has_suffix(kind->s, "List") && items &&
	    items->type == T_SEQ) {
		/* "PodList" items may omit kind; "List" items must carry their own */
		char ikind[64] = "";
		const struct tn *api = lookup(root, "apiVersion");
		if (strcmp(kind->s, "List") && strlen(kind->s) - 4 < sizeof(ikind))
			snprintf(ikind, sizeof(ikind), "%.*s", (int)(strlen(kind->s) - 4), kind->s);
		for (size_t i = 0; i < items->n; i++)
			if (items->v[i]->type != T_NULL)
				decode_object(d, items->v[i], ikind[0] ? ikind : NULL,
					      ikind[0] && api && api->type == T_STR ? api->s
										    : NULL);
		return;
	}
	decode_object(d, root, NULL, NULL);
}

/* ------------------------------------------------------------------------------------------
 * YAML (libyaml events) to tree */

struct anchor {
	const char *name;
	struct tn *node;
	struct anchor *next;
};

struct frame {
	int type;     /* T_MAP or T_SEQ */
	size_t start; /* first child in ybuild.stack */
	int line;
	const char *anchor;
};

struct ybuild {
	struct dec *d;
	struct arena arena;
	struct tn **stack;
	size_t nstack, capstack;
	struct frame frames[MAX_DEPTH];
	int depth;
	struct anchor *anchors[1024];
	size_t nanchors;
	struct tn *root;
	uint64_t alias_work;
	bool failed; /* this document is bad: skip to its end */
	size_t doc_start;
	int line_base; /* lines before the text this parser reads */
};

static void yb_reset(struct ybuild *b)
{
	arena_reset(&b->arena);
	b->nstack = 0;
	b->depth = 0;
	if (b->nanchors) /* 8 KB: not for every document */
		memset(b->anchors, 0, sizeof(b->anchors));
	b->nanchors = 0;
	b->root = NULL;
	b->alias_work = 0;
	b->failed = false;
}

__attribute__((format(printf, 3, 4))) static void yb_fail(struct ybuild *b, int line,
							  const char *fmt, ...)
{
	if (b->failed)
		return;
	b->failed = true;
	b->d->failed++;
	b->d->obj[0] = 0;
	va_list ap;
	va_start(ap, fmt);
	report(b->d, line, NULL, fmt, ap);
	va_end(ap);
}

static void yb_push(struct ybuild *b, struct tn *n)
{
	if (b->depth == 0) {
		b->root = n;
		return;
	}
	if (b->nstack == b->capstack)
		b->stack = xrealloc(b->stack, (b->capstack = b->capstack ? b->capstack * 2 : 256) *
						  sizeof(n));
	b->stack[b->nstack++] = n;
}

static unsigned anchor_bucket(const char *name)
{
	return (unsigned)(fnv1a64(name, strlen(name), FNV_SEED) % 1024);
}

static void yb_anchor(struct ybuild *b, const char *name, struct tn *n, int line)
{
	if (!name)
		return;
	if (++b->nanchors > MAX_ANCHORS) {
		yb_fail(b, line, "more than %d anchors in one document", MAX_ANCHORS);
		return;
	}
	struct anchor *a = arena_alloc(&b->arena, sizeof(*a));
	unsigned h = anchor_bucket(name);
	a->name = name;
	a->node = n;
	a->next = b->anchors[h]; /* a redefined anchor shadows the older one */
	b->anchors[h] = a;
}

static bool yb_charge(struct ybuild *b, uint64_t work, int line)
{
	b->alias_work += work;
	if (b->alias_work > MAX_ALIAS_WORK) {
		yb_fail(b, line, "aliases expand to too many nodes (more than %u)", MAX_ALIAS_WORK);
		return false;
	}
	return true;
}

static bool pairs_have_key(struct tn **v, size_t n, const struct tn *k)
{
	if (k->type != T_STR)
		return false;
	for (size_t i = 0; i < n; i++)
		if (key_is(v[2 * i], k->s))
			return true;
	return false;
}

/* `<<` merge keys: the merged pairs go first and explicit ones after, so lookup()'s "last
 * wins" gives explicit keys precedence; among several merged maps the first one wins. */
static void yb_merge(struct ybuild *b, struct tn *m)
{
	size_t nd = 0, nm = 0;
	for (size_t i = 0; i < m->n; i++)
		if (!(m->v[2 * i]->type == T_STR && m->v[2 * i]->plain &&
		      !strcmp(m->v[2 * i]->s, "<<")))
			nd++;
	if (nd == m->n)
		return;
	size_t cap = nd;
	for (size_t i = 0; i < m->n; i++) {
		const struct tn *k = m->v[2 * i], *v = m->v[2 * i + 1];
		if (!(k->type == T_STR && k->plain && !strcmp(k->s, "<<")))
			continue;
		if (v->type == T_MAP)
			cap += v->n;
		else if (v->type == T_SEQ)
			for (size_t j = 0; j < v->n; j++)
				cap += v->v[j]->type == T_MAP ? v->v[j]->n : 0;
	}
	struct tn **merged = arena_alloc(&b->arena, 2 * cap * sizeof(struct tn *) + 1);
	struct tn **direct = merged + 2 * (cap - nd);
	for (size_t i = 0, j = 0; i < m->n; i++)
		if (!(m->v[2 * i]->type == T_STR && m->v[2 * i]->plain &&
		      !strcmp(m->v[2 * i]->s, "<<"))) {
			direct[2 * j] = m->v[2 * i];
			direct[2 * j + 1] = m->v[2 * i + 1];
			j++;
		}
	for (size_t i = 0; i < m->n; i++) {
		const struct tn *k = m->v[2 * i], *v = m->v[2 * i + 1];
		if (!(k->type == T_STR && k->plain && !strcmp(k->s, "<<")))
			continue;
		size_t nsrc = v->type == T_SEQ ? v->n : 1;
		for (size_t s = 0; s < nsrc; s++) {
			const struct tn *src = v->type == T_SEQ ? v->v[s] : v;
			if (src->type != T_MAP) {
				yb_fail(b, src->line,
					"a merge key (<<) takes a mapping or a list "
					"of mappings");
				return;
			}
			if (!yb_charge(b, (uint64_t)src->n * (nd + nm + 1), src->line))
				return;
			for (size_t j = 0; j < src->n; j++) {
				struct tn *sk = src->v[2 * j];
				if (pairs_have_key(direct, nd, sk) ||
				    pairs_have_key(merged, nm, sk))
					continue;
				merged[2 * nm] = sk;
				merged[2 * nm + 1] = src->v[2 * j + 1];
				nm++;
			}
		}
	}
	/* close the gap between the merged pairs and the direct ones */
	memmove(merged + 2 * nm, direct, 2 * nd * sizeof(struct tn *));
	m->v = merged;
	m->n = nm + nd;
}

/* A plain scalar meaning null: empty, ~, null, Null or NULL (v has len bytes and a NUL). */
static bool plain_null(const char *v, size_t len)
{
	switch (len) {
	case 0:
		return true;
	case 1:
		return v[0] == '~';
	case 4:
		return !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
	default:
		return false;
	}
}

static void yb_event(struct ybuild *b, const yaml_event_t *ev)
{
	int line = b->line_base + (int)ev->start_mark.line + 1;
	if (b->failed)
		return;
	if (ev->end_mark.index > b->doc_start + MAX_DOC_BYTES) {
		yb_fail(b, line, "document larger than %u MiB", MAX_DOC_BYTES >> 20);
		return;
	}
	switch (ev->type) {
	case YAML_SCALAR_EVENT: {
		const char *v = (const char *)ev->data.scalar.value;
		size_t len = ev->data.scalar.length;
		const char *tag = (const char *)ev->data.scalar.tag;
		bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		if (memchr(v, 0, len)) {
			yb_fail(b, line, "a string contains a NUL character");
			return;
		}
		struct tn *n = arena_alloc(&b->arena, sizeof(*n));
		memset(n, 0, sizeof(*n));
		n->line = line;
		n->size = 1;
		if ((plain && plain_null(v, len)) || (tag && !strcmp(tag, YAML_NULL_TAG))) {
			n->type = T_NULL;
		} else {
			n->type = T_STR;
			n->plain = plain && !(tag && !strcmp(tag, YAML_STR_TAG));
			n->s = arena_strndup(&b->arena, v, len);
		}
		if (ev->data.scalar.anchor)
			yb_anchor(b,
				  arena_strndup(&b->arena, (const char *)ev->data.scalar.anchor,
						strlen((const char *)ev->data.scalar.anchor)),
				  n, line);
		yb_push(b, n);
		break;
	}
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: {
		if (b->depth >= MAX_DEPTH) {
			yb_fail(b, line, "nesting deeper than %d levels", MAX_DEPTH);
			return;
		}
		const yaml_char_t *anchor = ev->type == YAML_SEQUENCE_START_EVENT
						? ev->data.sequence_start.anchor
						: ev->data.mapping_start.anchor;
		struct frame *f = &b->frames[b->depth++];
		f->type = ev->type == YAML_SEQUENCE_START_EVENT ? T_SEQ : T_MAP;
		f->start = b->nstack;
		f->line = line;
		f->anchor = anchor ? arena_strndup(&b->arena, (const char *)anchor,
						   strlen((const char *)anchor))
				   : NULL;
		break;
	}
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT: {
		if (b->depth == 0)
			return;
		struct frame *f = &b->frames[--b->depth];
		size_t cnt = b->nstack - f->start;
		struct tn *n = arena_alloc(&b->arena, sizeof(*n));
		memset(n, 0, sizeof(*n));
		n->type = (uint8_t)f->type;
		n->line = f->line;
		n->n = f->type == T_MAP ? cnt / 2 : cnt;
		n->v = arena_alloc(&b->arena, cnt * sizeof(struct tn *) + 1);
		if (cnt)
			memcpy(n->v, b->stack + f->start, cnt * sizeof(struct tn *));
		n->size = 1;
		for (size_t i = 0; i < cnt; i++)
			n->size = sat_add(n->size, n->v[i]->size);
		b->nstack = f->start;
		if (f->type == T_MAP)
			yb_merge(b, n);
		if (b->failed)
			return;
		yb_anchor(b, f->anchor, n, line);
		yb_push(b, n);
		break;
	}
	case YAML_ALIAS_EVENT: {
		const char *name = (const char *)ev->data.alias.anchor;
		struct anchor *a = b->anchors[anchor_bucket(name)];
		while (a && strcmp(a->name, name))
			a = a->next;
		if (!a) {
			yb_fail(b, line, "unknown anchor \"%s\"", name);
			return;
		}
		/* the tree may share the node (it is read-only); the budget bounds the work of
		 * walking what it expands to */
		if (yb_charge(b, a->node->size, line))
			yb_push(b, a->node);
		break;
	}
	default:
		break;
	}
}

static int line_of_offset(const char *data, size_t len, size_t off)
{
	int line = 1;
	for (size_t i = 0; i < off && i < len; i++)
		line += data[i] == '\n';
	return line;
}

/* The start of the first document marker line ("---") at or after `from`, or len.  A line
 * starting with "---" ends any document, even inside a block scalar, so after a bad document
 * parsing can resume there. */
static size_t next_doc_marker(const char *data, size_t len, size_t from)
{
	for (size_t q = from; q + 3 <= len; q++) {
		if (q > 0 && data[q - 1] != '\n') {
			const char *nl = memchr(data + q, '\n', len - q);
			if (!nl)
				break;
			q = (size_t)(nl - data); /* the loop's q++ moves to the next line */
			continue;
		}
		if (!memcmp(data + q, "---", 3) && (q + 3 == len || strchr(" \t\r\n", data[q + 3])))
			return q;
	}
	return len;
}

/* One libyaml parser over data[off..]; returns where to resume (a document marker after a
 * document that could not be read to its end), or len when the input is done. */
static size_t yaml_pass(struct dec *d, struct ybuild *b, const char *data, size_t len, size_t off,
			bool *syntax_error)
{
	yaml_parser_t p;
	yaml_event_t ev;
	size_t resume = len;
	if (!yaml_parser_initialize(&p))
		return len;
	yaml_parser_set_input_string(&p, (const unsigned char *)data + off, len - off);
	b->doc_start = 0;
	for (bool done = false; !done;) {
		if (!yaml_parser_parse(&p, &ev)) {
			size_t at =
			    p.error == YAML_READER_ERROR ? p.problem_offset : p.problem_mark.index;
			int line = p.error == YAML_READER_ERROR
				       ? line_of_offset(data, len, off + p.problem_offset)
				       : b->line_base + (int)p.problem_mark.line + 1;
			if (p.context)
				gerr(d, line, "YAML syntax error: %s (%s at line %d)",
				     p.problem ? p.problem : "?", p.context,
				     b->line_base + (int)p.context_mark.line + 1);
			else
				gerr(d, line, "YAML syntax error: %s", p.problem ? p.problem : "?");
			if (!b->failed)
				d->failed++;
			*syntax_error = true;
			resume = next_doc_marker(data, len, off + at);
			break;
		}
		switch (ev.type) {
		case YAML_DOCUMENT_START_EVENT:
			yb_reset(b);
			b->doc_start = ev.start_mark.index;
			break;
		case YAML_DOCUMENT_END_EVENT:
			if (!b->failed)
				decode_doc(d, b->root, 0);
			else
				d->decoded++;
			yb_reset(b);
			break;
		case YAML_STREAM_END_EVENT:
			d->end_line = b->line_base + (int)ev.start_mark.line;
			done = true;
			break;
		default:
			yb_event(b, &ev);
			if (b->failed) {
				/* skip the rest of this document without parsing it: libyaml
				 * slows down quadratically on absurd nesting */
				d->decoded++;
				resume = next_doc_marker(data, len, off + ev.end_mark.index);
				done = true;
			}
		}
		yaml_event_delete(&ev);
	}
	yb_reset(b);
	yaml_parser_delete(&p);
	if (resume <= off) /* no progress: the marker line itself is the problem */
		resume = next_doc_marker(data, len, off + 1);
	return resume;
}

/* The YAML stream data[0..len), whose first line is line line_base + 1 of the file. */
static int decode_yaml_stream(struct dec *d, const char *data, size_t len, int line_base)
{
	struct ybuild b = {.d = d, .line_base = line_base};
	bool syntax_error = false;
	size_t counted = 0;
	for (size_t off = 0; off < len;) {
		for (; counted < off; counted++)
			b.line_base += data[counted] == '\n';
		off = yaml_pass(d, &b, data, len, off, &syntax_error);
	}
	arena_free(&b.arena);
	free(b.stack);
	/* nothing readable at all: tell the caller the file as a whole is broken */
	if (syntax_error && d->decoded == 0)
		return -EINVAL;
	return d->failed;
}

/* ------------------------------------------------------------------------------------------
 * a large YAML file on several threads
 *
 * libyaml is most of the time a large file takes, and one parser is sequential; but a line
 * "---" at the start of a line is always a document boundary in YAML (or a syntax error), so
 * a file can be cut there into parts that are parsed at once, each by its own parser into its
 * own object list, and the lists joined in file order.  The parts are several per thread and
 * handed out in order as threads come for more, so a thread the machine keeps waiting does
 * not hold the others up.  Each part counts its lines from 0; after the join an object's line
 * is moved down by the lines of the parts before its own, as libyaml counted them.  Only a
 * clean file takes this path: if any part reports anything, the results are dropped and the
 * whole file is decoded again in one pass, so the errors (their order, their lines, the
 * documents skipped after a syntax error) are exactly those of one pass. */

#define MAX_THREADS 4
#define MAX_PARTS 64
#define PART_BYTES (256u << 10) /* at least, unless the file is cut for a test */

static struct {
	size_t min_bytes; /* smaller files: one pass */
	int threads;	  /* 0: the CPUs this process may run on, at most MAX_THREADS */
} par = {1u << 20, 0};
static unsigned parted; /* files decoded in parts (for tests) */

unsigned manifest_set_parallel(size_t min_bytes, int threads)
{
	par.min_bytes = min_bytes;
	par.threads = threads;
	return __atomic_exchange_n(&parted, 0, __ATOMIC_RELAXED);
}

struct part {
	struct dec d;
	struct objlist out;
	const char *data;
	size_t len;
	int r;
	bool noisy; /* something was reported */
};

struct parts {
	struct part *v;
	int n;
	int next; /* the next part to take (atomic) */
	bool bad; /* a part was not clean: the rest is not worth parsing (atomic) */
};

static void part_diag(const struct diag *dg, void *arg)
{
	(void)dg;
	((struct part *)arg)->noisy = true;
}

static void *parts_run(void *arg)
{
	struct parts *ps = arg;
	for (;;) {
		int k = __atomic_fetch_add(&ps->next, 1, __ATOMIC_RELAXED);
		if (k >= ps->n || __atomic_load_n(&ps->bad, __ATOMIC_RELAXED))
			return NULL;
		struct part *p = &ps->v[k];
		p->r = decode_yaml_stream(&p->d, p->data, p->len, 0);
		if (p->noisy || p->r || p->d.failed)
			__atomic_store_n(&ps->bad, true, __ATOMIC_RELAXED);
	}
}

static int threads_wanted(void)
{
	int n = par.threads;
	if (n <= 0) {
		cpu_set_t cpus;
		n = sched_getaffinity(0, sizeof(cpus), &cpus) ? 1 : CPU_COUNT(&cpus);
	}
	return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n;
}

/* 0 with every object of the file in d->out, or -1 (nothing added): decode it in one pass. */
static int decode_yaml_parts(struct dec *d, const char *data, size_t len)
{
	int threads = threads_wanted();
	if (threads < 2 || len < par.min_bytes)
		return -1;
	/* UTF-16 (a byte order mark; libyaml reads anything else as UTF-8) has no "\n---" */
	if (len >= 2 && ((data[0] == '\xff' && data[1] == '\xfe') ||
			 (data[0] == '\xfe' && data[1] == '\xff')))
		return -1;
	size_t want = len / ((size_t)threads * 8) + 1, least = par.min_bytes / 4;
	if (least > PART_BYTES)
		least = PART_BYTES;
	if (want < least)
		want = least;
	struct parts ps = {.v = xcalloc(MAX_PARTS, sizeof(*ps.v))};
	for (size_t at = 0; at < len && ps.n < MAX_PARTS;) {
		size_t end = ps.n + 1 < MAX_PARTS && len - at > want
				 ? next_doc_marker(data, len, at + want)
				 : len;
		struct part *p = &ps.v[ps.n++];
		p->d = (struct dec){.file = d->file, .fn = part_diag, .arg = p, .out = &p->out};
		p->data = data + at;
		p->len = end - at;
		at = end;
	}
	if (ps.n < 2) {
		free(ps.v);
		return -1;
	}
	if (threads > ps.n)
		threads = ps.n;
	pthread_t th[MAX_THREADS];
	int started = 0;
	sigset_t all, old;
	sigfillset(&all);
	/* the workers take no signals: those are the main loop's */
	pthread_sigmask(SIG_SETMASK, &all, &old);
	while (started < threads - 1 && !pthread_create(&th[started], NULL, parts_run, &ps))
		started++;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	parts_run(&ps);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);

	bool clean = !ps.bad;
	int lines = 0;
	for (int k = 0; k < ps.n; k++) {
		struct part *p = &ps.v[k];
		for (size_t i = 0; clean && i < p->out.n; i++) {
			p->out.v[i]->meta.line += lines;
			objlist_push(d->out, p->out.v[i]);
		}
		lines += p->d.end_line;
		if (clean)
			free(p->out.v);
		else
			objlist_free(&p->out);
	}
	free(ps.v);
	if (!clean)
		return -1;
	__atomic_add_fetch(&parted, 1, __ATOMIC_RELAXED);
	return 0;
}

static int decode_yaml(struct dec *d, const char *data, size_t len)
{
	if (decode_yaml_parts(d, data, len) == 0)
		return 0;
	return decode_yaml_stream(d, data, len, 0);
}

/* ------------------------------------------------------------------------------------------
 * JSON (json-c) to tree.  json-c keeps no positions, so a light scan of the text records the
 * line of every value in document order; the conversion, walking json-c's tree in the same
 * order, takes lines from it.  (Only duplicate keys, which json-c folds, make the counts
 * differ; then lines are left unknown rather than wrong.) */

struct jscan {
	const char *p;
	size_t len, pos;
	int line;
	int *lines;
	size_t n, cap;
	bool bad;
};

static void js_ws(struct jscan *s)
{
	while (s->pos < s->len) {
		char c = s->p[s->pos];
		if (c == '\n')
			s->line++;
		else if (c != ' ' && c != '\t' && c != '\r')
			return;
		s->pos++;
	}
}

static void js_string(struct jscan *s)
{
	char q = s->p[s->pos++];
	while (s->pos < s->len && s->p[s->pos] != q) {
		if (s->p[s->pos] == '\\')
			s->pos++;
		else if (s->p[s->pos] == '\n')
			s->line++;
		s->pos++;
	}
	s->pos++;
}

static void js_value(struct jscan *s, int depth)
{
	js_ws(s);
	if (s->bad || s->pos >= s->len || depth > MAX_DEPTH + 1) {
		s->bad = true;
		return;
	}
	if (s->n == s->cap)
		s->lines = xrealloc(s->lines, (s->cap = s->cap ? s->cap * 2 : 256) * sizeof(int));
	s->lines[s->n++] = s->line;
	char c = s->p[s->pos];
	if (c == '{' || c == '[') {
		char close = c == '{' ? '}' : ']';
		s->pos++;
		js_ws(s);
		if (s->pos < s->len && s->p[s->pos] == close) {
			s->pos++;
			return;
		}
		while (!s->bad) {
			if (c == '{') {
				js_ws(s);
				if (s->pos >= s->len ||
				    (s->p[s->pos] != '"' && s->p[s->pos] != '\'')) {
					s->bad = true;
					return;
				}
				js_string(s);
				js_ws(s);
				if (s->pos >= s->len || s->p[s->pos] != ':') {
					s->bad = true;
					return;
				}
				s->pos++;
			}
			js_value(s, depth + 1);
			js_ws(s);
			if (s->pos >= s->len) {
				s->bad = true;
				return;
			}
			if (s->p[s->pos] == ',') {
				s->pos++;
				continue;
			}
			if (s->p[s->pos] == close) {
				s->pos++;
				return;
			}
			s->bad = true;
		}
	} else if (c == '"' || c == '\'') {
		js_string(s);
	} else {
		while (s->pos < s->len && !strchr(",]} \t\r\n", s->p[s->pos]))
			s->pos++;
	}
}

static size_t json_count(json_object *j)
{
	size_t n = 1;
	if (json_object_is_type(j, json_type_object)) {
		json_object_object_foreach(j, k, v)
		{
			(void)k;
			n += json_count(v);
		}
	} else if (json_object_is_type(j, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(j); i++)
			n += json_count(json_object_array_get_idx(j, i));
	}
	return n;
}

struct jconv {
	struct arena *arena;
	const int *lines; /* NULL: unknown */
	size_t next;
	bool nul; /* a string held a NUL */
};

static struct tn *json_conv(struct jconv *c, json_object *j)
{
	struct tn *n = arena_alloc(c->arena, sizeof(*n));
	memset(n, 0, sizeof(*n));
	n->size = 1;
	n->line = c->lines ? c->lines[c->next++] : 0;
	switch (json_object_get_type(j)) {
	case json_type_null:
		n->type = T_NULL;
		break;
	case json_type_object: {
		n->type = T_MAP;
		n->n = (size_t)json_object_object_length(j);
		n->v = arena_alloc(c->arena, 2 * n->n * sizeof(struct tn *) + 1);
		size_t i = 0;
		json_object_object_foreach(j, k, v)
		{
			struct tn *kn = arena_alloc(c->arena, sizeof(*kn));
			memset(kn, 0, sizeof(*kn));
			kn->type = T_STR;
			kn->size = 1;
			kn->s = arena_strndup(c->arena, k, strlen(k));
			struct tn *vn = json_conv(c, v);
			kn->line = vn->line;
			n->v[2 * i] = kn;
			n->v[2 * i + 1] = vn;
			i++;
		}
		break;
	}
	case json_type_array:
		n->type = T_SEQ;
		n->n = json_object_array_length(j);
		n->v = arena_alloc(c->arena, n->n * sizeof(struct tn *) + 1);
		for (size_t i = 0; i < n->n; i++)
			n->v[i] = json_conv(c, json_object_array_get_idx(j, i));
		break;
	case json_type_string: {
		int len = json_object_get_string_len(j);
		const char *s = json_object_get_string(j);
		if (memchr(s, 0, (size_t)len))
			c->nul = true;
		n->type = T_STR;
		n->s = arena_strndup(c->arena, s, (size_t)len);
		break;
	}
	default: /* numbers and booleans: their JSON text, as a plain scalar */
		n->type = T_STR;
		n->plain = true;
		n->s = arena_strndup(c->arena, json_object_get_string(j),
				     strlen(json_object_get_string(j)));
		break;
	}
	return n;
}

/* data[start] is the opening '{' or '['; what precedes it is whitespace. */
static int decode_json(struct dec *d, const char *data, size_t len, size_t start)
{
	int line0 = line_of_offset(data, len, start);
	data += start;
	len -= start;
	if (len > MAX_DOC_BYTES) {
		gerr(d, 0, "JSON document larger than %u MiB", MAX_DOC_BYTES >> 20);
		return -EFBIG;
	}
	json_tokener *tok = json_tokener_new_ex(MAX_DEPTH);
	if (!tok)
		return -ENOMEM;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	json_object *j = json_tokener_parse_ex(tok, data, (int)len);
	enum json_tokener_error e = json_tokener_get_error(tok);
	size_t end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (e != json_tokener_success) {
		json_object_put(j);
		int line = line0 - 1 + line_of_offset(data, len, end);
		if (e == json_tokener_continue)
			gerr(d, line, "JSON syntax error: unexpected end of input");
		else
			gerr(d, line, "JSON syntax error: %s", json_tokener_error_desc(e));
		return -EINVAL;
	}
	for (size_t i = end; i < len; i++)
		if (!strchr(" \t\r\n", data[i])) {
			json_object_put(j);
			gerr(d, line0 - 1 + line_of_offset(data, len, i),
			     "JSON syntax error: unexpected data after the value");
			return -EINVAL;
		}

	struct jscan s = {.p = data, .len = len, .line = line0};
	js_value(&s, 0);
	struct arena arena = {0};
	struct jconv c = {.arena = &arena};
	if (!s.bad && s.n == json_count(j))
		c.lines = s.lines;
	struct tn *root = json_conv(&c, j);
	json_object_put(j);
	free(s.lines);
	if (c.nul) {
		arena_free(&arena);
		gerr(d, 0, "a JSON string contains a NUL character");
		return -EINVAL;
	}
	decode_doc(d, root, 0);
	arena_free(&arena);
	return d->failed;
}

/* ------------------------------------------------------------------------------------------
 * public API */

const char *diag_fmt(const struct diag *d, char *buf, size_t size)
{
	char line[24] = "";
	if (d->line > 0)
		snprintf(line, sizeof(line), ":%d", d->line);
	snprintf(buf, size, "%s%s: %s%s%s%s%s", d->file ? d->file : "-", line,
		 d->object ? d->object : "", d->object ? ": " : "", d->field ? d->field : "",
		 d->field ? ": " : "", d->msg ? d->msg : "");
	return buf;
}

void objlist_push(struct objlist *l, struct object *o)
{
	if (l->n == l->cap)
		l->v = xrealloc(l->v, (l->cap = l->cap ? l->cap * 2 : 16) * sizeof(*l->v));
	l->v[l->n++] = o;
}

void objlist_free(struct objlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		object_free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

int manifest_decode(const char *file, const char *data, size_t len, struct objlist *out,
		    diag_fn diag, void *arg)
{
	struct dec d = {.file = file ? file : "-", .fn = diag, .arg = arg, .out = out};
	size_t i = 0;
	if (len >= 3 && !memcmp(data, "\xef\xbb\xbf", 3))
		i = 3; /* UTF-8 byte order mark */
	while (i < len && data[i] && strchr(" \t\r\n", data[i]))
		i++;
	if (i < len && (data[i] == '{' || data[i] == '['))
		return decode_json(&d, data, len, i);
	return decode_yaml(&d, data, len);
}

int manifest_load_file(const char *path, struct objlist *out, diag_fn diag, void *arg)
{
	struct stat st;
	char *data = NULL;
	size_t len = 0;
	int r = stat(path, &st) ? -errno : 0;
	if (!r && st.st_size > (off_t)MAX_FILE_BYTES)
		r = -EFBIG;
	if (!r)
		r = file_read(path, &data, &len);
	if (r) {
		if (diag) {
			struct diag dg = {.file = path, .msg = strerror(-r)};
			diag(&dg, arg);
		}
		return r;
	}
	r = manifest_decode(path, data, len, out, diag, arg);
	free(data);
	return r;
}
