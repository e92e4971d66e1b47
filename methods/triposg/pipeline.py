"""TripoSG end to end: image -> cut-out -> DINOv2 tokens -> flow sampling of shape latents -> field grid -> mesh.

The building blocks are functions of explicit ``device`` / ``dtype`` (the model's), usable on their own
(tests, bench/latent3d.py): :func:`encode`, :func:`initial_latents`, :func:`denoise` (a generator of
flow steps), :func:`field_query`, :func:`field_grid` and :func:`extract_mesh`. :func:`run` is the method's
``run``: it yields Progress per stage and per denoising step and records seconds per stage.

Two grid paths:

- ours (default): a grid of ``resolution`` cells per axis (``resolution + 1`` points, float32 coordinates)
  spanning the bounds, dense or coarse-to-fine (``hierarchical``), vertices mapped back exactly;
- ``official=True``: the official dense path, for parity: ``2**depth`` points on a float16 ``linspace``, the
  logits cast to float16, vertices divided by ``2**depth`` (which shrinks the mesh by (n - 1) / n towards the
  box's min corner). The official default, the flash decoder with its CUDA-only DiffDMC, is not reproduced.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image

from methods import runtime
from methods.base import Asset, InvalidInput, InvalidSettings, Mesh, Progress, RunGenerator
from methods.image_to_3d import Clock, generated_image, text_prompt, text_stage
from methods.latent3d import (
    TRIPOSG,
    FlowStep,
    bit_image_pixels,
    denoise_stage,
    dense_grid,
    flow_steps,
    grid_axes,
    index_to_world,
    marching_cubes,
    mesh_stage,
    rectified_flow_sigmas,
)
from methods.latent3d import grid as latent3d_grid
from methods.triposg import checkpoints, preprocess
from methods.triposg.checkpoints import TripoSG

BOUNDS = (-1.005, -1.005, -1.005, 1.005, 1.005, 1.005)  # the official default
NUM_TOKENS = 2048
COARSE_CELLS = 64  # smallest first level of the hierarchical decode (refined by halving cells up to the resolution)
HIERARCHICAL_BAND = 0.95  # |logit| below this counts as near the surface (as the official flash refinement)


def load(checkpoint: str, device: str | None = None, dtype: torch.dtype | None = None) -> TripoSG:
    """The model from the cache of loaded models (device and dtype default to methods.runtime's choice)."""
    device = device or runtime.device()
    dtype = dtype or runtime.dtype(device)
    key = f"triposg|{checkpoint}|{device}|{dtype}"
    return runtime.get_model(key, lambda: checkpoints.load_model(checkpoint, device, dtype))


def pixel_values(model: TripoSG, image: Image.Image) -> torch.Tensor:
    cfg = model.config.image
    return bit_image_pixels(image, cfg.shortest_edge, cfg.crop, cfg.mean, cfg.std, cfg.resample)


@torch.inference_mode()
def encode(model: TripoSG, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
    """Condition tokens (1, M, C) in the model's dtype, and the unconditional ones (zeros, as officially)."""
    pixels = pixel_values(model, image).to(model.device, model.dtype)
    cond = model.dino(pixels)
    return cond, torch.zeros_like(cond)


def initial_latents(model: TripoSG, seed: int, num_tokens: int = NUM_TOKENS) -> torch.Tensor:
    """N(0, 1) latents (1, num_tokens, C) from a CPU generator seeded ``seed`` (drawn in float32, then cast)."""
    generator = torch.Generator().manual_seed(int(seed))
    shape = (1, num_tokens, model.config.dit.in_channels)
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(model.device, model.dtype)


def denoise(
    model: TripoSG,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    latents: torch.Tensor,
    steps: int,
    guidance_scale: float,
) -> Iterator[FlowStep]:
    """The official sampling loop (rectified flow, CFG with [uncond, cond], zeros as the uncond tokens)."""
    sigmas = rectified_flow_sigmas(steps, float(model.config.scheduler.shift)).to(model.device)
    with torch.inference_mode():
        yield from flow_steps(model.dit, latents, cond, uncond, sigmas, TRIPOSG, guidance_scale)


def field_query(model: TripoSG, latents: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``points (P, 3) -> logits (P,)`` (positive inside) for one latent set; the kv set is computed once."""
    with torch.inference_mode():
        kv = model.vae.kv(latents)

    @torch.inference_mode()
    def query(points: torch.Tensor) -> torch.Tensor:
        return model.vae.logits(kv, points[None].to(model.device)).reshape(-1).float()

    return query


def coarse_cells(resolution: int, hierarchical: bool) -> int:
    """The first level of the coarse-to-fine decode (``resolution`` itself: dense)."""
    return latent3d_grid.coarse_cells(resolution, hierarchical, COARSE_CELLS)


def field_grid(
    query: Callable[[torch.Tensor], torch.Tensor],
    resolution: int,
    chunk_size: int,
    hierarchical: bool = False,
    bounds=BOUNDS,
    device: str = "cpu",
) -> torch.Tensor:
    """The field on ``resolution + 1`` float32 points per axis spanning ``bounds``."""
    coarse = coarse_cells(resolution, hierarchical)
    return latent3d_grid.field_grid(query, bounds, resolution, coarse, chunk_size, HIERARCHICAL_BAND, device)


def official_grid(query: Callable[[torch.Tensor], torch.Tensor], depth: int, bounds=BOUNDS) -> torch.Tensor:
    """The official dense grid: 2**depth points on a float16 axis, logits cast to float16 (returned as float32)."""
    axes = grid_axes(bounds, 2**depth, dtype=torch.float16)
    return dense_grid(query, axes, 50000).half().float()


def extract_mesh(grid: torch.Tensor, official_depth: int | None = None, bounds=BOUNDS) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes at 0 (inside positive); world units, faces outward (counter-clockwise from outside).

    ``official_depth``: the official output instead (its vertex transform, skimage's inward winding).
    """
    official = official_depth is not None
    verts, faces = marching_cubes(grid, 0.0, inside="positive", what="TripoSG", outward=not official)
    points = grid.shape[0]
    divisor = 2**official_depth if official else None
    return index_to_world(verts, bounds, points, divisor), faces


def prepare(image: Image.Image, seconds: dict[str, float], notes: list[str]) -> Image.Image:
    start = time.perf_counter()
    prepared, prep_notes = preprocess.prepare(image)
    notes += prep_notes
    seconds["preprocess"] = seconds.get("preprocess", 0.0) + time.perf_counter() - start
    return prepared


def reconstruct(prepared: Image.Image, settings: Any, seconds: dict[str, float], notes: list[str]) -> RunGenerator:
    """TripoSG on the prepared input; yields Progress, returns the Asset (+Y up)."""
    yield Progress("load", 0.0, f"loading TripoSG {settings.checkpoint}")
    start = time.perf_counter()
    device = runtime.device()
    model = load(settings.checkpoint, device, runtime.dtype(device, settings.precision))
    clock = Clock(seconds, model.device)
    clock.add("load", start)
    yield Progress("load", 1.0, f"TripoSG ready on {model.device} ({str(model.dtype).removeprefix('torch.')})")

    start = time.perf_counter()
    cond, uncond = encode(model, prepared)
    clock.add("encode", start)
    latents = initial_latents(model, settings.seed, int(settings.num_tokens))
    steps, guidance = int(settings.steps), float(settings.guidance_scale)
    flow = denoise(model, cond, uncond, latents, steps, guidance)
    latents = yield from denoise_stage(flow, latents, steps, guidance, clock)
    res, chunk, hierarchical = int(settings.grid_resolution), int(settings.chunk_size), bool(settings.hierarchical)
    vertices, faces, how = yield from mesh_stage(
        lambda: field_query(model, latents),
        lambda query: field_grid(query, res, chunk, hierarchical, device=model.device),
        extract_mesh,
        "field",
        res,
        coarse_cells(res, hierarchical),
        clock,
    )
    notes.append(
        f"TripoSG: {steps} steps, guidance {guidance:g}, {settings.num_tokens} latent tokens, grid {res} ({how}), "
        f"{str(model.dtype).removeprefix('torch.')} on {model.device}"
    )
    views: dict[str, Any] = {"triposg_input": prepared}
    return Asset(mesh=Mesh(vertices, faces), up="+Y", notes=notes, stage_seconds=seconds, views=views)


def run(inputs: Any, settings: Any) -> RunGenerator:
    from methods.triposg import TripoSGSettings, TripoSGTextSettings

    if not isinstance(settings, TripoSGSettings):
        raise InvalidSettings(f"triposg needs TripoSG settings, got {type(settings).__name__}")
    seconds: dict[str, float] = {}
    notes: list[str] = []
    if inputs.modality == "image":
        if inputs.image is None:
            raise InvalidInput("no image was given")
        prepared = prepare(inputs.image, seconds, notes)  # before loading 2 GB of weights
        asset = yield from reconstruct(prepared, settings, seconds, notes)
        return asset
    prompt = text_prompt(inputs, settings, "triposg", TripoSGTextSettings)
    image = yield from text_stage(prompt, settings, seconds, notes, "TripoSG made the shape")
    with generated_image():
        prepared = prepare(image, seconds, notes)
    asset = yield from reconstruct(prepared, settings, seconds, notes)
    asset.views["text_to_image"] = image
    return asset
