"""Connection limits and accept back-off: past `max.connections`, past
`max.connections.per.ip` and past the process's own open-files limit the broker refuses (or
holds back) the excess, logs a bounded number of lines, keeps serving a client that was
connected before, and accepts again once the excess closes; idle connections are closed after
`connections.max.idle.ms`."""

import os
import re
import resource
import socket
import tempfile
import time

from confluent_kafka import Producer

from clients import consume_all, create_topic, read_partition0
from conftest import Broker


def metric(broker, name):
    m = re.search(rf"^{re.escape(name)} (\d+)$", broker.metrics(), re.M)
    return int(m.group(1)) if m else None


def wait_until(cond, timeout=10, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def is_closed_by_peer(s):
    """True when the broker closed the socket (EOF or reset), False while it stays open."""
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def open_sockets(bootstrap, n):
    host, port = bootstrap.split(":")
    return [socket.create_connection((host, int(port)), timeout=5) for _ in range(n)]


def log_lines(broker, pattern):
    with open(broker.log_path, errors="replace") as f:
        return [line for line in f if pattern in line]


def produce_one(producer, topic, value):
    errors = []
    producer.produce(topic, value=value, on_delivery=lambda err, _m: err and errors.append(err))
    assert producer.flush(15) == 0 and not errors, errors


def test_past_max_connections_the_excess_is_refused_and_an_existing_client_is_served(make_broker, topic):
    b = make_broker(max_connections=20)
    create_topic(b.bootstrap, topic)
    producer = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
    flood = []
    try:
        produce_one(producer, topic, b"before")
        before = metric(b, "tributary_connections")
        assert 0 < before < 20
        flood = open_sockets(b.bootstrap, 500)
        excess = 500 - (20 - before)
        wait_until(lambda: metric(b, 'tributary_connections_refused_total{limit="max.connections"}') == excess,
                   what="every excess connection refused")
        closed = [s for s in flood if is_closed_by_peer(s)]
        assert len(closed) == excess, "the excess is closed at once, the rest stays open"
        assert metric(b, "tributary_connections") == 20
        # The client connected before is still served.
        produce_one(producer, topic, b"while full")
        # A bounded number of log lines for 480 refusals (at most one a second).
        lines = log_lines(b, "refused connections over a limit")
        assert 1 <= len(lines) <= 5, lines
        assert "max.connections (20) reached" in lines[0]
    finally:
        for s in flood:
            s.close()
        producer.flush(5)
    # Once the excess is gone, new clients connect again.
    wait_until(lambda: metric(b, "tributary_connections") < 20, what="the flood's connections to close")
    got = consume_all(b.bootstrap, topic, 1, 2, timeout=20)
    assert [m.value() for m in got] == [b"before", b"while full"]


def test_max_connections_per_ip_with_an_override(make_broker):
    # Every test connection comes from 127.0.0.1; the override gives it 5 instead of 1000.
    b = make_broker(max_connections_per_ip=1000, max_connections_per_ip_overrides="127.0.0.1:5")
    socks = open_sockets(b.bootstrap, 8)
    try:
        wait_until(lambda: metric(b, 'tributary_connections_refused_total{limit="max.connections.per.ip"}') == 3,
                   what="three refusals")
        assert [is_closed_by_peer(s) for s in socks] == [False] * 5 + [True] * 3
        assert "max.connections.per.ip (5) reached for 127.0.0.1" in "".join(log_lines(b, "refused"))
    finally:
        for s in socks:
            s.close()


def test_idle_connections_are_closed(make_broker):
    b = make_broker(connections_max_idle_ms=300)
    with socket.create_connection(("127.0.0.1", b.port), timeout=5) as s:
        s.settimeout(5)
        start = time.time()
        assert s.recv(1) == b"", "the broker closes an idle connection"
        assert time.time() - start < 4
    assert metric(b, "tributary_connections_idle_closed_total") >= 1


def test_out_of_file_descriptors_the_accept_loop_backs_off_and_resumes(topic):
    data = os.path.join(tempfile.mkdtemp(prefix="tributary-nofile-"), "data")
    os.makedirs(data)
    b = Broker(data)
    limit = 128
    # The broker raises its soft limit to the hard one: lower both, for it alone.
    b.preexec_fn = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    flood = []
    producer = None
    try:
        b.start()
        assert f"soft={limit} hard={limit}" in "".join(log_lines(b, "open files limit"))
        create_topic(b.bootstrap, topic)
        producer = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
        produce_one(producer, topic, b"before")
        # More than the broker has descriptors for (~100 free), fewer than it has descriptors
        # plus its listen backlog (past that, connecting itself would wait).
        flood = open_sockets(b.bootstrap, 180)
        time.sleep(3)  # the loop keeps failing (and backing off) for a while
        produce_one(producer, topic, b"while out of descriptors")
        failures = log_lines(b, "accept failed")
        assert failures and "Too many open files" in failures[0]
        assert len(failures) <= 3 + 2, failures  # at most one line a second
        assert os.path.getsize(b.log_path) < 200_000
        for s in flood:
            s.close()
        flood = []
        # Descriptors free up: the backlog drains and new clients are accepted again.
        got = read_partition0(b.bootstrap, topic, 2)
        assert got == [b"before", b"while out of descriptors"]
        assert metric(b, "tributary_accept_failures_total") > 0
    finally:
        for s in flood:
            s.close()
        if producer is not None:
            producer.flush(5)
        assert b.stop() == 0
