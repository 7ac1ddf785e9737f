// CUDA residual-VQ search. Per level, two kernels (the same plan as kernels/rvq.py):
//   scores: a (row tile x code tile) block computes ||C_k||^2 - 2 <r, C_k> over D and folds it at once into
//           a per-row (min, argmin) for its code tile -> partials [N, code tiles]; no N x K matrix is stored.
//           float32 runs on tensor cores with three TF32 products per step (big*big + big*small + small*big,
//           the "3xTF32" split), which keeps about float32 accuracy; float64 (and GPUs before sm_80) run a
//           register-tiled SIMT loop.
//   update: per row, the best partial (lowest index on ties), then residual -= C[code]; the last level also
//           sums the chosen codes into quantized.
// Level 0 reads x directly, so x is never copied.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <cuda_pipeline.h>
#include <mma.h>
#include <torch/types.h>

#include "common/gumbel.h"
#include "rvq_search/rvq_search.h"

namespace fastmotion {
namespace {

template <typename scalar_t>
__device__ __forceinline__ bool better(scalar_t v, int64_t k, scalar_t best_v, int64_t best_k) {
  return v < best_v || (v == best_v && k < best_k);
}

template <typename scalar_t>
__device__ __forceinline__ scalar_t score(scalar_t norm, scalar_t dot, scalar_t temperature, uint32_t row_key,
                                          int64_t code) {
  scalar_t s = norm - scalar_t(2) * dot;
  if (temperature > 0) s -= temperature * static_cast<scalar_t>(gumbel(row_key, code));
  return s;
}

// ---- scores, SIMT (float64, and float32 before sm_80) -------------------------------------------------------
constexpr int kSimtRows = 64, kSimtCodes = 64, kSimtDepth = 16, kSimtThreads = 256;

template <typename scalar_t>
__global__ void __launch_bounds__(kSimtThreads) scores_simt_kernel(
    const scalar_t* __restrict__ r, const scalar_t* __restrict__ book, const scalar_t* __restrict__ norms,
    int64_t N, int64_t K, int64_t D, scalar_t temperature, uint32_t level_key, scalar_t* __restrict__ part_val,
    int32_t* __restrict__ part_idx) {
  __shared__ scalar_t r_tile[kSimtDepth][kSimtRows + 1];
  __shared__ scalar_t c_tile[kSimtDepth][kSimtCodes + 1];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kSimtRows;
  const int64_t k0 = static_cast<int64_t>(blockIdx.y) * kSimtCodes;
  scalar_t acc[4][4] = {};
  for (int64_t d0 = 0; d0 < D; d0 += kSimtDepth) {
    for (int e = tid; e < kSimtRows * kSimtDepth; e += kSimtThreads) {
      const int i = e / kSimtDepth, d = e % kSimtDepth;
      const bool ok_d = d0 + d < D;
      r_tile[d][i] = (row0 + i < N && ok_d) ? r[(row0 + i) * D + d0 + d] : scalar_t(0);
      c_tile[d][i] = (k0 + i < K && ok_d) ? book[(k0 + i) * D + d0 + d] : scalar_t(0);
    }
    __syncthreads();
#pragma unroll
    for (int d = 0; d < kSimtDepth; ++d) {
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
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t row = row0 + ty + 16 * i;
    const uint32_t row_key = gumbel_row_key(level_key, row);
    scalar_t v = INFINITY;
    int64_t k = K;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t code = k0 + tx + 16 * j;
      if (code >= K) continue;
      const scalar_t s = score(norms[code], acc[i][j], temperature, row_key, code);
      if (better(s, code, v, k)) { v = s; k = code; }
    }
#pragma unroll
    for (int offset = 8; offset > 0; offset >>= 1) {  // the 16 lanes sharing a row are one half-warp
      const scalar_t ov = __shfl_xor_sync(0xffffffffu, v, offset);
      const int64_t ok = __shfl_xor_sync(0xffffffffu, k, offset);
      if (better(ov, ok, v, k)) { v = ov; k = ok; }
    }
    if (tx == 0 && row < N) {
      part_val[row * gridDim.y + blockIdx.y] = v;
      part_idx[row * gridDim.y + blockIdx.y] = static_cast<int32_t>(k);
    }
  }
}

// ---- scores, tensor cores (float32, sm_80+) ----------------------------------------------------------------
namespace wmma = nvcuda::wmma;
constexpr int kTcRows = 128, kTcCodes = 128, kTcDepth = 32, kTcThreads = 256;  // 8 warps: 4 (rows) x 2 (codes)
constexpr int kTcLd = kTcDepth + 4;   // padded smem row (floats): a multiple of 4 as wmma needs, and
                                      // 36 mod 32 = 4 spreads 8 consecutive rows over distinct banks
constexpr int kTcOutLd = 64 + 4;      // per-warp epilogue scratch: 16 rows x 64 codes
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;

template <typename Frag>
__device__ __forceinline__ void split_tf32(Frag& big, Frag& small) {  // big holds fp32 on entry
#pragma unroll
  for (int i = 0; i < big.num_elements; ++i) {
    const float v = big.x[i];
    big.x[i] = wmma::__float_to_tf32(v);
    small.x[i] = wmma::__float_to_tf32(v - big.x[i]);
  }
}

// Dynamic shared memory: two pipeline stages of (row tile, code tile), reused by the epilogue.
constexpr int kTcStageFloats = 2 * kTcRows * kTcLd;
constexpr int kTcSmemBytes = 2 * kTcStageFloats * sizeof(float);
static_assert(8 * 16 * kTcOutLd <= 2 * kTcStageFloats, "epilogue scratch must fit in the pipeline buffers");

// Stage one D-slab of both tiles into shared memory with 16-byte cp.async copies (D % 4 == 0 is required);
// out-of-range rows, codes and dims are zero-filled.
__device__ __forceinline__ void stage_tiles(float* stage, const float* __restrict__ r, const float* __restrict__ book,
                                            int64_t row0, int64_t k0, int64_t d0, int64_t N, int64_t K, int64_t D,
                                            int tid) {
  float* a_tile = stage;
  float* b_tile = stage + kTcRows * kTcLd;
#pragma unroll
  for (int e = tid; e < kTcRows * kTcDepth / 4; e += kTcThreads) {
    const int i = e / (kTcDepth / 4), d = (e % (kTcDepth / 4)) * 4;
    const bool ok_d = d0 + d < D;  // D % 4 == 0: a float4 is all in or all out
    const bool ok_a = ok_d && row0 + i < N, ok_b = ok_d && k0 + i < K;
    __pipeline_memcpy_async(a_tile + i * kTcLd + d, ok_a ? r + (row0 + i) * D + d0 + d : r, 16, ok_a ? 0 : 16);
    __pipeline_memcpy_async(b_tile + i * kTcLd + d, ok_b ? book + (k0 + i) * D + d0 + d : book, 16, ok_b ? 0 : 16);
  }
}

__global__ void __launch_bounds__(kTcThreads, 2) scores_tc_kernel(
    const float* __restrict__ r, const float* __restrict__ book, const float* __restrict__ norms, int64_t N,
    int64_t K, int64_t D, float temperature, uint32_t level_key, float* __restrict__ part_val,
    int32_t* __restrict__ part_idx) {
#if __CUDA_ARCH__ >= 800
  extern __shared__ __align__(128) float smem[];
  __shared__ float best_val[2][kTcRows];
  __shared__ int32_t best_idx[2][kTcRows];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int warp_row = warp / 2, warp_col = warp % 2;  // warp tile: 32 rows x 64 codes
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kTcRows;
  const int64_t k0 = static_cast<int64_t>(blockIdx.y) * kTcCodes;

  FragC acc[2][4];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  const int64_t steps = (D + kTcDepth - 1) / kTcDepth;
  stage_tiles(smem, r, book, row0, k0, 0, N, K, D, tid);
  __pipeline_commit();
  for (int64_t step = 0; step < steps; ++step) {
    if (step + 1 < steps) {  // prefetch the next slab while this one is multiplied
      stage_tiles(smem + ((step + 1) % 2) * kTcStageFloats, r, book, row0, k0, (step + 1) * kTcDepth, N, K, D, tid);
      __pipeline_commit();
      __pipeline_wait_prior(1);
    } else {
      __pipeline_wait_prior(0);
    }
    __syncthreads();
    const float* a_tile = smem + (step % 2) * kTcStageFloats;
    const float* b_tile = a_tile + kTcRows * kTcLd;
#pragma unroll
    for (int kk = 0; kk < kTcDepth; kk += 8) {
      FragA a_big[2], a_small[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        wmma::load_matrix_sync(a_big[i], a_tile + (warp_row * 32 + i * 16) * kTcLd + kk, kTcLd);
        split_tf32(a_big[i], a_small[i]);
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {  // one B fragment at a time keeps registers low enough for 2 blocks/SM
        FragB b_big, b_small;
        wmma::load_matrix_sync(b_big, b_tile + (warp_col * 64 + j * 16) * kTcLd + kk, kTcLd);
        split_tf32(b_big, b_small);
#pragma unroll
        for (int i = 0; i < 2; ++i) {  // small terms first: they are the least significant
          wmma::mma_sync(acc[i][j], a_small[i], b_big, acc[i][j]);
          wmma::mma_sync(acc[i][j], a_big[i], b_small, acc[i][j]);
          wmma::mma_sync(acc[i][j], a_big[i], b_big, acc[i][j]);
        }
      }
    }
    __syncthreads();
  }

  // Epilogue, per warp and per 16-row slab: dots -> smem, two lanes per row scan 32 codes each.
  float* out = smem + warp * 16 * kTcOutLd;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) wmma::store_matrix_sync(out + j * 16, acc[i][j], kTcOutLd, wmma::mem_row_major);
    __syncwarp();
    const int local_row = warp_row * 32 + i * 16 + lane / 2;
    const int64_t row = row0 + local_row;
    const uint32_t row_key = gumbel_row_key(level_key, row);
    const int col0 = (lane % 2) * 32;
    float v = INFINITY;
    int64_t k = K;
    for (int c = 0; c < 32; ++c) {
      const int64_t code = k0 + warp_col * 64 + col0 + c;
      if (code >= K) break;
      const float s = score(norms[code], out[(lane / 2) * kTcOutLd + col0 + c], temperature, row_key, code);
      if (s < v) { v = s; k = code; }  // ascending codes: strict < keeps the lowest index
    }
    const float ov = __shfl_xor_sync(0xffffffffu, v, 1);
    const int64_t ok = __shfl_xor_sync(0xffffffffu, k, 1);
    if (better(ov, ok, v, k)) { v = ov; k = ok; }
    if (lane % 2 == 0) {
      best_val[warp_col][local_row] = v;
      best_idx[warp_col][local_row] = static_cast<int32_t>(k);
    }
    __syncwarp();
  }
  __syncthreads();
  if (tid < kTcRows && row0 + tid < N) {
    float v = best_val[0][tid];
    int32_t k = best_idx[0][tid];
    if (better(best_val[1][tid], static_cast<int64_t>(best_idx[1][tid]), v, static_cast<int64_t>(k))) {
      v = best_val[1][tid];
      k = best_idx[1][tid];
    }
    part_val[(row0 + tid) * gridDim.y + blockIdx.y] = v;
    part_idx[(row0 + tid) * gridDim.y + blockIdx.y] = k;
  }
#endif
}

// ---- update: one warp per row ----------------------------------------------------------------------------
constexpr int kUpdateThreads = 256;

template <typename scalar_t>
__global__ void __launch_bounds__(kUpdateThreads) update_kernel(
    const scalar_t* __restrict__ x, const scalar_t* __restrict__ book, const scalar_t* __restrict__ part_val,
    const int32_t* __restrict__ part_idx, int64_t N, int64_t K, int64_t D, int64_t L, int64_t level, int64_t n_parts,
    int64_t* __restrict__ codes, scalar_t* __restrict__ quantized, scalar_t* __restrict__ residual) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (kUpdateThreads / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= N) return;
  scalar_t v = INFINITY;
  int64_t k = K;  // sentinel: any real partial is better
  for (int64_t p = lane; p < n_parts; p += 32) {
    const scalar_t pv = part_val[row * n_parts + p];
    const int64_t pk = part_idx[row * n_parts + p];
    if (better(pv, pk, v, k)) { v = pv; k = pk; }
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    const scalar_t ov = __shfl_xor_sync(0xffffffffu, v, offset);
    const int64_t ok = __shfl_xor_sync(0xffffffffu, k, offset);
    if (better(ov, ok, v, k)) { v = ov; k = ok; }
  }
  if (k >= K) k = 0;  // every score overflowed to inf: take code 0, as argmin does
  if (lane == 0) codes[row * L + level] = k;
  const scalar_t* chosen = book + k * D;
  const scalar_t* src = level == 0 ? x + row * D : residual + row * D;
  scalar_t* res = residual + row * D;
  for (int64_t d = lane; d < D; d += 32) res[d] = src[d] - chosen[d];
  if (level + 1 < L) return;
  // Last level: quantized = sum of the chosen codes in level order (as the reference adds them); keeping it
  // only here saves a read and a write of [N, D] per level.
  scalar_t* quant = quantized + row * D;
  const scalar_t* books = book - level * K * D;
  for (int64_t d = lane; d < D; d += 32) {
    scalar_t q = scalar_t(0);
    for (int64_t l = 0; l < L; ++l) {
      const int64_t code = l == level ? k : codes[row * L + l];  // earlier levels: written by earlier launches
      q += books[(l * K + code) * D + d];
    }
    quant[d] = q;
  }
}

template <typename scalar_t>
void launch_scores(bool /*tensor_cores*/, dim3 grid, cudaStream_t stream, const scalar_t* r, const scalar_t* book,
                   const scalar_t* norms, int64_t N, int64_t K, int64_t D, scalar_t temperature, uint32_t level_key,
                   scalar_t* part_val, int32_t* part_idx) {
  scores_simt_kernel<scalar_t><<<grid, kSimtThreads, 0, stream>>>(r, book, norms, N, K, D, temperature, level_key,
                                                                   part_val, part_idx);
}

template <>
void launch_scores<float>(bool tensor_cores, dim3 grid, cudaStream_t stream, const float* r, const float* book,
                          const float* norms, int64_t N, int64_t K, int64_t D, float temperature, uint32_t level_key,
                          float* part_val, int32_t* part_idx) {
  if (tensor_cores) {
    // Opt in to more than 48 KB of dynamic shared memory (a per-device setting: cheap to repeat).
    C10_CUDA_CHECK(cudaFuncSetAttribute(scores_tc_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kTcSmemBytes));
    scores_tc_kernel<<<grid, kTcThreads, kTcSmemBytes, stream>>>(r, book, norms, N, K, D, temperature, level_key, part_val,
                                                      part_idx);
  } else {
    scores_simt_kernel<float><<<grid, kSimtThreads, 0, stream>>>(r, book, norms, N, K, D, temperature, level_key,
                                                                 part_val, part_idx);
  }
}

}  // namespace

RVQResult rvq_search_cuda(const at::Tensor& x_in, const at::Tensor& codebooks_in, double temperature, int64_t seed) {
  check_rvq_inputs(x_in, codebooks_in, temperature);
  TORCH_CHECK(x_in.is_cuda(), "rvq_search (cuda backend): x must be a CUDA tensor, got ", device_str(x_in));
  const c10::cuda::CUDAGuard guard(x_in.device());
  const RVQProblem p = prepare_rvq(x_in, codebooks_in);
  if (p.N == 0) return p.result();
  const at::Tensor &x = p.x, &books = p.books, &norms = p.norms;
  const int64_t N = p.N, D = p.D, L = p.L, K = p.K;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  int major = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, x.get_device()));
  // Tensor cores need sm_80+ and whole 16-byte rows (D % 4 == 0) for the asynchronous copies.
  const bool tensor_cores = x.scalar_type() == at::kFloat && major >= 8 && D % 4 == 0;
  const int64_t rows_per_block = tensor_cores ? kTcRows : kSimtRows;
  const int64_t codes_per_block = tensor_cores ? kTcCodes : kSimtCodes;
  const int64_t n_parts = (K + codes_per_block - 1) / codes_per_block;
  at::Tensor part_val = at::empty({N, n_parts}, x.options());
  at::Tensor part_idx = at::empty({N, n_parts}, x.options().dtype(at::kInt));
  const dim3 score_grid(static_cast<unsigned>((N + rows_per_block - 1) / rows_per_block),
                        static_cast<unsigned>(n_parts));
  const dim3 update_grid(static_cast<unsigned>((N + kUpdateThreads / 32 - 1) / (kUpdateThreads / 32)));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rvq_search_cuda", [&] {
    const scalar_t* x_ptr = x.data_ptr<scalar_t>();
    for (int64_t level = 0; level < L; ++level) {
      const scalar_t* r = level == 0 ? x_ptr : p.residual.data_ptr<scalar_t>();
      const scalar_t* book = books.data_ptr<scalar_t>() + level * K * D;
      const scalar_t* norm = norms.data_ptr<scalar_t>() + level * K;
      const uint32_t level_key = gumbel_level_key(static_cast<uint32_t>(seed), static_cast<uint32_t>(level));
      launch_scores<scalar_t>(tensor_cores, score_grid, stream, r, book, norm, N, K, D,
                              static_cast<scalar_t>(temperature), level_key, part_val.data_ptr<scalar_t>(),
                              part_idx.data_ptr<int32_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      update_kernel<scalar_t><<<update_grid, kUpdateThreads, 0, stream>>>(
          x_ptr, book, part_val.data_ptr<scalar_t>(), part_idx.data_ptr<int32_t>(), N, K, D, L, level, n_parts,
          p.codes.data_ptr<int64_t>(), p.quantized.data_ptr<scalar_t>(), p.residual.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return p.result();
}

}  // namespace fastmotion
