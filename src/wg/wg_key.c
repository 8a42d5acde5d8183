/* wg_key: WireGuard keys -- X25519 with OpenSSL's libcrypto, base64 as `wg` prints keys,
 * and the private key file (mode 0600) in the agent's state dir. */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/util.h"
#include "wg/wg.h"

int wg_key_generate(uint8_t priv[NL_WG_KEY_LEN])
{
	if (RAND_bytes(priv, NL_WG_KEY_LEN) != 1)
		return -EIO;
	/* RFC 7748 clamping, as `wg genkey` stores it */
	priv[0] &= 248;
	priv[31] &= 127;
	priv[31] |= 64;
	return 0;
}

int wg_key_public(const uint8_t priv[NL_WG_KEY_LEN], uint8_t pub[NL_WG_KEY_LEN])
{
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, NL_WG_KEY_LEN);
	if (!k)
		return -EINVAL;
	size_t len = NL_WG_KEY_LEN;
	int ok = EVP_PKEY_get_raw_public_key(k, pub, &len) == 1 && len == NL_WG_KEY_LEN;
	EVP_PKEY_free(k);
	return ok ? 0 : -EINVAL;
}

void wg_key_to_base64(const uint8_t key[NL_WG_KEY_LEN], char out[WG_KEY_B64_LEN + 1])
{
	EVP_EncodeBlock((unsigned char *)out, key, NL_WG_KEY_LEN);
	out[WG_KEY_B64_LEN] = '\0';
}

int wg_key_from_base64(const char *s, uint8_t key[NL_WG_KEY_LEN])
{
	if (!s)
		return -EINVAL;
	size_t len = strlen(s);
	while (len && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' '))
		len--;
	if (len != WG_KEY_B64_LEN)
		return -EINVAL;
	unsigned char tmp[WG_KEY_B64_LEN / 4 * 3];
	if (EVP_DecodeBlock(tmp, (const unsigned char *)s, WG_KEY_B64_LEN) != (int)sizeof(tmp))
		return -EINVAL;
	/* canonical only: the encoding of the decoded bytes is the input (padding, and no
	 * stray low bits in the last character) */
	char again[WG_KEY_B64_LEN + 1];
	wg_key_to_base64(tmp, again);
	if (memcmp(again, s, WG_KEY_B64_LEN))
		return -EINVAL;
	memcpy(key, tmp, NL_WG_KEY_LEN);
	return 0;
}

int wg_key_load(const char *path, uint8_t priv[NL_WG_KEY_LEN])
{
	char *data = NULL;
	size_t len;
	int r = file_read(path, &data, &len);
	if (r < 0)
		return r;
	r = strlen(data) == len ? wg_key_from_base64(data, priv) : -EINVAL;
	free(data);
	if (r == 0) {
		struct stat st;
		if (stat(path, &st) == 0 && (st.st_mode & 077))
			chmod(path, 0600); /* a private key is nobody else's business */
	}
	return r;
}

int wg_key_save(const char *path, const uint8_t priv[NL_WG_KEY_LEN])
{
	char line[WG_KEY_B64_LEN + 2];
	wg_key_to_base64(priv, line);
	line[WG_KEY_B64_LEN] = '\n';
	line[WG_KEY_B64_LEN + 1] = '\0';
	/* the temporary file is created 0600 already (the agent is one thread) */
	mode_t old = umask(077);
	int r = file_write_atomic(path, line, WG_KEY_B64_LEN + 1);
	umask(old);
	explicit_bzero(line, sizeof(line));
	return r;
}
