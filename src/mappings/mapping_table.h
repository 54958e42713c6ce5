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

// Which layers or models a rule applies to.
enum class When : uint8_t {
  kAlways,
  kPle,     // model and layers with per-layer embeddings (hidden_size_per_layer_input > 0)
  kUntied,  // tie_word_embeddings = false (the rule's HF name is absolute: "lm_head.weight")
};

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
};

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

// The VL wrapper (§1.3): the language model under "language_model.", the towers passed through under
// their HF names minus "model.".
inline constexpr std::string_view kVlLanguagePrefix = "language_model.";
inline constexpr std::array<std::string_view, 4> kTowerPrefixes = {"vision_tower.", "embed_vision.", "audio_tower.",
                                                                   "embed_audio."};

}  // namespace g4::mappings
