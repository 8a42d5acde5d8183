/* sysctl: read and write /proc/sys (of the calling thread's network namespace for
 * net.*), with keys as sysctl(8) writes them.
 *
 * Dotted keys map dots to slashes, but interface names may contain dots
 * ("twill.1"), which makes "net.ipv4.conf.twill.1.proxy_arp" ambiguous.  For the
 * per-interface trees (net.ipv4.conf, net.ipv6.conf, net.ipv4.neigh, net.ipv6.neigh,
 * net.mpls.conf) everything between the tree and the last component is taken as the
 * interface name, so that key works as written.  A key containing '/' (optionally
 * starting with "/proc/sys/") is used verbatim and is never ambiguous. */
#include "nl/nl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lib/util.h"

#define PROC_SYS "/proc/sys/"

static const char *const per_iface_trees[] = {
    "net.ipv4.conf.", "net.ipv6.conf.", "net.ipv4.neigh.", "net.ipv6.neigh.", "net.mpls.conf.",
};

int sysctl_path(const char *key, char *buf, size_t size)
{
	if (!key || !key[0])
		return -EINVAL;
	if (str_has_prefix(key, PROC_SYS))
		key += strlen(PROC_SYS);
	size_t n = strlen(key);
	if (!n || key[0] == '/' || key[0] == '.' || key[n - 1] == '/' || key[n - 1] == '.')
		return -EINVAL;
	if (strlen(PROC_SYS) + n + 1 > size)
		return -ENAMETOOLONG;
	char *p = buf + strlen(PROC_SYS);
	memcpy(buf, PROC_SYS, strlen(PROC_SYS));
	memcpy(p, key, n + 1);

	if (!strchr(key, '/')) {
		size_t keep_from = n, keep_to = n; /* span whose dots stay (an ifname) */
		for (size_t i = 0; i < ARRAY_SIZE(per_iface_trees); i++) {
			if (str_has_prefix(key, per_iface_trees[i])) {
				keep_from = strlen(per_iface_trees[i]);
				keep_to = (size_t)(strrchr(key, '.') - key);
				break;
			}
		}
		for (size_t i = 0; i < n; i++)
			if (p[i] == '.' && (i < keep_from || i >= keep_to))
				p[i] = '/';
	}
	/* no empty components, no way out of /proc/sys */
	for (const char *c = p; *c; c++) {
		if (c[0] == '/' && c[1] == '/')
			return -EINVAL;
		if ((c == p || c[-1] == '/') && c[0] == '.' &&
		    (c[1] == '/' || !c[1] || (c[1] == '.' && (c[2] == '/' || !c[2]))))
			return -EINVAL;
	}
	return 0;
}

int sysctl_write(const char *key, const char *value)
{
	char path[512];
	int r = sysctl_path(key, path, sizeof(path));
	if (r < 0)
		return r;
	if (!value)
		return -EINVAL;
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t len = strlen(value);
	ssize_t n;
	do
		n = write(fd, value, len);
	while (n < 0 && errno == EINTR);
	r = n < 0 ? -errno : (size_t)n != len ? -EIO : 0;
	if (close(fd) < 0 && !r)
		r = -errno;
	return r;
}

/* The value without its trailing newline; -EOVERFLOW if it does not fit in buf. */
int sysctl_read(const char *key, char *buf, size_t size)
{
	char path[512];
	if (!buf || !size)
		return -EINVAL;
	buf[0] = 0;
	int r = sysctl_path(key, path, sizeof(path));
	if (r < 0)
		return r;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t len = 0;
	r = 0;
	for (int i = 0; i < 1024; i++) {
		char extra;
		char *dst = len < size - 1 ? buf + len : &extra;
		size_t want = len < size - 1 ? size - 1 - len : 1;
		ssize_t n = read(fd, dst, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			break;
		}
		if (n == 0)
			break;
		if (dst == &extra) {
			if (extra == '\n')
				continue; /* only the trailing newline did not fit */
			r = -EOVERFLOW;
			break;
		}
		len += (size_t)n;
	}
	close(fd);
	buf[len] = 0;
	while (len > 0 && buf[len - 1] == '\n')
		buf[--len] = 0;
	return r;
}
