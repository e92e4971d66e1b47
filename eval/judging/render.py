"""The fixed camera ring and the one renderer every asset is judged with.

A small rasteriser written in PyTorch, run on the CPU in float64 with element-wise maths and an
order-independent z-buffer (``scatter_reduce`` amin over a depth+id key; :mod:`methods.raster`, which
TripoSR's texture baking shares), so that the same asset gives the same pixels on a CI machine with
no display and on a GPU host. No OpenGL, no Vulkan.

Conventions (the asset is expected in the canonical frame of :func:`methods.base.normalize`:
centred, unit bounding sphere, +Y up, front facing +Z):

- a :class:`Camera` sits on a sphere of radius ``distance`` around the origin and looks at it, +Y
  up; azimuth 0 is the front (+Z), azimuth 90 the right side (+X); elevation is above the equator;
- pinhole, square pixels, vertical field of view ``fov``; pixel ``(row, col)`` has its centre at
  ``(row + 0.5, col + 0.5)``; camera-to-world poses use the OpenGL convention (-Z forward);
- ``color`` mode draws the asset's base colour (vertex colours or texture) unlit: generated
  assets bake their shading into colour; ``geometry`` mode is the textureless render
  (DreamFusion's "geo"): white Lambertian under a fixed head light, two-sided flat faces;
- point clouds are drawn as discs of ``point_radius`` (world units) facing the camera; their
  geometry renders use PCA normals from 16 neighbours;
- images are composited over a white background; ``alpha`` is the coverage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from methods.base import Asset
from methods.raster import ID_BITS, raster_discs, raster_triangles

RENDERER = "trilemma-raster"
RENDERER_VERSION = "1"
MODES = ("color", "geometry")
RING_ELEVATION = 30.0
HELDOUT_AZIMUTH = 22.5  # between two ring views, so it is seen by none of them
HELDOUT_ELEVATION = 45.0
DISTANCE = 3.2  # a unit sphere fills 91% of the frame height at fov 40
FOV = 40.0
GEOMETRY_AMBIENT = 0.25
GEOMETRY_DIFFUSE = 0.75
NEUTRAL_GREY = 0.7  # the base colour of an asset that has none (as methods.export writes it)


@dataclass(frozen=True)
class Camera:
    """A camera on the viewing sphere, looking at the origin with +Y up (angles in degrees)."""

    azimuth: float
    elevation: float
    distance: float = DISTANCE
    fov: float = FOV

    @property
    def position(self) -> np.ndarray:
        az, el = math.radians(self.azimuth), math.radians(self.elevation)
        return self.distance * np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])

    def c2w(self) -> np.ndarray:
        """Camera-to-world 4x4, OpenGL convention (x right, y up, -z forward), as Inputs.poses."""
        eye = self.position
        back = eye / np.linalg.norm(eye)
        right = np.cross([0.0, 1.0, 0.0], back)
        if np.linalg.norm(right) < 1e-9:  # looking straight down or up: pick a stable right vector
            right = np.array([1.0, 0.0, 0.0])
        right /= np.linalg.norm(right)
        up = np.cross(back, right)
        pose = np.eye(4)
        pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, up, back, eye
        return pose

    def focal(self, resolution: int) -> float:
        return resolution / 2.0 / math.tan(math.radians(self.fov) / 2.0)

    def intrinsics(self, resolution: int) -> np.ndarray:
        """3x3 pixel intrinsics (OpenCV layout) for a square image of ``resolution`` pixels."""
        f = self.focal(resolution)
        return np.array([[f, 0.0, resolution / 2.0], [0.0, f, resolution / 2.0], [0.0, 0.0, 1.0]])

    def describe(self) -> str:
        return f"az {self.azimuth:g} el {self.elevation:g}"


def camera_ring(n: int = 8, elevation: float = RING_ELEVATION) -> list[Camera]:
    """``n`` azimuths evenly spaced from the front, at one elevation (default: the protocol's 8 at 30 degrees)."""
    return [Camera(360.0 * i / n, elevation) for i in range(n)]


def heldout_camera() -> Camera:
    """The held-out view (45 degrees up, between two ring views), as Dream Fields evaluates."""
    return Camera(HELDOUT_AZIMUTH, HELDOUT_ELEVATION)


def front_camera() -> Camera:
    """The input's viewpoint for image inputs: straight at the front after normalisation."""
    return Camera(0.0, 0.0)


@dataclass
class Renders:
    """Renders of one asset: float32 images over white, coverage, depth, and what made them."""

    rgb: np.ndarray  # (V, H, W, 3) float32 in [0, 1], composited over the background
    alpha: np.ndarray  # (V, H, W) float32 coverage in [0, 1]
    depth: np.ndarray  # (V, H, W) float32 distance along the view axis, inf where empty
    cameras: list[Camera]
    settings: dict[str, Any] = field(default_factory=dict)

    def uint8(self) -> np.ndarray:
        return (self.rgb * 255.0 + 0.5).astype(np.uint8)

    def images(self, with_alpha: bool = False) -> list:
        """PIL images, RGB over white (or RGBA with the coverage as alpha)."""
        from PIL import Image

        rgb = self.uint8()
        if not with_alpha:
            return [Image.fromarray(im) for im in rgb]
        a = (self.alpha * 255.0 + 0.5).astype(np.uint8)[..., None]
        return [Image.fromarray(np.concatenate([im, al], axis=-1)) for im, al in zip(rgb, a, strict=True)]


def render_settings(
    cameras: list[Camera], resolution: int, mode: str, supersample: int, point_radius: float
) -> dict[str, Any]:
    """Everything that changes the pixels, for the metric rows."""
    return {
        "renderer": f"{RENDERER} v{RENDERER_VERSION}",
        "mode": mode,
        "resolution": resolution,
        "supersample": supersample,
        "views": [c.describe() for c in cameras],
        "distance": cameras[0].distance if cameras else DISTANCE,
        "fov": cameras[0].fov if cameras else FOV,
        "background": "white",
        "point_radius": point_radius,
    }


def render(
    asset: Asset,
    cameras: list[Camera] | None = None,
    *,
    resolution: int = 224,
    mode: str = "color",
    supersample: int = 2,
    point_radius: float = 0.015,
) -> Renders:
    """Render the asset (its mesh, else its points) from each camera.

    ``supersample`` renders at that multiple of ``resolution`` and box-filters down (anti-aliasing).
    Deterministic: the same asset and arguments give the same pixels on every machine.
    """
    return render_modes(
        asset, cameras, modes=(mode,), resolution=resolution, supersample=supersample, point_radius=point_radius
    )[mode]


def render_modes(
    asset: Asset,
    cameras: list[Camera] | None = None,
    *,
    modes: tuple[str, ...] = MODES,
    resolution: int = 224,
    supersample: int = 2,
    point_radius: float = 0.015,
) -> dict[str, Renders]:
    """:func:`render` in several modes at once: each view is rasterised once and shaded per mode."""
    import torch

    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if resolution < 8 or supersample < 1:
        raise ValueError("resolution must be at least 8 pixels and supersample at least 1")
    cameras = list(cameras) if cameras is not None else camera_ring()
    res = resolution * supersample
    # Gaussian splats: colour through the splat rasteriser; geometry from the asset's mesh (else splat centres)
    splat_color = "color" in modes and asset.gaussians is not None
    other = tuple(m for m in modes if not (splat_color and m == "color"))
    scene = _Scene.from_asset(asset, other) if other else None
    out: dict[str, tuple[list, list, list]] = {mode: ([], [], []) for mode in modes}
    for cam in cameras:
        drawn = scene.draw(cam, res, point_radius, other) if scene is not None else {}
        if splat_color:
            drawn["color"] = _draw_splats(asset.gaussians, cam, res)
        for mode, (rgb, alpha, depth) in drawn.items():
            if supersample > 1:
                rgb, alpha, depth = _downsample(rgb, alpha, depth, supersample)
            for stack, image in zip(out[mode], (rgb, alpha, depth), strict=True):
                stack.append(image.float())
    empty = np.zeros((0, resolution, resolution), np.float32)
    return {
        mode: Renders(
            rgb=torch.stack(rgbs).numpy() if rgbs else np.zeros((0, resolution, resolution, 3), np.float32),
            alpha=torch.stack(alphas).numpy() if alphas else empty,
            depth=torch.stack(depths).numpy() if depths else empty,
            cameras=cameras,
            settings=render_settings(cameras, resolution, mode, supersample, point_radius)
            | ({"splats": SPLAT_RENDERER} if splat_color and mode == "color" else {}),
        )
        for mode, (rgbs, alphas, depths) in out.items()
    }


SPLAT_RENDERER = "methods.splats.raster (EWA splatting, float64, CPU), splats' base and view-dependent colour"


def _draw_splats(gaussians, cam: Camera, res: int) -> tuple:
    """(rgb over white, alpha, depth) float64 tensors of Gaussian splats seen by ``cam`` (front-to-back blending)."""
    import torch

    from methods.splats.raster import opengl_to_viewmat, rasterize

    g = gaussians
    t = {k: torch.from_numpy(np.asarray(getattr(g, k), dtype=np.float64)) for k in ("means", "log_scales", "quats")}
    out = rasterize(
        t["means"],
        t["log_scales"],
        t["quats"],
        torch.from_numpy(np.asarray(g.opacity_logits, dtype=np.float64)),
        torch.from_numpy(np.asarray(g.sh, dtype=np.float64)),
        opengl_to_viewmat(cam.c2w()),
        torch.from_numpy(cam.intrinsics(res))[None],
        res,
        res,
        torch.ones(3, dtype=torch.float64),
    )
    alpha = out.alpha[0]
    depth = torch.where(alpha > 0.5, out.depth[0] / alpha.clamp_min(1e-12), torch.full_like(alpha, math.inf))
    return out.image[0].clamp(0, 1), alpha, depth


def _downsample(rgb, alpha, depth, s: int):
    """Box-filter colour and coverage by ``s`` (explicit sums in a fixed order), nearest depth."""
    res = rgb.shape[0] // s
    rgb = rgb.reshape(res, s, res, s, 3)
    alpha = alpha.reshape(res, s, res, s)
    rgb_sum, alpha_sum = rgb[:, 0, :, 0].clone(), alpha[:, 0, :, 0].clone()
    for i in range(s):
        for j in range(s):
            if i or j:
                rgb_sum += rgb[:, i, :, j]
                alpha_sum += alpha[:, i, :, j]
    return rgb_sum / (s * s), alpha_sum / (s * s), depth.reshape(res, s, res, s).amin(dim=(1, 3))


def render_turntable(
    asset: Asset,
    path: str | Path,
    *,
    frames: int = 24,
    elevation: float = RING_ELEVATION,
    resolution: int = 256,
    mode: str = "color",
    fps: int = 12,
    supersample: int = 1,
) -> Path:
    """A turntable of the asset as .gif (Pillow) or .mp4 (PyAV, H.264), chosen by the suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"a turntable is written as .gif or .mp4, not {suffix or 'no suffix'}")
    renders = render(asset, camera_ring(frames, elevation), resolution=resolution, mode=mode, supersample=supersample)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    if suffix == ".gif":
        from PIL import Image

        # fast octree palettes: Pillow's default median cut costs about 0.5 s a frame
        images = [
            im.quantize(255, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE) for im in renders.images()
        ]
        images[0].save(tmp, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    else:
        _write_mp4(renders.uint8(), tmp, fps)
    tmp.replace(path)
    return path


def _write_mp4(frames: np.ndarray, path: Path, fps: int) -> None:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "20"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# ----------------------------------------------------------------------------- rasteriser


@dataclass
class _Scene:
    """The asset as float64 tensors, prepared once for all views."""

    vertices: Any  # (V, 3)
    faces: Any | None = None  # (F, 3) long
    colors: Any | None = None  # (V, 3) per-vertex base colour
    uv: Any | None = None  # (V, 2)
    texture: Any | None = None  # (H, W, 3)
    normals: Any | None = None  # (F, 3) face normals, or (N, 3) point normals

    @classmethod
    def from_asset(cls, asset: Asset, modes: tuple[str, ...]) -> _Scene:
        import torch

        if asset.mesh is not None:
            m = asset.mesh
            v = torch.from_numpy(np.asarray(m.vertices, dtype=np.float64))
            faces = torch.from_numpy(np.asarray(m.faces, dtype=np.int64))
            colors, count = m.vertex_colors, len(faces)
        else:
            points = asset.points
            if points is None:  # splats only: their centres stand in for the geometry
                from methods.export import gaussian_centres

                points = gaussian_centres(asset.gaussians)
            v = torch.from_numpy(np.asarray(points.points, dtype=np.float64))
            faces, colors, count = None, points.colors, len(v)
        if count >= 1 << ID_BITS:
            raise ValueError(f"the renderer takes fewer than {1 << ID_BITS} faces or points, got {count}")
        scene = cls(v, faces)
        if "geometry" in modes:
            if faces is None:
                scene.normals = torch.from_numpy(point_normals(v.numpy()))
            else:
                a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
                n = torch.linalg.cross(b - a, c - a)
                scene.normals = n / n.norm(dim=1, keepdim=True).clamp_min(1e-30)
        if "color" in modes:
            if faces is not None and m.texture is not None and m.uv is not None:
                scene.uv = torch.from_numpy(np.asarray(m.uv, dtype=np.float64))
                scene.texture = torch.from_numpy(np.asarray(m.texture.convert("RGB"), dtype=np.float64) / 255.0)
            else:
                colors = colors if colors is not None else np.full((len(v), 3), NEUTRAL_GREY)
                scene.colors = torch.from_numpy(np.asarray(colors, dtype=np.float64))
        return scene

    def draw(self, cam: Camera, res: int, point_radius: float, modes: tuple[str, ...]) -> dict[str, tuple]:
        """Per mode (rgb (H, W, 3), alpha (H, W), depth (H, W)) float64 tensors for one view."""
        import torch

        pose = torch.from_numpy(cam.c2w())
        right, up, back, eye = pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3]
        rel = self.vertices - eye
        # element-wise dot products, not matmul: BLAS blocking would make bits depend on the thread count
        xc = rel[:, 0] * right[0] + rel[:, 1] * right[1] + rel[:, 2] * right[2]
        yc = rel[:, 0] * up[0] + rel[:, 1] * up[1] + rel[:, 2] * up[2]
        depth = -(rel[:, 0] * back[0] + rel[:, 1] * back[1] + rel[:, 2] * back[2])
        f = cam.focal(res)
        safe = depth.clamp_min(1e-9)
        sx = xc / safe * f + res / 2.0
        sy = res / 2.0 - yc / safe * f
        if self.faces is not None:
            pid, bary = raster_triangles(sx, sy, depth, self.faces, res)
        else:
            pid, bary = raster_discs(sx, sy, depth, f * point_radius / safe, res)
        covered = pid >= 0
        ids = pid[covered]
        zbuf = torch.full((res * res,), math.inf, dtype=torch.float64)
        if self.faces is not None:
            corners = self.faces[ids]  # (P, 3)
            b0, b1, b2 = (b[:, None] for b in bary.unbind(1))
            d = depth[corners]
            zbuf[covered] = 1.0 / (b0[:, 0] / d[:, 0] + b1[:, 0] / d[:, 1] + b2[:, 0] / d[:, 2])
        else:
            zbuf[covered] = depth[ids]
        alpha = covered.to(torch.float64).reshape(res, res)
        out = {}
        for mode in modes:
            rgb = torch.ones(res * res, 3, dtype=torch.float64)
            if mode == "geometry":
                rgb[covered] = self._lambert(self.normals, cam)[ids]  # flat faces: one value per face
            elif self.texture is not None:
                uv = self.uv[corners]
                rgb[covered] = _sample_bilinear(self.texture, b0 * uv[:, 0] + b1 * uv[:, 1] + b2 * uv[:, 2])
            elif self.faces is not None:
                col = self.colors[corners]
                rgb[covered] = b0 * col[:, 0] + b1 * col[:, 1] + b2 * col[:, 2]
            else:
                rgb[covered] = self.colors[ids]
            out[mode] = (rgb.reshape(res, res, 3), alpha, zbuf.reshape(res, res))
        return out

    @staticmethod
    def _lambert(normals, cam: Camera):
        """White Lambertian under a head light from above-left of the camera; normals turned to face it."""
        import torch

        pose = torch.from_numpy(cam.c2w())
        light = 1.0 * pose[:3, 2] + 0.5 * pose[:3, 1] - 0.3 * pose[:3, 0]
        light = light / light.norm()
        back = pose[:3, 2]
        towards = normals[:, 0] * back[0] + normals[:, 1] * back[1] + normals[:, 2] * back[2]
        facing = torch.where(towards < 0, -1.0, 1.0)  # two-sided: winding need not be consistent
        lit = (facing * (normals[:, 0] * light[0] + normals[:, 1] * light[1] + normals[:, 2] * light[2])).clamp_min(0)
        return (GEOMETRY_AMBIENT + GEOMETRY_DIFFUSE * lit)[:, None].expand(-1, 3)


def _sample_bilinear(texture, uv):
    """Bilinear texture lookup with wrap-around; uv (0, 0) is the bottom-left texel corner (glTF via trimesh)."""
    import torch

    h, w = texture.shape[0], texture.shape[1]
    x = uv[:, 0] * w - 0.5
    y = (1.0 - uv[:, 1]) * h - 0.5
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0i, y0i = x0.to(torch.int64), y0.to(torch.int64)
    x1i, y1i = (x0i + 1) % w, (y0i + 1) % h
    x0i, y0i = x0i % w, y0i % h
    top = texture[y0i, x0i] * (1 - fx) + texture[y0i, x1i] * fx
    bottom = texture[y1i, x0i] * (1 - fx) + texture[y1i, x1i] * fx
    return top * (1 - fy) + bottom * fy


def point_normals(points: np.ndarray, k: int = 16) -> np.ndarray:
    """Unit normals of a point cloud by PCA of each point's ``k`` nearest neighbours (sign arbitrary)."""
    from scipy.spatial import cKDTree

    pts = np.asarray(points, dtype=np.float64)
    if len(pts) < 3:
        return np.tile([0.0, 0.0, 1.0], (len(pts), 1))
    k = min(k, len(pts))
    _, nn = cKDTree(pts).query(pts, k=k)
    nbrs = pts[nn]
    centred = nbrs - nbrs.mean(axis=1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", centred, centred)
    _, vecs = np.linalg.eigh(cov)
    return np.ascontiguousarray(vecs[:, :, 0])
