"""Diversity across seeds for one prompt: mean pairwise Chamfer and mean pairwise CLIP distance.

Higher is more diverse. Each asset is taken in the canonical frame (normalised), so diversity
measures shape differences, not differences of position or scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from eval.judging.metrics.geometry import chamfer_distance


def asset_embedding(scorer: Any, asset: Any, views: int = 8, resolution: int = 224) -> np.ndarray:
    """The asset's CLIP image embedding: the mean over the protocol's ring of colour views (unit length)."""
    from eval.judging.render import camera_ring, render

    emb = scorer.embed_images(render(asset, camera_ring(views), resolution=resolution).rgb).mean(dim=0)
    return (emb / emb.norm()).numpy()


def mean_pairwise_chamfer(point_sets: list[np.ndarray]) -> float:
    """Mean Chamfer-L1 over all unordered pairs of point sets (needs at least two)."""
    if len(point_sets) < 2:
        raise ValueError("diversity needs at least two assets")
    return float(np.mean([chamfer_distance(a, b)["chamfer_l1"] for a, b in combinations(point_sets, 2)]))


def mean_pairwise_cosine_distance(embeddings: Any) -> float:
    """Mean of 1 - cos over all unordered pairs of embeddings (N, D), N >= 2."""
    e = np.asarray(embeddings, dtype=np.float64)
    if len(e) < 2:
        raise ValueError("diversity needs at least two assets")
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    sims = e @ e.T
    upper = np.triu_indices(len(e), k=1)
    return float((1.0 - sims[upper]).mean())


@dataclass
class Diversity:
    """Accumulates one sample per seed: ``update(points, clip_embedding=None)``; ``compute()`` gives both means.

    ``clip_embedding`` is the asset's mean image embedding over the protocol views (any scale).
    """

    points: list[np.ndarray] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)

    def update(self, points: np.ndarray, clip_embedding: Any = None) -> None:
        self.points.append(np.asarray(points, dtype=np.float64))
        if clip_embedding is not None:
            self.embeddings.append(np.asarray(clip_embedding, dtype=np.float64).reshape(-1))

    def compute(self) -> dict[str, float]:
        out = {"pairwise_chamfer_l1": mean_pairwise_chamfer(self.points)}
        if len(self.embeddings) >= 2:
            out["pairwise_clip_distance"] = mean_pairwise_cosine_distance(np.stack(self.embeddings))
        return out

    def reset(self) -> None:
        self.points.clear()
        self.embeddings.clear()
