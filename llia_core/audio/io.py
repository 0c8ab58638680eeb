"""Audio in: any file or waveform -> 16 kHz mono float32."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import AudioError

SAMPLE_RATE = 16000


@dataclass
class Audio:
    """waveform: (T,) float32, 16 kHz mono."""

    waveform: torch.Tensor

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def duration(self) -> float:
        return self.waveform.shape[0] / SAMPLE_RATE


def resample(waveform: torch.Tensor, orig_sr: int, target_sr: int) -> torch.Tensor:
    """Polyphase resampling along the last dim (deterministic, anti-aliased)."""
    if orig_sr == target_sr:
        return waveform
    from scipy.signal import resample_poly

    g = math.gcd(int(orig_sr), int(target_sr))
    out = resample_poly(waveform.double().numpy(), target_sr // g, orig_sr // g, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(out)).float()


def _decode_file(path: Path) -> tuple[np.ndarray, int]:
    """(C, T) float array and sample rate; soundfile first, PyAV for mp3/m4a/video."""
    try:
        import soundfile as sf

        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        return data.T, int(sr)
    except Exception:
        pass
    try:
        import av

        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(f"'{path.name}' has no audio track; pass a file with sound")
            stream = container.streams.audio[0]
            chunks, sr = [], stream.codec_context.sample_rate or stream.rate
            for frame in container.decode(stream):
                arr = frame.to_ndarray()
                if arr.dtype.kind == "i":
                    arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
                if frame.format.is_planar:
                    chunks.append(arr.astype(np.float32))
                else:
                    chunks.append(arr.reshape(-1, len(frame.layout.channels)).T.astype(np.float32))
            if not chunks:
                raise AudioError(f"'{path.name}' contains no audio samples; pass a file with sound")
            return np.concatenate(chunks, axis=1), int(sr)
    except AudioError:
        raise
    except Exception:
        raise AudioError(
            f"could not decode '{path.name}' as audio (corrupt, truncated or not an audio file); "
            "re-export it as WAV, FLAC or MP3"
        ) from None


def _to_array(waveform) -> np.ndarray:
    arr = waveform.detach().cpu().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform)
    if arr.ndim == 3:
        if arr.shape[0] == 0:
            raise AudioError("the audio batch is empty; connect an audio with at least one item")
        arr = arr[0]
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise AudioError(f"audio must have shape (T,), (C, T) or (B, C, T), not {arr.shape}; pass a waveform")
    if arr.dtype.kind in "iu":
        info = np.iinfo(arr.dtype)
        arr = (arr.astype(np.float64) - (info.max + 1 + info.min) / 2) / (info.max + 1 - (info.max + 1 + info.min) / 2)
    return arr.astype(np.float32)


def load_audio(source, *, start: float = 0.0, duration: float | None = None) -> Audio:
    """Load a path, ``(waveform, sample_rate)`` tuple or ComfyUI AUDIO dict as 16 kHz mono."""
    if isinstance(source, dict):
        if "waveform" not in source or "sample_rate" not in source:
            raise AudioError("the audio dict needs 'waveform' and 'sample_rate'; connect a ComfyUI AUDIO")
        arr, sr = _to_array(source["waveform"]), int(source["sample_rate"])
    elif isinstance(source, tuple):
        arr, sr = _to_array(source[0]), int(source[1])
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise AudioError(f"audio file '{path}' does not exist; check the path")
        arr, sr = _decode_file(path)
    else:
        raise AudioError(f"cannot read audio from a {type(source).__name__}; pass a file path or a waveform")
    if not 1000 <= sr <= 384000:
        raise AudioError(f"sample rate {sr} Hz is not plausible; give the real sample rate (8000-192000 Hz)")
    if arr.shape[-1] == 0:
        raise AudioError("the audio is empty (zero samples); pass audio with at least one video frame of sound")
    if not np.isfinite(arr).all():
        raise AudioError("the audio contains NaN or infinite samples; re-export it")
    mono = torch.from_numpy(arr.mean(axis=0))
    if start < 0 or (duration is not None and duration <= 0):
        raise AudioError("audio start must be >= 0 and duration > 0 seconds")
    a = int(round(start * sr))
    if a >= mono.shape[0]:
        raise AudioError(f"audio start {start:g} s is past its end ({mono.shape[0] / sr:.2f} s); use an earlier start")
    b = mono.shape[0] if duration is None else min(mono.shape[0], a + int(round(duration * sr)))
    wave = resample(mono[a:b], sr, SAMPLE_RATE).clamp(-1.0, 1.0).contiguous()
    if wave.shape[0] == 0:
        raise AudioError("the selected audio span is empty; check start and duration")
    return Audio(wave)
