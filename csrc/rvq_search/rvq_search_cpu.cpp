// CPU residual-VQ search. Rows are processed in tiles of kTileRows; for each tile all levels run back to back
// while the tile's residual stays in cache. Per level one BLAS call
// (torch's addmm, i.e. MKL/OpenBLAS) computes score[i][k] = ||C_k||^2 - 2 <r_i, C_k> straight into a
// tile-sized scratch buffer (the ||r_i||^2 term is constant per row and does not change the argmin), so no
// N x K matrix ever exists.
#include <ATen/Parallel.h>
#include <torch/types.h>

#include <algorithm>
#include <limits>

#include "common/gumbel.h"
#include "rvq_search/rvq_search.h"

namespace fastmotion {
namespace {

constexpr int64_t kTileRows = 128;

template <typename scalar_t>
void rvq_search_cpu_kernel(const scalar_t* x, const scalar_t* books, const at::Tensor& norms,
                           const at::Tensor& books_t, int64_t N, int64_t L,
                           int64_t K, int64_t D, scalar_t temperature, uint32_t seed, int64_t* codes,
                           scalar_t* quantized, scalar_t* residual, const at::TensorOptions& options) {
  const int64_t num_tiles = (N + kTileRows - 1) / kTileRows;
  // Grain 1: each tile is already ~D*K*L*kTileRows*2 flops; at::parallel_for runs on torch's OpenMP pool
  // and BLAS calls inside it stay single-threaded.
  at::parallel_for(0, num_tiles, 1, [&](int64_t tile_begin, int64_t tile_end) {
    // Scratch through torch's allocator so memory profilers see it: kTileRows x K per thread.
    at::Tensor scratch = at::empty({kTileRows * K}, options);
    scalar_t* scores = scratch.data_ptr<scalar_t>();
    for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
      const int64_t row0 = tile * kTileRows;
      const int64_t rows = std::min(kTileRows, N - row0);
      scalar_t* r = residual + row0 * D;
      scalar_t* q = quantized + row0 * D;
      std::copy(x + row0 * D, x + (row0 + rows) * D, r);
      std::fill(q, q + rows * D, scalar_t(0));
      for (int64_t level = 0; level < L; ++level) {
        const scalar_t* book = books + level * K * D;
        at::Tensor out = at::from_blob(scores, {rows, K}, options);
        at::addmm_out(out, norms[level], at::from_blob(r, {rows, D}, options), books_t[level], 1, -2);
        const uint32_t level_key = gumbel_level_key(seed, static_cast<uint32_t>(level));
        for (int64_t i = 0; i < rows; ++i) {
          scalar_t* s = scores + i * K;
          if (temperature > 0) {
            const uint32_t row_key = gumbel_row_key(level_key, row0 + i);
            for (int64_t k = 0; k < K; ++k) s[k] -= temperature * static_cast<scalar_t>(gumbel(row_key, k));
          }
          // First pass: the minimum (a branch-free reduction the compiler vectorises); second: its first index.
          scalar_t best = std::numeric_limits<scalar_t>::infinity();
          for (int64_t k = 0; k < K; ++k) best = s[k] < best ? s[k] : best;
          int64_t best_k = 0;
          while (best_k < K - 1 && !(s[best_k] <= best)) ++best_k;
          codes[(row0 + i) * L + level] = best_k;
          const scalar_t* chosen = book + best_k * D;
          scalar_t* ri = r + i * D;
          scalar_t* qi = q + i * D;
          for (int64_t d = 0; d < D; ++d) {
            ri[d] -= chosen[d];
            qi[d] += chosen[d];
          }
        }
      }
    }
  });
}

}  // namespace

RVQResult rvq_search_cpu(const at::Tensor& x_in, const at::Tensor& codebooks_in, double temperature, int64_t seed) {
  check_rvq_inputs(x_in, codebooks_in, temperature);
  TORCH_CHECK(x_in.device().is_cpu(), "rvq_search (cpp backend): x must be a CPU tensor, got ", device_str(x_in));
  const at::Tensor x = x_in.contiguous();
  const at::Tensor books = codebooks_in.contiguous();
  const int64_t N = x.size(0), D = x.size(1), L = books.size(0), K = books.size(1);
  at::Tensor codes = at::empty({N, L}, x.options().dtype(at::kLong));
  at::Tensor quantized = at::empty({N, D}, x.options());
  at::Tensor residual = at::empty({N, D}, x.options());
  if (N == 0) return {codes, quantized, residual};
  const at::Tensor norms = books.square().sum(-1).contiguous();  // [L, K]
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rvq_search_cpu", [&] {
    rvq_search_cpu_kernel<scalar_t>(x.data_ptr<scalar_t>(), books.data_ptr<scalar_t>(), norms, books.transpose(1, 2),
                                    N, L, K, D, static_cast<scalar_t>(temperature), static_cast<uint32_t>(seed),
                                    codes.data_ptr<int64_t>(), quantized.data_ptr<scalar_t>(),
                                    residual.data_ptr<scalar_t>(), x.options());
  });
  return {codes, quantized, residual};
}

}  // namespace fastmotion
