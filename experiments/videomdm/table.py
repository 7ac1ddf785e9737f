"""The VideoMDM tables of docs/methods/videomdm.md from the JSON files that `make videomdm` writes.

    python experiments/videomdm/table.py demo/videomdm teacher videomdm paper no-depth-weight no-multistep no-velocity no-ray
    python experiments/videomdm/table.py --seeds demo/videomdm demo/videomdm-seed1 demo/videomdm-seed2 -- teacher videomdm

Reads DIR/RUN.lift.json (`fastmotion eval lift --json`) and DIR/RUN.t2m.json (`fastmotion eval t2m --json`) for
every RUN and prints one markdown row per run, plus the zero-depth row of the first run's lifting evaluation.
With --seeds, one folder per training seed: per run, PA-MPJPE and FID of every seed and their means.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

LABELS = {
    "plain-mdm": "MDM on the teacher's 3D (baseline)", "teacher": "MDM on the teacher's 3D (baseline)",
    "videomdm": "VideoMDM (anchored)",
    "paper": "VideoMDM, the paper's objective",
    "no-depth-weight": "anchored, no depth weighting",
    "no-multistep": "anchored, no multistep",
    "no-velocity": "anchored, no velocity loss",
    "no-ray": "anchored, no ray projection",
}


def _pm(pair) -> str:
    mean, half = pair
    return f"{mean:.3f} ± {half:.3f}"


def table(folder: Path, runs: list[str]) -> str:
    rows = ["| run | PA-MPJPE (mm) | N-MPJPE (mm) | PCK@100 | FID | R-precision top-3 | MM-Dist |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    zero = None
    for run in runs:
        lift = _read(folder / f"{run}.lift.json")
        t2m = _read(folder / f"{run}.t2m.json")["metrics"]["model"]
        m = lift["model"]
        zero = zero or lift["zero_depth"]
        n_mpjpe = m.get("N-MPJPE", m.get("MPJPE"))  # files written before N-MPJPE had its name
        rows.append(f"| {LABELS.get(run, run)} | {m['PA-MPJPE']:.1f} | {n_mpjpe:.1f} | {m['PCK@100']:.1f} | "
                    f"{_pm(t2m['FID'])} | {_pm(t2m['R-precision top-3'])} | {t2m['MM-Dist'][0]:.3f} |")
    zero_n = zero.get("N-MPJPE", zero.get("MPJPE"))
    rows.append(f"| zero depth (no model) | {zero['PA-MPJPE']:.1f} | {zero_n:.1f} | {zero['PCK@100']:.1f} | | | |")
    return "\n".join(rows)


def _read(path: Path) -> dict:
    if not path.is_file():
        sys.exit(f"{path}: missing; `make videomdm` (or videomdm-ablations, videomdm-seeds) writes it")
    return json.loads(path.read_text())


def _metrics(folder: Path, run: str) -> tuple[float, float]:
    lift = _read(folder / f"{run}.lift.json")["model"]["PA-MPJPE"]
    return lift, _read(folder / f"{run}.t2m.json")["metrics"]["model"]["FID"][0]


def seed_table(folders: list[Path], runs: list[str]) -> str:
    seeds = " / ".join(str(i) for i in range(len(folders)))
    rows = [f"| run | PA-MPJPE (mm), seeds {seeds} | mean | FID, seeds {seeds} | mean |",
            "| --- | ---: | ---: | ---: | ---: |"]
    for run in runs:
        lift, fid = zip(*(_metrics(f, run) for f in folders))
        rows.append(f"| {LABELS.get(run, run)} | {' / '.join(f'{v:.1f}' for v in lift)} "
                    f"| {sum(lift) / len(lift):.1f} | {' / '.join(f'{v:.3f}' for v in fid)} "
                    f"| {sum(fid) / len(fid):.3f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--seeds"] and "--" in args[2:]:
        cut = args.index("--")
        print(seed_table([Path(a) for a in args[1:cut]], args[cut + 1:]))
    elif len(args) >= 2 and args[0] != "--seeds":
        print(table(Path(args[0]), args[1:]))
    else:
        sys.exit(__doc__)
