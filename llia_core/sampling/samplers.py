"""Sampler loops: short functions of one shape, ``sample_x(model_fn, x, scheduler, steps, ...)``.

``model_fn(x, t)`` returns the model prediction for latents ``x`` (B, C, F, h, w) at timestep
``t``; guidance, motion frames and conditioning are closed over by the caller (the pipeline).
``callback(step, num_steps)`` runs after every step: it is where Cancel is checked.
"""

from __future__ import annotations

from typing import Callable

import torch

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class ConsistencyRun:
    """One clip's multistep consistency sampling (Luo et al. 2023, LCM) as resumable state.

    Pipeline stages (threads, devices or ``torch.distributed`` ranks) each run some of the steps
    of a clip: ``advance(model_fn, stop)`` runs steps up to ``stop``. Step ``i`` re-noises with
    its own generator seeded from ``seed`` and ``i``, so the result is the same wherever the
    steps ran. ``denoised`` is the clean estimate after the last step run so far.
    """

    def __init__(self, scheduler, noise: torch.Tensor, steps: int, seed: int, done: int = 0,
                 denoised: torch.Tensor | None = None):
        if not 1 <= steps <= 8:
            raise ValueError("the consistency sampler takes 1 to 8 steps")
        scheduler.set_timesteps(steps, device=noise.device)
        self.scheduler, self.steps, self.seed = scheduler, steps, seed
        self.x, self.done = noise, done
        self.denoised = noise if denoised is None else denoised

    def advance(self, model_fn: ModelFn, stop: int | None = None, callback=None) -> "ConsistencyRun":
        stop = self.steps if stop is None else stop
        for i in range(self.done, stop):
            t = self.scheduler.timesteps[i]
            out = model_fn(self.x, t)
            gen = torch.Generator(device="cpu").manual_seed((self.seed * 31 + i + 1) % (2**63 - 1))
            self.x, self.denoised = self.scheduler.step(out, t, self.x, generator=gen, return_dict=False)
            self.done = i + 1
            if callback is not None:
                callback(self.done, self.steps)
        return self


def sample_consistency(model_fn: ModelFn, x: torch.Tensor, scheduler, steps: int, seed: int = 0,
                       callback=None) -> torch.Tensor:
    """All steps of a :class:`ConsistencyRun` from noise ``x``; returns the clean latents."""
    return ConsistencyRun(scheduler, x, steps, seed).advance(model_fn, callback=callback).denoised


def sample_teacher(model_fn: ModelFn, x: torch.Tensor, scheduler, steps: int,
                   generator: torch.Generator | None = None, callback=None) -> torch.Tensor:
    """Deterministic multi-step sampling (DDIM, Song et al. 2021; or Euler) from pure noise.

    Returns the last step's clean estimate: DDIM's last step lands on training timestep 0, not on the
    clean sample (``set_alpha_to_one=False``), which left sqrt(1 - alphas_cumprod[0]) = 3% of noise in
    the frames (``tests/test_samplers.py``); Euler's last step ends at sigma 0, where the two agree.
    """
    scheduler.set_timesteps(steps, device=x.device)
    x = x * scheduler.init_noise_sigma
    clean = x
    for i, t in enumerate(scheduler.timesteps):
        out = model_fn(scheduler.scale_model_input(x, t), t)
        x, clean = scheduler.step(out, t, x, return_dict=False)[:2]
        if callback is not None:
            callback(i + 1, steps)
    return clean


def guided(model_fn_batched: Callable, guidance_scale: float) -> ModelFn:
    """Classifier-free guidance: ``model_fn_batched(x, t, with_uncond)`` returns (cond, uncond)."""
    if guidance_scale == 1.0:
        return lambda x, t: model_fn_batched(x, t, False)[0]

    def fn(x, t):
        cond, uncond = model_fn_batched(x, t, True)
        return uncond + guidance_scale * (cond - uncond)

    return fn
