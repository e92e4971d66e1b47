"""A tiny random-weight Hunyuan3D-2mini checkpoint folder in the released layout, for tests (and the released
configuration for bench/hunyuan3d.py).

``build_tiny_hunyuan3d`` writes a variant sub-folder (``hunyuan3d-dit-v2-mini-turbo`` by default) under the
given root with ``config.yaml`` (the official format: ``target`` / ``params`` blocks naming the hy3dgen classes)
and ``model.fp16.safetensors`` (float16, keys ``model.*`` / ``vae.*`` / ``conditioner.*``, DINOv2 in
transformers-4.x names), which ``methods.hunyuan3d`` loads through its ``checkpoint`` setting.

Random weights give a field with no surface in the box, so the builder shapes the VAE's head as the parity
fixtures do: the query projection reads high frequencies weakly (a smooth field), and the output is scaled and
shifted so that about a quarter of the box is inside for the reference image.
"""

from __future__ import annotations

from pathlib import Path

import yaml

PKG = "hy3dgen.shapegen."
TINY_DINO = {
    "attention_probs_dropout_prob": 0.0,
    "drop_path_rate": 0.0,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "hidden_size": 32,
    "image_size": 56,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-6,
    "layerscale_value": 1.0,
    "mlp_ratio": 4,
    "model_type": "dinov2",
    "num_attention_heads": 2,
    "num_channels": 3,
    "num_hidden_layers": 2,
    "patch_size": 14,
    "qkv_bias": True,
    "torch_dtype": "float32",
    "use_swiglu_ffn": True,
}
TINY_DIT = {
    "in_channels": 8,
    "context_in_dim": 32,
    "hidden_size": 32,
    "mlp_ratio": 4.0,
    "num_heads": 2,
    "depth": 2,
    "depth_single_blocks": 2,
    "axes_dim": [16],
    "theta": 10000,
    "qkv_bias": True,
    "guidance_embed": False,
}
TINY_VAE = {
    "num_latents": 16,
    "embed_dim": 8,
    "num_freqs": 8,
    "include_pi": False,
    "heads": 2,
    "width": 32,
    "num_decoder_layers": 2,
    "qkv_bias": False,
    "qk_norm": True,
    "scale_factor": 0.8,
}
REAL_DINO = {**TINY_DINO, "hidden_size": 1536, "num_attention_heads": 24, "num_hidden_layers": 40, "image_size": 518}
REAL_DIT = {**TINY_DIT, "in_channels": 64, "context_in_dim": 1536, "hidden_size": 1024, "num_heads": 16, "depth": 8,
            "depth_single_blocks": 16, "axes_dim": [64]}  # fmt: skip
REAL_VAE = {**TINY_VAE, "num_latents": 512, "embed_dim": 64, "heads": 16, "width": 1024, "num_decoder_layers": 16,
            "scale_factor": 1.0188137142395404}  # fmt: skip
SUBFOLDERS = {v: "hunyuan3d-dit-v2-mini" + ("" if v == "mini" else f"-{v}") for v in ("mini", "fast", "turbo")}


def config_yaml(variant: str = "turbo", real: bool = False, image_size: int | None = None) -> str:
    """A ``config.yaml`` in the released format (``real``: the released sizes)."""
    dino, dit, vae = (REAL_DINO, REAL_DIT, REAL_VAE) if real else (TINY_DINO, TINY_DIT, TINY_VAE)
    if variant == "turbo":
        scheduler = {
            "target": PKG + "schedulers.ConsistencyFlowMatchEulerDiscreteScheduler",
            "params": {"num_train_timesteps": 1000, "pcm_timesteps": 100},
        }
    else:
        scheduler = {
            "target": PKG + "schedulers.FlowMatchEulerDiscreteScheduler",
            "params": {"num_train_timesteps": 1000},
        }
    config = {
        "model": {"target": PKG + "models.Hunyuan3DDiT", "params": {**dit, "guidance_embed": variant != "mini"}},
        "vae": {"target": PKG + "models.ShapeVAE", "params": vae},
        "conditioner": {
            "target": PKG + "models.SingleImageEncoder",
            "params": {
                "main_image_encoder": {
                    "type": "DinoImageEncoder",
                    "kwargs": {"config": dino, "image_size": dino["image_size"]},
                }
            },
        },
        "scheduler": scheduler,
        "image_processor": {
            "target": PKG + "preprocessors.ImageProcessorV2",
            "params": {"size": image_size or (512 if real else 64), "border_ratio": 0.15},
        },
        "pipeline": {"target": PKG + "pipelines.Hunyuan3DDiTFlowMatchingPipeline"},
    }
    return yaml.safe_dump(config, sort_keys=False)


def reference_image(size: int = 96):
    from tests.tiny_triposr import reference_image as disc

    return disc(size)


def random_model(config, seed: int):
    import torch

    from methods.hunyuan3d.model import Hunyuan3D

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Hunyuan3D(config)
    return model.eval()


def build_tiny_hunyuan3d(root: str | Path, variant: str = "turbo", seed: int = 0, inside: float = 0.25) -> Path:
    """A random-weight tiny checkpoint root holding the variant's sub-folder; returns the root."""
    import torch
    from safetensors.torch import save_file

    from methods.hunyuan3d import pipeline, preprocess
    from methods.hunyuan3d.config import parse_config

    root = Path(root)
    folder = root / SUBFOLDERS[variant]
    folder.mkdir(parents=True, exist_ok=True)
    text = config_yaml(variant)
    (folder / "config.yaml").write_text(text)
    config = parse_config(text)
    model = random_model(config, seed)
    with torch.no_grad():
        geo = model.vae.geo_decoder
        freqs = config.vae.num_freqs
        decay = torch.tensor([0.5**k for k in range(freqs)] * 3)
        geo.query_proj.weight[:, 3 : 3 + 3 * freqs] *= decay
        geo.query_proj.weight[:, 3 + 3 * freqs :] *= decay
        pixels, _, _ = preprocess.prepare(reference_image(), config.image_size, config.border_ratio)
        cond, uncond = pipeline.encode(model, pixels)
        latents = pipeline.initial_latents(model, 0)
        for step in pipeline.denoise(model, cond, uncond, latents, 2, 5.0):
            latents = step.latents
        grid = pipeline.field_grid(pipeline.field_query(model, latents), 16, 0)
        head = geo.output_proj
        scale = 4.0 / max(float(grid.std()), 1e-6)
        head.weight *= scale
        head.bias *= scale
        grid = pipeline.field_grid(pipeline.field_query(model, latents), 16, 0)
        head.bias -= float(torch.quantile(grid.flatten(), 1.0 - inside))  # positive inside
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, folder / "model.fp16.safetensors")
    return root
