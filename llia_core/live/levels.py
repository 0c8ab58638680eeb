"""How much of the model the live engine runs, clip by clip: degrade before a frame is dropped.

A live clip must be ready by the time its first frame is due, and it cannot start before its audio is
in: ``lead`` seconds before that. Two kinds of clip:

- *denoised*: the diffusion model runs on the clip (the frames are the offline job's);
- *warped*: only the learned mouth model runs, and the portrait is moved by the mouth warp with
  the model's residual (what the denoiser changed on top of the warped reference) held from the last
  denoised frame. Measured on the bundled model and photo: the residual is 0.65 of 255 on average
  over the face (99th percentile 10.5 levels, around the lips); a 2-frame clip costs ~80 ms
  denoised and ~15 ms warped on 2 cores.

The levels run a denoised clip every ``denoise_every`` clips (0: never). :class:`LevelGovernor`
keeps the most denoising level whose measured clip times fit: every kind of clip it runs within the
lead, and their average within the clip's own duration (with a margin, so the page and the audio
keep some of the cores). It steps down at once when a clip was late or the times stop fitting, and up
only after ``RAISE_AFTER`` seconds of fitting with a wider margin, so it does not flap. An estimate
not refreshed for a while (a level that never denoises) drifts down to the fastest time seen, so the
engine tries the richer level again now and then (a failed try costs at most a clip's frames; with
``PROBE_DECAY`` of 3% a second, an estimate twice the budget comes back in about a minute).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..errors import LLIAError


@dataclass(frozen=True)
class LiveLevel:
    """``denoise_every``: a denoised clip every this many clips (1: all; 0: none, warped only)."""

    name: str
    denoise_every: int

    def denoises(self, clip: int) -> bool:
        """Whether clip ``clip`` (counted from when the level was chosen) is denoised: the last of each
        ``denoise_every``, so a step down to this level starts with a cheap clip that catches up."""
        return self.denoise_every > 0 and clip % self.denoise_every == self.denoise_every - 1


LEVELS = (LiveLevel("full", 1), LiveLevel("half", 2), LiveLevel("quarter", 4), LiveLevel("warp", 0))
LEVEL_NAMES = tuple(level.name for level in LEVELS)
# what a host offers its users (the ComfyUI Live View node): the levels each choice lets the engine use
LEVEL_PRESETS = {"adaptive": LEVEL_NAMES, "denoise every clip": ("full",), "warp only": ("warp",)}


def levels_named(names) -> tuple[LiveLevel, ...]:
    """The levels called ``names`` (names or levels, or one comma-separated string), richest first."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = [n.name if isinstance(n, LiveLevel) else n for n in names]
    unknown = sorted(set(names) - set(LEVEL_NAMES))
    if unknown or not names:
        raise LLIAError(f"unknown live level(s) {', '.join(unknown) or '(none given)'}; "
                         f"use some of {', '.join(LEVEL_NAMES)}")
    return tuple(level for level in LEVELS if level.name in names)


class LevelGovernor:
    """Picks each clip's kind (denoised or warped) from the measured times of both.

    Args:
        levels: the levels it may use, richest first (``levels_named``).
        clip_seconds: real time one clip covers (frames / fps).
        margin: share of a budget a level's estimated times may use to stay; ``raise_margin`` to be
            chosen again after stepping down.
    """

    RAISE_AFTER = 2.0  # seconds a richer level must have fitted before the engine goes back to it
    PROBE_DECAY = 0.03  # per second: how fast an estimate not refreshed drifts to the fastest time seen
    WINDOW = 16  # recent clips of each kind whose times make its estimate
    STALE = 10.0  # seconds after which a measurement no longer counts as recent

    def __init__(self, levels: tuple[LiveLevel, ...] = LEVELS, clip_seconds: float = 0.08,
                 margin: float = 0.9, raise_margin: float = 0.75):
        if not levels:
            raise ValueError("the live engine needs at least one level")
        self.levels, self.clip_seconds = tuple(levels), clip_seconds
        self.margin, self.raise_margin = margin, raise_margin
        self.index = 0  # into levels: the current one
        self.counter = 0  # clips since the level was chosen
        self._times = {True: deque(maxlen=self.WINDOW), False: deque(maxlen=self.WINDOW)}
        self._fastest = {True: None, False: None}
        self._refreshed = {True: 0.0, False: 0.0}  # media time of each kind's last measurement
        self._fits_since: float | None = None
        self.frames = {level.name: 0 for level in self.levels}  # frames made at each level
        self.changes = 0
        self.history: list[tuple[float, str]] = [(0.0, self.level.name)]  # (media time, level) at each change

    @property
    def level(self) -> LiveLevel:
        return self.levels[self.index]

    def denoise_next(self) -> bool:
        """Whether the next clip is denoised (the current level's pattern)."""
        return self.level.denoises(self.counter)

    def estimate(self, denoised: bool, now: float) -> float | None:
        """Seconds a clip of that kind is expected to take: the 80th percentile of those measured in the
        last ``STALE`` seconds; with none that recent, of the last ones, drifting down to the fastest seen
        since; None before any."""
        times = self._times[denoised]
        if not times:
            return None
        recent = [s for t, s in times if now - t <= self.STALE]
        if recent:
            return float(np.percentile(recent, 80))
        last = float(np.percentile([s for _, s in times], 80))
        idle = max(0.0, now - self._refreshed[denoised])
        fastest = self._fastest[denoised]
        return fastest + (last - fastest) * (1 - self.PROBE_DECAY) ** idle

    def fits(self, level: LiveLevel, lead: float, now: float, margin: float) -> bool:
        """Whether ``level``'s clips fit: each kind it runs within the lead, their mean within a clip's time."""
        denoised_share = 1 / level.denoise_every if level.denoise_every else 0.0
        mean = 0.0
        for denoised, share in ((True, denoised_share), (False, 1 - denoised_share)):
            if share == 0:
                continue
            t = self.estimate(denoised, now)
            if t is None:
                return denoised is False  # a warped clip never measured: assume it fits (it is the floor)
            if t > margin * lead:
                return False
            mean += share * t
        return mean <= margin * self.clip_seconds

    def record(self, denoised: bool, seconds: float, late: bool, lead: float, now: float, frames: int) -> None:
        """One clip done: ``seconds`` it took, whether its first frame was ready after it was due;
        ``now``: media time. Chooses the level of the next clip."""
        self._times[denoised].append((now, seconds))
        fastest = self._fastest[denoised]
        self._fastest[denoised] = seconds if fastest is None else min(fastest, seconds)
        self._refreshed[denoised] = now
        self.frames[self.level.name] += frames
        self.counter += 1
        old = self.index
        if late or not self.fits(self.level, lead, now, self.margin):
            self._fits_since = None
            while self.index < len(self.levels) - 1 and not self.fits(self.levels[self.index], lead, now, self.margin):
                self.index += 1
            if late and self.index == old and self.index < len(self.levels) - 1:
                self.index += 1  # late although the estimates fit: the machine slowed; step down anyway
        elif self.index > 0 and self.fits(self.levels[self.index - 1], lead, now, self.raise_margin):
            if self._fits_since is None:
                self._fits_since = now
            elif now - self._fits_since >= self.RAISE_AFTER:
                self.index -= 1
                self._fits_since = None
        else:
            self._fits_since = None
        if self.index != old:
            self.changes += 1
            self.counter = 0
            if len(self.history) < 10000:
                self.history.append((now, self.level.name))

    def summary(self) -> dict:
        total = sum(self.frames.values()) or 1
        return {"level": self.level.name, "level_changes": self.changes,
                "level_share": {name: round(n / total, 3) for name, n in self.frames.items()}}
