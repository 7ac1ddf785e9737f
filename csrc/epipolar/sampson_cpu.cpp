// CPU kernels of MVLift's Sampson consistency (definition: fastmotion/ops/reference.py, sampson_consistency).
// Work is split over the (motion b, joint-frame m) points; each task reads its points in every view once per
// pair and writes its own outputs, so the backward sums each view's pairs in order: deterministic, no atomics.
#include <ATen/Parallel.h>
#include <torch/types.h>

#include "epipolar/sampson.h"

namespace fastmotion {
namespace {

template <typename scalar_t>
void terms_forward(const scalar_t* views, const scalar_t* F, const int64_t* pairs, const bool* mask, scalar_t* terms,
                   int64_t P, int64_t B, int64_t M) {
  at::parallel_for(0, B * M, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t p = 0; p < P; ++p) {
      const scalar_t *va = views + pairs[2 * p] * B * M * 2, *vb = views + pairs[2 * p + 1] * B * M * 2;
      for (int64_t bm = begin; bm < end; ++bm) {
        const bool valid = !mask || mask[bm];
        terms[p * B * M + bm] = valid ? sampson_point<scalar_t>(F + (p * B + bm / M) * 9, va[2 * bm], va[2 * bm + 1],
                                                                vb[2 * bm], vb[2 * bm + 1], 0, nullptr, nullptr)
                                      : scalar_t(0);
      }
    }
  });
}

template <typename scalar_t>
void terms_backward(const scalar_t* grad, const scalar_t* views, const scalar_t* F, const int64_t* pairs,
                    const bool* mask, scalar_t* grad_views, int64_t V, int64_t P, int64_t B, int64_t M) {
  const int64_t BM = B * M;
  at::parallel_for(0, BM, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t v = 0; v < V; ++v) {
      for (int64_t bm = begin; bm < end; ++bm) grad_views[2 * (v * BM + bm)] = grad_views[2 * (v * BM + bm) + 1] = 0;
    }
    for (int64_t p = 0; p < P; ++p) {
      const int64_t i = pairs[2 * p], j = pairs[2 * p + 1];
      const scalar_t *va = views + i * BM * 2, *vb = views + j * BM * 2;
      scalar_t *ga = grad_views + i * BM * 2, *gb = grad_views + j * BM * 2;
      for (int64_t bm = begin; bm < end; ++bm) {
        if (mask && !mask[bm]) continue;
        scalar_t da[2] = {0, 0}, db[2] = {0, 0};
        sampson_point<scalar_t>(F + (p * B + bm / M) * 9, va[2 * bm], va[2 * bm + 1], vb[2 * bm], vb[2 * bm + 1],
                                grad[p * BM + bm], da, db);
        ga[2 * bm] += da[0], ga[2 * bm + 1] += da[1];
        gb[2 * bm] += db[0], gb[2 * bm + 1] += db[1];
      }
    }
  });
}

}  // namespace

at::Tensor sampson_terms_cpu(const at::Tensor& views_in, const at::Tensor& F_in, at::IntArrayRef pairs,
                             const c10::optional<at::Tensor>& mask_in) {
  const at::Tensor views = views_in.contiguous(), F = F_in.contiguous();
  const at::Tensor mask = mask_in.has_value() ? mask_in->contiguous() : at::Tensor();
  check_sampson_inputs(views, F, pairs, mask);
  const int64_t P = F.size(0), B = views.size(1), M = views.size(2);
  at::Tensor terms = at::empty({P, B, M}, views.options());
  if (terms.numel() == 0) return terms;
  AT_DISPATCH_FLOATING_TYPES(views.scalar_type(), "sampson_terms_cpu", [&] {
    terms_forward<scalar_t>(views.data_ptr<scalar_t>(), F.data_ptr<scalar_t>(), pairs.data(),
                            mask.defined() ? mask.data_ptr<bool>() : nullptr, terms.data_ptr<scalar_t>(), P, B, M);
  });
  return terms;
}

at::Tensor sampson_terms_backward_cpu(const at::Tensor& grad_in, const at::Tensor& views_in, const at::Tensor& F_in,
                                      at::IntArrayRef pairs, const c10::optional<at::Tensor>& mask_in) {
  const at::Tensor views = views_in.contiguous(), F = F_in.contiguous(), grad = grad_in.contiguous();
  const at::Tensor mask = mask_in.has_value() ? mask_in->contiguous() : at::Tensor();
  check_sampson_inputs(views, F, pairs, mask);
  check_sampson_grad(grad, views, pairs);
  at::Tensor grad_views = at::empty_like(views);  // every element is written (zero where no pair reaches it)
  if (views.numel() == 0) return grad_views;
  AT_DISPATCH_FLOATING_TYPES(views.scalar_type(), "sampson_terms_backward_cpu", [&] {
    terms_backward<scalar_t>(grad.data_ptr<scalar_t>(), views.data_ptr<scalar_t>(), F.data_ptr<scalar_t>(),
                             pairs.data(), mask.defined() ? mask.data_ptr<bool>() : nullptr,
                             grad_views.data_ptr<scalar_t>(), views.size(0), F.size(0), views.size(1),
                             views.size(2));
  });
  return grad_views;
}

}  // namespace fastmotion
