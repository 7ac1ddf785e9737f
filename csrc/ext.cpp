// The one compiled module, fastmotion._C. Ops are registered with torch.library (namespace `fastmotion`),
// so they are callable as torch.ops.fastmotion.<op> and traceable by torch.compile (fake kernels live in
// fastmotion/ops/_library.py); the pybind11 module reports how it was built.
#include <torch/extension.h>
#include <torch/library.h>

#include "rvq_search/rvq_search.h"

TORCH_LIBRARY(fastmotion, m) {
  m.def("rvq_search(Tensor x, Tensor codebooks, float temperature, int seed) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(fastmotion, CPU, m) { m.impl("rvq_search", &fastmotion::rvq_search_cpu); }

#ifdef FASTMOTION_WITH_CUDA
TORCH_LIBRARY_IMPL(fastmotion, CUDA, m) { m.impl("rvq_search", &fastmotion::rvq_search_cuda); }
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastmotion compiled kernels (C++/OpenMP and, when built with it, CUDA)";
#ifdef FASTMOTION_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  m.def("rvq_search", &fastmotion::rvq_search_cpu, "CPU residual-VQ search (also torch.ops.fastmotion.rvq_search)",
        py::arg("x"), py::arg("codebooks"), py::arg("temperature"), py::arg("seed"));
}
