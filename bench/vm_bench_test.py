"""bench/vm_svc_bench.py inside the VM, as a pytest test (scripts/vm/vm.py runs pytest there).

    make B=build/x vmcheck VMTESTS='bench/vm_bench_test.py -s' VM_TIMEOUT=1500
    VM_SVC_BENCH_ARGS="--sizes 10,1000" ... (the benchmark's arguments; default its own)

The results go to the console (-s).  Skips outside the VM (no /etc/twill-vm.env) unless
VM_SVC_BENCH_ARGS is set, and where the kernel has no IPVS and ipvs is asked for.
"""
import os
import shlex
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


def iptables_names():
    """The VM's initramfs has the iptables package's files but not the names Debian's
    update-alternatives makes (/usr/sbin/iptables -> /etc/alternatives/... -> iptables-nft):
    make them in the VM's /usr/local/sbin (first in its PATH), nf_tables backend as on the
    host.  Only inside the VM."""
    if not os.path.exists("/etc/twill-vm.env"):
        return
    for name in ("iptables", "iptables-save", "iptables-restore", "ip6tables",
                 "ip6tables-save", "ip6tables-restore"):
        target = "/usr/sbin/" + name.replace("tables", "tables-nft", 1)
        link = "/usr/local/sbin/" + name
        if not shutil.which(name) and os.path.exists(target) and not os.path.lexists(link):
            os.makedirs("/usr/local/sbin", exist_ok=True)
            os.symlink(target, link)


@pytest.mark.timeout(3600)
def test_svc_dataplanes_vm():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not os.path.exists("/etc/twill-vm.env") and "VM_SVC_BENCH_ARGS" not in os.environ:
        pytest.skip("a benchmark for the VM (make vmcheck VMTESTS=bench/vm_bench_test.py)")
    iptables_names()
    import vm_svc_bench
    # arguments: $VM_SVC_BENCH_ARGS, else bench/vm_bench_args (one line; the VM gets no
    # environment from the host, but bench/ is copied in), else the benchmark's defaults
    f = Path(__file__).resolve().parent / "vm_bench_args"
    argv = os.environ.get("VM_SVC_BENCH_ARGS", f.read_text() if f.exists() else "")
    results = vm_svc_bench.main(shlex.split(argv))
    assert results, "no dataplane ran"
    done = [r for r in results if (r.get("full") or {}).get("wall_ms") is not None]
    assert done, "no dataplane finished a full sync: %s" % results
