"""Random-weight Stable Diffusion and CLIP checkpoints built from configs, for tests and benchmarks.

``build_stable_diffusion`` saves a StableDiffusionPipeline (no safety checker) in the diffusers
layout (unet/, vae/, text_encoder/, tokenizer/, scheduler/) that ``methods.text_opt.sds`` loads
through ``checkpoint``; ``build_tiny_clip`` saves a CLIPModel with its tokenizer and image
processor. The ``TINY_*`` configs run a step in milliseconds; ``SD15_*`` are the real sizes
(bench/sds.py builds those in memory). Nothing downloads: the tokenizer is the byte-level one of
:mod:`tests.tiny_shap_e`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.tiny_shap_e import CLIP_MEAN, CLIP_STD, byte_level_tokenizer

# UNet at 8x8 latents; VAE with one downsampling (16 px images); a 16-wide text encoder.
TINY_UNET: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (8, 16),
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "cross_attention_dim": 16,
    "attention_head_dim": 2,
    "norm_num_groups": 4,
}
TINY_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": (8, 16),
    "down_block_types": ("DownEncoderBlock2D", "DownEncoderBlock2D"),
    "up_block_types": ("UpDecoderBlock2D", "UpDecoderBlock2D"),
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "sample_size": 16,
}
TINY_TEXT_ENCODER: dict[str, Any] = {
    "hidden_size": 16,
    "intermediate_size": 37,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "max_position_embeddings": 77,
    "projection_dim": 16,
}

# Stable Diffusion 1.5 (stable-diffusion-v1-5/stable-diffusion-v1-5: unet/, vae/ config.json; CLIP ViT-L/14 text).
SD15_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
SD15_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
SD15_TEXT_ENCODER: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 768,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}
# The DDPM noise schedule of Stable Diffusion 1.x / 2.x (scheduler/scheduler_config.json).
SD_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}

TINY_CLIP_TEXT: dict[str, Any] = {
    "hidden_size": 16,
    "intermediate_size": 37,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "max_position_embeddings": 77,
}
TINY_CLIP_VISION: dict[str, Any] = {
    "image_size": 32,
    "patch_size": 8,
    "hidden_size": 16,
    "intermediate_size": 37,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
}


def stable_diffusion_components(
    unet: dict[str, Any], vae: dict[str, Any], text_encoder: dict[str, Any], seed: int = 0, tokenizer: Any = None
) -> dict[str, Any]:
    """Random-weight UNet, VAE, text encoder, tokenizer and DDPM scheduler (seeded; the global RNG is kept)."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tokenizer or byte_level_tokenizer()
    text_config = _text_config(tokenizer, text_encoder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return {
            "unet": UNet2DConditionModel(**unet).eval(),
            "vae": AutoencoderKL(**vae).eval(),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**text_config)).eval(),
            "tokenizer": tokenizer,
            "scheduler": DDPMScheduler(**SD_SCHEDULER),
        }


def skip_without_gpu_weights(checkpoint: str) -> None:
    """Skip the calling test unless a CUDA GPU is here and ``checkpoint`` is in the Hugging Face cache."""
    import pytest

    from methods import registry, runtime

    if not runtime.has_cuda():
        pytest.skip("needs a CUDA GPU")
    if not registry.checkpoint_status(checkpoint).ok:
        pytest.skip(f"{checkpoint} is not in the Hugging Face cache")


def _text_config(tokenizer, sizes: dict[str, Any]) -> dict[str, Any]:
    """A CLIP text config for ``tokenizer`` (its vocabulary and special tokens) with the given sizes."""
    return {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": 1,
        **sizes,
    }


def build_stable_diffusion(
    path: str | Path,
    unet: dict[str, Any] | None = None,
    vae: dict[str, Any] | None = None,
    text_encoder: dict[str, Any] | None = None,
    seed: int = 0,
) -> Path:
    """A random-weight Stable Diffusion folder (the tiny sizes unless configs are given); returns ``path``."""
    from diffusers import StableDiffusionPipeline

    parts = stable_diffusion_components(
        unet or TINY_UNET, vae or TINY_VAE, text_encoder or TINY_TEXT_ENCODER, seed=seed
    )
    pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(path, safe_serialization=True)
    return Path(path)


def build_tiny_clip(path: str | Path, seed: int = 0) -> Path:
    """A random-weight CLIPModel (32 px images) with its tokenizer and image processor at ``path``."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tokenizer = byte_level_tokenizer()
    text = _text_config(tokenizer, TINY_CLIP_TEXT)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=TINY_CLIP_VISION, projection_dim=16)).eval()
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    size = TINY_CLIP_VISION["image_size"]
    CLIPImageProcessor(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    ).save_pretrained(path)
    return path


__all__ = [
    "SD15_TEXT_ENCODER",
    "SD15_UNET",
    "SD15_VAE",
    "SD_SCHEDULER",
    "TINY_CLIP_TEXT",
    "TINY_CLIP_VISION",
    "TINY_TEXT_ENCODER",
    "TINY_UNET",
    "TINY_VAE",
    "build_stable_diffusion",
    "build_tiny_clip",
    "stable_diffusion_components",
]


# 16 px renders on a 16^3 grid, a 32^3 mesh: a step takes milliseconds with the tiny models.
FAST = {"steps": 3, "resolution": 16, "grid_resolution": 16, "mesh_resolution": 32, "budget_seconds": 60}
