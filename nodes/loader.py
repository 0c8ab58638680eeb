"""Load LLIA Model: a checkpoint + device + precision -> LLIA_MODEL (model and its pipeline)."""

from __future__ import annotations

from dataclasses import dataclass

import llia_core
from llia_core.checkpoints import load_model, resolve_model_path
from llia_core.pipeline import LLIAPipeline

from . import comfy_bridge

PRECISIONS = ["fp32", "bf16", "fp16"] + (["int8"] if llia_core.quantization_available() else [])


@dataclass
class LLIAModelHandle:
    """What flows through an LLIA_MODEL link."""

    pipeline: LLIAPipeline
    name: str
    precision: str
    path: str = ""  # the checkpoint file (the live view's own process loads it again)

    @property
    def model(self):
        return self.pipeline.model

    @property
    def config(self):
        return self.pipeline.model.config


_CACHE: dict[tuple, LLIAModelHandle] = {}


class LLIALoadModel:
    DESCRIPTION = "Loads an LLIA talking-avatar model (bundled demo model, ComfyUI/models/llia, or Hugging Face)."
    CATEGORY = "LLIA"
    FUNCTION = "load"
    RETURN_TYPES = ("LLIA_MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The loaded model with its sampling pipeline.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (comfy_bridge.model_names(), {"default": "bundled",
                          "tooltip": "'bundled' is the 128 px demo model shipped with the pack; other entries are "
                                     ".safetensors files in ComfyUI/models/llia."}),
                "device": (["auto", "cpu", "cuda", "mps"], {"default": "auto",
                           "tooltip": "Where to run. 'auto' uses ComfyUI's device (GPU if available)."}),
                "precision": (PRECISIONS, {"default": "fp32",
                              "tooltip": "Weights/activations precision. bf16/fp16 are faster on GPUs (bf16 also on recent x86 CPUs); int8 "
                                         "(CPU) runs convolutions and linear layers on int8 kernels: 2.2x fp32 for SD1.5-sized "
                                         "models, little gain for the small bundled one."}),
            },
            "optional": {
                "hf_repo_id": ("STRING", {"default": "", "tooltip": "Optional Hugging Face repo id "
                               "(owner/name[/file.safetensors]); used instead of 'model' when set. Read from the "
                               "local cache unless downloads are allowed."}),
                "allow_download": ("BOOLEAN", {"default": False, "tooltip": "Allow downloading hf_repo_id from "
                                   "Hugging Face (off: local files only)."}),
            },
        }

    def load(self, model, device, precision, hf_repo_id="", allow_download=False):
        name = hf_repo_id.strip() or model
        path = resolve_model_path(name, allow_download=allow_download)
        dev = str(comfy_bridge.torch_device()) if device == "auto" else device
        key = (str(path), dev, precision)
        if key not in _CACHE:
            _CACHE.clear()  # one model at a time keeps memory predictable
            dtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "int8": "float32"}[precision]
            import torch

            if torch.device(dev).type == "cpu":  # CPU tensors stop page-faulting back in (llia_core/allocator.py)
                from llia_core.allocator import keep_freed_memory

                keep_freed_memory()
            m = load_model(path, device=dev, dtype=getattr(torch, dtype))
            if precision == "int8":
                m = llia_core.quantize_int8(m)
            _CACHE[key] = LLIAModelHandle(LLIAPipeline(m, device=dev), name, precision, str(path))
        return (_CACHE[key],)
