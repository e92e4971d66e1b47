"""TripoSG (Li et al. 2025): DINOv2 tokens -> a rectified-flow DiT over 2048 shape latents -> an SDF VAE -> mesh.

This module is the light spec (no torch import): the method's data and settings, registered as ``triposg``
for image and text input (text: a text-to-image model first, as TripoSR). The implementation is in the
submodules, imported inside ``run``: ``model`` (the DiT and the VAE with the official parameter names),
``checkpoints`` (the diffusers-style folder of ``VAST-AI/TripoSG``, hub or local, strict loading),
``preprocess`` (cut-out, white background, 10% padding) and ``pipeline`` (the run). The pieces it shares with
the other 3D-latent models (DINOv2 conditioner, flow sampler, grid decode, marching cubes) are
``methods.latent3d``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from methods.base import RunGenerator, Settings, precision_setting, setting
from methods.image_to_3d import (
    IMAGE_MODEL,
    ImageTo3DMethod,
    TextStageSettings,
    check_checkpoint,
    chunk_size_setting,
    coarse_to_fine_setting,
)
from methods.registry import register

DEFAULT_CHECKPOINT = "VAST-AI/TripoSG"
GPU_RESOLUTION, CPU_RESOLUTION = 256, 128
CPU_STEP_S, CPU_GRID_128_S, CPU_FIXED_S = 126.0, 250.0, 60.0  # float32 on the 2-core CPU (bench/latent3d.py)


@dataclass(kw_only=True)
class TripoSGSettings(Settings):
    steps: int = setting(50, label="Steps", help="Flow-matching steps (official 50).", min=1, max=200, step=1)
    guidance_scale: float = setting(
        7.0,
        label="Guidance",
        help="Classifier-free guidance scale (official 7; 1 or less runs without guidance).",
        min=0.0,
        max=30.0,
        step=0.5,
    )
    grid_resolution: int = setting(
        GPU_RESOLUTION,
        label="Grid resolution",
        help="Cells per side of the field grid before marching cubes (256 on a GPU, 128 on a CPU by default).",
        min=16,
        max=512,
        step=16,
    )
    hierarchical: bool = coarse_to_fine_setting()
    chunk_size: int = chunk_size_setting(32768, 2**22)
    num_tokens: int = setting(
        2048,
        label="Latent tokens",
        help="Shape latent tokens (the released model is trained with 2048).",
        min=16,
        max=4096,
        step=16,
        advanced=True,
    )
    checkpoint: str = setting(
        DEFAULT_CHECKPOINT,
        label="TripoSG checkpoint",
        help="Hugging Face repo id or a local folder of the same layout (model_index.json and its component folders).",
        advanced=True,
    )
    precision: str = precision_setting()

    def validate(self) -> None:
        super().validate()
        check_checkpoint(self, DEFAULT_CHECKPOINT)


@dataclass(kw_only=True)
class TripoSGTextSettings(TextStageSettings, TripoSGSettings):
    """TripoSG's settings and the text stage's (image_model, image_steps, image_guidance)."""


@register
class TripoSGMethod(ImageTo3DMethod):
    id = "triposg"
    label = "TripoSG"
    family = "3D-latent flow model (DINOv2 -> DiT over shape latents -> SDF VAE)"
    representation = "SDF VAE latents (2048 x 64)"
    output = "mesh"
    paper = "TripoSG: High-Fidelity 3D Shape Synthesis using Large-Scale Rectified Flow Models (Li et al., 2025)"
    paper_url = "https://arxiv.org/abs/2502.06608"
    licence = "MIT (code and weights)"
    weights = (DEFAULT_CHECKPOINT,)
    weights_gb = 7.9  # float32 files: DiT 5.76 GB, VAE 0.97 GB, DINOv2-L 1.22 GB
    requires = ("torch", "transformers", "skimage", "safetensors")
    needs_gpu = False
    seconds_gpu = 15.0
    # 2-core CPU, float32 (the CPU default today), 50 steps, grid 128 coarse-to-fine: bench/latent3d.py measures
    # ~0.63 of the machine's matmul throughput per step; at the quiet machine's 170 GFLOP/s that is ~126 s a
    # step (1.3e13 FLOP, CFG batch of 2 x 2049 tokens through 1.44B parameters), ~350 us a grid point: about
    # 6,600 s. In bfloat16 (AMX: ~2,000 GFLOP/s) ~10.5 s a step, 22 us a point: about 600 s.
    seconds_cpu = 6600.0
    vram_gb = 10.0
    version = "1"
    cache_results = True
    Settings: ClassVar[type[Settings]] = TripoSGSettings
    TextSettings: ClassVar[type[Settings]] = TripoSGTextSettings
    resolution_setting = "grid_resolution"

    def estimate_seconds(self, settings: Settings, gpu: bool) -> float:
        """Steps (linear) + the grid (cubic in the resolution) + fixed; text adds the image model (float32 CPU)."""
        steps = getattr(settings, "steps", 50)
        res = getattr(settings, "grid_resolution", CPU_RESOLUTION)
        if gpu:
            base = 0.2 * steps + 5.0 * (res / GPU_RESOLUTION) ** 3
        else:
            grid = CPU_GRID_128_S * (res / CPU_RESOLUTION) ** 3
            if not getattr(settings, "hierarchical", True):
                grid *= 3.0  # a coarse-to-fine grid decodes about a third of the points at 128
            base = CPU_FIXED_S + CPU_STEP_S * steps + grid
        return base + self.text_seconds(settings, gpu)

    def run(self, inputs, settings: Settings) -> RunGenerator:
        from methods.triposg import pipeline

        asset = yield from pipeline.run(inputs, settings)
        return asset


__all__ = ["TripoSGMethod", "TripoSGSettings", "TripoSGTextSettings", "DEFAULT_CHECKPOINT", "IMAGE_MODEL"]
