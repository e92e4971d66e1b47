"""The run store: SQLite in WAL mode, a versioned schema with migrations, one writer path.

Every write is one transaction (``BEGIN IMMEDIATE``), serialised by a per-database lock in this
process and by SQLite's own lock across processes, so concurrent writers never interleave.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RUN_STATUSES = ("running", "done", "failed", "cancelled")


class StoreError(RuntimeError):
    """The database cannot be opened or written (not a database, newer schema, ...)."""


class UnknownRun(StoreError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown run"


def outputs_dir() -> Path:
    return Path(os.environ.get("TRILEMMA_OUTPUTS", "outputs"))


def data_dir() -> Path:
    """Private state (the run store): never inside outputs/, whose asset files the app serves."""
    return Path(os.environ.get("TRILEMMA_DATA", "data"))


def default_db_path() -> Path:
    return Path(os.environ.get("TRILEMMA_DB") or data_dir() / "trilemma.db")


# Each migration moves the schema from version i to i + 1; never edit one that has shipped.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        method TEXT NOT NULL,
        method_version TEXT NOT NULL DEFAULT '',
        modality TEXT NOT NULL,
        inputs_hash TEXT NOT NULL,
        inputs TEXT NOT NULL DEFAULT '{}',
        settings TEXT NOT NULL DEFAULT '{}',
        seed INTEGER,
        status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'cancelled')),
        error TEXT,
        asset_path TEXT,
        stage_seconds TEXT NOT NULL DEFAULT '{}',
        peak_rss_mb REAL,
        peak_gpu_mb REAL,
        hardware TEXT NOT NULL DEFAULT '{}',
        versions TEXT NOT NULL DEFAULT '{}',
        notes TEXT NOT NULL DEFAULT '[]',
        created REAL NOT NULL,
        finished REAL
    );
    CREATE INDEX runs_method ON runs (method, modality, status);
    CREATE INDEX runs_inputs ON runs (inputs_hash);
    CREATE TABLE metrics (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value TEXT,
        unit TEXT NOT NULL DEFAULT '',
        higher_is_better INTEGER,
        grp TEXT NOT NULL DEFAULT '',
        settings TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL
    );
    CREATE INDEX metrics_run ON metrics (run_id, name);
    """,
    # 2: the qualitative study (eval.ratings): served arena pairs, votes with one answer per criterion,
    # Likert ratings. They reference runs by id, are append-only, and store no IP addresses.
    """
    CREATE TABLE pairs (
        id TEXT PRIMARY KEY,
        rater TEXT NOT NULL,
        run_left TEXT NOT NULL REFERENCES runs (id),
        run_right TEXT NOT NULL REFERENCES runs (id),
        served_at REAL NOT NULL,
        CHECK (run_left <> run_right)
    );
    CREATE INDEX pairs_rater ON pairs (rater, served_at);
    CREATE INDEX pairs_runs ON pairs (run_left, run_right);
    CREATE TABLE votes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        pair_id TEXT NOT NULL UNIQUE REFERENCES pairs (id),
        rater TEXT NOT NULL,
        run_lo TEXT NOT NULL REFERENCES runs (id),
        run_hi TEXT NOT NULL REFERENCES runs (id),
        seconds_viewed REAL NOT NULL,
        created REAL NOT NULL,
        UNIQUE (rater, run_lo, run_hi),
        CHECK (run_lo < run_hi)
    );
    CREATE INDEX votes_rater ON votes (rater, created);
    CREATE INDEX votes_runs ON votes (run_lo, run_hi);
    CREATE TABLE vote_answers (
        vote_id INTEGER NOT NULL REFERENCES votes (id),
        criterion TEXT NOT NULL,
        answer TEXT NOT NULL CHECK (answer IN ('left', 'right', 'tie', 'both_bad')),
        PRIMARY KEY (vote_id, criterion)
    );
    CREATE TABLE ratings (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL REFERENCES runs (id),
        rater TEXT NOT NULL,
        criterion TEXT NOT NULL,
        score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
        created REAL NOT NULL
    );
    CREATE INDEX ratings_run ON ratings (run_id, rater, criterion);
    CREATE INDEX ratings_rater ON ratings (rater, created);
    """,
    # 3: the comparative study (eval.study): which study a run belongs to and the key of its cell.
    """
    ALTER TABLE runs ADD COLUMN study TEXT;
    ALTER TABLE runs ADD COLUMN cell_key TEXT;
    CREATE INDEX runs_study ON runs (study, cell_key);
    """,
]

_JSON_COLUMNS = ("inputs", "settings", "stage_seconds", "hardware", "versions", "notes")
_DB_LOCKS: dict[str, threading.Lock] = {}
_DB_LOCKS_GUARD = threading.Lock()


def _lock_for(path: str) -> threading.Lock:
    with _DB_LOCKS_GUARD:
        return _DB_LOCKS.setdefault(path, threading.Lock())


class Store:
    """Runs and their metric values. Safe to share between threads."""

    def __init__(self, path: str | Path | None = None, migrations: list[str] | None = None):
        self.path = Path(path) if path is not None else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._migrations = MIGRATIONS if migrations is None else migrations
        self._local = threading.local()
        self._write_lock = _lock_for(str(self.path.resolve()))
        self._migrate()

    # -- connections -------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA busy_timeout = 30000")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = ON")
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path} is not a usable SQLite database: {exc}") from None
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def _transaction(self):
        """The one writer path: a process lock plus BEGIN IMMEDIATE, committed or rolled back whole."""
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    def write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn(conn)`` inside one write transaction (for other modules' tables)."""
        with self._transaction() as conn:
            return fn(conn)

    def read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return self._conn().execute(sql, tuple(params)).fetchall()

    # -- schema ------------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        return int(self._conn().execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        try:
            with self._transaction() as conn:
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                if version > len(self._migrations):
                    raise StoreError(
                        f"{self.path} has schema version {version}, newer than this program knows "
                        f"({len(self._migrations)}); upgrade Trilemma3D"
                    )
                for i in range(version, len(self._migrations)):
                    for statement in _statements(self._migrations[i]):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {i + 1}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable SQLite database: {exc}") from None

    # -- runs --------------------------------------------------------------------------------
    def start_run(self, record: dict[str, Any]) -> str:
        """Insert a run with status 'running'. ``record`` holds the runs columns by name."""
        row = {k: record[k] for k in _RUN_INSERT if record.get(k) is not None}
        row["status"] = record.get("status", "running")
        row["created"] = record.get("created", time.time())
        for key in _JSON_COLUMNS:
            if key in row:
                row[key] = json.dumps(row[key] if row[key] is not None else ({} if key != "notes" else []))
        cols = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        with self._transaction() as conn:
            conn.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", row)
        return row["id"]

    def finish_run(self, run_id: str, status: str, **fields: Any) -> None:
        """Set the final status (done | failed | cancelled) and the outcome fields of a run."""
        if status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {RUN_STATUSES}")
        allowed = {"error", "asset_path", "stage_seconds", "peak_rss_mb", "peak_gpu_mb", "notes", "settings"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown run fields {sorted(unknown)}")
        values = {k: json.dumps(v) if k in _JSON_COLUMNS else v for k, v in fields.items()}
        values.update(status=status, finished=time.time(), id=run_id)
        sets = ", ".join(f"{k} = :{k}" for k in values if k != "id")
        with self._transaction() as conn:
            cur = conn.execute(f"UPDATE runs SET {sets} WHERE id = :id", values)
            if cur.rowcount != 1:
                raise UnknownRun(f"no run with id {run_id!r}")

    def add_metrics(self, run_id: str, rows: Iterable[Any]) -> int:
        """Append metric rows (MetricRow or dicts with the same keys) to a run in one transaction."""
        now = time.time()
        data = []
        for r in rows:
            d = r.to_dict() if hasattr(r, "to_dict") else dict(r)
            hib = d.get("higher_is_better")
            data.append(
                (
                    run_id,
                    d["name"],
                    json.dumps(d.get("value")),
                    d.get("unit", ""),
                    None if hib is None else int(bool(hib)),
                    d.get("group", ""),
                    json.dumps(d.get("settings") or {}, sort_keys=True),
                    now,
                )
            )
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise UnknownRun(f"no run with id {run_id!r}")
            conn.executemany(
                "INSERT INTO metrics (run_id, name, value, unit, higher_is_better, grp, settings, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                data,
            )
        return len(data)

    def get_run(self, run_id: str) -> dict[str, Any]:
        rows = self.read("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise UnknownRun(f"no run with id {run_id!r}")
        return _run_dict(rows[0])

    def runs(
        self, method: str | None = None, modality: str | None = None, status: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        where, params = [], []
        for col, val in (("method", method), ("modality", modality), ("status", status)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created DESC LIMIT ?"
        return [_run_dict(r) for r in self.read(sql, [*params, limit])]

    def metrics(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.read("SELECT * FROM metrics WHERE run_id = ? ORDER BY id", (run_id,))
        return [
            {
                "name": r["name"],
                "value": json.loads(r["value"]) if r["value"] is not None else None,
                "unit": r["unit"],
                "higher_is_better": None if r["higher_is_better"] is None else bool(r["higher_is_better"]),
                "group": r["grp"],
                "settings": json.loads(r["settings"]),
            }
            for r in rows
        ]

    def integrity_ok(self) -> bool:
        return self.read("PRAGMA integrity_check")[0][0] == "ok"


_RUN_INSERT = (
    "id method method_version modality inputs_hash inputs settings seed asset_path hardware versions notes".split()
)


def _run_dict(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    for key in _JSON_COLUMNS:
        if d.get(key) is not None:
            d[key] = json.loads(d[key])
    return d


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
