#!/usr/bin/env python3
"""The broker's fetch CPU against the kernel's own floor (issue 13's consume target).

A broker serving a fetch from the page cache mostly pays for the kernel's `sendfile` and
loopback TCP, and how much that costs depends on the reader: how fast it reads and whether it
is waiting on the socket when data arrives. To tell the broker's overhead from the kernel's,
this tool serves the same segment file, to the same reader, two ways, alternating:

* `broker`: Fetch v4 requests (one partition, 4 MiB per partition, one in flight: what
  librdkafka does with one partition) to a real broker, which answers with `sendfile`;
* `bare`: a minimal server that answers each request with a 4-byte length and `sendfile` of
  the next 4 MiB of that same segment file, on a blocking socket, and nothing else.

The reader, identical for both: one blocking socket, `recv_into` a 1 MiB buffer, paced to
`--rate` MB/s (sleeping when ahead; 0 = as fast as it can). Every trial reads `--mib` MiB
(wrapping around the topic); the figure is the serving process's CPU (utime+stime from /proc,
1/CLK_TCK resolution) per GB read. A tool people run and report; not a test. Only 127.0.0.1 is
contacted.

    python fetch_floor.py --broker-bin ../../target/release/broker --rates 150,400,0 --rounds 4
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import struct
import sys
import time

from confluent_kafka import Producer

import ceilings
import load
from bench import CTX, Target, log, machine
from procstat import Broker, cpu_seconds, steal_seconds

MIB = 1 << 20
FETCH_BYTES = 4 * MIB


def s16(x):
    return struct.pack(">h", x)


def s32(x):
    return struct.pack(">i", x)


def string(x):
    return s16(len(x)) + x.encode()


class Reader:
    """Reads from a blocking socket at most `rate` bytes/s into one 1 MiB buffer."""

    def __init__(self, sock, rate):
        self.sock, self.rate = sock, rate
        self.buf = memoryview(bytearray(MIB))
        self.got, self.t0 = 0, time.perf_counter()

    def read(self, n, keep=False):
        out = bytearray() if keep else None
        while n:
            k = self.sock.recv_into(self.buf[:min(n, MIB)])
            if not k:
                raise EOFError("server closed the connection")
            if keep:
                out += self.buf[:k]
            n -= k
            self.got += k
            if self.rate:
                ahead = self.got / self.rate - (time.perf_counter() - self.t0)
                if ahead > 0:
                    time.sleep(ahead)
        return out


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def broker_reader(port, topic, end_offset, total, rate, results):
    """Fetch v4 from offset 0 to `end_offset`, again and again, until `total` bytes arrived;
    the records' batch headers are parsed for the next offset, the rest is only read."""
    s = connect(port)
    r, offset, cid = Reader(s, rate), 0, 0
    while r.got < total:
        body = (s32(-1) + s32(500) + s32(1) + s32(50 * MIB) + b"\x00" + s32(1) + string(topic)
                + s32(1) + s32(0) + struct.pack(">q", offset) + s32(FETCH_BYTES))
        msg = s16(1) + s16(4) + s32(cid) + string("fetch-floor") + body
        cid += 1
        s.sendall(s32(len(msg)) + msg)
        r.read(4)  # frame size
        # correlation id, throttle, 1 topic, its name, 1 partition, index, error, hw, lso
        head = r.read(4 + 4 + 4 + 2 + len(topic) + 4 + 4 + 2 + 8 + 8, keep=True)
        err = struct.unpack_from(">h", head, len(head) - 18)[0]
        if err:
            raise RuntimeError(f"fetch error {err}")
        aborted = struct.unpack(">i", r.read(4, keep=True))[0]
        if aborted > 0:
            r.read(aborted * 16)
        left = struct.unpack(">i", r.read(4, keep=True))[0]
        while left > 0:
            base, length = struct.unpack(">qi", r.read(12, keep=True))
            r.read(11)  # leader epoch, magic, crc, attributes
            offset = base + struct.unpack(">i", r.read(4, keep=True))[0] + 1
            r.read(length - 15)
            left -= 12 + length
        if offset >= end_offset:
            offset = 0
    s.close()
    results.put(r.got)


def bare_reader(port, total, rate, results):
    s = connect(port)
    r = Reader(s, rate)
    while r.got < total:
        s.sendall(s32(8) + b"fetch-me")
        r.read(struct.unpack(">i", r.read(4, keep=True))[0])
    s.close()
    results.put(r.got)


def bare_server(path, ports):
    """Answers each request with the next 4 MiB of `path` (wrapping), by sendfile."""
    conn = ceilings.accept_one(ports)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    fd = os.open(path, os.O_RDONLY)
    size, offset = os.fstat(fd).st_size, 0
    while True:
        head = conn.recv(4, socket.MSG_WAITALL)
        if len(head) < 4:
            return
        conn.recv(struct.unpack(">i", head)[0], socket.MSG_WAITALL)
        if offset >= size:
            offset = 0
        end = min(offset + FETCH_BYTES, size)
        conn.sendall(s32(end - offset))
        while offset < end:
            offset += os.sendfile(conn.fileno(), fd, offset, end - offset)


def trial(kind, target, topic, end_offset, segment, total, rate):
    results = CTX.Queue()
    if kind == "broker":
        pid = target.pid
        reader = CTX.Process(target=broker_reader, args=(
            int(target.bootstrap.rsplit(":", 1)[1]), topic, end_offset, total, rate, results))
        server = None
    else:
        ports = CTX.Queue()
        server = CTX.Process(target=bare_server, args=(segment, ports), daemon=True)
        server.start()
        pid = server.pid
        reader = CTX.Process(target=bare_reader, args=(ports.get(timeout=30), total, rate, results))
    cpu0, t0, st0 = cpu_seconds(pid), time.perf_counter(), steal_seconds()
    reader.start()
    got = results.get(timeout=600)
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds(pid) - cpu0
    steal = (steal_seconds() - st0) / (seconds * (os.cpu_count() or 1))
    reader.join(30)
    if server:
        server.join(10)
        server.kill()
    return {"kind": kind, "rate_MB_s": rate / 1e6, "bytes": got, "seconds": seconds,
            "MB_per_s": got / seconds / 1e6, "cpu_s": cpu, "steal_share": steal,
            "cpu_s_per_GB": cpu / (got / 1e9)}


def alternate(args, res, one_trial):
    """Runs `one_trial(kind, rate in bytes/s)` for every round, pace (`args.rates`, MB/s) and
    server (broker, then bare), appending each result to `res["trials"]` and logging it."""
    for rnd in range(args.rounds):
        for rate in args.rates:
            for kind in ("broker", "bare"):
                t = one_trial(kind, rate * 1e6)
                t["round"] = rnd
                res["trials"].append(t)
                log(f"round {rnd} {kind} pace {rate:.0f} MB/s: {t['MB_per_s']:.0f} MB/s, "
                    f"{t['cpu_s_per_GB']:.3f} CPU-s/GB, steal {t['steal_share']:.1%}")


def report(res, out, rates, pace, bare):
    """Writes `res` to `out` and prints, per pace, the broker's and the bare server's median
    CPU-s/GB and their ratio."""
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    print(f"| {pace} MB/s | broker CPU-s/GB (median) | {bare} CPU-s/GB (median) | ratio |")
    print("|---|---|---|---|")
    for rate in rates:
        med = {k: statistics.median(t["cpu_s_per_GB"] for t in res["trials"]
                                    if t["kind"] == k and t["rate_MB_s"] == rate)
               for k in ("broker", "bare")}
        # a trial too short for one 10 ms CPU tick reads as 0
        ratio = f"{med['broker'] / med['bare']:.2f}" if med["bare"] else "n/a"
        print(f"| {rate:.0f} | {med['broker']:.3f} | {med['bare']:.3f} | {ratio} |")


def fill(target, topic, mib):
    target.create_topic(topic, 1)
    p = Producer({"bootstrap.servers": target.bootstrap, "acks": "1", **load.PRODUCER_THROUGHPUT})
    payload = os.urandom(1024)
    for _ in range(mib * 1024):
        while True:
            try:
                p.produce(topic, payload, partition=0)
                break
            except BufferError:
                p.poll(0.005)
    if p.flush(120):
        raise RuntimeError("fill: messages left unsent")
    return target.end_offsets(topic, 1)[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker-bin", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                          "target", "release", "broker"))
    ap.add_argument("--data-dir", default="/tmp/tributary-fetch-floor")
    ap.add_argument("--topic-mib", type=int, default=512, help="size of the topic read (< 1 GiB: one segment)")
    ap.add_argument("--mib", type=int, default=2048, help="MiB read per trial")
    ap.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[150.0, 400.0, 0.0],
                    help="reader pace in MB/s; 0 = unpaced")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out", default="fetch-floor.json")
    args = ap.parse_args()
    shutil.rmtree(args.data_dir, ignore_errors=True)
    broker = Broker(args.broker_bin, os.path.join(args.data_dir, "broker"))
    broker.start()
    target = Target(broker.bootstrap, broker.pid)
    res = {"machine": machine(), "args": vars(args), "trials": []}
    try:
        end = fill(target, "floor", args.topic_mib)
        segment = os.path.join(args.data_dir, "broker", "floor-0", "00000000000000000000.log")
        log("topic filled:", end, "records,", os.path.getsize(segment) // MIB, "MiB in", segment)
        alternate(args, res, lambda kind, rate: trial(kind, target, "floor", end, segment,
                                                      args.mib * MIB, rate))
    finally:
        target.admin = None
        res["exit_code"] = broker.stop()
    report(res, args.out, args.rates, "reader pace", "bare sendfile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
