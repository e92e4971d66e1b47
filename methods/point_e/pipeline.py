"""Point-E end to end: checkpoints -> CLIP conditioning -> base + upsampler sampling -> mesh -> Asset.

The networks of one checkpoint set live in one :class:`PointEModels` bundle in the runtime's model
cache, each loaded on first use (so switching between text and image or turning the upsampler on
does not reload the rest).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from methods import runtime
from methods.base import (
    Asset,
    CheckpointError,
    Inputs,
    InvalidInput,
    InvalidSettings,
    Mesh,
    PointCloud,
    Progress,
    RunGenerator,
    load_image,
)
from methods.point_e import PointESettings, checkpoints, configs
from methods.point_e.clip import CLIPConditioner, check_foreground
from methods.point_e.diffusion import GaussianDiffusion
from methods.point_e.mesh import poisson_depth, poisson_mesh, sdf_mesh
from methods.point_e.sampler import Stage, sample_stages

UP_AXIS = "+Z"  # Point-E clouds are Blender-frame: z up (the official plots turn them about z)


class PointEModels:
    """The loaded Point-E networks and CLIP for one checkpoint set, device and dtype; loaded lazily."""

    def __init__(self, clip_checkpoint: str, device: str, dtype: torch.dtype):
        self.clip_checkpoint = clip_checkpoint
        self.device = device
        self.dtype = dtype
        self._models: dict[str, torch.nn.Module] = {}
        self._clip: CLIPConditioner | None = None

    def model(self, name: str, path) -> torch.nn.Module:
        if name not in self._models:
            # the SDF model is small and its values are the grid marching cubes reads: float32 always
            dtype = torch.float32 if name == "sdf" else self.dtype
            self._models[name] = checkpoints.load_model(name, path, self.device, dtype)
        return self._models[name]

    def clip(self) -> CLIPConditioner:
        if self._clip is None:
            try:
                self._clip = CLIPConditioner.from_pretrained(self.clip_checkpoint, self.device, self.dtype)
            except OSError as err:
                raise CheckpointError(f"CLIP {self.clip_checkpoint} cannot be loaded: {err}") from None
        return self._clip


def model_fn(model: torch.nn.Module, dtype: torch.dtype):
    """The model as the sampler calls it: float32 in and out, ``dtype`` inside."""

    def call(x: torch.Tensor, t: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return model(x.to(dtype), t, **kwargs).float()

    return call


def prepare_image(inputs: Inputs):
    """The input image as RGBA (grey and 16-bit images converted), refused when it shows no object."""
    if inputs.image is None:
        raise InvalidInput("no image was given")
    image = load_image(inputs.image)
    check_foreground(image)
    return image


def _check_compatible(clip: CLIPConditioner, model: torch.nn.Module, name: str) -> None:
    if hasattr(model, "clip_dim") and model.clip_dim != clip.text_dim:
        raise CheckpointError(
            f"CLIP gives {clip.text_dim}-d text embeddings but Point-E {name} expects {model.clip_dim} (CLIP ViT-L/14)"
        )
    if hasattr(model, "grid_dim") and (model.grid_dim, model.grid_tokens) != (clip.grid_dim, clip.grid_size**2):
        raise CheckpointError(
            f"CLIP gives a {clip.grid_dim} x {clip.grid_size**2} patch grid but Point-E {name} expects "
            f"{model.grid_dim} x {model.grid_tokens} (CLIP ViT-L/14)"
        )


class _StageClock:
    """Seconds of compute per stage, excluding the time the consumer holds a yielded Progress."""

    def __init__(self, seconds: dict[str, float], device: str):
        self.seconds = seconds
        self.cuda = str(device).startswith("cuda")

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def add(self, stage: str, start: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def run(inputs: Inputs, settings: PointESettings) -> RunGenerator:
    if not isinstance(settings, PointESettings):
        raise InvalidSettings(f"Point-E needs PointESettings, got {type(settings).__name__}")
    modality = inputs.modality
    if modality not in ("text", "image"):
        raise InvalidInput(f"Point-E takes text or an image, not {modality}")
    prompt = image = None
    if modality == "text":
        if not inputs.prompt or not inputs.prompt.strip():
            raise InvalidInput("the prompt is empty: describe the object to generate")
        prompt = " ".join(inputs.prompt.split())
    else:
        image = prepare_image(inputs)
    names = configs.checkpoint_names(settings, modality)
    base_name = names[0]

    seconds: dict[str, float] = {}
    notes: list[str] = []
    device = runtime.device()
    dtype = runtime.dtype(device, settings.precision)
    clock = _StageClock(seconds, device)

    # checkpoints: download what is missing (yields progress), then load
    paths = {}
    for name in names:
        cached = checkpoints.is_cached(name, settings.checkpoint)
        start = time.perf_counter()
        paths[name] = yield from checkpoints.ensure(name, settings.checkpoint)
        if not cached:
            clock.add("download", start)
    yield Progress("load", 0.0, f"loading Point-E {', '.join(names)} and CLIP")
    start = time.perf_counter()
    key = f"point-e|{settings.checkpoint}|{settings.clip_checkpoint}|{device}|{dtype}"
    bundle = runtime.get_model(key, lambda: PointEModels(settings.clip_checkpoint, device, dtype))
    models = {name: bundle.model(name, paths[name]) for name in names}
    clip = bundle.clip()
    for name in names:
        _check_compatible(clip, models[name], name)
    clock.sync()
    clock.add("load", start)

    yield Progress("clip", None, "CLIP conditioning")
    start = time.perf_counter()
    with torch.inference_mode():
        if prompt is not None:
            text = clip.embed_text([prompt])
            notes += text.notes
            base_kwargs = {"embeddings": text.embeddings}
            grid = None
        else:
            grid = clip.embed_images_grid([image])
            base_kwargs = {"embeddings": grid}
    clock.sync()
    clock.add("clip", start)

    stages = [
        Stage(
            model_fn(models[base_name], dtype),
            GaussianDiffusion.from_config(configs.DIFFUSION_CONFIGS[base_name]),
            configs.BASE_POINTS,
            settings.guidance_scale,
            model_kwargs=base_kwargs,
            name="base",
            **_karras(configs.KARRAS_DEFAULTS["base"], settings.steps),
        )
    ]
    if settings.upsample:
        up = models["upsample"]
        up_grid = grid if grid is not None else torch.zeros(1, up.grid_dim, up.grid_tokens)
        stages.append(
            Stage(
                model_fn(up, dtype),
                GaussianDiffusion.from_config(configs.DIFFUSION_CONFIGS["upsample"]),
                configs.UPSAMPLED_POINTS - configs.BASE_POINTS,
                settings.upsample_guidance_scale,
                model_kwargs={"embeddings": up_grid},
                name="upsample",
                **_karras(configs.KARRAS_DEFAULTS["upsample"], settings.steps),
            )
        )
    samples = yield from _sample(stages, settings.seed, device, clock)

    coords = samples[0, :3].t().numpy().astype(np.float32)
    colors = (samples[0, 3:6].clamp(0, 255).round() / 255.0).t().numpy().astype(np.float32)
    points = PointCloud(coords, colors)

    yield Progress("mesh", None, f"mesh ({settings.mesh_method}, grid {settings.grid_size})")
    start = time.perf_counter()
    if settings.mesh_method == "sdf":
        batch = 32768 if clock.cuda else 4096
        with torch.inference_mode():
            result = sdf_mesh(models["sdf"], coords, colors, settings.grid_size, batch_size=batch)
    else:
        result = poisson_mesh(coords, colors, depth=poisson_depth(settings.grid_size))
    clock.sync()
    clock.add("mesh", start)
    notes += result.notes
    mesh = Mesh(result.vertices, result.faces, vertex_colors=result.vertex_colors) if len(result.faces) else None
    return Asset(mesh=mesh, points=points, up=UP_AXIS, notes=notes, stage_seconds=seconds)


def _karras(defaults: dict[str, float], steps: int) -> dict[str, Any]:
    return {
        "steps": steps,
        "sigma_min": defaults["sigma_min"],
        "sigma_max": defaults["sigma_max"],
        "s_churn": defaults["s_churn"],
    }


def _sample(stages: list[Stage], seed: int, device: str, clock: _StageClock) -> Iterator[Progress]:
    """Run the sampler, yielding a Progress per step; returns the data-space samples ``[1, 6, N]`` on the CPU."""
    generator = torch.Generator().manual_seed(int(seed))
    steps = sample_stages(stages, batch_size=1, generator=generator, device=device)
    while True:
        start = time.perf_counter()
        try:
            with torch.inference_mode():
                step = next(steps)
        except StopIteration as done:
            clock.sync()
            clock.add(stages[-1].name, start)
            return done.value.float().cpu()
        stage = stages[step.stage]
        if step.step == step.steps:
            clock.sync()
        clock.add(stage.name, start)
        fraction = min(step.step + 1, step.steps) / step.steps
        yield Progress(stage.name, fraction, f"{stage.name}: step {min(step.step + 1, step.steps)}/{step.steps}")
