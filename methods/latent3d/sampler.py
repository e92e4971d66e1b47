"""Flow-matching sampling with classifier-free guidance, parameterised by each model's conventions.

A model's conventions differ in three places, all data in :class:`FlowConvention`:

- the Euler update: ``x <- x + sign * (sigma_next - sigma) * v`` (TripoSG: sigma falls 1 -> 0 and the model
  predicts ``x0 - noise``, so ``sign = -1``; a scheduler in diffusers' ``FlowMatchEuler`` form has ``+1``);
- the timestep the denoiser sees: ``sigma * time_scale`` (TripoSG: 1000);
- the guidance batch: ``"uncond_first"`` or ``"cond_first"``; or no batch at all when the model embeds the
  guidance scale itself (``guidance_embed``, the distilled "fast" variants).

:func:`flow_steps` is a generator (one :class:`FlowStep` per step) so a pipeline can report progress between
steps; :func:`sample` runs it to the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

Denoiser = Callable[..., torch.Tensor]  # (latents, timestep (B,), condition, **extra) -> velocity


@dataclass(frozen=True)
class FlowConvention:
    sign: float = -1.0
    time_scale: float = 1000.0
    batch_order: str = "uncond_first"  # or "cond_first"
    guidance_embed: bool = False  # the denoiser takes ``guidance=`` and runs once, unguided batch

    def __post_init__(self) -> None:
        if self.batch_order not in ("uncond_first", "cond_first"):
            raise ValueError(f"batch_order must be uncond_first or cond_first, not {self.batch_order!r}")


TRIPOSG = FlowConvention(sign=-1.0, time_scale=1000.0, batch_order="uncond_first")


@dataclass
class FlowStep:
    index: int  # 0-based
    total: int
    latents: torch.Tensor  # after this step
    velocity: torch.Tensor  # the (guided) velocity used
    raw: torch.Tensor  # the denoiser's output before guidance (2B rows with CFG)


def rectified_flow_sigmas(steps: int, shift: float = 1.0) -> torch.Tensor:
    """TripoSG's ``RectifiedFlowScheduler``: sigma_i = shift s / (1 + (shift - 1) s), s = 1 - i/N; then 0.

    Computed in float64 like the official numpy code, then float32; (N + 1,) falling from 1 to 0.
    """
    if steps < 1:
        raise ValueError("steps must be at least 1")
    s = np.array([1.0 - i / steps for i in range(steps)], dtype=np.float64)
    sigmas = shift * s / (1 + (shift - 1) * s)
    return torch.cat([torch.from_numpy(sigmas).float(), torch.zeros(1)])


def timesteps_of(sigmas: torch.Tensor, convention: FlowConvention) -> torch.Tensor:
    """The denoiser's timesteps for sigmas[:-1], computed in float32 (sigma * time_scale)."""
    return sigmas[:-1].float() * convention.time_scale


def euler_step(
    sample: torch.Tensor, velocity: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor, sign: float
) -> torch.Tensor:
    """One Euler step in float32, returned in the velocity's dtype (as the official schedulers)."""
    step = (sigma_next - sigma) * sign
    return (sample.float() + step * velocity).to(velocity.dtype)


def guided(raw: torch.Tensor, guidance_scale: float, batch_order: str) -> torch.Tensor:
    """``u + g (c - u)`` from a (2B, ...) batch in the given order."""
    first, second = raw.chunk(2)
    uncond, cond = (first, second) if batch_order == "uncond_first" else (second, first)
    return uncond + guidance_scale * (cond - uncond)


def uses_cfg(guidance_scale: float, convention: FlowConvention) -> bool:
    return not convention.guidance_embed and guidance_scale > 1.0


def flow_steps(
    denoiser: Denoiser,
    latents: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    sigmas: torch.Tensor | Sequence[float],
    convention: FlowConvention = TRIPOSG,
    guidance_scale: float = 1.0,
    **extra,
) -> Iterator[FlowStep]:
    """Yield the latents after each Euler step from ``sigmas[0]`` to ``sigmas[-1]``.

    CFG runs iff ``guidance_scale > 1`` and the model does not embed guidance: one batched call with the
    latents doubled and the conditions in ``convention.batch_order``. ``extra`` goes to the denoiser.
    """
    sigmas = torch.as_tensor(sigmas, dtype=torch.float32)
    timesteps = timesteps_of(sigmas, convention)
    cfg = uses_cfg(guidance_scale, convention)
    if cfg:
        if uncond is None:
            raise ValueError("guidance_scale > 1 needs the unconditional tokens")
        pair = (uncond, cond) if convention.batch_order == "uncond_first" else (cond, uncond)
        context = torch.cat(pair, dim=0)
    else:
        context = cond
    if convention.guidance_embed:
        extra = {**extra, "guidance": torch.full((len(latents),), float(guidance_scale), device=latents.device)}
    total = len(timesteps)
    for i in range(total):
        model_in = torch.cat([latents, latents]) if cfg else latents
        t = timesteps[i].to(latents.device).expand(len(model_in))
        raw = denoiser(model_in, t, context, **extra)
        velocity = guided(raw, guidance_scale, convention.batch_order) if cfg else raw
        latents = euler_step(
            latents, velocity, sigmas[i].to(latents.device), sigmas[i + 1].to(latents.device), convention.sign
        )
        yield FlowStep(i, total, latents, velocity, raw)


def sample(
    denoiser: Denoiser,
    latents: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    sigmas: torch.Tensor | Sequence[float],
    convention: FlowConvention = TRIPOSG,
    guidance_scale: float = 1.0,
    **extra,
) -> torch.Tensor:
    """The final latents of :func:`flow_steps`."""
    for step in flow_steps(denoiser, latents, cond, uncond, sigmas, convention, guidance_scale, **extra):
        latents = step.latents
    return latents
