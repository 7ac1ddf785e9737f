// The one compiled module, fastmotion._C. Ops are registered with torch.library (namespace `fastmotion`),
// so they are callable as torch.ops.fastmotion.<op> and traceable by torch.compile (fake kernels live in
// fastmotion/ops/_library.py); the pybind11 module reports how it was built.
#include <torch/extension.h>
#include <torch/library.h>

#include "common/values.h"
#include "epipolar/sampson.h"
#include "geometry/geometry.h"
#include "rvq_search/rvq_search.h"

TORCH_LIBRARY(fastmotion, m) {
  m.def("rvq_search(Tensor x, Tensor codebooks, float temperature, int seed) -> (Tensor, Tensor, Tensor)");
  m.def("project_weak_perspective(Tensor points, Tensor rotations, Tensor scale, Tensor offset) -> Tensor");
  m.def("project_weak_perspective_backward(Tensor grad_out, Tensor points, Tensor rotations, Tensor scale) -> "
        "(Tensor, Tensor, Tensor, Tensor)");
  m.def("ray_project(Tensor points, Tensor keypoints, Tensor K, Tensor R, Tensor t) -> Tensor");
  m.def("ray_project_backward(Tensor grad_out, Tensor keypoints, Tensor K, Tensor R) -> Tensor");
  m.def("reprojection_terms(Tensor points, Tensor keypoints, Tensor K, Tensor R, Tensor t, Tensor? weights, "
        "Tensor? mask, bool depth_weighted, float min_depth, bool velocity) -> (Tensor, Tensor)");
  m.def("reprojection_terms_backward(Tensor grad_terms, Tensor points, Tensor keypoints, Tensor K, Tensor R, "
        "Tensor t, Tensor? weights, Tensor? mask, bool depth_weighted, float min_depth, bool velocity, "
        "bool detach_depth) -> Tensor");
  m.def("sampson_terms(Tensor views, Tensor F, int[] pairs, Tensor? mask) -> Tensor");
  m.def("sampson_terms_backward(Tensor grad_terms, Tensor views, Tensor F, int[] pairs, Tensor? mask) -> Tensor");
}

TORCH_LIBRARY_IMPL(fastmotion, CPU, m) {
  m.impl("rvq_search", &fastmotion::rvq_search_cpu);
  m.impl("project_weak_perspective", &fastmotion::project_weak_perspective_cpu);
  m.impl("project_weak_perspective_backward", &fastmotion::project_weak_perspective_backward_cpu);
  m.impl("ray_project", &fastmotion::ray_project_cpu);
  m.impl("ray_project_backward", &fastmotion::ray_project_backward_cpu);
  m.impl("reprojection_terms", &fastmotion::reprojection_terms_cpu);
  m.impl("reprojection_terms_backward", &fastmotion::reprojection_terms_backward_cpu);
  m.impl("sampson_terms", &fastmotion::sampson_terms_cpu);
  m.impl("sampson_terms_backward", &fastmotion::sampson_terms_backward_cpu);
}

#ifdef FASTMOTION_WITH_CUDA
TORCH_LIBRARY_IMPL(fastmotion, CUDA, m) {
  m.impl("rvq_search", &fastmotion::rvq_search_cuda);
  m.impl("project_weak_perspective", &fastmotion::project_weak_perspective_cuda);
  m.impl("project_weak_perspective_backward", &fastmotion::project_weak_perspective_backward_cuda);
  m.impl("ray_project", &fastmotion::ray_project_cuda);
  m.impl("ray_project_backward", &fastmotion::ray_project_backward_cuda);
  m.impl("reprojection_terms", &fastmotion::reprojection_terms_cuda);
  m.impl("reprojection_terms_backward", &fastmotion::reprojection_terms_backward_cuda);
  m.impl("sampson_terms", &fastmotion::sampson_terms_cuda);
  m.impl("sampson_terms_backward", &fastmotion::sampson_terms_backward_cuda);
}
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastmotion compiled kernels (C++/OpenMP and, when built with it, CUDA)";
#ifdef FASTMOTION_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  // A plain function, not a torch op: it is never traced (value checks are off under torch.compile), and pybind's
  // call costs about a microsecond where the op dispatcher's costs several.
  m.def("values_ok", &fastmotion::values_ok_cpu, "fastmotion/ops/_validate.py's value checks on CPU tensors",
        pybind11::arg("finite"), pybind11::arg("masked"), pybind11::arg("mask"), pybind11::arg("K"),
        pybind11::call_guard<pybind11::gil_scoped_release>());
}
