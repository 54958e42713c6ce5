// g4convert verify: the original HF checkpoint against a converted Megatron one, through both forwards.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "cli/progress.h"
#include "forward/ops.h"
#include "verify/adapter_sides.h"
#include "verify/verify.h"

namespace g4::cli {

void add_verify_command(CLI::App& app, const GlobalOptions& global, int& exit_code) {
  struct Args {
    std::string hf, mcore, input, ids, dtype = "fp32", report, plot, config, adapter, device = "cpu";
    bool force = false, allow_inexact = false;
    std::optional<int64_t> rank;
    std::optional<double> alpha;
    double layer_cosine = 0.99999, logits_cosine = 0.999, block_rel_err = -1, growth = 10;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("verify", "compare the HF forward of the original with the Megatron forward of the conversion, layer by layer");
  cmd->add_option("--hf", args->hf, "original HF checkpoint")->required();
  cmd->add_option("--mcore", args->mcore,
                  "converted Megatron torch_dist checkpoint (with --adapter: the Megatron base; with a PEFT --adapter: the Megatron "
                  "checkpoint holding the same adapters)");
  cmd->add_option("--adapter", args->adapter,
                  "a Megatron-Bridge LoRA checkpoint (its lora-export is checked), or a PEFT adapter directory (checked against --mcore)");
  cmd->add_flag("--allow-inexact", args->allow_inexact, "with --adapter: export 26B-A4B linear_proj adapters anyway (their divergence shows)");
  cmd->add_option("--rank", args->rank, "with --adapter: LoRA rank where run_config.yaml has no peft: section");
  cmd->add_option("--alpha", args->alpha, "with --adapter: LoRA alpha where run_config.yaml has no peft: section (default: the rank)");
  auto* input = cmd->add_option("--input", args->input, "input JSON (input_ids [, attention_mask, mm_token_type_ids, position_ids])");
  auto* ids = cmd->add_option("--ids", args->ids, std::string("comma-separated token ids (default ") + kDefaultVerifyIds + ")");
  input->excludes(ids);
  cmd->add_option("--dtype", args->dtype, "fp32 (default) or bf16")->check(CLI::IsMember({"fp32", "bf16"}));
  cmd->add_option("--device", args->device, "cpu (default) or cuda: the backend that runs both forwards")->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--report", args->report, "write the full report as JSON");
  cmd->add_option("--plot", args->plot, "write an SVG of per-layer cosine and relative error");
  cmd->add_flag("--force", args->force, "replace existing --report/--plot files");
  cmd->add_option("--config", args->config, "HF config.json for a Megatron checkpoint without hf_config.json");
  cmd->add_option("--layer-cosine", args->layer_cosine, "fp32: minimum cosine of every residual and of the logits (0.99999)");
  cmd->add_option("--logits-cosine", args->logits_cosine, "bf16: minimum logits cosine at each row's last real token (0.999)");
  cmd->add_option("--block-rel-err", args->block_rel_err, "relative error above which a sub-block diverges (fp32 1e-5, bf16 1e-2)");
  cmd->add_option("--growth", args->growth, "... or above this factor times the error entering its layer (10)");
  cmd->callback([args, &global, &exit_code] {
    OutputPolicy policy = output_policy(args->force);
    for (const std::string* read : {&args->hf, &args->mcore, &args->config, &args->input, &args->adapter}) policy.protect(*read);
    if (args->mcore.empty() && args->adapter.empty()) { exit_code = report_error("verify: give --mcore (or --adapter)"); return; }
    auto backend = forward::make_backend(args->device);
    if (!backend.ok()) { exit_code = report_error(backend.status().message()); return; }
    std::optional<OutputFile> report_out, plot_out;
    for (auto [path, out] : {std::pair{&args->report, &report_out}, {&args->plot, &plot_out}}) {
      if (path->empty()) continue;
      auto f = policy.file(*path);
      if (!f.ok()) { exit_code = report_error(f.status().message()); return; }
      out->emplace(std::move(*f));
    }
    auto in = read_forward_input(args->input, args->input.empty() && args->ids.empty() ? kDefaultVerifyIds : args->ids);
    if (!in.ok()) { exit_code = report_error(in.status().message()); return; }
    auto hf = forward::HfWeights::open(args->hf);
    if (!hf.ok()) { exit_code = report_error(hf.status().message()); return; }
    // With --adapter the Megatron base and both sides' adapters come from adapter_sides.h; else the plain pair.
    std::optional<verify::AdapterSides> sides;
    std::shared_ptr<const forward::McoreWeights> mcore;
    if (!args->adapter.empty()) {
      verify::AdapterVerifyOptions ao;
      ao.adapter = args->adapter;
      ao.mcore = args->mcore;
      ao.hf = args->hf;
      ao.config = args->config;
      ao.settings = {args->rank, args->alpha};
      ao.allow_inexact = args->allow_inexact;
      auto opened = verify::open_adapter_sides(ao);
      if (!opened.ok()) { exit_code = report_error(opened.status().message()); return; }
      sides.emplace(std::move(*opened));
      for (const std::string& w : sides->warnings) std::fprintf(stderr, "g4convert: warning: %s\n", w.c_str());
      mcore = sides->base;
    } else {
      auto opened = forward::McoreWeights::open(args->mcore, args->config);
      if (!opened.ok()) { exit_code = report_error(opened.status().message()); return; }
      mcore = std::make_shared<const forward::McoreWeights>(std::move(*opened));
    }
    verify::VerifyOptions o;
    o.mode = args->dtype == "bf16" ? forward::ComputeMode::kBF16 : forward::ComputeMode::kF32;
    o.thresholds.layer_cosine = args->layer_cosine;
    o.thresholds.logits_cosine = args->logits_cosine;
    o.thresholds.block_rel_err = args->block_rel_err > 0 ? args->block_rel_err : (args->dtype == "bf16" ? 1e-2 : 1e-5);
    o.thresholds.growth = args->growth;
    if (sides) o.hf_adapters = sides->peft.get(), o.mcore_adapters = sides->megatron.get();
    auto report = verify::verify(*hf, *mcore, *in, **backend, o);
    if (!report.ok()) { exit_code = report_error(report.status().message()); return; }
    nlohmann::json json = verify::report_json(*report);
    std::string adapter_text;
    if (sides) {
      json["adapter"] = {{"megatron_adapters", sides->megatron_adapters.string()}, {"megatron_base", sides->megatron_base.string()},
                         {"megatron_base_from", sides->base_reason}, {"peft", sides->scratch ? "exported by lora-export" : sides->peft_dir.string()},
                         {"adapted_weights", sides->megatron->weights().size()}, {"warnings", sides->warnings}};
      adapter_text = "adapter: " + sides->megatron_adapters.string() + " (" + std::to_string(sides->megatron->weights().size()) +
                     " Megatron weights adapted) on base " + sides->megatron_base.string() + " (" + sides->base_reason + "); HF side: " +
                     (sides->scratch ? std::string("its lora-export") : sides->peft_dir.string()) + "\n";
    }
    if (report_out) {
      Status s = report_out->write_and_commit(json.dump(2) + "\n");
      if (!s.ok()) { exit_code = report_error(s.message()); return; }
    }
    if (plot_out) {
      auto name = [](const std::string& p) { return std::filesystem::path(p).lexically_normal().filename().string().empty()
                                                          ? std::filesystem::path(p).lexically_normal().parent_path().filename().string()
                                                          : std::filesystem::path(p).lexically_normal().filename().string(); };
      const std::string other = args->adapter.empty() ? name(args->mcore) : name(args->adapter);
      Status s = plot_out->write_and_commit(verify::report_svg(*report, "verify " + name(args->hf) + " vs " + other));
      if (!s.ok()) { exit_code = report_error(s.message()); return; }
    }
    if (global.json) std::cout << json.dump(2) << "\n";
    else if (!global.quiet) std::cout << adapter_text << verify::report_text(*report);
    exit_code = report->passed ? 0 : 1;
  });
}

}  // namespace g4::cli
