"""Paste-back: generated crops composited into the portrait at its own resolution.

Only the face changes: each generated crop is warped back by the inverse of the portrait's
alignment and blended in with a soft mask that follows the face (the face mesh's outline, widened
a little and lengthened below the chin so an opening jaw stays inside; without landmarks the
contract's face ellipse), so every pixel outside it is the user's own. The mask is also cut to the
part of the crop that saw the picture, so no repeated edge pixels ever reach a video.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import framing
from ..video_io import to_uint8
from .crop import Portrait
from .landmarks import FACE_OVAL

OUTPUTS = ("full", "crop")  # the portrait's own size | the model's square crop
DEFAULT_MAX_SIZE = 1024


def output_size(portrait: Portrait, max_size: int | None = DEFAULT_MAX_SIZE) -> tuple[int, int]:
    """(width, height) of the full-resolution video: the picture's size, the long side capped at
    ``max_size`` (None or 0 = no cap)."""
    w, h = portrait.source_size
    if not max_size or max(w, h) <= max_size:
        return w, h
    s = max_size / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def face_paste_mask(portrait: Portrait, width: int, height: int) -> np.ndarray:
    """(height, width) float32 0..1: where generated pixels replace the picture's, at output size."""
    import cv2

    sx, sy = width / portrait.source_size[0], height / portrait.source_size[1]
    r = portrait.resolution
    to_out = lambda pts: np.asarray(pts, np.float64) * [sx, sy]  # noqa: E731
    mask = np.zeros((height, width), np.float32)
    if portrait.landmarks is not None:
        crop_pts = portrait.alignment.to_crop(portrait.landmarks.xy[list(FACE_OVAL)])
        centre = crop_pts.mean(0)
        grown = centre + (crop_pts - centre) * 1.08
        below = np.clip(grown[:, 1] - centre[1], 0, None)  # lengthen the lower half for the open jaw
        grown[:, 1] += below * 0.18
        poly = to_out(portrait.alignment.to_source(grown))
        size = float(np.ptp(poly[:, 1]))
    elif portrait.face_box is not None:
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        u = framing.unit(r)
        ellipse = np.stack([r / 2 + 1.2 * u * np.cos(t), r / 2 + 1.3 * u * np.sin(t)], 1)
        poly = to_out(portrait.alignment.to_source(ellipse))
        size = float(np.ptp(poly[:, 1]))
    else:  # crop mode "whole": the whole crop square
        poly = to_out(portrait.alignment.crop_corners())
        size = float(np.ptp(poly[:, 1])) * 0.5
    cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    # feather inwards: erode by the blur's reach so the soft edge stays on the face's own outline
    feather = max(1.0, 0.05 * size)
    k = int(2 * round(feather) + 1)
    mask = cv2.erode(mask, np.ones((k, k), np.uint8))
    mask = cv2.GaussianBlur(mask, (0, 0), feather / 1.5)
    # never past the part of the crop that saw the picture
    corners = to_out(portrait.alignment.crop_corners())
    inside = np.zeros_like(mask)
    cv2.fillConvexPoly(inside, np.round(corners * 16).astype(np.int32), 1.0, cv2.LINE_AA, 4)
    return np.clip(mask * inside, 0, 1)


class Compositor:
    """Generated crops (F, R, R, 3) -> frames (F, H, W, 3) uint8 of the portrait's own size.

    Prepared once per portrait: the background at output size, the inverse warp and the mask,
    cut to the face's bounding box so that each frame touches only that region.
    """

    def __init__(self, portrait: Portrait, max_size: int | None = DEFAULT_MAX_SIZE):
        import cv2

        self.width, self.height = output_size(portrait, max_size)
        w0, h0 = portrait.source_size
        interp = cv2.INTER_AREA if self.width < w0 else cv2.INTER_CUBIC
        bg = portrait.source if (self.width, self.height) == (w0, h0) else \
            cv2.resize(portrait.source, (self.width, self.height), interpolation=interp)
        self.background = np.ascontiguousarray(bg)
        mask = face_paste_mask(portrait, self.width, self.height)
        ys, xs = np.nonzero(mask > 1e-3)
        if len(xs) == 0:
            self.box = (0, 0, 0, 0)
            return
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        self.box = (int(x0), int(y0), int(x1), int(y1))
        self.alpha = np.ascontiguousarray(mask[y0:y1, x0:x1], np.float32)
        self.beta = 1.0 - self.alpha
        self.base = np.ascontiguousarray(self.background[y0:y1, x0:x1])
        # crop pixels -> output pixels of the box
        inv = portrait.alignment.inverse
        scale = np.array([[self.width / w0, 0], [0, self.height / h0]])
        m = scale @ inv
        m[:, 2] -= (x0, y0)
        self.to_box = m

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def new_frame(self) -> np.ndarray:
        """A (H, W, 3) frame holding the background, for ``paste`` to draw the face into."""
        return self.background.copy()

    def paste(self, crop: np.ndarray, frame: np.ndarray) -> np.ndarray:
        """Draw one generated crop (R, R, 3) uint8 into ``frame`` (from ``new_frame``, or a frame this
        compositor drew before: only the face box changes) and return it."""
        import cv2

        x0, y0, x1, y1 = self.box
        if x1 > x0:
            warped = cv2.warpAffine(crop, self.to_box, (x1 - x0, y1 - y0), flags=cv2.INTER_CUBIC,
                                    borderMode=cv2.BORDER_REPLICATE)
            frame[y0:y1, x0:x1] = cv2.blendLinear(warped, self.base, self.alpha, self.beta)
        return frame

    def composite(self, frames) -> np.ndarray:
        """frames: (F, R, R, 3) float 0..1 (torch or numpy) or uint8 -> (F, H, W, 3) uint8."""
        crops = to_uint8(frames)
        out = np.empty((len(crops), self.height, self.width, 3), np.uint8)
        out[:] = self.background
        for crop, frame in zip(crops, out):
            self.paste(crop, frame)
        return out


def crop_frames(frames, portrait: Portrait) -> np.ndarray:
    """The crop video (``output="crop"``): the generated crops, black where the crop lies past the
    picture's edges (no invented pixels). -> (F, R, R, 3) uint8."""
    crops = to_uint8(frames)
    valid = portrait.valid
    if valid.min() >= 0.999:
        return crops
    return np.clip(crops * valid[None, :, :, None] + 0.5, 0, 255).astype(np.uint8)
