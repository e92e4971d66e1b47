"""One press of Generate: validate everything first, then run the chosen methods one after another.

``plan_job`` checks the input, the seed and each method's settings and availability before
anything runs or is stored; ``run_job`` runs each method through ``eval.runs.runner.execute`` and
yields the state of every slot and the metric rows, a few times a second. One method failing
marks its slot and the others still run. No gradio here: the tabs and the API share this.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.judging.protocol import MetricRow
from eval.judging.renders import gallery as render_gallery
from eval.runs.cache import can_run_again, find_cached_run, format_seconds
from eval.runs.runner import execute, prepare
from eval.runs.store import Store, outputs_dir
from methods.base import Inputs, InvalidInput, InvalidSettings, MethodError, Settings
from methods.registry import get
from ui import hosting, public, served
from ui.inputs import make_inputs
from ui.panel import metric_json
from ui.viewer_asset import ViewerFile, viewer_file

log = logging.getLogger(__name__)

MAX_METHODS = 4  # result slots side by side
MAX_SEED = 2**31 - 1
PROGRESS_INTERVAL_S = 0.25  # at most four progress updates a second reach the browser
STAGE_WORDS = {"mesh": "meshing", "evaluate": "evaluating", "turntable": "rendering a turntable"}  # shown for stages
GPU_SECONDS_MIN, GPU_SECONDS_MAX = 30, public.MAX_REQUEST_SECONDS  # ZeroGPU duration bounds
MAX_SETTINGS_CHARS = 20_000  # the API's settings JSON
MAX_SETTINGS_DEPTH = 32  # settings are 2 levels deep; deeper documents are refused before json.loads sees them
MAX_NUMBER_CHARS = 32  # a number literal longer than this is refused before parsing (Python's limit is 4300 digits)
NUMBER_CHARS = frozenset("0123456789+-.eE")

_RNG = random.SystemRandom()


@dataclass
class PlannedRun:
    """A chosen method with its resolved settings, or the reason it is refused."""

    method_id: str
    label: str
    settings: Settings | None = None
    error: str | None = None
    gpu_seconds: float = 0.0  # the method's estimate on a GPU (what ZeroGPU is asked for)
    seconds: float = 0.0  # its estimate on the device it runs on: the one figure for messages and the deadline
    expected: str = ""  # "about 4 min on this CPU", said before a run starts
    cache_results: bool = False


@dataclass
class Job:
    modality: str
    inputs: Inputs
    seed: int
    runs: list[PlannedRun]
    rerun: bool = False  # run slow methods again although a cached result exists (offered on a GPU only)

    @property
    def refusals(self) -> list[str]:
        return [run.error for run in self.runs if run.error]

    def gpu_duration(self) -> int:
        """Seconds to ask ZeroGPU for: the allowance (:func:`ui.public.allowance_seconds`) of the methods'
        own GPU estimates for these settings."""
        runs = [run for run in self.runs if run.error is None]
        estimate = public.allowance_seconds(sum(run.gpu_seconds for run in runs), len(runs), gpu=True)
        return int(min(max(math.ceil(estimate), GPU_SECONDS_MIN), GPU_SECONDS_MAX))

    def allowance(self) -> float:
        """Seconds this request may hold the slot on a shared host: the same figure from the estimates for
        the device it runs on; past it, the running method is stopped at its next step."""
        runs = [run for run in self.runs if run.error is None]
        return public.allowance_seconds(sum(run.seconds for run in runs), len(runs), gpu=runs_on_gpu())


@dataclass
class SlotState:
    """What one result slot shows: the method, how far it got, its files or its error."""

    method_id: str
    label: str
    state: str = "queued"  # queued | running | done | failed | refused
    message: str = ""
    stage: str = ""
    fraction: float | None = None
    run_id: str | None = None
    glb: str | None = None
    files: list[str] = field(default_factory=list)
    seconds: float | None = None
    expected: str = ""
    cached: str = ""  # set when a finished run is shown instead of running again
    viewer: str | None = None  # what the 3D viewer shows: the asset, or a reduced copy (ui.viewer_asset)
    viewer_note: str = ""  # says when the view is reduced
    renders: list[tuple[str, str]] = field(default_factory=list)  # what the metrics saw: (thumbnail, caption)
    preview: str | None = None  # the latest preview render of a training method (PNG), while it runs
    precision: str = ""  # the dtype the networks run in, shown beside the stage

    def status_markdown(self) -> str:
        if self.state == "queued":
            return "⏳ Waiting for its turn…" + (f" (expected: {self.expected})" if self.expected else "")
        if self.state == "running":
            done = f" {self.fraction:.0%}" if self.fraction is not None else ""
            line = f"⚙️ **{STAGE_WORDS.get(self.stage, self.stage) or 'starting'}**{done}"
            line += f" · {self.precision}" if self.precision else ""
            line += f" — {self.message}" if self.message else ""
            return line + (f" (expected: {self.expected})" if self.expected else "")
        reduced = f"\n\n🔎 {self.viewer_note}" if self.viewer_note else ""
        if self.state == "done" and self.cached:
            return f"♻️ {self.cached}{reduced}"
        if self.state == "done":
            took = f" in {_seconds(self.seconds)}" if self.seconds is not None else ""
            return f"✅ Done{took} · run `{self.run_id}`{reduced}"
        prefix = "⛔ **Not run:**" if self.state == "refused" else "❌ **Failed:**"
        return f"{prefix} {self.message}"


@dataclass
class JobState:
    slots: list[SlotState]
    metrics: list[tuple[str, MetricRow]] = field(default_factory=list)  # (method label, row) for the panel
    metric_records: list[dict[str, Any]] = field(default_factory=list)  # the same rows as JSON for the API
    finished: bool = False


def _seconds(value: float) -> str:
    if value < 0.1:
        return "under 0.1 s"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def resolve_seed(seed: Any, randomize: bool) -> int:
    """The seed to use: a fresh random one when asked, else the given one, checked against its range."""
    if randomize:
        return _RNG.randint(0, MAX_SEED)
    if seed is None or seed == "":
        return 0
    try:
        value = float(seed)
    except (TypeError, ValueError):
        raise InvalidSettings(f"the seed must be a whole number, got {seed!r}") from None
    if not value.is_integer() or not 0 <= value <= MAX_SEED:
        raise InvalidSettings(f"the seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}")
    return int(value)


def scan_settings_json(text: str) -> None:
    """Refuse what json.loads would choke on, before it runs, with one message per cause: characters that
    are not text (a lone surrogate), nesting deeper than ``MAX_SETTINGS_DEPTH`` and number literals longer
    than ``MAX_NUMBER_CHARS``. One pass, no recursion: the outcome never depends on the stack."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidSettings("settings hold characters that are not text (a lone surrogate); send UTF-8") from None
    depth = longest = run = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char in NUMBER_CHARS:
            run += 1
            longest = max(longest, run)
            continue
        run = 0
        if char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_SETTINGS_DEPTH:
                raise InvalidSettings(
                    f"settings are nested too deeply (more than {MAX_SETTINGS_DEPTH} levels): give one object of "
                    'single values per method, e.g. {"shap-e": {"guidance_scale": 15}}'
                )
        elif char in "]}":
            depth -= 1
    if longest > MAX_NUMBER_CHARS:
        raise InvalidSettings(
            f"settings hold a number {longest} characters long; numbers of up to {MAX_NUMBER_CHARS} are accepted"
        )


def _refuse_constant(name: str) -> Any:
    raise InvalidSettings(f"settings hold {name}, which is not a number a setting can take")


def _strings(data: Any) -> Iterator[str]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(data, list):
        for value in data:
            yield from _strings(value)
    elif isinstance(data, str):
        yield data


def check_text(value: str, what: str) -> str:
    """``value`` if it can be stored and sent back (UTF-8), else InvalidSettings naming ``what``."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidSettings(f"{what} holds characters that are not text (a lone surrogate)") from None
    return value


def parse_settings_json(text: str | Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``{"method id": {"setting": value}}`` from a JSON string (the API's settings argument)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return {}
    if isinstance(text, str):
        if len(text) > MAX_SETTINGS_CHARS:
            raise InvalidSettings(f"settings have {len(text)} characters; the limit is {MAX_SETTINGS_CHARS}")
        scan_settings_json(text)
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except json.JSONDecodeError as exc:
            raise InvalidSettings(f'settings must be a JSON object, e.g. {{"shap-e": {{...}}}}: {exc}') from None
    else:
        data = text
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise InvalidSettings('settings must map each method id to an object of settings, e.g. {"shap-e": {...}}')
    for item in _strings(data):
        check_text(item, "a setting name or value")
    nested = [f"{m}.{k}" for m, v in data.items() for k, x in v.items() if isinstance(x, (dict, list))]
    if nested:
        raise InvalidSettings(f"settings are single values (a number, text or true/false); {nested[0]} is not")
    return {str(k): dict(v) for k, v in data.items()}


def normalize_method_ids(method_ids: Any) -> list[str]:
    if method_ids is None or method_ids == "":
        return []
    if isinstance(method_ids, str):
        method_ids = [method_ids]
    out: list[str] = []
    for mid in method_ids:
        mid = check_text(str(mid), "a method id").strip()
        if mid and mid not in out:
            out.append(mid)
    return out


def plan_job(
    modality: str,
    raw_input: Any,
    method_ids: Any,
    seed: Any = 0,
    randomize: bool = False,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    rerun: bool = False,
) -> Job:
    """Validate the request. Problems with the whole request raise a MethodError (InvalidInput or
    InvalidSettings); a problem with one method (unknown, unavailable, bad settings) refuses that run only."""
    ids = normalize_method_ids(method_ids)
    if not ids:
        raise InvalidInput("no method was chosen: pick at least one method")
    if len(ids) > MAX_METHODS:
        raise InvalidInput(f"{len(ids)} methods were chosen; at most {MAX_METHODS} run side by side")
    settings = dict(settings or {})
    stray = sorted(set(settings) - set(ids))
    if stray:
        raise InvalidSettings(
            f"settings were given for {', '.join(stray)}, which is not among the chosen methods ({', '.join(ids)})"
        )
    inputs = make_inputs(modality, raw_input)
    used_seed = resolve_seed(seed, randomize)
    runs = [_plan_run(mid, inputs, {"seed": used_seed, **settings.get(mid, {})}) for mid in ids]
    job = Job(modality=modality, inputs=inputs, seed=used_seed, runs=runs, rerun=bool(rerun) and can_run_again())
    if public.is_public() and not job.refusals and job.allowance() > public.MAX_REQUEST_SECONDS:
        raise InvalidSettings(
            f"this request would hold the shared GPU for about {format_seconds(job.allowance())}; one request may "
            f"take {format_seconds(public.MAX_REQUEST_SECONDS)}: choose fewer methods or smaller settings"
        )
    return job


def runs_on_gpu() -> bool:
    """Whether methods run on a GPU here: on a Space (ZeroGPU lends one to each job) or with a local GPU."""
    return hosting.on_space() or can_run_again()


def _plan_run(method_id: str, inputs: Inputs, overrides: dict[str, Any]) -> PlannedRun:
    try:
        method = get(method_id)
    except MethodError as exc:
        return PlannedRun(method_id, method_id, error=str(exc))
    try:
        public.check_licence(method)
        public.check_path_settings(method_id, overrides, method.default_settings(inputs.modality))
        method, resolved = prepare(method_id, inputs, overrides)
        resolved = public.limit_settings(method_id, resolved, method.default_settings(inputs.modality))
        seconds = float(method.estimate_seconds(resolved, gpu=True))
        here = float(method.estimate_seconds(resolved, gpu=runs_on_gpu()))
    except MethodError as exc:
        return PlannedRun(method_id, method.label, error=served.redact(exc))
    expected = f"about {format_seconds(here)} on this {'GPU' if runs_on_gpu() else 'CPU'}"
    return PlannedRun(
        method_id,
        method.label,
        settings=resolved,
        gpu_seconds=seconds,
        seconds=here,
        expected=expected,
        cache_results=method.cache_results,
    )


def run_job(job: Job, store: Store | None = None) -> Iterator[JobState]:
    """Run the job's methods in order; yield the state after progress (throttled) and after each method."""
    store = store or Store()
    state = JobState(
        slots=[
            SlotState(
                run.method_id,
                run.label,
                state="refused" if run.error else "queued",
                message=run.error or "",
                expected=run.expected,
            )
            for run in job.runs
        ]
    )
    yield state
    # on a shared host every stage of every method runs inside the request's allowance
    deadline = time.monotonic() + job.allowance() if public.is_public() else math.inf
    for run, slot in zip(job.runs, state.slots, strict=True):
        if run.error:
            continue
        if time.monotonic() >= deadline:
            slot.state, slot.message = "refused", over_allowance(job)
            continue
        slot.state = "running"
        yield state
        yield from _run_one(job, run, slot, state, store, deadline)
        yield state
    state.finished = True
    yield state


class OverAllowance(MethodError):
    """A request ran past its time allowance on a shared host; the running method was stopped."""


def over_allowance(job: Job) -> str:
    return (
        f"stopped: this request used up its time allowance of {format_seconds(job.allowance())} on this shared "
        "server (the methods' estimates x 1.25, plus margins for scoring); try smaller settings"
    )


def _run_one(
    job: Job, run: PlannedRun, slot: SlotState, state: JobState, store: Store, deadline: float = math.inf
) -> Iterator[JobState]:
    """Drive one method, yielding on progress; its metric rows reach the panel together when it is done.
    Past ``deadline`` the method is stopped at its next event (the runner records the run as failed)."""
    if run.cache_results and not job.rerun and _show_cached(job, run, slot, state, store):
        return
    rows: list[MetricRow] = []
    throttle = _Throttle()
    try:
        with closing(execute(run.method_id, job.inputs, run.settings, store=store)) as events:
            for event in events:
                slot.run_id = event.run_id
                if time.monotonic() >= deadline:
                    events.throw(OverAllowance(over_allowance(job)))
                if event.kind == "progress" and event.progress is not None:
                    p = event.progress
                    new_stage = p.stage != slot.stage
                    slot.stage, slot.fraction, slot.message = p.stage, p.fraction, p.message
                    slot.precision = event.precision
                    if p.preview is not None:
                        _keep_preview(slot, p.preview)
                    # a new stage (e.g. meshing after training) always shows, whatever the throttle says
                    if throttle.due() or new_stage or p.preview is not None:
                        yield state
                elif event.kind == "metric" and event.metric is not None:
                    rows.append(event.metric)
                elif event.kind == "done":
                    _finish(slot, event.files, event.record or {})
    except MethodError as exc:
        slot.state, slot.message = "failed", served.redact(exc)
        return
    except Exception as exc:  # a bug or a crash inside one method must not stop the others
        log.exception("%s failed", run.method_id)
        slot.state, slot.message = "failed", served.redact(f"{type(exc).__name__}: {exc}")
        return
    finally:
        _keep_preview(slot, None)
    state.metrics.extend((slot.label, row) for row in rows)
    state.metric_records.extend(metric_json(run.method_id, slot.run_id or "", row) for row in rows)


def _show_cached(job: Job, run: PlannedRun, slot: SlotState, state: JobState, store: Store) -> bool:
    """Show a finished run with the same method, input, settings and seed instead of running again."""
    cached = find_cached_run(store, run.method_id, job.inputs.hash(), run.settings, modality=job.modality)
    if cached is None:
        return False
    slot.run_id, slot.cached = cached.run_id, cached.describe()
    _finish(slot, {"glb": cached.asset_path}, {"stage_seconds": cached.stage_seconds})
    for m in store.metrics(cached.run_id):
        row = MetricRow(m["name"], m["value"], m["unit"], m["higher_is_better"], m["group"], m["settings"])
        state.metrics.append((slot.label, row))
        state.metric_records.append(metric_json(run.method_id, cached.run_id, row))
    return True


def _finish(slot: SlotState, files: Mapping[str, str], record: Mapping[str, Any]) -> None:
    glb = files.get("glb")
    shown = files.get("splat") or glb  # Gaussian splats show as splats (gr.Model3D reads .splat), not their mesh
    slot.state, slot.glb, slot.fraction = "done", shown, 1.0
    slot.seconds = sum((record.get("stage_seconds") or {}).values()) or None
    # images a method made on the way (text -> image -> 3D): shown and downloadable beside the asset
    made = [f for k, f in files.items() if k not in ("glb", "ply") and str(f).endswith(".png")]
    # splats come first (the .splat), then their mesh .glb and 3DGS .ply
    extra = [glb if shown != glb else None, files.get("splat_ply"), files.get("ply"), *made]
    slot.files = served.publish_run_files(shown, extra)
    if shown:
        try:
            viewed = viewer_file(shown)
        except Exception as exc:  # the full asset still shows; a viewer copy is a convenience
            log.warning("no viewer copy of %s: %s", Path(shown).name, exc)
            viewed = ViewerFile(shown)
        slot.viewer, slot.viewer_note = viewed.path, viewed.note
        slot.renders, turntable = render_gallery(Path(shown).parent)
        if turntable:
            slot.files.append(turntable)
        served.SERVED.publish(viewed.path, turntable, *(path for path, _ in slot.renders))


def _keep_preview(slot: SlotState, image: Any) -> None:
    """Show ``image`` (H, W, 3) uint8 as the slot's training preview (None: drop it); one file per run, a new
    name each time so that the browser does not show a cached one."""
    from PIL import Image

    old = slot.preview
    slot.preview = None
    if image is not None and slot.run_id:
        folder = outputs_dir() / "previews"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{slot.run_id}-{time.monotonic_ns()}.png"
        Image.fromarray(image).save(path)
        served.SERVED.publish(path)
        slot.preview = str(path)
    if old:
        Path(old).unlink(missing_ok=True)


class _Throttle:
    def __init__(self, interval: float = PROGRESS_INTERVAL_S):
        self.interval = interval
        self.last = 0.0

    def due(self) -> bool:
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            return True
        return False


def gpu_duration(job: Job, store: Store | None = None) -> int:
    return job.gpu_duration()


run_job_on_gpu = hosting.gpu(duration=gpu_duration)(run_job)
