// Declarative HF <-> Megatron-Core mapping tables for Gemma 4, one per family, in Megatron-Bridge's
// names (megatron-bridge-layout.md §1). A rule names one Megatron parameter, the HF tensor(s) it is made
// of and the transform; the conversion engines (src/convert) interpret the rules and derive every inverse,
// so a table is the single place that states a correspondence.
//
// Names are relative: HF names to the text prefix ("model." or "model.language_model."), Megatron names to
// the language-model prefix ("" or "language_model."). "{l}" stands for the 0-based layer index. Megatron
// names are module state-dict names; how they become DCP storage keys (stacked layer axis, per-type
// attention stacks, per-layer keys) is the job of src/convert/storage_layout.
#pragma once

#include <array>
#include <string_view>
#include <vector>

namespace g4::mappings {

enum class Transform : uint8_t {
  kIdentity,  // bytes copied as they are
  kQkv,       // [q_g heads; k_g; v_g] per query group with the layer's own (groups, head_dim); hf = {q, k, v}
  kGateUp,    // [gate; up] along dim 0; hf = {gate, up}
};

// What stands in for a source the checkpoint may lack (gemma4::HfTensor::optional: the K/V/k_norm of KV-shared
// layers): Megatron-Bridge synthesises zeros for projections and ones for norms; never read back.
enum class Fill : uint8_t { kNone, kZeros, kOnes };

// Which layers or models a rule applies to.
enum class When : uint8_t {
  kAlways,
  kPle,     // model and layers with per-layer embeddings (hidden_size_per_layer_input > 0)
  kUntied,  // tie_word_embeddings = false (the rule's HF name is absolute: "lm_head.weight")
};

// How Megatron splits the parameter over tensor-parallel ranks (expert rules: over expert-parallel ranks too), which
// also says whether it is a linear layer's weight, the kind of parameter a LoRA adapter wraps (src/lora).
enum class Parallel : uint8_t {
  kReplicated,        // norms, scalars, the per-layer embedding: every rank holds it whole
  kVocab,             // the vocabulary-parallel word embedding and output layer: dim 0 split
  kColumn,            // column-parallel linear: output rows split (fused QKV, fc1, the PLE model projection)
  kRow,               // row-parallel linear: input columns split (linear_proj, fc2)
  kReplicatedLinear,  // a linear every rank holds whole (the router, the per-layer PLE gate and projection)
};
inline bool is_linear(Parallel p) { return p == Parallel::kColumn || p == Parallel::kRow || p == Parallel::kReplicatedLinear; }

struct Rule {
  std::string_view megatron;
  std::array<std::string_view, 3> hf;  // sources, in the order the transform concatenates them
  Transform transform = Transform::kIdentity;
  When when = When::kAlways;
  bool experts = false;  // a per-layer [E, ...] stack, stored with a per-expert chunk axis
  // Dim 0 indexes the vocabulary: Megatron-Bridge may store the parameter with zero rows appended (its
  // provider pads the vocabulary to a multiple of make_vocab_size_divisible_by); readers take the first
  // vocab_size rows and report padding rows that are not zero. The per-layer embedding is not padded.
  bool vocab_rows = false;
  Parallel parallel = Parallel::kReplicated;
  Fill absent_fill = Fill::kZeros;  // for an optional source the checkpoint lacks
  // attention_k_eq_v layers have no v_proj: the V slot (hf[2]) is built from K's rows (hf[1]), as
  // Megatron-Bridge's maybe_modify_loaded_hf_weight does, and mcore2hf only checks it for drift.
  bool v_from_k = false;
  // A plain torch nn.Linear in Megatron-Bridge's model (the PLE gate and projection): its LoRA is a LinearAdapter,
  // an nn.Linear subclass holding A and B itself, so they sit beside the weight instead of under ".adapter.".
  bool torch_linear = false;
};

// Where Megatron-Bridge's LoRA stores the adapter of a linear rule's "<module>.weight", as suffixes of <module>:
// LoRALinear / LoRATopKRouter (AdapterWrappers) under ".adapter.", a LinearAdapter beside the weight.
struct LoraKeySuffixes {
  std::string_view a, b;  // linear_in (A, [r, in]) and linear_out (B, [out, r])
};
inline LoraKeySuffixes lora_key_suffixes(const Rule& rule) {
  if (rule.torch_linear) return {".linear_in.weight", ".linear_out.weight"};
  return {".adapter.linear_in.weight", ".adapter.linear_out.weight"};
}

// A module whose `_extra_state` object hf2mcore writes (model level, or per layer with "{l}").
// Transformer Engine modules save an empty uint8 tensor, Megatron's local linears None.
enum class ExtraState : uint8_t { kTransformerEngine, kLocal };
struct ExtraStateModule {
  std::string_view module;
  ExtraState payload = ExtraState::kTransformerEngine;
  When when = When::kAlways;
  bool experts = false;  // one object per (layer, expert): shard axes (L, E)
  // Whether Megatron-Bridge's model requests the object on load, so a checkpoint without it fails there
  // (inspect reports it missing). False: written, but a checkpoint Megatron-Bridge wrote may lack it.
  bool requested = true;
};

struct FamilyTable {
  std::string_view family;  // "moe" or "dense"
  std::vector<Rule> model_rules;
  std::vector<Rule> layer_rules;
  std::vector<ExtraStateModule> extra_state;
};

// 26B-A4B: MCore GPTModel with the TE spec gemma4_block_spec (megatron-bridge-layout.md §1.1).
const FamilyTable& moe_text_table();
// E2B / E4B / 31B: GPTModel with the local spec get_gemma4_layer_spec (§1.2).
const FamilyTable& dense_text_table();

// The VL wrapper (§1.3): the language model under "language_model.", the towers passed through unchanged under
// their HF names minus kTowerHfRoot.
inline constexpr std::string_view kVlLanguagePrefix = "language_model.";
inline constexpr std::string_view kTowerHfRoot = "model.";
inline constexpr std::array<std::string_view, 4> kTowerPrefixes = {"vision_tower.", "embed_vision.", "audio_tower.",
                                                                   "embed_audio."};

// Gemma 4's two attention types have different shapes, so Megatron-Bridge stores every key under a layer's
// attention module (its adapters included) in a per-type stack instead of the layer stack, indexed by the
// layer's rank among layers of its type (megatron-bridge-layout.md §4.2; src/convert/storage_layout).
inline constexpr std::string_view kPerTypeStackModule = "self_attention.";
inline constexpr std::string_view kSlidingStackModule = "self_attention_sliding.";
inline constexpr std::string_view kGlobalStackModule = "self_attention_global.";

}  // namespace g4::mappings
