"""What the tests of the image/text feed-forward methods (TripoSR, TripoSG, Hunyuan3D-2mini) share.

``offline_hub_cache`` points the Hugging Face cache at a folder (empty, or holding a tiny checkpoint in the hub
cache layout) with downloads off; the app helpers drive ``/image_to_3d`` and ``/text_to_3d`` of a running app
(tests/conftest_app.py) and check what every such method answers to bad input and to a prompt.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from eval.runs.store import Store

SNAPSHOT = "0" * 40


def offline_hub_cache(monkeypatch, cache: Path, repo_id: str | None = None, folder: Path | None = None) -> Path:
    """HF_HUB_OFFLINE=1 and the hub cache at ``cache`` (the registry's cache scan reads its own copy of the
    setting); with ``folder``, its files as ``repo_id``'s snapshot (blobs + links). Returns the snapshot folder."""
    import huggingface_hub.constants as hub
    from huggingface_hub import scan_cache_dir

    snapshot = cache
    if repo_id is not None and folder is not None:
        repo = cache / ("models--" + repo_id.replace("/", "--"))
        snapshot = repo / "snapshots" / SNAPSHOT
        for file in [p for p in folder.rglob("*") if p.is_file()]:
            blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(file, blob)
            link = snapshot / file.relative_to(folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(blob)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(SNAPSHOT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for module in (hub, sys.modules[scan_cache_dir.__module__]):
        monkeypatch.setattr(module, "HF_HUB_CACHE", str(cache))
    return snapshot


def shared_dirs(root: Path) -> dict[str, Path]:
    """A tiny TripoSR (the method the others run beside) and a tiny Stable Diffusion (the text stage)."""
    from tests.tiny_sd import build_stable_diffusion
    from tests.tiny_triposr import build_tiny_triposr

    return {"triposr": build_tiny_triposr(root / "triposr"), "sd": build_stable_diffusion(root / "sd")}


def image_to_3d(client, image: str, methods: list[str], settings: dict):
    return client.predict(handle_file(image), methods, 0, False, json.dumps(settings), api_name="/image_to_3d")


def png(tmp_path: Path, name: str, image: Image.Image) -> str:
    path = tmp_path / name
    image.save(path)
    return str(path)


def check_text_to_3d(app_server, app_client, method_id: str, settings: dict, seconds: str) -> Path:
    """A prompt runs the two stages; the run records the text stage's and ``seconds``' metrics and keeps the
    generated image. Returns the run's folder."""
    files, report = app_client.predict(
        "a red mug", [method_id], 3, False, json.dumps({method_id: settings}), api_name="/text_to_3d"
    )
    run = report["runs"][0]
    assert run["status"] == "done", run
    values = {m["metric"]: m["value"] for m in report["metrics"]}
    assert {"seconds_text_to_image", seconds} <= set(values)
    out_dir = Path(Store(app_server.db).get_run(run["run_id"])["asset_path"]).parent
    intermediate = out_dir / "text_to_image.png"
    assert intermediate.is_file() and Image.open(intermediate).mode == "RGB"
    return out_dir


def check_bad_input(
    app_server, app_client, method_id: str, ok: dict, bad: list[tuple[dict, str, Path]], good: Image.Image, tmp_path
) -> None:
    """A blank image (a failed run, recorded), a 1x1 image and each bad checkpoint in ``bad`` (settings, the
    reason the message gives, a folder the message must not reveal) get clear messages; the app keeps serving."""
    blank = png(tmp_path, "blank.png", Image.new("RGB", (64, 64), (240, 240, 240)))
    with pytest.raises(AppError, match=f"{method_id}: no object found in the image"):
        image_to_3d(app_client, blank, [method_id], {method_id: ok})
    latest = Store(app_server.db).runs(limit=1)[0]  # recorded as a failed run, as for the other image methods
    assert latest["status"] == "failed" and latest["error"].startswith("no object found")

    with pytest.raises(AppError, match="at least 8x8"):
        image_to_3d(app_client, png(tmp_path, "dot.png", Image.new("RGB", (1, 1))), [method_id], {method_id: ok})

    for settings, reason, hidden in bad:
        with pytest.raises(AppError) as err:
            image_to_3d(app_client, png(tmp_path, "ok.png", good), [method_id], {method_id: settings})
        assert reason in str(err.value) and str(hidden) not in str(err.value)


# ----------------------------------------------------------------------------- runs without the app

NO_OBJECT_IMAGES = [
    (Image.new("RGBA", (64, 64), (255, 0, 0, 0)), "no object found"),  # fully transparent
    (Image.new("RGB", (64, 64), (20, 200, 30)), "no object found"),  # one plain colour
]


def check_fails_before_loading(run, image: Image.Image, match: str, settings) -> None:
    """``run(inputs, settings)`` rejects the image (InvalidInput) before it loads anything: ``settings`` name a
    checkpoint that does not exist, and no model is cached afterwards."""
    from methods import runtime
    from methods.base import Inputs, InvalidInput

    with pytest.raises(InvalidInput, match=match):
        run(Inputs(modality="image", image=image), settings)
    assert runtime.cached_model_keys() == []


def sampled_latents(pipeline, model, cond, uncond, latents, steps: int, guidance: float):
    """The latents after ``steps`` flow steps of ``pipeline.denoise``."""
    for step in pipeline.denoise(model, cond, uncond, latents, steps, guidance):
        latents = step.latents
    return latents


def counting(query):
    """``query`` and a list that gets the number of points of each call."""
    calls: list[int] = []

    def counted(points):
        calls.append(len(points))
        return query(points)

    return counted, calls
