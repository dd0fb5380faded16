"""Real clients produce and consume through the broker: confluent-kafka (librdkafka 2.16),
kafka-python and kcat, under every compression codec."""

import json
import subprocess
import time

import pytest
from confluent_kafka import Consumer, TopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTP

from clients import check_round_trip, consume_all, create_topic, message, produce_confluent

N = 10_000
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_round_trip(broker, topic, codec):
    create_topic(broker.bootstrap, topic, partitions=4)
    acked = produce_confluent(broker.bootstrap, topic, N, codec=codec, tag=codec)
    assert {p for p, *_ in acked} == {0, 1, 2, 3}
    check_round_trip(acked, consume_all(broker.bootstrap, topic, 4, N))


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_round_trip(broker, topic, codec):
    create_topic(broker.bootstrap, topic, partitions=3)
    # kafka-python's defaults (idempotence on, acks=all).
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5,
                      compression_type=None if codec == "none" else codec)
    futures = []
    for i in range(N):
        k, v, h = message(i, codec)
        futures.append(p.send(topic, key=k, value=v, headers=[(a, b) for a, b in h]))
    p.flush(60)
    acked = [(f.get(10).partition, f.get(10).offset, *message(i, codec)[:2]) for i, f in enumerate(futures)]
    p.close()
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000)
    c.assign([KTP(topic, i) for i in range(3)])
    c.seek_to_beginning()
    got = {}
    for m in c:
        got.setdefault(m.partition, []).append(m)
        if sum(len(v) for v in got.values()) == N:
            break
    c.close()
    expected = {(p, o): (k, v) for p, o, k, v in acked}
    assert sum(len(v) for v in got.values()) == N
    for part, msgs in got.items():
        assert [m.offset for m in msgs] == list(range(len(msgs)))
        for m in msgs:
            assert (m.key, m.value) == expected[(part, m.offset)]
            assert dict(m.headers)["tag"] == codec.encode()


@pytest.mark.parametrize("codec", CODECS)
def test_kcat_round_trip(broker, topic, codec):
    """kcat as Debian ships it (librdkafka 2.0.2): keyed messages with a header, every codec."""
    create_topic(broker.bootstrap, topic, partitions=3)
    lines = "".join(f"k{i % 7}\t{codec}-v{i}\n" for i in range(N))
    subprocess.run(["kcat", "-b", broker.bootstrap, "-P", "-t", topic, "-K", "\t", "-H", "origin=kcat",
                    "-z", codec, "-X", "linger.ms=5"], input=lines.encode(), check=True, timeout=120)
    out = subprocess.run(["kcat", "-b", broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-J"],
                         capture_output=True, check=True, timeout=120).stdout.decode()
    msgs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(msgs) == N
    assert sorted(int(m["payload"].split("-v")[1]) for m in msgs) == list(range(N))
    assert all(m["payload"].startswith(codec + "-") for m in msgs)
    for part in range(3):
        mine = [m for m in msgs if m["partition"] == part]
        assert [m["offset"] for m in mine] == list(range(len(mine)))
        seqs = [int(m["payload"].split("-v")[1]) for m in mine]
        assert seqs == sorted(seqs), "per-partition production order"
    assert all(m["headers"] == ["origin", "kcat"] for m in msgs)
    by_key = {}
    for m in msgs:
        assert m["key"] == f"k{int(m['payload'].split('-v')[1]) % 7}"
        by_key.setdefault(m["key"], set()).add(m["partition"])
    assert all(len(p) == 1 for p in by_key.values()), "one key, one partition"
    meta = subprocess.run(["kcat", "-b", broker.bootstrap, "-L", "-J"], capture_output=True, check=True,
                          timeout=30).stdout.decode()
    t = [t for t in json.loads(meta)["topics"] if t["topic"] == topic][0]
    assert len(t["partitions"]) == 3


def test_offsets_for_times_finds_the_exact_record(broker, topic):
    """ListOffsets by timestamp returns the first record at or after the time, even inside a
    batch, as Kafka does; earliest/latest are the log bounds."""
    from confluent_kafka import Producer
    create_topic(broker.bootstrap, topic)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 50, "compression.type": "zstd"})
    # Recent timestamps: older ones would be deleted by retention.ms (7 days), as in Kafka.
    base = int(time.time() * 1000) - 60_000
    for i in range(100):
        p.produce(topic, value=str(i).encode(), timestamp=base + 10 * i)
    p.flush(10)
    # No commits: the group coordinator (FindCoordinator, OffsetCommit) is issue 3.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "times", "enable.auto.commit": False})
    for target, want in [(base, 0), (base + 1, 1), (base + 455, 46), (base + 990, 99), (base + 991, -1)]:
        [tp] = c.offsets_for_times([TopicPartition(topic, 0, target)], timeout=10)
        assert tp.error is None
        assert tp.offset == want, (target, tp.offset)
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    assert (lo, hi) == (0, 100)
    c.assign([TopicPartition(topic, 0, 37)])
    m = c.poll(10)
    assert m.offset() == 37 and m.timestamp() == (1, base + 370)
    c.close()


def test_log_append_time_topic(broker, topic):
    from confluent_kafka import Producer
    create_topic(broker.bootstrap, topic, config={"message.timestamp.type": "LogAppendTime"})
    p = Producer({"bootstrap.servers": broker.bootstrap})
    before = int(time.time() * 1000)
    p.produce(topic, value=b"x", timestamp=1000)
    p.flush(10)
    after = int(time.time() * 1000)
    [m] = consume_all(broker.bootstrap, topic, 1, 1)
    kind, ts = m.timestamp()
    assert kind == 2  # TIMESTAMP_LOG_APPEND_TIME
    assert before - 1 <= ts <= after + 1


def test_list_offsets_max_timestamp(broker, topic):
    """OffsetSpec.max_timestamp (ListOffsets v7, -3) answers the exact record with the largest
    timestamp, even in the middle of a batch."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, OffsetSpec
    create_topic(broker.bootstrap, topic)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 100})
    now = int(time.time() * 1000)
    stamps = [now - 5000 + i for i in range(50)]
    stamps[17] = now  # the newest record sits inside the batch
    for ts in stamps:
        p.produce(topic, value=b"x", timestamp=ts)
    p.flush(10)
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    tp = TopicPartition(topic, 0)
    res = a.list_offsets({tp: OffsetSpec.max_timestamp()})[tp].result(10)
    assert (res.offset, res.timestamp) == (17, now)
    assert a.list_offsets({tp: OffsetSpec.earliest()})[tp].result(10).offset == 0
    assert a.list_offsets({tp: OffsetSpec.latest()})[tp].result(10).offset == 50


def test_acks_all_needs_min_insync_replicas(broker, topic):
    """With min.insync.replicas above the ISR size, acks=all is refused with
    NOT_ENOUGH_REPLICAS and nothing is stored; acks=1 still works."""
    from confluent_kafka import KafkaError, Producer
    create_topic(broker.bootstrap, topic, config={"min.insync.replicas": "2"})
    errors = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "message.timeout.ms": 2000,
                  "enable.idempotence": False})
    p.produce(topic, value=b"x", on_delivery=lambda e, m: errors.append(e))
    p.flush(10)
    assert errors and errors[0] is not None
    assert errors[0].code() in (KafkaError.NOT_ENOUGH_REPLICAS, KafkaError._MSG_TIMED_OUT)
    p1 = Producer({"bootstrap.servers": broker.bootstrap, "acks": 1})
    ok = []
    p1.produce(topic, value=b"y", on_delivery=lambda e, m: ok.append((e, m.offset())))
    p1.flush(10)
    assert ok == [(None, 0)], "acks=1 is stored at offset 0: the refused acks=all write left nothing"
