"""MoMask-style 1D convolutional motion encoder and decoder (channels first inside, channels last outside):
residual blocks with dilations growing by `dilation_growth`, temporal down/up-sampling by 2 per stage."""
from __future__ import annotations

import torch
from torch import nn


class ResBlock1D(nn.Module):
    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation),
                                  nn.ReLU(), nn.Conv1d(width, width, 1))

    def forward(self, x):
        return x + self.body(x)


def res_stack(width: int, depth: int, growth: int, reverse: bool = False) -> nn.Sequential:
    dilations = [growth ** i for i in range(depth)]
    return nn.Sequential(*(ResBlock1D(width, d) for d in (dilations[::-1] if reverse else dilations)))


class Encoder(nn.Module):
    """[B, T, in_dim] -> [B, T / 2^down, latent_dim]."""

    def __init__(self, in_dim: int, width: int, latent_dim: int, down: int = 2, depth: int = 3, growth: int = 3):
        super().__init__()
        layers = [nn.Conv1d(in_dim, width, 3, padding=1), nn.ReLU()]
        for _ in range(down):
            layers += [nn.Conv1d(width, width, 4, stride=2, padding=1), res_stack(width, depth, growth)]
        layers.append(nn.Conv1d(width, latent_dim, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.transpose(1, 2)).transpose(1, 2)


class Decoder(nn.Module):
    """[B, T / 2^up, latent_dim] -> [B, T, out_dim]."""

    def __init__(self, latent_dim: int, width: int, out_dim: int, up: int = 2, depth: int = 3, growth: int = 3):
        super().__init__()
        layers = [nn.Conv1d(latent_dim, width, 3, padding=1), nn.ReLU()]
        for _ in range(up):
            layers += [res_stack(width, depth, growth, reverse=True), nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv1d(width, width, 3, padding=1)]
        layers += [nn.Conv1d(width, width, 3, padding=1), nn.ReLU(), nn.Conv1d(width, out_dim, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.transpose(1, 2)).transpose(1, 2)
