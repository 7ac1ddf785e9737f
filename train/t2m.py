"""Text-to-motion training runs on ML-RQ codes (Free3D / MoMask): code extraction and caching, the masked and
residual transformer runs, and the text-motion evaluator run. Generation and evaluation: fastmotion.pipelines.t2m."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from fastmotion.checkpoint import save_checkpoint
from fastmotion.data.clip_bank import ClipBank
from fastmotion.data.humanml3d import captions_of
from fastmotion.errors import CheckpointError, DatasetError
from fastmotion.metrics import generation as gm
from fastmotion.metrics.evaluator import EvaluatorConfig, TextMotionEvaluator
from fastmotion.models.mlrq import MLRQ, motion_features
from fastmotion.models.t2m import T2MConfig, T2MModel
from fastmotion.models.text import caption_words, check_captions, load_clip_encoder
from fastmotion.pipelines.free3d import load_mlrq
from fastmotion.pipelines.t2m import MotionTextBank, pad_features, pick_crops

from .loop import Run


def _fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


class CodeBank:
    """ML-RQ codes [N_i, L] of every captioned clip of one split, extracted once and cached next to the ML-RQ
    checkpoint (codes/<split>-<hash>.pt, keyed by the dataset folder and the checkpoint file)."""

    def __init__(self, data, mlrq_path, split: str, device="cpu", progress=None):
        data, mlrq_path = Path(data), Path(mlrq_path)
        if not mlrq_path.exists():
            raise CheckpointError(f"--mlrq {mlrq_path}: no such checkpoint (train one with `fastmotion train mlrq`)")
        key = f"{data.resolve()}|{split}|{_fingerprint(mlrq_path)}"
        cache = mlrq_path.parent / "codes" / f"{split}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.pt"
        if cache.exists():
            state = torch.load(cache, weights_only=True)
        else:
            state = self._extract(data, load_mlrq(mlrq_path, device), split, progress)
            cache.parent.mkdir(exist_ok=True)
            save_checkpoint(cache, state)
        self.names, self.captions, self.codes = state["names"], state["captions"], state["codes"]
        self.num_codes, self.num_levels = state["num_codes"], state["num_levels"]
        if not self.names:
            raise DatasetError(f"{data}: no clip of the {split} split has a caption (texts/NAME.txt)")
        check_captions({Path(data) / "texts" / f"{n}.txt": c for n, c in zip(self.names, self.captions)})
        self.lengths = torch.tensor([len(c) for c in self.codes])

    @staticmethod
    @torch.no_grad()
    def _extract(data: Path, mlrq: MLRQ, split: str, progress) -> dict:
        bank = ClipBank(data, split)
        m = mlrq.frame_multiple
        device = mlrq.stats.mean.device
        names, captions, codes = [], [], []
        for name, clip in zip(bank.names, bank.clips):
            texts = captions_of(data, name)
            if not texts:
                continue
            n = -(-len(clip) // m) * m
            k = torch.cat([clip, clip[-1:].expand(n - len(clip), -1, -1)])
            x = mlrq.stats.normalize(motion_features(k[None].to(device)))
            codes.append(mlrq.vq.encode(mlrq.encode(x))[0].cpu())
            names.append(name)
            captions.append(texts)
            if progress:
                progress(1)
        return {"kind": "codes", "names": names, "captions": captions, "codes": codes,
                "num_codes": mlrq.vq.num_codes, "num_levels": mlrq.vq.num_levels}

    def token_range(self) -> list[int]:
        return [int(self.lengths.min()), int(self.lengths.max())]

    def batch(self, size: int, max_tokens: int, generator: torch.Generator):
        """size random clips (a random crop when longer than max_tokens) with one of their captions each ->
        (codes [B, N, L] (0 past each length), lengths [B], texts)."""
        crops, texts = pick_crops(self.codes, self.captions, size, max_tokens, generator)
        lengths = torch.tensor([len(c) for c in crops])
        out = torch.zeros(size, int(lengths.max()), self.num_levels, dtype=torch.long)
        for i, c in enumerate(crops):
            out[i, :len(c)] = c
        return out, lengths, texts


def t2m_run(kind: str, data, mlrq_path, config: T2MConfig, batch_size: int, device, clip_weights=None) -> Run:
    """`fastmotion train mask` (kind 'mask') and `fastmotion train res` (kind 'res'). Clips longer than
    `config.max_tokens` train on random crops of that many tokens (Bandai-2 has clips of 78), and the lengths the
    models generate stop there."""
    train = CodeBank(data, mlrq_path, "train", device)
    val = CodeBank(data, mlrq_path, "val", device)
    clip = load_clip_encoder(clip_weights, device)
    model = T2MModel(kind, config, train.num_codes, train.num_levels, "clip" if clip else "small").to(device)

    def losses(model, codes, lengths, texts, generator):
        text = model.text_features(texts, clip)
        return model.net.loss(codes.to(device), lengths.to(device), text, generator)

    def step(model, step, generator):
        return losses(model, *train.batch(batch_size, config.max_tokens, generator), generator)

    def evaluate(model):
        g = torch.Generator().manual_seed(0)
        out = losses(model, *val.batch(256, config.max_tokens, g), g)
        return {"val_ce": float(out["ce"]), "val_acc": float(out["acc"])}

    extra = {"data": str(Path(data).resolve()), "mlrq": str(Path(mlrq_path).resolve()),
             "clip_weights": clip.path if clip else None,
             "token_range": [min(n, config.max_tokens) for n in train.token_range()],
             "caption_words": caption_words(c for captions in train.captions for c in captions)}
    return Run(f"T2M-{kind}", model, model.describe(), step, evaluate, extra=extra, best=("val_ce", "min"))


# ---- the evaluator ----------------------------------------------------------------------------------------
def evaluator_run(data, config: EvaluatorConfig, batch_size: int, device) -> Run:
    train, val = MotionTextBank(data, "train"), MotionTextBank(data, "val")
    model = TextMotionEvaluator(config)
    model.fit_stats(*pad_features(train.features))
    model.to(device)

    def step(model, step, generator):
        feats, mask, texts = train.batch(batch_size, generator)
        return model.loss(feats.to(device), mask.to(device), texts)

    def evaluate(model):
        feats, mask, texts = val.batch(256, torch.Generator().manual_seed(0))
        m = model.embed_motion(feats.to(device), mask.to(device))
        t = model.embed_text(texts)
        top = gm.r_precision(t.cpu(), m.cpu())
        return {"val_top1": top[0], "val_top3": top[2]}

    return Run("TextMotionEvaluator", model, {"kind": "TextMotionEvaluator", **config.__dict__}, step, evaluate,
               extra={"data": str(Path(data).resolve()), "trained_on": "eval3d/ of the train split"},
               best=("val_top3", "max"))


