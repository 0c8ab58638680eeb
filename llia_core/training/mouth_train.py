"""Training and leave-people-out scoring of the audio-to-mouth model.

``train_mouth_model`` draws frames from many utterances at once (people weighted by the square root of
their frames, so one GRID speaker's 50 minutes do not drown 40 people's few), reads each frame's window
from one long log-mel, augments it (``mouth_data.augment_windows``, speed too) and fits the network.

``score`` is the measure the issue tracker asked for: per utterance, Pearson r of the predicted and the
real lip opening **within the frames where the audio speaks** (r over every frame also rewards merely
opening in speech and closing in pauses, which voice activity alone gives), averaged per person.
``leave_people_out`` trains one model per fold and scores each person only by the fold that never saw
them (nor any synthetic reading of their sentences).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..audio.features import mouth_fill
from ..framing import FACE, Framing
from ..config import MouthModelConfig
from ..evaluation.metrics import correlation
from ..models.mouth_model import AudioToMouth, mouth_loss
from .mouth_data import Utterance, augment_windows, frame_centres, gather_windows

if TYPE_CHECKING:
    from ..models import LLIAModel

MIN_SPEECH_FRAMES = 10  # an utterance's r needs at least this many speech frames


@dataclass
class MouthTrainSettings:
    steps: int = 3000
    batch: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    augment: float = 1.0  # 0 = none
    speed: float = 0.15  # +- speed change of the window's time axis (half of the batch)
    synthetic_share: float = 0.2  # of each batch drawn from synthetic voices (when there are any)
    seed: int = 0
    threads: int | None = None


class _Pool:
    """Every utterance's log-mel in one tensor (log-silence between them) and the valid frames to draw."""

    def __init__(self, utts: list[Utterance], pad: int, synthetic_share: float = 0.2, config: MouthModelConfig = None):
        config = config or MouthModelConfig(n_mels=utts[0].mel.shape[1])
        parts, starts, at = [], [], 0
        gap = mouth_fill(config.n_mels, config.phones).expand(pad, -1)
        for u in utts:
            parts += [gap, u.rows(config)]
            starts.append(at + pad)
            at += pad + u.mel.shape[0]
        parts.append(gap)
        self.mel = torch.cat(parts)
        self.centres = torch.cat([frame_centres(u.num_frames, u.fps) + s for u, s in zip(utts, starts)])
        self.targets = torch.cat([u.targets for u in utts])
        self.valid = torch.cat([u.valid for u in utts])
        people = [u.person for u in utts]
        owner = np.concatenate([[people[i]] * u.num_frames for i, u in enumerate(utts)])
        synthetic = np.concatenate([[u.kind == "synthetic"] * u.num_frames for u in utts])
        usable = self.valid[:, 0].numpy()
        w = np.zeros(len(owner))
        share = synthetic_share if synthetic[usable].any() else 0.0
        for is_synthetic, group_share in ((False, 1 - share), (True, share)):  # real people; synthetic voices
            group = usable & (synthetic == is_synthetic)
            names, counts = np.unique(owner[group], return_counts=True)
            weight = dict(zip(names, np.sqrt(counts) / counts))  # person weight sqrt(frames), spread over its frames
            part = np.array([weight.get(o, 0.0) for o in owner]) * group
            if part.sum() > 0:
                w += part / part.sum() * group_share
        self.prob = torch.from_numpy(w / w.sum())


def adamw_warmup_cosine(model: torch.nn.Module, lr: float, weight_decay: float, steps: int, warmup: int):
    """AdamW and its schedule for the small models (mouth, head motion): a linear warm-up over ``warmup``
    steps, then a cosine to 0 at ``steps``."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    return opt, sched


def train_mouth_model(utts: list[Utterance], config: MouthModelConfig = MouthModelConfig(),
                      settings: MouthTrainSettings = MouthTrainSettings(), progress: bool = False,
                      init: AudioToMouth | None = None) -> AudioToMouth:
    from tqdm import tqdm

    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    model = init if init is not None else AudioToMouth(config)
    pool = _Pool(utts, config.window_frames * 2, settings.synthetic_share, config)
    opt, sched = adamw_warmup_cosine(model, settings.lr, settings.weight_decay, settings.steps, warmup=100)
    model.train()
    bar = tqdm(range(settings.steps), desc="mouth model", disable=not progress)
    for _ in bar:
        idx = torch.multinomial(pool.prob, settings.batch, replacement=True, generator=gen)
        speed = None
        if settings.speed > 0:
            speed = 1 + (torch.rand(settings.batch, generator=gen) < 0.5).float() * (
                torch.rand(settings.batch, generator=gen) * 2 - 1) * settings.speed
        w = gather_windows(pool.mel, pool.centres[idx], config.past_frames, config.future_frames, speed, padded=True)
        if settings.augment > 0:  # voices and rooms change the bands; the phones are heard on the clean audio
            w = torch.cat([augment_windows(w[..., :config.n_mels], gen, settings.augment), w[..., config.n_mels:]], 2)
        loss = mouth_loss(model(w), pool.targets[idx], pool.valid[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    model.eval()
    return model


@torch.no_grad()
def predict(model: AudioToMouth, utt: Utterance) -> torch.Tensor:
    """(F, 6) the model's mouth for every frame of ``utt``."""
    cfg = model.config
    w = gather_windows(utt.rows(cfg), frame_centres(utt.num_frames, utt.fps), cfg.past_frames, cfg.future_frames,
                       fill=mouth_fill(cfg.n_mels, cfg.phones))
    return torch.cat([model(w[i:i + 2048]) for i in range(0, len(w), 2048)])


def score_utterance(pred: np.ndarray, utt: Utterance, lag: int = 0) -> dict:
    """r of the predicted and real opening within speech frames (and over all frames), the predicted and
    real mean opening in speech; ``lag`` pairs prediction t with the real frame t + lag."""
    return _score_pairs(pred, utt, *_lag_pairs(len(pred), lag))


def _lag_pairs(n: int, lag: int, frames: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(prediction frames t, real frames t + lag) over ``frames`` (default all n), where both exist."""
    t = np.arange(n) if frames is None else frames
    s = t + lag
    keep = (s >= 0) & (s < n)
    return t[keep], s[keep]


def _score_pairs(pred: np.ndarray, utt: Utterance, t: np.ndarray, s: np.ndarray) -> dict:
    """``score_utterance`` over prediction frames ``t`` paired with real frames ``s`` (speech: both speak)."""
    real, valid = utt.targets[s, 0].numpy(), utt.valid[s, 0].numpy()
    speech = utt.speech[s].numpy() & utt.speech[t].numpy()
    p = pred[t, 0]
    sp = valid & speech
    return {"r_speech": correlation(p[sp], real[sp], float("nan")) if sp.sum() >= MIN_SPEECH_FRAMES else float("nan"),
            "r_all": correlation(p[valid], real[valid], float("nan")),
            "open_pred": float(p[sp].mean()) if sp.any() else float("nan"),
            "open_real": float(real[sp].mean()) if sp.any() else float("nan"),
            "frames": int(sp.sum())}


def score(model: AudioToMouth, utts: list[Utterance]) -> dict:
    """{person: {"r_speech", "r_all", "kind", "utterances"}}: per-utterance scores averaged per person."""
    rows: dict = {}
    for u in utts:
        s = score_utterance(predict(model, u).numpy(), u)
        rows.setdefault(u.person, {"kind": u.kind, "rs": [], "ra": []})
        rows[u.person]["rs"].append(s["r_speech"])
        rows[u.person]["ra"].append(s["r_all"])
    out = {}
    for person, r in rows.items():
        rs = [v for v in r["rs"] if not math.isnan(v)]
        out[person] = {"kind": r["kind"], "r_speech": float(np.mean(rs)) if rs else float("nan"),
                       "r_all": float(np.nanmean(r["ra"])) if r["ra"] else float("nan"), "utterances": len(r["rs"])}
    return out


def estimate_offsets(model: AudioToMouth, utts: list[Utterance], max_lag: int = 10, min_frames: int = 50
                     ) -> dict[str, int]:
    """Each utterance's sound/picture offset in frames: the lag at which ``model`` (trained on footage in
    sync, e.g. GRID) predicts its opening best (over all frames). -3 = the sound runs 3 frames late.
    Utterances shorter than ``min_frames``, and peaks at the edge of the search (no peak found), count as
    in sync: on a 1-second clip the best of 13 lags is mostly chance."""
    out = {}
    for u in utts:
        if u.num_frames < min_frames:
            out[u.name] = 0
            continue
        p = predict(model, u).numpy()
        out[u.name] = _best_lag([score_utterance(p, u, lag)["r_all"] for lag in range(-max_lag, max_lag + 1)])
    return out


def _best_lag(curve: list[float]) -> int:
    """The lag of a curve of r over lags -L..L; 0 where there is no peak (all NaN, or at the search's edge)."""
    max_lag = len(curve) // 2
    best = 0 if np.all(np.isnan(curve)) else int(np.nanargmax(curve)) - max_lag
    return 0 if abs(best) == max_lag else best


def crossfit_offset_r(pred: np.ndarray, utt: Utterance, max_lag: int = 10, min_frames: int = 50
                      ) -> tuple[float, tuple[int, int] | None]:
    """r within speech with the clip's sound/picture offset undone, each half of the clip shifted by the lag
    found on the *other* half (as ``estimate_offsets`` finds it), so no lag is chosen on the frames it scores:
    the best of 21 lags on the same frames reads high even for a clip in sync. Returns (r, (lag found on the
    first half, on the second)); clips under ``2 * min_frames`` as recorded, with None for the lags."""
    n = utt.num_frames
    if n < 2 * min_frames:
        return score_utterance(pred, utt)["r_speech"], None
    halves = (np.arange(n // 2), np.arange(n // 2, n))
    lags = tuple(_best_lag([_score_pairs(pred, utt, *_lag_pairs(n, lag, h))["r_all"]
                            for lag in range(-max_lag, max_lag + 1)]) for h in halves)
    scored = [_lag_pairs(n, lag, h) for lag, h in zip(lags[::-1], halves)]  # first half at the second's lag and back
    t, s = (np.concatenate(x) for x in zip(*scored))
    return _score_pairs(pred, utt, t, s)["r_speech"], lags


def shifted(u: Utterance, lag: int) -> Utterance:
    """``u`` with its mouth moved ``lag`` frames against its sound (frame t gets the mouth of t + lag);
    frames without a mouth become invalid."""
    if lag == 0:
        return u
    n = u.num_frames
    src = torch.arange(n) + lag
    inside = (src >= 0) & (src < n)
    src = src.clamp(0, n - 1)
    return dataclasses.replace(u, targets=u.targets[src], valid=u.valid[src] & inside[:, None])


def train_recipe(utts: list[Utterance], config: MouthModelConfig, settings: MouthTrainSettings,
                 synthetic: list[Utterance] = (), align: bool = True, progress: bool = False,
                 reference_steps: int = 1500) -> tuple[AudioToMouth, dict]:
    """The whole recipe on one training set: a reference model on its GRID utterances (footage in sync),
    each other utterance's sound/picture offset from it (``estimate_offsets``), the targets realigned,
    then the model on everything (real and synthetic). Returns (model, offsets)."""
    utts, synthetic = normalise_amplitude(utts, synthetic)
    offsets: dict = {}
    if align:
        grid = [u for u in utts if u.kind == "grid"]
        wild = [u for u in utts if u.kind == "wild"]
        if grid and wild:
            ref = train_mouth_model(grid, config, dataclasses.replace(settings, steps=min(reference_steps, settings.steps)))
            offsets = estimate_offsets(ref, wild)
    train = [shifted(u, offsets.get(u.name, 0)) for u in utts] + list(synthetic)
    model = train_mouth_model(train, config, settings, progress)
    calibrate(model, train[:len(utts)])
    return model, offsets


@torch.no_grad()
def calibrate(model: AudioToMouth, utts: list[Utterance], max_frames: int = 40000) -> dict:
    """Scale each output so that it moves as much as the real mouths do in speech, about the same mean.

    A regression shrinks towards the mean (at r = 0.5 it moves half as much as the truth): a mouth that
    hardly opens. Over the speech frames of ``utts`` (people weighted alike, at most ``max_frames``), each
    output is mapped ``a * y + b`` with the real targets' std and mean, folded into the last layer.
    Returns {output: (a, b)}.
    """
    rng = np.random.default_rng(0)
    per_person: dict = {}
    for u in utts:
        per_person.setdefault(u.person, []).append(u)
    pred, real = [], []
    budget = max(1, max_frames // max(1, len(per_person)))
    for people_utts in per_person.values():
        rows_p, rows_r = [], []
        for u in people_utts:
            keep = (u.speech & u.valid[:, 0]).numpy()
            if keep.any():
                rows_p.append(predict(model, u).numpy()[keep])
                rows_r.append(u.targets.numpy()[keep])
        if rows_p:
            p, r = np.concatenate(rows_p), np.concatenate(rows_r)
            pick = rng.permutation(len(p))[:budget]
            pred.append(p[pick])
            real.append(r[pick])
    if not pred:
        return {}
    p, r = np.concatenate(pred), np.concatenate(real)
    a = r.std(0) / np.maximum(p.std(0), 1e-6)
    b = r.mean(0) - a * p.mean(0)
    last = model.head[-1]
    last.weight.mul_(torch.from_numpy(a).float()[:, None])
    last.bias.mul_(torch.from_numpy(a).float()).add_(torch.from_numpy(b).float())
    from ..models.mouth_model import MOUTH_OUTPUTS

    return {name: (float(a[k]), float(b[k])) for k, name in enumerate(MOUTH_OUTPUTS)}


def normalise_amplitude(utts: list[Utterance], synthetic=(), outputs=(0, 3)) -> tuple[list, list]:
    """Every person's mouth scaled to open as wide, on average in speech, as the people's average does.

    How wide a person opens is theirs, not their voice's (GRID's s1, most of the data, opens 0.13 on
    average in speech; the talking clips' people 0.22): unscaled, voices read with s1's mouth (the synthetic
    ones) barely opened. Only a scale, so 0 stays the person's closed mouth; ``outputs``: the opening and
    the jaw. Synthetic readings take the scale of the person whose mouth they were given.
    """
    def mean_in_speech(us, k):
        vals = [u.targets[:, k][(u.speech & u.valid[:, k])] for u in us]
        vals = [v for v in vals if v.numel()]
        return float(torch.cat(vals).mean()) if vals else float("nan")

    people: dict = {}
    for u in utts:
        people.setdefault(u.person, []).append(u)
    scales: dict = {}
    for k in outputs:
        means = {p: mean_in_speech(us, k) for p, us in people.items()}
        good = [m for m in means.values() if math.isfinite(m) and m > 1e-3]
        if not good:
            continue
        target = float(np.mean(good))
        for p, m in means.items():
            scales.setdefault(p, {})[k] = target / m if math.isfinite(m) and m > 1e-3 else 1.0

    def scaled(u):
        factor = torch.ones(u.targets.shape[1])
        for k, f in scales.get(u.person, {}).items():
            factor[k] = f
        return dataclasses.replace(u, targets=u.targets * factor)

    return [scaled(u) for u in utts], [scaled(u) for u in synthetic]


def person_folds(people: list[str], folds: int, seed: int = 0, alone: tuple[str, ...] = ()) -> list[list[str]]:
    """People split into ``folds`` groups at random (each person in exactly one), plus one fold of its own
    for each of ``alone`` (a person with most of the data: leaving them out must not also take it from
    the people who would share their fold)."""
    rng = np.random.default_rng(seed)
    rest = [p for p in people if p not in alone]
    order = [rest[i] for i in rng.permutation(len(rest))]
    return [[p] for p in alone if p in people] + [sorted(order[k::folds]) for k in range(folds)]


def dominant_people(utts: list[Utterance], share: float = 0.25) -> tuple[str, ...]:
    """People holding more than ``share`` of all frames (GRID's s1: 86%)."""
    frames: dict = {}
    for u in utts:
        frames[u.person] = frames.get(u.person, 0) + u.num_frames
    total = sum(frames.values())
    return tuple(sorted(p for p, n in frames.items() if n > share * total))


def fold_models(utts: list[Utterance], folds: list[list[str]], config: MouthModelConfig,
                settings: MouthTrainSettings, synthetic=(), align: bool = True, progress: bool = False) -> list:
    """The recipe (``train_recipe``) once per fold on everyone else: their real utterances and the synthetic
    readings of their sentences. Returns one model per fold."""
    models = []
    for k, held in enumerate(folds):
        t0 = time.time()
        held_set = set(held)
        train = [u for u in utts if u.person not in held_set]
        syn = [u for u in synthetic if u.person not in held_set]
        models.append(train_recipe(train, config, settings, syn, align)[0])
        if progress:
            print(f"fold {k + 1}/{len(folds)}: {len(held)} people left out, {len(train)} + {len(syn)} training "
                  f"utterances, {time.time() - t0:.0f} s", flush=True)
    return models


def leave_people_out(utts: list[Utterance], folds: list[list[str]], config: MouthModelConfig,
                     settings: MouthTrainSettings, synthetic=(), progress: bool = False,
                     eval_kinds: tuple[str, ...] = ("grid", "wild"), align: bool = True) -> dict:
    """Each person of ``folds`` scored (``score``) by the fold model that never saw them, as recorded."""
    out = {}
    for k, (held, model) in enumerate(zip(folds, fold_models(utts, folds, config, settings, synthetic, align,
                                                             progress))):
        for person, s in score(model, [u for u in utts if u.person in held and u.kind in eval_kinds]).items():
            out[person] = dict(s, fold=k)
    return out


def summarise(per_person: dict) -> dict:
    """Mean, median, spread and the people under 0.1 of the speech-only r, in-the-wild and GRID apart."""
    out = {}
    for kind in ("wild", "grid"):
        rs = {p: s["r_speech"] for p, s in per_person.items() if s["kind"] == kind and not math.isnan(s["r_speech"])}
        if not rs:
            continue
        v = np.array(list(rs.values()))
        out[kind] = {"people": len(v), "mean": float(v.mean()), "median": float(np.median(v)), "std": float(v.std()),
                     "min": float(v.min()), "max": float(v.max()),
                     "below_0.1": sorted(p for p, r in rs.items() if r < 0.1)}
    return out


def load_utterances(data: str, holdout: tuple[str, ...] = (), n_mels: int = 80, progress: bool = False,
                    phone_lag: int | None = None) -> list[Utterance]:
    """Utterances of every face track under the comma list of folders ``data``, leaving out videos or people
    named in ``holdout`` (and tracks with too few frames or faces); with ``phone_lag``, their phones too
    (decoded once, then cached beside each track)."""
    from .data.tracks import usable_tracks
    from .mouth_data import utterance_from_track

    return [utterance_from_track(t, n_mels, phone_lag) for t in usable_tracks(data, holdout, progress)]


def measure_draw_curve(photos: list, resolution: int = 128, view: Framing = FACE, knots: int = 21):
    """How the face mesh reads a drawn opening, on real photos: for openings 0..1 drawn by the renderer (the
    warp and the paste-back's inside of the mouth, at the photo's resolution), the mesh's lip gap above the
    shut mouth's, on the landmarks' opening scale. -> (read (K,) median over the photos, drawn (K,), photos
    used). ``AudioToMouth.set_draw_curve`` inverts it."""
    from ..evaluation.real import mouth_track
    from ..models.mouth_warp import warp_pixels
    from ..portrait import Compositor, prepare_portrait
    from .data.videos import DRAWN_GAP_AT_OPEN

    drawn = np.linspace(0, 1, knots)
    reads = []
    for path in photos:
        portrait = prepare_portrait(str(path), resolution, view=view)
        if portrait.landmarks is None or portrait.mouth_anchor is None:
            continue
        compositor = Compositor(portrait, None)
        frames = []
        for d in drawn:
            mouth = torch.tensor([[float(d), 0.5, 0.0]])
            crop = warp_pixels(portrait.image[None], mouth, portrait.view, portrait.mouth_anchor[None])
            frames.append(compositor.composite(crop.permute(0, 2, 3, 1).numpy(), mouth.numpy())[0])
        gaps, _ = mouth_track(np.stack(frames))
        if not np.isnan(gaps).any():
            reads.append((gaps - gaps[0]) / DRAWN_GAP_AT_OPEN)
    if not reads:
        from ..errors import LLIAError

        raise LLIAError("no photo with a face to measure the drawn mouth on; pass --photos with portraits")
    return np.median(np.stack(reads), 0), drawn, len(reads)


def convert_state(tensors: dict[str, torch.Tensor], config, fresh: str = "mouth_model.") -> LLIAModel:
    """A model of ``config`` holding ``tensors`` (another checkpoint's): every tensor of the same name and
    shape is kept; the part named by ``fresh`` (a prefix: the mouth, head-motion or painter model) starts
    fresh, an old mouth head goes, and a mouth, head-motion or painter model the checkpoint lacks is left
    out of ``config``. Raises if the networks differ anywhere else."""
    import dataclasses

    from ..models import LLIAModel

    for part in ("mouth_model", "head_model", "mouth_painter"):
        if f"{part}." != fresh and getattr(config, part) is not None and not any(k.startswith(f"{part}.") for k in tensors):
            config = dataclasses.replace(config, **{part: None})
    new = LLIAModel(config)
    own = new.state_dict()
    kept = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in kept and not k.startswith(fresh)]
    dropped = [k for k in tensors if k not in kept and ".mouth_head." not in k and ".mouth_paint." not in k
               and not k.startswith(fresh)]
    if missing or dropped:
        from ..errors import CheckpointError

        raise CheckpointError(f"cannot give this checkpoint a {config.name!r} {fresh.rstrip('.')}: the networks "
                              f"differ ({(missing + dropped)[:4]}); start from a checkpoint of the {config.name!r} family")
    new.load_state_dict({k: v.to(own[k].dtype) for k, v in kept.items()}, strict=False)
    return new


def mouth_stage(tc, config, out: Path) -> Path:
    """``train --stage mouth``: the audio-to-mouth model trained on face tracks (``tc.data``) and synthetic
    readings of their GRID sentences, put into ``tc.init``'s model (or a fresh one) of ``config``.

    Resumable: the synthetic utterances and the model are kept in ``out`` as they are made.
    """
    import json

    from ..checkpoints import load_raw_checkpoint, save_model
    from ..models import LLIAModel
    from .data.tts import ESPEAK_VOICES, have_espeak_library
    from .mouth_data import synthetic_utterances

    if config.mouth_model is None:
        from ..errors import LLIAError

        raise LLIAError(f"config {config.name!r} has no mouth model; use one with it (e.g. --config real)")
    holdout = tuple(filter(None, tc.holdout.split(",")))
    lag = config.mouth_model.phone_lag if config.mouth_model.phones else None
    utts = load_utterances(tc.data, holdout, config.mouth_model.n_mels, tc.progress, lag)
    synthetic: list = []
    if tc.synthetic_voices > 0:
        if not have_espeak_library():
            from ..errors import LLIAError

            raise LLIAError("synthetic voices need espeak-ng's library (apt install espeak-ng) or --synthetic-voices 0")
        cache = out / f"synthetic_{tc.synthetic_voices}{'' if lag is None else f'_phones{lag}'}.pt"
        if cache.exists():
            synthetic = torch.load(cache, weights_only=False)
        else:
            synthetic = synthetic_utterances([u for u in utts if u.words], ESPEAK_VOICES, tc.synthetic_voices,
                                             tc.seed, config.mouth_model.n_mels, tc.progress, lag)
            torch.save(synthetic, cache)
    settings = MouthTrainSettings(steps=tc.steps, lr=tc.lr, seed=tc.seed, threads=tc.threads)
    t0 = time.time()
    net, offsets = train_recipe(utts, config.mouth_model, settings, synthetic, progress=tc.progress)
    curve = None
    if tc.photos:  # the renderer's drawn opening, as the landmarks read it, on portraits not held out
        from .data.photos import PHOTO_SUFFIXES

        photos = sorted(p for p in Path(tc.photos).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES
                        and p.stem not in holdout)
        read, drawn, used = measure_draw_curve(photos, config.resolution, config.framing)
        net.set_draw_curve(read, drawn)
        curve = {"photos": used, "read_at_drawn": {f"{d:.2f}": round(float(r), 4) for d, r in zip(drawn, read)}}
    if tc.init:
        tensors, _ = load_raw_checkpoint(tc.init)
        model = convert_state(tensors, config)
    else:
        model = LLIAModel(config)
    model.mouth_model.load_state_dict(net.state_dict())
    people = sorted({u.person for u in utts})
    report = {"people": people, "holdout": list(holdout), "utterances": len(utts), "synthetic": len(synthetic),
              "frames": int(sum(u.num_frames for u in utts)), "offsets_frames": offsets,
              "train_seconds": round(time.time() - t0, 1), "steps": tc.steps, "draw_curve": curve}
    (out / "mouth.json").write_text(json.dumps(report, indent=1))
    print(f"mouth model: {len(people)} people, {len(utts)} utterances + {len(synthetic)} synthetic, "
          f"{report['train_seconds']:.0f} s")
    final = out / "model.safetensors"
    save_model(model, final, dtype=torch.float16, stage="mouth")
    return final
