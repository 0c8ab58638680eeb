"""Audio in: any file or waveform -> 16 kHz mono float32.

Everything downstream (log-mel, speech activity, muxing) assumes one rate and one channel, so all
the format, rate and layout variety is absorbed here, and every way the input can be unusable ends
in an :class:`AudioError` that says what to do.
"""

from __future__ import annotations

import math
import os
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import AudioError

SAMPLE_RATE = 16000
_MIN_RATE, _MAX_RATE = 1000, 768000  # plausible input rates (8-192 kHz is the usual range)
_BLOCK_SECONDS = 60  # soundfile reads this much at a time, downmixed at once, to keep memory mono
_MAX_CHANNELS = 64  # a 2-D array with more "channels" than this and few columns is (T, C)


class WaveformFile:
    """A long 16 kHz mono float32 waveform kept in a temporary file and read one span at a time.

    An hour of audio is 230 MB at 16 kHz; kept on disk, a streaming run's memory does not grow with
    the audio's length. Slicing (``wave[a:b]``) returns a tensor, as it does for an in-memory waveform.
    The file is deleted when the object is garbage-collected.
    """

    ndim = 1
    dtype = torch.float32

    def __init__(self, path: Path, length: int):
        self.path, self.length = Path(path), int(length)
        self._finalizer = weakref.finalize(self, _unlink, str(self.path))

    @property
    def shape(self) -> tuple[int]:
        return (self.length,)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key) -> torch.Tensor:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("a WaveformFile is read by contiguous slices, e.g. wave[a:b]")
        a, b, _ = key.indices(self.length)
        if b <= a:
            return torch.zeros(0)
        return torch.from_numpy(np.fromfile(self.path, dtype=np.float32, count=b - a, offset=4 * a))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def read_span(waveform, a: int, b: int) -> np.ndarray:
    """Samples [a, b) of a waveform (tensor, array or :class:`WaveformFile`) as float32, zeros outside it."""
    n = waveform.shape[-1]
    lo, hi = max(0, a), min(n, b)
    x = waveform[lo:hi] if hi > lo else np.zeros(0, np.float32)
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    x = x.astype(np.float32, copy=False).reshape(-1)
    if lo == a and hi == b:
        return x
    out = np.zeros(max(0, b - a), np.float32)
    if hi > lo:
        out[lo - a:hi - a] = x
    return out


@dataclass
class Audio:
    """A mono waveform at :data:`SAMPLE_RATE`; the one audio type the engine passes around."""

    waveform: torch.Tensor | WaveformFile  # (T,) float32, 16 kHz mono (long files: on disk)
    source_seconds: float | None = None  # the source's own length, where it was resampled

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def duration(self) -> float:
        """Length in seconds: the source's own where known (resampling to 16 kHz rounds the sample
        count up: 3,675 samples at 11,025 Hz are 1/3 s, 5,334 at 16 kHz a little more, which at
        12 fps would ask for a fifth frame)."""
        if self.source_seconds is not None:
            return self.source_seconds
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


class StreamResampler:
    """:func:`resample` for audio that arrives (or is read) in pieces, with memory bounded by one block.

    ``push`` pieces in order and ``finish`` at the end; the concatenated output equals
    ``resample(whole, orig_sr, target_sr)`` (same filter; each block is resampled with enough
    neighbouring input that no output sample sees a block edge).
    """

    def __init__(self, orig_sr: int, target_sr: int, block_seconds: float = 5.0):
        orig, target = _rate(orig_sr, "input sample rate"), _rate(target_sr, "target sample rate")
        g = math.gcd(orig, target)
        self.up, self.down = target // g, orig // g
        half = 10 * max(self.up, self.down)  # scipy's resample_poly filter half-length (upsampled samples)
        self.context = -(-(half // self.up + 8) // self.down) * self.down  # input samples, whole output steps
        self.block = max(1, int(orig * block_seconds) // self.down) * self.down
        self._buf = np.zeros(self.context, np.float32)  # silence before the start, as resample_poly pads
        self._seen = 0
        self._made = 0

    def _run(self, segment: np.ndarray, count: int) -> np.ndarray:
        from scipy.signal import resample_poly

        skip = self.context * self.up // self.down
        out = resample_poly(segment, self.up, self.down)[skip:skip + count]
        self._made += out.shape[0]
        return np.ascontiguousarray(out, dtype=np.float32)

    def push(self, piece) -> np.ndarray:
        """Resample what can be resampled so far."""
        x = np.asarray(piece, np.float32).reshape(-1)
        self._seen += x.shape[0]
        if self.up == self.down:
            return x
        self._buf = np.concatenate([self._buf, x])
        outs, span = [], 2 * self.context + self.block
        while self._buf.shape[0] >= span:
            outs.append(self._run(self._buf[:span], self.block * self.up // self.down))
            self._buf = self._buf[self.block:]
        return np.concatenate(outs) if outs else np.zeros(0, np.float32)

    def finish(self) -> np.ndarray:
        """The rest: total output length is ceil(input length * target / orig)."""
        if self.up == self.down:
            return np.zeros(0, np.float32)
        total = -(-self._seen * self.up // self.down)
        segment = np.concatenate([self._buf, np.zeros(self.context, np.float32)])
        self._buf = np.zeros(0, np.float32)
        return self._run(segment, total - self._made)


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


class _MemorySink:
    """Decoded mono blocks kept in memory, resampled at the end (short audio, in-memory callers)."""

    def __init__(self):
        self.blocks: list[np.ndarray] = []
        self.count = 0

    def add(self, block: np.ndarray, sr: int) -> None:
        self.blocks.append(block)
        self.count += block.shape[0]

    def discard(self) -> None:
        self.blocks = []

    def waveform(self, sr: int):
        mono = np.concatenate(self.blocks) if self.blocks else np.zeros(0, np.float32)
        if not np.isfinite(mono).all():
            raise AudioError("the audio contains NaN or infinite samples; fix or re-export the audio")
        return resample(torch.from_numpy(np.ascontiguousarray(mono)), sr, SAMPLE_RATE).contiguous()


class _SpillSink:
    """Decoded blocks resampled as they arrive; past ``limit`` seconds they go to a temporary file."""

    def __init__(self, limit_seconds: float):
        self.limit = int(limit_seconds * SAMPLE_RATE)
        self.count = 0
        self._resampler: StreamResampler | None = None
        self._held: list[np.ndarray] = []
        self._held_len = 0
        self._file = None
        self._path: str | None = None

    def add(self, block: np.ndarray, sr: int) -> None:
        if not np.isfinite(block).all():
            self.discard()
            raise AudioError("the audio contains NaN or infinite samples; fix or re-export the audio")
        if self._resampler is None:
            self._resampler = StreamResampler(sr, SAMPLE_RATE)
        self.count += block.shape[0]
        self._keep(self._resampler.push(block))

    def _keep(self, out: np.ndarray) -> None:
        if self._file is None and self._held_len + out.shape[0] > self.limit:
            fd, self._path = tempfile.mkstemp(prefix="llia-audio-", suffix=".f32")
            self._file = os.fdopen(fd, "wb")
            for held in self._held:
                self._file.write(held.tobytes())
            self._held = []
        if self._file is not None:
            self._file.write(out.astype(np.float32, copy=False).tobytes())
        else:
            self._held.append(out)
        self._held_len += out.shape[0]

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            _unlink(self._path)
            self._file = None
        self._held = []

    def waveform(self, sr: int):
        if self._resampler is not None:
            self._keep(self._resampler.finish())
        if self._file is None:
            held = np.concatenate(self._held) if self._held else np.zeros(0, np.float32)
            return torch.from_numpy(np.ascontiguousarray(held, dtype=np.float32))
        self._file.close()
        self._file = None
        return WaveformFile(Path(self._path), self._held_len)


def _read_soundfile(path: Path, start: float, duration: float | None, sink) -> int | None:
    """Decode via libsndfile into ``sink``; the sample rate, or None when it cannot read the file."""
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
            block = max(1, _BLOCK_SECONDS * sr)
            while want > 0:
                x = f.read(min(want, block), dtype="float32", always_2d=True)
                if len(x) == 0:
                    break
                sink.add(x.mean(axis=1, dtype=np.float32), sr)
                want -= len(x)
        except AudioError:
            raise
        except Exception:
            return None
    return sr if sink.count else None


def _frame_to_mono(frame) -> np.ndarray:
    """One decoded PyAV audio frame -> (samples,) float32 mono, whatever its sample format."""
    x = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if not frame.format.is_planar:
        x = x.reshape(-1, channels).T
    x = x[:, : frame.samples]
    mono = x.mean(axis=0, dtype=np.float32)
    return _int_to_float(mono, x.dtype) if x.dtype.kind in "iu" else mono


def _read_pyav(path: Path, start: float, duration: float | None, sink) -> int:
    """Decode via FFmpeg (mp3, m4a/aac, opus, the audio track of videos) into ``sink``; the sample rate."""
    import av

    try:
        container = av.open(str(path))
    except Exception:
        raise _undecodable(path, "not a recognised audio or video file") from None
    with container:
        if not container.streams.audio:
            raise _undecodable(path, "it has no audio track")
        stream = container.streams.audio[0]
        seen, sr, a, b = 0, None, 0, None
        try:
            for frame in container.decode(stream):
                if sr is None:
                    sr = _rate(frame.sample_rate or stream.rate, "file's sample rate")
                    a, b = _span(start, duration, sr)
                x = _frame_to_mono(frame)
                lo, seen = seen, seen + x.shape[0]
                if seen > a:
                    sink.add(x[max(0, a - lo): None if b is None else max(0, b - lo)], sr)
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
    return sr


def _read_file(path: Path, start: float, duration: float | None, make_sink):
    """Decode, trim and resample a file: libsndfile first (exact, fast), FFmpeg for the rest."""
    if not path.exists():
        raise AudioError(f"audio file '{path}' does not exist; check the path")
    if not path.is_file():
        raise AudioError(f"audio path '{path}' is not a file; point it at an audio or video file")
    if not os.access(path, os.R_OK):
        raise AudioError(f"audio file '{path}' cannot be read (permission denied); fix its permissions")
    sink = make_sink()
    sr = _read_soundfile(path, start, duration, sink)
    if sr is None:
        sink.discard()
        sink = make_sink()
        sr = _read_pyav(path, start, duration, sink)
    return Audio(sink.waveform(sr), sink.count / sr)


def load_audio(source, *, start: float = 0.0, duration: float | None = None,
               spill_after: float | None = None) -> Audio:
    """Load any supported audio as 16 kHz mono, trimmed to [start, start + duration) seconds.

    source: a path (wav/flac/ogg/mp3/m4a/aac or a video's audio track), a ``(waveform, sample_rate)``
    tuple with waveform (T,), (C, T) or (B, C, T) (numpy or torch, float or int PCM), a ComfyUI AUDIO
    dict ``{"waveform": (B, C, T), "sample_rate": int}`` (first batch item), or an :class:`Audio`.
    ``spill_after``: a file longer than this many seconds is decoded and resampled block by block
    into a temporary file (:class:`WaveformFile`), so its length costs disk, not memory.
    """
    start = _seconds(start, "start")
    duration = _seconds(duration, "duration", allow_none=True)
    if isinstance(source, Audio):
        if isinstance(source.waveform, WaveformFile):
            a, b = _span(start, duration, SAMPLE_RATE)
            _check_start(a, len(source.waveform), SAMPLE_RATE, start, "the audio")
            return Audio(torch.from_numpy(read_span(source.waveform, a, min(b or len(source.waveform),
                                                                                len(source.waveform)))))
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
        make_sink = _MemorySink if spill_after is None else (lambda: _SpillSink(float(spill_after)))
        return _read_file(path, start, duration, make_sink)
    else:
        raise AudioError(f"cannot read audio from a {type(source).__name__}; pass a file path, a "
                         "(waveform, sample_rate) pair or a ComfyUI AUDIO")
    if not np.isfinite(mono).all():
        raise AudioError("the audio contains NaN or infinite samples; fix or re-export the audio")
    wave = resample(torch.from_numpy(np.ascontiguousarray(mono)), sr, SAMPLE_RATE)
    return Audio(wave.contiguous(), mono.shape[0] / sr)
