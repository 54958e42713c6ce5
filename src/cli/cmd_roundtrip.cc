// g4convert roundtrip: hf -> mcore -> hf, then a byte-for-byte comparison. Exit 1 when anything differs.
#include <chrono>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/progress.h"
#include "convert/roundtrip.h"
#include "gemma4/presets.h"
#include "verify/verify.h"

namespace g4::cli {
namespace {

// " with vision+audio towers (clipped linears)" for the summary line; empty without towers.
std::string towers_label(const gemma4::ModelConfig& config) {
  std::string names;
  bool clipped = false;
  for (auto [name, tower] : {std::pair{"vision", &config.vision_config}, {"audio", &config.audio_config}}) {
    if (tower->is_null()) continue;
    names += (names.empty() ? "" : "+") + std::string(name);
    clipped |= tower->value("use_clipped_linears", false);
  }
  if (names.empty()) return "";
  return " with " + names + (names.find('+') == std::string::npos ? " tower" : " towers") + (clipped ? " (clipped linears)" : "");
}

}  // namespace

void add_roundtrip_command(CLI::App& app, const GlobalOptions& global, int& exit_code) {
  struct Args {
    std::string hf, keep, dtype = "fp32", device = "cpu";
    bool forward = false, force = false, common_pt = false, text_mode = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("roundtrip", "hf -> mcore -> hf in a scratch directory and compare every tensor byte for byte");
  cmd->add_option("--hf", args->hf, "HF checkpoint directory")->required();
  cmd->add_option("--keep", args->keep, "keep the intermediate checkpoints here (mcore/ and hf/)");
  cmd->add_flag("--force", args->force, "replace an existing --keep directory (one holding an earlier mcore/ and hf/)");
  cmd->add_flag("--text-mode", args->text_mode,
                "the intermediate Megatron checkpoint in Megatron-Bridge's text mode (towers back from the original)");
  cmd->add_flag("--forward", args->forward, "also verify: the HF forward of the original against the Megatron forward of the conversion");
  cmd->add_option("--dtype", args->dtype, "--forward's precision: fp32 (default) or bf16")->check(CLI::IsMember({"fp32", "bf16"}));
  cmd->add_option("--device", args->device, "--forward's backend: cpu (default) or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_flag("--common-pt", args->common_pt, "the intermediate Megatron checkpoint keeps its common state in common.pt (megatron-core <= 0.18)");
  cmd->callback([args, &global, &exit_code] {
    convert::RoundtripOptions o;
    o.common = args->common_pt ? convert::CommonStateLayout::kCommonPt : convert::CommonStateLayout::kDcpObject;
    o.hf = args->hf;
    o.text_mode = args->text_mode;
    if (!args->keep.empty()) o.keep = args->keep;
    o.output = output_policy(args->force);
    o.threads = global.threads;
    std::optional<verify::VerifyReport> verified;
    std::unique_ptr<forward::Backend> backend;
    if (args->device != "cpu" && !args->forward) { exit_code = report_error("roundtrip: --device needs --forward"); return; }
    if (args->forward) {
      // Opened before the conversion starts, so a missing GPU costs nothing.
      auto made = forward::make_backend(args->device);
      if (!made.ok()) { exit_code = report_error(made.status().message()); return; }
      backend = std::move(*made);
      o.inspect_intermediates = [&](const std::filesystem::path& mcore, const std::filesystem::path&) -> Status {
        G4_ASSIGN_OR_RETURN(forward::HfWeights hf, forward::HfWeights::open(args->hf));
        G4_ASSIGN_OR_RETURN(forward::McoreWeights mc, forward::McoreWeights::open(mcore));
        G4_ASSIGN_OR_RETURN(forward::ForwardInput in, read_forward_input("", kDefaultVerifyIds));
        verify::VerifyOptions vo;
        vo.mode = args->dtype == "bf16" ? forward::ComputeMode::kBF16 : forward::ComputeMode::kF32;
        vo.thresholds.block_rel_err = args->dtype == "bf16" ? 1e-2 : 1e-5;
        G4_ASSIGN_OR_RETURN(verified, verify::verify(hf, mc, in, *backend, vo));
        return Status();
      };
    }
    const auto start = std::chrono::steady_clock::now();
    Result<convert::RoundtripReport> report = [&] {
      Progress progress("roundtrip", !global.quiet && !global.json);
      o.progress.update = [&](uint64_t b, uint64_t bt, size_t i, size_t it) { progress.update(b, bt, i, it); };
      return convert::roundtrip(o);
    }();
    if (!report.ok()) { exit_code = report_error(report.status().message()); return; }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (const std::string& w : report->warnings) std::fprintf(stderr, "g4convert: warning: %s\n", w.c_str());
    auto differences_json = [](const std::vector<convert::Difference>& ds) {
      nlohmann::json a = nlohmann::json::array();
      for (const auto& d : ds) a.push_back({{"item", d.item}, {"original", d.original}, {"roundtripped", d.roundtripped}});
      return a;
    };
    if (global.json) {
      nlohmann::json j = {{"hf", args->hf}, {"identical", report->identical()}, {"family", report->to_mcore.family},
                          {"form", report->to_mcore.form}, {"tensors_compared", report->tensors_compared},
                          {"bytes_compared", report->bytes_compared}, {"dcp_tensors", report->to_mcore.target_tensors},
                          {"tensor_differences", differences_json(report->tensor_differences)},
                          {"config_differences", differences_json(report->config_differences)}, {"seconds", seconds},
                          {"warnings", report->warnings}};
      if (verified) j["verify"] = verify::report_json(*verified);
      std::cout << j.dump(2) << "\n";
    } else if (!global.quiet || !report->identical()) {
      if (!report->identical()) {
        std::printf("%-64s  %-28s  %s\n", "differs", "original", "round-tripped");
        for (const auto* list : {&report->tensor_differences, &report->config_differences})
          for (const auto& d : *list) std::printf("%-64s  %-28s  %s\n", d.item.c_str(), d.original.c_str(), d.roundtripped.c_str());
      }
      auto config = gemma4::load_config((std::filesystem::path(args->hf) / "config.json").string());
      std::string variant = config.ok() ? gemma4::identify_variant(config->text) : std::string("?");
      if (config.ok()) variant += towers_label(*config);
      std::string line = args->hf + ": " + variant + " (" + report->to_mcore.family + ", " + report->to_mcore.form + "), " +
                         std::to_string(report->tensors_compared) + " tensors, " + human_bytes(report->bytes_compared) + ", " +
                         human_seconds(seconds) + ": " +
                         (report->identical() ? std::string("bit-exact")
                                              : std::to_string(report->tensor_differences.size() + report->config_differences.size()) + " differences");
      if (verified) {
        double max_abs = 0, cosine = 1;
        for (const auto& l : verified->logits) max_abs = std::max(max_abs, l.metrics.max_abs), cosine = std::min(cosine, l.metrics.cosine);
        char buf[160];
        std::snprintf(buf, sizeof buf, "; verify %s: logits max|d| %.3g, cosine %.9f, %s", verified->mode.c_str(), max_abs, cosine,
                      verified->passed ? "PASS" : ("FAIL at " + verified->first_divergent_block).c_str());
        line += buf;
      }
      std::printf("%s\n", line.c_str());
    }
    exit_code = report->identical() && (!verified || verified->passed) ? 0 : 1;
  });
}

}  // namespace g4::cli
