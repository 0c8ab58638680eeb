"""What the head-motion model learns from: per-frame audio features with the real head's pose and brows.

From each face track (``data/tracks.py``): the head pose of every frame (``portrait/head_pose.py``:
roll, yaw, pitch, shift, against the video's median head) and the brows' height (the brow arches above
the eye centres over the eye distance, on the aligned points, against the video's median), smoothed
over about 0.1 s (the mesh jitters by a few tenths of a degree from frame to frame; a head does not),
with frames of no face and gaps of camera cuts marked invalid. Plus the speech frames (GRID: inside a
word; else the voice-activity detector) for the evaluation's speech-vs-pause numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..audio.features import log_mel
from ..config import HeadMotionConfig
from ..models.head_model import MODEL_FPS, head_features
from .data.tracks import TRACK_RESOLUTION, Track

# MediaPipe face-mesh brow arches (upper edge), image-left and image-right
BROWS = ((70, 63, 105, 66, 107), (300, 293, 334, 296, 336))
LIMITS = np.array([25.0, 30.0, 25.0, 1.0, 1.0, 0.3])  # a pose beyond these is a tracking failure or a cut
CUT_JUMP = np.array([6.0, 8.0, 6.0, 0.25, 0.25, 0.1])  # per-frame jumps above these: a camera cut


@dataclass
class HeadSequence:
    """One video for the head-motion model. feats (F, D); poses (F, 6) (``HEAD_OUTPUTS``); valid (F,)
    bool; speech (F,) bool; loudness (F,) the features' loudness column; person, kind ("grid"/"wild")."""

    name: str
    person: str
    kind: str
    feats: torch.Tensor
    poses: np.ndarray
    valid: np.ndarray
    speech: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.poses.shape[0])

    def flipped(self) -> "HeadSequence":
        """The mirrored video: roll, yaw and the sideways shift change sign; the audio is the same."""
        poses = self.poses * np.array([-1, -1, 1, -1, 1, 1])
        return HeadSequence(self.name + "~flip", self.person, self.kind, self.feats, poses, self.valid, self.speech)


def brow_heights(points: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """(F, 468, 3) aligned points -> (F,) brow height above the eye centres in eye distances, against
    the video's median (NaN where no face)."""
    from ..portrait.landmarks import EYE_A, EYE_B

    p = np.asarray(points, np.float64)
    eyes = [p[:, list(EYE_A), :2].mean(1), p[:, list(EYE_B), :2].mean(1)]
    dist = np.linalg.norm(eyes[0] - eyes[1], axis=1).clip(1e-3)
    h = sum(eye[:, 1] - p[:, list(brow), 1].mean(1) for eye, brow in zip(eyes, BROWS)) / 2 / dist
    h = np.where(ok, h, np.nan)
    return h - np.nanmedian(h) if np.isfinite(h).any() else h


def _smooth(x: np.ndarray, valid: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Gaussian smoothing over valid frames only (each output a weighted mean of valid neighbours)."""
    r = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    w = valid.astype(np.float64)
    xs = np.where(valid[:, None], x, 0.0)
    num = np.stack([np.convolve(xs[:, k], kernel, mode="same") for k in range(x.shape[1])], 1)
    den = np.convolve(w, kernel, mode="same")[:, None]
    return num / np.maximum(den, 1e-9)


def track_head(track: Track) -> tuple[np.ndarray, np.ndarray]:
    """(F, 6) smoothed pose and brows, (F,) valid, of one face track."""
    from ..portrait.head_pose import head_poses, track_points_in_source

    src = track_points_in_source(track.points, track.alignment, TRACK_RESOLUTION)
    return clean_poses(np.concatenate([head_poses(src, track.ok), brow_heights(track.points, track.ok)[:, None]], 1))


def clean_poses(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F, 6) pose and brows as the face mesh read them (NaN: no face) -> the same smoothed over ~0.1 s,
    and (F,) valid: a face, within ``LIMITS``, no camera cut. Real videos and generated ones both go
    through it, so the mesh's frame-to-frame jitter counts alike on both sides (it reads as brow raises)."""
    poses = np.asarray(poses, np.float64)
    valid = np.isfinite(poses).all(1) & (np.abs(np.nan_to_num(poses)) <= LIMITS).all(1)
    jumps = np.zeros(len(poses), bool)
    jumps[1:] = (np.abs(np.diff(np.nan_to_num(poses), axis=0)) > CUT_JUMP).any(1)
    valid &= ~jumps & ~np.roll(jumps, -1)
    return _smooth(np.nan_to_num(poses), valid).astype(np.float32), valid


def sequence_from_track(track: Track, config: HeadMotionConfig) -> HeadSequence:
    from ..audio import detect_speech

    if abs(track.fps - MODEL_FPS) > 1e-3:
        raise ValueError(f"track {track.name} is at {track.fps} fps; the head-motion model learns at {MODEL_FPS}")
    wave = torch.from_numpy(track.waveform())
    poses, valid = track_head(track)
    feats = head_features(log_mel(wave), config, track.num_frames)
    speech = track.word_frames() if track.words else detect_speech(wave, track.num_frames, track.fps).numpy()
    kind = "grid" if track.person.startswith("grid_") else "wild"
    return HeadSequence(track.name, track.person, kind, feats, poses, valid, np.asarray(speech, bool))


def load_sequences(data: str, config: HeadMotionConfig, holdout: tuple[str, ...] = (), progress: bool = False
                   ) -> list[HeadSequence]:
    """Head sequences of every face track under the comma list of folders ``data`` (tracks with too few
    frames or faces left out, and videos or people named in ``holdout``)."""
    from .data.tracks import usable_tracks

    return [sequence_from_track(t, config) for t in usable_tracks(data, holdout, progress, "head tracks")]
