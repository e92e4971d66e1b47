"""A tiny procedural method for tests of the runner, CLI and store (no weights, instant)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from methods.base import Asset, InvalidInput, Mesh, Method, PointCloud, Progress, Settings, setting
from methods.registry import register, unregister


class ProceduralSphere(Method):
    id = "test-sphere"
    label = "Test sphere"
    modalities = ("text", "image")
    family = "procedural (tests)"
    representation = "mesh"
    seconds_cpu = 0.1

    @dataclass(kw_only=True)
    class Settings(Settings):
        subdivisions: int = setting(2, min=1, max=4, step=1, help="icosphere subdivisions")
        radius: float = setting(1.0, min=0.1, max=10.0, step=0.1)
        with_points: bool = setting(False)
        fail: bool = setting(False, help="raise inside run (tests the failure path)")

    def run(self, inputs, settings):
        import trimesh

        yield Progress("build", 0.0, "building a sphere")
        if settings.fail:
            raise RuntimeError("asked to fail")
        if inputs.prompt and "nothing" in inputs.prompt:
            raise InvalidInput("the prompt asks for nothing")
        sphere = trimesh.creation.icosphere(subdivisions=settings.subdivisions, radius=settings.radius)
        rng = np.random.default_rng(settings.seed)
        colors = rng.random((len(sphere.vertices), 3))
        points = None
        if settings.with_points:
            pts = sphere.sample(256, seed=settings.seed) if hasattr(sphere, "sample") else sphere.vertices
            points = PointCloud(pts, rng.random((len(pts), 3)))
        yield Progress("build", 1.0, "done")
        return Asset(
            mesh=Mesh(sphere.vertices, sphere.faces, colors), points=points, up="+Z", stage_seconds={"build": 0.01}
        )


def install() -> type[Method]:
    return register(ProceduralSphere)


def uninstall() -> None:
    unregister(ProceduralSphere.id)
