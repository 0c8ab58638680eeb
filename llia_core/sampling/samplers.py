"""Sampler loops: short functions of one shape, ``sample_x(model_fn, x, scheduler, steps, ...)``.

``model_fn(x, t)`` returns the model prediction for latents ``x`` (B, C, F, h, w) at timestep
``t``; guidance, motion frames and conditioning are closed over by the caller (the pipeline).
``callback(step, num_steps)`` runs after every step: it is where Cancel is checked.
"""

from __future__ import annotations

from typing import Callable

import torch

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sample_consistency(model_fn: ModelFn, x: torch.Tensor, scheduler, steps: int,
                       generator: torch.Generator | None = None, callback=None) -> torch.Tensor:
    """Multistep consistency sampling (Luo et al. 2023, LCM): denoise, re-noise, repeat."""
    if not 1 <= steps <= 8:
        raise ValueError("the consistency sampler takes 1 to 8 steps")
    scheduler.set_timesteps(steps, device=x.device)
    denoised = x
    for i, t in enumerate(scheduler.timesteps):
        out = model_fn(x, t)
        x, denoised = scheduler.step(out, t, x, generator=generator, return_dict=False)
        if callback is not None:
            callback(i + 1, steps)
    return denoised


def sample_teacher(model_fn: ModelFn, x: torch.Tensor, scheduler, steps: int,
                   generator: torch.Generator | None = None, callback=None) -> torch.Tensor:
    """Deterministic multi-step sampling (DDIM, Song et al. 2021; or Euler) from pure noise."""
    scheduler.set_timesteps(steps, device=x.device)
    x = x * scheduler.init_noise_sigma
    for i, t in enumerate(scheduler.timesteps):
        out = model_fn(scheduler.scale_model_input(x, t), t)
        x = scheduler.step(out, t, x, return_dict=False)[0]
        if callback is not None:
            callback(i + 1, steps)
    return x


def guided(model_fn_batched: Callable, guidance_scale: float) -> ModelFn:
    """Classifier-free guidance: ``model_fn_batched(x, t, with_uncond)`` returns (cond, uncond)."""
    if guidance_scale == 1.0:
        return lambda x, t: model_fn_batched(x, t, False)[0]

    def fn(x, t):
        cond, uncond = model_fn_batched(x, t, True)
        return uncond + guidance_scale * (cond - uncond)

    return fn
