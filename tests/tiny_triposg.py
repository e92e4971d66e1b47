"""A tiny random-weight TripoSG checkpoint folder in the released layout, for tests (and a real-size config
for bench/latent3d.py).

``build_tiny_triposg`` writes ``model_index.json`` and the five component folders (configs in the official
formats, ``model.safetensors`` / ``diffusion_pytorch_model.safetensors`` with the released key names, DINOv2's
in transformers-4.x names), which ``methods.triposg`` loads through its ``checkpoint`` setting.

Random weights give a field with no surface in the box, so the builder shapes the VAE's head as the parity
fixtures do: the query projection reads high frequencies weakly (a smooth field), and the output is scaled and
shifted so that about a quarter of the box is inside for the reference image.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TINY_DINO = {
    "architectures": ["Dinov2Model"],
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "mlp_ratio": 4,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-6,
    "layerscale_value": 1.0,
    "image_size": 70,
    "patch_size": 14,
    "num_channels": 3,
    "qkv_bias": True,
    "use_swiglu_ffn": False,
    "model_type": "dinov2",
}
TINY_PROCESSOR = {
    "image_processor_type": "BitImageProcessor",
    "size": {"shortest_edge": 64},
    "crop_size": {"height": 56, "width": 56},
    "resample": 3,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
}
TINY_DIT = {"_class_name": "TripoSGDiTModel", "num_attention_heads": 2, "width": 32, "in_channels": 8,
            "num_layers": 3, "cross_attention_dim": 32}  # fmt: skip
TINY_VAE = {"_class_name": "TripoSGVAEModel", "in_channels": 3, "latent_channels": 8, "num_attention_heads": 2,
            "width_encoder": 32, "width_decoder": 32, "num_layers_encoder": 1, "num_layers_decoder": 2,
            "embedding_type": "frequency", "embed_frequency": 8, "embed_include_pi": False}  # fmt: skip
SCHEDULER = {"_class_name": "RectifiedFlowScheduler", "num_train_timesteps": 1000, "shift": 1.0,
             "use_dynamic_shifting": False}  # fmt: skip
MODEL_INDEX = {
    "_class_name": "TripoSGPipeline",
    "feature_extractor_dinov2": ["transformers", "BitImageProcessor"],
    "image_encoder_dinov2": ["transformers", "Dinov2Model"],
    "scheduler": ["triposg", "RectifiedFlowScheduler"],
    "transformer": ["triposg", "TripoSGDiTModel"],
    "vae": ["triposg", "TripoSGVAEModel"],
}
# the released architecture (bench/latent3d.py builds it with random weights)
REAL_DINO = {**TINY_DINO, "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 518}
REAL_PROCESSOR = {**TINY_PROCESSOR, "size": {"shortest_edge": 256}, "crop_size": {"height": 224, "width": 224}}
REAL_DIT = {"_class_name": "TripoSGDiTModel", "num_attention_heads": 16, "width": 2048, "in_channels": 64,
            "num_layers": 21, "cross_attention_dim": 1024}  # fmt: skip
REAL_VAE = {**TINY_VAE, "latent_channels": 64, "num_attention_heads": 8, "width_encoder": 512, "width_decoder": 1024,
            "num_layers_encoder": 8, "num_layers_decoder": 16}  # fmt: skip
TINY_TOKENS = 16


def write_configs(path: Path, dino: dict, processor: dict, dit: dict, vae: dict) -> None:
    files = {
        "image_encoder_dinov2/config.json": dino,
        "feature_extractor_dinov2/preprocessor_config.json": processor,
        "transformer/config.json": dit,
        "vae/config.json": vae,
        "scheduler/scheduler_config.json": SCHEDULER,
        "model_index.json": MODEL_INDEX,
    }
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(json.dumps(data, indent=1))


def save_weights(path: Path, model) -> None:
    from safetensors.torch import save_file

    def contiguous(state):
        return {k: v.detach().contiguous() for k, v in state.items()}

    save_file(contiguous(model.dino.released_state_dict()), path / "image_encoder_dinov2" / "model.safetensors")
    save_file(contiguous(model.dit.state_dict()), path / "transformer" / "diffusion_pytorch_model.safetensors")
    save_file(contiguous(model.vae.state_dict()), path / "vae" / "diffusion_pytorch_model.safetensors")


def random_model(config, seed: int):
    """The three networks with random weights (default initialisation), float32 on the CPU."""
    import torch

    from methods.latent3d import DinoConditioner
    from methods.triposg.checkpoints import TripoSG
    from methods.triposg.model import TripoSGDiT, TripoSGVAE

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dino, dit, vae = DinoConditioner(config.dino), TripoSGDiT(config.dit), TripoSGVAE(config.vae)
    return TripoSG(config, dino.eval(), dit.eval(), vae.eval(), "cpu", torch.float32)


def reference_image(size: int = 96):
    from tests.tiny_triposr import reference_image as disc

    return disc(size)


def build_tiny_triposg(path: str | Path, seed: int = 0, inside: float = 0.25) -> Path:
    """A random-weight tiny TripoSG folder; returns ``path``. About ``inside`` of the box is inside the shape."""
    import torch

    from methods.triposg import checkpoints, pipeline, preprocess

    path = Path(path)
    write_configs(path, TINY_DINO, TINY_PROCESSOR, TINY_DIT, TINY_VAE)
    model = random_model(checkpoints.load_config(path), seed)
    with torch.no_grad():
        vae = model.vae
        freqs = vae.config.embed_frequency
        decay = torch.tensor([0.5**k for k in range(freqs)] * 3 * 2)  # sin/cos of 2^k read weakly
        vae.decoder.proj_query.weight[:, 3:] *= decay
        prepared, _ = preprocess.prepare(reference_image())
        cond, uncond = pipeline.encode(model, prepared)
        latents = pipeline.initial_latents(model, 0, TINY_TOKENS)
        for step in pipeline.denoise(model, cond, uncond, latents, 2, 3.0):
            latents = step.latents
        grid = pipeline.field_grid(pipeline.field_query(model, latents), 16, 0)
        head = vae.decoder.proj_out
        scale = 4.0 / max(float(grid.std()), 1e-6)
        head.weight *= scale
        head.bias *= scale
        grid = pipeline.field_grid(pipeline.field_query(model, latents), 16, 0)
        head.bias += float(torch.quantile(grid.flatten(), 1.0 - inside))  # logits are -proj_out: shifts them down
    save_weights(path, model)
    return path


def image_array(size: int = 96) -> np.ndarray:
    return np.asarray(reference_image(size))
