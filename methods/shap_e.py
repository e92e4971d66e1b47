"""Shap-E (Jun & Nichol 2023): latent diffusion over the weights of an implicit function, decoded to a mesh.

Runs diffusers' ``ShapEPipeline`` (text, ``openai/shap-e``) and ``ShapEImg2ImgPipeline`` (image,
``openai/shap-e-img2img``). The pipeline samples the latent; the renderer's ``decode_to_mesh`` (what
``output_type="mesh"`` calls) queries the signed distance on a grid, runs marching cubes and colours the vertices.

Public API: :class:`ShapE` (registered as ``"shap-e"``), :func:`prepare_image`, :func:`load_pipeline`.
torch and diffusers are imported inside functions: importing this module stays light.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from methods import registry, runtime
from methods.base import (
    Asset,
    CheckpointError,
    Inputs,
    InvalidInput,
    InvalidSettings,
    Mesh,
    Method,
    MethodError,
    Progress,
    RunGenerator,
    Settings,
    precision_setting,
    setting,
)
from methods.registry import register

TEXT_CHECKPOINT = "openai/shap-e"
IMAGE_CHECKPOINT = "openai/shap-e-img2img"
PIPELINE_CLASSES = {"text": "ShapEPipeline", "image": "ShapEImg2ImgPipeline"}
DEFAULT_CHECKPOINTS = {"text": TEXT_CHECKPOINT, "image": IMAGE_CHECKPOINT}
GRID_MULTIPLE = 32
VERTEX_CHANNELS = ("R", "G", "B")


@register
class ShapE(Method):
    """Shap-E text-to-3D and image-to-3D through diffusers; returns a vertex-coloured mesh, +Z up."""

    id = "shap-e"
    label = "Shap-E"
    modalities = ("text", "image")
    family = "latent diffusion over implicit functions"
    representation = "implicit function (NeRF/STF) -> textured mesh"
    output = "mesh"
    paper = "Jun & Nichol 2023, Shap-E: Generating Conditional 3D Implicit Functions"
    paper_url = "https://arxiv.org/abs/2305.02463"
    licence = "MIT"
    weights = (TEXT_CHECKPOINT, IMAGE_CHECKPOINT)
    weights_gb = 6.1  # float32 safetensors: 2.7 GB text (CLIP-L text, 300M prior, renderer) + 3.4 GB image
    requires = ("torch", "diffusers", "transformers")
    needs_gpu = False
    seconds_gpu = 15.0  # 64 Heun steps (127 prior passes, batch 2) in float16 + a 128^3 mesh; load not counted
    seconds_cpu = 2000.0  # about 15 s per prior pass on one core (bench/shap_e.py), plus the 128^3 decode
    vram_gb = 4.0  # estimate (no GPU here): float16 weights of one pipeline (1.3-1.7 GB) plus activations
    version = "1"

    @dataclass(kw_only=True)
    class ShapESettings(Settings):
        """Shap-E's knobs; defaults are the official ones (guidance 15 for text, 3 for an image; 64 steps)."""

        checkpoint: str = setting(
            TEXT_CHECKPOINT,
            label="Checkpoint",
            help="Hub repo id or local directory of a diffusers Shap-E pipeline (openai/shap-e for text, "
            "openai/shap-e-img2img for images).",
            advanced=True,
        )
        guidance_scale: float = setting(
            15.0,
            label="Guidance scale",
            help="Classifier-free guidance; 1 turns it off. The official examples use 15 for text, 3 for images.",
            min=1.0,
            max=50.0,
            step=0.5,
        )
        num_inference_steps: int = setting(
            64,
            label="Steps",
            help="Karras-sigma Heun steps; each after the first costs two prior passes.",
            min=1,
            max=256,
            step=1,
        )
        frame_size: int = setting(
            128,
            label="Mesh resolution",
            help="Side of the marching-cubes grid the mesh is extracted on (a multiple of 32); "
            "cost grows with its cube.",
            min=32,
            max=256,
            step=32,
            advanced=True,
        )
        remove_background: bool = setting(
            True,
            label="Remove background",
            help="Image input: cut the object out (alpha, else the border colour), centre it on white.",
        )
        precision: str = precision_setting()

        def validate(self) -> None:
            super().validate()
            if self.frame_size % GRID_MULTIPLE:
                raise InvalidSettings(f"frame_size={self.frame_size} must be a multiple of {GRID_MULTIPLE}")
            if not self.checkpoint.strip():
                raise InvalidSettings("checkpoint is empty: give a hub repo id or a local directory")

    Settings = ShapESettings

    def default_settings(self, modality: str) -> ShapESettings:
        if modality == "image":
            return self.ShapESettings(checkpoint=IMAGE_CHECKPOINT, guidance_scale=3.0)
        return self.ShapESettings()

    def estimate_seconds(self, settings: Settings, gpu: bool) -> float:
        """Scale the default estimate by prior passes (2 per Heun step after the first) and grid cells."""
        steps = getattr(settings, "num_inference_steps", 64)
        grid = getattr(settings, "frame_size", 128)
        base = self.seconds_gpu if gpu else self.seconds_cpu
        decode_share = 0.1 if gpu else 0.05
        return base * ((1 - decode_share) * (2 * steps - 1) / 127 + decode_share * (grid / 128) ** 3)

    def run(self, inputs: Inputs, settings: Settings) -> RunGenerator:
        """Yield Progress for load, sample (one per scheduler step) and decode; return the mesh Asset (+Z up)."""
        if not isinstance(settings, self.ShapESettings):
            raise InvalidSettings(f"shap-e needs ShapE.Settings, got {type(settings).__name__}")
        if inputs.modality not in self.modalities:
            raise InvalidInput(f"shap-e does not take {inputs.modality} input (it takes text or an image)")
        stages: dict[str, float] = {}
        notes: list[str] = []
        condition: str | Image.Image
        if inputs.modality == "image":
            if inputs.image is None:
                raise InvalidInput("no image was given")
            # before loading: a bad image should fail in milliseconds, not after a 3 GB load
            with runtime.timed(stages, "prepare"):
                if settings.remove_background:
                    condition = prepare_image(inputs.image)
                    notes.append("image: object cut out, centred on white with a 10% margin")
                else:
                    condition = _on_white(inputs.image)
        else:
            if not inputs.prompt or not inputs.prompt.strip():
                raise InvalidInput("the prompt is empty: describe the object to generate")
            condition = inputs.prompt
            if not settings.remove_background:
                notes.append("remove_background applies to image input only; ignored for text")

        yield Progress("load", 0.0, f"loading {settings.checkpoint}")
        with runtime.timed(stages, "load"):
            loaded = _load(settings.checkpoint, inputs.modality, settings.precision)
        yield Progress("load", 1.0, f"{type(loaded.pipe).__name__} ready on {loaded.device} ({loaded.dtype_name})")

        if isinstance(condition, str):
            notes.extend(_prompt_notes(loaded.pipe.tokenizer, condition))

        def sample(report: Callable[[int, int], None]) -> Any:
            return _sample_latents(loaded, condition, settings, report)

        yield Progress("sample", 0.0, f"sampling {settings.num_inference_steps} steps")
        with runtime.timed(stages, "sample"):
            latents = yield from _stream_progress(sample)

        yield Progress("decode", 0.0, f"extracting the mesh on a {settings.frame_size}^3 grid")
        with runtime.timed(stages, "decode"):
            mesh = _decode_mesh(loaded, latents, settings.frame_size)
        yield Progress("decode", 1.0, f"{len(mesh.vertices)} vertices, {len(mesh.faces)} faces")
        notes.append("vertex colours are linear RGB (diffusers converts the renderer's sRGB to linear)")
        return Asset(mesh=mesh, up="+Z", notes=notes, stage_seconds=stages)


# ----------------------------------------------------------------------------- image preprocessing


def prepare_image(
    image: Image.Image, size: int = 256, margin: float = 0.1, tolerance: float = 0.1, min_fraction: float = 0.001
) -> Image.Image:
    """Cut out the object, crop to it and centre it on a white square: the renders Shap-E's image model saw.

    The object is where alpha is above 10% when any pixel is less than half opaque; otherwise the background is
    the median border colour and every pixel connected to the border within ``tolerance`` (max channel difference
    in [0, 1]) of it. The crop is padded to a square with ``margin`` (a fraction of the side) on each side and
    resized to ``size`` x ``size`` RGB. Raises InvalidInput when less than ``min_fraction`` of the pixels is object.
    """
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
    rgb, alpha = rgba[..., :3], rgba[..., 3]
    if (alpha < 0.5).any():
        mask, weight = alpha > 0.1, alpha
    else:
        mask = _foreground_from_border(rgb, tolerance)
        weight = mask.astype(np.float32)
    if mask.sum() < max(4, min_fraction * mask.size):
        raise InvalidInput(
            "no object found in the image: it is all background (transparent or one plain colour); "
            "give a picture of one object, ideally on a transparent or plain background"
        )
    flat = rgb * weight[..., None] + (1.0 - weight[..., None])
    rows, cols = np.nonzero(mask)
    crop = flat[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    height, width = crop.shape[:2]
    side = int(np.ceil(max(height, width) / (1.0 - 2.0 * margin)))
    canvas = np.ones((side, side, 3), dtype=np.float32)
    top, left = (side - height) // 2, (side - width) // 2
    canvas[top : top + height, left : left + width] = crop
    square = Image.fromarray(np.round(canvas * 255.0).astype(np.uint8), mode="RGB")
    return square.resize((size, size), Image.Resampling.LANCZOS)


def _foreground_from_border(rgb: np.ndarray, tolerance: float) -> np.ndarray:
    """True where a pixel is not background: background is border-coloured and connected to the border."""
    from scipy import ndimage

    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    colour = np.median(border, axis=0)
    near = np.abs(rgb - colour).max(axis=-1) <= tolerance
    labels, _ = ndimage.label(near)
    touching = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    # holes of background colour inside the object (a white mug's inside) stay object
    return ~np.isin(labels, touching[touching > 0])


def _on_white(image: Image.Image) -> Image.Image:
    """RGB with any transparency composited on white (dropping alpha would show whatever colour is under it)."""
    rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(canvas, rgba).convert("RGB")


# ----------------------------------------------------------------------------- loading


@dataclass
class _Loaded:
    """A cached pipeline and the lock that guards it: a run patches its scheduler and rewrites its renderer MLP."""

    pipe: Any
    device: str
    dtype_name: str
    lock: threading.Lock


def load_pipeline(checkpoint: str, modality: str, precision: str = "auto") -> Any:
    """The cached diffusers pipeline for ``modality`` from ``checkpoint``; CheckpointError when it cannot load.

    The prior and the CLIP encoder run in ``runtime.dtype(device, precision)`` behind float32 inputs and
    outputs: the latents, the Heun scheduler and the renderer (signed distances, colours) stay float32.
    """
    return _load(checkpoint, modality, precision).pipe


def _load(checkpoint: str, modality: str, precision: str = "auto") -> _Loaded:
    if modality not in PIPELINE_CLASSES:
        raise InvalidInput(f"shap-e does not take {modality} input (it takes text or an image)")
    source = _resolve_checkpoint(checkpoint, modality)
    dev = runtime.device()
    dtype = runtime.dtype(dev, precision)
    dtype_name = str(dtype).removeprefix("torch.")
    key = f"{PIPELINE_CLASSES[modality]}:{source}:{dev}:{dtype_name}"

    def loader() -> _Loaded:
        import diffusers
        import torch

        cls = getattr(diffusers, PIPELINE_CLASSES[modality])
        try:
            # local_files_only when offline: otherwise the hub client retries for ~25 s before failing
            pipe = cls.from_pretrained(source, dtype=torch.float32, local_files_only=registry.hub_offline())
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise CheckpointError(_checkpoint_message(checkpoint, modality, exc)) from exc
        pipe.set_progress_bar_config(disable=True)  # progress goes through Progress events instead
        pipe.to(dev)  # attention already uses torch SDPA (diffusers' and transformers' default on torch 2)
        encoder = pipe.text_encoder if modality == "text" else pipe.image_encoder
        for network in (pipe.prior, encoder):  # the matmul-bound parts; the renderer's grids stay float32
            runtime.run_in(network, dtype)
        return _Loaded(pipe=pipe, device=dev, dtype_name=dtype_name, lock=threading.Lock())

    return runtime.get_model(key, loader)


def _resolve_checkpoint(checkpoint: str, modality: str) -> str:
    """A local directory (checked, made absolute) or a hub repo id; CheckpointError names what is wrong."""
    checkpoint = checkpoint.strip()
    path = Path(checkpoint).expanduser()
    if not (checkpoint.startswith((".", "/", "~")) or path.exists()):
        return checkpoint
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory {checkpoint} does not exist")
    index = path / "model_index.json"
    if not index.is_file():
        raise CheckpointError(
            f"{checkpoint} has no model_index.json: it is not a diffusers pipeline directory "
            f"(save one with pipeline.save_pretrained, or use {DEFAULT_CHECKPOINTS[modality]})"
        )
    try:
        class_name = json.loads(index.read_text()).get("_class_name")
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{index} cannot be read as JSON: {exc}") from None
    expected = PIPELINE_CLASSES[modality]
    if class_name != expected:
        raise CheckpointError(
            f"{checkpoint} holds a {class_name}; {modality} input needs a {expected} checkpoint "
            f"such as {DEFAULT_CHECKPOINTS[modality]}"
        )
    return str(path.resolve())


def _checkpoint_message(checkpoint: str, modality: str, exc: BaseException) -> str:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "expected" in first_line and "were passed" in first_line:
        return (
            f"{checkpoint} is not a {PIPELINE_CLASSES[modality]} checkpoint ({modality} input needs one such as "
            f"{DEFAULT_CHECKPOINTS[modality]})"
        )
    return f"cannot load Shap-E checkpoint {checkpoint}: {first_line}"


# ----------------------------------------------------------------------------- sampling and decoding


class _Stopped(Exception):
    """Raised inside the sampler when the consumer closed the run generator."""


def _stream_progress(call: Callable[[Callable[[int, int], None]], Any]) -> Generator[Progress, None, Any]:
    """Run ``call(report)`` on a worker thread, yielding a "sample" Progress for every ``report(done, total)``.

    diffusers' Shap-E pipelines take no step callback, so the step hook reports from inside ``__call__``; a
    thread lets this generator stream those reports while the call runs. Closing the generator stops the
    worker at its next step, and this waits for it so the pipeline is never left half-patched.
    """
    import torch

    events: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()
    outcome: dict[str, Any] = {}
    threads = torch.get_num_threads()

    def report(done: int, total: int) -> None:
        if stop.is_set():
            raise _Stopped
        events.put((done, total))

    def work() -> None:
        torch.set_num_threads(threads)  # a new thread would otherwise start from the OpenMP default
        try:
            outcome["value"] = call(report)
        except BaseException as exc:  # handed to the consuming thread below
            outcome["error"] = exc
        finally:
            events.put(None)

    worker = threading.Thread(target=work, name="shap-e-sampler", daemon=True)
    worker.start()
    try:
        while (event := events.get()) is not None:
            done, total = event
            yield Progress("sample", done / total, f"denoising pass {done}/{total}")
    finally:
        stop.set()
        worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _sample_latents(
    loaded: _Loaded, condition: str | Image.Image, settings: Any, report: Callable[[int, int], None]
) -> Any:
    """The pipeline's latent (1, num_embeddings, d_latent), with ``report`` called after every scheduler step."""
    import torch

    pipe = loaded.pipe
    with loaded.lock:
        scheduler = pipe.scheduler
        scheduler_step = scheduler.step
        calls = 0

        def step(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            result = scheduler_step(*args, **kwargs)
            calls += 1
            report(calls, len(scheduler.timesteps))  # Heun: 2n-1 passes for n steps
            return result

        scheduler.step = step
        try:
            output = pipe(
                condition,
                num_inference_steps=settings.num_inference_steps,
                guidance_scale=settings.guidance_scale,
                generator=runtime.generator(settings.seed, loaded.device),
                output_type="latent",  # decoded below, as output_type="mesh" does, with our grid size
            )
        finally:
            del scheduler.step  # back to the class's method
        if loaded.device.startswith("cuda"):
            torch.cuda.synchronize()  # so the sample stage's seconds include its kernels
    return output.images


def _decode_mesh(loaded: _Loaded, latents: Any, grid_size: int) -> Mesh:
    """Signed distance on a grid_size^3 grid -> marching cubes -> vertex colours from the STF head."""
    import torch

    renderer = loaded.pipe.shap_e_renderer
    empty = MethodError("Shap-E sampled a shape with no surface inside its volume; try another seed or prompt")
    vertex_counts: list[int] = []
    decoder_forward = renderer.mesh_decoder.forward

    def counting_forward(*args: Any, **kwargs: Any) -> Any:
        raw_mesh = decoder_forward(*args, **kwargs)
        vertex_counts.append(len(raw_mesh.verts))
        return raw_mesh

    with loaded.lock:
        # diffusers crashes (torch.cat of nothing) on an empty surface; counting vertices tells that case apart
        renderer.mesh_decoder.forward = counting_forward
        try:
            raw = renderer.decode_to_mesh(latents[0][None], loaded.device, grid_size=grid_size)
        except Exception as exc:
            if vertex_counts and vertex_counts[-1] == 0:
                raise empty from exc
            raise
        finally:
            del renderer.mesh_decoder.forward
    if len(raw.faces) == 0:
        raise empty
    colours = torch.stack([raw.vertex_channels[c] for c in VERTEX_CHANNELS], dim=-1)
    return Mesh(
        vertices=raw.verts.float().cpu().numpy(),
        faces=raw.faces.cpu().numpy(),
        vertex_colors=colours.float().cpu().numpy(),
    )


def _prompt_notes(tokenizer: Any, prompt: str) -> list[str]:
    """A note when CLIP's tokenizer will cut the prompt (the pipeline only logs it)."""
    limit = int(getattr(tokenizer, "model_max_length", 77))
    tokens = len(tokenizer(prompt).input_ids)
    if tokens > limit:
        return [f"the prompt is {tokens} CLIP tokens; only the first {limit} are used"]
    return []


__all__ = ["IMAGE_CHECKPOINT", "TEXT_CHECKPOINT", "ShapE", "load_pipeline", "prepare_image"]
