"""Property-based tests (hypothesis): the frame-count rule and the error contract hold for any input."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from llia_core.audio import encode_audio
from llia_core.errors import LLIAError, TimelineError
from llia_core.pipeline import LLIAPipeline, SamplerConfig
from llia_core.states import STATE_NAMES, parse_timeline

RATES = st.sampled_from([8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000])
FPS = st.sampled_from([12.0, 15.0, 24.0, 25.0, 29.97, 30.0, 50.0, 60.0])


@settings(max_examples=60, deadline=None)
@given(sr=RATES, seconds=st.floats(0.0, 3.0), fps=FPS, kind=st.sampled_from(["noise", "silence", "tone", "clipped"]),
       channels=st.integers(1, 3))
def test_audio_frame_count_rule_and_error_contract(sr, seconds, fps, kind, channels):
    n = int(round(seconds * sr))
    rng = np.random.default_rng(n)
    t = np.arange(n) / sr
    wave = {"noise": rng.normal(0, 0.2, n), "silence": np.zeros(n), "tone": 0.5 * np.sin(2 * np.pi * 220 * t),
            "clipped": np.clip(rng.normal(0, 3, n), -1, 1)}[kind].astype(np.float32)
    if channels > 1:
        wave = np.stack([wave] * channels)
    try:
        feats = encode_audio((wave, sr), fps)
    except LLIAError as exc:
        assert n / sr < 1 / fps, f"valid audio rejected: {exc}"  # only too-short audio may be refused
        return
    duration = n / sr
    assert feats.num_frames == math.ceil(duration * fps - 1e-6)
    assert feats.windows.shape[0] == feats.speech.shape[0] == feats.num_frames
    assert torch.isfinite(feats.windows).all()
    video_samples = feats.waveform_for_video().shape[0]
    assert abs(video_samples / 16000 - feats.num_frames / fps) <= 1 / 16000 + 1e-9
    if kind == "silence":
        assert not feats.speech.any()


# "talking" is a documented alias of speaking; "shouting" is no state at all
SEGMENT = st.tuples(st.floats(0, 4), st.floats(0, 4), st.sampled_from(STATE_NAMES + ("talking", "shouting")))
ALIAS = {"talking": "speaking"}


@settings(max_examples=150, deadline=None)
@given(segments=st.lists(SEGMENT, min_size=1, max_size=4), frames=st.integers(1, 100), fps=FPS,
       end_word=st.booleans())
@example(segments=[(0.0, 0.0, "talking")], frames=1, fps=12.0, end_word=True)  # CI's case: an alias over the whole clip
@example(segments=[(0.0, 1.875, "speaking"), (1.9296875, 0.0, "speaking")], frames=24, fps=12.0, end_word=True)  # a gap of
# exactly the tolerance (1.93 - 1.88 is 0.0500000000000000444 in floats)
def test_timelines_either_cover_every_frame_or_say_why(segments, frames, fps, end_word):
    parts = [f"{a:.2f}-{b:.2f}:{s}" for a, b, s in segments]
    if end_word:
        parts[-1] = parts[-1].split("-")[0] + "-end:" + parts[-1].split(":")[1]
    text = ",".join(parts)
    # an independent reading of the same text: which timelines are valid, and each frame's state
    duration, tol = frames / fps, 0.05 + 1e-9  # at exactly the tolerance either float rounding is right
    segs = []
    for part in parts:
        times, state = part.split(":")
        a, b = times.split("-")
        segs.append((float(a), duration if b == "end" else float(b), ALIAS.get(state, state)))
    segs.sort(key=lambda g: g[0])
    slack = max(tol, 1.0 / fps + 1e-9)
    valid = (all(state in STATE_NAMES for _, _, state in segs) and all(b > a for a, b, _ in segs)
             and segs[0][0] <= tol and all(abs(s1 - e0) <= tol for (_, e0, _), (s1, _, _) in zip(segs, segs[1:]))
             and duration - slack <= segs[-1][1] <= duration + slack)
    try:
        labels = parse_timeline(text, frames, fps)
    except TimelineError as exc:
        assert str(exc) and "\n" not in str(exc)
        assert not valid, f"{text!r} ({frames} frames at {fps} fps) is a valid timeline but was refused: {exc}"
        return
    assert valid, f"{text!r} ({frames} frames at {fps} fps) should have been refused"
    assert labels.shape == (frames,) and labels.dtype == torch.long
    for i in range(frames):  # the segment that has started by frame i (the first covers frame 0)
        want = segs[0][2]
        for start, _, state in segs[1:]:
            if i >= max(0, math.floor(start * fps + 1e-6)):
                want = state
        assert STATE_NAMES[int(labels[i])] == want, (text, i)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seconds=st.floats(0.05, 1.2), fps=FPS, first=st.integers(1, 6), steps=st.integers(1, 3))
def test_generation_always_gives_ceil_duration_frames(tiny_model, seconds, fps, first, steps):
    from llia_core.portrait import prepare_portrait

    portrait = prepare_portrait(np.full((40, 40, 3), 100, np.uint8), 32, mode="whole")
    n = int(round(seconds * 16000))
    wave = np.random.default_rng(n).normal(0, 0.1, n).astype(np.float32)
    a = tiny_model.config.audio
    try:
        feats = encode_audio((wave, 16000), fps, n_mels=a.n_mels, context=a.context, mel_per_token=a.mel_per_token,
                             token_seconds=a.token_seconds)
    except LLIAError:
        assert seconds < 1 / fps
        return
    out = LLIAPipeline(tiny_model).generate(portrait, feats, sampler=SamplerConfig(steps=steps, first_clip=first))
    assert out.frames.shape[0] == math.ceil(n / 16000 * fps - 1e-6)
    assert abs(out.audio.shape[0] / 16000 - out.frames.shape[0] / fps) <= 1 / 16000 + 1e-9
