#!/usr/bin/env python3
"""Produce tail latency (issue 13): many short produce runs, each on a fresh one-partition topic,
reporting every run's p50/p99/p99.9/max instead of one pooled percentile, because the stalls
looked for show up in some runs and not in others.

Per broker binary (`--broker-bin`, repeatable as LABEL=PATH; the brokers run side by side and
the runs alternate between them, so an A/B comparison shares the machine's moods):

* full speed: `--runs` × `--messages` messages of `--size` bytes from one confluent-kafka
  producer with librdkafka's defaults (linger.ms=5) except `acks`, for every `--acks`;
  per message, the time from `produce()` to its delivery report. librdkafka's own request round
  trip times (`statistics.interval.ms`, the broker's `rtt` window) are kept beside them: a
  per-request figure without the client's queueing. Broker CPU seconds per GB of payload over
  the run, from /proc.
* paced: `--paced-runs` × `--paced-seconds` at `--paced-rate` msg/s, `linger.ms=0`
  (`load.latency_probe`, 2 s warm-up dropped); p50/p99/p99.9/max per run. With
  `--paced-client raw` (repeatable with `librdkafka`, the default), the same pace from
  `load.raw_latency_probe`: Produce requests on a blocking socket with no client library, so
  the broker's part of the tail can be told from librdkafka's (mode `paced-raw`).

`--broker-cpus 1 --client-cpus 0` keeps the client off the brokers' CPU (on 2 CPUs the broker
then has one core to itself, and the client's own scheduling stops showing as broker latency).

A tool people run and report; not a test. Only 127.0.0.1 is contacted. See README.md.
"""

import argparse
import gc
import json
import math
import os
import shutil
import sys
import time

import load
from bench import CTX, Target, log, machine
from procstat import Broker, cpu_seconds, runqueue_wait_seconds, steal_seconds


def percentile(sorted_values, q):
    """The nearest-rank `q` quantile (0 < q ≤ 1) of an ascending list: the smallest value with at
    least q of the values at or below it.

    >>> percentile([1, 2, 3, 4], 0.5)
    2
    >>> percentile(list(range(1, 1001)), 0.999)
    999
    >>> percentile([5], 0.99)
    5
    """
    if not sorted_values:
        raise ValueError("no values")
    rank = math.ceil(round(q * len(sorted_values), 9))  # 0.999 * 1000 is not exactly 999
    return sorted_values[min(len(sorted_values), max(1, rank)) - 1]


def summary_ms(latencies_s):
    """p50/p99/p99.9/max in milliseconds of latencies given in seconds."""
    lat = sorted(latencies_s)
    out = {f"{name}_ms": percentile(lat, q) * 1e3
           for name, q in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999))}
    out.update({"max_ms": lat[-1] * 1e3, "samples": len(lat)})
    return out


def full_speed_worker(bootstrap, topic, count, size, acks, linger_ms, results):
    """Produces `count` messages as fast as the client goes, polling after each so delivery
    reports are timed when librdkafka has them; returns per-message latencies and the broker
    round-trip windows from librdkafka's statistics."""
    import json as _json
    from confluent_kafka import Producer

    rtt = []
    conf = {"bootstrap.servers": bootstrap, "acks": str(acks), "statistics.interval.ms": 200,
            "stats_cb": lambda s: rtt.extend(load.rtt_windows(_json.loads(s)))}
    if linger_ms is not None:
        conf["linger.ms"] = linger_ms
    p = Producer(conf)
    p.list_topics(topic, timeout=10)  # connected, leader known: the clock starts warm
    payload = os.urandom(size)
    lat, errors = [], [0]
    clock = time.perf_counter

    def done(err, _msg, sent):
        if err:
            errors[0] += 1
        else:
            lat.append(clock() - sent)

    # Python's cyclic collector would otherwise stop this loop for tens of milliseconds now and
    # then (200,000 callbacks in flight), and that pause would be charged to the broker.
    gc.disable()
    t0 = clock()
    for _ in range(count):
        sent = clock()
        while True:
            try:
                p.produce(topic, payload, partition=0,
                          on_delivery=lambda err, msg, s=sent: done(err, msg, s))
                break
            except BufferError:
                p.poll(0.001)
        p.poll(0)
    left = p.flush(120)
    seconds = clock() - t0
    gc.enable()
    p.poll(0.5)  # one more statistics window, covering the last requests
    results.put({"latencies": lat, "errors": errors[0], "unsent": left, "seconds": seconds,
                 "rtt_windows": rtt})


def full_speed_run(target, args, acks, label, i):
    topic = f"tail-{label}-{acks}-{i}-{int(time.time() * 1000)}"
    target.create_topic(topic, 1)
    results = CTX.Queue()
    proc = CTX.Process(target=full_speed_worker, args=(
        target.bootstrap, topic, args.messages, args.size, acks, args.linger_ms, results))
    cpu0, rq0, st0 = cpu_seconds(target.pid), runqueue_wait_seconds(target.pid), steal_seconds()
    t0 = time.perf_counter()
    proc.start()
    r = results.get(timeout=600)
    cpu, rq = cpu_seconds(target.pid) - cpu0, runqueue_wait_seconds(target.pid) - rq0
    steal = steal_seconds() - st0
    wall = time.perf_counter() - t0
    proc.join(30)
    target.delete_topic(topic)
    if r["errors"] or r["unsent"] or len(r["latencies"]) != args.messages:
        raise RuntimeError(f"{topic}: {r['errors']} errors, {r['unsent']} unsent, "
                           f"{len(r['latencies'])} delivered of {args.messages}")
    out = {"binary": label, "acks": acks, "run": i, "mode": "full", "seconds": r["seconds"],
           "msgs_per_s": args.messages / r["seconds"],
           "broker_cpu_s": cpu, "cpu_s_per_GB": cpu / (args.messages * args.size / 1e9),
           "broker_runqueue_wait_s": rq, "steal_s": steal, "wall_s": wall,
           "loadavg": os.getloadavg()[0], **summary_ms(r["latencies"])}
    out.update(rtt_summary(r["rtt_windows"]))
    return out


def paced_run(target, args, acks, label, i, client="librdkafka"):
    topic = f"tail-paced-{label}-{acks}-{i}-{int(time.time() * 1000)}"
    target.create_topic(topic, 1)
    results = CTX.Queue()
    probe = load.raw_latency_probe if client == "raw" else load.latency_probe
    proc = CTX.Process(target=probe, args=(
        target.bootstrap, topic, args.paced_rate, args.paced_seconds, 2.0, args.size, acks,
        results), kwargs={"stats": True})
    cpu0, rq0, st0 = cpu_seconds(target.pid), runqueue_wait_seconds(target.pid), steal_seconds()
    t0 = time.perf_counter()
    proc.start()
    r = results.get(timeout=args.paced_seconds + 120)
    cpu, rq = cpu_seconds(target.pid) - cpu0, runqueue_wait_seconds(target.pid) - rq0
    steal = steal_seconds() - st0
    wall = time.perf_counter() - t0
    proc.join(30)
    target.delete_topic(topic)
    mode = "paced-raw" if client == "raw" else "paced"
    out = {"binary": label, "acks": acks, "run": i, "mode": mode, "errors": r["errors"],
           "achieved_rate": r["achieved_rate"], "broker_cpu_s": cpu,
           "broker_runqueue_wait_s": rq, "steal_s": steal, "wall_s": wall,
           "loadavg": os.getloadavg()[0], **summary_ms(r["latencies"])}
    out.update(rtt_summary(r["rtt_windows"]))
    return out


def rtt_summary(windows):
    """librdkafka's request round trip over a run: the largest window max and window p99 (ms)."""
    if not windows:
        return {}
    return {"rtt_max_ms": max(w["max"] for w in windows) / 1e3,
            "rtt_p99_max_ms": max(w["p99"] for w in windows) / 1e3,
            "rtt_requests": sum(w["cnt"] for w in windows)}


def cpu_list(text):
    """`"1,0"` → [0, 1].

    >>> cpu_list("1,0")
    [0, 1]
    """
    return sorted({int(c) for c in text.split(",") if c.strip()})


def start_brokers(args):
    """{label: (Broker or None, Target)} for every binary, or the attached broker."""
    if args.attach:
        bootstrap, pid = args.attach.split(",")
        return {"attached": (None, Target(bootstrap, int(pid)))}
    out = {}
    kv = dict(x.split("=", 1) for x in [
        "log.segment.delete.delay.ms=1000", f"request.slow.log.ms={args.slow_log_ms}",
        *args.broker_override])
    for spec in args.broker_bin:
        label, _, path = spec.rpartition("=")
        label = label or os.path.basename(os.path.dirname(os.path.dirname(path))) or "broker"
        d = os.path.join(args.data_dir, label)
        shutil.rmtree(d, ignore_errors=True)
        b = Broker(path, d, overrides=kv, cpus=args.broker_cpus)
        b.start()
        out[label] = (b, Target(b.bootstrap, b.pid))
        log("started", label, path, "pid", b.pid, "log", d + ".log")
    return out


def line(r):
    rtt = f" rtt max {r['rtt_max_ms']:.1f}" if "rtt_max_ms" in r else ""
    cpu = f" {r['cpu_s_per_GB']:.2f} CPU-s/GB" if "cpu_s_per_GB" in r else ""
    return (f"{r['mode']} {r['binary']} acks={r['acks']} #{r['run']}: p50 {r['p50_ms']:.2f} "
            f"p99 {r['p99_ms']:.2f} p99.9 {r['p999_ms']:.2f} max {r['max_ms']:.2f} ms{rtt}{cpu} "
            f"runqueue {r['broker_runqueue_wait_s'] * 1e3:.0f} ms steal {steal_text(r)} ms "
            f"load {r['loadavg']:.1f}")


def run(args):
    brokers = start_brokers(args)
    if args.client_cpus:
        # before the producers' threads exist: librdkafka's threads inherit it
        os.sched_setaffinity(0, args.client_cpus)
    res = {"machine": machine(), "args": vars(args), "runs": []}
    try:
        for i in range(args.runs):
            for acks in args.acks:
                for label, (_, target) in brokers.items():
                    res["runs"].append(full_speed_run(target, args, acks, label, i))
                    log(line(res["runs"][-1]))
        for i in range(args.paced_runs):
            for acks in args.acks:
                for label, (_, target) in brokers.items():
                    for client in args.paced_client or ["librdkafka"]:
                        res["runs"].append(paced_run(target, args, acks, label, i, client))
                        log(line(res["runs"][-1]))
    finally:
        res["machine"]["loadavg_end"] = open("/proc/loadavg").read().strip()
        for label, (b, target) in brokers.items():
            target.admin = None
            if b:
                res.setdefault("exit_codes", {})[label] = b.stop()
    return res


def steal_text(r):
    """The CPU time the hypervisor took during the run, in ms ("?" for results recorded before
    steal was): the unit `--quiet-steal-ms` judges it in."""
    return f"{r['steal_s'] * 1e3:.0f}" if "steal_s" in r else "?"


def quiet_run(r, res):
    """Whether the broker's threads waited for a CPU less than `--quiet-runqueue` of the run's
    wall time (summed over its threads), and the hypervisor stole at most `--quiet-steal-ms`
    over the run. Steal comes in episodes: a 1 s full-speed run that lost 20–30 ms to it
    usually has a message that waited about that long, whatever the broker did."""
    wall = r.get("wall_s") or r.get("seconds") or 1.0
    return (r["broker_runqueue_wait_s"] / wall < res["args"].get("quiet_runqueue", 0.1)
            and r.get("steal_s", 0.0) * 1e3 <= res["args"].get("quiet_steal_ms", 10.0) + 1e-6)


def markdown(res):
    rows = ["| mode | binary | acks | run | p50 ms | p99 ms | p99.9 ms | max ms | rtt max ms | "
            "msg/s | CPU-s/GB | runqueue ms | steal ms | load |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["runs"]:
        rate = r.get("msgs_per_s", r.get("achieved_rate", 0))
        rows.append(f"| {r['mode']} | {r['binary']} | {r['acks']} | {r['run']} | "
                    f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['p999_ms']:.2f} | "
                    f"{r['max_ms']:.2f} | {r.get('rtt_max_ms', float('nan')):.1f} | {rate:,.0f} | "
                    f"{r.get('cpu_s_per_GB', float('nan')):.2f} | "
                    f"{r['broker_runqueue_wait_s'] * 1e3:.0f} | {steal_text(r)} | "
                    f"{r['loadavg']:.1f} |")
    rows += ["", "| mode | binary | acks | runs | max of max ms | runs with max > 20 ms | "
             "median p99 ms | worst p99.9 ms | median CPU-s/GB | quiet runs | their max of max ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    groups = {}
    for r in res["runs"]:
        groups.setdefault((r["mode"], r["binary"], r["acks"]), []).append(r)
    for (mode, label, acks), rs in groups.items():
        cpu = sorted(r["cpu_s_per_GB"] for r in rs if "cpu_s_per_GB" in r)
        p99 = sorted(r["p99_ms"] for r in rs)
        quiet = [r for r in rs if quiet_run(r, res)]
        rows.append(f"| {mode} | {label} | {acks} | {len(rs)} | {max(r['max_ms'] for r in rs):.2f} | "
                    f"{sum(r['max_ms'] > 20 for r in rs)} | {percentile(p99, 0.5):.2f} | "
                    f"{max(r['p999_ms'] for r in rs):.2f} | "
                    f"{percentile(cpu, 0.5) if cpu else float('nan'):.2f} | {len(quiet)} | "
                    f"{max((r['max_ms'] for r in quiet), default=float('nan')):.2f} |")
    m = res["machine"]
    rows.append(f"\nMachine: {m['nproc']} CPUs, {m['cpu_model']}, kernel {m['kernel']}, {m['date']}, "
                f"loadavg {m['loadavg_start']} → {m.get('loadavg_end', '?')}")
    return "\n".join(rows)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker-bin", action="append", metavar="[LABEL=]PATH",
                    help="broker binary; repeat for an A/B run (runs alternate between them)")
    ap.add_argument("--attach", metavar="BOOTSTRAP,PID",
                    help="use a running broker on 127.0.0.1 instead of starting one")
    ap.add_argument("--data-dir", default="/tmp/tributary-tail")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--acks", type=lambda s: s.split(","), default=["1", "all"])
    ap.add_argument("--linger-ms", type=float, default=None,
                    help="full-speed producer's linger.ms (default: librdkafka's, 5)")
    ap.add_argument("--paced-runs", type=int, default=3)
    ap.add_argument("--paced-rate", type=float, default=1000.0)
    ap.add_argument("--paced-seconds", type=float, default=20.0)
    ap.add_argument("--paced-client", action="append", choices=["librdkafka", "raw"],
                    help="who sends the paced messages (repeatable; default librdkafka)")
    ap.add_argument("--slow-log-ms", type=int, default=20,
                    help="request.slow.log.ms of the brokers started (their log: <data-dir>/<label>.log)")
    ap.add_argument("--broker-override", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--quiet-runqueue", type=float, default=0.1,
                    help="the summary's 'quiet runs': broker run-queue wait below this share of "
                         "the run's wall time")
    ap.add_argument("--quiet-steal-ms", type=float, default=10.0,
                    help="... and the hypervisor's steal over the run at most this (10 ms: one "
                         "/proc/stat tick)")
    ap.add_argument("--broker-cpus", type=cpu_list, default=None, metavar="N,M",
                    help="pin the brokers' threads to these CPUs (e.g. 1)")
    ap.add_argument("--client-cpus", type=cpu_list, default=None, metavar="N,M",
                    help="pin this client's threads to these CPUs (e.g. 0)")
    ap.add_argument("--out", default="tail-results.json")
    args = ap.parse_args(argv)
    if args.attach and not args.attach.startswith("127.0.0.1:"):
        ap.error("--attach must be a 127.0.0.1 address")
    if not args.attach and not args.broker_bin:
        args.broker_bin = [os.path.join(os.path.dirname(__file__), "..", "..",
                                        "target", "release", "broker")]
    return args


if __name__ == "__main__":
    a = parse_args()
    result = run(a)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print(markdown(result))
    sys.exit(0)
