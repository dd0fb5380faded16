"""An append-only, thread-safe record of what the workload's clients did and saw.

A history is the checker's only input. It owns the operation record (`Op`), the order of
operations (the index assigned under one lock, which is also the real-time order) and the JSON
lines format. It does not interpret operations: that is `checker.py`.

Operation vocabulary (`Op.f`) and the `type`s each one uses:

- `send`: `invoke` (partition, key, value) when the producer is asked to write; then exactly one
  completion for the same value: `ok` (offset, partition as acknowledged), `fail` (definitely not
  written) or `info` (indeterminate: may or may not have been written).
- `poll`: `ok` for one message a consumer received (partition, offset, key, value); `info` for a
  consumer error (error text, partition when the client names one).
- `commit`: `invoke` with `offsets` {partition: next offset to read}, then `ok`/`fail`/`info`.
- `subscribe`: `ok` when a group consumer subscribed (`group`).
- `assign`: `ok` when a consumer starts reading partitions; `offsets` {partition: start} where
  the start is an offset, `"earliest"` (the beginning of the log) or None (unknown). An assign
  replaces the process's previous assignment.
- `revoke`: `ok` when partitions are taken away (`partitions`).
- `final`: `ok` per partition when the final read reached the end offset (`offset` = end,
  `start` = the log start it began at); `info` when it did not (`offset` = how far it got).

Values are unique per write: "p<producer>-<seq>".
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from dataclasses import dataclass
from typing import IO, Iterable, Optional

TYPES = ("invoke", "ok", "fail", "info")
KINDS = ("send", "poll", "commit", "subscribe", "assign", "revoke", "final")

EARLIEST = "earliest"
"""Assign start meaning "the beginning of the log", whatever its first offset is."""


@dataclass
class Op:
    """One operation event. `index` and the timestamps are set by `History.append`."""

    process: str
    type: str
    f: str
    index: int = -1
    partition: Optional[int] = None
    key: Optional[str] = None
    value: Optional[str] = None
    offset: Optional[int] = None
    start: Optional[int] = None
    offsets: Optional[dict] = None
    partitions: Optional[list] = None
    group: Optional[str] = None
    error: Optional[str] = None
    time_ns: int = 0
    wall: float = 0.0

    def to_json(self) -> dict:
        """The op as a JSON object; fields that are None are left out."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, obj: dict) -> "Op":
        """Inverse of `to_json`; JSON object keys of `offsets` become ints again."""
        obj = dict(obj)
        unknown = set(obj) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown op fields {sorted(unknown)}")
        if obj.get("offsets") is not None:
            obj["offsets"] = {int(p): o for p, o in obj["offsets"].items()}
        return cls(**obj)


class History:
    """Operations in the order they happened, plus run metadata (`meta`: acks, topic, ...).

    `append` is safe from any thread. After `open_sink`, every op is also written to the sink as
    one JSON line as soon as it is appended (and flushed), so a run that dies mid-way still leaves
    a readable prefix; `meta` is written first.
    """

    def __init__(self, meta: Optional[dict] = None):
        self.meta = dict(meta or {})
        self._lock = threading.Lock()  # guards _ops, _sink and _closed
        self._ops: list = []
        self._sink: Optional[IO[str]] = None
        self._closed = False

    def open_sink(self, path: str) -> None:
        """Starts streaming to `path` (truncated), writing `meta` and the ops so far."""
        with self._lock:
            self._sink = open(path, "w", encoding="utf-8")
            self._sink.write(json.dumps({"meta": self.meta}) + "\n")
            for op in self._ops:
                self._sink.write(json.dumps(op.to_json()) + "\n")
            self._sink.flush()

    def close(self) -> None:
        """Seals the history: later appends are not recorded (the op is still returned), and the
        sink, if any, is closed. For the runner, so that a worker abandoned while blocked in a
        client call cannot add operations after the final read."""
        with self._lock:
            self._closed = True
            if self._sink:
                self._sink.close()
                self._sink = None

    def append(self, process: str, type: str, f: str, **fields) -> Op:
        """Records one op, giving it the next index and the current monotonic and wall times."""
        if type not in TYPES or f not in KINDS:
            raise ValueError(f"unknown op type {type!r} or kind {f!r}")
        op = Op(process=process, type=type, f=f, **fields)
        with self._lock:
            if self._closed:
                return op
            op.index = len(self._ops)
            op.time_ns = time.monotonic_ns()
            op.wall = time.time()
            self._ops.append(op)
            if self._sink:
                self._sink.write(json.dumps(op.to_json()) + "\n")
                self._sink.flush()
        return op

    def invoke(self, process: str, f: str, **fields) -> Op:
        return self.append(process, "invoke", f, **fields)

    def ok(self, process: str, f: str, **fields) -> Op:
        return self.append(process, "ok", f, **fields)

    def fail(self, process: str, f: str, **fields) -> Op:
        return self.append(process, "fail", f, **fields)

    def info(self, process: str, f: str, **fields) -> Op:
        return self.append(process, "info", f, **fields)

    def ops(self) -> list[Op]:
        """A snapshot of the ops appended so far, in index order."""
        with self._lock:
            return list(self._ops)

    def dump(self, fp: IO[str]) -> None:
        """Writes `meta` then every op as JSON lines."""
        fp.write(json.dumps({"meta": self.meta}) + "\n")
        for op in self.ops():
            fp.write(json.dumps(op.to_json()) + "\n")

    def write(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as fp:
            self.dump(fp)


def parse_lines(lines: Iterable[str]) -> tuple[dict, list[Op]]:
    """Reads JSON lines back into (meta, ops). A truncated last line (a run killed mid-write) is
    ignored; any other malformed line is an error."""
    meta, ops = {}, []
    lines = [ln for ln in lines if ln.strip()]
    for i, line in enumerate(lines):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise
        if "meta" in obj:
            meta = obj["meta"]
        else:
            ops.append(Op.from_json(obj))
    return meta, ops


def load(path: str) -> tuple[dict, list[Op]]:
    """Reads a history file written by `History.write` or a streaming sink."""
    with open(path, encoding="utf-8") as fp:
        return parse_lines(fp)
