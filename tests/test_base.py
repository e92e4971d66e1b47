import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from methods.base import (
    Asset,
    Inputs,
    InvalidInput,
    InvalidSettings,
    Mesh,
    PointCloud,
    Settings,
    load_image,
    normalize,
    setting,
)


@dataclasses.dataclass(kw_only=True)
class DemoSettings(Settings):
    steps: int = setting(64, min=1, max=256, step=1)
    guidance: float = setting(15.0, min=0.0, max=30.0)
    mode: str = setting("sdf", choices=("sdf", "poisson"))
    fast: bool = setting(False)


def test_settings_describe_carries_ranges_for_the_ui():
    rows = {r["name"]: r for r in DemoSettings.describe()}
    assert rows["steps"]["type"] == "int" and rows["steps"]["min"] == 1 and rows["steps"]["max"] == 256
    assert rows["mode"]["choices"] == ("sdf", "poisson")
    assert rows["fast"]["type"] == "bool"
    assert rows["seed"]["default"] == 0


def test_settings_from_strings_and_validation():
    s = DemoSettings.from_dict({"steps": "8", "guidance": "3.5", "fast": "true", "seed": "7"})
    assert (s.steps, s.guidance, s.fast, s.seed) == (8, 3.5, True, 7)
    with pytest.raises(InvalidSettings, match="steps=0 is below its minimum 1"):
        DemoSettings.from_dict({"steps": 0})
    with pytest.raises(InvalidSettings, match="unknown setting"):
        DemoSettings.from_dict({"stepz": 3})
    with pytest.raises(InvalidSettings, match="mode='marching' is not one of"):
        DemoSettings.from_dict({"mode": "marching"})
    with pytest.raises(InvalidSettings, match="must be of type int"):
        DemoSettings.from_dict({"steps": "many"})
    with pytest.raises(InvalidSettings, match="finite"):
        DemoSettings.from_dict({"guidance": "nan"})
    assert s.replace(steps=2).steps == 2 and s.steps == 8


def test_text_inputs_validated():
    assert Inputs.text("  a   red  chair ").prompt == "a red chair"
    with pytest.raises(InvalidInput, match="empty"):
        Inputs.text("   ")
    with pytest.raises(InvalidInput, match="10000 characters"):
        Inputs.text("x" * 10_000)
    assert Inputs.text("a chair").hash() == Inputs.text("a  chair").hash() != Inputs.text("a table").hash()


def test_load_image_bad_files(tmp_path: Path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InvalidInput, match="empty"):
        load_image(str(empty))
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    with pytest.raises(InvalidInput, match="not an image"):
        load_image(str(text))
    with pytest.raises(InvalidInput, match="no such file"):
        load_image(str(tmp_path / "missing.png"))


def test_load_image_modes(tmp_path: Path):
    grey16 = Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))
    img = load_image(grey16)
    assert img.mode == "RGBA" and np.asarray(img)[..., 0].max() == 255  # scaled, not clipped
    rgb = load_image(Image.new("RGB", (32, 32), (10, 20, 30)))
    assert rgb.mode == "RGBA" and rgb.getpixel((0, 0)) == (10, 20, 30, 255)


def test_mesh_checks_indices_and_colours():
    with pytest.raises(ValueError, match="do not exist"):
        Mesh(np.zeros((3, 3)), [[0, 1, 3]])
    m = Mesh(np.zeros((3, 3)), [[0, 1, 2]], np.full((3, 3), 255, dtype=np.uint8))
    assert m.vertex_colors.dtype == np.float32 and m.vertex_colors.max() == 1.0
    with pytest.raises(ValueError, match="needs a mesh or a point cloud"):
        Asset()


def test_normalize_centres_scales_and_turns_z_up_to_y_up():
    verts = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 0, 4]], dtype=np.float32) + 5
    asset = Asset(mesh=Mesh(verts, [[0, 1, 2], [0, 2, 3]]), points=PointCloud(verts[:2]), up="+Z")
    out = normalize(asset)
    allp = out.all_points()
    assert np.allclose((allp.min(0) + allp.max(0)) / 2, 0, atol=1e-6)
    assert np.isclose(np.linalg.norm(allp, axis=1).max(), 1.0)
    # the tallest extent was along +Z; after normalisation it is along +Y
    extent = allp.max(0) - allp.min(0)
    assert np.argmax(extent) == 1
    assert out.up == "+Y" and out.normalization["from_up"] == "+Z" and asset.up == "+Z"
    top = out.mesh.vertices[3]
    assert top[1] > 0.5  # the +Z apex now points up
