// g4convert mcore2hf: Megatron-Core torch_dist (Megatron-Bridge layout) -> HF safetensors.
#include <chrono>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/progress.h"
#include "convert/mcore2hf.h"
#include "runtime/safetensors_writer.h"

namespace g4::cli {

void add_mcore2hf_command(CLI::App& app, const GlobalOptions& global, int& exit_code) {
  struct Args {
    std::string mcore, out, reference, config, max_shard = "5GB", dtype = "keep";
    bool force = false, allow_non_finite = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("mcore2hf", "convert a Megatron-Core torch_dist checkpoint (Megatron-Bridge layout) to HF safetensors");
  cmd->add_option("--mcore", args->mcore, "checkpoint root or iteration directory")->required();
  cmd->add_option("--out", args->out, "output HF directory (created atomically)")->required();
  cmd->add_option("--reference-hf", args->reference,
                  "the original HF checkpoint: its config, and its optional tensors (K/V of KV-shared layers) kept");
  cmd->add_option("--config", args->config,
                  "the HF config.json to write (wins over the checkpoint's hf_config.json or run_config.yaml, which must agree with it)");
  cmd->add_option("--max-shard-size", args->max_shard, "shard size limit, e.g. 5GB (default), 500MB");
  cmd->add_option("--dtype", args->dtype, "keep (default, lossless), bf16 or fp32")->check(CLI::IsMember({"keep", "bf16", "fp32"}));
  cmd->add_flag("--force", args->force, "replace an existing output directory");
  cmd->add_flag("--allow-non-finite", args->allow_non_finite, "convert tensors holding NaN or Inf instead of refusing them");
  cmd->callback([args, &global, &exit_code] {
    auto max_shard = parse_byte_size(args->max_shard);
    if (!max_shard.ok()) { exit_code = report_error("--max-shard-size: " + max_shard.status().message()); return; }
    convert::Mcore2HfOptions o;
    o.mcore = args->mcore;
    o.out = args->out;
    if (!args->reference.empty()) o.reference_hf = args->reference;
    if (!args->config.empty()) o.config_file = args->config;
    o.max_shard_bytes = *max_shard;
    o.threads = global.threads;
    o.dtype = parse_dtype_option(args->dtype);
    o.output = output_policy(args->force);
    o.allow_non_finite = args->allow_non_finite;
    const auto start = std::chrono::steady_clock::now();
    Result<convert::ConvertSummary> summary = [&] {
      Progress progress("mcore2hf", !global.quiet && !global.json);
      o.progress.update = [&](uint64_t b, uint64_t bt, size_t i, size_t it) { progress.update(b, bt, i, it); };
      return convert::mcore2hf(o);
    }();
    if (!summary.ok()) { exit_code = report_error(summary.status().message()); return; }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (const std::string& w : summary->warnings) std::fprintf(stderr, "g4convert: warning: %s\n", w.c_str());
    if (global.json) {
      nlohmann::json j = {{"out", args->out}, {"iteration_dir", summary->iteration_dir.string()}, {"family", summary->family},
                          {"form", summary->form}, {"dcp_tensors", summary->source_tensors}, {"hf_tensors", summary->target_tensors},
                          {"bytes", summary->bytes}, {"seconds", seconds}, {"warnings", summary->warnings}};
      std::cout << j.dump(2) << "\n";
    } else if (!global.quiet) {
      std::printf("wrote %s: %s %s, %zu DCP tensors -> %zu HF tensors, %s, %s\n", args->out.c_str(), summary->family.c_str(),
                  summary->form.c_str(), summary->source_tensors, summary->target_tensors, human_bytes(summary->bytes).c_str(),
                  human_seconds(seconds).c_str());
    }
    exit_code = 0;
  });
}

}  // namespace g4::cli
