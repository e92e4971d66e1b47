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
from gradio.exceptions import Error, InvalidPathError

import ui
from eval.runs.store import default_db_path
from ui import public, served
from ui.arena import build_arena_tab
from ui.leaderboard import build_leaderboard_tab
from ui.runs import build_runs_tab
from ui.study_tab import build_study_tab

log = logging.getLogger(__name__)

DELETE_CACHE = (3600, 86400)  # hourly, drop gradio's copies older than a day (shared host: public.RETENTION)
ASSETS = Path(__file__).resolve().parent / "assets"
EXAMPLES = ASSETS / "examples"
PUBLIC_NOTICE = (
    "**This is a public server.** What you type and upload, and the models made from it, are stored here. The "
    "**Runs** tab shows you your own runs (remembered by this browser) and the runs the operator publishes, never "
    "other visitors' prompts or uploads; what you generate may appear, without any name, as a pair in the "
    "**Arena**. Uploads are limited to {upload} and deleted after an hour. Votes and ratings are stored under an "
    "anonymous id, never with your address."
)

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


class Blocks(gr.Blocks):
    """gr.Blocks whose input errors name no server path: gradio's own refusal of a path-shaped file value lists
    the resolved path (the working directory for a relative one) and the blocked paths (the store's)."""

    async def preprocess_data(self, block_fn: Any, inputs: list[Any], state: Any, explicit_call: bool = False):
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except Error as exc:
            raise Error(served.redact(exc.message), print_exception=False) from None
        except (InvalidPathError, FileNotFoundError):  # a path this server did not receive as an upload
            raise Error(
                "a file in this request was not uploaded to this server: upload it with the page or the client",
                print_exception=False,
            ) from None
        except Exception as exc:  # an input a component could not read: its message, without paths
            raise Error(served.redact(exc), print_exception=False) from None


def build_app(tabs: Sequence[tuple[str, Callable[[], Any]]] = TABS) -> gr.Blocks:
    """The whole app, queued, not launched (tests launch it on a free port).

    The example files are static paths: gradio serves them where they are instead of copies in its cache,
    which a cache clean-up (or another app sharing the temp folder) could delete under a running app.
    On a shared host no event skips the queue (``api_open=False``), every event that is not generation
    runs in a group of its own with a per-address share (:func:`ui.public.police`), and a line says
    what is public.
    """
    gr.set_static_paths([EXAMPLES])
    shared = public.is_public()
    with Blocks(title="Trilemma3D", delete_cache=public.RETENTION if shared else DELETE_CACHE,
                analytics_enabled=False) as demo:  # fmt: skip
        gr.Markdown(ui.HEADER, elem_id="app-header")
        if shared:
            gr.Markdown(PUBLIC_NOTICE.format(upload=public.max_upload()), elem_id="public-notice")
        with gr.Tabs():
            for title, builder in tabs:
                with gr.Tab(title):
                    builder()
    demo.queue(max_size=public.queue_max_size(), api_open=False)
    public.police(demo)
    return demo


def launch_kwargs() -> dict[str, Any]:
    """What ``launch`` needs besides host and port: the look, and what may be served: assets/ and the exact
    files of finished runs (published as they are shown), never the run store nor its -wal / -shm."""
    served.SERVED.publish(ASSETS)
    kwargs: dict[str, Any] = {
        "theme": ui.theme(),
        "css": ui.CSS,
        "head": ui.HEAD,
        "allowed_paths": served.SERVED,
        "blocked_paths": served.store_files(default_db_path()),
    }
    if public.is_public():  # no monitoring dashboard for strangers; uploads bounded
        kwargs.update(enable_monitoring=False, max_file_size=public.max_upload())
    return kwargs


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
