"""Real talking videos -> face tracks: per-frame landmarks, the audio, the person and the words.

A track is what the audio-to-mouth model (``models/mouth_model.py``) learns from and what its
leave-people-out evaluation scores against: one video's 468 face-mesh points per frame aligned to the
framing contract (face-box units, so faces of any size and tilt compare), its 16 kHz audio, the person
in it (folds never split a person), and, for GRID clips, the word timings of their ``align/`` files.
No pixels are kept, so an hour of video is a few hundred MB and re-deriving the mouth targets never
needs the videos again.

``python -m llia_core.training.data --videos DIR --out DATA --tracks-only`` writes one ``.npz`` per video
under ``DATA/tracks/`` (resumable: finished videos are skipped; two worker processes by default).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ... import framing

TRACK_FPS = 25.0
TRACK_RESOLUTION = 128  # the alignment's crop side (the points are stored in face-box units)
# people who appear in several files under different names (``../shared/realfaces/REALFACES.md``)
# (and ``lrs2_00006`` looks like the man of ``hdtf_WDA_EdMarkey0_000``: counted as him, so no fold splits them)
SAME_PERSON = ((r"obama", "obama"), (r"styletalk_andrew", "andrew"), (r"styletalk_feifeili", "feifeili"),
               (r"mimictalk_may", "may"), (r"edmarkey|lrs2_00006", "ed_markey"))


def person_of(path: str | Path) -> str:
    """Who speaks in a video, from its path: GRID speakers by their folder (``grid/s3/...`` -> ``grid_s3``),
    the known people of several files by name (``SAME_PERSON``), every other file its own person."""
    p = Path(path)
    if p.parent.name and re.fullmatch(r"s\d+", p.parent.name) and "grid" in (q.name for q in p.parents):
        return f"grid_{p.parent.name}"
    stem = p.stem.lower()
    for pattern, person in SAME_PERSON:
        if re.search(pattern, stem):
            return person
    return stem


def read_align(path: Path) -> list[tuple[float, float, str]]:
    """A GRID ``.align`` file -> [(start s, end s, word)], silences (``sil``, ``sp``) left out."""
    words = []
    for line in path.read_text().split("\n"):
        parts = line.split()
        if len(parts) == 3 and parts[2] not in ("sil", "sp"):
            words.append((int(parts[0]) / 25000.0, int(parts[1]) / 25000.0, parts[2]))
    return words


def align_file_for(video: Path) -> Path | None:
    """GRID keeps the word timings of ``s1/bbaf2n.mp4`` in ``s1/align/bbaf2n.align``."""
    for cand in (video.parent / "align" / f"{video.stem}.align", video.with_suffix(".align")):
        if cand.is_file():
            return cand
    return None


@dataclass
class Track:
    """One video's face track. points (F, 468, 3) float16 in face-box units (z scaled alike; NaN where
    no face was found), ok (F,) bool, alignment (F, 4) float32 (scale, angle, tx, ty: source pixels to
    the 128 px crop), face_size (F,) source pixels (eye-to-eye + eye-to-mouth), audio (T,) int16 at
    16 kHz (the video's length), words [(start s, end s, word)] or []."""

    name: str
    person: str
    fps: float
    points: np.ndarray
    ok: np.ndarray
    alignment: np.ndarray
    face_size: np.ndarray
    audio: np.ndarray
    words: list = field(default_factory=list)
    path: Path | None = None  # the file it was loaded from

    @property
    def num_frames(self) -> int:
        return int(self.points.shape[0])

    def waveform(self) -> np.ndarray:
        """(T,) float32 in -1..1."""
        return self.audio.astype(np.float32) / 32767.0

    def word_frames(self) -> np.ndarray:
        """(F,) bool: frames inside a spoken word (GRID); all False without word timings."""
        out = np.zeros(self.num_frames, bool)
        t = (np.arange(self.num_frames) + 0.5) / self.fps
        for a, b, _ in self.words:
            out |= (t >= a) & (t < b)
        return out


def save_track(path: Path, track: Track) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    words = np.array([f"{a:.4f} {b:.4f} {w}" for a, b, w in track.words], dtype=str)
    np.savez_compressed(tmp, name=track.name, person=track.person, fps=track.fps, points=track.points, ok=track.ok,
                        alignment=track.alignment, face_size=track.face_size, audio=track.audio, words=words)
    tmp.replace(path)


def load_track(path: str | Path) -> Track:
    with np.load(path, allow_pickle=False) as z:
        words = [(float(a), float(b), w) for a, b, w in (s.split(" ", 2) for s in z["words"].tolist())]
        person = str(z["person"])
        if not person.startswith("grid_"):  # the rules may have learned more since the track was made
            person = person_of(str(z["name"]))
        # the file's name is the track's (``track_name``: unique where GRID's clip names repeat across speakers)
        return Track(Path(path).stem, person, float(z["fps"]), z["points"], z["ok"], z["alignment"],
                     z["face_size"], z["audio"], words, Path(path))


def load_tracks(root: str | Path) -> list[Track]:
    """Every track under ``root`` (a ``DATA/tracks`` folder or its parent), sorted by name."""
    root = Path(root)
    folder = root / "tracks" if (root / "tracks").is_dir() else root
    paths = sorted(p for p in folder.glob("*.npz") if ".tmp" not in p.name)
    if not paths:
        from ...errors import LLIAError

        raise LLIAError(f"no face tracks in '{folder}'; make them with python -m llia_core.training.data "
                        "--videos DIR --out DATA --tracks-only")
    return [load_track(p) for p in paths]


def usable_tracks(data: str, holdout: tuple[str, ...] = (), progress: bool = False, desc: str = "tracks"):
    """The face tracks under the comma list of folders ``data`` (each a ``DATA/tracks`` folder or its
    parent), one at a time, leaving out videos or people named in ``holdout`` and tracks with too few
    frames or faces: what the mouth and the head-motion model learn from."""
    from tqdm import tqdm

    paths = []
    for root in filter(None, data.split(",")):
        folder = Path(root) / "tracks" if (Path(root) / "tracks").is_dir() else Path(root)
        paths += sorted(p for p in folder.glob("*.npz") if ".tmp" not in p.name)
    if not paths:
        from ...errors import LLIAError

        raise LLIAError(f"no face tracks under {data!r}; make them with python -m llia_core.training.data "
                        "--videos DIR --out DATA --tracks-only and pass --data DATA")
    for p in tqdm(paths, desc=desc, disable=not progress):
        t = load_track(p)
        if not (t.name in holdout or t.person in holdout or t.num_frames < 10 or t.ok.mean() < 0.5):
            yield t


def track_video(path: Path, fps: float = TRACK_FPS, max_seconds: float | None = None, name: str | None = None) -> Track:
    """Run the face tracker over one video at ``fps`` and read its audio (``videos.py``'s frame timing)."""
    from ...audio import load_audio
    from ...portrait import FaceTracker, align_landmarks
    from .videos import _audio_for, _frame_times

    tracker = FaceTracker()
    pts, ok, al_rows, sizes = [], [], [], []
    r = TRACK_RESOLUTION
    for idx, rgb in _frame_times(path, fps):
        if max_seconds is not None and idx >= int(round(max_seconds * fps)):
            break
        face = tracker.track(rgb)
        if face is None:
            pts.append(np.full((468, 3), np.nan, np.float32))
            ok.append(False)
            al_rows.append(np.full(4, np.nan, np.float32))
            sizes.append(0.0)
            continue
        al = align_landmarks(face, r)
        scale = al.params[0]
        xy = framing.FACE.to_units(al.to_crop(face.xy), r)
        z = face.points[:, 2:3] * scale / framing.FACE.unit(r)
        pts.append(np.concatenate([xy, z], 1).astype(np.float32))
        ok.append(True)
        al_rows.append(np.array(al.params, np.float32))
        a, b = face.eye_centres()
        sizes.append(float(np.hypot(*(b - a)) + np.hypot(*(face.mouth_centre() - (a + b) / 2))))
    n = len(pts)
    wave = load_audio(_audio_for(path), duration=n / fps).waveform.numpy() if n else np.zeros(0, np.float32)
    wave = np.pad(wave, (0, max(0, int(round(n / fps * 16000)) - len(wave))))[:int(round(n / fps * 16000))]
    align = align_file_for(path)
    return Track(name or path.stem, person_of(path), float(fps),
                 np.stack(pts).astype(np.float16) if n else np.zeros((0, 468, 3), np.float16),
                 np.array(ok, bool), np.stack(al_rows) if n else np.zeros((0, 4), np.float32),
                 np.array(sizes, np.float32), np.round(np.clip(wave, -1, 1) * 32767).astype(np.int16),
                 read_align(align) if align else [])


def _track_job(args) -> tuple[str, str]:
    path, out, fps, max_seconds = args
    import torch

    torch.set_num_threads(1)
    try:
        save_track(Path(out), track_video(Path(path), fps, max_seconds, Path(out).stem))
        return str(path), ""
    except Exception as exc:  # a broken file must not stop the others
        return str(path), f"{type(exc).__name__}: {exc}"


def track_name(path: Path, src: Path) -> str:
    """A track's file name: the video's path under the folder, so GRID's ``s1/bbaf2n`` and ``s2/...`` never clash."""
    return "__".join(path.relative_to(src).with_suffix("").parts)


def track_videos(videos: str | Path, out: str | Path, *, fps: float = TRACK_FPS, max_seconds: float | None = None,
                 workers: int = 2, progress: bool = True) -> list[Path]:
    """Every video under ``videos`` (recursively) -> ``out/tracks/<name>.npz``; resumable. Returns the tracks."""
    from multiprocessing import get_context

    from tqdm import tqdm

    from .videos import VIDEO_SUFFIXES

    src, root = Path(videos), Path(out) / "tracks"
    paths = sorted(p for p in src.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not paths:
        from ...errors import LLIAError

        raise LLIAError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) found in '{src}'; point --videos at a folder of them")
    targets = [(p, root / f"{track_name(p, src)}.npz") for p in paths]
    todo = [(str(p), str(t), fps, max_seconds) for p, t in targets if not t.exists()]
    failed = []
    if todo:
        if workers > 1:
            with get_context("spawn").Pool(workers) as pool:
                for path, err in tqdm(pool.imap_unordered(_track_job, todo), total=len(todo), desc="tracks",
                                      disable=not progress):
                    if err:
                        failed.append((path, err))
        else:
            for job in tqdm(todo, desc="tracks", disable=not progress):
                path, err = _track_job(job)
                if err:
                    failed.append((path, err))
    for path, err in failed:
        print(f"  skipped {path}: {err}")
    done = [t for _, t in targets if t.exists()]
    print(f"{len(done)} of {len(paths)} videos tracked in {root}")
    return done
