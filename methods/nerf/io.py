"""Multi-view inputs -> a :class:`Scene`: posed images with a train / held-out split.

Accepted (by :func:`open_source`): a video file (see :mod:`methods.nerf.video`), a folder or a
.zip of images, a NeRF Blender scene (``transforms_{train,val,test}.json``), a nerfstudio /
instant-ngp ``transforms.json`` (intrinsics, distortion, masks, split lists), or frames already
in memory with or without poses. Images without poses are posed by :mod:`methods.nerf.sfm`.

Every loader bounds what it holds in memory (``max_frames`` frames, ``max_image_size`` pixels a
side) and raises :class:`methods.base.InvalidInput` with a message a person can act on.
numpy and PIL only; no torch.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from methods.base import IMAGE_SUFFIXES, InvalidInput
from methods.nerf.cameras import Cameras, intrinsics_matrix

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")
MIN_POSED_VIEWS = 3  # with known poses: fewer cannot constrain a radiance field at all
MIN_SFM_FRAMES = 5  # structure from motion needs an initial pair plus views to grow from
HOLDOUT_EVERY = 8  # held-out frames when the input has no split (the LLFF / mip-NeRF 360 convention)
MAX_ZIP_BYTES = 2 << 30


@dataclass
class Scene:
    """Posed images: ``images[i]`` was seen by camera ``cameras.c2w[i]``; ``train`` / ``test`` index them."""

    images: np.ndarray  # (N, H, W, 3 or 4) uint8; the 4th channel is alpha (a mask)
    cameras: Cameras
    names: list[str]
    train: np.ndarray
    test: np.ndarray
    split: str  # where the split came from: "file:<name>" or "every-8th" or "none"
    source: str  # blender | transforms.json | sfm | frames
    notes: list[str] = field(default_factory=list)
    points: np.ndarray | None = None  # (P, 3) sparse points (structure from motion), world frame
    points_source: str = "sfm"  # sfm: estimated with the poses; triangulation: from the known poses
    bounds: np.ndarray | None = None  # (2, 3) known region of interest, world frame
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @property
    def has_alpha(self) -> bool:
        return self.images.shape[-1] == 4

    @property
    def height(self) -> int:
        return self.images.shape[1]

    @property
    def width(self) -> int:
        return self.images.shape[2]


def holdout_split(n: int, every: int = HOLDOUT_EVERY) -> tuple[np.ndarray, np.ndarray]:
    """Every ``every``-th frame held out (0, 8, 16, ...) when there are enough frames, else none."""
    idx = np.arange(n)
    if n < 2 * every:
        return idx, idx[:0]
    test = idx % every == 0
    return idx[~test], idx[test]


# ----------------------------------------------------------------------------- images


def _fit_size(width: int, height: int, max_size: int) -> tuple[int, int]:
    if max_size <= 0 or max(width, height) <= max_size:
        return width, height
    s = max_size / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def decode_image(data: bytes, name: str) -> Image.Image:
    if not data:
        raise InvalidInput(f"the image {name} is empty (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception:
        raise InvalidInput(f"{name} is not an image that can be read (PNG, JPEG, WebP, ...)") from None
    return img


def _to_array(img: Image.Image) -> np.ndarray:
    """RGB, or RGBA when the image has a real alpha channel (not all opaque)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"))
        return rgba if rgba[..., 3].min() < 255 else np.ascontiguousarray(rgba[..., :3])
    return np.asarray(img.convert("RGB"))


class SizeCheck:
    """Collects image sizes; :meth:`raise_if_mixed` names the groups when there is more than one."""

    def __init__(self) -> None:
        self.sizes: dict[tuple[int, int], list[str]] = {}

    def add(self, size: tuple[int, int], name: str) -> bool:
        """Record one image; False once the images no longer share one size."""
        self.sizes.setdefault(tuple(size), []).append(name)
        return len(self.sizes) == 1

    def raise_if_mixed(self) -> None:
        if len(self.sizes) > 1:
            parts = "; ".join(f"{w}x{h}: {len(v)} image(s), e.g. {v[0]}" for (w, h), v in self.sizes.items())
            raise InvalidInput(
                f"the images have different sizes ({parts}); use images from one camera at one resolution"
            )


def fit_image(img: Image.Image, max_size: int) -> Image.Image:
    """The image scaled down (never up) so that its longer side is at most ``max_size`` (0: unchanged)."""
    target = _fit_size(img.width, img.height, max_size)
    return img if target == img.size else img.resize(target, Image.Resampling.LANCZOS)


def stack_images(
    images: Iterable[Image.Image | Callable[[], Image.Image]], names: Sequence[str], max_size: int = 0
) -> np.ndarray:
    """(N, H, W, 3|4) uint8 from images of one size, resized to ``max_size`` a side; mixed sizes are an error.

    ``images`` may hold loaders (callables): each image is decoded, resized and converted before
    the next is opened, so memory holds one full-size image at a time.
    """
    check, arrays = SizeCheck(), []
    for item, name in zip(images, names, strict=True):
        img = item() if callable(item) else item
        if check.add(img.size, name):  # past a size mismatch only the sizes are collected, for the message
            arrays.append(_to_array(fit_image(img, max_size)))
        del img
    check.raise_if_mixed()
    if not arrays:
        raise InvalidInput("no images were given")
    channels = 4 if any(a.shape[-1] == 4 for a in arrays) else 3
    out = np.empty((len(arrays), *arrays[0].shape[:2], channels), dtype=np.uint8)
    for i, a in enumerate(arrays):
        out[i, ..., : a.shape[-1]] = a
        if a.shape[-1] < channels:
            out[i, ..., 3] = 255
    return out


def evenly(n: int, k: int) -> np.ndarray:
    """``k`` indices spread evenly over ``range(n)`` (all of them when n <= k)."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, k)).astype(int))


def read_image_folder(path: str | Path, max_frames: int, max_size: int = 0) -> tuple[np.ndarray, list[str]]:
    """The images of a folder (sorted by name, sampled evenly down to ``max_frames``)."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InvalidInput(f"the folder {path.name} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    files = [files[i] for i in evenly(len(files), max_frames)]
    loaders = [lambda p=p: decode_image(p.read_bytes(), p.name) for p in files]
    names = [p.name for p in files]
    return stack_images(loaders, names, max_size), names


def read_image_zip(path: str | Path, max_frames: int, max_size: int = 0) -> tuple[np.ndarray, list[str]]:
    """The images inside a .zip (any folder depth, sorted by path; hidden files and __MACOSX skipped)."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise InvalidInput(f"{path.name} is not a zip archive that can be read") from None
    with archive:
        members = sorted(
            (
                m
                for m in archive.infolist()
                if not m.is_dir()
                and Path(m.filename).suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith((".", "__MACOSX")) for part in Path(m.filename).parts)
            ),
            key=lambda m: m.filename,
        )
        if not members:
            raise InvalidInput(f"{path.name} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        members = [members[i] for i in evenly(len(members), max_frames)]
        if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
            raise InvalidInput(f"{path.name} unpacks to more than {MAX_ZIP_BYTES >> 30} GB of images")
        names = [Path(m.filename).name for m in members]
        loaders = [lambda m=m: decode_image(archive.read(m), m.filename) for m in members]
        return stack_images(loaders, names, max_size), names


# ----------------------------------------------------------------------------- transforms.json


def _resolve_frame_path(base: Path, file_path: str) -> Path | None:
    p = (base / file_path).resolve() if not Path(file_path).is_absolute() else Path(file_path)
    if p.is_file():
        return p
    if not p.suffix or p.suffix.lower() not in IMAGE_SUFFIXES:  # Blender's file_path has no extension
        for suffix in (".png", ".jpg", ".jpeg", ".PNG", ".JPG"):
            q = p.with_name(p.name + suffix)
            if q.is_file():
                return q
    return None


def _intrinsics(meta: dict, frame: dict, width: int, height: int) -> tuple[np.ndarray, np.ndarray, str]:
    """K (scaled to the image's actual size), distortion (6,) and camera model of one frame."""

    def get(key: str, default: Any = None) -> Any:
        return frame.get(key, meta.get(key, default))

    declared_w, declared_h = get("w"), get("h")
    sx = width / float(declared_w) if declared_w else 1.0
    sy = height / float(declared_h) if declared_h else 1.0
    if declared_w and not declared_h:
        sy = sx
    fx, fy = get("fl_x"), get("fl_y")
    if fx is None and get("camera_angle_x") is not None:
        fx = 0.5 * (declared_w or width) / math.tan(0.5 * float(get("camera_angle_x")))
    if fy is None and get("camera_angle_y") is not None:
        fy = 0.5 * (declared_h or height) / math.tan(0.5 * float(get("camera_angle_y")))
    if fx is None and fy is None:
        raise InvalidInput("the transforms file gives no focal length (fl_x / fl_y or camera_angle_x)")
    fx = float(fx if fx is not None else fy)
    fy = float(fy if fy is not None else fx)
    cx = float(get("cx", (declared_w or width) / 2.0))
    cy = float(get("cy", (declared_h or height) / 2.0))
    K = intrinsics_matrix(fx * sx, fy * sy, cx * sx, cy * sy)
    model_name = str(get("camera_model", "OPENCV")).upper()
    if model_name in ("OPENCV_FISHEYE", "FISHEYE"):
        dist = np.array([get("k1", 0.0), get("k2", 0.0), get("k3", 0.0), get("k4", 0.0), 0.0, 0.0], float)
        return K, dist, "fisheye"
    if model_name not in ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        raise InvalidInput(f"camera_model {model_name} is not supported (OPENCV, PINHOLE or OPENCV_FISHEYE)")
    dist = np.array([get("k1", 0.0), get("k2", 0.0), get("p1", 0.0), get("p2", 0.0), get("k3", 0.0), 0.0], float)
    return K, dist, "opencv"


def _read_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{path.name} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise InvalidInput(f"{path.name} has no 'frames' list (expected the NeRF / nerfstudio transforms format)")
    if not meta["frames"]:
        raise InvalidInput(f"{path.name} lists no frames")
    return meta


def transforms_files(path: str | Path) -> dict[str, Path]:
    """The transforms JSON file(s) of a scene: {"train", "val", "test"} (Blender) or {"all"}."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    splits = {s: folder / f"transforms_{s}.json" for s in ("train", "val", "test")}
    if path.is_dir() or path.name.startswith("transforms_"):
        found = {s: p for s, p in splits.items() if p.is_file()}
        if "train" in found:
            return found
    if path.is_file():
        return {"all": path}
    if (folder / "transforms.json").is_file():
        return {"all": folder / "transforms.json"}
    raise InvalidInput(f"{path} holds no transforms.json or transforms_train.json")


def is_transforms_scene(path: str | Path) -> bool:
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() == ".json"
    return path.is_dir() and ((path / "transforms.json").is_file() or (path / "transforms_train.json").is_file())


def load_transforms(path: str | Path, max_frames: int = 1000, max_image_size: int = 0) -> Scene:
    """A NeRF Blender scene or a nerfstudio / instant-ngp transforms.json, with its split.

    Blender: train on ``transforms_train.json``, hold out ``transforms_test.json`` (or val when
    there is no test). transforms.json: ``train_filenames`` / ``test_filenames`` when present,
    else every 8th frame held out. ``mask_path`` entries become the alpha channel.
    """
    files = transforms_files(path)
    entries: list[tuple[str, dict, dict, Path]] = []  # split, frame, meta, folder
    for split, file in files.items():
        if split == "val" and "test" in files:
            continue
        meta = _read_json(file)
        for frame in meta["frames"]:
            if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
                raise InvalidInput(f"{file.name}: every frame needs a file_path and a transform_matrix")
            entries.append((split, frame, meta, file.parent))
    missing = [e[1]["file_path"] for e in entries if _resolve_frame_path(e[3], e[1]["file_path"]) is None]
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise InvalidInput(
            f"{len(missing)} of {len(entries)} frames listed in the transforms file are missing ({shown}); "
            "copy the images next to the JSON file or fix their file_path"
        )
    # split before subsampling so that a long training list does not crowd out the held-out views
    first_meta = entries[0][2]
    names_all = [Path(e[1]["file_path"]).name for e in entries]
    if "all" in files:
        wanted = {k: set(map(lambda s: Path(s).name, first_meta.get(f"{k}_filenames", []))) for k in ("train", "test")}
        if wanted["test"]:
            is_test = np.array([Path(n).name in wanted["test"] for n in names_all])
            split = f"file:{files['all'].name} test_filenames"
        else:
            is_test = np.zeros(len(entries), bool)
            is_test[holdout_split(len(entries))[1]] = True
            split = "every-8th" if is_test.any() else "none"
    else:
        is_test = np.array([e[0] != "train" for e in entries])
        held = "test" if "test" in files else "val"
        split = f"file:transforms_{held}.json" if is_test.any() else "none"
    keep_train = np.flatnonzero(~is_test)[evenly(int((~is_test).sum()), max_frames)]
    keep_test = np.flatnonzero(is_test)[evenly(int(is_test.sum()), max_frames)]
    keep = np.concatenate([keep_train, keep_test])
    notes = []
    if len(keep) < len(entries):
        notes.append(f"used {len(keep)} of {len(entries)} frames ({max_frames} at most per split)")

    images, names, c2w, Ks, dists, models = [], [], [], [], [], set()
    sizes = SizeCheck()
    for i in keep:
        _, frame, meta, folder = entries[i]
        file = _resolve_frame_path(folder, frame["file_path"])
        img = decode_image(file.read_bytes(), file.name)
        if frame.get("mask_path") or meta.get("mask_path"):
            mask_file = _resolve_frame_path(folder, frame.get("mask_path") or meta.get("mask_path"))
            if mask_file is None:
                raise InvalidInput(f"the mask of {file.name} ({frame.get('mask_path')}) is missing")
            mask = decode_image(mask_file.read_bytes(), mask_file.name).convert("L").resize(img.size)
            img = img.convert("RGB")
            img.putalpha(mask)
        pose = np.asarray(frame["transform_matrix"], dtype=np.float64)
        if pose.shape == (3, 4):
            pose = np.concatenate([pose, [[0, 0, 0, 1]]])
        if pose.shape != (4, 4) or not np.isfinite(pose).all():
            raise InvalidInput(f"{file.name}: transform_matrix must be a finite 4x4 matrix")
        K, dist, model = _intrinsics(meta, frame, *img.size)
        if sizes.add(img.size, file.name):  # keep the pixels downscaled: one full-size image in memory at a time
            images.append(fit_image(img, max_image_size))
        names.append(file.name)
        c2w.append(pose)
        Ks.append(K)
        dists.append(dist)
        models.add(model)
    if len(keep_train) < MIN_POSED_VIEWS:
        raise InvalidInput(f"the scene has {len(keep_train)} training view(s); at least {MIN_POSED_VIEWS} are needed")
    if len(models) > 1:
        raise InvalidInput("the frames mix fisheye and perspective camera models")
    sizes.raise_if_mixed()
    w0, h0 = next(iter(sizes.sizes))
    stacked = stack_images(images, names, 0)
    h, w = stacked.shape[1:3]
    cams = Cameras(np.stack(c2w), np.stack(Ks), w0, h0, models.pop(), np.stack(dists))
    if (w, h) != (w0, h0):
        cams = cams.scaled(w / w0, w, h)
    n_train = len(keep_train)
    source = "blender" if "all" not in files else "transforms.json"
    bounds = None
    if source == "blender":  # the NeRF synthetic scenes live in [-1.5, 1.5]^3 (NeRF's and instant-ngp's box)
        bounds = np.array([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]])
    return Scene(
        images=stacked,
        cameras=cams,
        names=names,
        train=np.arange(n_train),
        test=np.arange(n_train, len(keep)),
        split=split,
        source=source,
        notes=notes,
        bounds=bounds,
    )
