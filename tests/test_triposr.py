"""TripoSR as a method: tiny random checkpoints saved to temp folders and loaded through ``checkpoint``.

Covers the registry entry (light, both modalities), checkpoint resolution (folder, offline hub cache) and its
errors, the input handling (alpha, border colour, official foreground ratio), the run's asset (orientation,
colours, stages), the text -> image -> TripoSR path with a tiny Stable Diffusion, and bad input.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import methods
from methods import registry, runtime
from methods.base import Asset, CheckpointError, Inputs, MethodError
from methods.triposr import TripoSRSettings, TripoSRTextSettings, checkpoints, mesh, preprocess
from tests.generators import drive
from tests.image_to_3d_helpers import NO_OBJECT_IMAGES, check_fails_before_loading, offline_hub_cache
from tests.tiny_triposr import build_tiny_triposr, reference_image

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_triposr(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return build_tiny_triposr(tmp_path_factory.mktemp("triposr") / "tiny")


@pytest.fixture(autouse=True)
def _release():
    yield
    runtime.release_models()


def _run(inputs: Inputs, settings):
    return drive(methods.run("triposr", inputs, settings))


def _settings(checkpoint: Path, **extra) -> TripoSRSettings:
    return TripoSRSettings(checkpoint=str(checkpoint), **({"mc_resolution": 32} | extra))


# ----------------------------------------------------------------------------- registry


def test_listing_imports_no_torch_and_names_both_modalities():
    code = (
        "import sys; from methods import registry; rows = registry.listing(); "
        "row = [r for r in rows if r['id'] == 'triposr'][0]; "
        "assert row['modalities'] == ['image', 'text'], row; "
        "assert 'triposr' in registry.ids('image') and 'triposr' in registry.ids('text'); "
        "assert 'torch' not in sys.modules, 'listing imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={"PATH": "", "HF_HUB_OFFLINE": "1"})


def test_defaults_follow_the_hardware_and_the_modality(monkeypatch):
    method = registry.get("triposr")
    monkeypatch.setattr(runtime, "gpu_present", lambda: False)
    image = method.default_settings("image")
    assert type(image) is TripoSRSettings and image.mc_resolution == 128
    assert image.checkpoint == "stabilityai/TripoSR" and image.foreground_ratio == 0.85 and not image.bake_texture
    text = method.default_settings("text")
    assert isinstance(text, TripoSRTextSettings) and text.image_model == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert method.checkpoints(text) == ["stabilityai/TripoSR", text.image_model]
    monkeypatch.setattr(runtime, "gpu_present", lambda: True)
    assert method.default_settings("image").mc_resolution == 256


def test_hub_checkpoint_not_cached_offline_is_unavailable_with_the_reason(monkeypatch, tmp_path):
    offline_hub_cache(monkeypatch, tmp_path / "empty-cache")
    status = registry.availability("triposr", "image")
    assert not status.ok and "stabilityai/TripoSR" in status.reason and "HF_HUB_OFFLINE" in status.reason
    with pytest.raises(CheckpointError, match="not in the cache and downloads are offline"):
        checkpoints.resolve("stabilityai/TripoSR")


def test_hub_checkpoint_loads_from_the_cache_offline(monkeypatch, tmp_path, tiny_triposr):
    """The default path: hf_hub_download of config.yaml + model.ckpt, served from an HF cache with no network."""
    snapshot = offline_hub_cache(monkeypatch, tmp_path / "hub", "tiny/TripoSR", tiny_triposr)
    assert checkpoints.resolve("tiny/TripoSR") == snapshot
    status = registry.availability(registry.get("triposr"), "image", _settings("tiny/TripoSR"))
    assert status.ok and "in the Hugging Face cache" in status.reason
    _, asset = _run(Inputs.from_image(reference_image()), TripoSRSettings(checkpoint="tiny/TripoSR", mc_resolution=16))
    assert len(asset.mesh.faces) > 0


def test_local_folder_is_available(tiny_triposr):
    status = registry.availability(registry.get("triposr"), "image", _settings(tiny_triposr))
    assert status.ok and "local checkpoint" in status.reason


# ----------------------------------------------------------------------------- loading errors


def test_folder_without_config_yaml_is_named_without_its_path(tmp_path, tiny_triposr):
    folder = tmp_path / "weights-only"
    folder.mkdir()
    shutil.copy(tiny_triposr / "model.ckpt", folder / "model.ckpt")
    with pytest.raises(CheckpointError, match="weights-only has no config.yaml") as err:
        checkpoints.load_model(str(folder), "cpu", torch.float32)
    assert str(tmp_path) not in str(err.value)
    with pytest.raises(CheckpointError, match="no config.yaml"):  # the run says it before any work
        _run(Inputs.from_image(reference_image()), _settings(folder))


def test_checkpoint_with_missing_and_unexpected_keys_is_named(tmp_path, tiny_triposr):
    folder = tmp_path / "broken"
    shutil.copytree(tiny_triposr, folder)
    state = torch.load(folder / "model.ckpt", weights_only=True)
    del state["decoder.layers.0.bias"]
    state["decoder.extra.weight"] = torch.zeros(1)
    state["post_processor.upsample.bias"] = torch.zeros(3)
    torch.save(state, folder / "model.ckpt")
    with pytest.raises(CheckpointError) as err:
        checkpoints.load_model(str(folder), "cpu", torch.float32)
    message = str(err.value)
    assert "1 missing keys (decoder.layers.0.bias)" in message
    assert "1 unexpected keys (decoder.extra.weight)" in message
    assert "post_processor.upsample.bias (3,) != (8,)" in message


def test_config_of_another_model_is_refused(tmp_path, tiny_triposr):
    folder = tmp_path / "other"
    shutil.copytree(tiny_triposr, folder)
    text = (folder / "config.yaml").read_text().replace("NeRFMLP", "OtherMLP")
    (folder / "config.yaml").write_text(text)
    with pytest.raises(CheckpointError, match="decoder_cls"):
        checkpoints.load_model(str(folder), "cpu", torch.float32)


def test_loaded_model_saves_the_official_names_and_tensors(tiny_triposr):
    model = checkpoints.load_model(str(tiny_triposr), "cpu", torch.float32)
    state = torch.load(tiny_triposr / "model.ckpt", weights_only=True)
    saved = model.state_dict()
    assert list(saved) == list(state)
    assert all(torch.equal(saved[k], state[k]) for k in state)
    assert "image_tokenizer.model.encoder.layer.0.attention.attention.query.weight" in saved
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])


# ----------------------------------------------------------------------------- input


def test_alpha_cut_out_and_official_foreground_ratio():
    rgba = np.zeros((100, 120, 4), np.uint8)
    rgba[20:60, 30:50] = (10, 200, 10, 255)  # a 40 x 20 object
    cut, how = preprocess.cut_out(Image.fromarray(rgba, "RGBA"))
    assert how == "alpha"
    out = preprocess.resize_foreground(cut, 0.85)
    assert out.shape[:2] == (int(39 / 0.85),) * 2  # official crop drops the last row/column: 39 x 19
    ys, xs = np.nonzero(out[..., 3])
    assert ys.max() - ys.min() + 1 == 39 and abs((xs.min() + xs.max()) / 2 - (out.shape[1] - 1) / 2) <= 1
    grey = np.asarray(preprocess.composite_grey(out))
    assert tuple(grey[0, 0]) == (127, 127, 127)  # 0.5 * 255 truncated


def test_border_colour_background_is_removed():
    rgb = np.full((80, 80, 3), 245, np.uint8)
    rgb[30:50, 25:55] = (200, 40, 40)
    cut, how = preprocess.cut_out(Image.fromarray(rgb, "RGB"))
    assert how == "border colour"
    assert cut[..., 3].sum() == 255 * 20 * 30 and cut[40, 40, 3] == 255 and cut[5, 5, 3] == 0


def test_huge_image_is_downscaled_first():
    big = reference_image(3000)
    prepared, notes = preprocess.prepare(big)
    assert any("downscaled from 3000x3000 to 2048x2048" in n for n in notes)
    assert prepared.mode == "RGB" and prepared.width == prepared.height


@pytest.mark.parametrize(
    ("image", "match"),
    NO_OBJECT_IMAGES
    + [
        (Image.new("RGB", (1, 1), (20, 200, 30)), "1x1 pixels; at least 8x8"),
    ],
)
def test_bad_images_fail_before_loading(image, match, tmp_path):
    missing = tmp_path / "never-loaded"  # the checkpoint does not exist: the input must fail first
    missing.mkdir()
    check_fails_before_loading(_run, image, match, _settings(missing))


# ----------------------------------------------------------------------------- the run


def test_image_run_gives_a_coloured_mesh_in_our_frame(tiny_triposr):
    progress, asset = _run(Inputs.from_image(reference_image()), _settings(tiny_triposr, seed=5))
    assert isinstance(asset, Asset) and asset.up == "+Y" and asset.mesh is not None
    assert len(asset.mesh.faces) > 0 and asset.mesh.vertex_colors.shape == asset.mesh.vertices.shape
    assert np.abs(asset.mesh.vertices).max() <= 0.87 + 1e-6
    stages = {"preprocess", "load", "encode", "decode_grid", "marching_cubes", "vertex_colors"}
    assert set(asset.stage_seconds) == stages
    assert [p.stage for p in progress][0] == "load"
    assert isinstance(asset.views["triposr_input"], Image.Image)

    # the same mesh straight from the parts, in the official frame: ours is (y, z, x) of it
    model = checkpoints.load_model(str(tiny_triposr), "cpu", torch.float32)
    prepared, _ = preprocess.prepare(reference_image())
    from methods.triposr.pipeline import scene_codes

    planes = scene_codes(model, prepared, "cpu", torch.float32)[0]
    raw = mesh.extract_mesh(model, planes, 32)
    np.testing.assert_allclose(asset.mesh.vertices, raw.vertices[:, [1, 2, 0]], atol=1e-6)
    np.testing.assert_allclose(asset.mesh.vertex_colors, raw.colors, atol=1e-6)


def test_deterministic_and_seed_is_only_recorded(tiny_triposr):
    _, a = _run(Inputs.from_image(reference_image()), _settings(tiny_triposr, seed=1))
    _, b = _run(Inputs.from_image(reference_image()), _settings(tiny_triposr, seed=2))
    np.testing.assert_array_equal(a.mesh.vertices, b.mesh.vertices)


def test_chunking_does_not_change_the_grid(tiny_triposr):
    model = checkpoints.load_model(str(tiny_triposr), "cpu", torch.float32)
    planes = torch.randn(3, 8, 12, 12)
    whole = mesh.density_grid(model, planes, 20, chunk_size=0)
    chunked = mesh.density_grid(model, planes, 20, chunk_size=777)
    np.testing.assert_allclose(chunked, whole, rtol=1e-6)


@pytest.mark.parametrize("activation", ["silu", "relu"])
@pytest.mark.parametrize("chunk_size", [0, 7, 777])
def test_grid_density_equals_the_decoder_at_each_grid_point(tiny_triposr, activation, chunk_size):
    """The factored grid (planes sampled per row, first layer split per plane) against the plain path."""
    from methods.triposr.model import NeRFMLP

    model = checkpoints.load_model(str(tiny_triposr), "cpu", torch.float32)
    config = model.config
    torch.manual_seed(1)
    model.decoder = NeRFMLP(config.decoder_in_channels, 16, 3, activation).eval()
    planes = torch.randn(3, config.triplane_channels, 12, 12)
    res = 11
    axis = mesh.grid_axis(res, config.radius)
    points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    with torch.no_grad():
        expected = model.density(planes, points).reshape(res, res, res)
    grid = mesh.density_grid(model, planes, res, chunk_size=chunk_size)
    assert grid.shape == (res, res, res) and grid.dtype == np.float32
    torch.testing.assert_close(torch.from_numpy(grid), expected, atol=1e-6, rtol=1e-5)


def test_inference_backbone_equals_the_autograd_one(tiny_triposr):
    """In-place residuals and gating (grad disabled) give the same tokens as the differentiable path."""
    model = checkpoints.load_model(str(tiny_triposr), "cpu", torch.float32)
    torch.manual_seed(2)
    image_tokens = torch.randn(1, 5, model.config.cross_attention_dim)
    with torch.enable_grad():
        expected = model.backbone_tokens(image_tokens)
    assert expected.requires_grad
    with torch.inference_mode():
        tokens = model.backbone_tokens(image_tokens)
    torch.testing.assert_close(tokens, expected.detach(), atol=0, rtol=0)


def test_no_surface_is_a_clear_error():
    with pytest.raises(MethodError, match="found no surface"):
        mesh.marching_cubes(np.zeros((8, 8, 8), np.float32), 0.87)


# ----------------------------------------------------------------------------- text -> image -> TripoSR


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    from tests.tiny_sd import build_stable_diffusion

    return build_stable_diffusion(tmp_path_factory.mktemp("sd") / "pipeline")


def test_text_runs_in_two_stages(tiny_triposr, tiny_sd):
    settings = TripoSRTextSettings(
        checkpoint=str(tiny_triposr), image_model=str(tiny_sd), image_steps=2, mc_resolution=32
    )
    progress, asset = _run(Inputs.text("a red mug"), settings)
    image = asset.views["text_to_image"]
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    assert "white background" in asset.views["text_to_image_prompt"]
    previews = [p.preview for p in progress if p.preview is not None]
    assert len(previews) == 1 and np.array_equal(previews[0], np.asarray(image))
    assert {"load_image_model", "text_to_image", "preprocess", "encode", "decode_grid"} <= set(asset.stage_seconds)
    assert len(asset.mesh.faces) > 0
    assert any("two stages" in n for n in asset.notes)


def test_text_with_a_folder_that_is_not_a_pipeline(tiny_triposr, tmp_path):
    settings = TripoSRTextSettings(checkpoint=str(tiny_triposr), image_model=str(tmp_path), mc_resolution=32)
    with pytest.raises(CheckpointError, match="no model_index.json"):
        _run(Inputs.text("a red mug"), settings)


# ----------------------------------------------------------------------------- texture baking


class _PositionColours:
    """Stands in for the decoder in bake_texture: colour = the point's position mapped from [-1, 1] to [0, 1]."""

    def query(self, planes, points, chunk_size=0):
        return {"color": (points.float() + 1.0) / 2.0}


def test_baked_texture_holds_the_colour_at_each_surface_point():
    pytest.importorskip("xatlas")
    sphere = mesh_sphere()
    planes = torch.zeros(3, 1, 2, 2)  # unused by the stand-in; gives the device
    verts, faces, uv, texture = mesh.bake_texture(_PositionColours(), planes, *sphere, resolution=256)
    assert texture.shape == (256, 256, 3) and len(uv) == len(verts) and faces.max() < len(verts)
    centre_uv, centre = uv[faces].mean(axis=1), verts[faces].mean(axis=1)  # triangle interiors, not seams
    cols = np.clip((centre_uv[:, 0] * 256).astype(int), 0, 255)
    rows = np.clip(((1.0 - centre_uv[:, 1]) * 256).astype(int), 0, 255)
    np.testing.assert_allclose(texture[rows, cols], (centre + 1.0) / 2.0, atol=0.02)


def mesh_sphere():
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=3, radius=0.6)
    return np.asarray(s.vertices, np.float32), np.asarray(s.faces, np.int64)


def test_bake_texture_run_gives_a_textured_mesh(tiny_triposr):
    pytest.importorskip("xatlas")
    _, asset = _run(Inputs.from_image(reference_image()), _settings(tiny_triposr, mc_resolution=16, bake_texture=True))
    assert asset.mesh.texture is not None and asset.mesh.uv is not None and asset.mesh.vertex_colors is None
    assert "bake_texture" in asset.stage_seconds and "vertex_colors" not in asset.stage_seconds


def test_float16_network_float32_decoder(tiny_triposr):
    """The CUDA configuration (float16 network, float32 NeRF decoder), run on the CPU: close to float32."""
    from methods.triposr.pipeline import scene_codes

    prepared, _ = preprocess.prepare(reference_image())
    full = checkpoints.load_model(str(tiny_triposr), "cpu", torch.float32)
    half = checkpoints.load_model(str(tiny_triposr), "cpu", torch.float16)
    assert half.backbone.proj_in.weight.dtype == torch.float16 and half.decoder.layers[0].weight.dtype == torch.float32
    a = scene_codes(full, prepared, "cpu", torch.float32)
    b = scene_codes(half, prepared, "cpu", torch.float16)
    assert b.dtype == torch.float32
    torch.testing.assert_close(b, a, atol=0.02 * float(a.abs().max()), rtol=0.0)
    density = mesh.density_grid(half, b[0], 16)
    assert density.dtype == np.float32 and np.isfinite(density).all()


@pytest.mark.parametrize("n_views", [1, 3, 4])
def test_cameras_look_at_the_origin_for_any_view_count(n_views):
    """The official torch.cross without dim crosses along the views axis when n_views == 3; ours does not."""
    from methods.triposr import render

    rays_o, rays_d = render.spherical_cameras(n_views, 20.0, 1.9, 40.0, 2, 2)  # 2 x 2: the centre is a corner
    centre = rays_d.mean(dim=(1, 2))
    to_origin = -rays_o[:, 0, 0] / rays_o[:, 0, 0].norm(dim=-1, keepdim=True)
    torch.testing.assert_close(centre / centre.norm(dim=-1, keepdim=True), to_origin, atol=1e-6, rtol=0)
    torch.testing.assert_close(rays_o[:, 0, 0].norm(dim=-1), torch.full((n_views,), 1.9), atol=1e-6, rtol=0)
    up = rays_d[:, 0, :].mean(dim=1) - rays_d[:, 1, :].mean(dim=1)  # top row minus bottom row: image up
    assert (up[:, 2] > 0).all()  # +Z is up in every view
