"""Screen-space rasterisation: triangles and camera-facing discs through one order-independent z-buffer.

The primitive under the protocol's renderer (:mod:`eval.judging.render`, the one renderer every asset
is judged with) and under texture baking in UV space (:func:`methods.triposr.mesh.bake_texture`). In
PyTorch on the CPU: per pixel the nearest primitive by ``scatter_reduce`` amin over a key of quantised
depth and primitive id, so the result does not depend on the order primitives are drawn in.
Pixel ``(row, col)`` has its centre at ``(row + 0.5, col + 0.5)``.
"""

from __future__ import annotations

from typing import Any

MAX_CANDIDATES = 1 << 22  # pixel candidates per chunk: bounds memory at ~0.5 GB
ID_BITS = 24  # z-buffer key = quantised depth << 24 | primitive id: fewer than 2**24 primitives
DEPTH_SCALE = 2.0**32


def raster_triangles(sx, sy, depth, faces, res: int):
    """Per pixel the nearest covering triangle (-1 for none) and its perspective-correct barycentrics."""
    import torch

    x = sx[faces]  # (F, 3)
    y = sy[faces]
    w = depth[faces]
    # edge functions as affine maps of the pixel centre: l_i(px, py) = A_i px + B_i py + C_i
    x0, x1, x2 = x.unbind(1)
    y0, y1, y2 = y.unbind(1)
    area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
    ok = (area.abs() > 1e-12) & (w.min(dim=1).values > 1e-6)
    inv = torch.where(ok, 1.0 / torch.where(ok, area, torch.ones_like(area)), torch.zeros_like(area))
    coef_a = torch.stack([y1 - y2, y2 - y0, y0 - y1], dim=1) * inv[:, None]
    coef_b = torch.stack([x2 - x1, x0 - x2, x1 - x0], dim=1) * inv[:, None]
    coef_c = torch.stack([x1 * y2 - x2 * y1, x2 * y0 - x0 * y2, x0 * y1 - x1 * y0], dim=1) * inv[:, None]
    lo_x, lo_y, width, height, ok = _pixel_boxes(
        x.min(dim=1).values, x.max(dim=1).values, y.min(dim=1).values, y.max(dim=1).values, ok, res
    )
    inv_w = 1.0 / w.clamp_min(1e-9)
    # the candidate test runs in float32 on offsets from the box corner (small numbers, no cancellation)
    corner = coef_a * (lo_x + 0.5)[:, None] + coef_b * (lo_y + 0.5)[:, None] + coef_c
    steps = torch.stack([corner, coef_a, coef_b], dim=1).float()  # (F, 3 terms, 3 edges)
    inv_w32 = inv_w.float()

    def candidates(idx, gx, gy):
        """For faces ``idx`` and box offsets (gx, gy): which pairs are inside, and the depth there."""
        c = steps[idx]  # (n, 3, 3)
        lam = c[:, None, 0] + c[:, None, 1] * gx[None, :, None] + c[:, None, 2] * gy[None, :, None]  # (n, k, 3)
        inside = (lam[..., 0] >= 0) & (lam[..., 1] >= 0) & (lam[..., 2] >= 0)
        rows, cols = torch.nonzero(inside, as_tuple=True)
        w = inv_w32[idx[rows]]
        hit = lam[rows, cols]
        inv_depth = hit[:, 0] * w[:, 0] + hit[:, 1] * w[:, 1] + hit[:, 2] * w[:, 2]
        return rows, cols, 1.0 / inv_depth.clamp_min(1e-12)

    pid = _zbuffer(lo_x, lo_y, width, height, ok, res, candidates)
    covered = pid >= 0
    bary = torch.zeros(int(covered.sum()), 3, dtype=torch.float64)
    if len(bary):
        flat = torch.nonzero(covered).squeeze(1)
        ids = pid[covered]
        px = (flat % res).to(torch.float64) + 0.5
        py = (flat // res).to(torch.float64) + 0.5
        lin = coef_a[ids] * px[:, None] + coef_b[ids] * py[:, None] + coef_c[ids]
        persp = lin.clamp_min(0.0) * inv_w[ids]
        bary = persp / persp.sum(dim=1, keepdim=True).clamp_min(1e-30)
    return pid, bary


def raster_discs(sx, sy, depth, radius_px, res: int):
    """Per pixel the nearest disc covering it (-1 for none); discs are camera-facing splats."""
    import torch

    r = radius_px.clamp_min(0.5)  # at least one pixel wide: a point never vanishes
    lo_x, lo_y, width, height, ok = _pixel_boxes(sx - r, sx + r, sy - r, sy + r, depth > 1e-6, res)
    off_x = (lo_x + 0.5 - sx).float()
    off_y = (lo_y + 0.5 - sy).float()
    r2 = (r * r).float()
    depth32 = depth.float()

    def candidates(idx, gx, gy):
        inside = (off_x[idx, None] + gx[None]) ** 2 + (off_y[idx, None] + gy[None]) ** 2 <= r2[idx, None]
        rows, cols = torch.nonzero(inside, as_tuple=True)
        return rows, cols, depth32[idx[rows]]

    return _zbuffer(lo_x, lo_y, width, height, ok, res, candidates), None


def _pixel_boxes(xmin, xmax, ymin, ymax, ok, res: int):
    """The pixels whose centres fall in each primitive's screen box: corner, width, height, non-empty."""
    lo_x = (xmin - 0.5).ceil().clamp(0, res - 1)
    hi_x = (xmax - 0.5).floor().clamp(-1, res - 1)
    lo_y = (ymin - 0.5).ceil().clamp(0, res - 1)
    hi_y = (ymax - 0.5).floor().clamp(-1, res - 1)
    ok = ok & (hi_x >= lo_x) & (hi_y >= lo_y) & (xmax > 0) & (xmin < res) & (ymax > 0) & (ymin < res)
    return lo_x, lo_y, hi_x - lo_x + 1, hi_y - lo_y + 1, ok


def _zbuffer(lo_x, lo_y, width, height, ok, res: int, candidates) -> Any:
    """The nearest primitive per pixel over all (primitive, pixel-in-its-box) candidates.

    Primitives are grouped by the power-of-two width and height of their pixel box, so each group
    enumerates a dense grid of offsets; the key (depth, id) makes the result independent of the order.
    """
    import torch

    empty = torch.iinfo(torch.int64).max
    keys = torch.full((res * res,), empty, dtype=torch.int64)
    level_x = torch.ceil(torch.log2(width.clamp_min(1))).to(torch.int64)
    level_y = torch.ceil(torch.log2(height.clamp_min(1))).to(torch.int64)
    bucket = level_x * 64 + level_y
    alive = torch.nonzero(ok).squeeze(1)
    corner = (lo_y * res + lo_x).to(torch.int64)
    width32, height32 = width.float(), height.float()
    for code in torch.unique(bucket[alive]).tolist():
        sw, sh = 1 << (code // 64), 1 << (code % 64)
        group = alive[bucket[alive] == code]
        grid_y, grid_x = torch.meshgrid(torch.arange(sh), torch.arange(sw), indexing="ij")
        grid_x, grid_y = grid_x.reshape(-1).float(), grid_y.reshape(-1).float()
        grid_flat = (grid_y * res + grid_x).to(torch.int64)
        per_chunk = max(1, MAX_CANDIDATES // (sw * sh))
        for start in range(0, len(group), per_chunk):
            idx = group[start : start + per_chunk]
            rows, cols, z = candidates(idx, grid_x, grid_y)
            # offsets past the clamped box (the screen edge) are not pixels of this image
            keep = (grid_x[cols] < width32[idx[rows]]) & (grid_y[cols] < height32[idx[rows]])
            rows, cols, z = rows[keep], cols[keep], z[keep]
            if not len(z):
                continue
            ids = idx[rows]
            key = (z.double().clamp(0.0, 63.0) * DEPTH_SCALE).to(torch.int64) * (1 << ID_BITS) + ids
            flat = corner[ids] + grid_flat[cols]
            keys.scatter_reduce_(0, flat, key, reduce="amin")
    return torch.where(keys == empty, torch.full_like(keys, -1), keys % (1 << ID_BITS))
