"""What one request may cost on a shared host (a Space, or TRILEMMA_PUBLIC=1), checked before it queues or runs.

- Ceilings: per method, the most a public request may ask for in every setting that scales its cost
  (:data:`COST_SETTINGS`): :data:`CEILINGS` where given, else the method's own default, so a method
  added later is bounded too. Settings beyond them are refused with a message; a setting where 0 means
  "all" (``eval_views``, ``chunk_size``) becomes its ceiling; choices that scale badly (an exhaustive
  matcher) are refused. TRILEMMA_PUBLIC_CEILINGS (JSON ``{"method id": {"setting": max}}``) adds to or
  overrides :data:`CEILINGS`. An automatic budget (0) stays automatic: the method's own pick for this
  hardware, the figure its estimate, the method list and the slot all use.
- Time: a request may hold the GPU slot for its allowance: ``ALLOWANCE_FACTOR`` x the methods' estimates
  (the figure the method list and the slot show), plus a margin (TRILEMMA_PUBLIC_MARGIN_SECONDS, 15 s)
  and the scoring each run gets after its method (TRILEMMA_PUBLIC_SCORING_SECONDS, 30 s a method on a
  CPU, 10 s on a GPU), never above ``MAX_REQUEST_SECONDS``; past it the running method is stopped at
  its next step and the slot released (:mod:`ui.jobs`).
- Locked settings: settings that name files or folders (``checkpoint`` ...) keep their defaults, so no
  request makes the server open a path a visitor chose, and no answer tells whether such a path exists.
- Licences: a method whose weights carry a licence a host must accept (its spec's ``licence_id``, e.g.
  Hunyuan3D-2mini's ``tencent-hunyuan-3d-2.0-community``) is off until the operator lists that id in
  TRILEMMA_ACCEPT_LICENSES (comma-separated): :func:`check_licence`.
- Admission: :func:`admit` makes the validator of every GPU event: a session may have
  TRILEMMA_JOBS_PER_SESSION jobs (default 1), a client address TRILEMMA_JOBS_PER_CONNECTION (default 3)
  and the server TRILEMMA_GPU_QUEUE (default 20) waiting or running; :func:`police` gives every other
  queued event ("pages": leaderboard, arena, runs, study, previews) a concurrency group of its own and a
  validator: TRILEMMA_PAGES_PER_CONNECTION (default 4) waiting or running per address and
  TRILEMMA_PAGES_QUEUE (default 40) in all, so cheap events never take the generation queue's places.
  Counts are taken under one lock, with a reservation for each admitted job until gradio's queue shows
  it, so simultaneous joins cannot all pass the same check.

Off a shared host nothing here applies. No torch.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import gradio as gr

from methods.base import InvalidSettings, MethodUnavailable, Settings
from ui import hosting

CEILINGS: dict[str, dict[str, float]] = {
    "nerf": {
        "budget_seconds": 300,
        "steps": 100000,
        "resolution": 192,
        "mesh_resolution": 256,
        "max_frames": 100,
        "max_image_size": 800,
        "eval_views": 24,
        "hash_log2_size": 19,
        "batch_rays": 8192,
    },
    "dreamfusion": {"budget_seconds": 600, "steps": 10000, "resolution": 128, "mesh_resolution": 256},
    "dreamfields": {"budget_seconds": 600, "steps": 10000, "resolution": 128, "mesh_resolution": 256},
    "shap-e": {"num_inference_steps": 128},
    "point-e": {"steps": 128},
    "vae": {"steps": 200},
    "gan": {"steps": 200},
    "ddpm": {"steps": 1000},
    "score-sde": {"steps": 1000},
    "triposr": {"mc_resolution": 256, "chunk_size": 65536},
    "gaussian-splatting": {
        "budget_seconds": 300,
        "steps": 30000,
        "max_gaussians": 300000,
        "max_frames": 100,
        "max_image_size": 800,
        "eval_views": 24,
        "init_points": 20000,
        "views_per_step": 4,
    },
    "hunyuan3d-2mini": {"steps": 50, "grid_resolution": 384, "chunk_size": 65536},
}
# Settings whose value scales time or memory; without a CEILINGS entry, the default is the ceiling.
COST_SETTINGS = (
    "budget_seconds", "steps", "num_inference_steps", "resolution", "mesh_resolution", "grid_resolution",
    "grid_size", "frame_size", "mc_resolution", "octree_resolution", "num_chunks", "chunk_size", "max_frames",
    "max_image_size", "eval_views", "max_gaussians", "init_points", "views_per_step", "augmentations",
    "hash_log2_size", "batch_rays", "decimate_faces", "guidance_steps", "num_views",
)  # fmt: skip
ZERO_IS_ALL = ("eval_views", "chunk_size")  # 0 means "every view" / "all at once": the ceiling on a shared host
REFUSED_CHOICES = {"matcher": ("exhaustive",)}  # every pair of frames: quadratic in the frames
AUTO_BUDGET = "budget_seconds"  # 0 means "pick for this hardware"; it stays the method's pick
# a setting whose name has one of these names a file, a folder or weights to fetch (TripoSR's image_model)
PATH_SETTINGS = ("checkpoint", "path", "folder", "directory", "file", "model")

ALLOWANCE_FACTOR = 1.25  # a request's time allowance: 1.25 x the methods' estimates + the margins
MARGIN_SECONDS = 15.0
SCORING_SECONDS = {False: 30.0, True: 10.0}  # per method run, on a CPU / a GPU: the protocol's metrics after it
MAX_REQUEST_SECONDS = 600  # the most one request may hold the GPU slot (ZeroGPU's longest duration too)
MAX_UPLOAD = "50mb"  # gradio's max_file_size on a shared host (TRILEMMA_MAX_UPLOAD)
RETENTION = (600, 3600)  # on a shared host: every 10 min, drop uploads and gradio's copies older than an hour
PAGES_CONCURRENCY_ID = "pages"  # every event that is not generation: its own workers, its own share of the queue
PAGES_WORKERS = 2  # "pages" events that run at once on a shared host
ADMISSION_GRACE_S = 30.0  # a reservation not yet seen in gradio's queue lapses after this (a dropped join)


def is_public() -> bool:
    return hosting.on_space() or os.environ.get("TRILEMMA_PUBLIC", "").strip().lower() in ("1", "true", "yes")


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "").strip() or default)
    except ValueError:
        return default


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() else default


def margin_seconds() -> float:
    return _env_float("TRILEMMA_PUBLIC_MARGIN_SECONDS", MARGIN_SECONDS)


def scoring_seconds(gpu: bool) -> float:
    return _env_float("TRILEMMA_PUBLIC_SCORING_SECONDS", SCORING_SECONDS[bool(gpu)])


def allowance_seconds(estimate: float, runs: int = 1, gpu: bool = False) -> float:
    """Seconds a request of ``runs`` methods whose estimates add up to ``estimate`` may hold the slot: the
    figure the GPU duration, the deadline and the refusal use (the messages show ``estimate`` itself)."""
    return ALLOWANCE_FACTOR * estimate + margin_seconds() + runs * scoring_seconds(gpu)


def max_upload() -> str:
    return os.environ.get("TRILEMMA_MAX_UPLOAD", "").strip() or MAX_UPLOAD


def ceilings(method_id: str, defaults: Settings | None = None) -> dict[str, float]:
    """The public ceilings of a method: the table, TRILEMMA_PUBLIC_CEILINGS, and (given ``defaults``) the
    defaults of its other cost settings."""
    extra: dict[str, Any] = {}
    raw = os.environ.get("TRILEMMA_PUBLIC_CEILINGS", "").strip()
    if raw:
        try:
            extra = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"TRILEMMA_PUBLIC_CEILINGS must be a JSON object: {exc}") from None
    table = {**CEILINGS.get(method_id, {}), **(extra.get(method_id) or {})}
    if defaults is not None:
        for name in COST_SETTINGS:
            value = getattr(defaults, name, None)
            if name not in table and isinstance(value, (int, float)) and not isinstance(value, bool):
                table[name] = value
    return table


def check_path_settings(method_id: str, overrides: dict[str, Any], defaults: Settings) -> None:
    """Refuse a public request that changes a setting naming a file or folder, before anything looks at it."""
    if not is_public():
        return
    for name, value in overrides.items():
        if any(word in name.lower() for word in PATH_SETTINGS) and value != getattr(defaults, name, None):
            raise InvalidSettings(f"{method_id}: {name} cannot be changed on this public server")


def limit_settings(method_id: str, settings: Settings, defaults: Settings) -> Settings:
    """``settings`` for a public request, refused beyond a ceiling; "0 = all" settings become the ceiling."""
    if not is_public():
        return settings
    changes: dict[str, Any] = {}
    for name, refused in REFUSED_CHOICES.items():
        if getattr(settings, name, None) in refused:
            raise InvalidSettings(
                f"{method_id}: {name} = {getattr(settings, name)} is not offered on this public server "
                "(its cost grows with the square of the frames); use auto"
            )
    for name, ceiling in ceilings(method_id, defaults).items():
        value = getattr(settings, name, None)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if name in ZERO_IS_ALL and value == 0:
            changes[name] = type(value)(ceiling)
        elif name == AUTO_BUDGET and value == 0:
            continue  # the method picks for this hardware; its estimate says how long
        elif value > ceiling:
            raise InvalidSettings(
                f"{method_id}: {name} = {value:g} is above this public server's limit of {ceiling:g}; "
                "run the app on your own machine for more"
            )
    return dataclasses.replace(settings, **changes) if changes else settings


def accepted_licences() -> set[str]:
    raw = os.environ.get("TRILEMMA_ACCEPT_LICENSES", "")
    return {part.strip().lower() for part in raw.replace(";", ",").split(",") if part.strip()}


def check_licence(method: Any) -> None:
    """Refuse, on a shared host, a method whose weights' licence the operator has not accepted (MethodUnavailable)."""
    licence_id = getattr(method, "licence_id", "")
    if not licence_id or not is_public() or licence_id.lower() in accepted_licences():
        return
    terms = getattr(method, "licence_terms", "") or method.licence
    raise MethodUnavailable(
        f"{method.id} is off on this public server: its weights are under a licence the server's operator has not "
        f"accepted ({licence_id}: {terms}). The operator can turn it on by accepting that licence: "
        f"TRILEMMA_ACCEPT_LICENSES={licence_id}. On your own machine it runs when you ask for it."
    )


# ----------------------------------------------------------------------------- admission


class Admission:
    """Jobs waiting or running per session, per client address and in all, for one concurrency group.

    Gradio runs the validator, then (after an await) adds the event to its queue: two joins can pass
    the same check before either is queued. So the check and a reservation happen under one lock; a
    reservation counts until its join returns (:meth:`landed`, from :func:`police`'s wrapper of the
    queue's ``push``), gradio's queue shows a newer event of its session, or ``ADMISSION_GRACE_S`` passes.
    """

    def __init__(self, concurrency_id: str, per_session: tuple[str, int], per_host: tuple[str, int],
                 total: tuple[str, int]):  # fmt: skip
        self.concurrency_id = concurrency_id
        self.limits = {"session": per_session, "host": per_host, "total": total}
        self._lock = threading.Lock()
        self._reserved: list[dict[str, Any]] = []

    def limit(self, kind: str) -> int:
        name, default = self.limits[kind]
        return _env_int(name, default)

    def _events(self, request: Any) -> list[Any]:
        queue = request.request.app.get_blocks()._queue
        return [
            e for e in list(queue.event_ids_to_events.values())
            if getattr(e.fn, "concurrency_id", None) == self.concurrency_id
        ]  # fmt: skip

    def try_admit(self, request: Any) -> str:
        """'' when the request may join, else which limit it meets ("session", "host" or "total")."""
        session, host = request.session_hash, hosting.client_address(request)
        with self._lock:
            events = self._events(request)
            now = time.monotonic()
            ids_by_session: dict[str, set[str]] = {}
            for e in events:
                ids_by_session.setdefault(e.session_hash, set()).add(e._id)
            self._reserved = [
                r for r in self._reserved
                if now - r["at"] < ADMISSION_GRACE_S and not (ids_by_session.get(r["session"], set()) - r["seen"])
            ]  # fmt: skip
            hosts = [hosting.client_address(getattr(e, "request", None)) for e in events]
            counts = {
                "session": sum(e.session_hash == session for e in events)
                + sum(r["session"] == session for r in self._reserved),
                "host": (sum(h == host for h in hosts) + sum(r["host"] == host for r in self._reserved)) if host else 0,
                "total": len(events) + len(self._reserved),
            }
            for kind in ("session", "host", "total"):
                if counts[kind] >= self.limit(kind):
                    return kind
            seen = ids_by_session.get(session, set())
            join = getattr(request, "request", None)  # the join's HTTP request: the key push_then_land lands
            self._reserved.append({"session": session, "host": host, "at": now, "seen": set(seen), "join": join})
            return ""

    def landed(self, join: Any) -> None:
        """The join whose HTTP request is ``join`` returned (its event is in gradio's queue, or it was
        refused): its reservation has done its work."""
        with self._lock:
            self._reserved = [r for r in self._reserved if r["join"] is not join]


GPU = Admission(
    hosting.GPU_CONCURRENCY_ID,
    ("TRILEMMA_JOBS_PER_SESSION", 1),
    ("TRILEMMA_JOBS_PER_CONNECTION", 3),
    ("TRILEMMA_GPU_QUEUE", 20),
)
PAGES = Admission(
    PAGES_CONCURRENCY_ID,
    ("TRILEMMA_PAGES_PER_SESSION", 4),
    ("TRILEMMA_PAGES_PER_CONNECTION", 4),
    ("TRILEMMA_PAGES_QUEUE", 40),
)
GPU_MESSAGES = {
    "session": "you already have a job waiting or running on this shared server; "
    "wait for it to finish before starting another",
    "host": "your connection already has its share of jobs waiting or running on this shared server; "
    "wait for one to finish",
    "total": "the queue of this shared server is full; try again in a few minutes",
}
PAGES_MESSAGE = "too many requests from your connection at once; wait for the last ones to finish"


def queue_max_size() -> int:
    """Gradio's own queue bound: both groups' totals, so neither group's limit is ever met by the other's events."""
    return GPU.limit("total") + PAGES.limit("total")


def _validator(n_inputs: int, check: Callable[[Any], str]) -> Callable[..., Any]:
    """A gradio validator for an event with ``n_inputs`` inputs that refuses with ``check(request)``'s message."""

    def validator(*args: Any) -> Any:
        request = args[n_inputs] if len(args) > n_inputs else None
        message = check(request) if request is not None and is_public() else ""
        if n_inputs == 0:  # gradio ignores a verdict on no inputs: an error is the refusal
            if message:
                raise gr.Error(message, print_exception=False)
            return []
        checks = [gr.validate(not message, message)] + [gr.validate(True, "")] * (n_inputs - 1)
        return checks[0] if n_inputs == 1 else checks

    # gradio passes the request to a parameter annotated gr.Request, found by position after the inputs
    params = [inspect.Parameter(f"input_{i}", inspect.Parameter.POSITIONAL_OR_KEYWORD) for i in range(n_inputs)]
    params.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request))
    validator.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    validator.__annotations__ = {"request": gr.Request}
    return validator


def admit(n_inputs: int) -> Callable[..., Any]:
    """The validator for a GPU event with ``n_inputs`` inputs (shared hosts only): it refuses a job when its
    session, its connection or the server already has its share waiting or running."""

    def check(request: Any) -> str:
        refused = GPU.try_admit(request)
        return GPU_MESSAGES[refused] if refused else ""

    return _validator(n_inputs, check)


def admit_page(n_inputs: int) -> Callable[..., Any]:
    """The validator for any other queued event: a few at a time per connection, a bounded number in all."""

    def check(request: Any) -> str:
        return PAGES_MESSAGE if PAGES.try_admit(request) else ""

    return _validator(n_inputs, check)


def police(demo: gr.Blocks) -> None:
    """Put every queued event that is not generation into the "pages" group with its validator (app.py calls
    this once the tabs are built and the queue is set), so no event from any tab can take the generation
    queue's places; and end each admission reservation when its join returns."""
    queue = demo._queue
    push = queue.push

    async def push_then_land(body: Any, request: Any, username: Any) -> Any:
        try:
            return await push(body=body, request=request, username=username)
        finally:
            GPU.landed(request)
            PAGES.landed(request)

    queue.push = push_then_land  # type: ignore[method-assign]
    shared = is_public()  # locally each event keeps its own worker (a study report does not hold up the arena)
    for fn in demo.fns.values():
        if not fn.queue or fn.concurrency_id == hosting.GPU_CONCURRENCY_ID:
            continue
        if shared:
            fn.concurrency_id, fn.concurrency_limit = PAGES_CONCURRENCY_ID, PAGES_WORKERS
        if fn.validator is None:
            fn.validator = admit_page(len(fn.inputs))
