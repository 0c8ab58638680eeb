"""Where audio becomes per-frame numbers: log-mel and per-video-frame windows with context."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ..errors import AudioError

MEL_HOP = 160  # 10 ms at 16 kHz -> 100 mel frames per second
LOG_SILENCE = math.log(1e-5)


def frame_count(duration_seconds: float, fps: float) -> int:
    """Video frames needed to cover the audio: ceil(duration * fps), robust to float error."""
    n = int(math.ceil(duration_seconds * fps - 1e-6))
    if n < 1:
        raise AudioError(
            f"the audio ({duration_seconds * 1000:.1f} ms) is shorter than one video frame at {fps:g} fps; "
            f"use at least {1000 / fps:.0f} ms of audio"
        )
    return n


@functools.lru_cache(maxsize=4)
def _mel_basis(n_mels: int) -> torch.Tensor:
    import librosa

    return torch.from_numpy(librosa.filters.mel(sr=16000, n_fft=512, n_mels=n_mels, fmin=55, fmax=7600)).float()


def log_mel(waveform: torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """(T,) 16 kHz -> (N, n_mels) log-mel, frame k centred at k * 10 ms."""
    wave = waveform.float().reshape(-1)
    if wave.shape[0] < 400:
        wave = torch.nn.functional.pad(wave, (0, 400 - wave.shape[0]))
    spec = torch.stft(wave, 512, hop_length=MEL_HOP, win_length=400, window=torch.hann_window(400),
                      center=True, return_complex=True).abs() ** 2
    mel = _mel_basis(n_mels) @ spec
    return torch.log(mel.clamp_min(1e-5)).T.contiguous()


def frame_windows(mel: torch.Tensor, num_frames: int, fps: float, context: int = 2, mel_per_token: int = 4,
                  token_seconds: float = 0.04) -> torch.Tensor:
    """(N, n_mels) -> (num_frames, 2*context+1, mel_per_token*n_mels), linear interpolation.

    Frame i is centred at (i + 0.5) / fps; token j spans [c + (j - .5) s, c + (j + .5) s] with
    s = token_seconds (the model's training frame period, whatever the output fps).
    """
    n_mel, d = mel.shape
    centers = (torch.arange(num_frames, dtype=torch.float64) + 0.5) / fps
    offsets = torch.arange(-context, context + 1, dtype=torch.float64)[:, None] * token_seconds
    sub = ((torch.arange(mel_per_token, dtype=torch.float64) + 0.5) / mel_per_token - 0.5) * token_seconds
    times = centers[:, None, None] + offsets[None] + sub[None, None]  # (F, T, M)
    pos = times / (MEL_HOP / 16000)
    lo = pos.floor().long()
    frac = (pos - lo).float()[..., None]
    padded = torch.cat([mel, torch.full((1, d), LOG_SILENCE, dtype=mel.dtype)])
    silence = n_mel  # index of the padding row

    def gather(idx):
        idx = torch.where((idx >= 0) & (idx < n_mel), idx, torch.full_like(idx, silence))
        return padded[idx]

    out = gather(lo) * (1 - frac) + gather(lo + 1) * frac
    return out.reshape(num_frames, 2 * context + 1, mel_per_token * d).float()
