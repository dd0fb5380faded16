"""Consumer groups with real clients: partitions split across members, rebalances when members
join, leave or die, static membership, offsets committed to __consumer_offsets and kept across a
broker restart, and the AdminClient's group operations."""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, Consumer, KafkaException, TopicPartition

from clients import admin, create_topic, produce_confluent

GROUP_BROKER = {"group_initial_rebalance_delay_ms": 200}
SESSION_MS = 6000


def group_consumer(bootstrap, group, strategy="range,roundrobin", **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": SESSION_MS,
        "heartbeat.interval.ms": 500,
        "partition.assignment.strategy": strategy,
    }
    conf.update(extra)
    return Consumer(conf)


# Every member a test made, closed at teardown while its broker still runs: a consumer left
# open (a failed assertion) would otherwise be closed by the garbage collector later, where
# librdkafka can wait forever for a coordinator that is gone.
_MEMBERS = []


@pytest.fixture(autouse=True)
def close_members(make_broker):
    yield
    while _MEMBERS:
        c = _MEMBERS.pop()
        try:
            c.close()
        except RuntimeError:
            pass  # closed by the test already


class Member:
    """A group member that records what it consumed and commits after processing each message.

    The per-message commit is asynchronous: one test thread polls several members in turn, and a
    synchronous commit blocks that thread behind the member's own JoinGroup, which the
    coordinator holds (on the same connection, as Kafka does) until every member has rejoined -
    including the ones this thread no longer polls, whose rebalance callbacks then never run. In
    CI that waited out three 60 s socket timeouts. `commit_sync` commits the consumed positions
    once the group is stable."""

    def __init__(self, name, consumer, topic, on_assign=None):
        self.name, self.c, self.seen = name, consumer, []
        _MEMBERS.append(consumer)
        kwargs = {"on_assign": on_assign} if on_assign else {}
        self.c.subscribe([topic], **kwargs)

    def poll_once(self, timeout=0.05):
        m = self.c.poll(timeout)
        if m is None or m.error():
            return
        self.seen.append((m.partition(), m.offset()))
        try:
            self.c.commit(message=m, asynchronous=True)
        except KafkaException:
            pass  # a rebalance is under way: the message may be read again (at least once)

    def commit_sync(self):
        """Commits the positions of everything consumed so far (call with the group stable)."""
        for _ in range(10):
            self.c.poll(0.05)  # serves the callbacks of earlier asynchronous commits
        try:
            self.c.commit(asynchronous=False)
        except KafkaException as e:
            if "NO_OFFSET" not in str(e):  # nothing consumed since the last commit
                raise

    def partitions(self):
        return sorted(tp.partition for tp in self.c.assignment())


def poll_until(members, cond, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for m in members:
            m.poll_once()
        if cond():
            return
    raise AssertionError("condition not reached; assignments: "
                         + str({m.name: m.partitions() for m in members}))


def seen_all(members, acked, gone=()):
    seen = {x for m in list(members) + list(gone) for x in m.seen}
    return all((p, o) in seen for p, o, _, _ in acked)


def disjoint_cover(members, n):
    parts = [p for m in members for p in m.partitions()]
    return sorted(parts) == list(range(n)) and all(m.partitions() for m in members)


@pytest.mark.parametrize("strategy", ["range,roundrobin", "cooperative-sticky"])
def test_members_share_partitions_and_nothing_is_lost_across_rebalances(make_broker, topic, strategy):
    b = make_broker(**GROUP_BROKER)
    create_topic(b.bootstrap, topic, partitions=6)
    group = f"g-{uuid.uuid4().hex[:8]}"
    members = [Member(f"m{i}", group_consumer(b.bootstrap, group, strategy), topic) for i in range(3)]
    # The group settles first: a member whose join came after the initial rebalance delay would
    # otherwise make a later generation, and a partition read in both would have two readers.
    poll_until(members, lambda: disjoint_cover(members, 6))
    acked = produce_confluent(b.bootstrap, topic, 300, tag="a")
    poll_until(members, lambda: disjoint_cover(members, 6) and seen_all(members, acked))
    # With a stable assignment, each partition was consumed by exactly one member.
    owners = {}
    for m in members:
        for p, _ in m.seen:
            owners.setdefault(p, set()).add(m.name)
    assert sorted(owners) == list(range(6))
    assert all(len(o) == 1 for o in owners.values()), owners

    # A fourth member joins: the partitions are split four ways.
    members.append(Member("m3", group_consumer(b.bootstrap, group, strategy), topic))
    acked += produce_confluent(b.bootstrap, topic, 300, tag="b")
    poll_until(members, lambda: disjoint_cover(members, 6) and seen_all(members, acked))
    # A member leaves: the other three take over its partitions.
    leaving = members.pop(0)
    leaving.commit_sync()
    leaving.c.close()
    acked += produce_confluent(b.bootstrap, topic, 300, tag="c")
    poll_until(members, lambda: disjoint_cover(members, 6) and seen_all(members, acked, [leaving]))
    # Let every commit land, then stop the whole group.
    for m in members:
        m.commit_sync()
    for m in members:
        m.c.close()

    # Restart the group: it resumes from the committed offsets and reads only the new messages.
    fresh = produce_confluent(b.bootstrap, topic, 60, tag="d")
    restarted = [Member(f"r{i}", group_consumer(b.bootstrap, group, strategy), topic) for i in range(3)]
    poll_until(restarted, lambda: seen_all(restarted, fresh))
    for m in restarted:
        for _ in range(10):
            m.poll_once()
    for m in restarted:
        m.commit_sync()
    old = {(p, o) for p, o, _, _ in acked}
    reread = [x for m in restarted for x in m.seen if x in old]
    assert not reread, f"re-read committed messages: {reread[:10]}"
    ends = {}
    for p, o, _, _ in acked + fresh:
        ends[p] = max(ends.get(p, 0), o + 1)
    committed = restarted[0].c.committed([TopicPartition(topic, p) for p in range(6)], timeout=10)
    assert {tp.partition: tp.offset for tp in committed} == ends
    for m in restarted:
        m.c.close()


def test_kafka_python_commits_survive_a_broker_restart(make_broker, topic):
    from kafka import KafkaConsumer, TopicPartition as KTP

    b = make_broker(**GROUP_BROKER)
    create_topic(b.bootstrap, topic, partitions=2)
    acked = produce_confluent(b.bootstrap, topic, 100)
    group = f"kp-{uuid.uuid4().hex[:8]}"

    def consumer():
        return KafkaConsumer(topic, bootstrap_servers=b.bootstrap, group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             session_timeout_ms=SESSION_MS, heartbeat_interval_ms=500)

    c = consumer()
    got, deadline = [], time.time() + 30
    while len(got) < 60 and time.time() < deadline:
        for recs in c.poll(timeout_ms=500, max_records=60 - len(got)).values():
            got += recs
    assert len(got) == 60
    c.commit()
    positions = {tp.partition: c.position(tp) for tp in c.assignment()}
    c.close()
    assert sum(positions.values()) == 60

    b.restart()
    c = consumer()
    rest, deadline = [], time.time() + 30
    while len(rest) < 40 and time.time() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            rest += recs
    first = {}
    for r in rest:
        first.setdefault(r.partition, r.offset)
    assert first == {p: o for p, o in positions.items() if o < sum(1 for a in acked if a[0] == p)}
    assert len(rest) == 40, "resumed exactly after the committed offsets"
    assert c.committed(KTP(topic, 0)) == positions[0]
    c.close()


CHILD = """
import sys, time
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "session.timeout.ms": %d,
              "heartbeat.interval.ms": 500, "auto.offset.reset": "earliest"})
c.subscribe([sys.argv[3]])
while True:
    c.poll(0.2)
    if c.assignment():
        print("assigned", flush=True)
""" % SESSION_MS


def test_a_member_that_stops_heartbeating_is_removed_and_its_partitions_move(make_broker, topic):
    b = make_broker(**GROUP_BROKER)
    create_topic(b.bootstrap, topic, partitions=4)
    group = f"hb-{uuid.uuid4().hex[:8]}"
    child = subprocess.Popen([sys.executable, "-c", CHILD, b.bootstrap, group, topic],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "assigned"
        survivor = Member("s", group_consumer(b.bootstrap, group), topic)
        poll_until([survivor], lambda: len(survivor.partitions()) == 2)
        child.send_signal(signal.SIGKILL)  # no LeaveGroup: only the session timeout notices
        child.wait(10)
        killed = time.time()
        poll_until([survivor], lambda: survivor.partitions() == [0, 1, 2, 3], timeout=SESSION_MS / 1000 + 20)
        took = time.time() - killed
        assert took >= SESSION_MS / 1000 - 1.5, f"partitions moved after {took:.1f}s, before the session timeout"
        survivor.c.close()
    finally:
        if child.poll() is None:
            child.kill()


def test_a_static_member_restarting_within_its_session_keeps_its_partitions(make_broker, topic):
    b = make_broker(**GROUP_BROKER)
    create_topic(b.bootstrap, topic, partitions=4)
    group = f"st-{uuid.uuid4().hex[:8]}"
    assigns = []
    other = Member("other", group_consumer(b.bootstrap, group, **{"group.instance.id": "other"}), topic,
                   on_assign=lambda c, ps: assigns.append(sorted(p.partition for p in ps)))
    static = Member("static", group_consumer(b.bootstrap, group, **{"group.instance.id": "static"}), topic)
    poll_until([other, static], lambda: disjoint_cover([other, static], 4))
    before_other, before_static = other.partitions(), static.partitions()
    n_assigns = len(assigns)
    static.c.close()  # a static member leaves no LeaveGroup behind
    restarted = Member("static2", group_consumer(b.bootstrap, group, **{"group.instance.id": "static"}), topic)
    poll_until([other, restarted], lambda: restarted.partitions() != [])
    for _ in range(40):  # a second or two for any rebalance to show
        other.poll_once()
        restarted.poll_once()
    assert restarted.partitions() == before_static
    assert other.partitions() == before_other
    assert len(assigns) == n_assigns, f"the other member was reassigned: {assigns}"
    other.c.close()
    restarted.c.close()


def test_admin_lists_describes_alters_and_deletes_groups(make_broker, topic):
    from kafka import KafkaAdminClient, TopicPartition as KTP

    b = make_broker(**GROUP_BROKER)
    create_topic(b.bootstrap, topic, partitions=2)
    produce_confluent(b.bootstrap, topic, 20)
    group = f"adm-{uuid.uuid4().hex[:8]}"
    m = Member("a", group_consumer(b.bootstrap, group, **{"client.id": "admin-test"}), topic)
    poll_until([m], lambda: len(m.seen) == 20)
    m.commit_sync()
    a = admin(b.bootstrap)

    listed = a.list_consumer_groups().result(10).valid
    assert any(g.group_id == group and g.state.name == "STABLE" for g in listed)
    desc = a.describe_consumer_groups([group])[group].result(10)
    assert desc.state.name == "STABLE"
    assert [x.client_id for x in desc.members] == ["admin-test"]
    assert [x.host for x in desc.members] == ["/127.0.0.1"], "client_host as Kafka reports it"
    assert sorted(tp.partition for tp in desc.members[0].assignment.topic_partitions) == [0, 1]
    offsets = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(10)
    assert sorted((tp.partition, tp.offset) for tp in offsets.topic_partitions) == \
        sorted((p, sum(1 for x in m.seen if x[0] == p)) for p in range(2))

    # Deleting a group with members is refused.
    with pytest.raises(KafkaException) as e:
        a.delete_consumer_groups([group])[group].result(10)
    assert "NON_EMPTY_GROUP" in str(e.value)
    m.c.close()
    poll = time.time() + 10
    while time.time() < poll:
        g = a.list_consumer_groups(states={ConsumerGroupState.EMPTY}).result(10)
        if any(x.group_id == group for x in g.valid):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("group did not become Empty after its member left")

    # Alter offsets of the empty group, then delete one partition's offset (OffsetDelete).
    new = [TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 4)]
    a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, new)])[group].result(10)
    got = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(10)
    assert sorted((tp.partition, tp.offset) for tp in got.topic_partitions) == [(0, 3), (1, 4)]
    kadmin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    kadmin.delete_group_offsets(group, [KTP(topic, 0)])
    left = kadmin.list_group_offsets({group: None})
    assert {tp.partition: om.offset for tp, om in left[group].items()} == {1: 4}
    kadmin.close()

    a.delete_consumer_groups([group])[group].result(10)
    assert not any(g.group_id == group for g in a.list_consumer_groups().result(10).valid)
    gone = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(10)
    assert all(tp.offset < 0 for tp in gone.topic_partitions)


def test_more_partitions_on_a_subscribed_topic_are_assigned(make_broker, topic):
    """CreatePartitions on a subscribed topic: the group rebalances (the classic protocol's
    leader notices the new partition count in its metadata and rejoins) and every partition,
    old and new, ends up with exactly one member, whose messages are all consumed."""
    b = make_broker(**GROUP_BROKER)
    create_topic(b.bootstrap, topic, partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    members = [Member(f"m{i}", group_consumer(b.bootstrap, group, **{"topic.metadata.refresh.interval.ms": 500}),
                      topic) for i in range(2)]
    poll_until(members, lambda: disjoint_cover(members, 2))
    from confluent_kafka.admin import NewPartitions
    a = admin(b.bootstrap)  # keep the handle alive until the future resolves
    a.create_partitions([NewPartitions(topic, 5)])[topic].result(10)
    acked = produce_confluent(b.bootstrap, topic, 200, tag="grown")
    assert {p for p, *_ in acked} >= {2, 3, 4}, "the producer used the new partitions"
    poll_until(members, lambda: disjoint_cover(members, 5) and seen_all(members, acked))
    for m in members:
        m.c.close()
