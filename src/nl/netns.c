/* netns: named network namespaces kept the way iproute2 keeps them (ip-netns(8)):
 * /run/netns is a shared mount point and each name is a file there on which a
 * namespace's nsfs inode (/proc/<pid>/ns/net) is bind-mounted, so the namespace lives
 * on without any process in it and `ip netns` sees the same set.
 *
 * The new namespace is made in a forked child (unshare + bind mount + _exit, only
 * system calls), so the caller's threads never change namespace to create one. */
#include "nl/nl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/util.h"

#define NETNS_RUN_DIR "/run/netns"

static int netns_path(const char *name, char *buf, size_t size)
{
	if (!name || !name[0] || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;
	int n = snprintf(buf, size, NETNS_RUN_DIR "/%s", name);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* Like iproute2: make /run/netns a shared mount (binding it onto itself first if it is
 * not a mount point yet), so mounts on its files propagate to every mount namespace
 * that later copies it. */
static int netns_prepare_dir(void)
{
	int r = mkdir_p(NETNS_RUN_DIR, 0755);
	if (r < 0)
		return r;
	bool bound = false;
	for (int i = 0; i < 2; i++) {
		if (mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC, NULL) == 0)
			return 0;
		if (errno != EINVAL || bound)
			return -errno;
		if (mount(NETNS_RUN_DIR, NETNS_RUN_DIR, "none", MS_BIND | MS_REC, NULL) < 0)
			return -errno;
		bound = true;
	}
	return -EINVAL;
}

static bool is_nsfs(const char *path)
{
	struct statfs sf;
	return statfs(path, &sf) == 0 && sf.f_type == NSFS_MAGIC;
}

bool netns_exists(const char *name)
{
	char path[PATH_MAX];
	if (netns_path(name, path, sizeof(path)) < 0)
		return false;
	return is_nsfs(path);
}

int netns_create(const char *name)
{
	char path[PATH_MAX];
	int r = netns_path(name, path, sizeof(path));
	if (r < 0)
		return r;
	r = netns_prepare_dir();
	if (r < 0)
		return r;
	int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
	if (fd < 0 && errno == EEXIST && !is_nsfs(path)) {
		/* a bare file left by a create that died half-way: reuse the name */
		if (unlink(path) == 0)
			fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
		else
			errno = EEXIST;
	}
	if (fd < 0)
		return -errno;
	close(fd);

	pid_t pid = fork();
	if (pid < 0) {
		r = -errno;
		unlink(path);
		return r;
	}
	if (pid == 0) {
		if (unshare(CLONE_NEWNET) < 0)
			_exit(errno & 0xff ? errno & 0xff : 1);
		if (mount("/proc/self/ns/net", path, "none", MS_BIND, NULL) < 0)
			_exit(errno & 0xff ? errno & 0xff : 1);
		_exit(0);
	}
	int status = 0;
	for (int i = 0; i < 1000; i++) {
		if (waitpid(pid, &status, 0) == pid)
			break;
		if (errno != EINTR) {
			status = 1 << 8;
			break;
		}
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	unlink(path);
	return WIFEXITED(status) ? -WEXITSTATUS(status) : -ECHILD;
}

int netns_delete(const char *name)
{
	char path[PATH_MAX];
	int r = netns_path(name, path, sizeof(path));
	if (r < 0)
		return r;
	/* EINVAL: not a mount point (a stale file); ENOENT: absent. Both just unlink. */
	if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		return -errno;
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int netns_open(const char *name_or_path)
{
	char path[PATH_MAX];
	if (!name_or_path)
		return -EINVAL;
	if (name_or_path[0] == '/') {
		if (str_copy(path, sizeof(path), name_or_path) < 0)
			return -ENAMETOOLONG;
	} else {
		int r = netns_path(name_or_path, path, sizeof(path));
		if (r < 0)
			return r;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static int open_own_netns(void)
{
	int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		char p[64];
		snprintf(p, sizeof(p), "/proc/self/task/%ld/ns/net", (long)syscall(SYS_gettid));
		fd = open(p, O_RDONLY | O_CLOEXEC);
	}
	return fd < 0 ? -errno : fd;
}

int netns_enter(int nsfd, int *saved)
{
	if (nsfd < 0 || !saved)
		return -EINVAL;
	int old = open_own_netns();
	if (old < 0)
		return old;
	if (setns(nsfd, CLONE_NEWNET) < 0) {
		int r = -errno;
		close(old);
		return r;
	}
	*saved = old;
	return 0;
}

int netns_leave(int saved)
{
	if (saved < 0)
		return -EBADF;
	int r = setns(saved, CLONE_NEWNET) < 0 ? -errno : 0;
	close(saved);
	return r;
}

int netns_list(const char *prefix, int (*cb)(const char *name, void *arg), void *arg)
{
	DIR *d = opendir(NETNS_RUN_DIR);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	int r = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (prefix && !str_has_prefix(e->d_name, prefix))
			continue;
		r = cb(e->d_name, arg);
		if (r)
			break;
	}
	closedir(d);
	return r;
}
