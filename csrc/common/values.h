// The ops' value checks on CPU tensors, in one pass over the data and no ATen kernel: what makes a tiny call's
// NaN/inf check cost about a microsecond instead of a handful of reductions (fastmotion/ops/_validate.py).
#pragma once
#include <torch/types.h>

#include <optional>
#include <vector>

namespace fastmotion {

// True when every tensor in `finite` holds no NaN/inf, `masked` [..., C] none where `mask` [...] is true, and
// every camera K [B, 3, 3] has fx * fy != 0; false when one does not. Float32/float64 CPU tensors of any strides
// (TORCH_CHECK error otherwise). nullopt when a tensor has no storage to read (a functorch or other wrapper
// tensor): the caller checks another way.
std::optional<bool> values_ok_cpu(const std::vector<at::Tensor>& finite, const std::optional<at::Tensor>& masked,
                                  const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& K);

}  // namespace fastmotion
