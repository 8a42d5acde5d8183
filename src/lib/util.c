#include "lib/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void oom(void)
{
	fputs("twill: out of memory\n", stderr);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom();
	return p;
}

void *xcalloc(size_t n, size_t m)
{
	void *p = calloc(n ? n : 1, m ? m : 1);
	if (!p)
		oom();
	return p;
}

void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		oom();
	return p;
}

char *xstrdup(const char *s)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		oom();
	return d;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	va_start(ap, fmt);
	int r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0)
		oom();
	return s;
}

int file_read(const char *path, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	size_t cap = 4096, n = 0;
	if (!fstat(fd, &st) && S_ISREG(st.st_mode) && st.st_size > 0)
		cap = (size_t)st.st_size + 2; /* one read to the end, no doubling */
	char *buf = xmalloc(cap);
	for (;;) {
		if (n + 1 >= cap)
			buf = xrealloc(buf, cap *= 2);
		ssize_t r = read(fd, buf + n, cap - n - 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			int e = -errno;
			free(buf);
			close(fd);
			return e;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = 0;
	*out = buf;
	if (len)
		*len = n;
	return 0;
}

int fd_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(fd, p + off, len - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += (size_t)w;
	}
	return 0;
}

int file_write_atomic(const char *path, const char *data, size_t len)
{
	char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int err = 0;
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	err = fd_write_all(fd, data, len);
	if (close(fd) && !err)
		err = -errno;
	if (!err && rename(tmp, path))
		err = -errno;
	if (err)
		unlink(tmp);
out:
	free(tmp);
	return err;
}

static ssize_t fs_write(void *cookie, const char *buf, size_t len)
{
	struct file_stream *fs = cookie;
	fs->hash = fnv1a64(buf, len, fs->hash);
	int r = fs->err ? fs->err : fd_write_all(fs->fd, buf, len);
	if (r < 0) {
		fs->err = r;
		errno = -r;
		return -1;
	}
	return (ssize_t)len;
}

FILE *file_stream_open(struct file_stream *fs, const char *path)
{
	*fs = (struct file_stream){.hash = FNV_SEED, .fd = -1};
	fs->tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
	fs->fd = open(fs->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fs->fd < 0) {
		fs->err = -errno;
		free(fs->tmp);
		fs->tmp = NULL;
		return NULL;
	}
	fs->f = fopencookie(fs, "w", (cookie_io_functions_t){.write = fs_write});
	if (!fs->f) {
		fs->err = -ENOMEM;
		close(fs->fd);
		unlink(fs->tmp);
		free(fs->tmp);
		fs->tmp = NULL;
		return NULL;
	}
	setvbuf(fs->f, NULL, _IOFBF, 1 << 16);
	return fs->f;
}

int file_stream_commit(struct file_stream *fs, const char *path, uint64_t *last)
{
	if (!fs->f)
		return fs->err ? fs->err : -EINVAL;
	if (fclose(fs->f) && !fs->err)
		fs->err = -EIO;
	if (close(fs->fd) && !fs->err)
		fs->err = -errno;
	int r = fs->err;
	if (!r) {
		if (!*last)
			*last = file_hash(path);
		if (*last == fs->hash) {
			r = 0;
		} else if (rename(fs->tmp, path)) {
			r = -errno;
		} else {
			*last = fs->hash;
			r = 1;
		}
	}
	if (r <= 0)
		unlink(fs->tmp);
	free(fs->tmp);
	*fs = (struct file_stream){.fd = -1};
	return r;
}

uint64_t file_hash(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	uint64_t h = FNV_SEED;
	char buf[1 << 16];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			h = 0;
			break;
		}
		if (n == 0)
			break;
		h = fnv1a64(buf, (size_t)n, h);
	}
	close(fd);
	return h;
}

void json_put_str(FILE *f, const char *s)
{
	putc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else
			putc(*p, f);
	}
	putc('"', f);
}

int mkdir_p(const char *path, mode_t mode)
{
	char buf[4096];
	if (str_copy(buf, sizeof(buf), path))
		return -ENAMETOOLONG;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, mode) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) && errno != EEXIST)
		return -errno;
	return 0;
}

int rm_rf(const char *path)
{
	struct stat st;
	if (lstat(path, &st))
		return errno == ENOENT ? 0 : -errno;
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		if (!d)
			return -errno;
		struct dirent *de;
		while ((de = readdir(d))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			char *sub = xasprintf("%s/%s", path, de->d_name);
			rm_rf(sub);
			free(sub);
		}
		closedir(d);
		if (rmdir(path))
			return -errno;
		return 0;
	}
	if (unlink(path))
		return -errno;
	return 0;
}

uint64_t fnv1a64(const void *data, size_t len, uint64_t h)
{
	const uint8_t *p = data;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

const char *str_intern(const char *s)
{
	static char **tab;
	static size_t cap, n;
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	if (!s)
		return NULL;
	pthread_mutex_lock(&lock);
	const char *r = NULL;
	if (2 * (n + 1) > cap) { /* open addressing, at most half full */
		size_t ncap = cap ? 2 * cap : 64;
		char **nt = xcalloc(ncap, sizeof(*nt));
		for (size_t i = 0; i < cap; i++) {
			if (!tab[i])
				continue;
			size_t j = fnv1a64(tab[i], strlen(tab[i]), FNV_SEED) & (ncap - 1);
			while (nt[j])
				j = (j + 1) & (ncap - 1);
			nt[j] = tab[i];
		}
		free(tab);
		tab = nt;
		cap = ncap;
	}
	size_t j = fnv1a64(s, strlen(s), FNV_SEED) & (cap - 1);
	for (; tab[j] && !r; j = (j + 1) & (cap - 1))
		if (!strcmp(tab[j], s))
			r = tab[j];
	if (!r) {
		n++;
		r = tab[j] = xstrdup(s);
	}
	pthread_mutex_unlock(&lock);
	return r;
}

monotime_t monotime_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (monotime_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

bool str_has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool str_has_suffix(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && !strcmp(s + a - b, suffix);
}

int str_copy(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);
	if (n >= size) {
		memcpy(dst, src, size - 1);
		dst[size - 1] = 0;
		return -ENAMETOOLONG;
	}
	memcpy(dst, src, n + 1);
	return 0;
}
