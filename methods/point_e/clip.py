"""CLIP conditioning for Point-E through transformers' ``CLIPModel`` (official: ViT-L/14).

* text (``base40M-textvec``): the projected, pooled text embedding, normalised to unit length;
* images (``base40M/300M/1B`` and the upsampler): the vision transformer's patch tokens after the
  last layer (no final LayerNorm, no class token), as ``[N, hidden, grid^2]`` = ``[N, 1024, 256]``.

Images are prepared as OpenAI CLIP does (bicubic resize of the short side, centre crop, CLIP
mean/std), after compositing any transparency over white, the background of Point-E's renders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from methods.base import InvalidInput

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class TextEmbedding:
    embeddings: torch.Tensor  # [N, D] float32, unit norm
    notes: list[str]


def composite_on_white(image: Image.Image) -> Image.Image:
    """RGB with any transparency blended over white."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def check_foreground(image: Image.Image, min_fraction: float = 1e-3, tolerance: int = 8) -> None:
    """Raise InvalidInput when the image shows no object: fully transparent, or one flat colour."""
    rgba = np.asarray(image.convert("RGBA"))
    alpha = rgba[..., 3]
    if alpha.min() < 255:
        if np.mean(alpha > 127) < min_fraction:
            raise InvalidInput("the image has no foreground: it is (almost) fully transparent")
        return
    rgb = rgba[..., :3].astype(np.int16)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    background = np.median(border, axis=0)
    differs = np.abs(rgb - background).max(-1) > tolerance
    if np.mean(differs) < min_fraction:
        raise InvalidInput("the image has no foreground: it is a single flat colour, with no object to reconstruct")


def preprocess(image: Image.Image, size: int) -> torch.Tensor:
    """OpenAI CLIP's transform: bicubic resize of the short side, centre crop, normalise -> ``[3, size, size]``."""
    image = composite_on_white(image)
    w, h = image.size
    if min(w, h) != size:
        if w <= h:
            new_w, new_h = size, int(size * h / w)
        else:
            new_w, new_h = int(size * w / h), size
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
        w, h = new_w, new_h
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    image = image.crop((left, top, left + size, top + size))
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(CLIP_MEAN).reshape(3, 1, 1)
    std = torch.tensor(CLIP_STD).reshape(3, 1, 1)
    return (pixels - mean) / std


class CLIPConditioner:
    """Wraps a ``CLIPModel`` and its tokenizer; embeddings come back as float32."""

    def __init__(self, model, tokenizer):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        text_config = model.config.text_config
        vision_config = model.config.vision_config
        self.context_length = int(text_config.max_position_embeddings)
        self.text_dim = int(model.config.projection_dim)
        self.grid_dim = int(vision_config.hidden_size)
        self.image_size = int(vision_config.image_size)
        self.grid_size = self.image_size // int(vision_config.patch_size)

    @classmethod
    def from_pretrained(cls, checkpoint: str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
        from transformers import CLIPModel, CLIPTokenizer

        model = CLIPModel.from_pretrained(checkpoint, dtype=dtype or torch.float32)
        tokenizer = CLIPTokenizer.from_pretrained(checkpoint)
        return cls(model.to(device), tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @torch.no_grad()
    def embed_text(self, prompts: list[str]) -> TextEmbedding:
        """Unit-norm text embeddings ``[N, D]``; prompts longer than CLIP's context are truncated (noted)."""
        notes = []
        for prompt in prompts:
            if not prompt or not prompt.strip():
                raise InvalidInput("the prompt is empty: describe the object to generate")
            n_tokens = len(self.tokenizer(prompt, truncation=False, verbose=False)["input_ids"])
            if n_tokens > self.context_length:
                kept = self.tokenizer.decode(
                    self.tokenizer(prompt, truncation=True, max_length=self.context_length)["input_ids"],
                    skip_special_tokens=True,
                )
                notes.append(
                    f"the prompt is {n_tokens} tokens long and CLIP reads at most {self.context_length}: "
                    f"it was truncated to {kept!r}"
                )
        tokens = self.tokenizer(
            prompts, truncation=True, max_length=self.context_length, padding=True, return_tensors="pt"
        ).to(self.device)
        out = self.model.text_model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        emb = self.model.text_projection(out.pooler_output).float()
        return TextEmbedding(emb / torch.linalg.norm(emb, dim=-1, keepdim=True), notes)

    @torch.no_grad()
    def embed_images_grid(self, images: list[Image.Image]) -> torch.Tensor:
        """Patch-token grids ``[N, hidden, grid^2]`` (float32) of the images."""
        pixels = torch.stack([preprocess(img, self.image_size) for img in images]).to(self.device, self.dtype)
        hidden = self.model.vision_model(pixel_values=pixels).last_hidden_state
        return hidden[:, 1:].permute(0, 2, 1).float().contiguous()
