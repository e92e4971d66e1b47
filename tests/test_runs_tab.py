"""The Runs tab: lists, filters and compares finished runs written by earlier requests and by the CLI.

The runs come from real requests to the launched app (gradio_client) and a CLI subprocess; the
tab's handlers (page-only, not in the public API) read them back from the same store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import gradio as gr
import pytest
from gradio_client import handle_file

from eval.runs.store import Store

pytest_plugins = ["tests.conftest_app"]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "assets" / "examples"
SPHERE, POINTS = "app-test-sphere", "app-test-points"


def _rows(table) -> list[list]:
    return table["data"] if isinstance(table, dict) else table


def _value(output):
    """An output's value, whether the client got it plainly or as a gr.update."""
    return output.get("value") if isinstance(output, dict) and output.get("__type__") == "update" else output


@pytest.fixture(scope="module")
def stored_runs(app_server, app_client):
    """Two earlier requests through the app (a prompt, an image; two methods each) and one CLI run."""
    app_client.predict("a red mug", [SPHERE, POINTS], 0, False, "{}", api_name="/text_to_3d")
    app_client.predict(handle_file(str(EXAMPLES / "red_mug.png")), [SPHERE, POINTS], 0, False, "{}",
                       api_name="/image_to_3d")  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cli = subprocess.run(
        [sys.executable, "-m", "methods", "run", "vae", "--prompt", "a small green cube", "--quiet",
         "--out", str(app_server.outputs / "cli-run"), "--db", str(app_server.db)],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr[-2000:]
    return Store(app_server.db).runs(status="done")


def list_runs(method="", modality="", contains="", age="any time"):
    from ui.runs import list_view

    table, ticked = list_view(method, modality, contains, age)
    return _rows(table), ticked


def test_lists_runs_of_earlier_requests_and_of_the_cli(app_client, stored_runs):
    rows, ticked = list_runs()
    assert len(rows) == len(stored_runs) == 5
    by_method = {}
    for row in rows:
        by_method.setdefault(row[1], []).append(row)
    assert {"vae", SPHERE, POINTS} <= set(by_method)
    assert by_method["vae"][0][3] == "a small green cube" and by_method["vae"][0][2] == "text"
    assert rows[0][0] == stored_runs[0]["id"], "newest first"
    assert [c[1] for c in ticked["choices"]] == [r[0] for r in rows]


def test_filters_by_method_modality_input_and_age(app_client, stored_runs):
    assert [r[1] for r in list_runs(method="vae")[0]] == ["vae"]
    assert {r[1] for r in list_runs(modality="image")[0]} == {SPHERE, POINTS}
    assert [r[3] for r in list_runs(contains="GREEN")[0]] == ["a small green cube"]
    assert {r[3] for r in list_runs(contains="mug")[0]} == {"a red mug", "red_mug.png"}
    assert len(list_runs(age="last hour")[0]) == len(stored_runs)

    from ui.runs import find_runs

    later = time.time() + 2 * 86400  # two days on, none finished in the last hour or day
    assert find_runs(Store(Path(os.environ["TRILEMMA_DB"])), age="last day", now=later) == []


def test_compares_ticked_runs_in_viewers_and_the_matrix(app_client, app_server, stored_runs):
    image_runs = [r["id"] for r in stored_runs if r["modality"] == "image"]
    cli_run = next(r["id"] for r in stored_runs if r["method"] == "vae")
    chosen = [*image_runs, cli_run]
    from ui.runs import compare_view

    out = compare_view(chosen)
    matrix, per_run, record = out[0], [_value(o) for o in out[1:-1]], out[-1]
    labels = [f"{r['method']} · {r['id'][-6:]}" for rid in chosen for r in stored_runs if r["id"] == rid]
    header = "".join(f"<th scope='col'>{label}</th>" for label in labels)
    assert header in matrix and "seconds_total" in matrix and "★" in matrix
    viewers, inputs, renders, downloads = per_run[0::4], per_run[1::4], per_run[2::4], per_run[3::4]
    assert all(v for v in viewers[:3]) and viewers[3] is None
    assert Path(viewers[0]).suffix == ".glb"
    # the image runs show their real input (kept by the runner), the prompt run has none
    assert [Path(i).name for i in inputs[0]] == ["image.png"] and not inputs[2]
    captions = [caption for _, caption in renders[0]]
    assert captions[:2] == ["input", "front render"] and len(captions) == 18
    assert Path(renders[2][0][0]).name == "color_00.png"  # a prompt run: the ring only
    assert any(str(Path(f)).endswith("turntable.gif") for f in downloads[0])
    assert record["id"] == chosen[0] and record["asset"] == "asset.glb"
    assert str(app_server.outputs) not in json.dumps(record), "no server path in the record"
    with pytest.raises(gr.Error, match="at most 4"):
        compare_view([r["id"] for r in stored_runs][:5])


def test_the_tab_adds_nothing_to_the_public_api(app_client):
    named = app_client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert set(named) == {"/text_to_3d", "/image_to_3d", "/video_to_3d"}
