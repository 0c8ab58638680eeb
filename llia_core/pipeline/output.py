"""The pipeline's output stage: clips -> the portrait's own frames -> mp4 and / or kept frames.

One loop shared by the CLI and the ComfyUI sampler node (the live engine uses its FrameRenderer
per clip): each decoded clip is composited back into the picture (``output="full"``) or kept as
the model's crop (``"crop"``), written to a streaming mp4 as soon as it exists, and kept whole, as
a tail or not at all. A failure or a cancel closes the mp4 as a playable partial file before it
propagates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import LLIAError
from ..portrait import DEFAULT_MAX_SIZE, OUTPUTS, Compositor, Portrait, crop_frames
from ..portrait.face_motion import FaceMotion, MotionControls
from ..video_io import to_uint8
from .pipeline import ClipOutput

KEEP = ("all", "tail", "none")


@dataclass
class RenderedVideo:
    """frames: (N, H, W, 3) uint8 (all kept frames, the tail, or None); path: the mp4 or None."""

    frames: np.ndarray | None
    frames_done: int
    size: tuple[int, int]
    first_frame_seconds: float | None
    seconds: float
    path: Path | None

    @property
    def fps(self) -> float:
        return self.frames_done / self.seconds if self.seconds else 0.0


class FrameRenderer:
    """Turns model crops into the frames a user sees: full-size composites or the crop, with the
    head motion, brows and blinks of ``motion`` (``portrait/face_motion.py``) drawn on at ``fps``.

    The head moves as ``head_model`` (the model's ``head_model``) draws it from the avatar's speech:
    all of it in ``speech`` (16 kHz, the video's length) offline, or as it arrives through ``hear``.
    ``painter`` (the model's ``mouth_painter``) paints the inside of an open mouth (unless
    ``motion.teeth`` is off: then the opening is left as the warp shows it)."""

    def __init__(self, portrait: Portrait, output: str = "full", max_size: int | None = DEFAULT_MAX_SIZE,
                 motion: MotionControls | None = None, fps: float = 25.0, *,
                 head_model=None, speech=None, painter=None):
        if output not in OUTPUTS:
            raise LLIAError(f"unknown output '{output}'; use one of {', '.join(OUTPUTS)}")
        self.portrait, self.output = portrait, output
        teeth = True if motion is None else motion.teeth
        self.compositor = Compositor(portrait, max_size, teeth=teeth, painter=painter if teeth else None) \
            if output == "full" else None
        r = portrait.resolution
        self.size = self.compositor.size if self.compositor is not None else (r, r)
        self._buffer: np.ndarray | None = None
        self.notes: list[str] = []
        self.motion = None
        if motion is not None and motion.validate().draws:
            if portrait.landmarks is None:
                self.notes.append("head motion and blinks need the face's landmarks, which this portrait has none "
                                  "of; the video has neither")
            else:
                if self.compositor is not None:
                    (w0, h0), (w, h) = portrait.source_size, self.size
                    to_output = np.array([[w / w0, 0, 0], [0, h / h0, 0]])
                else:
                    to_output = portrait.alignment.matrix
                self.motion = FaceMotion(portrait.landmarks, to_output, self.size, fps, motion, head_model)
                if motion.head_motion > 0 and head_model is None:
                    self.notes.append("this model has no head-motion model: the head stays still (blinks still come)")
        if speech is not None:
            self.hear(speech, final=True)

    def follow_states(self, start: int, states) -> None:
        """Per-frame states of frames ``start``... (speaking / listening / idle): the head nods now and
        then while the avatar listens, and it blinks more often while it does not speak. Offline: the
        whole timeline once, before the frames; live: each clip's before its frames."""
        if self.motion is not None:
            from ..states import LISTENING, SPEAKING

            states = np.asarray(states)
            self.motion.follow_states(start, states == LISTENING, states == SPEAKING)

    def hear(self, wave, final: bool = False) -> None:
        """The avatar's next 16 kHz samples (1-D), for the head motion; ``final``: the speech ends here
        (offline: the whole audio, the video's length, at once)."""
        if self.motion is not None:
            wave = wave.numpy() if hasattr(wave, "numpy") else np.asarray(wave)
            self.motion.hear(wave, final)

    def __call__(self, crops, mouth=None, start: int = 0) -> np.ndarray:
        """(F, R, R, 3) float 0..1 -> (F, H, W, 3) uint8, new arrays (to keep). ``mouth`` (F, 3): the
        shapes a warp model moved the mouth to (``ClipOutput.mouth``), applied at full resolution;
        ``start``: the first frame's index in the video (the head's and lids' clock)."""
        if self.compositor is not None:
            frames = self.compositor.composite(crops, mouth)
        else:
            frames = crop_frames(crops, self.portrait)
        if self.motion is not None:
            for i in range(len(frames)):
                frames[i] = self.motion.apply(frames[i], start + i)
        return frames

    def stream(self, crops, mouth=None, start: int = 0):
        """The same frames one at a time, (H, W, 3) uint8, drawn into one reused buffer: each is valid
        until the next (for a writer that copies it), so a full-size background is not copied per frame."""
        if self.compositor is None:
            yield from self(crops, mouth, start)
            return
        if self._buffer is None:
            self._buffer = self.compositor.new_frame()
        for i, crop in enumerate(to_uint8(crops)):
            frame = self.compositor.paste(crop, self._buffer, None if mouth is None else mouth[i])
            yield frame if self.motion is None else self.motion.apply(frame, start + i)


def render_clips(clips: Iterable[ClipOutput], renderer: FrameRenderer, *, total_frames: int,
                 mp4: str | Path | None = None, fps: float = 25.0, audio=None, sample_rate: int = 16000,
                 keep: str = "all", tail: int = 16,
                 on_clip: Callable[[ClipOutput, np.ndarray, int], None] | None = None) -> RenderedVideo:
    """Run the output stage over a clip stream.

    Args:
        clips: decoded clips in order (``LLIAPipeline.stream`` or ``PipelinedLLIA.stream``).
        renderer: what each crop becomes (``FrameRenderer``).
        total_frames: frames the stream will produce (the audio's frame count), checked at the end.
        mp4: write a streaming mp4 here (``NAME.partial.mp4`` until complete), with ``audio``
            (1-D waveform at ``sample_rate``, trimmed or padded to the video by the writer).
        keep: "all" frames, the last ``tail`` frames ("tail": previews of long runs), or "none".
        on_clip: called with (clip, its last frame as shown (H, W, 3), frames done so far) after each clip.
    """
    if keep not in KEEP:
        raise LLIAError(f"unknown keep '{keep}'; use one of {', '.join(KEEP)}")
    writer = None
    if mp4 is not None:
        from ..video_io import Mp4Writer

        writer = Mp4Writer(mp4, fps, *renderer.size, audio=audio, sample_rate=sample_rate)
    kept: list[np.ndarray] = []
    first, done = None, 0
    t0 = time.perf_counter()
    try:
        for clip in clips:
            if keep == "none":  # stream through one buffer
                for last in renderer.stream(clip.frames, clip.mouth, clip.clip.start):
                    if writer is not None:
                        writer.write(last[None])
            else:
                frames = renderer(clip.frames, clip.mouth, clip.clip.start)
                if writer is not None:
                    writer.write(frames)
                kept = kept + [frames] if keep == "all" else (kept + [frames])[-(tail // frames.shape[0] + 2):]
                last = frames[-1]
            done += clip.frames.shape[0]
            first = time.perf_counter() - t0 if first is None else first  # shown, not just generated
            if on_clip is not None:
                on_clip(clip, last, done)
    except BaseException:
        if writer is not None:
            writer.close(keep_partial=True)
        raise
    if done != total_frames:
        if writer is not None:
            writer.close(keep_partial=True)
        raise LLIAError(f"generated {done} frames for {total_frames} audio frames; please report this bug")
    path = writer.close() if writer is not None else None
    seconds = time.perf_counter() - t0
    frames = None
    if kept:
        frames = np.concatenate(kept)
        if keep == "tail":
            frames = frames[-tail:]
    return RenderedVideo(frames, done, renderer.size, first, seconds, path)
