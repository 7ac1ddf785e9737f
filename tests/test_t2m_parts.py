"""Text-to-motion parts: generation metrics against closed forms, the text encoders (CLIP from a local file),
the masked and residual transformers (they learn a toy mapping; sampling respects lengths), the evaluator's
motion representation."""
import math

import pytest
import torch

from fastmotion.metrics import generation as gm
from fastmotion.metrics.evaluator import EvaluatorConfig, TextMotionEvaluator, evaluation_features
from fastmotion.models.t2m import (MaskedTransformer, ResidualTransformer, SamplingConfig, T2MConfig, cosine_schedule,
                                   generate_codes, predict_lengths)
from fastmotion.models.text import ClipTextEncoder, PromptError, SmallTextEncoder, Tokenizer
from helpers import t2m_release


# ---- metrics -------------------------------------------------------------------------------------------------
def test_frechet_distance_closed_forms():
    eye = torch.eye(3)
    assert gm.frechet_distance(torch.zeros(3), eye, torch.zeros(3), eye) == pytest.approx(0, abs=1e-9)
    shift = torch.tensor([1.0, -2.0, 0.5])
    assert gm.frechet_distance(torch.zeros(3), eye, shift, eye) == pytest.approx(float(shift @ shift))
    # diagonal covariances: sum (sqrt a - sqrt b)^2
    a, b = torch.tensor([4.0, 1.0, 9.0]), torch.tensor([1.0, 1.0, 1.0])
    expected = float(((a.sqrt() - b.sqrt()) ** 2).sum())
    assert gm.frechet_distance(torch.zeros(3), a.diag(), torch.zeros(3), b.diag()) == pytest.approx(expected)


def test_fid_on_samples():
    x = torch.randn(2000, 4, generator=torch.Generator().manual_seed(0))
    assert gm.fid(x, x) == pytest.approx(0, abs=1e-6)
    shift = torch.tensor([3.0, 0.0, -1.0, 0.0])
    assert gm.fid(x, x + shift) == pytest.approx(10.0, rel=1e-6)  # same covariance: the squared shift
    assert gm.fid(x, 2 * x) == pytest.approx(float(gm._moments(x)[1].trace()) + float(gm._moments(x)[0].pow(2).sum()),
                                             rel=1e-6)  # (2 - 1)^2 tr(S) + |mu|^2


def test_r_precision_mm_dist_diversity_multimodality():
    text = torch.eye(32) * 10
    assert gm.r_precision(text, text) == [1.0, 1.0, 1.0]
    assert gm.r_precision(text, -text)[0] < 0.1
    # 1-D case by hand: text 0's own motion is 2nd nearest, text 1's 2nd (a tie does not count), text 2's 1st
    texts, motions = torch.tensor([[0.0], [10.0], [20.0]]), torch.tensor([[9.0], [1.0], [19.0]])
    assert gm.r_precision(texts, motions, batch=3) == pytest.approx([1 / 3, 1.0, 1.0])
    assert gm.mm_dist(torch.zeros(5, 2), torch.tensor([[3.0, 4.0]]).expand(5, 2)) == pytest.approx(5.0)
    assert gm.diversity(torch.ones(10, 3)) == 0
    # two independent N(0, I_64) draws lie sqrt(2) * E[chi_64] = 11.27 apart on average
    g = torch.Generator().manual_seed(0)
    points = torch.randn(2000, 64, generator=g, dtype=torch.float64)
    div = gm.diversity(points, pairs=300, generator=torch.Generator().manual_seed(1))
    assert 10.8 < div < 11.7, div
    assert gm.diversity(3 * points, 300, torch.Generator().manual_seed(1)) == pytest.approx(3 * div)
    same = torch.ones(4, 5, 3)
    assert gm.multimodality(same) == 0
    # samples of each prompt ~ N(100 p, I_16): pairs within a prompt only, so the prompts' spread does not count;
    # sqrt(2) E[chi_16] = 5.57, less 1/30 of pairs that draw one sample twice
    spread = 100 * torch.arange(50.0)[:, None, None] + torch.randn(50, 30, 16, generator=g)
    mm = gm.multimodality(spread, pairs=10, generator=torch.Generator().manual_seed(1))
    assert 5.0 < mm < 5.8, mm
    assert gm.qm_score(4.0, 1.0) == 2.0
    mean, half = gm.confidence_interval([1.0, 1.0, 1.0])
    assert (mean, half) == (1.0, 0.0)
    mean, half = gm.confidence_interval([0.0, 2.0])
    assert mean == 1.0 and half == pytest.approx(1.96 * 1.0 / math.sqrt(2))
    with pytest.raises(ValueError, match="at least 2"):
        gm.diversity(torch.ones(1, 3))


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


# ---- transformers --------------------------------------------------------------------------------------------
TINY = T2MConfig(width=32, layers=2, heads=2, ff=64, dropout=0.0, cond_drop=0.1, max_tokens=8)


def test_cosine_schedule():
    assert cosine_schedule(torch.tensor(0.0)) == 1.0
    assert cosine_schedule(torch.tensor(1.0)) == pytest.approx(0.0, abs=1e-7)


def _toy_data(num_codes=16, levels=3):
    """Two 'captions' (one-hot text features), each with its own fixed code sequence and length."""
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(num_codes, (2, 8, levels), generator=g)
    lengths = torch.tensor([8, 5])
    text = torch.eye(2, 4)
    return codes, lengths, text


def _fit(model, codes, lengths, text, steps=150):
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    first = None
    for _ in range(steps):
        idx = torch.randint(2, (16,), generator=g)
        out = model.loss(codes[idx], lengths[idx], text[idx], g)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = first if first is not None else float(out["ce"].detach())
    return first, float(out["ce"].detach())


def test_transformers_learn_and_sample_a_toy_mapping():
    torch.manual_seed(0)
    codes, lengths, text = _toy_data()
    mask = MaskedTransformer(TINY, 16, 3, text_dim=4)
    res = ResidualTransformer(TINY, 16, 3, text_dim=4)
    first, last = _fit(mask, codes, lengths, text)
    assert last < 0.2 * first
    first, last = _fit(res, codes, lengths, text)
    assert last < 0.2 * first
    mask.eval(), res.eval()
    greedy = SamplingConfig(steps=4, guidance=2.0, res_guidance=2.0, temperature=0.0)
    out = generate_codes(mask, res, text, text, lengths, greedy, torch.Generator().manual_seed(0))
    assert out.shape == (2, 8, 3)
    assert (out[1, 5:] == -1).all() and (out[0] >= 0).all()  # -1 past each length
    assert torch.equal(out[0], codes[0]) and torch.equal(out[1, :5], codes[1, :5])
    assert predict_lengths(mask, text, torch.Generator().manual_seed(0)).tolist() == [8, 5]
    sampled = generate_codes(mask, None, None, None, torch.tensor([3]), SamplingConfig(steps=2),
                             torch.Generator().manual_seed(1))
    assert sampled.shape == (1, 3, 3) and (sampled[0, :, 0] >= 0).all() and (sampled[0, :, 1:] == -1).all()


def test_too_many_tokens_is_refused():
    mask = MaskedTransformer(TINY, 16, 3, text_dim=4)
    with pytest.raises(ValueError, match="max_tokens"):
        generate_codes(mask, None, None, None, torch.tensor([9]), SamplingConfig(steps=1), torch.Generator())


# ---- evaluator -----------------------------------------------------------------------------------------------
def test_evaluation_features_ignore_scale_and_camera_yaw():
    from fastmotion.data.synth import synth_clip
    import numpy as np

    joints, _, _ = synth_clip(np.random.default_rng(0))
    cam = torch.from_numpy(joints).double() * torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)  # y down
    f = evaluation_features(cam)
    assert f.shape == (len(joints) - 1, 263)
    assert torch.allclose(evaluation_features(cam * 0.2), f, atol=1e-5)
    yaw = torch.tensor(0.7, dtype=torch.float64)
    c, s = torch.cos(yaw), torch.sin(yaw)
    R = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float64)
    assert torch.allclose(evaluation_features(cam @ R.T), f, atol=1e-4)


def test_evaluator_loss_treats_equal_captions_as_positives():
    model = TextMotionEvaluator(EvaluatorConfig(width=32, dim=16))
    feats = torch.randn(4, 12, 263)
    mask = torch.ones(4, 12, dtype=torch.bool)
    out = model.loss(feats, mask, ["a", "a", "b", "c"])
    assert torch.isfinite(out["loss"]) and out["loss"] > 0
    e = model.embed_motion(feats, mask)
    assert torch.allclose(e.norm(dim=-1), torch.ones(4), atol=1e-5)


# ---- the original T2M evaluator (from a user's local files) -------------------------------------------------
def test_original_t2m_evaluator_loads_release_layout(tmp_path):
    from fastmotion.metrics.t2m_original import POS, OriginalT2MEvaluator

    folder, glove, state = t2m_release(tmp_path)
    gru = {f"gru.{w}_{k}_l0{r}" for w in ("weight", "bias") for k in ("ih", "hh") for r in ("", "_reverse")}
    head = {f"output_net.{i}.{w}" for i in (0, 1, 3) for w in ("weight", "bias")}
    assert set(state["movement_encoder"]) == {f"{m}.{w}" for m in ("main.0", "main.3", "out_net")
                                              for w in ("weight", "bias")}
    assert set(state["motion_encoder"]) == {"input_emb.weight", "input_emb.bias", "hidden"} | gru | head
    assert set(state["text_encoder"]) == {"input_emb.weight", "input_emb.bias", "hidden", "pos_emb.weight",
                                          "pos_emb.bias"} | gru | head
    ev = OriginalT2MEvaluator(folder, glove)
    vec, onehot = ev.words("walk/VERB")
    assert POS[onehot.argmax()] == "Act_VIP" and onehot.sum() == 1
    assert POS[ev.words("person/NOUN")[1].argmax()] == "NOUN"
    assert POS[ev.words("left/NOUN")[1].argmax()] == "Loc_VIP"
    unk, other = ev.words("zebra/NOUN")
    assert (unk == ev.words.vectors["unk"]).all() and POS[other.argmax()] == "OTHER"
    words, pos, length = ev.words.sentence(["a/DET", "person/NOUN", "walk/VERB"])
    assert words.shape == (22, 6) and pos.shape == (22, 15) and length == 5
    tokens = [["a/DET", "person/NOUN", "walk/VERB"], ["a/DET", "person/NOUN", "walk/VERB", "left/NOUN"]]
    t = ev.embed_text(["a person walks", "a person walks left"], tokens)
    assert t.shape == (2, 8) and not torch.allclose(t[0], t[1])
    with pytest.raises(ValueError, match="word/POS"):
        ev.embed_text(["a person walks"])
    # the GRU reads only each motion's own frames: what lies past the length changes nothing
    feats = torch.randn(2, 40, 263)
    mask = torch.zeros(2, 40, dtype=torch.bool)
    mask[0, :40], mask[1, :24] = True, True
    a = ev.embed_motion(feats, mask)
    feats[1, 24:] = 5.0
    assert a.shape == (2, 8) and torch.allclose(ev.embed_motion(feats, mask), a, atol=1e-6)


def test_original_t2m_evaluator_missing_files(tmp_path):
    from fastmotion.metrics.t2m_original import OriginalT2MEvaluator

    folder, glove, _ = t2m_release(tmp_path)
    (glove / "our_vab_idx.pkl").unlink()
    with pytest.raises(FileNotFoundError, match="our_vab_idx.pkl"):
        OriginalT2MEvaluator(folder, glove)
    with pytest.raises(FileNotFoundError, match="finest.tar"):
        OriginalT2MEvaluator(tmp_path / "nowhere", glove)
