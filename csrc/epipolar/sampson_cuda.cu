// CUDA kernels of MVLift's Sampson consistency (definition: fastmotion/ops/reference.py, sampson_consistency).
// One thread per (motion b, joint-frame m) point; the pairs travel by value in the kernel's parameters (no host
// copy, no sync), each thread loops over them. The backward writes each view's gradient once, summing that view's
// pairs in order: deterministic, no atomics.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/types.h>

#include "epipolar/sampson.h"

namespace fastmotion {
namespace {

constexpr int kThreads = 256;

struct PairList {
  int count;
  int32_t view[2 * kMaxSampsonPairs];
};

PairList pair_list(at::IntArrayRef pairs) {
  PairList list{static_cast<int>(pairs.size() / 2), {}};
  for (size_t k = 0; k < pairs.size(); ++k) list.view[k] = static_cast<int32_t>(pairs[k]);
  return list;
}

int64_t blocks_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  TORCH_CHECK(blocks < (int64_t(1) << 31), "sampson_consistency: too many points for one launch (", num_str(n), ")");
  return std::max<int64_t>(blocks, 1);
}

template <typename scalar_t>
__global__ void sampson_forward_kernel(const scalar_t* __restrict__ views, const scalar_t* __restrict__ F,
                                       const bool* __restrict__ mask, scalar_t* __restrict__ terms,
                                       const PairList pairs, int64_t B, int64_t M) {
  const int64_t BM = B * M, bm = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (bm >= BM) return;
  const bool valid = !mask || mask[bm];
  const int64_t b = bm / M;
  for (int p = 0; p < pairs.count; ++p) {
    scalar_t s = 0;
    if (valid) {
      const scalar_t *a = views + (pairs.view[2 * p] * BM + bm) * 2, *c = views + (pairs.view[2 * p + 1] * BM + bm) * 2;
      s = sampson_point<scalar_t>(F + (p * B + b) * 9, a[0], a[1], c[0], c[1], 0, nullptr, nullptr);
    }
    terms[p * BM + bm] = s;
  }
}

template <typename scalar_t>
__global__ void sampson_backward_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ views,
                                        const scalar_t* __restrict__ F, const bool* __restrict__ mask,
                                        scalar_t* __restrict__ grad_views, const PairList pairs, int64_t V, int64_t B,
                                        int64_t M) {
  const int64_t BM = B * M, idx = int64_t(blockIdx.x) * kThreads + threadIdx.x;  // over [V, B, M]
  if (idx >= V * BM) return;
  const int64_t v = idx / BM, bm = idx % BM, b = bm / M;
  scalar_t g[2] = {0, 0};
  if (!mask || mask[bm]) {
    for (int p = 0; p < pairs.count; ++p) {
      const int i = pairs.view[2 * p], j = pairs.view[2 * p + 1];
      if (i != v && j != v) continue;
      const scalar_t *a = views + (i * BM + bm) * 2, *c = views + (j * BM + bm) * 2;
      sampson_point<scalar_t>(F + (p * B + b) * 9, a[0], a[1], c[0], c[1], grad[p * BM + bm], i == v ? g : nullptr,
                              j == v ? g : nullptr);
    }
  }
  grad_views[idx * 2] = g[0], grad_views[idx * 2 + 1] = g[1];
}

}  // namespace

at::Tensor sampson_terms_cuda(const at::Tensor& views_in, const at::Tensor& F_in, at::IntArrayRef pairs,
                              const c10::optional<at::Tensor>& mask_in) {
  const at::Tensor views = views_in.contiguous(), F = F_in.contiguous();
  const at::Tensor mask = mask_in.has_value() ? mask_in->contiguous() : at::Tensor();
  check_sampson_inputs(views, F, pairs, mask);
  const c10::cuda::CUDAGuard guard(views.device());
  const int64_t P = F.size(0), B = views.size(1), M = views.size(2);
  at::Tensor terms = at::empty({P, B, M}, views.options());
  if (terms.numel() == 0) return terms;
  AT_DISPATCH_FLOATING_TYPES(views.scalar_type(), "sampson_terms_cuda", [&] {
    sampson_forward_kernel<scalar_t><<<blocks_for(B * M), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        views.data_ptr<scalar_t>(), F.data_ptr<scalar_t>(), mask.defined() ? mask.data_ptr<bool>() : nullptr,
        terms.data_ptr<scalar_t>(), pair_list(pairs), B, M);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return terms;
}

at::Tensor sampson_terms_backward_cuda(const at::Tensor& grad_in, const at::Tensor& views_in, const at::Tensor& F_in,
                                       at::IntArrayRef pairs, const c10::optional<at::Tensor>& mask_in) {
  const at::Tensor views = views_in.contiguous(), F = F_in.contiguous(), grad = grad_in.contiguous();
  const at::Tensor mask = mask_in.has_value() ? mask_in->contiguous() : at::Tensor();
  check_sampson_inputs(views, F, pairs, mask);
  check_sampson_grad(grad, views, pairs);
  const c10::cuda::CUDAGuard guard(views.device());
  at::Tensor grad_views = at::empty_like(views);
  if (views.numel() == 0) return grad_views;
  const int64_t V = views.size(0), B = views.size(1), M = views.size(2);
  AT_DISPATCH_FLOATING_TYPES(views.scalar_type(), "sampson_terms_backward_cuda", [&] {
    sampson_backward_kernel<scalar_t><<<blocks_for(V * B * M), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        grad.data_ptr<scalar_t>(), views.data_ptr<scalar_t>(), F.data_ptr<scalar_t>(),
        mask.defined() ? mask.data_ptr<bool>() : nullptr, grad_views.data_ptr<scalar_t>(), pair_list(pairs), V, B,
        M);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_views;
}

}  // namespace fastmotion
