"""Marching cubes (scikit-image, Lewiner) on a decoded grid, with each model's vertex transform."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from methods.base import MethodError
from methods.latent3d.grid import as_bounds


def index_to_world(
    vertices: np.ndarray, bounds: float | Sequence[float], points: int, divisor: float | None = None
) -> np.ndarray:
    """Grid-index vertices -> world units: ``v / divisor * (max - min) + min``.

    ``divisor`` defaults to ``points - 1`` (the grid spans the box exactly). TripoSG's official dense path
    divides by ``2**depth = points`` instead, which shrinks the mesh by (n - 1) / n towards the box's min
    corner; pass ``divisor=points`` to reproduce it.
    """
    b = np.asarray(as_bounds(bounds), dtype=np.float64)
    div = float(points - 1 if divisor is None else divisor)
    out = vertices.astype(np.float64) / div * (b[3:] - b[:3]) + b[:3]
    return out.astype(np.float32)


def marching_cubes(
    grid: torch.Tensor | np.ndarray,
    level: float = 0.0,
    inside: str = "positive",
    what: str = "the model",
    outward: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Vertices in grid-index units (V, 3) float32 and faces (F, 3) int64.

    ``inside="positive"``: the object is where the grid is above ``level`` (skimage's gradient_direction
    "descent"); ``"negative"`` for SDFs negative inside. Faces keep skimage's winding, whose right-hand normals
    point *into* the object on an ``ij`` grid (what the official codes return); ``outward=True`` reverses them
    (counter-clockwise seen from outside, glTF's front faces). MethodError when the grid never crosses ``level``.
    """
    from skimage import measure

    arr = grid.detach().float().cpu().numpy() if isinstance(grid, torch.Tensor) else np.asarray(grid, np.float32)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0 or not (finite.max() > level > finite.min()):
        raise MethodError(
            f"{what} found no surface (its field never crosses {level:g} inside the box); "
            "the image may not show one recognisable object"
        )
    direction = "descent" if inside == "positive" else "ascent"
    verts, faces, _, _ = measure.marching_cubes(arr, level, method="lewiner", gradient_direction=direction)
    faces = faces[:, ::-1] if outward else faces
    return verts.astype(np.float32), np.ascontiguousarray(faces, dtype=np.int64)
