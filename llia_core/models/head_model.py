"""The head-motion model: how the head turns, nods, shifts and how the brows rise, from the speech.

Real talkers move with what they say: more while speaking than in pauses, a nod or a brow raise on a
stressed word, and as much as their own manner says (a studio reader barely moves, a lively speaker
turns by ten degrees). The model learns this from the pose tracks of real talking videos
(``training/head_data.py``) and draws one plausible motion for a seed: it is stochastic, since the
same words never give the same head motion twice.

It runs on its own 25 Hz clock in steps of ``frames_per_step`` frames (160 ms): at each step a GRU hears
the step's audio features (loudness, loudness against the last two seconds, the spectrum's shape, the
loudness change) and gives a Gaussian drive for a damped oscillator per output (``HeadMotionModel``);
a draw from it (scaled by a per-output ``temperature`` calibrated so that the motion's spread matches
the training videos') moves the pose to the step's end. The frames between two steps are interpolated
and lightly smoothed. Nothing reads audio past the step's end, so the same model runs offline, per clip and
live (``HeadMotionStream``), and a seed gives the same motion in all three.

Outputs (``HEAD_OUTPUTS``): roll, yaw, pitch in degrees (``portrait/head_pose.py``'s signs), the head's
shift in face sizes, and the brows' height in eye distances, each against the person's usual pose.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from ..audio.features import MEL_FFT, MEL_HOP
from ..config import HeadMotionConfig

HEAD_OUTPUTS = ("roll", "yaw", "pitch", "shift_x", "shift_y", "brow")
MODEL_FPS = 25.0
MEL_PER_FRAME = 4  # log-mel frames (10 ms) per model frame (40 ms)
LOUDNESS_MEMORY = 50  # model frames (2 s) the relative loudness looks back over
FEATURES_PER_FRAME_EXTRA = 3  # loudness, loudness against the recent peak, loudness change
SAMPLES_PER_FRAME = 640  # 16 kHz samples per model frame
SMOOTHING = 0.45  # one-pole smoothing of the per-frame poses (share of the previous frame's pose kept)


def feature_size(config: HeadMotionConfig) -> int:
    return config.bands + FEATURES_PER_FRAME_EXTRA


def head_features(mel: torch.Tensor, config: HeadMotionConfig, num_frames: int | None = None,
                  past_loudness: torch.Tensor | None = None) -> torch.Tensor:
    """(T, n_mels) log-mel at 100 frames/s -> (F, D) features per 25 Hz frame (frame f hears 10 ms frames
    4f .. 4f+3; nothing later). The loudness against the recent peak reads the last 2 s: of this mel,
    and before its first frame of ``past_loudness`` (``frame_loudness`` of the frames before, as a
    stream keeps them), so features made piece by piece equal the whole audio's."""
    loud, x = _frame_loudness(mel, num_frames)
    frames = loud.shape[0]
    groups = torch.tensor_split(x, config.bands, dim=1)
    shape = torch.stack([g.mean(1) for g in groups], 1) - x.mean(1, keepdim=True)
    past = loud[:1].expand(LOUDNESS_MEMORY - 1) if past_loudness is None or not len(past_loudness) else \
        torch.cat([past_loudness[:1].expand(LOUDNESS_MEMORY - 1), past_loudness])[-(LOUDNESS_MEMORY - 1):]
    padded = torch.cat([past, loud])
    peak = padded.unfold(0, LOUDNESS_MEMORY, 1).amax(1)
    before = torch.cat([loud[:1] if past_loudness is None or not len(past_loudness) else past_loudness[-1:], loud[:-1]])
    change = (loud - before) if frames else loud
    return torch.cat([shape / 2.0, ((loud + 5.0) / 5.0)[:, None], ((loud - peak).clamp(min=-12.0) / 4.0)[:, None],
                      (change.clamp(-6, 6) / 2.0)[:, None]], 1)


def frame_loudness(mel: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
    """(F,) each 25 Hz frame's log loudness (what ``head_features``' relative loudness compares)."""
    return _frame_loudness(mel, num_frames)[0]


def _frame_loudness(mel: torch.Tensor, num_frames: int | None):
    mel = mel.float()
    frames = mel.shape[0] // MEL_PER_FRAME if num_frames is None else int(num_frames)
    need = frames * MEL_PER_FRAME
    if mel.shape[0] < need:  # the audio's last frame is short: repeat its last 10 ms
        mel = torch.cat([mel, mel[-1:].expand(need - mel.shape[0], -1)], 0)
    x = mel[:need].reshape(frames, MEL_PER_FRAME, -1).mean(1)  # (F, n_mels)
    return torch.logsumexp(x, dim=1), x


class HeadMotionModel(nn.Module):
    """An audio-driven damped oscillator per output, on 160 ms steps.

    With p the pose and v its last change (both in units of ``scale``), each step draws
    ``v' = damping * v - pull * p + mean + temperature * std * noise`` and ``p' = p + v'``: ``damping``
    (0..1) and ``pull`` (0..1) are learned per output and keep the motion stationary (it never drifts
    off however long the audio: a head returns to its usual pose), while a GRU over the audio alone
    gives ``mean`` (a nod or a turn on a stressed word) and ``std`` (more motion in speech than in
    pauses). The GRU never sees the pose, so it cannot undo the pull."""

    def __init__(self, config: HeadMotionConfig):
        super().__init__()
        self.config = config
        n = len(HEAD_OUTPUTS)
        self.inputs = nn.Linear(config.frames_per_step * feature_size(config), config.hidden)
        self.cell = nn.GRUCell(config.hidden, config.hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.hidden, 2 * n)
        self.damping_logit = nn.Parameter(torch.full((n,), 1.0))
        self.pull_logit = nn.Parameter(torch.full((n,), -3.0))
        # each output's unit (the training poses' spread) and the noise temperature (calibrated after training)
        self.register_buffer("scale", torch.tensor([3.0, 3.0, 3.0, 0.15, 0.15, 0.03]))
        self.register_buffer("temperature", torch.ones(n))

    @property
    def damping(self) -> torch.Tensor:
        return torch.sigmoid(self.damping_logit)

    @property
    def pull(self) -> torch.Tensor:
        return torch.sigmoid(self.pull_logit)

    def step(self, feats: torch.Tensor, state: torch.Tensor | None):
        """feats (B, frames_per_step, D) -> mean and log std of the step's drive (B, 6) each, and the new
        state (B, hidden)."""
        h = self.cell(torch.nn.functional.gelu(self.inputs(feats.flatten(1))), state)
        mean, log_std = self.out(self.dropout(h)).chunk(2, dim=1)
        return mean, log_std.clamp(-6.0, 2.0), h

    def nll(self, feats: torch.Tensor, poses: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Teacher-forced Gaussian negative log-likelihood of the drives.

        feats (B, S * frames_per_step, D): the audio of S steps; poses (B, S + 2, 6) in units of
        ``scale``: the pose one step before the first step's start, at each step's start and at the
        last step's end; weight (B, S): each step's weight (0 where a pose is not valid)."""
        k = self.config.frames_per_step
        b, s = poses.shape[0], poses.shape[1] - 2
        f = feats.reshape(b, s, k, -1)
        state, losses = None, []
        for j in range(s):
            mean, log_std, state = self.step(f[:, j], state)
            p, v = poses[:, j + 1], poses[:, j + 1] - poses[:, j]
            drive = (poses[:, j + 2] - p) - self.damping * v + self.pull * p
            losses.append((0.5 * ((drive - mean) / log_std.exp()) ** 2 + log_std).mean(1))
        loss = torch.stack(losses, 1)
        return (loss * weight).sum() / weight.sum().clamp(min=1e-9)

    @torch.no_grad()
    def rollout(self, feats: torch.Tensor, seed: int = 0) -> np.ndarray:
        """(F, D) features of a whole audio -> (F, 6) poses (``HEAD_OUTPUTS``, real units) for a seed."""
        stream = HeadMotionStream(self, seed)
        stream.hear(feats)
        stream.finish()
        return stream.poses()


class HeadMotionStream:
    """One video's head motion, drawn as its audio arrives: ``hear`` per-frame features in order, read
    ``pose(t)`` at any time up to what has been drawn (later times hold the last pose). ``hear_audio``
    takes the speech itself (16 kHz) and makes the features.

    A whole audio heard at once and the same audio heard in pieces give the same motion."""

    def __init__(self, model: HeadMotionModel, seed: int = 0):
        self.model, self.seed = model.eval(), int(seed)
        self._wave = np.zeros(0, np.float32)  # the audio still needed for features (16 kHz)
        self._wave_start = 0  # its first sample's index in the whole audio
        self._feature_frames = 0  # frames whose features were heard
        self._loudness = torch.zeros(0)  # the last frames' loudness (``frame_loudness``), for the next ones
        self.k = model.config.frames_per_step
        self._gen = torch.Generator().manual_seed(int(seed))
        self._pending = torch.zeros((0, feature_size(model.config)))
        self._state = None
        self._key = torch.zeros(1, len(HEAD_OUTPUTS))  # the last drawn pose (units of scale); the portrait's at 0
        self._velocity = torch.zeros(1, len(HEAD_OUTPUTS))  # its last change
        self._frames: list[np.ndarray] = [np.zeros(len(HEAD_OUTPUTS))]  # frame 0: the portrait's own pose
        self._smooth = np.zeros(len(HEAD_OUTPUTS))
        self._heard = 0

    @property
    def samples_heard(self) -> int:
        """16 kHz samples given to ``hear_audio`` so far."""
        return self._wave_start + len(self._wave)

    @torch.no_grad()
    def hear(self, feats: torch.Tensor) -> None:
        """Append (N, D) features of the next N frames; draws every step they complete."""
        self._pending = torch.cat([self._pending, feats.float().cpu()], 0)
        self._heard += int(feats.shape[0])
        m = self.model
        while self._pending.shape[0] >= self.k:
            step, self._pending = self._pending[:self.k], self._pending[self.k:]
            mean, log_std, self._state = m.step(step[None], self._state)
            noise = torch.randn(mean.shape, generator=self._gen)
            self._velocity = (m.damping * self._velocity - m.pull * self._key + mean
                              + noise * log_std.exp() * m.temperature)
            new = self._key + self._velocity
            self._interpolate(self._key[0], new[0], self.k)
            self._key = new

    def hear_audio(self, wave) -> None:
        """Append the next 16 kHz samples of the speech (1-D); hears every frame they complete (a frame
        is complete when the 10 ms analysis windows of its last 10 ms are all in)."""
        self._wave = np.concatenate([self._wave, np.asarray(wave, np.float32).reshape(-1)])
        total = self._wave_start + len(self._wave)
        ready = ((total - MEL_FFT // 2) // MEL_HOP - (MEL_PER_FRAME - 1)) // MEL_PER_FRAME + 1
        self._hear_frames(max(0, ready), at_end=False)

    def finish_audio(self, num_frames: int | None = None) -> None:
        """The speech has ended: hear its last frames (``num_frames`` in all: the video's; the audio's
        by default), then ``finish``."""
        total = self._wave_start + len(self._wave)
        n = -(-total // SAMPLES_PER_FRAME) if num_frames is None else int(num_frames)
        self._hear_frames(n, at_end=True)
        self.finish()

    def _hear_frames(self, n: int, at_end: bool) -> None:
        from ..audio.features import log_mel

        if n <= self._feature_frames or not len(self._wave):
            return
        # the new frames' log-mel from one frame before them (its analysis windows reach 256 samples back);
        # the 2 s of loudness before them from what was heard
        first = max(self._wave_start // SAMPLES_PER_FRAME, self._feature_frames - 1)
        excerpt = self._wave[first * SAMPLES_PER_FRAME - self._wave_start:]
        mel = log_mel(torch.from_numpy(excerpt))[(self._feature_frames - first) * MEL_PER_FRAME:]
        new = n - self._feature_frames
        feats = head_features(mel, self.model.config, new, self._loudness)
        # (a history shorter than the memory starts at frame 0, whose loudness pads it as the whole audio's does)
        self._loudness = torch.cat([self._loudness, frame_loudness(mel, new)])[-(LOUDNESS_MEMORY - 1):]
        self.hear(feats)
        self._feature_frames = n
        if not at_end:  # keep only what the next frames' log-mel still reads
            keep = max(self._wave_start, (n - 1) * SAMPLES_PER_FRAME)
            self._wave = self._wave[keep - self._wave_start:]
            self._wave_start = keep

    def finish(self) -> None:
        """The audio has ended: hold the last pose over the frames of an incomplete step."""
        n = self._heard - len(self._frames) + 1
        if n > 0:
            self._interpolate(self._key[0], self._key[0], n)

    def _interpolate(self, a: torch.Tensor, b: torch.Tensor, n: int) -> None:
        scale = self.model.scale.numpy()
        for i in range(1, n + 1):
            target = ((a + (b - a) * i / self.k) if n == self.k else b).numpy() * scale
            self._smooth = SMOOTHING * self._smooth + (1 - SMOOTHING) * target
            self._frames.append(self._smooth.copy())

    def poses(self) -> np.ndarray:
        """(F, 6) every frame drawn so far (frame 0: the portrait's own pose)."""
        return np.stack(self._frames)[:max(self._heard, 1)]

    def pose(self, seconds: float) -> np.ndarray:
        """(6,) the pose at ``seconds`` into the video (linear between frames; held past the last drawn)."""
        x = max(0.0, seconds * MODEL_FPS)
        i = int(math.floor(x))
        if i + 1 >= len(self._frames):
            return self._frames[-1].copy()
        w = x - i
        return (1 - w) * self._frames[i] + w * self._frames[i + 1]
