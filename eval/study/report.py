"""The study report: tables, plots, render grids and a written setup, from the store and the study file.

``build_report(study, store, out_dir)`` writes::

    results.parquet / .csv    one row per cell and metric (cells that failed have no metric rows)
    cells.parquet / .csv      one row per cell: status, error, run id, asset, seconds, peak memory
    summary.csv               per method variant and metric: n, mean and the bootstrap interval
    report.md / report.html   experimental setup, results, trilemma plots, render grids, failures
    tables/*.tex              LaTeX (booktabs) tables, one per metric group, and the setup
    plots/*.png / *.html      quality vs time, quality vs diversity, distributions, human vs automatic
    renders/*.png             per input, a grid of turntable views (rows: method variants)

The pieces live in :mod:`eval.study.tables`, :mod:`eval.study.plots` and :mod:`eval.study.document`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from eval.runs.store import Store
from eval.study.document import build_document, write_latex
from eval.study.plots import write_plots, write_render_grids
from eval.study.spec import Study
from eval.study.tables import (
    DIVERSITY_METRIC,
    bootstrap_ci,
    cell_table,
    diversity_rows,
    human_scores,
    pick_quality,
    result_table,
    summarize,
)

__all__ = ["Report", "bootstrap_ci", "build_report", "summarize"]
GENERATED = {"tables": ("*.tex",), "plots": ("*.png", "*.html", "plotly.min.js"), "renders": ("*.png",)}


@dataclass
class Report:
    out_dir: Path
    cells: pd.DataFrame
    results: pd.DataFrame
    summary: pd.DataFrame
    quality: str | None
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def build_report(study: Study, store: Store, out_dir: str | Path | None = None, *, renders: bool = True) -> Report:
    """Write the report folder (default ``<study output>/report``) and return its tables and files."""
    out = Path(out_dir) if out_dir is not None else Path(study.output) / "report"
    for sub, patterns in GENERATED.items():
        (out / sub).mkdir(parents=True, exist_ok=True)
        for pattern in patterns:  # what an earlier report wrote: a metric or an input may have gone since
            for stale in (out / sub).glob(pattern):
                stale.unlink()
    opts = study.report
    cells = cell_table(study, store)
    results = result_table(cells, store)
    diversity = diversity_rows(cells)
    summary = summarize(results, opts.bootstrap, opts.confidence)
    if len(diversity):
        extra = diversity.assign(group="diversity", metric=DIVERSITY_METRIC, unit="", higher_is_better="higher")
        summary = pd.concat([summary, summarize(extra, opts.bootstrap, opts.confidence)], ignore_index=True)
    report = Report(out, cells, results, summary, pick_quality(summary, study.protocol.quality))
    files = report.files
    files["results.parquet"] = _parquet(results, out / "results.parquet")
    results.to_csv(files.setdefault("results.csv", out / "results.csv"), index=False)
    files["cells.parquet"] = _parquet(cells, out / "cells.parquet")
    cells.to_csv(files.setdefault("cells.csv", out / "cells.csv"), index=False)
    summary.to_csv(files.setdefault("summary.csv", out / "summary.csv"), index=False)
    if study.protocol.quality and report.quality != study.protocol.quality:
        report.notes.append(
            f"the protocol's quality metric {study.protocol.quality!r} has no values; using {report.quality or 'none'}"
        )
    human = human_scores(store, cells)
    files.update(write_plots(report, out / "plots", human))
    grids = write_render_grids(study, cells, out / "renders", opts.renders, opts.views) if renders else {}
    files.update(grids)
    files.update(write_latex(study, report, out / "tables"))
    doc = build_document(study, store, report, human, grids)
    (out / "report.md").write_text(doc.markdown(), encoding="utf-8")
    (out / "report.html").write_text(doc.html(f"Study {study.name}"), encoding="utf-8")
    files["report.md"], files["report.html"] = out / "report.md", out / "report.html"
    return report


def _parquet(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_parquet(path, index=False)
    return path
