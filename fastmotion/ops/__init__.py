"""fastmotion's fused ops: one public function per op, each with a pure-PyTorch definition in
`fastmotion.ops.reference` and compiled backends (cpp, triton, cuda) tested against it.

`backends()` tells which backends run here and why the others do not; `set_checks` where the ops check their
inputs' values (NaN/inf, degenerate cameras): by default on CPU tensors only."""
from ._backends import BACKENDS, BackendStatus, backends
from ._validate import set_checks
from .epipolar import sampson_consistency
from .geometry import project_weak_perspective, ray_project, reprojection_loss, sample_view_rotations
from .rvq import rvq_search

__all__ = ["BACKENDS", "BackendStatus", "backends", "project_weak_perspective", "ray_project", "reprojection_loss",
           "rvq_search", "sample_view_rotations", "sampson_consistency", "set_checks"]
