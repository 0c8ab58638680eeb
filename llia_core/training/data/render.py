"""Draw a cartoon talking head for one pose. Framing matches the model's portrait crop.

Coordinates are in face-box units of the framing contract (`llia_core/framing.py`): the face box
spans [-1, 1] on both axes and is centred in the image with side R / FACE_SCALE.
Drawing happens at 4x and is reduced with area interpolation (anti-aliasing).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ...framing import DRAWN_EYE_X, DRAWN_EYE_Y, FACE, FACE_SCALE, MOUTH_CENTRE_Y, Framing
from .identity import IdentityParams

SS = 4  # supersampling factor


@dataclass(frozen=True)
class FramePose:
    mouth_open: float = 0.0
    mouth_width: float = 0.5
    mouth_round: float = 0.0
    smile: float = 0.0
    blink: float = 0.0
    head_dx: float = 0.0  # pixels at target resolution
    head_dy: float = 0.0
    head_roll: float = 0.0  # degrees
    head_nod: float = 0.0  # 0..1 downward nod
    breath: float = 0.0  # -1..1 shoulder rise


class _Canvas:
    def __init__(self, size: int):
        self.size = size
        self.u = size / (2 * FACE_SCALE)

    def pt(self, x, y):
        return (int(round((self.size / 2 + x * self.u) * 16)), int(round((self.size / 2 + y * self.u) * 16)))

    def pts(self, xs, ys):
        return np.stack([(self.size / 2 + np.asarray(xs) * self.u) * 16,
                         (self.size / 2 + np.asarray(ys) * self.u) * 16], -1).round().astype(np.int32)

    def ax(self, a, b):
        return (max(1, int(round(a * self.u * 16))), max(1, int(round(b * self.u * 16))))


def _ellipse(img, cv, x, y, a, b, color, angle=0.0, start=0, end=360, thickness=-1):
    import cv2

    cv2.ellipse(img, cv.pt(x, y), cv.ax(a, b), angle, start, end, color, thickness, cv2.LINE_AA, 4)


def _poly(img, cv, xs, ys, color):
    import cv2

    cv2.fillPoly(img, [cv.pts(xs, ys)], color, cv2.LINE_AA, 4)


def _line(img, cv, xs, ys, color, width):
    import cv2

    cv2.polylines(img, [cv.pts(xs, ys)], False, color, max(1, int(round(width * cv.u))), cv2.LINE_AA, 4)


def _shade(color, k):
    return tuple(int(max(0, min(255, c * k))) for c in color)


@functools.lru_cache(maxsize=64)
def _background(ident: IdentityParams, size: int) -> np.ndarray:
    img = np.empty((size, size, 3), np.uint8)
    a, b = np.array(ident.background, float), np.array(ident.background2, float)
    if ident.background_kind == "flat":
        img[:] = a.astype(np.uint8)
    elif ident.background_kind == "gradient":
        t = np.linspace(0, 1, size)[:, None, None]
        img[:] = (a * (1 - t) + b * t).astype(np.uint8)
    else:
        img[:] = a.astype(np.uint8)
        img[:, size // 3:] = b.astype(np.uint8)
    return img


def _draw_body(img, cv, ident: IdentityParams, breath: float):
    lift = -0.04 * breath
    neck = _shade(ident.skin, 0.88)
    _poly(img, cv, [-0.3, 0.3, 0.34, -0.34], [0.7, 0.7, 1.7 + lift, 1.7 + lift], neck)
    _ellipse(img, cv, 0, 2.35 + lift, 1.95, 0.95, ident.shirt)
    if ident.neckline == "round":
        _ellipse(img, cv, 0, 1.42 + lift, 0.36, 0.2, neck, start=0, end=180)
    elif ident.neckline == "v":
        _poly(img, cv, [-0.32, 0.32, 0.0], [1.4 + lift, 1.4 + lift, 1.85 + lift], neck)
    else:
        _poly(img, cv, [-0.34, 0.0, -0.1], [1.42 + lift, 1.62 + lift, 1.85 + lift], (235, 235, 235))
        _poly(img, cv, [0.34, 0.0, 0.1], [1.42 + lift, 1.62 + lift, 1.85 + lift], (235, 235, 235))


def _draw_hair_back(img, cv, ident, cy):
    w, v, c = ident.face_w, ident.hair_volume, ident.hair_color
    if ident.hair_style == "long":
        _poly(img, cv, [-w - 0.22 * v, w + 0.22 * v, w + 0.3 * v, -w - 0.3 * v], [cy, cy, 1.55, 1.55], c)
        _ellipse(img, cv, 0, cy, w + 0.22 * v, ident.face_h + 0.18 * v, c)
    elif ident.hair_style == "bob":
        _ellipse(img, cv, 0, cy + 0.1, w + 0.24 * v, ident.face_h + 0.12 * v, c)
    elif ident.hair_style == "curly":
        for k in range(14):
            ang = np.pi * (0.95 + 1.1 * k / 13)
            _ellipse(img, cv, (w + 0.05) * np.cos(ang), cy + (ident.face_h + 0.05) * np.sin(ang) * 0.95,
                     0.28 * v, 0.28 * v, c)
    elif ident.hair_style in ("short", "bun"):
        _ellipse(img, cv, 0, cy - 0.05, w + 0.08 * v, ident.face_h + 0.08 * v, c, start=180, end=360)
        if ident.hair_style == "bun":
            _ellipse(img, cv, 0, cy - ident.face_h - 0.2 * v, 0.3 * v, 0.26 * v, c)


def _draw_head(img, cv, ident: IdentityParams, pose: FramePose):
    w, h = ident.face_w, ident.face_h
    cy = 1.0 - h
    skin, dark = ident.skin, _shade(ident.skin, 0.78)
    _draw_hair_back(img, cv, ident, cy)
    for s in (-1, 1):  # ears
        _ellipse(img, cv, s * w * 0.97, -0.1, 0.15 * ident.ear_size, 0.26 * ident.ear_size, _shade(skin, 0.92))
    _ellipse(img, cv, 0, cy, w, h, skin)
    if ident.jaw > 0.5:
        k = (ident.jaw - 0.5) * 2
        _poly(img, cv, [-w * 0.98, w * 0.98, w * (0.55 + 0.2 * k), -w * (0.55 + 0.2 * k)],
              [0.2, 0.2, 0.92, 0.92], skin)
    if ident.hair_style not in ("bald",):  # fringe
        v = ident.hair_volume
        _ellipse(img, cv, 0, -0.95, w * 1.0, 0.42 * v, ident.hair_color, start=180, end=360)
    nod = 0.08 * pose.head_nod
    # eyes
    ey = DRAWN_EYE_Y + nod
    for s in (-1, 1):
        ex = s * DRAWN_EYE_X * ident.eye_spacing
        a, b = 0.17 * ident.eye_size, 0.1 * ident.eye_size
        _ellipse(img, cv, ex, ey, a, b, (250, 250, 250))
        _ellipse(img, cv, ex, ey, 0.075 * ident.eye_size, 0.075 * ident.eye_size, ident.iris)
        _ellipse(img, cv, ex, ey, 0.034 * ident.eye_size, 0.034 * ident.eye_size, (15, 15, 15))
        lid = ey - b + pose.blink * 2 * b
        _ellipse(img, cv, ex, lid - b * 1.05, a * 1.12, b * 1.1, skin)
        _ellipse(img, cv, ex, lid - b * 1.05, a * 1.12, b * 1.1, (40, 30, 30), start=20, end=160,
                 thickness=max(1, int(0.02 * cv.u)))
        # brows
        by = -0.58 + nod * 0.8 - 0.03 * pose.smile
        ang = np.deg2rad(ident.brow_angle) * s
        xs = np.array([ex - 0.17, ex + 0.17])
        ys = by + (xs - ex) * np.tan(ang) * s
        _line(img, cv, xs, ys, ident.brow_color, 0.045 * ident.brow_thick)
    if ident.glasses:
        t = max(1, int(0.025 * cv.u))
        for s in (-1, 1):
            ex = s * DRAWN_EYE_X * ident.eye_spacing
            _ellipse(img, cv, ex, ey, 0.25, 0.17, ident.glasses_color, thickness=t)
        _line(img, cv, [-0.13, 0.13], [ey - 0.02, ey - 0.02], ident.glasses_color, 0.025)
    # nose
    ns = ident.nose_size
    _line(img, cv, [0.02, 0.06 * ns, -0.04 * ns], [-0.15 + nod, 0.18 + nod, 0.22 + nod], dark, 0.025)
    _ellipse(img, cv, -0.07 * ns, 0.21 + nod, 0.035, 0.02, _shade(skin, 0.6))
    _ellipse(img, cv, 0.07 * ns, 0.21 + nod, 0.035, 0.02, _shade(skin, 0.6))
    _draw_mouth(img, cv, ident, pose, MOUTH_CENTRE_Y + nod)


def _draw_mouth(img, cv, ident: IdentityParams, pose: FramePose, my: float):
    o = float(np.clip(pose.mouth_open, 0, 1))
    rnd = float(np.clip(pose.mouth_round, 0, 1))
    mw = 0.25 * ident.mouth_width * (0.85 + 0.3 * pose.mouth_width - 0.35 * rnd * min(1.0, o * 3))
    gap = o * 0.26 * (1 + 0.3 * rnd)
    lt = 0.05 * ident.lip_thick
    x = np.linspace(-mw, mw, 25)
    q = 1 - (x / mw) ** 2
    lift = -0.07 * pose.smile * (x / mw) ** 2
    up_in = my - gap * 0.35 * q + lift
    lo_in = my + gap * 0.65 * np.sqrt(np.clip(q, 0, 1)) + lift
    up_out = up_in - lt * np.sqrt(q) * (1 + 0.25 * np.cos(np.pi * x / mw * 2) * 0.3)
    lo_out = lo_in + lt * 1.25 * np.sqrt(q)
    _poly(img, cv, np.concatenate([x, x[::-1]]), np.concatenate([up_out, lo_out[::-1]]), ident.lip_color)
    if gap > 0.012:
        _poly(img, cv, np.concatenate([x, x[::-1]]), np.concatenate([up_in, lo_in[::-1]]), (45, 12, 20))
        if o > 0.3:
            teeth = np.minimum(up_in + min(gap * 0.28, 0.05), lo_in)
            _poly(img, cv, np.concatenate([x, x[::-1]]) * 0.8, np.concatenate([up_in, teeth[::-1]]), (240, 240, 235))
    else:
        _line(img, cv, x, (up_in + lo_in) / 2, _shade(ident.lip_color, 0.55), 0.018)


def render_frame(ident: IdentityParams, pose: FramePose, resolution: int = 128) -> np.ndarray:
    """(R, R, 3) uint8 portrait of ``ident`` in ``pose``."""
    import cv2

    size = resolution * SS
    cv = _Canvas(size)
    img = _background(ident, size).copy()
    _draw_body(img, cv, ident, pose.breath)
    head = np.zeros((size, size, 3), np.uint8)
    alpha = np.zeros((size, size, 3), np.uint8)
    _draw_head(head, cv, ident, pose)
    # alpha: the same head silhouette drawn white on black
    white = IdentityParams(**{**ident.__dict__, "skin": (255, 255, 255), "hair_color": (255, 255, 255)})
    _draw_head_silhouette(alpha, cv, white)
    if pose.head_dx or pose.head_dy or pose.head_roll or pose.head_nod:
        pivot = (size / 2, size / 2 + 1.0 * cv.u)
        m = cv2.getRotationMatrix2D(pivot, pose.head_roll, 1.0)
        m[0, 2] += pose.head_dx * SS
        m[1, 2] += pose.head_dy * SS + 0.03 * pose.head_nod * cv.u
        head = cv2.warpAffine(head, m, (size, size), flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(alpha, m, (size, size), flags=cv2.INTER_LINEAR)
    a = alpha.astype(np.uint16)
    img = ((head.astype(np.uint16) * a + img.astype(np.uint16) * (255 - a)) // 255).astype(np.uint8)
    return cv2.resize(img, (resolution, resolution), interpolation=cv2.INTER_AREA)


def _draw_head_silhouette(img, cv, ident):
    w, h = ident.face_w, ident.face_h
    cy = 1.0 - h
    c = (255, 255, 255)
    _draw_hair_back(img, cv, ident, cy)
    for s in (-1, 1):
        _ellipse(img, cv, s * w * 0.97, -0.1, 0.15 * ident.ear_size, 0.26 * ident.ear_size, c)
    _ellipse(img, cv, 0, cy, w, h, c)
    if ident.jaw > 0.5:
        k = (ident.jaw - 0.5) * 2
        _poly(img, cv, [-w * 0.98, w * 0.98, w * (0.55 + 0.2 * k), -w * (0.55 + 0.2 * k)], [0.2, 0.2, 0.92, 0.92], c)
    if ident.hair_style != "bald":
        _ellipse(img, cv, 0, -0.95, w, 0.42 * ident.hair_volume, c, start=180, end=360)


def mouth_box(resolution: int = 128, view: Framing = FACE) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) covering every mouth shape plus head motion; excluded from identity scores.
    ``view``: the crop's framing."""
    (x0, y0), (x1, y1) = view.to_pixels([[-0.5, 0.3], [0.5, 0.98]], resolution)
    return (max(0, int(x0)), max(0, int(y0)), int(np.ceil(x1)), int(np.ceil(y1)))
