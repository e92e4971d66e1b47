"""TripoSG as a method, with a tiny random-weight checkpoint in the released layout (tests/tiny_triposg.py).

Covers the registry entry (light, both modalities), checkpoint resolution (folder, offline hub cache) and its
errors (no model_index.json, missing / unexpected / mis-shaped keys, a config field TripoSG does not have),
bad input before any loading, the image run (progress per flow step, outward faces, determinism by seed,
coarse-to-fine equal to dense near the surface, bfloat16), and the two-stage text path with a tiny Stable
Diffusion. Parity with the official code is tests/test_triposg_parity.py.
"""

from __future__ import annotations

import json
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
from methods.base import Asset, CheckpointError, Inputs, InvalidInput
from methods.triposg import TripoSGSettings, TripoSGTextSettings, checkpoints, pipeline
from tests.image_to_3d_helpers import (
    NO_OBJECT_IMAGES,
    check_fails_before_loading,
    counting,
    offline_hub_cache,
    sampled_latents,
)
from tests.tiny_triposg import TINY_TOKENS, build_tiny_triposg, reference_image

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_triposg(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return build_tiny_triposg(tmp_path_factory.mktemp("triposg") / "tiny")


@pytest.fixture(autouse=True)
def _release():
    yield
    runtime.release_models()


def _run(inputs: Inputs, settings):
    gen = methods.run("triposg", inputs, settings)
    progress = []
    while True:
        try:
            progress.append(next(gen))
        except StopIteration as stop:
            return progress, stop.value


def _settings(checkpoint, **extra) -> TripoSGSettings:
    base = {"steps": 3, "grid_resolution": 32, "num_tokens": TINY_TOKENS, "chunk_size": 4096}
    return TripoSGSettings(checkpoint=str(checkpoint), **(base | extra))


# ----------------------------------------------------------------------------- registry


def test_listing_imports_no_torch_and_names_both_modalities():
    code = (
        "import sys; from methods import registry; rows = registry.listing(); "
        "assert 'triposg' in registry.ids('image') and 'triposg' in registry.ids('text'); "
        "assert 'torch' not in sys.modules, 'listing imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_defaults_follow_the_hardware_and_the_modality(monkeypatch):
    method = registry.get("triposg")
    monkeypatch.setattr(runtime, "gpu_present", lambda: False)
    image = method.default_settings("image")
    assert image.grid_resolution == 128 and image.steps == 50 and image.guidance_scale == 7.0
    assert image.checkpoint == "VAST-AI/TripoSG" and image.num_tokens == 2048
    monkeypatch.setattr(runtime, "gpu_present", lambda: True)
    text = method.default_settings("text")
    assert isinstance(text, TripoSGTextSettings) and text.grid_resolution == 256
    assert method.checkpoints(text) == ["VAST-AI/TripoSG", text.image_model]
    assert method.estimate_seconds(text, gpu=False) > method.estimate_seconds(image, gpu=False)


def test_hub_checkpoint_not_cached_offline_is_unavailable_with_the_reason(monkeypatch, tmp_path):
    offline_hub_cache(monkeypatch, tmp_path / "empty-cache")
    status = registry.availability("triposg", "image")
    assert not status.ok and "VAST-AI/TripoSG" in status.reason and "HF_HUB_OFFLINE" in status.reason
    with pytest.raises(CheckpointError, match="not in the cache and downloads are offline"):
        checkpoints.resolve("VAST-AI/TripoSG")


def test_hub_checkpoint_loads_from_the_cache_offline(monkeypatch, tmp_path, tiny_triposg):
    """The default path: snapshot_download of the configs and weights, served from an HF cache with no network."""
    snapshot = offline_hub_cache(monkeypatch, tmp_path / "hub", "tiny/TripoSG", tiny_triposg)
    assert checkpoints.resolve("tiny/TripoSG") == snapshot
    status = registry.availability(registry.get("triposg"), "image", _settings("tiny/TripoSG"))
    assert status.ok and "in the Hugging Face cache" in status.reason
    _, asset = _run(Inputs.from_image(reference_image()), _settings("tiny/TripoSG", grid_resolution=16))
    assert len(asset.mesh.faces) > 0


# ----------------------------------------------------------------------------- loading errors


def test_folder_without_config_is_named_without_its_path(tmp_path, tiny_triposg):
    folder = tmp_path / "weights-only"
    shutil.copytree(tiny_triposg / "transformer", folder / "transformer")
    with pytest.raises(CheckpointError, match="weights-only has no model_index.json") as err:
        checkpoints.load_model(str(folder))
    assert str(tmp_path) not in str(err.value)
    with pytest.raises(CheckpointError, match="no model_index.json"):
        _run(Inputs.from_image(reference_image()), _settings(folder))
    (folder / "model_index.json").write_text("{}")
    with pytest.raises(CheckpointError, match="does not list image_encoder_dinov2"):
        checkpoints.load_model(str(folder))
    shutil.copy(tiny_triposg / "model_index.json", folder / "model_index.json")
    with pytest.raises(CheckpointError, match="no vae/config.json") as err:
        checkpoints.load_model(str(folder))
    assert str(tmp_path) not in str(err.value)


def test_checkpoint_with_missing_and_unexpected_keys_is_named(tmp_path, tiny_triposg):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "broken"
    shutil.copytree(tiny_triposg, folder)
    path = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    state = load_file(path)
    del state["blocks.0.attn1.norm_q.weight"]
    state["blocks.0.extra.weight"] = torch.zeros(1)
    state["proj_out.bias"] = torch.zeros(3)
    save_file(state, path)
    with pytest.raises(CheckpointError) as err:
        checkpoints.load_model(str(folder))
    message = str(err.value)
    assert message.startswith("transformer does not match its config")
    assert "1 missing keys (blocks.0.attn1.norm_q.weight)" in message
    assert "1 unexpected keys (blocks.0.extra.weight)" in message
    assert "proj_out.bias (3,) != (8,)" in message
    # DINOv2 is checked with the released (transformers-4.x) names
    path = folder / "image_encoder_dinov2" / "model.safetensors"
    dino = load_file(path)
    dino.pop("encoder.layer.0.attention.attention.query.weight")
    save_file(dino, path)
    with pytest.raises(CheckpointError, match=r"image_encoder_dinov2 .*encoder.layer.0.attention.attention.query"):
        checkpoints.load_model(str(folder))


def test_config_field_triposg_does_not_have_is_refused(tmp_path, tiny_triposg):
    folder = tmp_path / "other"
    shutil.copytree(tiny_triposg, folder)
    config = json.loads((folder / "vae" / "config.json").read_text())
    (folder / "vae" / "config.json").write_text(json.dumps(config | {"num_decoder_experts": 4}))
    with pytest.raises(CheckpointError, match="vae/config.json has an unknown field num_decoder_experts"):
        checkpoints.load_model(str(folder))
    (folder / "vae" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="vae/config.json is not valid JSON"):
        checkpoints.load_model(str(folder))


def test_loaded_model_saves_the_released_names_and_tensors(tiny_triposg):
    from safetensors.torch import load_file

    model = checkpoints.load_model(str(tiny_triposg))
    for component, net in (("transformer", model.dit), ("vae", model.vae)):
        state = load_file(tiny_triposg / component / "diffusion_pytorch_model.safetensors")
        saved = net.state_dict()
        assert set(saved) == set(state) and all(torch.equal(saved[k], state[k]) for k in state)
    dino = load_file(tiny_triposg / "image_encoder_dinov2" / "model.safetensors")
    saved = model.dino.released_state_dict()
    assert set(saved) == set(dino) and all(torch.equal(saved[k], dino[k]) for k in dino)
    assert not any(t.is_meta for net in (model.dino, model.dit, model.vae) for t in [*net.parameters(), *net.buffers()])


# ----------------------------------------------------------------------------- input


def test_alpha_and_border_cut_outs_give_the_white_padded_square():
    from methods.triposg import preprocess

    rgba = np.zeros((100, 120, 4), np.uint8)
    rgba[20:60, 30:110] = (200, 40, 40, 255)  # an 80 x 40 object
    prepared, notes = preprocess.prepare(Image.fromarray(rgba, "RGBA"))
    # 10% of the longer side (8) left and right; the shorter side padded to match: 8 + 20 = 28 above and below
    assert prepared.size == (96, 96)
    arr = np.asarray(prepared)
    assert (arr[:28] == 255).all() and (arr[:, :8] == 255).all()
    assert (arr[28:68, 8:88] == (200, 40, 40)).all()
    assert "alpha" in notes[0]
    plain = np.full((100, 120, 3), (30, 160, 40), np.uint8)
    plain[20:60, 30:110] = (200, 40, 40)
    border, notes = preprocess.prepare(Image.fromarray(plain))
    assert "border colour" in notes[0] and border.size == prepared.size


@pytest.mark.parametrize(
    ("image", "match"),
    NO_OBJECT_IMAGES
    + [
        (Image.new("RGB", (1, 1), (20, 200, 30)), "1x1"),
        (Image.new("RGB", (12, 40), (20, 200, 30)), "12x40 px; TripoSG needs at least 16"),
    ],
)
def test_bad_images_fail_before_loading(image, match, tmp_path):
    missing = tmp_path / "never-loaded"  # the checkpoint does not exist: the input must fail first
    missing.mkdir()
    check_fails_before_loading(_run, image, match, _settings(missing))


# ----------------------------------------------------------------------------- the run


def test_image_run_gives_an_outward_mesh_with_progress_per_step(tiny_triposg):
    progress, asset = _run(Inputs.from_image(reference_image()), _settings(tiny_triposg, seed=5))
    assert isinstance(asset, Asset) and asset.up == "+Y" and asset.mesh is not None
    vertices, faces = asset.mesh.vertices, asset.mesh.faces
    assert len(faces) > 0 and np.abs(vertices).max() <= 1.005 + 1e-6
    assert set(asset.stage_seconds) == {"preprocess", "load", "encode", "denoise", "vae_decode", "decode_grid",
                                        "marching_cubes"}  # fmt: skip
    steps = [p.message for p in progress if p.stage == "denoise" and p.message.startswith("step ")]
    assert steps == ["step 1/3", "step 2/3", "step 3/3"]
    assert isinstance(asset.views["triposg_input"], Image.Image)

    # the same mesh from the parts; faces reversed from skimage's so the right-hand normals point outwards
    model = checkpoints.load_model(str(tiny_triposg))
    prepared = asset.views["triposg_input"]
    cond, uncond = pipeline.encode(model, prepared)
    latents = pipeline.initial_latents(model, 5, TINY_TOKENS)
    for step in pipeline.denoise(model, cond, uncond, latents, 3, 7.0):
        latents = step.latents
    grid = pipeline.field_grid(pipeline.field_query(model, latents), 32, 0)
    v, f = pipeline.extract_mesh(grid)
    np.testing.assert_allclose(vertices, v, atol=1e-6)
    np.testing.assert_array_equal(faces, f)
    official_v, official_f = pipeline.extract_mesh(grid, official_depth=5)
    np.testing.assert_array_equal(official_f, f[:, ::-1])


def test_seed_changes_the_shape_and_fixes_it(tiny_triposg):
    _, a = _run(Inputs.from_image(reference_image()), _settings(tiny_triposg, seed=1))
    _, b = _run(Inputs.from_image(reference_image()), _settings(tiny_triposg, seed=1))
    _, c = _run(Inputs.from_image(reference_image()), _settings(tiny_triposg, seed=2))
    np.testing.assert_array_equal(a.mesh.vertices, b.mesh.vertices)
    assert a.mesh.vertices.shape != c.mesh.vertices.shape or not np.array_equal(a.mesh.vertices, c.mesh.vertices)


def test_guidance_one_runs_a_single_batch(tiny_triposg):
    model = checkpoints.load_model(str(tiny_triposg))
    cond, uncond = pipeline.encode(model, reference_image())
    latents = pipeline.initial_latents(model, 0, TINY_TOKENS)
    unguided = [s.raw.shape[0] for s in pipeline.denoise(model, cond, uncond, latents, 2, 1.0)]
    guided = [s.raw.shape[0] for s in pipeline.denoise(model, cond, uncond, latents, 2, 7.0)]
    assert unguided == [1, 1] and guided == [2, 2]


def test_coarse_to_fine_grid_equals_the_dense_one_near_the_surface(tiny_triposg, monkeypatch):
    model = checkpoints.load_model(str(tiny_triposg))
    cond, uncond = pipeline.encode(model, reference_image())
    latents = pipeline.initial_latents(model, 3, TINY_TOKENS)
    latents = sampled_latents(pipeline, model, cond, uncond, latents, 2, 7.0)
    query = pipeline.field_query(model, latents)
    counted, calls = counting(query)
    assert pipeline.coarse_cells(512, True) == 64 and pipeline.coarse_cells(128, False) == 128
    monkeypatch.setattr(pipeline, "COARSE_CELLS", 16)  # 16 -> 32 -> 64 keeps the test small
    dense = pipeline.field_grid(query, 64, 8192, hierarchical=False)
    fine = pipeline.field_grid(counted, 64, 8192, hierarchical=True)
    assert sum(calls) < 0.6 * 65**3
    near = dense.abs() < 0.5
    torch.testing.assert_close(fine[near], dense[near], atol=1e-5, rtol=1e-5)
    # the sign (inside / outside) agrees everywhere but a sliver of cells
    assert ((fine > 0) != (dense > 0)).float().mean() < 1e-3


def test_bfloat16_runs_and_stays_close_to_float32(tiny_triposg):
    f32 = checkpoints.load_model(str(tiny_triposg), "cpu", torch.float32)
    bf16 = checkpoints.load_model(str(tiny_triposg), "cpu", torch.bfloat16)
    assert next(bf16.dit.parameters()).dtype == torch.bfloat16
    out = {}
    for name, model in (("f32", f32), ("bf16", bf16)):
        cond, uncond = pipeline.encode(model, reference_image())
        latents = pipeline.initial_latents(model, 0, TINY_TOKENS)
        step = next(iter(pipeline.denoise(model, cond, uncond, latents, 2, 1.0)))
        out[name] = (cond.float(), step.latents.float())
    torch.testing.assert_close(out["bf16"][0], out["f32"][0], atol=0.1, rtol=0.05)
    torch.testing.assert_close(out["bf16"][1], out["f32"][1], atol=0.1, rtol=0.05)


def test_bfloat16_field_keeps_float32_coordinates(tiny_triposg):
    """bfloat16 coordinates in [0.5, 1) are 2**-8 apart (half a cell of a 512 grid): the features stay float32."""
    model = checkpoints.load_model(str(tiny_triposg), "cpu", torch.bfloat16)
    latents = pipeline.initial_latents(model, 0, TINY_TOKENS)
    x = torch.tensor([0.9600, 0.9610, 0.9620])
    assert len(set(x.to(torch.bfloat16).tolist())) == 1  # one bfloat16 value for the three
    points = torch.stack([x, torch.full_like(x, 0.3), torch.full_like(x, -0.2)], dim=-1)
    query = pipeline.field_query(model, latents)
    logits = query(points)
    snapped = query(points.to(torch.bfloat16).float())  # what casting the points to the model's dtype gives
    assert torch.isfinite(logits).all() and len(set(snapped.tolist())) == 1 and len(set(logits.tolist())) > 1


# ----------------------------------------------------------------------------- text -> image -> TripoSG


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    from tests.tiny_sd import build_stable_diffusion

    return build_stable_diffusion(tmp_path_factory.mktemp("sd") / "pipeline")


def test_text_runs_in_two_stages(tiny_triposg, tiny_sd):
    base = {"steps": 2, "grid_resolution": 32, "num_tokens": TINY_TOKENS}
    settings = TripoSGTextSettings(checkpoint=str(tiny_triposg), image_model=str(tiny_sd), image_steps=2, **base)
    progress, asset = _run(Inputs.text("a red mug"), settings)
    image = asset.views["text_to_image"]
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    previews = [p.preview for p in progress if p.preview is not None]
    assert len(previews) == 1 and np.array_equal(previews[0], np.asarray(image))
    assert {"text_to_image", "preprocess", "encode", "denoise", "decode_grid"} <= set(asset.stage_seconds)
    assert len(asset.mesh.faces) > 0
    assert any("two stages" in n and "TripoSG" in n for n in asset.notes)


def test_empty_prompt_and_a_folder_that_is_not_a_pipeline(tiny_triposg, tmp_path):
    settings = TripoSGTextSettings(checkpoint=str(tiny_triposg), image_model=str(tmp_path), grid_resolution=32)
    with pytest.raises(InvalidInput, match="prompt is empty"):
        _run(Inputs(modality="text", prompt="  "), settings)
    with pytest.raises(CheckpointError, match="no model_index.json"):
        _run(Inputs.text("a red mug"), settings)
