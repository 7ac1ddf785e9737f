"""The README's VideoMDM table from the JSON files that `make videomdm` writes.

    python tools/videomdm_table.py demo/videomdm teacher videomdm no-depth-weight no-multistep no-velocity no-ray

Reads DIR/RUN.lift.json (`fastmotion eval lift --json`) and DIR/RUN.t2m.json (`fastmotion eval t2m --json`) for
every RUN and prints one markdown row per run, plus the zero-depth row of the first run's lifting evaluation.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

LABELS = {
    "teacher": "MDM on the teacher's 3D (baseline)",
    "videomdm": "VideoMDM",
    "no-depth-weight": "VideoMDM, no depth weighting",
    "no-multistep": "VideoMDM, no multistep",
    "no-velocity": "VideoMDM, no velocity loss",
    "no-ray": "VideoMDM, no ray projection",
}


def _pm(pair) -> str:
    mean, half = pair
    return f"{mean:.3f} ± {half:.3f}"


def table(folder: Path, runs: list[str]) -> str:
    rows = ["| run | PA-MPJPE (mm) | MPJPE (mm) | PCK@100 | FID | R-precision top-3 | MM-Dist |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    zero = None
    for run in runs:
        lift = json.loads((folder / f"{run}.lift.json").read_text())
        t2m = json.loads((folder / f"{run}.t2m.json").read_text())["metrics"]["model"]
        m = lift["model"]
        zero = zero or lift["zero_depth"]
        rows.append(f"| {LABELS.get(run, run)} | {m['PA-MPJPE']:.1f} | {m['MPJPE']:.1f} | {m['PCK@100']:.1f} | "
                    f"{_pm(t2m['FID'])} | {_pm(t2m['R-precision top-3'])} | {t2m['MM-Dist'][0]:.3f} |")
    rows.append(f"| zero depth (no model) | {zero['PA-MPJPE']:.1f} | {zero['MPJPE']:.1f} | {zero['PCK@100']:.1f} | "
                "| | |")
    return "\n".join(rows)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    print(table(Path(sys.argv[1]), sys.argv[2:]))
