#!/usr/bin/env python3
"""Turns a bench.py results JSON into the Markdown tables of docs/benchmarks.md.
Usage: report.py bench-results.json"""

import json
import statistics
import sys
from itertools import groupby

MIB = 1024.0


def _med(xs):
    return statistics.median(xs)


def _spread(xs, fmt):
    return f"{fmt.format(_med(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})" if len(xs) > 1 \
        else fmt.format(xs[0])


def throughput_table(runs):
    rows = ["| msg | acks | parts | produce MB/s | produce msg/s | produce CPU-s/GB | "
            "consume MB/s | consume msg/s | consume CPU-s/GB | client CPU-s/GB p/c | peak RSS MiB |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    key = lambda r: (r["size"], r["acks"], r["partitions"])
    for (size, acks, parts), grp in groupby(sorted(runs, key=key), key):
        grp = list(grp)
        col = lambda ph, k: [r[ph][k] for r in grp]
        ccpu = lambda ph: _med([r[ph]["client_cpu_s"] / (r[ph]["bytes"] / 1e9) for r in grp])
        rss = max(max(r["produce"]["peak_rss_kib"], r["consume"]["peak_rss_kib"]) for r in grp)
        rows.append(
            f"| {size // 1024} KiB | {acks} | {parts} | {_spread(col('produce', 'MB_per_s'), '{:.0f}')} "
            f"| {_med(col('produce', 'msgs_per_s')):,.0f} | {_spread(col('produce', 'cpu_s_per_GB'), '{:.2f}')} "
            f"| {_spread(col('consume', 'MB_per_s'), '{:.0f}')} | {_med(col('consume', 'msgs_per_s')):,.0f} "
            f"| {_spread(col('consume', 'cpu_s_per_GB'), '{:.2f}')} | {ccpu('produce'):.1f} / {ccpu('consume'):.1f} "
            f"| {rss / MIB:.1f} |")
    return "\n".join(rows)


def markdown(res):
    out = []
    m = res["machine"]
    out.append(f"Machine: {m['nproc']} CPUs, {m['cpu_model']}, kernel {m['kernel']}, "
               f"{m['mem_total_kib'] / MIB / 1024:.1f} GiB RAM, {m['date']}, "
               f"loadavg at start {m['loadavg_start']}")
    if "ceilings" in res:
        c = res["ceilings"]
        out.append(f"\nCeilings: disk write {c['disk_write']['MB_per_s']:.0f} MB/s "
                   f"(`{c['disk_write']['command']}`), loopback TCP {c['loopback_tcp']['MB_per_s']:.0f} MB/s, "
                   f"memcpy {c['memcpy']['MB_per_s']:.0f} MB/s; first-touch page-cache write (warm-up) "
                   f"{c['prewarm_page_cache_write']['MB_per_s']:.0f} MB/s")
    out.append("\n" + throughput_table(res["runs"]))
    for lat in res.get("latency", []):
        out.append(f"\nLatency acks={lat['acks']} at {lat['achieved_rate']:.0f} msg/s, "
                   f"{lat['samples']} samples: p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, "
                   f"p99.9 {lat['p999_ms']:.2f} ms, max {lat['max_ms']:.2f} ms, errors {lat['errors']}")
    out.append(f"\nRSS idle: {res['rss_idle_empty_kib'] / MIB:.1f} MiB empty, "
               f"{res['rss_idle_100_partitions_kib'] / MIB:.1f} MiB with 100 partitions; "
               f"VmHWM {res['rss_hwm_kib'] / MIB:.1f} MiB")
    for k in ("ready_empty", "ready_with_data"):
        if k in res:
            out.append(f"{k}: median {res[k]['median_s'] * 1e3:.1f} ms of "
                       f"{[round(s * 1e3, 1) for s in res[k]['starts']]}")
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown(json.load(open(sys.argv[1]))))
