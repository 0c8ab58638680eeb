"""The clip planner: variable-length clips and the frame <-> clip index maps.

LLIA cuts time-to-first-frame by making the first clip very short (1-4 frames) and growing
clip lengths afterwards up to the trained maximum. Clips may be cut at every state switch and
(``restart_on_switch``) start short again, so a new state shows up fast where it arrives while
generating; or run across switches (``cut_at_switches=False``: each frame's state label is a
condition of its own).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ClipPlan:
    """Frames [start, start + length) generated together; ``state``: its first frame's (every frame's
    when the plan is cut at switches)."""

    index: int
    start: int
    length: int
    state: int

    @property
    def stop(self) -> int:
        return self.start + self.length


def plan_clips(num_frames: int, states: torch.Tensor | None = None, *, first_clip: int = 2,
               max_clip: int = 16, growth: float = 2.0, restart_on_switch: bool = True,
               cut_at_switches: bool = True) -> list[ClipPlan]:
    """Split ``num_frames`` into clips: first_clip, first_clip*growth, ... capped at max_clip.

    Args:
        states: (num_frames,) state per frame.
        restart_on_switch: start short again after a switch (lower switch latency).
        cut_at_switches: end a clip where the state changes (else clips run across switches and
            ``restart_on_switch`` has nothing to restart at).
    """
    if num_frames < 1:
        raise ValueError("nothing to plan: num_frames must be >= 1")
    if not 1 <= first_clip <= max_clip:
        raise ValueError(f"first clip length must be between 1 and {max_clip} frames")
    if growth < 1.0:
        raise ValueError("clip growth must be >= 1")
    if states is None:
        states = torch.zeros(num_frames, dtype=torch.long)
    states = torch.as_tensor(states).reshape(-1).long()
    if states.numel() != num_frames:
        raise ValueError(f"states has {states.numel()} entries for {num_frames} frames")
    change = torch.nonzero(states[1:] != states[:-1]).reshape(-1) + 1
    bounds = [0, *(change.tolist() if cut_at_switches else []), num_frames]
    clips: list[ClipPlan] = []
    length = float(first_clip)
    for seg_start, seg_stop in zip(bounds[:-1], bounds[1:]):
        if restart_on_switch:
            length = float(first_clip)
        pos = seg_start
        while pos < seg_stop:
            n = min(int(round(length)), max_clip, seg_stop - pos)
            clips.append(ClipPlan(len(clips), pos, n, int(states[pos])))
            pos += n
            length = min(length * growth, float(max_clip))
    return clips


def clip_noise_seed(seed: int, clip: ClipPlan) -> int:
    """Seed of a clip's noise: depends on the run seed and the clip's place, not on run history."""
    return (int(seed) * 1_000_003 + clip.start * 7919 + clip.length) % (2**63 - 1)
