"""Variable-Length Sampler: the generation node (short first clip, per-clip previews, Cancel)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from llia_core.errors import LLIAError

from . import comfy_bridge

OUTPUTS = ["frames", "frames + mp4", "mp4 only (long audio)"]
PREVIEW_FRAMES = 16  # frames returned in "mp4 only" mode, to keep memory flat


class LLIAVariableLengthSampler:
    DESCRIPTION = ("Generates the talking-avatar frames clip by clip: a very short first clip (fast first "
                   "frame), then longer clips; each clip continues from the last frames of the one before.")
    CATEGORY = "LLIA"
    FUNCTION = "sample"
    OUTPUT_NODE = True
    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT", "STRING")
    RETURN_NAMES = ("frames", "audio", "fps", "report")
    OUTPUT_TOOLTIPS = ("Generated frames (in 'mp4 only' mode: the last few frames as a preview).",
                       "The audio trimmed/padded to exactly the video's duration.",
                       "Frame rate of the frames.", "Timing report: frames, FPS, time to first clip.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("LLIA_MODEL", {"tooltip": "From Load LLIA Model."}),
            "llia_audio": ("LLIA_AUDIO", {"tooltip": "From LLIA Encode Audio."}),
            "reference": ("LLIA_REFERENCE", {"tooltip": "From LLIA Reference Portrait."}),
            "states": ("LLIA_STATES", {"tooltip": "From LLIA State Switcher."}),
            "sampler": ("LLIA_SAMPLER", {"tooltip": "From LLIA Consistency Step."}),
            "first_clip_frames": ("INT", {"default": 2, "min": 1, "max": 64, "tooltip": "Frames in the first clip "
                                  "and after each state switch; 1-2 shows the first frame fastest."}),
            "clip_frames": ("INT", {"default": 16, "min": 1, "max": 64, "tooltip": "Longest clip (capped at the "
                            "model's trained maximum); longer clips are more efficient."}),
            "output": (OUTPUTS, {"default": "frames", "tooltip": "'mp4 only' streams frames straight into an "
                       "mp4 in the output folder, for long audio that would not fit in memory."}),
            "filename_prefix": ("STRING", {"default": "llia/avatar", "tooltip": "mp4 name prefix in the "
                                "output folder (used when writing an mp4)."}),
        }}

    def sample(self, model, llia_audio, reference, states, sampler, first_clip_frames, clip_frames, output,
               filename_prefix):
        pipe = model.pipeline
        cfg = dataclasses.replace(sampler, first_clip=min(first_clip_frames, model.config.max_clip_frames),
                                  clip_frames=clip_frames)
        n, fps = llia_audio.num_frames, llia_audio.fps
        keep_frames = output != OUTPUTS[2]
        writer, path = None, None
        if output != OUTPUTS[0]:
            path = _output_path(filename_prefix)
            from llia_core.video_io import Mp4Writer

            r = model.config.resolution
            writer = Mp4Writer(path, fps, r, r, audio=llia_audio.waveform_for_video(), sample_rate=16000)
        progress = comfy_bridge.Progress(n)
        chunks, tail, first, done = [], [], None, 0
        t0 = time.perf_counter()
        try:
            for clip in pipe.stream(reference, llia_audio, states, cfg,
                                    step_callback=lambda i, s: comfy_bridge.check_interrupt()):
                first = clip.elapsed if first is None else first
                done += clip.frames.shape[0]
                if keep_frames:
                    chunks.append(clip.frames)
                else:
                    tail = (tail + [clip.frames])[-2:]
                if writer is not None:
                    writer.write(clip.frames)
                last = (clip.frames[-1].numpy() * 255 + 0.5).astype(np.uint8)
                progress.update(done, last)
                comfy_bridge.send_event("llia.clip", {"clip": clip.clip.index, "frames_done": done,
                                                      "frames_total": n, "elapsed_ms": round(clip.elapsed * 1000)})
        except BaseException:
            if writer is not None:
                writer.close(keep_partial=True)
            comfy_bridge.free_memory()
            raise
        if writer is not None:
            writer.close()
        total = time.perf_counter() - t0
        frames = torch.cat(chunks) if keep_frames else torch.cat(tail)[-PREVIEW_FRAMES:]
        if keep_frames and frames.shape[0] != n:
            raise LLIAError(f"generated {frames.shape[0]} frames for {n} audio frames; please report this bug")
        report = (f"{n} frames at {fps:g} fps ({n / fps:.2f} s) in {total:.2f} s = {n / total:.1f} FPS; "
                  f"first clip after {first * 1000:.0f} ms; sampler {cfg.sampler} x{cfg.steps}")
        if path is not None:
            report += f"; mp4: {path.name}"
        audio = {"waveform": llia_audio.waveform_for_video()[None, None].float(), "sample_rate": 16000}
        comfy_bridge.free_memory()
        ui = {"text": [report]}
        return {"ui": ui, "result": (frames.float(), audio, float(fps), report)}


def _output_path(prefix: str):
    base = comfy_bridge.output_directory().resolve()
    prefix = (prefix or "llia/avatar").replace("\\", "/").strip("/")
    target = (base / prefix).resolve()
    if base not in target.parents and target != base:
        raise LLIAError("filename_prefix must stay inside the output folder; remove '..' or absolute paths")
    target.parent.mkdir(parents=True, exist_ok=True)
    k = 1
    while (target.parent / f"{target.name}_{k:05d}.mp4").exists():
        k += 1
    return target.parent / f"{target.name}_{k:05d}.mp4"
