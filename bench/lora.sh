#!/usr/bin/env bash
# LoRA benchmark: lora-export (Megatron-Bridge adapter -> PEFT) and lora-merge (adapter + HF base -> merged HF),
# each printed as a ratio to `cp -r` of the bytes it reads (the goal is >= 0.7x cp throughput), with peak RSS
# (the goal is <= 1 GB). The adapter is realistic: rank 32 on every linear MB's LoRA targets (linear_qkv,
# linear_proj, linear_fc1, linear_fc2, routed experts per expert), written by tests/tools/lora_synth; --allow-inexact
# because 26B-A4B's linear_proj adapter cannot be exported exactly (the timing is the same).
# Usage: bench/lora.sh [PRESET] [LAYERS] [WORKDIR]   (default: 26b-a4b 4; the issue also asks for 31b 2)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
preset=${1:-26b-a4b}
layers=${2:-4}
work=${3:-$(mktemp -d)}
mkdir -p "$work"
"$root/bin/build" --target g4convert lora_synth
g4="$root/build/g4convert"
source "$root/bench/common.sh"
rm -rf "$work/hf" "$work/adapter" "$work/peft" "$work/merged" "$work/copy"
"$g4" synth --preset "$preset" --layers "$layers" --out "$work/hf" --quiet
"$root/build/lora_synth" --base "$work/hf" --out "$work/adapter" --rank 32 --alpha 64 --per-expert --dtype bf16
adapter_bytes=$(du -sb "$work/adapter" | cut -f1)
base_bytes=$(du -sb "$work/hf" | cut -f1)

drop_cache
read -r t_cp_adapter _ < <(measure cp -r "$work/adapter" "$work/copy")
rm -rf "$work/copy"
drop_cache
read -r t_export rss_export < <(measure "$g4" lora-export --adapter "$work/adapter" --reference-hf "$work/hf" --out "$work/peft" --allow-inexact --quiet)
[ -f "$work/peft/adapter_model.safetensors" ] || { echo "lora-export failed" >&2; exit 1; }
peft_bytes=$(du -sb "$work/peft" | cut -f1)
# Export writes twice what it reads (bf16 widened to fp32): also against cp of what it writes.
drop_cache
read -r t_cp_peft _ < <(measure cp -r "$work/peft" "$work/copy")
rm -rf "$work/copy"

drop_cache
read -r t_cp_base _ < <(measure cp -r "$work/hf" "$work/copy")
rm -rf "$work/copy"
drop_cache
read -r t_merge rss_merge < <(measure "$g4" lora-merge --adapter "$work/adapter" --base "$work/hf" --out "$work/merged" --allow-inexact --quiet)

[ -f "$work/merged/config.json" ] || { echo "lora-merge failed" >&2; exit 1; }
gb() { awk "BEGIN{printf \"%.2f\", $1/1e9}"; }
echo "model: $preset --layers $layers, base $(gb "$base_bytes") GB; adapter rank 32 bf16 $(gb "$adapter_bytes") GB -> PEFT fp32 $(gb "$peft_bytes") GB; $(nproc) cores"
printf "cp -r adapter  %6.2fs\n" "$t_cp_adapter"
printf "cp -r PEFT out %6.2fs\n" "$t_cp_peft"
printf "lora-export    %6.2fs  %sx cp of the adapter, %sx cp of its output  peak RSS %d MiB\n" "$t_export" \
  "$(ratio "$t_cp_adapter" "$t_export")" "$(ratio "$t_cp_peft" "$t_export")" $((rss_export / 1024))
printf "cp -r base     %6.2fs\n" "$t_cp_base"
printf "lora-merge     %6.2fs  %sx cp of the base  peak RSS %d MiB\n" "$t_merge" "$(ratio "$t_cp_base" "$t_merge")" $((rss_merge / 1024))
rm -rf "$work/hf" "$work/adapter" "$work/peft" "$work/merged"
