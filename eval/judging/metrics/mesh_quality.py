"""Mesh and point-cloud quality, each property measured on its own.

A mesh can be watertight and self-intersecting, or consistently wound and non-manifold: every
check is reported separately. Topology is measured on the mesh with coincident vertices welded
(UV and normal seams split vertices without opening the surface); counts of the file's own
vertices and faces are reported as stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

WELD_TOLERANCE = 1e-6  # in the normalised frame (unit bounding sphere)
DEGENERATE_AREA = 1e-12  # faces with less area (normalised frame) count as degenerate
OUTLIER_NEIGHBOURS = 20  # statistical outlier rule as Open3D's remove_statistical_outlier
OUTLIER_STD_RATIO = 2.0


@dataclass
class MeshQuality:
    """Every mesh-quality measurement; ``None`` where a value is undefined (volume of an open mesh)."""

    vertices: int
    faces: int
    welded_vertices: int
    edges: int
    watertight: bool
    winding_consistent: bool
    non_manifold_edges: int
    non_manifold_vertices: int
    boundary_edges: int
    components: int
    self_intersecting_faces: int
    degenerate_faces: int
    euler_characteristic: int
    genus: int | None
    surface_area: float
    volume: float | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def weld(vertices: np.ndarray, faces: np.ndarray, tolerance: float = WELD_TOLERANCE) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices that fall in the same ``tolerance`` cell: (welded faces, number of welded vertices)."""
    v = np.asarray(vertices, dtype=np.float64)
    if len(v) == 0:
        return np.asarray(faces, dtype=np.int64).reshape(-1, 3), 0
    q = np.round(v / tolerance).astype(np.int64)
    q -= q.min(axis=0)
    span = q.max(axis=0) + 1
    if float(span[0]) * float(span[1]) * float(span[2]) < 2.0**62:  # one int64 per position: a 1-D sort
        inverse, count = _inverse(q[:, 0] * (span[1] * span[2]) + q[:, 1] * span[2] + q[:, 2])
    else:
        _, inverse = np.unique(q, axis=0, return_inverse=True)
        inverse, count = inverse.reshape(-1), int(inverse.max()) + 1
    return inverse[np.asarray(faces, dtype=np.int64)], count


def _inverse(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense ids of equal codes (in sorted order of the codes) and how many distinct codes there are."""
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    new = np.empty(len(codes), dtype=bool)
    new[:1] = True
    new[1:] = sorted_codes[1:] != sorted_codes[:-1]
    inverse = np.empty(len(codes), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return inverse, int(new.sum())


def _edge_table(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undirected edges of the faces: (unique edges (E, 2), face of each half-edge, edge id of each half-edge)."""
    half = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    face_of = np.tile(np.arange(len(faces)), 3)
    lo, hi = np.minimum(half[:, 0], half[:, 1]), np.maximum(half[:, 0], half[:, 1])
    edge_id, count = _inverse(lo * (int(faces.max()) + 1) + hi)
    edges = np.empty((count, 2), dtype=np.int64)
    edges[edge_id, 0], edges[edge_id, 1] = lo, hi
    return edges, face_of, edge_id


def mesh_quality(vertices: np.ndarray, faces: np.ndarray, weld_tolerance: float = WELD_TOLERANCE) -> MeshQuality:
    """All quality measurements of a triangle mesh (positions in the normalised frame)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    v = np.asarray(vertices, dtype=np.float64)
    raw_faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    f, n_welded = weld(v, raw_faces, weld_tolerance)
    a, b, c = v[raw_faces[:, 0]], v[raw_faces[:, 1]], v[raw_faces[:, 2]]
    cross = np.cross(b - a, c - a)
    areas = 0.5 * np.linalg.norm(cross, axis=1)
    repeated = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 2] == f[:, 0])
    degenerate = repeated | (areas < DEGENERATE_AREA)
    good = f[~repeated]  # faces with a repeated vertex are not surface elements: leave them out of topology
    if len(good) == 0:
        return MeshQuality(
            len(v), len(raw_faces), n_welded, 0, False, True, 0, 0, 0, 0, 0, int(degenerate.sum()), 0, None, 0.0, None
        )
    edges, face_of, edge_id = _edge_table(good)
    per_edge = np.bincount(edge_id, minlength=len(edges))
    boundary = int((per_edge == 1).sum())
    non_manifold_edges = int((per_edge > 2).sum())
    watertight = boundary == 0 and non_manifold_edges == 0
    # consistent winding: each edge shared by two faces is walked in opposite directions by them
    half = np.concatenate([good[:, [0, 1]], good[:, [1, 2]], good[:, [2, 0]]])
    forward = half[:, 0] < half[:, 1]
    two = per_edge[edge_id] == 2
    forward_count = np.bincount(edge_id[two], weights=forward[two], minlength=len(edges))
    winding_consistent = bool(np.all(forward_count[per_edge == 2] == 1))
    # components: faces joined through shared edges
    order = np.argsort(edge_id, kind="stable")
    same = edge_id[order][1:] == edge_id[order][:-1]
    f1, f2 = face_of[order][:-1][same], face_of[order][1:][same]
    adjacency = coo_matrix((np.ones(len(f1)), (f1, f2)), shape=(len(good), len(good)))
    n_components, _ = connected_components(adjacency, directed=False)
    used = int((np.bincount(good.reshape(-1)) > 0).sum())
    euler = int(used - len(edges) + len(good))
    nm_vertices = _non_manifold_vertices(good, half, edge_id, order, same)
    genus = None
    if watertight and nm_vertices == 0 and (2 * n_components - euler) % 2 == 0:
        genus = (2 * n_components - euler) // 2
    volume = None
    if watertight and winding_consistent:
        fv = v[raw_faces[~repeated]]
        volume = float(abs(np.einsum("ij,ij->i", fv[:, 0], np.cross(fv[:, 1], fv[:, 2])).sum()) / 6.0)
    return MeshQuality(
        vertices=len(v),
        faces=len(raw_faces),
        welded_vertices=n_welded,
        edges=len(edges),
        watertight=watertight,
        winding_consistent=winding_consistent,
        non_manifold_edges=non_manifold_edges,
        non_manifold_vertices=nm_vertices,
        boundary_edges=boundary,
        components=int(n_components),
        self_intersecting_faces=int(self_intersecting_faces(v, raw_faces, f, ~degenerate).sum()),
        degenerate_faces=int(degenerate.sum()),
        euler_characteristic=euler,
        genus=genus,
        surface_area=float(areas.sum()),
        volume=volume,
    )


def _non_manifold_vertices(faces, half, edge_id, order, same) -> int:
    """Vertices whose faces do not form one fan (bow-ties, fans that meet only at the vertex).

    Each corner (face, vertex) is a node; two corners of the same vertex are joined when their faces
    share an edge through it. A vertex is non-manifold when its corners form more than one group.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_faces = len(faces)
    # half-edge h = k * F + face goes from corner (face, k) to corner (face, (k + 1) % 3)
    start_corner = np.arange(3 * n_faces)  # corner id = k * F + face, k = position in the face
    end_corner = ((np.arange(3 * n_faces) // n_faces + 1) % 3) * n_faces + np.arange(3 * n_faces) % n_faces
    h1, h2 = order[:-1][same], order[1:][same]  # consecutive half-edges on the same undirected edge
    # match the corners of h1 and h2 that sit on the same vertex
    s1, e1, s2, e2 = start_corner[h1], end_corner[h1], start_corner[h2], end_corner[h2]
    v_s1 = half[h1, 0]
    v_s2 = half[h2, 0]
    aligned = v_s1 == v_s2
    rows = np.concatenate([s1, e1])
    cols = np.concatenate([np.where(aligned, s2, e2), np.where(aligned, e2, s2)])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(3 * n_faces, 3 * n_faces))
    _, label = connected_components(graph, directed=False)
    vertex_of_corner = faces.T.reshape(-1)  # corner k * F + face -> faces[face, k]
    code = np.sort(vertex_of_corner * (int(label.max()) + 1) + label)
    distinct = code[np.concatenate([[True], code[1:] != code[:-1]])]
    fans = np.bincount(distinct // (int(label.max()) + 1))
    return int((fans > 1).sum())


# ----------------------------------------------------------------------------- self-intersections


def self_intersecting_faces(
    vertices: np.ndarray, faces: np.ndarray, welded: np.ndarray | None = None, valid: np.ndarray | None = None
) -> np.ndarray:
    """A boolean per face: does it cross another face with which it shares no vertex?

    Broad phase: a hierarchy of uniform grids (cells of the median face size, coarser levels for
    bigger faces); narrow phase: exact orientation tests, coplanar overlaps included. Faces that
    share a vertex (after welding) are not tested against each other.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    welded = f if welded is None else welded
    hit = np.zeros(len(f), dtype=bool)
    ids = np.arange(len(f)) if valid is None else np.nonzero(valid)[0]
    if len(ids) < 2:
        return hit
    tri = v[f[ids]]  # (n, 3, 3)
    lo, hi = tri.min(axis=1), tri.max(axis=1)
    i, j = _candidate_pairs(lo, hi)
    if len(i) == 0:
        return hit
    wi, wj = welded[ids[i]], welded[ids[j]]
    shared = np.zeros(len(i), dtype=bool)
    for a in range(3):
        for b in range(3):
            shared |= wi[:, a] == wj[:, b]
    i, j = i[~shared], j[~shared]
    for start in range(0, len(i), 1 << 18):
        a, b = i[start : start + (1 << 18)], j[start : start + (1 << 18)]
        crossing = triangles_intersect(tri[a], tri[b])
        hit[ids[a[crossing]]] = True
        hit[ids[b[crossing]]] = True
    return hit


def _candidate_pairs(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) of boxes that overlap, from a hierarchy of uniform grids; no all-pairs loop.

    Level L has cells of 4^L times the median box size; a box lives at the first level where
    it spans at most 2 cells per axis, and is compared with the boxes of its own and lower levels
    that share one of its cells there.
    """
    extent = (hi - lo).max(axis=1)
    origin = lo.min(axis=0)
    size = float((hi.max(axis=0) - origin).max())
    base = max(float(np.median(extent)), size / 2.0**20, 1e-300)  # 2^20 cells per axis fit an int64
    level = np.ceil(np.log(np.maximum(extent / base, 1.0)) / np.log(4.0)).astype(np.int64)
    pairs = []
    for lev in np.unique(level).tolist():
        grid = _Grid(lo, hi, origin, base * 4.0**lev)
        face, code = grid.expand(np.nonzero(level == lev)[0])
        start = np.arange(1, len(code) + 1)  # same level: each pair from its first member only
        pairs.append(grid.pairs(face, code, face, code, start, np.searchsorted(code, code, side="right")))
        lower = np.nonzero(level < lev)[0]
        if len(lower):
            l_face, l_code = grid.expand(lower)
            start = np.searchsorted(l_code, code, side="left")
            pairs.append(grid.pairs(face, code, l_face, l_code, start, np.searchsorted(l_code, code, side="right")))
    allp = np.concatenate(pairs)
    return allp[:, 0], allp[:, 1]


@dataclass
class _Grid:
    """One level of the broad phase: boxes mapped to the integer codes of the cells they touch."""

    lo: np.ndarray
    hi: np.ndarray
    origin: np.ndarray
    cell: float

    def __post_init__(self) -> None:
        self.dims = np.floor((self.hi.max(axis=0) - self.origin) / self.cell).astype(np.int64) + 2

    def code(self, points: np.ndarray) -> np.ndarray:
        c = np.floor((points - self.origin) / self.cell).astype(np.int64)
        return (c[:, 0] * self.dims[1] + c[:, 1]) * self.dims[2] + c[:, 2]

    def expand(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(box, cell code) for every cell each box touches, sorted by code."""
        c_lo = np.floor((self.lo[ids] - self.origin) / self.cell).astype(np.int64)
        span = np.floor((self.hi[ids] - self.origin) / self.cell).astype(np.int64) - c_lo + 1
        reps = span.prod(axis=1)
        slot = np.repeat(np.arange(len(ids)), reps)
        k = np.arange(len(slot)) - np.repeat(np.cumsum(reps) - reps, reps)
        sp = span[slot]
        c = c_lo[slot] + np.stack([k // (sp[:, 1] * sp[:, 2]), (k // sp[:, 2]) % sp[:, 1], k % sp[:, 2]], axis=1)
        code = (c[:, 0] * self.dims[1] + c[:, 1]) * self.dims[2] + c[:, 2]
        order = np.argsort(code, kind="stable")
        return ids[slot][order], code[order]

    def pairs(self, q_box, q_code, e_box, e_code, start, stop) -> np.ndarray:
        """Overlapping pairs between each query entry and the entries ``start:stop`` of its cell.

        A pair is kept in one cell only, the one holding the low corner of the boxes' overlap.
        """
        count = stop - start
        q = np.repeat(np.arange(len(q_box)), count)
        e = np.repeat(start - np.cumsum(count) + count, count) + np.arange(int(count.sum()))
        fi, fj, code = q_box[q], e_box[e], q_code[q]
        lo, hi = self.lo, self.hi
        keep = (fi != fj) & np.all((lo[fi] <= hi[fj]) & (hi[fi] >= lo[fj]), axis=1)
        fi, fj, code = fi[keep], fj[keep], code[keep]
        keep = self.code(np.maximum(lo[fi], lo[fj])) == code
        return np.stack([np.minimum(fi, fj)[keep], np.maximum(fi, fj)[keep]], axis=1)


def _orient3d(a, b, c, d) -> np.ndarray:
    """Signed volume of (a, b, c, d): positive when d is below the plane of a, b, c (right-hand rule)."""
    return np.einsum("ij,ij->i", np.cross(b - a, c - a), a - d)


def _orient2d(a, b, c) -> np.ndarray:
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


def triangles_intersect(t1: np.ndarray, t2: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Do triangles t1[k] and t2[k] (each (n, 3, 3)) cross? Proper crossings and coplanar overlaps.

    Non-coplanar: an edge of one crosses the other's interior (strict orientation signs, so faces
    that only touch along a line or at a point do not count). Coplanar: edges cross in the plane or
    a vertex lies strictly inside the other triangle.
    """
    scale = max(float(np.abs(t1).max(initial=0.0)), float(np.abs(t2).max(initial=0.0)), 1e-30)
    tol = eps * scale**3
    out = np.zeros(len(t1), dtype=bool)
    side2 = np.stack([_orient3d(t1[:, 0], t1[:, 1], t1[:, 2], t2[:, k]) for k in range(3)], axis=1)
    side1 = np.stack([_orient3d(t2[:, 0], t2[:, 1], t2[:, 2], t1[:, k]) for k in range(3)], axis=1)
    coplanar = (np.abs(side2) <= tol).all(axis=1)
    # a triangle entirely on one side of the other's plane cannot cross it
    separated = (side2 > tol).all(axis=1) | (side2 < -tol).all(axis=1) | (side1 > tol).all(axis=1)
    separated |= (side1 < -tol).all(axis=1)
    test = ~coplanar & ~separated
    if test.any():
        a, b = t1[test], t2[test]
        hit = np.zeros(len(a), dtype=bool)
        for src, dst in ((a, b), (b, a)):
            for k in range(3):
                hit |= _segment_crosses_triangle(src[:, k], src[:, (k + 1) % 3], dst, tol)
        out[test] = hit
    if coplanar.any():
        out[coplanar] = _coplanar_overlap(t1[coplanar], t2[coplanar], tol)
    return out


def _segment_crosses_triangle(p, q, tri, tol: float) -> np.ndarray:
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    sp, sq = _orient3d(a, b, c, p), _orient3d(a, b, c, q)
    straddles = ((sp > tol) & (sq < -tol)) | ((sp < -tol) & (sq > tol))
    e1, e2, e3 = _orient3d(p, q, a, b), _orient3d(p, q, b, c), _orient3d(p, q, c, a)
    inside = ((e1 > tol) & (e2 > tol) & (e3 > tol)) | ((e1 < -tol) & (e2 < -tol) & (e3 < -tol))
    return straddles & inside


def _coplanar_overlap(t1: np.ndarray, t2: np.ndarray, tol: float) -> np.ndarray:
    normal = np.cross(t1[:, 1] - t1[:, 0], t1[:, 2] - t1[:, 0])
    drop = np.abs(normal).argmax(axis=1)  # project onto the plane that keeps the most area
    keep = np.array([[1, 2], [0, 2], [0, 1]])[drop]
    rows = np.arange(len(t1))[:, None]
    p = np.stack([t1[rows, k, keep] for k in range(3)], axis=1)  # (n, 3, 2)
    q = np.stack([t2[rows, k, keep] for k in range(3)], axis=1)
    tol2 = tol ** (2.0 / 3.0)
    hit = np.zeros(len(t1), dtype=bool)
    for i in range(3):
        for j in range(3):
            a, b = p[:, i], p[:, (i + 1) % 3]
            c, d = q[:, j], q[:, (j + 1) % 3]
            o1, o2 = _orient2d(a, b, c), _orient2d(a, b, d)
            o3, o4 = _orient2d(c, d, a), _orient2d(c, d, b)
            hit |= (o1 * o2 < -tol2 * tol2) & (o3 * o4 < -tol2 * tol2)
    for src, dst in ((p, q), (q, p)):
        for k in range(3):
            x = src[:, k]
            s = np.stack([_orient2d(dst[:, m], dst[:, (m + 1) % 3], x) for m in range(3)], axis=1)
            hit |= (s > tol2).all(axis=1) | (s < -tol2).all(axis=1)
    return hit


# ----------------------------------------------------------------------------- point clouds


@dataclass
class PointQuality:
    points: int
    spacing_mean: float | None
    spacing_std: float | None
    outlier_fraction: float | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def point_quality(
    points: np.ndarray, neighbours: int = OUTLIER_NEIGHBOURS, std_ratio: float = OUTLIER_STD_RATIO
) -> PointQuality:
    """Count, nearest-neighbour spacing (mean, standard deviation) and the statistical-outlier fraction.

    A point is an outlier when its mean distance to its ``neighbours`` nearest points exceeds the
    mean of that statistic by ``std_ratio`` standard deviations (Open3D's rule and defaults).
    """
    from scipy.spatial import cKDTree

    pts = np.asarray(points, dtype=np.float64)
    if len(pts) < 2:
        return PointQuality(len(pts), None, None, None)
    k = min(neighbours, len(pts) - 1)
    tree = cKDTree(pts, balanced_tree=False, compact_nodes=False)
    order = tree.indices
    dist = np.empty((len(pts), k + 1))
    dist[order] = tree.query(pts[order], k=k + 1, workers=-1)[0]
    spacing = dist[:, 1]
    mean_knn = dist[:, 1:].mean(axis=1)
    limit = mean_knn.mean() + std_ratio * mean_knn.std()
    return PointQuality(len(pts), float(spacing.mean()), float(spacing.std()), float((mean_knn > limit).mean()))
