"""The mouth painter: the inside of an open mouth (teeth, tongue, the dark of the throat), made by a
network at the mouth's own size instead of drawn by code.

The warp (``mouth_warp.py``) moves the photo's lips, chin and jaw; what no warp can show is what lies
between parted lips. The denoiser's 128 px crop of the whole face gives an open mouth ~23 px, too few
for teeth. This second, mouth-sized stage works in a window aligned to the face (``WINDOW``, face-box
units, ``SIZE`` pixels: an open mouth ~70 px wide): it sees the moved picture with the opening blanked,
where the opening is (``mask``) and the person's own closed mouth (the reference), and paints the
opening. It is trained on real talking videos (``training/painter_train.py``): the real frame's opening
(inside the face mesh's inner lip line) blanked and painted back. It is deterministic, so a mouth held
open is painted the same from frame to frame (no shimmer), and it runs only on frames whose mouth is
open.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import framing

WINDOW = (-0.45, 0.30, 0.45, 0.975)  # x0, y0, x1, y1 in face-box units: the lips and the opened jaw's top
SIZE = (96, 72)  # width, height in pixels: the window's 0.9 x 0.675 units at 1.07 px per 0.01 unit
CHANNELS = (16, 32, 64)


def window_matrix(crop_to_source: np.ndarray | None = None, *, source_to_crop: np.ndarray | None = None,
                  resolution: int = 128, view: framing.Framing = framing.FACE) -> np.ndarray:
    """2x3 affine: source pixels -> window pixels, from the alignment (source -> ``resolution`` crop
    of ``view``) or its inverse."""
    if source_to_crop is None:
        import cv2

        source_to_crop = cv2.invertAffineTransform(np.asarray(crop_to_source, np.float64))
    x0, y0, x1, y1 = WINDOW
    k = SIZE[0] / (x1 - x0) / view.unit(resolution)  # window pixels per crop pixel
    (ox, oy), = view.to_pixels([[x0, y0]], resolution)
    shift = np.array([[k, 0, -k * ox], [0, k, -k * oy], [0, 0, 1]])
    return (shift @ np.vstack([np.asarray(source_to_crop, np.float64), [0, 0, 1]]))[:2]


def units_to_window(points) -> np.ndarray:
    """(N, 2) face-box units -> window pixels."""
    x0, y0, x1, _ = WINDOW
    k = SIZE[0] / (x1 - x0)
    return (np.asarray(points, np.float64)[..., :2] - (x0, y0)) * k


def drawn_opening(window: np.ndarray, opening: np.ndarray) -> np.ndarray:
    """The painter's starting point: the opening drawn as the paste-back used to draw it, from the window
    alone (so training on real mouths and painting warped ones start alike). ``window`` (H, W, 3) 0..255,
    ``opening`` (H, W) bool -> (H, W, 3) float32: inside the opening the lips' colour darkening towards
    the middle line, and under the upper lip the upper front teeth, lit like the brightest skin; 0
    elsewhere."""
    import cv2

    from ..portrait.paste_back import INTERIOR_SHADE, lip_colour, teeth_colour
    from .mouth_warp import TEETH_HEIGHT

    out = np.zeros(window.shape, np.float32)
    if not opening.any():
        return out
    f = window.astype(np.float32)
    m = opening.astype(np.uint8)
    ring = (cv2.dilate(m, np.ones((7, 7), np.uint8)) > 0) & ~(cv2.dilate(m, np.ones((3, 3), np.uint8)) > 0)
    lip = lip_colour(f[ring] if ring.any() else f.reshape(-1, 3))
    skin = f[~(cv2.dilate(m, np.ones((11, 11), np.uint8)) > 0)]
    teeth = teeth_colour(skin if len(skin) else f.reshape(-1, 3))
    # per column: the opening's top and bottom rows, the depth of each pixel from the lips to the middle
    rows = np.arange(opening.shape[0])[:, None]
    any_col = opening.any(0)
    top = np.where(any_col, opening.argmax(0), 0)
    bottom = np.where(any_col, opening.shape[0] - 1 - opening[::-1].argmax(0), 0)
    half = np.maximum((bottom - top + 1) / 2, 0.5)
    depth = np.clip(1 - np.abs(rows - (top + bottom) / 2) / half, 0, 1)
    drawn = lip * (1 - INTERIOR_SHADE * np.sqrt(depth))[..., None]
    # the upper front teeth: a band under the upper lip, across the middle of the mouth, once it parts
    cols = np.flatnonzero(any_col)
    centre, width = cols.mean(), max(float(np.ptp(cols)) / 2, 1.0)
    across = np.abs(np.arange(opening.shape[1]) - centre) / width
    band = np.minimum(0.4 * 2 * half, TEETH_HEIGHT * SIZE[0] / (WINDOW[2] - WINDOW[0]))
    v = (rows - top) / np.maximum(band, 1e-6)
    cover = (v >= 0) & (v <= 1) & (across < 0.6) & (2 * half >= 3)
    light = 0.65 + 0.35 * np.sqrt(np.clip(v / 0.4, 0, 1))
    drawn = np.where(cover[..., None], teeth * light[..., None], drawn)
    out[opening] = drawn[opening]
    return out


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.SiLU())


class MouthPainter(nn.Module):
    """(window RGB, the opening: a hard 0/1 mask, reference window RGB, the drawn opening
    (``drawn_opening``)) -> the window RGB with the opening and the lips' inner rim (``feathered``)
    painted. It sees the window with that region blanked and the drawn opening in it, the region, and
    the opening itself (where lip ends and mouth begins inside the region), and adds its correction to
    the drawing (the last layer starts at zero: an untrained painter paints the drawing).
    A small U-Net (3 scales); images in [-1, 1], (B, 3, 72, 96); masks (B, 1, 72, 96)."""

    def __init__(self, channels: tuple[int, int, int] = CHANNELS):
        super().__init__()
        c1, c2, c3 = channels
        self.enc1 = nn.Sequential(_conv(8, c1), _conv(c1, c1))
        self.enc2 = nn.Sequential(_conv(c1, c2, 2), _conv(c2, c2))
        self.mid = nn.Sequential(_conv(c2, c3, 2), _conv(c3, c3), _conv(c3, c3))
        self.dec2 = nn.Sequential(_conv(c3 + c2, c2), _conv(c2, c2))
        self.dec1 = nn.Sequential(_conv(c2 + c1, c1), _conv(c1, c1))
        self.out = nn.Conv2d(c1, 3, 3, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, window: torch.Tensor, opening: torch.Tensor, reference: torch.Tensor,
                drawn: torch.Tensor) -> torch.Tensor:
        mask = feathered(opening)
        blanked = window * (1 - mask)
        start = blanked + opening * drawn
        e1 = self.enc1(torch.cat([start, mask, opening, reference], 1))
        e2 = self.enc2(e1)
        m = self.mid(e2)
        d2 = self.dec2(torch.cat([F.interpolate(m, size=e2.shape[-2:], mode="bilinear", align_corners=False), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, size=e1.shape[-2:], mode="bilinear", align_corners=False), e1], 1))
        painted = (start + self.out(d1)).clamp(-1, 1)
        return blanked + mask * painted


GROW = 3  # pixels the opening is grown by before painting


def feathered(mask: torch.Tensor) -> torch.Tensor:
    """A hard opening mask (B, 1, H, W) 0/1 grown by ``GROW`` pixels into the lips and softened over one
    more, so the painted opening meets the lips without a seam (training and inference alike). The
    growth matters: a face mesh's inner lip line runs a pixel or two inside a real opening, and a painter
    shown the rim of real teeth and shadow around its mask learns to spread them inwards, which it
    cannot do on a warped mouth, whose rim is lip."""
    grown = F.max_pool2d(mask, 2 * GROW + 1, 1, GROW)
    return F.avg_pool2d(grown, 3, 1, 1, count_include_pad=False).clamp(0, 1)
