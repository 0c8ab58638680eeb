"""Training windows: clips in memory -> batches of (motion frames + new frames).

Variable-length training (LLIA): early on every batch has the same clip length; afterwards the
length is drawn per batch from 1 frame up to the maximum, and the number of motion frames from
0 up to ``motion_frames``, so one model serves the short first clip and the long later ones.
The batch size adapts so every batch holds about ``batch_frames`` frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..audio import Audio, audio_windows
from ..config import LLIAConfig


@dataclass
class TrainingClip:
    """One clip ready for training. frames: (F, R, R, 3) uint8; windows: (F, T, D) float32."""

    frames: torch.Tensor
    windows: torch.Tensor
    states: torch.Tensor
    reference: torch.Tensor  # (3, R, R) float 0..1
    face_mask: torch.Tensor  # (1, R, R) float 0/1
    mouth: torch.Tensor | None = None  # (F, 3) true opening, width, roundness (generated data only)
    identity: int | None = None  # the person (or source video) the clip came from


def check_resolution(size, config: LLIAConfig, where: str = "the training data") -> None:
    """A clip's (H, W) against the model's resolution: a mismatch is a one-line error with the fix, not a
    shape error from inside the training step."""
    h, w = (int(v) for v in size)
    if (h, w) != (config.resolution, config.resolution):
        from ..errors import LLIAError

        raise LLIAError(f"{where} is {w}x{h} px but the '{config.name}' model works at {config.resolution}x"
                        f"{config.resolution}; ingest the data again with --resolution {config.resolution} "
                        f"(python -m llia_core.training.data ... --resolution {config.resolution}) or train a model "
                        f"of that size")


def clip_to_training(clip, config: LLIAConfig) -> TrainingClip:
    """Turn a generated or read clip (arrays) into tensors with audio windows computed once."""
    frames = torch.as_tensor(np.asarray(clip.frames))
    check_resolution(frames.shape[1:3], config)
    n = frames.shape[0]
    audio = Audio(torch.as_tensor(np.asarray(clip.audio), dtype=torch.float32))
    windows = audio_windows(audio.waveform, n, float(clip.fps), config.audio)
    reference = torch.as_tensor(np.asarray(clip.reference)).permute(2, 0, 1).float() / 255.0
    mask = torch.as_tensor(np.asarray(clip.face_mask)).float()[None]
    mouth = None
    if getattr(clip, "mouth_open", None) is not None:
        mouth = torch.as_tensor(np.stack([np.asarray(getattr(clip, f"mouth_{k}"), np.float32)
                                          for k in ("open", "width", "round")], axis=1))
    identity = getattr(clip, "identity_id", None)
    return TrainingClip(frames, windows.float(), torch.as_tensor(np.asarray(clip.states)).long(), reference,
                        (mask > 0).float(), mouth, None if identity is None else int(identity))


class ClipPool(Sequence):
    """A split's training clips by index: all in memory, or read from disk when drawn.

    Small datasets (the bundled recipe) load once. A paper-scale one does not fit in memory (a
    3-second clip at 384 px is 33 MB of frames: ten hours of HDTF would be 400 GB), so past
    ``in_memory`` clips only the paths and frame counts are kept and a drawn clip is read from its
    .npz (the last ``cache`` read stay in memory). Either way ``pool[i]`` is the same clip.
    """

    def __init__(self, paths: list[Path], config: LLIAConfig, *, in_memory: int = 2000, cache: int = 64,
                 progress: bool = True):
        from tqdm import tqdm

        from .data.dataset import load_clip

        self.paths, self.config, self.cache = list(paths), config, max(1, int(cache))
        self._load = lambda p: clip_to_training(load_clip(p), config)
        self._memory: dict[int, TrainingClip] = {}
        self.lazy = len(self.paths) > in_memory
        if not self.lazy:
            self._memory = {i: self._load(p) for i, p in enumerate(tqdm(self.paths, desc="load clips",
                                                                         disable=not progress))}
            self.lengths = np.array([c.frames.shape[0] for c in self._memory.values()], dtype=np.int64)
        else:
            self.lengths = np.array([_frame_count(p) for p in tqdm(self.paths, desc="index clips",
                                                                   disable=not progress)], dtype=np.int64)
            with np.load(self.paths[0], allow_pickle=False) as z:  # the size of the data before the first step
                check_resolution(z["reference"].shape[:2], config, f"the training data ({self.paths[0].parent})")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> TrainingClip:
        i = int(i)
        clip = self._memory.get(i)
        if clip is None:
            clip = self._load(self.paths[i])
            if self.lazy:
                if len(self._memory) >= self.cache:
                    self._memory.pop(next(iter(self._memory)))  # the oldest read
                self._memory[i] = clip
        return clip


def _frame_count(path) -> int:
    """Frames of a clip file, read from its (small) states array only."""
    with np.load(path, allow_pickle=False) as z:
        return int(z["states"].shape[0])


def load_training_clips(root, split: str, config: LLIAConfig, limit: int | None = None,
                        progress: bool = True, in_memory: int = 2000) -> ClipPool:
    """The clips of ``split`` in one or several datasets ("real,photos,cartoons")."""
    from .data.dataset import ClipDataset

    paths = []
    for one in str(root).split(","):
        ds = ClipDataset(one, split)
        paths += list(ds.paths)[:limit] if limit else list(ds.paths)
    return ClipPool(paths, config, in_memory=in_memory, progress=progress)


@dataclass
class Batch:
    """frames (B, F, 3, R, R) 0..1; motion_flags (B, F); windows (B, F, T, D); states (B, F)."""

    frames: torch.Tensor
    motion_flags: torch.Tensor
    windows: torch.Tensor
    states: torch.Tensor
    reference: torch.Tensor
    face_mask: torch.Tensor
    mouth: torch.Tensor | None = None  # (B, F, 3) when every clip of the batch has ground truth

    def to(self, device) -> "Batch":
        return Batch(*(None if getattr(self, f) is None else getattr(self, f).to(device)
                       for f in self.__dataclass_fields__))


def sample_batch(clips: ClipPool | list[TrainingClip], rng: np.random.Generator, *, clip_len: int, motion: int,
                 batch_frames: int) -> Batch:
    """Random windows of ``motion + clip_len`` frames from random clips."""
    span = motion + clip_len
    lengths = clips.lengths if isinstance(clips, ClipPool) else np.array([c.frames.shape[0] for c in clips])
    eligible = np.flatnonzero(lengths >= span)
    if not len(eligible):
        raise ValueError(f"no training clip has {span} frames; generate longer clips")
    b = max(1, batch_frames // span)
    picks = rng.integers(0, len(eligible), size=b)
    rows = []
    for i in picks:
        k = int(eligible[int(i)])
        s = int(rng.integers(0, int(lengths[k]) - span + 1))
        rows.append((clips[k], s))
    frames = torch.stack([c.frames[s:s + span] for c, s in rows]).permute(0, 1, 4, 2, 3).float() / 255.0
    flags = torch.zeros(b, span)
    flags[:, :motion] = 1
    return Batch(
        frames=frames,
        motion_flags=flags,
        windows=torch.stack([c.windows[s:s + span] for c, s in rows]),
        states=torch.stack([c.states[s:s + span] for c, s in rows]),
        reference=torch.stack([c.reference for c, _ in rows]),
        face_mask=torch.stack([c.face_mask for c, _ in rows]),
        mouth=(torch.stack([c.mouth[s:s + span] for c, s in rows])
               if all(c.mouth is not None for c, _ in rows) else None),
    )


def draw_lengths(rng: np.random.Generator, step: int, fixed_steps: int, fixed_len: int, max_len: int,
                 max_motion: int) -> tuple[int, int]:
    """(clip_len, motion) for this step: fixed length first, then variable lengths 1..max_len."""
    if step < fixed_steps:
        return fixed_len, int(rng.integers(0, max_motion + 1))
    # favour short clips (the latency path) and full ones (the throughput path) equally
    clip_len = int(rng.integers(1, 5)) if rng.random() < 0.35 else int(rng.integers(5, max_len + 1))
    return clip_len, int(rng.integers(0, max_motion + 1))


def dataset_exists(root) -> bool:
    return (Path(root) / "index.json").exists()
