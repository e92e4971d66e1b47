"""Ray casting against a triangle mesh: first hits, inside/outside by ray parity, and decimation.

Embree does the ray casting through trimesh's ``ray_pyembree`` binding (the ``embreex`` wheel
carries Embree itself), and quadric decimation comes from the ``fast-simplification`` wheel: no
system library beyond what pip installs is needed (Open3D's wheel links libusb, absent on a bare
Debian or Ubuntu). Rays are cast in float32, as Embree does; distances come back in float64.
"""

from __future__ import annotations

import numpy as np

PARITY_DIRECTIONS = np.array([[0.5773, 0.5774, 0.5773], [-0.6123, 0.3535, 0.7071], [0.2672, -0.8018, 0.5345]])


class RayScene:
    """One mesh, built into Embree's acceleration structure once, for many ray queries."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        import trimesh
        from trimesh.ray import ray_pyembree

        self.n_faces = len(faces)
        mesh = trimesh.Trimesh(np.asarray(vertices, np.float64), np.asarray(faces, np.int64), process=False)
        self._intersector = ray_pyembree.RayMeshIntersector(mesh) if self.n_faces else None

    def first_hits(self, origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance along each unit ray to its first hit (inf if none) and the face hit (-1 if none)."""
        origins = np.asarray(origins, np.float64)
        directions = np.asarray(directions, np.float64)
        t = np.full(len(origins), np.inf)
        prim = np.full(len(origins), -1, np.int64)
        if len(origins) == 0 or self._intersector is None:
            return t, prim
        locations, index_ray, index_tri = self._intersector.intersects_location(
            origins, directions, multiple_hits=False
        )
        if len(index_ray):
            t[index_ray] = np.einsum("ij,ij->i", locations - origins[index_ray], directions[index_ray])
            prim[index_ray] = index_tri
        return t, prim

    def inside(self, points: np.ndarray) -> np.ndarray:
        """Inside/outside of each point: odd crossings along a ray, majority over 3 fixed directions.

        The vote keeps a ray through a small hole or along an edge from flipping a point; the result
        is exact for closed meshes.
        """
        points = np.asarray(points, np.float64)
        if len(points) == 0 or self._intersector is None:
            return np.zeros(len(points), bool)
        votes = np.zeros(len(points), np.int64)
        for d in PARITY_DIRECTIONS:
            d = d / np.linalg.norm(d)
            rays = np.broadcast_to(d, points.shape).copy()
            index_ray = self._intersector.intersects_id(points, rays, multiple_hits=True)[1]
            votes += np.bincount(index_ray, minlength=len(points)) % 2
        return votes >= 2


def first_hits(
    vertices: np.ndarray, faces: np.ndarray, origins: np.ndarray, directions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`RayScene.first_hits` for one batch of rays."""
    return RayScene(vertices, faces).first_hits(origins, directions)


def inside(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """:meth:`RayScene.inside` for one batch of points."""
    return RayScene(vertices, faces).inside(points)


def decimate(vertices: np.ndarray, faces: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric edge-collapse decimation to about ``target_faces`` faces, degenerate faces dropped."""
    import fast_simplification
    import trimesh

    vertices = np.ascontiguousarray(vertices, np.float32)
    faces = np.ascontiguousarray(faces, np.int64)
    if len(faces) <= target_faces:
        return np.asarray(vertices, np.float64), faces
    v, f = fast_simplification.simplify(vertices, faces, target_count=int(target_faces))
    tm = trimesh.Trimesh(np.asarray(v, np.float64), np.asarray(f, np.int64), process=False)
    tm.update_faces(tm.nondegenerate_faces())
    tm.remove_unreferenced_vertices()
    return np.asarray(tm.vertices), np.asarray(tm.faces, np.int64)
