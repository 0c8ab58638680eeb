"""INT8 and bf16 model paths, and the benchmark's pieces, on a tiny model (speed itself is benchmarked, not tested)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from llia_core import bench
from llia_core.pipeline import LLIAPipeline, SamplerConfig
from llia_core.quantization import Int8Conv2d, Int8Linear, quantize_int8
from test_pipeline import _audio


@pytest.fixture(scope="module")
def portrait():
    from llia_core.portrait import prepare_portrait

    rng = np.random.default_rng(1)
    return prepare_portrait(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8), 32, mode="whole")


def test_int8_linear_matches_float_and_accepts_keyword_input():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32)
    q = Int8Linear(lin)
    for x in (torch.randn(40, 64), torch.randn(3, 64), torch.randn(2, 5, 64) + 3.0):  # any rows, any offset
        err = (q(input=x) - lin(x)).norm() / lin(x).norm()
        assert err < 0.02 and q(x).shape == lin(x).shape
    assert q(torch.randn(4, 64).bfloat16()).dtype == torch.bfloat16


@pytest.mark.parametrize("kernel,stride", [(3, 1), (1, 1), (3, 2)])
def test_int8_conv_matches_float(kernel, stride):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(32, 24, kernel, stride=stride, padding=kernel // 2)
    q = Int8Conv2d(conv)
    x = torch.randn(3, 32, 16, 16).relu()  # one-sided activations use the whole uint8 range
    err = (q(x) - conv(x)).norm() / conv(x).norm()
    assert err < 0.03 and q(x).shape == conv(x).shape
    zero = torch.zeros(1, 32, 8, 8)
    assert torch.allclose(q(zero), conv(zero), atol=1e-5)  # zero is exactly representable: only the bias is left


def test_int8_model_generates_close_to_fp32_and_leaves_the_original_alone(tiny_model, portrait):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    q = quantize_int8(tiny_model)
    assert any(isinstance(m, Int8Linear) for m in q.denoiser.unet.modules())
    assert any(isinstance(m, Int8Conv2d) for m in q.denoiser.unet.modules())
    assert not any(isinstance(m, Int8Linear) for m in tiny_model.modules())
    assert all(torch.equal(v, tiny_model.state_dict()[k]) for k, v in before.items())
    audio = _audio(0.6, 25, tiny_model.config)
    cfg = SamplerConfig(steps=2, seed=1)
    ref = LLIAPipeline(tiny_model).generate(portrait, audio, sampler=cfg).frames
    out = LLIAPipeline(q).generate(portrait, audio, sampler=cfg).frames
    assert out.shape == ref.shape
    assert bench._psnr(out, ref) > 30


def test_bf16_model_path_runs_and_stays_close(tiny_model, portrait):
    model, dtype = bench.precision_model(tiny_model, "bf16")
    assert dtype == torch.bfloat16 and next(model.parameters()).dtype == torch.bfloat16
    audio = _audio(0.5, 25, tiny_model.config)
    ref = LLIAPipeline(tiny_model).generate(portrait, audio, sampler=SamplerConfig(steps=1)).frames
    out = LLIAPipeline(model, dtype=dtype).generate(portrait, audio, sampler=SamplerConfig(steps=1)).frames
    assert out.dtype == torch.float32 and bench._psnr(out, ref) > 25


def test_composed_timings_follow_the_clip_plan(tiny_model, monkeypatch):
    """A fake clock that a denoiser call advances by 1 ms per frame and guidance row, and a decode by
    2 ms a frame: the composed seconds and first frame must be exactly what the clip plan adds up to."""
    from llia_core.models.feature_reuse import DeepFeatures  # noqa: F401  (the reuse path is timed too)

    clock = [0.0]
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])
    forward, decode = tiny_model.denoiser.forward, tiny_model.decode_latents

    def timed_forward(sample, *args, **kwargs):
        clock[0] += 0.001 * sample.shape[0] * sample.shape[2]
        return forward(sample, *args, **kwargs)

    def timed_decode(latents):
        clock[0] += 0.002 * latents.shape[0]
        return decode(latents)

    monkeypatch.setattr(tiny_model.denoiser, "forward", timed_forward)
    monkeypatch.setattr(tiny_model, "decode_latents", timed_decode)
    n = 40
    for sampler in (bench.LLIA_SAMPLER, dataclasses.replace(bench.BASELINE_SAMPLER, first_clip=6, clip_frames=6)):
        got = bench.time_calls(tiny_model, sampler, n, threads=1)
        pipe = LLIAPipeline(tiny_model)
        rows = 1 + (sampler.guidance_scale != 1.0)
        total, first, prev = 0.0, None, 0
        for clip in pipe.plan(n, torch.zeros(n, dtype=torch.long), sampler):
            motion = min(pipe.motion_count(sampler.motion_frames), prev)
            total += sampler.steps * 0.001 * rows * (motion + clip.length) + 0.002 * clip.length
            first = total if first is None else first
            prev = clip.length
        assert got["frames"] == n
        assert got["seconds"] == pytest.approx(total) and got["first_frame_ms"] == pytest.approx(1000 * first)
        assert got["fps"] == pytest.approx(n / total)


def test_bench_rows_table_and_plot(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "_portrait", lambda config: _tiny_portrait(config))
    rows = bench.bench_config("tiny", tiny_model, 0.8, threads=1, calls_only=False, log=lambda m: None)
    assert set(rows) >= {"llia", "llia-no-pipeline", "llia-fp32", "llia-int8", "baseline"}
    for row in rows.values():  # every ratio is against the baseline row of the same run
        assert row["fps_x_baseline"] == pytest.approx(row["fps"] / rows["baseline"]["fps"])
    assert rows["llia-fp32"]["frames"] == math.ceil(0.8 * 25)
    # pipelined and sequential fp32 rows compute the same frames
    assert rows["llia-fp32-no-pipeline"]["psnr_vs_fp32_db"] > 80
    table = bench.format_rows("tiny", rows)
    assert table.count("\n| ") == len(rows) + 1
    results = {"config:tiny": rows, "memory": [{"minutes": 1, "peak_rss_mb": 500.0}, {"minutes": 2, "peak_rss_mb": 510.0}]}
    png = tmp_path / "r.png"
    bench.plot(results, png)
    from PIL import Image

    image = np.asarray(Image.open(png).convert("L"))
    assert image.shape[0] > 200 and image.shape[1] > 300 and image.std() > 10  # a drawn figure, not a blank page
    assert json.loads(json.dumps(results, default=float))["config:tiny"]["llia-fp32"]["frames"] == rows["llia-fp32"]["frames"]


def test_flop_count_grows_with_resolution():
    f384 = bench.flops_per_frame("sd15-384")
    f512 = bench.flops_per_frame("sd15-512")
    assert 1.5 < f512["denoiser_per_frame"] / f384["denoiser_per_frame"] < 2.5
    assert bench.flops_per_frame("demo")["denoiser_per_frame"] < f384["denoiser_per_frame"] / 100


def _tiny_portrait(config):
    from llia_core.portrait import prepare_portrait

    return prepare_portrait(np.full((40, 40, 3), 128, np.uint8), config.resolution, mode="whole")


def test_calls_only_rows_cover_each_precision(tiny_model, monkeypatch):
    monkeypatch.setattr(bench, "_portrait", lambda config: _tiny_portrait(config))
    rows = bench.bench_config("tiny", tiny_model, 0.8, threads=1, calls_only=True, log=lambda m: None)
    want = {"llia-no-pipeline", "llia-int8-no-pipeline", "baseline"} | (
        {"llia-bf16-no-pipeline"} if bench.cpu_has_bf16() else set())
    assert set(rows) == want
    assert {rows[k]["precision"] for k in rows} >= {"fp32", "int8"}
    assert all(r["frames"] == math.ceil(0.8 * 25) and r["fps"] > 0 for r in rows.values())
    for row in rows.values():
        assert row["fps_x_baseline"] == pytest.approx(row["fps"] / rows["baseline"]["fps"])
    assert 20 < rows["llia-int8-no-pipeline"]["psnr_vs_fp32_db"] < 200  # measured on generated frames


def test_frozen_denoiser_gives_the_eager_frames_and_only_for_its_shapes(tiny_model, portrait):
    audio = _audio(1.2, 25, tiny_model.config)
    # every clip after the first has one shape; full steps (a clip reusing deep features runs eagerly)
    cfg = SamplerConfig(steps=2, seed=4, first_clip=2, clip_frames=2, reuse_features=False)
    ref = LLIAPipeline(tiny_model).generate(portrait, audio, sampler=cfg).frames
    pipe = LLIAPipeline(tiny_model)
    pipe.freeze_fixed_shapes(2)
    out = pipe.generate(portrait, audio, sampler=cfg).frames
    assert len(pipe._frozen) == 2  # the first clip (no motion frames) and the rest
    # same graph, same kernels: the traced calls see different audio, states and timesteps each clip
    assert torch.allclose(out, ref, atol=1e-5)
    # a third shape runs eagerly, and a new portrait drops the old portrait's frozen calls
    longer = dataclasses.replace(cfg, first_clip=3, clip_frames=3)
    assert torch.allclose(pipe.generate(portrait, audio, sampler=longer).frames,
                          LLIAPipeline(tiny_model).generate(portrait, audio, sampler=longer).frames, atol=1e-5)
    assert len(pipe._frozen) == 2
    from llia_core.portrait import prepare_portrait

    other = prepare_portrait(np.full((40, 40, 3), 90, np.uint8), 32, mode="whole")
    pipe.generate(other, _audio(0.2, 25, tiny_model.config), sampler=cfg)
    assert pipe._frozen and all(f.reference is pipe.prepare_reference(other) for f in pipe._frozen)


def test_temporal_attention_matches_sdpa_in_fp32_and_is_more_exact_in_bf16(tiny_model):
    """On CPU it is two matrix products (2-3x faster than SDPA for a clip's few frames), same values."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    from llia_core.models.attention import TemporalAttnProcessor

    name, attn = next((n, m) for n, m in tiny_model.denoiser.unet.named_modules()
                      if "motion_modules" in n and type(m).__name__ == "Attention")
    assert isinstance(tiny_model.denoiser.unet.attn_processors[name + ".processor"], TemporalAttnProcessor)
    torch.manual_seed(0)
    x = torch.randn(64, 5, attn.to_q.in_features)
    with torch.no_grad():
        exact = AttnProcessor2_0()(attn, x)
        assert torch.allclose(TemporalAttnProcessor()(attn, x), exact, atol=1e-6)
        import copy

        attn16 = copy.deepcopy(attn).to(torch.bfloat16)
        err_sdpa = (AttnProcessor2_0()(attn16, x.bfloat16()).float() - exact).abs().mean()
        err_ours = (TemporalAttnProcessor()(attn16, x.bfloat16()).float() - exact).abs().mean()
    assert err_ours <= err_sdpa


def test_memory_benchmark_measures_the_child_not_its_parent(tmp_path):
    """A child started by fork/vfork + exec inherits its parent's peak in ru_maxrss; the benchmark
    must report the generating process's own peak however large the parent once was."""
    big = np.ones(150_000_000)  # 1.2 GB in this process before the child starts
    big[::4096] = 2.0  # touch every page
    del big
    row = bench.peak_rss_mb(0.02, "bundled", 1, tmp_path)  # 1.2 s of audio
    assert row["frames_written"] == row["frames_expected"] == 30
    assert 100 < row["peak_rss_mb"] < 1000
    assert abs(row["audio_seconds"] - 1.2) < 0.05


def test_motion_modules_project_a_contiguous_input_for_one_clip(tiny_model, portrait):
    """diffusers hands them a strided view at batch 1, which ``nn.Linear`` runs as one tiny matmul per
    latent pixel; the pre-hook copies it first (same values, one matrix product)."""
    from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

    seen = []
    modules = [m for m in tiny_model.denoiser.unet.modules() if isinstance(m, AnimateDiffTransformer3D)]
    hooks = [m.proj_in.register_forward_hook(lambda mod, args, kwargs, out: seen.append(
        (args[0] if args else kwargs["input"]).is_contiguous()), with_kwargs=True) for m in modules]
    try:
        LLIAPipeline(tiny_model).generate(portrait, _audio(0.2, 25, tiny_model.config),
                                          sampler=SamplerConfig(steps=1, first_clip=2, clip_frames=2))
    finally:
        for h in hooks:
            h.remove()
    assert modules and len(seen) >= len(modules) and all(seen)


def test_split_geglu_gives_diffusers_values_and_keeps_the_weights(tiny_model):
    """Two products over the weight's halves instead of one split (strided GELU is slow on CPU)."""
    from diffusers.models.activations import GEGLU

    from llia_core.models.unet_blocks import _SplitGEGLU

    layers = [m for m in tiny_model.denoiser.unet.modules() if isinstance(m, GEGLU)]
    assert layers and all(type(m) is _SplitGEGLU for m in layers)
    layer = layers[0]
    x = torch.randn(2, 7, layer.proj.in_features)
    with torch.no_grad():
        h, g = layer.proj(x).chunk(2, dim=-1)
        assert torch.allclose(layer(x), h * torch.nn.functional.gelu(g), atol=1e-6)
    assert set(layer.state_dict()) == {"proj.weight", "proj.bias"}  # checkpoints load as before


@pytest.mark.parametrize("channels, size", [(16, (4, 4)), (5, (3, 7))])
def test_phase_upsampler_gives_diffusers_values_on_the_low_resolution_input(channels, size):
    """Nearest 2x + 3x3 convolution as four 2x2 kernels on the low-resolution input (inference only)."""
    from diffusers.models.upsampling import Upsample2D

    from llia_core.models.unet_blocks import _PhaseUpsample2D, phase_upsamplers

    torch.manual_seed(0)
    layer = Upsample2D(channels, use_conv=True, out_channels=channels + 3)
    x = torch.randn(2, channels, *size)
    with torch.no_grad():
        stock = layer(x)
        phase_upsamplers(layer)
        assert type(layer) is _PhaseUpsample2D
        assert torch.allclose(layer(x), stock, atol=1e-5)
        calls = []
        hook = layer.conv.register_forward_hook(lambda *_: calls.append(1))
        layer(x)
        assert not calls  # the 3x3 convolution never ran on the upsampled input
        layer.conv.weight.mul_(2)  # new weights: new phase kernels
        hook.remove()
        assert torch.allclose(layer(x) - layer.conv.bias[:, None, None], 2 * (stock - layer.conv.bias[:, None, None]),
                              atol=1e-4)
        odd = (2 * size[0] + 1, 2 * size[1] + 1)  # an explicit odd output size takes the stock path
        assert layer(x, output_size=odd).shape[-2:] == odd
    assert torch.equal(layer(x), Upsample2D.forward(layer, x))  # with gradients: the stock path
    assert set(layer.state_dict()) == {"conv.weight", "conv.bias"}


def test_the_denoiser_upsamplers_are_phase_upsamplers(tiny_model):
    from diffusers.models.upsampling import Upsample2D

    from llia_core.models.unet_blocks import _PhaseUpsample2D

    ups = [m for m in tiny_model.denoiser.unet.modules() if isinstance(m, Upsample2D)]
    assert ups and all(type(m) is _PhaseUpsample2D for m in ups)


def test_phase_upsampler_runs_on_inference_tensors():
    """ComfyUI loads weights under torch.inference_mode: such tensors keep no version counter to key a cache on."""
    from diffusers.models.upsampling import Upsample2D

    from llia_core.models.unet_blocks import phase_upsamplers

    with torch.inference_mode():
        torch.manual_seed(1)
        layer = Upsample2D(8, use_conv=True)
        x = torch.randn(3, 8, 5, 5)
        stock = layer(x)
        phase_upsamplers(layer)
        assert layer.conv.weight.is_inference()
        assert torch.allclose(layer(x), stock, atol=1e-5)
        layer.conv.weight.mul_(2)  # changed in place, as inference tensors may be: new kernels
        assert not torch.allclose(layer(x), stock, atol=1e-3)
