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
from methods.base import Asset, CheckpointError, Inputs, InvalidInput, InvalidSettings, Mesh, Progress, RunGenerator
from methods.registry import hub_offline
from methods.triposr import checkpoints, mesh, preprocess
from methods.triposr.model import TripoSR

PROMPT_SUFFIX = ", one whole object, centred, on a plain white background"
TEXTURE_RESOLUTION = 1024  # official run.py bakes 2048 px; 1024 keeps a CPU bake in seconds
NEGATIVE_PROMPT = "cropped, cut off, multiple objects, scene, clutter, text, watermark, shadow"


class _Clock:
    def __init__(self, seconds: dict[str, float], device: str):
        self.seconds = seconds
        self.cuda = device.startswith("cuda")

    def add(self, stage: str, start: float) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


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
    clock = _Clock(seconds, device)
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
    if inputs.modality != "text":
        raise InvalidInput(f"triposr takes an image or text, not {inputs.modality}")
    if not isinstance(settings, TripoSRTextSettings):
        raise InvalidSettings("triposr on text needs the text settings (image_model, image_steps, image_guidance)")
    if not inputs.prompt or not inputs.prompt.strip():
        raise InvalidInput("the prompt is empty: describe the object to generate")
    prompt = " ".join(inputs.prompt.split())
    image = yield from text_to_image(prompt, settings, seconds, notes)
    try:
        prepared = prepare(image, settings, seconds, notes)
    except InvalidInput as err:
        raise InvalidInput(f"the image generated from the prompt cannot be used: {err}") from None
    asset = yield from reconstruct(prepared, settings, seconds, notes)
    asset.views["text_to_image"] = image
    asset.views["text_to_image_prompt"] = prompt + PROMPT_SUFFIX
    return asset


def _load_text_to_image(checkpoint: str, device: str, dtype: torch.dtype):
    """The diffusers pipeline with its UNet in ``dtype`` behind float32 inputs and outputs: latents, the
    scheduler, the VAE decoder and the text encoder (run once; the pipeline takes the latents' dtype from
    it) stay float32, so the sampler's state is never rounded."""
    from diffusers import AutoPipelineForText2Image

    source = checkpoint.strip()
    if checkpoints.is_local(source):
        from pathlib import Path

        folder = Path(source).expanduser()
        if not (folder / "model_index.json").is_file():
            raise CheckpointError(
                f"the image model folder {folder.name} is not a diffusers pipeline (no model_index.json)"
            )
        source = str(folder.resolve())
    try:
        pipe = AutoPipelineForText2Image.from_pretrained(source, dtype=torch.float32, local_files_only=hub_offline())
    except (OSError, ValueError, TypeError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if checkpoints.is_local(checkpoint):
            first = type(err).__name__
        raise CheckpointError(f"the text-to-image model {checkpoint} cannot be loaded: {first}") from None
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    runtime.run_in(pipe.unet, dtype)
    return pipe


def text_to_image(prompt: str, settings: Any, seconds: dict[str, float], notes: list[str]) -> RunGenerator:
    device = runtime.device()
    dtype = runtime.dtype(device, settings.precision)
    yield Progress("text_to_image", 0.0, f"loading {settings.image_model}")
    start = time.perf_counter()
    key = f"triposr-t2i|{settings.image_model}|{device}|{dtype}"
    pipe = runtime.get_model(key, lambda: _load_text_to_image(settings.image_model, device, dtype))
    seconds["load_image_model"] = time.perf_counter() - start
    yield Progress("text_to_image", 0.1, f"{settings.image_steps} denoising steps")
    start = time.perf_counter()
    generator = torch.Generator(device=device).manual_seed(int(settings.seed))
    with torch.inference_mode():
        out = pipe(
            prompt + PROMPT_SUFFIX,
            negative_prompt=NEGATIVE_PROMPT,
            num_inference_steps=int(settings.image_steps),
            guidance_scale=float(settings.image_guidance),
            generator=generator,
        )
    image = out.images[0].convert("RGB")
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds["text_to_image"] = time.perf_counter() - start
    notes.append(
        f"two stages: {settings.image_model} made a {image.width}x{image.height} image from the prompt "
        f"(+ an object-on-white suffix), then TripoSR reconstructed it"
    )
    yield Progress("text_to_image", 1.0, "image generated", preview=np.asarray(image))
    return image
