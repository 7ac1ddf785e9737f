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


@pytest.fixture(scope="session")
def tiny_mlrq(tmp_path_factory):
    """A 40-clip 2D corpus (root/d2) with a briefly trained prior and ML-RQ (root/mlrq/last.pt), through the CLI:
    enough for the runs built on ML-RQ codes and lifts, not for quality."""
    from fastmotion.data.build import build_synthetic, render_2d
    from helpers import fastmotion_cli

    root = tmp_path_factory.mktemp("tiny")
    build_synthetic(root / "synth", num=40, seed=0)
    render_2d(root / "synth", root / "d2", views=1, seed=0)
    fast = ["--batch-size", 16, "--ckpt-every", 1000, "--eval-every", 1000]
    fastmotion_cli("train", "prior", "--data", root / "d2", "--out", root / "prior", "--steps", 10, *fast)
    fastmotion_cli("train", "mlrq", "--data", root / "d2", "--prior", root / "prior" / "last.pt", "--out",
                   root / "mlrq", "--steps", 10, *fast)
    return root


@pytest.fixture(scope="module")
def data2d(tmp_path_factory):
    """A 40-clip synthetic corpus rendered to one view per clip (root/d2)."""
    from fastmotion.data.build import build_synthetic, render_2d

    root = tmp_path_factory.mktemp("free3d")
    build_synthetic(root / "synth", num=40, seed=0)
    render_2d(root / "synth", root / "d2", views=1, seed=0)
    return root / "d2"
