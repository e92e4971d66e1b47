"""Shap-E through methods.run on tiny random-weight checkpoints, in the manner of diffusers' pipeline tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import methods
from methods import CheckpointError, Inputs, InvalidInput, InvalidSettings, MethodError, MethodUnavailable, runtime
from methods.shap_e import ShapE, prepare_image
from tests.generators import drive

ROOT = Path(__file__).resolve().parents[1]
CACTUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "images" / "threestudio" / "cactus_rgba.png"
FAST = {"num_inference_steps": 2, "frame_size": 32}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_text(checkpoint: Path, prompt: str = "a red chair", **settings) -> tuple[list, methods.Asset]:
    return drive(methods.run("shap-e", Inputs.text(prompt), {"checkpoint": str(checkpoint), **FAST, **settings}))


def run_image(checkpoint: Path, image: Image.Image, **settings) -> tuple[list, methods.Asset]:
    inputs = Inputs.from_image(image, name="test.png")
    return drive(methods.run("shap-e", inputs, {"checkpoint": str(checkpoint), **FAST, **settings}))


def disk_on(background: tuple[int, int, int], size: tuple[int, int] = (200, 120)) -> Image.Image:
    """A red disk of radius 30 centred at (140, 60) on a plain background."""
    width, height = size
    rows, cols = np.mgrid[:height, :width]
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[:] = background
    pixels[(rows - 60) ** 2 + (cols - 140) ** 2 < 30**2] = (200, 30, 30)
    return Image.fromarray(pixels)


# ----------------------------------------------------------------------------- spec and settings


PIN_COUNT = 1e-3  # relative: a few vertices of tens of thousands move with the CPU's rounding
PIN_VERTEX = 1e-3  # a grid cell here is 0.06
PIN_COLOUR = 1e-2  # another prompt (same seed) moves the count by 0.5 % and these colours by 0.16


def close_count(got: int, pinned: int) -> bool:
    return abs(got - pinned) <= PIN_COUNT * pinned


def test_importing_the_method_imports_no_torch() -> None:
    code = "import sys, methods.shap_e; print(sorted({'torch', 'diffusers', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_spec_and_per_modality_defaults() -> None:
    method = ShapE()
    assert method.spec()["id"] == "shap-e" and method.modalities == ("text", "image")
    assert method.Settings is ShapE.ShapESettings
    text, image = method.default_settings("text"), method.default_settings("image")
    assert (text.checkpoint, text.guidance_scale) == ("openai/shap-e", 15.0)
    assert (image.checkpoint, image.guidance_scale) == ("openai/shap-e-img2img", 3.0)
    assert text.num_inference_steps == 64 and text.frame_size % 32 == 0 and image.remove_background is True
    names = [row["name"] for row in ShapE.Settings.describe()]
    assert names == [
        "seed",
        "checkpoint",
        "guidance_scale",
        "num_inference_steps",
        "frame_size",
        "remove_background",
        "precision",
    ]


def test_frame_size_must_be_a_multiple_of_32(tiny_shap_e_text: Path) -> None:
    with pytest.raises(InvalidSettings, match="multiple of 32"):
        run_text(tiny_shap_e_text, frame_size=48)
    with pytest.raises(InvalidSettings, match="above its maximum"):
        ShapE.Settings.from_dict({"num_inference_steps": 257})


# ----------------------------------------------------------------------------- text


def test_text_run_gives_a_coloured_mesh_and_reports_every_stage(tiny_shap_e_text: Path) -> None:
    events, asset = run_text(tiny_shap_e_text)
    mesh = asset.mesh
    assert asset.kind == "mesh" and asset.up == "+Z"
    assert mesh.vertices.ndim == 2 and mesh.vertices.shape[1] == 3 and len(mesh.vertices) > 100
    assert mesh.faces.shape[1] == 3 and mesh.faces.max() < len(mesh.vertices)
    assert np.abs(mesh.vertices).max() <= 1.0  # the decoding volume is [-1, 1]^3
    assert mesh.vertex_colors.shape == mesh.vertices.shape
    assert mesh.vertex_colors.min() >= 0.0 and mesh.vertex_colors.max() <= 1.0 and mesh.vertex_colors.std() > 0
    assert set(asset.stage_seconds) == {"load", "sample", "decode"}
    stages = [e.stage for e in events]
    order = ["load", "sample", "decode"]
    assert stages[0] == "load" and stages[-1] == "decode" and stages == sorted(stages, key=order.index)
    samples = [e.fraction for e in events if e.stage == "sample" and e.fraction]
    assert len(samples) == 3 and samples == sorted(samples) and samples[-1] == pytest.approx(1.0)  # Heun: 2n-1
    # pinned from this tiny checkpoint (seed 0): the counts, and the first vertices (x is interpolated) and colours.
    # The random network amplifies the CPU's kernel rounding (another Xeon gave 4 more vertices and colours 0.004
    # off), so the pins hold to PIN_COUNT / PIN_VERTEX / PIN_COLOUR rather than to the last bit.
    assert close_count(len(mesh.vertices), 36554) and close_count(len(mesh.faces), 77684)
    expected_vertices = np.array([[-0.95322, -0.93939, -0.93939], [-0.96880, -0.93939, -0.87879]], dtype=np.float32)
    expected_colours = np.array([[0.22332, 0.24911, 0.20629], [0.20915, 0.25905, 0.25462]], dtype=np.float32)
    assert np.abs(mesh.vertices[:2] - expected_vertices).max() < PIN_VERTEX
    assert np.abs(mesh.vertex_colors[:2] - expected_colours).max() < PIN_COLOUR


def test_seed_decides_the_mesh(tiny_shap_e_text: Path) -> None:
    _, first = run_text(tiny_shap_e_text, seed=3)
    _, again = run_text(tiny_shap_e_text, seed=3)
    _, other = run_text(tiny_shap_e_text, seed=4)
    np.testing.assert_array_equal(first.mesh.vertices, again.mesh.vertices)
    np.testing.assert_array_equal(first.mesh.vertex_colors, again.mesh.vertex_colors)
    assert first.mesh.vertices.shape != other.mesh.vertices.shape or not np.array_equal(
        first.mesh.vertices, other.mesh.vertices
    )


def test_second_run_reuses_the_cached_pipeline(tiny_shap_e_text: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import diffusers

    runtime.release_models()
    loads = []
    original = diffusers.ShapEPipeline.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        loads.append(args[0])
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(diffusers.ShapEPipeline, "from_pretrained", classmethod(counting))
    run_text(tiny_shap_e_text)
    run_text(tiny_shap_e_text, seed=1)
    assert loads == [str(tiny_shap_e_text.resolve())]
    assert any(key.startswith("ShapEPipeline:") for key in runtime.cached_model_keys())


def test_closing_the_run_stops_sampling_and_restores_the_pipeline(tiny_shap_e_text: Path) -> None:
    from methods.shap_e import load_pipeline

    gen = methods.run("shap-e", Inputs.text("a lamp"), {"checkpoint": str(tiny_shap_e_text), "frame_size": 32})
    for event in gen:
        if event.stage == "sample" and event.fraction:
            break
    gen.close()
    pipe = load_pipeline(str(tiny_shap_e_text), "text")
    assert "step" not in vars(pipe.scheduler)  # the progress hook is gone
    _, asset = run_text(tiny_shap_e_text)  # and the pipeline's lock was released
    assert len(asset.mesh.faces) > 0


def test_long_prompt_gets_a_truncation_note(tiny_shap_e_text: Path) -> None:
    _, asset = run_text(tiny_shap_e_text, prompt="a very detailed wooden chair " * 4)
    assert any("only the first 77" in note for note in asset.notes)


def test_empty_surface_is_a_method_error(tiny_shap_e_text: Path) -> None:
    from methods.shap_e import load_pipeline

    decoder = load_pipeline(str(tiny_shap_e_text), "text").shap_e_renderer.mesh_decoder
    masks = decoder.masks.clone()
    decoder.masks.zero_()  # no triangles for any cube: what a latent with no zero crossing gives
    try:
        with pytest.raises(MethodError, match="no surface"):
            run_text(tiny_shap_e_text)
    finally:
        decoder.masks.copy_(masks)


# ----------------------------------------------------------------------------- image


def test_image_run_gives_a_coloured_mesh(tiny_shap_e_image: Path) -> None:
    events, asset = run_image(tiny_shap_e_image, Image.open(CACTUS))
    mesh = asset.mesh
    assert asset.up == "+Z" and len(mesh.faces) > 100 and mesh.faces.max() < len(mesh.vertices)
    assert mesh.vertex_colors.min() >= 0.0 and mesh.vertex_colors.max() <= 1.0
    assert {"prepare", "load", "sample", "decode"} == set(asset.stage_seconds)
    assert {"load", "sample", "decode"} == {e.stage for e in events}
    assert close_count(len(mesh.vertices), 32816)
    expected_vertices = np.array([[-0.94958, -0.93939, -0.93939], [-0.96955, -0.93939, -0.81818]], dtype=np.float32)
    expected_colours = np.array([[0.20704, 0.25321, 0.27317], [0.17325, 0.26439, 0.21147]], dtype=np.float32)
    assert np.abs(mesh.vertices[:2] - expected_vertices).max() < PIN_VERTEX
    assert np.abs(mesh.vertex_colors[:2] - expected_colours).max() < PIN_COLOUR


def test_text_checkpoint_for_image_input_is_a_checkpoint_error(tiny_shap_e_text: Path) -> None:
    with pytest.raises(CheckpointError, match="ShapEImg2ImgPipeline"):
        run_image(tiny_shap_e_text, Image.open(CACTUS))


def test_bad_image_fails_before_loading(tmp_path: Path) -> None:
    white = Image.new("RGB", (64, 64), "white")
    with pytest.raises(InvalidInput, match="no object"):
        run_image(tmp_path, white)  # tmp_path holds no pipeline: the image is checked first


# ----------------------------------------------------------------------------- checkpoints


def test_missing_directory_is_a_checkpoint_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    settings = ShapE().default_settings("text").replace(checkpoint=str(missing))
    with pytest.raises(CheckpointError, match="does not exist"):
        drive(ShapE().run(Inputs.text("a cup"), settings))
    with pytest.raises(MethodUnavailable, match="does not exist"):  # methods.run asks the registry first
        run_text(missing)


def test_directory_without_model_index_is_a_checkpoint_error(tmp_path: Path) -> None:
    (tmp_path / "prior").mkdir()
    with pytest.raises(CheckpointError, match="no model_index.json"):
        run_text(tmp_path)


def test_unreadable_hub_checkpoint_is_a_checkpoint_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # conftest sets it too; no network in tests
    settings = ShapE().default_settings("text").replace(checkpoint="trilemma-tests/no-such-shap-e")
    with pytest.raises(CheckpointError, match="cannot load Shap-E checkpoint trilemma-tests/no-such-shap-e"):
        drive(ShapE().run(Inputs.text("a cup"), settings))


def test_saved_checkpoint_is_a_diffusers_pipeline(tiny_shap_e_image: Path) -> None:
    index = json.loads((tiny_shap_e_image / "model_index.json").read_text())
    assert index["_class_name"] == "ShapEImg2ImgPipeline" and "image_processor" in index


# ----------------------------------------------------------------------------- marching cubes tables


def test_tables_decode_a_sphere_to_a_closed_outward_mesh() -> None:
    import torch
    import trimesh
    from diffusers.pipelines.shap_e.renderer import MeshDecoder

    from tests.tiny_shap_e import marching_cubes_table, sphere_field

    cases, masks = marching_cubes_table()
    assert cases.shape == (256, 5, 3) and masks.shape == (256, 5)
    assert not masks[0].any() and not masks[255].any() and masks.sum(1).max() == 5
    decoder = MeshDecoder()
    decoder.cases.copy_(torch.from_numpy(cases))
    decoder.masks.copy_(torch.from_numpy(masks))
    out = decoder(torch.from_numpy(sphere_field(32, radius=0.6)), torch.full((3,), -1.0), torch.full((3,), 2.0))
    mesh = trimesh.Trimesh(out.verts.numpy(), out.faces.numpy(), process=False)
    mesh.merge_vertices()
    radii = np.linalg.norm(out.verts.numpy(), axis=1)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * 0.6**3, rel=0.02)  # positive: normals point out
    assert np.abs(radii - 0.6).max() < 0.01


# ----------------------------------------------------------------------------- prepare_image


def test_prepare_image_uses_alpha_and_centres_the_object() -> None:
    out = prepare_image(Image.open(CACTUS))
    pixels = np.asarray(out)
    assert out.size == (256, 256) and out.mode == "RGB"
    assert (pixels[0] == 255).all() and (pixels[-1] == 255).all()  # transparent -> white
    rows, cols = np.nonzero((pixels < 200).any(axis=-1))
    assert min(rows.min(), 255 - rows.max(), cols.min(), 255 - cols.max()) >= 15  # the margin is kept
    assert min(rows.min(), 255 - rows.max()) <= 30 or min(cols.min(), 255 - cols.max()) <= 30  # and fills the rest


def test_prepare_image_finds_the_object_on_a_plain_background() -> None:
    pixels = np.asarray(prepare_image(disk_on((128, 128, 128))))
    assert (pixels[:8] == 255).all()  # the grey background became white
    rows, cols = np.nonzero((pixels < 200).any(axis=-1))
    assert abs((rows.min() + rows.max()) / 2 - 127.5) < 3 and abs((cols.min() + cols.max()) / 2 - 127.5) < 3
    assert 0.75 < (rows.max() - rows.min()) / 256 < 0.85  # the disk spans the square less the 10% margins
    assert pixels[128, 128, 0] > 150 and pixels[128, 128, 1] < 80  # still red


@pytest.mark.parametrize(
    "image",
    [Image.new("RGB", (64, 64), "white"), Image.new("RGBA", (64, 64), (200, 0, 0, 0))],
    ids=["all-white", "all-transparent"],
)
def test_prepare_image_without_an_object_is_invalid_input(image: Image.Image) -> None:
    with pytest.raises(InvalidInput, match="no object"):
        prepare_image(image)
