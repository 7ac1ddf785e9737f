"""Test configuration: Triton kernels run through the interpreter when there is no GPU (set before any
triton import), and shared helpers for comparing fused backends with the reference."""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def clip_file(tmp_path_factory):
    """A randomly initialised CLIP ViT-B/32 (OpenAI's architecture: QuickGELU) saved as a state dict in fp16,
    as a local ViT-B-32.pt would be; and the model itself."""
    open_clip = pytest.importorskip("open_clip")
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32-quickgelu")
    path = tmp_path_factory.mktemp("clip") / "ViT-B-32.pt"
    torch.save({k: v.half() for k, v in model.state_dict().items()}, path)
    return path, model
