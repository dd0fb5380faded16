"""Hand-encoded Kafka requests for cases no client library sends on purpose (stale producer
epochs, sequence gaps). Only the few request/response versions the tests need."""

import socket
import struct
import time

from kafka.record.default_records import DefaultRecordBatchBuilder


def _string(s):
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _call(port, api_key, version, body, corr=7):
    header = struct.pack(">hhi", api_key, version, corr) + _string("rawproto")
    frame = header + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(struct.pack(">i", len(frame)) + frame)
        (size,) = struct.unpack(">i", _recv(s, 4))
        resp = _recv(s, size)
    (got,) = struct.unpack(">i", resp[:4])
    assert got == corr
    return resp[4:]


def _recv(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, "connection closed"
        buf += chunk
    return buf


def init_producer_id(port):
    """InitProducerId v0 for an idempotent (non-transactional) producer: the producer id."""
    resp = _call(port, 22, 0, _string(None) + struct.pack(">i", 60000))
    _throttle, error, pid, epoch = struct.unpack(">ihqh", resp)
    assert error == 0 and pid >= 0 and epoch == 0, (error, pid, epoch)
    return pid


def produce_raw(port, topic, pid, epoch, seq, n, partition=0):
    """Produce v3 (acks=-1) of one batch of n records with the given producer id, epoch and base
    sequence; returns (error code, base offset)."""
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=pid, producer_epoch=epoch, base_sequence=seq,
                                  batch_size=1 << 20)
    now = int(time.time() * 1000)
    for i in range(n):
        b.append(i, now, None, f"s{seq + i}".encode(), [])
    records = bytes(b.build())
    body = (_string(None) + struct.pack(">hi", -1, 10000) + struct.pack(">i", 1) + _string(topic)
            + struct.pack(">i", 1) + struct.pack(">ii", partition, len(records)) + records)
    resp = _call(port, 0, 3, body)
    (ntopics,) = struct.unpack(">i", resp[:4])
    assert ntopics == 1
    (name_len,) = struct.unpack(">h", resp[4:6])
    at = 6 + name_len
    (nparts,) = struct.unpack(">i", resp[at:at + 4])
    assert nparts == 1
    _part, error, base_offset, _append_time = struct.unpack(">ihqq", resp[at + 4:at + 26])
    return error, base_offset


def _read_string(buf, at):
    (n,) = struct.unpack(">h", buf[at:at + 2])
    if n < 0:
        return None, at + 2
    return buf[at + 2:at + 2 + n].decode(), at + 2 + n


def produce_v8(port, topic, keys, partition=0):
    """Produce v8 (acks=-1) of one batch with one record per key (None: no key); returns
    (error code, error message, [(batch index, message)] record errors)."""
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                  batch_size=1 << 20)
    now = int(time.time() * 1000)
    for i, key in enumerate(keys):
        b.append(i, now, key, f"v{i}".encode(), [])
    records = bytes(b.build())
    body = (_string(None) + struct.pack(">hi", -1, 10000) + struct.pack(">i", 1) + _string(topic)
            + struct.pack(">i", 1) + struct.pack(">ii", partition, len(records)) + records)
    resp = _call(port, 0, 8, body)
    (ntopics,) = struct.unpack(">i", resp[:4])
    assert ntopics == 1
    _name, at = _read_string(resp, 4)
    (nparts,) = struct.unpack(">i", resp[at:at + 4])
    assert nparts == 1
    _part, error, _base, _append_time, _log_start = struct.unpack(">ihqqq", resp[at + 4:at + 34])
    at += 34
    (nerrors,) = struct.unpack(">i", resp[at:at + 4])
    at += 4
    record_errors = []
    for _ in range(nerrors):
        (index,) = struct.unpack(">i", resp[at:at + 4])
        message, at = _read_string(resp, at + 4)
        record_errors.append((index, message))
    message, at = _read_string(resp, at)
    return error, message, record_errors
