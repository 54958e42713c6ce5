// Copying elements between tensors, with a dtype cast only when source and target dtypes differ (the user
// asked for --dtype); equal dtypes are a memcpy, so a conversion without --dtype never touches a value.
#pragma once

#include <span>

#include "convert/conversion_plan.h"
#include "runtime/dtype.h"
#include "runtime/status.h"

namespace g4::convert {

// `src` and `dst` hold the same number of elements of `from` and `to`.
Status copy_elements(std::span<const std::byte> src, DType from, std::span<std::byte> dst, DType to);
// Fills `dst` (elements of `to`) with zeros or ones.
void fill_elements(Fill fill, DType to, std::span<std::byte> dst);
// The dtype a float tensor gets under --dtype (`target` unset: keep).
DType converted_dtype(DType source, std::optional<DType> target);

}  // namespace g4::convert
