// The V slot of a K=V layer's fused QKV holds a copy of K after import; Megatron-Bridge's forward ignores it,
// so it drifts from K only if training updated it anyway (pitfalls.md P9). Reported, never exported.
#pragma once

#include <optional>
#include <string>

#include "convert/conversion_plan.h"
#include "runtime/dcp/checkpoint.h"

namespace g4::convert {

// A one-line warning when the V-slot rows of `gather` (the K tensor of a K=V layer, whose duplicates are the
// V slot) differ from its K rows in `slab` (the layer's linear_qkv); nullopt when they are equal.
std::optional<std::string> v_slot_drift(const ConversionPlan& plan, const HfSlot& slot, const HfGather& gather, const dcp::Slab& slab);

}  // namespace g4::convert
