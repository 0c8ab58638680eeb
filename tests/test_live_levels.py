"""Live mode degrades instead of dropping frames: the level governor, and the engine's warped clips."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from llia_core.errors import LLIAError
from llia_core.live.levels import LEVELS, LevelGovernor, levels_named
from llia_core.states import SPEAKING


def feed(governor, denoised_s, warped_s, lead, t0, seconds, clip=0.04, late=lambda d: False):
    """Run the governor's own choices for ``seconds`` of media time from ``t0``; returns the kinds it ran."""
    kinds, now = [], t0
    while now < t0 + seconds:
        d = governor.denoise_next()
        governor.record(d, denoised_s if d else warped_s, late(d), lead, now, 1)
        kinds.append(d)
        now += clip
    return kinds, now


def test_levels_by_name():
    assert [lv.name for lv in levels_named("warp, full")] == ["full", "warp"]  # richest first
    assert levels_named(LEVELS) == LEVELS
    with pytest.raises(LLIAError, match="unknown live level.*fast.*use some of full, half"):
        levels_named(["full", "fast"])
    # the patterns: half denoises every 2nd clip, quarter every 4th, starting with a cheap clip
    assert [levels_named("half")[0].denoises(i) for i in range(4)] == [False, True, False, True]
    assert [levels_named("quarter")[0].denoises(i) for i in range(4)] == [False, False, False, True]
    assert not any(levels_named("warp")[0].denoises(i) for i in range(4))


def test_a_denoiser_slower_than_the_lead_steps_down_at_once_and_stays_down():
    g = LevelGovernor(LEVELS, clip_seconds=0.04)
    g.record(True, 0.080, False, 0.03, 0.0, 0)  # warm-up measures: a denoised clip takes 80 ms
    g.record(False, 0.012, False, 0.03, 0.0, 0)
    assert g.level.name == "warp"  # no level with a denoised clip fits a 30 ms lead
    kinds, _ = feed(g, 0.080, 0.012, 0.03, 0.0, 60.0)
    assert not any(kinds) and g.level.name == "warp"  # and it never tries: the fastest denoised clip never fit


def test_the_level_follows_the_time_there_is():
    g = LevelGovernor(LEVELS, clip_seconds=0.08)
    # 50 ms denoised clips, 10 ms warped, 120 ms lead: a denoised clip fits the lead, but not all of them
    # in 80 ms clips with the 10% margin (50 < 72) ... they do; at 75 ms they do not, every 2nd does
    kinds, now = feed(g, 0.050, 0.010, 0.12, 0.0, 5.0, clip=0.08)
    assert all(kinds) and g.level.name == "full"
    kinds, now = feed(g, 0.075, 0.010, 0.12, now, 5.0, clip=0.08)
    assert g.level.name == "half" and 0.4 <= np.mean(kinds[-20:]) <= 0.6
    # a late clip steps down although the estimates fit (the machine slowed)
    g.record(True, 0.075, True, 0.12, now, 2)
    assert g.level.name == "quarter"
    # the machine is fast again: it goes back up, but only after RAISE_AFTER seconds of fitting
    t_fast = now
    kinds, now = feed(g, 0.030, 0.010, 0.12, now, 0.5 * LevelGovernor.RAISE_AFTER, clip=0.08)
    assert g.level.name == "quarter"
    kinds, now = feed(g, 0.030, 0.010, 0.12, now, 4 * LevelGovernor.RAISE_AFTER, clip=0.08)
    assert g.level.name == "full" and g.changes >= 3
    names = [name for _, name in g.history]
    assert names[:4] == ["full", "half", "quarter", "half"] and names[-1] == "full"
    assert all(t >= t_fast for t, name in g.history[4:])
    share = g.summary()["level_share"]
    assert abs(sum(share.values()) - 1) < 0.01 and share["full"] > 0.3


def test_an_estimate_not_refreshed_drifts_down_so_the_engine_tries_again():
    g = LevelGovernor(levels_named("full,warp"), clip_seconds=0.08)
    g.record(True, 0.030, False, 0.05, 0.0, 2)  # once fast
    g.record(True, 0.090, True, 0.05, 0.1, 2)  # then slow: down to warp
    assert g.level.name == "warp"
    kinds, now = feed(g, 0.030, 0.010, 0.05, 0.2, 30.0, clip=0.08)
    assert not any(kinds)  # the 80th percentile of (30, 90) ms is too slow for a 50 ms lead for a while
    kinds, now = feed(g, 0.030, 0.010, 0.05, now, 60.0, clip=0.08)
    assert any(kinds) and g.level.name == "full"  # it drifted to the fastest, tried, and the clips fit
    assert 50 < g.history[-1][0] < 80  # about a minute after it last measured a denoised clip


def warp_model():
    from conftest import tiny_config
    from llia_core.config import MouthModelConfig
    from llia_core.models import LLIAModel

    torch.manual_seed(0)
    cfg = tiny_config(reference_warp=True, residual_region="mouth", mouth_model=MouthModelConfig(width=16, hidden=16))
    model = LLIAModel(cfg).eval().requires_grad_(False)
    torch.nn.init.normal_(model.mouth_model.head[-1].weight, std=0.5)
    torch.nn.init.constant_(model.mouth_model.head[-1].bias, 0.3)
    return model


def voice(seconds: float, sr: int = 16000, f0: float = 140.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12))
    return (0.25 * wave / np.abs(wave).max()).astype(np.float32)


@pytest.fixture()
def portrait():
    from llia_core.portrait import prepare_portrait

    return prepare_portrait(np.random.default_rng(5).integers(0, 255, (40, 40, 3), dtype=np.uint8), 32, mode="whole")


def test_a_warped_clip_holds_the_residual_of_the_last_denoised_frame(portrait):
    """Warped frames are the portrait moved to the mouth model's shapes plus what the denoiser last added:
    a warped frame with the denoised frame's own mouth shape is that frame again."""
    from llia_core.live import LiveAvatar
    from llia_core.pipeline import LLIAPipeline

    model = warp_model()
    for p in model.denoiser.parameters():  # its output layers start at zero: make it change the picture
        p.add_(torch.randn_like(p) * 0.05)
    pipe = LLIAPipeline(model)
    avatar = LiveAvatar(pipe, portrait, steps=1, clip_frames=2, frozen=False, levels="half")
    decoded = []
    real_decode = pipe.decode_clip
    pipe.decode_clip = lambda latents: decoded.append(real_decode(latents)) or decoded[-1]
    wave = np.concatenate([np.zeros(4000, np.float32), voice(1.0)])
    with avatar._lock:
        avatar._track, avatar._track_offset = wave, 0
    avatar.now = lambda: (avatar.next_frame + 0.5) / avatar.fps - avatar.lead
    shapes = []
    real_mouth = pipe.clip_mouth
    pipe.clip_mouth = lambda job: shapes.append(real_mouth(job)) or shapes[-1]
    frames = avatar.step() + avatar.step()  # half: a warped clip, then a denoised one
    assert len(decoded) == 1 and len(shapes) == 2
    crop = decoded[0][-1].numpy() * 255
    again = avatar._warped_crops(shapes[1][-1:])[0].numpy() * 255
    assert np.abs(again - crop).max() < 1e-3
    residual = crop - avatar._warper.reference_for(shapes[1][-1].numpy())
    assert np.abs(residual).mean() > 1  # (the tiny model does change the picture: the check is not empty)
    frames += avatar.step()  # warped again: every frame is there, in order
    assert [f.index for f in frames] == list(range(6)) and len(decoded) == 1


def test_a_slow_denoiser_degrades_the_level_instead_of_dropping_frames(portrait):
    from llia_core.live import LiveAvatar
    from llia_core.pipeline import LLIAPipeline

    pipe = LLIAPipeline(warp_model())
    real_advance = pipe.advance

    def slow(*args, **kwargs):  # a machine on which the diffusion model takes 2.5 leads per clip
        time.sleep(1.0)
        return real_advance(*args, **kwargs)

    pipe.advance = slow
    # (a lead long enough that the cheap clips are on time on a loaded test machine too)
    avatar = LiveAvatar(pipe, portrait, steps=1, clip_frames=1, lead=0.4, frozen=False)
    avatar.push_avatar_audio(voice(3.0))
    frames = []
    with torch.no_grad():
        while not frames or frames[-1].pts < 2.0:
            wait = (avatar.next_frame + 0.5) / avatar.fps - avatar.lead - avatar.now()
            if wait > 0:
                time.sleep(wait)
            frames += avatar.step()
    summary = avatar.governor.summary()
    assert summary["level"] == "warp"  # its warm-up measured the slow clips: it started at warp and stayed
    assert avatar.stats.dropped == 0 and [f.index for f in frames] == list(range(frames[0].index, frames[-1].index + 1))
    speaking = [f for f in frames if f.state == SPEAKING]
    assert len(speaking) >= 15  # the voice was heard; the mouth moved with it
    assert len({f.image.tobytes() for f in speaking}) > 10


def test_the_audio_delay_covers_all_the_audio_a_clip_reads(portrait):
    """Voice pushed in 1 ms pieces at real-time pace on the engine's clock, clips made at the latest
    moment the schedule allows (``lead`` before each frame): every frame's mouth shape equals the one the
    offline job computes from the whole track, so no clip ever read audio that had not arrived yet."""
    from llia_core.audio import encode_audio
    from llia_core.live import LiveAvatar
    from llia_core.pipeline import LLIAPipeline

    model = warp_model()
    pipe = LLIAPipeline(model)
    seen = []
    real = pipe.new_job

    def spy(clip, audio, states, motion, sampler):
        job = real(clip, audio, states, motion, sampler)
        seen.append((clip.index, job.mouth[0, -clip.length:].clone(), states[-clip.length:].clone()))
        return job

    avatar = LiveAvatar(pipe, portrait, clip_frames=1, lead=0.03, frozen=False, levels="warp")
    assert avatar.audio_delay <= 0.03 + 0.1325 + 0.002 + 1e-6  # 120 ms ahead + half a 25 ms mel window
    pipe.new_job = spy
    clock = [0.0]
    avatar.now = lambda: clock[0]
    avatar.t0 = time.perf_counter()
    wave = np.concatenate([voice(0.7, f0=120), np.zeros(1600, np.float32), voice(0.5, f0=180)])
    piece = 16  # 1 ms pieces, each sent once all of it has been spoken (as a real-time source would)
    pushed, tick = 0, 0
    while len(seen) < 40:  # one millisecond at a time
        tick += 1
        clock[0] = tick / 1000
        if pushed < wave.size:  # the piece just spoken
            avatar.push_avatar_audio(wave[pushed:pushed + piece])
            pushed += piece
        if tick >= round(1000 * ((avatar.next_frame + 0.5) / avatar.fps - avatar.lead)):
            avatar.step()  # the clip starts as late as the schedule allows
    with avatar._lock:
        track = np.concatenate([np.zeros(avatar._track_offset, np.float32), avatar._track])
    first = avatar.stats.chunks[0]
    start = int(round(first.start * 16000))
    assert np.abs(track[start:start + wave.size] - wave).max() == 0  # the voice, in one piece
    assert abs(first.start - (0.001 + avatar.audio_delay)) < 1e-6  # sent at 1 ms, played audio_delay later
    index = torch.tensor([i for i, _, _ in seen])
    live = torch.cat([m for _, m, _ in seen])
    states = torch.cat([s for _, _, s in seen])
    whole = np.concatenate([track, np.zeros(16000, np.float32)])  # silence after the voice, as live reads it
    offline = model.mouth_shapes(encode_audio((whole, 16000), 25.0), index, states)
    assert live[:, 0].std() > 0.01  # the mouth moves
    assert torch.allclose(live, offline, atol=1e-4)
