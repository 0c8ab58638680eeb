"""Face Locator: face-region mask -> a residual added to the noisy latents."""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class FaceLocator(nn.Module):
    """mask (B, 1, H, W) -> (B, latent_channels, H/f, W/f); zero at initialisation."""

    def __init__(self, downscale: int, latent_channels: int, width: int = 16):
        super().__init__()
        steps = int(round(math.log2(downscale)))
        layers: list[nn.Module] = [nn.Conv2d(1, width, 3, padding=1), nn.SiLU()]
        ch = width
        for _ in range(steps):
            layers += [nn.Conv2d(ch, min(ch * 2, 128), 3, stride=2, padding=1), nn.SiLU()]
            ch = min(ch * 2, 128)
        self.net = nn.Sequential(*layers)
        self.proj_out = nn.Conv2d(ch, latent_channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        return self.proj_out(self.net(mask))
