"""Score Distillation Sampling through Stable Diffusion (DreamFusion, Poole et al. 2022; Stable DreamFusion).

DreamFusion's guidance with Stable Diffusion in place of Imagen, as Stable DreamFusion (Tang 2022)
does it: the render is upsampled to the VAE's input size and encoded (gradients pass through the
VAE encoder to the render), noised at ``t ~ U[0.02, 0.98] T``; the UNet, with no gradient,
predicts the noise with classifier-free guidance (scale 100) under a view-dependent prompt, and
the latents receive ``w(t) (eps_hat - eps)`` with ``w(t) = 1 - alpha_bar_t`` (sigma_t^2).

Components load from ``checkpoint`` (a hub repo id or a local folder in the diffusers layout:
unet/, vae/, text_encoder/, tokenizer/, scheduler/) with diffusers' and transformers' own
``from_pretrained``. On CUDA the UNet and text encoder run in float16; the VAE keeps float32
(its encoder is back-propagated through, where float16 overflows) and loses its decoder. Every
weight is frozen: gradients reach the radiance field only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from methods import registry, runtime
from methods.base import CheckpointError
from methods.text_opt.cameras import VIEW_DIRECTIONS, view_prompt

SD_CHECKPOINT = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
T_RANGE = (0.02, 0.98)
GUIDANCE_SCALE = 100.0


# ----------------------------------------------------------------------------- the maths


def timestep_bounds(num_train_timesteps: int, t_range: tuple[float, float] = T_RANGE) -> tuple[int, int]:
    """The smallest and largest timestep drawn: ``int(T * 0.02)`` and ``int(T * 0.98)`` (20 and 980 for T=1000)."""
    return int(num_train_timesteps * t_range[0]), int(num_train_timesteps * t_range[1])


def sds_weight(alphas_cumprod: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """DreamFusion's w(t) = sigma_t^2 = 1 - alpha_bar_t, one per timestep in ``t``."""
    return 1.0 - alphas_cumprod.to(t.device)[t]


def guided_noise(uncond: torch.Tensor, text: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance: eps_uncond + s (eps_text - eps_uncond)."""
    return uncond + guidance_scale * (text - uncond)


def v_to_epsilon(v: torch.Tensor, noisy: torch.Tensor, alphas_cumprod: torch.Tensor, t: torch.Tensor):
    """The noise implied by a v-prediction (SD 2.x 768 px models): eps = sqrt(a) v + sqrt(1 - a) x_t."""
    a = alphas_cumprod.to(t.device)[t].view(-1, *([1] * (v.dim() - 1)))
    return a.sqrt() * v + (1.0 - a).sqrt() * noisy


def sds_grad(
    noise_pred_uncond: torch.Tensor,
    noise_pred_text: torch.Tensor,
    noise: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    t: torch.Tensor,
    guidance_scale: float,
) -> torch.Tensor:
    """The SDS gradient on the latents: w(t) (eps_hat(x_t; y, t) - eps), NaN/inf replaced by zero."""
    eps_hat = guided_noise(noise_pred_uncond.float(), noise_pred_text.float(), guidance_scale)
    w = sds_weight(alphas_cumprod.float(), t).view(-1, *([1] * (noise.dim() - 1)))
    return torch.nan_to_num(w * (eps_hat - noise.float()), nan=0.0, posinf=0.0, neginf=0.0)


def sds_loss(latents: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """A scalar whose gradient with respect to ``latents`` is ``grad / B`` (the reparametrised SDS loss).

    ``0.5 |latents - stopgrad(latents - grad)|^2 / B``; its value, ``0.5 |grad|^2 / B``, is what
    Stable DreamFusion reports as the loss.
    """
    target = (latents - grad).detach()
    return 0.5 * ((latents.float() - target.float()) ** 2).sum() / latents.shape[0]


# ----------------------------------------------------------------------------- loading


@dataclass
class StableDiffusionParts:
    """The frozen Stable Diffusion components the guidance uses."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any
    device: str
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def unet_dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def vae_dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_size(self) -> int:
        """The side of the images the VAE encodes: the UNet's latent size times the VAE's downsampling (512)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor


def resolve_checkpoint(checkpoint: str) -> str:
    """A local folder (checked, made absolute) or a hub repo id; CheckpointError names what is wrong."""
    checkpoint = checkpoint.strip()
    if not checkpoint:
        raise CheckpointError("the checkpoint is empty: give a hub repo id or a local folder")
    path = Path(checkpoint).expanduser()
    if not (checkpoint.startswith((".", "/", "~")) or path.exists()):
        return checkpoint
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder {checkpoint} does not exist")
    missing = [name for name in SUBFOLDERS if not (path / name).is_dir()]
    if missing:
        raise CheckpointError(
            f"{checkpoint} is not a Stable Diffusion folder in the diffusers layout: it has no "
            f"{', '.join(missing)} subfolder(s) (save one with StableDiffusionPipeline.save_pretrained, "
            f"or use {SD_CHECKPOINT})"
        )
    return str(path.resolve())


def load_stable_diffusion(
    checkpoint: str = SD_CHECKPOINT, device: str | None = None, precision: str = "auto"
) -> StableDiffusionParts:
    """UNet, VAE (encoder), text encoder, tokenizer and DDPM scheduler from ``checkpoint``, cached and frozen.

    The UNet and text encoder run in ``runtime.dtype(device, precision)``; the VAE encoder, the latents and the
    noise schedule stay float32.
    """
    source = resolve_checkpoint(checkpoint)
    dev = device or runtime.device()
    dtype = runtime.dtype(dev, precision)
    key = f"sds:{source}:{dev}:{str(dtype).removeprefix('torch.')}"

    def loader() -> StableDiffusionParts:
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        offline = {"local_files_only": registry.hub_offline()}
        try:
            tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **offline)
            text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", dtype=dtype, **offline)
            unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", dtype=dtype, **offline)
            vae = AutoencoderKL.from_pretrained(source, subfolder="vae", dtype=torch.float32, **offline)
            scheduler = DDPMScheduler.from_pretrained(source, subfolder="scheduler", **offline)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"cannot load Stable Diffusion from {checkpoint}: {first}") from exc
        return prepare_parts(unet, vae, text_encoder, tokenizer, scheduler, dev, dtype, source)

    return runtime.get_model(key, loader)


def prepare_parts(
    unet, vae, text_encoder, tokenizer, scheduler, device: str, dtype: torch.dtype, source: str = ""
) -> StableDiffusionParts:
    """Frozen components on ``device``: UNet and text encoder in ``dtype``, the VAE's encoder in float32."""
    vae.decoder = None  # only the encoder is needed: the render is encoded, never decoded
    for module, module_dtype in ((unet, dtype), (vae, torch.float32), (text_encoder, dtype)):
        module.requires_grad_(False)
        module.eval()
        if next(module.parameters()).dtype != module_dtype:  # from_pretrained already loaded it in dtype
            module.to(dtype=module_dtype)
        module.to(device)
    return StableDiffusionParts(unet, vae, text_encoder, tokenizer, scheduler, device, source)


# ----------------------------------------------------------------------------- the guidance


class StableDiffusionGuidance:
    """DreamFusion's SDS loss on a :class:`~methods.text_opt.loop.RenderBatch`, with view-dependent prompts."""

    name = "sds"

    def __init__(
        self,
        parts: StableDiffusionParts,
        prompt: str,
        guidance_scale: float = GUIDANCE_SCALE,
        t_range: tuple[float, float] = T_RANGE,
        view_dependent: bool = True,
        negative_prompt: str = "",
        seed: int = 0,
    ):
        self.parts = parts
        self.device = parts.device
        self.guidance_scale = float(guidance_scale)
        self.view_dependent = view_dependent
        self.generator = torch.Generator(device=self.device).manual_seed(int(seed))
        scheduler = parts.scheduler
        self.alphas_cumprod = scheduler.alphas_cumprod.to(self.device, torch.float32)
        self.min_step, self.max_step = timestep_bounds(int(scheduler.config.num_train_timesteps), t_range)
        self.v_prediction = getattr(scheduler.config, "prediction_type", "epsilon") == "v_prediction"
        self.notes = _prompt_notes(parts.tokenizer, prompt)
        self.prompts = {d: view_prompt(prompt, d) if view_dependent else prompt for d in VIEW_DIRECTIONS}
        embeddings = self.embed([negative_prompt, *self.prompts.values()])
        self.uncond = embeddings[:1]
        self.text = dict(zip(VIEW_DIRECTIONS, embeddings[1:].split(1), strict=True))
        self.calls = 0

    @torch.no_grad()
    def embed(self, prompts: list[str]) -> torch.Tensor:
        """The text encoder's last hidden states (N, 77, D), as the Stable Diffusion pipelines condition on."""
        tok = self.parts.tokenizer
        ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt")
        return self.parts.text_encoder(ids.input_ids.to(self.device))[0]

    def encode_images(self, rgb: torch.Tensor) -> torch.Tensor:
        """Latents (B, 4, h, w) of images (B, 3, H, W) in [0, 1], resized to the VAE's input; gradients pass."""
        size = self.parts.image_size
        vae = self.parts.vae
        x = torch.nn.functional.interpolate(rgb, (size, size), mode="bilinear", align_corners=False)
        posterior = vae.encode((x * 2.0 - 1.0).to(self.parts.vae_dtype)).latent_dist
        return posterior.sample(generator=self.generator).float() * float(vae.config.scaling_factor)

    def conditioning(self, directions: list[str]) -> torch.Tensor:
        """Unconditional then per-view text embeddings for a batch, (2B, 77, D)."""
        cond = torch.cat([self.text[d] for d in directions])
        return torch.cat([self.uncond.expand(len(directions), -1, -1), cond])

    def loss(self, batch, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        rgb = batch.composite()
        latents = self.encode_images(rgb)
        B = latents.shape[0]
        t = torch.randint(self.min_step, self.max_step + 1, (B,), device=self.device, generator=self.generator)
        with torch.no_grad():
            noise = torch.randn(latents.shape, device=self.device, generator=self.generator)
            noisy = self.parts.scheduler.add_noise(latents.detach(), noise, t)
            unet = self.parts.unet
            pred = unet(
                torch.cat([noisy, noisy]).to(self.parts.unet_dtype),
                torch.cat([t, t]),
                encoder_hidden_states=self.conditioning(batch.directions()),
            ).sample.float()
            self.calls += 1
            if self.v_prediction:
                pred = v_to_epsilon(pred, torch.cat([noisy, noisy]), self.alphas_cumprod, torch.cat([t, t]))
            uncond, text = pred.chunk(2)
            grad = sds_grad(uncond, text, noise, self.alphas_cumprod, t, self.guidance_scale)
        loss = sds_loss(latents, grad)
        return loss, {"sds": float(loss.detach()), "t": float(t.float().mean()), "grad_norm": float(grad.norm()) / B}

    def close(self) -> None:
        self.uncond = None
        self.text = {}


def _prompt_notes(tokenizer: Any, prompt: str) -> list[str]:
    """A note when the tokenizer will cut the prompt (with its view suffix) to its length limit."""
    limit = int(getattr(tokenizer, "model_max_length", 77))
    tokens = len(tokenizer(view_prompt(prompt, "overhead")).input_ids)
    if tokens > limit:
        return [f"the prompt with its view suffix is {tokens} tokens; only the first {limit} are used"]
    return []


__all__ = [
    "GUIDANCE_SCALE",
    "SD_CHECKPOINT",
    "T_RANGE",
    "StableDiffusionGuidance",
    "StableDiffusionParts",
    "guided_noise",
    "load_stable_diffusion",
    "prepare_parts",
    "resolve_checkpoint",
    "sds_grad",
    "sds_loss",
    "sds_weight",
    "timestep_bounds",
    "v_to_epsilon",
]
