"""DDPM (Ho et al. 2020): epsilon prediction over 1,000 steps; ancestral DDPM and DDIM (Song et al. 2021)
sampling, both with classifier-free guidance (Ho & Salimans 2022).

Grids are standardised here (:class:`Standardizer`: ``x = (2 grid - 1 - mean) / std``); samplers return
grids in [0, 1].
Samplers are generators: they yield (step, total) after each network call group and return the grid,
so a method can stream progress; :func:`run_sampler` drives one to its end.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator

import torch

from methods.families.nets import UNet3D

SAMPLERS = ("ddim", "ddpm")
SamplerGen = Generator[tuple[int, int], None, torch.Tensor]


class NoiseSchedule:
    """The DDPM noise schedule over ``steps`` (1,000) steps: betas and the cumulative alpha-bar.

    ``linear``: betas from 1e-4 to 0.02 (Ho et al. 2020). ``cosine``: alpha-bar = cos^2 of the
    time (Nichol & Dhariwal 2021), betas clipped at 0.999; at low resolution it spends far fewer
    steps in near-pure noise, where the linear schedule leaves a denoiser little to learn.
    """

    def __init__(self, kind: str = "linear", steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        if kind not in ("linear", "cosine"):
            raise ValueError(f"schedule kind must be linear or cosine, got {kind!r}")
        self.kind, self.steps, self.beta_start, self.beta_end = kind, steps, beta_start, beta_end
        if kind == "linear":
            self.betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
        else:
            t = torch.arange(steps + 1, dtype=torch.float64) / steps
            f = cosine_alpha_bar(t)
            self.betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
        self.alpha_bar = torch.cumprod(1.0 - self.betas, dim=0)

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "steps": self.steps}
        if self.kind == "linear":
            out.update(beta_start=self.beta_start, beta_end=self.beta_end)
        return out


def cosine_alpha_bar(t: torch.Tensor, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal's alpha-bar(t) for t in [0, 1]."""
    return torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2


class StructuredNoise:
    """Gaussian noise with a fixed covariance: white noise plus, per sample and channel, a constant
    offset (``offset``) and a coarse 4^3 component (``coarse``), scaled back to unit variance per voxel.

    Why: a shape's colour is one value repeated over the whole grid and its size and place are
    low-frequency, so under white noise they stay readable from the grid's mean long after every
    voxel is drowned; a denoiser then learns to copy them from the noise and never from the caption
    (its samples take their colour from the seed). Offset noise (Guttenberg 2023) and its coarse
    ("pyramid") variant hide them as well as any single voxel. The forward process, the eps loss and
    every sampler stay exact for any fixed covariance, provided the samplers draw the same noise
    (they do: they call :meth:`sample`); ``offset = coarse = 0`` is plain white noise.
    """

    def __init__(self, offset: float = 0.0, coarse: float = 0.0, coarse_res: int = 4):
        self.offset, self.coarse, self.coarse_res = float(offset), float(coarse), int(coarse_res)

    def to_dict(self) -> dict:
        return {"offset": self.offset, "coarse": self.coarse, "coarse_res": self.coarse_res}

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None, device) -> torch.Tensor:
        z = torch.randn(shape, generator=generator, device=device)
        if self.offset == 0 and self.coarse == 0:
            return z
        b, c, *spatial = shape
        if self.offset:
            z = z + self.offset * torch.randn((b, c) + (1,) * len(spatial), generator=generator, device=device)
        if self.coarse:
            low = torch.randn((b, c) + (self.coarse_res,) * len(spatial), generator=generator, device=device)
            z = z + self.coarse * torch.nn.functional.interpolate(low, size=tuple(spatial), mode="nearest")
        return z / math.sqrt(1.0 + self.offset**2 + self.coarse**2)


class Standardizer:
    """Per-channel standardisation of the grids the diffusion models see: x = (2 grid - 1 - mean) / std.

    With the training set's statistics, "no information" (x0 = 0) is the mean grid, not a half-full
    volume: an under-trained denoiser then errs towards empty space and the data's colours. The
    identity (mean 0, std 1) is the plain [-1, 1] scaling.
    """

    def __init__(self, mean: list[float] | None = None, std: list[float] | None = None):
        self.mean = torch.tensor(mean if mean is not None else [0.0] * 4, dtype=torch.float32)
        self.std = torch.tensor(std if std is not None else [1.0] * 4, dtype=torch.float32)

    @classmethod
    def from_data(cls, grids01: torch.Tensor) -> Standardizer:
        signed = grids01.float() * 2 - 1
        dims = [0, *range(2, signed.dim())]
        return cls(signed.mean(dims).tolist(), signed.std(dims).clamp(min=1e-3).tolist())

    def to_dict(self) -> dict:
        return {"mean": [round(v, 6) for v in self.mean.tolist()], "std": [round(v, 6) for v in self.std.tolist()]}

    def _shape(self, v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v.to(like.device).view(1, -1, *([1] * (like.dim() - 2)))

    def encode(self, grid01: torch.Tensor) -> torch.Tensor:
        return (grid01 * 2 - 1 - self._shape(self.mean, grid01)) / self._shape(self.std, grid01)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        signed = x * self._shape(self.std, x) + self._shape(self.mean, x)
        return ((signed + 1) / 2).clamp(0.0, 1.0)

    def clip(self, x0: torch.Tensor) -> torch.Tensor:
        """Clip a predicted x0 to the encoded image of [0, 1] per channel."""
        lo = (-1 - self._shape(self.mean, x0)) / self._shape(self.std, x0)
        hi = (1 - self._shape(self.mean, x0)) / self._shape(self.std, x0)
        return torch.maximum(torch.minimum(x0, hi), lo)


def min_snr_weight(
    snr: torch.Tensor, gamma: float | None, x0_floor: float | None = None, cap: float | None = None
) -> torch.Tensor:
    """The weight of each sample's eps-MSE: clamp(SNR, x0_floor, gamma) / SNR, at most ``cap``.

    An eps error is an x0 error times sqrt(SNR), so the eps-MSE weighs x0 errors by SNR. Min-SNR-gamma
    (Hang et al. 2023; ``x0_floor`` None) caps that at gamma: the nearly clean timesteps, which dominate
    the plain eps loss but shape little of a sample, count less (about 3x faster convergence).
    ``x0_floor`` raises the other end: below it the x0 weight stays at the floor (so the eps weight grows
    as floor / SNR, up to ``cap``). At 16^3 with offset noise a shape is decided at SNR 0.002-0.03
    (t = 600-800 of the linear schedule), where the plain eps loss weighs x0 errors a thousand times
    less than at t = 200 and the network barely learns to commit to a shape there. None/None: all ones.
    """
    if gamma is None and x0_floor is None:
        return torch.ones_like(snr)
    w = torch.clamp(snr, min=x0_floor, max=gamma) / snr
    return w if cap is None else torch.clamp(w, max=cap)


def ddpm_loss(
    net: UNet3D,
    schedule: NoiseSchedule,
    grid01: torch.Tensor,
    counts: torch.Tensor,
    generator: torch.Generator,
    min_snr_gamma: float | None = None,
    norm: Standardizer | None = None,
    noise: StructuredNoise | None = None,
    x0_floor: float | None = None,
    weight_cap: float | None = None,
) -> torch.Tensor:
    """E_{t, eps} w(t) || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t, c) ||^2, t uniform in 0..999;
    w: :func:`min_snr_weight`."""
    x0 = (norm or Standardizer()).encode(grid01)
    b = x0.shape[0]
    t = torch.randint(0, schedule.steps, (b,), generator=generator, device=x0.device)
    eps = (noise or StructuredNoise()).sample(x0.shape, generator, x0.device)
    ab = schedule.alpha_bar.to(x0.device)[t].float()
    xt = ab.sqrt().view(b, 1, 1, 1, 1) * x0 + (1 - ab).sqrt().view(b, 1, 1, 1, 1) * eps
    pred = net(xt, t.float(), net.condition(counts))
    per_sample = ((pred - eps) ** 2).flatten(1).mean(1)
    return (min_snr_weight(ab / (1 - ab), min_snr_gamma, x0_floor, weight_cap) * per_sample).mean()


def guided_eps(net: UNet3D, x: torch.Tensor, t: float, cond: torch.Tensor, null: torch.Tensor, guidance: float):
    """eps_u + w (eps_c - eps_u); one batched call (w == 1 skips the unconditional half)."""
    b = x.shape[0]
    tt = torch.full((b,), float(t), device=x.device)
    if guidance == 1.0:
        return net(x, tt, cond)
    out = net(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([cond, null]))
    eps_c, eps_u = out[:b], out[b:]
    return eps_u + guidance * (eps_c - eps_u)


def timesteps(total: int, steps: int) -> list[int]:
    """``steps`` timesteps, evenly spaced, descending from total - 1 to 0 ("trailing" spacing)."""
    steps = max(1, min(int(steps), total))
    idx = torch.linspace(total - 1, 0, steps).round().long().tolist()
    return sorted(set(idx), reverse=True)


@torch.no_grad()
def iter_sample(
    net: UNet3D,
    schedule: NoiseSchedule,
    counts: torch.Tensor,
    *,
    sampler: str = "ddim",
    steps: int = 50,
    guidance: float = 3.0,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    norm: Standardizer | None = None,
    noise: StructuredNoise | None = None,
) -> SamplerGen:
    """Sample grids for the captions in ``counts`` (B, V).

    ``ddpm``: ancestral sampling over ``steps`` evenly spaced timesteps (1,000 = the original chain;
    fewer = the respaced chain of Nichol & Dhariwal 2021, variances recomputed for the subsequence).
    ``ddim``: the DDIM update over ``steps`` timesteps, deterministic for ``eta = 0``.
    The predicted x0 is clipped to the (standardised) image of [0, 1] at every step.
    """
    norm = norm or Standardizer()
    noise = noise or StructuredNoise()
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    dev = counts.device
    res = net.cfg.resolution
    b = counts.shape[0]
    cond = net.condition(counts)
    null = net.condition(torch.zeros_like(counts))
    x = noise.sample((b, 4, res, res, res), generator, dev)
    ab_all = schedule.alpha_bar.to(dev)
    seq = timesteps(schedule.steps, steps)
    for i, t in enumerate(seq):
        t_prev = seq[i + 1] if i + 1 < len(seq) else -1
        ab_t = ab_all[t].float()
        ab_prev = ab_all[t_prev].float() if t_prev >= 0 else torch.tensor(1.0, device=dev)
        eps = guided_eps(net, x, t, cond, null, guidance)
        x0 = norm.clip((x - (1 - ab_t).sqrt() * eps) / ab_t.sqrt())
        eps = (x - ab_t.sqrt() * x0) / (1 - ab_t).sqrt()  # consistent with the clipped x0
        if sampler == "ddim":
            sigma = eta * ((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)).clamp(min=0).sqrt()
        else:  # ancestral: the posterior variance beta~ of the (respaced) step
            sigma = ((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)).clamp(min=0).sqrt()
        if sampler == "ddim":
            x = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps
        else:
            beta_t = 1 - ab_t / ab_prev
            coef0 = ab_prev.sqrt() * beta_t / (1 - ab_t)
            coeft = (1 - beta_t).sqrt() * (1 - ab_prev) / (1 - ab_t)
            x = coef0 * x0 + coeft * x
        if t_prev >= 0 and float(sigma) > 0:
            x = x + sigma * noise.sample(x.shape, generator, dev)
        yield i, len(seq)
    return norm.decode(x)


def run_sampler(gen: SamplerGen, callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Drive a sampler generator to its end; ``callback(step, total)`` after each step."""
    while True:
        try:
            i, n = next(gen)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(i, n)
