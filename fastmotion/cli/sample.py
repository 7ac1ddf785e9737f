"""`fastmotion sample`: 3D motions from text (MoMask-style transformers on ML-RQ codes, or a VideoMDM), and
the sampling options `fastmotion eval t2m` shares."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import click

from ._common import announce, resolve_device, user_errors

# SamplingConfig's defaults, spelled out so that `--help` need not import torch (a test keeps the two equal).
SAMPLING_DEFAULTS = {"steps": 10, "guidance": 4.0, "res_guidance": 5.0, "temperature": 1.0, "res_temperature": 1.0,
                     "top_k": 0}


def sampling_options(command):
    """The options of text-to-motion generation (the models, decoding, guidance, seed)."""
    d = SAMPLING_DEFAULTS
    options = [
        click.option("--models", type=click.Path(file_okay=False, path_type=Path), default=Path("demo"),
                     show_default=True, help="Folder holding mask/last.pt and res/last.pt (what `make demo` trains)."),
        click.option("--mask", "mask_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Masked transformer checkpoint (default: MODELS/mask/last.pt)."),
        click.option("--res", "res_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Residual transformer checkpoint (default: MODELS/res/last.pt when present; without one "
                          "only the first level is generated)."),
        click.option("--no-res", is_flag=True,
                     help="Generate the first code level only, without the residual transformer (to measure what "
                          "the residual levels add)."),
        click.option("--mlrq", "mlrq_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="ML-RQ checkpoint (default: the one the masked transformer was trained on)."),
        click.option("--clip-weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="CLIP ViT-B/32 weights, for transformers trained on CLIP features."),
        click.option("--steps", type=click.IntRange(min=1), default=d["steps"], show_default=True,
                     help="Iterative masked-decoding steps."),
        click.option("--guidance", type=click.FloatRange(min=0), default=d["guidance"], show_default=True,
                     help="Classifier-free guidance scale of the masked transformer (1 = none; "
                          "docs/t2m-tuning.md measures others)."),
        click.option("--res-guidance", type=click.FloatRange(min=0), default=d["res_guidance"], show_default=True,
                     help="Classifier-free guidance scale of the residual transformer."),
        click.option("--temperature", type=click.FloatRange(min=0), default=d["temperature"], show_default=True,
                     help="Sampling temperature of the first level's codes (0 = greedy)."),
        click.option("--res-temperature", type=click.FloatRange(min=0), default=d["res_temperature"],
                     show_default=True, help="Sampling temperature of the residual levels' codes (0 = greedy)."),
        click.option("--top-k", type=click.IntRange(min=0), default=d["top_k"], show_default=True,
                     help="Codes kept before sampling (0 = the top 10% of the codebook)."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def generator_from_options(models, mask_path, res_path, no_res, mlrq_path, clip_weights, device):
    """The `TextToMotion` of the sampling options (checkpoints announced on stderr)."""
    from fastmotion.pipelines.t2m import TextToMotion

    mask_path = mask_path or models / "mask" / "last.pt"
    if no_res and res_path is not None:
        raise click.UsageError("give --res or --no-res, not both")
    if res_path is None and not no_res and (models / "res" / "last.pt").exists():
        res_path = models / "res" / "last.pt"
    if not mask_path.exists():
        raise click.BadParameter(f"{mask_path}: no such checkpoint (train one with `fastmotion train mask`, or run "
                                 "`make demo`)", param_hint="--mask/--models")
    with user_errors():
        for path in (mask_path, res_path):
            if path is not None:
                announce(path)
        return TextToMotion(mask_path, res_path, mlrq_path, clip_weights, resolve_device(device))


def sampling_config(steps, guidance, res_guidance, temperature, res_temperature, top_k):
    """The decoding options -> `SamplingConfig`."""
    from fastmotion.models.t2m import SamplingConfig

    return SamplingConfig(steps=steps, guidance=guidance, res_guidance=res_guidance, temperature=temperature,
                          res_temperature=res_temperature, top_k=top_k)


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


def output_stems(prompts: list[str], seed: int = 0) -> list[str]:
    """A distinct file stem per generated motion: the prompt's ASCII words, a hash of the exact prompt (prompts
    that differ only in case, punctuation or script get different files), the seed (another run with another
    seed writes beside this one) and the sample's index."""
    stems, seen = [], {}
    for prompt in prompts:
        words = re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")[:40]
        key = f"{words + '_' if words else ''}{hashlib.sha1(prompt.encode()).hexdigest()[:6]}_s{seed}"
        seen[key] = seen.get(key, -1) + 1
        stems.append(f"{key}_{seen[key]}")
    return stems


@click.command("sample")
@click.option("--text", "texts", multiple=True, help="A prompt (repeatable).")
@click.option("--texts", "texts_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A text file of prompts, one per line, generated in one batched call.")
@click.option("--length", default=None, help="Motion length: seconds ('4s') or frames ('80') at 20 fps. Default: "
                                             "predicted from the text.")
@click.option("--num", type=click.IntRange(min=1), default=1, show_default=True, help="Samples per prompt.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for STEM.npy (3D joints [T, 22, 3], metres, y up), .bvh and .gif per motion, STEM = the "
                   "prompt's ASCII words, a hash of the prompt, the seed and the sample's index; prompts.json maps "
                   "each STEM to its prompt.")
@click.option("--no-bvh", is_flag=True, help="Skip the .bvh files.")
@click.option("--no-gif", is_flag=True, help="Skip the animations.")
@click.option("--model", "model_kind", type=click.Choice(["momask", "mdm"]), default="momask", show_default=True,
              help="momask: the ML-RQ transformers (--models/--mask/--res); mdm: a VideoMDM (--checkpoint), DDPM "
                   "sampling with classifier-free guidance 2.5.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --model mdm: the checkpoint from `fastmotion train mdm`.")
@sampling_options
def sample(texts, texts_file, length, num, out, no_bvh, no_gif, model_kind, checkpoint, models, mask_path, res_path,
           no_res, mlrq_path, clip_weights, steps, guidance, res_guidance, temperature, res_temperature, top_k, seed,
           device):
    """Generate 3D motions from text: iterative masked decoding of the first code level (classifier-free
    guidance, temperature, top-k), the residual levels, then the ML-RQ decoder.

    Motions are learned from 2D alone and have no metric scale; files are scaled to a 1.7 m person, y up, each
    motion's bones held at one skeleton near an adult's proportions, the feet on the floor where they stand.

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
        if no_res:
            raise click.UsageError("--no-res is for the ML-RQ transformers (--model momask); an MDM has no levels")
        motions = _sample_with_mdm(checkpoint, all_prompts, frames, generator, clip_weights, device, prompts)
    else:
        t2m = generator_from_options(models, mask_path, res_path, no_res, mlrq_path, clip_weights, device)
        report_unseen_words(prompts, t2m.caption_words)
        try:
            tokens = None if frames is None else [t2m.tokens_for(frames)] * len(all_prompts)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--length") from None
        with user_errors():  # a diverged model (NaN) is named, not written
            motions = [upright(m) for m in t2m.generate(all_prompts, tokens, sampling_config(
                steps, guidance, res_guidance, temperature, res_temperature, top_k), generator)]
    out.mkdir(parents=True, exist_ok=True)
    from fastmotion.data.bvh import bvh_text, held_joints
    from fastmotion.motion.body import on_floor
    from fastmotion.render import render_frames, save_animation

    stems = output_stems(all_prompts, seed)
    with click.progressbar(list(zip(stems, all_prompts, motions)), label="writing",
                           file=click.get_text_stream("stderr")) as bar:
        for stem, prompt, motion in bar:
            # one rotation per joint, as a BVH holds it (sibling bones keep their angles), then onto the floor
            text = bvh_text(on_floor(torch.from_numpy(held_joints(bvh_text(motion.numpy())))).numpy())
            joints = held_joints(text)  # the .npy and the .bvh hold the same motion
            if not no_bvh:
                (out / f"{stem}.bvh").write_text(text)
            np.save(out / f"{stem}.npy", joints)
            if not no_gif:
                save_animation(render_frames([joints], [prompt]), out / f"{stem}.gif")
    index = out / "prompts.json"
    listed = json.loads(index.read_text()) if index.exists() else {}
    listed.update({stem: {"prompt": prompt, "seed": seed, "model": model_kind}
                   for stem, prompt in zip(stems, all_prompts)})
    index.write_text(json.dumps(listed, indent=2, ensure_ascii=False) + "\n")
    click.echo(f"wrote {len(motions)} motion(s) ({', '.join(f'{len(m)}' for m in motions[:8])}"
               f"{'...' if len(motions) > 8 else ''} frames) into {out}")


def report_unseen_words(prompts, words) -> None:
    """Say on stderr which words of each prompt no training caption had (words: a set, None when the checkpoint
    predates the record)."""
    from fastmotion.models.text import unseen_words

    if words is None:
        click.echo("note: this checkpoint does not record its training captions' words; out-of-vocabulary prompts "
                   "cannot be reported (train it again to have them)", err=True)
        return
    for prompt in prompts:
        unseen = unseen_words(prompt, words)
        if unseen:
            click.echo(f"warning: out of vocabulary in \"{prompt}\": {', '.join(repr(w) for w in unseen)} in no "
                       "training caption; the model has learnt nothing for "
                       f"{'it' if len(unseen) == 1 else 'them'} and the motion ignores "
                       f"{'it' if len(unseen) == 1 else 'them'}", err=True)


def _sample_with_mdm(checkpoint, prompts, frames, generator, clip_weights, device, distinct_prompts) -> list:
    from fastmotion.errors import MotionError
    from fastmotion.models.text import load_clip_encoder
    from fastmotion.pipelines.videomdm import load_mdm, sample_motions

    if checkpoint is None:
        raise click.BadParameter("--model mdm needs the checkpoint of `fastmotion train mdm`",
                                 param_hint="--checkpoint")
    with user_errors():
        announce(checkpoint)
        model, extra = load_mdm(checkpoint, resolve_device(device))
    report_unseen_words(distinct_prompts, set(extra["caption_words"]) if "caption_words" in extra else None)
    with user_errors():
        clip = load_clip_encoder(clip_weights or extra.get("clip_weights"), model.mean.device) \
            if model.text is None else None
    try:
        return sample_motions(model, extra, prompts, frames, generator, clip)
    except MotionError as err:  # a diverged model: named, nothing written
        raise click.ClickException(str(err)) from None
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--length") from None
