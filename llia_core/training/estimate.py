"""What one training step of a config costs on a GPU, from counted FLOPs and tensor sizes.

``python -m llia_core.training.estimate --config sd15-384 --clips 1 --frames 16``

Counted, not guessed: the model is built on PyTorch's meta device (no memory, no weights), one
base-stage step's forward runs under ``FlopCounterMode``, and a saved-tensor hook adds up the bytes
autograd keeps for the backward pass (with and without gradient checkpointing). Derived from those:
backward = 2 x forward FLOPs (the usual rule for dense layers); memory = fp32 weights, gradients,
AdamW moments and an EMA copy of what trains, the frozen VAE, plus the saved activations at bf16
(half their fp32 bytes). Time per step = FLOPs / (peak x utilisation); the utilisation is an
assumption, stated with the number.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

import torch

from ..config import get_config
from ..models import LLIAModel

GPU_PEAK_BF16 = {"H100/H200 SXM": 989e12, "A100": 312e12, "L40S": 362e12, "RTX 4090": 165e12}
UTILISATION = 0.35  # share of the peak a UNet training step typically reaches (assumed)


@dataclass
class StepEstimate:
    config: str
    clips: int
    frames: int  # new frames per clip (+ motion frames)
    trained_parameters: int
    frozen_parameters: int
    forward_tflop: float
    step_tflop: float
    step_checkpointed_tflop: float  # the forward runs twice (recomputed in the backward)
    state_gib: float  # weights + grads + AdamW + EMA (fp32) + frozen VAE
    activations_gib: float  # saved for backward, bf16
    activations_checkpointed_gib: float
    seconds: dict  # per GPU kind at UTILISATION, without checkpointing
    seconds_checkpointed: dict

    @property
    def peak_gib(self) -> float:
        return self.state_gib + self.activations_gib

    @property
    def peak_checkpointed_gib(self) -> float:
        return self.state_gib + self.activations_checkpointed_gib


def _forward(model: LLIAModel, clips: int, frames: int, checkpointing: bool) -> tuple[float, float, int]:
    """(FLOPs of the frozen VAE, FLOPs in all, bytes saved for backward) of one base-stage forward on
    the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = model.config
    c, h, r = cfg.autoencoder.latent_channels, cfg.latent_size, cfg.resolution
    f = frames + cfg.motion_frames
    for unet in (model.denoiser.unet, model.reference_net.unet):
        if checkpointing:
            unet.enable_gradient_checkpointing()
        else:
            unet.disable_gradient_checkpointing()
    saved = [0]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t

    meta = dict(device="meta")
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():  # the frozen VAE encodes the frames and the portrait
            x0 = model.encode_pixels(torch.zeros(clips * f, 3, r, r, **meta))
            ref = model.encode_pixels(torch.zeros(clips, 3, r, r, **meta))
        vae = counter.get_total_flops()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            bank = model.reference_net(ref)
            model.denoiser(x0.reshape(clips, f, c, h, h).transpose(1, 2), torch.zeros(clips, **meta),
                           torch.zeros(clips, f, cfg.audio.num_tokens, cfg.audio.mel_per_token * cfg.audio.n_mels, **meta),
                           torch.zeros(clips, f, dtype=torch.long, **meta), ref, bank,
                           torch.zeros(clips, 1, r, r, **meta), torch.zeros(clips, f, **meta),
                           mouth=torch.zeros(clips, f, 3, **meta))
    return float(vae), float(counter.get_total_flops()), saved[0]


def estimate_step(config_name: str = "sd15-384", clips: int = 1, frames: int = 16) -> StepEstimate:
    cfg = get_config(config_name)
    with torch.device("meta"):
        model = LLIAModel(cfg).train()
    model.autoencoder.requires_grad_(False)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.autoencoder.parameters())
    vae, flops, saved = _forward(model, clips, frames, checkpointing=False)
    saved_ckpt = _forward(model, clips, frames, checkpointing=True)[2]
    trained_forward = flops - vae  # the VAE runs forward only
    step = vae + 3 * trained_forward  # forward + backward (2x)
    gib = 2 ** 30
    return StepEstimate(
        config=config_name, clips=clips, frames=frames, trained_parameters=trained, frozen_parameters=frozen,
        forward_tflop=flops / 1e12, step_tflop=step / 1e12, step_checkpointed_tflop=(step + trained_forward) / 1e12,
        state_gib=(trained * 4 * 5 + frozen * 2) / gib,  # weights, grads, 2 AdamW moments, EMA (fp32); VAE bf16
        activations_gib=saved / 2 / gib, activations_checkpointed_gib=saved_ckpt / 2 / gib,
        seconds={gpu: step / (peak * UTILISATION) for gpu, peak in GPU_PEAK_BF16.items()},
        seconds_checkpointed={gpu: (step + trained_forward) / (peak * UTILISATION) for gpu, peak in GPU_PEAK_BF16.items()},
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m llia_core.training.estimate", description=__doc__.split("\n")[0])
    p.add_argument("--config", default="sd15-384")
    p.add_argument("--clips", type=int, default=1, help="clips per GPU per step")
    p.add_argument("--frames", type=int, default=16, help="new frames per clip (the motion frames come on top)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    e = estimate_step(a.config, a.clips, a.frames)
    if a.json:
        print(json.dumps({**asdict(e), "peak_gib": e.peak_gib, "peak_checkpointed_gib": e.peak_checkpointed_gib}))
        return 0
    print(f"{e.config}, {e.clips} clip(s) x ({e.frames} + motion) frames per GPU:")
    print(f"  parameters: {e.trained_parameters / 1e9:.2f} B trained, {e.frozen_parameters / 1e6:.0f} M frozen (VAE)")
    print(f"  FLOPs: forward {e.forward_tflop:.1f} TFLOP, step {e.step_tflop:.1f} TFLOP (backward = 2 x forward), "
          f"{e.step_checkpointed_tflop:.1f} TFLOP with gradient checkpointing")
    print(f"  memory: {e.state_gib:.1f} GiB weights + grads + AdamW + EMA, activations {e.activations_gib:.1f} GiB "
          f"(bf16) or {e.activations_checkpointed_gib:.1f} GiB with gradient checkpointing -> peak about "
          f"{e.peak_gib:.0f} / {e.peak_checkpointed_gib:.0f} GiB")
    for gpu, s in e.seconds.items():
        print(f"  {gpu}: about {s:.2f} s per step ({e.seconds_checkpointed[gpu]:.2f} s checkpointed) at "
              f"{UTILISATION:.0%} of the bf16 peak")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
