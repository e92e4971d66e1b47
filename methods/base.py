"""The method contract: what every 3D generation method declares, takes and returns.

Nothing here imports torch: listing methods, building the UI and validating settings stay light.
A method's heavy code (torch, diffusers, ...) is imported inside ``run`` on first use.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import typing
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from PIL import Image

Modality = Literal["text", "image", "video"]
MODALITIES: tuple[str, ...] = ("text", "image", "video")
MAX_PROMPT_CHARS = 2000
# ANSI escape sequences (CSI, OSC), then any other control or bidirectional-override character
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def strip_controls(text: str) -> str:
    """``text`` without terminal escapes, NUL and other control characters (tabs and newlines stay)."""
    return _CONTROLS.sub("", _ANSI.sub("", text))


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class MethodError(Exception):
    """Base of every error a method or the registry raises on purpose; its message is for people."""


class InvalidInput(MethodError, ValueError):
    """The prompt, image or video cannot be used (empty, unreadable, wrong kind)."""


class InvalidSettings(MethodError, ValueError):
    """A setting is unknown, of the wrong type or outside its range."""


class UnknownMethod(MethodError, KeyError):
    """No method is registered under that id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown method"


class MethodUnavailable(MethodError, RuntimeError):
    """The method cannot run here: a package, a GPU or its weights are missing."""


class CheckpointError(MethodError, OSError):
    """The checkpoint (hub repo id or local directory) cannot be found or loaded."""


# ----------------------------------------------------------------------------- settings


def setting(
    default: Any,
    *,
    label: str = "",
    help: str = "",
    min: float | None = None,
    max: float | None = None,
    step: float | None = None,
    choices: tuple[Any, ...] | None = None,
    advanced: bool = False,
) -> Any:
    """A Settings field whose metadata (range, step, choices, help) drives validation and the UI."""
    meta = {
        "label": label,
        "help": help,
        "min": min,
        "max": max,
        "step": step,
        "choices": choices,
        "advanced": advanced,
    }
    return field(default=default, metadata=meta)


def precision_setting() -> Any:
    """The ``precision`` field every weight-loading method's Settings declares (methods.runtime.dtype reads it)."""
    from methods.runtime import PRECISIONS

    return setting(
        "auto",
        label="Precision",
        help="Compute dtype of the networks: auto is bfloat16 on a CPU with AMX or AVX512-BF16, float16 on a GPU, "
        "float32 elsewhere (TRILEMMA_PRECISION changes what auto means); samplers and grids stay float32.",
        choices=PRECISIONS,
        advanced=True,
    )


@dataclass(kw_only=True)
class Settings:
    """Base of every method's settings. Subclasses add fields made with :func:`setting`."""

    seed: int = setting(
        0, label="Seed", help="Random seed; the same seed gives the same asset.", min=0, max=2**31 - 1, step=1
    )

    @classmethod
    def fields(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls))

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """One dict per field: name, type, default and metadata; the UI builds its controls from it."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in cls.fields():
            kind = hints[f.name]
            out.append(
                {
                    "name": f.name,
                    "type": _type_name(kind),
                    "default": f.default,
                    **{k: v for k, v in f.metadata.items()},
                    "label": f.metadata.get("label") or f.name.replace("_", " ").capitalize(),
                }
            )
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any], base: Settings | None = None) -> Settings:
        """Settings from a dict (strings allowed, as from the CLI), validated; unknown keys are an error."""
        names = {f.name for f in cls.fields()}
        unknown = sorted(set(values) - names)
        if unknown:
            raise InvalidSettings(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        hints = typing.get_type_hints(cls)
        current = dataclasses.asdict(base) if base is not None else {}
        for key, raw in values.items():
            current[key] = _coerce(key, raw, hints[key])
        settings = cls(**current)
        settings.validate()
        return settings

    def replace(self, **changes: Any) -> Settings:
        return type(self).from_dict(changes, base=self)

    def validate(self) -> None:
        """Raise InvalidSettings naming the field when a value is outside its declared range or choices."""
        hints = typing.get_type_hints(type(self))
        for f in self.fields():
            value = getattr(self, f.name)
            kind = _type_name(hints[f.name])
            meta = f.metadata
            if kind in ("int", "float"):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise InvalidSettings(f"{f.name} must be a number, got {value!r}")
                if kind == "int" and int(value) != value:
                    raise InvalidSettings(f"{f.name} must be a whole number, got {value!r}")
                if not np.isfinite(value):
                    raise InvalidSettings(f"{f.name} must be finite, got {value!r}")
                lo, hi = meta.get("min"), meta.get("max")
                if lo is not None and value < lo:
                    raise InvalidSettings(f"{f.name}={value} is below its minimum {lo}")
                if hi is not None and value > hi:
                    raise InvalidSettings(f"{f.name}={value} is above its maximum {hi}")
            choices = meta.get("choices")
            if choices is not None and value not in choices:
                raise InvalidSettings(f"{f.name}={value!r} is not one of {', '.join(map(str, choices))}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _type_name(kind: Any) -> str:
    if kind in (int, float, str, bool):
        return kind.__name__
    return "str"


def _coerce(name: str, raw: Any, kind: Any) -> Any:
    kind_name = _type_name(kind)
    try:
        if kind_name == "bool":
            if isinstance(raw, str):
                lowered = raw.strip().lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError(raw)
            return bool(raw)
        if kind_name == "int":
            if isinstance(raw, float) and raw.is_integer():
                return int(raw)
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw) if isinstance(raw, str) else raw
        if kind_name == "float":
            return float(raw) if isinstance(raw, (str, int)) and not isinstance(raw, bool) else raw
        return str(raw) if raw is not None else raw
    except (TypeError, ValueError):
        raise InvalidSettings(f"{name} must be of type {kind_name}, got {raw!r}") from None


# ----------------------------------------------------------------------------- inputs


@dataclass
class Inputs:
    """What a person gives a method: a text prompt, an RGBA image, or several views / a video."""

    modality: Modality
    prompt: str | None = None
    image: Image.Image | None = None
    frames: list[Image.Image] | None = None
    poses: np.ndarray | None = None  # (N, 4, 4) camera-to-world, OpenGL convention (+Y up, -Z forward)
    intrinsics: np.ndarray | None = None  # (3, 3) shared or (N, 3, 3) per frame, in pixels
    video_path: str | None = None
    name: str = ""  # a short label for the input (file name), for records and the UI

    @classmethod
    def text(cls, prompt: str) -> Inputs:
        return cls(modality="text", prompt=prompt).validated()

    @classmethod
    def from_image(cls, image: Image.Image | str, name: str = "") -> Inputs:
        return cls(modality="image", image=load_image(image), name=name or _name_of(image)).validated()

    def validated(self) -> Inputs:
        """Check the inputs of the modality; raise InvalidInput with a message a person can act on."""
        if self.modality not in MODALITIES:
            raise InvalidInput(f"unknown modality {self.modality!r}; expected one of {', '.join(MODALITIES)}")
        if self.modality == "text":
            if isinstance(self.prompt, str):
                self.prompt = strip_controls(self.prompt)  # stored as the method sees it
            if self.prompt is None or not self.prompt.strip():
                raise InvalidInput("the prompt is empty: describe the object to generate")
            if len(self.prompt) > MAX_PROMPT_CHARS:
                raise InvalidInput(f"the prompt has {len(self.prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
            self.prompt = " ".join(self.prompt.split())
        elif self.modality == "image":
            if self.image is None:
                raise InvalidInput("no image was given")
        elif self.modality == "video" and not self.frames and not self.video_path:
            raise InvalidInput("no video or frames were given")
        return self

    def hash(self) -> str:
        """A stable digest of the content (not the file names): same input, same hash."""
        h = hashlib.sha256(self.modality.encode())
        if self.prompt is not None:
            h.update(b"prompt:" + self.prompt.encode())
        for img in ([self.image] if self.image is not None else []) + list(self.frames or []):
            h.update(b"image:" + str(img.size).encode() + img.mode.encode() + img.tobytes())
        if self.poses is not None:
            h.update(b"poses:" + np.ascontiguousarray(self.poses, dtype=np.float64).tobytes())
        if self.intrinsics is not None:
            h.update(b"K:" + np.ascontiguousarray(self.intrinsics, dtype=np.float64).tobytes())
        if self.video_path and not self.frames:
            _hash_path(h, Path(self.video_path))
        return h.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary for run records."""
        out: dict[str, Any] = {"modality": self.modality, "hash": self.hash()}
        if self.prompt is not None:
            out["prompt"] = self.prompt
        if self.image is not None:
            out["image"] = {"name": self.name, "size": list(self.image.size), "mode": self.image.mode}
        if self.frames:
            out["frames"] = len(self.frames)
        if self.video_path:
            out["video"] = self.name or self.video_path
        return out


def _hash_path(h: Any, path: Path) -> None:
    """Content of a video file, a zip, or a folder (a transforms.json stands for its whole folder)."""
    if path.is_file() and path.suffix.lower() == ".json":
        path = path.parent
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            h.update(b"file:" + file.relative_to(path).as_posix().encode())
        with open(file, "rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(chunk)


def _name_of(image: Any) -> str:
    return str(image).rsplit("/", 1)[-1] if isinstance(image, str) else ""


def load_image(source: Image.Image | str | bytes) -> Image.Image:
    """Open an image file (or bytes) as RGBA; a clear InvalidInput for empty or non-image files."""
    if isinstance(source, Image.Image):
        img = source
    else:
        try:
            if isinstance(source, bytes):
                if not source:
                    raise InvalidInput("the uploaded file is empty (0 bytes)")
                img = Image.open(io.BytesIO(source))
            else:
                with open(source, "rb") as fh:
                    data = fh.read()
                if not data:
                    raise InvalidInput(f"the file {_name_of(source) or source} is empty (0 bytes)")
                img = Image.open(io.BytesIO(data))
            img.load()
        except InvalidInput:
            raise
        except FileNotFoundError:
            raise InvalidInput(f"no such file: {source}") from None
        except Exception:
            name = _name_of(source) if isinstance(source, str) else "the upload"
            raise InvalidInput(f"{name} is not an image that can be read (PNG, JPEG, WebP, ...)") from None
    if img.width < 8 or img.height < 8:
        raise InvalidInput(f"the image is {img.width}x{img.height} pixels; at least 8x8 is needed")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey: scale to 8 bits rather than clip everything above 255 to white
        arr = np.asarray(img, dtype=np.float64)
        arr = (arr / max(arr.max(), 1.0) * 255.0).round().astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    return img.convert("RGBA")


# ----------------------------------------------------------------------------- outputs


@dataclass
class Progress:
    """One step of a running method: the stage, how far it is (0..1 or None) and a line for people."""

    stage: str
    fraction: float | None = None
    message: str = ""
    preview: np.ndarray | None = None  # optional HxWx3 uint8 preview render


@dataclass
class Mesh:
    """A triangle mesh with vertex colours or a UV texture. Colours are float32 RGB in [0, 1]."""

    vertices: np.ndarray  # (V, 3) float32
    faces: np.ndarray  # (F, 3) int64
    vertex_colors: np.ndarray | None = None  # (V, 3) float32 in [0, 1]
    uv: np.ndarray | None = None  # (V, 2) float32
    texture: Image.Image | None = None

    def __post_init__(self) -> None:
        self.vertices = np.asarray(self.vertices, dtype=np.float32).reshape(-1, 3)
        self.faces = np.asarray(self.faces, dtype=np.int64).reshape(-1, 3)
        if self.vertex_colors is not None:
            self.vertex_colors = _colors01(self.vertex_colors, len(self.vertices))
        if self.faces.size and (self.faces.min() < 0 or self.faces.max() >= len(self.vertices)):
            raise ValueError("mesh faces index vertices that do not exist")


@dataclass
class PointCloud:
    """A coloured point cloud. Colours are float32 RGB in [0, 1]."""

    points: np.ndarray  # (N, 3) float32
    colors: np.ndarray | None = None  # (N, 3) float32 in [0, 1]

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=np.float32).reshape(-1, 3)
        if self.colors is not None:
            self.colors = _colors01(self.colors, len(self.points))


@dataclass
class Gaussians:
    """3D Gaussian splats (Kerbl et al. 2023) in the stored (pre-activation) parameterisation.

    Opacity is ``sigmoid(opacity_logits)``, scale ``exp(log_scales)``, orientation the unit
    quaternion (w, x, y, z); colour is SH coefficients (N, K, 3), K = (degree + 1)^2, in the
    3DGS convention (colour = 0.5 + SH . basis(view direction), clipped at 0).
    """

    means: np.ndarray  # (N, 3) float32
    log_scales: np.ndarray  # (N, 3) float32
    quats: np.ndarray  # (N, 4) float32, unit, (w, x, y, z)
    opacity_logits: np.ndarray  # (N,) float32
    sh: np.ndarray  # (N, K, 3) float32

    def __post_init__(self) -> None:
        from methods.splats.sh import sh_degree_of

        self.means = np.asarray(self.means, dtype=np.float32).reshape(-1, 3)
        n = len(self.means)
        self.log_scales = np.asarray(self.log_scales, dtype=np.float32).reshape(n, 3)
        q = np.asarray(self.quats, dtype=np.float32).reshape(n, 4)
        norm = np.linalg.norm(q, axis=1, keepdims=True)
        if n and not (norm > 0).all():
            raise ValueError("a Gaussian has a zero quaternion")
        # already-unit quaternions stay bit-exact (a file round trip must not drift by an ulp)
        self.quats = np.where(np.abs(norm - 1) > 1e-6, q / np.maximum(norm, 1e-12), q).astype(np.float32)
        self.opacity_logits = np.asarray(self.opacity_logits, dtype=np.float32).reshape(n)
        sh = np.asarray(self.sh, dtype=np.float32)
        if sh.ndim != 3 or sh.shape[0] != n or sh.shape[2] != 3:
            raise ValueError(f"SH coefficients must be (N, K, 3) for N={n}, got {sh.shape}")
        sh_degree_of(sh.shape[1])
        self.sh = sh
        for name in ("means", "log_scales", "quats", "opacity_logits", "sh"):
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"the Gaussians' {name} contain NaN or infinite values")

    def __len__(self) -> int:
        return len(self.means)

    @property
    def sh_degree(self) -> int:
        from methods.splats.sh import sh_degree_of

        return sh_degree_of(self.sh.shape[1])

    @property
    def opacities(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.opacity_logits.astype(np.float64)))

    def base_colors(self) -> np.ndarray:
        """(N, 3) view-independent colour (the degree-0 term) in [0, 1]."""
        from methods.splats.sh import sh0_to_rgb

        return np.clip(sh0_to_rgb(self.sh[:, 0].astype(np.float64)), 0.0, 1.0).astype(np.float32)

    def subset(self, keep: np.ndarray) -> Gaussians:
        return Gaussians(
            self.means[keep], self.log_scales[keep], self.quats[keep], self.opacity_logits[keep], self.sh[keep]
        )


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotation matrices of unit quaternions (N, 4) in (w, x, y, z) order."""
    w, x, y, z = (np.asarray(q, dtype=np.float64)[:, i] for i in range(4))
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """The unit quaternion (w, x, y, z), w >= 0, of one rotation matrix (3, 3)."""
    m = np.asarray(m, dtype=np.float64)
    # the eigenvector of the symmetric 4x4 (Bar-Itzhack) is robust for every rotation
    k = (
        np.array(
            [
                [m[0, 0] - m[1, 1] - m[2, 2], m[1, 0] + m[0, 1], m[2, 0] + m[0, 2], m[2, 1] - m[1, 2]],
                [m[1, 0] + m[0, 1], m[1, 1] - m[0, 0] - m[2, 2], m[2, 1] + m[1, 2], m[0, 2] - m[2, 0]],
                [m[2, 0] + m[0, 2], m[2, 1] + m[1, 2], m[2, 2] - m[0, 0] - m[1, 1], m[1, 0] - m[0, 1]],
                [m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1], m[0, 0] + m[1, 1] + m[2, 2]],
            ]
        )
        / 3.0
    )
    vals, vecs = np.linalg.eigh(k)
    x, y, z, w = vecs[:, np.argmax(vals)]
    q = np.array([w, x, y, z])
    return q if w >= 0 else -q


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton products a * b of quaternions (..., 4) in (w, x, y, z) order."""
    aw, ax, ay, az = (a[..., i] for i in range(4))
    bw, bx, by, bz = (b[..., i] for i in range(4))
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        -1,
    )


def _colors01(colors: Any, n: int) -> np.ndarray:
    c = np.asarray(colors)
    if c.dtype == np.uint8:
        c = c.astype(np.float32) / 255.0
    c = np.asarray(c, dtype=np.float32)[:, :3].reshape(-1, 3)
    if len(c) != n:
        raise ValueError(f"{len(c)} colours for {n} vertices")
    return np.clip(c, 0.0, 1.0)


UP_AXES = ("+Y", "+Z")


@dataclass
class Asset:
    """What a method returns: a mesh, a point cloud or both (and/or Gaussian splats), in the method's own frame.

    ``up`` says which axis is up in that frame; :func:`normalize` maps the asset to the
    canonical frame (centred, unit bounding sphere, +Y up) as an explicit, recorded step.
    """

    mesh: Mesh | None = None
    points: PointCloud | None = None
    up: str = "+Y"
    gaussians: Gaussians | None = None  # splats; a splat asset may also carry a mesh and/or points
    notes: list[str] = field(default_factory=list)  # warnings for people, e.g. "prompt truncated"
    stage_seconds: dict[str, float] = field(default_factory=dict)
    normalization: dict[str, Any] | None = None  # set by normalize(): centre, scale, rotation
    # Material the method hands to the protocol for scoring, never scores: e.g. held-out renders
    # and their ground truth, {"heldout_pred": (N,H,W,3) float [0,1], "heldout_gt": ..., "split": "test"}.
    views: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mesh is None and self.points is None and self.gaussians is None:
            raise ValueError("an asset needs a mesh or a point cloud (or Gaussians)")
        if self.up not in UP_AXES:
            raise ValueError(f"up must be one of {UP_AXES}")

    @property
    def kind(self) -> str:
        if self.mesh is not None:
            return "mesh"
        return "points" if self.points is not None else "gaussians"

    def all_points(self) -> np.ndarray:
        parts = [self.mesh.vertices] if self.mesh is not None else []
        if self.points is not None:
            parts.append(self.points.points)
        if self.gaussians is not None:
            parts.append(self.gaussians.means)
        return np.concatenate(parts, axis=0)


_Z_UP_TO_Y_UP = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float64)  # rotate -90 deg about X


def normalize(asset: Asset) -> Asset:
    """Centre on the bounding-box centre, scale to the unit bounding sphere, rotate to +Y up.

    Returns a new Asset whose ``normalization`` records the transform (x' = R (x - centre) * scale).
    """
    pts = asset.all_points().astype(np.float64)
    if len(pts) == 0:
        raise ValueError("cannot normalise an empty asset")
    rot = _Z_UP_TO_Y_UP if asset.up == "+Z" else np.eye(3)
    centre = (pts.min(0) + pts.max(0)) / 2.0
    radius = float(np.linalg.norm(pts - centre, axis=1).max())
    scale = 1.0 / radius if radius > 0 else 1.0

    def tf(v: np.ndarray) -> np.ndarray:
        return (((v.astype(np.float64) - centre) * scale) @ rot.T).astype(np.float32)

    mesh = dataclasses.replace(asset.mesh, vertices=tf(asset.mesh.vertices)) if asset.mesh is not None else None
    points = dataclasses.replace(asset.points, points=tf(asset.points.points)) if asset.points is not None else None
    gaussians = _transform_gaussians(asset.gaussians, tf, scale, rot) if asset.gaussians is not None else None
    record = {"centre": centre.tolist(), "scale": scale, "rotation": rot.tolist(), "from_up": asset.up, "up": "+Y"}
    return dataclasses.replace(asset, mesh=mesh, points=points, gaussians=gaussians, up="+Y", normalization=record)


def _transform_gaussians(g: Gaussians, tf: Any, scale: float, rot: np.ndarray) -> Gaussians:
    """Positions and sizes move with the similarity; orientations and view-dependent colour turn with it."""
    from methods.splats.sh import rotate_sh

    q_rot = matrix_to_quat(rot)
    return Gaussians(
        tf(g.means),
        g.log_scales + np.float32(np.log(scale)),
        quat_multiply(np.broadcast_to(q_rot, g.quats.shape), g.quats.astype(np.float64)),
        g.opacity_logits,
        rotate_sh(g.sh, rot) if g.sh.shape[1] > 1 and not np.allclose(rot, np.eye(3)) else g.sh,
    )


# ----------------------------------------------------------------------------- the method


RunGenerator = Generator[Progress, None, Asset]


class Method:
    """A 3D generation method. Subclasses set the class attributes and implement :meth:`run`.

    Class attributes are data (shown on the Methods tab, used for availability and cost estimates).
    ``run`` is a generator: it yields Progress and returns the Asset (``return asset``).
    """

    id: ClassVar[str]
    label: ClassVar[str]
    modalities: ClassVar[tuple[str, ...]]
    family: ClassVar[str]
    representation: ClassVar[str]
    output: ClassVar[str] = "mesh"  # mesh | points | mesh+points
    paper: ClassVar[str] = ""
    paper_url: ClassVar[str] = ""
    licence: ClassVar[str] = ""
    weights: ClassVar[tuple[str, ...]] = ()  # hub repo ids / URLs of the official weights
    weights_gb: ClassVar[float] = 0.0
    requires: ClassVar[tuple[str, ...]] = ()  # importable module names
    needs_gpu: ClassVar[bool] = False
    seconds_gpu: ClassVar[float] = 0.0  # expected seconds for the default settings
    seconds_cpu: ClassVar[float] = 0.0
    vram_gb: ClassVar[float] = 0.0
    version: ClassVar[str] = "1"
    # Slow methods (minutes to hours): the app shows a finished run with the same input, settings
    # and seed instead of running again, and offers "run again" only where a GPU is present.
    cache_results: ClassVar[bool] = False
    Settings: ClassVar[type[Settings]] = Settings

    def default_settings(self, modality: str) -> Settings:
        """Defaults may differ by modality (e.g. guidance 15 for text, 3 for an image)."""
        return self.Settings()

    def checkpoints(self, settings: Settings) -> list[str]:
        """The checkpoints (repo ids or directories) this run would load; used for availability."""
        ckpt = getattr(settings, "checkpoint", None)
        return [ckpt] if ckpt else []

    def estimate_seconds(self, settings: Settings, gpu: bool) -> float:
        return self.seconds_gpu if gpu else self.seconds_cpu

    def run(self, inputs: Inputs, settings: Settings) -> RunGenerator:
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """The method's declared data as a JSON-able dict."""
        keys = (
            "id label modalities family representation output paper paper_url licence weights weights_gb "
            "needs_gpu seconds_gpu seconds_cpu vram_gb version"
        ).split()
        return {k: (list(v) if isinstance(v := getattr(self, k), tuple) else v) for k in keys}
