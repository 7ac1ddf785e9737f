"""Text encoders: prompts checked, the small encoder tells captions apart, CLIP from a local file only."""

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmotion.errors import DatasetError
from fastmotion.models.text import ClipTextEncoder, PromptError, SmallTextEncoder, Tokenizer, check_captions

# ---- metrics -------------------------------------------------------------------------------------------------


# ---- text ----------------------------------------------------------------------------------------------------
def test_tokenizer_checks_prompts():
    tok = Tokenizer()
    ids = tok.ids("a person jumps forward")
    assert ids[0] == tok.sot and ids[-1] == tok.eot and len(ids) == 6
    with pytest.raises(PromptError, match="empty"):
        tok.ids("   ")
    with pytest.raises(PromptError, match="at most 75"):
        tok.ids("walk " * 80)
    batch, end = tok(["a person", "a person jumps forward"])
    assert batch.shape == (2, 6) and end.tolist() == [3, 5]


def test_small_text_encoder_distinguishes_captions():
    enc = SmallTextEncoder(width=32, layers=1, heads=2, dim=16)
    f = enc(["a person walks", "a person jumps", "a person walks"])
    assert f.shape == (3, 16)
    assert torch.allclose(f[0], f[2]) and not torch.allclose(f[0], f[1])


def test_clip_text_encoder_loads_local_weights(clip_file):
    import open_clip

    path, reference = clip_file
    enc = ClipTextEncoder(path)
    texts = ["a person jumps forward", "someone waves hello"]
    ours = enc(texts)
    tokens = open_clip.get_tokenizer("ViT-B-32")(texts)
    reference.load_state_dict({k: v.half().float() for k, v in reference.state_dict().items()})  # as stored
    reference.eval()
    with torch.no_grad():
        want = reference.encode_text(tokens)
    assert ours.shape == (2, 512)
    assert torch.allclose(ours, want, atol=1e-4, rtol=1e-4)
    assert torch.equal(enc(texts[:1])[0], ours[0])  # cached per caption
    with pytest.raises(PromptError):
        enc([""])


def test_clip_text_encoder_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="--clip-weights"):
        ClipTextEncoder(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a CLIP checkpoint"):
        ClipTextEncoder(bad)


@settings(max_examples=30, deadline=None)
@given(words=st.integers(1, 120))
def test_captions_are_refused_exactly_when_the_encoders_cannot_take_them(words):
    tokenizer = Tokenizer()
    caption = " ".join(["walk"] * words)  # one BPE token per word
    files = {Path("texts/clip.txt"): ["a person runs", caption]}
    if words <= 75:
        check_captions(files, tokenizer)
    else:
        with pytest.raises(DatasetError, match=r"texts/clip.txt: .* at most 75 fit"):
            check_captions(files, tokenizer)
