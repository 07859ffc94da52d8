#!/usr/bin/env bash
# Config-only experiments and profiles of tracecast passthrough (see
# bench/results/2026-11-22-profile.md). Same shape as bench/compare.sh: tracecast pinned to
# core 1, the load generator and the counting sink to core 0, OTLP/HTTP protobuf in,
# OTLP/HTTP protobuf out. Uses its own ports, so it can run beside compare.sh.
#
# Usage: bench/profile.sh VARIANT...   (env: DUR=8s FIXED_RATE=10000 CONNS=8 PERF=fixed,sat
#                                        SCHED=1 SYSCALLS=1 OUTDIR=target/prof-run
#                                        TC=target/release/tracecast LG=target/release/tracecast-loadgen)
# A variant is comma-separated settings on top of the passthrough config of compare.sh
# (batch processor with Collector defaults, gzip level 2, fsync always):
#   base | batch=N (send_batch_size) | batchto=DUR (timeout) | nobatch | fsync=always|interval|never
#   | gzip=none|1..9 | consumers=N
# e.g. bench/profile.sh base batch=1024 nobatch fsync=never gzip=none nobatch,fsync=never
# PERF: record `perf record -F 999 -g` (PERF_FREQ, PERF_CG="--call-graph dwarf,16384" to change) during the fixed-rate (fixed) and/or saturation (sat)
# phase, into $OUTDIR/<variant>/perf-<phase>.data (+ a `perf report` top list .txt).
# SCHED=1: `perf sched record` during the fixed phase (scheduling delay per thread).
# SYSCALLS=1: `perf trace -s` during the fixed phase (syscall counts and times per thread).
# RT=1: during the fixed-rate phase only, tracecast, the sink and the generator run SCHED_RR
# (`chrt -r 1`), so other work on the shared machine cannot delay them: what latency is
# left is tracecast's own. (Not during saturation, where it would starve the machine.)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DUR=${DUR:-8s}
FIXED_RATE=${FIXED_RATE:-10000}
CONNS=${CONNS:-8}
IN_PORT=${IN_PORT:-24318}
SINK_PORT=${SINK_PORT:-24390}
ADMIN_PORT=${ADMIN_PORT:-24333}
OUTDIR=${OUTDIR:-$ROOT/target/prof-run}
TC=${TC:-$ROOT/target/release/tracecast}
LG=${LG:-$ROOT/target/release/tracecast-loadgen}
PERF=${PERF:-}
TICK=$(getconf CLK_TCK)
SECS=${DUR%s}
mkdir -p "$OUTDIR"
RESULTS=$OUTDIR/results.jsonl

log() { echo "[profile] $*" >&2; }
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

SINK_PID=
TC_PID=
cleanup() {
  [ -n "$TC_PID" ] && kill "$TC_PID" 2>/dev/null || true
  [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null || true
}
trap cleanup EXIT

taskset -c 0 "$LG" --sink "$SINK_PORT" >"$OUTDIR/sink.out" 2>&1 &
SINK_PID=$!
wait_port "$SINK_PORT" "$SINK_PID" || { echo "sink did not start" >&2; exit 1; }

loadgen() {
  local rt=()
  [ -n "${LG_RT:-}" ] && rt=(chrt -r 1)
  taskset -c 0 "${rt[@]}" "$LG" --endpoint "http://127.0.0.1:$IN_PORT/v1/traces" \
    --spans-per-request 10 --content-kb 2 --duration "$DUR" \
    --sink-stats "127.0.0.1:$SINK_PORT" --drain 5s --json "$@"
}

config() { # variant dir
  local variant=$1 dir=$2
  local procs="batch" batch_size=8192 batch_to=200ms comp=gzip level=2 fsync=always consumers=4
  IFS=, read -ra parts <<<"$variant"
  for p in "${parts[@]}"; do
    case $p in
      base) ;;
      batch=*) batch_size=${p#batch=} ;;
      batchto=*) batch_to=${p#batchto=} ;;
      nobatch) procs="" ;;
      fsync=*) fsync=${p#fsync=} ;;
      gzip=none) comp=none ;;
      gzip=*) level=${p#gzip=} ;;
      consumers=*) consumers=${p#consumers=} ;;
      *) echo "unknown setting $p" >&2; return 1 ;;
    esac
  done
  local level_line=""
  [ "$comp" = gzip ] && level_line="    compression_level: $level"
  cat >"$dir/config.yaml" <<EOF
receivers:
  otlp:
    endpoint: 127.0.0.1:$IN_PORT
    max_concurrent_requests: 256
processors:
  batch:
    send_batch_size: $batch_size
    timeout: $batch_to
exporters:
  otlp:
    endpoint: http://127.0.0.1:$SINK_PORT/v1/traces
    encoding: protobuf
    compression: $comp
$level_line
    sending_queue:
      num_consumers: $consumers
service:
  admin:
    endpoint: 127.0.0.1:$ADMIN_PORT
  telemetry:
    logs:
      level: warn
  queue:
    fsync: $fsync
  pipelines:
    traces:
      receivers: [otlp]
      processors: [$procs]
      exporters: [otlp]
EOF
  "$TC" validate -c "$dir/config.yaml" >/dev/null
}

perf_top() { # data file -> txt
  perf report -i "$1" --no-children --sort dso,sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -40 >"${1%.data}.txt" || true
  perf report -i "$1" --no-children --sort comm --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -15 >"${1%.data}-threads.txt" || true
}

phase() { # name dir phase-args...
  local phase=$1 dir=$2
  shift 2
  local rec=()
  if [[ ",$PERF," == *",$phase,"* ]]; then
    perf record -F ${PERF_FREQ:-999} ${PERF_CG:--g} -p "$TC_PID" -o "$dir/perf-$phase.data" -- sleep "$SECS" >/dev/null 2>&1 &
    rec+=($!)
  fi
  if [ "$phase" = fixed ] && [ -n "${SCHED:-}" ]; then
    perf sched record -o "$dir/sched.data" -- sleep "$SECS" >/dev/null 2>&1 &
    rec+=($!)
  fi
  if [ "$phase" = fixed ] && [ -n "${SYSCALLS:-}" ]; then
    perf trace -s -p "$TC_PID" -o "$dir/syscalls.txt" -- sleep "$SECS" >/dev/null 2>&1 &
    rec+=($!)
  fi
  if [ "$phase" = fixed ] && [ -n "${RT:-}" ]; then
    chrt -a -r -p 1 "$TC_PID" >/dev/null; chrt -a -r -p 1 "$SINK_PID" >/dev/null
    LG_RT=1 loadgen "$@" >"$dir/$phase.json"
    chrt -a -o -p 0 "$TC_PID" >/dev/null; chrt -a -o -p 0 "$SINK_PID" >/dev/null
  else
    loadgen "$@" >"$dir/$phase.json"
  fi
  for r in "${rec[@]:-}"; do [ -n "$r" ] && wait "$r" || true; done
}

for variant in "$@"; do
  dir=$OUTDIR/${variant//[=,]/_}
  rm -rf "$dir"
  mkdir -p "$dir"
  config "$variant" "$dir"
  log "$variant"
  (cd "$dir" && exec taskset -c 1 "$TC" run --skip-connection-test -c "$dir/config.yaml" >"$dir/stdout.log" 2>"$dir/stderr.log") &
  TC_PID=$!
  wait_port "$IN_PORT" "$TC_PID" || { tail "$dir/stderr.log" >&2; exit 1; }
  sleep 0.5
  load0=$(cut -d' ' -f1 /proc/loadavg)
  f0=$(cpu_ticks "$TC_PID")
  phase fixed "$dir" --rate "$FIXED_RATE" -c 4
  f1=$(cpu_ticks "$TC_PID")
  phase sat "$dir" -c "$CONNS"
  c1=$(cpu_ticks "$TC_PID")
  grep -E '^tracecast_queue|^tracecast_exporter_request_duration_seconds_(sum|count)' \
    <(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics") >"$dir/metrics.txt" 2>/dev/null || true
  stop_pid "$TC_PID"
  TC_PID=
  load1=$(cut -d' ' -f1 /proc/loadavg)
  jq -c -n --arg v "$variant" --slurpfile f "$dir/fixed.json" --slurpfile s "$dir/sat.json" \
    --argjson fcpu "$(echo "($f1 - $f0) / $TICK" | bc -l)" \
    --argjson scpu "$(echo "($c1 - $f1) / $TICK" | bc -l)" \
    --arg load "$load0/$load1" \
    '{variant: $v, load: $load,
      fixed_p50: $f[0].latency_ms.p50, fixed_p90: $f[0].latency_ms.p90,
      fixed_p99: $f[0].latency_ms.p99, fixed_p999: $f[0].latency_ms.p999,
      fixed_cpu_pct: (100 * $fcpu / $f[0].elapsed_s),
      fixed_sink_reqs: $f[0].sink.requests,
      sat_spans_s: $s[0].accepted_spans_per_s, sat_p99: $s[0].latency_ms.p99,
      sat_cpu_s_per_mspans: (1e6 * $scpu / ($s[0].accepted_spans + 1)),
      sat_cpu_pct: (100 * $scpu / $s[0].elapsed_s),
      lost: (($f[0].sink.lost_spans // 0) + ($s[0].sink.lost_spans // 0))}' | tee -a "$RESULTS"
  for ph in fixed sat; do
    [ -f "$dir/perf-$ph.data" ] && perf_top "$dir/perf-$ph.data"
  done
done
