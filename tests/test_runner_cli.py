import json
import os
import subprocess
import sys
from pathlib import Path

import pygltflib
import pytest

from eval.runs.runner import execute, run_to_completion
from eval.runs.store import Store
from methods.base import Inputs, InvalidInput, InvalidSettings, UnknownMethod
from tests import procedural

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sphere_method():
    procedural.install()
    yield procedural.ProceduralSphere.id
    procedural.uninstall()


def test_run_exports_records_and_scores(tmp_path: Path, sphere_method: str):
    store = Store(tmp_path / "r.db")
    events = list(execute(sphere_method, Inputs.text("a ball"), {"subdivisions": 1}, store=store, out_root=tmp_path))
    kinds = [e.kind for e in events]
    assert kinds[0] == "progress" and kinds[-1] == "done" and "metric" in kinds
    done = events[-1]
    run = store.get_run(done.run_id)
    assert run["status"] == "done" and run["settings"]["subdivisions"] == 1 and run["seed"] == 0
    assert set(run["stage_seconds"]) >= {"build", "export"}
    names = {m["name"] for m in store.metrics(done.run_id)}
    assert {"vertices", "faces", "watertight", "components", "bbox", "seconds_total", "peak_rss_mb"} <= names
    glb = Path(done.files["glb"])
    meta = pygltflib.GLTF2().load(str(glb)).asset.extras["trilemma3d"]
    assert meta["method"] == sphere_method and meta["normalization"]["from_up"] == "+Z"
    record = json.loads((glb.parent / "run.json").read_text())
    assert record["status"] == "done" and any(m["name"] == "faces" and m["value"] == 80 for m in record["metrics"])
    assert record["inputs"]["prompt"] == "a ball" and record["versions"]["numpy"]


def test_bad_input_raises_typed_errors_before_storing(tmp_path: Path, sphere_method: str):
    store = Store(tmp_path / "b.db")
    with pytest.raises(UnknownMethod):
        next(execute("no-such-method", Inputs.text("x"), store=store, out_root=tmp_path))
    with pytest.raises(InvalidSettings, match="subdivisions=9"):
        next(execute(sphere_method, Inputs.text("x"), {"subdivisions": 9}, store=store, out_root=tmp_path))
    with pytest.raises(InvalidInput, match="does not take video"):
        next(execute(sphere_method, Inputs(modality="video", video_path="x.mp4"), store=store, out_root=tmp_path))
    assert store.runs() == []


def test_failure_inside_a_method_is_recorded_and_earlier_runs_survive(tmp_path: Path, sphere_method: str):
    store = Store(tmp_path / "f.db")
    ok = run_to_completion(sphere_method, Inputs.text("fine"), store=store, out_root=tmp_path)
    with pytest.raises(RuntimeError, match="asked to fail"):
        run_to_completion(sphere_method, Inputs.text("boom"), {"fail": True}, store=store, out_root=tmp_path)
    failed = [r for r in store.runs() if r["status"] == "failed"]
    assert len(failed) == 1 and "asked to fail" in failed[0]["error"]
    assert json.loads((tmp_path / failed[0]["id"] / "run.json").read_text())["status"] == "failed"
    assert store.get_run(ok.run_id)["status"] == "done" and len(store.metrics(ok.run_id)) > 5
    assert store.integrity_ok()


def test_cancelling_the_generator_records_cancelled(tmp_path: Path, sphere_method: str):
    store = Store(tmp_path / "c.db")
    gen = execute(sphere_method, Inputs.text("stop me"), store=store, out_root=tmp_path)
    first = next(gen)
    gen.close()
    assert store.get_run(first.run_id)["status"] == "cancelled"


def _cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    code = (
        "import sys; from tests import procedural; procedural.install();"
        "from methods.__main__ import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, env=env)


def test_cli_run_writes_asset_and_record(tmp_path: Path):
    out = tmp_path / "out"
    db = tmp_path / "cli.db"
    proc = _cli("run", "test-sphere", "--prompt", "a ball", "--seed", "5", "--out", str(out), "--db", str(db),
                "--set", "subdivisions=1", "--set", "with_points=true")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out / "asset.glb")
    record = json.loads((out / "run.json").read_text())
    assert record["seed"] == 5 and record["settings"]["with_points"] is True
    assert (out / "points.ply").exists()
    assert Store(db).get_run(record["id"])["status"] == "done"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nope", "--prompt", "x"], "unknown method 'nope'"),
        (["run", "test-sphere", "--prompt", ""], "prompt is empty"),
        (["run", "test-sphere", "--prompt", "y" * 10_000], "10000 characters"),
        (["run", "test-sphere", "--prompt", "x", "--set", "radius=-1"], "below its minimum"),
        (["run", "test-sphere", "--prompt", "x", "--set", "colour=red"], "unknown setting"),
        (["run", "test-sphere", "--image", "/no/such/file.png"], "no such file"),
        (["run", "test-sphere", "--prompt", "x", "--set", "fail=true"], "asked to fail"),
    ],
)
def test_cli_errors_are_one_line_and_non_zero(tmp_path: Path, args: list[str], message: str):
    proc = _cli(*args, "--out", str(tmp_path / "o"), "--db", str(tmp_path / "e.db"))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_cli_zero_byte_and_non_image_files(tmp_path: Path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("hello")
    for path, message in ((empty, "empty (0 bytes)"), (text, "not an image")):
        proc = _cli(
            "run", "test-sphere", "--image", str(path), "--out", str(tmp_path / "o"), "--db", str(tmp_path / "z.db")
        )
        assert proc.returncode == 2 and message in proc.stderr


LATER_STAGES = ["evaluate", "mesh", "turntable"]


@pytest.mark.parametrize(
    ("method", "sets", "stages"),
    [
        ("nerf", ["resolution=32", "threshold=0.1", "steps=40"], ["input", "training", *LATER_STAGES]),
        ("gaussian-splatting", ["init_points=200"], ["input", "points", "training", *LATER_STAGES]),
    ],
)
def test_cli_says_what_a_long_run_is_doing_a_line_per_stage(tmp_path: Path, method: str, sets: list, stages: list):
    """Not a terminal (stderr is a pipe): nerf and splats still print a line as each stage starts, in order, once."""
    pytest.importorskip("pycolmap")
    small = ["max_image_size=64", "steps=8", "eval_views=1", "mesh_resolution=32", *sets]  # a later steps= wins
    args = [a for s in small for a in ("--set", s)]
    proc = _cli("run", method, "--video", str(ROOT / "assets" / "examples" / "turntable"),
                "--out", str(tmp_path / "o"), "--db", str(tmp_path / "c.db"), *args)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(tmp_path / "o" / "asset.glb")
    lines = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    assert [line[1:].split("]")[0].split()[0] for line in lines] == stages
    assert "21 training / 3 held-out views at 64x64" in next(x for x in lines if x.startswith("[training"))
