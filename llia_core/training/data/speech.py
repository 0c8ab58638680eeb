"""Voices for the training data: espeak-ng (varied voices, speeds, pitches) or a synthesiser in code."""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

WORDS = ("the people we know could make time for a good day and work on new ideas with their friends "
         "every morning I think about water music light and stories from the city where small birds sing "
         "please tell me what you see in the picture because maybe we should go home before the rain "
         "starts over the mountain my brother likes to read books about boats trains and old machines "
         "how are you today thank you very much that sounds wonderful let us meet again tomorrow at noon "
         "open the window quietly bring some bread cheese apples and milk for everybody on the table").split()
VOICES = ("en-us", "en", "en-gb-x-rp", "en-us+f2", "en-us+m3", "en+f4", "en-gb+m1", "en+f3", "en-us+m7", "en+klatt")


@functools.lru_cache(maxsize=1)
def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def random_sentence(rng: np.random.Generator, words: int | None = None) -> str:
    n = int(words or rng.integers(4, 11))
    return " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), n))


def _read_wav_16k(path: Path) -> np.ndarray:
    import soundfile as sf
    from scipy.signal import resample_poly

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(1)
    if sr != 16000:
        g = np.gcd(int(sr), 16000)
        mono = resample_poly(mono, 16000 // g, sr // g).astype(np.float32)
    return mono


def espeak_speech(text: str, voice: str, speed: int, pitch: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """16 kHz float32 speech from espeak-ng, peak-normalised to 0.5 (deterministic for the same args)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), "-w", str(out), text],
                       check=True, capture_output=True, timeout=60)
        wave = _read_wav_16k(out)
    peak = float(np.abs(wave).max()) or 1.0
    return (wave / peak * 0.5).astype(np.float32)


def synth_speech(duration: float, rng: np.random.Generator) -> np.ndarray:
    """Speech-like audio without espeak: glottal pulses through moving formants, syllables, pauses."""
    sr = 16000
    n = int(duration * sr)
    t = np.arange(n) / sr
    f0 = rng.uniform(90, 240) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t))
    phase = np.cumsum(f0 / sr)
    pulses = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64)
    rate = rng.uniform(3, 6)
    syll = np.clip(np.sin(2 * np.pi * rate * t + rng.uniform(0, 6)), 0, None) ** 0.7
    pauses = np.ones(n)
    pos = 0
    while pos < n:
        pos += int(rng.uniform(0.6, 1.8) * sr)
        pauses[pos:pos + int(rng.uniform(0.15, 0.5) * sr)] = 0
    from scipy.signal import lfilter

    out = np.zeros(n)
    seg = int(sr / rate / 2)
    for k in range(0, n, seg):
        chunk = pulses[k:k + seg]
        y = np.zeros_like(chunk)
        for f, bw in ((rng.uniform(300, 900), 80), (rng.uniform(900, 2300), 120), (rng.uniform(2300, 3200), 160)):
            r = np.exp(-np.pi * bw / sr)
            a = [1, -2 * r * np.cos(2 * np.pi * f / sr), r * r]
            y += lfilter([1 - r], a, chunk)
        out[k:k + seg] = y
    noise = rng.normal(0, 1, n) * (rng.random(n // seg + 1).repeat(seg)[:n] < 0.2) * 0.05
    wave = (out + noise) * syll * pauses
    peak = np.abs(wave).max() or 1.0
    return (wave / peak * 0.5).astype(np.float32)


def random_voice(rng: np.random.Generator) -> tuple[str, int, int]:
    return VOICES[int(rng.integers(len(VOICES)))], int(rng.integers(120, 201)), int(rng.integers(30, 81))


def speech_with_pauses(seconds: float, rng: np.random.Generator, voice=None) -> np.ndarray:
    """At least ``seconds`` of speech: sentences with 0.2-0.8 s pauses, starting mid-stream at random."""
    voice = voice or random_voice(rng)
    parts, total = [], 0
    while total < int((seconds + 1.0) * 16000):
        if have_espeak():
            w = espeak_speech(random_sentence(rng), *voice)
        else:
            w = synth_speech(float(rng.uniform(1.5, 3.0)), rng)
        gap = np.zeros(int(rng.uniform(0.2, 0.8) * 16000), np.float32)
        parts += [w, gap]
        total += len(w) + len(gap)
    wave = np.concatenate(parts)
    start = int(rng.integers(0, max(1, len(wave) - int(seconds * 16000))))
    return wave[start:start + int(round(seconds * 16000))]


def room_noise(duration: float, rng: np.random.Generator) -> np.ndarray:
    n = int(round(duration * 16000))
    level = rng.uniform(0.0, 0.004)
    hum = np.sin(2 * np.pi * rng.choice([50, 60]) * np.arange(n) / 16000) * level * rng.uniform(0, 0.5)
    return (rng.normal(0, level, n) + hum).astype(np.float32)
