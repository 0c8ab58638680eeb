"""Head pose from the face mesh: roll, yaw and pitch in degrees and the head's shift, per frame.

One estimator for the real talking videos the head-motion model learns from
(``training/head_data.py``) and for the generated videos it is judged on (``evaluation/head.py``),
so both sides are read alike. Each frame's rigid points (forehead, nose, eye corners, cheekbones:
nothing the mouth, the jaw or the brows move) are fitted to the video's own median shape by a 3-D
similarity (Umeyama), so a pose is relative to how the person holds the head in that video: what
counts is how it moves, not which way the camera looked.

Signs, as seen in the picture: roll > 0 the head tilts clockwise; yaw > 0 the nose turns to the
image's left; pitch > 0 the nose goes down (a nod); shift in head sizes (``rigid_radius``: the
rigid points' RMS distance from their centre, about a third of the face's height), x right, y down.
"""

from __future__ import annotations

import numpy as np

# the mesh's rigid points: forehead and nose line, nose wings, eye corners, cheekbones, temples
RIGID = (10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 98, 327, 33, 133, 362, 263, 116, 345, 234, 454, 127, 356, 123, 352)
POSE_AXES = ("roll", "yaw", "pitch", "shift_x", "shift_y")


def rigid_radius(points) -> float:
    """The head's size in a picture: the rigid points' RMS distance from their centre (x, y)."""
    q = np.asarray(points, np.float64)[list(RIGID), :2]
    return float(np.sqrt(((q - q.mean(0)) ** 2).sum(1).mean()))


def _umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Rotation R, scale s, shift t with dst ~ s R src + t (least squares, no reflection)."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.ones(3)
    d[2] = np.sign(np.linalg.det(u @ vt)) or 1.0
    rot = u @ np.diag(d) @ vt
    s = float((sig * d).sum() / max((a ** 2).sum() / len(src), 1e-12))
    return rot, s, md - s * rot @ ms


def euler_degrees(rot: np.ndarray) -> tuple[float, float, float]:
    """(roll, yaw, pitch) of a rotation R = Rz(roll) Ry(yaw) Rx(pitch) in image axes (x right, y down,
    z away from the camera)."""
    yaw = np.degrees(np.arcsin(np.clip(-rot[2, 0], -1, 1)))
    roll = np.degrees(np.arctan2(rot[1, 0], rot[0, 0]))
    pitch = np.degrees(np.arctan2(rot[2, 1], rot[2, 2]))
    return float(roll), float(yaw), float(pitch)


def head_poses(points: np.ndarray, ok: np.ndarray | None = None) -> np.ndarray:
    """(F, 468, 3) face-mesh points in one frame of reference (source pixels: x, y, depth on the x
    scale) -> (F, 5) roll, yaw, pitch (degrees), shift x, y (face sizes) against the video's median
    head; NaN rows where ``ok`` is False or the points are missing."""
    p = np.asarray(points, np.float64)[:, list(RIGID)]
    good = np.isfinite(p).all((1, 2)) if ok is None else (np.asarray(ok, bool) & np.isfinite(p).all((1, 2)))
    out = np.full((len(p), 5), np.nan)
    if good.sum() < 1:
        return out
    # the reference: each good frame's shape without its position and size, the median of those
    norm = []
    for q in p[good]:
        c = q - q.mean(0)
        norm.append(c / np.sqrt((c[:, :2] ** 2).sum(1).mean()))
    ref = np.median(np.stack(norm), 0)
    for _ in range(2):  # median of shapes turned back onto the reference: the median head, not the median point cloud
        back = []
        for q in p[good]:
            rot, s, t = _umeyama(ref, q)
            back.append(rot.T @ (q - t).T / s)
        ref = np.median(np.stack(back), 0).T
    size = np.sqrt((ref[:, :2] ** 2).sum(1).mean())
    for i in np.flatnonzero(good):
        rot, s, t = _umeyama(ref, p[i])
        out[i, :3] = euler_degrees(rot)
        out[i, 3:] = t[:2] / (s * size)
    rows = np.flatnonzero(good)
    out[rows, 3:] -= np.median(out[rows, 3:], 0)
    return out


def track_points_in_source(points_units: np.ndarray, alignment: np.ndarray, resolution: int) -> np.ndarray:
    """A face track's points (F, 468, 3) in face-box units of the aligned crop, with its (F, 4)
    alignment rows (scale, angle, tx, ty) -> the same points in source pixels (depth alike)."""
    from .. import framing
    from .align import Alignment

    out = np.full(points_units.shape, np.nan)
    for i, (q, row) in enumerate(zip(np.asarray(points_units, np.float64), alignment)):
        if not np.isfinite(row).all() or not np.isfinite(q).all():
            continue
        al = Alignment.from_params(*map(float, row), resolution)
        out[i, :, :2] = al.to_source(framing.FACE.to_pixels(q[:, :2], resolution))
        out[i, :, 2] = q[:, 2] * framing.FACE.unit(resolution) / row[0]
    return out
