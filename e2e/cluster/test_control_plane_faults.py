"""The workload (e2e/workload) against a 3+3 cluster while the control plane is hit: a broker
SIGKILLed and restarted, the active controller SIGKILLed and restarted, a broker stopped with
SIGTERM (controlled shutdown) and started again, all during the run. Replication factor 1 (all
that exists yet), so sends to a partition whose only broker is down fail or time out - that is
allowed; what the checker proves is that nothing acknowledged was lost, duplicated or reordered
and that consumers never skipped or saw phantom data."""

import os
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "workload"))

import report  # noqa: E402
import workload  # noqa: E402
from checker import check  # noqa: E402


def test_workload_survives_broker_and_controller_faults(make_cluster, tmp_path):
    c = make_cluster(controllers=3, brokers=3)
    cfg = workload.WorkloadConfig(
        bootstrap=c.bootstrap, topic=f"wl-{uuid.uuid4().hex[:8]}", partitions=6, producers=2,
        consumers=2, consumer_mode="group", duration=22, rate=100, message_timeout=8,
        drain_timeout=20, final_read_timeout=30)
    faults = []

    def inject():
        def at(t, what, fn):
            time.sleep(max(0.0, t - (time.time() - start)))
            faults.append((round(time.time() - start, 1), what))
            fn()

        victim, stopped = c.nodes[102], c.nodes[103]
        at(3, "SIGKILL broker 102", victim.kill)
        at(7, "restart broker 102", lambda: victim.start(wait_ready=True))
        active = c.active_controller()
        at(10, f"SIGKILL active controller {active.node_id}", active.kill)
        at(13, f"restart controller {active.node_id}", lambda: active.start(wait_ready=True))
        at(15, "SIGTERM broker 103", stopped.stop)
        at(17, "restart broker 103", lambda: stopped.start(wait_ready=True))

    start = time.time()
    t = threading.Thread(target=inject, daemon=True)
    t.start()
    h = workload.run(cfg, out_dir=str(tmp_path))
    t.join(60)
    result = check(h.ops(), h.meta)
    text = report.summary(result)
    print("faults:", faults)
    print(text)
    assert len(faults) == 6, faults
    assert result.valid, text
    counts = result.counts
    assert counts["acknowledged"] > 500, text
    assert counts["acknowledged_unread"] == 0, text
