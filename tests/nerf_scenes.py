"""Scenes the NeRF tests render themselves: a known mesh, known cameras, exact RGBA images (Embree ray casting)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from methods.nerf.cameras import intrinsics_matrix, look_at

FACE_COLOURS = np.array(
    [[0.9, 0.2, 0.2], [0.2, 0.8, 0.3], [0.2, 0.3, 0.9], [0.95, 0.85, 0.2], [0.8, 0.3, 0.8], [0.2, 0.85, 0.85]]
)


def cube(size: float = 1.0):
    """A cube centred on the origin: (vertices, faces) with outward winding."""
    import trimesh

    box = trimesh.creation.box(extents=(size, size, size))
    return np.asarray(box.vertices, dtype=np.float64), np.asarray(box.faces, dtype=np.int64)


def load_mesh(path, radius: float = 1.0):
    """A mesh file centred on its bounding box and scaled to ``radius``: (vertices, faces)."""
    import trimesh

    mesh = trimesh.load(str(path), process=False, force="mesh")
    v = np.asarray(mesh.vertices, dtype=np.float64)
    v = v - (v.min(0) + v.max(0)) / 2
    v *= radius / np.linalg.norm(v, axis=1).max()
    return v, np.asarray(mesh.faces, dtype=np.int64)


def sphere_poses(n: int, radius: float, seed: int = 0, min_elevation: float = -0.35) -> np.ndarray:
    """``n`` OpenGL cameras on a Fibonacci sphere (elevation above ``min_elevation`` in sin units) looking at 0."""
    golden = np.pi * (3.0 - np.sqrt(5.0))
    poses = []
    for i in range(n):
        z = 1.0 - (1.0 - min_elevation) * (i + 0.5) / n
        r = np.sqrt(max(0.0, 1.0 - z * z))
        theta = golden * i + seed
        eye = radius * np.array([r * np.cos(theta), z, r * np.sin(theta)])
        poses.append(look_at(eye, np.zeros(3), np.array([0.0, 1.0, 0.0])))
    return np.stack(poses)


def ring_poses(n: int, radius: float, elevation_deg: float = 25.0, wobble_deg: float = 10.0) -> np.ndarray:
    """A video-like orbit: ``n`` cameras around +Y, elevation wobbling a little from view to view."""
    poses = []
    for i in range(n):
        az = 2 * np.pi * i / n
        el = np.radians(elevation_deg + wobble_deg * np.sin(3 * az))
        eye = radius * np.array([np.cos(el) * np.cos(az), np.sin(el), np.cos(el) * np.sin(az)])
        poses.append(look_at(eye, np.zeros(3), np.array([0.0, 1.0, 0.0])))
    return np.stack(poses)


def face_colour_shader(vertices: np.ndarray, faces: np.ndarray) -> Callable:
    """Each cube side its own colour, with a 4x4 light/dark checker so that edges carry detail."""
    import trimesh

    normals = trimesh.Trimesh(vertices, faces, process=False).face_normals
    side = np.argmax(np.abs(normals) * 2 + (normals > 0), axis=1)  # 0..5 by axis and sign

    def shade(points: np.ndarray, prim: np.ndarray) -> np.ndarray:
        base = FACE_COLOURS[side[prim] % 6]
        # pulled slightly inwards so that the constant coordinate of a side never straddles a cell edge
        checker = (np.floor((points * 0.999 + 10.0) * 4.0).astype(int).sum(-1) % 2)[:, None]
        return base * (0.75 + 0.25 * checker)

    return shade


def _value_noise(points: np.ndarray, scale: float, table: np.ndarray) -> np.ndarray:
    """Smooth 3D value noise: random lattice values, smoothstep-interpolated (blobs that SIFT can find)."""
    p = points * scale
    cell = np.floor(p).astype(np.int64)
    f = p - cell
    f = f * f * (3.0 - 2.0 * f)
    out = 0.0
    for corner in range(8):
        offset = np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
        c = cell + offset
        h = ((c[:, 0] * 73856093) ^ (c[:, 1] * 19349663) ^ (c[:, 2] * 83492791)) % len(table)
        w = np.prod(np.where(offset == 1, f, 1.0 - f), axis=1)
        out = out + w[:, None] * table[h]
    return out


def noise_shader(seed: int = 0) -> Callable:
    """Multi-scale coloured value noise on the surface: a feature-rich texture for structure from motion."""
    rng = np.random.default_rng(seed)
    tables = [rng.uniform(0.0, 1.0, size=(8192, 3)) for _ in range(3)]

    def shade(points: np.ndarray, prim: np.ndarray) -> np.ndarray:
        colour = sum(
            amp * _value_noise(points, scale, table)
            for amp, scale, table in zip((0.4, 0.35, 0.25), (6.0, 14.0, 30.0), tables, strict=True)
        )
        return np.clip((colour - 0.5) * 2.2 + 0.5, 0.0, 1.0)

    return shade


def render_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    shader: Callable,
    poses: np.ndarray,
    K: np.ndarray,
    width: int,
    height: int,
    supersample: int = 2,
    background: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """(N, H, W, 4) uint8 RGBA renders (alpha = coverage); over ``background`` as (N, H, W, 3) when given."""
    from methods.raycast import RayScene

    scene = RayScene(vertices, faces)
    s = supersample
    v, u = np.meshgrid(np.arange(height * s), np.arange(width * s), indexing="ij")
    x = ((u + 0.5) / s - K[0, 2]) / K[0, 0]
    y = ((v + 0.5) / s - K[1, 2]) / K[1, 1]
    dirs_cam = np.stack([x, -y, -np.ones_like(x)], -1).reshape(-1, 3)
    out = []
    for c2w in poses:
        d = dirs_cam @ c2w[:3, :3].T
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        o = np.broadcast_to(c2w[:3, 3], d.shape)
        t, prim = scene.first_hits(o, d)
        ok = np.isfinite(t)
        rgb = np.zeros((len(d), 3))
        if ok.any():
            rgb[ok] = shader(o[ok] + t[ok, None] * d[ok], prim[ok])
        rgba = np.concatenate([rgb, ok[:, None].astype(float)], 1).reshape(height, s, width, s, 4)
        # average premultiplied colour over the sub-pixels, then un-premultiply
        alpha = rgba[..., 3].mean(axis=(1, 3))
        colour = (rgba[..., :3] * rgba[..., 3:]).mean(axis=(1, 3)) / np.maximum(alpha, 1e-6)[..., None]
        if background is not None:
            colour = colour * alpha[..., None] + np.asarray(background) * (1 - alpha[..., None])
            out.append((colour * 255).round().astype(np.uint8))
        else:
            out.append((np.concatenate([colour, alpha[..., None]], -1) * 255).round().astype(np.uint8))
    return np.stack(out)


def camera_intrinsics(width: int, height: int, fov_deg: float = 40.0) -> np.ndarray:
    f = 0.5 * width / np.tan(0.5 * np.radians(fov_deg))
    return intrinsics_matrix(f, f, width / 2.0, height / 2.0)


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising |s R src + t - dst|^2 (Umeyama 1991)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1
    R = U @ D @ Vt
    var = (xs**2).sum() / len(src)
    s = float(np.trace(np.diag(S) @ D) / var)
    t = mu_d - s * R @ mu_s
    return s, R, t


def chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric mean nearest-neighbour distance between point sets."""
    from scipy.spatial import cKDTree

    return float(cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean()) / 2.0


def surface_samples(vertices: np.ndarray, faces: np.ndarray, n: int = 20000, seed: int = 0) -> np.ndarray:
    import trimesh

    points, _ = trimesh.sample.sample_surface(trimesh.Trimesh(vertices, faces, process=False), n, seed=seed)
    return np.asarray(points)
