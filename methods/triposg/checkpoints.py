"""Finding and loading TripoSG: the hub repo ``VAST-AI/TripoSG`` or a local folder of the same layout.

The layout is a diffusers pipeline folder: ``model_index.json`` and one sub-folder per component,
``image_encoder_dinov2/`` (transformers ``config.json`` + ``model.safetensors``), ``transformer/`` and ``vae/``
(``config.json`` + ``diffusion_pytorch_model.safetensors``, or shards with an ``.index.json``),
``scheduler/scheduler_config.json`` and ``feature_extractor_dinov2/preprocessor_config.json``. Every file is read
unchanged; each component's state_dict must match its config exactly (strict), else a CheckpointError names the
missing, unexpected and mis-shaped keys.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from methods import image_to_3d
from methods.base import CheckpointError
from methods.latent3d import DinoConditioner
from methods.triposg.model import DiTConfig, TripoSGDiT, TripoSGVAE, VAEConfig

DEFAULT_CHECKPOINT = "VAST-AI/TripoSG"
WHAT = "TripoSG"
INDEX = "model_index.json"
COMPONENTS = ("image_encoder_dinov2", "transformer", "vae", "scheduler", "feature_extractor_dinov2")
CONFIG_FILES = {
    "image_encoder_dinov2": "config.json",
    "transformer": "config.json",
    "vae": "config.json",
    "scheduler": "scheduler_config.json",
    "feature_extractor_dinov2": "preprocessor_config.json",
}
WEIGHT_FILES = {
    "image_encoder_dinov2": "model.safetensors",
    "transformer": "diffusion_pytorch_model.safetensors",
    "vae": "diffusion_pytorch_model.safetensors",
}
# config fields the official classes accept that change nothing here (or must keep their default)
_IGNORED = {"transformer": {"use_cross_attention_2": False, "cross_attention_2_dim": None}, "vae": {}}
_VAE_EMBEDDING = "frequency"


@dataclass(frozen=True)
class SchedulerConfig:
    num_train_timesteps: int = 1000
    shift: float = 1.0
    use_dynamic_shifting: bool = False


@dataclass(frozen=True)
class ImageProcessorConfig:
    """The DINOv2 ``BitImageProcessor`` settings (released: shortest edge 256, crop 224, ImageNet mean/std)."""

    shortest_edge: int = 256
    crop: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    resample: int = 3


@dataclass(frozen=True)
class TripoSGConfig:
    dit: DiTConfig
    vae: VAEConfig
    dino: dict[str, Any]
    scheduler: SchedulerConfig
    image: ImageProcessorConfig


def resolve(checkpoint: str) -> Path:
    """The pipeline folder; a hub repo is downloaded into the HF cache first (configs and weights only)."""
    checkpoint = image_to_3d.checked(checkpoint, DEFAULT_CHECKPOINT)
    if image_to_3d.is_local(checkpoint):
        folder = image_to_3d.local_folder(checkpoint, WHAT)
        if not (folder / INDEX).is_file():
            raise CheckpointError(
                f"the TripoSG checkpoint folder {folder.name} has no {INDEX} (it needs the diffusers layout of "
                f"the hub repo {DEFAULT_CHECKPOINT}: {INDEX} and the folders {', '.join(COMPONENTS)})"
            )
        return folder
    from huggingface_hub import snapshot_download

    patterns = [INDEX] + [f"{c}/*.json" for c in COMPONENTS] + [f"{c}/*.safetensors" for c in WEIGHT_FILES]

    def download(offline: bool) -> str:
        return snapshot_download(checkpoint, allow_patterns=patterns, local_files_only=offline)

    return Path(image_to_3d.fetch(f"{WHAT} {checkpoint}", download))


def _read_json(folder: Path, component: str) -> dict[str, Any]:
    path = folder / component / CONFIG_FILES[component]
    if not path.is_file():
        raise CheckpointError(f"the TripoSG checkpoint has no {component}/{CONFIG_FILES[component]}")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        name = f"{component}/{CONFIG_FILES[component]}"
        raise CheckpointError(f"{name} is not valid JSON ({type(err).__name__})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{component}/{CONFIG_FILES[component]} does not hold a JSON object")
    return data


def _dataclass_from(kind, data: dict[str, Any], component: str, ignored: dict[str, Any]):
    names = {f.name for f in dataclasses.fields(kind)}
    values = {}
    for key, value in data.items():
        if key.startswith("_"):
            continue
        if key in names:
            values[key] = value
        elif key in ignored:
            if value != ignored[key]:
                raise CheckpointError(f"{component}/config.json sets {key}={value!r}, which TripoSG does not use")
        else:
            raise CheckpointError(f"{component}/config.json has an unknown field {key}")
    try:
        return kind(**values)
    except TypeError as err:
        raise CheckpointError(f"{component}/config.json cannot be used ({err})") from None


def load_config(folder: Path) -> TripoSGConfig:
    index = folder / INDEX
    if index.is_file():
        try:
            listed = json.loads(index.read_text())
        except ValueError:
            raise CheckpointError(f"{INDEX} is not valid JSON") from None
        missing = [c for c in COMPONENTS if c not in listed]
        if missing:
            raise CheckpointError(f"{INDEX} does not list {', '.join(missing)}")
    vae = dict(_read_json(folder, "vae"))
    if vae.pop("embedding_type", _VAE_EMBEDDING) != _VAE_EMBEDDING:
        raise CheckpointError("vae/config.json: only the frequency embedding exists in TripoSG")
    sched = {k: v for k, v in _read_json(folder, "scheduler").items() if not k.startswith("_")}
    scheduler = _dataclass_from(SchedulerConfig, sched, "scheduler", {})
    if scheduler.use_dynamic_shifting:
        raise CheckpointError("scheduler_config.json: use_dynamic_shifting is not used by TripoSG's pipeline")
    pre = _read_json(folder, "feature_extractor_dinov2")
    size, crop = pre.get("size", {}), pre.get("crop_size", {})
    image = ImageProcessorConfig(
        shortest_edge=int(size.get("shortest_edge", 256)),
        crop=(int(crop.get("height", 224)), int(crop.get("width", 224))),
        mean=tuple(pre.get("image_mean", ImageProcessorConfig.mean)),
        std=tuple(pre.get("image_std", ImageProcessorConfig.std)),
        resample=int(pre.get("resample", 3)),
    )
    return TripoSGConfig(
        dit=_dataclass_from(DiTConfig, _read_json(folder, "transformer"), "transformer", _IGNORED["transformer"]),
        vae=_dataclass_from(VAEConfig, vae, "vae", _IGNORED["vae"]),
        dino=_read_json(folder, "image_encoder_dinov2"),
        scheduler=scheduler,
        image=image,
    )


def read_state_dict(folder: Path, component: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    name = WEIGHT_FILES[component]
    single = folder / component / name
    index = folder / component / (name + ".index.json")
    try:
        if single.is_file():
            return load_file(single)
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(load_file(folder / component / Path(shard).name))
            return state
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file
        raise CheckpointError(f"{component}/{name} cannot be read as a state_dict ({type(err).__name__})") from None
    raise CheckpointError(f"the TripoSG checkpoint has no {component}/{name}")


def check_keys(component: str, expected: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor]) -> None:
    """CheckpointError naming the missing, unexpected and mis-shaped keys, if any."""
    image_to_3d.check_keys(expected, state, f"{component} does not match its config")


def shapes_of(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def build_meta(config: TripoSGConfig) -> tuple[DinoConditioner, TripoSGDiT, TripoSGVAE]:
    """The three networks on the meta device (no memory, nothing initialised)."""
    with torch.device("meta"):
        return DinoConditioner(config.dino), TripoSGDiT(config.dit), TripoSGVAE(config.vae)


def released_shapes(config: TripoSGConfig) -> dict[str, dict[str, tuple[int, ...]]]:
    """Component -> key -> shape, with the released files' key names (to compare with a manifest)."""
    dino, dit, vae = build_meta(config)
    return {
        "image_encoder_dinov2": {k: tuple(v.shape) for k, v in dino.released_state_dict().items()},
        "transformer": shapes_of(dit),
        "vae": shapes_of(vae),
    }


def build(config: TripoSGConfig, states: dict[str, dict[str, torch.Tensor]]):
    """The networks with the files' tensors (strict), built on the meta device so nothing is initialised twice."""
    dino, dit, vae = build_meta(config)
    expected = released_shapes(config)
    for component in WEIGHT_FILES:
        check_keys(component, expected[component], states[component])
    dino.load_released(states["image_encoder_dinov2"], assign=True)
    dit.load_state_dict(states["transformer"], strict=True, assign=True)
    vae.load_state_dict(states["vae"], strict=True, assign=True)
    vae.reset_buffers()
    return dino.eval(), dit.eval(), vae.eval()


@dataclass
class TripoSG:
    """The loaded model: networks (``dtype`` on ``device``), configs."""

    config: TripoSGConfig
    dino: DinoConditioner
    dit: TripoSGDiT
    vae: TripoSGVAE
    device: str
    dtype: torch.dtype


def load_model(checkpoint: str, device: str = "cpu", dtype: torch.dtype = torch.float32) -> TripoSG:
    folder = resolve(checkpoint)
    config = load_config(folder)
    states = {c: read_state_dict(folder, c) for c in WEIGHT_FILES}
    dino, dit, vae = build(config, states)
    for net in (dino, dit, vae):
        net.to(device=device, dtype=dtype)
    return TripoSG(config, dino, dit, vae, device, dtype)
