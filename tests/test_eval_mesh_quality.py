"""Mesh quality, each property on its own, on meshes with known answers; point-cloud quality."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
import trimesh

from eval.judging.metrics.mesh_quality import mesh_quality, point_quality, self_intersecting_faces, triangles_intersect
from tests.eval_support import unit_cube


def test_cube_area_volume_genus_watertight():
    box = unit_cube()
    q = mesh_quality(box.vertices, box.faces)
    assert q.surface_area == pytest.approx(6.0) and q.volume == pytest.approx(1.0)
    assert q.watertight and q.winding_consistent and q.genus == 0 and q.euler_characteristic == 2
    assert (q.boundary_edges, q.non_manifold_edges, q.non_manifold_vertices, q.self_intersecting_faces) == (0, 0, 0, 0)
    assert (q.components, q.degenerate_faces, q.vertices, q.faces, q.edges) == (1, 0, 8, 12, 18)


def test_two_overlapping_cubes_are_watertight_yet_self_intersecting():
    both = trimesh.util.concatenate([unit_cube(), unit_cube((0.5, 0.4, 0.3))])
    q = mesh_quality(both.vertices, both.faces)
    assert q.watertight and q.winding_consistent and q.components == 2
    assert q.self_intersecting_faces > 0
    apart = trimesh.util.concatenate([unit_cube(), unit_cube((2.0, 0.0, 0.0))])
    assert mesh_quality(apart.vertices, apart.faces).self_intersecting_faces == 0


def test_torus_has_genus_one():
    torus = trimesh.creation.torus(major_radius=1.0, minor_radius=0.3)
    q = mesh_quality(torus.vertices, torus.faces)
    assert q.watertight and q.genus == 1 and q.euler_characteristic == 0


def test_open_box_has_four_boundary_edges_and_no_volume():
    box = unit_cube()
    q = mesh_quality(box.vertices, box.faces[:-2])  # one side (two triangles) removed
    assert not q.watertight and q.boundary_edges == 4 and q.volume is None and q.genus is None


def test_flipped_face_breaks_winding_only():
    box = unit_cube()
    faces = box.faces.copy()
    faces[0] = faces[0][::-1]
    q = mesh_quality(box.vertices, faces)
    assert q.watertight and not q.winding_consistent and q.volume is None


def test_welding_ignores_uv_seams():
    box = unit_cube()
    split_vertices = box.vertices[box.faces].reshape(-1, 3)  # every face with its own three vertices
    split_faces = np.arange(len(split_vertices)).reshape(-1, 3)
    q = mesh_quality(split_vertices, split_faces)
    assert q.vertices == 36 and q.welded_vertices == 8 and q.watertight and q.genus == 0


def test_non_manifold_edge_and_vertex():
    fin = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]], float)
    q = mesh_quality(fin, [[0, 1, 2], [1, 0, 3], [0, 1, 4]])  # three faces on edge 0-1
    assert q.non_manifold_edges == 1
    bowtie = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [-1, 0, 0], [-1, -1, 0]], float)
    q = mesh_quality(bowtie, [[0, 1, 2], [0, 3, 4]])  # two fans meeting at vertex 0
    assert q.non_manifold_vertices == 1 and q.non_manifold_edges == 0 and q.components == 2


def test_degenerate_faces_are_counted():
    box = unit_cube()
    faces = np.concatenate([box.faces, [[0, 0, 1], [0, 1, 1]]])
    q = mesh_quality(box.vertices, faces)
    assert q.degenerate_faces == 2 and q.watertight  # they are left out of the topology


def test_coplanar_and_crossing_triangles():
    t = np.array([[[0, 0, 0], [1, 0, 0], [0, 1, 0]]], float)
    assert triangles_intersect(t, t + [0.2, 0.2, 0.0])[0]  # coplanar overlap
    assert not triangles_intersect(t, t + [2.0, 0.0, 0.0])[0]  # coplanar apart
    crossing = np.array([[[0.2, 0.2, -1], [0.2, 0.2, 1], [0.3, 0.5, 0]]], float)
    assert triangles_intersect(t, crossing)[0]
    assert not triangles_intersect(t, crossing + [0, 0, 2.0])[0]


def test_broad_phase_finds_what_brute_force_finds():
    rng = np.random.default_rng(0)
    centres = rng.uniform(-1, 1, size=(80, 3))
    tris = centres[:, None, :] + rng.normal(scale=0.25, size=(80, 3, 3))
    tris[:5] *= 4.0  # a few big triangles exercise the coarser grid levels
    vertices = tris.reshape(-1, 3)
    faces = np.arange(len(vertices)).reshape(-1, 3)
    fast = self_intersecting_faces(vertices, faces)
    slow = np.zeros(len(faces), bool)
    pairs = np.array(list(combinations(range(len(faces)), 2)))
    hit = triangles_intersect(tris[pairs[:, 0]], tris[pairs[:, 1]])
    slow[pairs[hit].ravel()] = True
    assert fast.sum() > 10 and np.array_equal(fast, slow)


def test_point_quality_spacing_and_outliers():
    g = np.stack(np.meshgrid(np.arange(10), np.arange(10), np.arange(10)), -1).reshape(-1, 3) * 0.1
    q = point_quality(g)
    assert q.points == 1000 and q.spacing_mean == pytest.approx(0.1) and q.spacing_std == pytest.approx(0.0, abs=1e-12)
    noisy = point_quality(np.concatenate([g, [[10.0, 10.0, 10.0], [-9.0, 5.0, 3.0]]]))
    assert noisy.outlier_fraction == pytest.approx(2 / 1002)
    assert point_quality(np.zeros((1, 3))).spacing_mean is None
