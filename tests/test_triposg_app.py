"""TripoSG in the app: /image_to_3d runs it beside TripoSR (tiny checkpoints, one report, both meshes),
/text_to_3d runs the two-stage path (tiny Stable Diffusion + tiny TripoSG), and bad input gets a clear
message with the app still serving.

The app runs in this process on a free port, driven through gradio_client (tests/conftest_app.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import trimesh

from eval.runs.store import Store
from tests.image_to_3d_helpers import check_bad_input, check_text_to_3d, image_to_3d, png, shared_dirs
from tests.tiny_triposg import TINY_TOKENS, build_tiny_triposg
from tests.tiny_triposr import reference_image

pytest_plugins = ["tests.conftest_app"]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("triposg_app")
    triposg = build_tiny_triposg(root / "triposg")
    no_config = root / "weights-only"
    shutil.copytree(triposg / "vae", no_config / "vae")
    missing = root / "missing-keys"
    shutil.copytree(triposg, missing)
    path = missing / "vae" / "diffusion_pytorch_model.safetensors"
    state = load_file(path)
    del state["decoder.proj_out.bias"]
    save_file(state, path)
    return {
        "triposg": triposg,
        "no_config": no_config,
        "missing": missing,
    } | shared_dirs(root)


def _triposg(folder: Path, **extra) -> dict:
    return {"checkpoint": str(folder), "steps": 2, "grid_resolution": 32, "num_tokens": TINY_TOKENS} | extra


def test_image_to_3d_runs_triposg_beside_triposr(app_server, app_client, tiny_dirs, tmp_path):
    settings = {
        "triposr": {"checkpoint": str(tiny_dirs["triposr"]), "mc_resolution": 32},
        "triposg": _triposg(tiny_dirs["triposg"]),
    }
    files, report = image_to_3d(app_client, png(tmp_path, "object.png", reference_image()), ["triposr", "triposg"],
                                settings)  # fmt: skip
    runs = {r["method"]: r for r in report["runs"]}
    assert [r["method"] for r in report["runs"]] == ["triposr", "triposg"]
    assert all(r["status"] == "done" for r in runs.values()), runs
    assert len(files) == 2
    scene = trimesh.load(files[runs["triposg"]["file_index"]], process=False)
    assert sum(len(g.faces) for g in scene.geometry.values()) > 0
    values = {m["metric"]: m["value"] for m in report["metrics"] if m["method"] == "triposg"}
    assert {"seconds_encode", "seconds_denoise", "seconds_decode_grid", "seconds_marching_cubes"} <= set(values)
    assert {m["method"] for m in report["metrics"]} >= {"triposr", "triposg"}  # one protocol for both
    record = Store(app_server.db).get_run(runs["triposg"]["run_id"])
    assert record["settings"]["grid_resolution"] == 32 and record["settings"]["steps"] == 2
    assert (Path(record["asset_path"]).parent / "triposg_input.png").is_file()


def test_text_to_3d_runs_the_two_stages(app_server, app_client, tiny_dirs):
    settings = _triposg(tiny_dirs["triposg"], image_model=str(tiny_dirs["sd"]), image_steps=2)
    check_text_to_3d(app_server, app_client, "triposg", settings, "seconds_denoise")


def test_bad_input_gets_clear_messages_and_the_app_keeps_serving(app_server, app_client, tiny_dirs, tmp_path):
    ok = {"triposg": _triposg(tiny_dirs["triposg"], grid_resolution=16)}
    bad = [
        (_triposg(tiny_dirs[key], grid_resolution=16), reason, tiny_dirs[key].parent)
        for key, reason in (("no_config", "weights-only has no model_index.json"), ("missing", "1 missing keys"))
    ]
    check_bad_input(app_server, app_client, "triposg", ok["triposg"], bad, reference_image(), tmp_path)

    files, report = image_to_3d(app_client, png(tmp_path, "ok.png", reference_image()), ["triposg"], ok)
    assert report["runs"][0]["status"] == "done" and files
    assert Store(app_server.db).integrity_ok()
