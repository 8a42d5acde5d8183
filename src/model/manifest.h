/* manifest: decode Kubernetes manifests (YAML or JSON, multi-document, kind: List)
 * into typed objects.
 *
 * A document that fails to decode is reported through `diag` with file, line, the
 * object it belongs to (when known) and the field path, and is left out; the other
 * documents of the file are still returned.  A document of a kind twill does not
 * model (Deployment, ConfigMap ...) is skipped silently, except that a Deployment's
 * pod template is expanded into Pods (see below). */
#pragma once
#include <stddef.h>

#include "model/model.h"

struct diag {
	const char *file;
	int line;	     /* 1-based, 0 unknown */
	const char *object;  /* "Service/default/web" or NULL */
	const char *field;   /* "spec.ports[0].port" or NULL */
	const char *msg;     /* why */
};
typedef void (*diag_fn)(const struct diag *d, void *arg);
/* Format "file:line: Kind/ns/name: field: msg" into buf. */
const char *diag_fmt(const struct diag *d, char *buf, size_t size);

struct objlist {
	size_t n, cap;
	struct object **v;
};
void objlist_push(struct objlist *l, struct object *o);
void objlist_free(struct objlist *l); /* frees the objects too */

/* Decode `len` bytes of `data` from `file` (its name decides nothing: content is
 * sniffed; a leading '{' or '[' means JSON, otherwise YAML).  Appends decoded objects
 * to out.  Returns the number of documents that failed (0 = all good), or -errno
 * when the whole file could not be parsed at all (a diag is reported too). */
int manifest_decode(const char *file, const char *data, size_t len, struct objlist *out,
		    diag_fn diag, void *arg);
int manifest_load_file(const char *path, struct objlist *out, diag_fn diag, void *arg);

/* A YAML file of at least min_bytes (default 1 MiB) is cut at document markers ("---" at the
 * start of a line) into up to `threads` parts, decoded at once on as many threads (0, the
 * default: one per CPU this process may run on, at most 4; 1: never).  Only a file without
 * any error keeps that result; one that reports anything is decoded again in one pass, so
 * objects, errors and lines are the same either way.  Tests lower min_bytes to exercise it;
 * the result is how many files were decoded in parts since the previous call. */
unsigned manifest_set_parallel(size_t min_bytes, int threads);

/* Deployments (apps/v1) are expanded the way the control plane would: `replicas`
 * Pods named <deployment>-<index> (index 0..replicas-1), labels and ports from the pod
 * template, so a demo manifest works without a controller manager. */
