"""Issue 23: a public instance (TRILEMMA_PUBLIC=1) probed again, as a determined visitor would.

One server for the module, on a free localhost port, acting as a shared host behind one trusted proxy
(TRILEMMA_TRUSTED_PROXIES=1): each request's X-Forwarded-For names its client address, so one test
process can be many visitors. Every check drives the real server over HTTP (gradio_client or httpx);
loops are bounded, nothing is timed: outcomes are counted (admitted joins, stored runs, votes).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from eval.runs.store import Store
from methods.base import Progress, setting
from tests.conftest_app import AppTestSphere

pytest_plugins = ["tests.conftest_app"]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "assets" / "examples"
SPHERE, POINTS = "app-test-sphere", "app-test-points"
PER_CONNECTION, GPU_QUEUE, PAGES_PER_CONNECTION = 3, 8, 4
PUBLIC_ENV = {
    "TRILEMMA_PUBLIC": "1",
    "TRILEMMA_TRUSTED_PROXIES": "1",
    "TRILEMMA_JOBS_PER_CONNECTION": str(PER_CONNECTION),
    "TRILEMMA_GPU_QUEUE": str(GPU_QUEUE),
    "TRILEMMA_PAGES_PER_CONNECTION": str(PAGES_PER_CONNECTION),
    "TRILEMMA_MAX_UPLOAD": "1mb",
    "TRILEMMA_RATER_SECRET": "tests-public-server",
    "TRILEMMA_MIN_VIEW_SECONDS": "0",
    "TRILEMMA_RATERS_PER_CONNECTION": "40",
    "TRILEMMA_VOTES_PER_CONNECTION": "40",
    "TRILEMMA_PUBLIC_SCORING_SECONDS": "120",  # a busy test machine never meets an allowance by slowness
}


GATE_WAIT_STEPS = 6000  # a hang guard (10 min), not a speed bound: every test opens its gate, on failure too


def wait_for_gate(gate: str):
    """Waits until the file ``gate`` exists (count-bounded): holds a slot for as long as a test needs."""
    for _ in range(GATE_WAIT_STEPS):
        if not gate or Path(gate).exists():
            return
        yield Progress("wait", None, "waiting for the gate")
        time.sleep(0.1)


class AppTestGate(AppTestSphere):
    """The test sphere, after waiting for a file: it holds the GPU slot until the test opens the gate."""

    id = "app-test-gate"
    label = "Test gate"
    seconds_cpu = seconds_gpu = 100.0  # an allowance far beyond the wait

    @dataclass(kw_only=True)
    class Settings(AppTestSphere.Settings):
        gate: str = setting("", help="a file to wait for (tests)")

    def run(self, inputs, settings):
        yield from wait_for_gate(settings.gate)
        return (yield from super().run(inputs, settings))


def gate_tab() -> None:
    """A hidden "pages" event that waits for a file: two of them hold both of the group's workers."""
    import gradio as gr

    path, done, button = gr.Textbox(visible=False), gr.Textbox(visible=False), gr.Button(visible=False)

    def hold(gate: str) -> str:
        for _ in wait_for_gate(gate):
            pass
        return "open"

    button.click(hold, path, done, api_name="test_hold")


@pytest.fixture(scope="module")
def server(app_env, app_methods, tmp_path_factory):
    """The whole app (and a hidden test tab) as a shared host; the environment is restored afterwards."""
    import app
    from methods.registry import register, unregister
    from tests.conftest_app import AppServer, free_port
    from ui import arena

    env = {**PUBLIC_ENV, "TRILEMMA_PUBLISHED_RUNS": str(tmp_path_factory.mktemp("published") / "runs.txt")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    arena.CONNECTIONS = arena.ConnectionLimits()
    register(AppTestGate)
    demo = app.build_app([*app.TABS, ("Test", gate_tab)])
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, **app.launch_kwargs())
    try:
        yield AppServer(f"http://127.0.0.1:{port}/", port, demo, app_env, Path(os.environ["TRILEMMA_DB"]))
    finally:
        demo.close()
        unregister(AppTestGate.id)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def client(server, address: str = "10.0.0.1"):
    from gradio_client import Client

    return Client(server.url, verbose=False, headers={"X-Forwarded-For": address})


def fn_index(server, *, api_name: str | None = None, name: str | None = None) -> int:
    for i, fn in server.demo.fns.items():
        if (api_name and fn.api_name == api_name) or (name and getattr(fn.fn, "__name__", "") == name):
            return i
    raise AssertionError(f"no event {api_name or name}")


def join(server, index: int, data: list, address: str, session: str | None = None) -> tuple[int, str, str]:
    """POST /queue/join as a visitor at ``address``; (status, session hash, body)."""
    session = session or secrets.token_hex(8)
    body = {"data": data, "fn_index": index, "session_hash": session, "event_data": None, "trigger_id": None}
    response = httpx.post(  # json.dumps escapes what UTF-8 cannot carry (a lone surrogate), as a browser's JSON does
        f"{server.url}gradio_api/queue/join",
        content=json.dumps(body),
        headers={"X-Forwarded-For": address, "Content-Type": "application/json"},
        timeout=120,
    )
    return response.status_code, session, response.text


def outcome(server, session: str) -> dict:
    """The final message of a joined event (read from the session's stream)."""
    with (
        httpx.Client(timeout=300) as http,
        http.stream("GET", f"{server.url}gradio_api/queue/data", params={"session_hash": session}) as stream,
    ):
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("the event never completed")


def text_data(prompt: str, methods: list[str], settings: dict | None = None) -> list:
    return [prompt, methods, "0", False, json.dumps(settings or {})]


def burst(server, index: int, data_for, addresses: list[str]) -> list[tuple[str, int, str, str]]:
    """Joins from every address at once (a barrier releases them together); (address, status, session, body)."""
    gate = threading.Barrier(len(addresses))

    def one(i: int):
        gate.wait()
        status, session, body = join(server, index, data_for(i), addresses[i])
        return addresses[i], status, session, body

    with ThreadPoolExecutor(len(addresses)) as pool:
        return list(pool.map(one, range(len(addresses))))


def runs_of(server, prefix: str) -> list[dict]:
    return [r for r in Store(server.db).runs(limit=100000) if r["inputs"].get("prompt", "").startswith(prefix)]


# ----------------------------------------------------------------------------- 1, 10: closed routes


def test_no_route_skips_the_queue_and_monitoring_is_off(server):
    before = len(Store(server.db).runs(limit=100000))
    with httpx.Client(timeout=30) as http:
        for route in ("run", "api"):
            response = http.post(f"{server.url}gradio_api/{route}/text_to_3d", json={"data": text_data("x", [SPHERE])})
            assert response.status_code == 404 and "join the queue" in response.text, response.text
        # a private queued event by index (the Runs tab's list) is refused as well
        body = {"data": ["", "", "", "any time", []], "fn_index": fn_index(server, name="list_view")}
        assert http.post(f"{server.url}gradio_api/run/predict", json=body).status_code == 404
        for path in ("monitoring", "monitoring/summary"):
            assert http.get(f"{server.url}{path}").status_code in (403, 404)
        config = http.get(f"{server.url}config").text
    assert len(Store(server.db).runs(limit=100000)) == before, "a direct call ran something"
    assert "This is a public server" in config, "the page says what is public"


# ----------------------------------------------------------------------------- 4, 5: admission and the queue


def hold_gpu(server, gate: Path) -> None:
    """A job from another address that holds the GPU slot until ``gate`` exists (then runs a sphere)."""
    status, session, body = join(server, fn_index(server, api_name="text_to_3d"),
                                 text_data("the gate", [AppTestGate.id], {AppTestGate.id: {"gate": str(gate)}}),
                                 "10.0.9.9")  # fmt: skip
    assert status == 200, body
    store = Store(server.db)
    for _ in range(GATE_WAIT_STEPS):
        if any(r["method"] == AppTestGate.id for r in store.runs(status="running")):
            return session
        time.sleep(0.1)
    raise AssertionError("the gate job never started")


@pytest.fixture
def gate(tmp_path):
    """A file a held job waits for; opened at the end of the test whatever happened, so no slot stays held."""
    path = tmp_path / "gate"
    yield path
    path.touch()


def test_a_burst_from_one_address_and_from_eight_never_passes_the_limits(server, gate):
    index = fn_index(server, api_name="text_to_3d")
    holder = hold_gpu(server, gate)  # nothing admitted below can start, let alone finish, before the gate opens
    one = burst(server, index, lambda i: text_data(f"burst-one {i}", [SPHERE]), ["10.1.0.1"] * 12)
    admitted = [r for r in one if r[1] == 200]
    assert len(admitted) == PER_CONNECTION, [r[1:] for r in one]  # 12 simultaneous joins, fresh sessions
    refused = [r for r in one if r[1] != 200]
    assert all(r[1] == 422 and "share of jobs" in r[3] for r in refused), refused[:1]
    eight = [f"10.2.0.{i}" for i in range(8) for _ in range(3)]
    many = burst(server, index, lambda i: text_data(f"burst-eight {i}", [SPHERE]), eight)
    admitted_eight = [r for r in many if r[1] == 200]
    per_address = {a: sum(r[0] == a for r in admitted_eight) for a in set(eight)}
    # the holder and the first burst hold 1 + 3 of the server's GPU_QUEUE places
    assert len(admitted_eight) == GPU_QUEUE - 1 - PER_CONNECTION and max(per_address.values()) <= PER_CONNECTION
    assert all("queue of this shared server is full" in r[3] or "share of jobs" in r[3] for r in many if r[1] != 200)
    gate.touch()
    for session in [holder] + [r[2] for r in admitted + admitted_eight]:  # every admitted job finishes
        assert outcome(server, session)["success"]
    done = runs_of(server, "burst-")
    assert len(done) == len(admitted) + len(admitted_eight) and all(r["status"] == "done" for r in done)
    assert Store(server.db).integrity_ok()


def test_cheap_events_from_one_address_leave_the_generation_queue_alone(server, gate):
    hold = fn_index(server, api_name="test_hold")
    holders = [join(server, hold, [str(gate)], f"10.3.1.{i}")[1] for i in range(2)]  # both "pages" workers busy
    board = fn_index(server, api_name="leaderboard")
    flood = burst(server, board, lambda i: ["any", "any", bool(i % 2)], ["10.3.0.1"] * 40)
    admitted = [r for r in flood if r[1] == 200]
    assert len(admitted) == PAGES_PER_CONNECTION, len(admitted)
    assert all("too many requests from your connection" in r[3] for r in flood if r[1] != 200)
    # meanwhile another visitor's generation is admitted (it queues in its own group) and runs
    status, session, body = join(server, fn_index(server, api_name="text_to_3d"), text_data("after the flood",
                                 [SPHERE]), "10.3.0.2")  # fmt: skip
    assert status == 200, body
    assert outcome(server, session)["success"]
    gate.touch()
    for s in holders + [r[2] for r in admitted]:
        assert outcome(server, s)["success"]
    pages = [fn for fn in server.demo.fns.values() if fn.queue and fn.concurrency_id != "gpu"]
    assert pages and all(fn.concurrency_id == "pages" for fn in pages), "every other queued event has its own group"


# ----------------------------------------------------------------------------- 3: images measured before decoding


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels and holds a few bytes of data: cheap to send, huge to decode."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_a_huge_image_is_refused_from_its_header_and_previews_are_queued(server, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from ui import inputs

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(12000, 12000))
    assert bomb.stat().st_size < 1000
    with pytest.raises(AppError) as err:
        client(server, "10.4.0.1").predict(handle_file(str(bomb)), [SPHERE], 0, False, "{}", api_name="/image_to_3d")
    assert "12000x12000" in str(err.value) and "16.8 Mpx" in str(err.value)
    # the preview event: queued in the pages group, answers with the same refusal and no image
    preview = server.demo.fns[fn_index(server, name="_preview_image")]
    assert preview.queue and preview.concurrency_id == "pages"
    with httpx.Client(timeout=60) as http:
        uploaded = http.post(f"{server.url}gradio_api/upload", files={"files": ("bomb.png", bomb.read_bytes())})
    path = uploaded.json()[0]
    status, session, _ = join(server, fn_index(server, name="_preview_image"),
                              [{"path": path, "meta": {"_type": "gradio.FileData"}}], "10.4.0.1")  # fmt: skip
    assert status == 200
    out = outcome(server, session)["output"]["data"]
    assert out[0] is None and "at most 16.8 Mpx" in out[1]
    from methods.nerf.video import write_video

    video = write_video(np.zeros((1, 4160, 4160, 3), np.uint8), tmp_path / "huge.mp4")  # 52 KB, 17.3 Mpx a frame
    with pytest.raises(AppError, match="huge.mp4 has 4160x4160 frames; at most 16.8 Mpx"):
        client(server, "10.4.0.1").predict([handle_file(str(video))], ["nerf"], 0, False, "{}", api_name="/video_to_3d")
    thumb, note = inputs.preview_image(str(EXAMPLES / "red_mug.png"))
    assert max(thumb.size) <= inputs.PREVIEW_SIDE and note.startswith("red_mug.png: 256×256 px")


# ----------------------------------------------------------------------------- 6, 7: ceilings and the time allowance


def test_every_cost_setting_has_a_public_ceiling_and_the_slot_is_released_past_the_allowance(server, monkeypatch):
    from gradio_client.exceptions import AppError

    views = [str(p) for p in sorted((EXAMPLES / "turntable").glob("view_*.jpg"))[:3]]
    c = client(server, "10.5.0.1")
    from gradio_client import handle_file

    for settings, message in (
        ({"max_image_size": 4096}, "max_image_size = 4096 is above this public server's limit of 800"),
        ({"eval_views": 1000}, "eval_views = 1000 is above"),
        ({"max_frames": 400}, "max_frames = 400 is above"),
        ({"matcher": "exhaustive"}, "matcher = exhaustive is not offered"),
    ):
        with pytest.raises(AppError, match=message):
            c.predict([handle_file(v) for v in views], ["nerf"], 0, False, json.dumps({"nerf": settings}),
                      api_name="/video_to_3d")  # fmt: skip
    # stopped at its next step once the request's allowance (estimate x 1.25 + margin) is used up
    monkeypatch.setenv("TRILEMMA_PUBLIC_MARGIN_SECONDS", "0.5")
    monkeypatch.setenv("TRILEMMA_PUBLIC_SCORING_SECONDS", "0")
    slow = {SPHERE: {"delay": 2.0}}  # 3 steps of 2 s against an allowance of 0.75 s
    with pytest.raises(AppError, match="used up its time allowance"):
        c.predict("an endless ball", [SPHERE], 0, False, json.dumps(slow), api_name="/text_to_3d")
    (run,) = runs_of(server, "an endless ball")
    assert run["status"] == "failed" and "time allowance" in run["error"]
    monkeypatch.delenv("TRILEMMA_PUBLIC_MARGIN_SECONDS")
    monkeypatch.setenv("TRILEMMA_PUBLIC_SCORING_SECONDS", PUBLIC_ENV["TRILEMMA_PUBLIC_SCORING_SECONDS"])
    files, report = c.predict("a ball after", [SPHERE], 0, False, "{}", api_name="/text_to_3d")
    assert report["runs"][0]["status"] == "done", "the slot was released"


def test_public_budgets_are_one_figure(server):
    import methods
    from ui import jobs, public
    from ui.generate import expected_here

    views = [str(p) for p in sorted((EXAMPLES / "turntable").glob("view_*.jpg"))[:3]]
    job = jobs.plan_job("video", views, ["nerf", "gaussian-splatting"])
    assert not job.refusals
    for run in job.runs:
        method = methods.get(run.method_id)
        assert run.settings.budget_seconds == 0, "an automatic budget stays automatic"
        here = expected_here(run.method_id, "video", gpu=False)  # what the method list says
        assert run.seconds == here and run.expected.startswith(f"about {jobs.format_seconds(here)}")
        assert run.gpu_seconds == method.estimate_seconds(run.settings, gpu=True)
    allowance = public.allowance_seconds(sum(r.seconds for r in job.runs), 2, gpu=False)
    assert job.allowance() == allowance <= public.MAX_REQUEST_SECONDS
    asked = int(np.ceil(public.allowance_seconds(sum(r.gpu_seconds for r in job.runs), 2, True)))
    assert job.gpu_duration() == min(asked, jobs.GPU_SECONDS_MAX)


# ----------------------------------------------------------------------------- 8, 9: uploads and error bodies


def test_uploads_are_bounded_and_kept_briefly(server):
    from ui import public

    with httpx.Client(timeout=60) as http:
        big = http.post(f"{server.url}gradio_api/upload", files={"files": ("big.bin", b"\x00" * 2_000_000)})
        small = http.post(f"{server.url}gradio_api/upload", files={"files": ("small.bin", b"\x00" * 1000)})
    assert big.status_code == 413 and small.status_code == 200
    assert server.demo.delete_cache == public.RETENTION


def test_error_bodies_name_no_server_path_and_the_examples_need_no_cache(server):
    index = fn_index(server, api_name="image_to_3d")
    private = [str(server.db.parent), str(server.outputs), os.getcwd(), str(ROOT), "/tmp", "trilemma.db"]
    for value in (str(server.db), "data/trilemma.db", "../../etc/passwd", str(ROOT / "app.py")):
        data = [{"path": value, "meta": {"_type": "gradio.FileData"}}, [SPHERE], "0", False, "{}"]
        status, session, body = join(server, index, data, "10.6.0.1")
        assert status == 400 and "was not uploaded to this server" in body, body
        assert not any(p in body for p in private), body
    # the bundled examples are served where they are: no cached copy can vanish under them
    image = next(b for b in server.demo.blocks.values() if type(b).__name__ == "Dataset" and "red_mug" in str(
        b.samples))  # fmt: skip
    paths = [v["path"] for row in image.samples for v in row if isinstance(v, dict) and "path" in v]
    assert paths and all(Path(p).resolve().is_relative_to(EXAMPLES) for p in paths), paths
    data = [{"path": paths[0], "meta": {"_type": "gradio.FileData"}}, [SPHERE], "0", False, "{}"]
    status, session, body = join(server, index, data, "10.6.0.2")
    assert status == 200 and outcome(server, session)["success"]
    # a file that vanished from the upload folder: a message with its name only
    with httpx.Client(timeout=60) as http:
        uploaded = http.post(f"{server.url}gradio_api/upload", files={"files": ("gone.png", b"x" * 100)}).json()[0]
    Path(uploaded).unlink()
    data = [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}, [SPHERE], "0", False, "{}"]
    status, session, body = join(server, index, data, "10.6.0.3")
    error = body if status != 200 else str(outcome(server, session)["output"].get("error"))
    assert "gone.png" in error and str(Path(uploaded).parent) not in error, error


# ----------------------------------------------------------------------------- 10, 12: records and visibility


def test_runs_tab_shows_a_visitor_their_own_and_the_published_runs_without_host_details(server):
    alice, bob = client(server, "10.7.0.1"), client(server, "10.7.0.2")
    _, report = alice.predict("alice's private mug", [SPHERE], 0, False, "{}", api_name="/text_to_3d")
    run_id = report["runs"][0]["run_id"]
    lister = fn_index(server, name="list_view")

    def listed(tokens: list, address: str, session: str | None = None) -> list:
        status, session, _ = join(server, lister, ["", "", "", "any time", tokens], address, session)
        assert status == 200
        return outcome(server, session)["output"]["data"][0]["data"]

    def opened(tokens: list, address: str) -> dict | None:
        session = secrets.token_hex(8)
        listed(tokens, address, session)  # the tick choices of this page are the runs it lists
        status, _, body = join(server, fn_index(server, name="compare_view"), [[run_id], tokens], address, session)
        if status != 200:
            assert "not in the list of choices" in body and "mug" not in body, body  # gradio: not offered to this page
            return None
        return outcome(server, session)["output"]["data"][-1]

    from ui.runs import run_token

    assert all(row[0] != run_id for row in listed([], "10.7.0.2")), "a stranger sees no other visitor's run"
    forged = [f"{run_id}.{'0' * 24}", run_id]
    assert listed(forged, "10.7.0.2") == [], "unsigned claims to a run are ignored"
    mine = listed([run_token(run_id)], "10.7.0.1")
    assert [row[0] for row in mine] == [run_id] and "alice's private mug" in mine[0][3]
    Path(os.environ["TRILEMMA_PUBLISHED_RUNS"]).write_text(f"# published by the operator\n{run_id}\n")
    assert [row[0] for row in listed([], "10.7.0.2")] == [run_id]
    Path(os.environ["TRILEMMA_PUBLISHED_RUNS"]).write_text("")
    # the record shown (and offered for download) says nothing about the host
    # the page's Generate remembers its runs in the browser: the tokens come back as its last output
    generate = next(i for i, fn in server.demo.fns.items() if fn.concurrency_id == "gpu"
                    and type(fn.inputs[-1]).__name__ == "BrowserState" and fn.inputs[0].label == "Prompt")  # fmt: skip
    data = [getattr(c, "value", None) for c in server.demo.fns[generate].inputs]
    data[:5], data[-1] = ["a page's own mug", [SPHERE], 0, False, False], []
    status, session, body = join(server, generate, data, "10.7.0.3")
    assert status == 200, body
    tokens = outcome(server, session)["output"]["data"][-1]
    (made,) = {t.rpartition(".")[0] for t in tokens}
    assert Store(server.db).get_run(made)["inputs"]["prompt"] == "a page's own mug"
    assert [row[0] for row in listed(tokens, "10.7.0.3")] == [made] and listed([], "10.7.0.3") == []
    record = opened([run_token(run_id)], "10.7.0.1")
    assert record["id"] == run_id and "process" not in json.dumps(record)
    assert "-" not in record["hardware"]["platform"], record["hardware"]["platform"]
    assert opened([], "10.7.0.2") is None, "a stranger cannot open it by id"
    run_dir = Path(Store(server.db).get_run(run_id)["asset_path"]).parent
    download = json.loads((run_dir / "download" / "run.json").read_text())
    assert "process" not in download["hardware"] and "pid" not in json.dumps(download)
    assert bob


# ----------------------------------------------------------------------------- 11: values json and gradio choke on


@pytest.mark.parametrize(
    ("prompt", "methods", "settings", "reason"),
    [
        ("a mug", [SPHERE], '{"app-test-sphere": {"steps": ' + "9" * 400 + "}}", "a number 400 characters long"),
        ("a mug", [SPHERE], '{"app-test-sphere": {"steps": ' + "9" * 5000 + "}}", "a number 5000 characters long"),
        ("a mug", [SPHERE], '{"app-test-sphere": {"st\ud800eps": 1}}', "not text (a lone surrogate)"),
        ("a mug", [SPHERE], '{"app-test-sphere": {"st\\ud800eps": 1}}', "not text (a lone surrogate)"),
        ("a mug", [SPHERE], '{"app-test-sphere": {"delay": NaN}}', "NaN, which is not a number"),
        ("a \ud800 mug", [SPHERE], "{}", "not text (a lone surrogate)"),
        ("a mug", ["app-test-\udfff"], "{}", "not text (a lone surrogate)"),
    ],
    ids=["400 digits", "5000 digits", "surrogate name", "escaped surrogate", "NaN", "surrogate prompt", "surrogate id"],
)
def test_huge_numbers_and_bad_characters_get_clear_messages(server, prompt, methods, settings, reason):
    before = len(Store(server.db).runs(limit=100000))
    data = [prompt, methods, "0", False, settings]
    status, session, body = join(server, fn_index(server, api_name="text_to_3d"), data, "10.8.0.1")
    assert status == 200, body
    done = outcome(server, session)  # the event stream completes, with a message
    assert not done["success"] and reason in str(done["output"]["error"]), done
    assert len(Store(server.db).runs(limit=100000)) == before


# ----------------------------------------------------------------------------- 2: a blind arena


def glb_parts(data: bytes) -> tuple[dict, bytes]:
    """A .glb's JSON and its binary buffer."""
    length = struct.unpack_from("<I", data, 12)[0]
    document = json.loads(data[20 : 20 + length])
    return document, data[20 + length + 8 :]


def test_arena_copies_match_no_labelled_file_and_steering_identities_are_flagged(server):
    import trimesh

    from eval import ratings

    prompt = "an arena lamp"
    _, report = client(server, "10.9.0.1").predict(prompt, [SPHERE, POINTS], 0, False, "{}", api_name="/text_to_3d")
    labelled = {r["method"]: Path(Store(server.db).get_run(r["run_id"])["asset_path"]) for r in report["runs"]}
    known_files = {hashlib.sha256(p.read_bytes()).hexdigest() for p in labelled.values()}
    known_buffers = {hashlib.sha256(glb_parts(p.read_bytes())[1]).hexdigest() for p in labelled.values()}
    seen_files, seen_buffers = set(), set()

    def serve(c) -> tuple[str, dict[str, Path]]:
        out = c.predict(None, "text", "any", "Textured", api_name="/arena_new_pair")
        sides = {}
        for side, update in (("left", out[1]), ("right", out[2])):
            value = update["value"] if isinstance(update, dict) and "value" in update else update
            path = Path(value["path"] if isinstance(value, dict) else value)
            data = path.read_bytes()
            assert hashlib.sha256(data).hexdigest() not in known_files | seen_files
            buffer = hashlib.sha256(glb_parts(data)[1]).hexdigest()
            assert buffer not in known_buffers | seen_buffers, "a mesh buffer matches a labelled file or a copy"
            seen_files.add(hashlib.sha256(data).hexdigest())
            seen_buffers.add(buffer)
            geometry = next(iter(trimesh.load(str(path), force="scene").geometry.values()))
            sides[side] = "points" if isinstance(geometry, trimesh.PointCloud) else "mesh"
        return out[0], sides

    acknowledged = 0
    for i, liked in enumerate(("mesh", "mesh", "mesh", "points")):  # four visitors: the sphere wins 3 to 1
        c = client(server, f"10.9.1.{i}")
        token, sides = serve(c)
        answer = "left" if sides["left"] == liked else "right"
        c.predict(token, answer, answer, answer, answer, api_name="/arena_vote")
        acknowledged += 1
    steering = client(server, "10.9.9.9")  # one address, a fresh identity for every vote, always for the points
    for _ in range(12):
        token, sides = serve(steering)
        pick = "left" if sides["left"] == "points" else "right"
        steering.predict(token, pick, pick, pick, pick, api_name="/arena_vote")
        acknowledged += 1
        steering = client(server, "10.9.9.9")  # a new browser: no token kept
    votes = Store(server.db).read("SELECT rater FROM votes")
    assert len(votes) >= acknowledged, "every acknowledged vote is stored"
    board = client(server, "10.9.2.1").predict("any", "any", False, api_name="/leaderboard")[-1]
    flagged = board["flagged_raters"]
    steered = {r[0] for r in votes if ratings.rater_group(r[0]) != r[0]}
    cohorts = {}
    for rater in steered:
        cohorts.setdefault(ratings.rater_group(rater), set()).add(rater)
    big = max(cohorts.values(), key=len)
    assert len(big) == 12 and big <= set(flagged), "the steering identities are flagged"
    assert all("identities issued to one connection" in flagged[r] for r in big)
    honest_raters = {r[0] for r in votes} - big
    assert not honest_raters & set(flagged), "no honest rater is flagged"
    assert board["votes_used"] == board["votes"] - 12, "flagged votes are left out of the leaderboard"
    assert Store(server.db).read("SELECT count(*) FROM votes")[0][0] == len(votes), "and kept in the store"


# ----------------------------------------------------------------------------- mixed load


def test_mixed_load_every_admitted_job_finishes_and_no_acknowledged_vote_is_lost(server):
    gen = fn_index(server, api_name="text_to_3d")
    board = fn_index(server, api_name="leaderboard")
    _, report = client(server, "10.10.0.1").predict("mixed pair", [SPHERE, POINTS], 0, False, "{}",
                                                   api_name="/text_to_3d")  # fmt: skip

    def generate(i: int):
        prompt = ("a red mug", "a small blue cube", "a tall green lamp", "a yellow cone")[i]
        status, session, _ = join(server, gen, text_data(prompt, ["vae" if i % 2 else SPHERE]), f"10.10.1.{i}")
        return ("job", status, outcome(server, session)["success"] if status == 200 else None)

    def view(i: int):
        status, session, _ = join(server, board, ["any", "any", False], f"10.10.2.{i}")
        return ("board", status, outcome(server, session)["success"] if status == 200 else None)

    def rate(i: int):
        c = client(server, f"10.10.3.{i}")
        out = c.predict(None, "text", "any", "Textured", api_name="/arena_new_pair")
        if not out[0] or out[1] is None:
            return ("vote", 0, None)
        c.predict(out[0], "tie", "tie", "tie", "tie", api_name="/arena_vote")
        return ("vote", 200, out[0])

    before = Store(server.db).read("SELECT count(*) FROM votes")[0][0]
    tasks = [(generate, i) for i in range(4)] + [(view, i) for i in range(4)] + [(rate, i) for i in range(4)]
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda t: t[0](t[1]), tasks))
    jobs = [r for r in results if r[0] == "job" and r[1] == 200]
    assert jobs and all(r[2] for r in jobs), results
    assert all(r[2] for r in results if r[0] == "board" and r[1] == 200)
    voters = [r[2] for r in results if r[0] == "vote" and r[1] == 200]
    store = Store(server.db)
    stored = {row[0] for row in store.read("SELECT rater FROM votes")}
    assert {v.rpartition(".")[0] for v in voters} <= stored, "every acknowledged vote is in the store"
    assert store.read("SELECT count(*) FROM votes")[0][0] == before + len(voters)
    assert store.integrity_ok() and report
