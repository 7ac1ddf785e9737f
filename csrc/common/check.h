// Error-message helpers for TORCH_CHECK in fastmotion's kernels.
//
// Numbers are formatted with snprintf, never with std::ostream: on some toolchains (seen: torch 2.11 built with
// RHEL's gcc-toolset and this extension built with Ubuntu's gcc 13) streaming an integer into c10::str's
// ostringstream from the extension crashes inside libstdc++'s locale code. Strings and C strings are safe.
#pragma once
#include <torch/types.h>

#include <cstdio>
#include <string>

namespace fastmotion {

inline std::string num_str(int64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(v));
  return buf;
}

inline std::string num_str(double v) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

// "[2, 3, 4]"
inline std::string shape_str(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + num_str(t.size(i));
  return s + "]";
}

inline std::string dtype_str(const at::Tensor& t) { return c10::toString(t.scalar_type()); }

inline std::string device_str(const at::Tensor& t) { return t.device().str(); }

}  // namespace fastmotion
