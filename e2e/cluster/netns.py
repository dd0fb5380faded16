"""Network-namespace hosts for the cluster harness: every node runs in a Linux network namespace
of its own with its own IP address, so that the network between nodes can be cut.

Layout of one cluster (`NetnsHosts`):

- a bridge `trb<pid>-<k>` in the root namespace holding `10.X.Y.254/24` (X, Y random per cluster,
  avoiding every subnet already routed here), which is the address test clients talk from;
- per node a namespace `trib-<pid>-<k>-n<id>` with `lo` up and one veth end named `eth0` holding
  `10.X.Y.<id>` (node ids 1..253), the other end `trv<pid>-<k>-<i>` a port of the bridge;
- one rule `iptables -I FORWARD -i <bridge> -o <bridge> -j ACCEPT` in the root namespace: Docker
  sets FORWARD's policy to DROP and br_netfilter sends bridged frames through it.

There is no default route in a namespace and the bridge has no uplink: nodes reach each other and
the root namespace's test clients, nothing else. In the root namespace a guard route
`unreachable 10.X.Y.0/24 proto 252 metric <pid>` (the bridge's own route, metric 0, wins while it
exists) outlives the cluster until the process exits: a client left over from a test (an admin
client nobody closed) that retries a node's address gets "no route to host" instead of sending
it out of the default route.

Faults are iptables DROP rules inside the nodes' namespaces (INPUT by source, OUTPUT by
destination), rewritten per namespace with `iptables-restore` from one set of directed cuts, and
`tc netem` on a node's `eth0`. Dropped, not rejected: connections hang as on a real partition.

Everything but the guard route is removed by `teardown` (called by the harness when a cluster
is killed); everything, guard routes included, at interpreter exit, on SIGTERM, and for earlier
runs whose pid is dead by `clean_stale` (run before every new cluster).

Not here: node processes (the harness starts them through `command`), and Docker containers
(containers.py, which shares `NetworkFaults`, the guard routes and the exit hooks).
"""

import atexit
import ipaddress
import os
import random
import re
import shutil
import signal
import subprocess
import threading

CLIENTS = "clients"
"""The endpoint name of the test clients (the root namespace, the bridge's address) in cuts."""

NS_PREFIX = "trib-"
BRIDGE_PREFIX = "trb"
VETH_PREFIX = "trv"
PEER_PREFIX = "trp"
"""A veth's namespace end between its creation and its move (renamed eth0 there)."""
CLIENT_HOST = 254
"""The host part of the bridge's address; node ids use 1..253 as theirs."""
GUARD_PROTO = "252"
"""The routing protocol number that marks guard routes (their metric is the owner's pid)."""

_NS_RE = re.compile(r"^trib-(\d+)-(\d+)-n\d+$")
_LINK_RE = re.compile(r"^tr[bvp](\d+)-\d+(-\d+)?$")

_live = set()  # hosts (netns or docker) set up and not yet torn down, for atexit and SIGTERM
_guards = set()  # guard routes (subnet, pid) this process added
_lock = threading.Lock()
_counter = [0]
_exit_hooks = []


class NetnsError(RuntimeError):
    """A command that sets up or changes the test network failed."""


def run(args, check=True, input=None, timeout=30):
    """Runs one command; raises NetnsError with its stderr when `check` and it fails."""
    p = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise NetnsError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def unavailable_reason():
    """Why netns clusters cannot run here (None when they can): needs root, `ip` with netns
    support, iptables and iptables-restore."""
    if os.geteuid() != 0:
        return "network-namespace clusters need root (ip netns, veth, bridge, iptables)"
    for tool in ("ip", "iptables", "iptables-restore"):
        if shutil.which(tool) is None:
            return f"network-namespace clusters need `{tool}` on PATH"
    probe = f"{NS_PREFIX}{os.getpid()}-0-n0"  # a name clean_stale knows
    try:
        p = run(["ip", "netns", "add", probe], check=False)
        if p.returncode != 0:
            return f"`ip netns add` does not work here: {p.stderr.strip()}"
        p = run(["ip", "netns", "exec", probe, "iptables", "-S"], check=False)
        if p.returncode != 0:
            return f"iptables does not work inside a network namespace: {p.stderr.strip()}"
    finally:
        run(["ip", "netns", "del", probe], check=False)
    return None


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_namespace_processes(ns):
    """SIGKILLs whatever still runs in `ns` (node processes a harness started there)."""
    p = run(["ip", "netns", "pids", ns], check=False)
    for pid in p.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def _delete_forward_rules(bridge):
    rule = ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
    for _ in range(10):  # one per setup; more only if something went wrong twice
        if run(["iptables", "-D", *rule], check=False).returncode != 0:
            break


def clean_stale():
    """Removes namespaces, links and FORWARD rules left by earlier runs whose process is dead
    (named with this module's prefixes and that process's pid). Live runs are left alone."""
    for line in run(["ip", "netns", "list"], check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NS_RE.match(name)
        if m and not pid_alive(int(m.group(1))):
            _kill_namespace_processes(name)
            run(["ip", "netns", "del", name], check=False)
    links = run(["ip", "-o", "link", "show"], check=False).stdout
    stale = set()
    for m in re.finditer(r"^\d+: ([^:@\s]+)", links, re.M):
        name = m.group(1)
        lm = _LINK_RE.match(name)
        if lm and not pid_alive(int(lm.group(1))):
            stale.add(name)
    for name in sorted(stale, key=lambda n: n.startswith(BRIDGE_PREFIX)):  # veths, then bridges
        run(["ip", "link", "del", name], check=False)
    for line in run(["iptables", "-S", "FORWARD"], check=False).stdout.splitlines():
        m = re.match(r"^-A FORWARD -i (trb(\d+)-\d+) -o \1 -j ACCEPT$", line)
        if m and not pid_alive(int(m.group(2))):
            _delete_forward_rules(m.group(1))
    for line in run(["ip", "-4", "route", "show", "proto", GUARD_PROTO], check=False).stdout.splitlines():
        m = re.match(r"^unreachable (\S+) metric (\d+)", line.strip())
        if m and not pid_alive(int(m.group(2))):
            _delete_guard(m.group(1), m.group(2))


def _guard_args(subnet, pid):
    return ["unreachable", str(subnet), "proto", GUARD_PROTO, "metric", str(pid)]


def _delete_guard(subnet, pid):
    run(["ip", "route", "del", *_guard_args(subnet, pid)], check=False)


def _used_networks():
    nets = []
    for args in (["ip", "-o", "-4", "route", "show", "table", "all"], ["ip", "-o", "-4", "addr", "show"]):
        for word in run(args, check=False).stdout.split():
            if re.match(r"^\d+\.\d+\.\d+\.\d+(/\d+)?$", word):
                try:
                    nets.append(ipaddress.ip_network(word, strict=False))
                except ValueError:
                    pass
    return nets


def pick_subnet(rng=random):
    """A random 10.X.Y.0/24 that overlaps nothing routed or addressed here (so parallel runs on
    one machine, each with its own bridge, do not collide)."""
    used = [n for n in _used_networks() if n.prefixlen > 0]
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{rng.randrange(64, 255)}.{rng.randrange(0, 256)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise NetnsError("no free 10.X.Y.0/24 subnet found")


def _render_rules(drops_in, drops_out):
    """iptables-restore input for one namespace's filter table: DROP packets from each address of
    `drops_in` and to each address of `drops_out`; everything else accepted."""
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    lines += [f"-A INPUT -s {ip}/32 -j DROP" for ip in sorted(drops_in)]
    lines += [f"-A OUTPUT -d {ip}/32 -j DROP" for ip in sorted(drops_out)]
    return "\n".join(lines + ["COMMIT", ""])


class NetworkFaults:
    """Directed cuts and netem over the nodes of one cluster, each in a network namespace of its
    own on one /24 with the test clients at CLIENT_HOST. Subclasses own the namespaces: they
    set `node_ids`, `subnet`, and say how to run a command in a node's namespace (`command`)
    and which nodes have one now (`nodes_up`)."""

    node_ids: list
    subnet: ipaddress.IPv4Network

    def __init__(self):
        self.cuts = set()  # directed (from, to) endpoint pairs whose packets are dropped
        self.netem = {}  # node id -> (delay_ms, jitter_ms, loss_pct) in force

    def ip(self, endpoint):
        """The address of a node id, or of CLIENTS (the bridge, where test clients live)."""
        host = CLIENT_HOST if endpoint == CLIENTS else endpoint
        return str(self.subnet.network_address + host)

    def command(self, node_id, args):
        raise NotImplementedError

    def nodes_up(self):
        return self.node_ids

    def _endpoints(self):
        return self.node_ids + [CLIENTS]

    def _check(self, endpoints):
        unknown = [e for e in endpoints if e not in self._endpoints()]
        if unknown:
            raise ValueError(f"unknown nodes {unknown}; this cluster has {self.node_ids} and {CLIENTS!r}")

    def _apply(self, nodes=None):
        """Rewrites the filter table of each of `nodes` (default: every node that has a network
        namespace now) from `self.cuts`."""
        for n in self.nodes_up() if nodes is None else nodes:
            drops_in = {self.ip(a) for a, b in self.cuts if b == n}
            drops_out = {self.ip(b) for a, b in self.cuts if a == n}
            run(self.command(n, ["iptables-restore"]), input=_render_rules(drops_in, drops_out))

    def node_started(self, node_id):
        """Puts the cuts and netem in force on a node whose network namespace is new (a
        restarted container)."""
        self._apply([node_id])
        if node_id in self.netem:
            self.set_netem(node_id, *self.netem[node_id])

    def cut(self, src, dst, both_ways=False):
        """Drops packets from `src` to `dst` (node ids or CLIENTS); with `both_ways`, the other
        way too. Adds to the cuts in force."""
        self._check([src, dst])
        self.cuts.add((src, dst))
        if both_ways:
            self.cuts.add((dst, src))
        self._apply()

    def partition(self, groups):
        """Replaces the cuts in force with a partition: endpoints in different groups cannot
        exchange packets either way. Endpoints are node ids or CLIENTS; an endpoint in no group
        keeps talking to everyone (CLIENTS usually)."""
        flat = [e for g in groups for e in g]
        self._check(flat)
        if len(flat) != len(set(flat)):
            raise ValueError(f"an endpoint is in two groups: {groups}")
        side = {e: i for i, g in enumerate(groups) for e in g}
        self.cuts = {(a, b) for a in flat for b in flat if side[a] != side[b]}
        self._apply()

    def isolate(self, node_id, from_clients=False):
        """Cuts `node_id` off every other node, both ways; from the test clients too when
        `from_clients` (by default clients still reach it, as in Jepsen's partitions)."""
        others = [n for n in self.node_ids if n != node_id]
        groups = [[node_id], others]
        if not from_clients:
            # clients in no group: they reach both sides
            self.partition(groups)
        else:
            self.partition([[node_id], others + [CLIENTS]])

    def heal(self):
        """Removes every cut and every netem qdisc."""
        self.cuts.clear()
        self._apply()
        for n in list(self.netem):
            self.clear_netem(n)

    def set_netem(self, node_id, delay_ms=0, jitter_ms=0, loss_pct=0.0):
        """`tc netem` on the node's interface: every packet it sends is delayed (± jitter) and
        lost with the given probability. Needs `tc` and the sch_netem module."""
        if shutil.which("tc") is None:
            raise NetnsError("tc is not installed")
        args = ["delay", f"{delay_ms}ms"] + ([f"{jitter_ms}ms"] if jitter_ms else [])
        if loss_pct:
            args += ["loss", f"{loss_pct}%"]
        run(self.command(node_id, ["tc", "qdisc", "replace", "dev", "eth0", "root", "netem", *args]))
        self.netem[node_id] = (delay_ms, jitter_ms, loss_pct)

    def clear_netem(self, node_id):
        if node_id in self.nodes_up():
            run(self.command(node_id, ["tc", "qdisc", "del", "dev", "eth0", "root"]), check=False)
        self.netem.pop(node_id, None)

    def describe(self):
        """One line of the cuts in force, for test output."""
        if not self.cuts:
            return "no cuts"
        return ", ".join(f"{a}->{b}" for a, b in sorted(self.cuts, key=str))


def check_node_ids(node_ids):
    bad = [n for n in node_ids if not 1 <= n < CLIENT_HOST]
    if bad:
        raise ValueError(f"node ids must be 1..{CLIENT_HOST - 1} to be host parts of an address: {bad}")


def next_cluster_number():
    """A number unique in this process, for names."""
    with _lock:
        _counter[0] += 1
        return _counter[0]


def add_guard(subnet):
    """The guard route of `subnet` for this process (see the module doc), removed at exit."""
    guard = (str(subnet), os.getpid())
    run(["ip", "route", "add", *_guard_args(*guard)])
    with _lock:
        _guards.add(guard)


def register(hosts):
    """`hosts.teardown()` runs at exit and on SIGTERM unless it ran before."""
    _install_exit_hooks()
    with _lock:
        _live.add(hosts)


def unregister(hosts):
    with _lock:
        _live.discard(hosts)


class NetnsHosts(NetworkFaults):
    """The network of one cluster: a namespace and address per node id, a bridge, and the cuts
    currently in force. Addresses are decided at construction; nothing exists on the machine
    until `setup`."""

    name = "netns"

    def __init__(self, node_ids):
        super().__init__()
        check_node_ids(node_ids)
        k = next_cluster_number()
        pid = os.getpid()
        self.node_ids = sorted(node_ids)
        self.subnet = pick_subnet()
        self.bridge = f"{BRIDGE_PREFIX}{pid}-{k}"
        self.namespaces = {n: f"{NS_PREFIX}{pid}-{k}-n{n}" for n in self.node_ids}
        self.veths = {n: f"{VETH_PREFIX}{pid}-{k}-{i}" for i, n in enumerate(self.node_ids)}
        too_long = [x for x in [self.bridge, *self.veths.values()] if len(x) > 15]
        if too_long:
            raise NetnsError(f"interface names longer than 15 characters: {too_long}")
        self.is_set_up = False

    def command(self, node_id, args):
        """`args` run inside the node's namespace (`ip netns exec` execs: the pid is args')."""
        return ["ip", "netns", "exec", self.namespaces[node_id], *args]

    # Life cycle

    def setup(self):
        """Creates the bridge, the namespaces and the FORWARD rule (idempotent). Undone by
        `teardown`, also at exit and on SIGTERM."""
        if self.is_set_up:
            return
        clean_stale()
        register(self)
        self.is_set_up = True  # from here on, teardown removes whatever exists
        prefix = self.subnet.prefixlen
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        run(["ip", "addr", "add", f"{self.ip(CLIENTS)}/{prefix}", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        run(["iptables", "-I", "FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"])
        add_guard(self.subnet)
        for n in self.node_ids:
            self._add_node(n, prefix)

    def _add_node(self, n, prefix):
        ns, host_end = self.namespaces[n], self.veths[n]
        peer = host_end.replace(VETH_PREFIX, PEER_PREFIX, 1)
        run(["ip", "netns", "add", ns])
        run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", peer])
        run(["ip", "link", "set", host_end, "master", self.bridge, "up"])
        run(["ip", "link", "set", peer, "netns", ns])
        run(["ip", "-n", ns, "link", "set", peer, "name", "eth0"])
        run(["ip", "-n", ns, "addr", "add", f"{self.ip(n)}/{prefix}", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def teardown(self):
        """Kills what still runs in the namespaces, removes them, the veths, the bridge and the
        FORWARD rule. Idempotent; never raises."""
        if not self.is_set_up:
            return
        self.is_set_up = False
        for ns in self.namespaces.values():
            _kill_namespace_processes(ns)
        for n in self.node_ids:
            run(["ip", "link", "del", self.veths[n]], check=False)  # takes the namespace's end too
            run(["ip", "netns", "del", self.namespaces[n]], check=False)
        run(["ip", "link", "del", self.bridge], check=False)
        _delete_forward_rules(self.bridge)
        self.cuts.clear()
        self.netem.clear()
        unregister(self)

def teardown_all():
    """Tears down every cluster network of this process and removes its guard routes (atexit,
    SIGTERM)."""
    with _lock:
        live = list(_live)
    for h in live:
        h.teardown()
    with _lock:
        guards = list(_guards)
        _guards.clear()
    for subnet, pid in guards:
        _delete_guard(subnet, pid)


def _install_exit_hooks():
    """atexit, and SIGTERM (which skips atexit) when this is the main thread and nobody else
    handles it: tear down, then die of SIGTERM as before."""
    if _exit_hooks:
        return
    _exit_hooks.append(True)
    atexit.register(teardown_all)
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_sigterm(signum, frame):
        teardown_all()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
