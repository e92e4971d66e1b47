"""The ``gaussian-splatting`` run: input -> poses -> starting points -> splats -> held-out views -> mesh -> turntable.

The run side is the ``nerf`` method's (:func:`methods.nerf.scene_run.run_scene`): the same input reading,
held-out frames, record and publishing, so both methods are scored on the same frames. What differs is
here: where the splats start (the SfM points; for known poses, points triangulated from them; the
visual hull of masks; random as the last resort), the splat fitter, the mesh from the splats' opacity
field and a turntable through the splat rasteriser.
Held-out predictions go to ``Asset.views`` for the protocol to score; the method never scores itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator

import numpy as np
import torch

from methods.base import Asset, Inputs, InvalidInput, Mesh, Progress
from methods.export import gaussian_centres
from methods.nerf.io import Scene
from methods.nerf.scene_run import SceneMethod, budget_seconds, run_scene, turntable_ring
from methods.splats.mesh import MESH_METHOD, EmptySurface, extract_mesh
from methods.splats.raster import opengl_to_viewmat, rasterize
from methods.splats.train import SplatConfig, SplatFitter

TRIANGULATION_VIEWS = 40  # at most this many training views are matched (exhaustively) for the starting points
INIT_LABELS = {
    "sfm": "SfM points",
    "triangulation": "points triangulated from the known poses",
    "visual hull": "visual hull of the masks",
    "random": "random start (small splats)",
}


def splat_config(settings, device: str) -> SplatConfig:
    cuda = device.startswith("cuda")
    return SplatConfig(
        budget_seconds=budget_seconds(settings, device),
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
        pairs_per_step=0 if cuda else int(settings.pairs_per_step),
        seed=int(settings.seed),
        lr_preset=settings.learning_rates if settings.learning_rates != "auto" else ("paper" if cuda else "short"),
    )


def with_triangulated_points(scene: Scene, max_views: int = TRIANGULATION_VIEWS) -> Scene:
    """The scene with sparse points triangulated from its known poses (training views only, at most
    ``max_views`` of them, evenly spread); the scene unchanged with a note when nothing could be matched."""
    from methods.nerf.sfm import triangulate_known_poses

    train = np.asarray(scene.train)
    if len(train) > max_views:
        train = train[np.unique(np.linspace(0, len(train) - 1, max_views).round().astype(int))]
    try:
        found = triangulate_known_poses(scene.images[train], scene.cameras.subset(train))
    except InvalidInput as exc:
        return dataclasses.replace(scene, notes=[*scene.notes, f"no starting points: {exc}"])
    return dataclasses.replace(
        scene,
        points=found.points,
        points_source="triangulation",
        diagnostics={**scene.diagnostics, "triangulation": found.diagnostics},
    )


@torch.no_grad()
def turntable(fitter: SplatFitter) -> np.ndarray:
    """A ring of views around the scene at the capture's mean distance and elevation; (T, H, W, 3) uint8."""
    poses, K = turntable_ring(fitter.cameras.subset(fitter.scene.train), fitter.up_axis)
    side = int(round(2 * K[0, 2]))
    p = fitter.params
    sh = torch.cat([p["sh0"], p["shrest"][:, : (fitter.active_degree + 1) ** 2 - 1]], 1)
    K = torch.as_tensor(K).to(p["means"])[None]
    out = []
    for i in range(len(poses)):
        view = opengl_to_viewmat(poses[i : i + 1]).to(p["means"])
        args = (p["means"], p["log_scales"], p["quats"], p["opacity_logits"], sh, view, K, side, side)
        out.append(rasterize(*args, fitter.eval_background()).image[0].clamp(0, 1).cpu().numpy())
    return (np.stack(out) * 255).round().astype(np.uint8)


class SplatRun(SceneMethod):
    stage_noun = "splats"

    def __init__(self) -> None:
        self.gaussians = None

    def prepare(self, scene: Scene, settings, device: str, stages: dict[str, float]):
        if scene.points is None and not scene.has_alpha and len(scene.train) >= 2:
            yield Progress("points", None, f"triangulating starting points from the {len(scene.train)} known poses")
            with_points = with_triangulated_points(scene)
            stages["points"] = with_points.diagnostics.get("triangulation", {}).get("seconds", 0.0)
            scene = with_points
        return SplatFitter(scene, splat_config(settings, device), device)

    def describe(self, fitter: SplatFitter) -> str:
        return f"{len(fitter)} splats from the {INIT_LABELS[fitter.init_source]} ({fitter.backend} rasteriser), "

    def detail(self, fitter: SplatFitter) -> str:
        return f"{len(fitter)} splats, "

    def trained(self, fitter: SplatFitter) -> str:
        first, last = fitter.steps_per_second(first=True), fitter.steps_per_second(first=False)
        return (
            f", {len(fitter)} splats initialised from the {INIT_LABELS[fitter.init_source]}; "
            f"{first:.1f} steps/s over the first 100 steps, {last:.1f} over the last 100"
        )

    def mesh(self, fitter: SplatFitter, settings, device: str, views: dict, notes: list[str]):
        views["density_history"] = fitter.history
        self.gaussians = fitter.gaussians(world=True)
        yield Progress("mesh", None, f"{MESH_METHOD} at {settings.mesh_resolution}^3")
        try:
            extracted = extract_mesh(self.gaussians, int(settings.mesh_resolution), float(settings.mesh_level))
        except EmptySurface as exc:
            notes.append(f"no mesh: {exc}")
            return None
        views["mesh"] = {k: extracted[k] for k in ("method", "level", "resolution", "components_removed")}
        return Mesh(extracted["vertices"], extracted["faces"], extracted["colors"])

    def turntable(self, fitter: SplatFitter) -> np.ndarray:
        return turntable(fitter)

    def record(self, fitter: SplatFitter) -> dict:
        return {
            "gaussians": len(self.gaussians),
            "init": fitter.init_source,
            "backend": fitter.backend,
            "steps_per_second_first_100": round(fitter.steps_per_second(first=True), 2),
            "steps_per_second_last_100": round(fitter.steps_per_second(first=False), 2),
        }

    def asset(self, fitter: SplatFitter, mesh: Mesh | None, **common) -> Asset:
        g = self.gaussians
        return Asset(mesh=mesh, points=gaussian_centres(g), gaussians=g, up=fitter.up_axis, **common)


def run_splats(inputs: Inputs, settings) -> Generator[Progress, None, Asset]:
    """The ``gaussian-splatting`` method's run: see the module docstring."""
    asset = yield from run_scene(inputs, settings, SplatRun())
    return asset
