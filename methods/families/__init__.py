"""The thesis' generative families, trained here on procedural shapes: vae, gan, ddpm, score-sde.

Light specs only (no torch at import): listing methods stays cheap. The heavy code (nets, samplers,
training) lives in the package's other modules and is imported inside ``run``.

Each method maps a caption ("a small red mug") to a 16^3 coloured occupancy grid, meshed by marching
cubes (with vertex colours) after trilinear upsampling to 32^3, plus 2,048 coloured points on that mesh.
Weights ship in assets/weights/ (``python -m methods.families.train`` writes them).
"""

from __future__ import annotations

from dataclasses import dataclass

from methods.base import Method, RunGenerator, Settings, setting
from methods.registry import register

__all__ = ["DDPMMethod", "GANMethod", "ScoreSDEMethod", "VAEMethod"]

_THRESHOLD_HELP = "Marching-cubes level on the generated occupancy (0..1); lower keeps thin parts."
_CHECKPOINT_HELP = "A .safetensors file written by methods.families.train; empty: the shipped weights."


@dataclass(kw_only=True)
class _FamilySettings(Settings):
    threshold: float = setting(0.4, label="Surface level", help=_THRESHOLD_HELP, min=0.05, max=0.95, step=0.05)
    checkpoint: str = setting("", label="Weights file", help=_CHECKPOINT_HELP, advanced=True)


class _FamilyMethod(Method):
    modalities = ("text",)
    representation = "voxels (16^3, occupancy + RGB) -> mesh, points"
    output = "mesh+points"
    licence = "MIT (weights trained here on procedural shapes)"
    requires = ("torch", "safetensors", "skimage", "scipy")
    weights_gb = 0.004
    vram_gb = 0.1

    def checkpoints(self, settings: Settings) -> list[str]:
        from methods.families.sample import weights_path

        return [str(weights_path(self.id, getattr(settings, "checkpoint", "")))]

    def run(self, inputs, settings) -> RunGenerator:
        from methods.families.sample import run_family

        return (yield from run_family(self.id, inputs.prompt or "", settings))


@register
class VAEMethod(_FamilyMethod):
    id = "vae"
    label = "VAE (conditional, trained here)"
    family = "VAE"
    paper = "Kingma & Welling 2014, Auto-Encoding Variational Bayes; Sohn et al. 2015 (conditional)"
    paper_url = "https://arxiv.org/abs/1312.6114"
    seconds_gpu = 0.05
    seconds_cpu = 0.2

    @dataclass(kw_only=True)
    class Settings(_FamilySettings):
        temperature: float = setting(
            1.0, label="Temperature", help="Scale of the latent sample z ~ N(0, t^2 I).", min=0.0, max=2.0, step=0.05
        )


@register
class GANMethod(_FamilyMethod):
    id = "gan"
    label = "GAN (conditional 3D-GAN, trained here)"
    family = "GAN"
    paper = "Wu et al. 2016, 3D-GAN; Miyato et al. 2018, spectral normalisation and projection discriminator"
    paper_url = "https://arxiv.org/abs/1610.07584"
    seconds_gpu = 0.05
    seconds_cpu = 0.2

    @dataclass(kw_only=True)
    class Settings(_FamilySettings):
        truncation: float = setting(
            0.0,
            label="Truncation",
            help="Resample latent entries above this magnitude (0: off); lower trades diversity for quality.",
            min=0.0,
            max=3.0,
            step=0.1,
            advanced=True,
        )


@register
class DDPMMethod(_FamilyMethod):
    id = "ddpm"
    label = "DDPM (1,000-step diffusion, trained here)"
    family = "diffusion"
    paper = "Ho et al. 2020, Denoising Diffusion Probabilistic Models; Song et al. 2021, DDIM"
    paper_url = "https://arxiv.org/abs/2006.11239"
    seconds_gpu = 0.5
    seconds_cpu = 1.0

    @dataclass(kw_only=True)
    class Settings(_FamilySettings):
        sampler: str = setting(
            "ddim",
            label="Sampler",
            help="ddim: deterministic DDIM; ddpm: ancestral sampling (steps=1000 is the original chain).",
            choices=("ddim", "ddpm"),
        )
        steps: int = setting(50, label="Steps", help="Denoising steps (of 1,000).", min=1, max=1000, step=1)
        guidance: float = setting(
            3.0, label="Guidance scale", help="Classifier-free guidance (1: none).", min=1.0, max=10.0, step=0.5
        )
        eta: float = setting(
            0.0,
            label="DDIM eta",
            help="0: deterministic; 1: DDPM-like noise.",
            min=0.0,
            max=1.0,
            step=0.1,
            advanced=True,
        )

    def estimate_seconds(self, settings: Settings, gpu: bool) -> float:
        per_step = 0.01 if gpu else 0.005
        return 0.5 + per_step * int(getattr(settings, "steps", 50)) * (2 if settings.guidance != 1 else 1)


@register
class ScoreSDEMethod(_FamilyMethod):
    id = "score-sde"
    label = "Score SDE (VP-SDE, trained here)"
    family = "score/SDE"
    paper = "Song et al. 2021, Score-Based Generative Modeling through Stochastic Differential Equations"
    paper_url = "https://arxiv.org/abs/2011.13456"
    seconds_gpu = 1.0
    seconds_cpu = 2.5

    @dataclass(kw_only=True)
    class Settings(_FamilySettings):
        sampler: str = setting(
            "pc",
            label="Sampler",
            help="pc: predictor-corrector (Euler-Maruyama + Langevin); ode: probability-flow ODE (Heun).",
            choices=("pc", "ode"),
        )
        steps: int = setting(100, label="Steps", help="Integration steps from t=1 to t=0.", min=2, max=1000, step=1)
        guidance: float = setting(
            3.0,
            label="Guidance scale",
            help="Classifier-free guidance on the score (1: none).",
            min=1.0,
            max=10.0,
            step=0.5,
        )
        snr: float = setting(
            0.16,
            label="Corrector SNR",
            help="Langevin corrector signal-to-noise ratio (pc only).",
            min=0.0,
            max=1.0,
            step=0.01,
            advanced=True,
        )

    def estimate_seconds(self, settings: Settings, gpu: bool) -> float:
        per_call = 0.01 if gpu else 0.005
        calls = 2 * int(getattr(settings, "steps", 100))
        return 0.5 + per_call * calls * (2 if settings.guidance != 1 else 1)
