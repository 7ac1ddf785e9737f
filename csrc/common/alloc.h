// Large CPU outputs on transparent huge pages.
//
// A fresh multi-megabyte tensor costs one page fault per 4 KiB page on its first write; for the geometry ops'
// outputs (e.g. 70 MB of projected views) those faults take longer than the kernel itself. Memory that is
// 2 MiB-aligned and marked MADV_HUGEPAGE faults once per 2 MiB instead (where the kernel allows THP).
#pragma once
#include <sys/mman.h>
#include <torch/types.h>

#include <cstdlib>

namespace fastmotion {

inline at::Tensor empty_cpu_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  constexpr size_t kHuge = size_t(2) << 20;
  int64_t numel = 1;
  for (int64_t s : sizes) numel *= s;
  const size_t bytes = static_cast<size_t>(numel) * c10::elementSize(c10::typeMetaToScalarType(options.dtype()));
  if (bytes < 2 * kHuge) return at::empty(sizes, options);
  const size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
  void* ptr = nullptr;
  if (posix_memalign(&ptr, kHuge, rounded) != 0) return at::empty(sizes, options);
  madvise(ptr, rounded, MADV_HUGEPAGE);  // advice only: without THP this is ordinary memory
  return at::from_blob(ptr, sizes, [](void* p) { std::free(p); }, options);
}

}  // namespace fastmotion
