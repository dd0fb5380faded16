"""A cluster of real Tributary nodes as local processes on loopback: controllers, brokers or
combined nodes, each with its own ports and data directory, that a test can start, kill
(SIGKILL), stop (SIGTERM), pause (SIGSTOP/SIGCONT) and restart. Reused by the fault scenarios.

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

BIN = os.environ.get(
    "TRIBUTARY_BROKER_BIN",
    os.path.join(os.path.dirname(__file__), "../../target/debug/broker"),
)


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

    def __init__(self, node_id, roles, data_dir, log_path, voters, ports, overrides):
        self.node_id = node_id
        self.roles = roles
        self.data_dir = data_dir
        self.log_path = log_path
        self.kafka_port, self.controller_port, self.http_port = ports
        listeners = []
        if "broker" in roles:
            listeners.append(f"PLAINTEXT://127.0.0.1:{self.kafka_port}")
        if "controller" in roles:
            listeners.append(f"CONTROLLER://127.0.0.1:{self.controller_port}")
        self.overrides = {
            "node.id": str(node_id),
            "process.roles": roles,
            "listeners": ",".join(listeners),
            "controller.listener.names": "CONTROLLER",
            "controller.quorum.voters": voters,
            "http.listener": f"127.0.0.1:{self.http_port}",
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
        return f"127.0.0.1:{self.kafka_port}"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait_ready=True, timeout=30):
        args = [BIN]
        for k, v in self.overrides.items():
            args += ["--override", f"{k}={v}"]
        log = open(self.log_path, "ab")
        log.write(f"\n=== start {time.strftime('%H:%M:%S')} ===\n".encode())
        log.flush()
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def http(self, path, timeout=1):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=timeout) as r:
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


class Cluster:
    """`controllers` controller-only nodes (ids 1..), `brokers` broker-only nodes (ids 101..),
    or `combined` nodes that are both (ids 1..). Overrides apply to every node."""

    def __init__(self, controllers=0, brokers=0, combined=0, root=None, **overrides):
        self.root = root or tempfile.mkdtemp(prefix="tributary-cluster-")
        specs = [(i + 1, "controller") for i in range(controllers)]
        specs += [(i + 1, "broker,controller") for i in range(combined)]
        specs += [(101 + i, "broker") for i in range(brokers)]
        ports = {nid: (free_port(), free_port(), free_port()) for nid, _ in specs}
        self.voters = ",".join(
            f"{nid}@127.0.0.1:{ports[nid][1]}" for nid, roles in specs if "controller" in roles
        )
        defaults = {
            "broker.heartbeat.interval.ms": 500,
            "broker.session.timeout.ms": 3000,
            "group.initial.rebalance.delay.ms": 0,
        }
        defaults.update({k.replace("_", "."): v for k, v in overrides.items()})
        self.nodes = {
            nid: Node(
                nid,
                roles,
                os.path.join(self.root, f"node-{nid}"),
                os.path.join(self.root, f"node-{nid}.log"),
                self.voters,
                ports[nid],
                defaults,
            )
            for nid, roles in specs
        }

    @property
    def brokers(self):
        return [n for n in self.nodes.values() if n.is_broker]

    @property
    def controllers(self):
        return [n for n in self.nodes.values() if n.is_controller]

    @property
    def bootstrap(self):
        return ",".join(n.bootstrap for n in self.brokers if n.alive())

    def start(self, timeout=60):
        # Start every process first: a quorum needs a majority before anyone is ready.
        for n in self.nodes.values():
            os.makedirs(n.data_dir, exist_ok=True)
            n.start(wait_ready=False)
        for n in self.nodes.values():
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
        for n in self.nodes.values():
            n.resume()
            n.kill()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        try:
            self.stop()
        finally:
            self.kill_all()
