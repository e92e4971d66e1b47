"""Fitting Gaussian splats to posed images (Kerbl et al. 2023, section 5 and 6).

Initialisation: the scene's sparse points (structure from motion, or triangulated from the known
poses), else the visual hull of the alpha masks, else random in the scene cube with small splats;
initial sizes from the neighbour distances, capped relative to the scene. Backgrounds follow the
data: white behind alpha-masked views, the frames' own backdrop colour (their border) otherwise.
The cost of a step is bounded: the rasteriser caps the pairs per pixel and the footprint, and a
step renders a crop of the view whose size keeps the pairs near ``pairs_per_step`` (the whole view
while the splats are few and small). Adam with the paper's per-parameter learning rates
and the exponential position-lr decay; loss 0.8 L1 + 0.2 D-SSIM; adaptive density control (clone
small / split large Gaussians whose view-space positional gradient is large, prune transparent and
huge ones, reset opacity periodically); the SH degree rises every 1,000 steps.

The loop is :func:`methods.nerf.train.train_loop` (a time or step budget, events with previews,
cancellation by closing the generator); :meth:`SplatFitter.close` frees the tensors.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import binary_erosion

from methods.base import Gaussians, MethodError
from methods.nerf.cameras import SceneFrame
from methods.nerf.io import Scene
from methods.nerf.train import Budget, scene_frame, train_loop, visual_hull
from methods.splats.raster import opengl_to_viewmat, rasterize, rasterize_gsplat, resolve_backend
from methods.splats.sh import rgb_to_sh0, sh_coeffs

BACKGROUNDS = ("auto", "white", "black", "random", "border")
BORDER_PX = 3  # the frames' outer ring of pixels tells their backdrop
UNIFORM_BACKDROP = 0.06  # a backdrop whose border pixels stay this close to their median colour is uniform
MIN_CROP = 48  # px: the smallest side of a training crop
INITS = ("auto", "sfm", "hull", "random")


EMPTY_OPACITY = 0.05  # a trained scene whose most opaque splat is fainter than this holds nothing


class AllPruned(MethodError, RuntimeError):
    """Density control removed every Gaussian: nothing in the views could be explained by splats."""


@dataclass
class SplatConfig:
    budget_seconds: float = 60.0
    steps: int = 30000
    sh_degree: int = 3
    sh_every: int = 1000  # the active SH degree rises by one every this many steps
    views_per_step: int = 1
    init: str = "auto"
    init_points: int = 3000
    init_opacity: float = 0.1
    background: str = "auto"
    backend: str = "auto"
    # the work of a step: crops keep the (pixel, splat) pairs near this many (0: whole views, as on a GPU);
    # the rasteriser's caps bound it whatever the splats look like
    pairs_per_step: int = 120000
    pairs_per_pixel: int = 256  # box pixels per pixel of a tile (the ellipses inside cover about half of it)
    init_scale_cap: float = 0.03  # initial splat size at most this fraction of the scene extent
    # learning rates: "paper" (Kerbl et al.'s, for ~30k steps), or "short" for CPU budgets of ~1-2k steps:
    # the same per-parameter rates with positions x10, scales x2 and base colour x4 (measured on lego and the
    # test cube: +3 to +5 dB at 60 s over the paper's rates). Positions are scaled by the scene extent and
    # decay log-linearly to 1/100 over the budget in both.
    lr_preset: str = "paper"
    lr_means: float = 1.6e-4
    lr_means_final: float = 1.6e-6
    lr_sh0: float = 2.5e-3
    lr_shrest: float = 2.5e-3 / 20
    lr_opacity: float = 0.05
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    ssim_weight: float = 0.2
    # adaptive density control
    densify_from: int = 100
    densify_every: int = 100
    densify_until: float = 0.5  # fraction of the budget (time or steps) after which the count is frozen
    grad_threshold: float = 2e-4  # mean view-space positional gradient (NDC units) that triggers clone/split
    percent_dense: float = 0.01  # Gaussians larger than this fraction of the scene extent are split, not cloned
    prune_opacity: float = 0.005
    prune_size: float = 0.1  # world size (fraction of the extent) above which a Gaussian is pruned
    opacity_reset_every: int = 3000
    max_gaussians: int = 300000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.lr_preset not in LR_PRESETS:
            raise ValueError(f"lr_preset must be one of {LR_PRESETS}, got {self.lr_preset!r}")
        if self.lr_preset == "short":
            self.lr_means, self.lr_means_final = self.lr_means * 10, self.lr_means_final * 10
            self.lr_scales, self.lr_sh0 = self.lr_scales * 2, self.lr_sh0 * 4
            self.lr_preset = "short (applied)"  # idempotent when the config is copied


LR_PRESETS = ("paper", "short", "short (applied)")


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of image batches (C, H, W, 3) in [0, 1] with a Gaussian window (Wang et al. 2004)."""
    x = torch.arange(window, dtype=a.dtype, device=a.device) - window // 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(3, 1, window, window)
    a, b = a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, padding=window // 2, groups=3)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2))
    return s.mean()


def _knn_scale(points: np.ndarray, cap: float) -> np.ndarray:
    """Initial size: the mean distance to the 3 nearest neighbours (as the paper), floored, and capped at
    ``cap`` and at 4x the median (an isolated point must not start as a splat that covers the views)."""
    from scipy.spatial import cKDTree

    if len(points) < 4:
        return np.full(len(points), min(0.05, cap))
    d, _ = cKDTree(points).query(points, k=4)
    d = d[:, 1:].mean(1)
    return np.clip(d, 1e-4, min(cap, 4.0 * float(np.median(d))))


def border_background(images: np.ndarray) -> tuple[np.ndarray, bool]:
    """The median colour of the frames' outer ring of pixels, and whether that ring is one uniform backdrop
    (a turntable's grey) rather than the surroundings of a real capture. ``images`` (N, H, W, 3) uint8."""
    b = BORDER_PX
    ring = np.concatenate(
        [images[:, :b].reshape(-1, 3), images[:, -b:].reshape(-1, 3)]
        + [images[:, b:-b, :b].reshape(-1, 3), images[:, b:-b, -b:].reshape(-1, 3)]
    ).astype(np.float32)
    ring = ring[:: max(1, len(ring) // 200000)] / 255.0
    colour = np.median(ring, axis=0)
    spread = float(np.quantile(np.abs(ring - colour).max(1), 0.9))
    return colour.astype(np.float32), spread < UNIFORM_BACKDROP


def undistort_scene(scene: Scene) -> Scene:
    """The scene's frames resampled (bilinear) to pinhole cameras with the same intrinsics."""
    import dataclasses

    from scipy.ndimage import map_coordinates

    from methods.nerf.cameras import Cameras, distort_points

    cams = scene.cameras
    h, w = scene.height, scene.width
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty_like(scene.images)
    for i in range(len(scene.images)):
        K = cams.K[i]
        x, y = (u + 0.5 - K[0, 2]) / K[0, 0], (v + 0.5 - K[1, 2]) / K[1, 1]
        xd, yd = distort_points(x, y, cams.distortion[i], cams.model)
        src = [yd * K[1, 1] + K[1, 2] - 0.5, xd * K[0, 0] + K[0, 2] - 0.5]
        for ch in range(scene.images.shape[-1]):
            plane = scene.images[i, ..., ch].astype(np.float32)
            out[i, ..., ch] = np.clip(map_coordinates(plane, src, order=1, mode="nearest") + 0.5, 0, 255)
    pinhole = Cameras(cams.c2w, cams.K, cams.width, cams.height)
    return dataclasses.replace(scene, images=out, cameras=pinhole)


class SplatFitter:
    """Gaussian splats fitted to a :class:`Scene`'s training views, in the scene's field frame ([-1, 1]^3)."""

    PARAMS = ("means", "log_scales", "quats", "opacity_logits", "sh0", "shrest")

    def __init__(self, scene: Scene, config: SplatConfig, device: str = "cpu", frame: SceneFrame | None = None):
        if config.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {config.background!r}")
        if config.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {config.init!r}")
        self.scene, self.config, self.device = scene, config, device
        self.backend = resolve_backend(config.backend, device)
        torch.manual_seed(config.seed)
        self.generator = torch.Generator(device="cpu").manual_seed(config.seed)
        self.frame, self.up_axis = (frame, "+Y") if frame is not None else scene_frame(scene, scene.source == "sfm")
        self.notes: list[str] = []
        if scene.cameras.distortion is not None:  # the rasteriser is pinhole: resample the frames to pinhole
            scene = undistort_scene(scene)
            self.scene = scene
            self.notes.append("frames resampled to pinhole cameras (the estimated lens distortion removed)")
        self.cameras = scene.cameras.transformed(self.frame)
        self.viewmats = opengl_to_viewmat(self.cameras.c2w).to(device=device, dtype=torch.float32)
        self.Ks = torch.as_tensor(self.cameras.K, dtype=torch.float32, device=device)
        centres = self.cameras.centers()[scene.train]
        self.extent = 1.1 * float(np.linalg.norm(centres - centres.mean(0), axis=1).max()) or 1.0
        mode = config.background
        self.border_colour, uniform = border_background(scene.images[self.train_index_of(scene), ..., :3])
        if mode == "auto":
            mode = "white" if scene.has_alpha else "border"
        self.background_mode = mode
        if mode == "border":
            rgb = ", ".join(f"{x:.2f}" for x in self.border_colour)
            self.notes.append(
                f"background: the frames' uniform backdrop ({rgb})"
                if uniform
                else f"no backdrop (the frames' borders vary): the splats model the surroundings ({rgb} behind them)"
            )
        self.images = torch.as_tensor(scene.images, device=device)
        self.train_index = np.asarray(scene.train)
        self.init_source, points = self._init_points()
        self.params = self._init_params(points)
        self.optimizer = self._make_optimizer()
        self.active_degree = 0
        n = len(points)
        self.grad_accum = torch.zeros(n, device=device)
        self.grad_count = torch.zeros(n, device=device)
        self.history: list[tuple[int, int]] = []  # (step, count) after each density change
        self.last_step = 0
        self.step_times: list[float] = []  # perf_counter at the end of each step: steps/s in the notes
        self.crop_side = max(scene.width, scene.height)
        self.pairs_per_pixel_seen = 0.0  # running mean of the last steps' pairs per rendered pixel

    @staticmethod
    def train_index_of(scene: Scene) -> np.ndarray:
        return np.asarray(scene.train if len(scene.train) else np.arange(len(scene.images)))

    # -- initialisation

    def _init_points(self) -> tuple[str, np.ndarray]:
        c = self.config
        rng = np.random.default_rng(c.seed)
        choice = c.init
        if choice in ("auto", "sfm") and self.scene.points is not None and len(self.scene.points) >= 10:
            pts = self.frame.apply_to_points(self.scene.points)
            pts = pts[np.all(np.abs(pts) <= 1.5, axis=1)]
            if len(pts) >= 10:
                return self.scene.points_source, pts
        if choice in ("auto", "hull", "sfm") and self.scene.has_alpha and choice != "random":
            hull = visual_hull(self.scene, self.frame, 64, "cpu").numpy()
            if 0 < hull.sum() < hull.size:
                # the hull's shell only: splats inside an opaque object are never seen
                inner = binary_erosion(hull, iterations=2)
                cells = np.argwhere(hull & ~inner)
                pick = rng.choice(len(cells), size=c.init_points, replace=len(cells) < c.init_points)
                centre = (cells[pick] + rng.uniform(0, 1, (len(pick), 3))) * (2.0 / 64) - 1.0
                return "visual hull", centre
        return "random", rng.uniform(-1, 1, (c.init_points, 3))

    def _init_params(self, points: np.ndarray) -> dict[str, torch.Tensor]:
        c = self.config
        n = len(points)
        dev = self.device
        colors = self._project_colors(points)
        scale = _knn_scale(points, c.init_scale_cap * self.extent)
        if self.init_source == "random":  # points in empty space: small, so that they start out of the way
            scale = scale * 0.25
        params = {
            "means": torch.as_tensor(points, dtype=torch.float32),
            "log_scales": torch.log(torch.as_tensor(scale, dtype=torch.float32))[:, None].repeat(1, 3),
            "quats": torch.tensor([1.0, 0, 0, 0]).repeat(n, 1),
            "opacity_logits": torch.full((n,), math.log(c.init_opacity / (1 - c.init_opacity))),
            "sh0": rgb_to_sh0(torch.as_tensor(colors, dtype=torch.float32))[:, None, :],
            "shrest": torch.zeros(n, sh_coeffs(c.sh_degree) - 1, 3),
        }
        return {k: v.to(dev).requires_grad_(True) for k, v in params.items()}

    def _project_colors(self, points: np.ndarray) -> np.ndarray:
        """Mean colour of each point over the training views that see it inside the image (occlusion ignored)."""
        total = np.zeros((len(points), 3))
        count = np.zeros(len(points))
        cams = self.cameras
        for i in self.train_index[:: max(1, len(self.train_index) // 12)]:
            w2c = np.linalg.inv(cams.c2w[i])
            p = points @ w2c[:3, :3].T + w2c[:3, 3]
            z = -p[:, 2]
            ok = z > 1e-6
            u = cams.K[i, 0, 0] * p[:, 0] / np.where(ok, z, 1) + cams.K[i, 0, 2]
            v = -cams.K[i, 1, 1] * p[:, 1] / np.where(ok, z, 1) + cams.K[i, 1, 2]
            ok &= (u >= 0) & (u < cams.width) & (v >= 0) & (v < cams.height)
            px = self.scene.images[i, v[ok].astype(int), u[ok].astype(int)].astype(np.float64) / 255.0
            if px.shape[-1] == 4:
                fg = px[:, 3] > 0.5
                idx = np.flatnonzero(ok)[fg]
                total[idx] += px[fg, :3]
                count[idx] += 1
            else:
                total[ok] += px
                count[ok] += 1
        return np.where(count[:, None] > 0, total / np.maximum(count, 1)[:, None], 0.5)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        p = self.params
        groups = [
            {"params": [p["means"]], "lr": c.lr_means * self.extent, "name": "means"},
            {"params": [p["log_scales"]], "lr": c.lr_scales, "name": "log_scales"},
            {"params": [p["quats"]], "lr": c.lr_quats, "name": "quats"},
            {"params": [p["opacity_logits"]], "lr": c.lr_opacity, "name": "opacity_logits"},
            {"params": [p["sh0"]], "lr": c.lr_sh0, "name": "sh0"},
            {"params": [p["shrest"]], "lr": c.lr_shrest, "name": "shrest"},
        ]
        return torch.optim.Adam(groups, eps=1e-15)

    # -- rendering

    def __len__(self) -> int:
        return len(self.params["means"])

    def background(self, training: bool = False) -> torch.Tensor:
        if self.background_mode == "random" and training:
            return torch.rand(3, generator=self.generator).to(self.device)
        if self.background_mode == "black":
            return torch.zeros(3, device=self.device)
        if self.background_mode == "border":
            return torch.as_tensor(self.border_colour, device=self.device)
        return torch.ones(3, device=self.device)

    def eval_background(self) -> torch.Tensor:
        return self.background(training=False)

    def _render(self, index: np.ndarray | list[int], background: torch.Tensor, params=None, crop=None):
        """Views ``index``, or the window ``crop`` = (x0, y0, width, height) of them."""
        p = self.params if params is None else params
        index = torch.as_tensor(np.asarray(index), device=self.device)
        sh = torch.cat([p["sh0"], p["shrest"][:, : sh_coeffs(self.active_degree) - 1]], 1)
        Ks = self.Ks[index]
        width, height = self.scene.width, self.scene.height
        if crop is not None:
            x0, y0, width, height = crop
            Ks = Ks.clone()
            Ks[:, 0, 2] -= x0
            Ks[:, 1, 2] -= y0
        args = (p["means"], p["log_scales"], p["quats"], p["opacity_logits"], sh, self.viewmats[index], Ks)
        if self.backend == "gsplat":
            return rasterize_gsplat(*args, width, height, background, self.active_degree)
        return rasterize(
            *args, width, height, background, self.active_degree, pairs_per_pixel=self.config.pairs_per_pixel
        )

    def _crop(self) -> tuple[int, int, int, int] | None:
        """A random window whose pairs should stay near ``pairs_per_step`` (None: the whole view)."""
        c = self.config
        w, h = self.scene.width, self.scene.height
        if not c.pairs_per_step or self.backend == "gsplat":
            return None
        if self.pairs_per_pixel_seen > 0:
            side = math.sqrt(c.pairs_per_step / self.pairs_per_pixel_seen)
            self.crop_side = int(min(max(w, h), max(MIN_CROP, side)))
        cw, ch = min(w, self.crop_side), min(h, self.crop_side)
        if cw == w and ch == h:
            return None
        x0 = int(torch.randint(0, w - cw + 1, (1,), generator=self.generator))
        y0 = int(torch.randint(0, h - ch + 1, (1,), generator=self.generator))
        return x0, y0, cw, ch

    def target(self, index: np.ndarray | list[int], background: torch.Tensor, crop=None) -> torch.Tensor:
        px = self.images[torch.as_tensor(np.asarray(index), device=self.device)]
        if crop is not None:
            x0, y0, cw, ch = crop
            px = px[:, y0 : y0 + ch, x0 : x0 + cw]
        rgb = px[..., :3].float() / 255.0
        if px.shape[-1] == 4:
            a = px[..., 3:].float() / 255.0
            rgb = rgb * a + background * (1.0 - a)
        return rgb

    @torch.no_grad()
    def render(self, index: int) -> np.ndarray:
        """View ``index`` over the evaluation background, (H, W, 3) float32 in [0, 1]."""
        out = self._render([index], self.eval_background())
        return out.image[0].clamp(0, 1).float().cpu().numpy()

    def ground_truth(self, index: int) -> np.ndarray:
        return self.target([index], self.eval_background())[0].cpu().numpy()

    def preview(self, max_side: int = 96) -> np.ndarray:
        index = int(self.scene.test[0] if len(self.scene.test) else self.scene.train[0])
        return (self.render(index) * 255).round().astype(np.uint8)

    # -- one step

    def step(self, step: int, progress: float) -> dict[str, float]:
        c = self.config
        self.last_step = step
        for g in self.optimizer.param_groups:
            if g["name"] == "means":  # log-linear decay over the budget, as the paper's schedule over its steps
                g["lr"] = self.extent * math.exp(
                    (1 - progress) * math.log(c.lr_means) + progress * math.log(c.lr_means_final)
                )
        if step > 0 and step % c.sh_every == 0 and self.active_degree < c.sh_degree:
            self.active_degree += 1
        k = min(c.views_per_step, len(self.train_index))
        pick = self.train_index[torch.randperm(len(self.train_index), generator=self.generator)[:k].numpy()]
        bg = self.background(training=True)
        crop = self._crop()
        out = self._render(pick, bg, crop=crop)
        target = self.target(pick, bg, crop)
        pixels = out.image.shape[0] * out.image.shape[1] * out.image.shape[2]
        seen = max(out.pairs / pixels, 1.0)
        self.pairs_per_pixel_seen = 0.8 * self.pairs_per_pixel_seen + 0.2 * seen if self.pairs_per_pixel_seen else seen
        l1 = (out.image - target).abs().mean()
        loss = (1 - c.ssim_weight) * l1 + c.ssim_weight * (1 - ssim(out.image, target))
        self.optimizer.zero_grad(set_to_none=True)
        if loss.requires_grad:
            loss.backward()
            self._accumulate(out, k)
            self.optimizer.step()
        with torch.no_grad():
            mse = float(((out.image.detach() - target) ** 2).mean())
        if progress <= c.densify_until and step >= c.densify_from:
            if step % c.densify_every == 0:
                self.densify_and_prune(step)
            if c.opacity_reset_every and step % c.opacity_reset_every == 0:
                self.reset_opacity()
        self.step_times.append(time.perf_counter())
        return {
            "loss": float(loss.detach()),
            "psnr": -10.0 * math.log10(max(mse, 1e-10)),
            "gaussians": float(len(self)),
            "pairs": float(out.pairs),
            "dropped": float(out.dropped),
            "crop": float(out.image.shape[2]),
            "sh_degree": float(self.active_degree),
        }

    def steps_per_second(self, first: bool, count: int = 100) -> float:
        """Steps per second over the first (or last) ``count`` steps of the run (0 if there were none)."""
        t = self.step_times[: count + 1] if first else self.step_times[-(count + 1) :]
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def _accumulate(self, out, views: int) -> None:
        """Sum the view-space positional gradient (NDC units, as the paper's threshold) of visible Gaussians."""
        grad = out.means2d.grad
        if grad is None:
            return
        scale = torch.tensor([self.scene.width / 2, self.scene.height / 2], device=grad.device) * views
        norm = (grad.detach() * scale).norm(dim=-1)  # (C, N)
        vis = out.visible
        self.grad_accum += torch.where(vis, norm, torch.zeros_like(norm)).sum(0).to(self.grad_accum)
        self.grad_count += vis.sum(0).to(self.grad_count)

    # -- adaptive density control

    @torch.no_grad()
    def densify_and_prune(self, step: int) -> None:
        c = self.config
        p = self.params
        n = len(self)
        mean_grad = self.grad_accum / self.grad_count.clamp_min(1)
        big = mean_grad >= c.grad_threshold
        max_scale = torch.exp(p["log_scales"]).max(1).values
        large = max_scale > c.percent_dense * self.extent
        room = max(0, c.max_gaussians - n)
        clone = big & ~large
        split = big & large
        # bound the count: keep the largest gradients when clones + splits would exceed max_gaussians
        if int(clone.sum() + split.sum()) > room:
            cand = torch.nonzero(big).squeeze(1)
            keep = cand[torch.argsort(mean_grad[cand], descending=True)[:room]]
            chosen = torch.zeros_like(big)
            chosen[keep] = True
            clone, split = clone & chosen, split & chosen
        new = {k: [v.detach()] for k, v in p.items()}
        src = [torch.arange(n, device=self.device)]
        if clone.any():
            for k in new:
                new[k].append(p[k].detach()[clone])
            src.append(torch.full((int(clone.sum()),), -1, device=self.device))
        if split.any():
            idx = torch.nonzero(split).squeeze(1)
            scales = torch.exp(p["log_scales"][idx])
            rot = _rotmat(p["quats"][idx])
            for _ in range(2):
                offset = torch.randn(len(idx), 3, generator=self.generator).to(self.device) * scales
                new["means"].append(p["means"][idx] + (rot @ offset[..., None])[..., 0])
                new["log_scales"].append(torch.log(scales / 1.6))
                for k in ("quats", "opacity_logits", "sh0", "shrest"):
                    new[k].append(p[k][idx])
                src.append(torch.full((len(idx),), -1, device=self.device))
        cat = {k: torch.cat(v) for k, v in new.items()}
        source = torch.cat(src)
        total = len(source)
        remove = torch.zeros(total, dtype=torch.bool, device=self.device)
        remove[:n] = split  # split originals are replaced by their two halves
        opacity = torch.sigmoid(cat["opacity_logits"])
        remove |= opacity < c.prune_opacity
        if step > c.opacity_reset_every:  # huge ones only once they had the chance to shrink (as the paper)
            remove |= torch.exp(cat["log_scales"]).max(1).values > c.prune_size * self.extent
        keep = ~remove
        if not keep.any():
            raise AllPruned(
                f"every Gaussian was pruned at step {step} (all became transparent): the views show nothing "
                "that splats could explain; check that the frames show the object and that the poses are right"
            )
        self._replace({k: v[keep] for k, v in cat.items()}, source[keep])
        self.history.append((step, len(self)))

    @torch.no_grad()
    def reset_opacity(self) -> None:
        """Clamp opacities to at most 0.01 (the paper's periodic reset) and clear their Adam moments."""
        cap = math.log(0.01 / 0.99)
        p = self.params["opacity_logits"]
        p.clamp_(max=cap)
        state = self.optimizer.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key].zero_()

    def _replace(self, params: dict[str, torch.Tensor], source: torch.Tensor) -> None:
        """New parameter tensors; Adam moments follow the Gaussians they came from, zero for new ones."""
        old_state = {g["name"]: self.optimizer.state.get(g["params"][0], {}) for g in self.optimizer.param_groups}
        lrs = {g["name"]: g["lr"] for g in self.optimizer.param_groups}
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        self.optimizer = self._make_optimizer()
        has = source >= 0
        for g in self.optimizer.param_groups:
            g["lr"] = lrs[g["name"]]
            st = old_state.get(g["name"]) or {}
            if "exp_avg" not in st:
                continue
            param = g["params"][0]
            new_state = {"step": st["step"].clone()}
            for key in ("exp_avg", "exp_avg_sq"):
                buf = torch.zeros_like(param)
                buf[has] = st[key][source[has]]
                new_state[key] = buf
            self.optimizer.state[param] = new_state
        n = len(source)
        self.grad_accum = torch.zeros(n, device=self.device)
        self.grad_count = torch.zeros(n, device=self.device)

    # -- the run

    def fit(self, budget: Budget, report_every: float = 3.0, preview_every: float = 6.0):
        """Train until the budget is spent; yields TrainEvents (see :func:`methods.nerf.train.train_loop`)."""
        steps = yield from train_loop(
            self.step, budget, report_every=report_every, preview_every=preview_every, preview_fn=self.preview
        )
        self.final_prune()
        return steps

    @torch.no_grad()
    def final_prune(self) -> None:
        opacity = torch.sigmoid(self.params["opacity_logits"])
        keep = opacity >= self.config.prune_opacity
        # nearly transparent everywhere (the views showed nothing splats could explain): as good as all pruned
        if not keep.any() or float(opacity.max()) < EMPTY_OPACITY:
            raise AllPruned(
                "after training every Gaussian is transparent: the views show nothing that splats could "
                "explain; check that the frames show the object and that the poses are right"
            )
        if not keep.all():
            self._replace({k: v[keep] for k, v in self.params.items()}, torch.nonzero(keep).squeeze(1))

    def gaussians(self, world: bool = True) -> Gaussians:
        """The splats as an asset part, in the input's world frame turned so that up is +Y or +Z (as ``nerf``)."""
        p = {k: v.detach().float().cpu().numpy() for k, v in self.params.items()}
        sh = np.concatenate([p["sh0"], p["shrest"][:, : sh_coeffs(self.active_degree) - 1]], 1)
        means, log_scales = p["means"], p["log_scales"]
        if world:
            f = self.frame
            means = means.astype(np.float64) / f.scale + f.rotation @ f.centre
            log_scales = log_scales - np.float32(math.log(f.scale))
        return Gaussians(means, log_scales, p["quats"], p["opacity_logits"], sh)

    def close(self) -> None:
        """Free the parameters, optimiser and images (and the CUDA cache)."""
        for name in ("params", "optimizer", "images", "grad_accum", "grad_count", "viewmats", "Ks"):
            if hasattr(self, name):
                setattr(self, name, None)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _rotmat(q: torch.Tensor) -> torch.Tensor:
    from methods.splats.raster import quat_to_rotmat

    return quat_to_rotmat(q)
