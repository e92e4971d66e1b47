"""What the browser's 3D viewer receives: the asset, or a lighter copy of it when it is too heavy.

A NeRF of a real capture can give a mesh of half a million faces, which a browser viewer loads
slowly or not at all. The viewer gets ``viewer.glb`` beside the asset: meshes decimated to at most
``MAX_VIEWER_FACES`` faces in all (quadric edge collapse, vertex colours carried over from the
nearest original vertex) and point clouds thinned to ``MAX_VIEWER_POINTS`` points (a seeded random
subset). The download keeps the full asset; the note says when and how the view is reduced.
No torch here: trimesh, scipy and the fast-simplification wheel only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_VIEWER_FACES = 300_000
MAX_VIEWER_POINTS = 200_000
MAX_VIEWER_SPLATS = 200_000
VIEWER_NAME = "viewer.glb"
VIEWER_SPLAT = "viewer.splat"  # always written for splats: centred and scaled for the splat viewer's fixed camera
SPLAT_BYTES = 32  # one splat of the .splat format: position, scale, RGBA, rotation


@dataclass(frozen=True)
class ViewerFile:
    path: str  # the file the viewer shows
    note: str = ""  # "" when it is the full asset


def _counts(scene) -> tuple[int, int]:
    import trimesh

    faces = sum(len(g.faces) for g in scene.geometry.values() if isinstance(g, trimesh.Trimesh))
    points = sum(len(g.vertices) for g in scene.geometry.values() if isinstance(g, trimesh.PointCloud))
    return faces, points


def _decimated(mesh, target: int):
    import trimesh
    from scipy.spatial import cKDTree

    from methods.raycast import decimate

    colours = None
    if mesh.visual.kind == "texture":
        colours = mesh.visual.to_color().vertex_colors
    elif mesh.visual.kind == "vertex":
        colours = mesh.visual.vertex_colors
    vertices, faces = decimate(np.asarray(mesh.vertices), np.asarray(mesh.faces), target)
    out = trimesh.Trimesh(vertices, faces, process=False)
    if colours is not None:
        _, nearest = cKDTree(np.asarray(mesh.vertices)).query(vertices, k=1)
        out.visual.vertex_colors = np.asarray(colours)[nearest]
    return out


def _thinned(cloud, keep: int):
    import trimesh

    idx = np.sort(np.random.default_rng(0).choice(len(cloud.vertices), size=keep, replace=False))
    colours = cloud.colors if len(cloud.colors) == len(cloud.vertices) else None
    return trimesh.PointCloud(np.asarray(cloud.vertices)[idx], colors=None if colours is None else colours[idx])


def viewer_splat(splat: str | Path, max_splats: int = MAX_VIEWER_SPLATS) -> ViewerFile:
    """The viewer's file for a ``.splat``: ``viewer.splat`` beside it, framed for the splat viewer (see
    :func:`framed_splat`) and holding at most the first ``max_splats`` splats (the format stores the
    largest, most opaque ones first); the note says when some are left out."""
    splat = Path(splat)
    count = splat.stat().st_size // SPLAT_BYTES
    out = splat.with_name(VIEWER_SPLAT)
    if not (out.is_file() and out.stat().st_mtime >= splat.stat().st_mtime):
        with open(splat, "rb") as fh:
            data = fh.read(max_splats * SPLAT_BYTES)
        tmp = out.with_suffix(".part")
        tmp.write_bytes(data)
        framed_splat(tmp, out)  # gsplat.js ignores camera_position: the copy is framed for its fixed camera
        tmp.unlink(missing_ok=True)
    if count <= max_splats:
        return ViewerFile(str(out))
    note = f"the viewer shows the {max_splats:,} largest of {count:,} splats; the download is the full asset"
    return ViewerFile(str(out), note)


def viewer_file(glb: str | Path, max_faces: int = MAX_VIEWER_FACES, max_points: int = MAX_VIEWER_POINTS) -> ViewerFile:
    """The viewer's file for the asset ``glb``: itself when light enough, else ``viewer.glb`` beside it.
    A ``.splat`` goes to :func:`viewer_splat`."""
    import trimesh

    glb = Path(glb)
    if glb.suffix == ".splat":
        return viewer_splat(glb)
    scene = trimesh.load(str(glb), force="scene")
    faces, points = _counts(scene)
    if faces <= max_faces and points <= max_points:
        return ViewerFile(str(glb))
    out = glb.with_name(VIEWER_NAME)
    if out.is_file() and out.stat().st_mtime >= glb.stat().st_mtime:  # made before (a cached run, the Runs tab)
        return ViewerFile(
            str(out), _note(faces, points, *_counts(trimesh.load(str(out), force="scene")), max_faces, max_points)
        )
    for name, geometry in list(scene.geometry.items()):
        if isinstance(geometry, trimesh.Trimesh) and faces > max_faces:
            target = max(4, int(len(geometry.faces) * max_faces / faces))
            scene.geometry[name] = _decimated(geometry, target)
        elif isinstance(geometry, trimesh.PointCloud) and points > max_points:
            keep = max(1, int(len(geometry.vertices) * max_points / points))
            scene.geometry[name] = _thinned(geometry, keep)
    scene.export(str(out))
    return ViewerFile(str(out), _note(faces, points, *_counts(scene), max_faces, max_points))


def _note(faces: int, points: int, shown_faces: int, shown_points: int, max_faces: int, max_points: int) -> str:
    parts = []
    if faces > max_faces:
        parts.append(f"{shown_faces:,} of {faces:,} faces")
    if points > max_points:
        parts.append(f"{shown_points:,} of {points:,} points")
    return f"the viewer shows a reduced copy ({', '.join(parts)}); the download is the full asset"


# ----------------------------------------------------------------------------- framing
#
# Every viewer frames its asset whole, from the asset's bounds, the same way: the asset's bounding box,
# seen from the viewers' default orbit, fills FILL of the frame's width or FILL_V of its height.
# gr.Model3D draws meshes and points with Babylon.js: after a load it aims at the bounding box's centre
# at a distance of 1.1 x the box diagonal, which cuts tall models at the top and bottom (vertical field
# of view 0.8 rad), so the server sends the distance (``camera_position``) computed below. Splats are
# drawn by gsplat.js, whose camera is fixed (5 units from the origin, focal length 1132 px) and ignores
# ``camera_position``: there the viewer copy of the splats is centred and scaled to fit that camera.

FILL = 0.9  # the asset spans 90% of the frame's width at most
FILL_V = 0.8  # and 80% of its height: the viewer's title sits over the canvas's top 10%
ASSUMED_ASPECT = 0.9  # canvas width / height assumed for the horizontal fit (a slot of four at 1280 px)
BABYLON_FOV = 0.8  # radians, vertical: Babylon.js's camera default, which gr.Model3D keeps
ORBIT_DEG = (90.0, 75.0)  # gr.Model3D's own starting orbit (alpha pi/2, beta pi/2.4), kept for every asset
GSPLAT_FOCAL_PX = 1132.0  # gsplat.js camera focal length; its field of view follows the canvas size in px
GSPLAT_DISTANCE = 5.0
GSPLAT_FLIP = np.array([1.0, -1.0, -1.0], dtype=np.float32)  # +Y up (ours) -> +Y down (gsplat.js), half a turn
GSPLAT_ORBIT_RAD = (0.5, 0.5)
VIEWER_CANVAS_PX = 300  # the canvas height the splat fit assumes (ui.generate.VIEWER_HEIGHT)


def _view_basis(toward_camera: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(toward camera, screen right, screen up) for a camera with no roll about world +Y."""
    u = toward_camera / np.linalg.norm(toward_camera)
    right = np.cross(np.array([0.0, 1.0, 0.0]), u)
    right /= np.linalg.norm(right)
    return u, right, np.cross(u, right)


def box_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The 8 corners of an axis-aligned box, relative to its centre."""
    half = (np.asarray(hi, float) - np.asarray(lo, float)) / 2.0
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
    return signs * half


def fit_distance(
    corners: np.ndarray, toward_camera: np.ndarray, tan_v: float, tan_h: float, fill: float, fill_v: float | None = None
) -> float:
    """The smallest camera distance from the box centre at which every corner projects within ``fill`` of
    the frame's half-width and ``fill_v`` (default ``fill``) of its half-height (perspective, aimed at the centre)."""
    fill_v = fill if fill_v is None else fill_v
    u, right, up = _view_basis(toward_camera)
    depth_offset = corners @ u  # a corner nearer the camera than the centre needs more distance
    need_h = depth_offset + np.abs(corners @ right) / (tan_h * fill)
    need_v = depth_offset + np.abs(corners @ up) / (tan_v * fill_v)
    return float(max(need_h.max(), need_v.max(), 1e-6))


def babylon_direction(alpha_deg: float, beta_deg: float) -> np.ndarray:
    a, b = np.radians(alpha_deg), np.radians(beta_deg)
    return np.array([np.cos(a) * np.sin(b), np.cos(b), np.sin(a) * np.sin(b)])


def mesh_bounds(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The axis-aligned bounds of everything a .glb / .ply shows (meshes and points)."""
    import trimesh

    scene = trimesh.load(str(path), force="scene")
    bounds = scene.bounds
    if bounds is None:
        raise ValueError(f"{Path(path).name} holds no geometry")
    return np.asarray(bounds[0], float), np.asarray(bounds[1], float)


def viewer_camera(path: str | Path, aspect: float = ASSUMED_ASPECT) -> tuple[float, float, float]:
    """``camera_position`` (alpha, beta in degrees, radius) for gr.Model3D that frames the asset whole."""
    lo, hi = mesh_bounds(path)
    tan_v = float(np.tan(BABYLON_FOV / 2.0))
    radius = fit_distance(box_corners(lo, hi), babylon_direction(*ORBIT_DEG), tan_v, tan_v * aspect, FILL, FILL_V)
    return (ORBIT_DEG[0], ORBIT_DEG[1], round(radius, 4))


def gsplat_direction() -> np.ndarray:
    """From the origin toward gsplat.js's starting camera (its orbit controls: alpha 0.5, beta 0.5)."""
    a, b = GSPLAT_ORBIT_RAD
    return np.array([np.sin(a) * np.cos(b), -np.sin(b), -np.cos(a) * np.cos(b)])


def splat_fit(
    positions: np.ndarray, canvas_px: float = VIEWER_CANVAS_PX, aspect: float = ASSUMED_ASPECT
) -> tuple[np.ndarray, float]:
    """(centre, scale) that put the splats' box at the origin and make it fill gsplat.js's fixed view."""
    lo, hi = np.percentile(positions, 1.0, axis=0), np.percentile(positions, 99.0, axis=0)  # stray splats aside
    corners = box_corners(lo, hi)
    tan_v = canvas_px / (2.0 * GSPLAT_FOCAL_PX)
    needed = fit_distance(corners, gsplat_direction(), tan_v, tan_v * aspect, FILL, FILL_V)  # distance at scale 1
    # distance scales with the box: at scale s the box needs s * needed, and the camera sits at GSPLAT_DISTANCE
    return (lo + hi) / 2.0, GSPLAT_DISTANCE / needed


def _turn_quaternions(q8: np.ndarray) -> np.ndarray:
    """The .splat's uint8 quaternions (w x y z, 128 = 0) turned half a turn about x: r (1, 0, 0, 0) * q."""
    q = (q8.astype(np.float32) - 128.0) / 128.0
    w, x, y, z = q.T
    turned = np.stack([-x, w, -z, y], axis=1)
    return np.clip(np.round(turned * 128.0 + 128.0), 0, 255).astype(np.uint8)


def framed_splat(splat: str | Path, out: str | Path) -> Path:
    """A copy of a .splat centred and scaled to fill gsplat.js's fixed view (positions and sizes scaled alike)
    and turned into its frame: our assets are +Y up, gsplat.js draws +Y down (the 3DGS / OpenCV convention),
    so the copy is turned half a turn about x (y and z negated, each splat's rotation turned with it)."""
    raw = np.fromfile(str(splat), dtype=np.uint8)
    raw = raw[: len(raw) // SPLAT_BYTES * SPLAT_BYTES].reshape(-1, SPLAT_BYTES)
    floats = raw[:, :24].copy().view(np.float32)  # (N, 6): position, scale
    alpha = raw[:, 27]
    opaque = floats[alpha >= 128, :3] if (alpha >= 128).sum() >= 4 else floats[:, :3]
    centre, scale = splat_fit(opaque.astype(np.float64))
    floats[:, :3] = (floats[:, :3] - centre) * scale * GSPLAT_FLIP
    floats[:, 3:6] *= scale
    raw = raw.copy()
    raw[:, :24] = floats.view(np.uint8)
    raw[:, 28:32] = _turn_quaternions(raw[:, 28:32])
    out = Path(out)
    tmp = out.with_suffix(".tmp")
    raw.tofile(str(tmp))
    tmp.replace(out)
    return out


def camera_for(path: str | Path | None) -> dict:
    """The gr.Model3D update that frames ``path``: ``camera_position`` for meshes and points, nothing for splats
    (their viewer copy is framed instead) or when the file cannot be read (the viewer's own framing then)."""
    if not path or str(path).endswith(".splat"):
        return {}
    try:
        return {"camera_position": viewer_camera(path)}
    except Exception:  # a viewer convenience: the asset still shows with the viewer's own framing
        return {}
