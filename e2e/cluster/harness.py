"""A cluster of real Tributary nodes as local processes: controllers, brokers or combined nodes,
each with its own ports and data directory, that a test can start, kill (SIGKILL), stop
(SIGTERM), pause (SIGSTOP/SIGCONT) and restart. Reused by the fault scenarios.

Where the nodes live is the cluster's `hosts`: "loopback" (default) runs them all on 127.0.0.1
with distinct ports; "netns" runs each in a network namespace of its own with its own address
and fixed ports (see netns.py); "docker" runs each as a container of the broker image on a
private Docker network (see containers.py). On netns and docker clusters the network between
nodes can be cut (`partition`, `isolate`, `cut`, `heal`, `netem`).

Every node is started with `--override` flags only (no files), so a failing test's log names
exactly what the node was given; each node's output goes to `<root>/<name>.log`.
"""

import os
import random
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import containers
import netns

BIN = os.environ.get(
    "TRIBUTARY_BROKER_BIN",
    os.path.join(os.path.dirname(__file__), "../../target/debug/broker"),
)


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# Ports handed out by this process: never twice (a node may not have bound its port yet).
_GIVEN = set()


def _ephemeral_start():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A free loopback port below the ephemeral range: a port the OS hands out for outgoing
    connections (every client's) could be taken again before a node binds it, or while a
    stopped node is away."""
    top = min(_ephemeral_start(), 32768)
    for _ in range(200):
        port = random.randrange(10000, top)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _GIVEN.add(port)
            return port
    raise RuntimeError("no free port found below the ephemeral range")


def wait_for(what, check, timeout=30, interval=0.05):
    """Polls `check` until it returns a truthy value; raises naming `what` on timeout."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - a probe failing is "not yet"
            last = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Node:
    """One node process. `roles` is Kafka's process.roles value."""

    def __init__(self, node_id, roles, data_dir, log_path, voters, ports, overrides, host="127.0.0.1",
                 wrap=None):
        """`host` is the address the node listens on and advertises; `wrap(args)` returns the
        command that runs `args` where the node lives (default: as they are)."""
        self.node_id = node_id
        self.roles = roles
        self.data_dir = data_dir
        self.log_path = log_path
        self.host = host
        self.wrap = wrap or (lambda args: args)
        self.kafka_port, self.controller_port, self.http_port = ports
        listeners = []
        if "broker" in roles:
            listeners.append(f"PLAINTEXT://{host}:{self.kafka_port}")
        if "controller" in roles:
            listeners.append(f"CONTROLLER://{host}:{self.controller_port}")
        self.overrides = {
            "node.id": str(node_id),
            "process.roles": roles,
            "listeners": ",".join(listeners),
            "controller.listener.names": "CONTROLLER",
            "controller.quorum.voters": voters,
            "http.listener": f"{host}:{self.http_port}",
            "log.dirs": data_dir,
            **{k: str(v) for k, v in overrides.items()},
        }
        self.proc = None

    @property
    def is_broker(self):
        return "broker" in self.roles

    @property
    def is_controller(self):
        return "controller" in self.roles

    @property
    def bootstrap(self):
        return f"{self.host}:{self.kafka_port}"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait_ready=True, timeout=30):
        args = [BIN]
        for k, v in self.overrides.items():
            args += ["--override", f"{k}={v}"]
        args = self.wrap(args)
        log = open(self.log_path, "ab")
        log.write(f"\n=== start {time.strftime('%H:%M:%S')} ===\n".encode())
        log.flush()
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def http(self, path, timeout=1):
        # Never through a proxy from the environment: only the node itself is asked.
        with _DIRECT.open(f"http://{self.host}:{self.http_port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()

    def ready(self):
        try:
            return self.http("/readyz")[0] == 200
        except OSError:
            return False

    def wait_ready(self, timeout=30):
        def check():
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.node_id} exited with {self.proc.returncode}; see {self.log_path}")
            return self.ready()

        wait_for(f"node {self.node_id} ready", check, timeout)

    def metrics(self):
        """Prometheus text as {name: value} for unlabelled samples."""
        out = {}
        for line in self.http("/metrics")[1].splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, _, value = line.partition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    pass
        return out

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def kill(self):
        """SIGKILL and reap."""
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout=40):
        """SIGTERM; returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout)
        return self.proc.returncode if self.proc else None

    def pause(self):
        self.signal(signal.SIGSTOP)

    def resume(self):
        self.signal(signal.SIGCONT)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def cluster_id(self):
        with open(os.path.join(self.data_dir, "meta.properties")) as f:
            for line in f:
                if line.startswith("cluster.id="):
                    return line.strip().split("=", 1)[1]
        return None


class ContainerNode(Node):
    """A node as a container of the broker image (`containers.DockerHosts`). The process the
    harness holds is the attached `docker run` (its output is the node's log); signals, pause
    and kill go to the container through `docker kill` / `docker pause`."""

    def __init__(self, node_id, roles, data_dir, log_path, voters, ports, overrides, host, hosts):
        super().__init__(node_id, roles, data_dir, log_path, voters, ports, overrides, host=host)
        self.hosts = hosts
        self.overrides["log.dirs"] = containers.DATA_IN_CONTAINER

    def start(self, wait_ready=True, timeout=30):
        self.hosts.remove_container(self.node_id)  # a stopped one keeps the name
        containers.own_data_dir(self.data_dir)
        args = [a for k, v in self.overrides.items() for a in ("--override", f"{k}={v}")]
        log = open(self.log_path, "ab")
        log.write(f"\n=== start {time.strftime('%H:%M:%S')} ===\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.hosts.run_command(self.node_id, self.data_dir, args),
                                     stdout=log, stderr=subprocess.STDOUT)
        wait_for(f"container of node {self.node_id} running",
                 lambda: self.hosts.container_pid(self.node_id) or not self.alive(), 30)
        if self.alive():
            self.hosts.node_started(self.node_id)  # a new network namespace: the cuts again
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def signal(self, sig):
        if self.alive():
            name = signal.Signals(sig).name.removeprefix("SIG")
            netns.run(["docker", "kill", "-s", name, self.hosts.containers[self.node_id]], check=False)

    def kill(self):
        if self.alive():
            self.signal(signal.SIGKILL)
            self.proc.wait(10)

    def pause(self):
        if self.alive():
            netns.run(["docker", "pause", self.hosts.containers[self.node_id]], check=False)

    def resume(self):
        if self.alive():
            netns.run(["docker", "unpause", self.hosts.containers[self.node_id]], check=False)


_IMAGES = {}  # (binary, size, mtime) -> image tag built from it


def broker_image():
    """The broker image of BIN (built once per binary content, see containers.image_for)."""
    st = os.stat(BIN)
    key = (os.path.abspath(BIN), st.st_size, st.st_mtime)
    if key not in _IMAGES:
        _IMAGES[key] = containers.image_for(BIN)
    return _IMAGES[key]


NETNS_PORTS = (9092, 9093, 9644)
"""Kafka, controller and HTTP ports of every node of a netns cluster (each has its own address)."""


class Cluster:
    """`controllers` controller-only nodes (ids 1..), `brokers` broker-only nodes (ids 101..),
    or `combined` nodes that are both (ids 1..). Overrides apply to every node.

    `hosts="loopback"` (default): every node on 127.0.0.1, ports from `free_port`.
    `hosts="netns"`: every node in its own network namespace (netns.py) on its own address with
    NETNS_PORTS; the network is built by `start` and removed by `kill_all` (which the fixtures
    and `__exit__` call), and the fault methods below work. Needs root: see
    `netns.unavailable_reason`.
    `hosts="docker"`: the same with every node a container of the broker image built from BIN
    (containers.py); needs a Docker engine too (`containers.unavailable_reason`)."""

    def __init__(self, controllers=0, brokers=0, combined=0, root=None, hosts="loopback", **overrides):
        self.root = root or tempfile.mkdtemp(prefix="tributary-cluster-")
        specs = [(i + 1, "controller") for i in range(controllers)]
        specs += [(i + 1, "broker,controller") for i in range(combined)]
        specs += [(101 + i, "broker") for i in range(brokers)]
        if hosts == "loopback":
            self.net = None
            addrs = {nid: ("127.0.0.1", (free_port(), free_port(), free_port()), None) for nid, _ in specs}
        elif hosts == "netns":
            self.net = netns.NetnsHosts([nid for nid, _ in specs])
            addrs = {nid: (self.net.ip(nid), NETNS_PORTS, lambda args, n=nid: self.net.command(n, args))
                     for nid, _ in specs}
        elif hosts == "docker":
            self.net = containers.DockerHosts([nid for nid, _ in specs], broker_image())
            addrs = {nid: (self.net.ip(nid), NETNS_PORTS, None) for nid, _ in specs}
        else:
            raise ValueError(f"hosts must be 'loopback', 'netns' or 'docker', not {hosts!r}")
        self.hosts = hosts
        self.voters = ",".join(
            f"{nid}@{addrs[nid][0]}:{addrs[nid][1][1]}" for nid, roles in specs if "controller" in roles
        )
        defaults = {
            "broker.heartbeat.interval.ms": 500,
            "broker.session.timeout.ms": 3000,
            "group.initial.rebalance.delay.ms": 0,
        }
        defaults.update({k.replace("_", "."): v for k, v in overrides.items()})
        self.nodes = {}
        for nid, roles in specs:
            paths = (os.path.join(self.root, f"node-{nid}"), os.path.join(self.root, f"node-{nid}.log"))
            if hosts == "docker":
                self.nodes[nid] = ContainerNode(nid, roles, *paths, self.voters, addrs[nid][1], defaults,
                                                host=addrs[nid][0], hosts=self.net)
            else:
                self.nodes[nid] = Node(nid, roles, *paths, self.voters, addrs[nid][1], defaults,
                                       host=addrs[nid][0], wrap=addrs[nid][2])

    @property
    def brokers(self):
        return [n for n in self.nodes.values() if n.is_broker]

    @property
    def controllers(self):
        return [n for n in self.nodes.values() if n.is_controller]

    @property
    def bootstrap(self):
        return ",".join(n.bootstrap for n in self.brokers if n.alive())

    def start(self, timeout=60, only=None):
        """Starts the nodes (or the node ids in `only`: the others can be started later, as
        brokers added to a running cluster)."""
        if self.net:
            self.net.setup()
        nodes = [n for nid, n in self.nodes.items() if only is None or nid in only]
        # Start every process first: a quorum needs a majority before anyone is ready.
        for n in nodes:
            os.makedirs(n.data_dir, exist_ok=True)
            n.start(wait_ready=False)
        for n in nodes:
            n.wait_ready(timeout)
        return self

    def active_controller(self, timeout=20):
        """The controller node that says it is the active one."""

        def is_active(n):
            try:
                return n.alive() and n.metrics().get("tributary_controller_active") == 1
            except OSError:
                return False  # paused or stopping: not answering

        def check():
            active = [n for n in self.controllers if is_active(n)]
            return active[0] if len(active) == 1 else None

        return wait_for("one active controller", check, timeout)

    def stop(self):
        for n in self.nodes.values():
            n.resume()
        # Brokers first (their controlled shutdown needs a controller), then controllers.
        for n in sorted(self.nodes.values(), key=lambda n: n.is_controller):
            try:
                n.stop(timeout=40)
            except subprocess.TimeoutExpired:
                n.kill()

    def kill_all(self):
        """SIGKILLs every node, then removes the cluster's network (netns)."""
        try:
            for n in self.nodes.values():
                n.resume()
                n.kill()
        finally:
            if self.net:
                self.net.teardown()

    # Network faults (hosts="netns" or "docker"). Endpoints are node ids, or netns.CLIENTS for
    # the test clients in the root namespace. DROP rules: connections hang, as on a real
    # partition.

    def _network(self):
        if not self.net:
            raise RuntimeError(f"network faults need Cluster(hosts='netns' or 'docker'); this cluster is {self.hosts}")
        return self.net

    def partition(self, groups):
        """Nodes in different groups cannot exchange packets either way (replaces the cuts in
        force). Test clients, unless put in a group, reach every node."""
        self._network().partition(groups)

    def isolate(self, node_id, from_clients=False):
        """Cuts `node_id` off every other node (and off the test clients if `from_clients`)."""
        self._network().isolate(node_id, from_clients)

    def cut(self, src, dst, both_ways=False):
        """Drops packets from `src` to `dst` only (added to the cuts in force)."""
        self._network().cut(src, dst, both_ways)

    def netem(self, node_id, delay_ms=0, jitter_ms=0, loss_pct=0.0):
        """Delays (and loses) every packet `node_id` sends (tc netem)."""
        self._network().set_netem(node_id, delay_ms, jitter_ms, loss_pct)

    def heal(self):
        """Removes every cut and netem."""
        self._network().heal()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        try:
            self.stop()
        finally:
            self.kill_all()
