#!/usr/bin/env python3
"""CPU and wake-ups of a broker that has nothing to do (issue 13's idle share of CPU per GB).

Starts each binary in turn on a fresh data directory (alternating, `--rounds` times), creates
`--topics` single-partition topics and, with `--group`, keeps one consumer group member alive
on them (heartbeats and empty long-poll fetches: what an idle consumer costs), lets it settle
for `--settle` seconds, then reads over `--seconds` seconds:

* CPU: utime+stime from /proc (1/CLK_TCK resolution), in ms per second;
* context switches: voluntary + involuntary, summed over the broker's threads alive at the end,
  per second.

A tool people run and report; not a test. Only 127.0.0.1 is contacted.

    python idle_cpu.py --broker-bin old=/tmp/broker-old --broker-bin new=../../target/release/broker
"""

import argparse
import json
import os
import shutil
import statistics
import threading
import time

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from bench import log, machine
from procstat import Broker, cpu_seconds


def context_switches(pid):
    """{thread id: voluntary + involuntary context switches} over the live threads of `pid`."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                out[tid] = sum(int(line.split()[1]) for line in f
                               if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")))
        except OSError:
            pass  # the thread exited between listdir and open
    return out


def switches_between(before, after):
    """Context switches between two samples by the threads alive at the second (a thread that
    exited in between, e.g. an idle blocking-pool thread, takes its count with it)."""
    return sum(n - before.get(tid, 0) for tid, n in after.items())


class IdleMember:
    """One consumer group member subscribed to the topics, polling in a thread."""

    def __init__(self, bootstrap, topics):
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": "idle-cpu",
                           "auto.offset.reset": "latest", "enable.auto.commit": True})
        self.c.subscribe(topics)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            self.c.poll(0.5)
        self.c.close()

    def close(self):
        self.stop.set()
        self.thread.join(30)


def trial(binary, data_dir, args):
    shutil.rmtree(data_dir, ignore_errors=True)
    b = Broker(binary, data_dir)
    b.start()
    member = None
    try:
        topics = [f"idle-{i}" for i in range(args.topics)]
        if topics:
            a = AdminClient({"bootstrap.servers": b.bootstrap})
            for name, fut in a.create_topics([NewTopic(t, args.partitions, 1) for t in topics]).items():
                fut.result(120)
            del a  # its connection closes: only the member (if any) talks to the broker
            if args.group:
                member = IdleMember(b.bootstrap, topics)
        time.sleep(args.settle)
        cpu0, cs0, t0 = cpu_seconds(b.pid), context_switches(b.pid), time.perf_counter()
        time.sleep(args.seconds)
        cpu1, cs1, t1 = cpu_seconds(b.pid), context_switches(b.pid), time.perf_counter()
    finally:
        if member:
            member.close()
        b.stop()
    secs = t1 - t0
    return {"cpu_ms_per_s": round((cpu1 - cpu0) * 1000 / secs, 2),
            "switches_per_s": round(switches_between(cs0, cs1) / secs, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker-bin", action="append", required=True, metavar="LABEL=PATH")
    ap.add_argument("--data-dir", default="/tmp/tributary-idle-cpu")
    ap.add_argument("--topics", type=int, default=10)
    ap.add_argument("--partitions", type=int, default=1, help="partitions per topic")
    ap.add_argument("--group", action="store_true", help="keep one idle consumer group member on the topics")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settle", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--out", default="idle-cpu.json")
    args = ap.parse_args()
    bins = [tuple(x.split("=", 1)) for x in args.broker_bin]
    runs = {label: [] for label, _ in bins}
    for r in range(args.rounds):
        for label, path in bins:
            res = trial(path, os.path.join(args.data_dir, label), args)
            runs[label].append(res)
            log(f"round {r} {label}: {res['cpu_ms_per_s']} CPU-ms/s, {res['switches_per_s']} switches/s")
    summary = {label: {"cpu_ms_per_s_median": statistics.median(x["cpu_ms_per_s"] for x in rs),
                       "switches_per_s_median": statistics.median(x["switches_per_s"] for x in rs)}
               for label, rs in runs.items()}
    print("| broker | CPU ms/s (median) | context switches/s (median) |")
    print("|---|---|---|")
    for label, s in summary.items():
        print(f"| {label} | {s['cpu_ms_per_s_median']} | {s['switches_per_s_median']} |")
    with open(args.out, "w") as f:
        json.dump({"machine": machine(), "args": vars(args), "runs": runs, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
