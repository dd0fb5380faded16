"""The workload runner: producers and consumers against one bootstrap address for a bounded time,
then a final read, all recorded in a `History`.

Sequence of a run (`run`):
1. create the topic if asked (and wait until every partition has a leader);
2. start the consumers, then the producers;
3. after `duration` seconds stop the producers (each waits, bounded, for its delivery reports);
4. let the consumers catch up with the end offsets (at most `drain_timeout`), then stop them;
5. final read of every partition (at most `final_read_timeout`).

Every phase is bounded, so a run ends even against a broken cluster: at most about
duration + message_timeout + 10 s + drain_timeout + 10 s + final_read_timeout (75 s past the
duration with the defaults, when the cluster stops answering). The runner does not judge
the history; `checker.py` does. Clients talk only to `bootstrap` (and the brokers it advertises).

CLI: `python e2e/workload/run.py --bootstrap HOST:PORT --topic T --out DIR ...` (or
`python -m workload ...` from this directory) writes DIR/history.jsonl, DIR/report.json and prints
the checker's summary; the exit code is the checker's (0 valid, 1 violations).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Optional

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

import report
from checker import check
from consumers import AssignConsumer, GroupConsumer, Progress, end_offsets, final_read
from history import History
from producers import ProducerWorker


PRODUCER_STOP_GRACE_S = 10.0
"""How long past the message timeout the runner waits for producers to finish."""
CONSUMER_STOP_GRACE_S = 10.0
"""How long the runner waits for consumers to close (a group consumer commits while closing)."""


class WorkloadError(Exception):
    """A worker thread or the setup failed; the history recorded so far is in `history`."""

    def __init__(self, message: str, history: History):
        super().__init__(message)
        self.history = history


@dataclass
class WorkloadConfig:
    """Everything a run needs. Durations are seconds; `rate` is messages per second per
    producer and `max_messages` caps each producer's count; consumer n starts
    n * `consumer_stagger` seconds after the first."""

    bootstrap: str
    topic: str
    partitions: int = 6
    replication_factor: int = 1
    topic_config: dict = field(default_factory=dict)
    create_topic: bool = True
    producers: int = 2
    consumers: int = 2
    consumer_mode: str = "assign"
    acks: str = "all"
    duration: float = 20.0
    rate: float = 100.0
    max_messages: int = 100_000
    group: Optional[str] = None
    commit_interval: float = 1.0
    consumer_stagger: float = 0.0
    message_timeout: float = 10.0
    drain_timeout: float = 15.0
    final_read_timeout: float = 30.0
    seed: int = 0

    def __post_init__(self):
        if self.consumer_mode not in ("assign", "group"):
            raise ValueError(f"consumer_mode must be 'assign' or 'group', not {self.consumer_mode!r}")
        if self.acks not in ("all", "1"):
            raise ValueError(f"acks must be 'all' or '1', not {self.acks!r}")
        if self.partitions < 1 or self.rate <= 0 or self.duration < 0:
            raise ValueError("partitions must be >= 1, rate > 0 and duration >= 0")
        self.group = self.group or f"workload-{self.topic}-{uuid.uuid4().hex[:6]}"


def ensure_topic(cfg: WorkloadConfig, timeout: float = 20) -> None:
    """Creates the topic (an existing one is accepted) and waits until every partition has a
    leader."""
    client = AdminClient({"bootstrap.servers": cfg.bootstrap})
    new = NewTopic(cfg.topic, cfg.partitions, cfg.replication_factor, config=cfg.topic_config)
    try:
        client.create_topics([new])[cfg.topic].result(timeout)
    except KafkaException as e:
        if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        md = client.list_topics(cfg.topic, timeout=5).topics.get(cfg.topic)
        if md and not md.error and len(md.partitions) >= cfg.partitions \
                and all(pm.leader >= 0 for pm in md.partitions.values()):
            return
        time.sleep(0.2)
    raise TimeoutError(f"topic {cfg.topic} has no leader for every partition after {timeout}s")


class _Thread(threading.Thread):
    """A worker thread that keeps its exception for the runner."""

    def __init__(self, name: str, target):
        super().__init__(name=name, daemon=True)
        self._target_fn, self.error = target, None

    def run(self):
        try:
            self._target_fn()
        except BaseException as e:  # reported by the runner after everything stopped
            self.error = e


def run(cfg: WorkloadConfig, history: Optional[History] = None, out_dir: Optional[str] = None,
        stop: Optional[threading.Event] = None) -> History:
    """Runs the workload and returns its history (also streamed to out_dir/history.jsonl when
    `out_dir` is given). Raises `WorkloadError` if setup or a worker failed. With `stop`, the
    producers stop when it is set or after `duration` seconds, whichever comes first (a fault
    schedule of unknown length sets it when it is done)."""
    history = history or History()
    history.meta = {**asdict(cfg), "started": time.time()}
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        history.open_sink(os.path.join(out_dir, "history.jsonl"))
    try:
        if cfg.create_topic:
            ensure_topic(cfg)
        threads = _run_clients(cfg, history, stop)
        final_read(cfg, history)
    except (KafkaException, TimeoutError) as e:
        raise WorkloadError(f"client call failed outside the workers: {e}", history) from e
    finally:
        history.close()
    failed = [f"{t.name}: {t.error!r}" for t in threads if t.error is not None]
    if failed:
        raise WorkloadError("worker threads failed: " + "; ".join(failed), history)
    return history


def _run_clients(cfg: WorkloadConfig, history: History, stop: Optional[threading.Event] = None) -> list:
    """Phases 2-4: returns the joined threads."""
    stop_producers, stop_consumers = stop or threading.Event(), threading.Event()
    progress = Progress()
    kind = AssignConsumer if cfg.consumer_mode == "assign" else GroupConsumer
    consumers = [kind(n, cfg, history, stop_consumers, progress) for n in range(cfg.consumers)]
    producers = [ProducerWorker(n, cfg, history, stop_producers) for n in range(cfg.producers)]
    c_threads = [_Thread(w.process, w.run) for w in consumers]
    p_threads = [_Thread(w.process, w.run) for w in producers]
    try:
        for t in c_threads + p_threads:
            t.start()
        stop_producers.wait(cfg.duration)
        stop_producers.set()
        _join(p_threads, cfg.message_timeout + PRODUCER_STOP_GRACE_S)
        _drain(cfg, progress, [w.process for w in consumers])
    finally:
        stop_producers.set()
        stop_consumers.set()
        _join(c_threads, CONSUMER_STOP_GRACE_S)
    return c_threads + p_threads


def _join(threads: list, timeout: float) -> None:
    """Joins all `threads` within one shared `timeout`. A thread still running after it (a client
    blocked on a dead broker) is abandoned: it is a daemon, and the history is closed before the
    runner returns, so it records nothing more."""
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))


def _drain(cfg: WorkloadConfig, progress: Progress, processes: list) -> None:
    """Waits (at most `drain_timeout`) until the consumers reached the end offsets: each of them
    in assign mode, at least one per partition in group mode."""
    if not processes:
        return
    deadline = time.monotonic() + cfg.drain_timeout
    try:
        marks = end_offsets(cfg.bootstrap, cfg.topic, cfg.partitions, timeout=cfg.drain_timeout)
    except KafkaException:
        return  # the final read still reads to the end; the consumers just stop now
    end = {p: high for p, (_, high) in marks.items()}
    while time.monotonic() < deadline and not progress.caught_up(processes, end, cfg.consumer_mode == "assign"):
        time.sleep(0.1)


def parse_args(argv=None) -> tuple[WorkloadConfig, argparse.Namespace]:
    ap = argparse.ArgumentParser(description="Kafka workload generator recording a history for check.py")
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT, the only address clients are given")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--replication-factor", type=int, default=1)
    ap.add_argument("--topic-config", action="append", default=[], metavar="K=V",
                    help="topic config on creation, e.g. min.insync.replicas=2 (repeatable)")
    ap.add_argument("--no-create-topic", action="store_true", help="the topic already exists")
    ap.add_argument("--producers", type=int, default=2)
    ap.add_argument("--consumers", type=int, default=2)
    ap.add_argument("--consumer-mode", choices=("assign", "group"), default="assign")
    ap.add_argument("--acks", choices=("all", "1"), default="all")
    ap.add_argument("--duration", type=float, default=20.0,
                    help="seconds of producing at most; SIGTERM stops producing earlier, and the run then "
                         "drains, reads and checks as usual")
    ap.add_argument("--rate", type=float, default=100.0, help="messages per second per producer")
    ap.add_argument("--max-messages", type=int, default=100_000, help="per producer")
    ap.add_argument("--group", help="consumer group id (group mode); default: generated")
    ap.add_argument("--consumer-stagger", type=float, default=0.0,
                    help="seconds between consumer starts (a group then rebalances mid-run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="directory for history.jsonl and report.json")
    ap.add_argument("--no-check", action="store_true", help="only record the history")
    a = ap.parse_args(argv)
    cfg = WorkloadConfig(
        bootstrap=a.bootstrap, topic=a.topic, partitions=a.partitions,
        replication_factor=a.replication_factor,
        topic_config=dict(kv.split("=", 1) for kv in a.topic_config), create_topic=not a.no_create_topic,
        producers=a.producers, consumers=a.consumers, consumer_mode=a.consumer_mode, acks=a.acks,
        duration=a.duration, rate=a.rate, max_messages=a.max_messages, group=a.group,
        consumer_stagger=a.consumer_stagger, seed=a.seed)
    return cfg, a


def main(argv=None) -> int:
    """CLI entry point: run, then check. Exit code 0 valid, 1 violations, 2 the run failed."""
    cfg, args = parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        history = run(cfg, out_dir=args.out, stop=stop)
    except WorkloadError as e:
        print(f"workload failed: {e}; partial history in {args.out}/history.jsonl", file=sys.stderr)
        return 2
    if args.no_check:
        return 0
    result = check(history.ops(), history.meta)
    report.write_json(result, os.path.join(args.out, "report.json"))
    print(report.summary(result))
    return 0 if result.valid else 1


if __name__ == "__main__":
    sys.exit(main())
