"""Shared fixtures for twill's integration tests.

`lab` is a factory: each call brings up a `twill lab` under a name unique to this test
run ("t<pid><n>", short so pod namespace names stay short), and every lab it made is torn
down after the test, also when the test fails.  Everything happens in network namespaces
the lab creates; nothing is added to the host's namespace.
"""
import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TWILL = os.environ.get("TWILL", str(ROOT / "build" / "twill"))
LAB_ROOT = Path("/run/twill/lab")
_seq = itertools.count()


def run(args, check=True, timeout=60, **kw):
    """Run a command, returning the CompletedProcess (text output captured)."""
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {p.returncode}\n"
            f"--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}")
    return p


def netns_list(prefix):
    d = Path("/run/netns")
    if not d.is_dir():
        return []
    return sorted(n.name for n in d.iterdir() if n.name.startswith(prefix))


class Lab:
    def __init__(self, name):
        self.name = name
        self.dir = LAB_ROOT / name
        self.manifests = self.dir / "manifests"
        self.up_output = None

    def twill(self, *args, check=True, timeout=60):
        cmd, rest = args[0], args[1:]
        return run([TWILL, "lab", cmd, "--name", self.name, *rest], check=check,
                   timeout=timeout)

    def up(self, routing="mixed", wiring="routed", files=(), wait=True, timeout=30,
           proxy=None, encrypt=None, router=None):
        args = ["--routing", routing, "--wiring", wiring, "--timeout", str(timeout)]
        if proxy:
            args += ["--proxy", proxy]
        if encrypt:
            args += ["--encrypt", encrypt]
        if router:
            args += ["--router", router]
        for f in files:
            args += ["-f", str(f)]
        if not wait:
            args.append("--no-wait")
        p = self.twill("up", *args, check=False, timeout=timeout + 30)
        self.up_output = p.stdout + p.stderr
        if p.returncode != 0:
            raise AssertionError(f"lab up failed ({p.returncode}):\n{self.up_output}\n"
                                 f"{self.logs()}")
        return p

    def down(self, check=False):
        return self.twill("down", check=check, timeout=60)

    def probe(self, *args, check=False, timeout=30):
        p = self.twill("probe", "-o", "json", *args, check=False, timeout=timeout)
        try:
            data = json.loads(p.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"probe output is not JSON:\n{p.stdout}\n{p.stderr}")
        data["rc"] = p.returncode
        if check and p.returncode != 0:
            raise AssertionError(f"probe: {data['reachable']}/{data['total']}\n"
                                 f"{self.twill('probe', check=False).stdout}")
        return data

    def status(self):
        p = self.twill("status", "-o", "json", check=False)
        return json.loads(p.stdout)

    def exec(self, target, *cmd, check=True, timeout=30):
        return run([TWILL, "lab", "exec", "--name", self.name, target, "--", *cmd],
                   check=check, timeout=timeout)

    def pods(self):
        return {p["name"]: p for p in self.status()["pods"]}

    def logs(self, lines=30):
        out = []
        logdir = self.dir / "log"
        if logdir.is_dir():
            for f in sorted(logdir.iterdir()):
                text = f.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {f}\n" + "\n".join(text))
        return "\n".join(out)


def _requirements():
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if not os.access(TWILL, os.X_OK):
        return f"{TWILL} not built"
    return None


@pytest.fixture
def lab(request):
    why = _requirements()
    if why:
        pytest.skip(why)
    made = []

    def factory(**kw):
        name = f"t{os.getpid() % 100000}{next(_seq)}"
        lb = Lab(name)
        lb.down()  # leftovers of an earlier run with the same name
        made.append(lb)
        lb.up(**kw)
        return lb

    yield factory
    failed = getattr(request.node, "rep_call", None)
    for lb in made:
        if failed is not None and failed.failed:
            print(lb.logs())
        lb.down()
        leftover = netns_list(lb.name + "-")
        assert not leftover, f"lab down left namespaces {leftover}"


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def wait_for(pred, timeout, interval=0.02):
    """Poll pred() until it returns a truthy value or timeout seconds pass."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > end:
            return v
        time.sleep(interval)


def has_tool(name):
    return shutil.which(name) is not None
