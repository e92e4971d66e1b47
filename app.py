"""Trilemma3D: builds the Gradio Blocks from ui/, queues it once and launches it.

No model code and no torch import here: methods are listed through the registry and run
through eval.runs.runner, each inside its own tab module.

    python app.py                  # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT)
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

import ui
from eval.runs.store import default_db_path
from ui import served
from ui.arena import build_arena_tab
from ui.leaderboard import build_leaderboard_tab
from ui.runs import build_runs_tab
from ui.study_tab import build_study_tab

log = logging.getLogger(__name__)

QUEUE_MAX_SIZE = 20  # waiting requests beyond this are turned away instead of piling up
DELETE_CACHE = (3600, 86400)  # every hour, drop gradio's copies of files older than a day
ASSETS = Path(__file__).resolve().parent / "assets"

# One (title, builder) pair per tab; a builder fills the open gr.Tab. Arena, Leaderboard and Study add a line each.
TABS: list[tuple[str, Callable[[], Any]]] = [
    (ui.TITLES["text"], functools.partial(ui.build_modality_tab, "text")),
    (ui.TITLES["image"], functools.partial(ui.build_modality_tab, "image")),
    (ui.TITLES["video"], functools.partial(ui.build_modality_tab, "video")),
    ("Arena", build_arena_tab),
    ("Leaderboard", build_leaderboard_tab),
    ("Study", build_study_tab),
    ("Runs", build_runs_tab),
    ("Methods", ui.build_methods_tab),
]


def build_app(tabs: Sequence[tuple[str, Callable[[], Any]]] = TABS) -> gr.Blocks:
    """The whole app, queued, not launched (tests launch it on a free port)."""
    with gr.Blocks(title="Trilemma3D", delete_cache=DELETE_CACHE, analytics_enabled=False) as demo:
        gr.Markdown(ui.HEADER, elem_id="app-header")
        with gr.Tabs():
            for title, builder in tabs:
                with gr.Tab(title):
                    builder()
    demo.queue(max_size=QUEUE_MAX_SIZE)
    return demo


def launch_kwargs() -> dict[str, Any]:
    """What ``launch`` needs besides host and port: the look, and what may be served: assets/ and the exact
    files of finished runs (published as they are shown), never the run store nor its -wal / -shm."""
    served.SERVED.publish(ASSETS)
    return {
        "theme": ui.theme(),
        "css": ui.CSS,
        "head": ui.HEAD,
        "allowed_paths": served.SERVED,
        "blocked_paths": served.store_files(default_db_path()),
    }


def close_dead_runs() -> list[str]:
    """At start-up: runs left "running" by a process that died are marked failed (interrupted), empty folders go."""
    from eval.runs.runner import close_dead_runs as close
    from eval.runs.store import Store

    closed = close(Store())
    if closed:
        log.warning("marked %d run(s) left running by a stopped process as interrupted", len(closed))
    return closed


def main() -> None:
    close_dead_runs()
    build_app().launch(server_name=ui.hosting.server_name(), server_port=ui.hosting.server_port(), **launch_kwargs())


if __name__ == "__main__":
    main()
