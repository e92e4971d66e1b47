"""Where the app runs: local or a Hugging Face Space; the ZeroGPU decorator, a no-op locally.

``spaces`` is imported only on a Space and only when a handler is wrapped, so local runs and
tests never need it (nor does importing it pull in torch here).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

GPU_CONCURRENCY_ID = "gpu"  # every handler that runs methods queues on this one id
DEFAULT_PORT = 7860


def on_space() -> bool:
    return bool(os.environ.get("SPACE_ID"))


def server_name() -> str:
    """GRADIO_SERVER_NAME, else 0.0.0.0 on a Space (the proxy must reach it) and 127.0.0.1 locally."""
    return os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_space() else "127.0.0.1")


def server_port() -> int:
    raw = os.environ.get("GRADIO_SERVER_PORT", "")
    return int(raw) if raw.strip() else DEFAULT_PORT


def client_address(request: Any) -> str | None:
    """The visitor's address, for per-connection limits (counted in memory, never stored).

    Behind a proxy (a Space) the socket's peer is the proxy: the address is then the entry that the
    last of TRILEMMA_TRUSTED_PROXIES proxies (default 1 on a Space, 0 elsewhere) added to X-Forwarded-For;
    entries before it are the client's own word and are ignored.
    """
    if request is None:
        return None
    raw = os.environ.get("TRILEMMA_TRUSTED_PROXIES", "").strip()
    proxies = int(raw) if raw.isdigit() else (1 if on_space() else 0)
    headers = getattr(request, "headers", None)
    if proxies and headers is not None:
        hops = [h.strip() for h in (headers.get("x-forwarded-for") or "").split(",") if h.strip()]
        if len(hops) >= proxies:
            return hops[-proxies]
    return getattr(getattr(request, "client", None), "host", None)


def gpu(duration: int | Callable[..., int]) -> Callable[[F], F]:
    """``spaces.GPU(duration=...)`` on a Space, the function itself elsewhere (or without ``spaces``).

    ``duration`` may be a callable taking the wrapped function's arguments (ZeroGPU's dynamic duration).
    """

    def wrap(fn: F) -> F:
        if not on_space():
            return fn
        try:
            import spaces
        except ImportError:
            return fn
        return spaces.GPU(duration=duration)(fn)

    return wrap
