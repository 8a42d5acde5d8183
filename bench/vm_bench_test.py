"""bench/vm_svc_bench.py inside the VM, as a pytest test (scripts/vm/vm.py runs pytest there).

    make B=build/x vmbench        (= vmcheck VMTESTS='bench/vm_bench_test.py -s', longer timeout)
    VM_SVC_BENCH_ARGS="--sizes 10,1000" make ... (the benchmark's arguments, passed into the
    VM by scripts/vm/vm.py; default the benchmark's own)

The results go to the console (-s).  Skips outside the VM (no /etc/twill-vm.env) unless
VM_SVC_BENCH_ARGS is set, and where the kernel has no IPVS and ipvs is asked for.
"""
import os
import shlex
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.mark.timeout(7200)
def test_svc_dataplanes_vm():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not os.path.exists("/etc/twill-vm.env") and "VM_SVC_BENCH_ARGS" not in os.environ:
        pytest.skip("a benchmark for the VM (make vmcheck VMTESTS=bench/vm_bench_test.py)")
    import vm_svc_bench
    argv = os.environ.get("VM_SVC_BENCH_ARGS", "")
    results = vm_svc_bench.main(shlex.split(argv))
    assert results, "no dataplane ran"
    done = [r for r in results if (r.get("full") or {}).get("wall_ms") is not None]
    assert done, "no dataplane finished a full sync: %s" % results
