"""``python -m llia_core eval --real DIR``: how a model does on real people it never saw.

DIR holds ``talking/`` (videos with their own speech) and ``photos/`` (portraits), e.g. the
project's ``../shared/realfaces``. Only the named validation people are used.

Talking videos (portrait = the video's first frame, audio = its own speech), measured with the
face mesh on the real and on the generated frames, both at full resolution:
- mouth: the lip gap (face-box units) of the generated video against the real one's: Pearson r per
  video, and how much it moves (std generated / std real);
- shimmer: mean frame-to-frame change outside the mouth while silent, generated / real;
- identity: SSIM of the generated face outside the mouth against the portrait (aligned crops);
- sharpness: Laplacian variance of the face in the generated frames / in the portrait;
- clip boundaries: frame change across clip boundaries / within clips.
Photos (real speech with pauses): mouth-gap variation in speech / in silence, and the share of
silent frames with the mouth closed. A figure (real vs generated frames, full resolution) is
written next to the report; it shows real people, so write it to a folder that is not committed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from .. import framing
from ..audio import encode_audio, window_settings
from .mouth_realism import OPEN_GAP, crop_features, interior_shares, jaw_slope, mouth_crops, mouth_sharpness
from ..pipeline import LLIAPipeline, SamplerConfig
from ..pipeline.output import FrameRenderer, render_clips
from ..portrait.expression import DEFAULT_EXPRESSION
from ..states import SPEAKING, states_from_activity

GAP_CLOSED = 0.03  # lip gap above the portrait's own (face-box units) under which a mouth counts as closed


def _read_video(path: Path, seconds: float) -> tuple[np.ndarray, float]:
    import av

    frames = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        fps = float(s.average_rate or 25)
        for f in c.decode(s):
            frames.append(f.to_ndarray(format="rgb24"))
            if len(frames) >= int(seconds * fps):
                break
    return np.stack(frames), fps


def mouth_track(frames: np.ndarray) -> tuple[np.ndarray, list]:
    """(N, H, W, 3) -> lip gaps (N,) in face-box units (nan where no face) and the landmarks."""
    from ..portrait import FaceTracker, align_landmarks
    from ..training.data.videos import mouth_measures

    tracker, gaps, faces = FaceTracker(), [], []
    for rgb in frames:
        face = tracker.track(rgb)
        faces.append(face)
        if face is None:
            gaps.append(np.nan)
            continue
        al = align_landmarks(face, 128)
        gaps.append(mouth_measures(framing.FACE.to_units(al.to_crop(face.xy), 128))[0])
    return np.array(gaps), faces


def _face_regions(portrait, r: int):
    """(face outside the mouth, mouth) boolean masks of the aligned crop."""
    from ..training.data.render import mouth_box

    face = portrait.face_mask[0].numpy() > 0
    x0, y0, x1, y1 = mouth_box(r, portrait.view)
    mouth = np.zeros_like(face)
    mouth[y0:y1, x0:x1] = True
    return face & ~mouth, mouth


def _crops(frames: np.ndarray, portrait) -> np.ndarray:
    from ..portrait import crop_image

    return np.stack([crop_image(f, portrait.alignment)[0] for f in frames]).astype(np.float32)


def _sharpness(frames: np.ndarray, box) -> float:
    import cv2

    x0, y0, x1, y1 = (int(v) for v in box)
    vals = [cv2.Laplacian(cv2.cvtColor(f[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY), cv2.CV_32F).var() for f in frames]
    return float(np.mean(vals))


def _ssim(a: np.ndarray, b: np.ndarray, keep: np.ndarray) -> float:
    from .metrics import ssim

    ta = torch.from_numpy(np.asarray(a, np.float32) / 255)[None]
    tb = torch.from_numpy(np.asarray(b, np.float32) / 255)[None]
    return float(ssim(ta, tb, torch.from_numpy(keep))[0])


def _generate(pipe: LLIAPipeline, portrait, wave: np.ndarray, sampler: SamplerConfig):
    cfg = pipe.config
    audio = encode_audio((wave, 16000), cfg.fps, **window_settings(cfg.audio))
    renderer = FrameRenderer(portrait, "full", None, painter=pipe.model.mouth_painter)
    states = states_from_activity(audio.speech)
    video = render_clips(pipe.stream(portrait, audio, states, sampler), renderer, total_frames=audio.num_frames)
    boundaries = [c.start for c in pipe.plan(audio.num_frames, states, sampler)][1:]
    return video.frames, states.numpy(), boundaries, video.fps


def evaluate_video(pipe, path: Path, seconds: float, sampler: SamplerConfig,
                   expression: str = DEFAULT_EXPRESSION) -> tuple[dict, dict]:
    from ..audio import load_audio
    from ..portrait import prepare_portrait
    from .metrics import boundary_ratio

    real, fps = _read_video(path, seconds)
    portrait = prepare_portrait(real[0], pipe.config.resolution, view=pipe.config.framing, expression=expression)
    wave = load_audio(str(path), duration=len(real) / fps).waveform.numpy()
    gen, states, boundaries, gen_fps = _generate(pipe, portrait, wave, sampler)
    # the real video at the model's frame rate, frame for frame
    idx = np.minimum((np.arange(len(gen)) * fps / pipe.config.fps).astype(int), len(real) - 1)
    real = real[idx]
    g_gap, g_faces = mouth_track(gen)
    r_gap, r_faces = mouth_track(real)
    ok = ~np.isnan(g_gap) & ~np.isnan(r_gap)
    r = float(np.corrcoef(g_gap[ok], r_gap[ok])[0, 1]) if ok.sum() > 10 else float("nan")
    move = float(np.std(g_gap[ok]) / max(np.std(r_gap[ok]), 1e-6))
    crops_g, crops_r = _crops(gen, portrait), _crops(real, portrait)
    outside, _ = _face_regions(portrait, pipe.config.resolution)
    silent = states != SPEAKING
    quiet = silent[1:] & silent[:-1]

    def change(c):
        d = np.abs(np.diff(c, axis=0)).mean(-1)[:, outside].mean(1)
        return float(d[quiet].mean()) if quiet.any() else float("nan")

    ref = portrait.image.permute(1, 2, 0).numpy() * 255
    ident = float(np.mean([_ssim(c, ref, outside) for c in crops_g[::5]]))
    box = portrait.landmarks.box() if portrait.landmarks is not None else (0, 0, gen.shape[2], gen.shape[1])
    sharp = _sharpness(gen[::5], box) / max(_sharpness(real[:1], box), 1e-6)
    gen_t = torch.from_numpy(crops_g / 255)
    row = {"video": path.stem, "frames": int(len(gen)), "mouth_r": r, "mouth_motion_ratio": move,
           "shimmer_generated": change(crops_g), "shimmer_real": change(crops_r),
           "identity_ssim": ident, "sharpness_ratio": sharp,
           "boundary_ratio": float(boundary_ratio(gen_t, boundaries)) if boundaries else float("nan"),
           "silent_frames": int(silent.sum()), "generation_fps": gen_fps}
    mouths = {}
    for kind, frames, faces, track in (("real", real, r_faces, r_gap), ("generated", gen, g_faces, g_gap)):
        crops, gaps, inner = mouth_crops(frames, faces)
        teeth, dark = interior_shares(crops, inner)
        opened = gaps >= OPEN_GAP
        mouths[kind] = {"features": crop_features(crops[opened]), "gaps": gaps, "teeth": teeth, "dark": dark}
        row[f"open_frames_{kind}"] = int(opened.sum())
        row[f"jaw_slope_{kind}"] = jaw_slope(faces)
        row[f"mouth_sharpness_{kind}"] = mouth_sharpness(frames, faces, real[0], r_faces[0],
                                                         np.nan_to_num(track) >= OPEN_GAP)
    return row, {"real": real, "generated": gen, "faces": g_faces, "mouths": mouths}


def speech_with_pauses_real(speech_dir: Path, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Real speech (files of ``speech_dir``) cut into 1.2-2.5 s pieces with 0.8-1.5 s silences between."""
    from ..audio import load_audio

    files = sorted(p for p in speech_dir.iterdir() if p.suffix.lower() in (".wav", ".mp3", ".flac"))
    out, total = [], 0
    while total < seconds * 16000:
        wave = load_audio(str(files[int(rng.integers(len(files)))])).waveform.numpy()
        n = int(rng.uniform(1.2, 2.5) * 16000)
        s = int(rng.integers(0, max(1, len(wave) - n)))
        piece = wave[s:s + n]
        piece = piece / max(float(np.abs(piece).max()), 1e-3) * 0.5
        gap = np.zeros(int(rng.uniform(0.8, 1.5) * 16000), np.float32)
        out += [piece.astype(np.float32), gap]
        total += len(piece) + len(gap)
    return np.concatenate(out)[:int(seconds * 16000)]


def evaluate_photo(pipe, path: Path, wave: np.ndarray, sampler: SamplerConfig,
                   expression: str = DEFAULT_EXPRESSION) -> tuple[dict, dict]:
    from ..portrait import prepare_portrait
    from ..portrait.image_io import load_image

    portrait = prepare_portrait(load_image(str(path)), pipe.config.resolution, view=pipe.config.framing, expression=expression)
    gen, states, _, gen_fps = _generate(pipe, portrait, wave, sampler)
    gap, _ = mouth_track(gen)
    rest = float(mouth_track(portrait.source[None])[0][0])
    speaking = states == SPEAKING
    moving = np.abs(np.diff(np.nan_to_num(gap, nan=rest)))
    sp = speaking[1:] & speaking[:-1]
    si = ~speaking[1:] & ~speaking[:-1]
    ratio = float(moving[sp].mean() / max(moving[si].mean(), 1e-4)) if sp.any() and si.any() else float("nan")
    closed = float(np.mean(np.nan_to_num(gap[~speaking], nan=rest) - rest < GAP_CLOSED)) if (~speaking).any() else float("nan")
    box = portrait.landmarks.box() if portrait.landmarks is not None else (0, 0, gen.shape[2], gen.shape[1])
    sharp = _sharpness(gen[::5], box) / max(_sharpness(portrait.source[None], box), 1e-6)
    row = {"photo": path.stem, "frames": int(len(gen)), "speech_silence_ratio": ratio,
           "closed_in_silence_pct": 100 * closed, "sharpness_ratio": sharp, "generation_fps": gen_fps}
    return row, {"generated": gen, "source": portrait.source, "speaking": speaking}


def _figure(path: Path, videos: list[dict], photos: list[dict], height: int = 360) -> None:
    """Rows of real | generated frames (videos) and generated frames in speech (photos), full resolution
    scaled to one row height."""
    import cv2

    def fit(img):
        s = height / img.shape[0]
        return cv2.resize(img, (max(1, round(img.shape[1] * s)), height), interpolation=cv2.INTER_AREA)

    rows = []
    for v in videos:
        n = len(v["generated"])
        pick = np.linspace(n * 0.2, n - 1, 3).astype(int)
        rows.append(np.concatenate([fit(v["real"][i]) for i in pick] + [fit(v["generated"][i]) for i in pick], 1))
    for p in photos:
        gen, sp = p["generated"], p["speaking"]
        talk = np.flatnonzero(sp)
        pick = [talk[len(talk) // 4], talk[len(talk) // 2], talk[3 * len(talk) // 4]] if len(talk) >= 4 else [0, 0, 0]
        rows.append(np.concatenate([fit(p["source"])] + [fit(gen[i]) for i in pick], 1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])


def realism_report(rows: list[dict], looks: list[dict]) -> dict:
    """The mouth-realism measures (``mouth_realism.py``) over evaluated videos, one person each."""
    from .mouth_realism import leave_one_person_out, matched_shares

    names = [r["video"] for r in rows]
    acc = leave_one_person_out({n: (lk["mouths"]["real"]["features"], lk["mouths"]["generated"]["features"])
                                for n, lk in zip(names, looks)})
    pooled = {k: tuple(np.concatenate([lk["mouths"][k][f] for lk in looks]) for f in ("gaps", "teeth", "dark"))
              for k in ("real", "generated")} if looks else None
    nan = float("nan")
    shares = matched_shares(pooled["real"], pooled["generated"]) if pooled else \
        {"teeth_ratio": nan, "dark_ratio": nan, "teeth_ratio_range": [nan, nan], "dark_ratio_range": [nan, nan]}
    mean = lambda k: float(np.nanmean([r[k] for r in rows])) if rows else float("nan")  # noqa: E731
    return {"classifier_accuracy": float(np.mean(list(acc.values()))) if acc else float("nan"),
            "classifier_accuracy_per_person": acc, "people": len(acc), **shares,
            "jaw_slope_generated": mean("jaw_slope_generated"), "jaw_slope_real": mean("jaw_slope_real"),
            "mouth_sharpness_generated": mean("mouth_sharpness_generated"),
            "mouth_sharpness_real": mean("mouth_sharpness_real")}


def run_real_eval(model: str, real_dir: str, out: str, *, videos: list[str], photos: list[str],
                  seconds: float = 10.0, photo_seconds: float = 8.0, figure: str | None = None,
                  threads: int | None = None, seed: int = 0, sampler: SamplerConfig = SamplerConfig(),
                  expression: str = DEFAULT_EXPRESSION, realism_videos: list[str] = ()) -> dict:
    """``videos``: talking videos of people the model never trained on (names in ``talking/``);
    ``photos``: photos; ``realism_videos``: more such videos (paths under ``real_dir`` without suffix,
    e.g. ``grid/s2/pwij3p``) that only join the mouth-realism measures."""
    from ..checkpoints import load_model

    if threads:
        torch.set_num_threads(threads)
    root = Path(real_dir)
    pipe = LLIAPipeline(load_model(model))
    t0 = time.perf_counter()

    def each(folder: str, names: list[str], evaluate):
        rows, looks = [], []
        for name in names:
            row, look = evaluate(next((root / folder).glob(f"{name}.*")))
            print(", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
            rows.append(row)
            looks.append(look)
        return rows, looks

    v_rows, v_looks = each("talking", videos, lambda path: evaluate_video(pipe, path, seconds, sampler, expression))
    x_rows, x_looks = each(".", list(realism_videos),
                           lambda path: evaluate_video(pipe, path, seconds, sampler, expression))
    realism = realism_report([*v_rows, *x_rows], [*v_looks, *x_looks])
    wave = speech_with_pauses_real(root / "speech", photo_seconds, np.random.default_rng(seed))
    p_rows, p_looks = each("photos", photos, lambda path: evaluate_photo(pipe, path, wave, sampler, expression))
    mean = lambda rows, k: float(np.nanmean([r[k] for r in rows]))  # noqa: E731
    summary = {
        "mouth_r": mean(v_rows, "mouth_r"), "mouth_motion_ratio": mean(v_rows, "mouth_motion_ratio"),
        "shimmer_generated": mean(v_rows, "shimmer_generated"), "shimmer_real": mean(v_rows, "shimmer_real"),
        "identity_ssim": mean(v_rows, "identity_ssim"), "boundary_ratio": mean(v_rows, "boundary_ratio"),
        "sharpness_ratio_videos": mean(v_rows, "sharpness_ratio"),
        "speech_silence_ratio_photos": mean(p_rows, "speech_silence_ratio"),
        "closed_in_silence_pct_photos": mean(p_rows, "closed_in_silence_pct"),
        "sharpness_ratio_photos": mean(p_rows, "sharpness_ratio"),
        "realism_classifier_accuracy": realism["classifier_accuracy"],
        "realism_teeth_ratio": realism["teeth_ratio"], "realism_dark_ratio": realism["dark_ratio"],
        "realism_teeth_ratio_min_over_openings": realism["teeth_ratio_range"][0],
        "realism_teeth_ratio_max_over_openings": realism["teeth_ratio_range"][1],
        "realism_dark_ratio_min_over_openings": realism["dark_ratio_range"][0],
        "realism_dark_ratio_max_over_openings": realism["dark_ratio_range"][1],
        "realism_mouth_sharpness_generated": realism["mouth_sharpness_generated"],
        "realism_mouth_sharpness_real": realism["mouth_sharpness_real"],
        "jaw_slope_generated": realism["jaw_slope_generated"], "jaw_slope_real": realism["jaw_slope_real"],
        "eval_seconds": round(time.perf_counter() - t0, 1), "model": str(model), "expression": expression,
    }
    report = {"summary": summary, "videos": v_rows, "photos": p_rows, "realism_videos": x_rows, "realism": realism}
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.with_suffix(".json").write_text(json.dumps(report, indent=1))
    lines = ["| measure | value |", "|---|---|"] + [f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |"
                                                   for k, v in summary.items()]
    out_path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    if figure:
        _figure(Path(figure), v_looks, p_looks)
    print("\n".join(lines))
    return report
