"""Viewer-sized assets: the viewer gets at most 300k faces (points thinned), the download keeps the full asset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
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


# ----------------------------------------------------------------------------- framing from the bounds


def _project(corners, toward_camera, distance, tan_v, tan_h):
    """Corners' screen positions as fractions of the half-width and half-height (camera aimed at the origin)."""
    from ui.viewer_asset import _view_basis

    u, right, up = _view_basis(np.asarray(toward_camera, float))
    depth = distance - corners @ u
    return np.abs(corners @ right) / depth / tan_h, np.abs(corners @ up) / depth / tan_v


@pytest.mark.parametrize("extents", [(0.3, 1.6, 0.3), (1.6, 0.12, 0.9), (1.0, 1.0, 1.0), (40.0, 2.0, 10.0)])
def test_the_mesh_viewer_camera_frames_the_box_whole_and_tight(tmp_path, extents):

    from ui import viewer_asset as va

    path = tmp_path / "box.glb"
    box = trimesh.creation.box(extents=extents)
    box.apply_translation([3.0, -2.0, 1.0])  # off the origin: the viewer aims at the box's centre
    box.export(path)
    alpha, beta, radius = va.viewer_camera(path)
    assert (alpha, beta) == va.ORBIT_DEG
    corners = va.box_corners(*va.mesh_bounds(path))
    tan_v = np.tan(va.BABYLON_FOV / 2)
    x, y = _project(corners, va.babylon_direction(alpha, beta), radius, tan_v, tan_v * va.ASSUMED_ASPECT)
    assert x.max() <= va.FILL + 1e-3 and y.max() <= va.FILL_V + 1e-3  # whole, inside the margins
    assert x.max() >= va.FILL - 1e-3 or y.max() >= va.FILL_V - 1e-3  # and as large as that allows
    # the same bounds always give the same camera: every method is framed alike
    assert va.camera_for(path) == {"camera_position": (alpha, beta, radius)}
    assert va.camera_for(tmp_path / "x.splat") == {}


def _write_splat(path, positions, scales, alpha=255):
    n = len(positions)
    raw = np.zeros((n, 32), np.uint8)
    floats = np.concatenate([positions, scales], axis=1).astype(np.float32)
    raw[:, :24] = floats.view(np.uint8).reshape(n, 24)
    raw[:, 24:27], raw[:, 27], raw[:, 28] = 200, alpha, 255  # colour, opacity, rotation (w = 1)
    raw[:, 29:32] = 128
    raw.tofile(path)


def test_the_splat_viewer_copy_is_framed_for_its_fixed_camera(tmp_path):
    from ui import viewer_asset as va

    rng = np.random.default_rng(0)
    positions = rng.uniform([-0.2, -2.0, -0.2], [0.2, 2.0, 0.2], (2000, 3)) + [5.0, 1.0, -3.0]  # tall, off-centre
    scales = np.full((2000, 3), 0.02)
    src = tmp_path / "asset.splat"
    _write_splat(src, positions, scales)
    shown = va.viewer_file(src)
    assert Path(shown.path).name == "viewer.splat" and shown.note == ""
    raw = np.fromfile(shown.path, np.uint8).reshape(-1, 32)
    framed = raw[:, :24].copy().view(np.float32).reshape(-1, 6)
    lo, hi = np.percentile(framed[:, :3], 1, axis=0), np.percentile(framed[:, :3], 99, axis=0)
    assert np.allclose((lo + hi) / 2, 0.0, atol=1e-3)  # centred where the splat viewer looks
    scale = (hi - lo)[1] / (np.percentile(positions, 99, axis=0) - np.percentile(positions, 1, axis=0))[1]
    assert np.allclose(framed[:, 3:], 0.02 * scale, rtol=1e-4)  # sizes scaled with the positions
    tan_v = va.VIEWER_CANVAS_PX / (2 * va.GSPLAT_FOCAL_PX)
    x, y = _project(va.box_corners(lo, hi), va.gsplat_direction(), va.GSPLAT_DISTANCE, tan_v, tan_v * va.ASSUMED_ASPECT)
    assert x.max() <= va.FILL + 1e-3 and y.max() <= va.FILL_V + 1e-3
    assert y.max() >= va.FILL_V - 1e-3  # the tall splats span the height
    original = np.fromfile(src, np.uint8).reshape(-1, 32)
    assert np.array_equal(raw[:, 24:28], original[:, 24:28])  # colours and opacities kept
    # turned into the splat viewer's +Y-down frame: the top of the asset is the lowest y there
    top = np.argmax(positions[:, 1])
    assert framed[top, 1] == framed[:, 1].min()
    assert np.array_equal(raw[:, 28:32], np.tile([128, 255, 128, 128], (len(raw), 1)))  # identity -> half-turn about x
