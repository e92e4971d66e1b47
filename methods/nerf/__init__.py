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

BACKGROUNDS = ("auto", "random", "white", "black", "learned")
ENCODINGS = ("planes", "hash")
MATCHERS = ("auto", "exhaustive", "sequential")

__all__ = ["BACKGROUNDS", "ENCODINGS", "MATCHERS"]
