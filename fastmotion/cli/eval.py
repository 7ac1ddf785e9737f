"""`fastmotion eval ...`: lifting against held-out 3D (any method's `Lifter`), tables of results, and
text-to-motion metrics."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ._common import (DATA_HELP, announce, lift_with_progress, lifter_settings, mvlift_options, resolve_device,
                      user_errors)
from .sample import generator_from_options, sampling_config, sampling_options


@click.group("eval")
def evaluate():
    """Evaluate trained models on held-out data."""


@evaluate.command("lift")
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", "model_kind", type=click.Choice(["mlrq", "mdm", "mvlift"]), default="mlrq",
              show_default=True,
              help="mdm: a VideoMDM checkpoint, lifting by guided DDPM sampling (needs the teacher folder); "
                   "mvlift: a `train mvlift` checkpoint, lifting by MVLift's multi-view SDS optimisation, or a "
                   "`train mvlift-mv` checkpoint, MVLift's feed-forward lifting.")
@mvlift_options
@click.option("--teacher", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --model mdm: the teacher folder (default: DATA/teacher).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate at most this many clips.")
@click.option("--stride", type=click.IntRange(min=1), default=1, show_default=True,
              help="Evaluate every STRIDE-th clip of the split (with --limit: a subset spread over a split sorted "
                   "by action, as Bandai-2's).")
@click.option("--data", required=True, type=click.Path(file_okay=False, path_type=Path), help=DATA_HELP)
@click.option("--split", default="test", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the figures to this JSON file.")
@click.option("--free-bones", is_flag=True,
              help="Keep the network's joints as they come out, bones free to change length from frame to frame "
                   "(default: each clip's bones held at one skeleton near an adult's proportions, as `fastmotion "
                   "lift` and `sample` write them; for measuring what that costs or gains).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None)
def eval_lift(checkpoint, model_kind, mvlift_config, iterations, mvlift_mode, teacher, limit, stride, data, split,
              json_path, free_bones, device):
    """Lifting accuracy against the held-out 3D (eval3d/), beside the 3D-free zero-depth baseline.

    N-MPJPE (MPJPE after one scale per clip), PA-MPJPE (per-frame Procrustes with scale), PCK@50/100 mm (after
    Procrustes), acceleration error, root trajectory error; millimetres. Then MVLift's protocol: T_root (truth
    yaw-aligned at the first frame), MPJPE (root-relative), PA-MPJPE-seq (one similarity per clip), J_2D (pixels).

    \b
    Example:
      fastmotion eval lift --checkpoint runs/mlrq/last.pt --data data/synth2d --split test --json eval.json
      fastmotion eval lift --model mdm --checkpoint runs/mdm/last.pt --data data/synth2d --json eval-mdm.json
      fastmotion eval lift --model mvlift --checkpoint runs/mvlift/last.pt --data data/synth2d --limit 20
    """
    from fastmotion.pipelines.lifting import dataset_clips, evaluate_lifting, load_lifter

    with user_errors():
        read = announce(checkpoint)
        options = lifter_settings(model_kind, mvlift_config, iterations, mvlift_mode, data=data, split=split,
                                  teacher=teacher)
        lifter = load_lifter(model_kind, checkpoint, resolve_device(device), **options)
        clips = dataset_clips(data, split, limit, lifter.skeleton, stride)
        left_out = []
        result = lift_with_progress(
            lifter, clips, lambda progress: evaluate_lifting(lifter, data, split, progress=progress, clips=clips,
                                                             rigid=not free_bones, left_out=left_out))
    for line in getattr(lifter, "skipped", []) + left_out:
        click.echo(f"warning: {line}", err=True)
    keys = list(result["model"])
    click.echo(f"{'':>12}" + "".join(f"{k:>10}" for k in keys))
    for name in ("model", "zero_depth"):
        click.echo(f"{name:>12}" + "".join(f"{result[name][k]:>10.1f}" if k in result[name] else f"{'-':>10}"
                                           for k in keys))
    protocol = result["mvlift_protocol"]
    click.echo("MVLift's protocol (world frame after each clip's scale; T_root, MPJPE, PA-MPJPE-seq in mm; J_2D "
               "in px):")
    for name in ("model", "zero_depth"):
        click.echo(f"{name:>12}" + "".join(f"{k:>14} {v:.1f}" for k, v in protocol[name].items()))
    gain = 1 - result["model"]["PA-MPJPE"] / result["zero_depth"]["PA-MPJPE"]
    if result["joints"] != "smpl22":
        click.echo(f"joints scored: {result['joints']} (SMPL-22 truth)")
    click.echo(f"{result['clips']} clips; PA-MPJPE {100 * abs(gain):.0f}% {'below' if gain >= 0 else 'above'} the "
               "zero-depth baseline")
    if json_path:
        json_path.write_text(json.dumps({**result, "pa_mpjpe_gain": gain, "checkpoint": str(checkpoint),
                                         "lifter": lifter.name,
                                         **({"settings": lifter.settings()} if hasattr(lifter, "settings") else {}),
                                         "checkpoint_read": read,
                                         "data": str(data), "split": split, "stride": stride,
                                         "bones": "free" if free_bones else "rigid"}, indent=2) + "\n")


@evaluate.command("table")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", "names", multiple=True,
              help="A row name per result file (default: the lifter's name in the file, with the file's stem where "
                   "two files share it).")
@click.option("--protocol", type=click.Choice(["ours", "mvlift"]), default="ours", show_default=True,
              help="mvlift: MVLift's figures instead (T_root, MPJPE, PA-MPJPE-seq in mm, J_2D in pixels; files "
                   "written before they existed are refused).")
def eval_table(results, names, protocol):
    """One Markdown table from `eval lift --json` files: a zero-depth row for each set of clips (data, split),
    then one row per file, its change against its own clips' zero depth. Lengths in mm; N-MPJPE: MPJPE after
    one scale per clip; PA-MPJPE-12: over the 12 limb joints (shown when every file has it). Files scored on
    different joints (a native-skeleton MVLift lift: the hips' midpoint and the 12 limb joints) get a note saying so.
    s/clip: each lifter's wall time per clip (files written before it was recorded leave the column out).

    \b
    Example:
      fastmotion eval table real/eval-mlrq.json real/eval-videomdm.json --name ML-RQ --name VideoMDM
      fastmotion eval table demo/eval-mvlift.json demo/eval-mlrq-50.json --protocol mvlift
    """
    if names and len(names) != len(results):
        raise click.BadParameter(f"give one --name per result file ({len(results)}), got {len(names)}",
                                 param_hint="--name")
    loaded = []
    for path in results:
        try:
            result = json.loads(path.read_text())
            if protocol == "mvlift":
                result = {**result, **result["mvlift_protocol"]}
            else:
                for row in (result["model"], result["zero_depth"]):  # files written before N-MPJPE had its name
                    row.setdefault("N-MPJPE", row.get("MPJPE"))
            loaded.append(result)
        except (ValueError, KeyError, TypeError) as err:
            raise click.BadParameter(f"{path} is not a file of `fastmotion eval lift --json` ({err!r})",
                                     param_hint="RESULTS") from None
    if not names:  # the lifter's own name, told apart by the file's stem where two files share it
        lifters = [r.get("lifter") or p.stem for r, p in zip(loaded, results)]
        names = [name if lifters.count(name) == 1 else f"{name} ({p.stem})" for name, p in zip(lifters, results)]
    limbs = all("PA-MPJPE-12" in r["model"] for r in loaded)  # files written before it existed lack it
    columns = ("N-MPJPE", "PA-MPJPE", *(("PA-MPJPE-12",) if limbs else ()), "PCK@50", "accel", "root")
    if protocol == "mvlift":
        columns = ("MPJPE", "PA-MPJPE-seq", "T_root", "J_2D")
    if all("seconds_per_clip" in r for r in loaded):  # files written before it existed lack it
        for r in loaded:
            r["model"] = {**r["model"], "s/clip": r["seconds_per_clip"]}
        columns = (*columns, "s/clip")
    rank = columns[1]  # the change against zero depth
    headers = {"PCK@50": "PCK@50 (%)", "J_2D": "J_2D (px)"}
    click.echo("| | clips | " + " | ".join(headers.get(c, c) for c in columns[:2]) + " | vs zero depth | "
               + " | ".join(headers.get(c, c) for c in columns[2:]) + " |")
    click.echo("| --- | ---: |" + " ---: |" * (len(columns) + 1))
    seen = set()
    for i, (path, result) in enumerate(zip(results, loaded)):
        clips = result["clips"]
        where = (result.get("data"), result.get("split"), clips, result.get("stride", 1))
        figures, base = result["model"], result["zero_depth"]
        try:
            if where not in seen:  # each set of clips gets its own zero-depth row
                seen.add(where)
                label = "zero depth" if i == 0 else f"zero depth ({Path(str(where[0])).name}, {where[1]})"
                click.echo(_table_row(label, clips, base, columns, ""))
            # each row against the zero depth of its own clips (a lifter may skip some)
            change = f"{100 * (figures[rank] / base[rank] - 1):+.0f}%"
            click.echo(_table_row(names[i], clips, figures, columns, change))
        except (KeyError, TypeError, ZeroDivisionError) as err:
            raise click.BadParameter(f"{path} is not a file of `fastmotion eval lift --json` ({err!r})",
                                     param_hint="RESULTS") from None
    joint_sets = {r.get("joints", "smpl22") for r in loaded}  # files written before native skeletons: SMPL-22
    if len(joint_sets) > 1:
        limbs_only = " except PA-MPJPE-12 (the 12 limb joints)" if "PA-MPJPE-12" in columns else ""
        click.echo(f"\nThe rows are scored on different joints: their figures do not compare{limbs_only}. "
                   + "; ".join(f"{n}: {r.get('joints', 'smpl22')}" for n, r in zip(names, loaded)))


def _table_row(name, clips, figures, columns, change) -> str:
    values = [(f"{figures[c]:.3g}" if c == "s/clip" else f"{figures[c]:.1f}") if c in figures else "-"
              for c in columns]
    return f"| {name} | {clips} | {values[0]} | {values[1]} | {change} | " + " | ".join(values[2:]) + " |"


@evaluate.command("t2m")
@click.option("--evaluator", "evaluator_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Text-motion evaluator checkpoint (from `fastmotion train evaluator`) ...")
@click.option("--t2m-evaluator", "t2m_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="... or the original T2M evaluator (Guo et al. 2022) from your local copy of its release: the "
                   "folder holding text_mot_match/model/finest.tar and meta/mean.npy, std.npy (needs --glove).")
@click.option("--glove", "glove_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of the T2M release's GloVe files (our_vab_data.npy, our_vab_words.pkl, our_vab_idx.pkl).")
@click.option("--data", required=True, type=click.Path(file_okay=False, path_type=Path), help=DATA_HELP)
@click.option("--split", default="test", show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=20, show_default=True,
              help="Repeated runs; figures are the mean and a 95% confidence interval over them.")
@click.option("--mm-prompts", type=click.IntRange(min=0), default=100, show_default=True,
              help="Prompts for MultiModality (0 skips it).")
@click.option("--mm-samples", type=click.IntRange(min=2), default=30, show_default=True,
              help="Samples per MultiModality prompt.")
@click.option("--no-baselines", is_flag=True, help="Skip the empty-caption and random-other-caption baselines and the first-level-alone row.")
@click.option("--model", "model_kind", type=click.Choice(["momask", "mdm"]), default="momask", show_default=True,
              help="momask: the ML-RQ transformers (--models/--mask/--res); mdm: a VideoMDM (--checkpoint).")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --model mdm: the checkpoint from `fastmotion train mdm`.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write every figure (and every run's values) to this JSON file.")
@click.option("--free-bones", is_flag=True,
              help="Keep the network's joints as they come out, bones free to change length from frame to frame "
                   "(default: each clip's bones held at one skeleton near an adult's proportions, as `fastmotion "
                   "lift` and `sample` write them; for measuring what that costs or gains).")
@sampling_options
def eval_t2m(evaluator_path, t2m_dir, glove_dir, data, split, repeats, mm_prompts, mm_samples, no_baselines,
             model_kind, checkpoint, json_path, free_bones, models, mask_path, res_path, no_res, mlrq_path,
             clip_weights, steps, guidance, res_guidance, temperature, res_temperature, top_k, seed, device):
    """Text-to-motion metrics on held-out clips: R-precision top-1/2/3 (batches of 32), FID, MM-Dist,
    Diversity (300 pairs), MultiModality (100 prompts x 30 samples, 10 pairs) and QM = sqrt(MModality / FID),
    for real motions, the model and two baselines (an empty caption; a random other clip's caption), each
    with a 95% confidence interval over --repeats runs. Motions are generated at the real clips' lengths. With
    a residual transformer, "first level alone" decodes the model's own first-level codes without levels 2..L.

    \b
    Examples:
      fastmotion eval t2m --models runs --evaluator runs/evaluator/last.pt --data data/synth2d --json t2m.json
      fastmotion eval t2m --models runs --t2m-evaluator t2m/ --glove glove/ --data data/humanml2d
      fastmotion eval t2m --model mdm --checkpoint runs/mdm/last.pt --evaluator runs/evaluator/last.pt \
          --data data/synth2d --mm-prompts 0
    """
    from fastmotion.pipelines.t2m import T2MEvalConfig, evaluate_t2m, format_t2m_table, load_evaluator, write_json

    if (evaluator_path is None) == (t2m_dir is None):
        raise click.UsageError("give exactly one of --evaluator or --t2m-evaluator")
    if t2m_dir is not None and glove_dir is None:
        raise click.BadParameter("the original T2M evaluator reads captions with GloVe vectors: give --glove DIR",
                                 param_hint="--glove")
    if model_kind == "mdm":
        from fastmotion.pipelines.videomdm import MDMTextToMotion

        if no_res:
            raise click.UsageError("--no-res is for the ML-RQ transformers (--model momask); an MDM has no levels")

        if checkpoint is None:
            raise click.BadParameter("--model mdm needs the checkpoint of `fastmotion train mdm`",
                                     param_hint="--checkpoint")
        with user_errors():
            announce(checkpoint)
            t2m = MDMTextToMotion(checkpoint, clip_weights, resolve_device(device))
    else:
        t2m = generator_from_options(models, mask_path, res_path, no_res, mlrq_path, clip_weights, device)
    t2m.rigid = not free_bones
    config = T2MEvalConfig(repeats=repeats, mm_prompts=mm_prompts, mm_samples=mm_samples, seed=seed)
    with user_errors():
        if t2m_dir is not None:
            from fastmotion.metrics.t2m_original import OriginalT2MEvaluator

            evaluator = OriginalT2MEvaluator(t2m_dir, glove_dir).to(t2m.device)
        else:
            announce(evaluator_path)
            evaluator = load_evaluator(evaluator_path, t2m.device)
        with click.progressbar(length=repeats, label="eval t2m", file=click.get_text_stream("stderr")) as bar:
            result = evaluate_t2m(t2m, evaluator, data, split, sampling_config(steps, guidance, res_guidance,
                                                                              temperature, res_temperature, top_k),
                                  config, not no_baselines, bar.update)
    click.echo(format_t2m_table(result))
    click.echo(f"{result['clips']} clips of the {split} split, {repeats} run(s); mean ± 95% interval")
    if json_path:
        write_json(json_path, {**result, "evaluator": str(evaluator_path or t2m_dir), "data": str(data),
                               "bones": "free" if free_bones else "rigid",
                               **({"residual_levels": t2m.res is not None} if model_kind == "momask" else {})})
