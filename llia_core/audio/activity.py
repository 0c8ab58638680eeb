"""Speech activity without downloaded weights: adaptive energy + speech-band cue + hangover."""

from __future__ import annotations

import torch


def _frame_spans(waveform: torch.Tensor, num_frames: int, fps: float) -> torch.Tensor:
    """(num_frames, S) samples of each video frame's span [i/fps, (i+1)/fps), zero padded."""
    s = max(1, int(round(16000 / fps)))
    need = num_frames * s
    wave = waveform.float().reshape(-1)
    if wave.shape[0] < need:
        wave = torch.nn.functional.pad(wave, (0, need - wave.shape[0]))
    starts = (torch.arange(num_frames, dtype=torch.float64) * 16000 / fps).round().long()
    idx = (starts[:, None] + torch.arange(s)[None]).clamp(max=wave.shape[0] - 1)
    return wave[idx]


def frame_rms(waveform: torch.Tensor, num_frames: int, fps: float) -> torch.Tensor:
    """(num_frames,) RMS of each video frame's audio."""
    return _frame_spans(waveform, num_frames, fps).pow(2).mean(1).sqrt()


def detect_speech(waveform: torch.Tensor, num_frames: int, fps: float, *, threshold_db: float | None = None,
                  hangover: float = 0.25, min_speech: float = 0.1) -> torch.Tensor:
    """(num_frames,) bool voice activity.

    Energy above an adaptive floor (10th percentile + 12 dB, at least -50 dBFS) and most of it in
    the 250-4000 Hz speech band; short gaps (< hangover s) are bridged, bursts < min_speech s dropped.
    """
    spans = _frame_spans(waveform, num_frames, fps)
    energy_db = 10 * torch.log10(spans.pow(2).mean(1) + 1e-10)
    spec = torch.fft.rfft(spans * torch.hann_window(spans.shape[1]), dim=1).abs() ** 2
    freqs = torch.fft.rfftfreq(spans.shape[1], 1 / 16000)
    band = ((freqs >= 250) & (freqs <= 4000)).float()
    ratio = (spec * band).sum(1) / spec.sum(1).clamp_min(1e-12)
    floor = torch.quantile(energy_db, 0.1) if num_frames > 1 else energy_db.min()
    thr = threshold_db if threshold_db is not None else max(float(floor) + 12.0, -50.0)
    # a flat (noise) spectrum has a flatness near 1; voiced speech is peaky
    flat = torch.exp(torch.log(spec[:, 1:] + 1e-12).mean(1)) / (spec[:, 1:].mean(1) + 1e-12)
    active = (energy_db > thr) & (ratio > 0.5) & (flat < 0.5)
    # hangover: bridge short gaps
    gap = int(round(hangover * fps))
    out = active.clone()
    idx = torch.nonzero(active).reshape(-1).tolist()
    for a, b in zip(idx, idx[1:]):
        if 1 < b - a <= gap + 1:
            out[a:b] = True
    # drop short bursts
    min_len = max(1, int(round(min_speech * fps)))
    i = 0
    while i < num_frames:
        if out[i]:
            j = i
            while j < num_frames and out[j]:
                j += 1
            if j - i < min_len:
                out[i:j] = False
            i = j
        else:
            i += 1
    return out
