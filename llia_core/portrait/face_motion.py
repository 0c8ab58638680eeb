"""Face motion: the head's pose, the brows and blinks, drawn onto finished frames at their own resolution.

The model moves the mouth; a person also moves the head, raises the brows and blinks. All are smooth
warps of the finished frame, from the portrait's face mesh, so they cost a remap per frame and no
denoiser call, and they work the same on every clip source (offline, pipelined, live):

- **head and brows**: the pose the head-motion model (``models/head_model.py``) draws from the speech,
  scaled by ``head_motion``: roll about the neck, yaw and pitch as a turn of the head's ellipsoid
  (the middle of the face moves across, the outline stays: as far as one photo can show a turn), a
  shift, all fading out over the neck and the picture around the head so the shoulders and the
  background stay; the brows' arches lifted over the forehead (the eyes stay);
- **listening nods**: while the avatar listens (``listen``), a small nod every few seconds (a rule:
  no training video shows a listener), on top of the model's own motion in silence;
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
# blinks come 1.4x as often while the avatar does not speak as while it speaks: real talkers' blinks
# read from the eyes' pixels in 35 in-the-wild videos, 24.7 a minute in speech and 34.6 in pauses
# (docs/model_card.md); the two paces keep ``blink_rate`` the mean over talk that is 85% speech
BLINK_PACE_SPEAKING, BLINK_PACE_SILENT = 0.943, 1.32
# the head-motion model's pose -> what the warp draws: the face mesh reads a yaw or pitch of the ellipsoid
# turn (whose outline stays) at about 0.55-0.7 of its angle, a brow lift at 0.4x (astronaut, 5 and 10
# degrees; docs/model_card.md), so these make a drawn pose read as predicted; the shift's 0.75 was set
# while the roll's pivot below the chin added a shift of its own (generated videos now read 0.47x / 1.11x
# the real shift in x / y: left as it is, a larger shift would bend the picture around the head more)
DRAW_GAIN = np.array([1.0, 1.6, 1.8, 0.75, 0.75, 2.5])
MAX_DRAWN = np.array([12.0, 14.0, 14.0, 0.5, 0.5, 0.1])  # degrees, head sizes, eye distances: beyond, a warp of one photo shows seams
HEAD_DEPTH = 0.9  # the head's depth in the middle of the face over the face's half width
DEPTH_REACH = 1.35  # where the depth reaches 0, in face-oval radii
# the head's motion fades from its ellipse to this many times it (over the neck, the shoulders and the
# picture around): a 3-degree roll bent lines there by up to 15 degrees when it faded by 1.7 (the
# displacement at the top of the head over the fade's width), 4 at 2.8 (docs/model_card.md)
FADE_REACH = 2.8
NOD_DEGREES, NOD_SECONDS = 3.0, 0.7  # a listening nod: the head dips by this much and back
NOD_FIRST, NOD_GAP, NOD_MIN_GAP = 0.5, 5.0, 2.0  # seconds: after listening starts, mean and least between nods
BROWS = ((70, 63, 105, 66, 107), (300, 293, 334, 296, 336))  # brow arches (upper edge), image-left and -right


@dataclass(frozen=True)
class MotionControls:
    """How the avatar moves, beyond what the audio says.

    mouth_amplitude: 0 still .. 1 as trained .. 2 exaggerated (the pipeline scales the mouth shapes,
    ``SamplerConfig.mouth_amplitude``); head_motion: 0 still .. 1 as the head-motion model learned from
    real talkers .. 2 twice that (the head's pose and the brows); blink_rate: blinks per minute (0 =
    none; people blink 10-20 times); seed: which head motion and which blink times;
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
        """Whether the renderer has anything to draw (head motion or blinks)."""
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
    """Head motion, brows and blinks for one portrait, on frames of one size.

    ``landmarks``: the portrait's face mesh (source pixels); ``to_output``: (2, 3) affine from source
    pixels to the frames' pixels; ``size``: (width, height) of the frames; ``fps``: their rate;
    ``head_model``: the head-motion model (``HeadMotionModel``; None: the head stays still). The
    speech comes in through ``hear`` (all at once or as it arrives) and ``finish``.
    """

    def __init__(self, landmarks: FaceLandmarks, to_output: np.ndarray, size: tuple[int, int], fps: float,
                 settings: MotionControls, head_model=None):
        from .head_pose import RIGID, rigid_radius

        self.settings, self.fps = settings.validate(), float(fps)
        self.width, self.height = size
        m = np.asarray(to_output, np.float64)
        pts = landmarks.xy @ m[:, :2].T + m[:, 2]
        self.eyes = [_Eye(pts[list(up)], pts[list(lo)]) for up, lo in EYELIDS]
        oval = pts[list(FACE_OVAL)]
        self.face = float(np.ptp(oval[:, 1]))
        self.head_size = rigid_radius(pts)
        self.eye_distance = float(np.hypot(*(self.eyes[1].frame.origin - self.eyes[0].frame.origin)))
        # the head rolls about its rigid points' centre, as the pose tracks the model learned from read
        # it (head_pose: the shift is that centre's): a pivot at the neck added a shift of its own, read
        # as 1.35x the drawn, and moved the top of the head twice as far, bending the picture around it
        self.pivot = pts[list(RIGID)].mean(0)
        self.chin_y = float(pts[CHIN][1])
        self._blink_rng = np.random.default_rng([settings.seed, 1])
        self._blinks: list[float] = []
        self._head = None
        self.stream = None
        self._nod_rng = np.random.default_rng([settings.seed, 2])
        self._nods: list[float] = []  # start times (s) of listening nods
        self._next_nod: float | None = None
        self._listened = 0  # frames whose listening flag was given
        self._blink_clock = [0.0]  # the blink clock (seconds at BLINK_PACE_*) at the start of frames 0, 1, ...
        if settings.head_motion > 0:
            if head_model is not None:
                from ..models.head_model import HeadMotionStream

                self.stream = HeadMotionStream(head_model, settings.seed)
            self._prepare_head(oval)
            self._brows = [self._prepare_brow(pts[list(brow)], eye) for brow, eye in zip(BROWS, self.eyes)]

    def _prepare_head(self, oval: np.ndarray) -> None:
        """The weight of the head's motion per pixel (1 over the head, face and hair, fading over the
        neck and the picture around it) and each pixel's depth on the head's ellipsoid, for the box where
        the weight is not 0; the field's parts on a grid of every second pixel (the field is smooth, and
        a fade this wide over a 1024 px photo cost 2.2 ms a frame at every pixel)."""
        centre = oval.mean(0)
        a, b = 0.62 * self.face, 0.75 * self.face
        cy = centre[1] - 0.1 * self.face
        x0, x1 = int(max(0, centre[0] - FADE_REACH * a)), int(min(self.width, centre[0] + FADE_REACH * a + 1))
        y0, y1 = int(max(0, cy - FADE_REACH * b)), int(min(self.height, cy + FADE_REACH * b + 1))
        if x1 <= x0 or y1 <= y0:
            return
        half_w, half_h = np.ptp(oval[:, 0]) / 2, np.ptp(oval[:, 1]) / 2

        def weight_and_depth(xs, ys):
            r = np.sqrt(((xs - centre[0]) / a) ** 2 + ((ys - cy) / b) ** 2)
            # the head's depth (toward the camera < 0): HEAD_DEPTH half face widths in the middle, falling
            # smoothly to 0 at DEPTH_REACH times the face oval (over the hair and the ears), so a turn
            # moves the middle of the face across and stretches nothing by more than ~0.25 px a pixel at
            # 14 degrees (a sphere's profile, with its infinite slope at the outline, tore the cheeks' edge)
            rr = (((xs - centre[0]) / half_w) ** 2 + ((ys - centre[1]) / half_h) ** 2) / DEPTH_REACH ** 2
            return smooth_fall(r, 1.0, FADE_REACH), -HEAD_DEPTH * half_w * np.clip(1 - rr, 0, None) ** 2

        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        # the coarse grid: sample (i, j) sits at full pixel (2i + 0.5, 2j + 0.5), so doubling it with
        # linear interpolation lands on the full pixels
        gy, gx = np.mgrid[0:(y1 - y0 + 1) // 2, 0:(x1 - x0 + 1) // 2].astype(np.float64)
        gx, gy = x0 + 2 * gx + 0.5, y0 + 2 * gy + 0.5
        w, depth = weight_and_depth(gx, gy)
        parts = np.stack([w * (gx - centre[0]), w * (gy - centre[1]), w * depth, w]).astype(np.float32)
        self._head = ((x0, y0, x1, y1), xs, ys, weight_and_depth(xs, ys)[0].astype(np.float32), parts,
                      (float(centre[0] - self.pivot[0]), float(centre[1] - self.pivot[1])))

    def _prepare_brow(self, arch: np.ndarray, eye: "_Eye"):
        """Where a brow raise moves the picture, in output pixels: 1 on the brow's arch, falling to 0 at
        the upper lid below it and at 1.5 arch-to-lid heights above it and past its ends."""
        eye_y = eye.frame.to_image(np.zeros(1), np.zeros(1))[1][0]
        x0a, x1a = float(arch[:, 0].min()), float(arch[:, 0].max())
        brow_y = float(arch[:, 1].mean())
        gap = max(eye_y - brow_y, 2.0)
        half = (x1a - x0a) / 2
        cx = (x0a + x1a) / 2
        box = (int(max(0, cx - 1.5 * half)), int(max(0, brow_y - 2.6 * gap)),
               int(min(self.width, cx + 1.5 * half + 1)), int(min(self.height, eye_y - 0.3 * gap + 1)))
        if box[2] <= box[0] or box[3] <= box[1]:
            return None
        ys, xs = np.mgrid[box[1]:box[3], box[0]:box[2]].astype(np.float32)
        across = smooth_fall(np.abs(xs - cx) / half, 1.0, 1.5)
        up = (brow_y - ys) / gap  # 0 on the arch, 1 one gap above it
        down = (ys - brow_y) / (0.7 * gap)  # the lid starts about 0.7 gaps below the arch
        along = np.where(up >= 0, smooth_fall(up, 0.3, 1.5), smooth_fall(down, 0.2, 1.0))
        return box, xs, ys, (across * along).astype(np.float32)

    # the motion's timeline
    def hear(self, wave, final: bool = False) -> None:
        """The next 16 kHz samples of the avatar's speech (1-D); ``final``: it ends here."""
        if self.stream is None:
            return
        self.stream.hear_audio(wave)
        if final:
            self.stream.finish_audio()

    def follow_states(self, start: int, listening, speaking=None) -> None:
        """Frames ``start``... are (True) or are not the avatar listening to the other party, and
        speaking: while it listens it nods now and then (``NOD_*``: a rule, as no training video shows a
        listener), the first half a second in; while it does not speak it blinks more often
        (``BLINK_PACE_*``). Frames come in order; frames given before are skipped."""
        listening = np.asarray(listening, bool).reshape(-1)
        speaking = np.zeros_like(listening) if speaking is None else np.asarray(speaking, bool).reshape(-1)
        for i, on in enumerate(listening):
            f = start + i
            if f < self._listened:
                continue
            self._listened = f + 1
            while len(self._blink_clock) <= f:  # frames never given (a gap) keep the plain pace
                self._blink_clock.append(self._blink_clock[-1] + 1.0 / self.fps)
            if len(self._blink_clock) == f + 1:  # (a motion that continues another's has its frames' clock)
                pace = BLINK_PACE_SPEAKING if speaking[i] else BLINK_PACE_SILENT
                self._blink_clock.append(self._blink_clock[f] + pace / self.fps)
            t = f / self.fps
            if not on:
                self._next_nod = None
            elif self._next_nod is None:
                self._next_nod = t + NOD_FIRST
            elif t >= self._next_nod:
                self._nods.append(self._next_nod)
                self._next_nod += max(NOD_MIN_GAP, float(self._nod_rng.gamma(4.0, NOD_GAP / 4.0)))

    def nod(self, index: int) -> float:
        """Pitch (degrees, as read) of the listening nods at frame ``index``."""
        t = index / self.fps
        recent = self._nods[bisect.bisect_left(self._nods, t - NOD_SECONDS):bisect.bisect_right(self._nods, t)]
        return float(sum(NOD_DEGREES * 0.5 * (1 - np.cos(2 * np.pi * (t - n) / NOD_SECONDS)) for n in recent))

    def pose(self, index: int) -> np.ndarray:
        """(6,) roll, yaw, pitch (degrees), shift x, y (head sizes), brows (eye distances) as drawn at
        frame ``index``: the model's pose and the listening nods, times ``DRAW_GAIN``, within ``MAX_DRAWN``."""
        pose = np.zeros(6) if self.stream is None else self.stream.pose(index / self.fps)
        pose[2] += self.nod(index)
        return np.clip(pose * self.settings.head_motion * DRAW_GAIN, -MAX_DRAWN, MAX_DRAWN)

    def continue_from(self, other: "FaceMotion") -> None:
        """Go on with ``other``'s head motion (what it has heard and drawn) when only the amount or the
        blinks changed: a new setting must not make the head jump back to the portrait's pose, nor the
        blinks lose the clock the avatar's speech has paced."""
        self._blink_clock = list(other._blink_clock)
        if self.stream is not None and other.stream is not None and other.stream.seed == self.stream.seed:
            self.stream = other.stream

    def _blink_time(self, index: float) -> float:
        """The blink clock at (fractional) frame ``index``: seconds, paced by the states followed so far."""
        clock, k = self._blink_clock, int(np.floor(index))
        if k + 1 < len(clock):
            return clock[k] + (index - k) * (clock[k + 1] - clock[k])
        return clock[-1] + (index - (len(clock) - 1)) / self.fps

    def _frame_at(self, clock: float) -> float:
        """The (fractional) frame at which the blink clock reads ``clock`` (the inverse of ``_blink_time``)."""
        times = self._blink_clock
        k = bisect.bisect_right(times, clock) - 1
        if k + 1 < len(times):
            return k + (clock - times[k]) / (times[k + 1] - times[k])
        return len(times) - 1 + (clock - times[-1]) * self.fps

    def blink(self, index: int) -> float:
        """Lid closure 0..1 at frame ``index``: blinks come at gamma-distributed gaps of the blink clock,
        and each runs its course in real time."""
        rate = self.settings.blink_rate
        if rate <= 0:
            return 0.0
        clock = self._blink_time(index)
        mean = 60.0 / rate
        if not self._blinks:  # never on the first frame (a video's thumbnail): the first after a second
            self._blinks.append(FIRST_BLINK + self._blink_rng.uniform(0.0, mean))
        while self._blinks[-1] <= clock:
            self._blinks.append(self._blinks[-1] + max(MIN_BLINK_GAP, self._blink_rng.gamma(3.0, mean / 3.0)))
        k = bisect.bisect_right(self._blinks, clock)  # the blinks started by now; only the latest can still be on
        return blink_closure((index - self._frame_at(self._blinks[k - 1])) / self.fps) if k else 0.0

    # drawing
    def apply(self, frame: np.ndarray, index: int) -> np.ndarray:
        """(H, W, 3) uint8 frame number ``index`` -> the frame with the head, brows and lids moved (a new
        array when anything moved, else ``frame`` itself)."""
        import cv2

        closure = self.blink(index)
        pose = self.pose(index) if self._head is not None else np.zeros(6)
        if closure <= 1e-3 and not np.any(pose):
            return frame
        out = frame.copy()  # the one copy: lids, brows and head are drawn into it in turn
        if closure > 1e-3:
            for eye in self.eyes:
                x0, y0, x1, y1 = eye.box
                x0, y0, x1, y1 = max(0, x0), max(0, y0), min(self.width, x1), min(self.height, y1)
                if x1 <= x0 or y1 <= y0:
                    continue
                py, px = np.mgrid[y0:y1, x0:x1].astype(np.float64)
                sx, sy = eye.source(px, py, closure)
                out[y0:y1, x0:x1] = cv2.remap(out, sx.astype(np.float32), sy.astype(np.float32), cv2.INTER_LINEAR,
                                              borderMode=cv2.BORDER_REPLICATE)
        if not np.any(pose):
            return out
        roll, yaw, pitch, sx, sy, brow = pose
        lift = np.float32(brow * self.eye_distance)
        if abs(lift) > 0.05:
            for part in self._brows:
                if part is None:
                    continue
                (x0, y0, x1, y1), xs, ys, w = part
                out[y0:y1, x0:x1] = cv2.remap(out, xs, ys + lift * w, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        (x0, y0, x1, y1), xs, ys = self._head[:3]
        dx, dy = self.head_field(roll, yaw, pitch, sx, sy)
        out[y0:y1, x0:x1] = cv2.remap(out, xs - dx, ys - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return out

    def head_field(self, roll: float, yaw: float, pitch: float, sx: float, sy: float) -> tuple[np.ndarray, np.ndarray]:
        """The head's displacement in pixels over its box (``_head``'s), weighted: roll about the rigid
        points' centre, yaw and pitch of the ellipsoid about its centre (R = Ry(yaw) Rx(pitch),
        orthographic), the shift (head sizes); the point shown at p came from p - field(p). Each is
        linear in the pixel's place and depth (h = p - the face's centre, o = the face's centre - pivot):
        dx = hx (cos r - 1 + cos y - 1) + hy (sin y sin p - sin r) + hz sin y cos p + (cos r - 1) ox - sin r oy + sx size,
        dy = hx sin r + hy (cos r - 1 + cos p - 1) - hz sin p + sin r ox + (cos r - 1) oy + sy size."""
        import cv2

        (x0, y0, x1, y1), _, _, _, parts, (ox, oy) = self._head
        c, s = np.cos(np.radians(roll)), np.sin(np.radians(roll))
        cy_, sy_ = np.cos(np.radians(yaw)), np.sin(np.radians(yaw))
        cp, sp = np.cos(np.radians(pitch)), np.sin(np.radians(pitch))
        size = self.head_size
        kx = ((c - 1) + (cy_ - 1), sy_ * sp - s, sy_ * cp, (c - 1) * ox - s * oy + sx * size)
        ky = (s, (c - 1) + (cp - 1), -sp, s * ox + (c - 1) * oy + sy * size)
        h, w = y1 - y0, x1 - x0
        out = []
        for k in (kx, ky):
            coarse = sum(np.float32(v) * part for v, part in zip(k, parts))
            out.append(cv2.resize(coarse, (2 * coarse.shape[1], 2 * coarse.shape[0]), interpolation=cv2.INTER_LINEAR)[:h, :w])
        return out[0], out[1]
