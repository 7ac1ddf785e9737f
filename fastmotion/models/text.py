"""Text encoders for text-to-motion: frozen CLIP ViT-B/32 from a local checkpoint, or a small trainable
transformer on the same BPE tokenizer (the default when no CLIP weights are given).

Both go through open-clip-torch (a maintained package that ships CLIP's BPE vocabulary and builds a model from
OpenAI's checkpoint file, JIT archive or state dict, without network access). Both map a list of captions to
sentence features [B, dim]; both cache per caption (CLIP: the features, it is frozen; the small encoder: the
token ids, its features change as it trains).
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch
from torch import nn

CONTEXT = 77  # CLIP's context: start token + up to 75 BPE tokens + end token
CLIP_DIM = 512


class PromptError(ValueError):
    """A caption the text encoders cannot take (empty, or too long for the 77-token context)."""


def _tokenizer():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=CONTEXT)


class Tokenizer:
    """CLIP's BPE tokenizer (vocabulary 49,408) with checks: a prompt must be non-empty and fit the context.
    The empty string is allowed only when `allow_empty` (it is the unconditional prompt)."""

    def __init__(self):
        self._bpe = _tokenizer()
        self.vocab_size = len(self._bpe.encoder)
        self.sot, self.eot = self._bpe.sot_token_id, self._bpe.eot_token_id
        self._cache: dict[str, list[int]] = {}

    def ids(self, text: str, allow_empty: bool = False) -> list[int]:
        if text in self._cache:
            return self._cache[text]
        if not text.strip() and not allow_empty:
            raise PromptError("the prompt is empty: describe the motion, e.g. 'a person jumps forward'")
        ids = [self.sot] + self._bpe.encode(text) + [self.eot]
        if len(ids) > CONTEXT:
            raise PromptError(f"the prompt is {len(ids) - 2} BPE tokens long; at most {CONTEXT - 2} fit "
                              f"(prompt starts {text[:40]!r})")
        self._cache[text] = ids
        return ids

    def check(self, texts: list[str]) -> None:
        """Raise PromptError for the first prompt the encoders cannot take."""
        for text in texts:
            self.ids(text)

    def __call__(self, texts: list[str], allow_empty: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (token ids [B, n] padded with 0, index of each end token [B]); n = the longest prompt."""
        seqs = [self.ids(t, allow_empty) for t in texts]
        n = max(len(s) for s in seqs)
        out = torch.zeros(len(seqs), n, dtype=torch.long)
        for i, s in enumerate(seqs):
            out[i, :len(s)] = torch.tensor(s)
        return out, torch.tensor([len(s) - 1 for s in seqs])


class SmallTextEncoder(nn.Module):
    """A trainable causal transformer on CLIP's tokens; the sentence feature is the end token's output (as in
    CLIP), projected to `dim`."""

    def __init__(self, width: int = 128, layers: int = 2, heads: int = 4, dim: int = 256):
        super().__init__()
        self.tokenizer = Tokenizer()
        self.dim = dim
        self.token = nn.Embedding(self.tokenizer.vocab_size, width)
        self.position = nn.Parameter(torch.randn(CONTEXT, width) * 0.01)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
        with warnings.catch_warnings():  # nested-tensor fast path note for norm_first layers
            warnings.simplefilter("ignore")
            self.transformer = nn.TransformerEncoder(layer, layers)
        self.norm = nn.LayerNorm(width)
        self.project = nn.Linear(width, dim)

    def forward(self, texts: list[str], allow_empty: bool = False) -> torch.Tensor:
        ids, end = self.tokenizer(texts, allow_empty)
        device = self.token.weight.device
        ids, end = ids.to(device), end.to(device)
        n = ids.shape[1]
        x = self.token(ids) + self.position[:n]
        causal = torch.triu(torch.full((n, n), float("-inf"), device=device), 1)
        x = self.norm(self.transformer(x, mask=causal))
        return self.project(x[torch.arange(len(texts), device=device), end])


class ClipTextEncoder:
    """Frozen CLIP ViT-B/32 text tower from a local OpenAI checkpoint (ViT-B-32.pt: JIT archive or state dict).
    Not an nn.Module on purpose: its weights never enter a fastmotion checkpoint (the path does)."""

    dim = CLIP_DIM

    def __init__(self, weights, device="cpu"):
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"--clip-weights {path}: no such file (CLIP ViT-B/32 weights, e.g. OpenAI's "
                                    "ViT-B-32.pt; nothing is downloaded)")
        import open_clip

        try:
            with warnings.catch_warnings():  # torch.jit.load's deprecation note, tried first for JIT archives
                warnings.simplefilter("ignore", FutureWarning)
                model = open_clip.load_openai_model(str(path), device="cpu", precision="fp32")
        except Exception as err:  # noqa: BLE001  (torch.jit / torch.load raise many types for a bad file)
            raise ValueError(f"--clip-weights {path}: not a CLIP checkpoint ({type(err).__name__}: {err})") from None
        if model.text_projection.shape[-1] != CLIP_DIM or model.positional_embedding.shape[0] != CONTEXT:
            raise ValueError(f"--clip-weights {path}: expected CLIP ViT-B/32 (512-d text features, 77 tokens)")
        model.visual = None  # only the text tower is used
        self.model = model.eval().requires_grad_(False).to(device)
        self.tokenizer = Tokenizer()
        self.path = str(path.resolve())
        self._cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, texts: list[str], allow_empty: bool = False) -> torch.Tensor:
        todo = sorted({t for t in texts if t not in self._cache})
        for start in range(0, len(todo), 256):
            chunk = todo[start:start + 256]
            ids, _ = self.tokenizer(chunk, allow_empty)
            full = torch.zeros(len(chunk), CONTEXT, dtype=torch.long)
            full[:, :ids.shape[1]] = ids
            feats = self.model.encode_text(full.to(self.model.token_embedding.weight.device)).float().cpu()
            self._cache.update(zip(chunk, feats))
        device = self.model.token_embedding.weight.device
        return torch.stack([self._cache[t] for t in texts]).to(device)


class TextConditioned(nn.Module):
    """Base of the text-conditioned models: each owns a small text encoder ('small', trained with it) or reads
    frozen CLIP features ('clip': the encoder is passed in and stays out of the model's checkpoint)."""

    def init_text(self, text: str) -> int:
        """Set up the text side; returns the sentence feature size."""
        if text not in ("small", "clip"):
            raise ValueError(f"text must be 'small' or 'clip', got {text!r}")
        self.text_kind = text
        self.text = SmallTextEncoder() if text == "small" else None
        return self.text.dim if self.text is not None else CLIP_DIM

    def text_features(self, texts: list[str], clip=None) -> torch.Tensor:
        if self.text is not None:
            return self.text(texts)
        if clip is None:
            raise ValueError("this model was trained on CLIP features: give the CLIP text encoder (--clip-weights)")
        return clip(texts)


_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def caption_words(captions) -> list[str]:
    """The sorted lower-case words of `captions` (an iterable of strings): what a text-to-motion checkpoint keeps
    of its training captions, so that `unseen_words` can tell which words of a prompt it never saw."""
    return sorted({word for caption in captions for word in _WORD.findall(caption.lower())})


def unseen_words(prompt: str, words) -> list[str]:
    """The words of `prompt` (lower-cased, in order, once each) that are not in `words` (a set from
    `caption_words`). A model learns nothing about such a word (a small encoder's embedding of it is untrained;
    CLIP knows it, but no training motion goes with it): "cartwheel" when no caption has it."""
    found = []
    for word in _WORD.findall(prompt.lower()):
        if word not in words and word not in found:
            found.append(word)
    return found


def check_captions(files: dict, tokenizer: "Tokenizer | None" = None) -> None:
    """Check every caption a text encoder will see before training starts. files: {path of the captions file:
    its captions}.

    Raises:
        DatasetError: naming the first file whose caption is empty or longer than the encoders' context
            (CONTEXT - 2 BPE tokens), and the limit.
    """
    from fastmotion.errors import DatasetError

    tokenizer = tokenizer or Tokenizer()
    for path, captions in files.items():
        for caption in captions:
            try:
                tokenizer.ids(caption)
            except PromptError as err:
                raise DatasetError(f"{path}: a caption the text encoders cannot take: {err}; shorten or remove it "
                                   "and build the dataset again") from None


def load_clip_encoder(weights, device="cpu") -> ClipTextEncoder | None:
    """The frozen CLIP text encoder from local weights, or None when `weights` is None or empty (the models
    then use their own small encoder). Raises FileNotFoundError or ValueError for a missing or bad file."""
    return ClipTextEncoder(weights, device) if weights else None
