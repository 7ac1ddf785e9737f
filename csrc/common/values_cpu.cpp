// fastmotion._C.values_ok: see values.h. The finite test accumulates x - x, which is 0 for every finite x
// and NaN for a NaN or an inf, so the loop vectorises (no branch) and one comparison decides at the end.
#include "common/values.h"

namespace fastmotion {
namespace {

template <typename scalar_t>
bool all_finite(const scalar_t* x, int64_t n) {
  scalar_t acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += x[i] - x[i];
  return acc == 0;
}

bool tensor_finite(const at::Tensor& t_in) {
  const at::Tensor t = t_in.contiguous();
  TORCH_CHECK(t.device().is_cpu(), "values_ok: CPU tensors only");
  if (t.scalar_type() == at::kFloat) return all_finite(t.data_ptr<float>(), t.numel());
  TORCH_CHECK(t.scalar_type() == at::kDouble, "values_ok: float32 or float64 tensors only");
  return all_finite(t.data_ptr<double>(), t.numel());
}

template <typename scalar_t>
bool finite_where(const scalar_t* x, const bool* mask, int64_t rows, int64_t width) {
  scalar_t acc = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (!mask[r]) continue;
    for (int64_t c = 0; c < width; ++c) acc += x[r * width + c] - x[r * width + c];
  }
  return acc == 0;
}

}  // namespace

bool values_ok_cpu(const std::vector<at::Tensor>& finite, const std::optional<at::Tensor>& masked,
                   const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& K) {
  for (const at::Tensor& t : finite) {
    if (!tensor_finite(t)) return false;
  }
  if (masked) {
    TORCH_CHECK(mask.has_value(), "values_ok: masked needs a mask");
    const at::Tensor x = masked->contiguous(), m = mask->contiguous();
    TORCH_CHECK(m.scalar_type() == at::kBool && x.dim() == m.dim() + 1 && x.numel() == m.numel() * x.size(-1),
                "values_ok: mask must be bool, shaped like masked without its last dimension");
    const int64_t rows = m.numel(), width = x.size(-1);
    const bool ok = x.scalar_type() == at::kFloat
                        ? finite_where(x.data_ptr<float>(), m.data_ptr<bool>(), rows, width)
                        : finite_where(x.data_ptr<double>(), m.data_ptr<bool>(), rows, width);
    if (!ok) return false;
  }
  if (K) {
    const at::Tensor k = K->contiguous();
    TORCH_CHECK(k.dim() == 3 && k.size(1) == 3 && k.size(2) == 3, "values_ok: K must be [B, 3, 3]");
    bool ok = true;
    AT_DISPATCH_FLOATING_TYPES(k.scalar_type(), "values_ok", [&] {
      const scalar_t* p = k.data_ptr<scalar_t>();
      for (int64_t b = 0; b < k.size(0); ++b) ok = ok && p[9 * b] * p[9 * b + 4] != 0;  // in K's dtype, as Python
    });
    if (!ok) return false;
  }
  return true;
}

}  // namespace fastmotion
