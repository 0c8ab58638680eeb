"""Datasets on disk: one compressed .npz per clip plus index.json; resumable generation."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ...framing import FACE, Framing
from .clips import ClipData, make_clip
from .identity import split_of


def _clip_path(root: Path, split: str, identity: int, clip: int) -> Path:
    return root / split / f"{identity:05d}_{clip:03d}.npz"


def save_clip(path: Path, clip: ClipData) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    data = asdict(clip)
    np.savez_compressed(tmp, **{k: np.asarray(v) for k, v in data.items()})
    tmp.replace(path)


def load_clip(path) -> ClipData:
    with np.load(path, allow_pickle=False) as z:
        values = {f.name: z[f.name] for f in fields(ClipData)}
    values["identity_id"] = int(values["identity_id"])
    values["fps"] = float(values["fps"])
    values["kind"] = str(values["kind"])
    return ClipData(**values)


def _job(args):
    root, split, ident, k, seconds, fps, res, seed, view = args
    path = _clip_path(Path(root), split, ident, k)
    if not path.exists():
        save_clip(path, make_clip(ident, seed * 1000 + k, seconds=seconds, fps=fps, resolution=res, view=view))
    return str(path), ident, split, k


def generate_dataset(out_dir, *, num_identities: int, clips_per_identity: int, seconds: float = 3.0, fps: int = 25,
                     resolution: int = 128, seed: int = 0, split: str | None = None, workers: int = 1,
                     progress: bool = True, first_identity: int = 0, view: Framing = FACE) -> Path:
    """Write clips for identities [first_identity, first_identity + N) whose split matches; ``view``:
    which part of the face the crops show."""
    from tqdm import tqdm

    root = Path(out_dir)
    idents = [i for i in range(first_identity, first_identity + num_identities) if split is None or split_of(i) == split]
    jobs = [(str(root), split_of(i), i, k, seconds, fps, resolution, seed, view) for i in idents
            for k in range(clips_per_identity)]
    results = []
    if workers > 1:
        with get_context("spawn").Pool(workers) as pool:
            for r in tqdm(pool.imap(_job, jobs, chunksize=4), total=len(jobs), disable=not progress, desc="clips"):
                results.append(r)
    else:
        for j in tqdm(jobs, disable=not progress, desc="clips"):
            results.append(_job(j))
    index_path = root / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else []
    known = {e["path"] for e in index}
    for path, ident, sp, k in results:
        rel = str(Path(path).relative_to(root))
        if rel not in known:
            index.append({"path": rel, "identity": ident, "split": sp, "clip": k})
    index_path.write_text(json.dumps(index, indent=1))
    return root


class ClipDataset:
    """Clips of one split, loaded lazily."""

    def __init__(self, root, split: str):
        self.root = Path(root)
        index = json.loads((self.root / "index.json").read_text())
        self.paths = [self.root / e["path"] for e in index if e["split"] == split]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> ClipData:
        return load_clip(self.paths[i])
