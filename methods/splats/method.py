"""``gaussian-splatting``: 3D Gaussian splats fitted to a video or a set of views (Kerbl et al. 2023).

The light spec: no torch at import. The run lives in :mod:`methods.splats.pipeline`; it shares the
``nerf`` method's input side (video sampling, image sets, transforms.json / Blender scenes,
pycolmap poses and the held-out split), so both are scored on the same held-out frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import methods.nerf.method  # noqa: F401  (nerf registers first, whoever imports this first: one list order)
from methods.base import Settings, setting
from methods.nerf import (
    PerSceneVideoMethod,
    budget_seconds_setting,
    eval_views_setting,
    matcher_setting,
    max_frames_setting,
    max_image_size_setting,
    max_steps_setting,
)
from methods.registry import register

SPLAT_BACKGROUNDS = ("auto", "white", "black", "random", "border")
SPLAT_BACKENDS = ("auto", "torch", "gsplat")


@dataclass(kw_only=True)
class SplatSettings(Settings):
    budget_seconds: float = budget_seconds_setting()
    steps: int = max_steps_setting(30000)
    sh_degree: int = setting(
        3, label="SH degree", help="View-dependent colour; the degree in use rises every 1,000 steps.", min=0, max=3
    )
    max_gaussians: int = setting(
        200000, label="Max Gaussians", help="Densification stops adding splats at this count.", min=100, max=5000000
    )
    background: str = setting(
        "auto",
        label="Background",
        help="auto: white for images with alpha, else the frames' own border colour (a backdrop, or behind a real "
        "capture's surroundings, which the splats model); random: a new colour each step.",
        choices=SPLAT_BACKGROUNDS,
    )
    backend: str = setting(
        "auto",
        label="Rasteriser",
        help="auto: gsplat where it is installed and a GPU is present, else the pure-PyTorch one.",
        choices=SPLAT_BACKENDS,
        advanced=True,
    )
    learning_rates: str = setting(
        "auto",
        label="Learning rates",
        help="paper: Kerbl et al.'s (for ~30k steps); short: faster for CPU budgets of a few thousand steps; "
        "auto: short on a CPU, paper on a GPU.",
        choices=("auto", "paper", "short"),
        advanced=True,
    )
    densify_grad: float = setting(
        0.0002,
        label="Densify gradient threshold",
        help="Mean view-space positional gradient (NDC) above which a splat is cloned or split.",
        min=1e-6,
        max=1.0,
        advanced=True,
    )
    densify_from: int = setting(
        100, label="Densify from step", help="First step of adaptive density control.", min=0, max=100000, advanced=True
    )
    densify_every: int = setting(
        100,
        label="Densify every (steps)",
        help="Steps between density-control passes.",
        min=1,
        max=10000,
        advanced=True,
    )
    densify_until: float = setting(
        0.5,
        label="Densify until (fraction)",
        help="Fraction of the budget after which the count is frozen.",
        min=0.0,
        max=1.0,
        advanced=True,
    )
    opacity_reset_every: int = setting(
        3000, label="Opacity reset every (steps)", help="0 never resets.", min=0, max=100000, advanced=True
    )
    pairs_per_step: int = setting(
        120000,
        label="Work per step (pairs)",
        help="On a CPU a step renders a crop of the view sized to about this many pixel-splat pairs "
        "(the whole view while the splats are few); a GPU renders whole views.",
        min=10000,
        max=10000000,
        advanced=True,
    )
    views_per_step: int = setting(
        1, label="Views per step", help="Training views rendered per optimiser step.", min=1, max=64, advanced=True
    )
    init_points: int = setting(
        3000, label="Initial splats", help="From the visual hull or at random.", min=10, max=1000000, advanced=True
    )
    mesh_resolution: int = setting(128, label="Mesh resolution", help="Marching-cubes lattice.", min=32, max=384)
    mesh_level: float = setting(
        0.5, label="Surface opacity level", help="Level of the opacity field the mesh follows.", min=0.01, max=10.0
    )
    max_frames: int = max_frames_setting()
    max_image_size: int = max_image_size_setting()
    matcher: str = matcher_setting()
    eval_views: int = eval_views_setting()


@register
class GaussianSplatting(PerSceneVideoMethod):
    id = "gaussian-splatting"
    label = "3D Gaussian Splatting (video / multi-view)"
    representation = "anisotropic 3D Gaussians with SH colour, rasterised"
    output = "splats+mesh"
    paper = "Kerbl et al., 3D Gaussian Splatting for Real-Time Radiance Field Rendering, SIGGRAPH 2023"
    paper_url = "https://arxiv.org/abs/2308.04079"
    Settings = SplatSettings
    pipeline = "methods.splats.pipeline:run_splats"
    overhead_seconds = (30.0, 45.0)
    version = "2"  # bounded steps, starting points from known poses, the frames' backdrop: earlier runs differ
