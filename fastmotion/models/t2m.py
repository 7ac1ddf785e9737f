"""MoMask-style text-to-motion on ML-RQ codes: a masked transformer for the first quantiser level and a residual
transformer for levels 2..L, both conditioned on a sentence feature (classifier-free guidance by dropping it).

Token sequences are the ML-RQ codes of a motion ([B, N, L], N = frames / 4). The masked transformer sees level-0
codes with some replaced by MASK and predicts them (cosine masking schedule); it also predicts the sequence
length from the text when the user gives none. The residual transformer sees the sum of the embeddings of levels
< j and the level index j, and predicts level j everywhere.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .text import TextConditioned


@dataclass
class T2MConfig:
    width: int = 384
    layers: int = 8
    heads: int = 6
    ff: int = 1024
    dropout: float = 0.2
    cond_drop: float = 0.1  # probability of training a sample unconditioned (classifier-free guidance)
    max_tokens: int = 49  # 196 frames / 4, HumanML3D's longest motion
    # the sentence feature added to every token's input as well as prepended (MoMask: prepended only); on the demo
    # it took R-precision top-3 from 0.32 to 0.48 (docs/t2m-tuning.md). Checkpoints without the field: False.
    cond_every_token: bool = True

    @classmethod
    def preset(cls, name: str) -> "T2MConfig":
        """'full': MoMask's transformer sizes; 'small': a CPU-sized model with the same structure."""
        if name == "full":
            return cls()
        if name == "small":
            return cls(width=128, layers=4, heads=4, ff=256, dropout=0.1, max_tokens=50)
        raise ValueError(f"config must be 'small' or 'full', got {name!r}")


def _encoder(c: T2MConfig) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(c.width, c.heads, c.ff, c.dropout, activation="gelu", batch_first=True,
                                       norm_first=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nn.TransformerEncoder(layer, c.layers)


class _Conditioned(nn.Module):
    """Shared parts: projection of the sentence feature to the first token (and, with `cond_every_token`, onto
    every token's input), a learned null condition, positions, the transformer and its output norm."""

    def __init__(self, config: T2MConfig, num_codes: int, num_levels: int, text_dim: int):
        super().__init__()
        self.config, self.num_codes, self.num_levels, self.text_dim = config, num_codes, num_levels, text_dim
        w = config.width
        self.cond = nn.Linear(text_dim, w)
        self.null = nn.Parameter(torch.zeros(w))
        self.position = nn.Parameter(torch.randn(config.max_tokens + 1, w) * 0.02)
        self.transformer = _encoder(config)
        self.norm = nn.LayerNorm(w)

    def condition(self, text: torch.Tensor | None, batch: int, drop: torch.Tensor | None = None) -> torch.Tensor:
        """[B, W]: the projected sentence feature, or the null condition where `drop` (or text is None)."""
        if text is None:
            return self.null.expand(batch, -1)
        c = self.cond(text)
        if drop is not None:
            c = torch.where(drop[:, None], self.null.expand_as(c), c)
        return c

    def run(self, cond: torch.Tensor, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """cond [B, W], token inputs [B, N, W], pad [B, N] (True = padding) -> outputs [B, N, W]."""
        n = x.shape[1]
        if n > self.config.max_tokens:
            raise ValueError(f"{n} tokens exceed the model's max_tokens={self.config.max_tokens}")
        if self.config.cond_every_token:
            x = x + cond[:, None]
        h = torch.cat([cond[:, None], x], 1) + self.position[:n + 1]
        keep = torch.cat([pad.new_zeros(pad.shape[0], 1), pad], 1)
        return self.norm(self.transformer(h, src_key_padding_mask=keep))[:, 1:]

    def train_drop(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        return (torch.rand(batch, generator=generator) < self.config.cond_drop).to(self.null.device)


def cosine_schedule(r: torch.Tensor) -> torch.Tensor:
    """Share of tokens masked at progress r in [0, 1]: cos(pi r / 2) (1 -> all masked, 0 -> none)."""
    return torch.cos(r * math.pi / 2)


class MaskedTransformer(_Conditioned):
    """Level-0 codes with MASK tokens -> logits over the codebook; plus a length head on the sentence feature."""

    def __init__(self, config: T2MConfig, num_codes: int, num_levels: int, text_dim: int):
        super().__init__(config, num_codes, num_levels, text_dim)
        self.mask_id, self.pad_id = num_codes, num_codes + 1
        self.embed = nn.Embedding(num_codes + 2, config.width)
        self.head = nn.Linear(config.width, num_codes)
        self.length_head = nn.Sequential(nn.Linear(config.width, config.width), nn.GELU(),
                                         nn.Linear(config.width, config.max_tokens))  # class n-1: n tokens

    def forward(self, tokens: torch.Tensor, pad: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.head(self.run(cond, self.embed(tokens), pad))

    def loss(self, codes: torch.Tensor, lengths: torch.Tensor, text: torch.Tensor | None,
             generator: torch.Generator) -> dict:
        """codes [B, N, L] (level 0 used), lengths [B] in tokens, text [B, text_dim] -> losses and accuracy."""
        B, N = codes.shape[:2]
        device = codes.device
        pad = torch.arange(N, device=device)[None] >= lengths[:, None]
        target = codes[..., 0]
        ratio = cosine_schedule(torch.rand(B, generator=generator).to(device))
        n_mask = (ratio * lengths).ceil().clamp_min(1)
        score = torch.rand(B, N, generator=generator).to(device).masked_fill(pad, 2.0)
        rank = score.argsort(1).argsort(1)
        masked = rank < n_mask[:, None]
        # BERT-style: of the masked tokens 10% become a random code, 10% stay; the rest become MASK
        kind = torch.rand(B, N, generator=generator).to(device)
        random_codes = torch.randint(self.num_codes, (B, N), generator=generator).to(device)
        tokens = torch.where(masked & (kind < 0.8), self.mask_id, target)
        tokens = torch.where(masked & (kind >= 0.8) & (kind < 0.9), random_codes, tokens)
        tokens = tokens.masked_fill(pad, self.pad_id)
        drop = self.train_drop(B, generator)
        cond = self.condition(text, B, drop)
        logits = self(tokens, pad, cond)
        ce = F.cross_entropy(logits[masked], target[masked])
        acc = (logits[masked].argmax(-1) == target[masked]).float().mean()
        length_logits = self.length_head(self.condition(text, B).detach())  # the length never steers the text
        length_ce = F.cross_entropy(length_logits, (lengths - 1).clamp(0, self.config.max_tokens - 1))
        return {"loss": ce + 0.1 * length_ce, "ce": ce, "acc": acc, "length_ce": length_ce}


class ResidualTransformer(_Conditioned):
    """Codes of levels < j (summed embeddings) and the level j -> logits of level j's codes."""

    def __init__(self, config: T2MConfig, num_codes: int, num_levels: int, text_dim: int):
        super().__init__(config, num_codes, num_levels, text_dim)
        if num_levels < 2:
            raise ValueError("a residual transformer needs an ML-RQ with at least 2 levels")
        self.embed = nn.Parameter(torch.randn(num_levels - 1, num_codes, config.width) * 0.02)
        self.level = nn.Embedding(num_levels, config.width)
        self.heads = nn.Parameter(torch.randn(num_levels - 1, config.width, num_codes) * config.width ** -0.5)

    def forward(self, codes: torch.Tensor, level: torch.Tensor, pad: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """codes [B, N, L] (levels >= level[b] ignored), level [B] in 1..L-1 -> logits [B, N, K] of that level."""
        L = self.num_levels
        below = torch.arange(L - 1, device=codes.device)[None] < level[:, None]  # [B, L-1]
        idx = codes[..., :L - 1].clamp_min(0)  # [B, N, L-1]
        emb = self.embed[torch.arange(L - 1, device=codes.device)[None, None], idx]  # [B, N, L-1, W]
        x = (emb * below[:, None, :, None]).sum(2)
        h = self.run(cond + self.level(level), x, pad)
        return torch.einsum("bnw,bwk->bnk", h, self.heads[level - 1])

    def loss(self, codes: torch.Tensor, lengths: torch.Tensor, text: torch.Tensor | None,
             generator: torch.Generator) -> dict:
        B, N = codes.shape[:2]
        device = codes.device
        pad = torch.arange(N, device=device)[None] >= lengths[:, None]
        level = torch.randint(1, self.num_levels, (B,), generator=generator).to(device)
        cond = self.condition(text, B, self.train_drop(B, generator))
        logits = self(codes, level, pad, cond)
        target = codes.gather(2, level[:, None, None].expand(B, N, 1))[..., 0]
        real = ~pad
        ce = F.cross_entropy(logits[real], target[real])
        acc = (logits[real].argmax(-1) == target[real]).float().mean()
        return {"loss": ce, "ce": ce, "acc": acc}


def _guided(run, cond: torch.Tensor, null: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: uncond + scale * (cond - uncond), one batched pass."""
    if scale == 1.0:
        return run(cond)
    both = run(torch.cat([cond, null]))
    c, u = both.chunk(2)
    return u + scale * (c - u)


def _filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, -1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def _sample(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, -1)
    flat = probs.reshape(-1, probs.shape[-1]).cpu()
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1]).to(logits.device)


@dataclass
class SamplingConfig:
    steps: int = 10  # iterative masked decoding steps
    guidance: float = 4.0  # classifier-free guidance scale of the masked transformer (MoMask: 4)
    res_guidance: float = 5.0  # of the residual transformer (MoMask: 5)
    temperature: float = 1.0
    res_temperature: float = 1.0  # of the residual levels' codes (0: the most likely code)
    top_k: int = 0  # codes kept before sampling; 0 = the top 10% of the codebook (MoMask's 0.9 filter)

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def generate_codes(mask_model: MaskedTransformer, res_model: ResidualTransformer | None, text: torch.Tensor | None,
                   res_text: torch.Tensor | None, lengths: torch.Tensor, config: SamplingConfig,
                   generator: torch.Generator) -> torch.Tensor:
    """Codes [B, N, L] (-1 past each length) for sentence features (None: unconditional) and token lengths [B]."""
    B, N = len(lengths), int(lengths.max())
    device = mask_model.null.device
    lengths = lengths.to(device)
    pad = torch.arange(N, device=device)[None] >= lengths[:, None]
    top_k = config.top_k or max(1, math.ceil(0.1 * mask_model.num_codes))
    cond = mask_model.condition(text, B)
    null = mask_model.condition(None, B)
    tokens = torch.full((B, N), mask_model.mask_id, device=device).masked_fill(pad, mask_model.pad_id)
    pad2 = torch.cat([pad, pad])
    for step in range(config.steps):
        logits = _guided(lambda c: mask_model(tokens.repeat(c.shape[0] // B, 1), pad2[:c.shape[0]], c),
                         cond, null, config.guidance)
        logits = _filter_top_k(logits, top_k)
        sampled = _sample(logits, config.temperature, generator)
        still = tokens == mask_model.mask_id
        tokens = torch.where(still, sampled, tokens)
        confidence = torch.softmax(logits.float(), -1).gather(
            -1, tokens.clamp_max(mask_model.num_codes - 1)[..., None])[..., 0]
        confidence = confidence.masked_fill(~still, float("inf")).masked_fill(pad, float("inf"))
        ratio = cosine_schedule(torch.tensor((step + 1) / config.steps))
        n_remask = (ratio * lengths).floor().long()  # 0 at the last step
        rank = confidence.argsort(1).argsort(1)
        tokens = torch.where(rank < n_remask[:, None], mask_model.mask_id, tokens)
    codes = torch.full((B, N, mask_model.num_levels), -1, dtype=torch.long, device=device)
    codes[..., 0] = tokens.masked_fill(pad, -1)
    if res_model is not None:
        rcond, rnull = res_model.condition(res_text, B), res_model.condition(None, B)
        for level in range(1, res_model.num_levels):
            lv = torch.full((B,), level, device=device)
            logits = _guided(lambda c: res_model(codes.repeat(c.shape[0] // B, 1, 1), lv.repeat(c.shape[0] // B),
                                                 pad2[:c.shape[0]], c), rcond, rnull, config.res_guidance)
            codes[..., level] = _sample(_filter_top_k(logits, top_k), config.res_temperature,
                                        generator).masked_fill(pad, -1)
    return codes


@torch.no_grad()
def predict_lengths(mask_model: MaskedTransformer, text: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Token lengths [B] sampled from the length head's distribution for each sentence feature."""
    logits = mask_model.length_head(mask_model.condition(text, text.shape[0]))
    return _sample(logits, 1.0, generator) + 1


class T2MModel(TextConditioned):
    """A masked or residual transformer with its own trainable text encoder, or with none when the sentence
    features come from a frozen CLIP (`fastmotion.models.text.ClipTextEncoder`, kept out of checkpoints)."""

    KINDS = {"mask": MaskedTransformer, "res": ResidualTransformer}

    def __init__(self, kind: str, config: T2MConfig, num_codes: int, num_levels: int, text: str = "small"):
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {sorted(self.KINDS)}, got {kind!r}")
        self.kind = kind
        self.net = self.KINDS[kind](config, num_codes, num_levels, self.init_text(text))

    def describe(self) -> dict:
        return {"kind": self.kind, "text": self.text_kind, "num_codes": self.net.num_codes,
                "num_levels": self.net.num_levels, **asdict(self.net.config)}
