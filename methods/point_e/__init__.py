"""Point-E (Nichol et al. 2022): point-cloud diffusion from text or an image, then SDF -> mesh.

This module is the light spec (no torch import): the method's data and its settings. The
implementation is in the submodules, imported inside ``run``: ``models`` (the networks, loading
the official checkpoints unchanged), ``diffusion`` and ``sampler`` (Gaussian diffusion, Karras
Heun sampler, classifier-free guidance), ``clip`` (CLIP ViT-L/14 through transformers), ``mesh``
(SDF + marching cubes, or Poisson), ``checkpoints`` (download and cache) and ``pipeline``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from methods.base import Inputs, InvalidSettings, Method, RunGenerator, Settings, precision_setting, setting
from methods.point_e import configs
from methods.registry import register

OFFICIAL = configs.OFFICIAL


@dataclass(kw_only=True)
class PointESettings(Settings):
    """Settings shared by both modalities; see :class:`PointETextSettings` and :class:`PointEImageSettings`."""

    model_size: str = setting(
        "40M",
        label="Model size",
        help="Base model: 40M, 300M or 1B parameters (image input). Text input has only the 40M text model.",
        choices=tuple(configs.IMAGE_BASES),
    )
    guidance_scale: float = setting(
        3.0, label="Guidance scale", help="Classifier-free guidance of the base model.", min=0.0, max=20.0, step=0.5
    )
    steps: int = setting(
        64, label="Sampling steps", help="Karras (Heun) steps per stage; 64 as officially.", min=1, max=256, step=1
    )
    upsample: bool = setting(True, label="Upsample", help="Upsample 1,024 points to 4,096 with the upsampler model.")
    upsample_guidance_scale: float = setting(
        0.0,
        label="Upsampler guidance",
        help="Classifier-free guidance of the upsampler (official: 0 for text, 3 for images).",
        min=0.0,
        max=20.0,
        step=0.5,
        advanced=True,
    )
    mesh_method: str = setting(
        "sdf",
        label="Mesh method",
        help="sdf: Point-E's SDF model + marching cubes; poisson: Poisson surface reconstruction (open3d).",
        choices=("sdf", "poisson"),
    )
    grid_size: int = setting(
        32,
        label="Mesh grid size",
        help="Marching-cubes grid per side (32 as in the official notebook, 128 for the paper's evaluations).",
        min=16,
        max=128,
        step=16,
    )
    checkpoint: str = setting(
        OFFICIAL,
        label="Point-E checkpoints",
        help="'official' downloads the official files on first use; or a directory holding them (base_40m.pt, ...).",
        advanced=True,
    )
    clip_checkpoint: str = setting(
        configs.CLIP_CHECKPOINT,
        label="CLIP checkpoint",
        help="CLIP ViT-L/14 as a Hugging Face repo id or directory (the official models were trained with it).",
        advanced=True,
    )
    precision: str = precision_setting()

    def validate(self) -> None:
        super().validate()
        if self.checkpoint != OFFICIAL and not Path(self.checkpoint).expanduser().is_dir():
            raise InvalidSettings(
                f"checkpoint must be '{OFFICIAL}' or a directory holding the official Point-E .pt files; "
                f"{self.checkpoint!r} is not a directory"
            )
        if not self.clip_checkpoint.strip():
            raise InvalidSettings("clip_checkpoint is empty; the default is " + configs.CLIP_CHECKPOINT)


@dataclass(kw_only=True)
class PointETextSettings(PointESettings):
    model_size: str = setting(
        "40M",
        label="Model size",
        help="Text-to-point-cloud exists only as the 40M text model (base40M-textvec).",
        choices=("40M",),
    )


@dataclass(kw_only=True)
class PointEImageSettings(PointESettings):
    upsample_guidance_scale: float = setting(
        3.0,
        label="Upsampler guidance",
        help="Classifier-free guidance of the upsampler (official: 0 for text, 3 for images).",
        min=0.0,
        max=20.0,
        step=0.5,
        advanced=True,
    )


@register
class PointE(Method):
    id = "point-e"
    label = "Point-E"
    modalities = ("text", "image")
    family = "point-cloud diffusion (+ upsampler, SDF to mesh)"
    representation = "points"
    output = "mesh+points"
    paper = "Point-E: A System for Generating 3D Point Clouds from Complex Prompts (Nichol et al., 2022)"
    paper_url = "https://arxiv.org/abs/2212.08751"
    licence = "MIT (code and weights)"
    weights = (*configs.CHECKPOINT_URLS.values(), configs.CLIP_CHECKPOINT)
    weights_gb = round(configs.CHECKPOINT_GB["base40M"] + 0.2 + configs.CLIP_GB, 1)  # 40M base + upsampler + SDF + CLIP
    requires = ("torch", "transformers", "skimage", "filelock", "tqdm")
    needs_gpu = False
    seconds_gpu = 20.0  # 40M base + upsampler, 64 + 64 steps, grid 32 (an estimate; see bench/point_e.py)
    seconds_cpu = 5000.0  # the same on one CPU thread (measured at 2 steps, scaled); divide by the cores used
    vram_gb = 3.0
    version = "1"
    Settings: ClassVar[type[Settings]] = PointESettings

    def default_settings(self, modality: str) -> Settings:
        return PointEImageSettings() if modality == "image" else PointETextSettings()

    def checkpoints(self, settings: Settings) -> list[str]:
        """Local files when cached (or in the given directory), else the official URLs; then CLIP.

        With settings of neither modality, both base models are listed (text and image).
        """
        from methods.point_e import checkpoints

        if isinstance(settings, PointETextSettings | PointEImageSettings):
            modalities = ["text" if isinstance(settings, PointETextSettings) else "image"]
        else:
            modalities = ["text", "image"]
        names: list[str] = []
        for modality in modalities:
            try:
                names += [n for n in configs.checkpoint_names(settings, modality) if n not in names]
            except InvalidSettings:  # a 300M/1B size has no text model
                continue
        return [checkpoints.locate(name, settings.checkpoint) for name in names] + [settings.clip_checkpoint]

    def estimate_seconds(self, settings: Settings, gpu: bool) -> float:
        """Scaled from the default run: base ~23%, upsampler ~75%, mesh ~2% (by parameters, steps, grid^3)."""
        size = {"40M": 1.0, "300M": 7.7, "1B": 30.8}[settings.model_size]
        sampling = settings.steps / 64 * (0.23 * size + (0.75 if settings.upsample else 0.0))
        mesh = 0.02 * (settings.grid_size / 32) ** 3
        return (self.seconds_gpu if gpu else self.seconds_cpu) * (sampling + mesh)

    def run(self, inputs: Inputs, settings: Settings) -> RunGenerator:
        from methods.point_e import pipeline

        asset = yield from pipeline.run(inputs, settings)
        return asset
