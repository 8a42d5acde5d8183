/* libFuzzer harness for manifest_decode (not built by default).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=gnu11 -D_GNU_SOURCE -Isrc \
 *     $(pkg-config --cflags json-c yaml-0.1) tests/fuzz/fuzz_manifest.c src/model/model.c \
 *     src/model/manifest.c src/lib/ip.c src/lib/util.c src/lib/log.c \
 *     $(pkg-config --libs json-c yaml-0.1) -o build/fuzz_manifest
 *   build/fuzz_manifest -max_len=65536 -timeout=5 [corpus-dir examples/]
 *
 * Every decoded object is cloned, hashed and freed, so the sanitizers also cover the model's
 * life cycle on whatever the decoder accepts.  Every input is also decoded in parts on three
 * threads (manifest_set_parallel), which must give the same objects, lines and diagnostics
 * as one pass. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "model/manifest.h"
#include "model/model.h"

static void diag_sink(const struct diag *d, void *arg)
{
	char buf[1024];
	diag_fmt(d, buf, sizeof(buf));
	uint64_t *h = arg;
	*h = fnv1a64(buf, strlen(buf) + 1, *h);
}

/* What a decode gave: its result, diagnostics and objects, as one hash. */
static uint64_t run(const uint8_t *data, size_t size, struct objlist *l)
{
	uint64_t h = FNV_SEED;
	int r = manifest_decode("fuzz", (const char *)data, size, l, diag_sink, &h);
	if (r < 0 && l->n)
		abort(); /* a file that could not be parsed at all yields nothing */
	h = fnv1a64(&r, sizeof(r), h);
	for (size_t i = 0; i < l->n; i++) {
		char id[256];
		object_id(l->v[i], id, sizeof(id));
		h = fnv1a64(id, strlen(id) + 1, h);
		h = fnv1a64(&l->v[i]->hash, sizeof(l->v[i]->hash), h);
		h = fnv1a64(&l->v[i]->meta.line, sizeof(l->v[i]->meta.line), h);
	}
	return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct objlist l = {0}, p = {0};
	manifest_set_parallel(1u << 20, 1);
	uint64_t one = run(data, size, &l);
	manifest_set_parallel(0, 3);
	if (run(data, size, &p) != one)
		abort(); /* in parts: not what one pass gives */
	objlist_free(&p);
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
