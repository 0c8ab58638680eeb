"""Noise schedules, built on diffusers' schedulers and shared by training and sampling.

All three share one beta schedule: SD's scaled-linear betas rescaled to zero terminal SNR, so
sampling can start from pure noise (t = T) and the 1-step consistency sampler is well posed.
"""

from __future__ import annotations

from diffusers import DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler, LCMScheduler

from ..config import LLIAConfig


def _common(config: LLIAConfig) -> dict:
    return dict(
        num_train_timesteps=config.num_train_timesteps,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type=config.prediction_type,
        rescale_betas_zero_snr=True,
        clip_sample=False,
    )


def training_scheduler(config: LLIAConfig) -> DDPMScheduler:
    """Forward process for training (``add_noise``, ``get_velocity``)."""
    return DDPMScheduler(**_common(config))


def teacher_scheduler(config: LLIAConfig, kind: str = "ddim"):
    """Multi-step teacher sampler: DDIM (default) or Euler, trailing timesteps."""
    if kind == "euler":
        c = _common(config)
        c.pop("clip_sample")
        return EulerDiscreteScheduler(**c, timestep_spacing="trailing")
    return DDIMScheduler(**_common(config), timestep_spacing="trailing", set_alpha_to_one=False)


def consistency_scheduler(config: LLIAConfig) -> LCMScheduler:
    """Few-step (1-8) consistency sampler (LCM boundary conditions)."""
    return LCMScheduler(**_common(config), timestep_spacing="trailing", original_inference_steps=50)
