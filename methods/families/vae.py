"""Conditional VAE (Kingma & Welling 2014; Sohn et al. 2015): q(z | x, c), p(z | c), p(x | z, c).

As in Sohn et al.'s CVAE the prior is conditional: a small prior network maps the caption to a
Gaussian over z, and the KL term pulls the encoder's posterior towards it. With the fixed N(0, I)
prior of a plain VAE, the latents of each caption sat in their own corner of the space and samples
drawn from N(0, I) decoded to fragments; sampling from p(z | c) lands where that caption's shapes are.

The decoder is the shared :class:`~methods.families.nets.Decoder3D` (also the GAN's generator).
Reconstruction: binary cross-entropy on the occupancy (partial-volume targets in [0, 1]) and on the
colours, summed over voxels; the KL term is weighted by ``beta`` (1 = the ELBO).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods.families.nets import Decoder3D, Encoder3D, NetConfig, TextEncoder


class PriorNet(nn.Module):
    """p(z | c) = N(mu(c), diag sigma(c)^2) from the caption."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.text = TextEncoder(cfg)
        self.head = nn.Sequential(nn.SiLU(), nn.Linear(cfg.cond_dim, 2 * cfg.latent_dim))
        nn.init.zeros_(self.head[1].weight)
        nn.init.zeros_(self.head[1].bias)

    def forward(self, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.text(counts)).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)


class VAESampler(nn.Module):
    """What sampling needs (and what ships): the conditional prior and the decoder."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        self.prior = PriorNet(cfg)
        self.decoder = Decoder3D(cfg)


class CVAE(nn.Module):
    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder3D(cfg, 2 * cfg.latent_dim)
        self.sampler = VAESampler(cfg)

    @property
    def decoder(self) -> Decoder3D:
        return self.sampler.decoder

    def encode(self, grid01: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(grid01 * 2 - 1, counts).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)


def recon_loss(logits: torch.Tensor, grid01: torch.Tensor, colour_weight: float = 0.5) -> torch.Tensor:
    """Per-sample reconstruction loss: BCE of occupancy + ``colour_weight`` BCE of RGB, summed over voxels."""
    occ = F.binary_cross_entropy_with_logits(logits[:, :1], grid01[:, :1], reduction="none").flatten(1).sum(1)
    rgb = F.binary_cross_entropy_with_logits(logits[:, 1:], grid01[:, 1:], reduction="none").flatten(1).sum(1)
    return occ + colour_weight * rgb


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, e^logvar) || N(mu_p, e^logvar_p)) per sample, summed over the latent dimensions."""
    return 0.5 * (logvar_p - logvar + (logvar.exp() + (mu - mu_p) ** 2) / logvar_p.exp() - 1.0).sum(1)


def vae_loss(
    model: CVAE, grid01: torch.Tensor, counts: torch.Tensor, generator: torch.Generator, beta: float = 1.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Negative ELBO per sample (mean over the batch), with its reconstruction and KL parts."""
    mu, logvar = model.encode(grid01, counts)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator, device=mu.device)
    logits = model.decoder(z, counts)
    rec = recon_loss(logits, grid01)
    kl = gaussian_kl(mu, logvar, *model.sampler.prior(counts))
    loss = (rec + beta * kl).mean()
    return loss, {"recon": float(rec.detach().mean()), "kl": float(kl.detach().mean())}


@torch.no_grad()
def sample(
    model: VAESampler, counts: torch.Tensor, generator: torch.Generator | None = None, temperature: float = 1.0
) -> torch.Tensor:
    """Grids in [0, 1] from z ~ p(z | c) (its spread scaled by ``temperature``) through the decoder."""
    mu, logvar = model.prior(counts)
    eps = torch.randn(mu.shape, generator=generator, device=counts.device)
    return torch.sigmoid(model.decoder(mu + temperature * torch.exp(0.5 * logvar) * eps, counts))
