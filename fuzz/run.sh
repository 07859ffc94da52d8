#!/usr/bin/env bash
# Fuzzes the targets one after the other, each until it has used GOAL seconds of CPU time
# (measured, not wall time: at nice 19 on a shared machine a fuzzer gets only idle CPU),
# in chunks of at most 300 s of wall time. Usage: fuzz/run.sh target:goal_seconds ...
# Build first: RUSTC_BOOTSTRAP=1 cargo fuzz build -O -a (ASan, debug assertions).
# Each chunk is the same as
#   cargo fuzz run -O -a <target> corpus/<target> -- <the flags below>
set -uo pipefail
cd "$(dirname "$0")"
bin=target/x86_64-unknown-linux-gnu/release
mkdir -p logs artifacts
for spec in "$@"; do
  t=${spec%%:*}; goal=${spec##*:}; used=0; chunk=0
  mkdir -p "artifacts/$t"
  dict=()
  case $t in json_decode|receiver_decode) dict=(-dict=dicts/otlp_json.dict) ;; esac
  case $t in receiver_decode|json_decode|grpc_decode|receiver_zstd) maxlen=16384 ;; *) maxlen=4096 ;; esac
  while [ "$used" -lt "$goal" ]; do
    chunk=$((chunk+1))
    left=$((goal-used)); wall=$(( left < 300 ? left : 300 ))
    [ "$wall" -lt 20 ] && wall=20
    echo "== $t chunk $chunk: -max_total_time=$wall (cpu used so far ${used}s of ${goal}s) $(date +%T)" >> "logs/$t.log"
    /usr/bin/time -f "TIME user=%U sys=%S wall=%e maxrss_kb=%M" -a -o "logs/$t.time" \
      nice -n 19 "$bin/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" \
        -max_total_time="$wall" -rss_limit_mb=512 -malloc_limit_mb=256 -timeout=10 \
        -max_len="$maxlen" -print_final_stats=1 -reload=0 "${dict[@]}" >> "logs/$t.log" 2>&1
    echo "exit $?" >> "logs/$t.log"
    cpu=$(tail -1 "logs/$t.time" | sed -E 's/.*user=([0-9.]+) sys=([0-9.]+).*/\1 \2/' | awk '{printf "%d", $1+$2}')
    used=$((used+cpu))
  done
  echo "DONE $t cpu=${used}s chunks=$chunk $(date +%T)" | tee -a logs/summary.txt
done
