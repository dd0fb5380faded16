"""Network partitions on a cluster whose nodes each have their own address (Cluster(hosts="netns"):
one network namespace per node, see netns.py; and again with hosts="docker", containers of the
broker image): 3 controllers + 3 brokers, replication factor 3
with min.insync.replicas=2, idempotent acks=all producers and verifying consumers (the workload
of e2e/workload) while

- the leader of a partition is cut off every other node, past the broker session timeout;
- the active controller is cut off the other controllers;
- the cluster splits into a minority (one broker, the active controller) and a majority;

then the network heals. Test clients in the root namespace reach every node throughout, as in
Jepsen's partitions. Each scenario ends with the checker: nothing acknowledged lost, duplicated
or reordered, no consumer skipped or read phantom data, and consumers read everything
acknowledged. Timeouts are the harness's short ones (session 3 s, replica.lag.time.max.ms 3 s).
"""

import os
import re
import subprocess
import sys
import threading
import time
import uuid

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "workload"))

import producers  # noqa: E402
import report  # noqa: E402
import workload  # noqa: E402
from checker import check  # noqa: E402

from clientops import create_topic, create_topic_eventually, leaders, metadata  # noqa: E402
from harness import wait_for  # noqa: E402
import segments  # noqa: E402

RF3 = {"min.insync.replicas": "2"}
PARTITIONS = 6


class _OffsetUnknown:
    """A delivered message whose offset librdkafka does not know, shown with offset -1."""

    def __init__(self, msg):
        self._msg = msg

    def offset(self):
        return -1

    def __getattr__(self, name):
        return getattr(self._msg, name)


@pytest.fixture(autouse=True)
def tolerate_unknown_offsets(monkeypatch):
    """Workaround for e2e/workload/producers.py (not changed here): librdkafka reports an
    idempotent send whose request timed out as delivered *without an offset* once a later batch
    of the same partition succeeds ("implicitly acked by subsequent batch success"), and
    `msg.offset()` is then None, which `_delivered` compares with 0: the TypeError kills the
    producer thread (confluent-kafka 2.16 on Python 3.11 even turns it into a SystemError). Here
    such a message reaches `_delivered` with offset -1, which it records as acknowledged with
    no offset, as it intends. Remove once producers.py handles None."""
    delivered = producers.ProducerWorker._delivered

    def tolerant(self, value, partition, err, msg):
        if err is None and msg is not None and msg.offset() is None:
            msg = _OffsetUnknown(msg)
        return delivered(self, value, partition, err, msg)

    monkeypatch.setattr(producers.ProducerWorker, "_delivered", tolerant)


@pytest.fixture
def cluster(request, make_cluster):
    """3 controllers + 3 brokers in network namespaces, or (indirect parameter "docker") as
    containers of the broker image."""
    hosts = getattr(request, "param", "netns")
    request.getfixturevalue(f"{hosts}_required")
    return make_cluster(controllers=3, brokers=3, hosts=hosts, replica_lag_time_max_ms=3000,
                        default_replication_factor=3)


class LivenessBug(AssertionError):
    """A scenario's availability expectation failed (not its safety: the checker's verdict is
    asserted first, with plain asserts), so that a known one can be marked
    xfail(strict=True, raises=LivenessBug) without hiding a safety failure."""


def run_with_faults(c, tmp_path, schedule, duration=24, rate=80, mode="assign", seen=None):
    """Runs the workload on a fresh RF 3 topic while `schedule(topic, at)` injects faults
    (`at(t, what, fn)` runs fn at t seconds into the run and records it); prints the faults,
    what the schedule `seen`, and the checker's summary; returns (checker report, faults)."""
    topic = f"part-{uuid.uuid4().hex[:8]}"
    create_topic(c.nodes[101].bootstrap, topic, PARTITIONS, rf=3, config=RF3)
    wait_for("full ISRs", lambda: isr_sizes(c, topic, c.nodes[101]) == [3] * PARTITIONS, 20)
    cfg = workload.WorkloadConfig(
        bootstrap=c.bootstrap, topic=topic, partitions=PARTITIONS, replication_factor=3,
        topic_config=RF3, create_topic=False, producers=2, consumers=2, consumer_mode=mode,
        duration=duration, rate=rate, message_timeout=15, drain_timeout=25, final_read_timeout=40)
    faults, start = [], time.time()

    def at(t, what, fn):
        time.sleep(max(0.0, t - (time.time() - start)))
        faults.append((round(time.time() - start, 1), what))
        fn()

    errors = []

    def guarded():
        try:
            schedule(topic, at)
        except BaseException as e:  # reported after the run; the network is healed by teardown
            errors.append(e)
            c.heal()

    t = threading.Thread(target=guarded, daemon=True)
    t.start()
    h = workload.run(cfg, out_dir=str(tmp_path))
    t.join(60)
    result = check(h.ops(), h.meta)
    print(f"cluster root {c.root}; history {tmp_path}/history.jsonl")
    print("faults:", faults)
    print("seen:", {k: getattr(v, "node_id", v) for k, v in (seen or {}).items()})
    print("acknowledged without an offset (implicit acks):",
          sum(1 for op in h.ops() if op.f == "send" and op.type == "ok" and op.offset is None))
    print(report.summary(result))
    if any(v.kind == "duplicate" for v in result.violations):
        print(segments.describe_duplicates(c, topic, result.violations))
    assert not errors, f"the fault schedule failed: {errors[0]!r}"
    return result, faults


def assert_all_acknowledged_read(result):
    text = report.summary(result)
    assert result.valid, text
    counts = result.counts
    assert counts["acknowledged"] > 500, text
    assert counts["acknowledged_unread"] == 0, text
    assert counts["final_read_complete"] == PARTITIONS, text


def isr_sizes(c, topic, via):
    parts = metadata(via.bootstrap, topic).topics[topic].partitions
    return [len(parts[p].isrs) for p in sorted(parts)]


def leader_of(c, topic, partition, via=None):
    return c.nodes[leaders((via or c.nodes[101]).bootstrap, topic)[partition]]


def probe_send(bootstrap, topic, partition, timeout_s=5):
    """One acks=all send through `bootstrap` only; returns the delivery error (None: acknowledged).
    Not idempotent: an idempotent producer first needs a producer id, which a broker cut off the
    controllers cannot get, and the Produce request would never be sent."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False, "retries": 0,
                  "message.timeout.ms": timeout_s * 1000, "request.timeout.ms": timeout_s * 1000,
                  "topic.metadata.refresh.interval.ms": 60000})
    out = {}
    p.produce(topic, value=b"probe-while-isolated", partition=partition,
              on_delivery=lambda err, msg: out.update(err=err, offset=msg.offset()))
    p.flush(timeout_s + 5)
    return out.get("err", "no delivery report")


def end_offset(bootstrap, topic, partition):
    from confluent_kafka import Consumer, TopicPartition

    cons = Consumer({"bootstrap.servers": bootstrap, "group.id": f"eo-{uuid.uuid4().hex[:6]}"})
    try:
        return cons.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)[1]
    finally:
        cons.close()


def with_probe(c, victim, others, seen):
    """Schedule steps shared by the scenarios that cut a partition leader off: a one-partition
    probe topic led by `victim`, and a probe send through `victim` alone while it is cut off."""
    probe_topic = None

    def create(topic):
        nonlocal probe_topic
        probe_topic = "probe-" + topic
        create_topic(others[0].bootstrap, probe_topic, 1, config=RF3,
                     assignment=[[victim.node_id] + [o.node_id for o in others]])

    def probe():
        seen["probe"] = probe_send(victim.bootstrap, probe_topic, 0)
        # Whether the cut-off leader appended it: its segment on disk (the harness's data
        # directory) is not empty. Seen once under a loaded CI machine: the send timed out and
        # nothing was appended, so there was nothing to truncate.
        seg = os.path.join(victim.data_dir, f"{probe_topic}-0", f"{0:020d}.log")
        seen["probe_appended"] = os.path.exists(seg) and os.path.getsize(seg) > 0

    def verify():
        """After healing: the probe, appended by the cut-off leader and never acknowledged, is
        truncated away by the old leader (either truncation path logs it) and the partition's
        end offset is 0."""
        line = re.compile(rf"truncat\w* partition={re.escape(probe_topic)}-0\b")
        if seen.get("probe_appended"):
            seen["probe_truncated"] = bool(wait_for(
                "the old leader truncating the probe", lambda: line.search(strip_ansi(victim.log())), 20))
        else:
            seen["probe_truncated"] = "not appended"
        seen["probe_end"] = end_offset(c.bootstrap, probe_topic, 0)

    return create, probe, verify


def strip_ansi(text):
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


@pytest.mark.parametrize("cluster", ["netns", "docker"], indirect=True)
def test_an_isolated_leader_acknowledges_nothing_and_rejoins_after_healing(cluster, tmp_path):
    c = cluster
    seen = {}

    def schedule(topic, at):
        victim = seen["victim"] = leader_of(c, topic, 0)
        others = [b for b in c.brokers if b is not victim]
        create_probe, probe, verify_probe = with_probe(c, victim, others, seen)
        at(0, f"create a probe topic led by {victim.node_id}", lambda: create_probe(topic))
        at(4, f"isolate leader {victim.node_id} of partition 0 from every node", lambda: c.isolate(victim.node_id))
        at(5, f"acks=all probe through {victim.node_id} only", probe)
        at(11, "leader of partition 0 as the majority sees it",
           lambda: seen.update(new_leader=leaders(others[0].bootstrap, topic)[0]))
        at(13, "heal", c.heal)
        at(13.5, f"wait until {victim.node_id} is back in every ISR", lambda: wait_for(
            "full ISRs", lambda: isr_sizes(c, topic, others[0]) == [3] * PARTITIONS, 30))
        at(14, "check the probe was truncated", verify_probe)

    result, faults = run_with_faults(c, tmp_path, schedule, seen=seen)
    victim = seen["victim"]
    assert len(faults) == 7, faults
    assert seen["probe"] is not None, "an isolated leader acknowledged an acks=all write"
    assert seen["new_leader"] not in (victim.node_id, -1), f"no new leader elected: {seen}"
    assert seen["probe_end"] == 0 and seen["probe_truncated"], \
        f"the unacknowledged probe was not truncated on the old leader: {seen}"
    assert_all_acknowledged_read(result)


def controller_links(c):
    """{broker id: [controller address of each established connection]}, seen from inside the
    broker's network namespace."""
    out = {}
    for b in c.brokers:
        text = subprocess.run(c.net.command(b.node_id, ["ss", "-Htn", "state", "established", "dport", "=", ":9093"]),
                              capture_output=True, text=True, timeout=10).stdout
        out[b.node_id] = sorted(line.split()[-1] for line in text.splitlines())
    return out


def outcome(fn):
    """fn's result, or its exception as text (a step whose failure the test judges later)."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"


def is_active(node):
    try:
        return node.metrics().get("tributary_controller_active") == 1
    except OSError:
        return False


@pytest.mark.parametrize("cluster", ["netns", "docker"], indirect=True)
def test_an_active_controller_cut_off_the_other_controllers_is_replaced(cluster, tmp_path):
    """Only controller-to-controller traffic is cut: brokers and clients still reach the old
    active controller, which keeps its (now uncommittable) leadership in its own eyes.

    The brokers first restart, so that each fetches the metadata log from the active controller,
    as a broker that learns the leader does (one whose first fetch came before the quorum had a
    leader stays on the voter it asked). The old controller is cut off the first of the others
    2 s before the second, so that the first wins the election (the second has been campaigning
    meanwhile, with a higher term): before check-quorum this case showed the bug every time -
    the cut-off controller kept calling itself active and answering the brokers' metadata
    fetches, the brokers' metadata froze, their heartbeats never reached the new controller
    (old one, 2 s timeout; the other follower, NOT_CONTROLLER; old one again), and the new
    controller fenced every broker: all partitions offline, CreateTopics refused."""
    c = cluster
    seen = {}
    active = c.active_controller()
    for b in c.brokers:
        b.stop()
        b.start()
    seen["controller_links_before"] = controller_links(c)
    assert all(f"{active.host}:9093" in links for links in seen["controller_links_before"].values()), seen

    def schedule(topic, at):
        old = seen["old"] = c.active_controller()
        rest = [n for n in c.controllers if n is not old]
        first = rest[0]
        at(3, f"cut active controller {old.node_id} off controller {first.node_id}",
           lambda: c.cut(old.node_id, first.node_id, both_ways=True))
        at(5, f"cut active controller {old.node_id} off controllers {[n.node_id for n in rest]}",
           lambda: c.partition([[old.node_id], [n.node_id for n in rest]]))
        at(5.5, "a new active controller among the others", lambda: seen.update(new=wait_for(
            "a new active controller", lambda: next((n for n in rest if is_active(n)), None), 15)))
        at(6, "CreateTopics through broker 101 (10 s at most)", lambda: seen.update(create_during=outcome(
            lambda: round(create_topic_eventually(c.nodes[101].bootstrap, f"during-{topic}", 3, timeout=10), 1))))
        at(12, "offline partitions and metadata applied as the new controller and the brokers see them; "
               "does the old one still claim?", lambda: seen.update(
                   offline_during=seen["new"].metrics()["tributary_offline_partitions"],
                   applied_during={n.node_id: n.metrics()["tributary_metadata_applied_index"]
                                   for n in [seen["new"], old] + c.brokers},
                   old_claims=is_active(old)))
        at(13, "heal", c.heal)
        at(13.5, "exactly one active controller", lambda: seen.update(after=wait_for(
            "one active controller", lambda: len([n for n in c.controllers if is_active(n)]) == 1, 20)))
        at(14, "the old controller caught up", lambda: wait_for(
            "the old controller caught up", lambda: old.metrics()["tributary_metadata_applied_index"]
            >= c.active_controller().metrics()["tributary_metadata_applied_index"], 20))
        at(14.5, "CreateTopics after healing", lambda: seen.update(create_after=outcome(
            lambda: round(create_topic_eventually(c.nodes[101].bootstrap, f"after-{topic}", 3, timeout=15), 1))))

    result, faults = run_with_faults(c, tmp_path, schedule, seen=seen)
    assert len(faults) == 9, faults
    assert seen["new"].node_id != seen["old"].node_id
    assert_all_acknowledged_read(result)
    assert isinstance(seen["create_after"], float), f"CreateTopics after healing: {seen['create_after']}"
    md = metadata(c.nodes[102].bootstrap)
    assert sorted(md.brokers) == [101, 102, 103], "every broker unfenced after healing"
    if not (isinstance(seen["create_during"], float) and seen["offline_during"] == 0 and not seen["old_claims"]):
        raise LivenessBug(f"while the old active controller was cut off the others, CreateTopics: "
                          f"{seen['create_during']}; offline partitions on the new controller: "
                          f"{seen['offline_during']}; the old one still says it is active: {seen['old_claims']}")


@pytest.mark.parametrize("cluster", ["netns", "docker"], indirect=True)
def test_a_minority_with_a_leader_and_the_active_controller_then_heal(cluster, tmp_path):
    c = cluster
    seen = {}

    def schedule(topic, at):
        victim = seen["victim"] = leader_of(c, topic, 0)
        ctl = seen["ctl"] = c.active_controller()
        minority = [victim.node_id, ctl.node_id]
        majority = [n for n in c.nodes if n not in minority]
        others = [b for b in c.brokers if b is not victim]
        create_probe, probe, verify_probe = with_probe(c, victim, others, seen)
        at(0, f"create a probe topic led by {victim.node_id}", lambda: create_probe(topic))
        at(4, f"partition {minority} | {majority}", lambda: c.partition([minority, majority]))
        at(5, f"acks=all probe through {victim.node_id} only", probe)
        at(11, "leader of partition 0 and active controller as the majority sees them", lambda: seen.update(
            new_leader=leaders(others[0].bootstrap, topic)[0],
            new_ctl=next((c.nodes[n].node_id for n in majority if c.nodes[n].is_controller and is_active(c.nodes[n])),
                         None)))
        at(13, "heal", c.heal)
        at(13.5, f"wait until {victim.node_id} is back in every ISR", lambda: wait_for(
            "full ISRs", lambda: isr_sizes(c, topic, others[0]) == [3] * PARTITIONS, 30))
        at(14, "check the probe was truncated", verify_probe)
        at(14.5, "exactly one active controller", lambda: seen.update(after=c.active_controller(20).node_id))

    result, faults = run_with_faults(c, tmp_path, schedule, mode="group", seen=seen)
    victim = seen["victim"]
    assert len(faults) == 8, faults
    assert seen["probe"] is not None, "a leader in the minority acknowledged an acks=all write"
    assert seen["new_leader"] not in (victim.node_id, -1), f"no new leader in the majority: {seen}"
    assert seen["new_ctl"] not in (None, seen["ctl"].node_id), f"no new active controller in the majority: {seen}"
    assert seen["probe_end"] == 0 and seen["probe_truncated"], seen
    assert_all_acknowledged_read(result)
