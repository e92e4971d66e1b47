"""The first stage of text -> shape for image-conditioned models: a diffusers text-to-image pipeline draws
one object on white (the same loader, prompt suffix and negative prompt as TripoSR's two-stage path)."""

from __future__ import annotations

import torch
from PIL import Image

PROMPT_SUFFIX = ", one whole object, centred, on a plain white background"


def load_text_to_image(image_model: str, device: str, dtype: torch.dtype):
    """The pipeline, cached in ``methods.runtime`` (shared with TripoSR's text path)."""
    from methods import runtime
    from methods.triposr.pipeline import _load_text_to_image

    key = f"triposr-t2i|{image_model}|{device}|{dtype}"
    return runtime.get_model(key, lambda: _load_text_to_image(image_model, device, dtype))


@torch.inference_mode()
def text_to_image(
    prompt: str, image_model: str, steps: int, guidance: float, seed: int, device: str, dtype: torch.dtype
) -> Image.Image:
    from methods.triposr.pipeline import NEGATIVE_PROMPT

    pipe = load_text_to_image(image_model, device, dtype)
    generator = torch.Generator(device=device).manual_seed(int(seed))
    out = pipe(
        prompt + PROMPT_SUFFIX,
        negative_prompt=NEGATIVE_PROMPT,
        num_inference_steps=int(steps),
        guidance_scale=float(guidance),
        generator=generator,
    )
    return out.images[0].convert("RGB")
