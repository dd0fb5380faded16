"""The hosts of the harness where nodes have their own addresses - network namespaces
(netns.py, Cluster(hosts="netns")) and containers of the broker image (containers.py,
hosts="docker") - pass the same checks: each node on its own address, reachable from the test
clients; partitions, isolation (with and without the clients), one-way cuts and healing change
exactly the paths they name; process faults work, and a restarted node is still cut off; and
nothing is left behind - not by a stopped cluster, not by a crashed run."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

import containers
import netns
from clientops import create_topic, produce, read_all
from harness import Cluster, broker_image, wait_for

KINDS = ["netns", "docker"]


@pytest.fixture(params=KINDS)
def kind(request):
    """Each test runs on both kinds of hosts, skipped (or failed: TRIBUTARY_REQUIRE_NETNS=1,
    TRIBUTARY_REQUIRE_DOCKER=1) where the kind is unavailable."""
    request.getfixturevalue(f"{request.param}_required")
    return request.param

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


def out(args):
    return subprocess.run(args, capture_output=True, text=True).stdout


def leftovers(net):
    """What of `net` still exists on the machine."""
    if net.name == "docker":
        names = out(["docker", "ps", "-a", "--format", "{{.Names}}"]).split()
        networks = out(["docker", "network", "ls", "--format", "{{.Name}}"]).split()
        return [x for x in net.containers.values() if x in names] + [x for x in [net.network] if x in networks]
    found = []
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [ns for ns in net.namespaces.values() if ns in namespaces]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [x for x in [net.bridge, *net.veths.values()] if f" {x}:" in links or f" {x}@" in links]
    rules = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True).stdout
    found += [line for line in rules.splitlines() if net.bridge in line]
    return found


def test_nodes_have_their_own_addresses_and_faults_cut_exactly_what_they_name(make_cluster, kind):
    c = make_cluster(controllers=1, brokers=2, hosts=kind)
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


def test_process_faults_work_and_a_restarted_node_stays_cut_off(make_cluster, kind):
    c = make_cluster(controllers=1, brokers=1, hosts=kind)
    n = c.nodes[101]
    if kind == "netns":
        with open(f"/proc/{n.proc.pid}/comm") as f:
            assert f.read().strip() != "ip", "ip netns exec execs: the pid is the broker's"
    n.pause()
    wait_for("the paused node silent", lambda: not n.ready(), 5)
    n.resume()
    n.wait_ready(10)
    c.cut(101, 1, both_ways=True)
    n.kill()
    assert not n.alive() and not n.ready()
    n.start(wait_ready=False)  # it cannot register: its controller is cut off
    wait_for("the restarted node reachable from the clients", lambda: reaches(c, netns.CLIENTS, 101), 20)
    assert not reaches(c, 101, 1) and not reaches(c, 1, 101), "the cut survives the restart"
    c.heal()
    n.wait_ready(20)
    assert n.stop() == 0, "SIGTERM: a controlled shutdown"


def test_a_stopped_cluster_leaves_nothing_but_its_guard_route(kind):
    c = Cluster(combined=1, hosts=kind)
    with c:
        assert len(leftovers(c.net)) == (4 if kind == "netns" else 2), \
            "netns: namespace, bridge, veth and FORWARD rule; docker: container and network"
    assert leftovers(c.net) == []
    routes = subprocess.run(["ip", "-4", "route", "show", "proto", netns.GUARD_PROTO],
                            capture_output=True, text=True).stdout
    assert f"unreachable {c.net.subnet} metric {os.getpid()}" in routes, routes
    # The node addresses now fail at once instead of leaving through the default route.
    assert subprocess.run(["ip", "route", "get", c.net.ip(1)], capture_output=True).returncode != 0


def dead_pid():
    dead = subprocess.Popen(["true"])
    dead.wait()
    return dead.pid


def test_clean_stale_removes_what_a_dead_run_left(netns_required):
    pid, subnet = dead_pid(), netns.pick_subnet()
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


def test_clean_stale_removes_the_containers_and_networks_of_a_dead_run(docker_required):
    pid, subnet = dead_pid(), netns.pick_subnet()
    name, label = f"trib-{pid}-1", f"{containers.LABEL}={pid}"
    netns.run(["docker", "network", "create", "--internal", "--subnet", str(subnet), "--label", label, name])
    netns.run(["docker", "create", "--name", f"{name}-n1", "--network", name, "--label", label,
               broker_image()])
    containers.clean_stale()
    assert f"{name}-n1" not in out(["docker", "ps", "-a", "--format", "{{.Names}}"]).split()
    assert name not in out(["docker", "network", "ls", "--format", "{{.Name}}"]).split()
