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
    lines = [json.loads(line) for line in open(path) if line.strip()]
    runs = [r for r in lines if "kind" not in r]
    floor = next((r for r in lines if r.get("kind") == "floor"), None)
    s3_runs = [r for r in lines if r.get("kind") == "s3"]
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

        def check(r, target):
            if r is None:
                return "-"
            if target.startswith(">="):
                return "yes" if r >= float(target[3:]) else "no"
            return "yes" if r <= float(target[3:]) else "no"

        print("| target (issue 16) | tracecast | rotel | ratio | target | met |")
        print("|---|---|---|---|---|---|")
        for label, run in [("default config", tc),
                           ("metadata, privacy, batch", summary.get("tracecast-metadata-privacy"))]:
            if not run:
                continue
            for what, key, digits, target in [
                ("spans/s at saturation, one core", "spans_s", 0, ">= 3"),
                ("CPU s per M spans (= µs per span)", "cpu_per_m", 2, "<= 0.33"),
                ("bytes per span sent", "bytes_per_span", 1, "<= 1.2"),
            ]:
                a, b = run.get(key), rotel.get(key)
                r = a / b if a is not None and b else None
                print(f"| {label}: {what} | {fmt(a, digits)} | {fmt(b, digits)} "
                      f"| {fmt(r, 2, 'x')} | {target}x | {check(r, target)} |")
            rss = run.get("rss_sat")
            print(f"| {label}: peak RSS after saturation (MiB) | {fmt(rss, 1)} "
                  f"| {fmt(rotel.get('rss_sat'), 1)} | | <= 256 | {check(rss, '<= 256')} |")
        p99 = tc.get("p99_fixed")
        print(f"| p99 at the fixed rate, fsync always (ms) | {fmt(p99, 2)} "
              f"| {fmt(rotel.get('p99_fixed'), 2)} | | <= 5 | {check(p99, '<= 5')} |")
        print()

    fsync = [(n[len("tracecast-fsync-"):], summary[n]) for n in order
             if n.startswith("tracecast-fsync-")]
    if fsync:
        print("(b) latency at the fixed rate per `service.queue.fsync` (one round each):")
        print()
        print("| fsync | p50 (ms) | p99 (ms) | spans/s at saturation | CPU s / M spans |")
        print("|---|---|---|---|---|")
        for mode, m in fsync:
            print(f"| {mode} | {fmt(m['p50_fixed'], 2)} | {fmt(m['p99_fixed'], 2)} "
                  f"| {fmt(m['spans_s'], 0)} | {fmt(m['cpu_per_m'], 2)} |")
        print()

    if floor:
        fl = floor["us_per_span"]
        print(f"(c) single-threaded floor (prost decode + encode + gzip level {floor['level']}, "
              f"batches of {floor['batch_requests']} requests, core 1): **{fl:.2f} µs per span** "
              f"({floor['bytes_out_per_span']:.0f} bytes/span out)")
        print()
        print("| run | CPU µs per span | / floor | target |")
        print("|---|---|---|---|")
        for name in order:
            c = summary[name].get("cpu_per_m")
            if c is None:
                continue
            target = "<= 2x" if name in ("tracecast", "tracecast-metadata-privacy") else ""
            met = ("yes" if c / fl <= 2 else "no") if target else ""
            print(f"| {name} | {fmt(c, 2)} | {fmt(c / fl, 2, 'x')} | {target} {met} |")
        print()

    for r in s3_runs:
        ep = r.get("endpoint") or {}
        ratio = r["files_s"] / r["traces_s"] if r["traces_s"] else None
        rss = r["hwm_kib"] / 1024
        endpoint = {"sink": "in-memory sink", "s3s-fs": "s3s + s3s-fs on disk"}.get(
            r.get("s3_endpoint") or ep.get("endpoint"), "s3s + s3s-fs on disk")
        print(f"(a) S3 writer, +{r['delay']} per S3 request, endpoint: {endpoint}:")
        print()
        print("| traces/s received | files written/s | files / traces | traces received "
              "| files written | lost | dead letters | peak RSS (MiB) | CPU s / M spans "
              "| p99 receive (ms) | endpoint peak in flight | connections | requests "
              "| endpoint ms / request | of which endpoint's own | endpoint CPU s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        load = r["load"]
        cpu = r["cpu_s"] / load["accepted_spans"] * 1e6 if load["accepted_spans"] else None
        print(f"| {fmt(r['traces_s'], 0)} | {fmt(r['files_s'], 0)} | {fmt(ratio, 3)} "
              f"| {fmt(r['traces_accepted'], 0)} | {fmt(r['files_total'], 0)} | {fmt(r['lost'], 0)} "
              f"| {fmt(r['dead_letters'], 0)} | {fmt(rss, 1)} | {fmt(cpu, 2)} "
              f"| {fmt(load['latency_ms']['p99'], 2)} | {fmt(ep.get('peak_in_flight'), 0)} "
              f"| {fmt(ep.get('connections'), 0)} | {fmt(ep.get('requests'), 0)} "
              f"| {fmt(ep.get('mean_ms'), 2)} | {fmt(ep.get('mean_upstream_ms'), 2)} "
              f"| {fmt(r.get('endpoint_cpu_s'), 2)} |")
        print()
        met = lambda ok: "met" if ok else "missed"
        print(f"- files written/s >= 95% of traces received: {met(ratio is not None and ratio >= 0.95)}; "
              f"peak RSS <= 256 MiB: {met(rss <= 256)}; nothing lost: {met(r['lost'] <= 0)}")
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
