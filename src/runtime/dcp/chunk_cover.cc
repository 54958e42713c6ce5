#include "runtime/dcp/chunk_cover.h"

#include <algorithm>
#include <optional>

namespace g4::dcp {

Status check_chunk_cover(const std::string& what, const Shape& shape, const std::vector<std::vector<int64_t>>& offsets,
                         const std::vector<Shape>& sizes) {
  const size_t rank = shape.size();
  const std::optional<uint64_t> total = checked_numel(shape);
  if (!total) return Status::invalid_argument(what + ": invalid shape " + shape_to_string(shape));
  if (offsets.size() != sizes.size()) return Status::invalid_argument(what + ": chunk offsets and sizes differ in number");
  auto chunk_name = [&](size_t c) { return "chunk " + shape_to_string(sizes[c]) + " at " + shape_to_string(offsets[c]); };
  uint64_t covered = 0;
  std::vector<size_t> filled;  // chunks holding at least one element
  for (size_t c = 0; c < offsets.size(); ++c) {
    if (offsets[c].size() != rank || sizes[c].size() != rank)
      return Status::invalid_argument(what + ": " + chunk_name(c) + " has rank " + std::to_string(sizes[c].size()) +
                                      ", the tensor " + std::to_string(rank));
    uint64_t volume = 1;
    for (size_t d = 0; d < rank; ++d) {
      // Written so that no sum can overflow: 0 <= offset <= dim and size <= dim - offset.
      if (offsets[c][d] < 0 || sizes[c][d] < 0 || offsets[c][d] > shape[d] || sizes[c][d] > shape[d] - offsets[c][d])
        return Status::invalid_argument(what + ": " + chunk_name(c) + " lies outside the tensor's " + shape_to_string(shape));
      volume *= static_cast<uint64_t>(sizes[c][d]);  // <= total: each factor is at most the tensor's
    }
    covered += volume;
    if (volume) filled.push_back(c);
  }
  // Disjointness: a sweep along dim 0, comparing a chunk only with the earlier ones whose dim-0 range it meets.
  std::sort(filled.begin(), filled.end(), [&](size_t a, size_t b) { return offsets[a] < offsets[b]; });
  std::vector<size_t> active;
  for (size_t c : filled) {
    if (rank > 0) std::erase_if(active, [&](size_t a) { return offsets[a][0] + sizes[a][0] <= offsets[c][0]; });
    for (size_t a : active) {
      bool overlap = true;
      for (size_t d = 0; d < rank && overlap; ++d)
        overlap = offsets[a][d] < offsets[c][d] + sizes[c][d] && offsets[c][d] < offsets[a][d] + sizes[a][d];
      if (overlap) return Status::invalid_argument(what + ": " + chunk_name(a) + " and " + chunk_name(c) + " overlap");
    }
    active.push_back(c);
  }
  // Disjoint chunks inside the tensor cover it exactly when their volumes add up to it.
  if (covered != *total)
    return Status::invalid_argument(what + ": the chunks cover " + std::to_string(covered) + " of " + std::to_string(*total) +
                                    " elements of " + shape_to_string(shape) + " (a hole)");
  return {};
}

}  // namespace g4::dcp
