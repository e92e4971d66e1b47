"""TripoSR (Tochilkin et al. 2024): one forward pass from an image to a triplane NeRF, then a mesh.

This module is the light spec (no torch import): the method's data and settings, registered as ``triposr``
for image and text input (text: a text-to-image model first). The implementation is in the submodules,
imported inside ``run``: ``config`` (the official config.yaml), ``model`` (the network, loading the official
``model.ckpt`` unchanged), ``checkpoints`` (hub or folder), ``preprocess`` (cut-out, official foreground ratio,
grey), ``render`` (official cameras and volume renderer), ``mesh`` (chunked density grid, marching cubes)
and ``pipeline`` (the run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from methods.base import Inputs, RunGenerator, Settings, precision_setting, setting
from methods.image_to_3d import (
    IMAGE_MODEL,
    ImageTo3DMethod,
    TextStageSettings,
    check_checkpoint,
    chunk_size_setting,
)
from methods.registry import register

DEFAULT_CHECKPOINT = "stabilityai/TripoSR"
GPU_RESOLUTION, CPU_RESOLUTION = 256, 128


@dataclass(kw_only=True)
class TripoSRSettings(Settings):
    mc_resolution: int = setting(
        GPU_RESOLUTION,
        label="Mesh resolution",
        help="Marching-cubes grid per side (official 256; 128 by default on a CPU).",
        min=16,
        max=512,
        step=16,
    )
    foreground_ratio: float = setting(
        0.85,
        label="Foreground ratio",
        help="How much of the square input the object spans after cropping (official 0.85).",
        min=0.5,
        max=1.0,
        step=0.05,
    )
    chunk_size: int = chunk_size_setting(65536, 2**24)
    bake_texture: bool = setting(
        False,
        label="Bake texture",
        help="A UV texture atlas instead of vertex colours (needs the xatlas package).",
        advanced=True,
    )
    checkpoint: str = setting(
        DEFAULT_CHECKPOINT,
        label="TripoSR checkpoint",
        help="Hugging Face repo id (config.yaml + model.ckpt) or a local folder holding them.",
        advanced=True,
    )
    precision: str = precision_setting()

    def validate(self) -> None:
        super().validate()
        check_checkpoint(self, DEFAULT_CHECKPOINT)


@dataclass(kw_only=True)
class TripoSRTextSettings(TextStageSettings, TripoSRSettings):
    """TripoSR's settings and the text stage's (image_model, image_steps, image_guidance)."""


@register
class TripoSRMethod(ImageTo3DMethod):
    id = "triposr"
    label = "TripoSR"
    family = "feed-forward large reconstruction model (triplane NeRF)"
    representation = "triplane NeRF"
    output = "mesh"
    paper = "TripoSR: Fast 3D Object Reconstruction from a Single Image (Tochilkin et al., 2024)"
    paper_url = "https://arxiv.org/abs/2403.02151"
    licence = "MIT (code and weights)"
    weights = (DEFAULT_CHECKPOINT,)
    weights_gb = 1.68
    requires = ("torch", "transformers", "skimage", "yaml")
    needs_gpu = False
    seconds_gpu = 1.0
    # 2 CPU cores, float32, mc_resolution 128: 16-19 s end to end in bench/triposr.py (encode ~12 s, grid
    # ~1.3 s, marching cubes, colours, export ~1 s each), plus loading the 1.7 GB checkpoint the first time;
    # bfloat16 (auto on a CPU with AVX512-BF16) takes 1.4x fewer CPU seconds end to end (bench/precision.py)
    seconds_cpu = 14.0
    vram_gb = 4.0
    version = "1"
    Settings: ClassVar[type[Settings]] = TripoSRSettings
    TextSettings: ClassVar[type[Settings]] = TripoSRTextSettings
    resolution_setting = "mc_resolution"

    def estimate_seconds(self, settings: Settings, gpu: bool) -> float:
        """The network pass plus the grid (cubic in the resolution); text adds the image model."""
        res = getattr(settings, "mc_resolution", CPU_RESOLUTION)
        if gpu:
            base = 0.5 + 0.5 * (res / GPU_RESOLUTION) ** 3
        else:
            base = 0.8 * self.seconds_cpu + 0.2 * self.seconds_cpu * (res / CPU_RESOLUTION) ** 3
        return base + self.text_seconds(settings, gpu)

    def run(self, inputs: Inputs, settings: Settings) -> RunGenerator:
        from methods.triposr import pipeline

        asset = yield from pipeline.run(inputs, settings)
        return asset


__all__ = ["TripoSRMethod", "TripoSRSettings", "TripoSRTextSettings", "DEFAULT_CHECKPOINT", "IMAGE_MODEL"]
