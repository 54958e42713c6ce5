// g4convert forward: the reference forward over an HF checkpoint, with top-k next tokens per row and
// optional dumps of logits, hidden states and routing.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/progress.h"
#include "forward/hf_model.h"
#include "forward/mcore_model.h"
#include "forward/timing_backend.h"
#include "runtime/safetensors_writer.h"
#include "runtime/text_file.h"

namespace g4::cli {
namespace {
using json = nlohmann::json;
using namespace g4::forward;

struct TopEntry {
  int64_t token;
  float logit;
  double prob;
};

std::vector<TopEntry> top_k(const float* logits, int64_t vocab, int k) {
  double max = *std::max_element(logits, logits + vocab), sum = 0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(logits[v]) - max);
  std::vector<int64_t> order(static_cast<size_t>(vocab));
  for (int64_t v = 0; v < vocab; ++v) order[static_cast<size_t>(v)] = v;
  k = static_cast<int>(std::min<int64_t>(k, vocab));
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int64_t a, int64_t b) { return logits[a] != logits[b] ? logits[a] > logits[b] : a < b; });
  std::vector<TopEntry> out;
  for (int i = 0; i < k; ++i) {
    int64_t t = order[static_cast<size_t>(i)];
    out.push_back({t, logits[t], std::exp(static_cast<double>(logits[t]) - max) / sum});
  }
  return out;
}

Status write_mats(OutputFile& file, const std::vector<std::pair<std::string, const Mat*>>& mats, int64_t batch, int64_t seq) {
  std::vector<TensorSpec> specs;
  for (const auto& [name, m] : mats) specs.push_back({name, DType::kF32, {batch, seq, m->cols}});
  G4_RETURN_IF_ERROR(write_safetensors_file(file.path(), specs, [&](size_t i, uint64_t offset, std::span<std::byte> out) {
    std::memcpy(out.data(), reinterpret_cast<const std::byte*>(mats[i].second->v.data()) + offset, out.size());
    return Status();
  }, {}));
  return file.commit();
}

json routing_json(const ForwardResult& r) {
  json layers = json::array();
  for (const LayerRouting& lr : r.routing) {
    json experts = json::array(), weights = json::array();
    for (int64_t b = 0; b < r.batch; ++b) {
      json erow = json::array(), wrow = json::array();
      for (int64_t s = 0; s < r.seq; ++s) {
        int64_t t = b * r.seq + s;
        auto k = lr.routing.top_k;
        erow.push_back(std::vector<int32_t>(lr.routing.experts.begin() + t * k, lr.routing.experts.begin() + (t + 1) * k));
        wrow.push_back(std::vector<float>(lr.routing.weights.begin() + t * k, lr.routing.weights.begin() + (t + 1) * k));
      }
      experts.push_back(erow);
      weights.push_back(wrow);
    }
    layers.push_back({{"layer", lr.layer}, {"experts", experts}, {"weights", weights}});
  }
  return {{"batch", r.batch}, {"seq", r.seq}, {"layers", layers}};
}

}  // namespace

Result<ForwardInput> read_forward_input(const std::string& input_path, const std::string& ids) {
  if (!ids.empty()) return forward_input_from_ids(ids);
  G4_ASSIGN_OR_RETURN(std::string text, read_text_file(input_path, 256u << 20));
  return parse_forward_input(text, input_path);
}

void add_forward_command(CLI::App& app, const GlobalOptions& global, int& exit_code) {
  struct Args {
    std::string hf, mcore, input, ids, dtype = "fp32", logits, hidden, routing, gemm = "blas", device = "cpu";
    int top = 5;
    bool force = false, profile = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("forward", "run the reference forward: HF transformers' semantics (--hf) or Megatron-Bridge's (--mcore)");
  auto* hf = cmd->add_option("--hf", args->hf, "HF checkpoint directory (HF semantics)");
  auto* mcore = cmd->add_option("--mcore", args->mcore, "Megatron torch_dist checkpoint (Megatron-Bridge semantics)");
  hf->excludes(mcore);
  auto* input = cmd->add_option("--input", args->input, "JSON with input_ids [, attention_mask, mm_token_type_ids, position_ids]");
  auto* ids = cmd->add_option("--ids", args->ids, "comma-separated token ids (one row)");
  input->excludes(ids);
  cmd->add_option("--dtype", args->dtype, "fp32 (default; tight parity) or bf16 (rounds where transformers does)")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  cmd->add_option("--top", args->top, "next-token candidates to print per row (default 5)")->check(CLI::Range(1, 1000));
  cmd->add_option("--logits", args->logits, "write F32 'logits' [B,S,V] to this safetensors file");
  cmd->add_option("--hidden", args->hidden, "write F32 'hidden.0' (embedding) and 'hidden.{l+1}' (after layer l) [B,S,H]");
  cmd->add_option("--routing", args->routing, "write the chosen experts and weights of every MoE layer as JSON");
  cmd->add_flag("--force", args->force, "replace existing --logits/--hidden/--routing files");
  cmd->add_option("--gemm", args->gemm, "blas (default) or loops: the CPU GEMM, for benchmarks")->check(CLI::IsMember({"blas", "loops"}));
  cmd->add_flag("--profile", args->profile, "print the time each op took (waiting for the device around each) on stderr");
  cmd->add_option("--device", args->device, "cpu (default) or cuda: the backend that runs the ops")->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->callback([args, &global, &exit_code] {
    if (args->input.empty() && args->ids.empty()) { exit_code = report_error("forward needs --input or --ids"); return; }
    if (args->hf.empty() == args->mcore.empty()) { exit_code = report_error("forward needs --hf or --mcore"); return; }
    if (args->gemm == "loops" && args->device != "cpu") { exit_code = report_error("forward: --gemm loops is a CPU option"); return; }
    // The device is opened before any output is claimed or weight read: no GPU fails at once.
    auto backend = args->gemm == "loops" ? Result<std::unique_ptr<Backend>>(make_cpu_backend(false)) : make_backend(args->device);
    if (!backend.ok()) { exit_code = report_error(backend.status().message()); return; }
    // Every output is claimed before any work, so a bad path fails at once and never touches an input.
    OutputPolicy policy = output_policy(args->force);
    for (const std::string* read : {&args->hf, &args->mcore, &args->input}) policy.protect(*read);
    std::optional<OutputFile> logits_out, hidden_out, routing_out;
    for (auto [path, out] : {std::pair{&args->logits, &logits_out}, {&args->hidden, &hidden_out}, {&args->routing, &routing_out}}) {
      if (path->empty()) continue;
      auto f = policy.file(*path);
      if (!f.ok()) { exit_code = report_error(f.status().message()); return; }
      out->emplace(std::move(*f));
    }
    auto in = read_forward_input(args->input, args->ids);
    if (!in.ok()) { exit_code = report_error(in.status().message()); return; }
    std::optional<HfWeights> hf_weights;
    std::optional<McoreWeights> mcore_weights;
    if (!args->hf.empty()) {
      auto w = HfWeights::open(args->hf);
      if (!w.ok()) { exit_code = report_error(w.status().message()); return; }
      hf_weights = std::move(*w);
    } else {
      auto w = McoreWeights::open(args->mcore);
      if (!w.ok()) { exit_code = report_error(w.status().message()); return; }
      mcore_weights = std::move(*w);
    }
    const std::string source = args->hf.empty() ? args->mcore : args->hf;
    ForwardOptions o;
    o.mode = args->dtype == "bf16" ? ComputeMode::kBF16 : ComputeMode::kF32;
    std::optional<TimingBackend> timing;
    if (args->profile) timing.emplace(**backend);
    o.backend = timing ? static_cast<Backend*>(&*timing) : backend->get();
    o.all_logits = !args->logits.empty();
    o.keep_hidden = !args->hidden.empty();
    auto start = std::chrono::steady_clock::now();
    Result<ForwardResult> r = [&] {
      Progress progress("forward", !global.quiet && !global.json);
      o.on_layer = [&](int done, int total) { progress.update(0, 0, static_cast<size_t>(done), static_cast<size_t>(total)); };
      return hf_weights ? hf_forward(*hf_weights, *in, o) : mcore_forward(*mcore_weights, *in, o);
    }();
    if (!r.ok()) { exit_code = report_error(source + ": " + r.status().message()); return; }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (timing) std::fputs(timing->report(seconds).c_str(), stderr);

    if (logits_out) {
      Status s = write_mats(*logits_out, {{"logits", &r->logits}}, r->batch, r->seq);
      if (!s.ok()) { exit_code = report_error(s.message()); return; }
    }
    if (hidden_out) {
      std::vector<std::pair<std::string, const Mat*>> mats;
      for (size_t i = 0; i < r->hidden.size(); ++i) mats.push_back({"hidden." + std::to_string(i), &r->hidden[i]});
      Status s = write_mats(*hidden_out, mats, r->batch, r->seq);
      if (!s.ok()) { exit_code = report_error(s.message()); return; }
    }
    if (routing_out) {
      Status s = routing_out->write_and_commit(routing_json(*r).dump() + "\n");
      if (!s.ok()) { exit_code = report_error(s.message()); return; }
    }

    json rows = json::array();
    const int64_t V = r->logits.cols;
    for (int64_t b = 0; b < r->batch; ++b) {
      const int64_t pos = r->last_real[static_cast<size_t>(b)];
      const float* logits = o.all_logits ? r->logits.row(b * r->seq + pos) : r->logits.row(b);
      json top = json::array();
      for (const TopEntry& e : top_k(logits, V, args->top)) top.push_back({{"token", e.token}, {"logit", e.logit}, {"prob", e.prob}});
      rows.push_back({{"row", b}, {"position", pos}, {"top", top}});
    }
    const int64_t tokens = static_cast<int64_t>(std::count(in->attention_mask.begin(), in->attention_mask.end(), 1));
    if (global.json) {
      std::cout << json{{"dtype", args->dtype}, {"rows", rows}, {"seconds", seconds}, {"tokens", tokens}}.dump(2) << "\n";
    } else if (!global.quiet) {
      for (const json& row : rows) {
        std::printf("row %lld, position %lld:", static_cast<long long>(row["row"].get<int64_t>()),
                    static_cast<long long>(row["position"].get<int64_t>()));
        for (const json& e : row["top"])
          std::printf("  %lld (%.4f, p=%.4f)", static_cast<long long>(e["token"].get<int64_t>()), e["logit"].get<double>(),
                      e["prob"].get<double>());
        std::printf("\n");
      }
      std::printf("%lld tokens in %s (%.1f tokens/s, %s)\n", static_cast<long long>(tokens), human_seconds(seconds).c_str(),
                  static_cast<double>(tokens) / seconds, args->dtype.c_str());
    }
    exit_code = 0;
  });
}

}  // namespace g4::cli
