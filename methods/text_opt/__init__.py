"""Optimisation-based text-to-3D: ``dreamfusion`` (SDS through Stable Diffusion) and ``dreamfields`` (CLIP).

The light specs: no torch at import (the registry lists methods without it). Both optimise the
radiance field of :mod:`methods.nerf` from random views in one shared loop whose guidance is a
swappable part. Public API::

    methods.text_opt                DreamFusion, DreamFields (registered), their Settings
    methods.text_opt.loop           LoopConfig, FieldOptimizer, RenderBatch, Guidance (protocol)
    methods.text_opt.sds            StableDiffusionGuidance, load_stable_diffusion, sds_grad, sds_loss
    methods.text_opt.clip_guidance  DreamFieldsGuidance, load_clip, transmittance_loss, random_backgrounds
    methods.text_opt.cameras        CameraRange, sample_cameras, view_direction, view_prompt (numpy)
    methods.text_opt.render         render_shaded, Shading, density_normals
    methods.text_opt.pipeline       run_dreamfusion, run_dreamfields (the heavy halves of ``run``)
    eval.runs.cache                  find_cached_run, CachedRun, expected_seconds (torch-free)

These runs take minutes to hours (Shap-E takes seconds): a time budget bounds them, progress
carries a preview render, closing the run's generator cancels after the current step, and
:mod:`eval.runs.cache` finds a finished run with the same method, prompt, settings and seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from methods.base import Inputs, InvalidSettings, Method, RunGenerator, Settings, precision_setting, setting
from methods.registry import register

SD_CHECKPOINT = "stable-diffusion-v1-5/stable-diffusion-v1-5"
CLIP_CHECKPOINT = "openai/clip-vit-base-patch16"
CPU_BUDGET_SECONDS = 120.0
GPU_BUDGET_SECONDS = 1800.0


@dataclass(kw_only=True)
class TextOptSettings(Settings):
    """Knobs both methods share; ``budget_seconds`` 0 picks 120 s on a CPU and 1800 s on a GPU."""

    checkpoint: str = setting("", label="Checkpoint", help="Hub repo id or local folder.", advanced=True)
    steps: int = setting(
        10000, label="Max steps", help="Optimisation stops at this many steps if the budget lasts.", min=1, max=200000
    )
    budget_seconds: float = setting(
        0.0,
        label="Time budget (s)",
        help="Wall-clock seconds of optimisation; 0 picks 120 s on a CPU and 1800 s on a GPU.",
        min=0,
        max=36000,
        step=10,
    )
    resolution: int = setting(
        64, label="Render resolution (px)", help="Side of the training renders.", min=16, max=512, step=8
    )
    guidance_scale: float = setting(1.0, label="Guidance scale", min=0.0, max=1000.0)
    learning_rate: float = setting(
        5e-2,
        label="Learning rate",
        help="Adam step size of the density grid and colour features; the colour MLP uses a tenth.",
        min=1e-5,
        max=1.0,
    )
    grid_resolution: int = setting(
        64, label="Density grid", help="Cells per side of the density grid.", min=16, max=256, advanced=True
    )
    mesh_resolution: int = setting(
        128, label="Mesh resolution", help="Marching-cubes lattice.", min=32, max=512, advanced=True
    )
    threshold: float = setting(
        10.0,
        label="Surface threshold",
        help="Density of the extracted surface (the initial blob reaches 20).",
        min=0.1,
        max=1000.0,
        advanced=True,
    )
    decimate_faces: int = setting(
        20000,
        label="Decimate to faces",
        help="Quadric decimation target; 0 keeps every face.",
        min=0,
        max=2000000,
        advanced=True,
    )
    precision: str = precision_setting()

    def validate(self) -> None:
        super().validate()
        if not self.checkpoint.strip():
            raise InvalidSettings("checkpoint is empty: give a hub repo id or a local folder")


@dataclass(kw_only=True)
class DreamFusionSettings(TextOptSettings):
    checkpoint: str = setting(
        SD_CHECKPOINT,
        label="Checkpoint",
        help="Stable Diffusion 1.x / 2.x: hub repo id or local folder in the diffusers layout.",
        advanced=True,
    )
    guidance_scale: float = setting(
        100.0,
        label="Guidance scale",
        help="Classifier-free guidance of the score; DreamFusion uses 100.",
        min=1.0,
        max=200.0,
        step=1.0,
    )


@dataclass(kw_only=True)
class DreamFieldsSettings(TextOptSettings):
    checkpoint: str = setting(
        CLIP_CHECKPOINT,
        label="CLIP checkpoint",
        help="The CLIP the field is optimised against (hub repo id or local folder); the panel scores with another.",
        advanced=True,
    )
    guidance_scale: float = setting(
        1.0,
        label="Guidance scale",
        help="Weight of the CLIP loss against the transmittance regulariser (weight 0.5), as in Dream Fields.",
        min=0.01,
        max=100.0,
    )
    augmentations: int = setting(
        8,
        label="Augmentations",
        help="Random crops and backgrounds per step, each one CLIP pass; Dream Fields uses 8.",
        min=1,
        max=64,
        advanced=True,
    )


class _TextOptimisation(Method):
    """What both share: the budget, the cost estimate, text input only."""

    modalities = ("text",)
    output = "mesh"
    representation = "density grid + tri-plane features + MLP (methods.nerf), marching cubes"
    needs_gpu = False
    cache_results = True
    # Seconds per optimisation step at the default settings and the load + mesh + turntable overhead.
    # CPU: measured with random full-size weights on one shared core (bench/sds.py); GPU: estimates.
    step_seconds_gpu: ClassVar[float] = 0.2
    step_seconds_cpu: ClassVar[float] = 60.0
    overhead_gpu: ClassVar[float] = 60.0
    overhead_cpu: ClassVar[float] = 90.0

    def estimate_seconds(self, settings: Settings, gpu: bool) -> float:
        """The time budget (plus the step that overruns it) or the steps at the expected speed, and the overhead."""
        budget = getattr(settings, "budget_seconds", 0.0) or (GPU_BUDGET_SECONDS if gpu else CPU_BUDGET_SECONDS)
        steps = getattr(settings, "steps", 10000)
        per_step = self.step_seconds_gpu if gpu else self.step_seconds_cpu
        return min(budget + per_step, steps * per_step) + (self.overhead_gpu if gpu else self.overhead_cpu)


@register
class DreamFusion(_TextOptimisation):
    """DreamFusion with Stable Diffusion as the prior (Stable DreamFusion): SDS into a radiance field."""

    id = "dreamfusion"
    label = "DreamFusion (SDS)"
    family = "score distillation (SDS) through a 2D diffusion model"
    paper = "Poole, Jain, Barron & Mildenhall 2022, DreamFusion: Text-to-3D using 2D Diffusion"
    paper_url = "https://arxiv.org/abs/2209.14988"
    licence = "own implementation; Stable Diffusion weights under the CreativeML OpenRAIL-M licence"
    weights = (SD_CHECKPOINT,)
    weights_gb = 4.3  # float32 safetensors of the UNet (3.4 GB), text encoder (0.5 GB) and VAE (0.3 GB)
    requires = ("torch", "diffusers", "transformers", "skimage")
    seconds_gpu = GPU_BUDGET_SECONDS + 60.0  # the budget: 10000 steps at an estimated 0.2 s would take 2000 s
    seconds_cpu = CPU_BUDGET_SECONDS + 60.0 + 90.0  # 1-3 steps of 45-110 s (bench/sds.py, one shared core)
    vram_gb = 10.0  # estimate: float16 UNet 1.7 GB, float32 VAE encoder back-propagated at 512 px, the field
    version = "1"
    Settings = DreamFusionSettings

    def run(self, inputs: Inputs, settings: Settings) -> RunGenerator:
        from methods.text_opt.pipeline import run_dreamfusion

        asset = yield from run_dreamfusion(inputs, settings)
        return asset


@register
class DreamFields(_TextOptimisation):
    """Dream Fields: a radiance field optimised so that CLIP matches its renders to the prompt."""

    id = "dreamfields"
    label = "Dream Fields (CLIP)"
    family = "CLIP-guided radiance field"
    paper = "Jain, Mildenhall, Barron, Abbeel & Poole 2022, Zero-Shot Text-Guided Object Generation with Dream Fields"
    paper_url = "https://arxiv.org/abs/2112.01455"
    licence = "own implementation; CLIP weights under the MIT licence"
    weights = (CLIP_CHECKPOINT,)
    weights_gb = 0.6
    requires = ("torch", "transformers", "skimage")
    seconds_gpu = 10000 * 0.1 + 30.0  # 10000 steps at an estimated 0.1 s (not measured: no GPU here)
    seconds_cpu = CPU_BUDGET_SECONDS + 15.0 + 60.0  # about 8 steps of 9-15 s (8 ViT-B/16 passes, one core)
    vram_gb = 4.0  # estimate: float16 CLIP ViT-B/16 and 8 augmented 224 px passes back-propagated
    step_seconds_gpu = 0.1
    step_seconds_cpu = 15.0
    overhead_gpu = 30.0
    overhead_cpu = 60.0
    version = "1"
    Settings = DreamFieldsSettings
    # The scoring protocol must not score with the CLIP this method optimised against.
    optimises_clip: ClassVar[str] = CLIP_CHECKPOINT

    def run(self, inputs: Inputs, settings: Settings) -> RunGenerator:
        from methods.text_opt.pipeline import run_dreamfields

        asset = yield from run_dreamfields(inputs, settings)
        return asset


__all__ = [
    "CLIP_CHECKPOINT",
    "CPU_BUDGET_SECONDS",
    "GPU_BUDGET_SECONDS",
    "SD_CHECKPOINT",
    "DreamFields",
    "DreamFieldsSettings",
    "DreamFusion",
    "DreamFusionSettings",
    "TextOptSettings",
]
