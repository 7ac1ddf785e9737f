"""Click commands for text-to-motion: `fastmotion train evaluator|mask|res`, `fastmotion sample`,
`fastmotion eval t2m`."""
from __future__ import annotations

import re
from pathlib import Path

import click

from .commands import DATA_HELP, _announce, _device, _train, evaluate, train, training_options

STEPS = {"evaluator": {"small": 600, "full": 50_000}, "mask": {"small": 1500, "full": 100_000},
         "res": {"small": 800, "full": 100_000}}
MLRQ_HELP = "ML-RQ checkpoint (from `fastmotion train mlrq`) whose codes the transformer learns; codes are extracted " \
            "once and cached in codes/ beside it."
CLIP_HELP = "Local CLIP ViT-B/32 weights (OpenAI's ViT-B-32.pt, JIT archive or state dict) for frozen CLIP text " \
            "features. Without it a small text encoder on CLIP's tokenizer trains with the model. Nothing is downloaded."


def _t2m_train(kind):
    @training_options(crop_length=False)
    @click.option("--mlrq", "mlrq_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help=MLRQ_HELP)
    @click.option("--clip-weights", type=click.Path(dir_okay=False, path_type=Path), default=None, help=CLIP_HELP)
    def command(data, out, preset, steps, batch_size, lr, seed, resume, ckpt_every, eval_every, device, mlrq_path,
                clip_weights):
        from fastmotion.models.t2m import T2MConfig

        from .t2m import t2m_run

        cfg = T2MConfig.preset(preset)
        _train(lambda b, _, dev: t2m_run(kind, data, mlrq_path, cfg, b, dev, clip_weights), preset, steps,
               STEPS[kind], batch_size, None, lr, seed, resume, out, device, ckpt_every, eval_every)

    return command


train.command("mask", help="""Train the masked transformer on the ML-RQ's first-level codes, conditioned on text
(cosine masking schedule, condition dropped 10% of the time for classifier-free guidance; a length head learns
each caption's motion length).

\b
Example:
  fastmotion train mask --data data/synth2d --mlrq runs/mlrq/last.pt --out runs/mask --config small""")(
    _t2m_train("mask"))

train.command("res", help="""Train the residual transformer: ML-RQ levels 2..L from the levels below and the text.

\b
Example:
  fastmotion train res --data data/synth2d --mlrq runs/mlrq/last.pt --out runs/res --config small""")(
    _t2m_train("res"))


@train.command("evaluator")
@training_options(crop_length=False)
def train_evaluator(data, out, preset, steps, batch_size, lr, seed, resume, ckpt_every, eval_every, device):
    """Train the text-motion evaluator (contrastive motion and text encoders) behind `fastmotion eval t2m`.

    It trains on the held-out 3D (eval3d/) of the train split, which no generator ever reads; its checkpoint
    must never be used to train a generator.

    \b
    Example:
      fastmotion train evaluator --data data/synth2d --out runs/evaluator --config small
    """
    from fastmotion.metrics.evaluator import EvaluatorConfig

    from .t2m import evaluator_run

    cfg = EvaluatorConfig.preset(preset)
    _train(lambda b, _, dev: evaluator_run(data, cfg, b, dev), preset, steps, STEPS["evaluator"], batch_size, None,
           lr, seed, resume, out, device, ckpt_every, eval_every)


def _sampling_options(command):
    options = [
        click.option("--models", type=click.Path(file_okay=False, path_type=Path), default=Path("demo"),
                     show_default=True, help="Folder holding mask/last.pt and res/last.pt (what `make demo` trains)."),
        click.option("--mask", "mask_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Masked transformer checkpoint (default: MODELS/mask/last.pt)."),
        click.option("--res", "res_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Residual transformer checkpoint (default: MODELS/res/last.pt when present; without one "
                          "only the first level is generated)."),
        click.option("--mlrq", "mlrq_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="ML-RQ checkpoint (default: the one the masked transformer was trained on)."),
        click.option("--clip-weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="CLIP ViT-B/32 weights, for transformers trained on CLIP features."),
        click.option("--steps", type=click.IntRange(min=1), default=10, show_default=True,
                     help="Iterative masked-decoding steps."),
        click.option("--guidance", type=click.FloatRange(min=0), default=4.0, show_default=True,
                     help="Classifier-free guidance scale of the masked transformer (1 = none)."),
        click.option("--res-guidance", type=click.FloatRange(min=0), default=5.0, show_default=True,
                     help="Classifier-free guidance scale of the residual transformer."),
        click.option("--temperature", type=click.FloatRange(min=0), default=1.0, show_default=True,
                     help="Sampling temperature (0 = greedy)."),
        click.option("--top-k", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Codes kept before sampling (0 = the top 10% of the codebook)."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _generator(models, mask_path, res_path, mlrq_path, clip_weights, device):
    from .loop import TrainingError
    from .t2m import TextToMotion

    mask_path = mask_path or models / "mask" / "last.pt"
    if res_path is None and (models / "res" / "last.pt").exists():
        res_path = models / "res" / "last.pt"
    if not mask_path.exists():
        raise click.BadParameter(f"{mask_path}: no such checkpoint (train one with `fastmotion train mask`, or run "
                                 "`make demo`)", param_hint="--mask/--models")
    try:
        for path in (mask_path, res_path):
            if path is not None:
                _announce(path)
        return TextToMotion(mask_path, res_path, mlrq_path, clip_weights, _device(device))
    except (TrainingError, FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None


def _sampling(steps, guidance, res_guidance, temperature, top_k):
    from fastmotion.models.t2m import SamplingConfig

    return SamplingConfig(steps=steps, guidance=guidance, res_guidance=res_guidance, temperature=temperature,
                          top_k=top_k)


def parse_length(text: str | None) -> int | None:
    """'4s' / '4.5s' -> frames at 20 fps; '80' -> 80 frames; None -> None (predicted)."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|seconds|f|frames)?\s*", text)
    if not m:
        raise click.BadParameter(f"{text!r}: give seconds ('4s') or frames ('80')", param_hint="--length")
    value, unit = float(m.group(1)), m.group(2) or "f"
    if unit.startswith("s"):
        return int(round(value * 20))
    if value != int(value):
        raise click.BadParameter(f"{text!r}: frames must be a whole number", param_hint="--length")
    return int(value)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:48] or "prompt"


@click.command("sample")
@click.option("--text", "texts", multiple=True, help="A prompt (repeatable).")
@click.option("--texts", "texts_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A text file of prompts, one per line, generated in one batched call.")
@click.option("--length", default=None, help="Motion length: seconds ('4s') or frames ('80') at 20 fps. Default: "
                                             "predicted from the text.")
@click.option("--num", type=click.IntRange(min=1), default=1, show_default=True, help="Samples per prompt.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for PROMPT_k.npy (3D joints [T, 22, 3], metres, y up), .bvh and .gif.")
@click.option("--no-bvh", is_flag=True, help="Skip the .bvh files.")
@click.option("--no-gif", is_flag=True, help="Skip the animations.")
@click.option("--model", "model_kind", type=click.Choice(["momask", "mdm"]), default="momask", show_default=True,
              help="momask: the ML-RQ transformers (--models/--mask/--res); mdm: a VideoMDM (--checkpoint), DDPM "
                   "sampling with classifier-free guidance 2.5.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --model mdm: the checkpoint from `fastmotion train mdm`.")
@_sampling_options
def sample(texts, texts_file, length, num, out, no_bvh, no_gif, model_kind, checkpoint, models, mask_path, res_path,
           mlrq_path, clip_weights, steps, guidance, res_guidance, temperature, top_k, seed, device):
    """Generate 3D motions from text: iterative masked decoding of the first code level (classifier-free
    guidance, temperature, top-k), the residual levels, then the ML-RQ decoder.

    Motions are learned from 2D alone and have no metric scale; files are scaled to a 1.7 m person, y up,
    feet on the floor.

    \b
    Examples:
      fastmotion sample --text "a person jumps forward" --length 4s --num 3 --seed 0 --out samples
      fastmotion sample --texts prompts.txt --out samples --models runs
      fastmotion sample --model mdm --checkpoint runs/mdm/last.pt --text "a person waves" --length 3s --out s
    """
    import numpy as np
    import torch

    from fastmotion.models.text import PromptError, Tokenizer
    from fastmotion.motion.free3d import upright

    prompts = list(texts)
    if texts_file is not None:
        if not texts_file.exists():
            raise click.BadParameter(f"{texts_file}: no such file", param_hint="--texts")
        prompts += [line.strip() for line in texts_file.read_text().splitlines() if line.strip()]
    if not prompts:
        raise click.UsageError("give a prompt with --text or a file of prompts with --texts")
    frames = parse_length(length)
    try:
        Tokenizer().check(prompts)
    except PromptError as err:
        raise click.BadParameter(str(err), param_hint="--text") from None
    generator = torch.Generator().manual_seed(seed)
    all_prompts = [p for p in prompts for _ in range(num)]
    if model_kind == "mdm":
        from .videomdm_commands import sample_with_mdm

        motions = sample_with_mdm(checkpoint, all_prompts, frames, generator, clip_weights, _device(device))
    else:
        t2m = _generator(models, mask_path, res_path, mlrq_path, clip_weights, device)
        try:
            tokens = None if frames is None else [t2m.tokens_for(frames)] * len(all_prompts)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--length") from None
        motions = [upright(m) for m in t2m.generate(all_prompts, tokens, _sampling(steps, guidance, res_guidance,
                                                                                    temperature, top_k), generator)]
    out.mkdir(parents=True, exist_ok=True)
    from fastmotion.data.bvh import write_bvh
    from fastmotion.render import render_frames, save_animation

    with click.progressbar(list(zip(all_prompts, motions)), label="writing", file=click.get_text_stream("stderr")) as bar:
        for i, (prompt, motion) in enumerate(bar):
            stem = out / f"{_slug(prompt)}_{i % num}"
            joints = motion.numpy().astype(np.float32)
            np.save(stem.with_suffix(".npy"), joints)
            if not no_bvh:
                write_bvh(stem.with_suffix(".bvh"), joints)
            if not no_gif:
                save_animation(render_frames([joints], [prompt]), stem.with_suffix(".gif"))
    click.echo(f"wrote {len(motions)} motion(s) ({', '.join(f'{len(m)}' for m in motions[:8])}"
               f"{'...' if len(motions) > 8 else ''} frames) into {out}")


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
@click.option("--no-baselines", is_flag=True, help="Skip the empty-caption and random-other-caption baselines.")
@click.option("--model", "model_kind", type=click.Choice(["momask", "mdm"]), default="momask", show_default=True,
              help="momask: the ML-RQ transformers (--models/--mask/--res); mdm: a VideoMDM (--checkpoint).")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --model mdm: the checkpoint from `fastmotion train mdm`.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write every figure (and every run's values) to this JSON file.")
@_sampling_options
def eval_t2m(evaluator_path, t2m_dir, glove_dir, data, split, repeats, mm_prompts, mm_samples, no_baselines,
             model_kind, checkpoint, json_path, models,
             mask_path, res_path, mlrq_path, clip_weights, steps, guidance, res_guidance, temperature, top_k, seed,
             device):
    """Text-to-motion metrics on held-out clips: R-precision top-1/2/3 (batches of 32), FID, MM-Dist,
    Diversity (300 pairs), MultiModality (100 prompts x 30 samples, 10 pairs) and QM = sqrt(MModality / FID),
    for real motions, the model and two baselines (an empty caption; a random other clip's caption), each
    with a 95% confidence interval over --repeats runs. Motions are generated at the real clips' lengths.

    \b
    Examples:
      fastmotion eval t2m --models runs --evaluator runs/evaluator/last.pt --data data/synth2d --json t2m.json
      fastmotion eval t2m --models runs --t2m-evaluator t2m/ --glove glove/ --data data/humanml2d
      fastmotion eval t2m --model mdm --checkpoint runs/mdm/last.pt --evaluator runs/evaluator/last.pt \
          --data data/synth2d --mm-prompts 0
    """
    from .loop import TrainingError
    from .t2m import T2MEvalConfig, evaluate_t2m, format_t2m_table, load_evaluator, write_json

    if (evaluator_path is None) == (t2m_dir is None):
        raise click.UsageError("give exactly one of --evaluator or --t2m-evaluator")
    if t2m_dir is not None and glove_dir is None:
        raise click.BadParameter("the original T2M evaluator reads captions with GloVe vectors: give --glove DIR",
                                 param_hint="--glove")
    if model_kind == "mdm":
        from .videomdm import MDMTextToMotion

        if checkpoint is None:
            raise click.BadParameter("--model mdm needs the checkpoint of `fastmotion train mdm`",
                                     param_hint="--checkpoint")
        try:
            _announce(checkpoint)
            t2m = MDMTextToMotion(checkpoint, clip_weights, _device(device))
        except TrainingError as err:
            raise click.ClickException(str(err)) from None
    else:
        t2m = _generator(models, mask_path, res_path, mlrq_path, clip_weights, device)
    config = T2MEvalConfig(repeats=repeats, mm_prompts=mm_prompts, mm_samples=mm_samples, seed=seed)
    try:
        if t2m_dir is not None:
            from fastmotion.metrics.t2m_original import OriginalT2MEvaluator

            try:
                evaluator = OriginalT2MEvaluator(t2m_dir, glove_dir).to(t2m.device)
            except (FileNotFoundError, ValueError) as err:
                raise click.ClickException(str(err)) from None
        else:
            _announce(evaluator_path)
            evaluator = load_evaluator(evaluator_path, t2m.device)
        with click.progressbar(length=repeats, label="eval t2m", file=click.get_text_stream("stderr")) as bar:
            result = evaluate_t2m(t2m, evaluator, data, split, _sampling(steps, guidance, res_guidance, temperature,
                                                                         top_k), config, not no_baselines, bar.update)
    except TrainingError as err:
        raise click.ClickException(str(err)) from None
    click.echo(format_t2m_table(result))
    click.echo(f"{result['clips']} clips of the {split} split, {repeats} run(s); mean ± 95% interval")
    if json_path:
        write_json(json_path, {**result, "evaluator": str(evaluator_path or t2m_dir), "data": str(data)})
