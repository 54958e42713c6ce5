// The chunk geometry of one DCP tensor: every chunk inside the tensor, no two overlapping, together covering
// it. Both the writer (before it writes) and the reader (when it parses .metadata) check it, so a checkpoint
// whose chunks overlap or leave a hole is refused instead of reading the hole as zeros.
#pragma once

#include <string>
#include <vector>

#include "runtime/status.h"
#include "runtime/tensor_info.h"

namespace g4::dcp {

// `what` names the tensor in messages. Empty chunks (a zero size) never overlap. A 0-d tensor needs exactly
// one chunk. Cost: a sort and a sweep along dim 0 comparing only chunks whose dim-0 ranges meet.
Status check_chunk_cover(const std::string& what, const Shape& shape, const std::vector<std::vector<int64_t>>& offsets,
                         const std::vector<Shape>& sizes);

}  // namespace g4::dcp
