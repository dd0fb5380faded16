"""Random fault schedules against a real cluster under the workload, reproducible from a seed.

    python e2e/cluster/chaos.py --faults 100 --seed 7 --hosts docker --out /tmp/chaos-7

A cluster of 3 controllers and 3 brokers (`--hosts` loopback, netns or docker: see harness.py)
runs the workload of e2e/workload (idempotent acks=all producers, RF 3, min.insync.replicas=2,
verifying consumers) while faults are applied one after another: each is drawn from the seed,
held for a drawn time, then healed (the process restarted, resumed, or the network healed),
with a drawn pause before the next. Everything is healed before the workload's final read.
The producers run until the last fault is healed (restarts take as long as they take, so a run
lasts longer than the sum of holds and gaps). The schedule is a pure function of (seed, faults,
hosts), printed and saved before the run, so a
failing run is replayed with the same command; which node is "the leader of partition 0" or
"the active controller" is resolved when the fault is applied.

Fault kinds: SIGKILL, SIGSTOP (pause) or SIGTERM of a broker or of a controller (the active one
or a named one), each followed by a restart or SIGCONT; and on netns/docker hosts network
partitions: one node isolated, the leader of partition 0 cut off the controllers (not from its
clients), and a majority/minority split of the six nodes.

Written to --out: schedule.json, history.jsonl (the workload's), report.json (faults with times,
per-second acknowledged sends, failed/indeterminate sends and p99 latency, leader changes seen
by a metadata poller, the checker's report) and report.png (acknowledged/s and p99 latency over
time with the faults shaded; needs matplotlib). Exit status 1 on any checker violation.
"""

import argparse
import json
import os
import random
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "workload"))

CONTROLLERS = (1, 2, 3)
BROKERS = (101, 102, 103)
PROCESS_KINDS = ("kill", "pause", "term")
NETWORK_KINDS = ("isolate", "leader-from-controllers", "split")
RF3 = {"min.insync.replicas": "2"}


def make_schedule(seed, faults, hosts, hold=(2.0, 8.0), gap=(1.0, 4.0)):
    """The faults of a run, a pure function of its arguments: [{kind, target, hold, gap}].
    Targets: a broker or controller id, "leader" (partition 0's leader), "active" (the active
    controller), or for a split the minority's ids."""
    rng = random.Random(seed)
    kinds = list(PROCESS_KINDS) + (list(NETWORK_KINDS) if hosts in ("netns", "docker") else [])
    out = []
    for _ in range(faults):
        kind = rng.choice(kinds)
        if kind in PROCESS_KINDS:
            target = rng.choice(["leader", "active", *BROKERS, *CONTROLLERS])
        elif kind == "isolate":
            target = rng.choice(["leader", "active", *BROKERS, *CONTROLLERS])
        elif kind == "leader-from-controllers":
            target = "leader"
        else:  # split: a minority of two, any mix of roles
            target = sorted(rng.sample([*BROKERS, *CONTROLLERS], 2))
        out.append({"kind": kind, "target": target, "hold": round(rng.uniform(*hold), 1),
                    "gap": round(rng.uniform(*gap), 1)})
    return out


def schedule_seconds(schedule):
    return sum(f["hold"] + f["gap"] for f in schedule)


class LeaderPoller(threading.Thread):
    """Polls the topic's metadata every 500 ms; records every change of a partition's leader."""

    def __init__(self, bootstrap, topic):
        super().__init__(daemon=True)
        from confluent_kafka.admin import AdminClient
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.topic, self.changes, self.last = topic, [], {}
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(0.5):
            try:
                md = self.admin.list_topics(self.topic, timeout=2).topics[self.topic]
            except Exception:  # noqa: BLE001 - a failed poll records nothing
                continue
            for p, pm in md.partitions.items():
                if pm.leader != self.last.get(p, pm.leader):
                    self.changes.append({"t": time.time(), "partition": p, "from": self.last[p], "to": pm.leader})
                self.last[p] = pm.leader


class Injector:
    """Applies and heals the faults of a schedule on a harness cluster."""

    def __init__(self, cluster, topic):
        self.c, self.topic = cluster, topic

    def leader(self):
        from clientops import leaders
        alive = ",".join(b.bootstrap for b in self.c.brokers if b.alive())
        return leaders(alive, self.topic)[0]

    def resolve(self, target):
        if target == "leader":
            return self.leader()
        if target == "active":
            return self.c.active_controller().node_id
        return target

    def apply(self, fault):
        """Applies `fault`; returns (what was done, the function that heals it)."""
        kind = fault["kind"]
        if kind == "split":
            minority = fault["target"]
            majority = [n for n in self.c.nodes if n not in minority]
            self.c.partition([minority, majority])
            return f"split {minority} | {majority}", self.c.heal
        node_id = self.resolve(fault["target"])
        n = self.c.nodes[node_id]
        if kind == "kill":
            n.kill()
            return f"SIGKILL {node_id}", lambda: restart(n)
        if kind == "term":
            n.signal(__import__("signal").SIGTERM)
            return f"SIGTERM {node_id}", lambda: (n.proc.wait(60), restart(n))
        if kind == "pause":
            n.pause()
            return f"SIGSTOP {node_id}", n.resume
        if kind == "isolate":
            self.c.isolate(node_id)
            return f"isolate {node_id}", self.c.heal
        if kind == "leader-from-controllers":
            for ctl in CONTROLLERS:
                self.c.cut(node_id, ctl, both_ways=True)
            return f"cut leader {node_id} off the controllers", self.c.heal
        raise ValueError(kind)


def restart(node):
    """Starts a stopped node again and waits (bounded) until it is ready, so that the next fault
    does not find two nodes down; a node that does not get ready in time is left starting."""
    node.start(wait_ready=False)
    try:
        node.wait_ready(30)
    except Exception as e:  # noqa: BLE001 - reported, the run goes on
        print(f"  node {node.node_id} not ready 30 s after its restart: {e}", file=sys.stderr)


def per_second(ops, t0_ns):
    """Per-second acknowledged sends, failed+indeterminate sends and p99 send latency (ms)."""
    invoked, buckets = {}, {}
    for op in ops:
        if op.f != "send":
            continue
        key = (op.process, op.value)
        if op.type == "invoke":
            invoked[key] = op.time_ns
            continue
        sec = int((op.time_ns - t0_ns) / 1e9)
        b = buckets.setdefault(sec, {"ok": 0, "errors": 0, "lat": []})
        if op.type == "ok":
            b["ok"] += 1
            if key in invoked:
                b["lat"].append((op.time_ns - invoked[key]) / 1e6)
        else:
            b["errors"] += 1
    out = []
    for sec in range(0, max(buckets, default=-1) + 1):
        b = buckets.get(sec, {"ok": 0, "errors": 0, "lat": []})
        lat = sorted(b["lat"])
        p99 = round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1) if lat else None
        out.append({"second": sec, "acknowledged": b["ok"], "errors": b["errors"], "p99_ms": p99})
    return out


def plot(path, series, faults, t0_wall, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        print(f"no plot: {e}", file=sys.stderr)
        return False
    secs = [s["second"] for s in series]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    ax1.plot(secs, [s["acknowledged"] for s in series], color="tab:blue", label="acknowledged/s")
    ax1.plot(secs, [s["errors"] for s in series], color="tab:red", label="failed or indeterminate/s")
    ax1.set_ylabel("sends per second")
    ax1.legend(loc="upper right")
    ax2.plot(secs, [s["p99_ms"] if s["p99_ms"] is not None else float("nan") for s in series], color="tab:green")
    ax2.set_ylabel("p99 send latency (ms)")
    ax2.set_yscale("log")
    ax2.set_xlabel("seconds since the workload started")
    for f in faults:
        for ax in (ax1, ax2):
            ax.axvspan(f["applied"] - t0_wall, f["healed"] - t0_wall, color="orange", alpha=0.25, lw=0)
    ax1.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faults", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hosts", choices=("loopback", "netns", "docker"), default="loopback")
    ap.add_argument("--rate", type=float, default=50.0, help="messages/s per producer (2 producers)")
    ap.add_argument("--hold", type=float, nargs=2, default=(2.0, 8.0), metavar=("MIN", "MAX"))
    ap.add_argument("--gap", type=float, nargs=2, default=(1.0, 4.0), metavar=("MIN", "MAX"))
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    import report
    import workload
    from checker import check
    from clientops import create_topic
    from harness import Cluster

    os.makedirs(args.out, exist_ok=True)
    schedule = make_schedule(args.seed, args.faults, args.hosts, tuple(args.hold), tuple(args.gap))
    with open(os.path.join(args.out, "schedule.json"), "w") as f:
        json.dump({"seed": args.seed, "faults": args.faults, "hosts": args.hosts, "schedule": schedule}, f, indent=1)
    lead, settle = 5.0, 3.0
    planned = lead + schedule_seconds(schedule) + settle
    print(f"seed {args.seed}: {len(schedule)} faults over at least {planned:.0f} s on {args.hosts} hosts",
          file=sys.stderr)

    c = Cluster(controllers=3, brokers=3, hosts=args.hosts, root=os.path.join(args.out, "cluster"),
                replica_lag_time_max_ms=3000, default_replication_factor=3)
    applied = []
    try:
        c.start(timeout=90)
        topic = f"chaos-{uuid.uuid4().hex[:8]}"
        create_topic(c.nodes[101].bootstrap, topic, 6, rf=3, config=RF3)
        poller = LeaderPoller(c.bootstrap, topic)
        poller.start()
        inj = Injector(c, topic)
        cfg = workload.WorkloadConfig(
            bootstrap=c.bootstrap, topic=topic, partitions=6, replication_factor=3, topic_config=RF3,
            create_topic=False, producers=2, consumers=2, consumer_mode="assign", duration=3 * planned + 300,
            rate=args.rate, max_messages=10_000_000, message_timeout=30, drain_timeout=40,
            final_read_timeout=60, seed=args.seed)
        start = time.time()
        schedule_done = threading.Event()

        def run_schedule():
            try:
                apply_all()
            finally:
                time.sleep(settle)
                schedule_done.set()  # the producers stop: the workload drains and reads back

        def apply_all():
            time.sleep(lead)
            for i, fault in enumerate(schedule):
                t = time.time()
                try:
                    what, heal = inj.apply(fault)
                except Exception as e:  # noqa: BLE001 - a fault that cannot be applied is reported
                    applied.append({**fault, "index": i, "what": f"not applied: {e}", "applied": t, "healed": t})
                    time.sleep(fault["gap"])
                    continue
                print(f"  {t - start:6.1f}s fault {i + 1}/{len(schedule)}: {what} for {fault['hold']} s",
                      file=sys.stderr)
                time.sleep(fault["hold"])
                heal()
                applied.append({**fault, "index": i, "what": what, "applied": t, "healed": time.time()})
                time.sleep(fault["gap"])

        injector = threading.Thread(target=run_schedule, daemon=True)
        injector.start()
        h = workload.run(cfg, out_dir=args.out, stop=schedule_done)
        injector.join(120)
        poller.done.set()
        result = check(h.ops(), h.meta)
        ops = h.ops()
        t0_ns = ops[0].time_ns if ops else 0
        t0_wall = ops[0].wall if ops else start
    finally:
        c.stop()
        c.kill_all()

    series = per_second(ops, t0_ns)
    out = {"seed": args.seed, "hosts": args.hosts, "faults_planned": len(schedule),
           "faults_applied": sum(1 for f in applied if not f["what"].startswith("not applied")),
           "faults": [{**f, "applied": round(f["applied"] - t0_wall, 1), "healed": round(f["healed"] - t0_wall, 1)}
                      for f in applied],
           "leader_changes": [{**x, "t": round(x["t"] - t0_wall, 1)} for x in poller.changes],
           "per_second": series, "checker": result.to_json(),
           "valid": result.valid, "counts": result.counts}
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(out, f, indent=1)
    title = (f"seed {args.seed}, {out['faults_applied']} faults, {args.hosts} hosts: "
             f"{'valid' if result.valid else 'VIOLATIONS'}")
    plotted = plot(os.path.join(args.out, "report.png"), series, applied, t0_wall, title)
    print(report.summary(result))
    print(f"faults applied: {out['faults_applied']}/{len(schedule)}; leader changes seen: {len(poller.changes)}; "
          f"report: {os.path.join(args.out, 'report.json')}" + (" and report.png" if plotted else ""))
    return 0 if result.valid else 1


if __name__ == "__main__":
    sys.exit(main())
