"""GIF titles in any script: a font whose character map has every glyph, or no title and a warning."""
import warnings
from pathlib import Path

import numpy as np
import pytest

from fastmotion import render_text
from fastmotion.data.synth import synth_clip
from fastmotion.render import render_frames


def test_a_title_gets_a_font_that_has_its_glyphs_or_is_left_out_with_a_warning(monkeypatch):
    cyrillic = "человек прыгает"
    font = render_text.title_font(cyrillic)
    if font is None:
        pytest.skip("no installed font covers Cyrillic here")
    assert {ord(c) for c in cyrillic if c != " "} <= render_text._characters(Path(font.path))
    monkeypatch.setattr(render_text, "_font_files", lambda: ())
    render_text.title_font.cache_clear()
    with pytest.warns(UserWarning, match="no installed font has the characters"):
        assert render_text.title_font("人が前に歩く") is None
    joints = synth_clip(np.random.default_rng(0))[0][:3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frames = render_frames([joints], ["人が前に歩く"])  # still renders, without the title
    assert len(frames) == 3
    render_text.title_font.cache_clear()
