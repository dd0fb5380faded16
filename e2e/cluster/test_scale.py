"""Growing and shrinking a cluster by hand with the `tributary` CLI, under the idempotent acks=all
workload and its checker (min.insync.replicas=2, RF 3), as the operator's commissioning and
decommissioning will do it:

- 3 -> 5 brokers: two brokers join a running cluster whose every replica is on the first three;
  `reassign plan --balance` / `execute --throttle` / `status --watch` spreads the replicas so
  every broker holds within 10 % of the mean, and the preferred leaders within one of theirs;
- 5 -> 3 brokers: `brokers cordon`, then `reassign plan --drain 104,105` empties two brokers while a sampler reads the
  metadata every 100 ms: no partition's ISR is ever seen below min.insync.replicas; then the
  drained brokers stop (controlled shutdown) and are unregistered.

Both also have data at rest (a second topic); balancing moves the smallest partitions first, so
what it copies may be little, while the drain must copy all of the drained brokers' data."""

import json
import math
import os
import threading
import time

from test_replication import RF3, run_with_faults  # noqa: I100 - first: puts e2e/workload on the path

import report  # noqa: E402
from clientops import admin, create_topic, metadata, produce  # noqa: E402
from test_cli import cli  # noqa: E402
from test_reassignment import ON_THREE, unregister  # noqa: E402

MIN_ISR = 2


def fill(c, topic, partitions, assignment=None, count=3000):
    create_topic(c.nodes[101].bootstrap, topic, partitions, config=RF3, assignment=assignment)
    produce(c.nodes[101].bootstrap, topic, [os.urandom(1000) for _ in range(count)], partitions)


def replicas_per_broker(md, brokers):
    counts = {b: 0 for b in brokers}
    preferred = {b: 0 for b in brokers}
    for t in md.topics.values():
        for pm in t.partitions.values():
            for r in pm.replicas:
                counts[r] += 1
            preferred[pm.replicas[0]] += 1
    return counts, preferred


def test_two_brokers_added_to_three_receive_their_share_under_load(make_cluster, tmp_path):
    c = make_cluster(controllers=1, brokers=5, only={1, 101, 102, 103}, replica_lag_time_max_ms=3000,
                     leader_imbalance_check_interval_seconds=2)
    fill(c, "rest", 12, assignment=[[101, 102, 103], [102, 103, 101], [103, 101, 102]] * 4)
    plan = str(tmp_path / "balance.json")
    seen = {}

    def schedule(topic, at):
        def join():
            c.nodes[104].start(wait_ready=False)
            c.nodes[105].start(wait_ready=False)
            c.nodes[104].wait_ready(30)
            c.nodes[105].wait_ready(30)

        def balance():
            seen["plan"] = cli(c, "reassign", "plan", "--balance", "--out", plan).stdout
            seen["execute"] = cli(c, "reassign", "execute", plan, "--throttle", "20000000").stdout
            seen["status"] = cli(c, "reassign", "status", plan, "--watch", timeout=120).stdout

        at(2, "start brokers 104 and 105", join)
        at(5, "balance: plan, execute (20 MB/s throttle), status --watch", balance)

    result, faults = run_with_faults(c, tmp_path, schedule, duration=24, assignment=ON_THREE)
    print(seen.get("plan"), seen.get("status"))
    assert len(faults) == 2, faults
    assert result.valid, report.summary(result)
    assert result.counts["acknowledged_unread"] == 0
    assert "done: throttle removed" in seen["status"], seen["status"]
    moves = json.load(open(plan))["plan"]["moves"]
    assert moves and all(set(m["target"]) - set(m["current"]) <= {104, 105} for m in moves), moves
    md = metadata(c.nodes[101].bootstrap)
    brokers = [101, 102, 103, 104, 105]
    counts, preferred = replicas_per_broker(md, brokers)
    total = sum(counts.values())
    mean = total / len(brokers)
    print("replicas per broker", counts, "preferred leaders", preferred, "mean", mean)
    assert all(abs(n - mean) <= 0.10 * mean for n in counts.values()), (counts, mean)
    lmean = sum(preferred.values()) / len(brokers)
    assert all(math.floor(lmean) - 1 <= n <= math.ceil(lmean) + 1 for n in preferred.values()), preferred
    # Every moved partition is whole again: all its replicas in the ISR.
    for m in moves:
        pm = md.topics[m["topic"]].partitions[m["partition"]]
        assert list(pm.replicas) == m["target"] and sorted(pm.isrs) == sorted(m["target"]), (m, pm.isrs)
    # The new brokers really hold the replicas they were given (the planner moves the smallest
    # partitions first, so these may be the empty group-offsets partitions: as little data as
    # possible moves).
    added = [(b, m) for m in moves for b in set(m["target"]) - set(m["current"])]
    assert {b for b, _ in added} == {104, 105}, added
    for b, m in added:
        assert os.path.isdir(os.path.join(c.nodes[b].data_dir, f'{m["topic"]}-{m["partition"]}')), (b, m)


class IsrSampler(threading.Thread):
    """Reads every partition's ISR from the cluster's metadata every 100 ms (what a client sees)
    and keeps the smallest seen per partition, and every sample that was below `floor`."""

    def __init__(self, bootstrap, topics, floor):
        super().__init__(daemon=True)
        self.admin = admin(bootstrap)
        self.topics, self.floor = topics, floor
        self.smallest, self.below, self.samples, self.errors = {}, [], 0, 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                md = self.admin.list_topics(timeout=5)
            except Exception:  # noqa: BLE001 - a failed read is counted, not a sample
                self.errors += 1
                continue
            self.samples += 1
            now = time.time()
            for name in self.topics:
                for p, pm in md.topics[name].partitions.items():
                    n = len(pm.isrs)
                    self.smallest[(name, p)] = min(n, self.smallest.get((name, p), n))
                    if n < self.floor:
                        self.below.append((now, name, p, list(pm.replicas), list(pm.isrs)))
            self.done.wait(0.1)


def test_two_brokers_of_five_drained_and_removed_without_isr_below_min(make_cluster, tmp_path):
    c = make_cluster(controllers=1, brokers=5, replica_lag_time_max_ms=3000)
    five = [[101, 102, 103], [102, 103, 104], [103, 104, 105], [104, 105, 101], [105, 101, 102]]
    fill(c, "rest", 10, assignment=five * 2)
    plan = str(tmp_path / "drain.json")
    boot3 = ",".join(c.nodes[i].bootstrap for i in (101, 102, 103))
    seen = {}
    sampler = {}

    def schedule(topic, at):
        def start_sampling():
            sampler["s"] = IsrSampler(boot3, ["rest", topic], MIN_ISR)
            sampler["s"].start()

        def drain():
            for b in ("104", "105"):
                cli(c, "brokers", "cordon", b)
            seen["plan"] = cli(c, "reassign", "plan", "--drain", "104,105", "--out", plan).stdout
            seen["execute"] = cli(c, "reassign", "execute", plan, "--throttle", "20000000").stdout
            seen["status"] = cli(c, "reassign", "status", plan, "--watch", timeout=120).stdout

        at(1, "sample every partition's ISR every 100 ms", start_sampling)
        at(4, "drain 104 and 105: cordon, plan, execute (20 MB/s throttle), status --watch", drain)

    result, faults = run_with_faults(c, tmp_path, schedule, duration=24, assignment=five + [five[0]])
    s = sampler["s"]
    s.done.set()
    s.join(10)
    print(seen.get("plan"), seen.get("status"))
    print(f"ISR samples: {s.samples} ({s.errors} failed reads), below {MIN_ISR}: {len(s.below)}")
    assert len(faults) == 2, faults
    assert result.valid, report.summary(result)
    assert result.counts["acknowledged_unread"] == 0
    assert "done: throttle removed" in seen["status"], seen["status"]
    assert s.samples > 100, s.samples
    assert s.below == [], s.below[:10]
    assert min(s.smallest.values()) >= MIN_ISR, s.smallest
    md = metadata(boot3)
    for t in md.topics.values():
        for pm in t.partitions.values():
            assert not {104, 105} & set(pm.replicas), (t.topic, pm.id, pm.replicas)
            assert len(pm.replicas) == 3 and sorted(pm.isrs) == sorted(pm.replicas), (t.topic, pm.id, pm.isrs)
    for b in (104, 105):
        assert c.nodes[b].stop() == 0, f"{b}: controlled shutdown"
        assert unregister(c, b) == (None, None)
    listed = cli(c, "brokers", "list").stdout.splitlines()[1:]
    assert sorted(line.split("\t")[0] for line in listed) == ["101", "102", "103"], listed
