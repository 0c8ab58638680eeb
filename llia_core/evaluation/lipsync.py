"""Lip sync on people and voices the model never had: ``python -m llia_core eval --lipsync TRACKS``.

What it measures (every number on people left out, never on the people a model trained on):

- **Leave-people-out folds** over every talking person of the face tracks (``training.data --videos
  ... --tracks-only``): the mouth model's recipe (``training/mouth_train.train_recipe``) runs once per
  fold on everyone else; each person is scored only by the fold that never saw them, nor any synthetic
  reading of their sentences. r = Pearson r of the predicted and the real lip opening **within the frames
  where the audio speaks** (r over every frame also rewards merely opening in speech, which voice
  activity alone gives), per utterance, averaged per person; in-the-wild people and GRID speakers
  apart; each person's sound/picture offset (the lag at which their own fold model fits best) beside
  it, the usual reason for a low score on footage as recorded.
- **Generated videos** of those people (portrait = the video's first frame, audio = its own speech,
  the fold's mouth model in the shipped renderer): the same r measured with the face mesh on the
  generated frames, the product's lip sync.
- **Bilabial onsets** (GRID's word timings): the share of p/b/m word onsets where the mouth closes
  (opening under ``CLOSED`` of its own mean in the words), predicted against the real video's, and the
  same share at other word onsets (a mouth that never opens would close everywhere).
- **Voices on photos** (``eval --real``'s validation photos): synthetic voices (espeak-ng, flite,
  festival when installed) and real voices, each with pauses: the mouth's movement in speech against in
  silence, and the share of silent frames with the mouth shut.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..training import mouth_train as mt
from .metrics import correlation
from ..training.mouth_data import Utterance

CLOSED = 0.4  # lips count as shut under this share of the utterance's mean opening in speech (GRID's s1: 0.05)
BILABIAL_WORDS = frozenset({"bin", "place", "please", "blue", "by", "b", "p", "m"})  # GRID words opening on p/b/m


def onset_closures(opening: np.ndarray, words, fps: float, reach: int = 2) -> tuple[float, float, int]:
    """(share of p/b/m word onsets, share of other word onsets) where ``opening`` falls under ``CLOSED``
    times its mean over the words within ``reach`` frames of the onset; and the number of p/b/m onsets.
    Relative to the utterance's own opening, so a prediction is judged on its own scale."""
    t = (np.arange(len(opening)) + 0.5) / fps
    spoken = np.zeros(len(opening), bool)
    for a, b, _ in words:
        spoken |= (t >= a) & (t < b)
    if not spoken.any():
        return float("nan"), float("nan"), 0
    level = CLOSED * float(np.mean(opening[spoken]))
    shut, other = [], []
    for a, _, w in words:
        k = int(round(a * fps))
        window = opening[max(0, k - reach):k + reach + 1]
        if len(window) == 0:
            continue
        (shut if w.lower() in BILABIAL_WORDS else other).append(float(window.min()) < level)
    share = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
    return share(shut), share(other), len(shut)


def score_folds(utts: list[Utterance], folds: list[list[str]], models: list) -> dict:
    """Per person: speech-only r (its fold's model), r over all frames, its sound/picture offset, and for
    GRID speakers the onset closures predicted and real."""
    out = {}
    for held, model in zip(folds, models):
        scores = mt.score(model, [u for u in utts if u.person in held])
        for person, s in scores.items():
            mine = [u for u in utts if u.person == person]
            lags = mt.estimate_offsets(model, mine)
            # the same r with each clip's sound/picture offset undone, the offset found on the clip's other half
            # (never on the frames it scores): how much of a low score the source's sync explains
            undone = [mt.crossfit_offset_r(mt.predict(model, u).numpy(), u) for u in mine]
            at_lag = [r for r, _ in undone if not math.isnan(r)]
            row = dict(s, offset_frames=int(np.median(list(lags.values()))) if lags else 0,
                       r_speech_offset_undone=float(np.mean(at_lag)) if at_lag else float("nan"),
                       offset_halves=[list(h) for _, h in undone if h is not None])
            if any(u.words for u in mine):
                pred, real, n = [], [], 0
                for u in mine:
                    if not u.words:
                        continue
                    p = mt.predict(model, u)[:, 0].numpy()
                    pred.append(onset_closures(p, u.words, u.fps))
                    real.append(onset_closures(u.targets[:, 0].numpy(), u.words, u.fps))
                    n += pred[-1][2]
                row.update(bilabial_closed_pred=float(np.nanmean([p[0] for p in pred])),
                           bilabial_closed_real=float(np.nanmean([r[0] for r in real])),
                           other_closed_pred=float(np.nanmean([p[1] for p in pred])),
                           other_closed_real=float(np.nanmean([r[1] for r in real])), bilabial_onsets=n)
            out[person] = row
    return out


def summarise(per_person: dict) -> dict:
    out = mt.summarise(per_person)
    if any("r_speech_offset_undone" in s for s in per_person.values()):
        undone = mt.summarise({p: dict(s, r_speech=s.get("r_speech_offset_undone", math.nan))
                               for p, s in per_person.items()})
        for kind, u in undone.items():
            halves = [h for s in per_person.values() if s["kind"] == kind for clip in s.get("offset_halves", ())
                      for h in clip]
            out[kind]["offset_undone"] = dict(u, halves=len(halves),
                                              halves_in_sync=float(np.mean([abs(h) <= 1 for h in halves]))
                                              if halves else math.nan)
    grid = [s for s in per_person.values() if "bilabial_closed_pred" in s]
    if grid:
        n = sum(s["bilabial_onsets"] for s in grid)
        w = lambda k: float(sum(s[k] * s["bilabial_onsets"] for s in grid) / max(n, 1))  # noqa: E731
        out["bilabial"] = {"onsets": n, "closed_pred": w("bilabial_closed_pred"), "closed_real": w("bilabial_closed_real"),
                           "ratio": w("bilabial_closed_pred") / max(w("bilabial_closed_real"), 1e-6),
                           "other_closed_pred": w("other_closed_pred"), "other_closed_real": w("other_closed_real")}
    return out


# ---- voices on photos ----------------------------------------------------------------------------
FLITE_VOICES = ("kal", "awb", "rms", "slt")
FESTIVAL_VOICES = ("voice_kal_diphone", "voice_cmu_us_slt_arctic_hts")
SENTENCES = ("Hello, thank you for calling. How can I help you today?",
             "The weather will be sunny in the morning, with a little rain after lunch.",
             "Please bring the blue folder and two pens to the meeting at nine.",
             "I think we should meet again next week and talk about the new plan.")


def _wav(path: Path) -> np.ndarray:
    from ..audio import load_audio

    return load_audio(str(path)).waveform.numpy().astype(np.float32)


def synthetic_voices() -> dict:
    """{name: callable(text) -> 16 kHz speech} for every TTS found on this machine."""
    from ..training.data.speech import espeak_speech

    voices = {}
    if shutil.which("espeak-ng"):
        for v in ("en-us", "en-gb-x-rp", "en-us+f3", "en+klatt4"):
            voices[f"espeak-ng {v}"] = lambda text, v=v: espeak_speech(text, v, 165, 50)
    if shutil.which("flite"):
        for v in FLITE_VOICES:
            def run(text, v=v):
                with tempfile.TemporaryDirectory() as tmp:
                    out = Path(tmp) / "s.wav"
                    subprocess.run(["flite", "-voice", v, "-t", text, "-o", str(out)], check=True, capture_output=True,
                                   timeout=60)
                    return _wav(out)
            voices[f"flite {v}"] = run
    if shutil.which("text2wave"):
        for v in FESTIVAL_VOICES:
            def run(text, v=v):
                with tempfile.TemporaryDirectory() as tmp:
                    src, out = Path(tmp) / "s.txt", Path(tmp) / "s.wav"
                    src.write_text(text)
                    subprocess.run(["text2wave", "-eval", f"({v})", str(src), "-o", str(out)], check=True,
                                   capture_output=True, timeout=120)
                    return _wav(out)
            voices[f"festival {v.replace('voice_', '')}"] = run
    return voices


def with_pauses(pieces: list[np.ndarray], rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Speech pieces peak-normalised to 0.5 with 0.8-1.5 s of silence between, cut to ``seconds``."""
    out, total = [np.zeros(int(0.5 * 16000), np.float32)], 0
    k = 0
    while total < seconds * 16000:
        p = pieces[k % len(pieces)]
        p = p / max(float(np.abs(p).max()), 1e-3) * 0.5
        gap = np.zeros(int(rng.uniform(0.8, 1.5) * 16000), np.float32)
        out += [p.astype(np.float32), gap]
        total += len(p) + len(gap)
        k += 1
    return np.concatenate(out)[:int(seconds * 16000)]


def voices_on_photos(pipe, photos: list[Path], seconds: float = 8.0, speech_dir: Path | None = None,
                     sampler=None, progress: bool = True) -> list[dict]:
    """Every voice (synthetic ones found here, and ``speech_dir``'s real speech) on every photo: the mouth's
    movement in speech against in silence, the share of silent frames shut (``real.evaluate_photo``)."""
    from ..pipeline import SamplerConfig
    from .real import evaluate_photo, speech_with_pauses_real

    sampler = sampler or SamplerConfig()
    rng = np.random.default_rng(0)
    waves = {name: with_pauses([say(t) for t in SENTENCES], rng, seconds) for name, say in synthetic_voices().items()}
    if speech_dir is not None and speech_dir.is_dir():
        waves["real voices (speech/)"] = speech_with_pauses_real(speech_dir, seconds, np.random.default_rng(0))
    rows = []
    for voice, wave in waves.items():
        for photo in photos:
            row, _ = evaluate_photo(pipe, photo, wave, sampler)
            row = {"voice": voice, **row}
            rows.append(row)
            if progress:
                print(f"{voice} / {photo.stem}: speech/silence {row['speech_silence_ratio']:.1f}x, "
                      f"shut in silence {row['closed_in_silence_pct']:.0f}%", flush=True)
    return rows


# ---- generated videos of held-out people ---------------------------------------------------------
def _held_out_clip(pipe, u: Utterance, tracks_by_name: dict, realfaces: Path, seconds: float):
    """(portrait = the video's first frame, its 16 kHz speech, frames) of an utterance; None without its video."""
    from ..portrait import prepare_portrait
    from ..training.data.videos import _frame_times

    path = _video_path(realfaces, u.source)
    if path is None:
        return None
    n = min(u.num_frames, int(seconds * u.fps))
    portrait = prepare_portrait(next(img for _, img in _frame_times(path, u.fps)), pipe.config.resolution, view=pipe.config.framing)
    return portrait, tracks_by_name[u.source].waveform()[:int(n / u.fps * 16000)], n


def _offline_frames(pipe, portrait, wave: np.ndarray, fps: float) -> np.ndarray:
    """The offline job's full-resolution frames of ``wave`` (16 kHz) on ``portrait``."""
    from ..audio import encode_audio, window_settings
    from ..pipeline.output import FrameRenderer, render_clips
    from ..states import states_from_activity

    audio = encode_audio((wave, 16000), fps, **window_settings(pipe.config.audio))
    return np.asarray(render_clips(pipe.stream(portrait, audio, states_from_activity(audio.speech)),
                                   FrameRenderer(portrait, "full", None, painter=pipe.model.mouth_painter),
                                   total_frames=audio.num_frames).frames)


def _generated_r(frames: np.ndarray, u: Utterance, n: int) -> float:
    """r within speech of the face mesh's lip gap on generated ``frames`` against the real video's."""
    from .real import mouth_track

    gap, _ = mouth_track(frames[:n])
    keep = u.speech[:n].numpy() & u.valid[:n, 0].numpy() & ~np.isnan(gap)
    return correlation(gap[keep], u.targets[:n, 0].numpy()[keep], float("nan")) if keep.sum() >= mt.MIN_SPEECH_FRAMES else float("nan")


def video_lipsync(pipe, tracks_by_name: dict, utts: list[Utterance], folds: list[list[str]], models: list,
                  realfaces: Path, seconds: float = 10.0, per_person: int = 3, progress: bool = True) -> dict:
    """Generate each held-out person's clips (up to ``per_person``, ``seconds`` long) with their fold's
    mouth model and score the face mesh's lip gap on the generated frames against the real video's."""
    own = pipe.model.mouth_model
    out: dict = {}
    try:
        for held, model in zip(folds, models):
            model.draw_curve = own.draw_curve.clone()  # a property of the renderer, not of the fold's data
            pipe.model.mouth_model = model.to(pipe.device)
            for person in held:
                mine = [u for u in utts if u.person == person][:per_person]
                rs = []
                for u in mine:
                    clip = _held_out_clip(pipe, u, tracks_by_name, realfaces, seconds)
                    if clip is not None:
                        portrait, wave, n = clip
                        rs.append(_generated_r(_offline_frames(pipe, portrait, wave, u.fps), u, n))
                rs = [r for r in rs if not np.isnan(r)]
                out[person] = {"kind": mine[0].kind if mine else "wild",
                               "r_speech": float(np.mean(rs)) if rs else float("nan"), "clips": len(rs)}
                if progress:
                    print(f"video {person}: r {out[person]['r_speech']:.3f} ({len(rs)} clips)", flush=True)
    finally:
        pipe.model.mouth_model = own
    return out


def live_frames(pipe, portrait, wave: np.ndarray, num_frames: int, levels=("warp",)) -> np.ndarray:
    """The frames live mode makes of ``wave`` (16 kHz) as the avatar's voice from media time 0: the live
    engine's own clips, excerpts, speech detection and states, on a clock that waits for each clip (so
    none is dropped: this measures what live mode draws, not how fast this machine is). ``levels``: the
    engine's levels (``live/levels.py``); warp, what it runs at on 2 CPU cores, by default."""
    from ..live.session import LiveAvatar

    avatar = LiveAvatar(pipe, portrait, frozen=False, output="full", max_size=None, levels=levels)
    avatar.now = lambda: (avatar.next_frame + 0.5) / avatar.fps - avatar.lead  # never behind the clock
    with avatar._lock:  # the voice from media time 0, as a TTS that started with the session would play it
        avatar._track, avatar._track_offset = wave.astype(np.float32), 0
    frames = []
    with torch.no_grad():
        while len(frames) < num_frames:
            frames += [f.image for f in avatar.step()]
    return np.stack(frames[:num_frames])


def live_vs_offline(pipe, tracks_by_name: dict, utts: list[Utterance], realfaces: Path, seconds: float = 10.0,
                    progress: bool = True) -> list[dict]:
    """Per utterance: the mesh-measured r within speech of the offline job's frames and of live mode's, both
    against the real video's lip opening (the same mouth model; ``pipe``'s own)."""
    rows = []
    for u in utts:
        clip = _held_out_clip(pipe, u, tracks_by_name, realfaces, seconds)
        if clip is None:
            continue
        portrait, wave, n = clip
        row = {"utterance": u.name, "person": u.person,
               "r_offline": _generated_r(_offline_frames(pipe, portrait, wave, u.fps), u, n),
               "r_live": _generated_r(live_frames(pipe, portrait, wave, n), u, n),
               "r_live_full": _generated_r(live_frames(pipe, portrait, wave, n, ("full",)), u, n)}
        rows.append(row)
        if progress:
            print(f"live vs offline {u.name}: r {row['r_offline']:.3f} offline, {row['r_live']:.3f} live (warp level), "
                  f"{row['r_live_full']:.3f} live (full level)", flush=True)
    return rows


def _video_path(realfaces: Path, source: str) -> Path | None:
    """The video a track came from (``s1__bbaf2n`` -> ``grid/s1/bbaf2n.mp4``; else ``talking/<name>.*``)."""
    if "__" in source:
        speaker, clip = source.split("__", 1)
        cands = list((realfaces / "grid" / speaker).glob(f"{clip}.*"))
    else:
        cands = list((realfaces / "talking").glob(f"{source}.*"))
    cands = [c for c in cands if c.suffix.lower() in (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")]
    return cands[0] if cands else None


def run_lipsync_eval(model: str, tracks: str, out: str, *, realfaces: str | None = None, folds: int = 5,
                     steps: int = 1500, synthetic_per_sentence: int = 3, video_seconds: float = 10.0,
                     video_per_person: int = 3, photos: list[str] = (), photo_seconds: float = 8.0,
                     live_people: tuple[str, ...] = (), threads: int | None = None, seed: int = 0,
                     out_suffix: str = "") -> dict:
    """The whole lip-sync evaluation; writes OUT.json and OUT.md, returns the report."""
    from ..checkpoints import load_model
    from ..pipeline import LLIAPipeline
    from ..training.data.tts import ESPEAK_VOICES, have_espeak_library
    from ..training.mouth_data import synthetic_utterances

    if threads:
        torch.set_num_threads(threads)
    t0 = time.time()
    pipe = LLIAPipeline(load_model(model))
    config = pipe.config.mouth_model
    if config is None:
        from ..errors import LLIAError

        raise LLIAError("this model has no mouth model to evaluate; use the bundled one or a 'real' checkpoint")
    lag = config.phone_lag if config.phones else None
    utts = mt.load_utterances(tracks, (), config.n_mels, phone_lag=lag)
    people = sorted({u.person for u in utts})
    groups = mt.person_folds(people, folds, seed, alone=mt.dominant_people(utts))
    folds_dir = Path(out).with_name(Path(out).name + "_folds")
    synthetic = []
    if synthetic_per_sentence > 0 and have_espeak_library():  # kept beside the fold models (as train --stage mouth names it)
        cache = folds_dir / f"synthetic_{synthetic_per_sentence}{'' if lag is None else f'_phones{lag}'}.pt"
        if cache.exists():
            synthetic = torch.load(cache, weights_only=False)
        else:
            synthetic = synthetic_utterances([u for u in utts if u.words], ESPEAK_VOICES, synthetic_per_sentence, seed,
                                             config.n_mels, phone_lag=lag)
            folds_dir.mkdir(parents=True, exist_ok=True)
            torch.save(synthetic, cache)
    settings = mt.MouthTrainSettings(steps=steps, seed=seed)
    models = _cached_fold_models(folds_dir, utts, groups, config, settings, synthetic)
    per_person = score_folds(utts, groups, models)
    report = {"summary": {"predicted": summarise(per_person)}, "people": per_person, "folds": groups,
              "settings": {"folds": folds, "steps": steps, "synthetic": len(synthetic), "utterances": len(utts)}}
    if realfaces:
        root = Path(realfaces)
        tracks_by_name = {}
        for folder in filter(None, tracks.split(",")):
            base = Path(folder) / "tracks" if (Path(folder) / "tracks").is_dir() else Path(folder)
            for p in base.glob("*.npz"):
                if ".tmp" not in p.name:
                    tracks_by_name[p.stem] = p
        lazy = _LazyTracks(tracks_by_name, {u.source for u in utts})
        if video_seconds > 0:
            videos = video_lipsync(pipe, lazy, utts, groups, models, root, video_seconds, video_per_person)
            report["videos"] = videos
            report["summary"]["videos"] = mt.summarise(videos)
        if live_people:
            mine = [u for u in utts if u.person in live_people or u.name in live_people]
            rows = live_vs_offline(pipe, lazy, mine, root, video_seconds or 10.0)
            report["live_vs_offline"] = rows
            report["summary"]["live_vs_offline"] = {
                "r_offline": float(np.nanmean([r["r_offline"] for r in rows])) if rows else float("nan"),
                "r_live": float(np.nanmean([r["r_live"] for r in rows])) if rows else float("nan"),
                "r_live_full": float(np.nanmean([r["r_live_full"] for r in rows])) if rows else float("nan")}
        if photos:
            paths = [next((root / "photos").glob(f"{name}.*")) for name in photos]
            rows = voices_on_photos(pipe, paths, photo_seconds, root / "speech")
            report["voices"] = rows
            report["summary"]["voices"] = {
                "rows": len(rows), "min_speech_silence_ratio": float(np.nanmin([r["speech_silence_ratio"] for r in rows])),
                "share_over_3x": float(np.mean([r["speech_silence_ratio"] >= 3 for r in rows])),
                "min_closed_in_silence_pct": float(np.nanmin([r["closed_in_silence_pct"] for r in rows]))}
    report["eval_seconds"] = round(time.time() - t0, 1)
    path = Path(out)
    path = path.with_name(path.name + out_suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(report, indent=1))
    path.with_suffix(".md").write_text(_markdown(report))
    print(_markdown(report))
    return report


def _cached_fold_models(folder: Path, utts, groups, config, settings, synthetic) -> list:
    """``mt.fold_models``, each fold's model kept in ``folder`` (named by its people, steps and seed) so an
    interrupted evaluation resumes where it stopped."""
    import hashlib

    from safetensors.torch import load_file, save_file

    from ..models.mouth_model import AudioToMouth

    folder.mkdir(parents=True, exist_ok=True)
    models = []
    for held in groups:
        key = hashlib.sha1(json.dumps([sorted(held), settings.steps, settings.seed, len(utts), len(synthetic),
                                       config.__dict__ if hasattr(config, "__dict__") else str(config)],
                                      default=str).encode()).hexdigest()[:12]
        path = folder / f"fold_{key}.safetensors"
        if path.exists():
            model = AudioToMouth(config)
            model.load_state_dict(load_file(str(path)))
            models.append(model.eval())
            continue
        model = mt.fold_models(utts, [held], config, settings, synthetic, progress=True)[0]
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        models.append(model)
    return models


class _LazyTracks(dict):
    """Tracks by name, read from disk when first asked for."""

    def __init__(self, paths: dict, needed: set):
        super().__init__()
        self.paths = {k: v for k, v in paths.items() if k in needed}

    def __missing__(self, name):
        from ..training.data.tracks import load_track

        self[name] = load_track(self.paths[name])
        return self[name]


def _markdown(report: dict) -> str:
    lines = ["| measure | in the wild | GRID |", "|---|---|---|"]
    for level in ("predicted", "videos"):
        s = report["summary"].get(level)
        if not s:
            continue
        cell = lambda k: (f"{s[k]['mean']:.3f} (median {s[k]['median']:.3f}, sd {s[k]['std']:.3f}, "  # noqa: E731
                          f"{s[k]['min']:.2f}..{s[k]['max']:.2f}; {s[k]['people']} people)") if k in s else "-"
        lines.append(f"| r within speech, {level} | {cell('wild')} | {cell('grid')} |")
        if level == "predicted" and "offset_undone" in s.get("wild", {}):
            u = {k: s[k]["offset_undone"] for k in ("wild", "grid") if "offset_undone" in s.get(k, {})}
            cell = lambda k: (f"{u[k]['mean']:.3f} (median {u[k]['median']:.3f}, sd {u[k]['std']:.3f}; "  # noqa: E731
                              + (f"{u[k]['halves_in_sync']:.0%} of {u[k]['halves']} halves found within a frame of sync"
                               if u[k]["halves"] else "no clip long enough to split") + ")") if k in u else "-"
            lines.append(f"| the same, each clip's sound/picture offset undone (found on the clip's other half; "
                         f"clips under 4 s as recorded) | "
                         f"{cell('wild')} | {cell('grid')} |")
    b = report["summary"]["predicted"].get("bilabial")
    if b:
        lines.append(f"| p/b/m onsets shut, predicted / real | | {b['closed_pred']:.2f} / {b['closed_real']:.2f} "
                     f"(ratio {b['ratio']:.2f}; other onsets {b['other_closed_pred']:.2f} / {b['other_closed_real']:.2f}) |")
    lv = report["summary"].get("live_vs_offline")
    if lv:
        lines.append(f"| live mode vs offline, r within speech (generated frames, shipped model) | "
                     f"{lv['r_live']:.3f} live at the warp level / {lv.get('r_live_full', float('nan')):.3f} at the "
                     f"full level / {lv['r_offline']:.3f} offline | |")
    v = report["summary"].get("voices")
    if v:
        under: dict = {}
        for row in report.get("voices", []):
            if not row["speech_silence_ratio"] >= 3:
                under[row["photo"]] = under.get(row["photo"], 0) + 1
        missed = "; under 3x: " + ", ".join(f"{p} with {n} voices" for p, n in sorted(under.items())) if under else ""
        lines.append(f"| voices on photos: speech/silence >= 3x | {v['share_over_3x']:.0%} of {v['rows']} voice/photo "
                     f"pairs (lowest {v['min_speech_silence_ratio']:.1f}x{missed}); silent frames shut: "
                     f"{v['min_closed_in_silence_pct']:.0f}% in the worst pair | |")
    low = sorted((p, s) for p, s in report["people"].items() if not math.isnan(s["r_speech"]) and s["r_speech"] < 0.1)
    if low:
        lines.append("")
        lines.append("People under r = 0.1 (predicted), their sound/picture offset (frames; negative: the sound "
                     "is late) and r with it undone (each half of a clip at the lag found on the other half): " + ", ".join(
                         f"{p} {s['r_speech']:.2f} ({s['offset_frames']:+d}: {s.get('r_speech_offset_undone', math.nan):.2f})"
                         for p, s in low))
    return "\n".join(lines) + "\n"
