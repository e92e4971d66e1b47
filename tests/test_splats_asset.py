"""Gaussian splats as an asset kind: normalisation, the 3DGS .ply round trip, the .splat layout."""

from __future__ import annotations

import numpy as np
import pytest

from methods.base import Asset, Gaussians, Mesh, PointCloud, normalize, quat_to_matrix
from methods.export import (
    export_asset,
    export_gaussians_ply,
    export_splat,
    gaussian_centres,
    read_gaussians_ply,
    read_metadata,
)
from methods.splats.sh import sh_basis


def random_gaussians(n: int = 50, degree: int = 3, seed: int = 0) -> Gaussians:
    rng = np.random.default_rng(seed)
    return Gaussians(
        rng.normal(size=(n, 3)) * 2 + 5,
        rng.normal(size=(n, 3)) - 3,
        rng.normal(size=(n, 4)),
        rng.normal(size=n) * 2,
        rng.normal(size=(n, (degree + 1) ** 2, 3)) * 0.3,
    )


def test_gaussians_validate_shapes_and_normalise_quaternions():
    g = random_gaussians(5)
    np.testing.assert_allclose(np.linalg.norm(g.quats, axis=1), 1.0, atol=1e-6)
    assert g.sh_degree == 3 and len(g) == 5
    with pytest.raises(ValueError, match="SH coefficients"):
        Gaussians(g.means, g.log_scales, g.quats, g.opacity_logits, g.sh[:, :5])
    with pytest.raises(ValueError, match="NaN"):
        Gaussians(g.means * np.nan, g.log_scales, g.quats, g.opacity_logits, g.sh)


def test_asset_holds_gaussians_alone_or_with_a_mesh():
    g = random_gaussians(4)
    assert Asset(gaussians=g).kind == "gaussians"
    mesh = Mesh(np.eye(3), [[0, 1, 2]])
    assert Asset(mesh=mesh, gaussians=g).kind == "mesh"
    with pytest.raises(ValueError, match="needs a mesh"):
        Asset()


def test_ply_round_trip_keeps_every_attribute_in_the_3dgs_layout(tmp_path):
    g = random_gaussians(37, degree=3)
    path = export_gaussians_ply(g, tmp_path / "s.ply", {"method": "gaussian-splatting"})
    header = path.read_bytes().split(b"end_header\n")[0].decode()
    props = [line.split()[-1] for line in header.splitlines() if line.startswith("property")]
    assert props[:9] == "x y z nx ny nz f_dc_0 f_dc_1 f_dc_2".split()
    assert props[9:54] == [f"f_rest_{i}" for i in range(45)]
    assert props[54:] == "opacity scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3".split()
    assert "gaussian-splatting" in header
    back = read_gaussians_ply(path)
    for name in ("means", "log_scales", "quats", "opacity_logits", "sh"):
        np.testing.assert_array_equal(getattr(back, name), getattr(g, name), err_msg=name)
    # f_rest is channel-major: f_rest_0 is the red channel's first higher-order coefficient, f_rest_15 green's
    body = np.frombuffer(path.read_bytes().split(b"end_header\n", 1)[1], "<f4").reshape(37, -1)
    assert body[3, 9] == g.sh[3, 1, 0] and body[3, 9 + 15] == g.sh[3, 1, 1]
    # lower degrees too
    g1 = random_gaussians(3, degree=1)
    back1 = read_gaussians_ply(export_gaussians_ply(g1, tmp_path / "d1.ply"))
    np.testing.assert_array_equal(back1.sh, g1.sh)


def test_read_refuses_a_plain_point_cloud_ply(tmp_path):
    from methods.export import export_ply

    path = export_ply(PointCloud(np.zeros((4, 3))), tmp_path / "p.ply")
    with pytest.raises(ValueError):
        read_gaussians_ply(path)


def test_splat_file_size_order_and_encoding(tmp_path):
    g = random_gaussians(20, degree=1)
    data = export_splat(g, tmp_path / "a.splat").read_bytes()
    assert len(data) == 32 * len(g)
    rec = np.frombuffer(data, np.dtype([("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)]))
    key = np.exp(g.log_scales.astype(np.float64).sum(1)) / (1 + np.exp(-g.opacity_logits.astype(np.float64)))
    order = np.argsort(-key)
    np.testing.assert_allclose(rec["pos"], g.means[order], rtol=1e-6)
    np.testing.assert_allclose(rec["scale"], np.exp(g.log_scales[order]), rtol=1e-5)
    assert key[order][0] == key.max() and key[order][-1] == key.min()  # largest (volume x opacity) first
    np.testing.assert_allclose(rec["rgba"][:, 3] / 255.0, g.opacities[order], atol=1 / 255)
    np.testing.assert_allclose((rec["rot"].astype(float) - 128) / 128, g.quats[order], atol=1 / 128)


def _colour(g: Gaussians, i: int, d: np.ndarray) -> np.ndarray:
    return sh_basis(d, g.sh_degree) @ g.sh[i].astype(np.float64)


def test_normalisation_invariance_of_a_moved_scaled_turned_scene():
    g = random_gaussians(30, degree=3, seed=1)
    # the same scene given Z-up, moved by t and scaled by s: x_z = s * A x + t, A = rotation Y-up -> Z-up
    a = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float64)
    s, t = 3.7, np.array([10.0, -4.0, 2.0])
    from methods.base import matrix_to_quat, quat_multiply
    from methods.splats.sh import rotate_sh

    moved = Gaussians(
        (g.means @ a.T) * s + t,
        g.log_scales + np.log(s),
        quat_multiply(np.broadcast_to(matrix_to_quat(a), g.quats.shape), g.quats.astype(np.float64)),
        g.opacity_logits,
        rotate_sh(g.sh, a),
    )
    n1 = normalize(Asset(gaussians=g)).gaussians
    n2 = normalize(Asset(gaussians=moved, up="+Z")).gaussians
    np.testing.assert_allclose(n2.means, n1.means, atol=1e-5)
    np.testing.assert_allclose(n2.log_scales, n1.log_scales, atol=1e-5)
    r1, r2 = quat_to_matrix(n1.quats), quat_to_matrix(n2.quats)
    np.testing.assert_allclose(r2, r1, atol=1e-5)  # same orientation (the quaternion sign may differ)
    np.testing.assert_allclose(n2.sh, n1.sh, atol=1e-4)
    np.testing.assert_array_equal(n2.opacity_logits, n1.opacity_logits)
    # and the normalised frame is the canonical one: centred, radius 1
    lo, hi = n1.means.min(0), n1.means.max(0)
    np.testing.assert_allclose((lo + hi) / 2, 0, atol=1e-5)
    assert np.linalg.norm(n1.means, axis=1).max() == pytest.approx(1.0, abs=1e-5)


def test_rotated_sh_gives_the_colour_seen_from_the_rotated_direction():
    g = random_gaussians(3, degree=3, seed=2)
    from methods.splats.sh import rotate_sh

    angle = 0.7
    r = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    turned = rotate_sh(g.sh, r)
    d = np.random.default_rng(3).normal(size=(10, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    for i in range(3):
        np.testing.assert_allclose(sh_basis(d @ r.T, 3) @ turned[i], sh_basis(d, 3) @ g.sh[i], atol=1e-9)


def test_export_asset_writes_splat_files_and_centres(tmp_path):
    g = random_gaussians(40, degree=0, seed=4)
    files = export_asset(normalize(Asset(gaussians=g)), tmp_path, {"method": "gaussian-splatting"})
    assert {"splat_ply", "splat", "centres_glb", "glb"} <= set(files)
    assert files["splat"].stat().st_size == 32 * 40
    assert read_metadata(files["glb"])["method"] == "gaussian-splatting"
    centres = gaussian_centres(g)
    assert len(centres.points) == int((g.opacities >= 0.5).sum())
    from methods.export import load_asset

    assert len(load_asset(files["centres_glb"]).points.points) == len(centres.points)
