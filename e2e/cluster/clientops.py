"""Client-side helpers for cluster scenarios: admin calls, metadata, produce and read back."""

import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import wait_for


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000})


def create_topic(bootstrap, name, partitions, rf=1, timeout=15, assignment=None, config=None):
    """Creates a topic through `bootstrap` (any broker), placed by the controller or on the
    brokers of `assignment` (one list per partition); raises on failure."""
    a = admin(bootstrap)
    topic = (NewTopic(name, num_partitions=len(assignment), replica_assignment=assignment, config=config or {})
             if assignment else NewTopic(name, partitions, rf, config=config or {}))
    a.create_topics([topic], request_timeout=timeout)[name].result(timeout)


def metadata(bootstrap, topic=None):
    return admin(bootstrap).list_topics(topic=topic, timeout=10)


def leaders(bootstrap, topic):
    """{partition: leader id (-1 when none)} as one broker reports it."""
    md = metadata(bootstrap, topic)
    return {p: pm.leader for p, pm in md.topics[topic].partitions.items()}


def produce(bootstrap, topic, values, partitions):
    """Produces `values` (bytes), value i to partition i % partitions, acks=all and idempotent;
    returns [(partition, offset, value)] from the delivery reports."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 2})
    acked, errors = [], []

    def report(err, msg):
        if err:
            errors.append(err)
        else:
            acked.append((msg.partition(), msg.offset(), msg.value()))

    for i, v in enumerate(values):
        p.produce(topic, value=v, partition=i % partitions, on_delivery=report)
        p.poll(0)
    left = p.flush(30)
    assert left == 0 and not errors, (left, errors[:3])
    return acked


def read_all(bootstrap, topic, partitions, expected, timeout=30):
    """Reads every partition from offset 0 until `expected` records arrived: [(p, offset, value)]."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r-{time.time()}", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out, deadline = [], time.time() + timeout
    try:
        while len(out) < expected and time.time() < deadline:
            for m in c.consume(500, 0.5):
                if m.error():
                    continue
                out.append((m.partition(), m.offset(), m.value()))
    finally:
        c.close()
    return out


def create_topic_eventually(bootstrap, name, partitions, timeout=30):
    """Retries CreateTopics until it succeeds (used while a controller fails over); returns the
    seconds it took."""
    start = time.time()

    def attempt():
        try:
            create_topic(bootstrap, name, partitions, timeout=5)
            return True
        except KafkaException as e:
            if "already exists" in str(e).lower() or "TOPIC_ALREADY_EXISTS" in str(e):
                return True
            raise

    wait_for(f"CreateTopics {name} to succeed", attempt, timeout, interval=0.1)
    return time.time() - start


def delete_topic(bootstrap, name, timeout=15):
    a = admin(bootstrap)  # keep the handle alive until the future resolves
    a.delete_topics([name], operation_timeout=timeout)[name].result(timeout)
