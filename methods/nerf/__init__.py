"""The radiance-field engine shared by ``nerf`` (video / multi-view), DreamFusion and Dream Fields.

Importing this package is light (no torch); import the submodules you use. Here: the settings and
the spec (:class:`PerSceneVideoMethod`) the per-scene video methods share. Public API::

    methods.nerf.cameras    Cameras, SceneFrame, RayTable, look_at, orbit_poses, opencv_to_opengl
    methods.nerf.field      RadianceField, FieldConfig, DensityGrid, PlaneEncoding, HashEncoding, sh_encode
    methods.nerf.occupancy  OccupancyGrid, sample_cell_density
    methods.nerf.render     RenderOptions, render_rays, render_rays_chunked, render_view
    methods.nerf.train      Budget, TrainEvent, train_loop (generic: swap the step / loss),
                            FitConfig, SceneFitter (photometric fit to posed images), psnr
    methods.nerf.mesh       MeshOptions, extract_mesh, EmptySurface
    methods.nerf.io         Scene, load_transforms, read_image_folder, read_image_zip, stack_images
    methods.nerf.video      read_video, check_motion, write_video
    methods.nerf.sfm        estimate_poses, SfmResult (pycolmap)
    methods.nerf.scene_run  run_scene, SceneMethod, read_scene, open_input: the run side nerf and
                            gaussian-splatting share (input, poses, held-out split, record, asset)
    methods.nerf.pipeline   run_nerf, NeRFRun: the ``nerf`` method's run
    methods.nerf.sfm        also triangulate_known_poses (points from fixed, known cameras)

Conventions: poses are camera-to-world 4x4 in the OpenGL convention (+Y up, camera looks
along -Z), intrinsics in pixels; the field lives in the cube [-1, 1]^3 (``SceneFrame`` maps a
scene there). Torch-free modules: cameras (except RayTable), io, video, sfm.
"""

from importlib import import_module
from typing import Any, ClassVar

from methods.base import Inputs, Method, RunGenerator, Settings, setting

BACKGROUNDS = ("auto", "random", "white", "black", "learned")
ENCODINGS = ("planes", "hash")
MATCHERS = ("auto", "exhaustive", "sequential")


# The settings every per-scene video method (nerf, gaussian-splatting) shares, one definition each.
def budget_seconds_setting() -> Any:
    return setting(
        0.0,
        label="Training budget (s)",
        help="Wall-clock seconds of training; 0 picks 60 s on a CPU and 120 s on a GPU.",
        min=0,
        max=3600,
        step=5,
    )


def max_steps_setting(default: int) -> Any:
    help = "Training stops at this many steps if the budget lasts."
    return setting(default, label="Max steps", help=help, min=1, max=1000000)


def max_frames_setting() -> Any:
    return setting(60, label="Frames from a video", help="Frames sampled from a video or an image set.", min=5, max=400)


def max_image_size_setting() -> Any:
    return setting(
        400,
        label="Max image side (px)",
        help="Frames are downscaled to this for pose estimation and training.",
        min=32,
        max=4096,
        advanced=True,
    )


def matcher_setting() -> Any:
    return setting(
        "auto",
        label="Feature matching",
        help="For frames without poses; auto: sequential for videos, exhaustive for image sets.",
        choices=MATCHERS,
        advanced=True,
    )


def eval_views_setting() -> Any:
    help = "For PSNR / SSIM / LPIPS; 0 renders all."
    return setting(24, label="Held-out views rendered", help=help, min=0, max=1000, advanced=True)


class PerSceneVideoMethod(Method):
    """The spec the per-scene video methods share (a light class: no torch): they take a video or posed views,
    train within a budget on this machine, and run through ``pipeline`` ("module:function"), imported on first
    use; the run side itself is :mod:`methods.nerf.scene_run`."""

    modalities = ("video",)
    family = "per-scene radiance field"
    licence = "own implementation, no weights"
    requires = ("torch", "skimage", "av", "pycolmap")
    needs_gpu = False
    seconds_gpu = 150.0
    seconds_cpu = 120.0
    vram_gb = 2.0
    version = "1"
    pipeline: ClassVar[str] = ""
    overhead_seconds: ClassVar[tuple[float, float]] = (30.0, 60.0)  # beyond the budget: on a GPU, on a CPU

    def estimate_seconds(self, settings: Settings, gpu: bool) -> float:
        budget = getattr(settings, "budget_seconds", 0.0) or (120.0 if gpu else 60.0)
        return budget + self.overhead_seconds[0 if gpu else 1]

    def run(self, inputs: Inputs, settings: Settings) -> RunGenerator:
        module, name = self.pipeline.split(":")
        asset = yield from getattr(import_module(module), name)(inputs, settings)
        return asset


__all__ = [
    "BACKGROUNDS",
    "PerSceneVideoMethod",
    "budget_seconds_setting",
    "max_steps_setting",
    "ENCODINGS",
    "MATCHERS",
    "eval_views_setting",
    "matcher_setting",
    "max_frames_setting",
    "max_image_size_setting",
]
