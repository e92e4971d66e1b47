"""Geometry against a reference: analytic Chamfer / F-score, sampling, normals, IoU, ICP, diversity."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from eval.judging.metrics import diversity, geometry
from methods.base import Mesh
from tests.eval_support import sphere_points, unit_cube


def test_identical_point_sets_have_zero_chamfer_and_f_score_one():
    pts = sphere_points(5000, 0)
    c = geometry.chamfer_distance(pts, pts)
    assert c == {"chamfer_l1": 0.0, "chamfer_l2": 0.0}
    assert geometry.f_score(pts, pts, 1e-6) == 1.0


def test_sphere_shifted_by_d_matches_the_hand_computation():
    # Unit spheres, centres d apart (d < 1). For a point on one, its distance to the other sphere is
    # |rho - 1| with rho^2 = 1 + d^2 - 2 d u, u uniform on [-1, 1]: E|rho - 1| = d / 2,
    # E(rho - 1)^2 = d^2 / 3, and P(|rho - 1| < tau) = tau / d, so F(tau) = tau / d.
    d = 0.4
    a = sphere_points(50_000, 1)
    b = sphere_points(50_000, 2) + [d, 0.0, 0.0]
    pair = geometry.pair_distances(a, b)
    c = geometry.chamfer_from(pair)
    assert c["chamfer_l1"] == pytest.approx(d / 2, rel=0.02)
    assert c["chamfer_l2"] == pytest.approx(d**2 / 3, rel=0.02)
    assert geometry.f_score_from(pair, 0.1)["f_score"] == pytest.approx(0.1 / d, abs=0.01)
    assert geometry.f_score(a, b, 0.1) == geometry.f_score_from(pair, 0.1)["f_score"]


def test_surface_samples_are_seeded_and_uniform_by_area():
    box = unit_cube()
    mesh = Mesh(box.vertices, box.faces)
    p1, n1 = geometry.sample_surface(mesh, 6000, seed=3)
    p2, _ = geometry.sample_surface(mesh, 6000, seed=3)
    assert np.array_equal(p1, p2)
    assert np.allclose(np.abs(p1).max(axis=1), 0.5)  # on the surface
    counts = np.bincount(np.argmax(np.abs(n1), axis=1) * 2 + (n1.max(axis=1) > 0.5), minlength=6)
    assert counts.min() > 850 and counts.max() < 1150  # six equal faces, about 1000 each
    assert np.allclose(np.linalg.norm(n1, axis=1), 1.0)
    with pytest.raises(ValueError):
        geometry.sample_surface(Mesh(np.zeros((3, 3)), np.zeros((0, 3))), 10)


def test_compare_to_reference_of_a_mesh_with_itself():
    sphere = trimesh.creation.icosphere(subdivisions=3)
    mesh = Mesh(sphere.vertices, sphere.faces)
    pts, normals = geometry.sample_surface(mesh, 20_000, seed=0)
    out = geometry.compare_to_reference(pts, normals, mesh, geometry.ReferenceSettings(samples=20_000))
    assert out["chamfer_l1"] < 0.02  # half the sample spacing of 20k points on a unit sphere
    assert out["f_score@0.05"] == pytest.approx(1.0, abs=1e-3)
    assert out["normal_consistency"] > 0.98
    assert out["thresholds"]["0.01"] == pytest.approx(0.01 * 2 * np.sqrt(3) * 1.0, rel=0.02)  # of the diagonal


def test_volume_iou_of_two_cubes_shifted_by_half():
    a, b = unit_cube(), unit_cube((0.5, 0.0, 0.0))
    iou = geometry.volume_iou(Mesh(a.vertices, a.faces), Mesh(b.vertices, b.faces), n=100_000)
    assert iou == pytest.approx(1 / 3, abs=0.01)
    assert geometry.volume_iou(Mesh(a.vertices, a.faces), Mesh(a.vertices, a.faces), n=20_000) == 1.0


def test_icp_recovers_a_small_rigid_motion():
    pts = sphere_points(4000, 0) * [1.0, 0.6, 0.3]  # an ellipsoid: rotation is observable
    angle = np.radians(6.0)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    moved = pts @ rot.T + [0.02, -0.01, 0.0]
    transform, rmse = geometry.icp(moved, pts, iterations=60)
    aligned = moved @ transform[:3, :3].T + transform[:3, 3]
    assert np.abs(aligned - pts).max() < 1e-3 and rmse < 1e-3


def test_chamfer_accumulator_means_over_pairs():
    acc = geometry.ChamferFScore(threshold=0.05)
    pts = sphere_points(2000, 0)
    acc.update(pts, pts)
    acc.update(pts, pts + [0.2, 0, 0])
    out = acc.compute()
    single = geometry.chamfer_distance(pts, pts + [0.2, 0, 0])["chamfer_l1"]
    assert out["chamfer_l1"] == pytest.approx(single / 2) and 0.5 < out["f_score"] < 1.0
    acc.reset()
    assert acc.values == {}


def test_diversity_across_seeds():
    pts = sphere_points(2000, 0)
    assert diversity.mean_pairwise_chamfer([pts, pts, pts]) == 0.0
    shifted = diversity.mean_pairwise_chamfer([pts, pts + [0.3, 0, 0]])
    assert shifted == pytest.approx(geometry.chamfer_distance(pts, pts + [0.3, 0, 0])["chamfer_l1"])
    assert diversity.mean_pairwise_cosine_distance(np.eye(3)) == pytest.approx(1.0)
    assert diversity.mean_pairwise_cosine_distance(np.ones((3, 4))) == pytest.approx(0.0)
    acc = diversity.Diversity()
    acc.update(pts, np.array([1.0, 0.0]))
    acc.update(pts + [0.3, 0, 0], np.array([0.0, 2.0]))
    out = acc.compute()
    assert out["pairwise_chamfer_l1"] == pytest.approx(shifted) and out["pairwise_clip_distance"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        diversity.mean_pairwise_chamfer([pts])
