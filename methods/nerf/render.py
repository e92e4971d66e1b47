"""Volume rendering (Max 1995, as in NeRF): march rays through occupied cells, composite density and colour.

Sampling is two-level: samples at a fixed step inside the occupancy grid's occupied cells (empty
space skipped), density at all of them, then colour only at the samples whose compositing weight
exceeds ``color_threshold`` (hierarchical in the sense of NeRF's coarse-to-fine: the density pass
decides where the expensive colour network runs; gradients still reach every density sample).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from methods.nerf.occupancy import OccupancyGrid


@dataclass
class RenderOptions:
    step: float = 2.0 / 256  # sample spacing in field units (the cube is 2 wide)
    color_threshold: float = 1e-4  # compositing weight below which a sample gets no colour evaluation
    max_samples: int = 1024  # per ray
    near: float = 0.0  # distance from the ray origin, field units


def ray_box(origins: torch.Tensor, dirs: torch.Tensor, box: torch.Tensor, near: float = 0.0):
    """Entry and exit distances of rays through the axis-aligned ``box`` (2, 3); exit <= entry when missed."""
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0 = (box[0] - origins) * inv
    t1 = (box[1] - origins) * inv
    t_near = torch.minimum(t0, t1).amax(-1).clamp_min(near)
    t_far = torch.maximum(t0, t1).amin(-1)
    return t_near, t_far


def march(
    occupancy: OccupancyGrid, origins: torch.Tensor, dirs: torch.Tensor, options: RenderOptions, jitter: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Samples along R rays every ``options.step`` from where each enters the occupancy box (at a random
    or the middle offset in each step): distances t (R, S), points x (R, S, 3) and which are valid (inside
    the box, occupied). None when no ray meets the box."""
    R = origins.shape[0]
    device = origins.device
    t_near, t_far = ray_box(origins, dirs, occupancy.bbox, options.near)
    count = ((t_far - t_near) / options.step).ceil().clamp(0, options.max_samples).long()
    S = int(count.max()) if R else 0
    if S == 0:
        return None
    steps = torch.arange(S, device=device, dtype=torch.float32)
    offset = torch.rand(R, 1, device=device) if jitter else torch.full((R, 1), 0.5, device=device)
    t = t_near[:, None] + (steps[None, :] + offset) * options.step
    valid = steps[None, :] < count[:, None]
    x = origins[:, None, :] + t[..., None] * dirs[:, None, :]
    valid &= occupancy.query(x)
    return t, x, valid


def sample_weights(
    sigma: torch.Tensor, valid: torch.Tensor, options: RenderOptions
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Volume-rendering weights (R, S) of densities ``sigma``, the samples worth colouring (weight above
    ``options.color_threshold``) and the ray of each of those."""
    tau = sigma * options.step
    transmittance = torch.exp(-(torch.cumsum(tau, 1) - tau))
    weights = (1.0 - torch.exp(-tau)) * transmittance
    colored = valid & (weights.detach() > options.color_threshold)
    return weights, colored, colored.nonzero()[:, 0]


def render_rays(
    field,
    occupancy: OccupancyGrid,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    background: torch.Tensor,
    options: RenderOptions,
    jitter: bool = False,
) -> dict[str, torch.Tensor]:
    """Render R rays (field frame, unit directions): rgb (R, 3) over ``background`` (R, 3) or (3,), opacity, depth."""
    R = origins.shape[0]
    device = origins.device
    marched = march(occupancy, origins, dirs, options, jitter)
    if marched is None:
        zeros = torch.zeros(R, device=device)
        rgb = torch.zeros(R, 3, device=device) + background
        return {"rgb": rgb, "opacity": zeros, "depth": zeros, "samples": torch.tensor(0), "colored": torch.tensor(0)}
    t, x, valid = marched
    sigma = torch.zeros(valid.shape, device=device)
    sigma = sigma.index_put((valid,), field.density(x[valid]))
    weights, colored, ray_id = sample_weights(sigma, valid, options)
    rgb_samples = field.color(x[colored], dirs[ray_id])
    contribution = weights[colored][:, None] * rgb_samples
    rgb = torch.zeros(R, 3, device=device).index_add(0, ray_id, contribution)
    opacity = weights.sum(1)
    rgb = rgb + (1.0 - opacity[:, None]) * background
    depth = (weights * t).sum(1)
    return {
        "rgb": rgb,
        "opacity": opacity,
        "depth": depth,
        "samples": valid.sum(),
        "colored": colored.sum(),
    }


@torch.no_grad()
def render_rays_chunked(field, occupancy, origins, dirs, background, options, chunk: int = 8192):
    out: dict[str, list[torch.Tensor]] = {"rgb": [], "opacity": [], "depth": []}
    for i in range(0, origins.shape[0], chunk):
        bg = background if background.dim() == 1 else background[i : i + chunk]
        part = render_rays(field, occupancy, origins[i : i + chunk], dirs[i : i + chunk], bg, options)
        for k in out:
            out[k].append(part[k])
    return {k: torch.cat(v) for k, v in out.items()}


@torch.no_grad()
def render_view(field, occupancy, rays, index: int, background, options, stride: int = 1) -> np.ndarray:
    """One view of a :class:`~methods.nerf.cameras.RayTable` (field frame) as an (H, W, 3) float32 array in [0, 1]."""
    o, d = rays.image_rays(index, stride)
    h, w = o.shape[:2]
    out = render_rays_chunked(field, occupancy, o.reshape(-1, 3), d.reshape(-1, 3), background, options)
    return out["rgb"].reshape(h, w, 3).clamp(0, 1).cpu().numpy()
