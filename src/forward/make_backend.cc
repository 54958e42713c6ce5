// The backend by device name (compiled into g4_cuda, which holds the CUDA backend or its stand-in).
#include "forward/cuda_backend.h"
#include "forward/ops.h"

namespace g4::forward {

Result<std::unique_ptr<Backend>> make_backend(std::string_view device) {
  if (device == "cpu") return make_cpu_backend(true);
  if (device == "cuda") return make_cuda_backend();
  return Status::invalid_argument("--device '" + std::string(device) + "': expected cpu or cuda");
}

}  // namespace g4::forward
