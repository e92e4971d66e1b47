"""The Gaussian diffusion of Point-E: beta schedules, channel scaling and the epsilon -> x0 maths.

The schedule tables are float64 numpy arrays (as officially); values indexed by integer
timesteps are cast to float32 before they meet a tensor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def beta_schedule(name: str, timesteps: int) -> np.ndarray:
    """The ``linear`` (Ho et al., rescaled to ``timesteps``) or ``cosine`` (Nichol & Dhariwal) betas, float64."""
    if name == "linear":
        scale = 1000 / timesteps
        return np.linspace(scale * 0.0001, scale * 0.02, timesteps, dtype=np.float64)
    if name == "cosine":

        def alpha_bar(s: float) -> float:
            return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

        return np.array(
            [min(1 - alpha_bar((i + 1) / timesteps) / alpha_bar(i / timesteps), 0.999) for i in range(timesteps)]
        )
    raise ValueError(f"unknown beta schedule {name!r}; expected 'linear' or 'cosine'")


class GaussianDiffusion:
    """A discrete Gaussian diffusion with a learned-range variance and an epsilon-predicting model.

    ``channel_scales``/``channel_biases`` map data space (xyz, RGB in 0..255) to the model's
    space: ``x_scaled = x * scales + biases``.
    """

    def __init__(
        self,
        betas: np.ndarray,
        channel_scales: Sequence[float] | None = None,
        channel_biases: Sequence[float] | None = None,
        mean_type: str = "epsilon",
    ):
        if mean_type != "epsilon":
            raise ValueError(f"only epsilon-predicting models are supported, got mean_type={mean_type!r}")
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or not ((betas > 0).all() and (betas <= 1).all()):
            raise ValueError("betas must be a 1-D array in (0, 1]")
        self.betas = betas
        self.num_timesteps = len(betas)
        self.channel_scales = None if channel_scales is None else np.asarray(channel_scales, dtype=np.float64)
        self.channel_biases = None if channel_biases is None else np.asarray(channel_biases, dtype=np.float64)

        alphas = 1.0 - betas
        ac = np.cumprod(alphas)
        self.alphas_cumprod = ac
        self.alphas_cumprod_prev = np.append(1.0, ac[:-1])
        self.alphas_cumprod_next = np.append(ac[1:], 0.0)
        self.sqrt_alphas_cumprod = np.sqrt(ac)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - ac)
        self.log_one_minus_alphas_cumprod = np.log(1.0 - ac)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / ac)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / ac - 1)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - ac)
        # the posterior variance is 0 at t=0; its log is clipped to the value at t=1
        self.posterior_log_variance_clipped = np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - ac)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - ac)
        self._log_betas = np.log(betas)
        self._on_device: dict[tuple[int, str], tuple[np.ndarray, torch.Tensor]] = {}  # (id, device) -> table there

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GaussianDiffusion:
        """From an official diffusion config (``schedule``, ``timesteps``, ``mean_type``, channel scales)."""
        if config.get("respacing"):
            raise ValueError("respaced diffusions are not supported (the official samplers do not use them)")
        return cls(
            beta_schedule(config["schedule"], config["timesteps"]),
            channel_scales=config.get("channel_scales"),
            channel_biases=config.get("channel_biases"),
            mean_type=config.get("mean_type", "epsilon"),
        )

    # ------------------------------------------------------------------ channel scaling

    def _channel_vector(self, values: np.ndarray, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(values).to(x).reshape(1, -1, *([1] * (x.ndim - 2)))

    def scale_channels(self, x: torch.Tensor) -> torch.Tensor:
        """Data space -> diffusion space."""
        if self.channel_scales is not None:
            x = x * self._channel_vector(self.channel_scales, x)
        if self.channel_biases is not None:
            x = x + self._channel_vector(self.channel_biases, x)
        return x

    def unscale_channels(self, x: torch.Tensor) -> torch.Tensor:
        """Diffusion space -> data space."""
        if self.channel_biases is not None:
            x = x - self._channel_vector(self.channel_biases, x)
        if self.channel_scales is not None:
            x = x / self._channel_vector(self.channel_scales, x)
        return x

    # ------------------------------------------------------------------ the process

    def extract(self, table: np.ndarray, t: torch.Tensor, ndim: int) -> torch.Tensor:
        """``table[t]`` as float32 on ``t``'s device, shaped ``[N, 1, ...]`` to broadcast over ``ndim`` dims.

        The float64 value is indexed, then cast (as officially). Tables are copied to a device once.
        """
        key = (id(table), str(t.device))
        if key not in self._on_device:  # holding the array keeps its id unique
            self._on_device[key] = (table, torch.from_numpy(table).to(t.device))
        values = self._on_device[key][1][t].float()
        return values.reshape(-1, *([1] * (ndim - 1)))

    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Diffuse ``x_start`` (diffusion space) to timestep ``t``."""
        return (
            self.extract(self.sqrt_alphas_cumprod, t, x_start.ndim) * x_start
            + self.extract(self.sqrt_one_minus_alphas_cumprod, t, x_start.ndim) * noise
        )

    def predict_xstart(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, clip: bool) -> torch.Tensor:
        """x0 from the predicted noise, clamped to [-1, 1] when ``clip``."""
        x0 = (
            self.extract(self.sqrt_recip_alphas_cumprod, t, x_t.ndim) * x_t
            - self.extract(self.sqrt_recipm1_alphas_cumprod, t, x_t.ndim) * eps
        )
        return x0.clamp(-1, 1) if clip else x0

    def p_mean_variance(
        self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, clip_denoised: bool = True
    ) -> dict[str, torch.Tensor]:
        """Mean, variance, log-variance of p(x_{t-1} | x_t) and the x0 prediction, from a model output.

        ``model_output`` is ``[N, 2C, ...]``: epsilon, then the learned-range value v in [-1, 1]
        that interpolates the log-variance between the clipped posterior's and beta's.
        """
        channels = x_t.shape[1]
        if model_output.shape[1] != 2 * channels:
            raise ValueError(f"model output has {model_output.shape[1]} channels; expected {2 * channels}")
        eps, var_values = model_output[:, :channels], model_output[:, channels:]
        min_log = self.extract(self.posterior_log_variance_clipped, t, x_t.ndim)
        max_log = self.extract(self._log_betas, t, x_t.ndim)
        frac = (var_values + 1) / 2
        log_variance = frac * max_log + (1 - frac) * min_log
        pred_xstart = self.predict_xstart(x_t, t, eps, clip_denoised)
        mean = (
            self.extract(self.posterior_mean_coef1, t, x_t.ndim) * pred_xstart
            + self.extract(self.posterior_mean_coef2, t, x_t.ndim) * x_t
        )
        return {
            "mean": mean,
            "variance": torch.exp(log_variance),
            "log_variance": log_variance,
            "pred_xstart": pred_xstart,
        }
