"""LLIA Motion Settings: mouth amplitude, head motion and blinks, for the sampler and the live view."""

from __future__ import annotations


class LLIAMotionSettings:
    DESCRIPTION = ("How the avatar moves beyond the mouth: how wide the mouth opens, how much the head turns, nods "
                   "and raises its brows with the speech (learned from real talkers), which style of motion (seed) "
                   "and how often the eyes blink. Feed it to the Variable-Length Sampler or the Live View.")
    CATEGORY = "LLIA"
    FUNCTION = "settings"
    RETURN_TYPES = ("LLIA_MOTION",)
    RETURN_NAMES = ("motion",)
    OUTPUT_TOOLTIPS = ("Motion controls for the Variable-Length Sampler or the Live View.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "mouth_amplitude": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05,
                                "tooltip": "How far the mouth moves: 0 still, 1 as trained, 2 exaggerated."}),
            "head_motion": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05,
                            "tooltip": "Head motion and brows from the speech: 0 still, 1 as real talkers move "
                                       "(the model's learned amount: a few degrees, more while speaking), 2 twice "
                                       "that. The shoulders and background stay."}),
            "blink_rate": ("FLOAT", {"default": 15.0, "min": 0.0, "max": 60.0, "step": 1.0,
                           "tooltip": "Blinks per minute at random intervals (0 = none; people blink 10-20 times)."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1,
                     "tooltip": "The style seed: which head motion and which blink times for the same "
                                "speech; the same seed gives the same motion."}),
        }, "optional": {
            "teeth": ("BOOLEAN", {"default": True,
                      "tooltip": "Draw the upper front teeth in an open mouth (full-size output). Off: a plain "
                                 "dark opening, e.g. for a stylised face."}),
        }}

    def settings(self, mouth_amplitude, head_motion, blink_rate, seed=0, teeth=True):
        from llia_core.portrait.face_motion import MotionControls

        return (MotionControls(mouth_amplitude, head_motion, blink_rate, seed, bool(teeth)).validate(),)
