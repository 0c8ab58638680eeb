"""Conditioning nodes: audio -> LLIA_AUDIO, portrait -> LLIA_REFERENCE, states -> LLIA_STATES."""

from __future__ import annotations

import json

import torch

from llia_core.audio import encode_audio, window_settings
from llia_core.portrait import (CROP_MODES, DEFAULT_EXPRESSION, EXPRESSIONS, crop_preview, face_paste_mask,
                                prepare_portrait)
from llia_core.states import STATE_NAMES, fixed_states, format_timeline, parse_timeline, states_from_activity


def _audio_kwargs(config) -> dict:
    return window_settings(config.audio)


class LLIAEncodeAudio:
    DESCRIPTION = "Turns speech audio into per-video-frame features; the frame count is ceil(seconds x fps)."
    CATEGORY = "LLIA"
    FUNCTION = "encode"
    RETURN_TYPES = ("LLIA_AUDIO", "INT")
    RETURN_NAMES = ("llia_audio", "frame_count")
    OUTPUT_TOOLTIPS = ("Per-frame audio windows, speech activity and the exact frame count.",
                       "Number of video frames that will be generated.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("LLIA_MODEL", {"tooltip": "The model whose audio settings to use."}),
            "audio": ("AUDIO", {"tooltip": "The avatar's voice (any sample rate, mono or stereo)."}),
            "fps": ("FLOAT", {"default": 25.0, "min": 1.0, "max": 120.0, "step": 0.01,
                              "tooltip": "Output frame rate. The bundled model was trained at 25 fps."}),
            "start_seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1e6, "step": 0.01,
                                        "tooltip": "Skip this much audio at the start."}),
            "duration_seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1e6, "step": 0.01,
                                           "tooltip": "Use only this much audio (0 = to the end)."}),
        }}

    def encode(self, model, audio, fps, start_seconds=0.0, duration_seconds=0.0):
        feats = encode_audio(audio, fps, start=start_seconds, duration=duration_seconds or None,
                             **_audio_kwargs(model.config))
        model.model.prefetch_audio(feats)  # the phones decode while the portrait is prepared
        return (feats, feats.num_frames)


class LLIAReferencePortrait:
    DESCRIPTION = ("Finds the face and its landmarks, aligns it to the model's framing (rotation and scale from "
                   "the eyes and mouth), and caches the ReferenceNet features once.")
    CATEGORY = "LLIA"
    FUNCTION = "prepare"
    RETURN_TYPES = ("LLIA_REFERENCE", "IMAGE", "MASK", "STRING")
    RETURN_NAMES = ("reference", "crop_preview", "paste_mask", "crop_transform")
    OUTPUT_TOOLTIPS = ("The aligned portrait with its cached reference features.",
                       "What the model sees: the aligned crop, with the mouth the model animates outlined.",
                       "Where generated pixels replace the portrait's, at the portrait's own size (soft edge).",
                       "JSON: the 2x3 affine from portrait pixels to crop pixels, the crop size and the "
                       "portrait size, for compositing crop-size frames yourself.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("LLIA_MODEL", {"tooltip": "The model to prepare the portrait for."}),
            "image": ("IMAGE", {"tooltip": "The portrait (first image of the batch is used)."}),
            "crop": (list(CROP_MODES), {"default": "auto", "tooltip": "auto: align the largest face from its "
                     "landmarks, the whole image if none is found; face: require a face; whole: animate the centre "
                     "square as is."}),
            "face_scale": ("FLOAT", {"default": 1.8, "min": 1.0, "max": 6.0, "step": 0.05,
                                     "tooltip": "Crop side / face size; 1.8: the model's own framing. Larger "
                                     "shows more hair and shoulders (models that warp the mouth, as the bundled "
                                     "one, keep their own)."}),
        }, "optional": {
            "expression": (list(EXPRESSIONS), {"default": DEFAULT_EXPRESSION, "tooltip": "The mouth the avatar "
                           "starts from, keeps while listening or idle, and talks from. neutral: lips closed, "
                           "relaxed corners (a smile with teeth or a mouth caught mid-word is closed); as_photo: "
                           "unchanged; slight_smile: lips closed, corners up. Only the mouth, lips and chin move."}),
        }}

    def prepare(self, model, image, crop, face_scale, expression=DEFAULT_EXPRESSION):
        view, note = model.config.portrait_view(face_scale)
        portrait = prepare_portrait(image, model.config.resolution, mode=crop, view=view, expression=expression)
        if note:
            portrait.notes.append(note)
        model.pipeline.prepare_reference(portrait)  # ReferenceNet once per portrait, cached
        width, height = portrait.source_size
        paste_mask = torch.from_numpy(face_paste_mask(portrait, width, height))[None]
        transform = json.dumps({"source_to_crop": portrait.alignment.matrix.round(6).tolist(),
                                "crop_size": portrait.resolution, "source_size": [width, height],
                                "notes": portrait.notes})
        return (portrait, crop_preview(portrait)[None], paste_mask, transform)


class LLIAStateSwitcher:
    DESCRIPTION = "Speaking / listening / idle per frame: automatic from voice activity, fixed, or a timeline."
    CATEGORY = "LLIA"
    FUNCTION = "states"
    RETURN_TYPES = ("LLIA_STATES", "STRING")
    RETURN_NAMES = ("states", "timeline")
    OUTPUT_TOOLTIPS = ("State label of every frame.", "The resulting timeline as text.")
    MODES = ["auto", *STATE_NAMES, "timeline"]

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "llia_audio": ("LLIA_AUDIO", {"tooltip": "Encoded audio of the avatar's voice."}),
                "mode": (cls.MODES, {"default": "auto", "tooltip": "auto: speaking while the avatar's voice is "
                         "active, listening while the other party talks (if connected), idle otherwise."}),
                "timeline": ("STRING", {"default": "0-2:speaking,2-end:listening", "multiline": False,
                             "tooltip": "Used when mode is 'timeline': START-END:STATE segments in seconds."}),
            },
            "optional": {
                "listener_audio": ("AUDIO", {"tooltip": "The other party's voice, for automatic listening."}),
            },
        }

    def states(self, llia_audio, mode, timeline, listener_audio=None):
        n, fps = llia_audio.num_frames, llia_audio.fps
        if mode == "timeline":
            labels = parse_timeline(timeline, n, fps)
        elif mode in STATE_NAMES:
            labels = fixed_states(n, mode)
        else:
            other = None
            if listener_audio is not None:
                from llia_core.audio import detect_speech, load_audio

                wave = load_audio(listener_audio).waveform
                other = detect_speech(wave, n, fps)
            labels = states_from_activity(llia_audio.speech, other)
        return (labels, format_timeline(labels, fps))


class LLIAConsistencyStep:
    DESCRIPTION = "Sampler settings: few-step consistency sampling (the fast path) or a multi-step teacher."
    CATEGORY = "LLIA"
    FUNCTION = "settings"
    RETURN_TYPES = ("LLIA_SAMPLER",)
    RETURN_NAMES = ("sampler",)
    OUTPUT_TOOLTIPS = ("Sampler settings for the Variable-Length Sampler.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "sampler": (["consistency", "ddim", "euler"], {"default": "consistency",
                        "tooltip": "consistency: 1-8 steps, real time. ddim/euler: teacher sampling, slow."}),
            "steps": ("INT", {"default": 2, "min": 1, "max": 100, "tooltip": "Denoising steps per clip "
                      "(consistency: 1-8; 2 is the real-time setting)."}),
            "guidance_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.05,
                               "tooltip": "Audio guidance. 1 = off (one model call per step); >1 exaggerates lip motion."}),
            "reference_guidance": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.05,
                                   "tooltip": "Reference guidance. 1 = off; >1 pushes towards the portrait's look."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**63 - 1, "tooltip": "Noise seed; same seed, same video (bit for bit with "
                     "the sampler's share_cores off)."}),
        }, "optional": {
            "drift_guard": ("FLOAT", {"default": 0.15, "min": 0.0, "max": 10.0, "step": 0.01,
                            "tooltip": "Long videos: how far (in reference standard deviations) colour and contrast "
                                       "may stray before being pulled back. 0 = off; ordinary frames are never touched."}),
            "reuse_features": ("BOOLEAN", {"default": True, "tooltip": "Consistency sampling with 2+ steps: later "
                               "steps reuse the first step's deep features and recompute only the top level "
                               "(about 1.4x faster, frames within ~64 dB PSNR). Off recomputes every step."}),
            "motion_frames": ("INT", {"default": 1, "min": 0, "max": 16, "tooltip": "Last frames of a clip the "
                              "next clip sees, so motion runs on across the boundary (capped at the model's: 2 "
                              "for the bundled one). 2 carries a little more motion, ~6% slower; 0 starts "
                              "every clip afresh."}),
        }}

    def settings(self, sampler, steps, guidance_scale, reference_guidance, seed, drift_guard=0.15,
                 reuse_features=True, motion_frames=1):
        from llia_core.pipeline import SamplerConfig

        cfg = SamplerConfig(sampler=sampler, steps=steps, guidance_scale=guidance_scale,
                            reference_guidance=reference_guidance, seed=seed, drift_guard=drift_guard,
                            reuse_features=reuse_features, motion_frames=motion_frames)
        cfg.validate(max_clip=10**6)
        return (cfg,)
