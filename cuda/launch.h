// Grid sizes for the one-thread-per-element kernels (a 1-D grid of 256-thread blocks; grid.x allows 2^31 - 1
// blocks, 5·10^11 elements).
#pragma once

#include <cstdint>

namespace g4::cuda {

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

// The element this thread handles, as 64 bits (blockIdx.x · blockDim.x overflows 32 bits past 2^32 elements).
#define G4_ELEMENT_INDEX() (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x)

}  // namespace g4::cuda
