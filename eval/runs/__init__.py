"""Runs: the SQLite run store, the runner the app, CLI and study share, and the run cache.

Public API::

    from eval.runs import Store, StoreError, UnknownRun, execute, run_to_completion

    eval.runs.store   Store (WAL, migrations, one writer path), StoreError, UnknownRun, default_db_path,
                      outputs_dir, data_dir
    eval.runs.runner  execute (method -> export -> record -> metric rows -> store), run_to_completion,
                      RunEvent, close_dead_runs
    eval.runs.cache   find_cached_run, expected_seconds, expected_time_message (torch-free)

Imports reach down to ``eval.judging`` and ``methods`` only.
"""

from eval.runs.runner import RunEvent, close_dead_runs, execute, run_to_completion
from eval.runs.store import Store, StoreError, UnknownRun, data_dir, default_db_path, outputs_dir

__all__ = [
    "RunEvent",
    "Store",
    "StoreError",
    "UnknownRun",
    "close_dead_runs",
    "data_dir",
    "default_db_path",
    "execute",
    "outputs_dir",
    "run_to_completion",
]
