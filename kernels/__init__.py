"""Triton kernels behind fastmotion.ops (installed as fastmotion.kernels).

The entry points here have the names and signatures of the compiled ops torch.ops.fastmotion.<name>, so that
fastmotion.ops calls either the same way. They take the canonical layouts the public ops pass (contiguous, one
dtype and device) and check them, metadata only (fastmotion.ops._validate); values (NaN, a degenerate camera)
are the public ops' checks.

Importing this package needs triton; fastmotion.ops imports it lazily and reports why when it cannot.
Run on CPU tensors with TRITON_INTERPRET=1 (slow: tests use small shapes).
"""
from . import epipolar, geometry
from .epipolar import sampson_terms, sampson_terms_backward
from .geometry import (project_weak_perspective, project_weak_perspective_backward, ray_project,
                       ray_project_backward, reprojection_terms, reprojection_terms_backward)
from .rvq import rvq_search_triton

rvq_search = rvq_search_triton  # the compiled op's name

__all__ = ["epipolar", "geometry", "project_weak_perspective", "project_weak_perspective_backward", "ray_project",
           "ray_project_backward", "reprojection_terms", "reprojection_terms_backward", "rvq_search",
           "rvq_search_triton", "sampson_terms", "sampson_terms_backward"]
