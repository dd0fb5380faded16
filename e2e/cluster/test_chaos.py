"""The random fault schedule tool (chaos.py): schedules are reproducible from their seed and use
only the faults the hosts can apply; a short run on loopback applies its faults, heals them, and
writes a valid report and its plot."""

import json
import os

import chaos


def test_a_schedule_is_a_function_of_its_seed():
    a = chaos.make_schedule(7, 50, "docker")
    assert a == chaos.make_schedule(7, 50, "docker")
    assert a != chaos.make_schedule(8, 50, "docker")
    assert len(a) == 50 and {f["kind"] for f in a} == set(chaos.PROCESS_KINDS + chaos.NETWORK_KINDS)
    assert all(2.0 <= f["hold"] <= 8.0 and 1.0 <= f["gap"] <= 4.0 for f in a)
    loop = chaos.make_schedule(7, 50, "loopback")
    assert {f["kind"] for f in loop} == set(chaos.PROCESS_KINDS), "no network faults without own addresses"


def test_a_short_run_on_loopback_reports_its_faults_and_the_checker_verdict(tmp_path):
    out = str(tmp_path / "run")
    rc = chaos.main(["--faults", "3", "--seed", "3", "--hold", "1", "2", "--gap", "1", "1.5", "--out", out])
    rep = json.load(open(os.path.join(out, "report.json")))
    assert rc == 0 and rep["valid"], rep["checker"]
    assert rep["faults_applied"] == 3, rep["faults"]
    assert all(f["healed"] >= f["applied"] for f in rep["faults"])
    assert rep["faults"][-1]["healed"] < len(rep["per_second"]) - 1, "producers ran until the last fault was healed"
    assert rep["counts"]["acknowledged"] > 100 and rep["counts"]["acknowledged_unread"] == 0
    assert sum(s["acknowledged"] for s in rep["per_second"]) == rep["counts"]["acknowledged"]
    assert os.path.getsize(os.path.join(out, "report.png")) > 10_000
    assert json.load(open(os.path.join(out, "schedule.json")))["schedule"] == chaos.make_schedule(
        3, 3, "loopback", (1, 2), (1, 1.5))
