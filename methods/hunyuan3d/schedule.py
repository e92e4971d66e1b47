"""Hunyuan3D-2's flow-matching time grids (no torch import at module level beyond the tensors they return).

Convention (the reverse of diffusers / TripoSG): sigma = 0 is noise, sigma = 1 is data; the model is given
t = sigma, and the Euler update is ``x <- x + (sigma_next - sigma) v``.

- Standard (``FlowMatchEulerDiscreteScheduler``): the pipeline passes ``linspace(0, 1, N)`` and the scheduler
  appends 1.0, so the official last step has delta 0: its model evaluation is wasted. ``official=True`` keeps
  that grid (parity); the default spreads the N evaluations over [0, 1) so that all N of them move the sample
  (``linspace(0, 1, N + 1)[:-1]`` + 1.0: N Euler steps of 1/N).
- Turbo (``ConsistencyFlowMatchEulerDiscreteScheduler``): a phased grid of ``pcm_timesteps`` values; only the
  count N of the requested sigmas is used. Float64, as officially.
"""

from __future__ import annotations

import numpy as np
import torch


def flow_sigmas(steps: int, shift: float = 1.0, num_train_timesteps: int = 1000, official: bool = False):
    """(timesteps (N,) float32 = 1000 sigma, sigmas (N+1,) float32 ending in 1.0)."""
    if steps < 1:
        raise ValueError("at least one step")
    base = np.linspace(0.0, 1.0, steps) if official else np.linspace(0.0, 1.0, steps + 1)[:-1]
    shifted = shift * base / (1 + (shift - 1) * base)
    sigmas = torch.from_numpy(shifted).to(torch.float32)
    timesteps = sigmas * num_train_timesteps
    return timesteps, torch.cat([sigmas, torch.ones(1)])


def consistency_sigmas(steps: int, pcm_timesteps: int, num_train_timesteps: int = 1000):
    """(timesteps (N,) float64, sigmas (N+1,) float64 ending in 1.0) of the turbo (phased consistency) grid."""
    if steps < 1:
        raise ValueError("at least one step")
    p = int(pcm_timesteps)
    ratio = num_train_timesteps // p
    index = [0] + list((np.arange(1, p) * ratio).round().astype(np.int64) - 1)
    euler = np.linspace(0.0, 1.0, num_train_timesteps)[index]
    picks = np.floor(np.linspace(0, p, steps, endpoint=False)).astype(np.int64)
    sigmas = np.append(euler[picks], 1.0)
    sigmas_t = torch.from_numpy(sigmas)
    return sigmas_t[:-1] * num_train_timesteps, sigmas_t


def model_time(timestep: torch.Tensor, batch: int, num_train_timesteps: int = 1000) -> torch.Tensor:
    """The t the DiT receives: the scheduler's timestep cast to float32, divided by 1000 (as the pipeline)."""
    return timestep.reshape(1).expand(batch).to(torch.float32) / num_train_timesteps


def euler_step(sample: torch.Tensor, velocity: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor):
    """``x + (sigma_next - sigma) v`` in float32 (a float64 delta is rounded to float32 first)."""
    delta = (sigma_next - sigma).to(torch.float32)
    return (sample.float() + delta * velocity.float()).to(sample.dtype)
