"""The history checker: finds, per partition, the anomaly classes of Jepsen's Kafka checker in a
history written by `workload.py` (or built by hand in tests).

It owns the definitions of the classes (below, and in README.md) and the counts. It is pure: it
reads ops and returns a `Report`; formatting and the exit code are in `report.py` and `check.py`.
It does not judge liveness (a run that acknowledged nothing has no violations) and it trusts the
history's timestamps and index order as the real-time order.

Classes (a *read* is a `poll ok` of any process, the final reader included; an *observation* of
partition+offset is a read or a `send ok` that names an offset):

- `lost`: a value known to be written - acknowledged by a `send ok`, or read by a consumer other
  than the final reader (and attempted, and not failed) - that is missing from the log: if the
  final read of its partition completed, the value is absent from it (unless its offset is below
  the log start the final read began at, i.e. deleted by retention); otherwise nobody read it
  although some read on that partition saw a higher offset than its acknowledged one. In an
  acks=1 run, a lost value that was only acknowledged (no consumer had read it) is reported as
  `lost_acks1`, which is allowed (a leader may fail before followers copy an acks=1 write).
- `duplicate`: one value observed at two or more distinct partition+offset positions.
- `inconsistent_offset`: two or more distinct values observed at one partition+offset.
- `nonmonotonic_send`: one producer's acknowledged writes to a partition, in the order it sent
  them (its sequence order), where an offset is not greater than the previous one.
- `nonmonotonic_poll`: one consumer's successive reads of a partition within one assignment
  (no assign/revoke of that partition in between) where an offset is not greater than the
  previous one.
- `poll_skip`: within one assignment, a consumer's next read of a partition jumped over offsets
  that some read (by anyone) showed to hold messages; for the first read after an assign with a
  known start (an offset, or "earliest" = the lowest offset anyone read there), the offsets from
  the start up to that read count too.
- `unexpected_read`: a read value that no producer attempted, or whose send definitely failed.
- `commit_backwards`: a group's committed offset for a partition acknowledged (`commit ok`)
  lower than one acknowledged before that commit was invoked.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Optional

from history import EARLIEST, Op

VIOLATIONS = ("lost", "duplicate", "inconsistent_offset", "nonmonotonic_send", "nonmonotonic_poll",
              "poll_skip", "unexpected_read", "commit_backwards")
ALLOWED = ("lost_acks1",)
LABELS = {
    "lost": "lost writes",
    "duplicate": "duplicates",
    "inconsistent_offset": "inconsistent offsets",
    "nonmonotonic_send": "nonmonotonic send",
    "nonmonotonic_poll": "nonmonotonic poll",
    "poll_skip": "poll skip",
    "unexpected_read": "unexpected reads",
    "commit_backwards": "commit went backwards",
    "lost_acks1": "lost (acks=1, allowed on leader failure)",
}
MAX_LISTED = 20
"""Offsets listed in one poll_skip anomaly; the total is always given."""


@dataclass
class Anomaly:
    """One finding: its class, the partition it concerns and JSON-able details."""

    kind: str
    partition: Optional[int]
    detail: dict

    def to_json(self) -> dict:
        return {"kind": self.kind, "partition": self.partition, **self.detail}


@dataclass
class Report:
    """What `check` found. `violations` excludes the allowed classes."""

    meta: dict
    counts: dict
    anomalies: list = field(default_factory=list)

    @property
    def violations(self) -> list:
        return [a for a in self.anomalies if a.kind in VIOLATIONS]

    @property
    def valid(self) -> bool:
        return not self.violations

    def by_kind(self) -> dict:
        """Class -> anomalies, with every class present (empty lists for none)."""
        out = {k: [] for k in VIOLATIONS + ALLOWED}
        for a in self.anomalies:
            out[a.kind].append(a)
        return out

    def per_partition(self) -> dict:
        """Partition -> class -> count, for the classes that occur there."""
        out: dict = defaultdict(lambda: defaultdict(int))
        for a in self.anomalies:
            out[a.partition][a.kind] += 1
        return {p: dict(c) for p, c in sorted(out.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))}

    def to_json(self) -> dict:
        return {
            "valid": self.valid,
            "meta": self.meta,
            "counts": self.counts,
            "totals": {k: len(v) for k, v in self.by_kind().items()},
            "per_partition": {str(p): c for p, c in self.per_partition().items()},
            "anomalies": {k: [a.to_json() for a in v] for k, v in self.by_kind().items()},
        }


@dataclass
class Index:
    """The history regrouped for the checks. Built once by `index`."""

    ops: list
    invokes: dict = field(default_factory=dict)       # value -> send invoke
    outcomes: dict = field(default_factory=dict)      # value -> send ok/fail/info
    reads: list = field(default_factory=list)         # poll ok ops
    reads_by_value: dict = field(default_factory=lambda: defaultdict(list))
    read_offsets: dict = field(default_factory=lambda: defaultdict(set))  # partition -> offsets
    final: dict = field(default_factory=dict)         # partition -> last final op
    final_values: dict = field(default_factory=lambda: defaultdict(set))  # partition -> values

    def acked(self) -> dict:
        """value -> send ok op."""
        return {v: op for v, op in self.outcomes.items() if op.type == "ok"}

    def sorted_read_offsets(self, partition: int) -> list:
        return sorted(self.read_offsets.get(partition, ()))


def index(ops: list) -> Index:
    """Regroups ops (in index order) for the checks."""
    ix = Index(ops=sorted(ops, key=lambda o: o.index))
    for op in ix.ops:
        if op.f == "send":
            (ix.invokes if op.type == "invoke" else ix.outcomes)[op.value] = op
        elif op.f == "poll" and op.type == "ok":
            ix.reads.append(op)
            ix.reads_by_value[op.value].append(op)
            ix.read_offsets[op.partition].add(op.offset)
        elif op.f == "final":
            ix.final[op.partition] = op
    for p, fin in ix.final.items():
        ix.final_values[p] = {r.value for r in ix.reads if r.process == fin.process and r.partition == p}
    return ix


def _final_processes(ix: Index) -> set:
    return {fin.process for fin in ix.final.values()}


def find_lost(ix: Index, acks_one: bool) -> list:
    """`lost` and `lost_acks1` (see the module docs)."""
    finals = _final_processes(ix)
    known: dict = {}  # value -> (partition, offset, acknowledged)
    for value, op in ix.acked().items():
        known[value] = (op.partition, op.offset, True)
    for r in ix.reads:
        outcome = ix.outcomes.get(r.value)
        attempted_ok = r.value in ix.invokes and (outcome is None or outcome.type != "fail")
        if r.process not in finals and attempted_ok and r.value not in known:
            known[r.value] = (r.partition, r.offset, False)
    max_read = {p: max(offsets) for p, offsets in ix.read_offsets.items() if offsets}
    out = []
    for value, (p, offset, acknowledged) in known.items():
        reason = _loss_reason(ix, value, p, offset, max_read.get(p))
        if reason is None:
            continue
        seen_by = sorted({r.process for r in ix.reads_by_value.get(value, ()) if r.process not in finals})
        kind = "lost_acks1" if acks_one and not seen_by else "lost"
        out.append(Anomaly(kind, p, {"value": value, "offset": offset, "acknowledged": acknowledged,
                                     "read_by": seen_by, "reason": reason}))
    return out


def _loss_reason(ix: Index, value, p, offset, max_read) -> Optional[str]:
    """Why `value`, known written at p/offset, is lost, or None when it is not."""
    fin = ix.final.get(p)
    if fin is not None and fin.type == "ok":
        if offset is not None and fin.start is not None and offset < fin.start:
            return None  # below the log start: removed by retention, not lost
        if value in ix.final_values[p]:
            return None
        return f"absent from the final read of offsets {fin.start}..{fin.offset}"
    if value in ix.reads_by_value or offset is None or max_read is None or max_read <= offset:
        return None
    return f"never read although offset {max_read} was read"


def _positions(ix: Index) -> dict:
    """value -> {(partition, offset)} from acknowledgements and reads."""
    pos: dict = defaultdict(set)
    for value, op in ix.acked().items():
        if op.offset is not None and op.offset >= 0:
            pos[value].add((op.partition, op.offset))
    for r in ix.reads:
        pos[r.value].add((r.partition, r.offset))
    return pos


def find_duplicates(ix: Index) -> list:
    """`duplicate`: a value observed at more than one partition+offset."""
    out = []
    for value, where in _positions(ix).items():
        if len(where) > 1:
            where = sorted(where)
            out.append(Anomaly("duplicate", where[0][0], {"value": value, "positions": [list(w) for w in where]}))
    return out


def find_inconsistent(ix: Index) -> list:
    """`inconsistent_offset`: more than one value observed at one partition+offset."""
    at: dict = defaultdict(set)
    for value, where in _positions(ix).items():
        for pos in where:
            at[pos].add(value)
    return [Anomaly("inconsistent_offset", p, {"offset": o, "values": sorted(map(str, vs))})
            for (p, o), vs in sorted(at.items()) if len(vs) > 1]


def find_nonmonotonic_send(ix: Index) -> list:
    """`nonmonotonic_send`: per producer and partition, acknowledged offsets in send order."""
    acks: dict = defaultdict(list)  # (process, partition) -> [(invoke index, value, offset)]
    for value, op in ix.acked().items():
        inv = ix.invokes.get(value)
        if inv is not None and op.offset is not None:
            acks[(op.process, op.partition)].append((inv.index, value, op.offset))
    out = []
    for (process, p), items in sorted(acks.items()):
        items.sort()
        for (_, v1, o1), (_, v2, o2) in zip(items, items[1:]):
            if o2 <= o1:
                out.append(Anomaly("nonmonotonic_send", p, {"process": process, "values": [v1, v2],
                                                            "offsets": [o1, o2]}))
    return out


@dataclass
class _Segment:
    """One consumer's uninterrupted assignment of one partition."""

    start: object  # an offset, EARLIEST or None (unknown)
    last: Optional[int] = None


def find_poll_anomalies(ix: Index) -> list:
    """`nonmonotonic_poll` and `poll_skip`, walking each consumer's ops in order."""
    lowest = {p: min(offs) for p, offs in ix.read_offsets.items() if offs}
    present = {p: ix.sorted_read_offsets(p) for p in ix.read_offsets}
    segments: dict = defaultdict(dict)  # process -> partition -> _Segment
    out = []
    for op in ix.ops:
        if op.type != "ok":
            continue
        mine = segments[op.process]
        if op.f == "assign":
            mine.clear()
            mine.update({p: _Segment(start) for p, start in (op.offsets or {}).items()})
        elif op.f == "revoke":
            for p in op.partitions or ():
                mine.pop(p, None)
        elif op.f == "poll":
            seg = mine.setdefault(op.partition, _Segment(None))
            out.extend(_check_poll(op, seg, present.get(op.partition, []), lowest.get(op.partition)))
            seg.last = op.offset
    return out


def _check_poll(op: Op, seg: _Segment, present: list, lowest: Optional[int]) -> list:
    """Checks one read against the previous read (or the start) of its segment."""
    p, o = op.partition, op.offset
    if seg.last is not None and o <= seg.last:
        return [Anomaly("nonmonotonic_poll", p, {"process": op.process, "offsets": [seg.last, o],
                                                 "value": op.value})]
    if seg.last is not None:
        lo = seg.last + 1
    elif seg.start == EARLIEST:
        lo = lowest
    else:
        lo = seg.start  # an offset or None
    if lo is None or lo >= o:
        return []
    skipped = present[bisect_left(present, lo):bisect_left(present, o)]
    if not skipped:
        return []
    return [Anomaly("poll_skip", p, {"process": op.process, "from": lo, "to": o,
                                     "skipped": skipped[:MAX_LISTED], "skipped_count": len(skipped)})]


def find_unexpected(ix: Index) -> list:
    """`unexpected_read`: read values never attempted, or whose send definitely failed."""
    out = []
    for value, reads in ix.reads_by_value.items():
        outcome = ix.outcomes.get(value)
        if value not in ix.invokes:
            reason = "never attempted"
        elif outcome is not None and outcome.type == "fail":
            reason = f"send failed: {outcome.error}"
        else:
            continue
        out.append(Anomaly("unexpected_read", reads[0].partition, {
            "value": value, "reason": reason,
            "reads": [[r.process, r.partition, r.offset] for r in reads]}))
    return out


def find_commit_backwards(ix: Index) -> list:
    """`commit_backwards`: per group+partition, an acknowledged commit below the highest commit
    acknowledged before it was invoked (commits overlapping in time are not ordered)."""
    highest: dict = {}   # (group, partition) -> (offset, committing op)
    before: dict = {}    # process -> snapshot of `highest` at its pending commit's invoke
    out = []
    for op in ix.ops:
        if op.f != "commit":
            continue
        if op.type == "invoke":
            before[op.process] = dict(highest)
            continue
        snapshot = before.pop(op.process, {})
        if op.type != "ok":
            continue
        for p, offset in sorted((op.offsets or {}).items()):
            prev = snapshot.get((op.group, p))
            if prev is not None and offset < prev[0]:
                out.append(Anomaly("commit_backwards", p, {
                    "group": op.group, "offsets": [prev[0], offset],
                    "processes": [prev[1].process, op.process], "indexes": [prev[1].index, op.index]}))
            cur = highest.get((op.group, p))
            if cur is None or offset > cur[0]:
                highest[(op.group, p)] = (offset, op)
    return out


def count(ix: Index, partitions: int) -> dict:
    """Totals over the history: sends by outcome, reads, commits and final-read coverage."""
    outcomes = [op.type for op in ix.outcomes.values()]
    acked = ix.acked()
    completed = sum(1 for v in ix.invokes if v in ix.outcomes)
    return {
        "attempted": len(ix.invokes),
        "acknowledged": outcomes.count("ok"),
        "failed": outcomes.count("fail"),
        "indeterminate": outcomes.count("info") + len(ix.invokes) - completed,
        "read": len(ix.reads_by_value),
        "polls": len(ix.reads),
        "acknowledged_unread": sum(1 for v in acked if v not in ix.reads_by_value),
        "commits_ok": sum(1 for op in ix.ops if op.f == "commit" and op.type == "ok"),
        "partitions": partitions,
        "final_read_complete": sum(1 for op in ix.final.values() if op.type == "ok"),
    }


def check(ops: list, meta: Optional[dict] = None) -> Report:
    """Runs every check over `ops`. `meta["acks"]` of "1" makes acks=1 losses allowed."""
    meta = dict(meta or {})
    ix = index(ops)
    partitions = meta.get("partitions") or len({op.partition for op in ix.ops if op.partition is not None})
    acks_one = str(meta.get("acks", "all")) == "1"
    anomalies = (find_lost(ix, acks_one) + find_duplicates(ix) + find_inconsistent(ix)
                 + find_nonmonotonic_send(ix) + find_poll_anomalies(ix) + find_unexpected(ix)
                 + find_commit_backwards(ix))
    return Report(meta=meta, counts=count(ix, partitions), anomalies=anomalies)
