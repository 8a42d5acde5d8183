/* ip: IPv4/IPv6 addresses and prefixes (parse, format, compare, subnetting).
 * Pure functions, no system calls. */
#pragma once
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#define IP_STRLEN 64 /* enough for "ffff:...:ffff/128" */

struct ipaddr {
	int family; /* AF_INET, AF_INET6, or 0 for "none" */
	union {
		struct in_addr v4;
		struct in6_addr v6;
		uint8_t b[16];
	};
};

struct ipprefix {
	struct ipaddr addr;
	uint8_t len;
};

int ip_parse(const char *s, struct ipaddr *out);	 /* 0 or -EINVAL */
int prefix_parse(const char *s, struct ipprefix *out); /* "a.b.c.d/n"; host bits kept; 0 or -EINVAL */
const char *ip_fmt(const struct ipaddr *a, char buf[IP_STRLEN]);
const char *prefix_fmt(const struct ipprefix *p, char buf[IP_STRLEN]);
int ip_bytes(int family); /* 4, 16 or 0 */
int ip_maxlen(int family); /* 32, 128 or 0 */
bool ip_is_set(const struct ipaddr *a);
int ip_cmp(const struct ipaddr *a, const struct ipaddr *b);
bool ip_eq(const struct ipaddr *a, const struct ipaddr *b);
int prefix_cmp(const struct ipprefix *a, const struct ipprefix *b);
bool prefix_eq(const struct ipprefix *a, const struct ipprefix *b);
void prefix_normalize(struct ipprefix *p); /* clear host bits */
bool prefix_contains(const struct ipprefix *p, const struct ipaddr *a);
bool prefix_covers(const struct ipprefix *outer, const struct ipprefix *inner);
bool prefix_overlaps(const struct ipprefix *a, const struct ipprefix *b);
/* The n-th subnet of length newlen inside p (n counted from 0). -ERANGE past the end. */
int prefix_subnet(const struct ipprefix *p, unsigned newlen, uint64_t n, struct ipprefix *out);
/* Number of subnets of length newlen in p, capped at UINT32_MAX; 0 if newlen < p->len. */
uint64_t prefix_subnet_count(const struct ipprefix *p, unsigned newlen);
/* The address at offset n from the (normalized) network address of p. -ERANGE outside p. */
int prefix_host(const struct ipprefix *p, uint64_t n, struct ipaddr *out);
/* Offset of a inside p, or -1 if outside (only for host parts up to 63 bits). */
int64_t prefix_offset(const struct ipprefix *p, const struct ipaddr *a);
/* Number of addresses in p, capped at UINT64_MAX/2. */
uint64_t prefix_size(const struct ipprefix *p);
/* Fill a sockaddr_in or sockaddr_in6 (by a->family) with a and port; returns its length. */
struct sockaddr_storage;
unsigned ip_sockaddr(const struct ipaddr *a, uint16_t port, struct sockaddr_storage *ss);
