import sqlite3
from pathlib import Path

import pytest

from eval.runs.store import MIGRATIONS, Store, StoreError, UnknownRun
from tests.processes import in_threads


def _run(i: int | str) -> dict:
    return {"id": f"run-{i}", "method": "m", "modality": "text", "inputs_hash": "h", "seed": 0, "settings": {"a": 1}}


def test_fresh_store_is_wal_at_latest_schema(tmp_path: Path):
    store = Store(tmp_path / "t.db")
    assert store.schema_version == len(MIGRATIONS)
    assert store.read("PRAGMA journal_mode")[0][0] == "wal"
    assert store.integrity_ok()


def test_migrations_apply_in_order_and_keep_data(tmp_path: Path):
    path = tmp_path / "m.db"
    Store(path, migrations=MIGRATIONS[:1]).start_run(_run(1))
    extra = "CREATE TABLE notes_test (id INTEGER PRIMARY KEY, text TEXT)"
    store = Store(path, migrations=[*MIGRATIONS, extra])
    assert store.schema_version == len(MIGRATIONS) + 1
    assert store.get_run("run-1")["settings"] == {"a": 1}
    assert store.read("SELECT count(*) FROM notes_test")[0][0] == 0
    with pytest.raises(StoreError, match="newer than this program"):
        Store(path, migrations=MIGRATIONS)


def test_not_a_database_is_a_clear_error(tmp_path: Path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        Store(bad)


def test_concurrent_writers_lose_nothing(tmp_path: Path):
    store = Store(tmp_path / "c.db")
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(25):
                rid = f"{t}-{i}"
                store.start_run(_run(rid))
                store.add_metrics(f"run-{rid}", [{"name": "faces", "value": i}, {"name": "seconds", "value": 0.5}])
                store.finish_run(f"run-{rid}", "done", stage_seconds={"sample": 0.1})
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    in_threads(worker, 8)
    assert not errors
    assert store.read("SELECT count(*) FROM runs WHERE status = 'done'")[0][0] == 200
    assert store.read("SELECT count(*) FROM metrics")[0][0] == 400
    assert store.integrity_ok()


def test_failed_run_is_recorded_with_its_error(tmp_path: Path):
    store = Store(tmp_path / "f.db")
    store.start_run(_run("bad"))
    store.finish_run("run-bad", "failed", error="CheckpointError: no such directory")
    run = store.get_run("run-bad")
    assert run["status"] == "failed" and "no such directory" in run["error"] and run["finished"] >= run["created"]


def test_bad_writes_change_nothing(tmp_path: Path):
    store = Store(tmp_path / "b.db")
    store.start_run(_run(1))
    with pytest.raises(sqlite3.IntegrityError):
        store.start_run(_run(1))  # duplicate id
    with pytest.raises(UnknownRun):
        store.add_metrics("run-404", [{"name": "x", "value": 1}])
    with pytest.raises(UnknownRun):
        store.finish_run("run-404", "done")
    with pytest.raises(ValueError):
        store.finish_run("run-1", "exploded")
    with pytest.raises(KeyError):  # a bad row in a batch: the whole batch is refused
        store.add_metrics("run-1", [{"name": "ok", "value": 1}, {"value": 2}])
    assert store.metrics("run-1") == []
    assert store.get_run("run-1")["status"] == "running"
