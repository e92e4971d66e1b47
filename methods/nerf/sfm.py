"""Camera poses from images by structure from motion (COLMAP through pycolmap).

SIFT features, exhaustive or sequential matching, incremental mapping; the largest model is
converted to the project's convention (OpenGL camera-to-world, intrinsics in pixels, OpenCV
distortion). Diagnostics a person can act on: how many frames registered, the mean reprojection
error, and a clear message when registration fails.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from methods.base import InvalidInput, MethodUnavailable
from methods.nerf import MATCHERS
from methods.nerf.cameras import Cameras, opencv_to_opengl
from methods.nerf.io import MIN_SFM_FRAMES

MIN_REGISTERED_FRACTION = 0.3


@dataclass
class SfmResult:
    cameras: Cameras  # of the registered frames, in input order
    registered: np.ndarray  # indices into the input frames
    points: np.ndarray  # (P, 3) triangulated points (world frame of the reconstruction)
    reprojection_error: float  # pixels, mean over all observations
    diagnostics: dict = field(default_factory=dict)

    def summary(self, total: int) -> str:
        d = self.diagnostics
        return (
            f"{len(self.registered)} of {total} frames registered, {len(self.points)} points, "
            f"mean reprojection error {self.reprojection_error:.2f} px ({d.get('matcher', '?')} matching)"
        )


def _distortion(camera) -> tuple[np.ndarray, np.ndarray, str]:
    """K, distortion (6,) and our model name for a COLMAP camera."""
    name = camera.model_name if hasattr(camera, "model_name") else str(camera.model).split(".")[-1]
    p = np.asarray(camera.params, dtype=np.float64)
    K = np.asarray(camera.calibration_matrix(), dtype=np.float64)
    d = np.zeros(6)
    if name == "SIMPLE_RADIAL":
        d[0] = p[3]
    elif name == "RADIAL":
        d[0], d[1] = p[3], p[4]
    elif name == "OPENCV":
        d[:4] = p[4:8]
    elif name in ("OPENCV_FISHEYE",):
        d[:4] = p[4:8]
        return K, d, "fisheye"
    elif name not in ("PINHOLE", "SIMPLE_PINHOLE"):
        raise InvalidInput(f"structure from motion returned an unsupported camera model {name}")
    return K, d, "opencv"


def _colmap_options(max_size: int, threads: int):
    """SIFT extraction (at most ``max_size`` px, 4096 features) and matching options on the CPU; COLMAP's own
    log quietened to errors (we report progress)."""
    import pycolmap

    pycolmap.logging.minloglevel = max(int(pycolmap.logging.minloglevel), 2)
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = max_size
    extraction.num_threads = threads
    extraction.use_gpu = False
    extraction.sift.max_num_features = 4096
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = threads
    matching.use_gpu = False
    return extraction, matching


def _write_frames(workdir: Path, images: np.ndarray) -> list[str]:
    """The frames as PNGs in workdir/images (COLMAP reads files); their names, in order."""
    (workdir / "images").mkdir()
    files = [f"{i:05d}.png" for i in range(len(images))]
    for f, img in zip(files, images, strict=True):
        Image.fromarray(np.ascontiguousarray(img[..., :3])).save(workdir / "images" / f, compress_level=1)
    return files


def _run_colmap(workdir: Path, names: list[str], matcher: str, max_size: int, threads: int, seed: int, token):
    import pycolmap

    database = workdir / "database.db"
    image_dir = workdir / "images"
    extraction, matching = _colmap_options(max_size, threads)
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "SIMPLE_RADIAL"
    pycolmap.extract_features(
        database,
        image_dir,
        image_names=names,
        camera_mode=pycolmap.CameraMode.SINGLE,
        reader_options=reader,
        extraction_options=extraction,
        device=pycolmap.Device.cpu,
        cancellation_token=token,
    )
    if matcher == "sequential":
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = 10
        pairing.quadratic_overlap = True
        pycolmap.match_sequential(
            database,
            matching_options=matching,
            pairing_options=pairing,
            device=pycolmap.Device.cpu,
            cancellation_token=token,
        )
    else:
        pycolmap.match_exhaustive(
            database, matching_options=matching, device=pycolmap.Device.cpu, cancellation_token=token
        )
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = threads
    options.min_model_size = 3
    options.random_seed = seed
    options.multiple_models = True
    out = workdir / "sparse"
    out.mkdir(exist_ok=True)
    return pycolmap.incremental_mapping(database, image_dir, out, options, cancellation_token=token)


def estimate_poses(
    images: np.ndarray,
    names: list[str],
    *,
    matcher: str = "auto",
    sequential_input: bool = False,
    max_size: int = 1024,
    threads: int = 2,
    seed: int = 0,
    poll_seconds: float = 1.0,
) -> Generator[str, None, SfmResult]:
    """Pose ``images`` (N, H, W, 3|4) uint8; yields status lines while COLMAP works, returns an SfmResult.

    ``matcher="auto"``: sequential matching for video frames (``sequential_input``) with more than
    30 frames, exhaustive otherwise. Raises InvalidInput when too few frames register.
    """
    try:
        import pycolmap  # noqa: F401
    except ImportError:
        raise MethodUnavailable("images without poses need pycolmap (pip install pycolmap)") from None
    if matcher not in MATCHERS:
        raise InvalidInput(f"matcher must be one of {', '.join(MATCHERS)}")
    n = len(images)
    if n < MIN_SFM_FRAMES:
        raise InvalidInput(
            f"{n} image(s) were given without camera poses; structure from motion needs at least "
            f"{MIN_SFM_FRAMES} overlapping views (20-100 is typical)"
        )
    if matcher == "auto":
        matcher = "sequential" if sequential_input and n > 30 else "exhaustive"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="trilemma-sfm-") as tmp:
        workdir = Path(tmp)
        files = _write_frames(workdir, images)
        import pycolmap

        token = pycolmap.CancellationToken()
        result: dict = {}

        def work() -> None:
            try:
                result["models"] = _run_colmap(workdir, files, matcher, max_size, threads, seed, token)
            except BaseException as exc:  # handed to the generator's thread
                result["error"] = exc

        worker = threading.Thread(target=work, name="colmap", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(poll_seconds)
                if worker.is_alive():
                    yield f"structure from motion ({matcher} matching): {time.perf_counter() - started:.0f} s"
        finally:  # cancelled: ask COLMAP to stop, wait so the temporary folder can go
            if worker.is_alive():
                token.cancel()
                worker.join()
        if "error" in result:
            raise InvalidInput(f"structure from motion failed: {result['error']}") from result["error"]
        models = result.get("models") or {}
        return _convert(models, files, n, matcher, time.perf_counter() - started)


def _convert(models: dict, files: list[str], n: int, matcher: str, seconds: float) -> SfmResult:
    if not models:
        raise InvalidInput(
            f"structure from motion could not register the {n} frames: no pair of views had enough matching "
            "features. Use a video that moves slowly around a textured object, with good light and no motion blur"
        )
    rec = max(models.values(), key=lambda r: r.num_reg_images())
    registered = rec.num_reg_images()
    needed = max(MIN_SFM_FRAMES, int(np.ceil(MIN_REGISTERED_FRACTION * n)))
    if registered < needed:
        raise InvalidInput(
            f"structure from motion registered only {registered} of {n} frames (at least {needed} are needed): "
            "the views overlap too little. Film more slowly, with more overlap between neighbouring frames"
        )
    index_of = {name: i for i, name in enumerate(files)}
    entries = sorted(((index_of[img.name], img) for img in rec.images.values() if img.has_pose), key=lambda e: e[0])
    c2w, Ks, dists, models_seen = [], [], [], set()
    for _, img in entries:
        pose = img.cam_from_world() if callable(img.cam_from_world) else img.cam_from_world
        w2c = np.eye(4)
        w2c[:3, :4] = np.asarray(pose.matrix(), dtype=np.float64)
        c2w.append(opencv_to_opengl(np.linalg.inv(w2c)))
        K, d, model = _distortion(img.camera)
        Ks.append(K)
        dists.append(d)
        models_seen.add(model)
    camera = entries[0][1].camera
    cams = Cameras(
        np.stack(c2w), np.stack(Ks), int(camera.width), int(camera.height), models_seen.pop(), np.stack(dists)
    )
    points = np.array(
        [p.xyz for p in rec.points3D.values() if p.error < 4.0 and p.track.length() >= 2], dtype=np.float64
    )
    error = float(rec.compute_mean_reprojection_error())
    diagnostics = {
        "registered": registered,
        "frames": n,
        "points": int(rec.num_points3D()),
        "reprojection_error_px": round(error, 3),
        "models": len(models),
        "matcher": matcher,
        "seconds": round(seconds, 2),
        "unregistered": [i for i in range(n) if i not in {e[0] for e in entries}],
    }
    return SfmResult(
        cameras=cams,
        registered=np.array([e[0] for e in entries]),
        points=points.reshape(-1, 3),
        reprojection_error=error,
        diagnostics=diagnostics,
    )


@dataclass
class TriangulatedPoints:
    points: np.ndarray  # (P, 3) world frame of the given poses
    diagnostics: dict = field(default_factory=dict)


def triangulate_known_poses(
    images: np.ndarray,
    cameras: Cameras,
    *,
    max_size: int = 1024,
    threads: int = 2,
    max_error_px: float = 2.0,
) -> TriangulatedPoints:
    """Sparse points from views whose poses are known: COLMAP features, exhaustive matching with geometric
    verification, then triangulation with the poses and intrinsics held fixed (no pose estimation).

    ``images`` (N, H, W, 3|4) uint8 seen by ``cameras`` (OpenGL camera-to-world, pinhole intrinsics in
    pixels of these images). Returns the points with track length >= 2 and reprojection error below
    ``max_error_px``; raises InvalidInput when nothing could be matched.
    """
    try:
        import pycolmap
    except ImportError:
        raise MethodUnavailable("triangulating points needs pycolmap (pip install pycolmap)") from None
    started = time.perf_counter()
    c2w_cv = opencv_to_opengl(cameras.c2w)  # the flip is its own inverse: OpenGL -> OpenCV axes
    with tempfile.TemporaryDirectory(prefix="trilemma-tri-") as tmp:
        workdir = Path(tmp)
        files = _write_frames(workdir, images)
        database = workdir / "database.db"
        extraction, matching = _colmap_options(max_size, threads)
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = "PINHOLE"
        pycolmap.extract_features(
            database,
            workdir / "images",
            image_names=files,
            camera_mode=pycolmap.CameraMode.PER_IMAGE,
            reader_options=reader,
            extraction_options=extraction,
            device=pycolmap.Device.cpu,
        )
        pycolmap.match_exhaustive(database, matching_options=matching, device=pycolmap.Device.cpu)
        # the known cameras and poses, under the ids the database gave them
        rec = pycolmap.Reconstruction()
        index_of = {name: i for i, name in enumerate(files)}
        with pycolmap.Database.open(database) as db:
            for camera in db.read_all_cameras():
                rec.add_camera(camera)
            images_db = {img.image_id: img for img in db.read_all_images()}
            for image in images_db.values():
                i = index_of[image.name]
                K = cameras.K[i]
                camera = rec.camera(image.camera_id)
                camera.params = [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]
                db.update_camera(camera)
            for rig in db.read_all_rigs():
                rec.add_rig(rig)
            for frame in db.read_all_frames():
                image = images_db[next(iter(frame.image_ids)).id]
                w2c = np.linalg.inv(c2w_cv[index_of[image.name]])
                frame.rig_from_world = pycolmap.Rigid3d(w2c[:3, :4])
                rec.add_frame(frame)
            for image in images_db.values():
                rec.add_image(image)
            for frame_id in list(rec.frames):
                rec.register_frame(frame_id)
        options = pycolmap.IncrementalPipelineOptions()
        options.num_threads = threads
        out = workdir / "sparse"
        out.mkdir()
        rec = pycolmap.triangulate_points(rec, database, workdir / "images", out, options=options)
        points = np.array(
            [p.xyz for p in rec.points3D.values() if p.error < max_error_px and p.track.length() >= 2],
            dtype=np.float64,
        ).reshape(-1, 3)
        error = float(rec.compute_mean_reprojection_error()) if len(points) else float("nan")
    if not len(points):
        raise InvalidInput("no points could be triangulated from the known poses: the views share no features")
    diagnostics = {
        "points": len(points),
        "reprojection_error_px": round(error, 3),
        "seconds": round(time.perf_counter() - started, 2),
    }
    return TriangulatedPoints(points, diagnostics)
