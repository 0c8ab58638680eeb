"""Training data generator, batches, the base and distillation stages, resume, evaluation metrics."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from llia_core.states import IDLE, LISTENING, SPEAKING
from llia_core.training.data import generate_dataset, load_clip, make_clip, mouth_box, split_of
from llia_core.training.data.render import FramePose, render_frame
from llia_core.training.data.identity import identity_from_id

from conftest import tiny_config
from llia_core.evaluation.metrics import MOUTH_CLOSED_MAX


def interior_darkness(frames, reference):
    from llia_core.evaluation.metrics import mouth_darkness

    return mouth_darkness(torch.as_tensor(frames).float() / 255, mouth_box(frames.shape[1]),
                          torch.as_tensor(reference).float() / 255)


def test_clips_are_deterministic_and_complete():
    a = make_clip(21, 5, seconds=1.0, kind="speaking")
    b = make_clip(21, 5, seconds=1.0, kind="speaking")
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    assert a.frames.shape == (25, 128, 128, 3) and a.audio.shape == (16000,)
    assert a.reference.shape == (128, 128, 3) and a.face_mask.shape == (128, 128)


def test_mouth_follows_speech_and_stays_closed_otherwise():
    speak = make_clip(22, 1, seconds=3.0, kind="speaking", head_motion=False)
    dark = interior_darkness(speak.frames, speak.reference).numpy()
    assert np.corrcoef(dark, speak.mouth_open)[0, 1] > 0.9
    for kind in ("listening", "idle"):
        clip = make_clip(22, 2, seconds=3.0, kind=kind)
        assert (clip.mouth_open == 0).all()
        assert (interior_darkness(clip.frames, clip.reference) <= MOUTH_CLOSED_MAX).all()
        assert set(np.unique(clip.states)) == {LISTENING if kind == "listening" else IDLE}
    listening = make_clip(22, 2, seconds=3.0, kind="listening")
    assert np.abs(listening.audio).max() > 0.05  # someone else is talking


def test_switch_clips_change_state_once():
    clip = make_clip(23, 4, seconds=3.0, kind="switch")
    assert (np.diff(clip.states) != 0).sum() == 1
    speaking = clip.states == SPEAKING
    assert (clip.mouth_open[~speaking] == 0).all()


def test_framing_matches_the_portrait_contract():
    for ident in (1, 2, 5, 8):
        img = render_frame(identity_from_id(ident), FramePose(), 128).astype(int)
        skin = np.array(identity_from_id(ident).skin)
        face = (np.abs(img - skin).sum(-1) < 12)
        ys, xs = np.nonzero(face)
        assert abs(xs.mean() - 64) < 6  # centred
        assert 50 < xs.max() - xs.min() + 1 < 90  # cheek to cheek ~ R / 1.8 = 71 px


def test_splits_are_disjoint_by_identity_and_generation_resumes(tmp_path):
    assert {split_of(i) for i in range(40)} == {"train", "val", "test"}
    root = generate_dataset(tmp_path, num_identities=4, clips_per_identity=1, seconds=0.6, resolution=32,
                            workers=1, progress=False)
    index = json.loads((root / "index.json").read_text())
    assert len(index) == 4 and {e["split"] for e in index} == {split_of(i) for i in range(4)}
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*.npz")}
    generate_dataset(tmp_path, num_identities=4, clips_per_identity=1, seconds=0.6, resolution=32, workers=1,
                     progress=False)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.npz")} == mtimes
    clip = load_clip(next(iter(mtimes)))
    assert clip.frames.shape[1:] == (32, 32, 3)


def test_synth_voice_stands_in_without_espeak(monkeypatch):
    from llia_core.training.data import speech

    monkeypatch.setattr(speech, "have_espeak", lambda: False)
    wave = speech.speech_with_pauses(2.0, np.random.default_rng(0))
    assert wave.shape == (32000,) and np.abs(wave).max() > 0.1


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate_dataset(root, num_identities=6, clips_per_identity=1, seconds=1.0, resolution=32, split="train",
                     workers=1, progress=False)
    return root


def test_base_then_distill_then_resume(tiny_data, tmp_path, monkeypatch):
    from llia_core import config as config_module
    from llia_core.checkpoints import load_model
    from llia_core.training.trainer import TrainConfig, train

    monkeypatch.setitem(config_module.CONFIGS, "tiny", tiny_config())
    base = TrainConfig(data=str(tiny_data), out_dir=str(tmp_path / "base"), config="tiny", steps=6, batch_frames=8,
                       save_every=3, log_every=2, warmup=2, progress=False)
    path = train(base)
    model = load_model(path)
    assert model.config.name == "tiny"
    rows = (tmp_path / "base" / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 4 and all(np.isfinite(float(r.split(",")[1])) for r in rows[1:])
    # resume: a second call with more steps continues from step 6
    train(dataclasses.replace(base, steps=8))
    assert (tmp_path / "base" / "log.csv").read_text().strip().splitlines()[-1].startswith("8,")
    student = train(TrainConfig(data=str(tiny_data), out_dir=str(tmp_path / "distill"), stage="distill", init=str(path),
                                steps=3, batch_frames=8, log_every=1, warmup=1, progress=False))
    assert load_model(student).config == model.config


def test_variable_lengths_cover_one_frame_to_max():
    from llia_core.training.batches import draw_lengths

    rng = np.random.default_rng(0)
    fixed = {draw_lengths(rng, 0, 10, 8, 16, 2)[0] for _ in range(50)}
    variable = {draw_lengths(rng, 20, 10, 8, 16, 2)[0] for _ in range(400)}
    assert fixed == {8}
    assert min(variable) == 1 and max(variable) == 16


def test_base_loss_learns_on_a_fixed_batch(tiny_data):
    """A few optimizer steps on one batch must reduce the loss: gradients reach every module."""
    from llia_core.models import LLIAModel
    from llia_core.sampling import training_scheduler
    from llia_core.training.batches import load_training_clips, sample_batch
    from llia_core.training.trainer import TrainConfig, base_loss, fewstep_timesteps

    torch.manual_seed(0)
    cfg = tiny_config()
    model = LLIAModel(cfg)
    clips = load_training_clips(tiny_data, "train", cfg, progress=False)
    batch = sample_batch(clips, np.random.default_rng(0), clip_len=3, motion=2, batch_frames=10)
    assert batch.frames.shape[1] == 5 and batch.motion_flags[:, :2].all() and not batch.motion_flags[:, 2:].any()
    sched = training_scheduler(cfg)
    tc = TrainConfig(audio_dropout=0.0, reference_dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(12):
        loss = base_loss(model, batch, sched, torch.Generator().manual_seed(0), tc, fewstep_timesteps(cfg))
        opt.zero_grad()
        loss.backward()
        losses.append(float(loss.detach()))
        opt.step()
    grads = [n for n, p in model.named_parameters() if p.grad is None and "conv_out" not in n and "refine" not in n
             and "null_audio" not in n and not n.startswith("reference_net.unet.up_blocks.1")
             and "conv_norm_out" not in n]
    assert losses[-1] < 0.7 * losses[0]
    assert not [g for g in grads if not g.startswith("reference_net.unet.up_blocks")], grads[:5]


def test_metrics_behave():
    from llia_core.evaluation.metrics import boundary_ratio, psnr, region_mask, ssim

    a = torch.rand(4, 32, 32, 3)
    assert torch.all(psnr(a, a) > 90) and torch.allclose(ssim(a, a), torch.ones(4), atol=1e-4)
    noisy = (a + 0.1 * torch.randn_like(a)).clamp(0, 1)
    assert torch.all(psnr(a, noisy) < 25)
    keep = region_mask(32, 32, (0, 0, 16, 32))
    b = a.clone()
    b[:, :, :16] = 0
    assert torch.all(psnr(a, b, keep) > 90)
    smooth = torch.linspace(0, 1, 20)[:, None, None, None].expand(20, 4, 4, 3).clone()
    jumpy = smooth.clone()
    jumpy[10:] += 0.3
    assert abs(boundary_ratio(smooth, [10]) - 1) < 1e-4 and boundary_ratio(jumpy, [10]) > 3


def test_mouth_weight_map_covers_the_mouth_box():
    from llia_core.config import get_config
    from llia_core.training.trainer import mouth_weight_map

    cfg = get_config("demo")
    w = mouth_weight_map(cfg, 10.0)[0, 0, 0]
    assert w.shape == (32, 32) and set(w.unique().tolist()) == {1.0, 11.0}
    x0, y0, x1, y1 = mouth_box(128)
    assert (w[y0 // 4:(y1 - 1) // 4 + 1, x0 // 4:(x1 - 1) // 4 + 1] == 11).all()  # every mouth pixel weighted
    assert (w > 1).float().mean() < 0.1


def test_mouth_head_learns_the_true_mouth_and_can_be_added_to_an_old_model(tiny_data):
    from llia_core.models import LLIAModel
    from llia_core.training.batches import load_training_clips, sample_batch
    from llia_core.training.trainer import mouth_aux_loss, with_new_heads

    torch.manual_seed(0)
    old = LLIAModel(tiny_config())
    assert old.denoiser.audio_encoder.mouth_head is None
    cfg = tiny_config(audio=dataclasses.replace(tiny_config().audio, mouth_head=True))
    grown = with_new_heads(old, cfg)
    assert grown.denoiser.audio_encoder.mouth_head is not None
    old_sd = old.state_dict()
    assert all(torch.equal(v, old_sd[k]) for k, v in grown.state_dict().items() if "mouth_head" not in k)
    other = tiny_config(resolution=64)
    assert with_new_heads(old, other) is old  # another architecture is not silently rebuilt
    clips = load_training_clips(tiny_data, "train", cfg, progress=False)
    batch = sample_batch(clips, np.random.default_rng(0), clip_len=6, motion=0, batch_frames=24)
    assert batch.mouth is not None and batch.mouth.shape == (*batch.states.shape, 3)
    opt = torch.optim.Adam(grown.denoiser.audio_encoder.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = mouth_aux_loss(grown, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0]
    assert float(mouth_aux_loss(old, batch)) == 0.0  # no head: no auxiliary loss


def test_large_datasets_are_read_from_disk_when_drawn_with_the_same_batches(tiny_data):
    """Past in_memory clips the pool keeps only paths and frame counts; the batches drawn are the same."""
    from llia_core.training.batches import load_training_clips, sample_batch

    cfg = tiny_config()
    memory = load_training_clips(tiny_data, "train", cfg, progress=False)
    disk = load_training_clips(tiny_data, "train", cfg, progress=False, in_memory=1)
    assert not memory.lazy and disk.lazy and len(disk._memory) == 0
    assert list(disk.lengths) == [c.frames.shape[0] for c in memory]
    disk.cache = 2
    for seed in range(3):
        a = sample_batch(memory, np.random.default_rng(seed), clip_len=4, motion=1, batch_frames=15)
        b = sample_batch(disk, np.random.default_rng(seed), clip_len=4, motion=1, batch_frames=15)
        assert torch.equal(a.frames, b.frames) and torch.equal(a.windows, b.windows)
        assert torch.equal(a.states, b.states) and torch.equal(a.reference, b.reference)
    assert len(disk._memory) <= 2  # only the last clips read stay in memory
