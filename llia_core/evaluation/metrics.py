"""Metrics that need no learned model: PSNR/SSIM outside a region, mouth opening, continuity.

Frames are (F, H, W, 3) float in 0..1 unless said otherwise.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def region_mask(h: int, w: int, box: tuple[int, int, int, int] | None) -> torch.Tensor:
    """(H, W) bool, True outside ``box`` = (x0, y0, x1, y1) (everything if box is None)."""
    keep = torch.ones(h, w, dtype=torch.bool)
    if box is not None:
        x0, y0, x1, y1 = box
        keep[max(0, y0):y1, max(0, x0):x1] = False
    return keep


def psnr(a: torch.Tensor, b: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Per-frame PSNR in dB over the pixels where ``keep`` (H, W) is True. -> (F,)"""
    err = (a.float() - b.float()) ** 2
    if keep is not None:
        err = err[:, keep]
    mse = err.reshape(err.shape[0], -1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor, keep: torch.Tensor | None = None, window: int = 7) -> torch.Tensor:
    """Per-frame SSIM (Wang et al. 2004, uniform window) averaged where ``keep`` is True. -> (F,)"""
    x = a.float().permute(0, 3, 1, 2)
    y = b.float().permute(0, 3, 1, 2)
    pad = window // 2
    pool = lambda t: F.avg_pool2d(F.pad(t, (pad,) * 4, mode="replicate"), window, 1)  # noqa: E731
    mx, my = pool(x), pool(y)
    vx, vy, cxy = pool(x * x) - mx**2, pool(y * y) - my**2, pool(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    s = s.mean(1)
    if keep is not None:
        return s[:, keep].mean(1)
    return s.reshape(s.shape[0], -1).mean(1)


def align_to(frames: torch.Tensor, target: torch.Tensor, max_shift: int = 6) -> torch.Tensor:
    """Shift each frame by the integer translation that best matches ``target`` (head sway).

    frames, target: (F, H, W, 3). Exhaustive search over +-max_shift px on luminance.
    """
    out = torch.empty_like(frames)
    lum = lambda t: t.float().mean(-1)  # noqa: E731
    for i in range(frames.shape[0]):
        src, ref = lum(frames[i]), lum(target[i])
        best, best_err = (0, 0), float("inf")
        for dy in range(-max_shift, max_shift + 1):
            for dx in range(-max_shift, max_shift + 1):
                shifted = torch.roll(src, (dy, dx), (0, 1))
                m = max_shift
                err = float(((shifted - ref)[m:-m, m:-m] ** 2).mean())
                if err < best_err:
                    best, best_err = (dy, dx), err
        out[i] = torch.roll(frames[i], best, (0, 1))
    return out


MOUTH_INTERIOR = (45 / 255, 12 / 255, 20 / 255)
# Interior share at or below which a mouth counts as closed: every listening/idle ground-truth frame
# of held-out identities measures <= 0.034 (head sway moves the lip line), a fully open mouth 0.05-0.09.
MOUTH_CLOSED_MAX = 0.035


def mouth_darkness(frames: torch.Tensor, box: tuple[int, int, int, int], reference: torch.Tensor) -> torch.Tensor:
    """How open the mouth looks: share of mouth-box pixels showing the dark mouth interior.

    Reads pixels only (colour near the interior's dark red and darker than the closed-mouth
    reference there), so it is independent of the model being evaluated. -> (F,) in 0..1.
    """
    x0, y0, x1, y1 = box
    crop = frames[:, y0:y1, x0:x1].float()
    ref = reference[y0:y1, x0:x1].float()
    near = (crop - torch.tensor(MOUTH_INTERIOR)).norm(dim=-1) < 0.1
    darker = crop.mean(-1) < ref.mean(-1)[None] - 0.1
    dark = near & darker
    return dark.reshape(dark.shape[0], -1).float().mean(1)


def correlation(a, b, undefined: float = 0.0) -> float:
    """Pearson's r; ``undefined`` where it has no value (fewer than 3 points, or either side constant):
    0 for the evaluation tables, NaN where a mean over people should skip it."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return undefined
    return float(np.corrcoef(a, b)[0, 1])


def frame_changes(frames: torch.Tensor) -> torch.Tensor:
    """Mean absolute change between consecutive frames. -> (F - 1,); entry i is frame i -> i+1."""
    return (frames[1:].float() - frames[:-1].float()).abs().reshape(frames.shape[0] - 1, -1).mean(1)


def boundary_ratio(frames: torch.Tensor, boundaries: list[int]) -> float:
    """Mean frame change across the given boundaries (first frame index of a new clip) over the
    mean change inside clips; 1.0 means clip boundaries are as smooth as the rest."""
    d = frame_changes(frames)
    idx = [b - 1 for b in boundaries if 0 < b < frames.shape[0]]
    if not idx:
        return float("nan")
    inside = torch.ones(d.shape[0], dtype=torch.bool)
    inside[idx] = False
    return float(d[idx].mean() / d[inside].mean().clamp_min(1e-8))
