#include "convert/vocab_padding.h"

#include <algorithm>
#include <vector>

namespace g4::convert {

namespace {

constexpr uint64_t kBlockBytes = 16u << 20;  // padding rows read per piece: bounded memory whatever the chunking
constexpr size_t kConvertElems = 4096;

// Whether `bytes` (elements of `dtype`) hold an element other than (signed) zero.
bool any_nonzero(std::span<const std::byte> bytes, DType dtype) {
  if (!dtype_converts_to_f32(dtype))
    return std::any_of(bytes.begin(), bytes.end(), [](std::byte b) { return b != std::byte{0}; });
  const size_t es = dtype_size(dtype), n = bytes.size() / es;
  float values[kConvertElems];
  for (size_t at = 0; at < n; at += kConvertElems) {
    const size_t m = std::min(kConvertElems, n - at);
    to_f32(dtype, bytes.data() + at * es, values, m);
    if (std::any_of(values, values + m, [](float v) { return v != 0.0f; })) return true;  // NaN counts as nonzero
  }
  return false;
}

}  // namespace

Result<VocabPadding> scan_vocab_padding(const dcp::Checkpoint& ckpt, const std::string& key, const Shape& shape) {
  // The checks read_slab makes: same row dims, at least the vocabulary's rows.
  G4_ASSIGN_OR_RETURN(const Shape stored, ckpt.stored_shape(key, {}, shape, true));
  const DType dtype = ckpt.find(key)->dtype;
  VocabPadding out;
  out.vocab = shape.empty() ? 1 : shape[0];
  out.stored = stored.empty() ? 1 : stored[0];
  if (out.stored <= out.vocab) return out;
  const uint64_t row_bytes = std::max<uint64_t>(1, checked_numel(Shape(shape.begin() + 1, shape.end())).value_or(0) * dtype_size(dtype));
  const int64_t block = static_cast<int64_t>(std::max<uint64_t>(1, kBlockBytes / row_bytes));
  for (int64_t first = out.vocab; first < out.stored; first += block) {
    Shape rows = shape;
    rows[0] = std::min(block, out.stored - first);
    G4_ASSIGN_OR_RETURN(std::shared_ptr<const dcp::Slab> slab, ckpt.read_rows(key, first, rows));
    for (int64_t r = 0; r < rows[0]; ++r) {
      bool nonzero = false;
      G4_RETURN_IF_ERROR(slab->visit(static_cast<uint64_t>(r) * row_bytes, static_cast<uint64_t>(r + 1) * row_bytes,
                                     [&](std::span<const std::byte> src, uint64_t) {
                                       nonzero |= any_nonzero(src, slab->dtype);
                                       return Status();
                                     }));
      if (!nonzero) continue;
      if (out.nonzero_rows++ == 0) out.first_nonzero = first + r;
    }
    for (const dcp::Slab::Part& p : slab->parts) ckpt.release(p.bytes);  // streamed once: keep RSS bounded
  }
  return out;
}

std::string describe_nonzero_padding(const dcp::Checkpoint& ckpt, const std::string& key, const VocabPadding& p) {
  return ckpt.iteration_dir().string() + ": '" + key + "' is stored with " + std::to_string(p.stored) + " rows for a vocabulary of " +
         std::to_string(p.vocab) + ": " + std::to_string(p.nonzero_rows) + " padding row" + (p.nonzero_rows == 1 ? " is" : "s are") +
         " not zero (the first: row " + std::to_string(p.first_nonzero) + ")";
}

}  // namespace g4::convert
