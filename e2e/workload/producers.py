"""Producer workers: each writes sequence-numbered values ("p<n>-<seq>") to partitions it picks
at random, at a bounded rate and count, and records every send's invoke and its outcome.

Outcome rule (the checker relies on it): `ok` only from a successful delivery report, with the
acknowledged partition and offset; `fail` only for errors that mean the message was never
written (`DEFINITE_FAILURES`); everything else - timeouts, errors after retries, purges of
in-flight messages, no report by shutdown - is `info` (indeterminate).

It does not create topics or decide when to stop; `workload.py` does.
"""

from __future__ import annotations

import functools
import random
import sys
import threading
import time
import traceback

from confluent_kafka import KafkaError, KafkaException, Producer

from history import History

DEFINITE_FAILURES = frozenset({
    KafkaError._PURGE_QUEUE,          # purged from the local queue, never sent
    KafkaError._UNKNOWN_PARTITION,    # refused locally
    KafkaError._UNKNOWN_TOPIC,
    KafkaError.MSG_SIZE_TOO_LARGE,    # every attempt of the same batch is refused alike
    KafkaError.INVALID_MSG_SIZE,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_REQUIRED_ACKS,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
})
"""Delivery errors after which the message is certainly not in the log."""


def producer_config(bootstrap: str, acks: str, message_timeout_s: float) -> dict:
    """acks=all: idempotent (librdkafka keeps order and drops retried duplicates). acks=1:
    idempotence needs acks=all, so instead no retries and one request in flight: the client itself
    can then neither duplicate nor reorder, and any duplicate or reordering is the broker's."""
    conf = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "message.timeout.ms": int(message_timeout_s * 1000),
        "request.timeout.ms": min(5000, int(message_timeout_s * 1000)),
    }
    if acks == "all":
        conf.update({"acks": "all", "enable.idempotence": True})
    elif acks == "1":
        conf.update({"acks": "1", "enable.idempotence": False, "retries": 0,
                     "max.in.flight.requests.per.connection": 1})
    else:
        raise ValueError(f"acks must be 'all' or '1', not {acks!r}")
    return conf


class ProducerWorker:
    """One producer process (`p<n>`). `run` returns when `stop` is set or `max_messages` were
    attempted, after waiting (bounded) for the outstanding delivery reports."""

    def __init__(self, n: int, cfg, history: History, stop: threading.Event):
        self.process = f"p{n}"
        self.cfg, self.history, self.stop = cfg, history, stop
        self.rng = random.Random(cfg.seed * 1000 + n)
        self.pending: dict = {}  # value -> partition, sent without a delivery report yet (one thread)
        self.fatal = False

    def run(self) -> None:
        producer = Producer(producer_config(self.cfg.bootstrap, self.cfg.acks, self.cfg.message_timeout))
        interval = 1.0 / self.cfg.rate
        next_at = time.monotonic()
        for seq in range(self.cfg.max_messages):
            if self.stop.is_set():
                break
            if self.fatal:  # a fatal idempotence error poisons the instance: start a new one
                self._finish(producer)
                producer, self.fatal = Producer(producer_config(
                    self.cfg.bootstrap, self.cfg.acks, self.cfg.message_timeout)), False
            self._send(producer, seq)
            next_at += interval
            self._serve_until(producer, next_at)
        self._finish(producer)

    def _send(self, producer: Producer, seq: int) -> None:
        value = f"{self.process}-{seq}"
        partition = self.rng.randrange(self.cfg.partitions)
        self.history.invoke(self.process, "send", partition=partition, key=value, value=value)
        self.pending[value] = partition
        report = functools.partial(self._delivered, value, partition)
        while True:
            try:
                producer.produce(self.cfg.topic, key=value, value=value, partition=partition,
                                 on_delivery=report)
                return
            except BufferError:  # local queue full: wait for reports, unless we are stopping
                if self.stop.is_set():
                    self._complete("fail", value, partition, error="local queue full at shutdown")
                    return
                self._poll(producer, 0.1)
            except KafkaException as e:  # refused before it was queued
                self._complete("fail", value, partition, error=str(e.args[0]))
                return

    def _delivered(self, value: str, partition: int, err, msg) -> None:
        # An exception escaping a delivery callback comes out of the client's next poll() as a
        # SystemError and would end the worker (confluent-kafka #865): say what it was and leave
        # the send without an outcome (indeterminate at the end).
        try:
            self._record_report(value, partition, err, msg)
        except Exception:  # noqa: BLE001
            print(f"{self.process}: delivery report of {value} could not be recorded:\n"
                  f"{traceback.format_exc()}", file=sys.stderr)

    def _record_report(self, value: str, partition: int, err, msg) -> None:
        if err is None:
            # A success may come without an offset (None, or negative): librdkafka reported three
            # such in chaos seed 14, after faults (probably idempotent retries it took as
            # persisted earlier, at an offset it does not know). The send still counts as ok.
            offset = msg.offset()
            known = offset is not None and offset >= 0
            self._complete("ok", value, msg.partition(), offset=offset if known else None)
            return
        kind = "fail" if err.code() in DEFINITE_FAILURES else "info"
        self._complete(kind, value, partition, error=str(err))
        if err.fatal():
            self.fatal = True

    def _complete(self, kind: str, value: str, partition: int, **fields) -> None:
        if value not in self.pending:
            return  # one completion per send
        del self.pending[value]
        self.history.append(self.process, kind, "send", partition=partition, key=value, value=value,
                            **fields)

    def _serve_until(self, producer: Producer, deadline: float) -> None:
        """Serves delivery reports until `deadline` (the rate limit) or `stop`."""
        self._poll(producer, 0)
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._poll(producer, min(left, 0.05))

    def _poll(self, producer: Producer, timeout: float) -> None:
        """producer.poll; a SystemError the client raises out of its own callback machinery is
        reported and survived (the reports it swallowed leave their sends indeterminate)."""
        try:
            producer.poll(timeout)
        except SystemError:
            print(f"{self.process}: poll failed in the client:\n{traceback.format_exc()}", file=sys.stderr)
        except KafkaException as e:
            # A fatal idempotence error (e.g. a sequence desynchronisation after a broker bug)
            # comes out of poll: the instance is replaced (see `run`) and the checker judges
            # what was acknowledged, instead of the worker dying without a verdict.
            if not (e.args and isinstance(e.args[0], KafkaError) and e.args[0].fatal()):
                raise
            print(f"{self.process}: fatal producer error, replacing the producer: {e}", file=sys.stderr)
            self.fatal = True

    def _finish(self, producer: Producer) -> None:
        """Waits for outstanding reports (bounded by the message timeout), then purges; whatever
        still has no report is indeterminate."""
        try:
            if producer.flush(self.cfg.message_timeout + 5) > 0:
                producer.purge()
                producer.flush(2)
        except KafkaException as e:  # a fatal error: what has no report stays indeterminate
            print(f"{self.process}: flush at shutdown failed: {e}", file=sys.stderr)
        for value, partition in sorted(self.pending.items()):
            self._complete("info", value, partition, error="no delivery report before shutdown")
