/* nftb: small building blocks for talking to nf_tables with libnftnl + libmnl, shared by
 * twill's nftables writers: one transaction buffer (NFNL_MSG_BATCH_BEGIN .. END) that
 * grows as messages are added, sending it and collecting the kernel's first error, dump
 * requests, and the expressions twill's rules are made of.
 *
 * Rules carry a content signature in their userdata comment ("twill:<16 hex>"), which a
 * restarted writer reads back (nftb_rule_sig) to tell whether a chain needs rewriting. */
#pragma once
#include <libmnl/libmnl.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NFTB_SIG_PREFIX "twill:"

struct nftb_conn {
	struct mnl_socket *nl;
	uint32_t portid, seq;
	char err[256];
};
int nftb_open(struct nftb_conn *c); /* 0 or -errno; no-op when open */
void nftb_close(struct nftb_conn *c);
/* Send one dump request (built with nftb_dump_hdr) and feed every answer to cb.
 * -ENOENT (no such table or set) reads as an empty answer. */
int nftb_dump(struct nftb_conn *c, struct nlmsghdr *req, mnl_cb_t cb, void *arg);
struct nlmsghdr *nftb_dump_hdr(struct nftb_conn *c, char *buf, uint16_t type, uint16_t family);

struct nftb_batch {
	struct nftb_conn *c;
	uint16_t family;
	char *p;
	size_t len, cap;
	unsigned msgs;	     /* messages between begin and end */
	const char *comment; /* userdata comment put on every rule added */
};
void nftb_begin(struct nftb_batch *b, struct nftb_conn *c, uint16_t family);
/* Room for one message of at most `room` payload bytes; fill it, then nftb_put. */
struct nlmsghdr *nftb_msg(struct nftb_batch *b, uint16_t type, uint16_t flags, size_t room);
void nftb_put(struct nftb_batch *b, struct nlmsghdr *nlh);
/* End and send the transaction (if it holds any message); 0 or the kernel's error (then
 * c->err says which message). Frees the buffer either way. */
int nftb_commit(struct nftb_batch *b);
/* Add a rule to the batch (appended), with b->comment as userdata; frees r. */
void nftb_rule_add(struct nftb_batch *b, struct nftnl_rule *r);
/* A DELRULE naming only the chain: every rule of it. */
void nftb_chain_flush(struct nftb_batch *b, const char *table, const char *chain);
/* The signature in a dumped rule's comment, 0 if none. */
uint64_t nftb_rule_sig(const struct nftnl_rule *r);

/* expressions (registers: NFT_REG_1 unless given) */
void nftb_payload(struct nftnl_rule *r, uint32_t base, uint32_t off, uint32_t len);
void nftb_meta(struct nftnl_rule *r, uint32_t key);
void nftb_cmp(struct nftnl_rule *r, uint32_t op, const void *data, uint32_t len);
void nftb_lookup(struct nftnl_rule *r, const char *set, bool verdict, bool invert);
void nftb_verdict(struct nftnl_rule *r, int verdict, const char *chain);
void nftb_counter(struct nftnl_rule *r);
/* ct state & mask != 0 */
void nftb_ct_state(struct nftnl_rule *r, uint32_t mask);
/* payload into register dreg (NFT_REG32_00 ..., for concatenated keys) */
void nftb_payload_reg(struct nftnl_rule *r, uint32_t base, uint32_t off, uint32_t len,
		      uint32_t dreg);
/* reg1 = (reg1 & mask) ^ xor, 4 bytes */
void nftb_bitwise(struct nftnl_rule *r, uint32_t mask, uint32_t xor);
/* reject: type NFT_REJECT_TCP_RST (code 0), NFT_REJECT_ICMP_UNREACH (code ICMP_*) ... */
void nftb_reject(struct nftnl_rule *r, uint32_t type, uint8_t code);
