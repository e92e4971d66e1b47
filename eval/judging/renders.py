"""Keep what the metrics saw: the protocol's renders of an asset, written beside it as thumbnails.

``save_protocol_renders`` writes into ``<run>/renders/``: the camera ring's colour and geometry
renders (``color_00.png`` ..., ``geometry_00.png`` ...), a colour turntable (``turntable.gif``),
for an image input the input beside the front render (``input.png``, ``front.png``), for a
video input a held-out frame beside the method's rendering of it (``heldout_gt.png``,
``heldout_pred.png``), and ``renders.json`` listing them with captions and the render settings.
The ring images are the very arrays the metrics were computed on, only downsized.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from methods.base import Asset, Inputs

RENDERS_DIR = "renders"
MANIFEST = "renders.json"
THUMBNAIL = 160  # pixels, the longer side
TURNTABLE_FRAMES = 16
TURNTABLE_RESOLUTION = 128


def _thumb(image) -> Any:
    from PIL import Image

    if isinstance(image, np.ndarray):
        array = image if image.dtype == np.uint8 else (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
        image = Image.fromarray(array[..., :3] if array.ndim == 3 else array)
    image = image.copy()
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    return image


def _on_white(image) -> Any:
    from PIL import Image

    if image.mode in ("RGBA", "LA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def save_protocol_renders(
    made: dict[str, Any], views: int, asset: Asset, inputs: Inputs, folder: str | Path
) -> dict[str, Any]:
    """Write the renders. ``made``: the protocol's renders so far (``color`` / ``geometry`` / ``front``);
    those the metrics did not need are rendered here from the same cameras at thumbnail size."""
    from eval.judging.render import camera_ring, front_camera, render, render_modes, render_turntable

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"ring": [], "pairs": [], "turntable": None}
    small = {"resolution": THUMBNAIL, "supersample": 1}
    if "color" in made and "geometry" in made:
        color, geometry = made["color"], made["geometry"]
        manifest["source"] = "the renders the metrics were computed on, downsized"
    else:
        ring = render_modes(asset, camera_ring(views), **small)
        color, geometry = ring["color"], ring["geometry"]
        manifest["source"] = "the protocol's camera ring, rendered at thumbnail size"
    for i, (c, g, camera) in enumerate(zip(color.rgb, geometry.rgb, color.cameras, strict=True)):
        names = {"color": f"color_{i:02d}.png", "geometry": f"geometry_{i:02d}.png"}
        _thumb(c).save(folder / names["color"])
        _thumb(g).save(folder / names["geometry"])
        manifest["ring"].append({**names, "azimuth": camera.azimuth, "elevation": camera.elevation})
    manifest["settings"] = dict(color.settings)
    if inputs.image is not None:
        _thumb(_on_white(inputs.image)).save(folder / "input.png")
        front = made["front"] if "front" in made else render(asset, [front_camera()], **small)
        _thumb(front.rgb[0]).save(folder / "front.png")
        manifest["pairs"].append({"a": "input.png", "b": "front.png", "caption": "input | front render"})
    gt, pred = asset.views.get("heldout_gt"), asset.views.get("heldout_pred")
    if gt is not None and pred is not None and len(gt) and len(pred):
        _thumb(np.asarray(gt[0], dtype=np.float32)).save(folder / "heldout_gt.png")
        _thumb(np.asarray(pred[0], dtype=np.float32)).save(folder / "heldout_pred.png")
        pair = {"a": "heldout_gt.png", "b": "heldout_pred.png", "caption": "held-out frame | its rendering"}
        manifest["pairs"].append(pair)
    render_turntable(asset, folder / "turntable.gif", frames=TURNTABLE_FRAMES, resolution=TURNTABLE_RESOLUTION)
    manifest["turntable"] = "turntable.gif"
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str), encoding="utf-8")
    return manifest


def gallery(run_folder: str | Path) -> tuple[list[tuple[str, str]], str | None]:
    """(path, caption) thumbnails of a run's saved renders, pairs first, and its turntable GIF (or None)."""
    folder = Path(run_folder) / RENDERS_DIR
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [], None
    items = []
    for pair in manifest.get("pairs", []):
        a, b = pair["caption"].split(" | ") if " | " in pair["caption"] else (pair["a"], pair["b"])
        items += [(str(folder / pair["a"]), a), (str(folder / pair["b"]), b)]
    for view in manifest.get("ring", []):
        items.append((str(folder / view["color"]), f"colour {view['azimuth']:g}°"))
    for view in manifest.get("ring", []):
        items.append((str(folder / view["geometry"]), f"geometry {view['azimuth']:g}°"))
    gif = manifest.get("turntable")
    items = [(p, c) for p, c in items if Path(p).is_file()]
    return items, (str(folder / gif) if gif and (folder / gif).is_file() else None)


INPUT_DIR = "input"
MAX_INPUT_FRAMES = 8


def save_input(inputs: Inputs, run_folder: str | Path) -> list[str]:
    """Keep the input beside the asset, so that the Arena and the Runs tab show it rather than its name:
    ``input/image.png`` for an image, up to ``MAX_INPUT_FRAMES`` evenly chosen frame thumbnails for views."""
    folder = Path(run_folder) / INPUT_DIR
    written = []
    if inputs.image is not None:
        folder.mkdir(parents=True, exist_ok=True)
        image = inputs.image.copy()
        image.thumbnail((512, 512))
        image.save(folder / "image.png")
        written.append(str(folder / "image.png"))
    elif inputs.frames:
        folder.mkdir(parents=True, exist_ok=True)
        picks = np.unique(np.linspace(0, len(inputs.frames) - 1, min(len(inputs.frames), MAX_INPUT_FRAMES)).round())
        for i in picks.astype(int):
            path = folder / f"frame_{i:03d}.jpg"
            _thumb(_on_white(inputs.frames[i])).save(path, quality=90)
            written.append(str(path))
    return written


def input_files(run_folder: str | Path) -> list[str]:
    """The kept input of a run (see :func:`save_input`), image first; empty for a prompt or a video file."""
    folder = Path(run_folder) / INPUT_DIR
    if not folder.is_dir():
        return []
    return [str(p) for p in sorted(folder.iterdir()) if p.suffix.lower() in (".png", ".jpg")]
