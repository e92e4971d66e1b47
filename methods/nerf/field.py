"""The radiance field: density from a dense grid, view-dependent colour from a grid encoding and a small MLP.

Pure PyTorch, the same code on a CPU and on CUDA. The field lives in the cube [-1, 1]^3.

- Density: a dense ``resolution^3`` grid of raw values, trilinearly interpolated then activated
  (``softplus(raw + shift)``, "post-activation" as in DVGO, Sun et al. 2022): sharp surfaces at a
  low resolution, one ``grid_sample`` per point, and a conservative occupancy bound for free.
- Colour features: multi-scale tri-planes with Hadamard products (K-Planes, Fridovich-Keil et
  al. 2023; ``encoding="planes"``) or a multi-resolution hash grid (Instant-NGP, Müller et al.
  2022; ``encoding="hash"``). Both feed a small MLP with the view direction in spherical harmonics.

Why not the hash grid for everything: in pure PyTorch on a CPU its gather / scatter costs ~10 us a
point, the planes ~0.5 us (``grid_sample`` is one vectorised kernel). The renderer evaluates colour
only where a sample carries weight, so colour runs on a few samples a ray and density on the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.nerf import ENCODINGS


@dataclass
class FieldConfig:
    resolution: int = 128  # density grid, final
    start_resolution: int = 64  # density grid, first stage (progressive growth)
    alpha_init: float = 0.01  # opacity of one voxel at initialisation
    encoding: str = "planes"
    plane_resolutions: tuple[int, ...] = (32, 64, 128)
    plane_channels: int = 8
    hash_levels: int = 12
    hash_log2_size: int = 17
    hash_features: int = 2
    hash_base_resolution: int = 16
    hash_max_resolution: int = 512
    hidden: int = 32
    sh_degree: int = 3


class DensityGrid(nn.Module):
    """Raw density on a dense lattice over [-1, 1]^3 (stored [z, y, x] as grid_sample wants), post-activated."""

    def __init__(self, resolution: int, alpha_init: float = 0.01):
        super().__init__()
        self.raw = nn.Parameter(torch.zeros(1, 1, resolution, resolution, resolution))
        self.shift = math.log(1.0 / (1.0 - alpha_init) - 1.0)

    @property
    def resolution(self) -> int:
        return self.raw.shape[-1]

    @property
    def voxel(self) -> float:
        return 2.0 / (self.resolution - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Density (1 / unit length of the field cube) at points ``x`` (N, 3) in [-1, 1]."""
        raw = F.grid_sample(self.raw, x.view(1, -1, 1, 1, 3), mode="bilinear", align_corners=True).view(-1)
        return F.softplus(raw + self.shift) / self.voxel

    @torch.no_grad()
    def cell_max(self) -> torch.Tensor:
        """The largest density inside each lattice cell, indexed [x, y, z] (an exact bound: softplus is monotone)."""
        top = F.max_pool3d(self.raw, kernel_size=2, stride=1)[0, 0]
        return (F.softplus(top + self.shift) / self.voxel).permute(2, 1, 0).contiguous()

    @torch.no_grad()
    def upsample(self, resolution: int) -> None:
        new = F.interpolate(self.raw.data, size=(resolution,) * 3, mode="trilinear", align_corners=True)
        self.raw = nn.Parameter(new)

    def total_variation(self, sample: int = 0) -> torch.Tensor:
        """Mean squared difference of neighbouring raw values (on a random block when ``sample`` > 0)."""
        g = self.raw[0, 0]
        if sample and sample < g.shape[0]:
            i, j, k = (int(v) for v in torch.randint(0, g.shape[0] - sample, (3,)))
            g = g[i : i + sample, j : j + sample, k : k + sample]
        return (
            ((g[1:] - g[:-1]) ** 2).mean()
            + ((g[:, 1:] - g[:, :-1]) ** 2).mean()
            + ((g[:, :, 1:] - g[:, :, :-1]) ** 2).mean()
        )


class PlaneEncoding(nn.Module):
    """Multi-scale tri-planes (xy, xz, yz); per scale the three bilinear lookups are multiplied (K-Planes)."""

    def __init__(self, resolutions: tuple[int, ...] = (32, 64, 128), channels: int = 16):
        super().__init__()
        self.planes = nn.ParameterList(
            [nn.Parameter(torch.empty(3, channels, r, r).uniform_(0.1, 0.5)) for r in resolutions]
        )
        self.out_dim = channels * len(resolutions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coords = torch.stack([x[:, [0, 1]], x[:, [0, 2]], x[:, [1, 2]]])[:, :, None, :]  # (3, N, 1, 2)
        feats = []
        for plane in self.planes:
            f = F.grid_sample(plane, coords, mode="bilinear", align_corners=True)[..., 0]  # (3, C, N)
            feats.append((f[0] * f[1] * f[2]).t())
        return torch.cat(feats, -1)


class _HashGather(torch.autograd.Function):
    """Weighted gather of table rows; the backward is one flat index_add (fast on a CPU and on CUDA)."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index, weight)
        ctx.table_shape = table.shape
        return torch.einsum("nlkf,nlk->nlf", table[index], weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        index, weight = ctx.saved_tensors
        rows, feats = ctx.table_shape
        src = (grad[:, :, None, :] * weight[..., None]).reshape(-1)
        flat = (index[..., None] * feats + torch.arange(feats, device=index.device)).reshape(-1)
        out = torch.zeros(rows * feats, device=grad.device, dtype=grad.dtype).index_add_(0, flat, src)
        return out.view(rows, feats), None, None


class HashEncoding(nn.Module):
    """Multi-resolution hash grid (Instant-NGP): L levels of a 2^log2_size x F table, trilinear per level.

    Levels whose lattice fits the table are indexed densely (no collisions), finer ones by the
    spatial hash of Teschner et al. with Instant-NGP's primes.
    """

    PRIMES = (1, 2654435761, 805459861)

    def __init__(self, levels=12, log2_size=17, features=2, base_resolution=16, max_resolution=512):
        super().__init__()
        self.levels, self.size, self.features = levels, 2**log2_size, features
        growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / max(levels - 1, 1))
        res = [int(math.floor(base_resolution * growth**level)) for level in range(levels)]
        self.register_buffer("scales", torch.tensor(res, dtype=torch.float32), persistent=False)
        dense = [(r + 1) ** 3 <= self.size for r in res]
        self.register_buffer("dense", torch.tensor(dense), persistent=False)
        self.register_buffer(
            "strides",
            torch.tensor(
                [[1, r + 1, (r + 1) ** 2] if d else list(self.PRIMES) for r, d in zip(res, dense, strict=True)]
            ),
            persistent=False,
        )
        self.register_buffer("offsets", torch.arange(levels) * self.size, persistent=False)
        self.table = nn.Parameter(torch.empty(levels * self.size, features).uniform_(-1e-4, 1e-4))
        self.out_dim = levels * features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        p = ((x + 1) * 0.5).clamp(0, 1)[:, None, :] * self.scales[None, :, None]  # (N, L, 3)
        p0 = p.floor()
        frac = p - p0
        p0 = p0.long()
        s = self.strides  # (L, 3)
        c = [torch.stack((p0[..., a], p0[..., a] + 1), -1) * s[None, :, a, None] for a in range(3)]  # (N, L, 2)
        summed = c[0][..., :, None, None] + c[1][..., None, :, None] + c[2][..., None, None, :]
        hashed = (c[0][..., :, None, None] ^ c[1][..., None, :, None] ^ c[2][..., None, None, :]) & (self.size - 1)
        index = (
            torch.where(self.dense[None, :, None, None, None], summed, hashed) + self.offsets[None, :, None, None, None]
        )
        w = [torch.stack((1 - frac[..., a], frac[..., a]), -1) for a in range(3)]
        weight = w[0][..., :, None, None] * w[1][..., None, :, None] * w[2][..., None, None, :]
        out = _HashGather.apply(self.table, index.reshape(n, self.levels, 8), weight.reshape(n, self.levels, 8))
        return out.reshape(n, -1)


def sh_encode(d: torch.Tensor, degree: int = 3) -> torch.Tensor:
    """Real spherical harmonics of unit directions ``d`` (N, 3), degree 1..4 -> (N, degree^2)."""
    x, y, z = d.unbind(-1)
    out = [torch.full_like(x, 0.28209479177387814)]
    if degree > 1:
        out += [-0.48860251190291987 * y, 0.48860251190291987 * z, -0.48860251190291987 * x]
    if degree > 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [
            1.0925484305920792 * xy,
            -1.0925484305920792 * yz,
            0.94617469575755997 * zz - 0.31539156525251999,
            -1.0925484305920792 * xz,
            0.54627421529603959 * (xx - yy),
        ]
    if degree > 3:
        out += [
            0.59004358992664352 * y * (-3.0 * xx + yy),
            2.8906114426405538 * xy * z,
            0.45704579946446572 * y * (1.0 - 5.0 * zz),
            0.3731763325901154 * z * (5.0 * zz - 3.0),
            0.45704579946446572 * x * (1.0 - 5.0 * zz),
            1.4453057213202769 * z * (xx - yy),
            0.59004358992664352 * x * (-xx + 3.0 * yy),
        ]
    return torch.stack(out, -1)


class RadianceField(nn.Module):
    """Density ``sigma(x)`` and view-dependent colour ``rgb(x, d)`` over the cube [-1, 1]^3."""

    def __init__(self, config: FieldConfig | None = None):
        super().__init__()
        self.config = config = config or FieldConfig()
        if config.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {config.encoding!r}")
        self.density_grid = DensityGrid(config.start_resolution, config.alpha_init)
        if config.encoding == "planes":
            self.encoding = PlaneEncoding(config.plane_resolutions, config.plane_channels)
        else:
            self.encoding = HashEncoding(
                config.hash_levels,
                config.hash_log2_size,
                config.hash_features,
                config.hash_base_resolution,
                config.hash_max_resolution,
            )
        sh_dim = config.sh_degree**2
        self.color_net = nn.Sequential(
            nn.Linear(self.encoding.out_dim + sh_dim, config.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(config.hidden, config.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(config.hidden, 3),
        )

    def density(self, x: torch.Tensor) -> torch.Tensor:
        return self.density_grid(x)

    def color(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.encoding(x), sh_encode(d, self.config.sh_degree)], -1)
        return torch.sigmoid(self.color_net(h))

    def cell_max_density(self) -> torch.Tensor:
        return self.density_grid.cell_max()

    def param_groups(self, lr_grid: float = 0.1, lr_features: float = 0.02, lr_net: float = 3e-3) -> list[dict]:
        lr_feat = lr_features if self.config.encoding == "planes" else lr_features * 0.5
        return [
            {"params": [self.density_grid.raw], "lr": lr_grid, "name": "density"},
            {"params": list(self.encoding.parameters()), "lr": lr_feat, "name": "features"},
            {"params": list(self.color_net.parameters()), "lr": lr_net, "name": "net"},
        ]
