"""Face finding without downloaded weights: OpenCV's bundled Haar cascades."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FaceBox:
    """A face in pixel coordinates of the image it was found in."""

    x: float
    y: float
    w: float
    h: float
    score: float = 1.0

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + self.h / 2

    @property
    def area(self) -> float:
        return self.w * self.h


_CASCADES: dict[str, object] = {}

# Haar boxes include part of the forehead; on portraits drawn to the framing contract their side is
# 1.2x the contract's face box and their centre sits 0.04 box sides higher (median over renders).
HAAR_BOX_SCALE = 1.2
HAAR_CENTER_SHIFT = 0.04


def _cascade(name: str):
    import cv2

    if name not in _CASCADES:
        _CASCADES[name] = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    return _CASCADES[name]


def _iou(a: FaceBox, b: FaceBox) -> float:
    x0, y0 = max(a.x, b.x), max(a.y, b.y)
    x1, y1 = min(a.x + a.w, b.x + b.w), min(a.y + a.h, b.y + b.h)
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / (a.area + b.area - inter + 1e-9)


def detect_faces(rgb: np.ndarray) -> list[FaceBox]:
    """Faces in an RGB uint8 image, largest first (frontal default + alt2 cascades, merged)."""
    import cv2

    h, w = rgb.shape[:2]
    s = min(1.0, 640 / max(h, w))
    small = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA) if s < 1 else rgb
    gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
    min_size = max(20, int(0.08 * min(gray.shape)))
    boxes: list[FaceBox] = []
    for name in ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml"):
        found = _cascade(name).detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_size, min_size))
        for (x, y, bw, bh) in (found if len(found) else []):
            side = bw / s / HAAR_BOX_SCALE
            cx, cy = (x + bw / 2) / s, (y + bh / 2) / s + HAAR_CENTER_SHIFT * side
            box = FaceBox(float(cx - side / 2), float(cy - side / 2), float(side), float(side))
            if all(_iou(box, b) < 0.3 for b in boxes):
                boxes.append(box)
    return sorted(boxes, key=lambda b: -b.area)
