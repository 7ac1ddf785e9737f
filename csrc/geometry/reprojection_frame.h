// The per-joint math of VideoMDM's reprojection loss, shared by the CPU and CUDA kernels (the Triton kernel in
// kernels/geometry.py mirrors it): a joint in its camera, its residual in normalised image coordinates, and
// the chain rule from (residual, depth) gradients back to the world point.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define FASTMOTION_HD __host__ __device__ __forceinline__
#else
#define FASTMOTION_HD inline
#endif

namespace fastmotion {

template <typename scalar_t>
struct JointFrame {  // one joint at one frame, in the camera; z is 1 and e is 0 where invalid
  scalar_t c0, c1, z, e0, e1;
  bool valid;
};

template <typename scalar_t>
struct ReprojectionInputs {
  const scalar_t *p, *k, *K, *R, *t, *w;  // points [B,T,J,3], keypoints [B,T,J,2], K/R [B,3,3], t [B,3], w or null
  const bool* mask;                        // [B,T,J] or null
  scalar_t min_depth;

  // Joint `idx` (flat over [B, T, J]) of motion b: c = R p + t, valid when z >= min_depth and not masked,
  // e = c_xy / z - K^-1 [k, 1].
  FASTMOTION_HD JointFrame<scalar_t> frame(int64_t b, int64_t idx) const {
    const scalar_t *Rb = R + b * 9, *tb = t + b * 3, *q = p + idx * 3;
    JointFrame<scalar_t> f{0, 0, 1, 0, 0, false};
    f.c0 = Rb[0] * q[0] + Rb[1] * q[1] + Rb[2] * q[2] + tb[0];
    f.c1 = Rb[3] * q[0] + Rb[4] * q[1] + Rb[5] * q[2] + tb[1];
    const scalar_t z = Rb[6] * q[0] + Rb[7] * q[1] + Rb[8] * q[2] + tb[2];
    f.valid = z >= min_depth && (mask == nullptr || mask[idx]);
    if (!f.valid) return f;
    const scalar_t* Kb = K + b * 9;
    const scalar_t nv = (k[idx * 2 + 1] - Kb[5]) / Kb[4];
    const scalar_t nu = (k[idx * 2] - Kb[2] - Kb[1] * nv) / Kb[0];
    f.z = z, f.e0 = f.c0 / z - nu, f.e1 = f.c1 / z - nv;
    return f;
  }
  FASTMOTION_HD scalar_t weight(int64_t idx) const { return w ? w[idx] : scalar_t(1); }

  // d loss / d point from d loss / d(e0, e1) and d loss / d z (the depth used as a weight), through c = R p + t.
  FASTMOTION_HD void point_grad(int64_t b, const JointFrame<scalar_t>& f, scalar_t de0, scalar_t de1, scalar_t dz,
                                scalar_t* out) const {
    const scalar_t dc0 = de0 / f.z, dc1 = de1 / f.z, dcz = dz - (de0 * f.c0 + de1 * f.c1) / (f.z * f.z);
    const scalar_t* Rb = R + b * 9;
    for (int i = 0; i < 3; ++i) out[i] = Rb[i] * dc0 + Rb[3 + i] * dc1 + Rb[6 + i] * dcz;
  }
};

}  // namespace fastmotion
