"""Checks a recorded history: `python e2e/workload/check.py HISTORY.jsonl [--out report.json]`.

Prints the summary; exits 0 when the history has no violations, 1 when it has any (allowed
acks=1 losses do not count), 2 when the file cannot be read."""

from __future__ import annotations

import argparse
import sys

import history
import report
from checker import check


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("history", help="JSON lines written by the workload")
    ap.add_argument("--out", help="write the machine-readable report here")
    args = ap.parse_args(argv)
    try:
        meta, ops = history.load(args.history)
    except (OSError, ValueError) as e:
        print(f"cannot read {args.history}: {e}", file=sys.stderr)
        return 2
    result = check(ops, meta)
    print(report.summary(result))
    if args.out:
        report.write_json(result, args.out)
    return 0 if result.valid else 1


if __name__ == "__main__":
    sys.exit(main())
