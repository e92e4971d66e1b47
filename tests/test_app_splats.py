"""The Video tab compares ``nerf`` and ``gaussian-splatting`` on one input, through gradio_client.

This test renders its own textured orbit (24 views of the teapot with coloured noise that SfM can
match) and uploads it as a video: both methods pose it with pycolmap, train briefly and are scored on
the same held-out frames (0, 8, 16); the Runs tab then offers the splat files. (tests/test_examples.py
runs both on the bundled turntable views.) A job driven as the tab drives it shows the training
preview and moves its status on to meshing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gradio_client import handle_file

from tests import nerf_scenes as ns

pytest_plugins = ["tests.conftest_app"]


@pytest.fixture(scope="module")
def orbit_video(tmp_path_factory, shared_data: Path) -> Path:
    pytest.importorskip("pycolmap")
    from methods.nerf.video import write_video

    path = shared_data / "meshes" / "utah_teapot_pytorch3d" / "teapot.obj"
    if not path.is_file():
        pytest.skip("the teapot mesh is not in the shared data")
    vertices, faces = ns.load_mesh(path)
    K = ns.camera_intrinsics(224, 224, 45.0)
    poses = ns.ring_poses(24, 2.2, elevation_deg=25.0, wobble_deg=12.0)
    frames = ns.render_mesh(vertices, faces, ns.noise_shader(), poses, K, 224, 224, supersample=1,
                            background=(0.5,) * 3)  # fmt: skip
    return write_video(frames, tmp_path_factory.mktemp("orbit") / "orbit.mp4", fps=8)


def test_video_tab_offers_both_methods_ticked():
    from ui.generate import method_choices

    choices, ticked, _ = method_choices("video")
    ids = [value for _, value in choices]
    assert "nerf" in ids and "gaussian-splatting" in ids
    assert set(ticked) == {"nerf", "gaussian-splatting"} or len(ticked) == 2


def test_nerf_and_splats_side_by_side_on_the_same_held_out_frames(app_client, app_server, orbit_video: Path):
    settings = {
        "nerf": {"budget_seconds": 600, "steps": 60, "resolution": 32, "mesh_resolution": 48, "threshold": 5.0},
        "gaussian-splatting": {"budget_seconds": 600, "steps": 60, "init_points": 1000, "mesh_resolution": 48},
    }
    files, report = app_client.predict(
        [handle_file(str(orbit_video))],
        ["nerf", "gaussian-splatting"],
        4,
        False,
        json.dumps(settings),
        api_name="/video_to_3d",
    )
    runs = {r["method"]: r for r in report["runs"]}
    assert runs["nerf"]["status"] == "done" and runs["gaussian-splatting"]["status"] == "done", runs
    assert len(files) == 2
    splat = Path(files[runs["gaussian-splatting"]["file_index"]])
    assert splat.suffix == ".splat" and splat.stat().st_size > 0 and splat.stat().st_size % 32 == 0
    assert Path(files[runs["nerf"]["file_index"]]).suffix == ".glb"
    psnr = {m["method"]: m for m in report["metrics"] if m["metric"] == "psnr"}
    assert set(psnr) == {"nerf", "gaussian-splatting"}
    frames = {k: (v["settings"]["frames"], v["settings"]["split"]) for k, v in psnr.items()}
    assert frames["nerf"] == frames["gaussian-splatting"] == (3, "every-8th")
    names = {m["metric"] for m in report["metrics"] if m["method"] == "gaussian-splatting"}
    assert {"splats", "splat_opacity_histogram", "watertight", "points"} <= names

    # the Runs tab offers the splats (.splat and the 3DGS .ply) beside the mesh and the record
    from eval.runs.store import Store
    from ui.runs import open_run

    opened = open_run(Store(app_server.db), runs["gaussian-splatting"]["run_id"])
    offered = {Path(f).name for f in opened.files}
    assert {"asset.splat", "splats.ply", "asset.glb", "run.json"} <= offered
    nerf_offered = {Path(f).name for f in open_run(Store(app_server.db), runs["nerf"]["run_id"]).files}
    assert {"asset.glb", "run.json"} <= nerf_offered and not {"asset.splat", "splats.ply"} & nerf_offered


def test_a_training_job_shows_its_preview_and_moves_on_to_meshing(app_server, orbit_video: Path):
    """Driven as the Video tab drives it: while the splats train the slot carries a preview image (a served PNG),
    the status names each stage as it starts (meshing included), and the preview is gone when it is done."""
    from eval.runs.store import Store
    from ui import jobs, served

    settings = {"gaussian-splatting": {"budget_seconds": 600, "steps": 40, "init_points": 300, "mesh_resolution": 32}}
    job = jobs.plan_job("video", [str(orbit_video)], ["gaussian-splatting"], 0, False, settings)
    previews, stages = [], []
    for state in jobs.run_job(job, Store(app_server.db)):
        slot = state.slots[0]
        if slot.state == "running":
            stages.append(slot.stage)
            if slot.preview:
                assert Path(slot.preview).is_file() and served.SERVED.is_served(slot.preview)
                previews.append(slot.preview)
    assert previews and {"training", "mesh", "turntable"} <= set(stages)
    assert stages.index("mesh") > stages.index("training")
    assert slot.state == "done" and slot.preview is None and not any(Path(p).exists() for p in previews)
