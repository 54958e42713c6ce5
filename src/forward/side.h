// What the two semantics of the forward differ in, as data: the parameter names of each side (HF transformers'
// modules over a safetensors checkpoint; Megatron-Bridge's over a torch_dist one), whether attention and the
// gated MLP read one fused matmul or separate ones, and where each framework applies a LoRA adapter. The decoder
// (decoder.h) is written once over this struct, so a difference between the two forwards is a difference here.
#pragma once

#include <string>

#include "gemma4/config.h"

namespace g4::forward {

// A gated MLP (dense layers; on MoE layers the dense/shared-expert branch) and the norms around it.
struct MlpNames {
  std::string pre_norm, post_norm;
  std::string fc1;       // Megatron's fused [gate; up] projection, chunked in two; empty: gate and up below
  std::string gate, up;  // HF's separate projections
  std::string down;
};

// The routed-expert branch of an MoE layer: router, expert stacks [E, ...], and the norms around it.
struct MoeNames {
  std::string router_scale, router_proj, per_expert_scale;
  std::string pre_norm, post_norm;  // around the routed experts
  std::string gate_up, down;        // [E, 2I, H] (rows [0, I) gate) and [E, H, I]
  std::string sum_post_norm;        // on the dense branch + experts
};

// How a side's framework applies LoRA: PEFT (lora.Linear unmerged with the adapter and its input upcast to fp32;
// 3-D expert parameters merged W_e + s·B_e·A_e; a router adapter on the projection's own normed input) or
// Megatron-Bridge (adapters in the model dtype; per-expert adapters on the routed tokens; the router adapter on
// the router's raw input; on 26B-A4B the linear_proj adapter added after the post-attention norm fused into it).
enum class AdapterStyle { kPeft, kMegatronBridge };

struct Side {
  std::string label;  // "HF" / "Megatron", for messages
  std::string embed, final_norm;
  std::string ple_table, ple_projection, ple_norm;  // model-level per-layer-embedding tensors
  std::string layer_prefix;                         // + "<l>." + a per-layer name below
  // Attention.
  std::string input_norm, post_attention_norm;
  std::string fused_qkv;  // Megatron: one matmul whose output is [q heads; k; v] per query group; empty: q/k/v_proj
  std::string q_proj, k_proj, v_proj;
  std::string q_norm, k_norm, o_proj;
  // Feed-forward.
  MlpNames dense;   // non-MoE layers
  MlpNames shared;  // MoE layers: the dense branch (HF) / shared expert (Megatron); post_norm is its own
  MoeNames moe;
  // Per-layer embedding and the layer scalar.
  std::string ple_gate, ple_layer_projection, ple_post_norm, layer_scalar;
  // Adapters: looked up by adapter_prefix + the full per-layer name.
  std::string adapter_prefix;
  AdapterStyle adapters = AdapterStyle::kPeft;
  bool proj_adapter_after_post_norm = false;

  std::string at(int layer, const std::string& name) const { return layer_prefix + std::to_string(layer) + "." + name; }
};

// transformers' Gemma4 modules; `text_prefix` is the checkpoint's ("model." or "model.language_model."), used to
// name PEFT's adapters.
Side hf_side(const std::string& text_prefix);
// Megatron-Bridge's Gemma 4 modules: the TE spec's names for the MoE model (26B-A4B), the local spec's otherwise.
Side megatron_side(const gemma4::TextConfig& cfg);

}  // namespace g4::forward
