"""The machine's own ceilings, measured next to the broker figures: sequential disk write into
the data directory's filesystem (dd conv=fdatasync), loopback TCP (a Python sender/receiver pair
with 1 MiB buffers, the same kernel path the broker uses) and memcpy bandwidth (bytearray slice
assignment, which is a memmove in CPython). Does not: touch the broker.
"""

import multiprocessing as mp
import os
import re
import socket
import subprocess
import time

MIB = 1 << 20


def disk_write(directory, mib=2048):
    """MB/s of `dd if=/dev/zero bs=1M count=mib conv=fdatasync` into `directory`."""
    path = os.path.join(directory, "bench-dd.tmp")
    cmd = ["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}", "conv=fdatasync"]
    try:
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
        seconds = time.perf_counter() - t0
    finally:
        if os.path.exists(path):
            os.unlink(path)
    m = re.search(r"copied, ([\d.]+) s", out)
    seconds = float(m.group(1)) if m else seconds
    return {"command": " ".join(cmd), "MB_per_s": mib * MIB / seconds / 1e6, "seconds": seconds}


def prewarm(directory, mib):
    """Writes and deletes a `mib` MiB file without fsync. On this VM (Firecracker) the first
    touch of a guest page costs a host fault, so writes into never-used page cache run at
    ~350 MB/s and later ones at ~4 GB/s; warming first keeps that artifact out of the broker's
    CPU figures. Returns the MB/s of this first write (mostly the fault cost)."""
    path = os.path.join(directory, "bench-prewarm.tmp")
    t0 = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}"],
                   capture_output=True, check=True)
    seconds = time.perf_counter() - t0
    os.unlink(path)
    return {"MB_per_s": mib * MIB / seconds / 1e6, "MiB": mib}


def accept_one(port_q):
    """Listens on a free 127.0.0.1 port, puts the port on `port_q` and returns the first
    connection accepted."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port_q.put(srv.getsockname()[1])
    conn, _ = srv.accept()
    srv.close()
    return conn


def _sink(port_q, seconds_q):
    conn = accept_one(port_q)
    buf = memoryview(bytearray(MIB))
    total = 0
    while (n := conn.recv_into(buf)) > 0:
        total += n
    seconds_q.put(total)


def loopback_tcp(seconds=5.0):
    """MB/s through one 127.0.0.1 TCP connection, sender and receiver in separate processes."""
    ctx = mp.get_context("spawn")
    port_q, total_q = ctx.Queue(), ctx.Queue()
    sink = ctx.Process(target=_sink, args=(port_q, total_q))
    sink.start()
    s = socket.create_connection(("127.0.0.1", port_q.get(timeout=10)))
    chunk = bytes(MIB)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(64):
            s.sendall(chunk)
    s.close()
    total = total_q.get(timeout=30)
    elapsed = time.perf_counter() - t0
    sink.join()
    return {"MB_per_s": total / elapsed / 1e6, "bytes": total}


def memcpy(mib=256, rounds=20):
    """Best-of-rounds MB/s copying a `mib` MiB buffer (bytes copied per second)."""
    src, dst = bytearray(os.urandom(mib * MIB)), bytearray(mib * MIB)
    dst[:] = src  # fault the pages in
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        dst[:] = src
        best = min(best, time.perf_counter() - t0)
    return {"MB_per_s": mib * MIB / best / 1e6, "buffer_MiB": mib}


def measure_all(directory, prewarm_mib):
    return {"prewarm_page_cache_write": prewarm(directory, prewarm_mib),"disk_write": disk_write(directory), "loopback_tcp": loopback_tcp(),
            "memcpy": memcpy()}
