"""Hunyuan3D-2mini in the app: /image_to_3d runs it beside TripoSR (tiny checkpoints, one report, both meshes),
/text_to_3d runs the two-stage path (tiny Stable Diffusion + tiny Hunyuan3D), and bad input gets a clear message
with the app still serving.

The app runs in this process on a free port, driven through gradio_client (tests/conftest_app.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import trimesh
from gradio_client.exceptions import AppError

from eval.runs.store import Store
from tests.image_to_3d_helpers import check_bad_input, check_text_to_3d, image_to_3d, png, shared_dirs
from tests.tiny_hunyuan3d import SUBFOLDERS, build_tiny_hunyuan3d, reference_image

pytest_plugins = ["tests.conftest_app"]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("hunyuan3d_app")
    hunyuan = build_tiny_hunyuan3d(root / "hunyuan")
    turbo = hunyuan / SUBFOLDERS["turbo"]
    no_config = root / "weights-only"
    no_config.mkdir()
    shutil.copy(turbo / "model.fp16.safetensors", no_config / "model.fp16.safetensors")
    missing = root / "missing-keys"
    shutil.copytree(turbo, missing)
    state = load_file(missing / "model.fp16.safetensors")
    del state["vae.geo_decoder.output_proj.bias"]
    save_file(state, missing / "model.fp16.safetensors")
    return {
        "hunyuan": hunyuan,
        "no_config": no_config,
        "missing": missing,
    } | shared_dirs(root)


def _hunyuan(folder: Path, **extra) -> dict:
    return {"checkpoint": str(folder), "variant": "turbo", "steps": 2, "grid_resolution": 32} | extra


def test_image_to_3d_runs_hunyuan_beside_triposr(app_server, app_client, tiny_dirs, tmp_path):
    settings = {
        "triposr": {"checkpoint": str(tiny_dirs["triposr"]), "mc_resolution": 32},
        "hunyuan3d-2mini": _hunyuan(tiny_dirs["hunyuan"]),
    }
    image = png(tmp_path, "object.png", reference_image())
    files, report = image_to_3d(app_client, image, ["triposr", "hunyuan3d-2mini"], settings)
    runs = {r["method"]: r for r in report["runs"]}
    assert [r["method"] for r in report["runs"]] == ["triposr", "hunyuan3d-2mini"]
    assert all(r["status"] == "done" for r in runs.values()), runs
    assert len(files) == 2
    scene = trimesh.load(files[runs["hunyuan3d-2mini"]["file_index"]], process=False)
    assert sum(len(g.faces) for g in scene.geometry.values()) > 0
    values = {m["metric"]: m["value"] for m in report["metrics"] if m["method"] == "hunyuan3d-2mini"}
    assert {"seconds_encode", "seconds_denoise", "seconds_decode_grid", "seconds_marching_cubes"} <= set(values)
    assert {m["method"] for m in report["metrics"]} >= {"triposr", "hunyuan3d-2mini"}  # one protocol for both
    record = Store(app_server.db).get_run(runs["hunyuan3d-2mini"]["run_id"])
    assert record["settings"]["grid_resolution"] == 32 and record["settings"]["variant"] == "turbo"
    assert any("Tencent Hunyuan 3D 2.0 Community License" in note for note in record["notes"])  # the licence
    assert (Path(record["asset_path"]).parent / "hunyuan3d_input.png").is_file()


def test_text_to_3d_runs_the_two_stages(app_server, app_client, tiny_dirs):
    settings = _hunyuan(tiny_dirs["hunyuan"], image_model=str(tiny_dirs["sd"]), image_steps=2)
    check_text_to_3d(app_server, app_client, "hunyuan3d-2mini", settings, "seconds_denoise")


def test_bad_input_gets_clear_messages_and_the_app_keeps_serving(app_server, app_client, tiny_dirs, tmp_path):
    ok = {"hunyuan3d-2mini": _hunyuan(tiny_dirs["hunyuan"], grid_resolution=16)}
    bad = [
        (_hunyuan(tiny_dirs[key], grid_resolution=16), reason, tiny_dirs[key].parent)
        for key, reason in (("no_config", "weights-only has no config.yaml"), ("missing", "1 missing keys"))
    ]
    check_bad_input(app_server, app_client, "hunyuan3d-2mini", ok["hunyuan3d-2mini"], bad, reference_image(), tmp_path)
    missing = {"hunyuan3d-2mini": _hunyuan(tiny_dirs["missing"], grid_resolution=16)}
    with pytest.raises(AppError, match="vae.geo_decoder.output_proj.bias"):
        image_to_3d(app_client, png(tmp_path, "ok.png", reference_image()), ["hunyuan3d-2mini"], missing)

    files, report = image_to_3d(app_client, png(tmp_path, "ok.png", reference_image()), ["hunyuan3d-2mini"], ok)
    assert report["runs"][0]["status"] == "done" and files
    assert Store(app_server.db).integrity_ok()


def test_public_host_refuses_hunyuan_until_its_licence_is_accepted(app_server, app_client, monkeypatch, tmp_path):
    """On a shared host the method is off until the operator accepts the weights' licence; locally it runs."""
    from ui.public import check_licence

    monkeypatch.setenv("TRILEMMA_PUBLIC", "1")
    monkeypatch.delenv("TRILEMMA_ACCEPT_LICENSES", raising=False)
    image = png(tmp_path, "object.png", reference_image())
    before = len(Store(app_server.db).runs(limit=100000))
    for call in (
        lambda: image_to_3d(app_client, image, ["hunyuan3d-2mini"], {}),
        lambda: app_client.predict("a mug", ["hunyuan3d-2mini"], 0, False, "{}", api_name="/text_to_3d"),
    ):
        with pytest.raises(AppError) as err:
            call()
        message = str(err.value)
        assert "hunyuan3d-2mini is off on this public server" in message
        assert "TRILEMMA_ACCEPT_LICENSES=tencent-hunyuan-3d-2.0-community" in message
        assert "not licensed" in message or "European Union" in message  # the licence in plain words
    assert len(Store(app_server.db).runs(limit=100000)) == before, "a refused request stored a run"
    # the app keeps serving other methods
    files, report = image_to_3d(app_client, image, ["app-test-sphere"], {})
    assert report["runs"][0]["status"] == "done" and files

    # the operator accepts it (other ids beside it are fine): the licence no longer stops it (the weights, offline
    # and not cached here, do: a different refusal)
    monkeypatch.setenv("TRILEMMA_ACCEPT_LICENSES", "some-other-licence, tencent-hunyuan-3d-2.0-community")
    with pytest.raises(AppError) as err:
        image_to_3d(app_client, image, ["hunyuan3d-2mini"], {})
    assert "off on this public server" not in str(err.value) and "tencent/Hunyuan3D-2mini" in str(err.value)

    # off a shared host nothing is gated
    monkeypatch.delenv("TRILEMMA_PUBLIC")
    monkeypatch.delenv("TRILEMMA_ACCEPT_LICENSES")
    import methods

    check_licence(methods.get("hunyuan3d-2mini"))
