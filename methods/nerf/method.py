"""``nerf``: a per-scene radiance field from a video or a set of views (Mildenhall et al. 2020).

The light spec: no torch at import (the registry lists methods without it). The run lives in
:mod:`methods.nerf.pipeline` and the engine in :mod:`methods.nerf`, shared with the text-to-3D
methods that optimise a radiance field.

Inputs (``Inputs(modality="video")``): ``frames`` (PIL images; with ``poses`` (N, 4, 4) OpenGL
camera-to-world and ``intrinsics`` when known), or ``video_path``: a video file, a folder or
.zip of images, a NeRF Blender scene folder / ``transforms_train.json``, or a nerfstudio /
instant-ngp ``transforms.json``. Frames without poses go through structure from motion.
"""

from __future__ import annotations

from dataclasses import dataclass

from methods.base import Settings, setting
from methods.nerf import (
    BACKGROUNDS,
    ENCODINGS,
    PerSceneVideoMethod,
    budget_seconds_setting,
    eval_views_setting,
    matcher_setting,
    max_frames_setting,
    max_image_size_setting,
    max_steps_setting,
)
from methods.registry import register


@dataclass(kw_only=True)
class NeRFSettings(Settings):
    budget_seconds: float = budget_seconds_setting()
    steps: int = max_steps_setting(100000)
    resolution: int = setting(
        128, label="Grid resolution", help="Density grid cells per side (memory grows with its cube).", min=32, max=384
    )
    background: str = setting(
        "auto",
        label="Background",
        help="auto: random for images with alpha, a learned colour for unmasked captures.",
        choices=BACKGROUNDS,
    )
    mesh_resolution: int = setting(192, label="Mesh resolution", help="Marching-cubes lattice.", min=32, max=512)
    threshold: float = setting(
        10.0,
        label="Surface threshold",
        help="Density of the extracted surface (lower: fatter, catches thin parts; higher: tighter, fewer floaters).",
        min=0.1,
        max=1000.0,
    )
    decimate_faces: int = setting(
        0, label="Decimate to faces", help="Quadric decimation target; 0 keeps every face.", min=0, max=5000000
    )
    max_frames: int = max_frames_setting()
    max_image_size: int = max_image_size_setting()
    matcher: str = matcher_setting()
    encoding: str = setting(
        "planes",
        label="Colour encoding",
        help="planes: multi-scale tri-planes (fastest on a CPU); hash: Instant-NGP hash grid.",
        choices=ENCODINGS,
        advanced=True,
    )
    hash_log2_size: int = setting(
        17, label="Hash-grid size (log2)", help="Entries per level of the hash grid.", min=12, max=22, advanced=True
    )
    batch_rays: int = setting(
        0, label="Rays per step", help="0 picks 256 on a CPU and 4096 on a GPU.", min=0, max=65536, advanced=True
    )
    eval_views: int = eval_views_setting()


@register
class NeRF(PerSceneVideoMethod):
    id = "nerf"
    label = "NeRF (video / multi-view)"
    representation = "density grid + tri-plane / hash features + MLP"
    output = "mesh"
    paper = "Mildenhall et al., NeRF: Representing Scenes as Neural Radiance Fields for View Synthesis, ECCV 2020"
    paper_url = "https://arxiv.org/abs/2003.08934"
    Settings = NeRFSettings
    pipeline = "methods.nerf.pipeline:run_nerf"
