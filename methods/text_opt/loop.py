"""The optimisation loop shared by DreamFusion and Dream Fields: a radiance field, random cameras, a guidance.

As threestudio separates geometry, renderer and guidance, this loop owns the geometry (the
:class:`~methods.nerf.field.RadianceField` of :mod:`methods.nerf`, a density blob at the start,
an occupancy grid, scene bounds), the renderer (random cameras, shading augmentation, a
background) and the optimiser (Adam on the field only); the guidance is a swappable part that
turns a :class:`RenderBatch` into a loss (:class:`Guidance`): score distillation through Stable
Diffusion (:mod:`methods.text_opt.sds`) or CLIP similarity (:mod:`methods.text_opt.clip_guidance`).

The loop runs under :func:`methods.nerf.train.train_loop`: a step / time budget, a report with a
preview render every few seconds, and cancellation by closing the generator (after the current
step); :meth:`FieldOptimizer.close` then frees the field, the optimiser state and the CUDA cache.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import nn

from methods.nerf.cameras import Cameras, RayTable
from methods.nerf.field import FieldConfig, RadianceField, sh_encode
from methods.nerf.mesh import MeshOptions, extract_mesh
from methods.nerf.occupancy import OccupancyGrid
from methods.nerf.render import RenderOptions
from methods.nerf.train import Budget, TrainEvent, train_loop
from methods.text_opt.cameras import (
    CameraBatch,
    CameraRange,
    intrinsics,
    orbit_cameras,
    sample_cameras,
    view_direction,
)
from methods.text_opt.render import Shading, render_shaded

BACKGROUNDS = ("mixed", "learned", "random", "white", "none")
REPORT_SECONDS = 3.0  # how often the loop reports progress (tests set 0: every step)
PREVIEW_SECONDS = 6.0


# ----------------------------------------------------------------------------- the guidance protocol


@dataclass
class RenderBatch:
    """What the loop hands the guidance each step: B renders of the field from random cameras.

    ``rgb`` is premultiplied radiance (B, 3, H, W) in [0, 1] with no background, ``opacity``
    (B, 1, H, W); ``background`` (B, 3, H, W) is the loop's background for this step (None when
    the guidance brings its own, as Dream Fields does). All three carry gradients to the field.
    """

    rgb: torch.Tensor
    opacity: torch.Tensor
    background: torch.Tensor | None
    cameras: CameraBatch
    shading: str
    progress: float  # 0 -> 1 over the budget

    def composite(self, background: torch.Tensor | None = None) -> torch.Tensor:
        """The renders over ``background`` (default: the loop's), (B, 3, H, W)."""
        bg = self.background if background is None else background
        if bg is None:
            return self.rgb
        return self.rgb + (1.0 - self.opacity) * bg

    def directions(self) -> list[str]:
        """DreamFusion's view label (front / side / back / overhead) of each camera."""
        return [view_direction(a, e) for a, e in zip(self.cameras.azimuth, self.cameras.elevation, strict=True)]


class Guidance(Protocol):
    """A swappable loss on renders; its models are frozen, gradients reach the field only."""

    name: str

    def loss(self, batch: RenderBatch, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """A scalar loss whose gradient flows into ``batch``'s tensors, and numbers to report."""
        ...

    def close(self) -> None:
        """Drop per-run tensors (text embeddings); the models stay in :mod:`methods.runtime`'s cache."""
        ...


# ----------------------------------------------------------------------------- configuration


@dataclass
class LoopConfig:
    """Everything the loop needs besides the guidance. Defaults are DreamFusion's (Stable DreamFusion's numbers)."""

    steps: int = 10000
    budget_seconds: float = 120.0
    render_size: int = 64  # renders are render_size x render_size pixels
    batch_views: int = 1
    grid_resolution: int = 64  # density grid cells per side; tri-planes at half, the same and twice this
    plane_channels: int = 16
    hidden: int = 64
    # density grid and features; the colour MLP and background at net_lr_ratio x. The grid's raw values span
    # about 7 units between empty and opaque: 0.05 crosses that in ~150 steps (1e-2 took ~500 on a test fit)
    learning_rate: float = 5e-2
    net_lr_ratio: float = 0.1
    cameras: CameraRange = field(default_factory=CameraRange)
    shading: bool = True  # DreamFusion's shading augmentation; False renders albedo only (Dream Fields)
    albedo_fraction: float = 0.1  # albedo only for this share of the budget (threestudio: 1000 of 10000 steps)
    textureless_prob: float = 0.5  # then textureless with this probability, else Lambertian
    ambient: float = 0.1
    background: str = "mixed"  # mixed: learned (direction MLP) or a random colour, half the steps each
    lambda_orientation: float = 1e-2
    lambda_opacity: float = 1e-3  # mean of sqrt(opacity^2 + 0.01) (DreamFusion's opacity penalty)
    lambda_entropy: float = 1e-3  # binary entropy of the opacity (Stable DreamFusion)
    bound: float = 1.0  # scene bounds: density only where |x|_inf <= bound
    blob_density: float = 20.0  # initial density at the centre (1 / field unit); 0: none
    blob_radius: float = 0.35
    step_ratio: float = 0.5  # ray-marching step in density voxels
    occupancy_every: int = 16
    alpha_init: float = 1e-3  # opacity of one voxel outside the blob: a faint fog (0.01 fogs half of a 64^3 view)
    seed: int = 0
    preview_size: int = 64

    def __post_init__(self) -> None:
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {self.background!r}")
        if self.render_size < 8 or self.grid_resolution < 8 or self.batch_views < 1:
            raise ValueError("render_size >= 8, grid_resolution >= 8 and batch_views >= 1 are required")

    def field_config(self) -> FieldConfig:
        g = self.grid_resolution
        planes = tuple(sorted({max(4, g // 2), g, min(2 * g, 256)}))
        return FieldConfig(
            resolution=g,
            start_resolution=g,
            alpha_init=self.alpha_init,
            encoding="planes",
            plane_resolutions=planes,
            plane_channels=self.plane_channels,
            hidden=self.hidden,
        )


class BackgroundNet(nn.Module):
    """DreamFusion's environment map: a small MLP from the ray direction (spherical harmonics) to a colour."""

    def __init__(self, hidden: int = 32, degree: int = 3):
        super().__init__()
        self.degree = degree
        self.net = nn.Sequential(nn.Linear(degree**2, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 3))

    def forward(self, dirs: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(sh_encode(dirs, self.degree)))


def blob_raw(grid: torch.Tensor, voxel: float, shift: float, density: float, radius: float) -> torch.Tensor:
    """Raw density-grid values (z, y, x lattice over [-1, 1]^3) whose activation adds a Gaussian blob.

    The grid stores ``raw`` with ``sigma = softplus(raw + shift) / voxel``; this inverts that for
    ``sigma_init + density * exp(-|x|^2 / (2 radius^2))`` (Stable DreamFusion's density blob, here
    an initial value the optimiser may change rather than a fixed offset).
    """
    r = grid.shape[-1]
    axis = torch.linspace(-1.0, 1.0, r, device=grid.device)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    blob = density * torch.exp(-(x * x + y * y + z * z) / (2.0 * radius**2))
    target = math.log1p(math.exp(shift)) + blob * voxel  # softplus(raw + shift)
    inverse = target + torch.log(-torch.expm1(-target))  # softplus^-1, stable for large values
    return (inverse - shift).view_as(grid)


# ----------------------------------------------------------------------------- the loop


class FieldOptimizer:
    """A radiance field optimised from random views against a :class:`Guidance` (Adam on the field only)."""

    def __init__(self, config: LoopConfig, guidance: Guidance, device: str = "cpu"):
        self.config, self.guidance, self.device = config, guidance, device
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.generator = torch.Generator(device=device).manual_seed(config.seed)
        self.field = RadianceField(config.field_config()).to(device)
        grid = self.field.density_grid
        if config.blob_density > 0:
            with torch.no_grad():
                grid.raw.copy_(blob_raw(grid.raw, grid.voxel, grid.shift, config.blob_density, config.blob_radius))
        self.background_net = BackgroundNet().to(device) if config.background in ("mixed", "learned") else None
        self.occupancy = OccupancyGrid(grid.resolution - 1, device)
        self.bound_mask = self._bound_mask(grid.resolution - 1) if config.bound < 1.0 else None
        self.update_occupancy()
        self.optimizer = self._make_optimizer()
        self.nonfinite_steps = 0
        self.curve: list[tuple[float, int, float]] = []

    # -- pieces

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        groups = self.field.param_groups(c.learning_rate, c.learning_rate, c.learning_rate * c.net_lr_ratio)
        if self.background_net is not None:
            groups.append(
                {
                    "params": list(self.background_net.parameters()),
                    "lr": c.learning_rate * c.net_lr_ratio,
                    "name": "background",
                }
            )
        return torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)

    def parameters(self) -> list[torch.Tensor]:
        """Everything the optimiser changes (the field and the background MLP)."""
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def _bound_mask(self, resolution: int) -> torch.Tensor:
        centres = (torch.arange(resolution, device=self.device, dtype=torch.float32) + 0.5) * (2.0 / resolution) - 1.0
        inside = centres.abs() <= self.config.bound + 1.0 / resolution
        return inside[:, None, None] & inside[None, :, None] & inside[None, None, :]

    def render_options(self) -> RenderOptions:
        return RenderOptions(step=self.field.density_grid.voxel * self.config.step_ratio)

    def update_occupancy(self) -> None:
        grid = self.field.density_grid
        self.occupancy.set_from_density(grid.cell_max(), grid.voxel * self.config.step_ratio)
        if self.bound_mask is not None:
            self.occupancy.intersect(self.bound_mask)

    def rays(self, cameras: CameraBatch, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Origins and unit directions of every pixel of every camera, (B * size * size, 3) each."""
        K = np.stack([intrinsics(f, size, size) for f in cameras.fov])
        table = RayTable(Cameras(cameras.c2w, K, size, size), self.device)
        v, u = torch.meshgrid(
            torch.arange(size, device=self.device), torch.arange(size, device=self.device), indexing="ij"
        )
        B = len(cameras)
        image = torch.arange(B, device=self.device).repeat_interleave(size * size)
        return table.rays(image, u.reshape(-1).repeat(B), v.reshape(-1).repeat(B))

    def choose_shading(self, progress: float, cameras: CameraBatch) -> Shading:
        """DreamFusion's shading augmentation: albedo first, then textureless or Lambertian under a random light.

        One light per step, near the first camera of the batch (the default batch is one view).
        """
        c = self.config
        if not c.shading or progress < c.albedo_fraction:
            return Shading("albedo")
        # a point light near the camera, so the lit side faces it (Stable DreamFusion: camera position + N(0, I))
        eye = cameras.c2w[0, :3, 3]
        light = eye + self.rng.normal(size=3)
        light = torch.as_tensor(light / max(np.linalg.norm(light), 1e-9), dtype=torch.float32, device=self.device)
        mode = "textureless" if self.rng.random() < c.textureless_prob else "lambertian"
        return Shading(mode, light, c.ambient)

    def background(self, dirs: torch.Tensor, B: int, size: int, train: bool) -> torch.Tensor | None:
        """The step's background (B, 3, H, W): learned from the ray direction, a random colour, white, or none."""
        mode = self.config.background
        if mode == "none":
            return None
        if not train or mode == "white":
            return torch.ones(B, 3, size, size, device=self.device)
        if mode == "mixed":
            mode = "learned" if self.rng.random() < 0.5 else "random"
        if mode == "learned":
            return self.background_net(dirs).view(B, size, size, 3).permute(0, 3, 1, 2)
        colour = torch.rand(B, 3, 1, 1, device=self.device, generator=self.generator)
        return colour.expand(B, 3, size, size)

    def render(
        self, cameras: CameraBatch, size: int, shading: Shading, jitter: bool
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Renders of ``cameras`` as images: rgb (B, 3, H, W) premultiplied, opacity (B, 1, H, W); and the rays."""
        origins, dirs = self.rays(cameras, size)
        out = render_shaded(
            self.field,
            self.occupancy,
            origins,
            dirs,
            self.render_options(),
            shading,
            jitter=jitter,
            normal_eps=self.field.density_grid.voxel,
        )
        B = len(cameras)
        out["rgb"] = out["rgb"].view(B, size, size, 3).permute(0, 3, 1, 2)
        out["opacity"] = out["opacity"].view(B, 1, size, size)
        return out, dirs

    # -- one step

    def step(self, step: int, progress: float) -> dict[str, float]:
        c = self.config
        if step % c.occupancy_every == 0:
            self.update_occupancy()
        cameras = sample_cameras(self.rng, c.batch_views, c.cameras)
        shading = self.choose_shading(progress, cameras)
        out, dirs = self.render(cameras, c.render_size, shading, jitter=True)
        background = self.background(dirs, len(cameras), c.render_size, train=True)
        batch = RenderBatch(out["rgb"], out["opacity"], background, cameras, shading.mode, progress)
        guidance_loss, info = self.guidance.loss(batch, step)
        opacity = out["opacity"]
        total = guidance_loss
        if c.lambda_orientation > 0:
            total = total + c.lambda_orientation * out["orientation"]
        if c.lambda_opacity > 0:
            total = total + c.lambda_opacity * torch.sqrt(opacity**2 + 0.01).mean()
        if c.lambda_entropy > 0:
            a = opacity.clamp(1e-5, 1.0 - 1e-5)
            total = total + c.lambda_entropy * (-a * torch.log2(a) - (1 - a) * torch.log2(1 - a)).mean()
        self.optimizer.zero_grad(set_to_none=True)
        value = float(total.detach())
        if not math.isfinite(value):
            self.nonfinite_steps += 1  # a float16 overflow in the guidance: skip the update, keep going
        elif total.requires_grad:  # False only when no ray met an occupied cell
            total.backward()
            self.optimizer.step()
        stats = {
            "loss": value,
            **info,
            "opacity": float(opacity.detach().mean()),
            "orientation": float(out["orientation"].detach()),
            "samples_per_ray": float(out.get("samples", torch.tensor(0))) / max(opacity.numel(), 1),
            "occupied": self.occupancy.fraction,
        }
        return stats

    # -- previews, fitting, the mesh

    @torch.no_grad()
    def render_view(
        self, azimuth: float, elevation: float, size: int, radius: float | None = None, fov: float | None = None
    ) -> np.ndarray:
        """One albedo view over white, (size, size, 3) float32 in [0, 1]."""
        mid_radius, mid_fov = self.config.cameras.mid()
        cameras = orbit_cameras(azimuth, elevation, radius or mid_radius, fov or mid_fov)
        out, _ = self.render(cameras, size, Shading("albedo"), jitter=False)
        rgb = out["rgb"] + (1.0 - out["opacity"])
        return rgb[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy()

    def preview(self) -> np.ndarray:
        """A three-quarter front view for the progress panel, (H, W, 3) uint8."""
        return (self.render_view(30.0, 15.0, self.config.preview_size) * 255).round().astype(np.uint8)

    def turntable(self, frames: int = 12, size: int | None = None, elevation: float = 15.0) -> np.ndarray:
        """Albedo views all around at one elevation, (T, H, W, 3) uint8."""
        size = size or self.config.preview_size
        views = [self.render_view(360.0 * i / frames, elevation, size) for i in range(frames)]
        return (np.stack(views) * 255).round().astype(np.uint8)

    def fit(
        self, budget: Budget, report_every: float | None = None, preview_every: float | None = None
    ) -> Generator[TrainEvent, None, int]:
        """Optimise until the budget is spent; yields TrainEvents (see :func:`methods.nerf.train.train_loop`)."""
        self.field.train()
        steps = yield from train_loop(
            self.step,
            budget,
            report_every=REPORT_SECONDS if report_every is None else report_every,
            preview_every=PREVIEW_SECONDS if preview_every is None else preview_every,
            preview_fn=self.preview,
        )
        self.update_occupancy()
        self.field.eval()
        return steps

    def extract(self, options: MeshOptions) -> dict:
        """Marching cubes over the occupied box, decimation, vertex colours (albedo) from the field."""
        box = self.occupancy.bbox.cpu().numpy().astype(np.float64)
        if not (box[1] > box[0]).all():
            box = np.array([[-1.0] * 3, [1.0] * 3]) * self.config.bound
        return extract_mesh(self.field, box, options, self.device)

    def close(self) -> None:
        """Free the field, the optimiser state and the guidance's per-run tensors (and the CUDA cache)."""
        guidance = getattr(self, "guidance", None)
        if guidance is not None:
            guidance.close()
        for name in ("field", "optimizer", "occupancy", "background_net", "bound_mask", "guidance"):
            setattr(self, name, None)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


__all__ = [
    "BACKGROUNDS",
    "BackgroundNet",
    "FieldOptimizer",
    "Guidance",
    "LoopConfig",
    "RenderBatch",
    "blob_raw",
]
