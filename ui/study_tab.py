"""The Study tab: pick a finished study, browse its table and plots, open a cell's asset, rate pairs.

A study is found by its ``manifest.json`` (written by ``python -m eval study run``) under
``<outputs>/studies/`` and chosen by its name: no event takes a folder or file path from the client.
Tables and plots come from its report folder
(``python -m eval study report``, or the *Build report* button). Pairs go through the arena's own
protocol (:func:`eval.ratings.serve_pair` for the chosen runs, then :func:`eval.ratings.vote`), with
the arena's anonymised viewers and questions and the same per-browser rater id.

No torch import: reading a report needs pandas only; building one imports the renderer lazily.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from eval import ratings
from eval.ratings import CRITERIA, CRITERION_LABELS, Policy, RatingError
from eval.runs.store import Store, outputs_dir
from ui import arena, public, served

CELL_HEADERS = ["variant", "input", "seed", "status", "seconds", "error", "run"]


@dataclass
class StudyTab:
    study: gr.Dropdown
    refresh: gr.Button
    build: gr.Button
    summary: gr.Markdown
    table: gr.Dataframe
    cells: gr.Dataframe
    plots: gr.Gallery
    cell: gr.Dropdown
    viewer: gr.Model3D
    record: gr.JSON
    variant_a: gr.Dropdown
    variant_b: gr.Dropdown
    send: gr.Button
    pair: gr.State
    left: gr.Model3D
    right: gr.Model3D
    questions: dict[str, gr.Radio]
    vote: gr.Button
    status: gr.Markdown


# ----------------------------------------------------------------------------- data (no gradio)


def find_studies(root: str | Path | None = None) -> dict[str, str]:
    """Study name -> output folder, for every ``<root>/*/manifest.json`` (root: ``<outputs>/studies``)."""
    root = Path(root) if root is not None else outputs_dir() / "studies"
    found = {}
    for manifest in sorted(root.glob("*/manifest.json")) if root.is_dir() else []:
        try:
            name = json.loads(manifest.read_text())["name"]
        except (OSError, ValueError, KeyError):
            continue
        found[name] = str(manifest.parent)
    return found


@dataclass
class StudyView:
    folder: Path
    manifest: dict[str, Any]
    cells: pd.DataFrame | None  # None until a report was written
    summary: pd.DataFrame | None
    plots: list[str]

    @property
    def store(self) -> Store:
        return Store(self.manifest["store"])


def load_view(folder: str | Path) -> StudyView:
    """A study's manifest and, when its report exists, the cells, the summary and the plot images."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise ValueError(f"{folder} is not a study folder (no manifest.json: run `python -m eval study run` first)")
    manifest = json.loads(manifest_path.read_text())
    report = folder / "report"
    cells = pd.read_parquet(report / "cells.parquet") if (report / "cells.parquet").is_file() else None
    summary = pd.read_csv(report / "summary.csv", keep_default_na=False) if (report / "summary.csv").is_file() else None
    plots = sorted(str(p) for p in (report / "plots").glob("*.png")) + sorted(
        str(p) for p in (report / "renders").glob("*.png")
    )
    return StudyView(folder, manifest, cells, summary, plots)


def study_folder(name: Any, root: str | Path | None = None) -> str:
    """The folder of the server's study called ``name``; anything else (a path, an unknown name) is refused."""
    studies = find_studies(root)
    if not isinstance(name, str) or name not in studies:
        raise gr.Error("Unknown study: pick one from the list (press Refresh to see new ones).", print_exception=False)
    return studies[name]


def _fmt(x: Any) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "–"
    return "–" if not math.isfinite(x) else f"{x:.4g}"


def summary_table(summary: pd.DataFrame | None) -> pd.DataFrame:
    """Variants as rows, metrics as columns, "mean [low, high]" in each cell."""
    if summary is None or summary.empty:
        return empty_summary()
    arrows = {"higher": " ↑", "lower": " ↓"}
    text = summary.assign(
        column=summary["metric"] + summary["higher_is_better"].map(lambda h: arrows.get(h, "")),
        cell=[
            f"{_fmt(m)} [{_fmt(lo)}, {_fmt(hi)}]"
            for m, lo, hi in zip(summary["mean"], summary["low"], summary["high"], strict=True)
        ],
    )
    table = text.pivot_table(index="variant", columns="column", values="cell", aggfunc="first", sort=False)
    return table.reset_index()


def cell_rows(cells: pd.DataFrame | None) -> pd.DataFrame:
    if cells is None:
        return pd.DataFrame(columns=CELL_HEADERS)
    return pd.DataFrame(
        {
            "variant": cells["variant"],
            "input": cells["input_id"] + ": " + cells["input"].astype(str),
            "seed": cells["seed"],
            "status": cells["status"],
            "seconds": [_fmt(s) for s in cells["seconds_total"]],
            "error": [served.redact(e)[:120] for e in cells["error"].astype(str)],
            "run": cells["run_id"],
        }
    )


def cell_choices(cells: pd.DataFrame | None) -> list[tuple[str, str]]:
    """(label, run id) for every cell with an asset."""
    if cells is None:
        return []
    done = cells[cells["asset_path"].astype(str) != ""]
    return [(f"{r.variant} | {r.input_id} | seed {r.seed}", r.run_id) for r in done.itertuples()]


def pair_runs(cells: pd.DataFrame, run_id: str, other_variant: str) -> tuple[str, str]:
    """The run of ``other_variant`` on the same input and seed as ``run_id``: the pair to rate."""
    this = cells[cells["run_id"] == run_id]
    if this.empty:
        raise ValueError("pick a cell with an asset first")
    row = this.iloc[0]
    other = cells[
        (cells["variant"] == other_variant)
        & (cells["input_id"] == row["input_id"])
        & (cells["seed"] == row["seed"])
        & (cells["status"] == "done")
    ]
    if other.empty:
        raise ValueError(f"{other_variant} has no finished cell for {row['input_id']} seed {row['seed']}")
    if other.iloc[0]["run_id"] == run_id:
        raise ValueError("pick two different variants")
    return str(row["run_id"]), str(other.iloc[0]["run_id"])


BUNDLED_STUDIES = Path(__file__).resolve().parents[1] / "assets" / "studies"
EMPTY_SUMMARY_HEADERS = ["variant", "metric ↑/↓: mean [95% interval]"]


def empty_summary() -> pd.DataFrame:
    """The summary table before any study has a report: its headers say what will be there."""
    return pd.DataFrame(columns=EMPTY_SUMMARY_HEADERS)


def bundled_studies(folder: Path = BUNDLED_STUDIES) -> list[tuple[str, str]]:
    """(file name, description) of the study files that ship in assets/studies/."""
    import yaml

    found = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            description = str((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("description") or "")
        except (OSError, yaml.YAMLError):
            description = ""
        found.append((path.name, description.strip()))
    return found


def no_study_hint() -> str:
    """The empty state: the bundled studies, and the commands that run one and build its report."""
    lines = ["**No study has run on this server yet.** The studies that ship with the app, in `assets/studies/`:"]
    lines += [f"- `{name}`" + (f": {text}" if text else "") for name, text in bundled_studies()]
    lines.append(
        "\nRun one (on the server, from the project folder), build its report, then press **Refresh**:\n\n"
        "```\npython -m eval study run assets/studies/families-trilemma.yaml\n"
        "python -m eval study report assets/studies/families-trilemma.yaml\n```"
    )
    return "\n".join(lines)


def view_values(where: str | None) -> tuple[str, pd.DataFrame, pd.DataFrame, list[str], list, list[str]]:
    """What the tab shows for a study folder: summary text, table, cells, images, cell choices, variants."""
    if not where:
        return (no_study_hint(), empty_summary(), cell_rows(None), [], [], [])
    try:
        view = load_view(where)
    except (ValueError, OSError) as exc:
        raise gr.Error(served.redact(exc), print_exception=False) from None
    served.SERVED.publish(*view.plots)
    m = view.manifest
    last = m.get("last_run", {})
    text = (
        f"**{m['name']}**: {m['cells']} cells; last run {'running' if m.get('running') else 'finished'}: "
        f"{last.get('done', 0)} done, {last.get('failed', 0)} failed, {last.get('skipped', 0)} skipped "
        f"({last.get('executor', '')})."
    )
    if view.cells is None:
        text += " No report yet: press **Build report**."
    else:
        text += " Report: `report/report.html` in the study's folder."
    variants = list(dict.fromkeys(view.cells["variant"])) if view.cells is not None else []
    return text, summary_table(view.summary), cell_rows(view.cells), view.plots, cell_choices(view.cells), variants


# ----------------------------------------------------------------------------- the tab


def build_study_tab(root: str | Path | None = None, policy: Policy | None = None) -> StudyTab:
    """Build the Study tab in the current Blocks context (call inside ``gr.Tab``)."""
    studies = find_studies(root)
    default = next(iter(studies), None)
    try:
        text0, table0, cells0, images0, choices0, variants0 = view_values(studies.get(default))
    except Exception as exc:  # a broken study folder must not stop the app from starting
        text0, table0, cells0, images0, choices0, variants0 = (
            f"{default}: {served.redact(exc)}",
            empty_summary(),
            None,
            [],
            [],
            [],
        )
    gr.Markdown(
        "Studies run with `python -m eval study run STUDY.yaml`; their report with `python -m eval study report`. "
        "Pick one to browse its results, open any cell's asset, or rate a pair of its assets in the arena."
    )
    with gr.Row():
        # names only, checked against the server's studies in each event (new ones appear after Refresh)
        study = gr.Dropdown(
            list(studies),
            value=default,
            label="Study",
            info=None if studies else "none has run here yet: see below for the bundled ones",
            scale=2,
            allow_custom_value=True,
        )
        refresh = gr.Button("Refresh", scale=0, min_width=90)
        build = gr.Button("Build report", scale=0, min_width=120)
    summary = gr.Markdown(text0)
    with gr.Tab("Table"):
        table = gr.Dataframe(table0, label="Per method variant: mean [95% interval]", interactive=False, wrap=True)
        cells = gr.Dataframe(cells0, label="Cells", interactive=False, wrap=True, max_height=360)
    with gr.Tab("Plots"):
        plots = gr.Gallery(images0, label="Plots and render grids", columns=2, height=560, object_fit="contain")
    with gr.Tab("Cells"):
        cell = gr.Dropdown(choices0, value=None, label="Cell")
        with gr.Row():
            viewer = gr.Model3D(label="Asset", height=420)
            record = gr.JSON(label="Run record")
    with gr.Tab("Arena"):
        gr.Markdown(
            "Pick a cell in *Cells*, then the variant to compare it with on the same input and seed; the pair "
            "is served to you through the arena (methods hidden until you vote)."
        )
        with gr.Row():
            variant_a = gr.Dropdown([], label="Cell's variant", interactive=False)
            variant_b = gr.Dropdown(variants0, value=None, label="Compare with")
            send = gr.Button("Send to arena", variant="secondary")
        rater = arena.rater_state()
        pair = gr.State(None)
        with gr.Row(equal_height=True):
            left = gr.Model3D(label="Left", **arena.VIEWER_SETTINGS)
            right = gr.Model3D(label="Right", **arena.VIEWER_SETTINGS)
        questions = {}
        with gr.Row():
            for criterion in CRITERIA:
                questions[criterion] = gr.Radio(
                    arena.ANSWER_CHOICES,
                    label=CRITERION_LABELS[criterion],
                    info=arena.QUESTIONS[criterion],
                    min_width=200,
                )
        vote = gr.Button("Vote", variant="primary")
        status = gr.Markdown()

    def show(selected: str | None):
        names = list(find_studies(root))
        folder = study_folder(selected, root) if selected else None
        text, table_df, cells_df, images, choices, variants = view_values(folder)
        return (
            gr.update(choices=names, value=selected),
            text,
            table_df,
            cells_df,
            images,
            gr.update(choices=choices, value=None),
            gr.update(choices=variants, value=None),
        )

    def build_report(selected: str | None):
        if public.is_public():  # rendering a report takes minutes of CPU: the operator builds it
            raise gr.Error(
                "Reports are built by the server's operator here (python -m eval study report).", print_exception=False
            )
        if not selected:
            raise gr.Error("Pick a study first.", print_exception=False)
        folder = study_folder(selected, root)
        from eval.study import build_report as write_report
        from eval.study import load_study

        try:
            view = load_view(folder)
            study = load_study(view.manifest["study_file"])
            study.output = view.folder
            write_report(study, view.store)
        except (ValueError, OSError, KeyError) as exc:
            raise gr.Error(served.redact(exc), print_exception=False) from None
        return show(selected)

    def open_cell(selected: str | None, run_id: str | None):
        if not run_id:
            return None, None, gr.update(value=None)
        view = load_view(study_folder(selected, root))
        if view.cells is None or run_id not in set(view.cells["run_id"]):
            raise gr.Error("Pick a cell of this study.", print_exception=False)
        run = view.store.get_run(run_id)
        row = view.cells[view.cells["run_id"] == run_id].iloc[0]
        asset = run.get("asset_path")
        served.SERVED.publish(asset)
        folder = Path(asset).parent if asset else None
        return asset, served.public_record(run, folder), gr.update(value=row["variant"])

    def send_pair(
        browser_id: Any,
        selected: str | None,
        run_id: str | None,
        other: str | None,
        profile: gr.OAuthProfile | None = None,
        request: gr.Request = None,
    ):
        view = load_view(study_folder(selected, root))
        try:
            who, anon = arena.resolve_rater(browser_id, profile, request)
            runs = pair_runs(view.cells, run_id or "", other or "")
            served = ratings.serve_pair(view.store, who, runs=runs, policy=policy or Policy.from_env())
        except (ValueError, RatingError) as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        state = {"id": served.id, "store": view.manifest["store"], "left": served.left, "right": served.right}
        wait = (policy or Policy.from_env()).min_view_seconds
        note = f"Look at both for at least {wait:g} s, then vote." if wait > 0 else "Vote when you are ready."
        return (
            anon,
            state,
            arena.viewer_file(served.left),
            arena.viewer_file(served.right),
            note,
            *(gr.update(value=None) for _ in CRITERIA),
        )

    def cast(
        browser_id: Any,
        state: dict | None,
        geometry: str | None,
        appearance: str | None,
        alignment: str | None,
        overall: str | None,
        profile: gr.OAuthProfile | None = None,
        request: gr.Request = None,
    ):
        answers = (geometry, appearance, alignment, overall)  # CRITERIA's order
        if not state:
            raise gr.Error("Send a pair to the arena first.", print_exception=False)
        try:
            who, anon = arena.resolve_rater(browser_id, profile, request, issue=False)
            arena.count_vote(request)
            result = ratings.vote(
                Store(state["store"]),
                state["id"],
                who,
                dict(zip(CRITERIA, answers, strict=True)),
                policy=policy or Policy.from_env(),
            )
        except RatingError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        arena.CONNECTIONS.record("vote", arena.connection(request))
        return (
            anon,
            None,
            (
                f"Saved. **Left** was **{arena.method_label(result.left_method)}**, **right** was "
                f"**{arena.method_label(result.right_method)}**."
            ),
        )

    outputs = [study, summary, table, cells, plots, cell, variant_b]
    gr.on([refresh.click, study.input], show, [study], outputs, api_visibility="private")
    build.click(build_report, [study], outputs, api_visibility="private")
    cell.change(open_cell, [study, cell], [viewer, record, variant_a], api_visibility="private")
    send.click(
        send_pair,
        [rater, study, cell, variant_b],
        [rater, pair, left, right, status, *questions.values()],
        api_visibility="private",
    )
    vote.click(cast, [rater, pair, *questions.values()], [rater, pair, status], api_visibility="private")
    return StudyTab(
        study,
        refresh,
        build,
        summary,
        table,
        cells,
        plots,
        cell,
        viewer,
        record,
        variant_a,
        variant_b,
        send,
        pair,
        left,
        right,
        questions,
        vote,
        status,
    )
