"""How well the camera pitch from the horizon (fastmotion.motion.horizon) recovers the true pitch of a rendered 2D
dataset's val and test clips (their true cameras: eval3d/cameras/, else cameras/; the estimate never reads them).

    python experiments/real_data/horizon_check.py demo/detector/det2d
"""
import argparse
from pathlib import Path

import numpy as np
import torch

from fastmotion.motion.horizon import MIN_DEPTH_SPREAD, pitch_from_horizon, pitches_from_horizon
from fastmotion.ops.reference import normalized_keypoints


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="a 2D dataset folder with the clips' true camera poses")
    root = parser.parse_args().data
    clips, confidences, true = [], [], []
    for name in (n for split in ("val", "test") for n in (root / f"{split}.txt").read_text().split()):
        posed = root / "eval3d" / "cameras" / f"{name}.npz"
        with np.load(posed if posed.exists() else root / "cameras" / f"{name}.npz") as cam:
            R = cam["R"]
        with np.load(root / "cameras" / f"{name}.npz") as cam:
            K = torch.from_numpy(cam["K"].astype(np.float32))
        k = torch.from_numpy(np.load(root / "keypoints" / f"{name}.npy").astype(np.float32))
        clips.append(normalized_keypoints(k[None], K[None])[0].numpy())
        conf = root / "confidence" / f"{name}.npy"
        confidences.append(np.load(conf) if conf.exists() else None)
        true.append(np.degrees(np.arctan2(-R[2, 1], -R[1, 1])))  # the world's up in the camera: (0, -cos, -sin)
    true = np.array(true)
    pitches, note = pitches_from_horizon(clips, confidences)
    pitches = np.array(pitches)
    fits = np.array([pitch_from_horizon(k, c) for k, c in zip(clips, confidences)])
    own = np.isfinite(fits[:, 0]) & (fits[:, 1] >= MIN_DEPTH_SPREAD)
    print(note)
    print(f"own fits: {own.sum()} of {len(true)} clips, correlation {np.corrcoef(true[own], pitches[own])[0, 1]:.2f}, "
          f"mean error {np.abs(true[own] - pitches[own]).mean():.1f} degrees")
    print(f"all clips: mean error {np.abs(true - pitches).mean():.1f} degrees (a level camera: "
          f"{np.abs(true).mean():.1f}; 15 degrees for every clip: {np.abs(true - 15).mean():.1f})")


if __name__ == "__main__":
    main()
