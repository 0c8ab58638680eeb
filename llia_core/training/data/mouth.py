"""Ground-truth mouth motion from the avatar's own speech: a local function of the audio.

Opening follows the speech-band (300-3000 Hz) loudness of the frame's own ~40 ms; width and
roundness follow the spectral centroid (wide 'ee' vs round 'oo'). Everything depends only on the
audio within +-2 frames, so a model given +-2 frames of log-mel can learn it exactly.
"""

from __future__ import annotations

import numpy as np


def _frames(wave: np.ndarray, num_frames: int, fps: float, win: int = 640) -> np.ndarray:
    centers = ((np.arange(num_frames) + 0.5) / fps * 16000).astype(int)
    idx = centers[:, None] + np.arange(-win // 2, win // 2)[None]
    padded = np.concatenate([np.zeros(win), wave, np.zeros(win)])
    return padded[idx + win]


def mouth_params_from_audio(wave: np.ndarray, num_frames: int, fps: float = 25.0) -> dict[str, np.ndarray]:
    frames = _frames(np.asarray(wave, np.float64), num_frames, fps) * np.hanning(640)[None]
    spec = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(640, 1 / 16000)
    band = (freqs >= 300) & (freqs <= 3000)
    e = spec[:, band].sum(1)
    db = 10 * np.log10(e / 640 + 1e-12)
    opening = np.clip((db + 32.0) / 30.0, 0, 1) ** 0.8  # gate: quieter than about -32 dB -> closed
    centroid = (spec[:, band] * freqs[band]).sum(1) / (spec[:, band].sum(1) + 1e-12)
    width = np.clip(0.5 + (centroid - 1300) / 1600, 0, 1)
    rnd = np.clip((1100 - centroid) / 600, 0, 1)
    k = np.array([0.25, 0.5, 0.25])
    smooth = lambda x: np.convolve(np.pad(x, 1, mode="edge"), k, mode="valid")  # noqa: E731
    opening = smooth(opening)
    opening[opening < 0.06] = 0.0
    active = opening > 0
    return {"open": opening.astype(np.float32),
            "width": np.where(active, smooth(width), 0.5).astype(np.float32),
            "round": np.where(active, smooth(rnd), 0.0).astype(np.float32)}
