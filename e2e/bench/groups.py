#!/usr/bin/env python3
"""Consumer-group benchmark: end-to-end throughput of a 3-member group reading a 6-partition
topic (against the same 3 processes reading with assign(), no group), and the time a rebalance
takes when a 4th member joins, for the eager (range) and cooperative-sticky protocols.
A tool people run and report; not part of any test suite.

Only 127.0.0.1 is ever contacted. See README.md ("Consumer groups") and docs/benchmarks.md.

Clock: every worker stamps its events with time.time(); all processes run on one machine, so the
stamps are comparable across processes.
"""

import argparse
import json
import multiprocessing as mp
import os
import queue
import random
import shutil
import statistics
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import load
from bench import Target, log, machine, run_phase
from procstat import Broker, RssSampler, Sampler, cpu_seconds, status_kib

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CTX = mp.get_context("spawn")  # librdkafka threads do not survive fork
PARTITIONS = 6
MEMBERS = 3
SIZE = 1024
# consume() returns when it has `num` messages or after `timeout`; a short timeout bounds how
# late a worker stamps its last message (and how late rebalance callbacks are served).
POLL_TIMEOUT = 0.05


def _client_cpu():
    t = os.times()
    return t.user + t.system


# --------------------------------------------------------------------------------------------
# Workers (run in spawned processes)


def read_worker(bootstrap, topic, mode, group, parts, ends, batch, start, stop, results):
    """Reads the topic as one member of `group` (mode "subscribe": JoinGroup/SyncGroup/Heartbeat,
    enable.auto.commit=True with librdkafka's default auto.commit.interval.ms=5000, final commit
    on close) or reads `parts` from offset 0 with assign() (mode "assign": no group membership,
    no commits). Sends ("done", pid, messages) when every partition it owns is read to its end
    offset in `ends`, keeps polling (staying in the group, so an early finisher does not cause a
    rebalance) until `stop` is set, then closes and sends ("final", report)."""
    conf = {"bootstrap.servers": bootstrap, **load.CONSUMER_THROUGHPUT, "group.id": group}
    if mode == "subscribe":
        conf["enable.auto.commit"] = True
    c = Consumer(conf)
    c.list_topics(topic, timeout=10)  # connected before the clock starts
    events, owned = [], set()

    def on_assign(_c, tps):
        events.append(("assign", time.time(), sorted(tp.partition for tp in tps)))
        owned.update(tp.partition for tp in tps)

    def on_revoke(_c, tps):
        events.append(("revoke", time.time(), sorted(tp.partition for tp in tps)))
        owned.difference_update(tp.partition for tp in tps)

    results.put(("ready", os.getpid(), None))
    start.wait()
    cpu0 = _client_cpu()
    t_sub = time.time()
    if mode == "subscribe":
        c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    else:
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        owned.update(parts)
    nxt, cnt = {}, {}
    nbytes = bad = dups = gaps = 0
    t_first = t_last = None
    done = False
    deadline = time.time() + 900
    while not stop.is_set() and time.time() < deadline:
        msgs = c.consume(batch, POLL_TIMEOUT)
        if not msgs:
            continue
        now = time.time()
        if t_first is None:
            t_first = now
        for m in msgs:
            if m.error():
                bad += 1
                continue
            p, o = m.partition(), m.offset()
            e = nxt.get(p, 0)
            if o != e:
                if o < e:
                    dups += 1
                else:
                    gaps += o - e
            nxt[p] = o + 1
            cnt[p] = cnt.get(p, 0) + 1
            nbytes += len(m.value())
        t_last = now
        if not done and owned and all(nxt.get(p, 0) >= ends[p] for p in owned):
            done = True
            results.put(("done", os.getpid(), sum(cnt.values())))
    cpu = _client_cpu() - cpu0
    final_assignment = sorted(tp.partition for tp in c.assignment())
    c.close()  # with auto commit: commits the last offsets and leaves the group
    results.put(("final", os.getpid(), {
        "mode": mode, "t_subscribe": t_sub, "t_first": t_first, "t_last": t_last,
        "counts": cnt, "next_offsets": nxt, "bytes": nbytes, "errors": bad, "dups": dups,
        "gaps": gaps, "events": events, "final_assignment": final_assignment,
        "client_cpu": cpu, "finished": done}))


def member_worker(bootstrap, topic, group, strategy, heartbeat_ms, name, go, stop, results,
                  debug=None):
    """One group member for the rebalance measurement: reports ("ready"), waits for `go`, then
    ("subscribe", time before subscribe()) and every on_assign/on_revoke/on_lost callback with its
    time.time() and partitions as it happens; polls (consuming the light load) until `stop`."""
    conf = {"bootstrap.servers": bootstrap, "group.id": group,
            "partition.assignment.strategy": strategy, "auto.offset.reset": "latest"}
    if heartbeat_ms:
        conf["heartbeat.interval.ms"] = heartbeat_ms
    if debug:
        conf["debug"] = debug  # librdkafka debug contexts, logged to stderr

    def cb(kind):
        return lambda _c, tps: results.put(
            ("event", name, (time.time(), name, kind, sorted(tp.partition for tp in tps))))

    c = Consumer(conf)
    c.list_topics(topic, timeout=10)
    results.put(("ready", name, None))
    go.wait()
    t = time.time()
    c.subscribe([topic], on_assign=cb("assign"), on_revoke=cb("revoke"), on_lost=cb("lost"))
    results.put(("subscribe", name, t))
    n = 0
    while not stop.is_set():
        n += sum(1 for m in c.consume(1000, POLL_TIMEOUT) if not m.error())
    final = sorted(tp.partition for tp in c.assignment())
    c.close()
    results.put(("final", name, {"assignment": final, "messages": n}))


def paced_producer(bootstrap, topic, partitions, rate, size, stop):
    """Light background load: `rate` messages/s of `size` bytes, round-robin, until `stop`."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": False})
    payload, i, t0 = os.urandom(size), 0, time.perf_counter()
    while not stop.is_set():
        load.poll_until(p, t0 + i / rate)
        p.produce(topic, payload, partition=i % partitions)
        i += 1
    p.flush(10)


# --------------------------------------------------------------------------------------------
# Parent side


class CpuTrace(Sampler):
    """Samples a process's utime+stime with time.time() every `interval` s, so the broker's CPU
    can be taken over a window the workers report afterwards (linear interpolation)."""

    def __init__(self, pid, interval=0.02):
        super().__init__(pid, interval)
        self.samples = []

    def sample(self):
        self.samples.append((time.time(), cpu_seconds(self.pid)))
        return True

    def at(self, t):
        s = self.samples
        if t <= s[0][0]:
            return s[0][1]
        for (t0, c0), (t1, c1) in zip(s, s[1:]):
            if t0 <= t <= t1:
                return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c1
        return s[-1][1]

    def between(self, t0, t1):
        return self.at(t1) - self.at(t0)


def committed(bootstrap, group, topic, partitions):
    """The group's committed offsets (OffsetFetch only; this consumer never joins)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    c.close()
    return {tp.partition: tp.offset for tp in got}


def read_phase(target, topic, mode, group, ends, batch):
    """Runs MEMBERS read_worker processes; returns throughput and checks."""
    start, stop, results = CTX.Event(), CTX.Event(), CTX.Queue()
    total = sum(ends.values())
    split = [list(range(PARTITIONS))[i::MEMBERS] for i in range(MEMBERS)]
    procs = [CTX.Process(target=read_worker, args=(
        target.bootstrap, topic, mode, group, split[i], ends, batch, start, stop, results))
        for i in range(MEMBERS)]
    for p in procs:
        p.start()
    for _ in procs:
        assert results.get(timeout=120)[0] == "ready"
    with CpuTrace(target.pid) as trace, RssSampler(target.pid) as rss:
        start.set()
        t_start, done = time.time(), {}
        while sum(done.values()) < total and time.time() - t_start < 900:
            try:
                kind, pid, n = results.get(timeout=5)
            except queue.Empty:
                continue
            assert kind == "done", kind
            done[pid] = n
        stop.set()
        finals = []
        while len(finals) < len(procs):
            kind, _pid, payload = results.get(timeout=120)
            if kind == "final":
                finals.append(payload)
    for p in procs:
        p.join(30)
    first = min(w["t_first"] for w in finals if w["t_first"])
    last = max(w["t_last"] for w in finals if w["t_last"])
    nbytes = sum(w["bytes"] for w in finals)
    window = last - first
    cpu = trace.between(first, last)
    # Exactly once: each partition read by exactly one member, completely, without gaps or dups.
    owners = {p: [i for i, w in enumerate(finals) if w["counts"].get(p)] for p in range(PARTITIONS)}
    problems = []
    for p, o in owners.items():
        if len(o) != 1:
            problems.append(f"partition {p} read by members {o}")
        elif finals[o[0]]["counts"][p] != ends[p]:
            problems.append(f"partition {p}: {finals[o[0]]['counts'][p]} of {ends[p]}")
    got = sum(sum(w["counts"].values()) for w in finals)
    if got != total:
        problems.append(f"consumed {got} of {total}")
    for i, w in enumerate(finals):
        if w["dups"] or w["gaps"] or w["errors"]:
            problems.append(f"member {i}: {w['dups']} dups, {w['gaps']} gaps, {w['errors']} errors")
    assigned = [sorted(w["final_assignment"]) for w in finals]
    flat = [p for a in assigned for p in a]
    if sorted(flat) != list(range(PARTITIONS)):
        problems.append(f"final assignments {assigned}")
    out = {"mode": mode, "group": group, "bytes": nbytes, "messages": got,
           "window_s": window, "MB_per_s": nbytes / window / 1e6,
           "broker_cpu_s": cpu, "cpu_s_per_GB": cpu / (nbytes / 1e9),
           "client_cpu_s": sum(w["client_cpu"] for w in finals),
           "peak_rss_kib": rss.peak_kib,
           "subscribe_to_assign_s": [min((e[1] for e in w["events"] if e[0] == "assign"),
                                         default=w["t_subscribe"]) - w["t_subscribe"]
                                     for w in finals],
           "subscribe_to_first_msg_s": [w["t_first"] - w["t_subscribe"] for w in finals],
           "assignments": assigned, "owners": owners, "problems": problems,
           "members": finals}
    if mode == "subscribe":
        com = committed(target.bootstrap, group, topic, PARTITIONS)
        out["committed"] = com
        if com != ends:
            problems.append(f"committed {com} != end offsets {ends}")
    return out


def throughput(target, args):
    topic = f"groups-tput-{int(time.time())}"
    target.create_topic(topic, PARTITIONS)
    total = args.mib * (1 << 20) // SIZE
    per = [total // 2 + (i < total % 2) for i in range(2)]
    log(f"producing {args.mib} MiB of {SIZE} B messages to {topic} ({PARTITIONS} partitions)")
    prod = run_phase(target, load.produce_worker,
                     [(target.bootstrap, topic, PARTITIONS, n, SIZE, "1") for n in per])
    ends = target.end_offsets(topic, PARTITIONS)
    if sum(ends.values()) != total or any(w["n_errors"] for w in prod["workers"]):
        raise RuntimeError(f"{topic}: log has {ends}, wanted {total}")
    log(f"produced in {prod['seconds']:.1f} s; end offsets {ends}")
    runs = []
    for rep in range(args.repeat):
        # Alternate the order so neither mode always reads second.
        order = ("subscribe", "assign") if rep % 2 == 0 else ("assign", "subscribe")
        run = {"rep": rep, "order": order}
        for mode in order:
            group = f"groups-bench-{mode}-{rep}-{int(time.time() * 1000)}"
            r = read_phase(target, topic, mode, group, ends, args.batch)
            run[mode] = r
            log(f"rep {rep} {mode}: {r['MB_per_s']:.0f} MB/s over {r['window_s']:.2f} s, "
                f"{r['cpu_s_per_GB']:.2f} broker CPU-s/GB, subscribe->first "
                f"{max(r['subscribe_to_first_msg_s']):.2f} s, assignments {r['assignments']}"
                + (f", PROBLEMS {r['problems']}" if r["problems"] else ""))
        run["ratio"] = run["subscribe"]["MB_per_s"] / run["assign"]["MB_per_s"]
        runs.append(run)
    target.delete_topic(topic)
    for r in runs:
        for m in ("subscribe", "assign"):
            r[m].pop("members")  # per-message detail is large; the checks are kept
    return {"topic": topic, "messages": total, "size": SIZE, "end_offsets": ends,
            "produce_seconds": prod["seconds"], "runs": runs}


def _complete(own, members):
    flat = [p for m in members for p in own.get(m, ())]
    return (all(own.get(m) for m in members) and len(flat) == len(set(flat))
            and sorted(flat) == list(range(PARTITIONS)))


def _replay(events, members, after):
    """First time >= `after` at which every member owns a partition, none is owned twice and all
    are owned, replaying assign/revoke/lost events in time order; (time, ownership) or None."""
    own = {}
    for t, name, kind, parts in sorted(events):
        s = own.setdefault(name, set())
        if kind == "assign":
            s.update(parts)
        else:
            s.difference_update(parts)
        if t >= after and _complete(own, members):
            return t, {m: sorted(own[m]) for m in members}
    return None


def rebalance_trial(target, topic, strategy, heartbeat_ms, rep, debug=None):
    """3 members Stable, then a 4th joins; returns the timeline and checks."""
    group = f"groups-join-{strategy}-{heartbeat_ms or 'dflt'}-{rep}-{int(time.time() * 1000)}"
    names = ["m0", "m1", "m2", "m3"]
    go3, go4, stop, results = CTX.Event(), CTX.Event(), CTX.Event(), CTX.Queue()
    procs = [CTX.Process(target=member_worker, args=(
        target.bootstrap, topic, group, strategy, heartbeat_ms, n, go4 if n == "m3" else go3,
        stop, results, debug)) for n in names]
    for p in procs:
        p.start()
    events, subs, finals, ready = [], {}, {}, set()

    def pump(timeout):
        try:
            kind, name, payload = results.get(timeout=timeout)
        except queue.Empty:
            return False
        if kind == "event":
            events.append(tuple(payload))
        elif kind == "subscribe":
            subs[name] = payload
        elif kind == "ready":
            ready.add(name)
        elif kind == "final":
            finals[name] = payload
        return True

    def until(cond, timeout, what):
        deadline = time.time() + timeout
        while not cond():
            if time.time() > deadline:
                raise RuntimeError(f"{group}: timed out waiting for {what}; events {events}")
            pump(0.05)

    def quiet(seconds):
        """Pumps until no event arrived for `seconds`."""
        last = time.time()
        while time.time() - last < seconds:
            if pump(0.05):
                last = time.time()

    until(lambda: len(ready) == 4, 120, "members ready")
    go3.set()
    until(lambda: len(subs) == 3 and _replay(events, names[:3], max(subs.values())), 60,
          "3 members assigned")
    t_initial = _replay(events, names[:3], max(subs.values()))[0] - min(subs.values())
    hb = (heartbeat_ms or 3000) / 1000
    quiet(1.0)
    state = describe_state(target, group)
    # The members' heartbeats run in phase with the sync that ended the initial rebalance; a
    # fixed wait here would put the join at a fixed point of that phase (and measure a constant).
    # A uniformly random extra wait of up to one interval samples the phase.
    phase_wait = random.uniform(0, hb)
    time.sleep(phase_wait)
    n_before = len(events)
    go4.set()
    until(lambda: "m3" in subs and _replay(events, names, subs["m3"]), 120, "4 members assigned")
    t_join = subs["m3"]
    done_t, ownership = _replay(events, names, t_join)
    quiet(max(3.0, 2 * (heartbeat_ms or 3000) / 1000))
    # Changes after the split was complete (cooperative members also get empty on_assign calls
    # when a round ends without giving them anything; those are not changes).
    after = [e for e in events[n_before:] if e[0] > done_t and e[3]]
    state_after = describe_state(target, group)
    stop.set()
    until(lambda: len(finals) == 4, 60, "members closed")
    for p in procs:
        p.join(30)
    join_events = sorted(e for e in events[n_before:] if e[0] >= t_join)
    rel = [(round(t - t_join, 3), n, k, ps) for t, n, k, ps in join_events]
    revokes = [t for t, n, k, _ in join_events if k in ("revoke", "lost") and n != "m3"]
    m3_assigns = [t for t, n, k, ps in join_events if n == "m3" and k == "assign" and ps]
    final_asg = {n: finals[n]["assignment"] for n in names}
    problems = []
    if not _complete({n: set(a) for n, a in final_asg.items()}, names):
        problems.append(f"final assignments {final_asg}")
    if after:
        problems.append(f"events after completion: {after}")
    return {"strategy": strategy, "heartbeat_ms": heartbeat_ms or 3000,
            "heartbeat_set": bool(heartbeat_ms), "rep": rep, "group": group,
            "initial_join_s": t_initial, "phase_wait_s": phase_wait,
            "state_before": state, "state_after": state_after,
            "join_to_complete_s": done_t - t_join,
            "join_to_first_revoke_s": (min(revokes) - t_join) if revokes else None,
            "join_to_new_member_assigned_s": (min(m3_assigns) - t_join) if m3_assigns else None,
            "assign_callbacks": sum(1 for e in join_events if e[2] == "assign" and e[0] <= done_t),
            "ownership": ownership, "final_assignment": final_asg, "timeline": rel,
            "messages": {n: finals[n]["messages"] for n in names}, "problems": problems}


def describe_state(target, group):
    try:
        d = target.admin.describe_consumer_groups([group])[group].result(10)
        return {"state": str(d.state).split(".")[-1], "members": len(d.members)}
    except Exception as e:  # noqa: BLE001 - informational only
        return {"error": str(e)}


def rebalance(target, args):
    topic = f"groups-join-{int(time.time())}"
    target.create_topic(topic, PARTITIONS)
    stop = CTX.Event()
    prod = CTX.Process(target=paced_producer, args=(
        target.bootstrap, topic, PARTITIONS, args.load_rate, SIZE, stop))
    prod.start()
    trials = []
    try:
        for strategy in args.strategies:
            for hb in args.heartbeats:
                for rep in range(args.join_repeat or args.repeat):
                    r = rebalance_trial(target, topic, strategy, hb, rep, args.client_debug)
                    log(f"{strategy} heartbeat={r['heartbeat_ms']} rep {rep}: join -> complete "
                        f"{r['join_to_complete_s']:.3f} s (first revoke "
                        f"{r['join_to_first_revoke_s']}, new member assigned "
                        f"{r['join_to_new_member_assigned_s']}), {r['assign_callbacks']} "
                        f"assign callbacks, {r['state_before']} -> {r['state_after']}, "
                        f"{r['final_assignment']}"
                        + (f", PROBLEMS {r['problems']}" if r["problems"] else ""))
                    trials.append(r)
    finally:
        stop.set()
        prod.join(30)
    target.delete_topic(topic)
    return {"topic": topic, "load_msgs_per_s": args.load_rate, "trials": trials}


# --------------------------------------------------------------------------------------------
# Report


def _spread(xs, fmt="{:.2f}"):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    m = fmt.format(statistics.median(xs))
    return f"{m} ({fmt.format(min(xs))}–{fmt.format(max(xs))})" if len(xs) > 1 else m


def markdown(res):
    out = []
    t = res.get("throughput")
    if t:
        runs = t["runs"]
        g = [r["subscribe"] for r in runs]
        a = [r["assign"] for r in runs]
        ok = all(not x["problems"] for x in g + a)
        out += [f"Group throughput: {t['messages']:,} × {t['size']} B messages "
                f"({t['messages'] * t['size'] / 1e6:.0f} MB of payload) on {PARTITIONS} "
                f"partitions, {MEMBERS} consumer processes; median of {len(runs)} (min–max).", "",
                "| read | MB/s | msg/s | broker CPU-s/GB | client CPU-s/GB | "
                "subscribe → assigned s | subscribe → first message s | "
                "partitions per member | exactly once |",
                "|---|---|---|---|---|---|---|---|---|"]
        for name, rs in (("group, subscribe()", g), ("assign(), no group", a)):
            out.append(
                f"| {name} | {_spread([r['MB_per_s'] for r in rs], '{:.0f}')} | "
                f"{_spread([r['messages'] / r['window_s'] for r in rs], '{:,.0f}')} | "
                f"{_spread([r['cpu_s_per_GB'] for r in rs])} | "
                f"{_spread([r['client_cpu_s'] / (r['bytes'] / 1e9) for r in rs])} | "
                f"{_spread([max(r['subscribe_to_assign_s']) for r in rs])} | "
                f"{_spread([max(r['subscribe_to_first_msg_s']) for r in rs])} | "
                f"{' / '.join(str(len(x)) for x in rs[0]['assignments'])} | "
                f"{'yes' if all(not r['problems'] for r in rs) else 'NO'} |")
        out += ["", f"group / assign throughput, same run: "
                f"{_spread([r['ratio'] for r in runs])}"
                + ("" if ok else " — CHECKS FAILED, see the JSON"), ""]
    b = res.get("rebalance")
    if b:
        out += [f"Rebalance on join: 3 members Stable on a {PARTITIONS}-partition topic with "
                f"{b['load_msgs_per_s']:.0f} msg/s of background production; a 4th calls "
                f"subscribe(). Median of the repeats (min–max), seconds.", "",
                "| strategy | heartbeat.interval.ms | join → first revoke | "
                "join → new member assigned | join → all 4 assigned | assign callbacks | "
                "final split | checks |",
                "|---|---|---|---|---|---|---|---|"]
        key = lambda r: (r["strategy"], r["heartbeat_ms"])
        seen = []
        for r in b["trials"]:
            if key(r) not in seen:
                seen.append(key(r))
        for k in seen:
            rs = [r for r in b["trials"] if key(r) == k]
            split = sorted(len(v) for v in rs[0]["final_assignment"].values())
            out.append(
                f"| {k[0]} | {k[1]}{'' if rs[0]['heartbeat_set'] else ' (default)'} | "
                f"{_spread([r['join_to_first_revoke_s'] for r in rs], '{:.3f}')} | "
                f"{_spread([r['join_to_new_member_assigned_s'] for r in rs], '{:.3f}')} | "
                f"{_spread([r['join_to_complete_s'] for r in rs], '{:.3f}')} | "
                f"{_spread([r['assign_callbacks'] for r in rs], '{:.0f}')} | "
                f"{'+'.join(map(str, split))} | "
                f"{'ok' if all(not r['problems'] for r in rs) else 'FAILED'} |")
        out += ["", "3-member initial join (subscribe → all assigned, includes "
                "group.initial.rebalance.delay.ms): "
                f"{_spread([r['initial_join_s'] for r in b['trials']])} s", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------


def run(args):
    res = {"machine": machine(), "args": vars(args)}
    broker = None
    try:
        if args.attach:
            bootstrap, pid = args.attach.split(",")
            target = Target(bootstrap, int(pid))
        else:
            d = os.path.join(args.data_dir, "main")
            shutil.rmtree(d, ignore_errors=True)
            overrides = dict(x.split("=", 1) for x in
                             ["log.segment.delete.delay.ms=1000", *args.broker_override])
            broker = Broker(args.broker_bin, d, overrides=overrides)
            broker.start()
            res["broker_log"] = d.rstrip("/") + ".log"
            target = Target(broker.bootstrap, broker.pid)
        if not args.skip_throughput:
            res["throughput"] = throughput(target, args)
        if not args.skip_rebalance:
            res["rebalance"] = rebalance(target, args)
        res["rss_hwm_kib"] = status_kib(target.pid, "VmHWM")
        res["machine"]["loadavg_end"] = open("/proc/loadavg").read().strip()
        target.admin = None
    finally:
        if broker:
            res["broker_exit_code"] = broker.stop()
    return res


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker-bin", default=os.path.join(REPO, "target/release/broker"))
    ap.add_argument("--data-dir", default="/tmp/tributary-groups")
    ap.add_argument("--attach", metavar="HOST:PORT,PID",
                    help="use a running broker on 127.0.0.1 instead of starting one")
    ap.add_argument("--mib", type=int, default=512, help="payload produced for the throughput runs")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=10_000,
                    help="messages per consume() call in the throughput readers (the figures "
                         "depend on it; see docs/benchmarks.md)")
    ap.add_argument("--strategies", type=lambda s: s.split(","),
                    default=["range", "cooperative-sticky"])
    ap.add_argument("--heartbeats", type=lambda s: [int(x) for x in s.split(",")], default=[0, 500],
                    help="heartbeat.interval.ms values; 0 = not set (librdkafka default 3000)")
    ap.add_argument("--load-rate", type=float, default=200.0,
                    help="msgs/s of background production during the rebalance trials")
    ap.add_argument("--join-repeat", type=int, default=0,
                    help="trials per strategy x heartbeat (default: --repeat)")
    ap.add_argument("--client-debug", metavar="CONTEXTS",
                    help="librdkafka `debug` for the rebalance members (e.g. cgrp), to stderr")
    ap.add_argument("--broker-override", action="append", default=[], help="extra KEY=VALUE")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-rebalance", action="store_true")
    ap.add_argument("--out", default="groups-results.json")
    args = ap.parse_args(argv)
    if args.attach and not args.attach.startswith("127.0.0.1:"):
        ap.error("--attach must be a 127.0.0.1 address")
    return args


if __name__ == "__main__":
    a = parse_args()
    result = run(a)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print(markdown(result))
