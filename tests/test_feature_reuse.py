"""Later consistency steps reuse the first step's deep UNet features (models/feature_reuse.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from llia_core.audio import encode_audio, window_settings
from llia_core.models.feature_reuse import DeepFeatures, motion_unet_pass
from llia_core.pipeline import LLIAPipeline, SamplerConfig
from llia_core.portrait import prepare_portrait

ASSETS = Path(__file__).resolve().parents[1] / "llia_core" / "assets"


def _unet_inputs(model, frames=4, seed=0):
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    c_in = model.denoiser.unet.config.in_channels
    x = torch.randn(1, c_in, frames, cfg.latent_size, cfg.latent_size, generator=g)
    tokens = torch.randn(frames, cfg.audio.num_tokens, cfg.audio.dim, generator=g)
    return x, tokens


@pytest.fixture(scope="module")
def portrait():
    return prepare_portrait(np.random.default_rng(5).integers(0, 255, (40, 40, 3), dtype=np.uint8), 32, mode="whole")


@pytest.fixture(scope="module")
def short_audio(tiny_model):
    t = np.arange(int(16000 * 0.6)) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 200 * t) * (1 + np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    return encode_audio((wave, 16000), 25, **window_settings(tiny_model.config.audio))


@pytest.fixture
def count_calls():
    """count_calls(module) -> a list that grows by one per forward call (hooks removed after the test)."""
    handles = []

    def count(module) -> list:
        calls = []
        handles.append(module.register_forward_hook(lambda *_: calls.append(1)))
        return calls

    yield count
    for h in handles:
        h.remove()


def test_the_full_pass_is_diffusers_own_and_a_reuse_pass_skips_the_deep_levels(tiny_model, portrait, count_calls):
    unet = tiny_model.denoiser.unet
    ref = LLIAPipeline(tiny_model).prepare_reference(portrait)
    x, tokens = _unet_inputs(tiny_model)
    kwargs = {"reference_bank": ref.bank, "num_frames": x.shape[2]}
    t = torch.full((1,), 700)
    with torch.no_grad():
        want = unet(x, t, encoder_hidden_states=tokens, cross_attention_kwargs=kwargs).sample
        deep = DeepFeatures()
        got = motion_unet_pass(unet, x, t, tokens, kwargs, deep)
        assert torch.equal(got, want)  # the same modules in the same order
        top = unet.config.block_out_channels
        assert deep.features.shape == (x.shape[2], top[1], x.shape[3], x.shape[4])
        mid, deeper = count_calls(unet.mid_block), count_calls(unet.down_blocks[1])
        top_calls = count_calls(unet.up_blocks[-1])
        # same input and timestep: the top level recomputes exactly what the full pass had
        again = motion_unet_pass(unet, x, t, tokens, kwargs, deep)
        assert torch.allclose(again, want, atol=1e-6)
        assert not mid and not deeper and len(top_calls) == 1
        # the top level sees the new input and timestep
        later = motion_unet_pass(unet, x * 0.5, torch.full((1,), 300), tokens, kwargs, deep)
        assert (later - want).abs().max() > 1e-3


def test_two_step_clips_run_the_deep_levels_once_unless_told_otherwise(tiny_model, portrait, short_audio,
                                                                     count_calls):
    pipe = LLIAPipeline(tiny_model)
    calls = count_calls(tiny_model.denoiser.unet.mid_block)
    cfg = SamplerConfig(steps=2, seed=3, first_clip=2, clip_frames=4)
    clips = pipe.plan(short_audio.num_frames, pipe.resolve_states(short_audio, None), cfg)
    reused = pipe.generate(portrait, short_audio, sampler=cfg).frames
    assert len(calls) == len(clips)
    full = pipe.generate(portrait, short_audio, sampler=SamplerConfig(steps=2, seed=3, first_clip=2, clip_frames=4,
                                                                      reuse_features=False)).frames
    assert len(calls) == 3 * len(clips)
    assert reused.shape == full.shape and not torch.equal(reused, full)
    # one step has nothing to reuse: the same frames either way
    one = [pipe.generate(portrait, short_audio, sampler=SamplerConfig(steps=1, seed=3, reuse_features=r)).frames
           for r in (True, False)]
    assert torch.equal(*one)


def test_the_bundled_models_frames_barely_change_when_steps_reuse_features():
    """Measured on the bundled model and speech: 64 dB PSNR over 12.7 s (8-bit rounding is ~59 dB)."""
    from llia_core.checkpoints import load_model

    model = load_model("bundled")
    cfg = model.config
    pipe = LLIAPipeline(model)
    portrait = prepare_portrait(ASSETS / "portrait.png", cfg.resolution)
    audio = encode_audio(str(ASSETS / "speech.wav"), cfg.fps, duration=1.5, **window_settings(cfg.audio))
    frames = {r: pipe.generate(portrait, audio, sampler=SamplerConfig(steps=2, reuse_features=r)).frames
              for r in (True, False)}
    one_step = pipe.generate(portrait, audio, sampler=SamplerConfig(steps=1)).frames

    def psnr(a, b):
        return 10 * math.log10(1 / float(((a - b) ** 2).mean()))

    reuse = psnr(frames[True], frames[False])
    assert reuse >= 50, reuse
    assert reuse > psnr(one_step, frames[False]) + 6  # the reused step still does what a second step does
    assert np.isfinite(frames[True].numpy()).all() and frames[True].shape[0] == audio.num_frames


def test_the_command_line_and_the_node_pass_the_choice_on(tiny_model, tmp_path, monkeypatch):
    from llia_core.checkpoints import save_model
    from llia_core.cli import main
    from nodes.conditioning import LLIAConsistencyStep

    ckpt = save_model(tiny_model, tmp_path / "tiny.safetensors")
    seen = []
    real = LLIAPipeline.new_job

    def spy(self, clip, audio, states, motion, sampler):
        job = real(self, clip, audio, states, motion, sampler)
        seen.append((sampler.reuse_features, job.deep is not None))
        return job

    monkeypatch.setattr(LLIAPipeline, "new_job", spy)
    for flag, want in (([], True), (["--no-reuse-features"], False)):
        seen.clear()
        assert main(["generate", "--model", str(ckpt), "--out", str(tmp_path / "a.mp4"), "--quiet", "--output", "crop",
                     "--duration", "0.3", *flag]) == 0
        assert seen and all(s == (want, want) for s in seen)
    node = LLIAConsistencyStep()
    assert node.settings("consistency", 2, 1.0, 1.0, 0)[0].reuse_features
    assert not node.settings("consistency", 2, 1.0, 1.0, 0, reuse_features=False)[0].reuse_features
