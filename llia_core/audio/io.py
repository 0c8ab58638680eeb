"""Audio in: any file or waveform -> 16 kHz mono float32.

Everything downstream (log-mel, speech activity, muxing) assumes one rate and one channel, so all
the format, rate and layout variety is absorbed here, and every way the input can be unusable ends
in an :class:`AudioError` that says what to do.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import AudioError

SAMPLE_RATE = 16000
_MIN_RATE, _MAX_RATE = 1000, 768000  # plausible input rates (8-192 kHz is the usual range)
_BLOCK_SECONDS = 60  # soundfile reads this much at a time, downmixed at once, to keep memory mono
_MAX_CHANNELS = 64  # a 2-D array with more "channels" than this and few columns is (T, C)


@dataclass
class Audio:
    """A mono waveform at :data:`SAMPLE_RATE`; the one audio type the engine passes around."""

    waveform: torch.Tensor  # (T,) float32, 16 kHz mono

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.waveform.shape[-1] / SAMPLE_RATE


def _rate(value, what: str = "sample rate") -> int:
    """A positive integer sample rate, or an AudioError (ComfyUI may hand floats or 0-d tensors)."""
    try:
        rate = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError):
        raise AudioError(f"the {what} {value!r} is not a number; give the rate in Hz, e.g. 44100") from None
    if not math.isfinite(rate) or not _MIN_RATE <= rate <= _MAX_RATE:
        raise AudioError(f"the {what} {value!r} Hz is not plausible; give the real rate in Hz (8000-192000)")
    return int(round(rate))


def resample(waveform: torch.Tensor, orig_sr: int, target_sr: int) -> torch.Tensor:
    """Polyphase resampling along the last dim: anti-aliased, deterministic, float32.

    (..., T) at orig_sr -> (..., ceil(T * target_sr / orig_sr)) at target_sr, on the input's device.
    A Kaiser-windowed FIR with gcd-reduced up/down factors (scipy) keeps a tone's frequency exact.
    """
    orig, target = _rate(orig_sr, "input sample rate"), _rate(target_sr, "target sample rate")
    wave = torch.as_tensor(waveform)
    if wave.is_complex():
        raise AudioError("audio samples must be real numbers; pass a real-valued waveform")
    if orig == target:
        return wave.float()
    g = math.gcd(orig, target)
    up, down = target // g, orig // g
    length = -(-wave.shape[-1] * up // down)
    if wave.shape[-1] == 0:
        return torch.zeros((*wave.shape[:-1], 0), dtype=torch.float32, device=wave.device)
    from scipy.signal import resample_poly

    out = resample_poly(wave.detach().to("cpu", torch.float32).numpy(), up, down, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(out[..., :length], dtype=np.float32)).to(wave.device)


def _int_to_float(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Integer PCM values (of int type ``dtype``) -> float32 in [-1, 1); unsigned PCM is offset."""
    info = np.iinfo(dtype)
    half = 2.0 ** (info.bits - 1)
    y = x.astype(np.float32)
    if info.min == 0:
        y -= np.float32(half)
    y *= np.float32(1.0 / half)
    return y


def _array_to_mono(waveform) -> np.ndarray:
    """(T,), (C, T), (T, C) or (B, C, T) numbers -> (T,) float32 mono (channel mean, first batch item)."""
    if isinstance(waveform, torch.Tensor):
        t = waveform.detach().cpu()
        if t.is_complex():
            raise AudioError("audio samples must be real numbers; pass a real-valued waveform")
        if t.is_floating_point() and t.dtype != torch.float64:
            t = t.float()  # float16/bfloat16 have no numpy equivalent everywhere
        arr = t.numpy()
    else:
        try:
            arr = np.asarray(waveform)
        except Exception:
            raise AudioError("the waveform is not an array of numbers; pass a numpy array or torch tensor") from None
    if arr.dtype.kind not in "biuf":
        raise AudioError(f"audio samples of type {arr.dtype} are not real numbers; pass a float or int PCM array")
    if arr.ndim == 3:
        if arr.shape[0] == 0:
            raise AudioError("the audio batch is empty; connect an audio with at least one item")
        arr = arr[0]
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise AudioError(f"audio must have shape (T,), (C, T) or (B, C, T), not {tuple(arr.shape)}; pass a waveform")
    if arr.shape[0] > _MAX_CHANNELS and arr.shape[1] <= _MAX_CHANNELS:
        arr = arr.T  # (T, C), as soundfile returns it
    if arr.shape[0] == 0:
        raise AudioError("the audio has no channels; pass a waveform with at least one channel")
    mono = arr.mean(axis=0, dtype=np.float32) if arr.shape[0] > 1 else arr[0]
    return _int_to_float(mono, arr.dtype) if arr.dtype.kind in "iu" else mono.astype(np.float32, copy=False)


def _seconds(value, name: str, allow_none: bool = False):
    if value is None and allow_none:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise AudioError(f"audio {name} {value!r} is not a number; give it in seconds") from None
    if not math.isfinite(out):
        raise AudioError(f"audio {name} {value!r} is not finite; give it in seconds")
    return out


def _span(start: float, duration: float | None, sr: int) -> tuple[int, int | None]:
    """Sample range [a, b) for start/duration at rate sr (b None = to the end)."""
    if start < 0:
        raise AudioError(f"audio start {start:g} s is negative; use a start of 0 s or later")
    a = int(round(start * sr))
    if duration is None:
        return a, None
    if duration <= 0:
        raise AudioError(f"audio duration {duration:g} s is not positive; give a duration above 0 s or none")
    n = int(round(duration * sr))
    if n < 1:
        raise AudioError(f"audio duration {duration:g} s is shorter than one sample; use a longer duration")
    return a, a + n


def _check_start(a: int, total: int, sr: int, start: float, name: str) -> None:
    if total == 0:
        raise AudioError(f"{name} is empty (zero samples); use audio that lasts at least one video frame")
    if a >= total:
        raise AudioError(f"audio start {start:g} s is past the end of {name} ({total / sr:.2f} s); use an "
                         "earlier start")


def _undecodable(path: Path, why: str) -> AudioError:
    return AudioError(f"could not decode audio from '{path}' ({why}); re-export it as WAV, FLAC or MP3")


def _wav_truncated(path: Path) -> bool:
    """True when a RIFF/WAVE file's data chunk promises more bytes than the file holds.

    libsndfile quietly reads what is there; a cut-off download should be re-exported instead.
    Sizes 0 and 0xFFFFFFFF (streamed writers that never patched the header) count as unknown.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return False
            size = path.stat().st_size
            while True:
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return False
                length = int.from_bytes(chunk[4:], "little")
                if chunk[:4] == b"data":
                    return 0 < length < 0xFFFFFFFF and fh.tell() + length > size
                fh.seek(length + (length & 1), 1)
    except OSError:
        return False


def _read_soundfile(path: Path, start: float, duration: float | None) -> tuple[np.ndarray, int] | None:
    """Mono samples and rate via libsndfile, or None when it cannot read the file (PyAV's turn)."""
    import soundfile as sf

    try:
        f = sf.SoundFile(str(path))
    except Exception:
        return None
    with f:
        if f.format in ("WAV", "WAVEX") and _wav_truncated(path):
            raise _undecodable(path, "the file is truncated: it ends before its audio data does")
        sr, total = int(f.samplerate), int(f.frames)
        a, b = _span(start, duration, sr)
        _check_start(a, total, sr, start, f"'{path.name}'")
        want = total - a if b is None else min(b, total) - a
        try:
            if a:
                f.seek(a)
            blocks, block = [], max(1, _BLOCK_SECONDS * sr)
            while want > 0:
                x = f.read(min(want, block), dtype="float32", always_2d=True)
                if len(x) == 0:
                    break
                blocks.append(x.mean(axis=1, dtype=np.float32))
                want -= len(x)
        except Exception:
            return None
    if not blocks:
        return None
    return np.concatenate(blocks), sr


def _frame_to_mono(frame) -> np.ndarray:
    """One decoded PyAV audio frame -> (samples,) float32 mono, whatever its sample format."""
    x = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if not frame.format.is_planar:
        x = x.reshape(-1, channels).T
    x = x[:, : frame.samples]
    mono = x.mean(axis=0, dtype=np.float32)
    return _int_to_float(mono, x.dtype) if x.dtype.kind in "iu" else mono


def _read_pyav(path: Path, start: float, duration: float | None) -> tuple[np.ndarray, int]:
    """Mono samples and rate via FFmpeg (mp3, m4a/aac, opus, and the audio track of videos)."""
    import av

    try:
        container = av.open(str(path))
    except Exception:
        raise _undecodable(path, "not a recognised audio or video file") from None
    with container:
        if not container.streams.audio:
            raise _undecodable(path, "it has no audio track")
        stream = container.streams.audio[0]
        chunks, seen, sr, a, b = [], 0, None, 0, None
        try:
            for frame in container.decode(stream):
                if sr is None:
                    sr = _rate(frame.sample_rate or stream.rate, "file's sample rate")
                    a, b = _span(start, duration, sr)
                x = _frame_to_mono(frame)
                lo, seen = seen, seen + x.shape[0]
                if seen > a:
                    chunks.append(x[max(0, a - lo): None if b is None else max(0, b - lo)])
                if b is not None and seen >= b:
                    break
        except AudioError:
            raise
        except Exception:
            if seen == 0:  # a truncated file keeps what decoded before the damage
                raise _undecodable(path, "the audio data is corrupt or truncated") from None
    if sr is None:
        raise AudioError(f"the audio track of '{path}' is empty (zero samples); use a file with sound")
    _check_start(a, seen, sr, start, f"'{path.name}'")
    return np.concatenate(chunks), sr


def _read_file(path: Path, start: float, duration: float | None) -> tuple[np.ndarray, int]:
    """Decode and trim a file: libsndfile first (exact, fast), FFmpeg for the rest."""
    if not path.exists():
        raise AudioError(f"audio file '{path}' does not exist; check the path")
    if not path.is_file():
        raise AudioError(f"audio path '{path}' is not a file; point it at an audio or video file")
    if not os.access(path, os.R_OK):
        raise AudioError(f"audio file '{path}' cannot be read (permission denied); fix its permissions")
    got = _read_soundfile(path, start, duration)
    return got if got is not None else _read_pyav(path, start, duration)


def load_audio(source, *, start: float = 0.0, duration: float | None = None) -> Audio:
    """Load any supported audio as 16 kHz mono, trimmed to [start, start + duration) seconds.

    source: a path (wav/flac/ogg/mp3/m4a/aac or a video's audio track), a ``(waveform, sample_rate)``
    tuple with waveform (T,), (C, T) or (B, C, T) (numpy or torch, float or int PCM), a ComfyUI AUDIO
    dict ``{"waveform": (B, C, T), "sample_rate": int}`` (first batch item), or an :class:`Audio`.
    """
    start = _seconds(start, "start")
    duration = _seconds(duration, "duration", allow_none=True)
    if isinstance(source, Audio):
        source = (source.waveform, SAMPLE_RATE)
    if isinstance(source, dict):
        if "waveform" not in source or "sample_rate" not in source:
            raise AudioError("the audio dict needs 'waveform' and 'sample_rate' keys; connect a ComfyUI AUDIO")
        source = (source["waveform"], source["sample_rate"])
    if isinstance(source, (tuple, list)):
        if len(source) != 2:
            raise AudioError("in-memory audio must be a (waveform, sample_rate) pair; pass exactly those two")
        sr = _rate(source[1])
        mono = _array_to_mono(source[0])
        a, b = _span(start, duration, sr)
        _check_start(a, mono.shape[0], sr, start, "the audio")
        mono = mono[a:b]
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        mono, sr = _read_file(path, start, duration)
    else:
        raise AudioError(f"cannot read audio from a {type(source).__name__}; pass a file path, a "
                         "(waveform, sample_rate) pair or a ComfyUI AUDIO")
    if not np.isfinite(mono).all():
        raise AudioError("the audio contains NaN or infinite samples; fix or re-export the audio")
    wave = resample(torch.from_numpy(np.ascontiguousarray(mono)), sr, SAMPLE_RATE)
    return Audio(wave.contiguous())
