#!/usr/bin/env bash
# Reference forward speed and memory against transformers on this CPU, in one run so the ratios compare like with
# like (timings on a shared machine vary up to 2x between runs):
#   1. forward, fp32 and bf16: a tiny bundled checkpoint and a realistic-size one (synth PRESET --layers LAYERS,
#      ~4.8 GB bf16 for 26b-a4b --layers 2): whole processes (reading the checkpoint included) and peak RSS, and
#      transformers' forward alone (after a warm-up); the ratio is transformers' whole run over ours.
#   2. verify (two forwards and the comparison) at --layers LAYERS, fp32 and bf16.
#   3. verify of the full-size model extrapolated from --layers 4 and --layers 8: fixed + (L - 8) more layers at
#      the per-layer time (t8 - t4) / 4, where L is the preset's layer count (30 for 26b-a4b).
#   4. the per-op time split of one bf16 forward (forward --profile) and OpenBLAS against plain loops.
# Usage: bench/forward.sh [PRESET] [LAYERS] [TOKENS] [WORKDIR]   (G4_BUILD_DIR: the build to time, default build/)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/bench/common.sh"
preset=${1:-26b-a4b}
layers=${2:-2}
tokens=${3:-128}
work=${4:-$(mktemp -d)}
build="${G4_BUILD_DIR:-$root/build}"
G4_BUILD_DIR="$build" "$root/bin/build" --target g4convert
g4="$build/g4convert"
py="$("$root/bin/pyenv")/bin/python"
synth() {  # layers -> checkpoint dir (made once)
  local dir="$work/bench-$preset-$1"
  [ -d "$dir" ] || "$g4" synth --preset "$preset" --layers "$1" --out "$dir" --quiet
  echo "$dir"
}
big=$(synth "$layers")
ids="$work/ids-$tokens.json"
python3 -c "import json,random; random.seed(0); print(json.dumps({'input_ids': [[2] + [random.randrange(3, 128) for _ in range($tokens - 1)]]}))" > "$ids"
mib() { awk "BEGIN{printf \"%d\", $1/1024}"; }

row() {  # name model dtype
  local name=$1 model=$2 dtype=$3
  read -r t_ours rss_ours < <(measure "$g4" forward --hf "$model" --input "$ids" --dtype "$dtype" --quiet)
  read -r t_hf n_hf < <("$py" "$root/bench/transformers_forward.py" "$model" "$dtype" "$ids" 2>/dev/null | tail -1)
  read -r t_hf_whole rss_hf < <(measure "$py" "$root/bench/transformers_forward.py" "$model" "$dtype" "$ids")
  printf "| %s | %s | %.2f s | %s MiB | %.2f s | %.2f s | %s MiB | %s× |\n" "$name" "$dtype" "$t_ours" "$(mib "$rss_ours")" \
    "$t_hf_whole" "$t_hf" "$(mib "$rss_hf")" "$(ratio "$t_hf_whole" "$t_ours")"
}
verify_time() {  # model dtype -> "seconds rss_kib"
  measure "$g4" verify --hf "$1" --mcore "$1.mcore" --input "$ids" --dtype "$2" --quiet
}
convert_once() { [ -d "$1.mcore" ] || "$g4" hf2mcore --hf "$1" --out "$1.mcore" --quiet; }

echo "CPU: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $tokens tokens, one row"
echo "backend: $("$g4" forward --hf "$root/testdata/tiny-31b" --ids 2,3 --json --quiet --profile 2>&1 >/dev/null | head -1 | sed 's/^op profile (//; s/), .*//')"
echo
echo "| model | dtype | g4convert whole run | peak RSS | transformers whole run | transformers forward alone | peak RSS | ratio (whole runs) |"
echo "|---|---|---|---|---|---|---|---|"
for dtype in fp32 bf16; do
  row tiny-26b-a4b "$root/testdata/tiny-26b-a4b" $dtype
  row "$preset --layers $layers" "$big" $dtype
done

echo
convert_once "$big"
for dtype in fp32 bf16; do
  read -r t rss < <(verify_time "$big" $dtype)
  echo "verify $preset --layers $layers $dtype: ${t}s, peak RSS $(mib "$rss") MiB"
done

full_layers=$("$g4" presets --json | python3 -c "import json,sys; print(next(len(p['layers']) for p in json.load(sys.stdin) if p['name'] == '$preset'))")
m4=$(synth 4); m8=$(synth 8)
convert_once "$m4"; convert_once "$m8"
for dtype in bf16 fp32; do
  read -r t4 _ < <(verify_time "$m4" $dtype)
  read -r t8 rss8 < <(verify_time "$m8" $dtype)
  awk -v t4="$t4" -v t8="$t8" -v L="$full_layers" -v d="$dtype" -v p="$preset" -v r="$(mib "$rss8")" 'BEGIN{
    per = (t8 - t4) / 4; fixed = t8 - 8 * per;
    printf "verify %s full size (%d layers) %s, extrapolated: %.1f s (--layers 4: %.2f s, --layers 8: %.2f s, per layer %.2f s, fixed %.2f s; RSS at 8 layers %d MiB)\n", p, L, d, fixed + L * per, t4, t8, per, fixed, r }'
done

echo
"$g4" forward --hf "$big" --input "$ids" --dtype bf16 --quiet --profile 2>&1 >/dev/null | head -16
read -r t_blas _ < <(measure "$g4" forward --hf "$big" --input "$ids" --quiet --gemm blas)
read -r t_loops _ < <(measure "$g4" forward --hf "$big" --input "$ids" --quiet --gemm loops)
echo "GEMM on $preset --layers $layers, fp32: libraries ${t_blas}s, OpenMP loops ${t_loops}s"
