"""One training clip: a state script, its audio, the per-frame pose, and the rendered frames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...framing import FACE, Framing
from ...states import IDLE, LISTENING, SPEAKING
from .identity import identity_from_id
from .mouth import mouth_params_from_audio
from ...portrait.crop import face_mask_of_crop
from .render import FramePose, render_frame
from .speech import random_voice, room_noise, speech_with_pauses

KINDS = ("speaking", "listening", "idle", "switch")
KIND_WEIGHTS = (0.5, 0.2, 0.15, 0.15)


@dataclass
class ClipData:
    """frames (F, R, R, 3) uint8; audio (F / fps * 16000,) float32; per-frame ground truth."""

    frames: np.ndarray
    audio: np.ndarray
    mouth_open: np.ndarray
    mouth_width: np.ndarray
    mouth_round: np.ndarray
    states: np.ndarray
    reference: np.ndarray
    face_mask: np.ndarray
    identity_id: int
    fps: float
    kind: str


def _segment_audio(state: int, seconds: float, rng, own_voice, other_voice) -> np.ndarray:
    if state == SPEAKING:
        return speech_with_pauses(seconds, rng, own_voice)
    if state == LISTENING:
        return speech_with_pauses(seconds, rng, other_voice) * rng.uniform(0.5, 1.0)
    return room_noise(seconds, rng)


def _pulses(n: int, rng, rate_s: tuple[float, float], length: int, fps: float) -> np.ndarray:
    """Random smooth 0..1 pulses (blinks, nods) at random intervals."""
    out = np.zeros(n)
    t = int(rng.uniform(0.3, rate_s[1]) * fps)
    shape = np.sin(np.linspace(0, np.pi, length + 2)[1:-1])
    while t < n:
        out[t:t + length] = np.maximum(out[t:t + length], shape[: max(0, min(length, n - t))])
        t += int(rng.uniform(*rate_s) * fps)
    return out


def reframe(image: np.ndarray, view: Framing, resolution: int) -> np.ndarray:
    """A crop rendered to the whole-face framing (any size) -> the ``resolution`` crop that shows
    ``view`` of the face (bilinear; render at ``rendered_size`` so that it is ~1:1)."""
    import cv2

    big = image.shape[0]
    k = FACE.unit(big) / view.unit(resolution)  # rendered pixels per crop pixel
    ox, oy = FACE.to_pixels(view.to_units([[0.0, 0.0]], resolution), big)[0]  # crop pixel (0, 0)'s corner
    m = np.array([[k, 0, ox + 0.5 * k - 0.5], [0, k, oy + 0.5 * k - 0.5]], np.float64)  # crop -> rendered centres
    return cv2.warpAffine(image, m, (resolution, resolution), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def rendered_size(view: Framing, resolution: int) -> int:
    """The renderer's whole-face size at which ``view`` of the face has ``resolution`` pixels' detail."""
    return resolution if view == FACE else int(np.ceil(resolution * FACE.scale / view.scale))


def make_clip(identity_id: int, clip_seed: int, *, seconds: float = 3.0, fps: int = 25, resolution: int = 128,
              kind: str | None = None, head_motion: bool = True, view: Framing = FACE) -> ClipData:
    """One synthetic clip; ``view``: which part of the face the crops show (the model's framing)."""
    rng = np.random.default_rng([int(identity_id), int(clip_seed), 7])
    ident = identity_from_id(identity_id)
    kind = kind or KINDS[int(rng.choice(len(KINDS), p=KIND_WEIGHTS))]
    n = int(round(seconds * fps))
    own_voice = random_voice(rng)
    other_voice = random_voice(rng)
    # 1. state script
    if kind == "switch":
        a, b = [(SPEAKING, LISTENING), (LISTENING, SPEAKING), (SPEAKING, IDLE), (IDLE, SPEAKING)][int(rng.integers(4))]
        cut = int(rng.integers(n // 4, 3 * n // 4))
        states = np.array([a] * cut + [b] * (n - cut), np.int8)
    else:
        states = np.full(n, {"speaking": SPEAKING, "listening": LISTENING, "idle": IDLE}[kind], np.int8)
    # 2. audio per state segment
    spf = 16000 / fps
    audio = np.zeros(int(round(n * spf)), np.float32)
    bounds = [0, *(np.nonzero(np.diff(states))[0] + 1).tolist(), n]
    for s0, s1 in zip(bounds[:-1], bounds[1:]):
        a0, a1 = int(round(s0 * spf)), int(round(s1 * spf))
        audio[a0:a1] = _segment_audio(int(states[s0]), (a1 - a0) / 16000 + 1e-9, rng, own_voice, other_voice)[: a1 - a0]
    # 3. mouth from the avatar's own voice only
    m = mouth_params_from_audio(audio, n, fps)
    speaking = states == SPEAKING
    for key in m:
        neutral = 0.5 if key == "width" else 0.0
        m[key] = np.where(speaking, m[key], neutral).astype(np.float32)
    # 4. everything else in the pose
    t = np.arange(n) / fps
    blink = _pulses(n, rng, (2.0, 6.0), 4, fps)
    other_pause = (states == LISTENING) & (mouth_params_from_audio(audio, n, fps)["open"] == 0)
    nod = np.convolve(other_pause.astype(float), np.hanning(9) / 4, mode="same").clip(0, 1) * (states == LISTENING)
    smile = 0.4 * nod + 0.1 * (states == LISTENING)
    if head_motion:
        ph = rng.uniform(0, 2 * np.pi, 4)
        energy = np.convolve(m["open"], np.ones(9) / 9, mode="same")
        dx = 1.0 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * t + ph[0])
        dy = 0.6 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * t + ph[1]) + 0.6 * energy
        roll = 1.5 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t + ph[2])
        breath = np.sin(2 * np.pi * 0.25 * t + ph[3])
    else:
        dx = dy = roll = breath = np.zeros(n)
        nod = np.zeros(n)
    size = rendered_size(view, resolution)
    frames = np.stack([
        render_frame(ident, FramePose(mouth_open=float(m["open"][i]), mouth_width=float(m["width"][i]),
                                      mouth_round=float(m["round"][i]), smile=float(smile[i]), blink=float(blink[i]),
                                      head_dx=float(dx[i]), head_dy=float(dy[i]), head_roll=float(roll[i]),
                                      head_nod=float(nod[i]), breath=float(breath[i])), size)
        for i in range(n)])
    reference = render_frame(ident, FramePose(), size)
    if size != resolution:
        frames = np.stack([reframe(f, view, resolution) for f in frames])
        reference = reframe(reference, view, resolution)
    return ClipData(frames, audio, m["open"], m["width"], m["round"], states, reference,
                    face_mask_of_crop(reference, view), int(identity_id), float(fps), kind)
