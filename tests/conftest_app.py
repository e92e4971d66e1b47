"""Fixtures for the app tests (a pytest plugin module: ``pytest_plugins = ["tests.conftest_app"]``).

``app_methods`` registers small procedural methods for the test process (no weights, instant);
``app_server`` launches the whole app on a free localhost port with a private run store;
``app_client`` is a gradio_client.Client connected to it. All are module-scoped, so the test
methods and the environment (TRILEMMA_DB, TRILEMMA_OUTPUTS) never leak into other test modules.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from methods.base import Asset, Inputs, Mesh, Method, PointCloud, Progress, Settings, setting
from methods.registry import register, unregister

SPHERE_VERTICES = {n: 10 * 4**n + 2 for n in range(5)}  # icosphere vertex count per subdivision level


class AppTestSphere(Method):
    """A coloured icosphere (or box); its colour comes from the input so different inputs look different."""

    id = "app-test-sphere"
    label = "Test sphere"
    modalities = ("text", "image", "video")
    family = "procedural (tests)"
    representation = "mesh"
    output = "mesh"
    paper = "none: a fixture for the app tests"
    licence = "Apache-2.0"
    seconds_gpu = 0.1
    seconds_cpu = 0.2

    @dataclass(kw_only=True)
    class Settings(Settings):
        checkpoint: str = setting("", help="a local folder the method checks for (tests availability)")
        subdivisions: int = setting(2, min=0, max=4, step=1, help="icosphere subdivisions")
        steps: int = setting(3, min=1, max=50, step=1, help="progress events to emit")
        shape: str = setting("sphere", choices=("sphere", "box"))
        delay: float = setting(0.0, min=0.0, max=2.0, step=0.01, help="seconds to wait per step", advanced=True)
        fail: bool = setting(False, help="raise inside run (tests the failure path)")

    def run(self, inputs: Inputs, settings: Settings):
        import time

        import trimesh

        for i in range(settings.steps):
            yield Progress("sample", i / settings.steps, f"step {i + 1}/{settings.steps}")
            if settings.delay:
                time.sleep(settings.delay)
        if settings.fail:
            raise RuntimeError("asked to fail")
        if settings.shape == "box":
            shape = trimesh.creation.box(extents=(1.0, 0.6, 0.4))
        else:
            shape = trimesh.creation.icosphere(subdivisions=settings.subdivisions)
        seed = int(inputs.hash()[:8], 16) ^ settings.seed
        colors = _colours(np.asarray(shape.vertices), np.random.default_rng(seed))
        yield Progress("sample", 1.0, "done")
        return self.asset(shape, colors)

    def asset(self, shape, colors) -> Asset:
        return Asset(mesh=Mesh(shape.vertices, shape.faces, colors), stage_seconds={"sample": 0.01})


class AppTestPoints(AppTestSphere):
    """The same shape's vertices as a coloured point cloud (exercises the .glb points + .ply path)."""

    id = "app-test-points"
    label = "Test points"
    representation = "point cloud"
    output = "points"

    def asset(self, shape, colors) -> Asset:
        return Asset(points=PointCloud(shape.vertices, colors), stage_seconds={"sample": 0.01})


class AppTestUnavailable(Method):
    """Listed but never runnable: it needs a package that does not exist."""

    id = "app-test-unavailable"
    label = "Test unavailable"
    modalities = ("text",)
    family = "procedural (tests)"
    representation = "mesh"
    requires = ("trilemma_no_such_package",)

    def run(self, inputs, settings):  # pragma: no cover - never available
        raise AssertionError("an unavailable method ran")
        yield


TEST_METHODS = (AppTestSphere, AppTestPoints, AppTestUnavailable)


def _colours(vertices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    base = rng.random(3)
    ramp = (vertices[:, 1:2] - vertices[:, 1].min()) / max(np.ptp(vertices[:, 1]), 1e-6)
    return np.clip(base * (0.6 + 0.4 * ramp), 0.0, 1.0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_methods():
    for cls in TEST_METHODS:
        register(cls)
    yield {cls.id: cls for cls in TEST_METHODS}
    for cls in TEST_METHODS:
        unregister(cls.id)


@pytest.fixture(scope="module")
def app_env(tmp_path_factory: pytest.TempPathFactory):
    """A private store and outputs folder, one CPU thread; the environment is restored afterwards."""
    out = tmp_path_factory.mktemp("app_outputs")
    data = tmp_path_factory.mktemp("app_data")  # the store lives outside the served outputs, as by default
    env = {
        "TRILEMMA_OUTPUTS": str(out),
        "TRILEMMA_DB": str(data / "trilemma.db"),
        "OMP_NUM_THREADS": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    yield out
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@dataclass
class AppServer:
    url: str
    port: int
    demo: object
    outputs: Path
    db: Path  # outside ``outputs``, as the app's default store is


@pytest.fixture(scope="module")
def app_server(app_env, app_methods):
    import app

    demo = app.build_app()
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, **app.launch_kwargs())
    try:
        yield AppServer(f"http://127.0.0.1:{port}/", port, demo, app_env, Path(os.environ["TRILEMMA_DB"]))
    finally:
        demo.close()


@pytest.fixture(scope="module")
def app_client(app_server):
    from gradio_client import Client

    return Client(app_server.url, verbose=False)


@pytest.fixture()
def checkpoint_dir(tmp_path: Path) -> Path:
    """A local folder that exists, for the test method's ``checkpoint`` setting."""
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder
