"""TripoSR in the app: /image_to_3d runs it beside Shap-E and Point-E (tiny checkpoints), /text_to_3d runs the
two-stage path (tiny Stable Diffusion + tiny TripoSR), and bad input gets a clear message with the app serving.

The app runs in this process on a free port, driven through gradio_client (tests/conftest_app.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from eval.runs.store import Store
from methods import runtime
from tests.image_to_3d_helpers import check_bad_input, check_text_to_3d, image_to_3d, png
from tests.test_point_e_pipeline import _tiny, clip_dir  # noqa: F401 - clip_dir is a fixture used here
from tests.tiny_triposr import build_tiny_triposr, reference_image

pytest_plugins = ["tests.conftest_app"]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    from tests.tiny_sd import build_stable_diffusion

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("triposr_app")
    triposr = build_tiny_triposr(root / "triposr")
    no_config = root / "weights-only"
    no_config.mkdir()
    shutil.copy(triposr / "model.ckpt", no_config / "model.ckpt")
    missing = root / "missing-keys"
    shutil.copytree(triposr, missing)
    state = torch.load(missing / "model.ckpt", weights_only=True)
    del state["backbone.proj_out.bias"]
    torch.save(state, missing / "model.ckpt")
    return {"triposr": triposr, "sd": build_stable_diffusion(root / "sd"), "no_config": no_config, "missing": missing}


@pytest.fixture(scope="module")
def tiny_point_e(tmp_path_factory, clip_dir):  # noqa: F811
    """Tiny Point-E checkpoints (as tests/test_point_e_pipeline.py builds them) and a tiny CLIP."""
    from methods.point_e import configs
    from methods.point_e.models import build_model

    folder = tmp_path_factory.mktemp("point_e")
    patch = pytest.MonkeyPatch()
    for seed, name in enumerate(("base40M-textvec", "base40M", "upsample", "sdf")):
        config = _tiny(name)
        patch.setitem(configs.MODEL_CONFIGS, name, config)
        torch.manual_seed(seed)
        model = build_model(config)
        torch.save(model.state_dict(), folder / configs.CHECKPOINT_FILES[name])
    yield {"checkpoint": str(folder), "clip_checkpoint": str(clip_dir), "steps": 2, "grid_size": 16, "upsample": False}
    patch.undo()
    runtime.release_models()


def test_image_to_3d_runs_triposr_beside_shap_e_and_point_e(
    app_server, app_client, tiny_dirs, tiny_point_e, tiny_shap_e_image, tmp_path
):
    settings = {
        "triposr": {"checkpoint": str(tiny_dirs["triposr"]), "mc_resolution": 32},
        "shap-e": {"checkpoint": str(tiny_shap_e_image), "num_inference_steps": 2, "frame_size": 32},
        "point-e": tiny_point_e,
    }
    files, report = image_to_3d(
        app_client, png(tmp_path, "object.png", reference_image()), ["shap-e", "point-e", "triposr"], settings
    )
    runs = {r["method"]: r for r in report["runs"]}
    assert [r["method"] for r in report["runs"]] == ["shap-e", "point-e", "triposr"]
    assert all(r["status"] == "done" for r in runs.values()), runs
    assert len(files) == 3
    glb = files[runs["triposr"]["file_index"]]
    scene = trimesh.load(glb, process=False)
    assert sum(len(g.faces) for g in scene.geometry.values()) > 0
    values = {m["metric"]: m["value"] for m in report["metrics"] if m["method"] == "triposr"}
    assert {"seconds_encode", "seconds_decode_grid", "seconds_marching_cubes", "vertices"} <= set(values)
    record = Store(app_server.db).get_run(runs["triposr"]["run_id"])
    assert record["settings"]["mc_resolution"] == 32 and record["settings"]["seed"] == 0
    assert (Path(record["asset_path"]).parent / "triposr_input.png").is_file()


def test_text_to_3d_runs_the_two_stages(app_server, app_client, tiny_dirs):
    settings = {
        "checkpoint": str(tiny_dirs["triposr"]),
        "image_model": str(tiny_dirs["sd"]),
        "image_steps": 2,
        "mc_resolution": 32,
    }
    out_dir = check_text_to_3d(app_server, app_client, "triposr", settings, "seconds_encode")
    record = json.loads((out_dir / "run.json").read_text())
    assert record["views"]["text_to_image"] == "text_to_image.png"
    assert "white background" in record["views"]["text_to_image_prompt"]


def test_bad_input_gets_clear_messages_and_the_app_keeps_serving(app_server, app_client, tiny_dirs, tmp_path):
    ok = {"triposr": {"checkpoint": str(tiny_dirs["triposr"]), "mc_resolution": 16}}
    bad = [
        ({"checkpoint": str(tiny_dirs[key]), "mc_resolution": 16}, reason, tiny_dirs[key].parent)
        for key, reason in (("no_config", "weights-only has no config.yaml"), ("missing", "1 missing keys"))
    ]
    check_bad_input(app_server, app_client, "triposr", ok["triposr"], bad, reference_image(), tmp_path)

    huge = np.zeros((2600, 2600, 4), np.uint8)
    huge[700:1900, 900:1700] = (30, 90, 200, 255)
    files, report = image_to_3d(app_client, png(tmp_path, "huge.png", Image.fromarray(huge)), ["triposr"], ok)
    assert report["runs"][0]["status"] == "done" and files
    record = Store(app_server.db).get_run(report["runs"][0]["run_id"])
    assert any("downscaled from 2600x2600" in n for n in record["notes"])
    assert Store(app_server.db).integrity_ok()
