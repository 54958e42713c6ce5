#!/usr/bin/env bash
# Conversion benchmark: hf2mcore and mcore2hf, each printed as a ratio to `cp -r` of the same bytes (the
# goal is >= 0.7x cp throughput) with peak RSS (the goal is <= 2 GB plus one tensor; mmap'd pages counted).
# Usage: bench/convert.sh [PRESET] [LAYERS] [WORKDIR]   (default: 26b-a4b 4 in a temp dir; needs ~4x the checkpoint size)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
preset=${1:-26b-a4b}
layers=${2:-4}
work=${3:-$(mktemp -d)}
"$root/bin/build" --target g4convert
g4="$root/build/g4convert"
source "$root/bench/common.sh"
rm -rf "$work/hf" "$work/copy" "$work/mcore" "$work/back"
"$g4" synth --preset "$preset" --layers "$layers" --out "$work/hf" --quiet
bytes=$(du -sb "$work/hf" | cut -f1)
drop_cache
read -r t_cp _ < <(measure cp -r "$work/hf" "$work/copy")
rm -rf "$work/copy"
drop_cache
read -r t_to rss_to < <(measure "$g4" hf2mcore --hf "$work/hf" --out "$work/mcore" --quiet)
drop_cache
read -r t_back rss_back < <(measure "$g4" mcore2hf --mcore "$work/mcore" --out "$work/back" --quiet)
largest=$(python3 - "$work/hf" <<'PY'
import json, struct, sys, glob
best = 0
for f in glob.glob(sys.argv[1] + "/*.safetensors"):
    with open(f, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        for k, v in json.loads(fh.read(n)).items():
            if k != "__metadata__":
                best = max(best, v["data_offsets"][1] - v["data_offsets"][0])
print(best)
PY
)
mb() { awk "BEGIN{printf \"%.0f\", $bytes/1e6/$1}"; }
echo "checkpoint: $preset --layers $layers, $(awk "BEGIN{print $bytes/1e9}") GB, largest tensor $((largest / 1048576)) MiB, $(nproc) cores"
printf "cp -r     %6.2fs  %6s MB/s\n" "$t_cp" "$(mb "$t_cp")"
printf "hf2mcore  %6.2fs  %6s MB/s  %sx cp throughput  peak RSS %d MiB\n" "$t_to" "$(mb "$t_to")" "$(ratio "$t_cp" "$t_to")" $((rss_to / 1024))
printf "mcore2hf  %6.2fs  %6s MB/s  %sx cp throughput  peak RSS %d MiB\n" "$t_back" "$(mb "$t_back")" "$(ratio "$t_cp" "$t_back")" $((rss_back / 1024))
rm -rf "$work/hf" "$work/mcore" "$work/back"
