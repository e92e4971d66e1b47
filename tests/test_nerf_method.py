"""The ``nerf`` method end to end on a scene the test renders itself, and its light registration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import methods
import methods.nerf.method  # noqa: F401  (registers "nerf")
from eval.runs.runner import execute
from eval.runs.store import Store
from methods.base import Inputs
from tests import nerf_scenes as ns
from tests.processes import python_c

SIZE, VIEWS = 48, 40
PSNR_FLOOR = 22.0  # dB on the held-out views after 600 steps (measured 24.0)
CHAMFER_BOUND = 0.04  # mean symmetric distance to the unit cube's surface, in cube sides (measured 0.022)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def test_listing_imports_no_torch():
    code = (
        "import sys, methods.nerf.method, methods.nerf, methods.nerf.io, methods.nerf.video, methods.nerf.sfm; "
        "from methods.registry import listing; rows = [r for r in listing('video') if r['id'] == 'nerf']; "
        "assert rows and 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:3]; print('ok')"
    )
    out = python_c(code)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_settings_are_described_and_validated():
    method = methods.get("nerf")
    names = {d["name"] for d in method.Settings.describe()}
    wanted = {"budget_seconds", "steps", "resolution", "hash_log2_size", "mesh_resolution", "threshold", "background"}
    assert wanted | {"seed"} <= names
    settings = method.Settings.from_dict({"budget_seconds": "30", "background": "white", "encoding": "hash"})
    assert settings.budget_seconds == 30.0 and settings.background == "white"
    with pytest.raises(methods.InvalidSettings, match="resolution"):
        method.Settings.from_dict({"resolution": 8})
    assert method.spec()["modalities"] == ["video"]


@pytest.fixture(scope="module")
def cube_scene():
    vertices, faces = ns.cube(1.0)
    K = ns.camera_intrinsics(SIZE, SIZE, 40.0)
    poses = ns.sphere_poses(VIEWS, 3.0)
    images = ns.render_mesh(vertices, faces, ns.face_colour_shader(vertices, faces), poses, K, SIZE, SIZE)
    return vertices, faces, images, poses, K


def test_cube_scene_trains_scores_and_meshes(cube_scene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    vertices, faces, images, poses, K = cube_scene
    captured: list[methods.Asset] = []
    original_run = methods.run

    def run_and_keep(*args, **kwargs):
        asset = yield from original_run(*args, **kwargs)
        captured.append(asset)
        return asset

    monkeypatch.setattr(methods, "run", run_and_keep)  # the runner calls methods.run; keep its asset
    inputs = Inputs(
        modality="video", frames=[Image.fromarray(im) for im in images], poses=poses, intrinsics=K, name="cube"
    )
    settings = {
        "budget_seconds": 600,  # the step count binds, so a busy machine changes the time, not the result
        "steps": 600,
        "resolution": 64,
        "mesh_resolution": 96,
        "eval_views": 0,
        "seed": 3,
    }
    store = Store(tmp_path / "runs.db")
    events = list(execute("nerf", inputs, settings, store=store, out_dir=tmp_path / "run"))
    progress = [e.progress for e in events if e.kind == "progress"]
    stages = {p.stage for p in progress}
    assert {"input", "training", "evaluate", "mesh", "turntable"} <= stages
    previews = [p.preview for p in progress if p.preview is not None]
    assert previews and previews[-1].dtype == np.uint8 and previews[-1].shape[-1] == 3
    done = events[-1]
    assert done.kind == "done" and Path(done.files["glb"]).is_file()

    # the held-out renders and their ground truth travel in the asset for the protocol to score
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    metrics = {m["name"]: m["value"] for m in record["metrics"]}
    assert metrics["psnr"] > PSNR_FLOOR
    assert 0 < metrics["ssim"] <= 1 and ("lpips" in metrics or "lpips_skipped" in metrics)

    # geometry: the mesh, in the world frame of the cameras, is close to the cube
    asset = captured[0]
    held = np.asarray(asset.views["heldout_pred"])
    assert held.shape == (5, SIZE, SIZE, 3) and asset.views["split"] == "every-8th"
    assert _psnr(held, asset.views["heldout_gt"]) > PSNR_FLOOR
    assert asset.up == "+Y" and asset.views["turntable"].shape[0] == 24
    gt = ns.surface_samples(vertices, faces)
    distance = ns.chamfer(asset.mesh.vertices, gt)
    print(f"cube: held-out PSNR {metrics['psnr']:.2f} dB, chamfer {distance:.4f}, {len(asset.mesh.faces)} faces")
    assert distance < CHAMFER_BOUND
    assert asset.mesh.vertex_colors is not None and asset.mesh.vertex_colors.std() > 0.05


def test_cancelling_frees_the_run(cube_scene):
    _, _, images, poses, K = cube_scene
    inputs = Inputs(modality="video", frames=[Image.fromarray(im) for im in images], poses=poses, intrinsics=K)
    gen = methods.run("nerf", inputs, {"budget_seconds": 600, "steps": 100000, "resolution": 32})
    for progress in gen:
        if progress.stage == "training" and progress.fraction:
            break
    gen.close()  # what the runner does when a person cancels: the generator's finally frees the field
    assert gen.gi_frame is None


def test_video_without_poses_goes_through_structure_from_motion(shared_data: Path, tmp_path: Path):
    pytest.importorskip("pycolmap")
    from methods.nerf.video import write_video

    path = shared_data / "meshes" / "utah_teapot_pytorch3d" / "teapot.obj"
    if not path.is_file():
        pytest.skip("the teapot mesh is not in the shared data")
    vertices, faces = ns.load_mesh(path)
    K = ns.camera_intrinsics(224, 224, 45.0)
    poses = ns.ring_poses(24, 2.2, elevation_deg=25.0, wobble_deg=12.0)
    frames = ns.render_mesh(
        vertices, faces, ns.noise_shader(), poses, K, 224, 224, supersample=1, background=(0.5,) * 3
    )
    video = write_video(frames, tmp_path / "orbit.mp4", fps=8)
    inputs = Inputs(modality="video", video_path=str(video), name=video.name)
    settings = {"budget_seconds": 600, "steps": 100, "resolution": 32, "mesh_resolution": 48, "threshold": 5.0}
    gen = methods.run("nerf", inputs, settings)
    stages = []
    while True:
        try:
            stages.append(next(gen).stage)
        except StopIteration as stop:
            asset = stop.value
            break
    assert "poses" in stages and "training" in stages
    sfm = asset.views["scene"]["sfm"]
    assert sfm["registered"] >= 20 and sfm["reprojection_error_px"] < 1.5
    assert any("frames registered" in note for note in asset.notes)
    assert asset.up == "+Y" and asset.views["split"] == "every-8th" and len(asset.mesh.faces) > 100
