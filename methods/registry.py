"""The method registry: ``@register`` into one dict, lazy discovery, availability with a reason.

Method modules import no torch at module level, so listing methods stays light; each
method's heavy code is imported inside ``run`` on first use.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from methods.base import Method, MethodUnavailable, UnknownMethod

# Modules that define the built-in methods, imported on first listing.
BUILTIN_MODULES: tuple[str, ...] = (
    "methods.shap_e",
    "methods.point_e",
    "methods.text_opt",
    "methods.nerf.method",
    "methods.splats.method",
    "methods.families",
    "methods.triposr",
    "methods.triposg",
    "methods.hunyuan3d",
)

_REGISTRY: dict[str, type[Method]] = {}
_discovered = False


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a Method subclass under its ``id``; a duplicate id is an error."""
    mid = getattr(cls, "id", None)
    if not mid or not isinstance(mid, str):
        raise TypeError(f"{cls.__name__} has no string id")
    if mid in _REGISTRY and _REGISTRY[mid] is not cls:
        raise ValueError(f"a method with id {mid!r} is already registered ({_REGISTRY[mid].__qualname__})")
    _REGISTRY[mid] = cls
    return cls


def unregister(method_id: str) -> None:
    _REGISTRY.pop(method_id, None)


def discover() -> None:
    """Import the built-in method modules (light: no torch) once."""
    global _discovered
    if _discovered:
        return
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    _discovered = True


def ids(modality: str | None = None) -> list[str]:
    discover()
    return [mid for mid, cls in _REGISTRY.items() if modality is None or modality in cls.modalities]


def get(method_id: str) -> Method:
    """An instance of the registered method; UnknownMethod (a KeyError) names the known ids."""
    discover()
    try:
        return _REGISTRY[method_id]()
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise UnknownMethod(f"unknown method {method_id!r}; known methods: {known}") from None


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""  # why not, or a note such as "downloads 2.6 GB on first run"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in ("1", "true", "yes", "on")


HUB_PROBE_SECONDS = 3.0  # how long a reachability probe of the hub may take
HUB_PROBE_TTL = 60.0  # a probe's answer is reused this long
_PROBES: dict[tuple[str, int], tuple[float, bool]] = {}


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "").strip() or "https://huggingface.co"


def reachable(url: str) -> bool:
    """Can a TCP connection to ``url``'s host be opened within HUB_PROBE_SECONDS? (cached HUB_PROBE_TTL s)

    One quick probe instead of the hub client's minutes of retries: a host that cannot be reached makes
    uncached weights unavailable at once rather than inside a GPU slot.
    """
    import socket
    import time
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    key = (parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
    now = time.monotonic()
    cached = _PROBES.get(key)
    if cached is not None and now - cached[0] < HUB_PROBE_TTL:
        return cached[1]
    try:
        with socket.create_connection(key, timeout=HUB_PROBE_SECONDS):
            ok = True
    except OSError:
        ok = False
    _PROBES[key] = (now, ok)
    return ok


def checkpoint_status(checkpoint: str) -> Availability:
    """Is a checkpoint (local directory or hub repo id) loadable here? At most one quick probe of the hub
    (or of a download URL's host) when the weights are not cached."""
    path = Path(checkpoint).expanduser()
    if checkpoint.startswith((".", "/", "~")) or path.exists():
        if not path.exists():
            return Availability(False, f"checkpoint directory {checkpoint} does not exist")
        return Availability(True, f"local checkpoint {checkpoint}")
    if checkpoint.startswith(("http://", "https://")):
        name = checkpoint.rsplit("/", 1)[-1]
        if hub_offline():
            return Availability(False, f"{name} is not cached and downloads are offline (HF_HUB_OFFLINE=1)")
        if not reachable(checkpoint):
            return Availability(False, f"{name} is not cached and its download host cannot be reached")
        return Availability(True, f"{name} will be downloaded from {checkpoint} on first run")
    from huggingface_hub import scan_cache_dir  # light; no torch
    from huggingface_hub.errors import CacheNotFound

    try:
        cached = any(repo.repo_id == checkpoint for repo in scan_cache_dir().repos)
    except CacheNotFound:
        cached = False
    if cached:
        return Availability(True, f"{checkpoint} is in the Hugging Face cache")
    if hub_offline():
        return Availability(
            False, f"weights for {checkpoint} are not in the cache and the hub is unreachable (HF_HUB_OFFLINE=1)"
        )
    if not reachable(hub_endpoint()):
        return Availability(False, f"weights for {checkpoint} are not in the cache and the hub cannot be reached")
    return Availability(True, f"{checkpoint} will be downloaded into the Hugging Face cache on first run")


def availability(method: Method | str, modality: str | None = None, settings=None) -> Availability:
    """Whether a method can run here, and if not, why, in words a person can act on."""
    m = get(method) if isinstance(method, str) else method
    missing = [mod for mod in m.requires if importlib.util.find_spec(mod) is None]
    if missing:
        return Availability(False, f"Python package(s) not installed: {', '.join(missing)}")
    if m.needs_gpu:
        from methods import runtime

        if not runtime.gpu_present():
            return Availability(False, "needs a CUDA GPU and none was found")
    settings = settings or m.default_settings(modality or m.modalities[0])
    notes = []
    for ckpt in m.checkpoints(settings):
        status = checkpoint_status(ckpt)
        if not status.ok:
            return status
        if status.reason and status.reason not in notes:
            notes.append(status.reason)
    return Availability(True, "; ".join(notes) or "ready")


def require_available(method: Method, modality: str, settings) -> None:
    status = availability(method, modality, settings)
    if not status.ok:
        raise MethodUnavailable(f"{method.label} cannot run here: {status.reason}")


def listing(modality: str | None = None) -> list[dict]:
    """One row per method: id, label, modalities, family, representation, available, reason."""
    rows = []
    for mid in ids(modality):
        m = get(mid)
        status = availability(m, modality)
        rows.append(
            {
                "id": m.id,
                "label": m.label,
                "modalities": list(m.modalities),
                "family": m.family,
                "representation": m.representation,
                "available": status.ok,
                "reason": status.reason,
            }
        )
    return rows
