// make_cuda_backend() of a build configured without nvcc (g4_cuda's non-CUDA branch in CMakeLists.txt).
#include "forward/cuda_backend.h"

namespace g4::forward {

Result<std::unique_ptr<Backend>> make_cuda_backend() {
  return Status::not_supported("--device cuda: this build has no CUDA (nvcc was not found when it was configured)");
}

}  // namespace g4::forward
