"""Marching cubes on TripoSR's density grid (scikit-image), in chunks so peak memory stays bounded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from methods.base import MethodError
from methods.triposr.model import TripoSR

THRESHOLD = 25.0  # official extract_mesh default, on the activated density


@dataclass
class RawMesh:
    """Vertices (V, 3) in the official frame (+Z up, world units), faces (F, 3), colours (V, 3) in [0, 1]."""

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None


def grid_axis(resolution: int, radius: float) -> torch.Tensor:
    """The official grid coordinates: linspace(0, 1) scaled to [-r, r] (the same float steps)."""
    return torch.linspace(0, 1, resolution) * (2 * radius) + (-radius)


def density_grid(model: TripoSR, planes: torch.Tensor, resolution: int, chunk_size: int = 65536) -> np.ndarray:
    """Activated density on the res^3 grid, [i, j, k] = (x_i, y_j, z_k), float32; ``chunk_size`` points per pass."""
    axis = grid_axis(resolution, model.config.radius)
    return model.grid_density(planes, axis, chunk_size).cpu().numpy()


def marching_cubes(
    grid: np.ndarray, radius: float, threshold: float = THRESHOLD, method: str = "lewiner"
) -> tuple[np.ndarray, np.ndarray]:
    """The surface where density = threshold, inside positive; vertices in world units, faces outward."""
    from skimage import measure

    level = grid - np.float32(threshold)
    if not (level.max() > 0 > level.min()):
        raise MethodError(
            f"TripoSR found no surface (the density never crosses {threshold:g} inside the box); "
            "the image may not show one recognisable object"
        )
    verts, faces, _, _ = measure.marching_cubes(
        level, level=0.0, method=method, gradient_direction="descent", allow_degenerate=(method == "lorensen")
    )
    res = grid.shape[0]
    verts = torch.from_numpy(verts.astype(np.float32)) / (res - 1.0)
    verts = verts * (2 * radius) + (-radius)  # the official scale_tensor, (0, 1) -> (-r, r)
    return verts.numpy(), faces.astype(np.int64)


@torch.inference_mode()
def extract_mesh(
    model: TripoSR,
    planes: torch.Tensor,
    resolution: int,
    threshold: float = THRESHOLD,
    chunk_size: int = 65536,
    vertex_colors: bool = True,
    method: str = "lewiner",
) -> RawMesh:
    grid = density_grid(model, planes, resolution, chunk_size)
    verts, faces = marching_cubes(grid, model.config.radius, threshold, method)
    colors = None
    if vertex_colors:
        colors = model.query(planes, torch.from_numpy(verts).to(planes.device), chunk_size)["color"].cpu().numpy()
    return RawMesh(verts, faces, colors)


def official_to_canonical(vertices: np.ndarray) -> np.ndarray:
    """Official frame (+Z up, the input seen from +X, image right = +Y) -> ours (+Y up, front +Z, right +X).

    (x, y, z) -> (y, z, x): a rotation (det +1), so face winding is kept.
    """
    return np.ascontiguousarray(vertices[:, [1, 2, 0]])


def bake_texture(
    model: TripoSR,
    planes: torch.Tensor,
    vertices: np.ndarray,
    faces: np.ndarray,
    resolution: int = 1024,
    chunk_size: int = 65536,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A UV atlas (xatlas) and its texture: the decoder's colour at each texel's surface point.

    Texels are found with the project's rasteriser (``methods.raster``, the one under
    ``eval.judging.render``) in UV space; empty texels take the nearest baked colour so that bilinear
    lookups at chart borders do not bleed background.
    Returns (vertices (V', 3) official frame, faces (F, 3), uv (V', 2) with v up, texture (R, R, 3) in [0, 1]).
    """
    import xatlas
    from scipy import ndimage

    from methods.raster import raster_triangles

    vmapping, indices, uvs = xatlas.parametrize(vertices.astype(np.float32), faces.astype(np.uint32))
    new_vertices = vertices[vmapping.astype(np.int64)]
    new_faces = indices.astype(np.int64)
    sx = torch.from_numpy(uvs[:, 0].astype(np.float64) * resolution)
    sy = torch.from_numpy((1.0 - uvs[:, 1].astype(np.float64)) * resolution)  # texture row 0 is v = 1
    pid, bary = raster_triangles(sx, sy, torch.ones_like(sx), torch.from_numpy(new_faces), resolution)
    covered = (pid >= 0).numpy()
    texture = np.zeros((resolution * resolution, 3), np.float32)
    if covered.any():
        corners = torch.from_numpy(new_vertices.astype(np.float64))[torch.from_numpy(new_faces)[pid[pid >= 0]]]
        points = (bary[:, :, None] * corners).sum(dim=1).float().to(planes.device)
        with torch.inference_mode():
            texture[covered] = model.query(planes, points, chunk_size)["color"].cpu().numpy()
        grid = covered.reshape(resolution, resolution)
        nearest = ndimage.distance_transform_edt(~grid, return_distances=False, return_indices=True)
        texture = texture.reshape(resolution, resolution, 3)[nearest[0], nearest[1]]
    return new_vertices, new_faces, uvs.astype(np.float32), texture.reshape(resolution, resolution, 3)
