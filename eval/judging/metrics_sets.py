"""Set metrics of the point-cloud generation literature, as pure functions (numpy + scipy KD-trees).

Achlioptas et al. 2018 (MMD, coverage) and Yang et al. 2019, PointFlow (1-NN accuracy):

- MMD (minimum matching distance): for each reference, the distance to its nearest generated
  shape, averaged; lower is better (quality / fidelity).
- COV (coverage): the fraction of references that are the nearest reference of at least one
  generated shape; higher is better (diversity; mode collapse lowers it).
- 1-NNA: the leave-one-out accuracy of a 1-nearest-neighbour classifier telling generated from
  reference shapes; 0.5 is ideal (the two sets are indistinguishable), 1.0 is the worst.

Input conventions: a point cloud is an (N, 3) float array; shapes are compared in the frame given
(no normalisation happens here). The distance between two clouds is the Chamfer distance of
:func:`chamfer_distance` with ``squared=True`` by default, as in PointFlow; the choice is an argument
and part of every result (see :func:`set_metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree


def nn_distances(a: np.ndarray, b: np.ndarray, tree_b: cKDTree | None = None) -> np.ndarray:
    """For each point of ``a`` (N, 3), the Euclidean distance to its nearest point of ``b`` (M, 3)."""
    tree = tree_b if tree_b is not None else cKDTree(np.asarray(b, dtype=np.float64))
    d, _ = tree.query(np.asarray(a, dtype=np.float64), k=1)
    return d


def chamfer_distance(a: np.ndarray, b: np.ndarray, squared: bool = True) -> float:
    """mean_a min_b d(a, b) + mean_b min_a d(a, b), with d the Euclidean or (``squared``) squared distance."""
    da, db = nn_distances(a, b), nn_distances(b, a)
    if squared:
        da, db = da**2, db**2
    return float(da.mean() + db.mean())


def f_score(pred: np.ndarray, ref: np.ndarray, tau: float) -> float:
    """F-score at distance ``tau`` (Tatarchenko et al. 2019): harmonic mean of precision and recall."""
    precision = float((nn_distances(pred, ref) < tau).mean())
    recall = float((nn_distances(ref, pred) < tau).mean())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def pairwise_chamfer(
    xs: Sequence[np.ndarray], ys: Sequence[np.ndarray] | None = None, squared: bool = True
) -> np.ndarray:
    """(len(xs), len(ys)) matrix of Chamfer distances; ``ys=None`` is xs against itself (symmetric)."""
    same = ys is None
    ys = xs if ys is None else ys
    xs64 = [np.asarray(x, dtype=np.float64) for x in xs]
    ys64 = xs64 if same else [np.asarray(y, dtype=np.float64) for y in ys]
    tx = [cKDTree(x) for x in xs64]
    ty = tx if same else [cKDTree(y) for y in ys64]
    out = np.zeros((len(xs64), len(ys64)))
    for i, x in enumerate(xs64):
        for j, y in enumerate(ys64):
            if same and j < i:
                out[i, j] = out[j, i]
                continue
            if same and j == i:
                continue
            da, db = nn_distances(x, y, ty[j]), nn_distances(y, x, tx[i])
            if squared:
                da, db = da**2, db**2
            out[i, j] = da.mean() + db.mean()
    return out


def mmd(gen_ref: np.ndarray) -> float:
    """Minimum matching distance from a (|G|, |R|) distance matrix: mean over references of the min over G."""
    return float(np.asarray(gen_ref).min(axis=0).mean())


def coverage(gen_ref: np.ndarray) -> float:
    """Coverage from a (|G|, |R|) distance matrix: share of references matched as some generated shape's nearest."""
    d = np.asarray(gen_ref)
    return float(len(np.unique(d.argmin(axis=1))) / d.shape[1])


def one_nn_accuracy(gen_gen: np.ndarray, gen_ref: np.ndarray, ref_ref: np.ndarray) -> float:
    """Leave-one-out 1-NN accuracy over G and R given the three distance matrices; 0.5 is ideal."""
    g, r = gen_ref.shape
    full = np.block([[gen_gen, gen_ref], [gen_ref.T, ref_ref]]).astype(np.float64)
    np.fill_diagonal(full, np.inf)
    labels = np.r_[np.zeros(g, dtype=bool), np.ones(r, dtype=bool)]
    nearest = full.argmin(axis=1)
    return float((labels[nearest] == labels).mean())


def set_metrics(gen: Sequence[np.ndarray], ref: Sequence[np.ndarray], squared: bool = True) -> dict[str, float]:
    """MMD, COV and 1-NNA of generated clouds against reference clouds, with the distance used."""
    if not len(gen) or not len(ref):
        raise ValueError("set metrics need at least one generated and one reference cloud")
    gr = pairwise_chamfer(gen, ref, squared)
    gg = pairwise_chamfer(gen, None, squared)
    rr = pairwise_chamfer(ref, None, squared)
    return {
        "mmd_cd": mmd(gr),
        "cov_cd": coverage(gr),
        "1nna_cd": one_nn_accuracy(gg, gr, rr),
        "distance": "chamfer (squared L2)" if squared else "chamfer (L2)",
        "n_gen": len(gen),
        "n_ref": len(ref),
    }


def mean_pairwise(clouds: Sequence[np.ndarray], squared: bool = False) -> float:
    """Mean Chamfer distance over distinct pairs of a set: a diversity score (0 for identical shapes)."""
    if len(clouds) < 2:
        return 0.0
    d = pairwise_chamfer(clouds, None, squared)
    iu = np.triu_indices(len(clouds), k=1)
    return float(d[iu].mean())
