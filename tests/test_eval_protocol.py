"""The protocol end to end: rows per modality, settings stored with each value, skips that say why, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from eval.__main__ import main
from eval.judging.protocol import PROTOCOL_VERSION, MetricRow, cost_rows, mesh_stat_rows, score
from eval.judging.render import Camera, front_camera, render
from methods.base import Asset, Inputs, PointCloud, normalize
from methods.export import export_glb, load_asset
from tests.eval_support import MESH_FILES, SHARED_MESHES, mesh_asset, sphere_points, tiny_clip_dir, unit_cube

FAST = {"views": 2, "resolution": 32, "supersample": 1, "samples": 3000}


@pytest.fixture(scope="module")
def clip_dir():
    return tiny_clip_dir()


@pytest.fixture
def empty_hub_cache(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


def rows_by_name(rows: list[MetricRow]) -> dict[str, MetricRow]:
    names = [r.name for r in rows]
    assert len(names) == len(set(names)), f"duplicate rows: {names}"
    return {r.name: r for r in rows}


def test_every_asset_gets_mesh_quality_and_clip_says_why_it_is_skipped(empty_hub_cache):
    asset = mesh_asset(unit_cube())
    rows = rows_by_name(list(score(asset, Inputs.text("a cube"), FAST)))
    assert rows["faces"].value == 12 and rows["watertight"].value is True and rows["genus"].value == 0
    assert rows["watertight"].arrow == "↑" and rows["self_intersecting_faces"].arrow == "↓"
    assert rows["surface_area"].value == pytest.approx(6 / 0.75) and rows["surface_area"].unit == "r²"  # unit sphere
    assert "frame" in rows["volume"].settings
    assert rows["normalization_scale"].settings["up"] == "+Y"
    skipped = rows["clip_skipped"]
    assert "HF_HUB_OFFLINE=1" in skipped.value and skipped.group == "alignment"


def test_text_rows_with_a_tiny_clip(clip_dir, empty_hub_cache):
    asset = mesh_asset(trimesh.creation.icosphere(2))
    context = FAST | {"clip_models": [clip_dir], "captions": ["a red ball", "a blue car", "a green tree"]}
    rows = rows_by_name(list(score(asset, Inputs.text("a red ball"), context)))
    for name in ("clip_score", "clip_score_geometry", "r_precision", "r_precision_geometry"):
        assert rows[name].higher_is_better is True and rows[name].group == "alignment"
        settings = rows[name].settings
        assert settings["clip_model"] == clip_dir and settings["resolution"] == 32 and len(settings["views"]) == 2
        assert settings["renderer"].startswith("trilemma-raster")
    assert 0 <= rows["clip_score"].value <= 100 and rows["r_precision"].value in (0.0, 0.5, 1.0)
    assert rows["r_precision"].settings["caption_count"] == 3
    assert rows["clip_score"].settings["mode"] == "color" and rows["clip_score_geometry"].settings["mode"] == "geometry"
    again = rows_by_name(list(score(asset, Inputs.text("a red ball"), context)))
    assert again["clip_score"].value == rows["clip_score"].value  # deterministic


def test_the_clip_a_method_optimised_against_is_never_the_scorer(clip_dir, empty_hub_cache):
    asset = mesh_asset(unit_cube())
    context = FAST | {"clip_models": [clip_dir], "method_settings": {"clip_model": clip_dir}}
    rows = rows_by_name(list(score(asset, Inputs.text("a cube"), context)))
    assert "clip_score" not in rows
    assert rows["clip_skipped"].settings["clip_model"] == "openai/clip-vit-base-patch32"
    assert "optimised against" in rows["clip_skipped"].settings["note"]


def test_image_input_rows(clip_dir, empty_hub_cache):
    asset = mesh_asset(trimesh.creation.icosphere(2), np.tile([0.8, 0.2, 0.2], (162, 1)))
    front = render(asset, [front_camera()], resolution=64, supersample=1)
    rgba = np.concatenate([front.rgb[0], front.alpha[0][..., None]], axis=-1)
    from PIL import Image

    image = Image.fromarray((rgba * 255).round().astype(np.uint8), "RGBA")
    inputs = Inputs(modality="image", image=image).validated()
    rows = rows_by_name(list(score(asset, inputs, FAST | {"resolution": 64, "clip_models": [clip_dir]})))
    assert rows["input_psnr"].value > 25 and rows["input_ssim"].value > 0.9  # the input is the asset's own front view
    assert rows["input_psnr"].settings["view"].startswith("front")
    assert "LPIPS" in rows["input_lpips_skipped"].value
    assert rows["clip_image_similarity"].value > 90 and "clip_image_similarity_ring" in rows


def test_reference_geometry_rows():
    asset = mesh_asset(trimesh.creation.icosphere(3))
    ref = trimesh.creation.icosphere(3)
    with_ref = FAST | {"reference_mesh": _write(ref, "ref.stl")}
    rows = rows_by_name(list(score(asset, Inputs(modality="text"), with_ref)))
    assert rows["chamfer_l1"].value < 0.05 and rows["f_score@0.05"].value > 0.99
    assert rows["chamfer_l1"].settings["samples"] == 3000 and rows["chamfer_l1"].settings["icp"] is False
    assert rows["f_score@0.01"].settings["threshold"] == pytest.approx(
        0.01 * 2 * np.sqrt(3), rel=0.03
    )  # of the diagonal
    assert rows["normal_consistency"].value > 0.95
    assert rows["volume_iou"].value > 0.95  # Embree from the embreex wheel: no system library needed
    icp_rows = rows_by_name(list(score(asset, Inputs(modality="text"), with_ref | {"icp": True})))
    assert icp_rows["icp_rmse"].value < 0.05 and icp_rows["chamfer_l1"].settings["icp"] is True


def _write(tm: trimesh.Trimesh, name: str) -> str:
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / name
    tm.export(path)
    return str(path)


def test_point_clouds_and_held_out_views():
    pts = sphere_points(3000, 0)
    frames = np.random.default_rng(0).random((2, 24, 24, 3)).astype(np.float32)
    asset = Asset(points=PointCloud(pts), views={"heldout_pred": frames, "heldout_gt": frames, "split": "test"})
    rows = rows_by_name(list(score(asset, Inputs(modality="video", frames=[]), FAST)))
    assert rows["points"].value == 3000 and rows["nn_spacing_mean"].value > 0 and rows["outlier_fraction"].value < 0.05
    assert rows["psnr"].value == float("inf") and rows["ssim"].value == pytest.approx(1.0)
    assert rows["psnr"].settings["frames"] == 2 and "lpips_skipped" in rows


def test_bad_options_and_failing_metrics_do_not_stop_the_run(monkeypatch):
    asset = mesh_asset(unit_cube())
    rows = rows_by_name(list(score(asset, Inputs(modality="text"), {"views": -3})))
    assert "protocol_options_skipped" in rows and "faces" in rows
    rows = rows_by_name(list(score(asset, Inputs(modality="text"), FAST | {"reference_mesh": "/nonexistent.obj"})))
    assert "reference_skipped" in rows and "faces" in rows


def test_unnormalised_assets_are_normalised_first():
    big = Asset(mesh=mesh_asset(unit_cube(), normalized=False).mesh)
    big.mesh.vertices *= 10
    rows = rows_by_name(list(score(big, Inputs(modality="text"), FAST)))
    assert rows["normalization_scale"].value == pytest.approx(1 / (10 * np.sqrt(3) / 2))
    assert [r.name for r in mesh_stat_rows(big)][:2] == ["vertices", "faces"]


@pytest.mark.parametrize("name", MESH_FILES)
def test_shared_meshes_load_normalise_render_and_score(name: str):
    path = SHARED_MESHES / name
    if not path.exists():
        pytest.skip(f"shared mesh not found: {path}")
    asset = normalize(load_asset(path))
    assert np.abs(np.linalg.norm(asset.all_points(), axis=1).max() - 1.0) < 1e-5
    shot = render(asset, [Camera(30, 30)], resolution=48, supersample=1)
    assert 0.05 < shot.alpha.mean() < 0.9
    rows = rows_by_name(list(score(asset, Inputs(modality="text"), FAST)))
    assert rows["faces"].value == len(asset.mesh.faces) and rows["surface_area"].value > 0
    assert not any(r.name.endswith("_skipped") for r in rows.values())


def test_cli_scores_a_file(tmp_path, capsys, empty_hub_cache, monkeypatch):
    sphere = normalize(Asset(mesh=mesh_asset(trimesh.creation.icosphere(2)).mesh))
    glb = export_glb(sphere, tmp_path / "asset.glb", {"settings": {"seed": 0}})
    code = main(["score", str(glb), "--prompt", "a ball", "--json", "--views", "2", "--resolution", "32"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r["name"] for r in rows}
    assert {"faces", "watertight", "clip_skipped"} <= names
    import eval.judging.render

    written = []
    monkeypatch.setattr(eval.judging.render, "render_turntable", lambda asset, path: written.append(path) or path)
    assert main(["score", str(glb), "--turntable", str(tmp_path / "spin.gif")]) == 0
    out = capsys.readouterr().out
    assert "watertight" in out and "↑" in out and written == [str(tmp_path / "spin.gif")]
    assert main(["score", str(tmp_path / "missing.glb")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cost_rows_and_protocol_version_unchanged_contract():
    rows = cost_rows({"run": 1.0, "export": 0.5}, 100.0, None)
    assert [r.name for r in rows] == ["seconds_run", "seconds_export", "seconds_total", "peak_rss_mb"]
    assert rows[2].value == 1.5 and rows[0].arrow == "↓" and PROTOCOL_VERSION == "2"
    assert MetricRow("x", 1).to_dict()["group"] == "cost"
