"""Text and image alignment with CLIP: CLIP score, CLIP R-precision, image-image similarity.

- ``clip_score`` = 100 * max(cos(image, text), 0) per view, averaged over views (torchmetrics'
  CLIPScore; Cap3D reports the same mean over views);
- ``r_precision`` = fraction of views whose nearest caption (by cosine) in a caption set is the
  asset's own prompt (Dream Fields, DreamFusion);
- image-image similarity = 100 * cos between two image embeddings.

The scoring model is a setting (``openai/clip-vit-base-patch32`` by default, ViT-L/14 as an
option) loaded with transformers' ``CLIPModel.from_pretrained`` and kept in the model cache of
``methods.runtime``. Images are preprocessed as CLIP's own processor does for square inputs:
8-bit RGB, bicubic resize to the model's input size, OpenAI mean and std.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_CLIP = "openai/clip-vit-base-patch32"
CLIP_CHOICES = (DEFAULT_CLIP, "openai/clip-vit-large-patch14")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_TEXT_CACHE_LIMIT = 4096


class CLIPUnavailable(RuntimeError):
    """The scoring CLIP cannot be loaded here (weights not cached, offline, unreadable)."""


def clip_unavailable_reason(checkpoint: str, allow_download: bool = False) -> str | None:
    """Why ``checkpoint`` cannot be loaded without surprises (None when it can).

    A local directory needs config.json; a hub id needs its config and weights in the Hugging Face
    cache unless downloads are allowed (and the hub is not switched off with HF_HUB_OFFLINE=1).
    """
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        return None if (path / "config.json").is_file() else f"{checkpoint} has no config.json"
    if path.suffix or checkpoint.startswith((".", "/")):
        return f"no such CLIP checkpoint directory: {checkpoint}"
    from huggingface_hub import try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(checkpoint, "config.json"), str) and any(
        isinstance(try_to_load_from_cache(checkpoint, name), str) for name in ("model.safetensors", "pytorch_model.bin")
    )
    if cached:
        return None
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    if offline:
        return f"weights for {checkpoint} are not in the Hugging Face cache and HF_HUB_OFFLINE=1"
    if not allow_download:
        return (
            f"weights for {checkpoint} are not in the Hugging Face cache; the panel does not download them "
            f"(`huggingface-cli download {checkpoint}` or `python -m eval score --download` fetches them)"
        )
    return None


@dataclass
class CLIPScorer:
    """A CLIP model, its tokenizer and the preprocessing; embeddings come back L2-normalised."""

    model: Any
    tokenizer: Any
    checkpoint: str
    device: str = "cpu"
    dtype: Any = None  # the compute dtype (methods.runtime.dtype); embeddings are float32 whatever it is
    _texts: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def load(
        cls,
        checkpoint: str = DEFAULT_CLIP,
        device: str | None = None,
        allow_download: bool = False,
        precision: str = "auto",
    ) -> CLIPScorer:
        """The scorer for ``checkpoint`` from the model cache, loading it on first use.

        The model runs in ``runtime.dtype(device, precision)`` (bfloat16 on a CPU that has it): the dtype is
        stored with every number (``describe``); cosines and scores are computed in float32.

        Raises CLIPUnavailable with the reason when it cannot be loaded.
        """
        from methods import runtime

        reason = clip_unavailable_reason(checkpoint, allow_download)
        if reason:
            raise CLIPUnavailable(reason)
        dev = device or runtime.device()
        dtype = runtime.dtype(dev, precision)

        def loader() -> CLIPScorer:
            from transformers import CLIPModel, CLIPTokenizer

            local_only = not allow_download
            try:
                model = CLIPModel.from_pretrained(checkpoint, local_files_only=local_only)
                tokenizer = CLIPTokenizer.from_pretrained(checkpoint, local_files_only=local_only)
            except (OSError, ValueError) as exc:
                raise CLIPUnavailable(f"cannot load {checkpoint}: {exc}") from None
            return cls(model.to(dev, dtype).eval(), tokenizer, checkpoint, dev, dtype)

        return runtime.get_model(f"clip-scorer:{checkpoint}:{dev}:{dtype}", loader)

    @property
    def image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    def describe(self) -> dict[str, Any]:
        return {
            "clip_model": self.checkpoint,
            "clip_preprocess": f"8-bit RGB, bicubic to {self.image_size}, OpenAI mean/std",
            "clip_device": self.device,
            "clip_dtype": str(self.dtype or "torch.float32").removeprefix("torch."),
        }

    def embed_images(self, images: np.ndarray) -> Any:
        """(N, D) unit embeddings of (N, H, W, 3) float images in [0, 1] (square: no crop needed)."""
        import torch
        from PIL import Image

        arr = (np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        size = self.image_size
        batch = []
        for im in arr:
            if im.shape[0] != size or im.shape[1] != size:
                im = np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC))
            batch.append(im)
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
        x = ((x - mean) / std).to(self.device, self.dtype or torch.float32)
        with torch.inference_mode():
            out = self.model.get_image_features(pixel_values=x)
        emb = _pooled(out).float().cpu()
        return emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def embed_texts(self, texts: list[str]) -> Any:
        """(N, D) unit embeddings of the texts; embeddings are remembered (caption sets repeat)."""
        import torch

        todo = [t for t in dict.fromkeys(texts) if t not in self._texts]
        if todo:
            max_len = int(self.model.config.text_config.max_position_embeddings)
            for start in range(0, len(todo), 64):
                chunk = todo[start : start + 64]
                tok = self.tokenizer(chunk, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
                with torch.inference_mode():
                    out = self.model.get_text_features(
                        input_ids=tok["input_ids"].to(self.device), attention_mask=tok["attention_mask"].to(self.device)
                    )
                emb = _pooled(out).float().cpu()
                emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)
                if len(self._texts) + len(chunk) > _TEXT_CACHE_LIMIT:
                    self._texts.clear()
                self._texts.update(zip(chunk, emb, strict=True))
        return torch.stack([self._texts[t] for t in texts])


def _pooled(out: Any) -> Any:
    """transformers 5 returns an output object whose ``pooler_output`` is the projected embedding."""
    return out.pooler_output if hasattr(out, "pooler_output") else out


# ----------------------------------------------------------------------------- pure maths


def cosine(a: Any, b: Any) -> Any:
    """Pairwise cosine (N, M) between row vectors (normalised here, so any scale is fine)."""
    import torch

    a = torch.as_tensor(a, dtype=torch.float32)
    b = torch.as_tensor(b, dtype=torch.float32)
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return a @ b.T


def clip_score(image_emb: Any, text_emb: Any) -> float:
    """Mean over images of 100 * max(cos(image, text), 0); ``text_emb`` is one (D,) or (1, D) vector."""
    import torch

    text = torch.as_tensor(text_emb, dtype=torch.float32).reshape(1, -1)
    return float((100.0 * cosine(image_emb, text)[:, 0]).clamp_min(0.0).mean())


def r_precision(image_emb: Any, caption_emb: Any, target: int) -> float:
    """Fraction of images whose most similar caption is ``caption_emb[target]`` (top-1 retrieval)."""
    sims = cosine(image_emb, caption_emb)
    return float((sims.argmax(dim=1) == int(target)).float().mean())


def image_similarity(reference: Any, images: Any) -> float:
    """100 * mean cosine between one reference embedding (D,) or (1, D) and each of ``images`` (N, D)."""
    import torch

    ref = torch.as_tensor(reference, dtype=torch.float32).reshape(1, -1)
    return float(100.0 * cosine(images, ref).mean())


def normalize_caption(text: str) -> str:
    """The form captions are compared in: lower case, outer spaces and full stops/commas removed."""
    return " ".join(text.lower().split()).strip(" .,")


def caption_index(prompt: str, captions: list[str]) -> tuple[list[str], int]:
    """The caption list with the prompt in it, and the prompt's index (prepended when absent)."""
    key = normalize_caption(prompt)
    for i, caption in enumerate(captions):
        if normalize_caption(caption) == key:
            return list(captions), i
    return [prompt, *captions], 0


# ----------------------------------------------------------------------------- accumulators


@dataclass
class CLIPScore:
    """Accumulates per-asset CLIP scores: ``update(images, prompt)``, ``compute()`` = mean over assets."""

    scorer: CLIPScorer
    values: list[float] = field(default_factory=list)

    def update(self, images: np.ndarray, prompt: str) -> float:
        value = clip_score(self.scorer.embed_images(images), self.scorer.embed_texts([prompt])[0])
        self.values.append(value)
        return value

    def compute(self) -> float:
        return float(np.mean(self.values)) if self.values else float("nan")

    def reset(self) -> None:
        self.values.clear()


@dataclass
class RPrecision:
    """Accumulates per-asset CLIP R-precision against one caption set."""

    scorer: CLIPScorer
    captions: list[str]
    values: list[float] = field(default_factory=list)

    def update(self, images: np.ndarray, prompt: str) -> float:
        captions, target = caption_index(prompt, self.captions)
        value = r_precision(self.scorer.embed_images(images), self.scorer.embed_texts(captions), target)
        self.values.append(value)
        return value

    def compute(self) -> float:
        return float(np.mean(self.values)) if self.values else float("nan")

    def reset(self) -> None:
        self.values.clear()
