// The conversion plan: every Megatron parameter of a Gemma 4 model as an ordered list of row pieces of HF
// tensors, built from the family table and the config. hf2mcore reads it forwards (a parameter's chunk is
// gathered from HF rows); mcore2hf reads it backwards (an HF tensor is gathered from the parameter rows that
// first reference it). One plan serves both directions, so they cannot disagree.
//
// A "row" is everything after dim 0 (a 1-D tensor has one-element rows); a piece copies whole rows and both
// ends have the same row size, so a transform never changes a value.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "convert/storage_layout.h"
#include "gemma4/config.h"
#include "gemma4/hf_tensors.h"
#include "mappings/mapping_table.h"

namespace g4::convert {

using mappings::Fill;

struct Piece {
  int source = -1;  // index into ConversionPlan::hf; -1 for a fill
  Fill fill = Fill::kNone;
  int64_t src_row = 0;
  int64_t dst_row = 0;
  int64_t rows = 0;
};

struct HfSlot {
  std::string name;
  Shape shape;
  gemma4::TensorRole role = gemma4::TensorRole::kLinear;
  int layer = -1;
  bool optional = false;  // KV-shared K/V/k_norm, tied lm_head: neither required nor emitted by default
  bool tower = false;     // vision/audio tower tensor, passed through
};

struct MegatronParam {
  std::string name;  // module state-dict name, with prefix and layer index
  const mappings::Rule* rule = nullptr;  // the table row it comes from; null for a tower tensor passed through
  Shape shape;
  int layer = -1;
  bool experts = false;  // [E, ...]: one DCP chunk per expert
  bool vocab_rows = false;  // may be stored with padding rows beyond dim 0 (mappings::Rule::vocab_rows)
  StorageSlot slot;
  std::vector<Piece> pieces;  // in destination row order, covering every row exactly once
};

struct ExtraStateItem {
  std::string key;  // DCP key (ShardedObject.unique_key)
  mappings::ExtraState payload;
  bool requested = true;  // Megatron-Bridge's model requests it on load (mappings::ExtraStateModule::requested)
};

struct ConversionPlan {
  const mappings::FamilyTable* table = nullptr;
  std::string prefix;  // "" or "language_model."
  LayerKeys layer_keys = LayerKeys::kStacked;
  std::vector<HfSlot> hf;
  std::map<std::string, int> hf_index;
  std::vector<MegatronParam> params;
  std::vector<ExtraStateItem> extra_state;
};

// `tower_tensors`: the vision/audio tensors (full HF names and shapes) to pass through unchanged.
// `language_prefix`: the Megatron prefix of the language model, "language_model." or ""; unset, the config's
// form decides ("language_model." for the conditional form). A conditional config with "" is Megatron-Bridge's
// text mode (a plain GPTModel); a causal config with "language_model." reads a VL checkpoint's language model.
Result<ConversionPlan> build_plan(const gemma4::ModelConfig& config, const std::vector<std::pair<std::string, Shape>>& tower_tensors,
                                  std::optional<std::string_view> language_prefix = std::nullopt);

// Rows and row size (in elements) of a shape: dim 0 and the product of the rest (1-D: numel and 1).
int64_t row_count(const Shape& shape);
int64_t row_elems(const Shape& shape);

// hf2mcore: resolves the plan against the tensors a source checkpoint has. A missing optional source
// becomes a fill (zeros for projections, ones for norms, as Megatron-Bridge synthesises them); a missing
// required one, or a present tensor no rule consumes, is an error naming it. Returns the present optional
// tensors no rule consumes (a tied lm_head saved anyway), which are not converted.
Result<std::vector<std::string>> bind_sources(ConversionPlan& plan, const std::set<std::string>& present, std::string_view source_name);

// mcore2hf: for one HF tensor, the pieces (param index, piece) that rebuild it, canonical first-reference
// order, plus the later duplicate references (the V slot of K=V layers), which are only checked for drift.
struct HfGather {
  struct Ref {
    int param = -1;
    int64_t src_row = 0, dst_row = 0, rows = 0;
  };
  std::vector<Ref> canonical;   // sorted by src_row, covering every row once
  std::vector<Ref> duplicates;  // further copies of the same rows
};
std::vector<HfGather> invert_plan(const ConversionPlan& plan);

// The contract check (issue 4): every HF tensor is consumed by exactly one parameter (K=V's second
// reference excepted), every parameter row is written once, every storage slot is distinct, and shapes
// agree with the config. Returns the first violation.
Status check_contract(const ConversionPlan& plan);

}  // namespace g4::convert
