"""Idempotent producers: a produce request the broker appended but whose response was lost is
retried by the client, and the broker answers the retry from its producer state instead of
appending again — also when the broker restarted between the append and the retry."""

import signal

import pytest
from confluent_kafka import Producer
from kafka import KafkaProducer

from clients import consume_all, create_topic
from conftest import free_port
from proxy import FaultProxy
from rawproto import init_producer_id, produce_raw

N = 3000


def produce_through(proxy, bootstrap, topic, drop_every):
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 1, "message.timeout.ms": 60000, "retry.backoff.ms": 50})
    acked, errors = [], []

    def report(err, msg):
        (errors if err else acked).append(err or (msg.offset(), msg.value()))

    for i in range(N):
        if i and i % drop_every == 0:
            with proxy.lock:
                proxy.drop_produce_responses += 1
        p.produce(topic, value=f"m{i:05d}".encode(), on_delivery=report)
        p.poll(0)
        if i % 100 == 0:
            p.flush(30)  # keep a few requests in flight, not the whole run
    assert p.flush(60) == 0
    assert not errors, errors[:3]
    return acked


def proxied_broker(make_broker, topic):
    """A broker that advertises a fault proxy in front of it, and a topic on it."""
    proxy_port = free_port()
    b = make_broker(advertised_listeners=f"PLAINTEXT://127.0.0.1:{proxy_port}")
    proxy = FaultProxy(proxy_port, b.port)
    bootstrap = f"127.0.0.1:{proxy_port}"
    create_topic(bootstrap, topic)
    return b, proxy, bootstrap


def check_exactly_once(bootstrap, topic, acked):
    got = consume_all(bootstrap, topic, 1, N, timeout=60)
    values = [m.value() for m in got]
    assert values == [f"m{i:05d}".encode() for i in range(N)], "each message exactly once, in order"
    assert [m.offset() for m in got] == list(range(N))
    assert sorted(o for o, _ in acked) == list(range(N)), "acks carry the stored offsets"


def test_lost_responses_are_retried_without_duplicates(make_broker, topic):
    b, proxy, bootstrap = proxied_broker(make_broker, topic)
    acked = produce_through(proxy, bootstrap, topic, drop_every=500)
    assert proxy.dropped >= 4
    check_exactly_once(bootstrap, topic, acked)
    proxy.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["clean", "killed"])
def test_retry_after_a_broker_restart_is_deduplicated(make_broker, topic, sig):
    b, proxy, bootstrap = proxied_broker(make_broker, topic)
    restarts = []

    def restart():
        # Runs in the proxy thread after the response was dropped and before the client's
        # connection is closed: the append is done, the client has not seen it, and its retry
        # can only reach the restarted broker. SIGKILL leaves no producer snapshot at the log
        # end, so the state must be rebuilt from the batches.
        if not restarts:
            restarts.append(1)
            b.stop(sig)
            b.start()

    proxy.on_drop = restart
    acked = produce_through(proxy, bootstrap, topic, drop_every=1000)
    assert restarts
    check_exactly_once(bootstrap, topic, acked)
    proxy.close()


def test_kafka_python_idempotent_producer_through_lost_responses(make_broker, topic):
    """kafka-python's own idempotent producer (its default) against the same fault."""
    b, proxy, bootstrap = proxied_broker(make_broker, topic)
    p = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                      linger_ms=1, retry_backoff_ms=50, request_timeout_ms=10000)
    futures = []
    for i in range(1000):
        if i and i % 250 == 0:
            p.flush(30)
            with proxy.lock:
                proxy.drop_produce_responses += 1
        futures.append(p.send(topic, value=f"m{i:05d}".encode()))
    p.flush(60)
    offsets = sorted(f.get(10).offset for f in futures)
    p.close()
    assert proxy.dropped >= 3
    assert offsets == list(range(1000))
    got = consume_all(bootstrap, topic, 1, 1000, timeout=60)
    assert [m.value() for m in got] == [f"m{i:05d}".encode() for i in range(1000)]
    proxy.close()


def test_old_epoch_and_sequence_gap_are_refused(broker, topic):
    """A producer id's stale epoch is fenced and a sequence gap is OUT_OF_ORDER_SEQUENCE_NUMBER,
    through the real wire protocol (hand-built batches, kafka-python's protocol classes)."""
    create_topic(broker.bootstrap, topic)
    pid = init_producer_id(broker.port)
    assert produce_raw(broker.port, topic, pid, epoch=1, seq=0, n=3) == (0, 0)
    assert produce_raw(broker.port, topic, pid, epoch=1, seq=0, n=3) == (0, 0), "duplicate: same offset"
    assert produce_raw(broker.port, topic, pid, epoch=1, seq=5, n=1)[0] == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
    assert produce_raw(broker.port, topic, pid, epoch=0, seq=3, n=1)[0] == 47  # INVALID_PRODUCER_EPOCH
    assert produce_raw(broker.port, topic, pid, epoch=1, seq=3, n=1) == (0, 3)
