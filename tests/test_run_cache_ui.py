"""Slow methods show a finished run with the same input, settings and seed instead of running again."""

from pathlib import Path

import pytest

from eval.runs.store import Store
from methods.registry import register, unregister
from tests.procedural import ProceduralSphere
from ui import jobs


class SlowSphere(ProceduralSphere):
    id = "test-slow-sphere"
    label = "Slow sphere"
    cache_results = True
    seconds_cpu = 600.0


@pytest.fixture
def slow_method():
    register(SlowSphere)
    yield SlowSphere.id
    unregister(SlowSphere.id)


def _run(store: Store, method: str, seed: int, rerun: bool = False) -> jobs.JobState:
    job = jobs.plan_job("text", "a slow ball", [method], seed, False, {}, rerun=rerun)
    states = list(jobs.run_job(job, store))
    return states[-1]


def test_second_request_shows_the_cached_run_with_its_cost(tmp_path: Path, slow_method: str, monkeypatch):
    monkeypatch.setenv("TRILEMMA_OUTPUTS", str(tmp_path))
    store = Store(tmp_path / "cache.db")
    first = _run(store, slow_method, seed=3).slots[0]
    assert first.state == "done" and not first.cached

    again = _run(store, slow_method, seed=3, rerun=True)  # no GPU here: "run again" is not honoured
    slot = again.slots[0]
    assert slot.state == "done" and slot.run_id == first.run_id and slot.glb == first.glb
    assert slot.cached.startswith(f"cached result of run {first.run_id}") and "on a CPU" in slot.cached
    assert slot.status_markdown().startswith("♻️")
    assert {name for _, row in again.metrics for name in [row.name]} >= {"faces", "vertices"}
    assert len(store.runs(method=slow_method)) == 1

    other_seed = _run(store, slow_method, seed=4).slots[0]
    assert not other_seed.cached and other_seed.run_id != first.run_id
    assert len(store.runs(method=slow_method)) == 2


def test_the_expected_time_is_said_before_a_run_starts(tmp_path: Path, slow_method: str):
    job = jobs.plan_job("text", "a slow ball", [slow_method], 0, False, {})
    state = next(jobs.run_job(job, Store(tmp_path / "expected.db")))
    assert state.slots[0].status_markdown() == "⏳ Waiting for its turn… (expected: about 10 min on this CPU)"
