/* ipam: address leases for the CNI plugin, in the on-disk format of the reference
 * host-local IPAM plugin (containernetworking/plugins plugins/ipam/host-local: one file per
 * address named by the address, created O_EXCL, a last_reserved_ip.<range> file for loose
 * round robin, one flock()ed "lock" file), with two changes:
 *  - an index file per attachment (att-<hash>) so DEL costs O(1), not a walk over every
 *    lease (host-local's release reads all of them);
 *  - GC (CNI 1.1.0): leases whose attachment the runtime no longer lists are released.
 * Round robin matters: an address freed by DEL is not handed out again at once, so a
 * late packet or a stale conntrack entry for a deleted pod does not reach its successor. */
#include "cni/ipam.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "lib/util.h"

#define LOCK_FILE "lock"
#define LAST_FILE "last_reserved_ip.%d"
#define LAST_LEN 48 /* fixed size of that file: an address and newline padding */
#define ATT_PREFIX "att-"
/* Bound on the addresses tried per range: a /8 is fully searched, a huge IPv6 range is
 * searched this far from the round-robin point (it will not be full in practice). */
#define MAX_PROBES (1u << 24)

char *ipam_dir(const char *state_dir, const char *network)
{
	return xasprintf("%s/ipam/%s", state_dir, network);
}

int ipam_open(struct ipam *im, const char *dir)
{
	im->dir = NULL;
	im->dirfd = im->lockfd = -1;
	/* mkdir only the first time: the directory exists on every later call */
	im->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (im->dirfd < 0 && errno == ENOENT) {
		int err = mkdir_p(dir, 0700);
		if (err)
			return err;
		im->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (im->dirfd < 0)
		return -errno;
	int err;
	im->lockfd = openat(im->dirfd, LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (im->lockfd < 0) {
		err = -errno;
		close(im->dirfd);
		im->dirfd = -1;
		return err;
	}
	im->dir = xstrdup(dir);
	return 0;
}

void ipam_close(struct ipam *im)
{
	if (im->lockfd >= 0)
		close(im->lockfd);
	if (im->dirfd >= 0)
		close(im->dirfd);
	free(im->dir);
	im->dir = NULL;
	im->dirfd = im->lockfd = -1;
}

static int ipam_lock(struct ipam *im)
{
	while (flock(im->lockfd, LOCK_EX)) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

static void ipam_unlock(struct ipam *im)
{
	flock(im->lockfd, LOCK_UN);
}

/* ---- small file helpers relative to the lease directory ---- */

static int write_at(int dirfd, const char *name, int flags, const char *data)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC | flags, 0600);
	if (fd < 0)
		return -errno;
	int err = fd_write_all(fd, data, strlen(data));
	close(fd);
	return err;
}

/* Reads up to size-1 bytes; 0 or -errno. */
static int read_at(int dirfd, const char *name, char *buf, size_t size)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n;
	do
		n = read(fd, buf, size - 1);
	while (n < 0 && errno == EINTR);
	int err = n < 0 ? -errno : 0;
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	return err;
}

/* Split "containerID\nifname\n..." in place; *rest points after the ifname line. */
static bool split_owner(char *buf, char **cid, char **ifname, char **rest)
{
	char *nl1 = strchr(buf, '\n');
	if (!nl1)
		return false;
	*nl1 = 0;
	char *nl2 = strchr(nl1 + 1, '\n');
	if (nl2)
		*nl2 = 0;
	*cid = buf;
	*ifname = nl1 + 1;
	/* host-local writes "\r\n"; tolerate leases it left behind */
	size_t l = strlen(*cid);
	if (l && (*cid)[l - 1] == '\r')
		(*cid)[l - 1] = 0;
	if (rest)
		*rest = nl2 ? nl2 + 1 : nl1 + 1 + strlen(nl1 + 1);
	return **cid != 0;
}

static bool lease_owned_by(int dirfd, const char *name, const char *cid, const char *ifname)
{
	char buf[512], *c, *i;
	return !read_at(dirfd, name, buf, sizeof(buf)) && split_owner(buf, &c, &i, NULL) &&
	       !strcmp(c, cid) && !strcmp(i, ifname);
}

static void att_name(const char *cid, const char *ifname, char out[32])
{
	uint64_t h = fnv1a64(cid, strlen(cid), FNV_SEED);
	h = fnv1a64("\n", 1, h);
	h = fnv1a64(ifname, strlen(ifname), h);
	snprintf(out, 32, ATT_PREFIX "%016" PRIx64, h);
}

static int find_locked(struct ipam *im, const char *cid, const char *ifname, struct ipaddr *out,
		       int max, bool *from_index, bool scan);

/* ---- allocation ---- */

bool ipam_usable(const struct ipam_range *r, const struct ipaddr *a)
{
	if (!prefix_contains(&r->cidr, a))
		return false;
	int64_t off = prefix_offset(&r->cidr, a);
	uint64_t size = prefix_size(&r->cidr);
	bool v4 = a->family == AF_INET;
	/* /31 and /32 (RFC 3021) have no network or broadcast address */
	if (v4 && r->cidr.len >= 31)
		return !(r->reserve_gw && off == 0);
	if (off == 0)
		return false; /* network address (IPv6: subnet-router anycast) */
	if (v4 && (uint64_t)off == size - 1)
		return false; /* broadcast */
	if (r->reserve_gw && off == 1)
		return false;
	return true;
}

static int alloc_one(struct ipam *im, int idx, const struct ipam_range *r, const char *owner,
		     struct ipaddr *out)
{
	char last_name[32], buf[IP_STRLEN];
	snprintf(last_name, sizeof(last_name), LAST_FILE, idx);
	uint64_t size = prefix_size(&r->cidr), start = 0;
	struct ipaddr last;
	if (!read_at(im->dirfd, last_name, buf, sizeof(buf))) {
		buf[strcspn(buf, "\r\n")] = 0;
		if (!ip_parse(buf, &last) && prefix_contains(&r->cidr, &last))
			start = ((uint64_t)prefix_offset(&r->cidr, &last) + 1) % size;
	}
	uint64_t probes = size < MAX_PROBES ? size : MAX_PROBES;
	for (uint64_t k = 0; k < probes; k++) {
		struct ipaddr a;
		if (prefix_host(&r->cidr, (start + k) % size, &a) || !ipam_usable(r, &a))
			continue;
		ip_fmt(&a, buf);
		int err = write_at(im->dirfd, buf, O_CREAT | O_EXCL, owner);
		if (err == -EEXIST)
			continue;
		if (err) {
			unlinkat(im->dirfd, buf, 0);
			return err;
		}
		/* Losing this file only weakens round robin; never fail the lease for it.
		 * It is rewritten in place at a fixed size (the address, then newlines):
		 * truncating and growing it again costs a block allocation per ADD on ext4. */
		char line[LAST_LEN];
		memset(line, '\n', sizeof(line));
		memcpy(line, buf, strlen(buf));
		int fd = openat(im->dirfd, last_name, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		if (fd >= 0) {
			if (pwrite(fd, line, sizeof(line), 0) != (ssize_t)sizeof(line))
				(void)ftruncate(fd, 0); /* never leave a mix of two addresses */
			close(fd);
		}
		*out = a;
		return 0;
	}
	return -ENOSPC;
}

int ipam_alloc(struct ipam *im, const struct ipam_range *ranges, int nranges,
	       const char *container_id, const char *ifname, struct ipaddr *out)
{
	if (nranges < 1 || nranges > IPAM_MAX_RANGES)
		return -EINVAL;
	char *owner = xasprintf("%s\n%s\n", container_id, ifname);
	int err = ipam_lock(im), i;
	if (err)
		goto out_free;
	/* A second ADD without DEL (spec: the runtime should not) must not take a second
	 * address, nor overwrite the index that DEL needs to free the first. */
	struct ipaddr held[IPAM_MAX_RANGES];
	bool from_index;
	if (find_locked(im, container_id, ifname, held, IPAM_MAX_RANGES, &from_index, false) > 0) {
		err = -EEXIST;
		goto out_unlock;
	}
	for (i = 0; i < nranges; i++) {
		err = alloc_one(im, i, &ranges[i], owner, &out[i]);
		if (err)
			goto undo;
	}
	/* The index is written last: a process killed before it leaves leases that the
	 * fallback scan of DEL and GC still find by their content. */
	char att[32], *idx = xstrdup(owner);
	for (int j = 0; j < nranges; j++) {
		char buf[IP_STRLEN];
		char *n = xasprintf("%s%s\n", idx, ip_fmt(&out[j], buf));
		free(idx);
		idx = n;
	}
	att_name(container_id, ifname, att);
	err = write_at(im->dirfd, att, O_CREAT | O_TRUNC, idx);
	free(idx);
	if (!err)
		goto out_unlock;
undo:
	while (--i >= 0) {
		char buf[IP_STRLEN];
		unlinkat(im->dirfd, ip_fmt(&out[i], buf), 0);
	}
out_unlock:
	ipam_unlock(im);
out_free:
	free(owner);
	return err;
}

/* ---- lookup and release ---- */

static bool is_lease_name(const char *name, struct ipaddr *a)
{
	return name[0] != '.' && !ip_parse(name, a);
}

/* Collect the leases of (cid, ifname), by the index file or, failing that, by a scan. */
static int find_locked(struct ipam *im, const char *cid, const char *ifname, struct ipaddr *out,
		       int max, bool *from_index, bool scan)
{
	char att[32], buf[1024], *c, *i, *rest;
	int n = 0;
	att_name(cid, ifname, att);
	*from_index = false;
	if (!read_at(im->dirfd, att, buf, sizeof(buf)) && split_owner(buf, &c, &i, &rest) &&
	    !strcmp(c, cid) && !strcmp(i, ifname)) {
		*from_index = true;
		char *save = NULL;
		for (char *line = strtok_r(rest, "\n", &save); line && n < max;
		     line = strtok_r(NULL, "\n", &save)) {
			if (!ip_parse(line, &out[n]) &&
			    lease_owned_by(im->dirfd, line, cid, ifname))
				n++;
		}
		if (n)
			return n;
	}
	if (!scan)
		return 0;
	/* No usable index: a killed ADD, or leases from an older layout. */
	int fd = dup(im->dirfd);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	rewinddir(d);
	struct dirent *de;
	while ((de = readdir(d)) && n < max) {
		if (is_lease_name(de->d_name, &out[n]) &&
		    lease_owned_by(im->dirfd, de->d_name, cid, ifname))
			n++;
	}
	closedir(d);
	return n;
}

int ipam_lookup(struct ipam *im, const char *container_id, const char *ifname, struct ipaddr *out,
		int max)
{
	bool idx;
	int err = ipam_lock(im);
	if (err)
		return err;
	int n = find_locked(im, container_id, ifname, out, max, &idx, true);
	ipam_unlock(im);
	return n;
}

int ipam_release(struct ipam *im, const char *container_id, const char *ifname, struct ipaddr *out,
		 int max)
{
	struct ipaddr found[8];
	bool idx;
	char att[32], buf[IP_STRLEN];
	int err = ipam_lock(im);
	if (err)
		return err;
	int n = find_locked(im, container_id, ifname, found, (int)ARRAY_SIZE(found), &idx, true);
	if (n < 0)
		goto out;
	for (int k = 0; k < n; k++) {
		unlinkat(im->dirfd, ip_fmt(&found[k], buf), 0);
		if (k < max)
			out[k] = found[k];
	}
	att_name(container_id, ifname, att);
	unlinkat(im->dirfd, att, 0);
	if (n > max)
		n = max;
out:
	ipam_unlock(im);
	return n;
}

/* ---- GC ---- */

struct name_list {
	char **v;
	size_t n, cap;
};

static int list_dir(int dirfd, struct name_list *l)
{
	int fd = dup(dirfd);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	rewinddir(d);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (l->n == l->cap)
			l->v = xrealloc(l->v, (l->cap = l->cap ? l->cap * 2 : 64) * sizeof(char *));
		l->v[l->n++] = xstrdup(de->d_name);
	}
	closedir(d);
	return 0;
}

static void name_list_free(struct name_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

int ipam_gc(struct ipam *im,
	    bool (*release)(const struct ipaddr *ip, const char *container_id, const char *ifname,
			    void *arg),
	    void *arg)
{
	struct name_list l = {0};
	int err = ipam_lock(im), released = 0;
	if (err)
		return err;
	/* Names first, then changes: unlinking while readdir() runs may skip entries. */
	err = list_dir(im->dirfd, &l);
	if (err)
		goto out;
	for (size_t k = 0; k < l.n; k++) {
		char buf[512], *c, *i;
		struct ipaddr a;
		if (!is_lease_name(l.v[k], &a) || read_at(im->dirfd, l.v[k], buf, sizeof(buf)))
			continue;
		if (!split_owner(buf, &c, &i, NULL) || release(&a, c, i, arg)) {
			if (!unlinkat(im->dirfd, l.v[k], 0))
				released++;
		}
	}
	/* An index whose leases are all gone describes nothing. */
	for (size_t k = 0; k < l.n; k++) {
		char buf[1024], *c, *i, *rest;
		if (!str_has_prefix(l.v[k], ATT_PREFIX) ||
		    read_at(im->dirfd, l.v[k], buf, sizeof(buf)))
			continue;
		bool live = false;
		char *save = NULL;
		if (split_owner(buf, &c, &i, &rest))
			for (char *line = strtok_r(rest, "\n", &save); line && !live;
			     line = strtok_r(NULL, "\n", &save))
				live = lease_owned_by(im->dirfd, line, c, i);
		if (!live)
			unlinkat(im->dirfd, l.v[k], 0);
	}
	err = released;
out:
	ipam_unlock(im);
	name_list_free(&l);
	return err;
}

int ipam_count(struct ipam *im)
{
	struct name_list l = {0};
	int err = list_dir(im->dirfd, &l), n = 0;
	for (size_t k = 0; !err && k < l.n; k++) {
		struct ipaddr a;
		n += is_lease_name(l.v[k], &a);
	}
	name_list_free(&l);
	return err ? err : n;
}
