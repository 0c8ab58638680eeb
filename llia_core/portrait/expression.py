"""Reference expression editing: the portrait brought to a template expression before it conditions
the model.

LLIA edits the reference to a known starting face. A photo that smiles with its teeth showing, or
was taken mid-word, would otherwise talk through a frozen grin: the model animates the mouth from
the portrait's own, and in listening and idle it shows the portrait's own. The edit is a smooth
warp of the photo's own pixels around the mouth, measured from its face mesh, so nothing outside
the lips, chin and cheeks next to them changes and no pixel is invented:

- the lips close where the inner lips meet: the upper lip comes down by 0.35 of the gap and the
  lower lip and the jaw come up by 0.65 of it (the mouth warp's shares, ``models/mouth_warp.py``,
  so opening again retraces the same path); what was between them (teeth, tongue) is gone;
- the corners move up or down to the template's height and the mouth to its width.

Templates: ``as_photo`` (no edit), ``neutral`` (closed; corners and width of a relaxed mouth, the
medians of 70 real portraits), ``slight_smile`` (closed; corners raised, a little wider).
Coordinates here are the mouth's own: x along the eye line, y down the face, in half mouth widths
from where the lips meet.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PortraitError
from .landmarks import CHIN, MOUTH_CORNERS, FaceLandmarks

EXPRESSIONS = ("neutral", "as_photo", "slight_smile")
DEFAULT_EXPRESSION = "neutral"

# MediaPipe face-mesh inner lip contours, corner to corner
LIP_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIP_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
SUBNASALE = 2
UPPER_SHARE = 0.35  # of the gap the upper lip comes down (models/mouth_warp.UPPER_SHARE)

# Template geometry, measured with the face mesh on the 70 photos of ../shared/realfaces/photos:
# mouth width / eye distance has median 0.79 (0.62-1.08; smiles 1.0-1.08), the corners sit 0.06 half
# widths above the lip line (median; open smiles 0.2-0.33 above)
NEUTRAL_WIDTH, NEUTRAL_CORNERS = 0.80, -0.06
SMILE_WIDTH, SMILE_CORNERS = 0.90, -0.22
WIDTH_TOLERANCE = 0.03  # widths (over the eye distance) this close to the template stay
CORNER_TOLERANCE = 0.08  # corner heights (half widths) this close to the template stay: a relaxed mouth is left alone


def smooth_fall(d, inner, outer):
    """1 for d <= inner, 0 for d >= outer, smoothstep between (numpy; the warps' falloff)."""
    t = np.clip((d - inner) / (outer - inner), 0.0, 1.0)
    return 1 - t * t * (3 - 2 * t)


@dataclass(frozen=True)
class LocalFrame:
    """A face part's own coordinates in a picture: an origin, x along a direction from the face's
    image-left to its image-right side (as in a frontal photo, by landmark index, so a photo upside
    down gets its own frame) and y at a right angle to it, down the face; one unit of pixels. The mouth's (``of_mouth``): origin where the
    lips meet, x along the eye line, unit half the mouth width; an eye's (``face_motion.py``): its
    corners' midpoint, x corner to corner, unit half its width."""

    origin: np.ndarray
    axes: np.ndarray  # (2, 2) rows: x and y directions in image pixels
    unit: float

    @classmethod
    def along(cls, origin, direction, unit: float) -> "LocalFrame":
        d = np.asarray(direction, np.float64)
        ex = d / max(float(np.hypot(*d)), 1e-6)  # y is x turned a quarter clockwise: down the face
        return cls(np.asarray(origin, np.float64), np.stack([ex, np.array([-ex[1], ex[0]])]), max(float(unit), 1.0))

    @classmethod
    def of_mouth(cls, face: FaceLandmarks) -> "LocalFrame":
        a, b = face.eye_centres()
        return cls.along(face.mouth_centre(), b - a, face.mouth_width() / 2)

    def to_local(self, pts) -> np.ndarray:
        return (np.asarray(pts, np.float64) - self.origin) @ self.axes.T / self.unit

    def to_image(self, u, v) -> tuple[np.ndarray, np.ndarray]:
        x = self.origin[0] + self.unit * (u * self.axes[0, 0] + v * self.axes[1, 0])
        y = self.origin[1] + self.unit * (u * self.axes[0, 1] + v * self.axes[1, 1])
        return x, y


@dataclass(frozen=True)
class MouthEdit:
    """What a template changes, measured on one face (mouth units). ``closes``: the lips meet;
    ``width``: new mouth width / old; ``corners``: how far the corners move (negative = up)."""

    closes: bool
    width: float
    corners: float

    @property
    def is_identity(self) -> bool:
        return not self.closes and abs(self.width - 1) < 1e-6 and abs(self.corners) < 1e-6


def _curve(local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(local[:, 0])
    return local[order, 0], local[order, 1]


def mouth_geometry(face: FaceLandmarks) -> dict:
    """The measurements the templates use: width over eye distance, lip gap (mouth units, largest),
    corner height above the lip line (mouth units, negative = raised)."""
    frame = LocalFrame.of_mouth(face)
    up = frame.to_local(face.xy[list(LIP_INNER_UPPER)])
    lo = frame.to_local(face.xy[list(LIP_INNER_LOWER)])
    a, b = face.eye_centres()
    corners = frame.to_local(face.xy[list(MOUTH_CORNERS)])
    gap = np.interp(np.linspace(-0.6, 0.6, 13), *_curve(lo)) - np.interp(np.linspace(-0.6, 0.6, 13), *_curve(up))
    seam = float(np.interp(0.0, *_curve(up)) + UPPER_SHARE * max(gap.max(), 0.0))
    return {"width": face.mouth_width() / max(float(np.hypot(*(b - a))), 1e-6),
            "gap": float(max(gap.max(), 0.0)), "corners": float(corners[:, 1].mean() - seam)}


def plan_edit(face: FaceLandmarks, expression: str) -> MouthEdit:
    """The edit that brings this face to ``expression``."""
    if expression not in EXPRESSIONS:
        raise PortraitError(f"unknown expression '{expression}'; use one of {', '.join(EXPRESSIONS)}")
    if expression == "as_photo":
        return MouthEdit(False, 1.0, 0.0)
    g = mouth_geometry(face)
    if expression == "neutral":
        width = NEUTRAL_WIDTH / g["width"] if g["width"] > NEUTRAL_WIDTH + WIDTH_TOLERANCE else 1.0
        target = NEUTRAL_CORNERS
    else:
        width = SMILE_WIDTH / g["width"] if g["width"] < SMILE_WIDTH - WIDTH_TOLERANCE else 1.0
        target = SMILE_CORNERS
    corners = target - g["corners"]
    corners = float(np.clip(corners, -0.3, 0.3)) if abs(corners) > CORNER_TOLERANCE else 0.0
    if expression == "slight_smile":
        corners = min(corners, 0.0)  # a smile never lowers the corners
    return MouthEdit(g["gap"] > 0.01, float(np.clip(width, 0.8, 1.2)), corners)


def edit_source(u: np.ndarray, v: np.ndarray, face: FaceLandmarks, edit: MouthEdit) -> tuple[np.ndarray, np.ndarray]:
    """Where each output point (mouth units) reads the photo (mouth units)."""
    frame = LocalFrame.of_mouth(face)
    uu, uv = _curve(frame.to_local(face.xy[list(LIP_INNER_UPPER)]))
    lu, lv = _curve(frame.to_local(face.xy[list(LIP_INNER_LOWER)]))
    upper, lower = np.interp(u, uu, uv), np.interp(u, lu, lv)
    gap_raw = np.clip(lower - upper, 0, None)
    seam = upper + UPPER_SHARE * gap_raw  # where the closed lips meet
    seam0 = float(np.interp(0.0, uu, uv) + UPPER_SHARE * max(np.interp(0.0, lu, lv) - np.interp(0.0, uu, uv), 0))
    src_u, src_v = u.astype(np.float64), v.astype(np.float64)
    if edit.closes:
        gmax = float(np.clip(np.interp(np.linspace(-1, 1, 41), lu, lv) - np.interp(np.linspace(-1, 1, 41), uu, uv),
                             0, None).max())
        chin = float(frame.to_local(face.xy[[CHIN]])[0, 1]) - seam0
        above = v < seam
        # above the lip line: the upper lip comes down, the skin up to the nose stretches
        h_up = max(0.6, 2.5 * UPPER_SHARE * gmax)
        up = UPPER_SHARE * gap_raw * smooth_fall(seam - v, 0.0, h_up)
        # below: the lower lip and the skin down to the chin come up as one piece (wider than the
        # lips), fading out at the chin, so the picture below the face stays as it is
        d = v - seam
        jaw = gmax * smooth_fall(np.abs(u), 0.9, 1.9)
        blend = np.clip((d - (1 - UPPER_SHARE) * gap_raw) / 0.4, 0, 1)
        g_dn = gap_raw * (1 - blend) + np.maximum(gap_raw, jaw) * blend
        reach = max(0.8, 2.5 * (1 - UPPER_SHARE) * gmax)  # keeps the map from folding
        j0 = max(chin - reach, (1 - UPPER_SHARE) * gmax + 0.1)  # all of it stops at the chin's tip
        dn = (1 - UPPER_SHARE) * g_dn * smooth_fall(d, j0, j0 + reach)
        src_v = np.where(above, src_v - up, src_v + dn)
    au = np.abs(u)
    if abs(edit.width - 1) > 1e-6:  # corners in or out, the lips between follow, the cheeks fade
        profile = np.where(au < 1, au, smooth_fall(au, 1.0, 2.2))
        src_u = src_u - np.sign(u) * (edit.width - 1) * profile * smooth_fall(np.abs(v - seam0), 0.5, 1.3)
    if edit.corners:  # the corners up or down, the middle of the lips stays
        lift = np.where(au <= 1, au * au, smooth_fall(au, 1.0, 2.0))
        src_v = src_v - edit.corners * lift * smooth_fall(np.abs(v - seam), 0.35, 1.0)
    return src_u, src_v


def apply_expression(rgb: np.ndarray, face: FaceLandmarks, expression: str) -> tuple[np.ndarray, MouthEdit]:
    """(H, W, 3) uint8 photo -> the same photo with the mouth at ``expression`` (a new array), and
    the edit. Pixels the edit cannot reach are the photo's own, bit for bit."""
    import cv2

    edit = plan_edit(face, expression)
    if edit.is_identity:
        return rgb, edit
    frame = LocalFrame.of_mouth(face)
    nose = float(frame.to_local(face.xy[[SUBNASALE]])[0, 1])
    chin = float(frame.to_local(face.xy[[CHIN]])[0, 1])
    corners = np.array([[u, v] for u in (-2.6, 2.6) for v in (min(nose, -0.8) - 0.3, chin + 0.5)])
    xs, ys = frame.to_image(corners[:, 0], corners[:, 1])
    h, w = rgb.shape[:2]
    x0, x1 = int(max(0, np.floor(xs.min()))), int(min(w, np.ceil(xs.max()) + 1))
    y0, y1 = int(max(0, np.floor(ys.min()))), int(min(h, np.ceil(ys.max()) + 1))
    if x1 <= x0 or y1 <= y0:
        return rgb, edit
    py, px = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    local = frame.to_local(np.stack([px.ravel(), py.ravel()], 1))
    su, sv = edit_source(local[:, 0], local[:, 1], face, edit)
    mx, my = frame.to_image(su, sv)
    out = rgb.copy()
    region = cv2.remap(rgb, mx.reshape(px.shape).astype(np.float32), my.reshape(px.shape).astype(np.float32),
                       cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    moved = (np.abs(mx - px.ravel()) + np.abs(my - py.ravel())).reshape(px.shape) > 1e-3
    out[y0:y1, x0:x1][moved] = region[moved]
    return out, edit


def describe_edit(expression: str, before: dict, after: dict | None) -> str:
    """One note for the user: what the template changed, as measured by the mesh before and after."""
    text = f"expression '{expression}': lip gap {before['gap']:.2f} -> "
    if after is None:
        return text + "? (no face found after the edit)"
    return (text + f"{after['gap']:.2f}, mouth width / eye distance {before['width']:.2f} -> {after['width']:.2f}, "
            f"corners {-before['corners']:+.2f} -> {-after['corners']:+.2f} half widths above the lip line")
