"""Generation: exact frame count, determinism, stream == generate, motion frames carry over, guidance."""

import math

import numpy as np
import pytest
import torch

from llia_core.audio import encode_audio
from llia_core.errors import LLIAError
from llia_core.pipeline import LLIAPipeline, SamplerConfig
from llia_core.portrait import prepare_portrait
from llia_core.states import parse_timeline


@pytest.fixture(scope="module")
def pipe(tiny_model):
    return LLIAPipeline(tiny_model)


def _audio(seconds, fps=25.0, cfg=None):
    rng = np.random.default_rng(0)
    wave = (rng.normal(0, 0.1, int(16000 * seconds)) * (np.arange(int(16000 * seconds)) % 8000 < 5000)).astype(np.float32)
    a = cfg.audio
    return encode_audio((wave, 16000), fps, n_mels=a.n_mels, context=a.context, mel_per_token=a.mel_per_token,
                        token_seconds=a.token_seconds)


@pytest.fixture(scope="module")
def portrait():
    rng = np.random.default_rng(1)
    return prepare_portrait(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8), 32, mode="whole")


@pytest.mark.parametrize("seconds,fps", [(0.5, 25.0), (1.01, 25.0), (0.7, 30.0), (0.45, 12.0)])
def test_frame_count_is_ceil_of_duration(pipe, portrait, seconds, fps):
    audio = _audio(seconds, fps, pipe.config)
    out = pipe.generate(portrait, audio, sampler=SamplerConfig(steps=1))
    assert out.frames.shape == (math.ceil(seconds * fps - 1e-6), 32, 32, 3)
    assert out.frames.min() >= 0 and out.frames.max() <= 1
    assert out.audio.shape[0] == round(out.frames.shape[0] / fps * 16000)


def test_stream_equals_generate_and_is_deterministic(pipe, portrait):
    audio = _audio(1.2, 25, pipe.config)
    cfg = SamplerConfig(steps=2, seed=7, first_clip=1)
    full = pipe.generate(portrait, audio, sampler=cfg).frames
    streamed = torch.cat([c.frames for c in pipe.stream(portrait, audio, sampler=cfg)])
    again = pipe.generate(portrait, audio, sampler=cfg).frames
    other_seed = pipe.generate(portrait, audio, sampler=SamplerConfig(steps=2, seed=8, first_clip=1)).frames
    assert torch.equal(full, streamed) and torch.equal(full, again)
    assert not torch.equal(full, other_seed)


def test_clips_are_variable_and_first_clip_is_short(pipe, portrait):
    audio = _audio(2.0, 25, pipe.config)
    states = parse_timeline("0-0.9:speaking,0.9-end:listening", audio.num_frames, 25)
    sw = int(torch.nonzero(states[1:] != states[:-1])[0]) + 1  # frame 22/23: inside a clip of the plan
    jobs = []
    original = pipe.new_job

    def spy(clip, audio, states, motion, sampler):
        jobs.append(original(clip, audio, states, motion, sampler))
        return jobs[-1]

    pipe.new_job = spy
    try:
        clips = [c.clip for c in pipe.stream(portrait, audio, states, SamplerConfig(steps=1, first_clip=1))]
    finally:
        del pipe.new_job
    lengths = [c.length for c in clips]
    assert lengths[0] == 1 and max(lengths) == pipe.config.max_clip_frames
    assert sum(lengths) == 50
    # offline the timeline is known: clips keep growing across the switch (short ones only cost
    # throughput), and each frame inside carries its own state
    across = [i for i, c in enumerate(clips) if c.start < sw < c.stop]
    assert len(across) == 1 and clips[across[0]].length == pipe.config.max_clip_frames
    job = jobs[across[0]]
    new = job.states[0, -job.clip.length:]
    assert torch.equal(new, states[job.clip.start:job.clip.stop].to(new.device))
    assert new.unique().numel() == 2
    live_like = pipe.plan(audio.num_frames, states, SamplerConfig(first_clip=1, restart_on_switch=True))
    assert all(c.stop <= sw or c.start >= sw for c in live_like)  # cut at the switch
    assert [c for c in live_like if c.start == sw][0].length == 1  # and short again after it


@pytest.mark.parametrize("count", [1, 2, 5])
def test_motion_frames_are_the_previous_clips_last_latents(pipe, portrait, monkeypatch, count):
    assert pipe.config.motion_frames == 2  # 5 asks for more than the model was trained with: capped
    motions = []
    original = pipe.new_job

    def spy(clip, audio, states, motion, sampler):
        motions.append(motion.clone())
        return original(clip, audio, states, motion, sampler)

    monkeypatch.setattr(pipe, "new_job", spy)
    sampler = SamplerConfig(steps=1, first_clip=1, motion_frames=count)
    outs = list(pipe.stream(portrait, _audio(1.0, 25, pipe.config), sampler=sampler))
    assert motions[0].shape[2] == 0  # the first clip has no past
    history = outs[0].latents
    assert max(m.shape[2] for m in motions) == min(count, 2)
    for motion, out in zip(motions[1:], outs[1:]):
        m = min(count, pipe.config.motion_frames, history.shape[2])
        assert motion.shape[2] == m
        assert torch.equal(motion, history[:, :, history.shape[2] - m:])
        history = torch.cat([history, out.latents], dim=2)


def test_early_motion_handover_changes_only_what_follows_the_first_clip(pipe, portrait):
    audio = _audio(1.0, 25, pipe.config)
    final = pipe.generate(portrait, audio, sampler=SamplerConfig(steps=2, first_clip=2))
    early = pipe.generate(portrait, audio, sampler=SamplerConfig(steps=2, first_clip=2, motion_step=1))
    n0 = final.clips[0].length
    assert torch.equal(final.frames[:n0], early.frames[:n0])  # the first clip has no motion frames
    assert not torch.equal(final.frames[n0:], early.frames[n0:])
    with pytest.raises(LLIAError, match="motion_step"):
        pipe.generate(portrait, audio, sampler=SamplerConfig(steps=2, motion_step=3))
    with pytest.raises(LLIAError, match="motion_step"):
        pipe.generate(portrait, audio, sampler=SamplerConfig(sampler="ddim", steps=4, motion_step=2))


@pytest.mark.parametrize("sampler,steps,g,rg", [("consistency", 1, 1.0, 1.0), ("consistency", 4, 2.0, 1.0),
                                                 ("ddim", 5, 1.5, 1.0), ("euler", 3, 1.5, 1.5)])
def test_samplers_and_guidance_run(pipe, portrait, sampler, steps, g, rg):
    audio = _audio(0.3, 25, pipe.config)
    calls = []
    out = pipe.generate(portrait, audio, sampler=SamplerConfig(sampler=sampler, steps=steps, guidance_scale=g,
                                                              reference_guidance=rg),
                        step_callback=lambda i, n: calls.append((i, n)))
    assert torch.isfinite(out.frames).all()
    assert calls[-1] == (steps, steps) and len(calls) == steps * len(out.clips)


def test_bad_sampler_settings_are_clear(pipe, portrait):
    audio = _audio(0.3, 25, pipe.config)
    for cfg, words in [(SamplerConfig(steps=9), "1 to 8 steps"), (SamplerConfig(sampler="plms"), "unknown sampler"),
                       (SamplerConfig(first_clip=50), "clip lengths"), (SamplerConfig(motion_frames=-1), "motion_frames")]:
        with pytest.raises(LLIAError, match=words):
            pipe.generate(portrait, audio, sampler=cfg)
    with pytest.raises(LLIAError, match="frames but the audio"):
        pipe.generate(portrait, audio, torch.zeros(3, dtype=torch.long))
    wrong = prepare_portrait(np.zeros((64, 64, 3), np.uint8), 64, mode="whole")
    with pytest.raises(LLIAError, match="prepare it with resolution=32"):
        pipe.generate(wrong, audio)


def test_reference_is_cached_and_model_not_mutated(pipe, portrait):
    before = {k: v.clone() for k, v in pipe.model.state_dict().items()}
    r1 = pipe.prepare_reference(portrait)
    r2 = pipe.prepare_reference(portrait)
    assert r1 is r2
    pipe.generate(portrait, _audio(0.4, 25, pipe.config))
    after = pipe.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_pipelined_stages_give_the_sequential_frames(pipe, portrait):
    from llia_core.pipeline import PipelinedLLIA, pipelined_sampler

    audio = _audio(1.3, 25, pipe.config)
    sampler = pipelined_sampler(SamplerConfig(steps=2, first_clip=1, seed=3))
    assert sampler.motion_step == 1
    sequential = pipe.generate(portrait, audio, sampler=sampler)
    piped = PipelinedLLIA(pipe, threads_per_stage=1).generate(portrait, audio, sampler=sampler)
    assert piped.frames.shape == sequential.frames.shape == (math.ceil(1.3 * 25), 32, 32, 3)
    assert torch.allclose(piped.frames, sequential.frames, atol=1e-5)
    assert [c.start for c in piped.clips] == [c.start for c in sequential.clips]


def test_pipelined_stream_reraises_stage_errors_and_stops(pipe, portrait):
    from llia_core.pipeline import PipelinedLLIA

    calls = []

    def cancel(step, steps):
        calls.append(step)
        if len(calls) == 3:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        PipelinedLLIA(pipe).generate(portrait, _audio(2.0, 25, pipe.config), sampler=SamplerConfig(steps=2),
                                     step_callback=cancel)
    with pytest.raises(LLIAError, match="consistency"):
        PipelinedLLIA(pipe).generate(portrait, _audio(0.5, 25, pipe.config), sampler=SamplerConfig(sampler="ddim"))
