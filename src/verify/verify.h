// verify: the HF-semantics forward over the original checkpoint against the Megatron-semantics forward over
// the converted one, layer by layer. Because the two forwards share every op kernel but none of the packing
// code, a conversion bug shows up as a divergence, and the first layer and sub-block where one starts is named.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "forward/mcore_model.h"

namespace g4::verify {

struct Metrics {
  double cosine = 1.0;
  double max_abs = 0.0;
  double rel_err = 0.0;  // ‖a − b‖ / ‖a‖
};
Metrics compare(const forward::Mat& a, const forward::Mat& b);

struct Thresholds {
  double layer_cosine = 0.99999;  // fp32: every residual and the logits
  double logits_cosine = 0.999;   // bf16: the logits at each row's last real token
  // A sub-block diverges when its outputs differ by more than max(block_rel_err, growth × the relative error
  // of the residual entering its layer): the absolute floor catches a bug in the first layers, the growth
  // factor keeps the honest rounding drift of deep layers from being mistaken for one.
  double block_rel_err = 1e-5;    // fp32 default; bf16 uses 1e-2
  double growth = 10.0;
};

struct LayerReport {
  int layer = 0;
  std::string type;  // "sliding" or "full"
  Metrics residual;
  std::vector<std::pair<std::string, Metrics>> blocks;  // attention, mlp, router, experts, ple (those present)
  std::optional<double> router_topk_agreement;          // fraction of tokens with the same expert set
  std::string divergent_block;                          // empty when this layer does not diverge
};

struct LogitsReport {
  int64_t row = 0, position = 0;
  Metrics metrics;
  bool top1_agrees = true;
  double top5_overlap = 1.0;  // |top5(hf) ∩ top5(mcore)| / 5
  double kl = 0.0;            // KL(p_hf ‖ p_mcore)
};

struct VerifyReport {
  std::string mode;     // "fp32" or "bf16"
  std::string backend;  // Backend::describe() of the backend both forwards ran on
  Thresholds thresholds;
  bool passed = true;
  std::optional<int> first_divergent_layer;  // -1 the embedding, L (the layer count) the head
  std::string first_divergent_block;         // attention, mlp, experts, router, ple, scalar, embedding, head
  Metrics embedding;
  std::vector<LayerReport> layers;
  std::vector<LogitsReport> logits;
  std::vector<std::string> failures;  // every threshold that failed, in words
};

struct VerifyOptions {
  forward::ComputeMode mode = forward::ComputeMode::kF32;
  Thresholds thresholds;
  // The backend of the Megatron-side forward when it is not the one verify() is given: tests pass a decorated
  // backend that plants a fault in that forward alone (tests/verify/faulty_backend.h). Null: the same backend.
  forward::Backend* megatron_backend = nullptr;
  // LoRA adapters each side applies (verify --adapter, adapter_sides.h), in that forward's naming; null: none.
  const forward::AdapterSource* hf_adapters = nullptr;
  const forward::AdapterSource* mcore_adapters = nullptr;
};

Result<VerifyReport> verify(const forward::HfWeights& hf, const forward::McoreWeights& mcore, const forward::ForwardInput& input,
                            forward::Backend& backend, const VerifyOptions& options);

nlohmann::json report_json(const VerifyReport& report);
std::string report_text(const VerifyReport& report);
// An SVG of per-layer 1 − cosine and relative error (log scale), sliding and full layers marked.
std::string report_svg(const VerifyReport& report, const std::string& title);

}  // namespace g4::verify
