"""The mouth map: its geometry matches the drawn mouths, it conditions the denoiser, and it trains
only the denoiser (the mouth head learns from its own loss)."""

import dataclasses

import numpy as np
import pytest
import torch

from llia_core.models import LLIAModel
from llia_core.framing import FACE
from llia_core.models.mouth_map import mouth_ellipses
from llia_core.training.data import make_clip
from llia_core.evaluation.metrics import MOUTH_INTERIOR

from conftest import tiny_config


def _mouth_config(**overrides):
    cfg = tiny_config(audio=dataclasses.replace(tiny_config().audio, mouth_head=True), mouth_map=True)
    return dataclasses.replace(cfg, **overrides)


def test_opening_ellipse_lands_on_the_drawn_mouth_interior():
    clip = make_clip(20, 5, seconds=2.0, fps=25, resolution=128, kind="speaking", head_motion=False)
    mouth = torch.tensor(np.stack([clip.mouth_open, clip.mouth_width, clip.mouth_round], -1))
    cover = mouth_ellipses(mouth, 128, FACE)[:, 0] > 0.5  # per-pixel map at image resolution
    frames = torch.as_tensor(clip.frames).float() / 255
    interior = (frames - torch.tensor(MOUTH_INTERIOR)).norm(dim=-1) < 0.1
    wide = torch.as_tensor(clip.mouth_open) > 0.5
    assert wide.sum() >= 5
    inter = (cover & interior)[wide].sum((1, 2)).float()
    union = (cover | interior)[wide].sum((1, 2)).float()
    assert (inter / union).mean() > 0.5
    # the drawn opening grows with the true opening, and a closed mouth has none
    area = mouth_ellipses(mouth, 32, FACE)[:, 0].sum((1, 2))
    assert np.corrcoef(area.numpy(), clip.mouth_open)[0, 1] > 0.95
    assert mouth_ellipses(torch.tensor([[0.0, 0.5, 0.0]]), 32, FACE)[:, 0].sum() == 0


def test_mouth_map_needs_a_mouth_source():
    with pytest.raises(ValueError, match="mouth source"):
        LLIAModel(tiny_config(mouth_map=True))


def test_mouth_map_conditions_the_denoiser_and_leaves_the_mouth_head_to_its_own_loss():
    torch.manual_seed(0)
    model = LLIAModel(_mouth_config())
    den = model.denoiser
    cfg = model.config
    torch.nn.init.normal_(den.unet.conv_out.weight, std=0.05)
    c, h, r = cfg.autoencoder.latent_channels, cfg.latent_size, cfg.resolution
    sample = torch.randn(1, c, 3, h, h)
    windows = torch.randn(1, 3, cfg.audio.num_tokens, cfg.audio.mel_per_token * cfg.audio.n_mels)
    ref = model.encode_reference(torch.rand(1, 3, r, r), torch.ones(1, 1, r, r))
    args = (sample, torch.full((1,), 500), windows, torch.zeros(1, 3, dtype=torch.long), ref.latent, ref.bank,
            torch.ones(1, 1, r, r), torch.zeros(1, 3))
    with torch.no_grad():
        before = den(*args)
        mouth_map, den.mouth_map = den.mouth_map, None
        assert torch.equal(before, den(*args)), "a fresh mouth map adds exactly nothing"
        den.mouth_map = mouth_map
        torch.nn.init.normal_(den.mouth_map.proj_out.weight, std=0.5)
        after = den(*args)
        # the residual follows the mouth head: a different predicted mouth, a different output
        torch.nn.init.normal_(den.audio_encoder.mouth_head.bias, std=3.0)
        moved = den(*args)
    assert not torch.allclose(before, after), "a trained mouth map must change the output"
    assert not torch.allclose(after, moved)
    den(*args).pow(2).mean().backward()
    assert den.audio_encoder.mouth_head.weight.grad is None  # detached: only the auxiliary loss trains it
    assert den.mouth_map.proj_out.weight.grad.abs().sum() > 0


def test_mouth_map_model_trains_saves_and_loads(tmp_path, monkeypatch):
    from llia_core import config as config_module
    from llia_core.checkpoints import load_model
    from llia_core.training.data import generate_dataset
    from llia_core.training.trainer import TrainConfig, train

    generate_dataset(tmp_path / "data", num_identities=3, clips_per_identity=1, seconds=0.6, resolution=32,
                     split="train", workers=1, progress=False)
    monkeypatch.setitem(config_module.CONFIGS, "tiny-mouth", _mouth_config(name="tiny-mouth"))
    path = train(TrainConfig(data=str(tmp_path / "data"), out_dir=str(tmp_path / "base"), config="tiny-mouth",
                             steps=3, batch_frames=8, warmup=1, log_every=1, progress=False))
    model = load_model(path)
    assert model.config.mouth_map and model.denoiser.mouth_map is not None
    assert model.denoiser.mouth_map.proj_out.weight.abs().sum() > 0  # it left its zero start


def test_mouth_paint_starts_at_nothing_then_repaints_the_mouth_from_the_mouth_head():
    torch.manual_seed(0)
    model = LLIAModel(_mouth_config(mouth_paint=True))
    den, cfg = model.denoiser, model.config
    torch.nn.init.normal_(den.unet.conv_out.weight, std=0.05)
    c, h, r = cfg.autoencoder.latent_channels, cfg.latent_size, cfg.resolution
    windows = torch.randn(1, 3, cfg.audio.num_tokens, cfg.audio.mel_per_token * cfg.audio.n_mels)
    ref = model.encode_reference(torch.rand(1, 3, r, r), torch.ones(1, 1, r, r))
    args = (torch.randn(1, c, 3, h, h), torch.full((1,), 500), windows, torch.zeros(1, 3, dtype=torch.long),
            ref.latent, ref.bank, torch.ones(1, 1, r, r), torch.zeros(1, 3))
    with torch.no_grad():
        before = den(*args)
        paint, den.mouth_paint = den.mouth_paint, None
        assert torch.equal(before, den(*args)), "a fresh mouth paint adds exactly nothing"
        den.mouth_paint = paint
        torch.nn.init.normal_(paint.proj_out.weight, std=0.5)
        after = den(*args)
        torch.nn.init.normal_(den.audio_encoder.mouth_head.bias, std=3.0)
        moved = den(*args)
    assert not torch.allclose(before, after) and not torch.allclose(after, moved)
    # it repaints the mouth only: cells away from the lips (the top half of the frame) are untouched
    changed = (after - before).abs().amax(dim=(0, 1, 2)) > 0  # (h, w)
    assert changed.any() and not changed[: h // 2].any()
    den(*args).pow(2).mean().backward()
    assert den.audio_encoder.mouth_head.weight.grad is None
    assert paint.proj_out.weight.grad.abs().sum() > 0


def test_a_shut_mouth_paint_gate_can_reopen_and_its_proposal_learns_while_shut():
    """The session-6 paint's gate stayed shut (0.04) where the mouth opens: below 0 a plain clamp
    passes no gradient, and a shut gate passes none to the proposal. Both paths must learn."""
    from llia_core.training.trainer import PaintInputs

    torch.manual_seed(0)
    model = LLIAModel(_mouth_config(mouth_paint=True))
    den, cfg = model.denoiser, model.config
    paint = den.mouth_paint
    c, h, r = cfg.autoencoder.latent_channels, cfg.latent_size, cfg.resolution
    torch.nn.init.normal_(paint.proj_out.weight, std=0.01)
    with torch.no_grad():
        paint.proj_out.bias[c:2 * c] = -1.0  # every gate well below 0: shut
    windows = torch.randn(1, 3, cfg.audio.num_tokens, cfg.audio.mel_per_token * cfg.audio.n_mels)
    ref = model.encode_reference(torch.rand(1, 3, r, r), torch.ones(1, 1, r, r))
    args = (torch.randn(1, c, 3, h, h), torch.full((1,), 500), windows, torch.zeros(1, 3, dtype=torch.long),
            ref.latent, ref.bank, torch.ones(1, 1, r, r), torch.zeros(1, 3))
    x0 = torch.rand(1, c, 3, h, h)
    with PaintInputs(model, 1.0) as caught:
        pred = den(*args)
    _, gate, lips = paint.propose(*caught.inputs)
    assert lips.sum() > 0 and gate.max() == 0  # shut everywhere
    ((pred - x0) ** 2).mean().backward(retain_graph=True)
    grad = paint.proj_out.bias.grad
    assert grad[c:2 * c].abs().sum() > 0, "a shut gate gets no gradient: it can never reopen"
    assert grad[:c].abs().sum() == 0 and grad[2 * c:].abs().sum() == 0  # a shut gate hides the proposal ...
    model.zero_grad()
    aux = caught.loss(x0, torch.zeros(1, 3))
    aux.backward()
    grad = paint.proj_out.bias.grad
    assert aux > 0 and grad[:c].abs().sum() > 0 and grad[2 * c:].abs().sum() > 0  # ... which learns from its own loss
    assert den.unet.conv_out.weight.grad is None or den.unet.conv_out.weight.grad.abs().sum() == 0
    with PaintInputs(model, 0.0) as off:  # weight 0: nothing caught, no loss
        den(*args)
    assert off.inputs is None and off.loss(x0, torch.zeros(1, 3)) == 0
    # motion frames (given, not generated) do not count
    assert caught.loss(x0, torch.ones(1, 3)) == 0


@pytest.mark.parametrize("gated", [True, False])
def test_mouth_paint_lays_its_colours_on_exactly_the_pixels_the_ellipses_cover(gated):
    """Opening colour where the opening ellipse covers a pixel, lip colour on the lips ring, the
    portrait elsewhere: with the gate open (or no gate: the paint owns the lips cells) and no
    residual the decoded mouth is the drawn one, and nothing beyond the lips cells changes."""
    import torch.nn.functional as F
    from llia_core.models.mouth_map import MouthPaint

    ds, size = 4, 128
    paint = MouthPaint(3 * ds * ds, ds, view=FACE, gated=gated)
    c = 3 * ds * ds
    inside, lip, skin = torch.tensor([-0.6, -0.9, -0.8]), torch.tensor([0.5, -0.2, -0.1]), torch.tensor([0.8, 0.5, 0.3])
    with torch.no_grad():
        if gated:
            paint.proj_out.bias[c:2 * c] = 1.0  # gate open
        paint.proj_out.bias[-6:] = torch.cat([inside, lip])
    mouth = torch.tensor([[0.9, 0.5, 0.3]])
    ref = F.pixel_unshuffle(skin[None, :, None, None].expand(1, 3, size, size), ds)
    pred = torch.zeros_like(ref)
    pixels = F.pixel_shuffle(paint(mouth, ref, pred), ds)[0].permute(1, 2, 0)  # (H, W, 3)
    cover = mouth_ellipses(mouth, size, FACE)[0]
    opening, ring = cover[0] == 1, (cover[1] == 1) & (cover[0] == 0)
    assert opening.sum() > 30 and ring.sum() > 10
    assert torch.allclose(pixels[opening], inside.expand(int(opening.sum()), 3), atol=1e-6)
    assert torch.allclose(pixels[ring], lip.expand(int(ring.sum()), 3), atol=1e-6)
    outside_lips = F.max_pool2d((cover[1:] > 0).float()[None], 3 * ds, ds, ds)[0, 0] == 0  # beyond the lips cells
    far = F.interpolate(outside_lips[None, None].float(), scale_factor=ds)[0, 0] > 0
    assert (pixels[far] == 0).all()  # the prediction, untouched
    between = (cover[1] == 0) & ~far  # lips cells, but not on the lips: the portrait's skin
    assert torch.allclose(pixels[between], skin.expand(int(between.sum()), 3), atol=1e-6)


def test_mouth_paint_sees_the_mouth_pixel_by_pixel():
    """Folded like the patch latent, the pixel-resolution ellipses keep every pixel of the mouth
    (the latent-resolution map keeps only each cell's share) and agree with that share."""
    import torch.nn.functional as F

    mouths = torch.tensor([[0.3, 0.5, 0.0], [0.8, 0.2, 1.0]])
    pixels = mouth_ellipses(mouths, 128, FACE)
    fine = F.pixel_unshuffle(pixels, 4)
    assert fine.shape == (2, 32, 32, 32)
    assert torch.equal(F.pixel_shuffle(fine, 4), pixels)
    coarse = mouth_ellipses(mouths, 32, FACE)
    assert (fine[:, :16].mean(1) - coarse[:, 0]).abs().mean() < 0.01
    assert (fine[:, :16].mean(1) - coarse[:, 0]).abs().max() < 0.2


def test_mouth_paint_needs_the_mouth_head_and_the_patch_latent():
    with pytest.raises(ValueError, match="mouth_paint"):
        LLIAModel(tiny_config(mouth_paint=True))


def test_a_trained_mouth_map_model_grows_a_mouth_paint_trained_alone(tmp_path, monkeypatch):
    """The bundled recipe's stage 2b: a finished base model gains a mouth paint, and
    ``train_only`` trains the paint while every other weight stays exactly as it was."""
    from llia_core import config as config_module
    from llia_core.checkpoints import load_model
    from llia_core.training.data import generate_dataset
    from llia_core.training.trainer import TrainConfig, train

    generate_dataset(tmp_path / "data", num_identities=3, clips_per_identity=1, seconds=0.6, resolution=32,
                     split="train", workers=1, progress=False)
    monkeypatch.setitem(config_module.CONFIGS, "tiny-mouth", _mouth_config(name="tiny-mouth"))
    monkeypatch.setitem(config_module.CONFIGS, "tiny-paint", _mouth_config(name="tiny-paint", mouth_paint=True))
    common = dict(data=str(tmp_path / "data"), batch_frames=8, warmup=1, log_every=1, progress=False)
    base = train(TrainConfig(out_dir=str(tmp_path / "base"), config="tiny-mouth", steps=2, **common))
    painted = train(TrainConfig(out_dir=str(tmp_path / "paint"), config="tiny-paint", init=str(base), steps=3,
                                lr=1e-2, ema_decay=0.0, train_only="mouth_paint", **common))
    old, new = load_model(base), load_model(painted)
    assert new.config.mouth_paint and new.config.name == "tiny-paint" and not old.config.mouth_paint
    kept = new.state_dict()
    for k, v in old.state_dict().items():
        assert torch.equal(kept[k], v), k
    assert new.denoiser.mouth_paint.proj_out.weight.abs().sum() > 0  # it left its zero start
    with pytest.raises(ValueError, match="matches no parameter"):
        train(TrainConfig(out_dir=str(tmp_path / "none"), init=str(base), steps=1, train_only="no_such_module",
                          **common))
