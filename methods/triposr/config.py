"""TripoSR's model configuration: the official ``config.yaml`` parsed into one flat dataclass (no torch).

The released ``config.yaml`` names the official classes (``tsr.models...``) and the image tokenizer's ViT
by hub id (``facebook/dino-vitb16``, whose ``config.json`` the official code downloads). We accept exactly
the classes the released model uses, resolve OmegaConf-style ``${a.b}`` references, and take the ViT
config from a folder beside ``config.yaml`` or, for the DINO ViT-B/16 id, from the values below.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from methods.base import CheckpointError
from methods.image_to_3d import yaml_mapping

DINO_VITB16 = "facebook/dino-vitb16"
# facebook/dino-vitb16 config.json (the fields ViTConfig reads); the weights come from model.ckpt
DINO_VITB16_CONFIG: dict[str, Any] = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "image_size": 224,
    "patch_size": 16,
    "num_channels": 3,
    "qkv_bias": True,
}

EXPECTED_CLASSES = {
    "image_tokenizer_cls": "tsr.models.tokenizers.image.DINOSingleImageTokenizer",
    "tokenizer_cls": "tsr.models.tokenizers.triplane.Triplane1DTokenizer",
    "backbone_cls": "tsr.models.transformer.transformer_1d.Transformer1D",
    "post_processor_cls": "tsr.models.network_utils.TriplaneUpsampleNetwork",
    "decoder_cls": "tsr.models.network_utils.NeRFMLP",
    "renderer_cls": "tsr.models.nerf_renderer.TriplaneNeRFRenderer",
}
_REF = re.compile(r"^\$\{([A-Za-z0-9_.]+)\}$")


@dataclass(frozen=True)
class TripoSRConfig:
    """Every number that shapes the network or the renderer (names follow the official config)."""

    cond_image_size: int
    vit: dict[str, Any] = field(hash=False)
    plane_size: int
    num_channels: int
    num_attention_heads: int
    attention_head_dim: int
    num_layers: int
    cross_attention_dim: int
    triplane_channels: int  # post_processor.out_channels
    decoder_in_channels: int
    decoder_neurons: int
    decoder_hidden_layers: int
    decoder_activation: str = "silu"
    radius: float = 0.87
    feature_reduction: str = "concat"
    density_activation: str = "exp"
    density_bias: float = -1.0
    num_samples_per_ray: int = 128
    norm_num_groups: int = 32
    vit_name: str = DINO_VITB16

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim


def _resolve(node: Any, root: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        return {k: _resolve(v, root) for k, v in node.items()}
    if isinstance(node, str) and (match := _REF.match(node.strip())):
        value: Any = root
        for part in match.group(1).split("."):
            if not isinstance(value, dict) or part not in value:
                raise CheckpointError(f"config.yaml refers to {node} which it does not define")
            value = value[part]
        return _resolve(value, root)
    return node


def parse_config(text: str, vit_config: dict[str, Any]) -> TripoSRConfig:
    """A TripoSRConfig from the text of the official config.yaml and the ViT's config.json values."""
    raw = yaml_mapping(text)
    cfg = _resolve(raw, raw)
    for key, expected in EXPECTED_CLASSES.items():
        if cfg.get(key, expected) != expected:
            raise CheckpointError(f"config.yaml sets {key}: {cfg[key]}; only {expected} (TripoSR's) is supported")
    try:
        backbone, decoder, renderer = cfg["backbone"], cfg["decoder"], cfg["renderer"]
        config = TripoSRConfig(
            cond_image_size=int(cfg["cond_image_size"]),
            vit=dict(vit_config),
            plane_size=int(cfg["tokenizer"]["plane_size"]),
            num_channels=int(cfg["tokenizer"]["num_channels"]),
            num_attention_heads=int(backbone["num_attention_heads"]),
            attention_head_dim=int(backbone["attention_head_dim"]),
            num_layers=int(backbone["num_layers"]),
            cross_attention_dim=int(backbone["cross_attention_dim"]),
            triplane_channels=int(cfg["post_processor"]["out_channels"]),
            decoder_in_channels=int(decoder["in_channels"]),
            decoder_neurons=int(decoder["n_neurons"]),
            decoder_hidden_layers=int(decoder["n_hidden_layers"]),
            decoder_activation=str(decoder.get("activation", "relu")),
            radius=float(renderer["radius"]),
            feature_reduction=str(renderer.get("feature_reduction", "concat")),
            density_activation=str(renderer.get("density_activation", "trunc_exp")),
            density_bias=float(renderer.get("density_bias", -1.0)),
            num_samples_per_ray=int(renderer["num_samples_per_ray"]),
            norm_num_groups=int(backbone.get("norm_num_groups", 32)),
            vit_name=str(cfg["image_tokenizer"]["pretrained_model_name_or_path"]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"config.yaml lacks or mistypes a TripoSR setting ({err})") from None
    _check(config, cfg)
    return config


def _check(config: TripoSRConfig, cfg: dict[str, Any]) -> None:
    """Refuse combinations the official code does not run, with the setting named."""
    if config.feature_reduction != "concat":
        raise CheckpointError("only renderer.feature_reduction: concat is supported (the released model's)")
    if config.density_activation not in ("exp", "relu", "softplus", "sigmoid"):
        raise CheckpointError(f"renderer.density_activation {config.density_activation!r} is not supported")
    if config.decoder_activation not in ("silu", "relu"):
        raise CheckpointError(f"decoder.activation {config.decoder_activation!r} is not supported")
    if config.decoder_in_channels != 3 * config.triplane_channels:
        raise CheckpointError("decoder.in_channels must be 3 x post_processor.out_channels (concat of three planes)")
    if int(cfg["post_processor"].get("in_channels", config.num_channels)) != config.num_channels:
        raise CheckpointError("post_processor.in_channels must equal tokenizer.num_channels")
    if int(cfg["backbone"].get("in_channels", config.num_channels)) != config.num_channels:
        raise CheckpointError("backbone.in_channels must equal tokenizer.num_channels")
    if config.cross_attention_dim != int(config.vit.get("hidden_size", -1)):
        raise CheckpointError("backbone.cross_attention_dim must equal the ViT's hidden_size")


def vit_config_for(name: str, folder: Path | None) -> dict[str, Any]:
    """The ViT config.json values for ``image_tokenizer.pretrained_model_name_or_path``.

    Looked up in order: a folder of that name beside config.yaml (or an absolute folder) holding config.json;
    the built-in DINO ViT-B/16 values; the hub (``config.json`` only, honouring offline mode).
    """
    candidates = [Path(name).expanduser()] + ([folder / name] if folder is not None else [])
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return _read_json(candidate / "config.json")
    if name == DINO_VITB16:
        return dict(DINO_VITB16_CONFIG)
    from huggingface_hub import hf_hub_download

    from methods.registry import hub_offline

    try:
        path = hf_hub_download(name, "config.json", local_files_only=hub_offline())
    except Exception as err:  # noqa: BLE001 - the hub client raises many kinds; all mean "not loadable"
        raise CheckpointError(f"the image tokenizer config {name} cannot be found ({type(err).__name__})") from None
    return _read_json(Path(path))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        raise CheckpointError(f"the image tokenizer config {path.parent.name}/config.json cannot be read") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path.parent.name}/config.json does not hold a mapping")
    return data


def load_config(folder: Path) -> TripoSRConfig:
    """The config of a checkpoint folder (config.yaml + its ViT config)."""
    path = folder / "config.yaml"
    if not path.is_file():
        raise CheckpointError(
            f"the TripoSR checkpoint folder {folder.name} has no config.yaml "
            "(it needs config.yaml and model.ckpt, as in the hub repo stabilityai/TripoSR)"
        )
    text = path.read_text()
    try:
        raw = yaml.safe_load(text) or {}
        name = str(raw["image_tokenizer"]["pretrained_model_name_or_path"])
    except (yaml.YAMLError, KeyError, TypeError):
        name = DINO_VITB16
    return parse_config(text, vit_config_for(name, folder))
