"""Retention by size and by time deletes whole old segments and moves the log start offset;
consumers below it get OFFSET_OUT_OF_RANGE and reset as configured."""

import glob
import os
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from clients import create_topic


def watermarks(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "wm", "enable.auto.commit": False})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        c.close()


def wait_for_log_start(bootstrap, topic, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        lo, hi = watermarks(bootstrap, topic)
        if lo > 0:
            return lo, hi
        time.sleep(0.2)
    raise AssertionError("retention never moved the log start offset")


def test_retention_bytes_deletes_old_segments(make_broker, topic):
    b = make_broker(log_retention_check_interval_ms=200)
    create_topic(b.bootstrap, topic, config={"segment.bytes": "20000", "retention.bytes": "60000"})
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0, "batch.num.messages": 1})
    for i in range(400):
        p.produce(topic, value=f"{i:06d}".encode() * 170)
        p.poll(0)
    p.flush(10)
    # A retention pass may have run while the producer was still writing: wait for one after.
    deadline = time.time() + 15
    while True:
        lo, hi = wait_for_log_start(b.bootstrap, topic)
        segs = glob.glob(os.path.join(b.data_dir, f"{topic}-0", "*.log"))
        total = sum(os.path.getsize(s) for s in segs)
        if total < 60000 + 20000 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert hi == 400 and 0 < lo < 400
    assert total < 60000 + 20000, f"{len(segs)} segments, {total} bytes kept"

    # A consumer positioned below the log start is reset per auto.offset.reset.
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "early", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 0, 0)])
    m = c.poll(10)
    assert m is not None and not m.error() and m.offset() >= lo
    assert m.value() == f"{m.offset():06d}".encode() * 170
    c.close()
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "strict", "enable.auto.commit": False,
                  "auto.offset.reset": "error"})
    c.assign([TopicPartition(topic, 0, 0)])
    m = c.poll(10)
    assert m is not None and m.error() is not None
    assert m.error().code() == KafkaError._AUTO_OFFSET_RESET
    c.close()


def test_retention_ms_deletes_expired_data(make_broker, topic):
    b = make_broker(log_retention_check_interval_ms=200)
    create_topic(b.bootstrap, topic, config={"retention.ms": "5000"})
    p = Producer({"bootstrap.servers": b.bootstrap})
    old = int(time.time() * 1000) - 3_600_000
    for i in range(10):
        p.produce(topic, value=b"old", timestamp=old)
    p.flush(10)
    lo, hi = wait_for_log_start(b.bootstrap, topic)
    assert (lo, hi) == (10, 10)
    for i in range(5):
        p.produce(topic, value=b"new")
    p.flush(10)
    time.sleep(1)
    assert watermarks(b.bootstrap, topic) == (10, 15)
