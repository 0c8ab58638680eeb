"""Audio: loading/resampling (io), log-mel and per-frame windows (features), speech activity.

:func:`encode_audio` is the one call the pipeline needs: any source in, everything the sampler
reads per video frame out, with the frame count fixed once as ceil(duration * fps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import AudioError
from .activity import detect_speech, frame_rms
from .features import LazyWindows, frame_count, frame_windows, lazy_mouth_windows, log_mel, mouth_windows
from .io import SAMPLE_RATE, Audio, StreamResampler, WaveformFile, load_audio, read_span, resample

LONG_AUDIO_SECONDS = 300.0  # longer audio streams: waveform on disk (files), windows computed per clip


def _samples(frames: int, fps: float) -> int:
    """16 kHz samples in ``frames`` video frames (nearest sample, so spans tile without gaps)."""
    return int(round(frames * SAMPLE_RATE / fps))


@dataclass
class AudioFeatures:
    """Everything the sampler needs from the audio, per video frame."""

    audio: Audio
    fps: float
    num_frames: int
    windows: torch.Tensor | LazyWindows  # (num_frames, 2*context+1, mel_per_token*n_mels) log-mel windows
    speech: torch.Tensor  # (num_frames,) bool voice activity
    rms: torch.Tensor  # (num_frames,) loudness of each frame's span
    # (num_frames, W, n_mels) the mouth model's windows: given (live mode's excerpts) or made from the
    # waveform when first asked for (``mouth_windows_for``)
    mouth_windows: torch.Tensor | LazyWindows | None = None
    _sliced_from: tuple | None = None  # (features, start) of a slice: its mouth windows read the whole audio

    def mouth_windows_for(self, config) -> torch.Tensor | LazyWindows:
        """The mouth model's windows (``config``: its ``MouthModelConfig``) of every frame, indexable like a
        tensor; computed from the waveform per span asked for, so long audio costs no more memory."""
        if self.mouth_windows is None and self._sliced_from is not None:
            parent, start = self._sliced_from
            self.mouth_windows = parent.mouth_windows_for(config)[start:start + self.num_frames]
        w = self.mouth_windows
        channels = config.channels
        if w is not None and tuple(w.shape[1:]) == (config.window_frames, channels):
            return w
        if w is not None:
            raise AudioError(f"these audio features hold mouth windows of {tuple(w.shape[1:])}, but the model reads "
                             f"{(config.window_frames, channels)}; encode the audio for this model")
        wave = self.audio.waveform
        if int(wave.shape[-1]) < 400:  # shorter than one analysis window: pad (LazyWindows reads >= 25 ms)
            wave = torch.nn.functional.pad(torch.as_tensor(wave).float(), (0, 400 - int(wave.shape[-1])))
        self.mouth_windows = lazy_mouth_windows(wave, self.num_frames, self.fps, config.n_mels, config.past_frames,
                                                config.future_frames,
                                                config.phone_lag if config.phones else None)
        return self.mouth_windows

    def slice(self, start: int, stop: int) -> "AudioFeatures":
        """Frames [start, stop) with the waveform trimmed to the same time span (clip-by-clip work)."""
        start, stop = int(start), int(stop)
        if not 0 <= start < stop <= self.num_frames:
            raise AudioError(f"frame range [{start}, {stop}) is outside the audio's {self.num_frames} frames; "
                             "use 0 <= start < stop <= num_frames")
        wave = self.audio.waveform[_samples(start, self.fps): _samples(stop, self.fps)]
        mouth = None if self.mouth_windows is None else self.mouth_windows[start:stop]
        return AudioFeatures(Audio(wave), self.fps, stop - start, self.windows[start:stop],
                             self.speech[start:stop], self.rms[start:stop], mouth, (self, start))

    def waveform_for_video(self) -> torch.Tensor:
        """(round(num_frames / fps * 16000),) waveform, zero-padded or trimmed: muxed audio = video length."""
        n = _samples(self.num_frames, self.fps)
        return torch.from_numpy(read_span(self.audio.waveform, 0, n))


FEATURES = ("log-mel", "whisper")


def window_settings(audio_config) -> dict:
    """The keyword arguments of :func:`encode_audio` that a model's ``config.audio`` fixes."""
    a = audio_config
    return dict(n_mels=a.n_mels, context=a.context, mel_per_token=a.mel_per_token, token_seconds=a.token_seconds,
                features=a.features)


def feature_rows(waveform: torch.Tensor, n_mels: int = 80, features: str = "log-mel", *, whisper=None,
                 allow_download: bool = False) -> torch.Tensor:
    """16 kHz mono -> the (rows at 100 per second, width) features the windows are read from."""
    if features == "log-mel":
        return log_mel(waveform, n_mels)
    if features == "whisper":
        from .whisper import whisper_rows

        rows = whisper_rows(waveform, whisper, allow_download=allow_download)
        if rows.shape[1] != int(n_mels):
            raise AudioError(f"the Whisper encoder found is {rows.shape[1]} wide but the model reads {n_mels}; "
                             "point $LLIA_WHISPER at the Whisper size the model was trained with")
        return rows
    raise AudioError(f"unknown audio features {features!r}; use one of {', '.join(FEATURES)}")


def audio_windows(waveform: torch.Tensor, num_frames: int, fps: float, audio_config) -> torch.Tensor:
    """(num_frames, tokens, D) windows of a waveform as ``audio_config`` (a model's ``config.audio``) reads them."""
    a = audio_config
    return frame_windows(feature_rows(waveform, a.n_mels, a.features), num_frames, fps, a.context, a.mel_per_token,
                         a.token_seconds)


def encode_audio(source, fps: float = 25.0, *, start: float = 0.0, duration: float | None = None, n_mels: int = 80,
                 context: int = 2, mel_per_token: int = 4, token_seconds: float = 0.04,
                 long_audio_seconds: float | None = None, features: str = "log-mel", whisper=None,
                 allow_download: bool = False) -> AudioFeatures:
    """Any audio source -> per-video-frame features; num_frames = ceil(audio duration * fps).

    ``source``, ``start`` and ``duration`` are as for :func:`load_audio`; the window settings must
    match the model's config (``**window_settings(model.config.audio)``) (``token_seconds`` is its training frame period, not 1 / fps).
    Audio longer than ``long_audio_seconds`` (default :data:`LONG_AUDIO_SECONDS`) streams: a file's waveform stays in a temporary file
    and the windows are computed per clip (same numbers), so an hour costs about what a minute does.
    """
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise AudioError(f"fps {fps!r} is not a number; use 1 to 120 frames per second") from None
    if not (math.isfinite(fps) and 1 <= fps <= 120):
        raise AudioError(f"fps {fps:g} is out of range; use 1 to 120 frames per second")
    long_audio_seconds = LONG_AUDIO_SECONDS if long_audio_seconds is None else float(long_audio_seconds)
    audio = load_audio(source, start=start, duration=duration, spill_after=long_audio_seconds)
    n = frame_count(audio.duration, fps)
    if features == "log-mel" and audio.duration > long_audio_seconds:
        windows = LazyWindows(audio.waveform, n, fps, n_mels, context, mel_per_token, token_seconds)
    else:  # Whisper runs on whole 30-second chunks: its features are computed at once
        rows = feature_rows(audio.waveform, n_mels, features, whisper=whisper, allow_download=allow_download)
        windows = frame_windows(rows, n, fps, context, mel_per_token, token_seconds)
    return AudioFeatures(audio, fps, n, windows, detect_speech(audio.waveform, n, fps),
                         frame_rms(audio.waveform, n, fps))


__all__ = ["FEATURES", "LONG_AUDIO_SECONDS", "SAMPLE_RATE", "Audio", "AudioFeatures", "LazyWindows", "StreamResampler",
           "WaveformFile", "read_span", "audio_windows", "detect_speech", "encode_audio", "feature_rows", "window_settings", "frame_count", "frame_rms",
           "frame_windows", "lazy_mouth_windows", "load_audio", "log_mel", "mouth_windows", "resample"]
