"""Generation: the offline and streaming paths share one clip loop (``LLIAPipeline.stream``);
``PipelinedLLIA`` overlaps its stages on threads or devices, ``distributed`` runs them as ranks."""

from .pipeline import SAMPLERS, ClipJob, ClipOutput, GenerationOutput, LLIAPipeline, SamplerConfig
from .pipelined import PipelinedLLIA, clip_stream, pipelined_sampler, stage_bounds

__all__ = ["SAMPLERS", "ClipJob", "ClipOutput", "GenerationOutput", "LLIAPipeline", "PipelinedLLIA", "clip_stream",
           "SamplerConfig", "pipelined_sampler", "stage_bounds"]
