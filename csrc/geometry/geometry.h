// Geometry ops: rotated-view weak-perspective projection and camera-ray projection.
// Definitions: fastmotion/ops/reference.py (project_weak_perspective, ray_project). The Python layer validates
// and canonicalises arguments (rotations [B,V,3,3], scale [B,V], offset [B,V,2], points flattened to [B,M,3]);
// these entry points check shapes again.
#pragma once
#include <torch/types.h>

#include <tuple>

#include "common/check.h"
#include "geometry/reprojection_frame.h"

namespace fastmotion {

at::Tensor project_weak_perspective_cpu(const at::Tensor& points, const at::Tensor& rotations,
                                        const at::Tensor& scale, const at::Tensor& offset);
// -> grad_points [B,T,J,3], grad_rotations [B,V,3,3], grad_scale [B,V], grad_offset [B,V,2]
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> project_weak_perspective_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& points, const at::Tensor& rotations, const at::Tensor& scale);

at::Tensor ray_project_cpu(const at::Tensor& points, const at::Tensor& keypoints, const at::Tensor& K,
                           const at::Tensor& R, const at::Tensor& t);
at::Tensor ray_project_backward_cpu(const at::Tensor& grad_out, const at::Tensor& keypoints, const at::Tensor& K,
                                    const at::Tensor& R);

// VideoMDM's reprojection loss: per joint terms [B, T(-1), J] (zero where invalid) and the number of valid terms
// (int64 scalar); weights [B, T, J] and mask (bool [B, T, J]) are optional. Python reduces the small terms tensor.
std::tuple<at::Tensor, at::Tensor> reprojection_terms_cpu(const at::Tensor& points, const at::Tensor& keypoints, const at::Tensor& K,
                                  const at::Tensor& R, const at::Tensor& t, const c10::optional<at::Tensor>& weights,
                                  const c10::optional<at::Tensor>& mask, bool depth_weighted, double min_depth,
                                  bool velocity);
at::Tensor reprojection_terms_backward_cpu(const at::Tensor& grad_terms, const at::Tensor& points,
                                           const at::Tensor& keypoints, const at::Tensor& K, const at::Tensor& R,
                                           const at::Tensor& t, const c10::optional<at::Tensor>& weights,
                                           const c10::optional<at::Tensor>& mask, bool depth_weighted,
                                           double min_depth, bool velocity, bool detach_depth);

// CUDA versions (csrc/geometry/geometry_cuda.cu), same contracts; registered when built with CUDA.
at::Tensor project_weak_perspective_cuda(const at::Tensor& points, const at::Tensor& rotations,
                                         const at::Tensor& scale, const at::Tensor& offset);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> project_weak_perspective_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& points, const at::Tensor& rotations, const at::Tensor& scale);
at::Tensor ray_project_cuda(const at::Tensor& points, const at::Tensor& keypoints, const at::Tensor& K,
                            const at::Tensor& R, const at::Tensor& t);
at::Tensor ray_project_backward_cuda(const at::Tensor& grad_out, const at::Tensor& keypoints, const at::Tensor& K,
                                     const at::Tensor& R);
std::tuple<at::Tensor, at::Tensor> reprojection_terms_cuda(const at::Tensor& points, const at::Tensor& keypoints,
                                                           const at::Tensor& K, const at::Tensor& R,
                                                           const at::Tensor& t,
                                                           const c10::optional<at::Tensor>& weights,
                                                           const c10::optional<at::Tensor>& mask,
                                                           bool depth_weighted, double min_depth, bool velocity);
at::Tensor reprojection_terms_backward_cuda(const at::Tensor& grad_terms, const at::Tensor& points,
                                            const at::Tensor& keypoints, const at::Tensor& K, const at::Tensor& R,
                                            const at::Tensor& t, const c10::optional<at::Tensor>& weights,
                                            const c10::optional<at::Tensor>& mask, bool depth_weighted,
                                            double min_depth, bool velocity, bool detach_depth);

inline void check_projection_inputs(const at::Tensor& points, const at::Tensor& rotations, const at::Tensor& scale,
                                    const at::Tensor& offset) {
  TORCH_CHECK(points.dim() == 4 && points.size(3) == 3, "project_weak_perspective: points must be [B, T, J, 3], got ",
              shape_str(points));
  TORCH_CHECK(rotations.dim() == 4 && rotations.size(0) == points.size(0) && rotations.size(2) == 3 &&
                  rotations.size(3) == 3,
              "project_weak_perspective: rotations must be [B, V, 3, 3] with B = ", num_str(points.size(0)), ", got ",
              shape_str(rotations));
  const int64_t B = points.size(0), V = rotations.size(1);
  TORCH_CHECK(scale.dim() == 2 && scale.size(0) == B && scale.size(1) == V,
              "project_weak_perspective: scale must be [B, V], got ", shape_str(scale));
  TORCH_CHECK(offset.dim() == 3 && offset.size(0) == B && offset.size(1) == V && offset.size(2) == 2,
              "project_weak_perspective: offset must be [B, V, 2], got ", shape_str(offset));
  for (const at::Tensor* t : {&rotations, &scale, &offset}) {
    TORCH_CHECK(t->scalar_type() == points.scalar_type() && t->device() == points.device(),
                "project_weak_perspective: every argument must share the points' dtype and device");
  }
  TORCH_CHECK(points.scalar_type() == at::kFloat || points.scalar_type() == at::kDouble,
              "project_weak_perspective: points must be float32 or float64, got ", dtype_str(points));
}

inline void check_ray_inputs(const at::Tensor& points, const at::Tensor& keypoints, const at::Tensor& K,
                             const at::Tensor& R, const at::Tensor& t) {
  TORCH_CHECK(points.dim() == 3 && points.size(2) == 3, "ray_project: points must be [B, M, 3], got ",
              shape_str(points));
  const int64_t B = points.size(0);
  TORCH_CHECK(keypoints.dim() == 3 && keypoints.size(0) == B && keypoints.size(1) == points.size(1) &&
                  keypoints.size(2) == 2,
              "ray_project: keypoints must be [B, M, 2] like points, got ", shape_str(keypoints));
  TORCH_CHECK(K.dim() == 3 && K.size(0) == B && K.size(1) == 3 && K.size(2) == 3, "ray_project: K must be [B, 3, 3]");
  TORCH_CHECK(R.dim() == 3 && R.size(0) == B && R.size(1) == 3 && R.size(2) == 3, "ray_project: R must be [B, 3, 3]");
  TORCH_CHECK(t.dim() == 2 && t.size(0) == B && t.size(1) == 3, "ray_project: t must be [B, 3]");
  for (const at::Tensor* x : {&keypoints, &K, &R, &t}) {
    TORCH_CHECK(x->scalar_type() == points.scalar_type() && x->device() == points.device(),
                "ray_project: every argument must share the points' dtype and device");
  }
  TORCH_CHECK(points.scalar_type() == at::kFloat || points.scalar_type() == at::kDouble,
              "ray_project: points must be float32 or float64, got ", dtype_str(points));
}

inline void check_reprojection_inputs(const at::Tensor& points, const at::Tensor& keypoints, const at::Tensor& K,
                                      const at::Tensor& R, const at::Tensor& t, const at::Tensor& weights,
                                      const at::Tensor& mask, bool velocity) {
  TORCH_CHECK(points.dim() == 4 && points.size(3) == 3, "reprojection_loss: points must be [B, T, J, 3], got ",
              shape_str(points));
  TORCH_CHECK(keypoints.dim() == 4 && keypoints.size(0) == points.size(0) && keypoints.size(1) == points.size(1) &&
                  keypoints.size(2) == points.size(2) && keypoints.size(3) == 2,
              "reprojection_loss: keypoints must be [B, T, J, 2] like points, got ", shape_str(keypoints));
  const int64_t M = points.size(1) * points.size(2);
  check_ray_inputs(points.view({points.size(0), M, 3}), keypoints.view({points.size(0), M, 2}), K, R, t);
  TORCH_CHECK(!weights.defined() || weights.sizes() == points.sizes().slice(0, 3),
              "reprojection_loss: weights must be [B, T, J] (expanded by the caller), got ", shape_str(weights));
  TORCH_CHECK(!mask.defined() || (mask.scalar_type() == at::kBool && mask.sizes() == points.sizes().slice(0, 3)),
              "reprojection_loss: mask must be a bool [B, T, J] tensor");
  TORCH_CHECK(!velocity || points.size(1) >= 2, "reprojection_loss: velocity needs T >= 2, got T=",
              num_str(points.size(1)));
}

inline void check_grad_terms(const at::Tensor& grad_terms, const at::Tensor& points, bool velocity) {
  const int64_t T = points.size(1);
  TORCH_CHECK(grad_terms.dim() == 3 && grad_terms.size(0) == points.size(0) &&
                  grad_terms.size(1) == (velocity ? T - 1 : T) && grad_terms.size(2) == points.size(2),
              "reprojection_loss backward: grad_terms has shape ", shape_str(grad_terms));
}

// The reprojection loss's tensors made contiguous and checked once, for the CPU and CUDA entry points.
struct ReprojectionTensors {
  at::Tensor points, keypoints, K, R, t, weights, mask;  // weights and mask undefined when absent

  template <typename scalar_t>
  ReprojectionInputs<scalar_t> inputs(double min_depth) const {
    return {points.data_ptr<scalar_t>(), keypoints.data_ptr<scalar_t>(), K.data_ptr<scalar_t>(),
            R.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(),
            weights.defined() ? weights.data_ptr<scalar_t>() : nullptr,
            mask.defined() ? mask.data_ptr<bool>() : nullptr, static_cast<scalar_t>(min_depth)};
  }
};

inline ReprojectionTensors prepare_reprojection(const at::Tensor& points, const at::Tensor& keypoints,
                                                const at::Tensor& K, const at::Tensor& R, const at::Tensor& t,
                                                const c10::optional<at::Tensor>& weights,
                                                const c10::optional<at::Tensor>& mask, bool velocity) {
  ReprojectionTensors in{points.contiguous(), keypoints.contiguous(), K.contiguous(), R.contiguous(),
                         t.contiguous(), weights.has_value() ? weights->contiguous() : at::Tensor(),
                         mask.has_value() ? mask->contiguous() : at::Tensor()};
  check_reprojection_inputs(in.points, in.keypoints, in.K, in.R, in.t, in.weights, in.mask, velocity);
  return in;
}

}  // namespace fastmotion
