"""Does the generated mouth look like a real one? Measured on aligned mouth crops of people left out.

Three measures, each against the real video of the same person (portrait = its first frame,
audio = its own speech):

1. A real-vs-generated classifier, trained leave-one-person-out: features of the mouth crop
   (gradient orientations, colour and fine detail per cell of a 4 x 3 grid) and a logistic
   regression; its accuracy on the person it never saw is the score (0.5: cannot tell them apart).
2. Inside open mouths, the share of teeth-like pixels (bright, little colour) and of dark pixels
   (the throat, the shadow), at matched openings: bins of the lip gap, generated against real.
3. Sharpness (variance of the Laplacian) of the mouth region in open-mouth frames against the
   same region of the photo.

Crops come from each frame's own face mesh: a similarity from the eyes and the mouth centre to the
framing contract (``framing.py``), then a window from under the nose to under the chin.
"""

from __future__ import annotations

import numpy as np

from .. import framing
from ..portrait.landmarks import INNER_LIP

CROP_W, CROP_H = 64, 48
WINDOW = (-0.5, 0.25, 0.5, 1.0)  # x0, y0, x1, y1 in face-box units: the mouth, the lips and the chin's top
OPEN_GAP = 0.04  # lip gap (face-box units) from which a mouth counts as open
GAP_BINS = (0.04, 0.08, 0.14, 1.0)
GRID = (4, 3)  # feature cells across, down
ORIENTATIONS = 8


def _crop_transform(face) -> tuple[np.ndarray, float]:
    """-> (2x3 affine: source pixels -> mouth-crop pixels, the lip gap in face-box units)."""
    from ..portrait import align_landmarks
    from ..training.data.videos import mouth_measures

    al = align_landmarks(face, 128)  # source -> 128 px whole-face crop
    x0, y0, x1, y1 = WINDOW
    k = CROP_W / (x1 - x0) / framing.FACE.unit(128)  # mouth-crop pixels per 128-crop pixel
    (ox, oy), = framing.FACE.to_pixels([[x0, y0]], 128)
    m = np.vstack([al.matrix, [0, 0, 1]])
    shift = np.array([[k, 0, -k * ox], [0, k, -k * oy], [0, 0, 1]])
    return (shift @ m)[:2], mouth_measures(framing.FACE.to_units(al.to_crop(face.xy), 128))[0]


def mouth_crops(frames: np.ndarray, faces: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames (N, H, W, 3) and their face meshes (None where lost) -> (crops (M, 48, 64, 3) uint8,
    lip gaps (M,) in face-box units, inner-mouth masks (M, 48, 64) bool) of the M frames with a face."""
    import cv2

    crops, gaps, masks = [], [], []
    for rgb, face in zip(frames, faces):
        if face is None:
            continue
        m, gap = _crop_transform(face)
        crops.append(cv2.warpAffine(rgb, m, (CROP_W, CROP_H), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE))
        inner = face.xy[list(INNER_LIP)] @ m[:, :2].T + m[:, 2]
        mask = np.zeros((CROP_H, CROP_W), np.uint8)
        cv2.fillPoly(mask, [np.round(inner * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
        masks.append(mask.astype(bool))
        gaps.append(gap)
    if not crops:
        return np.zeros((0, CROP_H, CROP_W, 3), np.uint8), np.zeros(0), np.zeros((0, CROP_H, CROP_W), bool)
    return np.stack(crops), np.array(gaps), np.stack(masks)


def crop_features(crops: np.ndarray) -> np.ndarray:
    """(N, 48, 64, 3) uint8 -> (N, F) float: per cell of a 4 x 3 grid, a magnitude-weighted histogram of
    gradient orientations, the mean and spread of each colour, and the fine detail (|Laplacian|)."""
    import cv2

    out = []
    gx_cells, gy_cells = GRID
    cw, ch = CROP_W // gx_cells, CROP_H // gy_cells
    for crop in crops:
        f = crop.astype(np.float32) / 255
        grey = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
        gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
        mag, ang = np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), np.pi)
        lap = np.abs(cv2.Laplacian(grey, cv2.CV_32F))
        bins = np.minimum((ang / np.pi * ORIENTATIONS).astype(int), ORIENTATIONS - 1)
        feats = []
        for j in range(gy_cells):
            for i in range(gx_cells):
                cell = (slice(j * ch, (j + 1) * ch), slice(i * cw, (i + 1) * cw))
                hist = np.bincount(bins[cell].ravel(), mag[cell].ravel(), ORIENTATIONS)
                feats += [hist / (np.linalg.norm(hist) + 1e-3), f[cell].mean((0, 1)), f[cell].std((0, 1)),
                          [lap[cell].mean()]]
        out.append(np.concatenate([np.ravel(x) for x in feats]))
    return np.asarray(out, np.float32)


def _logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 300) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method -> (weights, bias)."""
    n, d = x.shape
    xb = np.concatenate([x, np.ones((n, 1))], 1).astype(np.float64)
    w = np.zeros(d + 1)
    reg = np.full(d + 1, l2 * n)
    reg[-1] = 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-np.clip(xb @ w, -30, 30)))
        grad = xb.T @ (p - y) + reg * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return w[:-1], float(w[-1])


def leave_one_person_out(samples: dict[str, tuple[np.ndarray, np.ndarray]], seed: int = 0) -> dict[str, float]:
    """``samples``: person -> (real features (R, F), generated features (G, F)). For each person, a
    classifier trained on everyone else's, tested on this person's (as many real as generated crops)
    -> accuracy per person."""
    rng = np.random.default_rng(seed)

    def balanced(real, gen):
        n = min(len(real), len(gen))
        r = real[rng.choice(len(real), n, replace=False)]
        g = gen[rng.choice(len(gen), n, replace=False)]
        return np.concatenate([r, g]), np.concatenate([np.ones(n), np.zeros(n)])

    sets = {p: balanced(*rg) for p, rg in samples.items() if min(len(rg[0]), len(rg[1])) > 0}
    out = {}
    for person, (x_test, y_test) in sets.items():
        rest = [v for p, v in sets.items() if p != person]
        if not rest:
            continue
        x = np.concatenate([v[0] for v in rest])
        y = np.concatenate([v[1] for v in rest])
        mean, std = x.mean(0), x.std(0) + 1e-6
        w, b = _logistic((x - mean) / std, y)
        pred = ((x_test - mean) / std) @ w + b > 0
        out[person] = float((pred == (y_test > 0.5)).mean())
    return out


def interior_shares(crops: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per crop, inside the inner lips: (share of teeth-like pixels, share of dark pixels).

    Teeth-like: brighter than the crop's median skin and with little colour (saturation < 0.35);
    dark: luma under 0.4 of the skin's. Skin = the crop's pixels outside the mouth (the median)."""
    teeth, dark = np.full(len(crops), np.nan), np.full(len(crops), np.nan)
    for k, (crop, mask) in enumerate(zip(crops, masks)):
        if mask.sum() < 4:
            continue
        f = crop.astype(np.float32)
        luma = f @ np.array([0.299, 0.587, 0.114], np.float32)
        skin = float(np.median(luma[~mask]))
        mx, mn = f.max(-1), f.min(-1)
        sat = (mx - mn) / np.maximum(mx, 1)
        teeth[k] = float(((luma > skin) & (sat < 0.35))[mask].mean())
        dark[k] = float((luma < 0.4 * skin)[mask].mean())
    return teeth, dark


def matched_shares(real: tuple, gen: tuple) -> dict:
    """(gaps, teeth, dark) of real and of generated crops -> per gap bin the mean teeth / dark shares of
    both, and the generated/real ratios pooled with the real frames' bin counts as weights."""
    rows = []
    for lo, hi in zip(GAP_BINS[:-1], GAP_BINS[1:]):
        r = (real[0] >= lo) & (real[0] < hi) & ~np.isnan(real[1])
        g = (gen[0] >= lo) & (gen[0] < hi) & ~np.isnan(gen[1])
        if r.sum() == 0 or g.sum() == 0:
            continue
        rows.append({"gap": f"{lo:.2f}-{hi:.2f}", "real_frames": int(r.sum()), "generated_frames": int(g.sum()),
                     "teeth_real": float(real[1][r].mean()), "teeth_generated": float(gen[1][g].mean()),
                     "dark_real": float(real[2][r].mean()), "dark_generated": float(gen[2][g].mean())})
    out = {"bins": rows}
    for key in ("teeth", "dark"):
        w = np.array([b["real_frames"] for b in rows], np.float64)
        rr = np.array([b[f"{key}_real"] for b in rows])
        gg = np.array([b[f"{key}_generated"] for b in rows])
        out[f"{key}_ratio"] = float((w * gg).sum() / max((w * rr).sum(), 1e-9)) if rows else float("nan")
        each = gg / np.maximum(rr, 1e-9)  # per opening: a pooled ratio can hide a wide mouth with no teeth
        out[f"{key}_ratio_range"] = [float(each.min()), float(each.max())] if rows else [float("nan")] * 2
    return out


def mouth_sharpness(frames: np.ndarray, faces: list, photo: np.ndarray, photo_face, open_mask: np.ndarray) -> float:
    """Variance of the Laplacian in the mouth region (the lips' box, a quarter wider) of the open-mouth
    frames, over the same in the photo; nan without open frames."""
    import cv2

    from ..portrait.landmarks import LIPS_OUTER

    def lap(img, face):
        p = face.xy[list(LIPS_OUTER)]
        (x0, y0), (x1, y1) = p.min(0), p.max(0)
        mx, my = (x1 - x0) * 0.125, (y1 - y0) * 0.125
        h, w = img.shape[:2]
        box = img[max(0, int(y0 - my)):min(h, int(y1 + my) + 1), max(0, int(x0 - mx)):min(w, int(x1 + mx) + 1)]
        return float(cv2.Laplacian(cv2.cvtColor(box, cv2.COLOR_RGB2GRAY), cv2.CV_32F).var()) if box.size else np.nan

    vals = [lap(f, face) for f, face, o in zip(frames, faces, open_mask) if o and face is not None]
    if not vals or photo_face is None:
        return float("nan")
    return float(np.nanmean(vals) / max(lap(photo, photo_face), 1e-6))


def jaw_slope(faces: list) -> float:
    """How far the chin drops per unit of lip gap (a least-squares slope over the frames with a face;
    ``jaw_slope_of_points``). nan with fewer than 10 faces or a still mouth."""
    return jaw_slope_of_points([face.xy for face in faces if face is not None])


def jaw_slope_of_points(points) -> float:
    """Face-mesh points of each frame ((468, 2+) each, in pixels or any frame of reference a similarity
    away from them) -> the chin's drop from the nose tip per unit of lip gap, both along the face's
    up-down axis (square to the line between the eyes) and over the eyes' distance, so neither the head's
    turn nor its distance counts. Measured from the eyes and the nose alone: the face-box alignment of
    the crops also pins the mouth centre, which pulls the chin up with it and reads the less the more of
    the opening the lower lip makes. Real talkers read 0.74 (median over the 41 in-the-wild talking
    videos' face tracks of ``../shared/realfaces``, quartiles 0.58-0.92), GRID's ten speakers 0.53-0.88
    (median 0.62). On a warped photo the mesh follows the warp only in part (hallo_1 at 1024 px, the
    widest opening: the warp lifts the upper lip by 0.35 of the gap, the mesh reads it where it was), so
    generated videos read what the mesh sees. nan with fewer than 10 frames or a still mouth."""
    from ..portrait.landmarks import CHIN, EYE_A, EYE_B, LIP_INNER_DOWN, LIP_INNER_UP, NOSE_TIP

    rows = []
    for xy in points:
        xy = np.asarray(xy, np.float64)[:, :2]
        if not np.isfinite(xy).all():
            continue
        across = xy[list(EYE_B)].mean(0) - xy[list(EYE_A)].mean(0)
        eyes = np.linalg.norm(across)
        down = np.array([-across[1], across[0]]) / max(eyes, 1e-9)
        rows.append(((xy[LIP_INNER_DOWN] - xy[LIP_INNER_UP]) @ down / eyes, (xy[CHIN] - xy[NOSE_TIP]) @ down / eyes))
    if len(rows) < 10:
        return float("nan")
    gap, chin = np.array(rows).T
    return float(np.polyfit(gap, chin, 1)[0]) if np.std(gap) > 1e-3 else float("nan")
