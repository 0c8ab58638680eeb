"""Photos -> still training clips: many more faces for the part of the model that must not move.

Minutes of real video hold a handful of people; a folder of portraits holds many. Each photo is
aligned like any portrait and becomes clips in which nothing may change: one idle (room noise) and
one listening (someone else's voice), each also mirrored. They teach the model to keep an unseen
face's identity and texture still, with the mouth shut, outside speech, which is where a small
model shimmers. ``python -m llia_core.training.data --photos DIR --out DATA [--val names]``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...framing import FACE, Framing
from ...states import IDLE, LISTENING
from .clips import ClipData, _segment_audio
from .dataset import save_clip
from .speech import random_voice

PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
PHOTO_IDENTITY_BASE = 2_000_000


def photo_clips(rgb: np.ndarray, ident: int, rng: np.random.Generator, *, seconds: float = 2.0, fps: int = 25,
                resolution: int = 128, view: Framing = FACE) -> list[ClipData]:
    """One photo -> [idle, listening] x [as is, mirrored] still clips (empty if no landmarks)."""
    from ...portrait import prepare_portrait

    portrait = prepare_portrait(rgb, resolution, view=view)
    if portrait.landmarks is None:
        return []
    crop = (portrait.image.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    mask = portrait.face_mask[0].numpy().astype(np.uint8)
    n = int(round(seconds * fps))
    out = []
    for mirror in (False, True):
        ref = np.ascontiguousarray(crop[:, ::-1] if mirror else crop)
        m = np.ascontiguousarray(mask[:, ::-1] if mirror else mask)
        for state in (IDLE, LISTENING):
            audio = _segment_audio(state, seconds, rng, None, random_voice(rng)).astype(np.float32)
            audio = np.pad(audio, (0, max(0, int(round(seconds * 16000)) - len(audio))))[:int(round(seconds * 16000))]
            out.append(ClipData(np.repeat(ref[None], n, 0), audio, np.zeros(n, np.float32),
                                np.full(n, 0.5, np.float32), np.zeros(n, np.float32),
                                np.full(n, state, np.int64), ref, m, PHOTO_IDENTITY_BASE + 2 * ident + mirror,
                                float(fps), "photo"))
    return out


def ingest_photos(photos: str | Path, out: str | Path, *, val_names: tuple[str, ...] = (), progress: bool = True,
                  seed: int = 0, **kwargs) -> dict:
    """Every photo in ``photos`` -> still clips in ``out`` (train, or val for ``val_names``); resumable."""
    from tqdm import tqdm

    from ...portrait.image_io import load_image

    src, root = Path(photos), Path(out)
    paths = sorted(p for p in src.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    index_path = root / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else []
    done = {e["path"].split("/")[-1].split("_")[0] for e in index}
    counts = {"photos": len(paths), "clips": 0, "no face": 0}
    for k, path in enumerate(tqdm(paths, desc="photos", disable=not progress)):
        if f"{k:05d}" in done:
            counts["clips"] += sum(e["path"].split("/")[-1].startswith(f"{k:05d}_") for e in index)
            continue
        split = "val" if path.stem in val_names else "train"
        rng = np.random.default_rng([seed, k])
        try:
            clips = photo_clips(load_image(str(path)), k, rng, **kwargs)
        except Exception as exc:  # a broken photo must not stop the others
            print(f"  {path.name}: skipped ({type(exc).__name__}: {exc})")
            clips = []
        if not clips:
            counts["no face"] += 1
        for j, clip in enumerate(clips):
            rel = f"{split}/{k:05d}_{j:03d}.npz"
            save_clip(root / rel, clip)
            index.append({"path": rel, "identity": int(clip.identity_id), "split": split, "clip": j})
        counts["clips"] += len(clips)
        index_path.parent.mkdir(parents=True, exist_ok=True)
        index_path.write_text(json.dumps(index, indent=1))
    print(f"{counts['photos']} photos: {counts['clips']} still clips; {counts['no face']} without a face")
    return counts
