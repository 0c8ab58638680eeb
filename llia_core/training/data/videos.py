"""Real talking-head videos -> training clips in the synthetic data's format (``ClipData`` .npz).

``python -m llia_core.training.data --videos DIR --out DATA``: for every video in DIR (any size, fps
and codec; its own audio track, or a same-named audio file beside it):

1. track the face frame by frame (`portrait.FaceTracker`) at the target fps, align each frame to
   the framing contract from its landmarks, smooth the alignment over time;
2. drop frames where the face is lost, too small, cut by a scene change or blurred by motion, and
   say how many went for which reason;
3. crop the kept runs, cut them into clips, and write each with its 16 kHz audio, the per-frame
   mouth opening / width / roundness read from the landmarks (what the warp is trained with), the
   speech activity as states (speaking / idle), and a reference frame of the same person with the
   mouth closed, and the face-locator mask from that frame's face outline.

One video is read twice (landmarks first, then crops), never held in memory; each finished video
leaves a marker, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ... import framing
from ...states import IDLE, SPEAKING
from .clips import ClipData
from .dataset import save_clip

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg")
REAL_IDENTITY_BASE = 1_000_000  # identity ids of real videos, apart from the synthetic ones
MIN_FACE = 48  # eye-to-eye + eye-to-mouth distance (source px)
SCENE_JUMP = 0.25  # face-centre jump between two frames, in crop sides
BLUR_FRACTION = 0.35  # sharpness under this share of the video's median counts as motion blur
DRAWN_GAP_AT_OPEN = 0.26  # the renderer's lip gap (face-box units) at mouth_open = 1


@dataclass
class VideoReport:
    """What became of one video."""

    name: str
    frames: int = 0
    kept: int = 0
    clips: int = 0
    dropped: dict = field(default_factory=dict)
    note: str = ""


def _audio_for(path: Path) -> Path:
    for suffix in AUDIO_SUFFIXES:
        side = path.with_suffix(suffix)
        if side.is_file():
            return side
    return path


def _frame_times(path: Path, fps: float):
    """Yield (target frame index, RGB frame) resampled to ``fps`` by nearest source frame."""
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        base = float(stream.time_base) if stream.time_base else None
        rate = float(stream.average_rate or stream.guessed_rate or fps)
        nxt = 0
        for i, frame in enumerate(c.decode(stream)):
            t = frame.pts * base if frame.pts is not None and base else i / rate
            img = None
            while nxt / fps <= t + 0.5 / rate:  # every target time this source frame is nearest to
                img = frame.to_ndarray(format="rgb24") if img is None else img
                yield nxt, img
                nxt += 1


def mouth_measures(points_units: np.ndarray) -> tuple[float, float]:
    """(lip gap, mouth width) in face-box units from aligned landmarks (468, 2)."""
    from ...portrait.landmarks import LIP_INNER_DOWN, LIP_INNER_UP, MOUTH_CORNERS

    gap = float(np.hypot(*(points_units[LIP_INNER_DOWN] - points_units[LIP_INNER_UP])))
    a, b = MOUTH_CORNERS
    width = float(np.hypot(*(points_units[b] - points_units[a])))
    return gap, width


def mouth_targets(gap: np.ndarray, width: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame (opening, width, roundness) in 0..1, on the renderer's scales.

    opening: the lip gap above this video's resting gap (its 5th percentile: the mesh's inner lips
    do not meet on a shut mouth) over the renderer's gap at full opening. width: this frame's mouth width
    against the video's median (the renderer's neutral 0.5), as the renderer widens it (0.85 + 0.3 w).
    roundness: an open mouth narrower than the neutral one (the renderer narrows a round mouth by
    up to 0.35); an approximation, since the mesh sees no lip protrusion from the front.
    """
    seen = gap[gap > 0]
    rest = float(np.percentile(seen, 5)) if len(seen) else 0.0
    opening = np.clip((gap - rest) / DRAWN_GAP_AT_OPEN, 0, 1)
    ratio = width / max(float(np.median(width)), 1e-6)
    w = np.clip((ratio - 0.85) / 0.3, 0, 1)
    rnd = np.where(opening > 0.1, np.clip((0.95 - ratio) / 0.3, 0, 1), 0.0)
    return opening.astype(np.float32), w.astype(np.float32), rnd.astype(np.float32)


def _sharpness(crop: np.ndarray) -> float:
    import cv2

    return float(cv2.Laplacian(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), cv2.CV_32F).var())


def _track(path: Path, fps: float, resolution: int, max_frames: int | None, view: framing.Framing):
    """Pass 1: per target frame the raw alignment (or None), face size, mouth measures, sharpness;
    plus the crop of the most closed mouth (the reference)."""
    from ...portrait import FaceTracker, align_landmarks, crop_image
    from ...portrait.landmarks import FACE_OVAL

    tracker = FaceTracker()
    rows, reference, best = [], None, math.inf
    for idx, rgb in _frame_times(path, fps):
        if max_frames is not None and idx >= max_frames:
            break
        face = tracker.track(rgb)
        if face is None:
            rows.append(None)
            continue
        al = align_landmarks(face, resolution, view)
        units = view.to_units(al.to_crop(face.xy), resolution)
        gap, width = mouth_measures(units)
        a, b = face.eye_centres()
        size = float(np.hypot(*(b - a)) + np.hypot(*(face.mouth_centre() - (a + b) / 2)))
        crop, valid = crop_image(rgb, al)
        x0, y0, x1, y1 = face.box()
        inside = x0 >= 0 and y0 >= 0 and x1 <= rgb.shape[1] and y1 <= rgb.shape[0]
        rows.append({"alignment": al, "gap": gap, "width": width, "size": size, "sharp": _sharpness(crop),
                     "inside": inside})
        # the reference: the most closed mouth, preferring crops that saw more of the picture
        score = gap + 0.05 * (1.0 - float(valid.mean()))
        if inside and score < best:
            best, reference = score, (crop, al.to_crop(face.xy[list(FACE_OVAL)]))
    return rows, reference


def _keep(rows: list, resolution: int) -> tuple[np.ndarray, dict]:
    """Which frames to keep, and how many were dropped for each reason."""
    n = len(rows)
    keep = np.ones(n, bool)
    reasons = {"face lost": 0, "face too small": 0, "scene cut": 0, "motion blur": 0, "face past the edge": 0}
    sharp = [r["sharp"] for r in rows if r is not None]
    median_sharp = float(np.median(sharp)) if sharp else 0.0
    prev = None
    for i, r in enumerate(rows):
        why = None
        if r is None:
            why = "face lost"
        elif r["size"] < MIN_FACE:
            why = "face too small"
        elif not r["inside"]:
            why = "face past the edge"
        elif prev is not None:
            c0 = prev["alignment"].to_source([[resolution / 2] * 2])[0]
            c1 = r["alignment"].to_source([[resolution / 2] * 2])[0]
            side = resolution / r["alignment"].params[0]
            s0, s1 = prev["alignment"].params[0], r["alignment"].params[0]
            if np.hypot(*(c1 - c0)) > SCENE_JUMP * side or max(s0, s1) / min(s0, s1) > 1.3:
                why = "scene cut"
        if why is None and r["sharp"] < BLUR_FRACTION * median_sharp:
            why = "motion blur"
        if why is not None:
            keep[i] = False
            reasons[why] += 1
        prev = r
    return keep, {k: v for k, v in reasons.items() if v}


def _runs(keep: np.ndarray, length: int, min_length: int) -> list[tuple[int, int]]:
    """Clips [a, b): consecutive kept frames cut into ``length``-frame pieces (a last piece of at
    least ``min_length`` frames is kept too)."""
    out, i, n = [], 0, len(keep)
    while i < n:
        if not keep[i]:
            i += 1
            continue
        j = i
        while j < n and keep[j]:
            j += 1
        for a in range(i, j, length):
            b = min(a + length, j)
            if b - a >= min_length:
                out.append((a, b))
        i = j
    return out


def ingest_video(path: Path, root: Path, video_id: int, *, split: str = "train", fps: float = 25.0,
                 resolution: int = 128, clip_seconds: float = 3.0, min_seconds: float = 1.0,
                 max_seconds: float | None = None, smooth: int = 5, view: framing.Framing = framing.FACE) -> VideoReport:
    """One video -> clips under ``root/split``; returns what was kept and dropped. ``view``: which part
    of the face the crops show (the model's framing)."""
    import torch

    from ...audio import load_audio
    from ...audio.activity import detect_speech
    from ...portrait import crop_image, smooth_alignments

    report = VideoReport(path.name)
    max_frames = None if max_seconds is None else int(round(max_seconds * fps))
    rows, reference = _track(path, fps, resolution, max_frames, view)
    report.frames = len(rows)
    if reference is None or not rows:
        report.dropped = {"face lost": len(rows)}
        report.note = "no usable face"
        return report
    keep, report.dropped = _keep(rows, resolution)
    clips = _runs(keep, int(round(clip_seconds * fps)), int(round(min_seconds * fps)))
    report.kept = int(sum(b - a for a, b in clips))
    if not clips:
        return report
    # per-clip smoothed alignment (a clip never spans a drop, so its frames are one shot)
    smoothed = {}
    for a, b in clips:
        for i, al in zip(range(a, b), smooth_alignments([rows[i]["alignment"] for i in range(a, b)], smooth)):
            smoothed[i] = al
    gap = np.array([r["gap"] if r is not None else 0.0 for r in rows])
    width = np.array([r["width"] if r is not None else np.nan for r in rows])
    width = np.where(np.isnan(width), np.nanmedian(width), width)
    opening, mouth_w, mouth_r = mouth_targets(gap, width)
    wave = load_audio(_audio_for(path), duration=report.frames / fps).waveform.numpy().astype(np.float32)
    wave = np.pad(wave, (0, max(0, int(round(report.frames / fps * 16000)) - len(wave))))
    speech = detect_speech(torch.from_numpy(wave), report.frames, fps).numpy()
    reference, oval = reference
    mask = framing.face_locator_mask(resolution, view, oval).numpy()[0].astype(np.uint8)
    # pass 2: the crops of the kept frames, written clip by clip
    starts = {a: (a, b) for a, b in clips}
    current, frames = None, []
    for idx, rgb in _frame_times(path, fps):
        if idx >= report.frames:
            break
        if idx in starts:
            current, frames = starts[idx], []
        if current is None or not current[0] <= idx < current[1]:
            continue
        frames.append(crop_image(rgb, smoothed[idx])[0])
        if idx == current[1] - 1:
            a, b = current
            k = clips.index(current)
            samples = slice(int(round(a / fps * 16000)), int(round(b / fps * 16000)))
            clip_audio = np.zeros(int(round((b - a) / fps * 16000)), np.float32)
            piece = wave[samples]
            clip_audio[:len(piece)] = piece[:len(clip_audio)]
            states = np.where(speech[a:b], SPEAKING, IDLE).astype(np.int64)
            save_clip(root / split / f"{video_id:05d}_{k:03d}.npz",
                      ClipData(np.stack(frames), clip_audio, opening[a:b], mouth_w[a:b], mouth_r[a:b], states,
                               reference, mask, REAL_IDENTITY_BASE + video_id, float(fps), "real"))
            report.clips += 1
            current = None
    return report


def ingest_videos(videos: str | Path, out: str | Path, *, val_names: tuple[str, ...] = (), progress: bool = True,
                  **kwargs) -> list[VideoReport]:
    """Every video in ``videos`` (recursively) -> clips in ``out``, resumable; prints a summary."""
    from tqdm import tqdm

    src, root = Path(videos), Path(out)
    paths = sorted(p for p in src.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not paths:
        from ...errors import LLIAError

        raise LLIAError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) found in '{src}'; point --videos at a folder of them")
    done_dir = root / "videos"
    done_dir.mkdir(parents=True, exist_ok=True)
    reports = []
    for vid, path in enumerate(tqdm(paths, desc="videos", disable=not progress)):
        marker = done_dir / f"{vid:05d}_{path.stem}.json"
        if marker.exists():  # finished in an earlier run
            reports.append(VideoReport(**json.loads(marker.read_text())))
            continue
        split = "val" if path.stem in val_names else "train"
        try:
            report = ingest_video(path, root, vid, split=split, **kwargs)
        except Exception as exc:  # a broken file must not stop the other videos
            report = VideoReport(path.name, note=f"skipped: {type(exc).__name__}: {exc}")
        marker.write_text(json.dumps(report.__dict__))
        reports.append(report)
    _write_index(root)
    total = {"frames": sum(r.frames for r in reports), "kept": sum(r.kept for r in reports),
             "clips": sum(r.clips for r in reports)}
    dropped: dict = {}
    for r in reports:
        for k, v in r.dropped.items():
            dropped[k] = dropped.get(k, 0) + v
    print(f"{len(reports)} videos: {total['frames']} frames, {total['kept']} kept in {total['clips']} clips; "
          f"dropped: {', '.join(f'{v} {k}' for k, v in dropped.items()) or 'none'}")
    for r in reports:
        if r.note:
            print(f"  {r.name}: {r.note}")
    return reports


def _write_index(root: Path) -> None:
    """index.json in the synthetic datasets' format (path, identity, split, clip), for every clip."""
    index_path = root / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else []
    known = {e["path"] for e in index}
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name in ("train", "val", "test")):
        for clip in sorted(split_dir.glob("*.npz")):
            rel = str(clip.relative_to(root))
            if rel not in known and ".tmp" not in clip.name:
                vid, k = (int(v) for v in clip.stem.split("_"))
                index.append({"path": rel, "identity": REAL_IDENTITY_BASE + vid, "split": split_dir.name, "clip": k})
    index_path.write_text(json.dumps(index, indent=1))
