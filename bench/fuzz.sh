#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) in build-fuzz/ and runs each for N seconds
# (default 300: the long run; bin/test runs a short one). Any crash fails with the reproducer path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-300}
"$root/bin/setup"
build="$root/build-fuzz"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if [ ! -f "$build/build.ninja" ]; then
  CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DG4_FUZZ=ON >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
fi
cmake --build "$build" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
for target in safetensors_header config torch_file dcp_metadata; do
  corpus="$build/corpus-$target"
  mkdir -p "$corpus"
  seeds="$root/fuzz/corpus/${target%_header}"
  if ! "$build/fuzz_$target" -max_total_time="$seconds" -artifact_prefix="$build/crash-$target-" "$corpus" "$seeds" >"$log" 2>&1; then
    cat "$log" >&2
    echo "fuzz_$target: FAILED (reproducer: $build/crash-$target-*)" >&2
    exit 1
  fi
  echo "fuzz_$target: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" | tail -1), no crash"
done
