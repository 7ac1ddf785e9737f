"""Text-to-motion metrics in a text-motion evaluator's embedding space (Guo et al. 2022, as every T2M paper
reports them), plus Free3D's QM score. Inputs are embeddings [N, D]; distances are Euclidean.

  FID           Frechet distance between Gaussians fitted to real and generated motion embeddings
  R-precision   in batches of 32 (text, motion) pairs, the share of texts whose own motion is among the
                k nearest motions (k = 1, 2, 3)
  MM-Dist       mean distance between each text and its motion
  Diversity     mean distance between `pairs` random pairs of motions (300)
  MultiModality mean distance between `pairs` random pairs of motions generated for the same prompt (10),
                averaged over prompts
  QM            sqrt(MultiModality / FID) (Free3D): high when motions vary per prompt yet stay realistic
"""
from __future__ import annotations

import math

import torch


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.double()
    mu = x.mean(0)
    centred = x - mu
    return mu, centred.T @ centred / max(1, x.shape[0] - 1)


def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh((a + a.T) / 2)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2): the Frechet distance of two Gaussians."""
    mu1, sigma1, mu2, sigma2 = (torch.as_tensor(a, dtype=torch.float64) for a in (mu1, sigma1, mu2, sigma2))
    root = _sqrtm_psd(sigma1)
    cross = _sqrtm_psd(root @ sigma2 @ root)
    value = float(((mu1 - mu2) ** 2).sum() + torch.trace(sigma1) + torch.trace(sigma2) - 2 * torch.trace(cross))
    return max(value, 0.0)  # a distance: round-off makes identical sets come out at -1e-16


def fid(real: torch.Tensor, generated: torch.Tensor) -> float:
    """The Frechet distance of Gaussians fitted to two sets of embeddings [N, D]."""
    return frechet_distance(*_moments(real), *_moments(generated))


def r_precision(text: torch.Tensor, motion: torch.Tensor, batch: int = 32, top: int = 3,
                generator: torch.Generator | None = None) -> list[float]:
    """Top-1..top R-precision over shuffled batches of `batch` pairs (a last partial batch is dropped, as in
    the reference implementation; with fewer than `batch` pairs, one batch of all of them)."""
    n = text.shape[0]
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    size = min(batch, n)
    hits = torch.zeros(top, dtype=torch.float64)
    used = 0
    for start in range(0, n - size + 1, size):
        idx = order[start:start + size]
        d = torch.cdist(text[idx].double(), motion[idx].double())  # [b, b]: text i to motion j
        rank = (d < d.diagonal()[:, None]).sum(1)  # motions strictly closer than the text's own
        for k in range(top):
            hits[k] += (rank <= k).sum()
        used += size
    return (hits / used).tolist()


def mm_dist(text: torch.Tensor, motion: torch.Tensor) -> float:
    return float((text.double() - motion.double()).norm(dim=-1).mean())


def diversity(motion: torch.Tensor, pairs: int = 300, generator: torch.Generator | None = None) -> float:
    n = motion.shape[0]
    if n < 2:
        raise ValueError(f"diversity needs at least 2 motions, got {n}")
    pairs = min(pairs, n)
    a = torch.randperm(n, generator=generator)[:pairs]
    b = torch.randperm(n, generator=generator)[:pairs]
    return float((motion[a].double() - motion[b].double()).norm(dim=-1).mean())


def multimodality(motion: torch.Tensor, pairs: int = 10, generator: torch.Generator | None = None) -> float:
    """motion [P, S, D]: S generations for each of P prompts."""
    if motion.dim() != 3 or motion.shape[1] < 2:
        raise ValueError(f"multimodality needs [prompts, samples >= 2, dim], got {tuple(motion.shape)}")
    P, S, _ = motion.shape
    pairs = min(pairs, S)
    a = torch.stack([torch.randperm(S, generator=generator)[:pairs] for _ in range(P)])
    b = torch.stack([torch.randperm(S, generator=generator)[:pairs] for _ in range(P)])
    rows = torch.arange(P)[:, None]
    return float((motion[rows, a].double() - motion[rows, b].double()).norm(dim=-1).mean())


def qm_score(multimodality_value: float, fid_value: float) -> float:
    return math.sqrt(multimodality_value / fid_value) if fid_value > 0 else float("inf")


def confidence_interval(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% interval) over repeated runs: 1.96 std / sqrt(n), as T2M papers report."""
    t = torch.tensor(values, dtype=torch.float64)
    if len(values) < 2:
        return float(t.mean()), float("nan")
    return float(t.mean()), float(1.96 * t.std(unbiased=False) / math.sqrt(len(values)))
