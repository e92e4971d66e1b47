"""The DINOv2 image conditioner of the 3D-latent models: transformers' ``Dinov2Model`` with the 4.x key names.

The released checkpoints (TripoSG's ``image_encoder_dinov2``, Hunyuan3D's ``conditioner.main_image_encoder``)
store transformers-4.x names (``attention.attention.query``, ``mlp.weights_in`` for SwiGLU); transformers 5
renamed and split them. State_dict hooks translate both ways, so the module saves and loads the released names
(``strict=True``) whatever transformers is installed. The image preprocessing of transformers 4.x's PIL
``BitImageProcessor`` (which 5.x replaced by a torchvision backend that differs by up to one uint8 step) is
reproduced in :func:`bit_image_pixels`.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# transformers 5 Dinov2 names -> 4.x names (the released checkpoints'); SwiGLU's split is handled separately
_TO_V4 = (
    (re.compile(r"\.attention\.q_proj\."), ".attention.attention.query."),
    (re.compile(r"\.attention\.k_proj\."), ".attention.attention.key."),
    (re.compile(r"\.attention\.v_proj\."), ".attention.attention.value."),
    (re.compile(r"\.attention\.o_proj\."), ".attention.output.dense."),
    (re.compile(r"\.mlp\.down_proj\."), ".mlp.weights_out."),
)
_FROM_V4 = (
    (re.compile(r"\.attention\.attention\.query\."), ".attention.q_proj."),
    (re.compile(r"\.attention\.attention\.key\."), ".attention.k_proj."),
    (re.compile(r"\.attention\.attention\.value\."), ".attention.v_proj."),
    (re.compile(r"\.attention\.output\.dense\."), ".attention.o_proj."),
    (re.compile(r"\.mlp\.weights_out\."), ".mlp.down_proj."),
)
_GATE = re.compile(r"\.mlp\.gate_proj\.(weight|bias)$")
_FUSED = re.compile(r"\.mlp\.weights_in\.(weight|bias)$")


def _rename(name: str, rules) -> str:
    for pattern, repl in rules:
        name = pattern.sub(repl, name)
    return name


def to_v4_names(state: dict[str, torch.Tensor], prefix: str = "") -> None:
    """In place: transformers-5 Dinov2 keys under ``prefix`` -> the 4.x names (SwiGLU gate/up fused back)."""
    items = list(state.items())
    state.clear()
    for key, value in items:
        if not key.startswith(prefix):
            state[key] = value
            continue
        rest = key[len(prefix) :]
        gate = _GATE.search(rest)
        if gate:
            up = prefix + rest.replace(".mlp.gate_proj.", ".mlp.up_proj.")
            fused = rest[: gate.start()] + f".mlp.weights_in.{gate.group(1)}"
            state[prefix + fused] = torch.cat([value, dict(items)[up]], dim=0)
            continue
        if ".mlp.up_proj." in rest:
            continue
        state[prefix + _rename("." + rest, _TO_V4)[1:]] = value


def from_v4_names(state: dict[str, torch.Tensor], prefix: str = "") -> None:
    """In place: 4.x Dinov2 keys under ``prefix`` -> transformers-5 names (SwiGLU ``weights_in`` split in two)."""
    items = list(state.items())
    state.clear()
    for key, value in items:
        if not key.startswith(prefix):
            state[key] = value
            continue
        rest = key[len(prefix) :]
        fused = _FUSED.search(rest)
        if fused:
            gate, up = value.chunk(2, dim=0)
            head = prefix + rest[: fused.start()]
            state[f"{head}.mlp.gate_proj.{fused.group(1)}"] = gate
            state[f"{head}.mlp.up_proj.{fused.group(1)}"] = up
            continue
        state[prefix + _rename("." + rest, _FROM_V4)[1:]] = value


def _save_hook(module, state_dict, prefix, local_metadata) -> None:
    to_v4_names(state_dict, prefix + "model.")


def _load_hook(module, state_dict, prefix, *args) -> None:
    from_v4_names(state_dict, prefix + "model.")


class DinoConditioner(nn.Module):
    """Image tokens ``Dinov2Model(pixels).last_hidden_state`` (B, 1 + Np, C): CLS first, after the final LayerNorm.

    ``config`` is the released ``config.json`` as a dict. The state_dict is the released file's under ``model.``
    (use :meth:`load_released` for a file's own keys, without the prefix).
    """

    def __init__(self, config: dict[str, Any], attn_implementation: str = "sdpa"):
        super().__init__()
        from transformers import Dinov2Config, Dinov2Model

        skip = ("architectures", "torch_dtype", "dtype", "transformers_version", "_name_or_path")
        cfg = Dinov2Config(**{k: v for k, v in config.items() if k not in skip})
        cfg._attn_implementation = attn_implementation
        self.model = Dinov2Model(cfg)
        self.patch_size = int(cfg.patch_size)
        self.hidden_size = int(cfg.hidden_size)
        self.register_state_dict_post_hook(_save_hook)
        self.register_load_state_dict_pre_hook(_load_hook)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).last_hidden_state

    def tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Same as calling the module: the tokens of already preprocessed pixels (each model preprocesses)."""
        return self(pixel_values)

    def released_state_dict(self) -> dict[str, torch.Tensor]:
        """The state_dict with the released file's key names (no ``model.`` prefix)."""
        return {k.removeprefix("model."): v for k, v in self.state_dict().items()}

    def load_released(self, state: dict[str, torch.Tensor], assign: bool = False) -> None:
        """Load a released file's state_dict (4.x names, no prefix), strictly."""
        self.load_state_dict({"model." + k: v for k, v in state.items()}, strict=True, assign=assign)


def bit_image_pixels(
    image: Image.Image,
    shortest_edge: int,
    crop: tuple[int, int] | int,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    resample: int = Image.Resampling.BICUBIC,
) -> torch.Tensor:
    """transformers 4.x ``BitImageProcessor`` (PIL path) on an RGB image: (1, 3, H, W) float32, normalised.

    Resize so the shortest edge is ``shortest_edge`` (the other ``int(edge * long / short)``), centre crop
    (top = (h - H) // 2), x / 255, (x - mean) / std.
    """
    image = image.convert("RGB")
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    other = int(shortest_edge * long / short)
    size = (shortest_edge, other) if w <= h else (other, shortest_edge)
    resized = np.asarray(image.resize(size, resample=resample))
    ch, cw = (crop, crop) if isinstance(crop, int) else crop
    top, left = (resized.shape[0] - ch) // 2, (resized.shape[1] - cw) // 2
    if top < 0 or left < 0:
        raise ValueError(f"centre crop {ch}x{cw} is larger than the resized image {resized.shape[:2]}")
    patch = (resized[top : top + ch, left : left + cw] * (1 / 255)).astype(np.float32)  # float64 product, as 4.x
    patch = (patch - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1)))[None]
