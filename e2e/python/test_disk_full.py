"""A broker on a small filesystem (a tmpfs this test mounts; needs root) that fills under an
acks=all producer: every acknowledged message is read back, produce answers
KAFKA_STORAGE_ERROR while the disk is full, fetch keeps working, production resumes once space
is freed, and after an unclean stop while full the broker either starts or says in one line that
the disk is full; once space returns it starts with nothing lost."""

import os
import re
import signal
import subprocess
import tempfile

import pytest
from confluent_kafka import KafkaError, Producer

from confluent_kafka.admin import NewTopic

from clients import admin, create_topic, read_partition0
from conftest import Broker

FS_BYTES = 24 << 20
BALLAST_BYTES = 4 << 20


def metric(broker, name):
    m = re.search(rf"^{re.escape(name)} (\d+)$", broker.metrics(), re.M)
    return int(m.group(1)) if m else None


@pytest.fixture
def small_fs():
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    d = tempfile.mkdtemp(prefix="tributary-full-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES}", "tmpfs", d], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.decode().strip()}")
    try:
        # Ballast: deleting it is "space returns".
        with open(os.path.join(d, "ballast"), "wb") as f:
            f.write(b"\0" * BALLAST_BYTES)
        os.makedirs(os.path.join(d, "data"))
        yield d
    finally:
        subprocess.run(["umount", "-l", d], check=False)


def produce_until_full(bootstrap, topic, start, limit=10_000):
    """Produces 8 KiB messages (acks=all, idempotent) until one fails; returns the values
    acknowledged and the error codes of the failures."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": 3000, "linger.ms": 0, "batch.num.messages": 1})
    acked, errors = [], []

    def report(err, msg):
        if err:
            errors.append(err.code())
        else:
            acked.append(msg.value())

    i = start
    while not errors and i < start + limit:
        p.produce(topic, value=f"{i:08d}".encode() + b"x" * 8192, on_delivery=report)
        p.poll(0)
        i += 1
        if i % 50 == 0:
            p.flush(10)
    p.flush(10)
    return acked, errors, i


def fill(fs):
    """Fills the filesystem with ballast until it is full."""
    with open(os.path.join(fs, "ballast"), "ab") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def one_line_error(broker):
    """The broker's last `error: ` line (stderr goes to its log)."""
    with open(broker.log_path) as f:
        lines = [line.rstrip("\n") for line in f if line.startswith("error: ")]
    assert lines, "no error line"
    return lines[-1]


def test_a_full_disk_refuses_writes_keeps_reads_and_recovers(small_fs, topic):
    data = os.path.join(small_fs, "data")
    b = Broker(data, log_segment_bytes=1 << 20)
    b.log_path = tempfile.mkstemp(prefix="tributary-full-", suffix=".log")[1]  # not on the full disk
    try:
        b.start()
        create_topic(b.bootstrap, topic)
        acked, errors, n = produce_until_full(b.bootstrap, topic, 0)
        assert errors, "the filesystem never filled"
        assert KafkaError.KAFKA_STORAGE_ERROR in errors or KafkaError._MSG_TIMED_OUT in errors, errors
        assert len(acked) > 100
        assert metric(b, "tributary_log_dir_writable") == 0
        # Reads keep working while full: every acknowledged message, in order.
        got = read_partition0(b.bootstrap, topic, len(acked), fetch_max_bytes=1 << 20)
        assert got[:len(acked)] == acked
        # Space returns: production resumes.
        os.remove(os.path.join(small_fs, "ballast"))
        more, errors2, n = produce_until_full(b.bootstrap, topic, n, limit=20)
        assert not errors2 and len(more) == 20, errors2
        assert metric(b, "tributary_log_dir_writable") == 1
        acked += more
        # Fill it again, then stop uncleanly while full.
        fill(small_fs)
        more, _errors, n = produce_until_full(b.bootstrap, topic, n)
        acked += more
        b.stop(signal.SIGKILL)
        try:
            b.start(timeout=20)
            started = True
        except RuntimeError:
            started = False
            assert one_line_error(b).endswith(
                "the log directory's filesystem is full: free space or grow the volume, then start the broker "
                "again (acknowledged data is kept)")
        if started:
            got = read_partition0(b.bootstrap, topic, len(acked), fetch_max_bytes=1 << 20)
            assert got[:len(acked)] == acked
            b.stop()
        # Space returns: the broker starts with every acknowledged message.
        os.remove(os.path.join(small_fs, "ballast"))
        b.start()
        got = read_partition0(b.bootstrap, topic, len(acked), fetch_max_bytes=1 << 20)
        assert got[:len(acked)] == acked, (len(got), len(acked))
        # The metadata log cannot be written on a full disk: the node stops at once, saying why.
        fill(small_fs)
        client = admin(b.bootstrap)
        client.create_topics([NewTopic(topic + "-more", 1, 1)], operation_timeout=5)
        assert b.proc.wait(20) == 1
        b.proc = None
        line = one_line_error(b)
        assert line.startswith("error: the metadata quorum stopped"), line
        assert "free space in the log directory" in line
        os.remove(os.path.join(small_fs, "ballast"))
        b.start()
        got = read_partition0(b.bootstrap, topic, len(acked), fetch_max_bytes=1 << 20)
        assert got[:len(acked)] == acked, (len(got), len(acked))
        assert b.stop() == 0
    finally:
        if b.proc and b.proc.poll() is None:
            b.stop(signal.SIGKILL)
