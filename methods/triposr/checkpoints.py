"""Finding and loading a TripoSR checkpoint: a hub repo (config.yaml + model.ckpt) or a local folder."""

from __future__ import annotations

from pathlib import Path

import torch

from methods import image_to_3d
from methods.base import CheckpointError
from methods.triposr.config import TripoSRConfig, load_config
from methods.triposr.model import TripoSR

DEFAULT_CHECKPOINT = "stabilityai/TripoSR"
CONFIG_NAME = "config.yaml"
WHAT = "TripoSR"
WEIGHT_NAMES = ("model.ckpt", "model.safetensors")  # the official file, then a safetensors copy in a folder


def resolve(checkpoint: str) -> Path:
    """The folder holding config.yaml and the weights; downloads a hub repo into the HF cache first."""
    checkpoint = image_to_3d.checked(checkpoint, DEFAULT_CHECKPOINT)
    if image_to_3d.is_local(checkpoint):
        folder = image_to_3d.local_folder(checkpoint, WHAT)
        if not (folder / CONFIG_NAME).is_file():
            raise CheckpointError(
                f"the TripoSR checkpoint folder {folder.name} has no config.yaml "
                "(it needs config.yaml and model.ckpt, as in the hub repo stabilityai/TripoSR)"
            )
        return folder
    from huggingface_hub import hf_hub_download

    def download(offline: bool) -> str:
        config = hf_hub_download(checkpoint, CONFIG_NAME, local_files_only=offline)
        hf_hub_download(checkpoint, WEIGHT_NAMES[0], local_files_only=offline)
        return config

    return Path(image_to_3d.fetch(f"{WHAT} {checkpoint}", download)).parent


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    for name in WEIGHT_NAMES:
        path = folder / name
        if path.is_file():
            try:
                if name.endswith(".safetensors"):
                    from safetensors.torch import load_file

                    return load_file(path)
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception as err:  # noqa: BLE001 - a truncated or foreign file
                raise CheckpointError(f"{name} cannot be read as a TripoSR state_dict ({type(err).__name__})") from None
            if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                state = state["state_dict"]
            if not isinstance(state, dict):
                raise CheckpointError(f"{name} does not hold a state_dict")
            return state
    raise CheckpointError(f"the TripoSR checkpoint folder {folder.name} has no model.ckpt (nor model.safetensors)")


def check_keys(model: TripoSR, state: dict[str, torch.Tensor]) -> None:
    """CheckpointError naming the missing, unexpected and mis-shaped keys, if any."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    image_to_3d.check_keys(expected, state, "the checkpoint does not match its config.yaml")


def build(config: TripoSRConfig, state: dict[str, torch.Tensor]) -> TripoSR:
    """The model with the checkpoint's tensors (strict); built on the meta device, so nothing is initialised twice."""
    with torch.device("meta"):
        model = TripoSR(config)
    check_keys(model, state)
    model.load_state_dict(state, strict=True, assign=True)
    model.image_tokenizer.reset_buffers()
    return model.eval()


def load_model(checkpoint: str, device: str, dtype: torch.dtype) -> TripoSR:
    """Resolve, read and build; weights in ``dtype`` on ``device`` except the small NeRF decoder (float32)."""
    folder = resolve(checkpoint)
    config = load_config(folder)
    model = build(config, read_state_dict(folder))
    model.to(device=device, dtype=dtype)
    model.decoder.float()  # exp(density) overflows float16 above 11; the MLP is small
    return model
