"""fastmotion's fused ops: one public function per op, each with a pure-PyTorch definition in
`fastmotion.ops.reference` and compiled backends (cpp, triton, cuda) tested against it.

`backends()` tells which backends run here and why the others do not."""
from ._backends import BACKENDS, BackendStatus, backends
from .rvq import rvq_search

__all__ = ["BACKENDS", "BackendStatus", "backends", "rvq_search"]
