"""TripoSR's cameras and volume renderer (official conventions: +Z up, white background).

Two departures from the official code, both where it would fail on a real input: rays that miss the
box render as background (the official renderer raises a shape error), and the camera cross products
name their axis (the official ``torch.cross`` without ``dim`` crosses along the views axis when
``n_views == 3``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from methods.triposr.model import TripoSR


def spherical_cameras(
    n_views: int, elevation_deg: float, distance: float, fovy_deg: float, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray origins and unit directions (n_views, H, W, 3); azimuths evenly from +X towards +Y, +Z up."""
    azimuth = torch.linspace(0, 360.0, n_views + 1)[:n_views] * math.pi / 180
    elevation = torch.full_like(azimuth, elevation_deg) * math.pi / 180
    positions = torch.stack(
        [
            distance * torch.cos(elevation) * torch.cos(azimuth),
            distance * torch.cos(elevation) * torch.sin(azimuth),
            distance * torch.sin(elevation),
        ],
        dim=-1,
    )
    up = torch.tensor([0.0, 0.0, 1.0]).expand(n_views, 3)
    lookat = F.normalize(-positions, dim=-1)
    right = F.normalize(torch.linalg.cross(lookat, up, dim=-1), dim=-1)
    up = F.normalize(torch.linalg.cross(right, lookat, dim=-1), dim=-1)
    rotation = torch.stack([right, up, -lookat], dim=-1)  # (n, 3, 3) columns
    focal = 0.5 * height / math.tan(0.5 * fovy_deg * math.pi / 180)
    i, j = torch.meshgrid(torch.arange(width) + 0.5, torch.arange(height) + 0.5, indexing="xy")
    dirs = F.normalize(torch.stack([i - width / 2, -(j - height / 2), -torch.ones_like(i)], dim=-1), dim=-1)
    dirs = torch.cat([dirs[..., :2] / focal, dirs[..., 2:]], dim=-1)
    rays_d = F.normalize((dirs[None, :, :, None, :] * rotation[:, None, None]).sum(-1), dim=-1)
    rays_o = positions[:, None, None, :].expand(rays_d.shape)
    return rays_o, rays_d


def ray_box(rays_o: torch.Tensor, rays_d: torch.Tensor, radius: float, valid_thresh: float = 0.01):
    """Entry/exit distances of rays (N, 3) through the cube [-r, r]^3 shrunk by 0.1%; and which rays hit it."""
    d = torch.where(rays_d.abs() < 1e-6, torch.full_like(rays_d, 1e-6), rays_d)
    r = (1.0 - 1.0e-3) * radius
    t0, t1 = (r - rays_o) / d, (-r - rays_o) / d
    t_near = torch.minimum(t0, t1).amax(dim=-1).clamp_min(0.0)
    t_far = torch.maximum(t0, t1).amin(dim=-1)
    valid = t_far - t_near > valid_thresh
    return t_near, t_far, valid


def render_rays(
    model: TripoSR, planes: torch.Tensor, rays_o: torch.Tensor, rays_d: torch.Tensor, chunk_size: int = 8192
) -> torch.Tensor:
    """Composited colour (..., 3) over white for rays (..., 3) through one scene's planes (3, C, H, W)."""
    shape = rays_o.shape[:-1]
    rays_o, rays_d = rays_o.reshape(-1, 3), rays_d.reshape(-1, 3)
    rgb = torch.ones(rays_o.shape[0], 3, device=rays_o.device)
    t_near, t_far, valid = ray_box(rays_o, rays_d, model.config.radius)
    n = model.config.num_samples_per_ray
    t_vals = torch.linspace(0, 1, n + 1, device=rays_o.device)
    t_mid = (t_vals[:-1] + t_vals[1:]) / 2.0
    delta = t_vals[1:] - t_vals[:-1]  # normalised bins, as official (not world distances)
    index = valid.nonzero()[:, 0]
    rays_per_chunk = max(1, chunk_size // n) if chunk_size > 0 else max(len(index), 1)
    for start in range(0, len(index), rays_per_chunk):
        idx = index[start : start + rays_per_chunk]
        z = t_near[idx, None] * (1 - t_mid[None]) + t_far[idx, None] * t_mid[None]
        xyz = rays_o[idx, None, :] + z[..., None] * rays_d[idx, None, :]
        out = model.query(planes, xyz.reshape(-1, 3), chunk_size)
        sigma = out["density"].view(len(idx), n)
        color = out["color"].view(len(idx), n, 3)
        alpha = 1 - torch.exp(-delta * sigma)
        trans = torch.cat([torch.ones_like(alpha[:, :1]), torch.cumprod(1 - alpha[:, :-1] + 1e-10, dim=-1)], dim=-1)
        weights = alpha * trans
        rgb[idx] = (weights[..., None] * color).sum(dim=-2) + (1 - weights.sum(dim=-1, keepdim=True))
    return rgb.view(*shape, 3)


def render_views(
    model: TripoSR,
    planes: torch.Tensor,
    n_views: int,
    elevation_deg: float = 0.0,
    distance: float = 1.9,
    fovy_deg: float = 40.0,
    height: int = 256,
    width: int = 256,
    chunk_size: int = 8192,
) -> torch.Tensor:
    """Images (n_views, H, W, 3) in [0, 1] around one scene (official defaults: elevation 0, 1.9, 40 deg)."""
    rays_o, rays_d = spherical_cameras(n_views, elevation_deg, distance, fovy_deg, height, width)
    dev = planes.device
    views = [render_rays(model, planes, o.to(dev), d.to(dev), chunk_size) for o, d in zip(rays_o, rays_d, strict=True)]
    return torch.stack(views)
