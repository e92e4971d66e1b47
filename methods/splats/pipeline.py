"""The ``gaussian-splatting`` run: input -> poses -> splats -> held-out views -> mesh -> turntable.

The input side is the ``nerf`` method's (:func:`methods.nerf.pipeline.read_scene`), so the held-out
frames are the same for both methods.
Held-out predictions go to ``Asset.views`` for the protocol to score; the method never scores itself.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

import numpy as np
import torch

from methods import runtime
from methods.base import Asset, Inputs, Mesh, Progress
from methods.export import gaussian_centres
from methods.nerf.cameras import orbit_poses
from methods.nerf.pipeline import fit_with_progress, read_scene
from methods.splats.mesh import MESH_METHOD, EmptySurface, extract_mesh
from methods.splats.raster import opengl_to_viewmat, rasterize
from methods.splats.train import SplatConfig, SplatFitter

CPU_BUDGET_SECONDS = 60.0
GPU_BUDGET_SECONDS = 120.0
TURNTABLE_FRAMES = 24
TURNTABLE_SIDE = 96


def splat_config(settings, device: str) -> SplatConfig:
    cuda = device.startswith("cuda")
    budget = settings.budget_seconds or (GPU_BUDGET_SECONDS if cuda else CPU_BUDGET_SECONDS)
    return SplatConfig(
        budget_seconds=float(budget),
        steps=int(settings.steps),
        sh_degree=int(settings.sh_degree),
        views_per_step=int(settings.views_per_step),
        init_points=int(settings.init_points),
        background=settings.background,
        backend=settings.backend,
        grad_threshold=float(settings.densify_grad),
        densify_from=int(settings.densify_from),
        densify_every=int(settings.densify_every),
        densify_until=float(settings.densify_until),
        opacity_reset_every=int(settings.opacity_reset_every),
        max_gaussians=int(settings.max_gaussians),
        seed=int(settings.seed),
        lr_preset=settings.learning_rates if settings.learning_rates != "auto" else ("paper" if cuda else "short"),
    )


@torch.no_grad()
def turntable(fitter: SplatFitter, frames: int = TURNTABLE_FRAMES, side: int = TURNTABLE_SIDE) -> np.ndarray:
    """A ring of views around the scene at the capture's mean distance and elevation; (T, H, W, 3) uint8."""
    cams = fitter.cameras.subset(fitter.scene.train)
    up = np.array([0.0, 0.0, 1.0]) if fitter.up_axis == "+Z" else np.array([0.0, 1.0, 0.0])
    centres = cams.centers()
    radius = float(np.median(np.linalg.norm(centres, axis=1)))
    elevation = float(np.degrees(np.median(np.arcsin(np.clip(centres @ up / np.maximum(radius, 1e-9), -1, 1)))))
    poses = orbit_poses(frames, radius, elevation, up=up)
    fov = 2 * math.atan(0.5 * cams.width / cams.K[0, 0, 0])
    focal = 0.5 * side / math.tan(0.5 * fov)
    K = torch.tensor([[focal, 0, side / 2], [0, focal, side / 2], [0, 0, 1.0]]).expand(frames, 3, 3)
    p = fitter.params
    sh = torch.cat([p["sh0"], p["shrest"][:, : (fitter.active_degree + 1) ** 2 - 1]], 1)
    out = []
    for i in range(frames):
        view = opengl_to_viewmat(poses[i : i + 1]).to(p["means"])
        img = rasterize(
            p["means"],
            p["log_scales"],
            p["quats"],
            p["opacity_logits"],
            sh,
            view,
            K[i : i + 1].to(p["means"]),
            side,
            side,
            fitter.eval_background(),
        ).image[0]
        out.append(img.clamp(0, 1).cpu().numpy())
    return (np.stack(out) * 255).round().astype(np.uint8)


def run_splats(inputs: Inputs, settings) -> Generator[Progress, None, Asset]:
    """The ``gaussian-splatting`` method's run: see the module docstring."""
    stages: dict[str, float] = {}
    device = runtime.device()
    scene = yield from read_scene(inputs, settings, stages)
    config = splat_config(settings, device)
    fitter = SplatFitter(scene, config, device)
    scene = fitter.scene  # resampled to pinhole cameras when the poses came with lens distortion
    notes = list(scene.notes) + fitter.notes
    try:
        yield Progress(
            "training",
            0.0,
            f"{len(scene.train)} training / {len(scene.test)} held-out views at {scene.width}x{scene.height}, "
            f"{len(fitter)} splats from the {fitter.init_source}, budget {config.budget_seconds:.0f} s on {device} "
            f"({fitter.backend} rasteriser)",
        )
        steps, curve, stages["train"] = yield from fit_with_progress(fitter, config, lambda: f"{len(fitter)} splats, ")
        notes.append(
            f"trained {steps} steps in {stages['train']:.0f} s on {device} (budget {config.budget_seconds:.0f} s), "
            f"{len(fitter)} splats initialised from the {fitter.init_source}"
        )
        views: dict[str, Any] = {
            "split": scene.split,
            "train_curve": curve,
            "background": fitter.eval_background().cpu().tolist(),
            "density_history": fitter.history,
        }
        with runtime.timed(stages, "evaluate"):
            held = scene.test
            if settings.eval_views and len(held) > settings.eval_views:
                held = held[np.unique(np.linspace(0, len(held) - 1, settings.eval_views).round().astype(int))]
            preds, gts = [], []
            for k, i in enumerate(held):
                preds.append(fitter.render(int(i)))
                gts.append(fitter.ground_truth(int(i)))
                yield Progress("evaluate", (k + 1) / len(held), f"held-out view {k + 1} of {len(held)}")
            if preds:
                views["heldout_pred"] = np.stack(preds).astype(np.float32)
                views["heldout_gt"] = np.stack(gts).astype(np.float32)
                views["heldout_names"] = [scene.names[int(i)] for i in held]
            else:
                notes.append("no held-out views (fewer than 16 frames and no split file): no image metrics")

        gaussians = fitter.gaussians(world=True)
        yield Progress("mesh", None, f"{MESH_METHOD} at {settings.mesh_resolution}^3")
        mesh = None
        with runtime.timed(stages, "mesh"):
            try:
                extracted = extract_mesh(gaussians, int(settings.mesh_resolution), float(settings.mesh_level))
                mesh = Mesh(extracted["vertices"], extracted["faces"], extracted["colors"])
                views["mesh"] = {k: extracted[k] for k in ("method", "level", "resolution", "components_removed")}
            except EmptySurface as exc:
                notes.append(f"no mesh: {exc}")
        yield Progress("turntable", None, "rendering a turntable from the splats")
        with runtime.timed(stages, "turntable"):
            views["turntable"] = turntable(fitter)
        views["scene"] = {
            "source": scene.source,
            "frames": len(scene.images),
            "train_views": len(scene.train),
            "heldout_views": len(scene.test),
            "image_size": [scene.width, scene.height],
            "steps": steps,
            "device": device,
            "gaussians": len(gaussians),
            "init": fitter.init_source,
            "backend": fitter.backend,
            **scene.diagnostics,
        }
        return Asset(
            mesh=mesh,
            points=gaussian_centres(gaussians),
            gaussians=gaussians,
            up=fitter.up_axis,
            notes=notes,
            stage_seconds=stages,
            views=views,
        )
    finally:
        fitter.close()  # also when cancelled (GeneratorExit at a yield): frees the splats and the CUDA cache
