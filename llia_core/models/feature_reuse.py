"""Deep-feature reuse between consistency steps (DeepCache, Ma et al. 2024, applied to LLIA's 2 steps).

A later consistency step sees the same portrait, audio and motion frames as the first, only less
noise, and what it changes is fine detail: on the bundled model its frames differ from the first
step's by 48 dB PSNR. The UNet's deep levels (everything below the top resolution) carry the
slow-changing content, so later steps take them from the first step and recompute only the top
level (``conv_in``, the first down block, the last up block, ``conv_out``), which sees the new
noisy input. On the bundled model, 2-step clips then differ from fully recomputed ones by about
64 dB PSNR (below 8-bit rounding) and a later step costs about 40% of a full one.

:func:`motion_unet_pass` runs diffusers' ``UNetMotionModel`` the way its ``forward`` does (for LLIA's
inputs: no attention mask, no added embeddings, no ControlNet residuals), plus the two things that
forward cannot do: keep the deep features, and start from kept ones.
"""

from __future__ import annotations

import torch


class DeepFeatures:
    """One clip's deep features: filled by its first step, read by the later ones.

    ``features`` is the input of the UNet's last up block (the output of the one before it,
    upsampled to the top resolution): (B * F, C, h, w). It belongs to one clip (its batch, frames,
    conditioning): a new clip needs a new instance.
    """

    def __init__(self):
        self.features: torch.Tensor | None = None

    def to(self, device) -> "DeepFeatures":
        moved = DeepFeatures()
        moved.features = None if self.features is None else self.features.to(device)
        return moved


def _cross_attention(block) -> bool:
    return bool(getattr(block, "has_cross_attention", False))


def motion_unet_pass(unet, sample: torch.Tensor, timestep: torch.Tensor, tokens: torch.Tensor,
                     cross_attention_kwargs: dict, deep: DeepFeatures | None,
                     stem: torch.Tensor | None = None) -> torch.Tensor:
    """``unet(sample, timestep, encoder_hidden_states=tokens, ...).sample``, keeping or reusing deep features.

    Args:
        unet: a diffusers ``UNetMotionModel`` with at least two resolution levels.
        sample: (B, C_in, F, h, w) UNet input.
        timestep: (B,) timesteps.
        tokens: (B * F, T, D) audio tokens (cross-attention context).
        cross_attention_kwargs: what the attention processors receive (reference bank, frames).
        deep: empty -> a full pass that fills it; filled -> only the top level is recomputed; None -> a
            full pass that keeps nothing.
        stem: (B * F, C, h, w) ``conv_in``'s output when the caller computed it (then only ``sample``'s
            shape is read).
    Returns:
        (B, C_out, F, h, w) the UNet output.
    """
    b, _, f = sample.shape[:3]
    reuse = deep is not None and deep.features is not None
    # the first floating parameter's dtype, as diffusers' ``unet.dtype`` finds it, without that property's
    # walk over every submodule looking for casting hooks (~2 ms a call on CPU; LLIA attaches none)
    dtype = next((p.dtype for p in unet.parameters() if p.is_floating_point()), torch.float32)
    emb = unet.time_embedding(unet.time_proj(timestep.expand(b)).to(dtype=dtype), None)
    emb = emb.repeat_interleave(f, dim=0, output_size=emb.shape[0] * f)
    if stem is None:
        x = unet.conv_in(sample.permute(0, 2, 1, 3, 4).reshape((b * f, -1) + sample.shape[3:]))
    else:
        x = stem
    res = (x,)
    attn = dict(encoder_hidden_states=tokens, num_frames=f, cross_attention_kwargs=cross_attention_kwargs)
    for block in unet.down_blocks:
        if _cross_attention(block):
            x, block_res = block(hidden_states=x, temb=emb, **attn)
        else:
            x, block_res = block(hidden_states=x, temb=emb, num_frames=f)
        if reuse:  # the top level only: its downsampled output feeds levels that are not recomputed
            if block.downsamplers is not None:
                block_res = block_res[:-1]
            res += block_res
            break
        res += block_res
    last = len(unet.up_blocks) - 1
    if reuse:
        x = deep.features
    else:
        x = unet.mid_block(x, emb, **attn)
    for i, block in enumerate(unet.up_blocks):
        if reuse and i < last:
            continue
        n = len(block.resnets)
        block_res, res = res[-n:], res[:-n]
        if i == last and deep is not None and not reuse:
            deep.features = x
        if _cross_attention(block):
            x = block(hidden_states=x, temb=emb, res_hidden_states_tuple=block_res, **attn)
        else:
            x = block(hidden_states=x, temb=emb, res_hidden_states_tuple=block_res, num_frames=f)
    if unet.conv_norm_out is not None:
        x = unet.conv_act(unet.conv_norm_out(x))
    x = unet.conv_out(x)
    return x[None, :].reshape((b, f) + x.shape[1:]).permute(0, 2, 1, 3, 4)
