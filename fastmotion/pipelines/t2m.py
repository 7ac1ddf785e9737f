"""Text-to-motion on ML-RQ codes (MoMask-style): loading the transformers and the text-motion evaluator,
generation (`TextToMotion`), and the T2M evaluation (R-precision, FID, MM-Dist, Diversity, MultiModality)
with its baselines (empty caption, random other caption)."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fastmotion.checkpoint import load_checkpoint
from fastmotion.data import humanml3d as hml
from fastmotion.errors import CheckpointError, DatasetError
from fastmotion.metrics import generation as gm
from fastmotion.metrics.evaluator import EvaluatorConfig, TextMotionEvaluator, evaluation_features
from fastmotion.models.mlrq import features_to_joints
from fastmotion.models.t2m import SamplingConfig, T2MConfig, T2MModel, generate_codes, predict_lengths
from fastmotion.models.text import check_captions, load_clip_encoder
from fastmotion.motion.body import rigid_body

from .free3d import load_mlrq

MAX_EVAL_FRAMES = 196  # the evaluator's crop, HumanML3D's longest motion


def pick_crops(sequences: list, captions: list[list[str]], size: int, max_len: int, generator: torch.Generator):
    """`size` random items: a random crop of at most `max_len` rows of each sequence, and one of its captions."""
    picks = torch.randint(len(sequences), (size,), generator=generator).tolist()
    crops, texts = [], []
    for c in picks:
        seq = sequences[c]
        start = int(torch.randint(max(1, len(seq) - max_len + 1), (), generator=generator))
        crops.append(seq[start:start + max_len])
        texts.append(captions[c][int(torch.randint(len(captions[c]), (), generator=generator))])
    return crops, texts


def load_t2m(path, kind: str, device) -> tuple[T2MModel, dict]:
    state = load_checkpoint(path, f"T2M-{kind}")
    cfg = dict(state["model_config"])
    model = T2MModel(cfg.pop("kind"), T2MConfig(**{k: v for k, v in cfg.items()
                                                  if k in T2MConfig.__dataclass_fields__}),
                     cfg["num_codes"], cfg["num_levels"], cfg["text"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state["extra"]


# ---- the evaluator ----------------------------------------------------------------------------------------
class MotionTextBank:
    """Held-out 3D (eval3d/) of one split in the evaluator's representation, with the clips' captions."""

    def __init__(self, data, split: str):
        root = Path(data)
        try:
            names = hml.read_split(root, split)
        except (FileNotFoundError, ValueError) as err:
            raise DatasetError(str(err)) from None
        self.names, self.features, self.captions, self.frames = [], [], [], []
        self.tokens: dict[str, list[str]] = {}  # caption -> its "word/POS" tokens (the original T2M evaluator's input)
        for name in names:
            path = root / "eval3d" / "new_joints" / f"{name}.npy"
            if not path.exists():
                raise DatasetError(f"{path} is missing: the evaluator trains on the held-out 3D that `fastmotion "
                                    "data render` writes to eval3d/")
            text_path = root / "texts" / f"{name}.txt"
            parsed = [c for c in hml.parse_captions(text_path) if c.text.strip()] if text_path.exists() else []
            if not parsed:
                continue
            texts = [c.text for c in parsed]
            self.tokens.update((c.text, c.tokens) for c in parsed)
            with np.load(root / "cameras" / f"{name}.npz") as cam:
                R, t = (torch.from_numpy(np.asarray(cam[k], np.float64)) for k in ("R", "t"))
            world = torch.from_numpy(hml.load_joints(path)).double()
            self.features.append(evaluation_features(world @ R.T + t))
            self.names.append(name)
            self.captions.append(texts)
            self.frames.append(len(world))
        if not self.names:
            raise DatasetError(f"{root}: the {split} split has no captioned clip")
        check_captions({root / "texts" / f"{n}.txt": c for n, c in zip(self.names, self.captions)})

    def batch(self, size: int, generator: torch.Generator):
        feats, texts = pick_crops(self.features, self.captions, size, MAX_EVAL_FRAMES, generator)
        return (*pad_features(feats), texts)


def pad_features(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(f) for f in feats)
    out = torch.zeros(len(feats), longest, feats[0].shape[-1])
    mask = torch.zeros(len(feats), longest, dtype=torch.bool)
    for i, f in enumerate(feats):
        out[i, :len(f)] = f
        mask[i, :len(f)] = True
    return out, mask


def load_evaluator(path, device) -> TextMotionEvaluator:
    state = load_checkpoint(path, "TextMotionEvaluator")
    cfg = {k: v for k, v in state["model_config"].items() if k != "kind"}
    model = TextMotionEvaluator(EvaluatorConfig(**cfg))
    model.load_state_dict(state["model"])
    return model.to(device).eval()


# ---- generation --------------------------------------------------------------------------------------------
class TextToMotion:
    """Text -> 3D motion: masked transformer (level 0), residual transformer (levels 1..L-1), ML-RQ decoder.
    Motions come out in the camera frame of the 2D the models learned from (y down, units of the subject's
    depth, root at the origin on the first frame), like `fastmotion lift`'s."""

    def __init__(self, mask_path, res_path=None, mlrq_path=None, clip_weights=None, device="cpu",
                 rigid: bool = True):
        self.device = torch.device(device)
        self.rigid = rigid  # each motion's bones held at one skeleton (`fastmotion.motion.body.rigid_body`)
        self.mask, extra = load_t2m(mask_path, "mask", self.device)
        self.res, res_extra = load_t2m(res_path, "res", self.device) if res_path else (None, {})
        self.mlrq_path = Path(mlrq_path or extra["mlrq"])
        self.mlrq = load_mlrq(self.mlrq_path, self.device)
        for name, model in (("mask", self.mask), ("res", self.res)):
            if model is None:
                continue
            want = (self.mlrq.vq.num_codes, self.mlrq.vq.num_levels)
            have = (model.net.num_codes, model.net.num_levels)
            if have != want:
                raise CheckpointError(f"the {name} transformer was trained on codebooks of {have[0]} codes x "
                                      f"{have[1]} levels, the ML-RQ {self.mlrq_path} has {want[0]} x {want[1]}")
        self.token_range = extra.get("token_range") or [1, self.mask.net.config.max_tokens]
        # the training captions' words (None: a checkpoint from before they were kept)
        self.caption_words = set(extra["caption_words"]) if "caption_words" in extra else None
        needs_clip = [m for m in (self.mask, self.res) if m is not None and m.text is None]
        weights = clip_weights or extra.get("clip_weights") or res_extra.get("clip_weights")
        if needs_clip and not clip_weights and not (weights and Path(weights).is_file()):
            raise ValueError("these transformers were trained on CLIP text features: give --clip-weights PATH "
                             f"(CLIP ViT-B/32 weights{'; ' + weights + ' is missing' if weights else ''})")
        self.clip = load_clip_encoder(weights, self.device) if needs_clip else None
        self.frames_per_token = self.mlrq.frame_multiple

    def frames_range(self) -> tuple[int, int]:
        lo, hi = self.token_range
        return lo * self.frames_per_token, hi * self.frames_per_token

    def tokens_for(self, frames: int) -> int:
        lo, hi = self.frames_range()
        if not lo <= frames <= hi:
            raise ValueError(f"length {frames} frames ({frames / 20:.2f} s) is outside the trained range "
                             f"{lo}..{hi} frames ({lo / 20:.1f}-{hi / 20:.1f} s at 20 fps)")
        return max(1, round(frames / self.frames_per_token))

    @torch.no_grad()
    def generate(self, texts: list[str] | None, tokens: list[int] | None, sampling: SamplingConfig,
                 generator: torch.Generator, batch: int = 256) -> list[torch.Tensor]:
        """texts (None: unconditional, with `tokens` required), token lengths (None: predicted) -> joints
        [T_b, 22, 3] each, bones held at one skeleton per motion unless `self.rigid` is False.

        Raises:
            ValueError: a generated motion holds NaN or inf (`rigid_body`)."""
        return self._generate(texts, tokens, sampling, generator, batch, first_level=False)[0]

    @torch.no_grad()
    def generate_with_first_level(self, texts: list[str] | None, tokens: list[int] | None, sampling: SamplingConfig,
                                  generator: torch.Generator, batch: int = 256
                                  ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """As `generate` (the same draws, the same motions), and beside each motion its own first-level codes
        decoded without levels 2..L: what the residual levels add, paired (MoMask Sec. 3.2's ablation)."""
        return self._generate(texts, tokens, sampling, generator, batch, first_level=True)

    def _generate(self, texts, tokens, sampling, generator, batch, first_level):
        n = len(texts) if texts is not None else len(tokens)
        out, first = [], []
        for start in range(0, n, batch):
            chunk = texts[start:start + batch] if texts is not None else None
            mask_text = self.mask.text_features(chunk, self.clip) if chunk is not None else None
            res_text = self.res.text_features(chunk, self.clip) if chunk is not None and self.res else None
            if tokens is None:
                lengths = predict_lengths(self.mask.net, mask_text, generator).clamp(*self.token_range)
            else:
                lengths = torch.tensor(tokens[start:start + batch])
            codes = generate_codes(self.mask.net, self.res.net if self.res else None, mask_text, res_text, lengths,
                                   sampling, generator)
            out += self.decode(codes, lengths)
            if first_level:
                first += self.decode(codes[..., :1], lengths)
        hold = rigid_body if self.rigid else (lambda m: m)
        return [hold(m) for m in out], [hold(m) for m in first]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Codes [B, N, L] -> joints [T_b, 22, 3]; past each length the last codes repeat (as `lift` pads)."""
        N = codes.shape[1]
        idx = torch.minimum(torch.arange(N)[None], (lengths.cpu() - 1)[:, None]).to(codes.device)
        codes = codes.gather(1, idx[..., None].expand_as(codes))
        f3d = self.mlrq.to_3d(self.mlrq.decoder(self.mlrq.vq.decode(codes)))
        joints = features_to_joints(f3d, 3).cpu()
        return [j[:int(n) * self.frames_per_token] for j, n in zip(joints, lengths)]


# ---- evaluation ----------------------------------------------------------------------------------------------
@dataclass
class T2MEvalConfig:
    repeats: int = 20
    mm_prompts: int = 100
    mm_samples: int = 30
    mm_pairs: int = 10
    diversity_pairs: int = 300
    r_batch: int = 32
    seed: int = 0


def embed_texts(evaluator, texts: list[str], tokens: dict[str, list[str]]) -> torch.Tensor:
    """Text embeddings [N, D]; the original T2M evaluator also reads each caption's "word/POS" tokens."""
    from fastmotion.metrics.t2m_original import OriginalT2MEvaluator

    chunks = [texts[i:i + 256] for i in range(0, len(texts), 256)]
    if isinstance(evaluator, OriginalT2MEvaluator):
        return torch.cat([evaluator.embed_text(c, [tokens[t] for t in c]).cpu() for c in chunks])
    return torch.cat([evaluator.embed_text(c).cpu() for c in chunks])


def _embed(evaluator, motions: list[torch.Tensor], device) -> torch.Tensor:
    feats, mask = pad_features([evaluation_features(m) for m in motions])
    out = [evaluator.embed_motion(feats[i:i + 256].to(device), mask[i:i + 256].to(device)).cpu()
           for i in range(0, len(motions), 256)]
    return torch.cat(out)


def other_captions(texts: list[str], generator: torch.Generator) -> list[str]:
    """For each clip, the caption of a random other clip (uniform over clips, so the captions' distribution stays
    the split's) that reads differently."""
    if len(set(texts)) < 2:
        raise ValueError("the random-caption baseline needs at least two different captions")
    out = []
    for t in texts:
        while True:
            other = texts[int(torch.randint(len(texts), (), generator=generator))]
            if other != t:
                out.append(other)
                break
    return out


@torch.no_grad()
def evaluate_t2m(t2m: TextToMotion, evaluator: TextMotionEvaluator, data, split: str, sampling: SamplingConfig,
                 config: T2MEvalConfig, baselines: bool = True, progress=None) -> dict:
    """Metrics of real motions, the model, and (with `baselines`) motions generated with an empty caption and
    with a random other clip's caption, each as (mean, 95% half-width) over `config.repeats` runs. With
    `baselines` and a residual transformer, also "first level alone": the model's own codes decoded without the
    residual levels (`TextToMotion.generate_with_first_level`), which shows what levels 2..L add."""
    bank = MotionTextBank(data, split)
    device = next(evaluator.parameters()).device
    lo, hi = t2m.token_range
    # a clip longer than the model generates is scored on its first hi tokens' frames, as its motion is
    feats, mask = pad_features([f[:hi * t2m.frames_per_token] for f in bank.features])
    real = torch.cat([evaluator.embed_motion(feats[i:i + 256].to(device), mask[i:i + 256].to(device)).cpu()
                      for i in range(0, len(feats), 256)])
    tokens = [min(hi, max(lo, f // t2m.frames_per_token)) for f in bank.frames]
    levels = baselines and getattr(t2m, "res", None) is not None
    rows = ["real", "model"] + (["first level alone"] if levels else []) + \
        (["empty caption", "random other caption"] if baselines else [])
    values: dict[str, dict[str, list[float]]] = {r: {} for r in rows}

    def record(row, text_emb, motion_emb, g):
        top = gm.r_precision(text_emb, motion_emb, config.r_batch, 3, g)
        for k, v in (("R-precision top-1", top[0]), ("R-precision top-2", top[1]), ("R-precision top-3", top[2]),
                     ("FID", gm.fid(real, motion_emb)), ("MM-Dist", gm.mm_dist(text_emb, motion_emb)),
                     ("Diversity", gm.diversity(motion_emb, config.diversity_pairs, g))):
            values[row].setdefault(k, []).append(v)

    for r in range(config.repeats):
        g = torch.Generator().manual_seed(config.seed * 1000 + r)
        texts = [c[int(torch.randint(len(c), (), generator=g))] for c in bank.captions]
        text_emb = embed_texts(evaluator, texts, bank.tokens)
        record("real", text_emb, real, g)
        if levels:
            motions, first = t2m.generate_with_first_level(texts, tokens, sampling, g)
        else:
            motions = t2m.generate(texts, tokens, sampling, g)
        record("model", text_emb, _embed(evaluator, motions, device), g)
        if levels:  # its scoring draws from a copy of g, so the other rows' figures stay as without it
            record("first level alone", text_emb, _embed(evaluator, first, device),
                   torch.Generator().set_state(g.get_state()))
        if baselines:
            record("empty caption", text_emb, _embed(evaluator, t2m.generate(None, tokens, sampling, g), device), g)
            other = other_captions(texts, g)
            record("random other caption", text_emb,
                   _embed(evaluator, t2m.generate(other, tokens, sampling, g), device), g)
        if config.mm_prompts and config.mm_samples >= 2:
            picks = torch.randperm(len(texts), generator=g)[:config.mm_prompts].tolist()
            prompts = [texts[i] for i in picks for _ in range(config.mm_samples)]
            lengths = [tokens[i] for i in picks for _ in range(config.mm_samples)]
            emb = _embed(evaluator, t2m.generate(prompts, lengths, sampling, g), device)
            mm = gm.multimodality(emb.view(len(picks), config.mm_samples, -1), config.mm_pairs, g)
            values["model"].setdefault("MultiModality", []).append(mm)
            values["model"].setdefault("QM", []).append(gm.qm_score(mm, values["model"]["FID"][-1]))
        if progress:
            progress(1)
    summary = {row: {k: gm.confidence_interval(v) for k, v in metrics.items()} for row, metrics in values.items()}
    return {"metrics": summary, "runs": values, "clips": len(bank.names), "split": split,
            "sampling": sampling.as_dict(), "eval": config.__dict__}


def format_t2m_table(result: dict) -> str:
    metrics = ["R-precision top-1", "R-precision top-2", "R-precision top-3", "FID", "MM-Dist", "Diversity",
               "MultiModality", "QM"]
    rows = result["metrics"]
    lines = [f"{'':>22}" + "".join(f"{m.replace('R-precision ', 'R@'):>17}" for m in metrics)]
    for row, vals in rows.items():
        cells = []
        for m in metrics:
            if m in vals:
                mean, ci = vals[m]
                cells.append(f"{mean:>9.3f}" + (f" ±{ci:<6.3f}" if not math.isnan(ci) else " " * 8))
            else:
                cells.append(f"{'-':>17}")
        lines.append(f"{row:>22}" + "".join(cells))
    return "\n".join(lines)


def write_json(path, payload: dict) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
