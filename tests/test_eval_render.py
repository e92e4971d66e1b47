"""The renderer: analytic silhouettes, orientation, determinism, textures, points, turntables."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from eval.judging.render import (
    Camera,
    camera_ring,
    front_camera,
    heldout_camera,
    render,
    render_modes,
    render_turntable,
)
from methods.base import Asset, Mesh, PointCloud, normalize
from methods.export import load_asset
from tests.eval_support import SHARED_MESHES, mesh_asset, sphere_points, unit_cube


@pytest.fixture(scope="module")
def sphere() -> Asset:
    return mesh_asset(trimesh.creation.icosphere(subdivisions=4))


def test_unit_sphere_silhouette_has_the_analytic_area(sphere: Asset):
    res = 128
    shots = render(sphere, [Camera(0, 30), Camera(135, -20)], resolution=res, supersample=1)
    cam = Camera(0, 30)
    radius_px = cam.focal(res) * math.tan(math.asin(1.0 / cam.distance))  # the sphere's projected disc
    expected = math.pi * radius_px**2
    for alpha in shots.alpha:
        assert abs(alpha.sum() - expected) <= 2 * math.pi * radius_px * 1.0  # within one pixel of the outline
        ys, xs = np.nonzero(alpha)
        assert abs(xs.mean() + 0.5 - res / 2) < 0.5 and abs(ys.mean() + 0.5 - res / 2) < 0.5  # centred


def test_same_asset_same_pixels_whatever_the_thread_count():
    import torch

    sphere = mesh_asset(trimesh.creation.icosphere(subdivisions=3))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = render(sphere, camera_ring(2), resolution=64, mode="geometry")
        torch.set_num_threads(2)
        b = render(sphere, camera_ring(2), resolution=64, mode="geometry")
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.alpha, b.alpha) and np.array_equal(a.depth, b.depth)


def test_orientation_front_is_plus_z_right_is_plus_x_up_is_plus_y():
    # a big cube at the origin and a small one to the right (+X) and up (+Y)
    parts = trimesh.util.concatenate(
        [unit_cube(), trimesh.creation.box(extents=(0.3, 0.3, 0.3)).apply_translation([1, 1, 0])]
    )
    asset = mesh_asset(parts)
    shot = render(asset, [front_camera(), Camera(180, 0)], resolution=64, supersample=1)
    depth = shot.depth
    top_right, top_left = depth[0, :20, 40:], depth[0, :20, :24]
    assert np.isfinite(top_right).any() and not np.isfinite(top_left).any()
    assert np.isfinite(depth[1, :20, :24]).any()  # seen from behind, +X is on the left
    # the camera looks at the origin along -Z of its pose, OpenGL convention
    pose = front_camera().c2w()
    assert np.allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3)) and np.allclose(-pose[:3, 2], [0, 0, -1])
    held = heldout_camera()
    assert held.elevation == 45 and all(held.azimuth != c.azimuth for c in camera_ring())


def test_colour_and_geometry_modes_and_vertex_colours():
    box = unit_cube()
    red = np.tile([1.0, 0.0, 0.0], (len(box.vertices), 1))
    asset = mesh_asset(box, red)
    color = render(asset, [Camera(30, 30)], resolution=48, supersample=1)
    geo = render(asset, [Camera(30, 30)], resolution=48, supersample=1, mode="geometry")
    inside = color.alpha[0] > 0
    assert np.allclose(color.rgb[0][inside], [1, 0, 0])  # unlit base colour
    assert np.allclose(color.rgb[0][~inside], 1.0)  # white background
    g = geo.rgb[0][inside]
    assert np.allclose(g[:, 0], g[:, 1]) and len(np.unique(g[:, 0].round(4))) >= 3  # grey, three lit faces
    assert color.settings["mode"] == "color" and geo.settings["mode"] == "geometry"
    assert color.settings["renderer"].startswith("trilemma-raster")
    with pytest.raises(ValueError):
        render(asset, mode="normals")


def test_one_rasterisation_for_both_modes_gives_the_same_pixels():
    box = unit_cube()
    asset = mesh_asset(box, (box.vertices + 0.5).clip(0, 1))
    both = render_modes(asset, camera_ring(2), resolution=40)
    for mode in ("color", "geometry"):
        alone = render(asset, camera_ring(2), resolution=40, mode=mode)
        assert np.array_equal(both[mode].rgb, alone.rgb) and both[mode].settings == alone.settings


def test_point_cloud_renders_like_the_surface_it_samples(sphere: Asset):
    pts = sphere_points(20000, 0)
    cloud = normalize(Asset(points=PointCloud(pts, np.tile([0.0, 0.5, 1.0], (len(pts), 1)))))
    mesh_area = render(sphere, [Camera(0, 30)], resolution=64, supersample=1).alpha.sum()
    shots = render(cloud, [Camera(0, 30)], resolution=64, supersample=1)
    assert abs(shots.alpha.sum() - mesh_area) / mesh_area < 0.06
    assert np.allclose(shots.rgb[0][shots.alpha[0] > 0], [0.0, 0.5, 1.0])
    geo = render(cloud, [Camera(0, 30)], resolution=64, supersample=1, mode="geometry")
    assert geo.rgb[0][geo.alpha[0] > 0].std() > 0.05  # shaded by estimated normals


def test_textured_box_samples_its_texture():
    asset = normalize(load_asset(SHARED_MESHES / "khronos_gltf_via_trimesh" / "BoxTextured.glb"))
    assert asset.mesh.texture is not None
    shot = render(asset, [Camera(20, 20)], resolution=64, supersample=1)
    fg = shot.rgb[0][shot.alpha[0] > 0]
    assert fg.std(axis=0).max() > 0.05  # the texture's pattern, not one flat colour


def test_render_sizes_and_supersampling(sphere: Asset):
    shots = render(sphere, camera_ring(3), resolution=512, supersample=1)
    assert shots.rgb.shape == (3, 512, 512, 3) and shots.rgb.dtype == np.float32
    soft = render(sphere, [Camera(0, 30)], resolution=64, supersample=2)
    edge = (soft.alpha > 0) & (soft.alpha < 1)
    assert edge.any()  # anti-aliased outline
    assert len(soft.images()) == 1 and soft.images(with_alpha=True)[0].mode == "RGBA"


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_turntable_files(tmp_path, suffix: str):
    box = unit_cube()
    asset = mesh_asset(box, (box.vertices + 0.5).clip(0, 1))  # colours that change as it turns
    path = render_turntable(asset, tmp_path / f"spin{suffix}", frames=4, resolution=32)
    assert path.exists() and path.stat().st_size > 0
    if suffix == ".gif":
        from PIL import Image

        assert Image.open(path).n_frames == 4
    else:
        import av

        with av.open(str(path)) as container:
            assert sum(1 for _ in container.decode(video=0)) == 4
    with pytest.raises(ValueError):
        render_turntable(asset, tmp_path / "spin.png")


def test_empty_mesh_renders_background():
    asset = Asset(mesh=Mesh(np.zeros((3, 3)), np.zeros((0, 3))))
    shot = render(asset, [front_camera()], resolution=32, supersample=1)
    assert shot.alpha.sum() == 0 and np.all(shot.rgb == 1.0)
