// g4convert synth: a deterministic random HF checkpoint of a preset.
#include <chrono>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/progress.h"
#include "gemma4/presets.h"
#include "gemma4/synth.h"
#include "runtime/safetensors_writer.h"

namespace g4::cli {

void add_synth_command(CLI::App& app, const GlobalOptions& global, int& exit_code) {
  struct Args {
    std::string preset, out, dtype = "bf16", form = "causal", max_shard = "5GB";
    uint64_t seed = 0;
    int layers = 0;
    bool with_shared_kv = false, force = false;
  };
  auto args = std::make_shared<Args>();
  std::vector<std::string> names;
  for (const auto& p : gemma4::all_presets()) names.push_back(p.name);
  CLI::App* cmd = app.add_subcommand("synth", "write a complete HF Gemma 4 checkpoint with deterministic random weights");
  cmd->add_option("--preset", args->preset, "model structure and size")->required()->check(CLI::IsMember(names));
  cmd->add_option("--out", args->out, "output directory (created atomically)")->required();
  cmd->add_option("--seed", args->seed, "random seed (default 0)");
  cmd->add_option("--layers", args->layers, "keep only the first N decoder layers (last one forced full)");
  cmd->add_option("--dtype", args->dtype, "bf16 (default) or fp32")->check(CLI::IsMember({"bf16", "fp32", "f32", "fp16"}));
  cmd->add_option("--form", args->form, "causal: Gemma4ForCausalLM (default); conditional: Gemma4ForConditionalGeneration")
      ->check(CLI::IsMember({"causal", "conditional"}));
  cmd->add_flag("--with-shared-kv", args->with_shared_kv, "also write the unused K/V of KV-shared layers, as older E-series uploads do");
  cmd->add_option("--max-shard-size", args->max_shard, "shard size limit, e.g. 5GB (default), 500MB");
  cmd->add_flag("--force", args->force, "replace an existing output directory");
  cmd->callback([args, &global, &exit_code] {
    auto max_shard = parse_byte_size(args->max_shard);
    if (!max_shard.ok()) { exit_code = report_error("--max-shard-size: " + max_shard.status().message()); return; }
    ThreadPool pool(global.threads);
    gemma4::SynthOptions o;
    o.preset = args->preset;
    o.out = args->out;
    o.seed = args->seed;
    o.layers = args->layers;
    o.dtype = args->dtype == "bf16" ? DType::kBF16 : args->dtype == "fp16" ? DType::kF16 : DType::kF32;
    o.form = args->form == "conditional" ? gemma4::ModelForm::kConditional : gemma4::ModelForm::kCausal;
    o.with_shared_kv = args->with_shared_kv;
    o.output = output_policy(args->force);
    o.max_shard_bytes = *max_shard;
    o.pool = &pool;
    auto start = std::chrono::steady_clock::now();
    Result<gemma4::SynthSummary> summary = [&] {
      Progress progress("synth " + args->preset, !global.quiet && !global.json);
      o.on_progress = [&](uint64_t b, uint64_t bt, size_t t, size_t tt) { progress.update(b, bt, t, tt); };
      return gemma4::synth_checkpoint(o);
    }();
    if (!summary.ok()) { exit_code = report_error(summary.status().message()); return; }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (global.json) {
      nlohmann::json j = {{"out", args->out}, {"preset", args->preset}, {"variant", gemma4::identify_variant(summary->config.text)},
                          {"form", gemma4::form_name(o.form)}, {"dtype", args->dtype}, {"tensors", summary->tensors},
                          {"bytes", summary->bytes}, {"shards", summary->shards}, {"seconds", seconds}};
      std::cout << j.dump(2) << "\n";
    } else if (!global.quiet) {
      std::printf("wrote %s: %s, %zu tensors, %s in %zu shard%s, %s\n", args->out.c_str(),
                  gemma4::identify_variant(summary->config.text).c_str(), summary->tensors, human_bytes(summary->bytes).c_str(),
                  summary->shards, summary->shards == 1 ? "" : "s", human_seconds(seconds).c_str());
    }
    exit_code = 0;
  });
}

}  // namespace g4::cli
