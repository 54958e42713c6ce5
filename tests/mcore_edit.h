// Test helper: patch one stored parameter of a Megatron checkpoint written by hf2mcore, in place, to plant
// a conversion bug (the .distcp bytes are rewritten; our reader does not check the zip CRC).
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "runtime/tensor_info.h"

namespace g4::testing {

// `edit` gets the parameter's values as f32 (row-major, `shape`) and changes them; they are written back in
// the stored dtype. `index` is the position on the stacked axes ({} for unstacked keys).
void edit_mcore_param(const std::filesystem::path& checkpoint, const std::string& key, const std::vector<int64_t>& index,
                      const Shape& shape, const std::function<void(std::vector<float>&)>& edit);

}  // namespace g4::testing
