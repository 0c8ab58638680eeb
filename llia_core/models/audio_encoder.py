"""Audio Layer input: per-frame log-mel windows + state label -> cross-attention tokens."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..config import AudioEncoderConfig


class AudioEncoder(nn.Module):
    """windows (N, T, mel_per_token * n_mels) + states (N,) -> tokens (N, T + 1, dim).

    The last token is the speaking/listening/idle label embedding: a per-frame condition the
    denoiser reads through the same cross-attention as the audio, so a state switch can fall
    anywhere inside a clip. ``audio_keep`` (N,) bool swaps dropped frames' audio tokens for a
    learned null sequence (classifier-free guidance on audio).
    """

    def __init__(self, config: AudioEncoderConfig, num_states: int):
        super().__init__()
        self.config = config
        t, d = config.num_tokens, config.dim
        self.proj_in = nn.Sequential(
            nn.LayerNorm(config.mel_per_token * config.n_mels),
            nn.Linear(config.mel_per_token * config.n_mels, d),
            nn.SiLU(),
            nn.Linear(d, d),
        )
        self.position = nn.Parameter(torch.randn(1, t, d) * 0.02)
        self.null_audio = nn.Parameter(torch.zeros(1, t, d))
        self.state_embedding = nn.Embedding(num_states, d)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d, max(1, d // 64), 2 * d, dropout=0.0, batch_first=True, norm_first=True)
            for _ in range(config.num_layers)
        )
        self.norm_out = nn.LayerNorm(d)
        self.mouth_head = nn.Linear(d, 3) if config.mouth_head else None

    def predict_mouth(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (N, T + 1, dim) -> (N, 3) mouth opening, width, roundness from the frame's own token."""
        if self.mouth_head is None:
            raise ValueError("this model has no mouth head (config.audio.mouth_head is False)")
        return self.mouth_head(tokens[:, self.config.context])

    def forward(self, windows: torch.Tensor, states: torch.Tensor,
                audio_keep: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.proj_in(windows) + self.position
        if audio_keep is not None:
            keep = audio_keep.to(tokens.dtype)[:, None, None]
            tokens = tokens * keep + (self.null_audio + self.position) * (1 - keep)
        tokens = torch.cat([tokens, self.state_embedding(states)[:, None]], dim=1)
        for layer in self.layers:
            tokens = layer(tokens)
        return self.norm_out(tokens)
