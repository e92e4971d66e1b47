"""The official Point-E configurations: models, diffusion schedules, sampler defaults, checkpoint URLs,
and which of them a run loads.

Data and two light helpers (no torch), so the method spec and the settings read it without heavy imports.
The values are the facts of the official release (openai/point-e, commit fc8a607).
"""

from __future__ import annotations

from typing import Any

_CHANNEL_SCALES = (2.0, 2.0, 2.0, 0.007843137255, 0.007843137255, 0.007843137255)  # xyz, RGB/255*2
_CHANNEL_BIASES = (0.0, 0.0, 0.0, -1.0, -1.0, -1.0)

_BASE40M = {"width": 512, "layers": 12, "heads": 8}

MODEL_CONFIGS: dict[str, dict[str, Any]] = {
    "base40M-imagevec": {
        "name": "CLIPImagePointDiffusionTransformer",
        **_BASE40M,
        "cond_drop_prob": 0.1,
        "init_scale": 0.25,
        "input_channels": 6,
        "n_ctx": 1024,
        "output_channels": 12,
        "time_token_cond": True,
        "token_cond": True,
    },
    "base40M-textvec": {
        "name": "CLIPImagePointDiffusionTransformer",
        **_BASE40M,
        "cond_drop_prob": 0.1,
        "init_scale": 0.25,
        "input_channels": 6,
        "n_ctx": 1024,
        "output_channels": 12,
        "time_token_cond": True,
        "token_cond": True,
    },
    "base40M-uncond": {
        "name": "PointDiffusionTransformer",
        **_BASE40M,
        "init_scale": 0.25,
        "input_channels": 6,
        "n_ctx": 1024,
        "output_channels": 12,
        "time_token_cond": True,
    },
    "base40M": {
        "name": "CLIPImageGridPointDiffusionTransformer",
        **_BASE40M,
        "cond_drop_prob": 0.1,
        "init_scale": 0.25,
        "input_channels": 6,
        "n_ctx": 1024,
        "output_channels": 12,
        "time_token_cond": True,
    },
    "base300M": {
        "name": "CLIPImageGridPointDiffusionTransformer",
        "width": 1024,
        "layers": 24,
        "heads": 16,
        "cond_drop_prob": 0.1,
        "init_scale": 0.25,
        "input_channels": 6,
        "n_ctx": 1024,
        "output_channels": 12,
        "time_token_cond": True,
    },
    "base1B": {
        "name": "CLIPImageGridPointDiffusionTransformer",
        "width": 2048,
        "layers": 24,
        "heads": 32,
        "cond_drop_prob": 0.1,
        "init_scale": 0.25,
        "input_channels": 6,
        "n_ctx": 1024,
        "output_channels": 12,
        "time_token_cond": True,
    },
    "upsample": {
        "name": "CLIPImageGridUpsamplePointDiffusionTransformer",
        **_BASE40M,
        "channel_biases": list(_CHANNEL_BIASES),
        "channel_scales": list(_CHANNEL_SCALES),
        "cond_ctx": 1024,
        "cond_drop_prob": 0.1,
        "init_scale": 0.25,
        "input_channels": 6,
        "n_ctx": 3072,
        "output_channels": 12,
        "time_token_cond": True,
    },
    "sdf": {
        "name": "CrossAttentionPointCloudSDFModel",
        "width": 256,
        "encoder_layers": 8,
        "encoder_heads": 4,
        "decoder_layers": 4,
        "decoder_heads": 4,
        "init_scale": 0.25,
        "n_ctx": 4096,
    },
}

_BASE_DIFFUSION = {
    "schedule": "cosine",
    "timesteps": 1024,
    "mean_type": "epsilon",
    "channel_scales": list(_CHANNEL_SCALES),
    "channel_biases": list(_CHANNEL_BIASES),
}

DIFFUSION_CONFIGS: dict[str, dict[str, Any]] = {
    **{name: dict(_BASE_DIFFUSION) for name in MODEL_CONFIGS if name.startswith("base")},
    "upsample": {**_BASE_DIFFUSION, "schedule": "linear"},
}

# Karras (Heun) sampler defaults of the official PointCloudSampler, per stage.
KARRAS_DEFAULTS: dict[str, dict[str, float]] = {
    "base": {"steps": 64, "sigma_min": 1e-3, "sigma_max": 120.0, "s_churn": 3.0},
    "upsample": {"steps": 64, "sigma_min": 1e-3, "sigma_max": 160.0, "s_churn": 0.0},
}

BASE_POINTS = 1024
UPSAMPLED_POINTS = 4096  # the upsampler adds 4096 - 1024 points

OFFICIAL = "official"  # the `checkpoint` setting meaning: download from the official URLs into the cache
_URL_ROOT = "https://openaipublic.azureedge.net/main/point-e/"
CHECKPOINT_FILES: dict[str, str] = {
    "base40M-imagevec": "base_40m_imagevec.pt",
    "base40M-textvec": "base_40m_textvec.pt",
    "base40M-uncond": "base_40m_uncond.pt",
    "base40M": "base_40m.pt",
    "base300M": "base_300m.pt",
    "base1B": "base_1b.pt",
    "upsample": "upsample_40m.pt",
    "sdf": "sdf.pt",
}
CHECKPOINT_URLS: dict[str, str] = {name: _URL_ROOT + file for name, file in CHECKPOINT_FILES.items()}

# sha256 of the official files. OpenAI publishes none; fill these once from a trusted download
# (the cache writes `<file>.sha256` on first download; see checkpoints.py).
CHECKPOINT_SHA256: dict[str, str] = {}

# Approximate download sizes in GB (float32 state dicts).
CHECKPOINT_GB: dict[str, float] = {
    "base40M-imagevec": 0.16,
    "base40M-textvec": 0.16,
    "base40M-uncond": 0.16,
    "base40M": 0.16,
    "base300M": 1.25,
    "base1B": 5.0,
    "upsample": 0.16,
    "sdf": 0.04,
}

CLIP_CHECKPOINT = "openai/clip-vit-large-patch14"
CLIP_GB = 1.7

# Which base model each modality and size uses. Text exists only as the 40M text-vector model.
TEXT_BASE = "base40M-textvec"
IMAGE_BASES: dict[str, str] = {"40M": "base40M", "300M": "base300M", "1B": "base1B"}


def base_model_name(settings: Any, modality: str) -> str:
    """The official config name of the base model a run with these settings (``model_size``) uses."""
    from methods.base import InvalidSettings

    if modality == "text":
        if settings.model_size != "40M":
            raise InvalidSettings(
                f"model_size={settings.model_size} exists only for image input; text input uses the 40M text model"
            )
        return TEXT_BASE
    return IMAGE_BASES[settings.model_size]


def checkpoint_names(settings: Any, modality: str) -> list[str]:
    """The official checkpoints a run loads (base, then ``upsample`` and ``sdf`` when used), in loading order."""
    names = [base_model_name(settings, modality)]
    if settings.upsample:
        names.append("upsample")
    if settings.mesh_method == "sdf":
        names.append("sdf")
    return names
