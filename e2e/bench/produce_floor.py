#!/usr/bin/env python3
"""The broker's produce CPU against the kernel's own floor (issue 13's produce target).

Storing a produced batch costs at least a copy from the socket into the process, a check of
the batch's CRC-32C and a copy into the page cache (with the file system's block allocation),
whatever broker does it. To tell the broker's overhead from that, this tool sends the same
Produce requests, from the same writer, to two servers, alternating:

* `broker`: a real broker, a fresh one-partition topic per trial, acks=1;
* `bare`: a minimal server that reads each request into one reused buffer, checks the batch's
  CRC-32C (`google-crc32c`, hardware CRC like the broker's), `pwrite`s the batch to the end of
  a fresh file and answers with a fixed Produce v3 response, and nothing else.

The writer, identical for both: Produce v3 requests (no client library), each one record batch
of `--records` × `--size`-byte records (the default, 1,000 × 1 KiB, is about what librdkafka
sends with `bench.py`'s `batch.size=1000000`), up to `--inflight` requests outstanding on one
socket, paced to `--rate` MB/s of batches (0 = as fast as it can); every response is read and
must say error 0. Every trial sends `--mib` MiB; the figure is the serving process's CPU
(utime+stime from /proc, 1/CLK_TCK resolution) per GB of batches. A tool people run and report;
not a test. Only 127.0.0.1 is contacted.

    python produce_floor.py --broker-bin ../../target/release/broker --rates 0,300 --rounds 4
"""

import argparse
import ctypes
import itertools
import os
import shutil
import socket
import struct
import sys
import threading
import time

import google_crc32c
from kafka.record.default_records import DefaultRecordBatchBuilder

import ceilings
from bench import CTX, Target, log, machine
from fetch_floor import MIB, alternate, connect, report, s16, s32, string
from procstat import Broker, cpu_seconds, steal_seconds


def make_batch(records, size):
    builder = DefaultRecordBatchBuilder(2, 0, False, -1, -1, -1, records * (size + 64) + 1024)
    payload = os.urandom(size)
    now = int(time.time() * 1000)
    for i in range(records):
        builder.append(i, now, None, payload, [])
    return bytes(builder.build())


def recv_exact(sock, buf, n):
    """Reads exactly `n` bytes into the start of `buf` (a memoryview)."""
    got = 0
    while got < n:
        k = sock.recv_into(buf[got:n])
        if not k:
            raise EOFError("peer closed the connection")
        got += k
    return buf[:n]


def writer(port, topic, batch, total, rate, inflight, results):
    """Sends Produce v3 requests of `batch` until `total` bytes of batches were acknowledged."""
    s = connect(port)
    body = (s16(-1) + s16(1) + s32(30_000) + s32(1) + string(topic) + s32(1) + s32(0)
            + s32(len(batch)))
    requests = -(-total // len(batch))
    slots = threading.Semaphore(inflight)
    errors = []

    def read_responses():
        buf = memoryview(bytearray(64 * 1024))
        try:
            for cid in range(requests):
                n = struct.unpack(">i", recv_exact(s, buf, 4))[0]
                resp = recv_exact(s, buf, n)
                # correlation id, 1 topic (name), 1 partition: index, error code
                err = struct.unpack_from(">h", resp, 4 + 4 + 2 + len(topic) + 4 + 4)[0]
                if struct.unpack_from(">i", resp)[0] != cid or err:
                    errors.append((cid, err))
                slots.release()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
            for _ in range(inflight):
                slots.release()

    reader = threading.Thread(target=read_responses)
    reader.start()
    t0 = time.perf_counter()
    for cid in range(requests):
        if rate:
            ahead = cid * len(batch) / rate - (time.perf_counter() - t0)
            if ahead > 0:
                time.sleep(ahead)
        slots.acquire()
        if errors:
            break
        head = s16(0) + s16(3) + s32(cid) + string("produce-floor")
        s.sendmsg([s32(len(head) + len(body) + len(batch)), head, body, batch])
    reader.join()
    s.close()
    results.put({"bytes": requests * len(batch), "errors": errors[:5]})


def bare_server(path, ports):
    """Answers Produce v3 requests: reads each into one buffer, checks the batch's CRC-32C,
    appends the batch to `path` with `pwrite` and sends a fixed response."""
    conn = ceilings.accept_one(ports)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    raw = bytearray(16 * MIB)
    buf = memoryview(raw)
    position, next_offset = 0, 0
    while True:
        try:
            n = struct.unpack(">i", recv_exact(conn, buf, 4))[0]
        except EOFError:
            break
        req = recv_exact(conn, buf, n)
        cid = struct.unpack_from(">i", req, 4)[0]
        at = 8 + 2 + struct.unpack_from(">h", req, 8)[0]  # after the client id
        at += 2 + 2 + 4 + 4  # transactional id (null), acks, timeout, topic count
        name_len = struct.unpack_from(">h", req, at)[0]
        name = bytes(req[at + 2:at + 2 + name_len])
        at += 2 + name_len + 4 + 4  # partition count, index
        size = struct.unpack_from(">i", req, at)[0]
        batch = req[at + 4:at + 4 + size]
        error, base_offset = 0, -1
        # A ctypes view of the batch's CRC'd bytes: google-crc32c takes no writable buffer, and
        # a copy would add work the broker does not do.
        covered = (ctypes.c_char * (size - 21)).from_buffer(raw, at + 4 + 21)
        if google_crc32c.value(covered) != struct.unpack_from(">I", batch, 17)[0]:
            error = 2  # CORRUPT_MESSAGE
        else:
            position += os.pwrite(fd, batch, position)
            base_offset = next_offset
            next_offset += struct.unpack_from(">i", batch, 23)[0] + 1  # last offset delta
        resp = (s32(cid) + s32(1) + s16(len(name)) + name + s32(1) + s32(0) + s16(error)
                + struct.pack(">qq", base_offset, -1) + s32(0))
        conn.sendall(s32(len(resp)) + resp)
    os.close(fd)
    os.unlink(path)


def trial(kind, target, data_dir, batch, total, rate, inflight, n):
    results = CTX.Queue()
    if kind == "broker":
        topic = f"produce-floor-{n}"
        target.create_topic(topic, 1)
        pid, port, server = target.pid, int(target.bootstrap.rsplit(":", 1)[1]), None
    else:
        topic = "bare"
        ports = CTX.Queue()
        server = CTX.Process(target=bare_server, args=(os.path.join(data_dir, f"bare-{n}.log"), ports),
                             daemon=True)
        server.start()
        port = ports.get(timeout=30)
        pid = server.pid
    w = CTX.Process(target=writer, args=(port, topic, batch, total, rate, inflight, results))
    cpu0, t0, st0 = cpu_seconds(pid), time.perf_counter(), steal_seconds()
    w.start()
    got = results.get(timeout=600)
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds(pid) - cpu0
    steal = (steal_seconds() - st0) / (seconds * (os.cpu_count() or 1))
    w.join(30)
    if server:
        server.join(30)
        server.kill()
    else:
        target.delete_topic(topic)
    if got["errors"]:
        raise RuntimeError(f"{kind}: produce failed: {got['errors']}")
    return {"kind": kind, "rate_MB_s": rate / 1e6, "bytes": got["bytes"], "seconds": seconds,
            "MB_per_s": got["bytes"] / seconds / 1e6, "cpu_s": cpu, "steal_share": steal,
            "cpu_s_per_GB": cpu / (got["bytes"] / 1e9)}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker-bin", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                          "target", "release", "broker"))
    ap.add_argument("--data-dir", default="/tmp/tributary-produce-floor")
    ap.add_argument("--mib", type=int, default=2048, help="MiB of batches sent per trial")
    ap.add_argument("--records", type=int, default=1000, help="records per batch")
    ap.add_argument("--size", type=int, default=1024, help="bytes per record value")
    ap.add_argument("--inflight", type=int, default=4, help="requests outstanding")
    ap.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[0.0, 300.0],
                    help="writer pace in MB/s; 0 = unpaced")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out", default="produce-floor.json")
    args = ap.parse_args()
    if google_crc32c.implementation != "c":
        log("google-crc32c has no C implementation here: the bare server's CRC would be Python's")
        return 2
    shutil.rmtree(args.data_dir, ignore_errors=True)
    os.makedirs(args.data_dir)
    # Deleted topics give their pages back at once, as the bare server's unlinked files do.
    broker = Broker(args.broker_bin, os.path.join(args.data_dir, "broker"),
                    overrides={"log.segment.delete.delay.ms": "1000"})
    broker.start()
    target = Target(broker.bootstrap, broker.pid)
    batch = make_batch(args.records, args.size)
    res = {"machine": machine(), "args": vars(args), "batch_bytes": len(batch), "trials": []}
    names = itertools.count()  # a fresh topic or file name per trial
    try:
        alternate(args, res, lambda kind, rate: trial(kind, target, args.data_dir, batch,
                                                      args.mib * MIB, rate, args.inflight, next(names)))
    finally:
        target.admin = None
        res["exit_code"] = broker.stop()
    report(res, args.out, args.rates, "writer pace", "bare server")
    return 0


if __name__ == "__main__":
    sys.exit(main())
