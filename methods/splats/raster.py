"""A differentiable Gaussian-splat rasteriser in pure PyTorch (CPU and CUDA, the same code).

The steps of Kerbl et al. 2023: EWA projection of the 3D covariances (with the 0.3 px low-pass),
frustum and size culling, depth ordering, front-to-back alpha compositing with early termination
(T < 1e-4), SH colour and a background. Instead of 16x16 tiles it builds the equivalent sparse list
of (pixel, Gaussian) pairs inside each Gaussian's 3-sigma box, sorted by pixel then depth; a
segmented cumulative sum of log(1 - alpha) gives every pair's transmittance, so autograd derives
all gradients (the reference CUDA code writes them by hand).

Cameras are OpenCV (x right, y down, z forward) world-to-camera matrices with pinhole intrinsics;
:func:`opengl_to_viewmat` converts the project's OpenGL camera-to-world poses. Pixel (i, j) has its
centre at (i + 0.5, j + 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from methods.splats.sh import sh_basis

LOW_PASS = 0.3  # px^2 added to the 2D covariance: every splat covers at least about a pixel
ALPHA_MIN = 1.0 / 255.0  # pairs fainter than this are skipped (as the reference does)
ALPHA_MAX = 0.99
T_MIN = 1e-4  # early termination: compositing stops once transmittance would fall below this
NEAR = 0.01
TILE = 16  # px: splats are binned to 16x16 tiles, as the reference does
# The work of a step is bounded whatever the splats look like: each tile keeps its nearest splats until their
# footprints in the tile add up to PAIRS_PER_PIXEL pairs per pixel (the farther ones are dropped), and no
# footprint reaches further than RADIUS_CAP x the image's larger side from its centre. A trained scene stays
# well under both; random or huge splats early on hit them.
PAIRS_PER_PIXEL = 256
RADIUS_CAP = 0.5
BACKENDS = ("auto", "torch", "gsplat")


@dataclass
class RenderOutput:
    """Images (C, H, W, 3), alpha (C, H, W), expected depth (C, H, W) and, for densification, the
    projected centres (C, N, 2) with ``visible`` (C, N): their gradient is the view-space gradient."""

    image: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor
    means2d: torch.Tensor
    visible: torch.Tensor
    radii: torch.Tensor
    pairs: int = 0
    tile_entries: int = 0  # (splat, tile) intersections binned, before the per-tile cap
    dropped: int = 0  # of those, the ones beyond their tile's cap (the farthest)


def opengl_to_viewmat(c2w: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(C, 4, 4) OpenCV world-to-camera from OpenGL camera-to-world (+Y up, -Z forward)."""
    c2w = torch.as_tensor(np.asarray(c2w), dtype=torch.float64).reshape(-1, 4, 4)
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))
    return torch.linalg.inv(c2w @ flip)


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) from quaternions (N, 4) (w, x, y, z), normalised here."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        -1,
    ).reshape(-1, 3, 3)


def covariances(log_scales: torch.Tensor, quats: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) world covariances R S S^T R^T."""
    m = quat_to_rotmat(quats) * torch.exp(log_scales)[:, None, :]
    return m @ m.transpose(1, 2)


def sh_colors(sh: torch.Tensor, dirs: torch.Tensor, degree: int) -> torch.Tensor:
    """Colours (..., 3) of SH coefficients (..., K, 3) seen along unit ``dirs`` (..., 3), up to ``degree``."""
    k = (degree + 1) ** 2
    basis = sh_basis(dirs, degree)
    return torch.clamp_min((basis[..., None] * sh[..., :k, :]).sum(-2) + 0.5, 0.0)


def rasterize(
    means: torch.Tensor,
    log_scales: torch.Tensor,
    quats: torch.Tensor,
    opacity_logits: torch.Tensor,
    sh: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    background: torch.Tensor | None = None,
    sh_degree: int | None = None,
    pairs_per_pixel: int = PAIRS_PER_PIXEL,
    radius_cap: float = RADIUS_CAP,
) -> RenderOutput:
    """Render C views of N Gaussians; differentiable in every Gaussian parameter (and the background).

    ``viewmats`` (C, 4, 4) OpenCV world-to-camera, ``Ks`` (C, 3, 3) pixels; ``sh`` (N, K, 3); the
    dtype of ``means`` is the working dtype (float32 for training, float64 for gradient checks).
    At most ``pairs_per_pixel`` x C x width x height (pixel, splat) pairs (plus one splat's tile per tile)
    are composited: see :data:`PAIRS_PER_PIXEL`.
    """
    dtype, device = means.dtype, means.device
    n, c = len(means), len(viewmats)
    degree = int(round(math.sqrt(sh.shape[1]))) - 1 if sh_degree is None else int(sh_degree)
    viewmats = viewmats.to(device=device, dtype=dtype)
    Ks = Ks.to(device=device, dtype=dtype)
    bg = torch.zeros(3, dtype=dtype, device=device) if background is None else background.to(device, dtype)
    R, t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    p = torch.einsum("cij,nj->cni", R, means) + t[:, None, :]  # (C, N, 3)
    z = p[..., 2]
    fx, fy, cx, cy = Ks[:, 0, 0, None], Ks[:, 1, 1, None], Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    zs = torch.where(z > NEAR, z, torch.ones_like(z))
    means2d = torch.stack([fx * p[..., 0] / zs + cx, fy * p[..., 1] / zs + cy], -1)  # (C, N, 2)
    if means2d.requires_grad:
        means2d.retain_grad()  # its gradient is the view-space positional gradient densification uses
    u, v = means2d[..., 0], means2d[..., 1]

    # EWA: J W Sigma W^T J^T, with x/z and y/z clamped to 1.3x the half field of view as the reference does
    lim_x = 1.3 * (0.5 * width / fx)
    lim_y = 1.3 * (0.5 * height / fy)
    tx = (p[..., 0] / zs).clamp(-lim_x, lim_x) * zs
    ty = (p[..., 1] / zs).clamp(-lim_y, lim_y) * zs
    zero = torch.zeros_like(zs)
    J = torch.stack([fx / zs, zero, -fx * tx / (zs * zs), zero, fy / zs, -fy * ty / (zs * zs)], -1).reshape(c, n, 2, 3)
    cov3 = covariances(log_scales, quats)  # (N, 3, 3)
    M = J @ R[:, None]  # (C, N, 2, 3)
    cov2 = M @ cov3[None] @ M.transpose(-1, -2)
    a = cov2[..., 0, 0] + LOW_PASS
    b = cov2[..., 0, 1]
    d = cov2[..., 1, 1] + LOW_PASS
    det = a * d - b * b
    mid = 0.5 * (a + d)
    lam = mid + torch.sqrt(torch.clamp_min(mid * mid - det, 0.1))
    radius = torch.ceil(3.0 * torch.sqrt(lam.detach()))
    visible = (
        (z > NEAR)
        & (det > 0)
        & (u.detach() + radius > 0)
        & (u.detach() - radius < width)
        & (v.detach() + radius > 0)
        & (v.detach() - radius < height)
    )
    radius = torch.where(visible, radius, torch.zeros_like(radius))

    cam_idx, g_idx = torch.nonzero(visible, as_tuple=True)
    out_img = torch.zeros(c * height * width, 3, dtype=dtype, device=device)
    out_alpha = torch.zeros(c * height * width, dtype=dtype, device=device)
    out_depth = torch.zeros(c * height * width, dtype=dtype, device=device)
    pairs = tile_entries = dropped = 0
    if len(g_idx):
        # one entry per visible (view, Gaussian), in depth order; a stable sort by pixel later keeps that order
        order = torch.argsort(z.detach()[cam_idx, g_idx], stable=True)
        cam_idx, g_idx = cam_idx[order], g_idx[order]
        opacity = torch.sigmoid(opacity_logits)[g_idx]
        inv = 1.0 / det[cam_idx, g_idx]
        # per entry: centre, conic (inverse 2D covariance) and opacity, gathered once per pair below
        feats = torch.stack(
            [
                u[cam_idx, g_idx],
                v[cam_idx, g_idx],
                d[cam_idx, g_idx] * inv,
                -b[cam_idx, g_idx] * inv,
                a[cam_idx, g_idx] * inv,
                opacity,
            ],
            -1,
        )
        fd = feats.detach()
        # the box where alpha can reach ALPHA_MIN (<= 3 sigma): opacity-aware, as gsplat does; its half-size is
        # capped on screen (a splat larger than that is drawn truncated: the cap bounds the work, not the look)
        reach = torch.sqrt(2.0 * torch.log(torch.clamp_min(fd[:, 5] / ALPHA_MIN, 1.0)))
        rmax = radius[cam_idx, g_idx].clamp_max(max(1.0, radius_cap * max(width, height)))
        rx = torch.minimum(rmax, reach * torch.sqrt(a.detach()[cam_idx, g_idx]))
        ry = torch.minimum(rmax, reach * torch.sqrt(d.detach()[cam_idx, g_idx]))
        uu, vv = fd[:, 0], fd[:, 1]
        x0 = torch.ceil(uu - rx - 0.5).clamp(0, width - 1).long()
        x1 = torch.floor(uu + rx - 0.5).clamp(0, width - 1).long()
        y0 = torch.ceil(vv - ry - 0.5).clamp(0, height - 1).long()
        y1 = torch.floor(vv + ry - 0.5).clamp(0, height - 1).long()
        rect, tile_stats = _bin_tiles(cam_idx, x0, x1, y0, y1, width, height, pairs_per_pixel)
        entry_of, x0, y0, bw, bh = rect.unbind(1)
        counts = bw * bh
        hw = height * width
        # pairs: every pixel of every kept (entry, tile) rectangle; one gather per pair (index_select: fast on a CPU)
        rect_of = torch.repeat_interleave(torch.arange(len(entry_of), device=device), counts)
        box = torch.stack([x0, y0, bw, torch.cumsum(counts, 0) - counts, cam_idx[entry_of] * hw], 1).index_select(
            0, rect_of
        )
        entry = entry_of.index_select(0, rect_of)
        offset = torch.arange(len(entry), device=device) - box[:, 3]
        row = torch.div(offset, box[:, 2], rounding_mode="floor")
        px = box[:, 0] + offset - row * box[:, 2]
        py = box[:, 1] + row
        # which pairs count: decided without autograd, then only those are built differentiably
        with torch.no_grad():
            f = fd.index_select(0, entry)
            dx = px.to(dtype) + 0.5 - f[:, 0]
            dy = py.to(dtype) + 0.5 - f[:, 1]
            power = -0.5 * (f[:, 2] * dx * dx + f[:, 4] * dy * dy) - f[:, 3] * dx * dy
            alpha_d = f[:, 5] * torch.exp(power)
            keep = torch.nonzero((power <= 0) & (alpha_d >= ALPHA_MIN)).squeeze(1)
            pix = (box[:, 4] + py * width + px).index_select(0, keep)
            alpha_d = alpha_d.index_select(0, keep).clamp_max(ALPHA_MAX)
            entry = entry.index_select(0, keep)
            pix, by_pixel = torch.sort(pix.int(), stable=True)  # int32 sorts about 3x faster on a CPU
            pix = pix.long()
            entry, alpha_d = entry.index_select(0, by_pixel), alpha_d.index_select(0, by_pixel)
            # early termination before autograd sees the pairs: the reference stops at the pair that would
            # take the transmittance below T_MIN, so pairs from there on are dropped here, not masked later
            first, seg_start, seg = _segments(pix)
            log1m = torch.log1p(-alpha_d).double()
            incl = torch.cumsum(log1m, 0)
            incl = incl - (incl - log1m).index_select(0, seg_start).index_select(0, seg)
            live = torch.nonzero(incl >= math.log(T_MIN)).squeeze(1)
            if len(live) < len(pix):
                entry, pix = entry.index_select(0, live), pix.index_select(0, live)
                first, seg_start, seg = _segments(pix)
            lin = pix % hw
            px, py = lin % width, torch.div(lin, width, rounding_mode="floor")
        f = feats.index_select(0, entry)
        dx = px.to(dtype) + 0.5 - f[:, 0]
        dy = py.to(dtype) + 0.5 - f[:, 1]
        power = -0.5 * (f[:, 2] * dx * dx + f[:, 4] * dy * dy) - f[:, 3] * dx * dy
        alpha = torch.clamp_max(f[:, 5] * torch.exp(power), ALPHA_MAX)
        # transmittance before each pair: exp of the exclusive running sum of log(1 - alpha) within its pixel
        # (the running sum in float64: over a million pairs float32 would lose the small differences)
        log1m = torch.log1p(-alpha).double()
        excl = torch.cumsum(log1m, 0) - log1m
        T = torch.exp(excl - excl.index_select(0, seg_start).index_select(0, seg)).to(dtype)
        w = T * alpha
        # colour and depth once per entry, not per pair
        centres = -torch.einsum("cji,cj->ci", R, t)  # camera centres in world
        dirs = means[g_idx] - centres[cam_idx]
        dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        colour_depth = torch.cat([sh_colors(sh[g_idx], dirs, degree), z[cam_idx, g_idx][:, None]], -1)
        cd = colour_depth.index_select(0, entry)
        out_img = out_img.index_add(0, pix, w[:, None] * cd[:, :3])
        out_alpha = out_alpha.index_add(0, pix, w)
        out_depth = out_depth.index_add(0, pix, w * cd[:, 3])
        pairs = len(pix)
        tile_entries, dropped = tile_stats

    image = out_img + (1 - out_alpha)[:, None] * bg
    return RenderOutput(
        image.reshape(c, height, width, 3),
        out_alpha.reshape(c, height, width),
        out_depth.reshape(c, height, width),
        means2d,
        visible,
        radius,
        pairs,
        tile_entries,
        dropped,
    )


def _bin_tiles(cam_idx, x0, x1, y0, y1, width: int, height: int, pairs_per_pixel: int):
    """Each entry's pixel box [x0, x1] x [y0, y1] (entries in depth order) cut into the 16x16 tiles it touches;
    a tile keeps its nearest entries while the pixels they cover in it stay within ``pairs_per_pixel`` per
    pixel of the tile (the entry that crosses the cap is kept). Returns the kept (entry, x0, y0, w, h)
    rectangles, grouped by tile, depth order within a tile, and (intersections, dropped)."""
    device = x0.device
    tx0, tx1 = torch.div(x0, TILE, rounding_mode="floor"), torch.div(x1, TILE, rounding_mode="floor")
    ty0, ty1 = torch.div(y0, TILE, rounding_mode="floor"), torch.div(y1, TILE, rounding_mode="floor")
    ntx, nty = (width + TILE - 1) // TILE, (height + TILE - 1) // TILE
    tw, th = tx1 - tx0 + 1, ty1 - ty0 + 1
    n_tiles = torch.where((x1 >= x0) & (y1 >= y0), tw * th, torch.zeros_like(tw))
    entry = torch.repeat_interleave(torch.arange(len(x0), device=device), n_tiles)
    start = torch.cumsum(n_tiles, 0) - n_tiles
    k = torch.arange(len(entry), device=device) - start.index_select(0, entry)
    tw_e = tw.index_select(0, entry)
    tx = tx0.index_select(0, entry) + k % tw_e
    ty = ty0.index_select(0, entry) + torch.div(k, tw_e, rounding_mode="floor")
    rx0 = torch.maximum(x0.index_select(0, entry), tx * TILE)
    rx1 = torch.minimum(x1.index_select(0, entry), tx * TILE + TILE - 1)
    ry0 = torch.maximum(y0.index_select(0, entry), ty * TILE)
    ry1 = torch.minimum(y1.index_select(0, entry), ty * TILE + TILE - 1)
    area = (rx1 - rx0 + 1) * (ry1 - ry0 + 1)
    tile = (cam_idx.index_select(0, entry) * nty + ty) * ntx + tx
    tile, order = torch.sort(tile.int(), stable=True)  # stable: depth order within each tile
    entry, rx0, ry0, rx1, ry1, area = (t.index_select(0, order) for t in (entry, rx0, ry0, rx1, ry1, area))
    # pixels covered in the tile by the nearer entries (exclusive running sum within the tile)
    first, seg_start, seg = _segments(tile)
    incl = torch.cumsum(area, 0)
    before = incl - area - (incl - area).index_select(0, seg_start).index_select(0, seg)
    keep = torch.nonzero(before < pairs_per_pixel * TILE * TILE).squeeze(1)
    rect = torch.stack([entry, rx0, ry0, rx1 - rx0 + 1, ry1 - ry0 + 1], 1).index_select(0, keep)
    return rect, (len(entry), len(entry) - len(keep))


def _segments(pix: torch.Tensor):
    """For pairs sorted by pixel: is each the first of its pixel, where each pixel starts, each pair's pixel rank."""
    first = torch.ones_like(pix, dtype=torch.bool)
    first[1:] = pix[1:] != pix[:-1]
    return first, torch.nonzero(first).squeeze(1), torch.cumsum(first.long(), 0) - 1


def gsplat_available() -> bool:
    """gsplat imports and CUDA is present (its rasteriser needs both)."""
    if not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
    except Exception:
        return False
    return True


def resolve_backend(backend: str, device: str) -> str:
    """``auto`` -> gsplat where it can run (CUDA device, gsplat installed), else torch."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return "torch"
    can = str(device).startswith("cuda") and gsplat_available()
    if backend == "gsplat" and not can:
        raise RuntimeError("the gsplat backend needs the gsplat package and a CUDA device")
    return "gsplat" if can else "torch"


def rasterize_gsplat(
    means: torch.Tensor,
    log_scales: torch.Tensor,
    quats: torch.Tensor,
    opacity_logits: torch.Tensor,
    sh: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    background: torch.Tensor | None = None,
    sh_degree: int | None = None,
) -> RenderOutput:
    """The same contract through gsplat's CUDA rasteriser (``gsplat.rasterization``)."""
    import gsplat

    degree = int(round(math.sqrt(sh.shape[1]))) - 1 if sh_degree is None else int(sh_degree)
    c = len(viewmats)
    bg = None if background is None else background.to(means)[None].expand(c, 3)
    colors, alphas, meta = gsplat.rasterization(
        means,
        quats / quats.norm(dim=-1, keepdim=True),
        torch.exp(log_scales),
        torch.sigmoid(opacity_logits),
        sh[:, : (degree + 1) ** 2],
        viewmats.to(means),
        Ks.to(means),
        width,
        height,
        near_plane=NEAR,
        sh_degree=degree,
        backgrounds=bg,
        render_mode="RGB+ED",
        packed=False,
        eps2d=LOW_PASS,
    )
    means2d = meta["means2d"]
    if means2d.requires_grad:
        means2d.retain_grad()
    radii = meta["radii"]
    radii = radii.max(-1).values if radii.dim() == 3 else radii
    return RenderOutput(colors[..., :3], alphas[..., 0], colors[..., 3], means2d, radii > 0, radii.to(means))
