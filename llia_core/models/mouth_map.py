"""Mouth Map: the mouth head's per-frame mouth shape drawn where the mouth is, added to the latents.

The audio reaches the denoiser through cross-attention only at 16x16 and 8x8, where a mouth is one
or two cells wide, so a small model learns "open while speaking" but renders a blurred mean mouth
that hardly follows the syllables. The audio encoder's mouth head already predicts the true
opening from the audio (r ~ 0.98); this module draws that prediction as two anti-aliased
ellipses (the opening and the lips) at the framing contract's mouth position, at full latent
resolution, and a small conv turns them into a residual on the noisy latents, as the face locator
does for the face region. The denoiser then only has to paint what the map says, locally.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import MOUTH_CENTRE_Y

SUPERSAMPLE = 4  # coverage is measured on a 4x finer grid, then averaged per latent cell


def mouth_ellipses(mouth: torch.Tensor, size: int, face_scale: float) -> torch.Tensor:
    """mouth (N, 3) opening, width, roundness in 0..1 -> (N, 2, size, size) coverage of the mouth
    opening and of the lips, each cell's share inside the ellipse (0..1).

    Geometry in face-box units (the face box spans [-1, 1] and is centred with side R / face_scale),
    the same proportions the training data draws with; a portrait's own mouth may differ a little,
    which the denoiser corrects from the reference.
    """
    o, w, rnd = mouth.float().clamp(0, 1).unbind(-1)
    half_w = 0.25 * (0.85 + 0.3 * w - 0.35 * rnd * (3 * o).clamp(max=1.0))
    gap = o * 0.26 * (1 + 0.3 * rnd)
    centre = MOUTH_CENTRE_Y + 0.15 * gap
    fine = size * SUPERSAMPLE
    # cell centres of the fine grid in face-box units (the image spans +-face_scale)
    axis = ((torch.arange(fine, device=mouth.device, dtype=torch.float32) + 0.5) / fine * 2 - 1) * face_scale
    x = axis[None, None, :]
    y = axis[None, :, None] - centre[:, None, None]
    hw = half_w[:, None, None]
    opening = (x / hw) ** 2 + (y / (gap[:, None, None] / 2).clamp_min(1e-4)) ** 2 <= 1
    lips = (x / hw) ** 2 + (y / (gap[:, None, None] / 2 + 0.06)) ** 2 <= 1
    maps = torch.stack([opening, lips], 1).float()
    return F.avg_pool2d(maps, SUPERSAMPLE)


class MouthMap(nn.Module):
    """mouth (N, 3) -> (N, latent_channels, size, size) residual; zero at initialisation."""

    def __init__(self, latent_channels: int, face_scale: float, width: int = 32):
        super().__init__()
        self.face_scale = face_scale
        self.net = nn.Sequential(
            nn.Conv2d(2, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.SiLU(),
        )
        self.proj_out = nn.Conv2d(width, latent_channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, mouth: torch.Tensor, size: int) -> torch.Tensor:
        maps = mouth_ellipses(mouth, size, self.face_scale).to(self.proj_out.weight.dtype)
        return self.proj_out(self.net(maps))


class MouthPaint(nn.Module):
    """Repaints the mouth of the predicted clean frame from the audio, pixel by pixel.

    The Mouth Map conditions the input, but a 32-channel top level paints a blurred mean mouth
    from it, and every further sampling step re-invents the mouth from noise (2 steps lip-synced
    worse than 1). For the lossless "patch" latent a latent cell is a block of pixels, so the
    ellipses drawn at pixel resolution and folded the same way (space-to-depth) give every cell
    the exact pixels the mouth covers. A small per-cell net reads that coverage and the portrait's
    own pixels there and proposes the cell's pixels plus a gate; the gate (0..1, zero outside
    the lips and at initialisation) blends the proposal over the denoiser's prediction.
    """

    def __init__(self, latent_channels: int, downscale: int, face_scale: float, width: int = 64):
        super().__init__()
        self.face_scale, self.downscale = face_scale, downscale
        self.net = nn.Sequential(
            nn.Conv2d(2 * downscale**2 + latent_channels, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, width, 1), nn.SiLU(),
        )
        self.proj_out = nn.Conv2d(width, 2 * latent_channels, 1)  # pixel proposal, gate
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, mouth: torch.Tensor, reference_latent: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
        """mouth (N, 3); reference_latent, prediction (N, C, h, w) -> prediction with the mouth repainted."""
        h = reference_latent.shape[-1]
        cover = mouth_ellipses(mouth, h * self.downscale, self.face_scale)
        lips = F.max_pool2d((F.max_pool2d(cover[:, 1:], self.downscale) > 0).float(), 3, 1, 1)  # lips cells, dilated 1
        dtype = self.proj_out.weight.dtype
        feats = torch.cat([F.pixel_unshuffle(cover, self.downscale).to(dtype), reference_latent.to(dtype)], 1)
        proposal, gate = self.proj_out(self.net(feats)).chunk(2, dim=1)
        gate = gate.clamp(0, 1) * lips.to(dtype)
        return prediction + gate * (reference_latent.to(dtype) + proposal - prediction)
