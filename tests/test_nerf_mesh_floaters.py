"""The nerf mesh keeps what the views see: a synthetic field with an object and two floaters.

The field is analytic (no training): a coloured ball at the origin, a blob outside every camera's
frustum (behind the ring of cameras, above them), and a grey sheet above the object in every view,
painted the learned backdrop's colour (the floater the bundled example's mesh carried). Cameras: a
ring of 12 looking at the origin from 30 degrees up, as a turntable capture.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from methods.nerf.mesh import MeshOptions, extract_mesh

BACKDROP = (0.5, 0.5, 0.5)
BALL_COLOUR = (0.9, 0.2, 0.1)


def blob(p: torch.Tensor, centre, radii) -> torch.Tensor:
    """Density 100 inside an axis-aligned ellipsoid, falling off outside it (a smooth indicator)."""
    q = (p - torch.tensor(centre)) / torch.tensor(radii)
    return 100.0 * torch.sigmoid(12.0 * (1.0 - q.norm(dim=-1)))


class SyntheticField:
    ball = ((0.0, -0.2, 0.0), (0.35, 0.35, 0.35))
    out_of_view = ((0.0, 0.9, 0.0), (0.12, 0.05, 0.12))  # straight above: above every camera's frustum
    sheet = ((0.0, 0.45, 0.0), (0.45, 0.04, 0.45))  # above the ball, in every view, backdrop-coloured

    def __init__(self, with_sheet: bool = True, with_out_of_view: bool = True):
        self.parts = (
            [self.ball] + ([self.out_of_view] if with_out_of_view else []) + ([self.sheet] if with_sheet else [])
        )

    def density(self, p: torch.Tensor) -> torch.Tensor:
        return torch.stack([blob(p, *part) for part in self.parts]).amax(0)

    def color(self, p: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        in_ball = blob(p, *self.ball) >= 50.0 * 0.5
        near_ball = (p - torch.tensor(self.ball[0])).norm(dim=-1) < 0.5
        out = torch.tensor(BACKDROP).expand(len(p), 3).clone()
        out[in_ball | near_ball] = torch.tensor(BALL_COLOUR)
        return out


def ring_cameras(n: int = 12, radius: float = 2.6, elevation_deg: float = 30.0, size: int = 64, fov_deg: float = 30.0):
    """OpenGL camera-to-world poses on a ring, each looking at the origin; shared intrinsics."""
    c2w = []
    el = np.radians(elevation_deg)
    for k in range(n):
        az = 2 * np.pi * k / n
        eye = radius * np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
        back = eye / np.linalg.norm(eye)  # +Z looks away from the target (OpenGL)
        right = np.cross([0.0, 1.0, 0.0], back)
        right /= np.linalg.norm(right)
        up = np.cross(back, right)
        m = np.eye(4)
        m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up, back, eye
        c2w.append(m)
    f = size / 2 / np.tan(np.radians(fov_deg) / 2)
    K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
    return np.stack(c2w), np.broadcast_to(K, (n, 3, 3)).copy(), size, size


BOX = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def parts_by_height(mesh: dict) -> list[float]:
    import trimesh

    tm = trimesh.Trimesh(mesh["vertices"], mesh["faces"], process=False)
    return sorted(round(float(part.centroid[1]), 1) for part in tm.split(only_watertight=False))


def test_a_floater_outside_every_frustum_is_dropped():
    field = SyntheticField(with_sheet=False)
    options = MeshOptions(resolution=64, threshold=50.0, min_component_fraction=0.0)
    kept = extract_mesh(field, BOX, options, cameras=None)
    assert parts_by_height(kept) == [-0.2, 0.9]  # without the cameras both parts are meshed
    seen = extract_mesh(field, BOX, options, cameras=ring_cameras())
    assert parts_by_height(seen) == [-0.2], "the blob no camera sees is dropped"
    assert seen["hidden_faces_removed"] > 0


def test_a_backdrop_coloured_sheet_every_view_sees_as_background_is_dropped():
    field = SyntheticField(with_out_of_view=False)
    cameras = ring_cameras()
    plain = MeshOptions(resolution=64, threshold=50.0, min_component_fraction=0.0)
    # every camera sees the sheet (it is in every frustum, in front of the backdrop): visibility keeps it
    heights = parts_by_height(extract_mesh(field, BOX, plain, cameras=cameras))
    assert len(heights) == 2 and heights[0] == -0.2 and heights[1] > 0.3
    with_backdrop = MeshOptions(resolution=64, threshold=50.0, min_component_fraction=0.0, background=BACKDROP)
    mesh = extract_mesh(field, BOX, with_backdrop, cameras=cameras)
    assert parts_by_height(mesh) == [-0.2], "the views see backdrop there: the sheet goes"
    assert mesh["background_parts_removed"] == 1
    # the object itself is never dropped, even if it had the backdrop's colour
    grey = MeshOptions(resolution=64, threshold=50.0, min_component_fraction=0.0, background=BALL_COLOUR)
    assert -0.2 in parts_by_height(extract_mesh(field, BOX, grey, cameras=cameras))


def test_the_backdrop_colour_comes_from_the_frames_borders_when_there_is_one():
    from pathlib import Path

    from PIL import Image

    from methods.nerf.mesh import backdrop_colour

    views = sorted((Path(__file__).resolve().parents[1] / "assets" / "examples" / "turntable").glob("*.jpg"))
    frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in views])
    assert backdrop_colour(frames) == pytest.approx((128 / 255,) * 3, abs=0.01)  # the bundled example's grey
    masked = np.concatenate([frames, np.full(frames.shape[:3] + (1,), 255, np.uint8)], axis=-1)
    masked[:, :10, :10, 3] = 0
    assert backdrop_colour(masked) is None  # a masked capture has no backdrop to paint
    noise = np.random.default_rng(0).integers(0, 256, frames.shape, dtype=np.uint8)
    assert backdrop_colour(noise) is None  # a cluttered scene: no single backdrop, nothing is dropped for it
