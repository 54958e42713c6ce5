#include "convert/hf2mcore.h"

#include <algorithm>
#include <set>

#include "convert/conversion_plan.h"
#include "convert/element_copy.h"
#include "convert/text_mode.h"
#include "gemma4/config.h"
#include "gemma4/hf_tensors.h"
#include "runtime/dcp/dcp_writer.h"
#include "runtime/finite_scan.h"
#include "runtime/output_dir.h"
#include "runtime/safetensors_set.h"
#include "runtime/thread_pool.h"

namespace g4::convert {
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kMaxChunkBytes = 1ull << 30;  // split big unstacked tensors (embeddings) along dim 0

// The bytes of rows [first_row, first_row + rows) of one parameter, gathered from its pieces.
class ParamGather {
 public:
  ParamGather(const ConversionPlan& plan, const MegatronParam& param, const SafetensorsSet& set,
              const std::vector<const SafetensorsSet::Entry*>& entries, DType dtype, bool check_finite)
      : plan_(plan), param_(param), set_(set), entries_(entries), dtype_(dtype), check_finite_(check_finite) {}

  Status produce(int64_t first_row, uint64_t offset, std::span<std::byte> out) const {
    const uint64_t es = dtype_size(dtype_), row_bytes = static_cast<uint64_t>(row_elems(param_.shape)) * es;
    uint64_t at = static_cast<uint64_t>(first_row) * row_bytes + offset;
    const uint64_t end = at + out.size();
    std::byte* dst = out.data();
    for (const Piece& piece : param_.pieces) {
      const uint64_t p0 = static_cast<uint64_t>(piece.dst_row) * row_bytes, p1 = p0 + static_cast<uint64_t>(piece.rows) * row_bytes;
      if (p1 <= at || p0 >= end) continue;
      const uint64_t b0 = std::max(at, p0), b1 = std::min(end, p1);
      std::span<std::byte> part(dst + (b0 - at), b1 - b0);
      if (piece.source < 0) {
        fill_elements(piece.fill, dtype_, part);
        continue;
      }
      const SafetensorsSet::Entry& e = *entries_[piece.source];
      const uint64_t src_es = dtype_size(e.info->dtype);
      const uint64_t first_elem = static_cast<uint64_t>(piece.src_row) * row_elems(param_.shape) + (b0 - p0) / es;
      std::span<const std::byte> src = set_.data(e).subspan(first_elem * src_es, (b1 - b0) / es * src_es);
      G4_RETURN_IF_ERROR(copy_elements(src, e.info->dtype, part, dtype_).with_context(plan_.hf[piece.source].name));
      e.file->release_range(src);  // streamed once: drop the pages so RSS stays bounded
      if (check_finite_) G4_RETURN_IF_ERROR(check_finite(part, dtype_, e.file->path() + ": tensor '" + plan_.hf[piece.source].name + "'"));
    }
    return {};
  }

 private:
  const ConversionPlan& plan_;
  const MegatronParam& param_;
  const SafetensorsSet& set_;
  const std::vector<const SafetensorsSet::Entry*>& entries_;
  DType dtype_;
  bool check_finite_;
};

}  // namespace

Status check_finite(std::span<const std::byte> bytes, DType dtype, const std::string& where) {
  const NonFiniteCount bad = count_non_finite(dtype, bytes);
  if (!bad.any()) return {};
  return Status::invalid_argument(where + " holds " + std::to_string(bad.nan) + " NaN and " + std::to_string(bad.inf) +
                                  " Inf values (pass --allow-non-finite to convert it anyway)");
}

namespace {

Status check_source_tensor(const HfSlot& slot, const TensorInfo& info, const std::string& where) {
  if (info.shape != slot.shape)
    return Status::invalid_argument(where + ": tensor '" + slot.name + "' has shape " + shape_to_string(info.shape) +
                                    ", the config implies " + shape_to_string(slot.shape));
  if (!dtype_is_float(info.dtype))
    return Status::invalid_argument(where + ": tensor '" + slot.name + "' has dtype " + std::string(dtype_name(info.dtype)) +
                                    ", expected a float type");
  return {};
}

// Appends zero rows to every vocabulary parameter (the word embedding, an untied output layer; never the
// per-layer embedding, which MB does not pad) up to a multiple of `multiple`: a fill piece, streamed like the
// zero K/V of KV-shared layers, so nothing is materialised. Returns the word embedding's stored rows.
int64_t pad_vocab_rows(ConversionPlan& plan, int64_t multiple) {
  int64_t rows_out = 0;
  for (MegatronParam& p : plan.params) {
    if (!p.vocab_rows || p.shape.empty() || !p.slot.axes.empty()) continue;
    const int64_t rows = p.shape[0], padded = (rows + multiple - 1) / multiple * multiple;
    if (padded > rows) {
      p.pieces.push_back({.source = -1, .fill = Fill::kZeros, .src_row = 0, .dst_row = rows, .rows = padded - rows});
      p.shape[0] = padded;
    }
    if (p.slot.key.ends_with("embedding.word_embeddings.weight")) rows_out = padded;
  }
  return rows_out;
}

}  // namespace

int64_t default_pad_vocab(const gemma4::TextConfig& text) { return text.enable_moe_block ? 1 : 128; }

Status check_pad_vocab(int64_t n) {
  if (n >= 1 && n <= kMaxPadVocab) return {};
  return Status::invalid_argument("--pad-vocab " + std::to_string(n) + " is not a row multiple from 1 (no padding) to " +
                                  std::to_string(kMaxPadVocab));
}

Result<ConvertSummary> hf2mcore(const Hf2McoreOptions& options) {
  const std::string where = options.hf.string();
  G4_ASSIGN_OR_RETURN(gemma4::ModelConfig config, gemma4::load_config((options.hf / "config.json").string()));
  G4_ASSIGN_OR_RETURN(SafetensorsSet set, SafetensorsSet::open_dir(options.hf));
  if (!set.issues().empty()) return Status::corruption(where + ": " + set.issues().front());

  // Towers pass through (text mode: are left out); every other tensor must be a text tensor the plan knows.
  const bool conditional = config.form == gemma4::ModelForm::kConditional, text_mode = options.text_mode && conditional;
  std::vector<std::pair<std::string, Shape>> towers;
  std::set<std::string> present;
  size_t left_out = 0;
  for (const auto& [name, entry] : set.tensors()) {
    const bool tower = conditional && is_tower_tensor(name);
    if (tower && text_mode) {
      ++left_out;
      continue;
    }
    if (tower) towers.push_back({name, entry.info->shape});
    present.insert(name);
  }
  // Text mode: Megatron-Bridge's plain GPTModel, the language model without the "language_model." prefix.
  G4_ASSIGN_OR_RETURN(ConversionPlan plan, build_plan(config, towers, text_mode ? std::optional<std::string_view>("") : std::nullopt));
  G4_ASSIGN_OR_RETURN(const std::vector<std::string> skipped, bind_sources(plan, present, where));
  G4_RETURN_IF_ERROR(check_contract(plan));
  const int64_t pad_vocab = options.pad_vocab.value_or(default_pad_vocab(config.text));
  G4_RETURN_IF_ERROR(check_pad_vocab(pad_vocab));
  const int64_t vocab_rows = pad_vocab_rows(plan, pad_vocab);  // after the contract check: it states the config's shapes

  std::vector<const SafetensorsSet::Entry*> entries(plan.hf.size(), nullptr);
  for (size_t s = 0; s < plan.hf.size(); ++s) {
    entries[s] = set.find(plan.hf[s].name);
    if (entries[s] && !plan.hf[s].tower) G4_RETURN_IF_ERROR(check_source_tensor(plan.hf[s], *entries[s]->info, where));
  }

  // Each parameter's dtype: its sources' (which must agree) or the requested one; a parameter made only of
  // fills (zero K/V of a KV-shared layer) takes the model's: the word embedding's, every table's first rule.
  const DType model_dtype = converted_dtype(entries[plan.params.front().pieces.front().source]->info->dtype, options.dtype);
  std::vector<DType> param_dtype(plan.params.size(), model_dtype);
  for (size_t p = 0; p < plan.params.size(); ++p) {
    std::optional<DType> d;
    for (const Piece& piece : plan.params[p].pieces) {
      if (piece.source < 0) continue;
      const DType s = entries[piece.source]->info->dtype;
      if (d && *d != s)
        return Status::invalid_argument(where + ": the sources of " + plan.params[p].name + " mix dtypes (" +
                                        std::string(dtype_name(*d)) + ", " + std::string(dtype_name(s)) + "); pass --dtype");
      d = s;
    }
    if (d) param_dtype[p] = converted_dtype(*d, options.dtype);
  }

  // Group parameters by storage key into DCP tensors; stacked keys need one shape and dtype.
  std::vector<dcp::TensorToWrite> tensors;
  std::map<std::string, size_t> by_key;
  std::vector<ParamGather> gathers;
  gathers.reserve(plan.params.size());
  for (size_t p = 0; p < plan.params.size(); ++p) gathers.emplace_back(plan, plan.params[p], set, entries, param_dtype[p], !options.allow_non_finite);
  size_t chunk_count = 0;
  for (size_t p = 0; p < plan.params.size(); ++p) {
    const MegatronParam& param = plan.params[p];
    Shape global = param.slot.axes;
    global.insert(global.end(), param.shape.begin(), param.shape.end());
    auto [it, inserted] = by_key.try_emplace(param.slot.key, tensors.size());
    if (inserted) tensors.push_back({param.slot.key, param_dtype[p], global, {}});
    dcp::TensorToWrite& tw = tensors[it->second];
    if (tw.shape != global || tw.dtype != param_dtype[p])
      return Status::invalid_argument(where + ": " + param.name + " does not fit the stacked key '" + param.slot.key + "' (" +
                                      shape_to_string(global) + " vs " + shape_to_string(tw.shape) + ")");
    const int64_t rows = row_count(param.shape);
    const uint64_t row_bytes = static_cast<uint64_t>(row_elems(param.shape)) * dtype_size(param_dtype[p]);
    int64_t step = rows;
    if (param.experts) step = 1;  // one chunk per expert, as TEGroupedMLP saves them
    else if (param.slot.axes.empty() && row_bytes > 0) step = std::max<int64_t>(1, std::min<int64_t>(rows, kMaxChunkBytes / row_bytes));
    for (int64_t r = 0; r < std::max<int64_t>(rows, 1); r += step) {
      const int64_t n = std::min(step, rows - r);
      dcp::ChunkToWrite chunk;
      chunk.offsets = param.slot.index;
      chunk.sizes = Shape(param.slot.axes.size(), 1);
      chunk.offsets.push_back(r);
      chunk.sizes.push_back(param.shape.empty() ? 1 : n);
      for (size_t d = 1; d < param.shape.size(); ++d) {
        chunk.offsets.push_back(0);
        chunk.sizes.push_back(param.shape[d]);
      }
      if (param.shape.empty()) chunk.offsets.pop_back(), chunk.sizes.pop_back();
      const ParamGather* g = &gathers[p];
      chunk.produce = [g, r](uint64_t offset, std::span<std::byte> out) { return g->produce(r, offset, out); };
      tw.chunks.push_back(std::move(chunk));
      ++chunk_count;
    }
  }
  std::vector<dcp::BytesToWrite> byte_items;
  for (const ExtraStateItem& item : plan.extra_state)
    byte_items.push_back({item.key, item.payload == mappings::ExtraState::kLocal ? dcp::write_none_extra_state : dcp::write_empty_extra_state});
  const size_t extra_state_count = byte_items.size();
  if (options.common == CommonStateLayout::kDcpObject) byte_items.push_back(common_state_item());

  uint64_t total = 0;
  for (const auto& tw : tensors) total += checked_numel(tw.shape).value_or(0) * dtype_size(tw.dtype);

  OutputPolicy policy = options.output;
  policy.protect(options.hf);
  G4_ASSIGN_OR_RETURN(OutputDir out, policy.directory(options.out, looks_like_megatron_checkpoint_dir));
  const fs::path iter = out.temp_path() / iteration_dir_name(options.layout);
  auto write_all = [&]() -> Status {
    std::error_code ec;
    fs::create_directories(iter, ec);
    if (ec) return Status::io_error(iter.string() + ": cannot create: " + ec.message());

    ThreadPool pool(options.threads);
    const unsigned threads = static_cast<unsigned>(pool.size());
    dcp::DcpWriteOptions write_options;
    write_options.files = threads;
    write_options.pool = &pool;
    const size_t items_total = chunk_count + byte_items.size();
    if (options.progress.update)
      write_options.on_progress = [&](uint64_t bytes, size_t items) { options.progress.update(bytes, total, items, items_total); };
    G4_RETURN_IF_ERROR(dcp::write_dcp(iter, tensors, byte_items, write_options));

    gemma4::ModelConfig written = config;
    if (options.dtype) written.dtype = options.dtype == DType::kF32 ? "float32" : options.dtype == DType::kF16 ? "float16" : "bfloat16";
    G4_RETURN_IF_ERROR(write_megatron_side_files(out.temp_path(), iter, written, options.layout, model_dtype, options.common, pad_vocab,
                                                 text_mode));
    G4_RETURN_IF_ERROR(copy_hf_assets(options.hf, iter / kTokenizerDir));
    return out.commit();
  };
  G4_RETURN_IF_ERROR(out.in_user_terms(write_all()));

  ConvertSummary summary;
  summary.family = std::string(plan.table->family);
  summary.form = std::string(gemma4::form_name(config.form));
  summary.source_tensors = present.size();
  summary.target_tensors = tensors.size();
  summary.chunks = chunk_count;
  summary.extra_state = extra_state_count;
  summary.vocab_rows = vocab_rows;
  summary.bytes = total;
  summary.iteration_dir = options.out / iteration_dir_name(options.layout);
  for (const std::string& name : skipped)
    summary.warnings.push_back("'" + name + "' is redundant (tied to the embedding) and was not converted");
  if (left_out)
    summary.warnings.push_back("--text-mode: the " + std::to_string(left_out) + " vision/audio tower tensors were not written "
                               "(Megatron-Bridge's text mode imports the language model only; mcore2hf --reference-hf takes them back)");
  return summary;
}

}  // namespace g4::convert
