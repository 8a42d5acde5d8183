/* route_monitor: counts the IPv4 routes of one protocol in the main table from the kernel's
 * notifications, fast enough to keep up with a BGP speaker installing 100,000 routes a
 * second (the Python listener of bench/bgp_bench.py lagged by ~0.8 s per 100,000).
 *
 * Built by the BGP benchmarks into their temporary directory:
 *     cc -O2 -o route_monitor bench/route_monitor.c
 * Usage: route_monitor PROTO N   (run inside the namespace to watch)
 * Prints "ready", then "n COUNT TIME" every 0.5 s while routes change, "full TIME" when
 * COUNT first reaches N, "empty TIME" when it is back at 0 after that, and "overflow ERRNO"
 * if the socket buffer overran (counts are then wrong).  TIME: seconds since the epoch. */
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* open-addressing set of (address << 8 | length) + 1 */
static uint64_t *set;
static size_t cap, count;

static size_t slot(uint64_t k)
{
	uint64_t h = k * 0x9E3779B97F4A7C15ULL;
	size_t i = (size_t)(h >> 20) & (cap - 1);
	while (set[i] && set[i] != k)
		i = (i + 1) & (cap - 1);
	return i;
}

static void add(uint64_t k)
{
	size_t i = slot(k);
	if (!set[i]) {
		set[i] = k;
		count++;
	}
}

static void del(uint64_t k)
{
	size_t i = slot(k);
	if (!set[i])
		return;
	set[i] = 0;
	count--;
	/* re-insert the rest of the cluster (linear probing deletion) */
	for (size_t j = (i + 1) & (cap - 1); set[j]; j = (j + 1) & (cap - 1)) {
		uint64_t v = set[j];
		set[j] = 0;
		set[slot(v)] = v;
	}
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: route_monitor PROTO N\n");
		return 2;
	}
	int proto = atoi(argv[1]);
	size_t want = strtoul(argv[2], NULL, 10);
	for (cap = 1024; cap < want * 2 + 16; cap *= 2)
		;
	set = calloc(cap, sizeof(*set));
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	int sz = 256 << 20;
	if (fd < 0 || !set ||
	    (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0 &&
	     setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)) < 0)) {
		perror("route_monitor: socket");
		return 1;
	}
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = RTMGRP_IPV4_ROUTE};
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("route_monitor: bind");
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	static char buf[1 << 16] __attribute__((aligned(8)));
	int full = 0;
	double last = 0;
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			printf("overflow %d\n", errno);
			fflush(stdout);
			continue;
		}
		double t = now();
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
		     h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type != RTM_NEWROUTE && h->nlmsg_type != RTM_DELROUTE)
				continue;
			struct rtmsg *rm = NLMSG_DATA(h);
			if (rm->rtm_family != 2 || rm->rtm_protocol != proto)
				continue;
			uint32_t table = rm->rtm_table, dst = 0;
			int len = (int)RTM_PAYLOAD(h);
			for (struct rtattr *a = RTM_RTA(rm); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
				if (a->rta_type == RTA_DST && RTA_PAYLOAD(a) == 4)
					memcpy(&dst, RTA_DATA(a), 4);
				if (a->rta_type == RTA_TABLE && RTA_PAYLOAD(a) == 4)
					memcpy(&table, RTA_DATA(a), 4);
			}
			if (table != RT_TABLE_MAIN)
				continue;
			uint64_t k = ((uint64_t)dst << 8 | rm->rtm_dst_len) + 1;
			if (h->nlmsg_type == RTM_NEWROUTE)
				add(k);
			else
				del(k);
		}
		if (!full && count >= want) {
			full = 1;
			printf("full %.6f\n", t);
			fflush(stdout);
		} else if (full && !count) {
			full = 0;
			printf("empty %.6f\n", t);
			fflush(stdout);
		}
		if (t - last >= 0.5) {
			printf("n %zu %.6f\n", count, t);
			fflush(stdout);
			last = t;
		}
	}
}
