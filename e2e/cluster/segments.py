"""Reads the batch headers of a partition's segment files (Kafka's record batch v2 layout), for
diagnosing a checker violation from what each broker really stored: which leader epoch wrote a
batch, and which producer id, producer epoch and sequence it carries.

    python3 e2e/cluster/segments.py <partition directory> [first offset] [last offset]
"""

import os
import struct
import sys

# base offset (q), batch length (i), partition leader epoch (i), magic (b), crc (I),
# attributes (h), last offset delta (i), base timestamp (q), max timestamp (q),
# producer id (q), producer epoch (h), base sequence (i), records count (i)
_HEADER = struct.Struct(">qiibIhiqqqhii")
_LOG_OVERHEAD = 12  # base offset + batch length


def batches(partition_dir):
    """Yields one dict per batch of every `.log` file, in offset order."""
    logs = sorted(f for f in os.listdir(partition_dir) if f.endswith(".log"))
    for name in logs:
        with open(os.path.join(partition_dir, name), "rb") as f:
            data = f.read()
        pos = 0
        while pos + _HEADER.size <= len(data):
            (base, length, leader_epoch, magic, _crc, attrs, last_delta, _bts, max_ts, pid, pepoch,
             seq, count) = _HEADER.unpack_from(data, pos)
            if length <= 0 or pos + _LOG_OVERHEAD + length > len(data):
                break
            yield {"segment": name, "base_offset": base, "last_offset": base + last_delta,
                   "leader_epoch": leader_epoch, "magic": magic, "attributes": attrs,
                   "producer_id": pid, "producer_epoch": pepoch, "base_sequence": seq,
                   "records": count, "max_timestamp": max_ts}
            pos += _LOG_OVERHEAD + length


def around(partition_dir, first, last):
    """The batches that hold any offset in [first, last]."""
    if not os.path.isdir(partition_dir):
        return []
    return [b for b in batches(partition_dir) if b["last_offset"] >= first and b["base_offset"] <= last]


def format_batch(b):
    return (f"offsets {b['base_offset']}-{b['last_offset']} leader epoch {b['leader_epoch']} "
            f"producer {b['producer_id']} epoch {b['producer_epoch']} seq {b['base_sequence']} "
            f"records {b['records']}")


def describe_duplicates(cluster, topic, violations, margin=3):
    """Text describing, for each duplicate the checker found, the batches every broker stored
    around its positions."""
    lines = []
    for v in violations:
        if v.kind != "duplicate":
            continue
        positions = v.detail.get("positions", [])
        lines.append(f"duplicate {v.detail.get('value')} at {positions}")
        for partition in sorted({p for p, _ in positions}):
            offsets = [o for p, o in positions if p == partition]
            for broker in cluster.brokers:
                d = os.path.join(broker.data_dir, f"{topic}-{partition}")
                for b in around(d, min(offsets) - margin, max(offsets) + margin):
                    lines.append(f"  broker {broker.node_id} {topic}-{partition}: {format_batch(b)}")
    return "\n".join(lines)


if __name__ == "__main__":
    lo = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    hi = int(sys.argv[3]) if len(sys.argv) > 3 else 2**62
    for b in around(sys.argv[1], lo, hi):
        print(format_batch(b))
