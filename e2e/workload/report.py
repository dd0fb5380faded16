"""Presentation of a checker `Report`: the one-screen text summary and the JSON file. Nothing
here decides validity; that is `checker.py`."""

from __future__ import annotations

import json

from checker import ALLOWED, LABELS, VIOLATIONS, Report

EXAMPLES = 3
"""Anomalies shown per class in the text summary; the JSON file has all of them."""


def summary(report: Report) -> str:
    """A text summary that fits one screen: run, counts, a table of classes, a few examples and a
    verdict line."""
    m, c = report.meta, report.counts
    lines = [
        f"topic {m.get('topic', '?')}: {c['partitions']} partitions, acks={m.get('acks', '?')}, "
        f"{m.get('producers', '?')} producers, {m.get('consumers', '?')} consumers "
        f"({m.get('consumer_mode', '?')})",
        f"sends: attempted {c['attempted']}, acknowledged {c['acknowledged']}, failed {c['failed']}, "
        f"indeterminate {c['indeterminate']}",
        f"reads: {c['read']} distinct values in {c['polls']} polls; acknowledged but never read "
        f"{c['acknowledged_unread']}; commits ok {c['commits_ok']}; final read complete on "
        f"{c['final_read_complete']}/{c['partitions']} partitions",
        "",
        f"{'class':44} {'count':>6}  per partition",
    ]
    kinds = report.by_kind()
    for kind in VIOLATIONS + ALLOWED:
        found = kinds[kind]
        parts = {}
        for a in found:
            parts[a.partition] = parts.get(a.partition, 0) + 1
        spread = " ".join(f"p{p}:{n}" for p, n in sorted(parts.items(), key=lambda kv: str(kv[0])))
        lines.append(f"{LABELS[kind]:44} {len(found):>6}  {spread}")
    examples = [a for kind in VIOLATIONS + ALLOWED for a in kinds[kind][:EXAMPLES]]
    if examples:
        lines += ["", "examples:"]
        lines += [f"  {a.kind} p{a.partition}: {json.dumps(a.detail)[:160]}" for a in examples]
    if c["final_read_complete"] < c["partitions"]:
        lines.append(f"note: the final read did not reach the end of {c['partitions'] - c['final_read_complete']} "
                     "partitions; there, only writes below an offset someone read can be found lost")
    if c["acknowledged"] == 0:
        lines.append("note: no write was acknowledged; this history shows little")
    n = len(report.violations)
    lines += ["", "VALID: no violations" if n == 0 else f"INVALID: {n} violations"]
    return "\n".join(lines)


def write_json(report: Report, path: str) -> None:
    with open(path, "w", encoding="utf-8") as fp:
        json.dump(report.to_json(), fp, indent=1, sort_keys=False)
        fp.write("\n")
