"""Audio: loading/resampling (io), log-mel and per-frame windows (features), speech activity."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..errors import AudioError
from .activity import detect_speech, frame_rms
from .features import frame_count, frame_windows, log_mel
from .io import SAMPLE_RATE, Audio, load_audio, resample


@dataclass
class AudioFeatures:
    """Everything the sampler needs from the audio, per video frame.

    windows: (num_frames, T, D) log-mel windows; speech: (num_frames,) bool; rms: (num_frames,).
    """

    audio: Audio
    fps: float
    num_frames: int
    windows: torch.Tensor
    speech: torch.Tensor
    rms: torch.Tensor

    def slice(self, start: int, stop: int) -> "AudioFeatures":
        a = int(round(start / self.fps * SAMPLE_RATE))
        b = int(round(stop / self.fps * SAMPLE_RATE))
        return replace(self, audio=Audio(self.audio.waveform[a:b]), num_frames=stop - start,
                       windows=self.windows[start:stop], speech=self.speech[start:stop], rms=self.rms[start:stop])

    def waveform_for_video(self) -> torch.Tensor:
        """16 kHz waveform trimmed or zero-padded to exactly num_frames / fps seconds."""
        n = int(round(self.num_frames / self.fps * SAMPLE_RATE))
        w = self.audio.waveform[:n]
        return torch.nn.functional.pad(w, (0, n - w.shape[0]))


def encode_audio(source, fps: float = 25.0, *, start: float = 0.0, duration: float | None = None, n_mels: int = 80,
                 context: int = 2, mel_per_token: int = 4, token_seconds: float = 0.04) -> AudioFeatures:
    """Audio source -> per-frame features (frame count = ceil(duration * fps))."""
    if not 1 <= fps <= 120:
        raise AudioError(f"fps {fps:g} is out of range; use 1 to 120 frames per second")
    audio = load_audio(source, start=start, duration=duration)
    n = frame_count(audio.duration, fps)
    windows = frame_windows(log_mel(audio.waveform, n_mels), n, fps, context, mel_per_token, token_seconds)
    return AudioFeatures(audio, float(fps), n, windows, detect_speech(audio.waveform, n, fps),
                         frame_rms(audio.waveform, n, fps))


__all__ = ["SAMPLE_RATE", "Audio", "AudioFeatures", "detect_speech", "encode_audio", "frame_count", "frame_rms",
           "frame_windows", "load_audio", "log_mel", "resample"]
