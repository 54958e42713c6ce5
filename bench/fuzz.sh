#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan + LeakSanitizer) in build-fuzz/ and runs each target,
# one at a time, either for SECONDS (default 300: the long run; bin/test runs a short one) or for N executions:
#   bench/fuzz.sh [SECONDS]
#   bench/fuzz.sh --runs 1000000 [--only config] [--summary FILE]
# Each target's corpus grows in build-fuzz/corpus-TARGET (seeded from fuzz/corpus/). Any crash, leak, UB report,
# timeout (-timeout, 20 s per input) or out-of-memory (2 GB) fails with the reproducer's path. One line per
# target: executions, seconds, exec/s, new units, corpus size; --summary also appends them to FILE.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=300 runs="" only="" summary=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --summary) summary=$2; shift 2 ;;
    [0-9]*) seconds=$1; shift ;;
    *) echo "usage: bench/fuzz.sh [SECONDS] | --runs N [--only TARGET] [--summary FILE]" >&2; exit 2 ;;
  esac
done
"$root/bin/setup"
build="${G4_FUZZ_BUILD_DIR:-$root/build-fuzz}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if [ ! -f "$build/build.ninja" ]; then
  CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DG4_FUZZ=ON >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
fi
targets=(safetensors_header config torch_file dcp_metadata run_config)
cmake --build "$build" --target "${targets[@]/#/fuzz_}" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }

# Leaks are findings too; UB stops the run with a stack.
export ASAN_OPTIONS="detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

# Inputs up to the largest seed kind: config.json seeds include a ~200 KB deep-nesting regression.
max_len() {
  case "$1" in
    config) echo 300000 ;;
    dcp_metadata|run_config) echo 65536 ;;
    *) echo 16384 ;;
  esac
}

for target in "${targets[@]}"; do
  [ -n "$only" ] && [ "$only" != "$target" ] && [ "$only" != "${target%_header}" ] && continue
  corpus="$build/corpus-$target"
  mkdir -p "$corpus"
  seeds="$root/fuzz/corpus/${target%_header}"
  if [ -n "$runs" ]; then budget=(-runs="$runs"); else budget=(-max_total_time="$seconds"); fi
  start=$(date +%s%N)
  if ! "$build/fuzz_$target" "${budget[@]}" -max_len="$(max_len "${target%_header}")" -timeout=20 -rss_limit_mb=2048 \
      -detect_leaks=1 -print_final_stats=1 -artifact_prefix="$build/crash-$target-" "$corpus" "$seeds" >"$log" 2>&1; then
    tail -60 "$log" >&2
    echo "fuzz_$target: FAILED (reproducer: $(ls -t "$build"/crash-"$target"-* 2>/dev/null | head -1))" >&2
    exit 1
  fi
  elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
  executed=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  elapsed=$(awk -v ms="$elapsed_ms" 'BEGIN { printf "%.1f", ms / 1000 }')
  rate=$(awk -v n="$executed" -v ms="$elapsed_ms" 'BEGIN { printf "%.0f", (ms > 0 ? n * 1000 / ms : 0) }')
  added=$(grep -o 'stat::new_units_added: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  files=$(find "$corpus" -type f | wc -l)
  bytes=$(du -sb "$corpus" | cut -f1)
  line="fuzz_$target: $executed runs in ${elapsed}s ($rate exec/s), $added new units, corpus $files files / $bytes bytes, no crash"
  echo "$line"
  [ -n "$summary" ] && echo "$line" >>"$summary"
done
exit 0
