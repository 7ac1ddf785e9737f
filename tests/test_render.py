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


def _drawn_box(panel):
    """(width, height) in pixels of what is drawn in a panel's middle band (the figure, not the title or legend)."""
    pixels = np.asarray(panel)[30:-24]
    rows, cols = np.nonzero((np.abs(pixels.astype(int) - 250).sum(-1) > 60))  # darker than the background
    return cols.max() - cols.min(), rows.max() - rows.min()


def test_3d_panels_share_one_camera_and_scale_and_start_at_one_place():
    """A motion and the same motion elsewhere on the floor draw the same; at 60% of its size it draws smaller (a
    camera per panel would frame both the same)."""
    from fastmotion.render import PANEL

    joints = synth_clip(np.random.default_rng(0))[0][:12]
    elsewhere = joints + np.array([3.0, 0.0, -5.0])
    sheet = np.asarray(render_frames([joints, elsewhere])[5])
    np.testing.assert_array_equal(sheet[:, :PANEL], sheet[:, PANEL:])
    small = render_frames([joints, 0.6 * joints])[5]
    big_box = _drawn_box(small.crop((0, 0, PANEL, PANEL)))
    small_box = _drawn_box(small.crop((PANEL, 0, 2 * PANEL, PANEL)))
    assert small_box[1] < 0.8 * big_box[1]


def test_every_panel_has_a_legend_and_a_2d_panel_fits_the_whole_body():
    from fastmotion.render import LEFT_COLOUR, PANEL, RIGHT_COLOUR

    joints = synth_clip(np.random.default_rng(1))[0][:12]
    keypoints = np.stack([500 + 300 * joints[..., 0], 500 - 300 * joints[..., 1]], -1)
    sheet = np.asarray(render_frames([keypoints, joints])[0])
    for panel in (sheet[:, :PANEL], sheet[:, PANEL:]):
        legend = panel[-16:, PANEL // 2:].reshape(-1, 3)  # the bottom-right corner
        for colour in (LEFT_COLOUR, RIGHT_COLOUR):
            assert (np.abs(legend.astype(int) - colour).sum(-1) < 60).any()
    heights = []
    for frame in render_frames([keypoints])[::3]:  # every frame between the title band and the bottom captions
        drawn = np.abs(np.asarray(frame).astype(int) - 250).sum(-1) > 60
        assert not drawn[:22].any() and not drawn[-20:, 60:PANEL - 110].any()
        rows = np.nonzero(drawn[22:-20].any(1))[0]
        heights.append(rows.max() - rows.min())
    assert max(heights) > 0.9 * (PANEL - 42)  # and the body fills the band's height in its tallest frame
