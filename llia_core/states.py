"""Speaking / listening / idle: per-frame state timelines.

A timeline comes from an explicit string (``"0-3.2:speaking,3.2-6:listening,6-end:idle"``),
a single fixed state, or speech activity: the avatar speaks while its own voice is active, listens
while the other party's voice is active, idles otherwise.
"""

from __future__ import annotations

import math
import re

import torch

from .errors import TimelineError

SPEAKING, LISTENING, IDLE = 0, 1, 2
STATE_NAMES = ("speaking", "listening", "idle")
_ALIASES = {"speak": SPEAKING, "talk": SPEAKING, "talking": SPEAKING, "listen": LISTENING, "silent": IDLE}


def state_index(name: str) -> int:
    key = name.strip().lower()
    if key in STATE_NAMES:
        return STATE_NAMES.index(key)
    if key in _ALIASES:
        return _ALIASES[key]
    raise TimelineError(f"unknown state '{name}'; use one of: {', '.join(STATE_NAMES)}")


def fixed_states(num_frames: int, state: str | int) -> torch.Tensor:
    idx = state if isinstance(state, int) else state_index(state)
    return torch.full((num_frames,), idx, dtype=torch.long)


_SEGMENT = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*-\s*([0-9]*\.?[0-9]+|end)\s*:\s*([a-zA-Z]+)\s*$")


def parse_timeline(text: str, num_frames: int, fps: float, *, tolerance: float = 0.05) -> torch.Tensor:
    """``"0-3.2:speaking,3.2-end:idle"`` -> (num_frames,) long labels.

    Segments must start at 0, follow each other without gaps or overlaps (within ``tolerance``
    seconds) and not run past the audio; the last one may end at ``end``.
    """
    duration = num_frames / fps
    parts = [p for p in re.split(r"[,;\n]", text or "") if p.strip()]
    if not parts:
        raise TimelineError("the state timeline is empty; write e.g. '0-3.5:speaking,3.5-end:listening'")
    segments = []
    for part in parts:
        m = _SEGMENT.match(part)
        if not m:
            raise TimelineError(
                f"cannot read timeline segment '{part.strip()}'; write START-END:STATE with times in "
                "seconds, e.g. '0-3.5:speaking'"
            )
        start = float(m.group(1))
        end = duration if m.group(2) == "end" else float(m.group(2))
        if end <= start:
            raise TimelineError(f"timeline segment '{part.strip()}' ends before it starts; swap the times")
        segments.append((start, end, state_index(m.group(3)), part.strip()))
    segments.sort(key=lambda s: s[0])
    if segments[0][0] > tolerance:
        raise TimelineError(f"the timeline starts at {segments[0][0]:g} s; the first segment must start at 0")
    for (s0, e0, _, p0), (s1, _, _, p1) in zip(segments, segments[1:]):
        if s1 < e0 - tolerance:
            raise TimelineError(f"timeline segments '{p0}' and '{p1}' overlap; make each start where the previous ends")
        if s1 > e0 + tolerance:
            raise TimelineError(f"the timeline has a gap between {e0:g} s and {s1:g} s; cover it with a segment")
    last_end = segments[-1][1]
    if last_end > duration + max(tolerance, 1.0 / fps):
        raise TimelineError(
            f"the timeline runs to {last_end:g} s but the audio lasts {duration:.2f} s; end it at "
            "the audio's length or use 'end'"
        )
    if last_end < duration - max(tolerance, 1.0 / fps):
        raise TimelineError(
            f"the timeline ends at {last_end:g} s but the audio lasts {duration:.2f} s; extend the last "
            "segment to 'end'"
        )
    # the first segment covers frame 0 even if it starts within the tolerance after 0
    labels = torch.full((num_frames,), segments[0][2], dtype=torch.long)
    for start, end, idx, _ in segments[1:]:
        a = max(0, int(math.floor(start * fps + 1e-6)))
        labels[a:] = idx  # later segments overwrite from their start on
    return labels


def states_from_activity(own_speech: torch.Tensor, other_speech: torch.Tensor | None = None) -> torch.Tensor:
    """Per-frame labels from voice activity of the avatar's own voice and the other party's.

    own_speech, other_speech: (F,) bool. Own speech wins when both talk at once.
    """
    own = torch.as_tensor(own_speech).bool().reshape(-1)
    labels = torch.full(own.shape, IDLE, dtype=torch.long)
    if other_speech is not None:
        other = torch.as_tensor(other_speech).bool().reshape(-1)
        if other.numel() != own.numel():
            raise TimelineError("the two voice tracks have different lengths; give both for the same time span")
        labels[other] = LISTENING
    labels[own] = SPEAKING
    return labels


def format_timeline(labels: torch.Tensor, fps: float) -> str:
    """Inverse of :func:`parse_timeline` (for reports): '0-1.2:speaking,1.2-end:idle'."""
    labels = torch.as_tensor(labels).reshape(-1)
    out, start = [], 0
    for i in range(1, labels.numel() + 1):
        if i == labels.numel() or labels[i] != labels[start]:
            end = "end" if i == labels.numel() else f"{i / fps:g}"
            out.append(f"{start / fps:g}-{end}:{STATE_NAMES[int(labels[start])]}")
            start = i
    return ",".join(out)
