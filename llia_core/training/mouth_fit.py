"""Stage ``mouth``: the window mouth head fitted in closed form to real videos' landmarks.

On the 15 people of a few minutes of real speech, gradient-trained audio heads memorise their
speakers; a ridge regression from the frame's raw log-mel window (+-100 ms) to the mouth
(opening, width, roundness) generalises better to people it never heard (r = 0.30 on unseen people
for the opening, against 0.06 for the cartoon-trained token head; measured in this project). A
ridge fit shrinks its output towards the mean, so each output is then scaled to move as much as the
landmarks do on the training frames ("amplitude 1 = as trained"). The result is folded into one
``nn.Linear`` on the flattened window, applied per frame at no cost.

Before the fit, each training video's sound/picture offset is estimated and undone
(``estimate_offsets``): 7 of the 17 training videos of the bundled recipe run 2-4 frames off, and
aligning them lifts the opening r on unseen people (measured in docs/model_card.md).
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


def _rows(clips: list[TrainingClip]) -> list[tuple]:
    """(identity, windows (F, D) float64, mouth (F, 3) float64) per clip with mouth targets."""
    rows = [(c.identity, c.windows.flatten(1).numpy().astype(np.float64), c.mouth.numpy().astype(np.float64))
            for c in clips if c.mouth is not None]
    if not rows:
        raise ValueError("the mouth stage needs clips with mouth targets (real videos from training.data --videos)")
    return rows


def _shift(x: np.ndarray, y: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Pair the audio of frame t with the mouth of frame t + ``lag`` (a video whose picture is late)."""
    if lag > 0:
        return x[:-lag], y[lag:]
    if lag < 0:
        return x[-lag:], y[:lag]
    return x, y


def _ridge(rows: list[tuple], lags: dict, ridge: float):
    """Closed-form ridge on standardised windows; -> (weights, window mean, window std, mouth mean)."""
    pairs = [_shift(x, y, lags.get(ident, 0)) for ident, x, y in rows]
    x = np.concatenate([p[0] for p in pairs])
    y = np.concatenate([p[1] for p in pairs])
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xn = (x - mu) / sd
    y_mean = y.mean(0)
    w = np.linalg.solve(xn.T @ xn + ridge * np.eye(x.shape[1]), xn.T @ (y - y_mean))
    return w, mu, sd, y_mean, xn @ w, y


def _predict(fit, x: np.ndarray) -> np.ndarray:
    w, mu, sd, y_mean = fit[:4]
    return ((x - mu) / sd) @ w + y_mean


def _opening_r(p: np.ndarray, t: np.ndarray) -> float:
    return float(np.corrcoef(p, t)[0, 1]) if len(t) > 2 and t.std() > 1e-4 and p.std() > 0 else float("nan")


def _leave_one_out(rows: list[tuple], lags: dict, ridge: float) -> dict:
    """{identity: a fit on every other identity's (realigned) frames}."""
    return {person: _ridge([r for r in rows if r[0] != person], lags, ridge) for person in sorted({r[0] for r in rows})}


def _held_out_r(rows: list[tuple], fits: dict) -> float:
    """Opening r on each identity's own clips, as recorded (no offset fixed), by the fit without it;
    the mean over identities: how the head does on a voice it never heard."""
    scores = [np.nanmean([_opening_r(_predict(fit, x)[:, 0], y[:, 0]) for ident, x, y in rows if ident == person])
              for person, fit in fits.items()]
    return float(np.nanmean(scores))


def estimate_offsets(rows: list[tuple], fits: dict, max_lag: int) -> dict:
    """Each identity's audio/picture offset in frames: the lag at which the fit without it
    (``_leave_one_out``) predicts its opening best; centred so the median one counts as in sync."""
    found = {}
    for person, fit in fits.items():
        own = [(_predict(fit, x)[:, 0], y[:, 0]) for ident, x, y in rows if ident == person]
        best = []
        for lag in range(-max_lag, max_lag + 1):
            shifted = [_shift(p, t, lag) for p, t in own]
            best.append(_opening_r(np.concatenate([s[0] for s in shifted]), np.concatenate([s[1] for s in shifted])))
        found[person] = int(np.nanargmax(best)) - max_lag
    centre = int(np.median(list(found.values())))
    return {person: lag - centre for person, lag in found.items()}


def fit_mouth_head(model: LLIAModel, clips: list[TrainingClip], val: list[TrainingClip] | None = None,
                   ridge: float = 20000.0, align_passes: int = 3, max_lag: int = 6) -> dict:
    """Fit ``model``'s window mouth head in place; returns per-output correlations (train, val).

    Talking-head footage often has its sound a few frames off the picture (encoders, re-cuts); a
    head fitted across such videos learns a smeared timing. With clips that name their identity
    (ingested footage: one per source video) and ``align_passes`` > 0, each identity's offset is
    estimated (``estimate_offsets``, repeated on the realigned fit) and the pass whose head
    predicts best for identities it did not see (their clips as recorded, ``_held_out_r``; pass 0
    = no realignment) is kept.
    """
    enc = model.denoiser.audio_encoder
    if enc.mouth_head is None or enc.config.mouth_head_input != "windows":
        raise ValueError("the mouth stage fits a 'windows' mouth head; use a config with one (e.g. 'real')")
    rows = _rows(clips)
    people = {ident for ident, _, _ in rows}
    passes, held_out = [{}], [float("nan")]
    if align_passes > 0 and None not in people and len(people) >= 3:
        held_out = []
        for k in range(align_passes + 1):  # one set of leave-one-out fits scores a pass and aligns the next
            fits = _leave_one_out(rows, passes[-1], ridge)
            held_out.append(_held_out_r(rows, fits))
            if k < align_passes:
                passes.append(estimate_offsets(rows, fits, max_lag))
    chosen = int(np.nanargmax(held_out)) if len(passes) > 1 else 0
    lags = passes[chosen]
    w, mu, sd, y_mean, pred, y = _ridge(rows, lags, ridge)
    scale = y.std(0) / np.maximum(pred.std(0), 1e-6)  # move as much as the real mouths do
    w = w * scale / sd[:, None]
    bias = y_mean - mu @ w
    with torch.no_grad():
        enc.mouth_head.weight.copy_(torch.from_numpy(w.T).float())
        enc.mouth_head.bias.copy_(torch.from_numpy(bias).float())

    def scores(rows):
        rs = []
        for _, x, t in rows:
            p = x @ w + bias
            rs.append([np.corrcoef(p[:, i], t[:, i])[0, 1] if t[:, i].std() > 1e-4 else np.nan for i in range(3)])
        return np.nanmean(np.array(rs), 0).tolist() if rs else [float("nan")] * 3

    val_rows = _rows(val) if val and any(c.mouth is not None for c in val) else []
    return {"train_r": scores(rows), "val_r": scores(val_rows), "frames": int(len(y)), "ridge": ridge,
            "held_out_r_per_pass": held_out, "chosen_pass": chosen,
            "offsets_frames": {str(k): v for k, v in sorted(lags.items(), key=lambda kv: str(kv[0]))}}


def mouth_stage(tc, config: LLIAConfig, init: LLIAModel | None):
    """``train --stage mouth``: (convert ``init`` to ``config``,) fit the head, save; -> (model, report)."""
    from .batches import load_training_clips

    model = convert_model(init, config) if init is not None else LLIAModel(config)
    clips = load_training_clips(tc.data, "train", model.config, tc.max_clips, tc.progress)
    try:
        val = load_training_clips(tc.data, "val", model.config, None, False)
    except (FileNotFoundError, KeyError):
        val = []
    report = fit_mouth_head(model, clips, val, align_passes=tc.mouth_align_passes)
    return model, dataclasses.asdict(tc) | report
