// g4convert lora-export: Megatron-Bridge LoRA adapters (torch_dist) -> an HF PEFT adapter directory.
#include <chrono>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/progress.h"
#include "lora/peft_export.h"

namespace g4::cli {

void add_lora_export_command(CLI::App& app, const GlobalOptions& global, int& exit_code) {
  struct Args {
    std::string adapter, out, reference, config, dtype = "fp32";
    std::optional<int64_t> rank;
    std::optional<double> alpha;
    bool allow_inexact = false, force = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("lora-export", "export Megatron-Bridge LoRA adapters (torch_dist) as an HF PEFT adapter");
  cmd->add_option("--adapter", args->adapter, "the adapter checkpoint: root or iteration directory (adapter-only or full)")->required();
  cmd->add_option("--out", args->out, "output PEFT adapter directory (created atomically)")->required();
  cmd->add_option("--reference-hf", args->reference, "the base HF checkpoint: its config.json, and base_model_name_or_path");
  cmd->add_option("--config", args->config, "the base model's HF config.json (wins over the checkpoint's run_config.yaml)");
  cmd->add_option("--dtype", args->dtype, "fp32 (default, exact), keep (the stored dtype) or bf16 (rounds)")
      ->check(CLI::IsMember({"keep", "bf16", "fp32"}));
  cmd->add_option("--rank", args->rank, "LoRA rank, when the checkpoint has no run_config.yaml peft: section");
  cmd->add_option("--alpha", args->alpha, "LoRA alpha, likewise (default: the rank)");
  cmd->add_flag("--allow-inexact", args->allow_inexact,
                "export adapters PEFT cannot reproduce exactly (26B-A4B linear_proj, after the post-attention norm) with a warning");
  cmd->add_flag("--force", args->force, "replace an existing output directory");
  cmd->callback([args, &global, &exit_code] {
    lora::PeftExportOptions o;
    o.adapter = args->adapter;
    o.out = args->out;
    if (!args->reference.empty()) o.reference_hf = args->reference;
    if (!args->config.empty()) o.config_file = args->config;
    o.dtype = parse_dtype_option(args->dtype);
    o.settings.rank = args->rank;
    o.settings.alpha = args->alpha;
    o.allow_inexact = args->allow_inexact;
    o.output = output_policy(args->force);
    o.threads = global.threads;
    const auto start = std::chrono::steady_clock::now();
    Result<lora::PeftExportSummary> summary = [&] {
      Progress progress("lora-export", !global.quiet && !global.json);
      o.progress.update = [&](uint64_t b, uint64_t bt, size_t i, size_t it) { progress.update(b, bt, i, it); };
      return lora::export_peft_adapter(o);
    }();
    if (!summary.ok()) { exit_code = report_error(summary.status().message()); return; }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (const std::string& w : summary->warnings) std::fprintf(stderr, "g4convert: warning: %s\n", w.c_str());
    if (global.json) {
      nlohmann::json j = {{"out", args->out}, {"iteration_dir", summary->iteration_dir.string()}, {"family", summary->family},
                          {"form", summary->form}, {"adapters", summary->adapters}, {"targets", summary->targets},
                          {"tensors", summary->tensors}, {"bytes", summary->bytes}, {"seconds", seconds},
                          {"warnings", summary->warnings}};
      std::cout << j.dump(2) << "\n";
    } else if (!global.quiet) {
      std::printf("wrote %s: %s %s, %zu Megatron adapters -> %zu PEFT targets (%zu tensors), %s, %s\n", args->out.c_str(),
                  summary->family.c_str(), summary->form.c_str(), summary->adapters, summary->targets, summary->tensors,
                  human_bytes(summary->bytes).c_str(), human_seconds(seconds).c_str());
    }
    exit_code = 0;
  });
}

}  // namespace g4::cli
