// CUDA build of cuda_info.h: asks the runtime for the driver and devices. A missing driver or GPU is a
// normal answer here, not an error: CI and most developer machines have the toolkit but no device.
#include <cuda_runtime.h>

#include <string>

#include "runtime/cuda_info.h"

namespace g4 {

bool cuda_compiled() { return true; }

int cuda_device_count() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

std::string cuda_status() {
  int runtime = 0;
  cudaRuntimeGetVersion(&runtime);
  std::string s = "compiled (CUDA runtime " + std::to_string(runtime / 1000) + "." + std::to_string(runtime % 1000 / 10) + ")";
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) return s + "; no device (" + cudaGetErrorString(err) + ")";
  s += "; " + std::to_string(count) + (count == 1 ? " device" : " devices");
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) == cudaSuccess) s += std::string(i ? ", " : ": ") + prop.name;
  }
  return s;
}

}  // namespace g4
