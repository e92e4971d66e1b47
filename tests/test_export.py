from pathlib import Path

import numpy as np
import pygltflib
import pytest
import trimesh
from PIL import Image

from methods.base import Asset, Mesh, PointCloud
from methods.export import export_asset, export_glb, load_asset, read_metadata


def _coloured_box() -> Asset:
    box = trimesh.creation.box()
    colors = np.random.default_rng(0).random((len(box.vertices), 3)).astype(np.float32)
    return Asset(mesh=Mesh(box.vertices, box.faces, colors))


def test_glb_round_trip_counts_colours_and_extras(tmp_path: Path):
    asset = _coloured_box()
    meta = {"method": "test", "seed": 3, "settings": {"steps": np.int64(2)}}
    path = export_glb(asset, tmp_path / "asset.glb", meta)

    gltf = pygltflib.GLTF2().load(str(path))
    prim = gltf.meshes[0].primitives[0]
    assert prim.attributes.COLOR_0 is not None
    assert gltf.accessors[prim.attributes.POSITION].count == 8
    assert gltf.asset.extras["trilemma3d"] == {"method": "test", "seed": 3, "settings": {"steps": 2}}
    assert read_metadata(path)["seed"] == 3

    back = load_asset(path)
    assert back.mesh.vertices.shape == (8, 3) and back.mesh.faces.shape == (12, 3)
    np.testing.assert_allclose(back.mesh.vertex_colors, asset.mesh.vertex_colors, atol=1 / 255)
    assert not list(tmp_path.glob("*.tmp"))


def test_texture_round_trip(tmp_path: Path):
    box = trimesh.creation.box()
    uv = np.random.default_rng(1).random((len(box.vertices), 2)).astype(np.float32)
    tex = Image.new("RGB", (16, 16), (200, 30, 40))
    path = export_glb(Asset(mesh=Mesh(box.vertices, box.faces, uv=uv, texture=tex)), tmp_path / "t.glb")
    back = load_asset(path)
    assert back.mesh.texture is not None and back.mesh.uv.shape == (8, 2)
    assert back.mesh.texture.convert("RGB").getpixel((3, 3)) == (200, 30, 40)


def test_point_cloud_glb_and_ply(tmp_path: Path):
    rng = np.random.default_rng(2)
    pts = PointCloud(rng.normal(size=(500, 3)), rng.random((500, 3)))
    files = export_asset(Asset(points=pts), tmp_path)
    assert set(files) == {"glb", "ply"}
    ply = trimesh.load(files["ply"])
    assert isinstance(ply, trimesh.PointCloud) and len(ply.vertices) == 500
    np.testing.assert_allclose(np.asarray(ply.colors)[:, :3] / 255, pts.colors, atol=1 / 255)
    gltf = pygltflib.GLTF2().load(str(files["glb"]))
    assert gltf.meshes[0].primitives[0].mode == pygltflib.POINTS
    assert load_asset(files["glb"]).points.points.shape == (500, 3)


@pytest.mark.parametrize(
    "rel",
    [
        "khronos_gltf_via_trimesh/Duck.glb",
        "khronos_gltf_via_trimesh/CesiumMilkTruck.glb",
        "spot_cow_pytorch3d/cow.obj",
        "teapot_trimesh_stl/teapot.stl",
    ],
)
def test_meshes_made_by_others_load_and_re_export(shared_data: Path, tmp_path: Path, rel: str):
    asset = load_asset(shared_data / "meshes" / rel)
    assert len(asset.mesh.vertices) > 100 and len(asset.mesh.faces) > 100
    out = load_asset(export_glb(asset, tmp_path / "again.glb"))
    assert out.mesh.faces.shape == asset.mesh.faces.shape


def test_unreadable_mesh_is_a_clear_error(tmp_path: Path):
    bad = tmp_path / "bad.glb"
    bad.write_bytes(b"glTF but not really")
    with pytest.raises(ValueError, match="bad.glb"):
        load_asset(bad)
