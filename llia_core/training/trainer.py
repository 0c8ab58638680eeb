"""The LLIA training recipe: base model, then consistency distillation into a few-step student.

Stage ``base``: the config's prediction type (x0 with a reference skip for the demo model,
v for sd15) with a uniform loss weight (min-SNR weighting gives zero weight at t = T under a
zero-terminal-SNR schedule, which breaks 1-step sampling), fixed clip length for
the first ``fixed_fraction`` of steps, then variable lengths from 1 frame up, motion frames from
the preceding frames, audio and reference dropout for guidance. A share of the timesteps is drawn
from those the few-step sampler visits, so the model is good exactly where it will be used.

Stage ``distill``: latent consistency distillation (Luo et al. 2023): the student maps x_t to
the same clean estimate as the EMA target maps the teacher's guided DDIM step x_{t-k}; the
teacher's classifier-free guidance on audio is distilled in.

A new head can be added to a finished base model and trained alone (``--config`` with the head,
``--init`` the base model, ``--train-only`` the head's name): the bundled model's mouth paint is
trained that way, in 12 minutes instead of a new 74-minute base run.

Both stages resume from ``out_dir/state.safetensors`` and stop cleanly on a step or time budget,
writing ``model.safetensors`` (EMA weights) and ``log.csv``.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoints import load_model, save_model
from ..config import get_config
from ..models import LLIAModel
from ..sampling import consistency_scheduler, training_scheduler
from .batches import Batch, draw_lengths, load_training_clips, sample_batch
from .state import load_training_state, save_training_state, update_ema


@dataclass
class TrainConfig:
    """Hyperparameters of one training stage (every field is a CLI flag)."""

    data: str = "data/train"
    out_dir: str = "runs/base"
    stage: str = "base"  # "mouth" (the audio-to-mouth model), "head" (the head-motion model), "painter" (the
    # mouth painter), "base" or "distill"
    config: str = "demo"
    init: str | None = None  # checkpoint to start from (distill: the teacher)
    steps: int = 4000
    minutes: float | None = None  # wall-clock budget for this invocation
    stop_step: int | None = None  # stop this invocation at this step (the schedule still spans `steps`)
    batch_frames: int = 24
    lr: float = 3e-4
    warmup: int = 100
    fixed_fraction: float = 0.25
    fixed_len: int = 8
    audio_dropout: float = 0.1
    reference_dropout: float = 0.05
    fewstep_fraction: float = 0.3
    mouth_weight: float = 10.0  # extra loss weight on the mouth region (a few % of the pixels)
    mouth_aux_weight: float = 0.5  # weight of the audio -> mouth-parameter loss (models with a mouth head)
    paint_aux_weight: float = 0.0  # weight of the mouth paint's own proposal loss (models with a paint)
    holdout: str = ""  # stages mouth, head and painter: people or videos (comma list) never trained on
    synthetic_voices: int = 3  # stage mouth: espeak-ng readings of every GRID sentence (0: none)
    photos: str = ""  # stage mouth: portraits to measure how the landmarks read a drawn opening on
    videos: str = ""  # stage painter: comma list of the folders the face tracks in --data were made from
    adversarial_weight: float = 0.0  # stage painter: a patch critic's hinge loss at this weight beside the L1
    painter_channels: str = ""  # stage painter: widths of its three scales, e.g. 32,64,128 (default: the config's)
    ema_decay: float = 0.998
    guidance_scale: float = 1.5  # teacher guidance distilled into the student
    skip: int = 20  # DDIM solver skip (1000 / 20 = 50-step teacher discretisation)
    train_only: str | None = None  # train only parameters whose name contains this (e.g. a new head)
    seed: int = 0
    save_every: int = 200
    log_every: int = 20
    max_clips: int | None = None
    in_memory_clips: int = 2000  # larger datasets are read from disk when drawn (ClipPool)
    threads: int | None = None
    progress: bool = True
    device: str = "auto"  # auto: this rank's GPU when there is one, else the CPU
    precision: str = "auto"  # fp32 or bf16 (autocast; fp32 master weights); auto: bf16 on GPUs
    gradient_checkpointing: str = "auto"  # on, off; auto: on on GPUs (recompute activations, less memory)


def _encode_frames(model: LLIAModel, frames: torch.Tensor) -> torch.Tensor:
    """frames (B, F, 3, R, R) -> latents (B, C, F, h, w)."""
    b, f = frames.shape[:2]
    lat = model.encode_pixels(frames.flatten(0, 1))
    return lat.reshape(b, f, *lat.shape[1:]).permute(0, 2, 1, 3, 4)


def _keep(gen: torch.Generator, b: int, f: int, p: float, device=None) -> torch.Tensor:
    return (torch.rand(b, generator=gen) >= p)[:, None].expand(b, f).to(device)


def _timesteps(gen, b, scheduler, fewstep: torch.Tensor, fraction: float) -> torch.Tensor:
    t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=gen)
    pick = torch.rand(b, generator=gen) < fraction
    t[pick] = fewstep[torch.randint(0, len(fewstep), (int(pick.sum()),), generator=gen)]
    return t


def fewstep_timesteps(config) -> torch.Tensor:
    """The timesteps the 1-, 2- and 4-step consistency samplers visit."""
    sched = consistency_scheduler(config)
    ts = []
    for n in (1, 2, 4):
        sched.set_timesteps(n)
        ts += sched.timesteps.tolist()
    return torch.tensor(sorted(set(ts)))


def mouth_weight_map(config, weight: float) -> torch.Tensor:
    """(1, 1, 1, h, w) loss weights: 1 + ``weight`` where the mouth can be in a framed crop.

    The mouth lies in the face box's lower middle (face-box units 0.3 to 0.98 down, +-0.5 across).
    Without this the mouth, a few percent of the pixels, barely moves the loss and a small model
    keeps it closed for a long time.
    """
    r, f = config.resolution, config.autoencoder.downscale
    (x0, y0), (x1, y1) = config.framing.to_pixels([[-0.5, 0.3], [0.5, 0.98]], r)
    mask = torch.zeros(r, r)
    mask[max(0, int(y0)):int(y1) + 1, max(0, int(x0)):int(x1) + 1] = 1
    latent = F.max_pool2d(mask[None, None], f)[0, 0]
    return (1 + weight * latent)[None, None, None]


def _alpha_sigma(scheduler, t: torch.Tensor, ndim: int):
    acp = scheduler.alphas_cumprod.to(t.device)[t].float()
    shape = (-1,) + (1,) * (ndim - 1)
    return acp.sqrt().reshape(shape), (1 - acp).sqrt().reshape(shape)


def base_loss(model: LLIAModel, batch: Batch, scheduler, gen: torch.Generator, tc: TrainConfig,
              fewstep: torch.Tensor) -> torch.Tensor:
    """Prediction MSE on the new frames of a batch (motion frames stay clean, unscored)."""
    x0 = _encode_frames(model, batch.frames)
    b, c, f = x0.shape[:3]
    ref_latent = model.encode_pixels(batch.reference)
    bank = model.reference_net(ref_latent)
    dev = x0.device  # random draws on the CPU generator (the same on every device), then moved
    noise = torch.randn(x0.shape, generator=gen).to(dev)
    t = _timesteps(gen, b, scheduler, fewstep, tc.fewstep_fraction).to(dev)
    motion = batch.motion_flags[:, None, :, None, None]
    xt = scheduler.add_noise(x0, noise, t) * (1 - motion) + x0 * motion
    with PaintInputs(model, tc.paint_aux_weight) as paint_inputs:
        pred = model.denoiser(xt, t, batch.windows, batch.states, ref_latent, bank, batch.face_mask,
                              batch.motion_flags, audio_keep=_keep(gen, b, f, tc.audio_dropout, dev),
                              reference_keep=_keep(gen, b, f, tc.reference_dropout, dev), mouth=_true_mouth(model, batch))
    target = prediction_target(scheduler, x0, noise, t)
    w = (1 - motion) * mouth_weight_map(model.config, tc.mouth_weight).to(dev)
    loss = ((pred - target) ** 2 * w).sum() / (w.sum() * c)
    loss = loss + tc.paint_aux_weight * paint_inputs.loss(x0, batch.motion_flags)
    return loss + tc.mouth_aux_weight * mouth_aux_loss(model, batch)


def _true_mouth(model: LLIAModel, batch: Batch) -> torch.Tensor | None:
    """Warp models are trained with the true mouth shape (the frame shows it), so the residual
    learns what the warp cannot show for a given shape; the mouth model is trained on its own."""
    return batch.mouth if model.config.reference_warp else None


class PaintInputs:
    """Catches what the mouth paint was given in one denoiser call, to train its proposal alone.

    The paint's gate only opens where its proposal beats the prediction, and the proposal only
    learns where the gate is open; a loss on the proposal itself (against the clean frame, in the
    lips cells) breaks that circle. Does nothing for models without a paint or at weight 0.
    """

    def __init__(self, model: LLIAModel, weight: float):
        self.paint = model.denoiser.mouth_paint if weight > 0 else None
        self.inputs = None
        self._hook = None

    def __enter__(self):
        if self.paint is not None:
            self._hook = self.paint.register_forward_hook(lambda mod, args, out: setattr(self, "inputs", args))
        return self

    def __exit__(self, *exc):
        if self._hook is not None:
            self._hook.remove()

    def loss(self, x0: torch.Tensor, motion_flags: torch.Tensor) -> torch.Tensor:
        """MSE of the proposal against x0 (B, C, F, h, w) over the lips cells of generated frames."""
        if self.inputs is None:
            return torch.zeros(())
        painted, _, lips = self.paint.propose(*(None if a is None else a.detach() for a in self.inputs))  # alone
        b, c, f, h, w = x0.shape
        truth = x0.transpose(1, 2).reshape(b * f, c, h, w)
        lips = lips * (1 - motion_flags.reshape(b * f).to(lips.dtype))[:, None, None, None]
        return ((painted.float() - truth) ** 2 * lips).sum() / (lips.sum() * c).clamp_min(1.0)


def mouth_aux_loss(model: LLIAModel, batch: Batch) -> torch.Tensor:
    """MSE of the audio encoder's mouth head against the true mouth parameters (0 without either)."""
    enc = model.denoiser.audio_encoder
    if enc.mouth_head is None or batch.mouth is None:
        return torch.zeros(())
    b, f = batch.states.shape
    tokens = enc(batch.windows.flatten(0, 1), batch.states.flatten(0, 1))
    return F.mse_loss(enc.predict_mouth(tokens), batch.mouth.flatten(0, 1))


def prediction_target(scheduler, x0, noise, t):
    kind = scheduler.config.prediction_type
    if kind == "sample":
        return x0
    if kind == "epsilon":
        return noise
    return scheduler.get_velocity(x0, noise, t)


def predicted_x0_eps(scheduler, x, t, pred):
    """(x0_hat, eps_hat) from a model prediction of the scheduler's prediction type."""
    a, s = _alpha_sigma(scheduler, t, x.ndim)
    kind = scheduler.config.prediction_type
    if kind == "sample":
        return pred, (x - a * pred) / s.clamp_min(1e-4)
    if kind == "epsilon":
        return (x - s * pred) / a.clamp_min(1e-4), pred
    return a * x - s * pred, s * x + a * pred


def _consistency_fn(model, lcm, scheduler, x, t, pred):
    """LCM parameterisation f(x, t) = c_skip x + c_out x0_hat, exact identity at t = 0."""
    x0 = predicted_x0_eps(scheduler, x, t, pred)[0]
    c_skip, c_out = lcm.get_scalings_for_boundary_condition_discrete(t)
    shape = (-1,) + (1,) * (x.ndim - 1)
    return c_skip.reshape(shape) * x + c_out.reshape(shape) * x0


def distill_loss(student: LLIAModel, target: LLIAModel, teacher: LLIAModel, batch: Batch, scheduler, lcm,
                 gen: torch.Generator, tc: TrainConfig) -> torch.Tensor:
    """One latent-consistency-distillation step (guided DDIM teacher, EMA target)."""
    x0 = _encode_frames(student, batch.frames)
    b, c, f = x0.shape[:3]
    motion = batch.motion_flags[:, None, :, None, None]
    n_steps = scheduler.config.num_train_timesteps // tc.skip
    idx = torch.randint(0, n_steps, (b,), generator=gen)
    dev = x0.device
    t = ((idx + 1) * tc.skip - 1).to(dev)  # 19, 39, ..., 999
    s = (t - tc.skip).clamp(min=0)
    noise = torch.randn(x0.shape, generator=gen).to(dev)
    xt = scheduler.add_noise(x0, noise, t) * (1 - motion) + x0 * motion
    ones = torch.ones(b, f, dtype=torch.bool, device=dev)
    with torch.no_grad():
        ref_t = teacher.encode_pixels(batch.reference)
        bank_t = teacher.reference_net(ref_t)
        two = lambda z: torch.cat([z, z])  # noqa: E731
        mouth = _true_mouth(student, batch)
        v = teacher.denoiser(two(xt), two(t), two(batch.windows), two(batch.states), two(ref_t),
                             {k: two(v) for k, v in bank_t.items()}, two(batch.face_mask),
                             two(batch.motion_flags), audio_keep=torch.cat([ones, ~ones]),
                             reference_keep=torch.cat([ones, ones]), mouth=None if mouth is None else two(mouth))
        v = v[b:] + tc.guidance_scale * (v[:b] - v[b:])
        x0_hat, eps_hat = predicted_x0_eps(scheduler, xt, t, v)
        a_s, s_s = _alpha_sigma(scheduler, s, xt.ndim)
        xs = (a_s * x0_hat + s_s * eps_hat) * (1 - motion) + x0 * motion
        ref_g = target.encode_pixels(batch.reference)
        v_g = target.denoiser(xs, s, batch.windows, batch.states, ref_g, target.reference_net(ref_g),
                              batch.face_mask, batch.motion_flags, mouth=mouth)
        goal = _consistency_fn(target, lcm, scheduler, xs, s, v_g)
    ref_s = student.encode_pixels(batch.reference)
    with PaintInputs(student, tc.paint_aux_weight) as paint_inputs:
        v_s = student.denoiser(xt, t, batch.windows, batch.states, ref_s, student.reference_net(ref_s),
                               batch.face_mask, batch.motion_flags, mouth=mouth)
    pred = _consistency_fn(student, lcm, scheduler, xt, t, v_s)
    w = (1 - motion) * mouth_weight_map(student.config, tc.mouth_weight).to(dev)
    err = torch.sqrt((pred - goal) ** 2 + 1e-3**2) - 1e-3  # pseudo-Huber, as in LCM
    loss = (err * w).sum() / (w.sum() * c) + tc.paint_aux_weight * paint_inputs.loss(x0, batch.motion_flags)
    return loss + tc.mouth_aux_weight * mouth_aux_loss(student, batch)


def with_new_heads(model: LLIAModel, config) -> LLIAModel:
    """``model`` rebuilt with ``config`` when that only adds heads (mouth head, mouth paint) or moves
    the crop (``framing``) or the opening's start (``opening_light``); else unchanged.

    Lets a base model trained before a head existed continue training with it: every existing
    weight is kept, only the head starts fresh. A new framing keeps every weight (the network is
    convolutional; training teaches it the new scale).
    """
    if config == model.config:
        return model
    old = model.config
    plain = dataclasses.replace(config, audio=dataclasses.replace(config.audio, mouth_head=old.audio.mouth_head),
                                mouth_paint=old.mouth_paint, name=old.name, mouth_paint_gate=old.mouth_paint_gate,
                                face_scale=old.face_scale, crop_centre_y=old.crop_centre_y,
                                opening_light=old.opening_light)
    if plain != model.config:
        return model  # another architecture: keep the checkpoint's own config
    grown = LLIAModel(config)
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(".mouth_head." not in k and ".mouth_paint." not in k for k in missing):
        raise ValueError(f"cannot add heads: missing {missing}, unexpected {unexpected}")
    if missing:
        print(f"added {len(missing)} new head tensors to the initial model")
    if config.framing != old.framing:
        print(f"the initial model's crop moved from {old.framing} to {config.framing}")
    return grown


class StageLoss(torch.nn.Module):
    """One stage's loss for a batch as a module call, so DistributedDataParallel can wrap the model.

    Only the trained model is a submodule; the teacher and the EMA target are held aside, so DDP
    neither averages nor broadcasts them (every rank keeps its own identical copy).
    """

    def __init__(self, model: LLIAModel, tc: TrainConfig, scheduler, lcm, fewstep, teacher=None, ema=None):
        super().__init__()
        self.model = model
        self.tc, self.scheduler, self.lcm, self.fewstep = tc, scheduler, lcm, fewstep
        self._aside = (teacher, ema)

    def forward(self, batch: Batch, gen: torch.Generator) -> torch.Tensor:
        teacher, ema = self._aside
        if self.tc.stage == "base":
            return base_loss(self.model, batch, self.scheduler, gen, self.tc, self.fewstep)
        return distill_loss(self.model, ema, teacher, batch, self.scheduler, self.lcm, gen, self.tc)


def _precision(tc: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None: plain fp32)."""
    if tc.precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"unknown --precision {tc.precision!r}; use auto, fp32 or bf16")
    if tc.precision == "bf16" or (tc.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def _checkpointing(tc: TrainConfig, device: torch.device) -> bool:
    if tc.gradient_checkpointing not in ("auto", "on", "off"):
        raise ValueError(f"unknown --gradient-checkpointing {tc.gradient_checkpointing!r}; use auto, on or off")
    return tc.gradient_checkpointing == "on" or (tc.gradient_checkpointing == "auto" and device.type == "cuda")


def train(tc: TrainConfig) -> Path:
    """Run (or resume) one stage; returns the path of the exported EMA model.

    Under torchrun every rank runs this; see ``distributed.py``.
    """
    from .distributed import start

    if tc.threads:
        torch.set_num_threads(tc.threads)
    ctx = start(tc.device)
    try:
        return _train(tc, ctx)
    finally:
        ctx.close()


def _train(tc: TrainConfig, ctx) -> Path:
    out = Path(tc.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(tc.seed)
    main = ctx.is_main
    if tc.stage == "mouth":  # the audio-to-mouth model: its own small training (models/mouth_model.py)
        from .mouth_train import mouth_stage

        return mouth_stage(tc, get_config(tc.config), out)
    if tc.stage == "head":  # the head-motion model: trained on pose tracks alone (models/head_model.py)
        from .head_train import head_stage

        return head_stage(tc, get_config(tc.config), out)
    if tc.stage == "painter":  # the mouth painter: real mouth windows of the tracks' videos (models/mouth_painter.py)
        from .painter_train import painter_stage

        return painter_stage(tc, get_config(tc.config), out, ctx.device)
    device = ctx.device
    if tc.init:
        model = load_model(tc.init)
        if tc.stage == "base":
            model = with_new_heads(model, get_config(tc.config))
        model = model.train().requires_grad_(True)
    else:
        model = LLIAModel(get_config(tc.config)).train()
    model = model.to(device)
    config = model.config
    teacher = None
    if tc.stage == "distill":
        if not tc.init:
            raise ValueError("distillation needs --init with the trained base model (the teacher)")
        teacher = load_model(tc.init, device=device).eval()
    elif tc.stage != "base":
        raise ValueError(f"unknown stage {tc.stage!r}; use 'mouth', 'head', 'base' or 'distill'")
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    autocast = _precision(tc, device)
    if _checkpointing(tc, device):
        model.denoiser.unet.enable_gradient_checkpointing()
        model.reference_net.unet.enable_gradient_checkpointing()
    if tc.train_only:
        for name, p in model.named_parameters():
            p.requires_grad_(tc.train_only in name)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"--train-only {tc.train_only!r} matches no parameter of the model")
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=0.0, betas=(0.9, 0.99))
    state_path = out / "state.safetensors"
    step = 0
    if state_path.exists():  # every rank reads the same state
        step, _ = load_training_state(state_path, model, ema, opt)
        if main:
            print(f"resumed {tc.stage} from step {step}")
    clips = load_training_clips(tc.data, "train", config, tc.max_clips, tc.progress and main, tc.in_memory_clips)
    scheduler = training_scheduler(config)
    lcm = consistency_scheduler(config)
    fewstep = fewstep_timesteps(config)
    loss_fn = ctx.wrap(StageLoss(model, tc, scheduler, lcm, fewstep, teacher, ema))
    # each rank draws its own batches and noise; rank 0 draws what a single process draws
    rng = np.random.default_rng(tc.seed * 7919 + step + 1_000_003 * ctx.rank)
    gen = torch.Generator().manual_seed(tc.seed * 104729 + step + 1_000_003 * ctx.rank)
    fixed_steps = int(tc.fixed_fraction * tc.steps) if tc.stage == "base" else 0
    log_path = out / "log.csv"
    new_log = not log_path.exists()
    from tqdm import tqdm

    bar = tqdm(total=tc.steps, initial=step, desc=f"train {tc.stage}" + (f" x{ctx.world}" if ctx.active else ""),
               disable=not (tc.progress and main))
    t_start = time.perf_counter()
    losses: list[float] = []
    run = {"train_config": asdict(tc), "ranks": ctx.world}

    def save_state() -> float:
        spread = ctx.check_in_sync(model)
        if main:
            save_training_state(state_path, model, ema, opt, step, run)
        return spread

    with open(log_path if main else os.devnull, "a", newline="") as log_file:  # rank 0 alone logs
        log = csv.writer(log_file)
        if new_log and main:
            log.writerow(["step", "loss", "lr", "clip_len", "motion", "seconds"])
        while step < min(tc.steps, tc.stop_step or tc.steps):
            if tc.minutes is not None and ctx.any(time.perf_counter() - t_start > tc.minutes * 60):
                break
            clip_len, motion = draw_lengths(rng, step, fixed_steps, tc.fixed_len, config.max_clip_frames,
                                            config.motion_frames)
            batch = sample_batch(clips, rng, clip_len=clip_len, motion=motion, batch_frames=tc.batch_frames).to(device)
            lr = tc.lr * min(1.0, (step + 1) / tc.warmup) * (0.5 + 0.5 * math.cos(math.pi * step / tc.steps))
            for g in opt.param_groups:
                g["lr"] = lr
            with torch.autocast(device.type, dtype=autocast) if autocast else contextlib.nullcontext():
                loss = loss_fn(batch, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # DDP averages the gradients of all ranks here
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            update_ema(ema, model, tc.ema_decay if step > tc.warmup else 0.9)
            step += 1
            losses.append(float(loss.detach()))
            bar.update(1)
            if step % tc.log_every == 0:
                mean = ctx.mean(float(np.mean(losses[-tc.log_every:])))
                bar.set_postfix(loss=f"{mean:.4f}", len=clip_len)
                log.writerow([step, f"{mean:.6f}", f"{lr:.2e}", clip_len, motion,
                              f"{time.perf_counter() - t_start:.1f}"])
                log_file.flush()
            if step % tc.save_every == 0:
                save_state()
    bar.close()
    spread = save_state()
    final = out / "model.safetensors"
    if main:
        save_model(ema, final, dtype=torch.float16, stage=tc.stage, steps=str(step), ranks=str(ctx.world),
                   ranks_weight_spread=f"{spread:g}")
    return final

