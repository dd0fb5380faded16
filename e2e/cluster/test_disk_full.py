"""A full disk on one broker of three, under the workload (RF 3, min.insync.replicas=2, idempotent
acks=all producers): broker 103's data directory is a small tmpfs of its own; a filler file
takes all of its free space for 8 s, then is deleted. While the disk is full the broker must
refuse writes cleanly (its partitions' clients see KAFKA_STORAGE_ERROR or a new leader, never a
half-written batch), and nothing acknowledged may be lost; once space returns it must catch up
and be back in every ISR. Needs root (mount)."""

import os
import shutil
import subprocess

import pytest

from test_replication import RF3, run_with_faults  # noqa: I100 - first: puts e2e/workload on the path

import report  # noqa: E402
from clientops import admin  # noqa: E402
from harness import Cluster, wait_for  # noqa: E402

TMPFS_MIB = 96


@pytest.fixture
def small_disk_cluster():
    if os.geteuid() != 0 or shutil.which("mount") is None:
        if os.environ.get("TRIBUTARY_REQUIRE_NETNS") == "1":
            pytest.fail("a tmpfs data directory needs root and mount")
        pytest.skip("a tmpfs data directory needs root and mount")
    c = Cluster(controllers=1, brokers=3, replica_lag_time_max_ms=3000, default_replication_factor=3)
    small = c.nodes[103].data_dir
    os.makedirs(small, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MIB}m", "tmpfs", small], check=True)
    try:
        c.start()
        yield c
    finally:
        try:
            c.stop()
        finally:
            c.kill_all()
            subprocess.run(["umount", "-l", small], check=False)


def fill_up(path):
    """Writes zeros into `path` until the filesystem is full; returns the bytes written."""
    written = 0
    chunk = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                written += f.write(chunk)
        except OSError:
            pass
        try:
            while True:  # the last pages
                written += f.write(b"\0" * 4096)
        except OSError:
            pass
    return written


def test_a_full_disk_on_one_broker_loses_nothing_and_it_recovers(small_disk_cluster, tmp_path):
    c = small_disk_cluster
    b = c.nodes[103]
    filler = os.path.join(b.data_dir, "filler")
    seen = {}

    def schedule(topic, at):
        def full():
            seen["filled"] = fill_up(filler)
            seen["free_while_full"] = shutil.disk_usage(b.data_dir).free

        def space_back():
            os.unlink(filler)

        at(4, "fill broker 103's disk", full)
        at(12, "free broker 103's disk", space_back)

    result, faults = run_with_faults(c, tmp_path, schedule, duration=22)
    print(report.summary(result), seen)
    assert len(faults) == 2, faults
    assert seen["free_while_full"] < 64 * 1024, seen
    assert result.valid, report.summary(result)
    assert result.counts["acknowledged"] > 1000
    assert result.counts["acknowledged_unread"] == 0
    assert b.alive(), "a full disk is not a reason to die"
    a = admin(c.nodes[101].bootstrap)

    def all_isrs_full():
        md = a.list_topics(timeout=5)
        return all(103 in pm.isrs for t in md.topics.values() for pm in t.partitions.values()
                   if 103 in pm.replicas)

    wait_for("103 back in every ISR it belongs to", all_isrs_full, 60)
    log = b.log()
    assert "No space left on device" in log, "the broker says why it refuses"
