"""Geometry against a reference: Chamfer-L1/L2, F-score, normal consistency, volumetric IoU, ICP.

Point sets are (N, 3) arrays in the canonical frame (unit bounding sphere). Nearest neighbours
come from scipy's cKDTree (queries in the tree's own spatial order, for cache locality); nothing
is O(N^2). Conventions follow Occupancy Networks (Mescheder et al. 2019):

- ``chamfer_l1`` = (mean_a d(a, B) + mean_b d(b, A)) / 2, Euclidean distances;
- ``chamfer_l2`` = (mean_a d(a, B)^2 + mean_b d(b, A)^2) / 2, squared distances;
- F-score at threshold tau: precision = fraction of predicted points within tau of the
  reference, recall = the converse, F = 2PR / (P + R) (Tatarchenko et al. 2019);
- normal consistency = mean |n_a . n_nn(a)| over both directions;
- volumetric IoU on points drawn uniformly in the cube [-1, 1]^3 around the unit sphere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eval.judging.metrics.means import Means
from methods.base import Mesh

F_SCORE_FRACTIONS = (0.01, 0.02, 0.05)  # thresholds as fractions of the reference's bounding-box diagonal


def sample_surface(mesh: Mesh, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points drawn uniformly (by area) on the mesh surface and their face normals, seeded."""
    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.faces, dtype=np.int64)
    if len(f) == 0:
        raise ValueError("the mesh has no faces to sample")
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    cross = np.cross(b - a, c - a)
    double_area = np.linalg.norm(cross, axis=1)
    total = double_area.sum()
    if not total > 0:
        raise ValueError("the mesh has zero surface area")
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(double_area)
    face = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(f) - 1)
    r1, r2 = rng.random(n), rng.random(n)
    flip = r1 + r2 > 1.0  # fold the unit square onto the triangle
    r1[flip], r2[flip] = 1.0 - r1[flip], 1.0 - r2[flip]
    pts = a[face] + r1[:, None] * (b[face] - a[face]) + r2[:, None] * (c[face] - a[face])
    normals = cross[face] / np.maximum(double_area[face], 1e-30)[:, None]
    return pts, normals


def _tree(points: np.ndarray):
    from scipy.spatial import cKDTree

    return cKDTree(np.asarray(points, dtype=np.float64), leafsize=16, balanced_tree=False, compact_nodes=False)


@dataclass
class PairDistances:
    """Nearest-neighbour distances both ways between a prediction and a reference."""

    pred_to_ref: np.ndarray
    ref_to_pred: np.ndarray
    pred_nn: np.ndarray
    ref_nn: np.ndarray


def pair_distances(pred: np.ndarray, ref: np.ndarray, workers: int = -1) -> PairDistances:
    """Both nearest-neighbour passes; each tree is built once and its leaf order drives its own queries."""
    pred = np.asarray(pred, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if len(pred) == 0 or len(ref) == 0:
        raise ValueError("both point sets must be non-empty")
    tree_pred, tree_ref = _tree(pred), _tree(ref)
    d_pr = np.empty(len(pred))
    i_pr = np.empty(len(pred), dtype=np.int64)
    d_rp = np.empty(len(ref))
    i_rp = np.empty(len(ref), dtype=np.int64)
    order = tree_pred.indices
    d_pr[order], i_pr[order] = tree_ref.query(pred[order], k=1, workers=workers)
    order = tree_ref.indices
    d_rp[order], i_rp[order] = tree_pred.query(ref[order], k=1, workers=workers)
    return PairDistances(d_pr, d_rp, i_pr, i_rp)


def chamfer_distance(pred: np.ndarray, ref: np.ndarray, workers: int = -1) -> dict[str, float]:
    """Chamfer-L1 and -L2 (ONet convention, see the module docstring) between two point sets."""
    d = pair_distances(pred, ref, workers)
    return chamfer_from(d)


def chamfer_from(d: PairDistances) -> dict[str, float]:
    return {
        "chamfer_l1": float(0.5 * (d.pred_to_ref.mean() + d.ref_to_pred.mean())),
        "chamfer_l2": float(0.5 * ((d.pred_to_ref**2).mean() + (d.ref_to_pred**2).mean())),
    }


def f_score_from(d: PairDistances, threshold: float) -> dict[str, float]:
    """Precision, recall and F-score at one absolute distance threshold."""
    precision = float((d.pred_to_ref < threshold).mean())
    recall = float((d.ref_to_pred < threshold).mean())
    f = 2.0 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f_score": f}


def f_score(pred: np.ndarray, ref: np.ndarray, threshold: float, workers: int = -1) -> float:
    """F-score at an absolute distance threshold."""
    return f_score_from(pair_distances(pred, ref, workers), threshold)["f_score"]


def normal_consistency_from(d: PairDistances, pred_normals: np.ndarray, ref_normals: np.ndarray) -> float:
    """Mean absolute cosine between each point's normal and its nearest neighbour's, both ways."""
    a = np.abs((pred_normals * ref_normals[d.pred_nn]).sum(axis=1))
    b = np.abs((ref_normals * pred_normals[d.ref_nn]).sum(axis=1))
    return float(0.5 * (a.mean() + b.mean()))


def bbox_diagonal(points: np.ndarray) -> float:
    pts = np.asarray(points)
    return float(np.linalg.norm(pts.max(axis=0) - pts.min(axis=0)))


def occupancy(mesh: Mesh, points: np.ndarray) -> np.ndarray:
    """Inside/outside of each query point by ray parity with a majority over 3 ray directions.

    Embree (:mod:`methods.raycast`, the ``embreex`` wheel) does the ray casting; the vote keeps
    small holes from flipping whole regions. The result is exact for closed meshes.
    """
    from methods.raycast import inside

    return inside(np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64), np.asarray(points))


def volume_iou(pred: Mesh, ref: Mesh, n: int = 100_000, seed: int = 0) -> float:
    """Volumetric IoU of two meshes on ``n`` points uniform in [-1, 1]^3 (the normalised frame)."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(-1.0, 1.0, size=(n, 3))
    a, b = occupancy(pred, pts), occupancy(ref, pts)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def icp(
    source: np.ndarray, target: np.ndarray, iterations: int = 30, tolerance: float = 1e-7
) -> tuple[np.ndarray, float]:
    """Rigid point-to-point ICP (Besl & McKay), no scale: the 4x4 moving ``source`` onto ``target``, final RMSE."""
    src = np.asarray(source, dtype=np.float64)
    src = src[_tree(src).indices]  # spatial order: the queries below walk the target tree coherently
    tree = _tree(target)
    target = np.asarray(target, dtype=np.float64)
    transform = np.eye(4)
    current = src.copy()
    previous = np.inf
    rmse = np.inf
    for step_no in range(iterations + 1):
        dist, idx = tree.query(current, k=1, workers=-1)
        rmse = float(np.sqrt((dist**2).mean()))  # of the transform so far
        if previous - rmse < tolerance or step_no == iterations:
            break
        previous = rmse
        matched = target[idx]
        mu_s, mu_t = current.mean(axis=0), matched.mean(axis=0)
        h = (current - mu_s).T @ (matched - mu_t)
        u, _, vt = np.linalg.svd(h)
        d = np.sign(np.linalg.det(vt.T @ u.T))
        rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
        step = np.eye(4)
        step[:3, :3], step[:3, 3] = rot, mu_t - rot @ mu_s
        current = current @ rot.T + step[:3, 3]
        transform = step @ transform
    return transform, rmse


@dataclass
class ReferenceSettings:
    """What changes a reference-geometry number; stored with every row."""

    samples: int = 100_000
    seed: int = 0
    icp: bool = False
    f_score_fractions: tuple[float, ...] = F_SCORE_FRACTIONS
    iou_points: int = 100_000

    def describe(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "seed": self.seed,
            "icp": self.icp,
            "f_score_thresholds": "fractions of the reference bounding-box diagonal",
            "iou_points": self.iou_points,
            "iou_region": "uniform in [-1, 1]^3",
            "convention": "ONet: symmetric means, L1 Euclidean, L2 squared",
        }


def compare_to_reference(
    pred_points: np.ndarray,
    pred_normals: np.ndarray | None,
    ref_mesh: Mesh,
    settings: ReferenceSettings | None = None,
) -> dict[str, Any]:
    """Chamfer, F-scores and normal consistency: one KD-tree pass each way serves them all.

    With ``settings.icp`` the prediction is first aligned rigidly; ``icp_transform`` (4x4) says how.
    """
    s = settings or ReferenceSettings()
    ref_pts, ref_normals = sample_surface(ref_mesh, s.samples, seed=s.seed + 1)
    out: dict[str, Any] = {}
    pred = np.asarray(pred_points, dtype=np.float64)
    if s.icp:
        transform, rmse = icp(_subsample(pred, 10_000, s.seed), _subsample(ref_pts, 10_000, s.seed + 2))
        pred = pred @ transform[:3, :3].T + transform[:3, 3]
        if pred_normals is not None:
            pred_normals = pred_normals @ transform[:3, :3].T
        out["icp_rmse"] = rmse
        out["icp_transform"] = transform.tolist()
    d = pair_distances(pred, ref_pts)
    out.update(chamfer_from(d))
    diag = bbox_diagonal(ref_pts)
    for frac in s.f_score_fractions:
        out[f"f_score@{frac:g}"] = f_score_from(d, frac * diag)["f_score"]
    out["thresholds"] = {f"{frac:g}": frac * diag for frac in s.f_score_fractions}
    if pred_normals is not None:
        out["normal_consistency"] = normal_consistency_from(d, pred_normals, ref_normals)
    return out


def _subsample(points: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(points) <= n:
        return points
    return points[np.random.default_rng(seed).choice(len(points), n, replace=False)]


@dataclass
class ChamferFScore(Means):
    """Accumulates Chamfer and F-score over (prediction, reference) pairs; ``compute`` gives the means."""

    threshold: float = 0.02
    workers: int = -1
    values: dict[str, list[float]] = field(default_factory=dict)

    def update(self, pred: np.ndarray, ref: np.ndarray) -> None:
        d = pair_distances(pred, ref, self.workers)
        row = chamfer_from(d) | {"f_score": f_score_from(d, self.threshold)["f_score"]}
        self.add(row)
