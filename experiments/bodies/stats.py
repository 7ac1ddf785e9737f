"""How many generated motions break a valid body, bones as decoded vs held at one skeleton (docs/bodies.md).

Usage: .venv/bin/python experiments/bodies/stats.py MODELS DATA2D   (e.g. demo demo/synth2d after `make demo`)
Every test caption once, seed 0, at the real clip's length; prints JSON."""
import json
import sys

import numpy as np
import torch

from fastmotion.models.t2m import SamplingConfig
from fastmotion.motion.skeleton import SMPL22, SMPL22_REST_OFFSETS
from fastmotion.pipelines.t2m import MotionTextBank, TextToMotion

models, data = sys.argv[1], sys.argv[2]
adult = np.linalg.norm(SMPL22_REST_OFFSETS[1:], axis=-1)

def report(motions):
    drift, off = [], []
    for m in motions:
        j = m.numpy()
        bones = np.linalg.norm(j[:, 1:] - j[:, list(SMPL22.parents[1:])], axis=-1)
        med = np.median(bones, 0)
        drift.append(np.abs(bones / med - 1).max())
        long = [SMPL22.index(f"{s}_{e}") - 1 for e in ("knee", "ankle", "elbow", "wrist") for s in ("left", "right")]
        ratio = med / adult
        ratio = ratio / np.median(ratio[long])
        off.append(max(ratio[long].max() / ratio[long].min() / (1.25 / 0.75), ratio.max() / 5, 0.2 / ratio.min()))
    drift, off = np.array(drift), np.array(off)
    return {"motions": len(motions), "bone length drift over the clip (max, median of clips)": float(np.median(drift)),
            "clips with a bone drifting >5%": float((drift > 0.05).mean()),
            "clips whose long bones span more than 1.25/0.75 of an adult's proportions or another bone beyond 0.2-5x": float((off > 1 + 1e-6).mean()),
            "worst of (long-bone span / (1.25 / 0.75), largest other / 5, 0.2 / smallest other)": float(off.max()), "any NaN": bool(any(not torch.isfinite(m).all() for m in motions))}

bank = MotionTextBank(data, "test")
g = torch.Generator().manual_seed(0)
texts = [c[0] for c in bank.captions]
out = {}
for rigid in (False, True):
    t2m = TextToMotion(f"{models}/mask/last.pt", f"{models}/res/last.pt", rigid=rigid)
    lo, hi = t2m.token_range
    tokens = [min(hi, max(lo, f // t2m.frames_per_token)) for f in bank.frames]
    g = torch.Generator().manual_seed(0)
    out["rigid" if rigid else "free"] = report(t2m.generate(texts, tokens, SamplingConfig(), g))
print(json.dumps(out, indent=1))
