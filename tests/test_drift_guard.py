"""The drift guard leaves ordinary motion frames alone and pulls strayed ones back, clip after clip."""

import numpy as np
import pytest
import torch

import llia_core.pipeline.pipeline as pipeline_mod
from llia_core.audio import encode_audio
from llia_core.errors import LLIAError
from llia_core.pipeline import LLIAPipeline, SamplerConfig
from llia_core.pipeline.drift_guard import anchor_motion
from llia_core.portrait import prepare_portrait


def _ref(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 4, 8, 8, generator=g) * torch.tensor([0.5, 1.0, 2.0, 0.2])[None, :, None, None] + 0.3


def test_frames_inside_the_bounds_pass_untouched():
    ref = _ref()
    motion = ref[:, :, None].repeat(1, 1, 2, 1, 1) + 0.01 * torch.randn(1, 4, 2, 8, 8)
    assert anchor_motion(motion, ref, 0.15) is motion
    assert anchor_motion(motion, ref, 0.0) is motion
    assert anchor_motion(motion[:, :, :0], ref, 0.15).shape[2] == 0


def test_strayed_colour_and_contrast_are_pulled_to_the_bound():
    ref = _ref()
    ref_mean, ref_std = ref.mean(dim=(2, 3)), ref.std(dim=(2, 3))
    base = ref[:, :, None].repeat(1, 1, 3, 1, 1)
    shifted = base + 1.0 * ref_std[:, :, None, None, None]  # every channel one std brighter
    out = anchor_motion(shifted, ref, 0.15)
    dev = out.mean(dim=(3, 4)) - ref_mean[:, :, None]
    assert torch.allclose(dev, 0.15 * ref_std[:, :, None].expand_as(dev), atol=1e-5)
    flat = (base - ref_mean[:, :, None, None, None]) * 0.5 + ref_mean[:, :, None, None, None]  # contrast halved
    ratio = anchor_motion(flat, ref, 0.15).std(dim=(3, 4)) / ref_std[:, :, None]
    assert torch.allclose(ratio, torch.full_like(ratio, 1 / 1.15), atol=1e-4)
    sharp = (base - ref_mean[:, :, None, None, None]) * 3 + ref_mean[:, :, None, None, None]
    ratio = anchor_motion(sharp, ref, 0.15).std(dim=(3, 4)) / ref_std[:, :, None]
    assert torch.allclose(ratio, torch.full_like(ratio, 1.15), atol=1e-4)
    # spatial detail is kept: the correction is per channel, not a replacement by the reference
    assert torch.allclose(anchor_motion(shifted, ref, 0.15) - out.mean(dim=(3, 4), keepdim=True),
                          shifted - shifted.mean(dim=(3, 4), keepdim=True), atol=1e-5)


@pytest.mark.parametrize("guard", [0.0, 0.15])
def test_a_drifting_stream_stays_anchored(tiny_model, guard, monkeypatch):
    """Simulated creep: every hand-over brightens the motion frames a little more."""
    pipe = LLIAPipeline(tiny_model)
    rng = np.random.default_rng(0)
    wave = rng.normal(0, 0.1, 16000 * 3).astype(np.float32)
    a = tiny_model.config.audio
    audio = encode_audio((wave, 16000), 25.0, n_mels=a.n_mels, context=a.context, mel_per_token=a.mel_per_token,
                         token_seconds=a.token_seconds)
    portrait = prepare_portrait(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8), 32, mode="whole")
    ref = pipe.prepare_reference(portrait).latent.float()
    seen, handovers = [], [0]
    original_after, original_anchor = pipe.motion_after, pipeline_mod.anchor_motion

    def creeping_after(latents, count=None):
        handovers[0] += 1
        return original_after(latents, count) + 0.3 * handovers[0]

    def recording_anchor(motion, reference_latent, tolerance):
        out = original_anchor(motion, reference_latent, tolerance)
        seen.append(out.float())
        return out

    monkeypatch.setattr(pipe, "motion_after", creeping_after)
    monkeypatch.setattr(pipeline_mod, "anchor_motion", recording_anchor)
    list(pipe.stream(portrait, audio, None, SamplerConfig(steps=1, drift_guard=guard)))
    ref_mean, ref_std = ref.mean(dim=(2, 3))[:, :, None], ref.std(dim=(2, 3))[:, :, None]
    worst = max(float(((m.mean(dim=(3, 4)) - ref_mean).abs() / ref_std).max()) for m in seen if m.shape[2])
    if guard:
        assert worst <= guard + 1e-3  # never further than the bound, however long the creep goes on
    else:
        assert worst > 3  # without the guard the creep accumulates (this is what the guard is for)


def test_guard_setting_is_checked():
    with pytest.raises(LLIAError, match="drift_guard"):
        SamplerConfig(drift_guard=-1).validate(16)
