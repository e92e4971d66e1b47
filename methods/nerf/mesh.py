"""Field -> coloured triangle mesh: marching cubes on the density, clean-up, decimation, colours from the field.

The mesh keeps what the views see: faces no training camera sees (outside every frustum, or hidden
behind the surface) go, and so do parts that every view sees as the backdrop (their colour is the
plain backdrop's of an unmasked capture: the floaters a field grows to paint it).

The mesh is in the field's frame (the cube [-1, 1]^3). Colours are the field's radiance seen
from outside along each vertex normal, so baked-in view dependence is that of a frontal view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from methods.base import MethodError


@dataclass
class MeshOptions:
    resolution: int = 128  # marching-cubes lattice points along the longest side of the box
    threshold: float = 10.0  # density level of the surface (1 / field unit)
    min_component_fraction: float = 0.02  # drop parts with fewer faces than this fraction of the largest
    target_faces: int = 0  # quadric decimation down to this many faces (0: keep all)
    fill_interior: bool = True  # fill cavities no ray from outside the box can reach (no inner shells)
    visible_only: bool = True  # drop faces that no training camera can see (inner shells, buried floaters)
    # The backdrop's colour (RGB in [0, 1]) of an unmasked capture (:func:`backdrop_colour`), or None. Parts
    # whose colour is the backdrop's are what every view sees as backdrop (the floaters a field grows to
    # paint it, e.g. a sheet above the object): they are dropped.
    background: tuple[float, float, float] | None = None
    background_tolerance: float = 0.06  # RGB distance to the background (0-1 scale) that still counts as it
    background_share: float = 0.8  # a part goes when this share of its vertices has the background's colour
    chunk: int = 1 << 17


class EmptySurface(MethodError):
    """The density never reaches the threshold: no surface to extract."""


@torch.no_grad()
def density_lattice(field, box: np.ndarray, resolution: int, chunk: int = 1 << 17, device="cpu"):
    """Density on a lattice over ``box`` (2, 3), ``resolution`` points along its longest side; (X, Y, Z) array."""
    extent = box[1] - box[0]
    counts = np.maximum(2, np.round(extent / extent.max() * (resolution - 1)).astype(int) + 1)
    axes = [torch.linspace(float(box[0, a]), float(box[1, a]), int(counts[a]), device=device) for a in range(3)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).view(-1, 3)
    values = torch.cat([field.density(grid[i : i + chunk]) for i in range(0, len(grid), chunk)])
    spacing = tuple(float(extent[a] / (counts[a] - 1)) for a in range(3))
    return values.view(*counts.tolist()).cpu().numpy(), spacing


def fill_enclosed(volume: np.ndarray, threshold: float) -> np.ndarray:
    """Raise cavities enclosed by the surface above the threshold (the field never sees inside a solid)."""
    from scipy.ndimage import binary_fill_holes

    solid = volume > threshold
    cavities = binary_fill_holes(solid) & ~solid
    if not cavities.any():
        return volume
    out = volume.copy()
    out[cavities] = 2.0 * threshold
    return out


def _largest_components(vertices: np.ndarray, faces: np.ndarray, min_fraction: float):
    import trimesh

    tm = trimesh.Trimesh(vertices, faces, process=False)
    labels = trimesh.graph.connected_component_labels(tm.face_adjacency, node_count=len(faces))
    sizes = np.bincount(labels)
    keep = np.flatnonzero(sizes >= max(1, min_fraction * sizes.max()))
    mask = np.isin(labels, keep)
    tm.update_faces(mask)
    tm.remove_unreferenced_vertices()
    return np.asarray(tm.vertices), np.asarray(tm.faces), int(len(sizes) - len(keep))


def visible_faces(
    vertices: np.ndarray, faces: np.ndarray, c2w: np.ndarray, K: np.ndarray, width: int, height: int, max_cameras=48
) -> np.ndarray:
    """Which faces some camera sees: the centroid projects into its image and nothing lies in between."""
    from methods.raycast import RayScene

    scene = RayScene(vertices, faces)
    tri = vertices[faces]
    centroid = tri.mean(1)
    scale = float(np.linalg.norm(vertices.max(0) - vertices.min(0))) or 1.0
    seen = np.zeros(len(faces), bool)
    pick = np.unique(np.linspace(0, len(c2w) - 1, min(len(c2w), max_cameras)).round().astype(int))
    for i in pick:
        eye = c2w[i, :3, 3]
        to_cam = eye - centroid
        dist = np.linalg.norm(to_cam, axis=1)
        d = to_cam / np.maximum(dist, 1e-12)[:, None]
        cam = (centroid - eye) @ c2w[i, :3, :3]  # camera coordinates (OpenGL: looks along -Z)
        z = -cam[:, 2]
        u = K[i, 0, 0] * cam[:, 0] / np.maximum(z, 1e-9) + K[i, 0, 2]
        v = -K[i, 1, 1] * cam[:, 1] / np.maximum(z, 1e-9) + K[i, 1, 2]
        candidates = (~seen) & (z > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
        if not candidates.any():
            continue
        idx = np.flatnonzero(candidates)
        start = centroid[idx] + d[idx] * 1e-4 * scale
        hit, _ = scene.first_hits(start, d[idx])
        seen[idx[~(hit < dist[idx] - 1e-4 * scale)]] = True
    return seen


def decimate(vertices: np.ndarray, faces: np.ndarray, target_faces: int):
    """Quadric edge-collapse decimation to about ``target_faces`` faces (see :func:`methods.raycast.decimate`)."""
    from methods import raycast

    return raycast.decimate(vertices, faces, target_faces)


@torch.no_grad()
def orient(field, vertices: np.ndarray, faces: np.ndarray, device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """Faces wound counter-clockwise seen from outside, and outward unit vertex normals (towards lower density)."""
    import trimesh

    tm = trimesh.Trimesh(vertices, faces, process=False)
    normals = np.asarray(tm.vertex_normals, dtype=np.float64)
    probe = min(len(vertices), 2048)
    idx = np.linspace(0, len(vertices) - 1, probe).astype(int)
    eps = 0.01
    v = torch.as_tensor(vertices[idx], dtype=torch.float32, device=device)
    n = torch.as_tensor(normals[idx], dtype=torch.float32, device=device)
    outside = field.density((v + eps * n).clamp(-1, 1))
    inside = field.density((v - eps * n).clamp(-1, 1))
    if float((outside < inside).float().mean()) < 0.5:
        return np.ascontiguousarray(faces[:, ::-1]), -normals
    return faces, normals


@torch.no_grad()
def vertex_colors(field, vertices: np.ndarray, normals: np.ndarray, chunk: int = 1 << 16, device="cpu") -> np.ndarray:
    """The field's colour at each vertex seen from outside along its normal, float32 in [0, 1]."""
    out = []
    for i in range(0, len(vertices), chunk):
        v = torch.as_tensor(vertices[i : i + chunk], dtype=torch.float32, device=device)
        n = torch.as_tensor(normals[i : i + chunk], dtype=torch.float32, device=device)
        d = -torch.nn.functional.normalize(n, dim=-1)
        out.append(field.color(v.clamp(-1, 1), d).cpu())
    return torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, 3), np.float32)


def backdrop_colour(images: np.ndarray, border: int = 2, max_spread: float = 0.08) -> tuple[float, float, float] | None:
    """The backdrop's colour of an unmasked capture: the median of the frames' border pixels, RGB in [0, 1].

    None when there is no single backdrop to match: frames with alpha (masked), or borders whose colours
    spread more than ``max_spread`` (median absolute deviation: a cluttered scene, not a plain backdrop).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (3, 4) or len(images) == 0:
        return None
    if images.shape[-1] == 4 and int(images[..., 3].min()) < 255:
        return None
    rgb = images[..., :3].astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
    edges = np.concatenate(
        [
            rgb[:, :border].reshape(-1, 3),
            rgb[:, -border:].reshape(-1, 3),
            rgb[:, :, :border].reshape(-1, 3),
            rgb[:, :, -border:].reshape(-1, 3),
        ]
    )
    median = np.median(edges, axis=0)
    if float(np.median(np.abs(edges - median).max(axis=1))) > max_spread:
        return None
    return tuple(float(x) for x in median)


def drop_background_parts(field, vertices: np.ndarray, faces: np.ndarray, options: MeshOptions, device="cpu"):
    """Drop the connected parts the views see as background: ``background_share`` of their vertices have the
    background's colour. The largest part stays whatever its colour (the object is never dropped whole)."""
    import trimesh

    tm = trimesh.Trimesh(vertices, faces, process=False)
    labels = trimesh.graph.connected_component_labels(tm.face_adjacency, node_count=len(faces))
    _, normals = orient(field, vertices, faces, device)
    colors = vertex_colors(field, vertices, normals, device=device)
    background = np.asarray(options.background, dtype=np.float32).reshape(1, 3)
    is_background = np.linalg.norm(colors - background, axis=1) <= options.background_tolerance * np.sqrt(3.0)
    # a face is background when its three vertices are; a part when enough of its faces are
    face_background = is_background[faces].all(axis=1)
    sizes = np.bincount(labels)
    share = np.bincount(labels, weights=face_background.astype(np.float64)) / np.maximum(sizes, 1)
    drop = share >= options.background_share
    drop[int(np.argmax(sizes))] = False
    if not drop.any():
        return vertices, faces, 0
    tm.update_faces(~drop[labels])
    tm.remove_unreferenced_vertices()
    return np.asarray(tm.vertices), np.asarray(tm.faces), int(drop.sum())


def extract_mesh(field, box: np.ndarray, options: MeshOptions, device="cpu", cameras=None) -> dict:
    """Marching cubes on ``field.density`` over ``box`` (2, 3) in field units -> vertices, faces, colours.

    ``cameras``: (c2w (N, 4, 4), K (N, 3, 3), width, height) in the field frame, for ``visible_only``.
    """
    from skimage.measure import marching_cubes

    box = np.asarray(box, dtype=np.float64)
    volume, spacing = density_lattice(field, box, options.resolution, options.chunk, device)
    peak = float(volume.max()) if volume.size else 0.0
    if peak <= options.threshold:
        raise EmptySurface(
            f"the field's density peaks at {peak:.3g}, below the mesh threshold {options.threshold:g}: "
            "lower the threshold or train longer"
        )
    if float(volume.min()) >= options.threshold:
        raise EmptySurface(
            f"the whole box is denser than the mesh threshold {options.threshold:g}: raise the threshold"
        )
    if options.fill_interior:
        volume = fill_enclosed(volume, options.threshold)
    # pad with empty space so that surfaces touching the box are closed
    padded = np.pad(volume, 1, constant_values=0.0)
    verts, faces, _, _ = marching_cubes(padded, level=options.threshold, spacing=spacing)
    verts = verts - np.asarray(spacing) + box[0]
    faces = faces.astype(np.int64)
    removed = 0
    if options.min_component_fraction > 0 and len(faces):
        verts, faces, removed = _largest_components(verts, faces, options.min_component_fraction)
    hidden = 0
    if options.visible_only and cameras is not None and len(faces):
        c2w, K, width, height = cameras
        seen = visible_faces(verts, faces, c2w, K, width, height)
        hidden = int((~seen).sum())
        if seen.any():
            faces = faces[seen]
            verts, faces, removed_more = _largest_components(verts, faces, options.min_component_fraction)
            removed += removed_more
    background_parts = 0
    if options.background is not None and len(faces):
        verts, faces, background_parts = drop_background_parts(field, verts, faces, options, device)
    full_faces = len(faces)
    if options.target_faces and len(faces) > options.target_faces:
        verts, faces = decimate(verts, faces, options.target_faces)
    faces, normals = orient(field, verts, faces, device)
    colors = vertex_colors(field, verts, normals, device=device)
    return {
        "background_parts_removed": background_parts,
        "vertices": verts.astype(np.float32),
        "faces": faces,
        "colors": colors,
        "normals": normals.astype(np.float32),
        "components_removed": removed,
        "hidden_faces_removed": hidden,
        "faces_before_decimation": full_faces,
        "density_peak": peak,
    }
