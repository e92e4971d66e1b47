"""Asset -> binary glTF (.glb) with vertex colours or a texture, point clouds also as .ply.

Gaussian splats are written three ways: the standard 3DGS .ply (x y z, nx ny nz, f_dc_*, f_rest_*,
opacity, scale_*, rot_*: what the reference code writes and SuperSplat / gsplat.js read), the
compact 32-byte-a-splat .splat (what gr.Model3D shows) and a .glb of their coloured centres.

The run's metadata goes into the glTF ``asset.extras`` (and the scene extras) so that a .glb
carries its own provenance; the same metadata is written as a JSON sidecar by the runner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from methods.base import Asset, Gaussians, Mesh, PointCloud


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
    """Write asset.glb (and points.ply when the asset has a point cloud) into ``out_dir``.

    A splat asset also gets splats.ply (3DGS layout), asset.splat and centres.glb; its asset.glb is
    its mesh when it has one, else the centres.
    """
    out_dir = Path(out_dir)
    files: dict[str, Path] = {}
    if asset.gaussians is not None:
        files["splat_ply"] = export_gaussians_ply(asset.gaussians, out_dir / "splats.ply", metadata)
        files["splat"] = export_splat(asset.gaussians, out_dir / "asset.splat")
        files["centres_glb"] = export_glb(
            Asset(points=gaussian_centres(asset.gaussians)), out_dir / "centres.glb", metadata
        )
    if asset.mesh is not None or asset.points is not None:
        files["glb"] = export_glb(asset, out_dir / "asset.glb", metadata)
    else:
        files["glb"] = files["centres_glb"]
    if asset.points is not None:
        files["ply"] = export_ply(asset.points, out_dir / "points.ply")
    return files


# ----------------------------------------------------------------------------- Gaussian splats

CENTRE_OPACITY = 0.5  # centres of splats at least this opaque go into the points .glb


def _gaussian_ply_fields(sh_coeffs: int) -> list[str]:
    rest = [f"f_rest_{i}" for i in range(3 * (sh_coeffs - 1))]
    return [
        *"x y z nx ny nz f_dc_0 f_dc_1 f_dc_2".split(),
        *rest,
        "opacity",
        *"scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3".split(),
    ]


def gaussian_centres(g: Gaussians, min_opacity: float = CENTRE_OPACITY) -> PointCloud:
    """The centres of the splats at least ``min_opacity`` opaque, with their base colour (all when none is)."""
    keep = g.opacities >= min_opacity
    if not keep.any():
        keep = np.ones(len(g), bool)
    return PointCloud(g.means[keep], g.base_colors()[keep])


def export_gaussians_ply(g: Gaussians, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Binary little-endian PLY in the 3DGS layout; f_rest is channel-major (all R, then G, then B)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    k = g.sh.shape[1]
    columns = [
        g.means,
        np.zeros_like(g.means),
        g.sh[:, 0, :],
        g.sh[:, 1:, :].transpose(0, 2, 1).reshape(len(g), -1),
        g.opacity_logits[:, None],
        g.log_scales,
        g.quats,
    ]
    data = np.ascontiguousarray(np.concatenate(columns, axis=1), dtype="<f4")
    header = ["ply", "format binary_little_endian 1.0"]
    if metadata:
        header.append("comment trilemma3d " + json.dumps(_json_safe(metadata), separators=(",", ":")))
    header.append(f"element vertex {len(g)}")
    header += [f"property float {name}" for name in _gaussian_ply_fields(k)]
    header.append("end_header")
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(("\n".join(header) + "\n").encode() + data.tobytes())
    tmp.replace(path)
    return path


def read_gaussians_ply(path: str | Path) -> Gaussians:
    """Read a 3DGS-layout binary PLY (float properties, any order, SH degree 0-3) as Gaussians."""
    path = Path(path)
    raw = path.read_bytes()
    end = raw.find(b"end_header\n")
    if not raw.startswith(b"ply") or end < 0:
        raise ValueError(f"{path.name} is not a PLY file")
    lines = raw[:end].decode("ascii", "replace").splitlines()
    if "format binary_little_endian 1.0" not in lines:
        raise ValueError(f"{path.name}: only binary little-endian splat PLYs are read")
    count, names, in_vertex = 0, [], False
    for line in lines:
        parts = line.split()
        if parts[:2] == ["element", "vertex"]:
            count, in_vertex = int(parts[2]), True
        elif parts[:1] == ["element"]:
            in_vertex = False
        elif parts[:1] == ["property"] and in_vertex:
            if parts[1] not in ("float", "float32"):
                raise ValueError(f"{path.name}: property {parts[-1]} is {parts[1]}, splat PLYs hold floats")
            names.append(parts[-1])
    body = np.frombuffer(raw, dtype="<f4", count=count * len(names), offset=end + len(b"end_header\n"))
    table = body.reshape(count, len(names))
    col = {name: table[:, i] for i, name in enumerate(names)}
    missing = [n for n in _gaussian_ply_fields(1) if n not in col and not n.startswith("n")]
    if missing:
        raise ValueError(f"{path.name} is not a Gaussian splat PLY (no {', '.join(missing)})")
    rest = sorted((n for n in col if n.startswith("f_rest_")), key=lambda n: int(n.rsplit("_", 1)[1]))
    k = 1 + len(rest) // 3
    sh = np.zeros((count, k, 3), np.float32)
    sh[:, 0] = np.stack([col[f"f_dc_{c}"] for c in range(3)], 1)
    if rest:
        sh[:, 1:] = np.stack([col[n] for n in rest], 1).reshape(count, 3, k - 1).transpose(0, 2, 1)
    return Gaussians(
        np.stack([col["x"], col["y"], col["z"]], 1),
        np.stack([col[f"scale_{i}"] for i in range(3)], 1),
        np.stack([col[f"rot_{i}"] for i in range(4)], 1),
        col["opacity"],
        sh,
    )


def splat_order(g: Gaussians) -> np.ndarray:
    """The .splat order: largest first by volume times opacity (as antimatter15's converter sorts)."""
    size = np.exp(g.log_scales.astype(np.float64).sum(1)) * g.opacities
    return np.argsort(-size, kind="stable")


def export_splat(g: Gaussians, path: str | Path) -> Path:
    """The compact .splat: per splat 3 float32 position, 3 float32 scale, RGBA uint8, quaternion uint8 (w x y z)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    order = splat_order(g)
    record = np.dtype([("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
    out = np.empty(len(g), record)
    out["pos"] = g.means[order]
    out["scale"] = np.exp(g.log_scales[order].astype(np.float64))
    rgba = np.concatenate([g.base_colors()[order], g.opacities[order, None]], 1)
    out["rgba"] = np.clip(np.round(rgba * 255), 0, 255).astype(np.uint8)
    out["rot"] = np.clip(np.round(g.quats[order] * 128 + 128), 0, 255).astype(np.uint8)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(out.tobytes())
    tmp.replace(path)
    return path


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
