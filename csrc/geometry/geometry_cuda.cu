// CUDA kernels of the geometry ops (definitions: fastmotion/ops/reference.py; same plan as kernels/geometry.py).
// Every kernel is elementwise over (motion b, joint-frame m): a 1-D grid of B x blocks, one thread per point,
// the motion's rotations or camera read once per thread as scalars (cached broadcast loads). Reductions
// (rotation/scale/offset gradients, the valid-term count) go through per-block partials summed by torch, so
// results are deterministic (no floating-point atomics).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/types.h>

#include "geometry/geometry.h"
#include "geometry/reprojection_frame.h"

namespace fastmotion {
namespace {

constexpr int kThreads = 256;

struct Launch {
  int64_t blocks_per_motion;
  dim3 grid;
};

Launch launch_shape(int64_t B, int64_t per_motion) {
  const int64_t blocks = std::max<int64_t>(1, (per_motion + kThreads - 1) / kThreads);
  TORCH_CHECK(B * blocks < (int64_t(1) << 31), "geometry op: too many points for one launch (B = ", num_str(B),
              ")");
  return {blocks, dim3(static_cast<unsigned>(B * blocks))};
}

// Block-wide sum of one value per thread (kThreads threads); every thread gets the total.
template <typename scalar_t>
__device__ scalar_t block_sum(scalar_t v, scalar_t* shared) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // shared may still be read by the previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  scalar_t total = 0;
  for (int w = 0; w < kThreads / 32; ++w) total += shared[w];
  return total;
}

// ---- weak-perspective projection --------------------------------------------------------------------------------
template <typename scalar_t>
__global__ void project_forward_kernel(const scalar_t* __restrict__ p, const scalar_t* __restrict__ rot,
                                       const scalar_t* __restrict__ scale, const scalar_t* __restrict__ offset,
                                       scalar_t* __restrict__ out, int64_t V, int64_t M, int64_t blocks) {
  const int64_t b = blockIdx.x / blocks, m = (blockIdx.x % blocks) * kThreads + threadIdx.x;
  if (m >= M) return;
  const scalar_t* q = p + (b * M + m) * 3;
  const scalar_t x = q[0], y = q[1], z = q[2];
  for (int64_t v = 0; v < V; ++v) {  // the point is read once for all V views
    const int64_t bv = b * V + v;
    const scalar_t* R = rot + bv * 9;
    const scalar_t s = scale[bv];
    scalar_t* o = out + (bv * M + m) * 2;
    o[0] = s * (R[0] * x + R[1] * y + R[2] * z) + offset[bv * 2];
    o[1] = s * (R[3] * x + R[4] * y + R[5] * z) + offset[bv * 2 + 1];
  }
}

template <typename scalar_t>
__global__ void project_backward_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ p,
                                        const scalar_t* __restrict__ rot, const scalar_t* __restrict__ scale,
                                        scalar_t* __restrict__ gp, scalar_t* __restrict__ partials, int64_t V,
                                        int64_t M, int64_t blocks) {
  __shared__ scalar_t shared[kThreads / 32];
  const int64_t b = blockIdx.x / blocks, blk = blockIdx.x % blocks, m = blk * kThreads + threadIdx.x;
  const bool ok = m < M;
  scalar_t x = 0, y = 0, z = 0;
  if (ok) x = p[(b * M + m) * 3], y = p[(b * M + m) * 3 + 1], z = p[(b * M + m) * 3 + 2];
  scalar_t gx = 0, gy = 0, gz = 0;
  for (int64_t v = 0; v < V; ++v) {
    const int64_t bv = b * V + v;
    const scalar_t* R = rot + bv * 9;
    const scalar_t s = scale[bv];
    scalar_t g0 = 0, g1 = 0;
    if (ok) g0 = g[(bv * M + m) * 2], g1 = g[(bv * M + m) * 2 + 1];
    gx += s * (R[0] * g0 + R[3] * g1);
    gy += s * (R[1] * g0 + R[4] * g1);
    gz += s * (R[2] * g0 + R[5] * g1);
    if (partials != nullptr) {  // sum_m g (x) p and sum_m g: rotations, scale and offset follow from them
      const scalar_t values[8] = {g0 * x, g0 * y, g0 * z, g1 * x, g1 * y, g1 * z, g0, g1};
      scalar_t* part = partials + (bv * blocks + blk) * 8;
      for (int i = 0; i < 8; ++i) {
        const scalar_t total = block_sum(values[i], shared);
        if (threadIdx.x == 0) part[i] = total;
      }
    }
  }
  if (ok) gp[(b * M + m) * 3] = gx, gp[(b * M + m) * 3 + 1] = gy, gp[(b * M + m) * 3 + 2] = gz;
}

// ---- depth-aware reprojection loss --------------------------------------------------------------------------------
template <typename scalar_t>
using Camera = ReprojectionInputs<scalar_t>;

// frame() of a joint that may lie outside the data (neighbour frames at the clip's ends): invalid there.
template <typename scalar_t>
__device__ __forceinline__ JointFrame<scalar_t> frame_if(const Camera<scalar_t>& cam, int64_t b, int64_t idx,
                                                         bool ok) {
  return ok ? cam.frame(b, idx) : JointFrame<scalar_t>{0, 0, 1, 0, 0, false};
}

template <typename scalar_t>
__global__ void terms_forward_kernel(Camera<scalar_t> cam, scalar_t* __restrict__ terms, int* __restrict__ counts,
                                     int64_t T, int64_t J, int64_t blocks, bool depth_weighted, bool velocity) {
  const int64_t T_out = velocity ? T - 1 : T;
  const int64_t b = blockIdx.x / blocks, m = (blockIdx.x % blocks) * kThreads + threadIdx.x;
  const bool ok = m < T_out * J;
  // output (f, j) reads frame f, and with velocity frame f + 1 too (the later frame carries the weight)
  const int64_t idx = b * T * J + m + (velocity ? J : 0);
  JointFrame<scalar_t> cur = frame_if(cam, b, idx, ok);
  scalar_t e0 = cur.e0, e1 = cur.e1, depth = cur.z;
  bool valid = cur.valid;
  if (velocity) {
    const JointFrame<scalar_t> prev = frame_if(cam, b, idx - J, ok);
    e0 -= prev.e0, e1 -= prev.e1, depth = scalar_t(0.5) * (cur.z + prev.z), valid = valid && prev.valid;
  }
  scalar_t term = 0;
  if (valid) term = cam.weight(idx) * (depth_weighted ? depth * depth : scalar_t(1)) * (e0 * e0 + e1 * e1);
  if (ok) terms[b * T_out * J + m] = term;
  const int count = __syncthreads_count(valid);
  if (threadIdx.x == 0) counts[blockIdx.x] = count;
}

template <typename scalar_t>
__global__ void terms_backward_kernel(Camera<scalar_t> cam, const scalar_t* __restrict__ grad_terms,
                                      scalar_t* __restrict__ gp, int64_t T, int64_t J, int64_t blocks,
                                      bool depth_weighted, bool velocity, bool depth_grad) {
  const int64_t b = blockIdx.x / blocks, m = (blockIdx.x % blocks) * kThreads + threadIdx.x;
  if (m >= T * J) return;
  const int64_t idx = b * T * J + m, f = m / J;
  const JointFrame<scalar_t> fr = cam.frame(b, idx);
  scalar_t* out = gp + idx * 3;
  if (!fr.valid) {
    out[0] = out[1] = out[2] = 0;
    return;
  }
  scalar_t de0 = 0, de1 = 0, dz = 0;
  if (!velocity) {
    const scalar_t g = grad_terms[idx] * cam.weight(idx);
    const scalar_t d2 = depth_weighted ? fr.z * fr.z : scalar_t(1);
    de0 = 2 * g * d2 * fr.e0, de1 = 2 * g * d2 * fr.e1;
    if (depth_grad) dz = 2 * g * fr.z * (fr.e0 * fr.e0 + fr.e1 * fr.e1);
  } else {
    const int64_t out_idx = b * (T - 1) * J + m;  // term (f, f+1); term (f-1, f) sits J before
    for (int side = 0; side < 2; ++side) {       // 0: the term before (we are later), 1: the term after
      const bool exists = side == 0 ? f >= 1 : f + 1 < T;
      const JointFrame<scalar_t> other = frame_if(cam, b, side == 0 ? idx - J : idx + J, exists);
      if (!other.valid) continue;
      const scalar_t sign = side == 0 ? scalar_t(1) : scalar_t(-1);
      const scalar_t v0 = sign * (fr.e0 - other.e0), v1 = sign * (fr.e1 - other.e1);  // later minus earlier
      const scalar_t depth = scalar_t(0.5) * (fr.z + other.z);
      const scalar_t g = grad_terms[side == 0 ? out_idx - J : out_idx] * cam.weight(side == 0 ? idx : idx + J);
      const scalar_t d2 = depth_weighted ? depth * depth : scalar_t(1);
      de0 += sign * 2 * g * d2 * v0, de1 += sign * 2 * g * d2 * v1;
      if (depth_grad) dz += g * depth * (v0 * v0 + v1 * v1);
    }
  }
  cam.point_grad(b, fr, de0, de1, dz, out);
}

// ---- camera-ray projection --------------------------------------------------------------------------------------
template <typename scalar_t>
__device__ void ray_direction(const scalar_t* k, const scalar_t* K, const scalar_t* R, scalar_t* d) {
  const scalar_t nv = (k[1] - K[5]) / K[4];
  const scalar_t nu = (k[0] - K[2] - K[1] * nv) / K[0];
  for (int i = 0; i < 3; ++i) d[i] = R[i] * nu + R[3 + i] * nv + R[6 + i];  // R^T K^-1 [k, 1]
}

template <typename scalar_t>
__global__ void ray_forward_kernel(const scalar_t* __restrict__ p, const scalar_t* __restrict__ k,
                                   const scalar_t* __restrict__ K, const scalar_t* __restrict__ R,
                                   const scalar_t* __restrict__ t, scalar_t* __restrict__ out, int64_t M,
                                   int64_t blocks) {
  const int64_t b = blockIdx.x / blocks, m = (blockIdx.x % blocks) * kThreads + threadIdx.x;
  if (m >= M) return;
  const int64_t idx = b * M + m;
  const scalar_t *Rb = R + b * 9, *tb = t + b * 3;
  scalar_t d[3], o[3], dot = 0, dd = 0;
  ray_direction(k + idx * 2, K + b * 9, Rb, d);
  for (int i = 0; i < 3; ++i) {
    o[i] = -(Rb[i] * tb[0] + Rb[3 + i] * tb[1] + Rb[6 + i] * tb[2]);  // camera centre -R^T t
    dot += (p[idx * 3 + i] - o[i]) * d[i], dd += d[i] * d[i];
  }
  const scalar_t along = dot / dd;
  for (int i = 0; i < 3; ++i) out[idx * 3 + i] = o[i] + along * d[i];
}

template <typename scalar_t>
__global__ void ray_backward_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ k,
                                    const scalar_t* __restrict__ K, const scalar_t* __restrict__ R,
                                    scalar_t* __restrict__ gp, int64_t M, int64_t blocks) {
  const int64_t b = blockIdx.x / blocks, m = (blockIdx.x % blocks) * kThreads + threadIdx.x;
  if (m >= M) return;
  const int64_t idx = b * M + m;
  scalar_t d[3], dot = 0, dd = 0;
  ray_direction(k + idx * 2, K + b * 9, R + b * 9, d);
  for (int i = 0; i < 3; ++i) dot += g[idx * 3 + i] * d[i], dd += d[i] * d[i];
  const scalar_t along = dot / dd;  // the map is the projector d d^T / d.d
  for (int i = 0; i < 3; ++i) gp[idx * 3 + i] = along * d[i];
}

}  // namespace

at::Tensor project_weak_perspective_cuda(const at::Tensor& points_in, const at::Tensor& rotations_in,
                                         const at::Tensor& scale_in, const at::Tensor& offset_in) {
  const at::Tensor points = points_in.contiguous(), rotations = rotations_in.contiguous();
  const at::Tensor scale = scale_in.contiguous(), offset = offset_in.contiguous();
  check_projection_inputs(points, rotations, scale, offset);
  const c10::cuda::CUDAGuard guard(points.device());
  const int64_t B = points.size(0), T = points.size(1), J = points.size(2), V = rotations.size(1), M = T * J;
  at::Tensor out = at::empty({B, V, T, J, 2}, points.options());
  if (out.numel() == 0) return out;
  const Launch launch = launch_shape(B, M);
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "project_weak_perspective_cuda", [&] {
    project_forward_kernel<scalar_t><<<launch.grid, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        points.data_ptr<scalar_t>(), rotations.data_ptr<scalar_t>(), scale.data_ptr<scalar_t>(),
        offset.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), V, M, launch.blocks_per_motion);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> project_weak_perspective_backward_cuda(
    const at::Tensor& grad_in, const at::Tensor& points_in, const at::Tensor& rotations_in,
    const at::Tensor& scale_in) {
  const at::Tensor points = points_in.contiguous(), rotations = rotations_in.contiguous();
  const at::Tensor scale = scale_in.contiguous(), grad = grad_in.contiguous();
  const int64_t B = points.size(0), T = points.size(1), J = points.size(2), V = rotations.size(1), M = T * J;
  check_projection_inputs(points, rotations, scale, at::zeros({B, V, 2}, points.options()));
  TORCH_CHECK(grad.dim() == 5 && grad.size(0) == B && grad.size(1) == V && grad.size(2) == T && grad.size(3) == J &&
                  grad.size(4) == 2,
              "project_weak_perspective backward: grad_out must be [B, V, T, J, 2], got ", shape_str(grad));
  const c10::cuda::CUDAGuard guard(points.device());
  const Launch launch = launch_shape(B, M);
  at::Tensor grad_points = at::zeros_like(points);
  at::Tensor partials = at::zeros({B, V, launch.blocks_per_motion, 8}, points.options());
  if (points.numel() > 0 && V > 0) {
    AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "project_weak_perspective_backward_cuda", [&] {
      project_backward_kernel<scalar_t><<<launch.grid, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
          grad.data_ptr<scalar_t>(), points.data_ptr<scalar_t>(), rotations.data_ptr<scalar_t>(),
          scale.data_ptr<scalar_t>(), grad_points.data_ptr<scalar_t>(), partials.data_ptr<scalar_t>(), V, M,
          launch.blocks_per_motion);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  const at::Tensor sums = partials.sum(2);
  const at::Tensor outer = sums.narrow(2, 0, 6).view({B, V, 2, 3});  // sum_m g_i p_j
  at::Tensor grad_rotations = at::zeros_like(rotations);
  grad_rotations.narrow(2, 0, 2).copy_(scale.view({B, V, 1, 1}) * outer);
  const at::Tensor grad_scale = (rotations.narrow(2, 0, 2) * outer).sum({2, 3});
  return {grad_points, grad_rotations, grad_scale, sums.narrow(2, 6, 2).contiguous()};
}

at::Tensor ray_project_cuda(const at::Tensor& points_in, const at::Tensor& keypoints_in, const at::Tensor& K_in,
                            const at::Tensor& R_in, const at::Tensor& t_in) {
  const at::Tensor points = points_in.contiguous(), keypoints = keypoints_in.contiguous();
  const at::Tensor K = K_in.contiguous(), R = R_in.contiguous(), t = t_in.contiguous();
  check_ray_inputs(points, keypoints, K, R, t);
  const c10::cuda::CUDAGuard guard(points.device());
  at::Tensor out = at::empty_like(points);
  if (out.numel() == 0) return out;
  const int64_t B = points.size(0), M = points.size(1);
  const Launch launch = launch_shape(B, M);
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "ray_project_cuda", [&] {
    ray_forward_kernel<scalar_t><<<launch.grid, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        points.data_ptr<scalar_t>(), keypoints.data_ptr<scalar_t>(), K.data_ptr<scalar_t>(), R.data_ptr<scalar_t>(),
        t.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), M, launch.blocks_per_motion);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor ray_project_backward_cuda(const at::Tensor& grad_in, const at::Tensor& keypoints_in, const at::Tensor& K_in,
                                     const at::Tensor& R_in) {
  const at::Tensor grad = grad_in.contiguous(), keypoints = keypoints_in.contiguous();
  const at::Tensor K = K_in.contiguous(), R = R_in.contiguous();
  check_ray_inputs(grad, keypoints, K, R, at::zeros({grad.size(0), 3}, grad.options()));
  const c10::cuda::CUDAGuard guard(grad.device());
  at::Tensor out = at::empty_like(grad);
  if (out.numel() == 0) return out;
  const int64_t B = grad.size(0), M = grad.size(1);
  const Launch launch = launch_shape(B, M);
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "ray_project_backward_cuda", [&] {
    ray_backward_kernel<scalar_t><<<launch.grid, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        grad.data_ptr<scalar_t>(), keypoints.data_ptr<scalar_t>(), K.data_ptr<scalar_t>(), R.data_ptr<scalar_t>(),
        out.data_ptr<scalar_t>(), M, launch.blocks_per_motion);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> reprojection_terms_cuda(const at::Tensor& points_in, const at::Tensor& keypoints_in,
                                                           const at::Tensor& K_in, const at::Tensor& R_in,
                                                           const at::Tensor& t_in,
                                                           const c10::optional<at::Tensor>& weights_in,
                                                           const c10::optional<at::Tensor>& mask_in,
                                                           bool depth_weighted, double min_depth, bool velocity) {
  const ReprojectionTensors in =
      prepare_reprojection(points_in, keypoints_in, K_in, R_in, t_in, weights_in, mask_in, velocity);
  const at::Tensor& points = in.points;
  const c10::cuda::CUDAGuard guard(points.device());
  const int64_t B = points.size(0), T = points.size(1), J = points.size(2), T_out = velocity ? T - 1 : T;
  at::Tensor terms = at::empty({B, T_out, J}, points.options());
  if (terms.numel() == 0) return {terms, at::zeros({}, points.options().dtype(at::kLong))};
  const Launch launch = launch_shape(B, T_out * J);
  at::Tensor counts = at::empty({static_cast<int64_t>(launch.grid.x)}, points.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "reprojection_terms_cuda", [&] {
    terms_forward_kernel<scalar_t><<<launch.grid, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        in.inputs<scalar_t>(min_depth), terms.data_ptr<scalar_t>(),
        counts.data_ptr<int>(), T, J, launch.blocks_per_motion, depth_weighted, velocity);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {terms, counts.sum(at::kLong)};
}

at::Tensor reprojection_terms_backward_cuda(const at::Tensor& grad_terms_in, const at::Tensor& points_in,
                                            const at::Tensor& keypoints_in, const at::Tensor& K_in,
                                            const at::Tensor& R_in, const at::Tensor& t_in,
                                            const c10::optional<at::Tensor>& weights_in,
                                            const c10::optional<at::Tensor>& mask_in, bool depth_weighted,
                                            double min_depth, bool velocity, bool detach_depth) {
  const ReprojectionTensors in =
      prepare_reprojection(points_in, keypoints_in, K_in, R_in, t_in, weights_in, mask_in, velocity);
  const at::Tensor& points = in.points;
  const at::Tensor grad_terms = grad_terms_in.contiguous();
  const int64_t B = points.size(0), T = points.size(1), J = points.size(2);
  check_grad_terms(grad_terms, points, velocity);
  const c10::cuda::CUDAGuard guard(points.device());
  at::Tensor grad_points = at::empty_like(points);
  if (grad_points.numel() == 0) return grad_points;
  const Launch launch = launch_shape(B, T * J);
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "reprojection_terms_backward_cuda", [&] {
    terms_backward_kernel<scalar_t><<<launch.grid, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        in.inputs<scalar_t>(min_depth), grad_terms.data_ptr<scalar_t>(),
        grad_points.data_ptr<scalar_t>(), T, J, launch.blocks_per_motion, depth_weighted, velocity,
        depth_weighted && !detach_depth);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_points;
}

}  // namespace fastmotion
