"""The text-motion evaluators: our evaluator's motion representation and loss, the original T2M evaluator's
release layout."""

import pytest
import torch

from fastmotion.metrics.evaluator import EvaluatorConfig, TextMotionEvaluator, evaluation_features
from helpers import t2m_release


# ---- metrics -------------------------------------------------------------------------------------------------


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
