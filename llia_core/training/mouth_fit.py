"""Stage ``mouth``: the window mouth head fitted in closed form to real videos' landmarks.

On the 15 people of a few minutes of real speech, gradient-trained audio heads memorise their
speakers; a ridge regression from the frame's raw log-mel window (+-100 ms) to the mouth
(opening, width, roundness) generalises better to people it never heard (r = 0.30 on unseen people
for the opening, against 0.06 for the cartoon-trained token head; measured in this project). A
ridge fit shrinks its output towards the mean, so each output is then scaled to move as much as the
landmarks do on the training frames ("amplitude 1 = as trained"). The result is folded into one
``nn.Linear`` on the flattened window, applied per frame at no cost.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..config import LLIAConfig
from ..models import LLIAModel
from .batches import TrainingClip


def convert_model(model: LLIAModel, config: LLIAConfig) -> LLIAModel:
    """``model``'s weights in a model of ``config``: every tensor of the same name and shape is kept,
    the rest (a new mouth head, a dropped paint) starts fresh or goes. Raises if the networks differ
    elsewhere."""
    if model.config == config:
        return model
    new = LLIAModel(config)
    own = new.state_dict()
    kept = {k: v for k, v in model.state_dict().items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in kept]
    if any(".mouth_head." not in k and ".mouth_paint." not in k for k in missing):
        raise ValueError(f"cannot convert {model.config.name} to {config.name}: these weights differ: "
                         f"{[k for k in missing if '.mouth_head.' not in k][:5]}")
    new.load_state_dict(kept, strict=False)
    return new


def _data(clips: list[TrainingClip]) -> tuple[np.ndarray, np.ndarray]:
    rows = [c for c in clips if c.mouth is not None]
    if not rows:
        raise ValueError("the mouth stage needs clips with mouth targets (real videos from training.data --videos)")
    x = np.concatenate([c.windows.flatten(1).numpy() for c in rows]).astype(np.float64)
    y = np.concatenate([c.mouth.numpy() for c in rows]).astype(np.float64)
    return x, y


def fit_mouth_head(model: LLIAModel, clips: list[TrainingClip], val: list[TrainingClip] | None = None,
                   ridge: float = 20000.0) -> dict:
    """Fit ``model``'s window mouth head in place; returns per-output correlations (train, val)."""
    enc = model.denoiser.audio_encoder
    if enc.mouth_head is None or enc.config.mouth_head_input != "windows":
        raise ValueError("the mouth stage fits a 'windows' mouth head; use a config with one (e.g. 'real')")
    x, y = _data(clips)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xn = (x - mu) / sd
    y_mean = y.mean(0)
    w = np.linalg.solve(xn.T @ xn + ridge * np.eye(x.shape[1]), xn.T @ (y - y_mean))
    pred = xn @ w
    scale = y.std(0) / np.maximum(pred.std(0), 1e-6)  # move as much as the real mouths do
    w = w * scale / sd[:, None]
    bias = y_mean - mu @ w
    with torch.no_grad():
        enc.mouth_head.weight.copy_(torch.from_numpy(w.T).float())
        enc.mouth_head.bias.copy_(torch.from_numpy(bias).float())

    def scores(rows):
        rs = []
        for c in rows:
            if c.mouth is None:
                continue
            p = c.windows.flatten(1).numpy().astype(np.float64) @ w + bias
            t = c.mouth.numpy()
            rs.append([np.corrcoef(p[:, i], t[:, i])[0, 1] if t[:, i].std() > 1e-4 else np.nan for i in range(3)])
        return np.nanmean(np.array(rs), 0).tolist() if rs else [float("nan")] * 3

    return {"train_r": scores(clips), "val_r": scores(val or []), "frames": int(len(y)), "ridge": ridge}


def mouth_stage(tc, config: LLIAConfig, init: LLIAModel | None):
    """``train --stage mouth``: (convert ``init`` to ``config``,) fit the head, save; -> (model, report)."""
    from .batches import load_training_clips

    model = convert_model(init, config) if init is not None else LLIAModel(config)
    clips = load_training_clips(tc.data, "train", model.config, tc.max_clips, tc.progress)
    try:
        val = load_training_clips(tc.data, "val", model.config, None, False)
    except (FileNotFoundError, KeyError):
        val = []
    report = fit_mouth_head(model, clips, val)
    return model, dataclasses.asdict(tc) | report
