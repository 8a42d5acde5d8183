"""A node namespace with a client and HTTP backends around it, for the Service dataplane tests.

    client --veth-- node --veth-- backend-a / backend-b / ...

Every veth is created from inside the node namespace (never in the host's); each leg is its
own /24 (`<net>.<i>.0`, the client's is `<net>.100.0`), the node is .1 and the far end .2.
With net6 (e.g. "fd77") each leg also gets the /64 `<net6>:<i>::` (node ::1, far end ::2,
no duplicate address detection, so the addresses work at once) and the node forwards IPv6.
Each backend runs python's http.server handler on port 8080 serving one file, `id`,
holding its name, so a test can tell which backend answered (on every address with net6).
"""
import os
import subprocess


# http.server's own HTTPServer resolves its address back to a name (getfqdn) before it
# listens: with an unreachable resolver that takes many seconds.  A plain TCPServer does not.
HTTP_SERVER = r"""
import functools, http.server, socket, socketserver, sys
class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True
    if ":" in sys.argv[1]:
        address_family = socket.AF_INET6  # "::" also takes IPv4 (bindv6only=0)
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[3])
Server((sys.argv[1], int(sys.argv[2])), handler).serve_forever()
"""


def netns_with_prefix(prefix):
    d = "/run/netns"
    return sorted(n for n in os.listdir(d) if n.startswith(prefix)) if os.path.isdir(d) else []


def cleanup(prefix, procs=()):
    """Kill the given processes (ours, by handle) and delete our namespaces."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
    for ns in netns_with_prefix(prefix):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


def build(sh, node, client, pfx, backends, net, tag, mdir, net6=None):
    """Create the namespaces and links and start the backends; returns their processes
    (the caller kills them).  `sh(*cmd, ns=None)` runs a command, in a namespace if given."""
    for ns in [node, client] + [pfx + b for b in backends]:
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=node)
    if net6:
        sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=node)
    legs = [(client, "%s.100" % net, "c")] + [
        (pfx + b, "%s.%d" % (net, i + 1), b) for i, b in enumerate(backends)]
    for n, (ns, sub, t) in enumerate(legs):
        host, peer = "%s%s%d" % (tag, t, os.getpid() % 10000), "eth0"
        sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer, "netns", ns,
           ns=node)
        sh("ip", "addr", "add", sub + ".1/24", "dev", host, ns=node)
        sh("ip", "link", "set", host, "up", ns=node)
        sh("ip", "addr", "add", sub + ".2/24", "dev", peer, ns=ns)
        sh("ip", "link", "set", peer, "up", ns=ns)
        sh("ip", "route", "add", "default", "via", sub + ".1", ns=ns)
        if net6:
            sub6 = "%s:%d::" % (net6, 100 if n == 0 else n)
            sh("ip", "addr", "add", sub6 + "1/64", "dev", host, "nodad", ns=node)
            sh("ip", "addr", "add", sub6 + "2/64", "dev", peer, "nodad", ns=ns)
            sh("ip", "-6", "route", "add", "default", "via", sub6 + "1", ns=ns)
    # a node has a default route; without one, its own connections to a ClusterIP fail the
    # routing lookup before the nat output hook runs
    sh("ip", "route", "add", "default", "via", "%s.100.2" % net, ns=node)
    if net6:
        sh("ip", "-6", "route", "add", "default", "via", "%s:100::2" % net6, ns=node)
    procs = []
    for b, ip in backends.items():
        ip = "::" if net6 else ip
        d = os.path.join(mdir, ".www-" + b)
        os.makedirs(d)
        with open(os.path.join(d, "id"), "w") as f:
            f.write(b)
        procs.append(subprocess.Popen(
            ["ip", "netns", "exec", pfx + b, "/usr/bin/python3", "-c", HTTP_SERVER, ip, "8080",
             d],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs
