"""Cameras: the one convention the engine uses, lens distortion, rays, the scene's frame and orbits.

Convention (the project's, ``methods.base.Inputs``): camera-to-world 4x4 matrices in the OpenGL
convention, +X right, +Y up, the camera looks along -Z; intrinsics in pixels, pixel centres at
``(u + 0.5, v + 0.5)`` with ``v`` growing downwards. COLMAP / OpenCV cameras (+Y down, +Z forward)
are converted with :func:`opencv_to_opengl`.

The radiance field lives in a normalised frame: the scene's region of interest is the cube
[-1, 1]^3. :class:`SceneFrame` is the similarity that maps the world there.

numpy only at module level; the ray functions take and return torch tensors (imported lazily).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

CAMERA_MODELS = ("pinhole", "opencv", "fisheye")
# Distortion parameters, always 6 per frame in this order (unused ones are 0):
# opencv: k1, k2, p1, p2, k3, 0   (Brown-Conrady, as OpenCV / COLMAP OPENCV / nerfstudio)
# fisheye: k1, k2, k3, k4, 0, 0   (OpenCV fisheye / COLMAP OPENCV_FISHEYE / nerfstudio)
DISTORTION_PARAMS = 6

_FLIP_YZ = np.diag([1.0, -1.0, -1.0, 1.0])


def opencv_to_opengl(c2w: np.ndarray) -> np.ndarray:
    """Camera-to-world in OpenCV axes (+Y down, +Z forward) -> OpenGL axes (+Y up, -Z forward); both ways."""
    return np.asarray(c2w, dtype=np.float64) @ _FLIP_YZ


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


@dataclass
class Cameras:
    """N cameras sharing one image size: poses, intrinsics and (optionally) lens distortion."""

    c2w: np.ndarray  # (N, 4, 4) float64, OpenGL camera-to-world
    K: np.ndarray  # (N, 3, 3) float64, pixels
    width: int
    height: int
    model: str = "pinhole"
    distortion: np.ndarray | None = None  # (N, 6), see DISTORTION_PARAMS

    def __post_init__(self) -> None:
        self.c2w = np.asarray(self.c2w, dtype=np.float64).reshape(-1, 4, 4)
        K = np.asarray(self.K, dtype=np.float64)
        self.K = np.broadcast_to(K, (len(self.c2w), 3, 3)).copy() if K.ndim == 2 else K.reshape(-1, 3, 3)
        if len(self.K) != len(self.c2w):
            raise ValueError(f"{len(self.K)} intrinsics for {len(self.c2w)} poses")
        if self.model not in CAMERA_MODELS:
            raise ValueError(f"camera model must be one of {CAMERA_MODELS}, got {self.model!r}")
        if self.distortion is not None:
            d = np.zeros((len(self.c2w), DISTORTION_PARAMS))
            given = np.asarray(self.distortion, dtype=np.float64)
            given = np.broadcast_to(given, (len(self.c2w), given.shape[-1]))
            d[:, : given.shape[-1]] = given
            self.distortion = d if np.any(d) or self.model == "fisheye" else None
        if self.distortion is None and self.model == "opencv":
            self.model = "pinhole"

    def __len__(self) -> int:
        return len(self.c2w)

    def subset(self, index: Any) -> Cameras:
        index = np.asarray(index)
        return Cameras(
            self.c2w[index],
            self.K[index],
            self.width,
            self.height,
            self.model,
            None if self.distortion is None else self.distortion[index],
        )

    def transformed(self, frame: SceneFrame) -> Cameras:
        """The same cameras in the field frame of ``frame`` (centres moved and scaled, axes rotated)."""
        return Cameras(frame.apply_to_poses(self.c2w), self.K, self.width, self.height, self.model, self.distortion)

    def centers(self) -> np.ndarray:
        return self.c2w[:, :3, 3].copy()

    def scaled(self, factor: float, width: int, height: int) -> Cameras:
        """Intrinsics for images resized by ``factor`` to ``width`` x ``height``."""
        K = self.K.copy()
        K[:, 0, :] *= width / self.width
        K[:, 1, :] *= height / self.height
        return Cameras(self.c2w, K, width, height, self.model, self.distortion)


@dataclass
class SceneFrame:
    """The similarity world -> field: ``x_field = scale * R (x_world - centre)``; field's region is [-1, 1]^3."""

    centre: np.ndarray = field(default_factory=lambda: np.zeros(3))
    scale: float = 1.0
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def apply_to_points(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.centre) @ self.rotation.T * self.scale

    def to_world(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) / self.scale @ self.rotation + self.centre

    def apply_to_poses(self, c2w: np.ndarray) -> np.ndarray:
        out = np.array(c2w, dtype=np.float64, copy=True)
        out[:, :3, :3] = self.rotation @ out[:, :3, :3]
        out[:, :3, 3] = self.apply_to_points(out[:, :3, 3])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"centre": self.centre.tolist(), "scale": float(self.scale), "rotation": self.rotation.tolist()}


def focus_point(c2w: np.ndarray) -> np.ndarray:
    """The point nearest (least squares) to all optical axes: where an orbiting capture looks."""
    origins = c2w[:, :3, 3]
    dirs = -c2w[:, :3, 2]
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for o, d in zip(origins, dirs, strict=True):
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ o
    if np.linalg.cond(A) > 1e8:  # all cameras look the same way (a forward-facing capture)
        return origins.mean(0) + dirs.mean(0) * np.linalg.norm(origins - origins.mean(0), axis=1).mean()
    return np.linalg.solve(A, b)


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The rotation taking unit vector ``a`` to unit vector ``b`` (Rodrigues)."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(a @ b)
    if c < -1 + 1e-9:  # opposite: rotate by pi about any axis orthogonal to a
        axis = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(a, [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def mean_up(c2w: np.ndarray) -> np.ndarray:
    """The average camera up vector: the world's up for a person filming an object."""
    up = c2w[:, :3, 1].sum(0)
    n = np.linalg.norm(up)
    return up / n if n > 1e-9 else np.array([0.0, 1.0, 0.0])


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """An OpenGL camera-to-world matrix at ``eye`` looking at ``target``."""
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:
        right = np.cross(forward, np.roll(up, 1))
    right /= np.linalg.norm(right)
    true_up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, true_up, -forward, eye
    return c2w


def orbit_poses(
    n: int,
    radius: float,
    elevation_deg: float = 25.0,
    target: np.ndarray | None = None,
    up: np.ndarray | None = None,
    start_deg: float = 0.0,
) -> np.ndarray:
    """``n`` cameras evenly around ``target`` at ``radius`` and ``elevation_deg``, about ``up`` (default +Y)."""
    target = np.zeros(3) if target is None else np.asarray(target, dtype=np.float64)
    up = np.array([0.0, 1.0, 0.0]) if up is None else np.asarray(up, dtype=np.float64)
    up = up / np.linalg.norm(up)
    # an orthonormal basis (a, b) of the horizontal plane
    a = np.cross(up, [1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.cross(up, [0.0, 0.0, 1.0])
    a /= np.linalg.norm(a)
    b = np.cross(a, up)
    el = np.radians(elevation_deg)
    poses = []
    for i in range(n):
        az = np.radians(start_deg) + 2 * np.pi * i / n
        direction = np.cos(el) * (np.cos(az) * b + np.sin(az) * a) + np.sin(el) * up
        poses.append(look_at(target + radius * direction, target, up))
    return np.stack(poses)


# ----------------------------------------------------------------------------- rays (torch)


def _undistort(xd, yd, dist, model: str, iterations: int = 10):
    """Normalised distorted image coordinates -> undistorted ones (Newton's method), per point parameters."""
    import torch

    if model == "fisheye":
        k1, k2, k3, k4 = dist[:, 0], dist[:, 1], dist[:, 2], dist[:, 3]
        theta_d = torch.sqrt(xd * xd + yd * yd)
        theta = theta_d.clone()
        for _ in range(iterations):
            t2 = theta * theta
            f = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4)))) - theta_d
            df = 1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + 9 * t2 * k4)))
            theta = (theta - f / df.clamp_min(1e-6)).clamp(0, np.pi / 2 - 1e-3)
        scale = torch.where(theta_d > 1e-9, torch.tan(theta) / theta_d.clamp_min(1e-9), torch.ones_like(theta))
        return xd * scale, yd * scale
    k1, k2, p1, p2, k3 = dist[:, 0], dist[:, 1], dist[:, 2], dist[:, 3], dist[:, 4]
    x, y = xd.clone(), yd.clone()
    for _ in range(iterations):
        r2 = x * x + y * y
        radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        dr = 2 * k1 + r2 * (4 * k2 + 6 * k3 * r2)  # d radial / d r2
        fx = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x) - xd
        fy = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y - yd
        fx_x = radial + x * dr * 2 * x + 2 * p1 * y + 6 * p2 * x
        fx_y = x * dr * 2 * y + 2 * p1 * x + 2 * p2 * y
        fy_x = y * dr * 2 * x + 2 * p1 * x + 2 * p2 * y
        fy_y = radial + y * dr * 2 * y + 6 * p1 * y + 2 * p2 * x
        det = fx_x * fy_y - fx_y * fy_x
        det = torch.where(det.abs() < 1e-9, torch.full_like(det, 1e-9), det)
        x = x - (fx * fy_y - fy * fx_y) / det
        y = y - (fy * fx_x - fx * fy_x) / det
    return x, y


class RayTable:
    """Cameras as torch tensors on a device; makes rays for (image index, pixel) batches."""

    def __init__(self, cameras: Cameras, device: str = "cpu"):
        import torch

        self.cameras = cameras
        self.device = device
        self.c2w = torch.as_tensor(cameras.c2w[:, :3, :4], dtype=torch.float32, device=device)
        K = cameras.K
        self.focal = torch.as_tensor(np.stack([K[:, 0, 0], K[:, 1, 1]], -1), dtype=torch.float32, device=device)
        self.centre = torch.as_tensor(np.stack([K[:, 0, 2], K[:, 1, 2]], -1), dtype=torch.float32, device=device)
        self.distortion = (
            None
            if cameras.distortion is None
            else torch.as_tensor(cameras.distortion, dtype=torch.float32, device=device)
        )

    def rays(self, image: Any, u: Any, v: Any):
        """Origins and unit directions (world / frame of the cameras) for pixels ``(u, v)`` of images ``image``."""
        import torch

        x = (u.float() + 0.5 - self.centre[image, 0]) / self.focal[image, 0]
        y = (v.float() + 0.5 - self.centre[image, 1]) / self.focal[image, 1]
        if self.distortion is not None:
            x, y = _undistort(x, y, self.distortion[image], self.cameras.model)
        dirs_cam = torch.stack([x, -y, -torch.ones_like(x)], -1)
        rot = self.c2w[image, :, :3]
        dirs = (rot @ dirs_cam[..., None])[..., 0]
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        origins = self.c2w[image, :, 3]
        return origins, dirs

    def image_rays(self, index: int, stride: int = 1):
        """All rays of one image (every ``stride``-th pixel), as (H', W', 3) origins and directions."""
        import torch

        H, W = self.cameras.height, self.cameras.width
        v, u = torch.meshgrid(
            torch.arange(0, H, stride, device=self.device),
            torch.arange(0, W, stride, device=self.device),
            indexing="ij",
        )
        image = torch.full_like(u, index)
        o, d = self.rays(image.reshape(-1), u.reshape(-1), v.reshape(-1))
        return o.reshape(*u.shape, 3), d.reshape(*u.shape, 3)


def distort_points(x: np.ndarray, y: np.ndarray, dist: np.ndarray, model: str) -> tuple[np.ndarray, np.ndarray]:
    """Normalised undistorted coordinates -> distorted (the forward lens model; for projection and tests)."""
    if model == "fisheye":
        k1, k2, k3, k4 = dist[:4]
        r = np.sqrt(x * x + y * y)
        theta = np.arctan(r)
        t2 = theta * theta
        theta_d = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
        s = np.where(r > 1e-9, theta_d / np.maximum(r, 1e-9), 1.0)
        return x * s, y * s
    k1, k2, p1, p2, k3 = dist[:5]
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    return (
        x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
        y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y,
    )
