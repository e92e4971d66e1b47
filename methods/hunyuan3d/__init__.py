"""Hunyuan3D-2mini (Tencent 2025): DINOv2-giant tokens -> a flow-matching MM-DiT over 512 shape latents -> a
VAE occupancy decoder -> mesh.

This module is the light spec (no torch import): the method's data and settings, registered as
``hunyuan3d-2mini`` for image and text input (text: a text-to-image model first, as TripoSR). The
implementation is ours, written from the official architecture's description (the official ``hy3dgen`` code is
under Tencent's licence and is neither a dependency nor copied); it loads the released weights unchanged.
Submodules, imported inside ``run``: ``config`` (the released ``config.yaml``), ``model`` (DiT, VAE,
conditioner with the official parameter names), ``checkpoints`` (hub sub-folder or local folder, strict
loading), ``schedule`` (the flow time grids, turbo's included), ``preprocess`` (cut-out, official recentring)
and ``pipeline`` (the run). Shared with TripoSG: ``methods.latent3d``.

The weights' licence is not ours to relax: :data:`LICENCE_ID` names it, and a public host serves the method
only when its operator has accepted that licence (``TRILEMMA_ACCEPT_LICENSES``; see ``ui.public``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from methods.base import InvalidSettings, RunGenerator, Settings, precision_setting, setting
from methods.image_to_3d import (
    IMAGE_MODEL,
    ImageTo3DMethod,
    TextStageSettings,
    check_checkpoint,
    chunk_size_setting,
    coarse_to_fine_setting,
)
from methods.registry import register

DEFAULT_CHECKPOINT = "tencent/Hunyuan3D-2mini"
VARIANTS = ("mini", "fast", "turbo")
DEFAULT_STEPS = {"mini": 30, "fast": 10, "turbo": 5}  # the official Gradio app's
GPU_RESOLUTION, CPU_RESOLUTION = 256, 128
LICENCE_ID = "tencent-hunyuan-3d-2.0-community"
LICENCE_TERMS = (
    "Tencent Hunyuan 3D 2.0 Community License — not licensed in the European Union, the United Kingdom or South "
    "Korea (no rights there, for the weights or their outputs); a separate licence from Tencent is needed above "
    "1 million monthly active users; outputs may not be used to improve any other AI model; Tencent's Acceptable "
    "Use Policy applies (e.g. label machine-made content)"
)
LICENCE = f"code: ours (MIT, as the project). Weights: {LICENCE_TERMS}."


@dataclass(kw_only=True)
class Hunyuan3DSettings(Settings):
    variant: str = setting(
        "turbo",
        label="Variant",
        help="mini (the standard model, guided sampling), fast (guidance distilled) or turbo (5-step distilled).",
        choices=VARIANTS,
    )
    steps: int = setting(
        0,
        label="Steps",
        help="Flow-matching steps; 0 takes the variant's default (mini 30, fast 10, turbo 5).",
        min=0,
        max=200,
        step=1,
    )
    guidance_scale: float = setting(
        5.0,
        label="Guidance",
        help="Guidance scale (official 5): classifier-free for mini (1 or less runs unguided), "
        "an input of the network for fast / turbo.",
        min=0.0,
        max=30.0,
        step=0.5,
    )
    grid_resolution: int = setting(
        GPU_RESOLUTION,
        label="Grid resolution",
        help="Cells per side of the occupancy grid before marching cubes (the official app's 256; 128 by default "
        "on a CPU, where the grid's decoder dominates the time).",
        min=16,
        max=512,
        step=16,
    )
    hierarchical: bool = coarse_to_fine_setting(" (the official vanilla decoder)")
    chunk_size: int = chunk_size_setting(16384, 2**22)
    checkpoint: str = setting(
        DEFAULT_CHECKPOINT,
        label="Hunyuan3D checkpoint",
        help="Hugging Face repo id (the variant picks its sub-folder) or a local folder with config.yaml and "
        "model.fp16.safetensors (or a root holding the variant's sub-folder).",
        advanced=True,
    )
    precision: str = precision_setting()

    def validate(self) -> None:
        super().validate()
        if self.variant not in VARIANTS:
            raise InvalidSettings(f"variant must be one of {', '.join(VARIANTS)}, not {self.variant!r}")
        check_checkpoint(self, DEFAULT_CHECKPOINT)

    def resolved_steps(self) -> int:
        return int(self.steps) or DEFAULT_STEPS.get(self.variant, 30)


@dataclass(kw_only=True)
class Hunyuan3DTextSettings(TextStageSettings, Hunyuan3DSettings):
    """Hunyuan3D's settings and the text stage's (image_model, image_steps, image_guidance)."""


@register
class Hunyuan3DMethod(ImageTo3DMethod):
    id = "hunyuan3d-2mini"
    label = "Hunyuan3D-2mini"
    family = "3D-latent flow model (DINOv2 -> MM-DiT over shape latents -> occupancy VAE)"
    representation = "occupancy VAE latents (512 x 64)"
    output = "mesh"
    paper = (
        "Hunyuan3D 2.0: Scaling Diffusion Models for High Resolution Textured 3D Assets Generation "
        "(Tencent Hunyuan3D team, 2025)"
    )
    paper_url = "https://arxiv.org/abs/2501.12202"
    licence = LICENCE
    licence_terms = LICENCE_TERMS
    licence_id = LICENCE_ID  # a public host serves the method only once its operator accepts this licence
    weights = (DEFAULT_CHECKPOINT,)
    weights_gb = 3.8  # each variant's model.fp16.safetensors (DiT 0.56 B, VAE 0.21 B, DINOv2-giant 1.14 B)
    requires = ("torch", "transformers", "skimage", "safetensors", "yaml")
    needs_gpu = False
    seconds_gpu = 5.0
    # 2 CPU cores, turbo (5 steps), grid 128 coarse-to-fine, float32 (the CPU defaults): bench/hunyuan3d.py measured
    # ~47 CPU s for encode + VAE, ~19 per DiT call and ~305 us per grid point (0.5-0.8 M points at 128, 1.4-3.9 M
    # at 256); bfloat16 is 1.4-1.8x faster there. See README.
    seconds_cpu = 160.0
    vram_gb = 6.0
    version = "1"
    cache_results = True
    Settings: ClassVar[type[Settings]] = Hunyuan3DSettings
    TextSettings: ClassVar[type[Settings]] = Hunyuan3DTextSettings
    resolution_setting = "grid_resolution"

    def estimate_seconds(self, settings: Settings, gpu: bool) -> float:
        """Steps (guided mini steps count twice) plus a grid term; text adds the image model."""
        variant = getattr(settings, "variant", "turbo")
        steps = settings.resolved_steps() if isinstance(settings, Hunyuan3DSettings) else 5
        evals = steps * (2 if variant == "mini" and getattr(settings, "guidance_scale", 5.0) > 1 else 1)
        res = getattr(settings, "grid_resolution", GPU_RESOLUTION) / GPU_RESOLUTION
        if gpu:
            base = 1.0 + 0.1 * evals + 3.0 * res**3
        else:  # encode + VAE, the DiT calls, the grid's near-surface shell (~res^2)
            base = 25.0 + 10.0 * evals + 350.0 * res**2
        return base + self.text_seconds(settings, gpu)

    def run(self, inputs, settings: Settings) -> RunGenerator:
        from methods.hunyuan3d import pipeline

        asset = yield from pipeline.run(inputs, settings)
        return asset


__all__ = [
    "Hunyuan3DMethod",
    "Hunyuan3DSettings",
    "Hunyuan3DTextSettings",
    "DEFAULT_CHECKPOINT",
    "IMAGE_MODEL",
    "LICENCE",
    "LICENCE_ID",
    "LICENCE_TERMS",
    "VARIANTS",
]
