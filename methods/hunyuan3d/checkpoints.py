"""Finding and loading a Hunyuan3D-2mini checkpoint: a hub repo's variant sub-folder, or a local folder.

A released variant is a sub-folder (``hunyuan3d-dit-v2-mini``, ``-fast``, ``-turbo``) with ``config.yaml`` and
``model.fp16.safetensors`` holding ``model.*`` (DiT), ``vae.*`` and ``conditioner.*`` (DINOv2-giant). The
``checkpoint`` setting is a hub repo id (the variant picks the sub-folder), or a local folder that is either
such a sub-folder or a root holding it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from methods import image_to_3d
from methods.base import CheckpointError
from methods.hunyuan3d.config import CONFIG_NAME, HunyuanConfig, load_config
from methods.hunyuan3d.model import Hunyuan3D

DEFAULT_CHECKPOINT = "tencent/Hunyuan3D-2mini"
SUBFOLDERS = {
    "mini": "hunyuan3d-dit-v2-mini",
    "fast": "hunyuan3d-dit-v2-mini-fast",
    "turbo": "hunyuan3d-dit-v2-mini-turbo",
}
WHAT = "Hunyuan3D"
WEIGHT_NAMES = ("model.fp16.safetensors", "model.safetensors")  # the released file, then a float32 copy


def resolve(checkpoint: str, variant: str) -> Path:
    """The folder holding config.yaml and the weights; downloads the variant's sub-folder of a hub repo first."""
    checkpoint = image_to_3d.checked(checkpoint, DEFAULT_CHECKPOINT)
    if variant not in SUBFOLDERS:
        raise CheckpointError(f"unknown Hunyuan3D-2mini variant {variant!r}; one of {', '.join(SUBFOLDERS)}")
    sub = SUBFOLDERS[variant]
    if image_to_3d.is_local(checkpoint):
        folder = image_to_3d.local_folder(checkpoint, WHAT)
        if (folder / sub / CONFIG_NAME).is_file():
            return folder / sub
        if not (folder / CONFIG_NAME).is_file():
            raise CheckpointError(
                f"the Hunyuan3D checkpoint folder {folder.name} has no config.yaml (nor a {sub} sub-folder with one); "
                f"it needs config.yaml and model.fp16.safetensors, as in {DEFAULT_CHECKPOINT}/{sub}"
            )
        return folder
    from huggingface_hub import hf_hub_download

    def download(offline: bool) -> str:
        config = hf_hub_download(checkpoint, f"{sub}/{CONFIG_NAME}", local_files_only=offline)
        hf_hub_download(checkpoint, f"{sub}/{WEIGHT_NAMES[0]}", local_files_only=offline)
        return config

    return Path(image_to_3d.fetch(f"{WHAT} {checkpoint}/{sub}", download)).parent


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    for name in WEIGHT_NAMES:
        path = folder / name
        if path.is_file():
            try:
                return load_file(path)
            except Exception as err:  # noqa: BLE001 - a truncated or foreign file
                raise CheckpointError(f"{name} cannot be read as safetensors ({type(err).__name__})") from None
    raise CheckpointError(f"the Hunyuan3D checkpoint folder {folder.name} has no model.fp16.safetensors")


def check_keys(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """CheckpointError naming the missing, unexpected and mis-shaped keys, if any."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    image_to_3d.check_keys(expected, state, "the checkpoint does not match its config.yaml")


def build(config: HunyuanConfig, state: dict[str, torch.Tensor]) -> Hunyuan3D:
    """The model with the file's tensors (strict), built on the meta device so nothing is initialised twice."""
    with torch.device("meta"):
        model = Hunyuan3D(config)
    check_keys(model, state)
    model.load_state_dict(state, strict=True, assign=True)
    model.reset_buffers()
    return model.eval()


def load_model(checkpoint: str, variant: str, device: str, dtype: torch.dtype) -> Hunyuan3D:
    """Resolve, read and build; the networks in ``dtype`` on ``device``."""
    folder = resolve(checkpoint, variant)
    config = load_config(folder)
    model = build(config, read_state_dict(folder))
    return model.to(device=device, dtype=dtype)
