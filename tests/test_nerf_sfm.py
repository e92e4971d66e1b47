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
