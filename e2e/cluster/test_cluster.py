"""The multi-node control plane with real node processes on loopback: controller quorum,
brokers that follow it, registration, fencing, controlled shutdown, snapshots, and the
supported shapes. Session timeouts are shortened (harness defaults) to keep the suite quick."""

import os
import signal
import time
import uuid

import pytest
from kafka import KafkaAdminClient

from harness import wait_for
from clientops import (admin, create_topic, create_topic_eventually, delete_topic, leaders, metadata,
                       produce, read_all)


def topic_name():
    return f"t-{uuid.uuid4().hex[:8]}"


def round_trip(cluster, partitions=6, n=60, via=None):
    """Creates a topic through `via` (default: each broker in turn), produces n messages and
    reads them all back, checking content and per-partition offsets."""
    name = topic_name()
    create_topic((via or cluster.brokers[0]).bootstrap, name, partitions)
    values = [f"m-{i}".encode() for i in range(n)]
    acked = produce(cluster.bootstrap, name, values, partitions)
    got = read_all(cluster.bootstrap, name, partitions, n)
    assert sorted(got) == sorted(acked), "read back exactly what was acknowledged"
    for p in range(partitions):
        offsets = [o for (q, o, _) in sorted(got) if q == p]
        assert offsets == list(range(len(offsets))), f"partition {p} offsets {offsets}"
    return name


def test_three_controllers_and_three_brokers_serve_clients_through_any_broker(make_cluster):
    c = make_cluster(controllers=3, brokers=3)
    for b in c.brokers:
        round_trip(c, via=b)
    md = metadata(c.brokers[2].bootstrap)
    assert sorted(md.brokers) == [101, 102, 103], "Metadata lists the brokers, not the controllers"
    # Placement spreads leaders over the three brokers.
    name = topic_name()
    create_topic(c.brokers[0].bootstrap, name, 6)
    assert sorted(leaders(c.bootstrap, name).values()) == [101, 101, 102, 102, 103, 103]
    # kafka-python: its own admin client, through another broker.
    ka = KafkaAdminClient(bootstrap_servers=c.brokers[1].bootstrap)
    try:
        from kafka.admin import NewTopic as KNewTopic
        ka.create_topics([KNewTopic("kp-" + name, 3, 1)])
        cluster_info = ka.describe_cluster()
        print(cluster_info)
        assert sorted(b.get("node_id", b.get("broker_id")) for b in cluster_info["brokers"]) == [101, 102, 103]
        assert cluster_info["controller_id"] in (101, 102, 103)
    finally:
        ka.close()
    ids = {n.node_id: n.cluster_id() for n in c.nodes.values()}
    assert len(set(ids.values())) == 1 and None not in ids.values(), ids
    # Controller-only nodes serve no Kafka listener.
    for ctl in c.controllers:
        with pytest.raises(OSError):
            import socket
            socket.create_connection(("127.0.0.1", ctl.kafka_port), timeout=1).close()


def test_active_controller_failover_and_rejoin(make_cluster):
    c = make_cluster(controllers=3, brokers=3)
    round_trip(c)
    old = c.active_controller()
    old.kill()
    took = create_topic_eventually(c.brokers[0].bootstrap, topic_name(), 3)
    new = c.active_controller()
    assert new.node_id != old.node_id
    print(f"controller failover: first CreateTopics after SIGKILL succeeded in {took:.2f}s")
    assert took < 15
    # The killed controller rejoins and catches up with what happened while it was away.
    for _ in range(5):
        create_topic(c.brokers[1].bootstrap, topic_name(), 1)
    old.start()
    target = new.metrics()["tributary_metadata_applied_index"]
    wait_for("the rejoined controller to catch up",
             lambda: old.metrics()["tributary_metadata_applied_index"] >= target, 20)
    round_trip(c)


def test_killed_broker_is_fenced_its_partitions_go_leaderless_and_it_returns(make_cluster):
    c = make_cluster(controllers=3, brokers=3)
    name = topic_name()
    create_topic(c.brokers[0].bootstrap, name, 3)
    values = [f"v-{i}".encode() for i in range(90)]
    acked = produce(c.bootstrap, name, values, 3)
    victim = c.nodes[101]
    led = [p for p, l in leaders(c.bootstrap, name).items() if l == 101]
    assert led, "broker 101 leads a partition"
    killed = time.time()
    victim.kill()
    other = c.nodes[102].bootstrap
    wait_for("broker 101 fenced (gone from Metadata)", lambda: 101 not in metadata(other).brokers, 20)
    fenced_after = time.time() - killed
    assert fenced_after >= 2.0, f"fenced after {fenced_after:.1f}s, before the 3 s session timeout"
    ls = leaders(other, name)
    assert all(ls[p] == -1 for p in led), f"RF 1 partitions of a fenced broker have no leader: {ls}"
    victim.start()
    wait_for("broker 101 back in Metadata", lambda: 101 in metadata(other).brokers, 20)
    wait_for("its partitions led again", lambda: all(leaders(other, name)[p] == 101 for p in led), 20)
    got = read_all(c.bootstrap, name, 3, len(acked))
    assert sorted(got) == sorted(acked), "nothing acknowledged was lost"


def test_sigterm_runs_a_controlled_shutdown_and_exits(make_cluster):
    c = make_cluster(controllers=3, brokers=3, controlled_shutdown_timeout_ms=20000)
    name = topic_name()
    create_topic(c.brokers[0].bootstrap, name, 3)
    acked = produce(c.bootstrap, name, [b"x"] * 30, 3)
    victim = c.nodes[102]
    assert 102 in leaders(c.bootstrap, name).values()
    started = time.time()
    victim.signal(signal.SIGTERM)
    # /readyz turns false as soon as the shutdown begins.
    wait_for("/readyz false", lambda: not victim.ready(), 5, interval=0.01)
    code = victim.proc.wait(25)
    took = time.time() - started
    assert code == 0
    assert "controlled shutdown complete" in victim.log()
    print(f"controlled shutdown took {took:.2f}s")
    # Leadership moved before the exit: no waiting for the session timeout.
    ls = leaders(c.nodes[101].bootstrap, name)
    assert 102 not in ls.values(), ls
    victim.start()
    wait_for("leaders back", lambda: 102 in leaders(c.bootstrap, name).values(), 20)
    assert sorted(read_all(c.bootstrap, name, 3, len(acked))) == sorted(acked)


def test_nodes_far_behind_catch_up_from_a_snapshot(make_cluster):
    c = make_cluster(controllers=3, brokers=2, metadata_snapshot_interval_entries=10)
    active = c.active_controller()
    lagging_ctl = next(n for n in c.controllers if n is not active)
    lagging_broker = c.nodes[102]
    lagging_ctl.stop()
    lagging_broker.stop()
    names = [topic_name() for _ in range(40)]
    for n in names:
        create_topic(c.nodes[101].bootstrap, n, 1)
    lagging_ctl.start()
    lagging_broker.start()
    target = active.metrics()["tributary_metadata_applied_index"]
    wait_for("the controller to catch up", lambda: lagging_ctl.metrics()["tributary_metadata_applied_index"] >= target, 30)
    assert "install" in lagging_ctl.log().lower() or "snapshot" in lagging_ctl.log().lower()
    md = metadata(lagging_broker.bootstrap)
    assert set(names) <= set(md.topics), "the broker's image has every topic created while it was away"
    assert "applied a snapshot" in lagging_broker.log()


@pytest.mark.parametrize("shape", ["3 combined", "5 controllers + 1 broker"])
def test_supported_shapes(make_cluster, shape):
    c = make_cluster(combined=3) if shape == "3 combined" else make_cluster(controllers=5, brokers=1)
    round_trip(c)
    old = c.active_controller()
    old.kill()
    create_topic_eventually(c.brokers[-1].bootstrap if c.brokers[-1].alive() else c.bootstrap.split(",")[0],
                            topic_name(), 2)


def test_a_broker_deletes_only_what_the_metadata_says_is_gone(make_cluster):
    c = make_cluster(controllers=1, brokers=2)
    ctl, b, other = c.nodes[1], c.nodes[101], c.nodes[102]
    kept, doomed = topic_name(), topic_name()
    for t in (kept, doomed):
        create_topic(other.bootstrap, t, 1, assignment=[[101]])
    acked = produce(b.bootstrap, kept, [b"keep-me"] * 20, 1)
    produce(b.bootstrap, doomed, [b"old"] * 5, 1)
    # Restarted while the quorum is down: its image is empty, and nothing may be deleted.
    b.stop()
    ctl.stop()
    b.start(wait_ready=False)
    time.sleep(3)
    assert not b.ready()
    for t in (kept, doomed):
        assert os.path.isdir(os.path.join(b.data_dir, f"{t}-0")), t
    ctl.start()
    b.wait_ready(30)
    other.wait_ready(30)
    assert sorted(read_all(b.bootstrap, kept, 1, 20)) == sorted(acked)
    # Deleted and re-created under the same name while the broker was away: once the broker
    # has caught up, the old directory (another topic id) goes and the new topic starts empty.
    b.stop()
    delete_topic(other.bootstrap, doomed)
    create_topic(other.bootstrap, doomed, 1, assignment=[[101]])
    b.start()
    wait_for("the new partition to lead", lambda: leaders(b.bootstrap, doomed)[0] == 101, 15)
    new = produce(b.bootstrap, doomed, [b"new"], 1)
    assert new == [(0, 0, b"new")], f"the re-created topic started empty: {new}"
    assert sorted(read_all(b.bootstrap, kept, 1, 20)) == sorted(acked)


def test_a_consumer_group_resumes_from_its_commits_on_another_broker(make_cluster):
    from confluent_kafka import Consumer

    c = make_cluster(controllers=3, brokers=3)
    name = topic_name()
    create_topic(c.brokers[0].bootstrap, name, 6)
    acked = produce(c.bootstrap, name, [f"g-{i}".encode() for i in range(120)], 6)
    group = f"grp-{name}"

    def consume(bootstrap, want):
        cons = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
        cons.subscribe([name])
        got, deadline = [], time.time() + 40
        while len(got) < want and time.time() < deadline:
            m = cons.poll(0.5)
            if m is None or m.error():
                continue
            got.append((m.partition(), m.offset(), m.value()))
            if len(got) == want:
                cons.commit(asynchronous=False)
        cons.close()
        return got

    # Each consumer talks to a different broker first; the coordinator is wherever the group's
    # __consumer_offsets partition leads.
    first = consume(c.brokers[0].bootstrap, 60)
    rest = consume(c.brokers[2].bootstrap, 60)
    assert len(first) == 60 and len(rest) == 60
    assert sorted(first + rest) == sorted(acked), "every message exactly once across the two"


def test_a_paused_broker_is_fenced_and_serves_again_after_it_resumes(make_cluster):
    c = make_cluster(controllers=1, brokers=2)
    name = topic_name()
    create_topic(c.nodes[102].bootstrap, name, 1, assignment=[[101]])
    acked = produce(c.nodes[101].bootstrap, name, [b"before"] * 10, 1)
    paused, other = c.nodes[101], c.nodes[102]
    paused.pause()
    try:
        wait_for("the paused broker fenced", lambda: 101 not in metadata(other.bootstrap).brokers, 20)
        assert leaders(other.bootstrap, name)[0] == -1
    finally:
        paused.resume()
    # Back: its heartbeat finds it fenced; it catches up and is unfenced, and leads again.
    wait_for("unfenced again", lambda: 101 in metadata(other.bootstrap).brokers, 20)
    wait_for("leading again", lambda: leaders(other.bootstrap, name)[0] == 101, 20)
    paused.wait_ready(20)
    acked += produce(paused.bootstrap, name, [b"after"] * 10, 1)
    assert sorted(read_all(paused.bootstrap, name, 1, 20)) == sorted(acked)


def test_a_paused_active_controller_is_replaced_and_rejoins_as_a_follower(make_cluster):
    c = make_cluster(controllers=3, brokers=1)
    old = c.active_controller()
    old.pause()
    try:
        took = create_topic_eventually(c.nodes[101].bootstrap, topic_name(), 1)
        print(f"CreateTopics succeeded {took:.2f}s after pausing the active controller")
        new = c.active_controller()
        assert new.node_id != old.node_id
    finally:
        old.resume()
    # The old leader learns the new term and steps down: exactly one active controller.
    wait_for("the resumed controller to step down", lambda: old.metrics()["tributary_controller_active"] == 0, 20)
    assert c.active_controller().node_id == new.node_id
    create_topic(c.nodes[101].bootstrap, topic_name(), 1)
    target = new.metrics()["tributary_metadata_applied_index"]
    wait_for("the resumed controller caught up",
             lambda: old.metrics()["tributary_metadata_applied_index"] >= target, 20)
