// The CUDA backend of ops.h (cuda/cuda_backend.cu), built whenever nvcc is present; without it, or without a
// GPU, make_cuda_backend() is a one-line error.
#pragma once

#include <memory>

#include "forward/ops.h"

namespace g4::forward {

// One cuBLAS handle, one stream, its workspace and allocator, on device 0.
Result<std::unique_ptr<Backend>> make_cuda_backend();

}  // namespace g4::forward
