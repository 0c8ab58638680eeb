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
from .io import SAMPLE_RATE, WaveformFile, read_span

_HOP, _WIN, _FFT = 160, 640, 1024  # 10 ms grid; 40 ms Hann window holds two periods of a 60 Hz voice
_CHUNK = 6000  # grid frames per FFT call (60 s)
_RMS_CHUNK = 1500  # video frames per loudness pass
_NOISE_SAMPLE = 4000  # frames used to estimate the noise spectrum
_NOISE_SMOOTH_HZ = 400.0  # frequency smoothing of that estimate
_BAND = (300.0, 3400.0)  # telephone speech band: voiced energy lives here, hum and hiss mostly do not
_FLOOR_PERCENTILE = 10.0  # the quietest 10 % of non-silent grid frames is taken as the noise floor
_MARGIN_DB = 6.0  # a frame must be this far above the floor to start speech...
_HOLD_DB = 3.0  # ...and may continue down to this far above it (hysteresis)
_MIN_LEVEL_DB = -60.0  # quieter than this (dBFS, speech band) is never speech
_DIGITAL_SILENCE_DB = -90.0  # frames this quiet are left out of the noise-floor estimate
_PITCH = (60, 400)  # Hz: the voice pitch range searched for periodicity
_MIN_HARMONICITY = 0.5  # whitened noise reads ~0.35 (99th percentile ~0.43), voiced speech 0.6-0.95
_MIN_STRONG_SHARE = 0.1  # a speech run needs this share of clearly voiced frames (noise: well under 1 %)
_MIN_BAND_SHARE = 0.1  # in-band share of the energy above the floor: voices have far more, rumble far less


def _check(waveform, num_frames, fps) -> tuple[torch.Tensor | WaveformFile, int, float]:
    wave = waveform if isinstance(waveform, WaveformFile) else torch.as_tensor(waveform)
    if sum(s > 1 for s in wave.shape) > 1:
        raise AudioError(f"speech detection needs a mono (T,) waveform, not {tuple(wave.shape)}; load it "
                         "with load_audio")
    if isinstance(wave, WaveformFile):
        return wave, *_counts(num_frames, fps)
    return wave.detach().reshape(-1).float().cpu(), *_counts(num_frames, fps)


def _counts(num_frames, fps) -> tuple[int, float]:
    try:
        n, f = int(num_frames), float(fps)
    except (TypeError, ValueError):
        raise AudioError(f"num_frames {num_frames!r} and fps {fps!r} must be numbers; pass numbers") from None
    if n < 0 or not (math.isfinite(f) and f > 0):
        raise AudioError(f"num_frames ({num_frames!r}) must be >= 0 and fps ({fps!r}) positive; fix the call")
    return n, f


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
    length = wave.shape[0]
    sums = np.zeros(n, dtype=np.float64)
    for i0 in range(0, n, _RMS_CHUNK):  # a minute of frames at a time: long audio is read piece by piece
        i1 = min(n, i0 + _RMS_CHUNK)
        a, b = int(bounds[i0]), int(min(bounds[i1], length))
        if a >= length:
            break
        x = read_span(wave, a, b)
        starts = bounds[i0:i1] - a
        starts = starts[starts < x.shape[0]]  # frames that begin inside the audio (a prefix)
        # reduceat runs each span to the next start, the last to the end of x (its frame's end or the audio's)
        sums[i0:i0 + starts.shape[0]] = np.add.reduceat(np.square(x, dtype=np.float32), starts, dtype=np.float64)
    return torch.from_numpy(np.sqrt(sums / counts).astype(np.float32))


def _grid_features(wave) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per 10 ms frame: speech-band power, total power (both mean-square) and harmonicity.

    Harmonicity is the highest normalised autocorrelation at pitch lags (60-400 Hz) of the
    speech band after dividing by the noise spectrum (a per-bin low percentile over a subsample
    of frames, smoothed over frequency): whitened steady noise of any colour reads about 0.35,
    a voice 0.6-0.95.
    """
    num = 1 + wave.shape[0] // _HOP
    window = torch.zeros(_FFT)
    window[(_FFT - _WIN) // 2: (_FFT + _WIN) // 2] = torch.hann_window(_WIN)
    scale = 2.0 / (_FFT * float(window.pow(2).sum()))  # one-sided |X|^2 -> mean-square amplitude
    freqs = torch.arange(_FFT // 2 + 1) * (SAMPLE_RATE / _FFT)
    band = (freqs >= _BAND[0]) & (freqs <= _BAND[1])
    lags = torch.arange(SAMPLE_RATE // _PITCH[1], SAMPLE_RATE // _PITCH[0] + 1)
    win_ac = torch.fft.irfft(torch.fft.rfft(window.double()).abs().pow(2), _FFT).float()
    win_ac = win_ac[lags] / win_ac[0]  # the window's own decay, divided out below

    def frames(k0: int, k1: int) -> torch.Tensor:
        """(k1 - k0, FFT) grid frames, frame k centred on sample k * HOP; outside the audio reads silence."""
        x = read_span(wave, k0 * _HOP - _FFT // 2, (k1 - 1) * _HOP + _FFT // 2)
        return torch.from_numpy(x).unfold(0, _FFT, _HOP)

    def power(x: torch.Tensor) -> torch.Tensor:
        spec = torch.fft.rfft(x * window)
        return spec.real.square() + spec.imag.square()

    pick = torch.linspace(0, num - 1, min(num, _NOISE_SAMPLE)).round().long()
    sample = power(torch.cat([frames(k, k + 1) for k in pick.tolist()]))
    audible = 10 * torch.log10(sample[:, band].sum(1, dtype=torch.float64) * scale + 1e-12) > _DIGITAL_SILENCE_DB
    noise = sample[audible] if audible.any() else sample
    noise = torch.quantile(noise, _FLOOR_PERCENTILE / 100, dim=0)
    # smoothed over ~400 Hz: noise colour is whitened away, a steady voice's harmonics are not
    width = int(round(_NOISE_SMOOTH_HZ * _FFT / SAMPLE_RATE)) | 1
    noise = torch.nn.functional.avg_pool1d(noise[None, None], width, 1, width // 2, count_include_pad=False)[0, 0]
    noise = noise.clamp_min(float(noise[band].mean()) * 1e-3 + 1e-20)  # whitening gains span at most 30 dB
    inv_noise = torch.where(band, 1.0 / noise, 0.0)  # whitening, and the band-pass for the autocorrelation
    band_pow, total_pow, harmonic = (np.empty(num, np.float64) for _ in range(3))
    for k0 in range(0, num, _CHUNK):
        k1 = min(num, k0 + _CHUNK)
        p = power(frames(k0, k1))
        band_pow[k0:k1] = (p[:, band].sum(1, dtype=torch.float64) * scale).numpy()
        total_pow[k0:k1] = (p[:, 1:].sum(1, dtype=torch.float64) * scale).numpy()
        ac = torch.fft.irfft(p * inv_noise, _FFT)
        harmonic[k0:k1] = (ac[:, lags] / ac[:, :1].clamp_min(1e-30) / win_ac).amax(1).clamp(0, 1).numpy()
    return band_pow, total_pow, harmonic


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
    """Hysteresis (weak runs with enough strong frames), bridge gaps <= gap, drop runs < min_len."""
    starts, ends = _runs(weak | strong)
    hits = np.concatenate([[0], np.cumsum(strong)])
    count = hits[ends] - hits[starts]
    keep = (count >= 2) & (count >= _MIN_STRONG_SHARE * (ends - starts))
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

    (T,) 16 kHz -> (num_frames,) bool. On a 10 ms grid a frame is clearly voiced when its
    300-3400 Hz power is 6 dB over the noise floor (10th percentile; ``threshold_db`` dBFS instead
    when given), it is periodic at a pitch lag and its excess energy is not all rumble; speech
    continues while 3 dB over the floor if enough of the run is clearly voiced (hysteresis). Gaps
    up to ``hangover`` s are bridged, bursts under ``min_speech`` s dropped, and a video frame is
    speech when most of its span is. Silence and steady noise or hum give all False.
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
    if wave.shape[0] == 0 or (isinstance(wave, torch.Tensor) and not torch.isfinite(wave).all()):
        raise AudioError("speech detection got an empty or non-finite waveform; load the audio with load_audio")
    band_pow, total_pow, harmonic = _grid_features(wave)
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
    strong = loud & (band_db > start_db) & (harmonic > _MIN_HARMONICITY) & (share > _MIN_BAND_SHARE)
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
