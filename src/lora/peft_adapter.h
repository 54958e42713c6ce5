// A PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors, as peft 0.21.2 saves it) read
// as per-HF-tensor deltas: delta i changes the base tensor deltas()[i].tensor by scale · B · A (experts: per
// expert e, scale · B_e · A_e). Only what PEFT applies exactly as that sum is accepted; everything else is
// refused naming the file and key: LoRA variants (DoRA, aLoRA, VeLoRA, ...), lora_bias, bias != "none",
// fan_in_fan_out, modules_to_save, trainable tokens, layers_to_transform, layer_replication, embedding LoRA,
// a key that matches no target (PEFT would drop it silently), A/B shapes that disagree with each other or with
// the rank, and (in factors()) non-finite values.
//
// Keys (peft utils/save_and_load.py, tuners/lora/layer.py Linear and ParamWrapper):
//   base_model.model.<module>.lora_A.weight [r, in], .lora_B.weight [out, r]: lora.Linear on <module>, whose
//     HF tensor is <module>.weight (target_modules);
//   base_model.model.<module>[.base_layer]*.lora_A.weight [E·r, in], .lora_B.weight [out, E·r]: lora.ParamWrapper
//     on the parameter <module>.<p> (target_parameters). Several targeted parameters of one module nest in the
//     order the module registers them, the first innermost: for Gemma4TextExperts (gate_up_proj, then
//     down_proj) gate_up_proj is "…experts.base_layer.lora_*" and down_proj "…experts.lora_*"; one targeted
//     parameter has no base_layer level (checked against peft 0.21.2 on transformers 5.23's Gemma 4).
//     Gemma 4's experts are (E, out, in) with is_transposed=False, so PEFT swaps in/out: in = d2, out = d1.
//     Packing (ParamWrapper.get_delta_weight): lora_A row e·r+k = A_e[k, :], lora_B column k·E+e = B_e[:, k].
// Scale: lora_alpha / r, with rank_pattern / alpha_pattern (first matching key, peft get_pattern_key, on the
// module name for Linear targets and "<module>.<param>" for parameters); lora_alpha / sqrt(r) with use_rslora.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lora/peft_files.h"
#include "runtime/safetensors_reader.h"
#include "runtime/status.h"

namespace g4::lora {

struct PeftDelta {
  std::string tensor;  // the HF base tensor it changes, e.g. "model.language_model.layers.3.self_attn.q_proj.weight"
                       // or "model.language_model.layers.0.experts.gate_up_proj"
  int64_t experts = 0;  // 0: a 2-D [out, in] target (lora.Linear); E >= 1: a ParamWrapper on a 3-D [E, out, in]
                        // parameter (E = 1 may also be a 2-D parameter targeted through target_parameters)
  int64_t rank = 0, in = 0, out = 0;
  double scale = 0;  // lora_alpha / r (rank_pattern / alpha_pattern applied); lora_alpha / sqrt(r) with use_rslora
  std::string key_a, key_b;  // the adapter_model.safetensors keys of A and B
};

// fp32 factors of one delta, experts unpacked from PEFT's packing.
struct PeftFactors {
  std::vector<float> a;  // [max(E,1), rank, in]
  std::vector<float> b;  // [max(E,1), out, rank]
};

class PeftAdapter {
 public:
  // Reads adapter_config.json and the safetensors header of adapter_model.safetensors (values are read by
  // factors()). Deltas are in key order of the file's tensor names.
  static Result<PeftAdapter> open(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const { return dir_; }
  const std::vector<PeftDelta>& deltas() const { return deltas_; }
  // The delta changing the HF tensor `tensor`, or null.
  const PeftDelta* find(const std::string& tensor) const;
  // Reads, widens to fp32 and unpacks delta i. kCorruption naming the file and key for a NaN or Inf value.
  // Thread-safe.
  Result<PeftFactors> factors(size_t i) const;

  // adapter_config.json's r and lora_alpha, and its base_model_name_or_path (empty when absent).
  int64_t rank() const { return rank_; }
  double alpha() const { return alpha_; }
  const std::string& base_model_name_or_path() const { return base_model_; }

 private:
  std::filesystem::path dir_;
  std::shared_ptr<const SafetensorsFile> file_;
  std::vector<PeftDelta> deltas_;
  std::map<std::string, size_t> by_tensor_;
  int64_t rank_ = 0;
  double alpha_ = 0;
  std::string base_model_;
};

}  // namespace g4::lora
