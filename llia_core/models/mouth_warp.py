"""Mouth Warp: the portrait's own pixels moved to the predicted mouth shape.

A small model trained on minutes of real video cannot invent lips, skin and stubble for unseen
people; it can move the ones it is given. The warp takes the audio encoder's mouth shape (opening,
width, roundness, on the training renderer's scales) and this portrait's mouth anchor and returns,
for every output point, where in the reference to read it: the upper lip rises by 0.35 of the lip
gap and the lower lip and jaw drop by 0.65 of it (the mouth map's opening ellipse, so the two
agree), fading out towards the nose, the cheeks and below the chin; the mouth corners move
outwards or inwards with the width. Inside the opening it reads the lip line; what the inside of a
mouth looks like is the denoiser's residual.

The map is analytic, so the same shape is applied to the model's 128 px crop (the denoiser's x0 is
"the warped reference + a residual") and to the full-resolution picture (``portrait/paste_back.py``),
which stays as sharp as the photo. Coordinates are the framing contract's face-box units
(``framing.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..framing import Framing, neutral_mouth_anchor

NEUTRAL_MOUTH = (0.0, 0.5, 0.0)  # opening, width, roundness of the portrait's own (closed) mouth
UPPER_SHARE = 0.35  # of the lip gap, above the closed lip line (as ``mouth_ellipses`` centres it)
GAP_AT_OPEN = 0.26  # lip gap at opening 1, face-box units (the renderer's and the mouth map's)
TEETH_HEIGHT = 0.055  # the upper front teeth's visible height under the upper lip, face-box units (x width scale)


def _fall(d: torch.Tensor, inner: torch.Tensor | float, outer: torch.Tensor | float) -> torch.Tensor:
    """1 for d <= inner, 0 for d >= outer, smoothstep between (d >= 0)."""
    t = ((d - inner) / (outer - inner)).clamp(0, 1)
    return 1 - t * t * (3 - 2 * t)


def scale_mouth(mouth: torch.Tensor, amplitude: float) -> torch.Tensor:
    """(..., 3) mouth shapes moved ``amplitude`` times as far from the neutral mouth (0 still, 1 as
    they are, 2 twice as far), within the shapes' 0..1 range."""
    if amplitude == 1:
        return mouth
    neutral = torch.tensor(NEUTRAL_MOUTH, dtype=mouth.dtype, device=mouth.device)
    return (neutral + (mouth - neutral) * amplitude).clamp(0, 1)


def _lens(x, y, mouth, anchor):
    """The opening's geometry at the output points: (dx, dy, lens profile, upper and lower lip
    offsets, gap, width factor, anchor parts)."""
    n = mouth.shape[0]
    if anchor is None:
        anchor = neutral_mouth_anchor()
    anchor = anchor.to(mouth.device, torch.float32).expand(n, 3)
    shape = (n,) + (1,) * (max(x.ndim, y.ndim) - 1)
    o, w, rnd = (v.reshape(shape) for v in mouth.float().clamp(0, 1).unbind(-1))
    ax, ay, s = (v.reshape(shape) for v in anchor.unbind(-1))
    gap = o * GAP_AT_OPEN * (1 + 0.3 * rnd)
    up, down = UPPER_SHARE * gap, (1 - UPPER_SHARE) * gap
    hw0 = 0.25 * s
    k = 0.85 + 0.3 * w - 0.35 * rnd * (3 * o).clamp(max=1.0)  # mouth width over the neutral one
    dx, dy = x - ax, y - ay
    # the lips part in a lens: the gap is widest in the middle and closes at the corners
    lens = (1 - (dx / (hw0 * k)) ** 2).clamp(min=0).sqrt()
    return dx, dy, lens, up, down, gap, k, hw0, ax, ay, s


def mouth_source(x: torch.Tensor, y: torch.Tensor, mouth: torch.Tensor,
                 anchor: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each output point reads the reference.

    Args:
        x, y: (N, ...) or broadcastable output points in face-box units.
        mouth: (N, 3) opening, width, roundness in 0..1.
        anchor: (N, 3) or (3,) this portrait's mouth (centre x, lip-line y, width scale); None = the
            framing contract's.
    Returns:
        (src_x, src_y) like x, y, in face-box units.
    """
    return _source(x, y, _lens(x, y, mouth, anchor))


def opening_depth(x: torch.Tensor, y: torch.Tensor, mouth: torch.Tensor,
                  anchor: torch.Tensor | None = None) -> torch.Tensor:
    """0..1 how deep inside the opening each output point lies: 0 on and outside the lips, 1 on the
    line midway between them (the darkest part of a real open mouth)."""
    return _depth(_lens(x, y, mouth, anchor))


def upper_teeth(x: torch.Tensor, y: torch.Tensor, mouth: torch.Tensor,
                anchor: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the upper front teeth show in the opening: (coverage 0..1, light 0..1 for their colour).
    The band hangs under the upper lip, ``TEETH_HEIGHT`` deep (at most 0.4 of the gap), across the
    middle of the lens (hidden towards the corners), once the lips part by more than a slit; the
    light darkens it under the lip, towards the corners and between the incisors."""
    return _teeth(_lens(x, y, mouth, anchor))


def source_and_interior(x: torch.Tensor, y: torch.Tensor, mouth: torch.Tensor, anchor: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``mouth_source``, ``opening_depth`` and ``upper_teeth`` at once (one geometry pass: the
    paste-back's per-frame call): (src_x, src_y, depth, teeth coverage, teeth light)."""
    lens = _lens(x, y, mouth, anchor)
    return (*_source(x, y, lens), _depth(lens), *_teeth(lens))


def _source(x, y, geometry):
    dx, dy, lens, up, down, gap, k, hw0, ax, ay, s = geometry
    adx = dx.abs()
    up_x, down_x = up * lens, down * lens
    # below the lips the jaw drops as one piece (wider than the lens), fading towards the cheeks
    jaw = _fall(adx, 0.45 * s, 0.9 * s)
    blend = ((dy - down_x) / (0.3 * s)).clamp(0, 1)
    drop = down * (lens * (1 - blend) + torch.maximum(lens, jaw) * blend)
    upper = y + up_x * _fall(-dy - up_x, 0.0, 0.3 * s)
    lower = y - drop * _fall(dy - down_x, 0.45 * s, 0.75 * s)
    inside = (dy >= -up_x) & (dy <= down_x) & (lens > 0) & (gap > 1e-4)
    src_y = torch.where(dy < -up_x, upper, lower)
    # inside the opening: the middle of the closed lip line (one colour the residual paints over)
    src_y = torch.where(inside, ay + torch.zeros_like(dy), src_y)
    # horizontal: each corner moves by the width change, the lips between follow linearly and the
    # cheeks beyond fade out (slopes stay under 1, so the map never folds)
    shift = hw0 * (k - 1)
    profile = torch.where(adx < hw0, adx / hw0, _fall(adx, hw0, 2.2 * hw0))
    g = _fall(dy.abs(), 0.12 * s + 0.5 * gap, 0.3 * s + gap)
    src_x = x - torch.sign(dx) * shift * profile * g
    src_x = torch.where(inside, ax + torch.zeros_like(dx), src_x)
    return src_x, src_y


def _depth(geometry):
    dx, dy, lens, up, down, gap, *_ = geometry
    half = 0.5 * (up + down) * lens
    centre = 0.5 * (down - up) * lens  # midway between the parted lips
    depth = 1 - (dy - centre).abs() / half.clamp(min=1e-6)
    return torch.where((half > 1e-4) & (gap > 1e-4), depth.clamp(0, 1), torch.zeros_like(depth))


def _teeth(geometry):
    dx, dy, lens, up, down, gap, k, hw0, ax, ay, s = geometry
    local = (up + down) * lens  # the gap in this column
    below = dy + up * lens  # under the upper lip's inner edge
    inside = (below >= 0) & (below <= local) & (local > 1e-4) & (gap > 0.03 * s)
    cover, light = torch.zeros_like(below), torch.zeros_like(below)
    if not bool(inside.any()):
        return cover, light
    # the rest only where the opening is (a small part of the grid the paste-back warps every frame)
    where = inside.nonzero(as_tuple=True)
    pick = lambda t: torch.broadcast_to(t, inside.shape)[where]  # noqa: E731  (gathers only those points)
    below, lens_in, gap_in, s_in = pick(below), pick(lens), pick(gap), pick(s)
    band = torch.minimum(0.4 * pick(local), TEETH_HEIGHT * s_in).clamp(min=1e-6)
    v = below / band  # 0 at the lip, 1 at the teeth's edge
    cover[where] = (_fall(v, 0.6, 1.0) * (1 - _fall(v, 0.0, 0.12))  # a soft edge under the lip and at the tips
                     * (1 - _fall(lens_in, 0.3, 0.75)) * (1 - _fall(gap_in, 0.03 * s_in, 0.09 * s_in)))  # front teeth
    # light: the upper lip's shadow at the top, the arch turning away towards the corners, and the
    # faint gaps between the front teeth (across the mouth: 0 in the middle, 1 at the corners)
    across = (pick(dx) / (pick(hw0) * pick(k))).abs()
    gaps = torch.exp(-(across / 0.025) ** 2) + torch.exp(-((across - 0.3) / 0.025) ** 2)
    light[where] = (0.65 + 0.35 * (v / 0.4).clamp(0, 1).sqrt()) * (0.75 + 0.25 * lens_in) * (1 - 0.1 * gaps)
    return cover, light


def warp_grid(mouth: torch.Tensor, size: int, view: Framing,
              anchor: torch.Tensor | None = None) -> torch.Tensor:
    """(N, size, size, 2) ``grid_sample`` grid (align_corners=False) of the mouth warp on a square
    crop that shows ``view`` of the face."""
    xs, ys = view.axes(size, mouth.device)
    sx, sy = mouth_source(xs[None, None, :], ys[None, :, None], mouth, anchor)
    sx, sy = torch.broadcast_tensors(sx, sy)
    return torch.stack([sx, sy - view.centre_y], -1) / view.scale


def warp_pixels(pixels: torch.Tensor, mouth: torch.Tensor, view: Framing,
                anchor: torch.Tensor | None = None) -> torch.Tensor:
    """pixels (N, 3, R, R) -> the same crops with the mouth moved to ``mouth`` (N, 3)."""
    grid = warp_grid(mouth, pixels.shape[-1], view, anchor).to(pixels.dtype)
    return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)


def darken_opening(pixels: torch.Tensor, mouth: torch.Tensor, view: Framing, light: float,
                   anchor: torch.Tensor | None = None) -> torch.Tensor:
    """pixels (N, 3, R, R) (warped to ``mouth``) with the inside of the opening at ``light`` times its
    brightness (the lip line the warp stretches there, whatever the lipstick, becomes a dark cavity),
    fading in over the outer fifth of the opening's depth."""
    xs, ys = view.axes(pixels.shape[-1], pixels.device)
    depth = opening_depth(xs[None, None, :], ys[None, :, None], mouth, anchor)
    return pixels * (1 - (1 - light) * (depth / 0.2).clamp(max=1))[:, None].to(pixels.dtype)


def warp_patch_latent(latent: torch.Tensor, mouth: torch.Tensor, view: Framing, downscale: int,
                      anchor: torch.Tensor | None = None, opening_light: float = 1.0) -> torch.Tensor:
    """The same warp for the lossless "patch" latent (N, 3 * f * f, h, w): unfold to pixels, warp, fold."""
    pixels = F.pixel_shuffle(latent, downscale)
    warped = warp_pixels(pixels, mouth, view, anchor)
    if opening_light != 1.0:
        warped = darken_opening(warped, mouth, view, opening_light, anchor)
    return F.pixel_unshuffle(warped, downscale)


def mouth_region(size: int, view: Framing, anchor: torch.Tensor | None = None, n: int = 1) -> torch.Tensor:
    """(n, 1, size, size) soft 0..1 region around the mouth and jaw (nose to below the chin).

    Where a "real" model's residual may change the warped portrait: eyes, forehead and the
    picture stay the photo's own pixels, so they cannot shimmer or drift from the identity.
    """
    if anchor is None:
        anchor = neutral_mouth_anchor()
    ax, ay, s = (v.reshape(-1, 1, 1) for v in anchor.float().expand(n, 3).unbind(-1))
    xs, ys = view.axes(size, anchor.device)
    x, y = xs[None, None, :], ys[None, :, None]
    d = ((x - ax) / (0.62 * s)) ** 2 + ((y - (ay + 0.12)) / (0.5 * s)) ** 2
    return _fall(d.sqrt(), 0.8, 1.0)[:, None]
