#!/usr/bin/env python3
"""Tributary benchmark: throughput, broker CPU per GB, memory, paced latency and start-to-ready,
next to the machine's own ceilings. A tool people run and report; not part of any test suite.

Only 127.0.0.1 is ever contacted. See README.md for the commands and docs/benchmarks.md for
recorded figures.
"""

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import ceilings
import load
from procstat import Broker, RssSampler, cpu_seconds, status_kib, steal_seconds, thread_cpu

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CTX = mp.get_context("spawn")  # librdkafka threads do not survive fork


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


class Target:
    """The broker under test: its bootstrap address and pid, for /proc sampling."""

    def __init__(self, bootstrap, pid):
        self.bootstrap, self.pid = bootstrap, pid
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    def create_topic(self, name, partitions):
        self.admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
        deadline = time.time() + 30
        while time.time() < deadline:
            md = self.admin.list_topics(name, timeout=10).topics.get(name)
            if md and not md.error and len(md.partitions) == partitions and all(
                    p.leader >= 0 for p in md.partitions.values()):
                return
            time.sleep(0.05)
        raise RuntimeError(f"topic {name} has no leaders")

    def delete_topic(self, name):
        try:
            self.admin.delete_topics([name])[name].result(30)
        except Exception as e:  # noqa: BLE001 - cleanup only; the figures are already taken
            log("delete failed", name, e)

    def end_offsets(self, topic, partitions):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "tributary-bench"})
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}
        c.close()
        return ends


def start_perf(pid, path, callgraph):
    cmd = ["perf", "record", "-e", "cpu-clock", "-F", "999", "-p", str(pid), "-o", path]
    if callgraph:
        cmd += ["--call-graph", callgraph]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # let perf attach before the clock starts
    return p


def run_phase(target, worker, worker_args, perf_path=None, callgraph=None):
    """Starts one process per entry of `worker_args`, waits until all are connected, then
    releases them together; broker CPU, threads' CPU and RSS are sampled across the transfer."""
    start, results = CTX.Event(), CTX.Queue()
    procs = [CTX.Process(target=worker, args=(*a, start, results)) for a in worker_args]
    for p in procs:
        p.start()
    for _ in procs:
        assert results.get(timeout=120)[0] == "ready"
    perf = start_perf(target.pid, perf_path, callgraph) if perf_path else None
    cpu0, thr0, steal0 = cpu_seconds(target.pid), thread_cpu(target.pid), steal_seconds()
    with RssSampler(target.pid) as rss:
        t0 = time.perf_counter()
        start.set()
        done = [results.get(timeout=900)[1] for _ in procs]
        seconds = time.perf_counter() - t0
        cpu = cpu_seconds(target.pid) - cpu0
        thr1 = thread_cpu(target.pid)
        steal = steal_seconds() - steal0
    if perf:
        perf.send_signal(signal.SIGINT)
        perf.wait(60)
    for p in procs:
        p.join(30)
    threads = {k: round(v - thr0.get(k, 0.0), 2) for k, v in thr1.items() if v - thr0.get(k, 0.0) > 0}
    return {"seconds": seconds, "broker_cpu_s": cpu, "broker_threads_cpu_s": threads,
            "steal_s": steal, "peak_rss_kib": rss.peak_kib, "workers": done}


def summarise(phase, count, size):
    moved = count * size
    phase.update({"messages": count, "bytes": moved, "MB_per_s": moved / phase["seconds"] / 1e6,
                  "msgs_per_s": count / phase["seconds"],
                  "cpu_s_per_GB": phase["broker_cpu_s"] / (moved / 1e9),
                  "client_cpu_s": sum(w["client_cpu"] for w in phase["workers"])})
    return phase


def one_run(target, args, size, acks, partitions, rep):
    topic = f"bench-{size}-{acks}-{partitions}-{rep}-{int(time.time())}"
    target.create_topic(topic, partitions)
    total = args.mib_per_run * (1 << 20) // size
    per = [total // args.producers + (i < total % args.producers) for i in range(args.producers)]
    perf = lambda kind: (os.path.join(args.perf, f"{kind}-{size}-{acks}-{partitions}.data")
                         if args.perf else None)
    prod = run_phase(target, load.produce_worker,
                     [(target.bootstrap, topic, partitions, n, size, acks) for n in per],
                     perf("produce"), args.perf_callgraph)
    sent = sum(w["sent"] for w in prod["workers"])
    errs = sum(w["n_errors"] for w in prod["workers"])
    ends = target.end_offsets(topic, partitions)
    if errs or sum(ends.values()) != total:
        raise RuntimeError(f"{topic}: sent {sent}/{total}, {errs} errors, log has {ends}")
    ranges = load.split_ranges(ends, args.consumers)
    cons = run_phase(target, load.consume_worker,
                     [(target.bootstrap, topic, r, size) for r in ranges],
                     perf("consume"), args.perf_callgraph)
    got = sum(w["received"] for w in cons["workers"])
    if got != total:
        raise RuntimeError(f"{topic}: consumed {got} of {total}")
    target.delete_topic(topic)
    return {"size": size, "acks": acks, "partitions": partitions, "rep": rep,
            "produce": summarise(prod, total, size), "consume": summarise(cons, total, size)}


def latency(target, args, acks):
    topic = f"bench-latency-{acks}-{int(time.time())}"
    target.create_topic(topic, 1)
    results = CTX.Queue()
    p = CTX.Process(target=load.latency_probe, args=(
        target.bootstrap, topic, args.latency_rate, args.latency_seconds, 2.0, 1024, acks,
        results))
    cpu0 = cpu_seconds(target.pid)
    p.start()
    r = results.get(timeout=args.latency_seconds + 120)
    p.join(30)
    cpu = cpu_seconds(target.pid) - cpu0
    target.delete_topic(topic)
    lat = sorted(r.pop("latencies"))
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3
    r.update({"acks": acks, "samples": len(lat), "p50_ms": pct(0.5), "p99_ms": pct(0.99),
              "p999_ms": pct(0.999), "max_ms": lat[-1] * 1e3, "mean_ms": statistics.fmean(lat) * 1e3,
              "broker_cpu_s": cpu})
    return r


def ready_times(args, with_data_dir=None):
    """Spawn-to-/readyz seconds for `args.ready_starts` starts, each on a fresh empty data
    directory, or all on `with_data_dir` if given."""
    out = []
    for i in range(args.ready_starts):
        d = with_data_dir or os.path.join(args.data_dir, f"ready-{i}")
        b = Broker(args.broker_bin, d, overrides=overrides(args))
        out.append(b.start())
        b.stop()
        if not with_data_dir:
            shutil.rmtree(d, ignore_errors=True)
    return {"starts": out, "median_s": statistics.median(out)}


def machine():
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                  if l.startswith("model name")), "?")
    mem = status_like("/proc/meminfo", "MemTotal")
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "mem_total_kib": mem,
            "loadavg_start": open("/proc/loadavg").read().strip()}


def status_like(path, key):
    for line in open(path):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def overrides(args):
    kv = ["log.segment.delete.delay.ms=1000", *args.broker_override]
    return dict(x.split("=", 1) for x in kv)


def main_broker(args):
    if args.attach:
        bootstrap, pid = args.attach.split(",")
        return None, Target(bootstrap, int(pid))
    d = os.path.join(args.data_dir, "main")
    shutil.rmtree(d, ignore_errors=True)
    b = Broker(args.broker_bin, d, overrides=overrides(args))
    b.start()
    return b, Target(b.bootstrap, b.pid)


def run(args):
    """Runs everything; a broker this tool started is stopped even if a phase fails."""
    started = []
    try:
        return _run(args, started)
    finally:
        for b in started:
            b.stop()


def _run(args, started):
    res = {"machine": machine(), "args": vars(args)}
    os.makedirs(args.data_dir, exist_ok=True)
    if args.perf:
        os.makedirs(args.perf, exist_ok=True)
    if not args.skip_ceilings:
        log("machine ceilings")
        res["ceilings"] = ceilings.measure_all(args.data_dir, args.prewarm_mib)
    if not args.skip_ready and not args.attach:
        log("start-to-ready, empty data dir")
        res["ready_empty"] = ready_times(args)
    broker, target = main_broker(args)
    started += [broker] if broker else []
    time.sleep(1.0)
    res["rss_idle_empty_kib"] = status_kib(target.pid, "VmRSS")
    target.create_topic("bench-idle-100", 100)
    time.sleep(2.0)
    res["rss_idle_100_partitions_kib"] = status_kib(target.pid, "VmRSS")
    log("idle RSS", res["rss_idle_empty_kib"], res["rss_idle_100_partitions_kib"], "KiB")
    res["runs"] = []
    for size in args.sizes:
        for acks in args.acks:
            for parts in args.partitions:
                for rep in range(args.repeat):
                    r = one_run(target, args, size, acks, parts, rep)
                    log(f"size={size} acks={acks} p={parts} rep={rep}: produce "
                        f"{r['produce']['MB_per_s']:.0f} MB/s {r['produce']['cpu_s_per_GB']:.2f} "
                        f"CPU-s/GB (steal {r['produce']['steal_s'] * 1e3:.0f} ms); consume "
                        f"{r['consume']['MB_per_s']:.0f} MB/s {r['consume']['cpu_s_per_GB']:.2f} "
                        f"CPU-s/GB (steal {r['consume']['steal_s'] * 1e3:.0f} ms)")
                    res["runs"].append(r)
    if not args.skip_latency:
        res["latency"] = []
        for acks in ("all", "1"):
            log("latency probe acks", acks)
            res["latency"].append(latency(target, args, acks))
            log({k: v for k, v in res["latency"][-1].items() if k.endswith("_ms")})
    res["rss_hwm_kib"] = status_kib(target.pid, "VmHWM")
    res["machine"]["loadavg_end"] = open("/proc/loadavg").read().strip()
    target.admin = None  # drop the admin connection before the broker goes away
    if broker:
        res["broker_exit_code"] = broker.stop()
        if not args.skip_ready:
            log("start-to-ready with the bench data dir")
            res["ready_with_data"] = ready_times(args, broker.data_dir)
    return res


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--broker-bin", default=os.path.join(REPO, "target/release/broker"))
    ap.add_argument("--data-dir", default="/tmp/tributary-bench")
    ap.add_argument("--attach", metavar="BOOTSTRAP,PID",
                    help="use a running broker on 127.0.0.1 instead of starting one")
    ap.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1024, 16384])
    ap.add_argument("--acks", type=lambda s: s.split(","), default=["1", "all"])
    ap.add_argument("--partitions", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mib-per-run", type=int, default=512)
    ap.add_argument("--producers", type=int, default=2)
    ap.add_argument("--consumers", type=int, default=2)
    ap.add_argument("--latency-rate", type=float, default=1000.0)
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--ready-starts", type=int, default=7)
    ap.add_argument("--prewarm-mib", type=int, default=6144,
                    help="page-cache warm-up written before measuring (see ceilings.prewarm)")
    ap.add_argument("--broker-override", action="append", default=[],
                    help="extra KEY=VALUE for the broker (log.segment.delete.delay.ms=1000 is "
                         "always set so deleted bench topics free their pages promptly)")
    ap.add_argument("--skip-ceilings", action="store_true")
    ap.add_argument("--skip-ready", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--perf", metavar="DIR", help="perf record the broker during every phase")
    ap.add_argument("--perf-callgraph", default="dwarf,16384")
    ap.add_argument("--out", default="bench-results.json")
    args = ap.parse_args(argv)
    for bad in (args.attach or "").split(",")[:1]:
        if bad and not bad.startswith("127.0.0.1:"):
            ap.error("--attach must be a 127.0.0.1 address")
    return args


if __name__ == "__main__":
    a = parse_args()
    result = run(a)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    import report
    print(report.markdown(result))
