"""Precisions: INT8 weights for the denoiser and ReferenceNet linear layers (CPU), bf16/fp16 copies.

Weights are stored int8 with one scale per output channel; activations are quantized per row on
every call and multiplied with ``torch._int_mm`` (int8 x int8 -> int32, VNNI/AMX on x86). This
is W8A8 dynamic quantization written against plain tensor ops, because PyTorch's own
``quantize_dynamic`` modules cannot be called with keyword arguments the way diffusers calls
its projections (``proj_in(input=...)``). Measured on the 2-core benchmark machine it saves
memory but is not faster than fp32 for the small demo model (see README, Performance); bf16
autocast is the faster CPU option there. The input model is left untouched.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


def cpu_has_bf16() -> bool:
    """True on x86 CPUs with native bf16 (AVX512-BF16 or AMX), where bf16 is faster than fp32."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def model_at_precision(model, precision: str):
    """(model, dtype) for ``precision`` in fp32 / bf16 / fp16 / int8 / auto (bf16 where the CPU has it)."""
    if precision == "auto":
        precision = "bf16" if model.device.type == "cpu" and cpu_has_bf16() else "fp32"
    if precision == "int8":
        return quantize_int8(model), torch.float32
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return (model if dtype == next(model.parameters()).dtype else copy.deepcopy(model).to(dtype)), dtype


def quantization_available() -> bool:
    return hasattr(torch, "_int_mm")


class Int8Linear(nn.Module):
    """nn.Linear with int8 weights (per output channel) and per-row int8 activations."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        scale = w.abs().amax(1, keepdim=True).clamp_min(1e-8) / 127
        self.register_buffer("qweight", torch.round(w / scale).to(torch.int8).t().contiguous())
        self.register_buffer("weight_scale", scale.reshape(1, -1))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - diffusers passes input=
        shape, dtype = input.shape, input.dtype
        x = input.reshape(-1, shape[-1]).float()
        if x.shape[0] <= 16:  # _int_mm needs more than 16 rows; tiny calls dequantize instead
            y = x @ (self.qweight.float() * self.weight_scale)
        else:
            x_scale = x.abs().amax(1, keepdim=True).clamp_min(1e-8) / 127
            y = torch._int_mm(torch.round(x / x_scale).to(torch.int8), self.qweight).float() * x_scale * self.weight_scale
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(dtype)


def _swap_linears(module: nn.Module) -> int:
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.Linear) and child.in_features % 8 == 0 and child.out_features % 8 == 0:
            setattr(module, name, Int8Linear(child))
            count += 1
        else:
            count += _swap_linears(child)
    return count


def quantize_int8(model):
    """A copy of ``model`` whose UNet and ReferenceNet linear layers are :class:`Int8Linear` (CPU only).

    The audio encoder stays float: it is tiny and ``nn.TransformerEncoderLayer`` reads its
    projections' weights directly.
    """
    if model.device.type != "cpu":
        raise ValueError("int8 quantization here runs on the CPU; use fp16/bf16 on GPUs")
    if not quantization_available():
        raise ValueError("this PyTorch has no int8 matmul (torch._int_mm); update PyTorch or use fp32/bf16")
    q = copy.deepcopy(model).float().eval()
    _swap_linears(q.denoiser.unet)
    _swap_linears(q.reference_net)
    return q
