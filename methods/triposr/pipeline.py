"""TripoSR end to end: image -> cut-out -> scene codes -> density grid -> marching cubes -> vertex colours.

Text input runs two stages: a diffusers text-to-image pipeline makes an object image on white, then the
image path above. Seconds are recorded per stage (Asset.stage_seconds); the intermediate image goes into
``Asset.views`` (the runner saves it beside the asset) and into the first Progress preview.
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any

import numpy as np
import torch
from PIL import Image

from methods import runtime
from methods.base import Asset, Inputs, InvalidInput, InvalidSettings, Mesh, Progress, RunGenerator
from methods.image_to_3d import PROMPT_SUFFIX, Clock, generated_image, text_prompt, text_stage
from methods.triposr import checkpoints, mesh, preprocess
from methods.triposr.model import TripoSR

TEXTURE_RESOLUTION = 1024  # official run.py bakes 2048 px; 1024 keeps a CPU bake in seconds


def load(checkpoint: str, precision: str = "auto") -> tuple[TripoSR, str, torch.dtype]:
    """The cached model: image encoder and transformer in ``runtime.dtype(device, precision)``, decoder float32."""
    device = runtime.device()
    dtype = runtime.dtype(device, precision)
    key = f"triposr|{checkpoint}|{device}|{dtype}"
    model = runtime.get_model(key, lambda: checkpoints.load_model(checkpoint, device, dtype))
    return model, device, dtype


@torch.inference_mode()
def scene_codes(model: TripoSR, image: Image.Image, device: str, dtype: torch.dtype) -> torch.Tensor:
    """(1, 3, C, H, W) float32 triplanes for an RGB image (the network runs in ``dtype``)."""
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)[None].to(device)
    return model(pixels.to(dtype)).float()


def prepare(image: Image.Image, settings: Any, seconds: dict[str, float], notes: list[str]) -> Image.Image:
    """The cut-out, resized, grey-composited input (InvalidInput when it shows no object)."""
    start = time.perf_counter()
    prepared, prep_notes = preprocess.prepare(image, settings.foreground_ratio)
    notes += prep_notes
    seconds["preprocess"] = seconds.get("preprocess", 0.0) + time.perf_counter() - start
    return prepared


def reconstruct(prepared: Image.Image, settings: Any, seconds: dict[str, float], notes: list[str]) -> RunGenerator:
    """TripoSR on the prepared input; yields Progress, returns the Asset (+Y up, our frame)."""
    yield Progress("load", 0.0, f"loading TripoSR {settings.checkpoint}")
    start = time.perf_counter()
    model, device, dtype = load(settings.checkpoint, settings.precision)
    clock = Clock(seconds, device)
    clock.add("load", start)
    yield Progress("load", 1.0, f"TripoSR ready on {device} ({str(dtype).removeprefix('torch.')})")

    torch.manual_seed(int(settings.seed))  # recorded; TripoSR itself draws no random numbers
    start = time.perf_counter()
    planes = scene_codes(model, prepared, device, dtype)[0]
    clock.add("encode", start)
    res = int(settings.mc_resolution)
    yield Progress("decode_grid", 0.0, f"density on a {res}^3 grid")

    start = time.perf_counter()
    grid = mesh.density_grid(model, planes, res, int(settings.chunk_size))
    clock.add("decode_grid", start)
    yield Progress("marching_cubes", 0.0, "marching cubes")
    start = time.perf_counter()
    vertices, faces = mesh.marching_cubes(grid, model.config.radius)
    clock.add("marching_cubes", start)
    yield Progress("marching_cubes", 1.0, f"{len(vertices)} vertices, {len(faces)} faces")
    start = time.perf_counter()
    if settings.bake_texture:
        yield Progress("bake_texture", None, f"UV atlas and a {TEXTURE_RESOLUTION} px texture")
        vertices, faces, uv, texture = mesh.bake_texture(
            model, planes, vertices, faces, TEXTURE_RESOLUTION, int(settings.chunk_size)
        )
        texture_image = Image.fromarray(np.round(np.clip(texture, 0, 1) * 255).astype(np.uint8))
        result = Mesh(mesh.official_to_canonical(vertices), faces, uv=uv, texture=texture_image)
        clock.add("bake_texture", start)
    else:
        with torch.inference_mode():
            colors = model.query(planes, torch.from_numpy(vertices).to(device), int(settings.chunk_size))["color"]
        result = Mesh(mesh.official_to_canonical(vertices), faces, vertex_colors=colors.cpu().numpy())
        clock.add("vertex_colors", start)
    notes.append("mesh: official frame (+Z up, input seen from +X) turned to +Y up, input view facing +Z")
    views: dict[str, Any] = {"triposr_input": prepared}
    return Asset(mesh=result, up="+Y", notes=notes, stage_seconds=seconds, views=views)


def run(inputs: Inputs, settings: Any) -> RunGenerator:
    from methods.triposr import TripoSRSettings, TripoSRTextSettings

    if not isinstance(settings, TripoSRSettings):
        raise InvalidSettings(f"triposr needs TripoSR settings, got {type(settings).__name__}")
    if settings.bake_texture and importlib.util.find_spec("xatlas") is None:
        raise InvalidSettings("bake_texture needs the xatlas package (pip install xatlas); it is not installed")
    seconds: dict[str, float] = {}
    notes: list[str] = []
    if inputs.modality == "image":
        if inputs.image is None:
            raise InvalidInput("no image was given")
        prepared = prepare(inputs.image, settings, seconds, notes)  # before loading 1.7 GB of weights
        asset = yield from reconstruct(prepared, settings, seconds, notes)
        return asset
    prompt = text_prompt(inputs, settings, "triposr", TripoSRTextSettings)
    image = yield from text_stage(prompt, settings, seconds, notes, "TripoSR reconstructed it", time_load=True)
    with generated_image():
        prepared = prepare(image, settings, seconds, notes)
    asset = yield from reconstruct(prepared, settings, seconds, notes)
    asset.views["text_to_image"] = image
    asset.views["text_to_image_prompt"] = prompt + PROMPT_SUFFIX
    return asset
