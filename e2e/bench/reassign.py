"""Reassignment benchmark on real broker processes (1 controller + 4 brokers on loopback, release
build). Not a test: a tool people run and report (docs/benchmarks.md, "Reassignment").

A topic of --partitions partitions on brokers 101..103 (RF 3) is filled with --mib MiB of 1 KiB
random messages; then every replica on 101 moves to 104 with the `tributary` CLI (plan --drain,
execute, status --watch), first without a throttle, then (after moving back) with --throttle
bytes/s. Reported: bytes moved (the leader's log sizes, DescribeLogDirs), seconds, MB/s, and
for the throttled run the ratio to the throttle-bound time (size / rate). The machine's
loopback and page-cache ceilings are measured the same day with ceilings.py.

With --latency-rate N, a paced acks=all producer (1 KiB messages, N per second) writes to a topic
of its own on 101..103 (not moved) through the whole run, and its delivery latency is reported
apart for three phases: idle (10 s before any move), during the unthrottled move and during the
throttled move - what a move costs the clients, with and without a throttle.

Usage: python reassign.py --broker-bin target/release/broker [--mib 1024] [--throttle 52428800]
       [--latency-rate 1000]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

import harness  # noqa: E402
import load  # noqa: E402

PAYLOAD = os.urandom(1024)


def fill(bootstrap, topic, partitions, mib):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 10, "batch.size": 1_000_000,
                  "enable.idempotence": True, "queue.buffering.max.kbytes": 1_048_576})
    for i in range(mib * 1024):
        while True:
            try:
                p.produce(topic, PAYLOAD, partition=i % partitions)
                break
            except BufferError:
                p.poll(0.01)
    assert p.flush(300) == 0


class Prober(threading.Thread):
    """A paced acks=all producer; delivery latencies (ms) are kept per phase."""

    def __init__(self, bootstrap, topic, rate):
        super().__init__(daemon=True)
        self.p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                           "enable.idempotence": True})
        self.topic, self.rate = topic, rate
        self.phase, self.lat, self.failed = "warm-up", {}, 0
        self.stop = threading.Event()

    def run(self):
        interval, next_at = 1.0 / self.rate, time.perf_counter()
        while not self.stop.is_set():
            sent, phase = time.perf_counter(), self.phase

            def done(err, _msg, sent=sent, phase=phase):
                if err:
                    self.failed += 1
                else:
                    self.lat.setdefault(phase, []).append((time.perf_counter() - sent) * 1000)

            self.p.produce(self.topic, PAYLOAD, callback=done)
            next_at += interval
            # Not time.sleep: a delivery report is timed when its callback runs, inside poll.
            load.poll_until(self.p, next_at)
        self.p.flush(30)

    def report(self):
        out = {}
        for phase, xs in self.lat.items():
            xs = sorted(xs)
            q = lambda f: round(xs[min(len(xs) - 1, int(f * len(xs)))], 2)  # noqa: E731
            out[phase] = {"messages": len(xs), "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": round(xs[-1], 2)}
        out["failed"] = self.failed
        return out


def move(cli, bootstrap, drain, throttle, workdir):
    plan = os.path.join(workdir, f"plan-{drain}-{time.time_ns()}.json")
    run = lambda *a: subprocess.run([cli, "-b", bootstrap, *a], check=True, capture_output=True, text=True)  # noqa: E731
    run("reassign", "plan", "--drain", str(drain), "--topics", "bench", "--out", plan)
    size = json.load(open(plan))["plan"]["bytesToMove"]
    t0 = time.time()
    run("reassign", "execute", plan, *(["--throttle", str(throttle)] if throttle else []))
    run("reassign", "status", plan, "--watch")
    return size, time.time() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker-bin", required=True)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--throttle", type=int, default=50 * 1024 * 1024)
    ap.add_argument("--latency-rate", type=int, default=0)
    ap.add_argument("--out")
    args = ap.parse_args()
    harness.BIN = os.path.abspath(args.broker_bin)
    cli = os.path.join(os.path.dirname(harness.BIN), "tributary")
    work = tempfile.mkdtemp(prefix="tributary-reassign-bench-")
    c = harness.Cluster(controllers=1, brokers=4, root=work, broker_heartbeat_interval_ms=2000,
                        broker_session_timeout_ms=9000)
    results = {}
    try:
        c.start(timeout=120)
        boot = c.bootstrap
        a = AdminClient({"bootstrap.servers": boot})
        assignment = [[101, 102, 103] for _ in range(args.partitions)]
        a.create_topics([NewTopic("bench", num_partitions=len(assignment), replica_assignment=assignment)])["bench"].result(30)
        t0 = time.time()
        fill(boot, "bench", args.partitions, args.mib)
        print(f"filled {args.mib} MiB in {time.time() - t0:.1f}s", file=sys.stderr)
        prober = None
        if args.latency_rate:
            a.create_topics([NewTopic("probe", num_partitions=3, replica_assignment=[[101, 102, 103], [102, 103, 101],
                                                                                     [103, 101, 102]])])["probe"].result(30)
            prober = Prober(boot, "probe", args.latency_rate)
            prober.start()
            time.sleep(3)
            prober.phase = "idle"
            time.sleep(10)
            prober.phase = "unthrottled move"
        size, secs = move(cli, boot, 101, None, work)
        results["unthrottled"] = {"bytes": size, "seconds": round(secs, 2), "mb_s": round(size / 1e6 / secs, 1)}
        print(f"  unthrottled: {results['unthrottled']}", file=sys.stderr)
        if prober:
            prober.phase = "between"
            time.sleep(3)
            prober.phase = "throttled move"
        size, secs = move(cli, boot, 104, args.throttle, work)
        bound = size / args.throttle
        results["throttled"] = {"bytes": size, "seconds": round(secs, 2), "mb_s": round(size / 1e6 / secs, 1),
                                "throttle_bytes_s": args.throttle, "bound_seconds": round(bound, 2),
                                "ratio_to_bound": round(secs / bound, 3)}
        print(f"  throttled: {results['throttled']}", file=sys.stderr)
        if prober:
            prober.stop.set()
            prober.join(60)
            results["producer_latency"] = prober.report()
    finally:
        c.stop()
        c.kill_all()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
