"""LLIA Motion Settings: mouth amplitude, head sway and blinks, for the sampler and the live view."""

from __future__ import annotations


class LLIAMotionSettings:
    DESCRIPTION = ("How the avatar moves beyond what the audio says: how wide the mouth opens, how much the "
                   "head sways and how often the eyes blink. Feed it to the Variable-Length Sampler or the Live View.")
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
                            "tooltip": "Head sway: 0 still, 1 natural (up to about 2 degrees), 2 lively. The "
                                       "shoulders and background stay."}),
            "blink_rate": ("FLOAT", {"default": 15.0, "min": 0.0, "max": 60.0, "step": 1.0,
                           "tooltip": "Blinks per minute at random intervals (0 = none; people blink 10-20 times)."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1,
                     "tooltip": "Which sway and which blink times; the same seed gives the same motion."}),
        }, "optional": {
            "teeth": ("BOOLEAN", {"default": True,
                      "tooltip": "Draw the upper front teeth in an open mouth (full-size output). Off: a plain "
                                 "dark opening, e.g. for a stylised face."}),
        }}

    def settings(self, mouth_amplitude, head_motion, blink_rate, seed=0, teeth=True):
        from llia_core.portrait.face_motion import MotionControls

        return (MotionControls(mouth_amplitude, head_motion, blink_rate, seed, bool(teeth)).validate(),)
