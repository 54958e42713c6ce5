// What a torch_dist checkpoint's keys say about the Gemma 4 model in it (the reader, runtime/dcp/checkpoint.h,
// knows no model): where the language model sits, the towers, and markers of checkpoints we must refuse.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/dcp/checkpoint.h"

namespace g4::convert {

// The VL towers' tensors (vision_tower., embed_vision., audio_tower., embed_audio.) under their HF names.
std::vector<std::pair<std::string, Shape>> tower_tensors(const dcp::Checkpoint& ckpt);
// The language model's key prefix as stored, the one place every reader takes it from: "language_model." for
// Megatron-Bridge's VL model, "" for a GPTModel (a causal model, or a conditional one imported in MB's text
// mode, GEMMA4_CONVERSION_MODE=text). Decided by the word embedding's key, else by the decoder's keys; unset
// when the checkpoint has neither (the caller's default applies, and the missing keys are reported).
std::optional<std::string> language_prefix(const dcp::Checkpoint& ckpt);
// language_prefix(), else the prefix a model of the config's form has (`conditional`: "language_model.").
std::string language_prefix_or(const dcp::Checkpoint& ckpt, bool conditional);
// A key that marks a Megatron-Bridge checkpoint from before 2026-07-09, whose router and shared-expert weights
// have norm ratios folded in (megatron-bridge-layout.md §2); empty when there is none.
std::string fused_weights_marker(const dcp::Checkpoint& ckpt);
// The first per-layer key ("<prefix>decoder.layers.<i>.…") of a layer `i` >= `layers`, the config's count: a
// checkpoint holding more layers than its config says; empty when there is none.
std::string key_beyond_layers(const dcp::Checkpoint& ckpt, const std::string& prefix, int64_t layers);

}  // namespace g4::convert
