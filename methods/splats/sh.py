"""Real spherical harmonics up to degree 3 in the 3DGS convention, and their rotation.

``sh_basis`` works on numpy arrays and torch tensors alike (only arithmetic and a stack), so the
asset code (numpy, no torch) and the rasteriser (torch) share one definition of the basis.
"""

from __future__ import annotations

from typing import Any

import numpy as np

C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)
MAX_SH_DEGREE = 3


def sh_coeffs(degree: int) -> int:
    """Coefficients per colour channel for an SH degree (1, 4, 9 or 16)."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"SH degree must be 0..{MAX_SH_DEGREE}, got {degree}")
    return (degree + 1) ** 2


def sh_degree_of(coeffs: int) -> int:
    """The SH degree whose basis has ``coeffs`` functions; ValueError for other counts."""
    for d in range(MAX_SH_DEGREE + 1):
        if (d + 1) ** 2 == coeffs:
            return d
    raise ValueError(f"{coeffs} SH coefficients per channel is not 1, 4, 9 or 16")


def sh_basis(dirs: Any, degree: int) -> Any:
    """(..., (degree+1)^2) basis values at unit directions ``dirs`` (..., 3); numpy or torch in, same out."""
    x, y, z = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    out = [x * 0 + C0]
    if degree >= 1:
        out += [-C1 * y, C1 * z, -C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [C2[0] * xy, C2[1] * yz, C2[2] * (2 * zz - xx - yy), C2[3] * xz, C2[4] * (xx - yy)]
    if degree >= 3:
        out += [
            C3[0] * y * (3 * xx - yy),
            C3[1] * xy * z,
            C3[2] * y * (4 * zz - xx - yy),
            C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            C3[4] * x * (4 * zz - xx - yy),
            C3[5] * z * (xx - yy),
            C3[6] * x * (xx - 3 * yy),
        ]
    if isinstance(dirs, np.ndarray):
        return np.stack(out, -1)
    import torch

    return torch.stack(out, -1)


def rgb_to_sh0(rgb: Any) -> Any:
    return (rgb - 0.5) / C0


def sh0_to_rgb(sh0: Any) -> Any:
    return sh0 * C0 + 0.5


def rotate_sh(sh: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """SH coefficients (N, K, 3) of colour functions turned by ``rotation`` (3x3): c'(d) = c(R^T d).

    Each band l mixes only within itself; its (2l+1)^2 matrix is solved exactly (least squares on
    more directions than unknowns) from the basis at directions and at their rotated copies.
    """
    sh = np.asarray(sh, dtype=np.float64)
    degree = sh_degree_of(sh.shape[1])
    rng = np.random.default_rng(0)
    dirs = rng.normal(size=(64, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    y = sh_basis(dirs, degree)
    y_rot = sh_basis(dirs @ np.asarray(rotation, dtype=np.float64), degree)  # rows: R^T d
    out = np.empty_like(sh)
    out[:, 0] = sh[:, 0]
    for band in range(1, degree + 1):
        lo, hi = band * band, (band + 1) ** 2
        # y_rot[:, band] = y[:, band] @ M  ->  c'(d) = sum_k sh_k y_rot_k(d) = sum_j (M sh)_j y_j(d)
        m = np.linalg.lstsq(y[:, lo:hi], y_rot[:, lo:hi], rcond=None)[0]
        out[:, lo:hi] = np.einsum("jk,nkc->njc", m, sh[:, lo:hi])
    return out
