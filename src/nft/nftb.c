/* nftb: transaction and expression building blocks for nf_tables (see nftb.h).  The
 * transaction format is the kernel's nfnetlink batch: BEGIN, nf_tables messages, END, all
 * processed inside one sendmsg, so errors are already queued when it returns. */
#include <errno.h>
#include <libnftnl/common.h>
#include <libnftnl/udata.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "lib/util.h"
#include "nft/nftb.h"

#define UDATA_RULE_COMMENT 0 /* NFTNL_UDATA_RULE_COMMENT */

int nftb_open(struct nftb_conn *c)
{
	if (c->nl)
		return 0;
	struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
	if (!nl)
		return -errno;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		int e = -errno;
		mnl_socket_close(nl);
		return e;
	}
	int on = 1;
	mnl_socket_setsockopt(nl, NETLINK_EXT_ACK, &on, sizeof(on));
	mnl_socket_setsockopt(nl, NETLINK_CAP_ACK, &on, sizeof(on));
	c->nl = nl;
	c->portid = mnl_socket_get_portid(nl);
	c->seq = (uint32_t)time(NULL) ^ 0x5a5a0000u;
	return 0;
}

void nftb_close(struct nftb_conn *c)
{
	if (c->nl)
		mnl_socket_close(c->nl);
	c->nl = NULL;
}

struct nlmsghdr *nftb_dump_hdr(struct nftb_conn *c, char *buf, uint16_t type, uint16_t family)
{
	return nftnl_nlmsg_build_hdr(buf, type, family, NLM_F_DUMP, ++c->seq);
}

int nftb_dump(struct nftb_conn *c, struct nlmsghdr *req, mnl_cb_t cb, void *arg)
{
	if (mnl_socket_sendto(c->nl, req, req->nlmsg_len) < 0)
		return -errno;
	size_t size = MNL_SOCKET_BUFFER_SIZE * 8;
	char *buf = xmalloc(size);
	int ret = 0;
	for (int guard = 0; guard < 1000000; guard++) {
		ssize_t n = mnl_socket_recvfrom(c->nl, buf, size);
		if (n < 0) {
			ret = -errno;
			break;
		}
		int r = mnl_cb_run(buf, (size_t)n, req->nlmsg_seq, c->portid, cb, arg);
		if (r == MNL_CB_STOP)
			break;
		if (r < 0) {
			ret = errno == ENOENT ? 0 : -errno;
			break;
		}
	}
	free(buf);
	return ret;
}

static char *room(struct nftb_batch *b, size_t need)
{
	if (b->len + need > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 1 << 16;
		while (cap < b->len + need)
			cap *= 2;
		b->p = xrealloc(b->p, cap);
		b->cap = cap;
	}
	return b->p + b->len;
}

void nftb_begin(struct nftb_batch *b, struct nftb_conn *c, uint16_t family)
{
	memset(b, 0, sizeof(*b));
	b->c = c;
	b->family = family;
	struct nlmsghdr *nlh = nftnl_batch_begin(room(b, 256), ++c->seq);
	b->len += NLMSG_ALIGN(nlh->nlmsg_len);
}

struct nlmsghdr *nftb_msg(struct nftb_batch *b, uint16_t type, uint16_t flags, size_t size)
{
	b->msgs++;
	return nftnl_nlmsg_build_hdr(room(b, size + 1024), type, b->family, flags, ++b->c->seq);
}

void nftb_put(struct nftb_batch *b, struct nlmsghdr *nlh)
{
	b->len += NLMSG_ALIGN(nlh->nlmsg_len);
}

int nftb_commit(struct nftb_batch *b)
{
	int ret = 0;
	struct nftb_conn *c = b->c;
	if (!b->msgs)
		goto out;
	struct nlmsghdr *nlh = nftnl_batch_end(room(b, 256), ++c->seq);
	b->len += NLMSG_ALIGN(nlh->nlmsg_len);
	int sz = (int)(b->len + (1 << 16));
	int fd = mnl_socket_get_fd(c->nl);
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	if (mnl_socket_sendto(c->nl, b->p, b->len) < 0) {
		ret = -errno;
		snprintf(c->err, sizeof(c->err), "send: %s", strerror(errno));
		goto out;
	}
	char *buf = xmalloc(MNL_SOCKET_BUFFER_SIZE);
	for (int guard = 0; guard < 100000; guard++) {
		ssize_t n = recv(fd, buf, MNL_SOCKET_BUFFER_SIZE, MSG_DONTWAIT);
		if (n < 0)
			break;
		int len = (int)n;
		for (const struct nlmsghdr *h = (const struct nlmsghdr *)buf; mnl_nlmsg_ok(h, len);
		     h = mnl_nlmsg_next(h, &len)) {
			if (h->nlmsg_type != NLMSG_ERROR)
				continue;
			const struct nlmsgerr *e = mnl_nlmsg_get_payload(h);
			if (e->error && !ret) {
				ret = e->error;
				snprintf(c->err, sizeof(c->err), "message %u of the transaction: %s",
					 e->msg.nlmsg_seq, strerror(-e->error));
			}
		}
	}
	free(buf);
out:
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
	return ret;
}

void nftb_rule_add(struct nftb_batch *b, struct nftnl_rule *r)
{
	struct nftnl_udata_buf *ud = NULL;
	if (b->comment) {
		ud = nftnl_udata_buf_alloc(128);
		nftnl_udata_put_strz(ud, UDATA_RULE_COMMENT, b->comment);
		nftnl_rule_set_data(r, NFTNL_RULE_USERDATA, nftnl_udata_buf_data(ud),
				    nftnl_udata_buf_len(ud));
	}
	struct nlmsghdr *nlh = nftb_msg(b, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, 4096);
	nftnl_rule_nlmsg_build_payload(nlh, r);
	nftb_put(b, nlh);
	nftnl_rule_free(r);
	nftnl_udata_buf_free(ud);
}

void nftb_chain_flush(struct nftb_batch *b, const char *table, const char *chain)
{
	struct nftnl_rule *r = nftnl_rule_alloc();
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table);
	nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
	struct nlmsghdr *nlh = nftb_msg(b, NFT_MSG_DELRULE, 0, 512);
	nftnl_rule_nlmsg_build_payload(nlh, r);
	nftb_put(b, nlh);
	nftnl_rule_free(r);
}

uint64_t nftb_rule_sig(const struct nftnl_rule *r)
{
	uint32_t len = 0;
	const uint8_t *ud = nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &len);
	/* TLV: type, length, a NUL-terminated comment */
	if (!ud || len < 3 || ud[0] != UDATA_RULE_COMMENT || ud[1] + 2u > len)
		return 0;
	char s[64];
	size_t l = ud[1] < sizeof(s) ? ud[1] : sizeof(s) - 1;
	memcpy(s, ud + 2, l);
	s[l] = '\0';
	if (!str_has_prefix(s, NFTB_SIG_PREFIX))
		return 0;
	return strtoull(s + strlen(NFTB_SIG_PREFIX), NULL, 16);
}

void nftb_payload(struct nftnl_rule *r, uint32_t base, uint32_t off, uint32_t len)
{
	nftb_payload_reg(r, base, off, len, NFT_REG_1);
}

void nftb_meta(struct nftnl_rule *r, uint32_t key)
{
	struct nftnl_expr *e = nftnl_expr_alloc("meta");
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
	nftnl_rule_add_expr(r, e);
}

void nftb_cmp(struct nftnl_rule *r, uint32_t op, const void *data, uint32_t len)
{
	struct nftnl_expr *e = nftnl_expr_alloc("cmp");
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
	nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
	nftnl_rule_add_expr(r, e);
}

void nftb_lookup(struct nftnl_rule *r, const char *set, bool verdict, bool invert)
{
	struct nftnl_expr *e = nftnl_expr_alloc("lookup");
	nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
	nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
	if (verdict)
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, NFT_REG_VERDICT);
	if (invert)
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
	nftnl_rule_add_expr(r, e);
}

void nftb_verdict(struct nftnl_rule *r, int verdict, const char *chain)
{
	struct nftnl_expr *e = nftnl_expr_alloc("immediate");
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, (uint32_t)verdict);
	if (chain)
		nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, chain);
	nftnl_rule_add_expr(r, e);
}

void nftb_counter(struct nftnl_rule *r)
{
	nftnl_rule_add_expr(r, nftnl_expr_alloc("counter"));
}

void nftb_ct_state(struct nftnl_rule *r, uint32_t mask)
{
	struct nftnl_expr *e = nftnl_expr_alloc("ct");
	nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_STATE);
	nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
	nftnl_rule_add_expr(r, e);
	uint32_t zero = 0;
	nftb_bitwise(r, mask, 0);
	nftb_cmp(r, NFT_CMP_NEQ, &zero, 4);
}

void nftb_payload_reg(struct nftnl_rule *r, uint32_t base, uint32_t off, uint32_t len,
		      uint32_t dreg)
{
	struct nftnl_expr *e = nftnl_expr_alloc("payload");
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, dreg);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, off);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
	nftnl_rule_add_expr(r, e);
}

void nftb_bitwise(struct nftnl_rule *r, uint32_t mask, uint32_t xor)
{
	struct nftnl_expr *e = nftnl_expr_alloc("bitwise");
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, 4);
	nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, &mask, 4);
	nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, &xor, 4);
	nftnl_rule_add_expr(r, e);
}

void nftb_reject(struct nftnl_rule *r, uint32_t type, uint8_t code)
{
	struct nftnl_expr *e = nftnl_expr_alloc("reject");
	nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, type);
	nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE, code);
	nftnl_rule_add_expr(r, e);
}
