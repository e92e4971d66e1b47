"""The run stages every 3D-latent flow model reports the same way: flow sampling (a Progress per step) and the
field grid to a mesh. Each takes the model's own pieces as callables and a ``Clock`` (``methods.image_to_3d``)
that adds each stage's seconds."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from methods.base import InvalidSettings, Progress, RunGenerator
from methods.latent3d.sampler import FlowStep


def denoise_stage(
    flow: Iterator[FlowStep], latents: torch.Tensor, steps: int, guidance: float, clock: Any
) -> RunGenerator:
    """Runs the flow steps (``seconds["denoise"]``), a Progress each; returns the final latents
    (InvalidSettings when they are not finite)."""
    yield Progress("denoise", 0.0, f"{steps} flow steps, guidance {guidance:g}")
    start = time.perf_counter()
    for step in flow:
        latents = step.latents
        clock.add("denoise", start)
        start = time.perf_counter()
        yield Progress("denoise", (step.index + 1) / step.total, f"step {step.index + 1}/{step.total}")
    if not torch.isfinite(latents).all():
        raise InvalidSettings("the sampled latents are not finite; lower the guidance scale or use float32")
    return latents


def mesh_stage(
    decode: Callable[[], Any],
    grid_of: Callable[[Any], np.ndarray],
    extract_mesh: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    field: str,
    resolution: int,
    coarse: int,
    clock: Any,
) -> RunGenerator:
    """``decode()`` (the VAE: a query, ``seconds["vae_decode"]``), ``grid_of(query)`` (``decode_grid``), then
    ``extract_mesh(grid)`` (``marching_cubes``); returns (vertices, faces, how the grid was decoded)."""
    start = time.perf_counter()
    query = decode()
    clock.add("vae_decode", start)
    how = f"coarse-to-fine from {coarse}" if coarse < resolution else "dense"
    yield Progress("decode_grid", 0.0, f"{field} on a {resolution}^3 grid ({how})")
    start = time.perf_counter()
    grid = grid_of(query)
    clock.add("decode_grid", start)
    yield Progress("marching_cubes", 0.0, "marching cubes")
    start = time.perf_counter()
    vertices, faces = extract_mesh(grid)
    clock.add("marching_cubes", start)
    yield Progress("marching_cubes", 1.0, f"{len(vertices)} vertices, {len(faces)} faces")
    return vertices, faces, how
