"""From a generated grid to an Asset: coloured occupancy -> marching cubes mesh with colours + points.

Also the shared ``run`` of the four family methods (tokenise, load the shipped weights, sample, mesh).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from methods.base import Asset, Mesh, PointCloud, Progress, RunGenerator
from methods.families import data
from methods.families.text import tokenize_or_refuse

OUTPUT_GRID = 32  # the model's grid is upsampled (trilinear) to this before marching cubes


def upsample(grid: np.ndarray, size: int = OUTPUT_GRID) -> np.ndarray:
    """(C, r, r, r) -> (C, size, size, size), trilinear with voxel centres aligned (as F.interpolate)."""
    from scipy import ndimage

    r = grid.shape[1]
    if r == size:
        return grid
    c = (np.arange(size) + 0.5) * r / size - 0.5
    coords = np.stack(np.meshgrid(c, c, c, indexing="ij"))
    return np.stack([ndimage.map_coordinates(ch, coords, order=1, mode="nearest") for ch in grid])


def grid_to_mesh(grid: np.ndarray, level: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Marching cubes of channel 0 of a (4, R, R, R) grid in [0, 1]; vertex colours from channels 1-3.

    Vertices are in [-1, 1]^3 (+Y up), the mesh is closed (the grid is padded with empty space).
    A grid that never reaches ``level`` is meshed at the midpoint of its range instead, with a note.
    """
    from scipy import ndimage
    from skimage.measure import marching_cubes

    notes: list[str] = []
    occ = np.asarray(grid[0], dtype=np.float64)
    lo, hi = float(occ.min()), float(occ.max())
    if not lo < level < hi:
        new = (lo + hi) / 2 if hi > lo else hi - 1e-3
        notes.append(f"the generated occupancy never crossed {level:g} (range {lo:.3f}..{hi:.3f}); meshed at {new:.3f}")
        level = new
    r = occ.shape[0]
    vol = np.pad(occ, 1, constant_values=min(lo, 0.0))
    verts, faces, _, _ = marching_cubes(vol, level=level, gradient_direction="ascent")  # outward normals
    idx = verts - 1.0  # grid index coordinates
    colours = np.stack([ndimage.map_coordinates(ch, idx.T, order=1, mode="nearest") for ch in grid[1:4]], axis=1)
    verts_world = (idx + 0.5) / r * 2.0 - 1.0
    return verts_world.astype(np.float32), faces.astype(np.int64), np.clip(colours, 0, 1).astype(np.float32), notes


def grid_to_asset(grid: np.ndarray, level: float = 0.5, points: int = data.POINTS, seed: int = 0) -> Asset:
    """An Asset (+Y up) with the coloured mesh and a coloured point cloud sampled on it."""
    full = upsample(np.clip(grid, 0.0, 1.0))
    verts, faces, colours, notes = grid_to_mesh(full, level)
    mesh = Mesh(verts, faces, colours)
    cloud = None
    if len(faces):

        def colour_at(p: np.ndarray) -> np.ndarray:
            from scipy import ndimage

            idx = (p + 1.0) / 2.0 * full.shape[1] - 0.5
            return np.stack([ndimage.map_coordinates(ch, idx.T, order=1, mode="nearest") for ch in full[1:4]], 1)

        pts, pc = data.sample_points(verts, faces, points, seed, colour_at)
        cloud = PointCloud(pts, np.clip(pc, 0, 1))
    return Asset(mesh=mesh, points=cloud, up="+Y", notes=notes)


# ----------------------------------------------------------------------------- the methods' run

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "assets" / "weights"
FILE_STEM = {"vae": "vae", "gan": "gan", "ddpm": "ddpm", "score-sde": "sde"}


def weights_path(method_id: str, checkpoint: str = "") -> Path:
    """The safetensors file of a family: ``checkpoint`` if given, else the shipped assets/weights/<family>."""
    if checkpoint:
        return Path(checkpoint).expanduser()
    return WEIGHTS_DIR / f"{FILE_STEM[method_id]}.safetensors"


def run_family(method_id: str, prompt: str, settings: Any) -> RunGenerator:
    """Tokenise, load (cached), sample one grid with streamed progress, mesh it; returns the Asset."""
    from methods import runtime
    from methods.families import models

    stages: dict[str, float] = {}
    tokens = tokenize_or_refuse(prompt)
    notes = [tokens.note()] if tokens.unknown else []
    yield Progress("load", 0.0, f"loading the {method_id} weights")
    path = weights_path(method_id, getattr(settings, "checkpoint", ""))
    dev = runtime.device()
    with runtime.timed(stages, "load"):
        key = f"families:{path}:{path.stat().st_mtime_ns if path.exists() else 0}:{dev}"
        model = runtime.get_model(key, lambda: models.load(path, dev))
    words = ", ".join(tokens.words)
    steps = models.iter_sample(model, [tokens.ids], settings, dev, runtime.generator(settings.seed, dev))
    spent, shown = 0.0, 0.0
    while True:
        start = time.perf_counter()
        try:
            i, n = next(steps)
        except StopIteration as stop:
            grid = stop.value[0].float().cpu().numpy()
            spent += time.perf_counter() - start
            break
        spent += time.perf_counter() - start
        if spent - shown > 0.25 or i + 1 == n:  # a line every quarter second, not every network call
            shown = spent
            yield Progress("sample", (i + 1) / n, f"{words}: step {i + 1}/{n}")
    stages["sample"] = spent
    with runtime.timed(stages, "mesh"):
        asset = grid_to_asset(grid, level=float(settings.threshold), seed=int(settings.seed))
    asset.notes = notes + asset.notes
    asset.stage_seconds = stages
    yield Progress("mesh", 1.0, f"{len(asset.mesh.faces)} faces, {len(asset.mesh.vertices)} vertices")
    return asset
