"""Client-side load: producer and consumer worker processes and the paced latency probe.

Owns: confluent-kafka (librdkafka) clients configured for throughput (batching producers,
assign()-based consumers with large fetches) or for latency (linger.ms=0, one message at a time).
Workers run in separate processes (spawned, never forked after librdkafka started threads) so
several Python interpreters can drive the broker; each waits on a shared start event after its
connection is warm, so the parent's timing and CPU snapshots cover only the transfer.
Does not: read /proc of the broker or create topics.
"""

import os
import time

from confluent_kafka import Consumer, Producer, TopicPartition

PRODUCER_THROUGHPUT = {
    "linger.ms": 10,
    "batch.size": 1_000_000,
    "queue.buffering.max.messages": 2_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "compression.type": "none",
    "enable.idempotence": False,
    "delivery.report.only.error": True,
}

CONSUMER_THROUGHPUT = {
    # Required by the Python wrapper; assign() readers never commit (groups.py measures groups).
    "group.id": "tributary-bench",
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "fetch.max.bytes": 52_428_800,
    "max.partition.fetch.bytes": 4_194_304,
    "fetch.wait.max.ms": 100,
    # Bounds how far a consumer reading an offset range prefetches past its end.
    "queued.max.messages.kbytes": 16_384,
}


def _client_cpu():
    t = os.times()
    return t.user + t.system


def produce_worker(bootstrap, topic, partitions, count, size, acks, start, results):
    """Produces `count` messages of `size` random bytes round-robin over `partitions`."""
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": str(acks),
                  "on_delivery": lambda err, msg: errors.append(err) if err else None,
                  **PRODUCER_THROUGHPUT})
    p.list_topics(topic, timeout=10)  # connect and learn leaders before the clock starts
    payload = os.urandom(size)
    results.put(("ready", os.getpid()))
    start.wait()
    cpu0, t0 = _client_cpu(), time.perf_counter()
    produce, poll = p.produce, p.poll
    for i in range(count):
        while True:
            try:
                produce(topic, payload, partition=i % partitions)
                break
            except BufferError:
                poll(0.005)
    left = p.flush(120)
    results.put(("done", {"sent": count - left, "errors": [str(e) for e in errors[:5]],
                          "n_errors": len(errors), "seconds": time.perf_counter() - t0,
                          "client_cpu": _client_cpu() - cpu0}))


def split_ranges(ends, consumers):
    """Divides {partition: end offset} into `consumers` lists of (partition, start, end), whole
    partitions when there are enough of them, else offset ranges of each partition."""
    parts = sorted(ends)
    if len(parts) >= consumers:
        return [[(p, 0, ends[p]) for p in parts[i::consumers]] for i in range(consumers)]
    per = consumers // len(parts)
    out = []
    for p in parts:
        step = max(1, -(-ends[p] // per))
        out += [[(p, lo, min(lo + step, ends[p]))] for lo in range(0, ends[p], step)]
    return [r for r in out if r]


def consume_worker(bootstrap, topic, ranges, size, start, results):
    """Reads each (partition, start, end) range once; counts only offsets inside the ranges."""
    c = Consumer({"bootstrap.servers": bootstrap, **CONSUMER_THROUGHPUT})
    c.list_topics(topic, timeout=10)
    results.put(("ready", os.getpid()))
    start.wait()
    cpu0, t0 = _client_cpu(), time.perf_counter()
    end = {p: hi for p, _, hi in ranges}
    got = dict.fromkeys(end, 0)
    c.assign([TopicPartition(topic, p, lo) for p, lo, _ in ranges])
    open_parts, bad = {p for p, lo, hi in ranges if hi > lo}, 0
    while open_parts and time.perf_counter() - t0 < 300:
        for m in c.consume(10_000, 1.0):
            if m.error():
                bad += 1
                continue
            p = m.partition()
            if p in open_parts and m.offset() < end[p]:
                got[p] += 1
                if m.offset() == end[p] - 1:
                    open_parts.discard(p)
                    c.pause([TopicPartition(topic, p)])
    seconds = time.perf_counter() - t0
    c.close()
    results.put(("done", {"received": sum(got.values()), "errors": bad, "seconds": seconds,
                          "client_cpu": _client_cpu() - cpu0, "size_checked": size}))


def rtt_windows(stats):
    """From one librdkafka statistics JSON (parsed): the request round-trip window (`rtt`,
    microseconds) of each broker connection that sent requests in it."""
    out = []
    for b in stats.get("brokers", {}).values():
        w = b.get("rtt", {})
        if b.get("nodeid", -1) >= 0 and w.get("cnt", 0) > 0:
            out.append({k: w[k] for k in ("cnt", "p50", "p99", "max")})
    return out


def poll_until(client, target):
    """Serves `client`'s callbacks until time.perf_counter() reaches `target`, without spinning.

    confluent-kafka truncates a poll timeout to whole milliseconds, so `poll(target - now)`
    with less than 1 ms left is poll(0) in a loop: a paced client at 1,000 msg/s then spins a
    whole CPU, which on a 2-CPU machine takes it from the broker and from librdkafka's own
    threads (measured in docs/benchmarks.md: p99.9 2.4-3.5 ms spinning, 1.1-1.6 ms not).
    Polling at least 1 ms instead still returns as soon as a delivery report is queued, so
    latencies stay exact; a send may start up to 1 ms late, which later ones make up."""
    while (now := time.perf_counter()) < target:
        client.poll(max(target - now, 0.001))


def raw_latency_probe(bootstrap, topic, rate, seconds, warmup, size, acks, results, stats=False):
    """`latency_probe` without a client library: one Produce v3 request of one `size`-byte
    record every 1/rate s on a blocking socket (TCP_NODELAY), timed from before its send to the
    end of its response, which is checked (error 0, offsets one apart). What it measures is
    the broker, the kernel's loopback and the machine's wake-ups, not librdkafka's queues and
    threads; `stats` is accepted for the same call signature and ignored."""
    import socket
    import struct

    from kafka.record.default_records import DefaultRecordBatchBuilder

    host, port = bootstrap.rsplit(":", 1)
    builder = DefaultRecordBatchBuilder(2, 0, False, -1, -1, -1, size + 1024)
    builder.append(0, int(time.time() * 1000), None, os.urandom(size), [])
    batch = bytes(builder.build())

    def string(x):
        return struct.pack(">h", len(x)) + x.encode()

    acks = -1 if str(acks) == "all" else int(acks)
    body = (struct.pack(">hhi", -1, acks, 30_000) + struct.pack(">i", 1) + string(topic)
            + struct.pack(">iii", 1, 0, len(batch)) + batch)
    head = struct.pack(">hh", 0, 3)
    client_id = string("tributary-raw-probe")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def recv_exact(n):
        buf = bytearray()
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("broker closed the connection")
            buf += chunk
        return buf

    lat, errors, last = [], 0, None
    total = int(rate * (seconds + warmup))
    t0 = time.perf_counter()
    for i in range(total):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        msg = head + struct.pack(">i", i) + client_id + body
        sent = time.perf_counter()
        sock.sendall(struct.pack(">i", len(msg)) + msg)
        resp = recv_exact(struct.unpack(">i", recv_exact(4))[0])
        done = time.perf_counter()
        # correlation id, 1 topic (name), 1 partition: index, error code, base offset
        at = 8 + 2 + len(topic) + 4 + 4
        err, offset = struct.unpack_from(">hq", resp, at)
        if struct.unpack_from(">i", resp)[0] != i or err != 0 or (last is not None and offset != last + 1):
            errors += 1
        last = offset
        lat.append(done - sent)
    elapsed = time.perf_counter() - t0
    sock.close()
    skip = int(rate * warmup)
    results.put({"latencies": lat[skip:], "errors": errors, "sent": total,
                 "achieved_rate": total / elapsed, "rtt_windows": []})


def latency_probe(bootstrap, topic, rate, seconds, warmup, size, acks, results, stats=False):
    """Sends one `size`-byte message every 1/rate s with linger.ms=0 and records, per message,
    the time from produce() to its delivery report; the first `warmup` seconds are dropped.
    With `stats`, librdkafka's request round-trip windows after the warm-up are returned too."""
    import json

    rtt = []
    conf = {"bootstrap.servers": bootstrap, "acks": str(acks), "linger.ms": 0,
            "enable.idempotence": False, "compression.type": "none"}
    if stats:
        conf.update({"statistics.interval.ms": 1000,
                     "stats_cb": lambda s: rtt.append(rtt_windows(json.loads(s)))})
    p = Producer(conf)
    p.list_topics(topic, timeout=10)
    payload = os.urandom(size)
    lat, errors = [], [0]

    def report(err, _msg, sent):
        if err:
            errors[0] += 1
        else:
            lat.append(time.perf_counter() - sent)

    total = int(rate * (seconds + warmup))
    t0 = time.perf_counter()
    for i in range(total):
        poll_until(p, t0 + i / rate)
        sent = time.perf_counter()
        p.produce(topic, payload, partition=0,
                  on_delivery=lambda err, msg, s=sent: report(err, msg, s))
        p.poll(0)
    p.flush(30)
    elapsed = time.perf_counter() - t0
    p.poll(1.1)  # the last statistics window
    skip = int(rate * warmup)
    windows = [w for ws in rtt[int(warmup):] for w in ws]
    results.put({"latencies": lat[skip:], "errors": errors[0], "sent": total,
                 "achieved_rate": total / elapsed, "rtt_windows": windows})
