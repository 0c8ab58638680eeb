"""What the mouth painter (``models/mouth_painter.py``) learns from: real mouths, window by window.

Each face track (``data/tracks.py``) stores its video's alignment per frame, so its frames are read
again and cut to the painter's window (``mouth_painter.WINDOW``) without running the face mesh twice;
the inner lip line of the stored mesh, in window pixels, says where the opening is. Per video, the
frames of the most closed mouths are kept as references (the portrait a user gives is mostly a closed
mouth). The result is one ``.npz`` (uint8 windows: an hour of video is a few hundred MB).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import framing
from ..models.mouth_painter import SIZE, units_to_window, window_matrix
from ..portrait.landmarks import INNER_LIP
from .data.tracks import TRACK_RESOLUTION, load_track

REFERENCES = 6  # closed-mouth frames kept per video
MIN_MOUTH_PX = 30  # a mouth narrower than this in the source is too small to teach what a mouth looks like


def video_for(track_path: Path, roots: list[Path]) -> Path | None:
    """A track's video: its name is the video's path under the folder it was tracked from, with
    ``__`` for ``/`` (``s1__bbaf2n`` -> ``grid/s1/bbaf2n.mp4``)."""
    from .data.videos import VIDEO_SUFFIXES

    rel = Path(*track_path.stem.split("__"))
    for root in roots:
        for cand in root.glob(f"{rel}.*"):
            if cand.suffix.lower() in VIDEO_SUFFIXES:
                return cand
    return None


def _gap(units: np.ndarray) -> float:
    return float(units[14, 1] - units[13, 1])


def windows_of(track_path: Path, video: Path, every: int = 1) -> dict | None:
    """One track's video -> {"crops" (N, H, W, 3) uint8, "polys" (N, 20, 2) float32 window pixels,
    "gaps" (N,), "refs" (R, H, W, 3)} over every ``every``-th frame with a face; None if the face is small."""
    import cv2

    from ..portrait.align import Alignment
    from .data.videos import _frame_times

    track = load_track(track_path)
    ok = track.ok & ~np.isnan(track.alignment).any(1)
    if ok.sum() < 5:
        return None
    mouth_px = np.array([np.hypot(*(p[308, :2] - p[78, :2])) for p in track.points.astype(np.float32)])
    scale = track.alignment[:, 0]
    # a mouth's width in source pixels: units * (crop pixels per unit) / (crop pixels per source pixel)
    src_width = mouth_px * framing.FACE.unit(TRACK_RESOLUTION) / np.where(ok, scale, np.nan)
    if np.nanmedian(src_width[ok]) < MIN_MOUTH_PX:
        return None
    crops, polys, gaps = [], [], []
    w, h = SIZE
    for i, rgb in _frame_times(video, track.fps):
        if i >= track.num_frames:
            break
        if not ok[i] or i % every:
            continue
        al = Alignment.from_params(*[float(v) for v in track.alignment[i]], TRACK_RESOLUTION)
        m = window_matrix(source_to_crop=al.matrix)
        shrink = np.hypot(*m[0, :2]) < 1.0
        crops.append(cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE))
        pts = track.points[i].astype(np.float32)
        polys.append(units_to_window(pts[list(INNER_LIP)]).astype(np.float32))
        gaps.append(_gap(pts))
    if not crops:
        return None
    gaps = np.array(gaps, np.float32)
    closed = np.argsort(gaps)[:REFERENCES]
    crops = np.stack(crops)
    return {"crops": crops, "polys": np.stack(polys), "gaps": gaps, "refs": crops[closed]}


def _job(args):
    path, video, every = args
    import torch

    torch.set_num_threads(1)
    try:
        return path, windows_of(Path(path), Path(video), every), ""
    except Exception as exc:  # a broken file must not stop the others
        return path, None, f"{type(exc).__name__}: {exc}"


def build_painter_data(tracks: str, videos: str, out: str, holdout: tuple[str, ...] = (), grid_every: int = 3,
                       workers: int = 2, progress: bool = True) -> Path:
    """Face tracks under ``tracks`` and their videos under the comma list ``videos`` -> ``out`` (.npz):
    windows, opening polygons, lip gaps, per-window video index, per-video references and person.
    People or videos in ``holdout`` are left out; GRID clips are read every ``grid_every``-th frame
    (one speaker's thousand sentences would otherwise outnumber everyone else)."""
    from multiprocessing import get_context

    from tqdm import tqdm

    from ..errors import LLIAError
    from .data.tracks import person_of

    folder = Path(tracks) / "tracks" if (Path(tracks) / "tracks").is_dir() else Path(tracks)
    roots = [Path(v) for v in videos.split(",") if v]
    jobs, people = [], {}
    for p in sorted(folder.glob("*.npz")):
        video = video_for(p, roots)
        if video is None:
            continue
        person = person_of(video)
        if p.stem in holdout or person in holdout:
            continue
        people[str(p)] = person
        jobs.append((str(p), str(video), grid_every if person.startswith("grid_") else 1))
    if not jobs:
        raise LLIAError(f"no videos found for the tracks in '{folder}' under {videos!r}")
    parts = []
    with get_context("spawn").Pool(workers) as pool:
        for path, res, err in tqdm(pool.imap_unordered(_job, jobs, chunksize=4), total=len(jobs),
                                   desc="mouth windows", disable=not progress):
            if err:
                print(f"  skipped {path}: {err}")
            elif res is not None:
                parts.append((path, res))
    parts.sort()
    names = [Path(p).stem for p, _ in parts]
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out_path, crops=np.concatenate([r["crops"] for _, r in parts]),
             polys=np.concatenate([r["polys"] for _, r in parts]),
             gaps=np.concatenate([r["gaps"] for _, r in parts]),
             video=np.concatenate([np.full(len(r["gaps"]), k, np.int32) for k, (_, r) in enumerate(parts)]),
             refs=np.stack([r["refs"][np.arange(REFERENCES) % len(r["refs"])] for _, r in parts]),
             names=np.array(names), people=np.array([people[p] for p, _ in parts]))
    print(f"{sum(len(r['gaps']) for _, r in parts)} windows of {len(parts)} videos "
          f"({len(set(people[p] for p, _ in parts))} people) -> {out_path}")
    return out_path
