"""INT8 for CPU: dynamic quantization of the denoiser's and ReferenceNet's linear layers.

Uses PyTorch's own dynamic quantization (weights int8, activations quantized per call), which
needs no calibration data and keeps convolutions in float. Returns a new model; the input model
is left untouched so a cached fp32 model stays usable.
"""

from __future__ import annotations

import copy
import warnings

import torch


def quantization_available() -> bool:
    try:
        from torch.ao.quantization import quantize_dynamic  # noqa: F401
    except ImportError:
        return False
    return any(e in torch.backends.quantized.supported_engines for e in ("x86", "fbgemm", "qnnpack"))


def quantize_int8(model):
    """A copy of ``model`` with int8 dynamic-quantized nn.Linear layers (CPU only)."""
    from torch.ao.quantization import quantize_dynamic

    if model.device.type != "cpu":
        raise ValueError("int8 dynamic quantization runs on the CPU; use fp16/bf16 on GPUs")
    q = copy.deepcopy(model).float().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q.denoiser = quantize_dynamic(q.denoiser, {torch.nn.Linear}, dtype=torch.qint8)
        q.reference_net = quantize_dynamic(q.reference_net, {torch.nn.Linear}, dtype=torch.qint8)
    return q
