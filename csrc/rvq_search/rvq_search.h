// Residual-VQ search: for each row of x, L levels in turn pick the nearest code (squared L2) to what the
// previous levels left. Definition: fastmotion/ops/reference.py::rvq_search.
#pragma once
#include <ATen/ATen.h>
#include <torch/types.h>

#include <cmath>
#include <tuple>

#include "common/check.h"

namespace fastmotion {

using RVQResult = std::tuple<at::Tensor, at::Tensor, at::Tensor>;  // codes [N,L] int64, quantized, residual

// Shape/dtype/device checks shared by every entry point (mirrors the Python validation).
inline void check_rvq_inputs(const at::Tensor& x, const at::Tensor& codebooks, double temperature) {
  TORCH_CHECK(x.dim() == 2, "rvq_search: x must be 2-D [N, D], got shape ", shape_str(x));
  TORCH_CHECK(codebooks.dim() == 3, "rvq_search: codebooks must be 3-D [L, K, D], got shape ", shape_str(codebooks));
  TORCH_CHECK(x.size(1) == codebooks.size(2), "rvq_search: x has D=", num_str(x.size(1)),
              " but codebooks have D=", num_str(codebooks.size(2)));
  TORCH_CHECK(x.size(1) > 0, "rvq_search: D must be >= 1, got x shape ", shape_str(x));
  TORCH_CHECK(codebooks.size(0) > 0 && codebooks.size(1) > 0, "rvq_search: codebooks need L >= 1 and K >= 1, got ",
              shape_str(codebooks));
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "rvq_search: x must be float32 or float64, got ", dtype_str(x));
  TORCH_CHECK(codebooks.scalar_type() == x.scalar_type(), "rvq_search: codebooks dtype ", dtype_str(codebooks),
              " differs from x dtype ", dtype_str(x));
  TORCH_CHECK(codebooks.device() == x.device(), "rvq_search: codebooks on ", device_str(codebooks), " but x on ",
              device_str(x));
  TORCH_CHECK(temperature >= 0 && std::isfinite(temperature), "rvq_search: temperature must be finite and >= 0, got ",
              num_str(temperature));
}

// What every backend starts from: contiguous inputs, outputs allocated like x, and the squared code norms
// ([L, K], computed without an [L, K, D] temporary, on CPU by the kernel; left undefined when N == 0).
struct RVQProblem {
  at::Tensor x, books, norms, codes, quantized, residual;
  int64_t N, D, L, K;
  RVQResult result() const { return {codes, quantized, residual}; }
};

inline RVQProblem prepare_rvq(const at::Tensor& x_in, const at::Tensor& codebooks_in) {
  RVQProblem p;
  p.x = x_in.contiguous();
  p.books = codebooks_in.contiguous();
  p.N = p.x.size(0), p.D = p.x.size(1), p.L = p.books.size(0), p.K = p.books.size(1);
  p.codes = at::empty({p.N, p.L}, p.x.options().dtype(at::kLong));
  p.quantized = at::empty({p.N, p.D}, p.x.options());
  p.residual = at::empty({p.N, p.D}, p.x.options());
  // On CPU the kernel fills the norms itself: einsum's dispatch alone costs more than a tiny search.
  if (p.N > 0) {
    p.norms = p.x.is_cpu() ? at::empty({p.L, p.K}, p.x.options())
                           : at::einsum("lkd,lkd->lk", {p.books, p.books}).contiguous();
  }
  return p;
}

RVQResult rvq_search_cpu(const at::Tensor& x, const at::Tensor& codebooks, double temperature, int64_t seed);
#ifdef FASTMOTION_WITH_CUDA
RVQResult rvq_search_cuda(const at::Tensor& x, const at::Tensor& codebooks, double temperature, int64_t seed);
#endif

}  // namespace fastmotion
