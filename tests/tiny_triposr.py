"""A tiny random-weight TripoSR checkpoint folder in the official layout, for tests and benchmarks.

``build_tiny_triposr`` writes ``config.yaml`` (the official keys and classes, tiny sizes), the image
tokenizer's ViT ``config.json`` in a folder beside it (named by ``pretrained_model_name_or_path``) and
``model.ckpt`` (a plain state_dict with the official names), which ``methods.triposr`` loads through
its ``checkpoint`` setting. ``REAL_CONFIG_YAML`` is the released model's config (bench/triposr.py).

Random weights give densities far from the official marching-cubes threshold (25), so the builder
shifts the density output: its median on a reference image's grid lands at the threshold, and a
surface exists for any input.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

TINY_VIT = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "layer_norm_eps": 1e-12,
    "image_size": 48,
    "patch_size": 16,
    "num_channels": 3,
    "qkv_bias": True,
}

CONFIG_TEMPLATE = """cond_image_size: {cond}
image_tokenizer_cls: tsr.models.tokenizers.image.DINOSingleImageTokenizer
image_tokenizer:
  pretrained_model_name_or_path: "{vit}"
tokenizer_cls: tsr.models.tokenizers.triplane.Triplane1DTokenizer
tokenizer:
  plane_size: {plane}
  num_channels: {channels}
backbone_cls: tsr.models.transformer.transformer_1d.Transformer1D
backbone:
  in_channels: ${{tokenizer.num_channels}}
  num_attention_heads: {heads}
  attention_head_dim: {head_dim}
  num_layers: {layers}
  cross_attention_dim: {cross}
post_processor_cls: tsr.models.network_utils.TriplaneUpsampleNetwork
post_processor:
  in_channels: {channels}
  out_channels: {out}
decoder_cls: tsr.models.network_utils.NeRFMLP
decoder:
  in_channels: {dec_in}
  n_neurons: {neurons}
  n_hidden_layers: {hidden}
  activation: silu
renderer_cls: tsr.models.nerf_renderer.TriplaneNeRFRenderer
renderer:
  radius: 0.87
  feature_reduction: concat
  density_activation: exp
  density_bias: -1.0
  num_samples_per_ray: {samples}
"""

TINY = {
    "cond": 64,
    "vit": "dino-vit",
    "plane": 6,
    "channels": 64,
    "heads": 2,
    "head_dim": 32,
    "layers": 2,
    "cross": 32,
    "out": 8,
    "dec_in": 24,
    "neurons": 16,
    "hidden": 3,
    "samples": 32,
}
REAL = {
    "cond": 512,
    "vit": "facebook/dino-vitb16",
    "plane": 32,
    "channels": 1024,
    "heads": 16,
    "head_dim": 64,
    "layers": 16,
    "cross": 768,
    "out": 40,
    "dec_in": 120,
    "neurons": 64,
    "hidden": 9,
    "samples": 128,
}
TINY_CONFIG_YAML = CONFIG_TEMPLATE.format(**TINY)
REAL_CONFIG_YAML = CONFIG_TEMPLATE.format(**REAL)


def reference_image(size: int = 96):
    """An RGBA object: an orange disc with a darker square on it, on a transparent background."""
    from PIL import Image

    yy, xx = np.mgrid[:size, :size]
    rgba = np.zeros((size, size, 4), np.uint8)
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2
    rgba[disc] = (230, 120, 40, 255)
    rgba[size // 3 : size // 2, size // 3 : size // 2] = (60, 40, 160, 255)
    return Image.fromarray(rgba, "RGBA")


def build_tiny_triposr(path: str | Path, seed: int = 0, threshold: float = 25.0) -> Path:
    """A random-weight tiny TripoSR folder (config.yaml, dino-vit/config.json, model.ckpt); returns ``path``."""
    import torch

    from methods.triposr import mesh, preprocess
    from methods.triposr.config import parse_config
    from methods.triposr.model import TripoSR

    path = Path(path)
    (path / TINY["vit"]).mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(TINY_CONFIG_YAML)
    (path / TINY["vit"] / "config.json").write_text(json.dumps(TINY_VIT))
    config = parse_config(TINY_CONFIG_YAML, TINY_VIT)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TripoSR(config).eval()
        with torch.no_grad():
            # official initialisation leaves plane features small; widen them so density varies in space
            model.post_processor.upsample.weight.mul_(8.0)
            prepared, _ = preprocess.prepare(reference_image())
            pixels = torch.from_numpy(np.asarray(prepared, dtype=np.float32) / 255.0)[None]
            planes = model(pixels)[0]
            raw = torch.log(torch.from_numpy(mesh.density_grid(model, planes, 16)).flatten()) - config.density_bias
            last = model.decoder.layers[-1]
            last.weight[0] *= 2.0 / max(float(raw.std()), 1e-6)
            raw = torch.log(torch.from_numpy(mesh.density_grid(model, planes, 16)).flatten()) - config.density_bias
            last.bias[0] += math.log(threshold) - config.density_bias - float(raw.median())
    torch.save(model.state_dict(), path / "model.ckpt")
    return path
