// CPU residual-VQ search. Per level, row tiles of kTileRows run in parallel (torch's OpenMP pool); one GEMM
// per tile writes score[i][k] = ||C_k||^2 - 2 <r_i, C_k> into a tile-sized scratch buffer (||r_i||^2 is
// constant per row and does not change the argmin), then a SIMD scan picks each row's code and updates its
// residual and quantized rows. No N x K matrix ever exists.
//
// The GEMM is nearly all of the time, so it goes to the BLAS torch links, by the cheapest route found at run
// time: MKL's packed GEMM (each level's codebook packed once instead of once per tile), else the plain Fortran
// gemm, else at::addmm_out. A tiny search (N * K * D <= kSmallMacs: a training step's few vectors) takes the plain
// gemm: packing the codebook costs more than it saves there. FASTMOTION_CPP_GEMM=packed|blas|aten forces a route
// (the tests compare them).
#include <ATen/Parallel.h>
#include <torch/types.h>

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>

#include "common/gumbel.h"
#include "rvq_search/rvq_search.h"

namespace fastmotion {
namespace {

constexpr int64_t kTileRows = 128;
constexpr int64_t kSmallMacs = int64_t(1) << 17;

// BLAS entry points (LP64: 32-bit ints), looked up in libtorch_cpu where torch's BLAS lives.
template <typename T>
using FortranGemm = void (*)(const char*, const char*, const int*, const int*, const int*, const T*, const T*,
                             const int*, const T*, const int*, const T*, T*, const int*);
using PackGetSize = size_t (*)(int, int, int, int);
using PackFloat = void (*)(int, int, int, int, int, int, float, const float*, int, float*);
using ComputeFloat = void (*)(int, int, int, int, int, int, const float*, int, const float*, int, float, float*, int);
enum CblasConst { kRowMajor = 101, kNoTrans = 111, kTrans = 112, kPacked = 151, kBMatrix = 162 };

void* blas_symbol(const char* name) {
  static void* torch_cpu = dlopen("libtorch_cpu.so", RTLD_NOW | RTLD_NOLOAD);
  void* sym = torch_cpu ? dlsym(torch_cpu, name) : nullptr;
  return sym ? sym : dlsym(RTLD_DEFAULT, name);
}

struct MklPacked {
  PackGetSize get_size = reinterpret_cast<PackGetSize>(blas_symbol("cblas_sgemm_pack_get_size"));
  PackFloat pack = reinterpret_cast<PackFloat>(blas_symbol("cblas_sgemm_pack"));
  ComputeFloat compute = reinterpret_cast<ComputeFloat>(blas_symbol("cblas_sgemm_compute"));
  bool ok() const { return get_size && pack && compute; }
};

enum class GemmRoute { kPacked, kBlas, kAten };

template <typename scalar_t>
GemmRoute choose_route(int64_t N, int64_t K, int64_t D) {
  static const MklPacked mkl;
  const bool small = K <= INT32_MAX && D <= INT32_MAX && kTileRows * K <= INT32_MAX;
  const bool packed_ok = std::is_same_v<scalar_t, float> && mkl.ok() && small;
  const bool blas_ok = blas_symbol(std::is_same_v<scalar_t, float> ? "sgemm_" : "dgemm_") != nullptr && small;
  const char* forced = std::getenv("FASTMOTION_CPP_GEMM");
  if (forced && std::strcmp(forced, "aten") == 0) return GemmRoute::kAten;
  if (forced && std::strcmp(forced, "blas") == 0) return blas_ok ? GemmRoute::kBlas : GemmRoute::kAten;
  if (packed_ok && !(forced == nullptr && blas_ok && N * K * D <= kSmallMacs)) return GemmRoute::kPacked;
  return blas_ok ? GemmRoute::kBlas : GemmRoute::kAten;
}

// One level's codebook, ready for many tile GEMMs: scores[rows x K] = norms - 2 * r[rows x D] @ book^T.
template <typename scalar_t>
class LevelScores {
 public:
  LevelScores(GemmRoute route, const at::Tensor& book, const at::Tensor& norms)
      : route_(route), book_(book), norms_(norms), K_(book.size(0)), D_(book.size(1)) {
    if constexpr (std::is_same_v<scalar_t, float>) {
      if (route_ == GemmRoute::kPacked) {
        static const MklPacked mkl;
        const int k = static_cast<int>(K_), d = static_cast<int>(D_);
        const size_t bytes = mkl.get_size(kBMatrix, static_cast<int>(kTileRows), k, d);
        packed_ = at::empty({static_cast<int64_t>((bytes + sizeof(float) - 1) / sizeof(float))}, book.options());
        // alpha = -2 is folded into the packed codebook.
        mkl.pack(kRowMajor, kBMatrix, kTrans, static_cast<int>(kTileRows), k, d, -2.0f, book.data_ptr<float>(), d,
                 packed_.data_ptr<float>());
      }
    }
  }

  void operator()(scalar_t* scores, const scalar_t* r, int64_t rows) const {
    const scalar_t* norm = norms_.data_ptr<scalar_t>();
    const int m = static_cast<int>(rows), k = static_cast<int>(K_), d = static_cast<int>(D_);
    if (route_ == GemmRoute::kAten) {
      at::Tensor out = at::from_blob(scores, {rows, K_}, book_.options());
      at::addmm_out(out, norms_, at::from_blob(const_cast<scalar_t*>(r), {rows, D_}, book_.options()), book_.t(),
                    1, -2);
      return;
    }
    for (int64_t i = 0; i < rows; ++i) std::copy(norm, norm + K_, scores + i * K_);
    if constexpr (std::is_same_v<scalar_t, float>) {
      if (route_ == GemmRoute::kPacked) {
        static const MklPacked mkl;
        mkl.compute(kRowMajor, kNoTrans, kPacked, m, k, d, r, d, packed_.data_ptr<float>(), k, 1.0f, scores, k);
        return;
      }
    }
    // Column-major view: scores^T [K x rows] = -2 * book [K x D] * r^T [D x rows] + scores^T.
    static const auto gemm =
        reinterpret_cast<FortranGemm<scalar_t>>(blas_symbol(std::is_same_v<scalar_t, float> ? "sgemm_" : "dgemm_"));
    const scalar_t alpha = -2, beta = 1;
    gemm("T", "N", &k, &m, &d, &alpha, book_.data_ptr<scalar_t>(), &d, r, &d, &beta, scores, &k);
  }

 private:
  GemmRoute route_;
  at::Tensor book_, norms_, packed_;
  int64_t K_, D_;
};

template <typename scalar_t>
void rvq_search_cpu_kernel(const at::Tensor& x_t, const at::Tensor& books_t, const at::Tensor& norms_t,
                           scalar_t temperature, uint32_t seed, int64_t* codes, scalar_t* quantized,
                           scalar_t* residual) {
  const int64_t N = x_t.size(0), D = x_t.size(1), L = books_t.size(0), K = books_t.size(1);
  const scalar_t* x = x_t.data_ptr<scalar_t>();
  const int64_t num_tiles = (N + kTileRows - 1) / kTileRows;
  const GemmRoute route = choose_route<scalar_t>(N, K, D);
  scalar_t* norms = norms_t.data_ptr<scalar_t>();
  const scalar_t* all_books = books_t.data_ptr<scalar_t>();
  for (int64_t row = 0; row < L * K; ++row) {
    scalar_t sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t d = 0; d < D; ++d) sum += all_books[row * D + d] * all_books[row * D + d];
    norms[row] = sum;
  }
  for (int64_t level = 0; level < L; ++level) {
    const LevelScores<scalar_t> tile_scores(route, books_t[level], norms_t[level]);
    const scalar_t* book = books_t[level].data_ptr<scalar_t>();
    const uint32_t level_key = gumbel_level_key(seed, static_cast<uint32_t>(level));
    // Grain 1: a tile is ~2 * kTileRows * K * D flops. BLAS calls inside the pool stay single-threaded.
    at::parallel_for(0, num_tiles, 1, [&](int64_t tile_begin, int64_t tile_end) {
      // Scratch through torch's allocator so memory measurements see it: kTileRows x K per thread.
      at::Tensor scratch = at::empty({kTileRows * K}, x_t.options());
      scalar_t* scores = scratch.data_ptr<scalar_t>();
      for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
        const int64_t row0 = tile * kTileRows;
        const int64_t rows = std::min(kTileRows, N - row0);
        scalar_t* r = residual + row0 * D;
        scalar_t* q = quantized + row0 * D;
        if (level == 0) {
          std::copy(x + row0 * D, x + (row0 + rows) * D, r);
          std::fill(q, q + rows * D, scalar_t(0));
        }
        tile_scores(scores, r, rows);
        for (int64_t i = 0; i < rows; ++i) {
          scalar_t* s = scores + i * K;
          if (temperature > 0) {
            const uint32_t row_key = gumbel_row_key(level_key, row0 + i);
            for (int64_t k = 0; k < K; ++k) s[k] -= temperature * static_cast<scalar_t>(gumbel(row_key, k));
          }
          // First pass: the minimum (an OpenMP SIMD reduction); second: the first index holding it.
          scalar_t best = std::numeric_limits<scalar_t>::infinity();
#pragma omp simd reduction(min : best)
          for (int64_t k = 0; k < K; ++k) best = s[k] < best ? s[k] : best;
          int64_t best_k = 0;
          while (best_k < K - 1 && !(s[best_k] <= best)) ++best_k;
          codes[(row0 + i) * L + level] = best_k;
          const scalar_t* chosen = book + best_k * D;
          scalar_t* ri = r + i * D;
          scalar_t* qi = q + i * D;
#pragma omp simd
          for (int64_t d = 0; d < D; ++d) {
            ri[d] -= chosen[d];
            qi[d] += chosen[d];
          }
        }
      }
    });
  }
}

}  // namespace

RVQResult rvq_search_cpu(const at::Tensor& x_in, const at::Tensor& codebooks_in, double temperature, int64_t seed) {
  check_rvq_inputs(x_in, codebooks_in, temperature);
  TORCH_CHECK(x_in.device().is_cpu(), "rvq_search (cpp backend): x must be a CPU tensor, got ", device_str(x_in));
  const RVQProblem p = prepare_rvq(x_in, codebooks_in);
  if (p.N == 0) return p.result();
  AT_DISPATCH_FLOATING_TYPES(p.x.scalar_type(), "rvq_search_cpu", [&] {
    rvq_search_cpu_kernel<scalar_t>(p.x, p.books, p.norms, static_cast<scalar_t>(temperature),
                                    static_cast<uint32_t>(seed), p.codes.data_ptr<int64_t>(),
                                    p.quantized.data_ptr<scalar_t>(), p.residual.data_ptr<scalar_t>());
  });
  return p.result();
}

}  // namespace fastmotion
