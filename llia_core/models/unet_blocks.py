"""Shared UNet layout: our config -> diffusers block names and attention processor maps."""

from __future__ import annotations

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
