"""LLIA Live View: start the live avatar server for a model and portrait prepared in the graph."""

from __future__ import annotations

from llia_core.portrait import OUTPUTS as FRAME_SIZES

from .loader import LLIAModelHandle

_SERVERS: dict[int, object] = {}  # port -> running LiveServer (one per port, replaced on re-run)


class LLIALiveView:
    DESCRIPTION = ("Starts (or restarts) a local live-avatar page for this model and portrait: open the URL, "
                   "push the avatar's voice to /api/avatar-audio, and it speaks, listens and idles in real time.")
    CATEGORY = "LLIA"
    FUNCTION = "start"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("url",)
    OUTPUT_TOOLTIPS = ("Address of the live page (open it in a browser on this machine).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("LLIA_MODEL", {"tooltip": "From Load LLIA Model."}),
                "reference": ("LLIA_REFERENCE", {"tooltip": "From LLIA Reference Portrait."}),
                "port": ("INT", {"default": 8765, "min": 1024, "max": 65535,
                                 "tooltip": "Port of the live page on 127.0.0.1 (this machine only)."}),
                "steps": ("INT", {"default": 1, "min": 1, "max": 4,
                                  "tooltip": "Consistency steps per clip; 1 keeps a 2-core CPU in real time, 2 adds detail."}),
                "clip_frames": ("INT", {"default": 2, "min": 1, "max": 8,
                                        "tooltip": "Frames generated together; fewer = lower latency."}),
                "frame_size": (list(FRAME_SIZES), {"default": "full", "tooltip": "full: the portrait's own size, "
                               "only the face animated; crop: the model's square crop (cheapest)."}),
                "max_size": ("INT", {"default": 1024, "min": 0, "max": 4096, "step": 8,
                                     "tooltip": "Longest side of full-size frames (0 = no cap)."}),
            },
            "optional": {
                "motion": ("LLIA_MOTION", {"tooltip": "From LLIA Motion Settings: mouth amplitude, head sway, "
                           "blinks (changeable later through POST /api/motion)."}),
            },
        }

    def start(self, model: LLIAModelHandle, reference, port: int, steps: int, clip_frames: int,
              frame_size: str = "full", max_size: int = 1024, motion=None):
        from llia_core.live import LiveAvatar, LiveServer

        old = _SERVERS.pop(port, None)
        if old is not None:
            old.stop()
        avatar = LiveAvatar(model.pipeline, reference, steps=steps, clip_frames=clip_frames, output=frame_size,
                            max_size=max_size or None, motion=motion)
        server = LiveServer(avatar, "127.0.0.1", port).start()
        _SERVERS[port] = server
        return {"ui": {"text": [server.url]}, "result": (server.url,)}

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")  # always (re)start when queued
