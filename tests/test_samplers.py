"""The sampler loops against solutions known in closed form.

For data that are Gaussian, x0 ~ N(mu, s^2) per element, the best clean-frame estimate from a noisy
x_t = sqrt(a) x0 + sqrt(1 - a) z is known exactly (a = alphas_cumprod[t]):

    E[x0 | x_t] = mu + s^2 sqrt(a) / (a s^2 + 1 - a) * (x_t - sqrt(a) mu),

and the probability-flow ODE that DDIM and Euler integrate carries pure noise z (zero terminal SNR,
a = 0 at t = T) to x0 = mu + s z. With that exact denoiser as the "model", DDIM and Euler must end
near mu + s z, closer with more steps; with data that are one point, DDIM must land on it exactly.
Each DDIM step is also checked against the update written out by hand.
"""

from __future__ import annotations

import pytest
import torch

from llia_core.config import get_config
from llia_core.sampling import samplers
from llia_core.sampling.schedules import consistency_scheduler, teacher_scheduler

MU, S = 0.7, 0.4


def _exact_model(scheduler, mu=MU, s=S):
    """The exact x0-predictor of Gaussian data, as the pipeline's model_fn(x, t) is called."""
    table = scheduler.alphas_cumprod.double()

    def model_fn(x, t):
        a = table[int(round(float(t)))]
        return (mu + s * s * a.sqrt() / (a * s * s + 1 - a) * (x.double() - a.sqrt() * mu)).to(x.dtype)

    return model_fn


def _noise(seed=0):
    return torch.randn((2, 3, 2, 4, 4), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("kind", ["ddim", "euler"])
def test_teacher_samplers_carry_noise_to_the_exact_flow_solution(kind):
    config = get_config("demo")  # x0 ("sample") prediction, zero terminal SNR
    z = _noise()
    exact = MU + S * z
    errors = []
    for steps in (5, 25, 200):
        sched = teacher_scheduler(config, kind)
        out = samplers.sample_teacher(_exact_model(sched), z.clone(), sched, steps)
        errors.append(float((out - exact).abs().max()))
    # first-order convergence to the ODE's solution: 8x the steps, about 1/8 of the error
    assert errors[0] > errors[1] > errors[2] and errors[1] / errors[2] > 4
    assert errors[2] < 0.05


def test_ddim_steps_are_the_textbook_update_and_a_point_distribution_is_hit_exactly():
    config = get_config("demo")
    sched = teacher_scheduler(config, "ddim")
    model = _exact_model(sched)
    z = _noise(1)
    seen = []
    out = samplers.sample_teacher(lambda x, t: (seen.append((x.clone(), int(t))), model(x, t))[1], z.clone(), sched, 6)
    table = sched.alphas_cumprod.double()
    ts = [t for _, t in seen]
    assert ts == sorted(ts, reverse=True) and ts[0] == config.num_train_timesteps - 1  # trailing: from pure noise
    for (x, t), (x_next, _) in zip(seen, seen[1:]):
        a = table[t]
        prev = t - config.num_train_timesteps // 6  # diffusers' DDIM: one stride back (not the next listed step)
        a_prev = table[prev] if prev >= 0 else sched.final_alpha_cumprod.double()
        x0 = model(x, t)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        want = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        assert torch.allclose(x_next, want, atol=1e-6)
    assert torch.allclose(out, model(*seen[-1]), atol=1e-9)  # the result is the last clean estimate
    # one point as the data: every x0 estimate is that point, and so is the sample (no noise left)
    point = samplers.sample_teacher(lambda x, t: torch.full_like(x, -0.3), z.clone(), teacher_scheduler(config), 4)
    assert torch.allclose(point, torch.full_like(point, -0.3), atol=1e-6)


def test_consistency_sampler_returns_the_models_clean_estimate_and_resumes_anywhere():
    config = get_config("demo")
    z = _noise(2)
    one = samplers.sample_consistency(lambda x, t: torch.full_like(x, 0.25), z.clone(), consistency_scheduler(config), 1)
    assert torch.allclose(one, torch.full_like(one, 0.25), atol=1e-6)  # 1 step: exactly the estimate
    sched = consistency_scheduler(config)
    model = _exact_model(sched)
    whole = samplers.sample_consistency(model, z.clone(), consistency_scheduler(config), 4, seed=5)
    run = samplers.ConsistencyRun(consistency_scheduler(config), z.clone(), 4, seed=5).advance(model, stop=2)
    split = samplers.ConsistencyRun(consistency_scheduler(config), run.x, 4, seed=5, done=2,
                                    denoised=run.denoised).advance(model).denoised
    assert torch.equal(whole, split)  # the steps may run in two places
    # the estimate of Gaussian data after re-noising: centred on mu, as wide as the data at most
    assert abs(float(whole.mean()) - MU) < 0.15 and float(whole.std()) <= S * 1.2
    with pytest.raises(ValueError, match="1 to 8 steps"):
        samplers.ConsistencyRun(consistency_scheduler(config), z, 9, 0)


def test_guidance_extrapolates_from_the_unconditioned_prediction():
    fn = samplers.guided(lambda x, t, both: (x + 1, x - 1) if both else (x + 1, None), 2.5)
    x = torch.zeros(3)
    assert torch.allclose(fn(x, 0), torch.full((3,), -1 + 2.5 * 2))
    plain = samplers.guided(lambda x, t, both: (x + 1, None), 1.0)
    assert torch.allclose(plain(x, 0), torch.ones(3))
