"""Keep a Space's votes across restarts: the study tables as JSON lines in a Hugging Face dataset repo.

Optional. When TRILEMMA_HF_DATASET (a dataset repo id) and a token (TRILEMMA_HF_TOKEN or HF_TOKEN)
are set, :func:`start` first restores the votes and ratings already in the repo into the store,
then starts a ``huggingface_hub.CommitScheduler`` that pushes this process's file every
TRILEMMA_HF_SYNC_MINUTES (default 5). Each process appends to its own
``data/ratings-<session>.jsonl``: append-only, no two writers ever touch one file.

A line holds one vote (its pair, answers and the two run records without any asset) or one Likert
submission (its rows and the run record), so a fresh store can rebuild the leaderboard from the
repo alone. Restoring is idempotent: what is already in the store is skipped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eval.runs.store import Store, outputs_dir

PATH_IN_REPO = "data"
log = logging.getLogger(__name__)
_RUN_FIELDS = ("id", "method", "method_version", "modality", "inputs_hash", "inputs", "settings", "seed", "created")


@dataclass(frozen=True)
class SyncConfig:
    repo_id: str
    token: str
    every_minutes: float = 5.0
    private: bool = True

    @classmethod
    def from_env(cls) -> SyncConfig | None:
        """None unless both a dataset repo id and a token are configured."""
        repo = os.environ.get("TRILEMMA_HF_DATASET", "").strip()
        token = (os.environ.get("TRILEMMA_HF_TOKEN") or os.environ.get("HF_TOKEN") or "").strip()
        if not repo or not token:
            return None
        every = float(os.environ.get("TRILEMMA_HF_SYNC_MINUTES", "5") or 5)
        return cls(repo, token, every)


class RatingsSync:
    """Appends committed votes and ratings to this session's JSON-lines file under ``folder``.

    ``scheduler`` is a CommitScheduler (or anything with a ``lock``): writes hold its lock so that a
    push never uploads half a line.
    """

    def __init__(self, folder: str | Path, scheduler: Any = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.scheduler = scheduler
        self.lock = getattr(scheduler, "lock", None) or threading.Lock()
        self.path = self.folder / f"ratings-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}.jsonl"

    def _append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True, default=str)
        with self.lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def record_vote(self, store: Store, vote_id: int) -> None:
        vote = dict(store.read("SELECT * FROM votes WHERE id = ?", (vote_id,))[0])
        pair = dict(store.read("SELECT * FROM pairs WHERE id = ?", (vote["pair_id"],))[0])
        answers = {
            r["criterion"]: r["answer"] for r in store.read("SELECT * FROM vote_answers WHERE vote_id = ?", (vote_id,))
        }
        vote.pop("id")
        runs = [_run_record(store, pair["run_left"]), _run_record(store, pair["run_right"])]
        self._append({"kind": "vote", "pair": pair, "vote": vote, "answers": answers, "runs": runs})

    def record_ratings(self, store: Store, rating_ids: list[int]) -> None:
        if not rating_ids:
            return
        marks = ", ".join("?" * len(rating_ids))
        rows = [dict(r) for r in store.read(f"SELECT * FROM ratings WHERE id IN ({marks})", rating_ids)]
        for r in rows:
            r.pop("id")
        runs = [_run_record(store, run_id) for run_id in sorted({r["run_id"] for r in rows})]
        self._append({"kind": "ratings", "ratings": rows, "runs": runs})

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()


def _run_record(store: Store, run_id: str) -> dict[str, Any]:
    row = dict(store.read("SELECT * FROM runs WHERE id = ?", (run_id,))[0])
    return {k: row[k] for k in (*_RUN_FIELDS, "asset_path")}


def restore(store: Store, folder: str | Path) -> dict[str, int]:
    """Import every ``*.jsonl`` line under ``folder`` into the store; returns what was added."""
    added = {"runs": 0, "votes": 0, "ratings": 0}
    files = sorted(Path(folder).rglob("*.jsonl")) if Path(folder).is_dir() else []
    records = []
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a torn last line from a crash: the whole record is in a later push or lost
    if not records:
        return added

    def apply(conn: sqlite3.Connection) -> None:
        for rec in records:
            for run in rec.get("runs", []):
                added["runs"] += _insert_run(conn, run)
            if rec.get("kind") == "vote":
                pair, vote = rec["pair"], rec["vote"]
                if conn.execute("SELECT 1 FROM votes WHERE pair_id = ?", (pair["id"],)).fetchone():
                    continue
                conn.execute(
                    "INSERT OR IGNORE INTO pairs (id, rater, run_left, run_right, served_at) VALUES (?, ?, ?, ?, ?)",
                    (pair["id"], pair["rater"], pair["run_left"], pair["run_right"], pair["served_at"]),
                )
                cur = conn.execute(
                    "INSERT OR IGNORE INTO votes (pair_id, rater, run_lo, run_hi, seconds_viewed, created)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        vote["pair_id"],
                        vote["rater"],
                        vote["run_lo"],
                        vote["run_hi"],
                        vote["seconds_viewed"],
                        vote["created"],
                    ),
                )
                if cur.rowcount:
                    conn.executemany(
                        "INSERT INTO vote_answers (vote_id, criterion, answer) VALUES (?, ?, ?)",
                        [(cur.lastrowid, c, a) for c, a in rec["answers"].items()],
                    )
                    added["votes"] += 1
            elif rec.get("kind") == "ratings":
                for r in rec["ratings"]:
                    key = (r["run_id"], r["rater"], r["criterion"], r["created"])
                    exists = conn.execute(
                        "SELECT 1 FROM ratings WHERE run_id = ? AND rater = ? AND criterion = ? AND created = ?", key
                    ).fetchone()
                    if not exists:
                        conn.execute(
                            "INSERT INTO ratings (run_id, rater, criterion, score, created) VALUES (?, ?, ?, ?, ?)",
                            (r["run_id"], r["rater"], r["criterion"], r["score"], r["created"]),
                        )
                        added["ratings"] += 1

    store.write(apply)
    return added


def _insert_run(conn: sqlite3.Connection, run: dict[str, Any]) -> int:
    if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run["id"],)).fetchone():
        return 0
    values = {k: run.get(k) for k in _RUN_FIELDS}
    for key in ("inputs", "settings"):
        if not isinstance(values[key], str):
            values[key] = json.dumps(values[key] or {})
    values["asset_path"] = run.get("asset_path")
    values["method_version"] = values["method_version"] or ""
    values["status"] = "done"
    cols = ", ".join(values)
    conn.execute(f"INSERT INTO runs ({cols}) VALUES ({', '.join('?' * len(values))})", list(values.values()))
    return 1


def start(store: Store, config: SyncConfig | None = None, folder: str | Path | None = None) -> RatingsSync | None:
    """Restore from the dataset repo, then push this session's votes there periodically; None if not configured."""
    config = config or SyncConfig.from_env()
    if config is None:
        return None
    from huggingface_hub import CommitScheduler, snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    root = Path(folder) if folder is not None else outputs_dir() / "ratings_sync"
    restored = root / "restored"
    with contextlib.suppress(RepositoryNotFoundError):  # a new study: the scheduler creates the repo
        snapshot_download(
            config.repo_id,
            repo_type="dataset",
            local_dir=restored,
            allow_patterns=[f"{PATH_IN_REPO}/*.jsonl"],
            token=config.token,
        )
    restore(store, restored)
    scheduler = CommitScheduler(
        repo_id=config.repo_id,
        repo_type="dataset",
        folder_path=root / "outbox",
        path_in_repo=PATH_IN_REPO,
        every=config.every_minutes,
        private=config.private,
        token=config.token,
        allow_patterns=["*.jsonl"],
    )
    return RatingsSync(root / "outbox", scheduler)


@cache
def for_database(db_path: str) -> RatingsSync | None:
    """The one sync of a database in this process (None when not configured), started on first use."""
    try:
        return start(Store(db_path))
    except Exception as exc:  # the study goes on locally; the votes stay in the store
        log.warning("ratings sync to the Hugging Face Hub is off: %s: %s", type(exc).__name__, exc)
        return None
