"""Hunyuan3D-2mini's configuration: a released sub-folder's ``config.yaml`` parsed into dataclasses (no torch).

The released ``config.yaml`` names the official classes (``hy3dgen.shapegen...``) with ``target`` / ``params``
blocks for ``model`` (the DiT), ``vae``, ``conditioner`` (DINOv2 config inlined), ``scheduler`` and
``image_processor``. We accept exactly the classes the released models use and read their numbers; nothing
is imported from the targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from methods.base import CheckpointError
from methods.image_to_3d import yaml_mapping

CONFIG_NAME = "config.yaml"
_PKG = "hy3dgen.shapegen."
EXPECTED = {
    "model": (_PKG + "models.Hunyuan3DDiT",),
    "vae": (_PKG + "models.ShapeVAE",),
    "conditioner": (_PKG + "models.SingleImageEncoder",),
    "scheduler": (
        _PKG + "schedulers.FlowMatchEulerDiscreteScheduler",
        _PKG + "schedulers.ConsistencyFlowMatchEulerDiscreteScheduler",
    ),
    "image_processor": (_PKG + "preprocessors.ImageProcessorV2",),
}


@dataclass(frozen=True)
class DiTConfig:
    in_channels: int
    context_in_dim: int
    hidden_size: int
    mlp_ratio: float
    num_heads: int
    depth: int
    depth_single_blocks: int
    axes_dim: tuple[int, ...] = (64,)
    theta: int = 10000
    qkv_bias: bool = True
    guidance_embed: bool = False
    time_factor: float = 1000.0


@dataclass(frozen=True)
class VAEConfig:
    num_latents: int
    embed_dim: int
    width: int
    heads: int
    num_decoder_layers: int
    num_freqs: int = 8
    include_pi: bool = False
    qkv_bias: bool = False
    qk_norm: bool = True
    scale_factor: float = 1.0
    mlp_expand_ratio: int = 4
    downsample_ratio: int = 1
    ln_post: bool = True


@dataclass(frozen=True)
class HunyuanConfig:
    dit: DiTConfig
    vae: VAEConfig
    dino: dict[str, Any] = field(hash=False)  # the Dinov2Config values
    dino_image_size: int = 518
    scheduler: str = "flow"  # "flow" (FlowMatchEuler) or "consistency" (turbo)
    num_train_timesteps: int = 1000
    shift: float = 1.0
    pcm_timesteps: int = 50
    image_size: int = 512  # ImageProcessorV2 size
    border_ratio: float = 0.15


def _target(cfg: dict[str, Any], key: str) -> dict[str, Any]:
    block = cfg.get(key)
    if not isinstance(block, dict):
        raise CheckpointError(f"config.yaml has no {key} block (a Hunyuan3D-2 config.yaml has model, vae, conditioner)")
    target = str(block.get("target", ""))
    if target not in EXPECTED[key]:
        supported = " or ".join(EXPECTED[key])
        raise CheckpointError(f"config.yaml sets {key}.target: {target}; only {supported} is supported")
    params = block.get("params") or {}
    if not isinstance(params, dict):
        raise CheckpointError(f"config.yaml's {key}.params is not a mapping")
    return params


def parse_config(text: str, vae_override: dict[str, Any] | None = None) -> HunyuanConfig:
    """A HunyuanConfig from the text of a released DiT sub-folder's ``config.yaml``."""
    raw = yaml_mapping(text)
    try:
        m = _target(raw, "model")
        v = vae_override if vae_override is not None else _target(raw, "vae")
        c = _target(raw, "conditioner")
        enc = c["main_image_encoder"]
        if enc.get("type") != "DinoImageEncoder":
            raise CheckpointError(f"conditioner.main_image_encoder.type {enc.get('type')!r} is not DinoImageEncoder")
        if "additional_image_encoder" in c and c["additional_image_encoder"]:
            raise CheckpointError("an additional image encoder is not supported (the released models have none)")
        kwargs = enc.get("kwargs") or {}
        dino = dict(kwargs["config"])
        dit = DiTConfig(
            in_channels=int(m["in_channels"]),
            context_in_dim=int(m["context_in_dim"]),
            hidden_size=int(m["hidden_size"]),
            mlp_ratio=float(m["mlp_ratio"]),
            num_heads=int(m["num_heads"]),
            depth=int(m["depth"]),
            depth_single_blocks=int(m["depth_single_blocks"]),
            axes_dim=tuple(int(a) for a in m.get("axes_dim", [64])),
            theta=int(m.get("theta", 10000)),
            qkv_bias=bool(m.get("qkv_bias", True)),
            guidance_embed=bool(m.get("guidance_embed", False)),
            time_factor=float(m.get("time_factor", 1000.0)),
        )
        vae = VAEConfig(
            num_latents=int(v["num_latents"]),
            embed_dim=int(v["embed_dim"]),
            width=int(v["width"]),
            heads=int(v["heads"]),
            num_decoder_layers=int(v["num_decoder_layers"]),
            num_freqs=int(v.get("num_freqs", 8)),
            include_pi=bool(v.get("include_pi", True)),
            qkv_bias=bool(v.get("qkv_bias", True)),
            qk_norm=bool(v.get("qk_norm", False)),
            scale_factor=float(v.get("scale_factor", 1.0)),
            mlp_expand_ratio=int(v.get("geo_decoder_mlp_expand_ratio", 4)),
            downsample_ratio=int(v.get("geo_decoder_downsample_ratio", 1)),
            ln_post=bool(v.get("geo_decoder_ln_post", True)),
        )
        sched_block = raw.get("scheduler") or {"target": EXPECTED["scheduler"][0]}
        sched_target = str(sched_block.get("target", ""))
        if sched_target not in EXPECTED["scheduler"]:
            raise CheckpointError(f"config.yaml sets scheduler.target: {sched_target}; it is not supported")
        sp = sched_block.get("params") or {}
        ip = _target(raw, "image_processor") if "image_processor" in raw else {}
        config = HunyuanConfig(
            dit=dit,
            vae=vae,
            dino=dino,
            dino_image_size=int(kwargs.get("image_size", dino.get("image_size", 518))),
            scheduler="consistency" if sched_target.endswith("ConsistencyFlowMatchEulerDiscreteScheduler") else "flow",
            num_train_timesteps=int(sp.get("num_train_timesteps", 1000)),
            shift=float(sp.get("shift", 1.0)),
            pcm_timesteps=int(sp.get("pcm_timesteps", 50)),
            image_size=int(ip.get("size", 512)),
            border_ratio=float(ip.get("border_ratio", 0.15)),
        )
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"config.yaml lacks or mistypes a Hunyuan3D-2 setting ({err})") from None
    _check(config)
    return config


def _check(config: HunyuanConfig) -> None:
    d, v = config.dit, config.vae
    if d.hidden_size % d.num_heads:
        raise CheckpointError("model.hidden_size must be a multiple of model.num_heads")
    if sum(d.axes_dim) != d.hidden_size // d.num_heads:
        raise CheckpointError("model.axes_dim must sum to the head dimension (hidden_size / num_heads)")
    if d.in_channels != v.embed_dim:
        raise CheckpointError("model.in_channels must equal vae.embed_dim (the latent channels)")
    if d.context_in_dim != int(config.dino.get("hidden_size", -1)):
        raise CheckpointError("model.context_in_dim must equal the DINOv2 hidden_size")
    if v.width % v.heads:
        raise CheckpointError("vae.width must be a multiple of vae.heads")
    if v.downsample_ratio != 1:
        raise CheckpointError("vae.geo_decoder_downsample_ratio other than 1 is not supported (the release uses 1)")
    if config.dino_image_size % int(config.dino.get("patch_size", 14)):
        raise CheckpointError("the conditioner's image_size must be a multiple of the DINOv2 patch size")


def load_config(folder: Path) -> HunyuanConfig:
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(
            f"the Hunyuan3D checkpoint folder {folder.name} has no config.yaml "
            "(it needs config.yaml and model.fp16.safetensors, as in tencent/Hunyuan3D-2mini/hunyuan3d-dit-v2-mini)"
        )
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        raise CheckpointError(f"{folder.name}/config.yaml cannot be read") from None
    return parse_config(text)
