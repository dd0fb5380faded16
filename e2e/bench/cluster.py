"""Control-plane benchmark on a cluster of real node processes (3 controllers + 3 brokers on
loopback, default timeouts unless flags say otherwise). Not a test: a tool people run and
report (docs/benchmarks.md, "Multi-node control plane").

  failover     SIGKILL of the active controller -> first successful CreateTopics through a
               broker; median and max over --kills kills (the killed controller is restarted and
               caught up before the next kill)
  propagation  CreateTopics acknowledged -> topic visible in Metadata on every broker; one
               poller thread per broker, p50/p99/max over --topics topics
  scale        --partitions partitions (100 per topic, RF 1): idle CPU (% of one core, over
               --idle seconds) and RSS of every node; broker restart -> /readyz

Usage: python cluster.py --broker-bin target/release/broker [--only failover,propagation,scale]
"""

import argparse
import json
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))

from confluent_kafka import KafkaException  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

import harness  # noqa: E402
from procstat import cpu_seconds, status_kib  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def create(bootstrap, name, partitions=1, timeout=10):
    a = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 3000})
    a.create_topics([NewTopic(name, partitions, 1)], request_timeout=timeout)[name].result(timeout + 1)


def failover(c, kills):
    out = []
    broker = c.brokers[0]
    for i in range(kills):
        active = c.active_controller(timeout=30)
        active.kill()
        t0 = time.time()
        n = 0
        while True:
            n += 1
            try:
                create(broker.bootstrap, f"fo-{i}-{n}", timeout=5)
                break
            except KafkaException:
                if time.time() - t0 > 60:
                    raise
        took = time.time() - t0
        out.append(took)
        print(f"  kill {i + 1}: controller {active.node_id} -> CreateTopics ok after {took:.2f}s ({n} tries)",
              file=sys.stderr)
        active.start()
        target = c.active_controller(timeout=30).metrics()["tributary_metadata_applied_index"]
        harness.wait_for("rejoin", lambda: active.metrics()["tributary_metadata_applied_index"] >= target, 30)
        time.sleep(1)
    return {"kills": kills, "median_s": statistics.median(out), "max_s": max(out), "all_s": out}


def propagation(c, topics):
    seen = {b.node_id: {} for b in c.brokers}
    stop = threading.Event()

    def poll(b):
        a = AdminClient({"bootstrap.servers": b.bootstrap})
        while not stop.is_set():
            md = a.list_topics(timeout=5)
            now = time.time()
            for t in md.topics:
                seen[b.node_id].setdefault(t, now)

    threads = [threading.Thread(target=poll, args=(b,), daemon=True) for b in c.brokers]
    for t in threads:
        t.start()
    acked = {}
    for i in range(topics):
        name = f"prop-{i}"
        create(c.brokers[i % len(c.brokers)].bootstrap, name)
        acked[name] = time.time()
        time.sleep(0.02)
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join()
    lat = [max(0.0, max(seen[b][n] for b in seen) - acked[n]) * 1000 for n in acked if all(n in seen[b] for b in seen)]
    missing = topics - len(lat)
    return {"topics": topics, "missing": missing, "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99),
            "max_ms": max(lat)}


def scale(c, partitions, idle):
    per_topic = 100
    t0 = time.time()
    for i in range(partitions // per_topic):
        create(c.brokers[i % 3].bootstrap, f"scale-{i}", per_topic, timeout=60)
    created_s = time.time() - t0
    time.sleep(5)
    before = {n.node_id: cpu_seconds(n.proc.pid) for n in c.nodes.values()}
    time.sleep(idle)
    nodes = {}
    for n in c.nodes.values():
        cpu = (cpu_seconds(n.proc.pid) - before[n.node_id]) / idle * 100
        nodes[n.node_id] = {"roles": n.roles, "idle_cpu_pct": round(cpu, 2),
                            "rss_mib": round(status_kib(n.proc.pid, "VmRSS") / 1024, 1)}
        if n.is_broker:
            # Partition directories on disk, to show the partitions really exist.
            nodes[n.node_id]["partition_dirs"] = sum(
                1 for d in os.listdir(n.data_dir) if d.startswith("scale-"))
            nodes[n.node_id]["open_fds"] = len(os.listdir(f"/proc/{n.proc.pid}/fd"))
    b = c.brokers[0]
    b.stop()
    t1 = time.time()
    b.start(wait_ready=True, timeout=120)
    return {"partitions": partitions, "create_s": round(created_s, 1), "nodes": nodes,
            "broker_restart_to_ready_s": round(time.time() - t1, 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker-bin", required=True)
    ap.add_argument("--only", default="failover,propagation,scale")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--topics", type=int, default=200)
    ap.add_argument("--partitions", type=int, default=10_000)
    ap.add_argument("--idle", type=float, default=30)
    ap.add_argument("--out")
    args = ap.parse_args()
    harness.BIN = os.path.abspath(args.broker_bin)
    results = {}
    # Kafka's defaults: heartbeat 2 s, session 9 s (the harness shortens them for tests).
    defaults = {"broker_heartbeat_interval_ms": 2000, "broker_session_timeout_ms": 9000}
    for part in args.only.split(","):
        c = harness.Cluster(controllers=3, brokers=3, **defaults)
        try:
            c.start(timeout=120)
            print(f"{part}…", file=sys.stderr)
            if part == "failover":
                results[part] = failover(c, args.kills)
            elif part == "propagation":
                results[part] = propagation(c, args.topics)
            elif part == "scale":
                results[part] = scale(c, args.partitions, args.idle)
        finally:
            c.stop()
            c.kill_all()
        print(json.dumps(results[part], indent=1), file=sys.stderr)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
