/* util: small helpers shared by every subsystem (strings, files, hashing, time). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
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
int mkdir_p(const char *path, mode_t mode); /* 0 or -errno */
int rm_rf(const char *path);               /* 0 or -errno; missing is fine */

uint64_t fnv1a64(const void *data, size_t len, uint64_t seed);
#define FNV_SEED 0xcbf29ce484222325ULL

/* Monotonic time in nanoseconds / milliseconds. */
typedef int64_t monotime_t; /* ns */
monotime_t monotime_now(void);
#define MONO_MS(x) ((monotime_t)(x) * 1000000LL)

bool str_has_prefix(const char *s, const char *prefix);
bool str_has_suffix(const char *s, const char *suffix);
/* Copy with truncation, always NUL-terminated; returns -ENAMETOOLONG if truncated. */
int str_copy(char *dst, size_t size, const char *src);
