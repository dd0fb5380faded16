"""Consumer workers and the final read. Every message a consumer receives becomes a `poll ok`
op with its partition and offset; every consumer error a `poll info`; assignments, revocations
and commits are recorded as the checker needs them to delimit "one uninterrupted assignment".

- `AssignConsumer` (`c<n>`): assigned every partition from the beginning; never commits.
- `GroupConsumer` (`c<n>`): subscribes with the run's group id (eager "range" assignment),
  commits its positions synchronously every `commit_interval` and when partitions are revoked,
  and records each assignment with the committed offset it will resume from.
- `final_read`: a fresh consumer reading every partition from its log start to the end offset
  observed when the read begins.

`Progress` lets the runner wait until consumers have caught up with the end offsets.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Optional

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from history import EARLIEST, History

BATCH = 500
POLL_TIMEOUT_S = 0.2
DEFINITE_COMMIT_FAILURES = frozenset({
    KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID, KafkaError.REBALANCE_IN_PROGRESS,
})
"""Commit errors after which the offsets are certainly not committed."""


def consumer_config(bootstrap: str, group: str, **extra) -> dict:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
        **extra,
    }


class Progress:
    """The next offset each (process, partition) has reached. Thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._next: dict = {}  # (process, partition) -> next offset after the highest read

    def advance(self, process: str, partition: int, offset: int) -> None:
        with self._lock:
            key = (process, partition)
            self._next[key] = max(self._next.get(key, 0), offset + 1)

    def caught_up(self, processes: list, end: dict, each: bool) -> bool:
        """Whether every partition's end offset is reached by every process (`each`) or by at
        least one of them."""
        with self._lock:
            reached = [[self._next.get((proc, p), 0) >= hw for proc in processes] for p, hw in end.items()]
        return all(all(r) if each else any(r) for r in reached)


class _ConsumerWorker:
    """The consume loop shared by both modes."""

    def __init__(self, n: int, cfg, history: History, stop: threading.Event, progress: Progress):
        self.process, self.n = f"c{n}", n
        self.cfg, self.history, self.stop, self.progress = cfg, history, stop, progress

    def _wait_turn(self) -> bool:
        """Consumer n starts n * `consumer_stagger` seconds late (so that a group rebalances
        mid-run); False if the run stopped meanwhile."""
        return not self.stop.wait(self.n * self.cfg.consumer_stagger)

    def _consume(self, consumer: Consumer, between=lambda: None) -> None:
        while not self.stop.is_set():
            for m in consumer.consume(BATCH, POLL_TIMEOUT_S):
                record_message(self.history, self.process, m)
                if not m.error():
                    self.progress.advance(self.process, m.partition(), m.offset())
            between()


def record_message(history: History, process: str, m) -> None:
    """A received message as `poll ok`, or a consumer error as `poll info`."""
    err = m.error()
    if err is not None:
        part = m.partition() if m.partition() is not None and m.partition() >= 0 else None
        history.info(process, "poll", partition=part, error=str(err))
        return
    history.ok(process, "poll", partition=m.partition(), offset=m.offset(),
               key=_text(m.key()), value=_text(m.value()))


def _text(b: Optional[bytes]) -> Optional[str]:
    return None if b is None else b.decode("utf-8", errors="replace")


class AssignConsumer(_ConsumerWorker):
    def run(self) -> None:
        if not self._wait_turn():
            return
        c = Consumer(consumer_config(self.cfg.bootstrap, f"{self.cfg.group}-{self.process}"))
        try:
            c.assign([TopicPartition(self.cfg.topic, p, OFFSET_BEGINNING) for p in range(self.cfg.partitions)])
            self.history.ok(self.process, "assign", offsets={p: EARLIEST for p in range(self.cfg.partitions)})
            self._consume(c)
        finally:
            c.close()


class GroupConsumer(_ConsumerWorker):
    def run(self) -> None:
        if not self._wait_turn():
            return
        c = Consumer(consumer_config(self.cfg.bootstrap, self.cfg.group, **{
            "partition.assignment.strategy": "range",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        }))
        c.subscribe([self.cfg.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                     on_lost=self._on_lost)
        self.history.ok(self.process, "subscribe", group=self.cfg.group)
        last = [time.monotonic()]

        def maybe_commit():
            if time.monotonic() - last[0] >= self.cfg.commit_interval:
                self._commit(c)
                last[0] = time.monotonic()

        try:
            self._consume(c, maybe_commit)
        finally:
            c.close()  # revokes the assignment through _on_revoke, which commits

    def _on_assign(self, c: Consumer, parts: list) -> None:
        self.history.ok(self.process, "assign", group=self.cfg.group, offsets=self._starts(c, parts))

    def _starts(self, c: Consumer, parts: list) -> dict:
        """Where each assigned partition resumes: its committed offset, EARLIEST when the group
        has none (auto.offset.reset=earliest), None when the lookup failed."""
        try:
            committed = c.committed(parts, timeout=5)
        except KafkaException:
            return {tp.partition: None for tp in parts}
        return {tp.partition: (tp.offset if tp.offset >= 0 else EARLIEST) if tp.error is None else None
                for tp in committed}

    def _on_revoke(self, c: Consumer, parts: list) -> None:
        self._commit(c)
        self.history.ok(self.process, "revoke", group=self.cfg.group, partitions=[tp.partition for tp in parts])

    def _on_lost(self, c: Consumer, parts: list) -> None:
        self.history.ok(self.process, "revoke", group=self.cfg.group,
                        partitions=[tp.partition for tp in parts], error="assignment lost")

    def _commit(self, c: Consumer) -> None:
        """Commits the current positions synchronously and records invoke + outcome."""
        try:
            positions = c.position(c.assignment())
        except KafkaException:
            return
        offsets = {tp.partition: tp.offset for tp in positions if tp.offset >= 0}
        if not offsets:
            return
        group = self.cfg.group
        self.history.invoke(self.process, "commit", group=group, offsets=offsets)
        try:
            result = c.commit(offsets=[TopicPartition(self.cfg.topic, p, o) for p, o in offsets.items()],
                              asynchronous=False)
        except KafkaException as e:
            err = e.args[0]
            kind = "fail" if err.code() in DEFINITE_COMMIT_FAILURES else "info"
            self.history.append(self.process, kind, "commit", group=group, offsets=offsets, error=str(err))
            return
        errors = [f"partition {tp.partition}: {tp.error}" for tp in result or () if tp.error]
        if errors:
            self.history.info(self.process, "commit", group=group, offsets=offsets, error="; ".join(errors))
        else:
            self.history.ok(self.process, "commit", group=group, offsets=offsets)


def end_offsets(bootstrap: str, topic: str, partitions: int, timeout: float = 10) -> dict:
    """partition -> (log start, end offset) as the partition leaders report them now. Raises
    KafkaException when a leader does not answer within `timeout` (for all partitions together)."""
    deadline = time.monotonic() + timeout
    c = Consumer(consumer_config(bootstrap, f"watermarks-{uuid.uuid4().hex[:8]}"))
    try:
        marks = {}
        for p in range(partitions):
            left = deadline - time.monotonic()
            if left <= 0:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "watermarks not read in time"))
            marks[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=left, cached=False)
        return marks
    finally:
        c.close()


def final_read(cfg, history: History, process: str = "final") -> None:
    """Reads every partition from its log start up to the end offset seen when the read begins,
    within `cfg.final_read_timeout`. Records an assign, every message, and per partition a
    `final` op: `ok` when the end was reached, `info` otherwise (with how far it got)."""
    deadline = time.monotonic() + cfg.final_read_timeout
    marks = _watermarks_until(cfg, deadline)
    if marks is None:
        for p in range(cfg.partitions):
            history.info(process, "final", partition=p, error="end offsets unavailable")
        return
    c = Consumer(consumer_config(cfg.bootstrap, f"final-{uuid.uuid4().hex[:8]}"))
    try:
        c.assign([TopicPartition(cfg.topic, p, low) for p, (low, _) in marks.items()])
        history.ok(process, "assign", offsets={p: low for p, (low, _) in marks.items()})
        reached = {p: low for p, (low, _) in marks.items()}
        while any(reached[p] < high for p, (_, high) in marks.items()) and time.monotonic() < deadline:
            for m in c.consume(BATCH, POLL_TIMEOUT_S):
                record_message(history, process, m)
                if not m.error():
                    reached[m.partition()] = max(reached[m.partition()], m.offset() + 1)
    finally:
        c.close()
    for p, (low, high) in marks.items():
        if reached[p] >= high:
            history.ok(process, "final", partition=p, start=low, offset=high)
        else:
            history.info(process, "final", partition=p, start=low, offset=reached[p],
                         error=f"reached {reached[p]} of end offset {high} before the deadline")


def _watermarks_until(cfg, deadline: float) -> Optional[dict]:
    """The watermarks, retried until `deadline`; None if no attempt succeeded."""
    while time.monotonic() < deadline:
        try:
            left = max(1.0, deadline - time.monotonic())
            return end_offsets(cfg.bootstrap, cfg.topic, cfg.partitions, timeout=left)
        except KafkaException:
            time.sleep(0.5)
    return None
