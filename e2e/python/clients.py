"""Client helpers shared by the tests: create topics, produce N keyed messages with headers,
consume everything back, and check content, per-partition order and offsets."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap, name, partitions=1, config=None):
    client = admin(bootstrap)  # keep the handle alive until the future resolves
    fut = client.create_topics([NewTopic(name, partitions, 1, config=config or {})])
    fut[name].result(10)


def message(i, tag=""):
    return f"key-{i % 97}".encode(), f"{tag}value-{i}-".encode() * 3, [("seq", str(i).encode()), ("tag", tag.encode())]


def produce_confluent(bootstrap, topic, n, codec="none", acks="all", tag=""):
    """Produces n messages; returns the delivery reports (partition, offset, key, value)."""
    p = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "acks": acks,
                  # Idempotent whenever acks allow it, like the Java producer's defaults.
                  "linger.ms": 5, "enable.idempotence": str(acks) in ("all", "-1")})
    acked, errors = [], []

    def report(err, msg):
        if err:
            errors.append(err)
        else:
            acked.append((msg.partition(), msg.offset(), msg.key(), msg.value()))

    for i in range(n):
        k, v, h = message(i, tag)
        while True:
            try:
                p.produce(topic, key=k, value=v, headers=h, on_delivery=report)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(30) == 0, "messages left undelivered"
    assert not errors, errors[:5]
    return acked


def _reader(bootstrap, topic, partitions):
    """A consumer assigned every partition of `topic` from offset 0 (no commits)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{topic}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    return c


def _drain(c, done, timeout):
    """Consumes until `done(messages so far)` or `timeout` seconds, then closes `c`."""
    out, deadline = [], time.time() + timeout
    while not done(out) and time.time() < deadline:
        for m in c.consume(1000, 1.0):
            assert not m.error(), m.error()
            out.append(m)
    c.close()
    return out


def consume_all(bootstrap, topic, partitions, expected, timeout=60):
    """Reads every partition from offset 0 until `expected` messages arrived."""
    return _drain(_reader(bootstrap, topic, partitions), lambda out: len(out) >= expected, timeout)


def consume_to_end(bootstrap, topic, partitions, timeout=60):
    """Reads every partition from offset 0 to the high watermark it has when the call starts;
    returns (messages, {partition: high watermark}). For logs holding an unknown number of
    messages (a SIGKILL can leave appended but unacknowledged ones), where stopping at a count
    could stop before a partition's tail."""
    c = _reader(bootstrap, topic, partitions)
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    next_offset, seen = dict.fromkeys(ends, 0), 0

    def done(out):
        nonlocal seen
        for m in out[seen:]:
            next_offset[m.partition()] = m.offset() + 1
        seen = len(out)
        return all(next_offset[p] >= ends[p] for p in ends)
    out = _drain(c, done, timeout)
    short = {p: (next_offset[p], ends[p]) for p in ends if next_offset[p] < ends[p]}
    assert not short, f"partitions not read to their high watermark in {timeout} s: {short}"
    return out, ends


def check_round_trip(acked, consumed):
    """Every acknowledged message is read back once, with its content, at its offset, and each
    partition's offsets are contiguous from 0 in production order."""
    assert len(consumed) == len(acked)
    by_offset = {(p, o): (k, v) for p, o, k, v in acked}
    seen = {}
    for m in consumed:
        assert (m.key(), m.value()) == by_offset[(m.partition(), m.offset())]
        seq = int(dict(m.headers())["seq"])
        assert m.value().decode().startswith(f"{dict(m.headers())['tag'].decode()}value-{seq}-")
        seen.setdefault(m.partition(), []).append((m.offset(), seq))
    for part, items in seen.items():
        offsets = [o for o, _ in items]
        assert offsets == list(range(len(offsets))), f"partition {part} offsets not contiguous"
        seqs = [s for _, s in items]
        assert seqs == sorted(seqs), f"partition {part} out of production order"


def read_partition0(bootstrap, topic, expected, timeout=20, **config):
    """The values of partition 0 from its start, read with kafka-python without a consumer group
    (no __consumer_offsets, whose 50 partitions need descriptors and disk a test may have taken
    away), until `expected` values or `timeout` seconds."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **config)
    try:
        c.assign([KTP(topic, 0)])
        c.seek_to_beginning()
        out, deadline = [], time.time() + timeout
        while len(out) < expected and time.time() < deadline:
            for records in c.poll(500).values():
                out.extend(r.value for r in records)
        return out
    finally:
        c.close()
