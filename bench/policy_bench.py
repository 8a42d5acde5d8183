#!/usr/bin/python3
"""bench/policy_bench.py: NetworkPolicy planner + nftables writer at scale.

Generates NAMESPACES namespaces x PODS_PER_NS pods spread over NODES nodes and POLICIES
NetworkPolicies (a mix: default deny, same-namespace and cross-namespace selectors with
matchExpressions, combined peers, ipBlocks with except, named ports, endPort ranges,
egress), then, in a private network namespace (twpb<pid>), for node n0:

  1. `twill policy sync`: plan + program from scratch (one transaction), peak RSS;
  2. the same again: what a restart costs when nothing changed;
  3. one pod label change: plan + program time and what was sent (set elements only);
  4. the agent (`twill agent --policy on --proxy none`): its first sync, then the time
     from a pod label change on disk until the agent logged the sync that applied it,
     and the agent's RSS.

Prints one JSON line per step and a summary.  Needs root.  Usage:
  bench/policy_bench.py [--twill build/twill] [--policies 1000] [--pods-per-ns 100]
"""
import argparse
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def gen(d, namespaces, pods_per_ns, nodes, policies):
    rnd = random.Random(6)
    docs = []
    for n in range(nodes):
        docs.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"n{n}"},
                     "spec": {"podCIDRs": [f"10.{100 + n // 200}.{n % 200}.0/24"]},
                     "status": {"addresses": [{"type": "InternalIP",
                                               "address": f"192.168.{n // 200}.{n % 200 + 1}"}]}})
    k = 0
    pods = []
    for i in range(namespaces):
        ns = f"ns{i:02d}"
        docs.append({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": ns, "labels": {"team": f"t{i % 5}"}}})
        for j in range(pods_per_ns):
            node = (i * 7 + j) % nodes
            ip = f"10.{100 + node // 200}.{node % 200}.{k // nodes + 2}"
            k += 1
            name = f"p{j:03d}"
            pods.append((ns, name))
            docs.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": name, "namespace": ns,
                                      "labels": {"app": f"a{j % 10}",
                                                 "tier": "front" if j % 3 else "back"}},
                         "spec": {"nodeName": f"n{node}", "containers": [{"name": "c", "ports": [
                             {"name": "http", "containerPort": 8080 + j % 3},
                             {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]},
                         "status": {"podIP": ip, "phase": "Running"}})
    per_ns = max(1, policies // namespaces)
    made = 0
    for i in range(namespaces):
        ns = f"ns{i:02d}"
        for j in range(per_ns):
            if made >= policies:
                break
            made += 1
            kind = 0 if j == 0 else 1 + j % 5
            spec = {"podSelector": {"matchLabels": {"app": f"a{j % 10}"}}}
            if kind == 0:
                spec = {"podSelector": {}, "policyTypes": ["Ingress"]}
            elif kind == 1:
                spec["ingress"] = [{"from": [{"podSelector": {"matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["front"]}]}}],
                    "ports": [{"port": "http"}]}]
            elif kind == 2:
                spec["ingress"] = [{"from": [{"namespaceSelector": {"matchLabels": {
                    "team": f"t{rnd.randrange(5)}"}}, "podSelector": {"matchLabels": {
                        "app": f"a{rnd.randrange(10)}"}}}], "ports": [{"port": 8080, "endPort": 8090}]}]
            elif kind == 3:
                spec["ingress"] = [{"from": [{"ipBlock": {"cidr": f"172.{16 + j % 16}.0.0/16",
                                                         "except": [f"172.{16 + j % 16}.{j}.0/24"]}}]}]
            elif kind == 4:
                spec["policyTypes"] = ["Egress"]
                spec["egress"] = [{"to": [{"namespaceSelector": {"matchExpressions": [
                    {"key": "team", "operator": "NotIn", "values": [f"t{j % 5}"]}]}}]},
                    {"ports": [{"port": 53, "protocol": "UDP"}]}]
            else:
                spec["ingress"] = [{"from": [{"podSelector": {"matchLabels": {"app": f"a{(j + 1) % 10}"}}},
                                             {"namespaceSelector": {"matchLabels": {"team": f"t{j % 5}"}}}],
                                    "ports": [{"port": 80}, {"port": 443}, {"port": 9000, "endPort": 9100}]}]
            docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                         "metadata": {"name": f"np{j:03d}", "namespace": ns}, "spec": spec})
    # one file per namespace (a change re-reads that file only), nodes in their own
    by_file = {}
    for o in docs:
        by_file.setdefault(o["metadata"].get("namespace") or "cluster", []).append(o)
    for stem, items in by_file.items():
        (d / f"{stem}.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List",
                                                    "items": items}))
    return pods


def relabel(d, ns, name, key, value):
    f = d / f"{ns}.json"
    doc = json.loads(f.read_text())
    for o in doc["items"]:
        m = o["metadata"]
        if o["kind"] == "Pod" and m["name"] == name and m["namespace"] == ns:
            m["labels"][key] = value
    tmp = d / f".{ns}.json.tmp"
    tmp.write_text(json.dumps(doc))
    os.rename(tmp, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--twill", default=os.environ.get("TWILL", "build/twill"))
    ap.add_argument("--namespaces", type=int, default=50)
    ap.add_argument("--pods-per-ns", type=int, default=100)
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--policies", type=int, default=1000)
    ap.add_argument("--timeout", type=int, default=120)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("policy_bench: needs root (a private network namespace)")
    twill = os.path.abspath(a.twill)
    netns = f"twpb{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix="twill-policy-bench."))
    mdir, sdir = tmp / "manifests", tmp / "state"
    mdir.mkdir()
    agent = None
    results = {}
    try:
        t = time.monotonic()
        pods = gen(mdir, a.namespaces, a.pods_per_ns, a.nodes, a.policies)
        print(f"generated {len(pods)} pods, {a.policies} policies in {time.monotonic() - t:.1f} s",
              file=sys.stderr)
        subprocess.run(["ip", "netns", "add", netns], check=True)
        ex = ["ip", "netns", "exec", netns]

        def sync(step):
            t0 = time.monotonic()
            p = subprocess.run(ex + [twill, "policy", "sync", "--manifests", str(mdir), "--node",
                                     "n0"], capture_output=True, text=True, timeout=a.timeout)
            wall = (time.monotonic() - t0) * 1000
            if p.returncode != 0:
                sys.exit(f"{step}: {p.stdout}{p.stderr}")
            r = json.loads(p.stdout)
            r["wallMs"] = round(wall, 1)
            r["maxRssMB"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
            results[step] = r
            print(json.dumps({"step": step, **r}))

        sync("full")
        sync("again")
        # ns00/p002 (tier=front, on another node) is in the peer set "pods tier in (front) in
        # namespace ns00" of ns00/np010, which isolates n0's pods ns00/p000 and p050
        ns, name = "ns00", "p002"
        relabel(mdir, ns, name, "tier", "back")
        sync("label-change")
        relabel(mdir, ns, name, "tier", "front")
        subprocess.run(ex + [twill, "policy", "sync", "--delete"], check=True)

        # the agent: first sync, then a label change end to end
        log = tmp / "agent.log"
        agent = subprocess.Popen(ex + [twill, "agent", "--node", "n0", "--manifests", str(mdir),
                                       "--state-dir", str(sdir), "--proxy", "none",
                                       "--routing", "host-gw", "--cluster-cidr", "10.96.0.0/11",
                                       "--log-file", str(log), "--log-level", "debug"])

        def syncs():
            text = log.read_text() if log.exists() else ""
            return re.findall(r"policy: (\w+) sync, (\d+) messages.*?, ([\d.]+) ms", text)
        end = time.monotonic() + a.timeout
        while not syncs() and time.monotonic() < end and agent.poll() is None:
            time.sleep(0.05)
        first = syncs()
        if not first:
            sys.exit(f"agent: no policy sync\n{log.read_text() if log.exists() else ''}")
        time.sleep(1.0)
        n0 = len(syncs())
        t0 = time.monotonic()
        relabel(mdir, ns, name, "tier", "back")
        while len(syncs()) == n0 and time.monotonic() < end:
            time.sleep(0.005)
        took = (time.monotonic() - t0) * 1000
        last = syncs()[-1]
        rss = 0
        for line in Path(f"/proc/{agent.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) / 1024
        # `ip netns exec` execs the agent: its pid is the agent's
        results["agent"] = {"firstSyncMs": float(first[0][2]), "labelChangeMs": round(took, 1),
                            "labelChangeSyncMs": float(last[2]),
                            "labelChangeMessages": int(last[1]), "peakRssMB": round(rss, 1)}
        print(json.dumps({"step": "agent", **results["agent"]}))
    finally:
        if agent and agent.poll() is None:
            agent.terminate()
            try:
                agent.wait(10)
            except subprocess.TimeoutExpired:
                agent.kill()
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    f, c, g = results["full"], results["label-change"], results["agent"]
    print(f"\nsummary: {len(pods)} pods, {a.policies} policies, {a.namespaces} namespaces, "
          f"node n0 ({a.pods_per_ns * a.namespaces // a.nodes} pods)\n"
          f"  from scratch: plan {f['planMs']} ms + program {f['syncMs']} ms "
          f"({f['messages']} messages, {f['chains']} chains, {f['sets']} sets), "
          f"one-shot command {f['wallMs']} ms incl. loading manifests, peak RSS {f['maxRssMB']} MB\n"
          f"  restart, nothing changed: {results['again']['chainsWritten']} chains written, "
          f"{results['again']['elemsAdded']} elements added, {results['again']['syncMs']} ms\n"
          f"  one label change: plan {c['planMs']} ms + program {c['syncMs']} ms, "
          f"{c['chainsWritten']} chains written, elements +{c['elemsAdded']} -{c['elemsDeleted']}\n"
          f"  agent: first sync {g['firstSyncMs']} ms; label change on disk -> applied "
          f"{g['labelChangeMs']} ms (sync {g['labelChangeSyncMs']} ms, "
          f"{g['labelChangeMessages']} messages); agent peak RSS {g['peakRssMB']} MB")


if __name__ == "__main__":
    main()
