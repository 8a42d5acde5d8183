/* libFuzzer harness for manifest_decode (not built by default).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=gnu11 -D_GNU_SOURCE -Isrc \
 *     $(pkg-config --cflags json-c yaml-0.1) tests/fuzz/fuzz_manifest.c src/model/model.c \
 *     src/model/manifest.c src/lib/ip.c src/lib/util.c src/lib/log.c \
 *     $(pkg-config --libs json-c yaml-0.1) -o build/fuzz_manifest
 *   build/fuzz_manifest -max_len=65536 -timeout=5 [corpus-dir examples/]
 *
 * Every decoded object is cloned, hashed and freed, so the sanitizers also cover the model's
 * life cycle on whatever the decoder accepts. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "model/manifest.h"
#include "model/model.h"

static void diag_sink(const struct diag *d, void *arg)
{
	char buf[1024];
	(void)arg;
	diag_fmt(d, buf, sizeof(buf));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct objlist l = {0};
	int r = manifest_decode("fuzz", (const char *)data, size, &l, diag_sink, NULL);
	if (r < 0 && l.n)
		abort(); /* a file that could not be parsed at all yields nothing */
	for (size_t i = 0; i < l.n; i++) {
		struct object *c = object_clone(l.v[i]);
		char id[256];
		if (object_hash(c) != l.v[i]->hash)
			abort();
		object_id(c, id, sizeof(id));
		object_free(c);
	}
	objlist_free(&l);
	return 0;
}
