"""Shared UNet layout: our config -> diffusers block names and attention processor maps."""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F
from diffusers.models.activations import GEGLU

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
