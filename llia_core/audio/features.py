"""Where audio becomes per-frame numbers: log-mel and per-video-frame windows with context.

The numbers here are what the model is trained on, so they are fixed: changing the mel settings,
the padding or the window sampling changes the meaning of every trained checkpoint.
Both functions work in chunks so an hour of audio costs little more memory than its output.
"""

from __future__ import annotations

import functools
import math

import torch

from ..errors import AudioError

MEL_HOP = 160  # 10 ms at 16 kHz -> 100 mel frames per second
MEL_WIN = 400  # 25 ms analysis window
MEL_FFT = 512
LOG_SILENCE = math.log(1e-5)  # what a mel bin of digital silence reads
_MEL_CHUNK = 6000  # mel frames per STFT call (60 s): bounds the complex spectrogram's memory
_WINDOW_CHUNK = 2048  # video frames per gather in frame_windows


def frame_count(duration_seconds: float, fps: float) -> int:
    """Video frames needed to cover the audio: ceil(duration * fps).

    A tolerance of 1e-6 frames absorbs float error (2.0 s at 25 fps is 50 frames, not 51). Audio
    shorter than one whole frame is an error: the mouth cannot follow a sound that short.
    """
    try:
        d, f = float(duration_seconds), float(fps)
    except (TypeError, ValueError):
        raise AudioError(f"audio duration {duration_seconds!r} or fps {fps!r} is not a number; pass numbers") from None
    if not (math.isfinite(f) and f > 0):
        raise AudioError(f"fps {fps!r} is not a positive number; use 1 to 120 frames per second")
    if not (math.isfinite(d) and d >= 0):
        raise AudioError(f"audio duration {duration_seconds!r} s is not a length; pass a duration of 0 s or more")
    n = math.ceil(d * f - 1e-6)
    if d * f < 1 - 1e-6:
        raise AudioError(f"the audio is shorter than one video frame ({d * 1000:.1f} ms at {f:g} fps); use at "
                         f"least {math.ceil(1000 / f)} ms of audio")
    return int(n)


@functools.lru_cache(maxsize=8)
def _mel_basis(n_mels: int) -> torch.Tensor:
    """(n_mels, 257) Slaney mel filterbank, 55-7600 Hz (librosa's, built once per size)."""
    import librosa

    basis = librosa.filters.mel(sr=16000, n_fft=MEL_FFT, n_mels=n_mels, fmin=55, fmax=7600)
    return torch.from_numpy(basis).float()


def _mono(waveform: torch.Tensor, what: str) -> torch.Tensor:
    wave = torch.as_tensor(waveform)
    if sum(s > 1 for s in wave.shape) > 1:
        raise AudioError(f"{what} needs a mono (T,) waveform, not {tuple(wave.shape)}; load it with load_audio")
    return wave.reshape(-1).float()


def log_mel(waveform: torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """16 kHz mono -> log-mel at 100 frames/s; frame k is centred at k * 10 ms.

    (T,) -> (1 + max(T, 400) // 160, n_mels) float32: |STFT|^2 (n_fft 512, Hann 400, hop 160,
    reflect-padded as torch.stft(center=True)), a librosa mel filterbank, log(max(mel, 1e-5)).
    """
    if int(n_mels) < 1:
        raise AudioError(f"n_mels must be at least 1, not {n_mels}; use the model config's value (80)")
    wave = _mono(waveform, "log_mel")
    if wave.shape[0] < MEL_WIN:
        wave = torch.nn.functional.pad(wave, (0, MEL_WIN - wave.shape[0]))
    num = 1 + wave.shape[0] // MEL_HOP
    half = MEL_FFT // 2
    padded = torch.nn.functional.pad(wave[None, None], (half, half), mode="reflect")[0, 0]
    window = torch.hann_window(MEL_WIN, device=wave.device)
    basis = _mel_basis(int(n_mels)).to(wave.device)
    out = torch.empty(num, int(n_mels), dtype=torch.float32, device=wave.device)
    for k0 in range(0, num, _MEL_CHUNK):
        k1 = min(num, k0 + _MEL_CHUNK)
        seg = padded[k0 * MEL_HOP: (k1 - 1) * MEL_HOP + MEL_FFT]
        spec = torch.stft(seg, MEL_FFT, hop_length=MEL_HOP, win_length=MEL_WIN, window=window, center=False,
                          return_complex=True).abs().pow(2)
        out[k0:k1] = torch.log((basis @ spec).clamp_min(1e-5)).T
    return out


def frame_windows(mel: torch.Tensor, num_frames: int, fps: float, context: int = 2, mel_per_token: int = 4,
                  token_seconds: float = 0.04) -> torch.Tensor:
    """Per-video-frame audio windows, sampled from the mel by time so any fps reads the same audio.

    (N, n_mels) -> (num_frames, 2*context+1, mel_per_token*n_mels). Frame i is centred at
    (i + 0.5) / fps; token j in [-context, context] spans [c + (j - .5) s, c + (j + .5) s] with
    s = token_seconds (the model's training frame period, whatever the output fps), read at
    mel_per_token evenly spaced points by linear interpolation; outside the mel reads log-silence.
    """
    if mel.ndim != 2 or mel.shape[0] < 1:
        raise AudioError(f"frame_windows needs a (frames, n_mels) log-mel, not {tuple(mel.shape)}; use log_mel")
    num_frames, context, mel_per_token = int(num_frames), int(context), int(mel_per_token)
    if num_frames < 0 or context < 0 or mel_per_token < 1:
        raise AudioError("num_frames and context must be >= 0 and mel_per_token >= 1; use the model config's values")
    if not (math.isfinite(fps) and fps > 0 and math.isfinite(token_seconds) and token_seconds > 0):
        raise AudioError(f"fps ({fps!r}) and token_seconds ({token_seconds!r}) must be positive; fix the settings")
    n_mel, d = mel.shape
    tokens = 2 * context + 1
    padded = torch.cat([mel, torch.full((1, d), LOG_SILENCE, dtype=mel.dtype, device=mel.device)])
    silence = n_mel  # index of the padding row
    offsets = torch.arange(-context, context + 1, dtype=torch.float64)[:, None] * token_seconds
    sub = ((torch.arange(mel_per_token, dtype=torch.float64) + 0.5) / mel_per_token - 0.5) * token_seconds
    offsets, sub = offsets.to(mel.device), sub.to(mel.device)
    out = torch.empty(num_frames, tokens, mel_per_token * d, dtype=torch.float32, device=mel.device)
    for f0 in range(0, num_frames, _WINDOW_CHUNK):
        f1 = min(num_frames, f0 + _WINDOW_CHUNK)
        centers = (torch.arange(f0, f1, dtype=torch.float64, device=mel.device) + 0.5) / fps
        times = centers[:, None, None] + offsets[None] + sub[None, None]  # (f, tokens, M) seconds
        pos = times / (MEL_HOP / 16000)  # in mel frames
        lo = pos.floor().long()
        frac = (pos - lo).float()[..., None]
        hi = lo + 1
        lo = torch.where((lo >= 0) & (lo < n_mel), lo, silence).reshape(-1)
        hi = torch.where((hi >= 0) & (hi < n_mel), hi, silence).reshape(-1)
        view = out[f0:f1].view(f1 - f0, tokens, mel_per_token, d)
        torch.mul(padded.index_select(0, lo).view_as(view), 1 - frac, out=view)
        view.add_(padded.index_select(0, hi).view_as(view).mul_(frac))
    return out
