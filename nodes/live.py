"""LLIA Live View: start (or stop) the live avatar for a model and portrait prepared in the graph.

The avatar runs in its own process (``llia_core/live/process.py``: the standalone live engine, with
its own threads, so a clip costs inside ComfyUI what it costs alone), which ends with ComfyUI.
Lifecycle: one avatar per node and per port. Queuing the node again restarts it with the new
inputs (the old one stops first, whatever its port); queuing it with ``live`` off stops it; and
ComfyUI's "Unload models" / "Free memory" stops every live avatar, so none keeps a core busy
after the user is done with it.
"""

from __future__ import annotations

from llia_core.live.levels import LEVEL_PRESETS
from llia_core.portrait import OUTPUTS as FRAME_SIZES

from . import comfy_bridge
from .loader import LLIAModelHandle

_SERVERS: dict[int, object] = {}  # port -> running LiveProcess
_OWNERS: dict[str, int] = {}  # node id -> the port its server runs on


def stop_port(port: int) -> bool:
    server = _SERVERS.pop(port, None)
    for node, p in list(_OWNERS.items()):
        if p == port:
            del _OWNERS[node]
    if server is None:
        return False
    server.stop()
    return True


def stop_all() -> int:
    """Stop every live avatar this pack started (ComfyUI unloading its models calls this)."""
    ports = list(_SERVERS)
    for port in ports:
        stop_port(port)
    return len(ports)


class LLIALiveView:
    DESCRIPTION = ("Starts (or restarts, or with 'live' off stops) a local live-avatar page for this model and "
                   "portrait: open the URL, push the avatar's voice to /api/avatar-audio, and it speaks, listens "
                   "and idles in real time. It sleeps while no page is open; Unload models stops it.")
    CATEGORY = "LLIA"
    FUNCTION = "start"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("url",)
    OUTPUT_TOOLTIPS = ("Address of the live page (open it in a browser on this machine), or 'stopped'.",)

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
                "clip_frames": ("INT", {"default": 1, "min": 1, "max": 8,
                                        "tooltip": "Frames generated together; fewer = lower latency (1: ~190 ms "
                                                   "voice to face on 2 CPU cores)."}),
                "frame_size": (list(FRAME_SIZES), {"default": "full", "tooltip": "full: the portrait's own size, "
                               "only the face animated; crop: the model's square crop (cheapest)."}),
                "max_size": ("INT", {"default": 1024, "min": 0, "max": 4096, "step": 8,
                                     "tooltip": "Longest side of full-size frames (0 = no cap)."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
            "optional": {
                "live": ("BOOLEAN", {"default": True, "label_on": "running", "label_off": "stopped",
                         "tooltip": "Queue with 'stopped' to stop this live avatar (ComfyUI's Unload models "
                                    "stops it too); queue with 'running' to (re)start it with these inputs."}),
                "motion": ("LLIA_MOTION", {"tooltip": "From LLIA Motion Settings: mouth amplitude, head motion, "
                           "blinks (changeable later through POST /api/motion)."}),
                "engine": (list(LEVEL_PRESETS), {"default": "adaptive", "tooltip": "adaptive: the diffusion model "
                           "runs on as many clips as the machine has time for, the others are made by the mouth "
                           "model and the warp alone, so frames are never late (the page shows the level); "
                           "denoise every clip: always the diffusion model, late frames skipped; warp only: "
                           "the cheapest."}),
            },
        }

    def start(self, model: LLIAModelHandle, reference, port: int, steps: int, clip_frames: int,
              frame_size: str = "full", max_size: int = 1024, motion=None, live: bool = True,
              engine: str = "adaptive", unique_id=None):
        from llia_core.errors import LLIAError
        from llia_core.live.process import LiveProcess

        owner = str(unique_id) if unique_id is not None else f"port {port}"
        if owner in _OWNERS:  # this node's previous server, on whatever port
            stop_port(_OWNERS[owner])
        stop_port(port)  # and whatever else held this port
        if not live:
            text = f"stopped (port {port})"
            return {"ui": {"text": [text]}, "result": (text,)}
        if not model.path:
            raise LLIAError("this model handle has no checkpoint file for the live process; load it with Load LLIA Model")
        comfy_bridge.on_unload_models(stop_all)
        server = LiveProcess(model.path, reference, port, steps=steps, clip_frames=clip_frames, output=frame_size,
                             max_size=max_size or None, motion=motion, dtype=model.precision,
                             levels=LEVEL_PRESETS[engine])
        _SERVERS[port], _OWNERS[owner] = server, port
        try:
            server.wait_ready()
        except LLIAError:
            stop_port(port)
            raise
        return {"ui": {"text": [server.url]}, "result": (server.url,)}

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")  # always (re)start when queued
