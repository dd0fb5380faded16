"""Log compaction (cleanup.policy=compact): after the cleaner ran, a consumer reading from the
start sees exactly the latest value of each key at the offset the producer was given, tombstoned
keys disappear after delete.retention.ms, the result survives a restart, and a keyless record is
refused with INVALID_RECORD."""

import pathlib
import re
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from clients import admin, create_topic

KEYS, ROUNDS, DEAD = 200, 20, 20


def produce(bootstrap, topic, items, codec):
    p = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 5,
                  "enable.idempotence": False})
    acked, errors = [], []

    def report(err, msg):
        (errors if err else acked).append(err or (msg.offset(), msg.key(), msg.value()))

    for k, v in items:
        p.produce(topic, key=k, value=v, on_delivery=report)
        p.poll(0)
    p.flush(20)
    return acked, errors


def read_all(bootstrap, topic, timeout=5):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r-{time.time()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "enable.partition.eof": True})
    c.assign([TopicPartition(topic, 0, 0)])
    out, deadline = [], time.time() + timeout
    while time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                break
            raise AssertionError(m.error())
        out.append((m.offset(), m.key(), m.value()))
    c.close()
    return out


def cleaner_bytes(broker):
    m = re.search(r"^tributary_log_cleaner_bytes_removed_total (\d+)", broker.metrics(), re.M)
    return int(m.group(1)) if m else 0


def roll(bootstrap, topic):
    """The active segment is never cleaned: wait past segment.ms and append to roll it."""
    time.sleep(0.6)
    produce(bootstrap, topic, [(b"filler", b"x")], "none")


def test_compaction_keeps_latest_value_per_key_at_its_offset(make_broker, topic):
    b = make_broker(log_cleaner_backoff_ms=200)
    create_topic(b.bootstrap, topic, config={
        "cleanup.policy": "compact", "segment.bytes": "16384", "segment.ms": "500",
        "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "2000"})
    latest = {}
    for rnd in range(ROUNDS):
        items = [(f"key-{k}".encode(), f"v{rnd}-{k}".encode() * 4) for k in range(KEYS)]
        acked, errors = produce(b.bootstrap, topic, items, ["none", "gzip", "lz4", "zstd", "snappy"][rnd % 5])
        assert not errors, errors[:3]
        for off, k, v in acked:
            latest[k] = (off, v)
    acked, errors = produce(b.bootstrap, topic, [(f"key-{k}".encode(), None) for k in range(DEAD)], "gzip")
    assert not errors
    for off, k, v in acked:
        latest[k] = (off, None)
    roll(b.bootstrap, topic)

    deadline = time.time() + 10
    while cleaner_bytes(b) == 0 and time.time() < deadline:
        time.sleep(0.2)
    assert cleaner_bytes(b) > 0, "the cleaner never removed anything"

    def check(got, tombstones_expected):
        got = [r for r in got if r[1] != b"filler"]
        by_key = {k: (o, v) for o, k, v in got}
        assert len(by_key) == len(got), "a key appears twice after cleaning"
        for k, (off, v) in latest.items():
            if v is None and not tombstones_expected:
                assert k not in by_key, f"tombstoned {k} still present"
                continue
            assert by_key[k] == (off, v), k
        assert [o for o, _, _ in got] == sorted(o for o, _, _ in got)

    # The cleaner may have started while data was still arriving: wait for a pass over it all.
    deadline = time.time() + 10
    while time.time() < deadline:
        got = [r for r in read_all(b.bootstrap, topic) if r[1] != b"filler"]
        if len({k for _, k, _ in got}) == len(got):
            break
        time.sleep(0.3)
    check(got, tombstones_expected=True)
    # After delete.retention.ms, the next clean (new dirty data) drops the tombstones.
    time.sleep(2.1)
    roll(b.bootstrap, topic)
    roll(b.bootstrap, topic)
    deadline = time.time() + 8
    while time.time() < deadline:
        got = read_all(b.bootstrap, topic)
        if not any(k == b"key-0" for _, k, _ in got):
            break
        time.sleep(0.3)
    check(got, tombstones_expected=False)

    b.restart()
    check(read_all(b.bootstrap, topic), tombstones_expected=False)

    _, errors = produce(b.bootstrap, topic, [(None, b"no key")], "none")
    assert [e.code() for e in errors] == [KafkaError.INVALID_RECORD], errors


def test_group_offsets_survive_cleaning_of_consumer_offsets(make_broker, topic):
    """__consumer_offsets is compacted: many commits of one group are cleaned down to the
    latest, and the group still resumes at its last commit after a restart (the coordinator
    loads a cleaned partition: gaps in offsets, emptied batches)."""
    b = make_broker(log_cleaner_backoff_ms=200, offsets_topic_num_partitions=1,
                    offsets_topic_segment_bytes=4096, log_cleaner_min_cleanable_ratio="0.01")
    create_topic(b.bootstrap, topic, partitions=2)
    group = f"g-{topic}"
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "enable.auto.commit": False})
    for i in range(1, 301):
        c.commit(offsets=[TopicPartition(topic, 0, i), TopicPartition(topic, 1, 2 * i)],
                 asynchronous=False)
    c.close()
    deadline = time.time() + 15
    while cleaner_bytes(b) == 0 and time.time() < deadline:
        time.sleep(0.2)
    assert cleaner_bytes(b) > 0, "__consumer_offsets was never cleaned"
    # Cleaning goes in passes (every log.cleaner.backoff.ms): wait for the merged result.
    while True:
        segments = list(pathlib.Path(b.data_dir, "__consumer_offsets-0").glob("*.log"))
        if len(segments) < 10 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert len(segments) < 10, f"{len(segments)} segments after cleaning"

    b.restart()
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "enable.auto.commit": False})
    got = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=20)
    c.close()
    assert [(tp.partition, tp.offset) for tp in got] == [(0, 300), (1, 600)]


def test_keyless_records_on_a_compacted_topic_are_named_in_record_errors(make_broker, topic):
    from rawproto import produce_v8
    b = make_broker()
    create_topic(b.bootstrap, topic, config={"cleanup.policy": "compact"})
    error, message, record_errors = produce_v8(b.port, topic, [b"k0", None, b"k2", None])
    assert error == 87, (error, message)  # INVALID_RECORD
    assert "without a key" in message
    assert [i for i, _ in record_errors] == [1, 3]
    assert all("without a key" in m for _, m in record_errors)
    # Nothing of the refused batch was stored; a keyed batch is accepted.
    error, _message, record_errors = produce_v8(b.port, topic, [b"k0", b"k1"])
    assert (error, record_errors) == (0, [])
    assert [k for _, k, _ in read_all(b.bootstrap, topic)] == [b"k0", b"k1"]


def test_an_empty_cleanup_policy_and_deprecated_configs_are_accepted(make_broker, topic):
    b = make_broker()
    create_topic(b.bootstrap, topic, config={"cleanup.policy": "", "message.format.version": "3.0-IV1",
                                             "message.downconversion.enable": "true"})
    from confluent_kafka.admin import ConfigResource
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    client = admin(b.bootstrap)
    configs = client.describe_configs([res])[res].result(10)
    assert configs["cleanup.policy"].value == ""
    assert "message.format.version" not in configs  # accepted, ignored, not stored
    with open(b.log_path) as f:
        assert "ignoring deprecated topic config" in f.read()
