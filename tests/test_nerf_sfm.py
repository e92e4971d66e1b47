"""Structure from motion (pycolmap) on frames rendered from a textured mesh with known cameras."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from methods.base import InvalidInput
from tests import nerf_scenes as ns
from tests.generators import drive

pytest.importorskip("pycolmap")

SIZE, VIEWS, DISTANCE, FOV = 224, 24, 2.2, 45.0
# Stated tolerances after the best similarity transform (the scale of an SfM model is arbitrary):
CENTRE_TOLERANCE = 0.03  # camera centres, as a fraction of the camera distance
ROTATION_TOLERANCE_DEG = 2.0
FOCAL_TOLERANCE = 0.03  # relative


def _drain(gen):
    lines, value = drive(gen)
    return value, lines


@pytest.fixture(scope="module")
def teapot_views(shared_data: Path):
    path = shared_data / "meshes" / "utah_teapot_pytorch3d" / "teapot.obj"
    if not path.is_file():
        pytest.skip("the teapot mesh is not in the shared data")
    vertices, faces = ns.load_mesh(path)
    K = ns.camera_intrinsics(SIZE, SIZE, FOV)
    poses = ns.ring_poses(VIEWS, DISTANCE, elevation_deg=25.0, wobble_deg=12.0)
    images = ns.render_mesh(
        vertices, faces, ns.noise_shader(), poses, K, SIZE, SIZE, supersample=1, background=(0.5, 0.5, 0.5)
    )
    return images, poses, K


def test_registered_cameras_match_the_known_ones_up_to_a_similarity(teapot_views):
    from methods.nerf.sfm import estimate_poses

    images, poses, K = teapot_views
    result, lines = _drain(estimate_poses(images, [f"v{i}" for i in range(len(images))], matcher="exhaustive"))
    assert len(result.registered) >= 0.9 * VIEWS
    assert result.reprojection_error < 1.0 and len(result.points) > 200
    assert "registered" in result.summary(VIEWS) and result.diagnostics["matcher"] == "exhaustive"
    est = result.cameras.c2w
    known = poses[result.registered]
    s, R, t = ns.umeyama(est[:, :3, 3], known[:, :3, 3])
    aligned = (s * (R @ est[:, :3, 3].T)).T + t
    assert np.linalg.norm(aligned - known[:, :3, 3], axis=1).max() < CENTRE_TOLERANCE * DISTANCE
    # orientations, OpenGL convention on both sides: R maps the SfM frame onto the known one
    for e, k in zip(est, known, strict=True):
        cos = (np.trace((R @ e[:3, :3]).T @ k[:3, :3]) - 1) / 2
        assert np.degrees(np.arccos(np.clip(cos, -1, 1))) < ROTATION_TOLERANCE_DEG
    assert result.cameras.K[0, 0, 0] == pytest.approx(K[0, 0], rel=FOCAL_TOLERANCE)
    assert result.cameras.K[0, 0, 2] == pytest.approx(SIZE / 2, abs=1.0)


def test_frames_without_overlap_fail_with_a_clear_message():
    from methods.nerf.sfm import estimate_poses

    rng = np.random.default_rng(0)
    # unrelated random images: nothing to match
    noise = rng.integers(0, 256, (6, 96, 96, 3), dtype=np.uint8)
    with pytest.raises(InvalidInput, match="structure from motion (could not register|registered only)"):
        _drain(estimate_poses(noise, [f"n{i}" for i in range(6)], matcher="exhaustive"))


def test_points_triangulated_from_known_poses_lie_on_the_surface(shared_data: Path):
    """Known cameras held fixed: features, matches, triangulation; the points land on the teapot's surface, in the
    frame of the given poses (no similarity to fit), and a pose that was not estimated cannot drift."""
    from scipy.spatial import cKDTree

    from methods.nerf.cameras import Cameras
    from methods.nerf.sfm import triangulate_known_poses

    path = shared_data / "meshes" / "utah_teapot_pytorch3d" / "teapot.obj"
    if not path.is_file():
        pytest.skip("the teapot mesh is not in the shared data")
    vertices, faces = ns.load_mesh(path)
    size, views = 128, 12
    K = ns.camera_intrinsics(size, size, FOV)
    poses = ns.ring_poses(views, DISTANCE, elevation_deg=25.0, wobble_deg=12.0)
    images = ns.render_mesh(vertices, faces, ns.noise_shader(), poses, K, size, size, supersample=1,
                            background=(0.5, 0.5, 0.5))  # fmt: skip
    found = triangulate_known_poses(images, Cameras(poses, K, size, size), threads=1)
    assert len(found.points) > 50 and found.diagnostics["points"] == len(found.points)
    distance = cKDTree(ns.surface_samples(vertices, faces, n=200000)).query(found.points)[0]
    print(f"{len(distance)} points, median {np.median(distance):.4f}, 90% {np.quantile(distance, 0.9):.4f}")
    # the teapot's radius is 1: points within a hundredth of it, nearly all of them within a few hundredths
    assert np.median(distance) < 0.01 and np.quantile(distance, 0.9) < 0.03
    assert found.diagnostics["reprojection_error_px"] < 1.0


def test_triangulation_without_shared_features_says_so():
    from methods.nerf.cameras import Cameras
    from methods.nerf.sfm import triangulate_known_poses

    flat = np.full((4, 64, 64, 3), 128, np.uint8)  # nothing to detect
    K = ns.camera_intrinsics(64, 64, FOV)
    with pytest.raises(InvalidInput, match="no points could be triangulated"):
        triangulate_known_poses(flat, Cameras(ns.ring_poses(4, DISTANCE), K, 64, 64), threads=1)
