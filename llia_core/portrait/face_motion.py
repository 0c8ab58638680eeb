"""Face motion: head sway and blinks, drawn onto finished frames at their own resolution.

The model moves the mouth; a person also moves the head a little and blinks. Both are smooth warps
of the finished frame, measured from the portrait's face mesh, so they cost a remap per frame and
no model call, and they work the same on every clip source (offline, pipelined, live):

- **head**: the head turns and shifts as one piece about the neck (a rotation of up to 2 degrees and
  a shift of about 1.5% of the face at ``head_motion`` 1, three slow sinusoids per axis with seeded
  phases), fading out over the neck and the picture around the head, so the shoulders and the
  background stay;
- **blinks**: the upper lid comes down over the eye and goes back up in about 0.25 s (the lid's own
  skin stretched down, the eye below it unchanged), at random intervals averaging ``60 /
  blink_rate`` seconds, the same for both eyes, never in the first second (a video's thumbnail).

Both follow the frame index on the video's clock, so clips of any length join without a jump and
the same seed gives the same motion.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from ..errors import LLIAError
from .expression import LocalFrame, smooth_fall
from .landmarks import CHIN, FACE_OVAL, FaceLandmarks

# MediaPipe face-mesh eyelid contours (image-left eye, image-right eye in a frontal photo), each from
# its image-left corner to its image-right corner
EYELIDS = (
    ((33, 246, 161, 160, 159, 158, 157, 173, 133), (33, 7, 163, 144, 145, 153, 154, 155, 133)),
    ((362, 398, 384, 385, 386, 387, 388, 466, 263), (362, 382, 381, 380, 374, 373, 390, 249, 263)),
)
BLINK_SECONDS = (0.09, 0.04, 0.14)  # closing, closed, opening (human blinks: 0.1-0.4 s in all)
BLINK_CLOSURE = 1.0  # of the lid gap covered when closed
LID_REACH = 0.9  # lid skin above the lash line that stretches down, in half eye widths
MIN_BLINK_GAP = 0.8  # seconds between blinks at least
FIRST_BLINK = 1.0  # seconds into the video before the first blink can come
HEAD_DEGREES, HEAD_SHIFT, HEAD_NOD = 2.0, 0.015, 0.01  # at head_motion 1: rotation, side and up-down shift (of the face)
HEAD_HZ = ((0.11, 0.5), (0.23, 0.3), (0.37, 0.2))  # (frequency, share) of the sway's sinusoids


@dataclass(frozen=True)
class MotionControls:
    """How the avatar moves, beyond what the audio says.

    mouth_amplitude: 0 still .. 1 as trained .. 2 exaggerated (the pipeline scales the mouth shapes,
    ``SamplerConfig.mouth_amplitude``); head_motion: 0 still .. 1 natural .. 2 lively; blink_rate:
    blinks per minute (0 = none; people blink 10-20 times); seed: which sway and which blink times;
    teeth: draw the upper front teeth in an open mouth (full-size output; off for a stylised face
    whose mouth should stay a plain dark opening).
    """

    mouth_amplitude: float = 1.0
    head_motion: float = 0.0
    blink_rate: float = 0.0
    seed: int = 0
    teeth: bool = True

    def validate(self) -> "MotionControls":
        if not 0 <= self.mouth_amplitude <= 2:
            raise LLIAError(f"mouth_amplitude must be between 0 (still) and 2 (exaggerated), not {self.mouth_amplitude}")
        if not 0 <= self.head_motion <= 2:
            raise LLIAError(f"head_motion must be between 0 (still) and 2 (lively), not {self.head_motion}")
        if not 0 <= self.blink_rate <= 60:
            raise LLIAError(f"blink_rate must be between 0 and 60 blinks per minute, not {self.blink_rate}")
        return self

    @property
    def draws(self) -> bool:
        """Whether the renderer has anything to draw (head sway or blinks)."""
        return self.head_motion > 0 or self.blink_rate > 0


def blink_closure(t: float) -> float:
    """Lid closure 0..1 at ``t`` seconds after a blink starts."""
    close, hold, open_ = BLINK_SECONDS
    if t < 0 or t >= close + hold + open_:
        return 0.0
    if t < close:
        s = t / close
    elif t < close + hold:
        s = 1.0
    else:
        s = 1 - (t - close - hold) / open_
    return float(s * s * (3 - 2 * s))


class _Eye:
    """One eye's lids in output pixels, in the eye's own frame (x corner to corner, unit half its width)."""

    def __init__(self, upper: np.ndarray, lower: np.ndarray):
        a, b = upper[0], upper[-1]
        self.frame = LocalFrame.along((a + b) / 2, b - a, float(np.hypot(*(b - a))) / 2)
        lu, lv = self.frame.to_local(upper).T
        du, dv = self.frame.to_local(lower).T
        ou, od = np.argsort(lu), np.argsort(du)
        self.upper, self.lower = (lu[ou], lv[ou]), (du[od], dv[od])
        top = float(lv.min()) - LID_REACH
        corners = np.array([[u, v] for u in (-1.15, 1.15) for v in (top - 0.1, float(dv.max()) + 0.1)])
        xs, ys = self.frame.to_image(corners[:, 0], corners[:, 1])
        self.box = (int(np.floor(xs.min())), int(np.floor(ys.min())), int(np.ceil(xs.max())) + 1,
                    int(np.ceil(ys.max())) + 1)

    def source(self, px: np.ndarray, py: np.ndarray, closure: float) -> tuple[np.ndarray, np.ndarray]:
        """Where output pixels read the open eye with the lid ``closure`` of the way down."""
        q = self.frame.to_local(np.stack([px, py], -1))
        u, v = q[..., 0], q[..., 1]
        upper, lower = np.interp(u, *self.upper), np.interp(u, *self.lower)
        inside = np.abs(u) < 1
        upper = np.where(inside, upper, lower)  # past the corners the lids meet: no change
        lid = upper + closure * BLINK_CLOSURE * np.clip(lower - upper, 0, None)  # where the lash line is now
        top = upper - LID_REACH
        stretch = (v >= top) & (v < lid) & (lid > upper + 1e-6)
        src_v = np.where(stretch, top + (v - top) * (upper - top) / np.maximum(lid - top, 1e-6), v)
        return self.frame.to_image(u, src_v)


class FaceMotion:
    """Head sway and blinks for one portrait, on frames of one size.

    ``landmarks``: the portrait's face mesh (source pixels); ``to_output``: (2, 3) affine from source
    pixels to the frames' pixels; ``size``: (width, height) of the frames; ``fps``: their rate.
    """

    def __init__(self, landmarks: FaceLandmarks, to_output: np.ndarray, size: tuple[int, int], fps: float,
                 settings: MotionControls):
        self.settings, self.fps = settings.validate(), float(fps)
        self.width, self.height = size
        m = np.asarray(to_output, np.float64)
        pts = landmarks.xy @ m[:, :2].T + m[:, 2]
        self.eyes = [_Eye(pts[list(up)], pts[list(lo)]) for up, lo in EYELIDS]
        oval = pts[list(FACE_OVAL)]
        self.face = float(np.ptp(oval[:, 1]))
        centre = oval.mean(0)
        self.pivot = pts[CHIN] + (pts[CHIN] - centre) * 0.6  # the neck turns the head
        rng = np.random.default_rng(settings.seed)
        self.phases = rng.uniform(0, 2 * np.pi, (3, len(HEAD_HZ)))
        self._blink_rng = np.random.default_rng([settings.seed, 1])
        self._blinks: list[float] = []
        self._head = None
        if settings.head_motion > 0:
            self._prepare_head(centre)

    def _prepare_head(self, centre: np.ndarray) -> None:
        """The weight of the head's motion per pixel: 1 over the head (face and hair), fading over
        the neck and the picture around it; kept for the box where it is not 0."""
        a, b = 0.62 * self.face, 0.75 * self.face
        cy = centre[1] - 0.1 * self.face
        x0, x1 = int(max(0, centre[0] - 1.7 * a)), int(min(self.width, centre[0] + 1.7 * a + 1))
        y0, y1 = int(max(0, cy - 1.7 * b)), int(min(self.height, cy + 1.7 * b + 1))
        if x1 <= x0 or y1 <= y0:
            return
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        r = np.sqrt(((xs - centre[0]) / a) ** 2 + ((ys - cy) / b) ** 2)
        weight = smooth_fall(r, 1.0, 1.7).astype(np.float32)
        self._head = ((x0, y0, x1, y1), xs, ys, xs - np.float32(self.pivot[0]), ys - np.float32(self.pivot[1]), weight)

    # the motion's timeline
    def pose(self, index: int) -> tuple[float, float, float]:
        """(degrees, shift x, shift y in pixels) of the head at frame ``index``."""
        t = index / self.fps
        k = self.settings.head_motion
        waves = [sum(share * np.sin(2 * np.pi * hz * t + self.phases[axis, j]) for j, (hz, share) in enumerate(HEAD_HZ))
                 for axis in range(3)]
        return (k * HEAD_DEGREES * waves[0], k * HEAD_SHIFT * self.face * waves[1],
                k * HEAD_NOD * self.face * waves[2])

    def blink(self, index: int) -> float:
        """Lid closure 0..1 at frame ``index``."""
        rate = self.settings.blink_rate
        if rate <= 0:
            return 0.0
        t = index / self.fps
        mean = 60.0 / rate
        if not self._blinks:  # never on the first frame (a video's thumbnail): the first after a second
            self._blinks.append(FIRST_BLINK + self._blink_rng.uniform(0.0, mean))
        while self._blinks[-1] <= t:
            self._blinks.append(self._blinks[-1] + max(MIN_BLINK_GAP, self._blink_rng.gamma(3.0, mean / 3.0)))
        k = bisect.bisect_right(self._blinks, t)  # the blinks started by t; only the latest can still be on
        return blink_closure(t - self._blinks[k - 1]) if k else 0.0

    # drawing
    def apply(self, frame: np.ndarray, index: int) -> np.ndarray:
        """(H, W, 3) uint8 frame number ``index`` -> the frame with the head and lids moved (a new
        array when anything moved, else ``frame`` itself)."""
        import cv2

        closure = self.blink(index)
        if closure > 1e-3:
            frame = frame.copy()
            for eye in self.eyes:
                x0, y0, x1, y1 = eye.box
                x0, y0, x1, y1 = max(0, x0), max(0, y0), min(self.width, x1), min(self.height, y1)
                if x1 <= x0 or y1 <= y0:
                    continue
                py, px = np.mgrid[y0:y1, x0:x1].astype(np.float64)
                sx, sy = eye.source(px, py, closure)
                frame[y0:y1, x0:x1] = cv2.remap(frame, sx.astype(np.float32), sy.astype(np.float32), cv2.INTER_LINEAR,
                                                borderMode=cv2.BORDER_REPLICATE)
        if self._head is not None:
            degrees, tx, ty = self.pose(index)
            (x0, y0, x1, y1), xs, ys, dx, dy, weight = self._head
            c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
            # the head's point at p came from p - D(p), D = the rigid motion's displacement, weighted
            mx = xs - weight * np.float32((c - 1)) * dx + weight * np.float32(s) * dy - weight * np.float32(tx)
            my = ys - weight * np.float32(s) * dx - weight * np.float32((c - 1)) * dy - weight * np.float32(ty)
            out = frame.copy()
            out[y0:y1, x0:x1] = cv2.remap(frame, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            frame = out
        return frame
