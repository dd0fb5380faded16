"""Replication benchmark on real broker processes (1 controller + 3 brokers on loopback, release
build, Kafka's default timeouts). Not a test: a tool people run and report
(docs/benchmarks.md, "Replication").

  throughput  1 KiB messages, acks=all, one producer process: MB/s and the cluster's broker
              CPU-seconds per GB (all three brokers, from /proc, user and system apart) for
              RF 1 and RF 3 alternated --repeats times in one run after a page-cache warm-up,
              medians and their ratio
  latency     acks=all paced at --rate msg/s for --seconds, RF 1 and RF 3 (min ISR 2) alternated
              --repeats times: p50/p99/p99.9/max delivery latency per run
  failover    SIGKILL of partition 0's leader -> first acknowledged acks=all produce to it,
              median and max over --kills kills
  shutdown    SIGTERM (controlled shutdown) of partition 0's leader under a paced producer:
              the longest gap between two acknowledgements
  catchup     a follower stopped (SIGTERM) while --mib MiB are produced to 4 partitions, then
              restarted: seconds from its start until it is back in every partition's ISR
              (metadata polled every 100 ms), and MB/s of the bytes it was behind

Usage: python replication.py --broker-bin target/release/broker [--only throughput,latency,...]
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

import harness  # noqa: E402
import load  # noqa: E402
from ceilings import prewarm  # noqa: E402

PAYLOAD = os.urandom(1024)


def create(bootstrap, name, partitions, rf, min_isr):
    a = AdminClient({"bootstrap.servers": bootstrap})
    cfg = {"min.insync.replicas": str(min_isr)}
    a.create_topics([NewTopic(name, partitions, rf, config=cfg)])[name].result(30)
    harness.wait_for("leaders", lambda: all(
        p.leader >= 0 for p in a.list_topics(name, timeout=5).topics[name].partitions.values()), 30)


def leader(bootstrap, topic, partition=0):
    a = AdminClient({"bootstrap.servers": bootstrap})
    return a.list_topics(topic, timeout=5).topics[topic].partitions[partition].leader


def cpu_split(pid):
    """(user, system) CPU seconds of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tck, int(fields[12]) / tck


def throughput(c, mib, repeats, prewarm_mib):
    """RF 1 and RF 3 alternated `repeats` times (fresh topics each time), after writing and
    deleting `prewarm_mib` MiB in the cluster's directory: on this VM the first touch of a
    never-used page costs a host fault (docs/benchmarks.md, "Machine ceilings"), which otherwise
    dominates both figures and varies by 4x from run to run."""
    out = {"runs": []}
    if prewarm_mib:
        out["prewarm"] = prewarm(c.root, prewarm_mib)
    n = mib * 1024
    for r in range(repeats):
        for rf in (1, 3):
            topic = f"tp-rf{rf}-{r}"
            create(c.bootstrap, topic, 3, rf, 1 if rf == 1 else 2)
            p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 10,
                          "batch.size": 1_000_000, "enable.idempotence": True,
                          "queue.buffering.max.kbytes": 1_048_576})
            pids = [b.proc.pid for b in c.brokers]
            before = [cpu_split(x) for x in pids]
            t0 = time.time()
            for i in range(n):
                while True:
                    try:
                        p.produce(topic, PAYLOAD, partition=i % 3)
                        break
                    except BufferError:
                        p.poll(0.01)
            assert p.flush(120) == 0
            wall = time.time() - t0
            after = [cpu_split(x) for x in pids]
            user = sum(a[0] - b[0] for a, b in zip(after, before))
            system = sum(a[1] - b[1] for a, b in zip(after, before))
            gb = n * 1024 / 1e9
            run = {"rf": rf, "mb_s": round(n * 1024 / 1e6 / wall, 1),
                   "cpu_s_per_gb": round((user + system) / gb, 2),
                   "user_s_per_gb": round(user / gb, 2), "system_s_per_gb": round(system / gb, 2)}
            out["runs"].append(run)
            print(f"  {run}", file=sys.stderr)
    for rf in (1, 3):
        runs = [x for x in out["runs"] if x["rf"] == rf]
        out[f"rf{rf}"] = {k: statistics.median(x[k] for x in runs)
                          for k in ("mb_s", "cpu_s_per_gb", "user_s_per_gb", "system_s_per_gb")}
    out["cpu_ratio_rf3_over_rf1"] = round(out["rf3"]["cpu_s_per_gb"] / out["rf1"]["cpu_s_per_gb"], 2)
    out["user_ratio_rf3_over_rf1"] = round(out["rf3"]["user_s_per_gb"] / out["rf1"]["user_s_per_gb"], 2)
    return out


def paced(bootstrap, topic, rate, seconds, partition=0, on_tick=None):
    """Produces at `rate` msg/s for `seconds`; returns [(send time, ack time or None, error)]."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "enable.idempotence": True,
                  "message.timeout.ms": 30000})
    records = []

    def report(rec):
        def cb(err, msg):
            rec[1] = time.time()
            rec[2] = err
        return cb

    t0 = time.time()
    i = 0
    while time.time() - t0 < seconds:
        target = t0 + i / rate
        load.poll_until(p, time.perf_counter() + (target - time.time()))
        rec = [time.time(), None, None]
        records.append(rec)
        p.produce(topic, PAYLOAD, partition=partition, on_delivery=report(rec))
        if on_tick:
            on_tick(time.time() - t0)
        i += 1
        p.poll(0)
    p.flush(60)
    return records


def latency(c, rate, seconds, repeats=1):
    """Paced acks=all delivery latency on RF 1 and RF 3 (min ISR 2) topics of the same cluster,
    alternated `repeats` times; per run p50/p99/p99.9/max."""
    out = {}
    for i in range(repeats):
        for rf in (1, 3):
            topic = f"lat-rf{rf}-{i}"
            create(c.bootstrap, topic, 1, rf, min(rf, 2))
            recs = paced(c.bootstrap, topic, rate, seconds + 1)
            # The producer's start (metadata, InitProducerId: ~0.5 s) is not the broker's
            # latency: count only messages sent after the first acknowledgement.
            first_ack = min(a for s, a, e in recs if a and not e)
            recs = [r for r in recs if r[0] >= first_ack]
            lat = sorted((a - s) * 1000 for s, a, e in recs if a and not e)
            q = lambda f: round(lat[min(len(lat) - 1, int(f * (len(lat) - 1)))], 2)  # noqa: E731
            run = {"rate": rate, "messages": len(recs), "acked": len(lat), "p50_ms": q(0.5),
                   "p99_ms": q(0.99), "p999_ms": q(0.999), "max_ms": round(lat[-1], 2)}
            out.setdefault(f"rf{rf}", []).append(run)
            print(f"  latency RF {rf} #{i}: {run}", file=sys.stderr)
    return out


def failover(c, kills):
    create(c.bootstrap, "fo", 1, 3, 2)
    out = []
    for i in range(kills):
        harness.wait_for("full ISR", lambda: len(AdminClient({"bootstrap.servers": c.bootstrap})
                                               .list_topics("fo", timeout=5).topics["fo"].partitions[0].isrs) == 3, 60)
        victim = c.nodes[leader(c.bootstrap, "fo")]
        others = ",".join(b.bootstrap for b in c.brokers if b is not victim)
        victim.kill()
        t0 = time.time()
        while True:
            p = Producer({"bootstrap.servers": others, "acks": "all", "enable.idempotence": True,
                          "message.timeout.ms": 2000})
            res = {}
            p.produce("fo", b"x", partition=0, on_delivery=lambda err, msg: res.update(err=err))
            p.flush(5)
            if res.get("err") is None and res:
                break
        took = time.time() - t0
        out.append(took)
        print(f"  kill {i + 1}: broker {victim.node_id} -> acks=all ok after {took:.2f}s", file=sys.stderr)
        victim.start()
    return {"kills": kills, "median_s": round(statistics.median(out), 2), "max_s": round(max(out), 2),
            "all_s": [round(x, 2) for x in out]}


def shutdown(c, rate, repeats):
    create(c.bootstrap, "sd", 1, 3, 2)
    out = []
    for _ in range(repeats):
        harness.wait_for("full ISR", lambda: len(AdminClient({"bootstrap.servers": c.bootstrap})
                                               .list_topics("sd", timeout=5).topics["sd"].partitions[0].isrs) == 3, 60)
        victim = c.nodes[leader(c.bootstrap, "sd")]
        state = {"stopped": False}

        def tick(t):
            if t > 3 and not state["stopped"]:
                state["stopped"] = True
                victim.signal(__import__("signal").SIGTERM)

        recs = paced(c.bootstrap, "sd", rate, 10, on_tick=tick)
        victim.proc.wait(60)
        acks = sorted(a for s, a, e in recs if a and not e)
        failed = sum(1 for s, a, e in recs if e)
        gap = max(b - a for a, b in zip(acks, acks[1:]))
        out.append({"longest_gap_ms": round(gap * 1000, 1), "failed": failed})
        print(f"  SIGTERM {victim.node_id}: {out[-1]}", file=sys.stderr)
        victim.start()
    return out


def catchup(c, mib):
    create(c.bootstrap, "cu", 4, 3, 2)
    a = AdminClient({"bootstrap.servers": c.bootstrap})
    follower = c.nodes[103]
    follower.stop()
    harness.wait_for("103 out of every ISR", lambda: all(
        103 not in p.isrs for p in a.list_topics("cu", timeout=5).topics["cu"].partitions.values()), 60)
    from reassign import fill
    fill(c.bootstrap, "cu", 4, mib)
    behind = sum(os.path.getsize(os.path.join(root, f)) for d in os.listdir(c.nodes[101].data_dir)
                 if d.startswith("cu-") for root in [os.path.join(c.nodes[101].data_dir, d)]
                 for f in os.listdir(root) if f.endswith(".log"))
    t0 = time.time()
    follower.start(wait_ready=False)
    while not all(103 in p.isrs for p in a.list_topics("cu", timeout=5).topics["cu"].partitions.values()):
        time.sleep(0.1)
    took = time.time() - t0
    return {"bytes_behind": behind, "seconds_to_full_isr": round(took, 2), "mb_s": round(behind / 1e6 / took, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker-bin", required=True)
    ap.add_argument("--only", default="throughput,latency,failover,shutdown")
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prewarm-mib", type=int, default=8192)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--shutdowns", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args()
    harness.BIN = os.path.abspath(args.broker_bin)
    results = {}
    defaults = {"broker_heartbeat_interval_ms": 2000, "broker_session_timeout_ms": 9000,
                "replica_lag_time_max_ms": 30000}
    for part in args.only.split(","):
        c = harness.Cluster(controllers=1, brokers=3, **defaults)
        try:
            c.start(timeout=120)
            print(f"{part}…", file=sys.stderr)
            if part == "throughput":
                results[part] = throughput(c, args.mib, args.repeats, args.prewarm_mib)
            elif part == "latency":
                results[part] = latency(c, args.rate, args.seconds, args.repeats)
            elif part == "failover":
                results[part] = failover(c, args.kills)
            elif part == "shutdown":
                results[part] = shutdown(c, args.rate, args.shutdowns)
            elif part == "catchup":
                results.setdefault(part, []).append(catchup(c, args.mib))
        finally:
            c.stop()
            c.kill_all()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
