"""Video out and in: streaming H.264 + AAC mp4 that survives a crash, and a reader for tests/training.

The writer never holds all frames: each ``write`` encodes and muxes at once, audio interleaved up
to the current video time. It writes fragmented MP4 to ``<name>.partial.mp4`` and renames it to
the target on close, so a killed run leaves either a complete file or a partial one that plays
(every completed one-second fragment; the header is written with the first).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from .errors import VideoError

def partial_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.stem + ".partial" + path.suffix)


def to_uint8(frames) -> np.ndarray:
    """(F, H, W, 3) float 0..1 or uint8, torch or numpy -> uint8 numpy."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu()
        if frames.is_floating_point():
            frames = (frames.float().clamp(0, 1) * 255 + 0.5).to(torch.uint8)
        frames = frames.numpy()
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        frames = (np.clip(frames.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise VideoError(f"frames must be (F, H, W, 3), not {frames.shape}")
    return frames


class Mp4Writer:
    """Streaming mp4 writer. Usage: ``with Mp4Writer(path, fps, w, h, audio=wave) as w: w.write(frames)``."""

    def __init__(self, path, fps: float, width: int, height: int, *, audio=None, sample_rate: int = 16000,
                 crf: int = 18, preset: str = "veryfast"):
        import av

        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.width, self.height = int(width), int(height)
        self.pad_w, self.pad_h = self.width % 2, self.height % 2
        self.frames_written = 0
        self._closed = False
        try:
            self.container = av.open(str(self.partial), mode="w", format="mp4",
                                     # delay_moov: the header waits for the first fragment, so it can
                                     # carry the edit list that hides AAC's 1024 priming samples
                                     options={"movflags": "frag_keyframe+delay_moov+default_base_moof",
                                              "flush_packets": "1"})
        except Exception as exc:
            raise VideoError(f"cannot write '{self.partial}' ({exc}); check the folder exists and is writable") from None
        self.video = self.container.add_stream("libx264", rate=self.fps)
        self.video.width, self.video.height = self.width + self.pad_w, self.height + self.pad_h
        self.video.pix_fmt = "yuv420p"
        gop = max(1, int(round(float(self.fps))))
        self.video.codec_context.gop_size = gop
        # no B-frames: their reordering delay (2 frames) shifted every frame's timestamp; with the old
        # empty_moov header (no edit list) pictures played 59 ms behind their sound (a flash and a click
        # decoded by timestamp, tests/test_video_io.py). Without them the encoder also holds no frames back.
        self.video.options = {"crf": str(crf), "preset": preset, "g": str(gop), "keyint_min": str(gop), "bf": "0"}
        self.audio_stream = None
        self._audio = None
        self._audio_pos = 0
        if audio is not None:
            # resampled to 48 kHz a few seconds at a time as the video advances: an hour of audio
            # (or a WaveformFile on disk) is never copied whole
            from .audio.io import StreamResampler

            self._src = audio if hasattr(audio, "shape") and len(audio.shape) == 1 else np.asarray(audio, np.float32).reshape(-1)
            self._src_pos = 0
            self._resampler = StreamResampler(int(sample_rate), 48000)
            self._audio = np.zeros(0, np.float32)  # resampled, not yet encoded: samples [_audio_pos, ...)
            self._rate = 48000  # 48 kHz keeps AAC's 1024-sample priming/padding under one video frame
            self.audio_stream = self.container.add_stream("aac", rate=self._rate)
            self.audio_stream.layout = "mono"

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(keep_partial=exc_type is not None)

    def _resampled_until(self, end: int) -> None:
        """Resample source audio until the buffer reaches 48 kHz sample ``end`` (or the source ends)."""
        from .audio.io import read_span

        while self._audio_pos + len(self._audio) < end and self._resampler is not None:
            step = int(self._resampler.block)
            if self._src_pos < self._src.shape[0]:
                piece = self._resampler.push(read_span(self._src, self._src_pos, min(self._src.shape[0],
                                                                                     self._src_pos + step)))
                self._src_pos += step
            else:
                piece, self._resampler = self._resampler.finish(), None
            self._audio = np.concatenate([self._audio, piece])

    def _mux_audio_until(self, seconds: float, final: bool = False) -> None:
        import av

        if self.audio_stream is None:
            return
        end = int(round(seconds * self._rate))
        self._resampled_until(end)
        if final:  # exactly the video's duration: trim or zero-pad
            have = self._audio_pos + len(self._audio)
            self._audio = np.concatenate([self._audio, np.zeros(max(0, end - have), np.float32)])
            self._audio = self._audio[:max(0, end - self._audio_pos)]
        chunk = 1024
        # whole 1024-sample frames while writing; at the end, the remainder too
        while len(self._audio) >= chunk or (final and len(self._audio) > 0):
            if not final and self._audio_pos + chunk > end:
                break
            piece, self._audio = self._audio[:chunk], self._audio[chunk:]
            frame = av.AudioFrame.from_ndarray(piece[None].astype(np.float32), format="fltp", layout="mono")
            frame.sample_rate = self._rate
            frame.pts = self._audio_pos
            frame.time_base = Fraction(1, self._rate)
            for packet in self.audio_stream.encode(frame):
                self.container.mux(packet)
            self._audio_pos += len(piece)
        if final:
            for packet in self.audio_stream.encode(None):
                self.container.mux(packet)

    def write(self, frames) -> None:
        """Append frames (F, H, W, 3) float 0..1 or uint8."""
        import av

        arr = to_uint8(frames)
        if arr.shape[1:3] != (self.height, self.width):
            raise VideoError(f"frames are {arr.shape[2]}x{arr.shape[1]} but the video is {self.width}x{self.height}")
        if self.pad_w or self.pad_h:
            arr = np.pad(arr, ((0, 0), (0, self.pad_h), (0, self.pad_w), (0, 0)), mode="edge")
        import cv2

        for img in arr:
            # RGB -> I420 with OpenCV: cheaper than the encoder's own conversion (0.3-2 ms a frame at 512-1024 px)
            frame = av.VideoFrame.from_ndarray(cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2YUV_I420),
                                               format="yuv420p")
            frame.pts = self.frames_written
            frame.time_base = 1 / self.fps
            for packet in self.video.encode(frame):
                self.container.mux(packet)
            self.frames_written += 1
        self._mux_audio_until(self.frames_written / float(self.fps))

    def close(self, keep_partial: bool = False) -> Path:
        """Flush and finalise. On success the partial file becomes ``path``; after an error it stays."""
        if self._closed:
            return self.path
        self._closed = True
        try:
            for packet in self.video.encode(None):
                self.container.mux(packet)
            self._mux_audio_until(self.frames_written / float(self.fps), final=True)
        finally:
            self.container.close()
        if keep_partial:
            return self.partial
        os.replace(self.partial, self.path)
        return self.path


def write_mp4(path, frames, fps: float, audio=None, sample_rate: int = 16000, crf: int = 18) -> Path:
    arr = to_uint8(frames)
    with Mp4Writer(path, fps, arr.shape[2], arr.shape[1], audio=audio, sample_rate=sample_rate, crf=crf) as w:
        w.write(arr)
    return Path(path)


@dataclass
class VideoData:
    """frames (F, H, W, 3) uint8; audio (T,) float32 mono or None."""

    frames: torch.Tensor
    fps: float
    audio: torch.Tensor | None
    sample_rate: int | None


def _open(path):
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"video file '{path}' does not exist; check the path")
    try:
        return av.open(str(path))
    except Exception:
        raise VideoError(f"could not open '{path.name}' as a video (corrupt or not a video); re-export it") from None


def iter_video_frames(path, start: int = 0, max_frames: int | None = None):
    """Yield uint8 (H, W, 3) frames one at a time (memory-flat)."""
    with _open(path) as c:
        if not c.streams.video:
            raise VideoError(f"'{Path(path).name}' has no video stream")
        n = 0
        try:
            for i, frame in enumerate(c.decode(c.streams.video[0])):
                if i < start:
                    continue
                if max_frames is not None and n >= max_frames:
                    break
                yield frame.to_ndarray(format="rgb24")
                n += 1
        except Exception as exc:
            if n == 0:
                raise VideoError(f"could not decode '{Path(path).name}' ({type(exc).__name__}); re-export it") from None


def _read_audio(path) -> tuple[np.ndarray | None, int | None]:
    with _open(path) as c:
        if not c.streams.audio:
            return None, None
        s = c.streams.audio[0]
        chunks = []
        try:
            for frame in c.decode(s):
                arr = frame.to_ndarray().astype(np.float32)
                if not frame.format.is_planar:
                    arr = arr.reshape(-1, len(frame.layout.channels)).T
                chunks.append(arr.mean(0))
        except Exception:
            pass
        return (np.concatenate(chunks) if chunks else np.zeros(0, np.float32)), int(s.codec_context.sample_rate)


def read_video(path) -> VideoData:
    with _open(path) as c:
        if not c.streams.video:
            raise VideoError(f"'{Path(path).name}' has no video stream")
        rate = c.streams.video[0].average_rate or c.streams.video[0].guessed_rate
        fps = float(rate) if rate else 25.0
    frames = np.stack(list(iter_video_frames(path)))
    audio, sr = _read_audio(path)
    return VideoData(torch.from_numpy(frames), fps, None if audio is None else torch.from_numpy(audio), sr)


def probe_video(path) -> dict:
    """Decoded facts of a video file: frame count, fps, size, codecs, audio duration."""
    n, size = 0, (0, 0)
    for img in iter_video_frames(path):
        n += 1
        size = (img.shape[1], img.shape[0])
    with _open(path) as c:
        v = c.streams.video[0]
        rate = v.average_rate or v.guessed_rate
        fps = float(rate) if rate else float("nan")
        vcodec = v.codec_context.name
        acodec = c.streams.audio[0].codec_context.name if c.streams.audio else None
    audio, sr = _read_audio(path)
    return {"num_frames": n, "fps": fps, "width": size[0], "height": size[1], "video_codec": vcodec,
            "audio_codec": acodec, "audio_sample_rate": sr,
            "audio_seconds": None if audio is None else len(audio) / sr, "video_seconds": n / fps if fps else None}
