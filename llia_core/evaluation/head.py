"""Head motion judged on people left out: ``python -m llia_core eval --head TRACKS --real DIR``.

1. **Pose level**: leave-people-out folds of the head-motion model over every face track (GRID's s1,
   most of the frames, in a fold of its own); each held-out video's drawn motion (3 seeds) against
   its real one: spread of roll / yaw / pitch / shift / brows, head speed in speech vs in pauses,
   head speed against loudness, brow raises per minute. In-the-wild and GRID apart.
2. **Generated videos**: the held-out people's own clips made by the whole pipeline (portrait = the
   video's first frame, its own speech, head motion 1 with the fold's model), read back by the same
   face-mesh pose estimator as the real videos: what a user sees, with the warp's limits in it.
3. **The picture around the head**: how much a straight line around the head (neck, shoulders,
   background) bends at each video's largest pose drawn (outside the head's motion box nothing moves,
   by construction; a test checks it).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..training.head_train import HEAD_OUTPUTS, HeadTrainSettings, calibrate, compare, motion_measures, summarise


def _fold_models(seqs, folds, config, settings: HeadTrainSettings, cache: Path, progress: bool) -> list:
    """One head-motion model per fold, trained without its people and calibrated; cached in ``cache``."""
    from safetensors.torch import load_file, save_file

    from ..models.head_model import HeadMotionModel
    from ..training.head_train import train_head_model

    cache.mkdir(parents=True, exist_ok=True)
    models = []
    for k, held in enumerate(folds):
        path = cache / f"fold{k}_{settings.steps}.safetensors"
        model = HeadMotionModel(config)
        if path.exists():
            model.load_state_dict(load_file(str(path)))
        else:
            train = [q for q in seqs if q.person not in held]
            model = train_head_model(train, config, settings, progress)
            calibrate(model, train)
            save_file({k_: v.contiguous() for k_, v in model.state_dict().items()}, str(path))
        models.append(model.eval())
        if progress:
            print(f"head fold {k}: {len(held)} people left out", flush=True)
    return models


def generated_poses(frames: np.ndarray) -> np.ndarray:
    """(F, 6) head pose and brows read from generated frames by the face mesh (as the real videos were)."""
    from ..portrait import FaceTracker, align_landmarks
    from ..portrait.head_pose import head_poses
    from ..training.data.tracks import TRACK_RESOLUTION
    from ..training.head_data import brow_heights
    from .. import framing

    tracker = FaceTracker()
    pts, aligned, ok = [], [], []
    for rgb in frames:
        face = tracker.track(rgb)
        if face is None:
            pts.append(np.full((468, 3), np.nan))
            aligned.append(np.full((468, 3), np.nan))
            ok.append(False)
            continue
        al = align_landmarks(face, TRACK_RESOLUTION)
        pts.append(face.points)
        aligned.append(np.concatenate([framing.FACE.to_units(al.to_crop(face.xy), TRACK_RESOLUTION), face.points[:, 2:3]], 1))
        ok.append(True)
    ok = np.array(ok)
    return np.concatenate([head_poses(np.stack(pts), ok), brow_heights(np.stack(aligned), ok)[:, None]], 1)


def bend_around_head(motion, pose: np.ndarray) -> float:
    """How far a straight line around the head bends (degrees) under a drawn ``pose`` (6,): the
    steepest change of the head's displacement per pixel wherever it is not the head moving as one
    (its weight below 1: the neck, the shoulders, the background) and everywhere below the chin.
    Outside the head's box nothing moves (by construction and tested)."""
    field_x, field_y = motion.head_field(*pose[:5])
    weight, by0 = motion._head[3], motion._head[0][1]
    around = (weight < 1.0) | (np.arange(weight.shape[0])[:, None] + by0 > motion.chin_y)
    steepest = 0.0
    for f in (field_x, field_y):
        for axis in (0, 1):
            step = np.abs(np.diff(f, axis=axis))
            where = around[:-1] & around[1:] if axis == 0 else around[:, :-1] & around[:, 1:]
            if where.any():
                steepest = max(steepest, float(step[where].max()))
    return float(np.degrees(np.arctan(steepest)))


def run_head_eval(model: str, tracks: str, out: str, *, realfaces: str | None = None, folds: int = 5,
                  steps: int = 1500, video_seconds: float = 10.0, per_person: int = 2, threads: int | None = None,
                  figure: str | None = None, progress: bool = True) -> dict:
    from ..checkpoints import load_model
    from ..config import HeadMotionConfig
    from ..pipeline import LLIAPipeline
    from ..training.head_data import load_sequences
    from ..training.mouth_train import person_folds

    if threads:
        torch.set_num_threads(threads)
    t0 = time.time()
    pipe = LLIAPipeline(load_model(model))
    config = pipe.model.head_model.config if pipe.model.head_model is not None else HeadMotionConfig()
    seqs = load_sequences(tracks, config, progress=progress)
    people = sorted({q.person for q in seqs})
    frames: dict = {}
    for q in seqs:
        frames[q.person] = frames.get(q.person, 0) + q.num_frames
    alone = tuple(p for p, n in frames.items() if n > 0.25 * sum(frames.values()))
    groups = person_folds(people, folds, alone=alone)
    out_path = Path(out)
    models = _fold_models(seqs, groups, config, HeadTrainSettings(steps=steps), out_path.parent / (out_path.name + "_folds"),
                          progress)
    rows = []
    for held, m in zip(groups, models):
        for q in seqs:
            if q.person in held and q.num_frames >= 50 and q.valid.sum() >= 50:
                rows.append(compare(m, q))
    report = {"model": model, "folds": [list(g) for g in groups], "steps": steps, "pose_level": summarise(rows),
              "pose_level_videos": rows}
    if realfaces and video_seconds > 0:
        report["generated"] = generated_videos(pipe, seqs, groups, models, Path(realfaces), video_seconds, per_person,
                                               progress)
    if realfaces:
        from .blinks import real_blinks

        report["real_blinks"] = real_blinks(tracks, realfaces, progress)
    report["listening"] = listening_nods(pipe)
    if figure:
        report["figure"] = motion_figure(pipe, Path(figure))
    report["seconds"] = round(time.time() - t0, 1)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.with_suffix(".json").write_text(json.dumps(report, indent=1, default=float))
    out_path.with_suffix(".md").write_text(_markdown(report))
    print(_markdown(report))
    return report


def generated_videos(pipe, seqs, groups, models, realfaces: Path, seconds: float, per_person: int,
                     progress: bool) -> dict:
    """Each held-out in-the-wild person's clips (up to ``per_person``) made with their fold's head model,
    read back by the face mesh, against the real videos; plus the picture around the head."""
    from ..audio import encode_audio, window_settings
    from ..pipeline.output import FrameRenderer, render_clips
    from ..portrait import prepare_portrait
    from ..portrait.face_motion import MotionControls
    from ..states import states_from_activity
    from ..training.data.videos import _frame_times
    from ..training.head_data import clean_poses
    from .lipsync import _video_path

    own = pipe.model.head_model
    rows, around = [], []
    try:
        for held, model in zip(groups, models):
            pipe.model.head_model = model
            for person in held:
                mine = [q for q in seqs if q.person == person and q.kind == "wild" and q.num_frames >= 50][:per_person]
                for q in mine:
                    path = _video_path(realfaces, q.name)
                    if path is None:
                        continue
                    n = min(q.num_frames, int(seconds * 25))
                    portrait = prepare_portrait(next(img for _, img in _frame_times(path, 25.0)), pipe.config.resolution, view=pipe.config.framing)
                    if portrait.landmarks is None:
                        continue
                    wave = _track_wave(realfaces, q.name, n)
                    audio = encode_audio((wave, 16000), 25.0, **window_settings(pipe.config.audio))
                    renderer = FrameRenderer(portrait, "full", None, MotionControls(head_motion=1.0),
                                             25.0, head_model=model, speech=audio.waveform_for_video())
                    video = render_clips(pipe.stream(portrait, audio, states_from_activity(audio.speech)), renderer,
                                         total_frames=audio.num_frames)
                    drawn, valid = clean_poses(generated_poses(np.asarray(video.frames)[:n]))
                    loud = q.feats[:n, model.config.bands].numpy()
                    real = motion_measures(q.poses[:n], q.valid[:n], q.speech[:n], loud)
                    gen = motion_measures(drawn, valid, q.speech[:n], loud)
                    ratio = {k: gen[f"std_{k}"] / max(real[f"std_{k}"], 1e-6) for k in HEAD_OUTPUTS}
                    rows.append({"name": q.name, "person": person, "frames": n, "real": real, "generated": gen,
                                 "std_ratio": ratio})
                    if renderer.motion is not None and renderer.motion._head is not None:
                        poses = np.stack([renderer.motion.pose(i) for i in range(n)])
                        around.append(bend_around_head(renderer.motion, poses[np.abs(poses[:, :3]).sum(1).argmax()]))
                    if progress:
                        print(f"generated {q.name}: roll/yaw/pitch std x{ratio['roll']:.2f} / x{ratio['yaw']:.2f} / "
                              f"x{ratio['pitch']:.2f} of the real", flush=True)
    finally:
        pipe.model.head_model = own
    summary = {}
    if rows:
        for k in HEAD_OUTPUTS:
            summary[f"std_ratio_{k}_median"] = float(np.nanmedian([r["std_ratio"][k] for r in rows]))
        for k in ("speed_speech_vs_pause", "speed_vs_loudness_r", "brow_raises_per_min"):
            summary[f"real_{k}"] = float(np.nanmedian([r["real"][k] for r in rows]))
            summary[f"generated_{k}"] = float(np.nanmedian([r["generated"][k] for r in rows]))
    if around:
        summary["bend_around_degrees_max"] = float(max(around))
        summary["bend_around_degrees_median"] = float(np.median(around))
    return {"videos": rows, "summary": summary}


def listening_nods(pipe, seconds: float = 20.0, portrait_path=None) -> dict:
    """Nods while listening, counted on a generated video: the bundled portrait, ``seconds`` of silence,
    every frame in the listening state; a nod = the face mesh's pitch rising 1 degree above its median
    (after at least half a second below)."""
    from ..audio import encode_audio, window_settings
    from ..cli import DEFAULT_PORTRAIT
    from ..pipeline.output import FrameRenderer, render_clips
    from ..portrait import prepare_portrait
    from ..portrait.face_motion import MotionControls
    from ..states import fixed_states

    portrait = prepare_portrait(str(portrait_path or DEFAULT_PORTRAIT), pipe.config.resolution, view=pipe.config.framing)
    audio = encode_audio((np.zeros(int(seconds * 16000), np.float32), 16000), 25.0, **window_settings(pipe.config.audio))
    states = fixed_states(audio.num_frames, "listening")
    renderer = FrameRenderer(portrait, "full", None, MotionControls(head_motion=1.0), 25.0,
                             head_model=pipe.model.head_model, speech=audio.waveform_for_video())
    renderer.follow_states(0, states)
    frames = render_clips(pipe.stream(portrait, audio, states), renderer, total_frames=audio.num_frames).frames
    pitch = generated_poses(np.asarray(frames))[:, 2]
    pitch = pitch - np.nanmedian(pitch)
    count, below = 0, 0
    for p in np.nan_to_num(pitch):
        if p > 1.0 and below >= 12:
            count += 1
        below = below + 1 if p < 0.5 else (0 if p > 1.0 else below)
    drawn = len(renderer.motion._nods) if renderer.motion is not None else 0
    return {"seconds": seconds, "nods_read": count, "nods_drawn": drawn, "per_minute_read": count / seconds * 60,
            "pitch_std_deg": float(np.nanstd(pitch))}


def motion_figure(pipe, path: Path, seconds: float = 12.0) -> dict:
    """The bundled portrait speaking the bundled speech (public domain, so the figure may ship): the head
    pose and brows the model drew, what the face mesh reads back from the generated frames, and the
    speech's loudness. Returns the read-back's spread and its correlation with what was drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..audio import encode_audio, window_settings
    from ..cli import DEFAULT_AUDIO, DEFAULT_PORTRAIT
    from ..evaluation.metrics import correlation
    from ..pipeline.output import FrameRenderer, render_clips
    from ..portrait import prepare_portrait
    from ..portrait.face_motion import DRAW_GAIN, MotionControls
    from ..states import states_from_activity

    portrait = prepare_portrait(str(DEFAULT_PORTRAIT), pipe.config.resolution, view=pipe.config.framing)
    audio = encode_audio(str(DEFAULT_AUDIO), 25.0, duration=seconds, **window_settings(pipe.config.audio))
    states = states_from_activity(audio.speech)
    renderer = FrameRenderer(portrait, "full", None, MotionControls(head_motion=1.0), 25.0,
                             head_model=pipe.model.head_model, speech=audio.waveform_for_video())
    renderer.follow_states(0, states)
    frames = np.asarray(render_clips(pipe.stream(portrait, audio, states), renderer, total_frames=audio.num_frames).frames)
    n = len(frames)
    drawn = np.stack([renderer.motion.pose(i) for i in range(n)]) / DRAW_GAIN  # as predicted (before the draw gains)
    read = generated_poses(frames)
    read = read - np.nanmedian(read, 0)
    wave = audio.waveform_for_video().numpy()[:n * 640].reshape(n, -1)
    loud = 20 * np.log10(np.sqrt((wave ** 2).mean(1)) + 1e-5)
    t = np.arange(n) / 25.0
    fig, axes = plt.subplots(5, 1, figsize=(9, 8), sharex=True)
    for ax, k, unit in zip(axes, (0, 1, 2, 5), ("roll (deg)", "yaw (deg)", "pitch (deg)", "brows (eye dist.)")):
        ax.plot(t, drawn[:, k], label="drawn (model)")
        ax.plot(t, read[:, k], label="read back (face mesh)", alpha=0.8)
        ax.set_ylabel(unit)
    axes[0].legend(loc="upper right", fontsize=8)
    axes[4].fill_between(t, -60, loud, color="grey", alpha=0.5)
    axes[4].set_ylim(-60, max(-10, float(loud.max()) + 3))
    axes[4].set_ylabel("speech (dBFS)")
    axes[4].set_xlabel("seconds")
    axes[0].set_title("Head motion drawn from the bundled speech on the bundled portrait (head motion 1, seed 0)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    ok = np.isfinite(read).all(1)
    return {"figure": str(path), "read_std": [float(x) for x in np.nanstd(read[:, :3], 0)],
            "drawn_std": [float(x) for x in drawn[:, :3].std(0)],
            "read_vs_drawn_r": [correlation(read[ok, k], drawn[ok, k], float("nan")) for k in (0, 1, 2, 5)]}


def _track_wave(realfaces: Path, name: str, frames: int) -> np.ndarray:
    """The 16 kHz speech of a talking video's first ``frames`` frames."""
    from ..audio import load_audio
    from .lipsync import _video_path

    wave = load_audio(str(_video_path(realfaces, name)), duration=frames / 25.0).waveform.numpy()
    return np.pad(wave, (0, max(0, int(frames / 25.0 * 16000) - len(wave))))


def _markdown(report: dict) -> str:
    lines = [f"# Head motion on people left out ({report['model']})", "",
             f"{len(report['folds'])} folds by person, {report['steps']} steps each; {report['seconds']:.0f} s.", "",
             "## Pose level (drawn motion, 3 seeds, vs the real video of the same audio)", "",
             "| | videos | people | " + " | ".join(f"std {k} drawn/real" for k in HEAD_OUTPUTS)
             + " | speech/pause speed real / drawn | speed~loudness r real / drawn | brow raises/min real / drawn |",
             "|---" * (6 + len(HEAD_OUTPUTS)) + "|"]
    for kind, s in report["pose_level"].items():
        lines.append(f"| {kind} | {s['videos']} | {s['people']} | "
                     + " | ".join(f"{s['std_ratio_median'][k]:.2f} ({s['std_ratio_q25_q75'][k][0]:.2f}-"
                                  f"{s['std_ratio_q25_q75'][k][1]:.2f})" for k in HEAD_OUTPUTS)
                     + f" | {s['real']['speed_speech_vs_pause']:.2f} / {s['drawn']['speed_speech_vs_pause']:.2f}"
                     + f" | {s['real']['speed_vs_loudness_r']:.2f} / {s['drawn']['speed_vs_loudness_r']:.2f}"
                     + f" | {s['real']['brow_raises_per_min']:.1f} / {s['drawn']['brow_raises_per_min']:.1f} |")
    gen = report.get("generated")
    if gen and gen["summary"]:
        s = gen["summary"]
        lines += ["", f"## Generated videos ({len(gen['videos'])}, read back by the face mesh)", "",
                  "std generated / real (median): " + ", ".join(f"{k} {s[f'std_ratio_{k}_median']:.2f}" for k in HEAD_OUTPUTS),
                  "", f"speech/pause head speed real {s['real_speed_speech_vs_pause']:.2f} / generated "
                  f"{s['generated_speed_speech_vs_pause']:.2f}; speed~loudness r {s['real_speed_vs_loudness_r']:.2f} / "
                  f"{s['generated_speed_vs_loudness_r']:.2f}; brow raises per minute {s['real_brow_raises_per_min']:.1f} / "
                  f"{s['generated_brow_raises_per_min']:.1f}"]
        if "bend_around_degrees_max" in s:
            lines.append(f"\nA straight line around the head (neck, shoulders, background) bends by at most {s['bend_around_degrees_max']:.1f} degrees "
                         f"(median {s.get('bend_around_degrees_median', float('nan')):.1f}) at each video's largest pose drawn "
                         "(the picture outside the head's box never moves).")
    blinks = report.get("real_blinks")
    if blinks:
        lines += ["", "## When real talkers blink (from the eyes' pixels; `evaluation/blinks.py`)", "",
                  "| videos | blinks | per minute in speech | in pauses | pauses / speech | 0.5 s before speech starts | 0.5 s after |",
                  "|---|---|---|---|---|---|---|"]
        for kind, b in blinks.items():
            r = b["per_minute"]
            lines.append(f"| {kind}: {b['videos']} | {sum(b['blinks'][k] for k in ('speech', 'pause'))} | {r['speech']:.1f} | "
                         f"{r['pause']:.1f} | {b['pause_over_speech']:.2f} | {r['before_speech']:.1f} | {r['after_speech']:.1f} |")
    nods = report.get("listening")
    if nods:
        lines += ["", f"Listening ({nods['seconds']:g} s of silence, the bundled portrait): {nods['nods_drawn']} nods drawn, "
                  f"{nods['nods_read']} read back by the face mesh ({nods['per_minute_read']:.1f} a minute); pitch std "
                  f"{nods['pitch_std_deg']:.2f} degrees."]
    if gen and gen["summary"]:
        lines += ["", "| video | frames | " + " | ".join(f"{k} x" for k in HEAD_OUTPUTS) + " |",
                  "|---" * (2 + len(HEAD_OUTPUTS)) + "|"]
        for r in gen["videos"]:
            lines.append(f"| {r['name']} | {r['frames']} | " + " | ".join(f"{r['std_ratio'][k]:.2f}" for k in HEAD_OUTPUTS) + " |")
    return "\n".join(lines) + "\n"
