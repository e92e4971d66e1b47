"""Splats -> a triangle mesh: marching cubes on the opacity field the Gaussians define.

The field is o(x) = sum_i opacity_i exp(-1/2 (x - mu_i)^T Sigma_i^-1 (x - mu_i)), evaluated on a
lattice by visiting, for each Gaussian, only the cells inside its 3-sigma box; cavities the surface
encloses are filled, small parts dropped, and each vertex takes the base colour of the nearest
opaque Gaussian. The method name goes into the protocol rows' settings ("opacity-field marching cubes").
"""

from __future__ import annotations

import numpy as np
import torch

from methods.base import Gaussians, MethodError
from methods.splats.raster import covariances

MESH_METHOD = "opacity-field marching cubes"


class EmptySurface(MethodError):
    """The opacity field never reaches the level: no surface to extract."""


@torch.no_grad()
def opacity_field(g: Gaussians, box: np.ndarray, resolution: int, max_cells: int = 1 << 22) -> tuple[np.ndarray, float]:
    """The opacity field on a cubic lattice over ``box`` (2, 3): (values (R, R, R), spacing)."""
    lo = torch.as_tensor(box[0], dtype=torch.float32)
    spacing = float((box[1] - box[0]).max() / (resolution - 1))
    means = torch.as_tensor(g.means)
    cov = covariances(torch.as_tensor(g.log_scales), torch.as_tensor(g.quats))
    prec = torch.linalg.inv(cov.double()).float()
    opacity = torch.as_tensor(g.opacities, dtype=torch.float32)
    half = 3.0 * torch.sqrt(torch.diagonal(cov, dim1=1, dim2=2))  # per-axis 3-sigma half extent
    lo_cell = torch.ceil((means - half - lo) / spacing).clamp(0, resolution - 1).long()
    hi_cell = torch.floor((means + half - lo) / spacing).clamp(0, resolution - 1).long()
    size = (hi_cell - lo_cell + 1).clamp_min(0)
    counts = size.prod(1)
    field = torch.zeros(resolution**3)
    order = torch.arange(len(means))
    start = 0
    while start < len(order):  # chunks of Gaussians bounded by the cells they touch
        csum = torch.cumsum(counts[start:], 0)
        stop = start + max(1, int(torch.searchsorted(csum, torch.tensor(max_cells)).item()))
        idx = order[start:stop]
        c = counts[idx]
        entry = torch.repeat_interleave(idx, c)
        off = torch.arange(len(entry)) - torch.repeat_interleave(torch.cumsum(c, 0) - c, c)
        sx, sy = size[entry, 0], size[entry, 1]
        cell = lo_cell[entry] + torch.stack([off % sx, (off // sx) % sy, off // (sx * sy)], 1)
        d = lo + cell.float() * spacing - means[entry]
        power = -0.5 * torch.einsum("pi,pij,pj->p", d, prec[entry], d)
        flat = (cell[:, 0] * resolution + cell[:, 1]) * resolution + cell[:, 2]
        field.index_add_(0, flat, opacity[entry] * torch.exp(power))
        start = stop
    return field.view(resolution, resolution, resolution).numpy(), spacing


def extract_mesh(
    g: Gaussians, resolution: int = 128, level: float = 0.5, min_opacity: float = 0.1, min_component: float = 0.02
) -> dict:
    """A coloured mesh of the level set ``level`` of the opacity field of the splats at least ``min_opacity``."""
    from scipy.ndimage import binary_fill_holes
    from scipy.spatial import cKDTree
    from skimage.measure import marching_cubes

    g = g.subset(g.opacities >= min_opacity)
    if len(g) == 0:
        raise EmptySurface("no splat is opaque enough to have a surface")
    lo, hi = np.percentile(g.means, 0.5, axis=0), np.percentile(g.means, 99.5, axis=0)
    pad = 0.05 * float((hi - lo).max()) + 1e-6
    box = np.stack([lo - pad, lo - pad + (hi - lo).max() + 2 * pad])
    values, spacing = opacity_field(g, box, resolution)
    solid = values > level
    if not solid.any():
        raise EmptySurface(f"the opacity field never reaches {level}")
    values = np.where(binary_fill_holes(solid) & ~solid, 2 * level, values)
    padded = np.pad(values, 1, constant_values=0.0)
    verts, faces, _, _ = marching_cubes(padded, level=level, spacing=(spacing,) * 3)
    verts = verts - spacing + box[0]
    verts, faces, removed = _largest_parts(verts, faces, min_component)
    opaque = g.opacities >= 0.5
    ref = g.subset(opaque) if opaque.sum() >= 1 else g
    _, nearest = cKDTree(ref.means).query(verts)
    return {
        "vertices": verts.astype(np.float32),
        "faces": faces.astype(np.int64),
        "colors": ref.base_colors()[nearest],
        "components_removed": removed,
        "method": MESH_METHOD,
        "level": level,
        "resolution": resolution,
    }


def _largest_parts(vertices: np.ndarray, faces: np.ndarray, min_fraction: float):
    import trimesh

    tm = trimesh.Trimesh(vertices, faces, process=False)
    labels = trimesh.graph.connected_component_labels(tm.face_adjacency, node_count=len(faces))
    sizes = np.bincount(labels)
    keep = np.flatnonzero(sizes >= max(1, min_fraction * sizes.max()))
    tm.update_faces(np.isin(labels, keep))
    tm.remove_unreferenced_vertices()
    return np.asarray(tm.vertices), np.asarray(tm.faces), int(len(sizes) - len(keep))
