"""Shared fixtures: run the real broker binary (TRIBUTARY_BROKER_BIN) on free loopback ports
with a temporary data directory, wait for /readyz, and stop it after the tests."""

import os
import signal
import sys
import subprocess
import tempfile
import time
import urllib.request
import uuid

import pytest

BIN = os.environ.get("TRIBUTARY_BROKER_BIN", os.path.join(os.path.dirname(__file__), "../../target/debug/broker"))


# One port allocator for every suite (below the ephemeral range, never handed out twice).
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from harness import free_port  # noqa: E402


class Broker:
    """One broker process; `restart()` keeps the data directory."""

    def __init__(self, data_dir, **overrides):
        self.data_dir = data_dir
        self.port = free_port()
        self.http_port = free_port()
        self.controller_port = free_port()
        self.overrides = {
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "http.listener": f"127.0.0.1:{self.http_port}",
            "log.dirs": data_dir,
            **{k.replace("_", "."): str(v) for k, v in overrides.items()},
        }
        self.proc = None
        # Runs in the child before exec (e.g. to lower its resource limits).
        self.preexec_fn = None
        self.log_path = os.path.join(data_dir, "..", os.path.basename(data_dir) + ".log")

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=20):
        args = [BIN]
        for k, v in self.overrides.items():
            args += ["--override", f"{k}={v}"]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, preexec_fn=self.preexec_fn)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("broker did not become ready")

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout)
        code = self.proc.returncode if self.proc else None
        self.proc = None
        return code

    def restart(self):
        self.stop()
        return self.start()

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=2) as r:
            return r.read().decode()


@pytest.fixture
def make_broker():
    """Factory for brokers with their own data directory; all are stopped at teardown."""
    made = []
    root = tempfile.mkdtemp(prefix="tributary-e2e-")

    def make(**overrides):
        d = os.path.join(root, f"b{len(made)}")
        os.makedirs(d)
        b = Broker(d, **overrides)
        made.append(b)
        return b.start()

    yield make
    for b in made:
        b.stop(signal.SIGKILL) if b.proc and b.proc.poll() is None else None


@pytest.fixture(scope="module")
def broker():
    """A broker shared by the tests of one module."""
    root = tempfile.mkdtemp(prefix="tributary-e2e-")
    d = os.path.join(root, "data")
    os.makedirs(d)
    b = Broker(d, log_retention_check_interval_ms=200).start()
    yield b
    assert b.stop() == 0, "broker did not stop cleanly on SIGTERM"


@pytest.fixture
def topic():
    return f"t-{uuid.uuid4().hex[:10]}"
