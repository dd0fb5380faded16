"""Fixtures for the workload tests: one real single-node broker (TRIBUTARY_BROKER_BIN, default
target/debug/broker) on free loopback ports - client, controller and HTTP - with a temporary data
directory, ready once /readyz answers 200, killed after the module's tests.

This duplicates the small launcher of e2e/python/conftest.py on purpose: the workload suite does
not depend on the other suite's fixtures, and it sets the controller listener explicitly."""

import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

BIN = os.environ.get("TRIBUTARY_BROKER_BIN", os.path.join(os.path.dirname(__file__), "../../target/debug/broker"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SingleBroker:
    """One combined broker+controller process on free ports."""

    def __init__(self, data_dir: str, **overrides):
        self.port, controller, self.http_port = free_port(), free_port(), free_port()
        self.overrides = {
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}",
            "controller.quorum.voters": f"1@127.0.0.1:{controller}",
            "http.listener": f"127.0.0.1:{self.http_port}",
            "log.dirs": data_dir,
            **overrides,
        }
        self.log_path = data_dir.rstrip("/") + ".log"
        self.proc = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> "SingleBroker":
        if not os.path.exists(BIN):
            raise RuntimeError(f"no broker binary at {BIN}; build it or set TRIBUTARY_BROKER_BIN")
        args = [BIN]
        for k, v in self.overrides.items():
            args += ["--override", f"{k}={v}"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"broker not ready after {timeout}s; see {self.log_path}")

    def stop(self, timeout: float = 20) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture(scope="module")
def broker():
    """A single-node broker shared by the tests of one module."""
    root = tempfile.mkdtemp(prefix="tributary-workload-")
    data = os.path.join(root, "data")
    os.makedirs(data)
    b = SingleBroker(data, **{"group.initial.rebalance.delay.ms": "200"}).start()
    yield b
    b.stop()
