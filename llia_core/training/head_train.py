"""Training and judging the head-motion model (``models/head_model.py``) on real talkers' pose tracks.

``train_head_model`` fits the GRU by teacher forcing on random stretches of the sequences (mirrored
copies too), in-the-wild videos and GRID weighted alike in all (GRID's one speaker has most of the
frames and barely moves); ``calibrate`` then sets each output's noise temperature so that drawn
motion spreads as far as the training videos' own (median over videos). ``head_statistics``
compares a drawn motion with the real one of the same audio: spread per axis, motion in speech vs in
pauses, motion against loudness, brow raises. ``leave_people_out`` does it for every person with
models that never saw them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import HeadMotionConfig
from ..models.head_model import HEAD_OUTPUTS, HeadMotionModel
from .head_data import HeadSequence

ANGLES = slice(0, 3)
BROW_RAISE = 0.02  # eye distances above the usual: a raise (about 2 mm)
MIN_FRAMES = 50  # shorter videos (LRW's one-word clips) are too short to measure a spread on


@dataclass
class HeadTrainSettings:
    steps: int = 1500
    batch: int = 48
    step_count: int = 17  # steps of 160 ms per training stretch (a GRID clip of 3 s holds 17 and the one before)
    lr: float = 3e-3
    weight_decay: float = 1e-4
    gain_db: float = 6.0  # loudness augmentation (std)
    grid_share: float = 0.3
    seed: int = 0
    threads: int | None = None


class _Stretches:
    """Every start of a training stretch, with sampling weights: each kind its share, spread evenly over
    its frames."""

    def __init__(self, seqs: list[HeadSequence], config: HeadMotionConfig, settings: HeadTrainSettings):
        k, s = config.frames_per_step, settings.step_count
        self.seqs, self.k, self.s = seqs, k, s
        rows, kinds = [], []
        for i, q in enumerate(seqs):
            for start in range(k, q.num_frames - s * k, 2):
                rows.append((i, start))
                kinds.append(q.kind)
        if not rows:
            from ..errors import LLIAError

            raise LLIAError(f"no video is long enough to train the head-motion model on ({s * k + 1} frames needed)")
        self.rows = np.array(rows)
        kinds = np.array(kinds)
        share = {"grid": settings.grid_share, "wild": 1 - settings.grid_share}
        w = np.array([share.get(kd, 0.0) / max((kinds == kd).sum(), 1) for kd in kinds])
        if not (w > 0).any():
            w = np.ones(len(w))
        self.prob = torch.from_numpy(w / w.sum())

    def batch(self, idx: np.ndarray, scale: torch.Tensor):
        k, s = self.k, self.s
        feats, poses, weight = [], [], []
        for i, start in self.rows[idx]:
            q = self.seqs[i]
            keys = start + np.arange(-1, s + 1) * k
            feats.append(q.feats[start:start + s * k])
            p = q.poses[keys]
            poses.append(torch.from_numpy(p) / scale)
            v = q.valid[keys]
            weight.append(torch.from_numpy((v[:-2] & v[1:-1] & v[2:]).astype(np.float32)))
        return torch.stack(feats), torch.stack(poses).float(), torch.stack(weight)


def train_head_model(seqs: list[HeadSequence], config: HeadMotionConfig = HeadMotionConfig(),
                     settings: HeadTrainSettings = HeadTrainSettings(), progress: bool = False) -> HeadMotionModel:
    from tqdm import tqdm

    from .mouth_train import adamw_warmup_cosine

    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    model = HeadMotionModel(config)
    both = list(seqs) + [q.flipped() for q in seqs]
    spread = np.sqrt(np.nanmean(np.concatenate([q.poses[q.valid] for q in both]) ** 2, 0))
    model.scale.copy_(torch.from_numpy(np.maximum(spread, 1e-3)).float())
    pool = _Stretches(both, config, settings)
    loud = config.bands  # the loudness column: a gain shifts it (``head_features``: (loudness + 5) / 5)
    opt, sched = adamw_warmup_cosine(model, settings.lr, settings.weight_decay, settings.steps, warmup=50)
    model.train()
    bar = tqdm(range(settings.steps), desc="head model", disable=not progress)
    for _ in bar:
        idx = torch.multinomial(pool.prob, settings.batch, replacement=True, generator=gen).numpy()
        feats, poses, weight = pool.batch(idx, model.scale)
        if settings.gain_db > 0:  # natural-log mel: 10 dB is ln(10) = 2.3
            gain = torch.randn(len(idx), 1, generator=gen) * settings.gain_db * math.log(10) / 10
            feats = feats.clone()
            feats[:, :, loud] += gain / 5.0
        loss = model.nll(feats, poses, weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    model.eval()
    return model


def _spread(poses: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return np.std(poses[valid], axis=0) if valid.sum() > 2 else np.full(poses.shape[1], np.nan)


def calibrate(model: HeadMotionModel, seqs: list[HeadSequence], rounds: int = 3, seeds: int = 2) -> np.ndarray:
    """Scale each output's noise so drawn motion spreads like the real (median ratio over videos, the
    in-the-wild and the GRID median weighted alike); returns the final real / drawn ratios."""
    usable = [q for q in seqs if q.num_frames >= MIN_FRAMES and q.valid.sum() >= MIN_FRAMES]
    ratio = np.ones(len(HEAD_OUTPUTS))
    for _ in range(rounds):
        per_kind = {}
        for kind in ("wild", "grid"):
            rs = []
            for q in (q for q in usable if q.kind == kind):
                drawn = np.mean([_spread(model.rollout(q.feats, seed), q.valid) for seed in range(seeds)], 0)
                rs.append(_spread(q.poses, q.valid) / np.maximum(drawn, 1e-6))
            if rs:
                per_kind[kind] = np.nanmedian(np.stack(rs), 0)
        if not per_kind:
            break
        ratio = np.exp(np.mean([np.log(np.maximum(r, 1e-3)) for r in per_kind.values()], 0))
        model.temperature.mul_(torch.from_numpy(np.clip(ratio, 0.25, 4.0)).float())
    return ratio


def _speed(poses: np.ndarray) -> np.ndarray:
    """(F,) how fast the head turns, degrees per frame (roll + yaw + pitch)."""
    d = np.abs(np.diff(poses[:, ANGLES], axis=0)).sum(1)
    return np.concatenate([d[:1], d]) if len(d) else np.zeros(len(poses))


def _raises(brow: np.ndarray, fps: float = 25.0) -> float:
    """Brow raises per minute: rises above ``BROW_RAISE`` (with a little hysteresis)."""
    up, count = False, 0
    for b in brow:
        if not up and b > BROW_RAISE:
            up, count = True, count + 1
        elif up and b < BROW_RAISE / 2:
            up = False
    return count / (len(brow) / fps / 60.0)


def motion_measures(poses: np.ndarray, valid: np.ndarray, speech: np.ndarray, loudness: np.ndarray) -> dict:
    """The numbers a head motion is judged by (real and drawn alike)."""
    from ..evaluation.metrics import correlation

    sp = _speed(poses)
    ok = valid & np.concatenate([[False], valid[:-1]])
    talk, pause = ok & speech, ok & ~speech
    out = {f"std_{name}": float(v) for name, v in zip(HEAD_OUTPUTS, _spread(poses, valid))}
    out["speed_speech_vs_pause"] = (float(sp[talk].mean() / max(sp[pause].mean(), 1e-6))
                                    if talk.sum() >= 10 and pause.sum() >= 10 else float("nan"))
    out["speed_vs_loudness_r"] = correlation(sp[ok], loudness[ok], undefined=float("nan"))
    out["brow_raises_per_min"] = _raises(np.where(valid, poses[:, 5], 0.0))
    return out


def compare(model: HeadMotionModel, q: HeadSequence, seeds: int = 3) -> dict:
    """One held-out video: the real motion's measures, the drawn motion's (mean over seeds) and their ratios."""
    loud = q.feats[:, model.config.bands].numpy()
    real = motion_measures(q.poses, q.valid, q.speech, loud)
    drawn_runs = [motion_measures(model.rollout(q.feats, seed), q.valid, q.speech, loud) for seed in range(seeds)]
    drawn = {k: float(np.nanmean([d[k] for d in drawn_runs])) for k in real}
    ratio = {name: drawn[f"std_{name}"] / max(real[f"std_{name}"], 1e-6) for name in HEAD_OUTPUTS}
    return {"name": q.name, "person": q.person, "kind": q.kind, "frames": q.num_frames, "real": real,
            "drawn": drawn, "std_ratio": ratio}


def leave_people_out(seqs: list[HeadSequence], folds: list[list[str]], config: HeadMotionConfig,
                     settings: HeadTrainSettings, progress: bool = False) -> list[dict]:
    """Train one model per fold without its people, calibrate it on the rest, compare on its people."""
    rows = []
    for k, held in enumerate(folds):
        train = [q for q in seqs if q.person not in held]
        model = train_head_model(train, config, settings, progress)
        calibrate(model, train)
        for q in seqs:
            if q.person in held and q.num_frames >= MIN_FRAMES and q.valid.sum() >= MIN_FRAMES:
                rows.append({**compare(model, q), "fold": k})
    return rows


def summarise(rows: list[dict]) -> dict:
    """Per kind: the median over videos of each axis's drawn / real spread, its 25-75% range, and the
    motion numbers real vs drawn (medians)."""
    out = {}
    for kind in ("wild", "grid"):
        rs = [r for r in rows if r["kind"] == kind]
        if not rs:
            continue
        ratios = {n: np.array([r["std_ratio"][n] for r in rs]) for n in HEAD_OUTPUTS}
        keys = ("speed_speech_vs_pause", "speed_vs_loudness_r", "brow_raises_per_min")
        out[kind] = {
            "videos": len(rs), "people": len({r["person"] for r in rs}),
            "std_ratio_median": {n: float(np.nanmedian(v)) for n, v in ratios.items()},
            "std_ratio_q25_q75": {n: [float(np.nanpercentile(v, 25)), float(np.nanpercentile(v, 75))]
                                  for n, v in ratios.items()},
            "real_std_median": {n: float(np.nanmedian([r["real"][f"std_{n}"] for r in rs])) for n in HEAD_OUTPUTS},
            "real": {k: float(np.nanmedian([r["real"][k] for r in rs])) for k in keys},
            "drawn": {k: float(np.nanmedian([r["drawn"][k] for r in rs])) for k in keys},
        }
    return out


def head_stage(tc, config, out) -> Path:
    """``train --stage head``: the head-motion model trained on the pose tracks of the face tracks in
    ``tc.data`` (people and videos in ``tc.holdout`` left out), calibrated, and put into ``tc.init``'s
    model (everything else kept). Takes a few minutes on 2 cores; reruns start over."""
    import json
    import time

    from ..checkpoints import load_raw_checkpoint, save_model
    from ..errors import LLIAError
    from ..models import LLIAModel
    from .head_data import load_sequences
    from .mouth_train import convert_state

    if config.head_model is None:
        raise LLIAError(f"config {config.name!r} has no head-motion model; use one with it (e.g. --config real)")
    holdout = tuple(filter(None, tc.holdout.split(",")))
    seqs = load_sequences(tc.data, config.head_model, holdout, tc.progress)
    t0 = time.time()
    settings = HeadTrainSettings(steps=tc.steps, lr=tc.lr, seed=tc.seed, threads=tc.threads)
    net = train_head_model(seqs, config.head_model, settings, tc.progress)
    ratio = calibrate(net, seqs)
    model = convert_state(load_raw_checkpoint(tc.init)[0], config, "head_model.") if tc.init else LLIAModel(config)
    model.head_model.load_state_dict(net.state_dict())
    people = sorted({q.person for q in seqs})
    report = {"people": people, "holdout": list(holdout), "videos": len(seqs),
              "frames": int(sum(q.num_frames for q in seqs)), "steps": tc.steps,
              "train_seconds": round(time.time() - t0, 1),
              "temperature": [round(float(x), 4) for x in net.temperature],
              "damping": [round(float(x), 4) for x in net.damping.detach()], "pull": [round(float(x), 4) for x in net.pull.detach()],
              "last_calibration_ratio": [round(float(x), 4) for x in ratio]}
    out = Path(out)
    (out / "head.json").write_text(json.dumps(report, indent=1))
    print(f"head-motion model: {len(people)} people, {len(seqs)} videos, {report['train_seconds']:.0f} s")
    final = out / "model.safetensors"
    save_model(model, final, dtype=torch.float16, stage="head")
    return final
