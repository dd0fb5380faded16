"""The workload against one real broker, in both consumer modes: with no faults the checker finds
no violations, every send is acknowledged, and every acknowledged message is read - by the final
read and by the consumers themselves (each consumer in assign mode; the group as a whole in group
mode, which also commits and rebalances mid-run). Assign mode runs through the library API, group
mode through the CLI entry point that run.py calls."""

import json
import uuid

import history
import report
import workload
from checker import check

DURATION_S = 9
PARTITIONS = 3


def values_read(ops, process):
    return {op.value for op in ops if op.f == "poll" and op.type == "ok" and op.process == process}


def assert_valid_and_complete(ops, meta):
    """Checker verdict and counts shared by both modes; returns the acknowledged values."""
    result = check(ops, meta)
    text = report.summary(result)
    print(text)
    assert result.valid, text
    c = result.counts
    assert c["acknowledged"] > 0 and c["acknowledged"] == c["attempted"], text
    assert c["acknowledged_unread"] == 0 and c["final_read_complete"] == PARTITIONS, text
    acked = {op.value for op in ops if op.f == "send" and op.type == "ok"}
    assert {op.partition for op in ops if op.f == "send" and op.type == "ok"} == set(range(PARTITIONS))
    assert acked <= values_read(ops, "final")
    return acked, c


def test_assign_mode_run_is_valid_and_each_consumer_reads_every_acknowledged_message(broker, tmp_path):
    cfg = workload.WorkloadConfig(
        bootstrap=broker.bootstrap, topic=f"wl-assign-{uuid.uuid4().hex[:8]}", partitions=PARTITIONS,
        producers=2, consumers=2, consumer_mode="assign", duration=DURATION_S, rate=150,
        drain_timeout=10, final_read_timeout=15)
    h = workload.run(cfg, out_dir=str(tmp_path))
    ops = h.ops()
    acked, _ = assert_valid_and_complete(ops, h.meta)
    for process in ("c0", "c1"):
        assert acked <= values_read(ops, process), f"{process} missed acknowledged messages"
    assert history.load(str(tmp_path / "history.jsonl")) == (h.meta, ops)


def test_group_mode_cli_run_is_valid_and_the_group_reads_every_acknowledged_message(broker, tmp_path, capsys):
    code = workload.main([
        "--bootstrap", broker.bootstrap, "--topic", f"wl-group-{uuid.uuid4().hex[:8]}",
        "--partitions", str(PARTITIONS), "--producers", "2", "--consumers", "2", "--duration", str(DURATION_S),
        "--rate", "150", "--acks", "all", "--consumer-mode", "group", "--consumer-stagger", "3",
        "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().out
    assert "VALID: no violations" in capsys.readouterr().out
    assert json.loads((tmp_path / "report.json").read_text())["valid"] is True
    meta, ops = history.load(str(tmp_path / "history.jsonl"))
    acked, counts = assert_valid_and_complete(ops, meta)
    assert acked <= values_read(ops, "c0") | values_read(ops, "c1"), "the group missed messages"
    assert counts["commits_ok"] > 0
    owners = {op.process for op in ops if op.f == "assign" and op.offsets and op.process != "final"}
    assert owners == {"c0", "c1"}, "both members should have owned partitions"
    # c1 joined 3 s late: c0 gave partitions up mid-run and the owners resumed from commits
    last_send = max(op.index for op in ops if op.f == "send")
    assert any(op.f == "revoke" and op.process == "c0" and op.index < last_send for op in ops)
    resumed = [o for op in ops if op.f == "assign" and op.process != "final"
               for o in (op.offsets or {}).values() if isinstance(o, int) and o > 0]
    assert resumed, "no assignment resumed from a committed offset"
