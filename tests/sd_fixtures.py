"""A tiny Stable-Diffusion-shaped UNet + VAE made by diffusers (random weights), in both forms users keep:
a diffusers folder (``save_pretrained``) and a single file with the original (LDM) key names.

The single file is written from the original format's own naming scheme (``input_blocks.i.j``,
``middle_block``, ``output_blocks``, ``first_stage_model.encoder.down.i.block.j`` ...), stated here
independently of diffusers, so a conversion that reads it through diffusers' converters and gets the
diffusers folder's weights back checks both.
"""

from __future__ import annotations

from pathlib import Path

import torch

UNET = dict(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8)  # SD 1.x: 8 heads
VAE = dict(block_out_channels=(32, 64), layers_per_block=1, latent_channels=4, norm_num_groups=32,
           down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
           "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def tiny_sd(seed: int = 0):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.manual_seed(seed)
    unet, vae = UNet2DConditionModel(**UNET), AutoencoderKL(**VAE)
    with torch.no_grad():  # diffusers zero-inits nothing here, but make sure every tensor carries signal
        for p in list(unet.parameters()) + list(vae.parameters()):
            if not p.any():
                p.normal_(0, 0.02)
    return unet.eval(), vae.eval()


def save_diffusers_folder(unet, vae, path) -> Path:
    path = Path(path)
    unet.save_pretrained(path / "unet")
    vae.save_pretrained(path / "vae")
    return path


def _unet_prefixes(levels: int, lpb: int, attention: list[bool]) -> list[tuple[str, str, dict]]:
    rows = [("time_embedding.linear_1", "time_embed.0", {}), ("time_embedding.linear_2", "time_embed.2", {}),
            ("conv_in", "input_blocks.0.0", {}), ("conv_norm_out", "out.0", {}), ("conv_out", "out.2", {}),
            ("mid_block.resnets.0", "middle_block.0", _RESNET), ("mid_block.attentions.0", "middle_block.1", {}),
            ("mid_block.resnets.1", "middle_block.2", _RESNET)]
    for level in range(levels):
        for j in range(lpb):
            i = 1 + level * (lpb + 1) + j
            rows += [(f"down_blocks.{level}.resnets.{j}", f"input_blocks.{i}.0", _RESNET),
                     (f"down_blocks.{level}.attentions.{j}", f"input_blocks.{i}.1", {})]
        if level < levels - 1:
            rows.append((f"down_blocks.{level}.downsamplers.0.conv", f"input_blocks.{1 + level * (lpb + 1) + lpb}.0.op", {}))
    up_attention = list(reversed(attention))
    for level in range(levels):
        for j in range(lpb + 1):
            o = level * (lpb + 1) + j
            rows += [(f"up_blocks.{level}.resnets.{j}", f"output_blocks.{o}.0", _RESNET),
                     (f"up_blocks.{level}.attentions.{j}", f"output_blocks.{o}.1", {})]
        if level < levels - 1:
            slot = 2 if up_attention[level] else 1
            rows.append((f"up_blocks.{level}.upsamplers.0.conv", f"output_blocks.{level * (lpb + 1) + lpb}.{slot}.conv", {}))
    return rows


def _vae_prefixes(levels: int) -> list[tuple[str, str, dict]]:
    rows = [("encoder.conv_norm_out", "encoder.norm_out", {}), ("decoder.conv_norm_out", "decoder.norm_out", {})]
    for part in ("encoder", "decoder"):
        rows += [(f"{part}.mid_block.resnets.0", f"{part}.mid.block_1", _VAE_RESNET),
                 (f"{part}.mid_block.resnets.1", f"{part}.mid.block_2", _VAE_RESNET),
                 (f"{part}.mid_block.attentions.0", f"{part}.mid.attn_1", _VAE_ATTN)]
    for i in range(levels):
        rows += [(f"encoder.down_blocks.{i}.resnets", f"encoder.down.{i}.block", _VAE_RESNET),
                 (f"encoder.down_blocks.{i}.downsamplers.0.conv", f"encoder.down.{i}.downsample.conv", {}),
                 (f"decoder.up_blocks.{i}.resnets", f"decoder.up.{levels - 1 - i}.block", _VAE_RESNET),
                 (f"decoder.up_blocks.{i}.upsamplers.0.conv", f"decoder.up.{levels - 1 - i}.upsample.conv", {})]
    return rows


def _rename(state: dict, rows, prefix: str, conv_attention: bool = False) -> dict:
    out = {}
    for key, value in state.items():
        for mine, theirs, inner in sorted(rows, key=lambda r: -len(r[0])):
            if key == mine or key.startswith(mine + "."):
                rest = key[len(mine):]
                for a, b in inner.items():
                    rest = rest.replace(f".{a}.", f".{b}.")
                if conv_attention and inner is _VAE_ATTN and value.ndim == 2:
                    value = value[:, :, None, None]  # the original VAE attention uses 1x1 convolutions
                out[prefix + theirs + rest] = value.clone()
                break
        else:
            out[prefix + key] = value.clone()  # same name in both formats (transformer blocks, quant_conv ...)
    return out


def to_original_keys(unet, vae) -> dict:
    """diffusers UNet + VAE -> one state dict in the original Stable Diffusion layout."""
    levels = len(unet.config.block_out_channels)
    attention = ["CrossAttn" in b for b in unet.config.down_block_types]
    state = _rename(unet.state_dict(), _unet_prefixes(levels, unet.config.layers_per_block, attention),
                    "model.diffusion_model.")
    state.update(_rename(vae.state_dict(), _vae_prefixes(len(vae.config.block_out_channels)), "first_stage_model.",
                         conv_attention=True))
    state["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]  # as real files
    return state


def save_single_file(unet, vae, path) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    save_file({k: v.contiguous() for k, v in to_original_keys(unet, vae).items()}, str(path))
    return path
