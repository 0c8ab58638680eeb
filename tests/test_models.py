"""Shapes per config, variable clip lengths through one model, reference features, dropout."""

import pytest
import torch

from llia_core.config import CONFIGS, get_config
from llia_core.errors import CheckpointError
from llia_core.models import LLIAModel

from conftest import tiny_config


def _inputs(cfg, f, b=1, motion=0):
    c, h, r = cfg.autoencoder.latent_channels, cfg.latent_size, cfg.resolution
    flags = torch.zeros(b, f)
    flags[:, :motion] = 1
    return dict(
        sample=torch.randn(b, c, f, h, h),
        timestep=torch.full((b,), 500),
        audio_windows=torch.randn(b, f, cfg.audio.num_tokens, cfg.audio.mel_per_token * cfg.audio.n_mels),
        states=torch.zeros(b, f, dtype=torch.long),
        face_mask=torch.ones(b, 1, r, r),
        motion_flags=flags,
    )


@torch.no_grad()
@pytest.mark.parametrize("frames", [1, 2, 3, 5, 8])
def test_variable_clip_lengths_share_one_model(tiny_model, frames):
    cfg = tiny_model.config
    ref = tiny_model.encode_reference(torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32))
    kw = _inputs(cfg, frames, motion=min(2, frames - 1))
    out = tiny_model.denoiser(kw.pop("sample"), kw.pop("timestep"), kw.pop("audio_windows"), kw.pop("states"),
                              ref.latent, ref.bank, kw.pop("face_mask"), kw.pop("motion_flags"))
    assert out.shape == (1, 48, frames, 8, 8)
    assert torch.isfinite(out).all()


@torch.no_grad()
def test_reference_bank_has_every_spatial_attention_layer(tiny_model):
    ref = tiny_model.encode_reference(torch.rand(2, 3, 32, 32), torch.ones(2, 1, 32, 32))
    names = {n.rsplit(".attn", 1)[0] for n in tiny_model.denoiser.unet.attn_processors if ".attentions." in n}
    assert set(ref.bank) == names and names
    for v in ref.bank.values():
        assert v.shape[0] == 2 and v.ndim == 3


@torch.no_grad()
def test_reference_changes_output_and_dropout_removes_it(tiny_model):
    cfg = tiny_model.config
    torch.manual_seed(1)
    kw = _inputs(cfg, 3)
    a = tiny_model.encode_reference(torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32))
    b = tiny_model.encode_reference(torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32))
    args = lambda ref, keep=None: tiny_model.denoiser(  # noqa: E731
        kw["sample"], kw["timestep"], kw["audio_windows"], kw["states"], ref.latent, ref.bank,
        kw["face_mask"], kw["motion_flags"], reference_keep=keep)
    assert not torch.allclose(args(a), args(b))
    drop = torch.zeros(1, 3, dtype=torch.bool)
    assert torch.allclose(args(a, drop), args(b, drop), atol=1e-5)


@torch.no_grad()
def test_audio_and_state_condition_the_output(tiny_model):
    cfg = tiny_model.config
    ref = tiny_model.encode_reference(torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32))
    kw = _inputs(cfg, 2)
    base = tiny_model.denoiser(kw["sample"], kw["timestep"], kw["audio_windows"], kw["states"], ref.latent,
                               ref.bank, kw["face_mask"], kw["motion_flags"])
    other_audio = tiny_model.denoiser(kw["sample"], kw["timestep"], torch.randn_like(kw["audio_windows"]),
                                      kw["states"], ref.latent, ref.bank, kw["face_mask"], kw["motion_flags"])
    other_state = tiny_model.denoiser(kw["sample"], kw["timestep"], kw["audio_windows"], kw["states"] + 2,
                                      ref.latent, ref.bank, kw["face_mask"], kw["motion_flags"])
    assert not torch.allclose(base, other_audio)
    assert not torch.allclose(base, other_state)


@torch.no_grad()
def test_temporal_attention_mixes_frames(tiny_model):
    """Changing frame 0 must change frame 2's output: the motion module links frames."""
    cfg = tiny_model.config
    ref = tiny_model.encode_reference(torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32))
    kw = _inputs(cfg, 3)
    run = lambda s: tiny_model.denoiser(s, kw["timestep"], kw["audio_windows"], kw["states"], ref.latent,  # noqa
                                        ref.bank, kw["face_mask"], kw["motion_flags"])
    s2 = kw["sample"].clone()
    s2[:, :, 0] += 1.0
    assert not torch.allclose(run(kw["sample"])[:, :, 2], run(s2)[:, :, 2])


def test_patch_autoencoder_is_exact_before_training(tiny_model):
    x = torch.rand(2, 3, 32, 32)
    lat = tiny_model.encode_pixels(x)
    assert lat.shape == (2, 48, 8, 8)
    frames = tiny_model.decode_latents(lat)
    assert frames.shape == (2, 32, 32, 3)
    assert torch.allclose(frames, x.permute(0, 2, 3, 1), atol=1e-6)


def test_patch_decode_in_channels_last_gives_the_plain_values_as_contiguous_frames(tiny_model):
    import copy

    import torch.nn.functional as F

    ae = copy.deepcopy(tiny_model.autoencoder)
    torch.manual_seed(0)
    for conv in (ae.refine_in, ae.refine_out):  # a trained refiner, not the zero-initialised one
        torch.nn.init.normal_(conv.weight, std=0.1)
        torch.nn.init.normal_(conv.bias, std=0.1)
    lat = torch.randn(3, 48, 8, 8)
    pixels = F.pixel_shuffle(lat / ae.config.scaling_factor, ae.config.downscale)
    plain = pixels + ae.refine_out(F.silu(ae.refine_in(pixels)))
    decoded = ae.decode(lat)
    assert decoded.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(decoded, plain, atol=1e-6) and not torch.allclose(decoded, pixels, atol=1e-3)
    assert decoded.permute(0, 2, 3, 1).is_contiguous()  # the frames' (B, H, W, 3) view, no copy


def test_config_json_round_trip_and_unknown_names():
    for cfg in CONFIGS.values():
        from llia_core.config import LLIAConfig

        assert LLIAConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(CheckpointError, match="choose one of"):
        get_config("sd99")
    with pytest.raises(CheckpointError, match="does not match"):
        from llia_core.config import LLIAConfig

        LLIAConfig.from_dict({"name": "x", "bogus_field": 1})


def test_demo_config_shapes_and_size():
    cfg = get_config("demo")
    model = LLIAModel(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert n * 2 < 20 * 1024**2, "the bundled model must fit in 20 MB at fp16"
    with torch.no_grad():
        ref = model.encode_reference(torch.rand(1, 3, 128, 128), torch.ones(1, 1, 128, 128))
        kw = _inputs(cfg, 4, motion=2)
        out = model.denoiser(kw["sample"], kw["timestep"], kw["audio_windows"], kw["states"], ref.latent,
                             ref.bank, kw["face_mask"], kw["motion_flags"])
    assert out.shape == (1, 48, 4, 32, 32)


SD15_UNET = dict(  # Stable Diffusion 1.5's unet/config.json (the values that matter)
    act_fn="silu", attention_head_dim=8, block_out_channels=[320, 640, 1280, 1280], center_input_sample=False,
    cross_attention_dim=768, down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], downsample_padding=1,
    flip_sin_to_cos=True, freq_shift=0, in_channels=4, layers_per_block=2, mid_block_scale_factor=1, norm_eps=1e-5,
    norm_num_groups=32, out_channels=4, sample_size=64, up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3)
SD15_VAE = dict(act_fn="silu", block_out_channels=[128, 256, 512, 512], in_channels=3, latent_channels=4,
                layers_per_block=2, norm_num_groups=32, out_channels=3, sample_size=512)


def test_sd15_384_is_what_stable_diffusion_1_5_converts_to_and_its_shapes_flow():
    """The paper-scale config: SD1.5's own UNet and VAE config convert to exactly sd15-384, and one
    denoising step + decode runs through it (on the meta device: every module and shape, no compute;
    the same code runs for real on a tiny SD-shaped model in test_sd_conversion.py)."""
    import dataclasses

    from llia_core.sd_conversion import llia_config_from_sd

    cfg = get_config("sd15-384")
    converted = llia_config_from_sd(SD15_UNET, SD15_VAE, resolution=384)
    assert dataclasses.replace(converted, name=cfg.name) == cfg
    with torch.device("meta"):
        model = LLIAModel(cfg).eval()
    n_unet = sum(p.numel() for p in model.denoiser.unet.parameters())
    assert n_unet > 800e6  # SD1.5 UNet (860 M) + motion modules
    meta = dict(device="meta")
    with torch.no_grad():
        ref = model.encode_reference(torch.zeros(1, 3, 384, 384, **meta), torch.ones(1, 1, 384, 384, **meta))
        kw = {k: v.to("meta") for k, v in _inputs(cfg, 1).items()}
        out = model.denoiser(kw["sample"], kw["timestep"], kw["audio_windows"], kw["states"], ref.latent,
                             ref.bank, kw["face_mask"], kw["motion_flags"])
        frames = model.decode_latents(out[:, :, 0])
    assert out.shape == (1, 4, 1, 48, 48)
    assert frames.shape == (1, 384, 384, 3)


@torch.no_grad()
def test_reference_skip_starts_at_the_portrait():
    """With the reference skip an untrained model predicts the portrait itself as the clean frame."""
    cfg = tiny_config()
    model = LLIAModel(cfg).eval()
    image = torch.rand(1, 3, 32, 32)
    ref = model.encode_reference(image, torch.ones(1, 1, 32, 32))
    kw = _inputs(cfg, 3)
    x0 = model.denoiser(kw["sample"], kw["timestep"], kw["audio_windows"], kw["states"], ref.latent, ref.bank,
                        kw["face_mask"], kw["motion_flags"])
    frames = model.decode_latents(x0[0].permute(1, 0, 2, 3))
    assert torch.allclose(frames, image.permute(0, 2, 3, 1).expand(3, -1, -1, -1), atol=1e-5)
    import dataclasses

    with pytest.raises(ValueError, match="prediction_type 'sample'"):
        LLIAModel(dataclasses.replace(cfg, prediction_type="v_prediction"))


def _warp_model():
    """A tiny model with the bundled model's parts: mouth head, mouth map, reference warp, mouth region."""
    import dataclasses

    cfg = tiny_config(audio=dataclasses.replace(tiny_config().audio, mouth_head=True), mouth_map=True,
                      reference_warp=True, residual_region="mouth")
    torch.manual_seed(3)
    model = LLIAModel(cfg).eval().requires_grad_(False)
    torch.nn.init.normal_(model.denoiser.unet.conv_out.weight, std=0.05)
    return model


@torch.no_grad()
@pytest.mark.parametrize("rows", [1, 2])
def test_clip_conditioning_is_computed_once_per_clip_and_gives_the_same_values(rows):
    """What every step of a clip shares (audio tokens, face locator, mouth map, the reference's share of
    conv_in, the warped reference) comes from its first call; each call's output is the plain forward's."""
    from llia_core.models.denoiser import ClipConditioning
    from llia_core.models.feature_reuse import DeepFeatures

    model = _warp_model()
    den, cfg = model.denoiser, model.config
    ref = model.encode_reference(torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32))
    kw = _inputs(cfg, 4, motion=1)
    bank = {k: v.expand(rows, -1, -1) for k, v in ref.bank.items()}
    keep = torch.tensor([True, False][:rows])[:, None].expand(rows, 4)  # guidance rows: one without audio/reference
    extra = dict(audio_keep=keep, reference_keep=keep) if rows > 1 else {}
    calls = []
    hooks = [m.register_forward_hook(lambda *_, n=n: calls.append(n))
             for n, m in (("audio", den.audio_encoder), ("locator", den.face_locator), ("map", den.mouth_map))]

    def call(sample, t, **more):
        return den(sample.expand(rows, -1, -1, -1, -1), torch.full((rows,), t), kw["audio_windows"].expand(rows, -1, -1, -1),
                   kw["states"].expand(rows, -1), ref.latent.expand(rows, -1, -1, -1), bank,
                   kw["face_mask"].expand(rows, -1, -1, -1), kw["motion_flags"].expand(rows, -1), **extra, **more)

    try:
        second = kw["sample"] * 0.5
        plain = [call(kw["sample"], 900), call(second, 400)]
        calls.clear()
        conditioning = ClipConditioning()
        cached = [call(kw["sample"], 900, conditioning=conditioning), call(second, 400, conditioning=conditioning)]
        assert sorted(calls) == ["audio", "locator", "map"]  # the first call only
        assert "stem" in conditioning.values  # the reference's share of conv_in, once
        conditioning, deep = ClipConditioning(), DeepFeatures()
        reused = [call(kw["sample"], 900, conditioning=conditioning, deep=deep),
                  call(second, 400, conditioning=conditioning, deep=deep)]
        full = [call(kw["sample"], 900, deep=DeepFeatures())]
    finally:
        for h in hooks:
            h.remove()
    for a, b in zip(plain, cached):
        assert torch.allclose(a, b, atol=1e-5) and not torch.equal(a, torch.zeros_like(a))
    assert torch.allclose(reused[0], plain[0], atol=1e-5)
    deep_only = DeepFeatures()
    call(kw["sample"], 900, deep=deep_only)
    assert torch.allclose(reused[1], call(second, 400, deep=deep_only), atol=1e-5)
    assert torch.allclose(full[0], plain[0], atol=1e-5)
    moved = conditioning.to("meta")  # every tensor moves with the clip (pipeline stages on other devices)
    assert moved.values.keys() == conditioning.values.keys()
    assert moved.values["stem"][-1].device.type == "meta" and moved.values["added"][0].device.type == "meta"
