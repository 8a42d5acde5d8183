/* source_dir: the manifest-directory source.  Feeds the store from the *.yaml, *.yml and
 * *.json files of one directory and of its .twill/ status subdirectory, one origin per
 * file (origin = path relative to the directory), and follows changes with inotify.
 *
 * Writers (editors, `kubectl`-like tools, twill's own controller) replace files by
 * write-temp-then-rename, so IN_MOVED_TO matters as much as IN_CLOSE_WRITE.  Events are
 * coalesced: the whole inotify queue is drained first, then every touched file is read
 * once.
 *
 * What a user editing a file expects: a file that cannot be parsed at all (a syntax
 * error half-way through an edit) keeps its previous good objects in the cluster and the
 * error is reported; a document that fails to decode keeps that object's previous
 * version; a deleted file takes its objects with it.
 *
 * In .twill/, Node, Pod and Service objects are overlays (store.h); endpointslice.*.json files
 * hold ordinary EndpointSlices and are loaded as base origins. */
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

#define WATCH_MASK                                                                                 \
	(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_DELETE_SELF |   \
	 IN_MOVE_SELF)
#define OVL_PREFIX SOURCE_OVERLAY_DIR "/"

struct source_dir {
	struct store *s;
	char *dir, *ovdir;
	int ifd, wd_dir, wd_ov;
	diag_fn diag;
	void *arg;
	struct smap loaded; /* origins this source gave the store */
	/* origin -> uint64_t content hash of its last load that decoded without an error: a
	 * file read again with the same content (SIGHUP, a rewrite with the same bytes) is not
	 * decoded again, since it would give the store the same objects */
	struct smap sums;
	struct smap pending; /* origins touched by the current batch of events */
	bool rescan_all, rescan_ov;
	bool oneshot; /* source_dir_load: no inotify, no .twill/ created */
};

static void report(struct source_dir *src, const char *file, int line, const char *msg)
{
	struct diag d = {.file = file, .line = line, .msg = msg};
	if (src->diag) {
		src->diag(&d, src->arg);
	} else {
		char buf[1024];
		log_warn("source", "%s", diag_fmt(&d, buf, sizeof(buf)));
	}
}

/* A manifest file name (not a path): no dotfiles or editor leftovers, known suffix. */
static bool wanted_name(const char *name)
{
	if (!name[0] || name[0] == '.' || name[0] == '#' || strchr(name, '/'))
		return false;
	return str_has_suffix(name, ".yaml") || str_has_suffix(name, ".yml") ||
	       str_has_suffix(name, ".json");
}

static bool wanted_origin(const char *rel)
{
	if (str_has_prefix(rel, OVL_PREFIX))
		return wanted_name(rel + strlen(OVL_PREFIX));
	return wanted_name(rel);
}

static bool origin_is_overlay(const char *rel)
{
	return str_has_prefix(rel, OVL_PREFIX) &&
	       !str_has_prefix(rel + strlen(OVL_PREFIX), "endpointslice.");
}

/* ---- loading one file ---- */

struct load_ctx {
	struct source_dir *src;
	struct smap failed; /* object ids named by failing documents */
	bool unknown;	    /* a failing document named no object */
};

static void load_diag(const struct diag *d, void *arg)
{
	struct load_ctx *c = arg;
	if (d->object)
		smap_add(&c->failed, d->object);
	else
		c->unknown = true;
	if (c->src->diag) {
		c->src->diag(d, c->src->arg);
	} else {
		char buf[1024];
		log_warn("source", "%s", diag_fmt(d, buf, sizeof(buf)));
	}
}

struct keep_ctx {
	struct load_ctx *lc;
	struct smap *fresh;
	struct objlist *out;
};

/* Keep the previous version of an object whose new document failed to decode. */
static int keep_old(const struct object *o, void *arg)
{
	struct keep_ctx *k = arg;
	char id[512];
	object_id(o, id, sizeof(id));
	if (smap_has(k->fresh, id))
		return 0;
	if (k->lc->unknown || smap_has(&k->lc->failed, id))
		objlist_push(k->out, object_clone(o));
	return 0;
}

static void forget(struct source_dir *src, const char *rel)
{
	if (!smap_has(&src->loaded, rel))
		return;
	log_debug("source", "%s: gone", rel);
	free(smap_del(&src->sums, rel));
	store_remove_origin(src->s, rel);
	smap_del(&src->loaded, rel);
}

static int load_file(struct source_dir *src, const char *rel)
{
	if (!wanted_origin(rel))
		return 0;
	char *path = xasprintf("%s/%s", src->dir, rel);
	struct stat st;
	if (stat(path, &st) || !S_ISREG(st.st_mode)) {
		forget(src, rel);
		free(path);
		return 0;
	}
	/* the same bytes as the last clean load: nothing to decode (hashed in chunks, so a
	 * rescan of unchanged files holds no copy of them) */
	const uint64_t *old = smap_get(&src->sums, rel);
	if (old && smap_has(&src->loaded, rel) && file_hash(path) == *old) {
		log_debug("source", "%s: unchanged", rel);
		free(path);
		return 0;
	}
	char *data = NULL;
	size_t len = 0;
	int err = file_read(path, &data, &len);
	if (err == -ENOENT) {
		forget(src, rel);
		free(path);
		return 0;
	}
	if (err) {
		char *msg =
		    xasprintf("cannot read: %s; keeping its previous content", strerror(-err));
		report(src, path, 0, msg);
		free(msg);
		free(path);
		return err;
	}

	uint64_t sum = fnv1a64(data, len, FNV_SEED); /* of what is decoded */
	free(smap_del(&src->sums, rel));
	struct objlist objs = {0};
	struct load_ctx lc = {.src = src};
	int r = manifest_decode(path, data, len, &objs, load_diag, &lc);
	free(data);
	if (r < 0) {
		/* Unparseable as a whole: most likely mid-edit.  Leave the cluster as it was. */
		if (smap_has(&src->loaded, rel))
			log_warn("source", "%s: not parsed; keeping its previous objects", path);
		objlist_free(&objs);
		smap_clear(&lc.failed, NULL);
		free(path);
		return 0;
	}
	if (r > 0) {
		struct smap fresh = SMAP_INIT;
		char id[512];
		for (size_t i = 0; i < objs.n; i++)
			smap_add(&fresh, object_id(objs.v[i], id, sizeof(id)));
		struct keep_ctx k = {.lc = &lc, .fresh = &fresh, .out = &objs};
		store_origin_foreach(src->s, rel, keep_old, &k);
		smap_clear(&fresh, NULL);
	}
	smap_clear(&lc.failed, NULL);
	log_debug("source", "%s: %zu objects", rel, objs.n);
	int rejected =
	    store_replace_origin(src->s, rel, origin_is_overlay(rel), &objs, src->diag, src->arg);
	objlist_free(&objs);
	smap_add(&src->loaded, rel);
	if (r == 0 && rejected == 0) { /* nothing to report again */
		uint64_t *v = xmalloc(sizeof(*v));
		*v = sum;
		*smap_slot(&src->sums, rel, NULL) = v;
	}
	free(path);
	return 0;
}

/* ---- scanning ---- */

static int add_overlay_watch(struct source_dir *src)
{
	if (src->oneshot)
		return 0;
	int err = mkdir_p(src->ovdir, 0755);
	if (err)
		return err;
	int wd = inotify_add_watch(src->ifd, src->ovdir, WATCH_MASK | IN_ONLYDIR);
	if (wd < 0)
		return -errno;
	if (src->wd_ov >= 0 && src->wd_ov != wd)
		inotify_rm_watch(src->ifd, src->wd_ov);
	src->wd_ov = wd;
	return 0;
}

/* Load every wanted file of one directory (sorted, so "first loaded wins" is stable). */
static int scan_one(struct source_dir *src, const char *path, const char *prefix, struct smap *seen)
{
	struct dirent **list = NULL;
	int n = scandir(path, &list, NULL, alphasort);
	if (n < 0)
		return -errno;
	for (int i = 0; i < n; i++) {
		if (wanted_name(list[i]->d_name)) {
			char *rel = xasprintf("%s%s", prefix, list[i]->d_name);
			smap_add(seen, rel);
			load_file(src, rel);
			free(rel);
		}
		free(list[i]);
	}
	free(list);
	return 0;
}

/* Forget origins under `prefix` (NULL: all) that the scan did not see. */
static void forget_unseen(struct source_dir *src, const struct smap *seen, const char *prefix)
{
	size_t n;
	const char **keys = smap_keys(&src->loaded, &n);
	char **gone = xcalloc(n + 1, sizeof(*gone));
	size_t ng = 0;
	for (size_t i = 0; i < n; i++)
		if ((!prefix || str_has_prefix(keys[i], prefix)) && !smap_has(seen, keys[i]))
			gone[ng++] = xstrdup(keys[i]);
	free(keys);
	for (size_t i = 0; i < ng; i++) {
		forget(src, gone[i]);
		free(gone[i]);
	}
	free(gone);
}

static int scan_overlay(struct source_dir *src)
{
	int err = add_overlay_watch(src);
	if (err)
		log_error("source", "%s: cannot watch: %s", src->ovdir, strerror(-err));
	struct smap seen = SMAP_INIT;
	int r = scan_one(src, src->ovdir, OVL_PREFIX, &seen);
	if (r && r != -ENOENT)
		log_error("source", "%s: cannot list: %s", src->ovdir, strerror(-r));
	forget_unseen(src, &seen, OVL_PREFIX);
	smap_clear(&seen, NULL);
	return err;
}

int source_dir_scan(struct source_dir *src)
{
	struct smap seen = SMAP_INIT;
	if (add_overlay_watch(src))
		log_error("source", "%s: cannot watch", src->ovdir);
	/* Status overlays first: objects then appear once, already merged. */
	int r = scan_one(src, src->ovdir, OVL_PREFIX, &seen);
	if (r && r != -ENOENT)
		log_error("source", "%s: cannot list: %s", src->ovdir, strerror(-r));
	int err = scan_one(src, src->dir, "", &seen);
	if (err) {
		log_error("source", "%s: cannot list: %s", src->dir, strerror(-err));
		smap_clear(&seen, NULL);
		return err; /* keep what we have rather than emptying the cluster */
	}
	forget_unseen(src, &seen, NULL);
	smap_clear(&seen, NULL);
	src->rescan_all = src->rescan_ov = false;
	return 0;
}

/* ---- inotify ---- */

static void note_event(struct source_dir *src, const struct inotify_event *ev)
{
	if (ev->mask & IN_Q_OVERFLOW) {
		src->rescan_all = true;
		return;
	}
	const char *name = ev->len ? ev->name : NULL;
	if (ev->wd == src->wd_dir) {
		if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
			log_error("source", "%s: manifest directory removed or moved", src->dir);
			if (ev->mask & IN_IGNORED)
				src->wd_dir = -1;
			return;
		}
		if (!name)
			return;
		if (!strcmp(name, SOURCE_OVERLAY_DIR)) {
			src->rescan_ov = true;
			return;
		}
		if (!wanted_name(name))
			return;
		if ((ev->mask & (IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM |
				 IN_DELETE)) == IN_CREATE) {
			/* A new regular file is being written: wait for its IN_CLOSE_WRITE.  A
			 * symlink or hard link is complete at once. */
			char *path = xasprintf("%s/%s", src->dir, name);
			struct stat st;
			bool complete =
			    !lstat(path, &st) && (S_ISLNK(st.st_mode) || st.st_nlink > 1);
			free(path);
			if (!complete)
				return;
		}
		smap_add(&src->pending, name);
		return;
	}
	if (ev->wd == src->wd_ov) {
		if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
			if (ev->mask & IN_IGNORED)
				src->wd_ov = -1;
			src->rescan_ov = true;
			return;
		}
		if (!name || !wanted_name(name))
			return;
		if ((ev->mask & (IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM |
				 IN_DELETE)) == IN_CREATE) {
			char *path = xasprintf("%s/%s", src->ovdir, name);
			struct stat st;
			bool complete =
			    !lstat(path, &st) && (S_ISLNK(st.st_mode) || st.st_nlink > 1);
			free(path);
			if (!complete)
				return;
		}
		char *rel = xasprintf(OVL_PREFIX "%s", name);
		smap_add(&src->pending, rel);
		free(rel);
	}
}

int source_dir_process(struct source_dir *src)
{
	char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
	int err = 0;
	/* Bounded: a writer faster than us must not keep us here forever. */
	for (int rounds = 0; rounds < 256; rounds++) {
		ssize_t n = read(src->ifd, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				err = -errno;
			break;
		}
		if (n == 0)
			break;
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			note_event(src, ev);
			p += sizeof(*ev) + ev->len;
		}
	}
	if (src->rescan_all) {
		smap_clear(&src->pending, NULL);
		int r = source_dir_scan(src);
		return r ? r : err;
	}
	if (src->rescan_ov) {
		src->rescan_ov = false;
		scan_overlay(src);
		/* Overlay files were all re-read; only the base ones are left to do. */
	}
	size_t np;
	const char **keys = smap_keys(&src->pending, &np);
	for (size_t i = 0; i < np; i++)
		load_file(src, keys[i]);
	free(keys);
	smap_clear(&src->pending, NULL);
	return err;
}

/* The source without its watches: what source_dir_open and source_dir_load share. */
static struct source_dir *source_new(struct store *s, const char *dir, diag_fn diag, void *arg)
{
	struct stat st;
	if (stat(dir, &st))
		return NULL;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return NULL;
	}
	struct source_dir *src = xcalloc(1, sizeof(*src));
	src->s = s;
	src->diag = diag;
	src->arg = arg;
	src->dir = xstrdup(dir);
	size_t l = strlen(src->dir);
	while (l > 1 && src->dir[l - 1] == '/')
		src->dir[--l] = 0;
	src->ovdir = xasprintf("%s/%s", src->dir, SOURCE_OVERLAY_DIR);
	src->wd_ov = -1;
	src->wd_dir = -1;
	src->ifd = -1;
	return src;
}

struct source_dir *source_dir_open(struct store *s, const char *dir, diag_fn diag, void *arg)
{
	struct source_dir *src = source_new(s, dir, diag, arg);
	if (!src)
		return NULL;
	src->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	int e;
	if (src->ifd < 0)
		goto fail;
	src->wd_dir = inotify_add_watch(src->ifd, src->dir, WATCH_MASK | IN_ONLYDIR);
	if (src->wd_dir < 0)
		goto fail;
	int err = add_overlay_watch(src);
	if (err) {
		errno = -err;
		goto fail;
	}
	return src;
fail:
	e = errno;
	source_dir_close(src);
	errno = e;
	return NULL;
}

void source_dir_close(struct source_dir *src)
{
	if (!src)
		return;
	if (src->ifd >= 0)
		close(src->ifd);
	smap_clear(&src->loaded, NULL);
	smap_clear(&src->sums, free);
	smap_clear(&src->pending, NULL);
	free(src->dir);
	free(src->ovdir);
	free(src);
}

int source_dir_fd(const struct source_dir *src)
{
	return src->ifd;
}

int source_dir_load(struct store *s, const char *dir, diag_fn diag, void *arg)
{
	/* One read, nothing watched: no inotify instance to tear down (its close can take
	 * long on a loaded machine) and no .twill/ directory made in the user's tree. */
	struct source_dir *src = source_new(s, dir, diag, arg);
	if (!src)
		return -errno;
	src->oneshot = true;
	int r = source_dir_scan(src);
	source_dir_close(src);
	return r;
}
