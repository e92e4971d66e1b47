"""Random cameras around the object and the view-dependent prompts that go with them (numpy only).

Angles: azimuth 0 puts the camera on +Z looking at the origin (it sees the object's front; glTF's
front is +Z), azimuth 90 on +X; elevation is the angle above the XZ plane; up is +Y. Camera poses
are OpenGL camera-to-world matrices, as everywhere in :mod:`methods.nerf`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from methods.nerf.cameras import look_at

VIEW_DIRECTIONS = ("front", "side", "back", "overhead")


@dataclass(frozen=True)
class CameraRange:
    """Where the random training cameras lie: uniform in each interval (degrees, field units)."""

    azimuth: tuple[float, float] = (-180.0, 180.0)
    elevation: tuple[float, float] = (-10.0, 90.0)
    radius: tuple[float, float] = (3.0, 3.5)
    fov: tuple[float, float] = (25.0, 40.0)  # vertical field of view

    def mid(self) -> tuple[float, float]:
        """(radius, fov) in the middle of the ranges: the preview and turntable cameras use it."""
        return sum(self.radius) / 2, sum(self.fov) / 2


@dataclass
class CameraBatch:
    """B cameras: poses (B, 4, 4), their angles in degrees and their vertical field of view."""

    c2w: np.ndarray
    azimuth: np.ndarray
    elevation: np.ndarray
    radius: np.ndarray
    fov: np.ndarray

    def __len__(self) -> int:
        return len(self.c2w)


def orbit_position(azimuth_deg: float, elevation_deg: float, radius: float) -> np.ndarray:
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return radius * np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])


def orbit_cameras(azimuth, elevation, radius, fov) -> CameraBatch:
    """Cameras at the given angles (degrees) and distances, looking at the origin with +Y up."""
    az, el, rad, fv = (np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (azimuth, elevation, radius, fov))
    az, el, rad, fv = np.broadcast_arrays(az, el, rad, fv)
    poses = []
    for a, e, r in zip(az, el, rad, strict=True):
        eye = orbit_position(a, e, r)
        # straight overhead the +Y up is degenerate: look_at then picks another up vector
        poses.append(look_at(eye, np.zeros(3), np.array([0.0, 1.0, 0.0])))
    return CameraBatch(np.stack(poses), az.copy(), el.copy(), rad.copy(), fv.copy())


def sample_cameras(rng: np.random.Generator, count: int, camera_range: CameraRange) -> CameraBatch:
    """``count`` cameras drawn uniformly from the ranges (DreamFusion samples angles, not the sphere's area)."""
    r = camera_range
    return orbit_cameras(
        rng.uniform(*r.azimuth, size=count),
        rng.uniform(*r.elevation, size=count),
        rng.uniform(*r.radius, size=count),
        rng.uniform(*r.fov, size=count),
    )


def intrinsics(fov_deg: float, width: int, height: int) -> np.ndarray:
    """A pinhole matrix in pixels for a vertical field of view ``fov_deg``, principal point at the centre."""
    focal = 0.5 * height / math.tan(math.radians(fov_deg) / 2)
    return np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])


def view_direction(
    azimuth_deg: float, elevation_deg: float, front_deg: float = 60.0, overhead_deg: float = 60.0
) -> str:
    """DreamFusion's view label: overhead above ``overhead_deg`` of elevation, else by azimuth.

    front: |azimuth| < front_deg / 2; back: |azimuth| > 180 - front_deg / 2; side: the rest
    (Poole et al. 2022, Sec. 3.2; the sector widths of Stable DreamFusion's ``get_view_direction``).
    """
    if elevation_deg >= overhead_deg:
        return "overhead"
    az = abs((azimuth_deg + 180.0) % 360.0 - 180.0)  # folded to [0, 180]
    if az < front_deg / 2:
        return "front"
    if az > 180.0 - front_deg / 2:
        return "back"
    return "side"


def view_prompt(prompt: str, direction: str) -> str:
    """The prompt with its view suffix, as DreamFusion appends "front view" and the like."""
    if direction not in VIEW_DIRECTIONS:
        raise ValueError(f"direction must be one of {VIEW_DIRECTIONS}, got {direction!r}")
    return f"{prompt}, {direction} view"


__all__ = [
    "VIEW_DIRECTIONS",
    "CameraBatch",
    "CameraRange",
    "intrinsics",
    "orbit_cameras",
    "orbit_position",
    "sample_cameras",
    "view_direction",
    "view_prompt",
]
