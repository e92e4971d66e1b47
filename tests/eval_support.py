"""Helpers for the eval tests: small analytic meshes and a tiny random-weight CLIP saved to a folder."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import trimesh

from methods.base import Asset, Mesh, normalize

SHARED_MESHES = Path(__file__).resolve().parents[2] / "shared" / "data" / "meshes"
MESH_FILES = (
    "khronos_gltf_via_trimesh/Duck.glb",
    "khronos_gltf_via_trimesh/BoxTextured.glb",
    "khronos_gltf_via_trimesh/CesiumMilkTruck.glb",
    "teapot_trimesh_stl/teapot.stl",
    "utah_teapot_pytorch3d/teapot.obj",
    "spot_cow_pytorch3d/cow.obj",
)


def unit_cube(offset=(0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    box.apply_translation(offset)
    return box


def mesh_asset(tm: trimesh.Trimesh, colors: np.ndarray | None = None, normalized: bool = True) -> Asset:
    asset = Asset(mesh=Mesh(tm.vertices, tm.faces, colors))
    return normalize(asset) if normalized else asset


def sphere_points(n: int, seed: int) -> np.ndarray:
    p = np.random.default_rng(seed).normal(size=(n, 3))
    return p / np.linalg.norm(p, axis=1, keepdims=True)


@functools.cache
def tiny_clip_dir() -> str:
    """One tiny CLIP folder per test session (building it costs seconds), removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="trilemma-tiny-clip-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return str(tiny_clip(folder))


def tiny_clip(folder: Path) -> Path:
    """A random-weight CLIPModel (image 32 px) and a CLIPTokenizer over letters, saved to ``folder``."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {c: i for i, c in enumerate(letters)}
    vocab.update({c + "</w>": len(letters) + i for i, c in enumerate(letters)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "bos_token_id": bos,
            "eos_token_id": eos,
            "pad_token_id": eos,
        },
        vision_config={
            "image_size": 32,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
