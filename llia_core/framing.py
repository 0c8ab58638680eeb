"""The framing contract: where a face sits in the model's square crop, for cartoons and photos alike.

Coordinates are face-box units: the face box spans [-1, 1] on both axes. Which part of it a
model's crop shows is its ``Framing``: the whole face (the crop spans [-1.8, 1.8], 1 unit = R / 3.6
pixels) or the lower face (the ``real-lower`` config: x in [-0.68, 0.68], y in [0, 1.36]; the
mouth is 2.6x larger). The training-data renderer draws to these numbers, and real portraits are
aligned to them from their landmarks, so a model trained on one works on the other.

The landmark targets (``EYE_*``, ``LANDMARK_MOUTH_*``) are what the face mesh reads on the
renderer's own faces (median over 100 identities, std 0.01-0.02; `tests/test_framing.py` measures
it again); the renderer's drawing positions (``DRAWN_*``) differ from them by the mesh's own idea
of where an eye or a lip line is. Aligning a rendered face through the landmark path therefore
reproduces the renderer's framing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

FACE_SCALE = 1.8  # crop side / face box side

# drawn by the renderer (training/data/render.py)
DRAWN_EYE_X = 0.38  # eye centres at x = +-0.38 (times the identity's eye spacing)
DRAWN_EYE_Y = -0.30
MOUTH_CENTRE_Y = 0.55  # the closed mouth's lip line; the mouth map draws from here
MOUTH_HALF_WIDTH = 0.25  # drawn half-width of a neutral mouth

# read by the face mesh on rendered faces: the alignment targets
EYE_X = 0.43  # half the distance between the eye centres
EYE_Y = -0.31
LANDMARK_MOUTH_Y = 0.52
LANDMARK_MOUTH_WIDTH = 0.60  # corner to corner


@dataclass(frozen=True)
class Framing:
    """Which part of the face a model's square crop shows, in face-box units.

    ``scale``: half the crop's side (= crop side / face box side); ``centre_y``: the height of the
    crop's centre (0: the face box's centre). The bundled models see the whole face (1.8, 0); the
    ``real-lower`` config a lower-face crop (0.68, 0.68: from the nose to below an open jaw), so an
    open mouth is ~60 px wide in its 128 px crop instead of ~23.
    """

    scale: float = FACE_SCALE
    centre_y: float = 0.0

    def unit(self, resolution: int) -> float:
        """Pixels per face-box unit in a crop of side ``resolution``."""
        return resolution / (2 * self.scale)

    def to_pixels(self, points, resolution: int) -> np.ndarray:
        """(N, 2) face-box units -> crop pixels."""
        u = self.unit(resolution)
        p = np.asarray(points, np.float64)
        return (p - (0.0, self.centre_y)) * u + resolution / 2

    def to_units(self, points, resolution: int) -> np.ndarray:
        """(N, 2) crop pixels -> face-box units."""
        p = np.asarray(points, np.float64)
        return (p - resolution / 2) / self.unit(resolution) + (0.0, self.centre_y)

    def axes(self, size: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel centres of a ``size`` crop in face-box units: (x of each column, y of each row), as
        ``grid_sample(align_corners=False)`` reads them."""
        t = ((torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size * 2 - 1) * self.scale
        return t, t + self.centre_y

    def scaled(self, factor: float) -> "Framing":
        """The same framing ``factor`` times as wide (a user's wider or tighter crop)."""
        return Framing(self.scale * factor, self.centre_y)


FACE = Framing()  # the whole face: the framing contract's own crop


def alignment_targets() -> np.ndarray:
    """(3, 2) where the image-left eye, the image-right eye and the mouth centre go, in units."""
    return np.array([[-EYE_X, EYE_Y], [EYE_X, EYE_Y], [0.0, LANDMARK_MOUTH_Y]])


def neutral_mouth_anchor() -> torch.Tensor:
    """(3,) the mouth anchor of a face drawn to the contract: centre x, centre y, width scale."""
    return torch.tensor([0.0, MOUTH_CENTRE_Y, 1.0])


def mouth_anchor_from_landmarks(mouth_centre_units, mouth_width_units: float) -> torch.Tensor:
    """(3,) anchor for the mouth map from a portrait's own mouth (in units of its aligned crop)."""
    x, y = mouth_centre_units
    scale = float(np.clip(mouth_width_units / LANDMARK_MOUTH_WIDTH, 0.6, 1.8))
    return torch.tensor([float(x), float(y) + MOUTH_CENTRE_Y - LANDMARK_MOUTH_Y, scale], dtype=torch.float32)


def face_locator_mask(resolution: int, view: Framing = FACE, oval=None) -> torch.Tensor:
    """(1, R, R) 0/1 face region for the face locator.

    ``oval``: (N, 2) the face mesh's outline of this face in crop pixels -> the ellipse fitted to
    it, scaled by 1.1 (photos and rendered faces alike: the training data reads its faces with the
    same mesh). None: the ellipse inscribed in the contract's face box, scaled by 1.1.
    """
    r = resolution
    if oval is not None and len(oval) >= 5:
        import cv2

        (cx, cy), (w, h), angle = cv2.fitEllipse(np.asarray(oval, np.float32))
        mask = np.zeros((r, r), np.uint8)
        cv2.ellipse(mask, ((cx, cy), (1.1 * w, 1.1 * h), angle), 1, -1)
        return torch.from_numpy(mask).float()[None]
    xs, ys = view.axes(r)
    inside = (xs[None, :] ** 2 + ys[:, None] ** 2) <= 1.1 ** 2
    return inside.float()[None]
