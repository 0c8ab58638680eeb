"""Alignment: the similarity transform that puts a face into the framing contract's crop.

From landmarks, the two eye centres and the mouth centre are fitted (least squares, rotation +
uniform scale + shift) to the contract's targets (`framing.alignment_targets`), so the crop's
rotation and scale follow the eyes and the mouth. Without landmarks (the Haar fallback, or crop
mode "whole") the transform has no rotation. Over the frames of a video the parameters are
smoothed (`smooth_alignments`), since per-frame landmarks jitter by a pixel or two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import framing
from .landmarks import FaceLandmarks


@dataclass(frozen=True)
class Alignment:
    """matrix: 2x3 affine, source pixels -> crop pixels of a ``resolution`` square crop.

    A similarity: ``matrix[:, :2] = scale * R(-angle)``; ``scale`` is crop pixels per source pixel.
    """

    matrix: np.ndarray
    resolution: int

    @classmethod
    def from_params(cls, scale: float, angle: float, tx: float, ty: float, resolution: int) -> "Alignment":
        c, s = math.cos(angle) * scale, math.sin(angle) * scale
        return cls(np.array([[c, s, tx], [-s, c, ty]], np.float64), int(resolution))

    @property
    def params(self) -> tuple[float, float, float, float]:
        """(scale, angle, tx, ty); angle in radians, positive = the face is tilted clockwise."""
        a, b = self.matrix[0, 0], self.matrix[0, 1]
        return math.hypot(a, b), math.atan2(b, a), float(self.matrix[0, 2]), float(self.matrix[1, 2])

    @property
    def inverse(self) -> np.ndarray:
        """2x3 affine, crop pixels -> source pixels."""
        import cv2

        return cv2.invertAffineTransform(self.matrix)

    def to_crop(self, points) -> np.ndarray:
        p = np.asarray(points, np.float64)
        return p @ self.matrix[:, :2].T + self.matrix[:, 2]

    def to_source(self, points) -> np.ndarray:
        inv = self.inverse
        return np.asarray(points, np.float64) @ inv[:, :2].T + inv[:, 2]

    def crop_corners(self) -> np.ndarray:
        """(4, 2) the crop square's corners in source pixels."""
        r = self.resolution
        return self.to_source([[0, 0], [r, 0], [r, r], [0, r]])

    def scaled_source(self, factor: float) -> "Alignment":
        """The same crop of the source image resized by ``factor``."""
        m = self.matrix.copy()
        m[:, :2] /= factor
        return Alignment(m, self.resolution)


def fit_similarity(src: np.ndarray, dst: np.ndarray, weights=None) -> np.ndarray:
    """2x3 similarity (no reflection) taking src (N, 2) to dst (N, 2) in least squares."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    ms, md = (w[:, None] * src).sum(0), (w[:, None] * dst).sum(0)
    s, d = src - ms, dst - md
    # z = x + iy: find complex k minimising sum w |k s - d|^2  ->  k = sum w conj(s) d / sum w |s|^2
    sc, dc = s[:, 0] + 1j * s[:, 1], d[:, 0] + 1j * d[:, 1]
    k = (w * np.conj(sc) * dc).sum() / max((w * np.abs(sc) ** 2).sum(), 1e-12)
    a, b = k.real, k.imag
    rot = np.array([[a, -b], [b, a]])
    return np.concatenate([rot, (md - rot @ ms)[:, None]], 1)


def align_landmarks(face: FaceLandmarks, resolution: int, view: framing.Framing = framing.FACE) -> Alignment:
    """The crop transform of one face from its eyes and mouth (``view``: which part of the face the crop shows)."""
    a, b = face.eye_centres()
    src = np.stack([a, b, face.mouth_centre()])
    dst = view.to_pixels(framing.alignment_targets(), resolution)
    return Alignment(fit_similarity(src, dst, weights=[1.0, 1.0, 2.0]), resolution)


def align_box(centre, side: float, resolution: int, view: framing.Framing = framing.FACE) -> Alignment:
    """No rotation: a face box of ``side`` source pixels centred at ``centre`` fills the contract's box."""
    scale = resolution / (side * view.scale)
    cx, cy = centre
    ox, oy = view.to_pixels([[0.0, 0.0]], resolution)[0]  # where the face box's centre lies in the crop
    return Alignment.from_params(scale, 0.0, ox - scale * cx, oy - scale * cy, resolution)


def align_whole(width: int, height: int, resolution: int) -> Alignment:
    """The centred square of the picture (crop mode "whole")."""
    side = min(width, height)
    scale = resolution / side
    return Alignment.from_params(scale, 0.0, -scale * (width - side) / 2, -scale * (height - side) / 2, resolution)


def smooth_alignments(alignments: list[Alignment], window: int = 5) -> list[Alignment]:
    """Centred moving average of (log scale, angle, face centre) over ``window`` frames; the
    crop then follows the head without the landmarks' frame-to-frame jitter."""
    if len(alignments) < 2 or window < 2:
        return list(alignments)
    r = alignments[0].resolution
    rows = []
    for al in alignments:
        scale, angle, _, _ = al.params
        cx, cy = al.to_source([[r / 2, r / 2]])[0]  # where the crop centre sits in the source
        rows.append([math.log(scale), angle, cx, cy])
    p = np.array(rows)
    p[:, 1] = np.unwrap(p[:, 1])
    half = window // 2
    padded = np.concatenate([p[:1].repeat(half, 0), p, p[-1:].repeat(half, 0)])
    kernel = np.ones(window) / window
    sm = np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(4)], 1)[:len(p)]
    out = []
    for log_s, angle, cx, cy in sm:
        s = math.exp(log_s)
        c, sn = math.cos(angle) * s, math.sin(angle) * s
        tx, ty = r / 2 - (c * cx + sn * cy), r / 2 - (-sn * cx + c * cy)
        out.append(Alignment.from_params(s, angle, tx, ty, r))
    return out
