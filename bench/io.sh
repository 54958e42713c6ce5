#!/usr/bin/env bash
# I/O benchmark of what exists today: synth (generate + write) and inspect --scan (read every byte), each
# printed as a ratio to `cp` of the same bytes (write side) and `cat > /dev/null` (read side), with peak RSS.
# Usage: bench/io.sh [PRESET] [LAYERS] [WORKDIR]   (default: 26b-a4b 2 in a temp dir; needs ~2× the checkpoint size)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
preset=${1:-26b-a4b}
layers=${2:-2}
work=${3:-$(mktemp -d)}
"$root/bin/build" --target g4convert
g4="$root/build/g4convert"
source "$root/bench/common.sh"
rm -rf "$work/synth" "$work/copy"
read -r t_synth rss_synth < <(measure "$g4" synth --preset "$preset" --layers "$layers" --out "$work/synth" --quiet)
bytes=$(du -sb "$work/synth" | cut -f1)
drop_cache
read -r t_cp _ < <(measure cp -r "$work/synth" "$work/copy")
drop_cache
read -r t_scan rss_scan < <(measure "$g4" inspect "$work/synth" --scan --quiet)
drop_cache
read -r t_cat _ < <(measure sh -c "cat '$work'/synth/*.safetensors > /dev/null")
gb=$(awk "BEGIN{print $bytes/1e9}")
echo "checkpoint: $preset --layers $layers, $gb GB, $(nproc) cores"
printf "synth          %6.2fs  %7.0f MB/s  %sx cp throughput     peak RSS %d MiB\n" "$t_synth" "$(awk "BEGIN{print $bytes/1e6/$t_synth}")" "$(ratio "$t_cp" "$t_synth")" $((rss_synth / 1024))
printf "cp             %6.2fs  %7.0f MB/s\n" "$t_cp" "$(awk "BEGIN{print $bytes/1e6/$t_cp}")"
printf "inspect --scan %6.2fs  %7.0f MB/s  %sx cat throughput    peak RSS %d MiB (mmap'd pages counted)\n" "$t_scan" "$(awk "BEGIN{print $bytes/1e6/$t_scan}")" "$(ratio "$t_cat" "$t_scan")" $((rss_scan / 1024))
printf "cat >/dev/null %6.2fs  %7.0f MB/s\n" "$t_cat" "$(awk "BEGIN{print $bytes/1e6/$t_cat}")"
rm -rf "$work/synth" "$work/copy"
