"""What the ML-RQ's own codes of the test clips score with the T2M evaluator: the ceiling a text-to-motion model on
those codes can reach (docs/t2m-tuning.md).

Usage: .venv/bin/python experiments/t2m/ceiling.py MODELS DATA2D [REPEATS]   (e.g. demo demo/synth2d)
Rows: the held-out 3D ("real"), the test clips' 2D encoded and decoded by the ML-RQ with every level and with the
first level alone (bones held, as `sample` writes), the same codes paired with a random other clip's caption.
Prints JSON: each metric's mean and 95% half-width over REPEATS caption draws."""
import json
import sys

import torch

from fastmotion.metrics import generation as gm
from fastmotion.motion.body import rigid_body
from fastmotion.pipelines.t2m import (MotionTextBank, TextToMotion, _embed, embed_texts, load_evaluator,
                                      other_captions, pad_features)
from fastmotion.train.t2m import CodeBank

models, data = sys.argv[1], sys.argv[2]
repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 5
t2m = TextToMotion(f"{models}/mask/last.pt", None, f"{models}/mlrq/last.pt")
evaluator = load_evaluator(f"{models}/evaluator/last.pt", "cpu")
bank = MotionTextBank(data, "test")
codes = CodeBank(data, f"{models}/mlrq/last.pt", "test")
assert codes.names == bank.names, "the code bank and the held-out 3D list different clips"
lengths = torch.tensor([min(len(c), f // t2m.frames_per_token) for c, f in zip(codes.codes, bank.frames)])


def decoded(levels):
    out = []
    for c, n in zip(codes.codes, lengths):
        c = c[:n].clone()
        c[:, levels:] = -1
        out += [m for m in t2m.decode(c[None], n[None])]
    return [rigid_body(m) for m in out]


torch.set_grad_enabled(False)
feats, mask = pad_features(bank.features)
real = evaluator.embed_motion(feats, mask)
rows = {"real": real, "ML-RQ codes, all levels": _embed(evaluator, decoded(codes.num_levels), "cpu"),
        "ML-RQ codes, first level": _embed(evaluator, decoded(1), "cpu")}
values = {}
for r in range(repeats):
    g = torch.Generator().manual_seed(r)
    texts = [c[int(torch.randint(len(c), (), generator=g))] for c in bank.captions]
    text_emb = embed_texts(evaluator, texts, bank.tokens)
    other_emb = embed_texts(evaluator, other_captions(texts, g), bank.tokens)
    for name, emb in rows.items():
        for tag, t in (("", text_emb), (", random other caption", other_emb)):
            top = gm.r_precision(t, emb, 32, 3, g)
            row = values.setdefault(name + tag, {})
            row.setdefault("R-precision top-3", []).append(top[2])
            row.setdefault("FID", []).append(gm.fid(real, emb))
            row.setdefault("MM-Dist", []).append(gm.mm_dist(t, emb))
print(json.dumps({row: {k: [round(x, 4) for x in gm.confidence_interval(v)] for k, v in m.items()}
                  for row, m in values.items()}, indent=1))
