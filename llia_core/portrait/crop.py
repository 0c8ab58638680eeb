"""Crop and mask: the framing contract shared with the training-data renderer.

The model sees a square crop with the face box centred, the box side = crop side / face_scale;
its face-locator mask is the ellipse inscribed in the face box, scaled by 1.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import PortraitError
from .face_detect import FaceBox, detect_faces
from .image_io import load_image

CROP_MODES = ("auto", "face", "whole")


@dataclass
class Portrait:
    """image: (3, R, R) float 0..1; face_mask: (1, R, R) 0/1; crop_box in source pixels (x0, y0, x1, y1)."""

    image: torch.Tensor
    face_mask: torch.Tensor
    crop_box: tuple[int, int, int, int]
    face_box: FaceBox | None
    source_size: tuple[int, int]
    notes: list[str] = field(default_factory=list)


def default_face_mask(resolution: int, face_scale: float = 1.8, face_offset_y: float = 0.0) -> torch.Tensor:
    """(1, R, R) ellipse where the face sits in a correctly framed crop."""
    r = resolution
    yy, xx = torch.meshgrid(torch.arange(r) + 0.5, torch.arange(r) + 0.5, indexing="ij")
    radius = 1.1 * r / face_scale / 2
    cy = r * (0.5 + face_offset_y)
    inside = ((xx - r / 2) / radius) ** 2 + ((yy - cy) / radius) ** 2 <= 1.0
    return inside.float()[None]


def crop_portrait(rgb: np.ndarray, resolution: int, *, face: FaceBox | None, face_scale: float = 1.8,
                  face_offset_y: float = 0.0) -> Portrait:
    import cv2

    h, w = rgb.shape[:2]
    if face is None:
        side = min(h, w)
        x0, y0 = (w - side) // 2, (h - side) // 2
    else:
        side = max(face.w, face.h) * face_scale
        cx, cy = face.center
        x0 = int(round(cx - side / 2))
        y0 = int(round(cy - side * (0.5 + face_offset_y)))
        side = int(round(side))
    x1, y1 = x0 + side, y0 + side
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    src = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else rgb
    patch = src[y0 + pad:y1 + pad, x0 + pad:x1 + pad]
    interp = cv2.INTER_AREA if side > resolution else cv2.INTER_CUBIC
    patch = np.clip(cv2.resize(patch, (resolution, resolution), interpolation=interp), 0, 255).astype(np.uint8)
    image = torch.from_numpy(patch).permute(2, 0, 1).float() / 255.0
    return Portrait(image, default_face_mask(resolution, face_scale, face_offset_y), (x0, y0, x1, y1), face, (w, h))


def prepare_portrait(source, resolution: int, *, mode: str = "auto", face_scale: float = 1.8,
                     face_offset_y: float = 0.0) -> Portrait:
    """Load, find the face (largest), crop and mask. mode: auto | face | whole."""
    if mode not in CROP_MODES:
        raise PortraitError(f"unknown crop mode '{mode}'; use one of {', '.join(CROP_MODES)}")
    if not 16 <= int(resolution) <= 4096:
        raise PortraitError(f"resolution {resolution} is out of range; use 16 to 4096 pixels")
    if not 1.0 <= face_scale <= 6.0:
        raise PortraitError(f"face scale {face_scale:g} is out of range; use 1.0 (tight) to 6.0 (wide)")
    rgb = load_image(source)
    notes: list[str] = []
    face = None
    if mode != "whole":
        faces = detect_faces(rgb)
        if faces:
            face = faces[0]
            if len(faces) > 1:
                notes.append(f"{len(faces)} faces found; used the largest")
        elif mode == "face":
            raise PortraitError(
                "no face found in the portrait; use a frontal, well-lit photo or set crop mode to "
                "'whole' to use the whole image"
            )
        else:
            notes.append("no face found; used the whole image (centre square)")
    portrait = crop_portrait(rgb, resolution, face=face, face_scale=face_scale, face_offset_y=face_offset_y)
    portrait.notes = notes
    return portrait


def paste_back(frames: torch.Tensor, portrait: Portrait, background: np.ndarray, feather: float = 0.06) -> torch.Tensor:
    """frames (F, R, R, 3) 0..1 -> (F, H, W, 3): the crop pasted into the source image, soft edges."""
    import cv2

    h, w = background.shape[:2]
    x0, y0, x1, y1 = portrait.crop_box
    side = x1 - x0
    out = torch.from_numpy(background).float().div(255).expand(frames.shape[0], h, w, 3).clone()
    big = torch.nn.functional.interpolate(frames.permute(0, 3, 1, 2), size=(side, side), mode="bilinear",
                                          align_corners=False).permute(0, 2, 3, 1).clamp(0, 1)
    ramp = np.minimum(np.arange(side) + 0.5, side - np.arange(side) - 0.5) / max(1.0, feather * side)
    ramp = np.clip(ramp, 0, 1)
    alpha = torch.from_numpy(np.minimum(ramp[:, None], ramp[None, :])).float()[..., None]
    ax0, ay0, ax1, ay1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if ax1 <= ax0 or ay1 <= ay0:
        return out
    sub = big[:, ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]
    a = alpha[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]
    out[:, ay0:ay1, ax0:ax1] = sub * a + out[:, ay0:ay1, ax0:ax1] * (1 - a)
    return out
