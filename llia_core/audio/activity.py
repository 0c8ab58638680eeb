"""Speech activity and loudness per video frame, without downloaded weights.

The speaking/listening states and the mouth's rest need to know when someone talks, on any
machine and offline, so this is classic signal processing: speech-band energy against an adaptive
noise floor, a spectral cue that rejects steady noise and hum, and hysteresis/hangover smoothing.
Decisions are made on a fixed 10 ms grid, then mapped to video frames, so they do not depend on fps.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import AudioError
from .io import SAMPLE_RATE

_HOP, _WIN, _FFT = 160, 400, 512  # 10 ms grid, 25 ms Hann window
_CHUNK = 6000  # grid frames per STFT call (60 s)
_BAND = (300.0, 3400.0)  # telephone speech band: voiced energy lives here, hum and hiss mostly do not
_FLOOR_PERCENTILE = 10.0  # the quietest 10 % of non-silent grid frames is taken as the noise floor
_MARGIN_DB = 9.0  # a frame must be this far above the floor to start speech...
_HOLD_DB = 4.0  # ...and may continue down to this far above it (hysteresis)
_MIN_LEVEL_DB = -60.0  # quieter than this (dBFS, speech band) is never speech
_DIGITAL_SILENCE_DB = -90.0  # frames this quiet are left out of the noise-floor estimate
_MAX_FLATNESS = 0.45  # speech-band spectral flatness: white noise ~0.56, voiced speech well below
_MIN_BAND_SHARE = 0.1  # share of the above-floor energy in the speech band (voices put far more there; rumble far less)


def _check(waveform, num_frames, fps) -> tuple[torch.Tensor, int, float]:
    wave = torch.as_tensor(waveform)
    if sum(s > 1 for s in wave.shape) > 1:
        raise AudioError(f"speech detection needs a mono (T,) waveform, not {tuple(wave.shape)}; load it "
                         "with load_audio")
    try:
        n, f = int(num_frames), float(fps)
    except (TypeError, ValueError):
        raise AudioError(f"num_frames {num_frames!r} and fps {fps!r} must be numbers; pass numbers") from None
    if n < 0 or not (math.isfinite(f) and f > 0):
        raise AudioError(f"num_frames ({num_frames!r}) must be >= 0 and fps ({fps!r}) positive; fix the call")
    return wave.detach().reshape(-1).float().cpu(), n, f


def _frame_bounds(num_frames: int, fps: float, rate: float) -> np.ndarray:
    """(num_frames + 1,) integer boundaries of video frame spans [i/fps, (i+1)/fps) on a grid at ``rate``."""
    return np.round(np.arange(num_frames + 1, dtype=np.float64) * (rate / fps)).astype(np.int64)


def frame_rms(waveform: torch.Tensor, num_frames: int, fps: float) -> torch.Tensor:
    """RMS of each video frame's audio span [i/fps, (i+1)/fps); beyond the audio counts as silence.

    (T,) 16 kHz -> (num_frames,) float32.
    """
    wave, n, f = _check(waveform, num_frames, fps)
    bounds = _frame_bounds(n, f, SAMPLE_RATE)
    counts = np.maximum(np.diff(bounds), 1)
    x = wave.numpy()
    sums = np.zeros(n, dtype=np.float64)
    inside = bounds[:-1] < x.shape[0]
    if inside.any():
        sums[inside] = np.add.reduceat(np.square(x, dtype=np.float32), bounds[:-1][inside], dtype=np.float64)
        last = np.flatnonzero(inside)[-1]  # reduceat runs the last span to the end of x: cut it at the frame's end
        end = min(bounds[last + 1], x.shape[0])
        sums[last] = np.square(x[bounds[last]:end], dtype=np.float64).sum()
    return torch.from_numpy(np.sqrt(sums / counts).astype(np.float32))


def _grid_features(wave: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per 10 ms frame: speech-band power, total power (both mean-square), band flatness, n frames."""
    num = 1 + wave.shape[0] // _HOP
    padded = torch.nn.functional.pad(wave, (_FFT // 2, _FFT // 2 + _FFT))  # zeros: edges read as silence
    window = torch.hann_window(_WIN)
    scale = 2.0 / (_FFT * float(window.pow(2).sum()))  # one-sided |X|^2 -> mean-square amplitude
    freqs = torch.arange(_FFT // 2 + 1) * (SAMPLE_RATE / _FFT)
    band = (freqs >= _BAND[0]) & (freqs <= _BAND[1])
    band_pow, total_pow, flat = (np.empty(num, np.float64) for _ in range(3))
    for k0 in range(0, num, _CHUNK):
        k1 = min(num, k0 + _CHUNK)
        seg = padded[k0 * _HOP: (k1 - 1) * _HOP + _FFT]
        power = torch.stft(seg, _FFT, _HOP, _WIN, window, center=False, return_complex=True).abs().pow(2).double()
        inband = power[band]
        band_pow[k0:k1] = (inband.sum(0) * scale).numpy()
        total_pow[k0:k1] = (power[1:].sum(0) * scale).numpy()
        geo = torch.log(inband + 1e-20).mean(0).exp()
        flat[k0:k1] = (geo / (inband.mean(0) + 1e-20)).numpy()
    return band_pow, total_pow, flat


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) indices of the True runs of a 1-D bool array."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def _from_runs(length: int, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    d = np.zeros(length + 1, np.int64)
    np.add.at(d, starts, 1)
    np.add.at(d, ends, -1)
    return np.cumsum(d[:-1]) > 0


def _smooth(strong: np.ndarray, weak: np.ndarray, gap: int, min_len: int) -> np.ndarray:
    """Hysteresis (weak runs touching a strong frame), bridge gaps <= gap, drop runs < min_len."""
    starts, ends = _runs(weak | strong)
    hits = np.concatenate([[0], np.cumsum(strong)])
    keep = hits[ends] > hits[starts]
    starts, ends = starts[keep], ends[keep]
    if len(starts) > 1:
        join = (starts[1:] - ends[:-1]) > gap  # a gap this long separates two segments
        starts = np.concatenate([starts[:1], starts[1:][join]])
        ends = np.concatenate([ends[:-1][join], ends[-1:]])
    keep = (ends - starts) >= min_len
    return _from_runs(strong.shape[0], starts[keep], ends[keep])


def detect_speech(waveform: torch.Tensor, num_frames: int, fps: float, *, threshold_db: float | None = None,
                  hangover: float = 0.25, min_speech: float = 0.1) -> torch.Tensor:
    """Voice activity per video frame: True where someone speaks.

    (T,) 16 kHz -> (num_frames,) bool. On a 10 ms grid, a frame starts speech when its 300-3400 Hz
    power is 9 dB over the noise floor (10th percentile, or ``threshold_db`` dBFS when given) and
    the excess is speech-like (mostly in-band, not flat like hiss); speech continues while 4 dB
    over. Gaps up to ``hangover`` s are bridged and bursts under ``min_speech`` s dropped; a video
    frame is speech when most of its span is. Silence and steady noise give all False.
    """
    wave, n, f = _check(waveform, num_frames, fps)
    try:
        hangover, min_speech = float(hangover), float(min_speech)
        threshold = None if threshold_db is None else float(threshold_db)
    except (TypeError, ValueError):
        raise AudioError("hangover, min_speech and threshold_db must be numbers; pass seconds and dBFS") from None
    if not (hangover >= 0 and min_speech >= 0) or (threshold is not None and math.isnan(threshold)):
        raise AudioError("hangover and min_speech must be >= 0 s and threshold_db a number; fix the settings")
    if n == 0:
        return torch.zeros(0, dtype=torch.bool)
    if wave.shape[0] == 0 or not torch.isfinite(wave).all():
        raise AudioError("speech detection got an empty or non-finite waveform; load the audio with load_audio")
    band_pow, total_pow, flat = _grid_features(wave)
    band_db = 10 * np.log10(band_pow + 1e-12)
    audible = band_db > _DIGITAL_SILENCE_DB
    if not audible.any():
        return torch.zeros(n, dtype=torch.bool)
    floor_db = float(np.percentile(band_db[audible], _FLOOR_PERCENTILE))
    start_db = floor_db + _MARGIN_DB if threshold is None else threshold
    hold_db = start_db - (_MARGIN_DB - _HOLD_DB)
    # share of the energy above the floor that is in the speech band: steady hum/rumble is subtracted out
    noise_band = 10 ** (floor_db / 10)
    noise_total = float(np.percentile(total_pow[audible], _FLOOR_PERCENTILE))
    share = (band_pow - noise_band) / np.maximum(total_pow - noise_total, 1e-12)
    loud = band_db > _MIN_LEVEL_DB
    strong = loud & (band_db > start_db) & (flat < _MAX_FLATNESS) & (share > _MIN_BAND_SHARE)
    weak = loud & (band_db > hold_db)
    grid_rate = SAMPLE_RATE / _HOP
    active = _smooth(strong, weak, int(round(hangover * grid_rate)), int(round(min_speech * grid_rate)))
    # video frame i is speech when at least half of the grid points in [i/fps, (i+1)/fps) are
    # (above 100 fps a span may hold none: then the grid point nearest its centre decides)
    bounds = _frame_bounds(n, f, grid_rate)
    lo, hi = bounds[:-1], bounds[1:]
    empty = hi <= lo
    lo = np.where(empty, np.floor((np.arange(n) + 0.5) * (grid_rate / f) + 0.5).astype(np.int64), lo)
    hi = np.where(empty, lo + 1, hi)
    count = hi - lo
    cum = np.concatenate([[0], np.cumsum(active)])
    lo, hi = np.minimum(lo, active.shape[0]), np.minimum(hi, active.shape[0])
    return torch.from_numpy((cum[hi] - cum[lo]) * 2 >= count)
