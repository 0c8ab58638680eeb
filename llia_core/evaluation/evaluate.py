"""Evaluation on held-out identities: lip sync, identity, states, continuity, drift.

Ground truth comes from the data generator, rendered without random head motion so that head
sway (not determined by audio) does not count against identity. Every number is measured on the
generated frames by pixel methods independent of the model (see ``metrics``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..audio import Audio, AudioFeatures, audio_windows
from ..audio.activity import detect_speech, frame_rms
from ..pipeline import LLIAPipeline, SamplerConfig
from ..pipeline.drift_guard import channel_deviation
from ..portrait import Portrait
from ..states import IDLE, LISTENING, SPEAKING
from .metrics import MOUTH_CLOSED_MAX, boundary_ratio, correlation, frame_changes, mouth_darkness, psnr, region_mask, ssim

SAMPLER_SETTINGS = {
    "teacher-25": SamplerConfig(sampler="ddim", steps=25, guidance_scale=1.5),
    "student-1": SamplerConfig(sampler="consistency", steps=1),
    "student-2": SamplerConfig(sampler="consistency", steps=2),
    "student-4": SamplerConfig(sampler="consistency", steps=4),
}


@dataclass
class EvalClip:
    """One ground-truth clip: frames (F, R, R, 3) float 0..1 plus its conditions."""

    frames: torch.Tensor
    reference: torch.Tensor
    face_mask: torch.Tensor
    audio: torch.Tensor
    states: torch.Tensor
    mouth_open: torch.Tensor
    fps: float


def features_for(audio_wave: torch.Tensor, num_frames: int, fps: float, config) -> AudioFeatures:
    audio = Audio(audio_wave.float())
    windows = audio_windows(audio.waveform, num_frames, fps, config.audio)
    return AudioFeatures(audio=audio, fps=fps, num_frames=num_frames, windows=windows,
                         speech=detect_speech(audio.waveform, num_frames, fps),
                         rms=frame_rms(audio.waveform, num_frames, fps))


def portrait_for(clip: EvalClip) -> Portrait:
    return Portrait.from_crop(clip.reference.permute(2, 0, 1).float(), clip.face_mask.float()[None])


def make_eval_clips(identities: list[int], kinds: list[str], seconds: float, resolution: int,
                    fps: float, seed: int = 1000) -> list[EvalClip]:
    from ..training.data.clips import make_clip

    clips = []
    for i, ident in enumerate(identities):
        for j, kind in enumerate(kinds):
            c = make_clip(ident, seed + 17 * i + j, seconds=seconds, fps=int(fps), resolution=resolution,
                          kind=kind, head_motion=False)
            clips.append(EvalClip(
                frames=torch.as_tensor(c.frames).float() / 255, reference=torch.as_tensor(c.reference).float() / 255,
                face_mask=torch.as_tensor(c.face_mask).float(), audio=torch.as_tensor(c.audio),
                states=torch.as_tensor(c.states).long(), mouth_open=torch.as_tensor(c.mouth_open).float(),
                fps=float(c.fps)))
    return clips


def evaluate_setting(pipe: LLIAPipeline, clips: list[EvalClip], sampler: SamplerConfig, mouth_box) -> dict:
    """Generate every clip with one sampler setting and score it against ground truth."""
    gen_open, gt_open, id_psnr, id_ssim, closed, boundary, switch, switch_face = [], [], [], [], [], [], [], []
    frames_done, seconds = 0, 0.0
    for clip in clips:
        n = clip.frames.shape[0]
        feats = features_for(clip.audio, n, clip.fps, pipe.config)
        t0 = time.perf_counter()
        out = pipe.generate(portrait_for(clip), feats, clip.states, sampler)
        seconds += time.perf_counter() - t0
        frames_done += n
        frames = out.frames
        r = frames.shape[1]
        keep = region_mask(r, r, mouth_box)
        id_psnr.append(psnr(frames, clip.frames, keep).mean().item())
        id_ssim.append(ssim(frames, clip.frames, keep).mean().item())
        dark = mouth_darkness(frames, mouth_box, clip.reference)
        speaking = clip.states == SPEAKING
        if speaking.sum() > 5:
            gen_open.append(dark[speaking].numpy())
            gt_open.append(clip.mouth_open[speaking].numpy())
        quiet = (clip.states == LISTENING) | (clip.states == IDLE)
        if quiet.any():
            closed.append((dark[quiet] <= MOUTH_CLOSED_MAX).float().numpy())
        starts = [c.start for c in out.clips[1:]]
        boundary.append(boundary_ratio(frames, starts))
        switches = state_switches(clip)
        if switches:
            switch.append(boundary_ratio(frames, switches))
            switch_face.append(boundary_ratio(frames * keep[None, :, :, None], switches))
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)  # noqa: E731
    return {
        "lip_sync_corr": correlation(cat(gen_open), cat(gt_open)),
        "identity_psnr_db": float(np.mean(id_psnr)),
        "identity_ssim": float(np.mean(id_ssim)),
        "mouth_closed_quiet_pct": float(100 * cat(closed).mean()) if closed else float("nan"),
        "clip_boundary_ratio": float(np.nanmean(boundary)) if boundary else float("nan"),
        "state_switch_ratio": float(np.nanmean(switch)) if switch else float("nan"),
        "state_switch_ratio_outside_mouth": float(np.nanmean(switch_face)) if switch_face else float("nan"),
        "gen_fps": frames_done / max(seconds, 1e-9),
    }


def state_switches(clip: EvalClip) -> list[int]:
    """First frame index of every state change inside the clip."""
    return (torch.nonzero(clip.states[1:] != clip.states[:-1]).reshape(-1) + 1).tolist()


def ground_truth_scores(clips: list[EvalClip], mouth_box) -> dict:
    """The same pixel metrics on the ground-truth frames: the ceiling for lip sync, and how large
    the change at a state switch is in the data itself (the mouth opens or closes at once).

    No outside-the-mouth switch ratio here: without head motion the ground truth barely changes
    outside the mouth inside a clip, so that ratio divides by almost nothing."""
    dark, gt_open, switch = [], [], []
    for clip in clips:
        speaking = clip.states == SPEAKING
        if speaking.sum() > 5:
            dark.append(mouth_darkness(clip.frames, mouth_box, clip.reference)[speaking].numpy())
            gt_open.append(clip.mouth_open[speaking].numpy())
        switches = state_switches(clip)
        if switches:
            switch.append(boundary_ratio(clip.frames, switches))
    return {"ground_truth_lip_sync_corr": correlation(np.concatenate(dark), np.concatenate(gt_open)),
            "ground_truth_state_switch_ratio": float(np.nanmean(switch))}


def speech_vs_silence(pipe: LLIAPipeline, clip: EvalClip, wave: torch.Tensor, mouth_box,
                      sampler: SamplerConfig) -> dict:
    """Real espeak-ng speech with pauses: mouth motion during speech vs during silence.

    Twice: with the state held at speaking throughout (the model's response to the audio alone),
    and with the states the main job uses by default (from voice activity: pauses become idle).
    """
    fps = clip.fps
    n = int(math.ceil(wave.shape[0] / 16000 * fps))
    feats = features_for(wave, n, fps, pipe.config)
    speech = feats.speech[1:]
    out = {"speech_frames": int(speech.sum()), "silence_frames": int((~speech).sum())}
    for key, states in (("speech_silence_motion_ratio", torch.full((n,), SPEAKING, dtype=torch.long)),
                        ("speech_silence_motion_ratio_default_states", None)):
        frames = pipe.generate(portrait_for(clip), feats, states, sampler).frames
        motion = frame_changes(mouth_crop(frames, mouth_box))
        out[key] = (float(motion[speech].mean() / motion[~speech].mean().clamp_min(1e-8)) if (~speech).any()
                    else float("nan"))
    return out


def mouth_crop(frames: torch.Tensor, box) -> torch.Tensor:
    x0, y0, x1, y1 = box
    return frames[:, y0:y1, x0:x1]


def drift(pipe: LLIAPipeline, clip: EvalClip, minutes: float, sampler: SamplerConfig, mouth_box, fps: float,
          sample_seconds: float = 20.0) -> dict:
    """Identity PSNR (outside the mouth, vs the reference) in the first vs the last minute."""
    from ..training.data.speech import espeak_speech, have_espeak, synth_speech

    rng = np.random.default_rng(5)
    pieces, total = [], 0
    target = int(minutes * 60 * 16000)
    while total < target:
        if have_espeak():
            w = espeak_speech("this is a long test of a talking avatar that must not drift over time",
                              "en-us", 160, 50, rng)
        else:
            w = synth_speech(6.0, rng)
        pieces += [w, np.zeros(int(16000 * 1.5), dtype=np.float32)]
        total += len(w) + int(16000 * 1.5)
    wave = torch.as_tensor(np.concatenate(pieces)[:target]).float()
    n = int(math.ceil(minutes * 60 * fps))
    feats = features_for(wave, n, fps, pipe.config)
    portrait = portrait_for(clip)
    keep = region_mask(portrait.image.shape[1], portrait.image.shape[2], mouth_box)
    ref = clip.reference[None]
    first, last = [], []
    window = max(1, min(int(sample_seconds * fps), n // 3))  # short runs (tests): first and last third
    ref_latent = pipe.prepare_reference(portrait).latent
    colour, contrast = 0.0, [1.0, 1.0]  # how far the latents strayed (what the drift guard bounds)
    for out in pipe.stream(portrait, feats, None, sampler):
        offset, ratio, _, _, ref_std = channel_deviation(out.latents, ref_latent.cpu())
        colour = max(colour, float((offset.abs() / ref_std).max()))
        contrast = [min(contrast[0], float(ratio.min())), max(contrast[1], float(ratio.max()))]
        s = out.clip.start
        if s < window:
            first.append(psnr(out.frames, ref.expand_as(out.frames), keep))
        elif s >= n - window:
            last.append(psnr(out.frames, ref.expand_as(out.frames), keep))
    a, b = torch.cat(first).mean().item(), torch.cat(last).mean().item()
    return {"drift_first_psnr_db": a, "drift_last_psnr_db": b, "drift_delta_db": b - a, "drift_minutes": minutes,
            "drift_max_colour_dev_std": colour, "drift_contrast_ratio_range": contrast,
            "drift_guard": sampler.drift_guard}


def format_table(rows: dict[str, dict]) -> str:
    cols = ["lip_sync_corr", "identity_psnr_db", "identity_ssim", "mouth_closed_quiet_pct",
            "clip_boundary_ratio", "state_switch_ratio", "state_switch_ratio_outside_mouth", "gen_fps"]
    head = "| setting | " + " | ".join(cols) + " |"
    sep = "|---" * (len(cols) + 1) + "|"
    lines = [head, sep]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{r.get(c, float('nan')):.3f}" for c in cols) + " |")
    return "\n".join(lines)


def write_report(path, rows: dict, extra: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps({"settings": rows, **extra}, indent=2))
    text = format_table(rows) + "\n\n" + "\n".join(f"- {k}: {v:.3f}" if isinstance(v, float) else f"- {k}: {v}"
                                                   for k, v in extra.items()) + "\n"
    path.with_suffix(".md").write_text(text)
