"""Shared fixtures: tiny seeded models (diffusers-style dummy components) and test media."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from llia_core.config import AudioEncoderConfig, AutoencoderConfig, LLIAConfig, UNetConfig  # noqa: E402


def tiny_config(**overrides) -> LLIAConfig:
    """A 32 px model with the demo architecture, small enough for fast tests."""
    base = LLIAConfig(
        name="tiny",
        resolution=32,
        max_clip_frames=6,
        motion_frames=2,
        autoencoder=AutoencoderConfig(kind="patch", downscale=4, latent_channels=48, block_out_channels=(8,)),
        audio=AudioEncoderConfig(n_mels=80, context=1, mel_per_token=2, num_layers=1, dim=32),
        unet=UNetConfig(block_out_channels=(16, 32), down_block_types=("DownBlock", "CrossAttnDownBlock"),
                        layers_per_block=1, attention_head_dim=16, norm_num_groups=8,
                        motion_max_seq_length=16, motion_num_attention_heads=2),
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture(scope="session")
def tiny_model():
    from llia_core.models import LLIAModel

    torch.manual_seed(0)
    model = LLIAModel(tiny_config()).eval().requires_grad_(False)
    # a trained model's output layer is not zero (the reference skip starts it at zero)
    torch.nn.init.normal_(model.denoiser.unet.conv_out.weight, std=0.05)
    return model
