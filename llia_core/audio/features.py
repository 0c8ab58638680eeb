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


def _mel_blocks(read, length: int, k0: int, k1: int, n_mels: int) -> torch.Tensor:
    """Log-mel frames [k0, k1) of a waveform of ``length`` samples read through ``read(a, b)``.

    Computed in blocks of _MEL_CHUNK frames aligned at frame 0, so a frame's value never depends on
    which span was asked for: a lazily computed window equals the whole-track one bit for bit.
    """
    half = MEL_FFT // 2
    window = torch.hann_window(MEL_WIN)
    basis = _mel_basis(int(n_mels))
    out = []
    for b0 in range(k0 // _MEL_CHUNK * _MEL_CHUNK, k1, _MEL_CHUNK):
        b1 = min(1 + length // MEL_HOP, b0 + _MEL_CHUNK)
        # samples of the reflect-padded track (torch.stft center=True) that frames [b0, b1) see
        a, b = b0 * MEL_HOP - half, (b1 - 1) * MEL_HOP - half + MEL_FFT
        seg = torch.from_numpy(read(max(0, a), min(length, b)))
        if a < 0:  # reflect at the start: padded[i] = wave[half - i]
            seg = torch.cat([torch.from_numpy(read(1, 1 - a)).flip(0), seg])
        if b > length:  # and at the end: wave[length - 2 - j] for the j-th sample past it
            seg = torch.cat([seg, torch.from_numpy(read(2 * length - 1 - b, length - 1)).flip(0)])
        spec = torch.stft(seg, MEL_FFT, hop_length=MEL_HOP, win_length=MEL_WIN, window=window, center=False,
                          return_complex=True).abs().pow(2)
        mel = torch.log((basis @ spec).clamp_min(1e-5)).T
        out.append(mel[max(k0, b0) - b0: min(k1, b1) - b0])
    return torch.cat(out) if out else torch.zeros(0, int(n_mels))


def log_mel(waveform: torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """16 kHz mono -> log-mel at 100 frames/s; frame k is centred at k * 10 ms.

    (T,) -> (1 + max(T, 400) // 160, n_mels) float32: |STFT|^2 (n_fft 512, Hann 400, hop 160,
    reflect-padded as torch.stft(center=True)), a librosa mel filterbank, log(max(mel, 1e-5)).
    """
    if int(n_mels) < 1:
        raise AudioError(f"n_mels must be at least 1, not {n_mels}; use the model config's value (80)")
    wave = _mono(waveform, "log_mel").cpu()
    if wave.shape[0] < MEL_WIN:
        wave = torch.nn.functional.pad(wave, (0, MEL_WIN - wave.shape[0]))
    x = wave.numpy()
    return _mel_blocks(lambda a, b: x[a:b], x.shape[0], 0, 1 + x.shape[0] // MEL_HOP, int(n_mels))


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
    return _windows(mel, 0, mel.shape[0], 0, num_frames, fps, _token_offsets(context, mel_per_token, token_seconds),
                    2 * context + 1)


def _token_offsets(context: int, mel_per_token: int, token_seconds: float) -> torch.Tensor:
    """(tokens * mel_per_token,) seconds from a frame's centre at which its window reads the log-mel."""
    offsets = torch.arange(-context, context + 1, dtype=torch.float64)[:, None] * token_seconds
    sub = ((torch.arange(mel_per_token, dtype=torch.float64) + 0.5) / mel_per_token - 0.5) * token_seconds
    return (offsets + sub[None]).reshape(-1)


def mouth_offsets(past_frames: int, future_frames: int) -> torch.Tensor:
    """(past + 1 + future,) seconds from a frame's centre at which the mouth model reads the log-mel:
    every 10 ms mel frame from ``past_frames`` back to ``future_frames`` ahead."""
    return torch.arange(-int(past_frames), int(future_frames) + 1, dtype=torch.float64) * (MEL_HOP / 16000)


def mouth_reach_seconds(future_seconds: float, fps: float) -> float:
    """How far past a video frame's centre the mouth model's windows read the audio: the last 10 ms mel
    frame a window interpolates from (the one after ``future_seconds``, unless that time falls on a
    mel frame) plus half its analysis window; the most over the frame times (25 fps: 0.1325 s)."""
    hop, half = MEL_HOP / 16000, MEL_WIN / 2 / 16000
    reach = 0.0
    for i in range(int(math.ceil(fps)) * 10):  # a whole number of seconds covers every phase on the mel grid
        centre = (i + 0.5) / fps
        pos = (centre + future_seconds) / hop
        last = round(pos) if abs(pos - round(pos)) < 1e-6 else math.floor(pos) + 1
        reach = max(reach, last * hop + half - centre)
    return reach


def _windows(mel: torch.Tensor, offset: int, n_mel: int, f0: int, f1: int, fps: float,
             offsets: torch.Tensor, rows: int, fill: torch.Tensor | None = None) -> torch.Tensor:
    """Windows of frames [f0, f1) from ``mel`` = frames [offset, offset + len) of an ``n_mel``-frame log-mel.

    ``offsets``: (rows * k,) seconds from each frame's centre, read by linear interpolation and laid out
    as (rows, k * n_mels); outside the log-mel reads log-silence (or ``fill``, (n_mels,): a value per
    column). Every value is computed element by element, so any span gives the same numbers as the
    whole track.
    """
    d = mel.shape[1]
    per_row = offsets.numel() // rows
    pad = torch.full((1, d), LOG_SILENCE, dtype=mel.dtype, device=mel.device) if fill is None else \
        fill.to(mel.dtype).to(mel.device).reshape(1, d)
    padded = torch.cat([mel, pad])
    silence = mel.shape[0]  # index of the padding row
    offsets = offsets.to(mel.device)
    out = torch.empty(f1 - f0, rows, per_row * d, dtype=torch.float32, device=mel.device)
    for c0 in range(f0, f1, _WINDOW_CHUNK):
        c1 = min(f1, c0 + _WINDOW_CHUNK)
        centers = (torch.arange(c0, c1, dtype=torch.float64, device=mel.device) + 0.5) / fps
        times = centers[:, None] + offsets[None]  # (f, rows * k) seconds
        pos = times / (MEL_HOP / 16000)  # in mel frames
        lo = pos.floor().long()
        frac = (pos - lo).float()[..., None]
        hi = lo + 1
        lo_ok, hi_ok = (lo >= 0) & (lo < n_mel), (hi >= 0) & (hi < n_mel)
        for pos_ok, idx in ((lo_ok, lo), (hi_ok, hi)):
            if pos_ok.any() and (idx[pos_ok].min() < offset or idx[pos_ok].max() >= offset + silence):
                raise AudioError("internal: the log-mel span does not cover the requested frames")
        lo = torch.where(lo_ok, lo - offset, silence).reshape(-1)
        hi = torch.where(hi_ok, hi - offset, silence).reshape(-1)
        view = out[c0 - f0:c1 - f0].view(c1 - c0, rows, per_row, d)
        torch.mul(padded.index_select(0, lo).view_as(view), 1 - frac.view(c1 - c0, rows, per_row, 1), out=view)
        view.add_(padded.index_select(0, hi).view_as(view).mul_(frac.view(c1 - c0, rows, per_row, 1)))
    return out


def mouth_fill(n_mels: int, phones: int = 0) -> torch.Tensor:
    """What a mouth window reads outside the audio, per column: log-silence in the mel bands, no phone."""
    return torch.cat([torch.full((n_mels,), LOG_SILENCE), torch.zeros(phones)])


def mouth_windows(mel: torch.Tensor, num_frames: int, fps: float, past_frames: int, future_frames: int,
                  phones: torch.Tensor | None = None) -> torch.Tensor:
    """The mouth model's per-frame windows: (N, n_mels) log-mel, and (N, P) one-hot phones when the model
    hears them -> (num_frames, past + 1 + future, n_mels + P), every 10 ms from ``past_frames`` before each
    frame's centre ((i + 0.5) / fps) to ``future_frames`` after."""
    if mel.ndim != 2 or mel.shape[0] < 1:
        raise AudioError(f"mouth_windows needs a (frames, n_mels) log-mel, not {tuple(mel.shape)}; use log_mel")
    offsets = mouth_offsets(past_frames, future_frames)
    fill = None
    if phones is not None:
        phones = phones.to(mel.dtype)[:mel.shape[0]]
        if phones.shape[0] < mel.shape[0]:
            raise AudioError(f"{phones.shape[0]} phone rows for {mel.shape[0]} log-mel frames; use phones.one_hot(labels, rows)")
        fill = mouth_fill(mel.shape[1], phones.shape[1])
        mel = torch.cat([mel, phones], 1)
    return _windows(mel, 0, mel.shape[0], 0, int(num_frames), float(fps), offsets, offsets.numel(), fill)


class LazyWindows:
    """The per-frame windows of a long waveform, computed when a span of frames is asked for.

    Behaves like the ``(num_frames, tokens, D)`` tensor ``frame_windows(log_mel(wave), ...)`` for
    indexing (``w[a:b]``, ``w[index_tensor]``) and gives identical numbers, but holds only the
    waveform (often a :class:`~llia_core.audio.io.WaveformFile`) and the last log-mel blocks read:
    an hour of windows would be 580 MB.
    """

    def __init__(self, waveform, num_frames: int, fps: float, n_mels: int, context: int, mel_per_token: int,
                 token_seconds: float, *, offsets: torch.Tensor | None = None, phones=None):
        from .io import read_span

        self.waveform, self.num_frames, self.fps = waveform, int(num_frames), float(fps)
        self.n_mels = n_mels
        self.phones = phones  # a ``phones.PhoneTrack`` of the same waveform: its one-hots follow the bands
        self.columns = n_mels + (0 if phones is None else phones.classes)
        self.fill = None if phones is None else mouth_fill(n_mels, phones.classes)
        if offsets is None:  # the audio encoder's tokens
            self.offsets, self.rows = _token_offsets(context, mel_per_token, token_seconds), 2 * context + 1
        else:  # one row per offset (the mouth model's windows: ``mouth=True`` of ``lazy_mouth_windows``)
            self.offsets, self.rows = offsets.double(), int(offsets.numel())
        self.length = int(waveform.shape[-1])
        if self.length < MEL_WIN:
            raise AudioError("LazyWindows is for long audio; use frame_windows(log_mel(...)) for short clips")
        self.n_mel = 1 + self.length // MEL_HOP
        self._read = lambda a, b: read_span(self.waveform, a, b)
        self._blocks: dict[int, torch.Tensor] = {}

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.num_frames, self.rows, self.offsets.numel() // self.rows * self.columns))

    def __len__(self) -> int:
        return self.num_frames

    def _mel(self, k0: int, k1: int) -> torch.Tensor:
        """Log-mel frames [k0, k1), from cached whole blocks (the last two read)."""
        parts = []
        for b0 in range(k0 // _MEL_CHUNK * _MEL_CHUNK, k1, _MEL_CHUNK):
            if b0 not in self._blocks:
                if len(self._blocks) >= 2:
                    self._blocks.pop(min(self._blocks))
                self._blocks[b0] = _mel_blocks(self._read, self.length, b0, min(self.n_mel, b0 + _MEL_CHUNK),
                                               self.n_mels)
            parts.append(self._blocks[b0])
        mel = torch.cat(parts)
        start = k0 // _MEL_CHUNK * _MEL_CHUNK
        mel = mel[k0 - start:k1 - start]
        if self.phones is not None:
            mel = torch.cat([mel, self.phones.one_hot(k0, k1)], 1)
        return mel

    def span(self, f0: int, f1: int) -> torch.Tensor:
        """Windows of frames [f0, f1)."""
        f0, f1 = max(0, int(f0)), min(self.num_frames, int(f1))
        if f1 <= f0:
            return torch.zeros((0, *self.shape[1:]))
        back, ahead = -float(self.offsets.min()), float(self.offsets.max())
        k0 = max(0, math.floor(((f0 + 0.5) / self.fps - back) * 100) - 2)
        k1 = min(self.n_mel, math.ceil(((f1 - 0.5) / self.fps + ahead) * 100) + 3)
        if k1 <= k0:  # the frames lie wholly past the audio: silence
            if self.fill is not None:
                return self.fill.repeat(self.offsets.numel() // self.rows).expand(f1 - f0, self.rows, -1).clone()
            return torch.full((f1 - f0, *self.shape[1:]), LOG_SILENCE)
        return _windows(self._mel(k0, k1), k0, self.n_mel, f0, f1, self.fps, self.offsets, self.rows, self.fill)

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, slice):
            a, b, step = key.indices(self.num_frames)
            return self.span(a, b)[::step] if b > a else self.span(0, 0)
        idx = torch.as_tensor(key).long().reshape(-1)
        if idx.numel() == 0:
            return self.span(0, 0)
        if idx.min() < 0 or idx.max() >= self.num_frames:
            raise IndexError(f"frame index out of range for {self.num_frames} frames")
        lo = int(idx.min())
        out = self.span(lo, int(idx.max()) + 1)[idx - lo]
        return out[0] if torch.as_tensor(key).ndim == 0 else out

    def to_tensor(self) -> torch.Tensor:
        """All windows at once (as much memory as eager features)."""
        return self.span(0, self.num_frames)

    def prefetch(self) -> None:
        """Start what is slow to read ahead of the first request (the phones' decoding), in the background."""
        if self.phones is not None:
            self.phones.prefetch()


def lazy_mouth_windows(waveform, num_frames: int, fps: float, n_mels: int, past_frames: int,
                       future_frames: int, phone_lag: int | None = None) -> LazyWindows:
    """``mouth_windows(log_mel(waveform), ...)`` computed per span asked for (any length of audio); with
    ``phone_lag``, the phones heard (``phones.PhoneTrack``) follow the bands, decoded as far as asked."""
    track = None
    if phone_lag is not None:
        from .phones import PhoneTrack

        track = PhoneTrack(waveform, phone_lag)
    return LazyWindows(waveform, num_frames, fps, n_mels, 0, 1, 0.04, offsets=mouth_offsets(past_frames, future_frames),
                       phones=track)
