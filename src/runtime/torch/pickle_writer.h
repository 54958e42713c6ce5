// Pickle protocol 2 output restricted to the opcodes torch.load(weights_only=True) accepts
// (megatron-checkpoint-format.md §2.2): no memo, no STACK_GLOBAL, no FRAME, bytes via _codecs.encode.
#pragma once

#include <string>

#include "runtime/torch/py_value.h"

namespace g4::torch {

std::string pickle_dumps(const PyValue& root);

}  // namespace g4::torch
