// fastmotion._C.values_ok: see values.h. The finite test accumulates x - x, which is 0 for every finite x and NaN
// for a NaN or an inf, so the loop vectorises (no branch) and one comparison decides at the end; large tensors
// are split over torch's threads.
#include <ATen/Parallel.h>

#include "common/values.h"

namespace fastmotion {
namespace {

constexpr int64_t kGrain = int64_t(1) << 16;  // elements per thread: below this, one thread scans

template <typename scalar_t>
bool all_finite(const scalar_t* x, int64_t n) {
  const scalar_t total = at::parallel_reduce(
      int64_t(0), n, kGrain, scalar_t(0),
      [&](int64_t begin, int64_t end, scalar_t acc) {
#pragma omp simd reduction(+ : acc)
        for (int64_t i = begin; i < end; ++i) acc += x[i] - x[i];
        return acc;
      },
      [](scalar_t a, scalar_t b) { return a + b; });
  return total == 0;
}

bool readable(const at::Tensor& t) { return t.has_storage() && (t.numel() == 0 || t.const_data_ptr() != nullptr); }

bool tensor_finite(const at::Tensor& t_in) {
  TORCH_CHECK(t_in.device().is_cpu(), "values_ok: CPU tensors only");
  const at::Tensor t = t_in.contiguous();
  if (t.scalar_type() == at::kFloat) return all_finite(t.const_data_ptr<float>(), t.numel());
  TORCH_CHECK(t.scalar_type() == at::kDouble, "values_ok: float32 or float64 tensors only");
  return all_finite(t.const_data_ptr<double>(), t.numel());
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

std::optional<bool> values_ok_cpu(const std::vector<at::Tensor>& finite, const std::optional<at::Tensor>& masked,
                                  const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& K) {
  for (const at::Tensor& t : finite) {
    if (!readable(t)) return std::nullopt;
  }
  for (const auto* t : {&masked, &mask, &K}) {
    if (t->has_value() && !readable(**t)) return std::nullopt;
  }
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
                        ? finite_where(x.const_data_ptr<float>(), m.const_data_ptr<bool>(), rows, width)
                        : finite_where(x.const_data_ptr<double>(), m.const_data_ptr<bool>(), rows, width);
    if (!ok) return false;
  }
  if (K) {
    const at::Tensor k = K->contiguous();
    TORCH_CHECK(k.dim() == 3 && k.size(1) == 3 && k.size(2) == 3, "values_ok: K must be [B, 3, 3]");
    bool ok = true;
    AT_DISPATCH_FLOATING_TYPES(k.scalar_type(), "values_ok", [&] {
      const scalar_t* p = k.const_data_ptr<scalar_t>();
      for (int64_t b = 0; b < k.size(0); ++b) ok = ok && p[9 * b] * p[9 * b + 4] != 0;  // in K's dtype, as Python
    });
    if (!ok) return false;
  }
  return true;
}

}  // namespace fastmotion
