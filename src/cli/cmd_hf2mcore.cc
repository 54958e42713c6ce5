// g4convert hf2mcore: HF safetensors -> Megatron-Core torch_dist in Megatron-Bridge's layout.
#include <chrono>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/progress.h"
#include "convert/hf2mcore.h"

namespace g4::cli {

std::optional<DType> parse_dtype_option(const std::string& text) {
  if (text == "bf16") return DType::kBF16;
  if (text == "fp32") return DType::kF32;
  return std::nullopt;  // keep
}

namespace {

// A whole number in [1, kMaxPadVocab], or nothing.
std::optional<int64_t> parse_pad_vocab(const std::string& text) {
  if (text.empty() || text.size() > 8 || text.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  const int64_t n = std::stoll(text);
  if (!convert::check_pad_vocab(n).ok()) return std::nullopt;
  return n;
}

}  // namespace

void add_hf2mcore_command(CLI::App& app, const GlobalOptions& global, int& exit_code) {
  struct Args {
    std::string hf, out, dtype = "keep", pad_vocab;
    bool force = false, allow_non_finite = false, release = false, common_pt = false, text_mode = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("hf2mcore", "convert an HF Gemma 4 checkpoint to Megatron-Core torch_dist (Megatron-Bridge layout)");
  cmd->add_option("--hf", args->hf, "HF checkpoint directory (config.json + safetensors)")->required();
  cmd->add_option("--out", args->out, "output checkpoint root (created atomically)")->required();
  cmd->add_option("--dtype", args->dtype, "keep (default, lossless), bf16 or fp32")->check(CLI::IsMember({"keep", "bf16", "fp32"}));
  cmd->add_flag("--release", args->release,
                "write release/ with tracker 'release' (Megatron-LM load_checkpoint) instead of iter_0000000/ (Megatron-Bridge)");
  cmd->add_flag("--common-pt", args->common_pt,
                "common state in common.pt with the 4-key metadata.json (megatron-core <= 0.18) instead of inside DCP (0.19+)");
  cmd->add_flag("--text-mode", args->text_mode,
                "a conditional checkpoint as Megatron-Bridge's GEMMA4_CONVERSION_MODE=text imports it: a plain GPTModel, towers not written");
  cmd->add_option("--pad-vocab", args->pad_vocab,
                  "pad the word embedding (and an untied output layer) with zero rows to a multiple of N; 1: none "
                  "(default: Megatron-Bridge's, 128 for dense models, 1 for MoE)")
      ->check([](const std::string& text) -> std::string {
        if (parse_pad_vocab(text)) return "";
        return "'" + text + "' is not a row multiple (a whole number from 1, no padding, to " + std::to_string(convert::kMaxPadVocab) + ")";
      });
  cmd->add_flag("--force", args->force, "replace an existing output directory");
  cmd->add_flag("--allow-non-finite", args->allow_non_finite, "convert tensors holding NaN or Inf instead of refusing them");
  cmd->callback([args, &global, &exit_code] {
    convert::Hf2McoreOptions o;
    o.hf = args->hf;
    o.out = args->out;
    o.threads = global.threads;
    o.dtype = parse_dtype_option(args->dtype);
    o.output = output_policy(args->force);
    o.allow_non_finite = args->allow_non_finite;
    o.text_mode = args->text_mode;
    o.layout = args->release ? convert::IterationLayout::kRelease : convert::IterationLayout::kBridge;
    o.common = args->common_pt ? convert::CommonStateLayout::kCommonPt : convert::CommonStateLayout::kDcpObject;
    if (!args->pad_vocab.empty()) o.pad_vocab = parse_pad_vocab(args->pad_vocab);
    const auto start = std::chrono::steady_clock::now();
    Result<convert::ConvertSummary> summary = [&] {
      Progress progress("hf2mcore", !global.quiet && !global.json);
      o.progress.update = [&](uint64_t b, uint64_t bt, size_t i, size_t it) { progress.update(b, bt, i, it); };
      return convert::hf2mcore(o);
    }();
    if (!summary.ok()) { exit_code = report_error(summary.status().message()); return; }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (const std::string& w : summary->warnings) std::fprintf(stderr, "g4convert: warning: %s\n", w.c_str());
    if (global.json) {
      nlohmann::json j = {{"out", args->out}, {"iteration_dir", summary->iteration_dir.string()}, {"family", summary->family},
                          {"form", summary->form}, {"source_tensors", summary->source_tensors},
                          {"dcp_tensors", summary->target_tensors}, {"chunks", summary->chunks},
                          {"extra_state_objects", summary->extra_state}, {"vocab_rows", summary->vocab_rows},
                          {"bytes", summary->bytes}, {"seconds", seconds},
                          {"warnings", summary->warnings}};
      std::cout << j.dump(2) << "\n";
    } else if (!global.quiet) {
      std::printf("wrote %s: %s %s, %zu HF tensors -> %zu DCP tensors (%zu chunks, %zu extra-state objects), %s, %s\n",
                  summary->iteration_dir.c_str(), summary->family.c_str(), summary->form.c_str(), summary->source_tensors,
                  summary->target_tensors, summary->chunks, summary->extra_state, human_bytes(summary->bytes).c_str(),
                  human_seconds(seconds).c_str());
    }
    exit_code = 0;
  });
}

}  // namespace g4::cli
