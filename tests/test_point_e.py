"""Point-E: the light spec, settings, availability, and the checkpoint cache, download and loading."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import methods.point_e as point_e
from methods import registry
from methods.base import CheckpointError, InvalidSettings, MethodUnavailable
from methods.point_e import PointE, PointEImageSettings, PointETextSettings, checkpoints, configs
from methods.point_e.models import build_model
from tests.generators import drive

ROOT = Path(__file__).resolve().parents[1]

TINY_DIFFUSION = {"width": 16, "layers": 1, "heads": 2}


def tiny_config(name: str) -> dict:
    """The official config ``name`` with small sizes (flags and class kept)."""
    config = dict(configs.MODEL_CONFIGS[name])
    if config["name"] == "CrossAttentionPointCloudSDFModel":
        return config | {"width": 16, "encoder_layers": 1, "decoder_layers": 1, "encoder_heads": 2, "decoder_heads": 2}
    return config | TINY_DIFFUSION


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRILEMMA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRILEMMA_OFFLINE", raising=False)
    return tmp_path / "cache" / "point_e"


@pytest.fixture
def tiny_configs(monkeypatch):
    for name in configs.MODEL_CONFIGS:
        monkeypatch.setitem(configs.MODEL_CONFIGS, name, tiny_config(name))


def save_checkpoint(name: str, folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / configs.CHECKPOINT_FILES[name]
    torch.save(build_model(configs.MODEL_CONFIGS[name]).state_dict(), path)
    return path


drain = drive  # (progress events, returned value)


# ----------------------------------------------------------------------------- the light spec


def test_listing_imports_no_torch():
    code = (
        "import sys, methods.point_e as p; p.PointE().spec(); p.PointETextSettings.describe(); "
        "print(sorted(sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "'torch'" not in out and "'transformers'" not in out


def test_registered_for_text_and_image(monkeypatch):
    monkeypatch.setattr(registry, "_discovered", True)  # only the modules imported here
    method = registry.get("point-e")
    assert isinstance(method, PointE)
    assert method.modalities == ("text", "image") and method.output == "mesh+points"
    assert "point-e" in registry.ids("text") and "point-e" in registry.ids("image")
    spec = method.spec()
    assert spec["paper_url"].startswith("https://arxiv.org/abs/2212.08751")
    assert any(url.startswith("https://openaipublic.azureedge.net/main/point-e/") for url in spec["weights"])


def test_default_settings_follow_the_official_notebooks():
    method = PointE()
    text, image = method.default_settings("text"), method.default_settings("image")
    assert isinstance(text, PointETextSettings) and isinstance(image, PointEImageSettings)
    for s in (text, image):
        assert (s.guidance_scale, s.steps, s.upsample, s.mesh_method, s.grid_size) == (3.0, 64, True, "sdf", 32)
        assert s.checkpoint == "official" and s.clip_checkpoint == "openai/clip-vit-large-patch14"
    assert text.upsample_guidance_scale == 0.0 and image.upsample_guidance_scale == 3.0
    names = {d["name"] for d in image.describe()}
    assert {"seed", "model_size", "guidance_scale", "steps", "upsample", "mesh_method", "grid_size"} <= names
    assert dict((d["name"], d["choices"]) for d in image.describe())["model_size"] == ("40M", "300M", "1B")
    assert dict((d["name"], d["choices"]) for d in text.describe())["model_size"] == ("40M",)


@pytest.mark.parametrize(
    "modality, values, message",
    [
        ("text", {"model_size": "1B"}, "model_size"),
        ("image", {"model_size": "2B"}, "model_size"),
        ("image", {"mesh_method": "voxels"}, "mesh_method"),
        ("image", {"grid_size": 256}, "grid_size"),
        ("image", {"steps": 0}, "steps"),
        ("image", {"checkpoint": "/no/such/dir"}, "not a directory"),
        ("text", {"clip_checkpoint": " "}, "clip_checkpoint"),
    ],
)
def test_bad_settings_are_named(modality, values, message):
    defaults = PointE().default_settings(modality)
    with pytest.raises(InvalidSettings, match=message):
        type(defaults).from_dict(values, base=defaults)


def test_checkpoint_names_per_modality_and_settings():
    text, image = PointETextSettings(), PointEImageSettings(model_size="1B")
    assert configs.checkpoint_names(text, "text") == ["base40M-textvec", "upsample", "sdf"]
    assert configs.checkpoint_names(image, "image") == ["base1B", "upsample", "sdf"]
    lean = dataclasses.replace(image, upsample=False, mesh_method="poisson")
    assert configs.checkpoint_names(lean, "image") == ["base1B"]
    with pytest.raises(InvalidSettings, match="text"):
        configs.base_model_name(point_e.PointESettings(model_size="300M"), "text")


# ----------------------------------------------------------------------------- availability


def test_not_cached_lists_official_urls_and_clip(cache):
    listed = PointE().checkpoints(PointETextSettings())
    assert listed == [
        configs.CHECKPOINT_URLS["base40M-textvec"],
        configs.CHECKPOINT_URLS["upsample"],
        configs.CHECKPOINT_URLS["sdf"],
        "openai/clip-vit-large-patch14",
    ]
    both = PointE().checkpoints(point_e.PointESettings())  # modality unknown: both base models
    assert configs.CHECKPOINT_URLS["base40M"] in both and configs.CHECKPOINT_URLS["base40M-textvec"] in both


def test_cached_files_are_listed_as_local_paths(cache, monkeypatch):
    cache.mkdir(parents=True)
    for name in ("base40M-textvec", "upsample", "sdf"):
        (cache / configs.CHECKPOINT_FILES[name]).write_bytes(b"x")
    settings = PointETextSettings(clip_checkpoint=str(cache))  # a local CLIP directory
    listed = PointE().checkpoints(settings)
    assert listed[:3] == [str(cache / configs.CHECKPOINT_FILES[n]) for n in ("base40M-textvec", "upsample", "sdf")]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status = registry.availability(PointE(), "text", settings)
    assert status.ok, status.reason
    assert "local checkpoint" in status.reason


def test_offline_and_not_cached_is_unavailable_with_the_reason(cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status = registry.availability(PointE(), "image", PointEImageSettings(clip_checkpoint=str(cache.parent)))
    assert not status.ok
    assert "base_40m.pt" in status.reason and "offline" in status.reason


def test_checkpoint_directory_missing_a_file_is_unavailable(tmp_path):
    (tmp_path / "base_40m_textvec.pt").write_bytes(b"x")
    settings = PointETextSettings(checkpoint=str(tmp_path), clip_checkpoint=str(tmp_path))
    status = registry.availability(PointE(), "text", settings)
    assert not status.ok and "upsample_40m.pt" in status.reason


# ----------------------------------------------------------------------------- download and cache


@pytest.fixture
def served(tmp_path, monkeypatch, tiny_configs):
    """The tiny sdf checkpoint 'served' from a file:// URL."""
    source = save_checkpoint("sdf", tmp_path / "server")
    monkeypatch.setitem(configs.CHECKPOINT_URLS, "sdf", source.as_uri())
    return source


def test_download_into_cache_with_progress_and_checksum(cache, served):
    progress, path = drain(checkpoints.ensure("sdf"))
    assert path == cache / "sdf.pt" and path.read_bytes() == served.read_bytes()
    record = json.loads((cache / "sdf.pt.sha256").read_text())
    assert record["sha256"] == checkpoints.sha256_of(served) and record["size"] == served.stat().st_size
    assert all(p.stage == "download sdf" for p in progress)
    assert not list(cache.glob("*.tmp"))
    again, same = drain(checkpoints.ensure("sdf"))  # cached: no download
    assert same == path and again == []


def test_download_with_a_wrong_pinned_checksum_leaves_nothing(cache, served, monkeypatch):
    monkeypatch.setitem(configs.CHECKPOINT_SHA256, "sdf", "0" * 64)
    with pytest.raises(CheckpointError, match="sha256"):
        drain(checkpoints.ensure("sdf"))
    assert not (cache / "sdf.pt").exists() and not list(cache.glob("*.tmp"))


def test_unreachable_url_is_a_checkpoint_error(cache, monkeypatch):
    monkeypatch.setitem(configs.CHECKPOINT_URLS, "sdf", (cache.parent / "nowhere.pt").as_uri())
    with pytest.raises(CheckpointError, match="could not download"):
        drain(checkpoints.ensure("sdf"))


def test_offline_and_not_cached_refuses_to_download(cache, monkeypatch):
    monkeypatch.setenv("TRILEMMA_OFFLINE", "1")
    with pytest.raises(MethodUnavailable, match="not cached"):
        drain(checkpoints.ensure("sdf"))


def test_a_cached_file_changed_since_download_is_refused(cache, served):
    _, path = drain(checkpoints.ensure("sdf"))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated"):
        drain(checkpoints.ensure("sdf"))


def test_missing_file_in_a_checkpoint_directory(tmp_path):
    with pytest.raises(CheckpointError, match="upsample_40m.pt"):
        drain(checkpoints.ensure("upsample", str(tmp_path)))


# ----------------------------------------------------------------------------- loading


def test_load_official_layout_checkpoint(tmp_path, tiny_configs):
    path = save_checkpoint("upsample", tmp_path)
    model = checkpoints.load_model("upsample", path)
    assert not model.training and model.channel_scales.tolist() == pytest.approx(
        configs.MODEL_CONFIGS["upsample"]["channel_scales"]
    )


def test_truncated_checkpoint_is_a_clear_error(tmp_path, tiny_configs):
    path = save_checkpoint("sdf", tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        checkpoints.load_model("sdf", path)


def test_checkpoint_of_another_config_names_keys_and_config(tmp_path, tiny_configs):
    source = save_checkpoint("upsample", tmp_path)
    with pytest.raises(CheckpointError) as err:
        checkpoints.load_model("base40M", source)
    message = str(err.value)
    assert "does not fit Point-E base40M" in message
    assert "unexpected keys" in message and "cond_point_proj.weight" in message
    assert "it is a checkpoint of upsample" in message


def test_wrong_shapes_are_named(tmp_path, tiny_configs):
    state = build_model(configs.MODEL_CONFIGS["base40M"]).state_dict()
    state["ln_pre.weight"] = torch.zeros(7)
    torch.save(state, tmp_path / "base_40m.pt")
    with pytest.raises(CheckpointError, match=r"wrong shapes: ln_pre.weight: \[7\] != \[16\]"):
        checkpoints.load_model("base40M", tmp_path / "base_40m.pt")


def test_not_a_state_dict(tmp_path):
    torch.save([1, 2, 3], tmp_path / "sdf.pt")
    with pytest.raises(CheckpointError, match="state dict"):
        checkpoints.read_state_dict(tmp_path / "sdf.pt")


# ----------------------------------------------------------------------------- marching cubes


def _sphere_volume(grid: int, radius: float = 0.3, offset: float = 0.0):
    from methods.point_e.mesh import grid_coordinates

    coords = grid_coordinates(grid).numpy().T.reshape(grid, grid, grid, 3)
    return (radius - np.linalg.norm(coords, axis=-1) + offset).astype(np.float32)  # positive inside, as Point-E's


def test_marching_cubes_winds_faces_outwards_and_places_the_surface():
    from methods.point_e.mesh import marching_cubes

    verts, faces, notes = marching_cubes(_sphere_volume(32))
    assert notes == [] and len(faces) > 0
    normals = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    assert np.all(np.sum(normals * verts[faces].mean(1), axis=1) > 0)
    assert np.allclose(np.linalg.norm(verts, axis=1), 0.3, atol=0.01)


def test_one_signed_sdf_is_centred_and_a_constant_one_gives_no_mesh():
    from methods.point_e.mesh import marching_cubes

    _, faces, notes = marching_cubes(_sphere_volume(16, offset=5.0))
    assert len(faces) > 0 and "centred" in notes[0]
    verts, faces, notes = marching_cubes(np.ones((16, 16, 16), np.float32))
    assert len(verts) == len(faces) == 0 and "no mesh" in notes[0]
