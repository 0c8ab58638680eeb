"""Portrait preparation: find the face, align it to the framing contract, crop, mask.

The model sees a square crop in which the face sits where `llia_core/framing.py` says (the same
place the training renderer draws it). The crop is an affine warp of the picture (rotation and
scale from the landmarks); where it reaches past the picture's edges the edge pixels are repeated
for the model only: `Portrait.valid` marks them, and nothing from there reaches a video.
"""

from __future__ import annotations

import warnings

from dataclasses import dataclass, field

import numpy as np
import torch

from .. import framing
from ..errors import PortraitError
from .align import Alignment, align_box, align_landmarks, align_whole
from .face_detect import FaceBox, detect_faces
from .expression import DEFAULT_EXPRESSION, EXPRESSIONS, apply_expression, describe_edit, mouth_geometry
from .image_io import PortraitNote, load_image
from .landmarks import FACE_OVAL, MOUTH_CORNERS, FaceLandmarks, find_faces

CROP_MODES = ("auto", "face", "whole")
TINY_FACE = 48  # eye-to-mouth + eye-to-eye distance (source px) under which the face is upscaled a lot
TURNED_HEAD = 0.55  # eye distance / eye-to-mouth distance under which the head is turned away


@dataclass
class Portrait:
    """One portrait as the model sees it, and how that maps back onto the picture.

    image: (3, R, R) float 0..1, the aligned crop. face_mask: (1, R, R) 0/1 face-locator mask (from
    the landmarks' face outline; the contract's ellipse without landmarks).
    alignment: source pixels -> crop pixels. source: (H, W, 3) uint8, the picture as loaded.
    landmarks: the face's 468 points in source pixels (None without a face or from the Haar
    fallback). valid: (R, R) float 1 where the crop saw the picture, 0 past its edges.
    mouth_anchor: (3,) the mouth in the crop (``framing.mouth_anchor_from_landmarks``) or None.
    view: which part of the face the crop shows (``framing.Framing``: the model's).
    """

    image: torch.Tensor
    face_mask: torch.Tensor
    alignment: Alignment
    source: np.ndarray
    valid: np.ndarray
    face_box: FaceBox | None = None
    landmarks: FaceLandmarks | None = None
    mouth_anchor: torch.Tensor | None = None
    notes: list[str] = field(default_factory=list)
    view: framing.Framing = framing.FACE

    @property
    def source_size(self) -> tuple[int, int]:
        """(width, height) of the picture."""
        return self.source.shape[1], self.source.shape[0]

    @property
    def resolution(self) -> int:
        return self.image.shape[-1]

    @classmethod
    def from_crop(cls, image: torch.Tensor, face_mask: torch.Tensor | None = None,
                  view: framing.Framing = framing.FACE) -> "Portrait":
        """An image that already is an aligned crop (training clips, the evaluation)."""
        r = image.shape[-1]
        src = (image.permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
        mask = framing.face_locator_mask(r, view) if face_mask is None else face_mask
        return cls(image.float(), mask.float(), align_whole(r, r, r), src, np.ones((r, r), np.float32), view=view)


def face_mask_of_crop(crop: np.ndarray, view: framing.Framing = framing.FACE) -> np.ndarray:
    """(R, R) uint8 face-locator mask of an image that already is an aligned crop (the training
    clips' references), read with the same face mesh as a photo; the contract's ellipse if the
    mesh finds no face there."""
    faces = find_faces(crop, max_faces=1, upright=True)
    oval = faces[0].xy[list(FACE_OVAL)] if faces else None
    return framing.face_locator_mask(crop.shape[0], view, oval).numpy()[0].astype(np.uint8)


def crop_image(rgb: np.ndarray, alignment: Alignment) -> tuple[np.ndarray, np.ndarray]:
    """-> (crop (R, R, 3) uint8, valid (R, R) float32): the aligned crop and where it saw the picture.

    A big picture is first reduced with area averaging to about the crop's scale, so the warp
    never skips pixels (no aliasing); edges are repeated past the picture for the model's sake.
    """
    import cv2

    r = alignment.resolution
    scale = alignment.params[0]
    src, al = rgb, alignment
    if scale < 1.0:
        h, w = rgb.shape[:2]
        factor = max(scale, 8.0 / min(h, w))
        src = cv2.resize(rgb, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
        al = alignment.scaled_source(src.shape[1] / w)
    patch = cv2.warpAffine(src, al.matrix, (r, r), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    ones = np.ones(src.shape[:2], np.float32)
    valid = cv2.warpAffine(ones, al.matrix, (r, r), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return patch, valid


def _face_notes(face: FaceLandmarks, rgb: np.ndarray) -> list[str]:
    notes = []
    a, b = face.eye_centres()
    m = face.mouth_centre()
    eyes = float(np.hypot(*(b - a)))
    eye_mouth = float(np.hypot(*(m - (a + b) / 2)))
    if eyes + eye_mouth < TINY_FACE:
        notes.append(f"the face is small ({eyes + eye_mouth:.0f} px from eye to eye to mouth); the animated "
                     "face will look soft; use a closer or larger photo")
    if eyes < TURNED_HEAD * eye_mouth:
        notes.append("the head is turned away from the camera; lip sync and the crop work best on faces "
                     "looking into the camera")
    x0, y0, x1, y1 = face.box()
    h, w = rgb.shape[:2]
    if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
        notes.append("the face reaches past the picture's edge; only the part inside is animated")
    return notes


def _landmark_portrait(rgb, face: FaceLandmarks, resolution: int, view: framing.Framing):
    alignment = align_landmarks(face, resolution, view)
    centre = view.to_units(alignment.to_crop([face.mouth_centre()]), resolution)[0]
    corners = alignment.to_crop(face.xy[list(MOUTH_CORNERS)])
    width = float(np.hypot(*(corners[1] - corners[0]))) / view.unit(resolution)
    x0, y0, x1, y1 = face.box()
    box = FaceBox(x0, y0, x1 - x0, y1 - y0, 1.0)
    return alignment, box, framing.mouth_anchor_from_landmarks(centre, width)


def _edit_expression(rgb: np.ndarray, face: FaceLandmarks, expression: str, notes: list[str]):
    """The photo and its landmarks with the mouth at ``expression`` (``expression.py``): the edit
    is measured again on the result and repeated once if the lips are still apart (very wide open
    mouths, where the mesh places the inner lips inside the first time)."""
    before = mouth_geometry(face)
    edited, current = rgb, face
    for _ in range(2):
        out, edit = apply_expression(edited, current, expression)
        if edit.is_identity:
            break
        found = find_faces(out)
        if not found:  # the mesh lost the face on the edited photo: keep the photo as it was
            notes.append(f"expression '{expression}' left out: no face found after the edit")
            return rgb, face
        edited, current = out, found[0]
        if mouth_geometry(current)["gap"] < 0.12 or not edit.closes:
            break
    if edited is not rgb:
        after = mouth_geometry(current)
        if before["gap"] > 0.12 or abs(before["width"] - after["width"]) > 0.05 or \
                abs(before["corners"] - after["corners"]) > 0.05:
            notes.append(describe_edit(expression, before, after))
    return edited, current


def prepare_portrait(source, resolution: int, *, mode: str = "auto",
                     view: framing.Framing = framing.FACE, expression: str = DEFAULT_EXPRESSION) -> Portrait:
    """Load, find the face (largest), align, crop and mask. mode: auto | face | whole.

    auto: landmarks, else OpenCV's Haar cascade, else the centred square (with a note).
    face: as auto, but no face is an error. whole: the centred square, no face finding.
    expression: the reference expression (``expression.EXPRESSIONS``) the photo is brought to first,
    where its landmarks were found; the video (and its untouched picture) show the edited photo.
    view: which part of the face the crop shows: the model's (``LLIAConfig.framing``).
    """
    if expression not in EXPRESSIONS:
        raise PortraitError(f"unknown expression '{expression}'; use one of {', '.join(EXPRESSIONS)}")
    if mode not in CROP_MODES:
        raise PortraitError(f"unknown crop mode '{mode}'; use one of {', '.join(CROP_MODES)}")
    if not 16 <= int(resolution) <= 4096:
        raise PortraitError(f"resolution {resolution} is out of range; use 16 to 4096 pixels")
    if not 0.3 <= view.scale <= 6.0:
        raise PortraitError(f"face scale {view.scale:g} is out of range; use 1.0 (tight) to 6.0 (wide)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PortraitNote)
        rgb = load_image(source)
    h, w = rgb.shape[:2]
    notes: list[str] = [str(c.message) for c in caught if issubclass(c.category, PortraitNote)]
    face, box, anchor, alignment = None, None, None, None
    if mode != "whole":
        faces = find_faces(rgb)
        if faces:
            face = faces[0]
            rgb, face = _edit_expression(rgb, face, expression, notes)
            alignment, box, anchor = _landmark_portrait(rgb, face, resolution, view)
            notes += _face_notes(face, rgb)
        else:
            boxes = detect_faces(rgb)  # the Haar fallback: no landmarks, no rotation
            if boxes:
                box = boxes[0]
                faces = boxes
                alignment = align_box(box.center, max(box.w, box.h), resolution, view)
                notes.append("face landmarks not found; framed the face from a face box (no rotation)")
        if len(faces) > 1:
            notes.append(f"{len(faces)} faces found; used the largest")
        if alignment is None:
            if mode == "face":
                raise PortraitError(
                    "no face found in the portrait; use a photo in which a face looks into the camera, or "
                    "set crop mode to 'whole' to animate the whole image"
                )
            notes.append("no face found; used the whole image (centre square)")
    if alignment is None:
        alignment = align_whole(w, h, resolution)
    patch, valid = crop_image(rgb, alignment)
    image = torch.from_numpy(patch).permute(2, 0, 1).float() / 255.0
    oval = None if face is None else alignment.to_crop(face.xy[list(FACE_OVAL)])
    mask = framing.face_locator_mask(resolution, view, oval)
    return Portrait(image, mask, alignment, rgb, valid, box, face, anchor, notes, view)


def crop_preview(portrait: Portrait) -> torch.Tensor:
    """(R, R, 3) float: the crop as the model sees it, the mouth it animates outlined in green and
    the parts past the picture's edges darkened."""
    import cv2

    r = portrait.resolution
    img = (portrait.image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    img = (img * (0.35 + 0.65 * portrait.valid[..., None])).astype(np.uint8)
    anchor = framing.neutral_mouth_anchor() if portrait.mouth_anchor is None else portrait.mouth_anchor
    x, y, scale = anchor.tolist()
    centre = portrait.view.to_pixels([[x, y]], r)[0]
    u = portrait.view.unit(r)
    axes = (max(1, round(framing.MOUTH_HALF_WIDTH * scale * u * 16)), max(1, round(0.06 * u * 16)))
    cv2.ellipse(img, tuple(int(v) for v in np.round(centre * 16)), axes, 0, 0, 360, (60, 255, 80),
                max(1, r // 128), cv2.LINE_AA, 4)
    return torch.from_numpy(img).float() / 255.0
