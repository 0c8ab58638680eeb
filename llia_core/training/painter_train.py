"""Training the mouth painter (``models/mouth_painter.py``) on real mouths (``painter_data.py``).

A real window with its opening blanked (the face mesh's inner lip line, grown by the painter's own
feathering) is painted back; the loss is the L1 of the pixels and of their gradients (edges of teeth
and lips) inside the opening and a pixel around it, optionally with a patch critic's hinge loss (an
L1 painter paints the average of teeth, tongue and throat: a lip-coloured blur). Batches mix
the in-the-wild videos and GRID equally, open mouths 5x as often as barely parted ones, shut ones
never (``SHUT``). Augmented alike in window and reference: mirror, colour gain and light; the window
alone: a small shift, scale and turn (the warp never puts the lips exactly where the mesh would).
Resumable: the checkpoint holds the optimiser and the step.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.mouth_painter import CHANNELS, SIZE, MouthPainter, drawn_opening, feathered

OPEN = 0.03  # lip gap (face-box units) from which a window counts as an open mouth
SHUT = 0.02  # windows under this lip gap are left out: the mesh's "opening" of a shut mouth is lip, and a
# painter taught to paint lip there paints lip into every opening the warp makes


class PainterBatches:
    """Random augmented batches from a ``painter_data`` file: (window, opening, reference, drawn opening);
    the window is the target too."""

    def __init__(self, path: str, seed: int = 0):
        z = np.load(path)
        self.crops, self.polys, self.gaps = z["crops"], z["polys"], z["gaps"]
        self.video, self.refs, self.people = z["video"], z["refs"], z["people"]
        self.rng = np.random.default_rng(seed)
        grid = np.array([str(self.people[v]).startswith("grid_") for v in self.video])
        w = np.where(self.gaps >= OPEN, 5.0, np.where(self.gaps >= SHUT, 1.0, 0.0))
        # half of each batch in the wild, half GRID (when both exist)
        for part in (grid, ~grid):
            if part.any():
                w[part] /= w[part].sum() * (2 if grid.any() and (~grid).any() else 1)
        self.weights = w / w.sum()

    def masks(self, polys: np.ndarray) -> np.ndarray:
        import cv2

        w, h = SIZE
        out = np.zeros((len(polys), h, w), np.float32)
        for k, p in enumerate(polys):
            cv2.fillPoly(out[k], [np.round(p * 16).astype(np.int32)], 1.0, cv2.LINE_8, 4)
        return out

    def sample(self, n: int, augment: bool = True, index: np.ndarray | None = None):
        import cv2

        rng = self.rng
        idx = rng.choice(len(self.gaps), n, p=self.weights) if index is None else index
        w, h = SIZE
        crops = self.crops[idx].astype(np.float32)
        polys = self.polys[idx].copy()
        refs = self.refs[self.video[idx], rng.integers(0, self.refs.shape[1], len(idx)) if augment else 0]
        refs = refs.astype(np.float32)
        if augment:
            for k in range(len(idx)):
                a = math.radians(rng.uniform(-4, 4))
                s = rng.uniform(0.93, 1.07)
                c = np.array([w / 2, h / 2])
                m = cv2.getRotationMatrix2D(tuple(c), math.degrees(a), s)
                m[:, 2] += rng.uniform(-3, 3, 2)
                crops[k] = cv2.warpAffine(crops[k], m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                polys[k] = polys[k] @ m[:, :2].T + m[:, 2]
            flip = rng.random(len(idx)) < 0.5
            crops[flip] = crops[flip, :, ::-1]
            refs[flip] = refs[flip, :, ::-1]
            polys[flip, :, 0] = w - polys[flip, :, 0]
            gain = rng.uniform(0.85, 1.15, (len(idx), 1, 1, 3)) * rng.uniform(0.8, 1.2, (len(idx), 1, 1, 1))
            gain = gain.astype(np.float32)
            crops, refs = np.clip(crops * gain, 0, 255), np.clip(refs * gain, 0, 255)
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2) / 127.5 - 1  # noqa: E731
        openings = self.masks(polys) > 0
        drawn = np.stack([drawn_opening(c, o) for c, o in zip(crops, openings)])
        opening = torch.from_numpy(openings.astype(np.float32))[:, None]
        return t(crops), opening, t(refs), t(drawn) * opening


def _sobel(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], device=x.device) / 4
    kx = k.expand(x.shape[1], 1, 3, 3)
    ky = k.t().expand(x.shape[1], 1, 3, 3)
    return torch.cat([F.conv2d(x, kx, padding=1, groups=x.shape[1]), F.conv2d(x, ky, padding=1, groups=x.shape[1])], 1)


def painter_loss(painted: torch.Tensor, target: torch.Tensor, opening: torch.Tensor) -> torch.Tensor:
    """L1 of pixels and of gradients inside the painted region (``feathered``) grown by a pixel, over its area."""
    region = F.max_pool2d(feathered(opening), 3, 1, 1)
    area = region.sum() + 1.0
    pix = ((painted - target).abs() * region).sum() / (3 * area)
    grad = ((_sobel(painted) - _sobel(target)).abs() * region).sum() / (6 * area)
    return pix + grad


class MouthCritic(nn.Module):
    """A patch critic for the adversarial fine-tune: (window, opening mask) -> a real/painted score per
    ~16 px patch (4 x 6 over the window)."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        self.net = nn.Sequential(nn.Conv2d(4, w, 4, 2, 1), act(), nn.Conv2d(w, 2 * w, 4, 2, 1), act(),
                                 nn.Conv2d(2 * w, 4 * w, 4, 2, 1), act(), nn.Conv2d(4 * w, 1, 3, 1, 1))

    def forward(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([window, mask], 1))


def _patch_weights(mask: torch.Tensor, size) -> torch.Tensor:
    """Per critic patch, whether it holds any of the opening (only those are judged)."""
    w = (F.adaptive_max_pool2d(mask, size) > 0.05).float()
    return w / (w.sum() + 1.0)


def train_painter(data: str, out: str, *, val: str | None = None, steps: int = 3000, batch: int = 32,
                  lr: float = 2e-3, seed: int = 0, save_every: int = 200, threads: int | None = None,
                  device: str = "cpu", adversarial: float = 0.0, channels: tuple[int, int, int] = CHANNELS,
                  log=print) -> MouthPainter:
    """Train (or resume) a painter; ``out`` is the checkpoint (.pt) written every ``save_every`` steps
    and at the end. ``adversarial`` > 0: a patch critic judges the painted openings against real ones,
    its hinge loss that much of the painter's loss.
    -> the trained painter (eval mode)."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    batches = PainterBatches(data, seed)
    val_batches = PainterBatches(val, seed + 1) if val else None
    model = MouthPainter(channels).to(device)
    critic = MouthCritic().to(device) if adversarial > 0 else None
    betas = (0.5, 0.999) if critic is not None else (0.9, 0.999)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4, betas=betas)
    opt_c = torch.optim.AdamW(critic.parameters(), lr=lr, betas=betas) if critic is not None else None
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    step = 0
    ck = Path(out)
    if ck.exists():
        state = torch.load(ck, map_location=device, weights_only=True)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError:
            from ..errors import LLIAError

            raise LLIAError(f"'{ck}' holds a painter of other widths than {tuple(channels)}: resume it with the "
                            "widths it was started with (--painter-channels), or train into another --out-dir") from None
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        if critic is not None:
            critic.load_state_dict(state["critic"])
            opt_c.load_state_dict(state["opt_critic"])
        step = int(state["step"])
        batches.rng = np.random.default_rng(seed + step)
        log(f"resumed at step {step}")
    val_set = None
    if val_batches is not None:
        open_idx = np.flatnonzero(val_batches.gaps >= OPEN)
        pick = np.random.default_rng(0).choice(open_idx, min(256, len(open_idx)), replace=False)
        val_set = val_batches.sample(len(pick), augment=False, index=pick)

    def save():
        ck.parent.mkdir(parents=True, exist_ok=True)
        tmp = ck.with_suffix(".tmp")
        state = {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step}
        if critic is not None:
            state.update(critic=critic.state_dict(), opt_critic=opt_c.state_dict())
        torch.save(state, tmp)
        tmp.replace(ck)

    t0, run = time.perf_counter(), []
    model.train()
    while step < steps:
        win, mask, ref, drawn = (x.to(device) for x in batches.sample(batch))
        painted = model(win, mask, ref, drawn)
        loss = painter_loss(painted, win, mask)
        if critic is not None:
            region = feathered(mask)
            real_s, fake_s = critic(win, region), critic(painted.detach(), region)
            pw = _patch_weights(region, real_s.shape[-2:])
            loss_c = ((F.relu(1 - real_s) + F.relu(1 + fake_s)) * pw).sum()
            opt_c.zero_grad(set_to_none=True)
            loss_c.backward()
            opt_c.step()
            loss = loss - adversarial * (critic(painted, region) * pw).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        run.append(loss.item())
        if step % 50 == 0 or step == steps:
            msg = f"step {step} loss {np.mean(run):.4f} ({(time.perf_counter() - t0) / len(run):.2f} s/step)"
            run, t0 = [], time.perf_counter()
            if val_set is not None and (step % save_every == 0 or step == steps):
                model.eval()
                with torch.no_grad():
                    w, m, r, d = (x.to(device) for x in val_set)
                    msg += f" val {float(painter_loss(model(w, m, r, d), w, m)):.4f}"
                model.train()
            log(msg)
        if step % save_every == 0 or step == steps:
            save()
    return model.eval()


def painter_stage(tc, config, out, device: torch.device | str = "cpu") -> Path:
    """``train --stage painter`` on ``device`` (the trainer's pick: ``--device auto`` is the GPU where there
    is one): the mouth windows of the face tracks in ``tc.data`` cut from their videos
    (``tc.videos``; people and videos in ``tc.holdout`` left out; made once, ``out/painter_windows.npz``),
    the painter trained on them (resumable, ``out/painter.pt``), and put into ``tc.init``'s model
    (everything else kept) -> ``out/model.safetensors``."""
    import dataclasses
    import json

    from ..checkpoints import load_raw_checkpoint, save_model
    from ..config import MouthPainterConfig
    from ..errors import LLIAError
    from ..models import LLIAModel
    from .mouth_train import convert_state
    from .painter_data import build_painter_data

    if not tc.videos:
        raise LLIAError("train --stage painter needs --videos: the folders the face tracks in --data were made from "
                        "(e.g. ../shared/realfaces/talking,../shared/realfaces/grid)")
    if config.mouth_painter is None:
        config = dataclasses.replace(config, mouth_painter=MouthPainterConfig())
    if tc.painter_channels:
        try:
            channels = tuple(int(c) for c in tc.painter_channels.split(","))
        except ValueError:
            channels = ()
        if len(channels) != 3 or min(channels) < 1:
            raise LLIAError(f"--painter-channels '{tc.painter_channels}': give the painter's three widths, e.g. 32,64,128")
        config = dataclasses.replace(config, mouth_painter=MouthPainterConfig(channels))
    holdout = tuple(filter(None, tc.holdout.split(",")))
    out = Path(out)
    windows = out / "painter_windows.npz"
    if not windows.exists():
        build_painter_data(tc.data, tc.videos, str(windows), holdout, progress=tc.progress)
    t0 = time.time()
    net = train_painter(str(windows), str(out / "painter.pt"), steps=tc.steps, lr=tc.lr, seed=tc.seed,
                        save_every=tc.save_every, threads=tc.threads, device=str(device),
                        adversarial=tc.adversarial_weight, channels=tuple(config.mouth_painter.channels)).cpu()
    model = convert_state(load_raw_checkpoint(tc.init)[0], config, "mouth_painter.") if tc.init else LLIAModel(config)
    model.mouth_painter.load_state_dict(net.state_dict())
    people = sorted(set(str(p) for p in np.load(windows)["people"]))
    (out / "painter.json").write_text(json.dumps({"people": people, "holdout": list(holdout), "steps": tc.steps,
                                                  "channels": list(config.mouth_painter.channels),
                                                  "adversarial_weight": tc.adversarial_weight,
                                                  "train_seconds": round(time.time() - t0, 1)}, indent=1))
    final = out / "model.safetensors"
    save_model(model, final, dtype=torch.float16, stage="painter")
    return final
