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
