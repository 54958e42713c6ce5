// Built when no CUDA toolkit was found at configure time.
#include "runtime/cuda_info.h"

namespace g4 {

bool cuda_compiled() { return false; }
int cuda_device_count() { return 0; }
std::string cuda_status() { return "not compiled (no CUDA toolkit was found when this build was configured)"; }

}  // namespace g4
