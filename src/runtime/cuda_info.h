// Whether this build has CUDA compiled in, and what the CUDA runtime sees. CPU paths never need it.
#pragma once

#include <string>

namespace g4 {

bool cuda_compiled();
// GPUs the CUDA runtime sees; 0 without CUDA, a driver or a device.
int cuda_device_count();
// "compiled (CUDA 13.0); 1 device: NVIDIA H100 ..." or "not compiled ..." or "compiled ...; no device (...)".
std::string cuda_status();

}  // namespace g4
