"""Issue 14: the app as a public Space sees it, tried like a hostile but fair visitor would.

Each test drives a real server on a free localhost port (tests/conftest_app.py) with gradio_client
and plain HTTP (httpx): nothing private is served, no event acts on a server path a client names,
one request cannot hold the GPU slot, votes cannot be stuffed, a killed app leaves no run "running",
and bad input gets a clear message that names no server path.
"""

from __future__ import annotations

import inspect
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from eval.runs.store import Store

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
    from eval.runs.store import default_db_path

    assert not default_db_path().resolve().is_relative_to(tmp_path.resolve()), "the default store is not in outputs"


def test_served_files_keep_assets_and_the_latest_files_only(tmp_path):
    from ui.served import ServedFiles

    served = ServedFiles([tmp_path], limit=3)
    files = [tmp_path / f"run{i}" / "asset.glb" for i in range(5)]
    served.publish(*files)
    served.publish(tmp_path, files[2])  # assets again: no duplicate; a file shown again becomes the newest
    assert served == [str(tmp_path.resolve())] + [str(f.resolve()) for f in (files[3], files[4], files[2])]
    assert not served.is_served(files[0]) and served.is_served(files[4])


def fn_index(server, name: str) -> int:
    """The index of a private event (hidden from the API page, still callable by index)."""
    return next(i for i, fn in server.demo.fns.items() if getattr(fn.fn, "__name__", "") == name)


def call_event(server, index: int, data: list, session: str | None = None) -> dict:
    """Call an event by index over plain HTTP, as a visitor can for private events too; the final message."""
    session = session or secrets.token_hex(8)
    body = {"data": data, "fn_index": index, "session_hash": session, "event_data": None, "trigger_id": None}
    with httpx.Client(timeout=120) as http:
        joined = http.post(f"{server.url}gradio_api/queue/join", json=body)
        if joined.status_code in (400, 422):  # refused when it joins (a validator, or inputs it could not read)
            return {"msg": "process_completed", "success": False, "output": {"error": joined.json()["detail"]}}
        joined.raise_for_status()
        with http.stream("GET", f"{server.url}gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    message = json.loads(line[5:])
                    if message.get("msg") == "process_completed":
                        return message
    raise AssertionError("the event never completed")


def event_error(message: dict) -> str:
    assert not message.get("success"), f"the event succeeded: {message}"
    return str(message.get("output", {}).get("error"))


def test_study_events_take_study_names_only(app_server, tmp_path, monkeypatch):
    # a study the server has, listed by name
    mine = app_server.outputs / "studies" / "mine"
    mine.mkdir(parents=True)
    (mine / "manifest.json").write_text(json.dumps({"name": "mine", "cells": 0, "store": str(app_server.db)}))
    done = call_event(app_server, fn_index(app_server, "show"), ["mine"])
    assert done["success"], done
    shown = done["output"]["data"]
    assert "**mine**" in shown[1] and str(app_server.outputs) not in json.dumps(shown)
    # a forged study: a manifest the visitor controls, naming a store anywhere and a study file to read
    forged = tmp_path / "forged"
    forged.mkdir()
    target = tmp_path / "created" / "evil.db"
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"private_key": "x"}))
    (forged / "manifest.json").write_text(
        json.dumps({"name": "forged", "cells": 1, "store": str(target), "study_file": str(secret)})
    )
    for event in ("build_report", "show"):
        for name in (str(forged), "../" * 6 + str(forged).lstrip("/"), "forged", str(secret)):
            message = event_error(call_event(app_server, fn_index(app_server, event), [name]))
            assert "Unknown study" in message, message
            assert str(tmp_path) not in message and "private_key" not in message
    assert not target.parent.exists(), "a forged manifest created a folder or database"
    monkeypatch.setenv("TRILEMMA_PUBLIC", "1")  # a shared host: reports (minutes of CPU) are the operator's job
    message = event_error(call_event(app_server, fn_index(app_server, "build_report"), ["mine"]))
    assert "built by the server's operator" in message
    monkeypatch.delenv("TRILEMMA_PUBLIC")
    for name in (str(forged), "mine"):
        message = event_error(call_event(app_server, fn_index(app_server, "open_cell"), [name, "no-such-run"]))
        assert message and str(tmp_path) not in message
    assert not target.parent.exists()


# ----------------------------------------------------------------------------- 4: what one request may cost


@pytest.fixture
def public(monkeypatch):
    """The server acts as a shared host (as on a Space); the test sphere gets a steps ceiling of 10."""
    monkeypatch.setenv("TRILEMMA_PUBLIC", "1")
    monkeypatch.setenv("TRILEMMA_PUBLIC_CEILINGS", json.dumps({SPHERE: {"steps": 10}}))
    monkeypatch.setenv("TRILEMMA_PUBLIC_SCORING_SECONDS", "120")  # a busy test machine never meets the allowance


def run_count(server) -> int:
    return len(Store(server.db).runs(limit=100000))


def test_public_request_over_a_ceiling_is_refused(app_server, app_client, public, checkpoint_dir):
    from gradio_client.exceptions import AppError

    before = run_count(app_server)
    with pytest.raises(AppError, match="steps = 20 is above this public server's limit of 10"):
        text_to_3d(app_client, "a costly ball", [SPHERE], settings=json.dumps({SPHERE: {"steps": 20}}))
    # a setting that names a server path cannot be changed at all: one message, whether or not it exists
    messages = set()
    for path in (checkpoint_dir, checkpoint_dir / "missing", "/etc", app_server.db):
        with pytest.raises(AppError) as err:
            text_to_3d(app_client, "a ball", [SPHERE], settings=json.dumps({SPHERE: {"checkpoint": str(path)}}))
        messages.add(str(err.value))
    assert len(messages) == 1 and "cannot be changed on this public server" in messages.pop()
    assert run_count(app_server) == before, "a refused request stored a run"
    files, report = text_to_3d(app_client, "a cheap ball", [SPHERE], settings=json.dumps({SPHERE: {"steps": 10}}))
    assert report["runs"][0]["status"] == "done" and run_count(app_server) == before + 1


def test_nerf_budget_is_capped_on_a_public_host(monkeypatch):
    import methods
    from methods.base import InvalidSettings
    from ui import public

    nerf = methods.get("nerf")
    defaults = nerf.default_settings("video")
    asked = type(defaults).from_dict({"budget_seconds": 3600}, base=defaults)
    assert public.limit_settings("nerf", asked, defaults) is asked, "no ceiling off a shared host"
    monkeypatch.setenv("TRILEMMA_PUBLIC", "1")
    with pytest.raises(InvalidSettings, match="budget_seconds = 3600 is above this public server's limit of 300"):
        public.limit_settings("nerf", asked, defaults)
    auto = public.limit_settings("nerf", defaults, defaults)
    assert auto.budget_seconds == 0, "an automatic budget stays the method's pick for this hardware"
    # one figure: the method list's estimate for the defaults is the estimate the slot and the allowance use
    assert nerf.estimate_seconds(auto, gpu=False) == nerf.estimate_seconds(defaults, gpu=False) <= 300 + 60


def test_every_shipped_method_runs_with_its_defaults_on_a_public_host(monkeypatch):
    import methods
    from methods.registry import ids
    from ui import public

    monkeypatch.setenv("TRILEMMA_PUBLIC", "1")
    for method_id in ids():
        method = methods.get(method_id)
        for modality in method.modalities:
            defaults = method.default_settings(modality)
            limited = public.limit_settings(method_id, defaults, defaults)  # raises if a default is over a ceiling
            budget = getattr(limited, "budget_seconds", None)
            assert budget is None or 0 <= budget <= public.ceilings(method_id)["budget_seconds"]


def test_one_session_cannot_queue_a_second_job(app_server, public):
    from gradio_client import Client
    from gradio_client.exceptions import ValidationError

    slow = json.dumps({SPHERE: {"steps": 6, "delay": 0.5}})
    first, other = Client(app_server.url, verbose=False), Client(app_server.url, verbose=False)
    running = first.submit("a slow ball", [SPHERE], 0, False, slow, api_name="/text_to_3d")
    while running.status().code.name not in ("PROCESSING", "ITERATING"):
        time.sleep(0.05)
    with pytest.raises(ValidationError, match="already have a job waiting or running"):
        first.predict("another ball", [SPHERE], 0, False, "{}", api_name="/text_to_3d")
    files, report = other.predict("a ball from someone else", [SPHERE], 0, False, "{}", api_name="/text_to_3d")
    assert report["runs"][0]["status"] == "done"
    assert running.result()[1]["runs"][0]["status"] == "done"
    files, report = first.predict("now my next ball", [SPHERE], 0, False, "{}", api_name="/text_to_3d")
    assert report["runs"][0]["status"] == "done", "the session may queue again once its job ended"
    gpu_events = [fn for fn in app_server.demo.fns.values() if fn.concurrency_id == "gpu"]
    assert len(gpu_events) == 6, "three modality tabs, each with its Generate button and its API endpoint"
    for fn in gpu_events:  # the UI's Generate events get the same validator, with the request after their inputs
        assert fn.validator is not None
        assert list(inspect.signature(fn.validator).parameters)[len(fn.inputs)] == "request"


def test_uncached_weights_with_the_hub_unreachable_fail_fast(app_server, app_client, monkeypatch):
    from gradio_client.exceptions import AppError

    from methods import registry

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setattr(registry, "_PROBES", {})
    settings = json.dumps({SPHERE: {"checkpoint": "trilemma-tests/never-cached-model"}})
    with pytest.raises(AppError, match="not in the cache and the hub cannot be reached"):
        text_to_3d(app_client, "a ball with weights", [SPHERE], settings=settings)
    # Refused by the availability check before the method starts: one probe of the endpoint, no hub client retries.
    endpoint = ("127.0.0.1", int(os.environ["HF_ENDPOINT"].rsplit(":", 1)[1]))
    assert list(registry._PROBES) == [endpoint] and registry._PROBES[endpoint][1] is False
    row = next(r for r in registry.listing("text") if r["id"] == SPHERE)
    assert row["available"], "the test sphere needs no weights by default"


def closed_port() -> int:
    from tests.conftest_app import free_port

    return free_port()  # bound and released: nothing listens there


# ----------------------------------------------------------------------------- 5: votes cannot be stuffed

ANSWERS = ("left", "tie", "both_bad", "left")


def vote_count(server) -> int:
    return Store(server.db).read("SELECT count(*) FROM votes")[0][0]


def test_votes_need_a_server_issued_token_bound_to_the_served_pair(app_server, app_client, monkeypatch):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from eval import ratings
    from ui import arena

    monkeypatch.setenv("TRILEMMA_MIN_VIEW_SECONDS", "0")
    monkeypatch.setenv("TRILEMMA_RATERS_PER_CONNECTION", "3")
    monkeypatch.setattr(arena, "CONNECTIONS", arena.ConnectionLimits())
    text_to_3d(app_client, "an arena mug", [SPHERE, "app-test-points"], seed=2)  # a pair: two methods, one input
    before = vote_count(app_server)
    voter = Client(app_server.url, verbose=False)
    out = voter.predict(None, "text", "any", "Textured", api_name="/arena_new_pair")
    token = out[0]
    assert token.startswith("anon-") and "." in token and out[1] is not None, out[5]
    for forged in ("anon-forged-rater", "anon-forged-rater.0123456789abcdef", ratings.issue_token(b"another key")):
        with pytest.raises(AppError, match="not issued by this server"):
            voter.predict(forged, *ANSWERS, api_name="/arena_vote")
    assert vote_count(app_server) == before, "a forged token's vote was counted"
    assert voter.predict(token, *ANSWERS, api_name="/arena_vote")[0] == token
    assert vote_count(app_server) == before + 1
    with pytest.raises(AppError, match="already has your vote"):
        voter.predict(token, *ANSWERS, api_name="/arena_vote")  # replayed in the same session
    replay = Client(app_server.url, verbose=False)
    with pytest.raises(AppError, match="No pair is being shown"):
        replay.predict(token, *ANSWERS, api_name="/arena_vote")  # replayed from another session
    assert vote_count(app_server) == before + 1

    # fresh identities from one connection are limited: at most 3 an hour (one went to the voter above)
    statuses = [
        Client(app_server.url, verbose=False).predict(None, "text", "any", "Textured", api_name="/arena_new_pair")[5]
        for _ in range(4)
    ]
    refused = [s for s in statuses if "too many new raters from this connection" in s]
    assert len(refused) == 2, statuses
    stored = Store(app_server.db).read("SELECT DISTINCT rater FROM pairs")
    assert "anon-forged-rater" not in {r[0] for r in stored}

    summary = app_client.predict("any", "any", False, api_name="/leaderboard")[0]
    assert "votes from" in summary and "raters" in summary, summary


# ----------------------------------------------------------------------------- 6: a killed app


APP_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from methods.registry import register
from tests.conftest_app import TEST_METHODS
for cls in TEST_METHODS:
    register(cls)
import app
app.main()
"""


def start_app(tmp_path, name: str) -> tuple[subprocess.Popen, str]:
    """``python app.py`` (with the test methods) in a process of its own; returns it once it serves."""
    from tests.conftest_app import free_port

    port = free_port()
    env = {
        **os.environ,
        "TRILEMMA_OUTPUTS": str(tmp_path / "outputs"),
        "TRILEMMA_DB": str(tmp_path / "data" / "trilemma.db"),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen([sys.executable, "-c", APP_SCRIPT.format(root=str(ROOT))], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}/"
    while True:
        assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)


def test_a_run_killed_with_its_app_is_marked_interrupted_at_restart(tmp_path):
    from gradio_client import Client

    first, url = start_app(tmp_path, "first")
    try:
        client = Client(url, verbose=False)
        slow = json.dumps({SPHERE: {"steps": 50, "delay": 2.0}})
        client.submit("a ball that never ends", [SPHERE], 0, False, slow, api_name="/text_to_3d")
        store = Store(tmp_path / "data" / "trilemma.db")
        while not store.runs(status="running"):
            assert first.poll() is None
            time.sleep(0.1)
        run = store.runs(status="running")[0]
        folder = tmp_path / "outputs" / run["id"]
        assert folder.is_dir() and not any(folder.iterdir()), "mid-run: the run's folder exists, still empty"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert store.get_run(run["id"])["status"] == "running", "the killed process could not close its run"
    second, url = start_app(tmp_path, "second")
    try:
        closed = store.get_run(run["id"])
        assert closed["status"] == "failed" and closed["error"].startswith("interrupted"), closed
        assert not folder.exists(), "the interrupted run's empty folder was removed"
        files, report = Client(url, verbose=False).predict("a ball after the restart", [SPHERE], 0, False, "{}",
                                                           api_name="/text_to_3d")  # fmt: skip
        assert report["runs"][0]["status"] == "done" and store.integrity_ok()
    finally:
        second.terminate()
        second.wait()


def test_close_dead_runs_leaves_live_and_untagged_runs_alone(tmp_path):
    from eval.runs.runner import close_dead_runs, process_tag

    store = Store(tmp_path / "runs.db")
    dead = {**process_tag(), "pid": process_tag()["pid"], "start": "0"}  # this pid, another start: a reused pid
    for run_id, hardware in (("live", {"process": process_tag()}), ("dead", {"process": dead}), ("untagged", {})):
        store.start_run({"id": run_id, "method": SPHERE, "modality": "text", "inputs_hash": "h", "hardware": hardware})
        (tmp_path / "out" / run_id / "sub").mkdir(parents=True)
    (tmp_path / "out" / "live" / "partial.glb").write_bytes(b"x")
    assert close_dead_runs(store, tmp_path / "out") == ["dead"]
    assert [store.get_run(r)["status"] for r in ("live", "dead", "untagged")] == ["running", "failed", "running"]
    assert not (tmp_path / "out" / "dead").exists() and (tmp_path / "out" / "live" / "partial.glb").exists()


# ----------------------------------------------------------------------------- 7: clear messages, no server paths


@pytest.mark.parametrize(
    ("seed", "settings", "reason"),
    [
        ("abc", "{}", "the seed must be a whole number"),
        (1.5, "{}", "the seed must be a whole number"),  # refused, not rounded to 2
        (0, '{"app-test-sphere": ' + '{"a": ' * 1000 + "1" + "}" * 1001, "nested too deeply"),  # measured, not parsed
        (0, "[" * 9000 + "]" * 9000, "nested too deeply"),
        (0, "[" * 100_000 + "]" * 100_000, "settings have 200000 characters"),
        (0, json.dumps({SPHERE: {"shape": [[["sphere"]]]}}), "settings are single values"),
    ],
    ids=["seed abc", "seed 1.5", "settings nested 1000 deep", "9000 deep", "settings 200 kB", "a list as a setting"],
)
def test_bad_seeds_and_settings_get_clear_messages(app_server, app_client, seed, settings, reason):
    from gradio_client.exceptions import AppError

    before = run_count(app_server)
    with pytest.raises(AppError) as err:
        app_client.predict("a mug", [SPHERE], seed, False, settings, api_name="/text_to_3d")
    assert reason in str(err.value) and "upstream Gradio app has raised an exception" not in str(err.value)
    assert run_count(app_server) == before


def test_an_unusable_store_is_a_clear_message_without_its_path(app_server, app_client, monkeypatch, tmp_path):
    from gradio_client.exceptions import AppError

    junk = tmp_path / "private" / "junk.db"
    junk.parent.mkdir()
    junk.write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("TRILEMMA_DB", str(junk))
    with pytest.raises(AppError) as err:
        text_to_3d(app_client, "a mug", [SPHERE])
    message = str(err.value)
    assert "the run store cannot be used" in message and "junk.db" in message and str(tmp_path) not in message


def test_control_characters_are_stripped_before_the_method_and_the_store(app_server, app_client):
    files, report = text_to_3d(app_client, "a\x00 red\x1b[31m mug\x1b[0m\x07 \u202egnirts", [SPHERE])
    stored = Store(app_server.db).get_run(report["runs"][0]["run_id"])["inputs"]["prompt"]
    assert report["inputs"]["prompt"] == stored == "a red mug gnirts"


def test_a_corrupt_video_is_refused_without_the_upload_path(app_server, app_client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    video = tmp_path / "broken.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not really a video" * 50)
    with pytest.raises(AppError) as err:
        app_client.predict([handle_file(str(video))], ["nerf"], 0, False, "{}", api_name="/video_to_3d")
    message = str(err.value)
    assert "broken.mp4" in message and "/" not in message.replace("broken.mp4", ""), message


# ----------------------------------------------------------------------------- 8: many clients at once


def test_eight_concurrent_clients_five_runs_each(app_server):
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client

    def client_runs(i: int) -> list[str]:
        client = Client(app_server.url, verbose=False)
        return [text_to_3d(client, f"concurrent {i}-{j}", [SPHERE], seed=j)[1]["runs"][0]["run_id"] for j in range(5)]

    with ThreadPoolExecutor(8) as pool:
        run_ids = [r for runs in pool.map(client_runs, range(8)) for r in runs]
    store = Store(app_server.db)
    mine = [r for r in store.runs(limit=100000) if r["inputs"].get("prompt", "").startswith("concurrent ")]
    assert len(set(run_ids)) == 40 and {r["id"] for r in mine} == set(run_ids)
    assert all(r["status"] == "done" for r in mine)
    assert store.read("PRAGMA integrity_check")[0][0] == "ok"


def test_client_address_trusts_only_the_proxies_it_is_told_of(monkeypatch):
    from types import SimpleNamespace

    from ui import hosting

    request = SimpleNamespace(headers={"x-forwarded-for": "6.6.6.6, 1.2.3.4"}, client=SimpleNamespace(host="10.0.0.1"))
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("TRILEMMA_TRUSTED_PROXIES", raising=False)
    assert hosting.client_address(request) == "10.0.0.1", "locally the header is the client's own word"
    monkeypatch.setenv("SPACE_ID", "someone/trilemma3d")
    assert hosting.client_address(request) == "1.2.3.4", "on a Space: the entry the Space's proxy added"
    monkeypatch.setenv("TRILEMMA_TRUSTED_PROXIES", "2")
    assert hosting.client_address(request) == "6.6.6.6"
