"""The Karras (Heun) sampler over Point-E's Gaussian diffusions, with classifier-free guidance, and
the two-stage (base, then upsampler) point-cloud sampler.

Sampling runs in float32 (the model may run in float16: ``model_fn`` casts). All noise comes from
one CPU ``torch.Generator`` and is drawn up front in the official order (x_T, then one draw per
step, also when s_churn is 0), so a seed gives the same cloud on any device. The diffusion
timesteps of every model call are computed on the CPU before sampling: no device sync per step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from methods.point_e.diffusion import GaussianDiffusion

ModelFn = Callable[..., torch.Tensor]  # model_fn(x, t, **kwargs) -> [N, 2C, P] float32


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """The Karras et al. (2022) noise levels, float32 on the CPU, with a trailing 0: ``[steps + 1]``."""
    ramp = torch.linspace(0, 1, steps)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def sigma_to_t(diffusion: GaussianDiffusion, sigma: float) -> float:
    """The fractional diffusion timestep whose alpha_cumprod equals 1 / (sigma^2 + 1).

    ``sigma`` is treated as float32 and the ratio computed in float32 (numpy >= 2 semantics, as
    in the reference runs); the interpolation is float64. The model receives ``int(trunc(t))``.
    """
    alpha_cumprod = np.float32(1.0) / (np.float32(sigma) ** 2 + np.float32(1.0))
    table = diffusion.alphas_cumprod
    if alpha_cumprod > table[0]:
        return 0.0
    if alpha_cumprod <= table[-1]:
        return float(diffusion.num_timesteps - 1)
    # alphas_cumprod decreases with t; np.interp wants increasing abscissae
    return float(np.interp(np.float64(alpha_cumprod), table[::-1], np.arange(diffusion.num_timesteps - 1, -1, -1.0)))


def sigmas_to_timesteps(diffusion: GaussianDiffusion, sigmas: torch.Tensor) -> torch.Tensor:
    """Integer timesteps (int64, CPU) for a tensor of float32 sigmas."""
    values = sigmas.detach().float().cpu().numpy().reshape(-1)
    return torch.tensor([int(sigma_to_t(diffusion, s)) for s in values], dtype=torch.int64).reshape(sigmas.shape)


def karras_denoise(
    model_fn: ModelFn,
    diffusion: GaussianDiffusion,
    x_t: torch.Tensor,
    sigmas: torch.Tensor,
    timesteps: torch.Tensor,
    clip_denoised: bool = True,
    model_kwargs: dict[str, Any] | None = None,
) -> torch.Tensor:
    """x0 from the Gaussian-diffusion model at Karras noise levels ``sigmas`` ``[N]``.

    ``timesteps`` are the integer diffusion steps of ``sigmas`` (:func:`sigmas_to_timesteps`).
    The model sees ``x_t / sqrt(sigma^2 + 1)``; its epsilon gives x0, clamped to [-1, 1] when asked.
    """
    c_in = (1.0 / (sigmas**2 + 1) ** 0.5).reshape(-1, *([1] * (x_t.ndim - 1)))
    x_in = x_t * c_in
    out = model_fn(x_in, timesteps, **(model_kwargs or {}))
    eps = out[:, : x_t.shape[1]]
    return diffusion.predict_xstart(x_in, timesteps, eps, clip_denoised)


@dataclass
class KarrasSchedule:
    """Everything the Heun sampler needs per step, computed on the CPU before sampling."""

    sigmas: torch.Tensor  # [steps + 1] float32, ending in 0
    sigma_hats: torch.Tensor  # [steps] float32: sigma_i * (1 + gamma_i)
    gammas: list[float]  # churn per step
    t_hat: torch.Tensor  # [steps] int64: timestep of sigma_hat_i
    t_next: torch.Tensor  # [steps] int64: timestep of sigma_{i+1} (unused where sigma_{i+1} == 0)

    @property
    def steps(self) -> int:
        return len(self.sigma_hats)


def karras_schedule(
    diffusion: GaussianDiffusion,
    steps: int,
    sigma_min: float,
    sigma_max: float,
    s_churn: float = 0.0,
    rho: float = 7.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
) -> KarrasSchedule:
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    sigmas = karras_sigmas(steps, sigma_min, sigma_max, rho)
    gamma_max = min(s_churn / steps, 2**0.5 - 1)
    gammas = [gamma_max if s_tmin <= float(sigmas[i]) <= s_tmax else 0.0 for i in range(steps)]
    sigma_hats = torch.stack([sigmas[i] * (gammas[i] + 1) for i in range(steps)])
    return KarrasSchedule(
        sigmas=sigmas,
        sigma_hats=sigma_hats,
        gammas=gammas,
        t_hat=sigmas_to_timesteps(diffusion, sigma_hats),
        t_next=sigmas_to_timesteps(diffusion, sigmas[1:]),
    )


def heun_sample(
    denoiser: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    schedule: KarrasSchedule,
    x_T: torch.Tensor,
    step_noise: torch.Tensor,
    s_noise: float = 1.0,
) -> Iterator[dict[str, Any]]:
    """Algorithm 2 of Karras et al. (2022) with Heun steps (Euler for the last step to sigma 0).

    ``denoiser(x, sigmas [N], timesteps [N]) -> x0``. ``x_T`` is already scaled by sigma_max;
    ``step_noise[i]`` is the churn noise of step i. Yields ``{"i", "x", "pred_xstart"}`` per step
    (x after churn, the x0 prediction at sigma_hat_i) and finally ``{"i": steps, "x", "pred_xstart"}``
    with the Euler-updated x and the last x0 prediction, which is the sample.
    """
    device = x_T.device
    sigmas = schedule.sigmas.to(device)
    sigma_hats = schedule.sigma_hats.to(device)
    t_hat = schedule.t_hat.to(device)
    t_next = schedule.t_next.to(device)
    ones = torch.ones(x_T.shape[0], dtype=sigmas.dtype, device=device)
    x = x_T
    denoised = x
    for i in range(schedule.steps):
        sigma, sigma_hat = sigmas[i], sigma_hats[i]
        if schedule.gammas[i] > 0:
            x = x + step_noise[i] * s_noise * (sigma_hat**2 - sigma**2) ** 0.5
        denoised = denoiser(x, sigma_hat * ones, t_hat[i].expand(x.shape[0]))
        d = (x - denoised) / sigma_hat
        yield {"i": i, "x": x, "pred_xstart": denoised}
        dt = sigmas[i + 1] - sigma_hat
        if float(schedule.sigmas[i + 1]) == 0.0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = denoiser(x_2, sigmas[i + 1] * ones, t_next[i].expand(x.shape[0]))
            d_2 = (x_2 - denoised_2) / sigmas[i + 1]
            x = x + (d + d_2) / 2 * dt
    yield {"i": schedule.steps, "x": x, "pred_xstart": denoised}


def guided_denoiser(
    model_fn: ModelFn,
    diffusion: GaussianDiffusion,
    guidance_scale: float,
    model_kwargs: dict[str, Any],
    clip_denoised: bool = True,
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """A denoiser for :func:`heun_sample`; with guidance (a scale other than 0 or 1) the model runs
    once on ``[x, x]`` (``model_kwargs`` must then be ``[cond, uncond]``) and
    ``x0 = uncond + s * (cond - uncond)`` is formed after the clamp.
    """
    guided = guidance_scale not in (0, 1)

    def denoise(x: torch.Tensor, sigmas: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        if not guided:
            return karras_denoise(model_fn, diffusion, x, sigmas, timesteps, clip_denoised, model_kwargs)
        x0 = karras_denoise(
            model_fn,
            diffusion,
            torch.cat([x, x]),
            torch.cat([sigmas, sigmas]),
            torch.cat([timesteps, timesteps]),
            clip_denoised,
            model_kwargs,
        )
        cond, uncond = x0.chunk(2)
        return uncond + guidance_scale * (cond - uncond)

    return denoise


# ----------------------------------------------------------------------------- the staged sampler


@dataclass
class Stage:
    """One stage of the point-cloud sampler (the base model, or the upsampler).

    ``model_kwargs`` hold the conditioning for a batch (``[B, ...]`` tensors); with guidance
    each is doubled to ``[v, zeros_like(v)]``. From the second stage on, the previous stage's
    samples (data space) are passed as ``low_res``, and the stage's output is appended to them.
    """

    model: ModelFn
    diffusion: GaussianDiffusion
    num_points: int
    guidance_scale: float = 0.0
    steps: int = 64
    sigma_min: float = 1e-3
    sigma_max: float = 120.0
    s_churn: float = 0.0
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    @property
    def guided(self) -> bool:
        return self.guidance_scale not in (0, 1)

    def model_calls(self) -> int:
        return 2 * self.steps - 1


@dataclass
class StageStep:
    """A step of :func:`sample_stages`: ``pred_xstart`` is in diffusion space, ``[G, C, P]`` (G >= B)."""

    stage: int
    step: int
    steps: int
    x: torch.Tensor
    pred_xstart: torch.Tensor
    low_res: torch.Tensor | None

    def samples(self, diffusion: GaussianDiffusion, batch_size: int) -> torch.Tensor:
        """Data-space samples so far ``[B, C, P_low + P]``, as the official sampler yields them."""
        out = diffusion.unscale_channels(self.pred_xstart[:batch_size])
        return out if self.low_res is None else torch.cat([self.low_res[:batch_size], out], dim=-1)


def draw_noise(generator: torch.Generator, shape: tuple[int, ...], steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x_T's unit noise and the per-step churn noise, drawn on the CPU in the official order."""
    x_T = torch.randn(shape, generator=generator)
    per_step = torch.stack([torch.randn(shape, generator=generator) for _ in range(steps)])
    return x_T, per_step


def sample_stages(
    stages: list[Stage],
    batch_size: int,
    generator: torch.Generator,
    device: str | torch.device = "cpu",
    channels: int = 6,
    clip_denoised: bool = True,
) -> Iterator[StageStep]:
    """Run the stages in turn; yields a :class:`StageStep` per Heun step, returns ``[B, C, P_total]``
    data-space samples (``final = yield from sample_stages(...)``).
    """
    samples: torch.Tensor | None = None
    for index, stage in enumerate(stages):
        kwargs = dict(stage.model_kwargs)
        if samples is not None:
            kwargs["low_res"] = samples
        kwargs = {k: v.to(device) for k, v in kwargs.items()}
        if stage.guided:
            kwargs = {k: torch.cat([v, torch.zeros_like(v)]) for k, v in kwargs.items()}
        schedule = karras_schedule(stage.diffusion, stage.steps, stage.sigma_min, stage.sigma_max, stage.s_churn)
        shape = (batch_size, channels, stage.num_points)
        x_T, step_noise = draw_noise(generator, shape, stage.steps)
        denoiser = guided_denoiser(stage.model, stage.diffusion, stage.guidance_scale, kwargs, clip_denoised)
        x_T = x_T.to(device) * stage.sigma_max
        pred_xstart = x_T
        for out in heun_sample(denoiser, schedule, x_T, step_noise.to(device)):
            pred_xstart = out["pred_xstart"]
            yield StageStep(index, out["i"], stage.steps, out["x"], pred_xstart, kwargs.get("low_res"))
        out = stage.diffusion.unscale_channels(pred_xstart[:batch_size])
        samples = out if "low_res" not in kwargs else torch.cat([kwargs["low_res"][:batch_size], out], dim=-1)
    if samples is None:
        raise ValueError("no stages to sample")
    return samples
