import json
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import methods
from methods import registry
from methods.base import Method, Settings, UnknownMethod, setting
from methods.registry import availability, checkpoint_status, listing, register, unregister

ROOT = Path(__file__).resolve().parents[1]


class _Dummy(Method):
    id = "dummy-registry-test"
    label = "Dummy"
    modalities = ("text",)
    family = "test"
    representation = "mesh"

    @dataclass(kw_only=True)
    class Settings(Settings):
        checkpoint: str = setting("org/not-a-cached-model")


@pytest.fixture
def dummy():
    register(_Dummy)
    yield _Dummy
    unregister(_Dummy.id)


def test_duplicate_id_is_an_error(dummy):
    class Other(Method):
        id = dummy.id
        label = "other"
        modalities = ("text",)
        family = representation = "x"

    with pytest.raises(ValueError, match="already registered"):
        register(Other)
    assert register(dummy) is dummy  # registering the same class again is harmless


def test_unknown_method_names_the_known_ones(dummy):
    with pytest.raises(UnknownMethod, match="unknown method 'nope'.*dummy-registry-test"):
        methods.get("nope")


def test_offline_and_uncached_weights_give_a_reason(dummy, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status = availability(dummy.id)
    assert not status.ok and "org/not-a-cached-model" in status.reason and "not in the cache" in status.reason
    row = next(r for r in listing("text") if r["id"] == dummy.id)
    assert row["available"] is False and "HF_HUB_OFFLINE" in row["reason"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with socket.socket() as hub:  # a hub that accepts connections: it would download on first run
        hub.bind(("127.0.0.1", 0))
        hub.listen()
        port = hub.getsockname()[1]
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        monkeypatch.setattr(registry, "_PROBES", {})
        assert availability(dummy.id).ok
    monkeypatch.setattr(registry, "_PROBES", {})  # the port is closed now: the hub is unreachable
    status = availability(dummy.id)
    assert not status.ok and "cannot be reached" in status.reason


def test_local_checkpoint_status(tmp_path):
    assert checkpoint_status(str(tmp_path)).ok
    missing = checkpoint_status(str(tmp_path / "nope"))
    assert not missing.ok and "does not exist" in missing.reason


def test_list_cli_imports_no_torch():
    code = (
        "import sys, runpy; sys.argv=['methods','list','--json'];"
        "import methods.__main__ as m; rc = m.main(['list', '--json']);"
        "assert 'torch' not in sys.modules, 'listing imported torch'; sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert all({"id", "label", "modalities", "family", "representation", "available", "reason"} <= set(r) for r in rows)
    assert {r["id"] for r in rows} <= set(methods.ids())
    assert "shap-e" in {r["id"] for r in rows}


class _NeedsGpu(Method):
    id = "needs-gpu-registry-test"
    label = "Needs a GPU"
    modalities = ("text",)
    family = "test"
    representation = "mesh"
    needs_gpu = True


def test_gpu_methods_are_listed_without_importing_torch(monkeypatch):
    code = (
        "import sys; from methods.registry import register, listing;"
        "from tests.test_registry import _NeedsGpu; register(_NeedsGpu);"
        "row = next(r for r in listing() if r['id'] == _NeedsGpu.id);"
        "assert 'torch' not in sys.modules, 'the GPU probe imported torch';"
        "print(row['available'], row['reason'])"
    )
    env = {**__import__("os").environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False needs a CUDA GPU and none was found"
