"""Docker hosts for the cluster harness: every node a container of the real broker image
(scripts/build-image.sh, FROM scratch: no shell, no iptables inside) on a private
`docker network create --internal` network, with a fixed address per node.

Layout of one cluster (`DockerHosts`):

- a network `trib-<pid>-<k>`, internal (no route out), subnet 10.X.Y.0/24 (random, as for netns
  clusters) with the gateway - the host's address on Docker's bridge, where test clients live -
  at 10.X.Y.254;
- per node a container `trib-<pid>-<k>-n<id>` at 10.X.Y.<id>, its data directory bind-mounted
  from the cluster's root, labelled `tributary-e2e-pid=<pid>`.

Faults: `docker kill` (any signal), `docker pause`/`unpause`, and the network cuts of
`netns.NetworkFaults`, applied with the host's iptables-restore and tc run in the container's
network namespace through `nsenter -t <container pid> -n` (a restarted container has a new
namespace: `node_started` puts the cuts back). The node processes themselves (the attached
`docker run`) are the harness's (`harness.ContainerNode`).

Teardown removes the containers and the network; the guard route (netns.py) outlives them
until exit. Containers and networks of earlier runs whose pid is dead are removed before a new
cluster is made. The image is kept between runs, tagged by the binary's content hash.
"""

import hashlib
import os
import shutil

import netns
from netns import CLIENTS, NetnsError, run

LABEL = "tributary-e2e-pid"
IMAGE_REPO = "tributary/broker"
IMAGE_TAG_PREFIX = "e2e-"
DATA_IN_CONTAINER = "/var/lib/tributary/data"
IMAGE_UID = 10001
"""The image runs as tributary:10001 (scripts/build-image.sh): the data directory must be its."""

BUILD_SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "build-image.sh")


def unavailable_reason(binary):
    """Why Docker clusters cannot run here (None when they can)."""
    reason = netns.unavailable_reason()
    if reason:
        return reason
    for tool in ("docker", "nsenter", "ldd"):
        if shutil.which(tool) is None:
            return f"Docker clusters need `{tool}` on PATH"
    p = run(["docker", "info", "--format", "{{.ServerVersion}}"], check=False)
    if p.returncode != 0:
        return f"no Docker engine reachable: {p.stderr.strip()[:200]}"
    if not os.access(binary, os.X_OK):
        return f"no broker binary at {binary} to build the image from"
    return None


def image_for(binary):
    """The broker image built from `binary` (scripts/build-image.sh), built once per content:
    tagged `tributary/broker:e2e-<sha256 prefix>`. Older e2e tags are removed."""
    digest = hashlib.sha256()
    with open(binary, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    tag = f"{IMAGE_REPO}:{IMAGE_TAG_PREFIX}{digest.hexdigest()[:12]}"
    if run(["docker", "image", "inspect", tag], check=False).returncode == 0:
        return tag
    run(["bash", BUILD_SCRIPT, "broker", binary, tag], timeout=300)
    listed = run(["docker", "image", "ls", IMAGE_REPO, "--format", "{{.Repository}}:{{.Tag}}"], check=False)
    for old in listed.stdout.split():
        if old.startswith(f"{IMAGE_REPO}:{IMAGE_TAG_PREFIX}") and old != tag:
            run(["docker", "image", "rm", old], check=False)
    return tag


def _ours(kind):
    """(name, pid) of this machine's containers or networks made by a harness."""
    if kind == "container":
        args = ["docker", "ps", "-a", "--filter", f"label={LABEL}", "--format", f'{{{{.Names}}}} {{{{.Label "{LABEL}"}}}}']
    else:
        args = ["docker", "network", "ls", "--filter", f"label={LABEL}", "--format", f'{{{{.Name}}}} {{{{.Label "{LABEL}"}}}}']
    out = []
    for line in run(args, check=False).stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out.append((parts[0], int(parts[1])))
    return out


def clean_stale():
    """Removes containers and networks of earlier runs whose process is dead (and, through
    netns.clean_stale, their guard routes)."""
    netns.clean_stale()
    dead = [name for name, pid in _ours("container") if not netns.pid_alive(pid)]
    if dead:
        run(["docker", "rm", "-f", *dead], check=False)
    for name, pid in _ours("network"):
        if not netns.pid_alive(pid):
            run(["docker", "network", "rm", name], check=False)


class DockerHosts(netns.NetworkFaults):
    """The network and containers of one cluster. Addresses are decided at construction;
    nothing exists until `setup`."""

    name = "docker"

    def __init__(self, node_ids, image):
        super().__init__()
        netns.check_node_ids(node_ids)
        k = netns.next_cluster_number()
        self.pid = os.getpid()
        self.image = image
        self.node_ids = sorted(node_ids)
        self.subnet = netns.pick_subnet()
        self.network = f"trib-{self.pid}-{k}"
        self.containers = {n: f"trib-{self.pid}-{k}-n{n}" for n in self.node_ids}
        self.is_set_up = False

    def container_pid(self, node_id):
        """The host pid of the container's process (0 when it is not running)."""
        p = run(["docker", "inspect", "-f", "{{.State.Pid}}", self.containers[node_id]], check=False)
        return int(p.stdout.strip() or 0) if p.returncode == 0 else 0

    def command(self, node_id, args):
        """`args` (a host binary) run in the container's network namespace."""
        pid = self.container_pid(node_id)
        if not pid:
            raise NetnsError(f"container of node {node_id} is not running")
        return ["nsenter", "-t", str(pid), "-n", *args]

    def nodes_up(self):
        running = run(["docker", "ps", "--filter", f"network={self.network}", "--format", "{{.Names}}"],
                      check=False).stdout.split()
        return [n for n in self.node_ids if self.containers[n] in running]

    def run_command(self, node_id, data_dir, args):
        """The attached `docker run` of node `node_id`: `args` are the broker's arguments."""
        return ["docker", "run", "--name", self.containers[node_id], "--network", self.network,
                "--ip", self.ip(node_id), "--label", f"{LABEL}={self.pid}",
                "-v", f"{os.path.abspath(data_dir)}:{DATA_IN_CONTAINER}", self.image, *args]

    def setup(self):
        """Creates the network (idempotent). Undone by `teardown`, also at exit and on SIGTERM."""
        if self.is_set_up:
            return
        clean_stale()
        netns.register(self)
        self.is_set_up = True
        run(["docker", "network", "create", "--internal", "--subnet", str(self.subnet),
             "--gateway", self.ip(CLIENTS), "--label", f"{LABEL}={self.pid}", self.network])
        netns.add_guard(self.subnet)

    def remove_container(self, node_id):
        run(["docker", "rm", "-f", self.containers[node_id]], check=False)

    def teardown(self):
        """Removes the containers and the network. Idempotent; never raises."""
        if not self.is_set_up:
            return
        self.is_set_up = False
        run(["docker", "rm", "-f", *self.containers.values()], check=False)
        run(["docker", "network", "rm", self.network], check=False)
        self.cuts.clear()
        self.netem.clear()
        netns.unregister(self)


def own_data_dir(path):
    """Gives the data directory (and what is in it) to the image's user."""
    for root, dirs, files in os.walk(path):
        for name in [root] + [os.path.join(root, x) for x in dirs + files]:
            os.chown(name, IMAGE_UID, IMAGE_UID)
