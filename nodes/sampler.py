"""Variable-Length Sampler: the generation node (short first clip, per-clip previews, Cancel)."""

from __future__ import annotations

import dataclasses

import torch

from llia_core.errors import LLIAError
from llia_core.portrait import OUTPUTS as FRAME_SIZES

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
    OUTPUT_TOOLTIPS = ("Generated frames, full size or the crop (in 'mp4 only' mode: the last few frames as a preview).",
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
            "first_clip_frames": ("INT", {"default": 2, "min": 1, "max": 64, "tooltip": "Frames in the first clip; "
                                  "1-2 shows the first frame fastest. Later clips grow to clip_frames."}),
            "clip_frames": ("INT", {"default": 16, "min": 1, "max": 64, "tooltip": "Longest clip (capped at the "
                            "model's trained maximum); longer clips are more efficient."}),
            "output": (OUTPUTS, {"default": "frames", "tooltip": "'mp4 only' streams frames straight into an "
                       "mp4 in the output folder, for long audio that would not fit in memory."}),
            "filename_prefix": ("STRING", {"default": "llia/avatar", "tooltip": "mp4 name prefix in the "
                                "output folder (used when writing an mp4)."}),
            "frame_size": (list(FRAME_SIZES), {"default": "full", "tooltip": "full: frames of the portrait's own "
                           "size, only the face animated and everything else the picture's own pixels; crop: "
                           "the model's square face crop."}),
            "max_size": ("INT", {"default": 1024, "min": 0, "max": 8192, "step": 8, "tooltip": "Longest side of "
                         "full-size frames; larger portraits are scaled down to it (0 = no cap). Memory: each "
                         "frame is width x height x 12 bytes."}),
        }, "optional": {
            "motion": ("LLIA_MOTION", {"tooltip": "From LLIA Motion Settings: mouth amplitude, head motion, blinks "
                       "(without it: the mouth as trained, a still head, no blinks)."}),
            "share_cores": ("BOOLEAN", {"default": True, "tooltip": "On a CPU the two overlapping stages lend "
                            "each other idle cores (~10% faster); float rounding then depends on timing, so two "
                            "runs may differ by one brightness level in a few pixels. Off: the same seed gives "
                            "the same frames bit for bit."}),
        }}

    def sample(self, model, llia_audio, reference, states, sampler, first_clip_frames, clip_frames, output,
               filename_prefix, frame_size="full", max_size=1024, motion=None, share_cores=True):
        from llia_core.pipeline import clip_stream
        from llia_core.pipeline.output import FrameRenderer, render_clips

        pipe = model.pipeline
        cfg = dataclasses.replace(sampler, first_clip=min(first_clip_frames, model.config.max_clip_frames),
                                  clip_frames=clip_frames)
        if motion is not None:
            cfg = dataclasses.replace(cfg, mouth_amplitude=motion.mouth_amplitude)
        n, fps = llia_audio.num_frames, llia_audio.fps
        renderer = FrameRenderer(reference, frame_size, max_size or None, motion, fps,
                                 head_model=pipe.model.head_model, speech=llia_audio.waveform_for_video(),
                                 painter=pipe.model.mouth_painter)
        renderer.follow_states(0, states)
        path = _output_path(filename_prefix) if output != OUTPUTS[0] else None
        progress = comfy_bridge.Progress(n)

        def on_clip(clip, last, done):
            progress.update(done, last)
            comfy_bridge.send_event("llia.clip", {"clip": clip.clip.index, "frames_done": done,
                                                  "frames_total": n, "elapsed_ms": round(clip.elapsed * 1000)})

        # on a CPU two overlapping stages, as the command line runs them (1.2-1.5x as fast on 2 cores); on a
        # GPU the stages would share one stream: ComfyUI's sequential path
        stream, cfg = clip_stream(pipe, cfg, "auto" if pipe.device.type == "cpu" else "off", share_cores=share_cores)
        clips = stream(reference, llia_audio, states, cfg, step_callback=lambda i, s: comfy_bridge.check_interrupt())
        try:
            video = render_clips(clips, renderer, total_frames=n, mp4=path, fps=fps,
                                 audio=llia_audio.waveform_for_video(), keep="all" if output != OUTPUTS[2] else "tail",
                                 tail=PREVIEW_FRAMES, on_clip=on_clip)
        finally:
            comfy_bridge.free_memory()
        width, height = video.size
        report = (f"{n} frames of {width}x{height} at {fps:g} fps ({n / fps:.2f} s) in {video.seconds:.2f} s = "
                  f"{video.fps:.1f} FPS; first frame after {video.first_frame_seconds * 1000:.0f} ms; "
                  f"sampler {cfg.sampler} x{cfg.steps}" + (" in 2 overlapping stages" if stream != pipe.stream else ""))
        if path is not None:
            report += f"; mp4: {path.name}"
        frames = torch.from_numpy(video.frames).float().div_(255.0)
        audio = {"waveform": llia_audio.waveform_for_video()[None, None].float(), "sample_rate": 16000}
        return {"ui": {"text": [report]}, "result": (frames, audio, float(fps), report)}


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
