"""Shaded volume rendering of a :class:`~methods.nerf.field.RadianceField` for text-to-3D optimisation.

The same marching and compositing as :func:`methods.nerf.render.render_rays` (samples at a fixed
step inside occupied cells, colour only where a sample carries weight), plus what DreamFusion adds
at the colour samples: a surface normal from the density gradient, Lambertian or textureless
shading under a point light direction, and the orientation loss of Ref-NeRF (Verbin et al. 2022)
that DreamFusion uses. The output is premultiplied (no background): the caller composites.

Why a renderer of its own: the orientation loss needs per-sample weights and normals, which
``render_rays`` does not return.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from methods.nerf.occupancy import OccupancyGrid
from methods.nerf.render import RenderOptions, march, sample_weights

SHADINGS = ("albedo", "lambertian", "textureless")


@dataclass
class Shading:
    """How colour samples are lit: ``mode`` in SHADINGS, a unit light direction (3,), the ambient share."""

    mode: str = "albedo"
    light: torch.Tensor | None = None  # direction from the object towards the light
    ambient: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in SHADINGS:
            raise ValueError(f"shading must be one of {SHADINGS}, got {self.mode!r}")
        if self.mode != "albedo" and self.light is None:
            raise ValueError(f"{self.mode} shading needs a light direction")


def density_normals(density_fn, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Unit normals ``-grad(sigma) / |grad(sigma)|`` at ``x`` (N, 3) by central differences of step ``eps``.

    Finite differences, as Stable DreamFusion does for grid encodings: ``grid_sample`` has no
    double backward, so an autograd normal could not pass gradients on to the density. Where the
    density is flat the normal is zero (and shading falls back to the ambient term).
    """
    n = x.shape[0]
    offsets = torch.eye(3, device=x.device, dtype=x.dtype) * eps
    probes = torch.cat([x[None] + offsets[:, None], x[None] - offsets[:, None]]).reshape(-1, 3)
    sigma = density_fn(probes.clamp(-1.0, 1.0)).view(2, 3, n)
    grad = (sigma[0] - sigma[1]).t() / (2.0 * eps)
    return -F.normalize(grad, dim=-1, eps=1e-12)


def shade(albedo: torch.Tensor, normals: torch.Tensor | None, shading: Shading) -> torch.Tensor:
    """Colour of samples: albedo, albedo x (ambient + diffuse), or the white textureless (ambient + diffuse)."""
    if shading.mode == "albedo":
        return albedo
    light = shading.light.to(normals)
    lambert = shading.ambient + (1.0 - shading.ambient) * (normals @ light).clamp_min(0.0)
    if shading.mode == "textureless":
        return lambert[:, None].expand(-1, 3)
    return albedo * lambert[:, None]


def render_shaded(
    field,
    occupancy: OccupancyGrid,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    options: RenderOptions,
    shading: Shading | None = None,
    jitter: bool = False,
    normal_eps: float = 0.01,
) -> dict[str, torch.Tensor]:
    """Render R rays: premultiplied ``rgb`` (R, 3), ``opacity`` (R,), ``depth`` (R,), ``orientation`` (scalar).

    ``orientation`` is the Ref-NeRF penalty on normals facing away from the camera,
    ``sum_i stopgrad(w_i) * max(0, n_i . d)^2`` averaged over rays; it is zero under albedo shading
    (no normals are computed then).
    """
    shading = shading or Shading()
    R = origins.shape[0]
    device = origins.device
    zero = torch.zeros((), device=device)
    marched = march(occupancy, origins, dirs, options, jitter)
    if marched is None:
        zeros = torch.zeros(R, device=device)
        return {"rgb": torch.zeros(R, 3, device=device), "opacity": zeros, "depth": zeros, "orientation": zero}
    t, x, valid = marched
    sigma = torch.zeros(valid.shape, device=device).index_put((valid,), field.density(x[valid]))
    weights, colored, ray_id = sample_weights(sigma, valid, options)
    xs, ds = x[colored], dirs[ray_id]
    albedo = field.color(xs, ds)
    orientation = zero
    normals = None
    if shading.mode != "albedo" and len(xs):
        normals = density_normals(field.density, xs, normal_eps)
        facing = (normals * ds).sum(-1).clamp_min(0.0) ** 2
        orientation = (weights[colored].detach() * facing).sum() / R
    rgb_samples = shade(albedo, normals, shading)
    rgb = torch.zeros(R, 3, device=device).index_add(0, ray_id, weights[colored][:, None] * rgb_samples)
    return {
        "rgb": rgb,
        "opacity": weights.sum(1),
        "depth": (weights * t).sum(1),
        "orientation": orientation,
        "samples": valid.sum(),
        "colored": colored.sum(),
    }


__all__ = ["SHADINGS", "Shading", "density_normals", "render_shaded", "shade"]
