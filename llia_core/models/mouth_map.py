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

from ..framing import Framing, neutral_mouth_anchor

SUPERSAMPLE = 4  # coverage is measured on a 4x finer grid, then averaged per latent cell


def mouth_ellipses(mouth: torch.Tensor, size: int, view: Framing,
                   anchor: torch.Tensor | None = None) -> torch.Tensor:
    """mouth (N, 3) opening, width, roundness in 0..1 -> (N, 2, size, size) coverage of the mouth
    opening and of the lips, each cell's share inside the ellipse (0..1).

    Geometry in face-box units of the framing contract (`framing.py`), the proportions the training
    data draws with. ``anchor`` (N, 3) or (3,): where this portrait's mouth is (centre x, centre y of
    the closed lip line) and how wide it is against the drawn mouth, from its landmarks; None = the
    contract's own mouth (the training data).
    """
    o, w, rnd = mouth.float().clamp(0, 1).unbind(-1)
    if anchor is None:
        anchor = neutral_mouth_anchor()
    ax, ay, scale = anchor.to(mouth.device, torch.float32).expand(mouth.shape[0], 3).unbind(-1)
    half_w = 0.25 * (0.85 + 0.3 * w - 0.35 * rnd * (3 * o).clamp(max=1.0)) * scale
    gap = o * 0.26 * (1 + 0.3 * rnd)
    centre = ay + 0.15 * gap
    fine = size * SUPERSAMPLE
    xs, ys = view.axes(fine, mouth.device)  # cell centres of the fine grid in face-box units
    x = xs[None, None, :] - ax[:, None, None]
    y = ys[None, :, None] - centre[:, None, None]
    hw = half_w[:, None, None]
    opening = (x / hw) ** 2 + (y / (gap[:, None, None] / 2).clamp_min(1e-4)) ** 2 <= 1
    lips = (x / hw) ** 2 + (y / (gap[:, None, None] / 2 + 0.06)) ** 2 <= 1
    maps = torch.stack([opening, lips], 1).float()
    return F.avg_pool2d(maps, SUPERSAMPLE)


class MouthMap(nn.Module):
    """mouth (N, 3) -> (N, latent_channels, size, size) residual; zero at initialisation."""

    def __init__(self, latent_channels: int, view: Framing, width: int = 32):
        super().__init__()
        self.view = view
        self.net = nn.Sequential(
            nn.Conv2d(2, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.SiLU(),
        )
        self.proj_out = nn.Conv2d(width, latent_channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, mouth: torch.Tensor, size: int, anchor: torch.Tensor | None = None) -> torch.Tensor:
        maps = mouth_ellipses(mouth, size, self.view, anchor).to(self.proj_out.weight.dtype)
        return self.proj_out(self.net(maps))


class MouthPaint(nn.Module):
    """Repaints the mouth of the predicted clean frame from the audio, pixel by pixel.

    The Mouth Map conditions the input, but a 32-channel top level paints a blurred mean mouth
    from it, and every further sampling step re-invents the mouth from noise (2 steps lip-synced
    worse than 1). For the lossless "patch" latent a latent cell is a block of pixels, so the
    ellipses drawn at pixel resolution and folded the same way (space-to-depth) say exactly which
    of a cell's pixels the opening and the lips cover. A small per-cell net reads that coverage, the
    portrait's own pixels and the denoiser's prediction (where the head really is, how wide this
    face's mouth is) and gives each cell two colours, the opening's and the lips', which are laid
    over the portrait's pixels with the coverage as alpha, so the edges are as sharp as the
    ellipses; plus a residual (teeth, lip shapes the ellipses miss) and a gate. The gate (0..1,
    zero outside the lips and at initialisation) blends that proposal over the prediction; with
    ``gated=False`` (the bundled model) the proposal replaces the lips cells outright, which kept
    the denoiser's frame-to-frame texture noise out of a shut mouth.
    """

    def __init__(self, latent_channels: int, downscale: int, view: Framing, width: int = 64,
                 gated: bool = True):
        super().__init__()
        self.view, self.downscale, self.gated = view, downscale, gated
        self.net = nn.Sequential(
            nn.Conv2d(2 * downscale**2 + 2 * latent_channels, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, width, 1), nn.SiLU(),
        )
        gates = latent_channels if gated else 0
        self.proj_out = nn.Conv2d(width, latent_channels + gates + 6, 1)  # residual, gate, 2 colours
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def propose(self, mouth: torch.Tensor, reference_latent: torch.Tensor, prediction: torch.Tensor,
                anchor: torch.Tensor | None = None):
        """-> (painted, gate, lips): the proposed cells (N, C, h, w), the gate (N, C, h, w) and the
        (dilated) lips cells (N, 1, h, w) it is confined to."""
        h, c, ds = reference_latent.shape[-1], reference_latent.shape[1], self.downscale
        cover = mouth_ellipses(mouth, h * ds, self.view, anchor)
        dtype = self.proj_out.weight.dtype
        lips = F.max_pool2d((F.max_pool2d(cover[:, 1:], ds) > 0).float(), 3, 1, 1).to(dtype)
        ref, pred = reference_latent.to(dtype), prediction.to(dtype)
        feats = torch.cat([F.pixel_unshuffle(cover, ds).to(dtype), ref, pred], 1)
        residual, gate, colours = self.proj_out(self.net(feats)).split([c, c if self.gated else 0, 6], dim=1)
        # alpha per latent channel: the patch latent's channel k is colour k // ds² of pixel k % ds²
        alpha = lambda m: F.pixel_unshuffle(m, ds).repeat(1, 3, 1, 1).to(dtype)  # noqa: E731
        a_open, a_lips = alpha(cover[:, :1]), alpha((cover[:, 1:] - cover[:, :1]).clamp_min(0))
        c_open, c_lips = colours.repeat_interleave(ds * ds, dim=1).chunk(2, dim=1)
        painted = a_open * c_open + a_lips * c_lips + (1 - a_open - a_lips) * ref + residual
        if not self.gated:
            # the paint owns the lips cells outright; unlike the gated paint it is not nothing at
            # initialisation (a grey mouth on the portrait), so it must be trained before use
            return painted, lips.expand_as(painted), lips
        # Clamped going forward but not backward: a plain clamp has no gradient below 0, and at the
        # start (proposal 0, so the blend shows the closed reference mouth) every open-mouth cell
        # was pushed there at once and stayed shut; the session-6 model's gate was 0.04 where the
        # mouth is open. The proposal is also trained on its own (`PaintInputs` in the trainer), so
        # it is worth opening the gate for once it is good.
        gate = (gate + (gate.clamp(0, 1) - gate).detach()) * lips
        return painted, gate, lips

    def forward(self, mouth: torch.Tensor, reference_latent: torch.Tensor, prediction: torch.Tensor,
                anchor: torch.Tensor | None = None) -> torch.Tensor:
        """mouth (N, 3); reference_latent, prediction (N, C, h, w); anchor (N, 3) or None -> the
        prediction with the mouth repainted."""
        painted, gate, _ = self.propose(mouth, reference_latent, prediction, anchor)
        pred = prediction.to(painted.dtype)
        return pred + gate * (painted - pred)
