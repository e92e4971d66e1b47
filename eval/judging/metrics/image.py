"""Image metrics between a render and a reference image: PSNR, SSIM, LPIPS; foreground alignment.

Conventions: images are float arrays (H, W, 3) in [0, 1] (numpy or torch), already composited
over the same background; an optional ``mask`` (H, W) restricts the average to the foreground.

- PSNR = 10 log10(1 / MSE), MSE over the masked pixels and all channels;
- SSIM (Wang et al. 2004): Gaussian window 11 x 11, sigma 1.5, K1 = 0.01, K2 = 0.03, on each
  channel, averaged over the pixels at least 5 from the border ("valid" filtering; equal to
  ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)``);
- LPIPS (Zhang et al. 2018, v0.1): our re-implementation of the network (VGG16 or AlexNet trunk,
  unit-normalised features, learned 1x1 linear layers). It needs weights: the trunk from
  torchvision's ImageNet checkpoint and the linear layers from the ``lpips`` package. Without
  them LPIPS is not reported: random weights do not measure perception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eval.judging.metrics.means import Means

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _as_tensor(image: Any):
    import torch

    t = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.asarray(image))
    return t.to(torch.float64)


def psnr(pred: Any, target: Any, mask: Any = None, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (inf for identical images)."""
    p, t = _as_tensor(pred), _as_tensor(target)
    if p.shape != t.shape:
        raise ValueError(f"image shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
    err = (p - t) ** 2
    if err.ndim == 3:
        err = err.mean(dim=-1)
    if mask is not None:
        m = _as_tensor(mask)
        if float(m.sum()) == 0:
            raise ValueError("the mask is empty")
        mse = float((err * m).sum() / m.sum())
    else:
        mse = float(err.mean())
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def _gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA):
    import torch

    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g


def ssim_map(pred: Any, target: Any, data_range: float = 1.0):
    """Per-pixel SSIM, mean over channels, on the valid region: (H - 10, W - 10)."""
    import torch.nn.functional as F

    p, t = _as_tensor(pred), _as_tensor(target)
    if p.shape != t.shape:
        raise ValueError(f"image shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
    if p.ndim == 2:
        p, t = p[..., None], t[..., None]
    if min(p.shape[0], p.shape[1]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels")
    x = p.permute(2, 0, 1)[:, None]  # (C, 1, H, W): channels filtered independently
    y = t.permute(2, 0, 1)[:, None]
    g = _gaussian_window()

    def blur(z):
        z = F.conv2d(z, g.view(1, 1, 1, -1))
        return F.conv2d(z, g.view(1, 1, -1, 1))

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s[:, 0].mean(dim=0)


def ssim(pred: Any, target: Any, mask: Any = None, data_range: float = 1.0) -> float:
    """Mean SSIM; with a mask, the mean over masked pixels of the valid region."""
    s = ssim_map(pred, target, data_range)
    if mask is None:
        return float(s.mean())
    r = (SSIM_WINDOW - 1) // 2
    m = _as_tensor(mask)[r:-r, r:-r]
    if float(m.sum()) == 0:
        raise ValueError("the mask is empty inside the SSIM window border")
    return float((s * m).sum() / m.sum())


# ----------------------------------------------------------------------------- LPIPS


def lpips(model: Any, pred: Any, target: Any, mask: Any = None) -> float:
    """LPIPS distance between two (H, W, 3) images in [0, 1]; with a mask, the spatial map's masked mean.

    ``model`` comes from :func:`eval.judging.metrics.lpips_net.load_lpips` (or ``build_lpips`` in tests).
    """
    import torch

    with torch.inference_mode():
        p = _as_tensor(pred).float().permute(2, 0, 1)[None] * 2 - 1
        t = _as_tensor(target).float().permute(2, 0, 1)[None] * 2 - 1
        if mask is None:
            return float(model(p, t))
        d = model(p, t, spatial=True)[0, 0].double()
        m = _as_tensor(mask)
        if float(m.sum()) == 0:
            raise ValueError("the mask is empty")
        return float((d * m).sum() / m.sum())


# ----------------------------------------------------------------------------- foreground alignment


def fit_foreground(rgb: np.ndarray, alpha: np.ndarray, size: int, margin: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Crop to the alpha bounding box, scale the longer side to ``size * (1 - 2 margin)``, centre on white.

    Input and render are both put through this so that framing differences between an input photo
    and the protocol camera do not count as errors. Returns (rgb (size, size, 3), mask (size, size)).
    """
    from PIL import Image

    a = np.asarray(alpha, dtype=np.float32)
    rgb = np.asarray(rgb, dtype=np.float32)
    ys, xs = np.nonzero(a > 0.5)
    if len(ys) == 0:
        return np.ones((size, size, 3), np.float32), np.zeros((size, size), np.float32)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop_rgb, crop_a = rgb[y0:y1, x0:x1], a[y0:y1, x0:x1]
    h, w = crop_a.shape
    inner = size * (1.0 - 2.0 * margin)
    scale = inner / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    premult = np.concatenate([crop_rgb * crop_a[..., None], crop_a[..., None]], axis=-1)
    resized = np.stack(
        [np.asarray(Image.fromarray(premult[..., c]).resize((nw, nh), Image.BICUBIC)) for c in range(4)], axis=-1
    )
    resized = np.clip(resized, 0.0, 1.0)
    out_a = np.zeros((size, size), np.float32)
    out_rgb = np.zeros((size, size, 3), np.float32)
    top, left = (size - nh) // 2, (size - nw) // 2
    out_a[top : top + nh, left : left + nw] = resized[..., 3]
    out_rgb[top : top + nh, left : left + nw] = resized[..., :3]
    composite = out_rgb + (1.0 - out_a[..., None])  # premultiplied colour over white
    return np.clip(composite, 0.0, 1.0), out_a


def split_rgba(image: Any) -> tuple[np.ndarray, np.ndarray]:
    """(rgb, alpha) float32 in [0, 1] from a PIL image or an (H, W, 3|4) array; opaque when no alpha."""
    arr = np.asarray(image)
    arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    alpha = arr[..., 3] if arr.shape[-1] == 4 else np.ones(arr.shape[:2], np.float32)
    return arr[..., :3], alpha


@dataclass
class ImageQuality(Means):
    """Accumulates PSNR / SSIM (and LPIPS when a model is given) over image pairs; ``compute`` gives means."""

    lpips_model: Any = None
    values: dict[str, list[float]] = field(default_factory=dict)

    def update(self, pred: Any, target: Any, mask: Any = None) -> None:
        row = {"psnr": psnr(pred, target, mask), "ssim": ssim(pred, target, mask)}
        if self.lpips_model is not None:
            row["lpips"] = lpips(self.lpips_model, pred, target, mask)
        self.add(row)
