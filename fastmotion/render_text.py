"""Titles in any script: a TrueType font on this machine whose character map covers the text (fontTools reads
the maps), else no title and a warning naming the characters."""
from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

from PIL import ImageFont

# DejaVu first (Latin, Greek, Cyrillic; on most Linux systems), then whatever else is installed
PREFERRED = ("DejaVuSans.ttf", "NotoSans-Regular.ttf", "NotoSansCJK-Regular.ttc", "Arial Unicode.ttf", "arial.ttf")
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts", "/Library/Fonts",
             "/System/Library/Fonts", "C:/Windows/Fonts")


@functools.lru_cache(maxsize=1)
def _font_files() -> tuple[Path, ...]:
    found = []
    for folder in (os.environ.get("FASTMOTION_FONT_DIR"), *FONT_DIRS):
        if folder and Path(folder).expanduser().is_dir():
            found += [p for p in Path(folder).expanduser().rglob("*") if p.suffix.lower() in (".ttf", ".otf", ".ttc")]
    rank = {name: i for i, name in enumerate(PREFERRED)}
    return tuple(sorted(found, key=lambda p: (rank.get(p.name, len(rank)), str(p))))


@functools.lru_cache(maxsize=64)
def _characters(path: Path) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    try:
        font = TTFont(str(path), fontNumber=0, lazy=True)
        return frozenset(font.getBestCmap() or ())
    except Exception:  # noqa: BLE001  (a broken font file on the system is skipped)
        return frozenset()


@functools.lru_cache(maxsize=256)
def title_font(text: str, size: int = 13) -> ImageFont.FreeTypeFont | None:
    """A font [of `size` pixels] that has a glyph for every character of `text`, or None (a warning names the
    characters no installed font has)."""
    needed = {ord(c) for c in text if not c.isspace()}
    for path in _font_files():
        if needed <= _characters(path):
            return ImageFont.truetype(str(path), size)
    missing = "".join(sorted({c for c in text if not c.isspace()}))
    warnings.warn(f"no installed font has the characters of the title {text!r} (of {missing!r}): the title is left "
                  "out; install a font that has them (e.g. Noto Sans CJK) or set FASTMOTION_FONT_DIR",
                  stacklevel=3)
    return None
