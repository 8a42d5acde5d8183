"""Network namespaces for the BGP tests that run daemons side by side (test_bgp_as4.py,
test_bgp_linklocal.py, test_bgp_agent_config.py).

namespaces() makes fresh namespaces (lo up) and a temp dir for configs, state and logs; at
the end it kills the processes and stops the daemons the test registered, deletes the
namespaces and the dir.  veth() joins two of them.
"""
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from conftest import run


@contextlib.contextmanager
def namespaces(prefix, names):
    """Yields {"tmp": Path, "daemons": [objects with stop()], "procs": [Popen]}."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")

    def delete():
        for ns in names:
            run(["ip", "netns", "del", ns], check=False)

    delete()
    tmp = Path(tempfile.mkdtemp(prefix=prefix + "-"))
    os.chmod(tmp, 0o777)
    env = {"tmp": tmp, "daemons": [], "procs": []}
    try:
        for ns in names:
            run(["ip", "netns", "add", ns])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        yield env
    finally:
        for p in env["procs"]:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        for d in env["daemons"]:
            d.stop()
        delete()
        shutil.rmtree(tmp, ignore_errors=True)


def veth(a, b, a_addrs=(), b_addrs=()):
    """A veth between a = (ns, dev) and b = (ns, dev), with `ip addr add` argument lists
    for each end (e.g. ["10.0.0.1/30"] or ["fe80::1/64", "nodad"]), both ends up."""
    run(["ip", "-n", a[0], "link", "add", a[1], "type", "veth", "peer", "name", b[1],
         "netns", b[0]])
    for (ns, dev), addrs in ((a, a_addrs), (b, b_addrs)):
        for addr in addrs:
            args = addr if isinstance(addr, list) else [addr]
            run(["ip", "-n", ns, "addr", "add", args[0], "dev", dev, *args[1:]])
        run(["ip", "-n", ns, "link", "set", dev, "up"])
