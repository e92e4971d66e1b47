"""One run, end to end: method -> normalise -> export -> record -> metric rows -> store.

The app, the CLI and the study all run methods through :func:`execute`, so every asset is
exported, recorded and scored the same way. Methods never score themselves.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import methods
from eval.judging.protocol import PROTOCOL_VERSION, MetricRow, cost_rows, score
from eval.judging.renders import RENDERS_DIR, save_input
from eval.runs.store import Store, outputs_dir
from methods import export, runtime
from methods.base import Asset, Inputs, MethodError, Progress, Settings


@dataclass
class RunEvent:
    """What a running job reports: progress, a metric row as it is measured, or the end."""

    kind: str  # progress | metric | done
    run_id: str
    method: str
    progress: Progress | None = None
    metric: MetricRow | None = None
    record: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)
    precision: str = ""  # the dtype a weight-loading method's networks run in ("" for the others)


def new_run_id(method_id: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{method_id}-{secrets.token_hex(3)}"


def prepare(method_id: str, inputs: Inputs, settings: Settings | dict | None) -> tuple[methods.Method, Settings]:
    """Validate everything before anything is stored: method, modality, settings, availability."""
    method = methods.get(method_id)
    inputs.validated()
    if inputs.modality not in method.modalities:
        raise methods.InvalidInput(
            f"{method_id} does not take {inputs.modality} input (it takes {', '.join(method.modalities)})"
        )
    defaults = method.default_settings(inputs.modality)
    if settings is None:
        resolved = defaults
    elif isinstance(settings, Settings):
        resolved = settings
    else:
        resolved = type(defaults).from_dict(dict(settings), base=defaults)
    resolved.validate()
    methods.require_available(method, inputs.modality, resolved)
    return method, resolved


def execute(
    method_id: str,
    inputs: Inputs,
    settings: Settings | dict | None = None,
    *,
    store: Store | None = None,
    out_root: str | Path | None = None,
    out_dir: str | Path | None = None,
    run_id: str | None = None,
    context: dict[str, Any] | None = None,
) -> Iterator[RunEvent]:
    """Run a method and yield its events; the last one is ``done`` with the run record.

    Files go to ``out_dir`` (default: ``<out_root or outputs>/<run id>/``): asset.glb, run.json
    and points.ply for point clouds.

    Bad input raises a MethodError before anything is stored. A failure during the run is
    recorded (status failed, the error) in the store and run.json, then re-raised.
    """
    method, resolved = prepare(method_id, inputs, settings)
    store = store or Store()
    run_id = run_id or new_run_id(method_id)
    out_dir = Path(out_dir) if out_dir is not None else Path(out_root or outputs_dir()) / run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "id": run_id,
        "method": method.id,
        "method_version": method.version,
        "modality": inputs.modality,
        "inputs_hash": inputs.hash(),
        "inputs": inputs.describe(),
        "settings": resolved.to_dict(),
        "seed": int(resolved.seed),
        "hardware": {
            **runtime.hardware(),
            "process": process_tag(),  # who runs it: see close_dead_runs
            "precision": runtime.precision_record(getattr(resolved, "precision", None)),
        },
        "versions": runtime.versions(),
        "protocol_version": PROTOCOL_VERSION,
        "created": time.time(),
    }
    store.start_run(record)
    # the slot shows the dtype of methods that load weights; the others run float32 and say nothing of it
    chosen = record["hardware"]["precision"]
    precision = chosen["dtype"] if chosen["setting"] is not None else ""
    stages: dict[str, float] = {}
    metric_rows: list[MetricRow] = []
    try:
        with runtime.PeakMemory() as peak:
            gen = methods.run(method.id, inputs, resolved)
            started = time.perf_counter()
            while True:
                try:
                    progress = next(gen)
                except StopIteration as stop:
                    asset: Asset = stop.value
                    break
                yield RunEvent("progress", run_id, method.id, progress=progress, precision=precision)
            if not isinstance(asset, Asset):
                raise MethodError(f"{method.id} returned {type(asset).__name__}, not an Asset")
            method_seconds = time.perf_counter() - started
            stages.update(asset.stage_seconds or {"run": method_seconds})
            with runtime.timed(stages, "export"):
                normalized = methods.normalize(asset)
                metadata = {k: record[k] for k in ("id", "method", "method_version", "settings", "seed", "versions")}
                metadata.update(inputs=record["inputs"], normalization=normalized.normalization, notes=asset.notes)
                files = {k: str(v) for k, v in export.export_asset(normalized, out_dir, metadata).items()}
                files.update(_save_view_images(asset, out_dir))
                save_input(inputs, out_dir)  # the Arena and the Runs tab show the real input
        for row in cost_rows(stages, peak.peak_rss_mb, peak.peak_gpu_mb):
            metric_rows.append(row)
            yield RunEvent("metric", run_id, method.id, metric=row)
        started = time.perf_counter()
        scoring = {"method": method.id, "method_settings": resolved.to_dict(), **(context or {})}
        scoring.setdefault("renders_dir", str(out_dir / RENDERS_DIR))
        optimised = getattr(method, "optimises_clip", None)
        if optimised:  # never score with the CLIP a method optimised against (Dream Fields lesson)
            scoring["method_clip_models"] = [*scoring.get("method_clip_models", []), optimised]
        for row in score(normalized, inputs, scoring):
            metric_rows.append(row)
            yield RunEvent("metric", run_id, method.id, metric=row)
        panel = MetricRow("seconds_panel", round(time.perf_counter() - started, 3), "s", False, "cost")
        metric_rows.append(panel)
        yield RunEvent("metric", run_id, method.id, metric=panel)
        store.add_metrics(run_id, metric_rows)
        store.finish_run(
            run_id,
            "done",
            asset_path=files["glb"],
            stage_seconds=stages,
            peak_rss_mb=peak.peak_rss_mb,
            peak_gpu_mb=peak.peak_gpu_mb,
            notes=asset.notes,
        )
        record.update(status="done", error=None, asset_path=files["glb"], files=files, notes=asset.notes)
        # what a method reports beside its asset (split, training curve, SfM summary), arrays left out
        record["views"] = {k: v for k, v in asset.views.items() if isinstance(v, (str, int, float, bool, list, dict))}
        record["views"].update({k: Path(v).name for k, v in files.items() if k in asset.views})
    except GeneratorExit:
        _fail(store, run_id, record, stages, "cancelled", "cancelled by the user", out_dir, metric_rows)
        raise
    except BaseException as exc:
        status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
        message = str(exc) if isinstance(exc, MethodError) else f"{type(exc).__name__}: {exc}"
        _fail(store, run_id, record, stages, status, message, out_dir, metric_rows, traceback.format_exc())
        raise
    record.update(stage_seconds=stages, peak_rss_mb=peak.peak_rss_mb, peak_gpu_mb=peak.peak_gpu_mb)
    record["metrics"] = [r.to_dict() for r in metric_rows]
    _write_json(out_dir / "run.json", record)
    yield RunEvent("done", run_id, method.id, record=record, files=files)


def _save_view_images(asset: Asset, out_dir: Path) -> dict[str, str]:
    """Images a method hands over beside its asset (e.g. the image a text -> image -> 3D method made): key.png."""
    from PIL import Image

    saved = {}
    for key, value in asset.views.items():
        if isinstance(value, Image.Image) and key.replace("_", "").isalnum():
            value.save(out_dir / f"{key}.png")
            saved[key] = str(out_dir / f"{key}.png")
    return saved


def _fail(store, run_id, record, stages, status, message, out_dir, rows, tb: str = "") -> None:
    record.update(status=status, error=message, stage_seconds=stages, metrics=[r.to_dict() for r in rows])
    if tb:
        record["traceback"] = tb
    try:
        store.finish_run(run_id, status, error=message, stage_seconds=stages)
    finally:
        _write_json(out_dir / "run.json", record)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


INTERRUPTED = "interrupted: the process running it stopped before it finished"


def process_tag() -> dict[str, Any]:
    """This process, as a run's owner: host, pid and the pid's start time (so a reused pid is not taken for it)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid())}


def _process_start(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22, the start time in clock ticks since boot


def process_alive(tag: dict[str, Any]) -> bool:
    """Is the process in ``tag`` still running? A tag from another host is taken as dead: a SQLite store is
    used from one machine (a restarted container gets a new host name)."""
    if tag.get("host") != socket.gethostname():
        return False
    pid = int(tag.get("pid") or 0)
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's live process
    start = _process_start(pid)
    return not (tag.get("start") and start and start != tag["start"])


def close_dead_runs(store: Store, out_root: str | Path | None = None) -> list[str]:
    """Mark runs left 'running' by a process that no longer exists as failed (``INTERRUPTED``) and remove
    their folders under ``out_root`` when empty. Runs without an owner tag (study replays, older
    versions) are left alone; the study runner closes its own. Returns the ids it closed."""
    root = Path(out_root or outputs_dir())
    closed = []
    for row in store.read("SELECT id, hardware FROM runs WHERE status = 'running'"):
        owner = json.loads(row["hardware"] or "{}").get("process")
        if not isinstance(owner, dict) or process_alive(owner):
            continue

        def close(conn, run_id=row["id"]) -> int:
            return conn.execute(
                "UPDATE runs SET status = 'failed', error = ?, finished = ? WHERE id = ? AND status = 'running'",
                (INTERRUPTED, time.time(), run_id),
            ).rowcount

        if store.write(close):
            closed.append(row["id"])
            folder = root / row["id"]
            if folder.is_dir() and not any(p.is_file() for p in folder.rglob("*")):
                for sub in sorted(folder.rglob("*"), reverse=True):
                    sub.rmdir()
                folder.rmdir()
    return closed


def run_to_completion(method_id: str, inputs: Inputs, settings: Settings | dict | None = None, **kw: Any) -> RunEvent:
    """Drive :func:`execute` to its end and return the ``done`` event (for scripts and tests)."""
    done = None
    for event in execute(method_id, inputs, settings, **kw):
        if event.kind == "done":
            done = event
    assert done is not None
    return done
