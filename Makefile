# twill: one multi-call binary (agent, cni, lab, cli).
#   make          build build/twill
#   make check    install missing Debian packages, build, run unit + integration tests, then
#                 the VM tests (make vmcheck)
#   make demo     install missing Debian packages, build, bring the lab up with examples/webpod.yaml
#   make bench    benchmarks (not part of check); results go to bench/results/

CC      ?= cc
PKGS    := libmnl json-c yaml-0.1 libnftnl libcrypto
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral \
           -D_GNU_SOURCE -Isrc $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null)
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

B       := build
SRCS    := $(sort $(wildcard src/*/*.c))
OBJS    := $(SRCS:src/%.c=$(B)/obj/%.o)
SOBJS   := $(SRCS:src/%.c=$(B)/sobj/%.o)
UNIT    := $(sort $(wildcard tests/unit/test_*.c))
UNITBIN := $(UNIT:tests/unit/%.c=$(B)/test/%)
PYTEST  ?= /usr/bin/python3 -m pytest

.PHONY: all deps check unit integration demo bench fuzz clean fmt
all: $(B)/twill

deps:
	@sh scripts/deps.sh

$(B)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(B)/sobj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -O1 -MMD -MP -c -o $@ $<

$(B)/libtwill.a: $(filter-out $(B)/obj/main/%,$(OBJS))
	@rm -f $@
	ar rcs $@ $^

$(B)/libtwill-san.a: $(filter-out $(B)/sobj/main/%,$(SOBJS))
	@rm -f $@
	ar rcs $@ $^

$(B)/twill: $(B)/obj/main/main.o $(B)/libtwill.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# The sanitizer build of the binary, used by the integration tests' CNI cases.
$(B)/twill-san: $(B)/sobj/main/main.o $(B)/libtwill-san.a
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS)

$(B)/test/%: tests/unit/%.c $(B)/libtwill-san.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -O1 -Itests/unit -o $@ $< $(B)/libtwill-san.a $(LDLIBS) -lcmocka

unit: $(UNITBIN)
	@set -e; for t in $(UNITBIN); do echo "== $$t"; ./$$t; done

# Each test bounds itself too; the timeout only stops a test that hangs anyway.
integration: $(B)/twill $(B)/twill-san
	$(PYTEST) -q -p no:cacheprovider -o timeout=300 tests/integration
	@echo "== the CNI cases again with the ASan/UBSan build of the plugin"
	TWILL=$(B)/twill-san $(PYTEST) -q -p no:cacheprovider -o timeout=300 tests/integration/test_cni.py

# The VM part (Debian's cloud kernel under qemu, for what the host kernel lacks) runs last.
check: deps
	@$(MAKE) --no-print-directory all unit integration
	@$(MAKE) --no-print-directory vmcheck

demo: deps
	@$(MAKE) --no-print-directory all
	@sh scripts/demo.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@sh bench/run.sh

# libFuzzer on the manifest decoder (FUZZ_SECONDS each; corpus in build/fuzz/corpus).
FUZZ_SECONDS ?= 60
FUZZ_SRCS := $(filter src/lib/% src/model/%,$(SRCS))
$(B)/fuzz/fuzz_manifest: tests/fuzz/fuzz_manifest.c $(FUZZ_SRCS)
	@mkdir -p $(dir $@)
	clang -g -O1 -std=gnu11 -D_GNU_SOURCE -Isrc $(shell pkg-config --cflags $(PKGS) 2>/dev/null) \
		-fsanitize=fuzzer,address,undefined -o $@ $^ $(LDLIBS)

# and on the BGP message parsers (seed corpus tests/fuzz/corpus_bgp)
$(B)/fuzz/fuzz_bgp_msg: tests/fuzz/fuzz_bgp_msg.c $(filter src/lib/% src/bgp/msg.c,$(SRCS))
	@mkdir -p $(dir $@)
	clang -g -O1 -std=gnu11 -D_GNU_SOURCE -Isrc -fsanitize=fuzzer,address,undefined -o $@ $^

fuzz:
	@sh scripts/deps.sh fuzz
	@$(MAKE) --no-print-directory $(B)/fuzz/fuzz_manifest $(B)/fuzz/fuzz_bgp_msg
	@mkdir -p $(B)/fuzz/corpus && cp -n examples/*.yaml $(B)/fuzz/corpus/ 2>/dev/null || true
	$(B)/fuzz/fuzz_manifest -max_total_time=$(FUZZ_SECONDS) -max_len=65536 $(B)/fuzz/corpus
	@mkdir -p $(B)/fuzz/corpus_bgp && cp -n tests/fuzz/corpus_bgp/* $(B)/fuzz/corpus_bgp/
	$(B)/fuzz/fuzz_bgp_msg -max_total_time=$(FUZZ_SECONDS) -max_len=8192 $(B)/fuzz/corpus_bgp

# Tests that need IPVS, IPIP, dummy or WireGuard, which the host kernel may lack: inside
# Debian's cloud kernel under qemu (scripts/vm/vm.py; VMTESTS are pytest's arguments there).
VMTESTS    ?= tests/vm
VM_TIMEOUT ?= 900
.PHONY: vmcheck vmshell vmbench
vmcheck: $(B)/twill
	@sh scripts/deps.sh vm
	/usr/bin/python3 scripts/vm/vm.py --build $(B) --timeout $(VM_TIMEOUT) test $(VMTESTS)

# The Service dataplanes (IPVS, nftables, iptables) benchmarked in the VM (~20 min under TCG).
vmbench: $(B)/twill
	@sh scripts/deps.sh vm
	/usr/bin/python3 scripts/vm/vm.py --build $(B) --timeout 1800 test bench/vm_bench_test.py -s

vmshell: $(B)/twill
	@sh scripts/deps.sh vm
	/usr/bin/python3 scripts/vm/vm.py --build $(B) shell

fmt:
	clang-format -i $(SRCS) $(wildcard src/*/*.h) $(UNIT)

clean:
	rm -rf $(B)

-include $(OBJS:.o=.d) $(SOBJS:.o=.d)
