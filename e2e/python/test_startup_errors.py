"""Every fatal start-up error is one line on stderr naming the cause, the setting or path, and
what to do; the process exits with status 1 and prints no backtrace unless RUST_BACKTRACE asks."""

import os
import socket
import subprocess
import tempfile

import pytest

from conftest import BIN, Broker


def fail_to_start(data_dir, env_extra=None, **overrides):
    """Runs the broker, expects it to exit by itself with status 1; returns its stderr line."""
    b = Broker(data_dir, **overrides)
    args = [BIN]
    for k, v in b.overrides.items():
        args += ["--override", f"{k}={v}"]
    env = {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")}
    env.update(env_extra or {})
    proc = subprocess.run(args, capture_output=True, timeout=30, env=env)
    err = proc.stderr.decode()
    assert proc.returncode == 1, (proc.returncode, err, proc.stdout.decode()[-2000:])
    return err


def one_line(err):
    lines = err.splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("error: "), line
    for noise in ("Caused by", "backtrace", "panicked"):
        assert noise not in line, line
    return line


@pytest.fixture
def data_dir():
    d = tempfile.mkdtemp(prefix="tributary-start-")
    return os.path.join(d, "data")


def test_an_invalid_setting(data_dir):
    line = one_line(fail_to_start(data_dir, node_id="one"))
    assert 'invalid value "one" for node.id' in line
    assert "fix node.id in the properties file, the environment (TRIBUTARY_NODE_ID) or --override" in line


def test_a_kafka_port_in_use(data_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        line = one_line(fail_to_start(data_dir, listeners=f"PLAINTEXT://127.0.0.1:{port}"))
    assert f"failed to bind kafka listener on 127.0.0.1:{port}" in line
    assert f"another process is listening on port {port}: stop it, or set listeners to a free port" in line


def test_a_log_dir_that_is_not_a_directory(data_dir):
    os.makedirs(os.path.dirname(data_dir), exist_ok=True)
    with open(data_dir, "w") as f:
        f.write("not a directory")
    line = one_line(fail_to_start(os.path.join(data_dir, "sub")))
    assert f"failed to prepare log directory {data_dir}/sub" in line
    assert "set log.dirs to a directory" in line


def test_an_unwritable_log_dir(data_dir):
    os.makedirs(data_dir)
    if os.geteuid() == 0:
        # root writes through permissions: make the filesystem read-only instead
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", data_dir], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a read-only tmpfs: {r.stderr.decode().strip()}")
        advice = "the filesystem is read-only: mount it read-write or set log.dirs to a writable directory"
    else:
        os.chmod(data_dir, 0o555)
        advice = "the broker's user cannot write there: give it the directory (chown/chmod) or set log.dirs"
    try:
        line = one_line(fail_to_start(data_dir))
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", data_dir], check=True)
    assert data_dir in line
    assert advice in line


def test_a_corrupt_meta_properties(data_dir):
    os.makedirs(data_dir)
    with open(os.path.join(data_dir, "meta.properties"), "wb") as f:
        f.write(b"version=1\nnode.id=1\n\x00\x00\x00")
    line = one_line(fail_to_start(data_dir))
    assert f"{data_dir}/meta.properties is corrupt: no cluster.id; restore it from a backup" in line
    # the file is left as it was for the operator to repair
    with open(os.path.join(data_dir, "meta.properties"), "rb") as f:
        assert f.read().endswith(b"\x00\x00\x00")


def test_a_mismatched_cluster_id(data_dir):
    os.makedirs(data_dir)
    b = Broker(data_dir).start()
    try:
        cluster_id = b.metrics() and open(os.path.join(data_dir, "meta.properties")).read().split("cluster.id=")[1].split()[0]
    finally:
        assert b.stop() == 0
    line = one_line(fail_to_start(data_dir, cluster_id="AAAAAAAAAAAAAAAAAAAAAA"))
    assert f"cluster.id is set to AAAAAAAAAAAAAAAAAAAAAA, but {data_dir}/meta.properties belongs to cluster {cluster_id}" in line
    assert f"set cluster.id={cluster_id} (or remove it), or give this node an empty log directory" in line


def test_rust_backtrace_adds_the_chain(data_dir):
    err = fail_to_start(data_dir, env_extra={"RUST_BACKTRACE": "1"}, node_id="one")
    assert err.startswith("error: invalid value")
    assert len(err.splitlines()) > 1
