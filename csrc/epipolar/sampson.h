// MVLift's multi-view epipolar consistency: the Sampson error (Hartley & Zisserman, section 11.4.3, eq. 11.9) of
// each view pair's matched joints. Definition: fastmotion/ops/reference.py (sampson_consistency). The per-point
// math below is shared by the CPU and CUDA kernels (the Triton kernel in kernels/epipolar.py mirrors it).
//
// Layouts (the Python layer canonicalises them): views [V, B, M, 2] (M = frames x joints), F [P, B, 3, 3] with
// F[p] mapping view pairs[2p]'s points to lines in view pairs[2p+1], pairs a flat list of 2P view indices,
// mask an optional bool [B, M]; terms [P, B, M], zero where masked.
#pragma once
#include <torch/types.h>

#include <cfloat>
#include <cstdint>

#include "common/check.h"

#if defined(__CUDACC__)
#define FASTMOTION_EPI_HD __host__ __device__ __forceinline__
#else
#define FASTMOTION_EPI_HD inline
#endif

namespace fastmotion {

constexpr int kMaxSampsonPairs = 128;  // pairs travel to the CUDA kernel by value

template <typename scalar_t>
FASTMOTION_EPI_HD scalar_t sampson_tiny();  // torch.finfo(dtype).tiny, the reference's clamp of the norm
template <>
FASTMOTION_EPI_HD float sampson_tiny<float>() { return FLT_MIN; }
template <>
FASTMOTION_EPI_HD double sampson_tiny<double>() { return DBL_MIN; }

// The Sampson error of a = (ax, ay) in the view F maps from and b = (bx, by) in the view it maps to:
// e = b^T F a, n = |(F a)_12|^2 + |(F^T b)_12|^2, s = e^2 / max(n, tiny). With `g` the gradient of s, adds the
// gradients of a and b to ga[2] and gb[2] (either may be null). Returns s.
template <typename scalar_t>
FASTMOTION_EPI_HD scalar_t sampson_point(const scalar_t* F, scalar_t ax, scalar_t ay, scalar_t bx, scalar_t by,
                                         scalar_t g, scalar_t* ga, scalar_t* gb) {
  const scalar_t lb0 = F[0] * ax + F[1] * ay + F[2];  // F a: the line in view b
  const scalar_t lb1 = F[3] * ax + F[4] * ay + F[5];
  const scalar_t lb2 = F[6] * ax + F[7] * ay + F[8];
  const scalar_t la0 = F[0] * bx + F[3] * by + F[6];  // F^T b: the line in view a
  const scalar_t la1 = F[1] * bx + F[4] * by + F[7];
  const scalar_t e = bx * lb0 + by * lb1 + lb2;
  const scalar_t n = lb0 * lb0 + lb1 * lb1 + la0 * la0 + la1 * la1;
  const bool clamped = n < sampson_tiny<scalar_t>();
  const scalar_t nc = clamped ? sampson_tiny<scalar_t>() : n;
  if (ga || gb) {
    const scalar_t r = e / nc;  // e / n, not e^2 / n^2: n^2 underflows in float32 where n is small
    const scalar_t de = 2 * g * r;                           // d s / d e
    const scalar_t dn = clamped ? scalar_t(0) : -g * r * r;  // d s / d n (no gradient when clamped)
    if (ga) {  // d e / d a = (F^T b)_12; d n / d a = 2 (lb0 F[0, :2] + lb1 F[1, :2])
      ga[0] += de * la0 + dn * 2 * (lb0 * F[0] + lb1 * F[3]);
      ga[1] += de * la1 + dn * 2 * (lb0 * F[1] + lb1 * F[4]);
    }
    if (gb) {  // d e / d b = (F a)_12; d n / d b = 2 (la0 F[:2, 0] + la1 F[:2, 1])
      gb[0] += de * lb0 + dn * 2 * (la0 * F[0] + la1 * F[1]);
      gb[1] += de * lb1 + dn * 2 * (la0 * F[3] + la1 * F[4]);
    }
  }
  return e * e / nc;
}

// Entry points (CPU: sampson_cpu.cpp, CUDA: sampson_cuda.cu); same contracts.
at::Tensor sampson_terms_cpu(const at::Tensor& views, const at::Tensor& F, at::IntArrayRef pairs,
                             const c10::optional<at::Tensor>& mask);
at::Tensor sampson_terms_backward_cpu(const at::Tensor& grad_terms, const at::Tensor& views, const at::Tensor& F,
                                      at::IntArrayRef pairs, const c10::optional<at::Tensor>& mask);
at::Tensor sampson_terms_cuda(const at::Tensor& views, const at::Tensor& F, at::IntArrayRef pairs,
                              const c10::optional<at::Tensor>& mask);
at::Tensor sampson_terms_backward_cuda(const at::Tensor& grad_terms, const at::Tensor& views, const at::Tensor& F,
                                       at::IntArrayRef pairs, const c10::optional<at::Tensor>& mask);

// Shapes, dtypes, devices and pair indices (metadata only: no data is read).
inline void check_sampson_inputs(const at::Tensor& views, const at::Tensor& F, at::IntArrayRef pairs,
                                 const at::Tensor& mask) {
  TORCH_CHECK(views.dim() == 4 && views.size(3) == 2, "sampson_consistency: views must be [V, B, M, 2], got ",
              shape_str(views));
  TORCH_CHECK(views.scalar_type() == at::kFloat || views.scalar_type() == at::kDouble,
              "sampson_consistency: views must be float32 or float64, got ", dtype_str(views));
  const int64_t V = views.size(0), B = views.size(1), P = static_cast<int64_t>(pairs.size()) / 2;
  TORCH_CHECK(pairs.size() % 2 == 0 && P <= kMaxSampsonPairs, "sampson_consistency: pairs must hold 2P view "
              "indices with P <= ", num_str(int64_t(kMaxSampsonPairs)), ", got ", num_str(int64_t(pairs.size())));
  for (const int64_t v : pairs) {
    TORCH_CHECK(v >= 0 && v < V, "sampson_consistency: a pair names view ", num_str(v), " of V = ", num_str(V));
  }
  TORCH_CHECK(F.dim() == 4 && F.size(0) == P && F.size(1) == B && F.size(2) == 3 && F.size(3) == 3,
              "sampson_consistency: F must be [P, B, 3, 3] with P = ", num_str(P), ", B = ", num_str(B), ", got ",
              shape_str(F));
  TORCH_CHECK(F.scalar_type() == views.scalar_type() && F.device() == views.device(),
              "sampson_consistency: F must share the views' dtype and device");
  TORCH_CHECK(!mask.defined() || (mask.scalar_type() == at::kBool && mask.dim() == 2 && mask.size(0) == B &&
                                  mask.size(1) == views.size(2) && mask.device() == views.device()),
              "sampson_consistency: mask must be a bool [B, M] tensor on the views' device, got ", shape_str(mask));
}

inline void check_sampson_grad(const at::Tensor& grad_terms, const at::Tensor& views, at::IntArrayRef pairs) {
  TORCH_CHECK(grad_terms.dim() == 3 && grad_terms.size(0) == int64_t(pairs.size()) / 2 &&
                  grad_terms.size(1) == views.size(1) && grad_terms.size(2) == views.size(2) &&
                  grad_terms.scalar_type() == views.scalar_type() && grad_terms.device() == views.device(),
              "sampson_consistency backward: grad_terms must be [P, B, M] like the terms, got ",
              shape_str(grad_terms));
}

}  // namespace fastmotion
