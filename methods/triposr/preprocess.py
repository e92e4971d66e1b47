"""TripoSR's input: the object cut out, resized to the official foreground ratio, composited on grey (no torch).

The cut-out is the project's own: the alpha channel when the image has transparency (as the official
``remove_background`` keeps an RGBA input that has it), else the border-colour background removal the
image path already uses (``methods.shap_e``), where the official code runs rembg.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from methods.base import InvalidInput, load_image

FOREGROUND_RATIO = 0.85  # official run.py default
GREY = 0.5  # official composite background
MAX_SIDE = 2048  # larger inputs are downscaled first (the model sees 512 px)
BORDER_TOLERANCE = 0.1  # max channel difference from the border colour that still counts as background
MIN_FOREGROUND = 1e-3  # fraction of pixels


def cut_out(image: Image.Image) -> tuple[np.ndarray, str]:
    """RGBA uint8 with the object opaque and the background transparent, and how the cut was made."""
    from methods.shap_e import _foreground_from_border

    rgba = np.asarray(image.convert("RGBA")).copy()
    alpha = rgba[..., 3]
    if alpha.min() < 255:
        how = "alpha"
        mask = alpha > 0
    else:
        how = "border colour"
        mask = _foreground_from_border(rgba[..., :3].astype(np.float32) / 255.0, BORDER_TOLERANCE)
        rgba[..., 3] = np.where(mask, 255, 0).astype(np.uint8)
    if mask.sum() < max(4, MIN_FOREGROUND * mask.size):
        raise InvalidInput(
            "no object found in the image: it is all background (transparent or one plain colour); "
            "give a picture of one object, ideally on a transparent or plain background"
        )
    return rgba, how


def resize_foreground(rgba: np.ndarray, ratio: float) -> np.ndarray:
    """The official ``resize_foreground``: crop to alpha > 0, pad to a square, pad so the object spans ``ratio``.

    As officially, the crop is ``[y1:y2, x1:x2]`` (the last row and column of the object are dropped) and the
    padding is transparent black, floor half on the top/left.
    """
    ys, xs = np.nonzero(rgba[..., 3] > 0)
    fg = rgba[ys.min() : ys.max(), xs.min() : xs.max()]
    if fg.size == 0:  # a one-pixel-wide object: keep it rather than crop it away
        fg = rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    size = max(fg.shape[0], fg.shape[1])
    out = _pad_centre(fg, size, size)
    new_size = int(size / ratio)
    return _pad_centre(out, new_size, new_size)


def _pad_centre(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    top, left = (height - arr.shape[0]) // 2, (width - arr.shape[1]) // 2
    pads = ((top, height - arr.shape[0] - top), (left, width - arr.shape[1] - left), (0, 0))
    return np.pad(arr, pads, mode="constant", constant_values=0)


def composite_grey(rgba: np.ndarray) -> Image.Image:
    """Over grey 0.5 in float32, truncated to uint8 (as the official run.py)."""
    x = rgba.astype(np.float32) / 255.0
    rgb = x[..., :3] * x[..., 3:4] + (1 - x[..., 3:4]) * GREY
    return Image.fromarray((rgb * 255.0).astype(np.uint8))


def prepare(
    image: Image.Image | str | bytes, foreground_ratio: float = FOREGROUND_RATIO
) -> tuple[Image.Image, list[str]]:
    """The RGB image TripoSR is conditioned on, and notes for the record."""
    image = load_image(image)
    notes = []
    if max(image.size) > MAX_SIDE:
        scale = MAX_SIDE / max(image.size)
        size = (max(8, round(image.width * scale)), max(8, round(image.height * scale)))
        notes.append(f"image downscaled from {image.width}x{image.height} to {size[0]}x{size[1]} before cutting out")
        image = image.resize(size, Image.Resampling.LANCZOS)
    rgba, how = cut_out(image)
    notes.append(f"object cut out by {how}; foreground ratio {foreground_ratio:g}, grey 0.5 background (official)")
    return composite_grey(resize_foreground(rgba, foreground_ratio)), notes
