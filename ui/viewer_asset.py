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
    """The viewer's file for a ``.splat``: itself when light enough, else ``viewer.splat`` beside it holding
    the first ``max_splats`` splats (the format stores the largest, most opaque ones first)."""
    splat = Path(splat)
    count = splat.stat().st_size // SPLAT_BYTES
    if count <= max_splats:
        return ViewerFile(str(splat))
    out = splat.with_name("viewer.splat")
    if not (out.is_file() and out.stat().st_mtime >= splat.stat().st_mtime):
        with open(splat, "rb") as fh:
            data = fh.read(max_splats * SPLAT_BYTES)
        tmp = out.with_suffix(".splat.tmp")
        tmp.write_bytes(data)
        tmp.replace(out)
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
