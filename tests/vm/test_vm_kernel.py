"""The VM's kernel has what the development host's lacks: dummy, IPIP, IPVS.

Runs inside the VM (make vmcheck); on a kernel without these modules the tests skip.
Everything happens in a network namespace the test creates (prefix "tvmk").
"""
import os
from pathlib import Path

import pytest

from conftest import run

NS = f"tvmk{os.getpid() % 100000}"


def in_vm():
    return Path("/etc/twill-vm.env").exists()


pytestmark = pytest.mark.skipif(not in_vm() or os.geteuid() != 0,
                                reason="runs inside the VM (make vmcheck)")


@pytest.fixture
def ns():
    run(["ip", "netns", "del", NS], check=False)
    run(["ip", "netns", "add", NS])
    # lo up: a namespace without any address has no local table, and the kernel then
    # refuses onlink gateways ("Nexthop has invalid gateway").
    run(["ip", "-n", NS, "link", "set", "lo", "up"])
    yield NS
    run(["ip", "netns", "del", NS], check=False)


def nsrun(ns, *cmd, check=True):
    return run(["ip", "netns", "exec", ns, *cmd], check=check)


def test_dummy_device(ns):
    nsrun(ns, "ip", "link", "add", "d0", "type", "dummy")
    nsrun(ns, "ip", "addr", "add", "10.99.0.1/32", "dev", "d0")
    nsrun(ns, "ip", "link", "set", "d0", "up")
    out = nsrun(ns, "ip", "-d", "-o", "link", "show", "d0").stdout
    assert "dummy" in out
    out = nsrun(ns, "ip", "-o", "addr", "show", "dev", "d0").stdout
    assert "10.99.0.1/32" in out


def test_ipip_tunnel(ns):
    # Loading ipip gives every namespace its fallback device tunl0 (what Calico uses).
    nsrun(ns, "ip", "link", "add", "ipip0", "type", "ipip", "local", "10.98.0.1",
          "remote", "10.98.0.2")
    out = nsrun(ns, "ip", "-d", "-o", "link", "show").stdout
    assert "tunl0" in out, out
    assert "ipip0" in out and "ipip" in out
    assert Path("/sys/module/ipip").is_dir()
    nsrun(ns, "ip", "link", "set", "tunl0", "up")
    nsrun(ns, "ip", "route", "add", "10.97.1.0/24", "via", "10.98.0.2", "dev", "tunl0",
          "onlink")
    out = nsrun(ns, "ip", "route", "show", "10.97.1.0/24").stdout
    assert "via 10.98.0.2 dev tunl0" in out and "onlink" in out


def test_ipvs(ns):
    run(["modprobe", "ip_vs"])
    run(["modprobe", "ip_vs_rr"])
    text = nsrun(ns, "cat", "/proc/net/ip_vs").stdout
    assert "IP Virtual Server version" in text
    assert Path("/sys/module/ip_vs_rr").is_dir()


def test_wireguard_device(ns):
    nsrun(ns, "ip", "link", "add", "wg0", "type", "wireguard")
    out = nsrun(ns, "ip", "-d", "-o", "link", "show", "wg0").stdout
    assert "wireguard" in out
