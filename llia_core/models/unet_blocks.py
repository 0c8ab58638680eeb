"""Shared UNet layout: our config -> diffusers block names and attention processor maps."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.models.activations import GEGLU
from diffusers.models.upsampling import Upsample2D

from ..config import LLIAConfig
from .attention import TemporalAttnProcessor

_DOWN = {"DownBlock": "DownBlock2D", "CrossAttnDownBlock": "CrossAttnDownBlock2D"}
_UP = {"DownBlock": "UpBlock2D", "CrossAttnDownBlock": "CrossAttnUpBlock2D"}


def unet_kwargs(config: LLIAConfig, motion: bool) -> dict:
    """Keyword arguments shared by the ReferenceNet (2D) and the denoiser (motion) UNets."""
    u = config.unet
    down = tuple(_DOWN[b] for b in u.down_block_types)
    up = tuple(_UP[b] for b in reversed(u.down_block_types))
    if motion:
        down = tuple(b.replace("2D", "Motion") for b in down)
        up = tuple(b.replace("2D", "Motion") for b in up)
    heads = u.heads()
    kwargs = dict(
        sample_size=config.latent_size,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=u.block_out_channels,
        layers_per_block=u.layers_per_block,
        norm_num_groups=u.norm_num_groups,
        cross_attention_dim=config.audio.dim,
        use_linear_projection=u.use_linear_projection,
    )
    if motion:
        kwargs.update(num_attention_heads=heads, motion_max_seq_length=u.motion_max_seq_length,
                      motion_num_attention_heads=u.motion_num_attention_heads, use_motion_mid_block=True)
    else:
        kwargs.update(attention_head_dim=heads)  # diffusers' legacy name for the head count
    return kwargs


def reference_key(processor_name: str) -> str | None:
    """'down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor' -> bank key, else None.

    Only spatial transformer blocks (``.attentions.``) take part; temporal ``motion_modules``
    attend across frames and never see the reference.
    """
    if ".attentions." not in processor_name:
        return None
    return processor_name.rsplit(".attn", 1)[0]


def processor_map(unet, make) -> dict:
    """All processors of ``unet``: ``make(key, attention module)`` for spatial attention, temporal
    attention for the rest."""
    procs = {}
    for name in unet.attn_processors:
        key = reference_key(name)
        attn = unet.get_submodule(name.rsplit(".processor", 1)[0])
        procs[name] = make(key, attn) if key is not None else TemporalAttnProcessor()
    return procs


def _contiguous_input(module, args, kwargs):
    if "input" in kwargs:
        kwargs["input"] = kwargs["input"].contiguous()
    else:
        args = (args[0].contiguous(),) + tuple(args[1:])
    return args, kwargs


def contiguous_motion_inputs(unet) -> None:
    """Hand every motion module's ``proj_in`` a contiguous (H * W, frames, C) input.

    For one clip (batch 1) diffusers' ``AnimateDiffTransformer3D`` reshapes its permuted input to a
    strided *view*; ``nn.Linear`` on a non-contiguous 3-D tensor then runs as a batched matmul of one
    tiny (frames x C) problem per latent pixel (thousands of them, with a copy each), which took a
    third of a live clip's denoising on CPU (measured on the bundled model, 1 step, 2-frame clip: 193 ->
    142 ms). A copy first makes it one matrix product; the values are the same up to float rounding.
    """
    from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

    for module in unet.modules():
        if isinstance(module, AnimateDiffTransformer3D):
            module.proj_in.register_forward_pre_hook(_contiguous_input, with_kwargs=True)


class _SplitGEGLU(GEGLU):
    """diffusers' GEGLU, its two halves computed as two matrix products.

    The stock layer projects to 2n channels and splits the result: both halves are strided views,
    and PyTorch's CPU GELU and multiply are slower on strided tensors. Two products over the
    weight's halves (contiguous row blocks) are the same dot products, equal up to float rounding;
    a full 18-frame call of the bundled denoiser on one thread in a worker thread (the pipelined
    main job's first stage) took 675 instead of 746 ms (medians of 5 alternating pairs). Layers
    that are not plain ``nn.Linear`` (INT8) take the stock path.
    """

    def forward(self, hidden_states, *args, **kwargs):
        proj = self.proj
        if type(proj) is not nn.Linear:
            return super().forward(hidden_states, *args, **kwargs)
        n, bias = proj.out_features // 2, proj.bias
        value = F.linear(hidden_states, proj.weight[:n], None if bias is None else bias[:n])
        gate = F.linear(hidden_states, proj.weight[n:], None if bias is None else bias[n:])
        return value * self.gelu(gate)


def split_geglu(module: nn.Module) -> None:
    """Turn every GEGLU feed-forward input layer under ``module`` into :class:`_SplitGEGLU` (same weights)."""
    for m in module.modules():
        if type(m) is GEGLU:
            m.__class__ = _SplitGEGLU


# For each output phase (row or column parity) of "nearest 2x, then 3x3": which of the 3 taps land on
# the low-resolution row/column before (first) and at/after (second) the output's own.
_PHASE_TAPS = ((slice(0, 1), slice(1, 3)), (slice(0, 2), slice(2, 3)))


def _phase_map() -> torch.Tensor:
    """(9, 16) 0/1 matrix: 3x3 tap (row-major) -> (row phase, column phase, row, column) of the 2x2 kernels."""
    m = torch.zeros(3, 3, 2, 2, 2, 2)
    for a, rows in enumerate(_PHASE_TAPS):
        for b, cols in enumerate(_PHASE_TAPS):
            for r, taps_r in enumerate(rows):
                for c, taps_c in enumerate(cols):
                    m[taps_r, taps_c, a, b, r, c] = 1
    return m.reshape(9, 16)


_PHASE_MAP = _phase_map()


def phase_kernels(weight: torch.Tensor) -> torch.Tensor:
    """(O, I, 3, 3) kernel of "nearest 2x upsampling, then a padded 3x3 convolution" -> (4 * O, I, 2, 2):
    one 2x2 kernel per output phase (row parity, column parity), each 3x3 tap summed into the low-resolution
    pixel it reads (one product with a fixed 0/1 matrix)."""
    o, i = weight.shape[:2]
    kernels = weight.reshape(o * i, 9) @ _PHASE_MAP.to(weight.device, weight.dtype)
    return kernels.view(o, i, 2, 2, 2, 2).permute(2, 3, 0, 1, 4, 5).reshape(4 * o, i, 2, 2)


class _PhaseUpsample2D(Upsample2D):
    """diffusers' Upsample2D (nearest 2x, then a 3x3 convolution) computed on the low-resolution input.

    Upsampling by repetition and then convolving reads each low-resolution pixel several times: per
    output phase the 3x3 kernel collapses to 2x2, so one 2x2 convolution with four times the outputs
    over the padded input gives every phase (4/9 of the multiply-adds, no 4x-sized intermediate),
    interleaved into the output. Equal up to float rounding (the collapsed taps are summed first).
    On the bundled denoiser's two upsamplers (17 frames, one thread): 32 -> 19 ms and 15 -> 10 ms.
    Used for inference only (training keeps the stock path) and only for the plain configuration;
    anything else (a norm, a transposed convolution, an odd output size, an INT8 layer) takes the
    stock path.
    """

    def _plain(self, hidden_states, output_size) -> bool:
        conv = getattr(self, "conv", None)
        h, w = hidden_states.shape[-2:]
        return (not torch.is_grad_enabled() and self.use_conv and not self.use_conv_transpose and self.interpolate
                and self.norm is None and self.name == "conv" and type(conv) is nn.Conv2d
                and conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
                and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
                and (output_size is None or tuple(output_size) == (2 * h, 2 * w)))

    def _kernels(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The phase kernels (and bias), recomputed only when the convolution's weights change.

        Inference tensors (weights loaded under ``torch.inference_mode``, as ComfyUI loads them) keep no
        version counter to tell a change by: for them the kernels are recomputed each call (one small product)."""
        weight, bias = self.conv.weight, self.conv.bias
        tensors = (weight,) if bias is None else (weight, bias)
        if torch.jit.is_tracing() or any(t.is_inference() for t in tensors):
            return phase_kernels(weight), None if bias is None else bias.repeat(4)
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
        cached = getattr(self, "_phase_cache", None)
        if cached is None or cached[0] != key:
            cached = self._phase_cache = (key, phase_kernels(weight), None if bias is None else bias.repeat(4))
        return cached[1], cached[2]

    def forward(self, hidden_states, output_size=None, *args, **kwargs):
        if not self._plain(hidden_states, output_size):
            return super().forward(hidden_states, output_size, *args, **kwargs)
        kernels, bias = self._kernels()
        n, _, h, w = hidden_states.shape
        o = kernels.shape[0] // 4
        phases = F.conv2d(F.pad(hidden_states, (1, 1, 1, 1)), kernels, bias).view(n, 2, 2, o, h + 1, w + 1)
        out = hidden_states.new_empty(n, o, h, 2, w, 2)
        for a in range(2):
            for b in range(2):
                # phase (a, b) at low-resolution (i, j) is output pixel (2i + a, 2j + b)
                out[:, :, :, a, :, b] = phases[:, a, b, :, a:a + h, b:b + w]
        return out.view(n, o, 2 * h, 2 * w)


def phase_upsamplers(module: nn.Module) -> None:
    """Turn every stock Upsample2D under ``module`` into :class:`_PhaseUpsample2D` (same weights)."""
    for m in module.modules():
        if type(m) is Upsample2D:
            m.__class__ = _PhaseUpsample2D
