"""llia_core: the LLIA talking-avatar engine (no ComfyUI import anywhere in this package).

Quick start::

    from llia_core import load_model, LLIAPipeline, SamplerConfig, encode_audio, prepare_portrait
    model = load_model("bundled")
    pipe = LLIAPipeline(model)
    portrait = prepare_portrait("me.png", model.config.resolution, view=model.config.framing)
    audio = encode_audio("hello.wav", fps=25)
    out = pipe.generate(portrait, audio, sampler=SamplerConfig(steps=2))      # the model's crops
    video = render_clips(pipe.stream(portrait, audio), FrameRenderer(portrait),  # the photo's own size, a still head
                         total_frames=audio.num_frames, mp4="me.mp4", audio=audio.waveform_for_video())
"""

from .audio import AudioFeatures, encode_audio, load_audio
from .checkpoints import load_model, save_model
from .clips import plan_clips
from .config import CONFIGS, LLIAConfig, get_config
from .errors import AudioError, CheckpointError, LLIAError, PortraitError, TimelineError, VideoError
from .models import LLIAModel
from .pipeline import GenerationOutput, LLIAPipeline, SamplerConfig
from .pipeline.output import FrameRenderer, RenderedVideo, render_clips
from .portrait import Compositor, Portrait, prepare_portrait
from .portrait.face_motion import MotionControls
from .quantization import quantization_available, quantize_int8
from .states import fixed_states, format_timeline, parse_timeline, states_from_activity

__version__ = "0.1.0"

__all__ = [
    "CONFIGS", "AudioError", "AudioFeatures", "CheckpointError", "Compositor", "FrameRenderer", "GenerationOutput", "LLIAConfig", "LLIAError",
    "LLIAModel", "LLIAPipeline", "LLIAError", "MotionControls", "Portrait", "PortraitError", "SamplerConfig", "TimelineError",
    "VideoError", "encode_audio", "fixed_states", "format_timeline", "get_config", "load_audio", "load_model",
    "RenderedVideo", "parse_timeline", "plan_clips", "prepare_portrait", "render_clips", "quantization_available", "quantize_int8", "save_model",
    "states_from_activity",
]
