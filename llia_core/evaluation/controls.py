"""Do the expression and motion controls do what they say? ``python -m llia_core eval --controls``.

Everything is measured with the face mesh on the generated full-resolution frames (or, for the
templates, on the edited portrait), never read back from the settings:

- **mouth amplitude** 0 / 0.5 / 1 / 1.5 / 2: the lip opening's variation (standard deviation over
  the speaking frames) relative to amplitude 1;
- **head motion** 0 / 0.5 / 1 / 2: the head's roll (the eye line, degrees), standard deviation
  (the tracker's own jitter on a still face is the floor; the mesh's nose point jitters by 3% of
  the face on still frames, too much to measure the sway's shift with);
- **blink rate** 0 / 15 / 30 per minute over a minute of video: blinks counted where the eyes'
  openness (``eye_openness``, from the pixels) dips under 0.7 of its median;
- **expression templates**: the edited portrait's lip gap, width and corner height, how much of
  the face the edit touched and how far the landmarks outside the mouth moved (identity), and the
  mouth in the video's silent frames (it should keep the template's).

Writes OUT.md / OUT.json, and with ``figure`` the same portrait under each template (the bundled,
public-domain portrait by default, so the figure may go in ``docs/``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from ..audio import encode_audio, load_audio, window_settings
from ..errors import LLIAError
from ..pipeline import LLIAPipeline, SamplerConfig
from ..pipeline.output import FrameRenderer, render_clips
from ..portrait import FaceTracker, prepare_portrait
from ..portrait.expression import mouth_geometry
from ..portrait.face_motion import EYELIDS, MotionControls
from ..states import SPEAKING, states_from_activity

AMPLITUDES = (0.0, 0.5, 1.0, 1.5, 2.0)
HEAD_MOTIONS = (0.0, 0.5, 1.0, 2.0)
BLINK_RATES = (0.0, 15.0, 30.0)
BLINK_DIP = 0.7  # eye openness under this share of its median counts as a blink
DARK = 0.55  # of the face's median brightness: darker pixels are lashes, iris or pupil


def eye_openness(rgb: np.ndarray, face) -> float:
    """How open the eyes look, from the pixels: the height of the dark run (lashes, iris, pupil)
    down the middle of each eye over the eye's width, averaged over both eyes (about 0.3 open, half
    that shut, where only the lash line is left). The mesh's own lid points barely move when a
    photo's eyes close, so they cannot measure a blink."""
    import cv2

    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    x0, y0, x1, y1 = (int(v) for v in face.box())
    skin = float(np.median(grey[max(0, y0):y1, max(0, x0):x1]))
    vals = []
    for upper, _ in EYELIDS:
        a, b = face.xy[upper[0]], face.xy[upper[-1]]
        width = float(np.hypot(*(b - a)))
        cx, cy = (a + b) / 2
        top, bottom = int(max(0, cy - 0.6 * width)), int(cy + 0.6 * width)
        column = grey[top:bottom, int(max(0, round(cx) - 2)):int(round(cx) + 3)].mean(1)
        vals.append(float((column < DARK * skin).sum()) / max(width, 1e-6))
    return float(np.mean(vals))


def track(frames: np.ndarray) -> dict:
    """Per-frame measures of (N, H, W, 3) frames: lip opening (mesh), eye openness (pixels), roll
    (mesh eye line, degrees); nan where the face was lost."""
    tracker = FaceTracker()
    rows = []
    for rgb in frames:
        face = tracker.track(rgb)
        if face is None:
            rows.append([np.nan] * 3)
            continue
        a, b = face.eye_centres()
        rows.append([face.mouth_opening(), eye_openness(rgb, face), float(np.degrees(np.arctan2(*(b - a)[::-1])))])
    m = np.array(rows, np.float64)
    return {"opening": m[:, 0], "eyes": m[:, 1], "roll": m[:, 2]}


def count_blinks(eyes: np.ndarray) -> int:
    """Dips of the eye openness under ``BLINK_DIP`` of its median, at least 3 frames apart."""
    base = np.nanmedian(eyes)
    shut = np.nan_to_num(eyes, nan=base) < BLINK_DIP * base
    starts = np.flatnonzero(shut[1:] & ~shut[:-1]) + 1
    if shut[0]:
        starts = np.r_[0, starts]
    kept = [s for i, s in enumerate(starts) if i == 0 or s - starts[i - 1] >= 3]
    return len(kept)


def _render(pipe, portrait, audio, states, motion: MotionControls, sampler: SamplerConfig):
    sampler = dataclasses.replace(sampler, mouth_amplitude=motion.mouth_amplitude)
    renderer = FrameRenderer(portrait, "full", None, motion, audio.fps,
                             head_model=pipe.model.head_model, speech=audio.waveform_for_video())
    renderer.follow_states(0, states)
    return render_clips(pipe.stream(portrait, audio, states, sampler), renderer, total_frames=audio.num_frames).frames


def _audio(pipe, wave: np.ndarray):
    return encode_audio((wave.astype(np.float32), 16000), float(pipe.config.fps), **window_settings(pipe.config.audio))


BROWS = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46, 300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
NOSE_BRIDGE = (168, 6, 197, 195, 5, 4, 1)


def identity_shift(before, after) -> float:
    """Mean displacement of the eyes', brows' and nose's landmarks, % of the eye distance: the
    parts of the face that say who it is and that no template should move."""
    a, b = before.eye_centres()
    eye = float(np.hypot(*(b - a)))
    idx = sorted(set(BROWS + NOSE_BRIDGE + sum((up + lo for up, lo in EYELIDS), ())))
    return float(np.linalg.norm(after.xy[idx] - before.xy[idx], axis=1).mean() / eye * 100)


def run_controls_eval(model: str, out: str, *, portrait: str | None = None, audio: str | None = None,
                      seconds: float = 10.0, blink_seconds: float = 60.0, figure: str | None = None,
                      threads: int | None = None) -> dict:
    from ..checkpoints import load_model
    from ..cli import DEFAULT_AUDIO, DEFAULT_PORTRAIT
    from ..portrait.image_io import load_image

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    pipe = LLIAPipeline(load_model(model))
    r = pipe.config.resolution
    photo = load_image(str(portrait or DEFAULT_PORTRAIT))
    speech = load_audio(str(audio or DEFAULT_AUDIO)).waveform.numpy()
    wave = np.resize(speech, int(seconds * 16000))  # repeated to length
    feats = _audio(pipe, wave)
    states = states_from_activity(feats.speech)
    speaking = states.numpy() == SPEAKING
    base = prepare_portrait(photo, r, view=pipe.config.framing)
    report: dict = {"model": str(model), "seconds": seconds}

    # 1. mouth amplitude
    rows = []
    for amp in AMPLITUDES:
        m = track(_render(pipe, base, feats, states, MotionControls(mouth_amplitude=amp), SamplerConfig()))
        rows.append({"mouth_amplitude": amp, "opening_std": float(np.nanstd(m["opening"][speaking])),
                     "opening_mean_speaking": float(np.nanmean(m["opening"][speaking]))})
    ref = next(x["opening_std"] for x in rows if x["mouth_amplitude"] == 1.0)
    for x in rows:
        x["variation_vs_1"] = x["opening_std"] / max(ref, 1e-9)
    report["mouth_amplitude"] = rows

    # 2. head motion
    rows = []
    for head in HEAD_MOTIONS:
        m = track(_render(pipe, base, feats, states, MotionControls(head_motion=head), SamplerConfig()))
        rows.append({"head_motion": head, "roll_std_deg": float(np.nanstd(m["roll"]))})
    ref = next(x for x in rows if x["head_motion"] == 1.0)
    for x in rows:
        x["roll_vs_1"] = x["roll_std_deg"] / max(ref["roll_std_deg"], 1e-9)
    report["head_motion"] = rows

    # 3. blinks over a longer stretch
    long_feats = _audio(pipe, np.resize(speech, int(blink_seconds * 16000)))
    long_states = states_from_activity(long_feats.speech)
    rows = []
    for rate in BLINK_RATES:
        m = track(_render(pipe, base, long_feats, long_states, MotionControls(blink_rate=rate), SamplerConfig()))
        n = count_blinks(m["eyes"])
        rows.append({"blink_rate": rate, "blinks": n, "measured_per_minute": n / (blink_seconds / 60)})
    report["blinks"] = rows

    # 4. expression templates
    rows, looks = [], []
    before = prepare_portrait(photo, r, view=pipe.config.framing, expression="as_photo")
    if before.landmarks is None:
        raise LLIAError("the expression templates need a portrait whose face landmarks are found")
    for expr in ("as_photo", "neutral", "slight_smile"):
        p = prepare_portrait(photo, r, view=pipe.config.framing, expression=expr)
        g = mouth_geometry(p.landmarks)
        frames = _render(pipe, p, feats, states, MotionControls(), SamplerConfig())
        m = track(frames)
        face = before.landmarks
        x0, y0, x1, y1 = (int(v) for v in face.box())
        changed = np.abs(p.source[y0:y1, x0:x1].astype(int) - before.source[y0:y1, x0:x1].astype(int)).max(-1) > 0
        rows.append({"expression": expr, "lip_gap": g["gap"], "width_over_eyes": g["width"],
                     "corners_above_lip_line": -g["corners"], "opening_photo": p.landmarks.mouth_opening(),
                     "opening_silent_median": float(np.nanmedian(m["opening"][~speaking])),
                     "opening_speaking_std": float(np.nanstd(m["opening"][speaking])),
                     "face_box_changed_pct": float(changed.mean() * 100),
                     "identity_landmark_shift_pct": identity_shift(face, p.landmarks)})
        talk = int(np.nanargmax(np.where(speaking, m["opening"], -1)))
        quiet = int(np.flatnonzero(~speaking)[len(np.flatnonzero(~speaking)) // 2]) if (~speaking).any() else 0
        looks.append((expr, p.source, frames[talk], frames[quiet], face.box()))
    report["expressions"] = rows
    report["eval_seconds"] = round(time.perf_counter() - t0, 1)

    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.with_suffix(".json").write_text(json.dumps(report, indent=1))
    out_path.with_suffix(".md").write_text(_markdown(report))
    if figure:
        _figure(Path(figure), looks)
    print(_markdown(report))
    return report


def _table(rows: list[dict]) -> list[str]:
    keys = list(rows[0])
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    return ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)] + \
        ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]


def _markdown(report: dict) -> str:
    parts = [f"Model {report['model']}, {report['seconds']:g} s of speech (blinks: a minute); the mouth, the roll and the "
             "templates measured with the face mesh, the eyes from their pixels.", ""]
    for key, title in (("mouth_amplitude", "Mouth amplitude"), ("head_motion", "Head motion"),
                       ("blinks", "Blink rate"), ("expressions", "Expression templates")):
        parts += [f"### {title}", ""] + _table(report[key]) + [""]
    return "\n".join(parts)


def _figure(path: Path, looks) -> None:
    """Rows: templates; columns: the edited portrait, a speaking frame, a silent frame (face, full resolution)."""
    import cv2

    tiles = []
    for expr, still, talk, quiet, (x0, y0, x1, y1) in looks:
        w, h = x1 - x0, y1 - y0
        box = (int(max(0, x0 - 0.15 * w)), int(max(0, y0 - 0.1 * h)), int(x1 + 0.15 * w), int(y1 + 0.1 * h))
        row = [img[box[1]:box[3], box[0]:box[2]] for img in (still, talk, quiet)]
        row = np.concatenate(row, 1).copy()
        cv2.putText(row, expr, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
        tiles.append(row)
    width = min(t.shape[1] for t in tiles)
    img = np.concatenate([t[:, :width] for t in tiles], 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
