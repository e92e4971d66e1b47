"""TripoSG's input: the object cut out, composited on white, cropped and padded by 10% (no torch).

The cut-out is the project's own (``methods.triposr.preprocess.cut_out``: the alpha channel when the image has
transparency, else border-colour background removal), where the official script runs BriaRMBG-1.4 (non-commercial
weights) on images without a usable alpha. The rest is the official ``scripts/image_process.py`` arithmetic:
composite ``rgb/255 * a + bg * (1 - a)`` in float32, crop to the bounding box of ``alpha > 0`` (inclusive),
pad with the background (10% of the longer side, the shorter side padded to match), truncate to uint8.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from methods.base import InvalidInput, load_image
from methods.triposr.preprocess import cut_out

BACKGROUND = (1.0, 1.0, 1.0)  # the official driver's bg_color
PADDING_RATIO = 0.1
MAX_SIDE = 2000  # the official load_image shrinks larger inputs to this
MIN_SIDE = 16


def compose(rgba: np.ndarray, background=BACKGROUND, padding_ratio: float = PADDING_RATIO) -> Image.Image:
    """The official ``load_image`` + ``prepare_image`` on an RGBA uint8 array with a valid alpha."""
    alpha = rgba[..., 3]
    rows, cols = np.nonzero(alpha > 0)
    if rows.size == 0:
        raise InvalidInput("no object found in the image: it is all background")
    x, y = int(cols.min()), int(rows.min())
    w, h = int(cols.max()) - x + 1, int(rows.max()) - y + 1
    rgb = rgba[..., :3].astype(np.float32) / np.float32(255.0)
    a = (alpha.astype(np.float32) / np.float32(255.0))[..., None]
    bg = np.asarray(background, dtype=np.float32)
    composite = rgb * a + bg * (np.float32(1.0) - a)
    if w > h:
        side = int(w * padding_ratio)
        top = int(side + (w - h) / 2)
        pads = ((top, top), (side, side))
    else:
        top = int(h * padding_ratio)
        side = int(top + (h - w) / 2)
        pads = ((top, top), (side, side))
    crop = composite[y : y + h, x : x + w]
    padded = np.pad(crop, (*pads, (0, 0)), mode="constant", constant_values=np.float32(background[0]))
    return Image.fromarray((padded * np.float32(255.0)).astype(np.uint8))


def prepare(image: Image.Image | str | bytes) -> tuple[Image.Image, list[str]]:
    """The RGB image TripoSG is conditioned on, and notes for the record."""
    image = load_image(image)
    if min(image.size) < MIN_SIDE:
        raise InvalidInput(
            f"the image is {image.width}x{image.height} px; TripoSG needs at least {MIN_SIDE} px on each side"
        )
    notes = []
    if max(image.size) > MAX_SIDE:
        scale = MAX_SIDE / max(image.size)
        size = (max(MIN_SIDE, int(image.width * scale)), max(MIN_SIDE, int(image.height * scale)))
        notes.append(f"image downscaled from {image.width}x{image.height} to {size[0]}x{size[1]} (official limit)")
        image = image.resize(size, Image.Resampling.BOX)
    rgba, how = cut_out(image)
    notes.append(f"object cut out by {how}; white background, 10% padding (official)")
    return compose(rgba), notes
