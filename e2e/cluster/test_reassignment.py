"""Partition reassignment (KIP-455) on real broker processes, driven by kafka-python's admin
client: replicas move off a broker under an idempotent acks=all workload; a reassignment whose new
replica is paused survives the loss of the active controller and completes once the broker is back;
a cancelled one restores the original replicas; invalid targets get Kafka's error codes. Every
workload ends with the checker: nothing acknowledged lost, duplicated or reordered."""

import os
import time

from kafka import KafkaAdminClient
from kafka.structs import TopicPartition

from test_replication import RF3, run_with_faults  # noqa: I100 - first: it puts e2e/workload on the path

import report  # noqa: E402
from clientops import create_topic, metadata, produce, read_all  # noqa: E402
from harness import wait_for  # noqa: E402
from test_protocol import call  # noqa: E402

# Partitions 0..5 on brokers 101..103 only, preferred leaders rotating.
ON_THREE = [[101, 102, 103], [102, 103, 101], [103, 101, 102]] * 2


def boot(c):
    """Brokers 101..103 only: 104 is paused in some tests (it would accept connections and never
    answer), and clients bootstrap from these."""
    return ",".join(c.nodes[i].bootstrap for i in (101, 102, 103))


def kadmin(c):
    return KafkaAdminClient(bootstrap_servers=boot(c), request_timeout_ms=15000)


def assignment(c, topic):
    md = metadata(boot(c), topic).topics[topic]
    return {p: list(pm.replicas) for p, pm in md.partitions.items()}


def ongoing(c, topic):
    """{partition: {replicas, adding_replicas, removing_replicas}} of `topic`'s reassignments in
    progress (every topic's when None), by ListPartitionReassignments v0 straight to broker 101."""
    from kafka.protocol.admin import ListPartitionReassignmentsRequest as L
    from kafka.protocol.admin import ListPartitionReassignmentsResponse
    resp = call(c.nodes[101], L(timeout_ms=10000, topics=None), ListPartitionReassignmentsResponse, 0)
    assert resp.error_code == 0, resp
    return {p.partition_index: {"replicas": list(p.replicas), "adding_replicas": list(p.adding_replicas),
                                "removing_replicas": list(p.removing_replicas)}
            for t in resp.topics if topic is None or t.name == topic for p in t.partitions}


def reassign(c, topic, targets, admin_client=False):
    """{partition: target or None}; returns {partition: error name or None}. By
    AlterPartitionReassignments v0 straight to broker 101 (a paused broker elsewhere cannot
    stall it), or through kafka-python's admin client."""
    if admin_client:
        a = kadmin(c)
        try:
            out = a.alter_partition_reassignments({TopicPartition(topic, p): t for p, t in targets.items()})
            return {tp.partition: (e.__name__ if e else None) for tp, e in out.items()}
        finally:
            a.close()
    from kafka.errors import for_code
    from kafka.protocol.admin import AlterPartitionReassignmentsRequest as A
    from kafka.protocol.admin import AlterPartitionReassignmentsResponse
    req = A(timeout_ms=10000, topics=[A.ReassignableTopic(name=topic, partitions=[
        A.ReassignableTopic.ReassignablePartition(partition_index=p, replicas=t) for p, t in targets.items()])])
    resp = call(c.nodes[101], req, AlterPartitionReassignmentsResponse, 0)
    assert resp.error_code == 0, resp
    return {p.partition_index: (for_code(p.error_code).__name__ if p.error_code else None)
            for t in resp.responses for p in t.partitions}


def unregister(c, broker_id):
    """UnregisterBroker v0 (API 64, which kafka-python does not implement: encoded here) straight
    to broker 102: (error name or None, message)."""
    import socket
    import struct
    from kafka.errors import for_code
    client = b"test"
    # Flexible request header v2: key, version, correlation, client id, no tagged fields.
    frame = struct.pack(">hhih", 64, 0, 5, len(client)) + client + b"\x00"
    frame += struct.pack(">i", broker_id) + b"\x00"
    with socket.create_connection(("127.0.0.1", c.nodes[102].kafka_port), timeout=15) as sock:
        sock.sendall(struct.pack(">i", len(frame)) + frame)
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
            chunk = sock.recv(65536)
            assert chunk, "connection closed"
            data += chunk
    body = data[4:]
    corr, _tags, _throttle, code = struct.unpack(">iBih", body[:11])
    assert corr == 5
    # Compact nullable string: unsigned varint of length + 1 (0 for null), then the bytes.
    n, shift, at = 0, 0, 11
    while True:
        byte = body[at]
        at += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    message = body[at:at + n - 1].decode() if n > 0 else None
    return (for_code(code).__name__ if code else None), message


def log_dir_sizes(node, topic):
    """DescribeLogDirs v4 to `node`: ({partition: bytes} of `topic`, total bytes, usable bytes)."""
    from kafka.protocol.admin import DescribeLogDirsRequest, DescribeLogDirsResponse
    resp = call(node, DescribeLogDirsRequest(topics=None), DescribeLogDirsResponse, 4)
    (d,) = resp.results
    assert d.error_code == 0 and d.log_dir == node.data_dir, d
    sizes = {p.partition_index: p.partition_size for t in d.topics if t.name == topic for p in t.partitions}
    return sizes, d.total_bytes, d.usable_bytes


def kill_and_wait_fenced(c, node):
    """SIGKILL, then wait until clients no longer see the broker (its session expired)."""
    node.kill()
    wait_for(f"{node.node_id} fenced", lambda: node.node_id not in
             {b.id for b in metadata(boot(c)).brokers.values()}, 20)


def logs_of(node, topic):
    return sorted(d for d in os.listdir(node.data_dir) if d.startswith(topic + "-"))


def test_replicas_move_off_a_broker_under_load(make_cluster, tmp_path):
    c = make_cluster(controllers=1, brokers=4, replica_lag_time_max_ms=3000)
    outcome = {}

    def schedule(topic, at):
        outcome["topic"] = topic

        def move():
            # Still holding replicas: unregistering 101 is refused, naming why.
            outcome["refused"] = unregister(c, 101)
            targets = {p: [104 if r == 101 else r for r in rs] for p, rs in enumerate(ON_THREE)}
            outcome["errors"] = reassign(c, topic, targets, admin_client=True)
            # Every other partition on 101 too (the group offsets' topic): its replica goes to
            # a broker that the partition does not use yet.
            md = metadata(boot(c))
            for name, t in md.topics.items():
                if name == topic:
                    continue
                moves = {}
                for p, pm in t.partitions.items():
                    if 101 in pm.replicas:
                        spare = next(b for b in (104, 103, 102) if b not in pm.replicas)
                        moves[p] = [spare if r == 101 else r for r in pm.replicas]
                if moves:
                    outcome.setdefault("others", []).append(reassign(c, name, moves, admin_client=True))

        at(4, "reassign every replica of 101 to 104", move)

    result, faults = run_with_faults(c, tmp_path, schedule, duration=18, assignment=ON_THREE)
    print(report.summary(result))
    assert outcome["errors"] == {p: None for p in range(6)}
    topic = outcome["topic"]
    assert all(e is None for r in outcome.get("others", []) for e in r.values()), outcome
    wait_for("no reassignment in progress", lambda: ongoing(c, None) == {}, 30)
    final = assignment(c, topic)
    assert all(101 not in rs and 104 in rs and len(rs) == 3 for rs in final.values()), final
    md = metadata(c.bootstrap, topic).topics[topic]
    assert all(sorted(pm.isrs) == sorted(pm.replicas) for pm in md.partitions.values())
    assert all(pm.leader != 101 for pm in md.partitions.values())
    wait_for("101 deleted its logs of the topic", lambda: logs_of(c.nodes[101], topic) == [], 20)
    assert len(logs_of(c.nodes[104], topic)) == 6
    # DescribeLogDirs: 104 now holds every partition's bytes, as much as 102 (fully in sync).
    sizes, total, usable = log_dir_sizes(c.nodes[104], topic)
    assert sorted(sizes) == list(range(6)) and all(v > 0 for v in sizes.values()), sizes
    assert total >= usable > 0
    wait_for("104's logs as large as 102's", lambda: log_dir_sizes(c.nodes[104], topic)[0]
             == log_dir_sizes(c.nodes[102], topic)[0], 10)
    error, message = outcome["refused"]
    assert error == "InvalidRequestError" and "still holds" in message, outcome["refused"]
    # Drained: 101 stops (controlled shutdown) and is unregistered; clients no longer see it.
    assert c.nodes[101].stop() == 0
    assert unregister(c, 101) == (None, None)
    assert 101 not in {b.id for b in metadata(boot(c)).brokers.values()}
    assert unregister(c, 101)[0] == "BrokerIdNotRegisteredError"
    assert result.valid, report.summary(result)
    assert result.counts["acknowledged"] > 300
    assert result.counts["acknowledged_unread"] == 0


def test_a_reassignment_survives_controller_failover_and_waits_for_its_new_replica(make_cluster):
    c = make_cluster(controllers=3, brokers=4, replica_lag_time_max_ms=3000)
    topic = "moving"
    create_topic(c.nodes[101].bootstrap, topic, 2, config=RF3, assignment=ON_THREE[:2])
    acked = produce(boot(c), topic, [b"m%d" % i for i in range(200)], 2)
    # 104 is paused (still registered, within its session): it is accepted as a new replica but
    # cannot catch up.
    c.nodes[104].pause()
    assert reassign(c, topic, {0: [104, 102, 103], 1: [102, 104, 101]}) == {0: None, 1: None}
    assert ongoing(c, topic) == {
        0: {"replicas": [104, 102, 103, 101], "adding_replicas": [104], "removing_replicas": [101]},
        1: {"replicas": [102, 104, 101, 103], "adding_replicas": [104], "removing_replicas": [103]},
    }
    # The active controller dies; its successor knows the reassignment from the metadata log.
    old = c.active_controller()
    old.kill()
    wait_for("a new active controller", lambda: c.active_controller() is not old, 20)
    time.sleep(1)
    assert set(ongoing(c, topic)) == {0, 1}, "still waiting for 104"
    # Writes go on meanwhile (min ISR 2 of the original replicas).
    acked += produce(boot(c), topic, [b"n%d" % i for i in range(100)], 2)
    c.nodes[104].resume()
    old.start()
    wait_for("the reassignment to complete", lambda: ongoing(c, topic) == {}, 40)
    assert assignment(c, topic) == {0: [104, 102, 103], 1: [102, 104, 101]}
    # Everything acknowledged is readable, from the new replica set.
    got = read_all(c.bootstrap, topic, 2, len(acked))
    assert sorted((p, o) for p, o, _ in got) == sorted((p, o) for p, o, _ in acked)


def test_cancel_restores_the_original_replicas_and_bad_targets_are_refused(make_cluster):
    c = make_cluster(controllers=1, brokers=4, replica_lag_time_max_ms=3000)
    topic = "cancelled"
    create_topic(c.nodes[101].bootstrap, topic, 1, config=RF3, assignment=[[101, 102, 103]])
    c.nodes[104].pause()
    assert reassign(c, topic, {0: [104, 102, 103]}) == {0: None}
    assert set(ongoing(c, topic)) == {0}
    assert reassign(c, topic, {0: None}) == {0: None}
    assert ongoing(c, topic) == {}
    assert assignment(c, topic) == {0: [101, 102, 103]}
    assert reassign(c, topic, {0: None}) == {0: "NoReassignmentInProgressError"}
    # 104 comes back: it is not in the final assignment, so it keeps no log of the topic.
    c.nodes[104].resume()
    wait_for("104 holds no log of the topic", lambda: logs_of(c.nodes[104], topic) == [], 20)

    bad = "InvalidReplicationAssignmentError"
    assert reassign(c, topic, {0: [101, 999, 102]}) == {0: bad}, "unknown broker"
    assert reassign(c, topic, {0: [101, 101, 102]}) == {0: bad}, "duplicate"
    assert reassign(c, topic, {0: []}) == {0: bad}, "empty"
    kill_and_wait_fenced(c, c.nodes[104])
    assert reassign(c, topic, {0: [101, 102, 104]}) == {0: bad}, "fenced broker for a new replica"
    assert reassign(c, topic, {7: [101, 102, 103]}) == {7: "UnknownTopicOrPartitionError"}
    # Changing the replication factor is a reassignment: 3 -> 2 completes at once.
    assert reassign(c, topic, {0: [102, 103]}) == {0: None}
    wait_for("RF 2", lambda: assignment(c, topic) == {0: [102, 103]}, 10)


def test_a_throttled_move_keeps_to_its_rate(make_cluster):
    """A move of a ~5 MB partition with 1 MB/s leader- and follower-side throttles (dynamic broker
    configs, the topic's throttled-replica lists as kafka-reassign-partitions sets them) takes at
    least 80 % of size / rate, and the throttled bytes show in the metrics."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
    from test_dynamic_configs import alter

    c = make_cluster(controllers=1, brokers=4)
    topic = "throttled"
    create_topic(c.nodes[101].bootstrap, topic, 1, config=RF3, assignment=[[101, 102, 103]])
    produce(boot(c), topic, [os.urandom(1000) for _ in range(5000)], 1)
    size = log_dir_sizes(c.nodes[101], topic)[0][0]
    rate = 1_000_000
    alter(c.nodes[101], "", "leader.replication.throttled.rate", str(rate))
    alter(c.nodes[101], "", "follower.replication.throttled.rate", str(rate))
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("leader.replication.throttled.replicas", "0:101,0:102,0:103",
                    incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("follower.replication.throttled.replicas", "0:104",
                    incremental_operation=AlterConfigOpType.SET)])
    from clientops import admin
    adm = admin(boot(c))
    adm.incremental_alter_configs([res])[res].result(15)
    t0 = time.time()
    assert reassign(c, topic, {0: [104, 102, 103]}) == {0: None}
    wait_for("the throttled move to complete", lambda: ongoing(c, topic) == {}, 60)
    took = time.time() - t0
    assert took >= 0.8 * size / rate, f"{size} bytes moved in {took:.1f}s at {rate} B/s"
    leader_side = sum(
        float(line.split()[-1]) for n in (c.nodes[101], c.nodes[102], c.nodes[103]) for line in n.http("/metrics")[1].splitlines()
        if line.startswith('tributary_replication_throttled_bytes_total{side="leader"}'))
    follower_side = next(float(line.split()[-1]) for line in c.nodes[104].http("/metrics")[1].splitlines()
                         if line.startswith('tributary_replication_throttled_bytes_total{side="follower"}'))
    assert follower_side >= size * 0.9 and leader_side >= size * 0.9, (size, leader_side, follower_side)
    print(f"moved {size} bytes in {took:.1f}s under a {rate} B/s throttle")
