"""Running a study: every cell not yet in the store, through an executor, recorded by one writer.

- Resumable: a cell whose key is in the store for this study, done or failed, is skipped
  (``retry_failed`` runs the failed ones again).
- A failure or a timeout is recorded as a failed run (error "timeout: ...") and the study goes on.
- Ctrl-C: the cell that was running is dropped whole (nothing of it is stored), the cells already
  written stay, and a store write in progress finishes first; run again to resume.
- Each result is replayed on the store exactly as :func:`eval.runs.runner.execute` would have written it,
  then tagged with the study and the cell key (columns added by the study's store migration).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import methods
from eval.runs.runner import new_run_id
from eval.runs.store import Store, default_db_path
from eval.study.cells import Cell
from eval.study.executors import CellResult, CellTask, InProcessExecutor, method_refs
from eval.study.spec import Study
from methods.base import InvalidInput, Progress

FINISHED = ("done", "failed")
MANIFEST = "manifest.json"


@dataclass
class StudyRun:
    """What a study run did (also written to ``<output>/manifest.json``)."""

    study: str
    cells: int
    skipped: int = 0
    done: int = 0
    failed: int = 0
    timeouts: int = 0
    interrupted: bool = False
    seconds: float = 0.0
    executor: str = ""
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def ran(self) -> int:
        return self.done + self.failed

    def line(self) -> str:
        left = self.cells - self.skipped - self.ran
        parts = [f"{self.done} done", f"{self.failed} failed ({self.timeouts} timeouts)", f"{self.skipped} skipped"]
        if left:
            parts.append(f"{left} left")
        state = "interrupted" if self.interrupted else "finished"
        return f"study {self.study} {state} in {_clock(self.seconds)}: " + ", ".join(parts)


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C during a study; ``summary`` says what was kept. Run the study again to resume."""

    def __init__(self, summary: StudyRun):
        super().__init__(summary.line())
        self.summary = summary


def open_store(study: Study, db: str | Path | None = None) -> Store:
    return Store(db or study.store or default_db_path())


def finished_cells(store: Store, study: str) -> dict[str, dict[str, Any]]:
    """The run that counts for each finished cell of a study (the latest done one, else the latest failed)."""
    rows = store.read(
        "SELECT * FROM runs WHERE study = ? AND status IN ('done', 'failed') ORDER BY (status = 'done'), created",
        (study,),
    )
    return {r["cell_key"]: dict(r) for r in rows}


def close_interrupted(store: Store, study: str) -> int:
    """Mark runs of the study left 'running' by a process that died mid-write as cancelled."""

    def update(conn) -> int:
        return conn.execute(
            "UPDATE runs SET status = 'cancelled', error = 'the study stopped before this record was complete', "
            "finished = ? WHERE study = ? AND status = 'running'",
            (time.time(), study),
        ).rowcount

    return store.write(update)


def write_result(store: Store, study: str, result: CellResult, prompt_set: str | None = None) -> None:
    """Replay a worker's store calls on the one writer and tag the run with its study and cell key."""
    result.materialize()
    with _sigint_deferred():
        for name, args, kwargs in result.calls:
            if name == "start_run" and prompt_set:
                args = ({**args[0], "inputs": {**args[0]["inputs"], "prompt_set": prompt_set}},)
            getattr(store, name)(*args, **kwargs)
            if name == "start_run":
                store.write(
                    lambda conn: conn.execute(
                        "UPDATE runs SET study = ?, cell_key = ? WHERE id = ?", (study, result.key, result.run_id)
                    )
                )


def run_study(
    study: Study,
    *,
    executor: Any = None,
    store: Store | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    stream: IO[str] | None = None,
    on_result: Callable[[Cell, CellResult], None] | None = None,
) -> StudyRun:
    """Run every cell of the study that is not finished in the store; returns what happened.

    Raises StudyInterrupted (a KeyboardInterrupt) on Ctrl-C, after leaving the store consistent.
    """
    executor = executor or InProcessExecutor()
    store = store or open_store(study)
    started = time.monotonic()
    out = Path(study.output)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(study.path, out / "study.yaml")
    close_interrupted(store, study.name)
    finished = finished_cells(store, study.name)
    pending = [
        c for c in study.cells if c.key not in finished or (retry_failed and finished[c.key]["status"] == "failed")
    ]
    summary = StudyRun(study.name, len(study.cells), skipped=len(study.cells) - len(pending))
    summary.executor = executor.describe()
    _write_manifest(study, store, summary, running=True)
    by_key = {c.key: c for c in pending}
    sets = {i.id: s.name for s in study.inputs for i in s.items}
    bar = ProgressBar(study.name, pending, executor, stream or sys.stderr, enabled=progress)
    try:
        with contextlib.closing(executor.map(_tasks(study, pending), bar.progress)) as results:
            for result in results:
                cell = by_key[result.key]
                write_result(store, study.name, result, sets.get(cell.input_id))
                if result.status == "done":
                    summary.done += 1
                else:
                    summary.failed += 1
                    summary.timeouts += result.timed_out
                    summary.failures.append({"cell": cell.title, "error": result.error or ""})
                bar.cell_done(cell, result)
                if on_result is not None:
                    on_result(cell, result)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
        summary.seconds = time.monotonic() - started
        _write_manifest(study, store, summary, running=False)
    if summary.interrupted:
        raise StudyInterrupted(summary)
    return summary


def _tasks(study: Study, cells: list[Cell]) -> Iterator[CellTask]:
    """One task per cell; inputs are loaded on the head (workers need no access to the input files)."""
    refs = method_refs({c.method for c in cells})
    loaded: tuple[str, Any, str | None] = ("", None, None)
    for cell in cells:
        if loaded[0] != cell.input_id:  # cells come grouped by input: load each input once per group
            try:
                loaded = (cell.input_id, study.item(cell.input_id).load(), None)
            except (InvalidInput, OSError, ValueError) as exc:
                loaded = (cell.input_id, None, f"the input {cell.input_id} cannot be loaded: {exc}")
        run_id = new_run_id(cell.method)
        yield CellTask(
            cell, loaded[1], study.context_for(cell), run_id, str(Path(study.output) / "runs" / run_id), refs, loaded[2]
        )


def _write_manifest(study: Study, store: Store, summary: StudyRun, running: bool) -> None:
    path = Path(study.output) / MANIFEST
    previous = json.loads(path.read_text()) if path.exists() else {}
    manifest = {
        "name": study.name,
        "description": study.description,
        "study_file": str(study.path),
        "store": str(Path(store.path).resolve()),
        "output": str(Path(study.output).resolve()),
        "cells": len(study.cells),
        "running": running,
        "first_started": previous.get("first_started", time.time()),
        "updated": time.time(),
        "last_run": asdict(summary),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(path)


@contextlib.contextmanager
def _sigint_deferred():
    """Hold Ctrl-C until the block is done (a cell's records are written whole), then raise it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt


# ----------------------------------------------------------------------------- progress


class ProgressBar:
    """Cells done out of cells to run, failures, and the time left.

    The time left sums, over the cells still to run, each method variant's mean seconds so far (or
    the method's own estimate before its first cell), divided by the executor's parallel workers.
    On a terminal it redraws one line; elsewhere it prints a line per finished cell.
    """

    def __init__(self, name: str, cells: list[Cell], executor: Any, stream: IO[str], enabled: bool = True):
        self.name = name
        self.titles = {c.key: c.title for c in cells}
        self.remaining = Counter(c.variant for c in cells)
        self.total = len(cells)
        self.executor = executor  # its worker count may be known only once it has started (Ray)
        self.stream = stream
        self.enabled = enabled and self.total > 0
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.finished = 0
        self.failed = 0
        self.seconds: dict[str, list[float]] = {}
        self.declared: dict[str, float] = {}
        self.started = time.monotonic()
        self.status = ""
        self.last_draw = 0.0
        gpu = bool(getattr(executor, "gpu", False))
        for cell in cells:
            if cell.variant not in self.declared:
                method = methods.get(cell.method)
                settings = type(method.default_settings(cell.modality)).from_dict(cell.settings)
                self.declared[cell.variant] = float(method.estimate_seconds(settings, gpu) or 0.0)

    def estimate(self, variant: str) -> float | None:
        seen = self.seconds.get(variant)
        if seen:
            return sum(seen) / len(seen)
        return self.declared.get(variant) or None

    def eta(self) -> float | None:
        total = 0.0
        for variant, count in self.remaining.items():
            if count:
                estimate = self.estimate(variant)
                if estimate is None:
                    return None
                total += count * estimate
        return total / max(1, int(getattr(self.executor, "workers", 1)))

    def progress(self, key: str, p: Progress) -> None:
        if not self.enabled or not self.tty:
            return
        frac = f" {p.fraction:.0%}" if p.fraction is not None else ""
        self.status = f"{self.titles.get(key, key)}: {p.stage}{frac}"
        if time.monotonic() - self.last_draw > 0.2:
            self.draw()

    def cell_done(self, cell: Cell, result: CellResult) -> None:
        self.remaining[cell.variant] -= 1
        self.finished += 1
        self.failed += result.status != "done"
        self.seconds.setdefault(cell.variant, []).append(result.seconds)
        if not self.enabled:
            return
        if self.tty:
            self.status = ""
            self.draw()
            return
        what = "done  " if result.status == "done" else ("timeout" if result.timed_out else "failed")
        error = f": {result.error}" if result.error else ""
        width = len(str(self.total))
        print(
            f"[{self.finished:>{width}}/{self.total}] {what} {cell.title} ({result.seconds:.1f} s){error}; "
            f"{self._left_text()}",
            file=self.stream,
            flush=True,
        )

    def _left_text(self) -> str:
        eta = self.eta()
        return "estimating the time left" if eta is None else f"~{_clock(eta)} left"

    def draw(self) -> None:
        self.last_draw = time.monotonic()
        width = 24
        filled = int(width * self.finished / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        failed = f", {self.failed} failed" if self.failed else ""
        text = (
            f"{self.name} [{bar}] {self.finished}/{self.total} cells{failed}, {_clock(time.monotonic() - self.started)}"
            f" elapsed, {self._left_text()}  {self.status}"
        )
        self.stream.write("\r" + text[:160].ljust(160))
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
