"""Drift guard: motion frames may not wander far from the portrait's colour and contrast.

Each clip continues from the last latents of the one before, so a small bias of the few-step
sampler (or of INT8/bf16 arithmetic) can accumulate over thousands of clips: colours creep, the
image fades or sharpens. Before a clip starts, its motion frames are compared with the reference
latent per channel: a mean that strays more than ``tolerance`` reference standard deviations,
or a standard deviation more than a factor ``1 + tolerance`` away, is pulled back to that bound.
Inside the bounds (all ordinary frames: the bundled model stays within 0.07 std and a 0.94-1.04
factor over long runs) the frames pass untouched, so the guard costs nothing and changes nothing
until something drifts, and then it corrects a little per clip, never with a visible jump.
"""

from __future__ import annotations

import torch

DEFAULT_TOLERANCE = 0.15


def channel_deviation(latents: torch.Tensor, reference_latent: torch.Tensor):
    """Per channel and frame, how far latents (B, C, F, h, w) stray from the reference (B, C, h, w).

    Returns (mean - reference mean, std / reference std, mean, std, reference std), the last three
    broadcastable to the latents.
    """
    m = latents.float()
    ref = reference_latent.float()
    ref_mean = ref.mean(dim=(2, 3))[:, :, None, None, None]
    ref_std = ref.std(dim=(2, 3))[:, :, None, None, None].clamp_min(1e-6)
    mean = m.mean(dim=(3, 4), keepdim=True)
    std = m.std(dim=(3, 4), keepdim=True).clamp_min(1e-6)
    return mean - ref_mean, std / ref_std, mean, std, ref_std


def anchor_motion(motion: torch.Tensor, reference_latent: torch.Tensor,
                  tolerance: float = DEFAULT_TOLERANCE) -> torch.Tensor:
    """motion (B, C, M, h, w), reference_latent (B, C, h, w) -> motion with per-channel stats in bounds."""
    if tolerance <= 0 or motion.shape[2] == 0:
        return motion
    offset, ratio, mean, _, ref_std = channel_deviation(motion, reference_latent)
    limit = tolerance * ref_std
    shift = offset - offset.clamp(-limit, limit)
    scale = ratio.clamp(1 / (1 + tolerance), 1 + tolerance) / ratio
    if not shift.any() and bool((scale == 1).all()):
        return motion
    return ((motion.float() - mean) * scale + mean - shift).to(motion.dtype)
