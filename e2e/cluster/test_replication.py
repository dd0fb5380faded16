"""Replication under faults, with real broker processes: replication factor 3 and
min.insync.replicas=2, idempotent acks=all producers and verifying consumers (the workload of
e2e/workload), while leaders are SIGKILLed, two brokers of three are down, every broker is
restarted with SIGTERM, or a leader is paused past its session. Each scenario ends with the
checker: nothing acknowledged lost, duplicated or reordered, no consumer skipped or read
phantom data. Timeouts are shortened (harness defaults, replica.lag.time.max.ms 3 s)."""

import os
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "workload"))

import report  # noqa: E402
import workload  # noqa: E402
from checker import check  # noqa: E402

from clientops import create_topic, leaders, metadata  # noqa: E402
from harness import wait_for  # noqa: E402

RF3 = {"min.insync.replicas": "2"}


def cluster(make_cluster):
    return make_cluster(controllers=1, brokers=3, replica_lag_time_max_ms=3000, default_replication_factor=3)


def run_with_faults(c, tmp_path, schedule, duration=22, mode="assign", rate=80, assignment=None):
    """Runs the workload on a fresh RF 3 topic (6 partitions, placed by the controller or by
    `assignment`) while `schedule` (a function of the topic name and a `at(t, what, fn)` helper)
    injects faults; returns (report, faults)."""
    topic = f"rep-{uuid.uuid4().hex[:8]}"
    create_topic(c.nodes[101].bootstrap, topic, 6, rf=3, config=RF3, assignment=assignment)
    md = metadata(c.nodes[101].bootstrap, topic)
    assert all(len(pm.replicas) == 3 for pm in md.topics[topic].partitions.values())
    cfg = workload.WorkloadConfig(
        bootstrap=",".join(b.bootstrap for b in c.brokers), topic=topic, partitions=6,
        replication_factor=3, topic_config=RF3, create_topic=False, producers=2, consumers=2,
        consumer_mode=mode, duration=duration, rate=rate, message_timeout=15, drain_timeout=25,
        final_read_timeout=40)
    faults, start = [], time.time()

    def at(t, what, fn):
        time.sleep(max(0.0, t - (time.time() - start)))
        faults.append((round(time.time() - start, 1), what))
        fn()

    t = threading.Thread(target=schedule, args=(topic, at), daemon=True)
    t.start()
    h = workload.run(cfg, out_dir=str(tmp_path))
    t.join(90)
    result = check(h.ops(), h.meta)
    print("faults:", faults)
    print(report.summary(result))
    return result, faults


def leader_of(c, topic, partition):
    alive = ",".join(b.bootstrap for b in c.brokers if b.alive())
    return c.nodes[leaders(alive, topic)[partition]]


def test_sigkill_each_leader_in_turn(make_cluster, tmp_path):
    c = cluster(make_cluster)

    def schedule(topic, at):
        for i, p in enumerate((0, 1, 2)):
            victim = leader_of(c, topic, p)
            at(3 + 6 * i, f"SIGKILL leader {victim.node_id} of partition {p}", victim.kill)
            at(6 + 6 * i, f"restart {victim.node_id}", lambda v=victim: v.start(wait_ready=True))

    result, faults = run_with_faults(c, tmp_path, schedule)
    assert len(faults) == 6, faults
    assert result.valid, report.summary(result)
    assert result.counts["acknowledged"] > 300
    assert result.counts["acknowledged_unread"] == 0


def test_two_brokers_of_three_down_then_back(make_cluster, tmp_path):
    c = cluster(make_cluster)
    probe = {}

    def try_produce(topic):
        """With one broker of three, an acks=all send must not be acknowledged. (A topic of its
        own: a timed-out send may still become visible later, which the workload's checker
        would rightly call a read of something never sent.)"""
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": c.nodes[101].bootstrap, "acks": "all",
                      "enable.idempotence": True, "message.timeout.ms": 3000})
        p.produce(topic, value=b"probe-while-two-down",
                  on_delivery=lambda err, msg: probe.update(err=err, offset=msg.offset()))
        p.flush(10)

    def schedule(topic, at):
        a, b = c.nodes[102], c.nodes[103]
        probe_topic = "probe-" + topic
        at(0, "create the probe topic", lambda: create_topic(c.nodes[101].bootstrap, probe_topic, 1, rf=3,
                                                             assignment=[[101, 102, 103]], config=RF3))
        at(4, "SIGKILL 102", a.kill)
        at(4.5, "SIGKILL 103", b.kill)
        at(8, "probe acks=all send", lambda: try_produce(probe_topic))
        at(11, "restart 102", lambda: a.start(wait_ready=True))
        at(12, "restart 103", lambda: b.start(wait_ready=True))

    result, faults = run_with_faults(c, tmp_path, schedule, duration=24)
    assert len(faults) == 6, faults
    assert probe.get("err") is not None, f"acks=all acknowledged with one in-sync replica: {probe}"
    assert result.valid, report.summary(result)
    assert result.counts["acknowledged_unread"] == 0


def test_rolling_restart_with_sigterm_fails_no_send(make_cluster, tmp_path):
    c = cluster(make_cluster)

    def schedule(topic, at):
        for i, n in enumerate(c.brokers):
            at(3 + 6 * i, f"SIGTERM {n.node_id}", n.stop)
            at(4 + 6 * i, f"start {n.node_id}", lambda n=n: n.start(wait_ready=True))
            # The next broker goes only once the partitions are fully replicated again.
            at(5 + 6 * i, "wait for full ISRs", lambda t=topic: wait_for(
                "full ISRs", lambda: all(len(pm.isrs) == 3 for pm in metadata(c.bootstrap, t).topics[t].partitions.values()), 20))

    result, faults = run_with_faults(c, tmp_path, schedule, duration=24)
    assert len(faults) == 9, faults
    assert result.valid, report.summary(result)
    counts = result.counts
    assert counts["failed"] == 0 and counts["indeterminate"] == 0, report.summary(result)
    assert counts["acknowledged_unread"] == 0


def test_a_paused_leader_acknowledges_nothing_after_it_is_fenced(make_cluster, tmp_path):
    c = cluster(make_cluster)

    def schedule(topic, at):
        victim = leader_of(c, topic, 0)
        at(4, f"SIGSTOP leader {victim.node_id}", victim.pause)
        at(12, f"SIGCONT {victim.node_id}", victim.resume)

    result, faults = run_with_faults(c, tmp_path, schedule, duration=22, mode="group")
    assert len(faults) == 2, faults
    assert result.valid, report.summary(result)
    assert result.counts["acknowledged_unread"] == 0


def test_replication_health_is_in_the_metrics(make_cluster):
    c = cluster(make_cluster)
    topic = f"m-{uuid.uuid4().hex[:8]}"
    create_topic(c.nodes[101].bootstrap, topic, 3, rf=3, config=RF3)
    create_topic(c.nodes[101].bootstrap, topic + "-rf1", 1, assignment=[[103]])
    ctl = c.nodes[1]

    def total(name, nodes):
        return sum(n.metrics().get(name, 0) for n in nodes)

    wait_for("full ISRs", lambda: total("tributary_under_replicated_partitions", c.brokers) == 0, 20)
    assert total("tributary_leader_partitions", c.brokers) >= 4
    assert ctl.metrics()["tributary_offline_partitions"] == 0
    c.nodes[103].kill()
    alive = [c.nodes[101], c.nodes[102]]
    wait_for("under-replicated partitions reported",
             lambda: total("tributary_under_replicated_partitions", alive) == 3, 20)
    assert total("tributary_under_min_isr_partitions", alive) == 0, "2 of 3 are still min ISR 2"
    wait_for("the RF 1 partition on 103 offline", lambda: ctl.metrics()["tributary_offline_partitions"] == 1, 20)
    c.nodes[103].start()
    wait_for("healed", lambda: total("tributary_under_replicated_partitions", c.brokers) == 0, 30)
    wait_for("online", lambda: ctl.metrics()["tributary_offline_partitions"] == 0, 20)


def test_leadership_returns_to_preferred_replicas(make_cluster):
    """After a broker's restart its partitions are led elsewhere; ElectLeaders (preferred) moves
    them back at once, and the controller's auto rebalance does it by itself."""
    from confluent_kafka import ElectionType, TopicPartition

    from clientops import admin

    c = make_cluster(controllers=1, brokers=3, replica_lag_time_max_ms=3000,
                     leader_imbalance_check_interval_seconds=1)
    topic = f"pref-{uuid.uuid4().hex[:8]}"
    create_topic(c.nodes[101].bootstrap, topic, 3, rf=3, config=RF3)
    preferred = {p: pm.replicas[0] for p, pm in metadata(c.bootstrap, topic).topics[topic].partitions.items()}
    assert leaders(c.bootstrap, topic) == preferred
    a = admin(c.nodes[102].bootstrap)
    result = a.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, 0)]).result(15)
    assert result[TopicPartition(topic, 0)] is not None, "already the leader: ELECTION_NOT_NEEDED"
    victim = c.nodes[preferred[0]]
    victim.stop()
    assert leaders(c.bootstrap, topic)[0] != victim.node_id
    victim.start()
    # Back in the ISR, then the timer (1 s here, 300 s by default) hands leadership back.
    wait_for("leadership back on the preferred replicas",
             lambda: leaders(c.bootstrap, topic) == preferred, 30)


def test_elect_leaders_moves_leadership_to_the_preferred_replica(make_cluster):
    from confluent_kafka import ElectionType, TopicPartition

    from clientops import admin

    c = make_cluster(controllers=1, brokers=3, replica_lag_time_max_ms=3000,
                     auto_leader_rebalance_enable="false")
    topic = f"elect-{uuid.uuid4().hex[:8]}"
    create_topic(c.nodes[101].bootstrap, topic, 3, rf=3, config=RF3)
    preferred = leaders(c.bootstrap, topic)
    victim = c.nodes[preferred[0]]
    victim.stop()
    victim.start()
    wait_for("full ISR again", lambda: len(metadata(c.bootstrap, topic).topics[topic].partitions[0].isrs) == 3, 20)
    time.sleep(2)
    assert leaders(c.bootstrap, topic)[0] != victim.node_id, "no auto rebalance when disabled"
    a = admin(c.nodes[102].bootstrap)
    result = a.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, 0)]).result(15)
    assert result[TopicPartition(topic, 0)] is None, result
    wait_for("partition 0 led by its preferred replica", lambda: leaders(c.bootstrap, topic)[0] == victim.node_id, 10)


def test_isr_shrinks_and_expands_are_counted_and_lag_is_reported_per_follower(make_cluster):
    """A follower paused for longer than replica.lag.time.max.ms (1 s) but shorter than its
    session (3 s) while the leader takes writes: the leader reports how far behind that follower
    is, removes it from the ISR (counted as a shrink), and adds it back once it caught up after
    SIGCONT (counted as an expansion)."""
    c = make_cluster(controllers=1, brokers=3, replica_lag_time_max_ms=1000)
    topic = f"isr-{uuid.uuid4().hex[:8]}"
    create_topic(c.nodes[101].bootstrap, topic, 1, rf=3, config=RF3)
    wait_for("full ISR", lambda: len(metadata(c.nodes[101].bootstrap, topic).topics[topic].partitions[0].isrs) == 3, 20)
    pm = metadata(c.nodes[101].bootstrap, topic).topics[topic].partitions[0]
    leader = c.nodes[pm.leader]
    follower = c.nodes[next(r for r in pm.replicas if r != pm.leader)]
    before = leader.metrics()
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": leader.bootstrap, "acks": "all", "linger.ms": 0})
    follower.pause()
    try:
        for i in range(20):
            p.produce(topic, value=b"x%d" % i, partition=0)
        p.flush(10)  # min ISR 2 of 3: acknowledged by the leader and the other follower
        line = f'tributary_partition_follower_lag_messages{{topic="{topic}",partition="0",replica="{follower.node_id}"}}'
        lag = wait_for("the paused follower's lag", lambda: next(
            (float(x.split()[-1]) for x in leader.http("/metrics")[1].splitlines() if x.startswith(line)), None), 10)
        assert lag >= 20
        wait_for("the ISR shrinks", lambda: leader.metrics()["tributary_isr_shrinks_total"]
                 > before["tributary_isr_shrinks_total"], 10)
        assert follower.node_id not in metadata(leader.bootstrap, topic).topics[topic].partitions[0].isrs
    finally:
        follower.resume()
    wait_for("the ISR expands", lambda: leader.metrics()["tributary_isr_expands_total"]
             > before["tributary_isr_expands_total"], 20)
    wait_for("full ISR again", lambda: len(metadata(leader.bootstrap, topic).topics[topic].partitions[0].isrs) == 3, 10)
    assert f'replica="{follower.node_id}"' not in leader.http("/metrics")[1], "no lag left once caught up"
