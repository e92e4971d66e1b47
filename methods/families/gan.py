"""Conditional 3D-GAN (Wu et al. 2016) with the hinge loss, spectral normalisation (Miyato et al. 2018)
and a projection discriminator (Miyato & Koyama 2018) for the caption.

The generator is the shared :class:`~methods.families.nets.Decoder3D` (also the VAE's decoder); its
sigmoid output is the grid in [0, 1]. The discriminator is the shared
:class:`~methods.families.nets.Encoder3D` with spectral norm on every layer:
D(x, c) = psi(phi(x)) + <embed(c), phi(x)>.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods.families.nets import Decoder3D, Encoder3D, NetConfig, TextEncoder


class Discriminator(nn.Module):
    def __init__(self, cfg: NetConfig, features: int = 128):
        super().__init__()
        self.cfg = cfg
        self.phi = Encoder3D(cfg, features, spectral=True, conditioned=False)
        self.psi = nn.utils.parametrizations.spectral_norm(nn.Linear(features, 1))
        self.text = TextEncoder(cfg)
        self.embed = nn.utils.parametrizations.spectral_norm(nn.Linear(cfg.cond_dim, features))

    def forward(self, grid01: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.phi(grid01 * 2 - 1), 0.2)
        return self.psi(h).squeeze(1) + (self.embed(self.text(counts)) * h).sum(1)


def generate(g: Decoder3D, counts: torch.Tensor, generator: torch.Generator | None, truncation: float = 0.0):
    """Grids in [0, 1] from z ~ N(0, I); ``truncation`` > 0 resamples |z_i| above it (the truncation trick)."""
    z = torch.randn((counts.shape[0], g.cfg.latent_dim), generator=generator, device=counts.device)
    if truncation > 0:
        for _ in range(100):
            bad = z.abs() > truncation
            if not bad.any():
                break
            z = torch.where(bad, torch.randn(z.shape, generator=generator, device=z.device), z)
        z = z.clamp(-truncation, truncation)
    return torch.sigmoid(g(z, counts))


def d_hinge(d: Discriminator, real: torch.Tensor, fake: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - d(real, counts)).mean() + F.relu(1.0 + d(fake, counts)).mean()


def g_hinge(d: Discriminator, fake: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    return -d(fake, counts).mean()


@torch.no_grad()
def sample(g: Decoder3D, counts: torch.Tensor, generator: torch.Generator | None = None, truncation: float = 0.0):
    return generate(g, counts, generator, truncation)
