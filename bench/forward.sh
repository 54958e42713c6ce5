#!/usr/bin/env bash
# Reference forward speed and memory against transformers on this CPU: tokens/s and peak RSS, for a tiny
# bundled checkpoint and a realistic-size one (synth 26b-a4b --layers 2 by default, ~4.8 GB bf16), in fp32
# and bf16; plus OpenBLAS against plain loops for the GEMMs (the reason linear() uses BLAS). "Whole run" is
# the process from start to exit (reading the checkpoint included; g4convert converts the weights it touches
# on every run); transformers' "forward alone" excludes loading (one warm-up forward first).
# Usage: bench/forward.sh [PRESET] [LAYERS] [TOKENS] [WORKDIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
preset=${1:-26b-a4b}
layers=${2:-2}
tokens=${3:-128}
work=${4:-$(mktemp -d)}
"$root/bin/build" --target g4convert
g4="$root/build/g4convert"
py="$(bin/pyenv)/bin/python"
big="$work/bench-$preset-$layers"
[ -d "$big" ] || "$g4" synth --preset "$preset" --layers "$layers" --out "$big" --quiet
ids="$work/ids-$tokens.json"
python3 -c "import json,random; random.seed(0); print(json.dumps({'input_ids': [[2] + [random.randrange(3, 128) for _ in range($tokens - 1)]]}))" > "$ids"

measure() {  # prints "seconds peak_rss_mib" of a whole command
  /usr/bin/time -f "%e %M" "$@" 2>&1 >/dev/null | tail -1 | awk '{printf "%s %d\n", $1, $2/1024}'
}
row() {  # name model dtype
  local name=$1 model=$2 dtype=$3
  read -r t_ours rss_ours < <(measure "$g4" forward --hf "$model" --input "$ids" --dtype "$dtype" --quiet)
  read -r t_hf n_hf < <("$py" "$root/bench/transformers_forward.py" "$model" "$dtype" "$ids" 2>/dev/null | tail -1)
  read -r t_hf_whole rss_hf < <(measure "$py" "$root/bench/transformers_forward.py" "$model" "$dtype" "$ids")
  printf "%-22s %-5s g4convert: whole run %6.2fs = %7.1f tok/s, peak RSS %5d MiB | transformers: whole run %6.2fs, forward alone %7.1f tok/s, peak RSS %5d MiB\n" \
    "$name" "$dtype" "$t_ours" "$(awk "BEGIN{print $tokens/$t_ours}")" "$rss_ours" "$t_hf_whole" "$(awk "BEGIN{print $n_hf/$t_hf}")" "$rss_hf"
}
echo "CPU: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $tokens tokens, one row"
for dtype in fp32 bf16; do
  row tiny-26b-a4b "$root/testdata/tiny-26b-a4b" $dtype
  row "$preset --layers $layers" "$big" $dtype
done
read -r t_blas _ < <(measure "$g4" forward --hf "$big" --input "$ids" --quiet --gemm blas)
read -r t_loops _ < <(measure "$g4" forward --hf "$big" --input "$ids" --quiet --gemm loops)
echo "GEMM on $preset --layers $layers, fp32: OpenBLAS ${t_blas}s, OpenMP loops ${t_loops}s"
