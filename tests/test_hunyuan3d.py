"""Hunyuan3D-2mini without fixtures: config parsing, checkpoint resolution and strict loading, preprocessing edge
cases, the method run on a tiny checkpoint (all three variants), our fixes beside the official paths, the card."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from methods.base import CheckpointError, Inputs, InvalidInput, InvalidSettings
from methods.hunyuan3d import LICENCE_ID, Hunyuan3DMethod, Hunyuan3DSettings, checkpoints, pipeline, preprocess
from methods.hunyuan3d.config import parse_config
from tests.image_to_3d_helpers import counting, sampled_latents
from tests.tiny_hunyuan3d import SUBFOLDERS, build_tiny_hunyuan3d, config_yaml, reference_image


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("hunyuan3d")
    for variant in ("turbo", "mini"):
        build_tiny_hunyuan3d(root, variant)
    return root


def _run(method, inputs, settings):
    gen = method.run(inputs, settings)
    progress = []
    try:
        while True:
            progress.append(next(gen))
    except StopIteration as stop:
        return stop.value, progress


def test_config_refuses_what_it_cannot_build():
    text = config_yaml("turbo")
    config = parse_config(text)
    assert config.dit.guidance_embed and config.scheduler == "consistency" and config.pcm_timesteps == 100
    with pytest.raises(CheckpointError, match="model.target"):
        parse_config(text.replace("models.Hunyuan3DDiT", "models.SomethingElse"))
    with pytest.raises(CheckpointError, match="not valid YAML"):
        parse_config("model: [")
    with pytest.raises(CheckpointError, match="in_channels must equal vae.embed_dim"):
        parse_config(text.replace("in_channels: 8", "in_channels: 9"))


def test_checkpoint_resolution_and_strict_loading(tiny_root, tmp_path):
    assert checkpoints.resolve(str(tiny_root), "turbo") == tiny_root / SUBFOLDERS["turbo"]
    assert checkpoints.resolve(str(tiny_root / SUBFOLDERS["mini"]), "mini") == tiny_root / SUBFOLDERS["mini"]
    with pytest.raises(CheckpointError, match="has no config.yaml"):
        checkpoints.resolve(str(tmp_path), "turbo")
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoints.resolve(str(tmp_path / "nope"), "turbo")
    with pytest.raises(CheckpointError, match="fast"):  # a root without that variant's sub-folder
        checkpoints.resolve(str(tiny_root), "fast")
    model = checkpoints.load_model(str(tiny_root), "turbo", "cpu", torch.float32)
    assert model.model.latent_in.weight.dtype == torch.float32  # float16 file, float32 model
    state = model.state_dict()
    state["model.extra.weight"] = torch.zeros(1)
    del state["conditioner.main_image_encoder.model.layernorm.bias"]
    with pytest.raises(CheckpointError) as err:
        checkpoints.build(model.config, state)
    message = str(err.value)
    assert "1 missing keys (conditioner.main_image_encoder.model.layernorm.bias)" in message
    assert "1 unexpected keys (model.extra.weight)" in message


def test_hub_checkpoint_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    with pytest.raises(CheckpointError, match="hunyuan3d-dit-v2-mini-turbo cannot be fetched: it is not in the cache"):
        checkpoints.resolve("tencent/Hunyuan3D-2mini", "turbo")


def test_preprocessing_edge_cases():
    with pytest.raises(InvalidInput, match="1x1 pixels; at least 8x8"):
        preprocess.prepare(Image.new("RGBA", (1, 1), (255, 0, 0, 255)), 64)
    with pytest.raises(InvalidInput, match="no object found"):
        preprocess.prepare(Image.new("RGBA", (64, 64), (0, 0, 0, 0)), 64)
    # a one-pixel-thin object keeps its row (the official crop would drop it and divide by zero)
    thin = np.zeros((64, 64, 4), np.uint8)
    thin[30, 10:50] = (255, 0, 0, 255)
    pixels, shown, _ = preprocess.prepare(Image.fromarray(thin), 64)
    assert pixels.shape == (1, 3, 64, 64) and np.isfinite(pixels).all() and pixels.min() < 0.5
    # an opaque image on a plain background: the border colour is removed (no network segmentation)
    rgb = np.full((80, 80, 3), 250, np.uint8)
    rgb[20:60, 30:50] = (20, 40, 200)
    pixels, shown, notes = preprocess.prepare(Image.fromarray(rgb), 64)
    assert any("border colour" in n for n in notes) and np.asarray(shown)[0, 0].tolist() == [255, 255, 255]


def test_resamplers_match_their_definitions():
    """Area resize of constant images is exact; downscaling by 2 averages pairs; cubic keeps a constant."""
    img = np.full((10, 12, 3), 77, np.uint8)
    assert (preprocess.resize_area(img, 5, 4) == 77).all() and (preprocess.resize_area(img, 20, 17) == 77).all()
    ramp = np.arange(8, dtype=np.uint8).repeat(3).reshape(1, 8, 3).repeat(2, axis=0) * 10
    assert preprocess.resize_area(ramp, 4, 1)[0, :, 0].tolist() == [5, 25, 45, 65]
    assert (preprocess.resize_cubic(img, 7, 3) == 77).all()


def test_runs_every_variant_on_a_tiny_checkpoint(tiny_root):
    method = Hunyuan3DMethod()
    inputs = Inputs.from_image(reference_image())
    for variant in ("turbo", "mini"):
        settings = Hunyuan3DSettings(checkpoint=str(tiny_root), variant=variant, steps=2, grid_resolution=32)
        asset, progress = _run(method, inputs, settings)
        assert len(asset.mesh.faces) > 0 and asset.up == "+Y"
        assert sum(p.stage == "denoise" for p in progress) == 3  # start + one per step
        assert {"preprocess", "load", "encode", "denoise", "vae_decode", "decode_grid"} <= set(asset.stage_seconds)
        assert any("Community License" in n for n in asset.notes)
        assert asset.views["hunyuan3d_input"].size == (96, 96)
        v = asset.mesh.vertices
        assert v.min() >= -pipeline.BOX - 1e-6 and v.max() <= pipeline.BOX + 1e-6


def test_same_seed_same_mesh_and_faces_outward(tiny_root):
    method = Hunyuan3DMethod()
    inputs = Inputs.from_image(reference_image())
    settings = Hunyuan3DSettings(checkpoint=str(tiny_root), steps=2, grid_resolution=32, seed=7)
    a, _ = _run(method, inputs, settings)
    b, _ = _run(method, inputs, settings)
    assert np.array_equal(a.mesh.vertices, b.mesh.vertices) and np.array_equal(a.mesh.faces, b.mesh.faces)
    import trimesh

    mesh = trimesh.Trimesh(a.mesh.vertices, a.mesh.faces, process=False)
    # outward winding: the signed volume of a closed-ish surface is positive
    assert mesh.volume > 0


@torch.no_grad()
def test_coarse_to_fine_grid_keeps_the_dense_surface(tiny_root, monkeypatch):
    monkeypatch.setattr(pipeline, "COARSE_CELLS", 16)  # 16 -> 32 -> 64 (the app's starts at 64)
    model = checkpoints.load_model(str(tiny_root), "turbo", "cpu", torch.float32)
    pixels, _, _ = preprocess.prepare(reference_image(), model.config.image_size)
    cond, uncond = pipeline.encode(model, pixels)
    latents = pipeline.initial_latents(model, 0)
    latents = sampled_latents(pipeline, model, cond, uncond, latents, 2, 5.0)
    query = pipeline.field_query(model, latents)
    counted, calls = counting(query)
    dense = pipeline.field_grid(query, 64, 65536)
    fine = pipeline.field_grid(counted, 64, 65536, hierarchical=True)
    assert sum(calls) < 0.6 * 65**3  # fewer queries
    near = (dense.abs() < 0.5) | (fine.abs() < 0.5)
    assert torch.equal(dense > 0, fine > 0) or (((dense > 0) != (fine > 0)) & ~near).sum() == 0
    torch.testing.assert_close(fine[near], dense[near], atol=1e-4, rtol=0)


def test_settings_card_and_estimates():
    method = Hunyuan3DMethod()
    with pytest.raises(InvalidSettings, match="variant"):
        Hunyuan3DSettings(variant="large").validate()
    assert Hunyuan3DSettings().resolved_steps() == 5 and Hunyuan3DSettings(variant="mini").resolved_steps() == 30
    assert Hunyuan3DSettings(variant="fast", steps=12).resolved_steps() == 12
    spec = method.spec()
    assert "not licensed in the European Union, the United Kingdom or South Korea" in spec["licence"]
    assert "1 million monthly active users" in spec["licence"] and "improve any other AI model" in spec["licence"]
    assert method.licence_id == LICENCE_ID == "tencent-hunyuan-3d-2.0-community"
    turbo, mini = Hunyuan3DSettings(), Hunyuan3DSettings(variant="mini")
    assert method.estimate_seconds(mini, gpu=False) > method.estimate_seconds(turbo, gpu=False)
    assert method.checkpoints(method.default_settings("text"))[1] == "stable-diffusion-v1-5/stable-diffusion-v1-5"


@torch.no_grad()
def test_bfloat16_keeps_float32_query_coordinates(tiny_root):
    """A bfloat16 model still tells apart points closer than bfloat16's step near 1 (1/128): the Fourier features
    are computed from float32 coordinates before the cast (here 0.700 and 0.701, one bfloat16 value)."""
    model = checkpoints.load_model(str(tiny_root), "turbo", "cpu", torch.bfloat16)
    query = pipeline.field_query(model, pipeline.initial_latents(model, 0))
    points = torch.tensor([[0.700, 0.1, 0.2], [0.701, 0.1, 0.2]])
    assert points.to(torch.bfloat16)[0, 0] == points.to(torch.bfloat16)[1, 0]  # the same in bfloat16
    logits = query(points)
    assert logits.dtype == torch.float32 and logits[0] != logits[1]
