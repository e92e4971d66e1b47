"""The procedural shape set the family models are trained and judged on (numpy only, deterministic).

Every shape is an analytic signed distance function (a union of boxes, cylinders, cones, tori, ...)
in the cube [-1, 1]^3 with +Y up, one colour from the palette (parts may be a shade darker) and a
template caption. From the SDF come:

- the coloured occupancy grid (32^3 by default; occupancy at voxel centres, colour of the nearest
  occupied voxel everywhere so that colour is defined off the surface too),
- the reference mesh (marching cubes of the SDF on a fine grid, 128^3 by default: watertight, within
  one fine voxel of the analytic surface),
- the coloured point cloud (2,048 points on the reference mesh).

The train / held-out split is by caption: the held-out captions are all five size variants of one
(category, colour) pair per category, so every word is seen in training and the held-out set tests
new combinations of known words.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from methods.families.text import CATEGORIES, COLOURS, SIZES, caption

GRID = 32
MESH_RESOLUTION = 128
POINTS = 2048
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
SIZE_CHOICES: tuple[str, ...] = ("", *SIZES)


@dataclass(frozen=True)
class ShapeSpec:
    """One shape: its words and the proportions drawn for it (half extents along x, y, z)."""

    category: str
    colour: str
    size: str
    extents: tuple[float, float, float]
    params: dict[str, float] = field(default_factory=dict, hash=False, compare=False)

    @property
    def caption(self) -> str:
        return caption(self.category, self.colour, self.size)

    @property
    def rgb(self) -> np.ndarray:
        return np.asarray(COLOURS[self.colour], dtype=np.float32)


@dataclass
class Sample:
    """A shape as the models see it (grid) and as the metrics see it (mesh, points)."""

    spec: ShapeSpec
    occupancy: np.ndarray  # (G, G, G) float32 in [0, 1] (partial volume), axes x, y, z
    colors: np.ndarray  # (3, G, G, G) float32 in [0, 1]
    vertices: np.ndarray | None = None  # reference mesh, (V, 3) float32
    faces: np.ndarray | None = None  # (F, 3) int64
    vertex_colors: np.ndarray | None = None  # (V, 3) float32
    points: np.ndarray | None = None  # (POINTS, 3) float32
    point_colors: np.ndarray | None = None  # (POINTS, 3) float32

    @property
    def caption(self) -> str:
        return self.spec.caption

    def grid(self) -> np.ndarray:
        """(4, G, G, G): occupancy then RGB."""
        return np.concatenate([self.occupancy[None], self.colors], axis=0)


# ----------------------------------------------------------------------------- captions and split


@functools.cache
def _generator_source() -> bytes:
    return Path(__file__).read_bytes() + Path(__file__).with_name("text.py").read_bytes()


def generator_digest(extra: str = "") -> str:
    """sha256 of this generator's source (data.py, text.py) and ``extra``: a cache key that changes with the data."""
    return hashlib.sha256(_generator_source() + extra.encode()).hexdigest()


def all_captions() -> list[str]:
    """Every caption the templates make: 12 categories x 12 colours x 5 size words = 720."""
    return [caption(cat, col, size) for cat in CATEGORIES for col in COLOUR_NAMES for size in SIZE_CHOICES]


def heldout_pairs() -> set[tuple[str, str]]:
    """One (category, colour) pair per category, chosen by a fixed rule; each colour is held out once."""
    return {(cat, COLOUR_NAMES[(5 * i + 3) % len(COLOUR_NAMES)]) for i, cat in enumerate(CATEGORIES)}


def split_captions() -> tuple[list[str], list[str]]:
    """(train, held-out) captions, disjoint, deterministic."""
    held = heldout_pairs()
    train, test = [], []
    for cat in CATEGORIES:
        for col in COLOUR_NAMES:
            for size in SIZE_CHOICES:
                (test if (cat, col) in held else train).append(caption(cat, col, size))
    return train, test


def parse_caption(text: str) -> tuple[str, str, str]:
    """(category, colour, size) of a template caption; ValueError for anything else."""
    words = [w for w in text.lower().split() if w not in ("a", "an")]
    cats = [w for w in words if w in CATEGORIES]
    cols = [w for w in words if w in COLOURS]
    sizes = [w for w in words if w in SIZES]
    if len(cats) != 1 or len(cols) != 1 or len(sizes) > 1 or len(words) != 2 + len(sizes):
        raise ValueError(f"{text!r} is not a template caption ('a [size] colour shape')")
    return cats[0], cols[0], (sizes[0] if sizes else "")


# ----------------------------------------------------------------------------- proportions

# Base half-extent aspect (x, y, z) ranges per category before the size word and the overall scale.
_ASPECT: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "cube": ((0.9, 1.0), (0.9, 1.0), (0.9, 1.0)),
    "sphere": ((0.9, 1.0), (0.9, 1.0), (0.9, 1.0)),
    "cylinder": ((0.5, 0.75), (1.0, 1.0), (0.5, 0.75)),
    "cone": ((0.6, 0.85), (1.0, 1.0), (0.6, 0.85)),
    "torus": ((1.0, 1.0), (0.25, 0.38), (1.0, 1.0)),
    "pyramid": ((0.8, 1.0), (0.75, 1.0), (0.8, 1.0)),
    "capsule": ((0.32, 0.45), (1.0, 1.0), (0.32, 0.45)),
    "ring": ((1.0, 1.0), (1.0, 1.0), (0.16, 0.24)),
    "table": ((1.0, 1.0), (0.55, 0.75), (0.6, 0.85)),
    "chair": ((0.55, 0.7), (1.0, 1.0), (0.55, 0.7)),
    "mug": ((0.75, 0.9), (0.8, 1.0), (0.6, 0.7)),
    "lamp": ((0.5, 0.65), (1.0, 1.0), (0.5, 0.65)),
}
_ROUND_XZ = {"sphere", "cylinder", "cone", "torus", "capsule", "lamp", "pyramid"}  # keep x == z
_SCALE = {"": (0.66, 0.8), "small": (0.42, 0.52), "large": (0.88, 0.94), "tall": (0.72, 0.86), "wide": (0.72, 0.86)}


def draw_spec(category: str, colour: str, size: str, rng: np.random.Generator) -> ShapeSpec:
    """Proportions for a caption: aspect jitter, the size word (tall stretches y, wide x and z), scale."""
    if category not in _ASPECT or colour not in COLOURS or size not in SIZE_CHOICES:
        raise ValueError(f"unknown shape words: {category!r}, {colour!r}, {size!r}")
    ext = np.array([rng.uniform(*r) for r in _ASPECT[category]])
    if category in _ROUND_XZ:
        ext[2] = ext[0]
    if size == "tall":
        ext[1] *= 1.6
    elif size == "wide":
        ext[[0, 2]] *= 1.6
    ext *= rng.uniform(*_SCALE[size]) / ext.max()
    params = {
        "inner": float(rng.uniform(0.58, 0.7)),  # ring: inner / outer radius
        "leg": float(rng.uniform(0.07, 0.09)),  # table / chair leg half width
        "wall": float(rng.uniform(0.09, 0.12)),  # mug wall
        "shade": float(rng.uniform(0.35, 0.45)),  # lamp shade height fraction
    }
    return ShapeSpec(category, colour, size, tuple(float(v) for v in ext), params)


def spec_for_caption(text: str, seed: int) -> ShapeSpec:
    """The shape drawn for a template caption with a seed (the same pair always gives the same shape)."""
    cat, col, size = parse_caption(text)
    digest = hashlib.sha256(f"{text}|{seed}".encode()).digest()
    return draw_spec(cat, col, size, np.random.default_rng(int.from_bytes(digest[:8], "little")))


# ----------------------------------------------------------------------------- signed distances


def _box(p: np.ndarray, c, b) -> np.ndarray:
    q = np.abs(p - np.asarray(c)) - np.asarray(b)
    return np.linalg.norm(np.maximum(q, 0.0), axis=-1) + np.minimum(q.max(-1), 0.0)


def _cylinder(p: np.ndarray, c, r: float, h: float, axis: int = 1) -> np.ndarray:
    q = p - np.asarray(c)
    radial = np.linalg.norm(np.delete(q, axis, axis=-1), axis=-1)
    d = np.stack([radial - r, np.abs(q[..., axis]) - h], axis=-1)
    return np.minimum(d.max(-1), 0.0) + np.linalg.norm(np.maximum(d, 0.0), axis=-1)


def _ellipsoid(p: np.ndarray, r) -> np.ndarray:
    r = np.asarray(r)
    k0 = np.linalg.norm(p / r, axis=-1)
    k1 = np.maximum(np.linalg.norm(p / (r * r), axis=-1), 1e-9)
    return k0 * (k0 - 1.0) / k1


def _capped_cone(p: np.ndarray, c, h: float, r1: float, r2: float) -> np.ndarray:
    """Frustum along y centred at c: radius r1 at y = -h, r2 at y = +h (exact, after Quilez)."""
    q = p - np.asarray(c)
    qx = np.linalg.norm(q[..., [0, 2]], axis=-1)
    qy = q[..., 1]
    k1 = np.array([r2, h])
    k2 = np.array([r2 - r1, 2.0 * h])
    ca = np.stack([qx - np.minimum(qx, np.where(qy < 0, r1, r2)), np.abs(qy) - h], -1)
    qv = np.stack([qx, qy], -1)
    t = np.clip(((k1 - qv) @ k2) / (k2 @ k2), 0.0, 1.0)
    cb = qv - k1 + k2 * t[..., None]
    sign = np.where((cb[..., 0] < 0) & (ca[..., 1] < 0), -1.0, 1.0)
    return sign * np.sqrt(np.minimum((ca * ca).sum(-1), (cb * cb).sum(-1)))


def _torus(p: np.ndarray, c, major: float, minor: float, axis: int = 1) -> np.ndarray:
    q = p - np.asarray(c)
    radial = np.linalg.norm(np.delete(q, axis, axis=-1), axis=-1)
    return np.hypot(radial - major, q[..., axis]) - minor


def _capsule(p: np.ndarray, h: float, r: float) -> np.ndarray:
    q = p.copy()
    q[..., 1] -= np.clip(q[..., 1], -h, h)
    return np.linalg.norm(q, axis=-1) - r


def _pyramid(p: np.ndarray, bx: float, bz: float, h: float) -> np.ndarray:
    """Square pyramid, base (2 bx x 2 bz) at y = -h, apex at y = +h; exact zero set."""
    x, y, z = np.abs(p[..., 0]), p[..., 1], np.abs(p[..., 2])
    dx = (2 * h * x + bx * (y - h)) / np.hypot(2 * h, bx)
    dz = (2 * h * z + bz * (y - h)) / np.hypot(2 * h, bz)
    return np.maximum(np.maximum(dx, dz), -h - y)


Parts = list[tuple[np.ndarray, float]]  # (signed distance, shade) per part; the shape is their union


def _parts(spec: ShapeSpec, p: np.ndarray) -> Parts:
    ex, ey, ez = spec.extents
    pr = spec.params
    cat = spec.category
    if cat == "cube":
        return [(_box(p, (0, 0, 0), (ex, ey, ez)), 1.0)]
    if cat == "sphere":
        return [(_ellipsoid(p, (ex, ey, ez)), 1.0)]
    if cat == "cylinder":
        return [(_cylinder(p, (0, 0, 0), ex, ey), 1.0)]
    if cat == "cone":
        return [(_capped_cone(p, (0, 0, 0), ey, ex, 0.0), 1.0)]
    if cat == "torus":
        return [(_torus(p, (0, 0, 0), ex - ey, ey), 1.0)]
    if cat == "pyramid":
        return [(_pyramid(p, ex, ez, ey), 1.0)]
    if cat == "capsule":
        return [(_capsule(p, max(ey - ex, 0.0), ex), 1.0)]
    if cat == "ring":
        outer = _cylinder(p, (0, 0, 0), ex, ez, axis=2)
        inner = _cylinder(p, (0, 0, 0), ex * pr["inner"], ez + 0.5, axis=2)
        return [(np.maximum(outer, -inner), 1.0)]
    if cat == "table":
        top_t = max(0.12 * ey, 0.07)
        leg = min(pr["leg"], 0.3 * min(ex, ez))
        parts = [(_box(p, (0, ey - top_t, 0), (ex, top_t, ez)), 1.0)]
        leg_h = ey - top_t
        for sx in (-1, 1):
            for sz in (-1, 1):
                c = (sx * (ex - leg), -top_t, sz * (ez - leg))
                parts.append((_box(p, c, (leg, leg_h, leg)), 0.75))
        return parts
    if cat == "chair":
        leg = min(pr["leg"], 0.3 * min(ex, ez))
        seat_t = 0.07
        seat_c = -0.1 * ey  # seat a little below the middle; the back rises from its rear edge
        parts = [(_box(p, (0, seat_c, 0), (ex, seat_t, ez)), 1.0)]
        leg_h = (seat_c + ey) / 2
        for sx in (-1, 1):
            for sz in (-1, 1):
                parts.append((_box(p, (sx * (ex - leg), -ey + leg_h, sz * (ez - leg)), (leg, leg_h, leg)), 0.75))
        back_h = (ey - seat_c) / 2
        parts.append((_box(p, (0, seat_c + back_h, -ez + 0.06), (ex, back_h, 0.06)), 0.9))
        return parts
    if cat == "mug":
        radius = ez
        cx = -ex + radius  # the body on the -x side, the handle on its +x side
        wall = pr["wall"]
        body = _cylinder(p, (cx, 0, 0), radius, ey)
        hollow = _cylinder(p, (cx, wall, 0), radius - wall, ey)
        handle_r = min(0.45 * ey, ex - cx - radius + 0.05)
        handle_minor = 0.07
        handle_c = (cx + radius, 0.0, 0.0)
        handle = _torus(p, handle_c, max(handle_r - handle_minor, handle_minor), handle_minor, axis=2)
        handle = np.maximum(handle, cx + radius - 0.5 * wall - p[..., 0])
        return [(np.maximum(body, -hollow), 1.0), (handle, 0.85)]
    if cat == "lamp":
        base_t = 0.06
        base = _cylinder(p, (0, -ey + base_t, 0), ex * 0.75, base_t)
        shade_h = pr["shade"] * ey
        pole_top = ey - 2 * shade_h
        pole = _cylinder(p, (0, (-ey + pole_top) / 2, 0), 0.065, (ey + pole_top) / 2)
        shade = _capped_cone(p, (0, ey - shade_h, 0), shade_h, ex, 0.55 * ex)
        return [(base, 0.7), (pole, 0.7), (shade, 1.0)]
    raise ValueError(f"unknown category {cat!r}")


def sdf(spec: ShapeSpec, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance (negative inside) and colour (N, 3) of the shape at points (N, 3)."""
    p = np.asarray(points, dtype=np.float64)
    parts = _parts(spec, p)
    dists = np.stack([d for d, _ in parts], axis=0)
    shades = np.array([s for _, s in parts])
    nearest = dists.argmin(0)
    colour = np.clip(spec.rgb[None, :] * shades[nearest][:, None], 0.0, 1.0).astype(np.float32)
    return dists.min(0), colour


def grid_centres(resolution: int) -> np.ndarray:
    """(R, R, R, 3) voxel centres of the cube [-1, 1]^3, indexed [x, y, z]."""
    c = (np.arange(resolution) + 0.5) / resolution * 2.0 - 1.0
    return np.stack(np.meshgrid(c, c, c, indexing="ij"), axis=-1)


def voxelize(spec: ShapeSpec, resolution: int = GRID) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy (R, R, R) in [0, 1] and colour (3, R, R, R), colour filled outward from the surface.

    Occupancy is the voxel's partial volume, linear in the signed distance at its centre
    (clip(0.5 - d / voxel, 0, 1)): 1 inside, 0 outside, and the 0.5 level set is the surface itself,
    so marching cubes at 0.5 recovers it to well under a voxel.
    """
    from scipy import ndimage

    pts = grid_centres(resolution).reshape(-1, 3)
    dist, colour = sdf(spec, pts)
    occ = np.clip(0.5 - dist / (2.0 / resolution), 0.0, 1.0).reshape((resolution,) * 3)
    inside = occ >= 0.5
    colour = colour.reshape((resolution,) * 3 + (3,))
    if inside.any():
        _, idx = ndimage.distance_transform_edt(~inside, return_indices=True)
        colour = colour[idx[0], idx[1], idx[2]]
    return occ.astype(np.float32), np.ascontiguousarray(colour.transpose(3, 0, 1, 2))


def reference_mesh(spec: ShapeSpec, resolution: int = MESH_RESOLUTION) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Watertight mesh of the SDF's zero set: (vertices, faces, vertex colours), in [-1, 1]^3."""
    from skimage.measure import marching_cubes

    pts = grid_centres(resolution)
    dist, _ = sdf(spec, pts.reshape(-1, 3))
    vol = np.pad(dist.reshape((resolution,) * 3), 1, constant_values=1.0)
    step = 2.0 / resolution
    verts, faces, _, _ = marching_cubes(vol, level=0.0, spacing=(step,) * 3, gradient_direction="descent")  # outward
    verts = verts - 1.0 - step / 2.0  # padded index 1 is the first centre, -1 + step / 2
    _, vcol = sdf(spec, verts)
    return verts.astype(np.float32), faces.astype(np.int64), vcol


def sample_points(
    vertices: np.ndarray, faces: np.ndarray, count: int, seed: int, colour_fn: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` points uniformly on the mesh surface (area-weighted), with colours from ``colour_fn``."""
    rng = np.random.default_rng(seed)
    tri = vertices[faces].astype(np.float64)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    pick = rng.choice(len(faces), size=count, p=area / area.sum())
    u, v = rng.random((2, count))
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[pick]
    pts = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    return pts.astype(np.float32), colour_fn(pts).astype(np.float32)


def make_sample(
    spec: ShapeSpec,
    grid: int = GRID,
    with_mesh: bool = True,
    mesh_resolution: int = MESH_RESOLUTION,
    points: int = POINTS,
    seed: int = 0,
) -> Sample:
    """The grid, and (``with_mesh``) the reference mesh and its point cloud, of one shape."""
    occ, colors = voxelize(spec, grid)
    sample = Sample(spec, occ, colors)
    if with_mesh:
        v, f, vc = reference_mesh(spec, mesh_resolution)
        pts, pc = sample_points(v, f, points, seed, lambda x: sdf(spec, x)[1])
        sample.vertices, sample.faces, sample.vertex_colors = v, f, vc
        sample.points, sample.point_colors = pts, pc
    return sample


def reference_samples(text: str, count: int = 4, seed: int = 0, **kw) -> list[Sample]:
    """``count`` reference shapes of a template caption (different proportions), with meshes and points."""
    return [make_sample(spec_for_caption(text, seed + i), seed=seed + i, **kw) for i in range(count)]


# ----------------------------------------------------------------------------- the training set


def pool_grid(grid: np.ndarray, factor: int) -> np.ndarray:
    """Average-pool a (C, R, R, R) grid by ``factor`` along each axis (occupancy becomes a fraction)."""
    if factor == 1:
        return grid
    c, r = grid.shape[0], grid.shape[1] // factor
    return grid.reshape(c, r, factor, r, factor, r, factor).mean(axis=(2, 4, 6))


def build_dataset(
    split: str = "train",
    per_caption: int = 3,
    seed: int = 0,
    resolution: int = 16,
    grid: int = GRID,
    limit_captions: int = 0,
) -> tuple[np.ndarray, list[str]]:
    """The grids of a split, pooled from ``grid`` to ``resolution``: (N, 4, r, r, r) float32 and captions.

    Deterministic in its arguments. ``limit_captions`` > 0 keeps that many captions, evenly spaced
    (for smoke runs). No meshes are built (training needs none).
    """
    train, test = split_captions()
    captions = {"train": train, "heldout": test}[split]
    if limit_captions:
        captions = captions[:: max(1, len(captions) // limit_captions)][:limit_captions]
    if grid % resolution:
        raise ValueError(f"grid {grid} is not a multiple of the model resolution {resolution}")
    xs, caps = [], []
    for text in captions:
        for i in range(per_caption):
            occ, colors = voxelize(spec_for_caption(text, seed * 1000 + i), grid)
            xs.append(pool_grid(np.concatenate([occ[None], colors]), grid // resolution).astype(np.float32))
            caps.append(text)
    return np.stack(xs), caps
