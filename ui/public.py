"""What one request may cost on a shared host (a Space, or TRILEMMA_PUBLIC=1), checked before it queues or runs.

- Ceilings: per method, the most a public request may ask for in budget and steps (settings beyond
  them are refused with a message); an automatic budget (0) becomes the ceiling. TRILEMMA_PUBLIC_CEILINGS
  (JSON ``{"method id": {"setting": max}}``) adds to or overrides :data:`CEILINGS`.
- Locked settings: settings that name files or folders (``checkpoint`` ...) keep their defaults, so no
  request makes the server open a path a visitor chose, and no answer tells whether such a path exists.
- Licences: a method whose weights carry a licence a host must accept (its spec's ``licence_id``, e.g.
  Hunyuan3D-2mini's ``tencent-hunyuan-3d-2.0-community``) is off until the operator lists that id in
  TRILEMMA_ACCEPT_LICENSES (comma-separated): :func:`check_licence`.
- Fair queueing: :func:`admit` makes the validator of every GPU event: a session may have
  TRILEMMA_JOBS_PER_SESSION jobs (default 1) and a connection TRILEMMA_JOBS_PER_CONNECTION (default 3)
  waiting or running; more are turned away before they enter the queue.

Off a shared host nothing here applies. No torch.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
from collections.abc import Callable
from typing import Any

import gradio as gr

from methods.base import InvalidSettings, MethodUnavailable, Settings
from ui import hosting

CEILINGS: dict[str, dict[str, float]] = {
    "nerf": {"budget_seconds": 300, "steps": 100000, "resolution": 192, "mesh_resolution": 256},
    "dreamfusion": {"budget_seconds": 600, "steps": 10000, "resolution": 128, "mesh_resolution": 256},
    "dreamfields": {"budget_seconds": 600, "steps": 10000, "resolution": 128, "mesh_resolution": 256},
    "shap-e": {"num_inference_steps": 128},
    "point-e": {"steps": 128},
    "vae": {"steps": 200},
    "gan": {"steps": 200},
    "ddpm": {"steps": 1000},
    "score-sde": {"steps": 1000},
    "triposr": {"mc_resolution": 256, "chunk_size": 65536},
    "hunyuan3d-2mini": {"steps": 50, "grid_resolution": 384, "chunk_size": 65536},
    "gaussian-splatting": {"budget_seconds": 300, "steps": 30000, "max_gaussians": 300000},
}
AUTO_BUDGET = "budget_seconds"  # 0 means "pick for this hardware"; on a shared host it means the ceiling
# a setting whose name has one of these names a file, a folder or weights to fetch (TripoSR's image_model)
PATH_SETTINGS = ("checkpoint", "path", "folder", "directory", "file", "model")


def is_public() -> bool:
    return hosting.on_space() or os.environ.get("TRILEMMA_PUBLIC", "").strip().lower() in ("1", "true", "yes")


def ceilings(method_id: str) -> dict[str, float]:
    extra: dict[str, Any] = {}
    raw = os.environ.get("TRILEMMA_PUBLIC_CEILINGS", "").strip()
    if raw:
        try:
            extra = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"TRILEMMA_PUBLIC_CEILINGS must be a JSON object: {exc}") from None
    return {**CEILINGS.get(method_id, {}), **(extra.get(method_id) or {})}


def check_path_settings(method_id: str, overrides: dict[str, Any], defaults: Settings) -> None:
    """Refuse a public request that changes a setting naming a file or folder, before anything looks at it."""
    if not is_public():
        return
    for name, value in overrides.items():
        if any(word in name.lower() for word in PATH_SETTINGS) and value != getattr(defaults, name, None):
            raise InvalidSettings(f"{method_id}: {name} cannot be changed on this public server")


def limit_settings(method_id: str, settings: Settings, defaults: Settings) -> Settings:
    """``settings`` for a public request, refused beyond a ceiling; an automatic budget becomes the ceiling."""
    if not is_public():
        return settings
    changes: dict[str, Any] = {}
    for name, ceiling in ceilings(method_id).items():
        value = getattr(settings, name, None)
        if value is None or isinstance(value, bool):
            continue
        if name == AUTO_BUDGET and value == 0:
            changes[name] = type(value)(ceiling)
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


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() else default


def admit(n_inputs: int) -> Callable[..., Any]:
    """The validator for a GPU event with ``n_inputs`` inputs: it refuses a job when its session or connection
    already has its share waiting or running (shared hosts only). It reads gradio's own queue, so a job that
    ended or was dropped no longer counts."""

    def validator(*args: Any) -> Any:
        request = args[n_inputs] if len(args) > n_inputs else None
        ok, message = _has_room(request), ""
        if not ok:
            message = (
                "you already have a job waiting or running on this shared server; "
                "wait for it to finish before starting another"
            )
        checks = [gr.validate(ok, message)] + [gr.validate(True, "")] * (n_inputs - 1)
        return checks[0] if n_inputs == 1 else checks

    # gradio passes the request to a parameter annotated gr.Request, found by position after the inputs
    params = [inspect.Parameter(f"input_{i}", inspect.Parameter.POSITIONAL_OR_KEYWORD) for i in range(n_inputs)]
    params.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request))
    validator.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    validator.__annotations__ = {"request": gr.Request}
    return validator


def _has_room(request: gr.Request | None) -> bool:
    if not is_public() or request is None:
        return True
    session = request.session_hash
    host = hosting.client_address(request)
    queue = request.request.app.get_blocks()._queue
    mine = same_host = 0
    for event in list(queue.event_ids_to_events.values()):
        if getattr(event.fn, "concurrency_id", None) != hosting.GPU_CONCURRENCY_ID:
            continue
        mine += event.session_hash == session
        same_host += host is not None and hosting.client_address(getattr(event, "request", None)) == host
    per_session = _env_int("TRILEMMA_JOBS_PER_SESSION", 1)
    per_connection = _env_int("TRILEMMA_JOBS_PER_CONNECTION", 3)
    return mine < per_session and same_host < per_connection
