"""The network-namespace hosts of the harness (netns.py, Cluster(hosts="netns")): each node on its
own address, reachable from the test clients; partitions, isolation (with and without the
clients), one-way cuts and healing change exactly the paths they name; process faults still
work; and nothing is left behind - not by a stopped cluster, not by a crashed run."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import netns
from clientops import create_topic, produce, read_all
from harness import Cluster

PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 9092), timeout=float(sys.argv[2])).close()
    print("ok")
except ConnectionRefusedError:
    print("ok")  # the RST came back: the path works (a controller has no Kafka port)
except OSError as e:
    print("fail", e)
"""


def reaches(c, src, dst, timeout=0.5):
    """Whether a TCP connection attempt from `src` (node id, or netns.CLIENTS for this
    namespace) to node `dst` gets an answer."""
    args = [sys.executable, "-c", PROBE, c.net.ip(dst), str(timeout)]
    if src != netns.CLIENTS:
        args = c.net.command(src, args)
    out = subprocess.run(args, capture_output=True, text=True, timeout=10).stdout
    return out.startswith("ok")


def matrix(c):
    """The (from, to) pairs that reach each other, probed in parallel."""
    pairs = sorted(everything(c), key=str)
    with ThreadPoolExecutor(len(pairs)) as pool:
        ok = list(pool.map(lambda p: reaches(c, *p), pairs))
    return {p for p, r in zip(pairs, ok) if r}


def everything(c):
    ends = [netns.CLIENTS] + sorted(c.nodes)
    return {(a, b) for a in ends for b in sorted(c.nodes) if a != b}


def leftovers(net):
    """What of `net` still exists on the machine."""
    found = []
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [ns for ns in net.namespaces.values() if ns in namespaces]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [x for x in [net.bridge, *net.veths.values()] if f" {x}:" in links or f" {x}@" in links]
    rules = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True).stdout
    found += [line for line in rules.splitlines() if net.bridge in line]
    return found


def test_nodes_have_their_own_addresses_and_faults_cut_exactly_what_they_name(make_cluster, netns_required):
    c = make_cluster(controllers=1, brokers=2, hosts="netns")
    assert {n.host for n in c.nodes.values()} == {c.net.ip(i) for i in (1, 101, 102)}
    assert c.bootstrap == f"{c.net.ip(101)}:9092,{c.net.ip(102)}:9092"
    create_topic(c.bootstrap, "t", 2, rf=2)
    acked = produce(c.bootstrap, "t", [b"v%d" % i for i in range(30)], 2)
    assert sorted(read_all(c.bootstrap, "t", 2, 30)) == sorted(acked)
    full = everything(c)
    assert matrix(c) == full

    c.partition([[1], [101, 102]])
    assert matrix(c) == full - {(1, 101), (1, 102), (101, 1), (102, 1)}, "clients still reach both sides"

    c.isolate(101)  # replaces the partition
    assert matrix(c) == full - {(101, 1), (101, 102), (1, 101), (102, 101)}

    c.isolate(102, from_clients=True)
    assert matrix(c) == full - {(102, 1), (102, 101), (1, 102), (101, 102), (netns.CLIENTS, 102)}

    c.heal()
    c.cut(101, 102)  # one way: 101's packets to 102 are dropped, 102's to 101 are not
    rules = {n: subprocess.run(c.net.command(n, ["iptables", "-S"]), capture_output=True, text=True).stdout
             for n in (101, 102)}
    assert f"-A OUTPUT -d {c.net.ip(102)}/32 -j DROP" in rules[101] and "INPUT -s" not in rules[101]
    assert f"-A INPUT -s {c.net.ip(101)}/32 -j DROP" in rules[102] and "OUTPUT -d" not in rules[102]
    # A TCP handshake needs both ways, so neither connects to the other; node 1 is untouched.
    assert matrix(c) == full - {(101, 102), (102, 101)}
    c.heal()
    assert matrix(c) == full


def test_process_faults_work_inside_namespaces(make_cluster, netns_required):
    c = make_cluster(combined=1, hosts="netns")
    n = c.nodes[1]
    with open(f"/proc/{n.proc.pid}/comm") as f:
        assert f.read().strip() != "ip", "ip netns exec execs: the pid is the broker's"
    n.pause()
    assert not n.ready()
    n.resume()
    n.wait_ready(10)
    n.kill()
    assert not n.ready()
    n.start()
    assert n.stop() == 0


def test_a_stopped_cluster_leaves_nothing_but_its_guard_route(netns_required):
    c = Cluster(combined=1, hosts="netns")
    with c:
        assert len(leftovers(c.net)) == 4, "namespace, bridge, veth and FORWARD rule while it runs"
    assert leftovers(c.net) == []
    routes = subprocess.run(["ip", "-4", "route", "show", "proto", netns.GUARD_PROTO],
                            capture_output=True, text=True).stdout
    assert f"unreachable {c.net.subnet} metric {os.getpid()}" in routes, routes
    # The node addresses now fail at once instead of leaving through the default route.
    assert subprocess.run(["ip", "route", "get", c.net.ip(1)], capture_output=True).returncode != 0


def test_clean_stale_removes_what_a_dead_run_left(netns_required):
    dead = subprocess.Popen(["true"])
    dead.wait()
    pid, subnet = dead.pid, netns.pick_subnet()
    ns, bridge, veth, peer = f"trib-{pid}-1-n1", f"trb{pid}-1", f"trv{pid}-1-0", f"trp{pid}-1-0"
    for args in (["ip", "netns", "add", ns], ["ip", "link", "add", bridge, "type", "bridge"],
                 ["ip", "link", "add", veth, "type", "veth", "peer", "name", peer],
                 ["ip", "link", "set", veth, "master", bridge],
                 ["iptables", "-I", "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"],
                 ["ip", "route", "add", "unreachable", str(subnet), "proto", netns.GUARD_PROTO, "metric", str(pid)]):
        netns.run(args)
    netns.clean_stale()
    assert ns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert not any(x in links for x in (bridge, veth, peer)), links
    assert bridge not in subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True).stdout
    assert str(subnet) not in subprocess.run(["ip", "route", "show", "proto", netns.GUARD_PROTO],
                                             capture_output=True, text=True).stdout
