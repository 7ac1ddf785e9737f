// CPU kernels for the geometry ops: one pass over the data each way, parallel over batch (and views) on
// torch's OpenMP pool, inner loops over the T*J points vectorised with OpenMP SIMD.
#include <ATen/Parallel.h>
#include <torch/types.h>

#include <algorithm>
#include <vector>

#include "common/alloc.h"
#include "geometry/geometry.h"

namespace fastmotion {
namespace {

template <typename scalar_t>
void project_forward(const scalar_t* p, const scalar_t* rot, const scalar_t* scale, const scalar_t* offset,
                     scalar_t* out, int64_t B, int64_t V, int64_t M) {
  at::parallel_for(0, B * V, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bv = begin; bv < end; ++bv) {
      const scalar_t* R = rot + bv * 9;
      const scalar_t s = scale[bv], o0 = offset[bv * 2], o1 = offset[bv * 2 + 1];
      const scalar_t a0 = s * R[0], a1 = s * R[1], a2 = s * R[2], b0 = s * R[3], b1 = s * R[4], b2 = s * R[5];
      const scalar_t* pb = p + (bv / V) * M * 3;
      scalar_t* ob = out + bv * M * 2;
#pragma omp simd
      for (int64_t m = 0; m < M; ++m) {
        const scalar_t x = pb[3 * m], y = pb[3 * m + 1], z = pb[3 * m + 2];
        ob[2 * m] = a0 * x + a1 * y + a2 * z + o0;
        ob[2 * m + 1] = b0 * x + b1 * y + b2 * z + o1;
      }
    }
  });
}

template <typename scalar_t>
void project_backward(const scalar_t* g, const scalar_t* p, const scalar_t* rot, const scalar_t* scale,
                      scalar_t* gp, scalar_t* grot, scalar_t* gscale, scalar_t* goffset, int64_t B, int64_t V,
                      int64_t M) {
  // Per motion b: its points are split into x, y, z arrays once (unit-stride SIMD loops), then each view's
  // gradient slab is streamed once; the point gradients accumulate in x, y, z arrays that stay in cache.
  // grad_scale needs no pass of its own: sum g.(R p)[:2] = sum_i R[0][i] sum(g0 p_i) + R[1][i] sum(g1 p_i).
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> buf(6 * M);
    scalar_t *px = buf.data(), *py = px + M, *pz = py + M, *gx = pz + M, *gy = gx + M, *gz = gy + M;
    for (int64_t b = begin; b < end; ++b) {
      const scalar_t* pb = p + b * M * 3;
      for (int64_t m = 0; m < M; ++m) px[m] = pb[3 * m], py[m] = pb[3 * m + 1], pz[m] = pb[3 * m + 2];
      std::fill(gx, gx + 3 * M, scalar_t(0));
      for (int64_t v = 0; v < V; ++v) {
        const int64_t bv = b * V + v;
        const scalar_t* R = rot + bv * 9;
        const scalar_t s = scale[bv];
        const scalar_t c00 = s * R[0], c01 = s * R[1], c02 = s * R[2], c10 = s * R[3], c11 = s * R[4], c12 = s * R[5];
        const scalar_t* gb = g + bv * M * 2;
        scalar_t r00 = 0, r01 = 0, r02 = 0, r10 = 0, r11 = 0, r12 = 0, g0s = 0, g1s = 0;
#pragma omp simd reduction(+ : r00, r01, r02, r10, r11, r12, g0s, g1s)
        for (int64_t m = 0; m < M; ++m) {
          const scalar_t g0 = gb[2 * m], g1 = gb[2 * m + 1];
          gx[m] += c00 * g0 + c10 * g1;
          gy[m] += c01 * g0 + c11 * g1;
          gz[m] += c02 * g0 + c12 * g1;
          r00 += g0 * px[m], r01 += g0 * py[m], r02 += g0 * pz[m];
          r10 += g1 * px[m], r11 += g1 * py[m], r12 += g1 * pz[m];
          g0s += g0, g1s += g1;
        }
        scalar_t* gR = grot + bv * 9;
        gR[0] = s * r00, gR[1] = s * r01, gR[2] = s * r02;
        gR[3] = s * r10, gR[4] = s * r11, gR[5] = s * r12;
        gR[6] = gR[7] = gR[8] = 0;  // the depth row does not reach the output
        gscale[bv] = R[0] * r00 + R[1] * r01 + R[2] * r02 + R[3] * r10 + R[4] * r11 + R[5] * r12;
        goffset[bv * 2] = g0s, goffset[bv * 2 + 1] = g1s;
      }
      scalar_t* gpb = gp + b * M * 3;
      for (int64_t m = 0; m < M; ++m) gpb[3 * m] = gx[m], gpb[3 * m + 1] = gy[m], gpb[3 * m + 2] = gz[m];
    }
  });
}

// Ray through keypoint k of camera b: centre o = -R^T t, direction d = R^T K^-1 [k, 1].
template <typename scalar_t>
struct Camera {
  scalar_t fx, fy, skew, cx, cy, R[9], o[3];
  Camera(const scalar_t* K, const scalar_t* Rm, const scalar_t* t) {
    fx = K[0], skew = K[1], cx = K[2], fy = K[4], cy = K[5];
    for (int i = 0; i < 9; ++i) R[i] = Rm[i];
    for (int i = 0; i < 3; ++i) o[i] = t ? -(R[i] * t[0] + R[3 + i] * t[1] + R[6 + i] * t[2]) : 0;
  }
  void direction(scalar_t kx, scalar_t ky, scalar_t d[3]) const {
    const scalar_t nv = (ky - cy) / fy;
    const scalar_t nu = (kx - cx - skew * nv) / fx;
    for (int i = 0; i < 3; ++i) d[i] = R[i] * nu + R[3 + i] * nv + R[6 + i];
  }
};

template <typename scalar_t>
void ray_forward(const scalar_t* p, const scalar_t* k, const scalar_t* K, const scalar_t* R, const scalar_t* t,
                 scalar_t* out, int64_t B, int64_t M) {
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const Camera<scalar_t> cam(K + b * 9, R + b * 9, t + b * 3);
      for (int64_t m = 0; m < M; ++m) {
        const scalar_t* pm = p + (b * M + m) * 3;
        scalar_t d[3];
        cam.direction(k[(b * M + m) * 2], k[(b * M + m) * 2 + 1], d);
        const scalar_t along = ((pm[0] - cam.o[0]) * d[0] + (pm[1] - cam.o[1]) * d[1] + (pm[2] - cam.o[2]) * d[2]) /
                               (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
        scalar_t* om = out + (b * M + m) * 3;
        for (int i = 0; i < 3; ++i) om[i] = cam.o[i] + along * d[i];
      }
    }
  });
}

template <typename scalar_t>
void ray_backward(const scalar_t* g, const scalar_t* k, const scalar_t* K, const scalar_t* R, scalar_t* gp,
                  int64_t B, int64_t M) {
  // out = o + d d^T (p - o) / (d.d): the gradient to p is the same projection of the incoming gradient.
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const Camera<scalar_t> cam(K + b * 9, R + b * 9, nullptr);
      for (int64_t m = 0; m < M; ++m) {
        const scalar_t* gm = g + (b * M + m) * 3;
        scalar_t d[3];
        cam.direction(k[(b * M + m) * 2], k[(b * M + m) * 2 + 1], d);
        const scalar_t along = (gm[0] * d[0] + gm[1] * d[1] + gm[2] * d[2]) / (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
        for (int i = 0; i < 3; ++i) gp[(b * M + m) * 3 + i] = along * d[i];
      }
    }
  });
}

}  // namespace

at::Tensor project_weak_perspective_cpu(const at::Tensor& points_in, const at::Tensor& rotations_in,
                                        const at::Tensor& scale_in, const at::Tensor& offset_in) {
  check_projection_inputs(points_in, rotations_in, scale_in, offset_in);
  const at::Tensor points = points_in.contiguous(), rotations = rotations_in.contiguous();
  const at::Tensor scale = scale_in.contiguous(), offset = offset_in.contiguous();
  const int64_t B = points.size(0), T = points.size(1), J = points.size(2), V = rotations.size(1);
  at::Tensor out = empty_cpu_output({B, V, T, J, 2}, points.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "project_weak_perspective_cpu", [&] {
    project_forward<scalar_t>(points.data_ptr<scalar_t>(), rotations.data_ptr<scalar_t>(), scale.data_ptr<scalar_t>(),
                              offset.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), B, V, T * J);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> project_weak_perspective_backward_cpu(
    const at::Tensor& grad_in, const at::Tensor& points_in, const at::Tensor& rotations_in,
    const at::Tensor& scale_in) {
  const at::Tensor points = points_in.contiguous(), rotations = rotations_in.contiguous();
  const at::Tensor scale = scale_in.contiguous(), grad = grad_in.contiguous();
  const int64_t B = points.size(0), T = points.size(1), J = points.size(2), V = rotations.size(1);
  TORCH_CHECK(grad.dim() == 5 && grad.size(0) == B && grad.size(1) == V && grad.size(2) == T && grad.size(3) == J &&
                  grad.size(4) == 2,
              "project_weak_perspective backward: grad_out must be [B, V, T, J, 2], got ", shape_str(grad));
  // Every element is written by the kernel: no zero-fill pass over the [B, T, J, 3] gradient.
  at::Tensor grad_points = empty_cpu_output(points.sizes(), points.options());
  at::Tensor grad_rotations = at::zeros_like(rotations);
  at::Tensor grad_scale = at::zeros_like(scale), grad_offset = at::zeros({B, V, 2}, points.options());
  if (B == 0 || V == 0) return {at::zeros_like(points), grad_rotations, grad_scale, grad_offset};
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "project_weak_perspective_backward_cpu", [&] {
    project_backward<scalar_t>(grad.data_ptr<scalar_t>(), points.data_ptr<scalar_t>(), rotations.data_ptr<scalar_t>(),
                               scale.data_ptr<scalar_t>(), grad_points.data_ptr<scalar_t>(),
                               grad_rotations.data_ptr<scalar_t>(), grad_scale.data_ptr<scalar_t>(),
                               grad_offset.data_ptr<scalar_t>(), B, V, T * J);
  });
  return {grad_points, grad_rotations, grad_scale, grad_offset};
}

at::Tensor ray_project_cpu(const at::Tensor& points_in, const at::Tensor& keypoints_in, const at::Tensor& K_in,
                           const at::Tensor& R_in, const at::Tensor& t_in) {
  check_ray_inputs(points_in, keypoints_in, K_in, R_in, t_in);
  const at::Tensor points = points_in.contiguous(), keypoints = keypoints_in.contiguous();
  const at::Tensor K = K_in.contiguous(), R = R_in.contiguous(), t = t_in.contiguous();
  at::Tensor out = at::empty_like(points);
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "ray_project_cpu", [&] {
    ray_forward<scalar_t>(points.data_ptr<scalar_t>(), keypoints.data_ptr<scalar_t>(), K.data_ptr<scalar_t>(),
                          R.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), points.size(0),
                          points.size(1));
  });
  return out;
}

at::Tensor ray_project_backward_cpu(const at::Tensor& grad_in, const at::Tensor& keypoints_in, const at::Tensor& K_in,
                                    const at::Tensor& R_in) {
  const at::Tensor grad = grad_in.contiguous(), keypoints = keypoints_in.contiguous();
  const at::Tensor K = K_in.contiguous(), R = R_in.contiguous();
  TORCH_CHECK(grad.dim() == 3 && grad.size(2) == 3 && grad.size(0) == keypoints.size(0) &&
                  grad.size(1) == keypoints.size(1),
              "ray_project backward: grad_out must be [B, M, 3], got ", shape_str(grad));
  at::Tensor grad_points = at::empty_like(grad);
  if (grad.numel() == 0) return grad_points;
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "ray_project_backward_cpu", [&] {
    ray_backward<scalar_t>(grad.data_ptr<scalar_t>(), keypoints.data_ptr<scalar_t>(), K.data_ptr<scalar_t>(),
                           R.data_ptr<scalar_t>(), grad_points.data_ptr<scalar_t>(), grad.size(0), grad.size(1));
  });
  return grad_points;
}

}  // namespace fastmotion
