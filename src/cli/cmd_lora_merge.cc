// g4convert lora-merge: a LoRA adapter (PEFT directory or Megatron-Bridge checkpoint) merged into its base
// (HF or Megatron torch_dist), written as an HF safetensors checkpoint.
#include <chrono>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/progress.h"
#include "lora/lora_merge.h"
#include "runtime/safetensors_writer.h"

namespace g4::cli {

void add_lora_merge_command(CLI::App& app, const GlobalOptions& global, int& exit_code) {
  struct Args {
    std::string adapter, base, out, config, max_shard;
    std::optional<int64_t> rank;
    std::optional<double> alpha;
    bool allow_inexact = false, force = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("lora-merge", "merge a LoRA adapter into its base checkpoint, written as HF safetensors");
  cmd->add_option("--adapter", args->adapter,
                  "a PEFT adapter directory (adapter_config.json), or a Megatron-Bridge adapter checkpoint (root or iteration directory)")
      ->required();
  cmd->add_option("--base", args->base, "the base: an HF checkpoint directory, or a Megatron torch_dist checkpoint")->required();
  cmd->add_option("--out", args->out, "output HF directory (created atomically)")->required();
  cmd->add_option("--config", args->config, "the base model's HF config.json, for a Megatron base or adapter");
  cmd->add_option("--rank", args->rank, "LoRA rank of a Megatron adapter without a run_config.yaml peft: section");
  cmd->add_option("--alpha", args->alpha, "LoRA alpha, likewise (default: the rank)");
  cmd->add_flag("--allow-inexact", args->allow_inexact,
                "merge Megatron adapters HF cannot reproduce exactly (26B-A4B linear_proj, after the post-attention norm) with a warning");
  cmd->add_option("--max-shard-size", args->max_shard, "write new shards of this size (default: the base's own shard files)");
  cmd->add_flag("--force", args->force, "replace an existing output directory");
  cmd->callback([args, &global, &exit_code] {
    lora::LoraMergeOptions o;
    if (!args->max_shard.empty()) {
      auto max_shard = parse_byte_size(args->max_shard);
      if (!max_shard.ok()) { exit_code = report_error("--max-shard-size: " + max_shard.status().message()); return; }
      o.max_shard_bytes = *max_shard;
    }
    o.adapter = args->adapter;
    o.base = args->base;
    o.out = args->out;
    if (!args->config.empty()) o.config_file = args->config;
    o.rank = args->rank;
    o.alpha = args->alpha;
    o.allow_inexact = args->allow_inexact;
    o.threads = global.threads;
    o.output = output_policy(args->force);
    const auto start = std::chrono::steady_clock::now();
    Result<lora::LoraMergeSummary> summary = [&] {
      Progress progress("lora-merge", !global.quiet && !global.json);
      o.progress.update = [&](uint64_t b, uint64_t bt, size_t i, size_t it) { progress.update(b, bt, i, it); };
      return lora::lora_merge(o);
    }();
    if (!summary.ok()) { exit_code = report_error(summary.status().message()); return; }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (const std::string& w : summary->warnings) std::fprintf(stderr, "g4convert: warning: %s\n", w.c_str());
    if (global.json) {
      nlohmann::json j = {{"out", args->out},           {"adapter_kind", summary->adapter_kind}, {"base_kind", summary->base_kind},
                          {"tensors", summary->tensors}, {"merged", summary->merged},            {"bytes", summary->bytes},
                          {"seconds", seconds},          {"warnings", summary->warnings}};
      std::cout << j.dump(2) << "\n";
    } else if (!global.quiet) {
      std::printf("wrote %s: %s adapter merged into %s base, %zu tensors (%zu merged), %s, %s\n", args->out.c_str(),
                  summary->adapter_kind.c_str(), summary->base_kind.c_str(), summary->tensors, summary->merged,
                  human_bytes(summary->bytes).c_str(), human_seconds(seconds).c_str());
    }
    exit_code = 0;
  });
}

}  // namespace g4::cli
