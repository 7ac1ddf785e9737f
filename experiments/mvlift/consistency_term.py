"""Stage 2 from zero with an oracle denoiser (it returns the true views), under the paper's epipolar term (point-line
distances both ways) and under the Sampson error that fastmotion uses: the largest distance of the optimised
views from the true ones (normalised 2D units). docs/methods/mvlift.md, "Deviations".

    python experiments/mvlift/consistency_term.py
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
import fastmotion.pipelines.mvlift as stage2  # noqa: E402
from fastmotion.losses.free3d import masked_mean  # noqa: E402
from fastmotion.motion import multiview  # noqa: E402
from test_mvlift import Oracle, _ring_scene  # noqa: E402


def point_line_both_ways(views, F, pairs, mask):
    total = views.new_zeros(())
    for i, j in pairs:
        for a, b in ((i, j), (j, i)):
            lines = multiview.epipolar_lines(views[a], F[a, b].to(views.dtype))
            total = total + masked_mean(multiview.point_line_distance(views[b], lines), mask)
    return total / (2 * len(pairs))


def main():
    _, images, _ = _ring_scene()
    config = stage2.Stage2Config(iterations=400, lr=2e-2, refine_iterations=1)
    sampson = stage2.epipolar_consistency
    for name, term in (("paper: point-line distances", point_line_both_ways), ("Sampson error", sampson)):
        stage2.epipolar_consistency = term
        views = stage2.optimise_views(Oracle(images[1:].float()), images[0].float(),
                                      torch.ones(1, images.shape[2], dtype=torch.bool), config,
                                      torch.Generator().manual_seed(0))
        print(f"{name:>30}: largest distance from the true views {float((views - images).abs().max()):.4f}")
    stage2.epipolar_consistency = sampson


if __name__ == "__main__":
    main()
