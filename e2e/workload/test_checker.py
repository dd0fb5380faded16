"""The checker on synthetic histories: a clean one has no anomalies, and each history built to
contain one anomaly class is flagged with exactly that class (and nothing else), on the right
partition. Also the JSON-lines round trip and the check.py exit codes."""

from collections import Counter

import pytest

import check
import report
from checker import check as run_checker
from history import EARLIEST, History, load


class Builder:
    """A synthetic history: two partitions; producer p0 writes p0-0..p0-4 to partition 0 at
    offsets 0..4, producer p1 writes p1-0..p1-2 to partition 1 at offsets 0..2, all acknowledged
    unless a test says otherwise. Consumers and the final read are added by each test."""

    def __init__(self, acks="all"):
        self.h = History(meta={"topic": "t", "partitions": 2, "acks": acks, "producers": 2,
                               "consumers": 1, "consumer_mode": "assign"})
        # partition -> [(offset, value)] as the log holds it, for reads
        self.log = {0: [(i, f"p0-{i}") for i in range(5)], 1: [(i, f"p1-{i}") for i in range(3)]}

    def send(self, value, partition, offset=None, outcome="ok", error=None):
        process = value.split("-")[0]
        self.h.invoke(process, "send", partition=partition, key=value, value=value)
        fields = {"offset": offset} if outcome == "ok" else {"error": error or "timed out"}
        self.h.append(process, outcome, "send", partition=partition, key=value, value=value, **fields)

    def sends(self):
        for p, entries in self.log.items():
            for o, v in entries:
                self.send(v, p, o)
        return self

    def assign(self, process, starts=None):
        self.h.ok(process, "assign", offsets=starts if starts is not None else {0: EARLIEST, 1: EARLIEST})

    def poll(self, process, partition, offset, value=None):
        value = value if value is not None else dict(self.log[partition])[offset]
        self.h.ok(process, "poll", partition=partition, offset=offset, key=value, value=value)

    def read_all(self, process, partitions=(0, 1)):
        for p in partitions:
            for o, v in self.log[p]:
                self.poll(process, p, o, v)

    def final(self, complete=(0, 1), start=None):
        """The final read of the log as `self.log` holds it, from `start` {partition: log start}
        (default 0); partitions not in `complete` end with a `final info` (the read did not
        reach the end)."""
        start = start or {0: 0, 1: 0}
        self.assign("final", start)
        for p, entries in self.log.items():
            for o, v in entries:
                if o >= start[p]:
                    self.poll("final", p, o, v)
        for p, entries in self.log.items():
            end = entries[-1][0] + 1 if entries else 0
            if p in complete:
                self.h.ok("final", "final", partition=p, start=start[p], offset=end)
            else:
                self.h.info("final", "final", partition=p, start=start[p], offset=end, error="deadline")
        return self

    def commit(self, process, offsets, group="g", outcome="ok"):
        self.h.invoke(process, "commit", group=group, offsets=offsets)
        self.h.append(process, outcome, "commit", group=group, offsets=offsets)

    def check(self):
        return run_checker(self.h.ops(), self.h.meta)


def kinds(rep):
    return Counter(a.kind for a in rep.anomalies)


def only(rep, kind, partition, n=1):
    """Asserts the report has exactly n anomalies, all of `kind` on `partition`."""
    assert kinds(rep) == {kind: n}, [a.to_json() for a in rep.anomalies]
    assert {a.partition for a in rep.anomalies} == {partition}
    return rep.anomalies


def clean():
    b = Builder().sends()
    b.assign("c0")
    b.read_all("c0")
    return b


def test_clean_history_has_no_anomalies_and_counts_everything():
    rep = clean().final().check()
    assert rep.anomalies == [] and rep.valid
    c = rep.counts
    assert (c["attempted"], c["acknowledged"], c["failed"], c["indeterminate"]) == (8, 8, 0, 0)
    assert (c["read"], c["polls"], c["acknowledged_unread"], c["final_read_complete"]) == (8, 16, 0, 2)


def test_acknowledged_write_missing_from_the_final_read_is_lost():
    b = Builder()
    b.sends()
    b.log[0].pop()  # the log then lost its tail: p0-4, acknowledged at offset 4, is gone
    b.assign("c0")
    b.read_all("c0")
    (a,) = only(b.final().check(), "lost", 0)
    assert a.detail["value"] == "p0-4" and a.detail["acknowledged"] and a.detail["offset"] == 4


def test_without_a_complete_final_read_an_unread_write_below_a_read_offset_is_lost():
    b = Builder()
    b.sends()
    hole = b.log[0].pop(2)  # nobody ever reads offset 2, but offsets 3 and 4 are read
    assert hole == (2, "p0-2")
    b.assign("c0")
    b.read_all("c0")
    b.final(complete=(1,))
    (a,) = only(b.check(), "lost", 0)
    assert a.detail["value"] == "p0-2" and "offset 4" in a.detail["reason"]


def test_a_value_a_consumer_read_that_then_vanished_is_lost_even_unacknowledged():
    b = Builder()
    b.sends()
    b.send("p0-5", 0, outcome="info")  # indeterminate, but c0 read it at offset 5
    b.assign("c0")
    b.read_all("c0")
    b.poll("c0", 0, 5, "p0-5")
    (a,) = only(b.final().check(), "lost", 0)
    assert a.detail["value"] == "p0-5" and not a.detail["acknowledged"] and a.detail["read_by"] == ["c0"]


def test_writes_below_the_log_start_of_the_final_read_were_deleted_not_lost():
    b = clean()
    b.final(start={0: 2, 1: 0})  # retention removed offsets 0 and 1 of partition 0
    assert b.check().anomalies == []


def test_indeterminate_and_failed_writes_that_never_appear_are_not_anomalies():
    b = clean()
    b.send("p0-5", 0, outcome="info")
    b.send("p0-6", 0, outcome="fail", error="MSG_SIZE_TOO_LARGE")
    rep = b.final().check()
    assert rep.anomalies == []
    assert (rep.counts["failed"], rep.counts["indeterminate"]) == (1, 1)


def test_one_value_at_two_offsets_is_a_duplicate():
    b = Builder()
    b.log[0] = [(0, "p0-0"), (1, "p0-1"), (2, "p0-2"), (3, "p0-2"), (4, "p0-3")]  # a retry written twice
    for o, v in [(0, "p0-0"), (1, "p0-1"), (2, "p0-2"), (4, "p0-3")]:
        b.send(v, 0, o)
    for o, v in b.log[1]:
        b.send(v, 1, o)
    b.assign("c0")
    b.read_all("c0")
    (a,) = only(b.final().check(), "duplicate", 0)
    assert a.detail["value"] == "p0-2" and a.detail["positions"] == [[0, 2], [0, 3]]


def test_acknowledged_offsets_going_backwards_for_one_producer_is_nonmonotonic_send():
    b = Builder()
    b.log[0] = [(0, "p0-0"), (1, "p0-1"), (2, "p0-2"), (3, "p0-4"), (4, "p0-3")]  # reordered
    for seq in range(5):
        b.send(f"p0-{seq}", 0, {0: 0, 1: 1, 2: 2, 3: 4, 4: 3}[seq])
    for o, v in b.log[1]:
        b.send(v, 1, o)
    b.assign("c0")
    b.read_all("c0")
    (a,) = only(b.final().check(), "nonmonotonic_send", 0)
    assert a.detail == {"process": "p0", "values": ["p0-3", "p0-4"], "offsets": [4, 3]}


def test_a_consumer_going_back_without_reassignment_is_nonmonotonic_poll():
    b = clean()
    b.poll("c0", 0, 1)  # back to offset 1 after 4, with no assign in between
    b.poll("c0", 0, 2)
    (a,) = only(b.final().check(), "nonmonotonic_poll", 0)
    assert a.detail["offsets"] == [4, 1] and a.detail["process"] == "c0"


def test_rereading_after_a_new_assignment_or_a_revoke_is_not_an_anomaly():
    b = clean()
    b.assign("c0")  # reassigned from the beginning: a rewind is expected
    b.read_all("c0")
    b.h.ok("c0", "revoke", partitions=[0])
    b.poll("c0", 0, 3)  # a new, unknown-start assignment of partition 0
    b.poll("c0", 0, 4)
    assert b.final().check().anomalies == []


def test_an_assign_without_a_partition_ends_that_partitions_assignment():
    b = clean()
    b.assign("c0", {1: EARLIEST})  # partition 0 taken away (eager rebalance)
    b.poll("c0", 0, 3)  # a later read of it starts a new assignment, start unknown
    assert b.final().check().anomalies == []


def test_two_values_at_one_offset_is_an_inconsistent_offset():
    b = Builder()
    b.sends()
    b.send("p1-5", 0, outcome="info")
    b.assign("c0")
    b.read_all("c0")
    b.assign("c1")  # c1 reads a diverged copy of partition 0: p1-5 at offset 3
    for o in range(5):
        b.poll("c1", 0, o, "p1-5" if o == 3 else None)
    b.log[0] = b.log[0][:3]  # the final read stops at offset 3 (deadline)
    b.final(complete=(1,))
    (a,) = only(b.check(), "inconsistent_offset", 0)
    assert a.detail == {"offset": 3, "values": ["p0-3", "p1-5"]}


def test_jumping_over_offsets_others_read_is_a_poll_skip():
    b = Builder().sends()
    b.assign("c0")
    for o in (0, 1, 3, 4):
        b.poll("c0", 0, o)
    (a,) = only(b.final().check(), "poll_skip", 0)
    assert (a.detail["from"], a.detail["to"], a.detail["skipped"]) == (2, 3, [2])


def test_a_first_read_past_the_committed_start_is_a_poll_skip():
    b = Builder().sends()
    b.assign("c0", {0: 1})  # resumes at the committed offset 1, but first reads offset 4
    b.poll("c0", 0, 4)
    (a,) = only(b.final().check(), "poll_skip", 0)
    assert a.detail["skipped"] == [1, 2, 3]


def test_a_first_read_past_the_beginning_is_a_poll_skip_but_unknown_starts_are_not():
    b = Builder().sends()
    b.assign("c0", {0: EARLIEST})
    b.poll("c0", 0, 2)
    b.assign("c1", {0: None})  # start unknown: the first read is not checked
    b.poll("c1", 0, 3)
    (a,) = only(b.final().check(), "poll_skip", 0)
    assert a.detail["process"] == "c0" and a.detail["skipped"] == [0, 1]


@pytest.mark.parametrize("how", ["never attempted", "send failed"])
def test_reading_a_value_no_producer_wrote_is_an_unexpected_read(how):
    b = clean()
    if how == "send failed":  # e.g. aborted: the client was told it was not written
        b.send("p1-3", 1, outcome="fail", error="MSG_SIZE_TOO_LARGE")
        value = "p1-3"
    else:
        value = "p7-0"
    b.log[1].append((3, value))
    b.poll("c0", 1, 3, value)
    (a,) = only(b.final().check(), "unexpected_read", 1)
    assert a.detail["value"] == value and a.detail["reason"].startswith(how)


def test_a_group_commit_going_backwards_is_flagged():
    b = clean()
    b.commit("c0", {0: 4, 1: 3})
    b.commit("c1", {0: 2, 1: 3})  # invoked after c0's commit was acknowledged
    (a,) = only(b.final().check(), "commit_backwards", 0)
    assert a.detail["offsets"] == [4, 2] and a.detail["group"] == "g"


def test_commits_that_overlap_failed_or_belong_to_other_groups_are_not_ordered():
    b = clean()
    b.h.invoke("c1", "commit", group="g", offsets={0: 2})
    b.commit("c0", {0: 4})
    b.h.ok("c1", "commit", group="g", offsets={0: 2})  # concurrent with c0's: no order
    b.commit("c1", {0: 1}, outcome="fail")
    b.commit("c2", {0: 0}, group="other")
    assert b.final().check().anomalies == []


def test_acks_1_loss_is_allowed_but_duplicates_and_read_then_lost_are_not():
    b = Builder(acks="1")
    b.sends()
    b.send("p0-5", 0, 5)  # acknowledged by the leader alone, then gone
    b.send("p1-3", 1, 3)  # acknowledged and read by c0, then gone: committed data lost
    b.assign("c0")
    b.read_all("c0")
    b.poll("c0", 1, 3, "p1-3")
    rep = b.final().check()
    assert kinds(rep) == {"lost_acks1": 1, "lost": 1}
    assert {a.kind: a.detail["value"] for a in rep.anomalies} == {"lost_acks1": "p0-5", "lost": "p1-3"}
    assert len(rep.violations) == 1

    allowed_only = Builder(acks="1").sends()
    allowed_only.send("p0-5", 0, 5)
    assert allowed_only.final().check().valid

    dup = Builder(acks="1").sends()
    dup.log[1].append((3, "p1-2"))
    assert kinds(dup.final().check()) == {"duplicate": 1}


def test_history_round_trips_through_json_lines_and_check_cli_exit_codes(tmp_path, capsys):
    good, bad = clean().final(), clean()
    bad.send("p1-3", 1, 3)
    bad.final()
    for name, b in (("good", good), ("bad", bad)):
        b.h.write(str(tmp_path / f"{name}.jsonl"))
        meta, ops = load(str(tmp_path / f"{name}.jsonl"))
        assert meta == b.h.meta and ops == b.h.ops()
    assert check.main([str(tmp_path / "good.jsonl"), "--out", str(tmp_path / "good.json")]) == 0
    assert check.main([str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "bad.json")]) == 1
    out = capsys.readouterr().out
    assert "VALID: no violations" in out and "INVALID: 1 violations" in out
    assert '"lost": [' in (tmp_path / "bad.json").read_text()
    assert check.main([str(tmp_path / "missing.jsonl")]) == 2


def test_a_history_cut_mid_line_is_still_readable(tmp_path):
    path = tmp_path / "h.jsonl"
    b = clean()
    b.h.write(str(path))
    path.write_text(path.read_text() + '{"process": "c0", "ty')
    meta, ops = load(str(path))
    assert len(ops) == len(b.h.ops())


def test_summary_names_each_class_and_the_partition():
    b = clean()
    b.poll("c0", 0, 0)
    text = report.summary(b.final().check())
    assert "nonmonotonic poll" in text and "p0:1" in text and "INVALID: 1 violations" in text
    assert len(text.splitlines()) < 40
