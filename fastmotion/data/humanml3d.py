"""HumanML3D's folder layout, read and written:

  ROOT/new_joints/NAME.npy   joints [T, 22, 3] (metres, y up, 20 fps)
  ROOT/texts/NAME.txt        one caption per line: `caption#word/POS word/POS ...#start#end` (start/end in
                             seconds; 0.0 0.0 means the whole clip)
  ROOT/train.txt, val.txt, test.txt   clip names, one per line

Writers build the folder under a temporary name and rename it at the end, so a crash never leaves a
half-written dataset behind.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")
# A tiny part-of-speech lexicon for the captions this project writes (HumanML3D's texts carry spaCy tags).
_POS = {"a": "DET", "the": "DET", "his": "DET", "their": "DET", "one": "NUM", "person": "NOUN", "man": "NOUN",
        "someone": "PRON", "and": "CCONJ", "then": "ADV", "in": "ADP", "to": "ADP", "with": "ADP", "up": "ADP",
        "down": "ADP", "while": "SCONJ", "forward": "ADV", "backwards": "ADV", "quickly": "ADV", "slowly": "ADV",
        "briskly": "ADV", "ahead": "ADV", "sideways": "ADV", "around": "ADV", "still": "ADV", "hello": "INTJ",
        "left": "NOUN", "right": "NOUN", "both": "DET", "few": "ADJ", "straight": "ADJ", "deep": "ADJ",
        "low": "ADJ", "long": "ADJ"}


@dataclass
class Caption:
    text: str
    tokens: list[str]
    start: float = 0.0
    end: float = 0.0


def tokenize(text: str) -> list[str]:
    """`word/POS` tokens in HumanML3D's style (verbs lemmatised crudely: trailing s dropped)."""
    tokens = []
    for word in re.findall(r"[a-z]+", text.lower()):
        pos = _POS.get(word)
        if pos is None:
            pos = "VERB" if word.endswith("s") and len(word) > 3 else "NOUN"
            if pos == "VERB":
                word = word[:-2] if word.endswith("ches") or word.endswith("shes") else word[:-1]
        tokens.append(f"{word}/{pos}")
    return tokens


def format_caption(caption: Caption) -> str:
    return f"{caption.text}#{' '.join(caption.tokens)}#{caption.start}#{caption.end}"


def parse_captions(path: Path) -> list[Caption]:
    """Read a texts/NAME.txt file; raises ValueError naming the file and line when a line is malformed."""
    captions = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("#")
        if len(parts) != 4:
            raise ValueError(f"{path}:{number}: expected 'caption#tokens#start#end', got {line!r}")
        try:
            start, end = float(parts[2] or 0), float(parts[3] or 0)
        except ValueError:
            raise ValueError(f"{path}:{number}: start/end must be numbers, got {parts[2]!r}, {parts[3]!r}") from None
        start, end = (0.0 if np.isnan(start) else start), (0.0 if np.isnan(end) else end)
        captions.append(Caption(parts[0].strip(), parts[1].split(), start, end))
    return captions


def captions_of(root, name: str) -> list[str]:
    """The non-empty captions of clip `name` of a dataset folder (texts/NAME.txt; [] when it has none)."""
    path = Path(root) / "texts" / f"{name}.txt"
    captions = [c.text for c in parse_captions(path)] if path.exists() else []
    return [c for c in captions if c.strip()]


def load_npy(path, what: str = "array") -> np.ndarray:
    """np.load with errors that name the file: missing, or not a .npy array."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such {what} file")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"{path}: not a readable .npy file ({err})") from None


def load_joints(path: Path, joints: int = 22) -> np.ndarray:
    """A [T, J, 3] joints file; errors name the file and say what is wrong."""
    data = load_npy(path, "joints")
    if data.ndim != 3 or data.shape[1:] != (joints, 3):
        raise ValueError(f"{path}: expected joints of shape [T, {joints}, 3], got {list(data.shape)}")
    if data.shape[0] == 0:
        raise ValueError(f"{path}: the clip has no frames")
    if not np.isfinite(data).all():
        raise ValueError(f"{path}: {int((~np.isfinite(data)).sum())} joint coordinates are NaN or inf")
    return data.astype(np.float32)


def read_split(root, split: str) -> list[str]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such dataset folder")
    path = root / f"{split}.txt"
    if not path.exists():
        raise FileNotFoundError(f"{path}: split file missing (a HumanML3D folder has {', '.join(SPLITS)}.txt)")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{path}: the split is empty")
    return names


@contextmanager
def atomic_folder(out):
    """Yield a temporary folder next to `out`; on success it replaces `out`, on error it is removed."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def write_clip(root: Path, name: str, joints: np.ndarray, captions: list[Caption]) -> None:
    (root / "new_joints").mkdir(exist_ok=True)
    (root / "texts").mkdir(exist_ok=True)
    np.save(root / "new_joints" / f"{name}.npy", np.asarray(joints, dtype=np.float32))
    (root / "texts" / f"{name}.txt").write_text("".join(format_caption(c) + "\n" for c in captions))


def write_splits(root: Path, names: list[str], fractions=(0.8, 0.1, 0.1), seed: int = 0) -> dict[str, list[str]]:
    """Shuffle names (seeded) into train/val/test by `fractions`; every split gets at least one clip when
    there are three or more."""
    order = list(names)
    np.random.default_rng(seed).shuffle(order)
    n = len(order)
    n_val = max(1 if n >= 3 else 0, int(round(fractions[1] * n)))
    n_test = max(1 if n >= 3 else 0, int(round(fractions[2] * n)))
    splits = {"train": order[:n - n_val - n_test], "val": order[n - n_val - n_test:n - n_test],
              "test": order[n - n_test:]}
    for split, members in splits.items():
        (root / f"{split}.txt").write_text("".join(f"{m}\n" for m in sorted(members)))
    return splits
