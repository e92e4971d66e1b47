"""Point-E end to end with tiny random models: CLIP conditioning through transformers, the run, bad input.

A tiny random ``CLIPModel`` and an offline ``CLIPTokenizer`` (byte-level vocabulary, no merges) stand in
for CLIP ViT-L/14; tiny Point-E models with the official classes and flags stand in for the checkpoints.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from PIL import Image

import methods
from methods import registry, runtime
from methods.base import Asset, CheckpointError, Inputs, InvalidInput, InvalidSettings, MethodUnavailable
from methods.point_e import configs
from methods.point_e.clip import CLIPConditioner, check_foreground, composite_on_white, preprocess
from methods.point_e.models import build_model
from tests.generators import drive
from tests.tiny_shap_e import byte_vocab

CLIP_TEXT_DIM, CLIP_WIDTH, CLIP_IMAGE, CLIP_PATCH = 16, 32, 32, 2  # a 16 x 16 patch grid, as ViT-L/14 at 224


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return build_tiny_clip_dir(tmp_path_factory.mktemp("tiny_clip"))


def build_tiny_clip_dir(folder):
    """A tiny random CLIPModel with an offline byte-level tokenizer, saved in ``folder``."""
    from transformers import CLIPConfig, CLIPModel

    vocab = byte_vocab()
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    text = {
        "vocab_size": len(vocab),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
        "bos_token_id": vocab["<|startoftext|>"],
        "eos_token_id": vocab["<|endoftext|>"],
        "pad_token_id": vocab["<|endoftext|>"],
    }
    vision = {
        "hidden_size": CLIP_WIDTH,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": CLIP_IMAGE,
        "patch_size": CLIP_PATCH,
    }
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=CLIP_TEXT_DIM)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip(clip_dir):
    return CLIPConditioner.from_pretrained(str(clip_dir))


def object_image(size=(48, 40), mode="RGBA") -> Image.Image:
    """A red disc on a transparent (RGBA) or white (RGB) background."""
    h, w = size[1], size[0]
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 3) ** 2
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[disc] = (200, 30, 30, 255)
    img = Image.fromarray(rgba, "RGBA")
    return img if mode == "RGBA" else composite_on_white(img)


# ----------------------------------------------------------------------------- CLIP


def test_text_embedding_is_the_normalised_projected_pooled_output(clip):
    out = clip.embed_text(["a red chair", "a small blue boat"])
    assert out.embeddings.shape == (2, CLIP_TEXT_DIM) and out.notes == []
    assert torch.allclose(out.embeddings.norm(dim=-1), torch.ones(2), atol=1e-6)
    tokens = clip.tokenizer(["a red chair"], return_tensors="pt")
    with torch.no_grad():
        pooled = clip.model.text_model(**tokens).pooler_output
        ref = clip.model.text_projection(pooled)
    assert torch.allclose(out.embeddings[0], ref[0] / ref[0].norm(), atol=1e-6)


def test_long_prompt_is_truncated_with_a_note(clip):
    prompt = " ".join(["chair"] * 40)  # 6 tokens per word with this byte-level vocabulary
    out = clip.embed_text([prompt])
    assert len(out.notes) == 1 and "truncated" in out.notes[0] and "77" in out.notes[0]
    short = clip.tokenizer(prompt, truncation=True, max_length=77)["input_ids"]
    assert len(short) == 77 and short[-1] == clip.tokenizer.eos_token_id


def test_empty_prompt_is_refused(clip):
    with pytest.raises(InvalidInput, match="empty"):
        clip.embed_text(["  "])


def test_image_grid_is_the_last_hidden_patch_tokens(clip):
    image = object_image()
    grid = clip.embed_images_grid([image])
    assert grid.shape == (1, CLIP_WIDTH, (CLIP_IMAGE // CLIP_PATCH) ** 2) and grid.dtype == torch.float32
    with torch.no_grad():
        out = clip.model.vision_model(pixel_values=preprocess(image, CLIP_IMAGE)[None], output_hidden_states=True)
    last = out.hidden_states[-1]  # the last encoder layer's output: before the post LayerNorm
    assert torch.allclose(grid, last[:, 1:].permute(0, 2, 1), atol=1e-6)  # the class token dropped


def test_preprocess_resizes_the_short_side_crops_and_whitens_transparency():
    pixels = preprocess(object_image((64, 40)), 32)
    assert pixels.shape == (3, 32, 32)
    corner = pixels[:, 0, 0]  # transparent -> white
    white = (1 - torch.tensor([0.48145466, 0.4578275, 0.40821073])) / torch.tensor([0.26862954, 0.26130258, 0.27577711])
    assert torch.allclose(corner, white, atol=1e-5)


def test_grayscale_and_16_bit_images_are_accepted(clip):
    from methods.point_e.pipeline import prepare_image

    disc = np.asarray(object_image(mode="RGB").convert("L"))
    grey16 = Image.fromarray((disc.astype(np.uint16) * 257), mode="I;16")
    for img in (Image.fromarray(disc, "L"), grey16):
        prepared = prepare_image(Inputs(modality="image", image=img))
        assert prepared.mode == "RGBA"
        assert torch.isfinite(clip.embed_images_grid([prepared])).all()


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGBA", (32, 32), (255, 0, 0, 0)),  # fully transparent
        Image.new("RGB", (32, 32), (255, 255, 255)),  # flat white
        Image.new("L", (32, 32), 90),  # flat grey
    ],
)
def test_an_image_with_no_foreground_is_refused(image):
    with pytest.raises(InvalidInput, match="no foreground"):
        check_foreground(image)


def test_an_image_with_an_object_passes():
    check_foreground(object_image())
    check_foreground(object_image(mode="RGB"))


# ----------------------------------------------------------------------------- end to end


def _tiny(name: str) -> dict:
    config = dict(configs.MODEL_CONFIGS[name])
    if name == "sdf":
        return config | {"width": 16, "encoder_layers": 1, "decoder_layers": 1, "encoder_heads": 2, "decoder_heads": 2}
    extra = {"clip_dim": CLIP_TEXT_DIM} if name == "base40M-textvec" else {"grid_dim": CLIP_WIDTH}
    return config | {"width": 16, "layers": 1, "heads": 2} | extra


@pytest.fixture
def tiny_point_e(tmp_path, monkeypatch, clip_dir):
    """Tiny random checkpoints in a directory, in the official file layout; settings pointing at them."""
    yield build_tiny_point_e(tmp_path, monkeypatch, clip_dir)
    runtime.release_models()


def build_tiny_point_e(tmp_path, monkeypatch, clip_dir) -> dict:
    """Tiny random checkpoints in ``tmp_path`` (their configs patched in), and the settings that load them."""
    monkeypatch.setattr(registry, "_discovered", True)
    for seed, name in enumerate(("base40M-textvec", "base40M", "upsample", "sdf")):
        config = _tiny(name)
        monkeypatch.setitem(configs.MODEL_CONFIGS, name, config)
        torch.manual_seed(seed)
        model = build_model(config)
        if hasattr(model, "output_proj") and name != "sdf":  # officially zero-initialised: give it a signal
            torch.nn.init.normal_(model.output_proj.weight, std=0.3)
        torch.save(model.state_dict(), tmp_path / configs.CHECKPOINT_FILES[name])
    return {"checkpoint": str(tmp_path), "clip_checkpoint": str(clip_dir), "steps": 2, "grid_size": 16}


def test_text_run_gives_a_coloured_cloud_and_mesh(tiny_point_e):
    progress, asset = _run(Inputs.text("a red chair"), tiny_point_e | {"seed": 3})
    assert isinstance(asset, Asset) and asset.up == "+Z"
    assert asset.points.points.shape == (configs.UPSAMPLED_POINTS, 3)
    assert asset.points.colors.shape == (configs.UPSAMPLED_POINTS, 3)
    assert asset.points.colors.min() >= 0 and asset.points.colors.max() <= 1
    assert len(asset.mesh.faces) > 0 and asset.mesh.vertex_colors.shape == asset.mesh.vertices.shape
    assert {"load", "clip", "base", "upsample", "mesh"} <= set(asset.stage_seconds)
    stages = [p.stage for p in progress]
    assert stages.index("load") < stages.index("clip") < stages.index("base") < stages.index("upsample")
    assert stages[-1] == "mesh"
    assert sum(1 for p in progress if p.stage == "base") == 3  # 2 steps + the final sample


def test_same_seed_same_cloud_other_seed_other_cloud(tiny_point_e):
    settings = tiny_point_e | {"upsample": False}
    _, a = _run(Inputs.text("a red chair"), settings | {"seed": 1})
    _, b = _run(Inputs.text("a red chair"), settings | {"seed": 1})
    _, c = _run(Inputs.text("a red chair"), settings | {"seed": 2})
    assert a.points.points.shape == (configs.BASE_POINTS, 3)
    assert np.array_equal(a.points.points, b.points.points) and np.array_equal(a.points.colors, b.points.colors)
    assert not np.array_equal(a.points.points, c.points.points)


def test_image_run(tiny_point_e):
    _, asset = _run(Inputs.from_image(object_image()), tiny_point_e)
    assert asset.points.points.shape == (configs.UPSAMPLED_POINTS, 3) and len(asset.mesh.faces) > 0


def test_long_prompt_note_reaches_the_asset(tiny_point_e):
    _, asset = _run(Inputs.text(" ".join(["chair"] * 40)), tiny_point_e | {"upsample": False})
    assert any("truncated" in note for note in asset.notes)


def test_poisson_mesh(tiny_point_e):
    settings = tiny_point_e | {"mesh_method": "poisson", "upsample": False}
    try:
        importable = importlib.util.find_spec("open3d") is not None and bool(__import__("open3d"))
    except ImportError:
        importable = False
    if not importable:
        with pytest.raises(MethodUnavailable, match="open3d"):
            _run(Inputs.text("a red chair"), settings)
        return
    _, asset = _run(Inputs.text("a red chair"), settings)
    assert len(asset.mesh.faces) > 0 and asset.mesh.vertex_colors is not None


@pytest.mark.parametrize(
    "inputs, error, match",
    [
        (Inputs(modality="text", prompt="   "), InvalidInput, "empty"),
        (Inputs(modality="image", image=Image.new("RGBA", (32, 32))), InvalidInput, "no foreground"),
        (Inputs(modality="image"), InvalidInput, "no image"),
    ],
)
def test_bad_input_fails_before_any_loading(tiny_point_e, inputs, error, match):
    method = registry.get("point-e")
    settings = method.default_settings(inputs.modality).replace(**tiny_point_e)
    with pytest.raises(error, match=match):
        drive(method.run(inputs, settings))
    assert runtime.cached_model_keys() == []


def test_text_with_an_image_model_size_is_refused(tiny_point_e):
    with pytest.raises(InvalidSettings, match="model_size"):
        _run(Inputs.text("a red chair"), tiny_point_e | {"model_size": "300M"})


def test_a_checkpoint_of_another_config_is_named(tiny_point_e, tmp_path):
    folder = tmp_path
    (folder / "sdf.pt").write_bytes((folder / "upsample_40m.pt").read_bytes())
    with pytest.raises(CheckpointError, match="does not fit Point-E sdf.*it is a checkpoint of upsample"):
        _run(Inputs.text("a red chair"), tiny_point_e)


def _run(inputs: Inputs, settings: dict):
    return drive(methods.run("point-e", inputs, settings))
