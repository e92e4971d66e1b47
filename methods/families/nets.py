"""The shared backbone of the four families: a caption encoder and small 3D conv networks at 16^3.

Grids have 4 channels (occupancy, R, G, B). Every block is conditioned by FiLM (a per-channel scale
and shift) on one vector: the caption embedding, plus the noise level for the diffusion models.

- :class:`TextEncoder`: a learned embedding per vocabulary word, mean-pooled (bag of words), an MLP;
  the empty caption has its own learned vector (classifier-free guidance's "unconditional").
- :class:`UNet3D`: the denoiser of DDPM and the score model of the VP-SDE (same architecture).
- :class:`Decoder3D`: latent + caption -> grid; the VAE decoder and the GAN generator.
- :class:`Encoder3D`: grid (+ caption) -> vector; the VAE encoder and, with spectral norm and a
  projection head, the GAN discriminator.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.families.text import VOCABULARY


@dataclass
class NetConfig:
    """Widths of the backbone; the shipped models and the tests' tiny ones differ only here."""

    resolution: int = 16
    channels: tuple[int, int, int] = (12, 24, 64)  # at r, r/2, r/4
    cond_dim: int = 128
    word_dim: int = 64
    latent_dim: int = 64  # VAE / GAN latent
    groups: int = 8
    coords: bool = False  # UNet3D: feed x, y, z in [-1, 1] as 3 more input channels (CoordConv)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NetConfig:
        d = dict(d)
        d["channels"] = tuple(d["channels"])
        return cls(**d)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def multi_hot(token_ids: list[list[int]] | list[tuple[int, ...]], device: str | torch.device = "cpu") -> torch.Tensor:
    """(B, V) word counts of tokenised captions (an empty list is the unconditional caption)."""
    out = torch.zeros(len(token_ids), len(VOCABULARY), device=device)
    for i, ids in enumerate(token_ids):
        for j in ids:
            out[i, j] += 1.0
    return out


class TextEncoder(nn.Module):
    """Bag-of-words caption embedding: mean of learned word vectors -> MLP; a learned null caption."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.words = nn.Parameter(torch.randn(len(VOCABULARY), cfg.word_dim) * 0.5)
        self.null = nn.Parameter(torch.zeros(cfg.word_dim))
        self.mlp = nn.Sequential(
            nn.Linear(cfg.word_dim, cfg.cond_dim), nn.SiLU(), nn.Linear(cfg.cond_dim, cfg.cond_dim)
        )

    def forward(self, counts: torch.Tensor) -> torch.Tensor:
        n = counts.sum(-1, keepdim=True)
        pooled = counts @ self.words / n.clamp(min=1.0)
        pooled = torch.where(n > 0, pooled, self.null.expand_as(pooled))
        return self.mlp(pooled)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (B,) times on the DDPM scale (0..1000)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _norm(groups: int, ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, ch), ch)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, FiLM on the second norm, a 1x1 skip when widths differ."""

    def __init__(self, cin: int, cout: int, cond_dim: int, groups: int):
        super().__init__()
        self.norm1 = _norm(groups, cin)
        self.conv1 = nn.Conv3d(cin, cout, 3, padding=1)
        self.norm2 = _norm(groups, cout)
        self.film = nn.Linear(cond_dim, 2 * cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(cond)[:, :, None, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class FiLMHead(nn.Module):
    """GroupNorm, FiLM, SiLU, a 3x3x3 conv to the 4 output channels.

    The FiLM matters: a plain GroupNorm removes each group's spatial mean, so without it the
    caption could not set a constant offset (a whole shape's colour) at the output.
    """

    def __init__(self, cin: int, cond_dim: int, groups: int):
        super().__init__()
        self.norm = _norm(groups, cin)
        self.film = nn.Linear(cond_dim, 2 * cin)
        self.out = nn.Conv3d(cin, 4, 3, padding=1)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(cond)[:, :, None, None, None].chunk(2, dim=1)
        return self.out(F.silu(self.norm(h) * (1 + scale) + shift))


def coordinate_grid(like: torch.Tensor) -> torch.Tensor:
    """(B, 3, r, r, r) voxel-centre coordinates in (-1, 1), in the grid's index order (i, j, k)."""
    b, _, *spatial = like.shape
    axes = [(torch.arange(n, device=like.device, dtype=like.dtype) + 0.5) / n * 2 - 1 for n in spatial]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))
    return grid.unsqueeze(0).expand(b, -1, *spatial)


class UNet3D(nn.Module):
    """Noise-level- and caption-conditioned 3D UNet over (B, 4, r, r, r): r -> r/2 -> r/4 and back.

    The full-resolution level has only the stem and the output conv (with the stem's skip): on CPUs
    the r^3 level dominates the cost, and the shapes' structure lives at r/2 and r/4.

    With ``cfg.coords`` the stem also sees each voxel's coordinates (CoordConv, Liu et al. 2018): at
    high noise the input carries almost no shape, and a convolution alone knows where it is only
    through the zero padding at the borders, yet the denoiser must place a caption's mean shape
    (a ring's hole, a mug's handle) in the middle of the grid.
    """

    def __init__(self, cfg: NetConfig):
        super().__init__()
        c0, c1, c2 = cfg.channels
        d = cfg.cond_dim
        self.cfg = cfg
        self.text = TextEncoder(cfg)
        self.time = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.stem = nn.Conv3d(7 if cfg.coords else 4, c0, 3, padding=1)
        self.down1 = nn.Conv3d(c0, c1, 2, stride=2)
        self.enc1 = ResBlock(c1, c1, d, cfg.groups)
        self.down2 = nn.Conv3d(c1, c2, 2, stride=2)
        self.mid1 = ResBlock(c2, c2, d, cfg.groups)
        self.mid2 = ResBlock(c2, c2, d, cfg.groups)
        self.up2 = nn.ConvTranspose3d(c2, c1, 2, stride=2)
        self.dec1 = ResBlock(2 * c1, c1, d, cfg.groups)
        self.up1 = nn.ConvTranspose3d(c1, c0, 2, stride=2)
        self.out_head = FiLMHead(2 * c0, d, cfg.groups)
        nn.init.zeros_(self.out_head.out.weight)
        nn.init.zeros_(self.out_head.out.bias)

    def condition(self, counts: torch.Tensor) -> torch.Tensor:
        return self.text(counts)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text_cond: torch.Tensor) -> torch.Tensor:
        """x: (B, 4, r, r, r); t: (B,) on the 0..1000 scale; text_cond: (B, cond_dim) from :meth:`condition`."""
        cond = F.silu(text_cond + self.time(timestep_embedding(t, self.cfg.cond_dim)))
        if self.cfg.coords:
            x = torch.cat([x, coordinate_grid(x)], dim=1)
        h0 = self.stem(x)
        h1 = self.enc1(self.down1(h0), cond)
        h = self.mid2(self.mid1(self.down2(h1), cond), cond)
        h = self.dec1(torch.cat([self.up2(h), h1], dim=1), cond)
        return self.out_head(torch.cat([self.up1(h), h0], dim=1), cond)


class Decoder3D(nn.Module):
    """(latent z, caption) -> (B, 4, r, r, r) logits: occupancy logit then RGB logits."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        c0, c1, c2 = cfg.channels
        d = cfg.cond_dim
        self.cfg = cfg
        self.base = cfg.resolution // 4
        self.seed_ch = 16
        self.text = TextEncoder(cfg)
        self.fc = nn.Linear(cfg.latent_dim + d, self.seed_ch * self.base**3)
        self.lift = nn.Conv3d(self.seed_ch, c2, 1)
        self.mid = ResBlock(c2, c2, d, cfg.groups)
        self.up2 = nn.ConvTranspose3d(c2, c1, 2, stride=2)
        self.dec1 = ResBlock(c1, c1, d, cfg.groups)
        self.up1 = nn.ConvTranspose3d(c1, c0, 2, stride=2)
        self.out_head = FiLMHead(c0, d, cfg.groups)

    def forward(self, z: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        cond = self.text(counts)
        h = self.fc(torch.cat([z, cond], dim=1)).view(-1, self.seed_ch, self.base, self.base, self.base)
        h = self.mid(self.lift(F.silu(h)), cond)
        h = self.dec1(self.up2(h), cond)
        return self.out_head(self.up1(h), cond)


def _sn(module: nn.Module, spectral: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(module) if spectral else module


class Encoder3D(nn.Module):
    """(B, 4, r, r, r) [+ caption] -> (B, out_dim) features.

    With ``spectral=True`` (the GAN discriminator) every layer is spectrally normalised and there is
    no normalisation layer or conditioning inside (the caption enters through a projection head).
    """

    def __init__(self, cfg: NetConfig, out_dim: int, spectral: bool = False, conditioned: bool = True):
        super().__init__()
        c0, c1, c2 = cfg.channels
        d = cfg.cond_dim
        self.spectral = spectral
        self.conditioned = conditioned
        self.text = TextEncoder(cfg) if conditioned else None
        self.stem = _sn(nn.Conv3d(4, c0, 3, padding=1), spectral)
        self.down1 = _sn(nn.Conv3d(c0, c1, 2, stride=2), spectral)
        self.down2 = _sn(nn.Conv3d(c1, c2, 2, stride=2), spectral)
        if spectral:
            self.conv1 = _sn(nn.Conv3d(c1, c1, 3, padding=1), True)
            self.conv2 = _sn(nn.Conv3d(c2, c2, 3, padding=1), True)
        else:
            self.block1 = ResBlock(c1, c1, d, cfg.groups)
            self.block2 = ResBlock(c2, c2, d, cfg.groups)
        self.squeeze = _sn(nn.Conv3d(c2, 16, 1), spectral)
        self.fc = _sn(nn.Linear(16 * (cfg.resolution // 4) ** 3, out_dim), spectral)

    def forward(self, x: torch.Tensor, counts: torch.Tensor | None = None) -> torch.Tensor:
        act = (lambda h: F.leaky_relu(h, 0.2)) if self.spectral else F.silu
        h = self.down1(act(self.stem(x)))
        if self.spectral:
            h = self.down2(act(h + self.conv1(act(h))))
            h = act(h + self.conv2(act(h)))
        else:
            cond = self.text(counts)
            h = self.down2(self.block1(h, cond))
            h = F.silu(self.block2(h, cond))
        return self.fc(act(self.squeeze(h)).flatten(1))
