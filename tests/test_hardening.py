"""Issue 14: the app as a public Space sees it, tried like a hostile but fair visitor would.

Each test drives a real server on a free localhost port (tests/conftest_app.py) with gradio_client
and plain HTTP (httpx): nothing private is served, no event acts on a server path a client names,
one request cannot hold the GPU slot, votes cannot be stuffed, a killed app leaves no run "running",
and bad input gets a clear message that names no server path.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from eval.store import Store

pytest_plugins = ["tests.conftest_app"]

ROOT = Path(__file__).resolve().parents[1]
SPHERE = "app-test-sphere"


def text_to_3d(client, prompt: str, methods: list[str], seed: int = 0, settings: str = "{}", randomize=False):
    return client.predict(prompt, methods, seed, randomize, settings, api_name="/text_to_3d")


def file_url(server, path: str | Path) -> str:
    return f"{server.url}gradio_api/file={path}"


# ----------------------------------------------------------------------------- 1, 2: what is served


def test_file_route_serves_run_assets_only_and_the_store_survives(app_server, app_client):
    files, report = text_to_3d(app_client, "a served mug", [SPHERE], seed=3)
    run_id = report["runs"][0]["run_id"]
    store = Store(app_server.db)
    run_dir = Path(store.get_run(run_id)["asset_path"]).parent
    assert not app_server.db.resolve().is_relative_to(app_server.outputs.resolve()), "the store is outside outputs"
    wal, shm = Path(f"{app_server.db}-wal"), Path(f"{app_server.db}-shm")
    assert wal.is_file() and shm.is_file(), "the store is in WAL mode with its companion files present"
    with httpx.Client(timeout=30) as http:
        asset = http.get(file_url(app_server, run_dir / "asset.glb"))
        assert asset.status_code == 200 and asset.content[:4] == b"glTF"
        record = http.get(file_url(app_server, run_dir / "download" / "run.json"))
        assert record.status_code == 200
        text = record.text
        assert json.loads(text)["id"] == run_id and json.loads(text)["asset_path"] == "asset.glb"
        for private in (str(app_server.outputs), str(app_server.db.parent), str(ROOT), "/tmp"):
            assert private not in text, f"the downloadable run.json names the server path {private}"
        refused = [
            app_server.db,
            wal,
            shm,
            run_dir / "run.json",  # the server-side record (server paths, tracebacks)
            app_server.outputs / "missing.glb",
            ROOT / "app.py",
            ROOT / "assets" / ".." / "app.py",
            app_server.outputs / ".." / app_server.db.parent.name / app_server.db.name,
        ]
        for path in refused:
            response = http.get(file_url(app_server, path))
            assert response.status_code in (403, 404), f"{path} was served ({response.status_code})"
            assert b"SQLite format" not in response.content
    # the refused attempts did not hurt the store: it still records runs and passes its integrity check
    files2, report2 = text_to_3d(app_client, "a served mug again", [SPHERE], seed=4)
    assert report2["runs"][0]["status"] == "done"
    fresh = Store(app_server.db)
    assert fresh.integrity_ok() and fresh.get_run(report2["runs"][0]["run_id"])["status"] == "done"


def test_store_is_never_served_even_inside_outputs(monkeypatch, tmp_path):
    from gradio import utils

    import app

    monkeypatch.setenv("TRILEMMA_OUTPUTS", str(tmp_path))
    monkeypatch.setenv("TRILEMMA_DB", str(tmp_path / "inside.db"))
    monkeypatch.delenv("TRILEMMA_DATA", raising=False)
    kwargs = app.launch_kwargs()
    for suffix in ("", "-wal", "-shm"):
        target = tmp_path / f"inside.db{suffix}"
        allowed, reason = utils.is_allowed_file(target, kwargs["blocked_paths"], kwargs["allowed_paths"], [])
        assert not allowed, f"{target.name} could be served ({reason})"
    assert all(not Path(p).resolve().is_relative_to(tmp_path.resolve()) for p in kwargs["allowed_paths"])
    monkeypatch.delenv("TRILEMMA_DB")
    from eval.store import default_db_path

    assert not default_db_path().resolve().is_relative_to(tmp_path.resolve()), "the default store is not in outputs"
