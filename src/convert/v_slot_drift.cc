#include "convert/v_slot_drift.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

namespace g4::convert {

// Compares the V slot rows of a K=V layer with its K rows (pitfalls.md P9): equal after import, they drift
// only if training updated the slot that Megatron-Bridge's forward ignores.
std::optional<std::string> v_slot_drift(const ConversionPlan& plan, const HfSlot& slot, const HfGather& g, const dcp::Slab& slab) {
  const MegatronParam& p = plan.params[g.canonical[0].param];
  const size_t es = dtype_size(slab.dtype), row = static_cast<size_t>(row_elems(p.shape)) * es;
  uint64_t differing = 0, total = 0;
  double max_abs = 0;
  for (const HfGather::Ref& dup : g.duplicates) {
    for (const HfGather::Ref& c : g.canonical) {
      const int64_t lo = std::max(dup.src_row, c.src_row), hi = std::min(dup.src_row + dup.rows, c.src_row + c.rows);
      if (lo >= hi) continue;
      const size_t n = static_cast<size_t>(hi - lo) * row / es;
      std::vector<std::byte> vb(n * es), kb(n * es);
      slab.copy(static_cast<uint64_t>(dup.dst_row + lo - dup.src_row) * row, vb);
      slab.copy(static_cast<uint64_t>(c.dst_row + lo - c.src_row) * row, kb);
      const std::byte *v = vb.data(), *k = kb.data();
      total += n;
      if (std::memcmp(v, k, n * es) == 0) continue;
      std::vector<float> fv(n), fk(n);
      if (!dtype_converts_to_f32(slab.dtype)) return std::nullopt;
      to_f32(slab.dtype, v, fv.data(), n);
      to_f32(slab.dtype, k, fk.data(), n);
      for (size_t i = 0; i < n; ++i)
        if (std::memcmp(&fv[i], &fk[i], sizeof(float)) != 0) ++differing, max_abs = std::max(max_abs, static_cast<double>(std::fabs(fv[i] - fk[i])));
    }
  }
  if (differing == 0) return std::nullopt;
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s: the V slot of %s differs from K in %llu of %llu values (max |dV-K| %.4g); exported K, as HF has no v_proj on K=V layers",
                slot.name.c_str(), p.name.c_str(), static_cast<unsigned long long>(differing), static_cast<unsigned long long>(total), max_abs);
  return std::string(buf);
}

}  // namespace g4::convert
