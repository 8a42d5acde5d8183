/* util: small helpers shared by every subsystem (strings, files, hashing, time). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Allocation that aborts on OOM: twill cannot do anything useful without memory,
 * and a half-built object is worse than a clear crash. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);   /* NULL stays NULL */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Read a whole file (NUL-terminated). Returns 0 or -errno. */
int file_read(const char *path, char **out, size_t *len);
/* Write all of data to fd, retrying short writes and EINTR. 0 or -errno. */
int fd_write_all(int fd, const void *data, size_t len);
/* Write atomically: temp file in the same directory, fsync-free rename. 0 or -errno. */
int file_write_atomic(const char *path, const char *data, size_t len);
/* A file written as a stream (no copy of its content in memory) and put in place atomically:
 * file_stream_open() creates "<path>.tmp.<pid>" and returns a FILE that also hashes what is
 * written; file_stream_commit() renames it over path only when the content's hash differs
 * from *last (0: unknown, then the file at path is hashed first), else removes it.  Commit
 * returns 1 when written, 0 when unchanged, -errno on failure (nothing replaced). */
struct file_stream {
	FILE *f;
	int fd, err;
	uint64_t hash;
	char *tmp;
};
FILE *file_stream_open(struct file_stream *fs, const char *path); /* NULL: -errno in fs->err */
int file_stream_commit(struct file_stream *fs, const char *path, uint64_t *last);
/* The FNV-1a hash of a file's content (read in chunks); 0 if it cannot be read. */
uint64_t file_hash(const char *path);
/* s as a JSON string, quotes and escapes included. */
void json_put_str(FILE *f, const char *s);
int mkdir_p(const char *path, mode_t mode); /* 0 or -errno */
int rm_rf(const char *path);               /* 0 or -errno; missing is fine */

uint64_t fnv1a64(const void *data, size_t len, uint64_t seed);
/* The one process-wide copy of s (NULL stays NULL), kept for the life of the process: for
 * small sets of strings repeated in many objects (node names).  Never free the result.
 * Thread-safe (a mutex): the manifest decoder calls it from its worker threads. */
const char *str_intern(const char *s);
#define FNV_SEED 0xcbf29ce484222325ULL

/* Monotonic time in nanoseconds / milliseconds. */
typedef int64_t monotime_t; /* ns */
monotime_t monotime_now(void);
#define MONO_MS(x) ((monotime_t)(x) * 1000000LL)

bool str_has_prefix(const char *s, const char *prefix);
bool str_has_suffix(const char *s, const char *suffix);
/* Copy with truncation, always NUL-terminated; returns -ENAMETOOLONG if truncated. */
int str_copy(char *dst, size_t size, const char *src);
