"""Fake (meta) kernels for the ops fastmotion._C registers with torch.library, so torch.compile and
FakeTensor tracing know output shapes without running a kernel."""
import torch

_registered = False


def register_fake_kernels() -> None:
    global _registered
    if _registered:
        return
    _registered = True

    @torch.library.register_fake("fastmotion::rvq_search")
    def _rvq_search_fake(x, codebooks, temperature, seed):
        n, d = x.shape
        levels = codebooks.shape[0]
        return x.new_empty((n, levels), dtype=torch.int64), x.new_empty((n, d)), x.new_empty((n, d))
