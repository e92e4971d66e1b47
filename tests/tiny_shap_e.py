"""Random-weight Shap-E pipelines built from configs, saved as diffusers checkpoints for tests and benchmarks.

``build_tiny_shap_e`` makes a seconds-to-run pipeline (the sizes of diffusers' own fast tests, smaller where they
are slow on a CPU); ``build_shap_e`` takes any component configs, so ``bench/shap_e.py`` builds a full-size one.
Nothing here downloads: the tokenizer is a byte-level BPE vocabulary written out here, and the marching-cubes
tables that the real ``openai/shap-e`` renderer stores are derived with scikit-image.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

# diffusers' PriorTransformer in the layout of openai/shap-e (no prd token, layer norm in), at test size.
TINY_PRIOR: dict[str, Any] = {
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "num_layers": 1,
    "embedding_dim": 32,
    "num_embeddings": 32,
    "additional_embeddings": 0,
    "time_embed_act_fn": "gelu",
    "norm_in_type": "layer",
    "encoder_hid_proj_type": None,
    "added_emb_type": None,
    "time_embed_dim": 128,
    "embedding_proj_dim": 32,
    "clip_embed_dim": 64,
}
# The image prior normalises the CLIP patch embeddings first (openai/shap-e-img2img).
TINY_IMAGE_PRIOR: dict[str, Any] = {**TINY_PRIOR, "embedding_proj_norm_type": "layer"}

TINY_TEXT_ENCODER: dict[str, Any] = {
    "hidden_size": 32,
    "projection_dim": 32,
    "intermediate_size": 37,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "max_position_embeddings": 77,
    "layer_norm_eps": 1e-5,
}
# 32 px with 4 px patches: 64 patch tokens instead of diffusers' 4096, which take seconds per step on a CPU.
TINY_IMAGE_ENCODER: dict[str, Any] = {
    "hidden_size": 32,
    "projection_dim": 32,
    "intermediate_size": 37,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "image_size": 32,
    "patch_size": 4,
    "num_channels": 3,
}
# The latent is num_embeddings x embedding_dim; params_proj turns its rows into the first four MLP weights.
TINY_RENDERER: dict[str, Any] = {
    "param_names": ("nerstf.mlp.0.weight", "nerstf.mlp.1.weight", "nerstf.mlp.2.weight", "nerstf.mlp.3.weight"),
    "param_shapes": ((8, 93), (8, 8), (8, 8), (8, 8)),
    "d_latent": 32,
    "d_hidden": 8,
    "n_output": 12,
    "n_hidden_layers": 6,
    "act_fn": "swish",
    "insert_direction_at": 4,
    "background": (255.0, 255.0, 255.0),
}
# The Karras-sigma Heun sampler of openai/shap-e (predicts x0, clipped to [-1, 1]).
SCHEDULER: dict[str, Any] = {
    "beta_schedule": "exp",
    "num_train_timesteps": 1024,
    "prediction_type": "sample",
    "use_karras_sigmas": True,
    "clip_sample": True,
    "clip_sample_range": 1.0,
}
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# ----------------------------------------------------------------------------- marching cubes tables

# Cube corner i sits at (i & 1, i >> 1 & 1, i >> 2 & 1): the bit order of MeshDecoder's bitmasks.
_CORNERS = [(i & 1, (i >> 1) & 1, (i >> 2) & 1) for i in range(8)]


def _edge_index(axis: int, u: int, v: int) -> int:
    """MeshDecoder's local edge numbering: 0-3 along x, 4-7 along y, 8-11 along z, (u, v) over the other axes."""
    return 4 * axis + u + 2 * v


@functools.lru_cache(maxsize=1)
def marching_cubes_table() -> tuple[np.ndarray, np.ndarray]:
    """The 256-case triangle table in the layout of ``MeshDecoder.cases`` (256, 5, 3) and ``.masks`` (256, 5).

    Each case is solved by scikit-image's classic (Lorensen) marching cubes on a 2x2x2 cube whose corners are +1
    (inside, as Shap-E's signed distance is positive inside) or -1; every vertex lands on an edge midpoint, which
    names the edge. Triangles are wound so that their normals point out of the shape, as in the official table.
    """
    from skimage.measure import marching_cubes

    cases = np.zeros((256, 5, 3), dtype=np.int64)
    masks = np.zeros((256, 5), dtype=bool)
    for code in range(1, 255):  # 0 and 255 have no surface
        signs = np.array([1.0 if code >> i & 1 else -1.0 for i in range(8)])
        cube = np.empty((2, 2, 2))
        for sign, (x, y, z) in zip(signs, _CORNERS, strict=True):
            cube[x, y, z] = sign
        verts, faces, _, _ = marching_cubes(cube, 0.0, method="lorensen")
        for slot, tri in enumerate(faces):
            points = verts[tri]
            edges, outward = [], np.zeros(3)
            for p in points:
                axis = int(np.argmax(np.abs(p - np.round(p)) > 0.25))
                u, v = (int(round(p[a])) for a in range(3) if a != axis)
                edges.append(_edge_index(axis, u, v))
                lo = [int(round(c)) if a != axis else 0 for a, c in enumerate(p)]
                # the edge runs from its low corner along +axis; outward is towards its negative corner
                outward[axis] += 1.0 if signs[lo[0] + 2 * lo[1] + 4 * lo[2]] > 0 else -1.0
            normal = np.cross(points[1] - points[0], points[2] - points[0])
            if normal @ outward < 0:
                edges = [edges[0], edges[2], edges[1]]
            cases[code, slot] = edges
            masks[code, slot] = True
    return cases, masks


def fill_marching_cubes_tables(renderer: Any) -> None:
    """Write the tables into a ShapERenderer; a fresh one holds zeros, which decode every latent to an empty mesh."""
    import torch

    cases, masks = marching_cubes_table()
    renderer.mesh_decoder.cases.copy_(torch.from_numpy(cases))
    renderer.mesh_decoder.masks.copy_(torch.from_numpy(masks))


# ----------------------------------------------------------------------------- tokenizer and processor


def byte_vocab() -> dict[str, int]:
    """CLIP's byte-to-unicode alphabet in byte order, each symbol with and without the end-of-word mark, then
    <|startoftext|> and <|endoftext|>: a vocabulary for a CLIP tokenizer without merges (offline; ids fit
    ViT-L/14's table)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    symbols = [chr(c) for c in printable] + [chr(256 + i) for i in range(len(extra))]
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab |= {s + "</w>": len(symbols) + i for i, s in enumerate(symbols)}
    return vocab | {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}


def byte_level_tokenizer(model_max_length: int = 77) -> Any:
    """A CLIPTokenizer whose vocabulary is the 256 byte-level symbols, word-final forms and CLIP's two specials.

    Ids 0..511 are symbols (id 0 is "!", the id Shap-E's pipeline pads with, as in the real vocabulary), then
    <|startoftext|> and <|endoftext|> last, as in CLIP. With no merges every character is one token.
    """
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    symbols = alphabet + [s + "</w>" for s in alphabet]
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def clip_image_processor(size: int) -> Any:
    """CLIP's preprocessing (bicubic resize, centre crop, CLIP mean/std) at ``size`` pixels."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        do_resize=True,
        size={"shortest_edge": size},
        resample=3,
        do_center_crop=True,
        crop_size={"height": size, "width": size},
        do_normalize=True,
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
        do_convert_rgb=True,
    )


# ----------------------------------------------------------------------------- pipelines


def build_shap_e(
    path: str | Path,
    *,
    image: bool,
    prior: dict[str, Any],
    encoder: dict[str, Any],
    renderer: dict[str, Any],
    image_size: int = 224,
    seed: int = 0,
) -> Path:
    """Build a random-weight ShapEPipeline (or ShapEImg2ImgPipeline) from configs and ``save_pretrained`` it.

    ``encoder`` is a CLIPTextConfig (text) or CLIPVisionConfig (image) dict; weights are seeded so the same call
    gives the same checkpoint. Returns ``path``.
    """
    import torch
    from diffusers import HeunDiscreteScheduler, PriorTransformer, ShapEImg2ImgPipeline, ShapEPipeline
    from diffusers.pipelines.shap_e import ShapERenderer

    path = Path(path)
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG as it was
        torch.manual_seed(seed)
        prior_model = PriorTransformer(**prior)
        shap_e_renderer = ShapERenderer(**renderer)
        fill_marching_cubes_tables(shap_e_renderer)
        scheduler = HeunDiscreteScheduler(**SCHEDULER)
        if image:
            from transformers import CLIPVisionConfig, CLIPVisionModel

            vision = CLIPVisionModel(CLIPVisionConfig(**encoder))
            pipe = ShapEImg2ImgPipeline(
                prior=prior_model,
                image_encoder=vision.eval(),
                image_processor=clip_image_processor(image_size),
                scheduler=scheduler,
                shap_e_renderer=shap_e_renderer,
            )
        else:
            from transformers import CLIPTextConfig, CLIPTextModelWithProjection

            tokenizer = byte_level_tokenizer()
            text_config = CLIPTextConfig(
                **{
                    "vocab_size": len(tokenizer),
                    "bos_token_id": tokenizer.bos_token_id,
                    "eos_token_id": tokenizer.eos_token_id,
                    "pad_token_id": 1,
                    **encoder,
                }
            )
            pipe = ShapEPipeline(
                prior=prior_model,
                text_encoder=CLIPTextModelWithProjection(text_config).eval(),
                tokenizer=tokenizer,
                scheduler=scheduler,
                shap_e_renderer=shap_e_renderer,
            )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def build_tiny_shap_e(path: str | Path, image: bool = False) -> Path:
    """A tiny random-weight Shap-E checkpoint at ``path`` (text, or image when ``image``); returns ``path``."""
    return build_shap_e(
        path,
        image=image,
        prior=TINY_IMAGE_PRIOR if image else TINY_PRIOR,
        encoder=TINY_IMAGE_ENCODER if image else TINY_TEXT_ENCODER,
        renderer=TINY_RENDERER,
        image_size=TINY_IMAGE_ENCODER["image_size"],
    )


def sphere_field(grid_size: int, radius: float = 0.6) -> np.ndarray:
    """A signed distance (positive inside) of a sphere sampled on MeshDecoder's grid over [-1, 1]^3."""
    axis = np.linspace(-1.0, 1.0, grid_size)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    return (radius - np.sqrt(x**2 + y**2 + z**2)).astype(np.float32)


__all__ = [
    "SCHEDULER",
    "TINY_IMAGE_ENCODER",
    "TINY_IMAGE_PRIOR",
    "TINY_PRIOR",
    "TINY_RENDERER",
    "TINY_TEXT_ENCODER",
    "build_shap_e",
    "build_tiny_shap_e",
    "byte_level_tokenizer",
    "clip_image_processor",
    "fill_marching_cubes_tables",
    "marching_cubes_table",
    "sphere_field",
]
