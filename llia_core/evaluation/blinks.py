"""When real talkers blink: blink onsets read from the eyes' pixels of the talking videos, against
their speech (``eval --head`` reports it; ``portrait/face_motion.py``'s ``BLINK_PACE_*`` come from it).

The face mesh's lid points barely move when an eye shuts (on the tracks of these videos the lid gap
over the eye's width stays within 0.18-0.23 through visible blinks), so the eyes are read from the
pixels: an open eye shows a dark iris between white and lashes, a shut one only skin, so the spread
of brightness in a box around each eye drops. A blink is a dip of that spread under ``DIP`` of its
running median (2 s) lasting at most ``LONGEST`` frames (longer dips are a look down or a lost face).
Small, blurred faces give false dips; the rates per video say which videos to trust.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DIP = 0.86  # of the running median of the eye's brightness spread (blinks read 0.77-0.82 on real clips)
LONGEST = 10  # frames at 25 fps: a blink is over within 0.4 s
BOX = (0.55, 0.3)  # the eye's box: half width and half height in eye widths around its centre


def eye_contrast(rgb: np.ndarray, points: np.ndarray) -> float:
    """Brightness spread (90th - 10th percentile) in boxes around both eyes of one frame, averaged;
    ``points`` (468, 2+) the face mesh in this frame's pixels. NaN where an eye is off the frame or tiny."""
    import cv2

    from ..portrait.face_motion import EYELIDS

    vals = []
    for upper, lower in EYELIDS:
        eye = points[list(upper) + list(lower), :2]
        width = float(np.ptp(eye[:, 0]))
        cx, cy = eye.mean(0)
        x0, x1 = int(cx - BOX[0] * width), int(cx + BOX[0] * width)
        y0, y1 = int(cy - BOX[1] * width), int(cy + BOX[1] * width)
        if width < 6 or x0 < 0 or y0 < 0 or x1 > rgb.shape[1] or y1 > rgb.shape[0]:
            return float("nan")
        grey = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY).astype(np.float32)
        grey = cv2.resize(grey, (24, 12), interpolation=cv2.INTER_AREA)
        vals.append(float(np.percentile(grey, 90) - np.percentile(grey, 10)))
    return float(np.mean(vals))


def blink_onsets(contrast: np.ndarray, fps: float) -> np.ndarray:
    """Frames where a blink starts, from (F,) eye contrast (NaN: no face)."""
    from scipy.ndimage import median_filter

    ok = np.isfinite(contrast)
    if ok.sum() < 2:
        return np.zeros(0, int)
    base = median_filter(np.where(ok, contrast, np.nanmedian(contrast)), size=int(2 * fps) | 1)
    shut = ok & (np.nan_to_num(contrast, nan=np.inf) < DIP * base)
    onsets, k = [], 0
    while k < len(shut):
        if not shut[k]:
            k += 1
            continue
        end = k
        while end < len(shut) and shut[end]:
            end += 1
        if end - k <= LONGEST * fps / 25.0:
            onsets.append(k)
        k = end
    return np.array(onsets, int)


def video_blinks(track, realfaces: Path) -> dict | None:
    """One face track's video: blink onsets, the frames it was read on and its speech per frame."""
    import torch

    from ..audio import detect_speech
    from ..portrait.head_pose import track_points_in_source
    from ..training.data.tracks import TRACK_RESOLUTION
    from ..training.data.videos import _frame_times
    from .lipsync import _video_path

    path = _video_path(realfaces, track.name)
    if path is None:
        return None
    points = track_points_in_source(track.points.astype(np.float64), track.alignment, TRACK_RESOLUTION)
    contrast = np.full(track.num_frames, np.nan)
    for i, rgb in _frame_times(path, track.fps):
        if i >= track.num_frames:
            break
        if np.isfinite(points[i]).all():
            contrast[i] = eye_contrast(rgb, points[i])
    read = np.isfinite(contrast)
    if read.sum() < 2 * track.fps:
        return None
    if track.words:
        speech = track.word_frames()
    else:
        speech = detect_speech(torch.from_numpy(track.waveform()), track.num_frames, track.fps).numpy()
    return {"name": track.name, "person": track.person, "fps": track.fps, "onsets": blink_onsets(contrast, track.fps),
            "read": read, "speech": np.asarray(speech, bool)[:track.num_frames]}


def blink_timing(videos: list[dict], window: float = 0.5) -> dict:
    """Blinks a minute in speech and in pauses, and around the starts of speech (``window`` s before
    and after), pooled over ``videos`` (``video_blinks`` rows)."""
    counts = {"speech": 0, "pause": 0, "before_speech": 0, "after_speech": 0}
    minutes = dict.fromkeys(counts, 0.0)
    for v in videos:
        fps, read, speech = v["fps"], v["read"], v["speech"]
        n = min(len(read), len(speech))
        read, speech = read[:n], speech[:n]
        onsets = v["onsets"][v["onsets"] < n]
        minutes["speech"] += (read & speech).sum() / fps / 60
        minutes["pause"] += (read & ~speech).sum() / fps / 60
        counts["speech"] += int(speech[onsets].sum())
        counts["pause"] += int((~speech[onsets]).sum())
        w = int(round(window * fps))
        for s in np.flatnonzero(~speech[:-1] & speech[1:]) + 1:
            for key, lo, hi in (("before_speech", s - w, s), ("after_speech", s, s + w)):
                lo, hi = max(lo, 0), min(hi, n)
                minutes[key] += read[lo:hi].sum() / fps / 60
                counts[key] += int(((onsets >= lo) & (onsets < hi)).sum())
    rates = {k: counts[k] / minutes[k] if minutes[k] > 0 else float("nan") for k in counts}
    return {"videos": len(videos), "blinks": counts, "minutes": {k: round(v, 2) for k, v in minutes.items()},
            "per_minute": rates, "pause_over_speech": rates["pause"] / rates["speech"] if rates["speech"] else float("nan")}


def real_blinks(tracks: str, realfaces: str, progress: bool = False) -> dict:
    """Blink timing of every talking video with a face track under ``tracks``: in-the-wild videos and
    GRID apart (GRID's speakers read sentences off a prompt)."""
    from ..training.data.tracks import usable_tracks

    rows = {"wild": [], "grid": []}
    for t in usable_tracks(tracks, (), progress, "blinks"):
        v = video_blinks(t, Path(realfaces))
        if v is not None:
            rows["grid" if t.person.startswith("grid_") else "wild"].append(v)
    out = {kind: blink_timing(vs) for kind, vs in rows.items() if vs}
    for kind, vs in rows.items():
        if vs:
            out[kind]["per_video_per_minute"] = {
                v["name"]: round(len(v["onsets"]) / (v["read"].sum() / v["fps"] / 60), 1) for v in vs}
    return out
