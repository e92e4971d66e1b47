"""The app end to end: launched on a free localhost port, driven through gradio_client like a script.

Uses the procedural test methods of tests/conftest_app.py (no weights). Bad input must give a
clear error, keep the app serving and leave the run store as it was.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import gradio as gr
import pytest
import trimesh
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from eval.runs.store import Store
from methods.base import InvalidInput, InvalidSettings

pytest_plugins = ["tests.conftest_app"]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "assets" / "examples"
SPHERE = "app-test-sphere"  # tests.conftest_app.AppTestSphere
SPHERE_VERTICES = {n: 10 * 4**n + 2 for n in range(5)}  # icosphere vertex count per subdivision level


def settings_json(**by_method: dict) -> str:
    return json.dumps(by_method)


def text_to_3d(client, prompt: str, methods: list[str], seed: int = 0, settings: str = "{}", randomize=False):
    return client.predict(prompt, methods, seed, randomize, settings, api_name="/text_to_3d")


def glb_vertex_count(path: str) -> int:
    scene = trimesh.load(path, process=False)  # a mesh or glTF POINTS, whichever the asset holds
    return sum(len(g.vertices) for g in scene.geometry.values())


def metric_names(report: dict, method: str) -> set[str]:
    return {m["metric"] for m in report["metrics"] if m["method"] == method}


@pytest.fixture(scope="module")
def first_run(app_server, app_client):
    """A good run made before the bad inputs; it must survive all of them."""
    files, report = text_to_3d(
        app_client, "a red ceramic mug", [SPHERE], seed=11, settings=settings_json(**{SPHERE: {}})
    )
    run_id = report["runs"][0]["run_id"]
    store = Store(app_server.db)
    return {"files": files, "report": report, "run_id": run_id, "metrics": store.metrics(run_id)}


# ----------------------------------------------------------------------------- build


def test_build_imports_no_torch():
    code = "import app; app.build_app(); import sys; assert 'torch' not in sys.modules, 'torch was imported'"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_api_endpoints_have_stable_names_and_signatures(app_client):
    api = app_client.view_api(return_format="dict", print_info=False)
    named = api["named_endpoints"]
    assert {"/text_to_3d", "/image_to_3d", "/video_to_3d"} <= set(named)
    assert set(named) == {"/text_to_3d", "/image_to_3d", "/video_to_3d"}, "UI handlers must not clutter the API"
    for name, first in (("/text_to_3d", "prompt"), ("/image_to_3d", "image"), ("/video_to_3d", "video")):
        params = [p["parameter_name"] for p in named[name]["parameters"]]
        assert params == [first, "methods", "seed", "randomize_seed", "settings_json"]
        assert [r["label"] for r in named[name]["returns"]] == ["glb_files", "report"]


# ----------------------------------------------------------------------------- good runs


def test_text_to_3d_returns_glb_and_metric_rows(app_server, first_run):
    files, report = first_run["files"], first_run["report"]
    assert len(files) == 1 and files[0].endswith(".glb")
    assert glb_vertex_count(files[0]) == SPHERE_VERTICES[2]
    assert report["seed"] == 11 and report["inputs"]["prompt"] == "a red ceramic mug"
    assert report["runs"] == [
        {"method": SPHERE, "status": "done", "run_id": first_run["run_id"], "error": None, "file_index": 0}
    ]
    names = metric_names(report, SPHERE)
    assert {"vertices", "faces", "watertight", "seconds_total"} <= names
    assert any(n.startswith("seconds_") and n != "seconds_total" for n in names)
    values = {m["metric"]: m for m in report["metrics"]}
    assert values["vertices"]["value"] == SPHERE_VERTICES[2]
    assert values["watertight"]["value"] is True and values["watertight"]["arrow"] == "↑"
    assert values["seconds_total"]["arrow"] == "↓"
    stored = Store(app_server.db).get_run(first_run["run_id"])
    assert stored["status"] == "done" and stored["seed"] == 11


def test_settings_reach_the_method_and_the_record(app_server, app_client, checkpoint_dir):
    settings = settings_json(**{SPHERE: {"subdivisions": 1, "checkpoint": str(checkpoint_dir)}})
    files, report = text_to_3d(app_client, "a small ball", [SPHERE], seed=5, settings=settings)
    assert glb_vertex_count(files[0]) == SPHERE_VERTICES[1]
    record = Store(app_server.db).get_run(report["runs"][0]["run_id"])
    assert record["settings"]["subdivisions"] == 1 and record["settings"]["checkpoint"] == str(checkpoint_dir)
    assert record["settings"]["seed"] == 5


def test_randomized_seed_is_reported(app_client):
    _, report = text_to_3d(app_client, "a cube", [SPHERE], seed=0, randomize=True)
    assert 0 <= report["seed"] < 2**31


def test_two_methods_one_fails_the_other_still_runs(app_client):
    settings = settings_json(**{SPHERE: {"fail": True}})
    files, report = text_to_3d(app_client, "a chair", [SPHERE, "app-test-points"], settings=settings)
    failed, done = report["runs"]
    assert failed["status"] == "failed" and "asked to fail" in failed["error"]
    assert done["status"] == "done" and done["file_index"] == 0
    assert len(files) == 1 and glb_vertex_count(files[0]) == SPHERE_VERTICES[2]
    assert metric_names(report, "app-test-points") >= {"points", "seconds_total"}
    assert metric_names(report, SPHERE) == set()


def test_image_to_3d_with_an_example_image(app_client):
    files, report = app_client.predict(
        handle_file(str(EXAMPLES / "red_mug.png")), [SPHERE], 1, False, "{}", api_name="/image_to_3d"
    )
    assert glb_vertex_count(files[0]) == SPHERE_VERTICES[2]
    assert report["inputs"]["image"]["name"] == "red_mug.png" and report["inputs"]["image"]["mode"] == "RGBA"


def test_video_to_3d_with_example_views(app_client):
    views = sorted((EXAMPLES / "turntable").glob("view_*.jpg"))
    files, report = app_client.predict(
        [handle_file(str(p)) for p in views], [SPHERE], 2, False, "{}", api_name="/video_to_3d"
    )
    assert len(files) == 1 and report["inputs"]["frames"] == len(views)


# ----------------------------------------------------------------------------- bad input


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


BAD_TEXT = [
    ("empty prompt", "   ", [SPHERE], "{}", "the prompt is empty"),
    ("10,000-character prompt", "a" * 10_000, [SPHERE], "{}", "the limit is 2000"),
    ("unknown method", "a mug", ["no-such-method"], "{}", "unknown method 'no-such-method'"),
    ("no method", "a mug", [], "{}", "no method was chosen"),
    (
        "missing checkpoint",
        "a mug",
        [SPHERE],
        settings_json(**{SPHERE: {"checkpoint": "/nonexistent/trilemma-checkpoint"}}),
        "checkpoint directory trilemma-checkpoint does not exist",  # messages name no server path
    ),
    ("unavailable method", "a mug", ["app-test-unavailable"], "{}", "not installed: trilemma_no_such_package"),
    ("setting out of range", "a mug", [SPHERE], settings_json(**{SPHERE: {"subdivisions": 9}}), "above its maximum"),
    ("unknown setting", "a mug", [SPHERE], settings_json(**{SPHERE: {"colour": "red"}}), "unknown setting(s) colour"),
    ("settings not JSON", "a mug", [SPHERE], "{subdivisions: 2", "settings must be a JSON object"),
    ("settings for another method", "a mug", [SPHERE], settings_json(other={}), "not among the chosen methods"),
    ("too many methods", "a mug", [SPHERE, "app-test-points", "a", "b", "c"], "{}", "at most 4"),
]


@pytest.mark.parametrize(
    ("prompt", "methods", "settings", "reason"), [c[1:] for c in BAD_TEXT], ids=[c[0] for c in BAD_TEXT]
)
def test_bad_text_requests_fail_clearly_and_store_nothing(
    app_server, app_client, first_run, prompt, methods, settings, reason
):
    store = Store(app_server.db)
    before = len(store.runs(limit=10_000))
    with pytest.raises(AppError) as err:
        text_to_3d(app_client, prompt, methods, settings=settings)
    assert reason in str(err.value)
    assert len(store.runs(limit=10_000)) == before, "bad input must be refused before anything is stored"
    _assert_first_run_intact(store, first_run)


BAD_FILES = [
    ("non-image renamed .png", "notes.png", b"these are my notes, not pixels\n", "notes.png is not an image"),
    ("zero-byte file", "empty.png", b"", "empty.png is empty (0 bytes)"),
]


@pytest.mark.parametrize(("name", "data", "reason"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_image_uploads_fail_clearly(app_server, app_client, first_run, tmp_path, name, data, reason):
    store = Store(app_server.db)
    before = len(store.runs(limit=10_000))
    with pytest.raises(AppError) as err:
        app_client.predict(handle_file(_write(tmp_path, name, data)), [SPHERE], 0, False, "{}", api_name="/image_to_3d")
    assert reason in str(err.value)
    assert len(store.runs(limit=10_000)) == before
    _assert_first_run_intact(store, first_run)


def test_bad_video_uploads_fail_clearly(app_client, tmp_path):
    cases = [
        ([_write(tmp_path, "clip.mp4", b"")], "clip.mp4 is empty (0 bytes)"),
        ([str(EXAMPLES / "red_mug.png")], "at least 2 images"),
        ([_write(tmp_path, "a.txt", b"x"), str(EXAMPLES / "red_mug.png")], "a.txt is neither a video"),
    ]
    for paths, reason in cases:
        with pytest.raises(AppError) as err:
            app_client.predict([handle_file(p) for p in paths], [SPHERE], 0, False, "{}", api_name="/video_to_3d")
        assert reason in str(err.value)


def test_app_still_serves_after_bad_input(app_server, app_client, first_run):
    with pytest.raises(AppError):
        text_to_3d(app_client, "", [SPHERE])
    files, report = text_to_3d(app_client, "a blue chair", [SPHERE])
    assert report["runs"][0]["status"] == "done" and glb_vertex_count(files[0]) == SPHERE_VERTICES[2]
    _assert_first_run_intact(Store(app_server.db), first_run)


def _assert_first_run_intact(store: Store, first_run: dict) -> None:
    run = store.get_run(first_run["run_id"])
    assert run["status"] == "done"
    assert Path(run["asset_path"]).exists()
    assert store.metrics(first_run["run_id"]) == first_run["metrics"]
    assert store.integrity_ok()


# ----------------------------------------------------------------------------- the UI handler, in process


def test_ui_handler_streams_slots_and_panel(app_env, app_methods):
    from ui import build_modality_tab
    from ui.generate import _show_result

    with gr.Blocks():
        tab = build_modality_tab("text")
    chosen = [SPHERE, "app-test-points", "app-test-unavailable"]
    values = []
    for form in tab.forms:
        for name, component in zip(form.names, form.components, strict=True):
            value = component.value
            if form.method_id == SPHERE and name in ("steps", "delay"):
                value = {"steps": 6, "delay": 0.1}[name]
            values.append(value)
    updates = list(tab.handler("a red mug", chosen, 42, False, False, *values))
    assert len(updates) >= 4, "the handler streams while methods run"
    n_slot_outputs = 3  # column, result, status
    first, last = updates[0], updates[-1]
    assert first[0]["visible"] is False and first[1] == 42 and last[1] == 42

    def slot(update, i):
        return update[2 + i * n_slot_outputs : 2 + (i + 1) * n_slot_outputs]

    assert any("sample" in slot(u, 0)[2] for u in updates), "progress reaches the slot's status line"
    sphere, points, refused, unused = (slot(last, i) for i in range(4))
    results = [slot(u, 0)[1] for u in updates]
    assert results[0] == {"glb": None, "files": [], "label": "Test sphere", "id": None}, "a new run clears the viewer"
    assert results[-1]["glb"].endswith("asset.glb") and results[-1]["files"][0] == results[-1]["glb"]
    assert results[-1]["id"] and "app-test-sphere" in results[-1]["id"], "the rating row rates this run"
    viewer, files, renders = _show_result(results[-1])
    assert viewer["value"] == results[-1]["glb"] and viewer["label"] == "Test sphere" and files["visible"] is True
    captions = [caption for _, caption in renders["value"]]  # what the metrics saw, under the viewer
    assert renders["visible"] and captions[:2] == ["colour 0°", "colour 45°"] and "geometry 0°" in captions
    assert results[-1]["files"][-1].endswith("turntable.gif")
    assert points[1]["files"][1].endswith("points.ply"), "point clouds also offer a .ply"
    assert "Done" in sphere[2] and "Done" in points[2]
    assert "Not run" in refused[2] and "trilemma_no_such_package" in refused[2]
    assert unused[0]["visible"] is False
    panel, matrix, metric_files = last[-3:]  # long-form rows, the comparison matrix, their CSV/JSON
    assert "<th scope='col'>Test sphere</th><th scope='col'>Test points</th>" in matrix
    assert [Path(f).name for f in metric_files] == ["metrics.csv", "metrics.json"]
    assert len(Path(metric_files[0]).read_text().splitlines()) == len(panel) + 1
    assert {row[0] for row in panel} == {"Test sphere", "Test points"}
    vertices = [row for row in panel if row[0] == "Test sphere" and row[1] == "vertices"]
    assert vertices == [["Test sphere", "vertices", str(SPHERE_VERTICES[2]), "", ""]]
    assert any(row[1] == "seconds_total" and row[4] == "↓" for row in panel)


def test_ui_handler_shows_bad_input_in_its_notice(app_env, app_methods):
    from ui import build_modality_tab

    with gr.Blocks():
        tab = build_modality_tab("text")
    values = [c.value for f in tab.forms for c in f.components]
    with pytest.warns(UserWarning, match="the prompt is empty"):
        (update,) = list(tab.handler("", [SPHERE], 0, False, False, *values))
    assert update[0]["visible"] is True and "the prompt is empty" in update[0]["value"]
    assert all(u == gr.skip() for u in update[1:]), "nothing else changes"


# ----------------------------------------------------------------------------- pieces


def test_upload_previews_say_what_was_uploaded(tmp_path):
    from ui import inputs
    from ui.generate import _preview_image, _preview_views

    image, note = _preview_image(str(EXAMPLES / "red_mug.png"))
    assert image.mode == "RGBA" and note == "red_mug.png: 256×256 px, transparent background"
    image, note = _preview_image(_write(tmp_path, "notes.png", b"not pixels"))
    assert image is None and note.startswith("⚠️ notes.png is not an image")
    views = [str(p) for p in sorted((EXAMPLES / "turntable").glob("view_*.jpg"))]
    gallery, note, box = _preview_views(views)
    assert gallery == views[: inputs.PREVIEW_VIEWS] and note == "24 views, 224×224 px"  # thumbnails: the first few
    assert box["label"] == "Video or views: 24 files"  # the box shows a few; its label says how many


def test_unavailable_methods_are_listed_with_their_reason(app_methods):
    from ui.generate import method_choices

    choices, ticked, notes = method_choices("text")
    labels = dict((value, label) for label, value in choices)
    assert labels[SPHERE] == "Test sphere (~1 s)"  # its expected time here
    # listed once, by label, with its reason, and never as a choice (it cannot be ticked)
    assert "app-test-unavailable" not in labels and "app-test-unavailable" not in ticked
    assert [n for n in notes if "Test unavailable" in n] == [
        "**Test unavailable**: Python package(s) not installed: trilemma_no_such_package"
    ]


def test_settings_form_maps_every_kind_and_back(app_methods):
    from ui.settings_form import build_settings_form

    sphere = app_methods[SPHERE]
    with gr.Blocks():
        form = build_settings_form(sphere(), "text")
    kinds = dict(zip(form.names, (type(c).__name__ for c in form.components), strict=True))
    assert kinds == {
        "checkpoint": "Textbox",
        "subdivisions": "Slider",
        "steps": "Slider",
        "shape": "Dropdown",
        "fail": "Checkbox",
        "delay": "Slider",  # advanced settings come last
    }
    assert list(kinds)[-1] == "delay" and "seed" not in kinds
    assert form.accordion is not None and form.accordion.open is False
    values = form.to_settings([c.value for c in form.components])
    assert sphere.Settings.from_dict({**values, "subdivisions": 3.0}).subdivisions == 3


def test_number_without_bounds_is_a_number_field():
    from ui.settings_form import component_for

    spec = {"name": "n", "type": "int", "default": 3, "label": "N", "help": "", "min": 1, "max": None, "step": None}
    with gr.Blocks():
        component = component_for(spec)
    assert isinstance(component, gr.Number) and component.minimum == 1 and component.precision == 0


def test_seed_and_settings_parsing():
    from ui import jobs

    assert jobs.resolve_seed(7.0, False) == 7 and jobs.resolve_seed(None, False) == 0
    assert 0 <= jobs.resolve_seed(3, True) <= jobs.MAX_SEED
    for bad in (-1, 2**31, 1.5, "x"):
        with pytest.raises(InvalidSettings):
            jobs.resolve_seed(bad, False)
    assert jobs.parse_settings_json(" ") == {} and jobs.parse_settings_json('{"a": {"b": 1}}') == {"a": {"b": 1}}
    with pytest.raises(InvalidSettings, match="map each method id"):
        jobs.parse_settings_json('{"a": 1}')
    with pytest.raises(InvalidInput, match="no method was chosen"):
        jobs.plan_job("text", "a mug", None)


def test_gpu_duration_comes_from_the_methods_estimates(app_methods):
    from ui import jobs

    job = jobs.plan_job("text", "a mug", [SPHERE, "app-test-unavailable"], 0, False)
    assert job.runs[0].gpu_seconds == app_methods[SPHERE].seconds_gpu and job.runs[1].error
    assert job.gpu_duration() == jobs.GPU_SECONDS_MIN
    job.runs[0].gpu_seconds = 1000
    assert job.gpu_duration() == jobs.GPU_SECONDS_MAX


def test_panel_formats_values():
    from eval.judging.protocol import MetricRow
    from ui.panel import table

    rows = table(
        [("M", MetricRow("watertight", True, "", True)), ("M", MetricRow("seconds_total", 1.234567, "s", False))]
    )
    assert rows == [["M", "watertight", "yes", "", "↑"], ["M", "seconds_total", "1.235", "s", "↓"]]


def test_methods_tab_cards_show_the_declared_data(app_methods):
    from ui.methods_tab import cards_html

    page = cards_html()
    for text in (
        "Test sphere",
        "app-test-sphere",
        "procedural (tests)",
        "Apache-2.0",
        "unavailable",
        "trilemma_no_such_package",
    ):
        assert text in page
    assert "<script" not in cards_html([{**_card(), "label": "<script>x</script>"}])


def _card() -> dict:
    from ui.methods_tab import method_cards

    return next(c for c in method_cards() if c["id"] == SPHERE)


def test_hosting_server_name_port_and_gpu_decorator(monkeypatch):
    from ui import hosting

    for key in ("SPACE_ID", "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT"):
        monkeypatch.delenv(key, raising=False)
    assert hosting.server_name() == "127.0.0.1" and hosting.server_port() == 7860

    def fn(x):
        return x

    assert hosting.gpu(duration=10)(fn) is fn, "spaces.GPU is a no-op locally"
    monkeypatch.setenv("SPACE_ID", "someone/trilemma3d")
    assert hosting.server_name() == "0.0.0.0"
    monkeypatch.setenv("GRADIO_SERVER_NAME", "10.0.0.5")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "9000")
    assert hosting.server_name() == "10.0.0.5" and hosting.server_port() == 9000


# ----------------------------------------------------------------------------- the real Shap-E, tiny weights


def test_text_to_3d_with_tiny_shap_e(app_server, app_client, tiny_shap_e_text):
    importlib.import_module("methods.shap_e")  # registers "shap-e" (once the registry lists it, this is a no-op)
    settings = {"shap-e": {"checkpoint": str(tiny_shap_e_text), "num_inference_steps": 2, "frame_size": 32}}
    files, report = text_to_3d(app_client, "a red chair", ["shap-e"], seed=0, settings=json.dumps(settings))
    assert report["runs"][0]["status"] == "done"
    values = {m["metric"]: m["value"] for m in report["metrics"]}
    assert values["vertices"] > 100 and glb_vertex_count(files[0]) == values["vertices"]
    assert {"seconds_load", "seconds_sample", "seconds_decode", "faces", "watertight"} <= set(values)
    record = Store(app_server.db).get_run(report["runs"][0]["run_id"])
    assert record["settings"]["num_inference_steps"] == 2 and record["settings"]["checkpoint"] == str(tiny_shap_e_text)
