// Counter-based Gumbel noise shared by the C++ and CUDA kernels. Must stay bit-identical to
// fastmotion/ops/reference.py::gumbel_noise (and kernels/rvq.py), so every backend samples the same codes.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define FM_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FM_HOST_DEVICE inline
#endif

namespace fastmotion {

FM_HOST_DEVICE uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  return h;
}

// Per (seed, level) stream key, computed once per level.
FM_HOST_DEVICE uint32_t gumbel_level_key(uint32_t seed, uint32_t level) {
  return fmix32(seed + (level + 1u) * 0x9E3779B9u);
}

// Per row key, computed once per row and level.
FM_HOST_DEVICE uint32_t gumbel_row_key(uint32_t level_key, int64_t row) {
  return fmix32(level_key + static_cast<uint32_t>(row));
}

FM_HOST_DEVICE float gumbel(uint32_t row_key, int64_t code) {
  const uint32_t h = fmix32(row_key + static_cast<uint32_t>(code));
  const float u = (static_cast<float>(h >> 8) + 0.5f) * (1.0f / 16777216.0f);
  return -logf(-logf(u));
}

}  // namespace fastmotion
