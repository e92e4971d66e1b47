"""Finished runs of the slow methods, found again: a cache over the run store keyed by (method, prompt, settings, seed).

DreamFusion and Dream Fields take minutes to hours; a run already in the store with the same
method (and method version), input, settings and seed is shown instead, with what it cost then.
Torch-free: the UI calls this before anything heavy is imported. Typical use::

    cached = find_cached_run(Store(), "dreamfusion", Inputs.text(prompt).hash(), settings, seed)
    if cached:  # show cached.asset_path and cached.describe(); offer "run again" if can_run_again()
        ...
    else:       # say expected_time_message("dreamfusion", settings) before starting
        ...
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from methods.base import MethodError, Settings

JSON_COLUMNS = ("settings", "stage_seconds", "hardware", "notes", "inputs")


@dataclass
class CachedRun:
    """A finished run that matches a request, with its original cost."""

    run_id: str
    method: str
    asset_path: str
    seconds: float  # the sum of its stage seconds
    stage_seconds: dict[str, float]
    device: str  # "cuda" or "cpu" (from the run's hardware record)
    hardware: dict[str, Any]
    settings: dict[str, Any]
    seed: int | None
    created: float
    peak_gpu_mb: float | None = None
    peak_rss_mb: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")

    def describe(self) -> str:
        """One line for people: when it ran, what it took, on what."""
        where = self.hardware.get("gpu") or ("a GPU" if self.on_gpu else "a CPU")
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created))
        cost = f"{format_seconds(self.seconds)} on {where}"
        if self.peak_gpu_mb:
            cost += f", {self.peak_gpu_mb / 1024:.1f} GB of GPU memory"
        return f"cached result of run {self.run_id} ({when}): it took {cost}"


def format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def resolve_settings(method: str, settings: Settings | Mapping[str, Any], modality: str = "text") -> dict[str, Any]:
    """The full settings dict a run with these settings records (defaults filled in, types coerced)."""
    if isinstance(settings, Settings):
        return settings.to_dict()
    values = dict(settings)
    import methods

    try:
        defaults = methods.get(method).default_settings(modality)
        return type(defaults).from_dict(values, base=defaults).to_dict()
    except MethodError:
        return values  # an unknown method or settings it does not know: compare as given


def find_cached_run(
    store: Any,
    method: str,
    inputs_hash: str,
    settings: Settings | Mapping[str, Any],
    seed: int | None = None,
    *,
    device: str | None = None,
    modality: str = "text",
    limit: int = 500,
) -> CachedRun | None:
    """The newest finished run of ``method`` on the same input with the same settings and seed, or None.

    ``store`` is an :class:`eval.runs.store.Store`; ``inputs_hash`` is ``Inputs.hash()``; ``settings`` a
    Settings or a dict of overrides on the method's defaults (``seed``, when given, overrides
    theirs). A run counts only if its status is done, its method version is the current one and
    its asset file still exists; ``device`` ("cuda" / "cpu") keeps runs made on that kind of device.
    """
    wanted = resolve_settings(method, settings, modality)
    if seed is not None:
        wanted["seed"] = int(seed)
    wanted_seed = wanted.get("seed")
    version = _method_version(method)
    rows = store.read(
        "SELECT * FROM runs WHERE method = ? AND inputs_hash = ? AND status = 'done' ORDER BY created DESC LIMIT ?",
        (method, inputs_hash, int(limit)),
    )
    for row in rows:
        run = _decode(dict(row))
        if version is not None and str(run.get("method_version")) != version:
            continue
        if wanted_seed is not None and run.get("seed") is not None and int(run["seed"]) != int(wanted_seed):
            continue
        if _canonical(run.get("settings") or {}) != _canonical(wanted):
            continue
        hardware = run.get("hardware") or {}
        run_device = str(hardware.get("device", "cpu"))
        if device is not None and run_device.split(":")[0] != device.split(":")[0]:
            continue
        asset = run.get("asset_path")
        if not asset or not Path(asset).is_file():
            continue
        stages = {k: float(v) for k, v in (run.get("stage_seconds") or {}).items()}
        return CachedRun(
            run_id=run["id"],
            method=method,
            asset_path=str(asset),
            seconds=sum(stages.values()),
            stage_seconds=stages,
            device=run_device,
            hardware=hardware,
            settings=run.get("settings") or {},
            seed=run.get("seed"),
            created=float(run.get("created") or 0.0),
            peak_gpu_mb=run.get("peak_gpu_mb"),
            peak_rss_mb=run.get("peak_rss_mb"),
            notes=list(run.get("notes") or []),
        )
    return None


def can_run_again() -> bool:
    """Whether to offer "run again" next to a cached result: only where a GPU is present."""
    from methods import runtime

    return runtime.gpu_present()


def expected_seconds(method: str, settings: Settings | Mapping[str, Any] | None = None, gpu: bool | None = None):
    """The method's estimate for these settings on a GPU or a CPU (default: this host)."""
    import methods

    m = methods.get(method)
    resolved = m.default_settings("text") if settings is None else settings
    if not isinstance(resolved, Settings):
        defaults = m.default_settings("text")
        resolved = type(defaults).from_dict(dict(resolved), base=defaults)
    return float(m.estimate_seconds(resolved, gpu=can_run_again() if gpu is None else gpu))


def expected_time_message(
    method: str, settings: Settings | Mapping[str, Any] | None = None, gpu: bool | None = None
) -> str:
    """What the UI says before a slow run starts, e.g. "expected time on this CPU: about 4 min"."""
    gpu = can_run_again() if gpu is None else gpu
    seconds = expected_seconds(method, settings, gpu)
    return f"expected time on this {'GPU' if gpu else 'CPU'}: about {format_seconds(seconds)}"


def _method_version(method: str) -> str | None:
    import methods

    try:
        return str(methods.get(method).version)
    except MethodError:
        return None


def _decode(run: dict[str, Any]) -> dict[str, Any]:
    for key in JSON_COLUMNS:
        if isinstance(run.get(key), str):
            try:
                run[key] = json.loads(run[key])
            except ValueError:
                run[key] = None
    return run


def _canonical(settings: Mapping[str, Any]) -> str:
    """Settings as sorted JSON with whole floats written as ints (0.0 and 0 are the same budget)."""

    def norm(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, (list, tuple)):
            return [norm(x) for x in v]
        return v

    return json.dumps({k: norm(v) for k, v in settings.items()}, sort_keys=True, default=str)


__all__ = [
    "CachedRun",
    "can_run_again",
    "expected_seconds",
    "expected_time_message",
    "find_cached_run",
    "format_seconds",
    "resolve_settings",
]
