"""The Runs tab: browse the finished runs of the store, open one, tick up to four to compare.

Every session of this app (and the CLI, and studies) writes to the same store; this tab lists
its finished runs newest first, filtered by method, modality, input text and age. Ticking runs
shows them side by side in the same viewers (with the renders the metrics saw) and the same
comparison matrix as a fresh request, and the first ticked run's record. Reads go through
eval.runs.store only; records lose their server paths before they are shown.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.context import Context

from eval.judging.protocol import MetricRow
from eval.judging.renders import gallery, input_files
from eval.runs.store import Store, UnknownRun
from methods import registry
from ui import served
from ui.matrix import matrix_html
from ui.viewer_asset import viewer_file

MAX_COMPARE = 4
MAX_LISTED = 500
RUN_HEADERS = ["run", "method", "modality", "input", "finished", "seconds"]
AGES = {"any time": None, "last hour": 3600, "last day": 86400, "last 7 days": 7 * 86400, "last 30 days": 30 * 86400}
VIEWER_HEIGHT = 260


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
) -> list[dict[str, Any]]:
    """Finished runs, newest first, matching every filter given (``contains``: in the input, any case)."""
    runs = store.runs(method=method or None, modality=modality or None, status="done", limit=MAX_LISTED)
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


def compare(store: Store, run_ids: list[str]) -> tuple[list[OpenedRun], str]:
    """The ticked runs (at most four, in the order ticked) and their comparison matrix."""
    if len(run_ids) > MAX_COMPARE:
        raise gr.Error(f"{len(run_ids)} runs are ticked; at most {MAX_COMPARE} are compared side by side")
    opened = []
    for rid in run_ids:
        try:
            opened.append(open_run(store, rid))
        except UnknownRun:
            continue  # deleted since it was listed
    rows = [(o.label, row) for o in opened for row in o.rows]
    return opened, matrix_html(rows, [o.label for o in opened])


# ----------------------------------------------------------------------------- the tab


def list_view(method_id: str, modality: str, contains: str, age: str):
    """The runs table and the tick choices for the filters (the tab's list handler)."""
    runs = find_runs(Store(), method_id, modality, contains, age)
    choices = [(f"{r['method']} · {input_text(r.get('inputs') or {})[:40]} · {r['id'][-6:]}", r["id"]) for r in runs]
    return run_rows(runs), gr.update(choices=choices)


def compare_view(run_ids: list[str] | None) -> list[Any]:
    """The matrix, then per viewer (model, input, renders, downloads), then the first run's record."""
    opened, page = compare(Store(), list(run_ids or []))
    out: list[Any] = [page]
    for i in range(MAX_COMPARE):
        run = opened[i] if i < len(opened) else None
        if run is None:
            out += [gr.update(value=None, label=f"Run {i + 1}"), gr.update(value=None, visible=False)]
            out += [gr.update(value=None, visible=False), gr.update(value=None, visible=False)]
            continue
        out.append(gr.update(value=run.viewer, label=run.label))
        out.append(gr.update(value=run.inputs or None, visible=bool(run.inputs)))
        out.append(gr.update(value=run.renders or None, visible=bool(run.renders)))
        out.append(gr.update(value=run.files or None, visible=bool(run.files)))
    out.append(opened[0].record if opened else None)
    return out


def build_runs_tab() -> None:
    """Fill the open gr.Tab: filters, the list of runs, up to four viewers and the matrix."""
    gr.Markdown(
        "Finished runs of every session of this app, the CLI and studies, newest first. Tick up to "
        f"{MAX_COMPARE} to see them side by side with the same viewers and comparison matrix as a fresh request."
    )
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
                        height=110,
                        visible=False,
                        elem_classes=["slot-renders"],
                    )
                )
                downloads.append(gr.File(label="Download", file_count="multiple", interactive=False, visible=False))
    record = gr.JSON(label="Record of the first ticked run", value=None)

    filters = [method, modality, contains, age]
    triggers = [refresh.click, method.change, modality.change, contains.submit, age.change]
    root = Context.root_block
    if root is not None:  # list the runs when the page opens
        triggers.append(root.load)
    # page handlers only: the public API stays the three generation endpoints
    gr.on(
        triggers=triggers, fn=list_view, inputs=filters, outputs=[table, ticked], api_visibility="private", queue=False
    )
    per_run = [c for i in range(MAX_COMPARE) for c in (viewers[i], inputs_shown[i], galleries[i], downloads[i])]
    ticked.change(compare_view, ticked, [matrix, *per_run, record], api_visibility="private")
