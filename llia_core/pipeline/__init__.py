"""Generation: the offline and streaming paths share one clip loop (``LLIAPipeline.stream``)."""

from .pipeline import SAMPLERS, ClipOutput, GenerationOutput, LLIAPipeline, SamplerConfig

__all__ = ["SAMPLERS", "ClipOutput", "GenerationOutput", "LLIAPipeline", "SamplerConfig"]
