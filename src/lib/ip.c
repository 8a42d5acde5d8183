#include "lib/ip.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ip_bytes(int family)
{
	return family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
}

int ip_maxlen(int family)
{
	return ip_bytes(family) * 8;
}

bool ip_is_set(const struct ipaddr *a)
{
	return a->family == AF_INET || a->family == AF_INET6;
}

int ip_parse(const char *s, struct ipaddr *out)
{
	memset(out, 0, sizeof(*out));
	if (!s)
		return -EINVAL;
	if (inet_pton(AF_INET, s, &out->v4) == 1) {
		out->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, &out->v6) == 1) {
		out->family = AF_INET6;
		return 0;
	}
	return -EINVAL;
}

int prefix_parse(const char *s, struct ipprefix *out)
{
	char buf[IP_STRLEN];
	memset(out, 0, sizeof(*out));
	if (!s)
		return -EINVAL;
	const char *slash = strchr(s, '/');
	if (!slash || (size_t)(slash - s) >= sizeof(buf) || !slash[1])
		return -EINVAL;
	memcpy(buf, s, slash - s);
	buf[slash - s] = 0;
	if (ip_parse(buf, &out->addr))
		return -EINVAL;
	char *end;
	errno = 0;
	long len = strtol(slash + 1, &end, 10);
	if (errno || *end || end == slash + 1 || len < 0 || len > ip_maxlen(out->addr.family))
		return -EINVAL;
	out->len = (uint8_t)len;
	return 0;
}

const char *ip_fmt(const struct ipaddr *a, char buf[IP_STRLEN])
{
	if (!ip_is_set(a) || !inet_ntop(a->family, a->b, buf, IP_STRLEN))
		snprintf(buf, IP_STRLEN, "-");
	return buf;
}

const char *prefix_fmt(const struct ipprefix *p, char buf[IP_STRLEN])
{
	char a[INET6_ADDRSTRLEN + 1];
	if (!ip_is_set(&p->addr) || !inet_ntop(p->addr.family, p->addr.b, a, sizeof(a)))
		snprintf(a, sizeof(a), "-");
	snprintf(buf, IP_STRLEN, "%s/%u", a, p->len);
	return buf;
}

int ip_cmp(const struct ipaddr *a, const struct ipaddr *b)
{
	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	return memcmp(a->b, b->b, ip_bytes(a->family));
}

bool ip_eq(const struct ipaddr *a, const struct ipaddr *b)
{
	return ip_cmp(a, b) == 0;
}

int prefix_cmp(const struct ipprefix *a, const struct ipprefix *b)
{
	int c = ip_cmp(&a->addr, &b->addr);
	if (c)
		return c;
	return a->len < b->len ? -1 : a->len > b->len ? 1 : 0;
}

bool prefix_eq(const struct ipprefix *a, const struct ipprefix *b)
{
	return prefix_cmp(a, b) == 0;
}

static void mask_bytes(uint8_t *b, int nbytes, unsigned len)
{
	for (int i = 0; i < nbytes; i++) {
		unsigned bit = (unsigned)i * 8;
		if (bit >= len)
			b[i] = 0;
		else if (len - bit < 8)
			b[i] &= (uint8_t)(0xff << (8 - (len - bit)));
	}
}

void prefix_normalize(struct ipprefix *p)
{
	mask_bytes(p->addr.b, ip_bytes(p->addr.family), p->len);
}

bool prefix_contains(const struct ipprefix *p, const struct ipaddr *a)
{
	if (p->addr.family != a->family)
		return false;
	struct ipprefix x = {.addr = *a, .len = p->len}, y = *p;
	prefix_normalize(&x);
	prefix_normalize(&y);
	return ip_eq(&x.addr, &y.addr);
}

bool prefix_covers(const struct ipprefix *outer, const struct ipprefix *inner)
{
	return inner->len >= outer->len && prefix_contains(outer, &inner->addr);
}

bool prefix_overlaps(const struct ipprefix *a, const struct ipprefix *b)
{
	return prefix_covers(a, b) || prefix_covers(b, a);
}

/* Add n << shift (shift = bits from the right) to the big-endian address. */
static int add_shifted(struct ipaddr *a, uint64_t n, unsigned shift)
{
	int nb = ip_bytes(a->family);
	unsigned __int128 v = n;
	if (shift >= 128)
		return n ? -ERANGE : 0;
	v <<= shift;
	unsigned carry = 0;
	for (int i = nb - 1; i >= 0; i--) {
		unsigned sum = a->b[i] + (unsigned)(v & 0xff) + carry;
		a->b[i] = (uint8_t)sum;
		carry = sum >> 8;
		v >>= 8;
	}
	return (carry || v) ? -ERANGE : 0;
}

uint64_t prefix_subnet_count(const struct ipprefix *p, unsigned newlen)
{
	if (newlen < p->len || newlen > (unsigned)ip_maxlen(p->addr.family))
		return 0;
	unsigned bits = newlen - p->len;
	return bits >= 32 ? UINT32_MAX : (uint64_t)1 << bits;
}

int prefix_subnet(const struct ipprefix *p, unsigned newlen, uint64_t n, struct ipprefix *out)
{
	if (n >= prefix_subnet_count(p, newlen))
		return -ERANGE;
	*out = *p;
	prefix_normalize(out);
	out->len = (uint8_t)newlen;
	return add_shifted(&out->addr, n, (unsigned)ip_maxlen(p->addr.family) - newlen);
}

uint64_t prefix_size(const struct ipprefix *p)
{
	unsigned bits = (unsigned)ip_maxlen(p->addr.family) - p->len;
	return bits >= 63 ? (uint64_t)1 << 62 : (uint64_t)1 << bits;
}

int prefix_host(const struct ipprefix *p, uint64_t n, struct ipaddr *out)
{
	if (n >= prefix_size(p))
		return -ERANGE;
	struct ipprefix x = *p;
	prefix_normalize(&x);
	*out = x.addr;
	return add_shifted(out, n, 0);
}

int64_t prefix_offset(const struct ipprefix *p, const struct ipaddr *a)
{
	if (!prefix_contains(p, a))
		return -1;
	int nb = ip_bytes(a->family);
	unsigned bits = (unsigned)ip_maxlen(a->family) - p->len;
	if (bits > 62)
		bits = 62;
	uint64_t v = 0;
	for (int i = nb - 8 < 0 ? 0 : nb - 8; i < nb; i++)
		v = (v << 8) | a->b[i];
	return (int64_t)(bits == 64 ? v : v & (((uint64_t)1 << bits) - 1));
}

unsigned ip_sockaddr(const struct ipaddr *a, uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		memcpy(&s6->sin6_addr, a->b, 16);
		return sizeof(*s6);
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	s4->sin_family = AF_INET;
	s4->sin_port = htons(port);
	memcpy(&s4->sin_addr, a->b, 4);
	return sizeof(*s4);
}
