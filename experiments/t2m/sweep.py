"""Sampling settings of the demo's text-to-motion models against the T2M evaluator (docs/t2m-tuning.md).

Usage: .venv/bin/python experiments/t2m/sweep.py MODELS DATA2D REPEATS SETTING...
SETTING: comma-separated SamplingConfig fields, e.g. guidance=4,temperature=1 ; 'nores' in it drops levels 2..L.
Prints one JSON line per setting: R-precision top-3 and FID (mean, 95% half-width) on the test split."""
import json
import sys
import time

import torch

from fastmotion.models.t2m import SamplingConfig
from fastmotion.pipelines.t2m import T2MEvalConfig, TextToMotion, evaluate_t2m, load_evaluator

models, data, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
evaluator = load_evaluator(f"{models}/evaluator/last.pt", "cpu")
for setting in sys.argv[4:]:
    fields = dict(kv.split("=") for kv in setting.split(",") if "=" in kv)
    sampling = SamplingConfig(**{k: type(getattr(SamplingConfig, k))(v) for k, v in fields.items()})
    t2m = TextToMotion(f"{models}/mask/last.pt", None if "nores" in setting else f"{models}/res/last.pt")
    start = time.time()
    torch.manual_seed(0)
    result = evaluate_t2m(t2m, evaluator, data, "test", sampling,
                          T2MEvalConfig(repeats=repeats, mm_prompts=0), baselines=False)
    m = result["metrics"]["model"]
    figures = {k: [round(x, 4) for x in m[k]] for k in ("R-precision top-3", "FID")}
    print(json.dumps({"models": models, "setting": setting, **figures, "seconds": round(time.time() - start)}),
          flush=True)
