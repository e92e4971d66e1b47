"""The ``nerf`` method's run: input -> poses -> field -> held-out views -> mesh -> turntable.

This is the heavy half of the ``nerf`` method (:mod:`methods.nerf.method` is the light spec); the run
side it shares with ``gaussian-splatting`` is :mod:`methods.nerf.scene_run`. It yields
:class:`methods.base.Progress` and returns the :class:`methods.base.Asset`.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from methods.base import Asset, Inputs, Mesh, Progress
from methods.nerf.cameras import Cameras, RayTable
from methods.nerf.io import Scene
from methods.nerf.mesh import MeshOptions, backdrop_colour, extract_mesh
from methods.nerf.render import render_view
from methods.nerf.scene_run import SceneMethod, budget_seconds, run_scene, turntable_ring
from methods.nerf.train import FitConfig, SceneFitter


def _fit_config(settings, device: str) -> FitConfig:
    batch = settings.batch_rays or (4096 if device.startswith("cuda") else 256)
    return FitConfig(
        budget_seconds=budget_seconds(settings, device),
        steps=int(settings.steps),
        batch_rays=int(batch),
        resolution=int(settings.resolution),
        start_resolution=min(64, int(settings.resolution)),
        encoding=settings.encoding,
        hash_log2_size=int(settings.hash_log2_size),
        background=settings.background,
        seed=int(settings.seed),
    )


def turntable(fitter: SceneFitter) -> np.ndarray:
    """A ring of views around the field's centre at the capture's mean distance and elevation; (T, H, W, 3) uint8."""
    cams = fitter.cameras.subset(fitter.scene.train)
    poses, K = turntable_ring(cams, fitter.up_axis)
    side = int(round(2 * K[0, 2]))
    rays = RayTable(Cameras(poses, K, side, side), fitter.device)
    out = [
        render_view(fitter.field, fitter.occupancy, rays, i, fitter.eval_background(), fitter.render_options())
        for i in range(len(poses))
    ]
    return (np.stack(out) * 255).round().astype(np.uint8)


class NeRFRun(SceneMethod):
    def prepare(self, scene: Scene, settings, device: str, stages: dict[str, float]):
        return SceneFitter(scene, _fit_config(settings, device), device)
        yield  # a generator that yields nothing: the field needs no preparation

    def mesh(self, fitter: SceneFitter, settings, device: str, views: dict, notes: list[str]):
        yield Progress("mesh", None, f"marching cubes at {settings.mesh_resolution}^3")
        box = fitter.occupancy.bbox.cpu().numpy().astype(np.float64)
        seen_by = fitter.cameras.subset(fitter.scene.train)
        extracted = extract_mesh(
            fitter.field,
            box,
            MeshOptions(
                resolution=int(settings.mesh_resolution),
                threshold=float(settings.threshold),
                target_faces=int(settings.decimate_faces),
                background=backdrop_colour(fitter.scene.images[fitter.scene.train]),
            ),
            device,
            cameras=(seen_by.c2w, seen_by.K, seen_by.width, seen_by.height),
        )
        if extracted["components_removed"]:
            notes.append(f"removed {extracted['components_removed']} small disconnected part(s)")
        if extracted["hidden_faces_removed"]:
            notes.append(f"removed {extracted['hidden_faces_removed']} faces no training camera sees")
        if extracted["background_parts_removed"]:
            notes.append(f"removed {extracted['background_parts_removed']} part(s) the views see as backdrop")
        frame = fitter.frame
        # the input's world frame, turned so that its up axis is +Y or +Z (a rotation only for SfM scenes)
        vertices = extracted["vertices"].astype(np.float64) / frame.scale + frame.rotation @ frame.centre
        return Mesh(vertices.astype(np.float32), extracted["faces"], extracted["colors"])

    def turntable(self, fitter: SceneFitter) -> np.ndarray:
        return turntable(fitter)


def run_nerf(inputs: Inputs, settings) -> Generator[Progress, None, Asset]:
    """The ``nerf`` method's run: see the module docstring."""
    asset = yield from run_scene(inputs, settings, NeRFRun())
    return asset
