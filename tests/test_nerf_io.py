"""NeRF inputs: Blender and transforms.json scenes, camera conventions, lens distortion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from methods.base import InvalidInput
from methods.nerf.cameras import Cameras, RayTable, SceneFrame, distort_points, orbit_poses
from methods.nerf.io import holdout_split, load_transforms


@pytest.fixture(scope="module")
def lego(shared_data: Path) -> Path:
    path = shared_data / "nerf_synthetic_lego_100"
    if not (path / "transforms_train.json").is_file():
        pytest.skip("the lego scene is not in the shared data")
    return path


def test_blender_scene_loads_poses_intrinsics_alpha_and_split(lego: Path):
    scene = load_transforms(lego)
    assert scene.images.shape == (300, 100, 100, 4) and scene.images.dtype == np.uint8
    assert (len(scene.train), len(scene.test)) == (100, 200)
    assert scene.split == "file:transforms_test.json" and scene.source == "blender"
    meta = json.loads((lego / "transforms_train.json").read_text())
    focal = 0.5 * 100 / np.tan(0.5 * meta["camera_angle_x"])
    assert focal == pytest.approx(138.889, abs=1e-3)
    np.testing.assert_allclose(scene.cameras.K[0], [[focal, 0, 50], [0, focal, 50], [0, 0, 1]], atol=1e-9)
    np.testing.assert_allclose(scene.cameras.c2w[0], meta["frames"][0]["transform_matrix"])
    test_meta = json.loads((lego / "transforms_test.json").read_text())
    np.testing.assert_allclose(scene.cameras.c2w[100], test_meta["frames"][0]["transform_matrix"])
    assert scene.names[0] == "r_0.png" and scene.names[100] == "r_0.png"
    alpha = scene.images[..., 3]
    assert alpha.min() == 0 and alpha.max() == 255 and 0.1 < (alpha > 127).mean() < 0.5


def test_blender_cameras_look_at_the_object(lego: Path):
    """OpenGL convention: the centre pixel's ray of every camera passes near the origin, where lego stands."""
    scene = load_transforms(lego)
    rays = RayTable(scene.cameras)
    import torch

    idx = torch.arange(len(scene.images))
    o, d = rays.rays(idx, torch.full_like(idx, 50), torch.full_like(idx, 50))
    o, d = o.double().numpy(), d.double().numpy()
    closest = o - (o * d).sum(-1, keepdims=True) * d  # the point of each ray nearest the origin
    assert np.linalg.norm(closest, axis=1).max() < 0.1
    # the centre pixel's ray hits the object: its alpha is opaque in most views
    assert (scene.images[:, 50, 50, 3] > 127).mean() > 0.8


def _write_json(path: Path, meta: dict) -> Path:
    path.write_text(json.dumps(meta))
    return path


def test_nerfstudio_transforms_with_intrinsics_distortion_masks_and_split(lego: Path, tmp_path: Path):
    train = json.loads((lego / "transforms_train.json").read_text())["frames"][:16]
    frames = []
    for i, f in enumerate(train):
        frame = {"file_path": str(lego / (f["file_path"] + ".png")), "transform_matrix": f["transform_matrix"]}
        if i == 2:  # a mask file overrides the alpha
            mask = tmp_path / "mask_2.png"
            from PIL import Image

            Image.fromarray(np.full((100, 100), 255, np.uint8)).save(mask)
            frame["mask_path"] = "mask_2.png"
        frames.append(frame)
    meta = {
        "camera_model": "OPENCV",
        "fl_x": 277.8,
        "fl_y": 280.0,
        "cx": 101.0,
        "cy": 99.0,
        "w": 200,  # declared at twice the images' size: intrinsics scale to the files
        "h": 200,
        "k1": 0.01,
        "k2": -0.002,
        "p1": 0.001,
        "p2": 0.0005,
        "frames": frames,
        "test_filenames": ["r_3.png", "r_11.png"],
    }
    scene = load_transforms(_write_json(tmp_path / "transforms.json", meta))
    assert scene.source == "transforms.json" and scene.split.endswith("test_filenames")
    assert [scene.names[i] for i in scene.test] == ["r_3.png", "r_11.png"] and len(scene.train) == 14
    np.testing.assert_allclose(scene.cameras.K[0], [[138.9, 0, 50.5], [0, 140.0, 49.5], [0, 0, 1]], atol=1e-9)
    assert scene.cameras.model == "opencv"
    np.testing.assert_allclose(scene.cameras.distortion[0], [0.01, -0.002, 0.001, 0.0005, 0.0, 0.0])
    assert scene.images.shape[-1] == 4 and scene.images[scene.names.index("r_2.png"), ..., 3].min() == 255


def test_transforms_without_split_hold_out_every_8th(lego: Path, tmp_path: Path):
    train = json.loads((lego / "transforms_train.json").read_text())
    meta = {
        "camera_angle_x": train["camera_angle_x"],
        "frames": [
            {"file_path": str(lego / f["file_path"]), "transform_matrix": f["transform_matrix"]}
            for f in train["frames"][:24]
        ],
    }
    scene = load_transforms(_write_json(tmp_path / "transforms.json", meta))
    assert scene.split == "every-8th"
    assert [scene.names[i] for i in scene.test] == ["r_0.png", "r_8.png", "r_16.png"]
    assert holdout_split(10)[1].size == 0  # too few frames to spare any


def test_transforms_with_missing_frames_names_them(lego: Path, tmp_path: Path):
    train = json.loads((lego / "transforms_train.json").read_text())
    frames = [
        {"file_path": str(lego / f["file_path"]), "transform_matrix": f["transform_matrix"]}
        for f in train["frames"][:8]
    ]
    frames += [{"file_path": "./gone/r_998", "transform_matrix": np.eye(4).tolist()}] * 2
    path = _write_json(tmp_path / "transforms.json", {"camera_angle_x": 0.69, "frames": frames})
    with pytest.raises(InvalidInput, match=r"2 of 10 frames .* are missing \(\./gone/r_998"):
        load_transforms(path)
    with pytest.raises(InvalidInput, match="no 'frames' list"):
        load_transforms(_write_json(tmp_path / "bad.json", {"camera_angle_x": 0.69}))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(InvalidInput, match="not valid JSON"):
        load_transforms(tmp_path / "broken.json")


@pytest.mark.parametrize(
    ("model", "params"),
    [("opencv", [-0.2, 0.05, 0.001, -0.002, 0.01, 0.0]), ("fisheye", [0.05, -0.01, 0.002, -0.001, 0.0, 0.0])],
)
def test_undistortion_inverts_the_lens_model(model: str, params: list[float]):
    import torch

    rng = np.random.default_rng(0)
    x, y = rng.uniform(-0.6, 0.6, 500), rng.uniform(-0.45, 0.45, 500)
    xd, yd = distort_points(x, y, np.array(params), model)
    K = np.array([[300.0, 0, 320], [0, 300.0, 240], [0, 0, 1]])
    cams = Cameras(np.eye(4)[None], K, 640, 480, model, np.array([params]))
    table = RayTable(cams)
    u = torch.tensor(xd * 300 + 320 - 0.5)
    v = torch.tensor(yd * 300 + 240 - 0.5)
    _, d = table.rays(torch.zeros(500, dtype=torch.long), u, v)
    d = d.double().numpy()
    np.testing.assert_allclose(d[:, 0] / -d[:, 2], x, atol=1e-4)
    np.testing.assert_allclose(-d[:, 1] / -d[:, 2], y, atol=1e-4)


def test_scene_frame_round_trip_and_orbit():
    frame = SceneFrame(centre=np.array([1.0, 2.0, 3.0]), scale=0.5, rotation=orbit_poses(1, 1.0)[0, :3, :3])
    pts = np.random.default_rng(1).normal(size=(10, 3))
    np.testing.assert_allclose(frame.to_world(frame.apply_to_points(pts)), pts, atol=1e-12)
    ring = orbit_poses(8, 3.0, 30.0)
    assert np.allclose(np.linalg.norm(ring[:, :3, 3], axis=1), 3.0)
    forward = -ring[:, :3, 2]
    assert np.allclose((forward * -ring[:, :3, 3]).sum(1) / 3.0, 1.0)  # every camera looks at the origin


def test_zipped_transforms_scene_and_downscaling(tmp_path: Path):
    """A nerfstudio scene inside a .zip opens as a posed scene; max_image_size scales images and intrinsics."""
    import zipfile

    from PIL import Image

    from methods.base import Inputs
    from methods.nerf.scene_run import open_input
    from tests import nerf_scenes as ns

    vertices, faces = ns.cube(1.0)
    K = ns.camera_intrinsics(48, 48, 40.0)
    poses = ns.sphere_poses(10, 3.0)
    images = ns.render_mesh(vertices, faces, ns.face_colour_shader(vertices, faces), poses, K, 48, 48, supersample=1)
    frames = []
    with zipfile.ZipFile(tmp_path / "scene.zip", "w") as zf:
        for i, (img, pose) in enumerate(zip(images, poses, strict=True)):
            name = f"images/frame_{i:03d}.png"
            path = tmp_path / f"{i}.png"
            Image.fromarray(img).save(path)
            zf.write(path, f"capture/{name}")
            frames.append({"file_path": name, "transform_matrix": pose.tolist()})
        meta = {"fl_x": K[0, 0], "fl_y": K[1, 1], "cx": 24.0, "cy": 24.0, "w": 48, "h": 48, "frames": frames}
        zf.writestr("capture/transforms.json", json.dumps(meta))
    scene = open_input(Inputs(modality="video", video_path=str(tmp_path / "scene.zip")), 60, 24)
    assert scene.source == "transforms.json" and scene.images.shape == (10, 24, 24, 4)
    np.testing.assert_allclose(scene.cameras.K[0], [[K[0, 0] / 2, 0, 12], [0, K[1, 1] / 2, 12], [0, 0, 1]])
    np.testing.assert_allclose(scene.cameras.c2w, poses)
    folder = tmp_path / "views"
    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:02d}.png")
    unposed = open_input(Inputs(modality="video", video_path=str(folder)), 6, 0)
    assert unposed.images.shape == (6, 48, 48, 4) and unposed.names[0] == "00.png" and not unposed.sequential
