"""Decoding a VAE's field ("how far inside is this point") on a grid, in chunks so memory stays bounded.

``query`` is any callable ``(P, 3) float32 points -> (P,) logits`` (positive inside, by the caller's sign);
the model holds its own latents / kv cache. Points are generated chunk by chunk from the grid's axes, so the
peak is one chunk of points and activations plus the float32 grid itself.

Two decodes:

- :func:`dense_grid`: every point of an ``n^3`` grid (the official path's shape).
- :func:`hierarchical_grid` (ours): a coarse grid first, then at each finer level only the cells near the
  surface (a sign change among their corners, or ``|logit| < band``) plus a ``margin`` of cells around them
  are evaluated; the rest of the finer grid is trilinearly interpolated from the coarser one. The finer
  grid is the coarse one with every cell halved (``2 (n - 1) + 1`` points), so coarse values are kept exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Query = Callable[[torch.Tensor], torch.Tensor]
Bounds = tuple[float, float, float, float, float, float]


def as_bounds(bounds: float | Sequence[float]) -> Bounds:
    if isinstance(bounds, int | float):
        b = float(bounds)
        return (-b, -b, -b, b, b, b)
    if len(bounds) != 6:
        raise ValueError("bounds are (xmin, ymin, zmin, xmax, ymax, zmax) or one half-size")
    return tuple(float(v) for v in bounds)  # type: ignore[return-value]


def grid_axes(bounds: float | Sequence[float], points: int, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """Per-axis coordinates: ``linspace(min, max, points)`` computed in ``dtype`` (float16: TripoSG's dense
    path), returned as float32."""
    b = as_bounds(bounds)
    return [torch.linspace(b[d], b[d + 3], points, dtype=dtype).float() for d in range(3)]


def decode_points(query: Query, points: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """``query`` over (P, 3) points, ``chunk_size`` at a time (0: all at once); (P,) float32."""
    if chunk_size <= 0 or len(points) <= chunk_size:
        return query(points).reshape(-1).float()
    out = torch.empty(len(points), dtype=torch.float32, device=points.device)
    for start in range(0, len(points), chunk_size):
        stop = min(start + chunk_size, len(points))
        out[start:stop] = query(points[start:stop]).reshape(-1).float()
    return out


def _points_at(axes: Sequence[torch.Tensor], flat: torch.Tensor) -> torch.Tensor:
    ny, nz = len(axes[1]), len(axes[2])
    i, rem = flat // (ny * nz), flat % (ny * nz)
    j, k = rem // nz, rem % nz
    return torch.stack([axes[0][i], axes[1][j], axes[2][k]], dim=-1)


def dense_grid(query: Query, axes: Sequence[torch.Tensor], chunk_size: int = 262144) -> torch.Tensor:
    """The field on the full grid, [i, j, k] <-> (x_i, y_j, z_k) (k fastest, as ``meshgrid(indexing='ij')``)."""
    shape = tuple(len(a) for a in axes)
    total = shape[0] * shape[1] * shape[2]
    device = axes[0].device
    out = torch.empty(total, dtype=torch.float32, device=device)
    step = total if chunk_size <= 0 else chunk_size
    for start in range(0, total, step):
        flat = torch.arange(start, min(start + step, total), device=device)
        out[start : start + len(flat)] = query(_points_at(axes, flat)).reshape(-1).float()
    return out.view(shape)


def _near_surface_cells(grid: torch.Tensor, band: float, level: float) -> torch.Tensor:
    """(n-1)^3 bool: cells whose 8 corners change sign around ``level`` or hold a value within ``band``."""
    v = grid - level
    pos = (v > 0).float()[None, None]
    # a cell changes sign iff its corners are neither all inside nor all outside
    inside_any = F.max_pool3d(pos, 2, stride=1)[0, 0] > 0
    outside_any = F.max_pool3d(1 - pos, 2, stride=1)[0, 0] > 0
    near = (v.abs() < band).float()[None, None]
    return (inside_any & outside_any) | (F.max_pool3d(near, 2, stride=1)[0, 0] > 0)


def refine_once(
    query: Query,
    coarse: torch.Tensor,
    bounds: float | Sequence[float],
    band: float,
    margin: int = 1,
    chunk_size: int = 262144,
    level: float = 0.0,
) -> tuple[torch.Tensor, int]:
    """The grid with every cell halved: coarse values kept, near-surface cells evaluated, the rest interpolated.

    Returns the finer grid and the number of points evaluated.
    """
    n = coarse.shape[0]
    fine_n = 2 * (n - 1) + 1
    fine = F.interpolate(coarse[None, None], size=(fine_n,) * 3, mode="trilinear", align_corners=True)[0, 0]
    cells = _near_surface_cells(coarse, band, level)
    if margin > 0:
        cells = F.max_pool3d(cells.float()[None, None], 2 * margin + 1, stride=1, padding=margin)[0, 0] > 0
    # a coarse cell c covers fine points 2c .. 2c + 2 per axis
    mark = torch.zeros((fine_n,) * 3, dtype=torch.bool, device=coarse.device)
    idx = cells.nonzero()
    for di in range(3):
        for dj in range(3):
            for dk in range(3):
                mark[2 * idx[:, 0] + di, 2 * idx[:, 1] + dj, 2 * idx[:, 2] + dk] = True
    mark[::2, ::2, ::2] = False  # known exactly from the coarse level
    todo = mark.view(-1).nonzero().view(-1)
    if len(todo):
        axes = grid_axes(bounds, fine_n)
        axes = [a.to(coarse.device) for a in axes]
        flat_fine = fine.view(-1)
        step = len(todo) if chunk_size <= 0 else chunk_size
        for start in range(0, len(todo), step):
            part = todo[start : start + step]
            flat_fine[part] = query(_points_at(axes, part)).reshape(-1).float()
    return fine, int(len(todo))


def hierarchical_grid(
    query: Query,
    bounds: float | Sequence[float],
    resolution: int,
    coarse_resolution: int = 64,
    band: float = 0.5,
    margin: int = 1,
    chunk_size: int = 262144,
    level: float = 0.0,
) -> tuple[torch.Tensor, dict[str, int]]:
    """Coarse-to-fine decode of a grid with ``resolution`` cells per axis (``resolution + 1`` points).

    ``resolution`` must be ``coarse_resolution * 2**k``. Returns the grid and counts of evaluated points
    per level (``level0`` = the dense coarse grid), to compare with ``(resolution + 1)**3`` for a dense decode.
    """
    if coarse_resolution < 2 or resolution < coarse_resolution:
        raise ValueError("need 2 <= coarse_resolution <= resolution")
    levels = 0
    r = coarse_resolution
    while r < resolution:
        r *= 2
        levels += 1
    if r != resolution:
        raise ValueError(f"resolution {resolution} is not coarse_resolution {coarse_resolution} times a power of 2")
    axes = grid_axes(bounds, coarse_resolution + 1)
    grid = dense_grid(query, axes, chunk_size)
    counts = {"level0": (coarse_resolution + 1) ** 3}
    for lv in range(levels):
        grid, evaluated = refine_once(query, grid, bounds, band, margin, chunk_size, level)
        counts[f"level{lv + 1}"] = evaluated
    return grid, counts


def coarse_cells(resolution: int, hierarchical: bool, smallest: int) -> int:
    """The first level of a coarse-to-fine decode: ``resolution`` halved while it stays even and at least
    ``smallest`` (``resolution`` itself when not ``hierarchical``: dense)."""
    coarse = resolution
    while hierarchical and coarse % 2 == 0 and coarse // 2 >= smallest:
        coarse //= 2
    return coarse


def field_grid(
    query: Query,
    bounds: float | Sequence[float],
    resolution: int,
    coarse: int,
    chunk_size: int,
    band: float,
    device: str | torch.device = "cpu",
    level: float = 0.0,
) -> torch.Tensor:
    """The field on ``resolution + 1`` float32 points per axis spanning ``bounds``: coarse-to-fine from
    ``coarse`` cells (``hierarchical_grid``) when ``coarse < resolution``, else dense on ``device``."""
    if coarse < resolution:
        grid, _ = hierarchical_grid(query, bounds, resolution, coarse, band=band, chunk_size=chunk_size, level=level)
        return grid
    axes = [a.to(device) for a in grid_axes(bounds, resolution + 1)]
    return dense_grid(query, axes, chunk_size)
