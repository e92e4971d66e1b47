"""Point cloud -> mesh: Point-E's SDF model + marching cubes, or Poisson reconstruction (open3d).

Vertex colours come from the nearest point of the cloud, as in the official ``marching_cubes_mesh``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from methods.base import MethodUnavailable
from methods.point_e.models import CrossAttentionPointCloudSDFModel

SIDE_LENGTH = 1.02  # the cube queried by the SDF, centred at the origin (Point-E clouds lie in [-0.5, 0.5])


@dataclass
class MeshResult:
    vertices: np.ndarray  # (V, 3) float32
    faces: np.ndarray  # (F, 3) int64, counter-clockwise seen from outside
    vertex_colors: np.ndarray | None  # (V, 3) float32 in [0, 1]
    notes: list[str] = field(default_factory=list)


def grid_coordinates(
    grid_size: int, side_length: float = SIDE_LENGTH, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """The ``grid_size``^3 query points ``[3, G^3]`` (x slowest, z fastest), float32."""
    voxel_size = side_length / (grid_size - 1)
    axis = torch.arange(grid_size, dtype=torch.int64, device=device).float() * voxel_size + (-side_length / 2)
    xs, ys, zs = torch.meshgrid(axis, axis, axis, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1), zs.reshape(-1)])


@torch.no_grad()
def sdf_volume(
    model: CrossAttentionPointCloudSDFModel,
    coords: np.ndarray | torch.Tensor,
    grid_size: int = 32,
    side_length: float = SIDE_LENGTH,
    batch_size: int = 4096,
) -> np.ndarray:
    """The SDF of the cloud ``coords`` ``(P, 3)`` on a ``grid_size``^3 grid, ``[x][y][z]``, float32."""
    param = next(model.parameters())
    cloud = torch.as_tensor(np.asarray(coords, dtype=np.float32)).to(param.device, param.dtype)
    latents = model.encode_point_clouds(cloud.t()[None])
    queries = grid_coordinates(grid_size, side_length, param.device).to(param.dtype)
    values = [
        model.predict_sdf(queries[None, :, i : i + batch_size], latents)[0]
        for i in range(0, queries.shape[1], batch_size)
    ]
    return torch.cat(values).float().reshape(grid_size, grid_size, grid_size).cpu().numpy()


def marching_cubes(volume: np.ndarray, side_length: float = SIDE_LENGTH) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Zero level set of a ``[x][y][z]`` SDF volume over the centred cube: vertices, faces, notes."""
    from skimage import measure

    notes = []
    grid_size = volume.shape[0]
    if not np.isfinite(volume).all() or volume.max() == volume.min():
        notes.append("no mesh: the SDF is constant (or not finite) over the grid, so it has no surface")
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64), notes
    if np.all(volume < 0) or np.all(volume > 0):
        # no zero crossing: the official code centres the volume so that a surface exists
        volume = volume - np.mean(volume)
        notes.append("the SDF had no zero crossing; the volume was centred on its mean (as the official code does)")
    voxel_size = side_length / (grid_size - 1)
    verts, faces, _, _ = measure.marching_cubes(volume, level=0, allow_degenerate=False, spacing=(voxel_size,) * 3)
    # Point-E's SDF is positive inside: swapping two corners winds the faces counter-clockwise from outside
    faces = faces[:, [1, 0, 2]]
    verts = verts + (-side_length / 2)
    return verts.astype(np.float32), faces.astype(np.int64), notes


def nearest_point_indices(cloud: np.ndarray, queries: np.ndarray, batch_size: int = 16384) -> np.ndarray:
    """Index of the nearest cloud point for each query, by ``|p|^2 + |q|^2 - 2 p.q`` in float32 (as officially)."""
    cloud_t = torch.as_tensor(np.asarray(cloud, dtype=np.float32))
    queries_t = torch.as_tensor(np.asarray(queries, dtype=np.float32))
    norms = (cloud_t**2).sum(-1)
    out = []
    for i in range(0, len(queries_t), batch_size):
        q = queries_t[i : i + batch_size]
        dists = norms[None] + (q**2).sum(-1)[:, None] - 2 * (q @ cloud_t.T)
        out.append(dists.argmin(-1))
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


def sdf_mesh(
    model: CrossAttentionPointCloudSDFModel,
    coords: np.ndarray,
    colors: np.ndarray | None,
    grid_size: int = 32,
    side_length: float = SIDE_LENGTH,
    batch_size: int = 4096,
) -> MeshResult:
    """Point-E's mesh: the SDF model on a grid, marching cubes, colours from the nearest points."""
    volume = sdf_volume(model, coords, grid_size, side_length, batch_size)
    verts, faces, notes = marching_cubes(volume, side_length)
    vertex_colors = (
        None if colors is None else np.asarray(colors, dtype=np.float32)[nearest_point_indices(coords, verts)]
    )
    return MeshResult(verts, faces, vertex_colors, notes)


def poisson_depth(grid_size: int) -> int:
    """The Poisson octree depth whose resolution matches a marching-cubes grid of ``grid_size``."""
    return max(4, math.ceil(math.log2(grid_size)) + 1)


def poisson_mesh(
    coords: np.ndarray, colors: np.ndarray | None, depth: int = 6, density_quantile: float = 0.02
) -> MeshResult:
    """Screened Poisson reconstruction (open3d) of the cloud, trimmed where the point density is lowest."""
    try:
        import open3d as o3d
    except ImportError as err:  # open3d needs system libraries that may be missing (libusb, libGL)
        raise MethodUnavailable(
            f"the Poisson mesh needs open3d, which cannot be imported here ({err}); use mesh_method='sdf'"
        ) from None

    points = np.asarray(coords, dtype=np.float64)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    pcd.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=min(30, len(points) - 1)))
    pcd.orient_normals_consistent_tangent_plane(min(15, len(points) - 1))
    normals = np.asarray(pcd.normals)
    if np.mean(np.sum(normals * (points - points.mean(0)), axis=1)) < 0:
        pcd.normals = o3d.utility.Vector3dVector(-normals)  # point the normals outwards
    mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(pcd, depth=depth)
    densities = np.asarray(densities)
    if len(densities):
        mesh.remove_vertices_by_mask(densities < np.quantile(densities, density_quantile))
    bbox = pcd.get_axis_aligned_bounding_box()
    mesh = mesh.crop(bbox.scale(1.05, bbox.get_center()))
    mesh.remove_unreferenced_vertices()
    verts = np.asarray(mesh.vertices, dtype=np.float32)
    faces = np.asarray(mesh.triangles, dtype=np.int64)
    vertex_colors = (
        None if colors is None else np.asarray(colors, dtype=np.float32)[nearest_point_indices(points, verts)]
    )
    return MeshResult(verts, faces, vertex_colors, [f"Poisson reconstruction (open3d, depth {depth})"])
