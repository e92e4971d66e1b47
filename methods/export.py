"""Asset -> binary glTF (.glb) with vertex colours or a texture, point clouds also as .ply.

The run's metadata goes into the glTF ``asset.extras`` (and the scene extras) so that a .glb
carries its own provenance; the same metadata is written as a JSON sidecar by the runner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from methods.base import Asset, Mesh, PointCloud


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_default))


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def to_trimesh(mesh: Mesh):
    """A trimesh.Trimesh with the mesh's texture or vertex colours (grey when it has neither)."""
    import trimesh

    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    if mesh.texture is not None and mesh.uv is not None:
        material = trimesh.visual.material.PBRMaterial(
            baseColorTexture=mesh.texture.convert("RGBA"), metallicFactor=0.0
        )
        tm.visual = trimesh.visual.TextureVisuals(uv=mesh.uv, material=material)
    else:
        colors = mesh.vertex_colors if mesh.vertex_colors is not None else np.full((len(mesh.vertices), 3), 0.7)
        rgba = np.concatenate([colors, np.ones((len(colors), 1))], axis=1)
        tm.visual = trimesh.visual.ColorVisuals(tm, vertex_colors=(rgba * 255).round().astype(np.uint8))
    return tm


def to_trimesh_points(points: PointCloud):
    import trimesh

    colors = points.colors if points.colors is not None else np.full((len(points.points), 3), 0.7)
    rgba = (np.concatenate([colors, np.ones((len(colors), 1))], axis=1) * 255).round().astype(np.uint8)
    return trimesh.PointCloud(points.points, colors=rgba)


def export_glb(asset: Asset, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write the asset as .glb: the mesh if it has one, else the point cloud (glTF POINTS)."""
    import trimesh
    from trimesh.exchange.gltf import export_glb as _export

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scene = trimesh.Scene()
    if asset.mesh is not None:
        scene.add_geometry(to_trimesh(asset.mesh), geom_name="mesh")
    else:
        scene.add_geometry(to_trimesh_points(asset.points), geom_name="points")
    extras = _json_safe({"trilemma3d": metadata or {}})
    scene.metadata.update(extras)

    def put_extras(tree: dict) -> None:
        tree.setdefault("asset", {})["extras"] = extras

    data = _export(scene, tree_postprocessor=put_extras)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # never leave a half-written asset where a viewer may read it
    return path


def export_ply(points: PointCloud, path: str | Path) -> Path:
    """Binary PLY of a coloured point cloud."""
    from trimesh.exchange.ply import export_ply as _export

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_export(to_trimesh_points(points), encoding="binary"))
    return path


def export_asset(asset: Asset, out_dir: str | Path, metadata: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write asset.glb (and points.ply when the asset has a point cloud) into ``out_dir``."""
    out_dir = Path(out_dir)
    files = {"glb": export_glb(asset, out_dir / "asset.glb", metadata)}
    if asset.points is not None:
        files["ply"] = export_ply(asset.points, out_dir / "points.ply")
    return files


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The Trilemma3D metadata stored in a .glb's asset extras (empty when it has none)."""
    import pygltflib

    gltf = pygltflib.GLTF2().load(str(path))
    extras = gltf.asset.extras or {}
    return extras.get("trilemma3d", {}) if isinstance(extras, dict) else {}


def load_asset(path: str | Path) -> Asset:
    """Read a mesh file (.glb/.gltf/.obj/.stl/.ply) back as an Asset, colours kept where present.

    A multi-part scene is merged into one mesh in world coordinates; glTF files are +Y up.
    """
    import trimesh

    path = Path(path)
    try:
        loaded = trimesh.load(str(path), process=False)
    except Exception as exc:
        raise ValueError(f"{path.name} is not a mesh file that can be read: {exc}") from None
    if isinstance(loaded, trimesh.Scene):
        geoms = [g for g in loaded.dump() if isinstance(g, (trimesh.Trimesh, trimesh.PointCloud))]
        if not geoms:
            raise ValueError(f"{path.name} holds no mesh or points")
        meshes = [g for g in geoms if isinstance(g, trimesh.Trimesh)]
        loaded = trimesh.util.concatenate(meshes) if meshes else geoms[0]
    if isinstance(loaded, trimesh.PointCloud):
        colors = np.asarray(loaded.colors)[:, :3] if len(getattr(loaded, "colors", [])) else None
        return Asset(points=PointCloud(np.asarray(loaded.vertices), colors))
    mesh = loaded
    colors = None
    uv = texture = None
    visual = mesh.visual
    if visual.kind == "texture" and getattr(visual, "uv", None) is not None:
        material = visual.material
        image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
        if image is not None:
            uv, texture = np.asarray(visual.uv, dtype=np.float32), image
        colors = np.asarray(visual.to_color().vertex_colors)[:, :3]
    elif visual.kind == "vertex":
        colors = np.asarray(visual.vertex_colors)[:, :3]
    elif visual.kind == "face":
        colors = np.asarray(visual.to_color().vertex_colors)[:, :3] if hasattr(visual, "to_color") else None
    return Asset(mesh=Mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), colors, uv, texture))
