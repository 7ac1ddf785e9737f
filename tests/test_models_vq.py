"""ResidualVQ: learns a mixture of Gaussians (error falls, usage rises), codes round-trip, dropout, validation."""
import pytest
import torch

from fastmotion.models.vq import ResidualVQ


def mixture(n, centres, generator, spread=0.05):
    which = torch.randint(0, centres.shape[0], (n,), generator=generator)
    return centres[which] + spread * torch.randn(n, centres.shape[1], generator=generator)


def test_learns_mixture_of_gaussians():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(48, 16, generator=g) * 2
    # A first batch from only a few clusters: the initial codebook is poor and most codes collapse onto them.
    first = mixture(512, centres[:4], g)
    vq = ResidualVQ(num_levels=3, num_codes=64, dim=16, decay=0.9, quantize_dropout_prob=0.0).train()
    vq(first)
    held_out = mixture(4096, centres, g)

    def evaluate():
        vq.eval()
        out = vq(held_out)
        vq.train()
        return ((out.quantized - held_out) ** 2).mean().item(), out.perplexity[0].item()

    error_before, usage_before = evaluate()
    for _ in range(150):
        vq(mixture(1024, centres, g))
    error_after, usage_after = evaluate()
    print(f"error {error_before:.4f} -> {error_after:.4f}, level-0 perplexity {usage_before:.1f} -> {usage_after:.1f}")
    assert error_after < 0.2 * error_before, (error_before, error_after)
    assert usage_after > 2 * usage_before and usage_after > 30, (usage_before, usage_after)
    assert error_after < 0.05  # about the spread of the clusters: each level refines the last


def test_encode_decode_round_trip_and_straight_through():
    torch.manual_seed(1)
    vq = ResidualVQ(num_levels=4, num_codes=32, dim=8, quantize_dropout_prob=0.0)
    x = torch.randn(5, 7, 8)
    vq.train()(x)
    vq.eval()
    x.requires_grad_()
    out = vq(x)
    assert out.codes.shape == (5, 7, 4)
    torch.testing.assert_close(vq.decode(out.codes), out.quantized.detach())
    assert torch.equal(vq.encode(x), out.codes)
    (out.quantized.sum() + out.commitment).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    # straight-through: d quantized / d x is the identity, commitment adds 2 (x - q)/numel terms
    assert out.commitment.item() > 0


def test_quantize_dropout_marks_dropped_levels():
    torch.manual_seed(2)
    vq = ResidualVQ(num_levels=5, num_codes=16, dim=4, quantize_dropout_prob=1.0, quantize_dropout_cutoff=1).train()
    seen = set()
    for _ in range(30):
        codes = vq(torch.randn(64, 4)).codes
        active = int((codes[0] >= 0).sum())
        assert (codes[:, :active] >= 0).all() and (codes[:, active:] == -1).all()
        seen.add(active)
    assert seen == {1, 2, 3, 4}
    vq.eval()
    assert (vq(torch.randn(8, 4)).codes >= 0).all()  # no dropout at evaluation


def test_sampling_temperature_in_training_only():
    torch.manual_seed(3)
    vq = ResidualVQ(num_levels=2, num_codes=16, dim=4, quantize_dropout_prob=0.0, sample_temperature=5.0)
    x = torch.randn(256, 4)
    vq.train()(x)
    vq.eval()
    greedy = vq(x).codes
    vq.train()
    vq.decay = 1.0 - 1e-9  # keep the codebook still while sampling
    sampled = vq(x, generator=torch.Generator().manual_seed(0)).codes
    assert (sampled != greedy).any()


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_codes must be >= 1"):
        ResidualVQ(num_codes=0)
    with pytest.raises(ValueError, match="decay"):
        ResidualVQ(decay=1.0)
    vq = ResidualVQ(num_levels=2, num_codes=4, dim=3)
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
        vq(torch.randn(2, 4))
    with pytest.raises(ValueError, match="codes must be < 4"):
        vq.decode(torch.tensor([[0, 7]]))


def test_state_dict_round_trip(tmp_path):
    torch.manual_seed(4)
    vq = ResidualVQ(num_levels=2, num_codes=8, dim=4).train()
    vq(torch.randn(100, 4))
    torch.save(vq.state_dict(), tmp_path / "vq.pt")
    other = ResidualVQ(num_levels=2, num_codes=8, dim=4)
    other.load_state_dict(torch.load(tmp_path / "vq.pt", weights_only=True))
    x = torch.randn(10, 4)
    assert torch.equal(other.eval().encode(x), vq.eval().encode(x))
