"""Hunyuan3D-2's input (``ImageProcessorV2``): recentre the cut-out object, composite on white, resize (no torch).

The cut-out is the project's own (``methods.triposr.preprocess.cut_out``: the alpha channel when the image has
transparency, else border-colour background removal), where the official code runs rembg on an RGB input.
The rest follows the official processor, with OpenCV's resampling rewritten in numpy (OpenCV is not a
dependency): the object's box (its last row and column dropped, as officially), scaled with OpenCV's
``INTER_AREA`` so its longer side is ``int(size * (1 - border_ratio))`` of a transparent ``size`` x ``size``
canvas (``size`` = the input's longer side), composited on white (truncated to uint8), then ``INTER_CUBIC``
to the model's resolution and scaled to [-1, 1].
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from methods.base import InvalidInput, load_image

BORDER_RATIO = 0.15  # official ImageProcessorV2
SIZE = 512
MAX_SIDE = 2048  # larger inputs are downscaled first
_COEF_BITS = 11
_COEF_SCALE = 1 << _COEF_BITS


def _area_table(src: int, dst: int) -> np.ndarray:
    """OpenCV's INTER_AREA weights for shrinking ``src`` to ``dst`` samples: (dst, src) float32 matrix."""
    scale = src / dst
    table = np.zeros((dst, src), np.float64)
    for dx in range(dst):
        fsx1 = dx * scale
        fsx2 = fsx1 + scale
        cell = min(scale, src - fsx1)
        sx1, sx2 = math.ceil(fsx1), math.floor(fsx2)
        sx2 = min(sx2, src - 1)
        sx1 = min(sx1, sx2)
        if sx1 - fsx1 > 1e-3:
            table[dx, sx1 - 1] += np.float32((sx1 - fsx1) / cell)
        for sx in range(sx1, sx2):
            table[dx, sx] += np.float32(1.0 / cell)
        if fsx2 - sx2 > 1e-3:
            table[dx, sx2] += np.float32(min(min(fsx2 - sx2, 1.0), cell) / cell)
    return table


def _linear_area_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's INTER_AREA when enlarging (linear with area-style fractions): index (dst, 2), fixed-point (dst, 2)."""
    scale = src / dst
    inv = dst / src
    idx = np.zeros((dst, 2), np.int64)
    coef = np.zeros((dst, 2), np.int64)
    for dx in range(dst):
        sx = math.floor(dx * scale)
        fx = np.float32((dx + 1) - (sx + 1) * inv)
        fx = np.float32(0.0) if fx <= 0 else np.float32(fx - math.floor(fx))
        taps = [sx, sx + 1]
        if sx < 0:
            taps, fx = [0, 0], np.float32(0.0)
        if sx + 1 >= src:
            taps, fx = [src - 1, src - 1], np.float32(0.0)
        idx[dx] = taps
        c0 = int(np.rint(np.float32(1.0 - fx) * _COEF_SCALE))
        c1 = int(np.rint(fx * np.float32(_COEF_SCALE)))
        coef[dx] = [c0, c1]
    return idx, coef


def resize_area(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)`` for uint8 (H, W, C)."""
    h, w = img.shape[:2]
    if (h, w) == (height, width):
        return img.copy()
    if width <= w and height <= h:
        ty, tx = _area_table(h, height), _area_table(w, width)
        out = np.einsum("yh,hwc->ywc", ty, img.astype(np.float64), optimize=True)
        out = np.einsum("ywc,xw->yxc", out, tx, optimize=True)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    iy, cy = _linear_area_taps(h, height)
    ix, cx = _linear_area_taps(w, width)
    x = img.astype(np.int64)
    rows = x[:, ix[:, 0]] * cx[None, :, 0, None] + x[:, ix[:, 1]] * cx[None, :, 1, None]  # (h, width, C) x2048
    # OpenCV's vector path: 16-bit products of (row >> 4) and the weights, high halves summed, (s + 2) >> 2
    out = ((rows[iy[:, 0]] >> 4) * cy[:, 0, None, None]) >> 16
    out = out + (((rows[iy[:, 1]] >> 4) * cy[:, 1, None, None]) >> 16)
    return np.clip((out + 2) >> 2, 0, 255).astype(np.uint8)


def _cubic_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """Bicubic taps (A = -0.75, OpenCV's, replicated border, no antialiasing): index (dst, 4), weights (dst, 4)."""
    fx = (np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5
    sx = np.floor(fx)
    x = fx - sx
    a = -0.75
    c0 = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a
    c1 = ((a + 2) * x - (a + 3)) * x * x + 1
    c2 = ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1
    idx = np.clip(sx.astype(np.int64)[:, None] + np.arange(-1, 3)[None], 0, src - 1)
    return idx, np.stack([c0, c1, c2, 1 - c0 - c1 - c2], axis=1)


def resize_cubic(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.resize(img, (width, height), interpolation=cv2.INTER_CUBIC)`` for uint8 (H, W, C).

    Computed in float64 and rounded: this equals OpenCV 5's output on the fixtures bit for bit (its integer
    fixed-point path of OpenCV 4 differs by one level on ~1% of pixels).
    """
    h, w = img.shape[:2]
    if (h, w) == (height, width):
        return img.copy()
    iy, cy = _cubic_taps(h, height)
    ix, cx = _cubic_taps(w, width)
    x = img.astype(np.float64)
    rows = sum(x[:, ix[:, k]] * cx[None, :, k, None] for k in range(4))
    out = sum(rows[iy[:, k]] * cy[:, k, None, None] for k in range(4))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def recenter(rgba: np.ndarray, border_ratio: float = BORDER_RATIO) -> np.ndarray:
    """The official ``recenter``: the object on a white ``size`` x ``size`` canvas (RGB uint8)."""
    size = max(rgba.shape[0], rgba.shape[1])
    ys, xs = np.nonzero(rgba[..., 3])
    x_min, x_max, y_min, y_max = ys.min(), ys.max(), xs.min(), xs.max()
    h, w = x_max - x_min, y_max - y_min
    if h == 0 or w == 0:  # a one-pixel-thin object: keep its last row/column rather than crop it away
        x_max, y_max = x_max + 1, y_max + 1
        h, w = x_max - x_min, y_max - y_min
    desired = int(size * (1 - border_ratio))
    scale = desired / max(h, w)
    h2, w2 = max(1, int(h * scale)), max(1, int(w * scale))
    x2_min, y2_min = (size - h2) // 2, (size - w2) // 2
    canvas = np.zeros((size, size, 4), np.uint8)
    canvas[x2_min : x2_min + h2, y2_min : y2_min + w2] = resize_area(rgba[x_min:x_max, y_min:y_max], w2, h2)
    m = canvas[..., 3:4].astype(np.float32) / 255.0
    rgb = canvas[..., :3].astype(np.float32) * m + 255.0 * (1 - m)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def to_tensor_array(rgb: np.ndarray, size: int) -> np.ndarray:
    """(1, 3, size, size) float32 in [-1, 1]: the recentred image resized (INTER_CUBIC) and scaled."""
    resized = resize_cubic(rgb, size, size)
    return (resized.astype(np.float32) / 255.0 * 2 - 1).transpose(2, 0, 1)[None].copy()


def prepare(
    image: Image.Image | str | bytes, size: int = SIZE, border_ratio: float = BORDER_RATIO
) -> tuple[np.ndarray, Image.Image, list[str]]:
    """The model input (1, 3, size, size) in [-1, 1], the recentred image for the record, and notes."""
    from methods.triposr.preprocess import cut_out

    image = load_image(image)
    notes = []
    if min(image.size) < 2:
        raise InvalidInput(f"the image is {image.width}x{image.height} pixels: too small to show an object")
    if max(image.size) > MAX_SIDE:
        scale = MAX_SIDE / max(image.size)
        new = (max(8, round(image.width * scale)), max(8, round(image.height * scale)))
        notes.append(f"image downscaled from {image.width}x{image.height} to {new[0]}x{new[1]} before cutting out")
        image = image.resize(new, Image.Resampling.LANCZOS)
    rgba, how = cut_out(image)
    notes.append(f"object cut out by {how}; recentred with border ratio {border_ratio:g} on white (official)")
    rgb = recenter(rgba, border_ratio)
    return to_tensor_array(rgb, size), Image.fromarray(rgb), notes
