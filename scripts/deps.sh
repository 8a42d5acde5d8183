#!/bin/sh
# Installs the Debian packages twill needs to build, test and run its lab.
# Idempotent and quiet when nothing is missing; run as root on Debian 12.
#   scripts/deps.sh          build + test + lab packages (make check, make demo)
#   scripts/deps.sh fuzz     also the fuzzing toolchain (make fuzz)
#   scripts/deps.sh vm       also qemu, busybox, kmod and ipvsadm (copied into the test VM; make vmcheck)
set -eu
# build: compiler, pkg-config and the libraries twill links (see README "Dependencies")
PKGS="build-essential pkg-config libmnl-dev libjson-c-dev libyaml-dev libnftnl-dev libssl-dev"
# unit tests (cmocka) and integration tests (pytest, iproute2's ip/bridge to inspect the
# kernel, ping and curl inside namespaces, Debian's reference CNI plugins as the baseline)
PKGS="$PKGS libcmocka-dev python3 python3-pytest python3-pytest-timeout iproute2 iputils-ping curl procps \
      containernetworking-plugins nftables iptables"
# BGP interop peers (tests/integration/test_bgp_interop.py): BIRD 2 and FRR
PKGS="$PKGS bird2 frr"
if [ "${1:-}" = fuzz ]; then
    PKGS="$PKGS clang libclang-rt-14-dev"
fi
if [ "${1:-}" = vm ]; then
    PKGS="$PKGS qemu-system-x86 busybox-static kmod ipvsadm"
fi
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "deps: missing packages:$missing (run as root to install them)" >&2
    exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends $missing >/dev/null
