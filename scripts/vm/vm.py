#!/usr/bin/python3
"""Run twill's tests inside Debian's cloud kernel under qemu (make vmcheck, make vmshell).

The host kernel lacks IPVS, IPIP, dummy and WireGuard; Debian's linux-image-cloud-amd64 has
them as modules.  This script
  1. fetches that kernel package with `apt-get download` into <build>/vm/cache (reused; no
     install) and extracts it to <build>/vm/kernel/<version>, running depmod there;
  2. builds an uncompressed initramfs (<build>/vm/initramfs.cpio) holding the networking
     modules, the files of the Debian packages the tests need (python3 + pytest, iproute2,
     nftables, iptables, ... and everything they depend on, docs left out), busybox for
     /init, twill's binary and the repository's tests/, examples/ and scripts/ at the
     same absolute path as on the host (the cloud kernel has no 9p, so nothing is shared);
  3. boots it with qemu-system-x86_64 (KVM when /dev/kvm works, TCG otherwise), no network
     device, the serial console on stdio, bounded by --timeout;
  4. `test`: runs `python3 -m pytest -v` on the given tests inside, prints each test's
     result as the console shows it and exits with pytest's status (1 when the VM did not
     report one).  `shell`: an interactive shell on the console (Ctrl-A X quits qemu).

Everything happens inside the VM; on the host it only writes below <build>/vm.
"""
import argparse
import fcntl
import json
import os
import re
import selectors
import shlex
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
META_PKG = "linux-image-cloud-amd64"
# The Debian packages whose files (and dependencies' files) go into the VM.
USER_PKGS = ("python3 python3-pytest python3-pytest-timeout iproute2 nftables iptables "
             "iputils-ping curl procps kmod busybox-static coreutils dash bash grep sed "
             "util-linux findutils ipvsadm").split()
SKIP_FILES = re.compile(r"^/usr/share/(doc|man|locale|info|lintian|bug|bash-completion)/")
# Module folders taken whole (their dependencies are added from modules.dep).
MODULE_DIRS = ("kernel/net/", "kernel/lib/", "kernel/crypto/", "kernel/arch/",
               "kernel/drivers/net/wireguard/")
MODULE_FILES = re.compile(r"^kernel/drivers/net/[^/]+\.ko$")
PROJECT_DIRS = ("tests", "examples", "scripts", "bench")
RESULT_WORDS = ("PASSED", "FAILED", "SKIPPED", "ERROR", "XFAIL", "XPASS")
RESULT_RE = re.compile(r"^(\S+::\S+)\s+(%s)\b" % "|".join(RESULT_WORDS))
EXIT_MARK = "TWILL-VM-EXIT"


def log(msg):
    print(f"vm: {msg}", file=sys.stderr, flush=True)


def sh(args, **kw):
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw).stdout


# ---- the kernel ----

def kernel_package(cache):
    """Name of the versioned image package the meta package depends on, from apt; when apt
    cannot tell (no package lists), the newest one in the cache."""
    p = subprocess.run(["apt-cache", "depends", META_PKG], capture_output=True, text=True)
    m = re.search(r"Depends: (linux-image-\S+-cloud-amd64)", p.stdout)
    if m:
        return m.group(1)
    debs = sorted(cache.glob("linux-image-*-cloud-amd64_*.deb"))
    if debs:
        return debs[-1].name.split("_")[0]
    sys.exit(f"vm: apt does not know {META_PKG} (run apt-get update) and {cache} is empty")


def fetch_kernel(vmdir):
    cache = vmdir / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    pkg = kernel_package(cache)
    debs = sorted(cache.glob(f"{pkg}_*.deb"))
    if not debs:
        log(f"apt-get download {pkg} into {cache}")
        subprocess.run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", pkg],
                       cwd=cache, check=True, stdout=subprocess.DEVNULL)
        debs = sorted(cache.glob(f"{pkg}_*.deb"))
    deb = debs[-1]
    version = pkg[len("linux-image-"):]
    kdir = vmdir / "kernel" / version
    stamp = kdir / ".extracted"
    if not stamp.exists() or stamp.read_text() != deb.name:
        log(f"extracting {deb.name}")
        shutil.rmtree(kdir, ignore_errors=True)
        kdir.mkdir(parents=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(kdir)], check=True)
        subprocess.run(["depmod", "-b", str(kdir), version], check=True)
        stamp.write_text(deb.name)
    return version, kdir


def module_files(kdir, version):
    """Paths (relative to lib/modules/<version>) of the modules to ship."""
    mdir = kdir / "lib" / "modules" / version
    deps = {}
    for line in (mdir / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
    want = [m for m in deps if m.startswith(MODULE_DIRS) or MODULE_FILES.match(m)]
    seen = set()
    while want:
        m = want.pop()
        if m not in seen:
            seen.add(m)
            want.extend(deps.get(m, ()))
    return mdir, sorted(seen)


# ---- the userspace ----

def installed(pkg):
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
    return p.returncode == 0 and "ok installed" in p.stdout


def package_closure(roots):
    seen, todo = set(), list(roots)
    while todo:
        pkg = todo.pop()
        if pkg in seen:
            continue
        if not installed(pkg):
            sys.exit(f"vm: package {pkg} is not installed (scripts/deps.sh vm installs it)")
        seen.add(pkg)
        d = sh(["dpkg-query", "-W", "-f=${Pre-Depends}, ${Depends}", pkg])
        for alternatives in d.split(","):
            for alt in alternatives.split("|"):
                name = re.sub(r"\(.*?\)|\[.*?\]", "", alt).strip().split(":")[0]
                if name and installed(name):
                    todo.append(name)
                    break
    return sorted(seen)


def package_paths(pkgs):
    out = sh(["dpkg", "-L", *pkgs])
    return [f for f in out.splitlines() if f.startswith("/") and not SKIP_FILES.match(f)]


def with_link_targets(paths):
    """paths plus every file their symlinks lead to (/etc/alternatives is in no package)."""
    out, todo = set(), list(paths)
    while todo:
        p = todo.pop()
        if p in out:
            continue
        out.add(p)
        if os.path.islink(p):
            todo.append(os.path.normpath(os.path.join(os.path.dirname(p), os.readlink(p))))
    return out


def alternatives(files):
    """The names Debian's update-alternatives makes for the shipped files (in no package:
    /usr/sbin/iptables -> /etc/alternatives/iptables -> /usr/sbin/iptables-nft), as
    (link, target) pairs, from dpkg's records in /var/lib/dpkg/alternatives/<name> (mode,
    master link, then slave name and link pairs up to an empty line).  So iptables and
    ip6tables work in the VM with the host's choice of backend."""
    shipped = {os.path.realpath(f) for f in files}
    out = []
    adir = Path("/var/lib/dpkg/alternatives")
    for rec in sorted(adir.iterdir()) if adir.is_dir() else ():
        lines = rec.read_text(errors="replace").split("\n")
        if len(lines) < 2:
            continue
        pairs = [(rec.name, lines[1])]
        for i in range(2, len(lines) - 1, 2):
            if not lines[i]:
                break
            pairs.append((lines[i], lines[i + 1]))
        for name, link in pairs:
            alt = "/etc/alternatives/" + name
            if os.path.islink(alt) and os.path.realpath(alt) in shipped:
                out += [(link, alt), (alt, os.readlink(alt))]
    return out


def elf_libs(paths):
    """Shared libraries the given executables load, from ldd (for twill's own binary)."""
    libs = set()
    for p in paths:
        out = subprocess.run(["ldd", str(p)], capture_output=True, text=True).stdout
        libs.update(re.findall(r"(/\S+) \(0x", out))
    return sorted(libs)


# ---- cpio (newc) ----

class Cpio:
    def __init__(self, f):
        self.f = f
        self.ino = 1
        self.names = set()

    def _entry(self, name, mode, data=b"", rdev=(0, 0)):
        name = name.lstrip("/")
        if name in self.names:
            return
        self.names.add(name)
        nb = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(nb), 0)
        self.ino += 1
        hdr = b"070701" + b"".join(b"%08X" % v for v in fields)
        self.f.write(hdr + nb + b"\0" * (-(len(hdr) + len(nb)) % 4))
        self.f.write(data + b"\0" * (-len(data) % 4))

    def dirs(self, name):
        parts = name.strip("/").split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in self.names:
                self._entry(d, stat.S_IFDIR | 0o755)

    def mkdir(self, name, mode=0o755):
        self.dirs(name + "/x")
        self._entry(name, stat.S_IFDIR | mode)

    def symlink(self, name, target):
        self.dirs(name)
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def data(self, name, data, mode=0o644):
        self.dirs(name)
        self._entry(name, stat.S_IFREG | mode, data)

    def chardev(self, name, major, minor):
        self.dirs(name)
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def host(self, path, name=None):
        """Copy a host file, symlink or directory (not its contents) to name (default path)."""
        name = name or path
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            self.symlink(name, os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            self.mkdir(name, stat.S_IMODE(st.st_mode))
        elif stat.S_ISREG(st.st_mode):
            self.data(name, Path(path).read_bytes(), stat.S_IMODE(st.st_mode))

    def trailer(self):
        self._entry("TRAILER!!!", 0)


def real_name(path):
    """path with its directory resolved (merged /usr: /bin/ip is stored as /usr/bin/ip)."""
    d, b = os.path.split(path)
    return os.path.join(os.path.realpath(d), b)


def build_initramfs(out, kdir, version, twill, config, tests):
    pkgs = package_closure(USER_PKGS)
    files = with_link_targets(set(package_paths(pkgs)) | set(elf_libs([twill])))
    with open(out, "wb") as f:
        c = Cpio(f)
        for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            if os.path.islink("/" + top):
                c.symlink(top, os.readlink("/" + top))
        for d in ("proc", "sys", "dev", "run", "tmp", "root", "etc", "var/tmp"):
            c.mkdir(d)
        c.chardev("dev/console", 5, 1)
        c.chardev("dev/null", 1, 3)
        for p in sorted(files):
            if os.path.lexists(p) and not os.path.isdir(p) or os.path.islink(p):
                c.host(p, real_name(p))
        for link, target in alternatives(files):
            c.symlink(real_name(link), target)
        for p in ("/etc/passwd", "/etc/group", "/etc/protocols", "/etc/services",
                  "/etc/ethertypes", "/etc/nsswitch.conf", "/etc/ld.so.cache"):
            if os.path.exists(p):
                c.host(p)
        c.data("etc/hostname", b"twillvm\n")
        c.data("etc/hosts", b"127.0.0.1 localhost twillvm\n")
        mdir, mods = module_files(kdir, version)
        dst = f"usr/lib/modules/{version}"
        for m in mods:
            c.host(str(mdir / m), f"{dst}/{m}")
        for m in sorted(mdir.glob("modules.*")):
            c.host(str(m), f"{dst}/{m.name}")
        for d in PROJECT_DIRS:
            for p in sorted((ROOT / d).rglob("*")):
                if "__pycache__" not in p.parts and (p.is_file() or p.is_symlink()):
                    c.host(str(p))
        c.host(str(twill))
        c.data("init", (ROOT / "scripts" / "vm" / "init").read_bytes(), 0o755)
        c.data("etc/twill-vm.env", config.encode())
        c.data("etc/twill-vm-tests.json", json.dumps(tests).encode())
        c.trailer()
    return out.stat().st_size, len(pkgs), len(mods)


# ---- qemu ----

def kvm_works():
    """True when /dev/kvm opens and can create a VM (KVM_GET_API_VERSION, KVM_CREATE_VM)."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if fcntl.ioctl(fd, 0xAE00) != 12:
            return False
        os.close(fcntl.ioctl(fd, 0xAE01, 0))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def kvm_boots(vmdir, kernel):
    """Whether the kernel boots under KVM here.  /dev/kvm can be there and answer ioctls
    while guests still fail (nested virtualisation: "KVM internal error", or a hang), so
    the kernel is booted without a root filesystem: it must reach its "Kernel panic" within
    10 seconds.  The answer is kept per host boot in <build>/vm/kvm-probe."""
    if not kvm_works():
        return False
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    cache = vmdir / "kvm-probe"
    if cache.exists():
        bid, _, answer = cache.read_text().partition(" ")
        if bid == boot_id:
            return answer.strip() == "yes"
    cmd = ["qemu-system-x86_64", "-nodefaults", "-no-reboot", "-display", "none", "-nic",
           "none", "-m", "256", "-accel", "kvm", "-cpu", "host", "-serial", "stdio",
           "-kernel", str(kernel), "-append", "console=ttyS0 loglevel=3 panic=-1"]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    ok, out, end = False, b"", time.monotonic() + 10
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    while not ok and time.monotonic() < end:
        if sel.select(0.5):
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
            ok = b"Kernel panic" in out
    p.kill()
    p.wait()
    cache.write_text(f"{boot_id} {'yes' if ok else 'no'}\n")
    if not ok:
        log("KVM does not boot the kernel here (see /dev/kvm); using TCG")
    return ok


def qemu_cmd(vmdir, kernel, initrd, mem, cpus, serial):
    accel = os.environ.get("VM_ACCEL") or ("kvm" if kvm_boots(vmdir, kernel) else "tcg")
    cmd = ["qemu-system-x86_64", "-nodefaults", "-no-reboot", "-display", "none",
           "-nic", "none", "-m", str(mem), "-smp", str(cpus), "-accel", accel,
           "-cpu", "host" if accel == "kvm" else "max", "-serial", serial,
           "-kernel", str(kernel), "-initrd", str(initrd),
           "-append", "console=ttyS0 quiet loglevel=3 panic=-1 random.trust_cpu=on"]
    return accel, cmd


def run_tests(cmd, timeout, console_log):
    """Boot, echo the console, collect the results; the VM's pytest status or 1."""
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    results, rc, buf, pending = [], None, b"", None
    with open(console_log, "wb") as logf:
        while True:
            left = start + timeout - time.monotonic()
            if left <= 0:
                log(f"timeout after {timeout}s: stopping qemu (pid {p.pid})")
                p.kill()
                break
            if not sel.select(min(left, 1.0)):
                continue
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            logf.write(chunk)
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace").rstrip("\r")
                print(line, flush=True)
                m = RESULT_RE.match(line)
                if m:
                    results.append((m.group(1), m.group(2)))
                    pending = None
                elif re.match(r"^\S+::\S+ ", line):
                    pending = line.split()[0]  # with -s the test's output comes between
                elif pending and line.strip() in RESULT_WORDS:
                    results.append((pending, line.strip()))
                    pending = None
                if line.startswith(EXIT_MARK):
                    rc = int(line.split()[1])
    p.wait()
    elapsed = time.monotonic() - start
    counts = {}
    for _, r in results:
        counts[r] = counts.get(r, 0) + 1
    summary = ", ".join(f"{n} {r.lower()}" for r, n in sorted(counts.items())) or "no results"
    log(f"{summary} in {elapsed:.1f}s (console: {console_log})")
    for name, r in results:
        if r in ("FAILED", "ERROR"):
            log(f"{r}: {name}")
    if rc is None:
        log("the VM did not report an exit status")
        return 1
    return rc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build", help="build directory holding twill (B=)")
    ap.add_argument("--timeout", type=int, default=900, help="seconds for the whole VM run")
    ap.add_argument("--mem", type=int, default=2048)
    ap.add_argument("--cpus", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("what", choices=("test", "shell", "initramfs"))
    ap.add_argument("tests", nargs=argparse.REMAINDER,
                    help="pytest arguments (test files, -k ...)")
    a = ap.parse_args()

    build = (ROOT / a.build).resolve()
    twill = build / "twill"
    if not os.access(twill, os.X_OK):
        sys.exit(f"vm: {twill} is not built")
    vmdir = build / "vm"
    version, kdir = fetch_kernel(vmdir)
    tests = a.tests or ["tests/vm"]
    config = f"VM_MODE={a.what}\nVM_ROOT={ROOT}\nTWILL={twill}\nVM_TIMEOUT={a.timeout}\n"
    # host variables the tests read (the VM gets no environment otherwise)
    for k in ["VM_SVC_BENCH_ARGS"] + os.environ.get("VM_ENV", "").split():
        if k in os.environ and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            config += f"export {k}={shlex.quote(os.environ[k])}\n"
    t0 = time.monotonic()
    initrd = vmdir / "initramfs.cpio"
    size, npkgs, nmods = build_initramfs(initrd, kdir, version, twill, config, tests)
    log(f"initramfs: {size / 1e6:.0f} MB ({npkgs} packages, {nmods} modules) "
        f"in {time.monotonic() - t0:.1f}s")
    if a.what == "initramfs":
        return 0
    kernel = kdir / "boot" / f"vmlinuz-{version}"
    if a.what == "shell":
        accel, cmd = qemu_cmd(vmdir, kernel, initrd, a.mem, a.cpus, "mon:stdio")
        log(f"booting {version} ({accel}); Ctrl-A X quits")
        return subprocess.run(cmd).returncode
    accel, cmd = qemu_cmd(vmdir, kernel, initrd, a.mem, a.cpus, "stdio")
    log(f"booting {version} ({accel}): pytest {' '.join(tests)}")
    return run_tests(cmd, a.timeout, vmdir / "console.log")


if __name__ == "__main__":
    sys.exit(main())
