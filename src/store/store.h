/* store: typed cluster state and its change events.
 *
 * Sources (the manifest directory today; the Kubernetes API later) hand the store
 * the complete set of objects of one origin (one file) at a time; the store diffs it
 * against what that origin held before and emits added/updated/removed events for the
 * objects whose effective content changed.  Planners subscribe to the kinds they care
 * about and work incrementally from those events.
 *
 * Overlay origins (twill's own status files, written by the standalone controller and
 * by the node runtime) do not create objects: they supply controller-owned fields of an
 * object defined by a base origin, as the API server's allocators and status subresource
 * would, each only where the base leaves it unset (Pod status: always):
 *   Node:    spec.podCIDRs, metadata.annotations (keys the base lacks);
 *   Pod:     spec.nodeName; status (podIPs, phase, Ready);
 *   Service: spec.clusterIP(s) (not for headless or ExternalName), spec.ports[].nodePort
 *            (NodePort/LoadBalancer; ports matched by name, protocol and port),
 *            spec.healthCheckNodePort (externalTrafficPolicy Local),
 *            status.loadBalancer.ingress (LoadBalancer).
 * EndpointSlices written by the controller are plain objects (base origin).
 *
 * Identity is (kind, namespace, name).  When two base origins define the same object
 * the first one loaded wins and the other is reported as a conflict. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/manifest.h"
#include "model/model.h"

struct store;

enum store_event { STORE_ADDED, STORE_UPDATED, STORE_REMOVED };
const char *store_event_name(enum store_event ev);

/* old is NULL for ADDED, new is NULL for REMOVED. Both are valid only during the call. */
typedef void (*store_cb)(void *arg, enum store_event ev, const struct object *old,
			 const struct object *new_obj);

struct store *store_new(void);
void store_free(struct store *s);

/* kinds: a mask of KIND_BIT(). Subscribers are called in registration order. */
void store_subscribe(struct store *s, unsigned kinds, store_cb cb, void *arg);
/* Remove the subscription(s) made with exactly this cb and arg. */
void store_unsubscribe(struct store *s, store_cb cb, void *arg);

/* Replace everything `origin` contributed with `objs` (ownership of the objects moves
 * to the store; the list is emptied).  overlay: see above.  Emits events.  Returns the
 * number of objects rejected as conflicts (each reported through diag). */
int store_replace_origin(struct store *s, const char *origin, bool overlay, struct objlist *objs,
			 diag_fn diag, void *arg);
/* Same as replacing with an empty list. */
void store_remove_origin(struct store *s, const char *origin);
/* Visit what `origin` itself contributed (its own objects, not the merged result), in
 * the order it gave them.  Stop when fn returns non-zero. */
int store_origin_foreach(const struct store *s, const char *origin,
			 int (*fn)(const struct object *o, void *arg), void *arg);

const struct object *store_get(const struct store *s, enum kind k, const char *ns,
			       const char *name);
size_t store_count(const struct store *s, enum kind k);
/* Callbacks may read the store (it already holds the whole replacement) but must not
 * change it.  Visit every object of a kind in (namespace, name) order. Stop when fn
 * returns non-zero. */
int store_foreach(const struct store *s, enum kind k, int (*fn)(const struct object *o, void *arg),
		  void *arg);

/* ---- a small string-keyed hash map (used by the store, its sources and the controller) ---- */
struct smap_node {
	struct smap_node *next;
	uint64_t hash;
	void *val;
	char key[]; /* in the node's own allocation: one malloc per key */
};
struct smap {
	size_t n, nbuckets;
	struct smap_node **b;
};
#define SMAP_INIT                                                                                  \
	{                                                                                          \
		0, 0, NULL                                                                         \
	}
void *smap_get(const struct smap *m, const char *key);
/* Find or insert key; returns the value slot (NULL for a new key). */
void **smap_slot(struct smap *m, const char *key, bool *created);
/* As a set: add key (value (void *)1 unless it has one), test for key. */
void smap_add(struct smap *m, const char *key);
bool smap_has(const struct smap *m, const char *key);
/* Remove key; returns its value (NULL if absent). */
void *smap_del(struct smap *m, const char *key);
/* Remove everything, calling free_val (if not NULL) on each value. */
void smap_clear(struct smap *m, void (*free_val)(void *));
/* Every key, sorted (strcmp); the pointers stay valid until the key is removed.
 * Free the array with free(). */
const char **smap_keys(const struct smap *m, size_t *n);
#define smap_foreach(m, it)                                                                        \
	for (size_t it##_b = 0; it##_b < (m)->nbuckets; it##_b++)                                  \
		for (struct smap_node *it = (m)->b[it##_b]; it; it = it->next)

/* ---- the manifest-directory source ---- */
struct source_dir;
/* Watch `dir` (and its `.twill/` overlay subdirectory, created if missing) with inotify.
 * Files ending in .yaml, .yml or .json are read; others and dotfiles are ignored.
 * Errors in files go to diag.  NULL + errno if the directory cannot be watched. */
struct source_dir *source_dir_open(struct store *s, const char *dir, diag_fn diag, void *arg);
void source_dir_close(struct source_dir *src);
int source_dir_fd(const struct source_dir *src); /* inotify fd, for the event loop */
/* Load every manifest of dir into s once, without watching (for one-shot commands).
 * Returns what source_dir_scan returns, or -errno if dir cannot be read. */
int source_dir_load(struct store *s, const char *dir, diag_fn diag, void *arg);
int source_dir_scan(struct source_dir *src);	 /* (re)load everything; initial load */
int source_dir_process(struct source_dir *src);	 /* drain inotify, reload changed files */
/* Name of the overlay directory inside the manifest directory. */
#define SOURCE_OVERLAY_DIR ".twill"
