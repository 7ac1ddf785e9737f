// CPU kernels of VideoMDM's depth-aware reprojection loss (definition: fastmotion/ops/reference.py).
// Work is split over (motion b, joint j); each task walks the frames in order, so the velocity form needs only
// the previous frame's residual and the backward carries the pending gradient of the next frame: one pass
// over the data each way and no [B, T, J, 3] temporaries.
#include <ATen/Parallel.h>
#include <torch/types.h>

#include <atomic>

#include "geometry/geometry.h"
#include "geometry/reprojection_frame.h"

namespace fastmotion {
namespace {

// The shared per-joint math, indexed by (motion, frame, joint) for the frame walks below.
template <typename scalar_t>
struct Setup : ReprojectionInputs<scalar_t> {
  int64_t T, J;
  JointFrame<scalar_t> frame(int64_t b, int64_t f, int64_t j) const {
    return ReprojectionInputs<scalar_t>::frame(b, (b * T + f) * J + j);
  }
  scalar_t weight(int64_t b, int64_t f, int64_t j) const {
    return ReprojectionInputs<scalar_t>::weight((b * T + f) * J + j);
  }
};

template <typename scalar_t>
int64_t loss_forward(const Setup<scalar_t>& s, int64_t B, bool depth_weighted, bool velocity, scalar_t* terms) {
  const int64_t T = s.T, J = s.J, Tout = velocity ? T - 1 : T;
  std::atomic<int64_t> valid_terms{0};
  at::parallel_for(0, B * J, 16, [&](int64_t begin, int64_t end) {
    int64_t counted = 0;
    for (int64_t bj = begin; bj < end; ++bj) {
      const int64_t b = bj / J, j = bj % J;
      JointFrame<scalar_t> prev = s.frame(b, 0, j);
      for (int64_t f = velocity ? 1 : 0; f < T; ++f) {
        const JointFrame<scalar_t> cur = velocity ? s.frame(b, f, j) : prev;
        scalar_t e0 = cur.e0, e1 = cur.e1, depth = cur.z;
        bool valid = cur.valid;
        if (velocity) {
          e0 -= prev.e0, e1 -= prev.e1, depth = scalar_t(0.5) * (cur.z + prev.z), valid = valid && prev.valid;
        }
        scalar_t term = 0;
        if (valid) term = s.weight(b, f, j) * (depth_weighted ? depth * depth : scalar_t(1)) * (e0 * e0 + e1 * e1);
        counted += valid;
        terms[(b * Tout + (velocity ? f - 1 : f)) * J + j] = term;
        if (velocity) prev = cur;
        else if (f + 1 < T) prev = s.frame(b, f + 1, j);
      }
    }
    valid_terms += counted;
  });
  return valid_terms.load();
}

template <typename scalar_t>
void loss_backward(const Setup<scalar_t>& s, int64_t B, bool depth_weighted, bool velocity, bool detach_depth,
                   const scalar_t* grad_terms, scalar_t* grad_points) {
  const int64_t T = s.T, J = s.J, Tout = velocity ? T - 1 : T;
  const bool depth_grad = depth_weighted && !detach_depth;
  at::parallel_for(0, B * J, 16, [&](int64_t begin, int64_t end) {
    for (int64_t bj = begin; bj < end; ++bj) {
      const int64_t b = bj / J, j = bj % J;
      if (!velocity) {
        for (int64_t f = 0; f < T; ++f) {
          const JointFrame<scalar_t> fr = s.frame(b, f, j);
          scalar_t* out = grad_points + ((b * T + f) * J + j) * 3;
          if (!fr.valid) {
            out[0] = out[1] = out[2] = 0;
            continue;
          }
          const scalar_t g = grad_terms[(b * Tout + f) * J + j] * s.weight(b, f, j);
          const scalar_t d2 = depth_weighted ? fr.z * fr.z : scalar_t(1);
          const scalar_t dz = depth_grad ? g * 2 * fr.z * (fr.e0 * fr.e0 + fr.e1 * fr.e1) : scalar_t(0);
          s.point_grad(b, fr, 2 * g * d2 * fr.e0, 2 * g * d2 * fr.e1, dz, out);
        }
        continue;
      }
      // Velocity: the term between frames f-1 and f feeds both; walk forward carrying what frame f receives.
      JointFrame<scalar_t> prev = s.frame(b, 0, j);
      scalar_t pe0 = 0, pe1 = 0, pz = 0;  // gradient already owed to `prev` (from the term before it)
      for (int64_t f = 1; f <= T; ++f) {
        scalar_t ne0 = 0, ne1 = 0, nz = 0;  // owed to frame f by the term (f-1, f)
        JointFrame<scalar_t> cur{};
        if (f < T) {
          cur = s.frame(b, f, j);
          if (prev.valid && cur.valid) {
            const scalar_t v0 = cur.e0 - prev.e0, v1 = cur.e1 - prev.e1;
            const scalar_t depth = scalar_t(0.5) * (cur.z + prev.z);
            const scalar_t g = grad_terms[(b * Tout + f - 1) * J + j] * s.weight(b, f, j);
            const scalar_t d2 = depth_weighted ? depth * depth : scalar_t(1);
            const scalar_t a0 = 2 * g * d2 * v0, a1 = 2 * g * d2 * v1;
            ne0 = a0, ne1 = a1, pe0 -= a0, pe1 -= a1;
            if (depth_grad) {
              const scalar_t dd = g * 2 * depth * (v0 * v0 + v1 * v1) * scalar_t(0.5);
              nz = dd, pz += dd;
            }
          }
        }
        scalar_t* out = grad_points + ((b * T + f - 1) * J + j) * 3;
        if (prev.valid) s.point_grad(b, prev, pe0, pe1, pz, out);
        else out[0] = out[1] = out[2] = 0;
        prev = cur, pe0 = ne0, pe1 = ne1, pz = nz;
      }
    }
  });
}

template <typename scalar_t>
Setup<scalar_t> make_setup(const ReprojectionTensors& in, double min_depth) {
  Setup<scalar_t> s;
  static_cast<ReprojectionInputs<scalar_t>&>(s) = in.inputs<scalar_t>(min_depth);
  s.T = in.points.size(1), s.J = in.points.size(2);
  return s;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> reprojection_terms_cpu(const at::Tensor& points_in, const at::Tensor& keypoints_in, const at::Tensor& K_in,
                                  const at::Tensor& R_in, const at::Tensor& t_in,
                                  const c10::optional<at::Tensor>& weights_in, const c10::optional<at::Tensor>& mask_in,
                                  bool depth_weighted, double min_depth, bool velocity) {
  const ReprojectionTensors in =
      prepare_reprojection(points_in, keypoints_in, K_in, R_in, t_in, weights_in, mask_in, velocity);
  const at::Tensor& points = in.points;
  const int64_t B = points.size(0), T = points.size(1), J = points.size(2);
  at::Tensor terms = at::empty({B, velocity ? T - 1 : T, J}, points.options());
  int64_t valid_terms = 0;
  if (terms.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "reprojection_terms_cpu", [&] {
      valid_terms = loss_forward<scalar_t>(make_setup<scalar_t>(in, min_depth),
                                           B, depth_weighted, velocity, terms.data_ptr<scalar_t>());
    });
  }
  return {terms, at::scalar_tensor(valid_terms, points.options().dtype(at::kLong))};
}

at::Tensor reprojection_terms_backward_cpu(const at::Tensor& grad_terms_in, const at::Tensor& points_in,
                                           const at::Tensor& keypoints_in, const at::Tensor& K_in,
                                           const at::Tensor& R_in, const at::Tensor& t_in,
                                           const c10::optional<at::Tensor>& weights_in,
                                           const c10::optional<at::Tensor>& mask_in, bool depth_weighted,
                                           double min_depth, bool velocity, bool detach_depth) {
  const ReprojectionTensors in =
      prepare_reprojection(points_in, keypoints_in, K_in, R_in, t_in, weights_in, mask_in, velocity);
  const at::Tensor& points = in.points;
  const at::Tensor grad_terms = grad_terms_in.contiguous();
  check_grad_terms(grad_terms, points, velocity);
  at::Tensor grad_points = at::empty_like(points);
  if (grad_points.numel() == 0) return grad_points;
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "reprojection_terms_backward_cpu", [&] {
    loss_backward<scalar_t>(make_setup<scalar_t>(in, min_depth), points.size(0), depth_weighted, velocity,
                            detach_depth, grad_terms.data_ptr<scalar_t>(), grad_points.data_ptr<scalar_t>());
  });
  return grad_points;
}

}  // namespace fastmotion
