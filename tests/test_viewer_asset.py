"""Viewer-sized assets: the viewer gets at most 300k faces (points thinned), the download keeps the full asset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from ui import jobs
from ui.viewer_asset import MAX_VIEWER_FACES, viewer_file


def _write(tmp_path: Path, geometry, name: str = "asset.glb") -> Path:
    folder = tmp_path / "run"
    folder.mkdir(exist_ok=True)
    path = folder / name
    trimesh.Scene(geometry).export(str(path))
    return path


def _faces(path) -> int:
    scene = trimesh.load(str(path), force="scene")
    return sum(len(g.faces) for g in scene.geometry.values() if isinstance(g, trimesh.Trimesh))


def test_a_heavy_mesh_is_decimated_for_the_viewer_and_kept_whole_for_download(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=7)  # 327,680 faces
    colours = np.zeros((len(sphere.vertices), 4), np.uint8)
    colours[:, 0] = np.where(sphere.vertices[:, 1] > 0, 255, 0)  # red top, black bottom
    colours[:, 3] = 255
    sphere.visual.vertex_colors = colours
    asset = _write(tmp_path, sphere)
    size = asset.stat().st_size
    shown = viewer_file(asset)
    assert Path(shown.path).name == "viewer.glb" and Path(shown.path).parent == asset.parent
    assert 0.9 * MAX_VIEWER_FACES <= _faces(shown.path) <= MAX_VIEWER_FACES
    assert _faces(asset) == 327_680 and asset.stat().st_size == size, "the download keeps the full asset"
    assert "of 327,680 faces" in shown.note and "download is the full asset" in shown.note
    view = trimesh.load(shown.path, force="mesh")
    top = view.vertices[:, 1] > 0.2
    assert (view.visual.vertex_colors[top, 0] == 255).all() and (
        view.visual.vertex_colors[view.vertices[:, 1] < -0.2, 0] == 0
    ).all()

    slot = jobs.SlotState("nerf", "NeRF", run_id="r1")
    jobs._finish(slot, {"glb": str(asset)}, {"stage_seconds": {"train": 1.0}})
    assert slot.files[0] == str(asset) and slot.viewer == shown.path
    assert "reduced copy" in slot.status_markdown()


def test_a_light_asset_goes_to_the_viewer_as_it_is(tmp_path):
    asset = _write(tmp_path, trimesh.creation.icosphere(subdivisions=3))
    shown = viewer_file(asset)
    assert shown.path == str(asset) and shown.note == ""
    assert not (asset.parent / "viewer.glb").exists()
    slot = jobs.SlotState("vae", "VAE", run_id="r2")
    jobs._finish(slot, {"glb": str(asset)}, {})
    assert slot.viewer == str(asset) and "reduced" not in slot.status_markdown()


def test_a_dense_point_cloud_is_thinned_to_the_stated_size(tmp_path):
    rng = np.random.default_rng(1)
    cloud = trimesh.PointCloud(rng.normal(size=(5000, 3)), colors=rng.integers(0, 255, (5000, 4), dtype=np.uint8))
    asset = _write(tmp_path, cloud)
    shown = viewer_file(asset, max_points=1000)
    scene = trimesh.load(shown.path, force="scene")
    (points,) = scene.geometry.values()
    assert len(points.vertices) == 1000 and "1,000 of 5,000 points" in shown.note
    assert len(next(iter(trimesh.load(str(asset), force="scene").geometry.values())).vertices) == 5000


def test_the_viewer_copy_is_made_once(tmp_path):
    rng = np.random.default_rng(2)
    asset = _write(tmp_path, trimesh.PointCloud(rng.normal(size=(3000, 3))))
    first = viewer_file(asset, max_points=500)
    made = Path(first.path).stat().st_mtime_ns
    again = viewer_file(asset, max_points=500)
    assert again == first and Path(again.path).stat().st_mtime_ns == made
