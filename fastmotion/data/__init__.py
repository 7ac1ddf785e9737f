"""Data: HumanML3D-layout folders, the synthetic corpus, 2D rendering with sampled cameras, keypoint and BVH
readers, clip extraction."""
from .build import build_synthetic, render_2d
from .dataset import Keypoints2DDataset

__all__ = ["Keypoints2DDataset", "build_synthetic", "render_2d"]
