"""The per-scene video methods' one run side (``nerf``, ``gaussian-splatting``).

Both read the input the same way (video sampling, image sets, transforms.json / Blender scenes,
pycolmap poses), hold out the same frames (every 8th), report training the same way, render the
held-out views for the protocol, record the scene and publish the asset: :func:`run_scene` does all
of that around a :class:`SceneMethod`, which brings what differs (its fitter, its mesh, its
turntable and its part of the asset). The method never scores itself.
"""

from __future__ import annotations

import math
import tempfile
import time
import zipfile
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from methods import runtime
from methods.base import IMAGE_SUFFIXES, Asset, Inputs, InvalidInput, Mesh, Progress
from methods.nerf.cameras import Cameras, orbit_poses
from methods.nerf.io import (
    MAX_ZIP_BYTES,
    MIN_POSED_VIEWS,
    Scene,
    holdout_split,
    is_transforms_scene,
    load_transforms,
    read_image_folder,
    read_image_zip,
    stack_images,
)
from methods.nerf.train import Budget
from methods.nerf.video import check_motion, read_video

CPU_BUDGET_SECONDS = 60.0
GPU_BUDGET_SECONDS = 120.0
TURNTABLE_FRAMES = 24
TURNTABLE_SIDE = 96


@dataclass
class Unposed:
    """Frames that still need poses (structure from motion)."""

    images: np.ndarray
    names: list[str]
    sequential: bool  # video frames: neighbours overlap, so sequential matching works
    notes: list[str]
    label: str


def _posed_from_arrays(images: np.ndarray, names: list[str], poses: Any, intrinsics: Any, width0: int, height0: int):
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4) or len(poses) != len(images):
        raise InvalidInput(f"poses must be ({len(images)}, 4, 4) camera-to-world matrices, got {tuple(poses.shape)}")
    if not np.isfinite(poses).all():
        raise InvalidInput("the poses contain NaN or infinite values")
    if intrinsics is None:
        raise InvalidInput("poses were given without intrinsics (a 3x3 matrix in pixels, shared or per frame)")
    K = np.asarray(intrinsics, dtype=np.float64)
    if K.shape not in ((3, 3), (len(images), 3, 3)):
        raise InvalidInput(f"intrinsics must be (3, 3) or ({len(images)}, 3, 3), got {tuple(K.shape)}")
    if len(images) < MIN_POSED_VIEWS:
        raise InvalidInput(f"{len(images)} posed view(s) were given; at least {MIN_POSED_VIEWS} are needed")
    cams = Cameras(poses, K, width0, height0)
    h, w = images.shape[1:3]
    if (w, h) != (width0, height0):
        cams = cams.scaled(w / width0, w, h)
    train, test = holdout_split(len(images))
    return Scene(images, cams, names, train, test, "every-8th" if len(test) else "none", "frames")


def open_input(inputs: Inputs, max_frames: int, max_image_size: int) -> Scene | Unposed:
    """What the person gave, read into memory (bounded): a posed Scene, or frames that need poses."""
    if inputs.frames:
        frames = list(inputs.frames)
        if len(frames) > max_frames and inputs.poses is None:
            step = np.linspace(0, len(frames) - 1, max_frames).round().astype(int)
            frames = [frames[i] for i in np.unique(step)]
        names = [f"frame_{i:05d}" for i in range(len(frames))]
        images = stack_images(frames, names, max_image_size)
        if inputs.poses is not None:
            return _posed_from_arrays(images, names, inputs.poses, inputs.intrinsics, *frames[0].size)
        return Unposed(images, names, sequential=True, notes=[], label=f"the {len(frames)} frames")
    path = Path(inputs.video_path or "")
    if not path.exists():
        raise InvalidInput(f"no such file or folder: {path.name or inputs.video_path!r}")
    if is_transforms_scene(path):
        return load_transforms(path, max_frames=max(max_frames, 400), max_image_size=max_image_size)
    if path.is_dir():
        images, names = read_image_folder(path, max_frames, max_image_size)
        return Unposed(images, names, sequential=False, notes=[], label=f"the images in {path.name}")
    suffix = path.suffix.lower()
    if suffix == ".zip":
        scene_json = _zip_transforms(path)
        if scene_json is not None:
            with tempfile.TemporaryDirectory(prefix="trilemma-scene-") as tmp:
                with zipfile.ZipFile(path) as archive:
                    if sum(m.file_size for m in archive.infolist()) > MAX_ZIP_BYTES:
                        raise InvalidInput(f"{path.name} unpacks to more than {MAX_ZIP_BYTES >> 30} GB")
                    archive.extractall(tmp)  # zipfile drops absolute paths and '..' components
                return load_transforms(Path(tmp) / scene_json, max(max_frames, 400), max_image_size)
        images, names = read_image_zip(path, max_frames, max_image_size)
        return Unposed(images, names, sequential=False, notes=[], label=f"the images in {path.name}")
    if suffix in IMAGE_SUFFIXES:
        raise InvalidInput(
            f"{path.name} is a single image: give a video, a folder or zip of views, or use the image tab"
        )
    video = read_video(path, max_frames, max_image_size)
    notes = [f"sampled {len(video.frames)} of {video.decoded} video frames", *video.notes]
    return Unposed(video.frames, video.names, sequential=True, notes=notes, label=f"the video {path.name}")


def _zip_transforms(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if not n.startswith("__MACOSX")]
    except (zipfile.BadZipFile, OSError):
        raise InvalidInput(f"{path.name} is not a zip archive that can be read") from None
    for wanted in ("transforms_train.json", "transforms.json"):
        hits = sorted((n for n in names if Path(n).name == wanted), key=len)
        if hits:
            return hits[0]
    return None


def pose_frames(unposed: Unposed, matcher: str, seed: int) -> Generator[Progress, None, Scene]:
    """Structure from motion on frames without poses -> a Scene with an every-8th held-out split."""
    from methods.nerf.sfm import estimate_poses

    check_motion(unposed.images, unposed.label)
    yield Progress("poses", None, f"structure from motion on {len(unposed.images)} frames")
    gen = estimate_poses(unposed.images, unposed.names, matcher=matcher, sequential_input=unposed.sequential, seed=seed)
    try:
        while True:
            try:
                line = next(gen)
            except StopIteration as stop:
                result = stop.value
                break
            yield Progress("poses", None, line)
    finally:
        gen.close()  # cancelled while COLMAP works: stop it now, not when the generator is collected
    keep = result.registered
    images = unposed.images[keep]
    names = [unposed.names[i] for i in keep]
    train, test = holdout_split(len(keep))
    notes = [*unposed.notes, "poses: " + result.summary(len(unposed.images))]
    if len(keep) < len(unposed.images):
        notes.append(f"{len(unposed.images) - len(keep)} frame(s) could not be registered and were left out")
    if result.reprojection_error > 2.0:
        notes.append(f"the poses are uncertain (reprojection error {result.reprojection_error:.1f} px)")
    return Scene(
        images,
        result.cameras,
        names,
        train,
        test,
        "every-8th" if len(test) else "none",
        "sfm",
        notes=notes,
        points=result.points,
        diagnostics={"sfm": result.diagnostics},
    )


def read_scene(inputs: Inputs, settings, stages: dict[str, float]) -> Generator[Progress, None, Scene]:
    """The per-scene video methods' input side (nerf, gaussian-splatting): the frames or posed scene, and
    poses from pycolmap when none were given; the ``input`` and ``poses`` seconds go into ``stages``."""
    yield Progress("input", 0.0, "reading the input")
    with runtime.timed(stages, "input"):
        opened = open_input(inputs, int(settings.max_frames), int(settings.max_image_size))
    if not isinstance(opened, Unposed):
        return opened
    with runtime.timed(stages, "poses"):
        scene = yield from pose_frames(opened, settings.matcher, int(settings.seed))
    return scene


def fit_with_progress(
    fitter, config, detail: Callable[[], str] = lambda: ""
) -> Generator[Progress, None, tuple[int, list[tuple[float, int, float]], float]]:
    """Run a per-scene fitter (nerf's or the splats') within ``config``'s budget, a Progress per event;
    returns (steps, the training-PSNR curve as (seconds, step, dB), training seconds). ``detail`` adds to
    each line (e.g. the splat count)."""
    started = time.perf_counter()
    curve: list[tuple[float, int, float]] = []
    steps = 0
    for event in fitter.fit(Budget(config.budget_seconds, config.steps)):
        steps = event.step
        train_psnr = event.stats.get("psnr", float("nan"))
        curve.append((round(event.seconds, 2), event.step, round(train_psnr, 3)))
        yield Progress(
            "training",
            event.fraction,
            f"step {event.step}, {event.seconds:.0f} of {config.budget_seconds:.0f} s, "
            f"{detail()}training PSNR {train_psnr:.1f} dB",
            event.preview,
        )
    return steps, curve, time.perf_counter() - started


def budget_seconds(settings, device: str) -> float:
    """The training budget: the setting, or 60 s on a CPU and 120 s on a GPU."""
    return float(settings.budget_seconds or (GPU_BUDGET_SECONDS if device.startswith("cuda") else CPU_BUDGET_SECONDS))


def turntable_ring(cams: Cameras, up_axis: str, frames: int = TURNTABLE_FRAMES, side: int = TURNTABLE_SIDE):
    """A ring of ``frames`` cameras around the field's centre at the capture's median distance and elevation,
    with the capture's field of view on a ``side`` x ``side`` image: (poses (T, 4, 4) OpenGL, K (3, 3))."""
    up = np.array([0.0, 0.0, 1.0]) if up_axis == "+Z" else np.array([0.0, 1.0, 0.0])
    centres = cams.centers()
    radius = float(np.median(np.linalg.norm(centres, axis=1)))
    elevation = float(np.degrees(np.median(np.arcsin(np.clip(centres @ up / np.maximum(radius, 1e-9), -1, 1)))))
    fov = 2 * math.atan(0.5 * cams.width / cams.K[0, 0, 0])
    focal = 0.5 * side / math.tan(0.5 * fov)
    return orbit_poses(frames, radius, elevation, up=up), np.array(
        [[focal, 0, side / 2], [0, focal, side / 2], [0, 0, 1.0]]
    )


class SceneMethod:
    """What a per-scene method brings to :func:`run_scene`; the fitter it makes has ``fit``, ``render``,
    ``ground_truth``, ``eval_background``, ``cameras``, ``up_axis`` and ``close``."""

    stage_noun = "field"  # "rendering a turntable from the <noun>"

    def prepare(self, scene: Scene, settings, device: str, stages: dict[str, float]) -> Generator[Progress, None, Any]:
        """The fitter for ``scene`` (may yield progress first, e.g. while it finds starting points)."""
        raise NotImplementedError

    def config(self, fitter) -> Any:
        """The fitter's config: ``budget_seconds`` and ``steps`` bound the training."""
        return fitter.config

    def describe(self, fitter) -> str:
        """What the training line says beyond the views and the budget (e.g. the splats and their start)."""
        return ""

    def detail(self, fitter) -> str:
        """Added to each training progress line (e.g. the splat count)."""
        return ""

    def trained(self, fitter) -> str:
        """Added to the 'trained N steps' note."""
        return ""

    def mesh(self, fitter, settings, device: str, views: dict, notes: list[str]) -> Generator[Progress, None, Any]:
        """The asset's mesh (None when there is none; say why in ``notes``); yields its progress line."""
        raise NotImplementedError

    def turntable(self, fitter) -> np.ndarray:
        raise NotImplementedError

    def record(self, fitter) -> dict[str, Any]:
        """Entries of ``views["scene"]`` beyond the shared ones."""
        return {}

    def asset(self, fitter, mesh: Mesh | None, **common) -> Asset:
        return Asset(mesh=mesh, up=fitter.up_axis, **common)


def held_out_views(fitter, scene: Scene, eval_views: int, views: dict, notes: list[str]) -> Generator[Progress]:
    """Render the held-out frames (at most ``eval_views``, evenly spread) with their ground truth on the same
    background into ``views`` for the protocol to score."""
    held = scene.test
    if eval_views and len(held) > eval_views:
        held = held[np.unique(np.linspace(0, len(held) - 1, eval_views).round().astype(int))]
    preds, gts = [], []
    for k, i in enumerate(held):
        preds.append(fitter.render(int(i)))
        gts.append(fitter.ground_truth(int(i)))
        yield Progress("evaluate", (k + 1) / len(held), f"held-out view {k + 1} of {len(held)}")
    if preds:
        views["heldout_pred"] = np.stack(preds).astype(np.float32)
        views["heldout_gt"] = np.stack(gts).astype(np.float32)
        views["heldout_names"] = [scene.names[int(i)] for i in held]
    else:
        notes.append("no held-out views (fewer than 16 frames and no split file): no image metrics")


def run_scene(inputs: Inputs, settings, method: SceneMethod) -> Generator[Progress, None, Asset]:
    """input -> poses -> fit -> held-out views -> mesh -> turntable -> the asset, for a per-scene method."""
    stages: dict[str, float] = {}
    device = runtime.device()
    scene = yield from read_scene(inputs, settings, stages)
    fitter = yield from method.prepare(scene, settings, device, stages)
    try:
        scene = fitter.scene  # the fitter may have resampled the frames (e.g. to pinhole cameras)
        notes = list(scene.notes) + list(getattr(fitter, "notes", []))
        config = method.config(fitter)
        yield Progress(
            "training",
            0.0,
            f"{len(scene.train)} training / {len(scene.test)} held-out views at {scene.width}x{scene.height}, "
            f"{method.describe(fitter)}budget {config.budget_seconds:.0f} s on {device}",
        )
        steps, curve, stages["train"] = yield from fit_with_progress(fitter, config, lambda: method.detail(fitter))
        notes.append(
            f"trained {steps} steps in {stages['train']:.0f} s on {device} (budget {config.budget_seconds:.0f} s)"
            + method.trained(fitter)
        )
        views: dict[str, Any] = {
            "split": scene.split,
            "train_curve": curve,
            "background": fitter.eval_background().cpu().tolist(),
        }
        with runtime.timed(stages, "evaluate"):
            yield from held_out_views(fitter, scene, int(settings.eval_views), views, notes)
        with runtime.timed(stages, "mesh"):
            mesh = yield from method.mesh(fitter, settings, device, views, notes)
        yield Progress("turntable", None, f"rendering a turntable from the {method.stage_noun}")
        with runtime.timed(stages, "turntable"):
            views["turntable"] = method.turntable(fitter)
        views["scene"] = {
            "source": scene.source,
            "frames": len(scene.images),
            "train_views": len(scene.train),
            "heldout_views": len(scene.test),
            "image_size": [scene.width, scene.height],
            "steps": steps,
            "device": device,
            **method.record(fitter),
            **scene.diagnostics,
        }
        return method.asset(fitter, mesh, notes=notes, stage_seconds=stages, views=views)
    finally:
        fitter.close()  # also when cancelled (GeneratorExit at a yield): frees the fitter and the CUDA cache
