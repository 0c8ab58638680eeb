"""Precisions: INT8 convolutions and linear layers for the denoiser and ReferenceNet (CPU), bf16/fp16 copies.

W8A8 dynamic quantization: weights are stored int8 with one scale per output channel, and
activations are quantized on every call from their actual range (no calibration data needed).
Convolutions and linear layers run on oneDNN's int8 kernels (``torch.ops.onednn.qconv2d_pointwise``
and ``qlinear_pointwise``, the ones PyTorch's Inductor uses for x86 INT8; VNNI/AMX) with a float
output, so no error is added by re-quantizing outputs. The modules here (not PyTorch's
``quantize_dynamic`` ones) accept diffusers' keyword calls (``proj_in(input=...)``). Everything else
(norms, attention, activations) stays fp32. The input model is left untouched.
"""

from __future__ import annotations

import copy
import functools
import warnings

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
    """oneDNN int8 kernels with float output (the ones PyTorch's Inductor uses for x86 INT8)."""
    ops = torch.ops.onednn
    return all(hasattr(ops, n) for n in ("qconv2d_pointwise", "qconv_prepack", "qlinear_pointwise", "qlinear_prepack"))


_FUSED_QUANTIZE = hasattr(torch, "quantize_per_tensor")


@functools.lru_cache(maxsize=1)
def cpu_has_vnni() -> bool:
    """True on x86 CPUs with VNNI (AVX512-VNNI, AVX-VNNI or AMX int8): int8 dot products in int32.

    Without it oneDNN multiplies uint8 by int8 with ``vpmaddubsw``, which adds pairs of products in
    int16 and saturates: full-range activations then give wrong sums (a 25% error on an AVX2 AMD EPYC).
    """
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def activation_levels() -> int:
    """Largest uint8 activation code: 255 with VNNI; 127 without (7 bits: a pair of products stays
    under int16's limit, as fbgemm's ``reduce_range`` does)."""
    return 255 if cpu_has_vnni() else 127


def _quantize_activation(x: torch.Tensor) -> tuple[torch.Tensor, float, int]:
    """fp32 tensor -> (uint8 tensor, scale, zero point) over its actual range (0 always representable)."""
    lo, hi = torch.aminmax(x)
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    levels = activation_levels()
    scale = max((hi - lo) / levels, 1e-8)
    zero = int(round(-lo / scale))
    if _FUSED_QUANTIZE:  # one pass instead of five
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.quantize_per_tensor(x, scale, zero, torch.quint8).int_repr(), scale, zero
    return x.div(scale).round_().add_(zero).clamp_(0, levels).to(torch.uint8), scale, zero


class Int8Linear(nn.Module):
    """nn.Linear with int8 weights (per output channel) and per-call uint8 activations, float output."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        scale = w.abs().amax(1).clamp_min(1e-8) / 127
        qweight = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("weight_scale", scale)
        self.register_buffer("weight_zero", torch.zeros(linear.out_features, dtype=torch.long))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())
        self.register_buffer("packed", torch.ops.onednn.qlinear_prepack(qweight, None))
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - diffusers passes input=
        shape, dtype = input.shape, input.dtype
        qx, x_scale, zero = _quantize_activation(input.reshape(-1, shape[-1]).float().contiguous())
        y = torch.ops.onednn.qlinear_pointwise(qx, x_scale, zero, self.packed, self.weight_scale, self.weight_zero,
                                               self.bias, 1.0, 0, torch.float32, "none", [], "")
        return y.reshape(*shape[:-1], self.out_features).to(dtype)


class Int8Conv2d(nn.Module):
    """nn.Conv2d with int8 weights (per output channel) and per-call uint8 activations, float output."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        w = conv.weight.detach().float()
        scale = (w.abs().amax(dim=(1, 2, 3)).clamp_min(1e-8) / 127).double()
        qweight = torch.round(w / scale.float()[:, None, None, None]).clamp(-127, 127).to(torch.int8)
        self.stride, self.padding = list(conv.stride), list(conv.padding)
        self.dilation, self.groups = list(conv.dilation), conv.groups
        self.out_channels = conv.out_channels
        self.register_buffer("weight_scale", scale)
        self.register_buffer("weight_zero", torch.zeros(conv.out_channels, dtype=torch.long))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().float().clone())
        self.register_buffer("packed", torch.ops.onednn.qconv_prepack(qweight, scale, 1.0, 0, self.stride, self.padding,
                                                                      self.dilation, self.groups, None))

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        dtype = input.dtype
        qx, x_scale, zero = _quantize_activation(input.float().contiguous())
        y = torch.ops.onednn.qconv2d_pointwise(qx, x_scale, zero, self.packed, self.weight_scale, self.weight_zero,
                                               self.bias, self.stride, self.padding, self.dilation, self.groups,
                                               1.0, 0, torch.float32, "none", [], "")
        return y.to(dtype)


def is_int8(module: nn.Module) -> bool:
    """Whether ``module`` holds int8 layers. Their activation scales are measured on every call, so a
    trace would freeze the first call's scales as constants: such a model always runs eagerly."""
    return any(isinstance(m, (Int8Linear, Int8Conv2d)) for m in module.modules())


def _convertible_conv(m: nn.Module) -> bool:
    return (type(m) is nn.Conv2d and m.padding_mode == "zeros" and not isinstance(m.padding, str)
            and m.groups == 1 and m.in_channels * m.kernel_size[0] * m.kernel_size[1] >= 64)


def _swap_layers(module: nn.Module) -> int:
    """Replace linear and 2-D convolution layers with their int8 versions in place; returns how many."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.Linear) and child.in_features % 8 == 0 and child.out_features % 8 == 0:
            setattr(module, name, Int8Linear(child))
            count += 1
        elif _convertible_conv(child):
            setattr(module, name, Int8Conv2d(child))
            count += 1
        else:
            count += _swap_layers(child)
    return count


def quantize_int8(model):
    """A copy of ``model`` whose UNet and ReferenceNet linear and conv layers are int8 (CPU only).

    The audio encoder stays float: it is tiny and ``nn.TransformerEncoderLayer`` reads its
    projections' weights directly.
    """
    if model.device.type != "cpu":
        raise ValueError("int8 quantization here runs on the CPU; use fp16/bf16 on GPUs")
    if not quantization_available():
        raise ValueError("this PyTorch has no oneDNN int8 kernels (torch.ops.onednn.qlinear_pointwise); "
                         "update PyTorch or use fp32/bf16")
    q = copy.deepcopy(model).float().eval()
    _swap_layers(q.denoiser.unet)
    _swap_layers(q.reference_net)
    return q
