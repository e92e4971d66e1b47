"""The Runs tab: browse the finished runs of the store, open one, tick up to four to compare.

Every session of this app (and the CLI, and studies) writes to the same store; this tab lists
its finished runs newest first, filtered by method, modality, input text and age. Ticking runs
shows them side by side in the same viewers (with the renders the metrics saw) and the same
comparison matrix as a fresh request, and the first ticked run's record. Reads go through
eval.runs.store only; records lose their server paths before they are shown.

On a shared host (:func:`ui.public.is_public`) the tab shows a visitor only their own runs and the runs
the operator publishes: each run a browser's request made is remembered in that browser
(:func:`owned_state`, a list of run ids each signed by the server, so no one can claim another's run),
and the operator lists published run ids, one a line, in TRILEMMA_PUBLISHED_RUNS (default
``published_runs.txt`` beside the run store). Other visitors' prompts and uploads are never listed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.context import Context

from eval.judging.protocol import MetricRow
from eval.judging.renders import gallery, input_files
from eval.runs.store import Store, UnknownRun, default_db_path
from methods import registry
from ui import public, served
from ui.arena import token_key
from ui.matrix import matrix_html
from ui.viewer_asset import camera_for, viewer_file

MAX_COMPARE = 4
MAX_LISTED = 500
RUN_HEADERS = ["run", "method", "modality", "input", "finished", "seconds"]
AGES = {"any time": None, "last hour": 3600, "last day": 86400, "last 7 days": 7 * 86400, "last 30 days": 30 * 86400}
VIEWER_HEIGHT = 260
OWNED_KEY = "trilemma3d-my-runs"  # the browser's localStorage key for the runs it made
MAX_OWNED = 200  # the newest runs a browser remembers


# ----------------------------------------------------------------------------- who may see which run


def _run_mac(run_id: str) -> str:
    return hmac.new(token_key(), b"run:" + run_id.encode(), hashlib.sha256).hexdigest()[:24]


def run_token(run_id: str) -> str:
    """``<run id>.<HMAC>``: proof, kept in the browser, that this browser's request made (or was shown) the run."""
    return f"{run_id}.{_run_mac(run_id)}"


def owned_runs(tokens: Any) -> set[str]:
    """The run ids among ``tokens`` that this server signed; anything else is ignored."""
    if not isinstance(tokens, list):
        return set()
    out = set()
    for token in tokens[-MAX_OWNED:]:
        if isinstance(token, str) and len(token) < 200 and "." in token:
            run_id, _, mac = token.rpartition(".")
            if hmac.compare_digest(mac, _run_mac(run_id)):
                out.add(run_id)
    return out


def remembering(handler: Callable[..., Iterator[list[Any]]]) -> Callable[..., Iterator[list[Any]]]:
    """``handler`` (a modality tab's Generate handler) taking the browser's run tokens as its last input and
    giving them back, with the runs of the results it streams added, as its last output: one event, so
    results arriving together cannot overwrite each other's tokens."""

    def generate(*args: Any) -> Iterator[list[Any]]:
        *inputs, tokens = args
        given = [t for t in (tokens if isinstance(tokens, list) else []) if isinstance(t, str)][-MAX_OWNED:]
        kept = list(given)
        for update in handler(*inputs):
            made = [u["id"] for u in update if isinstance(u, dict) and {"glb", "id"} <= set(u) and u["id"]]
            kept = [*kept, *(run_token(str(r)) for r in made if run_token(str(r)) not in kept)][-MAX_OWNED:]
            yield [*update, kept if kept != given else gr.skip()]  # the last update carries the whole list

    generate.__name__ = getattr(handler, "__name__", "generate")
    return generate


def owned_state() -> gr.BrowserState:
    """The one BrowserState of the runs this browser made, shared by every tab of the app being built (two
    components on one key would overwrite each other's lists)."""
    root = Context.root_block
    state = getattr(root, "_trilemma_owned_runs", None) if root is not None else None
    if state is None:
        secret = os.environ.get("TRILEMMA_RATER_SECRET", "trilemma3d-my-runs")
        state = gr.BrowserState([], storage_key=OWNED_KEY, secret=secret)
        if root is not None:
            root._trilemma_owned_runs = state  # type: ignore[attr-defined]
    return state


def published_runs_file() -> Path:
    raw = os.environ.get("TRILEMMA_PUBLISHED_RUNS", "").strip()
    return Path(raw) if raw else default_db_path().parent / "published_runs.txt"


def published_runs() -> set[str]:
    """The run ids the operator publishes (one a line; ``#`` starts a comment)."""
    try:
        text = published_runs_file().read_text(encoding="utf-8")
    except OSError:
        return set()
    return {line.split("#")[0].strip() for line in text.splitlines()} - {""}


def visible_runs(tokens: Any) -> set[str] | None:
    """The run ids this visitor may see on a shared host (theirs and the published ones); None: every run."""
    if not public.is_public():
        return None
    return owned_runs(tokens) | published_runs()


def input_text(inputs: dict[str, Any]) -> str:
    """What a run was given, in a few words: the prompt, the image's name, the views or the video."""
    if inputs.get("prompt"):
        return str(inputs["prompt"])
    image = inputs.get("image")
    if isinstance(image, dict):
        return str(image.get("name") or "an image")
    if inputs.get("frames"):
        return f"{inputs['frames']} views"
    if inputs.get("video"):
        return Path(str(inputs["video"])).name
    return ""


def find_runs(
    store: Store,
    method: str | None = None,
    modality: str | None = None,
    contains: str = "",
    age: str = "any time",
    now: float | None = None,
    visible: set[str] | None = None,
) -> list[dict[str, Any]]:
    """Finished runs, newest first, matching every filter given (``contains``: in the input, any case);
    only those in ``visible`` when it is given."""
    if visible is None:
        runs = store.runs(method=method or None, modality=modality or None, status="done", limit=MAX_LISTED)
    else:
        runs = []
        for run_id in visible:
            try:
                run = store.get_run(run_id)
            except UnknownRun:
                continue
            wanted = (not method or run["method"] == method) and (not modality or run["modality"] == modality)
            if run["status"] == "done" and wanted:
                runs.append(run)
        runs = sorted(runs, key=lambda r: r["created"], reverse=True)[:MAX_LISTED]
    seconds = AGES.get(age)
    cutoff = None if seconds is None else (now or time.time()) - seconds
    needle = (contains or "").strip().lower()
    out = []
    for run in runs:
        if cutoff is not None and (run.get("finished") or run["created"]) < cutoff:
            continue
        if needle and needle not in input_text(run.get("inputs") or {}).lower():
            continue
        out.append(run)
    return out


def run_rows(runs: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for run in runs:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.get("finished") or run["created"]))
        total = sum((run.get("stage_seconds") or {}).values())
        rows.append(
            [run["id"], run["method"], run["modality"], input_text(run.get("inputs") or {}), when, round(total, 1)]
        )
    return rows


def public_record(run: dict[str, Any]) -> dict[str, Any]:
    """A run's record as the page may show it: file names instead of server paths (anywhere in it)."""
    record = {k: v for k, v in run.items() if k not in ("asset_path",)}
    if run.get("asset_path"):
        record["asset"] = Path(run["asset_path"]).name
        return served.public_record(record, Path(run["asset_path"]).parent)
    return served.public_record(record)


@dataclass
class OpenedRun:
    run_id: str
    label: str  # method · run id's tail, the matrix column
    glb: str | None
    viewer: str | None
    files: list[str]
    renders: list[tuple[str, str]]
    inputs: list[str]
    rows: list[MetricRow]
    record: dict[str, Any]


def open_run(store: Store, run_id: str) -> OpenedRun:
    """A stored run's asset (and its viewer copy), kept input, renders, metric rows and public record."""
    run = store.get_run(run_id)
    glb = run.get("asset_path")
    files, renders, kept, viewer = [], [], [], None
    if glb and Path(glb).is_file():
        folder = Path(glb).parent
        viewer = viewer_file(glb).path
        renders, turntable = gallery(folder)
        kept = input_files(folder)
        # the download copy of run.json, without server paths; everything shown is published, nothing else
        # beside the mesh: the splats (.splat for viewers, the 3DGS .ply for editors) and the points, where made
        extra = [folder / name for name in ("asset.splat", "splats.ply", "points.ply")]
        files = served.publish_run_files(glb, [str(path) for path in extra if path.is_file()])
        files += [turntable] if turntable else []
        served.SERVED.publish(viewer, turntable, *kept, *(path for path, _ in renders))
    else:
        glb = None
    rows = [
        MetricRow(m["name"], m["value"], m["unit"], m["higher_is_better"], m["group"], m["settings"])
        for m in store.metrics(run_id)
    ]
    label = f"{run['method']} · {run_id[-6:]}"
    return OpenedRun(run_id, label, glb, viewer, files, renders, kept, rows, public_record(run))


def compare(store: Store, run_ids: list[str], visible: set[str] | None = None) -> tuple[list[OpenedRun], str]:
    """The ticked runs (at most four, in the order ticked) and their comparison matrix; a run outside
    ``visible`` (when given) is skipped as if it did not exist."""
    if len(run_ids) > MAX_COMPARE:
        raise gr.Error(f"{len(run_ids)} runs are ticked; at most {MAX_COMPARE} are compared side by side")
    opened = []
    for rid in run_ids:
        if visible is not None and rid not in visible:
            continue
        try:
            opened.append(open_run(store, rid))
        except UnknownRun:
            continue  # deleted since it was listed
    rows = [(o.label, row) for o in opened for row in o.rows]
    return opened, matrix_html(rows, [o.label for o in opened], empty="no metrics were recorded for these runs")


# ----------------------------------------------------------------------------- the tab


def list_view(method_id: str, modality: str, contains: str, age: str, owned: Any = None):
    """The runs table and the tick choices for the filters (the tab's list handler)."""
    runs = find_runs(Store(), method_id, modality, contains, age, visible=visible_runs(owned))
    choices = [(f"{r['method']} · {input_text(r.get('inputs') or {})[:40]} · {r['id'][-6:]}", r["id"]) for r in runs]
    return run_rows(runs), gr.update(choices=choices)


def compare_view(run_ids: list[str] | None, owned: Any = None) -> list[Any]:
    """The matrix, then per viewer (model, input, renders, downloads), then the first run's record."""
    opened, page = compare(Store(), [str(r) for r in run_ids or []], visible=visible_runs(owned))
    out: list[Any] = [page]
    for i in range(MAX_COMPARE):
        run = opened[i] if i < len(opened) else None
        if run is None:
            out += [gr.update(value=None, label=f"Run {i + 1}"), gr.update(value=None, visible=False)]
            out += [gr.update(value=None, visible=False), gr.update(value=None, visible=False)]
            continue
        out.append(gr.update(value=run.viewer, label=run.label, **camera_for(run.viewer)))
        out.append(gr.update(value=run.inputs or None, visible=bool(run.inputs)))
        out.append(gr.update(value=run.renders or None, visible=bool(run.renders)))
        out.append(gr.update(value=run.files or None, visible=bool(run.files)))
    out.append(opened[0].record if opened else None)
    return out


def build_runs_tab() -> None:
    """Fill the open gr.Tab: filters, the list of runs, up to four viewers and the matrix."""
    whose = (
        "Your own runs (remembered by this browser) and the runs this server's operator publishes"
        if public.is_public()
        else "Finished runs of every session of this app, the CLI and studies"
    )
    gr.Markdown(
        f"{whose}, newest first. Tick up to {MAX_COMPARE} to see them side by side with the same viewers and "
        "comparison matrix as a fresh request."
    )
    owned = owned_state()
    with gr.Row():
        method = gr.Dropdown(label="Method", choices=["", *registry.ids()], value="", scale=1)
        modality = gr.Dropdown(label="Modality", choices=["", "text", "image", "video"], value="", scale=1)
        contains = gr.Textbox(label="Input contains", placeholder="mug", scale=2)
        age = gr.Dropdown(label="Finished", choices=list(AGES), value="any time", scale=1)
        refresh = gr.Button("Refresh", scale=0)
    table = gr.Dataframe(headers=RUN_HEADERS, value=[], interactive=False, wrap=True, max_height=300)
    ticked = gr.CheckboxGroup(label=f"Compare (up to {MAX_COMPARE})", choices=[], value=[])
    matrix = gr.HTML(value="", elem_classes=["comparison-matrix-box"])
    viewers, galleries, downloads, inputs_shown = [], [], [], []
    with gr.Row(equal_height=False):
        for i in range(MAX_COMPARE):
            with gr.Column(min_width=220):
                viewers.append(gr.Model3D(label=f"Run {i + 1}", height=VIEWER_HEIGHT, interactive=False))
                inputs_shown.append(gr.Gallery(label="Input", columns=4, height=90, visible=False))
                galleries.append(
                    gr.Gallery(
                        label="What the metrics saw",
                        columns=8,
                        height=160,  # as in the modality tabs: one row of 100 px thumbnails under the label
                        visible=False,
                        elem_classes=["slot-renders"],
                    )
                )
                downloads.append(gr.File(label="Download", file_count="multiple", interactive=False, visible=False))
    record = gr.JSON(label="Record of the first ticked run", value=None)

    filters = [method, modality, contains, age, owned]
    triggers = [refresh.click, method.change, modality.change, contains.submit, age.change]
    root = Context.root_block
    if root is not None:  # list the runs when the page opens
        triggers.append(root.load)
    # page handlers only: the public API stays the three generation endpoints; queued, so a shared host's
    # per-address share of the "pages" group applies (ui.public.police)
    gr.on(triggers=triggers, fn=list_view, inputs=filters, outputs=[table, ticked], api_visibility="private")
    per_run = [c for i in range(MAX_COMPARE) for c in (viewers[i], inputs_shown[i], galleries[i], downloads[i])]
    ticked.change(compare_view, [ticked, owned], [matrix, *per_run, record], api_visibility="private")
