"""Dream Fields' guidance (Jain et al. 2022): CLIP similarity of augmented renders to the prompt, plus sparsity.

Each step the renders are cut into ``augmentations`` random crops (0.9 of the side, as Dream
Fields' 80 of 88 pixels), resized to CLIP's input and composited over random backgrounds (uniform
noise, a checkerboard of two random colours, or smoothed Fourier noise, a third each, then a
Gaussian blur of 0 to 10 px); the loss is the negative cosine similarity of their CLIP image
embeddings to the prompt's text embedding. The transmittance regulariser
``-0.5 min(1 - target, mean transmittance)`` keeps the scene sparse; its opacity target is
annealed exponentially from 0.5 to 0.1 over the first 500 steps (Dream Fields' ``config_base``).

CLIP loads with transformers' ``CLIPModel.from_pretrained`` (default
``openai/clip-vit-base-patch16``, Dream Fields' training model), float16 on CUDA, frozen. The
metric panel must then score with another CLIP (``DreamFields.optimises_clip``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from methods import registry, runtime
from methods.base import CheckpointError

CLIP_CHECKPOINT = "openai/clip-vit-base-patch16"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
BACKGROUND_KINDS = ("noise", "checkerboard", "fourier")
TARGET_OPACITY = (0.5, 0.1)  # annealed from the first to the second ...
TARGET_STEPS = 500  # ... over this many steps
TRANSMITTANCE_WEIGHT = 0.5


# ----------------------------------------------------------------------------- regulariser


def target_opacity(step: int, start: float = TARGET_OPACITY[0], end: float = TARGET_OPACITY[1], steps: int = 500):
    """The annealed opacity target: ``start (end / start)^(step / steps)``, then ``end``."""
    frac = min(max(step / max(steps, 1), 0.0), 1.0)
    return start * (end / start) ** frac


def transmittance_loss(opacity: torch.Tensor, target: float, weight: float = TRANSMITTANCE_WEIGHT) -> torch.Tensor:
    """Dream Fields' ``-weight * min(1 - target, mean transmittance)``: no gradient once the scene is sparse enough."""
    transmittance = 1.0 - opacity.mean()
    return -weight * torch.clamp(transmittance, max=1.0 - target)


# ----------------------------------------------------------------------------- backgrounds


def checkerboard(size: int, squares: int, generator: torch.Generator, device) -> torch.Tensor:
    """(3, size, size): ``squares`` x ``squares`` tiles in two random colours."""
    colours = torch.rand(2, 3, device=device, generator=generator)
    idx = torch.arange(size, device=device) * squares // size
    parity = (idx[:, None] + idx[None, :]) % 2
    return colours[parity].permute(2, 0, 1)


def fourier_noise(size: int, generator: torch.Generator, device, decay_power: float = 1.5) -> torch.Tensor:
    """(3, size, size) smoothed noise: a random spectrum falling off as 1 / f^decay_power (Lucid's image_sample)."""
    fy = torch.fft.fftfreq(size, device=device)[:, None]
    fx = torch.fft.rfftfreq(size, device=device)[None, :]
    freq = torch.sqrt(fx * fx + fy * fy).clamp_min(1.0 / size)
    scale = 1.0 / freq**decay_power
    spectrum = torch.randn(2, 3, size, size // 2 + 1, device=device, generator=generator) * scale
    image = torch.fft.irfft2(torch.complex(spectrum[0], spectrum[1]), s=(size, size))
    image = image / image.std().clamp_min(1e-8)
    return torch.sigmoid(image)


def gaussian_blur(images: torch.Tensor, std: float, kernel_size: int = 15) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) images (reflect padding), ``std`` in pixels; 0 leaves them."""
    if std <= 1e-3:
        return images
    half = kernel_size // 2
    x = torch.arange(-half, half + 1, device=images.device, dtype=images.dtype)
    k = torch.exp(-0.5 * (x / std) ** 2)
    k = k / k.sum()
    c = images.shape[1]
    out = F.pad(images, (half, half, 0, 0), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, half, half), mode="reflect")
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def random_backgrounds(
    count: int,
    size: int,
    generator: torch.Generator,
    device,
    squares: int = 8,
    blur_range: tuple[float, float] = (0.0, 10.0),
) -> tuple[torch.Tensor, list[str]]:
    """``count`` backgrounds (count, 3, size, size) of random kinds, each blurred; and their kinds."""
    out, kinds = [], []
    for _ in range(count):
        kind = BACKGROUND_KINDS[int(torch.randint(3, (1,), generator=generator, device=device))]
        if kind == "noise":
            bg = torch.rand(3, size, size, device=device, generator=generator)
        elif kind == "checkerboard":
            bg = checkerboard(size, squares, generator, device)
        else:
            bg = fourier_noise(size, generator, device)
        lo, hi = blur_range
        std = lo + (hi - lo) * float(torch.rand(1, generator=generator, device=device))
        # blur widths are in CLIP-input pixels, as Dream Fields blurs at 224 px
        out.append(gaussian_blur(bg[None], std * size / 224.0)[0])
        kinds.append(kind)
    return torch.stack(out), kinds


# ----------------------------------------------------------------------------- loading


@dataclass
class ClipParts:
    """A frozen CLIPModel, its tokenizer and its image normalisation."""

    model: Any
    tokenizer: Any
    device: str
    mean: tuple[float, ...] = OPENAI_MEAN
    std: tuple[float, ...] = OPENAI_STD
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


def resolve_clip_checkpoint(checkpoint: str) -> str:
    checkpoint = checkpoint.strip()
    if not checkpoint:
        raise CheckpointError("the checkpoint is empty: give a hub repo id or a local folder")
    path = Path(checkpoint).expanduser()
    if not (checkpoint.startswith((".", "/", "~")) or path.exists()):
        return checkpoint
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder {checkpoint} does not exist")
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"{checkpoint} has no config.json: it is not a transformers CLIPModel folder "
            f"(save one with CLIPModel.save_pretrained, or use {CLIP_CHECKPOINT})"
        )
    return str(path.resolve())


def load_clip(checkpoint: str = CLIP_CHECKPOINT, device: str | None = None, precision: str = "auto") -> ClipParts:
    """CLIPModel and CLIPTokenizer from ``checkpoint`` (mean / std from its image processor when it has one).

    The model runs in ``runtime.dtype(device, precision)``; the renders, augmentations and loss stay float32.
    """
    source = resolve_clip_checkpoint(checkpoint)
    dev = device or runtime.device()
    dtype = runtime.dtype(dev, precision)
    key = f"dreamfields-clip:{source}:{dev}:{str(dtype).removeprefix('torch.')}"

    def loader() -> ClipParts:
        from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

        offline = {"local_files_only": registry.hub_offline()}
        try:
            model = CLIPModel.from_pretrained(source, dtype=dtype, **offline)
            tokenizer = CLIPTokenizer.from_pretrained(source, **offline)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"cannot load CLIP from {checkpoint}: {first}") from exc
        mean, std = OPENAI_MEAN, OPENAI_STD
        try:
            processor = CLIPImageProcessor.from_pretrained(source, **offline)
            mean, std = tuple(processor.image_mean), tuple(processor.image_std)
        except (OSError, ValueError):
            pass  # no preprocessor_config.json: OpenAI's statistics, which every CLIP release uses
        model.requires_grad_(False)
        model.eval()
        model.to(dev)
        return ClipParts(model, tokenizer, dev, mean, std, source)

    return runtime.get_model(key, loader)


def _pooled(out: Any) -> torch.Tensor:
    """transformers 5 returns an output object whose ``pooler_output`` is the projected embedding."""
    return out.pooler_output if hasattr(out, "pooler_output") else out


# ----------------------------------------------------------------------------- the guidance


class DreamFieldsGuidance:
    """Negative CLIP similarity of augmented renders to the prompt, plus the annealed transmittance loss."""

    name = "clip"

    def __init__(
        self,
        parts: ClipParts,
        prompt: str,
        clip_weight: float = 1.0,
        augmentations: int = 8,
        crop_fraction: float = 80 / 88,
        transmittance_weight: float = TRANSMITTANCE_WEIGHT,
        target_steps: int = TARGET_STEPS,
        seed: int = 0,
    ):
        self.parts = parts
        self.device = parts.device
        self.clip_weight = float(clip_weight)
        self.augmentations = int(augmentations)
        self.crop_fraction = float(crop_fraction)
        self.transmittance_weight = float(transmittance_weight)
        self.target_steps = int(target_steps)
        self.generator = torch.Generator(device=self.device).manual_seed(int(seed))
        self.mean = torch.tensor(parts.mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(parts.std, device=self.device).view(1, 3, 1, 1)
        self.notes = _prompt_notes(parts, prompt)
        self.text = self.embed_text(prompt)
        self.calls = 0

    @torch.no_grad()
    def embed_text(self, prompt: str) -> torch.Tensor:
        limit = int(self.parts.model.config.text_config.max_position_embeddings)
        ids = self.parts.tokenizer([prompt], padding=True, truncation=True, max_length=limit, return_tensors="pt")
        out = self.parts.model.get_text_features(input_ids=ids.input_ids.to(self.device))
        emb = _pooled(out).float()
        return emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def augment(self, rgb: torch.Tensor, opacity: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
        """``augmentations`` random crops of the premultiplied renders over random backgrounds, at CLIP's size."""
        B, _, H, W = rgb.shape
        side = max(8, min(H, W, round(self.crop_fraction * min(H, W))))
        g = self.generator
        fg, acc = [], []
        for i in range(self.augmentations):
            b = i % B
            y = int(torch.randint(H - side + 1, (1,), generator=g, device=self.device))
            x = int(torch.randint(W - side + 1, (1,), generator=g, device=self.device))
            fg.append(rgb[b, :, y : y + side, x : x + side])
            acc.append(opacity[b, :, y : y + side, x : x + side])
        size = self.parts.image_size
        fg_t = F.interpolate(torch.stack(fg), (size, size), mode="bilinear", align_corners=False)
        acc_t = F.interpolate(torch.stack(acc), (size, size), mode="bilinear", align_corners=False)
        backgrounds, kinds = random_backgrounds(self.augmentations, size, g, self.device)
        return fg_t + (1.0 - acc_t) * backgrounds, kinds

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """Unit CLIP embeddings of (N, 3, S, S) images in [0, 1]; differentiable."""
        x = ((images - self.mean) / self.std).to(self.parts.dtype)
        emb = _pooled(self.parts.model.get_image_features(pixel_values=x)).float()
        return emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def loss(self, batch, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        images, _ = self.augment(batch.rgb, batch.opacity)
        similarity = (self.embed_images(images) @ self.text.t()).mean()
        self.calls += 1
        target = target_opacity(step, *TARGET_OPACITY, steps=self.target_steps)
        sparsity = transmittance_loss(batch.opacity, target, self.transmittance_weight)
        loss = -self.clip_weight * similarity + sparsity
        return loss, {
            "clip_similarity": float(similarity.detach()),
            "transmittance": 1.0 - float(batch.opacity.detach().mean()),
            "target_opacity": target,
        }

    def close(self) -> None:
        self.text = None


def _prompt_notes(parts: ClipParts, prompt: str) -> list[str]:
    limit = int(parts.model.config.text_config.max_position_embeddings)
    tokens = len(parts.tokenizer(prompt).input_ids)
    if tokens > limit:
        return [f"the prompt is {tokens} CLIP tokens; only the first {limit} are used"]
    return []


# Dream Fields' training cameras: radius 4, 30 degrees above the horizon, all around; focal length
# 1.2 x that of a 39.6 degree field of view (their focal_mult), so about 33.5 degrees.
DREAM_FIELDS_FOV = 2.0 * math.degrees(math.atan(math.tan(math.radians(39.6) / 2) / 1.2))

__all__ = [
    "CLIP_CHECKPOINT",
    "DREAM_FIELDS_FOV",
    "ClipParts",
    "DreamFieldsGuidance",
    "checkerboard",
    "fourier_noise",
    "gaussian_blur",
    "load_clip",
    "random_backgrounds",
    "target_opacity",
    "transmittance_loss",
]
