"""Memory of idle connections: starts a broker, reads its RSS, opens N connections that send
nothing (then N that each sent one ApiVersions request and went quiet), and reads the RSS again.

    python e2e/bench/idle_connections.py target/release/broker 10000

Run as a user whose `ulimit -n` is above N + 100 (the broker raises its own soft limit to the
hard one). A measurement, not a test: docs/benchmarks.md reports its output."""

import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from harness import free_port  # noqa: E402


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS")).split()[1])


def api_versions_request():
    header = struct.pack(">hhih", 18, 3, 1, 4) + b"idle"
    body = b"\x05idle" + b"\x021" + b"\x00"  # client software name, version, no tags
    frame = header + b"\x00" + body  # header tags, body
    return struct.pack(">i", len(frame)) + frame


def measure(binary, n, talk):
    """RSS before and after n connections (each sending one ApiVersions when `talk`), on a fresh
    broker; returns (start KiB, with connections KiB)."""
    data = tempfile.mkdtemp(prefix="tributary-idle-")
    port, ctl, http = free_port(), free_port(), free_port()
    args = [binary, "--override", f"log.dirs={data}/d", "--override", f"listeners=PLAINTEXT://127.0.0.1:{port}",
            "--override", f"controller.quorum.voters=1@127.0.0.1:{ctl}",
            "--override", f"http.listener=127.0.0.1:{http}"]
    proc = subprocess.Popen(args, stdout=open(f"{data}/broker.log", "w"), stderr=subprocess.STDOUT)
    socks = []
    try:
        time.sleep(2)
        base = rss_kib(proc.pid)
        req = api_versions_request()
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            if talk:
                s.sendall(req)
            socks.append(s)
        if talk:
            for s in socks:
                (size,) = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))
                s.recv(size, socket.MSG_WAITALL)
        time.sleep(2)
        return base, rss_kib(proc.pid)
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        proc.wait()


def main():
    binary, n = sys.argv[1], int(sys.argv[2])
    for talk in (False, True):
        base, after = measure(binary, n, talk)
        what = "after one ApiVersions each" if talk else "silent"
        print(f"{n} connections, {what}: RSS {base} -> {after} KiB, "
              f"{(after - base) * 1024 / n:.0f} bytes per connection")


if __name__ == "__main__":
    main()
