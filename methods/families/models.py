"""The four families as shipped: which network each samples with, saving / loading the safetensors
weights (the config travels in the file's metadata), and one sampling entry point for all of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from methods.base import CheckpointError
from methods.families import diffusion, gan, sde, vae
from methods.families.nets import Decoder3D, NetConfig, UNet3D, multi_hot

FAMILIES = ("vae", "gan", "ddpm", "sde")
METHOD_FAMILY = {"vae": "vae", "gan": "gan", "ddpm": "ddpm", "score-sde": "sde"}
FORMAT = "trilemma3d-family-1"


@dataclass
class FamilyModel:
    """A loaded sampling network: the VAE prior + decoder, the GAN generator or the (EMA) denoiser."""

    family: str
    net: nn.Module
    config: NetConfig
    hparams: dict[str, Any] = field(default_factory=dict)

    def schedule(self) -> diffusion.NoiseSchedule:
        return diffusion.NoiseSchedule(**self.hparams.get("schedule", {}))

    def vpsde(self) -> sde.VPSDE:
        return sde.VPSDE(**self.hparams.get("sde", {}))

    def standardizer(self) -> diffusion.Standardizer:
        return diffusion.Standardizer(**self.hparams.get("norm", {}))

    def noise(self) -> diffusion.StructuredNoise:
        return diffusion.StructuredNoise(**self.hparams.get("noise", {}))


def sampling_net(family: str, cfg: NetConfig) -> nn.Module:
    """A fresh sampling network of the family (random weights)."""
    if family == "vae":
        return vae.VAESampler(cfg)
    if family == "gan":
        return Decoder3D(cfg)
    if family in ("ddpm", "sde"):
        return UNet3D(cfg)
    raise ValueError(f"unknown family {family!r}; one of {', '.join(FAMILIES)}")


def default_hparams(
    family: str,
    schedule: str = "linear",
    noise: diffusion.StructuredNoise | None = None,
    prediction: str = "eps",
) -> dict[str, Any]:
    """What a sampler needs besides the weights; ``prediction`` (sde: eps or v) is what the network outputs."""
    noise_dict = {"noise": noise.to_dict()} if noise is not None else {}
    if family == "ddpm":
        return {"schedule": diffusion.NoiseSchedule(schedule).to_dict(), **noise_dict}
    if family == "sde":
        return {"sde": sde.VPSDE().to_dict(), "prediction": prediction, **noise_dict}
    return {}


def save(model: FamilyModel, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write the network's float32 weights to ``path`` (safetensors) with family, config and hparams."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.net.state_dict().items()}
    meta = {
        "format": FORMAT,
        "family": model.family,
        "config": json.dumps(model.config.to_dict()),
        "hparams": json.dumps(model.hparams),
        **{k: json.dumps(v) for k, v in (extra or {}).items()},
    }
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.chmod(0o644)
    tmp.replace(path)
    return path


def load(path: str | Path, device: str = "cpu") -> FamilyModel:
    """Rebuild the network from the file's metadata and load its weights; CheckpointError if unusable."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no weights at {path}; train them with `python -m methods.families.train --family ...`")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r} is not {FORMAT!r}")
        family = meta["family"]
        cfg = NetConfig.from_dict(json.loads(meta["config"]))
        net = sampling_net(family, cfg)
        net.load_state_dict(tensors)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path} is not a family-model weights file: {exc}") from None
    net.to(device).eval()
    return FamilyModel(family, net, cfg, json.loads(meta.get("hparams", "{}")))


def iter_sample(
    model: FamilyModel,
    token_ids: list[list[int]] | list[tuple[int, ...]],
    settings: Any,
    device: str = "cpu",
    generator: torch.Generator | None = None,
) -> Generator[tuple[int, int], None, torch.Tensor]:
    """Sample one grid per caption (B, 4, r, r, r) in [0, 1]; yields (step, total) as it goes.

    ``settings`` is the method's Settings (or anything with the same attributes): seed, and per
    family temperature (vae), truncation (gan), sampler / steps / guidance (ddpm, sde), snr (sde).
    """
    counts = multi_hot(token_ids, device)
    if generator is None:
        generator = torch.Generator(device=device)
        generator.manual_seed(int(settings.seed))
    if model.family == "vae":
        yield 0, 1
        return vae.sample(model.net, counts, generator, float(settings.temperature))
    if model.family == "gan":
        yield 0, 1
        return gan.sample(model.net, counts, generator, float(settings.truncation))
    shared = {  # what both diffusion samplers take
        "sampler": settings.sampler,
        "steps": int(settings.steps),
        "guidance": float(settings.guidance),
        "generator": generator,
        "norm": model.standardizer(),
        "noise": model.noise(),
    }
    if model.family == "ddpm":
        eta = float(getattr(settings, "eta", 0.0))
        return (yield from diffusion.iter_sample(model.net, model.schedule(), counts, eta=eta, **shared))
    snr, prediction = float(getattr(settings, "snr", 0.16)), model.hparams.get("prediction", "eps")
    return (yield from sde.iter_sample(model.net, model.vpsde(), counts, snr=snr, prediction=prediction, **shared))


def sample_grids(
    model: FamilyModel,
    token_ids: list[list[int]] | list[tuple[int, ...]],
    settings: Any,
    device: str = "cpu",
    callback: Callable[[int, int], None] | None = None,
    generator: torch.Generator | None = None,
):
    """:func:`iter_sample` driven to its end, as a numpy array (B, 4, r, r, r)."""
    grids = diffusion.run_sampler(iter_sample(model, token_ids, settings, device, generator), callback)
    return grids.float().cpu().numpy()
