"""Bad configurations and bad peers on the control plane: each gets a clear error naming the
setting or peer, never a hang or a panic, and never damages stored metadata."""

import os
import socket
import struct
import time

from clientops import create_topic, metadata
from harness import Cluster, Node, free_port, wait_for


def lone_node(root, node_id, roles, voters, **overrides):
    ports = (free_port(), free_port(), free_port())
    d = os.path.join(root, f"extra-{node_id}-{ports[2]}")
    os.makedirs(d)
    return Node(node_id, roles, d, d + ".log", voters, ports, overrides)


def test_a_controller_that_is_not_a_voter_refuses_to_start(tmp_path):
    n = lone_node(str(tmp_path), 9, "controller", f"1@127.0.0.1:{free_port()}")
    n.start(wait_ready=False)
    assert n.proc.wait(20) != 0
    log = n.log()
    assert "controller.quorum.voters" in log and "node 9" in log, log[-2000:]
    assert "panicked" not in log


def test_a_node_of_another_cluster_refuses_to_join(make_cluster):
    a = make_cluster(controllers=1, brokers=1)
    b = make_cluster(controllers=1)
    old = a.nodes[101]
    old.stop()
    stray = Node(101, "broker", old.data_dir, old.log_path, b.voters,
                 (free_port(), free_port(), free_port()), {})
    stray.start(wait_ready=False)
    assert stray.proc.wait(20) != 0
    log = stray.log()
    assert "belongs to cluster" in log, log[-2000:]
    assert a.nodes[1].cluster_id() in log and b.nodes[1].cluster_id() in log
    # Its data and identity are untouched: it still belongs to cluster a, and rejoins it.
    assert old.cluster_id() == a.nodes[1].cluster_id()
    old.start()


def test_a_duplicate_node_id_is_refused_while_the_first_is_alive(make_cluster):
    c = make_cluster(controllers=1, brokers=1)
    first = c.nodes[101]
    twin = lone_node(c.root, 101, "broker", c.voters)
    try:
        twin.start(wait_ready=False)
        time.sleep(5)
        assert twin.alive() and not twin.ready(), "the second process never becomes ready"
        assert "DuplicateBrokerRegistration" in twin.log()
        assert first.ready()
        md = metadata(first.bootstrap)
        assert md.brokers[101].port == first.kafka_port, "the registration is still the first one's"
    finally:
        twin.kill()


def test_garbage_on_the_controller_listener_closes_only_that_connection(make_cluster):
    c = make_cluster(controllers=1, brokers=1)
    ctl = c.nodes[1]
    for payload in [
        struct.pack(">i", 12) + b"\x27\x10" + b"\xff" * 10,  # private API, truncated JSON
        struct.pack(">i", 0x7FFFFFFF),                        # oversized
        struct.pack(">i", -5),                                # negative size
        struct.pack(">i", 14) + struct.pack(">hhi", 9999, 0, 1) + b"\x00\x00xyzw",  # unknown API
    ]:
        with socket.create_connection(("127.0.0.1", ctl.controller_port), timeout=5) as s:
            s.sendall(payload)
            s.settimeout(5)
            assert s.recv(100) == b"", "the listener closes the connection"
    assert ctl.ready()
    create_topic(c.nodes[101].bootstrap, "after-garbage", 1)
    log = ctl.log()
    assert "controller listener: closing connection" in log
    assert "panicked" not in log


def test_an_unreachable_quorum_leaves_a_broker_alive_but_not_ready(tmp_path):
    n = lone_node(str(tmp_path), 101, "broker", f"1@127.0.0.1:{free_port()}")
    n.start(wait_ready=False)
    try:
        wait_for("/livez", lambda: n.http("/livez")[0] == 200, 10)
        wait_for("the warning naming the quorum", lambda: "waiting for the controller quorum" in n.log(), 15)
        assert not n.ready()
        assert n.alive()
    finally:
        n.stop(timeout=20)
    assert not n.alive()
