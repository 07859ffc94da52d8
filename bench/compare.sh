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
# Besides (same run, same machine):
#   (a) the S3 writer against an S3 endpoint with S3_DELAY (50ms) added to every request
#       (`tracecast-loadgen --s3`, on core 0): S3_TRACES traces/s of S3_SPANS_PER_TRACE
#       spans, one trace per request, for DUR: traces/s received vs files written/s
#       (objects counted over the same DUR, shifted by the trace idle timeout), files lost
#       after a drain, peak RSS, the endpoint's peak requests in flight, connections and
#       mean time per request (its own part apart). The endpoint is, with S3_SINK=1 (the
#       default), the delaying proxy answering from memory (`--s3-sink`: PutObject with
#       If-None-Match, GetObject; SigV4 header required, not verified; objects counted at
#       its GET /_tracecast/stats), so the endpoint costs microseconds per PUT besides
#       S3_DELAY; with S3_SINK=0, the tests' s3s + s3s-fs server on disk behind the proxy
#       (signatures checked; objects counted in the bucket folder), which on 2 cores takes
#       tens of ms per PUT at 2,000 PUT/s sharing core 0 with the generator, so it, not the
#       writer, sets the pace;
#   (b) p50/p99 at FIXED_RATE for each `service.queue.fsync` policy (the fsync-* rows);
#   (c) the single-threaded floor (`crates/bench/examples/floor.rs`: prost decode + encode
#       + gzip level 2, batches of 50 requests of the same payload), pinned to core 1 like
#       the collectors: CPU per span of each collector against it.
# Output: a markdown report on stdout and in bench/results/<date>.md.
#
# Usage: bench/compare.sh            (env: DUR=10s ROUNDS=2 CONNS=8 FIXED_RATE=10000
#                                          SPANS_PER_REQUEST=10 CONTENT_KB=2 SKIP_BUILD=1
#                                          S3_DELAY=50ms S3_TRACES=2000 S3_SPANS_PER_TRACE=5
#                                          S3_CONTENT_KB=0.5 S3_CONNS=128 S3_SINK=1
#                                          FLOOR_SECS=3
#                                          ONLY=floor,pair,variants,fsync,s3,direct)
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
S3_PORT=${S3_PORT:-14391}
S3_DELAY=${S3_DELAY:-50ms}
S3_TRACES=${S3_TRACES:-2000}
S3_SPANS_PER_TRACE=${S3_SPANS_PER_TRACE:-5}
S3_CONTENT_KB=${S3_CONTENT_KB:-0.5}
S3_CONNS=${S3_CONNS:-128}
S3_IDLE=${S3_IDLE:-1}
S3_SINK=${S3_SINK:-1}
FLOOR_SECS=${FLOOR_SECS:-3}
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
  cargo build --release -q -p tracecast-bench --example floor
fi
TC=$ROOT/target/release/tracecast
LG=$ROOT/target/release/tracecast-loadgen
FLOOR=$ROOT/target/release/examples/floor

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


# (a) The S3 writer against an endpoint with S3_DELAY per request. args: config.
run_s3_remote() {
  local cfg=$1 name=tracecast-s3-${S3_DELAY}
  local dir=$WORK/$name
  mkdir -p "$dir"
  rm -rf "$WORK/s3-remote"
  local sink_args=() endpoint=s3s-fs
  if [ "$S3_SINK" = 1 ]; then sink_args=(--s3-sink); endpoint=sink; fi
  log "$name: $S3_TRACES traces/s x $S3_SPANS_PER_TRACE spans, +$S3_DELAY per S3 request ($endpoint endpoint)"
  taskset -c 0 "$LG" --s3 "$S3_PORT" "${sink_args[@]}" --s3-dir "$WORK/s3-remote" --s3-bucket bench \
    --s3-delay "$S3_DELAY" --stats-file "$dir/s3-endpoint.json" >"$dir/s3-endpoint.out" 2>&1 &
  local s3pid=$!
  PIDS+=("$s3pid")
  wait_port "$S3_PORT" "$s3pid" || { echo "s3 endpoint did not start" >&2; exit 1; }
  (cd "$dir" && exec taskset -c 1 "$TC" run --skip-connection-test -c "$cfg" >"$dir/stdout.log" 2>"$dir/stderr.log") &
  local pid=$!
  PIDS+=("$pid")
  wait_port "$IN_PORT" "$pid" || { tail -20 "$dir/stderr.log" >&2; exit 1; }
  sleep 0.5
  local bucket=$WORK/s3-remote/bench
  count() {
    if [ "$S3_SINK" = 1 ]; then
      curl -sf "http://127.0.0.1:$S3_PORT/_tracecast/stats" | jq '.objects' || echo 0
    else
      { find "$bucket" -type f ! -name '.tmp.*' 2>/dev/null || true; } | wc -l
    fi
  }
  local c0 c1 t0 t1 cpu0 cpu1 ecpu0 ecpu1
  cpu0=$(cpu_ticks "$pid")
  ecpu0=$(cpu_ticks "$s3pid")
  taskset -c 0 "$LG" --endpoint "http://127.0.0.1:$IN_PORT/v1/traces" \
    --spans-per-request "$S3_SPANS_PER_TRACE" --spans-per-trace "$S3_SPANS_PER_TRACE" \
    --content-kb "$S3_CONTENT_KB" --rate "$((S3_TRACES * S3_SPANS_PER_TRACE))" \
    -c "$S3_CONNS" --duration "$DUR" --json >"$dir/load.json" &
  local lgpid=$!
  # Files are written S3_IDLE (the trace idle timeout) after their trace arrived: count
  # over the DUR window shifted by that much.
  sleep "$S3_IDLE"
  c0=$(count); t0=$(date +%s.%N)
  sleep "${DUR%s}"
  c1=$(count); t1=$(date +%s.%N)
  wait "$lgpid"
  cpu1=$(cpu_ticks "$pid")
  ecpu1=$(cpu_ticks "$s3pid")
  local accepted traces final prev=-1 stable=0
  accepted=$(jq '.accepted_spans' "$dir/load.json")
  traces=$((accepted / S3_SPANS_PER_TRACE))
  for _ in $(seq 1 60); do
    final=$(count)
    [ "$final" -ge "$traces" ] && break
    if [ "$final" = "$prev" ]; then stable=$((stable + 1)); [ $stable -ge 5 ] && break; else stable=0; fi
    prev=$final
    sleep 1
  done
  local hwm
  hwm=$(hwm_kib "$pid")
  stop_pid "$pid"
  stop_pid "$s3pid"
  local dead
  dead=$({ find "$dir/dead-letter" -type f ! -name '*.reason.txt' 2>/dev/null || true; } | wc -l)
  jq -c -n --arg name "$name" --slurpfile load "$dir/load.json" \
    --argjson c0 "$c0" --argjson c1 "$c1" --argjson t0 "$t0" --argjson t1 "$t1" \
    --argjson final "$final" --argjson traces "$traces" --argjson hwm "$hwm" --argjson dead "$dead" \
    --argjson cpu "$(echo "($cpu1 - $cpu0) / $TICK" | bc -l)" \
    --argjson ecpu "$(echo "($ecpu1 - $ecpu0) / $TICK" | bc -l)" \
    --slurpfile ep "$dir/s3-endpoint.json" --arg delay "$S3_DELAY" --arg s3_endpoint "$endpoint" \
    '{name: $name, kind: "s3", delay: $delay, s3_endpoint: $s3_endpoint, endpoint_cpu_s: $ecpu,
      load: $load[0], traces_accepted: $traces,
      traces_s: ($traces / $load[0].elapsed_s), files_s: (($c1 - $c0) / ($t1 - $t0)),
      files_total: $final, lost: ($traces - $final), dead_letters: $dead, hwm_kib: $hwm,
      cpu_s: $cpu, endpoint: $ep[0]}' >>"$RESULTS"
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
S3R=$(tc_config "tracecast-s3-remote" "" s3 "    bucket: bench
    endpoint: http://127.0.0.1:$S3_PORT
    region: us-east-1
    access_key_id: bench-access
    secret_access_key: bench-secret
    force_path_style: true
    trace_idle_timeout: ${S3_IDLE}s
    dead_letter_dir: $WORK/tracecast-s3-${S3_DELAY}/dead-letter") || { cat "$WORK/tracecast-s3-remote/validate.err" >&2; S3R=""; }
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
# ONLY (comma list; default all): floor, pair (tracecast + rotel rounds), variants
# (metadata+privacy, JSON, S3 local), fsync, s3 (the remote S3 scenario), direct.
want() { [ -z "${ONLY:-}" ] || [[ ",$ONLY," == *",$1,"* ]]; }
# (c) The single-threaded floor, on the collectors' core, with the same payload.
if want floor; then
  log "floor: decode + encode + gzip level 2, one thread, ${FLOOR_SECS}s"
  taskset -c 1 "$FLOOR" --seconds "$FLOOR_SECS" --level 2 --spans-per-request "$SPANS_PER_REQUEST" \
    --content-kb "$CONTENT_KB" | jq -c '{name: "floor", kind: "floor"} + .' >>"$RESULTS"
fi
if want pair; then
  for round in $(seq 1 "$ROUNDS"); do
    run_case tracecast "$round" protobuf $TC run --skip-connection-test -c "$PASS"
    run_case rotel "$round" protobuf "${rotel_cmd[@]}"
  done
fi
if want variants; then
  run_case tracecast-metadata-privacy 1 protobuf $TC run --skip-connection-test -c "$PRIV"
  run_case tracecast-json 1 json $TC run --skip-connection-test -c "$JSON"
  [ -n "$S3" ] && run_case tracecast-s3-local 1 protobuf $TC run --skip-connection-test -c "$S3"
fi
if want fsync; then
  for entry in "${FSYNC[@]:-}"; do
    [ -n "$entry" ] || continue
    run_case "tracecast-fsync-${entry%%:*}" 1 protobuf $TC run --skip-connection-test -c "${entry#*:}"
  done
fi
if want s3 && [ -n "$S3R" ]; then
  run_s3_remote "$S3R"
fi

# The generator straight into the sink: the floor of the harness itself.
if want direct; then
  log "sink direct (no collector)"
  IN_PORT_SAVED=$IN_PORT
  IN_PORT=$SINK_PORT
  loadgen --rate "$FIXED_RATE" -c 4 >"$WORK/direct-fixed.json"
  loadgen -c "$CONNS" >"$WORK/direct-sat.json"
  IN_PORT=$IN_PORT_SAVED
  jq -c -n --slurpfile f "$WORK/direct-fixed.json" --slurpfile s "$WORK/direct-sat.json" \
    '{name: "loadgen -> sink direct", round: 1, fixed: $f[0], sat: $s[0], cpu_s: null,
      sink_cpu_s: null, hwm_fixed_kib: null, hwm_sat_kib: null, queue_kib: 0}' >>"$RESULTS"
fi

# --- report ----------------------------------------------------------------------------------
{
  echo "# tracecast vs rotel, $(date -u '+%F %H:%M UTC')"
  echo
  echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo); load before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- collectors pinned with \`taskset -c 1\`, load generator and sink with \`taskset -c 0\`"
  echo "- tracecast $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo '+dirty'); rotel-agent $("$ROTEL" --version 2>/dev/null | awk '{print $2}') (PyPI rotel $ROTEL_VERSION, default batching 8192 spans / 200 ms, gzip export)"
  echo "- payload: $SPANS_PER_REQUEST spans/request (traces of root + generation span, 12 gen_ai.* attributes, ${CONTENT_KB} KiB prompt + ${CONTENT_KB} KiB completion text), OTLP/HTTP protobuf uncompressed in, gzip out"
  echo "- each run: $DUR at $FIXED_RATE spans/s (4 connections), then $DUR at saturation ($CONNS connections); $ROUNDS alternating rounds"
  echo "- S3 scenario: $S3_TRACES traces/s of $S3_SPANS_PER_TRACE spans (${S3_CONTENT_KB} KiB texts, one trace per request, $S3_CONNS connections), +$S3_DELAY per S3 request, trace_idle_timeout ${S3_IDLE}s, default max_concurrent_uploads; endpoint: $([ "$S3_SINK" = 1 ] && echo 'in-memory sink (`tracecast-loadgen --s3-sink`, SigV4 header required, not verified)' || echo 's3s + s3s-fs on disk behind the delaying proxy (SigV4 checked)')"
  echo "- command: \`DUR=$DUR ROUNDS=$ROUNDS CONNS=$CONNS FIXED_RATE=$FIXED_RATE SPANS_PER_REQUEST=$SPANS_PER_REQUEST S3_DELAY=$S3_DELAY S3_TRACES=$S3_TRACES S3_SINK=$S3_SINK bench/compare.sh\` (total $(( $(date +%s) - START )) s of runs)"
  echo
  python3 "$ROOT/bench/summarize.py" "$RESULTS"
} | tee "$OUT"
log "report written to $OUT; raw results in $RESULTS"
