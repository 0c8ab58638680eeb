"""LLIAModel: the autoencoder, ReferenceNet and denoiser of one config, as one object."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..config import LLIAConfig
from .autoencoder import build_autoencoder
from .denoiser import LLIADenoiser
from .head_model import HeadMotionModel
from .mouth_model import AudioToMouth
from .mouth_painter import MouthPainter
from .reference_net import ReferenceNet


@dataclass
class ReferenceState:
    """Everything the denoiser needs about one portrait; computed once and cached.

    latent: (1, C, h, w) encoded portrait. bank: ReferenceNet features. face_mask: (1, 1, H, W).
    mouth_anchor: (1, 3) where the portrait's mouth is in its crop (``framing.py``); None = the
    framing contract's mouth.
    """

    latent: torch.Tensor
    bank: dict[str, torch.Tensor]
    face_mask: torch.Tensor
    mouth_anchor: torch.Tensor | None = None

    def to(self, device=None, dtype=None) -> "ReferenceState":
        return ReferenceState(
            self.latent.to(device=device, dtype=dtype),
            {k: v.to(device=device, dtype=dtype) for k, v in self.bank.items()},
            self.face_mask.to(device=device, dtype=dtype),
            None if self.mouth_anchor is None else self.mouth_anchor.to(device=device),
        )


class LLIAModel(nn.Module):
    """One LLIA model. Build with ``LLIAModel(config)`` or ``LLIAModel.from_pretrained(name)``."""

    def __init__(self, config: LLIAConfig):
        super().__init__()
        self.config = config
        self.autoencoder = build_autoencoder(config.autoencoder)
        self.reference_net = ReferenceNet(config)
        self.denoiser = LLIADenoiser(config)
        self.mouth_model = AudioToMouth(config.mouth_model) if config.mouth_model is not None else None
        self.head_model = HeadMotionModel(config.head_model) if config.head_model is not None else None
        self.mouth_painter = MouthPainter(tuple(config.mouth_painter.channels)) \
            if config.mouth_painter is not None else None

    def _apply(self, fn, recurse=True):
        """Moved and cast like any module, but the mouth, head-motion and painter models only move:
        they stay float32 whatever precision is asked for (bf16 with ``--dtype auto`` on CPUs with
        native bf16). They are tiny, they hear float features (the painter float pixels), and the
        head's oscillator integrates its state frame after frame; cast and cast back, their weights
        would have lost the bits."""
        names = list(self._modules)
        small = {k: self._modules.pop(k) for k in ("mouth_model", "head_model", "mouth_painter")
                 if self._modules.get(k) is not None}
        try:
            super()._apply(fn, recurse)
        finally:
            rest = dict(self._modules)
            self._modules.clear()
            self._modules.update({k: small[k] if k in small else rest[k] for k in names})  # the order registered
        device = fn(torch.zeros(())).device
        for module in small.values():
            module._apply(lambda t: t.to(device))
        return self

    def mouth_shapes(self, audio, frames: torch.Tensor, states: torch.Tensor,
                     windows: torch.Tensor | None = None) -> torch.Tensor:
        """(L, 3) the mouth shapes (opening, width, roundness) the denoiser, the warp and the renderer use
        for frames ``frames`` of ``audio`` (``AudioFeatures``) in ``states`` (L,): the mouth model's, or,
        without one, the audio encoder's head on the clip's ``windows`` (L, T, D); shut outside speech
        for warp models."""
        if self.mouth_model is None:
            return self.denoiser.mouth_shape(windows, states)
        w = audio.mouth_windows_for(self.mouth_model.config)[frames.cpu()].to(self.device)
        return self.denoiser.gate_mouth(self.mouth_model.warp_shapes(w), states)

    def prefetch_audio(self, audio) -> None:
        """Start decoding what the mouth model hears of ``audio`` (``AudioFeatures``: its phones) in the
        background now, while the portrait is prepared, so the first clip does not wait for it."""
        if self.mouth_model is not None:
            windows = audio.mouth_windows_for(self.mouth_model.config)
            if hasattr(windows, "prefetch"):
                windows.prefetch()

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs) -> "LLIAModel":
        """Load a checkpoint by path, ComfyUI model name, 'bundled', or Hugging Face repo id."""
        from ..checkpoints import load_model

        return load_model(name_or_path, **kwargs)

    def save_pretrained(self, path, **metadata) -> None:
        from ..checkpoints import save_model

        save_model(self, path, **metadata)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode_pixels(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in 0..1 -> latents (B, C, h, w)."""
        return self.autoencoder.encode(images * 2 - 1)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (B, C, h, w) -> frames (B, H, W, 3) float in 0..1."""
        pixels = self.autoencoder.decode(latents)
        return ((pixels + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)

    def encode_reference(self, image: torch.Tensor, face_mask: torch.Tensor,
                         mouth_anchor: torch.Tensor | None = None) -> ReferenceState:
        """image (B, 3, R, R) 0..1, face_mask (B, 1, R, R), mouth_anchor (B, 3) -> ReferenceState."""
        latent = self.encode_pixels(image)
        return ReferenceState(latent, self.reference_net(latent), face_mask, mouth_anchor)
