"""The masked and residual transformers: the cosine schedule, they learn a toy mapping, sampling respects
lengths, too many tokens are refused."""

from dataclasses import fields, replace

import pytest
import torch

from fastmotion.cli.sample import SAMPLING_DEFAULTS

from fastmotion.models.t2m import (MaskedTransformer, ResidualTransformer, SamplingConfig, T2MConfig, cosine_schedule,
                                   generate_codes, predict_lengths)


# ---- metrics -------------------------------------------------------------------------------------------------


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


@pytest.mark.parametrize("every", [False, True], ids=["first-token", "every-token"])
def test_transformers_learn_and_sample_a_toy_mapping(every):
    torch.manual_seed(0)
    codes, lengths, text = _toy_data()
    config = replace(TINY, cond_every_token=every)
    mask = MaskedTransformer(config, 16, 3, text_dim=4)
    res = ResidualTransformer(config, 16, 3, text_dim=4)
    first, last = _fit(mask, codes, lengths, text)
    assert last < 0.2 * first
    first, last = _fit(res, codes, lengths, text)
    assert last < 0.2 * first
    mask.eval(), res.eval()
    greedy = SamplingConfig(steps=4, guidance=2.0, res_guidance=2.0, temperature=0.0, res_temperature=0.0)
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


def test_the_cli_sampling_defaults_are_samplingconfigs():
    assert SAMPLING_DEFAULTS == {f.name: f.default for f in fields(SamplingConfig)}


def test_checkpoints_from_before_cond_every_token_load_prepended_only(tmp_path):
    """A transformer saved before `cond_every_token` existed loads with it off, and the flag changes the outputs."""
    from fastmotion.checkpoint import save_checkpoint
    from fastmotion.models.t2m import T2MModel
    from fastmotion.pipelines.t2m import load_t2m

    torch.manual_seed(0)
    old = T2MModel("mask", replace(TINY, cond_every_token=False), 16, 3)
    config = {k: v for k, v in old.describe().items() if k != "cond_every_token"}
    save_checkpoint(tmp_path / "old.pt", {"kind": "T2M-mask", "model_config": config, "model": old.state_dict(),
                                          "extra": {}})
    loaded, _ = load_t2m(tmp_path / "old.pt", "mask", "cpu")
    assert loaded.net.config.cond_every_token is False
    tokens, pad = torch.randint(16, (2, 5)), torch.zeros(2, 5, dtype=torch.bool)
    cond = loaded.net.condition(loaded.text_features(["a person walks", "someone jumps"]), 2)
    before = loaded.net(tokens, pad, cond)
    assert torch.allclose(before, old.eval().net(tokens, pad, cond))
    loaded.net.config = replace(loaded.net.config, cond_every_token=True)
    assert not torch.allclose(before, loaded.net(tokens, pad, cond), atol=1e-4)
