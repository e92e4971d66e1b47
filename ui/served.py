"""What the app may serve, and what it may say: exact published files, records and messages without server paths.

Gradio serves a file through ``/gradio_api/file=`` only when it lies in ``allowed_paths``.
:data:`SERVED` is that list: the app's ``assets/`` folder plus the exact files of finished runs, added
when a run is shown (:meth:`ServedFiles.publish`). The run store, logs and server-side run records are
never in it, whatever folder they share with the assets. Gradio reads the list at every request, so a
file published later is served from then on.

:func:`redact` and :func:`public_record` take server paths out of messages and of the run record
offered for download; on a shared host the record also loses the host's details (host name, process id,
start time, kernel): :data:`HOST_KEYS`.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DOWNLOAD_FOLDER = "download"  # <run folder>/download/run.json: the record without server paths
_PRIVATE_KEYS = ("traceback",)
HOST_KEYS = ("process", "host", "hostname", "pid", "kernel", "node")  # dropped on a shared host; platform -> OS name
# An absolute or home-relative path: "/srv/x/y.db", "~/x", "C:\x"; not a URL ("https://h/p") nor "1/2".
_PATH = re.compile(r"(?<![\w:/.~\\-])(?:~|[A-Za-z]:)?[/\\](?![/\\])[^\s'\"`,;()\[\]{}<>|]*")


class ServedFiles(list):
    """Gradio's ``allowed_paths``: folders given at start (assets) and single files published since.

    Gradio checks each request against every entry, so only the latest ``limit`` files are kept: a shown
    file has been copied to gradio's cache by then (that copy is what the browser loads), and a run
    shown again is published again.
    """

    def __init__(self, roots: Iterable[str | Path] = (), limit: int = 4096):
        super().__init__()
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._roots = 0
        self.limit = limit
        self.publish(*roots)

    def publish(self, *paths: str | Path | None) -> None:
        with self._lock:
            for path in paths:
                if not path:
                    continue
                resolved = str(Path(path).resolve())
                if resolved in self[: self._roots]:
                    continue
                if Path(resolved).is_dir():  # a folder (assets/): kept for good, before the files
                    self.insert(self._roots, resolved)
                    self._roots += 1
                else:
                    if resolved in self._seen:
                        self.remove(resolved)  # moves to the newest end
                    self.append(resolved)
                self._seen.add(resolved)
            while len(self) - self._roots > self.limit:
                self._seen.discard(self.pop(self._roots))

    def is_served(self, path: str | Path) -> bool:
        return str(Path(path).resolve()) in self._seen


SERVED = ServedFiles()


def store_files(db: str | Path) -> list[str]:
    """The database and SQLite's companion files: never served, never moved to gradio's cache."""
    base = str(Path(db).resolve())
    return [base + suffix for suffix in ("", "-wal", "-shm", "-journal")]


def redact(text: Any) -> str:
    """``text`` with every absolute path cut to its last part (a file name says nothing about the server)."""

    def name(match: re.Match[str]) -> str:
        parts = [p for p in re.split(r"[/\\]", match.group(0)) if p and p not in ("~",)]
        return parts[-1] if parts else ""

    return _PATH.sub(name, str(text))


def public_record(record: Any, run_dir: str | Path | None = None) -> Any:
    """A run record for download: paths inside the run folder become relative, others their file name."""
    from ui.public import is_public

    base = Path(run_dir).resolve() if run_dir is not None else None
    if isinstance(record, dict):
        private = _PRIVATE_KEYS + (HOST_KEYS if is_public() else ())
        out = {k: public_record(v, base) for k, v in record.items() if k not in private}
        if is_public() and isinstance(out.get("platform"), str):
            out["platform"] = out["platform"].split("-")[0]  # "Linux", not the kernel's version and build
        return out
    if isinstance(record, list):
        return [public_record(v, base) for v in record]
    if isinstance(record, str) and record:
        if base is not None and os.path.isabs(record):
            try:
                return str(Path(record).resolve().relative_to(base))
            except ValueError:
                pass
        return redact(record)
    return record


def publish_run_files(glb: str | None, extra: Iterable[str | None] = ()) -> list[str]:
    """Publish a finished run's asset files and a download copy of its record; the paths to offer."""
    if not glb:
        return []
    run_dir = Path(glb).parent
    files = [glb, *(f for f in extra if f)]
    record_path = run_dir / "run.json"
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            record = None
        if isinstance(record, dict):
            out = run_dir / DOWNLOAD_FOLDER / "run.json"
            out.parent.mkdir(exist_ok=True)
            tmp = out.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(public_record(record, run_dir), indent=2, default=str))
            tmp.replace(out)
            files.append(str(out))
    SERVED.publish(*files)
    return files
