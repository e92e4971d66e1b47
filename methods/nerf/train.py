"""Training: a budgeted, cancellable, streaming loop, and the photometric fit of a field to posed images.

:func:`train_loop` knows nothing about NeRF: it calls ``step_fn(step, progress)`` until a time
or step budget is spent and yields a :class:`TrainEvent` every few seconds (with a preview
render). DreamFusion / Dream Fields reuse it with their own step (an SDS or CLIP loss).
:class:`SceneFitter` is the NeRF step: random rays from the training views, MSE to their colours.

Cancelling: closing the generator (the runner does on a cancelled job) stops after the current
step; ``SceneFitter.close()`` then frees the tensors (and the CUDA cache).
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from methods.nerf import BACKGROUNDS
from methods.nerf.cameras import RayTable, SceneFrame, mean_up, rotation_between
from methods.nerf.field import FieldConfig, RadianceField
from methods.nerf.io import Scene
from methods.nerf.occupancy import OccupancyGrid
from methods.nerf.render import RenderOptions, render_rays, render_view

# ----------------------------------------------------------------------------- the generic loop


@dataclass
class Budget:
    """Stop at ``seconds`` of wall time or ``steps`` steps, whichever comes first."""

    seconds: float
    steps: int
    clock: Callable[[], float] = time.perf_counter  # time.process_time measures CPU time (benchmarks)
    started: float = -1.0

    def __post_init__(self) -> None:
        if self.started < 0:
            self.started = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def progress(self, step: int) -> float:
        """0 -> 1 over the budget; schedules (learning rate, grid growth) follow it."""
        by_time = self.elapsed() / self.seconds if self.seconds > 0 else 0.0
        return min(1.0, max(by_time, step / max(self.steps, 1)))

    def spent(self, step: int) -> bool:
        return step >= self.steps or (self.seconds > 0 and self.elapsed() >= self.seconds)


@dataclass
class TrainEvent:
    step: int
    seconds: float
    fraction: float
    stats: dict[str, float]
    preview: np.ndarray | None = None  # (H, W, 3) uint8
    done: bool = False


def train_loop(
    step_fn: Callable[[int, float], dict[str, float]],
    budget: Budget,
    *,
    report_every: float = 3.0,
    preview_every: float = 6.0,
    preview_fn: Callable[[], np.ndarray] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Generator[TrainEvent, None, int]:
    """Run ``step_fn`` until the budget is spent (or ``should_stop()``); yield events; return the step count."""
    step = 0
    last_report = last_preview = time.perf_counter()
    stats: dict[str, float] = {}
    while not budget.spent(step) and not (should_stop and should_stop()):
        stats = step_fn(step, budget.progress(step))
        step += 1
        now = time.perf_counter()
        if now - last_report >= report_every:
            preview = None
            if preview_fn is not None and now - last_preview >= preview_every:
                preview = preview_fn()
                last_preview = time.perf_counter()
            last_report = time.perf_counter()
            yield TrainEvent(step, budget.elapsed(), budget.progress(step), stats, preview)
    yield TrainEvent(step, budget.elapsed(), 1.0, stats, preview_fn() if preview_fn else None, done=True)
    return step


# ----------------------------------------------------------------------------- the NeRF fit


@dataclass
class FitConfig:
    budget_seconds: float = 60.0
    steps: int = 20000
    batch_rays: int = 256  # small batches, many steps: the fastest way down on a CPU
    resolution: int = 128
    start_resolution: int = 64
    grow_at: float = 0.15  # fraction of the budget at which the density grid reaches ``resolution``
    encoding: str = "planes"
    hash_log2_size: int = 17
    step_ratio: float = 1.0  # sample spacing in density voxels
    background: str = "auto"
    lr_grid: float = 0.3
    lr_features: float = 0.02
    lr_net: float = 3e-3
    lr_final: float = 0.1  # learning rates decay exponentially to this fraction
    occupancy_every: int = 16
    occupancy_alpha: float = 1e-3
    tv_weight: float = 1e-4  # total variation of the raw density (on a random block each step)
    visual_hull: bool = True  # carve the occupancy from alpha masks when the images have them
    alpha_init: float = 0.01
    color_threshold: float = 1e-3
    plane_resolutions: tuple[int, ...] = (32, 64, 128)
    plane_channels: int = 8
    hidden: int = 32
    seed: int = 0

    def field_config(self) -> FieldConfig:
        return FieldConfig(
            resolution=self.resolution,
            start_resolution=min(self.start_resolution, self.resolution),
            encoding=self.encoding,
            hash_log2_size=self.hash_log2_size,
            alpha_init=self.alpha_init,
            plane_resolutions=self.plane_resolutions,
            plane_channels=self.plane_channels,
            hidden=self.hidden,
        )


def psnr(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> float:
    """Peak signal-to-noise ratio (dB) of images in [0, 1] (a training diagnostic; the protocol scores runs)."""
    mse = float(
        ((torch.as_tensor(pred, dtype=torch.float64) - torch.as_tensor(target, dtype=torch.float64)) ** 2).mean()
    )
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def scene_frame(scene: Scene, align_up: bool = False) -> tuple[SceneFrame, str]:
    """The similarity that puts the scene's region of interest in [-1, 1]^3, and the up axis of that frame.

    Region: the known bounds, else the sparse points near the cameras' focus, else a sphere around
    the focus of the cameras. Up: kept when the cameras' mean up is within 30 degrees of +Y or +Z
    and ``align_up`` is false; otherwise the scene is turned so that up is +Y.
    """
    from methods.nerf.cameras import focus_point

    c2w = scene.cameras.c2w[scene.train]
    up = mean_up(c2w)
    rotation, up_axis = np.eye(3), "+Y"
    if not align_up and abs(up[2]) >= math.cos(math.radians(30)) and up[2] > 0:
        up_axis = "+Z"
    elif align_up or up[1] < math.cos(math.radians(30)):
        rotation = rotation_between(up, np.array([0.0, 1.0, 0.0]))
    focus = focus_point(c2w)
    distance = float(np.median(np.linalg.norm(c2w[:, :3, 3] - focus, axis=1)))
    if scene.bounds is not None:
        lo, hi = scene.bounds @ rotation.T
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    elif scene.points is not None and len(scene.points) >= 20:
        pts = scene.points[np.linalg.norm(scene.points - focus, axis=1) < distance]
        if len(pts) < 20:
            pts = scene.points
        pts = pts @ rotation.T
        lo, hi = np.percentile(pts, 2, axis=0), np.percentile(pts, 98, axis=0)
        pad = 0.1 * (hi - lo).max()
        lo, hi = lo - pad, hi + pad
    else:
        centre = rotation @ focus
        lo, hi = centre - 0.5 * distance, centre + 0.5 * distance
    centre_rot = (lo + hi) / 2
    half = float((hi - lo).max() / 2)
    return SceneFrame(centre=rotation.T @ centre_rot, scale=1.0 / max(half, 1e-9), rotation=rotation), up_axis


@torch.no_grad()
def visual_hull(scene: Scene, frame: SceneFrame, resolution: int = 64, device: str = "cpu") -> torch.Tensor:
    """Cells [x, y, z] of the field cube that every masked view sees as foreground (or does not see)."""
    g = resolution
    axis = (torch.arange(g, dtype=torch.float64) + 0.5) * (2.0 / g) - 1.0
    cells = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).view(-1, 3).numpy()
    world = frame.to_world(cells)
    keep = np.ones(len(world), bool)
    cell_world = 2.0 / g / frame.scale
    cams = scene.cameras
    for i in scene.train:
        alpha = scene.images[i, ..., 3].astype(np.float32) / 255.0
        w2c = np.linalg.inv(cams.c2w[i])
        p = world @ w2c[:3, :3].T + w2c[:3, 3]
        z = -p[:, 2]
        front = z > 1e-6
        u = cams.K[i, 0, 0] * p[:, 0] / np.where(front, z, 1) + cams.K[i, 0, 2]
        v = -cams.K[i, 1, 1] * p[:, 1] / np.where(front, z, 1) + cams.K[i, 1, 2]
        inside = front & (u >= 0) & (u < cams.width) & (v >= 0) & (v < cams.height)
        if not inside.any():
            continue
        # a cell covers up to this many pixels: dilate the mask by it so that carving stays conservative
        radius = int(math.ceil(cams.K[i, 0, 0] * cell_world * 0.87 / max(z[inside].min(), 1e-6))) + 1
        fg = torch.from_numpy(alpha > 0.02)[None, None].float()
        fg = F.max_pool2d(fg, 2 * radius + 1, stride=1, padding=radius)[0, 0].numpy() > 0
        ui, vi = u[inside].astype(int), v[inside].astype(int)
        seen_empty = ~fg[vi, ui]
        idx = np.flatnonzero(inside)
        keep[idx[seen_empty]] = False
    return torch.from_numpy(keep.reshape(g, g, g)).to(device)


class SceneFitter:
    """A radiance field fitted to a :class:`Scene`'s training views by photometric MSE."""

    def __init__(self, scene: Scene, config: FitConfig, device: str = "cpu", frame: SceneFrame | None = None):
        self.scene, self.config, self.device = scene, config, device
        if config.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {config.background!r}")
        torch.manual_seed(config.seed)
        self.generator = torch.Generator(device=device).manual_seed(config.seed)
        self.frame, self.up_axis = (frame, "+Y") if frame is not None else scene_frame(scene, scene.source == "sfm")
        self.cameras = scene.cameras.transformed(self.frame)
        self.rays = RayTable(self.cameras, device)
        self.background_mode = config.background
        if self.background_mode == "auto":
            self.background_mode = "random" if scene.has_alpha else "learned"
        self.field = RadianceField(config.field_config()).to(device)
        self.bg_param = torch.nn.Parameter(torch.zeros(3, device=device)) if self.background_mode == "learned" else None
        self.occupancy = OccupancyGrid(self.field.density_grid.resolution - 1, device)
        self.hull = None
        if config.visual_hull and scene.has_alpha and scene.cameras.distortion is None:  # pinhole projection
            self.hull = visual_hull(scene, self.frame, 64, device)
            self.occupancy.intersect(self.hull)
        self.optimizer = self._make_optimizer()
        train = torch.as_tensor(scene.train, device=device)
        self.train_index = train
        self.images = torch.as_tensor(scene.images, device=device)  # uint8, all frames; train ones are sampled
        self.grown = self.field.density_grid.resolution >= config.resolution

    # -- pieces

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        groups = self.field.param_groups(c.lr_grid, c.lr_features, c.lr_net)
        if self.bg_param is not None:
            groups.append({"params": [self.bg_param], "lr": c.lr_net, "name": "background"})
        for g in groups:
            g["initial_lr"] = g["lr"]
        fused = {"fused": True} if self.device == "cpu" or str(self.device).startswith("cuda") else {}
        return torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15, **fused)

    def render_options(self) -> RenderOptions:
        return RenderOptions(
            step=self.field.density_grid.voxel * self.config.step_ratio, color_threshold=self.config.color_threshold
        )

    def eval_background(self) -> torch.Tensor:
        if self.background_mode == "learned":
            return torch.sigmoid(self.bg_param.detach())
        if self.background_mode == "black":
            return torch.zeros(3, device=self.device)
        return torch.ones(3, device=self.device)

    def target_colors(self, index: torch.Tensor | int, background: torch.Tensor, pixels: Any = None) -> torch.Tensor:
        """Ground-truth colours composited over ``background`` (images with alpha), float in [0, 1]."""
        px = self.images[index] if pixels is None else pixels
        rgb = px[..., :3].float() / 255.0
        if px.shape[-1] == 4:
            a = px[..., 3:].float() / 255.0
            rgb = rgb * a + background * (1.0 - a)
        return rgb

    def update_occupancy(self) -> None:
        grid = self.field.density_grid
        self.occupancy.set_from_density(
            grid.cell_max(), grid.voxel * self.config.step_ratio, self.config.occupancy_alpha
        )
        if self.hull is not None:
            self.occupancy.intersect(self.hull)

    def grow(self) -> None:
        self.field.density_grid.upsample(self.config.resolution)
        self.optimizer = self._make_optimizer()  # Adam moments of the old grid do not fit the new one
        self.occupancy = OccupancyGrid(self.config.resolution - 1, self.device)
        self.update_occupancy()
        self.grown = True

    # -- one step

    def step(self, step: int, progress: float) -> dict[str, float]:
        c = self.config
        if not self.grown and progress >= c.grow_at:
            self.grow()
        decay = c.lr_final**progress
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * decay
        if step % c.occupancy_every == 0:
            self.update_occupancy()
        B = c.batch_rays
        g = self.generator
        pick = self.train_index[torch.randint(len(self.train_index), (B,), device=self.device, generator=g)]
        u = torch.randint(self.scene.width, (B,), device=self.device, generator=g)
        v = torch.randint(self.scene.height, (B,), device=self.device, generator=g)
        origins, dirs = self.rays.rays(pick, u, v)
        if self.background_mode == "random":
            bg = torch.rand(B, 3, device=self.device, generator=g)
        elif self.background_mode == "learned":
            bg = torch.sigmoid(self.bg_param)
        else:
            bg = self.eval_background()
        target = self.target_colors(None, bg.detach(), self.images[pick, v, u])
        out = render_rays(self.field, self.occupancy, origins, dirs, bg, self.render_options(), jitter=True)
        loss = F.mse_loss(out["rgb"], target)
        total = loss
        if c.tv_weight > 0:
            total = total + c.tv_weight * self.field.density_grid.total_variation(sample=32)
        self.optimizer.zero_grad(set_to_none=True)
        if total.requires_grad:  # False only when no ray met an occupied cell
            total.backward()
            self.optimizer.step()
        mse = float(loss.detach())
        return {
            "loss": mse,
            "psnr": -10.0 * math.log10(max(mse, 1e-10)),
            "samples_per_ray": float(out["samples"]) / B,
            "colored_per_ray": float(out["colored"]) / B,
            "occupied": self.occupancy.fraction,
        }

    # -- rendering

    @torch.no_grad()
    def render(self, index: int, stride: int = 1) -> np.ndarray:
        """View ``index`` of the scene rendered over the evaluation background, (H, W, 3) float32."""
        return render_view(
            self.field, self.occupancy, self.rays, index, self.eval_background(), self.render_options(), stride
        )

    def ground_truth(self, index: int) -> np.ndarray:
        return self.target_colors(index, self.eval_background()).cpu().numpy()

    def preview(self, index: int | None = None, max_side: int = 96) -> np.ndarray:
        index = int(self.scene.test[0] if len(self.scene.test) else self.scene.train[0]) if index is None else index
        stride = max(1, math.ceil(max(self.scene.width, self.scene.height) / max_side))
        return (self.render(index, stride) * 255).round().astype(np.uint8)

    def fit(self, budget: Budget, report_every: float = 3.0, preview_every: float = 6.0):
        """Train until the budget is spent; yields TrainEvents (see :func:`train_loop`)."""
        self.field.train()
        steps = yield from train_loop(
            self.step, budget, report_every=report_every, preview_every=preview_every, preview_fn=self.preview
        )
        self.update_occupancy()
        self.field.eval()
        return steps

    def close(self) -> None:
        """Free the field, optimiser and data (and the CUDA cache)."""
        for name in ("field", "optimizer", "images", "occupancy", "rays", "hull", "bg_param"):
            if hasattr(self, name):
                setattr(self, name, None)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
