"""ComfyUI nodes of the LLIA pack: thin wrappers that parse inputs, call llia_core and wrap outputs."""

from .conditioning import LLIAConsistencyStep, LLIAEncodeAudio, LLIAReferencePortrait, LLIAStateSwitcher
from .live import LLIALiveView
from .loader import LLIALoadModel
from .motion import LLIAMotionSettings
from .sampler import LLIAVariableLengthSampler

NODE_CLASS_MAPPINGS = {
    "LLIALoadModel": LLIALoadModel,
    "LLIAEncodeAudio": LLIAEncodeAudio,
    "LLIAReferencePortrait": LLIAReferencePortrait,
    "LLIAStateSwitcher": LLIAStateSwitcher,
    "LLIAConsistencyStep": LLIAConsistencyStep,
    "LLIAMotionSettings": LLIAMotionSettings,
    "LLIAVariableLengthSampler": LLIAVariableLengthSampler,
    "LLIALiveView": LLIALiveView,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "LLIALoadModel": "Load LLIA Model",
    "LLIAEncodeAudio": "LLIA Encode Audio",
    "LLIAReferencePortrait": "LLIA Reference Portrait",
    "LLIAStateSwitcher": "LLIA State Switcher",
    "LLIAConsistencyStep": "LLIA Consistency Step",
    "LLIAMotionSettings": "LLIA Motion Settings",
    "LLIAVariableLengthSampler": "LLIA Variable-Length Sampler",
    "LLIALiveView": "LLIA Live View",
}
