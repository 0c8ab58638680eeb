"""python -m llia_core.training.data --out DIR --identities N --clips K [--preview sheet.png]
python -m llia_core.training.data --videos DIR --out DATA [--val name1,name2]   (real videos)
python -m llia_core.training.data --videos DIR --out DATA --tracks-only   (face tracks for the mouth model)"""

from __future__ import annotations

import argparse

import numpy as np

from .clips import make_clip
from .dataset import generate_dataset


def write_preview(path, identities: int = 6, frames: int = 8, resolution: int = 128) -> None:
    """Contact sheet: one row per identity, frames across a switching clip, state written on each."""
    import cv2

    from ...states import STATE_NAMES

    rows = []
    for ident in range(identities):
        clip = make_clip(ident, 1, kind="switch", resolution=resolution)
        idx = np.linspace(0, len(clip.frames) - 1, frames).astype(int)
        tiles = []
        for i in idx:
            tile = cv2.resize(clip.frames[i], (192, 192), interpolation=cv2.INTER_NEAREST).copy()
            cv2.putText(tile, STATE_NAMES[int(clip.states[i])], (4, 186), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
            tiles.append(tile)
        rows.append(np.concatenate(tiles, 1))
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m llia_core.training.data", description="generate talking-avatar clips")
    p.add_argument("--out", required=False, default="data")
    p.add_argument("--identities", type=int, default=300)
    p.add_argument("--first-identity", type=int, default=0)
    p.add_argument("--clips", type=int, default=4, help="clips per identity")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--config", default=None, help="crop to this model config's framing (e.g. real-lower: the lower "
                   "face); default: the whole face")
    p.add_argument("--split", default=None, choices=(None, "train", "val", "test"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--preview", default=None, help="also write a contact sheet PNG here")
    p.add_argument("--videos", default=None, help="a folder of real talking-head videos to turn into clips "
                   "(instead of synthetic ones)")
    p.add_argument("--photos", default=None, help="a folder of portrait photos to turn into still clips "
                   "(idle and listening, mirrored too)")
    p.add_argument("--val", default="", help="with --videos / --photos: comma list of video names (without suffix) for the val split")
    p.add_argument("--clip-seconds", type=float, default=3.0, help="with --videos: clip length")
    p.add_argument("--max-seconds", type=float, default=None, help="with --videos: read at most this much of each video")
    p.add_argument("--tracks-only", action="store_true", help="with --videos: write only the face tracks (landmarks, "
                   "audio, GRID word timings; DATA/tracks/) the audio-to-mouth model trains on, no clips")
    a = p.parse_args(argv)
    from ...framing import FACE

    view = FACE
    if a.config:
        from ...config import get_config

        view = get_config(a.config).framing
    if a.videos and a.tracks_only:
        from .tracks import track_videos

        track_videos(a.videos, a.out, fps=a.fps, max_seconds=a.max_seconds, workers=a.workers)
        return 0
    if a.videos:
        from .videos import ingest_videos

        ingest_videos(a.videos, a.out, val_names=tuple(filter(None, a.val.split(","))), fps=a.fps,
                      resolution=a.resolution, clip_seconds=a.clip_seconds, max_seconds=a.max_seconds, view=view)
        return 0
    if a.photos:
        from .photos import ingest_photos

        ingest_photos(a.photos, a.out, val_names=tuple(filter(None, a.val.split(","))), fps=a.fps,
                      resolution=a.resolution, view=view)
        return 0
    if a.preview:
        write_preview(a.preview, resolution=a.resolution)
    if a.identities > 0:
        root = generate_dataset(a.out, num_identities=a.identities, clips_per_identity=a.clips, seconds=a.seconds,
                                fps=a.fps, resolution=a.resolution, seed=a.seed, split=a.split, workers=a.workers,
                                first_identity=a.first_identity, view=view)
        print(f"dataset at {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
