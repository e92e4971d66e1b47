"""Run test code elsewhere: in a fresh Python (what an import pulls in) or in several threads at once."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def python_c(code: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """``python -c code`` in the repository root, output captured as text."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kwargs
    )


def in_threads(target: Callable[[int], None], count: int) -> None:
    """``target(i)`` in ``count`` threads started together; returns when all have ended."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
