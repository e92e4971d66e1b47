"""What the feed-forward image-to-3D methods share (TripoSR, TripoSG, Hunyuan3D-2mini, and the next such model).

Each of them takes an image, or text through a first stage where a diffusers text-to-image pipeline draws one
object on white. Nothing here imports torch at module level (the specs import this module, and listing methods
imports no torch); torch, diffusers and huggingface_hub are imported inside the functions that need them.

Public API:

Spec side
    ``IMAGE_MODEL`` (the default text-to-image model); ``TextStageSettings`` (the text stage's settings
    ``image_model``, ``image_steps``, ``image_guidance``: a model's text settings are
    ``class XTextSettings(TextStageSettings, XSettings)``, which keeps the model's settings first);
    ``chunk_size_setting(default, maximum)``; ``coarse_to_fine_setting(off)``;
    ``check_checkpoint(settings, default)`` (InvalidSettings when empty);
    ``ImageTo3DMethod`` (a Method for image and text: ``default_settings``, ``checkpoints``, ``text_seconds``).
Checkpoints
    ``is_local(checkpoint)``; ``checked(checkpoint, default)`` (stripped, CheckpointError when empty);
    ``local_folder(checkpoint, what)`` (an existing folder or CheckpointError);
    ``fetch(what, download)`` (a hub download honouring HF_HUB_OFFLINE, CheckpointError with the reason);
    ``check_keys(expected, state, mismatch)`` (CheckpointError naming missing, unexpected, mis-shaped keys);
    ``yaml_mapping(text)`` (a config.yaml's mapping, or CheckpointError).
Run side
    ``Clock`` (seconds per stage); ``text_prompt(inputs, settings, method_id, text_settings, needs)`` (the
    checked, whitespace-normalised prompt); ``generated_image()`` (an unusable generated image as InvalidInput);
    ``PROMPT_SUFFIX``, ``NEGATIVE_PROMPT``; ``read_text_to_image(image_model, device, dtype)`` (the pipeline),
    ``load_text_to_image`` (the same, cached in ``methods.runtime``); ``text_stage(prompt, settings, seconds,
    notes, made, time_load=False)`` (the first stage as a Progress generator returning the image).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from methods.base import (
    CheckpointError,
    InvalidInput,
    InvalidSettings,
    Method,
    Progress,
    RunGenerator,
    Settings,
    setting,
)
from methods.registry import hub_offline

IMAGE_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # the Stable Diffusion DreamFusion loads
PROMPT_SUFFIX = ", one whole object, centred, on a plain white background"
NEGATIVE_PROMPT = "cropped, cut off, multiple objects, scene, clutter, text, watermark, shadow"
TEXT_NEEDS = "image_model, image_steps, image_guidance"
_LISTED = 5  # keys named per kind in a mismatch message


# ----------------------------------------------------------------------------- spec side


@dataclass(kw_only=True)
class TextStageSettings(Settings):
    """The text stage's settings; listed first in a model's text settings' bases, so they come after its own."""

    image_model: str = setting(
        IMAGE_MODEL,
        label="Text-to-image model",
        help="The diffusers text-to-image pipeline that draws the object first (repo id or folder).",
        advanced=True,
    )
    image_steps: int = setting(
        30, label="Image steps", help="Denoising steps of the text-to-image model.", min=1, max=150, step=1
    )
    image_guidance: float = setting(
        7.5, label="Image guidance", help="Classifier-free guidance of the text-to-image model.", min=0.0, max=30.0
    )

    def validate(self) -> None:
        super().validate()
        if not self.image_model.strip():
            raise InvalidSettings(f"image_model is empty; the default is {IMAGE_MODEL}")


def chunk_size_setting(default: int, maximum: int) -> Any:
    """The ``chunk_size`` field: grid points decoded per pass."""
    return setting(
        default,
        label="Chunk size",
        help="Grid points decoded per pass (bounds peak memory); 0 decodes all at once.",
        min=0,
        max=maximum,
        step=1024,
        advanced=True,
    )


def coarse_to_fine_setting(off: str = "") -> Any:
    """The ``hierarchical`` field of a grid decoder (on by default); ``off`` adds to what "Off" means."""
    return setting(
        True,
        label="Coarse-to-fine grid",
        help="Decode a coarse grid first and only refine near the surface (ours; far fewer queries). "
        f"Off: every grid point is decoded{off}.",
        advanced=True,
    )


def check_checkpoint(settings: Settings, default: str) -> None:
    """InvalidSettings when the ``checkpoint`` setting is empty."""
    if not settings.checkpoint.strip():
        raise InvalidSettings(f"checkpoint is empty; the default is {default}")


class ImageTo3DMethod(Method):
    """A Method for image and text input: ``Settings`` for images, ``TextSettings`` for text, the grid's
    resolution setting (``resolution_setting``) at ``GPU_RESOLUTION`` on a GPU, ``CPU_RESOLUTION`` otherwise."""

    modalities = ("image", "text")
    TextSettings: ClassVar[type[Settings]]
    resolution_setting: ClassVar[str]
    GPU_RESOLUTION: ClassVar[int] = 256
    CPU_RESOLUTION: ClassVar[int] = 128

    def default_settings(self, modality: str) -> Settings:
        from methods import runtime

        res = self.GPU_RESOLUTION if runtime.gpu_present() else self.CPU_RESOLUTION
        kind = self.TextSettings if modality == "text" else self.Settings
        return kind(**{self.resolution_setting: res})

    def checkpoints(self, settings: Settings) -> list[str]:
        names = [settings.checkpoint]
        if isinstance(settings, TextStageSettings):
            names.append(settings.image_model)
        return names

    @staticmethod
    def text_seconds(settings: Settings, gpu: bool) -> float:
        """What the text stage adds to an estimate (nothing for image settings)."""
        if isinstance(settings, TextStageSettings):
            return (0.05 if gpu else 4.0) * settings.image_steps
        return 0.0


# ----------------------------------------------------------------------------- checkpoints


def is_local(checkpoint: str) -> bool:
    return checkpoint.startswith((".", "/", "~")) or Path(checkpoint).expanduser().exists()


def checked(checkpoint: str, default: str) -> str:
    """The checkpoint setting stripped; CheckpointError when it is empty."""
    checkpoint = checkpoint.strip()
    if not checkpoint:
        raise CheckpointError(f"the checkpoint is empty; the default is {default}")
    return checkpoint


def local_folder(checkpoint: str, what: str) -> Path:
    """The folder a local checkpoint names; CheckpointError (its name only, never its path) when it is missing."""
    folder = Path(checkpoint).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"the {what} checkpoint folder {folder.name} does not exist")
    return folder


def fetch(what: str, download: Callable[[bool], str]) -> str:
    """``download(offline)`` (a path in the HF cache); CheckpointError saying why when it cannot be had."""
    offline = hub_offline()
    try:
        return download(offline)
    except Exception as err:  # noqa: BLE001 - the hub client raises many kinds; all mean "cannot get it"
        why = "it is not in the cache and downloads are offline (HF_HUB_OFFLINE=1)" if offline else type(err).__name__
        raise CheckpointError(f"{what} cannot be fetched: {why}") from None


def check_keys(expected: dict[str, tuple[int, ...]], state: dict[str, Any], mismatch: str) -> None:
    """CheckpointError ``"{mismatch}: ..."`` naming the missing, unexpected and mis-shaped keys, if any."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if not (missing or unexpected or shapes):
        return
    parts = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shapes)):
        if keys:
            more = f" and {len(keys) - _LISTED} more" if len(keys) > _LISTED else ""
            if label == "wrong shapes":
                shown = [f"{k} {tuple(state[k].shape)} != {expected[k]}" for k in keys[:_LISTED]]
            else:
                shown = keys[:_LISTED]
            parts.append(f"{len(keys)} {label} ({', '.join(shown)}{more})")
    raise CheckpointError(f"{mismatch}: " + "; ".join(parts))


def yaml_mapping(text: str) -> dict[str, Any]:
    """A released ``config.yaml``'s mapping; CheckpointError when it is not valid YAML or not a mapping."""
    import yaml

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise CheckpointError(f"config.yaml is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise CheckpointError("config.yaml does not hold a mapping of settings")
    return raw


# ----------------------------------------------------------------------------- run side


class Clock:
    """Adds a stage's seconds to ``seconds`` (after the GPU's queue is done, on CUDA)."""

    def __init__(self, seconds: dict[str, float], device: str):
        self.seconds = seconds
        self.cuda = device.startswith("cuda")

    def add(self, stage: str, start: float) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def text_prompt(
    inputs: Any, settings: Any, method_id: str, text_settings: type[Settings], needs: str = TEXT_NEEDS
) -> str:
    """The prompt of a text run, whitespace normalised; InvalidInput / InvalidSettings when it cannot run."""
    if inputs.modality != "text":
        raise InvalidInput(f"{method_id} takes an image or text, not {inputs.modality}")
    if not isinstance(settings, text_settings):
        raise InvalidSettings(f"{method_id} on text needs the text settings ({needs})")
    if not inputs.prompt or not inputs.prompt.strip():
        raise InvalidInput("the prompt is empty: describe the object to generate")
    return " ".join(inputs.prompt.split())


@contextmanager
def generated_image() -> Iterator[None]:
    """Preparing the text stage's image: its InvalidInput says the image came from the prompt."""
    try:
        yield
    except InvalidInput as err:
        raise InvalidInput(f"the image generated from the prompt cannot be used: {err}") from None


def read_text_to_image(checkpoint: str, device: str, dtype: Any):
    """The diffusers pipeline with its UNet in ``dtype`` behind float32 inputs and outputs: latents, the
    scheduler, the VAE decoder and the text encoder (run once; the pipeline takes the latents' dtype from
    it) stay float32, so the sampler's state is never rounded."""
    import torch
    from diffusers import AutoPipelineForText2Image

    from methods import runtime

    source = checkpoint.strip()
    if is_local(source):
        folder = Path(source).expanduser()
        if not (folder / "model_index.json").is_file():
            raise CheckpointError(
                f"the image model folder {folder.name} is not a diffusers pipeline (no model_index.json)"
            )
        source = str(folder.resolve())
    try:
        pipe = AutoPipelineForText2Image.from_pretrained(source, dtype=torch.float32, local_files_only=hub_offline())
    except (OSError, ValueError, TypeError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if is_local(checkpoint):
            first = type(err).__name__
        raise CheckpointError(f"the text-to-image model {checkpoint} cannot be loaded: {first}") from None
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    runtime.run_in(pipe.unet, dtype)
    return pipe


def load_text_to_image(image_model: str, device: str, dtype: Any):
    """:func:`read_text_to_image`, cached in ``methods.runtime`` (one copy for every method's text path)."""
    from methods import runtime

    key = f"triposr-t2i|{image_model}|{device}|{dtype}"
    return runtime.get_model(key, lambda: read_text_to_image(image_model, device, dtype))


def _draw(pipe: Any, prompt: str, steps: int, guidance: float, seed: int, device: str):
    import torch

    generator = torch.Generator(device=device).manual_seed(int(seed))
    with torch.inference_mode():
        out = pipe(
            prompt + PROMPT_SUFFIX,
            negative_prompt=NEGATIVE_PROMPT,
            num_inference_steps=int(steps),
            guidance_scale=float(guidance),
            generator=generator,
        )
    return out.images[0].convert("RGB")


def text_stage(
    prompt: str, settings: Any, seconds: dict[str, float], notes: list[str], made: str, *, time_load: bool = False
) -> RunGenerator:
    """The first stage: ``settings.image_model`` draws the prompt (+ :data:`PROMPT_SUFFIX`); yields Progress,
    records ``seconds["text_to_image"]`` and a note ending in ``made``, returns the RGB image. With ``time_load``
    loading the pipeline is a Progress of its own and ``seconds["load_image_model"]``, and CUDA is synchronised
    before the stage's seconds are taken."""
    import numpy as np

    from methods import runtime

    device = runtime.device()
    dtype = runtime.dtype(device, settings.precision)
    if time_load:
        yield Progress("text_to_image", 0.0, f"loading {settings.image_model}")
        start = time.perf_counter()
        pipe = load_text_to_image(settings.image_model, device, dtype)
        seconds["load_image_model"] = time.perf_counter() - start
        yield Progress("text_to_image", 0.1, f"{settings.image_steps} denoising steps")
        start = time.perf_counter()
    else:
        yield Progress("text_to_image", 0.0, f"{settings.image_model}: {settings.image_steps} denoising steps")
        start = time.perf_counter()
        pipe = load_text_to_image(settings.image_model, device, dtype)
    image = _draw(pipe, prompt, settings.image_steps, settings.image_guidance, settings.seed, device)
    if time_load:
        Clock(seconds, device).add("text_to_image", start)
    else:
        seconds["text_to_image"] = time.perf_counter() - start
    notes.append(
        f"two stages: {settings.image_model} made a {image.width}x{image.height} image from the prompt "
        f"(+ an object-on-white suffix), then {made}"
    )
    yield Progress("text_to_image", 1.0, "image generated", preview=np.asarray(image))
    return image


__all__ = [
    "IMAGE_MODEL",
    "NEGATIVE_PROMPT",
    "PROMPT_SUFFIX",
    "TEXT_NEEDS",
    "Clock",
    "ImageTo3DMethod",
    "TextStageSettings",
    "check_checkpoint",
    "check_keys",
    "chunk_size_setting",
    "coarse_to_fine_setting",
    "checked",
    "fetch",
    "generated_image",
    "is_local",
    "load_text_to_image",
    "local_folder",
    "read_text_to_image",
    "text_prompt",
    "text_stage",
    "yaml_mapping",
]
