// CUDA residual-VQ search: one thread block owns kRows rows for all levels. Per level it sweeps the codebook
// in chunks of kCodes codes; each chunk's scores ||C_k||^2 - 2 <r, C_k> come from a register-tiled product
// over D (staged through shared memory) and are folded into a per-row running (min, argmin) at once, so no
// N x K matrix exists. The residual lives in the `residual` output, updated in place after each level.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/types.h>

#include "common/gumbel.h"
#include "rvq_search/rvq_search.h"

namespace fastmotion {
namespace {

constexpr int kRows = 64;      // rows per block
constexpr int kCodes = 64;     // codes per chunk
constexpr int kDepth = 16;     // D per shared-memory stage
constexpr int kThreads = 256;  // 16 x 16 threads, each a 4 x 4 register tile (strided by 16)

template <typename scalar_t>
__device__ __forceinline__ bool better(scalar_t v, int64_t k, scalar_t best_v, int64_t best_k) {
  return v < best_v || (v == best_v && k < best_k);
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) rvq_search_kernel(
    const scalar_t* __restrict__ x, const scalar_t* __restrict__ books, const scalar_t* __restrict__ norms,
    int64_t N, int64_t L, int64_t K, int64_t D, scalar_t temperature, uint32_t seed, int64_t* __restrict__ codes,
    scalar_t* __restrict__ quantized, scalar_t* __restrict__ residual) {
  __shared__ scalar_t r_tile[kDepth][kRows];
  __shared__ scalar_t c_tile[kDepth][kCodes];
  __shared__ scalar_t best_val[kRows];
  __shared__ int64_t best_idx[kRows];

  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRows;
  const int64_t rows = min(static_cast<int64_t>(kRows), N - row0);

  for (int64_t e = tid; e < rows * D; e += kThreads) {
    residual[row0 * D + e] = x[row0 * D + e];
    quantized[row0 * D + e] = scalar_t(0);
  }
  __syncthreads();

  for (int64_t level = 0; level < L; ++level) {
    const scalar_t* book = books + level * K * D;
    const uint32_t level_key = gumbel_level_key(seed, static_cast<uint32_t>(level));
    if (tid < kRows) {
      best_val[tid] = INFINITY;
      best_idx[tid] = 0;
    }
    for (int64_t k0 = 0; k0 < K; k0 += kCodes) {
      scalar_t acc[4][4] = {};
      for (int64_t d0 = 0; d0 < D; d0 += kDepth) {
        for (int e = tid; e < kRows * kDepth; e += kThreads) {
          const int r = e / kDepth, d = e % kDepth;
          const bool ok_d = d0 + d < D;
          r_tile[d][r] = (r < rows && ok_d) ? residual[(row0 + r) * D + d0 + d] : scalar_t(0);
          c_tile[d][r] = (k0 + r < K && ok_d) ? book[(k0 + r) * D + d0 + d] : scalar_t(0);
        }
        __syncthreads();
#pragma unroll
        for (int d = 0; d < kDepth; ++d) {
          scalar_t a[4], b[4];
#pragma unroll
          for (int i = 0; i < 4; ++i) a[i] = r_tile[d][ty + 16 * i];
#pragma unroll
          for (int j = 0; j < 4; ++j) b[j] = c_tile[d][tx + 16 * j];
#pragma unroll
          for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
      }
      // Epilogue: per row, the best of this thread's 4 codes, then of the 16 threads sharing the row.
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = ty + 16 * i;
        const uint32_t row_key = gumbel_row_key(level_key, row0 + r);
        scalar_t v = INFINITY;
        int64_t k = K;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int64_t code = k0 + tx + 16 * j;
          if (code >= K) continue;
          scalar_t s = norms[level * K + code] - scalar_t(2) * acc[i][j];
          if (temperature > 0) s -= temperature * static_cast<scalar_t>(gumbel(row_key, code));
          if (better(s, code, v, k)) { v = s; k = code; }
        }
#pragma unroll
        for (int offset = 8; offset > 0; offset >>= 1) {  // the 16 lanes of a row are one half-warp
          const scalar_t ov = __shfl_xor_sync(0xffffffffu, v, offset);
          const int64_t ok = __shfl_xor_sync(0xffffffffu, k, offset);
          if (better(ov, ok, v, k)) { v = ov; k = ok; }
        }
        if (tx == 0 && better(v, k, best_val[r], best_idx[r])) {
          best_val[r] = v;
          best_idx[r] = k;
        }
      }
      // The next chunk's first __syncthreads orders these writes before the final read below.
    }
    __syncthreads();
    for (int64_t e = tid; e < rows * D; e += kThreads) {
      const int64_t r = e / D, d = e % D;
      const scalar_t c = book[best_idx[r] * D + d];
      residual[(row0 + r) * D + d] -= c;
      quantized[(row0 + r) * D + d] += c;
    }
    if (tid < rows) codes[(row0 + tid) * L + level] = best_idx[tid];
    __syncthreads();
  }
}

}  // namespace

RVQResult rvq_search_cuda(const at::Tensor& x_in, const at::Tensor& codebooks_in, double temperature, int64_t seed) {
  check_rvq_inputs(x_in, codebooks_in, temperature);
  TORCH_CHECK(x_in.is_cuda(), "rvq_search (cuda backend): x must be a CUDA tensor, got ", x_in.device());
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const at::Tensor books = codebooks_in.contiguous();
  const int64_t N = x.size(0), D = x.size(1), L = books.size(0), K = books.size(1);
  at::Tensor codes = at::empty({N, L}, x.options().dtype(at::kLong));
  at::Tensor quantized = at::empty({N, D}, x.options());
  at::Tensor residual = at::empty({N, D}, x.options());
  if (N == 0) return {codes, quantized, residual};
  const at::Tensor norms = books.square().sum(-1).contiguous();
  const dim3 grid(static_cast<unsigned>((N + kRows - 1) / kRows));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rvq_search_cuda", [&] {
    rvq_search_kernel<scalar_t><<<grid, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x.data_ptr<scalar_t>(), books.data_ptr<scalar_t>(), norms.data_ptr<scalar_t>(), N, L, K, D,
        static_cast<scalar_t>(temperature), static_cast<uint32_t>(seed), codes.data_ptr<int64_t>(),
        quantized.data_ptr<scalar_t>(), residual.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {codes, quantized, residual};
}

}  // namespace fastmotion
