"""Executors: where a study's cells run. The same cells, the same store, whatever runs them.

A worker runs a cell through :func:`eval.runs.runner.execute` against a :class:`RecordingStore`, which
keeps the store calls the run makes; the result goes back to the study's one writer, which replays
them on the real store (see :mod:`eval.study.run`). So a cell is recorded exactly like an app run, and
workers in other processes or on other machines never open the database.

- :class:`InProcessExecutor`: one cell after another in this process (one device).
- :class:`LocalExecutor`: one worker process per local GPU (``CUDA_VISIBLE_DEVICES`` set per worker).
- :class:`RayExecutor`: Ray tasks on a local instance or a cluster (``address``); assets come back
  to the head as bytes, so workers need no shared file system.

Time budgets: in a worker the budget is checked between the run's events (progress and metric
rows); past it the run is closed and recorded as failed with a "timeout" error. A run that stops
yielding cannot be stopped that way: the local and Ray executors also kill a cell's worker at
budget + ``grace_s``; in process there is no such backstop.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pickle
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any

import methods
from eval.judging.protocol import PROTOCOL_VERSION
from eval.runs.runner import execute
from eval.study.cells import Cell
from methods import registry, runtime
from methods.base import Inputs, MethodError, Progress

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = "timeout"
ProgressCallback = Callable[[str, Progress], None]  # (cell key, progress)
# Passed on to Ray workers: offline mode, thread counts, caches, the project's own settings.
ENV_PREFIXES = ("TRILEMMA_", "HF_", "TRANSFORMERS_", "OMP_", "MKL_", "TORCH_")


@dataclass
class CellTask:
    """What a worker needs to run one cell; picklable (it crosses processes and machines)."""

    cell: Cell
    inputs: Inputs | None
    context: dict[str, Any]
    run_id: str
    out_dir: str
    method_refs: dict[str, str] = field(default_factory=dict)  # method id -> "module:QualName"
    input_error: str | None = None  # the inputs could not be loaded on the head


@dataclass
class CellResult:
    """A finished cell: its store calls to replay, and its files when they were shipped as bytes."""

    key: str
    run_id: str
    status: str  # done | failed
    error: str | None
    calls: list[tuple[str, tuple, dict]]
    seconds: float
    out_dir: str
    files: dict[str, bytes] = field(default_factory=dict)
    shipped_from: str | None = None  # the worker's folder that the recorded paths name

    @property
    def timed_out(self) -> bool:
        return bool(self.error) and self.error.startswith(TIMEOUT)

    def materialize(self) -> None:
        """Write shipped files into ``out_dir`` and make the recorded paths point there."""
        if self.shipped_from is None:
            return
        out = Path(self.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        old = self.shipped_from
        for name, data in self.files.items():
            if name == "run.json":
                data = json.dumps(_rebase(json.loads(data), old, self.out_dir), indent=2, default=str).encode()
            (out / name).write_bytes(data)
        self.calls = _rebase(self.calls, old, self.out_dir)
        self.files, self.shipped_from = {}, None


def _rebase(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return new + value[len(old) :] if value.startswith(old) else value
    if isinstance(value, dict):
        return {k: _rebase(v, old, new) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_rebase(v, old, new) for v in value)
    return value


class RecordingStore:
    """Stands in for eval.runs.store.Store inside a worker: keeps the calls a run makes, writes nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []

    def start_run(self, record: dict[str, Any]) -> str:
        self.calls.append(("start_run", (json.loads(json.dumps(record, default=str)),), {}))
        return record["id"]

    def add_metrics(self, run_id: str, rows: Iterable[Any]) -> int:
        data = [r.to_dict() if hasattr(r, "to_dict") else dict(r) for r in rows]
        self.calls.append(("add_metrics", (run_id, json.loads(json.dumps(data, default=str))), {}))
        return len(data)

    def finish_run(self, run_id: str, status: str, **fields: Any) -> None:
        self.calls.append(("finish_run", (run_id, status), json.loads(json.dumps(fields, default=str))))

    def outcome(self) -> tuple[str, str | None]:
        finish = next((c for c in reversed(self.calls) if c[0] == "finish_run"), None)
        if finish is None:
            return "failed", "the run ended without a record"
        return finish[1][1], finish[2].get("error")


# ----------------------------------------------------------------------------- one cell


def method_refs(ids: Iterable[str]) -> dict[str, str]:
    """Where each method's class lives, so that a fresh worker can register methods added at run time."""
    refs = {}
    for mid in ids:
        cls = type(methods.get(mid))
        refs[mid] = f"{cls.__module__}:{cls.__qualname__}"
    return refs


def ensure_methods(refs: dict[str, str]) -> None:
    known = set(registry.ids())
    for mid, ref in refs.items():
        if mid in known:
            continue
        module, _, qualname = ref.partition(":")
        try:
            cls = reduce(getattr, qualname.split("."), importlib.import_module(module))
        except (ImportError, AttributeError) as exc:
            raise methods.MethodUnavailable(f"{mid} cannot be loaded in this worker ({ref}): {exc}") from None
        registry.register(cls)


def run_cell(task: CellTask, on_progress: ProgressCallback | None = None, *, ship_files: bool = False) -> CellResult:
    """Run one cell and return its result; a failure or a timeout is a result, never an exception.

    KeyboardInterrupt propagates (nothing of the cell is kept). With ``ship_files`` the run writes
    into a temporary folder and its files come back as bytes (for workers on other machines).
    """
    cell = task.cell
    started = time.monotonic()
    out_dir = Path(tempfile.mkdtemp(prefix="trilemma-cell-")) if ship_files else Path(task.out_dir)
    recorder = RecordingStore()
    timed_out = False
    try:
        if task.input_error is not None:
            raise methods.InvalidInput(task.input_error)
        ensure_methods(task.method_refs)
        events = execute(
            cell.method,
            task.inputs,
            cell.settings,
            store=recorder,
            out_dir=out_dir,
            run_id=task.run_id,
            context=task.context,
        )
        with contextlib.closing(events):
            for event in events:
                if event.kind == "progress" and on_progress is not None:
                    on_progress(cell.key, event.progress)
                if cell.budget_s is not None and time.monotonic() - started > cell.budget_s:
                    timed_out = True
                    break  # closing the run records it as cancelled; rewritten as a timeout below
    except KeyboardInterrupt:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    except Exception as exc:  # recorded by execute when the run had started; else recorded here
        if not recorder.calls:
            message = str(exc) if isinstance(exc, MethodError) else f"{type(exc).__name__}: {exc}"
            recorder.calls = _failure_calls(task, message, out_dir)
    if timed_out:
        _mark_timeout(recorder, out_dir, cell.budget_s)
    status, error = recorder.outcome()
    result = CellResult(cell.key, task.run_id, status, error, recorder.calls, time.monotonic() - started, task.out_dir)
    if ship_files:
        result.files = {p.name: p.read_bytes() for p in out_dir.iterdir() if p.is_file()}
        result.shipped_from = str(out_dir)
        shutil.rmtree(out_dir, ignore_errors=True)
    return result


def run_cell_shipped(task: CellTask) -> CellResult:
    """run_cell for workers on other machines: the files come back as bytes."""
    return run_cell(task, ship_files=True)


def timeout_message(budget_s: float | None) -> str:
    return f"{TIMEOUT}: the cell ran past its {budget_s:g} s budget"


def _mark_timeout(recorder: RecordingStore, out_dir: Path, budget_s: float | None) -> None:
    message = timeout_message(budget_s)
    for i, (name, args, kwargs) in enumerate(recorder.calls):
        if name == "finish_run":
            recorder.calls[i] = (name, (args[0], "failed"), {**kwargs, "error": message})
    record_path = out_dir / "run.json"
    if record_path.exists():
        record = json.loads(record_path.read_text())
        record.update(status="failed", error=message)
        record_path.write_text(json.dumps(record, indent=2, default=str))


def _failure_calls(task: CellTask, message: str, out_dir: Path | None) -> list[tuple[str, tuple, dict]]:
    """The store calls of a cell that failed before its run was recorded (unavailable, killed, ...)."""
    cell = task.cell
    record = {
        "id": task.run_id,
        "method": cell.method,
        "method_version": cell.method_version,
        "modality": cell.modality,
        "inputs_hash": cell.inputs_hash,
        "inputs": task.inputs.describe() if task.inputs is not None else {"modality": cell.modality},
        "settings": cell.settings,
        "seed": cell.seed,
        "hardware": runtime.hardware(),
        "versions": runtime.versions(),
        "protocol_version": PROTOCOL_VERSION,
        "created": time.time(),
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "run.json").write_text(json.dumps({**record, "status": "failed", "error": message}, indent=2))
    return [("start_run", (record,), {}), ("finish_run", (task.run_id, "failed"), {"error": message})]


def failed_result(task: CellTask, message: str, seconds: float = 0.0) -> CellResult:
    """A failed result made on the head for a cell whose worker died or was killed."""
    out_dir = Path(task.out_dir)
    calls = _failure_calls(task, message, out_dir)
    return CellResult(task.cell.key, task.run_id, "failed", message, calls, seconds, task.out_dir)


# ----------------------------------------------------------------------------- executors


class InProcessExecutor:
    """One cell after another in this process. Budgets are checked between a run's events."""

    name = "inprocess"
    workers = 1

    def __init__(self) -> None:
        self.gpu = runtime.has_cuda()

    def describe(self) -> str:
        return f"in process ({runtime.device()})"

    def map(self, tasks: Iterable[CellTask], on_progress: ProgressCallback | None = None) -> Iterator[CellResult]:
        for task in tasks:
            yield run_cell(task, on_progress)


def visible_gpus() -> list[str]:
    """The local GPUs by index: CUDA_VISIBLE_DEVICES when set, else what nvidia-smi lists."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


class _WorkerDied(RuntimeError):
    pass


class _Worker:
    """A ``python -m eval.study.worker`` process on one device; tasks and results are pickles on its pipes."""

    def __init__(self, device: str):
        self.device = device
        self.proc: subprocess.Popen | None = None
        self.current: tuple[CellTask, float] | None = None
        self.killed_for_timeout = False

    def start(self) -> None:
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": self.device, "PYTHONPATH": path}
        # A session of its own: Ctrl-C reaches the head only, which stops the workers itself.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "eval.study.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )

    def run(self, task: CellTask, on_progress: ProgressCallback) -> CellResult:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.killed_for_timeout = False
        try:
            pickle.dump(task, self.proc.stdin)
            self.proc.stdin.flush()
            while True:
                message = pickle.load(self.proc.stdout)
                if message[0] == "progress":
                    on_progress(message[1], Progress(*message[2:]))
                else:
                    return message[1]
        except (EOFError, OSError, pickle.UnpicklingError) as exc:
            code = self.proc.wait()
            self.proc = None
            raise _WorkerDied(f"the worker on device {self.device or 'cpu'} exited ({code}): {exc}") from None

    def kill(self, for_timeout: bool = False) -> None:
        self.killed_for_timeout = for_timeout
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


class LocalExecutor:
    """One worker process per local GPU (or per entry of ``devices``; "" is a CPU worker)."""

    name = "local"

    def __init__(self, devices: list[str] | None = None, grace_s: float = 30.0):
        found = visible_gpus() if devices is None else list(devices)
        self.devices = found or [""]
        self.gpu = any(self.devices)
        self.workers = len(self.devices)
        self.grace_s = grace_s

    def describe(self) -> str:
        names = ", ".join(f"cuda:{d}" if d else "cpu" for d in self.devices)
        return f"{self.workers} local worker process(es) ({names})"

    def map(self, tasks: Iterable[CellTask], on_progress: ProgressCallback | None = None) -> Iterator[CellResult]:
        task_iter = iter(tasks)
        take = threading.Lock()
        events: queue.Queue = queue.Queue()
        stop = threading.Event()
        workers = [_Worker(d) for d in self.devices]

        def report(key: str, progress: Progress) -> None:
            events.put(("progress", (key, progress)))

        def serve(worker: _Worker) -> None:
            try:
                while not stop.is_set():
                    with take:
                        task = next(task_iter, None)
                    if task is None:
                        break
                    worker.current = (task, time.monotonic())
                    try:
                        result = worker.run(task, report)
                    except _WorkerDied as exc:
                        if stop.is_set():
                            break
                        spent = time.monotonic() - worker.current[1]
                        why = timeout_message(task.cell.budget_s) if worker.killed_for_timeout else str(exc)
                        result = failed_result(task, why, spent)
                    worker.current = None
                    events.put(("result", result))
            except BaseException as exc:  # a task that cannot be built or sent: end the study, say why
                events.put(("error", exc))
            finally:
                events.put(("exit", None))

        threads = [threading.Thread(target=serve, args=(w,), daemon=True) for w in workers]
        for t in threads:
            t.start()
        alive = len(threads)
        try:
            while alive:
                try:
                    kind, payload = events.get(timeout=0.5)
                except queue.Empty:
                    self._kill_overdue(workers)
                    continue
                if kind == "progress" and on_progress is not None:
                    on_progress(*payload)
                elif kind == "result":
                    yield payload
                elif kind == "error":
                    raise payload
                elif kind == "exit":
                    alive -= 1
        finally:
            stop.set()
            for w in workers:
                w.kill()
            for t in threads:
                t.join(timeout=10)
            for w in workers:
                w.stop()

    def _kill_overdue(self, workers: list[_Worker]) -> None:
        for w in workers:
            current = w.current
            if current is None or current[0].cell.budget_s is None:
                continue
            if time.monotonic() - current[1] > current[0].cell.budget_s + self.grace_s:
                w.kill(for_timeout=True)


class RayExecutor:
    """Cells as Ray tasks: ``address`` None starts a local instance, else joins that cluster
    (``"auto"``, ``"ray://head:10001"``). On a cluster the project is shipped as the job's working_dir."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        cpus_per_cell: float = 1.0,
        gpus_per_cell: float = 0.0,
        grace_s: float = 60.0,
    ):
        self.address = address
        self.num_cpus = num_cpus
        self.cpus_per_cell = cpus_per_cell
        self.gpus_per_cell = gpus_per_cell
        self.grace_s = grace_s
        self.gpu = gpus_per_cell > 0
        self.workers = 1

    def describe(self) -> str:
        where = self.address or "a local Ray instance"
        return f"Ray on {where} ({self.cpus_per_cell:g} CPU and {self.gpus_per_cell:g} GPU per cell)"

    def runtime_env(self) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
        if self.address is None:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
            return {"env_vars": env}
        excludes = [".git", "outputs", ".ruff_cache", "__pycache__", "*.glb", "*.ply", "*.db", "bench/out"]
        return {"working_dir": str(ROOT), "excludes": excludes, "env_vars": env}

    def map(self, tasks: Iterable[CellTask], on_progress: ProgressCallback | None = None) -> Iterator[CellResult]:
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            kwargs: dict[str, Any] = {"runtime_env": self.runtime_env(), "include_dashboard": False}
            if self.address is None and self.num_cpus is not None:
                kwargs["num_cpus"] = self.num_cpus
            ray.init(address=self.address, logging_level="WARNING", **kwargs)
        resources = ray.cluster_resources()
        by_cpu = int(resources.get("CPU", 1) // max(self.cpus_per_cell, 1e-9))
        by_gpu = int(resources.get("GPU", 0) // self.gpus_per_cell) if self.gpus_per_cell else by_cpu
        self.workers = max(1, min(by_cpu, by_gpu))
        remote = ray.remote(run_cell_shipped).options(
            num_cpus=self.cpus_per_cell, num_gpus=self.gpus_per_cell, max_retries=0
        )
        task_iter = iter(tasks)
        in_flight: dict[Any, tuple[CellTask, float]] = {}
        overdue: set[Any] = set()
        try:
            while True:
                # Only as many as can run at once are submitted, so a task's age is its running time.
                while len(in_flight) < self.workers and (task := next(task_iter, None)) is not None:
                    in_flight[remote.remote(task)] = (task, time.monotonic())
                if not in_flight:
                    break
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
                for ref in ready:
                    task, submitted = in_flight.pop(ref)
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        why = timeout_message(task.cell.budget_s) if ref in overdue else f"the Ray task failed: {exc}"
                        yield failed_result(task, why.splitlines()[0], time.monotonic() - submitted)
                now = time.monotonic()
                for ref, (task, submitted) in in_flight.items():
                    budget = task.cell.budget_s
                    if budget is not None and ref not in overdue and now - submitted > budget + self.grace_s:
                        overdue.add(ref)
                        ray.cancel(ref, force=True)
        finally:
            for ref in in_flight:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            if started_here:
                ray.shutdown()


EXECUTORS = ("inprocess", "local", "ray")


def make_executor(name: str, **options: Any):
    """An executor by name: inprocess, local (``devices``), ray (``address``, ``num_cpus``, ``gpus_per_cell``)."""
    if name == "inprocess":
        return InProcessExecutor()
    if name == "local":
        return LocalExecutor(options.get("devices"))
    if name == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise methods.MethodUnavailable("the ray executor needs the `ray` package (pip install ray)") from None
        keys = ("address", "num_cpus", "gpus_per_cell", "cpus_per_cell")
        return RayExecutor(**{k: options[k] for k in keys if options.get(k) is not None})
    raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
