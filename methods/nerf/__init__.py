"""The radiance-field engine shared by ``nerf`` (video / multi-view), DreamFusion and Dream Fields.

Importing this package is light (no torch); import the submodules you use. Public API::

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
    methods.nerf.pipeline   run_nerf: the ``nerf`` method's run

Conventions: poses are camera-to-world 4x4 in the OpenGL convention (+Y up, camera looks
along -Z), intrinsics in pixels; the field lives in the cube [-1, 1]^3 (``SceneFrame`` maps a
scene there). Torch-free modules: cameras (except RayTable), io, video, sfm.
"""

from typing import Any

from methods.base import setting

BACKGROUNDS = ("auto", "random", "white", "black", "learned")
ENCODINGS = ("planes", "hash")
MATCHERS = ("auto", "exhaustive", "sequential")


# The input side's settings, one definition for every per-scene video method (nerf, gaussian-splatting).
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


__all__ = [
    "BACKGROUNDS",
    "ENCODINGS",
    "MATCHERS",
    "eval_views_setting",
    "matcher_setting",
    "max_frames_setting",
    "max_image_size_setting",
]
