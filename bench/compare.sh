#!/usr/bin/env bash
# Side-by-side performance of tracecast and rotel (a Rust OTLP collector, PyPI `rotel`),
# plus tracecast-only variants. See the README's Performance section.
#
# Both collectors get OTLP/HTTP protobuf in and send OTLP/HTTP protobuf (gzip, rotel's
# default) out to the same counting sink (`tracecast-loadgen --sink`). The collector under
# test is pinned to core 1, the load generator and the sink to core 0; runs alternate
# (A B A B ...) under the same load. Per run:
#   1. fixed rate (FIXED_RATE spans/s) for DUR: p99 latency, peak RSS (VmHWM) at that rate;
#   2. saturation (CONNS connections, no rate limit) for DUR: spans/s, CPU seconds per
#      million spans (utime+stime from /proc/<pid>/stat), bytes per span at the sink, loss.
# Output: a markdown report on stdout and in bench/results/<date>.md.
#
# Usage: bench/compare.sh            (env: DUR=10s ROUNDS=2 CONNS=8 FIXED_RATE=10000
#                                          SPANS_PER_REQUEST=10 CONTENT_KB=2 SKIP_BUILD=1)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DUR=${DUR:-10s}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-8}
FIXED_RATE=${FIXED_RATE:-10000}
SPANS_PER_REQUEST=${SPANS_PER_REQUEST:-10}
CONTENT_KB=${CONTENT_KB:-2}
SINK_PORT=${SINK_PORT:-14390}
IN_PORT=${IN_PORT:-14318}
GRPC_PORT=${GRPC_PORT:-14317}
ADMIN_PORT=${ADMIN_PORT:-14333}
OUT=${OUT:-bench/results/$(date +%F).md}
WORK=$ROOT/target/bench-run
VENV=$ROOT/target/bench-venv
ROTEL_VERSION=${ROTEL_VERSION:-0.0.1a15}
TICK=$(getconf CLK_TCK)

rm -rf "$WORK"
mkdir -p "$WORK" "$(dirname "$OUT")"
RESULTS=$WORK/results.jsonl
: >"$RESULTS"

log() { echo "[compare] $*" >&2; }

# --- rotel, installed into a venv --------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/pip" show rotel >/dev/null 2>&1; then
  log "installing rotel $ROTEL_VERSION into $VENV"
  "$VENV/bin/pip" install -q "rotel==$ROTEL_VERSION"
fi
ROTEL=$("$VENV/bin/python" -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')
[ -x "$ROTEL" ] || { echo "rotel-agent not found at $ROTEL" >&2; exit 1; }

# --- tracecast and the load generator, release -------------------------------------------
if [ -z "${SKIP_BUILD:-}" ]; then
  log "building tracecast and tracecast-loadgen (release)"
  cargo build --release -q -p tracecast -p tracecast-loadgen
fi
TC=$ROOT/target/release/tracecast
LG=$ROOT/target/release/tracecast-loadgen

PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

# --- the sink, on core 0 -----------------------------------------------------------------
taskset -c 0 "$LG" --sink "$SINK_PORT" >"$WORK/sink.out" 2>&1 &
SINK_PID=$!
PIDS+=("$SINK_PID")
wait_port "$SINK_PORT" "$SINK_PID" || { echo "sink did not start" >&2; exit 1; }

loadgen() { # extra args...
  taskset -c 0 "$LG" --endpoint "http://127.0.0.1:$IN_PORT/v1/traces" \
    --spans-per-request "$SPANS_PER_REQUEST" --content-kb "$CONTENT_KB" \
    --duration "$DUR" --sink-stats "127.0.0.1:$SINK_PORT" --drain 5s --json "$@"
}

# A tracecast config. args: name, processors (comma list, may be empty), exporter id,
# exporter settings (YAML, indented 4), extra `service:` lines (YAML, indented 2).
tc_config() {
  local dir=$WORK/$1
  mkdir -p "$dir"
  cat >"$dir/config.yaml" <<EOF
receivers:
  otlp:
    endpoint: 127.0.0.1:$IN_PORT
    max_concurrent_requests: 256
processors:
  metadata:
  privacy:
  batch:          # Collector defaults (8192 spans / 200 ms), as rotel batches by default
exporters:
  $3:
$4
service:
  admin:
    endpoint: 127.0.0.1:$ADMIN_PORT
  telemetry:
    logs:
      level: warn
${5:-}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [$2]
      exporters: [$3]
EOF
  "$TC" validate -c "$dir/config.yaml" >/dev/null 2>"$dir/validate.err" || return 1
  echo "$dir/config.yaml"
}

otlp_out() { # encoding
  printf '    endpoint: http://127.0.0.1:%s/v1/traces\n    encoding: %s\n    compression: gzip' "$SINK_PORT" "$1"
}

# One measured run. args: name, round, load-encoding, command...
run_case() {
  local name=$1 round=$2 enc=$3
  shift 3
  log "$name (round $round)"
  local dir=$WORK/$name-$round
  mkdir -p "$dir"
  # Run inside the run's folder: anything written relative to the working directory (a
  # default queue folder, say) stays there.
  (cd "$dir" && exec taskset -c 1 "$@" >"$dir/stdout.log" 2>"$dir/stderr.log") &
  local pid=$!
  PIDS+=("$pid")
  if ! wait_port "$IN_PORT" "$pid"; then
    echo "$name did not start; its stderr:" >&2
    tail -20 "$dir/stderr.log" >&2
    exit 1
  fi
  sleep 0.5
  loadgen --encoding "$enc" --rate "$FIXED_RATE" -c 4 >"$dir/fixed.json"
  local hwm_fixed
  hwm_fixed=$(hwm_kib "$pid")
  local sink0 c0 c1 s0 s1
  s0=$(cpu_ticks "$SINK_PID")
  c0=$(cpu_ticks "$pid")
  loadgen --encoding "$enc" -c "$CONNS" >"$dir/sat.json"
  c1=$(cpu_ticks "$pid")
  s1=$(cpu_ticks "$SINK_PID")
  local hwm_sat
  hwm_sat=$(hwm_kib "$pid")
  local disk=0
  disk=$(du -sk --exclude='*.log' --exclude='*.json' "$dir" | cut -f1)
  stop_pid "$pid"
  jq -c -n --arg name "$name" --argjson round "$round" \
    --slurpfile fixed "$dir/fixed.json" --slurpfile sat "$dir/sat.json" \
    --argjson cpu "$(echo "($c1 - $c0) / $TICK" | bc -l)" \
    --argjson sink_cpu "$(echo "($s1 - $s0) / $TICK" | bc -l)" \
    --argjson hwm_fixed "$hwm_fixed" --argjson hwm_sat "$hwm_sat" --argjson queue_kib "$disk" \
    '{name: $name, round: $round, fixed: $fixed[0], sat: $sat[0], cpu_s: $cpu,
      sink_cpu_s: $sink_cpu, hwm_fixed_kib: $hwm_fixed, hwm_sat_kib: $hwm_sat,
      queue_kib: $queue_kib}' >>"$RESULTS"
}


rotel_cmd=("$ROTEL" start --otlp-http-endpoint "127.0.0.1:$IN_PORT"
  --otlp-grpc-endpoint "127.0.0.1:$GRPC_PORT" --exporter otlp
  --otlp-exporter-protocol http --otlp-exporter-endpoint "http://127.0.0.1:$SINK_PORT"
  --pid-file "$WORK/rotel.pid" --log-file "$WORK/rotel.log")

# --- configs -------------------------------------------------------------------------------
PASS=$(tc_config tracecast "batch" otlp "$(otlp_out protobuf)") || {
  cat "$WORK/tracecast/validate.err" >&2; exit 1; }
PRIV=$(tc_config tracecast-metadata-privacy "metadata, privacy, batch" otlp "$(otlp_out protobuf)")
JSON=$(tc_config tracecast-json "batch" otlp "$(otlp_out json)")
S3=$(tc_config tracecast-s3-local "" s3 "    url: file://$WORK/s3-out
    trace_idle_timeout: 1s
    dead_letter_dir: $WORK/dead-letter") || { log "no S3 exporter config accepted; skipping"; S3=""; }
FSYNC=()
for mode in always interval never; do
  if cfg=$(tc_config "tracecast-fsync-$mode" "batch" otlp "$(otlp_out protobuf)" "  queue:
    fsync: $mode"); then
    FSYNC+=("$mode:$cfg")
  else
    log "service.queue.fsync: $mode not accepted; skipping"
  fi
done

# --- runs: tracecast and rotel alternating -------------------------------------------------
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date +%s)
for round in $(seq 1 "$ROUNDS"); do
  run_case tracecast "$round" protobuf $TC run --skip-connection-test -c "$PASS"
  run_case rotel "$round" protobuf "${rotel_cmd[@]}"
done
run_case tracecast-metadata-privacy 1 protobuf $TC run --skip-connection-test -c "$PRIV"
run_case tracecast-json 1 json $TC run --skip-connection-test -c "$JSON"
[ -n "$S3" ] && run_case tracecast-s3-local 1 protobuf $TC run --skip-connection-test -c "$S3"
for entry in "${FSYNC[@]:-}"; do
  [ -n "$entry" ] || continue
  run_case "tracecast-fsync-${entry%%:*}" 1 protobuf $TC run --skip-connection-test -c "${entry#*:}"
done

# The generator straight into the sink: the floor of the harness itself.
log "sink direct (no collector)"
IN_PORT_SAVED=$IN_PORT
IN_PORT=$SINK_PORT
loadgen --rate "$FIXED_RATE" -c 4 >"$WORK/direct-fixed.json"
loadgen -c "$CONNS" >"$WORK/direct-sat.json"
IN_PORT=$IN_PORT_SAVED
jq -c -n --slurpfile f "$WORK/direct-fixed.json" --slurpfile s "$WORK/direct-sat.json" \
  '{name: "loadgen -> sink direct", round: 1, fixed: $f[0], sat: $s[0], cpu_s: null,
    sink_cpu_s: null, hwm_fixed_kib: null, hwm_sat_kib: null, queue_kib: 0}' >>"$RESULTS"

# --- report ----------------------------------------------------------------------------------
{
  echo "# tracecast vs rotel, $(date -u '+%F %H:%M UTC')"
  echo
  echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo); load before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- collectors pinned with \`taskset -c 1\`, load generator and sink with \`taskset -c 0\`"
  echo "- tracecast $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo '+dirty'); rotel-agent $("$ROTEL" --version 2>/dev/null | awk '{print $2}') (PyPI rotel $ROTEL_VERSION, default batching 8192 spans / 200 ms, gzip export)"
  echo "- payload: $SPANS_PER_REQUEST spans/request (traces of root + generation span, 12 gen_ai.* attributes, ${CONTENT_KB} KiB prompt + ${CONTENT_KB} KiB completion text), OTLP/HTTP protobuf uncompressed in, gzip out"
  echo "- each run: $DUR at $FIXED_RATE spans/s (4 connections), then $DUR at saturation ($CONNS connections); $ROUNDS alternating rounds"
  echo "- command: \`DUR=$DUR ROUNDS=$ROUNDS CONNS=$CONNS FIXED_RATE=$FIXED_RATE bench/compare.sh\` (total $(( $(date +%s) - START )) s of runs)"
  echo
  python3 "$ROOT/bench/summarize.py" "$RESULTS"
} | tee "$OUT"
log "report written to $OUT; raw results in $RESULTS"
