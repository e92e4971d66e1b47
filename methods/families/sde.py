"""Score-based generative modelling with the VP-SDE (Song et al. 2021, "Score-Based Generative Modeling
through Stochastic Differential Equations"): continuous-time denoising score matching, the
predictor-corrector sampler (reverse-diffusion Euler-Maruyama predictor + Langevin corrector) and the
probability-flow ODE (Heun's method), with classifier-free guidance on the score.

dx = -1/2 beta(t) x dt + sqrt(beta(t)) dW,  beta(t) = beta_min + t (beta_max - beta_min),  t in [0, 1].
The network is the DDPM's UNet3D and sees time on the DDPM scale (999 t). It predicts either the noise
eps (``prediction="eps"``, as the DDPM and Song et al.'s VP models) or the velocity v = alpha eps - sigma x0
(``"v"``, Salimans & Ho 2022); either way the score is -eps / sigma(t), with eps = sigma x + alpha v.
Why v: near t = 1 (alpha -> 0) an eps-predictor gives x0 = (x - sigma eps) / alpha, so it must reproduce
its own input to a precision of alpha to place a shape, and at 16^3 the shapes are decided there
(alpha 0.05-0.2); a v-predictor outputs -x0 there directly.
"""

from __future__ import annotations

import math

import torch

from methods.families.diffusion import (
    SamplerGen,
    Standardizer,
    StructuredNoise,
    guided_eps,
    min_snr_weight,
)
from methods.families.nets import UNet3D

SAMPLERS = ("pc", "ode")
PREDICTIONS = ("eps", "v")


class VPSDE:
    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, eps: float = 1e-3):
        self.beta_min, self.beta_max, self.eps = beta_min, beta_max, eps

    def to_dict(self) -> dict:
        return {"beta_min": self.beta_min, "beta_max": self.beta_max, "eps": self.eps}

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def marginal(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mean coefficient alpha(t) and std sigma(t) of p(x_t | x_0) = N(alpha x_0, sigma^2 I)."""
        log_mean = -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min
        alpha = torch.exp(log_mean)
        return alpha, torch.sqrt(1.0 - alpha**2)


def sde_loss(
    net: UNet3D,
    sde: VPSDE,
    grid01: torch.Tensor,
    counts: torch.Tensor,
    generator: torch.Generator,
    min_snr_gamma: float | None = None,
    norm: Standardizer | None = None,
    noise: StructuredNoise | None = None,
    x0_floor: float | None = None,
    weight_cap: float | None = None,
    prediction: str = "eps",
):
    """Denoising score matching at continuous t ~ U(eps, 1).

    ``eps``: lambda(t) = sigma(t)^2 (the eps-MSE), times the same weight as the DDPM
    (diffusion.min_snr_weight) when ``min_snr_gamma`` / ``x0_floor`` are given.
    ``v``: the v-MSE, which weighs x0 errors by 1 + SNR (so by about 1 where shapes are decided),
    times min(1, gamma / SNR) when ``min_snr_gamma`` is given (the clean end then counts as in
    min-SNR-gamma); ``x0_floor`` / ``weight_cap`` do not apply (the x0 weight never falls below 1).
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    if prediction == "v" and (x0_floor is not None or weight_cap is not None):
        raise ValueError("x0_floor / weight_cap weigh the eps loss; the v loss already weighs x0 errors by 1 + SNR")
    x0 = (norm or Standardizer()).encode(grid01)
    b = x0.shape[0]
    t = torch.rand((b,), generator=generator, device=x0.device) * (1.0 - sde.eps) + sde.eps
    z = (noise or StructuredNoise()).sample(x0.shape, generator, x0.device)
    alpha, sigma = sde.marginal(t)
    xt = alpha.view(b, 1, 1, 1, 1) * x0 + sigma.view(b, 1, 1, 1, 1) * z
    pred = net(xt, t * 999.0, net.condition(counts))
    snr = alpha**2 / sigma**2
    if prediction == "v":
        target = alpha.view(b, 1, 1, 1, 1) * z - sigma.view(b, 1, 1, 1, 1) * x0
        weight = torch.ones_like(snr) if min_snr_gamma is None else torch.clamp(min_snr_gamma / snr, max=1.0)
        return (weight * ((pred - target) ** 2).flatten(1).mean(1)).mean()
    per_sample = ((pred - z) ** 2).flatten(1).mean(1)
    return (min_snr_weight(snr, min_snr_gamma, x0_floor, weight_cap) * per_sample).mean()


def model_eps(net, sde: VPSDE, x, t: float, cond, null, guidance: float, prediction: str = "eps") -> torch.Tensor:
    """The guided noise estimate at time t (guidance is linear, so guiding v or eps is the same)."""
    out = guided_eps(net, x, t * 999.0, cond, null, guidance)
    if prediction == "eps":
        return out
    alpha, sigma = sde.marginal(torch.tensor(t, device=x.device))
    return sigma * x + alpha * out


def _score(net, sde: VPSDE, x, t: float, cond, null, guidance: float, prediction: str = "eps") -> torch.Tensor:
    _, sigma = sde.marginal(torch.tensor(t, device=x.device))
    return -model_eps(net, sde, x, t, cond, null, guidance, prediction) / sigma


@torch.no_grad()
def iter_sample(
    net: UNet3D,
    sde: VPSDE,
    counts: torch.Tensor,
    *,
    sampler: str = "pc",
    steps: int = 100,
    guidance: float = 3.0,
    snr: float = 0.16,
    corrector_steps: int = 1,
    generator: torch.Generator | None = None,
    norm: Standardizer | None = None,
    noise: StructuredNoise | None = None,
    prediction: str = "eps",
) -> SamplerGen:
    """Sample grids for the captions in ``counts`` (B, V), integrating from t = 1 to t = eps in ``steps`` steps.

    ``pc``: per step, ``corrector_steps`` Langevin corrections at signal-to-noise ``snr`` then one
    reverse-diffusion (Euler-Maruyama) predictor step; the last step returns the noise-free mean.
    ``ode``: the probability-flow ODE dx/dt = f - g^2 score / 2 with Heun's method (deterministic:
    the seed only picks the starting noise).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    dev = counts.device
    res = net.cfg.resolution
    b = counts.shape[0]
    cond = net.condition(counts)
    null = net.condition(torch.zeros_like(counts))
    noise = noise or StructuredNoise()
    x = noise.sample((b, 4, res, res, res), generator, dev)
    ts = torch.linspace(1.0, sde.eps, steps + 1, dtype=torch.float64).tolist()
    for i in range(steps):
        t, t_next = ts[i], ts[i + 1]
        dt = t_next - t  # negative
        beta = float(sde.beta(torch.tensor(t)))
        if sampler == "pc":
            for _ in range(corrector_steps):
                score = _score(net, sde, x, t, cond, null, guidance, prediction)
                z = noise.sample(x.shape, generator, dev)
                grad_norm = score.flatten(1).norm(dim=1).mean()
                noise_norm = z.flatten(1).norm(dim=1).mean()
                alpha_i = 1.0 - beta / 1000.0  # the discrete VP alpha at this time, as in Song et al.'s code
                step = 2 * alpha_i * (snr * noise_norm / grad_norm) ** 2
                x = x + step * score + torch.sqrt(2 * step) * z
            score = _score(net, sde, x, t, cond, null, guidance, prediction)
            mean = x + (-0.5 * beta * x - beta * score) * dt
            last = i == steps - 1
            x = mean if last else mean + math.sqrt(beta * -dt) * noise.sample(x.shape, generator, dev)
        else:

            def drift(xx: torch.Tensor, tt: float) -> torch.Tensor:
                bb = float(sde.beta(torch.tensor(tt)))
                return -0.5 * bb * xx - 0.5 * bb * _score(net, sde, xx, tt, cond, null, guidance, prediction)

            d1 = drift(x, t)
            x_euler = x + d1 * dt
            if i < steps - 1:  # Heun's correction; the last step is Euler (as in EDM) to save a call
                x = x + 0.5 * (d1 + drift(x_euler, t_next)) * dt
            else:
                x = x_euler
        yield i, steps
    # the final denoising: x0 from the eps prediction at t = eps (Tweedie), removes the last noise
    alpha, sigma = sde.marginal(torch.tensor(sde.eps, device=dev))
    eps = model_eps(net, sde, x, sde.eps, cond, null, guidance, prediction)
    return (norm or Standardizer()).decode((x - sigma * eps) / alpha)
