"""The comparative study: study files, resumable runs, executors, the report and the Study tab.

The tiny study: test-sphere and test-cube (below) x 3 prompts x 2 seeds = 12 cells; the cube is asked
to fail on the teapot prompt, so 2 cells fail and 10 finish.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import trimesh

from eval.runs.store import Store
from eval.study import (
    LocalExecutor,
    RayExecutor,
    Study,
    StudyFileError,
    StudyInterrupted,
    bootstrap_ci,
    build_report,
    finished_cells,
    load_study,
    read_prompts,
    run_study,
)
from eval.study.cells import Cell
from eval.study.plots import plotly_go
from eval.study.prompts import provenance
from eval.study.tables import summarize
from methods.base import Asset, Mesh, Method, Progress, Settings, setting
from methods.registry import register, unregister
from tests import procedural

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ("a ball", "a teapot", "a box")


class ProceduralCube(Method):
    """A second tiny method: a cube whose vertices the seed jitters (so seeds differ)."""

    id = "test-cube"
    label = "Test cube"
    modalities = ("text", "video")
    family = "procedural (tests)"
    representation = "mesh"
    seconds_cpu = 0.05
    interrupt_on: ClassVar[str] = ""  # a test sets it: Ctrl-C arrives while this prompt runs

    @dataclass(kw_only=True)
    class Settings(Settings):
        size: float = setting(1.0, min=0.1, max=10.0)
        fail_on: str = setting("", help="raise when the prompt contains this text (tests failures)")
        delay_s: float = setting(0.0, min=0.0, max=10.0, help="seconds of progress events first (tests budgets)")
        block_s: float = setting(0.0, min=0.0, max=60.0, help="seconds without any event (tests the hard timeout)")

    def run(self, inputs, settings):
        import trimesh

        prompt = inputs.prompt or inputs.name
        yield Progress("build", 0.0, "building a cube")
        if self.interrupt_on and self.interrupt_on in prompt:
            raise KeyboardInterrupt
        if settings.fail_on and settings.fail_on in prompt:
            raise RuntimeError(f"asked to fail on {settings.fail_on!r}")
        time.sleep(settings.block_s)
        steps = round(settings.delay_s / 0.05)
        for i in range(steps):
            time.sleep(0.05)
            yield Progress("build", i / steps, "waiting")
        box = trimesh.creation.box(extents=[settings.size] * 3)
        rng = np.random.default_rng(settings.seed)
        vertices = box.vertices + rng.normal(scale=0.05, size=box.vertices.shape)
        return Asset(mesh=Mesh(vertices, box.faces, rng.random((len(vertices), 3))), stage_seconds={"build": 0.01})


@pytest.fixture(scope="module", autouse=True)
def tiny_methods():
    procedural.install()
    register(ProceduralCube)
    yield
    unregister(ProceduralCube.id)
    procedural.uninstall()


def write_study(folder: Path, name: str = "tiny") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prompts.txt").write_text("# three prompts\n" + "\n".join(PROMPTS) + "\n")
    trimesh.creation.icosphere(subdivisions=2).export(folder / "reference.ply")  # quality: geometry against it
    text = f"""\
name: {name}
output: {folder / "out"}
store: {folder / "study.db"}
seeds: [0, 1]
budget_s: 60
inputs:
  - prompts: prompts.txt
    reference_mesh: reference.ply
methods:
  - id: test-sphere
    settings: {{subdivisions: 1}}
  - id: test-cube
    settings: {{fail_on: teapot}}
protocol:
  options: {{samples: 2000}}
report:
  renders: 1
  views: 2
  bootstrap: 200
"""
    path = folder / "study.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory):
    """The tiny study, run once in process, with its report."""
    path = write_study(tmp_path_factory.mktemp("study"))
    study = load_study(path)
    summary = run_study(study, progress=False)
    store = Store(study.store)
    report = build_report(study, store)
    return study, store, summary, report


def _runs(store: Store, study: str) -> list[dict]:
    return [dict(r) for r in store.read("SELECT * FROM runs WHERE study = ? ORDER BY created", (study,))]


# ----------------------------------------------------------------------------- running


def test_run_is_interrupted_and_resumed_without_redoing_finished_cells(tmp_path: Path, monkeypatch):
    study = load_study(write_study(tmp_path))
    assert len(study.cells) == 12 and [c.variant for c in study.cells[:1]] == ["test-sphere"]
    monkeypatch.setattr(ProceduralCube, "interrupt_on", "a box")  # the 11th cell: sphere x 6, cube x 4 before it
    with pytest.raises(StudyInterrupted) as caught:
        run_study(study, progress=False)
    store = Store(study.store)
    assert (caught.value.summary.done, caught.value.summary.failed) == (8, 2)
    first = _runs(store, "tiny")
    assert [r["status"] for r in first].count("done") == 8 and len(first) == 10  # the interrupted cell left nothing
    assert store.integrity_ok()
    assert not (set(os.listdir(study.output / "runs")) - {r["id"] for r in first})  # nor a folder

    monkeypatch.setattr(ProceduralCube, "interrupt_on", "")
    resumed = run_study(study, progress=False)
    assert (resumed.skipped, resumed.done, resumed.failed) == (10, 2, 0)
    runs = _runs(store, "tiny")
    assert len(runs) == 12 and len({r["cell_key"] for r in runs}) == 12
    assert {r["id"] for r in first} <= {r["id"] for r in runs}  # finished cells kept their runs
    failed = [r for r in runs if r["status"] == "failed"]
    assert len(failed) == 2 and all("asked to fail on 'teapot'" in r["error"] for r in failed)
    assert all(json.loads(r["inputs"])["prompt"] == "a teapot" for r in failed)
    done = next(r for r in runs if r["status"] == "done")
    assert Path(done["asset_path"]).is_file() and (Path(done["asset_path"]).parent / "run.json").is_file()
    assert len(store.metrics(done["id"])) > 5 and json.loads(done["inputs"])["prompt_set"] == "prompts"

    again = run_study(study, progress=False)
    assert (again.skipped, again.done) == (12, 0)
    retried = run_study(study, progress=False, retry_failed=True)
    assert (retried.skipped, retried.failed) == (10, 2)
    manifest = json.loads((study.output / "manifest.json").read_text())
    assert manifest["name"] == "tiny" and manifest["running"] is False and manifest["last_run"]["failed"] == 2


def _one_cube(tmp_path: Path, name: str, budget_s: float, settings: str) -> Study:
    """A study of one cell: test-cube on 'a box' with ``budget_s`` and ``settings`` (YAML flow)."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\noutput: {tmp_path / 'out'}\nstore: {tmp_path / 's.db'}\ninputs:\n  - prompts: ['a box']\n"
        f"methods:\n  - id: test-cube\n    budget_s: {budget_s}\n    settings: {settings}\n"
    )
    return load_study(path)


def test_a_cell_past_its_budget_is_recorded_as_a_timeout(tmp_path: Path):
    study = _one_cube(tmp_path, "slow", 0.2, "{delay_s: 3}")
    summary = run_study(study, progress=False)
    assert summary.timeouts == 1
    run = _runs(Store(study.store), "slow")[0]
    assert run["status"] == "failed" and run["error"].startswith("timeout: the cell ran past its 0.2 s budget")
    assert json.loads((Path(study.output) / "runs" / run["id"] / "run.json").read_text())["error"].startswith("timeout")


def test_a_worker_that_stops_answering_is_killed_at_budget_plus_grace(tmp_path: Path):
    study = _one_cube(tmp_path, "stuck", 0.5, "{block_s: 60}")
    summary = run_study(study, executor=LocalExecutor([""], grace_s=0.5), progress=False)
    assert summary.timeouts == 1
    runs = _runs(Store(study.store), "stuck")
    assert len(runs) == 1 and all(r["status"] == "failed" and r["error"].startswith("timeout") for r in runs)


def test_ctrl_c_on_the_command_line_exits_130_and_leaves_a_consistent_store(tmp_path: Path):
    (tmp_path / "p.txt").write_text("a box\na cone\n")
    path = tmp_path / "study.yaml"
    path.write_text(
        f"name: sigint\noutput: {tmp_path / 'out'}\nstore: {tmp_path / 's.db'}\nseeds: 2\ninputs: [p.txt]\n"
        "methods:\n  - id: test-cube\n    settings: {delay_s: 1}\n"
    )
    code = (
        "import sys; from methods.registry import register; from tests.test_study import ProceduralCube;"
        "register(ProceduralCube); from eval.__main__ import main; sys.exit(main(sys.argv[1:]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "study", "run", str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as from a terminal, even under CI
    )
    deadline = time.monotonic() + 600  # a guard against a hang, not a speed bound: it breaks on the first done run
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if (tmp_path / "s.db").exists() and Store(tmp_path / "s.db").read("SELECT 1 FROM runs WHERE status = 'done'"):
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "run the same command again to resume" in err
    store = Store(tmp_path / "s.db")
    statuses = [r["status"] for r in _runs(store, "sigint")]
    assert store.integrity_ok() and 1 <= len(statuses) < 4 and set(statuses) == {"done"}


# ----------------------------------------------------------------------------- the report


def test_report_folder_has_tables_and_plots_with_the_right_row_counts(finished):
    study, store, summary, report = finished
    assert (summary.done, summary.failed) == (10, 2)
    out = report.out_dir
    cells = pd.read_csv(out / "cells.csv")
    assert len(cells) == 12 and cells["status"].value_counts().to_dict() == {"done": 10, "failed": 2}
    expected_rows = sum(len(store.metrics(r)) for r in cells.loc[cells["status"] == "done", "run_id"])
    results = pd.read_parquet(out / "results.parquet")
    assert len(results) == expected_rows == len(pd.read_csv(out / "results.csv"))
    assert results.groupby("cell_key").ngroups == 10 and set(results["variant"]) == {c.variant for c in study.cells}

    s = report.summary
    watertight = s[s["metric"] == "watertight"].set_index("method")
    assert watertight.loc["test-sphere", "n"] == 6 and watertight.loc["test-cube", "n"] == 4
    diversity = s[s["metric"] == "seed_diversity_chamfer_l1"].set_index("method")["mean"]
    assert diversity["test-sphere"] == 0 and diversity["test-cube"] > 0  # the cube's seeds jitter it

    for name in (
        "report.md",
        "report.html",
        "summary.csv",
        "tables/cost.tex",
        "tables/setup.tex",
        "plots/quality_vs_time.png",
        "plots/quality_vs_diversity.png",
        "plots/dist_seconds_total.png",
        "renders/prompts_001.png",
    ):
        assert (out / name).is_file(), name
    if plotly_go() is not None:  # the interactive versions need plotly
        assert all((out / "plots" / f"{p}.html").is_file() for p in ("quality_vs_time", "quality_vs_diversity"))
    geometry = sorted((out / "tables").glob("geometry*.tex"))  # five metrics a table: they must fit a page
    assert geometry and all(p.read_text().count("\\\\") == 3 for p in geometry)  # header + two variants
    assert "\\toprule" in geometry[0].read_text() and "test-sphere" in geometry[0].read_text()
    md = (out / "report.md").read_text()
    assert "## Experimental setup" in md and "## Failures" in md and md.count("asked to fail on 'teapot'") == 2
    assert "three prompts" in md  # the prompt file's own header is its provenance


def test_bootstrap_interval_on_a_seeded_synthetic_table_matches_a_hand_computation():
    values = np.random.default_rng(7).normal(size=12)
    table = pd.DataFrame(
        {
            "method": "m",
            "variant": ["a"] * 5 + ["b"] * 7,
            "group": "image",
            "metric": "score",
            "unit": "",
            "higher_is_better": "higher",
            "value": values,
        }
    )
    summary = summarize(table, n_resamples=500, confidence=0.9, seed=3).set_index("variant")
    for variant, x in (("a", values[:5]), ("b", values[5:])):
        draws = np.random.default_rng(3).integers(0, len(x), size=(500, len(x)))
        means = sorted(sum(float(x[i]) for i in row) / len(x) for row in draws)

        def quantile(q: float, ordered: list[float] = means) -> float:  # numpy's "linear": position q (n - 1)
            pos = q * (len(ordered) - 1)
            lo = int(pos)
            return ordered[lo] + (pos - lo) * (ordered[lo + 1] - ordered[lo])

        row = summary.loc[variant]
        assert row["n"] == len(x) and row["mean"] == pytest.approx(sum(x) / len(x), abs=1e-12)
        assert row["low"] == pytest.approx(quantile(0.05), abs=1e-12)
        assert row["high"] == pytest.approx(quantile(0.95), abs=1e-12)
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0) and bootstrap_ci([5.0]) == (5.0, 5.0, 5.0)
    assert np.isnan(bootstrap_ci([np.nan])[0])


# ----------------------------------------------------------------------------- executors


def _deterministic(results: pd.DataFrame) -> pd.DataFrame:
    timing = results["metric"].str.startswith(("seconds_", "peak_"))
    keep = ["cell_key", "variant", "input_id", "seed", "metric", "value_text"]
    return results.loc[~timing, keep].sort_values(keep).reset_index(drop=True)


@pytest.mark.parametrize("kind", ["local", "ray"])
def test_executors_give_the_same_results_table_as_in_process(kind: str, finished, tmp_path: Path):
    study, _, _, baseline = finished
    if kind == "ray":
        pytest.importorskip("ray")
        executor = RayExecutor(num_cpus=2)  # a local Ray instance, as ray.init(num_cpus=2)
    else:
        executor = LocalExecutor(["", ""])  # two worker processes (CPU: no GPU here)
    other = load_study(write_study(tmp_path))
    summary = run_study(other, executor=executor, progress=False)
    assert (summary.done, summary.failed) == (10, 2)
    report = build_report(other, Store(other.store), renders=False)
    pd.testing.assert_frame_equal(_deterministic(report.results), _deterministic(baseline.results))
    assert report.cells["status"].tolist() == baseline.cells["status"].tolist()
    assert all(Path(p).is_file() and Path(p).is_relative_to(other.output) for p in report.cells["asset_path"] if p)


# ----------------------------------------------------------------------------- study files


BAD_STUDIES = {
    "unknown method": ("methods:\n  - id: test-sphere\n  - id: no-such-method\n", 9, "unknown method 'no-such-method'"),
    "missing prompt file": (
        "inputs:\n  - prompts: missing.txt\nmethods:\n  - id: test-sphere\n",
        5,
        "no such prompt file",
    ),
    "negative budget": ("methods:\n  - id: test-sphere\n    budget_s: -5\n", 9, "budget_s must be a positive number"),
    "duplicated cell": (
        "methods:\n  - id: test-sphere\n  - id: test-sphere\n    settings: {radius: 1.0}\n",
        9,
        "duplicated cell",
    ),
    "setting out of range": (
        "methods:\n  - id: test-sphere\n    settings:\n      subdivisions: 9\n",
        10,
        "subdivisions=9 is above its maximum 4",
    ),
    "duplicated seed": ("seeds: [1, 2, 1]\nmethods:\n  - id: test-sphere\n", 6, "seed 1 is listed twice"),
    "caption outside the shape set": (
        "inputs:\n  - captions: [a red cube, a flying car]\nmethods:\n  - id: test-sphere\n",
        5,
        "'a flying car' is not a caption of the procedural shape set",
    ),
    "unknown caption split": (
        "inputs:\n  - captions: everything\nmethods:\n  - id: test-sphere\n",
        5,
        "captions is one of heldout, heldout-all, train",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_STUDIES))
def test_bad_study_files_are_rejected_with_the_line_at_fault(case: str, tmp_path: Path):
    body, line, message = BAD_STUDIES[case]
    (tmp_path / "p.txt").write_text("a ball\n")
    header = f"name: bad\noutput: {tmp_path / 'out'}\nstore: {tmp_path / 's.db'}\n"
    if not body.startswith("inputs"):
        header += (
            "seeds: 2\ninputs:\n  - prompts: p.txt\n"
            if not body.startswith("seeds")
            else "inputs:\n  - prompts: p.txt\n"
        )
    path = tmp_path / "study.yaml"
    path.write_text(header + body)
    with pytest.raises(StudyFileError) as caught:
        load_study(path)
    assert f"{path}:{line}: " in str(caught.value) and message in str(caught.value), str(caught.value)
    assert not (tmp_path / "s.db").exists() and not (tmp_path / "out").exists()  # nothing ran


def test_cli_check_run_report_and_a_bad_file(finished, tmp_path: Path, capsys):
    from eval.study.cli import main

    study = load_study(write_study(tmp_path, name="cli"))
    assert main(["check", str(study.path)]) == 0
    assert "12 cells" in capsys.readouterr().out
    assert main(["run", str(study.path), "--quiet"]) == 0
    assert main(["report", str(study.path), "--no-renders"]) == 0
    assert (study.output / "report" / "results.parquet").is_file()
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ninputs: [p.txt]\nmethods: [nope]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "eval", "study", "check", str(bad)], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2 and f"{bad}:2: no such prompt file" in proc.stderr
    assert f"{bad}:3: unknown method 'nope'" in proc.stderr


# ----------------------------------------------------------------------------- inputs


def test_literature_prompt_sets_are_read_with_their_provenance(shared_data: Path):
    prompts = shared_data / "prompts"
    counts = {
        "dreamfields_object_centric_coco_val_153.txt": 153,
        "dreamfields_object_centric_coco_val_153_raw.json": 153,
        "dreamfusion_gallery_415.txt": 415,
        "threestudio_prompt_library_dreamfusion.json": 415,
        "t3bench_prompt_single.txt": 100,
        "t3bench_prompt_surr.txt": 100,
        "t3bench_prompt_multi.txt": 100,
        "gpteval3d_110.txt": 110,
        "gpteval3d_tournament_v0_prompts.json": 110,
    }
    for name, n in counts.items():
        read = read_prompts(prompts / name)
        assert len(read) == n and len({p.text for p in read}) == n, name
    assert read_prompts(prompts / "dreamfusion_gallery_415.txt")[0].text == "a 20-sided die made out of glass"
    assert "Dream Fields" in provenance(prompts / "dreamfields_object_centric_coco_val_153.txt")
    assert "PROVENANCE.md" in provenance(prompts / "gpteval3d_110.txt")
    own = read_prompts(ROOT / "assets" / "prompts" / "trilemma_objects.txt")
    assert len(own) == 12 and "written by the Trilemma3D project" in provenance(
        ROOT / "assets/prompts/trilemma_objects.txt"
    )


def test_image_folders_and_multi_view_scenes_as_inputs(shared_data: Path, tmp_path: Path):
    path = tmp_path / "mixed.yaml"
    path.write_text(
        f"name: mixed\noutput: {tmp_path / 'out'}\nstore: {tmp_path / 's.db'}\ninputs:\n"
        f"  - prompts: {shared_data / 'prompts' / 'threestudio_prompt_library_dreamfusion.json'}\n    limit: 2\n"
        f"  - images: {shared_data / 'images' / 'triposr'}\n    limit: 2\n"
        f"  - scene: {shared_data / 'nerf_synthetic_lego_100'}\n    frames: 4\n"
        f"    reference_mesh: {shared_data / 'meshes' / 'khronos_gltf_via_trimesh' / 'Duck.glb'}\n"
        "methods: [test-sphere, test-cube]\n"
    )
    study = load_study(path)
    by_modality = {m: sum(c.modality == m for c in study.cells) for m in ("text", "image", "video")}
    assert by_modality == {
        "text": 4,
        "image": 2,
        "video": 1,
    }  # the cube takes text and video, the sphere text and image
    scene = study.item("nerf_synthetic_lego_100/001").load()
    assert scene.poses.shape == (4, 4, 4) and scene.intrinsics[0, 0] == pytest.approx(138.889, abs=1e-3)
    cell = next(c for c in study.cells if c.modality == "video")
    assert study.context_for(cell)["reference_mesh"].endswith("Duck.glb")


def test_the_shipped_example_studies_validate():
    pytest.importorskip("methods.families")
    import methods.families  # noqa: F401  (registers vae, gan, ddpm, score-sde)
    import methods.point_e  # noqa: F401
    import methods.shap_e  # noqa: F401

    for path in sorted((ROOT / "assets" / "studies").glob("*.yaml")):
        if "/shared/data/" in path.read_text() and not (ROOT.parent / "shared" / "data").is_dir():
            continue  # a study on the shared test data (video's lego scene) where that data is absent
        study = load_study(path)
        assert study.cells and all(isinstance(c, Cell) for c in study.cells), path


# ----------------------------------------------------------------------------- the Study tab


def test_study_tab_lists_the_study_shows_its_table_and_sends_a_pair_to_the_arena(finished):
    import gradio as gr

    from eval import ratings
    from ui import study_tab

    study, store, _, _ = finished
    root = Path(study.output).parent
    assert study_tab.find_studies(root) == {"tiny": str(study.output)}
    with gr.Blocks():
        tab = study_tab.build_study_tab(root)
    assert tab.study.value == "tiny"  # studies are chosen by name, never by a client-supplied folder
    text, table, cells, images, choices, variants = study_tab.view_values(str(study.output))
    assert "12 cells" in text and len(table) == 2 and len(cells) == 12 and len(choices) == 10
    assert any(p.endswith("quality_vs_time.png") for p in images) and len(variants) == 2
    view = study_tab.load_view(study.output)
    sphere = next(run for _, run in choices if "test-sphere" in run)
    left, right = study_tab.pair_runs(view.cells, sphere, "test-cube")
    served = ratings.serve_pair(store, "anon-study-test", runs=(left, right))
    assert {served.left["id"], served.right["id"]} == {left, right}
    assert finished_cells(store, "tiny")[view.cells.loc[view.cells["run_id"] == left, "cell_key"].iloc[0]]["id"] == left
