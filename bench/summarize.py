#!/usr/bin/env python3
"""Turns bench/compare.sh's results.jsonl into the markdown tables of the report.

Each line is one run: {name, round, fixed: loadgen report at the fixed rate, sat: loadgen
report at saturation, cpu_s: collector CPU seconds during the saturation run, sink_cpu_s,
hwm_fixed_kib / hwm_sat_kib: VmHWM after each phase, queue_kib}. Several rounds of one
name are summarised by their median.
"""

import json
import os
import statistics
import sys


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def metrics(run):
    sat, fixed = run["sat"], run["fixed"]
    sink = sat.get("sink") or {}
    delivered = sink.get("spans") or 0
    # A collector that sends nothing to the sink (S3 writer) is charged per accepted span.
    basis = delivered or sat["accepted_spans"]
    cpu = run.get("cpu_s")
    return {
        "spans_s": sat["accepted_spans_per_s"],
        "delivered_s": delivered / sat["elapsed_s"] if sat["elapsed_s"] else None,
        "cpu_per_m": cpu / basis * 1e6 if cpu is not None and basis else None,
        "bytes_per_span": sink.get("bytes_per_span"),
        "rss_fixed": run["hwm_fixed_kib"] / 1024 if run.get("hwm_fixed_kib") else None,
        "rss_sat": run["hwm_sat_kib"] / 1024 if run.get("hwm_sat_kib") else None,
        "p99_fixed": fixed["latency_ms"]["p99"],
        "p50_fixed": fixed["latency_ms"]["p50"],
        "fixed_rate": fixed["accepted_spans_per_s"],
        "sat_p99": sat["latency_ms"]["p99"],
        "lost": (sink.get("lost_spans") or 0) + ((fixed.get("sink") or {}).get("lost_spans") or 0)
        if delivered
        else None,
        "refused": sum(sat["refused"].values()) + sum(fixed["refused"].values()),
        "errors": sum(sat["transport_errors"].values())
        + sum(fixed["transport_errors"].values()),
        "core0": ((sat.get("generator_cpu_s") or 0) + (run.get("sink_cpu_s") or 0))
        / sat["elapsed_s"] * 100
        if sat["elapsed_s"]
        else None,
        "sink_cpu_per_m": run["sink_cpu_s"] / basis * 1e6
        if run.get("sink_cpu_s") is not None and basis
        else None,
    }


def fmt(v, digits=1, suffix=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}{suffix}"
    return f"{v:,}{suffix}"


def floor_spans_per_s():
    """The prost decode+encode floor from the last criterion run, if there is one."""
    path = os.path.join(
        "target", "criterion", "gateway_10_spans", "floor_prost_decode_encode", "new",
        "estimates.json",
    )
    try:
        with open(path) as f:
            ns = json.load(f)["mean"]["point_estimate"]
        return 10 / (ns * 1e-9)
    except (OSError, KeyError, ValueError):
        return None


def main(path):
    runs = [json.loads(line) for line in open(path) if line.strip()]
    order, by_name = [], {}
    for r in runs:
        if r["name"] not in by_name:
            order.append(r["name"])
        by_name.setdefault(r["name"], []).append(metrics(r))
    summary = {
        name: {k: median([m[k] for m in ms]) for k in ms[0]} | {"rounds": len(ms)}
        for name, ms in by_name.items()
    }

    print("| run | rounds | spans/s at saturation | CPU s / M spans | bytes/span to sink "
          "| peak RSS @ fixed rate (MiB) | peak RSS after saturation (MiB) "
          "| p50 / p99 @ fixed rate (ms) | p99 at saturation (ms) | lost | refused / errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in order:
        s = summary[name]
        print(f"| {name} | {s['rounds']} | {fmt(s['spans_s'], 0)} | {fmt(s['cpu_per_m'], 2)} "
              f"| {fmt(s['bytes_per_span'], 1)} | {fmt(s['rss_fixed'], 1)} | {fmt(s['rss_sat'], 1)} "
              f"| {fmt(s['p50_fixed'], 2)} / {fmt(s['p99_fixed'], 2)} | {fmt(s['sat_p99'], 1)} "
              f"| {fmt(s['lost'], 0)} | {fmt(s['refused'], 0)} / {fmt(s['errors'], 0)} |")
    print()
    print("Per-round saturation throughput (spans/s): " + "; ".join(
        f"{name}: " + ", ".join(fmt(m["spans_s"], 0) for m in by_name[name]) for name in order))
    print()

    tc, rotel = summary.get("tracecast"), summary.get("rotel")
    if tc and rotel:
        def ratio(key):
            a, b = tc.get(key), rotel.get(key)
            return a / b if a is not None and b else None

        rows = [
            ("spans/s at saturation (one core)", ratio("spans_s"), ">= 1.5"),
            ("CPU per span", ratio("cpu_per_m"), "<= 0.67"),
            ("peak RSS at the fixed rate", ratio("rss_fixed"), "<= 1.0"),
            ("bytes per span sent", ratio("bytes_per_span"), "<= 1.2"),
            ("p99 latency at the fixed rate", ratio("p99_fixed"), "(absolute: < 5 ms)"),
        ]
        print("| tracecast / rotel | ratio | target | met |")
        print("|---|---|---|---|")
        for label, r, target in rows:
            met = "-"
            if r is not None and target.startswith(">="):
                met = "yes" if r >= float(target[3:]) else "no"
            elif r is not None and target.startswith("<="):
                met = "yes" if r <= float(target[3:]) else "no"
            elif r is not None:
                met = "yes" if (tc["p99_fixed"] or 1e9) < 5 else "no"
            print(f"| {label} | {fmt(r, 2, 'x')} | {target} | {met} |")
        print()

    priv = summary.get("tracecast-metadata-privacy")
    if tc and priv and tc["spans_s"]:
        cost = 1 - priv["spans_s"] / tc["spans_s"]
        note = (" (faster than passthrough: Privacy Mode removes the content before gzip)"
                if cost < 0 else "")
        print(f"- metadata + privacy cost: {cost * 100:.1f}% of passthrough throughput{note} "
              f"(target <= 15%: {'met' if cost <= 0.15 else 'missed'})")
    floor = floor_spans_per_s()
    if tc and floor:
        share = tc["spans_s"] / floor
        print(f"- pure prost decode+encode floor (criterion, one core): {floor:,.0f} spans/s; "
              f"tracecast passthrough reaches {share * 100:.0f}% of it (target >= 50%: "
              f"{'met' if share >= 0.5 else 'missed'})")
    direct = summary.get("loadgen -> sink direct")
    if direct:
        print(f"- harness floor (generator straight into the sink, both on core 0): "
              f"{fmt(direct['spans_s'], 0)} spans/s, p99 at the fixed rate "
              f"{fmt(direct['p99_fixed'], 2)} ms")
    core0 = [f"{n}: {fmt(summary[n]['core0'], 0)}%" for n in order
             if summary[n].get("core0") is not None]
    if core0:
        print("- core 0 busy during saturation (generator incl. set-up + sink; near 100% means "
              "the harness, not the collector, limited the run): " + ", ".join(core0))
    sinks = [f"{n}: {fmt(summary[n]['sink_cpu_per_m'], 2)}" for n in order
             if summary[n].get("sink_cpu_per_m") is not None]
    if sinks:
        print("- sink CPU s / M spans on core 0 (gunzip + counting): " + ", ".join(sinks))


if __name__ == "__main__":
    main(sys.argv[1])
