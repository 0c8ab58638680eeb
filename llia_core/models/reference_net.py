"""Appearance ReferenceNet: the portrait's features for the denoiser's self-attention.

Runs once per portrait (at timestep 0, no audio); the result is a ``reference bank`` dict
{layer key: (B, N, C) tokens} that is cached and shared by every frame of every clip.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from diffusers import UNet2DConditionModel

from ..config import LLIAConfig
from .attention import ReferenceCaptureProcessor
from .unet_blocks import processor_map, unet_kwargs


class ReferenceNet(nn.Module):
    """reference latent (B, C, h, w) -> reference bank {key: (B, h_l * w_l, C_l)}."""

    def __init__(self, config: LLIAConfig):
        super().__init__()
        c = config.autoencoder.latent_channels
        self.unet = UNet2DConditionModel(in_channels=c, out_channels=c, **unet_kwargs(config, motion=False))
        self.unet.set_attn_processor(processor_map(self.unet, lambda key, attn: ReferenceCaptureProcessor(key)))
        self.context = nn.Parameter(torch.zeros(1, 1, config.audio.dim))

    def forward(self, reference_latent: torch.Tensor) -> dict[str, torch.Tensor]:
        bank: dict[str, torch.Tensor] = {}
        b = reference_latent.shape[0]
        t = torch.zeros(b, device=reference_latent.device, dtype=torch.long)
        self.unet(reference_latent, t, encoder_hidden_states=self.context.expand(b, -1, -1),
                  cross_attention_kwargs={"reference_bank": bank})
        return bank
